"""
clientlib.py — shared machinery of the real-drivers suite (tests/clients).

Every driver runs the same scripted session (see README.md) twice: once straight against
PostgreSQL and once through pgstash. Each run produces a *transcript*: a list of
[step, value] pairs holding what the driver returned — values and their types as the driver
represents them, column descriptions, command tags, errors (SQLSTATE and message). The two
transcripts must be identical.

At fixed points the session calls *checkpoints* (in-process for the Python drivers, over HTTP
for node, Java and psql). Through pgstash they look at pgstash's /stats:

    ready?tables=a,b   wait until pgstash's catalog knows the session's new tables
    mark               wait until pending fills are stored, then remember the counters
    check?tag=X&reads=N
                       wait until N more reads (hits + misses + bypasses) were counted since
                       the mark, then record the counter deltas under tag X

Straight against PostgreSQL they do nothing but record the tag. After the run, the deltas are
compared with EXPECT: the repeats must be hits, reads after a write must not be.
"""

import contextlib
import hashlib
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "lib"))

import pgstash_harness as h  # noqa: E402

COUNTERS = ("hits", "misses", "fills", "fill_skipped", "bypass_total")

# What each checkpoint window of the session must show through pgstash. Every key given must
# match the delta exactly. (A window's reads are waited for before the deltas are taken.)
EXPECT = {
    # the same parameterised read, 6 x 2 times after priming: past every prepare threshold
    "repeat": dict(hits=12, misses=0, bypass_total=0),
    # and 2 x 2 more: by now every driver uses its server-side prepared statement
    "repeat_prepared": dict(hits=4, misses=0, bypass_total=0),
    "cached_before_tx": dict(hits=1, misses=0, bypass_total=0),
    # a read inside a block after its first write: never stored, never served from the cache
    "in_tx_after_write": dict(hits=0, misses=0),
    # a rolled-back write invalidates nothing: the entry stays good
    "after_rollback": dict(hits=1, misses=0, bypass_total=0),
    # inside a block, before its first write: served from the cache (with status 'T')
    "in_tx_before_write": dict(hits=1, misses=0, bypass_total=0),
    "conn2_cached": dict(hits=1, misses=0, bypass_total=0),
    # another connection reads first after the COMMIT: must not get the old entry
    "conn2_after_commit": dict(hits=0),
    # the connection is usable after an error and ROLLBACK, and hits again
    "after_error": dict(hits=1, misses=0, bypass_total=0),
    "bigish": dict(hits=1, misses=0, bypass_total=0),
    "primed": dict(hits=1, misses=0, bypass_total=0),
    # reads after an acknowledged UPDATE / DELETE: never the old entry
    "after_update": dict(hits=0),
    "after_update_repeat": dict(hits=2, misses=0, bypass_total=0),
    # the other connection's first use of the repeated read, cached by the first one (a
    # named statement whose Parse pgstash answers itself, for node and psycopg prepare0) ...
    "conn2_by_id": dict(hits=1, misses=0, bypass_total=0),
    # ... and after a DELETE (pgstash must now send that Parse to the server first)
    "after_delete": dict(hits=0),
}

# The 50k-row result: id 1..50000, label 'row-<id>', amount id * 1.25.
BIG_ROWS = 50000
BIG_SUM_ID = BIG_ROWS * (BIG_ROWS + 1) // 2
BIGISH_ROWS = 5000


def unique_table(driver):
    """A table name unique to this run (the session adds `_big` for its second table)."""
    return "cl_%s_%s" % (driver.replace("-", "_"), uuid.uuid4().hex[:10])


def sha256_lines(lines):
    d = hashlib.sha256()
    for line in lines:
        d.update(line.encode())
        d.update(b"\n")
    return d.hexdigest()


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------

class Checkpoints:
    """The session's checkpoints for one run. `px` is a Pgstash, or None straight to PostgreSQL."""

    def __init__(self, px=None, settle_timeout=5.0, count_timeout=5.0, expect=None):
        self.px = px
        self.expect = dict(EXPECT, **(expect or {}))
        self.settle_timeout = settle_timeout
        self.count_timeout = count_timeout
        self.marked = None
        self.unfilled = 0
        self.events = []      # (kind, tag) in order, recorded in both modes
        self.windows = []     # (tag, reads wanted, delta dict, waited-ok) — through pgstash only
        self.problems = []    # checkpoint-side errors (bad request, catalog never ready, ...)
        self._probe = None
        self._lock = threading.Lock()

    # -- the three calls ---------------------------------------------------------------------
    def ready(self, tables):
        with self._lock:
            self.events.append(("ready", ",".join(tables)))
            if self.px is not None:
                self._wait_catalog(tables)

    def mark(self):
        with self._lock:
            self.events.append(("mark", ""))
            if self.px is not None:
                self.marked = self._settle()

    def check(self, tag, reads):
        reads = int(reads)
        with self._lock:
            self.events.append(("check", "%s/%d" % (tag, reads)))
            if self.px is None:
                return
            if self.marked is None:
                self.problems.append("check %s without a mark before it" % tag)
                return
            before = self.marked
            deadline = time.monotonic() + self.count_timeout
            while True:
                d = self._delta(before, self.px.stats())
                done = d["hits"] + d["misses"] + d["bypass_total"] >= reads
                if done or time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            self.windows.append((tag, reads, d, done))
            self.marked = None

    # -- pgstash side ------------------------------------------------------------------------
    def _delta(self, before, after):
        out = {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS}
        reasons = set(after.get("bypasses", {})) | set(before.get("bypasses", {}))
        for r in sorted(reasons):
            n = after.get("bypasses", {}).get(r, 0) - before.get("bypasses", {}).get(r, 0)
            if n:
                out["bypass:" + r] = n
        return out

    def _settle(self):
        """Counters once the fills of the misses so far are stored. Every miss is filled or
        counted as fill_skipped, except the ones pgstash never tries to store (an error, a unit
        that also wrote): so either fills + fill_skipped caught up with misses, or the counters
        stopped moving for a while (a fill's SET is on its way to Redis before the client gets
        ReadyForQuery, so its reply takes a millisecond or so)."""
        deadline = time.monotonic() + self.settle_timeout
        last, stable_since = None, time.monotonic()
        while True:
            s = self.px.stats()
            gap = s["misses"] - s["fills"] - s["fill_skipped"]
            if gap < self.unfilled:
                self.unfilled = gap   # a fill taken for never-coming arrived after all
            if gap <= self.unfilled or time.monotonic() > deadline:
                return s
            now = tuple(s[k] for k in COUNTERS)
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 0.3:
                self.unfilled = gap   # misses that will never be filled, so far
                return s
            time.sleep(0.01)

    def _wait_catalog(self, tables):
        """After CREATE TABLE, pgstash re-reads the catalog in the background; until then reads
        of the new tables bypass (unknown_relation, catalog_loading). Probe through pgstash,
        with a statement text the session never uses, until such a read is a hit or a miss."""
        import psycopg2
        if self._probe is None:
            self._probe = psycopg2.connect(self.px.dsn())
            self._probe.autocommit = True
        sql = "SELECT 1 AS catalog_probe FROM %s WHERE false" % ", ".join(tables)
        reads = ("hits", "misses", "bypass_total")
        deadline = time.monotonic() + 10
        while True:
            before = self.px.stats()
            with self._probe.cursor() as cur:
                cur.execute(sql)
                cur.fetchall()
            after = h.wait_until(
                lambda: (lambda s: s if sum(s[k] for k in reads) > sum(before[k] for k in reads)
                         else None)(self.px.stats()),
                timeout=5, message="the catalog probe to be counted")
            if after["hits"] + after["misses"] > before["hits"] + before["misses"]:
                return
            if time.monotonic() > deadline:
                self.problems.append("reads of %s still bypass the cache after 10 s: %s" % (
                    ",".join(tables), self._delta(before, after)))
                return
            time.sleep(0.05)

    def close(self):
        if self._probe is not None:
            self._probe.close()
            self._probe = None

    # -- verdict -----------------------------------------------------------------------------
    def failures(self):
        """Human-readable list of windows that do not match EXPECT (through pgstash)."""
        out = list(self.problems)
        seen = set()
        for tag, reads, d, done in self.windows:
            seen.add(tag)
            want = self.expect.get(tag)
            if want is None:
                out.append("checkpoint %s: no expectation defined" % tag)
                continue
            if not done:
                out.append("checkpoint %s: only %d of %d reads were counted within %ss: %s"
                           % (tag, d["hits"] + d["misses"] + d["bypass_total"], reads,
                              self.count_timeout, d))
            bad = {k: (d.get(k), v) for k, v in want.items() if d.get(k) != v}
            if bad:
                out.append("checkpoint %s (%d reads): %s; deltas %s" % (
                    tag, reads, ", ".join("%s=%s, expected %s" % (k, got, exp)
                                          for k, (got, exp) in bad.items()), d))
        if self.px is not None:
            missing = set(self.expect) - seen
            if missing:
                out.append("checkpoints never reached: %s" % ", ".join(sorted(missing)))
        return out


class CheckpointServer:
    """Serves Checkpoints over HTTP for drivers in other processes (GET /mark, /check?..)."""

    def __init__(self, ck):
        self.ck = ck
        self.port = h.free_port()
        ck_ = ck

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server API
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                try:
                    if u.path == "/ready":
                        ck_.ready([t for t in q.get("tables", "").split(",") if t])
                    elif u.path == "/mark":
                        ck_.mark()
                    elif u.path == "/check":
                        ck_.check(q["tag"], q["reads"])
                    else:
                        raise ValueError("unknown checkpoint %r" % self.path)
                    body, status = b'{"ok": true}\n', 200
                except Exception as e:  # noqa: BLE001 - reported through ck.problems
                    ck_.problems.append("checkpoint %s failed: %r" % (self.path, e))
                    body, status = json.dumps({"ok": False, "error": repr(e)}).encode(), 500
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        h._release_port(self.port)


@contextlib.contextmanager
def checkpoint_server(ck):
    srv = CheckpointServer(ck)
    try:
        yield srv
    finally:
        srv.close()


# --------------------------------------------------------------------------------------------
# Comparing transcripts
# --------------------------------------------------------------------------------------------

def _short(v, limit=1500):
    s = json.dumps(v, default=str)
    return s if len(s) <= limit else s[:limit] + "... (%d chars)" % len(s)


def transcript_diff(direct, proxied):
    """None if identical, else a readable account of the first differences."""
    if direct == proxied:
        return None
    lines = []
    n = max(len(direct), len(proxied))
    shown = 0
    for i in range(n):
        a = direct[i] if i < len(direct) else "<missing>"
        b = proxied[i] if i < len(proxied) else "<missing>"
        if a != b:
            step = a[0] if isinstance(a, list) else (b[0] if isinstance(b, list) else "?")
            lines.append("step #%d %s:\n  PostgreSQL: %s\n  pgstash:    %s" % (
                i, step, _short(a), _short(b)))
            shown += 1
            if shown >= 5:
                lines.append("(further differences not shown)")
                break
    if len(direct) != len(proxied):
        lines.append("transcript lengths differ: %d steps direct, %d through pgstash"
                     % (len(direct), len(proxied)))
    return "\n".join(lines)


def step_values(transcript, name):
    """Every value recorded under step `name`."""
    return [v for s, v in transcript if s == name]


def assert_session(driver, direct, proxied, ck, px, extra_checks=None, ck_direct=None):
    """The verdict of one driver: identical transcripts, expected checkpoint deltas, and the
    session's own sanity checks (`extra_checks(transcript)` returns a list of problems)."""
    problems = []
    for label, tr in (("direct", direct), ("pgstash", proxied)):
        if extra_checks:
            problems += ["%s run: %s" % (label, p) for p in extra_checks(tr)]
    if ck_direct is not None and ck_direct.events != ck.events:
        problems.append("the two runs passed different checkpoints:\n  PostgreSQL: %s\n"
                        "  pgstash:    %s" % (ck_direct.events, ck.events))
    diff = transcript_diff(direct, proxied)
    if diff:
        problems.append("results differ between PostgreSQL and pgstash:\n" + diff)
    problems += ck.failures()
    if problems:
        msg = "%s through pgstash does not behave like PostgreSQL:\n\n%s" % (
            driver, "\n\n".join(problems))
        if px is not None:
            msg += "\n\n--- pgstash log tail (%s) ---\n%s" % (px.log_path, px.log_tail(40))
        raise AssertionError(msg)


def save_transcripts(name, direct, proxied):
    """Keeps both transcripts under build/test-logs/clients/ for a closer look."""
    d = REPO / "build" / "test-logs" / "clients"
    try:
        d.mkdir(parents=True, exist_ok=True)
        for label, tr in (("direct", direct), ("pgstash", proxied)):
            with open(d / ("%s.%s.json" % (name, label)), "w") as f:
                json.dump(tr, f, indent=1, default=str)
    except OSError:
        pass


def env_for_subprocess():
    env = dict(os.environ)
    for k in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGOPTIONS", "PGSERVICE",
              "PGPASSWORD", "PGTZ", "PGDATESTYLE", "PGCLIENTENCODING"):
        env.pop(k, None)
    env.update(LC_ALL="C.UTF-8", LANG="C.UTF-8", TZ="UTC")
    return env


def standard_checks(transcript):
    """What every driver's transcript must show whatever the target: the big results complete."""
    out = []
    for step, want in (("big50k.1", BIG_ROWS), ("big50k.2", BIG_ROWS),
                       ("bigish.1", BIGISH_ROWS), ("bigish.2", BIGISH_ROWS)):
        vals = step_values(transcript, step)
        if len(vals) != 1:
            out.append("step %s recorded %d times" % (step, len(vals)))
            continue
        v = vals[0]
        if not isinstance(v, dict) or v.get("count") != want:
            out.append("step %s: expected %d rows, got %s" % (step, want, _short(v, 300)))
            continue
        if int(v["sum_id"]) != want * (want + 1) // 2:
            out.append("step %s: sum of ids %s, expected %d" % (step, v["sum_id"],
                                                                want * (want + 1) // 2))
    for step in ("insert.1", "insert.2", "insert.3", "cleanup"):
        vals = step_values(transcript, step)
        if len(vals) != 1 or (isinstance(vals[0], dict) and "error" in vals[0]):
            out.append("step %s: %s" % (step, _short(vals, 400)))
    return out


def run_both(name, pg, px, runner, extra_checks=None, expect=None):
    """Runs `runner(host, port, user, dbname, table, ck)` straight against PostgreSQL, then
    through pgstash, with the same table name, and asserts the verdict. `expect` overrides
    entries of EXPECT for this driver (each override says why in its test)."""
    table = unique_table(name)
    ck_direct, ck_proxied = Checkpoints(None), Checkpoints(px, expect=expect)
    try:
        direct = runner(pg.host, pg.port, pg.superuser, pg.dbname, table, ck_direct)
        proxied = runner(px.host, px.port, pg.superuser, pg.dbname, table, ck_proxied)
    finally:
        ck_proxied.close()
        try:
            pg.sql("DROP TABLE IF EXISTS %s, %s_big" % (table, table))
        except Exception:  # noqa: BLE001 - the verdict matters more
            pass
    save_transcripts(name, direct, proxied)

    def checks(tr):
        return standard_checks(tr) + (extra_checks(tr) if extra_checks else [])
    assert_session(name, direct, proxied, ck_proxied, px, checks, ck_direct)
