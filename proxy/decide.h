/*
 * decide.h — the proxy's judgement of one statement: may this read be cached (combining
 * sqlparse's verdict with the catalog, the configuration, the session and the transaction),
 * under which tables and TTL; and which tables does this statement's success invalidate.
 */
#ifndef PGSTASH_DECIDE_H
#define PGSTASH_DECIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "proxy/catalog.h"
#include "proxy/session.h"
#include "sqlparse/sqlparse.h"

#define DECIDE_CACHE 0       /* reason code meaning "cacheable" */
#define DECIDE_INLINE_TABLES 8

/* The tables a cacheable read depends on (sorted, unique), and its TTL. */
typedef struct {
    const char *inline_tables[DECIDE_INLINE_TABLES];
    const char **heap;       /* used instead of inline_tables beyond DECIDE_INLINE_TABLES */
    size_t n_tables;
    int64_t ttl_ms;
} ReadTables;

/* The i-th table. (No self-pointer: a ReadTables may be moved by realloc.) */
static inline const char *readtables_name(const ReadTables *t, size_t i)
{
    return t->heap ? t->heap[i] : t->inline_tables[i];
}

void readtables_free(ReadTables *t);

/*
 * Decides whether the read `a` may be served from or stored into the cache. Returns
 * DECIDE_CACHE (filling *out; free with readtables_free) or a reason code (SqlReason or
 * BypassReason). `cat` is NULL when the catalog is not available (cat_state says why).
 * Table names in *out point into `a` and `cat`, which must outlive it.
 */
int decide_read(const Config *cfg, const CatalogDb *cat, CatalogState cat_state,
                const Session *s, char tx_status, const SqlAnalysis *a, ReadTables *out);

/*
 * Adds to `w` what a successful execution of `a` invalidates: its written tables with their
 * partitions, cascading foreign keys and view base tables; declared or global-epoch writes
 * of triggers, rules, volatile user functions, procedures and DO blocks; everything for
 * privilege changes. Returns true when the statement may have written anything at all
 * (which ends caching in an open transaction block).
 */
bool decide_writes(const Config *cfg, const CatalogDb *cat, const Session *s, const SqlAnalysis *a,
                   WriteSet *w);

#endif
