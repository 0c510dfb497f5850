"""
psql (postgresql-client-15) running psql/session.sql — the scripted session with literals, over
the simple protocol — against PostgreSQL and through pgstash, with `psql -X -A`: stdout (split
into the script's "@@ step" sections) and stderr (the errors, with their script line numbers)
must be identical. Checkpoints are `\\! curl` calls to the test's checkpoint server.
"""

import shutil
import subprocess

from clientlib import HERE, checkpoint_server, env_for_subprocess, run_both, sha256_lines

SCRIPT = HERE / "psql" / "session.sql"
BIG_STEPS = ("big50k.1", "big50k.2", "bigish.1", "bigish.2")


def parse(stdout, stderr):
    """The transcript: [step, lines] per "@@ step" section; the big results summarised as
    count, sum of ids and checksum (the full text is compared through the checksum)."""
    out = []
    step, lines = "preamble", []

    def flush():
        if step in BIG_STEPS:
            body = lines[1:-1] if len(lines) >= 2 else lines   # header ... "(N rows)"
            rows = [ln.split("|") for ln in body]
            try:
                sum_id = sum(int(r[0]) for r in rows)
            except (ValueError, IndexError):
                sum_id = None
            out.append([step, {"header": lines[:1], "footer": lines[-1:], "count": len(rows),
                               "sum_id": sum_id, "checksum": sha256_lines(body),
                               "first": body[:1], "last": body[-1:]}])
        else:
            out.append([step, lines])

    for line in stdout.splitlines():
        if line.startswith("@@ "):
            flush()
            step, lines = line[3:], []
        else:
            lines.append(line)
    flush()
    out.append(["stderr", stderr.splitlines()])
    return out


def _run(host, port, user, dbname, table, ck):
    psql = shutil.which("psql")
    assert psql, "psql not found: scripts/install-deps.sh clients installs postgresql-client-15"
    assert shutil.which("curl"), "curl not found: scripts/install-deps.sh clients installs it"
    with checkpoint_server(ck) as srv:
        env = env_for_subprocess()
        env.update(PGSTASH_CKPT=srv.url, PGSTASH_T=table, PGSTASH_B=table + "_big",
                   PGAPPNAME="clients-psql")
        p = subprocess.run([psql, "-X", "-A", "-v", "ON_ERROR_STOP=0", "-v", "t=" + table,
                            "-v", "b=" + table + "_big", "-f", str(SCRIPT),
                            "host=%s port=%d user=%s dbname=%s connect_timeout=10"
                            % (host, port, user, dbname)],
                           capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, "psql failed against %s:%s (%d):\n%s" % (
        host, port, p.returncode, p.stderr[-4000:])
    return parse(p.stdout, p.stderr)


def _errors_expected(transcript):
    """The script's errors are the intended ones, and only those."""
    errs = [ln for s, v in transcript if s == "stderr" for ln in v]
    want = ["duplicate key value violates unique constraint",
            "current transaction is aborted", "division by zero"]
    got = [ln for ln in errs if "ERROR:" in ln]
    problems = []
    if len(got) != len(want) or not all(w in g for w, g in zip(want, got)):
        problems.append("psql errors: expected %s, got %s" % (want, errs))
    return problems


def test_psql(pg, px):
    run_both("psql", pg, px, _run, extra_checks=_errors_expected)
