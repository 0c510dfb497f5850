/*
 * report.c — stats aggregation and formatting (log line, JSON, Prometheus).
 */
#include "proxy/report.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/reasons.h"
#include "proxy/runtime.h"
#include "proxy/store.h"
#include "proxy/tablestats.h"
#include "proxy/worker.h"

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
#define TOP_TABLES 5

/* The tables with the most reads, as JSON objects (new reference). */
static json_t *top_tables(Worker *const *ws, int n, size_t limit)
{
    TableStats *ts[256];
    if (n > 256)
        n = 256;
    for (int i = 0; i < n; i++)
        ts[i] = &ws[i]->tables;
    TableTotals *tt;
    size_t count = tablestats_collect(ts, n, &tt);
    json_t *arr = json_array();
    for (size_t i = 0; i < count && i < limit; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "table", json_string(tt[i].name));
        json_object_set_new(o, "reads", json_integer((json_int_t)tt[i].reads));
        json_object_set_new(o, "hits", json_integer((json_int_t)tt[i].hits));
        json_object_set_new(o, "misses", json_integer((json_int_t)tt[i].misses));
        json_object_set_new(o, "bypasses", json_integer((json_int_t)tt[i].bypasses));
        json_object_set_new(o, "invalidations", json_integer((json_int_t)tt[i].invalidations));
        json_object_set_new(o, "hit_ratio",
                            json_real(tt[i].reads ? (double)tt[i].hits / (double)tt[i].reads : 0));
        json_array_append_new(arr, o);
    }
    free(tt);
    return arr;
}

/* "orders:1200r/0.95 users:300r/0.10" for the text log line. */
static json_t *top_tables_text(Worker *const *ws, int n)
{
    json_t *arr = top_tables(ws, n, TOP_TABLES);
    char buf[1024];
    size_t at = 0;
    buf[0] = 0;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        at += (size_t)snprintf(buf + at, sizeof buf - at, "%s%s:%" JSON_INTEGER_FORMAT "r/%.2f",
                               i ? "," : "", json_string_value(json_object_get(o, "table")),
                               json_integer_value(json_object_get(o, "reads")),
                               json_real_value(json_object_get(o, "hit_ratio")));
        if (at >= sizeof buf)
            break;
    }
    json_decref(arr);
    return json_string(at ? buf : "-");
}

void report_totals(Worker *const *ws, int n, StatsTotals *t)
{
    memset(t, 0, sizeof *t);
    const Histogram *hits[256], *misses[256];
    if (n > 256)
        n = 256;
    for (int i = 0; i < n; i++) {
        const WorkerStats *s = &ws[i]->stats;
        t->queries += LOAD(s->queries);
        t->hits += LOAD(s->hits);
        t->local_hits += LOAD(s->local_hits);
        t->misses += LOAD(s->misses);
        t->fills += LOAD(s->fills);
        t->fill_skipped += LOAD(s->fill_skipped);
        t->invalidations += LOAD(s->invalidations);
        t->epoch_bumps += LOAD(s->epoch_bumps);
        t->writes += LOAD(s->writes);
        t->redis_errors += LOAD(s->redis_errors);
        t->redis_timeouts += LOAD(s->redis_timeouts);
        t->bad_entries += LOAD(s->bad_entries);
        t->protocol_errors += LOAD(s->protocol_errors);
        t->upstream_errors += LOAD(s->upstream_errors);
        t->server_reuses += LOAD(s->server_reuses);
        for (int r = 0; r < STATS_MAX_REASONS; r++) {
            uint64_t v = LOAD(s->bypasses[r]);
            t->bypasses[r] += v;
            t->bypass_total += v;
        }
        hits[i] = &s->hit_latency;
        misses[i] = &s->miss_latency;
    }
    t->hit_p50_us = hist_quantile(hits, (size_t)n, 0.50);
    t->hit_p99_us = hist_quantile(hits, (size_t)n, 0.99);
    t->miss_p50_us = hist_quantile(misses, (size_t)n, 0.50);
    t->miss_p99_us = hist_quantile(misses, (size_t)n, 0.99);
}

static double ratio(uint64_t hits, uint64_t misses, uint64_t bypasses)
{
    uint64_t reads = hits + misses + bypasses;
    return reads ? (double)hits / (double)reads : 0.0;
}

static json_t *bypass_object(const uint64_t *bypasses)
{
    json_t *o = json_object();
    for (int r = 0; r < STATS_MAX_REASONS; r++)
        if (bypasses[r])
            json_object_set_new(o, bypass_reason_name(r), json_integer((json_int_t)bypasses[r]));
    return o;
}

json_t *report_json(Worker *const *ws, int n)
{
    StatsTotals t;
    report_totals(ws, n, &t);
    json_t *o = json_object();
    json_object_set_new(o, "hits", json_integer((json_int_t)t.hits));
    json_object_set_new(o, "local_hits", json_integer((json_int_t)t.local_hits));
    json_object_set_new(o, "misses", json_integer((json_int_t)t.misses));
    json_object_set_new(o, "fills", json_integer((json_int_t)t.fills));
    json_object_set_new(o, "fill_skipped", json_integer((json_int_t)t.fill_skipped));
    json_object_set_new(o, "bypass_total", json_integer((json_int_t)t.bypass_total));
    json_object_set_new(o, "bypasses", bypass_object(t.bypasses));
    json_object_set_new(o, "hit_ratio", json_real(ratio(t.hits, t.misses, t.bypass_total)));
    json_object_set_new(o, "writes", json_integer((json_int_t)t.writes));
    json_object_set_new(o, "invalidations", json_integer((json_int_t)t.invalidations));
    json_object_set_new(o, "epoch_bumps", json_integer((json_int_t)t.epoch_bumps));
    json_object_set_new(o, "redis_errors", json_integer((json_int_t)t.redis_errors));
    json_object_set_new(o, "redis_timeouts", json_integer((json_int_t)t.redis_timeouts));
    json_object_set_new(o, "bad_entries", json_integer((json_int_t)t.bad_entries));
    json_object_set_new(o, "protocol_errors", json_integer((json_int_t)t.protocol_errors));
    json_object_set_new(o, "upstream_errors", json_integer((json_int_t)t.upstream_errors));
    json_object_set_new(o, "server_reuses", json_integer((json_int_t)t.server_reuses));
    json_object_set_new(o, "hit_p50_us", json_integer((json_int_t)t.hit_p50_us));
    json_object_set_new(o, "hit_p99_us", json_integer((json_int_t)t.hit_p99_us));
    json_object_set_new(o, "miss_p50_us", json_integer((json_int_t)t.miss_p50_us));
    json_object_set_new(o, "miss_p99_us", json_integer((json_int_t)t.miss_p99_us));
    json_object_set_new(o, "clients", json_integer(atomic_load(&rt.clients)));
    json_object_set_new(o, "servers", json_integer(atomic_load(&rt.servers)));
    json_object_set_new(o, "servers_kept", json_integer(atomic_load(&rt.servers_kept)));
    json_object_set_new(o, "clients_total", json_integer((json_int_t)atomic_load(&rt.clients_total)));
    json_object_set_new(o, "tables", top_tables(ws, n, 100));
    json_object_set_new(o, "uptime_s",
                        json_integer((json_int_t)((clock_ms() - rt.started_ms) / 1000)));
    return o;
}

void report_log(Worker *const *ws, int n, StatsTotals *prev)
{
    StatsTotals t;
    report_totals(ws, n, &t);
    uint64_t hits = t.hits - prev->hits, misses = t.misses - prev->misses;
    uint64_t bypass = t.bypass_total - prev->bypass_total;
    json_t *f = json_object();
    json_object_set_new(f, "hits", json_integer((json_int_t)hits));
    json_object_set_new(f, "misses", json_integer((json_int_t)misses));
    json_object_set_new(f, "bypasses", json_integer((json_int_t)bypass));
    json_object_set_new(f, "hit_ratio", json_real(ratio(hits, misses, bypass)));
    uint64_t delta[STATS_MAX_REASONS];
    for (int i = 0; i < STATS_MAX_REASONS; i++)
        delta[i] = t.bypasses[i] - prev->bypasses[i];
    json_object_set_new(f, "bypass_reasons", bypass_object(delta));
    json_object_set_new(f, "invalidations",
                        json_integer((json_int_t)(t.invalidations - prev->invalidations)));
    json_object_set_new(f, "redis_errors",
                        json_integer((json_int_t)(t.redis_errors - prev->redis_errors)));
    json_object_set_new(f, "redis_timeouts",
                        json_integer((json_int_t)(t.redis_timeouts - prev->redis_timeouts)));
    json_object_set_new(f, "hit_p50_us", json_integer((json_int_t)t.hit_p50_us));
    json_object_set_new(f, "hit_p99_us", json_integer((json_int_t)t.hit_p99_us));
    json_object_set_new(f, "miss_p50_us", json_integer((json_int_t)t.miss_p50_us));
    json_object_set_new(f, "miss_p99_us", json_integer((json_int_t)t.miss_p99_us));
    json_object_set_new(f, "clients", json_integer(atomic_load(&rt.clients)));
    if (atomic_load(&log_format_) == LOG_FORMAT_JSON)
        json_object_set_new(f, "top_tables", top_tables(ws, n, TOP_TABLES));
    else
        json_object_set_new(f, "top_tables", top_tables_text(ws, n));
    log_event(LOG_INFO, "stats", f);
    *prev = t;
}

static void prom_line(ByteWriter *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom_line(ByteWriter *out, const char *fmt, ...)
{
    char line[768];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        bw_put(out, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void prom_counter(ByteWriter *out, const char *name, const char *help, uint64_t v)
{
    prom_line(out, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
              (unsigned long long)v);
}

static void prom_gauge(ByteWriter *out, const char *name, const char *help, long long v)
{
    prom_line(out, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help, name, name, v);
}

/* A latency histogram in seconds, from the workers' log-linear microsecond buckets. */
static void prom_histogram(ByteWriter *out, const char *name, const char *help,
                           Worker *const *ws, int n, bool hits)
{
    static const uint64_t bounds_us[] = {100,   250,   500,    1000,   2500,   5000,
                                         10000, 25000, 50000, 100000, 250000, 1000000};
    enum { NB = sizeof bounds_us / sizeof bounds_us[0] };
    uint64_t le[NB] = {0}, count = 0;
    double sum_s = 0;
    for (int w = 0; w < n; w++) {
        const Histogram *h = hits ? &ws[w]->stats.hit_latency : &ws[w]->stats.miss_latency;
        for (unsigned b = 0; b < HIST_BUCKETS; b++) {
            uint64_t c = LOAD(h->counts[b]);
            if (!c)
                continue;
            uint64_t lo = hist_bucket_floor(b);
            count += c;
            sum_s += (double)c * (double)lo / 1e6;
            for (int k = 0; k < NB; k++)
                if (lo < bounds_us[k])
                    le[k] += c;
        }
    }
    prom_line(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int k = 0; k < NB; k++)
        prom_line(out, "%s_bucket{le=\"%g\"} %llu\n", name, (double)bounds_us[k] / 1e6,
                  (unsigned long long)le[k]);
    prom_line(out, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
              (unsigned long long)count, name, sum_s, name, (unsigned long long)count);
}

#define PROM_TABLES 50 /* per-table series: the busiest tables only, to keep labels bounded */

void report_prometheus(Worker *const *ws, int n, ByteWriter *out)
{
    StatsTotals t;
    report_totals(ws, n, &t);
    prom_counter(out, "pgstash_hits_total", "Statements answered from the cache.", t.hits);
    prom_counter(out, "pgstash_local_hits_total",
                 "Units answered from the in-process tier without Redis.", t.local_hits);
    prom_counter(out, "pgstash_misses_total", "Cacheable statements sent to PostgreSQL.",
                 t.misses);
    prom_counter(out, "pgstash_fills_total", "Results stored in the cache.", t.fills);
    prom_counter(out, "pgstash_fills_skipped_total", "Results not stored (too big, notices).",
                 t.fill_skipped);
    prom_line(out, "# HELP pgstash_bypasses_total Reads not cacheable, by reason.\n"
                   "# TYPE pgstash_bypasses_total counter\n");
    for (int r = 0; r < STATS_MAX_REASONS; r++)
        if (t.bypasses[r])
            prom_line(out, "pgstash_bypasses_total{reason=\"%s\"} %llu\n", bypass_reason_name(r),
                      (unsigned long long)t.bypasses[r]);
    prom_counter(out, "pgstash_writes_total", "Units whose writes were invalidated.", t.writes);
    prom_counter(out, "pgstash_invalidations_total", "Table versions bumped.", t.invalidations);
    prom_counter(out, "pgstash_epoch_bumps_total", "Global epoch bumps.", t.epoch_bumps);
    prom_counter(out, "pgstash_redis_errors_total", "Failed Redis commands.", t.redis_errors);
    prom_counter(out, "pgstash_redis_timeouts_total", "Redis replies later than the timeout.",
                 t.redis_timeouts);
    prom_counter(out, "pgstash_bad_entries_total", "Stored entries that failed validation.",
                 t.bad_entries);
    prom_counter(out, "pgstash_protocol_errors_total", "Connections closed for protocol errors.",
                 t.protocol_errors);
    prom_counter(out, "pgstash_upstream_errors_total", "Failed upstream connections.",
                 t.upstream_errors);
    prom_counter(out, "pgstash_server_reuses_total",
                 "Logins served by a kept server connection (limits.server_idle_timeout).",
                 t.server_reuses);
    prom_histogram(out, "pgstash_hit_latency_seconds", "From request to answer, for hits.", ws, n,
                   true);
    prom_histogram(out, "pgstash_miss_latency_seconds",
                   "From request to ReadyForQuery, for misses.", ws, n, false);
    prom_gauge(out, "pgstash_clients", "Client connections open.", atomic_load(&rt.clients));
    prom_gauge(out, "pgstash_servers", "Upstream connections open.", atomic_load(&rt.servers));
    prom_gauge(out, "pgstash_servers_kept",
               "Upstream connections kept for the next client (included in pgstash_servers).",
               atomic_load(&rt.servers_kept));
    prom_counter(out, "pgstash_clients_total", "Client connections accepted.",
                 atomic_load(&rt.clients_total));
    prom_gauge(out, "pgstash_redis_connected_workers", "Workers connected to Redis.",
               store_up_count());

    TableStats *ts[256];
    int nt = n < 256 ? n : 256;
    for (int i = 0; i < nt; i++)
        ts[i] = &ws[i]->tables;
    TableTotals *tt;
    size_t count = tablestats_collect(ts, nt, &tt);
    static const char *const series[] = {"reads", "hits", "misses", "bypasses", "invalidations"};
    for (size_t s = 0; s < sizeof series / sizeof series[0]; s++) {
        prom_line(out, "# HELP pgstash_table_%s_total Per table (the %d busiest).\n"
                       "# TYPE pgstash_table_%s_total counter\n",
                  series[s], PROM_TABLES, series[s]);
        for (size_t i = 0; i < count && i < PROM_TABLES; i++) {
            uint64_t v = s == 0 ? tt[i].reads : s == 1 ? tt[i].hits : s == 2 ? tt[i].misses
                         : s == 3 ? tt[i].bypasses : tt[i].invalidations;
            char label[400];
            size_t k = 0;
            for (const char *p = tt[i].name; *p && k < sizeof label - 3; p++) {
                if (*p == '"' || *p == '\\')
                    label[k++] = '\\';
                label[k++] = *p == '\n' ? ' ' : *p;
            }
            label[k] = 0;
            prom_line(out, "pgstash_table_%s_total{table=\"%s\"} %llu\n", series[s], label,
                      (unsigned long long)v);
        }
    }
    free(tt);
}
