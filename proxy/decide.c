/*
 * decide.c — cacheability and invalidation decisions. Correctness first: whenever a fact is
 * unknown (catalog unreadable, a function pgstash has never heard of), reads bypass and
 * writes invalidate everything.
 */
#include "proxy/decide.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/reasons.h"

void readtables_free(ReadTables *t)
{
    free((void *)t->heap);
    t->heap = NULL;
    t->n_tables = 0;
}

/* Inserts into the sorted unique list. False on out-of-memory. */
static bool add_table(ReadTables *t, size_t *cap, const char *name)
{
    const char **list = t->heap ? t->heap : t->inline_tables;
    size_t lo = 0, hi = t->n_tables;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(list[mid], name);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (t->n_tables == *cap) {
        size_t ncap = *cap * 2;
        const char **n = malloc(ncap * sizeof *n);
        if (!n)
            return false;
        memcpy(n, list, t->n_tables * sizeof *n);
        free((void *)t->heap);
        t->heap = list = n;
        *cap = ncap;
    }
    memmove(&list[lo + 1], &list[lo], (t->n_tables - lo) * sizeof *list);
    list[lo] = name;
    t->n_tables++;
    return true;
}

static int function_reason(const CatalogDb *cat, const SqlFunction *f)
{
    if (!cat) {
        char v = sqlparse_builtin_volatility_nargs(f->name, f->nargs);
        if (v == 'i')
            return DECIDE_CACHE;
        return v ? SQL_REASON_VOLATILE_FUNCTION : BYPASS_USER_FUNCTION;
    }
    const FuncInfo *fi = catalog_func(cat, f->name);
    if (!fi)
        return BYPASS_USER_FUNCTION;
    if (catalog_func_volatility(fi, f->nargs) == 'i')
        return DECIDE_CACHE;
    return fi->builtin ? SQL_REASON_VOLATILE_FUNCTION : BYPASS_USER_FUNCTION;
}

/* Applies a table's own cache rule to the TTL; false when it must not be cached. */
static bool apply_ttl(const Config *cfg, const char *name, int64_t *ttl)
{
    int64_t t = config_table_ttl_ms(cfg, name);
    if (t <= 0)
        return false;
    if (*ttl < 0 || t < *ttl)
        *ttl = t;
    return true;
}

int decide_read(const Config *cfg, const CatalogDb *cat, CatalogState cat_state,
                const Session *s, char tx_status, const SqlAnalysis *a, ReadTables *out)
{
    memset(out, 0, sizeof *out);
    size_t cap = DECIDE_INLINE_TABLES;

    if (!cfg->cache.enabled)
        return BYPASS_CACHE_DISABLED;
    if (a->reason != SQL_REASON_NONE)
        return a->reason;
    if (a->kind != SQL_KIND_READ)
        return SQL_REASON_NOT_READ;
    if (tx_status == 'E')
        return BYPASS_TX_FAILED;
    if (tx_status == 'T') {
        if (s->tx_wrote)
            return BYPASS_TX_AFTER_WRITE;
        if (s->tx_iso_high || (s->tx_iso_default && s->default_iso_high))
            return BYPASS_TX_ISOLATION;
    }
    for (size_t i = 0; i < a->n_functions; i++) {
        int r = function_reason(cat, &a->functions[i]);
        if (r != DECIDE_CACHE)
            return r;
    }
    if (a->n_reads > 0 && !cat)
        return cat_state == CATALOG_LOADING ? BYPASS_CATALOG_LOADING : BYPASS_CATALOG_UNAVAILABLE;

    int64_t ttl = -1;
    for (size_t i = 0; i < a->n_reads; i++) {
        const SqlRelation *rel = &a->reads[i];
        if (!rel->schema && strmap_get(&s->temp_tables, rel->name))
            return BYPASS_SESSION_TEMP_TABLE;
        const RelInfo *ri = catalog_rel(cat, rel->name);
        if (!ri || ri->kinds == 0)
            return BYPASS_UNKNOWN_RELATION;
        if (ri->kinds & REL_FOREIGN)
            return BYPASS_FOREIGN_TABLE;
        if (ri->unlogged)
            return BYPASS_UNLOGGED_TABLE;
        if (!apply_ttl(cfg, rel->name, &ttl))
            return BYPASS_TABLE_NOT_CACHED;
        if (!add_table(out, &cap, rel->name))
            return BYPASS_PROTOCOL;
        if (ri->kinds & REL_VIEW) {
            const TableRule *rule = config_table(cfg, rel->name);
            if (!ri->view_cacheable && !(rule && rule->safe))
                return BYPASS_VIEW;
            for (size_t k = 0; ri->read_tables && ri->read_tables[k]; k++) {
                const char *base = ri->read_tables[k];
                if (strmap_get(&s->temp_tables, base))
                    return BYPASS_SESSION_TEMP_TABLE;
                const RelInfo *bi = catalog_rel(cat, base);
                if (!bi || (bi->kinds & REL_FOREIGN))
                    return bi ? BYPASS_FOREIGN_TABLE : BYPASS_UNKNOWN_RELATION;
                if (bi->unlogged)
                    return BYPASS_UNLOGGED_TABLE;
                if (!apply_ttl(cfg, base, &ttl))
                    return BYPASS_TABLE_NOT_CACHED;
                if (!add_table(out, &cap, base))
                    return BYPASS_PROTOCOL;
            }
        }
    }
    if (ttl < 0)
        ttl = cfg->cache.default_ttl_ms;
    if (ttl <= 0)
        return BYPASS_TABLE_NOT_CACHED;
    out->ttl_ms = ttl;
    return DECIDE_CACHE;
}

/* What writing one relation invalidates. */
static void add_written(const Config *cfg, const CatalogDb *cat, const char *name, WriteSet *w)
{
    writeset_add(w, name);
    const TableRule *rule = config_table(cfg, name);
    for (size_t i = 0; rule && i < rule->n_also_invalidates; i++)
        writeset_add(w, rule->also_invalidates[i]);
    if (!cat) {
        /* Partitions, cascades and triggers are unknown without the catalog. */
        w->all = true;
        return;
    }
    const RelInfo *ri = catalog_rel(cat, name);
    if (!ri)
        return; /* a table created since the catalog was read, or a temporary one */
    for (size_t i = 0; ri->also_bump && ri->also_bump[i]; i++)
        writeset_add(w, ri->also_bump[i]);
    if (ri->hidden_writes && !(rule && rule->also_invalidates_set))
        w->all = true;
}

/* A function that may write: volatile and not built in. */
static void add_function(const Config *cfg, const CatalogDb *cat, const SqlFunction *f,
                         WriteSet *w, bool *maybe)
{
    bool user_volatile;
    if (cat) {
        const FuncInfo *fi = catalog_func(cat, f->name);
        user_volatile = !fi || (!fi->builtin && catalog_func_volatility(fi, f->nargs) == 'v');
    } else {
        user_volatile = sqlparse_builtin_volatility(f->name) == 0;
    }
    if (!user_volatile)
        return;
    *maybe = true;
    const FunctionRule *rule = config_function(cfg, f->name);
    if (!rule) {
        w->all = true;
        return;
    }
    for (size_t i = 0; i < rule->n_writes; i++)
        writeset_add(w, rule->writes[i]);
}

bool decide_writes(const Config *cfg, const CatalogDb *cat, const Session *s, const SqlAnalysis *a,
                   WriteSet *w)
{
    bool maybe = false;
    if (a->prepare_name)
        return false; /* PREPARE runs nothing now: its EXECUTE does */
    if (a->execute_name) {
        const SqlAnalysis *inner = strmap_get(&s->sql_prepared, a->execute_name);
        if (!inner) {
            w->all = true;
            return true;
        }
        for (size_t i = 0; i < inner->n_writes; i++)
            add_written(cfg, cat, inner->writes[i].name, w);
        for (size_t i = 0; i < inner->n_functions; i++)
            add_function(cfg, cat, &inner->functions[i], w, &maybe);
        return maybe || inner->n_writes > 0 || inner->kind != SQL_KIND_READ;
    }
    if (a->invalidate_all)
        w->all = true;
    if (a->tx_op == SQL_TX_COMMIT_PREPARED)
        w->all = true; /* its tables were written by another session */
    if (a->command && strcmp(a->command, "DoStmt") == 0)
        w->all = true;
    for (size_t i = 0; i < a->n_writes; i++)
        add_written(cfg, cat, a->writes[i].name, w);
    for (size_t i = 0; i < a->n_functions; i++)
        add_function(cfg, cat, &a->functions[i], w, &maybe);
    return maybe || w->all || a->n_writes > 0 || a->kind == SQL_KIND_WRITE ||
           a->kind == SQL_KIND_DDL || a->kind == SQL_KIND_ERROR;
}
