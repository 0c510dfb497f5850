/*
 * hottier.h — the in-process tier of `consistency: local`: a worker's own LRU of recently used
 * entries, keyed like Redis entries (the key holds the table versions, so a write makes
 * entries unreachable here exactly as in Redis). A hit in it costs no network at all.
 * Bounded by bytes; entries also expire after min(their TTL, cache.local_ttl).
 */
#ifndef PGSTASH_HOTTIER_H
#define PGSTASH_HOTTIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cachekeys/cachekeys.h"
#include "proxy/entry.h"

typedef struct HotTier HotTier;

/* A tier holding at most max_bytes of entries (0 = always empty). NULL on out-of-memory. */
HotTier *hottier_new(size_t max_bytes);
void hottier_free(HotTier *t);

/* Changes the bound, evicting as needed. */
void hottier_resize(HotTier *t, size_t max_bytes);

/*
 * The entry under `key` (its view points into the tier: valid until the next call on the
 * tier), or false when absent or expired.
 */
bool hottier_get(HotTier *t, const CacheDigest *key, int64_t now_ms, EntryView *out);

/* Stores a copy of a validated entry blob until expires_ms (replacing an older one). */
void hottier_put(HotTier *t, const CacheDigest *key, const uint8_t *blob, size_t len,
                 int64_t expires_ms);

/* Counters for reports. */
typedef struct {
    uint64_t hits, misses, stores, evictions;
    size_t bytes, entries;
} HotTierStats;
void hottier_stats(const HotTier *t, HotTierStats *out);

#endif
