"""
`make run`, the README's second command: scripts/demo.sh brings up a throwaway PostgreSQL,
Redis and pgstash, prints the connection string, serves the demo schema through pgstash with
a cache hit on the second read, and a Ctrl-C (SIGINT to its process group, as a terminal
sends it) lets pgstash drain and stops all three. Run on a free port and in a folder of the
test's own (PGSTASH_DEMO_PORT, PGSTASH_DEMO_DIR), so a developer's own demo is left alone.
"""

import json
import os
import re
import signal
import subprocess
import urllib.request

import psycopg2
import pytest

from pgstash_harness import REPO_ROOT, free_port, pgstash_binary, pid_alive, wait_until

pytestmark = pytest.mark.proxy_only

DEMO = REPO_ROOT / "scripts" / "demo.sh"


def read(path):
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def test_demo_serves_caches_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    demo_dir = tmp_path / "demo"
    log_path = tmp_path / "demo.log"
    env = dict(os.environ, PGSTASH_BIN=str(pgstash_binary()), PGSTASH_DEMO_PORT=str(port),
               PGSTASH_DEMO_DIR=str(demo_dir))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["bash", str(DEMO)], env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True)
    pids = []
    try:
        wait_until(lambda: proc.poll() is not None or "listening on" in read(log_path),
                   timeout=180, message="the demo to start")
        text = read(log_path)
        assert proc.poll() is None, text[-3000:]
        url = re.search(r"connect:\s+psql (postgresql://\S+)", text).group(1)
        assert url.endswith("@127.0.0.1:%d/demo" % port), url
        stats_url = re.search(r"stats:\s+curl -s (http://\S+)", text).group(1)
        pids = [int(line.split()[0]) for line in read(demo_dir / "pids").splitlines()]
        assert len(pids) == 3, pids  # PostgreSQL, Redis, pgstash

        sql = "SELECT name, price FROM products WHERE category = 'books' ORDER BY price LIMIT 5"
        conn = psycopg2.connect(url)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
                first = cur.fetchall()
                cur.execute(sql)
                second = cur.fetchall()
        finally:
            conn.close()
        assert first and first == second
        with urllib.request.urlopen(stats_url, timeout=10) as r:
            stats = json.load(r)
        assert stats["hits"] >= 1, stats

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on the terminal does
        assert proc.wait(timeout=60) == 130
        text = read(log_path)
        assert "pgstash stopped" in text, text[-3000:]
        assert "second termination signal" not in text, text[-3000:]
        assert "PostgreSQL, Redis and pgstash stopped" in text, text[-3000:]
        assert not [p for p in pids if pid_alive(p)], text[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the script's trap stops what it started
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)


def test_demo_never_empties_a_folder_it_did_not_make(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious").write_text("keep me")
    env = dict(os.environ, PGSTASH_BIN=str(pgstash_binary()),
               PGSTASH_DEMO_PORT=str(free_port()), PGSTASH_DEMO_DIR=str(foreign))
    p = subprocess.run(["bash", str(DEMO)], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "not made by this script" in p.stderr, p.stderr
    assert (foreign / "precious").read_text() == "keep me"
