"""
What a name refers to is learnt from the catalog, and decides caching: views (cached only when
their own definition is cacheable, invalidated through their base tables), materialized views
(REFRESH invalidates), sequences, inheritance children, rules that write other tables, foreign
and unlogged tables, relations pgstash does not know, a catalog it cannot read, and a name
whose kind changes through DDL relayed by pgstash (never cached on the old knowledge).
"""

import os
import time

import pytest

from cache_helpers import (classify, cleanup, expect, make_proxy, prime, q2,  # noqa: F401
                           settle)
from helpers import unique
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def make_kv(pg, cleanup, prefix="rel"):
    t = cleanup.table(prefix)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'one'), (2, 'two')" % t)
    return t


def two_reads_differ(px, conn, sql):
    """Reads twice (letting a fill land in between); returns (results, kinds)."""
    r1, k1 = classify(px, lambda: q2(conn, sql))
    time.sleep(0.002)
    settle(px)
    r2, k2 = classify(px, lambda: q2(conn, sql))
    return (r1, r2), (k1, k2)


@pytest.mark.parametrize("definition", [
    "SELECT id, now() AS t FROM {t}",
    "SELECT id, random() AS t FROM {t}",
    "SELECT id, clock_timestamp() AS t FROM {t}",
    "SELECT id, current_user::text || clock_timestamp()::text AS t FROM {t}",
    "SELECT {t}.id, (SELECT count(*) FROM pg_stat_activity) + random() AS t FROM {t}",
], ids=["now", "random", "clock_timestamp", "sql_value_function", "system_catalog"])
def test_view_with_uncacheable_definition_is_not_cached(pg, pgstash_factory, cleanup,
                                                         definition):
    t = make_kv(pg, cleanup)
    v = cleanup.table("vol_view")
    cleanup.add("DROP VIEW IF EXISTS %s" % v)
    pg.sql("CREATE VIEW %s AS %s" % (v, definition.format(t=t)))
    px = make_proxy(pgstash_factory)
    c = px.connect()
    try:
        (r1, r2), kinds = two_reads_differ(px, c, "SELECT * FROM %s ORDER BY id" % v)
        assert r1 != r2, "a view calling a volatile function served the same rows twice " \
            "(%s): %r" % (kinds, r1)
        assert "hit" not in kinds and all(k.startswith("bypass:") for k in kinds), kinds
        assert px.stats()["fills"] == 0
    finally:
        c.close()


def test_cacheable_view_invalidated_by_base_table(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    v = cleanup.table("ok_view")
    cleanup.add("DROP VIEW IF EXISTS %s" % v)
    pg.sql("CREATE VIEW %s AS SELECT id, upper(v) AS v FROM %s" % (v, t))
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT * FROM %s ORDER BY id" % v
    try:
        assert prime(px, lambda: q2(c, sql))[1] == [(1, "ONE"), (2, "TWO")]
        q2(c, "UPDATE %s SET v = 'uno' WHERE id = 1" % t)
        assert q2(c, sql) == [(1, "UNO"), (2, "TWO")]
    finally:
        c.close()


def test_materialized_view_refresh(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    mv = cleanup.table("mv")
    cleanup.add("DROP MATERIALIZED VIEW IF EXISTS %s" % mv)
    pg.sql("CREATE MATERIALIZED VIEW %s AS SELECT id, v FROM %s" % (mv, t))
    pg.sql("CREATE UNIQUE INDEX ON %s (id)" % mv)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT * FROM %s ORDER BY id" % mv
    try:
        assert prime(px, lambda: q2(c, sql))[1] == [(1, "one"), (2, "two")]
        q2(c, "UPDATE %s SET v = 'changed' WHERE id = 1" % t)
        assert q2(c, sql) == [(1, "one"), (2, "two")]     # PostgreSQL: not refreshed yet
        prime(px, lambda: q2(c, sql))
        q2(c, "REFRESH MATERIALIZED VIEW %s" % mv)
        assert q2(c, sql) == [(1, "changed"), (2, "two")], "stale after REFRESH"
        prime(px, lambda: q2(c, sql))
        q2(c, "DELETE FROM %s WHERE id = 2" % t)
        q2(c, "REFRESH MATERIALIZED VIEW CONCURRENTLY %s" % mv)
        assert q2(c, sql) == [(1, "changed")], "stale after REFRESH … CONCURRENTLY"
    finally:
        c.close()


def test_sequence_read_as_relation(pg, pgstash_factory, cleanup):
    seq = cleanup.table("seqrel")
    cleanup.add("DROP SEQUENCE IF EXISTS %s" % seq)
    pg.sql("CREATE SEQUENCE %s" % seq)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT last_value, is_called FROM %s" % seq
    try:
        assert q2(c, sql) == [(1, False)]
        settle(px)
        assert q2(c, "SELECT nextval('%s')" % seq) == [(1,)]
        assert q2(c, sql) == [(1, True)], "sequence state served from the cache"
        settle(px)
        q2(c, "SELECT nextval('%s')" % seq)
        assert q2(c, sql) == [(2, True)], "sequence state served from the cache"
        assert px.stats()["hits"] == 0
    finally:
        c.close()


def test_inheritance_child_and_parent(pg, pgstash_factory, cleanup):
    parent = cleanup.table("inh")
    child = cleanup.table("inhc")
    pg.sql("CREATE TABLE %s (id int, v text)" % parent)
    pg.sql("CREATE TABLE %s (extra int) INHERITS (%s)" % (child, parent))
    pg.sql("INSERT INTO %s VALUES (1, 'parent')" % parent)
    pg.sql("INSERT INTO %s VALUES (2, 'child', 0)" % child)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    psql = "SELECT id, v FROM %s ORDER BY id" % parent
    csql = "SELECT id, v FROM %s ORDER BY id" % child
    try:
        prime(px, lambda: q2(c, psql))
        prime(px, lambda: q2(c, csql))
        q2(c, "UPDATE %s SET v = 'child upd'" % child)
        assert q2(c, psql) == [(1, "parent"), (2, "child upd")], "parent read stale"
        prime(px, lambda: q2(c, psql))
        prime(px, lambda: q2(c, csql))
        q2(c, "UPDATE %s SET v = v || '!'" % parent)      # reaches the child's rows too
        assert q2(c, csql) == [(2, "child upd!")], "child read stale after parent write"
        assert q2(c, psql) == [(1, "parent!"), (2, "child upd!")]
    finally:
        c.close()


def test_rule_writing_another_table(pg, pgstash_factory, cleanup):
    src = cleanup.table("rsrc")
    log = cleanup.table("rlog")
    pg.sql("CREATE TABLE %s (id int, v text)" % src)
    pg.sql("CREATE TABLE %s (what text)" % log)
    pg.sql("CREATE RULE %s_r AS ON INSERT TO %s DO ALSO INSERT INTO %s VALUES "
           "('inserted ' || NEW.id)" % (src, src, log))
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT what FROM %s ORDER BY what" % log
    try:
        assert prime(px, lambda: q2(c, sql))[1] == []
        q2(c, "INSERT INTO %s VALUES (7, 'x')" % src)
        assert q2(c, sql) == [("inserted 7",)], "table written by a rule served stale"
    finally:
        c.close()


def test_foreign_table_not_cached(pg, pgstash_factory, cleanup):
    path = os.path.join(str(pg.dir), unique("ft") + ".csv")
    with open(path, "w") as f:
        f.write("1,first\n")
    os.chmod(path, 0o644)
    ft = cleanup.table("ft")
    cleanup.add("DROP EXTENSION IF EXISTS file_fdw CASCADE")
    pg.sql("CREATE EXTENSION IF NOT EXISTS file_fdw")
    srv = unique("fsrv")
    pg.sql("CREATE SERVER %s FOREIGN DATA WRAPPER file_fdw" % srv)
    pg.sql("CREATE FOREIGN TABLE %s (id int, v text) SERVER %s OPTIONS (filename '%s', "
           "format 'csv')" % (ft, srv, path))
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT * FROM %s ORDER BY id" % ft
    try:
        assert expect(px, lambda: q2(c, sql), "bypass:foreign_table") == [(1, "first")]
        with open(path, "a") as f:
            f.write("2,second\n")
        settle(px)
        assert expect(px, lambda: q2(c, sql), "bypass:foreign_table") == \
            [(1, "first"), (2, "second")]
    finally:
        c.close()
        try:
            os.unlink(path)
        except OSError:
            pass


def test_relation_created_behind_pgstash_is_never_cached(pg, pgstash_factory, cleanup):
    px = make_proxy(pgstash_factory)
    c = px.connect()
    try:
        q2(c, "SELECT 1")         # the catalog of the database is read now
        t = make_kv(pg, cleanup, "late")   # created directly, pgstash does not know it
        sql = "SELECT * FROM %s ORDER BY id" % t
        got, kind = classify(px, lambda: q2(c, sql))
        assert got == [(1, "one"), (2, "two")]
        pg.sql("UPDATE %s SET v = 'direct' WHERE id = 1" % t)
        settle(px)
        got2, kind2 = classify(px, lambda: q2(c, sql))
        assert got2 == [(1, "direct"), (2, "two")], \
            "a table pgstash never saw created was served from the cache (%s, %s)" % (kind,
                                                                                     kind2)
    finally:
        c.close()


@pytest.mark.parametrize("ddl", [
    "DROP TABLE {t}; CREATE VIEW {t} AS SELECT 1 AS id, random()::text AS v",
    "ALTER TABLE {t} RENAME TO {t}_old; CREATE VIEW {t} AS SELECT 1 AS id, "
    "clock_timestamp()::text AS v",
], ids=["table_becomes_volatile_view", "renamed_then_view"])
def test_kind_changed_by_ddl_through_pgstash(pg, pgstash_factory, cleanup, ddl):
    """Right after DDL relayed by pgstash changes what a name is, reads of it are never
    answered on the old knowledge (the catalog is re-read shortly after)."""
    t = make_kv(pg, cleanup, "kind")
    cleanup.add("DROP TABLE IF EXISTS %s_old" % t)
    cleanup.add("DROP VIEW IF EXISTS %s" % t)
    px = make_proxy(pgstash_factory)
    c = px.connect()
    sql = "SELECT * FROM %s ORDER BY id" % t
    try:
        prime(px, lambda: q2(c, sql))
        for stmt in ddl.format(t=t).split("; "):
            q2(c, stmt)
        results, kinds = [], []
        for _ in range(6):
            r, k = classify(px, lambda: q2(c, sql))
            results.append(r)
            kinds.append(k)
            time.sleep(0.002)
            settle(px, timeout=1)
        assert len({tuple(r) for r in results}) == len(results), \
            "a volatile view was served from the cache right after the DDL: %r %r" % (
                results, kinds)
        assert "hit" not in kinds, kinds
        # Once the catalog is re-read, the name is known as a (non-cacheable) view.
        wait_until(lambda: classify(px, lambda: q2(c, sql))[1] == "bypass:view", timeout=5,
                   message="the name to be known as a view")
    finally:
        c.close()


def test_catalog_unavailable_bypasses(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup, "nocat")
    px = make_proxy(pgstash_factory, {"catalog": {"user": "no_such_catalog_user"}})
    c = px.connect()
    sql = "SELECT * FROM %s ORDER BY id" % t
    try:
        for i in range(3):
            got, kind = classify(px, lambda: q2(c, sql), timeout=15)
            assert got == [(1, "one" if i == 0 else "w%d" % (i - 1)), (2, "two")]
            assert kind in ("bypass:catalog_unavailable", "bypass:catalog_loading"), kind
            q2(c, "UPDATE %s SET v = 'w%d' WHERE id = 1" % (t, i))
        wait_until(lambda: classify(px, lambda: q2(c, sql))[1] == "bypass:catalog_unavailable",
                   timeout=15, message="bypass:catalog_unavailable")
        assert px.stats()["fills"] == 0 and px.stats()["hits"] == 0
        assert "catalog" in px.log_text().lower()
    finally:
        c.close()
