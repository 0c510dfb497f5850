"""
Transactions and the cache: inside REPEATABLE READ / SERIALIZABLE blocks (however the level was
chosen) reads never come from the cache (bypass tx_isolation) — the snapshot must hold even
when a newer value sits in the cache; after the block's first write, reads bypass
(tx_after_write) and see the block's own uncommitted writes; a failed block bypasses
(tx_failed) and gets PostgreSQL's own error.
"""

import psycopg
import pytest

from cache_helpers import (classify, cleanup, connect3, delta, expect, make_proxy,  # noqa: F401
                           prime, q2, q3, settle)

pytestmark = pytest.mark.proxy_only


def make_kv(pg, cleanup, prefix="tx"):
    t = cleanup.table(prefix)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'one'), (2, 'two')" % t)
    return t


@pytest.mark.parametrize("begin", [
    "BEGIN ISOLATION LEVEL REPEATABLE READ",
    "BEGIN ISOLATION LEVEL SERIALIZABLE",
    "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    "BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ",
    "SET default_transaction_isolation = 'repeatable read'; BEGIN",
    "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE; BEGIN",
], ids=["rr", "serializable", "start_rr_ro", "set_transaction", "default_isolation",
        "session_characteristics"])
def test_isolation_levels_bypass_and_keep_snapshot(pg, pgstash_factory, cleanup, begin):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    a, other, w = px.connect(), px.connect(), px.connect()
    try:
        prime(px, lambda: q2(a, sql))
        for stmt in begin.split("; "):
            q2(a, stmt)
        before = px.stats()
        kinds = []
        got, k = classify(px, lambda: q2(a, sql))
        kinds.append(k)
        assert got == [("one",)]
        # Another session commits a new value (through pgstash) and caches it.
        q2(w, "UPDATE %s SET v = 'newer' WHERE id = 1" % t)
        prime(px, lambda: q2(other, sql))
        # The snapshot of the block must hold: PostgreSQL says 'one', never the cached 'newer'.
        for _ in range(3):
            got, k = classify(px, lambda: q2(a, sql))
            kinds.append(k)
            assert got == [("one",)], "snapshot of a %r block broken: read %r (%s), " \
                "PostgreSQL gives [('one',)]" % (begin, got, k)
        # A statement never read before in this block: also not from the cache.
        csql = "SELECT count(*) FROM %s" % t
        assert expect(px, lambda: q2(other, csql), "miss") == [(2,)]
        settle(px)
        got, k = classify(px, lambda: q2(a, csql))
        kinds.append(k)
        assert got == [(2,)]
        q2(a, "COMMIT")
        # Whatever the block read must not have been stored as if it were current: outside
        # the block (a fresh snapshot per statement) the session and another session with
        # the same settings read the committed value.
        same = px.connect()
        try:
            if begin.startswith("SET "):          # the session-level setting, no block
                q2(same, begin.split("; ")[0])
            same_got = q2(same, sql)
        finally:
            same.close()
        a_got = q2(a, sql)
        assert a_got == [("newer",)] and same_got == [("newer",)], \
            "after a %r block: stale %r / %r, PostgreSQL gives [('newer',)]" % (
                begin, a_got, same_got)
        assert kinds == ["bypass:tx_isolation"] * 5, \
            "reads in a %r block: %r (all must bypass tx_isolation)" % (begin, kinds)
        assert delta(px, before)["bypass:tx_isolation"] == 5
        if "default" in begin or "SESSION" in begin:
            # The session default still applies to the next block.
            q2(a, "BEGIN")
            assert expect(px, lambda: q2(a, sql), "bypass:tx_isolation") == [("newer",)]
            q2(a, "COMMIT")
            q2(a, "SET default_transaction_isolation = 'read committed'")
        # Out of the block (read committed): the cache serves again.
        assert expect(px, lambda: q2(a, sql), "hit") == [("newer",)]
    finally:
        for c in (a, other, w):
            c.close()


def test_default_isolation_from_startup_options(pg, pgstash_factory, cleanup):
    """default_transaction_isolation set in the start-up packet (libpq options)."""
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = 2" % t
    plain, w = px.connect(), px.connect()
    rr = px.connect(options="-c default_transaction_isolation=serializable")
    try:
        prime(px, lambda: q2(plain, sql))
        q2(rr, "BEGIN")
        kinds = []
        got, k = classify(px, lambda: q2(rr, sql))
        kinds.append(k)
        assert got == [("two",)]
        q2(w, "UPDATE %s SET v = 'changed' WHERE id = 2" % t)
        prime(px, lambda: q2(plain, sql))
        for _ in range(2):
            got, k = classify(px, lambda: q2(rr, sql))
            kinds.append(k)
            assert got == [("two",)], "serializable snapshot broken: %r (%s)" % (got, k)
        q2(rr, "COMMIT")
        got = q2(rr, sql)
        assert got == [("changed",)], "after the serializable block: stale %r" % got
        assert kinds == ["bypass:tx_isolation"] * 3, kinds
    finally:
        for c in (plain, w, rr):
            c.close()


def test_psycopg3_repeatable_read_connection(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = %%s" % t
    with connect3(px) as plain, connect3(px, autocommit=False) as rr, connect3(px) as w:
        rr.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        prime(px, lambda: q3(plain, sql, (1,)))
        assert expect(px, lambda: q3(rr, sql, (1,)), "bypass:tx_isolation") == [("one",)]
        q3(w, "UPDATE %s SET v = %%s WHERE id = 1" % t, ("changed",))
        prime(px, lambda: q3(plain, sql, (1,)))
        assert expect(px, lambda: q3(rr, sql, (1,)), "bypass:tx_isolation") == [("one",)]
        rr.commit()
        assert q3(rr, sql, (1,)) == [("changed",)]
        rr.commit()


def test_after_write_in_block_bypasses_and_sees_own_writes(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, v FROM %s ORDER BY id" % t
    a, other = px.connect(), px.connect()
    try:
        prime(px, lambda: q2(other, sql))
        q2(a, "BEGIN")
        # Before any write in the block, a hit is fine.
        assert expect(px, lambda: q2(a, sql), "hit") == [(1, "one"), (2, "two")]
        q2(a, "UPDATE %s SET v = 'mine' WHERE id = 1" % t)
        q2(a, "INSERT INTO %s VALUES (3, 'three')" % t)
        before = px.stats()
        assert expect(px, lambda: q2(a, sql), "bypass:tx_after_write") == \
            [(1, "mine"), (2, "two"), (3, "three")]
        # Any other read in this block also bypasses, including another table's.
        assert expect(px, lambda: q2(a, "SELECT count(*) FROM %s" % t),
                      "bypass:tx_after_write") == [(3,)]
        # Other sessions: old data, and they may use the cache.
        assert expect(px, lambda: q2(other, sql), "hit") == [(1, "one"), (2, "two")]
        assert delta(px, before)["fills"] == 0, "a read after a write in a block was stored"
        q2(a, "COMMIT")
        assert q2(other, sql) == [(1, "mine"), (2, "two"), (3, "three")]
        # After the block the session uses the cache again.
        prime(px, lambda: q2(a, sql))
    finally:
        a.close()
        other.close()


def test_after_write_extended_protocol(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = %%s" % t
    with connect3(px) as other, connect3(px, autocommit=False) as a:
        prime(px, lambda: q3(other, sql, (2,)))
        assert expect(px, lambda: q3(a, sql, (2,)), "hit") == [("two",)]
        q3(a, "UPDATE %s SET v = %%s WHERE id = %%s" % t, ("own", 2))
        assert expect(px, lambda: q3(a, sql, (2,)), "bypass:tx_after_write") == [("own",)]
        assert expect(px, lambda: q3(a, sql, (2,), prepare=True),
                      "bypass:tx_after_write") == [("own",)]
        assert expect(px, lambda: q3(other, sql, (2,)), "hit") == [("two",)]
        a.rollback()
        assert expect(px, lambda: q3(a, sql, (2,)), "hit") == [("two",)]
        a.rollback()


@pytest.mark.parametrize("what", ["ddl", "volatile_function", "do_block"])
def test_anything_that_may_write_counts_as_write(pg, pgstash_factory, cleanup, what):
    t = make_kv(pg, cleanup)
    fn = t + "_f"
    cleanup.add("DROP FUNCTION IF EXISTS %s()" % fn)
    pg.sql("CREATE FUNCTION %s() RETURNS int LANGUAGE sql AS "
           "$$ UPDATE %s SET v = 'by fn' WHERE id = 1 RETURNING 1 $$" % (fn, t))
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    a, other = px.connect(), px.connect()
    try:
        prime(px, lambda: q2(other, sql))
        q2(a, "BEGIN")
        if what == "ddl":
            q2(a, "ALTER TABLE %s ADD COLUMN extra int DEFAULT 5" % t)
            want = [(1, "one", 5), (2, "two", 5)]
        elif what == "volatile_function":
            q2(a, "SELECT %s()" % fn)
            want = [(1, "by fn"), (2, "two")]
        else:
            q2(a, "DO $$ BEGIN UPDATE %s SET v = 'by do' WHERE id = 1; END $$" % t)
            want = [(1, "by do"), (2, "two")]
        got, kind = classify(px, lambda: q2(a, sql))
        assert got == want
        assert kind.startswith("bypass:"), kind
        q2(a, "ROLLBACK")
        assert q2(other, sql) == [(1, "one"), (2, "two")]
    finally:
        a.close()
        other.close()


def test_failed_block_bypasses_with_postgres_error(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    other = px.connect()
    with pgwire_session(px, pg) as a, pgwire_session(pg, pg) as d:
        prime(px, lambda: q2(other, sql))
        for c in (a, d):
            c.simple_query("BEGIN")
            msgs = c.simple_query("SELECT 1/0")
            assert msgs[-1].tx_status == "E"
        want = d.simple_query(sql)
        got = expect(px, lambda: a.simple_query(sql), "bypass:tx_failed")
        assert [m.type for m in got] == ["E", "Z"] and got[0].sqlstate == "25P02"
        assert [(m.type, m.sqlstate) for m in got] == [(m.type, m.sqlstate) for m in want]
        assert got[-1].tx_status == "E"
        # Extended protocol in the failed block too.
        a.parse("", sql)
        a.bind("", "")
        a.execute()
        a.sync()
        got = a.read_until_ready()
        assert got[0].type == "E" and got[0].sqlstate == "25P02", got
        assert a.simple_query("ROLLBACK")[-1].tx_status == "I"
        got = expect(px, lambda: a.simple_query(sql), "hit")
        assert got[1].data_row == [b"one"] and got[-1].tx_status == "I"
        # A failed block with a savepoint, rolled back to it: the block is usable again.
        a.simple_query("BEGIN")
        a.simple_query("SAVEPOINT s")
        a.simple_query("SELECT 1/0")
        expect(px, lambda: a.simple_query(sql), "bypass:tx_failed")
        a.simple_query("ROLLBACK TO SAVEPOINT s")
        got, kind = classify(px, lambda: a.simple_query(sql))
        assert got[1].data_row == [b"one"] and got[-1].tx_status == "T"
        assert kind in ("hit", "miss"), kind
        a.simple_query("COMMIT")
    other.close()


def pgwire_session(target, pg):
    from helpers import raw_session
    return raw_session(target, pg.superuser)
