#!/usr/bin/python3
"""
bench.py — `make bench`: pgstash side by side with PostgreSQL direct, PgBouncer (session mode)
and Pgpool-II's query cache, on one machine, in one run.

It starts throwaway servers under .bench/ (see benchlib.py), initialises `pgbench -i -s 10`, and
for every workload × protocol mode warms every target, then measures it in rounds interleaved
across targets (round 1: A B C D, round 2: D C B A, …) so machine drift and each target's
position after another hit all alike. Every run is `pgbench -c 8 -j 2 -n -M MODE -T DURATION
--log` on every target, so pgbench's own CPU cost is the same everywhere. It prints one table —
TPS (median of rounds), average and p99 latency (from the per-transaction logs), failed
transactions, hit ratio, the proxy's CPU time per transaction, pgstash's TPS ratio to
each peer — then pgstash's hit ratio and RSS after the run, and writes the same as Markdown,
with the command, machine and versions, to .bench/last-run.md.

    make bench                                     # everything (~23 min on 2 cores)
    make bench BENCH_ARGS="--duration 5 --rounds 1 --only hot_agg:extended"
    tests/bench/run.sh --targets direct,pgstash --workers 1 --only 'hot_*:prepared'
    tests/bench/run.sh --consistency strict,local --dry-run

--only takes comma-separated WORKLOAD[:MODE[:TARGET]] patterns (shell wildcards allowed).
A target that fails shows ERR in its cell and the reason under the table; a target process that
dies is noted and restarted so the other cells still run. Ctrl-C stops everything it started.
"""

import argparse
import fnmatch
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

HERE = Path(__file__).resolve().parent
WORKLOADS = {
    "hot_agg": ["-f", HERE / "workloads" / "hot_agg.sql"],
    "hot_point": ["-f", HERE / "workloads" / "hot_point.sql"],
    "rw_mix": ["-f", HERE / "workloads" / "rw_mix.sql"],
    "churn": ["-f", HERE / "workloads" / "churn.sql"],
    "passthrough": ["-b", "tpcb-like"],
    # pgbench -S over all 1M accounts: the pure relay (see RELAY_WORKLOADS).
    "select_only": ["-b", "select-only"],
}
DEFAULT_WORKLOADS = ["select_only", "hot_agg", "hot_point", "rw_mix", "churn", "passthrough"]
# Workloads that measure pgstash as a plain relay: its targets run with cache.enabled false
# (pgstash-wN-off and pgstash-wN-off-keep, whatever --consistency says) next to the peers
# without a cache.
RELAY_WORKLOADS = {"select_only"}
MODES = ["simple", "extended", "prepared"]
PEERS = ["direct", "pgbouncer", "pgpool"]
# A second PgBouncer in the relay workloads: PgBouncer against itself, the noise floor that
# pgstash's ratio to PgBouncer has to be read against (two relays that make the same system
# calls differ by less than one run's drift).
CONTROL = "pgbouncer-b"
SETUP_SECONDS = 30          # initdb, pgbench -i -s 10, starting everything (measured ~15 s)
RUN_OVERHEAD = 0.2          # pgbench start, connections, log parsing per run (measured ~0.1 s)


def csv(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="tests/bench/run.sh",
        description="pgstash vs PostgreSQL direct, PgBouncer and Pgpool-II's query cache.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  make bench BENCH_ARGS=\"--duration 5 --rounds 1 --only hot_agg:extended\"\n"
               "  tests/bench/run.sh --targets direct,pgstash --workers 1 --only 'hot_*'\n"
               "  tests/bench/run.sh --consistency strict,local --workers 2 --dry-run")
    ap.add_argument("--duration", type=int, default=5, metavar="S",
                    help="seconds per measured pgbench run (default 5)")
    ap.add_argument("--rounds", type=int, default=3, metavar="N",
                    help="measured rounds per cell; TPS is their median (default 3)")
    ap.add_argument("--warmup", type=int, default=2, metavar="S",
                    help="seconds of unmeasured warm-up per target and cell (default 2)")
    ap.add_argument("--workloads", type=csv, default=list(DEFAULT_WORKLOADS), metavar="LIST",
                    help="default: %s (also: select_only)" % ",".join(DEFAULT_WORKLOADS))
    ap.add_argument("--modes", type=csv, default=list(MODES), metavar="LIST",
                    help="default: simple,extended,prepared")
    ap.add_argument("--targets", type=csv, default=PEERS + ["pgstash"], metavar="LIST",
                    help="direct,pgbouncer,pgpool,pgstash (pgstash = every --workers × "
                         "--consistency variant; or name one, e.g. pgstash-w2-local)")
    ap.add_argument("--workers", type=csv, default=["1", "2"], metavar="LIST",
                    help="pgstash worker counts, one target each (default 1,2)")
    ap.add_argument("--consistency", type=csv, default=["strict"], metavar="LIST",
                    help="pgstash cache.consistency values, one target each (default strict;"
                         " off = cache disabled, a pure relay)")
    ap.add_argument("--only", type=csv, default=[], metavar="PATTERNS",
                    help="WORKLOAD[:MODE[:TARGET]] patterns, comma-separated, wildcards ok")
    ap.add_argument("--clients", type=int, default=8, help="pgbench -c (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="pgbench -j (default 2)")
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (default 10)")
    ap.add_argument("--out", default=str(bl.BENCH_DIR / "last-run.md"),
                    help="Markdown report (default .bench/last-run.md)")
    ap.add_argument("--pgstash-bin", default=None, help="pgstash binary (default ./pgstash)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the run directory under .bench/ (data, configs, logs)")
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan and the estimated time, start nothing")
    a = ap.parse_args(argv)
    for w in a.workloads:
        if w not in WORKLOADS:
            ap.error("unknown workload %r (known: %s)" % (w, ", ".join(WORKLOADS)))
    for m in a.modes:
        if m not in MODES:
            ap.error("unknown mode %r (known: %s)" % (m, ", ".join(MODES)))
    for c in a.consistency:
        if c not in ("strict", "local", "off"):
            ap.error("--consistency takes strict, local and/or off")
    for w in a.workers:
        if not w.isdigit() or int(w) < 1:
            ap.error("--workers takes positive integers")
    if a.duration < 1 or a.rounds < 1 or a.warmup < 0:
        ap.error("--duration and --rounds must be >= 1, --warmup >= 0")
    return a


def pgstash_variants(a):
    return [(int(w), c, "pgstash-w%s%s" % (w, "" if c == "strict" else "-" + c))
            for c in a.consistency for w in a.workers]


def target_names(a):
    names = []
    variants = pgstash_variants(a)
    for t in a.targets:
        if t == "pgstash":
            names += [v[2] for v in variants]
        elif t in PEERS or any(t == v[2] for v in variants):
            names.append(t)
        elif t.startswith("pgstash-w"):
            names.append(t)   # e.g. pgstash-w4-local named directly
        else:
            raise SystemExit("unknown target %r (direct, pgbouncer, pgpool, pgstash, "
                             "pgstash-wN[-local|-off][-keep])" % t)
    out = []
    for n in names:
        if n not in out:
            out.append(n)
    return out


def parse_pgstash_name(name):
    """pgstash-wN[-local|-strict|-off][-keep] -> (N, consistency, keep servers)."""
    w, *flags = name[len("pgstash-w"):].split("-")
    keep = flags[-1:] == ["keep"]
    if keep:
        flags.pop()
    if not w.isdigit() or len(flags) > 1 or (flags and flags[0] not in ("local", "strict", "off")):
        raise SystemExit("bad pgstash target name %r" % name)
    return int(w), (flags[0] if flags else "strict"), keep


def relay_targets(targets):
    """The targets of a relay workload: pgstash variants with the cache off, each also with
    kept server connections (-keep: pgbench reconnects every run, and PgBouncer's session
    pool hands it warm backends), no Pgpool-II."""
    out = []
    for t in targets:
        if t == "pgpool":
            continue
        names = [t]
        if t.startswith("pgstash-w"):
            w = parse_pgstash_name(t)[0]
            names = ["pgstash-w%d-off" % w, "pgstash-w%d-off-keep" % w]
        for n in names:
            if n not in out:
                out.append(n)
    if "pgbouncer" in out:
        out.append(CONTROL)   # last: its place in the round order is pgstash's, not PgBouncer's
    return out


def plan(a):
    """[(workload, mode, [targets])] in run order, after --only."""
    targets = target_names(a)
    cells = []
    for w in a.workloads:
        for m in a.modes:
            ts = relay_targets(targets) if w in RELAY_WORKLOADS else targets
            ts = [t for t in ts if not a.only or any(match(p, w, m, t) for p in a.only)]
            if ts:
                cells.append((w, m, ts))
    return cells


def compared(name):
    """Targets whose ratios to the peers are reported: pgstash's, and the control's."""
    return name.startswith("pgstash") or name == CONTROL


def match(pattern, w, m, t):
    parts = pattern.split(":")
    vals = [w, m, t]
    if len(parts) > 3:
        raise SystemExit("bad --only pattern %r (WORKLOAD[:MODE[:TARGET]])" % pattern)
    if len(parts) == 3 and parts[2] == "pgstash":
        parts[2] = "pgstash-*"
    return all(fnmatch.fnmatchcase(v, p or "*") for p, v in zip(parts, vals))


def estimate(a, cells):
    runs = sum(len(ts) for _, _, ts in cells)
    secs = SETUP_SECONDS + runs * (a.warmup + (1 if a.warmup else 0) * RUN_OVERHEAD
                                   + a.rounds * (a.duration + RUN_OVERHEAD))
    return runs, secs


def command_line(argv):
    args = " ".join(shlex.quote(x) for x in argv)
    if os.environ.get("MAKELEVEL"):
        return "make bench" + (" BENCH_ARGS=%s" % shlex.quote(args) if args else "")
    return "tests/bench/run.sh" + (" " + args if args else "")


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------

class Cell:
    def __init__(self, workload, mode, target):
        self.workload, self.mode, self.target = workload, mode, target
        self.rounds = []           # PgbenchResult per measured round
        self.errors = []           # (phase, PgbenchResult) of the runs that failed
        self.hits = 0              # cache counters summed over the measured rounds
        self.lookups = 0
        self.have_hits = False

    @property
    def ok(self):
        return bool(self.rounds) and all(r.ok for r in self.rounds)

    def median(self, attr):
        vals = [getattr(r, attr) for r in self.rounds if r.ok and getattr(r, attr) is not None]
        return statistics.median(vals) if vals else None


class Bench:
    def __init__(self, a, argv):
        self.a, self.argv = a, argv
        self.cells = plan(a)
        self.results = {}          # (w, m, t) -> Cell
        self.notes = []
        self.targets = {}
        self.run = None
        self.pg = self.redis = None
        self.started = []          # stop callables, in start order
        self.interrupted = False
        self.t0 = None
        self.machine = bl.machine_info()
        self.load_end = None
        self.versions = {}
        self.final = {}            # pgstash name -> (stats, rss, hwm)

    # -- set-up ------------------------------------------------------------------------------
    def setup(self):
        a = self.a
        needed = sorted({t for _, _, ts in self.cells for t in ts})
        bl.need("pgbench")
        self.run = bl.RunDir("run", keep=a.keep)
        bl.log("bench: run directory %s" % self.run.path)
        # shared_buffers plus PostgreSQL's other shared memory (~20 MB at 200 connections).
        self.huge = bl.HugePages(bl.SHARED_BUFFERS_MB // 2 + 24)
        if self.huge.reserve():
            self.started.append(self.huge.release)
        else:
            bl.log("bench: PostgreSQL runs on %s" % self.huge.describe())
        self.pg = bl.Postgres(self.run, huge_pages=self.huge.added > 0)
        bl.log("bench: PostgreSQL on port %d: initdb" % self.pg.port)
        self.pg.start()
        self.started.append(self.pg.stop)
        bl.psql(self.pg.port, "CREATE DATABASE %s" % bl.DB, db="postgres")
        bl.log("bench: pgbench -i -s %d" % a.scale)
        t = time.monotonic()
        p = subprocess.run([str(bl.pg_bindir() / "pgbench"), "-i", "-s", str(a.scale), "-q",
                            "-h", "127.0.0.1", "-p", str(self.pg.port), "-U",
                            self.pg.superuser, bl.DB], capture_output=True, text=True,
                           timeout=1800)
        if p.returncode != 0:
            raise bl.BenchError("pgbench -i failed: %s" % p.stderr[-2000:])
        bl.psql(self.pg.port, "CHECKPOINT")
        bl.log("bench: initialised in %.0fs" % (time.monotonic() - t))
        self.versions["PostgreSQL"] = self.pg.version()
        self.versions["pgbench"] = bl.first_line([str(bl.pg_bindir() / "pgbench"), "--version"])
        if any(t.startswith("pgstash") for t in needed):
            self.redis = bl.Redis(self.run)
            self.redis.start()
            self.started.append(self.redis.stop)
            self.versions["Redis"] = self.redis.version()
        order = PEERS + [CONTROL] + sorted(t for t in needed if t.startswith("pgstash"))
        for name in [t for t in order if t in needed]:
            if name == "direct":
                tg = bl.Direct(self.pg)
            elif name in ("pgbouncer", CONTROL):
                tg = bl.PgBouncer(self.run, self.pg, name=name)
            elif name == "pgpool":
                tg = bl.Pgpool(self.run, self.pg, children=a.clients + 4)
            else:
                w, c, keep = parse_pgstash_name(name)
                tg = bl.Pgstash(self.run, self.pg, self.redis, workers=w, consistency=c,
                                binary=a.pgstash_bin, name=name, keep_servers=keep)
            bl.log("bench: starting %s on port %d" % (name, tg.port))
            self.targets[name] = tg
            self.started.append(tg.stop)
            try:
                tg.start()
            except bl.BenchError as e:
                if name == "direct":
                    raise
                bl.log("bench: %s did not start: %s" % (name, e))
                self.notes.append("%s did not start, its cells are ERR: %s" % (name, e))
                tg.dead_for_good = True
                continue
            key = {"direct": None, "pgbouncer": "PgBouncer", CONTROL: None,
                   "pgpool": "Pgpool-II"}.get(name, "pgstash")
            if key:
                self.versions[key] = tg.version() + (" (git %s)" % bl.git_revision()
                                                     if key == "pgstash" else "")

    def stop_all(self):
        if self.run is not None:
            self.run.close(self.started)

    # -- running -----------------------------------------------------------------------------
    def ensure_alive(self, name, where):
        """Restarts a target whose process died, and says so under the table. Returns False
        when it cannot be brought back."""
        tg = self.targets[name]
        if getattr(tg, "dead_for_good", False):
            return False
        if tg.alive():
            return True
        if name == "direct" or not self.pg.alive():
            raise bl.BenchError("PostgreSQL died%s" % bl.tail_hint(self.pg.log_path))
        rc = tg.proc.returncode if tg.proc is not None else None
        status = ("killed by signal %d" % -rc if rc is not None and rc < 0 else
                  "exit status %s" % rc)
        self.notes.append("%s: the %s process had exited (%s) before %s; last log "
                          "lines:\n\n```\n%s\n```\nRestarted." % (
                              name, name, status, where, bl.tail(tg.log_path, 12)))
        bl.log("bench: %s had died (%s); restarting" % (name, status))
        try:
            tg.restart()
            return True
        except bl.BenchError as e:
            self.notes.append("%s: restart failed, its remaining cells are ERR: %s" % (name, e))
            tg.dead_for_good = True
            return False

    def counters(self, name):
        tg = self.targets[name]
        if tg.kind == "pgstash":
            s = tg.stats()
            if s is None:
                return None
            return s.get("hits", 0), s.get("hits", 0) + s.get("misses", 0) + s.get(
                "bypass_total", 0)
        if tg.kind == "pgpool":
            c = tg.cache_counters()
            return (c[0], c[0] + c[1]) if c else None
        return None

    @staticmethod
    def proxy_cpu(tg):
        """CPU seconds the proxy has used so far (None for PostgreSQL direct): what it takes
        from the machine's cores per transaction is the cost that TPS on a saturated machine
        measures only through noise."""
        if tg.kind == "direct" or tg.proc is None or tg.proc.poll() is not None:
            return None
        return bl.group_cpu_seconds(tg.proc.pid)

    def one(self, w, m, name, duration, logdir, phase):
        tg = self.targets[name]
        where = "%s %s %s" % (w, m, phase)
        if not self.ensure_alive(name, where):
            r = bl.PgbenchResult()
            r.error = "target down"
            return r
        cpu0 = self.proxy_cpu(tg)
        r = bl.pgbench(self.run, tg.port, WORKLOADS[w], m, duration=duration,
                       clients=self.a.clients, threads=self.a.threads, logdir=logdir)
        cpu1 = self.proxy_cpu(tg)
        if cpu0 is not None and cpu1 is not None and r.ok and r.txns:
            r.proxy_us = (cpu1 - cpu0) / r.txns * 1e6
        if r.error and r.error.startswith("timeout"):
            bl.log("bench: %s hung in %s; restarting it" % (name, where))
            self.notes.append("%s: pgbench hung in %s and was killed after %ds; %s restarted."
                              % (name, where, duration + max(30, duration), name))
            if name != "direct":
                try:
                    tg.restart()
                except bl.BenchError as e:
                    self.notes.append("%s: restart failed: %s" % (name, e))
                    tg.dead_for_good = True
        elif not tg.alive() and name != "direct":
            r.error = "%s died during the run (%s)" % (name, r.error or "pgbench finished")
            r.reason, r.ok = r.error, False
        return r

    def measure(self):
        a = self.a
        total = sum(len(ts) for _, _, ts in self.cells) * a.rounds
        done = 0
        logdir = self.run.path / "pgbench-logs"
        for w, m, ts in self.cells:
            for name in ts:
                self.results[(w, m, name)] = Cell(w, m, name)
            if a.warmup:
                for name in ts:
                    r = self.one(w, m, name, a.warmup, None, "warm-up")
                    if not r.ok:
                        self.results[(w, m, name)].errors.append(("warm-up", r))
            for rnd in range(1, a.rounds + 1):
                # Every other round runs the targets in reverse: a target that always ran
                # right after another (PgBouncer after direct, pgstash after Pgpool-II) would
                # carry what that one leaves behind (backends exiting or idle, caches) into
                # every one of its rounds.
                for name in (ts if rnd % 2 else ts[::-1]):
                    cell = self.results[(w, m, name)]
                    before = self.counters(name)
                    r = self.one(w, m, name, a.duration, logdir, "round %d" % rnd)
                    after = self.counters(name)
                    if before is not None and after is not None and after[1] >= before[1]:
                        cell.hits += after[0] - before[0]
                        cell.lookups += after[1] - before[1]
                        cell.have_hits = True
                    cell.rounds.append(r)
                    if not r.ok:
                        cell.errors.append(("round %d" % rnd, r))
                    done += 1
                    elapsed = time.monotonic() - self.t0
                    eta = elapsed / done * (total - done)
                    bl.log("[%d/%d] %-11s %-8s %-16s round %d: %s  (eta %dm%02ds)" % (
                        done, total, w, m, name, rnd,
                        ("%.0f tps, p99 %.3f ms" % (r.tps, r.p99_ms or 0)) if r.ok
                        else "ERR " + (r.error or "")[:100], eta // 60, eta % 60))

    def finish(self):
        self.load_end = " ".join(open("/proc/loadavg").read().split()[:3])
        for name, tg in self.targets.items():
            if tg.kind == "pgstash":
                rss, hwm = tg.rss_kb()
                self.final[name] = (tg.stats(), rss, hwm)

    # -- report ------------------------------------------------------------------------------
    def table(self):
        present = {t for _, _, ts in self.cells for t in ts}
        peers = [p for p in PEERS if p in present]
        hdr = ["workload", "mode", "target", "TPS", "avg ms", "p99 ms", "failed", "hit %",
               "CPU µs/tx"]
        hdr += ["×" + p for p in peers]
        rows = []
        for w, m, ts in self.cells:
            for name in ts:
                c = self.results.get((w, m, name))
                if c is None or not c.rounds:
                    continue
                failed = sum(r.failed for r in c.rounds)
                row = [w, m, name]
                if c.ok:
                    row += [fmt_tps(c.median("tps")), fmt_ms(c.median("avg_ms")),
                            fmt_ms(c.median("p99_ms"))]
                else:
                    row += ["ERR", "-", "-"]
                row.append(str(failed))
                row.append("%.1f" % (100.0 * c.hits / c.lookups) if c.have_hits and c.lookups
                           else "-")
                cpu = c.median("proxy_us")
                row.append("%.1f" % cpu if cpu is not None else "-")
                for p in peers:
                    pc = self.results.get((w, m, p))
                    if not compared(name):
                        row.append("")
                    elif c.ok and pc is not None and pc.ok and pc.median("tps"):
                        row.append("%.2f" % (c.median("tps") / pc.median("tps")))
                    else:
                        row.append("-")
                rows.append(row)
        return markdown(hdr, rows, right=set(range(3, len(hdr))))

    def paired_table(self):
        """pgstash against PgBouncer, round by round. Rounds run the targets back to back, so
        the ratio within a round cancels most of the machine's drift; the spread of those ratios
        says how far apart the two really are. Needs three rounds or more."""
        if self.a.rounds < 3:
            return None
        rows = []
        for w, m, ts in self.cells:
            peer = self.results.get((w, m, "pgbouncer"))
            if peer is None or not peer.ok:
                continue
            for name in ts:
                c = self.results.get((w, m, name))
                if not compared(name) or c is None or not c.ok:
                    continue
                logs = [math.log(x.tps / y.tps) for x, y in zip(c.rounds, peer.rounds)
                        if x.tps and y.tps]
                if len(logs) < 3:
                    continue
                mean = statistics.mean(logs)
                half = 2 * statistics.stdev(logs) / math.sqrt(len(logs))
                rows.append([w, m, name, str(len(logs)), "%.3f" % math.exp(mean),
                             "%.3f – %.3f" % (math.exp(mean - half), math.exp(mean + half)),
                             "%.2f – %.2f" % (math.exp(min(logs)), math.exp(max(logs)))])
        if not rows:
            return None
        return markdown(["workload", "mode", "target", "rounds", "×pgbouncer (paired)",
                         "95% interval", "range"], rows, right={3, 4, 5, 6})

    def pgstash_table(self):
        if not self.final:
            return ""
        hdr = ["pgstash target", "hits", "misses", "bypasses", "hit ratio", "RSS MiB",
               "peak RSS MiB", "bypass reasons"]
        rows = []
        for name, (s, rss, hwm) in self.final.items():
            if s is None:
                rows.append([name, "?", "?", "?", "?", mib(rss), mib(hwm), "/stats unreadable"])
                continue
            reasons = ", ".join("%s %d" % kv for kv in sorted(
                (s.get("bypasses") or {}).items(), key=lambda kv: -kv[1]) if kv[1])
            rows.append([name, str(s.get("hits")), str(s.get("misses")),
                         str(s.get("bypass_total")), "%.4f" % (s.get("hit_ratio") or 0),
                         mib(rss), mib(hwm), reasons or "-"])
        return markdown(hdr, rows, right={1, 2, 3, 4, 5, 6})

    def error_notes(self):
        """One line per cell and distinct reason, listing the runs it hit."""
        out = []
        for (w, m, name), c in self.results.items():
            groups = {}
            for phase, r in c.errors:
                groups.setdefault(r.reason or r.error, []).append(
                    phase + (" (%d/%d clients aborted)" % (r.aborted, self.a.clients)
                             if r.aborted else ""))
            for reason, phases in groups.items():
                out.append("%s %s %s: %s — in %s" % (w, m, name, reason, ", ".join(phases)))
        return out

    def report(self, interrupted):
        a = self.a
        lines = []
        lines.append("pgbench -c %d -j %d -n -M MODE -T %d, %d round%s per cell (TPS, latency: "
                     "median of rounds), %ds warm-up, scale %d" % (
                         a.clients, a.threads, a.duration, a.rounds, "s" * (a.rounds > 1),
                         a.warmup, a.scale))
        lines.append("")
        lines.append(self.table())
        paired = self.paired_table()
        if paired:
            lines += ["", "pgstash ÷ PgBouncer round by round (geometric mean of the per-round "
                      "ratios, ±2 standard errors; an interval that holds 1.0 is a tie; "
                      "%s is a second PgBouncer, PgBouncer against itself):" % CONTROL, "",
                      paired]
        pt = self.pgstash_table()
        if pt:
            lines += ["", "pgstash after the run (whole run, warm-ups included; RSS from "
                      "/proc/PID/status):", "", pt]
        notes = self.error_notes() + self.notes
        if interrupted:
            notes.insert(0, "INTERRUPTED: the table holds only the cells that ran.")
        if notes:
            lines += ["", "Notes:", ""] + ["- " + n.replace("\n", "\n  ") for n in notes]
        body = "\n".join(lines)
        print(body, flush=True)
        if interrupted:
            return
        md = self.markdown_report(body)
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(md)
        bl.log("bench: wrote %s" % out)

    def markdown_report(self, body):
        mi = self.machine
        v = self.versions
        head = ["# pgstash benchmark", "",
                "- Command: `%s`" % command_line(self.argv),
                "- Date: %s" % time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "- Machine: %s CPUs (%s), %s RAM, %s, Linux %s; load average %s at start, %s "
                "at end" % (mi["nproc"], mi["cpu"], mi["ram"], mi["os"], mi["kernel"],
                            mi["loadavg"], self.load_end),
                "- Versions: " + "; ".join("%s: %s" % kv for kv in v.items()),
                "- Duration: %.1f min" % ((time.monotonic() - self.t0) / 60), ""]
        legend = [
            "", "Legend: TPS, avg and p99 are medians over the rounds; avg and p99 come from "
            "pgbench's per-transaction logs (`--log`), in milliseconds per transaction (a "
            "transaction is one run of the script: 1 statement for hot_agg, hot_point and "
            "select_only, 5 for rw_mix, 2 for churn, 7 for passthrough). `failed` sums pgbench's \"number of "
            "failed transactions\" over the rounds; ERR means pgbench aborted, timed out or the "
            "target died (see Notes). `hit %` is the share of cache lookups answered from "
            "cache during the measured rounds (pgstash: /stats hits ÷ (hits + misses + "
            "bypasses); Pgpool-II: SHOW POOL_CACHE). `CPU µs/tx` is the proxy's own CPU time "
            "(user + system, all its threads and processes, Redis not included) per "
            "transaction, median over the rounds: on a saturated machine every microsecond of "
            "it is taken from PostgreSQL and pgbench. `×peer` is pgstash's TPS divided by the "
            "peer's in the same cell.",
            "",
            "Set-up: PostgreSQL (fsync=off, synchronous_commit=off, shared_buffers=256MB, "
            "shared memory on %s), "
            "PgBouncer session mode (pool 20), Pgpool-II raw mode over the one backend "
            "(connection cache on, no load balancing, num_init_children=%d, max_pool=1, "
            "memory_cache_enabled=on, memqcache_method=shmem, "
            "memqcache_auto_cache_invalidation=on, memqcache_total_size=256MB), Redis "
            "(no persistence, maxmemory 512mb, allkeys-lru), pgstash (default_ttl 1h, log "
            "info, one key_prefix per instance), all on 127.0.0.1; pgbench runs -n (no vacuum) "
            "through each target with the same -c/-j; every target is warmed per cell, then "
            "rounds interleave the targets, every other round in reverse order."
            % (self.huge.describe(), self.a.clients + 4)]
        return "\n".join(head) + "\n" + body + "\n" + "\n".join(legend) + "\n"


def fmt_tps(v):
    if v is None:
        return "-"
    return "%.1f" % v if v < 100 else "%.0f" % v


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.3f" % v if v < 10 else "%.2f" % v if v < 100 else "%.1f" % v


def mib(kb):
    return "%.1f" % (kb / 1024.0) if kb else "?"


def markdown(hdr, rows, right=()):
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(hdr)]

    def line(cells):
        return "| " + " | ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                                 for i, c in enumerate(cells)) + " |"
    sep = "|" + "|".join(("-" * (widths[i] + 1) + ":") if i in right else
                         ("-" * (widths[i] + 2)) for i in range(len(hdr))) + "|"
    return "\n".join([line(hdr), sep] + [line(r) for r in rows])


def main(argv):
    a = parse_args(argv)
    b = Bench(a, argv)
    runs, secs = estimate(a, b.cells)
    bl.log("bench: %d cells × %d round%s of %ds (+%ds warm-up) ≈ %dm%02ds" % (
        runs, a.rounds, "s" * (a.rounds > 1), a.duration, a.warmup, secs // 60, secs % 60))
    if not b.cells:
        raise SystemExit("nothing to run: --only %s matches no cell" % ",".join(a.only))
    if a.dry_run:
        for w, m, ts in b.cells:
            print("%-11s %-8s %s" % (w, m, " ".join(ts)))
        return 0
    bl.install_signal_handlers()
    b.t0 = time.monotonic()
    interrupted = False
    rc = 0
    try:
        b.setup()
        b.measure()
        b.finish()
    except KeyboardInterrupt:
        interrupted = True
        rc = 130
        bl.log("\nbench: interrupted; stopping everything")
    except bl.BenchError as e:
        bl.log("bench: %s" % e)
        b.notes.append("ABORTED: %s" % str(e).splitlines()[0])
        interrupted = True
        rc = 1
    finally:
        bl.ignore_signals()
        try:
            if b.results:
                b.report(interrupted)
        finally:
            b.stop_all()
            bl.log("bench: stopped everything; logs in %s" % (bl.BENCH_DIR / "last-logs"))
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
