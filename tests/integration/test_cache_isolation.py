"""
No cached result is ever served across what makes results differ: users with different
privileges or rows, row-level security keyed on a session setting (SET, set_config(), SET
LOCAL, start-up options, ALTER ROLE … SET), REVOKE after a cached read, SET ROLE / SET
SESSION AUTHORIZATION, search_path (two schemas with the same table name), databases, output
settings (TimeZone, DateStyle, bytea_output, …) and temporary tables shadowing real ones.
Every read is compared with what PostgreSQL itself returns to that session.
"""

import psycopg
import psycopg2
import pytest

from cache_helpers import (classify, cleanup, connect3, expect, make_proxy, prime,  # noqa: F401
                           q2, q3, settle)
from helpers import raw_session, unique

pytestmark = pytest.mark.proxy_only


def rows_of(conn, sql):
    return q2(conn, sql)


# --- users, privileges, RLS ---------------------------------------------------------------------

def make_owned_table(pg, cleanup, users):
    """A table with RLS: each user sees the rows whose owner is current_user."""
    t = cleanup.table("own")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, owner text, v text)" % t)
    rows = []
    for i, u in enumerate(users):
        for j in range(i + 1):
            rows.append("(%d, '%s', '%s-%d')" % (i * 10 + j, u, u, j))
    pg.sql("INSERT INTO %s VALUES %s" % (t, ", ".join(rows)))
    pg.sql("ALTER TABLE %s ENABLE ROW LEVEL SECURITY" % t)
    pg.sql("CREATE POLICY own_rows ON %s USING (owner = current_user)" % t)
    for u in users:
        pg.sql("GRANT SELECT ON %s TO %s" % (t, u))
    return t


def make_roles(pg, cleanup, n, prefix="u"):
    roles = [cleanup.role(prefix) for _ in range(n)]
    for r in roles:
        pg.sql("CREATE ROLE %s LOGIN" % r)
    return roles


def test_two_users_never_share(pg, pgstash_factory, cleanup):
    ua, ub = make_roles(pg, cleanup, 2)
    t = make_owned_table(pg, cleanup, [ua, ub])
    priv = cleanup.table("priv")
    pg.sql("CREATE TABLE %s (id int, secret text)" % priv)
    pg.sql("INSERT INTO %s VALUES (1, 'for ua only')" % priv)
    pg.sql("GRANT SELECT ON %s TO %s" % (priv, ua))
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, owner, v FROM %s ORDER BY id" % t
    psql = "SELECT * FROM %s" % priv
    want = {u: q2(pg.connect(user=u), sql) for u in (ua, ub)}
    assert want[ua] != want[ub] and want[ua] and want[ub]
    a, b = px.connect(user=ua), px.connect(user=ub)
    try:
        assert prime(px, lambda: q2(a, sql))[1] == want[ua]
        assert prime(px, lambda: q2(a, psql))[1] == [(1, "for ua only")]
        for _ in range(3):
            assert q2(b, sql) == want[ub], "user %s got another user's cached rows" % ub
            assert q2(a, sql) == want[ua]
        # ub has no privilege at all on priv: exactly PostgreSQL's error, never ua's rows.
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as through:
            q2(b, psql)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as direct:
            q2(pg.connect(user=ub), psql)
        assert str(through.value) == str(direct.value)
        # Extended protocol too.
        with connect3(px, user=ub) as b3, connect3(px, user=ua) as a3:
            assert q3(a3, sql + " LIMIT %s", (10,)) == want[ua]
            settle(px)
            assert q3(b3, sql + " LIMIT %s", (10,)) == want[ub]
    finally:
        a.close()
        b.close()


def test_revoke_after_cached_read(pg, pgstash_factory, cleanup):
    (ua,) = make_roles(pg, cleanup, 1)
    t = cleanup.table("rev")
    pg.sql("CREATE TABLE %s (id int, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'visible')" % t)
    pg.sql("GRANT SELECT ON %s TO %s" % (t, ua))
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s" % t
    a, su = px.connect(user=ua), px.connect()
    try:
        assert prime(px, lambda: q2(a, sql))[1] == [(1, "visible")]
        q2(su, "REVOKE SELECT ON %s FROM %s" % (t, ua))
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as through:
            q2(a, sql)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as direct:
            q2(pg.connect(user=ua), sql)
        assert str(through.value) == str(direct.value)
        assert "permission denied" in str(through.value)
        # A new session of the same user too (extended protocol).
        with connect3(px, user=ua) as a3:
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as e3:
                q3(a3, sql)
            assert "permission denied" in str(e3.value)
        q2(su, "GRANT SELECT ON %s TO %s" % (t, ua))
        assert q2(a, sql) == [(1, "visible")]
        # Column privileges: REVOKE on the table, GRANT on one column only.
        prime(px, lambda: q2(a, sql))
        q2(su, "REVOKE SELECT ON %s FROM %s" % (t, ua))
        q2(su, "GRANT SELECT (id) ON %s TO %s" % (t, ua))
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            q2(a, sql)
        assert q2(a, "SELECT id FROM %s" % t) == [(1,)]
    finally:
        a.close()
        su.close()


def test_policy_changes_through_pgstash(pg, pgstash_factory, cleanup):
    ua, ub = make_roles(pg, cleanup, 2)
    t = make_owned_table(pg, cleanup, [ua, ub])
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, owner FROM %s ORDER BY id" % t
    a, su = px.connect(user=ua), px.connect()
    try:
        assert prime(px, lambda: q2(a, sql))[1] == [(0, ua)]
        q2(su, "CREATE POLICY all_rows ON %s USING (true)" % t)
        assert q2(a, sql) == [(0, ua), (10, ub), (11, ub)], "new policy: cached rows served"
        prime(px, lambda: q2(a, sql))
        q2(su, "DROP POLICY all_rows ON %s" % t)
        assert q2(a, sql) == [(0, ua)]
        prime(px, lambda: q2(a, sql))
        q2(su, "ALTER TABLE %s DISABLE ROW LEVEL SECURITY" % t)
        assert len(q2(a, sql)) == 3
        prime(px, lambda: q2(a, sql))
        q2(su, "ALTER TABLE %s ENABLE ROW LEVEL SECURITY" % t)
        assert q2(a, sql) == [(0, ua)]
        prime(px, lambda: q2(a, sql))
        q2(su, "ALTER POLICY own_rows ON %s USING (owner <> current_user)" % t)
        assert q2(a, sql) == [(10, ub), (11, ub)]
    finally:
        a.close()
        su.close()


TENANT_SQL = """
CREATE TABLE {t} (id int PRIMARY KEY, tenant text, v text);
INSERT INTO {t} VALUES (1, 'a', 'a-one'), (2, 'a', 'a-two'), (3, 'b', 'b-three'),
                       (4, 'c', 'c-four');
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON {t} USING (tenant = current_setting('app.tenant_id', true));
GRANT SELECT ON {t} TO {role};
"""

TENANT_ROWS = {"a": [(1, "a", "a-one"), (2, "a", "a-two")], "b": [(3, "b", "b-three")],
               "c": [(4, "c", "c-four")], None: []}


def tenant_setup(pg, cleanup):
    (role,) = make_roles(pg, cleanup, 1, "app")
    t = cleanup.table("tenant")
    pg.sql(TENANT_SQL.format(t=t, role=role))
    return role, t


@pytest.mark.parametrize("order", ["ab", "ba"])
def test_rls_tenant_guc_same_connection(pg, pgstash_factory, cleanup, order):
    role, t = tenant_setup(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect(user=role)
    try:
        x, y = order
        q2(c, "SET app.tenant_id = '%s'" % x)
        assert prime(px, lambda: q2(c, sql))[1] == TENANT_ROWS[x]
        q2(c, "SET app.tenant_id = '%s'" % y)
        assert q2(c, sql) == TENANT_ROWS[y], "tenant %s got tenant %s's cached rows" % (y, x)
        settle(px)
        assert expect(px, lambda: q2(c, sql), "hit") == TENANT_ROWS[y]
        q2(c, "SET app.tenant_id = '%s'" % x)
        assert expect(px, lambda: q2(c, sql), "hit") == TENANT_ROWS[x]
        # set_config(), in a SELECT of its own.
        assert q2(c, "SELECT set_config('app.tenant_id', '%s', false)" % y) == [(y,)]
        assert q2(c, sql) == TENANT_ROWS[y]
        assert q2(c, "SELECT set_config('app.tenant_id', 'c', false)") == [("c",)]
        assert q2(c, sql) == TENANT_ROWS["c"]
        # SET LOCAL in a block: the block sees its tenant, and after COMMIT the old one is back.
        q2(c, "SET app.tenant_id = '%s'" % x)
        q2(c, "BEGIN")
        q2(c, "SET LOCAL app.tenant_id = '%s'" % y)
        assert q2(c, sql) == TENANT_ROWS[y]
        q2(c, "COMMIT")
        assert q2(c, sql) == TENANT_ROWS[x], "SET LOCAL leaked past COMMIT"
        # set_config(…, true) inside a block, then ROLLBACK.
        q2(c, "BEGIN")
        q2(c, "SELECT set_config('app.tenant_id', '%s', true)" % y)
        assert q2(c, sql) == TENANT_ROWS[y]
        q2(c, "ROLLBACK")
        assert q2(c, sql) == TENANT_ROWS[x]
        # SET inside a block that rolls back: the setting reverts.
        q2(c, "BEGIN")
        q2(c, "SET app.tenant_id = '%s'" % y)
        assert q2(c, sql) == TENANT_ROWS[y]
        q2(c, "ROLLBACK")
        assert q2(c, sql) == TENANT_ROWS[x], "SET rolled back, but the other tenant's rows"
        # RESET: no tenant at all.
        q2(c, "RESET app.tenant_id")
        assert q2(c, sql) == []
        q2(c, "SET app.tenant_id = '%s'" % y)
        q2(c, "DISCARD ALL")
        assert q2(c, sql) == []
    finally:
        c.close()


def test_rls_tenant_guc_across_connections(pg, pgstash_factory, cleanup):
    role, t = tenant_setup(pg, cleanup)
    px1 = make_proxy(pgstash_factory)
    px2 = make_proxy(pgstash_factory, prefix=px1.config["cache"]["key_prefix"])
    sql = "SELECT * FROM %s ORDER BY id" % t
    conns = {"a": px1.connect(user=role), "b": px1.connect(user=role),
             "c": px2.connect(user=role, options="-c app.tenant_id=c")}
    ext = {"a": connect3(px2, user=role), "b": connect3(px1, user=role)}
    try:
        for k in ("a", "b"):
            q2(conns[k], "SET app.tenant_id = '%s'" % k)
            q3(ext[k], "SELECT set_config('app.tenant_id', %s, false)", (k,))
        for i in range(4):
            for k in ("a", "b", "c") if i % 2 == 0 else ("c", "b", "a"):
                assert q2(conns[k], sql) == TENANT_ROWS[k], "tenant %s, round %d" % (k, i)
                if k in ext:
                    assert q3(ext[k], sql) == TENANT_ROWS[k], "tenant %s (extended)" % k
            settle(px1)
            settle(px2)
        assert px1.stats()["hits"] + px2.stats()["hits"] >= 6
    finally:
        for c in list(conns.values()) + list(ext.values()):
            c.close()


def test_rls_tenant_from_role_setting(pg, pgstash_factory, cleanup):
    """ALTER ROLE … SET app.tenant_id: two roles, same text, each its tenant's rows."""
    role, t = tenant_setup(pg, cleanup)
    rb, rc = make_roles(pg, cleanup, 2, "rs")
    for r, tenant in ((rb, "b"), (rc, "c")):
        pg.sql("GRANT %s TO %s" % (role, r))
        pg.sql("ALTER ROLE %s SET app.tenant_id = '%s'" % (r, tenant))
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    b, c = px.connect(user=rb), px.connect(user=rc)
    try:
        assert prime(px, lambda: q2(b, sql))[1] == TENANT_ROWS["b"]
        assert q2(c, sql) == TENANT_ROWS["c"]
        # Both roles have the same privileges; a third session of rb with another tenant.
        b2 = px.connect(user=rb)
        try:
            q2(b2, "SET app.tenant_id = 'a'")
            assert q2(b2, sql) == TENANT_ROWS["a"]
        finally:
            b2.close()
    finally:
        b.close()
        c.close()


def test_set_role_and_session_authorization(pg, pgstash_factory, cleanup):
    ua, ub, nopriv = make_roles(pg, cleanup, 3)
    t = make_owned_table(pg, cleanup, [ua, ub])
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, owner FROM %s ORDER BY id" % t
    su = px.connect()
    try:
        all_rows = [(0, ua), (10, ub), (11, ub)]
        assert prime(px, lambda: q2(su, sql))[1] == all_rows
        q2(su, "SET ROLE %s" % ua)
        assert q2(su, sql) == [(0, ua)], "SET ROLE: superuser's cached rows served"
        settle(px)
        q2(su, "SET ROLE %s" % ub)
        assert q2(su, sql) == [(10, ub), (11, ub)]
        q2(su, "SET ROLE %s" % nopriv)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            q2(su, sql)
        q2(su, "RESET ROLE")
        assert expect(px, lambda: q2(su, sql), "hit") == all_rows
        q2(su, "SET SESSION AUTHORIZATION %s" % ua)
        assert q2(su, sql) == [(0, ua)]
        q2(su, "RESET SESSION AUTHORIZATION")
        assert q2(su, sql) == all_rows
        # SET ROLE inside a block, rolled back.
        q2(su, "BEGIN")
        q2(su, "SET ROLE %s" % ub)
        assert q2(su, sql) == [(10, ub), (11, ub)]
        q2(su, "ROLLBACK")
        assert q2(su, sql) == all_rows
        # set_config('role', …) is SET ROLE too.
        q2(su, "SELECT set_config('role', '%s', false)" % ua)
        assert q2(su, sql) == [(0, ua)]
    finally:
        su.close()


# --- search_path, databases, output settings ----------------------------------------------------

def test_search_path_two_schemas_same_table(pg, pgstash_factory, cleanup):
    s1, s2 = unique("sa"), unique("sb")
    name = unique("same")
    for s, v in ((s1, "from s1"), (s2, "from s2")):
        cleanup.add("DROP SCHEMA IF EXISTS %s CASCADE" % s)
        pg.sql("CREATE SCHEMA %s" % s)
        pg.sql("CREATE TABLE %s.%s (id int, v text)" % (s, name))
        pg.sql("INSERT INTO %s.%s VALUES (1, '%s')" % (s, name, v))
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s" % name
    c = px.connect()
    c2 = px.connect(options="-c search_path=%s" % s2)
    try:
        q2(c, "SET search_path = %s, public" % s1)
        assert prime(px, lambda: q2(c, sql))[1] == [("from s1",)]
        q2(c, "SET search_path = %s, public" % s2)
        assert q2(c, sql) == [("from s2",)], "search_path changed, other schema's rows served"
        assert q2(c2, sql) == [("from s2",)]
        settle(px)
        q2(c, "SELECT set_config('search_path', '%s', false)" % s1)
        assert q2(c, sql) == [("from s1",)]
        assert q2(c2, sql) == [("from s2",)]
        with connect3(px, options="-c search_path=%s" % s1) as c3:
            assert q3(c3, sql) == [("from s1",)]
            q3(c3, "SET search_path TO %s" % s2)
            assert q3(c3, sql) == [("from s2",)]
        # A write to one schema's table: the read through the path is fresh.
        q2(c, "UPDATE %s.%s SET v = 'new s1'" % (s1, name))
        assert q2(c, sql) == [("new s1",)]
        assert q2(c2, sql) == [("from s2",)]
    finally:
        c.close()
        c2.close()


def test_databases_never_share(pg, pgstash_factory, cleanup):
    db2 = unique("db")
    name = unique("dbt")
    pg.sql("CREATE DATABASE %s" % db2, dbname="postgres")
    try:
        for db, v in (("test", "in test"), (db2, "in db2")):
            pg.sql("CREATE TABLE %s (v text)" % name, dbname=db)
            pg.sql("INSERT INTO %s VALUES ('%s')" % (name, v), dbname=db)
        cleanup.add("DROP TABLE IF EXISTS %s" % name)
        px = make_proxy(pgstash_factory)
        sql = "SELECT v FROM %s" % name
        a, b = px.connect(), px.connect(dbname=db2)
        try:
            assert prime(px, lambda: q2(a, sql))[1] == [("in test",)]
            assert q2(b, sql) == [("in db2",)]
            settle(px)
            assert q2(b, sql) == [("in db2",)]
            q2(b, "UPDATE %s SET v = 'db2 new'" % name)
            assert q2(b, sql) == [("db2 new",)]
            assert q2(a, sql) == [("in test",)]
        finally:
            a.close()
            b.close()
    finally:
        pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
               (db2,), dbname="postgres")
        pg.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db2, dbname="postgres")


@pytest.mark.parametrize("setting,value", [
    ("TimeZone", "'Asia/Tokyo'"),
    ("DateStyle", "'German, DMY'"),
    ("IntervalStyle", "'iso_8601'"),
    ("bytea_output", "'escape'"),
    ("extra_float_digits", "0"),
])
def test_output_settings_change_the_key(pg, pgstash_factory, cleanup, setting, value):
    """Same text, another output setting: the bytes PostgreSQL sends differ, and so must
    pgstash's (compared raw, message by message)."""
    t = cleanup.table("fmt")
    pg.sql("CREATE TABLE %s (ts timestamptz, d date, iv interval, b bytea, f float8, m money)"
           % t)
    pg.sql("INSERT INTO %s VALUES ('2024-05-06 07:08:09.5+00', '2024-05-06', "
           "'1 day 2 hours', '\\x00ff41', 1.0 / 3, 12.5)" % t)
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s" % t
    with raw_session(px, pg.superuser) as c, raw_session(pg, pg.superuser) as d:
        base = d.simple_query(sql)
        assert c.simple_query(sql) == base
        settle(px)
        assert expect(px, lambda: c.simple_query(sql), "hit") == base
        for conn in (c, d):
            msgs = conn.simple_query("SET %s = %s" % (setting, value))
            assert msgs[-1].type == "Z" and not any(m.type == "E" for m in msgs), msgs
        want = d.simple_query(sql)
        assert want != base, "the setting changed nothing: bad test"
        assert c.simple_query(sql) == want, "%s changed, the old bytes were served" % setting
        settle(px)
        assert c.simple_query(sql) == want
        # And a fresh session with the setting in its start-up packet.
        with raw_session(px, pg.superuser,
                         params={"options": "-c %s=%s" % (setting, value.strip("'")
                                                          .replace(" ", "\\ "))}) as e:
            assert e.simple_query(sql) == want
        for conn in (c, d):
            conn.simple_query("RESET %s" % setting)
        assert c.simple_query(sql) == base


# --- temporary tables ---------------------------------------------------------------------------

@pytest.mark.parametrize("create", [
    "CREATE TEMP TABLE {t} (id int, v text); INSERT INTO {t} VALUES (1, 'temp')",
    "CREATE TEMPORARY TABLE {t} AS SELECT 1 AS id, 'temp'::text AS v",
    "SELECT 1 AS id, 'temp'::text AS v INTO TEMP {t}",
    "DO $$ BEGIN CREATE TEMP TABLE {t} (id int, v text); "
    "INSERT INTO {t} VALUES (1, 'temp'); END $$",
], ids=["create_temp", "create_temp_as", "select_into_temp", "do_block"])
def test_temp_table_shadows_real_table_only_in_its_session(pg, pgstash_factory, cleanup, create):
    t = cleanup.table("shadow")
    pg.sql("CREATE TABLE %s (id int, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'real'), (2, 'real')" % t)
    px = make_proxy(pgstash_factory)
    sql = "SELECT id, v FROM %s ORDER BY id" % t
    real = [(1, "real"), (2, "real")]
    a, b = px.connect(), px.connect()
    try:
        assert prime(px, lambda: q2(a, sql))[1] == real
        for stmt in create.format(t=t).split("; ") if "DO $$" not in create else [
                create.format(t=t)]:
            q2(a, stmt)
        got, kind = classify(px, lambda: q2(a, sql))
        assert got == [(1, "temp")], "the session's temp table is shadowed by the cached real one"
        assert kind == "bypass:session_temp_table", kind
        assert q2(a, "SELECT id, v FROM pg_temp.%s ORDER BY id" % t) == [(1, "temp")]
        # Another session: the real table (creating the temp table may have invalidated the
        # name: a miss is fine), then from the cache.
        assert prime(px, lambda: q2(b, sql))[1] == real
        # Writes to the temp table must not matter to anyone else, nor be served stale to a.
        q2(a, "INSERT INTO %s VALUES (2, 'temp2')" % t)
        assert q2(a, sql) == [(1, "temp"), (2, "temp2")]
        assert q2(b, sql) == real
        # Extended protocol in the shadowed session.
        with connect3(px) as b3:
            assert q3(b3, sql) == real
        q2(a, "DROP TABLE %s" % t)   # drops the temp table
        assert q2(a, sql) == real
    finally:
        a.close()
        b.close()


def test_temp_table_survives_discard_and_reconnect(pg, pgstash_factory, cleanup):
    t = cleanup.table("tmpd")
    pg.sql("CREATE TABLE %s (v text)" % t)
    pg.sql("INSERT INTO %s VALUES ('real')" % t)
    px = make_proxy(pgstash_factory)
    sql = "SELECT v FROM %s" % t
    a = px.connect()
    try:
        q2(a, "CREATE TEMP TABLE %s (v text)" % t)
        q2(a, "INSERT INTO %s VALUES ('temp')" % t)
        assert q2(a, sql) == [("temp",)]
        q2(a, "DISCARD TEMP")
        assert q2(a, sql) == [("real",)]
        q2(a, "CREATE TEMP TABLE %s (v text)" % t)
        assert q2(a, sql) == []
        q2(a, "DISCARD ALL")
        assert q2(a, sql) == [("real",)]
    finally:
        a.close()
    # A new connection that may land on the same server-side state: the real table.
    b = px.connect()
    try:
        assert q2(b, sql) == [("real",)]
    finally:
        b.close()


def test_tenant_changed_inside_volatile_function(pg, pgstash_factory, cleanup):
    """The setting's name is known (the session SET it); a volatile function changes its value:
    pgstash re-reads the settings after the call, so the next read is the new tenant's."""
    role, t = tenant_setup(pg, cleanup)
    fn = t + "_set"
    cleanup.add("DROP FUNCTION IF EXISTS %s(text)" % fn)
    pg.sql("CREATE FUNCTION %s(x text) RETURNS text VOLATILE LANGUAGE sql AS "
           "$$ SELECT set_config('app.tenant_id', x, false) $$" % fn)
    pg.sql("GRANT EXECUTE ON FUNCTION %s(text) TO %s" % (fn, role))
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    c = px.connect(user=role)
    try:
        q2(c, "SET app.tenant_id = 'a'")
        assert prime(px, lambda: q2(c, sql))[1] == TENANT_ROWS["a"]
        assert q2(c, "SELECT %s('b')" % fn) == [("b",)]
        assert q2(c, sql) == TENANT_ROWS["b"], "tenant changed by a function: old rows served"
        q2(c, "DO $$ BEGIN PERFORM set_config('app.tenant_id', 'c', false); END $$")
        assert q2(c, sql) == TENANT_ROWS["c"], "tenant changed by DO: old rows served"
    finally:
        c.close()


@pytest.mark.parametrize("setting,value,sql", [
    ("client_encoding", "'LATIN1'", "SELECT v FROM {t} ORDER BY id"),
    ("standard_conforming_strings", "off", "SELECT v || 'a\\x41b' FROM {t} ORDER BY id"),
    ("transform_null_equals", "on", "SELECT id FROM {t} WHERE v = NULL ORDER BY id"),
], ids=["client_encoding", "standard_conforming_strings", "transform_null_equals"])
def test_settings_that_change_meaning_change_the_key(pg, pgstash_factory, cleanup, setting,
                                                     value, sql):
    t = cleanup.table("meaning")
    pg.sql("CREATE TABLE %s (id int, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'caf\u00e9'), (2, NULL)" % t)
    px = make_proxy(pgstash_factory)
    sql = sql.format(t=t)
    with raw_session(px, pg.superuser) as c, raw_session(pg, pg.superuser) as d:
        base = d.simple_query(sql)
        assert c.simple_query(sql) == base
        settle(px)
        assert expect(px, lambda: c.simple_query(sql), "hit") == base
        for conn in (c, d):
            msgs = conn.simple_query("SET %s = %s" % (setting, value))
            assert not any(m.type == "E" for m in msgs), msgs
        want = [m for m in d.simple_query(sql) if m.type != "N"]
        assert [m for m in want if m.type == "D"] != [m for m in base if m.type == "D"], \
            "the setting changed nothing: bad test"
        got = [m for m in c.simple_query(sql) if m.type != "N"]
        assert got == want, "%s = %s: got %r, PostgreSQL sends %r" % (
            setting, value, [m.data_row for m in got if m.type == "D"],
            [m.data_row for m in want if m.type == "D"])
        settle(px)
        got = [m for m in c.simple_query(sql) if m.type != "N"]
        assert got == want


def test_row_security_off_is_an_error_not_cached_rows(pg, pgstash_factory, cleanup):
    role, t = tenant_setup(pg, cleanup)
    px = make_proxy(pgstash_factory)
    sql = "SELECT * FROM %s ORDER BY id" % t
    c, d = px.connect(user=role), pg.connect(user=role)
    try:
        for conn in (c, d):
            q2(conn, "SET app.tenant_id = 'a'")
        assert prime(px, lambda: q2(c, sql))[1] == TENANT_ROWS["a"]
        for conn in (c, d):
            q2(conn, "SET row_security = off")
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as direct:
            q2(d, sql)
        with pytest.raises(psycopg2.errors.InsufficientPrivilege) as through:
            q2(c, sql)
        assert str(through.value) == str(direct.value)
    finally:
        c.close()
        d.close()
