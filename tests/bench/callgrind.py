#!/usr/bin/python3
"""
callgrind.py — instructions per cache hit and per cache miss in pgstash, counted by
`valgrind --tool=callgrind` (repeatable on a noisy machine, unlike timings).

pgstash runs under callgrind with `workers: 1` in front of a throwaway PostgreSQL and Redis.
For each protocol mode, pgbench (one client) sends:
  hits:   one constant statement, cached beforehand, N and then 2N times;
  misses: point reads of random keys out of 1,000,000 (never seen before), N and 2N times.
Around each pgbench run the counters are zeroed and dumped with callgrind_control, and
/stats says how many hits and misses the run really had. The difference between the 2N run
and the N run cancels the fixed per-connection cost (start-up, auth relay, session set-up):

    Ir per hit  = (Ir(2N) - Ir(N)) / (hits(2N) - hits(N))
    Ir per miss = (Ir(2N) - Ir(N) - Ir_per_hit * extra_hits) / (misses(2N) - misses(N))

The instructions counted are pgstash's own (all its threads), not PostgreSQL's or Redis's.

With --relay it counts instead what relaying one pgbench -S transaction costs pgstash
(cache.enabled false, workers 1) and PgBouncer (session mode), the same way for both: each
proxy runs under callgrind in a fresh process for N and for 2N transactions of one client
(after 50 to warm up), and Ir per transaction = (Ir(2N) - Ir(N)) / N over the whole process.

    tests/bench/callgrind.sh                  # N = 1000, all three modes
    tests/bench/callgrind.sh --n 300 --modes extended
    tests/bench/callgrind.sh --relay          # pgstash vs PgBouncer per relayed transaction
"""

import argparse
import glob
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as bl  # noqa: E402

HIT_SQL = "SELECT abalance FROM pgbench_accounts WHERE aid = 1;\n"
MISS_SQL = ("\\set aid random(2, 1000000)\n"
            "SELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n")


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="tests/bench/callgrind.sh", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000,
                    help="statements in the smaller run; the larger sends 2N (default 1000)")
    ap.add_argument("--modes", default="simple,extended,prepared",
                    help="pgbench -M modes (default simple,extended,prepared)")
    ap.add_argument("--consistency", default="strict", choices=("strict", "local"))
    ap.add_argument("--scale", type=int, default=10, help="pgbench -i -s (default 10)")
    ap.add_argument("--pgstash-bin", default=None)
    ap.add_argument("--out", default=None,
                    help="report file (default .bench/last-callgrind.md, with --relay "
                         ".bench/last-callgrind-relay.md)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    ap.add_argument("--relay", action="store_true",
                    help="Ir per relayed pgbench -S transaction, pgstash (cache off) and "
                         "PgBouncer side by side")
    a = ap.parse_args(argv)
    a.modes = [m for m in a.modes.split(",") if m]
    for m in a.modes:
        if m not in ("simple", "extended", "prepared"):
            ap.error("unknown mode %r" % m)
    if a.n < 10:
        ap.error("--n must be at least 10")
    if a.out is None:
        a.out = str(bl.BENCH_DIR / ("last-callgrind-relay.md" if a.relay
                                    else "last-callgrind.md"))
    return a


class Callgrind:
    def __init__(self, px, outdir):
        self.px = px
        self.outdir = outdir

    def control(self, *args):
        p = subprocess.run(["callgrind_control", *args, str(self.px.proc.pid)],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0 or "OK" not in p.stdout:
            raise bl.BenchError("callgrind_control %s failed: %s%s" % (
                " ".join(args), p.stdout, p.stderr))

    def zero(self):
        self.control("--zero")

    def dump(self, label):
        """Dumps the counters since the last zero; returns the total Ir and the dump's path."""
        before = set(glob.glob(str(self.outdir / "callgrind.out.*")))
        self.control("--dump=%s" % label)
        deadline = time.monotonic() + 60
        while True:
            new = set(glob.glob(str(self.outdir / "callgrind.out.*"))) - before
            for path in new:
                text = Path(path).read_text(errors="replace")
                m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
                if m and label in text:
                    return int(m.group(1)), path
            if time.monotonic() > deadline:
                raise bl.BenchError("no callgrind dump appeared for %s" % label)
            time.sleep(0.1)


def counters(px):
    s = px.stats(timeout=30)
    if s is None:
        raise bl.BenchError("pgstash /stats unreadable%s" % bl.tail_hint(px.log_path))
    return s["hits"], s["misses"], s["bypass_total"]


def measure(run, px, cg, mode, script, n, label):
    """Zero, pgbench -t n, dump: (Ir, hits, misses, bypasses, dump path)."""
    cg.zero()
    h0, m0, b0 = counters(px)
    # One client, one thread: the differences between runs must be only the statements.
    r = bl.pgbench(run, px.port, ["-f", script], mode, transactions=n, clients=1, threads=1,
                   timeout=600 + n)
    if not r.ok:
        raise bl.BenchError("%s pgbench %s: %s" % (label, mode, r.error))
    ir, path = cg.dump(label)
    h1, m1, b1 = counters(px)
    return ir, h1 - h0, m1 - m0, b1 - b0, path


def guarded(run, started, body):
    """Runs body(); whatever happens, stops everything on `started`. Returns the exit code."""
    try:
        body()
        return 0
    except KeyboardInterrupt:
        bl.log("\ncallgrind: interrupted; stopping everything")
        return 130
    except bl.BenchError as e:
        bl.log("callgrind: %s" % e)
        return 1
    finally:
        bl.ignore_signals()
        run.close(started)


def start_servers(run, a, started):
    """PostgreSQL with pgbench's tables at --scale, and Redis; their stops go on `started`."""
    pg = bl.Postgres(run)
    bl.log("callgrind: PostgreSQL on port %d" % pg.port)
    pg.start()
    started.append(pg.stop)
    bl.psql(pg.port, "CREATE DATABASE %s" % bl.DB, db="postgres")
    p = subprocess.run([str(bl.pg_bindir() / "pgbench"), "-i", "-q", "-s", str(a.scale),
                        "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.superuser, bl.DB],
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise bl.BenchError("pgbench -i failed: %s" % p.stderr[-2000:])
    redis = bl.Redis(run)
    redis.start()
    started.append(redis.stop)
    return pg, redis


def dump_total(path):
    """Total Ir of a callgrind output file written at exit."""
    text = Path(path).read_text(errors="replace")
    m = re.search(r"^(?:totals|summary):\s+(\d+)", text, re.M)
    if not m:
        raise bl.BenchError("no totals in %s" % path)
    return int(m.group(1))


def relay_run(run, pg, redis, a, proxy, mode, n, outdir):
    """One fresh proxy process under callgrind: 50 transactions to warm up, then n; returns
    the whole process's Ir."""
    label = "%s-%s-%d" % (proxy, mode, n)
    out = outdir / ("callgrind.out." + label)
    wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" % out,
               "--dump-instr=no"]
    if proxy == "pgstash":
        px = bl.Pgstash(run, pg, redis, workers=1, consistency="off", binary=a.pgstash_bin,
                        wrapper=wrapper, name="pgstash-" + label)
        px.start(timeout=180)
    else:
        px = bl.PgBouncer(run, pg, name="pgbouncer-" + label, wrapper=wrapper)
        px.start()
    try:
        for count in (50, n):
            r = bl.pgbench(run, px.port, ["-S"], mode, transactions=count, clients=1,
                           threads=1, timeout=600 + count)
            if not r.ok:
                raise bl.BenchError("%s %s: pgbench: %s" % (proxy, mode, r.error))
    finally:
        px.stop()
    deadline = time.monotonic() + 60
    while not out.exists():
        if time.monotonic() > deadline:
            raise bl.BenchError("%s wrote no callgrind output%s" % (proxy,
                                                                     bl.tail_hint(px.log_path)))
        time.sleep(0.1)
    return dump_total(out)


def relay_main(a, argv):
    """--relay: Ir per relayed transaction, pgstash and PgBouncer."""
    bl.need("pgbouncer")
    run = bl.RunDir("callgrind-relay", keep=a.keep)
    started = []
    rows = []
    t0 = time.monotonic()

    def body():
        pg, redis = start_servers(run, a, started)
        # Written by PgBouncer, which runs as the server user when we are root.
        outdir = run.subdir("callgrind-out", owned_by_server_user=True)
        for mode in a.modes:
            per_tx = {}
            for proxy in ("pgstash", "pgbouncer"):
                bl.log("callgrind: %s %s: %d and %d transactions" % (proxy, mode, a.n, 2 * a.n))
                ir = [relay_run(run, pg, redis, a, proxy, mode, n, outdir)
                      for n in (a.n, 2 * a.n)]
                per_tx[proxy] = (ir[1] - ir[0]) / a.n
            rows.append([mode, "{:,.0f}".format(per_tx["pgstash"]),
                         "{:,.0f}".format(per_tx["pgbouncer"]),
                         "%.2f" % (per_tx["pgstash"] / per_tx["pgbouncer"])])

    rc = guarded(run, started, body)
    if rows:
        from bench import markdown
        table = markdown(["mode", "pgstash Ir/tx", "PgBouncer Ir/tx", "pgstash ÷ PgBouncer"],
                         rows, right={1, 2, 3})
        head = ("Instructions (Ir, valgrind --tool=callgrind, whole process) per relayed "
                "pgbench -S transaction: pgstash with cache.enabled false and workers 1, "
                "%s in session mode; one client, fresh processes for N and 2N, "
                "N = %d" % (bl.first_line([bl.need("pgbouncer"), "--version"]), a.n))
        print(head + "\n\n" + table, flush=True)
        if rc == 0:
            cmd = "tests/bench/callgrind.sh" + "".join(" " + x for x in argv)
            Path(a.out).write_text(
                "# Instructions per relayed transaction\n\n- Command: `%s`\n- Date: %s\n"
                "- pgstash: git %s; valgrind: %s\n- Duration: %.1f min\n\n%s\n\n%s\n" % (
                    cmd, time.strftime("%Y-%m-%d %H:%M:%S %z"), bl.git_revision(),
                    bl.first_line(["valgrind", "--version"]), (time.monotonic() - t0) / 60,
                    head, table))
            bl.log("callgrind: wrote %s" % a.out)
    return rc


def main(argv):
    a = parse_args(argv)
    bl.need("valgrind")
    bl.install_signal_handlers()
    if a.relay:
        return relay_main(a, argv)
    bl.need("callgrind_control")   # zeroes and dumps the counters around each run
    run = bl.RunDir("callgrind", keep=a.keep)
    started = []
    rows = []
    t0 = time.monotonic()

    def body():
        pg, redis = start_servers(run, a, started)
        outdir = run.subdir("callgrind-out")
        wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s" %
                   (outdir / "callgrind.out.%p"), "--dump-instr=no", "--vgdb=yes"]
        px = bl.Pgstash(run, pg, redis, workers=1, consistency=a.consistency,
                        binary=a.pgstash_bin, wrapper=wrapper, name="pgstash-callgrind")
        bl.log("callgrind: starting pgstash under callgrind (slow)")
        px.start(timeout=180)
        started.append(px.stop)
        cg = Callgrind(px, outdir)
        hit_script = run.path / "hit.sql"
        hit_script.write_text(HIT_SQL)
        miss_script = run.path / "miss.sql"
        miss_script.write_text(MISS_SQL)
        keep_dir = bl.BENCH_DIR / "callgrind-last"
        keep_dir.mkdir(exist_ok=True)
        for old in keep_dir.glob("*"):
            old.unlink()
        for mode in a.modes:
            bl.log("callgrind: %s: priming the hit entry" % mode)
            r = bl.pgbench(run, px.port, ["-f", hit_script], mode, transactions=5, clients=1,
                           threads=1, timeout=600)
            if not r.ok:
                raise bl.BenchError("priming %s: %s" % (mode, r.error))
            res = {}
            for kind, script in (("hit", hit_script), ("miss", miss_script)):
                for n in (a.n, 2 * a.n):
                    label = "%s-%s-%d" % (mode, kind, n)
                    bl.log("callgrind: %s: %d %s%s" % (mode, n, kind, "es" if kind == "miss"
                                                        else "s"))
                    res[(kind, n)] = measure(run, px, cg, mode, script, n, label)
                    os.replace(res[(kind, n)][4], keep_dir / ("callgrind.out." + label))
            (i1, h1, m1, b1, _), (i2, h2, m2, b2, _) = res[("hit", a.n)], res[("hit", 2 * a.n)]
            if h2 - h1 <= 0:
                raise bl.BenchError("%s: no extra hits between the runs (%d, %d): is the "
                                    "statement cached?" % (mode, h1, h2))
            per_hit = (i2 - i1 - 0.0) / (h2 - h1)
            hit_other = (m1 + b1, m2 + b2)
            (j1, hh1, mm1, bb1, _), (j2, hh2, mm2, bb2, _) = (res[("miss", a.n)],
                                                              res[("miss", 2 * a.n)])
            if mm2 - mm1 <= 0:
                raise bl.BenchError("%s: no extra misses between the runs" % mode)
            per_miss = (j2 - j1 - per_hit * (hh2 - hh1)) / (mm2 - mm1)
            rows.append([mode, "{:,.0f}".format(per_hit), "{:,.0f}".format(per_miss),
                         "%d/%d (+%d other)" % (h1, h2, hit_other[0] + hit_other[1]),
                         "%d/%d (+%d hits, %d bypasses)" % (mm1, mm2, hh1 + hh2, bb1 + bb2),
                         "{:,.0f}".format(i1 / a.n), "{:,.0f}".format(j1 / a.n)])

    rc = guarded(run, started, body)
    if rows:
        hdr = ["mode", "Ir per hit", "Ir per miss", "hits counted (N/2N)",
               "misses counted (N/2N)", "Ir/stmt incl. connect (hit, N)",
               "Ir/stmt incl. connect (miss, N)"]
        table = bench_markdown(hdr, rows)
        head = ("pgstash instructions (Ir, valgrind --tool=callgrind, all threads) per cache "
                "hit and per miss; workers 1, consistency %s, pgbench -c 1 -t N vs 2N, "
                "N = %d" % (a.consistency, a.n))
        print(head + "\n\n" + table, flush=True)
        if rc == 0:
            cmd = "tests/bench/callgrind.sh" + ("".join(" " + x for x in argv))
            md = ("# pgstash instructions per hit and per miss\n\n- Command: `%s`\n- Date: %s\n"
                  "- pgstash: %s (git %s); valgrind: %s\n- Duration: %.1f min\n\n%s\n\n%s\n\n"
                  "Dumps of each run: .bench/callgrind-last/ (e.g. `callgrind_annotate "
                  ".bench/callgrind-last/callgrind.out.simple-hit-%d`).\n" % (
                      cmd, time.strftime("%Y-%m-%d %H:%M:%S %z"),
                      bl.first_line([str(a.pgstash_bin or bl.REPO / "pgstash"), "--version"]),
                      bl.git_revision(), bl.first_line(["valgrind", "--version"]),
                      (time.monotonic() - t0) / 60, head, table, 2 * a.n))
            Path(a.out).write_text(md)
            bl.log("callgrind: wrote %s; dumps in %s" % (a.out, bl.BENCH_DIR / "callgrind-last"))
    return rc


def bench_markdown(hdr, rows):
    from bench import markdown
    return markdown(hdr, rows, right={1, 2, 5, 6})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
