/*
 * worker.h — one worker thread: its own libev loop, its own SO_REUSEPORT listening socket,
 * and every client connection it accepted (with that client's server connection) for the
 * connection's whole life.
 */
#ifndef PGSTASH_WORKER_H
#define PGSTASH_WORKER_H

#include <ev.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "proxy/buf.h"
#include "proxy/idleserver.h"
#include "proxy/runtime.h"
#include "proxy/stats.h"
#include "proxy/tablestats.h"

typedef struct Client Client;
typedef struct Store Store;
typedef struct SqlMemo SqlMemo;

typedef struct Worker {
    int index;                  /* 0 .. workers-1 */
    pthread_t thread;
    struct ev_loop *loop;
    int listen_fd;              /* -1 once closed for shutdown */
    int spare_fd;               /* kept open to survive EMFILE on accept */
    ev_io accept_io;            /* readable listening socket */
    ev_timer accept_retry;      /* re-enables accepting after EMFILE */
    ev_async wakeup;            /* main thread: shutdown or reload happened */
    ev_prepare before_block;    /* reaps dead clients, picks up a new snapshot */
    ev_check after_poll;        /* reads the clock once per loop iteration */
    int64_t now_us;             /* clock_us() when the loop last woke: the time of its events */
    ev_timer shutdown_tick;     /* while draining: closes idle clients, enforces grace */
    ev_timer slow_tick;         /* 4 Hz housekeeping: units stuck waiting for a catalog */
    const Snapshot *snap;       /* snapshot in use this loop iteration */
    _Atomic uint64_t seen_gen;  /* last snapshot generation this worker picked up */
    pthread_mutex_t clients_lock; /* held to link/unlink clients, and by SHOW CLIENTS */
    Client *clients;            /* live clients (doubly linked) */
    Client *dead;               /* closed clients waiting to be freed */
    int n_clients;
    IdleServers idle;           /* server connections kept for the next client */
    Store *store;               /* this worker's Redis connection */
    struct HotTier *tier;       /* this worker's in-process tier (consistency: local) */
    SqlMemo *memo;              /* this worker's statement-analysis memo */
    WorkerStats stats;          /* counters, read racily by the stats reporter */
    ByteWriter scratch;         /* Redis command arguments are built here */
    TableStats tables;          /* per-table counters */
    TableStats queries;         /* per statement shape counters */
    _Atomic bool finished;      /* the loop has exited */
} Worker;

/* The time the loop last woke (clock_us's clock): good enough for timeouts and for when a
 * unit's bytes arrived, without a clock read per message. */
static inline int64_t worker_now_us(const Worker *w)
{
    return w->now_us;
}

static inline int64_t worker_now_ms(const Worker *w)
{
    return w->now_us / 1000;
}

/* Creates the listening socket of one worker (SO_REUSEPORT). False with err filled. */
bool worker_listen(Worker *w, const HostPort *addr, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Starts the worker's thread; its loop runs until shutdown drains it. */
bool worker_start(Worker *w) __attribute__((warn_unused_result));

/*
 * worker_start's first half: the loop, memo, Redis store, in-process tier and the
 * housekeeping watchers, with no listening socket and no thread. The fuzz harnesses
 * (tests/fuzz/) use it to run clients made with client_new() on a loop they drive
 * themselves, then worker_fini() to close and free all of it (loop included).
 */
bool worker_init(Worker *w) __attribute__((warn_unused_result));
void worker_fini(Worker *w);

/* Asks a worker to look at the runtime flags (shutdown) from another thread. */
void worker_wake(Worker *w);

/* Moves a client to the dead list; it is freed before the loop next blocks. */
void worker_park_client(Worker *w, Client *c);

#endif
