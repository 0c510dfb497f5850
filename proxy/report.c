/*
 * report.c — stats aggregation and formatting (log line, JSON, Prometheus).
 */
#include "proxy/report.h"

#include <stdio.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/reasons.h"
#include "proxy/runtime.h"
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
    json_object_set_new(o, "hit_p50_us", json_integer((json_int_t)t.hit_p50_us));
    json_object_set_new(o, "hit_p99_us", json_integer((json_int_t)t.hit_p99_us));
    json_object_set_new(o, "miss_p50_us", json_integer((json_int_t)t.miss_p50_us));
    json_object_set_new(o, "miss_p99_us", json_integer((json_int_t)t.miss_p99_us));
    json_object_set_new(o, "clients", json_integer(atomic_load(&rt.clients)));
    json_object_set_new(o, "servers", json_integer(atomic_load(&rt.servers)));
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

static void prom_counter(ByteWriter *out, const char *name, const char *help, uint64_t v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help,
                     name, name, (unsigned long long)v);
    if (n > 0)
        bw_put(out, line, (size_t)n);
}

static void prom_gauge(ByteWriter *out, const char *name, const char *help, long long v)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s gauge\n%s %lld\n", name, help,
                     name, name, v);
    if (n > 0)
        bw_put(out, line, (size_t)n);
}

void report_prometheus(Worker *const *ws, int n, ByteWriter *out)
{
    StatsTotals t;
    report_totals(ws, n, &t);
    prom_counter(out, "pgstash_hits_total", "Statements answered from the cache.", t.hits);
    prom_counter(out, "pgstash_misses_total", "Cacheable statements sent to PostgreSQL.",
                 t.misses);
    prom_counter(out, "pgstash_fills_total", "Results stored in the cache.", t.fills);
    bw_cstr_raw(out, "# HELP pgstash_bypasses_total Reads not cacheable, by reason.\n"
                     "# TYPE pgstash_bypasses_total counter\n");
    for (int r = 0; r < STATS_MAX_REASONS; r++) {
        if (!t.bypasses[r])
            continue;
        char line[200];
        int k = snprintf(line, sizeof line, "pgstash_bypasses_total{reason=\"%s\"} %llu\n",
                         bypass_reason_name(r), (unsigned long long)t.bypasses[r]);
        if (k > 0)
            bw_put(out, line, (size_t)k);
    }
    prom_counter(out, "pgstash_invalidations_total", "Table versions bumped.", t.invalidations);
    prom_counter(out, "pgstash_redis_errors_total", "Failed Redis commands.", t.redis_errors);
    prom_counter(out, "pgstash_redis_timeouts_total", "Redis replies later than the timeout.",
                 t.redis_timeouts);
    prom_gauge(out, "pgstash_clients", "Client connections open.", atomic_load(&rt.clients));
    prom_gauge(out, "pgstash_servers", "Upstream connections open.", atomic_load(&rt.servers));
}
