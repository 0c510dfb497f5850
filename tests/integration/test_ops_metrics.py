"""
HTTP on admin.listen, through curl: GET /metrics in the Prometheus text format (parsed
strictly, counters that move with traffic, a consistent latency histogram, per-table series
bounded to the 50 busiest tables, escaped label values), GET /stats (JSON, same numbers),
GET /healthz (200 "postgres ok, redis ok"; 503 naming Redis or PostgreSQL while either is
down, 200 again when it is back — checked every ~2 s, so polled), and the odd requests
(404, 405, HEAD, query strings), none of them blocked by busy clients.
"""

import json
import re
import threading
import time

import pytest

from helpers import unique
from ops_helpers import (PromError, curl, curl_fail_exit, expect,  # noqa: F401
                         metrics, new_table, ops_proxy, parse_prometheus, q2, sample, settle,
                         sqlcleanup)
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only

REQUIRED = {
    "pgstash_hits_total": "counter",
    "pgstash_misses_total": "counter",
    "pgstash_bypasses_total": "counter",
    "pgstash_invalidations_total": "counter",
    "pgstash_redis_errors_total": "counter",
    "pgstash_hit_latency_seconds": "histogram",
    "pgstash_table_hits_total": "counter",
}


# --- the parser itself (so a lenient parser cannot make the real tests pass) ---------------------

@pytest.mark.parametrize("text", [
    "foo_total 1\n",                                                   # no TYPE
    "# TYPE foo_total counter\nfoo_total{a=\"x} 1\n",                  # unterminated label
    "# TYPE foo_total counter\nfoo_total{a=\"\\q\"} 1\n",              # bad escape
    "# TYPE foo_total counter\nfoo_total 1\nfoo_total 2\n",            # duplicate series
    "# TYPE foo counter\nfoo 1\n",                                     # counter not *_total
    "# TYPE foo_total counter\nfoo_total -1\n",                        # negative counter
    "# TYPE foo_total counter\nfoo_total one\n",                       # bad value
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  # no +Inf
    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    "# TYPE a_total counter\na_total 1\n# TYPE b_total counter\nb_total 1\na_total{x=\"1\"} 1\n",
    "# TYPE foo_total counter\nfoo_total 1",                           # no final newline
])
def test_parser_rejects_bad_expositions(text):
    with pytest.raises(PromError):
        parse_prometheus(text)


def test_parser_accepts_good_exposition():
    fams = parse_prometheus(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{t=\"x\\\"y\\\\z\\n\"} 3\n"
        "# TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\n"
        "h_count 2\n# TYPE g gauge\ng -1.5e3\n")
    assert sample(fams, "a_total", t='x"y\\z\n') == 3
    assert sample(fams, "h", "h_count") == 2 and sample(fams, "g") == -1500


# --- /metrics ------------------------------------------------------------------------------

def test_metrics_exposition_and_required_families(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    status, headers, body = curl(px, "/metrics")
    assert status == 200
    assert headers.get("content-type", "").startswith("text/plain"), headers
    assert "version=0.0.4" in headers.get("content-type", ""), headers
    fams = parse_prometheus(body)
    for name, typ in REQUIRED.items():
        assert name in fams, "/metrics has no %s family: %s" % (name, sorted(fams))
        assert fams[name]["type"] == typ, (name, fams[name]["type"])
        assert fams[name]["help"], "%s has no HELP text" % name
    for name in fams:
        assert name.startswith("pgstash_"), "unprefixed metric %s" % name
    assert sample(fams, "pgstash_hits_total") == 0
    # HEAD: the same headers, no body.
    status, headers, body = curl(px, "/metrics", method="HEAD")
    assert status == 200 and body == "", (status, body[:100])


def test_metrics_move_with_traffic(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "met")
    px = ops_proxy(pgstash_factory)
    m0 = metrics(px)
    c = px.connect()
    try:
        sql = "SELECT * FROM %s ORDER BY id" % t
        expect(px, lambda: q2(c, sql), "miss")
        settle(px)
        expect(px, lambda: q2(c, sql), "hit")
        expect(px, lambda: q2(c, sql), "hit")
        expect(px, lambda: q2(c, "SELECT id, random() FROM %s" % t), "bypass:volatile_function")
        expect(px, lambda: q2(c, "SELECT * FROM pg_class LIMIT 1"), "bypass:system_catalog")
        q2(c, "UPDATE %s SET v = 'x' WHERE id = 1" % t)
        expect(px, lambda: q2(c, sql), "miss")
        settle(px)
    finally:
        c.close()
    m1 = metrics(px)

    def d(family, sample_name=None, **labels):
        return ((sample(m1, family, sample_name, **labels) or 0)
                - (sample(m0, family, sample_name, **labels) or 0))
    assert d("pgstash_hits_total") == 2
    assert d("pgstash_misses_total") == 2
    assert d("pgstash_bypasses_total", reason="volatile_function") == 1
    assert d("pgstash_bypasses_total", reason="system_catalog") == 1, \
        [s for s in m1["pgstash_bypasses_total"]["samples"]]
    assert d("pgstash_invalidations_total") >= 1
    assert d("pgstash_redis_errors_total") == 0
    # Every bypass series carries a reason, and the total of them is the bypass count.
    for s, labels, v in m1["pgstash_bypasses_total"]["samples"]:
        assert set(labels) == {"reason"} and re.fullmatch(r"[a-z_]+", labels["reason"]), labels
    # The hit histogram counted exactly the hits, with plausible latencies.
    h = "pgstash_hit_latency_seconds"
    assert d(h, h + "_count") == 2
    assert 0 < d(h, h + "_sum") < 2, d(h, h + "_sum")
    assert sample(m1, h, h + "_bucket", le="+Inf") == sample(m1, h, h + "_count")
    # Per-table series.
    table = "test." + t
    assert sample(m1, "pgstash_table_hits_total", table=table) == 2, \
        [x for x in m1["pgstash_table_hits_total"]["samples"]][:5]
    # /stats says the same as /metrics.
    status, headers, body = curl(px, "/stats")
    assert status == 200 and headers.get("content-type", "").startswith("application/json")
    js = json.loads(body)
    assert js["hits"] == sample(m1, "pgstash_hits_total")
    assert js["misses"] == sample(m1, "pgstash_misses_total")
    assert js["invalidations"] == sample(m1, "pgstash_invalidations_total")
    assert js["bypasses"].get("volatile_function") == \
        sample(m1, "pgstash_bypasses_total", reason="volatile_function")


def test_table_labels_bounded_and_escaped(pgstash_factory, pg, sqlcleanup):
    n = 60
    base = unique("card")
    names = ["%s_%02d" % (base, i) for i in range(n)]
    pg.sql("DO $$ BEGIN FOR i IN 0..%d LOOP EXECUTE format("
           "'CREATE TABLE %%I (id int PRIMARY KEY)', '%s_' || lpad(i::text, 2, '0')); "
           "END LOOP; END $$" % (n - 1, base))
    for name in names:
        sqlcleanup.append(("DROP TABLE IF EXISTS %s" % name, None))
    odd = 'Odd"Name\\%s' % base[-4:]            # a quote and a backslash, case kept
    pg.sql('CREATE TABLE "%s" (id int)' % odd.replace('"', '""'))
    sqlcleanup.append(('DROP TABLE IF EXISTS "%s"' % odd.replace('"', '""'), None))
    px = ops_proxy(pgstash_factory)
    c = px.connect()
    try:
        # The odd table is read most, so it is among the 50 busiest.
        for _ in range(3):
            q2(c, 'SELECT * FROM "%s"' % odd.replace('"', '""'))
        for name in names:
            q2(c, "SELECT * FROM %s" % name)
        px.wait_stats(lambda s: s["hits"] + s["misses"] + s["bypass_total"] >= n + 3,
                      message="all reads counted")
    finally:
        c.close()
    status, _, body = curl(px, "/metrics")
    fams = parse_prometheus(body)       # label escaping must parse
    for fam in [f for f in fams if f.startswith("pgstash_table_")]:
        samples = fams[fam]["samples"]
        assert len(samples) <= 50, "%s has %d series: labels must stay bounded" % (fam,
                                                                                  len(samples))
        for _, labels, _ in samples:
            assert set(labels) == {"table"}, labels
    series = fams["pgstash_table_hits_total"]["samples"]
    assert len(series) == 50, "expected the 50 busiest tables, got %d" % len(series)
    tables = {labels["table"] for _, labels, _ in series}
    assert "test." + odd in tables, "the busiest table (an odd name) is missing or mangled: %r" \
        % sorted(x for x in tables if "Odd" in x)
    reads = sample(fams, "pgstash_table_reads_total", table="test." + odd)
    assert reads == 3, reads
    # The whole exposition stays small, whatever the number of tables.
    total = sum(len(f["samples"]) for f in fams.values())
    assert total < 50 * 6 + 100, total


def test_metrics_and_healthz_answer_while_clients_are_busy(pgstash_factory, pg):
    px = ops_proxy(pgstash_factory)
    conns = [px.connect() for _ in range(4)]
    threads = [threading.Thread(target=q2, args=(c, "SELECT pg_sleep(2)")) for c in conns]
    for th in threads:
        th.start()
    try:
        wait_until(lambda: len(pg.backend_pids(state="active", query="SELECT pg_sleep(2)")) == 4,
                   timeout=10, message="4 busy backends")
        for path in ("/metrics", "/healthz", "/stats"):
            t0 = time.monotonic()
            status, _, _ = curl(px, path)
            assert status == 200 and time.monotonic() - t0 < 1.0, (path, status)
    finally:
        for th in threads:
            th.join(10)
        for c in conns:
            c.close()


def test_http_odd_requests(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    assert curl(px, "/no/such/page")[0] == 404
    assert curl(px, "/metrics", method="POST")[0] == 405
    assert curl(px, "/metrics?format=text")[0] == 200
    assert curl(px, "/healthz?verbose=1")[0] == 200
    json.loads(curl(px, "/stats")[2])
    assert px.is_running()


# --- /healthz ------------------------------------------------------------------------------

def healthz(px):
    status, _, body = curl(px, "/healthz")
    return status, body.strip()


def wait_health(px, want, timeout=15):
    last = []

    def check():
        st, body = healthz(px)
        last[:] = [st, body]
        return (st, body) if st == want else None
    try:
        return wait_until(check, timeout=timeout, interval=0.2,
                          message="/healthz %d" % want)
    except TimeoutError:
        raise AssertionError("/healthz never answered %d within %ss; last: %r"
                             % (want, timeout, last)) from None


def test_healthz_follows_redis(pgstash_factory, redis_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "hz")
    redis = redis_factory()
    px = ops_proxy(pgstash_factory, redis=redis)
    st, body = wait_health(px, 200)
    assert body == "postgres ok, redis ok", body
    assert curl_fail_exit(px, "/healthz") == 0
    workers = px.config["workers"]
    assert sample(metrics(px), "pgstash_redis_connected_workers") == workers
    m0 = metrics(px)
    redis.stop()
    st, body = wait_health(px, 503)
    assert "redis" in body.lower() and "redis ok" not in body, body
    assert "postgres ok" in body, "PostgreSQL is fine, only Redis is down: %r" % body
    assert curl_fail_exit(px, "/healthz") == 22, "curl -f must fail on 503 (Docker healthcheck)"
    # Clients are still answered (fail open), and the metrics say why nothing is cached.
    c = px.connect()
    try:
        for _ in range(3):
            assert q2(c, "SELECT id FROM %s WHERE id = 1" % t) == [(1,)]
    finally:
        c.close()
    wait_until(lambda: sample(metrics(px), "pgstash_redis_connected_workers") == 0,
               timeout=10, message="pgstash_redis_connected_workers 0")
    m1 = metrics(px)
    moved = ((sample(m1, "pgstash_redis_errors_total") or 0)
             - (sample(m0, "pgstash_redis_errors_total") or 0)
             + (sample(m1, "pgstash_bypasses_total", reason="redis_unavailable") or 0)
             - (sample(m0, "pgstash_bypasses_total", reason="redis_unavailable") or 0))
    assert moved >= 3, "3 reads with Redis down moved neither redis_errors nor " \
        "bypasses{reason=redis_unavailable}"
    redis.start()
    st, body = wait_health(px, 200)
    assert body == "postgres ok, redis ok", body
    wait_until(lambda: sample(metrics(px), "pgstash_redis_connected_workers") == workers,
               timeout=20, message="workers reconnected to Redis")


def test_healthz_follows_postgres(pgstash_factory, pg_factory):
    pgp = pg_factory()
    px = ops_proxy(pgstash_factory, pg=pgp)
    wait_health(px, 200)
    pgp.stop()
    st, body = wait_health(px, 503)
    assert "postgres" in body.lower() and "postgres ok" not in body, body
    assert str(pgp.port) in body, "the reason names the upstream address: %r" % body
    assert "redis ok" in body, body
    pgp.start()
    st, body = wait_health(px, 200)
    assert body == "postgres ok, redis ok", body
    c = px.connect()
    assert q2(c, "SELECT 1") == [(1,)]
    c.close()


def test_health_pings_leave_postgres_log_clean(pgstash_factory, pg_factory):
    """The ~2 s upstream ping logs in as the catalog reader (a role that exists), named
    pgstash-health: pinging as the OS user running pgstash made PostgreSQL log
    'FATAL: role "root" does not exist' every two seconds."""
    pgp = pg_factory()
    px = ops_proxy(pgstash_factory, pg=pgp)
    wait_health(px, 200)
    marker = "application_name=pgstash-health"
    wait_until(lambda: pgp.log_text().count(marker) >= 2, timeout=10,
               message="two health pings in PostgreSQL's log")
    fatal = [line for line in pgp.log_text().splitlines() if "FATAL" in line]
    assert not fatal, fatal[:3]
