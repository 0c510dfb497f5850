/*
 * runtime.h — the process-wide state workers share: the current configuration snapshot
 * (immutable, swapped on reload), the shutdown flag and connection counters. Everything
 * else a worker uses is its own.
 */
#ifndef PGSTASH_RUNTIME_H
#define PGSTASH_RUNTIME_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

/* A Config plus what is derived from it once per load (resolved addresses). Immutable. */
typedef struct Snapshot {
    Config *cfg;                          /* the loaded configuration */
    struct sockaddr_storage upstream;     /* resolved upstream address */
    socklen_t upstream_len;
    char upstream_desc[300];              /* "127.0.0.1:5432" for messages */
    uint64_t gen;                         /* 1, 2, ... one per load */
    struct Snapshot *retired_next;        /* main thread's list of old snapshots */
} Snapshot;

typedef struct {
    _Atomic(Snapshot *) snap;             /* current snapshot */
    _Atomic bool shutting_down;           /* SIGTERM received: accept nothing new */
    _Atomic int64_t shutdown_deadline_ms; /* clock_ms() after which clients are cut */
    _Atomic int clients;                  /* client connections open now */
    _Atomic int servers;                  /* upstream connections open now */
    _Atomic int servers_kept;             /* of which kept, waiting for a client */
    _Atomic uint64_t clients_total;       /* client connections accepted since start */
    _Atomic uint64_t next_client_id;      /* identities for log lines */
    int64_t started_ms;                   /* clock_ms() at start */
    struct Worker *workers;               /* all workers (fixed after start-up) */
    int n_workers;
    const char *config_path;              /* -c FILE, or NULL */
} Runtime;

extern Runtime rt;

/* Builds a snapshot (resolving the upstream address). False with a message in err. */
bool snapshot_build(Config *cfg, uint64_t gen, Snapshot **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void snapshot_free(Snapshot *s);

static inline const Snapshot *runtime_snapshot(void)
{
    return atomic_load_explicit(&rt.snap, memory_order_acquire);
}

#endif
