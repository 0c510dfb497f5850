/*
 * health.c — a thread that pings the upstream (libpq's PQping: is the server accepting
 * connections) and Redis (PING, after AUTH/SELECT) every HEALTH_PERIOD, and keeps the latest
 * verdict for /healthz. The first verdict is taken before health_start returns.
 */
#include "proxy/health.h"

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "proxy/runtime.h"

#define HEALTH_PERIOD_MS 2000

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static pthread_t thread;
static bool running, stopping;
static bool healthy;
static char verdict[1400] = "not checked yet";

static bool check_postgres(const Config *cfg, char *why, size_t len)
{
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->upstream.port);
    /* As the catalog reader: a role that exists. The OS user running pgstash may not be one,
     * and PostgreSQL would log "FATAL: role ... does not exist" for every ping. */
    const char *keys[] = {"host",           "port",       "dbname",           "user",
                          "connect_timeout", "gssencmode", "application_name", NULL};
    const char *values[] = {cfg->upstream.host,
                            port,
                            cfg->catalog.dbname ? cfg->catalog.dbname : "postgres",
                            cfg->catalog.user,
                            "2",
                            "disable",
                            "pgstash-health",
                            NULL};
    PGPing p = PQpingParams(keys, values, 0);
    switch (p) {
    case PQPING_OK:
        snprintf(why, len, "postgres ok");
        return true;
    case PQPING_REJECT:
        snprintf(why, len, "postgres at %s:%d rejects connections (starting up or shutting down)",
                 cfg->upstream.host, cfg->upstream.port);
        return false;
    case PQPING_NO_RESPONSE:
        snprintf(why, len, "postgres at %s:%d does not answer", cfg->upstream.host,
                 cfg->upstream.port);
        return false;
    default:
        snprintf(why, len, "postgres at %s:%d: bad connection parameters", cfg->upstream.host,
                 cfg->upstream.port);
        return false;
    }
}

static bool check_redis(const Config *cfg, char *why, size_t len)
{
    struct timeval tv = {1, 0};
    const RedisUrl *u = &cfg->redis;
    redisContext *rc = u->addr.host[0] == '/' ? redisConnectUnixWithTimeout(u->addr.host, tv)
                                              : redisConnectWithTimeout(u->addr.host, u->addr.port, tv);
    bool ok = false;
    if (!rc || rc->err) {
        snprintf(why, len, "redis at %s:%d: %s", u->addr.host, u->addr.port,
                 rc ? rc->errstr : "out of memory");
        goto done;
    }
    redisSetTimeout(rc, tv);
    redisReply *r;
    if (u->password) {
        r = u->user ? redisCommand(rc, "AUTH %s %s", u->user, u->password)
                    : redisCommand(rc, "AUTH %s", u->password);
        bool auth_ok = r && r->type != REDIS_REPLY_ERROR;
        if (!auth_ok)
            snprintf(why, len, "redis at %s:%d: AUTH failed: %s", u->addr.host, u->addr.port,
                     r ? r->str : rc->errstr);
        if (r)
            freeReplyObject(r);
        if (!auth_ok)
            goto done;
    }
    r = redisCommand(rc, "PING");
    ok = r && r->type != REDIS_REPLY_ERROR;
    if (ok)
        snprintf(why, len, "redis ok");
    else
        snprintf(why, len, "redis at %s:%d: %s", u->addr.host, u->addr.port,
                 r ? r->str : rc->errstr);
    if (r)
        freeReplyObject(r);
done:
    if (rc)
        redisFree(rc);
    return ok;
}

static void check_once(void)
{
    const Config *cfg = runtime_snapshot()->cfg;
    char pg[640], redis[640], out[1300];
    bool pg_ok = check_postgres(cfg, pg, sizeof pg);
    bool redis_ok = !cfg->cache.enabled || check_redis(cfg, redis, sizeof redis);
    if (!cfg->cache.enabled)
        snprintf(redis, sizeof redis, "redis not used (cache disabled)");
    snprintf(out, sizeof out, "%s, %s", pg, redis);
    pthread_mutex_lock(&lock);
    healthy = pg_ok && redis_ok;
    snprintf(verdict, sizeof verdict, "%s", out);
    pthread_mutex_unlock(&lock);
}

static void *health_main(void *arg)
{
    pthread_setname_np(pthread_self(), "pgstash-health");
    pthread_mutex_lock(&lock);
    while (!stopping) {
        pthread_mutex_unlock(&lock);
        check_once();
        pthread_mutex_lock(&lock);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += HEALTH_PERIOD_MS / 1000;
        while (!stopping && pthread_cond_timedwait(&wake, &lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

bool health_start(void)
{
    check_once();
    running = pthread_create(&thread, NULL, health_main, NULL) == 0;
    return running;
}

void health_stop(void)
{
    if (!running)
        return;
    pthread_mutex_lock(&lock);
    stopping = true;
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(thread, NULL);
    running = false;
}

bool health_check(char *reason, size_t len)
{
    pthread_mutex_lock(&lock);
    bool ok = healthy;
    snprintf(reason, len, "%s", verdict);
    pthread_mutex_unlock(&lock);
    return ok;
}
