"""
pgbench through pgstash: `pgbench -i -s 1`, then -M simple, extended and prepared, each with the
built-in select-only and tpcb-like scripts, 8 clients, 2 threads, a few seconds each. Every run
must process transactions and fail none.
"""

import re
import subprocess

import pytest

import pgstash_harness as h

DURATION = 4
DB = "pgbench"


@pytest.fixture(scope="module")
def bench_target(pg, redis, direct_mode):
    """One pgstash for the module (PostgreSQL itself in direct mode), with an initialised
    pgbench database created through it."""
    pg.sql("DROP DATABASE IF EXISTS %s" % DB, dbname="postgres")
    pg.sql("CREATE DATABASE %s" % DB, dbname="postgres")
    px = None
    if direct_mode:
        target = h.DirectTarget(pg)
    else:
        px = target = h.Pgstash(pg, redis)
        px.start()
    try:
        p = pgbench(target, pg, ["-i", "-s", "1", "-q"])
        assert p.returncode == 0, p.stdout + p.stderr
        assert pg.sql("SELECT count(*) FROM pgbench_accounts", dbname=DB) == [(100000,)]
        yield target
        if px is not None:
            assert px.is_running(), "pgstash died during pgbench:\n" + px.log_tail()
            assert px.stop() == 0, px.log_tail()
    finally:
        if px is not None:
            px.destroy()
        pg.sql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % DB, dbname="postgres")


def pgbench(target, pg, args, timeout=120):
    cmd = [str(h.pg_bindir() / "pgbench"), "-h", target.host, "-p", str(target.port),
           "-U", pg.superuser] + args + [DB]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def parse_pgbench(output):
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    failed = re.search(r"number of failed transactions: (\d+)", output)
    tps = re.search(r"tps = ([\d.]+)", output)
    assert processed and tps, "unexpected pgbench output:\n" + output
    return {"processed": int(processed.group(1)),
            "failed": int(failed.group(1)) if failed else 0,
            "tps": float(tps.group(1))}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("script", ["select-only", "tpcb-like"])
@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench(bench_target, pg, mode, script):
    p = pgbench(bench_target, pg, ["-M", mode, "-b", script, "-c", "8", "-j", "2",
                                   "-T", str(DURATION)])
    out = p.stdout + p.stderr
    assert p.returncode == 0, "pgbench exited %d:\n%s" % (p.returncode, out)
    r = parse_pgbench(out)
    assert r["failed"] == 0, out
    assert r["processed"] > 0, out
    assert not re.search(r"^pgbench: error", out, re.M), out
