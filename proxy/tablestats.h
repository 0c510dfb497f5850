/*
 * tablestats.h — traffic counters by name (reads, hits, misses, bypasses, invalidations), one
 * map per worker: per table ("db.table") and per statement shape (SHOW QUERIES). The worker is the only writer of its counters and the only one that
 * inserts; the reporter reads under the map's lock, so inserting never races iterating.
 */
#ifndef PGSTASH_TABLESTATS_H
#define PGSTASH_TABLESTATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/strmap.h"

#define TABLESTATS_MAX 10000 /* tables tracked per worker; later ones are not counted */

typedef struct {
    _Atomic uint64_t reads;         /* reads of the table, cached or not */
    _Atomic uint64_t hits;          /* answered from the cache */
    _Atomic uint64_t misses;        /* cacheable, sent to the server */
    _Atomic uint64_t bypasses;      /* not cacheable */
    _Atomic uint64_t invalidations; /* version bumps */
    _Atomic int last_reason;        /* statement shapes: the latest decision (0 = cache) */
} TableCounters;

typedef struct {
    pthread_mutex_t lock; /* held by the worker to insert, by the reporter to read */
    StrMap map;           /* "db.table" → TableCounters */
} TableStats;

void tablestats_init(TableStats *t);
void tablestats_free(TableStats *t);

/* The counters of one table (created on first use), or NULL when the map is full. */
TableCounters *tablestats_get(TableStats *t, const char *db, const char *table);

/* The same under any key (a statement shape). */
TableCounters *tablestats_get_key(TableStats *t, const char *key);

/* One table's totals over all workers. */
typedef struct {
    char name[520];
    uint64_t reads, hits, misses, bypasses, invalidations;
    int last_reason;
} TableTotals;

/*
 * Sums the tables of all workers into `out` (caller frees), sorted by reads, most first.
 * Returns the count.
 */
size_t tablestats_collect(TableStats *const *ts, int n, TableTotals **out);

#endif
