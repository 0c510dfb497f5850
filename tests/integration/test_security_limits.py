"""
Hostile or broken clients against pgstash's limits (issue 6, "Security"): start-up packets
and messages above limits.max_startup_bytes / limits.max_message_bytes, unknown protocol
versions, clients that never finish authentication (a role with a password: the start-up is
sent, the password never is), and a crowd of them holding every slot of
limits.max_client_conn. Each is refused with a clear FATAL ErrorResponse (SQLSTATE and
message checked) within the limit that applies, and everything it held is freed: /stats
clients and servers back to 0, the PostgreSQL backend gone, pgstash's fd count back to its
baseline; pgstash serves everyone else meanwhile and afterwards.
"""

import struct
import time

import pytest

import pgwire
from fault_helpers import (app_backends, read_all_or_eof, rss_slack_kb, startup_bytes,
                           user_backends, wait_fds_at_most, wait_idle)
from helpers import raw, raw_session, unique
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def assert_serves(px, user):
    with raw_session(px, user) as c:
        msgs = c.simple_query("SELECT 'alive'", timeout=10)
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"alive"]]


def proxy_with(factory, limits):
    px = factory({"limits": limits, "log": {"level": "info"}})
    with raw_session(px, px.pg.superuser) as c:    # warm: Redis connections, catalog
        c.simple_query("SELECT 1")
    wait_idle(px)
    return px


def refused(c, timeout=5.0, allow_auth=False):
    """Everything the server says before closing; fails if it does not close in time or
    says anything but one FATAL ErrorResponse (after an authentication request, if
    allow_auth: the client had asked for a start-up)."""
    msgs, closed, waited = read_all_or_eof(c, timeout)
    assert closed, "still open %.1fs later" % waited
    errors = [m for m in msgs if m.type == "E"]
    assert errors, "closed without an ErrorResponse: %r" % msgs
    assert all(m.type in ("E", "N") or (allow_auth and m.type == "R") for m in msgs), msgs
    assert errors[0].severity == "FATAL", errors[0].fields
    return errors[0], waited


def settle_and_check(px, base_fds, pg=None, app=None):
    wait_idle(px, timeout=10)
    if pg is not None and app is not None:
        wait_until(lambda: not app_backends(pg, app), timeout=10,
                   message="backends of %s to exit" % app)
    wait_fds_at_most(px, base_fds)


# --- sizes --------------------------------------------------------------------------------------

def test_startup_packet_above_max_startup_bytes(pg, pgstash_factory):
    px = proxy_with(pgstash_factory, {"max_startup_bytes": 1024})
    base = px.fd_count()
    # Just under the limit: a normal start-up.
    params = {"application_name": "x" * 40, "options": "-c search_path=" + "p" * 700}
    pkt = startup_bytes(pg.superuser, "test", params)
    assert len(pkt) < 1024
    with raw(px) as c:
        c.send_raw(pkt)
        c.authenticate(pg.superuser)
        assert c.simple_query("SELECT 1")[-1].type == "Z"
    # Above it: refused from the length word alone, before the body (never sent here).
    for size in (1025, 5000, 100000, 2 ** 31 - 1):
        with raw(px) as c:
            c.send_raw(struct.pack("!ii", size, pgwire.PROTOCOL_3_0))
            err, waited = refused(c)
            assert err.sqlstate == "08P01" and "startup packet" in err.message, err.fields
            assert waited < 2
    # A whole oversized packet, sent in full.
    big = startup_bytes(pg.superuser, "test", {"options": "-c search_path=" + "q" * 3000})
    with raw(px) as c:
        try:
            c.send_raw(big)
        except OSError:
            pass
        err, _ = refused(c)
        assert err.sqlstate == "08P01"
    settle_and_check(px, base)
    assert px.stats()["servers"] == 0
    assert_serves(px, pg.superuser)


def test_messages_above_max_message_bytes(pg, pgstash_factory):
    px = proxy_with(pgstash_factory, {"max_message_bytes": "64KB"})
    base = px.fd_count()
    app = unique("big")
    cases = {
        "query": lambda c: c.send_raw(b"Q" + struct.pack("!i", 10 * 1024 * 1024) + b"SELECT '"),
        "parse": lambda c: c.send_raw(b"P" + struct.pack("!i", 2 ** 31 - 1) + b"\0SELECT"),
        "bind_sent_in_full": lambda c: c.bind("", "", [b"z" * 100000]),
        "copy_data": None,
    }
    for name, send in cases.items():
        c = raw_session(px, pg.superuser, params={"application_name": app})
        try:
            if name == "copy_data":
                t = unique("cpbig")
                pg.sql("CREATE TABLE %s (v text)" % t)
                try:
                    c.query("COPY %s FROM STDIN" % t)
                    assert c.read_msg(timeout=10).type == "G"
                    c.copy_data(b"small\n")
                    try:
                        c.send_raw(b"d" + struct.pack("!i", 1024 * 1024) + b"x" * 70000)
                    except OSError:
                        pass
                    err, _ = refused(c)
                    wait_until(lambda: not app_backends(pg, app), timeout=10)
                    assert pg.sql("SELECT count(*) FROM %s" % t) == [(0,)], \
                        "a COPY cut off by the limit committed rows"
                finally:
                    pg.sql("DROP TABLE %s" % t)
            else:
                try:
                    send(c)
                except OSError:
                    pass
                err, waited = refused(c)
                assert waited < 3, name
            assert err.sqlstate == "08P01", (name, err.fields)
            assert "length" in err.message or "too" in err.message or "large" in err.message, \
                (name, err.message)
        finally:
            c.close()
        wait_until(lambda: not app_backends(pg, app), timeout=10,
                   message="the backend of the refused session (%s) to exit" % name)
    settle_and_check(px, base, pg, app)
    assert_serves(px, pg.superuser)


# --- protocol versions ----------------------------------------------------------------------------

@pytest.mark.parametrize("version", [
    (0, 0), (1, 0), (2, 0), (4, 0), (32767, 65535), (1234, 5681),
], ids=lambda v: "%d.%d" % v)
def test_unknown_protocol_version_refused(pg, pgstash_factory, version):
    px = proxy_with(pgstash_factory, {})
    base = px.fd_count()
    major, minor = version
    with raw(px) as c:
        c.send_startup(pg.superuser, "test", version=(major << 16) | minor)
        err, waited = refused(c)
    assert err.sqlstate in ("0A000", "08P01"), err.fields
    assert "protocol" in err.message and "%d.%d" % (major, minor) in err.message, err.message
    assert waited < 2
    s = wait_idle(px)
    assert s["servers"] == 0
    wait_fds_at_most(px, base)
    assert_serves(px, pg.superuser)


# --- authentication that never finishes ---------------------------------------------------------

@pytest.mark.parametrize("role", ["md5user", "scramuser"])
def test_never_finishes_authentication(pg, pgstash_factory, role):
    """A role with a password: the client sends its StartupMessage, receives the server's
    authentication request, and then sends nothing. pgstash closes it after auth_timeout
    (PostgreSQL alone would wait authentication_timeout, 60 s), and the half-authenticated
    backend goes with it."""
    px = proxy_with(pgstash_factory, {"auth_timeout": "1s"})
    base = px.fd_count()
    hanging = []
    try:
        for _ in range(5):
            c = raw(px)
            c.send_startup(role, "test")
            m = c.read_msg(timeout=10)
            assert m.type == "R" and m.auth_code in (pgwire.AUTH_MD5, pgwire.AUTH_SASL), m
            hanging.append(c)
        assert px.stats()["clients"] == 5
        # Meanwhile everyone else is served.
        assert_serves(px, pg.superuser)
        t0 = time.monotonic()
        for c in hanging:
            err, waited = refused(c, timeout=10)
            assert err.sqlstate in ("08006", "08P01", "57P05"), err.fields
            assert "time" in err.message, err.message
        assert time.monotonic() - t0 < 4, "closed %.1fs after auth_timeout 1s" % (
            time.monotonic() - t0)
    finally:
        for c in hanging:
            c.close()
    settle_and_check(px, base)
    wait_until(lambda: not user_backends(pg, role), timeout=10,
               message="the half-authenticated backends of %s to exit" % role)
    # The same role with its password works.
    password = {"md5user": pg.MD5_PASSWORD, "scramuser": pg.SCRAM_PASSWORD}[role]
    with raw(px) as c:
        c.startup(role, "test", password=password)
        assert c.simple_query("SELECT 1")[-1].type == "Z"


def test_silent_connections_hold_slots_only_until_auth_timeout(pg, pgstash_factory):
    """Slowloris: max_client_conn silent connections (no start-up at all, half a start-up,
    a start-up for a password role) fill every slot; one more client is refused (53300);
    auth_timeout frees them all and normal clients are served again."""
    px = proxy_with(pgstash_factory, {"auth_timeout": "2s", "max_client_conn": 12})
    base = px.fd_count()
    silent = []
    try:
        for i in range(12):
            c = raw(px)
            if i % 3 == 1:
                c.send_raw(startup_bytes(pg.superuser, "test")[:10])
            elif i % 3 == 2:
                c.send_startup("scramuser", "test")
            silent.append(c)
        wait_until(lambda: px.stats()["clients"] == 12, timeout=5)
        with raw(px) as extra:
            extra.send_startup(pg.superuser, "test")
            err, _ = refused(extra)
            assert err.sqlstate == "53300", err.fields
        for c in silent:
            err, waited = refused(c, timeout=8, allow_auth=True)
            assert "time" in err.message, err.message
    finally:
        for c in silent:
            c.close()
    settle_and_check(px, base)
    assert_serves(px, pg.superuser)


def test_hostile_crowd_leaves_nothing(pg, pgstash_factory):
    """Two hundred connections of every hostile kind at once; afterwards no client, no server
    connection, no backend and no extra fd remain, and RSS is back near its baseline."""
    px = proxy_with(pgstash_factory, {"auth_timeout": "1s", "max_startup_bytes": 2048,
                                      "max_message_bytes": "64KB"})
    app = unique("crowd")
    base_fds, base_rss = px.fd_count(), px.rss_kb()

    def kinds(i):
        k = i % 8
        c = raw(px)
        try:
            if k == 0:
                c.send_raw(struct.pack("!ii", 50000, pgwire.PROTOCOL_3_0))
            elif k == 1:
                c.send_startup(pg.superuser, "test", version=(9 << 16))
            elif k == 2:
                c.send_raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40)  # TLS
            elif k == 3:
                c.send_raw(startup_bytes(pg.superuser, "test")[:7])
            elif k == 4:
                c.send_startup("md5user", "test")
            elif k == 5:
                c.startup(pg.superuser, "test", params={"application_name": app})
                c.send_raw(b"Q" + struct.pack("!i", 1 << 30))
            elif k == 6:
                c.startup(pg.superuser, "test", params={"application_name": app})
                c.send_msg(b"Q", b"SELECT 1\0", length=2)
            else:
                c.send_raw(b"GET / HTTP/1.1\r\n\r\n")
        except (OSError, pgwire.ConnectionClosed):
            pass
        return c

    conns = [kinds(i) for i in range(200)]
    try:
        for c in conns:
            msgs, closed, _ = read_all_or_eof(c, timeout=10)
            assert closed, "a hostile connection is still open"
            for m in msgs:
                if m.type == "E":
                    assert m.severity == "FATAL"
    finally:
        for c in conns:
            c.close()
    settle_and_check(px, base_fds + 1, pg, app)
    rss = px.rss_kb()
    assert rss < base_rss + 4096 + rss_slack_kb(px), "RSS %d KB -> %d KB" % (base_rss, rss)
    assert px.is_running()
    assert_serves(px, pg.superuser)
