/*
 * cache.c — Redis commands of the cache path.
 *
 * Keys:  <prefix>:e:<sha256 hex>        a cached result (entry.h format), with a TTL
 *        <prefix>:v:<database>:<table>  a table's version counter
 *        <prefix>:epoch                 the global epoch, in every key
 *        <prefix>:inval                 the invalidation channel
 *
 * A lookup in strict mode is one MGET of the entry and the versions its key was made with:
 * if Redis holds other versions, the entry is stale by construction (a write moved them on);
 * the statement misses and fills under the versions Redis just reported, which were read
 * before the statement reaches the server.
 */
#include "proxy/cache.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/client.h"
#include "proxy/hottier.h"
#include "proxy/log.h"
#include "proxy/reasons.h"
#include "proxy/store.h"
#include "proxy/subscriber.h"
#include "proxy/versions.h"
#include "proxy/worker.h"

#define MAX_ARGS 1024 /* statements reading more tables than this bypass */

void exec_clear(Exec *e)
{
    sqlparse_release(e->analysis);
    readtables_free(&e->tables);
    free(e->heap_versions);
    free(e->blob);
    bw_free(&e->capture);
    memset(e, 0, sizeof *e);
}

static const Config *cfg_of(const Client *c)
{
    return c->worker->snap->cfg;
}

/* --- keys ---------------------------------------------------------------------------- */

/* Appends "<prefix>:v:<db>:<table>" (without NUL) and returns its offset. */
static size_t put_version_key(ByteWriter *w, const char *prefix, const char *db,
                              const char *table)
{
    size_t at = w->len;
    bw_cstr_raw(w, prefix);
    bw_cstr_raw(w, ":v:");
    bw_cstr_raw(w, db);
    bw_u8(w, ':');
    bw_cstr_raw(w, table);
    return at;
}

static size_t put_epoch_key(ByteWriter *w, const char *prefix)
{
    size_t at = w->len;
    bw_cstr_raw(w, prefix);
    bw_cstr_raw(w, ":epoch");
    return at;
}

static size_t put_entry_key(ByteWriter *w, const char *prefix, const CacheDigest *key)
{
    char hex[CACHEKEY_HEX_LEN + 1];
    cachekey_hex(key, hex);
    size_t at = w->len;
    bw_cstr_raw(w, prefix);
    bw_cstr_raw(w, ":e:");
    bw_put(w, hex, CACHEKEY_HEX_LEN);
    return at;
}

static void finish_key(Exec *e)
{
    CacheKeyTable inline_t[DECIDE_INLINE_TABLES] = {{0}};
    CacheKeyTable *t = inline_t;
    if (e->tables.n_tables > DECIDE_INLINE_TABLES) {
        t = malloc(e->tables.n_tables * sizeof *t);
        if (!t) {
            memset(&e->key, 0, sizeof e->key);
            e->fill = false;
            return;
        }
    }
    for (size_t i = 0; i < e->tables.n_tables; i++) {
        t[i].name = readtables_name(&e->tables, i);
        t[i].version = exec_versions(e)[i];
    }
    cachekey_finish(&e->partial, t, e->tables.n_tables, e->epoch, &e->key);
    if (t != inline_t)
        free(t);
}

bool cache_make_key(Client *c, Exec *e, CacheKeyProtocol proto, const char *text, size_t text_len,
                    const Stmt *st, const PgBindMsg *bind)
{
    CacheKeyQuery q = {0};
    q.protocol = proto;
    q.text = text;
    q.text_len = text_len;
    enum { INLINE = 32 };
    int16_t fmt_inline[INLINE];
    CacheKeyParam par_inline[INLINE];
    int16_t *formats = fmt_inline;
    CacheKeyParam *params = par_inline;
    int16_t rfmt_inline[INLINE];
    int16_t *rformats = rfmt_inline;
    bool ok = true;
    if (bind) {
        q.param_types = st->param_types;
        q.n_param_types = st->n_param_types;
        if (bind->n_params > INLINE) {
            formats = malloc(bind->n_params * sizeof *formats);
            params = malloc(bind->n_params * sizeof *params);
        }
        if (bind->n_result_formats > INLINE)
            rformats = malloc(bind->n_result_formats * sizeof *rformats);
        if (!formats || !params || !rformats) {
            ok = false;
            goto done;
        }
        ByteReader r;
        br_init(&r, bind->params, bind->params_len);
        for (uint16_t i = 0; i < bind->n_params; i++) {
            formats[i] = pg_bind_param_format(bind, i);
            int32_t len = br_i32(&r);
            params[i].len = len;
            params[i].data = len > 0 ? br_bytes(&r, (size_t)len) : NULL;
        }
        for (uint16_t i = 0; i < bind->n_result_formats; i++)
            rformats[i] = (int16_t)be16(bind->result_formats + 2 * (size_t)i);
        q.param_formats = formats;
        q.params = params;
        q.n_params = bind->n_params;
        q.result_formats = rformats;
        q.n_result_formats = bind->n_result_formats;
    }
    cachekey_partial(&c->req.session.digest, &q, &e->partial);

    /* Versions known locally make the key; unknown ones are fetched by the lookup. */
    if (e->tables.n_tables > EXEC_INLINE_VERSIONS) {
        e->heap_versions = calloc(e->tables.n_tables, sizeof *e->heap_versions);
        if (!e->heap_versions) {
            ok = false;
            goto done;
        }
    }
    uint64_t *versions = exec_versions(e);
    bool known = versions_epoch(&e->epoch);
    for (size_t i = 0; i < e->tables.n_tables && known; i++)
        known = versions_get(c->database, readtables_name(&e->tables, i), &versions[i]);
    if (known)
        finish_key(e);
    ok = known;

done:
    if (formats != fmt_inline)
        free(formats);
    if (params != par_inline)
        free(params);
    if (rformats != rfmt_inline)
        free(rformats);
    return ok;
}

/* --- lookup ---------------------------------------------------------------------------- */

static bool parse_u64(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0)
            return false;
        *out = (uint64_t)r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    }
    *out = v;
    return true;
}

/* Seeds missing version counters (SET NX), fire and forget. */
static void seed_versions(Client *c, const Exec *e, const bool *missing, bool epoch_missing)
{
    Worker *w = c->worker;
    const Config *cfg = cfg_of(c);
    char seed[32];
    snprintf(seed, sizeof seed, "%" PRIu64, store_version_seed());
    ByteWriter *sb = &w->scratch;
    for (size_t i = 0; i <= e->tables.n_tables; i++) {
        bool is_epoch = i == e->tables.n_tables;
        if (is_epoch ? !epoch_missing : !missing[i])
            continue;
        bw_reset(sb);
        size_t at = is_epoch ? put_epoch_key(sb, cfg->cache.key_prefix)
                             : put_version_key(sb, cfg->cache.key_prefix, c->database,
                                               readtables_name(&e->tables, i));
        if (sb->failed)
            return;
        const char *argv[4] = {"SET", (const char *)sb->data + at, seed, "NX"};
        size_t argvlen[4] = {3, sb->len - at, strlen(seed), 2};
        if (!store_command(w->store, NULL, NULL, NULL, 4, argv, argvlen))
            return; /* Redis is down: the next lookup seeds it */
    }
}

/*
 * Reads the versions part of a reply (elements [from, from + n_tables]: tables, then the
 * epoch). Re-keys the execution when they differ from those it was keyed with. Returns
 * false when a counter is missing (seeded now) or unreadable: then nothing may be filled.
 */
static bool take_versions(Client *c, Exec *e, const redisReply *reply, size_t from,
                          bool *changed)
{
    size_t n = e->tables.n_tables;
    bool ok = true, epoch_missing = false;
    bool missing_inline[64], *missing = missing_inline;
    if (n > 64 && !(missing = calloc(n, sizeof *missing)))
        return false;
    if (n <= 64)
        memset(missing_inline, 0, sizeof missing_inline);
    *changed = false;
    for (size_t i = 0; i <= n; i++) {
        const redisReply *r = reply->element[from + i];
        uint64_t v;
        if (r->type == REDIS_REPLY_NIL) {
            if (i == n)
                epoch_missing = true;
            else
                missing[i] = true;
            ok = false;
            continue;
        }
        if (!parse_u64(r, &v)) {
            ok = false;
            continue;
        }
        if (i == n) {
            if (v != e->epoch)
                *changed = true;
            e->epoch = v;
            versions_set_epoch(v);
        } else {
            if (v != exec_versions(e)[i])
                *changed = true;
            exec_versions(e)[i] = v;
            versions_set(c->database, readtables_name(&e->tables, i), v);
        }
    }
    if (!ok)
        seed_versions(c, e, missing, epoch_missing);
    if (missing != missing_inline)
        free(missing);
    return ok;
}

bool cache_tier_usable(const Client *c)
{
    const Config *cfg = cfg_of(c);
    return cfg->cache.consistency == CONSISTENCY_LOCAL && cfg->cache.local_max_bytes > 0 &&
           cfg->cache.local_ttl_ms > 0 && subscriber_live();
}

bool cache_tier_lookup(Client *c, Exec *e)
{
    EntryView v;
    if (!hottier_get(c->worker->tier, &e->key, clock_ms(), &v) || (e->want_desc && !v.desc))
        return false;
    e->view = v;
    e->lookup = LOOKUP_HIT;
    return true;
}

/* Keeps an entry in the in-process tier for min(its TTL, cache.local_ttl). */
static void tier_keep(Client *c, const Exec *e, const uint8_t *blob, size_t len)
{
    if (!cache_tier_usable(c))
        return;
    int64_t ttl = e->tables.ttl_ms;
    int64_t cap = cfg_of(c)->cache.local_ttl_ms;
    hottier_put(c->worker->tier, &e->key, blob, len, clock_ms() + (ttl < cap ? ttl : cap));
}

/* Validates and keeps a stored entry; false (counted) when it is unusable. */
static bool take_entry(Client *c, Exec *e, const redisReply *r)
{
    if (r->type != REDIS_REPLY_STRING) {
        STAT_INC(c->worker->stats.bad_entries);
        return false;
    }
    EntryView v;
    if (!entry_parse((const uint8_t *)r->str, r->len, &v)) {
        STAT_INC(c->worker->stats.bad_entries);
        LOG_AT(LOG_WARN, c->ident, "cache entry failed validation (%zu bytes); treated as a miss",
               r->len);
        return false;
    }
    if (e->want_desc && !v.desc)
        return false; /* stored without a RowDescription; this unit needs one */
    tier_keep(c, e, (const uint8_t *)r->str, r->len);
    if (c->req.n_execs == 1) {
        /* The unit is answered inside this very callback, while the reply lives: no copy. */
        e->view = v;
        return true;
    }
    e->blob = malloc(r->len);
    if (!e->blob)
        return false;
    memcpy(e->blob, r->str, r->len);
    e->blob_len = r->len;
    return entry_parse(e->blob, e->blob_len, &e->view);
}

typedef struct {
    uint32_t exec;    /* index in the unit */
    bool key_known;   /* the command fetched the entry too */
    bool strict;      /* the command confirmed versions (strict, or local mode without a
                         live invalidation subscription) */
} LookupArg;

static bool confirm_versions(const Config *cfg)
{
    return cfg->cache.consistency == CONSISTENCY_STRICT || !subscriber_live();
}

static void on_lookup(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    uintptr_t packed = (uintptr_t)arg;
    LookupArg la = {(uint32_t)(packed >> 2), (packed & 1) != 0, (packed & 2) != 0};
    Request *r = &c->req;
    if ((int)la.exec >= r->n_execs || r->state != REQ_LOOKUP)
        return;
    Exec *e = &r->execs[la.exec];
    bool strict = la.strict;
    size_t n = e->tables.n_tables;
    e->lookup = LOOKUP_FAILED;
    e->fill = false;

    if (status != STORE_REPLY) {
        goto done;
    }
    if (!la.key_known || strict) {
        size_t want = n + 1 + (la.key_known ? 1 : 0);
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != want) {
            STAT_INC(c->worker->stats.redis_errors);
            goto done;
        }
        bool changed;
        size_t from = la.key_known ? 1 : 0;
        if (!take_versions(c, e, reply, from, &changed)) {
            /* Counters were missing and are being seeded (SET NX, sent just now): read
             * them back once, in the same pipeline, so this miss can still fill. */
            e->lookup = LOOKUP_MISS;
            if (!e->refetched) {
                e->refetched = true;
                if (cache_lookup(c, e, false))
                    return; /* lookups_pending unchanged: this reply is replaced */
            }
            goto done;
        }
        if (!la.key_known || changed) {
            finish_key(e);
            e->lookup = LOOKUP_MISS;
            e->fill = true;
            goto done;
        }
        const redisReply *entry = reply->element[0];
        if (entry->type != REDIS_REPLY_NIL && take_entry(c, e, entry)) {
            e->lookup = LOOKUP_HIT;
        } else {
            e->lookup = LOOKUP_MISS;
            e->fill = true;
        }
        goto done;
    }
    /* Local mode: the versions in the key came from the local map. */
    if (reply->type == REDIS_REPLY_NIL) {
        e->lookup = LOOKUP_MISS;
        e->fill = true;
    } else if (reply->type == REDIS_REPLY_STRING && take_entry(c, e, reply)) {
        e->lookup = LOOKUP_HIT;
    } else if (reply->type == REDIS_REPLY_STRING) {
        e->lookup = LOOKUP_MISS;
        e->fill = true;
    } else {
        STAT_INC(c->worker->stats.redis_errors);
    }

done:
    if (--r->lookups_pending == 0) {
        request_lookup_done(c);
        client_kick(c);
    }
}

bool cache_lookup(Client *c, Exec *e, bool key_known)
{
    Worker *w = c->worker;
    const Config *cfg = cfg_of(c);
    bool strict = confirm_versions(cfg);
    size_t n = e->tables.n_tables;
    if (n + 3 > MAX_ARGS)
        return false;
    ByteWriter *sb = &w->scratch;
    bw_reset(sb);
    size_t offs[MAX_ARGS];
    size_t lens[MAX_ARGS];
    size_t argc = 0;
    const char *cmd = "MGET";
    if (key_known) {
        offs[argc] = put_entry_key(sb, cfg->cache.key_prefix, &e->key);
        lens[argc] = sb->len - offs[argc];
        argc++;
        if (!strict)
            cmd = "GET";
    }
    if (!key_known || strict) {
        for (size_t i = 0; i < n; i++) {
            offs[argc] = put_version_key(sb, cfg->cache.key_prefix, c->database,
                                         readtables_name(&e->tables, i));
            lens[argc] = sb->len - offs[argc];
            argc++;
        }
        offs[argc] = put_epoch_key(sb, cfg->cache.key_prefix);
        lens[argc] = sb->len - offs[argc];
        argc++;
    }
    if (sb->failed)
        return false;
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    argv[0] = cmd;
    argvlen[0] = strlen(cmd);
    for (size_t i = 0; i < argc; i++) {
        argv[i + 1] = (const char *)sb->data + offs[i];
        argvlen[i + 1] = lens[i];
    }
    uint32_t index = (uint32_t)(e - c->req.execs);
    uintptr_t packed = ((uintptr_t)index << 2) | (strict ? 2u : 0u) | (key_known ? 1u : 0u);
    if (!store_command(w->store, c, on_lookup, (void *)packed, (int)argc + 1, argv, argvlen))
        return false;
    e->lookup = LOOKUP_WAIT;
    return true;
}

/* --- fill ------------------------------------------------------------------------------ */

/* Counted on the worker, not the client: the client may be gone by the time Redis answers. */
static void on_fill(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    Worker *w = arg;
    if (status == STORE_REPLY && reply->type == REDIS_REPLY_STATUS)
        STAT_INC(w->stats.fills);
}

void cache_fill(Client *c, Exec *e)
{
    Worker *w = c->worker;
    const Config *cfg = cfg_of(c);
    EntryView v;
    if (!e->captured || e->capture.failed || !entry_parse(e->capture.data, e->capture.len, &v)) {
        STAT_INC(w->stats.fill_skipped);
        return;
    }
    if (!store_ready(w->store))
        return; /* lost invalidations not yet covered: store nothing */
    ByteWriter *sb = &w->scratch;
    bw_reset(sb);
    size_t at = put_entry_key(sb, cfg->cache.key_prefix, &e->key);
    char ttl[32];
    snprintf(ttl, sizeof ttl, "%lld", (long long)e->tables.ttl_ms);
    if (sb->failed)
        return;
    const char *argv[5] = {"SET", (const char *)sb->data + at, (const char *)e->capture.data,
                           "PX", ttl};
    size_t argvlen[5] = {3, sb->len - at, e->capture.len, 2, strlen(ttl)};
    if (!store_command(w->store, NULL, on_fill, w, 5, argv, argvlen))
        STAT_INC(w->stats.fill_skipped);
    else
        cache_register_database(c); /* FLUSH TABLE finds the database even after Redis lost
                                       its registry (restart, eviction) */
    tier_keep(c, e, e->capture.data, e->capture.len);
}

/* --- bump ------------------------------------------------------------------------------ */

/* One bump in flight: what it bumps (for the local version map) and what waits for it. */
typedef struct {
    BumpKind kind;
    char *db;
    WriteSet set;
} BumpJob;

static void bump_job_free(BumpJob *j)
{
    if (!j)
        return;
    free(j->db);
    writeset_clear(&j->set);
    free(j);
}

/*
 * A bump's reply. Runs even when the client has gone: a failed invalidation must be recorded
 * (it stops hits until the global epoch is bumped) whoever waited for it.
 */
static void on_bump(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    BumpJob *j = arg;
    const WriteSet *w = &j->set;
    size_t nkeys = w->n + (w->all ? 1 : 0);
    bool ok = status == STORE_REPLY && reply->type == REDIS_REPLY_ARRAY &&
              (reply->elements == nkeys || reply->elements == nkeys + 1);
    for (size_t i = 0; ok && i < nkeys; i++)
        ok = reply->element[i]->type == REDIS_REPLY_INTEGER;
    if (ok && reply->elements > nkeys)
        store_warn_publish_failed(c->worker->store, reply->element[nkeys]);
    if (ok) {
        for (size_t i = 0; i < w->n; i++)
            versions_raise(j->db, w->names[i], (uint64_t)reply->element[i]->integer);
        if (w->all)
            versions_raise_epoch((uint64_t)reply->element[w->n]->integer);
    } else {
        store_note_lost_write();
        log_warn("could not invalidate %zu table(s)%s of database \"%s\" in Redis; hits stop "
                 "until the global epoch is bumped",
                 w->n, w->all ? " and the epoch" : "", j->db);
    }
    BumpKind kind = j->kind;
    bump_job_free(j);
    if (c->state == CS_DEAD)
        return;
    request_bump_done(c, kind);
    client_kick(c);
}

bool cache_bump(Client *c, const WriteSet *w, BumpKind kind)
{
    Worker *wk = c->worker;
    const Config *cfg = cfg_of(c);
    if (!store_wake(wk->store))
        return false;
    size_t nkeys = w->n + (w->all ? 1 : 0);
    if (nkeys == 0 || nkeys * 2 + 6 > MAX_ARGS)
        return false;
    ByteWriter *sb = &wk->scratch;
    bw_reset(sb);
    size_t offs[MAX_ARGS], lens[MAX_ARGS];
    for (size_t i = 0; i < w->n; i++) {
        offs[i] = put_version_key(sb, cfg->cache.key_prefix, c->database, w->names[i]);
        lens[i] = sb->len - offs[i];
    }
    if (w->all) {
        offs[w->n] = put_epoch_key(sb, cfg->cache.key_prefix);
        lens[w->n] = sb->len - offs[w->n];
    }
    size_t chan_at = sb->len;
    bw_cstr_raw(sb, cfg->cache.key_prefix);
    bw_cstr_raw(sb, ":inval");
    size_t chan_len = sb->len - chan_at;
    if (sb->failed)
        return false;
    char seed[32], nk[24];
    snprintf(seed, sizeof seed, "%" PRIu64, store_version_seed());
    snprintf(nk, sizeof nk, "%zu", nkeys);
    const char *argv[MAX_ARGS];
    size_t argvlen[MAX_ARGS];
    size_t argc = 0;
    argv[argc] = "EVAL", argvlen[argc++] = 4;
    argv[argc] = store_bump_script, argvlen[argc++] = strlen(store_bump_script);
    argv[argc] = nk, argvlen[argc++] = strlen(nk);
    for (size_t i = 0; i < nkeys; i++)
        argv[argc] = (const char *)sb->data + offs[i], argvlen[argc++] = lens[i];
    argv[argc] = seed, argvlen[argc++] = strlen(seed);
    argv[argc] = (const char *)sb->data + chan_at, argvlen[argc++] = chan_len;
    argv[argc] = c->database, argvlen[argc++] = strlen(c->database);
    for (size_t i = 0; i < w->n; i++)
        argv[argc] = w->names[i], argvlen[argc++] = strlen(w->names[i]);
    if (w->all)
        argv[argc] = "*", argvlen[argc++] = 1;
    BumpJob *j = calloc(1, sizeof *j);
    if (!j || !(j->db = strdup(c->database))) {
        bump_job_free(j);
        return false;
    }
    j->kind = kind;
    writeset_merge(&j->set, w);
    if (!store_invalidate(wk->store, c, on_bump, j, (int)argc, argv, argvlen)) {
        bump_job_free(j);
        return false;
    }
    return true;
}

/* Sends "<cmd> <prefix><suffix> <database>", fire and forget (when Redis is down, nothing is
 * lost that the next session or DDL would not send again). */
static void send_db_command(Client *c, const char *cmd, const char *suffix)
{
    Worker *w = c->worker;
    ByteWriter *sb = &w->scratch;
    bw_reset(sb);
    bw_cstr_raw(sb, cfg_of(c)->cache.key_prefix);
    bw_cstr_raw(sb, suffix);
    if (sb->failed)
        return;
    const char *argv[3] = {cmd, (const char *)sb->data, c->database};
    size_t argvlen[3] = {strlen(cmd), sb->len, strlen(c->database)};
    if (!store_command(w->store, NULL, NULL, NULL, 3, argv, argvlen))
        return;
}

void cache_register_database(Client *c)
{
    send_db_command(c, "SADD", ":dbs");
}

void cache_publish_ddl(Client *c)
{
    send_db_command(c, "PUBLISH", ":ddl");
}
