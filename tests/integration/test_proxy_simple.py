"""
Simple query protocol ('Q') through pgstash: results, errors, notices, parameter status and
transaction status must be exactly what PostgreSQL sends, message for message.
"""

import hashlib
import struct

import pgwire
from helpers import exchange, raw_session, unique, without_table_oids

SCRIPT = [
    "SELECT 1 AS a, 'x'::text AS b, NULL::int AS c, 1.5::numeric AS d",
    "SELECT g, repeat('ab', g) FROM generate_series(1, 50) g",
    "SELECT 1 AS first; SELECT 2 AS second, 3 AS third",
    "",
    ";",
    "SELEC 1",
    "SELECT * FROM no_such_table_anywhere",
    "DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$",
    "SET application_name = 'pgstash_simple_test'",
    "SHOW application_name",
    "CREATE TEMP TABLE tmp_simple (a int)",
    "DROP TABLE tmp_simple",
    "INSERT INTO simple_t SELECT g, 'v' || g FROM generate_series(1, 10) g",
    "UPDATE simple_t SET v = v || '!' WHERE id <= 3",
    "DELETE FROM simple_t WHERE id > 8",
    "INSERT INTO simple_t VALUES (1, 'dup')",
    "BEGIN",
    "SELECT count(*) FROM simple_t",
    "SELECT 1/0",
    "SELECT 1",
    "ROLLBACK",
    "BEGIN; INSERT INTO simple_t VALUES (100, 'x'); COMMIT",
    "SELECT id, v FROM simple_t ORDER BY id",
    "SELECT E'caf\\u00e9 \\u2603', '\\x00ff'::bytea, ARRAY[1,2,NULL], '{\"a\": [1, 2]}'::jsonb",
]


def _types(msgs):
    return "".join(m.type for m in msgs)


def test_simple_query_messages_identical_to_direct(pg, proxy):
    """The same script, direct and through pgstash, each on a freshly created table (a regular
    one: a temp table's schema, pg_temp_N, varies with the backend slot)."""
    su = pg.superuser
    fresh = "DROP TABLE IF EXISTS simple_t; CREATE TABLE simple_t (id int PRIMARY KEY, v text)"
    try:
        pg.sql(fresh)
        direct = without_table_oids(exchange(pg, su, SCRIPT))
        pg.sql(fresh)
        through = without_table_oids(exchange(proxy, su, SCRIPT))
    finally:
        pg.sql("DROP TABLE IF EXISTS simple_t")
    assert _types(through) == _types(direct)
    for d, t in zip(direct, through):
        assert t == d, "message differs: direct %r, through pgstash %r" % (d, t)
    # The script really exercised what it claims to.
    kinds = set(_types(direct))
    assert {"T", "D", "C", "I", "E", "N", "S", "Z"} <= kinds
    statuses = [m.tx_status for m in direct if m.type == "Z"]
    assert {"I", "T", "E"} <= set(statuses)
    errors = {m.sqlstate for m in direct if m.type == "E"}
    assert {"42601", "42P01", "23505", "22012", "25P02"} <= errors


def test_startup_parameters_identical_to_direct(pg, proxy):
    params = {"application_name": "pgstash-startup", "DateStyle": "German, DMY",
              "extra_float_digits": "2"}
    with raw_session(pg, pg.superuser, params=params) as d, \
            raw_session(proxy, pg.superuser, params=params) as t:
        assert t.parameters == d.parameters
        assert t.parameters["application_name"] == "pgstash-startup"
        assert t.parameters["DateStyle"] == "German, DMY"
        assert t.backend_pid and t.backend_secret is not None
        # Every start-up message except BackendKeyData (per session) is byte-identical.
        d_msgs = [m for m in d.startup_messages if m.type != "K"]
        t_msgs = [m for m in t.startup_messages if m.type != "K"]
        assert t_msgs == d_msgs
        rows = t.simple_query("SELECT current_setting('extra_float_digits'), "
                              "to_char(date '2024-03-01', 'DD.MM.YYYY')")
        assert [m.data_row for m in rows if m.type == "D"] == [[b"2", b"01.03.2024"]]


def test_rows_and_types_psycopg2(proxy, pg):
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT g, g * 2, 'row ' || g FROM generate_series(1, 1000) g")
        rows = cur.fetchall()
        assert len(rows) == 1000
        assert rows[0] == (1, 2, "row 1") and rows[-1] == (1000, 2000, "row 1000")
        cur.execute("SELECT %s::text, %s::int, %s::float8, %s::bool, %s::bytea, %s::date",
                    ("caf\u00e9 \u2603", 42, 1.25, True, b"\x00\x01\xff", "2024-02-29"))
        r = cur.fetchone()
        assert r[0] == "caf\u00e9 \u2603" and r[1] == 42 and r[2] == 1.25 and r[3] is True
        assert bytes(r[4]) == b"\x00\x01\xff" and str(r[5]) == "2024-02-29"
        cur.execute("SELECT NULL::text")
        assert cur.fetchone() == (None,)
    finally:
        conn.close()


def test_transactions_commit_and_rollback(proxy, pg):
    table = unique("tx")
    pg.sql("CREATE TABLE %s (id int)" % table)
    a = proxy.connect(autocommit=False)
    b = proxy.connect()
    try:
        ca, cb = a.cursor(), b.cursor()
        ca.execute("INSERT INTO %s VALUES (1)" % table)
        cb.execute("SELECT count(*) FROM %s" % table)
        assert cb.fetchone() == (0,), "uncommitted row visible to another session"
        a.rollback()
        cb.execute("SELECT count(*) FROM %s" % table)
        assert cb.fetchone() == (0,)
        ca.execute("INSERT INTO %s VALUES (2)" % table)
        a.commit()
        cb.execute("SELECT array_agg(id) FROM %s" % table)
        assert cb.fetchone() == ([2],)
    finally:
        a.close()
        b.close()
        pg.sql("DROP TABLE %s" % table)


def test_large_query_and_large_value(proxy):
    """A 4 MB query text and an 8 MB result value pass through intact."""
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        big = "x" * (4 * 1024 * 1024)
        cur.execute("SELECT length('" + big + "'), md5('" + big + "')")
        assert cur.fetchone() == (len(big), hashlib.md5(big.encode()).hexdigest())
        cur.execute("SELECT repeat('0123456789abcdef', 512 * 1024)")
        value = cur.fetchone()[0]
        assert len(value) == 8 * 1024 * 1024
        assert value == "0123456789abcdef" * (512 * 1024)
    finally:
        conn.close()


def test_function_call_message(pg, proxy):
    """The legacy FunctionCall ('F') message passes through: int4pl(2, 3) = 5."""
    def call(c):
        int4pl = 177
        body = struct.pack("!Ih", int4pl, 1) + struct.pack("!h", 0)
        body += struct.pack("!h", 2)
        for arg in (b"2", b"3"):
            body += struct.pack("!i", len(arg)) + arg
        body += struct.pack("!h", 0)
        c.send_msg(b"F", body)
    direct = exchange(pg, pg.superuser, [call, ("read", 1)])
    through = exchange(proxy, pg.superuser, [call, ("read", 1)])
    assert through == direct
    v = [m for m in through if m.type == "V"]
    assert len(v) == 1 and v[0].payload == struct.pack("!i", 1) + b"5"


def test_many_queries_one_session(proxy):
    """A thousand round trips on one connection: nothing leaks or desynchronises."""
    with raw_session(proxy, proxy.pg.superuser) as c:
        for i in range(1000):
            msgs = c.simple_query("SELECT %d" % i)
            assert [m.type for m in msgs] == ["T", "D", "C", "Z"]
            assert msgs[1].data_row == [str(i).encode()]


def test_error_fields_complete(pg, proxy):
    """ErrorResponse carries every field PostgreSQL sends (detail, constraint, table...)."""
    table = unique("err")
    pg.sql("CREATE TABLE %s (id int CONSTRAINT %s_pos CHECK (id > 0))" % (table, table))
    try:
        sql = "INSERT INTO %s VALUES (-1)" % table
        d = [m for m in exchange(pg, pg.superuser, [sql]) if m.type == "E"][0]
        t = [m for m in exchange(proxy, pg.superuser, [sql]) if m.type == "E"][0]
        assert t.fields == d.fields
        assert t.sqlstate == "23514"
        assert t.fields["t"] == table and t.fields["n"] == table + "_pos"
        assert "D" in t.fields
    finally:
        pg.sql("DROP TABLE %s" % table)


def test_pgwire_client_sanity(pg):
    """The raw client itself against PostgreSQL: message parsing helpers agree with psycopg2."""
    with raw_session(pg, pg.superuser) as c:
        msgs = c.simple_query("SELECT 42 AS answer, NULL AS nothing")
        t = [m for m in msgs if m.type == "T"][0]
        assert [f[0] for f in t.row_description] == ["answer", "nothing"]
        assert [m for m in msgs if m.type == "D"][0].data_row == [b"42", None]
        assert msgs[-1].tx_status == "I"
    assert isinstance(pgwire.md5_password("u", "p", b"salt"), str)
