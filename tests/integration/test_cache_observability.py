"""
What an operator sees: the periodic stats line (log.format json: one JSON object per line with
hits, misses, bypass_reasons, hit_ratio, top_tables; text: the same as key=value), debug
decision lines (hit / miss / bypass:<reason> / invalidate tables=...), and /stats counters
per table that add up.
"""

import json
import re

import pytest

from cache_helpers import cleanup, expect, make_proxy, prime, q2, settle  # noqa: F401
from pgstash_harness import wait_until

pytestmark = pytest.mark.proxy_only


def make_kv(pg, cleanup, prefix="obs"):
    t = cleanup.table(prefix)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t)
    pg.sql("INSERT INTO %s VALUES (1, 'one'), (2, 'two')" % t)
    return t


def workload(px, t):
    """1 miss, 2 hits, 1 bypass (volatile_function), 1 write, 1 miss after it."""
    c = px.connect()
    try:
        sql = "SELECT * FROM %s ORDER BY id" % t
        expect(px, lambda: q2(c, sql), "miss")
        settle(px)
        expect(px, lambda: q2(c, sql), "hit")
        expect(px, lambda: q2(c, sql), "hit")
        expect(px, lambda: q2(c, "SELECT id, random() FROM %s" % t), "bypass:volatile_function")
        q2(c, "UPDATE %s SET v = 'uno' WHERE id = 1" % t)
        assert expect(px, lambda: q2(c, sql), "miss")[0] == (1, "uno")
        settle(px)
    finally:
        c.close()


def json_lines(px):
    lines = [ln for ln in px.log_text().splitlines() if ln.strip()]
    out = []
    for ln in lines:
        try:
            obj = json.loads(ln)
        except ValueError:
            raise AssertionError("log.format json: a line is not JSON: %r" % ln[:300]) from None
        assert isinstance(obj, dict), "log line is not an object: %r" % ln[:300]
        out.append(obj)
    return out


def stats_objects(px):
    return [o for o in json_lines(px) if o.get("msg") == "stats"]


def test_json_stats_lines(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory, {"log": {"format": "json", "level": "info",
                                              "stats_interval": "1s"}})
    workload(px, t)

    def totals():
        objs = stats_objects(px)
        tot = {"hits": sum(o.get("hits", 0) for o in objs),
               "misses": sum(o.get("misses", 0) for o in objs),
               "bypass": sum(o.get("bypass_reasons", {}).get("volatile_function", 0)
                             for o in objs)}
        return (objs, tot) if tot["hits"] >= 2 and tot["misses"] >= 2 and tot["bypass"] >= 1 \
            else None
    try:
        objs, tot = wait_until(totals, timeout=10, interval=0.2,
                               message="stats lines covering the workload")
    except TimeoutError:
        raise AssertionError("stats lines never added up to the workload (2 hits, 2 misses, "
                             "1 volatile_function bypass): %r" % stats_objects(px)[-3:]) \
            from None
    assert tot == {"hits": 2, "misses": 2, "bypass": 1}, tot
    for o in objs:
        for key in ("hits", "misses", "bypass_reasons", "hit_ratio", "top_tables", "ts",
                    "level", "invalidations", "redis_errors", "redis_timeouts"):
            assert key in o, "stats line without %r: %r" % (key, o)
        assert isinstance(o["bypass_reasons"], dict)
        assert isinstance(o["top_tables"], list)
        assert isinstance(o["hit_ratio"], (int, float)) and 0 <= o["hit_ratio"] <= 1
        reads = o["hits"] + o["misses"] + o.get("bypasses", sum(o["bypass_reasons"].values()))
        if reads:
            assert abs(o["hit_ratio"] - o["hits"] / reads) < 1e-6, o
        if "bypasses" in o:
            assert o["bypasses"] == sum(o["bypass_reasons"].values()), o
    tables = [tt for o in objs for tt in o["top_tables"] if tt.get("table") == "test." + t]
    assert tables, "the table never shows in top_tables: %r" % objs[-1]
    last = tables[-1]
    for key in ("table", "reads", "hits", "hit_ratio"):
        assert key in last, last
    assert last["hits"] == 2 and abs(last["hit_ratio"] - last["hits"] / last["reads"]) < 1e-6
    assert sum(o["invalidations"] for o in objs) >= 1


def test_text_stats_line(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory, {"log": {"format": "text", "level": "info",
                                              "stats_interval": "1s"}})
    workload(px, t)

    def lines():
        ls = [ln for ln in px.log_text().splitlines() if re.search(r"\bstats\b.*\bhits=", ln)]
        return ls if any("test.%s" % t in ln for ln in ls) else None
    ls = wait_until(lines, timeout=10, interval=0.2, message="a text stats line with the table")
    line = next(ln for ln in ls if "test.%s" % t in ln)
    for key in ("hits=", "misses=", "hit_ratio=", "bypass_reasons=", "invalidations=",
                "redis_errors=", "redis_timeouts=", "top_tables="):
        assert key in line, "text stats line without %s: %r" % (key, line)
    total_hits = sum(int(re.search(r"\bhits=(\d+)", ln).group(1)) for ln in ls)
    assert total_hits >= 2, ls


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_debug_decision_logs(pg, pgstash_factory, cleanup, fmt):
    t = make_kv(pg, cleanup)
    px = make_proxy(pgstash_factory, {"log": {"format": fmt, "level": "debug"}})
    workload(px, t)
    c = px.connect()
    try:
        q2(c, "SELECT * FROM %s FOR UPDATE" % t)
        q2(c, "BEGIN")
        q2(c, "INSERT INTO %s VALUES (3, 'three')" % t)
        q2(c, "SELECT * FROM %s" % t)
        q2(c, "COMMIT")
    finally:
        c.close()

    def messages():
        if fmt == "json":
            return [o.get("msg", "") for o in json_lines(px)]
        return px.log_text().splitlines()
    want = [r"\bmiss\b", r"\bhit\b", r"bypass:volatile_function", r"bypass:locking",
            r"bypass:tx_after_write", r"invalidate tables=\S*%s" % t]

    def all_there():
        msgs = messages()
        return msgs if all(any(re.search(w, m) for m in msgs) for w in want) else None
    try:
        wait_until(all_there, timeout=10, interval=0.1, message="decision lines")
    except TimeoutError:
        msgs = messages()
        missing = [w for w in want if not any(re.search(w, m) for m in msgs)]
        raise AssertionError("debug log lacks %r; last lines:\n%s"
                             % (missing, "\n".join(msgs[-30:]))) from None
    msgs = messages()
    # Counts match what was done: 2 misses, 2 hits of the cached statement.
    assert len([m for m in msgs if re.search(r"\bhit SelectStmt\b", m)]) == 2, msgs
    assert len([m for m in msgs if re.search(r"\bmiss SelectStmt\b", m)]) == 2, msgs
    inval = [m for m in msgs if "invalidate tables=" in m]
    assert len(inval) == 2, inval     # the autocommit UPDATE and the committed INSERT


def test_stats_per_table_add_up(pg, pgstash_factory, cleanup):
    t = make_kv(pg, cleanup)
    other = make_kv(pg, cleanup, "obs2")
    px = make_proxy(pgstash_factory)
    workload(px, t)
    c = px.connect()
    try:
        prime(px, lambda: q2(c, "SELECT * FROM %s" % other))
    finally:
        c.close()
    s = px.stats()
    assert s["hits"] == 3 and s["misses"] == 3, s
    assert s["bypasses"].get("volatile_function") == 1, s["bypasses"]
    assert s["bypass_total"] == sum(s["bypasses"].values()), s
    assert abs(s["hit_ratio"] - 3 / (6 + s["bypass_total"])) < 1e-6, s
    assert s["writes"] >= 1 and s["invalidations"] >= 1, s
    tables = {x["table"]: x for x in s["tables"]}
    mine = tables["test." + t]
    assert (mine["hits"], mine["misses"], mine["bypasses"]) == (2, 2, 1), mine
    assert mine["reads"] == 5 and mine["invalidations"] == 1, mine
    assert abs(mine["hit_ratio"] - 2 / 5) < 1e-6, mine
    assert (tables["test." + other]["hits"], tables["test." + other]["misses"]) == (1, 1)
