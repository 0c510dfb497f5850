"""
The admin HTTP endpoint (/stats, /metrics, /healthz) and what it says about connections:
after every client is gone — cleanly, rudely, mid-auth, mid-result, after errors — pgstash
holds no client and no server connection, and no leaked file descriptor.
"""

import json
import socket
import struct

import psycopg
import pytest

import pgwire
from helpers import raw, raw_session, startup_outcome
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only  # pgstash's own counters

REQUIRED = ("hits", "misses", "fills", "bypasses", "invalidations", "redis_errors",
            "redis_timeouts", "clients", "servers", "clients_total")


def wait_counts(px, clients, servers, timeout=10):
    """Polls /stats until clients and servers have the given values; returns the stats."""
    return px.wait_stats(lambda s: s["clients"] == clients and s["servers"] == servers,
                         timeout=timeout,
                         message="clients == %d and servers == %d" % (clients, servers))


def wait_idle(px, timeout=10):
    return wait_counts(px, 0, 0, timeout)


def test_stats_shape(proxy):
    s = proxy.stats()
    for key in REQUIRED:
        assert key in s, "/stats has no %r: %s" % (key, json.dumps(s)[:500])
    assert isinstance(s["bypasses"], dict)
    for key in REQUIRED:
        if key != "bypasses":
            assert isinstance(s[key], int) and s[key] >= 0, (key, s[key])


def test_metrics_and_healthz(proxy):
    status, body = proxy.http_get("/metrics")
    assert status == 200
    text = body.decode()
    assert "# TYPE" in text and "pgstash" in text
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name_value = line.rsplit(" ", 1)
            assert len(name_value) == 2, line
            float(name_value[1])
    assert proxy.healthz() == 200
    assert proxy.http_get("/no-such-page")[0] == 404


def test_counts_connected_clients_and_servers(proxy, pg):
    base_total = proxy.stats()["clients_total"]
    conns = [proxy.connect() for _ in range(3)]
    try:
        s = wait_counts(proxy, 3, 3)
        assert s["clients_total"] >= base_total + 3
    finally:
        for c in conns:
            c.close()
    wait_idle(proxy)


def test_nothing_left_after_all_kinds_of_clients(proxy, pg):
    # Warm-up: the first connections may open long-lived things (catalog, Redis).
    proxy.connect().close()
    wait_idle(proxy)
    baseline_fds = proxy.fd_count()

    # Clean sessions, simple and extended.
    for _ in range(3):
        c = proxy.connect()
        c.cursor().execute("SELECT 1")
        c.close()
    with psycopg.connect(proxy.dsn(), autocommit=True) as c3:
        c3.execute("SELECT %s::int", (1,), prepare=True)
    # Failed logins and unknown databases.
    startup_outcome(proxy, "md5user", password="wrong")
    startup_outcome(proxy, "scramuser", password="wrong")
    startup_outcome(proxy, pg.superuser, database="no_such_db")
    # Rude disconnects: mid-result (RST), mid-auth, mid-message, before start-up.
    c = raw_session(proxy, pg.superuser)
    c.query("SELECT repeat('x', 1000) FROM generate_series(1, 200000)")
    c.read_msg()
    c.close(reset=True)
    c = raw(proxy)
    c.send_startup("scramuser", "test")
    c.read_msg()
    c.close()
    c = raw_session(proxy, pg.superuser)
    c.send_raw(b"Q" + struct.pack("!i", 100) + b"SEL")
    c.close()
    raw(proxy).close()
    # Protocol violation and SSL refusal.
    c = raw_session(proxy, pg.superuser)
    c.send_msg(b"Q", b"", length=2)
    c.expect_closed()
    c.close()
    c = raw(proxy)
    assert c.ssl_request() == b"N"
    c.close()
    # A cancelled query (whether the cancel works is test_proxy_session's business: here the
    # session is dropped after 10 s either way, and only leaks are checked).
    c = raw_session(proxy, pg.superuser)
    c.query("SELECT pg_sleep(30)")
    wait_until(lambda: pg.backend_pids(state="active", query="SELECT pg_sleep(30)"), timeout=10)
    pgwire.PgWire.cancel(proxy.host, proxy.port, c.backend_pid, c.backend_secret)
    try:
        c.read_until_ready(timeout=10)
    except socket.timeout:
        pass
    c.close()
    # A session the server terminates.
    c = raw_session(proxy, pg.superuser, params={"application_name": "admin_kill"})
    pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
           "WHERE application_name = 'admin_kill'")
    c.expect_closed(timeout=10)
    c.close()

    s = wait_idle(proxy, timeout=20)
    assert s["clients_total"] >= 15
    # Slack for long-lived connections a worker may open lazily (its Redis connection).
    wait_until(lambda: proxy.fd_count() <= baseline_fds + 4, timeout=10,
               message="pgstash's fd count back near its baseline of %d" % baseline_fds)


def test_after_protocol_errors_server_connections_released(proxy, pg):
    for length in (0, 3, -1):
        with raw_session(proxy, pg.superuser) as c:
            c.send_msg(b"Q", b"SELECT 1\0", length=length)
            c.expect_closed(timeout=10)
    with raw(proxy) as c:
        c.send_raw(b"\x00\x00\x00\x08\x00\x02\x00\x00")
        try:
            c.expect_closed(timeout=10)
        except pgwire.ConnectionClosed:
            pass
    wait_idle(proxy)
