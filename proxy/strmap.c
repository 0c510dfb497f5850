/*
 * strmap.c — chained hashing with doubling; FNV-1a is plenty for the short, trusted-shape
 * keys stored here (names), and the maps are per session or per catalog snapshot.
 */
#include "proxy/strmap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a over a NUL-terminated key, measuring it on the way (no strlen pass). */
static uint64_t key_hash(const char *s, size_t *len)
{
    uint64_t h = 1469598103934665603ull;
    const char *p = s;
    for (; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    *len = (size_t)(p - s);
    return h ^ (h >> 29);
}

void strmap_init(StrMap *m, void (*free_value)(void *))
{
    memset(m, 0, sizeof *m);
    m->free_value = free_value;
}

static StrMapEntry **slot_of(const StrMap *m, uint64_t h, const char *key)
{
    StrMapEntry **link = &m->buckets[h & (m->n_buckets - 1)];
    /* The first bytes are compared inline: the unnamed statement and portal ("") are the
     * keys a relayed extended-protocol unit looks up most. */
    while (*link && !((*link)->hash == h && (*link)->key[0] == key[0] &&
                      (!key[0] || strcmp((*link)->key, key) == 0)))
        link = &(*link)->next;
    return link;
}

void *strmap_get(const StrMap *m, const char *key)
{
    if (!m->n_buckets)
        return NULL;
    size_t len;
    uint64_t h = key_hash(key, &len);
    StrMapEntry *e = *slot_of(m, h, key);
    return e ? e->value : NULL;
}

static bool grow(StrMap *m)
{
    size_t n = m->n_buckets ? m->n_buckets * 2 : 16;
    StrMapEntry **b = calloc(n, sizeof *b);
    if (!b)
        return false;
    for (size_t i = 0; i < m->n_buckets; i++) {
        StrMapEntry *e = m->buckets[i];
        while (e) {
            StrMapEntry *next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->n_buckets = n;
    return true;
}

bool strmap_put(StrMap *m, const char *key, void *value)
{
    if ((m->count + 1 > m->n_buckets) && !grow(m))
        return false;
    size_t len;
    uint64_t h = key_hash(key, &len);
    StrMapEntry **link = slot_of(m, h, key);
    if (*link) {
        if (m->free_value && (*link)->value != value)
            m->free_value((*link)->value);
        (*link)->value = value;
        return true;
    }
    StrMapEntry *e = malloc(sizeof *e + len + 1);
    if (!e)
        return false;
    e->next = NULL;
    e->hash = h;
    e->value = value;
    memcpy(e->key, key, len + 1);
    *link = e;
    m->count++;
    return true;
}

bool strmap_remove(StrMap *m, const char *key)
{
    if (!m->n_buckets)
        return false;
    size_t len;
    uint64_t h = key_hash(key, &len);
    StrMapEntry **link = slot_of(m, h, key);
    StrMapEntry *e = *link;
    if (!e)
        return false;
    *link = e->next;
    if (m->free_value)
        m->free_value(e->value);
    free(e);
    m->count--;
    return true;
}

void strmap_clear(StrMap *m)
{
    for (size_t i = 0; i < m->n_buckets; i++) {
        StrMapEntry *e = m->buckets[i];
        while (e) {
            StrMapEntry *next = e->next;
            if (m->free_value)
                m->free_value(e->value);
            free(e);
            e = next;
        }
        m->buckets[i] = NULL;
    }
    m->count = 0;
}

void strmap_free(StrMap *m)
{
    if (!m->buckets)
        return;
    strmap_clear(m);
    free(m->buckets);
    m->buckets = NULL;
    m->n_buckets = 0;
}

bool strmap_next(const StrMap *m, StrMapIter *it)
{
    if (it->entry) {
        it->entry = it->next_entry;
    }
    while (!it->entry) {
        if (it->bucket >= m->n_buckets)
            return false;
        it->entry = m->buckets[it->bucket++];
    }
    it->next_entry = it->entry->next;
    return true;
}
