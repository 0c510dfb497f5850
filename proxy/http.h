/*
 * http.h — the operator's HTTP endpoint (admin.listen) on the main thread's loop:
 * GET /metrics (Prometheus text), GET /stats (JSON), GET /healthz. Tiny HTTP/1.0: one
 * request per connection, bounded request size, a deadline per connection.
 */
#ifndef PGSTASH_HTTP_H
#define PGSTASH_HTTP_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

typedef struct Worker Worker;

/* What the endpoint serves from: the workers, and a health callback. */
typedef struct {
    Worker *const *workers;
    int n_workers;
    /* Fills `reason` and returns true when PostgreSQL and Redis answer. */
    bool (*healthy)(char *reason, size_t len);
} HttpContext;

/* Starts listening; false with err filled. */
bool http_start(struct ev_loop *loop, const HostPort *addr, const HttpContext *ctx, char *err,
                size_t errlen) __attribute__((warn_unused_result));

/* Stops listening and closes open HTTP connections. */
void http_stop(struct ev_loop *loop);

#endif
