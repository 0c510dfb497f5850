/*
 * stats.h — counters and latency histograms. Each worker writes only its own WorkerStats
 * (single writer: plain increments through relaxed atomics, no locked instructions); the
 * reporter sums all workers' counters when it logs or serves them.
 */
#ifndef PGSTASH_STATS_H
#define PGSTASH_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HIST_SUB 8                        /* sub-buckets per power of two */
#define HIST_BUCKETS (40 * HIST_SUB)      /* covers 1 µs .. ~2^40 µs */
#define STATS_MAX_REASONS 48              /* bypass reason codes (see decide.h) */

typedef struct {
    _Atomic uint64_t counts[HIST_BUCKETS]; /* log-linear buckets of microseconds */
} Histogram;

typedef struct {
    _Atomic uint64_t queries;        /* cacheable-or-not reads and writes seen */
    _Atomic uint64_t hits;           /* statements answered from the cache */
    _Atomic uint64_t local_hits;     /* units answered from the in-process tier (no Redis) */
    _Atomic uint64_t misses;         /* cacheable statements sent to the server */
    _Atomic uint64_t fills;          /* entries stored */
    _Atomic uint64_t fill_skipped;   /* results too big or not storable */
    _Atomic uint64_t bypasses[STATS_MAX_REASONS]; /* not cacheable, by reason */
    _Atomic uint64_t invalidations;  /* table versions bumped */
    _Atomic uint64_t epoch_bumps;    /* global epoch bumps */
    _Atomic uint64_t writes;         /* statements that wrote tables */
    _Atomic uint64_t redis_errors;   /* failed or unreadable Redis replies */
    _Atomic uint64_t redis_timeouts; /* Redis replies later than cache.redis_timeout */
    _Atomic uint64_t bad_entries;    /* stored blobs that failed validation */
    _Atomic uint64_t protocol_errors;/* clients or servers closed for protocol violations */
    _Atomic uint64_t upstream_errors;/* upstream connections that failed */
    _Atomic uint64_t server_reuses;  /* logins served by a kept server connection */
    Histogram hit_latency;           /* request to answer, for hits */
    Histogram miss_latency;          /* request to ReadyForQuery, for misses */
} WorkerStats;

/* Single-writer increment: only the owning worker calls it. */
static inline void stat_add(_Atomic uint64_t *counter, uint64_t n)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + n,
                          memory_order_relaxed);
}
#define STAT_INC(counter) stat_add(&(counter), 1)

void hist_record(Histogram *h, uint64_t micros);
/* Lower bound, in microseconds, of bucket b. */
uint64_t hist_bucket_floor(unsigned b);
/* Value (µs) at quantile q (0..1) of the sum of n histograms; 0 when empty. */
uint64_t hist_quantile(const Histogram *const *hs, size_t n, double q);

/* Sums of every worker's counters. */
typedef struct {
    uint64_t queries, hits, local_hits, misses, fills, fill_skipped, invalidations, epoch_bumps, writes;
    uint64_t redis_errors, redis_timeouts, bad_entries, protocol_errors, upstream_errors;
    uint64_t server_reuses;
    uint64_t bypasses[STATS_MAX_REASONS];
    uint64_t bypass_total;
    uint64_t hit_p50_us, hit_p99_us, miss_p50_us, miss_p99_us;
} StatsTotals;

#endif
