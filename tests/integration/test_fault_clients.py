"""
Clients that misbehave or vanish (issue 6, "Fault injection"):

  - gone before authentication: a StartupMessage whose client has already closed costs
    PostgreSQL no backend, while a CancelRequest sent and closed at once still cancels;
  - vanishing mid-query (a long pg_sleep), mid-write (the statement commits after the client
    is gone: its invalidation must still happen), mid-COPY FROM (rolled back: nothing
    committed, nothing to invalidate) and mid-COPY after CopyDone (committed: invalidated),
    mid-result (a big result streamed from the server, and a big result answered from the
    cache to a slow reader): pgstash drops its side at once, PostgreSQL's backend goes, the
    cache stays right, pgstash serves everyone else;
  - half-sent messages followed by silence: with limits.client_idle_timeout (1 s) pgstash
    closes them (ErrorResponse or EOF) — half a message, a unit without its Sync, an idle
    session — and without it, a half-sent start-up packet or message is closed after
    limits.auth_timeout;
  - 2,000 connect/disconnect cycles of four kinds (full login + query + Terminate, login then
    an abrupt close, start-up packet then close, SSLRequest then close): pgstash's RSS and
    file-descriptor count return to (near) their baseline, /stats clients and servers to 0,
    and PostgreSQL's backends are gone.
"""

import socket
import struct
import threading
import time

import pytest

import pgwire
from cache_helpers import cleanup, make_proxy, prime, q2  # noqa: F401 (fixture)
from fault_helpers import (app_backends, read_all_or_eof, rss_slack_kb, startup_bytes,
                           wait_fds_at_most, wait_idle)
from helpers import raw, raw_session, unique
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def assert_serves(px, user):
    with raw_session(px, user) as c:
        msgs = c.simple_query("SELECT 'alive'", timeout=10)
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"alive"]]


def quiet_proxy(factory, config=None, **kw):
    cfg = {"log": {"level": "info"}}
    if config:
        from pgstash_harness import deep_merge
        cfg = deep_merge(cfg, config)
    return make_proxy(factory, cfg, **kw)


# --- vanishing clients --------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["fin", "rst"])
def test_vanish_mid_query(pg, pgstash_factory, how):
    px = quiet_proxy(pgstash_factory)
    app = unique("midq")
    c = raw_session(px, pg.superuser, params={"application_name": app})
    c.query("SELECT pg_sleep(3)")
    wait_until(lambda: app_backends(pg, app), timeout=10, message="the backend to be busy")
    t0 = time.monotonic()
    c.close(reset=(how == "rst"))
    # pgstash lets go of both sides at once, long before the statement ends...
    wait_idle(px, timeout=2.5)
    assert time.monotonic() - t0 < 2.5
    # ...and the backend goes when PostgreSQL notices (at the end of the sleep, as direct).
    wait_until(lambda: not app_backends(pg, app), timeout=15,
               message="the vanished client's backend to exit")
    assert_serves(px, pg.superuser)


def _send_and_close_at_once(px, packet):
    """Sends `packet` and the FIN in one segment (TCP_CORK), so pgstash finds the client
    gone when it reads the packet, as with a load balancer's check or a crashed app."""
    c = raw(px)
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    c.send_raw(packet)
    c.sock.shutdown(socket.SHUT_WR)
    return c


def test_startup_then_gone_costs_no_backend(pg, pgstash_factory):
    """A StartupMessage whose client has already closed is not logged in to PostgreSQL:
    hundreds of those would queue in the postmaster's backlog ahead of real logins (seen as
    10-second logins in the 2,000-cycle test below). PostgreSQL logs every authorized
    backend with its application_name (log_connections), so the log tells."""
    px = quiet_proxy(pgstash_factory)
    app = unique("gone")
    for _ in range(20):
        c = _send_and_close_at_once(px, startup_bytes(pg.superuser, "test",
                                                      {"application_name": app}))
        try:
            msgs, closed, _ = read_all_or_eof(c, timeout=5)
            assert closed and msgs == [], msgs
        finally:
            c.close()
    wait_idle(px, timeout=5)
    # The same packet from a client that stays gets its session (and its log line).
    with raw_session(px, pg.superuser, params={"application_name": app}) as c:
        c.simple_query("SELECT 1", timeout=10)
    marker = "application_name=" + app
    wait_until(lambda: marker in pg.log_text(), timeout=5, message="the session's log line")
    assert pg.log_text().count(marker) == 1, "a gone client was logged in to PostgreSQL"


def test_cancel_sent_and_closed_at_once_still_cancels(pg, pgstash_factory):
    """A CancelRequest is sent and closed by design (JDBC does not wait): unlike a start-up,
    it must still reach PostgreSQL when its client has already gone."""
    px = quiet_proxy(pgstash_factory)
    app = unique("cgone")
    with raw_session(px, pg.superuser, params={"application_name": app}) as c:
        c.query("SELECT pg_sleep(30)")
        wait_until(lambda: app_backends(pg, app), timeout=10, message="the backend to be busy")
        time.sleep(0.2)
        k = _send_and_close_at_once(px, struct.pack("!iiii", 16, pgwire.CANCEL_REQUEST_CODE, c.backend_pid,
                                                    c.backend_secret))
        k.close()
        msgs = c.read_until_ready(timeout=10)
        errors = [m for m in msgs if m.type == "E"]
        assert len(errors) == 1 and errors[0].sqlstate == "57014", msgs


def test_vanish_mid_write_still_invalidates(pg, pgstash_factory, cleanup):
    """The client sends an UPDATE and vanishes before the answer. PostgreSQL completes and
    commits it (autocommit) after pgstash has lost its client. The cached read of that row
    must not survive the commit: pgstash saw the write go out, so it must invalidate (or bump
    the epoch) even though nobody is there to receive the confirmation."""
    t = cleanup.table("vw")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'old')" % t)
    px = quiet_proxy(pgstash_factory)
    sql = "SELECT v FROM %s WHERE id = 1" % t
    r = px.connect()
    app = unique("vw")
    try:
        assert prime(px, lambda: q2(r, sql))[1] == [("old",)]
        w = raw_session(px, pg.superuser, params={"application_name": app})
        w.query("UPDATE %s SET v = 'new' WHERE id = 1 AND (SELECT true FROM pg_sleep(1))" % t)
        wait_until(lambda: app_backends(pg, app), timeout=5)
        w.close()
        wait_until(lambda: pg.sql("SELECT v FROM %s WHERE id = 1" % t) == [("new",)],
                   timeout=10, message="PostgreSQL to commit the vanished client's UPDATE")
        # The commit is visible in PostgreSQL a moment before pgstash reads its answer and
        # bumps the table: allow that moment, not the entry's 60 s TTL.
        seen = []
        try:
            wait_until(lambda: seen.append(q2(r, sql)) or seen[-1] == [("new",)], timeout=2,
                       interval=0.05)
        except TimeoutError:
            raise AssertionError("the UPDATE of a client that vanished before its answer was "
                                 "committed by PostgreSQL, but the cache still serves the old "
                                 "row %r: its write was never invalidated" % seen[-1]) from None
    finally:
        r.close()


COPY_SLOW_FN = """
CREATE FUNCTION {fn}() RETURNS int VOLATILE LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.3); RETURN 0; END $$
"""


def copy_table(pg, cleanup):
    """A table whose rows take 0.3 s each to insert (a volatile column default), so that a
    COPY is still running when its client is gone. No trigger: not a hidden writer."""
    t = unique("cp")
    fn = t + "_slow"
    cleanup.add("DROP FUNCTION IF EXISTS %s()" % fn)     # runs last (clean-up is LIFO)
    cleanup.add("DROP TABLE IF EXISTS %s" % t)
    pg.sql(COPY_SLOW_FN.format(fn=fn))
    pg.sql("CREATE TABLE %s (id int, v text, d int DEFAULT %s())" % (t, fn))
    pg.sql("INSERT INTO %s (id, v, d) VALUES (0, 'seed', 0)" % t)
    return t


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_vanish_mid_copy_from_rolls_back(pg, pgstash_factory, cleanup, how):
    t = copy_table(pg, cleanup)
    px = quiet_proxy(pgstash_factory)
    sql = "SELECT count(*) FROM %s" % t
    r = px.connect()
    app = unique("cpf")
    try:
        assert prime(px, lambda: q2(r, sql))[1] == [(1,)]
        c = raw_session(px, pg.superuser, params={"application_name": app})
        c.query("COPY %s (id, v) FROM STDIN" % t)
        m = c.read_msg(timeout=10)
        assert m.type == "G", m
        for i in range(1, 4):
            c.copy_data(b"%d\trow %d\n" % (i, i))
        wait_until(lambda: app_backends(pg, app), timeout=5)
        c.close(reset=(how == "rst"))
        # Only the reader `r` is left, on both sides.
        px.wait_stats(lambda s: s["clients"] == 1 and s["servers"] == 1, timeout=5,
                      message="the vanished COPY client and its server connection released")
        wait_until(lambda: not app_backends(pg, app), timeout=15,
                   message="the COPY's backend to exit")
        assert pg.sql(sql) == [(1,)], "a COPY whose client vanished was committed"
        assert q2(r, sql) == [(1,)]
        # Nothing is left locked or half-done: another COPY through pgstash works.
        with raw_session(px, pg.superuser) as c2:
            c2.query("COPY %s (id, v, d) FROM STDIN" % t)
            assert c2.read_msg(timeout=10).type == "G"
            c2.copy_data(b"9\tnine\t0\n")
            c2.copy_done()
            msgs = c2.read_until_ready(timeout=10)
            assert any(m.type == "C" and m.command_tag == "COPY 1" for m in msgs), msgs
        assert q2(r, sql) == [(2,)], "a committed COPY through pgstash was not invalidated"
    finally:
        r.close()
    assert_serves(px, pg.superuser)


def test_vanish_after_copy_done_still_invalidates(pg, pgstash_factory, cleanup):
    """CopyDone sent, then the client vanishes while PostgreSQL is still inserting: the COPY
    commits without anyone to hear it. Like any write pgstash relayed, it must invalidate."""
    t = copy_table(pg, cleanup)
    px = quiet_proxy(pgstash_factory)
    sql = "SELECT count(*) FROM %s" % t
    r = px.connect()
    app = unique("cpd")
    try:
        assert prime(px, lambda: q2(r, sql))[1] == [(1,)]
        c = raw_session(px, pg.superuser, params={"application_name": app})
        c.query("COPY %s (id, v) FROM STDIN" % t)
        assert c.read_msg(timeout=10).type == "G"
        c.copy_data(b"1\tone\n2\ttwo\n3\tthree\n")
        c.copy_done()
        wait_until(lambda: app_backends(pg, app), timeout=5)
        c.close()
        wait_until(lambda: pg.sql(sql) == [(4,)], timeout=15,
                   message="PostgreSQL to commit the COPY")
        seen = []
        try:
            wait_until(lambda: seen.append(q2(r, sql)) or seen[-1] == [(4,)], timeout=2,
                       interval=0.05)
        except TimeoutError:
            raise AssertionError("a COPY FROM committed after its client vanished: the cache "
                                 "still serves the old count %r" % seen[-1]) from None
    finally:
        r.close()


def test_vanish_mid_cached_result(pg, pgstash_factory, cleanup):
    """A big result answered from the cache to a reader with a tiny receive window, which
    vanishes (RST) in the middle: pgstash lets go, and goes on serving."""
    t = cleanup.table("bigc")
    pg.sql("CREATE TABLE %s AS SELECT g AS id, repeat('y', 200) AS pad "
           "FROM generate_series(1, 3000) g" % t)
    px = quiet_proxy(pgstash_factory, {"cache": {"max_entry_bytes": "4MB"}})
    sql = "SELECT * FROM %s ORDER BY id" % t
    with raw_session(px, pg.superuser) as a:
        prime(px, lambda: a.simple_query(sql, timeout=20))
    wait_idle(px)
    base_fds = px.fd_count()
    for _ in range(5):
        before = px.stats()
        c = raw_session(px, pg.superuser, rcvbuf=4096)
        c.query(sql)
        m = c.read_msg(timeout=10)
        assert m.type == "T"
        c.read_msg(timeout=10)
        time.sleep(0.2)   # pgstash is now blocked on a full socket
        c.close(reset=True)
        wait_idle(px, timeout=10)
        assert px.stats()["hits"] == before["hits"] + 1, "the big result was not a hit: bad test"
    wait_fds_at_most(px, base_fds + 1)
    with raw_session(px, pg.superuser) as ok:
        msgs = ok.simple_query(sql, timeout=20)
        assert sum(1 for m in msgs if m.type == "D") == 3000


# --- half-sent messages and silence ---------------------------------------------------------------

def _half_message(c):
    c.send_raw(b"Q" + struct.pack("!i", 100) + b"SELECT ")


def _unit_without_sync(c):
    c.parse("", "SELECT 1")
    c.bind("", "")
    c.execute()


def _nothing(c):
    pass


@pytest.mark.parametrize("what,send", [
    ("half_message", _half_message),
    ("half_message_header", lambda c: c.send_raw(b"Q\0\0")),
    ("unit_without_sync", _unit_without_sync),
    ("idle_session", _nothing),
])
def test_idle_timeout_closes_half_sent(pg, pgstash_factory, what, send):
    px = quiet_proxy(pgstash_factory, {"limits": {"client_idle_timeout": "1s"}})
    app = unique("half")
    c = raw_session(px, pg.superuser, params={"application_name": app})
    try:
        assert app_backends(pg, app)
        send(c)
        msgs, closed, waited = read_all_or_eof(c, timeout=10)
        assert closed, "%s: still open %.1fs later with client_idle_timeout = 1s" % (what, waited)
        assert 0.8 <= waited < 4.0, "%s: closed after %.2fs (idle timeout 1s)" % (what, waited)
        for m in msgs:
            assert m.type in ("E", "N"), m
            if m.type == "E":
                assert m.severity == "FATAL" and m.sqlstate in ("08P01", "57P05", "08006"), \
                    m.fields
    finally:
        c.close()
    wait_idle(px, timeout=5)
    wait_until(lambda: not app_backends(pg, app), timeout=10,
               message="the backend of the closed session to exit")
    assert_serves(px, pg.superuser)


@pytest.mark.parametrize("what", ["half_startup", "no_startup_at_all", "half_message"])
def test_auth_timeout_without_idle_timeout(pg, pgstash_factory, what):
    """limits.client_idle_timeout off (0): a half-sent start-up packet (or nothing at all, or
    half a message after login) is still closed, after limits.auth_timeout."""
    px = quiet_proxy(pgstash_factory, {"limits": {"auth_timeout": "1s",
                                                  "client_idle_timeout": 0}})
    wait_idle(px)
    base_fds = px.fd_count()
    app = unique("ha")
    if what == "half_message":
        c = raw_session(px, pg.superuser, params={"application_name": app})
        _half_message(c)
    else:
        c = raw(px)
        if what == "half_startup":
            c.send_raw(startup_bytes(pg.superuser, "test")[:12])
    try:
        msgs, closed, waited = read_all_or_eof(c, timeout=10)
        assert closed, "%s: still open after %.1fs (auth_timeout 1s)" % (what, waited)
        assert 0.8 <= waited < 4.0, "%s: closed after %.2fs (auth_timeout 1s)" % (what, waited)
        for m in msgs:
            assert m.type == "E" and m.severity == "FATAL", m
    finally:
        c.close()
    wait_idle(px, timeout=5)
    wait_until(lambda: not app_backends(pg, app), timeout=10)
    wait_fds_at_most(px, base_fds)
    assert_serves(px, pg.superuser)


# --- 2,000 connect/disconnect cycles ----------------------------------------------------------

CYCLES = 2000
CYCLE_THREADS = 4


def _cycle(px, user, kind, app):
    if kind == "full":
        with raw(px, timeout=10) as c:
            c.startup(user, "test", params={"application_name": app}, timeout=10)
            msgs = c.simple_query("SELECT 1", timeout=10)
            assert msgs[-1].type == "Z"
            c.terminate()
            c.expect_closed(timeout=10)
    elif kind == "login_abrupt":
        c = raw(px, timeout=10)
        c.startup(user, "test", params={"application_name": app}, timeout=10)
        c.close(reset=True)
    elif kind == "startup_close":
        c = raw(px, timeout=10)
        c.send_raw(startup_bytes(user, "test", {"application_name": app}))
        c.close()
    elif kind == "ssl_close":
        c = raw(px, timeout=10)
        assert c.ssl_request(timeout=10) == b"N"
        c.close()
    else:
        raise ValueError(kind)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_connect_disconnect_cycles_leave_nothing(pg, pgstash_factory, capsys):
    px = quiet_proxy(pgstash_factory)
    app = unique("cyc")
    kinds = ["full", "login_abrupt", "startup_close", "ssl_close"]
    # Warm-up: worker Redis connections, catalog, allocator arenas of both workers.
    for i in range(200):
        _cycle(px, pg.superuser, kinds[i % 4], app)
    wait_idle(px)
    wait_until(lambda: not app_backends(pg, app), timeout=20)
    time.sleep(0.5)
    base_fds, base_rss = px.fd_count(), px.rss_kb()
    errors = []
    lock = threading.Lock()

    def worker(w):
        for i in range(w, CYCLES, CYCLE_THREADS):
            try:
                _cycle(px, pg.superuser, kinds[i % 4], app)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append("cycle %d (%s): %r" % (i, kinds[i % 4], e))

    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(w,), daemon=True)
               for w in range(CYCLE_THREADS)]
    for t in threads:
        t.start()
    peak_fds = 0
    while any(t.is_alive() for t in threads):
        peak_fds = max(peak_fds, px.fd_count())
        time.sleep(0.05)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    s = wait_idle(px, timeout=30)
    wait_until(lambda: not app_backends(pg, app), timeout=30,
               message="every backend of the cycles to exit")
    try:
        wait_fds_at_most(px, base_fds + 2, timeout=15)
    finally:
        rss = px.rss_kb()
        with capsys.disabled():
            print("\nCYCLES %d in %.1fs: fds %d -> peak %d -> %d; rss %d KB -> %d KB; "
                  "clients_total %d; errors %d" % (CYCLES, elapsed, base_fds, peak_fds,
                                                   px.fd_count(), base_rss, rss,
                                                   s["clients_total"], len(errors)), flush=True)
    assert not errors, errors[:5]
    assert s["clients_total"] >= CYCLES + 200
    # RSS: back near the baseline. A leak of 2 KB per cycle would show as +4 MB. (The one
    # kind of cycle known to leave memory behind is measured alone, more tightly, below.)
    assert rss <= base_rss + 4096 + rss_slack_kb(px), "RSS grew from %d KB to %d KB over %d cycles" % (
        base_rss, rss, CYCLES)
    assert_serves(px, pg.superuser)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_startup_then_close_does_not_grow_rss(pg, pgstash_factory, capsys):
    """A client sends its StartupMessage and closes at once (pgstash drops it without
    connecting when the close came with the packet, or is still connecting to PostgreSQL for
    it): hundreds pile up at once, and glibc kept their freed buffers in the workers' arenas
    (RSS +4 MB per 2,000) until pgstash trimmed after such crowds. Two batches of 2,000:
    after each, the RSS must be back near the baseline (within 2 MB)."""
    px = quiet_proxy(pgstash_factory)
    app = unique("stc")

    def batch():
        for _ in range(CYCLES):
            _cycle(px, pg.superuser, "startup_close", app)
        wait_idle(px, timeout=30)
        wait_until(lambda: not app_backends(pg, app), timeout=30)
        time.sleep(0.3)
        return px.rss_kb()

    for _ in range(50):
        _cycle(px, pg.superuser, "full", app)
    wait_idle(px)
    base_fds, base = px.fd_count(), px.rss_kb()
    first = batch()
    second = batch()
    with capsys.disabled():
        print("\nSTARTUP-CLOSE cycles: rss %d KB -> %d KB after %d -> %d KB after %d"
              % (base, first, CYCLES, second, 2 * CYCLES), flush=True)
    wait_fds_at_most(px, base_fds + 2)
    if rss_slack_kb(px):
        # ASan's allocator keeps freed memory (quarantine, per-size caches) and returns none
        # of it: RSS says nothing here. Leaks are LeakSanitizer's report at exit; the release
        # build runs this RSS check.
        pytest.skip("RSS is not meaningful under ASan (fds checked, leaks checked at exit)")
    assert max(first, second) <= base + 2048, (
        "RSS does not come back after clients that close right after their StartupMessage: "
        "%d KB at the start, %d KB after %d such clients, %d KB after %d"
        % (base, first, CYCLES, second, 2 * CYCLES))
