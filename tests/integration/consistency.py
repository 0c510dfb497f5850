"""
consistency.py — a linearisability-style checker for pgstash's cache across instances.

Writers update rows of a small table through pgstash and record, per row, every value they
committed with the monotonic time at which the commit was acknowledged to them. Readers read
the same rows through pgstash (through several instances sharing one Redis) and record what
they saw with the monotonic time taken just before the query was sent. After the run, every
read is checked offline against the complete log:

  lower bound  the largest value of that row whose acknowledgement was recorded before the
               read started. A read that returns less is STALE: PostgreSQL, asked at any
               moment after the read started, would have returned at least that value.
  upper bound  a value whose write had not even been sent when the read ended, or a value
               that was only ever written in a transaction that rolled back, is a PHANTOM.

Why the checker cannot report a false failure (and where it is merely less sensitive):

  * Every timestamp is time.monotonic() (CLOCK_MONOTONIC, one clock for every thread).
  * A writer takes its ack time after the driver call returned, i.e. after pgstash relayed
    CommandComplete/ReadyForQuery (after COMMIT in a block). The real acknowledgement came
    earlier; if the thread waits for the GIL or is descheduled in between, the recorded ack
    time is later than the truth, so fewer reads are held to that value: looser, never a false
    failure.
  * A reader takes its start time before handing the query to the driver. If it is
    descheduled before the bytes leave, the read really began later than recorded, so again
    fewer acknowledgements count as "before the read": looser, never a false failure.
  * Each row has exactly one writer thread, so its values are committed (and acknowledged) in
    strictly increasing order 1, 2, 3, ... and value k is acknowledged at ack[k-1]. Rolled-back
    values live in a separate range (>= ROLLBACK_BASE) and are never committed.
  * The check runs after all threads have joined, on the full log, so an acknowledgement that
    a writer had timed but not yet appended when a reader finished is still taken into account.

Staleness of a stale read = read start - ack time of the FIRST acknowledged overwrite of the
value it returned: the value returned had been superseded, and a client told so, for at least
that long when the read began. For the same reasons as above it can only under-estimate the
real gap (the ack is timed late, the start early), so an observed bound is a real one. The
report also gives it measured from the read's end (an upper estimate: the lookup happened
somewhere in between) and the distance to the newest value acknowledged before the read
began ("lag to the lower bound").
"""

import bisect
import math
import os
import random
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import psycopg2
import psycopg2.extensions

ROLLBACK_BASE = 10 ** 12          # values written only in rolled-back transactions
QUERY = "SELECT v FROM %s WHERE id = %%s"

READER_KINDS = ("psycopg2-simple", "psycopg3-extended", "psycopg3-prepared",
                "psycopg3-binary")


def env_float(name, default):
    v = os.environ.get(name)
    return float(v) if v not in (None, "") else default


@dataclass
class RowLog:
    """One row's history; appended by its single writer thread only."""
    owner_instance: int
    sent: list = field(default_factory=list)       # sent[k-1]: time value k's write was sent
    acked: list = field(default_factory=list)      # acked[k-1]: time value k was acknowledged
    rolled_back: set = field(default_factory=set)  # values written then rolled back
    next_value: int = 1


@dataclass
class Read:
    row: int
    value: int
    start: float
    end: float
    instance: int
    kind: str


@dataclass
class Violation:
    what: str          # "stale" | "phantom"
    read: Read
    expected_min: int = 0
    lower_ack: float = 0.0       # ack time of the lower bound value
    first_overwrite_ack: float = 0.0
    staleness: float = 0.0       # seconds
    lag_to_bound: float = 0.0
    same_instance: bool = False
    writer_instance: int = -1
    note: str = ""


@dataclass
class Result:
    mode: str
    duration: float
    reads: list
    rows: dict
    violations: list
    errors: list
    per_instance_reads: list
    writes: int = 0
    rollbacks: int = 0
    txs: int = 0
    stats_delta: list = field(default_factory=list)   # per instance: hits/misses/... deltas

    @property
    def stale(self):
        return [v for v in self.violations if v.what == "stale"]

    @property
    def phantoms(self):
        return [v for v in self.violations if v.what == "phantom"]

    def staleness_ms(self):
        return sorted(v.staleness * 1000.0 for v in self.stale)

    def staleness_end_ms(self):
        """The same measured from the end of each stale read (an upper estimate)."""
        return sorted((v.read.end - v.first_overwrite_ack) * 1000.0 for v in self.stale)

    def summary_line(self):
        st = self.staleness_ms()
        hits = sum(d.get("hits", 0) for d in self.stats_delta) if self.stats_delta else -1
        return ("CONSISTENCY %s: reads=%d hits=%d stale=%d max_staleness_ms=%.3f p99_ms=%.3f "
                "p50_ms=%.3f phantoms=%d writes=%d rollbacks=%d duration_s=%.1f errors=%d"
                % (self.mode, len(self.reads), hits, len(st), st[-1] if st else 0.0,
                   percentile(st, 0.99), percentile(st, 0.5), len(self.phantoms), self.writes,
                   self.rollbacks, self.duration, len(self.errors)))

    def report(self, t0):
        """The summary line plus breakdowns, for the terminal and .bench/."""
        out = [self.summary_line()]
        st = self.staleness_ms()
        if st:
            out.append("staleness (ms, of stale reads): p50=%.3f p90=%.3f p99=%.3f max=%.3f"
                       % (percentile(st, 0.5), percentile(st, 0.9), percentile(st, 0.99), st[-1]))
            se = self.staleness_end_ms()
            out.append("staleness measured from the END of the read (upper estimate, ms): "
                       "p50=%.3f p99=%.3f max=%.3f"
                       % (percentile(se, 0.5), percentile(se, 0.99), se[-1]))
            lag = sorted(v.lag_to_bound * 1000.0 for v in self.stale)
            out.append("lag to the newest value acknowledged before the read (ms): "
                       "p50=%.3f p99=%.3f max=%.3f"
                       % (percentile(lag, 0.5), percentile(lag, 0.99), lag[-1]))
            same = sum(1 for v in self.stale if v.same_instance)
            out.append("stale reads whose write went through the reader's own instance: %d, "
                       "through the other instance: %d" % (same, len(self.stale) - same))
        for i, n in enumerate(self.per_instance_reads):
            d = self.stats_delta[i] if i < len(self.stats_delta) else {}
            out.append("instance %d: reads=%d hits=%s misses=%s fills=%s bypasses=%s "
                       "invalidations=%s redis_errors=%s redis_timeouts=%s"
                       % (i, n, d.get("hits"), d.get("misses"), d.get("fills"),
                          d.get("bypass_total"), d.get("invalidations"),
                          d.get("redis_errors"), d.get("redis_timeouts")))
        for kind in READER_KINDS + ("writer-tx-read",):
            n = sum(1 for r in self.reads if r.kind == kind)
            s = sum(1 for v in self.stale if v.read.kind == kind)
            if n:
                out.append("reader %-18s reads=%7d stale=%d" % (kind, n, s))
        lat = sorted((r.end - r.start) * 1000.0 for r in self.reads)
        if lat:
            out.append("read latency as seen by the checker (ms): p50=%.3f p99=%.3f max=%.3f"
                       % (percentile(lat, 0.5), percentile(lat, 0.99), lat[-1]))
        for v in self.violations[:20]:
            out.append(describe(v, t0))
        if len(self.violations) > 20:
            out.append("... %d more violations" % (len(self.violations) - 20))
        for e in self.errors:
            out.append("ERROR " + e)
        return "\n".join(out)


def percentile(sorted_values, q):
    if not sorted_values:
        return 0.0
    i = max(0, min(len(sorted_values) - 1, int(math.ceil(q * len(sorted_values))) - 1))
    return sorted_values[i]


def describe(v, t0):
    r = v.read
    ms = lambda t: (t - t0) * 1000.0  # noqa: E731
    if v.what == "stale":
        return ("STALE row=%d read value=%d expected>=%d | read start=%.3fms end=%.3fms "
                "(times since run start) | value %d acknowledged at %.3fms, %d (first overwrite "
                "of what was read) at %.3fms | staleness=%.3fms | reader instance=%d kind=%s | "
                "row written through %s (%s)"
                % (r.row, r.value, v.expected_min, ms(r.start), ms(r.end), v.expected_min,
                   ms(v.lower_ack), r.value + 1, ms(v.first_overwrite_ack),
                   v.staleness * 1000.0, r.instance, r.kind,
                   "instance %d" % v.writer_instance if v.writer_instance >= 0
                   else "PostgreSQL directly",
                   "same instance" if v.same_instance else "other instance"))
    return ("PHANTOM row=%d read value=%d | read start=%.3fms end=%.3fms | %s | reader "
            "instance=%d kind=%s" % (r.row, r.value, ms(r.start), ms(r.end), v.note,
                                     r.instance, r.kind))


def check(rows, reads):
    """The offline check of every read against the complete write log."""
    violations = []
    for r in reads:
        log = rows[r.row]
        # Largest k with acked[k-1] < start (acked is increasing: one writer per row).
        k = bisect.bisect_left(log.acked, r.start)
        if r.value >= ROLLBACK_BASE or r.value in log.rolled_back:
            violations.append(Violation("phantom", r, note="value only ever written in a "
                                        "transaction that was rolled back"))
            continue
        if r.value > len(log.sent) or (r.value > 0 and log.sent[r.value - 1] >= r.end):
            violations.append(Violation("phantom", r, note="value %d was not sent by its writer "
                                        "before the read ended" % r.value))
            continue
        if r.value < k:
            violations.append(Violation(
                "stale", r, expected_min=k, lower_ack=log.acked[k - 1],
                first_overwrite_ack=log.acked[r.value],
                staleness=r.start - log.acked[r.value],
                lag_to_bound=r.start - log.acked[k - 1],
                same_instance=(log.owner_instance == r.instance),
                writer_instance=log.owner_instance))
    return violations


class Checker:
    """Runs the workload. `targets` are two pgstash instances (or DirectTargets)."""

    def __init__(self, targets, table, mode, n_rows=12, n_writers=4, readers_per_target=4,
                 duration=20.0, write_pause=0.02, seed=None, writer_via=None):
        self.targets = targets
        # writer_via[w]: the index in `targets` writer w connects through, or a target object
        # of its own (e.g. PostgreSQL itself, around pgstash: the negative control). Default:
        # writer w through targets[w % len(targets)].
        self.writer_via = writer_via
        self.table = table
        self.mode = mode
        self.n_rows = n_rows
        self.n_writers = n_writers
        self.readers_per_target = readers_per_target
        self.duration = duration
        self.write_pause = write_pause
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.stop = threading.Event()
        self.errors = []
        self.err_lock = threading.Lock()
        self.rows = {}
        self.reader_logs = []
        self.counts_lock = threading.Lock()
        self.writes = 0
        self.rollbacks = 0
        self.txs = 0
        self.t0 = None

    # -- setup ---------------------------------------------------------------------------------
    def create_table(self, pg):
        pg.sql("DROP TABLE IF EXISTS %s" % self.table)
        pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v bigint NOT NULL)" % self.table)
        pg.sql("INSERT INTO %s SELECT g, 0 FROM generate_series(1, %d) g"
               % (self.table, self.n_rows))

    def writer_target(self, w):
        """(target, instance index or -1) writer w connects through."""
        via = self.writer_via[w] if self.writer_via else w % len(self.targets)
        if isinstance(via, int):
            return self.targets[via], via
        return via, -1

    def writer_rows(self, w):
        return [r for r in range(1, self.n_rows + 1) if (r - 1) % self.n_writers == w]

    # -- threads -------------------------------------------------------------------------------
    def _fail(self, who):
        with self.err_lock:
            self.errors.append("%s: %s" % (who, traceback.format_exc()))
        self.stop.set()

    def _writer(self, w, reads):
        target, inst = self.writer_target(w)
        use_p3 = (w // 2) % 2 == 1
        rnd = random.Random(self.seed * 1000 + w)
        my_rows = self.writer_rows(w)
        logs = [self.rows[r] for r in my_rows]
        who = "writer %d (%s, %s)" % (w, "instance %d" % inst if inst >= 0 else target,
                                      "psycopg3" if use_p3 else "psycopg2")
        q = "UPDATE %s SET v = %%s WHERE id = %%s" % self.table
        sel = QUERY % self.table
        try:
            # NB: no `with conn:` for psycopg2 — since 2.9 it opens a transaction even on an
            # autocommit connection, and "acknowledged" writes would not be committed.
            if use_p3:
                conn = psycopg.connect(target.dsn(), autocommit=True)
                run = conn.execute

                def idle():
                    return conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            else:
                conn = psycopg2.connect(target.dsn())
                conn.autocommit = True
                cur = conn.cursor()
                run = cur.execute

                def idle():
                    return (conn.get_transaction_status()
                            == psycopg2.extensions.TRANSACTION_STATUS_IDLE)
            try:
                while not self.stop.is_set():
                    op = rnd.random()
                    if op < 0.6:
                        # autocommit UPDATE of one row
                        i = rnd.randrange(len(my_rows))
                        log = logs[i]
                        val = log.next_value
                        log.sent.append(time.monotonic())
                        run(q, (val, my_rows[i]))
                        t_ack = time.monotonic()
                        log.acked.append(t_ack)
                        log.next_value += 1
                        n = 1
                    elif op < 0.92:
                        # BEGIN; SELECT (may be a hit: before the block's first write);
                        # UPDATE one or two rows; COMMIT. Acknowledged at COMMIT.
                        picks = rnd.sample(range(len(my_rows)), rnd.choice((1, 2)))
                        t_sent = time.monotonic()
                        for i in picks:
                            logs[i].sent.append(t_sent)
                        run("BEGIN")
                        row0 = my_rows[picks[0]]
                        t_r = time.monotonic()
                        if use_p3:
                            v0 = run(sel, (row0,)).fetchone()[0]
                        else:
                            run(sel, (row0,))
                            v0 = cur.fetchone()[0]
                        reads.append(Read(row0, v0, t_r, time.monotonic(), inst,
                                          "writer-tx-read"))
                        for i in picks:
                            run(q, (logs[i].next_value, my_rows[i]))
                        run("COMMIT")
                        t_ack = time.monotonic()
                        for i in picks:
                            logs[i].acked.append(t_ack)
                            logs[i].next_value += 1
                        n = len(picks)
                        with self.counts_lock:
                            self.txs += 1
                    else:
                        # A write that is rolled back: must never be seen by anyone.
                        i = rnd.randrange(len(my_rows))
                        bogus = ROLLBACK_BASE + rnd.randrange(1 << 30)
                        logs[i].rolled_back.add(bogus)
                        run("BEGIN")
                        run(q, (bogus, my_rows[i]))
                        run("ROLLBACK")
                        n = 0
                        with self.counts_lock:
                            self.rollbacks += 1
                    # "Acknowledged" must mean committed: the session is outside any block.
                    if not idle():
                        raise AssertionError("writer session not idle after an acknowledged "
                                             "write (ReadyForQuery status)")
                    with self.counts_lock:
                        self.writes += n
                    if self.write_pause > 0:
                        self.stop.wait(rnd.uniform(0, 2 * self.write_pause))
            finally:
                conn.close()
        except Exception:  # noqa: BLE001 - reported by the test
            self._fail(who)

    def _reader(self, idx, inst, kind, out):
        target = self.targets[inst]
        rnd = random.Random(self.seed * 1000 + 100 + idx)
        who = "reader %d (instance %d, %s)" % (idx, inst, kind)
        sel = QUERY % self.table
        n_rows = self.n_rows
        mono = time.monotonic
        stop = self.stop
        try:
            if kind == "psycopg2-simple":
                conn = psycopg2.connect(target.dsn())
                conn.autocommit = True
                cur = conn.cursor()
                try:
                    while not stop.is_set():
                        row = rnd.randint(1, n_rows)
                        t = mono()
                        cur.execute(sel, (row,))
                        v = cur.fetchone()[0]
                        out.append(Read(row, v, t, mono(), inst, kind))
                finally:
                    conn.close()
                return
            # psycopg 3: prepare_threshold=None never prepares on its own, so "extended" and
            # "binary" stay unnamed statements and "prepared" is prepared explicitly.
            conn = psycopg.connect(target.dsn(), autocommit=True, prepare_threshold=None)
            with conn:
                cur = conn.cursor(binary=(kind == "psycopg3-binary"))
                prepare = kind == "psycopg3-prepared"
                while not stop.is_set():
                    row = rnd.randint(1, n_rows)
                    t = mono()
                    cur.execute(sel, (row,), prepare=prepare)
                    v = cur.fetchone()[0]
                    out.append(Read(row, v, t, mono(), inst, kind))
        except Exception:  # noqa: BLE001
            self._fail(who)

    # -- run -----------------------------------------------------------------------------------
    def run(self):
        n_t = len(self.targets)
        for r in range(1, self.n_rows + 1):
            self.rows[r] = RowLog(owner_instance=self.writer_target((r - 1) % self.n_writers)[1])
        reader_specs = [(inst, READER_KINDS[j % len(READER_KINDS)])
                        for inst in range(n_t) for j in range(self.readers_per_target)]
        # One private list per thread (appends need no lock): writers' in-transaction reads
        # first, then the readers'.
        writer_logs = [[] for _ in range(self.n_writers)]
        reader_logs = [[] for _ in reader_specs]
        self.reader_logs = writer_logs + reader_logs
        threads = []
        for w in range(self.n_writers):
            threads.append(threading.Thread(target=self._writer, args=(w, writer_logs[w]),
                                            name="writer-%d" % w, daemon=True))
        for idx, (inst, kind) in enumerate(reader_specs):
            threads.append(threading.Thread(target=self._reader,
                                            args=(idx, inst, kind, reader_logs[idx]),
                                            name="reader-%d" % idx, daemon=True))
        self.t0 = time.monotonic()
        for t in threads:
            t.start()
        self.stop.wait(self.duration)
        self.stop.set()
        for t in threads:
            t.join(60)
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            self.errors.append("threads still running 60 s after the end: %s" % stuck)
        elapsed = time.monotonic() - self.t0
        reads = [r for lst in self.reader_logs for r in lst]
        violations = check(self.rows, reads)
        per_inst = [sum(1 for r in reads if r.instance == i) for i in range(n_t)]
        return Result(mode=self.mode, duration=elapsed, reads=reads, rows=self.rows,
                      violations=violations, errors=list(self.errors),
                      per_instance_reads=per_inst, writes=self.writes,
                      rollbacks=self.rollbacks, txs=self.txs)


def write_report(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def stats_subset(s):
    keys = ("hits", "misses", "fills", "fill_skipped", "bypass_total", "invalidations",
            "redis_errors", "redis_timeouts", "bad_entries", "writes", "epoch_bumps")
    return {k: s.get(k, 0) for k in keys}


def stats_delta(before, after):
    d = {k: after.get(k, 0) - before.get(k, 0) for k in stats_subset(after)}
    d["bypasses"] = {k: v - before.get("bypasses", {}).get(k, 0)
                     for k, v in after.get("bypasses", {}).items()
                     if v - before.get("bypasses", {}).get(k, 0)}
    return d


