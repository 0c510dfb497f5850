"""
Fault injection on Redis under steady read/write load (issue 6, "Fault injection").

Two pgstash instances in strict mode share one private Redis and the session's PostgreSQL.
The consistency checker of the cache issue (consistency.py: 4 writers, 3 readers per instance,
every read checked offline against every acknowledged write) runs for the whole episode, and
StatementLoad threads time every single statement. In the middle of the run Redis is

  kill      SIGKILLed, left dead for 2 s, started again (empty: no persistence);
  freeze    SIGSTOPped for 2 s (8x cache.redis_timeout), then SIGCONTed, data intact;
  restart   stopped (SIGTERM) and started again at once on the same port.

Asserted for each: no client-visible error anywhere (checker and load threads), zero stale
reads and zero phantoms across the whole episode (strict mode), every statement that started
during the fault finished within the latency bound (one cache.redis_timeout plus the
statement's normal latency: see latency_bound), pgstash noticed (redis errors/timeouts counted), and hits
resume on both instances once Redis is back.

test_slow_redis_*: a DelayProxy in front of a real Redis delays every reply by 200 ms (4x the
50 ms timeout): clients keep being served with their normal latency — statements that never
need Redis are not slowed at all (the event loop never blocks on Redis), cached reads and
writes at most by about one timeout — and no error is seen; when the delay goes away, hits
resume.
"""

import time

import pytest

import consistency as cc
import pgstash_harness as h
from cache_helpers import classify, cleanup, prime, q2  # noqa: F401 (fixture)
from fault_helpers import (CheckerRun, DelayProxy, StatementLoad,
                           make_counter_table)
from helpers import unique

pytestmark = [pytest.mark.proxy_only, pytest.mark.slow]

# 250 ms, not the 50 ms default, for the checker runs: on a loaded 2-core box a 50-100 ms reply
# time is exceeded now and then without any injected fault, and each such spurious timeout of
# a write's bump is an episode of the cross-instance lost-bump window on its own (see
# test_one_slow_redis_link_cross_instance below, which exercises that window on purpose).
# Here the injected faults are what is measured. The slow-Redis tests use the default 50 ms.
REDIS_TIMEOUT_MS = 250
DURATION = 11.0          # checker run per episode (seconds)
FAULT_AT = 3.0           # seconds after the checker started
SLACK = 0.25             # scheduling noise allowed on top of the bound (GIL, 2 cores)


def latency_bound(baseline, timeout_s):
    """A statement during the fault waits at most for one Redis timeout (its lookup, or the
    bump of its write: once a reply is late pgstash drops the connection, and everything
    queued behind it fails open at the same moment) on top of its normal latency. Normal
    latency = 3x the p99 measured on the same threads just before the fault, plus SLACK for
    scheduling noise on a loaded 2-core box."""
    return timeout_s + 3 * baseline + SLACK


def fault_config(prefix, timeout_ms=REDIS_TIMEOUT_MS, extra=None):
    cfg = {"cache": {"consistency": "strict", "default_ttl": "60s", "key_prefix": prefix,
                     "redis_timeout": "%dms" % timeout_ms},
           "log": {"level": "info", "stats_interval": "1s"}}
    return h.deep_merge(cfg, extra or {})


def sum_stats(pxs, key):
    return sum(p.stats().get(key, 0) for p in pxs)


def inject(rs, fault):
    """Runs the fault; returns (start, end) monotonic times of the outage."""
    t0 = time.monotonic()
    if fault == "kill":
        rs.kill()
        time.sleep(2.0)
        rs.start()
    elif fault == "freeze":
        rs.pause()
        try:
            time.sleep(2.0)
        finally:
            rs.resume()
    elif fault == "restart":
        rs.restart()
    else:
        raise ValueError(fault)
    return t0, time.monotonic()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", ["kill", "freeze", "restart"])
def test_redis_fault_under_load(pg, pgstash_factory, redis_factory, capsys, fault):
    rs = redis_factory()
    prefix = unique("flt")
    cfg = fault_config(prefix)
    px1 = pgstash_factory(cfg, redis=rs)
    px2 = pgstash_factory(cfg, redis=rs)
    pxs = [px1, px2]
    load_table = make_counter_table(pg, 8)
    run = CheckerRun(pg, pxs, "fault-redis-%s" % fault, DURATION)
    load = None
    try:
        run.warm()
        load = StatementLoad(pxs, pg.superuser, load_table, 8, threads=2, write_ratio=0.3)
        load.start()
        run.start()
        t0_wall = time.time() - (time.monotonic() - run.t0)
        run.sleep_until(FAULT_AT - 0.3)
        before = {id(p): p.stats() for p in pxs}
        assert sum(before[id(p)]["hits"] for p in pxs) > 0, "no hits before the fault: bad test"
        f0, f1 = inject(rs, fault)
        after_fault = {id(p): p.stats() for p in pxs}
        result = run.join()
        load.finish()
        end = {id(p): p.stats() for p in pxs}
        result.stats_delta = [cc.stats_delta(before[id(p)], end[id(p)]) for p in pxs]

        # -- latency -----------------------------------------------------------------------
        base_stmts = load.window(run.t0 + 0.5, f0)
        base_reads = run.reads_between(run.t0 + 0.5, f0)
        base = sorted([s.dur for s in base_stmts] + [r.end - r.start for r in base_reads])
        baseline_p99 = base[int(len(base) * 0.99) - 1] if base else 0.05
        bound = latency_bound(baseline_p99, REDIS_TIMEOUT_MS / 1000.0)
        during = load.window(f0, f1 + 0.5)
        during_reads = run.reads_between(f0, f1 + 0.5)
        lat = sorted([(s.dur, "load-%s" % s.kind, s.start - run.t0) for s in during]
                     + [(r.end - r.start, "checker-%s" % r.kind, r.start - run.t0)
                        for r in during_reads], reverse=True)
        summary = ("FAULT redis-%s: outage %.2fs; statements during it: %d, slowest %s; "
                   "baseline p99 %.1fms -> bound %.0fms; run started %s; %s"
                   % (fault, f1 - f0, len(lat),
                      ", ".join("%.1fms (%s at %.2fs)" % (d * 1000, k, t) for d, k, t in lat[:3]),
                      baseline_p99 * 1000, bound * 1000,
                      time.strftime("%H:%M:%S", time.gmtime(t0_wall)) + ".%03dZ" % (t0_wall % 1 * 1000),
                      result.summary_line()))
        with capsys.disabled():
            print("\n" + summary, flush=True)

        # -- assertions --------------------------------------------------------------------
        assert not result.errors, "client-visible errors in the checker:\n" + \
            "\n".join(result.errors[:5])
        assert not load.errors, "client-visible errors in the load: %r" % load.errors[:5]
        assert not result.phantoms, "phantom reads:\n" + "\n".join(
            str(v) for v in result.phantoms[:5])
        cross = sum(1 for v in result.stale if not v.same_instance)
        assert not result.stale, (
            "strict mode, Redis %s: %d stale reads across the episode (outage at %.2fs..%.2fs "
            "after the start), %d of them of rows written through the OTHER instance (the "
            "window of test_one_redis_link_bad_cross_instance: an instance not yet reconnected "
            "acknowledges writes without invalidation while the other serves hits):\n%s"
            % (fault, len(result.stale), f0 - run.t0, f1 - run.t0, cross,
               run.describe_stale()))
        assert not load.stale, load.stale[:5]
        assert len(lat) > 20, "the load did not go on during the outage: %s" % summary
        assert lat[0][0] < bound, "a statement took %.0f ms during the outage (bound %.0f ms): %s" \
            % (lat[0][0] * 1000, bound * 1000, summary)
        noticed = sum(end[id(p)]["redis_errors"] + end[id(p)]["redis_timeouts"]
                      - before[id(p)]["redis_errors"] - before[id(p)]["redis_timeouts"]
                      + sum(end[id(p)].get("bypasses", {}).get(k, 0)
                            - before[id(p)].get("bypasses", {}).get(k, 0)
                            for k in end[id(p)].get("bypasses", {}) if "redis" in k)
                      for p in pxs)
        assert noticed > 0, "pgstash did not notice the Redis %s at all" % fault
        for p in pxs:
            gained = end[id(p)]["hits"] - after_fault[id(p)]["hits"]
            assert gained > 20, ("%s: only %d hits after Redis came back (%s): hits did not "
                                 "resume\n%s" % (p, gained, fault, p.log_tail(20)))
        for p in pxs:
            assert p.is_running()
    finally:
        if load is not None:
            load.stop.set()
        pg.sql("DROP TABLE IF EXISTS %s" % run.table)
        pg.sql("DROP TABLE IF EXISTS %s" % load_table)


# --- a slow Redis ---------------------------------------------------------------------------

SLOW_DELAY = 0.2
SLOW_TIMEOUT_MS = 50


@pytest.mark.timeout(120)
def test_slow_redis_never_blocks_the_loop(pg, pgstash_factory, redis_factory, capsys):
    rs = redis_factory()
    proxy = DelayProxy(rs.host, rs.port)
    table = make_counter_table(pg, 8)
    px = pgstash_factory(fault_config(unique("slow"), SLOW_TIMEOUT_MS,
                                      {"redis": "redis://%s:%d/0" % (proxy.host, proxy.port)}),
                         redis=rs)
    # Statements that never touch Redis: a volatile function (bypass, never looked up).
    extra = [("noredis", "SELECT clock_timestamp() IS NOT NULL")]
    load = StatementLoad([px], pg.superuser, table, 8, threads=4, write_ratio=0.3, extra=extra)
    try:
        load.start()
        # Steady state with a fast Redis: hits.
        s0 = px.stats()
        px.wait_stats(lambda s: s["hits"] > s0["hits"] + 50, timeout=20,
                      message="hits with a fast Redis")
        time.sleep(1.0)
        t_slow = time.monotonic()
        proxy.set_delay(SLOW_DELAY)
        time.sleep(4.0)
        t_fast = time.monotonic()
        mid = px.stats()
        proxy.set_delay(0.0)
        # Hits resume once the delay is gone (reconnect back-off is at most 5 s).
        px.wait_stats(lambda s: s["hits"] > mid["hits"] + 50, timeout=20,
                      message="hits to resume after the delay went away")
        t_end = time.monotonic()
        load.finish()

        base = load.window(t_slow - 1.0, t_slow)
        slow_all = load.window(t_slow, t_fast)
        after = load.window(t_fast + 0.5, t_end)
        summ = {k: load.latency_summary(v) for k, v in (
            ("baseline", base), ("slow", slow_all),
            ("slow-noredis", [s for s in slow_all if s.kind == "noredis"]),
            ("slow-cached", [s for s in slow_all if s.kind != "noredis"]),
            ("after", after))}
        text = "SLOW-REDIS delay=%dms timeout=%dms: %s; redis_timeouts +%d" % (
            SLOW_DELAY * 1000, SLOW_TIMEOUT_MS,
            "; ".join("%s n=%d p50=%.1fms p99=%.1fms max=%.1fms" % (
                k, v["n"], v["p50"] * 1000, v["p99"] * 1000, v["max"] * 1000)
                for k, v in summ.items()),
            mid["redis_timeouts"] - s0["redis_timeouts"])
        with capsys.disabled():
            print("\n" + text, flush=True)

        assert proxy.bytes_delayed > 0, "nothing went through the delaying proxy: bad test"
        assert not load.errors, "client-visible errors with a slow Redis: %r" % load.errors[:5]
        assert not load.stale, load.stale[:5]
        assert mid["redis_timeouts"] > s0["redis_timeouts"], \
            "no Redis timeout counted while every reply took %d ms" % (SLOW_DELAY * 1000)
        base_p99 = summ["baseline"]["p99"]
        # Never blocked: statements that need no Redis keep their normal latency, well below
        # the 200 ms a blocking call would cost them.
        nr = summ["slow-noredis"]
        assert nr["n"] > 20, text
        assert nr["max"] < base_p99 + 0.15, ("a statement that needs no Redis took %.0f ms "
                                             "while Redis was slow: the loop blocked (%s)"
                                             % (nr["max"] * 1000, text))
        # Statements that use Redis wait at most for (about) one timeout, never for the reply.
        cached = summ["slow-cached"]
        assert cached["n"] > 50, text
        assert cached["max"] < latency_bound(base_p99, SLOW_TIMEOUT_MS / 1000.0), text
        assert cached["p99"] < SLOW_DELAY, ("p99 of cached statements %.0f ms: they waited for "
                                            "the slow replies (%s)" % (cached["p99"] * 1000, text))
        assert px.is_running()
    finally:
        load.stop.set()
        proxy.stop()
        pg.sql("DROP TABLE IF EXISTS %s" % table)


# --- Redis answering LOADING while it reads a snapshot ---------------------------------------

@pytest.mark.timeout(120)
def test_redis_loading_snapshot_then_hits_resume(pg, pgstash_factory, capsys):
    """Redis is killed and restarted from its snapshot; while it loads the snapshot it
    accepts connections and answers every command with `-LOADING` (here for ~3 s: 3,000 keys
    at 1 ms each). pgstash must fail open meanwhile (no client error) and start serving hits
    again once Redis has loaded, like after any other outage."""
    rs = h.RedisServer(extra_args=["--key-load-delay", "1000",
                                   "--loading-process-events-interval-bytes", "1024"],
                       name="redisload")
    load = None
    table = make_counter_table(pg, 8)
    try:
        rs.start()
        rs.command("EVAL", "for i = 1, 3000 do redis.call('SET', 'filler:' .. i, 'x') end", "0")
        assert rs.command("SAVE") == "OK"
        px = pgstash_factory(fault_config(unique("load")), redis=rs)
        load = StatementLoad([px], pg.superuser, table, 8, threads=2, write_ratio=0.2).start()
        s0 = px.stats()
        px.wait_stats(lambda s: s["hits"] > s0["hits"] + 20, timeout=15, message="hits before")
        rs.kill()
        time.sleep(0.5)
        t_start = time.monotonic()
        rs.start(wait=False)
        # It answers LOADING for a while.
        h.wait_until(lambda: b"LOADING" in _raw_ping(rs), timeout=5,
                     message="Redis to answer LOADING")
        h.wait_until(lambda: _raw_ping(rs).startswith(b"+PONG"), timeout=30,
                     message="Redis to finish loading")
        loaded = time.monotonic() - t_start
        back = px.stats()
        try:
            px.wait_stats(lambda s: s["hits"] > back["hits"] + 20, timeout=20,
                          message="hits to resume after Redis finished loading")
        except TimeoutError as e:
            warns = [l for l in px.log_text().splitlines() if " warn " in l or " error " in l
                     or "redis" in l and " info " in l and "stats" not in l]
            pytest.fail("Redis loaded its snapshot in %.1fs, but pgstash never served a hit "
                        "again (%s)\npgstash's Redis log lines:\n%s"
                        % (loaded, e, "\n".join(warns[-12:])))
        finally:
            load.finish()
        assert not load.errors, load.errors[:5]
        assert not load.stale, load.stale[:5]
    finally:
        if load is not None:
            load.stop.set()
        rs.destroy()
        pg.sql("DROP TABLE IF EXISTS %s" % table)


def _raw_ping(rs):
    import socket as _s
    try:
        with _s.create_connection((rs.host, rs.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(100)
    except OSError:
        return b""


# --- the cross-instance window of a lost bump ----------------------------------------------

def two_instances_one_link(pgstash_factory, rs, link):
    prefix = unique("link")
    cfg = fault_config(prefix, SLOW_TIMEOUT_MS)
    px_a = pgstash_factory(h.deep_merge(cfg, {"redis": "redis://%s:%d/0" % (link.host,
                                                                           link.port)}),
                           redis=rs)
    px_b = pgstash_factory(cfg, redis=rs)
    return px_a, px_b


@pytest.mark.timeout(60)
@pytest.mark.xfail(strict=True, reason=(
    "known limit (docs/CACHING.md, Limits): an instance cut off from a Redis that the others "
    "still reach cannot tell them about its writes; it fails open after cache.redis_timeout. "
    "Closing it needs leases (an instance's writes wait until its lease has lapsed and the "
    "others have stopped serving hits). strict=True: this test says so until that is built."))
@pytest.mark.parametrize("how", ["slow_link", "link_down"])
def test_one_redis_link_bad_cross_instance(pg, pgstash_factory, redis_factory, cleanup, how):
    """Two instances in strict mode share a Redis. Instance A reaches it through a link that
    is either slow (every byte held 300 ms both ways, past A's 50 ms timeout) or down (A is
    disconnected — also what A goes through after any Redis outage until its reconnect
    back-off, up to 5 s, lets it retry, while B may already be back); B is connected
    directly. A write through A is acknowledged without its invalidation (fail open), B keeps
    serving hits. A read through B that starts after the write was acknowledged must not
    return the old row: the issue asks for zero stale reads across Redis episodes, two
    instances sharing the Redis (docs/CACHING.md lists this window under "Limits")."""
    rs = redis_factory()
    link = DelayProxy(rs.host, rs.port)
    px_a, px_b = two_instances_one_link(pgstash_factory, rs, link)
    t = cleanup.table("link")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'old')" % t)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    a, b = px_a.connect(), px_b.connect()
    try:
        assert prime(px_b, lambda: q2(b, sql))[1] == [("old",)]
        if how == "slow_link":
            link.set_delay(0.3, up=0.3)
        else:
            link.cut()
            time.sleep(0.3)        # A notices (its connection is reset)
        t0 = time.monotonic()
        q2(a, "UPDATE %s SET v = 'new' WHERE id = 1" % t)
        acked = time.monotonic() - t0
        got, kind = classify(px_b, lambda: q2(b, sql))
        assert got == [("new",)], (
            "%s: instance A acknowledged an UPDATE after %.0f ms without its invalidation "
            "reaching Redis; instance B then served the old row from the cache (%s)"
            % (how, acked * 1000, kind))
    finally:
        link.stop()
        a.close()
        b.close()
