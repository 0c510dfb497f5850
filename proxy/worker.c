/*
 * worker.c — a worker thread: accepts on its own SO_REUSEPORT socket, runs its clients on
 * its own libev loop, frees closed clients before the loop blocks, picks up new config
 * snapshots between iterations, and drains on shutdown.
 */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/client.h"
#include "proxy/hottier.h"
#include "proxy/log.h"
#include "proxy/store.h"
#include "sqlparse/sqlparse.h"

#define MEMO_CAPACITY 8192

static LogRateLimit accept_rl;

bool worker_listen(Worker *w, const HostPort *addr, char *err, size_t errlen)
{
    struct addrinfo hints = {0}, *res = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", addr->port);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(addr->host[0] ? addr->host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen %s:%d: %s", addr->host, addr->port, gai_strerror(rc));
        return false;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail_errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        goto fail_errno;
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
        goto fail_errno;
    if (listen(fd, 1024) < 0)
        goto fail_errno;
    freeaddrinfo(res);
    w->listen_fd = fd;
    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return true;

fail_errno:
    snprintf(err, errlen, "listen %s:%d: %s", addr->host, addr->port, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return false;
}

void worker_park_client(Worker *w, Client *c)
{
    pthread_mutex_lock(&w->clients_lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = NULL;
    c->next = w->dead;
    w->dead = c;
    w->n_clients--;
    pthread_mutex_unlock(&w->clients_lock);
}

static void reap_dead(Worker *w)
{
    Client **link = &w->dead;
    while (*link) {
        Client *c = *link;
        if (c->pending_callbacks > 0) {
            link = &c->next; /* a Redis reply still points here */
            continue;
        }
        *link = c->next;
        client_free(c);
    }
}

static void stop_listening(Worker *w)
{
    if (w->listen_fd < 0)
        return;
    ev_io_stop(w->loop, &w->accept_io);
    ev_timer_stop(w->loop, &w->accept_retry);
    close(w->listen_fd);
    w->listen_fd = -1;
}

static void on_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    Worker *w = io->data;
    const Config *cfg = w->snap->cfg;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNABORTED)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                /* Out of descriptors: accept-and-close with the spare one so the backlog
                 * does not keep the loop spinning, then pause accepting briefly. */
                uint64_t suppressed;
                if (log_ratelimit(&accept_rl, 5000, &suppressed))
                    log_error("accept: out of file descriptors; refusing connections "
                              "(%llu similar suppressed)",
                              (unsigned long long)suppressed);
                if (w->spare_fd >= 0) {
                    close(w->spare_fd);
                    int tmp = accept(w->listen_fd, NULL, NULL);
                    if (tmp >= 0)
                        close(tmp);
                    w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                ev_io_stop(loop, &w->accept_io);
                ev_timer_start(loop, &w->accept_retry);
                return;
            }
            log_error("accept: %s", strerror(errno));
            return;
        }
        if (atomic_load(&rt.clients) >= cfg->limits.max_client_conn) {
            static const char msg[] = "sorry, too many clients already";
            ByteWriter bw = {0};
            pg_write_error(&bw, "FATAL", "53300", msg, NULL);
            if (!bw.failed) {
                ssize_t n = send(fd, bw.data, bw.len, MSG_NOSIGNAL);
                (void)n;
            }
            bw_free(&bw);
            close(fd);
            continue;
        }
        Client *c = client_new(w, fd);
        if (!c)
            continue;
        pthread_mutex_lock(&w->clients_lock);
        c->next = w->clients;
        if (w->clients)
            w->clients->prev = c;
        w->clients = c;
        w->n_clients++;
        pthread_mutex_unlock(&w->clients_lock);
    }
}

static void on_accept_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    Worker *w = t->data;
    if (w->listen_fd >= 0)
        ev_io_start(loop, &w->accept_io);
}

/* Closes clients that are idle; after the grace period, all of them. */
static void drain_step(Worker *w)
{
    bool past_grace = clock_ms() >= atomic_load(&rt.shutdown_deadline_ms);
    idleserver_close_all(w);
    Client *c = w->clients;
    while (c) {
        Client *next = c->next;
        if (past_grace || c->state != CS_READY || client_is_idle(c))
            client_close(c, "shutting down");
        c = next;
    }
    if (!w->clients) {
        if (w->store)
            store_shutdown(w->store);
        ev_timer_stop(w->loop, &w->shutdown_tick);
        ev_timer_stop(w->loop, &w->slow_tick);
        ev_async_stop(w->loop, &w->wakeup);
        ev_prepare_stop(w->loop, &w->before_block);
        ev_check_stop(w->loop, &w->after_poll);
        reap_dead(w);
    }
}

static void on_shutdown_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    drain_step(t->data);
}

static void on_wakeup(struct ev_loop *loop, ev_async *a, int revents)
{
    Worker *w = a->data;
    /* The catalog thread published a snapshot: units waiting for one go on. */
    for (Client *c = w->clients; c;) {
        Client *next = c->next;
        if (c->state == CS_READY && c->req.state == REQ_CATALOG)
            request_catalog_ready(c);
        c = next;
    }
    if (atomic_load(&rt.shutting_down) && w->listen_fd >= 0) {
        stop_listening(w);
        ev_timer_start(loop, &w->shutdown_tick);
        drain_step(w);
    }
}

/* Each worker gets an equal share of cache.local_max_bytes. */
static size_t tier_bytes(const Config *cfg)
{
    int n = rt.n_workers > 0 ? rt.n_workers : config_worker_count(cfg);
    return cfg->cache.local_max_bytes / (size_t)(n > 0 ? n : 1);
}

static void on_slow_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    Worker *w = t->data;
    int64_t now = clock_ms();
    for (Client *c = w->clients; c;) {
        Client *next = c->next;
        request_catalog_tick(c, now);
        c = next;
    }
}

static void on_before_block(struct ev_loop *loop, ev_prepare *p, int revents)
{
    Worker *w = p->data;
    reap_dead(w);
    const Snapshot *snap = runtime_snapshot();
    if (snap != w->snap) {
        /* Kept connections were opened under the old config (upstream, timeouts). */
        idleserver_close_all(w);
        w->snap = snap;
        if (w->store)
            store_reconfigure(w->store, snap->cfg);
        if (w->tier)
            hottier_resize(w->tier, tier_bytes(snap->cfg));
    }
    atomic_store(&w->seen_gen, w->snap->gen);
    store_tick(w->store);
}

static void on_after_poll(struct ev_loop *loop, ev_check *ch, int revents)
{
    Worker *w = ch->data;
    w->now_us = clock_us();
}

static void *worker_main(void *arg)
{
    Worker *w = arg;
    char name[16]; /* what top -H and ps -L show: which worker burns the CPU */
    snprintf(name, sizeof name, "pgstash-w%d", w->index);
    pthread_setname_np(pthread_self(), name);
    ev_run(w->loop, 0);
    reap_dead(w);
    store_free(w->store);
    w->store = NULL;
    sqlparse_memo_free(w->memo);
    w->memo = NULL;
    bw_free(&w->scratch);
    hottier_free(w->tier);
    w->tier = NULL;
    atomic_store(&w->finished, true);
    return NULL;
}

bool worker_init(Worker *w)
{
    pthread_mutex_init(&w->clients_lock, NULL);
    w->loop = ev_loop_new(EVFLAG_AUTO);
    if (!w->loop)
        return false;
    w->snap = runtime_snapshot();
    atomic_store(&w->seen_gen, w->snap->gen);
    tablestats_init(&w->tables);
    tablestats_init(&w->queries);
    w->memo = sqlparse_memo_new(MEMO_CAPACITY);
    w->store = store_new(w, w->snap->cfg);
    w->tier = hottier_new(tier_bytes(w->snap->cfg));
    if (!w->memo || !w->store || !w->tier)
        return false;

    ev_timer_init(&w->accept_retry, on_accept_retry, 0.1, 0.);
    w->accept_retry.data = w;
    ev_async_init(&w->wakeup, on_wakeup);
    w->wakeup.data = w;
    ev_async_start(w->loop, &w->wakeup);
    ev_prepare_init(&w->before_block, on_before_block);
    w->before_block.data = w;
    ev_prepare_start(w->loop, &w->before_block);
    w->now_us = clock_us();
    ev_check_init(&w->after_poll, on_after_poll);
    w->after_poll.data = w;
    ev_check_start(w->loop, &w->after_poll);
    ev_timer_init(&w->shutdown_tick, on_shutdown_tick, 0.05, 0.05);
    w->shutdown_tick.data = w;
    ev_timer_init(&w->slow_tick, on_slow_tick, 0.25, 0.25);
    w->slow_tick.data = w;
    ev_timer_start(w->loop, &w->slow_tick);
    return true;
}

void worker_fini(Worker *w)
{
    if (!w->loop)
        return;
    for (Client *c = w->clients; c;) {
        Client *next = c->next;
        client_close(c, "worker finished");
        c = next;
    }
    idleserver_close_all(w);
    /* Shutting the store down runs every pending Redis callback, so no client is held. */
    store_free(w->store);
    w->store = NULL;
    reap_dead(w);
    sqlparse_memo_free(w->memo);
    w->memo = NULL;
    bw_free(&w->scratch);
    hottier_free(w->tier);
    w->tier = NULL;
    tablestats_free(&w->tables);
    tablestats_free(&w->queries);
    ev_loop_destroy(w->loop);
    w->loop = NULL;
    pthread_mutex_destroy(&w->clients_lock);
}

bool worker_start(Worker *w)
{
    if (!worker_init(w))
        return false;
    ev_io_init(&w->accept_io, on_accept, w->listen_fd, EV_READ);
    w->accept_io.data = w;
    ev_io_start(w->loop, &w->accept_io);
    return pthread_create(&w->thread, NULL, worker_main, w) == 0;
}

void worker_wake(Worker *w)
{
    if (w->loop)
        ev_async_send(w->loop, &w->wakeup);
}
