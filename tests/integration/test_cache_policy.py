"""
What is cached and for how long: per-table TTL (expires: a read after it is a miss again),
default_ttl, the smallest TTL of a join, `cache: false` / `ttl: 0` never stored; results that
PostgreSQL computes anew each time — now(), random(), nextval(), clock_timestamp(),
CURRENT_TIMESTAMP, current_user, 'now' literals and parameters, stable user functions — never
cached (two reads differ, bypass with the right reason); SELECT … FOR UPDATE/SHARE never cached
(and really takes its locks); system catalogs and information_schema never cached; other
non-cacheable shapes (multi-statement, TABLESAMPLE, unlogged tables, row limits).
"""

import time

import psycopg2
import pytest

from cache_helpers import (classify, cleanup, connect3, delta, expect, make_proxy,  # noqa: F401
                           prefix_of, prime, q2, q3, settle, wait_fills)
from helpers import raw_session
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def make_kv(pg, cleanup, prefix="pol", rows=3):
    t = cleanup.table(prefix)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g" % (t, rows))
    return t


def entry_keys(redis, px):
    return set(redis.command("KEYS", "%s:e:*" % prefix_of(px)) or [])


def new_entry_ttl(redis, px, before_keys, fn):
    """Runs fn (a miss that fills), returns the PTTL in ms of the one entry it stored."""
    s = px.stats()
    fn()
    wait_fills(px, s["fills"] + 1)
    new = entry_keys(redis, px) - before_keys
    assert len(new) == 1, "expected one new entry key, got %r" % new
    return redis.command("PTTL", new.pop())


# --- TTL ----------------------------------------------------------------------------------------

def test_table_ttl_expires(pg, redis, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "short")
    px = make_proxy(pgstash_factory, {"tables": {t: {"ttl": "1s"}}})
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect()
    try:
        t0 = time.monotonic()
        keys = entry_keys(redis, px)
        pttl = new_entry_ttl(redis, px, keys, lambda: expect(px, lambda: q2(c, sql), "miss"))
        assert 0 < pttl <= 1000, "entry of a ttl: 1s table has PTTL %r ms" % pttl
        _, k = classify(px, lambda: q2(c, sql))
        if time.monotonic() - t0 < 0.7:
            assert k == "hit", k
        # Poll: after the TTL the read is a miss again (and only after it).
        kinds = []

        def expired():
            res, kind = classify(px, lambda: q2(c, sql))
            assert res == [(1, "v1"), (2, "v2"), (3, "v3")]
            kinds.append(kind)
            return kind == "miss"
        wait_until(expired, timeout=10, interval=0.05, message="the entry to expire")
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.9, "entry gone after %.2fs, TTL is 1s" % elapsed
        assert set(kinds[:-1]) <= {"hit"}, kinds
        # A change made behind pgstash's back (direct to PostgreSQL) shows after the TTL.
        settle(px)
        pg.sql("UPDATE %s SET v = 'direct' WHERE id = 1" % t)
        wait_until(lambda: q2(c, sql)[0] == (1, "direct"), timeout=10, interval=0.05,
                   message="the direct write to show after the TTL")
    finally:
        c.close()


def test_default_ttl_and_smallest_ttl_of_join(pg, redis, pgstash_factory, cleanup):
    plain = make_kv(pg, cleanup, "dflt")
    long_ = make_kv(pg, cleanup, "long")
    px = make_proxy(pgstash_factory, {"cache": {"default_ttl": "3s"},
                                      "tables": {long_: {"ttl": "10m"}}})
    c = px.connect()
    try:
        keys = entry_keys(redis, px)
        pttl = new_entry_ttl(redis, px, keys, lambda: q2(c, "SELECT * FROM %s" % plain))
        assert 1000 < pttl <= 3000, "default_ttl 3s: PTTL %r" % pttl
        keys = entry_keys(redis, px)
        pttl = new_entry_ttl(redis, px, keys, lambda: q2(c, "SELECT * FROM %s" % long_))
        assert 500000 < pttl <= 600000, "ttl 10m: PTTL %r" % pttl
        keys = entry_keys(redis, px)
        pttl = new_entry_ttl(redis, px, keys, lambda: q2(
            c, "SELECT * FROM %s JOIN %s USING (id)" % (plain, long_)))
        assert 1000 < pttl <= 3000, "join: the smallest TTL (3s) must win, PTTL %r" % pttl
    finally:
        c.close()


def test_default_ttl_zero_caches_only_tables_with_a_ttl(pg, pgstash_factory, cleanup):
    plain = make_kv(pg, cleanup, "zero")
    some = make_kv(pg, cleanup, "some")
    px = make_proxy(pgstash_factory, {"cache": {"default_ttl": 0},
                                      "tables": {some: {"ttl": "1m"}}})
    c = px.connect()
    try:
        before = px.stats()
        for _ in range(3):
            assert classify(px, lambda: q2(c, "SELECT * FROM %s" % plain))[1].startswith(
                "bypass:")
        assert delta(px, before)["fills"] == 0
        prime(px, lambda: q2(c, "SELECT * FROM %s" % some))
    finally:
        c.close()


@pytest.mark.parametrize("rule", [{"cache": False}, {"ttl": 0}], ids=["cache_false", "ttl_0"])
def test_table_not_cached_never_stored(pg, redis, pgstash_factory, cleanup, rule):
    t = make_kv(pg, cleanup, "nocache")
    other = make_kv(pg, cleanup, "other")
    px = make_proxy(pgstash_factory, {"tables": {t: rule}})
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect()
    try:
        before = px.stats()
        keys = entry_keys(redis, px)
        for i in range(3):
            assert expect(px, lambda: q2(c, sql), "bypass:table_not_cached")[0] == \
                (1, "v1" if i == 0 else "d%d" % (i - 1))
            pg.sql("UPDATE %s SET v = 'd%d' WHERE id = 1" % (t, i))   # behind pgstash's back
        # A join with it, and the extended protocol: not stored either.
        expect(px, lambda: q2(c, "SELECT * FROM %s JOIN %s USING (id)" % (t, other)),
               "bypass:table_not_cached")
        with connect3(px) as c3:
            expect(px, lambda: q3(c3, "SELECT * FROM %s WHERE id = %%s" % t, (1,)),
                   "bypass:table_not_cached")
        d = delta(px, before)
        assert d["fills"] == 0 and d["hits"] == 0, d
        assert entry_keys(redis, px) == keys, "an entry was stored for a non-cached table"
        tables = {x["table"]: x for x in px.stats()["tables"]}
        assert tables["test." + t]["hits"] == 0
        # The other table is cached as usual.
        prime(px, lambda: q2(c, "SELECT * FROM %s" % other))
    finally:
        c.close()


# --- results that change by themselves ----------------------------------------------------------

def volatile_cases(t, seq, fn):
    return [
        ("now", "SELECT id, now() FROM %s WHERE id = 1" % t, "volatile_function", True),
        ("random", "SELECT id, random() FROM %s WHERE id = 1" % t, "volatile_function", True),
        ("nextval", "SELECT id, nextval('%s') FROM %s WHERE id = 1" % (seq, t),
         "volatile_function", True),
        ("clock_timestamp", "SELECT clock_timestamp() FROM %s WHERE id = 1" % t,
         "volatile_function", True),
        ("current_timestamp", "SELECT id, CURRENT_TIMESTAMP FROM %s WHERE id = 1" % t,
         "sql_value_function", True),
        ("localtimestamp", "SELECT LOCALTIMESTAMP(6) FROM %s" % t, "sql_value_function", True),
        ("current_user", "SELECT current_user FROM %s WHERE id = 1" % t,
         "sql_value_function", False),
        ("now_literal", "SELECT id, 'now'::timestamptz FROM %s WHERE id = 1" % t,
         "time_literal", True),
        ("today_literal", "SELECT * FROM %s WHERE date 'today' > '2000-01-01'" % t,
         "time_literal", False),
        ("now_in_where", "SELECT id FROM %s WHERE now() > '2000-01-01'" % t,
         "volatile_function", False),
        ("current_setting", "SELECT current_setting('application_name') FROM %s" % t,
         "volatile_function", False),
        ("user_stable_function", "SELECT %s(id) FROM %s WHERE id = 1" % (fn, t),
         "non_immutable_function", True),
        ("txid", "SELECT txid_current() FROM %s WHERE id = 1" % t, "volatile_function", True),
    ]


def test_time_and_volatile_functions_never_cached(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "vol")
    seq = t + "_seq"
    fn = t + "_stable"
    cleanup.add("DROP SEQUENCE IF EXISTS %s" % seq)
    cleanup.add("DROP FUNCTION IF EXISTS %s(int)" % fn)
    pg.sql("CREATE SEQUENCE %s" % seq)
    pg.sql("CREATE FUNCTION %s(i int) RETURNS text STABLE LANGUAGE sql AS "
           "$$ SELECT i || ' ' || clock_timestamp()::text $$" % fn)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    problems = []
    try:
        for name, sql, reason, differs in volatile_cases(t, seq, fn):
            before = px.stats()
            r1, k1 = classify(px, lambda: q2(c, sql))
            time.sleep(0.002)  # so that two clock readings differ
            settle(px)
            r2, k2 = classify(px, lambda: q2(c, sql))
            d = delta(px, before)
            if differs and r1 == r2:
                problems.append("%s: two reads returned the same %r (%s, %s)" % (name, r1, k1,
                                                                                 k2))
            if (k1, k2) != ("bypass:" + reason,) * 2:
                problems.append("%s: %r, expected bypass:%s twice" % (name, (k1, k2), reason))
            if d["fills"] or d["hits"]:
                problems.append("%s: stored or served from the cache: %r" % (name, d))
    finally:
        c.close()
    assert not problems, "\n".join(problems)


def test_now_parameter_never_cached(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "param")
    px = make_proxy(pgstash_factory)
    with connect3(px) as c:
        sql = "SELECT id, %s::timestamptz FROM " + t + " WHERE id = 1"
        r1 = expect(px, lambda: q3(c, sql, ("now",)), "bypass:param_time_literal")
        time.sleep(0.002)
        settle(px)
        r2 = expect(px, lambda: q3(c, sql, ("now",)), "bypass:param_time_literal")
        assert r1 != r2
        # An ordinary timestamp parameter is cached.
        prime(px, lambda: q3(c, sql, ("2024-01-01 00:00:00+00",)))


@pytest.mark.parametrize("clause", ["FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE",
                                    "FOR KEY SHARE", "FOR UPDATE SKIP LOCKED"])
def test_locking_reads_never_cached_and_really_lock(pg, pgstash_factory, cleanup, clause):
    t = make_kv(pg, cleanup, "lock")
    px = make_proxy(pgstash_factory)
    plain = "SELECT * FROM %s WHERE id = 1" % t
    locking = plain + " " + clause
    a = px.connect()
    d = pg.connect()
    try:
        prime(px, lambda: q2(a, plain))
        before = px.stats()
        q2(a, "BEGIN")
        assert expect(px, lambda: q2(a, locking), "bypass:locking") == [(1, "v1")]
        assert expect(px, lambda: q2(a, locking), "bypass:locking") == [(1, "v1")]
        # The row lock is really held: a direct FOR UPDATE NOWAIT conflicts with every mode.
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            q2(d, "SELECT * FROM %s WHERE id = 1 FOR UPDATE NOWAIT" % t)
        q2(a, "COMMIT")
        assert q2(d, "SELECT * FROM %s WHERE id = 1 FOR UPDATE NOWAIT" % t) == [(1, "v1")]
        dd = delta(px, before)
        assert dd["hits"] == 0 and dd["fills"] == 0, dd
        # Extended protocol too.
        with connect3(px) as c3:
            expect(px, lambda: q3(c3, "SELECT * FROM %s WHERE id = %%s %s" % (t, clause), (2,)),
                   "bypass:locking")
    finally:
        a.close()
        d.close()


@pytest.mark.parametrize("sql", [
    "SELECT count(*) FROM pg_class WHERE relname LIKE '{t}%'",
    "SELECT count(*) FROM pg_catalog.pg_class WHERE relname LIKE '{t}%'",
    "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '{t}%'",
    "SELECT count(*) FROM pg_class c JOIN {t} x ON x.id = 1 WHERE c.relname LIKE '{t}%'",
    "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{t}%'",
], ids=["pg_class", "pg_catalog.pg_class", "information_schema", "join_with_table",
        "pg_stat_activity"])
def test_system_catalogs_never_cached(pg, pgstash_factory, cleanup, sql):
    t = make_kv(pg, cleanup, "cat")
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = sql.format(t=t)
    try:
        before = px.stats()
        first = expect(px, lambda: q2(c, sql), "bypass:system_catalog")
        # Change what the catalog says, behind pgstash's back: the next read shows it.
        pg.sql("CREATE TABLE %s_y (id int)" % t)
        cleanup.add("DROP TABLE IF EXISTS %s_y" % t)
        second = expect(px, lambda: q2(c, sql), "bypass:system_catalog")
        if "pg_stat_activity" not in sql:
            assert second[0][0] == first[0][0] + 1, (first, second)
        d = delta(px, before)
        assert d["fills"] == 0 and d["hits"] == 0, d
    finally:
        c.close()


def test_other_shapes_never_cached(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "shape", rows=50)
    unl = cleanup.table("unl")
    pg.sql("CREATE UNLOGGED TABLE %s (id int)" % unl)
    pg.sql("INSERT INTO %s VALUES (1)" % unl)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    problems = []
    cases = [
        ("SELECT 1 FROM %s WHERE id = 1; SELECT 2 FROM %s WHERE id = 2" % (t, t),
         "multi_statement"),
        ("SELECT count(*) FROM %s TABLESAMPLE BERNOULLI (50)" % t, "tablesample"),
        ("SELECT * FROM %s" % unl, "unlogged_table"),
        ("SELEC * FROM %s" % t, "parse_error"),
    ]
    try:
        for sql, reason in cases:
            before = px.stats()
            for _ in range(2):
                try:
                    q2(c, sql)
                except psycopg2.errors.SyntaxError:
                    pass
            settle(px)
            d = delta(px, before)
            if d["hits"] or d["fills"]:
                problems.append("%r: cached: %r" % (sql, d))
            if reason != "parse_error" and d.get("bypass:" + reason) != 2:
                problems.append("%r: expected 2 × bypass:%s, got %r" % (sql, reason, d))
        # A row limit on Execute (portal suspended) is not cached, and is answered right.
        for _ in range(2):
            before = px.stats()
            with raw_session(px, pg.superuser) as w:
                w.parse("", "SELECT id FROM %s ORDER BY id" % t)
                w.bind("", "")
                w.execute("", 2)
                w.sync()
                msgs = w.read_until_ready()
            assert "".join(m.type for m in msgs) == "12DDsZ", msgs
            d = delta(px, before)
            if d["hits"] or d.get("bypass:row_limit") != 1:
                problems.append("row limit: %r" % d)
    finally:
        c.close()
    assert not problems, "\n".join(problems)


def test_results_above_max_entry_bytes_are_streamed_not_stored(pg, redis, pgstash_factory,
                                                                cleanup):
    t = cleanup.table("big")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g" % t)
    px = make_proxy(pgstash_factory, {"cache": {"max_entry_bytes": "64KB"}})
    big = "SELECT * FROM %s ORDER BY id" % t
    small = "SELECT * FROM %s WHERE id <= 10 ORDER BY id" % t
    with raw_session(pg, pg.superuser) as d:
        want_big = d.simple_query(big)
    keys = entry_keys(redis, px)
    with raw_session(px, pg.superuser) as c:
        for _ in range(3):
            got, kind = classify(px, lambda: c.simple_query(big))
            assert got == want_big
            assert kind == "miss", kind
            settle(px)
        assert entry_keys(redis, px) == keys, "a result above max_entry_bytes was stored"
        s = px.stats()
        assert s["hits"] == 0 and s["fills"] == 0 and s["fill_skipped"] >= 1, s
        prime(px, lambda: c.simple_query(small))


def test_cache_disabled(pg, redis, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "off")
    px = make_proxy(pgstash_factory, {"cache": {"enabled": False}})
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect()
    try:
        before = px.stats()
        for i in range(3):
            got = q2(c, sql)
            assert got[0] == (1, "v1" if i == 0 else "x%d" % (i - 1))
            pg.sql("UPDATE %s SET v = 'x%d' WHERE id = 1" % (t, i))
        assert px.stats()["fills"] == 0 and px.stats()["hits"] == 0
        assert not entry_keys(redis, px)
        # Every read not cached is counted under its reason.
        d = delta(px, before)
        assert d.get("bypass:cache_disabled") == 3, \
            "3 reads with cache.enabled: false, counters moved by %r" % d
    finally:
        c.close()


def test_cache_disabled_instance_still_invalidates(pg, redis, pgstash_factory, cleanup):
    """An instance with the cache off (a pure relay) skips judging reads, never writes: a
    write through it, in either protocol, invalidates what a caching instance sharing the
    Redis keys stored. Its extended-protocol reads are counted as bypasses too."""
    t = make_kv(pg, cleanup, "offinv")
    caching = make_proxy(pgstash_factory)
    relay = make_proxy(pgstash_factory, {"cache": {"enabled": False}}, prefix=prefix_of(caching))
    sql = "SELECT * FROM %s ORDER BY id" % t
    reader = caching.connect()
    simple = relay.connect()
    extended = connect3(relay)
    try:
        for i, (conn, run) in enumerate(((simple, q2), (extended, q3), (simple, q2))):
            prime(caching, lambda: q2(reader, sql))
            before = relay.stats()
            run(conn, "UPDATE %s SET v = %%s WHERE id = 1" % t, ("w%d" % i,))
            assert q3(extended, sql)[0] == (1, "w%d" % i)
            d = delta(relay, before)
            assert d.get("bypass:cache_disabled") == 1 and d["writes"] == 1, d
            # Strict: the caching instance's next read confirms versions in Redis.
            got = expect(caching, lambda: q2(reader, sql), "miss")
            assert got[0] == (1, "w%d" % i), "stale row after a write through the relay"
    finally:
        reader.close()
        simple.close()
        extended.close()


def test_reload_turns_caching_off_for_a_table(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "reload")
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect()
    try:
        prime(px, lambda: q2(c, sql))
        px.write_config({"tables": {t: {"cache": False}}})
        px.reload()
        wait_until(lambda: classify(px, lambda: q2(c, sql))[1] == "bypass:table_not_cached",
                   timeout=10, interval=0.1, message="the reload to take effect")
        pg.sql("UPDATE %s SET v = 'direct' WHERE id = 1" % t)   # behind pgstash's back
        assert expect(px, lambda: q2(c, sql), "bypass:table_not_cached")[0] == (1, "direct")
    finally:
        c.close()
