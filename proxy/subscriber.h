/*
 * subscriber.h — the process's subscription to the invalidation channel (<prefix>:inval):
 * every bump made by any pgstash sharing the Redis raises the local version map, which is
 * what `consistency: local` trusts. Runs on the main thread's loop.
 */
#ifndef PGSTASH_SUBSCRIBER_H
#define PGSTASH_SUBSCRIBER_H

#include <ev.h>
#include <stdbool.h>

#include "config/config.h"

/* Starts subscribing (reconnecting with back-off when the connection drops). */
void subscriber_start(struct ev_loop *loop, const Config *cfg);

/* A new configuration: resubscribes when Redis or the key prefix changed. */
void subscriber_reconfigure(const Config *cfg);

void subscriber_stop(void);

/* Releases what subscriber_start allocated (after subscriber_stop, at exit). */
void subscriber_free(void);

/*
 * True while subscribed without interruption since the local version map was last cleared:
 * only then may `consistency: local` trust the map.
 */
bool subscriber_live(void);

#endif
