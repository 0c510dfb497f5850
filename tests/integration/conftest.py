"""
Fixtures for pgstash's integration tests: one throwaway PostgreSQL and Redis per session, and
pgstash instances per test, all on free loopback ports and all stopped even when a test fails.

DIRECT MODE: with PGSTASH_TEST_DIRECT=1 the `proxy` fixture (and `pgstash_factory`) hand out
PostgreSQL itself, and tests marked `proxy_only` are skipped. Every other test must pass that
way: it proves the tests assert PostgreSQL's real behaviour, not pgstash's.

Each test runs under a watchdog (default 120 s, `@pytest.mark.timeout(SECONDS)` to change): on
expiry it dumps the stacks, kills the test's pgstash processes by PID (so a client blocked
inside libpq gets EOF) and fails the test. A session-wide budget (PGSTASH_TEST_BUDGET, default
18 min) and a smoke test at the start keep a broken build from stretching the run.
"""

import faulthandler
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

import pgstash_harness as h  # noqa: E402

DIRECT = os.environ.get("PGSTASH_TEST_DIRECT") == "1"
DEFAULT_TIMEOUT = int(os.environ.get("PGSTASH_TEST_TIMEOUT", "120"))
ABORT_GRACE = 30
BUDGET = int(os.environ.get("PGSTASH_TEST_BUDGET", "1080"))


def pytest_configure(config):
    config.addinivalue_line("markers", "proxy_only: needs pgstash itself; skipped in direct mode")
    config.addinivalue_line("markers", "timeout(seconds): per-test watchdog")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
    h.install_signal_cleanup()


def pytest_sessionstart(session):
    if not DIRECT and not h.pgstash_binary().exists():
        pytest.exit("pgstash binary not found at %s: run `make` first, set PGSTASH_BIN, or run "
                    "the suite against PostgreSQL itself with PGSTASH_TEST_DIRECT=1"
                    % h.pgstash_binary(), returncode=1)


def pytest_report_header(config):
    if DIRECT:
        return "pgstash: DIRECT MODE (tests run against PostgreSQL itself)"
    return "pgstash: %s" % h.pgstash_binary()


def pytest_collection_modifyitems(config, items):
    if not DIRECT:
        return
    skip = pytest.mark.skip(reason="proxy_only (PGSTASH_TEST_DIRECT=1)")
    for item in items:
        if "proxy_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def direct_mode():
    return DIRECT


# --- servers ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg():
    server = h.PostgresServer(name="pg")
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def redis():
    server = h.RedisServer(name="redis")
    server.start()
    yield server
    server.destroy()


@pytest.fixture
def pg_factory():
    """Private PostgreSQL clusters for tests that stop, kill or reconfigure them."""
    made = []

    def make(conf=None, start=True):
        s = h.PostgresServer(conf=conf, name="pgpriv")
        made.append(s)
        if start:
            s.start()
        return s
    yield make
    for s in made:
        s.destroy()


@pytest.fixture
def redis_factory():
    made = []

    def make(password=None, start=True):
        s = h.RedisServer(password=password, name="redispriv")
        made.append(s)
        if start:
            s.start()
        return s
    yield make
    for s in made:
        s.destroy()


# --- pgstash ------------------------------------------------------------------------------------

@pytest.fixture
def pgstash_factory(request, pg, redis):
    """make(config=None, pg=None, redis=None, args=(), start=True) -> Pgstash (or DirectTarget).

    At teardown every instance is stopped with SIGTERM; one that died during the test, or
    did not exit 0 on SIGTERM, fails the test with its log tail."""
    instances = []
    request.node._pgstash_instances = instances

    def make(config=None, pg=None, redis=None, args=(), start=True, env=None):
        upstream = pg or request.getfixturevalue("pg")
        if DIRECT:
            return h.DirectTarget(upstream)
        inst = h.Pgstash(upstream, redis or request.getfixturevalue("redis"), config,
                         args=args, env=env)
        instances.append(inst)
        if start:
            inst.start()
        return inst

    yield make

    problems = []
    for inst in instances:
        if inst.proc is None:
            inst.destroy()
            continue
        if not inst.expect_exit and inst.proc.poll() is not None:
            problems.append("pgstash %s died during the test with exit code %s\n--- log tail ---\n%s"
                            % (inst, inst.proc.returncode, inst.log_tail(40)))
        elif not inst.expect_exit:
            code = inst.stop()
            if code != 0:
                problems.append("pgstash %s exited %s on SIGTERM (expected 0)\n--- log tail ---\n%s"
                                % (inst, code, inst.log_tail(40)))
        inst.destroy()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def proxy(pgstash_factory):
    """A pgstash with the default test config (PostgreSQL itself in direct mode)."""
    return pgstash_factory()


@pytest.fixture
def pgstash_bin():
    return h.pgstash_binary()


# --- watchdog and failure reports ---------------------------------------------------------------

class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit (see the stack dump above)")


def _to_terminal(config, text, stacks=False):
    """Writes past pytest's output capture (from any thread)."""
    capman = config.pluginmanager.getplugin("capturemanager")
    try:
        if capman is not None:
            capman.suspend_global_capture(in_=True)
        sys.stderr.write(text)
        sys.stderr.flush()
        if stacks:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    finally:
        if capman is not None:
            capman.resume_global_capture()


@pytest.fixture(autouse=True)
def _watchdog(request):
    """Per-test time limit. On expiry: stacks to the terminal, the test's pgstash killed by PID
    (unblocking clients stuck in libpq), TestTimeout raised in the test. A test that still does
    not return within ABORT_GRACE seconds aborts the run (after killing every process)."""
    marker = request.node.get_closest_marker("timeout")
    seconds = marker.args[0] if marker else DEFAULT_TIMEOUT
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    main_ident = threading.main_thread().ident
    finished = threading.Event()

    def expire():
        if finished.wait(seconds):
            return
        _to_terminal(request.config, "\n*** %s: timed out after %ss; killing its pgstash, "
                     "stacks follow\n" % (request.node.nodeid, seconds), stacks=True)
        for inst in getattr(request.node, "_pgstash_instances", []):
            try:
                inst.expect_exit = True   # the test fails with TestTimeout, not "pgstash died"
                inst._emergency_cleanup()
            except Exception:
                pass
        signal.pthread_kill(main_ident, signal.SIGALRM)
        if finished.wait(ABORT_GRACE):
            return
        _to_terminal(request.config, "\n*** %s: still stuck %ss after its timeout; aborting "
                     "the run\n" % (request.node.nodeid, ABORT_GRACE), stacks=True)
        h.cleanup_all()
        os._exit(70)

    old = signal.signal(signal.SIGALRM, _alarm)
    t = threading.Thread(target=expire, daemon=True, name="watchdog")
    t.start()
    try:
        yield
    finally:
        finished.set()
        t.join()
        signal.signal(signal.SIGALRM, old)


_session_start = time.monotonic()


@pytest.fixture(autouse=True)
def _budget():
    """Once the suite has run for PGSTASH_TEST_BUDGET seconds, the remaining tests fail at
    once instead of running, so a badly broken build cannot stretch `make test` for hours."""
    spent = time.monotonic() - _session_start
    if spent > BUDGET:
        pytest.fail("suite time budget of %ss exhausted (PGSTASH_TEST_BUDGET); not run" % BUDGET,
                    pytrace=False)
    yield


@pytest.fixture(scope="session", autouse=True)
def _smoke(request):
    """Before anything else, one SELECT through a fresh pgstash: if even that fails, the run
    stops with pgstash's log instead of timing out test after test."""
    if DIRECT:
        return
    pg = request.getfixturevalue("pg")
    redis = request.getfixturevalue("redis")
    px = h.Pgstash(pg, redis, name="smoke")
    try:
        try:
            px.start(timeout=20)
            import pgwire
            with pgwire.PgWire(px.host, px.port, timeout=10) as c:
                c.startup(pg.superuser, pg.dbname, timeout=10)
                msgs = c.simple_query("SELECT 1", timeout=10)
                assert [m.type for m in msgs] == ["T", "D", "C", "Z"], msgs
        except Exception as e:  # noqa: BLE001 - reported with the log
            pytest.exit("smoke test failed: a simple query through pgstash did not work (%r); "
                        "not running the suite.\n--- pgstash log ---\n%s"
                        % (e, px.log_tail(40)), returncode=1)
    finally:
        px.destroy()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for inst in getattr(item, "_pgstash_instances", []):
            rep.sections.append(("pgstash log %s" % inst.log_path, inst.log_tail(80)))
