"""
Back-pressure: a client that reads slowly (or not at all) must stop pgstash from reading its
server, not make pgstash buffer the result. pgstash's RSS is sampled from /proc during a ~200 MB
transfer and must stay within RSS_SLACK_KB of its baseline.
"""

import threading
import time

import pytest

from helpers import raw_session, unique
from pgstash_harness import wait_until

ROWS = 200000
WIDTH = 1000
BIG_QUERY = "SELECT repeat('x', %d) FROM generate_series(1, %d)" % (WIDTH, ROWS)
RSS_SLACK_KB = 16 * 1024
READ_RATE = 40 * 1024 * 1024   # bytes/s the slow client allows itself: far below PostgreSQL's


class RssSampler:
    """Samples a process's RSS every 10 ms in a thread; .max_kb is the peak seen."""

    def __init__(self, target):
        self.target = target
        self.max_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.max_kb = max(self.max_kb, self.target.rss_kb())
                self.samples += 1
            except OSError:
                return
            self._stop.wait(0.01)

    def __enter__(self):
        if not self.target.is_direct:
            self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._t.is_alive():
            self._t.join()


def _warm_up(c):
    """One modest result first, so lazily allocated buffers are part of the baseline."""
    msgs = c.simple_query("SELECT repeat('w', 1000) FROM generate_series(1, 5000)")
    assert msgs[-1].type == "Z"


@pytest.mark.timeout(180)
def test_slow_reader_200mb_bounded_rss(pg, proxy):
    with raw_session(proxy, pg.superuser, timeout=60, rcvbuf=64 * 1024) as c:
        _warm_up(c)
        baseline = None if proxy.is_direct else proxy.rss_kb()
        with RssSampler(proxy) as sampler:
            c.query(BIG_QUERY)
            start = time.monotonic()
            rows = 0
            payload = 0
            while True:
                m = c.read_msg()
                if m.type == "D":
                    rows += 1
                    payload += len(m.payload)
                    if rows == 1:
                        assert m.data_row == [b"x" * WIDTH]
                    # Pace the reading: never faster than READ_RATE.
                    ahead = c.bytes_received / READ_RATE - (time.monotonic() - start)
                    if ahead > 0.005:
                        time.sleep(ahead)
                elif m.type == "E":
                    pytest.fail("error during transfer: %s %s" % (m.sqlstate, m.message))
                elif m.type == "C":
                    assert m.command_tag == "SELECT %d" % ROWS
                elif m.type == "Z":
                    break
        assert rows == ROWS
        assert c.bytes_received > 200 * 1000 * 1000
        if baseline is not None:
            assert sampler.samples > 50
            growth = sampler.max_kb - baseline
            assert growth < RSS_SLACK_KB, (
                "pgstash RSS grew %d KiB over its %d KiB baseline while a client read %d MB "
                "slowly (limit %d KiB)" % (growth, baseline, c.bytes_received >> 20, RSS_SLACK_KB))
        # The session is still in sync.
        assert c.simple_query("SELECT 1")[-1].tx_status == "I"


@pytest.mark.timeout(120)
def test_stalled_reader_blocks_its_server_not_others(pg, proxy):
    """A client that stops reading: its backend ends up blocked in ClientWrite (the pressure
    reached PostgreSQL), pgstash's memory stays bounded, and other clients are served."""
    app = unique("stall")
    c = raw_session(proxy, pg.superuser, params={"application_name": app}, timeout=60,
                    rcvbuf=64 * 1024)
    try:
        _warm_up(c)
        baseline = None if proxy.is_direct else proxy.rss_kb()
        c.query(BIG_QUERY)
        c.read_msg()  # the RowDescription: the query is running
        blocked = lambda: pg.backend_pids(application_name=app, wait_event="ClientWrite")  # noqa

        def held():
            """Blocked on ten polls over a second: steady pressure, not a momentary blip of a
            proxy that is draining the server into its own memory."""
            for _ in range(10):
                if not blocked():
                    return False
                time.sleep(0.1)
            return True
        wait_until(held, timeout=30, interval=0.1,
                   message="the stalled client's backend to stay blocked in ClientWrite")
        if baseline is not None:
            growth = proxy.rss_kb() - baseline
            assert growth < RSS_SLACK_KB, "pgstash buffered %d KiB for a stalled client" % growth
        for _ in range(5):
            with raw_session(proxy, pg.superuser, timeout=5) as other:
                msgs = other.simple_query("SELECT 'served'", timeout=5)
                assert [m.data_row for m in msgs if m.type == "D"] == [[b"served"]]
        # Still blocked: pgstash did not quietly drain the rest of the result meanwhile.
        assert blocked(), "the backend is no longer blocked: pgstash read the result anyway"
        # Let it finish at full speed: nothing was lost while stalled.
        rows = 0
        while True:
            m = c.read_msg()
            if m.type == "D":
                rows += 1
            elif m.type == "Z":
                break
        assert rows == ROWS
    finally:
        c.close()
