/*
 * idleserver.c — kept server connections: reset, wait, hand over. See idleserver.h.
 */
#include "proxy/idleserver.h"

#include <errno.h>
#include <ev.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/log.h"
#include "proxy/pgproto.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"

/* DISCARD ALL answers in microseconds; a backend that does not is not worth keeping. */
#define RESET_TIMEOUT_MS 10000
/* Room for what a kept backend may say: CommandComplete, ParameterStatus, ReadyForQuery,
 * a notice or a notification. Anything larger closes the connection. */
#define IN_BYTES 4096

typedef enum {
    IS_RESETTING, /* DISCARD ALL sent, waiting for its ReadyForQuery */
    IS_IDLE,      /* offered to the next client with the same StartupMessage */
    IS_LEAVING,   /* being closed or handed to a client */
} IdleState;

struct IdleServer {
    Worker *worker;
    IdleServer *prev, *next;
    int fd;
    IdleState state;
    bool discarded; /* CommandComplete of DISCARD ALL seen */
    ev_io rd;
    ev_timer timer;
    ServerLogin login;
    PgFramer framer; /* whole messages only, each at most IN_BYTES - 1 long */
    size_t in_len;
    uint8_t in[IN_BYTES];
};

void login_free(ServerLogin *login)
{
    free(login->startup);
    free(login->greeting);
    memset(login, 0, sizeof *login);
}

bool idleserver_greeting_ok(char type, const uint8_t *msg, size_t len, size_t at)
{
    if (at == 0)
        return type == 'R' && len == 9 && be32(msg + 5) == 0; /* AuthenticationOk */
    if (type == 'Z')
        return len == 6 && msg[5] == 'I';
    return type == 'S' || type == 'K';
}

static void unlink_server(IdleServer *s)
{
    IdleServers *list = &s->worker->idle;
    if (s->prev)
        s->prev->next = s->next;
    else
        list->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

/* The only way to change s->state: the servers_kept gauge counts connections in IS_IDLE. */
static void set_state(IdleServer *s, IdleState state)
{
    if (s->state == IS_IDLE)
        atomic_fetch_sub(&rt.servers_kept, 1);
    if (state == IS_IDLE)
        atomic_fetch_add(&rt.servers_kept, 1);
    s->state = state;
}

static void stop_watchers(IdleServer *s)
{
    ev_io_stop(s->worker->loop, &s->rd);
    ev_timer_stop(s->worker->loop, &s->timer);
}

static void close_server(IdleServer *s, const char *why)
{
    LOG_AT(LOG_DEBUG, "idle-server", "closing a kept server connection: %s", why);
    stop_watchers(s);
    unlink_server(s);
    set_state(s, IS_LEAVING);
    /* Say goodbye so PostgreSQL does not log an unexpected EOF (best effort: a dead
     * backend's socket just refuses it). */
    static const uint8_t terminate[5] = {'X', 0, 0, 0, 4};
    ssize_t n = send(s->fd, terminate, sizeof terminate, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)n;
    close(s->fd);
    atomic_fetch_sub(&rt.servers, 1);
    login_free(&s->login);
    free(s);
}

/* Is this exact ParameterStatus message part of the greeting the next client will see? */
static bool greeting_has(const ServerLogin *login, const uint8_t *msg, size_t len)
{
    size_t at = 0;
    while (at + 5 <= login->greeting_len) {
        size_t n = 1 + (size_t)be32(login->greeting + at + 1);
        if (n == len && memcmp(login->greeting + at, msg, len) == 0)
            return true;
        at += n;
    }
    return false;
}

/* One message from a kept backend. False when the connection must go (why set). */
static bool handle_message(IdleServer *s, const uint8_t *msg, size_t len, const char **why)
{
    switch (msg[0]) {
    case 'N': /* notices and notifications were meant for the client that left */
    case 'A':
        return true;
    case 'S':
        /* RESET ALL reports the settings it put back: they must be what the greeting says,
         * or the next client would be told wrong values. */
        *why = "a setting differs from the login's";
        return s->state == IS_RESETTING && greeting_has(&s->login, msg, len);
    case 'C':
        *why = "unexpected CommandComplete";
        if (s->state != IS_RESETTING || len != 17 || memcmp(msg + 5, "DISCARD ALL", 12) != 0)
            return false;
        s->discarded = true;
        return true;
    case 'Z':
        *why = "the reset did not leave the session idle";
        if (s->state != IS_RESETTING || !s->discarded || len != 6 || msg[5] != 'I')
            return false;
        set_state(s, IS_IDLE);
        ev_timer_stop(s->worker->loop, &s->timer);
        ev_timer_set(&s->timer,
                     (double)s->worker->snap->cfg->limits.server_idle_timeout_ms / 1000.0, 0.);
        ev_timer_start(s->worker->loop, &s->timer);
        return true;
    case 'E':
        *why = "the backend sent an error";
        return false;
    default:
        *why = "unexpected message";
        return false;
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    IdleServer *s = w->data;
    ssize_t n = recv(s->fd, s->in + s->in_len, sizeof s->in - s->in_len, 0);
    if (n == 0) {
        close_server(s, "the backend closed the connection");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            close_server(s, strerror(errno));
        return;
    }
    s->in_len += (size_t)n;
    size_t at = 0;
    for (;;) {
        Frame f;
        pg_framer_next(&s->framer, s->in + at, s->in_len - at, &f);
        if (f.kind == FRAME_NEED_MORE)
            break;
        if (f.kind != FRAME_MESSAGE) {
            close_server(s, "message too large to keep the connection");
            return;
        }
        const char *why = NULL;
        if (!handle_message(s, f.p, f.n, &why)) {
            close_server(s, why);
            return;
        }
        at += f.n;
    }
    memmove(s->in, s->in + at, s->in_len - at);
    s->in_len -= at;
}

static void on_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    IdleServer *s = t->data;
    close_server(s, s->state == IS_IDLE ? "server_idle_timeout" : "DISCARD ALL timed out");
}

void idleserver_keep(Worker *w, int fd, ServerLogin *login)
{
    static const char discard_all[] = "Q\0\0\0\020DISCARD ALL"; /* Query, length 16 */
    IdleServer *s = calloc(1, sizeof *s);
    ssize_t n = -1;
    if (s)
        n = send(fd, discard_all, sizeof discard_all, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (!s || n != (ssize_t)sizeof discard_all) {
        /* Out of memory, or a socket that cannot take 17 bytes: not worth keeping. */
        free(s);
        close(fd);
        atomic_fetch_sub(&rt.servers, 1);
        login_free(login);
        return;
    }
    s->worker = w;
    s->fd = fd;
    set_state(s, IS_RESETTING);
    s->login = *login;
    memset(login, 0, sizeof *login);
    pg_framer_init(&s->framer, sizeof s->in - 1, SIZE_MAX); /* nothing is streamed */
    ev_io_init(&s->rd, on_read, fd, EV_READ);
    s->rd.data = s;
    ev_io_start(w->loop, &s->rd);
    ev_timer_init(&s->timer, on_timer, RESET_TIMEOUT_MS / 1000.0, 0.);
    s->timer.data = s;
    ev_timer_start(w->loop, &s->timer);
    s->next = w->idle.head;
    if (s->next)
        s->next->prev = s;
    w->idle.head = s;
}

int idleserver_take(Worker *w, const uint8_t *startup, size_t len, ServerLogin *login)
{
    int64_t max_born = clock_ms() - w->snap->cfg->limits.server_lifetime_ms;
    for (IdleServer *s = w->idle.head; s; s = s->next) {
        if (s->state != IS_IDLE || s->in_len != 0 || s->login.startup_len != len ||
            memcmp(s->login.startup, startup, len) != 0)
            continue;
        if (s->login.born_ms <= max_born) {
            close_server(s, "server_lifetime");
            return -1;
        }
        /* Whatever the backend said since the loop last looked (a FATAL and EOF from
         * pg_terminate_backend, say) would reach the new client: look first. */
        uint8_t byte;
        ssize_t n = recv(s->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            close_server(s, "the backend spoke while kept");
            return -1;
        }
        int fd = s->fd;
        stop_watchers(s);
        unlink_server(s);
        set_state(s, IS_LEAVING);
        *login = s->login;
        free(s);
        return fd;
    }
    return -1;
}

void idleserver_close_all(Worker *w)
{
    while (w->idle.head)
        close_server(w->idle.head, "closing all kept server connections");
}
