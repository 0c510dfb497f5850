"""
Shared helpers for the integration tests: raw wire sessions, running the same exchange against
PostgreSQL direct and through pgstash, and polling PostgreSQL's view of its backends.
"""

import socket
import struct
import uuid

import pgwire
from pgstash_harness import wait_until

DB = "test"


def unique(prefix="t"):
    return "%s_%s" % (prefix, uuid.uuid4().hex[:10])


def raw(target, timeout=10.0, **kw):
    """A raw PgWire connection (no start-up yet) to pgstash, PostgreSQL or a DirectTarget."""
    return pgwire.PgWire(target.host, target.port, timeout=timeout, **kw)


def raw_session(target, user, database=DB, password=None, params=None, timeout=10.0, **kw):
    """A raw connection that has completed start-up and is at ReadyForQuery."""
    c = raw(target, timeout=timeout, **kw)
    try:
        c.startup(user, database, password=password, params=params)
    except BaseException:
        c.close()
        raise
    return c


def startup_outcome(target, user, database=DB, password=None, params=None):
    """Start-up as `user`; returns ("ok", messages) or ("error", ErrorResponse Message)."""
    with raw(target) as c:
        try:
            return "ok", c.startup(user, database, password=password, params=params)
        except pgwire.ServerError as e:
            return "error", e.msg


def exchange(target, user, steps, database=DB, password=None):
    """Runs a list of frontend steps on a fresh raw session and returns every backend message.

    Each step is a callable taking the PgWire, or a string (a simple query). After the steps,
    messages are read until as many ReadyForQuery as there were Syncs/Queries have arrived;
    pass `("read", n)` as a step to read n ReadyForQuery explicitly instead.
    """
    with raw_session(target, user, database, password) as c:
        out = []
        for step in steps:
            if isinstance(step, str):
                c.query(step)
                out += c.read_until_ready()
            elif isinstance(step, tuple) and step[0] == "read":
                for _ in range(step[1]):
                    out += c.read_until_ready()
            elif isinstance(step, tuple) and step[0] == "read_until":
                out += c.read_until(step[1])
            else:
                step(c)
        c.terminate()
        return out


def without_table_oids(msgs):
    """Messages with the table OIDs in RowDescriptions zeroed (temp tables differ per session)."""
    out = []
    for m in msgs:
        if m.type == "T":
            p = bytearray(m.payload)
            n = struct.unpack("!h", p[:2])[0]
            i = 2
            for _ in range(n):
                i = p.index(0, i) + 1
                p[i:i + 4] = b"\0\0\0\0"
                i += 18
            m = pgwire.Message("T", bytes(p))
        out.append(m)
    return out


def wait_backend_gone(pg, pid, timeout=10.0):
    wait_until(lambda: pid not in pg.backend_pids(), timeout=timeout,
               message="backend %s to leave pg_stat_activity" % pid)


def wait_backend_state(pg, timeout=10.0, **where):
    """Waits until some client backend matches column=value pairs; returns its PID."""
    return wait_until(lambda: next(iter(pg.backend_pids(**where)), None), timeout=timeout,
                      message="a backend with %r" % where)


def socket_closed(sock, timeout=5.0):
    """True if the peer closes `sock` (EOF or reset) within timeout; drains anything sent."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class ClientThreads:
    """What the load generators share: `self.threads` loop until `self.stop` (an Event) is
    set; finish() sets it, joins them and fails the test if one is stuck."""

    join_timeout = 30

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self, join=None):
        self.stop.set()
        for t in self.threads:
            t.join(self.join_timeout if join is None else join)
        stuck = [t.name for t in self.threads if t.is_alive()]
        assert not stuck, "client threads stuck: %s" % stuck
