"""
Extended query protocol through pgstash (Parse/Bind/Describe/Execute/Close/Flush/Sync), as
psycopg 3 drives it (unnamed and named statements, binary results, pipeline mode) and as a raw
client pipelines it. Results must be identical to PostgreSQL direct, byte for byte.
"""

import struct
from decimal import Decimal

import psycopg
import pytest
from psycopg import pq

from helpers import exchange, raw_session, unique

TYPES_QUERY = """
SELECT 1::int2 AS i2, 2::int4 AS i4, 3000000000::int8 AS i8, 1.5::float4 AS f4,
       2.25::float8 AS f8, 12345.678901::numeric AS num, 'text'::text AS t,
       'vc'::varchar(10) AS vc, true AS b, '\\x00ff10'::bytea AS ba, date '2024-02-29' AS d,
       timestamp '2024-01-02 03:04:05.678' AS ts, timestamptz '2024-01-02 03:04:05+02' AS tstz,
       interval '1 day 02:03:04' AS iv, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u,
       '{"k": [1, 2]}'::json AS js, '{"k": [1, 2]}'::jsonb AS jsb, ARRAY[1, NULL, 3] AS arr,
       ARRAY['x', 'y'] AS tarr, NULL::int AS nul, '10.0.0.1/8'::inet AS ip,
       point(1, 2) AS pt, g AS g
FROM generate_series(1, 5) g
"""


def connect3(target, **kw):
    return psycopg.connect(target.dsn(**kw), autocommit=True)


def raw_result(cur):
    """(field descriptions, raw values) of the last result, straight from libpq."""
    res = cur.pgresult
    fields = [(res.fname(i), res.ftype(i), res.fmod(i), res.fformat(i), res.fsize(i))
              for i in range(res.nfields)]
    values = [[res.get_value(r, c) for c in range(res.nfields)] for r in range(res.ntuples)]
    return fields, values


def test_unnamed_statements(pg, proxy):
    with connect3(proxy) as conn:
        cur = conn.cursor()
        cur.execute("SELECT %s::int + %s::int, %s::text || 'x', %s::numeric",
                    (40, 2, "caf\u00e9", "1.10"))
        assert cur.fetchone() == (42, "caf\u00e9x", Decimal("1.10"))
        cur.execute("SELECT g, %s::text FROM generate_series(1, %s) g", ("p", 300))
        rows = cur.fetchall()
        assert len(rows) == 300 and rows[-1] == (300, "p")
        cur.execute("SELECT %s::int IS NULL", (None,))
        assert cur.fetchone() == (True,)


def test_executemany_and_rowcount(pg, proxy):
    table = unique("em")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % table)
    try:
        with connect3(proxy) as conn:
            cur = conn.cursor()
            cur.executemany("INSERT INTO %s VALUES (%%s, %%s)" % table,
                            [(i, "v%d" % i) for i in range(200)])
            cur.execute("UPDATE %s SET v = v || %%s WHERE id < %%s" % table, ("!", 50))
            assert cur.rowcount == 50
        assert pg.sql("SELECT count(*), count(*) FILTER (WHERE v LIKE '%%!') FROM %s"
                      % table) == [(200, 50)]
    finally:
        pg.sql("DROP TABLE %s" % table)


def test_prepared_named_statements(pg, proxy):
    with connect3(proxy) as conn:
        cur = conn.cursor()
        for i in range(5):
            cur.execute("SELECT %s::int * 2, %s::text", (i, "n%d" % i), prepare=True)
            assert cur.fetchone() == (i * 2, "n%d" % i)
        cur.execute("SELECT name, statement, parameter_types::text[] FROM pg_prepared_statements")
        prepared = cur.fetchall()
        assert len(prepared) == 1, prepared
        name, statement, ptypes = prepared[0]
        assert name.startswith("_pg3_") and "$1::int * 2" in statement
        assert len(ptypes) == 2 and ptypes[1] == "text"
        # A second statement, and the first one again: both named statements live on.
        cur.execute("SELECT length(%s::text)", ("abcd",), prepare=True)
        assert cur.fetchone() == (4,)
        cur.execute("SELECT %s::int * 2, %s::text", (21, "again"), prepare=True)
        assert cur.fetchone() == (42, "again")
        cur.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cur.fetchone() == (2,)


def test_prepare_threshold_auto(proxy):
    """psycopg's default: prepared after the 5th execution of the same query."""
    with connect3(proxy) as conn:
        cur = conn.cursor()
        for i in range(12):
            cur.execute("SELECT %s::int + 1", (i,))
            assert cur.fetchone() == (i + 1,)
        cur.execute("SELECT count(*) FROM pg_prepared_statements")
        assert cur.fetchone() == (1,)


@pytest.mark.parametrize("prepare", [False, True], ids=["unnamed", "prepared"])
def test_binary_results_byte_identical(pg, proxy, prepare):
    got = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with connect3(target) as conn:
            cur = conn.cursor(binary=True)
            cur.execute(TYPES_QUERY, prepare=prepare)
            got[label] = raw_result(cur)
            assert all(f[3] == 1 for f in got[label][0]), "not binary format"
    assert got["proxy"] == got["direct"]
    fields, values = got["proxy"]
    assert len(values) == 5
    assert values[0][fields.index(next(f for f in fields if f[0] == b"i8"))] == \
        struct.pack("!q", 3000000000)


def test_text_results_identical_and_binary_params(pg, proxy):
    got = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with connect3(target) as conn:
            cur = conn.cursor()
            cur.execute(TYPES_QUERY)
            text = raw_result(cur)
            # %b: parameters sent in binary format.
            cur.execute("SELECT %b::int8 * 2, %b::bytea, %b::text", (21, b"\x00\xff", "t\u00e9"))
            got[label] = (text, cur.fetchone())
    assert got["proxy"] == got["direct"]
    assert got["proxy"][1] == (42, b"\x00\xff", "t\u00e9")


def test_pipeline_mode(pg, proxy):
    table = unique("pipe")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % table)
    try:
        with connect3(proxy) as conn:
            with conn.pipeline():
                c1 = conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % table, (1, "a"))
                c2 = conn.execute("INSERT INTO %s VALUES (%%s, %%s) RETURNING id * 10" % table,
                                  (2, "b"))
                c3 = conn.execute("UPDATE %s SET v = v || %%s" % table, ("!",))
                c4 = conn.execute("SELECT id, v FROM %s ORDER BY id" % table)
                c5 = conn.cursor(binary=True)
                c5.execute("SELECT %s::int8", (7,), prepare=True)
                c6 = conn.execute("SELECT pg_backend_pid() > 0")
            assert c1.rowcount == 1
            assert c2.fetchone() == (20,)
            assert c3.rowcount == 2
            assert c4.fetchall() == [(1, "a!"), (2, "b!")]
            assert c5.fetchone() == (7,)
            assert c6.fetchone() == (True,)

            # An error inside a pipeline aborts the rest of that batch; the session survives.
            with pytest.raises(psycopg.errors.UniqueViolation):
                with conn.pipeline():
                    conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % table, (3, "c"))
                    conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % table, (1, "dup"))
                    conn.execute("INSERT INTO %s VALUES (%%s, %%s)" % table, (4, "d"))
            assert conn.execute("SELECT 1").fetchone() == (1,)
        ids = [r[0] for r in pg.sql("SELECT id FROM %s ORDER BY id" % table)]
        assert ids[:2] == [1, 2] and 1 not in ids[2:] and ids.count(1) == 1
    finally:
        pg.sql("DROP TABLE %s" % table)


def test_describe_prepared_and_portal_libpq(pg, proxy):
    got = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with connect3(target) as conn:
            pgc = conn.pgconn
            res = pgc.prepare(b"desc_stmt", b"SELECT $1::int4 AS a, $2::text AS b, now() AS c",
                              [0, 0])
            assert res.status == pq.ExecStatus.COMMAND_OK, res.error_message
            d = pgc.describe_prepared(b"desc_stmt")
            assert d.status == pq.ExecStatus.COMMAND_OK, d.error_message
            got[label] = (d.nparams, [d.param_type(i) for i in range(d.nparams)],
                          [(d.fname(i), d.ftype(i), d.fmod(i)) for i in range(d.nfields)])
            conn.execute("BEGIN")
            conn.execute("DECLARE desc_cur CURSOR FOR SELECT 1::int8 AS x, 'y'::varchar AS y")
            p = pgc.describe_portal(b"desc_cur")
            assert p.status == pq.ExecStatus.COMMAND_OK, p.error_message
            got[label] += ([(p.fname(i), p.ftype(i)) for i in range(p.nfields)],)
            conn.execute("COMMIT")
    assert got["proxy"] == got["direct"]
    assert got["proxy"][0] == 2 and got["proxy"][1] == [23, 25]
    assert [f[0] for f in got["proxy"][2]] == [b"a", b"b", b"c"]
    assert got["proxy"][3] == [(b"x", 20), (b"y", 1043)]


# --- raw extended protocol, compared message for message ---------------------------------------

def _pipelined_batch(c):
    """Two units sent in one write: three statements, then an error in the middle of a unit."""
    c.parse("s_add", "SELECT $1::int + $2::int AS sum", [23, 23])
    c.bind("", "s_add", ["1", "2"])
    c.describe("P")
    c.execute()
    c.bind("", "s_add", ["40", "2"], result_formats=[1])
    c.execute()
    c.parse("", "SELECT g FROM generate_series(1, $1) g", [23])
    c.bind("", "", ["3"])
    c.describe("P")
    c.execute()
    c.sync()
    c.parse("", "SELECT 1/$1::int", [])
    c.bind("", "", ["0"])
    c.execute()
    c.bind("", "s_add", ["5", "5"])   # skipped: the unit already failed
    c.execute()
    c.sync()
    c.bind("", "s_add", ["5", "5"])   # the named statement survives the failed unit
    c.execute()
    c.sync()


def test_raw_pipelined_units_identical(pg, proxy):
    steps = [_pipelined_batch, ("read", 3)]
    direct = exchange(pg, pg.superuser, steps)
    through = exchange(proxy, pg.superuser, steps)
    assert through == direct
    types = "".join(m.type for m in direct)
    assert types == "12TD C2D C1 2TDDDCZ 1 E Z 2DCZ".replace(" ", ""), types
    assert [m for m in direct if m.type == "E"][0].sqlstate == "22012"


def test_raw_flush_without_sync(pg, proxy):
    """Parse/Describe/Flush gets answers before any Sync; portals run in max_rows steps."""
    def run(target):
        with raw_session(target, pg.superuser) as c:
            out = []
            c.parse("fs", "SELECT g, 'r' || g FROM generate_series(1, 5) g")
            c.describe("S", "fs")
            c.flush()
            out += c.read_until("T")          # ParseComplete, ParameterDescription, RowDesc
            c.bind("p1", "fs")
            c.execute("p1", 2)
            c.flush()
            out += c.read_until("s")          # BindComplete, 2 DataRows, PortalSuspended
            c.execute("p1", 2)
            c.flush()
            out += c.read_until("s")
            c.execute("p1", 0)
            c.close_object("P", "p1")
            c.close_object("S", "fs")
            c.close_object("S", "never_existed")  # closing a missing name is not an error
            c.sync()
            out += c.read_until_ready()
            c.bind("", "fs")                  # now gone
            c.execute()
            c.sync()
            out += c.read_until_ready()
            return out
    direct = run(pg)
    through = run(proxy)
    assert through == direct
    assert "".join(m.type for m in direct) == "1tT2DDsDDsDC333ZEZ"
    assert [m for m in direct if m.type == "E"][0].sqlstate == "26000"


def test_raw_portal_across_syncs_in_transaction(pg, proxy):
    def steps(c):
        c.query("BEGIN")
        c.read_until_ready()
        c.parse("", "SELECT g FROM generate_series(1, 4) g")
        c.bind("cur", "")
        c.execute("cur", 3)
        c.sync()
        c.execute("cur", 3)
        c.sync()
    seq = [steps, ("read", 2), "COMMIT"]
    direct = exchange(pg, pg.superuser, seq)
    through = exchange(proxy, pg.superuser, seq)
    assert through == direct
    assert "".join(m.type for m in direct) == "12DDDsZDCZCZ"
    assert [m.tx_status for m in direct if m.type == "Z"] == ["T", "T", "I"]


def test_raw_parse_error_skips_until_sync(pg, proxy):
    def steps(c):
        c.parse("", "SELEKT 1")
        c.bind("", "")
        c.execute()
        c.sync()
        c.parse("", "SELECT 'ok'")
        c.bind("", "")
        c.execute()
        c.sync()
    direct = exchange(pg, pg.superuser, [steps, ("read", 2)])
    through = exchange(proxy, pg.superuser, [steps, ("read", 2)])
    assert through == direct
    assert "".join(m.type for m in direct) == "EZ12DCZ"

