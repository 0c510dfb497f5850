"""
Redis failing under pgstash: killed (SIGKILL) while clients keep reading and writing — zero
client-visible errors, nothing written during the outage ever served stale once Redis is back
(also when Redis comes back from a snapshot holding the old entries and counters), hits
resume; paused (SIGSTOP) longer than cache.redis_timeout — reads and writes still succeed
within bounded latency, then hits resume, never stale. And corrupt or foreign data under an
entry key: a miss counted in bad_entries, the client gets PostgreSQL's answer.
"""

import os
import struct
import threading
import time

import pytest

from cache_helpers import (classify, cleanup, connect3, delta, make_proxy, prefix_of,  # noqa
                           prime, q2, q3, settle)
from helpers import ClientThreads, raw_session
from pgstash_harness import wait_until

pytestmark = [pytest.mark.proxy_only, pytest.mark.timeout(120)]

REDIS_TIMEOUT_MS = 100
LATENCY_BOUND = 3.0   # seconds per statement while Redis is gone (generous: loaded CI boxes)


class Workload(ClientThreads):
    """Client threads through pgstash: a writer that increments a counter and reads it back on
    the same connection (must see exactly its value), a reader on another connection (must
    never see a value older than the last one acknowledged before its read began), and a
    reader of a static table (hits). Every exception and every stale read is recorded."""

    def __init__(self, px, counter, static, ext_px=None):
        self.px = px
        self.ext_px = ext_px or px
        self.counter = counter
        self.static = static
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = 0
        self.errors = []
        self.stale = []
        self.max_latency = 0.0
        self.ops = 0
        self.threads = [threading.Thread(target=self._guard, args=(f,), daemon=True)
                        for f in (self._writer, self._reader, self._static_reader)]

    def _timed(self, fn):
        t0 = time.monotonic()
        r = fn()
        dt = time.monotonic() - t0
        with self.lock:
            self.max_latency = max(self.max_latency, dt)
            self.ops += 1
        return r

    def _guard(self, fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - reported by the test
            with self.lock:
                self.errors.append("%s: %r" % (fn.__name__, e))

    def _writer(self):
        conn = self.px.connect()
        try:
            while not self.stop.is_set():
                v = self._timed(lambda: q2(conn, "UPDATE %s SET n = n + 1 WHERE id = 1 "
                                                 "RETURNING n" % self.counter))[0][0]
                with self.lock:
                    self.acked = v
                got = self._timed(lambda: q2(conn, "SELECT n FROM %s WHERE id = 1"
                                             % self.counter))[0][0]
                if got != v:
                    with self.lock:
                        self.stale.append("writer wrote %d, read back %d" % (v, got))
                time.sleep(0.01)
        finally:
            conn.close()

    def _reader(self):
        with connect3(self.ext_px) as conn:
            while not self.stop.is_set():
                with self.lock:
                    floor = self.acked
                got = self._timed(lambda: q3(conn, "SELECT n FROM %s WHERE id = %%s"
                                             % self.counter, (1,)))[0][0]
                if got < floor:
                    with self.lock:
                        self.stale.append("reader got %d after %d was acknowledged"
                                          % (got, floor))
                time.sleep(0.005)

    def _static_reader(self):
        conn = self.px.connect()
        try:
            while not self.stop.is_set():
                rows = self._timed(lambda: q2(conn, "SELECT * FROM %s ORDER BY id"
                                              % self.static))
                if len(rows) != 20:
                    with self.lock:
                        self.stale.append("static table: %d rows" % len(rows))
                time.sleep(0.005)
        finally:
            conn.close()

    def check(self, what):
        with self.lock:
            assert not self.errors, "%s: client-visible errors: %r" % (what, self.errors[:5])
            assert not self.stale, "%s: stale reads: %r" % (what, self.stale[:5])
            assert self.max_latency < LATENCY_BOUND, \
                "%s: a statement took %.2fs" % (what, self.max_latency)


def make_tables(pg, cleanup):
    counter = cleanup.table("ctr")
    static = cleanup.table("static")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, n int)" % counter)
    pg.sql("INSERT INTO %s VALUES (1, 0)" % counter)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % static)
    pg.sql("INSERT INTO %s SELECT g, 's' || g FROM generate_series(1, 20) g" % static)
    return counter, static


def failure_proxy(pgstash_factory, redis, **kw):
    return make_proxy(pgstash_factory, {"cache": {"redis_timeout": "%dms" % REDIS_TIMEOUT_MS}},
                      redis=redis, **kw)


def wait_hits_resume(px, timeout=30):
    s0 = px.stats()
    return px.wait_stats(lambda s: s["hits"] >= s0["hits"] + 5, timeout=timeout,
                         message="hits to resume")


def test_redis_killed_mid_run(pg, pgstash_factory, redis_factory, cleanup):
    counter, static = make_tables(pg, cleanup)
    rs = redis_factory()
    px = failure_proxy(pgstash_factory, rs)
    wl = Workload(px, counter, static).start()
    try:
        wait_hits_resume(px, timeout=15)
        wl.check("before the kill")
        rs.kill()
        killed_at = time.monotonic()
        before = px.stats()
        acked = wl.acked
        wait_until(lambda: wl.acked >= acked + 20 and time.monotonic() - killed_at > 1.5,
                   timeout=30, message="writes during the outage")
        wl.check("during the outage")
        d = delta(px, before)
        assert d["redis_errors"] + d["redis_timeouts"] + d.get("bypass:redis_unavailable", 0) \
            > 0, "pgstash did not notice Redis was gone: %r" % d
        rs.start()
        s = wait_hits_resume(px)
        acked = wl.acked
        wait_until(lambda: wl.acked >= acked + 20, timeout=30, message="writes after restart")
        wl.check("after Redis came back")
        assert s["hits"] > before["hits"]
    finally:
        wl.finish()
    wl.check("end")
    got = q2(px.connect(), "SELECT n FROM %s WHERE id = 1" % counter)[0][0]
    assert got == pg.sql("SELECT n FROM %s WHERE id = 1" % counter)[0][0] == wl.acked


def test_redis_back_from_snapshot_with_old_entries(pg, pgstash_factory, redis_factory,
                                                   cleanup):
    """Redis restarts from an RDB snapshot taken before the outage: the old entries and the
    old version counters are back. Writes acknowledged during the outage must still never be
    served stale (pgstash bumps the global epoch when Redis comes back, before any hit)."""
    t = cleanup.table("snap")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'old')" % t)
    rs = redis_factory()
    px1 = failure_proxy(pgstash_factory, rs)
    px2 = failure_proxy(pgstash_factory, rs, prefix=prefix_of(px1))
    sql = "SELECT v FROM %s WHERE id = 1" % t
    r1, r2, w = px1.connect(), px2.connect(), px1.connect()
    try:
        prime(px1, lambda: q2(r1, sql))
        prime(px2, lambda: q2(r2, sql))
        assert rs.command("SAVE") == "OK"
        assert os.path.exists(os.path.join(str(rs.dir), "dump.rdb"))
        rs.kill()
        t0 = time.monotonic()
        q2(w, "UPDATE %s SET v = 'new' WHERE id = 1" % t)
        assert time.monotonic() - t0 < LATENCY_BOUND
        assert q2(r1, sql) == [("new",)]
        rs.start()   # same port, same dir: loads dump.rdb
        assert rs.command("DBSIZE") > 0, "the snapshot was not loaded"
        # Through the instance that saw the write: never the old value, and hits resume.
        def fresh_hit():
            got, kind = classify(px1, lambda: q2(r1, sql))
            assert got == [("new",)], "stale %r (%s) through pgstash #1" % (got, kind)
            return kind == "hit"
        wait_until(fresh_hit, timeout=30, interval=0.05, message="hits on pgstash #1")
        # px1 has bumped the epoch (it serves hits again): the other instance is fresh too.
        assert q2(r2, sql) == [("new",)], "stale through pgstash #2"
    finally:
        for c in (r1, r2, w):
            c.close()


def test_redis_paused_longer_than_timeout(pg, pgstash_factory, redis_factory, cleanup):
    counter, static = make_tables(pg, cleanup)
    rs = redis_factory()
    px1 = failure_proxy(pgstash_factory, rs)
    px2 = failure_proxy(pgstash_factory, rs, prefix=prefix_of(px1))
    t = cleanup.table("paused")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'before')" % t)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    r1, r2, w = px1.connect(), px2.connect(), px1.connect()
    # The workload runs on pgstash #2; #1 stays quiet so that its counters tell what each of
    # the test's own reads was.
    prime(px1, lambda: q2(r1, sql))
    prime(px2, lambda: q2(r2, sql))
    wl = Workload(px2, counter, static).start()
    try:
        wait_hits_resume(px2, timeout=15)
        rs.pause()
        try:
            paused_at = time.monotonic()
            t0 = time.monotonic()
            q2(w, "UPDATE %s SET v = 'during pause' WHERE id = 1" % t)
            write_latency = time.monotonic() - t0
            t0 = time.monotonic()
            got = q2(r1, sql)
            read_latency = time.monotonic() - t0
            assert got == [("during pause",)], "stale read during the pause"
            acked = wl.acked
            wait_until(lambda: wl.acked >= acked + 5, timeout=30,
                       message="writes during the pause")
            # Stay paused for well over the timeout.
            while time.monotonic() - paused_at < 1.5:
                time.sleep(0.05)
            wl.check("during the pause")
        finally:
            rs.resume()
        assert write_latency < LATENCY_BOUND and read_latency < LATENCY_BOUND, \
            (write_latency, read_latency)
        s1, s2 = px1.stats(), px2.stats()
        assert s1["redis_timeouts"] + s1["redis_errors"] + s2["redis_timeouts"] + \
            s2["redis_errors"] > 0, (s1, s2)

        def fresh_hit():
            got, kind = classify(px1, lambda: q2(r1, sql))
            assert got == [("during pause",)], "stale %r (%s) after resume" % (got, kind)
            return kind == "hit"
        wait_until(fresh_hit, timeout=30, interval=0.05, message="hits after the pause")
        assert q2(r2, sql) == [("during pause",)], "stale through pgstash #2 after resume"
        wait_hits_resume(px2)
        wl.check("after the pause")
    finally:
        wl.finish()
        for c in (r1, r2, w):
            c.close()
    wl.check("end")


# --- corrupt entries ----------------------------------------------------------------------------

def entry_messages(blob):
    """Offsets of the backend messages in a stored entry (after its 8-byte header)."""
    offs, i = [], 8
    while i + 5 <= len(blob):
        offs.append(i)
        i += 1 + struct.unpack("!i", blob[i + 1:i + 5])[0]
    return offs


def corruptions(orig):
    """(name, bytes) variants of a stored entry that must all fail validation."""
    offs = entry_messages(orig)
    last = offs[-1]
    assert orig[last:last + 1] == b"C", "unexpected entry layout: %r" % orig[:40]
    first = offs[0]
    return [
        ("garbage", b"this is not a pgstash entry \x00\xff" * 3),
        ("empty", b""),
        ("random", os.urandom(max(16, len(orig)))),
        ("truncated_half", orig[:len(orig) // 2]),
        ("truncated_last_byte", orig[:-1]),
        ("bad_magic", b"XXXX" + orig[4:]),
        ("trailing_junk", orig + b"\x00junk"),
        ("header_only", orig[:8]),
        ("ready_for_query_inside", orig[:8] + b"Z\x00\x00\x00\x05I"),
        ("first_length_too_big", orig[:first + 1] + b"\x7f\xff\xff\xff" + orig[first + 5:]),
        ("first_length_negative", orig[:first + 1] + b"\xff\xff\xff\xfe" + orig[first + 5:]),
        ("first_length_below_4", orig[:first + 1] + b"\x00\x00\x00\x02" + orig[first + 5:]),
        ("completion_is_error", orig[:last] + b"E" + orig[last + 1:]),
        ("no_completion", orig[:last]),
        ("ready_for_query_appended", orig + b"Z\x00\x00\x00\x05I"),
    ]


def test_corrupt_entries_are_misses(pg, redis, pgstash_factory, cleanup):
    t = cleanup.table("corrupt")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text, b bytea)" % t)
    pg.sql("INSERT INTO %s SELECT g, 'v' || g, '\\x00ff'::bytea FROM generate_series(1, 30) g"
           % t)
    px = make_proxy(pgstash_factory)
    prefix = prefix_of(px)
    su = pg.superuser
    simple_sql = "SELECT * FROM %s ORDER BY id" % t
    ext_sql = "SELECT * FROM %s WHERE id <= $1 ORDER BY id" % t

    def run_simple(c):
        return c.simple_query(simple_sql)

    def run_ext(c):
        c.parse("", ext_sql, [23])
        c.bind("", "", ["25"], result_formats=[1])
        c.describe("P")
        c.execute()
        c.sync()
        return c.read_until_ready()

    with raw_session(pg, su) as d:
        want = (run_simple(d), run_ext(d))
    with raw_session(px, su) as c:
        assert run_simple(c) == want[0]
        assert run_ext(c) == want[1]
        settle(px)
        assert run_simple(c) == want[0] and run_ext(c) == want[1]
        assert px.stats()["hits"] == 2
        keys = redis.command("KEYS", "%s:e:*" % prefix)
        assert len(keys) == 2, keys
        originals = {k: redis.command("GET", k) for k in keys}
        variants = {k: corruptions(v) for k, v in originals.items()}
        problems = []
        for i in range(len(variants[keys[0]])):
            for k in keys:
                name, blob = variants[k][i]
                redis.command("SET", k, blob, "KEEPTTL")
            before = px.stats()
            for runner, w in ((run_simple, want[0]), (run_ext, want[1])):
                try:
                    got = runner(c)
                except Exception as e:  # noqa: BLE001
                    problems.append("%s: the client got %r" % (name, e))
                    raise AssertionError("\n".join(problems)) from e
                if got != w:
                    problems.append("%s: the client got %r, PostgreSQL sends %r"
                                    % (name, got[:4], w[:4]))
            d = delta(px, before)
            if d["hits"] != 0 or d["misses"] != 2:
                problems.append("%s: expected 2 misses, got %r" % (name, d))
            if d["bad_entries"] != 2:
                problems.append("%s: bad_entries grew by %d, expected 2" % (name,
                                                                            d["bad_entries"]))
            settle(px)
        # Not a string at all (WRONGTYPE from Redis): a miss, not an error.
        for k in keys:
            redis.command("DEL", k)
            redis.command("RPUSH", k, "x")
        before = px.stats()
        assert run_simple(c) == want[0] and run_ext(c) == want[1]
        d = delta(px, before)
        if d["hits"]:
            problems.append("wrongtype: hits %r" % d)
        # The session is still fine, and entries are stored again.
        for k in keys:
            redis.command("DEL", k)
        settle(px)
        assert run_simple(c) == want[0]
        settle(px)
        assert classify(px, lambda: run_simple(c))[1] == "hit"
    assert px.is_running()
    assert not problems, "\n".join(problems)
