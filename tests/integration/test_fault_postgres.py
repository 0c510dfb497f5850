"""
Fault injection on PostgreSQL under load (issue 6, "Fault injection"): a private cluster is
restarted (pg_ctl stop -m fast, and -m immediate) while client threads read and write through
pgstash.

  - Every client call has a timeout: a connection that neither answers nor closes within
    CALL_TIMEOUT is a hang, and a hang fails the test.
  - A session that loses its server hears why: PostgreSQL's own FATAL (57P01 admin shutdown)
    relayed, or pgstash's FATAL 08006 (connection failure class 08). A close without any
    ErrorResponse fails the test. New connections while PostgreSQL is away get FATAL 08006
    from pgstash naming the upstream, or PostgreSQL's own 57P03 (shutting down / starting up:
    its real answer in those windows).
  - New connections work as soon as PostgreSQL is back: the first connection made after
    pg_ctl start returned succeeds, and so do every load thread's reconnects.
  - No stale reads afterwards: every row (written before the restart, with its entries in
    the cache, or after it) read through pgstash — twice, the second one from the cache —
    is PostgreSQL's value, and never older than what its writer saw acknowledged.

The cluster runs with synchronous_commit = on: with the harness's default (off) an immediate
shutdown may lose commits that were already acknowledged, and PostgreSQL itself would then
disagree with what clients were told.
"""

import socket
import threading
import time

import pytest

import pgwire
from cache_helpers import classify, make_proxy, q2
from fault_helpers import make_counter_table
from helpers import ClientThreads, raw, unique
from pgstash_harness import wait_until

pytestmark = [pytest.mark.proxy_only, pytest.mark.slow]

CALL_TIMEOUT = 10.0
N_ROWS = 16
N_THREADS = 4
PRE = (N_ROWS + 1, N_ROWS + 2, N_ROWS + 3)     # written and cached before the restart
POST = (N_ROWS + 4, N_ROWS + 5)                # written by the first client after it


class Lost(Exception):
    """The session ended: .how is the SQLSTATE of the ErrorResponse that came with it, or
    'EOF' (closed without a word), or 'HANG' (neither answer nor close within the timeout)."""

    def __init__(self, how, message="", phase=""):
        super().__init__("%s %s %s" % (phase, how, message))
        self.how = how
        self.message = message
        self.phase = phase


def run_query(c, sql):
    """One simple query on a raw session: the DataRows, or raises Lost."""
    try:
        c.query(sql)
    except OSError:
        pass  # the peer is gone; what it said before going is still in our receive buffer
    msgs = []
    try:
        while True:
            m = c.read_msg(timeout=CALL_TIMEOUT)
            msgs.append(m)
            if m.type == "Z":
                break
    except socket.timeout:
        raise Lost("HANG", sql, "query") from None
    except pgwire.ConnectionClosed:
        errs = [m for m in msgs if m.type == "E"]
        if errs:
            raise Lost(errs[0].sqlstate, errs[0].message, "query") from None
        raise Lost("EOF", "closed without an ErrorResponse", "query") from None
    errs = [m for m in msgs if m.type == "E"]
    if errs:
        # A FATAL is followed by a close; an ERROR keeps the session (none expected here).
        raise Lost(errs[0].sqlstate, errs[0].message,
                   "query-fatal" if errs[0].severity == "FATAL" else "query-error")
    return [m.data_row for m in msgs if m.type == "D"]


def open_session(px, user, app):
    try:
        c = raw(px, timeout=CALL_TIMEOUT)
    except OSError as e:
        raise Lost("CONNECT-REFUSED", repr(e), "startup") from None
    try:
        c.startup(user, "test", params={"application_name": app}, timeout=CALL_TIMEOUT)
        return c
    except pgwire.ServerError as e:
        c.close()
        raise Lost(e.msg.sqlstate, e.msg.message, "startup") from None
    except socket.timeout:
        c.close()
        raise Lost("HANG", "start-up", "startup") from None
    except (pgwire.ConnectionClosed, OSError):
        c.close()
        raise Lost("EOF", "closed during start-up", "startup") from None


class RestartLoad(ClientThreads):
    join_timeout = 2 * CALL_TIMEOUT + 5

    def __init__(self, px, user, table, app):
        self.px, self.user, self.table, self.app = px, user, table, app
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.events = []        # (time, thread, Lost)
        self.ok = []            # (time, thread) of successful statements
        self.acked = {}         # row -> last value acknowledged to its writer
        self.bad = []           # wrong values seen
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(N_THREADS)]

    def _run(self, i):
        own = [r for r in range(1, N_ROWS + 1) if (r - 1) % N_THREADS == i]
        k = 0
        c = None
        while not self.stop.is_set():
            try:
                if c is None:
                    c = open_session(self.px, self.user, "%s-%d" % (self.app, i))
                k += 1
                row = own[k % len(own)]
                if k % 3 == 0:
                    v = int(run_query(c, "UPDATE %s SET v = v + 1 WHERE id = %d RETURNING v"
                                      % (self.table, row))[0][0])
                    self.acked[row] = v
                else:
                    floor = self.acked.get(row, 0)
                    v = int(run_query(c, "SELECT v FROM %s WHERE id = %d"
                                      % (self.table, row))[0][0])
                    if v < floor:
                        with self.lock:
                            self.bad.append("thread %d row %d: read %d after %d was "
                                            "acknowledged" % (i, row, v, floor))
                with self.lock:
                    self.ok.append((time.monotonic(), i))
                time.sleep(0.005)
            except Exception as e:  # noqa: BLE001 - every failure is recorded and judged
                if not isinstance(e, Lost):
                    e = Lost("UNEXPECTED", repr(e), "query")
                with self.lock:
                    self.events.append((time.monotonic(), i, e))
                if c is not None:
                    c.close()
                    c = None
                time.sleep(0.05)
        if c is not None:
            try:
                c.terminate()
            except OSError:
                pass
            c.close()


ALLOWED_QUERY = ("57P01",)          # PostgreSQL's admin shutdown FATAL, relayed
ALLOWED_STARTUP = ("57P03",)        # PostgreSQL: "the database system is shutting down/starting up"


def allowed(e):
    if e.how.startswith("08"):
        return True
    if e.phase.startswith("query"):
        return e.how in ALLOWED_QUERY
    return e.how in ALLOWED_STARTUP or e.how in ALLOWED_QUERY


@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_under_load(pg_factory, pgstash_factory, redis, capsys, mode):
    own = pg_factory(conf={"synchronous_commit": "on"})
    table = make_counter_table(own, N_ROWS + 5)   # the load's rows, then PRE and POST
    px = make_proxy(pgstash_factory, {"log": {"level": "info"}}, pg=own)
    su = own.superuser
    app = unique("pgr")

    # Rows written and cached BEFORE the restart.
    pre = px.connect()
    for r in PRE:
        q2(pre, "UPDATE %s SET v = 1000 + %d WHERE id = %d" % (table, r, r))
    for r in PRE:
        for _ in range(2):
            assert q2(pre, "SELECT v FROM %s WHERE id = %d" % (table, r)) == [(1000 + r,)]
    pre.close()

    load = RestartLoad(px, su, table, app).start()
    try:
        wait_until(lambda: len(load.ok) > 200, timeout=30, message="steady load")
        t_stop = time.monotonic()
        own.stop(mode)
        t_down = time.monotonic()
        time.sleep(1.0)
        own.start()
        t_back = time.monotonic()
        # The very first new connection after PostgreSQL is back works, with a read and a write.
        first = None
        try:
            first = open_session(px, su, app + "-first")
            assert run_query(first, "SELECT 'back'") == [[b"back"]]
            run_query(first, "UPDATE %s SET v = 2000 + id WHERE id IN (%d, %d) RETURNING v"
                      % ((table,) + POST))
        except Lost as e:
            pytest.fail("the first connection after PostgreSQL came back failed: %s" % e)
        finally:
            if first is not None:
                first.close()
        first_ok = time.monotonic() - t_back
        # Every load thread gets going again.
        wait_until(lambda: {i for t, i in load.ok if t > t_back} == set(range(N_THREADS)),
                   timeout=20, message="every load thread to work again after the restart")
        time.sleep(1.0)
    finally:
        load.finish()

    events = load.events
    lines = ["%.2fs thread %d %s %s: %s" % (t - t_stop, i, e.phase, e.how, e.message)
             for t, i, e in events]
    with capsys.disabled():
        print("\nFAULT postgres-%s: down %.2fs, first connection ok %.3fs after start returned; "
              "%d statements ok; session losses: %s" % (
                  mode, t_back - t_down, first_ok, len(load.ok),
                  sorted({(e.phase, e.how) for _, _, e in events})), flush=True)

    hangs = [x for x in lines if " HANG" in x]
    assert not hangs, "calls that hung:\n" + "\n".join(hangs)
    silent = [x for x in lines if " EOF" in x or "CONNECT-REFUSED" in x]
    assert not silent, "sessions closed without an ErrorResponse:\n" + "\n".join(silent)
    bad = ["%.2fs thread %d %s %s: %s" % (t - t_stop, i, e.phase, e.how, e.message)
           for t, i, e in events if not allowed(e)]
    assert not bad, "unexpected errors:\n" + "\n".join(bad)
    lost_sessions = [e for _, _, e in events if e.phase.startswith("query")]
    assert lost_sessions, "no session noticed the restart: bad test"
    assert not load.bad, load.bad[:5]

    # No stale reads afterwards: every row, through pgstash twice (the second from the cache
    # when cacheable), equals PostgreSQL's value.
    want = dict(own.sql("SELECT id, v FROM %s" % table))
    assert all(want[r] == 1000 + r for r in PRE) and all(want[r] == 2000 + r for r in POST), want
    c = px.connect()
    try:
        for r in range(1, N_ROWS + 6):
            for n in range(2):
                got = q2(c, "SELECT v FROM %s WHERE id = %d" % (table, r))
                assert got == [(want[r],)], ("row %d read %d through pgstash after the restart "
                                             "(read %d): PostgreSQL has %d"
                                             % (r, got[0][0], n + 1, want[r]))
            assert want[r] >= load.acked.get(r, 0)
        # Written after the restart, through pgstash: the cache follows.
        q2(c, "UPDATE %s SET v = v + 1 WHERE id = %d" % (table, PRE[0]))
        assert q2(c, "SELECT v FROM %s WHERE id = %d" % (table, PRE[0])) == [(want[PRE[0]] + 1,)]
        # And hits work again.
        sql = "SELECT v FROM %s WHERE id = 2" % table
        wait_until(lambda: classify(px, lambda: q2(c, sql))[1] == "hit", timeout=15,
                   interval=0.2, message="hits after the restart")
    finally:
        c.close()
    assert px.is_running()
    wait_until(lambda: not own.backend_pids(), timeout=15,
               message="no backend left after the clients left")
