/*
 * hottier.c — an LRU hash of entry blobs. Keys are SHA-256 digests, so their first bytes are
 * already a good hash. Each entry is one allocation (header and blob together).
 */
#include "proxy/hottier.h"

#include <stdlib.h>
#include <string.h>

typedef struct HotEntry {
    struct HotEntry *chain;      /* next in the hash bucket */
    struct HotEntry *prev, *next;/* LRU list, most recent first */
    CacheDigest key;
    int64_t expires_ms;
    EntryView view;              /* points into blob */
    size_t len;
    uint8_t blob[];
} HotEntry;

struct HotTier {
    HotEntry **buckets;
    size_t n_buckets;            /* power of two */
    HotEntry lru;                /* sentinel: lru.next is the most recent */
    size_t bytes, max_bytes, entries;
    uint64_t hits, misses, stores, evictions;
};

#define ENTRY_OVERHEAD (sizeof(HotEntry) + 16)

static size_t bucket_of(const HotTier *t, const CacheDigest *key)
{
    uint64_t h;
    memcpy(&h, key->bytes, sizeof h);
    return (size_t)h & (t->n_buckets - 1);
}

HotTier *hottier_new(size_t max_bytes)
{
    HotTier *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_buckets = 1024;
    t->buckets = calloc(t->n_buckets, sizeof *t->buckets);
    if (!t->buckets) {
        free(t);
        return NULL;
    }
    t->lru.prev = t->lru.next = &t->lru;
    t->max_bytes = max_bytes;
    return t;
}

static void unlink_lru(HotEntry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
}

static void push_front(HotTier *t, HotEntry *e)
{
    e->next = t->lru.next;
    e->prev = &t->lru;
    t->lru.next->prev = e;
    t->lru.next = e;
}

static void remove_entry(HotTier *t, HotEntry *e)
{
    HotEntry **link = &t->buckets[bucket_of(t, &e->key)];
    while (*link && *link != e)
        link = &(*link)->chain;
    if (*link)
        *link = e->chain;
    unlink_lru(e);
    t->bytes -= e->len + ENTRY_OVERHEAD;
    t->entries--;
    free(e);
}

static void evict_to(HotTier *t, size_t limit)
{
    while (t->bytes > limit && t->lru.prev != &t->lru) {
        remove_entry(t, t->lru.prev);
        t->evictions++;
    }
}

void hottier_free(HotTier *t)
{
    if (!t)
        return;
    evict_to(t, 0);
    free(t->buckets);
    free(t);
}

void hottier_resize(HotTier *t, size_t max_bytes)
{
    t->max_bytes = max_bytes;
    evict_to(t, max_bytes);
}

static HotEntry *find(HotTier *t, const CacheDigest *key)
{
    for (HotEntry *e = t->buckets[bucket_of(t, key)]; e; e = e->chain)
        if (memcmp(e->key.bytes, key->bytes, CACHEKEY_LEN) == 0)
            return e;
    return NULL;
}

bool hottier_get(HotTier *t, const CacheDigest *key, int64_t now_ms, EntryView *out)
{
    HotEntry *e = t->entries ? find(t, key) : NULL;
    if (!e || e->expires_ms <= now_ms) {
        if (e)
            remove_entry(t, e);
        t->misses++;
        return false;
    }
    unlink_lru(e);
    push_front(t, e);
    *out = e->view;
    t->hits++;
    return true;
}

static void grow(HotTier *t)
{
    size_t n = t->n_buckets * 2;
    HotEntry **b = calloc(n, sizeof *b);
    if (!b)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->n_buckets; i++) {
        HotEntry *e = t->buckets[i];
        while (e) {
            HotEntry *next = e->chain;
            uint64_t h;
            memcpy(&h, e->key.bytes, sizeof h);
            e->chain = b[h & (n - 1)];
            b[h & (n - 1)] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->n_buckets = n;
}

void hottier_put(HotTier *t, const CacheDigest *key, const uint8_t *blob, size_t len,
                 int64_t expires_ms)
{
    if (len + ENTRY_OVERHEAD > t->max_bytes / 4)
        return; /* one entry may not crowd out the rest */
    HotEntry *old = find(t, key);
    if (old)
        remove_entry(t, old);
    HotEntry *e = malloc(sizeof *e + len);
    if (!e)
        return;
    memcpy(e->blob, blob, len);
    if (!entry_parse(e->blob, len, &e->view)) {
        free(e);
        return;
    }
    e->key = *key;
    e->len = len;
    e->expires_ms = expires_ms;
    evict_to(t, t->max_bytes - (len + ENTRY_OVERHEAD));
    if (t->entries + 1 > t->n_buckets)
        grow(t);
    size_t b = bucket_of(t, key);
    e->chain = t->buckets[b];
    t->buckets[b] = e;
    push_front(t, e);
    t->bytes += len + ENTRY_OVERHEAD;
    t->entries++;
    t->stores++;
}

void hottier_stats(const HotTier *t, HotTierStats *out)
{
    out->hits = t->hits;
    out->misses = t->misses;
    out->stores = t->stores;
    out->evictions = t->evictions;
    out->bytes = t->bytes;
    out->entries = t->entries;
}
