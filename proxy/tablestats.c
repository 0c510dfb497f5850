/*
 * tablestats.c — per-table counters and their aggregation for reports.
 */
#include "proxy/tablestats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tablestats_init(TableStats *t)
{
    pthread_mutex_init(&t->lock, NULL);
    strmap_init(&t->map, free);
}

void tablestats_free(TableStats *t)
{
    pthread_mutex_lock(&t->lock);
    strmap_free(&t->map);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_destroy(&t->lock);
}

TableCounters *tablestats_get(TableStats *t, const char *db, const char *table)
{
    char key[192];
    size_t dl = strlen(db), tl = strlen(table);
    if (dl + tl + 2 > sizeof key)
        return NULL;
    memcpy(key, db, dl);
    key[dl] = '.';
    memcpy(key + dl + 1, table, tl + 1);
    return tablestats_get_key(t, key);
}

TableCounters *tablestats_get_key(TableStats *t, const char *key)
{
    TableCounters *tc = strmap_get(&t->map, key); /* only this worker inserts */
    if (tc || t->map.count >= TABLESTATS_MAX)
        return tc;
    tc = calloc(1, sizeof *tc);
    if (!tc)
        return NULL;
    pthread_mutex_lock(&t->lock);
    bool ok = strmap_put(&t->map, key, tc);
    pthread_mutex_unlock(&t->lock);
    if (!ok) {
        free(tc);
        return NULL;
    }
    return tc;
}

static int by_reads(const void *a, const void *b)
{
    const TableTotals *x = a, *y = b;
    if (x->reads != y->reads)
        return x->reads < y->reads ? 1 : -1;
    return strcmp(x->name, y->name);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

size_t tablestats_collect(TableStats *const *ts, int n, TableTotals **out)
{
    StrMap sum;
    strmap_init(&sum, free);
    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&ts[i]->lock);
        for (StrMapIter it = strmap_iter(&ts[i]->map); strmap_next(&ts[i]->map, &it);) {
            const TableCounters *tc = it.entry->value;
            TableTotals *t = strmap_get(&sum, it.entry->key);
            if (!t) {
                t = calloc(1, sizeof *t);
                if (!t || !strmap_put(&sum, it.entry->key, t)) {
                    free(t);
                    continue;
                }
                snprintf(t->name, sizeof t->name, "%s", it.entry->key);
            }
            t->reads += LOAD(tc->reads);
            t->hits += LOAD(tc->hits);
            t->misses += LOAD(tc->misses);
            t->bypasses += LOAD(tc->bypasses);
            t->invalidations += LOAD(tc->invalidations);
            t->last_reason = atomic_load_explicit(&tc->last_reason, memory_order_relaxed);
        }
        pthread_mutex_unlock(&ts[i]->lock);
    }
    size_t count = sum.count;
    TableTotals *arr = count ? malloc(count * sizeof *arr) : NULL;
    size_t k = 0;
    for (StrMapIter it = strmap_iter(&sum); arr && strmap_next(&sum, &it);)
        arr[k++] = *(TableTotals *)it.entry->value;
    strmap_free(&sum);
    if (arr)
        qsort(arr, k, sizeof *arr, by_reads);
    *out = arr;
    return k;
}
