/*
 * request.c — units, judgement, answers from cache, relay with capture, invalidation.
 *
 * Life of a unit (one Query, or Parse/Bind/Describe/Execute/Close up to Sync):
 *   1. its bytes are collected in c_in, nothing is sent yet;
 *   2. it is judged: every Query/Execute gets a decision (cache, or a bypass reason);
 *   3. when every one may be cached: the session probe runs if settings may have changed,
 *      keys are made, and lookups go to Redis in one pipelined batch;
 *   4. all hits: pgstash answers the unit itself, the server never hears of it;
 *      otherwise the unit goes to the server — with Parse messages of statements the server
 *      never saw put in front — and misses capture the answer on its way to the client;
 *   5. at ReadyForQuery: captures are stored, and when the unit committed writes, their
 *      tables are bumped in Redis before the rest of the answer is released to the client.
 */
#include "proxy/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/cache.h"
#include "proxy/client.h"
#include "proxy/decide.h"
#include "proxy/log.h"
#include "proxy/reasons.h"
#include "proxy/store.h"
#include "proxy/worker.h"

#define UNIT_COLLECT_MAX (256 * 1024) /* a bigger unit is streamed to the server as it comes */
#define OUT_HIGH         (256 * 1024) /* matches client.c: stop producing above this */
#define HOLD_MAX         (1024 * 1024) /* held answer bigger than this: bump early, release */
#define LOCAL_STMTS_MAX  64           /* statements parsed within one judged unit */
#define CATALOG_WAIT_MS  2000         /* longest a unit waits for its catalog */

typedef enum {
    EXP_PARSE,         /* ParseComplete for the client */
    EXP_PARSE_SWALLOW, /* ParseComplete of a Parse pgstash put in front: not relayed */
    EXP_BIND,          /* BindComplete */
    EXP_DESC_STMT,     /* ParameterDescription, then RowDescription or NoData */
    EXP_DESC_PORTAL,   /* RowDescription or NoData, kept for the portal's Execute */
    EXP_EXECUTE,       /* DataRows and the completion of one Execute */
    EXP_CLOSE,         /* CloseComplete */
    EXP_SYNC,          /* ReadyForQuery */
    EXP_SYNC_SWALLOW,  /* ReadyForQuery of a Sync pgstash sent after an injected Parse */
    EXP_QUERY,         /* everything a simple Query answers, up to ReadyForQuery */
} ExpectKind;

struct Expect {
    ExpectKind kind;
    int exec; /* index into execs for EXECUTE/DESC_PORTAL/QUERY, or -1 */
};

/* The fixed query that reads what a session's cache keys depend on. Its only parameter is
 * the list of custom settings the session touched (sent as a value, never as SQL). */
static const char PROBE_SQL[] =
    "SELECT name, setting FROM pg_catalog.pg_settings WHERE name IN ("
    "'search_path','TimeZone','DateStyle','IntervalStyle','extra_float_digits',"
    "'bytea_output','client_encoding','standard_conforming_strings','lc_monetary',"
    "'lc_numeric','lc_time','row_security','transform_null_equals','xmlbinary','xmloption',"
    "'default_transaction_isolation','array_nulls','default_text_search_config',"
    "'quote_all_identifiers','backslash_quote','escape_string_warning','timezone_abbreviations')"
    " UNION ALL SELECT 'role', current_user::text || '/' || session_user::text"
    " UNION ALL SELECT 'temp:' || c.relname, '' FROM pg_catalog.pg_class c"
    " WHERE c.relnamespace = pg_catalog.pg_my_temp_schema()"
    " UNION ALL SELECT 'guc:' || g.n, coalesce(pg_catalog.current_setting(g.n, true), '\x01')"
    " FROM (SELECT unnest($1::text[]) AS n UNION"
    " SELECT split_part(s, '=', 1) FROM pg_catalog.pg_db_role_setting d,"
    " unnest(d.setconfig) AS s WHERE d.setdatabase IN (0, (SELECT oid FROM"
    " pg_catalog.pg_database WHERE datname = pg_catalog.current_database()))"
    " AND d.setrole IN (0, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = session_user))"
    " AND position('.' in split_part(s, '=', 1)) > 0) AS g"
    " ORDER BY 1";

static void process_unit(Client *c);
static void forward_unit(Client *c, int reason);
static bool out(Client *c, const void *p, size_t n);
static void finish_unit(Client *c);

static const Config *cfg_of(const Client *c)
{
    return c->worker->snap->cfg;
}

void request_init(Request *r)
{
    memset(r, 0, sizeof *r);
    r->tx_status = 'I';
    session_init(&r->session);
}

static void clear_unit(Request *r)
{
    for (int i = 0; i < r->n_execs; i++)
        exec_clear(&r->execs[i]);
    r->n_execs = 0;
    r->n_expect = r->at_expect = 0;
    r->lookups_pending = 0;
    r->cacheable = 0;
    writeset_clear(&r->writes);
    writeset_clear(&r->prev_bumped);
    r->maybe_writes = r->unit_flags_session = r->unit_ddl = false;
    r->errored = r->saw_commit = r->saw_rollback = false;
    r->unit_tx_control = r->unit_has_commit = false;
    r->unit_iso = SQL_ISO_DEFAULT;
    r->early_bumped = false;
}

void request_free(Request *r)
{
    clear_unit(r);
    free(r->execs);
    free(r->expect);
    iobuf_free(&r->held);
    bw_free(&r->probe_rows);
    session_free(&r->session);
}

/* The only place that writes r->state. */
static void request_set_state(Client *c, RequestState state)
{
    c->req.state = state;
    if (state == REQ_IDLE)
        c->req.idle_since_ms = worker_now_ms(c->worker);
}

static bool unit_may_bump(const Request *r);

bool request_write_in_flight(const Request *r)
{
    if (r->state == REQ_BUMP)
        return true;
    /* An open unit (no Sync yet) or COPY data still to come: PostgreSQL aborts it when the
     * connection goes, as it would for a client talking to it directly. */
    return r->state == REQ_SERVER && !r->unit_open && r->copy == COPY_NONE &&
           r->rfq_pending > 0 && unit_may_bump(r);
}

bool request_is_idle(const Request *r)
{
    return r->state == REQ_IDLE && r->rfq_pending == 0 && r->tx_status == 'I' &&
           r->copy == COPY_NONE;
}

static Exec *add_exec(Request *r)
{
    if (r->n_execs == r->cap_execs) {
        int cap = r->cap_execs ? r->cap_execs * 2 : 4;
        Exec *e = realloc(r->execs, (size_t)cap * sizeof *e);
        if (!e)
            return NULL;
        r->execs = e;
        r->cap_execs = cap;
    }
    Exec *e = &r->execs[r->n_execs++];
    memset(e, 0, sizeof *e);
    return e;
}

static bool add_expect(Request *r, ExpectKind kind, int exec)
{
    if (r->n_expect == r->cap_expect) {
        int cap = r->cap_expect ? r->cap_expect * 2 : 16;
        Expect *x = realloc(r->expect, (size_t)cap * sizeof *x);
        if (!x)
            return false;
        r->expect = x;
        r->cap_expect = cap;
    }
    r->expect[r->n_expect++] = (Expect){kind, exec};
    return true;
}

/* --- walking a collected unit ------------------------------------------------------------- */

typedef struct {
    const uint8_t *base;
    size_t at, end;
    char type;
    const uint8_t *msg;     /* whole message */
    size_t msg_len;
    const uint8_t *payload; /* after type and length */
    size_t payload_len;
} UnitIter;

static void unit_iter_init(UnitIter *it, const Client *c)
{
    it->base = iobuf_head(&c->c_in);
    it->at = 0;
    it->end = c->req.collect_len;
}

/* Messages of the unit were framed (and length-checked) while collecting. */
static bool unit_next(UnitIter *it)
{
    if (it->at + 5 > it->end)
        return false;
    it->msg = it->base + it->at;
    it->type = (char)it->msg[0];
    it->msg_len = (size_t)be32(it->msg + 1) + 1;
    it->payload = it->msg + 5;
    it->payload_len = it->msg_len - 5;
    it->at += it->msg_len;
    return it->at <= it->end;
}

/* Statements parsed inside the unit being judged, before they reach the session. */
typedef struct {
    int n;
    const char *names[LOCAL_STMTS_MAX]; /* point into c_in: valid during one walk */
    Stmt *stmts[LOCAL_STMTS_MAX];
} LocalStmts;

static void local_free(LocalStmts *l)
{
    for (int i = 0; i < l->n; i++)
        stmt_free(l->stmts[i]);
    l->n = 0;
}

static Stmt *local_find(const LocalStmts *l, const char *name)
{
    for (int i = l->n - 1; i >= 0; i--)
        if (strcmp(l->names[i], name) == 0)
            return l->stmts[i];
    return NULL;
}

/* --- bookkeeping of what the server now has ------------------------------------------------ */

/* A Parse sent to (or answered for) the server: the session learns the statement. */
static void apply_parse(Client *c, const PgParseMsg *pm, const uint8_t *msg, size_t msg_len,
                        bool on_server)
{
    Session *s = &c->req.session;
    Stmt *old = session_stmt(s, pm->name);
    if (!on_server && pm->name[0] && old)
        return; /* a duplicate name goes to the server; never answered locally */
    if (old && old->parse_len == msg_len && memcmp(old->parse_msg, msg, msg_len) == 0) {
        old->on_server |= on_server; /* the same Parse again (drivers' unnamed one) */
        return;
    }
    SqlAnalysis *a = sqlparse_analyze(c->worker->memo, pm->query, pm->query_len);
    Stmt *st = a ? stmt_new(msg, msg_len, a, on_server) : NULL;
    sqlparse_release(a);
    if (!st || !session_put_stmt(s, pm->name, st))
        strmap_remove(&s->stmts, pm->name);
}

/* A Bind: the session learns which statement the portal runs. */
static void apply_bind(Client *c, const PgBindMsg *bm)
{
    Session *s = &c->req.session;
    const char *bound = strmap_get(&s->portals, bm->portal);
    if (bound && strcmp(bound, bm->stmt) == 0)
        return; /* bound to the same statement again */
    char *stmt = strdup(bm->stmt);
    if (!stmt || !strmap_put(&s->portals, bm->portal, stmt))
        free(stmt);
}

/* Remembers what a message sent to (or answered for) the server changes in the session. */
static void apply_message(Client *c, char type, const uint8_t *msg, size_t msg_len,
                          bool on_server)
{
    Session *s = &c->req.session;
    const uint8_t *payload = msg + 5;
    size_t plen = msg_len - 5;
    switch (type) {
    case 'P': {
        PgParseMsg pm;
        if (pg_parse_parse(payload, plen, &pm))
            apply_parse(c, &pm, msg, msg_len, on_server);
        return;
    }
    case 'B': {
        PgBindMsg bm;
        if (pg_parse_bind(payload, plen, &bm))
            apply_bind(c, &bm);
        return;
    }
    case 'C': {
        PgTargetMsg t;
        if (!pg_parse_target(payload, plen, &t))
            return;
        if (t.kind == 'S')
            strmap_remove(&s->stmts, t.name);
        else
            strmap_remove(&s->portals, t.name);
        return;
    }
    default:
        return;
    }
}

/* The analysis of the statement an Execute of `portal` runs, or NULL. */
static SqlAnalysis *portal_analysis(Session *s, const char *portal)
{
    const char *stmt = strmap_get(&s->portals, portal);
    Stmt *st = stmt ? session_stmt(s, stmt) : NULL;
    return st ? st->analysis : NULL;
}

/* The snapshot reads and writes may be judged with: none while it is stale or missing. */
static const CatalogDb *trusted_catalog(const Session *s)
{
    return s->cat_state == CATALOG_READY ? s->cat : NULL;
}

static bool privileges_only(const SqlAnalysis *a)
{
    static const char *const commands[] = {"GrantStmt",     "GrantRoleStmt",      "CreateRoleStmt",
                                           "AlterRoleStmt", "AlterRoleSetStmt",   "DropRoleStmt",
                                           "AlterDefaultPrivilegesStmt"};
    if (a->n_statements != 1 || !a->command)
        return false;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(a->command, commands[i]) == 0)
            return true;
    return false;
}

/* Folds what one executed statement changes into the unit. */
static void note_statement(Client *c, SqlAnalysis *a)
{
    Request *r = &c->req;
    Session *s = &r->session;
    const Config *cfg = cfg_of(c);
    if (!a) {
        r->writes.all = true;
        r->maybe_writes = true;
        r->unit_flags_session = true;
        return;
    }
    if (decide_writes(cfg, trusted_catalog(s), s, a, &r->writes))
        r->maybe_writes = true;
    if (a->changes_session || a->creates_temp || a->discards_temp || a->execute_name ||
        a->kind == SQL_KIND_ERROR || a->kind == SQL_KIND_OTHER)
        r->unit_flags_session = true;
    /* The catalog never holds temporary relations or privileges: creating a temporary table,
     * GRANT, REVOKE and role changes need no reload. */
    if (a->is_ddl && !a->creates_temp && !privileges_only(a))
        r->unit_ddl = true;
    if (a->has_tx_control)
        r->unit_tx_control = true;
    if (a->has_commit)
        r->unit_has_commit = true;
    if (a->isolation > r->unit_iso)
        r->unit_iso = a->isolation;
    /* The session default changes now (the probe confirms it before the next lookup). */
    if (a->sets_default_isolation)
        s->default_iso_high = a->default_isolation >= SQL_ISO_REPEATABLE_READ;
    /* SQL-level PREPARE/DEALLOCATE share the namespace of protocol-level statements. */
    if (a->prepare_name) {
        SqlAnalysis *ref = sqlparse_ref((SqlAnalysis *)a);
        if (!strmap_put(&s->sql_prepared, a->prepare_name, ref))
            sqlparse_release(ref);
    }
    if (a->deallocate_name) {
        if (!a->deallocate_name[0]) {
            session_forget_statements(s);
        } else {
            strmap_remove(&s->sql_prepared, a->deallocate_name);
            strmap_remove(&s->stmts, a->deallocate_name);
        }
    }
    /* DISCARD ALL also deallocates every prepared statement. */
    if (a->discards_all)
        session_forget_statements(s);
    /* Custom settings are read back by name by the session probe. */
    for (size_t i = 0; i < a->n_settings; i++)
        if (!strmap_get(&s->guc_names, a->settings[i].name) &&
            !strmap_put(&s->guc_names, a->settings[i].name, (void *)1))
            s->probe_failed = true;
}

/* --- output -------------------------------------------------------------------------------- */

/* Client output of the current unit: withheld while invalidations are pending. */
static bool out(Client *c, const void *p, size_t n)
{
    Request *r = &c->req;
    if (!r->holding)
        return client_send(c, p, n);
    if (!iobuf_append(&r->held, p, n)) {
        client_close(c, "out of memory");
        return false;
    }
    return true;
}

static bool release_held(Client *c)
{
    Request *r = &c->req;
    r->holding = false;
    if (iobuf_len(&r->held) == 0)
        return true;
    bool ok = client_send(c, iobuf_head(&r->held), iobuf_len(&r->held));
    iobuf_consume(&r->held, iobuf_len(&r->held));
    iobuf_shrink(&r->held, 0);
    return ok;
}

void request_server_lost(Client *c)
{
    Request *r = &c->req;
    if (!r->holding)
        return;
    /* The answer of a write was being withheld for its invalidation, and the server is gone
     * before its ReadyForQuery: the write may have committed. The client must still hear
     * what the server said (its CommandComplete, the FATAL); this instance serves no hits
     * until the global epoch is bumped, which covers whatever did commit. */
    store_note_lost_write();
    (void)release_held(c);
}

/* --- debug log of decisions ----------------------------------------------------------------- */

static void log_decision(Client *c, const Exec *e, const char *verdict)
{
    if (!log_enabled(LOG_DEBUG))
        return;
    const char *cmd = e->analysis && e->analysis->command ? e->analysis->command : "?";
    if (e->reason == DECIDE_CACHE)
        LOG_AT(LOG_DEBUG, c->ident, "%s %s tables=%zu ttl=%lldms", verdict, cmd,
               e->tables.n_tables, (long long)e->tables.ttl_ms);
    else
        LOG_AT(LOG_DEBUG, c->ident, "bypass:%s %s", bypass_reason_name(e->reason), cmd);
}

typedef enum { TABLE_HIT, TABLE_MISS, TABLE_BYPASS } TableEvent;

/* Per-shape counters of one execution (SHOW QUERIES). */
static void note_query(Client *c, const Exec *e, TableEvent ev)
{
    SqlAnalysis *a = e->analysis;
    if (!a)
        return;
    TableCounters *qc = a->user_slot;
    if (!qc) {
        qc = tablestats_get_key(&c->worker->queries, a->normalized ? a->normalized : a->command);
        a->user_slot = qc;
        if (!qc)
            return;
    }
    STAT_INC(qc->reads);
    stat_add(ev == TABLE_HIT ? &qc->hits : ev == TABLE_MISS ? &qc->misses : &qc->bypasses, 1);
    atomic_store_explicit(&qc->last_reason, e->reason, memory_order_relaxed);
}

/* Per-table counters of one execution. */
static void note_tables(Client *c, const Exec *e, TableEvent ev)
{
    note_query(c, e, ev);
    TableStats *ts = &c->worker->tables;
    const CatalogDb *cat = c->req.session.cat;
    size_t n = ev == TABLE_BYPASS ? (e->analysis ? e->analysis->n_reads : 0) : e->tables.n_tables;
    for (size_t i = 0; i < n; i++) {
        const char *name = ev == TABLE_BYPASS ? e->analysis->reads[i].name : readtables_name(&e->tables, i);
        if (ev == TABLE_BYPASS && (!cat || !catalog_rel(cat, name)))
            continue; /* only tables that exist are worth a line */
        TableCounters *tc = tablestats_get(ts, c->database, name);
        if (!tc)
            continue;
        STAT_INC(tc->reads);
        stat_add(ev == TABLE_HIT ? &tc->hits : ev == TABLE_MISS ? &tc->misses : &tc->bypasses, 1);
    }
}

static void count_bypass(Client *c, const Exec *e)
{
    if (!e->analysis || e->analysis->kind != SQL_KIND_READ || e->reason == DECIDE_CACHE)
        return;
    if (e->reason >= 0 && e->reason < STATS_MAX_REASONS)
        STAT_INC(c->worker->stats.bypasses[e->reason]);
    /* With the cache off every read bypasses: per-table lines would only count reads, at two
     * lookups per table per statement on the pure-relay path. */
    if (e->reason == BYPASS_CACHE_DISABLED)
        note_query(c, e, TABLE_BYPASS);
    else
        note_tables(c, e, TABLE_BYPASS);
    log_decision(c, e, "bypass");
}

/* --- judging a unit ------------------------------------------------------------------------- */

/*
 * Refreshes the session's catalog snapshot and its state (READY, or LOADING when DDL made it
 * stale). False when there is none yet and one is being read: the unit must wait.
 */
static bool have_catalog(Client *c, CatalogState *state)
{
    Session *s = &c->req.session;
    uint64_t gen = catalog_generation();
    if (s->cat && s->cat_gen == gen) {
        *state = s->cat_state;
        return true;
    }
    CatalogDb *cat = catalog_acquire(c->database, state);
    if (cat) {
        if (!s->cat)
            cache_register_database(c);
        if (cat != s->cat)
            session_touch(s); /* policies may read other settings now */
        catalog_release(s->cat);
        s->cat = cat;
        s->cat_gen = gen;
        s->cat_state = *state;
        return true;
    }
    if (s->cat) {
        s->cat_state = *state == CATALOG_FAILED ? CATALOG_FAILED : CATALOG_LOADING;
        *state = s->cat_state;
        return true;
    }
    return *state != CATALOG_LOADING;
}

/* True when a text-format parameter is one of the special date/time words. */
static bool has_time_literal_param(const PgBindMsg *b)
{
    ByteReader r;
    br_init(&r, b->params, b->params_len);
    for (uint16_t i = 0; i < b->n_params; i++) {
        int32_t len = br_i32(&r);
        const uint8_t *v = len > 0 ? br_bytes(&r, (size_t)len) : NULL;
        if (v && pg_bind_param_format(b, i) == 0 && len <= 16 &&
            sqlparse_is_time_literal((const char *)v, (size_t)len))
            return true;
    }
    return false;
}

/*
 * Judges an extended-protocol unit. Builds one Exec per Execute. Returns 0 when the unit
 * as a whole may be answered from cache, else the reason it must go to the server.
 */
static int judge_extended(Client *c, CatalogState cat_state)
{
    Request *r = &c->req;
    Session *s = &r->session;
    const Config *cfg = cfg_of(c);
    LocalStmts local = {0};
    int unit_reason = 0;
    const char *bound_stmt = NULL; /* statement bound to the unnamed portal in this unit */
    Stmt *bound = NULL;
    PgBindMsg bind = {0};
    bool describe_pending = false;
    UnitIter it;
    unit_iter_init(&it, c);
    while (unit_next(&it)) {
        switch (it.type) {
        case 'P': {
            PgParseMsg pm;
            if (!pg_parse_parse(it.payload, it.payload_len, &pm)) {
                unit_reason = BYPASS_PROTOCOL;
                break;
            }
            /* A name already in use makes PostgreSQL raise an error: let it. */
            if (pm.name[0] && (session_stmt(s, pm.name) || local_find(&local, pm.name) ||
                               strmap_get(&s->sql_prepared, pm.name)))
                unit_reason = BYPASS_PROTOCOL;
            if (local.n == LOCAL_STMTS_MAX) {
                unit_reason = BYPASS_PROTOCOL;
                break;
            }
            SqlAnalysis *a = sqlparse_analyze(c->worker->memo, pm.query, pm.query_len);
            Stmt *st = a ? stmt_new(it.msg, it.msg_len, a, false) : NULL;
            sqlparse_release(a);
            if (!st) {
                unit_reason = BYPASS_PROTOCOL;
                break;
            }
            local.names[local.n] = pm.name;
            local.stmts[local.n++] = st;
            break;
        }
        case 'B':
            if (!pg_parse_bind(it.payload, it.payload_len, &bind) || bind.portal[0]) {
                unit_reason = BYPASS_PROTOCOL; /* named portals outlive the unit */
                bound = NULL;
                break;
            }
            if (describe_pending)
                unit_reason = BYPASS_PROTOCOL;
            bound_stmt = bind.stmt;
            bound = local_find(&local, bind.stmt);
            if (!bound)
                bound = session_stmt(s, bind.stmt);
            if (!bound)
                unit_reason = BYPASS_PROTOCOL; /* unknown, or an SQL-level PREPARE */
            break;
        case 'D': {
            PgTargetMsg t;
            if (!pg_parse_target(it.payload, it.payload_len, &t) || t.kind == 'S' || t.name[0] ||
                !bound)
                unit_reason = BYPASS_PROTOCOL;
            else
                describe_pending = true;
            break;
        }
        case 'E': {
            PgExecuteMsg em;
            Exec *e = add_exec(r);
            if (!e) {
                unit_reason = BYPASS_PROTOCOL;
                break;
            }
            bool parsed = pg_parse_execute(it.payload, it.payload_len, &em);
            if (!parsed || em.portal[0] || !bound) {
                e->reason = BYPASS_PROTOCOL;
                /* A malformed Execute may have no portal name at all (NULL: found by
                 * tests/fuzz, it crashed the process in strlen). */
                SqlAnalysis *pa = parsed ? portal_analysis(s, em.portal) : NULL;
                e->analysis = pa ? sqlparse_ref(pa) : NULL;
                unit_reason = BYPASS_PROTOCOL;
                break;
            }
            e->analysis = sqlparse_ref(bound->analysis);
            e->want_desc = describe_pending;
            describe_pending = false;
            if (em.max_rows != 0)
                e->reason = BYPASS_ROW_LIMIT;
            else if (has_time_literal_param(&bind))
                e->reason = BYPASS_PARAM_TIME_LITERAL;
            else
                e->reason = decide_read(cfg, trusted_catalog(s), cat_state, s, r->tx_status,
                                        e->analysis, &e->tables);
            if (e->reason != DECIDE_CACHE && !unit_reason)
                unit_reason = e->reason;
            bound = NULL; /* an executed unnamed portal is done */
            break;
        }
        case 'C': {
            PgTargetMsg t;
            if (!pg_parse_target(it.payload, it.payload_len, &t))
                unit_reason = BYPASS_PROTOCOL;
            else if (t.kind == 'S') {
                Stmt *st = session_stmt(s, t.name);
                if (st && st->on_server)
                    unit_reason = BYPASS_PROTOCOL; /* the server must forget it too */
            }
            break;
        }
        case 'S':
            if (describe_pending)
                unit_reason = BYPASS_PROTOCOL;
            break;
        default:
            unit_reason = BYPASS_PROTOCOL;
            break;
        }
    }
    (void)bound_stmt;
    local_free(&local);
    if (r->n_execs == 0 && !unit_reason)
        unit_reason = BYPASS_PROTOCOL; /* nothing to answer from cache */
    return unit_reason;
}

/* Makes keys for every exec of the unit (walking it again: c_in may have moved). Returns
 * a bitmask-free result through each exec: true when all keys are known locally. */
static void make_keys(Client *c, bool *all_known)
{
    Request *r = &c->req;
    Session *s = &r->session;
    *all_known = true;
    if (!r->extended) {
        const char *text;
        size_t len;
        UnitIter it;
        unit_iter_init(&it, c);
        if (!unit_next(&it) || !pg_parse_query(it.payload, it.payload_len, &text, &len))
            return;
        Exec *e = &r->execs[0];
        e->fill = false;
        bool known = cache_make_key(c, e, CACHEKEY_SIMPLE, text, len, NULL, NULL);
        e->lookup = known ? LOOKUP_WAIT : LOOKUP_MISS;
        *all_known = known;
        return;
    }
    LocalStmts local = {0};
    Stmt *bound = NULL;
    PgBindMsg bind = {0};
    int n = 0;
    UnitIter it;
    unit_iter_init(&it, c);
    while (unit_next(&it) && n < r->n_execs) {
        if (it.type == 'P') {
            PgParseMsg pm;
            if (pg_parse_parse(it.payload, it.payload_len, &pm) && local.n < LOCAL_STMTS_MAX) {
                SqlAnalysis *a = sqlparse_analyze(c->worker->memo, pm.query, pm.query_len);
                Stmt *st = a ? stmt_new(it.msg, it.msg_len, a, false) : NULL;
                sqlparse_release(a);
                if (st) {
                    local.names[local.n] = pm.name;
                    local.stmts[local.n++] = st;
                }
            }
        } else if (it.type == 'B') {
            if (pg_parse_bind(it.payload, it.payload_len, &bind)) {
                bound = local_find(&local, bind.stmt);
                if (!bound)
                    bound = session_stmt(s, bind.stmt);
            }
        } else if (it.type == 'E') {
            Exec *e = &r->execs[n++];
            if (!bound) {
                *all_known = false;
                continue;
            }
            bool known = cache_make_key(c, e, CACHEKEY_EXTENDED, bound->text, bound->text_len,
                                        bound, &bind);
            *all_known = *all_known && known;
            e->lookup = known ? LOOKUP_WAIT : LOOKUP_MISS;
            bound = NULL;
        }
    }
    local_free(&local);
}

/* --- the probe ---------------------------------------------------------------------------- */

static void put_text_element(ByteWriter *w, const char *s)
{
    size_t n = strlen(s);
    bw_u32(w, (uint32_t)n);
    bw_put(w, s, n);
}

/*
 * Appends, as a binary text[] parameter, the custom setting names to read: those the session
 * touched and those row-level security policies of its database read.
 */
static void put_name_array(ByteWriter *w, const StrMap *names, char *const *policy_names)
{
    size_t count = names->count;
    for (char *const *p = policy_names; p && *p; p++)
        count++;
    size_t len_at = w->len;
    bw_u32(w, 0);
    size_t start = w->len;
    bw_u32(w, count ? 1 : 0); /* ndim; 0 is the empty array */
    bw_u32(w, 0);             /* no NULLs */
    bw_u32(w, 25);            /* text */
    if (count) {
        bw_u32(w, (uint32_t)count);
        bw_u32(w, 1);
        for (StrMapIter it = strmap_iter(names); strmap_next(names, &it);)
            put_text_element(w, it.entry->key);
        for (char *const *p = policy_names; p && *p; p++)
            put_text_element(w, *p);
    }
    if (!w->failed)
        put_be32(w->data + len_at, (uint32_t)(w->len - start));
}

/* Sends the probe (extended protocol, unnamed statement) ahead of the waiting unit. */
static bool send_probe(Client *c)
{
    Request *r = &c->req;
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'P');
    bw_u8(&w, 0);
    bw_cstr(&w, PROBE_SQL);
    bw_u16(&w, 1);
    bw_u32(&w, 1009); /* text[] */
    bw_msg_end(&w, at);
    at = bw_msg_begin(&w, 'B');
    bw_u8(&w, 0);
    bw_u8(&w, 0);
    bw_u16(&w, 1);
    bw_u16(&w, 1); /* the parameter is binary */
    bw_u16(&w, 1);
    put_name_array(&w, &r->session.guc_names,
                   r->session.cat ? r->session.cat->policy_settings : NULL);
    bw_u16(&w, 0); /* results as text */
    bw_msg_end(&w, at);
    at = bw_msg_begin(&w, 'E');
    bw_u8(&w, 0);
    bw_u32(&w, 0);
    bw_msg_end(&w, at);
    pg_write_empty(&w, 'S');
    bool ok = !w.failed && server_send(c, w.data, w.len);
    bw_free(&w);
    if (!ok)
        return false;
    session_unnamed_gone(&r->session);
    bw_reset(&r->probe_rows);
    r->probe_ok = true;
    request_set_state(c, REQ_PROBE);
    return true;
}

/* Turns the probe's rows (name\0value\0 ...) into the session digest. */
static void finish_probe(Client *c)
{
    Request *r = &c->req;
    Session *s = &r->session;
    if (!r->probe_ok || r->probe_rows.failed) {
        s->probe_failed = true;
        return;
    }
    enum { MAX_SETTINGS = 512 };
    CacheKeySetting settings[MAX_SETTINGS];
    size_t n = 0;
    strmap_clear(&s->temp_tables);
    s->default_iso_high = false;
    const char *role = "";
    ByteReader br;
    br_init(&br, r->probe_rows.data, r->probe_rows.len);
    while (br_left(&br) > 0) {
        const char *name = br_cstr(&br, NULL);
        const char *value = br_cstr(&br, NULL);
        if (!name || !value)
            break;
        if (strncmp(name, "temp:", 5) == 0) {
            if (!strmap_put(&s->temp_tables, name + 5, (void *)1)) {
                s->probe_failed = true;
                return;
            }
            continue;
        }
        if (strcmp(name, "role") == 0)
            role = value;
        if (strcmp(name, "default_transaction_isolation") == 0)
            s->default_iso_high = strcmp(value, "read committed") != 0 &&
                                  strcmp(value, "read uncommitted") != 0;
        if (n == MAX_SETTINGS) {
            s->probe_failed = true;
            return;
        }
        settings[n++] = (CacheKeySetting){name, value};
    }
    CacheKeySession ks = {c->database, c->user, role, settings, n};
    cachekey_session(&ks, &s->digest);
    s->probe_needed = false;
    s->probe_failed = false;
}

/* Server messages while the probe runs: swallowed, except notifications. */
static bool probe_server_frame(Client *c, const Frame *f)
{
    Request *r = &c->req;
    if (f->kind == FRAME_PIECE) {
        r->probe_ok = false; /* no probe row is that big */
        return true;
    }
    switch (f->type) {
    case 'A':
    case 'S':
        return client_send(c, f->p, f->n);
    case 'D': {
        ByteReader br;
        br_init(&br, f->p + 5, f->n - 5);
        if (br_i16(&br) != 2) {
            r->probe_ok = false;
            return true;
        }
        for (int i = 0; i < 2; i++) {
            int32_t len = br_i32(&br);
            const uint8_t *v = len > 0 ? br_bytes(&br, (size_t)len) : NULL;
            if (len < 0 || br.failed || (v && memchr(v, 0, (size_t)len))) {
                r->probe_ok = false;
                return true;
            }
            bw_put(&r->probe_rows, v, (size_t)len);
            bw_u8(&r->probe_rows, 0);
        }
        return true;
    }
    case 'E':
        r->probe_ok = false;
        LOG_AT(LOG_INFO, c->ident, "session probe failed: %s",
               pg_error_field(f->p + 5, f->n - 5, 'M') ? pg_error_field(f->p + 5, f->n - 5, 'M')
                                                        : "?");
        return true;
    case 'Z':
        if (f->n == 6)
            r->tx_status = (char)f->p[5];
        finish_probe(c);
        request_set_state(c, REQ_COLLECT);
        process_unit(c);
        return true;
    default:
        return true; /* ParseComplete, BindComplete, CommandComplete, notices */
    }
}

/* --- answering from cache ------------------------------------------------------------------ */

static const uint8_t PARSE_COMPLETE[5] = {'1', 0, 0, 0, 4};
static const uint8_t BIND_COMPLETE[5] = {'2', 0, 0, 0, 4};
static const uint8_t CLOSE_COMPLETE[5] = {'3', 0, 0, 0, 4};

/* Writes the whole unit's answer from the entries, then ReadyForQuery. */
static bool replay(Client *c)
{
    Request *r = &c->req;
    uint8_t ready[6] = {'Z', 0, 0, 0, 5, (uint8_t)r->tx_status};
    if (!r->extended) {
        Exec *e = &r->execs[0];
        if (e->view.desc && !client_send(c, e->view.desc, e->view.desc_len))
            return false;
        return client_send(c, e->view.body, e->view.body_len) &&
               client_send(c, ready, sizeof ready);
    }
    int n = 0;
    UnitIter it;
    unit_iter_init(&it, c);
    while (unit_next(&it)) {
        bool ok = true;
        switch (it.type) {
        case 'P':
            ok = client_send(c, PARSE_COMPLETE, 5);
            break;
        case 'B':
            ok = client_send(c, BIND_COMPLETE, 5);
            break;
        case 'D': {
            const Exec *e = &r->execs[n]; /* the Execute this Describe precedes */
            ok = client_send(c, e->view.desc, e->view.desc_len);
            break;
        }
        case 'E': {
            const Exec *e = &r->execs[n++];
            ok = client_send(c, e->view.body, e->view.body_len);
            break;
        }
        case 'C':
            ok = client_send(c, CLOSE_COMPLETE, 5);
            break;
        case 'S':
            ok = client_send(c, ready, sizeof ready);
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* The unit was answered from cache: update the session as the server would have. */
static void answered_locally(Client *c)
{
    Request *r = &c->req;
    WorkerStats *st = &c->worker->stats;
    UnitIter it;
    unit_iter_init(&it, c);
    while (r->extended && unit_next(&it))
        apply_message(c, it.type, it.msg, it.msg_len, false);
    uint64_t us = (uint64_t)(clock_us() - r->unit_start_us);
    for (int i = 0; i < r->n_execs; i++) {
        STAT_INC(st->hits);
        STAT_INC(st->queries);
        hist_record(&st->hit_latency, us);
        note_tables(c, &r->execs[i], TABLE_HIT);
        log_decision(c, &r->execs[i], "hit");
    }
    iobuf_consume(&c->c_in, r->collect_len);
    r->collect_len = 0;
    clear_unit(r);
    request_set_state(c, REQ_IDLE);
}

void request_lookup_done(Client *c)
{
    Request *r = &c->req;
    if (r->state != REQ_LOOKUP)
        return;
    bool all_hit = r->n_execs > 0;
    int reason = 0;
    for (int i = 0; i < r->n_execs; i++) {
        Exec *e = &r->execs[i];
        if (e->lookup != LOOKUP_HIT)
            all_hit = false;
        if (e->lookup == LOOKUP_FAILED) {
            e->reason = BYPASS_REDIS_UNAVAILABLE;
            reason = BYPASS_REDIS_UNAVAILABLE;
        }
    }
    if (all_hit) {
        if (replay(c))
            answered_locally(c);
    } else {
        forward_unit(c, reason);
    }
}

/* True when an execution reads a table this session's previous unit bumped. */
static bool reads_own_last_write(Request *r)
{
    const WriteSet *w = &r->prev_bumped;
    if (writeset_empty(w))
        return false;
    if (w->all)
        return true;
    for (int i = 0; i < r->n_execs; i++)
        for (size_t t = 0; t < r->execs[i].tables.n_tables; t++)
            for (size_t k = 0; k < w->n; k++)
                if (strcmp(readtables_name(&r->execs[i].tables, t), w->names[k]) == 0)
                    return true;
    return false;
}

/* Every exec is cacheable: probe if needed, make keys, look them all up. */
static void start_lookups(Client *c)
{
    Request *r = &c->req;
    Session *s = &r->session;
    Worker *w = c->worker;
    if (!store_ready(w->store)) {
        forward_unit(c, BYPASS_REDIS_UNAVAILABLE);
        return;
    }
    if (s->probe_needed && !s->probe_failed) {
        if (!send_probe(c))
            return;
        return; /* process_unit runs again when the probe's ReadyForQuery arrives */
    }
    if (s->probe_needed) {
        s->probe_failed = false; /* try again next time */
        forward_unit(c, BYPASS_SESSION_UNKNOWN);
        return;
    }
    bool all_known;
    make_keys(c, &all_known);
    /* consistency: local — the in-process tier answers without any network. */
    if (all_known && cache_tier_usable(c)) {
        int tier_hits = 0;
        for (int i = 0; i < r->n_execs; i++)
            tier_hits += cache_tier_lookup(c, &r->execs[i]);
        if (tier_hits == r->n_execs) {
            STAT_INC(c->worker->stats.local_hits);
            if (replay(c))
                answered_locally(c);
            return;
        }
        for (int i = 0; i < r->n_execs; i++)
            r->execs[i].lookup = LOOKUP_WAIT;
    }
    if (all_known && reads_own_last_write(r)) {
        /* This session's previous unit just moved these tables' versions on: nobody can have
         * stored an entry under them yet, so the lookup would miss. Go straight to the
         * server and fill under the versions known now (read before the query leaves, and
         * never newer than Redis's: at worst the fill is unreachable, never stale). */
        for (int i = 0; i < r->n_execs; i++) {
            r->execs[i].lookup = LOOKUP_MISS;
            r->execs[i].fill = true;
        }
        forward_unit(c, 0);
        return;
    }
    request_set_state(c, REQ_LOOKUP);
    r->lookups_pending = r->n_execs;
    for (int i = 0; i < r->n_execs; i++) {
        Exec *e = &r->execs[i];
        bool key_known = e->lookup == LOOKUP_WAIT;
        if (!cache_lookup(c, e, key_known)) {
            /* Not sent: this exec fails open now; the others complete as they come. */
            e->lookup = LOOKUP_FAILED;
            if (--r->lookups_pending == 0) {
                request_lookup_done(c);
                return;
            }
        }
    }
}

/* A unit is complete in c_in (Query, or up to Sync): judge it and start it on its way. */
static void process_unit(Client *c)
{
    Request *r = &c->req;
    const Config *cfg = cfg_of(c);
    CatalogState cat_state = CATALOG_READY;
    clear_unit(r);
    r->tx_before = r->tx_status;
    /* What the previous unit bumped matters to this unit only. */
    if (!writeset_empty(&r->session.just_bumped)) {
        r->prev_bumped = r->session.just_bumped;
        memset(&r->session.just_bumped, 0, sizeof r->session.just_bumped);
    }

    if (c->replication) {
        forward_unit(c, BYPASS_CACHE_DISABLED);
        return;
    }
    if (r->catalog_wait_ms && worker_now_ms(c->worker) - r->catalog_wait_ms >= CATALOG_WAIT_MS) {
        cat_state = CATALOG_LOADING; /* waited long enough: judge without it */
    } else if (!have_catalog(c, &cat_state)) {
        if (!r->catalog_wait_ms)
            r->catalog_wait_ms = worker_now_ms(c->worker);
        request_set_state(c, REQ_CATALOG);
        return; /* woken by request_catalog_ready or request_catalog_tick */
    }
    r->catalog_wait_ms = 0;
    int unit_reason;
    if (!r->extended) {
        UnitIter it;
        unit_iter_init(&it, c);
        const char *text;
        size_t len;
        Exec *e = add_exec(r);
        if (!e || !unit_next(&it) || !pg_parse_query(it.payload, it.payload_len, &text, &len)) {
            forward_unit(c, BYPASS_PROTOCOL);
            return;
        }
        e->analysis = sqlparse_analyze(c->worker->memo, text, len);
        e->reason = e->analysis ? decide_read(cfg, trusted_catalog(&r->session), cat_state,
                                              &r->session, r->tx_status, e->analysis,
                                              &e->tables)
                                : SQL_REASON_PARSE_ERROR;
        unit_reason = e->reason;
    } else if (!cfg->cache.enabled) {
        /* Nothing can come from the cache: skip the judge (forward_message still follows
         * statements and portals, and counts each Execute). */
        forward_unit(c, BYPASS_CACHE_DISABLED);
        return;
    } else {
        unit_reason = judge_extended(c, cat_state);
    }
    if (unit_reason != 0) {
        forward_unit(c, unit_reason);
        return;
    }
    start_lookups(c);
}

void request_catalog_tick(Client *c, int64_t now_ms)
{
    if (c->state == CS_READY && c->req.state == REQ_CATALOG &&
        now_ms - c->req.catalog_wait_ms >= CATALOG_WAIT_MS)
        request_catalog_ready(c);
}

void request_catalog_ready(Client *c)
{
    if (c->state == CS_READY && c->req.state == REQ_CATALOG) {
        request_set_state(c, REQ_COLLECT);
        process_unit(c);
        client_kick(c);
    }
}

/* --- sending a unit to the server ----------------------------------------------------------- */

/*
 * Client messages on their way to the server. Consecutive messages of a unit lie next to each
 * other in c_in, so they are appended to s_out in one piece; anything pgstash puts in front of
 * a message (the Parse of a statement the server never saw) first flushes what came before.
 */
typedef struct {
    const uint8_t *p;
    size_t n;
} SendRun;

static bool send_run_flush(Client *c, SendRun *run)
{
    bool ok = run->n == 0 || server_send(c, run->p, run->n);
    run->n = 0;
    return ok;
}

static bool send_run_add(Client *c, SendRun *run, const uint8_t *msg, size_t len)
{
    if (run->n && run->p + run->n == msg) {
        run->n += len;
        return true;
    }
    if (!send_run_flush(c, run))
        return false;
    run->p = msg;
    run->n = len;
    return true;
}

/* Puts the Parse of a statement the server never saw in front of a message naming it. */
static bool inject_parse(Client *c, SendRun *run, const char *name)
{
    Stmt *st = session_stmt(&c->req.session, name);
    if (!st || st->on_server)
        return true;
    if (!send_run_flush(c, run) || !server_send(c, st->parse_msg, st->parse_len) ||
        !add_expect(&c->req, EXP_PARSE_SWALLOW, -1))
        return false;
    st->on_server = true;
    return true;
}

/*
 * Before a simple Query that names a protocol-level statement (EXECUTE s, DEALLOCATE s) the
 * server never saw, parse it there in a unit of its own (Parse + Sync, both answers
 * swallowed), so the Query finds it as it would have without the cache.
 */
static bool inject_parse_synced(Client *c, SendRun *run, const char *name)
{
    Stmt *st = session_stmt(&c->req.session, name);
    if (!st || st->on_server)
        return true;
    static const uint8_t sync[5] = {'S', 0, 0, 0, 4};
    if (!inject_parse(c, run, name) || !server_send(c, sync, sizeof sync) ||
        !add_expect(&c->req, EXP_SYNC_SWALLOW, -1))
        return false;
    return true;
}

/*
 * Sends one client message of the current unit to the server (through `run`): statements the
 * server lacks are parsed first, the expected answers are recorded, and the session learns
 * what the server now has. `exec_cursor` numbers the unit's Executes for capture.
 */
static bool forward_message(Client *c, SendRun *run, const uint8_t *msg, size_t len,
                            int *exec_cursor)
{
    Request *r = &c->req;
    Session *s = &r->session;
    char type = (char)msg[0];
    const uint8_t *payload = msg + 5;
    size_t plen = len - 5;
    int exec = -1;
    bool ok = true;
    switch (type) {
    case 'P': {
        PgParseMsg pm;
        bool parsed = pg_parse_parse(payload, plen, &pm);
        if (parsed && pm.name[0])
            ok = inject_parse(c, run, pm.name); /* so that a duplicate name fails as it should */
        ok = ok && add_expect(r, EXP_PARSE, -1) && send_run_add(c, run, msg, len);
        if (ok && parsed)
            apply_parse(c, &pm, msg, len, true);
        return ok;
    }
    case 'B': {
        PgBindMsg bm;
        bool parsed = pg_parse_bind(payload, plen, &bm);
        if (parsed)
            ok = inject_parse(c, run, bm.stmt);
        ok = ok && add_expect(r, EXP_BIND, -1) && send_run_add(c, run, msg, len);
        if (ok && parsed)
            apply_bind(c, &bm);
        return ok;
    }
    case 'D': {
        PgTargetMsg t;
        bool parsed = pg_parse_target(payload, plen, &t);
        if (parsed && t.kind == 'S') {
            ok = inject_parse(c, run, t.name) && add_expect(r, EXP_DESC_STMT, -1);
        } else {
            /* Describe of a portal: its RowDescription belongs to the next Execute. */
            ok = add_expect(r, EXP_DESC_PORTAL, *exec_cursor < r->n_execs ? *exec_cursor : -1);
        }
        break;
    }
    case 'E': {
        PgExecuteMsg em;
        if (*exec_cursor < r->n_execs)
            exec = (*exec_cursor)++;
        if (pg_parse_execute(payload, plen, &em)) {
            SqlAnalysis *a = portal_analysis(s, em.portal);
            note_statement(c, a);
            if (exec < 0 && !cfg_of(c)->cache.enabled) {
                Exec unjudged = {.analysis = a, .reason = BYPASS_CACHE_DISABLED};
                count_bypass(c, &unjudged);
            }
        }
        ok = add_expect(r, EXP_EXECUTE, exec);
        break;
    }
    case 'C':
        ok = add_expect(r, EXP_CLOSE, -1);
        break;
    case 'S':
        ok = add_expect(r, EXP_SYNC, -1);
        break;
    case 'Q': {
        const char *text;
        size_t tlen;
        if (*exec_cursor < r->n_execs)
            exec = (*exec_cursor)++;
        SqlAnalysis *a = NULL;
        if (exec >= 0 && r->execs[exec].analysis)
            a = sqlparse_ref(r->execs[exec].analysis);
        else if (pg_parse_query(payload, plen, &text, &tlen))
            a = sqlparse_analyze(c->worker->memo, text, tlen);
        if (a && a->execute_name)
            ok = inject_parse_synced(c, run, a->execute_name);
        if (ok && a && a->deallocate_name && a->deallocate_name[0])
            ok = inject_parse_synced(c, run, a->deallocate_name);
        note_statement(c, a);
        sqlparse_release(a);
        ok = ok && add_expect(r, EXP_QUERY, exec);
        session_unnamed_gone(s);
        break;
    }
    case 'F':
        note_statement(c, NULL); /* a function called by OID: its writes are unknown */
        ok = add_expect(r, EXP_QUERY, -1);
        break;
    default:
        break;
    }
    if (!ok || !send_run_add(c, run, msg, len))
        return false;
    apply_message(c, type, msg, len, true);
    return true;
}

/* One client message outside a collected unit, straight to the server. */
static bool forward_one(Client *c, const uint8_t *msg, size_t len, int *exec_cursor)
{
    SendRun run = {0};
    return forward_message(c, &run, msg, len, exec_cursor) && send_run_flush(c, &run);
}

/* Bookkeeping for ReadyForQuery accounting of a forwarded message. */
static void note_forwarded(Client *c, char type)
{
    Request *r = &c->req;
    switch (type) {
    case 'Q':
    case 'F':
        r->rfq_pending++;
        break;
    case 'S':
        /* During COPY IN the server ignores Sync (protocol: "backend will ignore Flush and
         * Sync messages received during copy-in mode"). */
        if (r->copy == COPY_NONE) {
            r->rfq_pending++;
            r->unit_open = false;
        }
        break;
    case 'c':
    case 'f':
        /* After CopyDone/CopyFail of an extended-protocol COPY the server discards input
         * until a Sync; let the client's Sync through without holding it. */
        if (r->copy == COPY_IN) {
            r->copy = COPY_NONE;
            if (r->extended)
                r->unit_open = true;
        }
        break;
    case 'X':
        c->terminate_sent = true;
        break;
    default:
        break;
    }
}

/* Sends the collected unit to the server. Execs that missed capture their answers. */
static void forward_unit(Client *c, int reason)
{
    Request *r = &c->req;
    /* Counters: what would have been cacheable is a miss; the rest are bypasses. */
    for (int i = 0; i < r->n_execs; i++) {
        Exec *e = &r->execs[i];
        if (e->reason == DECIDE_CACHE && reason && reason != BYPASS_CACHE_DISABLED &&
            e->lookup != LOOKUP_MISS && e->lookup != LOOKUP_HIT)
            e->reason = reason;
        if (e->reason == DECIDE_CACHE) {
            e->capturing = e->fill;
            if (e->capturing) {
                uint8_t header[ENTRY_HEADER_LEN];
                entry_header(header, e->want_desc || !r->extended);
                bw_put(&e->capture, header, sizeof header);
            }
            log_decision(c, e, "miss");
        } else {
            count_bypass(c, e);
        }
    }
    int cursor = 0;
    SendRun run = {0};
    UnitIter it;
    unit_iter_init(&it, c);
    while (unit_next(&it)) {
        if (!forward_message(c, &run, it.msg, it.msg_len, &cursor))
            return;
        note_forwarded(c, it.type);
    }
    if (!send_run_flush(c, &run))
        return;
    iobuf_consume(&c->c_in, r->collect_len);
    r->collect_len = 0;
    request_set_state(c, REQ_SERVER);
}

/* --- client input ------------------------------------------------------------------------- */

/* Sends what was collected so far (a Flush, or a unit too large to hold) and keeps the unit
 * open: its remaining messages follow as they arrive. */
static void send_collected_open(Client *c)
{
    Request *r = &c->req;
    forward_unit(c, BYPASS_PROTOCOL);
    if (c->state == CS_READY)
        r->unit_open = true;
}

/* A message that starts a unit. Returns false when the loop must stop. */
static bool start_unit(Client *c, const Frame *f)
{
    Request *r = &c->req;
    clear_unit(r);
    r->tx_before = r->tx_status;
    /* The loop's time: the unit's bytes had arrived when it woke (and no clock read for
     * units that turn out to be pass-through). */
    r->unit_start_us = worker_now_us(c->worker);
    switch (f->type) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
    case 'S':
        r->extended = true;
        r->collect_len = f->n;
        request_set_state(c, REQ_COLLECT);
        if (f->type == 'S')
            process_unit(c);
        return true;
    case 'Q':
        r->extended = false;
        r->collect_len = f->n;
        request_set_state(c, REQ_COLLECT);
        process_unit(c);
        return true;
    default: {
        /* Flush, FunctionCall, Terminate, stray COPY messages, unknown types: the server
         * judges them. */
        int cursor = 0;
        r->extended = f->type != 'F';
        if (!forward_one(c, f->p, f->n, &cursor))
            return false;
        iobuf_consume(&c->c_in, f->n);
        note_forwarded(c, f->type);
        if (r->rfq_pending > 0)
            request_set_state(c, REQ_SERVER);
        return true;
    }
    }
}

/* A message arriving while extended-protocol messages are being collected. */
static bool collect(Client *c, const Frame *f)
{
    Request *r = &c->req;
    switch (f->type) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
        r->collect_len += f->n;
        if (r->collect_len > UNIT_COLLECT_MAX)
            send_collected_open(c);
        return true;
    case 'S':
        r->collect_len += f->n;
        process_unit(c);
        return true;
    default:
        /* Flush or anything else ends collecting: the server sees everything so far. */
        send_collected_open(c);
        return true;
    }
}

void request_client_input(Client *c)
{
    Request *r = &c->req;
    while (c->state == CS_READY && iobuf_len(&c->s_out) < OUT_HIGH) {
        bool streaming = r->copy != COPY_NONE || (r->state == REQ_SERVER && r->unit_open);
        if (r->state != REQ_IDLE && r->state != REQ_COLLECT && !streaming)
            return; /* hold: one unit at a time */
        size_t off = r->state == REQ_COLLECT ? r->collect_len : 0;
        if (iobuf_len(&c->c_in) <= off) {
            c->c_need = 0;
            return;
        }
        Frame f;
        pg_framer_next(&c->c_framer, iobuf_head(&c->c_in) + off, iobuf_len(&c->c_in) - off, &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->c_need = off + f.need;
            return;
        }
        c->c_need = 0;
        if (f.kind == FRAME_BAD) {
            client_fail(c, "08P01", "invalid message length %d (type '%c')", (int32_t)f.len,
                        f.type >= 32 && f.type < 127 ? f.type : '?');
            return;
        }
        if (f.kind == FRAME_PIECE) {
            /* Only CopyData is streamed; whatever was collected goes first. */
            if (r->state == REQ_COLLECT)
                send_collected_open(c);
            if (!server_send(c, iobuf_head(&c->c_in), f.n))
                return;
            iobuf_consume(&c->c_in, f.n);
            continue;
        }
        if (c->replication || streaming) {
            int cursor = r->n_execs;
            if (!forward_one(c, f.p, f.n, &cursor))
                return;
            iobuf_consume(&c->c_in, f.n);
            note_forwarded(c, f.type);
            continue;
        }
        /* A client saying goodbye between statements may leave its server to the next. */
        if (f.type == 'X' && r->state == REQ_IDLE && client_keep_server(c))
            return;
        if (r->state == REQ_COLLECT)
            collect(c, &f);
        else if (!start_unit(c, &f))
            return;
    }
}

/* --- the server's answer -------------------------------------------------------------------- */

static Exec *exec_at(Request *r, int i)
{
    return i >= 0 && i < r->n_execs ? &r->execs[i] : NULL;
}

static void abandon(Exec *e, const char *why)
{
    if (e && e->capturing) {
        e->capturing = false;
        e->fail_note = why;
    }
}

static void capture(Client *c, Exec *e, const uint8_t *p, size_t n)
{
    if (!e || !e->capturing)
        return;
    if (e->capture.len + n > cfg_of(c)->cache.max_entry_bytes + ENTRY_HEADER_LEN) {
        abandon(e, "larger than cache.max_entry_bytes");
        STAT_INC(c->worker->stats.fill_skipped);
        bw_free(&e->capture);
        return;
    }
    bw_put(&e->capture, p, n);
}

static Expect *current_expect(Request *r)
{
    return r->at_expect < r->n_expect ? &r->expect[r->at_expect] : NULL;
}

/* May this unit's success have to be confirmed by a bump before the client sees it? */
static bool unit_may_bump(const Request *r)
{
    return !writeset_empty(&r->writes) || !writeset_empty(&r->session.tx_pending) ||
           r->maybe_writes;
}

/* After an error the server skips to the next Sync. */
static void skip_to_sync(Request *r)
{
    while (r->at_expect < r->n_expect && r->expect[r->at_expect].kind != EXP_SYNC &&
           r->expect[r->at_expect].kind != EXP_SYNC_SWALLOW &&
           r->expect[r->at_expect].kind != EXP_QUERY)
        r->at_expect++;
}

static void note_tag(Request *r, const uint8_t *p, size_t n)
{
    const char *tag = (const char *)p + 5;
    size_t len = n - 5;
    if (len == 0 || tag[len - 1] != 0 || (tag[0] != 'C' && tag[0] != 'P' && tag[0] != 'R'))
        return; /* most tags (SELECT n, INSERT 0 n …) need no comparison */
    if (strcmp(tag, "COMMIT") == 0 || strcmp(tag, "PREPARE TRANSACTION") == 0 ||
        strcmp(tag, "COMMIT PREPARED") == 0)
        r->saw_commit = true;
    else if (strcmp(tag, "ROLLBACK") == 0)
        r->saw_rollback = true;
}

/* The held answer grew too big: bump now, release it, and bump again at the end. */
static bool overflow_hold(Client *c)
{
    Request *r = &c->req;
    if (!r->holding || iobuf_len(&r->held) <= HOLD_MAX)
        return true;
    WriteSet now = {0};
    writeset_merge(&now, &r->session.tx_pending);
    writeset_merge(&now, &r->writes);
    if (!writeset_empty(&now) && !cache_bump(c, &now, BUMP_EARLY))
        store_note_lost_write();
    writeset_clear(&now);
    r->early_bumped = true;
    return release_held(c);
}

static bool relay(Client *c, const Frame *f)
{
    return out(c, f->p, f->n) && overflow_hold(c);
}

bool request_server_frame(Client *c, const Frame *f)
{
    Request *r = &c->req;
    if (r->state == REQ_PROBE)
        return probe_server_frame(c, f);

    Expect *x = current_expect(r);
    Exec *e = x ? exec_at(r, x->exec) : NULL;
    if (f->kind == FRAME_PIECE) {
        if (x && (x->kind == EXP_EXECUTE || x->kind == EXP_QUERY))
            capture(c, e, f->p, f->n);
        return relay(c, f);
    }
    switch (f->type) {
    case 'A':
        return client_send(c, f->p, f->n); /* notifications are not part of any answer */
    case 'N':
        abandon(e, "notice");
        return relay(c, f);
    case 'S':
        abandon(e, "parameter status");
        session_touch(&r->session);
        return relay(c, f);
    case 'E':
        r->errored = true;
        abandon(e, "error");
        if (f->n > 5) {
            const char *sev = pg_error_field(f->p + 5, f->n - 5, 'S');
            c->server_errored = sev && strcmp(sev, "FATAL") == 0;
        }
        skip_to_sync(r);
        return relay(c, f);
    case 'Z':
        if (f->n == 6)
            r->tx_status = (char)f->p[5];
        if (x && x->kind == EXP_SYNC_SWALLOW) {
            r->at_expect++;
            return true; /* the answer to pgstash's own Sync */
        }
        if (r->rfq_pending > 0)
            r->rfq_pending--;
        r->copy = COPY_NONE;
        while (r->at_expect < r->n_expect) {
            ExpectKind k = r->expect[r->at_expect++].kind;
            if (k == EXP_SYNC || k == EXP_QUERY)
                break;
        }
        if (r->state == REQ_SERVER && r->rfq_pending == 0 && !r->unit_open) {
            if (!r->holding && unit_may_bump(r))
                r->holding = true;
            if (!out(c, f->p, f->n))
                return false;
            finish_unit(c);
            return c->state != CS_DEAD;
        }
        return client_send(c, f->p, f->n);
    case 'G':
        /* COPY FROM STDIN started. In an extended unit whose Sync already went out, the
         * server will ignore that Sync: it owes one ReadyForQuery less. */
        r->copy = COPY_IN;
        if (r->extended && !r->unit_open && r->rfq_pending > 0)
            r->rfq_pending--;
        abandon(e, "copy");
        return relay(c, f);
    case 'W':
        r->copy = COPY_BOTH;
        abandon(e, "copy");
        return relay(c, f);
    case 'H':
        abandon(e, "copy");
        return relay(c, f);
    case 'C': {
        bool was_commit = r->saw_commit;
        note_tag(r, f->p, f->n);
        /* A unit whose Sync is out is answered to the end without the client: withhold from
         * the first CommandComplete. An open unit (Flush) may need the client to see this
         * before it sends Sync, so only a COMMIT's confirmation is withheld there, until the
         * block's writes are bumped (the bump at ReadyForQuery then repeats them). */
        if (!r->holding && !r->unit_open && unit_may_bump(r))
            r->holding = true;
        else if (r->unit_open && r->saw_commit && !was_commit && !r->holding &&
                 unit_may_bump(r)) {
            WriteSet now = {0};
            writeset_merge(&now, &r->session.tx_pending);
            writeset_merge(&now, &r->writes);
            if (writeset_empty(&now)) {
                writeset_clear(&now);
                break;
            }
            if (cache_bump(c, &now, BUMP_COMMIT))
                r->holding = true;
            else
                store_note_lost_write();
            writeset_clear(&now);
        }
        break;
    }
    default:
        break;
    }
    if (!x)
        return relay(c, f);
    switch (x->kind) {
    case EXP_PARSE_SWALLOW:
        r->at_expect++;
        if (f->type == '1')
            return true; /* the client never sent this Parse */
        return relay(c, f);
    case EXP_PARSE:
    case EXP_BIND:
    case EXP_CLOSE:
        r->at_expect++;
        return relay(c, f);
    case EXP_DESC_STMT:
        if (f->type != 't')
            r->at_expect++;
        return relay(c, f);
    case EXP_DESC_PORTAL:
        r->at_expect++;
        if (e && e->capturing && (f->type == 'T' || f->type == 'n'))
            capture(c, e, f->p, f->n);
        return relay(c, f);
    case EXP_EXECUTE:
        if (f->type == 'D') {
            capture(c, e, f->p, f->n);
        } else if (f->type == 'C' || f->type == 'I') {
            capture(c, e, f->p, f->n);
            if (e && e->capturing)
                e->captured = true;
            r->at_expect++;
        } else {
            abandon(e, "unexpected message");
            if (f->type == 's')
                r->at_expect++;
        }
        return relay(c, f);
    case EXP_QUERY:
        if (e && e->capturing) {
            if (e->captured) {
                abandon(e, "several results"); /* a second statement answered */
                e->captured = false;
            } else if (f->type == 'T' || f->type == 'D') {
                capture(c, e, f->p, f->n);
            } else if (f->type == 'C') {
                capture(c, e, f->p, f->n);
                if (e->capturing)
                    e->captured = true;
            } else {
                abandon(e, "unexpected message");
            }
        }
        return relay(c, f);
    case EXP_SYNC:
    case EXP_SYNC_SWALLOW:
        return relay(c, f);
    }
    return relay(c, f);
}

/* --- end of a unit: store, invalidate, release ------------------------------------------------ */

/*
 * What this unit's end makes durable, by the transaction status before (P) and after (S):
 * autocommit units commit unless they failed; a block ending commits its pending writes
 * unless it rolled back; a COMMIT inside a multi-statement string commits mid-unit.
 */
static void writes_to_bump(Client *c, WriteSet *bump)
{
    Request *r = &c->req;
    Session *s = &r->session;
    char p = r->tx_before, now = r->tx_status;
    if (now == 'I') {
        if (p == 'I') {
            if (!r->errored || r->unit_tx_control)
                writeset_merge(bump, &r->writes);
        } else if (r->saw_rollback && !r->saw_commit && !r->unit_has_commit) {
            /* rolled back: nothing of the block happened */
        } else if (p == 'E' && !r->saw_commit) {
            /* a failed block can only end in rollback */
        } else {
            writeset_merge(bump, &s->tx_pending);
            writeset_merge(bump, &r->writes);
        }
        writeset_clear(&s->tx_pending);
        s->tx_wrote = false;
        s->tx_iso_high = false;
        s->tx_iso_default = false;
        if (s->tx_session_changed)
            session_touch(s);
        s->tx_session_changed = false;
        return;
    }
    /* Still (or newly) in a block. */
    if (p == 'I') {
        /* A block that states no level runs at the session default, which decide_read checks
         * when it judges (the probe may learn it only then). */
        s->tx_iso_high = r->unit_iso >= SQL_ISO_REPEATABLE_READ;
        s->tx_iso_default = r->unit_iso == SQL_ISO_DEFAULT;
    } else if (r->unit_iso >= SQL_ISO_REPEATABLE_READ) {
        s->tx_iso_high = true;
    } else if (r->unit_iso != SQL_ISO_DEFAULT) {
        s->tx_iso_default = false; /* SET TRANSACTION ISOLATION LEVEL READ COMMITTED */
    }
    if (r->saw_commit || r->unit_has_commit) {
        writeset_merge(bump, &s->tx_pending);
        writeset_merge(bump, &r->writes);
    }
    writeset_merge(&s->tx_pending, &r->writes);
    if (r->maybe_writes)
        s->tx_wrote = true;
    if (r->unit_flags_session)
        s->tx_session_changed = true;
}

static void log_bump(Client *c, const WriteSet *w)
{
    for (size_t i = 0; i < w->n; i++) {
        TableCounters *tc = tablestats_get(&c->worker->tables, c->database, w->names[i]);
        if (tc)
            STAT_INC(tc->invalidations);
    }
    if (!log_enabled(LOG_DEBUG))
        return;
    char list[512];
    size_t at = 0;
    list[0] = 0;
    for (size_t i = 0; i < w->n && at < sizeof list - 70; i++)
        at += (size_t)snprintf(list + at, sizeof list - at, "%s%s", i ? "," : "", w->names[i]);
    LOG_AT(LOG_DEBUG, c->ident, "invalidate tables=%s%s", list, w->all ? " epoch" : "");
}

static void unit_done(Client *c)
{
    Request *r = &c->req;
    clear_unit(r);
    request_set_state(c, REQ_IDLE);
}

static void finish_unit(Client *c)
{
    Request *r = &c->req;
    Session *s = &r->session;
    WorkerStats *st = &c->worker->stats;
    int64_t now_us = -1; /* read when a miss is recorded, not for pass-through units */
    for (int i = 0; i < r->n_execs; i++) {
        Exec *e = &r->execs[i];
        if (e->reason != DECIDE_CACHE)
            continue;
        if (now_us < 0)
            now_us = clock_us();
        STAT_INC(st->misses);
        STAT_INC(st->queries);
        hist_record(&st->miss_latency, (uint64_t)(now_us - r->unit_start_us));
        note_tables(c, e, TABLE_MISS);
        /* A unit that wrote may have shown its reads uncommitted data: store none. */
        if (e->fill && e->captured && !r->maybe_writes)
            cache_fill(c, e);
        else if (e->fill && log_enabled(LOG_DEBUG))
            LOG_AT(LOG_DEBUG, c->ident, "not stored: %s",
                   r->maybe_writes ? "the unit also wrote" : e->fail_note ? e->fail_note : "?");
    }
    if (r->unit_flags_session)
        session_touch(s);
    if (r->unit_ddl) {
        catalog_invalidate(c->database);
        cache_publish_ddl(c);
    }

    WriteSet bump = {0};
    writes_to_bump(c, &bump);
    if (writeset_empty(&bump) && !r->early_bumped) {
        writeset_clear(&bump);
        if (release_held(c))
            unit_done(c);
        return;
    }
    if (writeset_empty(&bump))
        writeset_merge(&bump, &r->writes);
    STAT_INC(st->writes);
    stat_add(&st->invalidations, bump.n);
    if (bump.all)
        STAT_INC(st->epoch_bumps);
    log_bump(c, &bump);
    bool sent = !writeset_empty(&bump) && cache_bump(c, &bump, BUMP_FINAL);
    if (!sent && !writeset_empty(&bump))
        store_note_lost_write();
    writeset_clear(&s->just_bumped);
    if (sent)
        s->just_bumped = bump; /* the next read of these tables is a known miss */
    else
        writeset_clear(&bump);
    if (!sent) {
        if (release_held(c))
            unit_done(c);
        return;
    }
    request_set_state(c, REQ_BUMP);
}

void request_bump_done(Client *c, BumpKind kind)
{
    Request *r = &c->req;
    if (kind == BUMP_COMMIT && r->state == REQ_SERVER) {
        (void)release_held(c); /* the COMMIT's confirmation may go out now */
        return;
    }
    if (kind != BUMP_FINAL || r->state != REQ_BUMP)
        return;
    if (release_held(c))
        unit_done(c);
}
