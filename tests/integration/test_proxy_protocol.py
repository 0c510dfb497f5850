"""
The wire protocol at its edges: SSLRequest/GSSENCRequest, protocol versions, message framing
(split and coalesced writes), and malformed input before and after start-up. A malformed message
gets ErrorResponse 08P01 and a close (PostgreSQL itself sometimes just closes: accepted only in
direct mode), and the proxy goes on serving everyone else.
"""

import socket
import struct

import psycopg2
import pytest

import pgwire
from helpers import raw, raw_session


def assert_serves(target, user):
    with raw_session(target, user) as c:
        msgs = c.simple_query("SELECT 'alive'")
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"alive"]]


def assert_rejected(c, direct, sqlstates=("08P01",), timeout=10):
    """The server answers with an ErrorResponse in `sqlstates` and closes. In direct mode
    PostgreSQL may close without a word (it logs the violation as COMMERROR)."""
    msgs = c.expect_closed(timeout=timeout)
    errors = [m for m in msgs if m.type == "E"]
    assert all(m.type in ("E", "N") for m in msgs), msgs
    if not direct:
        assert errors, "connection closed without an ErrorResponse"
    for e in errors:
        assert e.sqlstate in sqlstates, (e.sqlstate, e.message)
        assert e.severity in ("FATAL", "ERROR")
    return errors


# --- SSL and GSS encryption requests -------------------------------------------------------------

def test_ssl_request_answered_n_then_startup(pg, proxy):
    with raw(proxy) as c:
        assert c.ssl_request() == b"N"
        c.startup(pg.superuser)
        assert c.simple_query("SELECT 1")[-1].type == "Z"


# PostgreSQL built with GSSAPI (Debian's is) answers 'G' itself, so these are proxy_only.
@pytest.mark.proxy_only
def test_gssenc_request_answered_n_then_startup(pg, proxy):
    with raw(proxy) as c:
        assert c.gssenc_request() == b"N"
        c.startup(pg.superuser)
        assert c.simple_query("SELECT 1")[-1].type == "Z"


@pytest.mark.proxy_only
def test_gssenc_then_ssl_then_startup(pg, proxy):
    """libpq's order with gssencmode=prefer and sslmode=prefer."""
    with raw(proxy) as c:
        assert c.gssenc_request() == b"N"
        assert c.ssl_request() == b"N"
        c.startup("scramuser", password=pg.SCRAM_PASSWORD)
        assert c.simple_query("SELECT 1")[-1].type == "Z"


def test_libpq_sslmodes(pg, proxy):
    conn = psycopg2.connect(proxy.dsn(sslmode="prefer", gssencmode="prefer"))
    conn.close()

    def require(target):
        with pytest.raises(psycopg2.OperationalError) as e:
            psycopg2.connect(target.dsn(sslmode="require"))
        return str(e.value).replace(str(target.port), "PORT")
    assert require(proxy) == require(pg)
    assert "server does not support SSL" in require(proxy)


# --- protocol versions -----------------------------------------------------------------------------

def read_error_any_format(c, timeout=10):
    """Everything the server sends before closing, parsed as one ErrorResponse in either the
    v3 format or the pre-v3 one (PostgreSQL answers a 1.x/2.x start-up in the old format:
    'E' + text + NUL). Returns (sqlstate or None, message)."""
    data = bytearray()
    c.sock.settimeout(timeout)
    while True:
        try:
            chunk = c.sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    data = bytes(c.buf) + bytes(data)
    assert data[:1] == b"E", "expected an ErrorResponse before the close, got %r" % data[:40]
    length = struct.unpack("!i", data[1:5])[0]
    if 4 <= length <= len(data) - 1:
        m = pgwire.Message("E", data[5:1 + length])
        return m.sqlstate, m.message
    return None, data[1:].split(b"\0")[0].decode()


@pytest.mark.parametrize("major,minor", [(2, 0), (4, 0), (1, 5)])
def test_unsupported_protocol_version(pg, proxy, major, minor):
    results = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with raw(target) as c:
            c.send_startup(pg.superuser, "test", version=(major << 16) | minor)
            results[label] = read_error_any_format(c)
    d_state, d_msg = results["direct"]
    assert "unsupported frontend protocol %d.%d" % (major, minor) in d_msg
    assert d_state in (None, "0A000")
    t_state, t_msg = results["proxy"]
    assert (t_state, t_msg) == (d_state, d_msg) or (
        t_state in ("0A000", "08P01") and "%d.%d" % (major, minor) in t_msg), results
    assert_serves(proxy, pg.superuser)


def test_newer_minor_version_negotiated_like_postgres(pg, proxy):
    """3.99 with an unknown _pq_ option: PostgreSQL answers NegotiateProtocolVersion and goes on."""
    params = {"_pq_.pgstash_test": "1"}
    got = {}
    for label, target in (("direct", pg), ("proxy", proxy)):
        with raw(target) as c:
            msgs = c.startup(pg.superuser, params=params, version=(3 << 16) | 99)
            got[label] = [m for m in msgs if m.type != "K"]
            assert c.simple_query("SELECT 1")[-1].type == "Z"
    assert got["proxy"] == got["direct"]
    v = [m for m in got["direct"] if m.type == "v"]
    assert v and struct.unpack("!i", v[0].payload[:4])[0] == 3 << 16


# --- framing ---------------------------------------------------------------------------------------

def test_startup_and_query_split_into_single_bytes(pg, proxy):
    with raw(proxy) as c:
        for b in pgwire.PgWire.startup_packet(pg.superuser, "test"):
            c.send_raw(bytes([b]))
        c.authenticate(pg.superuser)
        body = b"SELECT 'split'\0"
        q = b"Q" + struct.pack("!i", 4 + len(body)) + body
        for b in q:
            c.send_raw(bytes([b]))
        msgs = c.read_until_ready()
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"split"]]


def test_many_messages_in_one_write(pg, proxy):
    with raw_session(proxy, pg.superuser) as c:
        batch = b"".join(b"Q" + struct.pack("!i", 4 + len(q) + 1) + q + b"\0"
                         for q in (("SELECT %d" % i).encode() for i in range(300)))
        c.send_raw(batch)
        for i in range(300):
            msgs = c.read_until_ready()
            assert [m.data_row for m in msgs if m.type == "D"] == [[str(i).encode()]]


def test_startup_and_first_query_in_one_write(pg, proxy):
    with raw(proxy) as c:
        c.send_raw(pgwire.PgWire.startup_packet(pg.superuser, "test")
                   + b"Q" + struct.pack("!i", 4 + 9) + b"SELECT 7\0")
        c.authenticate(pg.superuser)
        msgs = c.read_until_ready()
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"7"]]


# --- malformed input after start-up ---------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 3, -1, -2147483648], ids=["len0", "len3", "neg1", "negmin"])
def test_bad_message_length(pg, proxy, direct_mode, length):
    with raw_session(proxy, pg.superuser) as c:
        c.send_msg(b"Q", b"SELECT 1\0", length=length)
        assert_rejected(c, direct_mode)
    assert_serves(proxy, pg.superuser)


def test_unknown_message_type(pg, proxy, direct_mode):
    with raw_session(proxy, pg.superuser) as c:
        c.send_msg(b"z", b"\0\0\0\0")
        errors = assert_rejected(c, False)   # PostgreSQL sends FATAL 08P01 for this
        assert "invalid frontend message type" in errors[0].message or not direct_mode
    assert_serves(proxy, pg.superuser)


def test_truncated_message_then_disconnect(pg, proxy):
    for _ in range(3):
        with raw_session(proxy, pg.superuser) as c:
            c.send_raw(b"Q" + struct.pack("!i", 1000) + b"SELECT")
    assert_serves(proxy, pg.superuser)


@pytest.mark.proxy_only
def test_message_above_max_message_bytes(pg, pgstash_factory):
    px = pgstash_factory({"limits": {"max_message_bytes": "64KB"}})
    with raw_session(px, pg.superuser) as c:
        # Well under the limit: fine.
        q = "SELECT length('" + "y" * 30000 + "')"
        msgs = c.simple_query(q)
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"30000"]]
        # Announced above the limit: rejected from the header alone, before the body arrives.
        c.send_raw(b"Q" + struct.pack("!i", 256 * 1024) + b"SELECT '")
        assert_rejected(c, False)
    assert_serves(px, pg.superuser)
    assert px.is_running()


# --- malformed input before start-up --------------------------------------------------------------

def test_garbage_before_startup(pg, proxy, direct_mode):
    with raw(proxy) as c:
        c.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert_rejected(c, direct_mode)
    assert_serves(proxy, pg.superuser)


@pytest.mark.parametrize("length", [0, 4, 7, -8], ids=["len0", "len4", "len7", "neg"])
def test_startup_length_too_small(pg, proxy, direct_mode, length):
    with raw(proxy) as c:
        c.send_raw(struct.pack("!ii", length, pgwire.PROTOCOL_3_0))
        assert_rejected(c, direct_mode)
    assert_serves(proxy, pg.superuser)


def test_oversized_startup_packet(pg, proxy, direct_mode):
    with raw(proxy) as c:
        body = struct.pack("!i", pgwire.PROTOCOL_3_0) + b"user\0" + b"u" * 20000 + b"\0\0"
        try:
            c.send_raw(struct.pack("!i", len(body) + 4) + body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: fine
        try:
            assert_rejected(c, direct_mode)
        except pgwire.ConnectionClosed:
            assert direct_mode
    assert_serves(proxy, pg.superuser)


def test_startup_packet_without_terminator(pg, proxy):
    """PostgreSQL answers FATAL 08P01 itself: through pgstash it must look the same."""
    pkt = struct.pack("!i", pgwire.PROTOCOL_3_0) + b"user\0%s\0database\0test" % pg.superuser.encode()
    for target in (pg, proxy):
        with raw(target) as c:
            c.send_raw(struct.pack("!i", len(pkt) + 4) + pkt)
            errors = assert_rejected(c, False)
            assert errors[0].sqlstate == "08P01"
    assert_serves(proxy, pg.superuser)


def test_startup_never_completed_does_not_block_others(pg, proxy):
    """Half a start-up packet, left hanging: other clients are served meanwhile."""
    hanging = [raw(proxy) for _ in range(5)]
    try:
        for h in hanging:
            h.send_raw(struct.pack("!i", 40) + b"\0\3")
        assert_serves(proxy, pg.superuser)
    finally:
        for h in hanging:
            h.close()
    assert_serves(proxy, pg.superuser)


def test_cancel_request_with_bogus_key_is_harmless(pg, proxy):
    with raw_session(proxy, pg.superuser) as c:
        pgwire.PgWire.cancel(proxy.host, proxy.port, 12345, 67890)
        # A cancel request packet of the wrong length.
        with raw(proxy) as bad:
            bad.send_raw(struct.pack("!iii", 12, pgwire.CANCEL_REQUEST_CODE, 1))
            try:
                bad.expect_closed(timeout=5)
            except (socket.timeout, pgwire.ConnectionClosed):
                pass
        assert c.simple_query("SELECT 1")[-1].tx_status == "I"
    assert_serves(proxy, pg.superuser)
