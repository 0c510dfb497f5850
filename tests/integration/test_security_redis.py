"""
Redis access control and key isolation (issue 6, "Security"):

  - requirepass through redis://:password@host:port/db (a plain password, and one with
    characters that must be %-escaped in the URL): caching works (misses, fills, hits,
    invalidation), and the password never shows in pgstash's log, /stats or /metrics;
  - an ACL user through redis://user:password@host:port/db: with the ACL of the issue
    (`ACL SETUSER app on >secret ~* +@all`), with channel access added, and with access
    restricted to the deployment's own key prefix (keys and channels): caching works, before
    and after writes (a write bumps versions and publishes an invalidation), and pgstash's
    connections are really the ACL user's;
  - a wrong password, a wrong user and no password at all for a Redis that wants one:
    pgstash fails open (every statement answered by PostgreSQL, no client error, no hit)
    and logs the authentication failure (without the password);
  - two deployments with different cache.key_prefix on one Redis, in front of two different
    PostgreSQL servers, send the same query (same database, user and table names) and never
    read each other's entries; a dedicated logical DB (redis://…/N) keeps every key there.
"""

import json
import urllib.parse

import pytest

from cache_helpers import classify, cleanup, make_proxy, prime, q2, settle  # noqa: F401
from helpers import unique
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def url_for(rs, user=None, password=None, db=0):
    auth = ""
    if password is not None:
        auth = "%s:%s@" % (urllib.parse.quote(user or "", safe=""),
                           urllib.parse.quote(password, safe=""))
    return "redis://%s%s:%d/%d" % (auth, rs.host, rs.port, db)


def table_with_row(pg, cleanup, value="one"):
    t = cleanup.table("rs")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, %%s)" % t, (value,))
    return t


def assert_caching_works(px, pg, t):
    """Miss, fill, hit; a write through pgstash; the new value, then hits again."""
    sql = "SELECT v FROM %s WHERE id = 1" % t
    c = px.connect()
    try:
        assert prime(px, lambda: q2(c, sql))[1] == [("one",)]
        q2(c, "UPDATE %s SET v = 'two' WHERE id = 1" % t)
        got, kind = classify(px, lambda: q2(c, sql))
        assert got == [("two",)], "stale after a write: %r (%s)" % (got, kind)
        settle(px)
        got, kind = classify(px, lambda: q2(c, sql))
        assert (got, kind) == ([("two",)], "hit"), (
            "after a write, hits never came back (%s): the write's invalidation failed?\n%s"
            % (kind, "\n".join(l for l in px.log_text().splitlines() if " warn " in l
                               or " error " in l)[-1500:]))
        q2(c, "UPDATE %s SET v = 'one' WHERE id = 1" % t)
        assert q2(c, sql) == [("one",)]
    finally:
        c.close()


def assert_secret_hidden(px, *secrets):
    texts = {"log": px.log_text(), "/stats": json.dumps(px.stats()), "/metrics": px.metrics()}
    for where, text in texts.items():
        for s in secrets:
            if s:
                assert s not in text and urllib.parse.quote(s, safe="") not in text, \
                    "the Redis password shows in pgstash's %s" % where


@pytest.mark.parametrize("password", ["s3cret-Pw", "p@ss:w/rd% #x"], ids=["plain", "escaped"])
def test_requirepass(pg, pgstash_factory, redis_factory, cleanup, password):
    rs = redis_factory(password=password)
    t = table_with_row(pg, cleanup)
    px = make_proxy(pgstash_factory, {"redis": url_for(rs, password=password)}, redis=rs)
    assert_caching_works(px, pg, t)
    keys = rs.command("KEYS", "%s:*" % px.config["cache"]["key_prefix"])
    assert keys, "nothing stored in the password-protected Redis"
    assert_secret_hidden(px, password)


ACLS = {
    # The ACL, verbatim. Redis 7 gives new users no Pub/Sub channels by default
    # (acl-pubsub-default resetchannels).
    "issue_acl": lambda prefix: ["~*", "+@all"],
    "all_channels": lambda prefix: ["~*", "&*", "+@all"],
    # Least privilege for one deployment: its own keys and channels only.
    "own_prefix_only": lambda prefix: ["resetkeys", "~%s:*" % prefix, "resetchannels",
                                       "&%s:*" % prefix, "+@all"],
}


@pytest.mark.parametrize("acl", list(ACLS))
def test_acl_user(pg, pgstash_factory, redis_factory, cleanup, acl):
    rs = redis_factory(password="admin-pw")
    prefix = unique("acl")
    user = unique("app")
    assert rs.command("ACL", "SETUSER", user, "on", ">app-secret", *ACLS[acl](prefix)) == "OK"
    t = table_with_row(pg, cleanup)
    px = make_proxy(pgstash_factory, {"redis": url_for(rs, user, "app-secret")}, prefix=prefix,
                    redis=rs)
    # pgstash's connections are the ACL user's.
    wait_until(lambda: ("user=%s " % user) in rs.command("CLIENT", "LIST").decode(), timeout=10,
               message="a Redis connection of user %s" % user)
    assert_caching_works(px, pg, t)
    assert_secret_hidden(px, "app-secret")


@pytest.mark.parametrize("how", ["wrong_password", "wrong_user", "no_password"])
def test_bad_credentials_fail_open_and_are_logged(pg, pgstash_factory, redis_factory, cleanup,
                                                  how):
    rs = redis_factory(password="right-pw")
    user = unique("app")
    rs.command("ACL", "SETUSER", user, "on", ">user-pw", "~*", "&*", "+@all")
    url = {"wrong_password": url_for(rs, password="wrong-pw"),
           "wrong_user": url_for(rs, "nosuchuser", "user-pw"),
           "no_password": url_for(rs)}[how]
    t = table_with_row(pg, cleanup)
    px = make_proxy(pgstash_factory, {"redis": url}, redis=rs)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    c = px.connect()
    try:
        kinds = []
        for i in range(6):
            got, kind = classify(px, lambda: q2(c, sql))
            kinds.append(kind)
            assert got == [("one" if i < 3 else "three",)]
            if i == 2:
                q2(c, "UPDATE %s SET v = 'three' WHERE id = 1" % t)
        assert "hit" not in kinds, kinds
    finally:
        c.close()
    assert rs.command("DBSIZE") == 0, "something got into Redis without the right password"

    def logged():
        text = px.log_text().lower()
        return any(w in text for w in ("wrongpass", "noauth", "auth failed", "authentication"))
    try:
        wait_until(logged, timeout=10, message="a log line about the Redis authentication failure")
    except TimeoutError:
        pytest.fail("Redis refused pgstash (%s) and pgstash failed open, but nothing in its log "
                    "says so:\n%s" % (how, px.log_tail(15)))
    assert_secret_hidden(px, "wrong-pw", "user-pw", "right-pw")
    assert px.is_running()


def test_key_prefix_isolates_deployments(pg_factory, redis_factory, pgstash_factory):
    """Two deployments share one Redis: different PostgreSQL servers, same database name
    (`test`), same user, same table name, same query text, different data. Each has its
    own key prefix and only ever sees its own rows."""
    rs = redis_factory()
    pga, pgb = pg_factory(), pg_factory()
    t = unique("shared")
    for p, v in ((pga, "deployment A"), (pgb, "deployment B")):
        p.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
        p.sql("INSERT INTO %s VALUES (1, %%s)" % t, (v,))
    pfx_a, pfx_b = unique("depa"), unique("depb")
    pxa = make_proxy(pgstash_factory, pg=pga, redis=rs, prefix=pfx_a)
    pxb = make_proxy(pgstash_factory, pg=pgb, redis=rs, prefix=pfx_b)
    assert pga.superuser == pgb.superuser
    sql = "SELECT v FROM %s WHERE id = 1" % t
    ca, cb = pxa.connect(), pxb.connect()
    try:
        assert prime(pxa, lambda: q2(ca, sql))[1] == [("deployment A",)]
        for _ in range(3):
            assert q2(cb, sql) == [("deployment B",)], "deployment B read A's cached entry"
            settle(pxb)
        assert classify(pxb, lambda: q2(cb, sql)) == ([("deployment B",)], "hit")
        assert classify(pxa, lambda: q2(ca, sql)) == ([("deployment A",)], "hit")
        # A write in A moves only A's versions.
        keys_b = sorted(rs.command("KEYS", "%s:*" % pfx_b))
        vers_b = {k: rs.command("GET", k) for k in keys_b if b":v:" in k}
        q2(ca, "UPDATE %s SET v = 'A2' WHERE id = 1" % t)
        assert q2(ca, sql) == [("A2",)]
        assert {k: rs.command("GET", k) for k in vers_b} == vers_b
        assert classify(pxb, lambda: q2(cb, sql)) == ([("deployment B",)], "hit")
        # Every key in Redis belongs to exactly one deployment.
        for k in rs.command("KEYS", "*"):
            assert k.startswith(pfx_a.encode() + b":") or k.startswith(pfx_b.encode() + b":"), k
        assert rs.command("KEYS", "%s:e:*" % pfx_a) and rs.command("KEYS", "%s:e:*" % pfx_b)
    finally:
        ca.close()
        cb.close()


def test_dedicated_logical_db(pg, pgstash_factory, redis_factory, cleanup):
    rs = redis_factory()
    t = table_with_row(pg, cleanup)
    px = make_proxy(pgstash_factory, {"redis": url_for(rs, db=5)}, redis=rs)
    assert_caching_works(px, pg, t)
    c = rs.client()
    try:
        assert c.command("DBSIZE") == 0, "keys outside the configured logical DB"
        c.command("SELECT", 5)
        assert c.command("DBSIZE") > 0
    finally:
        c.close()


@pytest.mark.parametrize("tamper", ["del_version", "garbage_version", "huge_version",
                                    "del_epoch", "garbage_epoch", "flushall"])
def test_tampered_counters_never_serve_old_entries(pg, redis, pgstash_factory, cleanup, tamper):
    """Someone with write access to Redis deletes, bumps or garbles the version counters or the
    epoch: reads become misses (or bypasses) — an entry cached under older versions is never
    served, and what is served is PostgreSQL's current answer; writes keep invalidating."""
    t = cleanup.table("tmp")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'v1')" % t)
    px = make_proxy(pgstash_factory)
    prefix = px.config["cache"]["key_prefix"]
    sql = "SELECT v FROM %s WHERE id = 1" % t
    c = px.connect()
    try:
        assert prime(px, lambda: q2(c, sql))[1] == [("v1",)]        # entry under version n
        q2(c, "UPDATE %s SET v = 'v2' WHERE id = 1" % t)
        assert prime(px, lambda: q2(c, sql))[1] == [("v2",)]        # entry under version n+1
        vkeys = [k for k in redis.command("KEYS", "%s:v:*" % prefix) if k.endswith(t.encode())]
        assert len(vkeys) == 1, vkeys
        vkey, ekey = vkeys[0], "%s:epoch" % prefix
        {"del_version": lambda: redis.command("DEL", vkey),
         "garbage_version": lambda: redis.command("SET", vkey, "not-a-number"),
         "huge_version": lambda: redis.command("SET", vkey, str(2 ** 62)),
         "del_epoch": lambda: redis.command("DEL", ekey),
         "garbage_epoch": lambda: redis.command("SET", ekey, "x\x00y"),
         "flushall": lambda: redis.command("FLUSHDB")}[tamper]()
        kinds = []
        for i in range(3):
            got, kind = classify(px, lambda: q2(c, sql))
            kinds.append(kind)
            assert got == [("v2",)], "after %s: read %r (%s)" % (tamper, got, kind)
            settle(px, timeout=0.5)
        # Writes still invalidate, whatever state the counters are in.
        q2(c, "UPDATE %s SET v = 'v3' WHERE id = 1" % t)
        for i in range(3):
            got, kind = classify(px, lambda: q2(c, sql))
            assert got == [("v3",)], "after %s and a write: read %r (%s)" % (tamper, got, kind)
            settle(px, timeout=0.5)
        assert px.is_running()
    finally:
        c.close()
