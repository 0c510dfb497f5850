"""
pysession.py — the scripted session (README.md) for the Python drivers: psycopg2 and psycopg 3
(default prepare threshold, prepare_threshold=0, prepare_threshold=None, binary mode).

run(adapter, host, port, user, dbname, table, ck) returns the transcript: [step, value] pairs
with every value as the driver returned it (type name and repr), column descriptions, command
tags and errors.
"""

import datetime
import decimal
import json
import uuid

from clientlib import sha256_lines

TS1 = datetime.datetime(2024, 2, 29, 13, 14, 15, 123456,
                        tzinfo=datetime.timezone(datetime.timedelta(hours=2)))
TS2 = datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc)
UUID1 = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
UUID2 = uuid.UUID("00000000-0000-0000-0000-000000000000")
DOC1 = {"k": "v", "n": [1, 2.5, {"x": None}], "u": "ü"}
DOC2 = []

COLS = "id, big, name, amount, ts, data, uid, doc, nums, tags"


def norm(v):
    """A value as the driver returned it: [type name, representation]."""
    if v is None:
        return None
    t = "%s.%s" % (type(v).__module__, type(v).__qualname__)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return [t, bytes(v).hex()]
    if isinstance(v, (list, tuple)):
        return [t, [norm(x) for x in v]]
    if isinstance(v, dict):
        return [t, json.dumps(v)]          # keeps the key order the driver produced
    if isinstance(v, datetime.datetime):
        return [t, repr(v), repr(v.tzinfo), v.utcoffset() and v.utcoffset().total_seconds()]
    return [t, repr(v)]


class Adapter:
    """What differs between the Python drivers. Subclasses: Psycopg2, Psycopg3."""

    name = "?"
    ph = "%s"   # placeholder
    pipeline = False   # has a pipeline mode

    def connect(self, host, port, user, dbname):
        raise NotImplementedError

    def sqlstate(self, e):
        raise NotImplementedError

    def errmsg(self, e):
        raise NotImplementedError

    def describe(self, cur):
        raise NotImplementedError

    def cursor(self, conn):
        return conn.cursor()

    def adapt(self, kind, v):
        return v

    def error_class(self):
        raise NotImplementedError

    def prepared(self, conn):
        """The names of the driver's server-side prepared statements (None: it has none)."""
        return None

    def txstatus(self, conn):
        """The transaction status the driver has from the last ReadyForQuery."""
        raise NotImplementedError


class Psycopg2(Adapter):
    name = "psycopg2"

    def __init__(self):
        import psycopg2
        import psycopg2.extras
        self.mod = psycopg2
        self.extras = psycopg2.extras

    def connect(self, host, port, user, dbname):
        conn = self.mod.connect(host=host, port=port, user=user, dbname=dbname,
                                connect_timeout=10, application_name="clients-psycopg2")
        conn.autocommit = True
        self.extras.register_uuid(conn_or_curs=conn)
        return conn

    def error_class(self):
        return self.mod.Error

    def txstatus(self, conn):
        return conn.get_transaction_status()   # 0 idle, 2 in block, 3 failed block

    def sqlstate(self, e):
        return e.pgcode

    def errmsg(self, e):
        return e.pgerror

    def describe(self, cur):
        if cur.description is None:
            return None
        return [[c.name, c.type_code, c.display_size, c.internal_size, c.precision, c.scale,
                 c.null_ok, c.table_column] for c in cur.description]

    def adapt(self, kind, v):
        if kind == "jsonb" and v is not None:
            return self.extras.Json(v)
        return v


class Psycopg3(Adapter):
    def __init__(self, variant):
        import psycopg
        import psycopg.types.json
        self.mod = psycopg
        self.json = psycopg.types.json
        self.variant = variant
        self.name = "psycopg3-" + variant
        self.binary = variant == "binary"
        self.pipeline = True
        if self.binary:
            self.ph = "%b"

    def connect(self, host, port, user, dbname):
        kw = {}
        if self.variant in ("prepare0", "prepare0-max2"):
            kw["prepare_threshold"] = 0
        elif self.variant == "noprepare":
            kw["prepare_threshold"] = None
        conn = self.mod.connect(host=host, port=port, user=user, dbname=dbname,
                                connect_timeout=10, autocommit=True,
                                application_name="clients-" + self.name, **kw)
        if self.variant == "prepare0-max2":
            # a tiny statement cache: psycopg evicts with DEALLOCATE <name> (a simple Query),
            # also for statements pgstash answered from the cache, which the server never parsed
            conn.prepared_max = 2
        return conn

    def cursor(self, conn):
        return conn.cursor(binary=True) if self.binary else conn.cursor()

    def prepared(self, conn):
        # psycopg 3.1's PrepareManager: query key -> statement name (_pg3_0, ...)
        names = getattr(getattr(conn, "_prepared", None), "_names", None)
        return None if names is None else sorted(n.decode() for n in names.values())

    def error_class(self):
        return self.mod.Error

    def txstatus(self, conn):
        return conn.info.transaction_status.name

    def sqlstate(self, e):
        return e.sqlstate

    def errmsg(self, e):
        d = e.diag
        return [d.severity, d.message_primary, d.message_detail, d.message_hint,
                d.statement_position, d.constraint_name]

    def describe(self, cur):
        if cur.description is None:
            return None
        res = cur.pgresult
        return [[c.name, c.type_code, c.display_size, c.internal_size, c.precision, c.scale,
                 res.fformat(i), res.ftablecol(i)] for i, c in enumerate(cur.description)]

    def adapt(self, kind, v):
        if kind == "jsonb" and v is not None:
            return self.json.Jsonb(v)
        return v


KINDS = ["int", "bigint", "text", "numeric", "timestamptz", "bytea", "uuid", "jsonb",
         "intarr", "textarr"]

ROW1 = [1, 9007199254740993, "alpha", decimal.Decimal("12345.6789"), TS1,
        b"\x00\x01\xfe\xff'\\", UUID1, DOC1, [1, 2, 3], ["a", "b c", '"q"', "{x}"]]
ROW2 = [2, -5, "beta ü", decimal.Decimal("-0.5"), TS2, b"", UUID2, DOC2, [], [None, "x"]]
ROW3 = [3, None, None, None, None, None, None, None, None, None]
ROW10 = [10, 10, "committed", decimal.Decimal("10.01"), TS2, b"\x10", UUID1, {"c": 10}, [10],
         ["ten"]]


def name_by_id_sql(table):
    return "SELECT name FROM %s WHERE id = %%s" % table


class Session:
    def __init__(self, ad, host, port, user, dbname, table, ck):
        self.ad = ad
        self.args = (host, port, user, dbname)
        self.t = table
        self.b = table + "_big"
        self.ck = ck
        self.out = []

    # -- recording helpers -------------------------------------------------------------------
    def rec(self, step, value):
        self.out.append([step, value])

    def execute(self, conn, sql, params=None):
        """Executes with the driver; returns description, rows, rowcount and the command tag
        (or the error) as the driver reports them."""
        sql = sql.replace("%s", self.ad.ph)
        cur = self.ad.cursor(conn)
        try:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description is not None else None
            return {"desc": self.ad.describe(cur),
                    "rows": None if rows is None else [[norm(v) for v in r] for r in rows],
                    "rowcount": cur.rowcount, "status": cur.statusmessage,
                    "tx": self.ad.txstatus(conn)}
        except self.ad.error_class() as e:
            return {"error": self.ad.sqlstate(e), "message": self.ad.errmsg(e),
                    "type": type(e).__name__, "tx": self.ad.txstatus(conn)}
        finally:
            cur.close()

    def q(self, conn, step, sql, params=None):
        """execute() and record the outcome under `step`."""
        self.rec(step, self.execute(conn, sql, params))

    def params(self, row):
        return [self.ad.adapt(k, v) for k, v in zip(KINDS, row)]

    def insert(self, conn, step, row):
        ph = ", ".join(["%s"] * len(row))
        return self.q(conn, step, "INSERT INTO %s (%s) VALUES (%s) RETURNING id, name, ts"
                      % (self.t, COLS, ph), self.params(row))

    # -- the session --------------------------------------------------------------------------
    def run(self):
        ad, t, b, ck = self.ad, self.t, self.b, self.ck
        c1 = ad.connect(*self.args)
        c2 = ad.connect(*self.args)
        try:
            self._run(c1, c2, ad, t, b, ck)
        finally:
            c1.close()
            c2.close()
        return self.out

    def _run(self, c1, c2, ad, t, b, ck):
        q = self.q
        # S0 setup
        q(c1, "setup.drop", "DROP TABLE IF EXISTS %s, %s" % (t, b))
        q(c1, "setup.create", "CREATE TABLE %s (id int PRIMARY KEY, big bigint, name text, "
          "amount numeric(14,4), ts timestamptz, data bytea, uid uuid, doc jsonb, nums int[], "
          "tags text[])" % t)
        q(c1, "setup.create_big", "CREATE TABLE %s (id int PRIMARY KEY, label text NOT NULL, "
          "amount numeric(12,2) NOT NULL)" % b)
        q(c1, "setup.fill_big", "INSERT INTO %s SELECT g, 'row-' || g, g * 1.25 "
          "FROM generate_series(1, %d) g" % (b, 50000))
        q(c1, "setup.settings", "SELECT current_setting('TimeZone') AS tz, "
          "current_setting('DateStyle') AS ds, current_setting('extra_float_digits') AS efd")
        self.rec("ck", "ready")
        ck.ready([t, b])

        # S1 parameters of every type, and NULL parameters
        for i, row in enumerate((ROW1, ROW2, ROW3)):
            self.insert(c1, "insert.%d" % (i + 1), row)

        # S2 every row back (NULL results included)
        q(c1, "select.all", "SELECT %s FROM %s ORDER BY id" % (COLS, t))

        # S3 parameters echoed with explicit types, with values and all NULL
        echo = ("SELECT %s::int AS i, %s::bigint AS b, %s::text AS t, %s::numeric AS n, "
                "%s::timestamptz AS ts, %s::bytea AS by, %s::uuid AS u, %s::jsonb AS j, "
                "%s::int[] AS ia, %s::text[] AS ta")
        q(c1, "echo.values", echo, self.params(ROW1))
        q(c1, "echo.nulls", echo, self.params([None] * 10))

        # S4 typed filters
        for step, where, p in (
                ("filter.uuid", "uid = %s", UUID1),
                ("filter.jsonb", "doc @> %s", ad.adapt("jsonb", {"k": "v"})),
                ("filter.textarr", "tags && %s", ["x", "a"]),
                ("filter.intarr", "nums @> %s", [2]),
                ("filter.ts", "ts > %s", TS2),
                ("filter.bytea", "data = %s", b"\x00\x01\xfe\xff'\\"),
                ("filter.numeric", "amount = %s", decimal.Decimal("-0.5000")),
                ("filter.bigint", "big = %s", 9007199254740993),
                ("filter.null", "name IS NOT DISTINCT FROM %s", None),
                ("filter.text", "name = %s", "beta ü")):
            q(c1, step, "SELECT id FROM %s WHERE %s ORDER BY id" % (t, where), [p])

        # S5 the same parameterised read, past every prepare threshold
        by_id = "SELECT %s FROM %s WHERE id = %%s" % (COLS, t)
        q(c1, "repeat.prime.1", by_id, [1])
        q(c1, "repeat.prime.3", by_id, [3])
        ck.mark()
        results = {1: [], 3: []}
        for i in range(6):
            for k in (1, 3):
                results[k].append(self.execute(c1, by_id, [k]))
        self.rec("repeat.results", {
            "1": results[1][0], "3": results[3][0],
            "all_equal": all(r == rs[0] for rs in results.values() for r in rs)})
        ck.check("repeat", 12)
        ck.mark()
        for k in (1, 3, 1, 3):
            q(c1, "repeat_prepared.%d" % k, by_id, [k])
        ck.check("repeat_prepared", 4)
        self.rec("prepared", ad.prepared(c1))
        if ad.pipeline:
            # several Bind/Execute before one Sync: a unit pgstash answers alone when every
            # Execute in it is a hit, and sends whole to the server otherwise
            ck.mark()
            self.pipelined(c1, "pipeline.hits", [(by_id, [1]), (by_id, [3])])
            ck.check("pipeline", 2)
            self.pipelined(c1, "pipeline.mixed", [(by_id, [1]), (by_id, [99]),
                                                  (name_by_id_sql(t), [2])])

        # S6 ROLLBACK: the cached read comes back unchanged
        name_by_id = name_by_id_sql(t)
        q(c1, "rollback.prime", name_by_id, [2])
        ck.mark()
        q(c1, "rollback.cached", name_by_id, [2])
        ck.check("cached_before_tx", 1)
        c1.autocommit = False
        q(c1, "rollback.update", "UPDATE %s SET name = %%s WHERE id = %%s" % t, ["changed", 2])
        ck.mark()
        q(c1, "rollback.read_own_write", name_by_id, [2])
        ck.check("in_tx_after_write", 1)
        c1.rollback()
        c1.autocommit = True
        ck.mark()
        q(c1, "rollback.after", name_by_id, [2])
        ck.check("after_rollback", 1)

        # S7 COMMIT: another connection sees the row afterwards
        listing = "SELECT id, name FROM %s ORDER BY id" % t
        q(c2, "commit.conn2.prime", listing)
        ck.mark()
        q(c2, "commit.conn2.cached", listing)
        ck.check("conn2_cached", 1)
        q(c1, "commit.prime", name_by_id, [1])
        c1.autocommit = False
        q(c1, "commit.first_in_tx", "SELECT count(*) AS n FROM %s" % t)
        ck.mark()
        q(c1, "commit.read_before_write", name_by_id, [1])
        ck.check("in_tx_before_write", 1)
        self.insert(c1, "commit.insert", ROW10)
        q(c1, "commit.count_own_write", "SELECT count(*) FROM %s" % t)
        c1.commit()
        c1.autocommit = True
        ck.mark()
        q(c2, "commit.after.conn2", listing)
        ck.check("conn2_after_commit", 1)
        q(c1, "commit.after.conn1", listing)

        # S8 an error mid-transaction, ROLLBACK, and the connection goes on (and still hits)
        q(c1, "error.prime", by_id, [1])
        c1.autocommit = False
        self.insert(c1, "error.insert_ok", [20, None, "doomed"] + [None] * 7)
        self.insert(c1, "error.unique_violation", [1, None, "dup"] + [None] * 7)
        q(c1, "error.in_failed_tx", "SELECT 1 AS one")
        c1.rollback()
        q(c1, "error.after_rollback", "SELECT count(*) FROM %s WHERE id = %%s" % t, [20])
        c1.rollback()
        q(c1, "error.division_by_zero", "SELECT id / %%s AS r FROM %s WHERE id = 1" % t, [0])
        c1.rollback()
        c1.autocommit = True
        ck.mark()
        q(c1, "error.continue", by_id, [1])
        ck.check("after_error", 1)

        # S9 a 50k-row result (twice), and a 5k-row one that is cached
        for i in (1, 2):
            self.big(c1, "big50k.%d" % i, "SELECT id, label, amount FROM %s WHERE id > %%s "
                     "ORDER BY id" % b, [0])
        bigish = "SELECT id, label, amount FROM %s WHERE id <= %%s ORDER BY id" % b
        self.big(c1, "bigish.1", bigish, [5000])
        ck.mark()
        self.big(c1, "bigish.2", bigish, [5000])
        ck.check("bigish", 1)

        # S10 writes followed by reads that must see them
        totals = "SELECT count(*) AS n, sum(amount) AS s FROM %s" % t
        q(c1, "write.prime", totals)
        ck.mark()
        q(c1, "write.cached", totals)
        ck.check("primed", 1)
        q(c1, "write.update", "UPDATE %s SET amount = amount + %%s, name = %%s WHERE id = %%s"
          % t, [decimal.Decimal("1.5"), "alpha2", 1])
        ck.mark()
        q(c1, "write.totals_after_update", totals)
        q(c1, "write.by_id_after_update", by_id, [1])
        ck.check("after_update", 2)
        ck.mark()
        q(c1, "write.totals_again", totals)
        q(c1, "write.by_id_again", by_id, [1])
        ck.check("after_update_repeat", 2)
        ck.mark()
        q(c2, "write.conn2_by_id", by_id, [1])
        ck.check("conn2_by_id", 1)
        q(c1, "write.delete", "DELETE FROM %s WHERE id = %%s" % t, [3])
        ck.mark()
        q(c1, "write.totals_after_delete", totals)
        q(c2, "write.conn2_after_delete", listing)
        q(c2, "write.conn2_by_id_after_delete", by_id, [1])
        ck.check("after_delete", 3)

        # S11 clean up
        q(c1, "cleanup", "DROP TABLE %s, %s" % (t, b))

    def pipelined(self, conn, step, stmts):
        """psycopg 3 pipeline mode: the statements go out together, with one Sync."""
        curs = []
        try:
            with conn.pipeline():
                for sql, params in stmts:
                    cur = self.ad.cursor(conn)
                    cur.execute(sql.replace("%s", self.ad.ph), params)
                    curs.append(cur)
            self.rec(step, [{"desc": self.ad.describe(c),
                             "rows": [[norm(v) for v in r] for r in c.fetchall()],
                             "status": c.statusmessage} for c in curs]
                     + [self.ad.txstatus(conn)])
        except self.ad.error_class() as e:
            self.rec(step, {"error": self.ad.sqlstate(e), "message": self.ad.errmsg(e)})
        finally:
            for c in curs:
                c.close()

    def big(self, conn, step, sql, params):
        sql = sql.replace("%s", self.ad.ph)
        cur = self.ad.cursor(conn)
        try:
            cur.execute(sql, params)
            rows = cur.fetchall()
            lines = ["%r|%r|%r" % tuple(r) for r in rows]
            self.rec(step, {"desc": self.ad.describe(cur), "count": len(rows),
                            "sum_id": sum(r[0] for r in rows),
                            "sum_amount": str(sum(r[2] for r in rows)),
                            "checksum": sha256_lines(lines),
                            "first": [norm(v) for v in rows[0]] if rows else None,
                            "last": [norm(v) for v in rows[-1]] if rows else None,
                            "status": cur.statusmessage})
        except self.ad.error_class() as e:
            self.rec(step, {"error": self.ad.sqlstate(e), "message": self.ad.errmsg(e)})
        finally:
            cur.close()
