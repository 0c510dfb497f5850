"""
The limits an operator sets in `limits:`: clients that never finish start-up or sit idle are
closed (and their backends with them), a busy statement is not mistaken for idleness, and
connections beyond max_client_conn are refused the way PostgreSQL refuses them (FATAL 53300).
"""

import struct

import pytest

from helpers import raw, raw_session, unique
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only  # pgstash's own limits


def assert_serves(target, user):
    with raw_session(target, user) as c:
        assert c.simple_query("SELECT 1")[-1].type == "Z"


def test_auth_timeout_closes_stuck_startup(pg, pgstash_factory):
    px = pgstash_factory({"limits": {"auth_timeout": "1s"}})
    with raw(px) as c:
        c.send_raw(struct.pack("!i", 40) + b"\0\3\0\0user\0")   # half a start-up packet
        msgs = c.expect_closed(timeout=15)
        assert all(m.type == "E" and m.severity == "FATAL" for m in msgs), msgs
    assert_serves(px, pg.superuser)


def test_idle_timeout_closes_idle_session_not_busy_one(pg, pgstash_factory):
    px = pgstash_factory({"limits": {"client_idle_timeout": "1s"}})
    app = unique("idle")
    # Busy for 3 s, longer than the idle timeout: the statement completes.
    with raw_session(px, pg.superuser) as busy:
        msgs = busy.simple_query("SELECT pg_sleep(3)", timeout=15)
        assert not [m for m in msgs if m.type == "E"], msgs
    # Idle: closed, with PostgreSQL's own idle-session SQLSTATE if anything is said.
    c = raw_session(px, pg.superuser, params={"application_name": app})
    try:
        msgs = c.expect_closed(timeout=15)
        for m in msgs:
            assert m.type == "E" and m.sqlstate == "57P05", m
    finally:
        c.close()
    wait_until(lambda: not pg.backend_pids(application_name=app), timeout=10,
               message="the idle client's backend to exit")
    assert_serves(px, pg.superuser)


def test_max_client_conn(pg, pgstash_factory):
    px = pgstash_factory({"limits": {"max_client_conn": 3}})
    sessions = [raw_session(px, pg.superuser) for _ in range(3)]
    try:
        with raw(px) as extra:
            extra.send_startup(pg.superuser, "test")
            msgs = extra.expect_closed(timeout=10)
        errors = [m for m in msgs if m.type == "E"]
        assert errors and errors[0].sqlstate == "53300" and errors[0].severity == "FATAL", msgs
        for s in sessions:
            assert s.simple_query("SELECT 1")[-1].type == "Z"
    finally:
        sessions.pop().close()
    try:
        # One slot is free again (once pgstash has noticed the close).
        wait_until(lambda: px.stats()["clients"] == 2, timeout=10, message="clients == 2")
        assert_serves(px, pg.superuser)
    finally:
        for s in sessions:
            s.close()
