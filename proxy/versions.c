/*
 * versions.c — a sharded hash map of table versions. Tables are few (hundreds), lookups
 * are per statement: 64 shards, each a mutex over a chained table, keep contention between
 * workers negligible without lock-free cleverness.
 */
#include "proxy/versions.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SHARDS  64
#define BUCKETS 256 /* per shard */

typedef struct VEntry {
    struct VEntry *next;
    uint64_t hash;
    uint64_t version;
    size_t db_len;
    char key[]; /* db \0 table \0 */
} VEntry;

typedef struct {
    pthread_mutex_t lock;
    VEntry *buckets[BUCKETS];
} Shard;

static Shard shards[SHARDS];
static _Atomic uint64_t epoch;
static _Atomic bool epoch_known;

static uint64_t hash2(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a, over "a\0b" */
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0) * 1099511628211ull;
    for (const char *p = b; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h;
}

void versions_init(void)
{
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_init(&shards[i].lock, NULL);
        memset(shards[i].buckets, 0, sizeof shards[i].buckets);
    }
    atomic_store(&epoch_known, false);
}

static void clear_shard(Shard *s)
{
    for (int b = 0; b < BUCKETS; b++) {
        VEntry *e = s->buckets[b];
        while (e) {
            VEntry *next = e->next;
            free(e);
            e = next;
        }
        s->buckets[b] = NULL;
    }
}

void versions_free(void)
{
    for (int i = 0; i < SHARDS; i++) {
        clear_shard(&shards[i]);
        pthread_mutex_destroy(&shards[i].lock);
    }
}

void versions_forget_all(void)
{
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&shards[i].lock);
        clear_shard(&shards[i]);
        pthread_mutex_unlock(&shards[i].lock);
    }
    atomic_store(&epoch_known, false);
}

static VEntry *find(Shard *s, uint64_t h, const char *db, const char *table)
{
    for (VEntry *e = s->buckets[(h >> 6) % BUCKETS]; e; e = e->next)
        if (e->hash == h && strcmp(e->key, db) == 0 && strcmp(e->key + e->db_len + 1, table) == 0)
            return e;
    return NULL;
}

bool versions_get(const char *db, const char *table, uint64_t *out)
{
    uint64_t h = hash2(db, table);
    Shard *s = &shards[h % SHARDS];
    pthread_mutex_lock(&s->lock);
    VEntry *e = find(s, h, db, table);
    if (e)
        *out = e->version;
    pthread_mutex_unlock(&s->lock);
    return e != NULL;
}

static void store_version(const char *db, const char *table, uint64_t v, bool only_raise)
{
    uint64_t h = hash2(db, table);
    Shard *s = &shards[h % SHARDS];
    pthread_mutex_lock(&s->lock);
    VEntry *e = find(s, h, db, table);
    if (e) {
        if (!only_raise || v > e->version)
            e->version = v;
    } else {
        size_t dl = strlen(db), tl = strlen(table);
        e = malloc(sizeof *e + dl + tl + 2);
        if (e) {
            e->hash = h;
            e->version = v;
            e->db_len = dl;
            memcpy(e->key, db, dl + 1);
            memcpy(e->key + dl + 1, table, tl + 1);
            size_t b = (h >> 6) % BUCKETS;
            e->next = s->buckets[b];
            s->buckets[b] = e;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

void versions_set(const char *db, const char *table, uint64_t v)
{
    store_version(db, table, v, false);
}

void versions_raise(const char *db, const char *table, uint64_t v)
{
    store_version(db, table, v, true);
}

bool versions_epoch(uint64_t *out)
{
    if (!atomic_load(&epoch_known))
        return false;
    *out = atomic_load(&epoch);
    return true;
}

void versions_set_epoch(uint64_t v)
{
    atomic_store(&epoch, v);
    atomic_store(&epoch_known, true);
}

void versions_raise_epoch(uint64_t v)
{
    uint64_t cur = atomic_load(&epoch);
    while (v > cur && !atomic_compare_exchange_weak(&epoch, &cur, v))
        ;
    atomic_store(&epoch_known, true);
}
