"""
Authentication through pgstash: trust, md5 and SCRAM-SHA-256 are relayed byte for byte (pgstash
never knows a password), and every failure looks exactly like PostgreSQL's own.
"""

import psycopg
import psycopg2
import pytest

import pgwire
from helpers import raw, raw_session, startup_outcome

MD5 = ("md5user", "MD5_PASSWORD", pgwire.AUTH_MD5)
SCRAM = ("scramuser", "SCRAM_PASSWORD", pgwire.AUTH_SASL)


def _first_auth_request(target, user):
    with raw(target) as c:
        c.send_startup(user, "test")
        m = c.read_msg()
        assert m.type == "R", m
        return m


def test_trust(pg, proxy):
    conn = proxy.connect()
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user, session_user, current_database()")
        assert cur.fetchone() == (pg.superuser, pg.superuser, "test")
    finally:
        conn.close()
    m = _first_auth_request(proxy, pg.superuser)
    assert m.auth_code == pgwire.AUTH_OK


@pytest.mark.parametrize("user,pwattr,code", [MD5, SCRAM], ids=["md5", "scram"])
def test_password_login(pg, proxy, user, pwattr, code):
    password = getattr(pg, pwattr)
    # The server's own challenge reaches the client: pgstash relays, it does not authenticate.
    d = _first_auth_request(pg, user)
    t = _first_auth_request(proxy, user)
    assert t.auth_code == d.auth_code == code
    if code == pgwire.AUTH_SASL:
        assert t.payload == d.payload   # mechanism list, identical (no -PLUS without TLS)
        assert b"SCRAM-SHA-256\0" in t.payload and b"PLUS" not in t.payload
    else:
        assert len(t.payload) == 8      # int32 code + a 4-byte salt, fresh per connection
    # libpq through pgstash.
    conn = proxy.connect(user=user, password=password)
    try:
        cur = conn.cursor()
        cur.execute("SELECT current_user")
        assert cur.fetchone() == (user,)
    finally:
        conn.close()
    # psycopg 3 through pgstash.
    with psycopg.connect(proxy.dsn(user=user, password=password)) as c3:
        assert c3.execute("SELECT session_user").fetchone() == (user,)
    # The raw client (its own md5 / SCRAM implementation, verifying the server signature).
    with raw_session(proxy, user, password=password) as c:
        rows = [m.data_row for m in c.simple_query("SELECT current_user") if m.type == "D"]
        assert rows == [[user.encode()]]


@pytest.mark.parametrize("user", ["md5user", "scramuser"])
def test_wrong_password_identical_to_direct(pg, proxy, user):
    d_kind, d = startup_outcome(pg, user, password="not-the-password")
    t_kind, t = startup_outcome(proxy, user, password="not-the-password")
    assert d_kind == t_kind == "error"
    assert t.sqlstate == "28P01"
    assert t.message == 'password authentication failed for user "%s"' % user
    assert t.fields == d.fields


@pytest.mark.parametrize("user", ["md5user", "scramuser"])
def test_wrong_password_libpq_message_identical(pg, proxy, user):
    def attempt(target):
        with pytest.raises(psycopg2.OperationalError) as e:
            psycopg2.connect(target.dsn(user=user, password="wrong"))
        return str(e.value).replace(str(target.port), "PORT")
    assert attempt(proxy) == attempt(pg)
    assert 'password authentication failed for user "%s"' % user in attempt(proxy)


def test_unknown_user_identical_to_direct(pg, proxy):
    d_kind, d = startup_outcome(pg, "no_such_role", password="x")
    t_kind, t = startup_outcome(proxy, "no_such_role", password="x")
    assert d_kind == t_kind == "error"
    assert t.sqlstate == "28000"
    assert t.message == 'role "no_such_role" does not exist'
    assert t.fields == d.fields


def test_unknown_database_identical_to_direct(pg, proxy):
    d_kind, d = startup_outcome(pg, pg.superuser, database="no_such_db")
    t_kind, t = startup_outcome(proxy, pg.superuser, database="no_such_db")
    assert d_kind == t_kind == "error"
    assert t.sqlstate == "3D000"
    assert t.message == 'database "no_such_db" does not exist'
    assert t.fields == d.fields


def test_unknown_database_with_password_auth(pg, proxy):
    """Authentication happens first, then the database check: both orders match direct."""
    for pw in (pg.SCRAM_PASSWORD, "wrong"):
        d = startup_outcome(pg, "scramuser", database="no_such_db", password=pw)
        t = startup_outcome(proxy, "scramuser", database="no_such_db", password=pw)
        assert t[0] == d[0] == "error"
        assert t[1].fields == d[1].fields


def test_no_user_in_startup_packet(pg, proxy):
    d_kind, d = startup_outcome(pg, None, database="test")
    t_kind, t = startup_outcome(proxy, None, database="test")
    assert d_kind == t_kind == "error"
    assert (t.sqlstate, t.message) == (d.sqlstate, d.message) == \
        ("28000", "no PostgreSQL user name specified in startup packet")


def test_client_gives_up_mid_authentication(pg, proxy):
    """A client that disconnects after the SCRAM challenge leaves the proxy healthy."""
    for _ in range(5):
        with raw(proxy) as c:
            c.send_startup("scramuser", "test")
            assert c.read_msg().auth_code == pgwire.AUTH_SASL
            scram = pgwire.ScramClient(pg.SCRAM_PASSWORD)
            first = scram.client_first().encode()
            c.send_msg(b"p", b"SCRAM-SHA-256\0" + len(first).to_bytes(4, "big") + first)
            assert c.read_msg().auth_code == pgwire.AUTH_SASL_CONTINUE
        # ...and is gone without answering.
    with raw_session(proxy, "scramuser", password=pg.SCRAM_PASSWORD) as c:
        assert c.simple_query("SELECT 1")[-1].type == "Z"


def test_many_failed_logins_then_success(pg, proxy):
    for i in range(20):
        user = ("md5user", "scramuser")[i % 2]
        kind, msg = startup_outcome(proxy, user, password="bad%d" % i)
        assert kind == "error" and msg.sqlstate == "28P01"
    conn = proxy.connect(user="md5user", password=pg.MD5_PASSWORD)
    conn.close()
