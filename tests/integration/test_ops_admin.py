"""
The admin console: the virtual database `pgstash`, answered by pgstash itself.

Login: only users under admin.users, SCRAM-SHA-256 against the secret (from --make-secret or
PostgreSQL's own pg_authid); others get 28000, a wrong password 28P01. Commands through psql
(aligned tables and --csv), psycopg 3 (extended protocol, prepared), psycopg2 and raw wire:
SHOW STATS/TABLES/QUERIES/CLIENTS/CONFIG/VERSION after real traffic, EXPLAIN CACHE,
FLUSH ALL / FLUSH TABLE (one instance, two databases, and two instances sharing Redis),
unknown commands (42601, never a crash, the session stays usable).
"""

import base64
import re
import subprocess

import psycopg
import psycopg2
import pytest

from helpers import raw, raw_session, startup_outcome, unique
from ops_helpers import (ADMIN_PASSWORD, ADMIN_USER, SECRET_RE, admin_connect,  # noqa: F401
                         admin_query, admin_users, classify, expect, explain, kv, make_secret,
                         new_table, ops_proxy, prefix_of, prime, psql, psql_rows, q2,
                         scram_keys, settle, sqlcleanup)
from pgstash_harness import pgstash_binary, wait_until

pytestmark = pytest.mark.proxy_only

STATS_REQUIRED = ("hits", "misses", "bypasses", "fills", "writes", "invalidations",
                  "redis_errors", "redis_timeouts", "hit_p50_us", "hit_p99_us", "clients",
                  "hit_ratio", "redis")


def binary_version():
    out = subprocess.run([str(pgstash_binary()), "--version"], capture_output=True, text=True,
                         timeout=10).stdout
    m = re.search(r"\d+\.\d+\.\d+", out)
    assert m, "no version number in --version output %r" % out
    return m.group(0)


# --- secrets and login ------------------------------------------------------------------------

def test_make_secret_is_a_valid_scram_verifier():
    s1 = make_secret("s3cret-Pass")
    s2 = make_secret("s3cret-Pass")
    for s in (s1, s2):
        m = SECRET_RE.match(s)
        assert m, "not a SCRAM-SHA-256 secret: %r" % s
        iterations, salt, stored, server = (int(m.group(1)), base64.b64decode(m.group(2)),
                                            base64.b64decode(m.group(3)),
                                            base64.b64decode(m.group(4)))
        assert iterations >= 4096 and len(salt) >= 16
        # The keys are exactly RFC 5802's for this password and salt.
        assert (stored, server) == scram_keys("s3cret-Pass", salt, iterations), s
    assert s1 != s2, "two secrets of one password share their salt"
    # No password at all is refused rather than hashed.
    p = subprocess.run([str(pgstash_binary()), "--make-secret"], input="", capture_output=True,
                       text=True, timeout=10)
    assert p.returncode != 0 and not p.stdout.strip()


def test_admin_login_with_psql(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    p = psql(px, "SHOW VERSION")
    assert p.returncode == 0, p.stderr
    assert "pgstash" in p.stdout and binary_version() in p.stdout, p.stdout
    assert "(1 row)" in p.stdout, p.stdout


def test_wrong_password_is_28P01(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    kind, msg = startup_outcome(px, ADMIN_USER, database="pgstash", password="not the password")
    assert kind == "error" and msg.sqlstate == "28P01", msg
    assert msg.severity == "FATAL"
    p = psql(px, "SHOW VERSION", password="not the password")
    assert p.returncode != 0 and "password authentication failed" in p.stderr, p.stderr
    assert px.is_running()


def test_users_not_in_admin_users_get_28000(pgstash_factory, pg):
    px = ops_proxy(pgstash_factory)
    # The PostgreSQL superuser (trusted by PostgreSQL itself), an unknown name, and a user
    # that is an admin elsewhere but not here: none of them may use the console.
    for user in (pg.superuser, "nobody_" + unique("u"), pg.SCRAM_USER):
        kind, msg = startup_outcome(px, user, database="pgstash", password="whatever")
        assert kind == "error" and msg.sqlstate == "28000", (user, msg)
        assert msg.severity == "FATAL"
    p = psql(px, "SHOW STATS", user=pg.superuser)
    assert p.returncode != 0 and "FATAL" in p.stderr and not p.stdout.strip(), (p.stdout,
                                                                               p.stderr)
    # Ordinary databases are unaffected: the superuser still gets through to PostgreSQL.
    c = px.connect()
    assert q2(c, "SELECT 41 + 1") == [(42,)]
    c.close()


def test_secret_from_postgres_pg_authid(pgstash_factory, pg, sqlcleanup):
    role = unique("adm")
    pg.sql("SET password_encryption = 'scram-sha-256'; CREATE ROLE %s PASSWORD 'pg-made-pw'"
           % role)
    sqlcleanup.append(("DROP ROLE IF EXISTS %s" % role, None))
    secret = pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))[0][0]
    px = ops_proxy(pgstash_factory, users=[{"name": role, "secret": secret}])
    with admin_connect(px, role, "pg-made-pw") as c:
        assert admin_query(c, "SHOW VERSION")[1][0][0].startswith("pgstash")
    kind, msg = startup_outcome(px, role, database="pgstash", password="pg-made-PW")
    assert kind == "error" and msg.sqlstate == "28P01", msg


def test_several_admin_users(pgstash_factory):
    px = ops_proxy(pgstash_factory, users=admin_users(("alice", "alice-pw"), ("bob", "bob-pw")))
    for user, pw in (("alice", "alice-pw"), ("bob", "bob-pw")):
        with admin_connect(px, user, pw) as c:
            assert admin_query(c, "SHOW VERSION")[0] == ["version"]
    kind, msg = startup_outcome(px, "alice", database="pgstash", password="bob-pw")
    assert kind == "error" and msg.sqlstate == "28P01", msg


# --- SHOW commands after real traffic ---------------------------------------------------------

def traffic(px, t):
    """On one connection: a miss, two hits (two literals of one shape), a volatile_function
    bypass, a write that invalidates t. Returns the connection (still open)."""
    c = px.connect()
    expect(px, lambda: q2(c, "SELECT v FROM %s WHERE id = 1" % t), "miss")
    settle(px)
    expect(px, lambda: q2(c, "SELECT v FROM %s WHERE id = 1" % t), "hit")
    expect(px, lambda: q2(c, "SELECT v FROM %s WHERE id = 1" % t), "hit")
    expect(px, lambda: q2(c, "SELECT v FROM %s WHERE id = 2" % t), "miss")
    expect(px, lambda: q2(c, "SELECT id, now() FROM %s" % t), "bypass:volatile_function")
    q2(c, "UPDATE %s SET v = 'changed' WHERE id = 3" % t)
    settle(px)
    return c


def test_show_stats(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup)
    px = ops_proxy(pgstash_factory)
    c = traffic(px, t)
    try:
        rows, header = psql_rows(px, "SHOW STATS")
        assert header == ["stat", "value", "per_second"], header
        st = kv(rows)
        for key in STATS_REQUIRED:
            assert key in st, "SHOW STATS has no %r row: %r" % (key, sorted(st))
        num = {k: float(v) for k, v in st.items() if re.fullmatch(r"-?\d+(\.\d+)?", v or "")}
        assert num["hits"] == 2 and num["misses"] == 2 and num["bypasses"] == 1, st
        assert num["fills"] >= 2 and num["writes"] >= 1 and num["invalidations"] >= 1, st
        assert num["redis_errors"] == 0 and num["redis_timeouts"] == 0, st
        assert num["clients"] >= 2, "a client and this console are connected: %r" % st
        assert 0 < num["hit_p50_us"] <= num["hit_p99_us"] < 1e6, st
        assert abs(num["hit_ratio"] - 2 / 5) < 1e-3, st
        assert st.get("bypass.volatile_function") == "1", st
        assert "connected" in st["redis"] and "disconnected" not in st["redis"], st["redis"]
        # per_second: a rate for the counters, empty for gauges and percentiles.
        by_stat = {r["stat"]: r for r in rows}
        assert float(by_stat["hits"]["per_second"]) >= 0
        assert by_stat["hit_ratio"]["per_second"] == ""
        # Same numbers as /stats.
        js = px.stats()
        assert (js["hits"], js["misses"], js["bypass_total"]) == (2, 2, 1), js
    finally:
        c.close()


def test_show_tables_and_queries(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup)
    other = new_table(pg, sqlcleanup)
    px = ops_proxy(pgstash_factory, {"tables": {other: {"ttl": "7s"}}})
    c = traffic(px, t)
    try:
        prime(px, lambda: q2(c, "SELECT * FROM %s ORDER BY id" % other))
        rows, header = psql_rows(px, "SHOW TABLES")
        assert header == ["table", "ttl_ms", "version", "reads", "hits", "misses", "bypasses",
                          "hit_ratio", "invalidations", "row_security"], header
        tables = {r["table"]: r for r in rows}
        assert "test." + t in tables, "SHOW TABLES has no test.%s: %r" % (t, sorted(tables))
        r = tables["test." + t]
        assert r["ttl_ms"] == "60000", r
        assert r["row_security"] == "off", r
        assert int(r["hits"]) == 2 and int(r["misses"]) == 2 and int(r["bypasses"]) == 1, r
        assert int(r["reads"]) == 5, r
        assert abs(float(r["hit_ratio"]) - 0.4) < 1e-3, r
        assert int(r["invalidations"]) >= 1, r
        assert re.fullmatch(r"\d+", r["version"]), "version of a written table: %r" % r
        r2 = tables["test." + other]
        assert r2["ttl_ms"] == "7000" and int(r2["hits"]) == 1, r2

        rows, header = psql_rows(px, "SHOW QUERIES")
        assert header == ["query", "calls", "hits", "misses", "bypasses", "hit_ratio",
                          "decision"], header
        shape = [r for r in rows if t in r["query"] and "$1" in r["query"]
                 and "now()" not in r["query"]]
        assert len(shape) == 1, "id = 1 and id = 2 should be one shape with $1: %r" % rows
        s = shape[0]
        assert "= 1" not in s["query"] and "= 2" not in s["query"], s
        assert (int(s["calls"]), int(s["hits"]), int(s["misses"])) == (4, 2, 2), s
        assert s["decision"] == "cache", s
        assert abs(float(s["hit_ratio"]) - 0.5) < 1e-3, s
        vol = [r for r in rows if "now()" in r["query"] and t in r["query"]]
        assert len(vol) == 1 and vol[0]["decision"] == "volatile_function", rows
        assert int(vol[0]["bypasses"]) == 1 and int(vol[0]["hits"]) == 0, vol
    finally:
        c.close()


def test_show_clients(pgstash_factory, pg):
    px = ops_proxy(pgstash_factory)
    app = raw_session(px, pg.superuser)
    try:
        app_port = app.sock.getsockname()[1]
        with admin_connect(px) as adm:
            cols, rows = admin_query(adm, "SHOW CLIENTS")
            assert cols == ["id", "user", "database", "address", "worker", "state",
                            "connected_s"], cols
            recs = [dict(zip(cols, r)) for r in rows]
            mine = [r for r in recs if r["address"].endswith(":%d" % app_port)]
            assert len(mine) == 1, "no row for the client on port %d: %r" % (app_port, recs)
            r = mine[0]
            assert (r["user"], r["database"]) == (pg.superuser, "test"), r
            assert r["address"] == "127.0.0.1:%d" % app_port, r
            assert r["state"] == "idle", r
            assert int(r["worker"]) in range(px.config["workers"]), r
            assert int(r["connected_s"]) >= 0 and int(r["id"]) >= 0, r
            assert any(x["user"] == ADMIN_USER and x["database"] == "pgstash" for x in recs), recs
            # Inside a transaction block the state says so.
            app.simple_query("BEGIN")
            recs = [dict(zip(cols, x)) for x in admin_query(adm, "SHOW CLIENTS")[1]]
            r = [x for x in recs if x["address"].endswith(":%d" % app_port)][0]
            assert r["state"] == "in transaction", r
            app.simple_query("ROLLBACK")
    finally:
        app.close()
    with admin_connect(px) as adm:
        wait_until(lambda: not any(r[3].endswith(":%d" % app_port)
                                   for r in admin_query(adm, "SHOW CLIENTS")[1]),
                   timeout=10, message="the closed client to leave SHOW CLIENTS")


def test_show_config_and_version(pgstash_factory, pg, redis_factory):
    redis = redis_factory(password="redis-Pa55word")
    px = ops_proxy(pgstash_factory, {"tables": {"orders": {"ttl": "5s"},
                                                "audit_log": {"cache": False}},
                                     "cache": {"default_ttl": "90s"}}, redis=redis)
    rows, header = psql_rows(px, "SHOW CONFIG")
    assert header == ["key", "value"], header
    cfg = kv(rows, "key", "value")
    assert cfg["listen"] == "%s:%d" % (px.host, px.port), cfg
    assert cfg["upstream"] == "%s:%d" % (pg.host, pg.port), cfg
    assert cfg["cache.default_ttl"] in ("90s", "1m30s", "90000ms"), cfg
    assert cfg["cache.key_prefix"] == prefix_of(px), cfg
    assert "5s" in cfg["tables.orders"], cfg
    assert "cache=false" in cfg["tables.audit_log"].replace(" ", ""), cfg
    assert ADMIN_USER in cfg["admin.users"], cfg
    assert str(px.config_path) in cfg.get("file", ""), cfg
    # Secrets never leave the process: not the Redis password, not the admin secret.
    text = psql(px, "SHOW CONFIG").stdout
    assert "redis-Pa55word" not in text, text
    assert "SCRAM-SHA-256$" not in text, text

    with admin_connect(px) as c:
        cols, rows = admin_query(c, "SHOW VERSION")
    assert cols == ["version"] and len(rows) == 1, (cols, rows)
    assert rows[0][0].startswith("pgstash ") and binary_version() in rows[0][0], rows


def test_psql_prints_tables(pgstash_factory):
    """psql's default aligned output: header, separator, rows, '(N rows)'."""
    px = ops_proxy(pgstash_factory)
    p = psql(px, "SHOW STATS")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert re.match(r"^\s*stat\s*\|\s*value\s*\|\s*per_second\s*$", lines[0]), lines[:3]
    assert re.match(r"^-+\+-+\+-+$", lines[1]), lines[:3]
    m = re.search(r"^\((\d+) rows\)$", p.stdout, re.M)
    assert m and int(m.group(1)) == len([ln for ln in lines[2:] if "|" in ln]), p.stdout
    assert any(re.match(r"^\s*hits\s*\|\s*\d+\s*\|", ln) for ln in lines), p.stdout
    # Expanded display works too (it needs column names and per-row values).
    p = psql(px, "SHOW VERSION", args=("-x",))
    assert p.returncode == 0 and re.search(r"^version\s*\|\s*pgstash ", p.stdout, re.M), p.stdout


def test_extended_protocol_psycopg3_and_psycopg2(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    expected = {"SHOW STATS": ["stat", "value", "per_second"],
                "SHOW TABLES": ["table", "ttl_ms", "version", "reads", "hits", "misses",
                                "bypasses", "hit_ratio", "invalidations", "row_security"],
                "SHOW QUERIES": ["query", "calls", "hits", "misses", "bypasses", "hit_ratio",
                                 "decision"],
                "SHOW CLIENTS": ["id", "user", "database", "address", "worker", "state",
                                 "connected_s"],
                "SHOW CONFIG": ["key", "value"],
                "SHOW VERSION": ["version"]}
    with admin_connect(px) as c:
        for sql, cols in expected.items():
            got, rows = admin_query(c, sql)
            assert got == cols, (sql, got)
            assert sql == "SHOW TABLES" or sql == "SHOW QUERIES" or rows, sql
            # Server-side prepared and reused, past psycopg's prepare threshold.
            for _ in range(6):
                got2, rows2 = admin_query(c, sql, prepare=True)
                assert got2 == cols, (sql, got2)
        # Binary results are not something the console offers; text is what it sends.
        cur = c.execute("SHOW VERSION")
        assert cur.statusmessage.startswith("SHOW"), cur.statusmessage
        # Pipeline mode: several commands (one waits for Redis) in one round trip.
        with c.pipeline():
            c1 = c.execute("SHOW VERSION")
            c2 = c.execute("FLUSH ALL")
            c3 = c.execute("SHOW CONFIG")
        assert c1.fetchall()[0][0].startswith("pgstash")
        assert c2.statusmessage == "FLUSH ALL", c2.statusmessage
        assert kv([dict(zip(["key", "value"], r)) for r in c3.fetchall()],
                  "key", "value")["listen"]
    conn = psycopg2.connect(
        "host=%s port=%d dbname=pgstash user=%s password='%s'" % (px.host, px.port, ADMIN_USER,
                                                                  ADMIN_PASSWORD))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for sql, cols in expected.items():
                cur.execute(sql)
                assert [d.name for d in cur.description] == cols, sql
                cur.fetchall()
    finally:
        conn.close()


def test_empty_query_gets_empty_query_response(pgstash_factory):
    """As PostgreSQL does: an empty query string is answered with EmptyQueryResponse ('I')."""
    px = ops_proxy(pgstash_factory)
    with raw(px) as c:
        c.startup(ADMIN_USER, "pgstash", password=ADMIN_PASSWORD)
        msgs = c.simple_query("")
        assert [m.type for m in msgs] == ["I", "Z"], msgs
        msgs = c.simple_query("   ;  ")
        assert [m.type for m in msgs] == ["I", "Z"], msgs
        assert c.simple_query("SHOW VERSION")[-1].type == "Z"


# --- EXPLAIN CACHE --------------------------------------------------------------------------

def test_explain_cache(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "exp")
    nocache = new_table(pg, sqlcleanup, "expnc")
    view = unique("v_exp")
    pg.sql("CREATE VIEW %s AS SELECT id, v FROM %s WHERE id > 1" % (view, t))
    sqlcleanup.append(("DROP VIEW IF EXISTS %s" % view, None))
    vview = unique("v_now")
    pg.sql("CREATE VIEW %s AS SELECT id, now() AS at FROM %s" % (vview, t))
    sqlcleanup.append(("DROP VIEW IF EXISTS %s" % vview, None))
    px = ops_proxy(pgstash_factory, {"tables": {t: {"ttl": "10s"}, nocache: {"cache": False}}})
    with admin_connect(px) as c:
        e = explain(c, "SELECT v FROM %s WHERE id = 1" % t)
        assert list(e)[:9] == ["database", "statement", "kind", "cacheable", "reason",
                               "explanation", "tables", "ttl", "invalidates"], list(e)
        assert e["database"] == "test" and e["kind"] == "read", e
        assert e["cacheable"] == "yes", e
        assert t in e["tables"] and e["ttl"] == "10s", e
        assert not e["invalidates"], e
        assert t in e["statement"], e

        e = explain(c, "SELECT now()")
        assert e["cacheable"] == "no" and e["reason"] == "volatile_function", e
        assert e["explanation"] and e["explanation"] != e["reason"] and " " in e["explanation"]
        assert e["ttl"] is None or e["ttl"] == "", e

        e = explain(c, "UPDATE %s SET v = 'x' WHERE id = 1" % t)
        assert e["kind"] == "write" and e["cacheable"] == "no", e
        assert t in e["invalidates"].split(", "), e

        e = explain(c, "SELECT * FROM %s" % view)
        assert e["cacheable"] == "yes", "a view over a plain table, resolved to it: %r" % e
        assert t in e["tables"].split(", "), "the view's base table is what it is keyed on: %r" % e

        e = explain(c, "SELECT * FROM %s" % vview)
        assert e["cacheable"] == "no" and e["reason"] == "view", e

        e = explain(c, "SELECT * FROM %s" % nocache)
        assert e["cacheable"] == "no" and e["reason"] == "table_not_cached", e

        e = explain(c, "SELECT * FROM %s FOR UPDATE" % t)
        assert e["cacheable"] == "no", e

        e = explain(c, "SELEC garbage FROM")
        assert e["cacheable"] == "no" and e["reason"] == "parse_error", e

        # Without IN DATABASE it still answers (for some database it names).
        cols, rows = admin_query(c, "EXPLAIN CACHE SELECT 1")
        f = dict(rows)
        assert f["database"] and f["cacheable"] in ("yes", "no"), f

    # And it agrees with what really happens.
    cx = px.connect()
    try:
        expect(px, lambda: q2(cx, "SELECT now()"), "bypass:volatile_function")
        expect(px, lambda: q2(cx, "SELECT * FROM %s" % nocache), "bypass:table_not_cached")
        expect(px, lambda: q2(cx, "SELECT v FROM %s WHERE id = 1" % t), "miss")
    finally:
        cx.close()


# --- FLUSH ---------------------------------------------------------------------------------

def test_flush_table_and_flush_all(pgstash_factory, pg, sqlcleanup):
    a = new_table(pg, sqlcleanup, "fla")
    b = new_table(pg, sqlcleanup, "flb")
    # The same table name in a second database: FLUSH TABLE bumps it in every database.
    new_table(pg, sqlcleanup, dbname="postgres", name=a)
    px = ops_proxy(pgstash_factory)
    ct = px.connect()
    cp = px.connect(dbname="postgres")
    reads = {
        "a@test": lambda: q2(ct, "SELECT * FROM %s ORDER BY id" % a),
        "b@test": lambda: q2(ct, "SELECT * FROM %s ORDER BY id" % b),
        "a@postgres": lambda: q2(cp, "SELECT * FROM %s ORDER BY id" % a),
    }
    try:
        with admin_connect(px) as adm:
            for fn in reads.values():
                prime(px, fn)
            cur = adm.execute("FLUSH TABLE %s" % a.upper())   # folded like PostgreSQL does
            assert cur.statusmessage == "FLUSH TABLE", cur.statusmessage
            assert classify(px, reads["a@test"])[1] == "miss"
            assert classify(px, reads["a@postgres"])[1] == "miss", \
                "FLUSH TABLE must bump the table in every database"
            assert classify(px, reads["b@test"])[1] == "hit", "FLUSH TABLE touched another table"
            settle(px)
            for fn in reads.values():
                assert classify(px, fn)[1] == "hit"
            cur = adm.execute("FLUSH ALL")
            assert cur.statusmessage == "FLUSH ALL", cur.statusmessage
            for name, fn in reads.items():
                assert classify(px, fn)[1] == "miss", "%s still hit after FLUSH ALL" % name
            settle(px)
            # Caching goes on afterwards, and the console session is still usable.
            for fn in reads.values():
                assert classify(px, fn)[1] == "hit"
            assert admin_query(adm, "SHOW VERSION")[1]
            # A quoted name keeps its case; flushing an unknown table is harmless.
            assert adm.execute('FLUSH TABLE "NoSuchTable"').statusmessage == "FLUSH TABLE"
            assert classify(px, reads["b@test"])[1] == "hit"
    finally:
        ct.close()
        cp.close()


@pytest.mark.parametrize("consistency", ["strict", "local"])
def test_flush_across_instances(pgstash_factory, pg, sqlcleanup, consistency):
    a = new_table(pg, sqlcleanup, "xa")
    b = new_table(pg, sqlcleanup, "xb")
    prefix = unique("shared")
    cfg = {"cache": {"consistency": consistency}}
    p1 = ops_proxy(pgstash_factory, cfg, prefix=prefix)
    p2 = ops_proxy(pgstash_factory, cfg, prefix=prefix)
    c1, c2 = p1.connect(), p2.connect()
    # Each instance reads its own statement texts (own cache keys), so a read that refills on
    # one instance can never turn the other instance's next read into a hit.
    reads = {p1: {a: lambda: q2(c1, "SELECT * FROM %s ORDER BY id" % a),
                  b: lambda: q2(c1, "SELECT * FROM %s ORDER BY id" % b)},
             p2: {a: lambda: q2(c2, "SELECT id, v FROM %s ORDER BY id" % a),
                  b: lambda: q2(c2, "SELECT id, v FROM %s ORDER BY id" % b)}}

    def now_or_soon(px, table, kind):
        """strict: the very next read; local: within the invalidation channel's delay."""
        if consistency == "strict":
            got = classify(px, reads[px][table])[1]
            assert got == kind, "%s on %s: expected a %s, got a %s" % (table, px, kind, got)
            return
        wait_until(lambda: classify(px, reads[px][table])[1] == kind, timeout=5,
                   interval=0.05, message="a read of %s on %s to be a %s" % (table, px, kind))

    def prime_all():
        for px in (p1, p2):
            settle(px)
            for table in (a, b):
                wait_until(lambda: classify(px, reads[px][table])[1] == "hit", timeout=5,
                           interval=0.05, message="%s cached on %s" % (table, px))
    try:
        prime_all()
        with admin_connect(p1) as adm:
            assert adm.execute("FLUSH ALL").statusmessage == "FLUSH ALL"
        # The instance that acknowledged the FLUSH serves nothing older, in either mode.
        got = classify(p1, reads[p1][a])[1]
        assert got == "miss", "read on the flushing instance right after FLUSH ALL: %s" % got
        for table in (a, b):
            now_or_soon(p2, table, "miss")
        prime_all()
        with admin_connect(p2) as adm:
            assert adm.execute("FLUSH TABLE %s" % a).statusmessage == "FLUSH TABLE"
        got = classify(p2, reads[p2][a])[1]
        assert got == "miss", "read on the flushing instance right after FLUSH TABLE: %s" % got
        now_or_soon(p1, a, "miss")
        assert classify(p1, reads[p1][b])[1] == "hit", "FLUSH TABLE touched another table"
        assert classify(p2, reads[p2][b])[1] == "hit", "FLUSH TABLE touched another table"
    finally:
        c1.close()
        c2.close()


def test_flush_when_redis_is_down(pgstash_factory, redis_factory):
    redis = redis_factory()
    px = ops_proxy(pgstash_factory, redis=redis)
    with admin_connect(px) as adm:
        redis.kill()
        with pytest.raises(psycopg.Error) as ei:
            adm.execute("FLUSH ALL")
        assert ei.value.sqlstate and ei.value.sqlstate != "42601", ei.value
        assert admin_query(adm, "SHOW VERSION")[1], "session unusable after a failed FLUSH"
        redis.start()

        def flushed():
            try:
                return adm.execute("FLUSH ALL").statusmessage == "FLUSH ALL"
            except psycopg.Error:
                return False
        wait_until(flushed, timeout=20, interval=0.3, message="FLUSH ALL after Redis came back")
    assert px.is_running()


# --- errors ----------------------------------------------------------------------------------

JUNK = ["SELECT 1", "BEGIN", "SHOW", "SHOW EVERYTHING", "SHOW STATS EXTRA", "FLUSH", "FLUSH TABLE",
        "FLUSH TABLE a b", "FLUSH EVERYTHING", "EXPLAIN", "EXPLAIN CACHE", "RELOAD NOW",
        "SET x = 1", "x" * 20000, "SHOW " + "é" * 3000, "DROP DATABASE test", "\x01\x02",
        "SHOW STATS; SHOW VERSION"]


def test_unknown_commands_are_errors_not_crashes(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    # Simple protocol, raw: ErrorResponse 42601 then ReadyForQuery, the session goes on.
    with raw(px) as c:
        c.startup(ADMIN_USER, "pgstash", password=ADMIN_PASSWORD)
        for sql in JUNK:
            msgs = c.simple_query(sql)
            errs = [m for m in msgs if m.type == "E"]
            assert len(errs) == 1 and errs[0].sqlstate == "42601", (sql[:40], msgs)
            assert errs[0].severity == "ERROR" and errs[0].message, errs[0]
            assert msgs[-1].type == "Z" and msgs[-1].tx_status == "I", msgs
            assert [m.type for m in c.simple_query("SHOW VERSION")] == ["T", "D", "C", "Z"]
    # Extended protocol (psycopg 3): a SyntaxError, the connection stays usable.
    with admin_connect(px) as c:
        for sql in JUNK[:8]:
            with pytest.raises(psycopg.errors.SyntaxError):
                c.execute(sql)
            assert admin_query(c, "SHOW VERSION")[1]
        with pytest.raises(psycopg.Error):
            c.execute("SHOW STATS WHERE x = %s", (1,))
        assert admin_query(c, "SHOW VERSION")[1]
    # psql: a clear message on stderr, exit status 1 (ON_ERROR_STOP), nothing crashed.
    p = psql(px, "SHOW NONSENSE")
    assert p.returncode != 0 and "ERROR" in p.stderr and "SHOW" in p.stderr, p.stderr
    assert px.is_running()
    with admin_connect(px) as c:
        assert admin_query(c, "SHOW VERSION")[1]


def test_raw_extended_protocol_edge_cases(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    with raw(px) as c:
        c.startup(ADMIN_USER, "pgstash", password=ADMIN_PASSWORD)
        # Execute of a portal that was never bound, Bind of a statement never parsed: errors,
        # and everything up to Sync is skipped.
        c.execute("nope")
        c.sync()
        types = [m.type for m in c.read_until_ready()]
        assert types[0] == "E" and types[-1] == "Z", types
        c.bind("", "never_parsed")
        c.execute("")
        c.sync()
        msgs = c.read_until_ready()
        assert msgs[0].type == "E" and msgs[0].sqlstate == "26000", msgs
        # A named statement, described, bound twice.
        c.parse("s1", "SHOW VERSION")
        c.describe("S", "s1")
        c.sync()
        types = [m.type for m in c.read_until_ready()]
        assert types[0] == "1" and types[-1] == "Z", types
        for _ in range(2):
            c.bind("", "s1")
            c.describe("P")
            c.execute("")
            c.sync()
            types = [m.type for m in c.read_until_ready()]
            assert types == ["2", "T", "D", "C", "Z"], types
        c.close_object("S", "s1")
        c.sync()
        assert [m.type for m in c.read_until_ready()] == ["3", "Z"]
        assert c.simple_query("SHOW VERSION")[-1].type == "Z"


def test_flush_table_after_redis_restart_with_long_lived_sessions(pgstash_factory, pg,
                                                                  redis_factory, sqlcleanup):
    """Connection pools keep sessions for hours. After Redis restarts empty (or evicts keys
    under allkeys-lru), entries cached by such sessions must still be flushable by name."""
    t = new_table(pg, sqlcleanup, "rr")
    redis = redis_factory()
    px = ops_proxy(pgstash_factory, redis=redis)
    c = px.connect()
    read = lambda: q2(c, "SELECT * FROM %s ORDER BY id" % t)  # noqa: E731
    try:
        prime(px, read)
        redis.restart()   # same port, contents lost
        # The same session goes on and caches the table again in the new Redis.
        wait_until(lambda: classify(px, read)[1] == "hit", timeout=20, interval=0.2,
                   message="the long-lived session to hit again after the Redis restart")
        with admin_connect(px) as adm:
            assert adm.execute("FLUSH TABLE %s" % t).statusmessage == "FLUSH TABLE"
        got = classify(px, read)[1]
        members = redis.command("SMEMBERS", "%s:dbs" % prefix_of(px))
        assert got == "miss", ("FLUSH TABLE reported success but the table's entry still hits "
                               "(%s) for a session opened before Redis restarted; the databases "
                               "it knows to flush in (SMEMBERS %s:dbs): %r"
                               % (got, prefix_of(px), members))
    finally:
        c.close()


def test_flush_table_schema_qualified(pgstash_factory, pg, sqlcleanup):
    """Tables are tagged by bare name; `FLUSH TABLE public.t` (how operators write table
    names) must flush t, not silently flush nothing."""
    t = new_table(pg, sqlcleanup, "sq")
    px = ops_proxy(pgstash_factory)
    c = px.connect()
    read = lambda: q2(c, "SELECT * FROM %s ORDER BY id" % t)  # noqa: E731
    try:
        prime(px, read)
        with admin_connect(px) as adm:
            try:
                status = adm.execute("FLUSH TABLE public.%s" % t).statusmessage
            except psycopg.Error as e:
                status = "error %s" % e.sqlstate   # refusing it clearly is acceptable too
        if status == "FLUSH TABLE":
            got = classify(px, read)[1]
            assert got == "miss", ("FLUSH TABLE public.%s answered FLUSH TABLE but the table's "
                                   "entries still hit" % t)
    finally:
        c.close()


def crafted_secret(password, iterations, salt):
    stored, server = scram_keys(password, salt, iterations)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return "SCRAM-SHA-256$%d:%s$%s:%s" % (iterations, b64(salt), b64(stored), b64(server))


def test_secrets_with_other_iteration_counts_and_salts(pgstash_factory):
    """Verifiers made elsewhere (PostgreSQL 16's scram_iterations, other tools) use other
    iteration counts and salt sizes: they verify the same way."""
    users = [{"name": "it10k", "secret": crafted_secret("pw-10k", 10000, b"0123456789abcdef")},
             {"name": "salt24", "secret": crafted_secret("pw-24", 4096, bytes(range(24)))},
             {"name": "it1", "secret": crafted_secret("pw-1", 1, b"\xff" * 16)}]
    px = ops_proxy(pgstash_factory, users=users)
    for name, pw in (("it10k", "pw-10k"), ("salt24", "pw-24"), ("it1", "pw-1")):
        with admin_connect(px, name, pw) as c:
            assert admin_query(c, "SHOW VERSION")[1], name
        kind, msg = startup_outcome(px, name, database="pgstash", password=pw + "x")
        assert kind == "error" and msg.sqlstate == "28P01", (name, msg)


@pytest.mark.parametrize("secret", [
    "SCRAM-SHA-256$4096:abc$def:ghi",                                  # keys not 32 bytes
    "SCRAM-SHA-256$4096:!!notbase64!!$%s:%s" % ("A" * 43 + "=", "A" * 43 + "="),
    "SCRAM-SHA-256$0:c2FsdHNhbHRzYWx0c2FsdA==$%s:%s" % ("A" * 43 + "=", "A" * 43 + "="),
], ids=["short-keys", "bad-base64-salt", "zero-iterations"])
def test_malformed_secret_refused_with_file_line(tmp_path, secret):
    """A verifier that can never match must be refused when the file is read (FILE:LINE), as
    other malformed secrets are, not accepted and then turned into a misleading 28000."""
    f = tmp_path / "admin.yaml"
    f.write_text('admin:\n  users:\n    - name: admin\n      secret: "%s"\n' % secret)
    p = subprocess.run([str(pgstash_binary()), "--check-config", "-c", str(f)],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0, "accepted an unusable secret %r: %s" % (secret, p.stdout)
    assert re.search(re.escape(str(f)) + r":\d+", p.stderr + p.stdout), p.stderr
