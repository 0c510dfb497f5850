/*
 * client.c — a client connection and its server connection: non-blocking sockets on the
 * worker's libev loop, bounded buffers with back-pressure in both directions, the start-up
 * packet (SSL/GSS refusal, cancel forwarding), and the byte-for-byte authentication relay.
 */
#include "proxy/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/admin.h"
#include "proxy/idleserver.h"
#include "proxy/log.h"
#include "proxy/worker.h"

#define READ_CHUNK   (64 * 1024)  /* bytes asked of recv(2) at once */
#define IN_HOLD_MAX  (256 * 1024) /* stop reading a side once this much is unprocessed */
#define OUT_HIGH     (256 * 1024) /* stop producing for a side above this much queued */
#define IDLE_KEEP    (64 * 1024)  /* buffers above this are freed when they empty */
#define STREAM_MIN   (16 * 1024)  /* DataRow/CopyData at least this long may be streamed */
#define CONNECT_TIMEOUT_MS 10000
#define CLOSING_TIMEOUT_MS 5000

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_client_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_server_read(struct ev_loop *loop, ev_io *w, int revents);
static void on_server_write(struct ev_loop *loop, ev_io *w, int revents);
static void on_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void client_run(Client *c);

static const Config *cfg_of(const Client *c)
{
    return c->worker->snap->cfg;
}

/* The only place that writes c->state. */
void client_set_state(Client *c, ClientState state)
{
    c->state = state;
}

/* Called after every turn of a client: only a change costs libev anything. */
static void set_io(Client *c, ev_io *w, bool on)
{
    if (on == (ev_is_active(w) != 0))
        return;
    if (on)
        ev_io_start(c->worker->loop, w);
    else
        ev_io_stop(c->worker->loop, w);
}

Client *client_new(Worker *w, int fd)
{
    Client *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return NULL;
    }
    const Config *cfg = w->snap->cfg;
    c->worker = w;
    c->id = atomic_fetch_add(&rt.next_client_id, 1) + 1;
    c->cfd = fd;
    c->sfd = -1;
    c->last_activity_ms = clock_ms();
    pg_framer_init(&c->c_framer, cfg->limits.max_message_bytes, STREAM_MIN);
    pg_framer_init(&c->s_framer, cfg->limits.max_message_bytes, STREAM_MIN);
    request_init(&c->req);

    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0) {
        if (peer.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&peer;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (peer.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&peer;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
    snprintf(c->ident, sizeof c->ident, "c%llu %s", (unsigned long long)c->id, c->peer);
    c->connected_ms = clock_ms();

    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);

    ev_io_init(&c->c_rd, on_client_read, fd, EV_READ);
    ev_io_init(&c->c_wr, on_client_write, fd, EV_WRITE);
    c->c_rd.data = c->c_wr.data = c;
    ev_init(&c->timer, on_timer);
    c->timer.data = c;
    c->timer.repeat = (double)cfg->limits.auth_timeout_ms / 1000.0;
    ev_timer_again(w->loop, &c->timer);

    client_set_state(c, CS_STARTUP);
    atomic_fetch_add(&rt.clients, 1);
    atomic_fetch_add(&rt.clients_total, 1);
    set_io(c, &c->c_rd, true);
    return c;
}

void client_free(Client *c)
{
    if (!c)
        return;
    iobuf_free(&c->c_in);
    iobuf_free(&c->c_out);
    iobuf_free(&c->s_in);
    iobuf_free(&c->s_out);
    request_free(&c->req);
    admin_free(c->admin);
    free(c->startup);
    bw_free(&c->greeting);
    free(c->user);
    free(c->database);
    free(c);
}

static void close_server(Client *c)
{
    if (c->sfd < 0)
        return;
    struct ev_loop *loop = c->worker->loop;
    ev_io_stop(loop, &c->s_rd);
    ev_io_stop(loop, &c->s_wr);
    close(c->sfd);
    c->sfd = -1;
    atomic_fetch_sub(&rt.servers, 1);
}

/* The client's side only (an orphaned write keeps the server's). */
static void close_client_socket(Client *c)
{
    if (c->cfd < 0)
        return;
    ev_io_stop(c->worker->loop, &c->c_rd);
    ev_io_stop(c->worker->loop, &c->c_wr);
    close(c->cfd);
    c->cfd = -1;
}

void client_close(Client *c, const char *why)
{
    if (c->state == CS_DEAD)
        return;
    if (why)
        LOG_AT(LOG_DEBUG, c->ident, "closing: %s", why);
    struct ev_loop *loop = c->worker->loop;
    /* A server that saw no Terminate logs an "unexpected EOF"; say goodbye when we can. */
    if (c->sfd >= 0 && c->state == CS_READY && !c->terminate_sent) {
        static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
        ssize_t n = write(c->sfd, terminate, sizeof terminate);
        (void)n;
    }
    close_server(c);
    close_client_socket(c);
    ev_timer_stop(loop, &c->timer);
    client_set_state(c, CS_DEAD);
    atomic_fetch_sub(&rt.clients, 1);
    worker_park_client(c->worker, c);
}

bool client_keep_server(Client *c)
{
    const Config *cfg = cfg_of(c);
    if (!c->keepable || c->greeting.len == 0 || c->state != CS_READY || c->sfd < 0 ||
        c->orphaned || c->terminate_sent || c->server_errored || !request_is_idle(&c->req) ||
        iobuf_len(&c->s_in) != 0 || iobuf_len(&c->s_out) != 0 ||
        cfg->limits.server_idle_timeout_ms == 0 || atomic_load(&rt.shutting_down) ||
        clock_ms() - c->server_born_ms >= cfg->limits.server_lifetime_ms)
        return false;
    ServerLogin login = {.startup = c->startup,
                         .startup_len = c->startup_len,
                         .greeting = c->greeting.data,
                         .greeting_len = c->greeting.len,
                         .born_ms = c->server_born_ms};
    c->startup = NULL;
    c->startup_len = 0;
    memset(&c->greeting, 0, sizeof c->greeting);
    ev_io_stop(c->worker->loop, &c->s_rd);
    ev_io_stop(c->worker->loop, &c->s_wr);
    int fd = c->sfd;
    c->sfd = -1; /* still counted in rt.servers: it is open, kept */
    idleserver_keep(c->worker, fd, &login);
    client_close(c, "client left; its server connection is kept");
    return true;
}

/*
 * The client went away. A write PostgreSQL is already running commits all the same, so
 * before closing, its answer is awaited (and thrown away) and its tables are invalidated:
 * otherwise other sessions would go on reading the old rows from the cache.
 */
static void client_vanished(Client *c, const char *why)
{
    if (client_keep_server(c))
        return;
    if (c->state != CS_READY || c->sfd < 0 || c->orphaned || !request_write_in_flight(&c->req)) {
        client_close(c, why);
        return;
    }
    LOG_AT(LOG_DEBUG, c->ident, "%s during a write: finishing it before closing", why);
    close_client_socket(c);
    c->orphaned = true;
    iobuf_consume(&c->c_out, iobuf_len(&c->c_out));
}

static void fail_with(Client *c, const char *severity, const char *sqlstate, const char *msg)
{
    if (c->state == CS_DEAD || c->state == CS_CLOSING)
        return;
    ByteWriter w = {0};
    pg_write_error(&w, severity, sqlstate, msg, NULL);
    bool ok = !w.failed && iobuf_append(&c->c_out, w.data, w.len);
    bw_free(&w);
    close_server(c);
    if (!ok) {
        client_close(c, "out of memory");
        return;
    }
    client_set_state(c, CS_CLOSING);
    c->timer.repeat = CLOSING_TIMEOUT_MS / 1000.0;
    ev_timer_again(c->worker->loop, &c->timer);
}

void client_fail(Client *c, const char *sqlstate, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c->state == CS_DEAD || c->state == CS_CLOSING)
        return;
    LOG_AT(LOG_INFO, c->ident, "closing with %s: %s", sqlstate, msg);
    if (strcmp(sqlstate, "08P01") == 0)
        STAT_INC(c->worker->stats.protocol_errors);
    fail_with(c, "FATAL", sqlstate, msg);
}

bool client_send(Client *c, const void *p, size_t n)
{
    if (iobuf_append(&c->c_out, p, n))
        return true;
    client_close(c, "out of memory");
    return false;
}

bool server_send(Client *c, const void *p, size_t n)
{
    if (iobuf_append(&c->s_out, p, n))
        return true;
    client_close(c, "out of memory");
    return false;
}

bool client_is_idle(const Client *c)
{
    return c->state == CS_READY && request_is_idle(&c->req) && iobuf_len(&c->c_in) == 0;
}

/* --- socket I/O ------------------------------------------------------------------------ */

typedef enum { IO_OK, IO_EOF, IO_ERROR } IoResult;

/*
 * recv(2) and send(2) without glibc's wrappers: in a process with threads those are
 * cancellation points, and each call turns the thread's cancel state on and off around the
 * system call (two atomic updates; ~170 instructions per relayed transaction, 3 % of the
 * relay's user time). pgstash never cancels a thread.
 */
static inline ssize_t sock_recv(int fd, void *p, size_t n)
{
    return syscall(SYS_recvfrom, fd, p, n, 0, NULL, NULL);
}

static inline ssize_t sock_send(int fd, const void *p, size_t n)
{
    return syscall(SYS_sendto, fd, p, n, MSG_NOSIGNAL, NULL, 0);
}

/* Reads what the socket has (one recv(2): unlike read(2) it skips the VFS layer, a
 * measurable share of a relayed message's cost). */
static IoResult read_into(int fd, IoBuf *b, size_t *got)
{
    *got = 0;
    if (!iobuf_reserve(b, READ_CHUNK))
        return IO_ERROR;
    ssize_t n = sock_recv(fd, b->data + b->end, b->cap - b->end);
    if (n > 0) {
        b->end += (size_t)n;
        *got = (size_t)n;
        return IO_OK;
    }
    if (n == 0)
        return IO_EOF;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        return IO_OK;
    return IO_ERROR;
}

static IoResult write_from(int fd, IoBuf *b)
{
    while (iobuf_len(b) > 0) {
        ssize_t n = sock_send(fd, iobuf_head(b), iobuf_len(b));
        if (n > 0) {
            iobuf_consume(b, (size_t)n);
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return IO_OK;
        if (n < 0 && errno == EINTR)
            continue;
        return IO_ERROR;
    }
    iobuf_shrink(b, IDLE_KEEP);
    return IO_OK;
}

static size_t in_limit(size_t need)
{
    return need > IN_HOLD_MAX ? need : IN_HOLD_MAX;
}

static bool want_client_read(const Client *c)
{
    switch (c->state) {
    case CS_STARTUP:
    case CS_CONNECTING: /* only to see it leave: its bytes wait in c_in for CS_AUTH */
    case CS_AUTH:
    case CS_READY:
    case CS_ADMIN_AUTH:
    case CS_ADMIN:
        return iobuf_len(&c->c_in) < in_limit(c->c_need) && iobuf_len(&c->s_out) < OUT_HIGH;
    default:
        return false;
    }
}

static bool want_server_read(const Client *c)
{
    switch (c->state) {
    case CS_AUTH:
    case CS_READY:
        return iobuf_len(&c->s_in) < in_limit(c->s_need) && iobuf_len(&c->c_out) < OUT_HIGH;
    case CS_CANCEL:
        return true;
    default:
        return false;
    }
}

/* True when the client owes us bytes: a message or a unit begun but not finished. */
static bool half_sent(const Client *c)
{
    return iobuf_len(&c->c_in) > 0 &&
           (c->req.state == REQ_IDLE || c->req.state == REQ_COLLECT);
}

/*
 * The ready-state deadline: limits.client_idle_timeout for a session idle between statements,
 * and for a half-sent message or unit the idle timeout or, when that is off,
 * limits.auth_timeout. 0 = none.
 */
static int64_t ready_timeout_ms(const Client *c)
{
    const Config *cfg = cfg_of(c);
    int64_t idle = cfg->limits.idle_timeout_ms;
    if (half_sent(c))
        return idle > 0 ? idle : cfg->limits.auth_timeout_ms;
    return idle > 0 && request_is_idle(&c->req) ? idle : 0;
}

static void update_timer(Client *c)
{
    int64_t t = ready_timeout_ms(c);
    struct ev_loop *loop = c->worker->loop;
    if (t <= 0) {
        if (ev_is_active(&c->timer))
            ev_timer_stop(loop, &c->timer);
        return;
    }
    if (!ev_is_active(&c->timer)) {
        c->timer.repeat = (double)t / 1000.0;
        ev_timer_again(loop, &c->timer);
    }
}

static void update_watchers(Client *c)
{
    if (c->state == CS_DEAD)
        return;
    if (c->state == CS_READY)
        update_timer(c);
    if (c->cfd >= 0) {
        set_io(c, &c->c_rd, want_client_read(c));
        set_io(c, &c->c_wr, iobuf_len(&c->c_out) > 0);
    }
    if (c->sfd >= 0) {
        set_io(c, &c->s_rd, want_server_read(c));
        set_io(c, &c->s_wr, iobuf_len(&c->s_out) > 0 || c->connecting);
    }
}

/* Writes what is queued on both sides. False when the client was closed. */
static bool flush(Client *c)
{
    if (c->sfd >= 0 && iobuf_len(&c->s_out) > 0 && !c->connecting) {
        if (write_from(c->sfd, &c->s_out) == IO_ERROR) {
            if (c->state == CS_CANCEL) {
                client_close(c, "cancel forwarded");
                return false;
            }
            client_fail(c, "08006", "lost connection to upstream PostgreSQL at %s: %s",
                        c->worker->snap->upstream_desc, strerror(errno));
        }
    }
    if (c->orphaned) {
        iobuf_consume(&c->c_out, iobuf_len(&c->c_out));
        if (!request_write_in_flight(&c->req)) {
            client_close(c, "orphaned write finished");
            return false;
        }
    } else if (iobuf_len(&c->c_out) > 0) {
        if (write_from(c->cfd, &c->c_out) == IO_ERROR) {
            client_vanished(c, "client write failed");
            if (c->state == CS_DEAD)
                return false;
        }
    }
    if (c->state == CS_CLOSING && iobuf_len(&c->c_out) == 0) {
        client_close(c, NULL);
        return false;
    }
    if (c->terminate_sent && iobuf_len(&c->s_out) == 0) {
        client_close(c, "client terminated");
        return false;
    }
    return true;
}

/* --- upstream connection --------------------------------------------------------------- */

static void fail_upstream(Client *c, const char *reason)
{
    STAT_INC(c->worker->stats.upstream_errors);
    const char *desc = c->worker->snap->upstream_desc;
    LOG_AT(LOG_WARN, c->ident, "cannot connect to upstream %s: %s", desc, reason);
    if (c->state == CS_CANCEL) {
        client_close(c, "cancel: upstream unreachable");
        return;
    }
    char msg[600];
    snprintf(msg, sizeof msg, "pgstash could not connect to upstream PostgreSQL at %s: %s", desc,
             reason);
    fail_with(c, "FATAL", "08006", msg);
}

static void server_connected(Client *c)
{
    if (c->state == CS_CONNECTING) {
        client_set_state(c, CS_AUTH);
        if (!server_send(c, c->startup, c->startup_len))
            return;
    } else {
        /* CS_CANCEL: the cancel packet is the whole conversation. */
        if (!server_send(c, c->startup, c->startup_len))
            return;
    }
    c->server_born_ms = clock_ms();
    if (c->keepable)
        return; /* the key to find this connection again once kept */
    free(c->startup);
    c->startup = NULL;
    c->startup_len = 0;
}

static void watch_server(Client *c, int fd)
{
    c->sfd = fd;
    ev_io_init(&c->s_rd, on_server_read, fd, EV_READ);
    ev_io_init(&c->s_wr, on_server_write, fd, EV_WRITE);
    c->s_rd.data = c->s_wr.data = c;
}

static void server_connect(Client *c)
{
    const Snapshot *snap = c->worker->snap;
    int family = snap->upstream.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_upstream(c, strerror(errno));
        return;
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    watch_server(c, fd);
    atomic_fetch_add(&rt.servers, 1);
    int rc = connect(fd, (const struct sockaddr *)&snap->upstream, snap->upstream_len);
    if (rc < 0 && errno != EINPROGRESS) {
        int err = errno;
        close_server(c);
        fail_upstream(c, strerror(err));
        return;
    }
    c->connecting = true;
    c->timer.repeat = CONNECT_TIMEOUT_MS / 1000.0;
    ev_timer_again(c->worker->loop, &c->timer);
}

/* s_wr fired while connecting: the connect finished, well or badly. */
static void finish_connect(Client *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS)
        return;
    c->connecting = false;
    if (err != 0) {
        close_server(c);
        fail_upstream(c, strerror(err));
        return;
    }
    const Config *cfg = cfg_of(c);
    c->timer.repeat = (double)cfg->limits.auth_timeout_ms / 1000.0;
    ev_timer_again(c->worker->loop, &c->timer);
    server_connected(c);
}

/* --- start-up packet ------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

/*
 * Parses the StartupMessage parameters (key\0value\0 ... \0) for user and database.
 * False (client failed) when malformed.
 */
static bool parse_startup_params(Client *c, const uint8_t *p, size_t len)
{
    ByteReader r;
    br_init(&r, p + 8, len - 8);
    const char *user = NULL, *database = NULL;
    for (;;) {
        size_t klen;
        const char *key = br_cstr(&r, &klen);
        if (!key) {
            client_fail(c, "08P01", "invalid startup packet layout: expected terminator as last "
                                    "byte");
            return false;
        }
        if (klen == 0)
            break;
        const char *value = br_cstr(&r, NULL);
        if (!value) {
            client_fail(c, "08P01", "invalid startup packet layout: expected terminator as last "
                                    "byte");
            return false;
        }
        if (strcmp(key, "user") == 0)
            user = value;
        else if (strcmp(key, "database") == 0)
            database = value;
        else if (strcmp(key, "replication") == 0 && strcmp(value, "false") != 0 &&
                 strcmp(value, "0") != 0 && strcmp(value, "off") != 0 &&
                 strcmp(value, "no") != 0)
            c->replication = true;
    }
    if (br_left(&r) != 0) {
        client_fail(c, "08P01", "invalid startup packet layout: expected terminator as last byte");
        return false;
    }
    if (!user || !*user) {
        client_fail(c, "28000", "no PostgreSQL user name specified in startup packet");
        return false;
    }
    c->user = dup_str(user);
    c->database = dup_str(database && *database ? database : user);
    if (!c->user || !c->database) {
        client_close(c, "out of memory");
        return false;
    }
    snprintf(c->ident, sizeof c->ident, "c%llu %s@%s", (unsigned long long)c->id, c->user,
             c->database);
    return true;
}

/*
 * True when the client has already closed (or reset) its side. A client that sends its
 * StartupMessage and closes at once (a load balancer's check, a crashed app) must not cost
 * PostgreSQL a backend: hundreds of them queue in the postmaster's accept backlog ahead of
 * real logins. Not asked for a CancelRequest, which is sent and closed by design.
 */
static bool peer_closed(int fd)
{
    char b;
    ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Keeps the first packet (startup or cancel) for the upstream and starts connecting. */
static void connect_with_packet(Client *c, const uint8_t *p, size_t len, ClientState next)
{
    c->startup = malloc(len);
    if (!c->startup) {
        client_close(c, "out of memory");
        return;
    }
    memcpy(c->startup, p, len);
    c->startup_len = len;
    iobuf_consume(&c->c_in, len);
    client_set_state(c, next);
    server_connect(c);
}

/*
 * Serves the login from a kept server connection opened with the same StartupMessage: the
 * client gets that login's answer (AuthenticationOk .. ReadyForQuery) at once. False when
 * none is kept.
 */
static bool take_kept_server(Client *c, const uint8_t *p, size_t len)
{
    ServerLogin login;
    int fd = idleserver_take(c->worker, p, len, &login);
    if (fd < 0)
        return false;
    watch_server(c, fd);
    c->startup = login.startup;
    c->startup_len = login.startup_len;
    c->greeting.data = login.greeting;
    c->greeting.len = c->greeting.cap = login.greeting_len;
    c->server_born_ms = login.born_ms;
    iobuf_consume(&c->c_in, len);
    if (!client_send(c, c->greeting.data, c->greeting.len))
        return true;
    STAT_INC(c->worker->stats.server_reuses);
    c->req.tx_status = 'I';
    client_set_state(c, CS_READY);
    ev_timer_stop(c->worker->loop, &c->timer);
    LOG_AT(LOG_DEBUG, c->ident, "authenticated on a kept server connection");
    return true;
}

/* Handles the client's first packet(s) in CS_STARTUP. */
static void handle_startup(Client *c)
{
    const Config *cfg = cfg_of(c);
    while (c->state == CS_STARTUP && iobuf_len(&c->c_in) >= 4) {
        const uint8_t *p = iobuf_head(&c->c_in);
        uint32_t len = be32(p);
        if (len < 8 || len > cfg->limits.max_startup_bytes) {
            client_fail(c, "08P01", "invalid length of startup packet");
            return;
        }
        if (iobuf_len(&c->c_in) < len) {
            c->c_need = len;
            return;
        }
        c->c_need = 0;
        uint32_t code = be32(p + 4);
        if (code == PG_SSL_REQUEST || code == PG_GSSENC_REQUEST) {
            if (len != 8) {
                client_fail(c, "08P01", "invalid length of startup packet");
                return;
            }
            iobuf_consume(&c->c_in, len);
            if (!client_send(c, "N", 1))
                return;
            continue;
        }
        if (code == PG_CANCEL_REQUEST) {
            if (len != 16) {
                client_fail(c, "08P01", "invalid length of cancel request packet");
                return;
            }
            LOG_AT(LOG_DEBUG, c->ident, "forwarding cancel request");
            connect_with_packet(c, p, len, CS_CANCEL);
            return;
        }
        uint32_t major = code >> 16, minor = code & 0xffff;
        if (major != 3) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0", major,
                     minor);
            fail_with(c, "FATAL", "0A000", msg);
            return;
        }
        if (!parse_startup_params(c, p, len))
            return;
        if (strcmp(c->database, ADMIN_DATABASE) == 0) {
            iobuf_consume(&c->c_in, len);
            admin_begin(c);
            return;
        }
        if (peer_closed(c->cfd)) {
            client_close(c, "client disconnected before authentication");
            return;
        }
        c->keepable = !c->replication && cfg->limits.server_idle_timeout_ms > 0;
        if (c->keepable && take_kept_server(c, p, len))
            return;
        LOG_AT(LOG_DEBUG, c->ident, "startup");
        connect_with_packet(c, p, len, CS_CONNECTING);
        return;
    }
}

/* --- authentication relay -------------------------------------------------------------- */

/* Relays whole messages from `in` to the other side until something must wait. Returns
 * true when it consumed anything. */
static void relay_auth_client(Client *c)
{
    while (c->state == CS_AUTH && iobuf_len(&c->s_out) < OUT_HIGH) {
        /* Only authentication responses ('p') and Terminate belong to this exchange. A
         * client that pipelines its first queries behind the StartupMessage (found by
         * tests/fuzz) has them wait here for CS_READY: relayed now, they would skip the
         * request path, and a write among them would never be invalidated. */
        if (iobuf_len(&c->c_in) > 0 && iobuf_head(&c->c_in)[0] != 'p' &&
            iobuf_head(&c->c_in)[0] != 'X') {
            c->c_need = 0;
            break;
        }
        Frame f;
        pg_framer_next(&c->c_framer, iobuf_head(&c->c_in), iobuf_len(&c->c_in), &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->c_need = f.need;
            break;
        }
        if (f.kind != FRAME_MESSAGE) {
            client_fail(c, "08P01", "invalid message length during authentication");
            break;
        }
        c->c_need = 0;
        if (!server_send(c, f.p, f.n))
            break;
        if (f.type == 'X')
            c->terminate_sent = true;
        iobuf_consume(&c->c_in, f.n);
    }
}

/* The login cannot be kept after all: drop what was held for it (the StartupMessage went out
 * before the server's first answer). */
static void not_keepable(Client *c)
{
    c->keepable = false;
    bw_free(&c->greeting);
    free(c->startup);
    c->startup = NULL;
    c->startup_len = 0;
}

/* Records the server's login answer while it may still be replayed to a later client. */
static void record_greeting(Client *c, const Frame *f)
{
    if (!idleserver_greeting_ok((char)f->type, f->p, f->n, c->greeting_msgs++)) {
        not_keepable(c);
        return;
    }
    bw_put(&c->greeting, f->p, f->n);
    if (c->greeting.failed)
        not_keepable(c);
}

static void relay_auth_server(Client *c)
{
    while (c->state == CS_AUTH && iobuf_len(&c->c_out) < OUT_HIGH) {
        Frame f;
        pg_framer_next(&c->s_framer, iobuf_head(&c->s_in), iobuf_len(&c->s_in), &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->s_need = f.need;
            break;
        }
        if (f.kind != FRAME_MESSAGE) {
            client_fail(c, "08P01", "upstream sent an invalid message during authentication");
            break;
        }
        c->s_need = 0;
        if (!client_send(c, f.p, f.n))
            break;
        if (c->keepable)
            record_greeting(c, &f);
        iobuf_consume(&c->s_in, f.n);
        if (f.type == 'E') {
            c->server_errored = true;
        } else if (f.type == 'Z' && f.n == 6) {
            c->req.tx_status = (char)f.p[5];
            client_set_state(c, CS_READY);
            ev_timer_stop(c->worker->loop, &c->timer); /* update_timer arms what READY needs */
            LOG_AT(LOG_DEBUG, c->ident, "authenticated");
        }
    }
}

/* --- ready: hand frames to the request path -------------------------------------------- */

static void process_server_ready(Client *c)
{
    while (c->state == CS_READY && iobuf_len(&c->c_out) < OUT_HIGH && iobuf_len(&c->s_in) > 0) {
        Frame f;
        pg_framer_next(&c->s_framer, iobuf_head(&c->s_in), iobuf_len(&c->s_in), &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->s_need = f.need;
            break;
        }
        if (f.kind == FRAME_BAD) {
            client_fail(c, "08P01", "upstream sent an invalid message (type '%c', length %u)",
                        f.type, f.len);
            break;
        }
        c->s_need = 0;
        size_t n = f.n;
        if (!request_server_frame(c, &f))
            break;
        iobuf_consume(&c->s_in, n);
    }
}

/*
 * Runs every side's pending input through the current state, then writes. Loops while
 * anything moved: a server answer may release held client input, and a write that drained
 * c_out may let buffered server input through (with s_in full, no read event would come).
 */
static void client_run(Client *c)
{
    for (int guard = 0; guard < 64 && c->state != CS_DEAD; guard++) {
        size_t before[4] = {iobuf_len(&c->c_in), iobuf_len(&c->s_in), iobuf_len(&c->c_out),
                            iobuf_len(&c->s_out)};
        switch (c->state) {
        case CS_STARTUP:
            handle_startup(c);
            break;
        case CS_AUTH:
            relay_auth_server(c);
            relay_auth_client(c);
            break;
        case CS_READY:
            process_server_ready(c);
            if (c->state == CS_READY)
                request_client_input(c);
            break;
        case CS_ADMIN_AUTH:
        case CS_ADMIN:
            admin_client_input(c);
            break;
        default:
            break;
        }
        if (c->state == CS_DEAD)
            return;
        if (!flush(c))
            return;
        size_t after[4] = {iobuf_len(&c->c_in), iobuf_len(&c->s_in), iobuf_len(&c->c_out),
                           iobuf_len(&c->s_out)};
        if (memcmp(before, after, sizeof before) == 0)
            break;
        /* Both inputs consumed and the output flushed (or blocked): another turn has
         * nothing to hand on. The common end of a relayed message. */
        if (c->state == CS_READY && after[0] == 0 && after[1] == 0)
            break;
    }
    update_watchers(c);
}

void client_kick(Client *c)
{
    if (c->state != CS_DEAD)
        client_run(c);
}

/* --- libev callbacks ------------------------------------------------------------------- */

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents)
{
    Client *c = w->data;
    size_t got;
    IoResult r = read_into(c->cfd, &c->c_in, &got);
    if (r != IO_OK) {
        client_vanished(c, r == IO_EOF ? "client disconnected" : "client read error");
        if (c->state != CS_DEAD)
            client_run(c);
        return;
    }
    if (got)
        c->last_activity_ms = worker_now_ms(c->worker);
    client_run(c);
}

static void on_client_write(struct ev_loop *loop, ev_io *w, int revents)
{
    Client *c = w->data;
    client_run(c);
}

static void on_server_eof(Client *c, bool error)
{
    if (c->state == CS_CANCEL) {
        client_close(c, "cancel forwarded");
        return;
    }
    /* Hand over whatever was already read, ignoring back-pressure: it is bounded. */
    if (c->state == CS_READY)
        while (iobuf_len(&c->s_in) > 0 && c->state == CS_READY) {
            Frame f;
            pg_framer_next(&c->s_framer, iobuf_head(&c->s_in), iobuf_len(&c->s_in), &f);
            if (f.kind != FRAME_MESSAGE && f.kind != FRAME_PIECE)
                break;
            size_t n = f.n;
            if (!request_server_frame(c, &f))
                return;
            iobuf_consume(&c->s_in, n);
        }
    else if (c->state == CS_AUTH)
        relay_auth_server(c);
    if (c->state == CS_READY)
        request_server_lost(c);
    if (c->state == CS_DEAD || c->state == CS_CLOSING)
        return;
    close_server(c);
    if (c->server_errored) {
        client_set_state(c, CS_CLOSING);
        c->timer.repeat = CLOSING_TIMEOUT_MS / 1000.0;
        ev_timer_again(c->worker->loop, &c->timer);
        return;
    }
    char msg[400];
    snprintf(msg, sizeof msg, "upstream PostgreSQL at %s closed the connection unexpectedly%s",
             c->worker->snap->upstream_desc, error ? " (read error)" : "");
    LOG_AT(LOG_INFO, c->ident, "%s", msg);
    fail_with(c, "FATAL", "08006", msg);
}

static void on_server_read(struct ev_loop *loop, ev_io *w, int revents)
{
    Client *c = w->data;
    size_t got;
    IoResult r = read_into(c->sfd, &c->s_in, &got);
    if (r != IO_OK) {
        on_server_eof(c, r == IO_ERROR);
        if (c->state != CS_DEAD)
            client_run(c);
        return;
    }
    client_run(c);
}

static void on_server_write(struct ev_loop *loop, ev_io *w, int revents)
{
    Client *c = w->data;
    if (c->connecting) {
        finish_connect(c);
        if (c->state == CS_DEAD)
            return;
    }
    client_run(c);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    Client *c = w->data;
    switch (c->state) {
    case CS_STARTUP:
    case CS_AUTH:
    case CS_ADMIN_AUTH:
        client_fail(c, "08006", "timeout: the client did not finish start-up in time");
        break;
    case CS_CONNECTING:
        close_server(c);
        fail_upstream(c, "connection timed out");
        break;
    case CS_CANCEL:
        client_close(c, "cancel timed out");
        return;
    case CS_CLOSING:
        client_close(c, "closing timed out");
        return;
    case CS_READY: {
        int64_t limit = ready_timeout_ms(c);
        if (limit <= 0) {
            ev_timer_stop(loop, w); /* a statement is running: the server is busy, not us */
            return;
        }
        int64_t since = c->last_activity_ms > c->req.idle_since_ms ? c->last_activity_ms
                                                                    : c->req.idle_since_ms;
        int64_t quiet = worker_now_ms(c->worker) - since;
        if (quiet < limit) {
            w->repeat = (double)(limit - quiet) / 1000.0;
            ev_timer_again(loop, w);
            return;
        }
        if (half_sent(c))
            client_fail(c, "08P01", "timeout waiting for the rest of a message");
        else
            client_fail(c, "57P05", "terminating connection due to idle-session timeout");
        break;
    }
    case CS_ADMIN:
        ev_timer_stop(loop, w);
        return;
    case CS_DEAD:
        return;
    }
    if (c->state != CS_DEAD)
        client_run(c);
}
