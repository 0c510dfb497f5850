"""
Fixtures of the real-drivers suite: one throwaway PostgreSQL, Redis and pgstash for the whole
run (tests/lib/pgstash_harness.py, free loopback ports), shared by every driver's test. Each
test uses its own table names, so the drivers never see each other's cache entries.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clientlib  # noqa: E402  (also puts tests/lib on sys.path)
import pgstash_harness as h  # noqa: E402

REPO = clientlib.REPO


def pytest_configure(config):
    h.install_signal_cleanup()


def pytest_sessionstart(session):
    if not h.pgstash_binary().exists():
        pytest.exit("pgstash binary not found at %s: run `make` first, or set PGSTASH_BIN"
                    % h.pgstash_binary(), returncode=1)
    # The drivers themselves: Debian packages, installed when missing (no-op otherwise).
    if os.environ.get("PGSTASH_CLIENTS_NO_INSTALL") != "1":
        r = subprocess.run(["bash", str(REPO / "scripts" / "install-deps.sh"), "clients"])
        if r.returncode != 0:
            pytest.exit("scripts/install-deps.sh clients failed (%d)" % r.returncode, returncode=1)


def pytest_report_header(config):
    return "pgstash: %s" % h.pgstash_binary()


@pytest.fixture(scope="session")
def pg():
    server = h.PostgresServer(name="pg-clients")
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis():
    server = h.RedisServer(name="redis-clients")
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def px(pg, redis):
    # A generous redis_timeout: a loaded machine must not turn hits into redis_unavailable
    # bypasses. Debug logs: each statement's decision, for the failure reports.
    inst = h.Pgstash(pg, redis, {"cache": {"key_prefix": "clients", "redis_timeout": "2s"},
                                 "log": {"level": "debug", "stats_interval": "10s"}})
    inst.start()
    yield inst
    died = inst.proc.poll() is not None
    code = inst.stop()
    inst.destroy()
    if died:
        raise AssertionError("pgstash died during the clients suite (exit %s)" % code)


WATCHDOG_SECONDS = int(os.environ.get("PGSTASH_CLIENTS_TEST_TIMEOUT", "150"))


@pytest.fixture(autouse=True)
def _watchdog(request, px):
    """A driver stuck on pgstash (a unit never answered) must fail, not hang the run: after
    WATCHDOG_SECONDS the shared pgstash is killed by PID, so every client gets EOF; the test
    fails with this reason (and the later ones because pgstash is gone)."""
    import threading
    fired = []

    def fire():
        fired.append(True)
        if px.pid:
            sys.stderr.write("\nwatchdog: %s exceeded %ds; killing pgstash pid %d\n%s\n"
                             % (request.node.nodeid, WATCHDOG_SECONDS, px.pid, px.log_tail(30)))
            px.kill()
    t = threading.Timer(WATCHDOG_SECONDS, fire)
    t.daemon = True
    t.start()
    yield
    t.cancel()
    if fired:
        pytest.fail("the test exceeded %ds; pgstash was killed" % WATCHDOG_SECONDS,
                    pytrace=False)
