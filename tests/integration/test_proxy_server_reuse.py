"""
Kept server connections (limits.server_idle_timeout): a client that leaves between statements
leaves its backend, reset with DISCARD ALL, to the next client of the same worker whose
StartupMessage is the same, but only when PostgreSQL let the login in without a password.
Off by default: each client then gets its own new backend, as with PostgreSQL direct.
"""

import time

import pytest

import pgwire
from helpers import raw_session, unique, wait_backend_gone, wait_until

pytestmark = pytest.mark.proxy_only

KEEP = {"workers": 1, "limits": {"server_idle_timeout": "60s"}}
APP = {"application_name": "reuse-test"}


def backend_pid(px, **kw):
    conn = px.connect(application_name="reuse-test", **kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def kept(px, n=1):
    """Waits until n server connections are reset and offered to the next clients."""
    wait_until(lambda: px.stats()["servers_kept"] >= n, timeout=10,
               message="%d kept server connection(s)" % n)


def test_off_by_default(proxy):
    assert backend_pid(proxy) != backend_pid(proxy)


def test_trust_login_reuses_the_backend(pgstash_factory):
    px = pgstash_factory(KEEP)
    first = backend_pid(px)
    kept(px)
    assert backend_pid(px) == first
    kept(px)
    assert backend_pid(px) == first
    assert px.stats()["server_reuses"] == 2


def test_login_answer_is_replayed(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    with raw_session(px, pg.superuser, params=APP) as c:
        fresh = [m for m in c.startup_messages if m.type != "K"]
        key = c.backend_pid, c.backend_secret
        c.terminate()
    kept(px)
    with raw_session(px, pg.superuser, params=APP) as c:
        again = [m for m in c.startup_messages if m.type != "K"]
        # The same backend, so the same cancel key: a CancelRequest through pgstash works.
        assert (c.backend_pid, c.backend_secret) == key
        rows = [m.data_row for m in c.simple_query("SELECT pg_backend_pid()") if m.type == "D"]
        assert rows == [[str(key[0]).encode()]]
    assert again == fresh
    assert fresh[0].auth_code == pgwire.AUTH_OK


def test_session_state_is_reset(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    conn = px.connect(application_name="reuse-test")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute("SET statement_timeout = '7s'")
        cur.execute("SET application_name = 'changed'")
        cur.execute("SELECT set_config('my.var', 'left-behind', false)")
        cur.execute("CREATE TEMP TABLE reuse_tmp (x int)")
        cur.execute("PREPARE reuse_stmt AS SELECT 1")
        cur.execute("SELECT pg_advisory_lock(4242)")
        cur.execute("LISTEN reuse_channel")
        cur.execute("DECLARE reuse_cur CURSOR WITH HOLD FOR SELECT 1")
    conn.close()
    kept(px)
    conn = px.connect(application_name="reuse-test")
    try:
        # The login's own value, reported again, not the one the last session set.
        assert conn.get_parameter_status("application_name") == "reuse-test"
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            assert cur.fetchone()[0] == pid
            cur.execute("SHOW statement_timeout")
            assert cur.fetchone()[0] == "0"
            cur.execute("SHOW application_name")
            assert cur.fetchone()[0] == "reuse-test"
            cur.execute("SELECT current_setting('my.var', true)")
            assert cur.fetchone()[0] in (None, "")
            cur.execute("SELECT to_regclass('pg_temp.reuse_tmp')")
            assert cur.fetchone()[0] is None
            cur.execute("SELECT count(*) FROM pg_prepared_statements")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM pg_cursors")
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT count(*) FROM pg_listening_channels()")
            assert cur.fetchone()[0] == 0
        assert pg.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                      "AND objid = 4242")[0][0] == 0
    finally:
        conn.close()


@pytest.mark.parametrize("user,pwattr", [("md5user", "MD5_PASSWORD"),
                                         ("scramuser", "SCRAM_PASSWORD")])
def test_password_logins_are_never_kept(pg, pgstash_factory, user, pwattr):
    # pgstash never sees passwords, so it could not check the next client's.
    px = pgstash_factory(KEEP)
    password = getattr(pg, pwattr)
    first = backend_pid(px, user=user, password=password)
    wait_backend_gone(pg, first)
    assert backend_pid(px, user=user, password=password) != first
    assert px.stats()["servers_kept"] == 0
    assert px.stats()["server_reuses"] == 0


def test_other_startup_parameters_get_another_backend(pgstash_factory):
    px = pgstash_factory(KEEP)
    first = backend_pid(px)
    kept(px)
    conn = px.connect(application_name="someone-else")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            assert cur.fetchone()[0] != first
    finally:
        conn.close()
    assert backend_pid(px) == first


def test_client_leaving_inside_a_transaction_is_not_kept(pg, pgstash_factory):
    table = unique("reuse_tx")
    pg.sql("CREATE TABLE %s (x int)" % table)
    px = pgstash_factory(KEEP)
    conn = px.connect(application_name="reuse-test", autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
        cur.execute("INSERT INTO %s VALUES (1)" % table)
    conn.close()                     # no COMMIT: PostgreSQL rolls back as the backend exits
    wait_backend_gone(pg, pid)
    assert backend_pid(px) != pid
    assert pg.sql("SELECT count(*) FROM %s" % table)[0][0] == 0


def test_client_vanishing_without_terminate_is_kept(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    c = raw_session(px, pg.superuser, params=APP)
    pid = c.backend_pid
    c.close()                        # EOF, no Terminate, between statements
    kept(px)
    with raw_session(px, pg.superuser, params=APP) as c:
        assert c.backend_pid == pid
        c.terminate()


def test_terminated_kept_backend_is_dropped(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    pid = backend_pid(px)
    kept(px)
    pg.sql("SELECT pg_terminate_backend(%s)", (pid,))
    wait_backend_gone(pg, pid)
    # The next client gets a working new backend, not the dead one.
    other = backend_pid(px)
    assert other != pid


def test_idle_timeout_closes_the_backend(pg, pgstash_factory):
    px = pgstash_factory({"workers": 1, "limits": {"server_idle_timeout": "1s"}})
    pid = backend_pid(px)
    assert pid in pg.backend_pids()
    wait_backend_gone(pg, pid, timeout=10)
    stats = px.stats()
    assert (stats["servers"], stats["servers_kept"]) == (0, 0)


def test_server_lifetime_bounds_reuse(pg, pgstash_factory):
    px = pgstash_factory({"workers": 1, "limits": {"server_idle_timeout": "60s",
                                                   "server_lifetime": "1s"}})
    conn = px.connect(application_name="reuse-test")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    time.sleep(1.2)
    conn.close()                     # older than server_lifetime: closed, not kept
    wait_backend_gone(pg, pid)
    assert backend_pid(px) != pid


def test_reload_closes_kept_backends(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    pid = backend_pid(px)
    kept(px)
    px.reload()
    wait_backend_gone(pg, pid)
    assert backend_pid(px) != pid


def test_shutdown_closes_kept_backends(pg, pgstash_factory):
    px = pgstash_factory(KEEP)
    pid = backend_pid(px)
    kept(px)
    assert px.stop() == 0
    wait_backend_gone(pg, pid)


def test_many_clients_each_get_a_backend_of_their_own(pg, pgstash_factory):
    # Kept connections go to one client at a time: concurrent sessions never share one.
    px = pgstash_factory(KEEP)
    for _ in range(3):
        conns = [px.connect(application_name="reuse-test") for _ in range(5)]
        pids = []
        for conn in conns:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pids.append(cur.fetchone()[0])
        assert len(set(pids)) == 5
        for conn in conns:
            conn.close()
        kept(px, 5)
    wait_until(lambda: px.stats()["server_reuses"] >= 10, timeout=5,
               message="kept connections reused")


def test_setting_changed_under_a_kept_backend_closes_it(pg, pgstash_factory):
    # A reload that changes a reported setting's default: the reset reports the new value, which
    # is not what the login's answer says, so the backend is closed rather than replayed.
    px = pgstash_factory(dict(KEEP, log={"level": "debug"}))
    conn = px.connect(application_name="reuse-test")
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    try:
        pg.sql("ALTER SYSTEM SET DateStyle = 'SQL, DMY'")
        pg.sql("SELECT pg_reload_conf()")
        time.sleep(0.5)
        conn.close()                 # DISCARD ALL now reports DateStyle = SQL, DMY
        wait_backend_gone(pg, pid)
        assert backend_pid(px) != pid
    finally:
        pg.sql("ALTER SYSTEM RESET DateStyle")
        pg.sql("SELECT pg_reload_conf()")
    assert px.stats()["server_reuses"] == 0
    assert "a setting differs from the login's" in px.log_text()
