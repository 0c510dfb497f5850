"""
pgstash never builds SQL from client input (issue 6, "Security"): the SQL it sends on its own
— the catalog queries (libpq, proxy/catalog.c) and the session probe (a Parse it sends on a
client's server connection, proxy/request.c) — is made of fixed strings; whatever comes from a
client (database, user, custom setting names and values) travels as a libpq connection
parameter (never expanded as a conninfo string) or as a bound parameter value.

  static       a scan of the C sources: every libpq call that sends SQL, every Parse/Query
               message pgstash builds itself, every hiredis format string, every libpq
               connection-parameter call — each must be a compile-time constant (a string
               literal, a `static const char NAME[] = "..."`, or a parameter of a static
               function whose every caller passes one of those), and no printf-style call
               builds anything that looks like SQL.
  behavioural  a database named `x'; DROP TABLE sentinel; --`, another literally named
               `dbname=postgres host=…` (it would redirect pgstash's catalog connection if the
               name were expanded as a conninfo string), and a role named with quotes and a
               semicolon, used through pgstash — cached reads (which need the catalog of that
               database), writes, custom settings with hostile names and values, a quoted
               schema and table — on a cluster with log_statement = all: nothing is dropped,
               the cache works in those databases, and every statement pgstash itself ran
               (catalog connection, session probe) is, byte for byte, one of its constants.
"""

import re

import pytest

from fault_helpers import wait_idle
from helpers import raw, unique
from pgstash_harness import REPO_ROOT, wait_until

SRC_DIRS = ("proxy",)
SQL_CALLS = {          # libpq function -> index of its SQL-text argument
    "PQexec": 1, "PQexecParams": 1, "PQsendQuery": 1, "PQsendQueryParams": 1,
    "PQprepare": 2, "PQsendPrepare": 2,
}
CONNINFO_CALLS = {"PQconnectdbParams": 2, "PQconnectStartParams": 2, "PQpingParams": 2}
FORBIDDEN_CALLS = ("PQconnectdb", "PQconnectStart", "PQping", "PQsetdbLogin", "PQsetdb")
REDIS_FMT_CALLS = {"redisCommand": 1, "redisAsyncCommand": 3, "redisAppendCommand": 1}


# --- a small C reader ---------------------------------------------------------------------------

def strip_comments(src):
    """Removes /* */ and // comments, keeping string and char literals intact."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while j < n and src[j] != c:
                j += 2 if src[j] == "\\" else 1
            out.append(src[i:j + 1])
            i = j + 1
        elif src.startswith("/*", i):
            j = src.index("*/", i + 2)
            out.append(" " * 0 + "\n" * src.count("\n", i, j + 2))
            i = j + 2
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def split_args(src, open_paren):
    """The top-level arguments of the call whose '(' is at open_paren; (args, end index)."""
    depth, i, start, args = 0, open_paren, open_paren + 1, []
    while True:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(src[start:i].strip())
                return args, i
        elif c == "," and depth == 1:
            args.append(src[start:i].strip())
            start = i + 1
        i += 1


def calls(src, name):
    """(args, offset) of every call of `name` in src."""
    for m in re.finditer(r"(?<![\w.>])%s\s*\(" % re.escape(name), src):
        args, _ = split_args(src, m.end() - 1)
        yield args, m.start()


STRING_LIT = re.compile(r'^(\s*"(?:[^"\\]|\\.)*"\s*)+$', re.S)


def c_unescape(lits):
    """The value of adjacent C string literals."""
    out = []
    for body in re.findall(r'"((?:[^"\\]|\\.)*)"', lits, re.S):
        out.append(re.sub(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", _esc, body))
    return "".join(out)


def _esc(m):
    e = m.group(1)
    if e[0] == "x":
        return chr(int(e[1:], 16))
    if e[0].isdigit():
        return chr(int(e, 8))
    return {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(e, e)


def const_strings(src):
    """NAME -> value of every `static const char NAME[] = "...";` (also without static)."""
    out = {}
    for m in re.finditer(r'(?:static\s+)?const\s+char\s+(\w+)\s*\[\s*\]\s*=\s*((?:\s*"(?:[^"\\]'
                         r'|\\.)*")+)\s*;', src, re.S):
        out[m.group(1)] = c_unescape(m.group(2))
    return out


def enclosing_function(src, offset):
    """(name, [parameter names]) of the function definition containing offset."""
    best = None
    for m in re.finditer(r"\n(?:static\s+)?[\w\s\*]+?\b(\w+)\s*\(([^;{)]*)\)\s*\{", src):
        if m.start() < offset:
            best = m
        else:
            break
    if not best:
        return None, []
    params = [re.sub(r".*?(\w+)\s*(\[\s*\])?$", r"\1", p.strip()) for p in best.group(2).split(",")]
    return best.group(1), params


def is_declaration(src, off):
    """True if the name at `off` is being declared or defined (a type precedes it), not
    called: `static PGresult *run(` vs `return run(` or `x = run(`."""
    before = src[max(0, off - 200):off].rstrip(" \t*")
    m = re.search(r"(\w+)$", before)
    return bool(m) and m.group(1) not in ("return", "else", "case", "sizeof")


class Sources:
    def __init__(self):
        self.files = {}
        for d in SRC_DIRS:
            for p in sorted((REPO_ROOT / d).glob("*.c")):
                self.files[p.relative_to(REPO_ROOT).as_posix()] = strip_comments(p.read_text())
        self.consts = {}
        for path, src in self.files.items():
            for k, v in const_strings(src).items():
                self.consts[(path, k)] = v

    def resolve(self, path, expr, offset, depth=0):
        """The constant string values `expr` (an argument at offset in path) can have, or
        raises AssertionError explaining why it is not a compile-time constant."""
        expr = expr.strip()
        where = "%s:%d" % (path, self.files[path].count("\n", 0, offset) + 1)
        if STRING_LIT.match(expr):
            return [c_unescape(expr)]
        assert re.fullmatch(r"\w+", expr), "%s: SQL argument `%s` is an expression, not a " \
                                           "constant" % (where, expr)
        if (path, expr) in self.consts:
            return [self.consts[(path, expr)]]
        assert depth < 4, "%s: `%s` passed through too many functions" % (where, expr)
        fn, params = enclosing_function(self.files[path], offset)
        assert fn and expr in params, ("%s: `%s` is neither a string constant nor a parameter "
                                       "of the enclosing function" % (where, expr))
        idx = params.index(expr)
        src = self.files[path]
        assert re.search(r"\bstatic\b[^;{]*\b%s\s*\(" % fn, src), \
            "%s: %s() takes the SQL as a parameter and is not static: callers elsewhere " \
            "could pass anything" % (where, fn)
        values, n = [], 0
        for args, off in calls(src, fn):
            if is_declaration(src, off):
                continue     # the definition itself, or a prototype
            n += 1
            values += self.resolve(path, args[idx], off, depth + 1)
        assert n, "%s: %s() is never called" % (where, fn)
        return values


@pytest.fixture(scope="module")
def sources():
    return Sources()


def test_libpq_sql_is_constant(sources):
    found = []
    for path, src in sources.files.items():
        for fn, idx in SQL_CALLS.items():
            for args, off in calls(src, fn):
                for v in sources.resolve(path, args[idx], off):
                    found.append((path, fn, v))
    assert found, "no libpq call sending SQL found: the scan is broken"
    for path, fn, sql in found:
        assert re.match(r"\s*(SELECT|WITH|SHOW)\b", sql), (path, fn, sql[:80])
        assert "%" not in sql, "%s: SQL constant with a format specifier: %r" % (path, sql[:80])
    # The catalog's queries are among them.
    assert any("pg_catalog.pg_class" in sql for _, _, sql in found), found


def test_libpq_connections_never_expand_names(sources):
    """pgstash's own libpq connections take the client's database name as a keyword value
    with expand_dbname = 0: a database named `host=evil dbname=x` or a URI is a name, never a
    connection string."""
    n = 0
    for path, src in sources.files.items():
        for fn in FORBIDDEN_CALLS:
            assert not list(calls(src, fn)), "%s uses %s (a conninfo string)" % (path, fn)
        for fn, idx in CONNINFO_CALLS.items():
            for args, off in calls(src, fn):
                n += 1
                assert args[idx] == "0", "%s: %s(..., expand_dbname=%s)" % (path, fn, args[idx])
    assert n >= 1


def test_protocol_messages_pgstash_builds_carry_constant_sql(sources):
    """The Parse/Query messages pgstash writes itself (the session probe) carry a constant
    statement; client input goes in Bind as a parameter value."""
    found = []
    for path, src in sources.files.items():
        for m in re.finditer(r"bw_msg_begin\s*\(\s*&?\s*(\w+)\s*,\s*'([PQ])'\s*\)", src):
            var, kind = m.group(1), m.group(2)
            body = src[m.end():m.end() + 600]
            writes = re.findall(r"bw_(cstr|put|cstr_raw)\s*\(\s*&?\s*%s\s*,\s*([^;]+?)\)\s*;"
                                % re.escape(var), body)
            assert writes, "%s: a '%s' message without its text" % (path, kind)
            # Parse: statement name, then the text; Query: the text.
            text_arg = writes[0][1]
            if kind == "P":
                names = [w for w in re.findall(r"bw_u8\s*\(\s*&?\s*%s\s*,\s*0\s*\)" % var, body)]
                assert names, "%s: Parse without an unnamed statement name" % path
            vals = sources.resolve(path, text_arg, m.start())
            found += [(path, kind, v) for v in vals]
    assert any(k == "P" and "pg_settings" in v for _, k, v in found), \
        "the session probe's Parse was not found: %r" % [(p, k, v[:40]) for p, k, v in found]
    for path, kind, sql in found:
        assert re.match(r"\s*SELECT\b", sql), (path, kind, sql[:80])


def test_redis_commands_are_not_formatted_from_input(sources):
    """Redis commands are sent as argument vectors; the few hiredis printf-style calls use a
    literal format whose %s/%b each become one whole argument (never spliced into a command)."""
    for path, src in sources.files.items():
        for fn, idx in REDIS_FMT_CALLS.items():
            for args, off in calls(src, fn):
                assert STRING_LIT.match(args[idx]), "%s: %s with a non-literal format %s" % (
                    path, fn, args[idx])
                fmt = c_unescape(args[idx])
                for spec in re.findall(r"%.", fmt):
                    assert spec in ("%s", "%b", "%d"), (path, fmt)
                # Each specifier is a whole word (an argument of its own).
                assert not re.search(r"\S%[sb]|%[sb]\S", fmt.replace("%b %b", "%b_%b")
                                     .replace("_", " ")), (path, fmt)


def test_no_printf_builds_sql(sources):
    sqlish = re.compile(r"\b(SELECT|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|SET\s+\w+\s*(=|TO)"
                        r"|SET\s+ROLE|RESET|DISCARD|LISTEN|NOTIFY|PREPARE|EXECUTE|DEALLOCATE)\b")
    for path, src in sources.files.items():
        for fn in ("snprintf", "sprintf", "asprintf", "vsnprintf", "bw_printf"):
            fmt_idx = {"snprintf": 2, "sprintf": 1, "asprintf": 1, "vsnprintf": 2,
                       "bw_printf": 1}[fn]
            for args, off in calls(src, fn):
                if len(args) > fmt_idx and STRING_LIT.match(args[fmt_idx]):
                    fmt = c_unescape(args[fmt_idx])
                    if "%" in fmt:
                        assert not sqlish.search(fmt), "%s:%d: %s builds SQL-like text %r" % (
                            path, src.count("\n", 0, off) + 1, fn, fmt)


# --- behaviour ------------------------------------------------------------------------------------

EVIL = "x'; DROP TABLE sentinel; --"
EVIL_ROLE = "u'\"; DROP TABLE sentinel; --"
CONNINFO_DB = "dbname=postgres host=203.0.113.1"


def wire_session(px, user, db):
    c = raw(px, timeout=15)
    c.startup(user, db, timeout=15)
    return c


def rows(c, sql, error=None):
    msgs = c.simple_query(sql, timeout=15)
    errs = [m for m in msgs if m.type == "E"]
    if error:
        assert errs and errs[0].sqlstate == error, (sql, msgs)
        return None
    assert not errs, "%s: %s %s" % (sql, errs[0].sqlstate, errs[0].message)
    return [[None if v is None else v.decode() for v in m.data_row] for m in msgs if m.type == "D"]


def lit(s):
    return "'" + s.replace("'", "''") + "'"


def ident(s):
    return '"' + s.replace('"', '""') + '"'


@pytest.mark.proxy_only
@pytest.mark.timeout(120)
def test_hostile_names_never_become_sql(pg_factory, pgstash_factory, redis):
    conf = {"log_statement": "'all'", "log_line_prefix": "'%m [%p] app=[%a] '"}
    own = pg_factory(conf=conf)
    su = own.superuser
    sentinel = "CREATE TABLE sentinel (v text); INSERT INTO sentinel VALUES ('still here')"
    own.sql(sentinel)
    for db in (EVIL, CONNINFO_DB):
        own.sql("CREATE DATABASE %s" % ident(db), dbname="postgres")
        own.sql(sentinel, dbname=db)
        own.sql("CREATE TABLE items (id int PRIMARY KEY, v text)", dbname=db)
        own.sql("INSERT INTO items VALUES (1, %s)" % lit("in " + db), dbname=db)
        own.sql('CREATE SCHEMA %s' % ident(EVIL), dbname=db)
        own.sql('CREATE TABLE %s.%s (v text)' % (ident(EVIL), ident(EVIL)), dbname=db)
        own.sql("INSERT INTO %s.%s VALUES ('quoted')" % (ident(EVIL), ident(EVIL)), dbname=db)
    own.sql("CREATE ROLE %s LOGIN SUPERUSER" % ident(EVIL_ROLE), dbname="postgres")
    px = pgstash_factory({"cache": {"key_prefix": unique("sqli")}, "log": {"level": "info"}},
                         pg=own)
    before = px.stats()

    for db in (EVIL, CONNINFO_DB):
        for user in (su, EVIL_ROLE):
            c = wire_session(px, user, db)
            try:
                assert rows(c, "SELECT current_database(), current_user") == [[db, user]]
                for _ in range(3):
                    assert rows(c, "SELECT v FROM items WHERE id = 1") == [["in " + db]]
                # Hostile custom setting names and values (read back by the session probe).
                rows(c, "SET app.tenant = %s" % lit(EVIL))
                rows(c, "SELECT set_config('app.other', %s, false)" % lit(EVIL + "'\\"))
                # (PostgreSQL refuses the name; pgstash may still remember it for its probe.)
                rows(c, "SET %s = 'v'" % ident("app.x'; DROP TABLE sentinel; --"), "42602")
                assert rows(c, "SELECT v FROM items WHERE id = 1") == [["in " + db]]
                rows(c, "SET search_path = %s, public" % ident(EVIL))
                for _ in range(2):
                    assert rows(c, "SELECT v FROM %s" % ident(EVIL)) == [["quoted"]]
                rows(c, "UPDATE %s SET v = 'quoted'" % ident(EVIL))
                assert rows(c, "SELECT v FROM %s" % ident(EVIL)) == [["quoted"]]
                rows(c, "LISTEN %s" % ident(EVIL))
                c.terminate()
            finally:
                c.close()
    wait_idle(px)
    after = px.stats()
    assert after["hits"] - before["hits"] >= 8, (
        "no hits in the oddly named databases: pgstash could not read their catalog? %s"
        % {k: after[k] - before.get(k, 0) for k in ("hits", "misses", "bypass_total")})

    # Nothing was dropped anywhere.
    for db in ("test", EVIL, CONNINFO_DB):
        assert own.sql("SELECT v FROM sentinel", dbname=db) == [("still here",)], db

    # Every statement pgstash ran by itself is one of its constants, byte for byte.
    src = Sources()
    catalog_sql = {v for (p, k), v in src.consts.items() if p.endswith("catalog.c")}
    probe_sql = {v for (p, k), v in src.consts.items() if "pg_settings" in v}
    assert catalog_sql and probe_sql
    wait_until(lambda: "pgstash-catalog" in own.log_text(), timeout=10)
    log = own.log_text()
    stmts = re.findall(r"app=\[(.*?)\] LOG:  (?:statement|execute [^:]*): (.*)", log)
    cat = [s for app, s in stmts if app == "pgstash-catalog"]
    assert cat, "no catalog statement in PostgreSQL's log: bad test"
    for s in cat:
        assert s in catalog_sql, "pgstash's catalog connection ran a statement that is not " \
                                 "one of its constants: %r" % s[:200]
    probes = [s for _, s in stmts if "pg_catalog.pg_settings" in s]
    assert probes, "no session probe in PostgreSQL's log: bad test"
    for s in probes:
        assert s in probe_sql, "a session probe whose text is not the constant: %r" % s[:300]
    # The catalog was read for each oddly named database, under its real name.
    dbs = set(re.findall(r"connection authorized: user=\S+ database=(.*?) application_name="
                         r"pgstash-catalog", log))
    assert EVIL in dbs and CONNINFO_DB in dbs, dbs


def test_scanner_catches_sql_built_from_input():
    """Negative control of the static checks: they do fail on code that builds SQL."""
    fake = Sources.__new__(Sources)
    fake.files = {"fake.c": strip_comments(r'''
static const char SQL_OK[] = "SELECT 1";
static PGresult *run(PGconn *conn, const char *sql) { return PQexec(conn, sql); }
static void good(PGconn *conn) { run(conn, SQL_OK); }
static void bad(PGconn *conn, const char *db) {
    char q[256];
    snprintf(q, sizeof q, "SELECT * FROM pg_database WHERE datname = '%s'", db);
    run(conn, q);
    PQexec(conn, q);
}
''')}
    fake.consts = {("fake.c", k): v for k, v in const_strings(fake.files["fake.c"]).items()}
    src = fake.files["fake.c"]
    (args, off), = [x for x in calls(src, "PQexec") if x[0][1] == "q"]
    with pytest.raises(AssertionError):
        fake.resolve("fake.c", args[1], off)
    (args, off), = [x for x in calls(src, "PQexec") if x[0][1] == "sql"]
    with pytest.raises(AssertionError):
        fake.resolve("fake.c", args[1], off)      # one caller passes a built string
    (fmt_args, _), = list(calls(src, "snprintf"))
    assert re.search(r"\bSELECT\b", c_unescape(fmt_args[2]))
