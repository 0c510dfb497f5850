/*
 * subscriber.c — SUBSCRIBE on the invalidation channel. Messages are
 * "db\0table=version\0table=version..." ("*" is the global epoch), published by the bump
 * script in the same Redis call that bumps. A dropped subscription may have missed
 * messages: the local map is cleared and `local` mode falls back to confirming versions
 * in Redis until the subscription is live again.
 */
#include "proxy/subscriber.h"

#include <hiredis/adapters/libev.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/catalog.h"
#include "proxy/log.h"
#include "proxy/versions.h"

#define BACKOFF_MAX 5.0

static struct ev_loop *loop_;
static redisAsyncContext *ac;
static ev_timer retry;
static double backoff = 0.1;
static char *host, *user, *password, *channel, *ddl_channel;
static int port, db;
static bool stopped;
static _Atomic bool live;

static void connect_now(void);

bool subscriber_live(void)
{
    return atomic_load_explicit(&live, memory_order_acquire);
}

static void schedule_retry(void)
{
    if (stopped || ev_is_active(&retry))
        return;
    ev_timer_set(&retry, backoff, 0.);
    ev_timer_start(loop_, &retry);
    backoff = backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : backoff * 2;
}

static void on_retry(struct ev_loop *loop, ev_timer *t, int revents)
{
    if (!ac)
        connect_now();
}

/* Applies one published invalidation. */
static void apply(const char *msg, size_t len)
{
    const char *end = msg + len;
    const char *dbname = msg;
    const char *p = memchr(msg, 0, len);
    if (!p)
        return;
    p++;
    while (p < end) {
        const char *item_end = memchr(p, 0, (size_t)(end - p));
        if (!item_end)
            item_end = end;
        const char *eq = NULL;
        for (const char *q = item_end; q > p; q--)
            if (q[-1] == '=') {
                eq = q - 1;
                break;
            }
        if (eq) {
            char table[256];
            size_t tl = (size_t)(eq - p);
            uint64_t v = strtoull(eq + 1, NULL, 10);
            if (tl < sizeof table) {
                memcpy(table, p, tl);
                table[tl] = 0;
                if (strcmp(table, "*") == 0)
                    versions_raise_epoch(v);
                else
                    versions_raise(dbname, table, v);
            }
        }
        p = item_end + 1;
    }
}

static void on_message(redisAsyncContext *c, void *r, void *privdata)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        /* E.g. NOPERM: an ACL user without the channels (Redis 7 grants none by default).
         * Local mode then confirms versions in Redis on every read; try again later. */
        log_warn("invalidation subscriber: SUBSCRIBE %s failed: %s (the Redis user needs the "
                 "Pub/Sub channels %s and %s)", channel, reply->str, channel, ddl_channel);
        redisAsyncDisconnect(c);
        return;
    }
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
        return;
    redisReply *kind = reply->element[0];
    if (kind->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(kind->str, "subscribe") == 0) {
        if (reply->element[1]->type == REDIS_REPLY_STRING && ddl_channel &&
            strcmp(reply->element[1]->str, ddl_channel) == 0)
            return;
        /* Messages before this point were missed: start from a clean map. */
        versions_forget_all();
        atomic_store(&live, true);
        backoff = 0.1;
        log_info("subscribed to invalidations on %s", channel);
        return;
    }
    if (strcmp(kind->str, "message") != 0 || reply->element[1]->type != REDIS_REPLY_STRING ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (ddl_channel && strcmp(reply->element[1]->str, ddl_channel) == 0) {
        /* DDL through some pgstash: what names mean in that database may have changed. */
        char db[256];
        snprintf(db, sizeof db, "%.*s", (int)reply->element[2]->len, reply->element[2]->str);
        catalog_invalidate(db);
        return;
    }
    apply(reply->element[2]->str, reply->element[2]->len);
}

static void on_auth(redisAsyncContext *c, void *r, void *privdata)
{
    redisReply *reply = r;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        log_warn("invalidation subscriber: AUTH failed: %s", reply->str);
}

static void on_connect(const redisAsyncContext *c, int status)
{
    if (status != REDIS_OK) {
        ac = NULL;
        schedule_retry();
    }
}

static void on_disconnect(const redisAsyncContext *c, int status)
{
    if (ac == c)
        ac = NULL;
    if (atomic_exchange(&live, false) && !stopped)
        log_warn("invalidation subscriber lost its connection; local mode confirms versions in "
                 "Redis until it is back");
    schedule_retry();
}

static void connect_now(void)
{
    if (stopped)
        return;
    ac = host[0] == '/' ? redisAsyncConnectUnix(host) : redisAsyncConnect(host, port);
    if (!ac || ac->err) {
        if (ac)
            redisAsyncFree(ac);
        ac = NULL;
        schedule_retry();
        return;
    }
    redisLibevAttach(loop_, ac);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    if (password) {
        if (user)
            redisAsyncCommand(ac, on_auth, NULL, "AUTH %s %s", user, password);
        else
            redisAsyncCommand(ac, on_auth, NULL, "AUTH %s", password);
    }
    /* SUBSCRIBE works on any logical database: channels are global. */
    redisAsyncCommand(ac, on_message, NULL, "SUBSCRIBE %b %b", channel, strlen(channel),
                      ddl_channel, strlen(ddl_channel));
}

static void adopt(const Config *cfg)
{
    free(host);
    free(user);
    free(password);
    free(channel);
    free(ddl_channel);
    host = strdup(cfg->redis.addr.host);
    port = cfg->redis.addr.port;
    user = cfg->redis.user ? strdup(cfg->redis.user) : NULL;
    password = cfg->redis.password ? strdup(cfg->redis.password) : NULL;
    db = cfg->redis.db;
    size_t n = strlen(cfg->cache.key_prefix) + 8;
    channel = malloc(n);
    ddl_channel = malloc(n);
    if (channel)
        snprintf(channel, n, "%s:inval", cfg->cache.key_prefix);
    if (ddl_channel)
        snprintf(ddl_channel, n, "%s:ddl", cfg->cache.key_prefix);
}

void subscriber_start(struct ev_loop *loop, const Config *cfg)
{
    loop_ = loop;
    ev_init(&retry, on_retry);
    adopt(cfg);
    stopped = !cfg->cache.enabled;
    if (!stopped && host && channel && ddl_channel)
        connect_now();
}

void subscriber_reconfigure(const Config *cfg)
{
    bool same = host && channel && strcmp(host, cfg->redis.addr.host) == 0 &&
                port == cfg->redis.addr.port &&
                strncmp(channel, cfg->cache.key_prefix, strlen(cfg->cache.key_prefix)) == 0 &&
                channel[strlen(cfg->cache.key_prefix)] == ':';
    if (same && !stopped == cfg->cache.enabled)
        return;
    subscriber_stop();
    subscriber_start(loop_, cfg);
}

void subscriber_stop(void)
{
    stopped = true;
    atomic_store(&live, false);
    if (loop_)
        ev_timer_stop(loop_, &retry);
    if (ac) {
        redisAsyncContext *c = ac;
        ac = NULL;
        redisAsyncFree(c);
    }
}

void subscriber_free(void)
{
    subscriber_stop();
    free(host);
    free(user);
    free(password);
    free(channel);
    free(ddl_channel);
    host = user = password = channel = ddl_channel = NULL;
}
