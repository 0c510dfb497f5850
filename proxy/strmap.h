/*
 * strmap.h — a small chained hash map from NUL-terminated strings to pointers, for session
 * tables (statement names, temp tables) and catalog snapshots. Keys are copied; values are
 * the caller's (a free callback may be given).
 */
#ifndef PGSTASH_STRMAP_H
#define PGSTASH_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct StrMapEntry {
    struct StrMapEntry *next;
    uint64_t hash;
    void *value;
    char key[]; /* NUL-terminated copy */
} StrMapEntry;

typedef struct {
    StrMapEntry **buckets;
    size_t n_buckets; /* power of two, 0 until the first insert */
    size_t count;
    void (*free_value)(void *value); /* may be NULL */
} StrMap;

/* Initialises an empty map (no allocation until the first insert). */
void strmap_init(StrMap *m, void (*free_value)(void *));

/* Value of `key`, or NULL. */
void *strmap_get(const StrMap *m, const char *key);

/* Sets key → value (replacing and freeing an old value). False on out-of-memory. */
bool strmap_put(StrMap *m, const char *key, void *value) __attribute__((warn_unused_result));

/* Removes `key` (freeing its value); true when it was there. */
bool strmap_remove(StrMap *m, const char *key);

/* Removes everything. */
void strmap_clear(StrMap *m);

/* Frees the map and its values; safe on a zeroed or already-freed map. */
void strmap_free(StrMap *m);

/* Iteration: for (StrMapIter it = strmap_iter(m); strmap_next(m, &it);) it.entry->key ... */
typedef struct {
    size_t bucket;
    StrMapEntry *entry;
    StrMapEntry *next_entry;
} StrMapIter;

static inline StrMapIter strmap_iter(const StrMap *m)
{
    (void)m;
    StrMapIter it = {0, NULL, NULL};
    return it;
}
bool strmap_next(const StrMap *m, StrMapIter *it);

#endif
