/*
 * admin.c — the admin console. It lives on the client's worker like any session but never
 * opens a server connection: authentication (SCRAM-SHA-256 against admin.users), commands
 * and their result sets are all produced here. Results are built whole before being sent
 * (they are small); FLUSH waits for Redis to confirm before answering.
 */
#include "proxy/admin.h"

#include <ctype.h>
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "proxy/cache.h"
#include "proxy/catalog.h"
#include "proxy/client.h"
#include "proxy/decide.h"
#include "proxy/log.h"
#include "proxy/reasons.h"
#include "proxy/report.h"
#include "proxy/runtime.h"
#include "proxy/scram.h"
#include "proxy/store.h"
#include "proxy/tablestats.h"
#include "proxy/versions.h"
#include "proxy/worker.h"

#ifndef PGSTASH_VERSION
#define PGSTASH_VERSION "0.0.0"
#endif
#define PGSTASH_VERSION_STRING PGSTASH_VERSION
#define MAX_COLS 12
#define MAX_TEXT 8192

/* A command's answer: rows (with their RowDescription) or just a command tag, or an error. */
typedef struct {
    int ncols;               /* 0: no RowDescription */
    const char *cols[MAX_COLS];
    ByteWriter rows;         /* encoded DataRow messages */
    uint64_t nrows;
    char tag[64];            /* CommandComplete tag */
    bool error;
    char sqlstate[6];
    char message[600];
    bool ready;              /* complete (FLUSH fills it in when Redis answers) */
    bool empty;              /* an empty query: EmptyQueryResponse */
} AdminResult;

typedef enum {
    EMIT_SIMPLE,   /* RowDescription, rows, CommandComplete, ReadyForQuery */
    EMIT_EXTENDED, /* Execute: rows and CommandComplete only */
} EmitMode;

struct AdminSession {
    ScramServer scram;
    bool authenticated;
    bool busy;               /* a FLUSH waits for Redis */
    EmitMode busy_mode;      /* how to finish the command that is waiting */
    bool skip_to_sync;       /* an extended-protocol error: discard until Sync */
    StrMap stmts;            /* statement name → text */
    AdminResult portal;      /* the unnamed portal's result, made at Bind */
    bool portal_bound;
};

static const Config *cfg_of(const Client *c)
{
    return c->worker->snap->cfg;
}

void admin_free(AdminSession *a)
{
    if (!a)
        return;
    strmap_free(&a->stmts);
    bw_free(&a->portal.rows);
    free(a);
}

static void result_reset(AdminResult *r)
{
    ByteWriter rows = r->rows;
    bw_reset(&rows);
    memset(r, 0, sizeof *r);
    r->rows = rows;
}

/* --- building results -------------------------------------------------------------------- */

static void set_cols(AdminResult *r, int n, ...)
{
    va_list ap;
    va_start(ap, n);
    r->ncols = n;
    for (int i = 0; i < n && i < MAX_COLS; i++)
        r->cols[i] = va_arg(ap, const char *);
    va_end(ap);
    snprintf(r->tag, sizeof r->tag, "SHOW");
    r->ready = true;
}

/* Appends a row of r->ncols text values (NULL = SQL NULL). */
static void add_row(AdminResult *r, const char *const *values)
{
    size_t at = bw_msg_begin(&r->rows, 'D');
    bw_u16(&r->rows, (uint16_t)r->ncols);
    for (int i = 0; i < r->ncols; i++) {
        if (!values[i]) {
            bw_u32(&r->rows, 0xffffffffu);
            continue;
        }
        size_t n = strlen(values[i]);
        bw_u32(&r->rows, (uint32_t)n);
        bw_put(&r->rows, values[i], n);
    }
    bw_msg_end(&r->rows, at);
    r->nrows++;
}

static void row2(AdminResult *r, const char *a, const char *b)
{
    const char *v[2] = {a, b};
    add_row(r, v);
}

static void fail_result(AdminResult *r, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_result(AdminResult *r, const char *sqlstate, const char *fmt, ...)
{
    r->error = true;
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    r->ready = true;
}

static void write_row_description(ByteWriter *w, const AdminResult *r)
{
    if (r->ncols == 0) {
        pg_write_empty(w, 'n'); /* NoData */
        return;
    }
    size_t at = bw_msg_begin(w, 'T');
    bw_u16(w, (uint16_t)r->ncols);
    for (int i = 0; i < r->ncols; i++) {
        bw_cstr(w, r->cols[i]);
        bw_u32(w, 0);  /* table OID */
        bw_u16(w, 0);  /* column number */
        bw_u32(w, 25); /* text */
        bw_u16(w, 0xffff);
        bw_u32(w, 0xffffffffu); /* typmod -1 */
        bw_u16(w, 0);           /* text format */
    }
    bw_msg_end(w, at);
}

/* Rows and CommandComplete (or the error) of a result. */
static void write_rows_and_tag(ByteWriter *w, const AdminResult *r)
{
    if (r->error) {
        pg_write_error(w, "ERROR", r->sqlstate, r->message, NULL);
        return;
    }
    if (r->empty) {
        pg_write_empty(w, 'I');
        return;
    }
    bw_put(w, r->rows.data, r->rows.len);
    size_t at = bw_msg_begin(w, 'C');
    if (r->ncols > 0 && strcmp(r->tag, "SHOW") == 0) {
        char tag[64];
        snprintf(tag, sizeof tag, "SHOW %" PRIu64, r->nrows);
        bw_cstr(w, tag);
    } else {
        bw_cstr(w, r->tag);
    }
    bw_msg_end(w, at);
}

static bool send_writer(Client *c, ByteWriter *w)
{
    bool ok = !w->failed && client_send(c, w->data, w->len);
    bw_free(w);
    return ok;
}

/* --- commands ------------------------------------------------------------------------------ */

static void show_stats(AdminResult *r)
{
    StatsTotals t;
    Worker *ws[256];
    int n = rt.n_workers < 256 ? rt.n_workers : 256;
    for (int i = 0; i < n; i++)
        ws[i] = &rt.workers[i];
    report_totals(ws, n, &t);
    set_cols(r, 3, "stat", "value", "per_second");
    double up = (double)(clock_ms() - rt.started_ms) / 1000.0;
    if (up < 0.001)
        up = 0.001;
    char v[32], rate[32];
    const struct {
        const char *name;
        uint64_t value;
        bool rate;
    } rows[] = {
        {"hits", t.hits, true},
        {"misses", t.misses, true},
        {"bypasses", t.bypass_total, true},
        {"fills", t.fills, true},
        {"fill_skipped", t.fill_skipped, true},
        {"writes", t.writes, true},
        {"invalidations", t.invalidations, true},
        {"epoch_bumps", t.epoch_bumps, true},
        {"redis_errors", t.redis_errors, true},
        {"redis_timeouts", t.redis_timeouts, true},
        {"bad_entries", t.bad_entries, true},
        {"protocol_errors", t.protocol_errors, true},
        {"upstream_errors", t.upstream_errors, true},
        {"server_reuses", t.server_reuses, true},
        {"hit_p50_us", t.hit_p50_us, false},
        {"hit_p99_us", t.hit_p99_us, false},
        {"miss_p50_us", t.miss_p50_us, false},
        {"miss_p99_us", t.miss_p99_us, false},
        {"clients", (uint64_t)atomic_load(&rt.clients), false},
        {"servers", (uint64_t)atomic_load(&rt.servers), false},
        {"servers_kept", (uint64_t)atomic_load(&rt.servers_kept), false},
        {"clients_total", atomic_load(&rt.clients_total), true},
        {"uptime_s", (uint64_t)up, false},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        snprintf(v, sizeof v, "%" PRIu64, rows[i].value);
        snprintf(rate, sizeof rate, "%.1f", (double)rows[i].value / up);
        const char *vals[3] = {rows[i].name, v, rows[i].rate ? rate : NULL};
        add_row(r, vals);
    }
    uint64_t reads = t.hits + t.misses + t.bypass_total;
    snprintf(v, sizeof v, "%.4f", reads ? (double)t.hits / (double)reads : 0.0);
    const char *ratio[3] = {"hit_ratio", v, NULL};
    add_row(r, ratio);
    snprintf(v, sizeof v, "%d/%d workers connected", store_up_count(), rt.n_workers);
    const char *redis[3] = {"redis", v, NULL};
    add_row(r, redis);
    for (int reason = 0; reason < STATS_MAX_REASONS; reason++) {
        if (!t.bypasses[reason])
            continue;
        char name[80];
        snprintf(name, sizeof name, "bypass.%s", bypass_reason_name(reason));
        snprintf(v, sizeof v, "%" PRIu64, t.bypasses[reason]);
        snprintf(rate, sizeof rate, "%.1f", (double)t.bypasses[reason] / up);
        const char *vals[3] = {name, v, rate};
        add_row(r, vals);
    }
}

static size_t collect(bool queries, TableTotals **out)
{
    TableStats *ts[256];
    int n = rt.n_workers < 256 ? rt.n_workers : 256;
    for (int i = 0; i < n; i++)
        ts[i] = queries ? &rt.workers[i].queries : &rt.workers[i].tables;
    return tablestats_collect(ts, n, out);
}

static void show_tables(Client *c, AdminResult *r)
{
    const Config *cfg = cfg_of(c);
    set_cols(r, 10, "table", "ttl_ms", "version", "reads", "hits", "misses", "bypasses",
             "hit_ratio", "invalidations", "row_security");
    TableTotals *tt;
    size_t n = collect(false, &tt);
    for (size_t i = 0; i < n; i++) {
        char db[160] = "", ttl[24], version[24] = "", reads[24], hits[24], misses[24], byp[24],
             ratio[16], inval[24];
        const char *dot = strchr(tt[i].name, '.');
        const char *table = dot ? dot + 1 : tt[i].name;
        if (dot)
            snprintf(db, sizeof db, "%.*s", (int)(dot - tt[i].name), tt[i].name);
        /* Tables with row-level security are cached per user (every key is) and flagged. */
        CatalogState state;
        CatalogDb *cat = db[0] ? catalog_acquire(db, &state) : NULL;
        const RelInfo *ri = cat ? catalog_rel(cat, table) : NULL;
        const char *rls = ri ? (ri->rls ? "on" : "off") : NULL;
        catalog_release(cat);
        uint64_t ver;
        if (versions_get(db, table, &ver))
            snprintf(version, sizeof version, "%" PRIu64, ver);
        snprintf(ttl, sizeof ttl, "%lld", (long long)config_table_ttl_ms(cfg, table));
        snprintf(reads, sizeof reads, "%" PRIu64, tt[i].reads);
        snprintf(hits, sizeof hits, "%" PRIu64, tt[i].hits);
        snprintf(misses, sizeof misses, "%" PRIu64, tt[i].misses);
        snprintf(byp, sizeof byp, "%" PRIu64, tt[i].bypasses);
        snprintf(ratio, sizeof ratio, "%.4f",
                 tt[i].reads ? (double)tt[i].hits / (double)tt[i].reads : 0.0);
        snprintf(inval, sizeof inval, "%" PRIu64, tt[i].invalidations);
        const char *vals[10] = {tt[i].name, ttl,   version[0] ? version : NULL,
                                reads,      hits,  misses,
                                byp,        ratio, inval,
                                rls};
        add_row(r, vals);
    }
    free(tt);
}

static void show_queries(AdminResult *r)
{
    set_cols(r, 7, "query", "calls", "hits", "misses", "bypasses", "hit_ratio", "decision");
    TableTotals *tt;
    size_t n = collect(true, &tt);
    for (size_t i = 0; i < n && i < 100; i++) {
        char calls[24], hits[24], misses[24], byp[24], ratio[16];
        snprintf(calls, sizeof calls, "%" PRIu64, tt[i].reads);
        snprintf(hits, sizeof hits, "%" PRIu64, tt[i].hits);
        snprintf(misses, sizeof misses, "%" PRIu64, tt[i].misses);
        snprintf(byp, sizeof byp, "%" PRIu64, tt[i].bypasses);
        snprintf(ratio, sizeof ratio, "%.4f",
                 tt[i].reads ? (double)tt[i].hits / (double)tt[i].reads : 0.0);
        const char *decision = tt[i].last_reason == 0 ? "cache"
                                                      : bypass_reason_name(tt[i].last_reason);
        const char *vals[7] = {tt[i].name, calls, hits, misses, byp, ratio, decision};
        add_row(r, vals);
    }
    free(tt);
}

static const char *state_name(const Client *c)
{
    switch (c->state) {
    case CS_STARTUP:
    case CS_CONNECTING:
    case CS_AUTH:
        return "login";
    case CS_READY:
        return request_is_idle(&c->req) ? "idle" : c->req.tx_status == 'I' ? "active" : "in transaction";
    case CS_ADMIN_AUTH:
    case CS_ADMIN:
        return "admin";
    case CS_CANCEL:
        return "cancel";
    default:
        return "closing";
    }
}

static void show_clients(AdminResult *r)
{
    set_cols(r, 7, "id", "user", "database", "address", "worker", "state", "connected_s");
    int64_t now = clock_ms();
    for (int i = 0; i < rt.n_workers; i++) {
        Worker *w = &rt.workers[i];
        pthread_mutex_lock(&w->clients_lock);
        for (const Client *c = w->clients; c; c = c->next) {
            char id[24], worker[12], age[24];
            snprintf(id, sizeof id, "%" PRIu64, c->id);
            snprintf(worker, sizeof worker, "%d", i);
            snprintf(age, sizeof age, "%lld", (long long)((now - c->connected_ms) / 1000));
            const char *vals[7] = {id, c->user, c->database, c->peer, worker, state_name(c), age};
            add_row(r, vals);
        }
        pthread_mutex_unlock(&w->clients_lock);
    }
}

static void duration(char *out, size_t n, int64_t ms)
{
    if (ms % 1000)
        snprintf(out, n, "%lldms", (long long)ms);
    else
        snprintf(out, n, "%llds", (long long)(ms / 1000));
}

static void show_config(Client *c, AdminResult *r)
{
    const Config *cfg = cfg_of(c);
    set_cols(r, 2, "key", "value");
    char v[600];
    snprintf(v, sizeof v, "%s", cfg->path ? cfg->path : "(defaults)");
    row2(r, "file", v);
    snprintf(v, sizeof v, "%s:%d", cfg->listen.host, cfg->listen.port);
    row2(r, "listen", v);
    snprintf(v, sizeof v, "%s:%d", cfg->upstream.host, cfg->upstream.port);
    row2(r, "upstream", v);
    snprintf(v, sizeof v, "redis://%s%s%s:%d/%d", cfg->redis.password ? "***@" : "",
             "", cfg->redis.addr.host, cfg->redis.addr.port, cfg->redis.db);
    row2(r, "redis", v);
    snprintf(v, sizeof v, "%d", config_worker_count(cfg));
    row2(r, "workers", v);
    row2(r, "catalog.user", cfg->catalog.user);
    row2(r, "cache.enabled", cfg->cache.enabled ? "true" : "false");
    duration(v, sizeof v, cfg->cache.default_ttl_ms);
    row2(r, "cache.default_ttl", v);
    snprintf(v, sizeof v, "%zu", cfg->cache.max_entry_bytes);
    row2(r, "cache.max_entry_bytes", v);
    row2(r, "cache.consistency", config_consistency_name(cfg->cache.consistency));
    row2(r, "cache.key_prefix", cfg->cache.key_prefix);
    duration(v, sizeof v, cfg->cache.redis_timeout_ms);
    row2(r, "cache.redis_timeout", v);
    for (size_t i = 0; i < cfg->n_tables; i++) {
        const TableRule *t = &cfg->tables[i];
        char key[120];
        snprintf(key, sizeof key, "tables.%s", t->name);
        int64_t ttl = config_table_ttl_ms(cfg, t->name);
        char ttlbuf[32];
        duration(ttlbuf, sizeof ttlbuf, ttl);
        snprintf(v, sizeof v, "ttl=%s%s%s", ttlbuf, t->cache ? "" : " cache=false",
                 t->safe ? " safe" : "");
        for (size_t k = 0; k < t->n_also_invalidates; k++) {
            size_t at = strlen(v);
            snprintf(v + at, sizeof v - at, "%s%s", k ? "," : " also_invalidates=",
                     t->also_invalidates[k]);
        }
        row2(r, key, v);
    }
    for (size_t i = 0; i < cfg->n_functions; i++) {
        const FunctionRule *f = &cfg->functions[i];
        char key[120];
        snprintf(key, sizeof key, "functions.%s.writes", f->name);
        v[0] = 0;
        for (size_t k = 0; k < f->n_writes; k++) {
            size_t at = strlen(v);
            snprintf(v + at, sizeof v - at, "%s%s", k ? "," : "", f->writes[k]);
        }
        row2(r, key, f->n_writes ? v : "[]");
    }
    row2(r, "log.level", config_log_level_name(cfg->log.level));
    row2(r, "log.format", config_log_format_name(cfg->log.format));
    duration(v, sizeof v, cfg->log.stats_interval_ms);
    row2(r, "log.stats_interval", v);
    snprintf(v, sizeof v, "%zu", cfg->limits.max_message_bytes);
    row2(r, "limits.max_message_bytes", v);
    snprintf(v, sizeof v, "%d", cfg->limits.max_client_conn);
    row2(r, "limits.max_client_conn", v);
    duration(v, sizeof v, cfg->limits.shutdown_grace_ms);
    row2(r, "limits.shutdown_grace", v);
    duration(v, sizeof v, cfg->limits.server_idle_timeout_ms);
    row2(r, "limits.server_idle_timeout", v);
    duration(v, sizeof v, cfg->limits.server_lifetime_ms);
    row2(r, "limits.server_lifetime", v);
    v[0] = 0;
    for (size_t i = 0; i < cfg->admin.n_users; i++) {
        size_t at = strlen(v);
        snprintf(v + at, sizeof v - at, "%s%s", i ? "," : "", cfg->admin.users[i].name);
    }
    row2(r, "admin.users", v);
    if (cfg->admin.listen_set) {
        snprintf(v, sizeof v, "%s:%d", cfg->admin.listen.host, cfg->admin.listen.port);
        row2(r, "admin.listen", v);
    }
}

static void show_version(AdminResult *r)
{
    set_cols(r, 1, "version");
    const char *v[1] = {"pgstash " PGSTASH_VERSION_STRING};
    add_row(r, v);
}

/* EXPLAIN CACHE [IN DATABASE name] <sql>: the decision pgstash would take, in words. */
static void explain_cache(Client *c, const char *sql, AdminResult *r)
{
    char db[128] = "";
    const char *p = sql;
    if (strncasecmp(p, "in database ", 12) == 0) {
        p += 12;
        while (*p == ' ')
            p++;
        size_t n = strcspn(p, " \t\n");
        snprintf(db, sizeof db, "%.*s", (int)n, p);
        p += n;
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
    } else if (!catalog_some_database(db, sizeof db)) {
        snprintf(db, sizeof db, "%s", cfg_of(c)->catalog.dbname ? cfg_of(c)->catalog.dbname : "postgres");
    }
    if (!*p) {
        fail_result(r, "42601", "EXPLAIN CACHE needs a statement: EXPLAIN CACHE [IN DATABASE name] <sql>");
        return;
    }
    SqlAnalysis *a = sqlparse_analyze(NULL, p, strlen(p));
    if (!a) {
        fail_result(r, "53200", "out of memory");
        return;
    }
    CatalogState state;
    CatalogDb *cat = catalog_acquire(db, &state);
    Session s;
    session_init(&s);
    ReadTables tables;
    int reason = decide_read(cfg_of(c), cat, state, &s, 'I', a, &tables);
    WriteSet writes = {0};
    decide_writes(cfg_of(c), cat, &s, a, &writes);

    set_cols(r, 2, "field", "value");
    snprintf(r->tag, sizeof r->tag, "EXPLAIN");
    row2(r, "database", db);
    row2(r, "statement", a->normalized ? a->normalized : p);
    row2(r, "kind", sqlparse_kind_name(a->kind));
    row2(r, "cacheable", reason == DECIDE_CACHE ? "yes" : "no");
    row2(r, "reason", reason == DECIDE_CACHE ? "cacheable" : bypass_reason_name(reason));
    row2(r, "explanation", bypass_reason_text(reason));
    char list[1024] = "";
    size_t at = 0;
    size_t n_tables = reason == DECIDE_CACHE ? tables.n_tables : a->n_reads;
    for (size_t i = 0; i < n_tables && at < sizeof list - 80; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "",
                               reason == DECIDE_CACHE ? readtables_name(&tables, i)
                                                      : a->reads[i].name);
    row2(r, "tables", list);
    if (reason == DECIDE_CACHE) {
        char ttl[32];
        duration(ttl, sizeof ttl, tables.ttl_ms);
        row2(r, "ttl", ttl);
    } else {
        row2(r, "ttl", NULL);
    }
    at = 0;
    list[0] = 0;
    for (size_t i = 0; i < writes.n && at < sizeof list - 80; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? ", " : "",
                               writes.names[i]);
    if (writes.all)
        snprintf(list + at, sizeof list - at, "%sall (global epoch)", at ? ", " : "");
    row2(r, "invalidates", list);
    if (state != CATALOG_READY)
        row2(r, "catalog", state == CATALOG_LOADING ? "being read: ask again" : "unreadable");
    writeset_clear(&writes);
    readtables_free(&tables);
    session_free(&s);
    catalog_release(cat);
    sqlparse_release(a);
}

/* --- FLUSH: answered when Redis confirms -------------------------------------------------- */

static void finish_busy(Client *c);

static void on_flushed(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    AdminSession *a = c->admin;
    AdminResult *r = &a->portal;
    if (status != STORE_REPLY || !reply || reply->type == REDIS_REPLY_ERROR) {
        fail_result(r, "58000", "Redis did not confirm the flush: %s",
                    status == STORE_TIMEOUT ? "timeout"
                    : reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                : "not connected");
    } else {
        r->ready = true;
        log_info("admin %s: %s", c->user, r->tag);
    }
    finish_busy(c);
    client_kick(c);
}

/* ARGV: registry key, prefix, table, seed, channel, then databases this instance knows (the
 * registry may have been lost with a Redis restart or eviction). */
static const char FLUSH_TABLE_SCRIPT[] =
    "local dbs = redis.call('SMEMBERS', ARGV[1])\n"
    "local seen = {}\n"
    "for _, db in ipairs(dbs) do seen[db] = true end\n"
    "for i = 6, #ARGV do if not seen[ARGV[i]] then seen[ARGV[i]] = true; dbs[#dbs + 1] = ARGV[i] end end\n"
    "for _, db in ipairs(dbs) do\n"
    "  local k = ARGV[2] .. ':v:' .. db .. ':' .. ARGV[3]\n"
    "  local v\n"
    "  if redis.call('EXISTS', k) == 1 then v = redis.call('INCR', k)\n"
    "  else v = tonumber(ARGV[4]); redis.call('SET', k, ARGV[4]) end\n"
    "  redis.call('PUBLISH', ARGV[5], db .. '\\0' .. ARGV[3] .. '=' .. string.format('%d', v))\n"
    "end\n"
    "return #dbs\n";

/* Starts a flush; false (with r->error) when Redis is not usable. */
static bool start_flush(Client *c, const char *table, AdminResult *r)
{
    const Config *cfg = cfg_of(c);
    Store *st = c->worker->store;
    if (!store_connected(st)) {
        fail_result(r, "58000", "Redis is not connected: nothing flushed");
        return false;
    }
    char k1[300], k2[300], seed[32], channel[300];
    snprintf(seed, sizeof seed, "%" PRIu64, store_version_seed());
    snprintf(channel, sizeof channel, "%s:inval", cfg->cache.key_prefix);
    bool sent;
    if (!table) {
        snprintf(k1, sizeof k1, "%s:epoch", cfg->cache.key_prefix);
        const char *argv[] = {"EVAL", store_bump_script, "1", k1, seed, channel, "", "*"};
        size_t argvlen[8];
        for (int i = 0; i < 8; i++)
            argvlen[i] = strlen(argv[i]);
        sent = store_command(st, c, on_flushed, NULL, 8, argv, argvlen);
        snprintf(r->tag, sizeof r->tag, "FLUSH ALL");
    } else {
        snprintf(k1, sizeof k1, "%s:dbs", cfg->cache.key_prefix);
        snprintf(k2, sizeof k2, "%s", cfg->cache.key_prefix);
        enum { MAX_DBS = 64 };
        char dbs[MAX_DBS][128];
        int n_dbs = catalog_databases(dbs, MAX_DBS);
        const char *argv[8 + MAX_DBS] = {"EVAL", FLUSH_TABLE_SCRIPT, "0", k1, k2, table, seed,
                                         channel};
        size_t argvlen[8 + MAX_DBS];
        for (int i = 0; i < n_dbs; i++)
            argv[8 + i] = dbs[i];
        for (int i = 0; i < 8 + n_dbs; i++)
            argvlen[i] = strlen(argv[i]);
        sent = store_command(st, c, on_flushed, NULL, 8 + n_dbs, argv, argvlen);
        snprintf(r->tag, sizeof r->tag, "FLUSH TABLE");
    }
    if (!sent)
        fail_result(r, "58000", "Redis is not connected: nothing flushed");
    return sent;
}

/* RELOAD: validate the file here (so the admin sees FILE:LINE), then signal the reload. */
static void reload(Client *c, AdminResult *r)
{
    if (rt.config_path) {
        Config *cfg;
        char err[CONFIG_ERR_LEN];
        if (!config_load(rt.config_path, &cfg, err, sizeof err)) {
            fail_result(r, "F0000", "reload refused, running configuration kept: %s", err);
            return;
        }
        config_free(cfg);
    }
    kill(getpid(), SIGHUP);
    snprintf(r->tag, sizeof r->tag, "RELOAD");
    r->ready = true;
    log_info("admin %s: RELOAD", c->user);
}

/* Trims blanks and trailing semicolons into `out`. */
static void normalize_command(const char *text, char *out, size_t n)
{
    while (isspace((unsigned char)*text))
        text++;
    snprintf(out, n, "%s", text);
    size_t len = strlen(out);
    while (len && (isspace((unsigned char)out[len - 1]) || out[len - 1] == ';'))
        out[--len] = 0;
}

static bool word_is(const char **p, const char *word)
{
    size_t n = strlen(word);
    if (strncasecmp(*p, word, n) != 0 || ((*p)[n] && !isspace((unsigned char)(*p)[n])))
        return false;
    *p += n;
    while (isspace((unsigned char)**p))
        (*p)++;
    return true;
}

/*
 * Runs a command into `r`. Returns false when the answer waits for Redis (FLUSH): the
 * session is busy until on_flushed.
 */
static bool run_command(Client *c, const char *text, AdminResult *r)
{
    result_reset(r);
    char cmd[MAX_TEXT];
    normalize_command(text, cmd, sizeof cmd);
    const char *p = cmd;
    if (!*p) {
        r->empty = true; /* answered with EmptyQueryResponse, as PostgreSQL does */
        r->ready = true;
        return true;
    }
    if (word_is(&p, "show")) {
        if (strcasecmp(p, "stats") == 0)
            show_stats(r);
        else if (strcasecmp(p, "tables") == 0)
            show_tables(c, r);
        else if (strcasecmp(p, "queries") == 0)
            show_queries(r);
        else if (strcasecmp(p, "clients") == 0)
            show_clients(r);
        else if (strcasecmp(p, "config") == 0)
            show_config(c, r);
        else if (strcasecmp(p, "version") == 0)
            show_version(r);
        else
            fail_result(r, "42601",
                        "unknown SHOW \"%.60s\": try STATS, TABLES, QUERIES, CLIENTS, CONFIG "
                        "or VERSION",
                        p);
        return true;
    }
    if (word_is(&p, "explain") && word_is(&p, "cache")) {
        explain_cache(c, p, r);
        return true;
    }
    p = cmd;
    if (word_is(&p, "flush")) {
        if (strcasecmp(p, "all") == 0)
            return !start_flush(c, NULL, r);
        if (word_is(&p, "table") && *p && !strpbrk(p, " \t\n")) {
            char table[128];
            /* Tables are tagged by bare name: "public.t" and "shop.t" both mean t (quoted
             * names keep their dots and case). */
            const char *dot = p[0] == '"' ? NULL : strrchr(p, '.');
            snprintf(table, sizeof table, "%s", dot ? dot + 1 : p);
            /* Bare names are tagged case-folded, like PostgreSQL folds unquoted names. */
            size_t n = strlen(table);
            if (n >= 2 && table[0] == '"' && table[n - 1] == '"') {
                memmove(table, table + 1, n - 2);
                table[n - 2] = 0;
            } else {
                for (char *q = table; *q; q++)
                    *q = (char)tolower((unsigned char)*q);
            }
            return !start_flush(c, table, r);
        }
        fail_result(r, "42601", "usage: FLUSH ALL | FLUSH TABLE <name>");
        return true;
    }
    if (strcasecmp(cmd, "reload") == 0) {
        reload(c, r);
        return true;
    }
    fail_result(r, "42601",
                "unknown admin command \"%.80s\": try SHOW STATS|TABLES|QUERIES|CLIENTS|CONFIG|"
                "VERSION, EXPLAIN CACHE <sql>, FLUSH ALL, FLUSH TABLE <name>, RELOAD",
                cmd);
    return true;
}

/* --- protocol ----------------------------------------------------------------------------- */

static void emit_simple(Client *c, const AdminResult *r)
{
    ByteWriter w = {0};
    if (!r->error && r->ncols > 0)
        write_row_description(&w, r);
    write_rows_and_tag(&w, r);
    pg_write_ready(&w, 'I');
    (void)send_writer(c, &w);
}

static void finish_busy(Client *c)
{
    AdminSession *a = c->admin;
    a->busy = false;
    if (a->busy_mode == EMIT_SIMPLE) {
        emit_simple(c, &a->portal);
        a->portal_bound = false;
    } else {
        /* Extended: the result waits for its Execute (already read or still to come). */
        a->portal_bound = true;
    }
}

/* Sends the authentication messages and the session's parameters after a valid login. */
static void login_ok(Client *c, const char *server_final)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'R');
    bw_u32(&w, 12); /* SASLFinal */
    bw_put(&w, server_final, strlen(server_final));
    bw_msg_end(&w, at);
    at = bw_msg_begin(&w, 'R');
    bw_u32(&w, 0); /* AuthenticationOk */
    bw_msg_end(&w, at);
    static const char *params[][2] = {
        {"server_version", "15.0 (pgstash " PGSTASH_VERSION_STRING " admin console)"},
        {"server_encoding", "UTF8"},
        {"client_encoding", "UTF8"},
        {"DateStyle", "ISO, MDY"},
        {"integer_datetimes", "on"},
        {"standard_conforming_strings", "on"},
        {"application_name", ""},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        at = bw_msg_begin(&w, 'S');
        bw_cstr(&w, params[i][0]);
        bw_cstr(&w, params[i][1]);
        bw_msg_end(&w, at);
    }
    at = bw_msg_begin(&w, 'K');
    bw_u32(&w, (uint32_t)c->id);
    bw_u32(&w, 0);
    bw_msg_end(&w, at);
    pg_write_ready(&w, 'I');
    if (!send_writer(c, &w))
        return;
    c->admin->authenticated = true;
    client_set_state(c, CS_ADMIN);
    ev_timer_stop(c->worker->loop, &c->timer);
    LOG_AT(LOG_INFO, c->ident, "admin console login");
}

/* A SASLInitialResponse or SASLResponse ('p') during the admin login. */
static void handle_sasl(Client *c, const uint8_t *payload, size_t len)
{
    AdminSession *a = c->admin;
    char out[512];
    ByteReader br;
    br_init(&br, payload, len);
    if (a->scram.state == SCRAM_WANT_FIRST) {
        const char *mech = br_cstr(&br, NULL);
        int32_t n = br_i32(&br);
        const uint8_t *data = n >= 0 ? br_bytes(&br, (size_t)n) : NULL;
        if (!mech || strcmp(mech, "SCRAM-SHA-256") != 0 || !data ||
            !scram_server_first(&a->scram, (const char *)data, (size_t)n, out, sizeof out)) {
            client_fail(c, "28000", "SCRAM-SHA-256 authentication failed for user \"%s\"",
                        c->user);
            return;
        }
        ByteWriter w = {0};
        size_t at = bw_msg_begin(&w, 'R');
        bw_u32(&w, 11); /* SASLContinue */
        bw_put(&w, out, strlen(out));
        bw_msg_end(&w, at);
        (void)send_writer(c, &w);
        return;
    }
    if (!scram_server_final(&a->scram, (const char *)payload, len, out, sizeof out)) {
        LOG_AT(LOG_WARN, c->ident, "admin console: password authentication failed");
        client_fail(c, "28P01", "password authentication failed for user \"%s\"", c->user);
        return;
    }
    login_ok(c, out);
}

void admin_begin(Client *c)
{
    const Config *cfg = cfg_of(c);
    const AdminUser *user = NULL;
    for (size_t i = 0; i < cfg->admin.n_users; i++)
        if (strcmp(cfg->admin.users[i].name, c->user) == 0)
            user = &cfg->admin.users[i];
    ScramSecret secret;
    if (!user || !scram_parse_secret(user->secret, &secret)) {
        LOG_AT(LOG_WARN, c->ident, "admin console refused: not in admin.users");
        client_fail(c, "28000", "user \"%s\" may not use the pgstash admin console "
                                "(not listed under admin.users)",
                    c->user);
        return;
    }
    c->admin = calloc(1, sizeof *c->admin);
    if (!c->admin) {
        client_close(c, "out of memory");
        return;
    }
    strmap_init(&c->admin->stmts, free);
    scram_server_init(&c->admin->scram, &secret);
    client_set_state(c, CS_ADMIN_AUTH);
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'R');
    bw_u32(&w, 10); /* AuthenticationSASL */
    bw_cstr(&w, "SCRAM-SHA-256");
    bw_u8(&w, 0);
    bw_msg_end(&w, at);
    (void)send_writer(c, &w);
}

/* One extended-protocol or simple message once logged in. */
static void handle_message(Client *c, char type, const uint8_t *payload, size_t len)
{
    AdminSession *a = c->admin;
    ByteWriter w = {0};
    if (a->skip_to_sync && type != 'S')
        return;
    switch (type) {
    case 'Q': {
        const char *text;
        size_t tl;
        if (!pg_parse_query(payload, len, &text, &tl)) {
            client_fail(c, "08P01", "invalid Query message");
            return;
        }
        if (!run_command(c, text, &a->portal)) {
            a->busy = true;
            a->busy_mode = EMIT_SIMPLE;
            return;
        }
        emit_simple(c, &a->portal);
        return;
    }
    case 'P': {
        PgParseMsg pm;
        if (!pg_parse_parse(payload, len, &pm)) {
            client_fail(c, "08P01", "invalid Parse message");
            return;
        }
        char *text = strndup(pm.query, MAX_TEXT);
        if (!text || !strmap_put(&a->stmts, pm.name, text)) {
            free(text);
            client_close(c, "out of memory");
            return;
        }
        pg_write_empty(&w, '1');
        break;
    }
    case 'B': {
        PgBindMsg bm;
        if (!pg_parse_bind(payload, len, &bm)) {
            client_fail(c, "08P01", "invalid Bind message");
            return;
        }
        const char *text = strmap_get(&a->stmts, bm.stmt);
        if (!text) {
            pg_write_error(&w, "ERROR", "26000", "prepared statement does not exist", NULL);
            a->skip_to_sync = true;
            break;
        }
        a->portal_bound = true;
        if (!run_command(c, text, &a->portal)) {
            a->busy = true;
            a->busy_mode = EMIT_EXTENDED;
            a->portal_bound = false;
        }
        pg_write_empty(&w, '2');
        break;
    }
    case 'D': {
        PgTargetMsg t;
        if (!pg_parse_target(payload, len, &t)) {
            client_fail(c, "08P01", "invalid Describe message");
            return;
        }
        if (t.kind == 'S') {
            /* Admin commands take no parameters; their columns are known once run. */
            size_t at = bw_msg_begin(&w, 't');
            bw_u16(&w, 0);
            bw_msg_end(&w, at);
            pg_write_empty(&w, 'n');
        } else if (a->portal_bound && !a->portal.error) {
            write_row_description(&w, &a->portal);
        } else {
            pg_write_empty(&w, 'n');
        }
        break;
    }
    case 'E':
        if (!a->portal_bound) {
            pg_write_error(&w, "ERROR", "34000", "portal does not exist", NULL);
            a->skip_to_sync = true;
            break;
        }
        write_rows_and_tag(&w, &a->portal);
        if (a->portal.error)
            a->skip_to_sync = true;
        a->portal_bound = false;
        break;
    case 'C':
        pg_write_empty(&w, '3');
        break;
    case 'S':
        a->skip_to_sync = false;
        pg_write_ready(&w, 'I');
        break;
    case 'H':
        return;
    case 'X':
        client_close(c, "admin console closed");
        return;
    default:
        client_fail(c, "08P01", "unexpected message type '%c' in the admin console",
                    type >= 32 && type < 127 ? type : '?');
        return;
    }
    (void)send_writer(c, &w);
}

void admin_client_input(Client *c)
{
    while ((c->state == CS_ADMIN || c->state == CS_ADMIN_AUTH) && !c->admin->busy) {
        Frame f;
        pg_framer_next(&c->c_framer, iobuf_head(&c->c_in), iobuf_len(&c->c_in), &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->c_need = f.need;
            return;
        }
        c->c_need = 0;
        if (f.kind != FRAME_MESSAGE) {
            client_fail(c, "08P01", "invalid message length in the admin console");
            return;
        }
        if (c->state == CS_ADMIN_AUTH) {
            if (f.type != 'p') {
                client_fail(c, "08P01", "expected a SASL response during authentication");
                return;
            }
            handle_sasl(c, f.p + 5, f.n - 5);
        } else {
            handle_message(c, f.type, f.p + 5, f.n - 5);
        }
        if (c->state == CS_DEAD)
            return;
        iobuf_consume(&c->c_in, f.n);
    }
}
