"""
The operator's contract on the command line: --version, --help, --check-config, FILE:LINE
errors for bad files, --listen/--upstream/--redis overrides, running without a file, SIGTERM
(exit 0) and SIGHUP (reload without dropping anyone; a bad file keeps the old config).
"""

import os
import re
import signal
import subprocess

import pytest

from helpers import raw_session
from pgstash_harness import REPO_ROOT, Pgstash, free_port, port_accepts, wait_until

pytestmark = pytest.mark.proxy_only  # these run the pgstash binary itself


def run(pgstash_bin, *args, timeout=15):
    return subprocess.run([str(pgstash_bin)] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_serves(target, user):
    with raw_session(target, user) as c:
        msgs = c.simple_query("SELECT 'ok'")
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"ok"]]


def test_version(pgstash_bin):
    p = run(pgstash_bin, "--version")
    assert p.returncode == 0, p.stderr
    assert "pgstash" in p.stdout.lower()
    assert re.search(r"\d+\.\d+\.\d+", p.stdout), p.stdout


def test_help(pgstash_bin):
    p = run(pgstash_bin, "--help")
    assert p.returncode == 0, p.stderr
    for word in ("-c", "--check-config", "--listen", "--upstream", "--redis", "--version"):
        assert word in p.stdout, "--help does not mention %s" % word


def test_unknown_option(pgstash_bin):
    p = run(pgstash_bin, "--no-such-option")
    assert p.returncode != 0
    assert p.stderr.strip()


def test_check_config_accepts_good_files(pgstash_bin, pg, redis, tmp_path):
    px = Pgstash(pg, redis, {"tables": {"products": {"ttl": "10m"}, "audit_log": {"cache": False}},
                            "cache": {"default_ttl": "30s", "max_entry_bytes": "1MB"}})
    try:
        p = run(pgstash_bin, "--check-config", "-c", px.config_path)
        assert p.returncode == 0, p.stderr + "\n" + px.config_path.read_text()
    finally:
        px.destroy()
    example = REPO_ROOT / "pgstash.example.yaml"
    if example.exists():
        p = run(pgstash_bin, "--check-config", "-c", example)
        assert p.returncode == 0, p.stderr


BAD_CONFIGS = [
    # (id, yaml text, line of the error)
    ("unknown_top_key", "listen: 127.0.0.1:6432\nupstream: 127.0.0.1:5432\nlisten_port: 5\n", 3),
    ("unknown_nested_key", "cache:\n  default_ttl: 60s\n  colour: blue\n", 3),
    ("bad_duration", "log:\n  level: info\ncache:\n  default_ttl: ten minutes\n", 4),
    ("bad_port", "listen: 127.0.0.1:99999\n", 1),
    ("bad_log_level", "log:\n  level: verbose\n", 2),
    ("bad_size", "limits:\n  max_message_bytes: 1.5MB\n", 2),
    ("bad_consistency", "cache:\n  consistency: eventual\n", 2),
    ("bad_redis_url", "workers: 2\nredis: http://127.0.0.1:6379\n", 2),
    ("tables_not_mapping", "tables: 5\n", 1),
    ("bad_table_ttl", "tables:\n  products:\n    ttl: soon\n", 3),
    ("bad_workers", "workers: many\n", 1),
]


@pytest.mark.parametrize("text,line", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_check_config_rejects_bad_file_with_file_and_line(pgstash_bin, tmp_path, text, line):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    p = run(pgstash_bin, "--check-config", "-c", path)
    assert p.returncode == 1, (p.returncode, p.stderr)
    m = re.search(re.escape(str(path)) + r":(\d+): *(\S.*)", p.stderr)
    assert m, "no %s:LINE: reason on stderr: %r" % (path, p.stderr)
    assert int(m.group(1)) == line, p.stderr
    assert len(m.group(2)) > 5


def test_yaml_syntax_error(pgstash_bin, tmp_path):
    path = tmp_path / "syntax.yaml"
    path.write_text("listen: 127.0.0.1:6432\ncache:\n  default_ttl: [60s\n  enabled: true\n")
    p = run(pgstash_bin, "--check-config", "-c", path)
    assert p.returncode == 1
    m = re.search(re.escape(str(path)) + r":(\d+): *\S", p.stderr)
    assert m and 3 <= int(m.group(1)) <= 5, p.stderr


def test_missing_config_file(pgstash_bin, tmp_path):
    path = tmp_path / "nope.yaml"
    p = run(pgstash_bin, "--check-config", "-c", path)
    assert p.returncode == 1
    assert str(path) in p.stderr


def test_start_with_bad_config_refused(pgstash_factory):
    px = pgstash_factory({"cache": {"default_ttl": "forever"}}, start=False)
    px.start(wait=False)
    code = px.wait_exit(15)
    px.expect_exit = True
    assert code == 1, "exit code %r" % code
    assert re.search(re.escape(str(px.config_path)) + r":\d+:", px.log_text()), px.log_text()
    assert not port_accepts(px.host, px.port)


def test_listen_and_upstream_overrides(pg, pgstash_factory):
    override = free_port()
    px = pgstash_factory({"upstream": "127.0.0.1:1"},
                         args=["--listen", "127.0.0.1:%d" % override,
                               "--upstream", "%s:%d" % (pg.host, pg.port)])
    assert px.port == override
    assert_serves(px, pg.superuser)
    assert not port_accepts("127.0.0.1", int(px.config["listen"].rsplit(":", 1)[1]))


def test_bad_redis_override_refused(pgstash_bin, pg, redis):
    px = Pgstash(pg, redis, args=["--redis", "http://not-redis"])
    try:
        px.start(wait=False)
        code = px.wait_exit(15)
        assert code == 1, code
        assert "--redis" in px.log_text() or "redis" in px.log_text().lower()
    finally:
        px.destroy()


class NoFilePgstash(Pgstash):
    """pgstash run with no -c at all: built-in defaults plus command-line overrides."""

    def command_line(self):
        return [str(self.binary), "--listen", "%s:%d" % (self.host, self.port),
                "--upstream", "%s:%d" % (self.pg.host, self.pg.port),
                "--redis", self.redis.url] + self.extra_args


def test_runs_without_config_file(pg, redis):
    px = NoFilePgstash(pg, redis)
    try:
        px.start()
        assert_serves(px, pg.superuser)
        assert px.stop() == 0
    finally:
        px.destroy()


def test_logs_to_stderr(proxy, pg):
    assert_serves(proxy, pg.superuser)
    assert proxy.log_text().strip(), "nothing logged at level info"


def test_threads_are_named(pgstash_factory, pg):
    """top -H and ps -L tell an operator which thread burns the CPU: one pgstash-wN per
    worker and the catalog reader."""
    px = pgstash_factory({"workers": 2})
    assert_serves(px, pg.superuser)
    task_dir = "/proc/%d/task" % px.proc.pid
    names = set()
    for tid in os.listdir(task_dir):
        with open(os.path.join(task_dir, tid, "comm")) as f:
            names.add(f.read().strip())
    assert {"pgstash-w0", "pgstash-w1", "pgstash-catalog"} <= names, names


def test_sigterm_exits_zero(proxy, pg):
    assert_serves(proxy, pg.superuser)
    assert proxy.stop() == 0


def test_sigterm_right_after_listening_exits_zero(pg, redis):
    """The workers accept before the main thread's loop runs: a SIGTERM in that window must
    still drain and exit 0, not kill the process (it did under ASan, where start-up is slow)."""
    for _ in range(5):
        px = NoFilePgstash(pg, redis)
        proc = subprocess.Popen(px.command_line(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            wait_until(lambda: proc.poll() is not None or port_accepts(px.host, px.port),
                       timeout=30, interval=0.0005, message="pgstash to listen")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, proc.stderr.read().decode(errors="replace")[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stderr.close()
            px.destroy()


def test_sigterm_with_idle_client(pgstash_factory, pg):
    px = pgstash_factory({"limits": {"shutdown_grace": "2s"}})
    c = raw_session(px, pg.superuser)
    try:
        px.signal(signal.SIGTERM)
        px.expect_exit = True
        assert px.wait_exit(15) == 0, px.log_tail()
        assert c.is_closed_by_peer(timeout=5)
    finally:
        c.close()
    assert not port_accepts(px.host, px.port)


def test_sighup_reload_keeps_sessions_and_survives_bad_file(pgstash_factory, pg):
    px = pgstash_factory()
    c = raw_session(px, pg.superuser)
    try:
        c.simple_query("SET application_name = 'before_reload'")
        px.write_config({"log": {"level": "debug"}})
        px.reload()
        assert_serves(px, pg.superuser)
        msgs = c.simple_query("SHOW application_name")
        assert [m.data_row for m in msgs if m.type == "D"] == [[b"before_reload"]]
        # A broken file: refused with FILE:LINE in the log, the old config keeps running.
        before = len(px.log_text())
        px.write_config_text(px.config_path.read_text() + "no_such_key: 1\n")
        px.reload()
        wait_until(lambda: re.search(re.escape(str(px.config_path)) + r":\d+:",
                                     px.log_text()[before:]),
                   timeout=10, message="the reload error in the log")
        assert px.is_running()
        assert_serves(px, pg.superuser)
        assert c.simple_query("SELECT 1")[-1].type == "Z"
    finally:
        c.close()
