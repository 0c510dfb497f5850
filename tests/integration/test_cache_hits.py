"""
The cache answers repeated reads, and what it answers is exactly what PostgreSQL sent: the
second identical read is a hit (counted in /stats) and its bytes equal the first read's and
PostgreSQL's own, in every protocol mode — simple ('Q', compared message by message),
extended with the unnamed statement (psycopg 3), named prepared statements (psycopg 3
prepare=True and raw Parse 's1'), several Bind/Execute before one Sync, Describe portal, and
binary results. Plus: a session answered from the cache stays usable, a named statement the
server never parsed still works later (lazy Parse), Close of it is answered.
"""

import struct

import pytest

from cache_helpers import (cleanup, connect3, expect, make_proxy, raw_select,  # noqa: F401
                           settle, wait_fills)
from helpers import raw_session
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only   # hit/miss counters are pgstash's own

ROWS = 3000

DATA_DDL = """
CREATE TABLE {t} (id int PRIMARY KEY, n numeric, ts timestamptz, b bytea, j jsonb,
                  arr int[], txt text);
INSERT INTO {t}
SELECT g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE g * 1.25 + 0.001 END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute 3.5 seconds',
       CASE WHEN g % 5 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
       jsonb_build_object('g', g, 'tags', jsonb_build_array('a', g, NULL), 'f', g / 3.0),
       CASE WHEN g % 11 = 0 THEN NULL ELSE ARRAY[g, NULL, g * 2] END,
       CASE WHEN g % 3 = 0 THEN NULL ELSE repeat('x', g % 50) || E'\\u00e9' END
FROM generate_series(1, {rows}) g;
"""


def make_data_table(pg, cleanup, rows=ROWS):
    t = cleanup.table("hits")
    pg.sql(DATA_DDL.format(t=t, rows=rows))
    return t


def assert_same_msgs(got, want, what):
    types_got = "".join(m.type for m in got)
    types_want = "".join(m.type for m in want)
    assert types_got == types_want or len(types_got) > 200 or len(types_want) > 200, \
        "%s: message types differ: %s vs %s" % (what, types_got, types_want)
    assert len(got) == len(want), "%s: %d messages, expected %d (%s... vs %s...)" % (
        what, len(got), len(want), types_got[:40], types_want[:40])
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, "%s: message %d differs: got %r %r, expected %r %r" % (
            what, i, g, g.payload[:120], w, w.payload[:120])


def raw_result(cur):
    """(fields, raw values, command status) of the last result, straight from libpq."""
    res = cur.pgresult
    fields = [(res.fname(i), res.ftype(i), res.fmod(i), res.fformat(i), res.fsize(i),
               res.ftable(i), res.ftablecol(i)) for i in range(res.nfields)]
    values = [[res.get_value(r, c) for c in range(res.nfields)] for r in range(res.ntuples)]
    return fields, values, res.command_status


# --- simple protocol ----------------------------------------------------------------------------

def test_simple_protocol_hit_is_byte_identical(pg, pgstash_factory, cleanup):
    t = make_data_table(pg, cleanup)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT * FROM %s ORDER BY id" % t

    direct = raw_select(pg, su, sql)
    with raw_session(px, su) as a:
        first = expect(px, lambda: a.simple_query(sql), "miss")
        wait_fills(px, 1)
    second = expect(px, lambda: raw_select(px, su, sql), "hit")

    assert [m.type for m in direct[:1]] == ["T"] and direct[-2].command_tag == "SELECT %d" % ROWS
    assert_same_msgs(first, direct, "miss vs direct")
    assert_same_msgs(second, direct, "hit vs direct")
    # The data really has what the test claims: NULLs in every nullable column.
    rows = [m.data_row for m in second if m.type == "D"]
    assert len(rows) == ROWS
    for col in (1, 3, 5, 6):
        assert any(r[col] is None for r in rows), "column %d has no NULL" % col
    s = px.stats()
    assert s["hits"] == 1 and s["misses"] == 1 and s["fills"] == 1, s
    table = next(x for x in s["tables"] if x["table"] == "test." + t)
    assert table["hits"] == 1 and table["misses"] == 1, table


def test_simple_protocol_same_connection_and_various_statements(pg, pgstash_factory, cleanup):
    """VALUES, TABLE t, WITH … SELECT, an aggregate and an empty result are all cached."""
    t = make_data_table(pg, cleanup, rows=50)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    queries = [
        "TABLE %s" % t,
        "WITH x AS (SELECT id, n FROM %s WHERE id < 10) SELECT * FROM x ORDER BY id" % t,
        "SELECT count(*), sum(n), max(ts), min(j::text) FROM %s" % t,
        "SELECT * FROM %s WHERE id < 0" % t,
        "SELECT a.id, b.txt FROM %s a JOIN %s b ON b.id = a.id + 1 ORDER BY 1" % (t, t),
    ]
    with raw_session(px, su) as c, raw_session(pg, su) as d:
        for sql in queries:
            want = d.simple_query(sql)
            first = expect(px, lambda: c.simple_query(sql), "miss")
            settle(px)
            second = expect(px, lambda: c.simple_query(sql), "hit")
            assert_same_msgs(first, want, "miss of %r" % sql)
            assert_same_msgs(second, want, "hit of %r" % sql)


# --- extended protocol through psycopg 3 --------------------------------------------------------

@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg3_unnamed_hit_identical(pg, pgstash_factory, cleanup, binary):
    t = make_data_table(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s WHERE id <= %%s ORDER BY id" % t

    def run_on(conn, limit):
        cur = conn.cursor(binary=binary)
        cur.execute(sql, (limit,))
        return raw_result(cur)

    def run(target, limit):
        with connect3(target) as conn:
            return run_on(conn, limit)

    direct = run(pg, ROWS)
    with connect3(px) as a:
        first = expect(px, lambda: run_on(a, ROWS), "miss")
        settle(px)
    second = expect(px, lambda: run(px, ROWS), "hit")
    assert first == direct
    assert second == direct
    assert len(second[1]) == ROWS
    assert all(f[3] == (1 if binary else 0) for f in second[0])
    # Another parameter value is another key: a miss, with its own rows.
    other = expect(px, lambda: run(px, 10), "miss")
    assert other == run(pg, 10) and len(other[1]) == 10


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_psycopg3_prepared_hit_identical(pg, pgstash_factory, cleanup, binary):
    t = make_data_table(pg, cleanup, rows=500)
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, n, ts, b, j, arr, txt FROM %s WHERE id > %%s ORDER BY id" % t

    with connect3(pg) as conn:
        cur = conn.cursor(binary=binary)
        cur.execute(sql, (0,), prepare=True)
        direct = raw_result(cur)
        cur.execute(sql, (100,), prepare=True)
        direct100 = raw_result(cur)

    with connect3(px) as a, connect3(px) as b:
        ca, cb = a.cursor(binary=binary), b.cursor(binary=binary)

        def run(cur, v):
            cur.execute(sql, (v,), prepare=True)
            return raw_result(cur)
        first = expect(px, lambda: run(ca, 0), "miss")
        settle(px)
        # Another connection: its Parse of the named statement and the Execute are answered
        # by pgstash alone.
        second = expect(px, lambda: run(cb, 0), "hit")
        third = expect(px, lambda: run(ca, 0), "hit")
        assert first == direct and second == direct and third == direct
        fourth = expect(px, lambda: run(cb, 100), "miss")
        assert fourth == direct100
        # The statement really is a server-side prepared statement on both sessions now.
        assert q_prepared_count(b) >= 1


def q_prepared_count(conn):
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM pg_prepared_statements")
    return cur.fetchone()[0]


# --- raw extended protocol, message by message --------------------------------------------------

def named_unit(c, sql, params, name="s1", result_formats=(), parse=True, describe=True):
    if parse:
        c.parse(name, sql, [23] * len(params))
    c.bind("", name, [str(p) for p in params], result_formats=result_formats)
    if describe:
        c.describe("P")
    c.execute()
    c.sync()
    return c.read_until_ready()


@pytest.mark.parametrize("fmt", [0, 1], ids=["text", "binary"])
def test_raw_named_parse_bind_describe_execute(pg, pgstash_factory, cleanup, fmt):
    t = make_data_table(pg, cleanup)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT * FROM %s WHERE id <= $1 ORDER BY id" % t
    with raw_session(pg, su) as d:
        want = named_unit(d, sql, [ROWS], result_formats=[fmt])
    assert "".join(m.type for m in want[:3]) == "12T" and want[-1].type == "Z"

    with raw_session(px, su) as a:
        first = expect(px, lambda: named_unit(a, sql, [ROWS], result_formats=[fmt]), "miss")
        settle(px)
    with raw_session(px, su) as b:
        second = expect(px, lambda: named_unit(b, sql, [ROWS], result_formats=[fmt]), "hit")
    assert_same_msgs(first, want, "miss vs direct")
    assert_same_msgs(second, want, "hit vs direct")
    rd = second[2].row_description
    assert all(col[6] == fmt for col in rd), rd
    if fmt == 1:
        assert struct.unpack("!i", second[3].data_row[0])[0] == 1


def multi_exec_unit(c, sql, values):
    """One Parse, then Bind/Describe/Execute per value (text, binary alternating), one Sync."""
    c.parse("multi", sql, [23])
    for i, v in enumerate(values):
        c.bind("", "multi", [str(v)], result_formats=[i % 2])
        c.describe("P")
        c.execute()
    c.sync()
    return c.read_until_ready()


def test_raw_several_executes_before_one_sync(pg, pgstash_factory, cleanup):
    t = make_data_table(pg, cleanup, rows=300)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT id, n, j, arr, txt FROM %s WHERE id <= $1 ORDER BY id" % t
    values = [3, 300, 0, 42]
    with raw_session(pg, su) as d:
        want = multi_exec_unit(d, sql, values)
    assert [m.command_tag for m in want if m.type == "C"] == ["SELECT 3", "SELECT 300",
                                                                "SELECT 0", "SELECT 42"]
    before = px.stats()
    with raw_session(px, su) as a:
        first = multi_exec_unit(a, sql, values)
        s = settle(px)
        assert s["misses"] - before["misses"] == 4 and s["hits"] == before["hits"], s
        wait_fills(px, before["fills"] + 4)
    mid = px.stats()
    with raw_session(px, su) as b:
        second = multi_exec_unit(b, sql, values)
    after = px.stats()
    assert after["hits"] - mid["hits"] == 4 and after["misses"] == mid["misses"], after
    assert_same_msgs(first, want, "miss unit vs direct")
    assert_same_msgs(second, want, "hit unit vs direct")

    # A unit where only some Executes are cached goes to the server as a whole, and the
    # answers are still right.
    with raw_session(pg, su) as d:
        want2 = multi_exec_unit(d, sql, [3, 7])
    with raw_session(px, su) as c:
        got2 = multi_exec_unit(c, sql, [3, 7])
    assert_same_msgs(got2, want2, "partly cached unit")


def test_describe_portal_and_no_describe_do_not_mix(pg, pgstash_factory, cleanup):
    """An entry filled by an Execute without Describe (no RowDescription on the wire) must not
    make a later simple query or Describe'd Execute lose its RowDescription, and vice versa."""
    t = make_data_table(pg, cleanup, rows=20)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT id, txt FROM %s ORDER BY id" % t

    def ext(c, describe):
        c.parse("", sql)
        c.bind("", "")
        if describe:
            c.describe("P")
        c.execute()
        c.sync()
        return c.read_until_ready()

    with raw_session(pg, su) as d:
        want_nodesc = ext(d, False)
        want_desc = ext(d, True)
        want_q = d.simple_query(sql)
    assert "".join(m.type for m in want_nodesc[:3]) == "12D"
    assert "".join(m.type for m in want_desc[:3]) == "12T"

    with raw_session(px, su) as c:
        got = [ext(c, False)]
        settle(px)
        got.append(ext(c, False))
        got.append(ext(c, True))
        settle(px)
        got.append(ext(c, True))
        got.append(c.simple_query(sql))
        settle(px)
        got.append(c.simple_query(sql))
        got.append(ext(c, False))
    assert px.stats()["hits"] >= 2
    for i, want in enumerate([want_nodesc, want_nodesc, want_desc, want_desc, want_q, want_q,
                              want_nodesc]):
        assert_same_msgs(got[i], want, "step %d" % i)


# --- the session after a unit answered from the cache -------------------------------------------

def test_session_usable_after_hit_and_lazy_parse(pg, pgstash_factory, cleanup):
    t = cleanup.table("lazy")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, 5) g" % t)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT id, v FROM %s WHERE id <= $1 ORDER BY id" % t

    with raw_session(px, su) as a:
        expect(px, lambda: named_unit(a, sql, [5]), "miss")
        settle(px)
    with raw_session(px, su) as b:
        got = expect(px, lambda: named_unit(b, sql, [5]), "hit")
        assert [m.data_row for m in got if m.type == "D"][-1] == [b"5", b"v5"]
        # The server never saw s1: the session must still be in a clean state.
        msgs = b.simple_query("SELECT count(*) FROM pg_prepared_statements")
        assert "".join(m.type for m in msgs) == "TDCZ", msgs
        # A non-cached statement, then a transaction with a write.
        msgs = b.simple_query("SELECT now() IS NOT NULL, random() < 2")
        assert msgs[1].data_row == [b"t", b"t"] and msgs[-1].tx_status == "I"
        for stmt, status in (("BEGIN", "T"), ("INSERT INTO %s VALUES (6, 'v6')" % t, "T"),
                             ("COMMIT", "I")):
            msgs = b.simple_query(stmt)
            assert msgs[-1].type == "Z" and msgs[-1].tx_status == status, (stmt, msgs)
            assert not any(m.type == "E" for m in msgs), msgs
        # s1 answered from the cache, now used in a unit the server must run (the table
        # changed, so it is a miss): pgstash must Parse it on the server first.
        got = expect(px, lambda: named_unit(b, sql, [6], parse=False), "miss")
        assert "".join(m.type for m in got) == "2TDDDDDDCZ", got
        assert got[-3].data_row == [b"6", b"v6"]
        # And once more with the old parameter: cached entry is stale (write), new data.
        got = named_unit(b, sql, [5], parse=False)
        assert not any(m.type == "E" for m in got), got
        assert [m.data_row[0] for m in got if m.type == "D"] == [b"1", b"2", b"3", b"4", b"5"]
        # The server knows s1 now.
        msgs = b.simple_query("SELECT name FROM pg_prepared_statements")
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"s1"]], msgs
        # Close it, and it is gone, exactly as PostgreSQL would have it.
        b.close_object("S", "s1")
        b.sync()
        assert "".join(m.type for m in b.read_until_ready()) == "3Z"
        b.bind("", "s1", ["5"])
        b.execute()
        b.sync()
        msgs = b.read_until_ready()
        assert msgs[0].type == "E" and msgs[0].sqlstate == "26000", msgs


def test_close_of_statement_server_never_saw(pg, pgstash_factory, cleanup):
    t = cleanup.table("close")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY)" % t)
    pg.sql("INSERT INTO %s VALUES (1), (2)" % t)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT id FROM %s WHERE id <= $1 ORDER BY id" % t

    def script(c, hit_expected):
        out = []
        if hit_expected is None:
            out += named_unit(c, sql, [2], name="s2")
        else:
            out += expect(px, lambda: named_unit(c, sql, [2], name="s2"), hit_expected)
        c.close_object("S", "s2")
        c.sync()
        out += c.read_until_ready()
        # The name is free again: Parse it anew, with another text.
        c.parse("s2", "SELECT 'other'::text AS o")
        c.bind("", "s2")
        c.describe("P")
        c.execute()
        c.sync()
        out += c.read_until_ready()
        # Close of a name that never existed anywhere is not an error either.
        c.close_object("S", "never_existed")
        c.sync()
        out += c.read_until_ready()
        out += c.simple_query("SELECT 1")
        return out

    with raw_session(pg, su) as d:
        want = script(d, None)
    with raw_session(px, su) as a:
        script(a, "miss")
        settle(px)
    with raw_session(px, su) as b:
        got = script(b, "hit")
    assert_same_msgs(got, want, "close after hit")
    assert "".join(m.type for m in want) == "12TDDCZ3Z12TDCZ3ZTDCZ"


def test_hit_inside_transaction_block_keeps_status(pg, pgstash_factory, cleanup):
    """A hit inside BEGIN answers ReadyForQuery 'T'; the block goes on normally."""
    t = cleanup.table("txhit")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'one')" % t)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT v FROM %s WHERE id = 1" % t
    with raw_session(px, su) as a:
        expect(px, lambda: a.simple_query(sql), "miss")
        settle(px)
    with raw_session(px, su) as b:
        assert b.simple_query("BEGIN")[-1].tx_status == "T"
        msgs = expect(px, lambda: b.simple_query(sql), "hit")
        assert msgs[-1].tx_status == "T" and msgs[1].data_row == [b"one"]
        msgs = b.simple_query("SELECT txid_current_if_assigned() IS NULL")
        assert msgs[1].data_row == [b"t"] and msgs[-1].tx_status == "T"
        assert b.simple_query("COMMIT")[-1].tx_status == "I"
        # Nothing else is left half-done on the server side.
        msgs = b.simple_query("SELECT 2")
        assert "".join(m.type for m in msgs) == "TDCZ"


def test_pgwire_error_is_not_cached(pg, pgstash_factory, cleanup):
    """A read that fails (division by zero at row 3) is never stored or replayed."""
    t = cleanup.table("err")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, d int)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 1), (2, 1), (3, 0)" % t)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    sql = "SELECT id, 10 / d FROM %s ORDER BY id" % t
    want = raw_select(pg, su, sql)
    for i in range(3):
        got = raw_select(px, su, sql)
        assert_same_msgs(got, want, "failing read")
        if i == 0:
            # A fill would be stored right after ReadyForQuery: give it a moment to show up.
            with pytest.raises(TimeoutError):
                wait_fills(px, 1, timeout=0.5)
    assert any(m.type == "E" and m.sqlstate == "22012" for m in want)
    s = px.stats()
    assert s["hits"] == 0 and s["fills"] == 0, s


# --- named statements the server never saw, used in every other way ----------------------------

def _hit_named(px, pg, t, name="s1"):
    """A fresh raw session whose Parse of `name` (and its Bind/Execute) was answered from the
    cache, so the server has never seen the statement."""
    sql = "SELECT id, v FROM %s WHERE id <= $1 ORDER BY id" % t
    with raw_session(px, pg.superuser) as a:
        named_unit(a, sql, [2], name=name)
        settle(px)
    b = raw_session(px, pg.superuser)
    expect(px, lambda: named_unit(b, sql, [2], name=name), "hit")
    return b, sql


def _direct_named(pg, t, name="s1"):
    sql = "SELECT id, v FROM %s WHERE id <= $1 ORDER BY id" % t
    d = raw_session(pg, pg.superuser)
    named_unit(d, sql, [2], name=name)
    return d


def _lazy_table(pg, cleanup):
    t = cleanup.table("lz")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'a'), (2, 'b'), (3, 'c')" % t)
    return t


def _both(pg, px, cleanup, steps):
    """Runs steps(conn) on a direct session and on a pgstash session whose s1 came from the
    cache; returns (direct messages, pgstash messages)."""
    t = _lazy_table(pg, cleanup)
    d = _direct_named(pg, t)
    b, _ = _hit_named(px, pg, t)
    try:
        return steps(d, t), steps(b, t)
    finally:
        d.close()
        b.close()


def test_describe_statement_after_hit(pg, pgstash_factory, cleanup):
    px = make_proxy(pgstash_factory)

    def steps(c, t):
        c.describe("S", "s1")
        c.sync()
        return c.read_until_ready()
    want, got = _both(pg, px, cleanup, steps)
    assert "".join(m.type for m in want) == "tTZ"
    assert_same_msgs(got, want, "Describe of a statement answered from the cache")


def test_named_portal_after_hit(pg, pgstash_factory, cleanup):
    px = make_proxy(pgstash_factory)

    def steps(c, t):
        out = c.simple_query("BEGIN")
        c.bind("p1", "s1", ["3"])
        c.execute("p1", 2)
        c.sync()
        out += c.read_until_ready()
        c.execute("p1", 0)
        c.sync()
        out += c.read_until_ready()
        out += c.simple_query("COMMIT")
        return out
    want, got = _both(pg, px, cleanup, steps)
    assert "".join(m.type for m in want) == "CZ2DDsZDCZCZ"
    assert_same_msgs(got, want, "named portal of a statement answered from the cache")


def test_duplicate_parse_after_hit_is_an_error(pg, pgstash_factory, cleanup):
    px = make_proxy(pgstash_factory)

    def steps(c, t):
        c.parse("s1", "SELECT 1")
        c.sync()
        out = c.read_until_ready()
        out += c.simple_query("SELECT 2")
        return out
    want, got = _both(pg, px, cleanup, steps)
    assert want[0].type == "E" and want[0].sqlstate == "42P05"
    assert_same_msgs(got, want, "Parse of a name the session already has")


@pytest.mark.parametrize("forget", ["DEALLOCATE s1", "DEALLOCATE ALL", "DISCARD ALL"])
def test_statement_forgotten_by_sql_after_hit(pg, pgstash_factory, cleanup, forget):
    """After DEALLOCATE / DISCARD ALL, the statement is gone: Bind must fail as in
    PostgreSQL, never be answered from the cache."""
    px = make_proxy(pgstash_factory)

    def steps(c, t):
        out = c.simple_query(forget)
        c.bind("", "s1", ["2"])
        c.execute()
        c.sync()
        out += c.read_until_ready()
        return out
    want, got = _both(pg, px, cleanup, steps)
    assert [m.type for m in want] == ["C", "Z", "E", "Z"] and want[2].sqlstate == "26000"
    assert_same_msgs(got, want, "Bind of a statement dropped by %s" % forget)


def test_fills_counted_when_client_leaves_at_once(pg, redis, pgstash_factory, cleanup):
    """`fills` counts entries stored, also when the client disconnects right after its
    ReadyForQuery (the fill is stored after the client got its answer)."""
    t = make_data_table(pg, cleanup, rows=2000)
    px = make_proxy(pgstash_factory)
    su = pg.superuser
    n = 12
    for i in range(n):
        raw_select(px, su, "SELECT * FROM %s WHERE id > %d ORDER BY id" % (t, i))
    prefix = px.config["cache"]["key_prefix"]
    wait_until(lambda: len(redis.command("KEYS", "%s:e:*" % prefix)) == n, timeout=10,
               message="%d entries in Redis" % n)
    s = px.stats()
    assert s["misses"] == n
    try:
        wait_fills(px, n, timeout=5)
    except TimeoutError:
        raise AssertionError("%d entries are in Redis, but /stats says fills=%d "
                             "(fill_skipped=%d)" % (n, px.stats()["fills"],
                                                    px.stats()["fill_skipped"])) from None
