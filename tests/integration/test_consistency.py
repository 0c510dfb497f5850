"""
Cross-instance consistency of the cache (issue 3): 4 writers update rows and record every
acknowledged value, 8 readers read through two pgstash instances sharing one Redis and one
PostgreSQL, for PGSTASH_CONSISTENCY_SECONDS (default 20 s) per mode. The checker itself is
tests/integration/consistency.py (its docstring explains why it cannot report a false failure).

  strict  any read older than a value acknowledged before the read began fails the test.
  local   stale reads are allowed across instances (docs/CACHING.md, "Consistency modes"):
          their number and the observed staleness bound (max, p99) are reported and must stay
          below PGSTASH_CONSISTENCY_LOCAL_BOUND_MS (default 1000 ms); within one instance the
          guarantee is the same as strict, so a stale read of a row written through the
          reader's own instance fails.

Both modes: no thread may see an error, no read may return a value that was never committed
(rolled back) or not yet written, and each instance must have answered more than
PGSTASH_CONSISTENCY_MIN_HIT_RATIO (default 0.3) of the reads sent to it from the cache.

test_consistency_one_way runs the same with all 4 writers going through instance 0, so that
instance 1 can learn of writes only through Redis (in the layout above each instance also
writes the table and learns the newest table version from its own bumps, which can mask a
broken invalidation channel in local mode). test_checker_catches_stale_reads is the negative
control (writers around pgstash: the checker must report stale reads), test_checker_logic
checks the checker on a hand-made history.

Each run prints one greppable line and writes its full report to
.bench/consistency-<mode>[-one-way].txt:

  CONSISTENCY strict: reads=... hits=... stale=0 max_staleness_ms=0.000 p99_ms=0.000 ...

Knobs (for quick local runs; the defaults are what the issue asks for):
  PGSTASH_CONSISTENCY_SECONDS           run length per mode (default 20)
  PGSTASH_CONSISTENCY_ONE_WAY_SECONDS   run length of the one-way variant (default 8)
  PGSTASH_CONSISTENCY_WRITE_PAUSE_MS    mean pause between a writer's operations (default 50)
  PGSTASH_CONSISTENCY_ROWS              rows in the table (default 12)
  PGSTASH_CONSISTENCY_LOCAL_BOUND_MS    local mode's allowed staleness (default 1000)
  PGSTASH_CONSISTENCY_MIN_HIT_RATIO     hits/reads each instance must reach (default 0.3)
  PGSTASH_CONSISTENCY_REDIS_TIMEOUT     cache.redis_timeout for the run (default 1s)
  PGSTASH_CONSISTENCY_SEED              random seed (default: random, printed)
"""

import os

import pytest

import consistency as cc
import pgstash_harness as h
from helpers import unique

DURATION = cc.env_float("PGSTASH_CONSISTENCY_SECONDS", 20.0)
ONE_WAY_DURATION = cc.env_float("PGSTASH_CONSISTENCY_ONE_WAY_SECONDS", 8.0)
WRITE_PAUSE = cc.env_float("PGSTASH_CONSISTENCY_WRITE_PAUSE_MS", 50.0) / 1000.0
N_ROWS = int(cc.env_float("PGSTASH_CONSISTENCY_ROWS", 12))
LOCAL_BOUND_MS = cc.env_float("PGSTASH_CONSISTENCY_LOCAL_BOUND_MS", 1000.0)
MIN_HIT_RATIO = cc.env_float("PGSTASH_CONSISTENCY_MIN_HIT_RATIO", 0.3)
SEED = os.environ.get("PGSTASH_CONSISTENCY_SEED")
# A Redis reply slower than cache.redis_timeout makes pgstash fail open, and a bump lost that
# way may leave OTHER instances stale (a documented limit, docs/CACHING.md "Limits"). The
# default 50 ms is exceeded now and then on a loaded 2-core machine, so the run uses a longer
# timeout: it measures the consistency guarantee, not the fail-open path.
REDIS_TIMEOUT = os.environ.get("PGSTASH_CONSISTENCY_REDIS_TIMEOUT", "1s")
BENCH_DIR = h.REPO_ROOT / ".bench"


def _warm(target, table):
    """One read through each instance before the clock starts: the first use of a database
    makes pgstash read its catalog, which must not eat into the measured run."""
    import psycopg2
    conn = psycopg2.connect(target.dsn())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for _ in range(3):
                cur.execute("SELECT v FROM %s WHERE id = %%s" % table, (1,))
                cur.fetchone()
    finally:
        conn.close()


def run_checker(pg, pgstash_factory, capsys, mode, label, duration, writer_via=None):
    """Runs the checker in `mode` through two fresh pgstash instances sharing the session's
    Redis and PostgreSQL, prints and saves the report, and asserts everything the issue asks
    for. `label` names the report (CONSISTENCY <label>: ...) and .bench/consistency-<label>.txt."""
    table = unique("kv")
    checker = cc.Checker([], table, label, n_rows=N_ROWS, duration=duration,
                         write_pause=WRITE_PAUSE, seed=int(SEED) if SEED else None,
                         writer_via=writer_via)
    checker.create_table(pg)
    try:
        config = {"cache": {"consistency": mode, "default_ttl": "60s",
                            "redis_timeout": REDIS_TIMEOUT}}
        targets = [pgstash_factory(config), pgstash_factory(config)]
        direct = any(t.is_direct for t in targets)
        checker.targets = targets
        if not direct and mode == "local":
            # Local mode trusts its version map only while subscribed to the invalidation
            # channel; measure it in that state, not in its strict fallback.
            for t in targets:
                h.wait_until(lambda t=t: "subscribed to invalidations" in t.log_text(),
                             timeout=15, message="%s to subscribe to invalidations" % t)
        for t in targets:
            _warm(t, table)
        before = [t.stats() for t in targets] if not direct else []

        res = checker.run()

        if not direct:
            after = [t.stats() for t in targets]
            res.stats_delta = [cc.stats_delta(b, a) for b, a in zip(before, after)]
            for t in targets:
                assert t.is_running(), "pgstash %s died during the run:\n%s" % (t, t.log_tail())
        report = res.report(checker.t0)
        report += ("\nmode=%s seed=%d table=%s rows=%d writers via instances %s "
                   "write_pause_ms=%.1f redis_timeout=%s direct=%s" % (
                       mode, checker.seed, table, N_ROWS,
                       [checker.writer_target(w)[1] for w in range(checker.n_writers)],
                       WRITE_PAUSE * 1000, REDIS_TIMEOUT, direct))
        cc.write_report(BENCH_DIR / ("consistency-%s%s.txt" % (label, "-direct" if direct
                                                                else "")), report)
        with capsys.disabled():     # shown even without -s: the numbers are the point
            print("\n" + report, flush=True)

        # -- assertions ------------------------------------------------------------------------
        assert not res.errors, "client errors during the run:\n" + "\n".join(res.errors)
        assert res.duration >= duration, res.duration
        assert res.writes > 100, "too few writes to mean anything: %d" % res.writes
        assert all(n > 1000 for n in res.per_instance_reads), res.per_instance_reads
        # Writes really collided with reads: every row changed many times.
        assert all(len(log.acked) >= 10 for log in res.rows.values()), \
            {r: len(log.acked) for r, log in res.rows.items()}

        phantoms = res.phantoms
        assert not phantoms, "%d reads returned a value never committed by then:\n%s" % (
            len(phantoms), "\n".join(cc.describe(v, checker.t0) for v in phantoms[:20]))

        stale = res.stale
        if mode == "strict":
            assert not stale, ("strict mode: %d stale reads (a read returned a value older than "
                               "one acknowledged before it began):\n%s" % (
                                   len(stale),
                                   "\n".join(cc.describe(v, checker.t0) for v in stale[:20])))
        else:
            own = [v for v in stale if v.same_instance]
            assert not own, ("local mode: %d stale reads of rows written through the reader's "
                             "own instance (the docs promise strict behaviour there):\n%s" % (
                                 len(own),
                                 "\n".join(cc.describe(v, checker.t0) for v in own[:20])))
            worst = max((v.staleness * 1000.0 for v in stale), default=0.0)
            assert worst < LOCAL_BOUND_MS, (
                "local mode: staleness %.3f ms exceeds the %.0f ms bound (%s):\n%s" % (
                    worst, LOCAL_BOUND_MS, res.summary_line(),
                    "\n".join(cc.describe(v, checker.t0)
                              for v in sorted(stale, key=lambda v: -v.staleness)[:20])))

        if not direct:
            for i, d in enumerate(res.stats_delta):
                n = res.per_instance_reads[i]
                assert d["hits"] > MIN_HIT_RATIO * n, (
                    "instance %d: %d hits for %d reads (< %.0f%%): the cache was not really "
                    "exercised; stats delta %s" % (i, d["hits"], n, MIN_HIT_RATIO * 100, d))
                assert d["redis_errors"] == 0 and d["redis_timeouts"] == 0, (
                    "instance %d: Redis errors/timeouts during the run (cache.redis_timeout=%s): "
                    "pgstash failed open, so the run did not test what it should; %s"
                    % (i, REDIS_TIMEOUT, d))
        return res
    finally:
        pg.sql("DROP TABLE IF EXISTS %s" % table)


@pytest.mark.slow
@pytest.mark.timeout(int(DURATION) + 150)
@pytest.mark.parametrize("mode", ["strict", "local"])
def test_consistency(pg, pgstash_factory, capsys, mode):
    """The issue's checker: 4 writers (2 through each instance), 8 readers (4 per instance)."""
    run_checker(pg, pgstash_factory, capsys, mode, mode, DURATION)


@pytest.mark.slow
@pytest.mark.timeout(int(ONE_WAY_DURATION) + 150)
@pytest.mark.parametrize("mode", ["strict", "local"])
def test_consistency_one_way(pg, pgstash_factory, capsys, mode):
    """All 4 writers through instance 0, readers through both. In the layout above every
    instance also writes the table and so learns its newest version from its own bumps; here
    instance 1 learns of writes only through Redis (strict: the versions confirmed with each
    lookup; local: the invalidation channel), so a broken channel cannot hide."""
    run_checker(pg, pgstash_factory, capsys, mode, mode + "-one-way", ONE_WAY_DURATION,
                writer_via=[0, 0, 0, 0])


@pytest.mark.proxy_only
@pytest.mark.timeout(90)
def test_checker_catches_stale_reads(pg, pgstash_factory):
    """Negative control: the same workload with the writers going around pgstash, straight to
    PostgreSQL (a documented limit: such writes are caught only by TTL). The checker must see
    stale reads here, or a zero in the test above would prove nothing."""
    table = unique("kvneg")
    checker = cc.Checker([], table, "negative-control", n_rows=N_ROWS, duration=3.0,
                         write_pause=WRITE_PAUSE)
    checker.create_table(pg)
    try:
        config = {"cache": {"consistency": "strict", "default_ttl": "60s",
                            "redis_timeout": REDIS_TIMEOUT}}
        targets = [pgstash_factory(config), pgstash_factory(config)]
        checker.targets = targets
        checker.writer_via = [h.DirectTarget(pg)] * checker.n_writers
        for t in targets:
            _warm(t, table)
        res = checker.run()
        print("\n" + res.summary_line())
        assert not res.errors, "\n".join(res.errors)
        assert len(res.stale) > 100, res.summary_line()
        assert not res.phantoms, cc.describe(res.phantoms[0], checker.t0)
        text = cc.describe(res.stale[0], checker.t0)
        for part in ("STALE row=", "expected>=", "read start=", "acknowledged at",
                     "reader instance=", "kind="):
            assert part in text, text
    finally:
        pg.sql("DROP TABLE IF EXISTS %s" % table)


def test_checker_logic():
    """check() on a hand-made history (no servers)."""
    log = cc.RowLog(owner_instance=1)
    # value k sent at 10k - 2, acknowledged at 10k (k = 1..5); 10**12+7 rolled back.
    log.sent = [10.0 * k - 2 for k in range(1, 6)]
    log.acked = [10.0 * k for k in range(1, 6)]
    log.rolled_back = {10 ** 12 + 7}
    rows = {1: log}
    R = cc.Read
    reads = [
        R(1, 0, 5.0, 6.0, 0, "x"),      # before any ack: fine
        R(1, 0, 10.0, 11.0, 0, "x"),    # starts exactly at ack 1: not "after", fine
        R(1, 1, 8.5, 9.0, 0, "x"),      # value 1 sent at 8, not yet acked: fine (in flight)
        R(1, 2, 25.0, 26.0, 0, "x"),    # acks 1, 2 before start: fine
        R(1, 3, 25.0, 26.0, 0, "x"),    # value 3 sent at 28 > end 26: phantom
        R(1, 1, 35.0, 36.0, 1, "y"),    # >= 3 expected: stale by 35 - ack(2) = 15
        R(1, 10 ** 12 + 7, 1.0, 2.0, 0, "z"),   # rolled back: phantom
        R(1, 9, 1.0, 2.0, 0, "z"),      # never written: phantom
        R(1, 5, 60.0, 61.0, 0, "x"),    # latest: fine
    ]
    v = cc.check(rows, reads)
    kinds = [(x.what, x.read.value) for x in v]
    assert kinds == [("phantom", 3), ("stale", 1), ("phantom", 10 ** 12 + 7), ("phantom", 9)], v
    stale = v[1]
    assert stale.expected_min == 3 and stale.staleness == 15.0 and stale.lag_to_bound == 5.0
    assert stale.same_instance and stale.writer_instance == 1
