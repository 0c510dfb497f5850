"""
Helpers for the query-cache tests (test_cache_*.py): pgstash instances with their own Redis key
prefix, counter deltas read from /stats, "was this read a hit, a miss or a bypass?", and
clean-up of the tables and roles a test creates in the shared PostgreSQL.

Everything here is black-box: it looks at what a client receives and at /stats, never at
pgstash's internals.
"""

import time
import psycopg
import pytest

from helpers import raw_session, unique
from pgstash_harness import deep_merge, wait_until

# Counters compared by delta().
COUNTERS = ("hits", "misses", "fills", "fill_skipped", "bypass_total", "writes",
            "invalidations", "epoch_bumps", "redis_errors", "redis_timeouts", "bad_entries")


def make_proxy(factory, config=None, prefix=None, **kw):
    """A pgstash with debug decision logs and its own Redis key prefix (so that no other test's
    entries or counters can interfere). Pass the same `prefix` to make instances share keys."""
    # redis_timeout: generous, so a loaded test machine does not turn hits into
    # redis_unavailable bypasses; the failure tests set their own.
    base = {"cache": {"key_prefix": prefix or unique("pfx"), "redis_timeout": "2s"},
            "log": {"level": "debug", "stats_interval": "1s"}}
    return factory(deep_merge(base, config or {}), **kw)


def prefix_of(px):
    return px.config["cache"]["key_prefix"]


def connect3(target, **kw):
    """A psycopg 3 connection (extended protocol), autocommit."""
    autocommit = kw.pop("autocommit", True)
    return psycopg.connect(target.dsn(**kw), autocommit=autocommit)


# --- counters ---------------------------------------------------------------------------------

def delta(px, before, after=None):
    """Differences of the numeric counters, plus 'bypass:<reason>' keys for bypasses."""
    after = after or px.stats()
    out = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}
    reasons = set(after.get("bypasses", {})) | set(before.get("bypasses", {}))
    for r in reasons:
        d = after.get("bypasses", {}).get(r, 0) - before.get("bypasses", {}).get(r, 0)
        if d:
            out["bypass:" + r] = d
    return out


def wait_fills(px, n, timeout=5.0):
    """Waits until /stats fills >= n (fills are stored asynchronously after ReadyForQuery)."""
    return px.wait_stats(lambda s: s["fills"] >= n, timeout=timeout,
                         message="fills >= %d" % n)


def settle(px, timeout=3.0):
    """Waits until the reads counted so far have all stored their fills (or were skipped):
    after it, a read on another connection of something just missed is a hit."""
    def done(s):
        return s["fills"] + s["fill_skipped"] >= s["misses"]
    try:
        return px.wait_stats(done, timeout=timeout, message="fills + fill_skipped >= misses")
    except TimeoutError:
        return px.stats()


def classify(px, fn, timeout=5.0):
    """Runs fn() (which must perform exactly one SELECT-like statement) and returns
    (fn's result, kind) where kind is 'hit', 'miss' or 'bypass:<reason>'."""
    before = px.stats()
    result = fn()
    last = {}

    def check():
        d = delta(px, before)
        last.clear()
        last.update(d)
        return d if d["hits"] + d["misses"] + d["bypass_total"] >= 1 else None
    try:
        d = wait_until(check, timeout=timeout, interval=0.01, message="a read to be counted")
    except TimeoutError:
        raise AssertionError("the read was not counted as hit, miss or bypass within %ss; "
                             "deltas %r" % (timeout, last)) from None
    n = d["hits"] + d["misses"] + d["bypass_total"]
    assert n == 1, "expected exactly one read to be counted, got %r" % d
    if d["hits"]:
        return result, "hit"
    if d["misses"]:
        return result, "miss"
    reasons = [k for k in d if k.startswith("bypass:")]
    return result, reasons[0] if reasons else "bypass:?"


def expect(px, fn, kind, timeout=5.0):
    """classify() and assert the kind; returns fn's result."""
    result, got = classify(px, fn, timeout)
    assert got == kind, "expected this read to be a %s, it was a %s" % (kind, got)
    return result


def prime(px, fn, expect_first=None):
    """Makes sure fn's read is cached: a first run (a miss — or already a hit, unless
    expect_first says which), then, after the fill, a run that must be a hit.
    Returns (first result, hit result)."""
    # Right after DDL pgstash re-reads the catalog and reads bypass (catalog_loading) until it
    # has: that is correct, and short — wait it out.
    deadline = time.monotonic() + 10
    while True:
        before = px.stats()
        r1, k1 = classify(px, fn)
        if k1 != "bypass:catalog_loading" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if expect_first:
        assert k1 == expect_first, "first read: expected %s, got %s" % (expect_first, k1)
    else:
        assert k1 in ("miss", "hit"), "first read: expected a miss or a hit, got %s" % k1
    if k1 == "miss":
        wait_fills(px, before["fills"] + 1)
    r2, k2 = classify(px, fn)
    assert k2 == "hit", "identical read after the fill: expected hit, got %s" % k2
    return r1, r2


# --- SQL helpers ------------------------------------------------------------------------------

def q3(conn, sql, params=None, **kw):
    """Executes on a psycopg 3 connection; returns all rows (or None)."""
    cur = conn.cursor(binary=kw.pop("binary", False))
    cur.execute(sql, params, **kw)
    return cur.fetchall() if cur.description else None


def q2(conn, sql, params=None):
    """Executes on a psycopg2 connection (simple protocol); returns all rows (or None)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


def raw_select(target, user, sql, database="test"):
    """One simple query on a fresh raw session: every message from the query to 'Z'."""
    with raw_session(target, user, database) as c:
        out = c.simple_query(sql)
        c.terminate()
        return out


class Cleanup:
    """Collects SQL to run as superuser (directly against PostgreSQL) at teardown, last first."""

    def __init__(self, pg):
        self.pg = pg
        self.stmts = []

    def add(self, sql):
        self.stmts.append(sql)

    def table(self, prefix="t"):
        name = unique(prefix)
        self.add("DROP TABLE IF EXISTS %s CASCADE" % name)
        return name

    def role(self, prefix="r"):
        name = unique(prefix)
        self.add("DROP ROLE IF EXISTS %s" % name)
        self.add("DROP OWNED BY %s CASCADE" % name)   # runs first (reverse order)
        return name

    def run(self):
        errors = []
        for sql in reversed(self.stmts):
            try:
                self.pg.sql(sql)
            except Exception as e:  # noqa: BLE001 - keep cleaning up
                if "does not exist" not in str(e) and "is not a" not in str(e):
                    errors.append("%s: %s" % (sql, e))
        self.stmts.clear()
        return errors


@pytest.fixture
def cleanup(pg):
    c = Cleanup(pg)
    yield c
    errs = c.run()
    assert not errs, "cleanup failed: %r" % errs
