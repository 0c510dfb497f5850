"""
PostgreSQL going away and coming back: clients get a real ErrorResponse (SQLSTATE 08006 naming
the upstream address), pgstash keeps running, and serves again as soon as PostgreSQL is back,
with no restart. Each test has its own PostgreSQL, since it stops it.
"""

import psycopg2
import pytest

import pgwire
from helpers import raw, raw_session

pytestmark = pytest.mark.proxy_only  # PostgreSQL down means nobody answers in direct mode


def assert_serves(target, user):
    with raw_session(target, user) as c:
        msgs = c.simple_query("SELECT 'back'")
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"back"]]


def assert_upstream_down_error(px, upstream):
    with raw(px) as c:
        c.send_startup(upstream.superuser, "test")
        msgs = c.expect_closed(timeout=15)
    errors = [m for m in msgs if m.type == "E"]
    assert errors, "no ErrorResponse while PostgreSQL is down: %r" % msgs
    e = errors[0]
    assert e.sqlstate == "08006", (e.sqlstate, e.message)
    assert e.severity == "FATAL"
    text = " ".join(v for k, v in e.fields.items() if k in "MDH")
    assert upstream.host in text and str(upstream.port) in text, \
        "the error does not name the upstream %s:%d: %r" % (upstream.host, upstream.port, text)
    return e


def test_postgres_down_then_back(pg_factory, pgstash_factory):
    own = pg_factory()
    px = pgstash_factory(pg=own)
    assert_serves(px, own.superuser)
    idle = raw_session(px, own.superuser)
    try:
        own.stop("fast")
        # The connected client hears PostgreSQL's own goodbye (57P01) or at least a close.
        msgs = idle.expect_closed(timeout=15)
        for m in msgs:
            if m.type == "E":
                assert m.sqlstate in ("57P01", "08006"), m.fields
    finally:
        idle.close()
    for _ in range(3):
        assert_upstream_down_error(px, own)
    # libpq shows it as a connection failure carrying the server's text.
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(px.dsn())
    assert str(own.port) in str(e.value)
    assert px.is_running()
    own.start()
    assert_serves(px, own.superuser)   # the very next client, no pgstash restart
    conn = px.connect(user=own.SCRAM_USER, password=own.SCRAM_PASSWORD)
    conn.close()


def test_postgres_crash_mid_query(pg_factory, pgstash_factory):
    own = pg_factory()
    px = pgstash_factory(pg=own)
    c = raw_session(px, own.superuser)
    try:
        c.query("SELECT pg_sleep(30)")
        own.kill()
        try:
            msgs = c.expect_closed(timeout=15)
        except pgwire.ConnectionClosed:
            msgs = []
        assert all(m.type in ("E", "N") for m in msgs), msgs
    finally:
        c.close()
    assert px.is_running()
    assert_upstream_down_error(px, own)
    own.start()
    assert_serves(px, own.superuser)


def test_pgstash_started_before_postgres(pg_factory, pgstash_factory):
    own = pg_factory(start=False)
    px = pgstash_factory(pg=own)
    assert_upstream_down_error(px, own)
    own.start()
    assert_serves(px, own.superuser)


def test_postgres_restart_many_times(pg_factory, pgstash_factory):
    own = pg_factory()
    px = pgstash_factory(pg=own)
    for mode in ("fast", "immediate", "fast"):
        own.stop(mode)
        assert_upstream_down_error(px, own)
        own.start()
        assert_serves(px, own.superuser)
