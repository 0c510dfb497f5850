"""
Helpers for the operations tests (test_ops_*.py): pgstash instances with an admin console,
the admin console through psql / psycopg 3 / psycopg2, hit-or-miss classification from /stats,
a strict Prometheus text-format parser, and curl.

Black-box only: everything here looks at what a client, psql, curl or the log sees.
"""

import hashlib
import hmac
import json
import math
import os
import re
import subprocess
import time

import psycopg
import pytest

from helpers import unique
from pgstash_harness import deep_merge, pgstash_binary, wait_until

ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct horse battery staple"

_secret_cache = {}


# --- secrets ----------------------------------------------------------------------------------

def make_secret(password):
    """`pgstash --make-secret` with the password on stdin; returns the printed secret."""
    p = subprocess.run([str(pgstash_binary()), "--make-secret"], input=password + "\n",
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "--make-secret failed (%d): %s" % (p.returncode, p.stderr)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, "--make-secret printed %r" % p.stdout
    return lines[0].strip()


def cached_secret(password=ADMIN_PASSWORD):
    """One --make-secret per password per run (each costs 4096 PBKDF2 rounds)."""
    if password not in _secret_cache:
        _secret_cache[password] = make_secret(password)
    return _secret_cache[password]


SECRET_RE = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)"
                       r"\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")


def scram_keys(password, salt, iterations):
    """(StoredKey, ServerKey) of RFC 5802 / RFC 7677 for a password."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored = hashlib.sha256(client_key).digest()
    server = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored, server


# --- pgstash with an admin console --------------------------------------------------------------

def admin_users(*pairs):
    """[{"name", "secret"}] for (name, password) pairs; default: the one admin user."""
    pairs = pairs or ((ADMIN_USER, ADMIN_PASSWORD),)
    return [{"name": n, "secret": cached_secret(p)} for n, p in pairs]


def ops_proxy(factory, config=None, prefix=None, users=None, **kw):
    """A pgstash with admin.users, its own Redis key prefix (so FLUSH ALL and counters never
    touch other tests), a generous redis_timeout (no spurious redis_unavailable bypasses on a
    loaded machine) and a 1 s stats line."""
    base = {"cache": {"key_prefix": prefix or unique("ops"), "redis_timeout": "2s"},
            "log": {"level": "info", "stats_interval": "1s"},
            "admin": {"users": users if users is not None else admin_users()}}
    return factory(deep_merge(base, config or {}), **kw)


def prefix_of(px):
    return px.config["cache"]["key_prefix"]


def admin_dsn(px, user=ADMIN_USER, password=ADMIN_PASSWORD):
    return "host=%s port=%d dbname=pgstash user=%s password='%s' connect_timeout=10" % (
        px.host, px.port, user, password.replace("'", "\\'"))


def admin_connect(px, user=ADMIN_USER, password=ADMIN_PASSWORD):
    """A psycopg 3 connection (extended protocol) to the admin console, autocommit (the
    console has no transactions)."""
    return psycopg.connect(admin_dsn(px, user, password), autocommit=True)


def admin_query(conn, sql, **kw):
    """(column names, rows) of one admin command on a psycopg 3 connection."""
    cur = conn.execute(sql, **kw)
    if cur.description is None:
        return None, None
    return [d.name for d in cur.description], cur.fetchall()


def psql(px, sql, user=ADMIN_USER, password=ADMIN_PASSWORD, dbname="pgstash", args=(),
         timeout=30):
    """Runs `psql -X -c SQL` against pgstash; returns the CompletedProcess."""
    env = dict(os.environ, PGPASSWORD=password or "", PGCONNECT_TIMEOUT="10",
               PGAPPNAME="pgstash-ops-tests")
    env.pop("PGSERVICE", None)
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=1",
           "host=%s port=%d dbname=%s user=%s" % (px.host, px.port, dbname, user)]
    cmd += list(args) + ["-c", sql]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def psql_rows(px, sql, **kw):
    """One admin command through psql --csv: a list of dicts (header from the RowDescription)."""
    import csv
    import io
    p = psql(px, sql, args=("--csv",), **kw)
    assert p.returncode == 0, "psql %r failed (%d): %s%s" % (sql, p.returncode, p.stdout,
                                                            p.stderr)
    rows = list(csv.reader(io.StringIO(p.stdout)))
    assert rows, "psql %r printed nothing" % sql
    header = rows[0]
    return [dict(zip(header, r)) for r in rows[1:]], header


def kv(rows, key="stat", value="value"):
    """{key: value} of two-column results (SHOW STATS, SHOW CONFIG, EXPLAIN CACHE)."""
    return {r[key]: r[value] for r in rows}


def explain(conn, sql, database="test", timeout=10.0):
    """EXPLAIN CACHE IN DATABASE database <sql> as {field: value}, asked again while pgstash
    says its catalog of that database is still being read."""
    def ask():
        cols, rows = admin_query(conn, "EXPLAIN CACHE IN DATABASE %s %s" % (database, sql))
        assert cols == ["field", "value"], cols
        out = {f: v for f, v in rows}
        return None if "being read" in (out.get("catalog") or "") else out
    return wait_until(ask, timeout=timeout, interval=0.1,
                      message="EXPLAIN CACHE to answer with the catalog read")


# --- hit / miss / bypass from /stats -------------------------------------------------------------

def read_counts(s):
    return s["hits"] + s["misses"] + s["bypass_total"]


def classify(px, fn, timeout=5.0):
    """Runs fn() (exactly one SELECT-like statement) and returns (result, kind) where kind is
    'hit', 'miss' or 'bypass:<reason>', from the /stats counters."""
    before = px.stats()
    result = fn()
    last = {}

    def check():
        s = px.stats()
        last.clear()
        last.update(s)
        return s if read_counts(s) > read_counts(before) else None
    try:
        after = wait_until(check, timeout=timeout, interval=0.01, message="a read to be counted")
    except TimeoutError:
        raise AssertionError("the read was not counted within %ss (stats %s)"
                             % (timeout, json.dumps(last)[:400])) from None
    n = read_counts(after) - read_counts(before)
    assert n == 1, "expected exactly one read to be counted, got %d" % n
    if after["hits"] > before["hits"]:
        return result, "hit"
    if after["misses"] > before["misses"]:
        return result, "miss"
    for reason, v in after.get("bypasses", {}).items():
        if v > before.get("bypasses", {}).get(reason, 0):
            return result, "bypass:" + reason
    return result, "bypass:?"


def expect(px, fn, kind, timeout=5.0):
    result, got = classify(px, fn, timeout)
    assert got == kind, "expected this read to be a %s, it was a %s" % (kind, got)
    return result


def settle(px, timeout=5.0):
    """Waits until every miss so far has stored its fill (or skipped it)."""
    return px.wait_stats(lambda s: s["fills"] + s["fill_skipped"] >= s["misses"],
                         timeout=timeout, message="fills + fill_skipped >= misses")


def prime(px, fn):
    """Makes fn's read cached: a miss (or already a hit), the fill, then a hit."""
    _, k1 = classify(px, fn)
    assert k1 in ("miss", "hit"), "first read: expected a miss or a hit, got %s" % k1
    settle(px)
    _, k2 = classify(px, fn)
    assert k2 == "hit", "identical read after the fill: expected a hit, got %s" % k2


def q2(conn, sql, params=None):
    """Executes on a psycopg2 connection (simple protocol); returns all rows (or None)."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description else None


# --- HTTP through curl ---------------------------------------------------------------------------

def curl(px, path, method="GET", timeout=10):
    """(status, headers dict (lower-case names), body str) of an HTTP request through curl."""
    url = "http://%s:%d%s" % (px.host, px.admin_port, path)
    cmd = ["curl", "-sS", "-i", "--max-time", str(timeout)]
    if method == "HEAD":
        cmd.append("-I")
    elif method != "GET":
        cmd += ["-X", method]
    p = subprocess.run(cmd + [url], capture_output=True, timeout=timeout + 5)
    assert p.returncode == 0, "curl %s failed (%d): %s" % (url, p.returncode, p.stderr)
    raw = p.stdout.decode("utf-8", "replace")
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def curl_fail_exit(px, path, timeout=10):
    """Exit code of `curl -fsS URL` (what a Docker healthcheck runs): 0 = 2xx, 22 = >= 400."""
    url = "http://%s:%d%s" % (px.host, px.admin_port, path)
    return subprocess.run(["curl", "-fsS", "-o", "/dev/null", "--max-time", str(timeout), url],
                          capture_output=True, timeout=timeout + 5).returncode


# --- Prometheus text format ----------------------------------------------------------------------

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class PromError(AssertionError):
    pass


def _parse_labels(s, i, lineno):
    """Parses {a="x",b="y"} starting at s[i] == '{'; returns (labels, index after '}')."""
    labels = {}
    i += 1
    while True:
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", s[i:])
        if not m:
            raise PromError("line %d: bad label name at %r" % (lineno, s[i:i + 20]))
        name = m.group(0)
        i += len(name)
        if s[i:i + 2] != '="':
            raise PromError("line %d: expected =\" after label %s" % (lineno, name))
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise PromError("line %d: unterminated label value" % lineno)
            ch = s[i]
            if ch == "\\":
                nxt = s[i + 1:i + 2]
                if nxt == "n":
                    val.append("\n")
                elif nxt in ('"', "\\"):
                    val.append(nxt)
                else:
                    raise PromError("line %d: bad escape \\%s in a label value" % (lineno, nxt))
                i += 2
                continue
            if ch == '"':
                i += 1
                break
            if ch == "\n":
                raise PromError("line %d: raw newline in a label value" % lineno)
            val.append(ch)
            i += 1
        if name in labels:
            raise PromError("line %d: label %s twice" % (lineno, name))
        labels[name] = "".join(val)
        while i < len(s) and s[i] == " ":
            i += 1
        if i < len(s) and s[i] == ",":
            i += 1
            continue
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        raise PromError("line %d: expected , or } in labels" % lineno)


def _value(text, lineno):
    t = text.strip()
    if t in ("+Inf", "Inf"):
        return math.inf
    if t == "-Inf":
        return -math.inf
    if t == "NaN":
        return math.nan
    try:
        return float(t)
    except ValueError:
        raise PromError("line %d: bad sample value %r" % (lineno, text)) from None


def _family_of(sample_name, families):
    if sample_name in families:
        return sample_name
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[:-len(suffix)]
            if base in families and families[base]["type"] in ("histogram", "summary"):
                return base
    return None


def parse_prometheus(text):
    """Parses the Prometheus text exposition format (0.0.4) strictly.

    Returns {family: {"type", "help", "samples": [(sample name, labels dict, value)]}}.
    Raises PromError on: a sample without a preceding # TYPE of its family, HELP/TYPE given
    twice, a family split into several blocks, bad names/labels/escapes/values, a duplicate
    series, counters that are negative or not named *_total, inconsistent histograms (le not
    increasing, counts not cumulative, no +Inf bucket, +Inf != _count).
    """
    if text and not text.endswith("\n"):
        raise PromError("the exposition does not end with a newline")
    families = {}
    order = []
    seen_series = set()
    for lineno, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not _METRIC_NAME.match(name):
                    raise PromError("line %d: bad metric name %r" % (lineno, name))
                fam = families.get(name)
                if fam is None:
                    fam = families[name] = {"type": None, "help": None, "samples": []}
                    order.append(name)
                elif order[-1] != name:
                    raise PromError("line %d: family %s split into several blocks" % (lineno,
                                                                                    name))
                key = parts[1].lower()
                if fam[key] is not None:
                    raise PromError("line %d: second %s for %s" % (lineno, parts[1], name))
                if parts[1] == "TYPE":
                    if fam["samples"]:
                        raise PromError("line %d: TYPE of %s after its samples" % (lineno, name))
                    typ = parts[3].strip() if len(parts) > 3 else ""
                    if typ not in _TYPES:
                        raise PromError("line %d: unknown type %r" % (lineno, typ))
                    fam["type"] = typ
                else:
                    fam["help"] = parts[3] if len(parts) > 3 else ""
            continue
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            raise PromError("line %d: bad sample line %r" % (lineno, line))
        sname = m.group(0)
        i = len(sname)
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i, lineno)
        if i >= len(line) or line[i] != " ":
            raise PromError("line %d: expected a space before the value: %r" % (lineno, line))
        rest = line[i:].split()
        if not rest or len(rest) > 2:
            raise PromError("line %d: expected value [timestamp]: %r" % (lineno, line))
        value = _value(rest[0], lineno)
        fname = _family_of(sname, families)
        if fname is None or families[fname]["type"] is None:
            raise PromError("line %d: sample %s has no preceding # TYPE" % (lineno, sname))
        if order[-1] != fname:
            raise PromError("line %d: sample of %s outside its family's block" % (lineno, fname))
        series = (sname, tuple(sorted(labels.items())))
        if series in seen_series:
            raise PromError("line %d: duplicate series %s%s" % (lineno, sname, labels))
        seen_series.add(series)
        families[fname]["samples"].append((sname, labels, value))
    for name, fam in families.items():
        if fam["type"] == "counter":
            if not name.endswith("_total"):
                raise PromError("counter %s is not named *_total" % name)
            for s, labels, v in fam["samples"]:
                if s != name:
                    raise PromError("counter %s has a sample named %s" % (name, s))
                if not v >= 0:
                    raise PromError("counter %s%s is %r" % (name, labels, v))
        elif fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
    return families


def check_histogram(name, samples):
    groups = {}
    for s, labels, v in samples:
        rest = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if s == name + "_bucket":
            if "le" not in labels:
                raise PromError("%s bucket without le" % name)
            g["buckets"].append((_value(labels["le"], 0), v))
        elif s == name + "_sum":
            g["sum"] = v
        elif s == name + "_count":
            g["count"] = v
        else:
            raise PromError("histogram %s has a sample named %s" % (name, s))
    for rest, g in groups.items():
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise PromError("histogram %s%s: no +Inf bucket last" % (name, dict(rest)))
        for (le1, c1), (le2, c2) in zip(b, b[1:]):
            if not le2 > le1:
                raise PromError("histogram %s: le not increasing (%r, %r)" % (name, le1, le2))
            if c2 < c1:
                raise PromError("histogram %s: buckets not cumulative at le=%r" % (name, le2))
        if g["count"] is None or g["sum"] is None:
            raise PromError("histogram %s: no _sum or _count" % name)
        if g["count"] != b[-1][1]:
            raise PromError("histogram %s: _count %r != +Inf bucket %r" % (name, g["count"],
                                                                           b[-1][1]))
        if g["sum"] < 0:
            raise PromError("histogram %s: negative _sum" % name)


def sample(families, family, sample_name=None, **labels):
    """The value of one series (None if absent)."""
    fam = families.get(family)
    if not fam:
        return None
    for s, lab, v in fam["samples"]:
        if s == (sample_name or family) and lab == labels:
            return v
    return None


def metrics(px):
    status, headers, body = curl(px, "/metrics")
    assert status == 200, (status, body[:300])
    return parse_prometheus(body)


# --- misc ----------------------------------------------------------------------------------------

def log_mark(px):
    return len(px.log_text())


def wait_log(px, pattern, since=0, timeout=10.0):
    """Waits until the log after offset `since` matches the regex; returns the match."""
    rx = re.compile(pattern)
    return wait_until(lambda: rx.search(px.log_text()[since:]), timeout=timeout, interval=0.05,
                      message="log line matching %r" % pattern)


def reloaded(px, since, timeout=10.0):
    """Waits for the 'configuration reloaded' log line after offset `since`."""
    return wait_log(px, r"configuration reloaded", since, timeout)


def elapsed_since(t0):
    return time.monotonic() - t0


@pytest.fixture
def sqlcleanup(pg):
    """Collects SQL to run directly against PostgreSQL at teardown (last first)."""
    stmts = []
    yield stmts
    errors = []
    for sql, db in reversed(stmts):
        try:
            pg.sql(sql, dbname=db)
        except Exception as e:  # noqa: BLE001 - keep cleaning up
            errors.append("%s: %s" % (sql, e))
    assert not errors, errors


def new_table(pg, sqlcleanup, prefix="ops", rows=3, dbname=None, name=None):
    """A fresh table (id int primary key, v text) with `rows` rows; dropped at teardown."""
    t = name or unique(prefix)
    pg.sql("CREATE TABLE %s (id int PRIMARY KEY, v text)" % t, dbname=dbname)
    pg.sql("INSERT INTO %s SELECT g, 'v' || g FROM generate_series(1, %d) g" % (t, rows),
           dbname=dbname)
    sqlcleanup.append(("DROP TABLE IF EXISTS %s CASCADE" % t, dbname))
    return t
