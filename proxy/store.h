/*
 * store.h — a worker's connection to Redis (hiredis async on the worker's libev loop):
 * connect with AUTH/SELECT, reconnect with back-off, a deadline on every reply (fail open),
 * and the process-wide rule that writes whose invalidation could not reach Redis force a
 * global epoch bump before any hit is served again.
 */
#ifndef PGSTASH_STORE_H
#define PGSTASH_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct Store Store;
typedef struct Worker Worker;
typedef struct Client Client;
typedef struct redisReply redisReply;

typedef enum {
    STORE_REPLY,   /* a reply arrived (it may still be a Redis error reply) */
    STORE_FAILED,  /* the connection failed or was not up: no reply */
    STORE_TIMEOUT, /* no reply within cache.redis_timeout: the connection was dropped */
} StoreStatus;

/*
 * Called once per command, in order. `reply` is NULL unless status is STORE_REPLY, and is
 * owned by hiredis (valid during the call only). Not called when the client died while the
 * command was out: the client's pending_callbacks keeps it from being freed until then.
 */
typedef void (*StoreCallback)(Client *c, StoreStatus status, const redisReply *reply, void *arg);

Store *store_new(Worker *w, const Config *cfg);
void store_free(Store *s);

/* Disconnects and stops reconnecting (worker draining). */
void store_shutdown(Store *s);

/* A new config snapshot: reconnects if the Redis URL changed, adopts the new timeout. */
void store_reconfigure(Store *s, const Config *cfg);

/* True when commands can be sent and hits may be served (connected, no lost writes). */
bool store_ready(const Store *s);

/* True when commands can be sent (invalidations go out even while hits are held back). */
bool store_connected(const Store *s);

/* The bump script's PUBLISH was refused (`err`, a string reply): the versions are bumped, but
 * instances in consistency: local hear of it late. Logged, rate-limited. */
void store_warn_publish_failed(Store *s, const redisReply *err);

/*
 * Sends one command for a client (args are copied). On false nothing was sent and the
 * callback will not run; the caller fails open.
 */
bool store_command(Store *s, Client *c, StoreCallback cb, void *arg, int argc, const char **argv,
                   const size_t *argvlen) __attribute__((warn_unused_result));

/*
 * For an invalidation that cannot wait for the reconnect back-off: a store that is down
 * starts connecting now. True when a command can be queued (up, or connecting: it goes out
 * behind the connection's set-up, under the same deadline).
 */
bool store_wake(Store *s);

/* store_command(), but the callback runs even if the client died meanwhile (it must check
 * c->state == CS_DEAD before touching the session): a failed invalidation is accounted for
 * whatever becomes of the client. Also queues while connecting (after store_wake()). */
bool store_invalidate(Store *s, Client *c, StoreCallback cb, void *arg, int argc,
                      const char **argv, const size_t *argvlen)
    __attribute__((warn_unused_result));

/*
 * Records that a write's invalidation could not be delivered. Until some worker has bumped
 * the global epoch after this call, no worker serves hits or stores fills.
 */
void store_note_lost_write(void);

/* How many workers have their Redis connection up right now. */
int store_up_count(void);

/* Once per loop iteration: bumps the global epoch if another worker lost a write. */
void store_tick(Store *s);

/* The Lua script that bumps version counters (see store.c); used by the cache path. */
extern const char store_bump_script[];

/* Microseconds now, the initial value of a missing version counter (see store.c). */
uint64_t store_version_seed(void);

#endif
