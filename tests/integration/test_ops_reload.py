"""
Reload and shutdown.

SIGHUP and the console's RELOAD re-read the YAML: table TTLs, `cache: false`, log level and
format, admin users change for new statements on connections that stay open (same PostgreSQL
backend before and after); a bad file is refused with FILE:LINE (in the log for SIGHUP, in the
ERROR for RELOAD) and the running configuration stays.

SIGTERM: new connections are refused at once, a running statement finishes and its client gets
its result, idle clients are closed, an open transaction may still commit within
limits.shutdown_grace; whatever is still running when the grace period ends is cut off; the
process exits 0.
"""

import json
import re
import signal
import threading
import time

import psycopg
import psycopg2
import pytest

from helpers import raw_session, startup_outcome, unique
from ops_helpers import (ADMIN_PASSWORD, ADMIN_USER, admin_connect, admin_query,  # noqa: F401
                         admin_users, classify, expect, explain, log_mark, new_table,
                         ops_proxy, prime, psql, q2, reloaded, settle, sqlcleanup, wait_log)
from pgstash_harness import port_accepts, wait_until

pytestmark = pytest.mark.proxy_only


def duration_ms(text):
    """'10m', '600s', '1500ms' -> milliseconds."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text or "")
    assert m, "not a duration: %r" % text
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000,
                              "d": 86400000}[m.group(2)]


def backend_pid(conn):
    """The PostgreSQL backend serving this connection (pg_backend_pid() is not immutable, so
    it always reaches the server)."""
    return q2(conn, "SELECT pg_backend_pid()")[0][0]


def sighup(px, config=None, text=None):
    """Rewrites the YAML (merging `config`, or raw `text`), sends SIGHUP, returns the log
    offset from before it."""
    mark = log_mark(px)
    if text is not None:
        px.write_config_text(text)
    else:
        px.write_config(config)
    px.reload()
    return mark


# --- SIGHUP ------------------------------------------------------------------------------------

def test_sighup_changes_table_ttl_on_open_connection(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "ttl")
    px = ops_proxy(pgstash_factory, {"tables": {t: {"ttl": "10m"}}})
    c = px.connect()
    try:
        pid = backend_pid(c)
        with admin_connect(px) as adm:
            assert duration_ms(explain(adm, "SELECT * FROM %s" % t)["ttl"]) == 600000
        read1 = lambda: q2(c, "SELECT * FROM %s ORDER BY id" % t)  # noqa: E731
        prime(px, read1)
        time.sleep(1.2)
        assert classify(px, read1)[1] == "hit", "a 10 min TTL expired after 1 s"

        # 3 s, not 1 s: prime() needs the entry to survive its own miss, fill and hit, which
        # under the sanitizer build on a loaded 2-core machine can take more than a second.
        mark = sighup(px, {"tables": {t: {"ttl": "3s"}}})
        reloaded(px, mark)
        # New statements use the new TTL: a fresh entry now lives about three seconds.
        read2 = lambda: q2(c, "SELECT v FROM %s ORDER BY id" % t)  # noqa: E731
        prime(px, read2)
        time.sleep(3.5)
        assert classify(px, read2)[1] == "miss", "entry stored after the reload outlived 3 s"
        with admin_connect(px) as adm:
            assert duration_ms(explain(adm, "SELECT * FROM %s" % t)["ttl"]) == 3000
            rows = {r[0]: r for r in admin_query(adm, "SHOW TABLES")[1]}
            assert rows["test." + t][1] == "3000", rows["test." + t]
        assert backend_pid(c) == pid, "the reload replaced the client's server connection"
    finally:
        c.close()


def test_sighup_cache_false_and_back_on_open_connection(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "nc")
    other = new_table(pg, sqlcleanup, "nco")
    px = ops_proxy(pgstash_factory)
    c = px.connect()
    c3 = psycopg.connect(px.dsn(), autocommit=True)    # extended protocol too
    try:
        pid = backend_pid(c)
        read = lambda: q2(c, "SELECT * FROM %s ORDER BY id" % t)  # noqa: E731
        read3 = lambda: c3.execute("SELECT * FROM %s WHERE id = %%s" % t, (1,)).fetchall()  # noqa
        read_other = lambda: q2(c, "SELECT * FROM %s ORDER BY id" % other)  # noqa: E731
        for fn in (read, read3, read_other):
            prime(px, fn)
        mark = sighup(px, {"tables": {t: {"cache": False}}})
        reloaded(px, mark)
        assert classify(px, read)[1] == "bypass:table_not_cached"
        assert classify(px, read3)[1] == "bypass:table_not_cached"
        assert classify(px, read_other)[1] == "hit", "a rule for one table changed another"
        pg.sql("UPDATE %s SET v = 'behind' WHERE id = 1" % t)    # not through pgstash
        assert expect(px, read, "bypass:table_not_cached")[0] == (1, "behind")
        # And back: cached again, without reconnecting.
        mark = sighup(px, {"tables": {t: None}})
        reloaded(px, mark)
        got = classify(px, read)[1]
        assert got in ("miss", "hit"), got
        settle(px)
        assert classify(px, read)[1] == "hit"
        assert backend_pid(c) == pid
        assert c3.execute("SELECT 1").fetchall() == [(1,)]
    finally:
        c.close()
        c3.close()


def test_sighup_log_level_and_format(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "log")
    px = ops_proxy(pgstash_factory, {"log": {"level": "info", "format": "text",
                                             "stats_interval": "0"}})
    c = px.connect()
    try:
        sql = "SELECT * FROM %s WHERE id = 2" % t
        mark = log_mark(px)
        q2(c, sql)
        settle(px)
        time.sleep(0.3)
        assert not re.search(r"\bhit\b|\bmiss\b", px.log_text()[mark:]), \
            "statement decisions logged at level info"

        mark = sighup(px, {"log": {"level": "debug"}})
        reloaded(px, mark)
        mark = log_mark(px)
        q2(c, sql)
        wait_log(px, r"debug.*@test\b.*\bhit\b", since=mark)

        mark = sighup(px, {"log": {"format": "json"}})
        wait_until(lambda: '"configuration reloaded' in px.log_text()[mark:] or
                   "configuration reloaded" in px.log_text()[mark:], timeout=10,
                   message="the reload")
        mark = log_mark(px)
        q2(c, sql)
        wait_log(px, r"\bhit\b", since=mark)
        time.sleep(0.2)
        lines = [ln for ln in px.log_text()[mark:].splitlines() if ln.strip()]
        assert lines
        for ln in lines:
            obj = json.loads(ln)       # every line after the switch is one JSON object
            assert isinstance(obj, dict) and "level" in obj, obj
        assert any("hit" in json.dumps(json.loads(ln)) for ln in lines), lines

        mark = sighup(px, {"log": {"level": "warn", "format": "text"}})
        with admin_connect(px) as adm:
            # The reload line itself is info, not logged any more: ask the console instead.
            def config():
                return {k: v for k, v in admin_query(adm, "SHOW CONFIG")[1]}
            wait_until(lambda: config()["log.level"] == "warn", timeout=10,
                       message="log.level warn in SHOW CONFIG")
            assert config()["log.format"] == "text"
        mark = log_mark(px)
        q2(c, sql)
        time.sleep(0.3)
        assert not re.search(r"\bhit\b|\bmiss\b", px.log_text()[mark:]), \
            "statement decisions logged at level warn"
    finally:
        c.close()


def test_sighup_changes_admin_users(pgstash_factory):
    px = ops_proxy(pgstash_factory)
    with admin_connect(px) as adm:
        kind, msg = startup_outcome(px, "ops2", database="pgstash", password="ops2-pw")
        assert kind == "error" and msg.sqlstate == "28000"
        mark = sighup(px, {"admin": {"users": admin_users(("ops2", "ops2-pw"))}})
        reloaded(px, mark)
        # The new user can log in, the removed one cannot...
        with admin_connect(px, "ops2", "ops2-pw") as c2:
            assert admin_query(c2, "SHOW VERSION")[1]
        kind, msg = startup_outcome(px, ADMIN_USER, database="pgstash", password=ADMIN_PASSWORD)
        assert kind == "error" and msg.sqlstate == "28000", msg
        # ...but the session it already had was not dropped.
        assert admin_query(adm, "SHOW VERSION")[1]


def test_sighup_bad_file_keeps_running_config(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "bad")
    px = ops_proxy(pgstash_factory, {"tables": {t: {"cache": False}}})
    c = px.connect()
    try:
        pid = backend_pid(c)
        good = px.config_path.read_text()
        for broken, why in ((good + "tables_typo:\n  x: 1\n", "unknown key"),
                            (good.replace("cache: false", "cache: maybe"), "bad bool"),
                            (good + "cache: [unclosed\n", "YAML syntax")):
            mark = sighup(px, text=broken)
            m = wait_log(px, re.escape(str(px.config_path)) + r":(\d+)", since=mark)
            assert int(m.group(1)) >= 1, (why, m.group(0))
            assert "configuration reloaded" not in px.log_text()[mark:], why
            assert px.is_running(), why
            # The old rules still apply, on the same connection.
            assert classify(px, lambda: q2(c, "SELECT * FROM %s" % t))[1] == \
                "bypass:table_not_cached", why
        assert backend_pid(c) == pid
        # A good file afterwards is taken.
        mark = sighup(px, text=good.replace("cache: false", "ttl: 30s"))
        reloaded(px, mark)
        sql = "SELECT * FROM %s ORDER BY id" % t
        assert classify(px, lambda: q2(c, sql))[1] in ("miss", "hit")
    finally:
        c.close()


def test_reload_command_good_and_bad_file(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "rl")
    px = ops_proxy(pgstash_factory, {"cache": {"default_ttl": "60s"}})
    app = px.connect()
    try:
        pid = backend_pid(app)
        with admin_connect(px) as adm:
            def config():
                return {k: v for k, v in admin_query(adm, "SHOW CONFIG")[1]}
            assert duration_ms(config()["cache.default_ttl"]) == 60000
            # Good file.
            px.write_config({"cache": {"default_ttl": "45s"}, "tables": {t: {"ttl": "3s"}}})
            cur = adm.execute("RELOAD")
            assert cur.statusmessage == "RELOAD", cur.statusmessage
            wait_until(lambda: duration_ms(config()["cache.default_ttl"]) == 45000, timeout=10,
                       message="SHOW CONFIG to show the reloaded default_ttl")
            assert duration_ms(explain(adm, "SELECT * FROM %s" % t)["ttl"]) == 3000
            # Bad file: an ERROR naming FILE:LINE, the old config stays, the session goes on.
            text = px.config_path.read_text()
            px.write_config_text(text.replace("default_ttl: 45s", "default_ttl: soon"))
            with pytest.raises(psycopg.Error) as ei:
                adm.execute("RELOAD")
            msg = str(ei.value)
            assert re.search(re.escape(str(px.config_path)) + r":\d+", msg), msg
            assert "default_ttl" in msg, msg
            time.sleep(0.5)
            assert duration_ms(config()["cache.default_ttl"]) == 45000
            assert duration_ms(explain(adm, "SELECT * FROM %s" % t)["ttl"]) == 3000
        # psql shows the same error and exits non-zero.
        p = psql(px, "RELOAD")
        assert p.returncode != 0 and re.search(re.escape(str(px.config_path)) + r":\d+",
                                               p.stderr), p.stderr
        assert px.is_running()
        assert backend_pid(app) == pid
    finally:
        app.close()


def test_reloads_under_load_drop_nothing(pgstash_factory, pg, sqlcleanup):
    """20 SIGHUPs and RELOADs (TTL, log level and format changing) while 6 clients, simple and
    extended protocol (psycopg 3 prepares past its threshold), read and write without pause:
    no client sees an error or a wrong row, none is disconnected."""
    t = new_table(pg, sqlcleanup, "load", rows=50)
    px = ops_proxy(pgstash_factory)
    stop = threading.Event()
    errors, counts = [], [0] * 6

    def client(i):
        try:
            if i % 2:
                c = psycopg.connect(px.dsn(), autocommit=True)
                run = lambda k: c.execute("SELECT id, v FROM %s WHERE id = %%s" % t,  # noqa
                                          (k,)).fetchall()
            else:
                c = px.connect()
                run = lambda k: q2(c, "SELECT id, v FROM %s WHERE id = %d" % (t, k))  # noqa
            while not stop.is_set():
                k = counts[i] % 50 + 1
                rows = run(k)
                assert rows == [(k, "v%d" % k)], rows
                if i == 0 and counts[i] % 25 == 0:
                    q2(c, "UPDATE %s SET v = v WHERE id = %d" % (t, k))
                counts[i] += 1
            c.close()
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append((i, repr(e)))
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(6)]
    for th in threads:
        th.start()
    try:
        with admin_connect(px) as adm:
            for j in range(20):
                px.write_config({"tables": {t: {"ttl": "%ds" % (j % 4 + 1)}},
                                 "log": {"level": "debug" if j % 2 else "info",
                                         "format": "json" if j % 3 == 0 else "text"}})
                if j % 2:
                    px.reload()
                else:
                    assert adm.execute("RELOAD").statusmessage == "RELOAD"
                time.sleep(0.08)
    finally:
        stop.set()
        for th in threads:
            th.join(20)
    assert not errors, errors
    assert all(n > 10 for n in counts), counts
    assert px.is_running()


# --- SIGTERM -----------------------------------------------------------------------------------

def refused_soon(px, timeout=3.0):
    wait_until(lambda: not port_accepts(px.host, px.port, timeout=0.2), timeout=timeout,
               interval=0.05, message="the listen port to refuse connections")


def run_in_thread(fn):
    out = {}

    def body():
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported by the test
            out["error"] = e
        out["t"] = time.monotonic()
    th = threading.Thread(target=body, daemon=True)
    th.start()
    return th, out


def test_sigterm_lets_running_statement_finish(pgstash_factory, pg):
    px = ops_proxy(pgstash_factory, {"limits": {"shutdown_grace": "15s"}})
    c = px.connect()
    tag = unique("drain")
    th, out = run_in_thread(lambda: q2(c, "SELECT '%s', pg_sleep(2)" % tag))
    try:
        wait_until(lambda: pg.backend_pids(state="active", query="SELECT '%s', pg_sleep(2)" % tag),
                   timeout=10, message="the statement to be running")
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        px.expect_exit = True
        refused_soon(px)
        assert th.is_alive(), "the running statement was cut off at once"
        # A new client cannot get in while the old one drains.
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(px.dsn(connect_timeout=3))
        code = px.wait_exit(20)
        t_exit = time.monotonic()
        th.join(5)
        assert "error" not in out, "the running statement failed: %r" % out.get("error")
        assert out["result"][0][0] == tag, out
        assert code == 0, "exit code %r\n%s" % (code, px.log_tail(20))
        assert out["t"] <= t_exit + 0.5, "pgstash exited before the statement's result arrived"
        assert t_exit - t0 < 8, "took %.1fs: idle after the statement, it should exit at once" \
            % (t_exit - t0)
    finally:
        c.close()


def test_sigterm_closes_idle_clients_at_once(pgstash_factory, pg):
    px = ops_proxy(pgstash_factory, {"limits": {"shutdown_grace": "30s"}})
    idle = raw_session(px, pg.superuser)
    adm = admin_connect(px)
    try:
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        px.expect_exit = True
        code = px.wait_exit(20)
        assert code == 0, px.log_tail(20)
        assert time.monotonic() - t0 < 5, "idle clients held the shutdown for %.1fs" % (
            time.monotonic() - t0)
        assert idle.is_closed_by_peer(timeout=5)
        assert not port_accepts(px.host, px.port)
        assert not port_accepts(px.host, px.admin_port), "admin HTTP still listening"
    finally:
        idle.close()
        adm.close()


def test_sigterm_open_transaction_may_commit_within_grace(pgstash_factory, pg, sqlcleanup):
    t = new_table(pg, sqlcleanup, "tx", rows=0)
    px = ops_proxy(pgstash_factory, {"limits": {"shutdown_grace": "15s"}})
    c = px.connect(autocommit=False)
    try:
        q2(c, "INSERT INTO %s VALUES (1, 'before')" % t)   # psycopg2 opened the block
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        px.expect_exit = True
        refused_soon(px)
        time.sleep(0.5)
        q2(c, "INSERT INTO %s VALUES (2, 'after')" % t)
        c.commit()
        assert pg.sql("SELECT id, v FROM %s ORDER BY id" % t) == [(1, "before"), (2, "after")]
        code = px.wait_exit(20)
        assert code == 0, px.log_tail(20)
        assert time.monotonic() - t0 < 8, "the committed (now idle) client was not let go"
    finally:
        c.close()


@pytest.mark.parametrize("what", ["running", "idle_in_transaction"])
def test_sigterm_exits_after_grace_when_transaction_never_finishes(pgstash_factory, pg, what):
    grace = 2.0
    px = ops_proxy(pgstash_factory, {"limits": {"shutdown_grace": "2s"}})
    app = unique("stuck")
    c = px.connect(autocommit=False, application_name=app)
    th = None
    try:
        q2(c, "SELECT 1")          # BEGIN is open
        if what == "running":
            th, out = run_in_thread(lambda: q2(c, "SELECT pg_sleep(30)"))
            wait_until(lambda: pg.backend_pids(application_name=app, state="active"),
                       timeout=10, message="the statement to be running")
        else:
            wait_until(lambda: pg.backend_pids(application_name=app,
                                               state="idle in transaction"),
                       timeout=10, message="idle in transaction")
        t0 = time.monotonic()
        px.signal(signal.SIGTERM)
        px.expect_exit = True
        refused_soon(px)
        code = px.wait_exit(grace + 15)
        took = time.monotonic() - t0
        assert code == 0, "exit code %r\n%s" % (code, px.log_tail(20))
        assert took >= grace - 0.3, ("exited after %.1fs, before the %.0fs grace period, with a "
                                     "transaction open" % (took, grace))
        assert took < grace + 5, "exited %.1fs after SIGTERM, grace is %.0fs" % (took, grace)
        if th is not None:
            th.join(10)
            assert "error" in out, "the cut-off statement reported success: %r" % out
        else:
            with pytest.raises(psycopg2.Error):
                q2(c, "SELECT 2")
    finally:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass
        pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               "WHERE application_name = %s", (app,))
