/*
 * report.h — turns the workers' counters into the periodic stats log line, the /stats JSON
 * document and the Prometheus /metrics text. Runs on the main thread; reads the workers'
 * single-writer counters with relaxed loads.
 */
#ifndef PGSTASH_REPORT_H
#define PGSTASH_REPORT_H

#include <jansson.h>

#include "proxy/buf.h"
#include "proxy/stats.h"

typedef struct Worker Worker;

/* Sums every worker's counters and latency quantiles. */
void report_totals(Worker *const *ws, int n, StatsTotals *out);

/* The /stats document (new reference). */
json_t *report_json(Worker *const *ws, int n);

/* Writes the stats line for the interval since `prev` (updated to now). */
void report_log(Worker *const *ws, int n, StatsTotals *prev);

/* Appends the Prometheus text exposition. */
void report_prometheus(Worker *const *ws, int n, ByteWriter *out);

#endif
