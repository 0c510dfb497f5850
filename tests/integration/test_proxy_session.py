"""
Session lifecycle through pgstash: CancelRequest, Terminate, and clients that vanish in the
middle of a result or a transaction. The backend must follow its client every time.
"""

import threading
import time

import psycopg
import psycopg2
import pytest

import pgwire
from helpers import raw_session, unique, wait_backend_gone, wait_backend_state
from pgstash_harness import wait_until

SLEEP = "SELECT pg_sleep(30)"


def _run_in_thread(fn):
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e
        box["done"] = time.monotonic()
    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def test_cancel_pg_sleep_psycopg2(pg, proxy):
    app = unique("cancel")
    conn = proxy.connect(application_name=app)
    try:
        cur = conn.cursor()
        t, box = _run_in_thread(lambda: cur.execute(SLEEP))
        wait_backend_state(pg, application_name=app, state="active", query=SLEEP)
        sent = time.monotonic()
        conn.cancel()  # libpq's PQcancel: a CancelRequest to pgstash's port
        t.join(10)
        assert not t.is_alive(), "query still running 10 s after the cancel"
        err = box.get("error")
        assert isinstance(err, psycopg2.errors.QueryCanceled), box
        assert err.pgcode == "57014"
        assert box["done"] - sent < 5
        cur.execute("SELECT 'still usable'")
        assert cur.fetchone() == ("still usable",)
    finally:
        conn.close()


def test_cancel_psycopg3(pg, proxy):
    app = unique("cancel3")
    with psycopg.connect(proxy.dsn(application_name=app), autocommit=True) as conn:
        t, box = _run_in_thread(lambda: conn.execute(SLEEP))
        wait_backend_state(pg, application_name=app, state="active", query=SLEEP)
        conn.cancel()
        t.join(10)
        assert isinstance(box.get("error"), psycopg.errors.QueryCanceled), box
        assert box["error"].sqlstate == "57014"
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_cancel_raw_wrong_key_then_right_key(pg, proxy):
    app = unique("cancelraw")
    with raw_session(proxy, pg.superuser, params={"application_name": app}) as c:
        assert c.backend_pid is not None
        c.query(SLEEP)
        wait_backend_state(pg, application_name=app, state="active", query=SLEEP)
        # A wrong secret must not cancel anything.
        pgwire.PgWire.cancel(proxy.host, proxy.port, c.backend_pid, c.backend_secret ^ 0x5a5a5a5a)
        with raw_session(proxy, pg.superuser) as other:
            other.simple_query("SELECT 1")
        assert pg.backend_pids(application_name=app, state="active"), "cancelled by a wrong key"
        # The key pgstash handed out at start-up cancels the query.
        sent = time.monotonic()
        pgwire.PgWire.cancel(proxy.host, proxy.port, c.backend_pid, c.backend_secret)
        msgs = c.read_until_ready(timeout=10)
        assert time.monotonic() - sent < 5
        errors = [m for m in msgs if m.type == "E"]
        assert len(errors) == 1 and errors[0].sqlstate == "57014"
        assert errors[0].message == "canceling statement due to user request"
        assert msgs[-1].tx_status == "I"


def test_terminate_closes_and_backend_disappears(pg, proxy):
    with raw_session(proxy, pg.superuser) as c:
        rows = [m for m in c.simple_query("SELECT pg_backend_pid()") if m.type == "D"]
        backend = int(rows[0].data_row[0])
        assert backend in pg.backend_pids()
        c.terminate()
        assert c.is_closed_by_peer(timeout=5), "connection still open after Terminate"
    wait_backend_gone(pg, backend)


def test_psycopg2_close_ends_backend(pg, proxy):
    conn = proxy.connect()
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    backend = cur.fetchone()[0]
    conn.close()
    wait_backend_gone(pg, backend)


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_client_disconnect_mid_result(pg, proxy, how):
    """A client that vanishes while a large result streams: the backend goes away and
    pgstash keeps serving."""
    app = unique("midres")
    c = raw_session(proxy, pg.superuser, params={"application_name": app})
    try:
        c.query("SELECT repeat('x', 1000) FROM generate_series(1, 1000000)")
        got = 0
        while got < 1_000_000:
            got += len(c.read_msg().payload)
        assert pg.backend_pids(application_name=app)
    finally:
        c.close(reset=(how == "rst"))
    wait_until(lambda: not pg.backend_pids(application_name=app), timeout=15,
               message="the backend of the vanished client to exit")
    with raw_session(proxy, pg.superuser) as ok:
        assert [m.data_row for m in ok.simple_query("SELECT 2") if m.type == "D"] == [[b"2"]]


def test_client_disconnect_in_transaction_rolls_back(pg, proxy):
    table = unique("droptx")
    pg.sql("CREATE TABLE %s (id int)" % table)
    try:
        app = unique("droptx")
        c = raw_session(proxy, pg.superuser, params={"application_name": app})
        c.simple_query("BEGIN")
        c.simple_query("INSERT INTO %s VALUES (1)" % table)
        c.close(reset=True)
        wait_until(lambda: not pg.backend_pids(application_name=app), timeout=10,
                   message="backend of the dropped client to exit")
        assert pg.sql("SELECT count(*) FROM %s" % table) == [(0,)]
        # The table is not left locked by a lingering transaction.
        pg.sql("SET lock_timeout = '2s'; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE" % table)
    finally:
        pg.sql("DROP TABLE %s" % table)


def test_server_side_termination_reaches_client(pg, proxy):
    """pg_terminate_backend: the client gets PostgreSQL's FATAL 57P01 and a close."""
    app = unique("killed")
    with raw_session(proxy, pg.superuser, params={"application_name": app}) as c:
        backend = wait_backend_state(pg, application_name=app)
        pg.sql("SELECT pg_terminate_backend(%s)", (backend,))
        msgs = c.expect_closed(timeout=10)
        errs = [m for m in msgs if m.type == "E"]
        assert errs and errs[0].sqlstate == "57P01"
    with raw_session(proxy, pg.superuser) as ok:
        ok.simple_query("SELECT 1")
