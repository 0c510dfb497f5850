/*
 * catalog.c — the catalog thread. It owns blocking libpq connections (one per load), so
 * workers never wait on it: a worker asks, gets LOADING, and is woken when a snapshot is
 * published. Every query here is a fixed string; nothing from a client is ever spliced in.
 */
#include "proxy/catalog.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy/log.h"
#include "proxy/runtime.h"
#include "proxy/worker.h"
#include "sqlparse/sqlparse.h"

#define RETRY_MS 5000        /* a failed database is tried again after this */
#define STALE_RETRY_MS 500   /* a stale one (DDL since it was read) sooner */
#define MAX_CLOSURE 64       /* views nested deeper than this are not resolved */

typedef struct DbState {
    CatalogDb *current;      /* latest good snapshot, or NULL */
    uint64_t dirty;          /* catalog_invalidate calls so far */
    uint64_t loading_dirty;  /* `dirty` when the load under way started */
    CatalogState state;      /* what acquire reports when current is NULL */
    bool wanted;             /* a (re)load is requested */
    int64_t not_before_ms;   /* earliest time to load (retry back-off / debounce) */
    bool warned;             /* a failure was logged and not yet followed by success */
} DbState;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static StrMap dbs;           /* database name → DbState */
static pthread_t thread;
static bool running, stopping;
static _Atomic uint64_t generation;
static Worker *workers_;
static int n_workers_;

/* --- snapshot building ------------------------------------------------------------------ */

static void free_strv(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static void free_rel(void *p)
{
    RelInfo *r = p;
    if (!r)
        return;
    free_strv(r->read_tables);
    free_strv(r->also_bump);
    free(r);
}

static void catalog_free(CatalogDb *cat)
{
    if (!cat)
        return;
    strmap_free(&cat->rels);
    strmap_free(&cat->funcs);
    free_strv(cat->hidden_writers);
    free_strv(cat->policy_settings);
    free(cat->db);
    free(cat);
}

/* Appends `s` to a NULL-terminated vector unless present. */
static bool strv_add(char ***v, const char *s)
{
    size_t n = 0;
    if (*v)
        for (; (*v)[n]; n++)
            if (strcmp((*v)[n], s) == 0)
                return true;
    char **nv = realloc(*v, (n + 2) * sizeof *nv);
    if (!nv)
        return false;
    *v = nv;
    nv[n] = strdup(s);
    nv[n + 1] = NULL;
    return nv[n] != NULL;
}

static RelInfo *rel_get_or_add(CatalogDb *cat, const char *name)
{
    RelInfo *r = strmap_get(&cat->rels, name);
    if (r)
        return r;
    r = calloc(1, sizeof *r);
    if (!r || !strmap_put(&cat->rels, name, r)) {
        free(r);
        return NULL;
    }
    return r;
}

static PGresult *run(PGconn *conn, const char *sql, char *err, size_t errlen)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
        size_t n = strlen(err);
        while (n && (err[n - 1] == '\n'))
            err[--n] = 0;
        PQclear(res);
        return NULL;
    }
    return res;
}

static const char SQL_RELATIONS[] =
    "SELECT c.relname, c.relkind, c.relpersistence, c.relrowsecurity "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r','p','v','m','f') AND c.relpersistence <> 't' "
    "AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

static const char SQL_VIEWS[] =
    "SELECT c.relname, pg_catalog.pg_get_viewdef(c.oid) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind = 'v' AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'";

static const char SQL_INHERITS[] =
    "SELECT c.relname, p.relname FROM pg_catalog.pg_inherits i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid "
    "JOIN pg_catalog.pg_class p ON p.oid = i.inhparent";

static const char SQL_CASCADES[] =
    "SELECT ref.relname, src.relname FROM pg_catalog.pg_constraint k "
    "JOIN pg_catalog.pg_class src ON src.oid = k.conrelid "
    "JOIN pg_catalog.pg_class ref ON ref.oid = k.confrelid "
    "WHERE k.contype = 'f' AND (k.confdeltype IN ('c','n','d') OR k.confupdtype IN ('c','n','d'))";

static const char SQL_HIDDEN_WRITERS[] =
    "SELECT DISTINCT c.relname FROM pg_catalog.pg_trigger t "
    "JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid WHERE NOT t.tgisinternal "
    "UNION SELECT DISTINCT c.relname FROM pg_catalog.pg_rewrite r "
    "JOIN pg_catalog.pg_class c ON c.oid = r.ev_class "
    "WHERE c.relkind IN ('r','p') AND r.rulename <> '_RETURN'";

static const char SQL_FUNCTIONS[] =
    "SELECT p.proname, p.provolatile, n.nspname = 'pg_catalog', p.pronargs, "
    "p.pronargdefaults, p.provariadic <> 0 "
    "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

static const char SQL_POLICIES[] =
    "SELECT pg_catalog.pg_get_expr(p.polqual, p.polrelid), "
    "pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_catalog.pg_policy p";

/* Adds every current_setting('name...') with a dotted name found in a deparsed expression. */
static bool scan_settings(CatalogDb *cat, const char *expr)
{
    static const char needle[] = "current_setting('";
    for (const char *p = expr; (p = strstr(p, needle)) != NULL;) {
        p += sizeof needle - 1;
        char name[128];
        size_t n = 0;
        while (*p && *p != '\'' && n < sizeof name - 1)
            name[n++] = (char)tolower((unsigned char)*p++);
        name[n] = 0;
        if (*p == '\'' && strchr(name, '.') && !strv_add(&cat->policy_settings, name))
            return false;
    }
    return true;
}

static bool load_policies(PGconn *conn, CatalogDb *cat, char *err, size_t errlen)
{
    PGresult *res = run(conn, SQL_POLICIES, err, errlen);
    if (!res)
        return false;
    for (int i = 0; i < PQntuples(res); i++)
        for (int col = 0; col < 2; col++)
            if (!PQgetisnull(res, i, col) && !scan_settings(cat, PQgetvalue(res, i, col))) {
                PQclear(res);
                snprintf(err, errlen, "out of memory");
                return false;
            }
    PQclear(res);
    return true;
}

static int volatility_rank(char v)
{
    return v == 'v' ? 2 : v == 's' ? 1 : 0;
}

static void free_func(void *p)
{
    FuncInfo *f = p;
    if (f)
        free(f->overloads);
    free(f);
}

static bool load_functions(PGconn *conn, CatalogDb *cat, char *err, size_t errlen)
{
    PGresult *res = run(conn, SQL_FUNCTIONS, err, errlen);
    if (!res)
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *name = PQgetvalue(res, i, 0);
        char vol = PQgetvalue(res, i, 1)[0];
        bool builtin = PQgetvalue(res, i, 2)[0] == 't';
        int nargs = atoi(PQgetvalue(res, i, 3));
        int ndefaults = atoi(PQgetvalue(res, i, 4));
        bool variadic = PQgetvalue(res, i, 5)[0] == 't';
        FuncInfo *f = strmap_get(&cat->funcs, name);
        if (!f) {
            f = calloc(1, sizeof *f);
            if (!f || !strmap_put(&cat->funcs, name, f)) {
                free(f);
                goto oom;
            }
            f->volatility = vol;
            f->builtin = builtin;
        } else {
            if (volatility_rank(vol) > volatility_rank(f->volatility))
                f->volatility = vol;
            f->builtin = f->builtin && builtin;
        }
        FuncOverload *ov = realloc(f->overloads, (f->n_overloads + 1) * sizeof *ov);
        if (!ov)
            goto oom;
        f->overloads = ov;
        ov[f->n_overloads++] = (FuncOverload){(int16_t)(nargs - ndefaults),
                                              variadic ? INT16_MAX : (int16_t)nargs, vol};
    }
    PQclear(res);
    return true;

oom:
    PQclear(res);
    snprintf(err, errlen, "out of memory");
    return false;
}

char catalog_func_volatility(const FuncInfo *f, int nargs)
{
    if (nargs < 0)
        return f->volatility;
    char v = 0;
    for (size_t i = 0; i < f->n_overloads; i++) {
        const FuncOverload *o = &f->overloads[i];
        if (nargs >= o->min_args && nargs <= o->max_args &&
            (!v || volatility_rank(o->volatility) > volatility_rank(v)))
            v = o->volatility;
    }
    return v ? v : f->volatility;
}

static bool load_relations(PGconn *conn, CatalogDb *cat, char *err, size_t errlen)
{
    PGresult *res = run(conn, SQL_RELATIONS, err, errlen);
    if (!res)
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        RelInfo *r = rel_get_or_add(cat, PQgetvalue(res, i, 0));
        if (!r)
            goto oom;
        switch (PQgetvalue(res, i, 1)[0]) {
        case 'r':
            r->kinds |= REL_TABLE;
            break;
        case 'p':
            r->kinds |= REL_PARTITIONED;
            break;
        case 'v':
            r->kinds |= REL_VIEW;
            break;
        case 'm':
            r->kinds |= REL_MATVIEW;
            break;
        case 'f':
            r->kinds |= REL_FOREIGN;
            break;
        }
        if (PQgetvalue(res, i, 2)[0] == 'u')
            r->unlogged = true;
        if (PQgetvalue(res, i, 3)[0] == 't')
            r->rls = true;
    }
    PQclear(res);

    /* Partitions and inheritance: a write on either side bumps the other. */
    if (!(res = run(conn, SQL_INHERITS, err, errlen)))
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        RelInfo *child = rel_get_or_add(cat, PQgetvalue(res, i, 0));
        RelInfo *parent = rel_get_or_add(cat, PQgetvalue(res, i, 1));
        if (!child || !parent || !strv_add(&child->also_bump, PQgetvalue(res, i, 1)) ||
            !strv_add(&parent->also_bump, PQgetvalue(res, i, 0)))
            goto oom;
    }
    PQclear(res);

    /* ON DELETE/UPDATE CASCADE, SET NULL, SET DEFAULT: the referencing table changes too. */
    if (!(res = run(conn, SQL_CASCADES, err, errlen)))
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        RelInfo *ref = rel_get_or_add(cat, PQgetvalue(res, i, 0));
        if (!ref || !strv_add(&ref->also_bump, PQgetvalue(res, i, 1)))
            goto oom;
    }
    PQclear(res);

    if (!(res = run(conn, SQL_HIDDEN_WRITERS, err, errlen)))
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        RelInfo *r = rel_get_or_add(cat, PQgetvalue(res, i, 0));
        if (!r || !strv_add(&cat->hidden_writers, PQgetvalue(res, i, 0)))
            goto oom;
        r->hidden_writes = true;
    }
    PQclear(res);
    return true;

oom:
    PQclear(res);
    snprintf(err, errlen, "out of memory");
    return false;
}

/* Is a view definition cacheable by the same rules as a query? */
static bool definition_cacheable(const CatalogDb *cat, const SqlAnalysis *a)
{
    if (a->kind != SQL_KIND_READ || a->reason != SQL_REASON_NONE)
        return false;
    for (size_t i = 0; i < a->n_functions; i++) {
        const FuncInfo *f = strmap_get(&cat->funcs, a->functions[i].name);
        if (!f || catalog_func_volatility(f, a->functions[i].nargs) != 'i')
            return false;
    }
    return true;
}

/*
 * Views: parse each definition with sqlparse; a view is cacheable when its definition is,
 * and reads the base tables of its definition, through nested views.
 */
static bool load_views(PGconn *conn, CatalogDb *cat, char *err, size_t errlen)
{
    PGresult *res = run(conn, SQL_VIEWS, err, errlen);
    if (!res)
        return false;
    for (int i = 0; i < PQntuples(res); i++) {
        RelInfo *v = rel_get_or_add(cat, PQgetvalue(res, i, 0));
        const char *def = PQgetvalue(res, i, 1);
        SqlAnalysis *a = sqlparse_analyze(NULL, def, strlen(def));
        if (!v || !a) {
            sqlparse_release(a);
            PQclear(res);
            snprintf(err, errlen, "out of memory");
            return false;
        }
        v->view_cacheable = definition_cacheable(cat, a);
        for (size_t k = 0; k < a->n_reads; k++)
            if (!strv_add(&v->read_tables, a->reads[k].name)) {
                sqlparse_release(a);
                PQclear(res);
                snprintf(err, errlen, "out of memory");
                return false;
            }
        sqlparse_release(a);
    }
    PQclear(res);

    /* Transitive closure: a view over a view reads the inner view's tables too, and is only
     * cacheable when the inner one is. Iterate to a fixed point, bounded. */
    for (int round = 0; round < MAX_CLOSURE; round++) {
        bool changed = false;
        for (StrMapIter it = strmap_iter(&cat->rels); strmap_next(&cat->rels, &it);) {
            RelInfo *v = it.entry->value;
            if (!(v->kinds & REL_VIEW) || !v->read_tables)
                continue;
            for (size_t k = 0; v->read_tables[k]; k++) {
                const RelInfo *inner = strmap_get(&cat->rels, v->read_tables[k]);
                if (!inner || !(inner->kinds & REL_VIEW))
                    continue;
                if (!inner->view_cacheable && v->view_cacheable) {
                    v->view_cacheable = false;
                    changed = true;
                }
                for (size_t j = 0; inner->read_tables && inner->read_tables[j]; j++) {
                    size_t before = 0;
                    while (v->read_tables[before])
                        before++;
                    if (!strv_add(&v->read_tables, inner->read_tables[j]))
                        return false;
                    if (v->read_tables[before])
                        changed = true;
                }
            }
        }
        if (!changed)
            break;
    }
    /* A write through a view changes its base tables. */
    for (StrMapIter it = strmap_iter(&cat->rels); strmap_next(&cat->rels, &it);) {
        RelInfo *v = it.entry->value;
        if (!(v->kinds & REL_VIEW))
            continue;
        for (size_t k = 0; v->read_tables && v->read_tables[k]; k++)
            if (!strv_add(&v->also_bump, v->read_tables[k]))
                return false;
    }
    return true;
}

static const char *catalog_user(const Config *cfg)
{
    if (cfg->catalog.user)
        return cfg->catalog.user;
    const char *env = getenv("PGUSER");
    if (env && *env)
        return env;
    struct passwd *pw = getpwuid(geteuid());
    return pw ? pw->pw_name : "postgres";
}

static CatalogDb *load(const char *db, char *err, size_t errlen)
{
    const Snapshot *snap = runtime_snapshot();
    const Config *cfg = snap->cfg;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->upstream.port);
    const char *password = cfg->catalog.password_env ? getenv(cfg->catalog.password_env) : NULL;
    /* GSS encryption is never negotiated: probing for Kerberos credentials can stall. */
    const char *keys[] = {"host",          "port",           "dbname",
                          "user",          "password",       "connect_timeout",
                          "application_name", "gssencmode",  NULL};
    const char *values[] = {cfg->upstream.host,
                            port,
                            cfg->catalog.dbname ? cfg->catalog.dbname : db,
                            catalog_user(cfg),
                            password,
                            "5",
                            "pgstash-catalog",
                            "disable",
                            NULL};
    log_debug("reading the catalog of database \"%s\"", db);
    PGconn *conn = PQconnectdbParams(keys, values, 0);
    CatalogDb *cat = NULL;
    if (PQstatus(conn) != CONNECTION_OK) {
        snprintf(err, errlen, "%s", PQerrorMessage(conn));
        size_t n = strlen(err);
        while (n && err[n - 1] == '\n')
            err[--n] = 0;
        goto fail;
    }
    cat = calloc(1, sizeof *cat);
    if (!cat || !(cat->db = strdup(db))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    strmap_init(&cat->rels, free_rel);
    strmap_init(&cat->funcs, free_func);
    if (!load_functions(conn, cat, err, errlen) || !load_relations(conn, cat, err, errlen) ||
        !load_views(conn, cat, err, errlen) || !load_policies(conn, cat, err, errlen))
        goto fail;
    atomic_store(&cat->refs, 1);
    PQfinish(conn);
    return cat;

fail:
    catalog_free(cat);
    PQfinish(conn);
    return NULL;
}

/* --- the thread -------------------------------------------------------------------------- */

static void wake_workers(void)
{
    for (int i = 0; i < n_workers_; i++)
        worker_wake(&workers_[i]);
}

static char *next_wanted(int64_t *wait_ms)
{
    int64_t now = clock_ms();
    *wait_ms = -1;
    for (StrMapIter it = strmap_iter(&dbs); strmap_next(&dbs, &it);) {
        DbState *d = it.entry->value;
        if (!d->wanted)
            continue;
        if (d->not_before_ms <= now)
            return strdup(it.entry->key);
        int64_t w = d->not_before_ms - now;
        if (*wait_ms < 0 || w < *wait_ms)
            *wait_ms = w;
    }
    return NULL;
}

static void *catalog_main(void *arg)
{
    pthread_setname_np(pthread_self(), "pgstash-catalog");
    pthread_mutex_lock(&lock);
    while (!stopping) {
        int64_t wait_ms;
        char *db = next_wanted(&wait_ms);
        if (!db) {
            if (wait_ms < 0) {
                pthread_cond_wait(&wake, &lock);
            } else {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_sec += wait_ms / 1000;
                ts.tv_nsec += (wait_ms % 1000) * 1000000;
                if (ts.tv_nsec >= 1000000000) {
                    ts.tv_sec++;
                    ts.tv_nsec -= 1000000000;
                }
                pthread_cond_timedwait(&wake, &lock, &ts);
            }
            continue;
        }
        DbState *d = strmap_get(&dbs, db);
        d->wanted = false;
        d->loading_dirty = d->dirty;
        pthread_mutex_unlock(&lock);

        char err[512] = "";
        int64_t t0 = clock_ms();
        CatalogDb *cat = load(db, err, sizeof err);

        pthread_mutex_lock(&lock);
        d = strmap_get(&dbs, db);
        if (cat) {
            CatalogDb *old = d->current;
            cat->loaded_dirty = d->loading_dirty;
            d->current = cat;
            d->state = CATALOG_READY;
            if (d->warned)
                log_info("catalog of database \"%s\" readable again", db);
            d->warned = false;
            size_t hidden = 0;
            for (char **p = cat->hidden_writers; p && *p; p++)
                hidden++;
            log_info("catalog of database \"%s\" read in %lld ms: %zu relations, %zu functions",
                     db, (long long)(clock_ms() - t0), cat->rels.count, cat->funcs.count);
            if (hidden && !old) {
                char list[400] = "";
                size_t at = 0;
                for (char **p = cat->hidden_writers; p && *p && at < sizeof list - 40; p++)
                    at += (size_t)snprintf(list + at, sizeof list - at, "%s%s",
                                           at ? ", " : "", *p);
                log_warn("database \"%s\": writes to tables with user triggers or rules (%s) "
                         "bump the global epoch unless declared under "
                         "tables.<name>.also_invalidates",
                         db, list);
            }
            if (old)
                catalog_release(old);
        } else {
            d->state = d->current ? CATALOG_READY : CATALOG_FAILED;
            /* Try again on our own: a stale snapshot (DDL since) keeps reads bypassing until a
             * reload succeeds, and no caller will ask again for one that exists. */
            d->wanted = true;
            d->not_before_ms = clock_ms() + (d->current ? STALE_RETRY_MS : RETRY_MS);
            if (!d->warned)
                log_warn("cannot read the catalog of database \"%s\" (%s): its relations are "
                         "of unknown kind and reads of them bypass the cache "
                         "(catalog_unavailable) until it can be read",
                         db, err);
            d->warned = true;
        }
        atomic_fetch_add(&generation, 1);
        pthread_mutex_unlock(&lock);
        wake_workers();
        pthread_mutex_lock(&lock);
        free(db);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void free_dbstate(void *p)
{
    DbState *d = p;
    if (d && d->current)
        catalog_release(d->current);
    free(d);
}

bool catalog_start(Worker *workers, int n_workers)
{
    workers_ = workers;
    n_workers_ = n_workers;
    strmap_init(&dbs, free_dbstate);
    stopping = false;
    running = pthread_create(&thread, NULL, catalog_main, NULL) == 0;
    return running;
}

void catalog_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = false;
    strmap_free(&dbs);
}

/* --- worker side ---------------------------------------------------------------------------- */

CatalogDb *catalog_acquire(const char *db, CatalogState *state)
{
    if (!running) {
        *state = CATALOG_FAILED; /* no catalog thread (tools, fuzzing): nothing will load */
        return NULL;
    }
    pthread_mutex_lock(&lock);
    DbState *d = strmap_get(&dbs, db);
    if (!d) {
        d = calloc(1, sizeof *d);
        if (!d || !strmap_put(&dbs, db, d)) {
            free(d);
            pthread_mutex_unlock(&lock);
            *state = CATALOG_FAILED;
            return NULL;
        }
        d->state = CATALOG_LOADING;
        d->wanted = true;
        pthread_cond_signal(&wake);
    }
    CatalogDb *cat = d->current;
    if (cat) {
        atomic_fetch_add(&cat->refs, 1);
        /* DDL ran since this snapshot was read: still usable to resolve writes, but what a
         * name is may have changed, so reads must not trust it. */
        *state = cat->loaded_dirty == d->dirty ? CATALOG_READY : CATALOG_LOADING;
    } else {
        *state = d->state;
        if (d->state == CATALOG_FAILED && !d->wanted && clock_ms() >= d->not_before_ms) {
            d->wanted = true;
            pthread_cond_signal(&wake);
        }
    }
    pthread_mutex_unlock(&lock);
    return cat;
}

void catalog_release(CatalogDb *cat)
{
    if (cat && atomic_fetch_sub(&cat->refs, 1) == 1)
        catalog_free(cat);
}

void catalog_invalidate(const char *db)
{
    pthread_mutex_lock(&lock);
    DbState *d = strmap_get(&dbs, db);
    if (d) {
        d->dirty++;
        d->wanted = true;
        d->not_before_ms = 0; /* a failed database's back-off no longer applies */
        pthread_cond_signal(&wake);
    }
    pthread_mutex_unlock(&lock);
    atomic_fetch_add(&generation, 1); /* sessions re-acquire and see the staleness */
}

void catalog_invalidate_all(void)
{
    pthread_mutex_lock(&lock);
    for (StrMapIter it = strmap_iter(&dbs); strmap_next(&dbs, &it);) {
        DbState *d = it.entry->value;
        d->wanted = true;
        d->not_before_ms = 0;
    }
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

int catalog_databases(char (*out)[128], int max)
{
    int n = 0;
    if (!running)
        return 0;
    pthread_mutex_lock(&lock);
    for (StrMapIter it = strmap_iter(&dbs); n < max && strmap_next(&dbs, &it);)
        if (strlen(it.entry->key) < 128)
            snprintf(out[n++], 128, "%s", it.entry->key);
    pthread_mutex_unlock(&lock);
    return n;
}

bool catalog_some_database(char *out, size_t len)
{
    bool found = false;
    pthread_mutex_lock(&lock);
    StrMapIter it = strmap_iter(&dbs);
    if (strmap_next(&dbs, &it)) {
        snprintf(out, len, "%s", it.entry->key);
        found = true;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

uint64_t catalog_generation(void)
{
    return atomic_load_explicit(&generation, memory_order_relaxed);
}

const RelInfo *catalog_rel(const CatalogDb *cat, const char *name)
{
    return strmap_get(&cat->rels, name);
}

const FuncInfo *catalog_func(const CatalogDb *cat, const char *name)
{
    return strmap_get(&cat->funcs, name);
}
