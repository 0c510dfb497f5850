"""
fault_helpers.py — shared tools of the fault-injection and security suites
(test_fault_*.py, test_security_*.py).

  DelayProxy        a tiny TCP proxy in front of a real server that forwards bytes both ways and
                    delays the server→client direction by an adjustable amount ("slow Redis").
  StatementLoad     client threads on raw wire sessions (every read has a timeout, so a hang is
                    a recorded failure, never a stuck test) that time every single statement.
  run_checker_with  the consistency checker of the cache issue (consistency.py), run in the
                    background while a fault is injected from the test thread.
  resources         fd / RSS / clients / servers / backends: baselines and "back to baseline".

Everything is black-box: it looks at what a client receives, at /stats, at /proc and at
PostgreSQL's pg_stat_activity — never at pgstash's internals.
"""

import collections
import socket
import struct
import subprocess
import threading
import time

import consistency as cc
import pgwire
from helpers import ClientThreads, raw_session, unique
from pgstash_harness import free_port, wait_until


# --- a delaying TCP proxy ---------------------------------------------------------------------

class DelayProxy:
    """Listens on a free loopback port and forwards every connection to (host, port).
    Server→client bytes are held for `delay` seconds, client→server bytes for `up_delay`
    seconds (both adjustable while running; order preserved). stop() closes everything."""

    def __init__(self, host, port, delay=0.0, up_delay=0.0):
        self.target = (host, port)
        self.delay = delay
        self.up_delay = up_delay
        self.host = "127.0.0.1"
        self.port = free_port()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((self.host, self.port))
        self.lsock.listen(128)
        self.stopped = threading.Event()
        self.lock = threading.Lock()
        self.socks = []
        self.connections = 0
        self.bytes_delayed = 0
        self.down = False
        threading.Thread(target=self._accept, daemon=True, name="delayproxy-accept").start()

    def set_delay(self, seconds, up=None):
        self.delay = seconds
        if up is not None:
            self.up_delay = up

    def cut(self):
        """A partition: every open connection is closed, new ones are closed at once."""
        self.down = True
        with self.lock:
            socks, self.socks = self.socks, []
        self._close(*socks)

    def heal(self):
        self.down = False

    def _accept(self):
        while not self.stopped.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.down:
                self._close(c)
                continue
            try:
                s = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            for x in (c, s):
                x.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                x.settimeout(None)
            with self.lock:
                self.socks += [c, s]
                self.connections += 1
            for src, dst, get in ((s, c, lambda: self.delay), (c, s, lambda: self.up_delay)):
                q = collections.deque()
                cv = threading.Condition()
                threading.Thread(target=self._read, args=(src, dst, q, cv, get),
                                 daemon=True).start()
                threading.Thread(target=self._send, args=(src, dst, q, cv),
                                 daemon=True).start()

    @staticmethod
    def _close(*socks):
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                x.close()
            except OSError:
                pass

    def _read(self, src, dst, q, cv, get_delay):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                d = get_delay()
                with cv:
                    q.append((time.monotonic() + d, data))
                    if d > 0:
                        self.bytes_delayed += len(data)
                    cv.notify()
        except OSError:
            pass
        with cv:
            q.append((0.0, None))
            cv.notify()

    def _send(self, src, dst, q, cv):
        try:
            while True:
                with cv:
                    while not q:
                        cv.wait()
                    due, data = q.popleft()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                dst.sendall(data)
        except OSError:
            pass
        self._close(src, dst)

    def stop(self):
        self.stopped.set()
        self._close(self.lsock)
        with self.lock:
            socks, self.socks = self.socks, []
        self._close(*socks)


# --- client load with per-statement timing -----------------------------------------------------

Stmt = collections.namedtuple("Stmt", "start dur kind instance ok")


class StatementLoad(ClientThreads):
    """`threads` client threads, each on its own raw session through targets[i % n], each
    owning some rows of `table` (id int PRIMARY KEY, v bigint): a loop of cached reads of any
    row and UPDATEs of its own rows, every statement timed. Every read is checked against the
    last value the thread knows was acknowledged for its own rows (a thread reading its own
    row must never see less). Any error, timeout (a hang) or stale own-row read is recorded.
    `extra` is an optional list of (kind, sql) statements mixed in (e.g. non-cacheable ones)."""

    def __init__(self, targets, user, table, n_rows, threads=4, write_ratio=0.3,
                 timeout=10.0, pause=0.002, extra=()):
        self.targets = targets
        self.user = user
        self.table = table
        self.n_rows = n_rows
        self.n_threads = threads
        self.write_ratio = write_ratio
        self.timeout = timeout
        self.pause = pause
        self.extra = list(extra)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stmts = []
        self.errors = []
        self.stale = []
        self.acked = {}
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True,
                                         name="load-%d" % i) for i in range(threads)]

    def _record(self, start, kind, inst, ok=True):
        with self.lock:
            self.stmts.append(Stmt(start, time.monotonic() - start, kind, inst, ok))

    def _run(self, i):
        import random
        rnd = random.Random(i * 7919)
        inst = i % len(self.targets)
        target = self.targets[inst]
        own = [r for r in range(1, self.n_rows + 1) if (r - 1) % self.n_threads == i]
        sel = "SELECT v FROM %s WHERE id = %%d" % self.table
        upd = "UPDATE %s SET v = v + 1 WHERE id = %%d RETURNING v" % self.table
        try:
            c = raw_session(target, self.user, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            with self.lock:
                self.errors.append("thread %d: connect: %r" % (i, e))
            return
        try:
            while not self.stop.is_set():
                x = rnd.random()
                if self.extra and x < 0.15:
                    kind, sql = rnd.choice(self.extra)
                elif x < 0.15 + self.write_ratio and own:
                    kind, row = "write", rnd.choice(own)
                    sql = upd % row
                else:
                    kind, row = "read", rnd.randint(1, self.n_rows)
                    sql = sel % row
                t0 = time.monotonic()
                floor = self.acked.get(row) if kind == "read" else None
                try:
                    msgs = c.simple_query(sql, timeout=self.timeout)
                except socket.timeout:
                    with self.lock:
                        self.errors.append("thread %d: %s: no answer within %.0fs (hang)"
                                           % (i, sql, self.timeout))
                    return
                except Exception as e:  # noqa: BLE001
                    with self.lock:
                        self.errors.append("thread %d: %s: %r" % (i, sql, e))
                    return
                self._record(t0, kind, inst)
                errs = [m for m in msgs if m.type == "E"]
                if errs:
                    with self.lock:
                        self.errors.append("thread %d: %s: ERROR %s %s"
                                           % (i, sql, errs[0].sqlstate, errs[0].message))
                    continue
                if kind in ("read", "write"):
                    rows = [m.data_row for m in msgs if m.type == "D"]
                    v = int(rows[0][0])
                    if kind == "write":
                        self.acked[row] = v
                    elif floor is not None and v < floor:
                        with self.lock:
                            self.stale.append("thread %d: row %d read %d after %d was "
                                              "acknowledged to this thread" % (i, row, v, floor))
                if self.pause:
                    time.sleep(self.pause)
            c.terminate()
        finally:
            c.close()

    # -- analysis --------------------------------------------------------------------------------
    def window(self, t_from, t_to, kinds=None):
        """Statements that started within [t_from, t_to)."""
        with self.lock:
            return [s for s in self.stmts if t_from <= s.start < t_to
                    and (kinds is None or s.kind in kinds)]

    @staticmethod
    def latency_summary(stmts):
        d = sorted(s.dur for s in stmts)
        if not d:
            return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
        return {"n": len(d), "p50": d[len(d) // 2], "p99": cc.percentile(d, 0.99),
                "max": d[-1]}


def make_counter_table(pg, n_rows, dbname=None):
    t = unique("flt")
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v bigint NOT NULL)" % t, dbname=dbname)
    pg.sql("INSERT INTO %s SELECT g, 0 FROM generate_series(1, %d) g" % (t, n_rows),
           dbname=dbname)
    return t


# --- the consistency checker with a fault in the middle ----------------------------------------

class CheckerRun:
    """Runs consistency.Checker over `targets` in a background thread; the test thread injects
    its fault meanwhile (using .t0, the checker's start) and then calls .join()."""

    def __init__(self, pg, targets, label, duration, n_rows=12, write_pause=0.03,
                 readers_per_target=3):
        self.table = unique("kvf")
        self.checker = cc.Checker(list(targets), self.table, label, n_rows=n_rows,
                                  duration=duration, write_pause=write_pause,
                                  readers_per_target=readers_per_target)
        self.checker.create_table(pg)
        self.result = None
        self.exc = None
        self.thread = None

    def warm(self):
        import psycopg2
        for t in self.checker.targets:
            conn = psycopg2.connect(t.dsn())
            conn.autocommit = True
            try:
                with conn.cursor() as cur:
                    for r in range(1, self.checker.n_rows + 1):
                        cur.execute("SELECT v FROM %s WHERE id = %%s" % self.table, (r,))
                        cur.fetchone()
            finally:
                conn.close()

    def start(self):
        def body():
            try:
                self.result = self.checker.run()
            except BaseException as e:  # noqa: BLE001
                self.exc = e
        self.thread = threading.Thread(target=body, daemon=True, name="checker")
        self.thread.start()
        wait_until(lambda: self.checker.t0 is not None, timeout=10, message="checker start")
        return self

    @property
    def t0(self):
        return self.checker.t0

    def sleep_until(self, offset):
        """Sleeps until `offset` seconds after the checker's start."""
        left = self.checker.t0 + offset - time.monotonic()
        if left > 0:
            time.sleep(left)

    def join(self, timeout=120):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the consistency checker did not finish"
        if self.exc:
            raise self.exc
        return self.result

    def reads_between(self, t_from, t_to):
        return [r for r in self.result.reads if t_from <= r.start < t_to]

    def describe_stale(self, limit=10):
        return "\n".join(cc.describe(v, self.checker.t0) for v in self.result.stale[:limit])


# --- resources ------------------------------------------------------------------------------

_ASAN = {}


def rss_slack_kb(px):
    """Extra RSS allowance for a sanitizer build: ASan keeps freed memory in its quarantine
    (run-all.sh sets quarantine_size_mb=8) and has allocator overheads of its own."""
    b = str(px.binary)
    if b not in _ASAN:
        try:
            out = subprocess.run(["ldd", b], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _ASAN[b] = "libasan" in out
    return 16384 if _ASAN[b] else 0


def wait_idle(px, timeout=20):
    """Waits until /stats says no client and no server connection is open."""
    return px.wait_stats(lambda s: s["clients"] == 0 and s["servers"] == 0, timeout=timeout,
                         message="clients == 0 and servers == 0")


def wait_fds_at_most(px, limit, timeout=15):
    return wait_until(lambda: px.fd_count() <= limit, timeout=timeout,
                      message="pgstash's fd count <= %d (now %d)" % (limit, px.fd_count()))


def app_backends(pg, prefix):
    """PIDs of client backends whose application_name starts with `prefix`."""
    rows = pg.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                  "AND application_name LIKE %s", (prefix + "%",), dbname="postgres")
    return {r[0] for r in rows}


def user_backends(pg, user):
    rows = pg.sql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
                  "AND usename = %s", (user,), dbname="postgres")
    return {r[0] for r in rows}


def read_all_or_eof(sock_wire, timeout):
    """Reads messages until the peer closes; returns (messages, closed?, seconds waited)."""
    t0 = time.monotonic()
    try:
        msgs = sock_wire.expect_closed(timeout=timeout)
        return msgs, True, time.monotonic() - t0
    except socket.timeout:
        return [], False, time.monotonic() - t0
    except pgwire.ConnectionClosed:
        return [], True, time.monotonic() - t0


def startup_bytes(user, database, params=None, version=pgwire.PROTOCOL_3_0):
    return pgwire.PgWire.startup_packet(user, database, params, version)


def q_msg(sql):
    body = sql.encode() + b"\0"
    return b"Q" + struct.pack("!i", len(body) + 4) + body
