"""
COPY through pgstash: FROM STDIN and TO STDOUT (text, csv, binary), large volumes, errors in the
middle of a copy, and a client-side CopyFail. Data must round-trip byte for byte.
"""

import hashlib
import io

import psycopg
import psycopg2
import pytest

from helpers import exchange, unique


@pytest.fixture
def table(pg):
    name = unique("copy")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, name text, note text, amount numeric)" % name)
    yield name
    pg.sql("DROP TABLE IF EXISTS %s" % name)


ROWS = [
    "1\tplain\t\\N\t1.50",
    "2\ttab\\there\tnew\\nline\t-2",
    "3\tcaf\u00e9 \u2603\tback\\\\slash\t0",
    "4\t\t''quotes\"\t123456789.123456",
]


def test_copy_from_stdin_and_to_stdout_round_trip(pg, proxy, table):
    data = "\n".join(ROWS) + "\n"
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        cur.copy_expert("COPY %s FROM STDIN" % table, io.StringIO(data))
        assert cur.rowcount == len(ROWS)
        out = io.StringIO()
        cur.copy_expert("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % table, out)
        assert out.getvalue() == data
        cur.execute("SELECT count(*), count(note) FROM %s" % table)
        assert cur.fetchone() == (4, 3)
    finally:
        conn.close()
    # What PostgreSQL itself returns for the same COPY TO.
    direct = pg.connect()
    try:
        out = io.StringIO()
        direct.cursor().copy_expert("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % table, out)
        assert out.getvalue() == data
    finally:
        direct.close()


def test_copy_large_volume(pg, proxy, table):
    """~12 MB in each direction, checksummed on both ends."""
    n = 100000
    lines = ["%d\tname-%d\t%s\t%d.%02d" % (i, i, "n" * (i % 100), i, i % 100) for i in range(n)]
    data = ("\n".join(lines) + "\n").encode()
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        cur.copy_expert("COPY %s FROM STDIN" % table, io.BytesIO(data), size=65536)
        assert cur.rowcount == n
        out = io.BytesIO()
        cur.copy_expert("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT" % table, out)
        assert hashlib.sha256(out.getvalue()).hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        conn.close()
    assert pg.sql("SELECT count(*), sum(length(note)) FROM %s" % table) == \
        [(n, sum(i % 100 for i in range(n)))]


def test_copy_csv_and_binary_identical_to_direct(pg, proxy, table):
    pg.sql("INSERT INTO %s SELECT g, 'n,' || g, CASE WHEN g %% 3 = 0 THEN NULL ELSE 'q\"' END, "
           "g / 7.0 FROM generate_series(1, 2000) g" % table)
    got = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with psycopg.connect(target.dsn(), autocommit=True) as conn:
            cur = conn.cursor()
            parts = {}
            for fmt in ("csv, header", "binary"):
                buf = bytearray()
                with cur.copy("COPY (SELECT * FROM %s ORDER BY id) TO STDOUT (FORMAT %s)"
                              % (table, fmt)) as cp:
                    for chunk in cp:
                        buf += chunk
                parts[fmt] = bytes(buf)
            got[label] = parts
    assert got["proxy"] == got["direct"]
    assert got["proxy"]["binary"].startswith(b"PGCOPY\n\xff\r\n\0")
    # And binary back in through pgstash.
    other = unique("copyb")
    pg.sql("CREATE TABLE %s (LIKE %s)" % (other, table))
    try:
        with psycopg.connect(proxy.dsn(), autocommit=True) as conn:
            with conn.cursor().copy("COPY %s FROM STDIN (FORMAT binary)" % other) as cp:
                cp.write(got["proxy"]["binary"])
        assert pg.sql("SELECT count(*) FROM (SELECT * FROM %s EXCEPT SELECT * FROM %s) x"
                      % (table, other)) == [(0,)]
        assert pg.sql("SELECT count(*) FROM %s" % other) == [(2000,)]
    finally:
        pg.sql("DROP TABLE %s" % other)


def test_copy_bad_data_error_and_session_survives(proxy, table):
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        bad = "1\ta\tb\t1\n2\tb\tc\tnot-a-number\n"
        with pytest.raises(psycopg2.errors.InvalidTextRepresentation):
            cur.copy_expert("COPY %s FROM STDIN" % table, io.StringIO(bad))
        cur.execute("SELECT count(*) FROM %s" % table)
        assert cur.fetchone() == (0,)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            cur.copy_expert("COPY %s FROM STDIN" % table, io.StringIO("5\ta\tb\t1\n5\ta\tb\t1\n"))
        cur.copy_expert("COPY %s FROM STDIN" % table, io.StringIO("6\ta\tb\t1\n"))
        cur.execute("SELECT id FROM %s" % table)
        assert cur.fetchall() == [(6,)]
    finally:
        conn.close()


def test_copy_fail_from_client_identical(pg, proxy, table):
    def steps(c):
        c.query("COPY %s FROM STDIN" % table)
        c.read_until("G")
        c.copy_data(b"1\ta\tb\t1\n")
        c.copy_fail("client changed its mind")
    seq = [steps, ("read", 1), "SELECT count(*) FROM %s" % table]
    direct = exchange(pg, pg.superuser, seq)
    through = exchange(proxy, pg.superuser, seq)
    assert through == direct
    err = [m for m in through if m.type == "E"][0]
    assert err.sqlstate == "57014"
    assert "client changed its mind" in err.message
    assert [m.data_row for m in through if m.type == "D"] == [[b"0"]]


def test_copy_in_extended_protocol_identical(pg, proxy, table):
    def steps(c):
        c.parse("", "COPY %s (id, name) FROM STDIN" % table)
        c.bind("", "")
        c.execute()
        c.flush()
        c.read_until("G")
        c.copy_data(b"10\tten\n11\televen\n")
        c.copy_done()
        c.sync()
    seq = [steps, ("read", 1), "SELECT name FROM %s ORDER BY id" % table,
           "DELETE FROM %s" % table]
    direct = exchange(pg, pg.superuser, seq)
    through = exchange(proxy, pg.superuser, seq)
    assert through == direct
    assert [m.data_row for m in through if m.type == "D"] == [[b"ten"], [b"eleven"]]
    assert [m.command_tag for m in through if m.type == "C"][0] == "COPY 2"
