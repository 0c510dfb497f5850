"""
No cached result crosses users, roles, RLS tenants, databases or search_path — including
after GRANT/REVOKE and ALTER POLICY sequences — in BOTH consistency modes (issue 6,
"Security"). test_cache_isolation.py covers the single-instance strict-mode cases in depth;
this file runs the cross-cutting ones through TWO pgstash instances sharing one Redis, with
`consistency: strict` and `consistency: local` (where each instance also has its in-process
tier and learns other instances' invalidations from the Pub/Sub channel).

Every pgstash session has a twin connected straight to PostgreSQL with the same user and the
same session settings; every read through pgstash must give exactly what the twin gets (rows,
or the same SQLSTATE). After a privilege or policy change made through one instance:

  - reads through that instance must be right at once, in both modes;
  - reads through the other instance must be right at once in strict mode; in local mode the
    documented cross-instance bound applies (the invalidation channel's delivery delay): they
    must be right within LOCAL_BOUND, and stay right.

Each test also checks that the cache was really used (hits on both instances).
"""

import time

import psycopg2
import pytest

import pgstash_harness as h
from cache_helpers import cleanup, make_proxy, settle  # noqa: F401
from helpers import unique

pytestmark = pytest.mark.proxy_only

MODES = ["strict", "local"]
LOCAL_BOUND = 1.0   # seconds; the same default bound as test_consistency.py


def pair(factory, mode):
    prefix = unique("iso")
    cfg = {"cache": {"consistency": mode}, "log": {"level": "info"}}
    a = make_proxy(factory, cfg, prefix=prefix)
    b = make_proxy(factory, cfg, prefix=prefix)
    if mode == "local":
        for p in (a, b):
            h.wait_until(lambda p=p: "subscribed to invalidations" in p.log_text(), timeout=15,
                         message="%s to subscribe to invalidations" % p)
    return a, b


def read(conn, sql):
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return sorted(cur.fetchall())
    except psycopg2.Error as e:
        return "ERROR %s" % e.pgcode


class Twin:
    """A session through pgstash and the same session straight to PostgreSQL."""

    def __init__(self, px, pg, mode, user=None, dbname=None, options=None, label=""):
        kw = {"options": options} if options else {}
        self.px, self.mode, self.label = px, mode, label or (user or "su")
        self.via = px.connect(user=user, dbname=dbname, **kw)
        self.direct = pg.connect(user=user, dbname=dbname, **kw)

    def run(self, sql):
        """A session setting (SET ...): applied to both twins."""
        for c in (self.via, self.direct):
            with c.cursor() as cur:
                cur.execute(sql)

    def write(self, sql):
        """A change to the database (DML, GRANT, POLICY, ...): made once, through pgstash."""
        with self.via.cursor() as cur:
            cur.execute(sql)

    def check(self, sql, soon=False, what=""):
        """pgstash's answer must be PostgreSQL's. soon=True: the change that made it differ
        was made through ANOTHER instance (local mode may lag by the channel's delay)."""
        want = read(self.direct, sql)
        got = read(self.via, sql)
        if got != want and soon and self.mode == "local":
            t0 = time.monotonic()
            while got != want and time.monotonic() - t0 < LOCAL_BOUND:
                time.sleep(0.01)
                got = read(self.via, sql)
        assert got == want, ("%s [%s, %s mode%s]: pgstash returned %r, PostgreSQL returns %r"
                             % (what or sql, self.label, self.mode,
                                ", other instance" if soon else "", got, want))
        # And again (now possibly from the cache): still right.
        got = read(self.via, sql)
        assert got == want, "%s [%s]: second read %r, PostgreSQL %r" % (what or sql, self.label,
                                                                         got, want)
        return want

    def close(self):
        self.via.close()
        self.direct.close()


@pytest.fixture
def twins():
    made = []

    def make(*a, **kw):
        t = Twin(*a, **kw)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def roles(pg, cleanup, n, prefix="u"):
    out = [cleanup.role(prefix) for _ in range(n)]
    for r in out:
        pg.sql("CREATE ROLE %s LOGIN" % r)
    return out


def assert_hits(*pxs):
    for p in pxs:
        settle(p)
        assert p.stats()["hits"] > 0, "%s served no hit: the cache was not exercised" % p


# --- users, roles, tenants, databases, search_path ------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_users_and_roles_never_share(pg, pgstash_factory, cleanup, twins, mode):
    ua, ub = roles(pg, cleanup, 2)
    t = cleanup.table("own")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, owner text, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, '%s', 'a1'), (2, '%s', 'b1'), (3, '%s', 'b2')"
           % (t, ua, ub, ub))
    pg.sql("ALTER TABLE %s ENABLE ROW LEVEL SECURITY" % t)
    pg.sql("CREATE POLICY own_rows ON %s USING (owner = current_user)" % t)
    pg.sql("GRANT SELECT ON %s TO %s, %s" % (t, ua, ub))
    px1, px2 = pair(pgstash_factory, mode)
    sql = "SELECT id, owner, v FROM %s" % t
    sessions = [twins(px1, pg, mode, user=ua, label="ua@1"), twins(px2, pg, mode, user=ub,
                                                                   label="ub@2"),
                twins(px2, pg, mode, user=ua, label="ua@2"), twins(px1, pg, mode, user=ub,
                                                                   label="ub@1")]
    su = twins(px1, pg, mode, label="su@1")
    for rnd in range(3):
        for s in sessions + [su]:
            s.check(sql, what="round %d" % rnd)
    # SET ROLE in the superuser's session, through both instances.
    for role in (ua, ub, ua):
        su.run("SET ROLE %s" % role)
        su.check(sql, what="SET ROLE %s" % role)
    su.run("RESET ROLE")
    su.check(sql, what="RESET ROLE")
    su2 = twins(px2, pg, mode, label="su@2")
    su2.run("SET SESSION AUTHORIZATION %s" % ub)
    su2.check(sql, what="SET SESSION AUTHORIZATION")
    assert_hits(px1, px2)


TENANT_DDL = """
CREATE TABLE {t} (id int PRIMARY KEY, tenant text, v text);
INSERT INTO {t} VALUES (1, 'a', 'a-1'), (2, 'a', 'a-2'), (3, 'b', 'b-3'), (4, 'c', 'c-4'),
                       (5, 'shared', 's-5');
ALTER TABLE {t} ENABLE ROW LEVEL SECURITY;
CREATE POLICY tp ON {t} USING (tenant = current_setting('app.tenant', true));
GRANT SELECT ON {t} TO {role};
"""


@pytest.mark.parametrize("mode", MODES)
def test_rls_tenants_never_share(pg, pgstash_factory, cleanup, twins, mode):
    (app,) = roles(pg, cleanup, 1, "app")
    t = cleanup.table("ten")
    pg.sql(TENANT_DDL.format(t=t, role=app))
    px1, px2 = pair(pgstash_factory, mode)
    sql = "SELECT id, tenant, v FROM %s" % t
    ta = twins(px1, pg, mode, user=app, label="tenant a@1")
    tb = twins(px2, pg, mode, user=app, label="tenant b@2")
    tc = twins(px1, pg, mode, user=app, options="-c app.tenant=c", label="tenant c@1 (options)")
    tb1 = twins(px1, pg, mode, user=app, label="tenant b@1")
    ta.run("SET app.tenant = 'a'")
    tb.run("SET app.tenant = 'b'")
    tb1.run("SELECT set_config('app.tenant', 'b', false)")
    for rnd in range(3):
        for s in (ta, tb, tc, tb1):
            s.check(sql, what="round %d" % rnd)
    # Switching tenants back and forth in one session.
    for tenant in ("b", "c", "a", "nobody"):
        ta.run("SET app.tenant = '%s'" % tenant)
        ta.check(sql, what="SET app.tenant = %s" % tenant)
    ta.run("RESET app.tenant")
    ta.check(sql, what="RESET app.tenant")
    assert_hits(px1, px2)


@pytest.mark.parametrize("mode", MODES)
def test_databases_and_search_path_never_share(pg, pgstash_factory, cleanup, twins, mode):
    name = unique("same")
    db2 = unique("isodb")
    s1, s2 = unique("sa"), unique("sb")
    pg.sql("CREATE DATABASE %s" % db2, dbname="postgres")
    try:
        pg.sql("CREATE TABLE %s (v text)" % name)
        cleanup.add("DROP TABLE IF EXISTS %s" % name)
        pg.sql("INSERT INTO %s VALUES ('db test, public')" % name)
        pg.sql("CREATE TABLE %s (v text)" % name, dbname=db2)
        pg.sql("INSERT INTO %s VALUES ('db %s')" % (name, db2), dbname=db2)
        for s in (s1, s2):
            cleanup.add("DROP SCHEMA IF EXISTS %s CASCADE" % s)
            pg.sql("CREATE SCHEMA %s" % s)
            pg.sql("CREATE TABLE %s.%s (v text)" % (s, name))
            pg.sql("INSERT INTO %s.%s VALUES ('schema %s')" % (s, name, s))
        px1, px2 = pair(pgstash_factory, mode)
        sql = "SELECT v FROM %s" % name
        sessions = [twins(px1, pg, mode, label="test@1"),
                    twins(px2, pg, mode, dbname=db2, label="db2@2"),
                    twins(px1, pg, mode, dbname=db2, label="db2@1"),
                    twins(px2, pg, mode, options="-c search_path=%s" % s1, label="s1@2"),
                    twins(px1, pg, mode, options="-c search_path=%s" % s2, label="s2@1")]
        for rnd in range(3):
            for s in sessions:
                s.check(sql, what="round %d" % rnd)
        sp = sessions[0]
        for path in (s1, s2, "public", "%s, %s" % (s2, s1)):
            sp.run("SET search_path = %s" % path)
            sp.check(sql, what="search_path %s" % path)
        # A write in one database or schema invalidates nothing it should not, and the
        # written one is fresh everywhere.
        sessions[2].write("UPDATE %s SET v = 'db2 new'" % name)
        for s in sessions:
            s.check(sql, soon=(s.px is not sessions[2].px), what="after UPDATE in db2")
        assert_hits(px1, px2)
    finally:
        pg.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % db2, dbname="postgres")


# --- privilege and policy changes -----------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_grant_revoke_sequence(pg, pgstash_factory, cleanup, twins, mode):
    ua, ub, grp = roles(pg, cleanup, 3)
    pg.sql("ALTER ROLE %s NOLOGIN" % grp)
    t = cleanup.table("gr")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'one'), (2, 'two')" % t)
    pg.sql("REVOKE ALL ON %s FROM PUBLIC" % t)
    px1, px2 = pair(pgstash_factory, mode)
    star, ids = "SELECT * FROM %s" % t, "SELECT id FROM %s" % t
    a1 = twins(px1, pg, mode, user=ua, label="ua@1")
    a2 = twins(px2, pg, mode, user=ua, label="ua@2")
    b2 = twins(px2, pg, mode, user=ub, label="ub@2")
    su1 = twins(px1, pg, mode, label="su@1")
    su2 = twins(px2, pg, mode, label="su@2")
    su1.check(star)            # the superuser's rows are cached first
    su2.check(star)

    def everyone(soon_for, what):
        """Reads of both statements by every session; `soon_for` is the instance that did NOT
        make the change (local mode may lag there)."""
        for s in (a1, a2, b2):
            for sql in (star, ids):
                s.check(sql, soon=(s.px is soon_for), what="%s: %s" % (what, sql))

    everyone(None, "no privilege")
    steps = [
        (su1, "GRANT SELECT ON {t} TO {ua}", px2),
        (su2, "REVOKE SELECT ON {t} FROM {ua}", px1),
        (su1, "GRANT SELECT ON {t} TO {grp}", px2),
        (su1, "GRANT {grp} TO {ua}", px2),
        (su2, "REVOKE {grp} FROM {ua}", px1),
        (su1, "GRANT SELECT (id) ON {t} TO {ua}", px2),
        (su2, "REVOKE SELECT (id) ON {t} FROM {ua}", px1),
        (su1, "GRANT SELECT ON {t} TO PUBLIC", px2),
        (su2, "REVOKE SELECT ON {t} FROM PUBLIC", px1),
        (su1, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ub}", px2),
        (su2, "REVOKE SELECT ON ALL TABLES IN SCHEMA public FROM {ub}", px1),
    ]
    for who, stmt, other in steps:
        sql = stmt.format(t=t, ua=ua, ub=ub, grp=grp)
        # The reads just before the change are cached (where allowed)...
        everyone(None, "before " + sql)
        who.write(sql)
        # ...and none of them survives it.
        everyone(other, "after " + sql)
    assert_hits(px1, px2)


@pytest.mark.parametrize("mode", MODES)
def test_alter_policy_sequence(pg, pgstash_factory, cleanup, twins, mode):
    app, owner = roles(pg, cleanup, 2, "pol")
    t = cleanup.table("pol")
    pg.sql(TENANT_DDL.format(t=t, role=app))
    pg.sql("ALTER TABLE %s OWNER TO %s" % (t, owner))
    px1, px2 = pair(pgstash_factory, mode)
    sql = "SELECT id, tenant FROM %s" % t
    a1 = twins(px1, pg, mode, user=app, label="app tenant a@1")
    b2 = twins(px2, pg, mode, user=app, label="app tenant b@2")
    o2 = twins(px2, pg, mode, user=owner, label="owner tenant c@2")
    a1.run("SET app.tenant = 'a'")
    b2.run("SET app.tenant = 'b'")
    o2.run("SET app.tenant = 'c'")
    su1 = twins(px1, pg, mode, label="su@1")
    su2 = twins(px2, pg, mode, label="su@2")

    def everyone(other, what):
        for s in (a1, b2, o2):
            s.check(sql, soon=(s.px is other), what=what)

    steps = [
        (su1, "ALTER POLICY tp ON {t} USING (tenant = current_setting('app.tenant', true) "
              "OR tenant = 'shared')", px2),
        (su2, "ALTER POLICY tp ON {t} USING (tenant = current_setting('app.tenant', true))",
         px1),
        (su1, "CREATE POLICY extra ON {t} USING (id = 4)", px2),
        (su2, "DROP POLICY extra ON {t}", px1),
        (su1, "ALTER POLICY tp ON {t} TO {owner}", px2),
        (su2, "ALTER POLICY tp ON {t} TO PUBLIC", px1),
        (su1, "CREATE POLICY deny_b ON {t} AS RESTRICTIVE USING (tenant <> 'b')", px2),
        (su2, "DROP POLICY deny_b ON {t}", px1),
        (su1, "DROP POLICY tp ON {t}", px2),
        (su2, "CREATE POLICY tp ON {t} USING (tenant = current_setting('app.tenant', true))",
         px1),
        (su1, "ALTER TABLE {t} FORCE ROW LEVEL SECURITY", px2),
        (su2, "ALTER TABLE {t} NO FORCE ROW LEVEL SECURITY", px1),
        (su1, "ALTER TABLE {t} DISABLE ROW LEVEL SECURITY", px2),
        (su2, "ALTER TABLE {t} ENABLE ROW LEVEL SECURITY", px1),
        (su1, "ALTER ROLE {app} BYPASSRLS", px2),
        (su2, "ALTER ROLE {app} NOBYPASSRLS", px1),
    ]
    for who, stmt, other in steps:
        q = stmt.format(t=t, app=app, owner=owner)
        everyone(None, "before " + q)
        who.write(q)
        everyone(other, "after " + q)
    assert_hits(px1, px2)


def test_checker_sees_changes_made_around_pgstash(pg, pgstash_factory, cleanup, twins):
    """Negative control, and the documented limit (docs/SECURITY.md): a REVOKE made straight
    in PostgreSQL, around pgstash, is not seen by the cache until the entries expire — the
    Twin check above must catch exactly that, or its passes would prove nothing."""
    (ua,) = roles(pg, cleanup, 1)
    t = cleanup.table("neg")
    pg.sql("CREATE TABLE %s (id int)" % t)
    pg.sql("INSERT INTO %s VALUES (1)" % t)
    pg.sql("GRANT SELECT ON %s TO %s" % (t, ua))
    px1, _ = pair(pgstash_factory, "strict")
    a = twins(px1, pg, "strict", user=ua)
    sql = "SELECT id FROM %s" % t
    a.check(sql)
    settle(px1)
    a.check(sql)
    pg.sql("REVOKE SELECT ON %s FROM %s" % (t, ua))        # not through pgstash
    with pytest.raises(AssertionError, match="ERROR 42501"):
        a.check(sql)
