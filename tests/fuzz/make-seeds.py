#!/usr/bin/env python3
"""Regenerates the seed corpora under tests/fuzz/corpus/<target>/ from the project's own data.

    tests/fuzz/make-seeds.py          (from anywhere; writes into tests/fuzz/corpus)

Sources: the captured PostgreSQL streams tests/unit/data/*.frontend|*.backend (split into
sessions, units and answers), the statements of tests/unit/test_sqlparse.c, the YAML of
pgstash.example.yaml and tests/unit/test_config.c, and hand-written protocol conversations.
Seed file names are content hashes, as libFuzzer names its own, so regenerating is idempotent.
The input layouts are described at the top of each tests/fuzz/fuzz_<target>.c.
"""
import hashlib
import os
import re
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
SEP = b"|NEXT|"


def write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- protocol helpers -------------------------------------------------------------------------

def msg(t, body=b""):
    return t + struct.pack(">I", len(body) + 4) + body


def cstr(s):
    return (s.encode() if isinstance(s, str) else s) + b"\0"


def startup(user="fuzz", database="fuzzdb", extra=()):
    body = struct.pack(">I", 196608)
    for k, v in (("user", user), ("database", database)) + tuple(extra):
        body += cstr(k) + cstr(v)
    body += b"\0"
    return struct.pack(">I", len(body) + 4) + body


SSL = struct.pack(">II", 8, 80877103)
GSS = struct.pack(">II", 8, 80877104)
CANCEL = struct.pack(">IIII", 16, 80877102, 12345, 0x12345678)


def Q(sql):
    return msg(b"Q", cstr(sql))


def P(name, sql, types=()):
    return msg(b"P", cstr(name) + cstr(sql) + struct.pack(">H", len(types)) +
               b"".join(struct.pack(">I", t) for t in types))


def B(portal, stmt, params=(), fmts=(), rfmts=()):
    body = cstr(portal) + cstr(stmt) + struct.pack(">H", len(fmts))
    body += b"".join(struct.pack(">h", f) for f in fmts)
    body += struct.pack(">H", len(params))
    for p in params:
        if p is None:
            body += struct.pack(">i", -1)
        else:
            p = p.encode() if isinstance(p, str) else p
            body += struct.pack(">i", len(p)) + p
    body += struct.pack(">H", len(rfmts)) + b"".join(struct.pack(">h", f) for f in rfmts)
    return msg(b"B", body)


def D(kind, name=""):
    return msg(b"D", kind.encode() + cstr(name))


def E(portal="", rows=0):
    return msg(b"E", cstr(portal) + struct.pack(">I", rows))


def C(kind, name=""):
    return msg(b"C", kind.encode() + cstr(name))


S_ = msg(b"S")
H_ = msg(b"H")
X_ = msg(b"X")


def unit(sql, params=(), name="", describe=True):
    out = P(name, sql) + B("", name, params)
    if describe:
        out += D("P")
    return out + E() + S_


def frames(data, start=0):
    """Splits a typed message stream into whole messages."""
    out, i = [], start
    while i + 5 <= len(data):
        n = struct.unpack(">I", data[i + 1:i + 5])[0]
        out.append(data[i:i + 1 + n])
        i += 1 + n
    return out


def startup_len(data):
    return struct.unpack(">I", data[:4])[0]


def read(path):
    with open(os.path.join(ROOT, path), "rb") as f:
        return f.read()


# --- fuzz_frontend ----------------------------------------------------------------------------
# byte 0 flags (0-1 delivery, 2 redis, 3 harness startup, 4-6 auth, 7 eof), byte 1 seed.

def frontend():
    def seed(flags, data, s=0):
        write("frontend", bytes([flags, s]) + data)

    for name in ("psql", "ext"):
        stream = read("tests/unit/data/%s.frontend" % name)
        for flags in (0x00, 0x04, 0x01, 0x06, 0x82):
            seed(flags, stream, 7)
        # Per unit, behind the harness's own StartupMessage (flag bit 3).
        msgs = frames(stream, startup_len(stream))
        cur = b""
        for m in msgs:
            cur += m
            if m[:1] in (b"Q", b"S", b"X"):
                seed(0x0c, cur)
                seed(0x08, cur)
                cur = b""
    # First packets.
    seed(0x00, SSL + startup())
    seed(0x00, GSS + SSL + startup() + Q("select 1"))
    seed(0x00, CANCEL)
    seed(0x00, startup(database="pgstash"))
    write("frontend", bytes([0x08, 0x80]) + Q("SELECT 1"))   # upstream unreachable
    write("frontend", bytes([0x00, 0x80]) + CANCEL)
    seed(0x00, startup(extra=(("replication", "database"),)) + Q("IDENTIFY_SYSTEM"))
    seed(0x00, struct.pack(">II", 8, 0x00020000))
    seed(0x00, struct.pack(">II", 4, 0))
    seed(0x01, startup() + Q("select 1") + X_)
    # Authentication relay: cleartext, md5, SASL, refused.
    seed(0x18, msg(b"p", cstr("secret")) + Q("select 1") + X_)
    seed(0x28, msg(b"p", cstr("md5" + "0" * 32)) + Q("select 1") + X_)
    sasl1 = msg(b"p", cstr("SCRAM-SHA-256") + struct.pack(">i", 20) + b"n,,n=,r=abcdefghijkl")
    sasl2 = msg(b"p", b"c=biws,r=abcdefserver,p=cHJvb2Y=")
    seed(0x38, sasl1 + sasl2 + Q("select 1") + X_)
    seed(0x48, msg(b"p", cstr("wrong")))
    seed(0x08, msg(b"Q", b"no terminator"))
    # Cache paths with a Redis: miss, fill, hit, invalidation, transactions.
    hits = Q("SELECT 1") + Q("SELECT 1") + Q("values (1,2)") + Q("values (1,2)")
    seed(0x0c, hits + X_)
    seed(0x0d, hits + X_)
    seed(0x0c, Q("BEGIN") + Q("SELECT 1") + Q("SELECT 1") + Q("INSERT INTO t VALUES (1)") +
         Q("SELECT 1") + Q("COMMIT") + Q("SELECT 1"))
    seed(0x0c, Q("BEGIN") + Q("select 1/0") + Q("SELECT 1") + Q("ROLLBACK") + Q("SELECT 1"))
    # The staleness check: every SELECT returns the count of committed writes ("v=N").
    seed(0x0c, Q("SELECT 1") + Q("INSERT INTO t VALUES (1)") + Q("SELECT 1") + Q("BEGIN") +
         Q("SELECT 1") + Q("UPDATE t SET x = 2") + Q("COMMIT") + Q("SELECT 1") + X_)
    seed(0x0c, Q("SELECT 1") + Q("BEGIN") + Q("DELETE FROM t") + Q("SELECT 1") + Q("ROLLBACK") +
         Q("SELECT 1") + Q("SELECT 1") + X_)
    seed(0x0c, unit("SELECT 1") + P("", "INSERT INTO t VALUES ($1)") + B("", "", ["1"]) + E() +
         S_ + unit("SELECT 1") + Q("COPY t FROM STDIN") + msg(b"d", b"1\n") + msg(b"c") +
         unit("SELECT 1") + X_)
    seed(0x0c, P("", "BEGIN") + B("", "") + E() + P("", "INSERT INTO t VALUES (1)") + B("", "") +
         E() + P("", "SELECT 1") + B("", "") + E() + S_ + Q("ROLLBACK") + unit("SELECT 1"))
    # Open units (Flush): a COMMIT's confirmation must wait for its invalidation.
    seed(0x0c, Q("SELECT 1") + P("", "BEGIN") + B("", "") + E() + H_ +
         P("", "INSERT INTO t VALUES (1)") + B("", "") + E() + H_ + P("", "COMMIT") + B("", "") +
         E() + H_ + S_ + Q("SELECT 1") + X_)
    seed(0x0d, unit("SELECT 1") + P("", "UPDATE t SET x = 1") + B("", "") + E() + H_ + S_ +
         unit("SELECT 1") + Q("BEGIN") + P("", "DELETE FROM t") + B("", "") + E() + H_ +
         Q("COMMIT") + unit("SELECT 1") + X_)
    seed(0x0c, Q("SET application_name = 'x'") + Q("SELECT 1") + Q("SET app.tenant = '7'") +
         Q("SELECT 1") + Q("DISCARD ALL") + Q("SELECT 1"))
    seed(0x0c, Q("BEGIN ISOLATION LEVEL REPEATABLE READ") + Q("SELECT 1") + Q("COMMIT"))
    seed(0x0c, Q("SELECT 1; SELECT 2") + Q("") + Q("  ") + Q("select now()"))
    seed(0x0c, Q("PREPARE p AS SELECT 1") + Q("EXECUTE p") + Q("EXECUTE p") +
         Q("DEALLOCATE p") + Q("DEALLOCATE ALL"))
    seed(0x0c, Q("CREATE TEMP TABLE tt(x int)") + Q("SELECT * FROM tt") + Q("DISCARD TEMP"))
    seed(0x0c, Q("do $$ begin raise notice 'x'; end $$") + Q("notify ch, 'p'") +
         Q("DROP TABLE t") + Q("GRANT SELECT ON t TO u"))
    ext = unit("SELECT $1::int", ["7"]) + unit("SELECT $1::int", ["7"])
    seed(0x0c, ext + X_)
    seed(0x0e, ext + X_, 3)
    seed(0x0c, P("s1", "SELECT $1::int + 1") + S_ + B("", "s1", ["1"]) + E() + S_ +
         B("", "s1", ["1"]) + E() + S_ + C("S", "s1") + S_ + B("", "s1", ["1"]) + E() + S_)
    seed(0x0c, P("s1", "SELECT 1") + B("", "s1") + E() + S_ + P("s1", "SELECT 2") + S_)
    # A named statement answered from cache (never parsed by the server), then used by SQL
    # EXECUTE / DEALLOCATE and by a unit that must go to the server: lazy Parse injection.
    cached = unit("SELECT 1", describe=False) + P("s1", "SELECT 1") + B("", "s1") + E() + S_
    seed(0x0c, cached + Q("EXECUTE s1") + Q("DEALLOCATE s1") + X_)
    seed(0x0c, cached + Q("INSERT INTO t VALUES (1)") + B("", "s1") + E() + S_ + C("S", "s1") +
         S_ + X_)
    seed(0x0c, cached + C("S", "s1") + S_ + P("s1", "SELECT 2") + B("", "s1") + E() + S_ + X_)
    seed(0x0c, cached + Q("DISCARD ALL") + B("", "s1") + E() + S_ + X_)
    seed(0x0c, P("s2", "SELECT $1::text", [25]) + D("S", "s2") + S_ +
         B("", "s2", ["now"]) + E() + S_ + B("", "s2", ["abc"], [1], [1]) + E("", 5) + S_)
    seed(0x0c, P("", "SELECT 1") + B("p1", "") + E("p1") + E("p1") + C("P", "p1") + S_)
    seed(0x0c, P("", "SELECT 1") + B("", "") + H_ + E() + H_ + S_)
    seed(0x0c, P("", "INSERT INTO t VALUES ($1)") + B("", "", ["1"]) + E() + S_ +
         unit("SELECT 1"))
    seed(0x0c, P("", "select 1/0") + B("", "") + E() + S_ + unit("SELECT 1"))
    seed(0x0c, Q("COPY t FROM STDIN") + msg(b"d", b"1\n2\n") + msg(b"c") + Q("SELECT 1"))
    seed(0x0c, Q("COPY t FROM STDIN") + msg(b"d", b"1\n") + msg(b"f", cstr("nope")) +
         Q("SELECT 1"))
    seed(0x0c, Q("COPY t TO STDOUT") + Q("SELECT 1"))
    seed(0x0c, P("", "COPY t FROM STDIN") + B("", "") + E() + S_ + msg(b"d", b"1\n") +
         msg(b"c") + S_ + unit("SELECT 1"))
    seed(0x0c, msg(b"d", b"x" * 20000) + Q("SELECT 1"))
    seed(0x0c, msg(b"F", struct.pack(">IH", 1598, 0) + struct.pack(">HH", 0, 0)) + Q("SELECT 1"))
    seed(0x0c, msg(b"?", b"x") + Q("SELECT 1"))
    seed(0x0c, b"Q\xff\xff\xff\xff")
    seed(0x0c, b"Q\x00\x00\x00\x03")
    seed(0x8c, Q("SELECT 1") + b"Q\x00\x00\x00\x40SEL")
    # The admin console, logged in by the harness (mode bit 6).
    def admin(flags, data):
        write("frontend", bytes([flags, 0x40]) + data)
    admin(0x04, Q("SHOW STATS") + Q("SHOW TABLES") + Q("SHOW QUERIES") + Q("SHOW CLIENTS") +
          Q("SHOW CONFIG") + Q("SHOW VERSION") + X_)
    admin(0x04, Q("SELECT 1") + Q("SELECT 1") + Q("EXPLAIN CACHE SELECT * FROM t") +
          Q("EXPLAIN CACHE IN DATABASE fuzzdb SELECT now()") + Q("explain cache") + Q("show"))
    admin(0x04, Q("FLUSH ALL") + Q("FLUSH TABLE orders") + Q("FLUSH") + Q("RELOAD;") + Q("  ;"))
    admin(0x00, Q("FLUSH ALL") + Q("SHOW STATS"))
    admin(0x05, P("", "SHOW STATS") + B("", "") + D("P") + E() + S_ + P("a", "SHOW VERSION") +
          D("S", "a") + B("", "a") + E() + C("S", "a") + S_ + P("", "nonsense") + B("", "") +
          E() + S_ + H_ + msg(b"F", b"\0\0\0\0") + X_)


# --- fuzz_backend -----------------------------------------------------------------------------
# byte 0 flags (0-1 answer delivery, 2 fuzzed probe, 3 no redis, 4 client chunks, 5 eof),
# byte 1 mode, then answers separated by |NEXT|. Units: Q select, ext select, Q select and
# ext select (hits when the first two were stored), Q insert, Q select.

def bmsg_rowdesc(cols=(("?column?", 23),)):
    body = struct.pack(">H", len(cols))
    for name, oid in cols:
        body += cstr(name) + struct.pack(">IhIhih", 0, 0, oid, 4, -1, 0)
    return msg(b"T", body)


def bmsg_row(*vals):
    body = struct.pack(">H", len(vals))
    for v in vals:
        if v is None:
            body += struct.pack(">i", -1)
        else:
            v = v.encode() if isinstance(v, str) else v
            body += struct.pack(">i", len(v)) + v
    return msg(b"D", body)


def tag(t):
    return msg(b"C", cstr(t))


def ready(s="I"):
    return msg(b"Z", s.encode())


def err(code="22012", text="division by zero", sev="ERROR"):
    return msg(b"E", b"S" + cstr(sev) + b"C" + cstr(code) + b"M" + cstr(text) + b"\0")


def notice(text="hi"):
    return msg(b"N", b"S" + cstr("NOTICE") + b"C" + cstr("00000") + b"M" + cstr(text) + b"\0")


def backend():
    def seed(flags, answers, s=0):
        write("backend", bytes([flags, s]) + SEP.join(answers))

    q_sel = bmsg_rowdesc() + bmsg_row("1") + tag("SELECT 1") + ready()
    e_sel = msg(b"1") + msg(b"2") + bmsg_rowdesc() + bmsg_row("7") + tag("SELECT 1") + ready()
    ins = tag("INSERT 0 1") + ready()
    normal = [q_sel, e_sel, ins, q_sel]
    for flags in (0x00, 0x01, 0x02, 0x08, 0x10, 0x21):
        seed(flags, normal, 5)
    probe = msg(b"1") + msg(b"2") + bmsg_row("TimeZone", "UTC") + bmsg_row("role", "a/a") + \
        tag("SELECT 2") + ready()
    seed(0x04, [probe] + normal)
    seed(0x40, normal, 3)             # entries damaged in Redis, then hit
    seed(0x41, normal, 17)
    seed(0x80, normal)                # the upstream hangs up after its last answer
    seed(0x80, [q_sel, e_sel[:20]])
    auth_ok = msg(b"R", struct.pack(">I", 0)) + msg(b"S", cstr("server_version") + cstr("15")) + \
        msg(b"K", struct.pack(">II", 1, 2)) + ready()
    seed(0x00, [auth_ok] + normal, 0x40)   # the start-up answer is the input's too
    seed(0x00, [msg(b"R", struct.pack(">I", 3)), q_sel], 0x40)
    seed(0x00, [err("28P01", "password authentication failed", "FATAL")], 0x40)
    seed(0x00, [b"R\x00\x00\x00\x02"], 0x40)
    seed(0x00, [err() + ready(), msg(b"1") + msg(b"2") + err() + ready(), ins])
    seed(0x00, [notice() + q_sel, msg(b"1") + msg(b"2") + msg(b"n") + tag("SELECT 0") + ready()])
    seed(0x00, [msg(b"S", cstr("TimeZone") + cstr("UTC")) + q_sel, e_sel])
    seed(0x00, [msg(b"G", b"\0\0\0") + tag("COPY 0") + ready(), e_sel])
    seed(0x00, [msg(b"H", b"\0\0\0") + msg(b"d", b"1\n") + msg(b"c") + tag("COPY 1") + ready()])
    seed(0x00, [msg(b"I") + ready(), e_sel, tag("BEGIN") + ready("T"), q_sel])
    seed(0x00, [bmsg_rowdesc() + bmsg_row("1") + tag("SELECT 1") + bmsg_rowdesc() +
                bmsg_row("2") + tag("SELECT 1") + ready(), e_sel])
    seed(0x00, [bmsg_rowdesc() + bmsg_row("x" * 3000) + bmsg_row("y" * 3000) + tag("SELECT 2") +
                ready(), e_sel])
    seed(0x00, [bmsg_rowdesc() + bmsg_row(b"z" * 20000) + tag("SELECT 1") + ready(), e_sel])
    seed(0x00, [msg(b"A", struct.pack(">I", 1) + cstr("ch") + cstr("p")) + q_sel, e_sel])
    seed(0x00, [q_sel + ready(), e_sel + e_sel])
    seed(0x00, [b"garbage", b"Z\x00\x00\x00\x03"])
    seed(0x00, [err("57P01", "terminating connection", "FATAL")])
    # Answers cut from the captured sessions: everything after the first ReadyForQuery,
    # one answer per ReadyForQuery.
    for name in ("psql", "ext"):
        ms = frames(read("tests/unit/data/%s.backend" % name))
        first_z = next(i for i, m in enumerate(ms) if m[:1] == b"Z")
        answers, cur = [], b""
        for m in ms[first_z + 1:]:
            cur += m
            if m[:1] == b"Z":
                answers.append(cur)
                cur = b""
        answers = [a for a in answers if len(a) <= 24000]  # big rows: one hand-made seed
        for k in range(0, len(answers), 5):
            seed(0x00, answers[k:k + 5])
            seed(0x03, answers[k:k + 5], k)


# --- fuzz_entry -------------------------------------------------------------------------------

def entry():
    def blob(desc, body, has_desc=True):
        return b"PGS1" + bytes([1 if has_desc else 0, 0, 0, 0]) + (desc if has_desc else b"") + body

    for name in ("psql", "ext"):
        ms = frames(read("tests/unit/data/%s.backend" % name))
        desc, rows = None, []
        for m in ms:
            t = m[:1]
            if t == b"T":
                desc, rows = m, []
            elif t == b"D":
                rows.append(m)
            elif t == b"C" and desc is not None:
                body = b"".join(r for r in rows[:20] if len(r) < 2000) + m
                write("entry", blob(desc, body))
                write("entry", blob(desc, body, False))
                desc = None
    write("entry", blob(msg(b"n"), tag("SELECT 0")))
    write("entry", blob(b"", msg(b"I"), False))
    e1 = blob(bmsg_rowdesc(), bmsg_row("1") + tag("SELECT 1"))
    e2 = blob(bmsg_rowdesc(), bmsg_row(None, "") + bmsg_row("2") + tag("SELECT 2"))
    write("entry", e1 + SEP + e2 + SEP + e1)
    write("entry", b"PGS1\x02\0\0\0" + tag("SELECT 0"))
    write("entry", blob(bmsg_rowdesc(), bmsg_row("1") + tag("SELECT 1") + bmsg_row("x")))


# --- fuzz_sqlparse ----------------------------------------------------------------------------

def c_strings(text):
    """Decodes a sequence of adjacent C string literals."""
    out = b""
    for lit in re.findall(r'"((?:[^"\\]|\\.)*)"', text):
        i = 0
        raw = lit.encode("utf-8")
        while i < len(raw):
            ch = raw[i:i + 1]
            if ch != b"\\":
                out += ch
                i += 1
                continue
            nxt = raw[i + 1:i + 2]
            simple = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"\\": b"\\", b'"': b'"',
                      b"'": b"'", b"0": b"\0", b"a": b"\a", b"b": b"\b", b"f": b"\f",
                      b"v": b"\v", b"?": b"?"}
            if nxt == b"x":
                m = re.match(rb"[0-9a-fA-F]+", raw[i + 2:])
                out += bytes([int(m.group(0), 16) & 0xff])
                i += 2 + len(m.group(0))
            elif nxt in b"01234567" and nxt:
                m = re.match(rb"[0-7]{1,3}", raw[i + 1:])
                out += bytes([int(m.group(0), 8) & 0xff])
                i += 1 + len(m.group(0))
            else:
                out += simple.get(nxt, nxt)
                i += 2
    return out


LITERAL = r'("(?:[^"\\]|\\.)*"(?:\s*"(?:[^"\\]|\\.)*")*)'


def sqlparse():
    src = read("tests/unit/test_sqlparse.c").decode()
    for m in re.finditer(r"\b(?:C|CF|CT|CN)\(\s*" + LITERAL, src):
        write("sqlparse", c_strings(m.group(1)))
    for sql in ("SELECT 1", "SELECT * FROM t WHERE id = 42 AND name = 'bob'",
                "SELECT * FROM t WHERE d > 'now'", "SELECT set_config('app.t1', '5', false)",
                "SELECT $1::int + 2", "WITH x AS (SELECT 1) SELECT * FROM x, products p",
                "SELECT " + "(" * 200 + "1" + ")" * 200, "PREPARE q1 AS SELECT 1; EXECUTE q1",
                "SELECT place_order(1), compute_price(2) FROM orders"):
        write("sqlparse", sql.encode())


# --- fuzz_config ------------------------------------------------------------------------------

def config():
    example = read("pgstash.example.yaml")
    write("config", example)
    # The commented-out examples, switched on.
    on = re.sub(rb"(?m)^(\s*)# (\S+:)", rb"\1\2", example)
    write("config", on)
    write("config", b"")
    write("config", b"admin:\n  listen: 127.0.0.1:9187\n  users:\n    - name: admin\n"
                    b"      secret: \"SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$"
                    b"9Bb+hmVxWdLuFpAjPhKx3qoGVoZFi0Sj2DXIOJIOOrI=:"
                    b"fLwMsT7Xz/dC6THUpXwSoPEBQAJF/zP2WQw/gTXN5Uw=\"\n")
    src = read("tests/unit/test_config.c").decode()
    for table in ("values", "errors"):
        start = src.find("} %s[] = {" % table)
        end = src.find("\n};", start)
        for m in re.finditer(r"\{\s*" + LITERAL, src[start:end]):
            write("config", c_strings(m.group(1)))


# --- fuzz_scram -------------------------------------------------------------------------------
# byte 0 flags (0 unknown user, 1 parse part 3 as the secret), first |NEXT| final [|NEXT| secret]

def scram():
    good_first = b"n,,n=admin,r=fyko+d2lbbFgONRv9qkxdawL"
    write("scram", b"\0" + good_first + SEP + b"c=biws,r=@N,p=@P")
    write("scram", b"\0" + b"y,,n=,r=abc,x=ext" + SEP + b"c=eSws,r=@N,p=@P")
    write("scram", b"\1" + good_first + SEP + b"c=biws,r=@N,p=@P")
    write("scram", b"\0" + good_first + SEP + b"c=biws,r=@N,p=AAAA")
    write("scram", b"\0" + good_first + SEP + b"c=biws,r=wrongnonce,p=@P")
    write("scram", b"\0" + b"p=tls-server-end-point,,n=,r=abc" + SEP + b"c=biws,r=@N,p=@P")
    write("scram", b"\2" + good_first + SEP + b"c=biws,r=@N,p=@P" + SEP +
          b"SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0c2FsdA==$"
          b"9Bb+hmVxWdLuFpAjPhKx3qoGVoZFi0Sj2DXIOJIOOrI=:fLwMsT7Xz/dC6THUpXwSoPEBQAJF/zP2WQw/gTXN5Uw=")


if __name__ == "__main__":
    frontend()
    backend()
    entry()
    sqlparse()
    config()
    scram()
    for t in sorted(os.listdir(CORPUS)):
        print("%-10s %4d seeds" % (t, len(os.listdir(os.path.join(CORPUS, t)))))
