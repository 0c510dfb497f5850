/*
 * health.h — whether PostgreSQL and Redis answer, checked every couple of seconds on a thread
 * of its own (blocking libpq/hiredis calls never touch an event loop), for GET /healthz.
 */
#ifndef PGSTASH_HEALTH_H
#define PGSTASH_HEALTH_H

#include <stdbool.h>
#include <stddef.h>

bool health_start(void) __attribute__((warn_unused_result));
void health_stop(void);

/* Fills `reason` ("postgres ok, redis ok" or what is wrong); true when both answer. */
bool health_check(char *reason, size_t len);

#endif
