/*
 * store.c — one Redis connection per worker. Commands from all of the worker's clients share
 * it, so hiredis pipelines them into one write per loop iteration. Every command carries a
 * deadline: when the oldest outstanding reply is late, the connection is dropped, every
 * waiting client fails open, and reconnection backs off.
 *
 * Version counters are seeded, when missing, with the current time in microseconds rather
 * than starting at 1: a counter evicted by Redis (allkeys-lru) or lost in a Redis restart
 * comes back larger than any value it had before, so entries keyed under old values can
 * never become reachable again.
 */
#include "proxy/store.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/client.h"
#include "proxy/log.h"
#include "proxy/versions.h"
#include "proxy/worker.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

/*
 * KEYS: version counters to bump. ARGV[1]: seed for a missing counter, ARGV[2]: the
 * invalidation channel, ARGV[3]: database name, ARGV[4..]: table names ("*" = epoch).
 * Returns the new values; publishes "db\0table=version\0...". Versions are formatted with
 * %d: Lua's default number format (%.14g) would turn a 16-digit seed into "1.79e+15".
 * A refused PUBLISH (an ACL user without the channels) does not undo the bump: the counters
 * are what strict reads check. Its error comes back as one more element, a string.
 */
const char store_bump_script[] =
    "local out = {}\n"
    "local msg = {ARGV[3]}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  local v\n"
    "  if redis.call('EXISTS', k) == 1 then v = redis.call('INCR', k)\n"
    "  else v = tonumber(ARGV[1]); redis.call('SET', k, ARGV[1]) end\n"
    "  out[i] = v\n"
    "  msg[#msg + 1] = ARGV[3 + i] .. '=' .. string.format('%d', v)\n"
    "end\n"
    "local p = redis.pcall('PUBLISH', ARGV[2], table.concat(msg, '\\0'))\n"
    "if type(p) == 'table' and p.err then out[#out + 1] = p.err end\n"
    "return out\n";

typedef enum {
    STORE_DOWN,       /* not connected; the reconnect timer is armed */
    STORE_CONNECTING, /* TCP connect, AUTH and SELECT under way */
    STORE_UP,         /* serving commands */
    STORE_STOPPED,    /* shut down: no reconnecting */
} StoreState;

/* One outstanding command. Commands are answered in order, so they form a FIFO. */
typedef struct StoreReq {
    struct StoreReq *next;
    Store *store;
    Client *client;      /* NULL for the store's own commands */
    StoreCallback cb;
    void *arg;
    int64_t sent_us;
    bool always;         /* call cb even when the client died meanwhile */
} StoreReq;

struct Store {
    Worker *worker;
    redisAsyncContext *ac;  /* NULL when down */
    StoreState state;       /* written only by store_set_state() */
    char *host;             /* Redis address in use */
    int port;
    char *user, *password;
    int db;
    char *prefix;           /* cache.key_prefix */
    int64_t timeout_us;     /* cache.redis_timeout */
    int backoff_ms;         /* next reconnect delay */
    StoreReq *head, *tail;  /* outstanding commands, oldest first */
    StoreStatus fail_status;/* what pending callbacks report while the context is freed */
    ev_timer reconnect;     /* fires to reconnect */
    ev_timer deadline;      /* fires when the oldest command may be late */
    ev_timer kill;          /* zero-delay: frees the context outside hiredis callbacks */
    bool epoch_bump_out;    /* an epoch bump for lost writes is in flight */
    StoreReq *spare;        /* finished request records kept for reuse (hot path: no malloc) */
    ByteWriter resp;        /* the command being formatted */
    int n_spare;
    uint64_t epoch_bump_target; /* lost_writes count that bump covers */
};

/* Writes whose invalidation failed / the count covered by the last epoch bump. */
static _Atomic uint64_t lost_writes;
static _Atomic uint64_t lost_writes_covered;
static LogRateLimit redis_rl;

static void store_connect(Store *s);
static void store_drop(Store *s, StoreStatus why, const char *reason);

/* Workers whose Redis connection is up, for SHOW STATS and /healthz. */
static _Atomic int stores_up;

static void store_set_state(Store *s, StoreState st)
{
    if (s->state != STORE_UP && st == STORE_UP)
        atomic_fetch_add(&stores_up, 1);
    else if (s->state == STORE_UP && st != STORE_UP)
        atomic_fetch_sub(&stores_up, 1);
    s->state = st;
}

int store_up_count(void)
{
    return atomic_load(&stores_up);
}

uint64_t store_version_seed(void)
{
    return (uint64_t)wallclock_us();
}

void store_note_lost_write(void)
{
    atomic_fetch_add(&lost_writes, 1);
}

static bool lost_writes_pending(void)
{
    return atomic_load(&lost_writes) != atomic_load(&lost_writes_covered);
}

bool store_ready(const Store *s)
{
    return s && s->state == STORE_UP && !lost_writes_pending();
}

bool store_connected(const Store *s)
{
    return s && s->state == STORE_UP;
}

static void warn_redis(Store *s, const char *what)
{
    uint64_t suppressed;
    if (log_ratelimit(&redis_rl, 10000, &suppressed))
        log_warn("redis %s:%d: %s; serving from PostgreSQL until it is back "
                 "(%llu similar warnings suppressed)",
                 s->host, s->port, what, (unsigned long long)suppressed);
}

static LogRateLimit publish_rl;

void store_warn_publish_failed(Store *s, const redisReply *err)
{
    uint64_t suppressed;
    if (!log_ratelimit(&publish_rl, 60000, &suppressed))
        return;
    log_warn("redis %s:%d: invalidations are bumped but cannot be published on %s:inval: %.*s "
             "(grant the Redis user the Pub/Sub channels %s:*; until then instances in "
             "consistency: local see other instances' writes only when they confirm versions) "
             "(%llu similar warnings suppressed)",
             s->host, s->port, s->prefix, err->type == REDIS_REPLY_STRING ? (int)err->len : 0,
             err->type == REDIS_REPLY_STRING ? err->str : "", s->prefix,
             (unsigned long long)suppressed);
}

/* --- outstanding commands -------------------------------------------------------------- */

static void arm_deadline(Store *s)
{
    struct ev_loop *loop = s->worker->loop;
    if (!s->head) {
        ev_timer_stop(loop, &s->deadline);
        return;
    }
    int64_t due = s->head->sent_us + s->timeout_us - clock_us();
    if (due < 1000)
        due = 1000;
    ev_timer_stop(loop, &s->deadline);
    ev_timer_set(&s->deadline, (double)due / 1e6, 0.);
    ev_timer_start(loop, &s->deadline);
}

static void finish_req(StoreReq *req, StoreStatus status, const redisReply *reply)
{
    Store *s = req->store;
    /* Replies come in order: req is the head. */
    if (s->head == req) {
        s->head = req->next;
        if (!s->head)
            s->tail = NULL;
    }
    if (req->client) {
        Client *c = req->client;
        c->pending_callbacks--;
        if ((c->state != CS_DEAD || req->always) && req->cb)
            req->cb(c, status, reply, req->arg);
    } else if (req->cb) {
        req->cb(NULL, status, reply, req->arg);
    }
    if (s->n_spare < 256) {
        req->next = s->spare;
        s->spare = req;
        s->n_spare++;
    } else {
        free(req);
    }
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    StoreReq *req = privdata;
    Store *s = req->store;
    const redisReply *reply = r;
    if (reply) {
        if (reply->type == REDIS_REPLY_ERROR)
            STAT_INC(s->worker->stats.redis_errors);
        finish_req(req, STORE_REPLY, reply);
    } else {
        finish_req(req, s->fail_status, NULL);
    }
    if (s->state != STORE_STOPPED)
        arm_deadline(s);
}

static void put_decimal(ByteWriter *w, size_t v)
{
    char buf[24];
    size_t n = sizeof buf;
    do {
        buf[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    bw_put(w, buf + n, sizeof buf - n);
}

static bool send_command(Store *s, Client *c, StoreCallback cb, void *arg, bool always, int argc,
                         const char **argv, const size_t *argvlen)
{
    if (!s->ac || (s->state != STORE_UP && s->state != STORE_CONNECTING))
        return false;
    StoreReq *req = s->spare;
    if (req) {
        s->spare = req->next;
        s->n_spare--;
    } else if (!(req = malloc(sizeof *req))) {
        return false;
    }
    req->next = NULL;
    req->store = s;
    req->client = c;
    req->cb = cb;
    req->arg = arg;
    req->sent_us = clock_us();
    req->always = always;
    /* RESP by hand: hiredis's printf-style formatter costs more than the rest of a hit. */
    ByteWriter *w = &s->resp;
    bw_reset(w);
    char num[24];
    int n = snprintf(num, sizeof num, "*%d\r\n", argc);
    bw_put(w, num, (size_t)n);
    for (int i = 0; i < argc; i++) {
        bw_u8(w, '$');
        put_decimal(w, argvlen[i]);
        bw_put(w, "\r\n", 2);
        bw_put(w, argv[i], argvlen[i]);
        bw_put(w, "\r\n", 2);
    }
    /* hiredis scans the command with strchr() for its argument markers: terminate it. */
    bw_u8(w, 0);
    if (w->failed ||
        redisAsyncFormattedCommand(s->ac, on_reply, req, (const char *)w->data, w->len - 1) !=
            REDIS_OK) {
        req->next = s->spare;
        s->spare = req;
        s->n_spare++;
        return false;
    }
    if (s->tail)
        s->tail->next = req;
    else
        s->head = req;
    s->tail = req;
    if (c)
        c->pending_callbacks++;
    if (s->head == req)
        arm_deadline(s);
    return true;
}

bool store_command(Store *s, Client *c, StoreCallback cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen)
{
    if (!s || s->state != STORE_UP)
        return false;
    return send_command(s, c, cb, arg, false, argc, argv, argvlen);
}

bool store_wake(Store *s)
{
    if (!s || s->state == STORE_STOPPED)
        return false;
    /* With a context still waiting for on_kill, connecting now would lose track of it. */
    if (s->state == STORE_DOWN && !s->ac) {
        ev_timer_stop(s->worker->loop, &s->reconnect);
        store_connect(s);
    }
    return s->ac && (s->state == STORE_UP || s->state == STORE_CONNECTING);
}

bool store_invalidate(Store *s, Client *c, StoreCallback cb, void *arg, int argc,
                      const char **argv, const size_t *argvlen)
{
    /* send_command() accepts a store that is up or connecting. */
    return s && send_command(s, c, cb, arg, true, argc, argv, argvlen);
}

/* --- lost writes: bump the epoch before serving again ---------------------------------- */

static void on_epoch_bumped(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    Store *s = arg;
    s->epoch_bump_out = false;
    if (status != STORE_REPLY || reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER) {
        warn_redis(s, "could not bump the global epoch after lost invalidations");
        return;
    }
    versions_raise_epoch((uint64_t)reply->element[0]->integer);
    STAT_INC(s->worker->stats.epoch_bumps);
    uint64_t want = s->epoch_bump_target;
    uint64_t cur = atomic_load(&lost_writes_covered);
    while (want > cur && !atomic_compare_exchange_weak(&lost_writes_covered, &cur, want))
        ;
    log_info("redis %s:%d: global epoch bumped to %lld after invalidations were lost; "
             "hits resume",
             s->host, s->port, (long long)reply->element[0]->integer);
}

/*
 * Bumps the global epoch when some write's invalidation was lost (any worker may do it;
 * the first to succeed covers all writes counted before it started).
 */
static void maybe_bump_epoch(Store *s)
{
    if (s->state != STORE_UP || s->epoch_bump_out || !lost_writes_pending())
        return;
    s->epoch_bump_target = atomic_load(&lost_writes);
    char key[300], seed[32], channel[300];
    snprintf(key, sizeof key, "%s:epoch", s->prefix);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)store_version_seed());
    snprintf(channel, sizeof channel, "%s:inval", s->prefix);
    const char *argv[] = {"EVAL", store_bump_script, "1", key, seed, channel, "", "*"};
    size_t argvlen[8];
    for (int i = 0; i < 8; i++)
        argvlen[i] = strlen(argv[i]);
    if (send_command(s, NULL, on_epoch_bumped, s, false, 8, argv, argvlen))
        s->epoch_bump_out = true;
}

/* --- connection ------------------------------------------------------------------------ */

static void on_setup_reply(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    Store *s = arg;
    const char *what = "setup";
    if (status != STORE_REPLY) {
        return; /* the drop path already reports */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[300];
        snprintf(msg, sizeof msg, "%s failed: %s", what, reply->str);
        warn_redis(s, msg);
        store_drop(s, STORE_FAILED, NULL);
        return;
    }
}

static void on_ready_reply(Client *c, StoreStatus status, const redisReply *reply, void *arg)
{
    Store *s = arg;
    if (status != STORE_REPLY || s->state != STORE_CONNECTING)
        return;
    /* NOAUTH (no password in the URL), LOADING (Redis still reading its snapshot), ...:
     * say so, and try again later on a fresh connection. */
    if (reply->type == REDIS_REPLY_ERROR) {
        char msg[300];
        snprintf(msg, sizeof msg, "PING failed: %s", reply->str);
        warn_redis(s, msg);
        store_drop(s, STORE_FAILED, NULL);
        return;
    }
    store_set_state(s, STORE_UP);
    s->backoff_ms = BACKOFF_MIN_MS;
    log_info("worker %d: connected to redis %s:%d/%d", s->worker->index, s->host, s->port, s->db);
    maybe_bump_epoch(s);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    Store *s = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        s->ac = NULL;
        warn_redis(s, ac->errstr[0] ? ac->errstr : "connect failed");
        store_drop(s, STORE_FAILED, NULL);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    Store *s = ac->data;
    if (s->ac != ac)
        return; /* a context already given up (on_kill), maybe replaced by store_wake() */
    s->ac = NULL;
    if (s->state == STORE_STOPPED)
        return;
    if (status != REDIS_OK)
        warn_redis(s, ac->errstr[0] ? ac->errstr : "connection lost");
    store_drop(s, STORE_FAILED, NULL);
}

static void store_connect(Store *s)
{
    if (s->state == STORE_STOPPED)
        return;
    redisAsyncContext *ac =
        s->host[0] == '/' ? redisAsyncConnectUnix(s->host) : redisAsyncConnect(s->host, s->port);
    if (!ac || ac->err) {
        warn_redis(s, ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        store_drop(s, STORE_FAILED, NULL);
        return;
    }
    ac->data = s;
    s->ac = ac;
    s->fail_status = STORE_FAILED;
    redisLibevAttach(s->worker->loop, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    store_set_state(s, STORE_CONNECTING);
    /* Pipelined behind the connect: AUTH, SELECT, then a PING that marks us up. */
    if (s->password) {
        const char *argv[3] = {"AUTH", s->user ? s->user : s->password, s->password};
        size_t argvlen[3] = {4, strlen(argv[1]), strlen(s->password)};
        (void)send_command(s, NULL, on_setup_reply, s, false, s->user ? 3 : 2, argv, argvlen);
    }
    if (s->db != 0) {
        char db[16];
        snprintf(db, sizeof db, "%d", s->db);
        const char *argv[2] = {"SELECT", db};
        size_t argvlen[2] = {6, strlen(db)};
        (void)send_command(s, NULL, on_setup_reply, s, false, 2, argv, argvlen);
    }
    const char *argv[1] = {"PING"};
    size_t argvlen[1] = {4};
    (void)send_command(s, NULL, on_ready_reply, s, false, 1, argv, argvlen);
}

static void on_reconnect(struct ev_loop *loop, ev_timer *t, int revents)
{
    Store *s = t->data;
    if (s->state == STORE_DOWN)
        store_connect(s);
}

/* Frees the context (pending callbacks get `why`) and schedules a reconnect. */
static void store_drop(Store *s, StoreStatus why, const char *reason)
{
    struct ev_loop *loop = s->worker->loop;
    if (reason)
        warn_redis(s, reason);
    if (s->state == STORE_STOPPED)
        return;
    /* Whatever other instances invalidated while this one could not hear, and whatever a
     * restarted Redis kept or lost, is unknown: no hits until the epoch has been bumped. */
    if (s->state == STORE_UP)
        store_note_lost_write();
    store_set_state(s, STORE_DOWN);
    s->epoch_bump_out = false;
    ev_timer_stop(loop, &s->deadline);
    if (s->ac) {
        s->fail_status = why;
        ev_feed_event(loop, &s->kill, EV_TIMER); /* free outside hiredis callbacks */
    }
    if (!ev_is_active(&s->reconnect)) {
        ev_timer_set(&s->reconnect, s->backoff_ms / 1000.0, 0.);
        ev_timer_start(loop, &s->reconnect);
        s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
    }
}

static void on_kill(struct ev_loop *loop, ev_timer *t, int revents)
{
    Store *s = t->data;
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        redisAsyncFree(ac); /* runs every pending callback with a NULL reply */
    }
}

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
    Store *s = t->data;
    if (!s->head)
        return;
    if (clock_us() - s->head->sent_us < s->timeout_us) {
        arm_deadline(s);
        return;
    }
    STAT_INC(s->worker->stats.redis_timeouts);
    char msg[128];
    snprintf(msg, sizeof msg, "no reply within %lld ms",
             (long long)(s->timeout_us / 1000));
    store_drop(s, STORE_TIMEOUT, msg);
}

static void adopt_config(Store *s, const Config *cfg)
{
    free(s->host);
    free(s->user);
    free(s->password);
    free(s->prefix);
    s->host = strdup(cfg->redis.addr.host);
    s->port = cfg->redis.addr.port;
    s->user = cfg->redis.user ? strdup(cfg->redis.user) : NULL;
    s->password = cfg->redis.password ? strdup(cfg->redis.password) : NULL;
    s->db = cfg->redis.db;
    s->prefix = strdup(cfg->cache.key_prefix);
    s->timeout_us = cfg->cache.redis_timeout_ms * 1000;
}

Store *store_new(Worker *w, const Config *cfg)
{
    Store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->worker = w;
    adopt_config(s, cfg);
    s->backoff_ms = BACKOFF_MIN_MS;
    ev_init(&s->reconnect, on_reconnect);
    s->reconnect.data = s;
    ev_init(&s->deadline, on_deadline);
    s->deadline.data = s;
    ev_init(&s->kill, on_kill);
    s->kill.data = s;
    store_set_state(s, STORE_DOWN);
    if (cfg->cache.enabled)
        store_connect(s);
    return s;
}

void store_reconfigure(Store *s, const Config *cfg)
{
    bool same = strcmp(s->host, cfg->redis.addr.host) == 0 && s->port == cfg->redis.addr.port &&
                s->db == cfg->redis.db &&
                !!s->password == !!cfg->redis.password &&
                (!s->password || strcmp(s->password, cfg->redis.password) == 0) &&
                !!s->user == !!cfg->redis.user && (!s->user || strcmp(s->user, cfg->redis.user) == 0);
    adopt_config(s, cfg);
    if (s->state == STORE_STOPPED)
        return;
    if (!cfg->cache.enabled) {
        if (s->ac)
            store_drop(s, STORE_FAILED, NULL);
        ev_timer_stop(s->worker->loop, &s->reconnect);
        return;
    }
    if (!same || s->state == STORE_DOWN) {
        if (s->ac)
            store_drop(s, STORE_FAILED, NULL);
        ev_timer_stop(s->worker->loop, &s->reconnect);
        s->backoff_ms = BACKOFF_MIN_MS;
        store_connect(s);
    }
}

void store_shutdown(Store *s)
{
    if (!s || s->state == STORE_STOPPED)
        return;
    struct ev_loop *loop = s->worker->loop;
    store_set_state(s, STORE_STOPPED);
    ev_timer_stop(loop, &s->reconnect);
    ev_timer_stop(loop, &s->deadline);
    if (s->ac) {
        redisAsyncContext *ac = s->ac;
        s->ac = NULL;
        s->fail_status = STORE_FAILED;
        redisAsyncFree(ac);
    }
}

void store_free(Store *s)
{
    if (!s)
        return;
    store_shutdown(s);
    while (s->spare) {
        StoreReq *next = s->spare->next;
        free(s->spare);
        s->spare = next;
    }
    bw_free(&s->resp);
    free(s->host);
    free(s->user);
    free(s->password);
    free(s->prefix);
    free(s);
}

void store_tick(Store *s)
{
    maybe_bump_epoch(s);
}
