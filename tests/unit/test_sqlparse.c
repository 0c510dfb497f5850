/*
 * test_sqlparse.c — statement analysis as a specification: a table of statements and what
 * pgstash must conclude about each (kind, reason, tables read and written, flags), then the
 * memo (exact and shape hits, what must never share a shape, LRU bounds, reference counts),
 * and the small lookups. Valgrind-clean with CK_FORK=no.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqlparse/sqlparse.h"

/* Flags a case expects; every one not listed must be false. */
enum {
    F_INV = 1 << 0,      /* invalidate_all */
    F_SESS = 1 << 1,     /* changes_session */
    F_MKTEMP = 1 << 2,   /* creates_temp */
    F_RMTEMP = 1 << 3,   /* discards_temp */
    F_DDL = 1 << 4,      /* is_ddl */
    F_LOCK = 1 << 5,     /* has_locking */
    F_PARAMS = 1 << 6,   /* has_params */
    F_COMMIT = 1 << 7,   /* has_commit */
    F_ROLLBACK = 1 << 8, /* has_rollback */
    F_TXC = 1 << 9,      /* has_tx_control */
    F_DEFISO = 1 << 10,  /* sets_default_isolation */
};

typedef struct {
    const char *sql;
    SqlKind kind;
    SqlReason reason;
    const char *reads;  /* "a s.b \"Q\"": the exact set, space-separated; NULL = none */
    const char *writes; /* likewise */
    unsigned flags;
    const char *funcs; /* the exact set of functions; NULL = not checked */
    SqlTxOp tx;
    SqlIsolation iso;
    int n; /* statements; 0 = one (none for EMPTY and ERROR) */
} Case;

#define RD  SQL_KIND_READ
#define WR  SQL_KIND_WRITE
#define TXK SQL_KIND_TX
#define SE  SQL_KIND_SESSION
#define DD  SQL_KIND_DDL
#define OT  SQL_KIND_OTHER
#define EM  SQL_KIND_EMPTY
#define ER  SQL_KIND_ERROR

#define NONE    SQL_REASON_NONE
#define NOTR    SQL_REASON_NOT_READ
#define MULTI   SQL_REASON_MULTI_STATEMENT
#define PERR    SQL_REASON_PARSE_ERROR
#define LOCKING SQL_REASON_LOCKING
#define VOLF    SQL_REASON_VOLATILE_FUNCTION
#define SVF     SQL_REASON_SQL_VALUE_FUNCTION
#define SYSCAT  SQL_REASON_SYSTEM_CATALOG
#define TEMPT   SQL_REASON_TEMP_TABLE
#define MODCTE  SQL_REASON_MODIFYING_CTE
#define SELINTO SQL_REASON_SELECT_INTO
#define SAMPLE  SQL_REASON_TABLESAMPLE
#define TIMELIT SQL_REASON_TIME_LITERAL

/* sql, kind, reason, reads, writes, flags */
#define C(s, k, r, rd, wr, fl)                                                                     \
    {                                                                                              \
        .sql = (s), .kind = (k), .reason = (r), .reads = (rd), .writes = (wr), .flags = (fl)       \
    }
/* ... and the exact set of functions called */
#define CF(s, k, r, rd, wr, fl, fn)                                                                \
    {                                                                                              \
        .sql = (s), .kind = (k), .reason = (r), .reads = (rd), .writes = (wr), .flags = (fl),      \
        .funcs = (fn)                                                                              \
    }
/* transaction control: flags, op, isolation */
#define CT(s, fl, op, is)                                                                          \
    {                                                                                              \
        .sql = (s), .kind = TXK, .reason = NOTR, .flags = F_TXC | (fl), .tx = (op), .iso = (is)    \
    }
/* several statements */
#define CN(s, k, r, rd, wr, fl, nst)                                                               \
    {                                                                                              \
        .sql = (s), .kind = (k), .reason = (r), .reads = (rd), .writes = (wr), .flags = (fl),      \
        .n = (nst)                                                                                 \
    }

static const Case cases[] = {
    /* ---- joins of every kind ---- */
    C("SELECT * FROM a JOIN b ON a.id = b.a_id", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a INNER JOIN b USING (id)", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a LEFT JOIN b ON true", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a LEFT OUTER JOIN b ON a.x = b.x", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a RIGHT JOIN b ON true", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a FULL OUTER JOIN b ON a.x = b.x", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a CROSS JOIN b", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a NATURAL JOIN b", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a, b WHERE a.id = b.id", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a JOIN (b JOIN c ON b.id = c.id) ON a.id = b.id", RD, NONE, "a b c", NULL, 0),
    C("SELECT * FROM a x JOIN a y ON x.parent = y.id", RD, NONE, "a", NULL, 0),
    C("SELECT * FROM a JOIN b USING (id) LEFT JOIN c USING (id) FULL JOIN d USING (id)", RD, NONE,
      "a b c d", NULL, 0),

    /* ---- subqueries ---- */
    CF("SELECT (SELECT max(v) FROM b) FROM a", RD, NONE, "a b", NULL, 0, "max"),
    C("SELECT * FROM a WHERE id IN (SELECT a_id FROM b)", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a WHERE id NOT IN (SELECT a_id FROM b)", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.a = a.id)", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM (SELECT * FROM b) s", RD, NONE, "b", NULL, 0),
    C("SELECT * FROM a WHERE x = ANY (SELECT x FROM b)", RD, NONE, "a b", NULL, 0),
    C("SELECT * FROM a WHERE x > (SELECT avg(x) FROM (SELECT x FROM b WHERE y IN (SELECT y "
      "FROM c)) s)",
      RD, NONE, "a b c", NULL, 0),
    C("SELECT g, count(*) FROM a GROUP BY g HAVING count(*) > (SELECT count(*) FROM b)", RD, NONE,
      "a b", NULL, 0),
    C("SELECT * FROM a ORDER BY (SELECT max(v) FROM b WHERE b.id = a.id)", RD, NONE, "a b", NULL,
      0),

    /* ---- CTEs: names are scoped, a CTE is not a table ---- */
    C("WITH c AS (SELECT * FROM b) SELECT * FROM c", RD, NONE, "b", NULL, 0),
    C("WITH t AS (SELECT * FROM t) SELECT * FROM t", RD, NONE, "t", NULL, 0),
    C("WITH users AS (SELECT 1 AS id) SELECT * FROM users", RD, NONE, NULL, NULL, 0),
    C("WITH users AS (SELECT 1 AS id) SELECT * FROM public.users", RD, NONE, "public.users", NULL,
      0),
    C("WITH a AS (WITH b AS (SELECT * FROM t) SELECT * FROM b) SELECT * FROM a, b", RD, NONE, "t b",
      NULL, 0),
    C("WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b", RD, NONE, NULL, NULL, 0),
    C("WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", RD, NONE, "b", NULL, 0),
    C("SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s, x", RD, NONE, "x", NULL, 0),
    C("WITH c AS (SELECT 1 AS id) SELECT * FROM t WHERE id IN (SELECT id FROM c)", RD, NONE, "t",
      NULL, 0),
    C("WITH c AS MATERIALIZED (SELECT * FROM t) SELECT * FROM c JOIN c c2 ON true", RD, NONE, "t",
      NULL, 0),
    C("WITH c AS (SELECT 1) SELECT * FROM c UNION SELECT * FROM d", RD, NONE, "d", NULL, 0),
    C("WITH x AS (SELECT 1) SELECT * FROM (WITH x AS (SELECT * FROM x) SELECT * FROM x) s", RD,
      NONE, NULL, NULL, 0),

    /* ---- recursive CTEs ---- */
    C("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * "
      "FROM r",
      RD, NONE, NULL, NULL, 0),
    C("WITH RECURSIVE tree AS (SELECT id, parent FROM nodes WHERE parent IS NULL UNION ALL "
      "SELECT n.id, n.parent FROM nodes n JOIN tree ON n.parent = tree.id) SELECT * FROM tree",
      RD, NONE, "nodes", NULL, 0),
    C("WITH r AS (SELECT * FROM r) SELECT 1", RD, NONE, "r", NULL, 0),
    C("WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", RD, NONE, NULL,
      NULL, 0),
    C("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n "
      "SET ord SELECT * FROM r LIMIT 5",
      RD, NONE, NULL, NULL, 0),

    /* ---- set operations ---- */
    C("SELECT a FROM x UNION SELECT a FROM y", RD, NONE, "x y", NULL, 0),
    C("SELECT a FROM x UNION ALL SELECT a FROM y UNION ALL SELECT a FROM z", RD, NONE, "x y z",
      NULL, 0),
    C("SELECT a FROM x INTERSECT SELECT a FROM y", RD, NONE, "x y", NULL, 0),
    C("SELECT a FROM x EXCEPT SELECT a FROM y", RD, NONE, "x y", NULL, 0),
    C("(SELECT 1 FROM a) UNION (SELECT 2 FROM b) ORDER BY 1 LIMIT 5", RD, NONE, "a b", NULL, 0),

    /* ---- LATERAL ---- */
    C("SELECT * FROM a, LATERAL (SELECT * FROM b WHERE b.a = a.id) s", RD, NONE, "a b", NULL, 0),
    CF("SELECT * FROM a CROSS JOIN LATERAL generate_series(1, a.n) g", RD, NONE, "a", NULL, 0,
       "generate_series"),
    C("SELECT * FROM a LEFT JOIN LATERAL (SELECT * FROM b ORDER BY b.v LIMIT 1) s ON true", RD,
      NONE, "a b", NULL, 0),

    /* ---- window functions ---- */
    CF("SELECT row_number() OVER (PARTITION BY g ORDER BY v) FROM t", RD, NONE, "t", NULL, 0,
       "row_number"),
    CF("SELECT sum(v) OVER w FROM t WINDOW w AS (ORDER BY k)", RD, NONE, "t", NULL, 0, "sum"),
    CF("SELECT lag(v, 1) OVER (ORDER BY k), rank() OVER (ORDER BY k) FROM t", RD, NONE, "t", NULL,
       0, "lag rank"),

    /* ---- identifiers: unquoted fold, quoted keep their case ---- */
    C("SELECT * FROM public.users", RD, NONE, "public.users", NULL, 0),
    C("SELECT * FROM \"MixedCase\"", RD, NONE, "MixedCase", NULL, 0),
    C("SELECT * FROM MixedCase", RD, NONE, "mixedcase", NULL, 0),
    C("SELECT * FROM \"Sch\".\"Tab\"", RD, NONE, "Sch.Tab", NULL, 0),
    C("SELECT * FROM SCH.TAB", RD, NONE, "sch.tab", NULL, 0),
    C("SELECT * FROM mydb.public.users", RD, NONE, "public.users", NULL, 0),
    C("SELECT * FROM users u JOIN \"Users\" v ON true", RD, NONE, "users Users", NULL, 0),

    /* ---- VALUES and TABLE ---- */
    C("VALUES (1, 'a'), (2, 'b')", RD, NONE, NULL, NULL, 0),
    C("TABLE t", RD, NONE, "t", NULL, 0),
    C("TABLE public.t", RD, NONE, "public.t", NULL, 0),
    C("SELECT * FROM (VALUES (1), (2)) v(x)", RD, NONE, NULL, NULL, 0),

    /* ---- INSERT ---- */
    C("INSERT INTO t VALUES (1)", WR, NOTR, NULL, "t", 0),
    C("INSERT INTO t (a, b) SELECT a, b FROM s", WR, NOTR, "s", "t", 0),
    C("INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", WR, NOTR, NULL, "t", 0),
    C("INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v", WR, NOTR, NULL, "t",
      0),
    C("INSERT INTO t VALUES (1) ON CONFLICT ON CONSTRAINT t_pkey DO UPDATE SET v = (SELECT v "
      "FROM s)",
      WR, NOTR, "s", "t", 0),
    C("INSERT INTO t VALUES (1) RETURNING id", WR, NOTR, NULL, "t", 0),
    C("INSERT INTO s.t DEFAULT VALUES", WR, NOTR, NULL, "s.t", 0),
    C("INSERT INTO t SELECT * FROM t", WR, NOTR, "t", "t", 0),
    C("WITH t AS (SELECT 1) INSERT INTO t SELECT * FROM t", WR, NOTR, NULL, "t", 0),
    C("INSERT INTO t VALUES ($1, $2)", WR, NOTR, NULL, "t", F_PARAMS),

    /* ---- UPDATE ---- */
    C("UPDATE t SET v = 1 WHERE id = 2", WR, NOTR, NULL, "t", 0),
    C("UPDATE t SET v = s.v FROM s WHERE s.id = t.id", WR, NOTR, "s", "t", 0),
    C("UPDATE t SET v = (SELECT max(v) FROM s)", WR, NOTR, "s", "t", 0),
    C("UPDATE t SET v = v + 1 WHERE id IN (SELECT id FROM s) RETURNING *", WR, NOTR, "s", "t", 0),
    C("UPDATE ONLY t SET v = 1", WR, NOTR, NULL, "t", 0),
    CF("UPDATE t SET ts = now(), who = audit.user_name()", WR, NOTR, NULL, "t", 0,
       "now audit.user_name"),

    /* ---- DELETE ---- */
    C("DELETE FROM t WHERE id = 1", WR, NOTR, NULL, "t", 0),
    C("DELETE FROM t USING s WHERE s.id = t.id", WR, NOTR, "s", "t", 0),
    C("DELETE FROM t WHERE EXISTS (SELECT 1 FROM s WHERE s.id = t.id) RETURNING id", WR, NOTR, "s",
      "t", 0),

    /* ---- MERGE ---- */
    C("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT "
      "MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)",
      WR, NOTR, "s", "t", 0),
    C("MERGE INTO t USING (SELECT * FROM s WHERE x) src ON t.id = src.id WHEN MATCHED THEN "
      "DELETE",
      WR, NOTR, "s", "t", 0),
    C("WITH src AS (SELECT * FROM s) MERGE INTO t USING src ON t.id = src.id WHEN MATCHED THEN "
      "DO NOTHING",
      WR, NOTR, "s", "t", 0),

    /* ---- data-modifying CTEs ---- */
    C("WITH d AS (DELETE FROM t WHERE x RETURNING *) SELECT * FROM d", WR, MODCTE, NULL, "t", 0),
    C("WITH i AS (INSERT INTO log VALUES (1) RETURNING id) SELECT * FROM i JOIN u ON true", WR,
      MODCTE, "u", "log", 0),
    C("WITH u AS (UPDATE t SET v = 1 RETURNING *) INSERT INTO h SELECT * FROM u", WR, MODCTE, NULL,
      "t h", 0),
    C("WITH m AS (DELETE FROM t RETURNING *) DELETE FROM s WHERE id IN (SELECT id FROM m)", WR,
      MODCTE, NULL, "t s", 0),

    /* ---- SELECT INTO ---- */
    C("SELECT * INTO new_t FROM t", WR, SELINTO, "t", "new_t", F_DDL),
    C("SELECT * INTO TEMP tmp FROM t", WR, SELINTO, "t", "tmp", F_DDL | F_MKTEMP),
    C("SELECT * INTO TEMPORARY TABLE tmp FROM t", WR, SELINTO, "t", "tmp", F_DDL | F_MKTEMP),
    C("SELECT * INTO UNLOGGED u FROM t", WR, SELINTO, "t", "u", F_DDL),

    /* ---- CREATE TABLE AS ---- */
    C("CREATE TABLE n AS SELECT * FROM t", DD, NOTR, "t", "n", F_DDL),
    C("CREATE TEMP TABLE n AS SELECT * FROM t", DD, NOTR, "t", "n", F_DDL | F_MKTEMP),
    C("CREATE TABLE n AS SELECT * FROM t WITH NO DATA", DD, NOTR, "t", "n", F_DDL),
    C("CREATE MATERIALIZED VIEW mv AS SELECT * FROM t", DD, NOTR, "t", "mv", F_DDL),
    C("CREATE TABLE IF NOT EXISTS n AS TABLE t", DD, NOTR, "t", "n", F_DDL),

    /* ---- TRUNCATE ---- */
    C("TRUNCATE a, b", WR, NOTR, NULL, "a b", 0),
    C("TRUNCATE t", WR, NOTR, NULL, "t", 0),
    C("TRUNCATE TABLE ONLY s.a RESTART IDENTITY CASCADE", WR, NOTR, NULL, "s.a", F_INV),

    /* ---- COPY ---- */
    C("COPY t FROM STDIN", WR, NOTR, NULL, "t", 0),
    C("COPY t (a, b) FROM STDIN WITH (FORMAT csv)", WR, NOTR, NULL, "t", 0),
    C("COPY s.t FROM '/tmp/x' WHERE a > 1", WR, NOTR, NULL, "s.t", 0),
    C("COPY t TO STDOUT", OT, NOTR, "t", NULL, 0),
    C("COPY (SELECT * FROM a JOIN b ON true) TO STDOUT", OT, NOTR, "a b", NULL, 0),
    C("COPY (DELETE FROM t RETURNING *) TO STDOUT", OT, NOTR, NULL, "t", 0),

    /* ---- DDL on tables ---- */
    C("CREATE TABLE t (id int PRIMARY KEY, v text)", DD, NOTR, NULL, "t", F_DDL),
    C("CREATE TABLE IF NOT EXISTS s.t (id int)", DD, NOTR, NULL, "s.t", F_DDL),
    C("CREATE TABLE c (x int) INHERITS (p)", DD, NOTR, NULL, "c p", F_DDL),
    C("CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (10)", DD, NOTR, NULL, "p1 p", F_DDL),
    C("CREATE TABLE o (id int REFERENCES c(id))", DD, NOTR, "c", "o", F_DDL),
    C("CREATE TABLE l (LIKE src INCLUDING ALL)", DD, NOTR, "src", "l", F_DDL),
    C("CREATE TEMP TABLE tt (x int)", DD, NOTR, NULL, "tt", F_DDL | F_MKTEMP),
    C("CREATE TEMPORARY TABLE tt (x int) ON COMMIT DROP", DD, NOTR, NULL, "tt", F_DDL | F_MKTEMP),
    C("CREATE TABLE pg_temp.tt (x int)", DD, NOTR, NULL, "pg_temp.tt", F_DDL | F_MKTEMP),
    C("CREATE UNLOGGED TABLE u (x int)", DD, NOTR, NULL, "u", F_DDL),
    C("ALTER TABLE t ADD COLUMN c int", DD, NOTR, NULL, "t", F_DDL),
    C("ALTER TABLE t DROP COLUMN c", DD, NOTR, NULL, "t", F_DDL),
    C("ALTER TABLE t ALTER COLUMN c TYPE bigint", DD, NOTR, NULL, "t", F_DDL),
    C("ALTER TABLE t ATTACH PARTITION p2 FOR VALUES FROM (10) TO (20)", DD, NOTR, NULL, "t p2",
      F_DDL),
    C("ALTER TABLE IF EXISTS s.t RENAME COLUMN a TO b", DD, NOTR, NULL, "s.t", F_DDL),
    C("ALTER TABLE a RENAME TO b", DD, NOTR, NULL, "a b", F_DDL),
    C("ALTER TABLE s.a RENAME TO b", DD, NOTR, NULL, "s.a s.b", F_DDL),
    C("ALTER VIEW v RENAME TO w", DD, NOTR, NULL, "v w", F_DDL),
    C("ALTER TABLE t SET SCHEMA archive", DD, NOTR, NULL, "t archive.t", F_DDL),
    C("ALTER TABLE t OWNER TO bob", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("DROP TABLE t", DD, NOTR, NULL, "t", F_DDL),
    C("DROP TABLE a, b", DD, NOTR, NULL, "a b", F_DDL),
    C("DROP TABLE IF EXISTS s.a CASCADE", DD, NOTR, NULL, "s.a", F_DDL | F_INV),
    C("DROP VIEW v", DD, NOTR, NULL, "v", F_DDL),
    C("DROP MATERIALIZED VIEW mv", DD, NOTR, NULL, "mv", F_DDL),
    C("CREATE VIEW v AS SELECT * FROM t", DD, NOTR, "t", "v", F_DDL),
    C("CREATE OR REPLACE VIEW v AS SELECT a FROM t JOIN u USING (id)", DD, NOTR, "t u", "v", F_DDL),
    C("CREATE TEMP VIEW v AS SELECT 1", DD, NOTR, NULL, "v", F_DDL | F_MKTEMP),
    C("CREATE INDEX i ON t (c)", DD, NOTR, NULL, "t", F_DDL),
    CF("CREATE UNIQUE INDEX CONCURRENTLY i ON s.t (lower(c))", DD, NOTR, NULL, "s.t", F_DDL,
       "lower"),
    C("DROP INDEX i", DD, NOTR, NULL, "i", F_DDL),
    C("REFRESH MATERIALIZED VIEW mv", WR, NOTR, NULL, "mv", 0),
    C("REFRESH MATERIALIZED VIEW CONCURRENTLY s.mv", WR, NOTR, NULL, "s.mv", 0),
    C("CREATE TRIGGER trg AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", DD, NOTR, NULL, "t",
      F_DDL),
    C("DROP TRIGGER trg ON s.t", DD, NOTR, NULL, "s.t", F_DDL),
    C("CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING", DD, NOTR, NULL, "t", F_DDL),
    C("DROP RULE r ON t", DD, NOTR, NULL, "t", F_DDL),
    C("CREATE SEQUENCE seq", DD, NOTR, NULL, "seq", F_DDL),
    C("CREATE TEMP SEQUENCE seq", DD, NOTR, NULL, "seq", F_DDL | F_MKTEMP),
    C("COMMENT ON TABLE t IS 'orders'", DD, NOTR, NULL, NULL, F_DDL),
    C("DROP SCHEMA s CASCADE", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP SCHEMA s", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE SCHEMA s", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER SCHEMA s RENAME TO s2", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE TYPE mood AS ENUM ('sad', 'ok')", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE EXTENSION pgcrypto", DD, NOTR, NULL, NULL, F_DDL | F_INV),

    /* ---- privileges, roles, policies, functions: invalidate everything ---- */
    C("GRANT SELECT ON t TO bob", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("REVOKE ALL ON t FROM bob", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("GRANT admin TO bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("REVOKE admin FROM bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE ROLE bob LOGIN", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE USER bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE GROUP staff", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER ROLE bob NOSUPERUSER", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER ROLE bob SET search_path = x", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER USER bob SET work_mem = '1GB'", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER DATABASE db SET timezone = 'UTC'", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP ROLE bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP USER IF EXISTS bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE POLICY p ON t USING (owner = current_user)", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("ALTER POLICY p ON t USING (true)", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("DROP POLICY p ON t", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("ALTER TABLE t ENABLE ROW LEVEL SECURITY", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("ALTER TABLE t DISABLE ROW LEVEL SECURITY", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("ALTER TABLE t FORCE ROW LEVEL SECURITY", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("ALTER TABLE t NO FORCE ROW LEVEL SECURITY", DD, NOTR, NULL, "t", F_DDL | F_INV),
    C("ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO bob", DD, NOTR, NULL, NULL,
      F_DDL | F_INV),
    C("ALTER FUNCTION f() OWNER TO bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP OWNED BY bob", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("REASSIGN OWNED BY bob TO alice", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'", DD, NOTR,
      NULL, NULL, F_DDL | F_INV),
    C("CREATE FUNCTION g() RETURNS int LANGUAGE sql AS 'SELECT 1'", DD, NOTR, NULL, NULL,
      F_DDL | F_INV),
    C("ALTER FUNCTION f() IMMUTABLE", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP FUNCTION f(int)", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'", DD, NOTR, NULL, NULL, F_DDL | F_INV),
    C("DROP PROCEDURE p", DD, NOTR, NULL, NULL, F_DDL | F_INV),

    /* ---- row locking ---- */
    C("SELECT * FROM t FOR UPDATE", RD, LOCKING, "t", NULL, F_LOCK),
    C("SELECT * FROM t FOR NO KEY UPDATE", RD, LOCKING, "t", NULL, F_LOCK),
    C("SELECT * FROM t FOR SHARE", RD, LOCKING, "t", NULL, F_LOCK),
    C("SELECT * FROM t FOR KEY SHARE", RD, LOCKING, "t", NULL, F_LOCK),
    C("SELECT * FROM t a JOIN u b ON true FOR UPDATE OF a SKIP LOCKED", RD, LOCKING, "t u", NULL,
      F_LOCK),
    C("SELECT * FROM t FOR UPDATE NOWAIT", RD, LOCKING, "t", NULL, F_LOCK),
    C("SELECT * FROM (SELECT * FROM t FOR SHARE) s", RD, LOCKING, "t", NULL, F_LOCK),

    /* ---- non-immutable functions and SQL value functions ---- */
    CF("SELECT now()", RD, VOLF, NULL, NULL, 0, "now"),
    CF("SELECT random()", RD, VOLF, NULL, NULL, 0, "random"),
    CF("SELECT nextval('seq')", RD, VOLF, NULL, NULL, 0, "nextval"),
    CF("SELECT clock_timestamp()", RD, VOLF, NULL, NULL, 0, "clock_timestamp"),
    CF("SELECT gen_random_uuid()", RD, VOLF, NULL, NULL, 0, "gen_random_uuid"),
    CF("SELECT current_setting('app.user')", RD, VOLF, NULL, NULL, 0, "current_setting"),
    CF("SELECT set_config('app.user', 'x', false)", RD, VOLF, NULL, NULL, F_SESS, "set_config"),
    CF("SELECT pg_catalog.now()", RD, VOLF, NULL, NULL, 0, "pg_catalog.now"),
    CF("SELECT * FROM t WHERE created_at > now() - interval '1 day'", RD, VOLF, "t", NULL, 0,
       "now"),
    CF("SELECT CURRENT_TIMESTAMP", RD, SVF, NULL, NULL, 0, ""),
    C("SELECT current_user", RD, SVF, NULL, NULL, 0),
    C("SELECT * FROM t WHERE d = CURRENT_DATE", RD, SVF, "t", NULL, 0),
    C("SELECT session_user, current_role, user", RD, SVF, NULL, NULL, 0),
    C("SELECT LOCALTIMESTAMP, CURRENT_TIME(3), LOCALTIME", RD, SVF, NULL, NULL, 0),
    C("SELECT current_catalog, current_schema", RD, SVF, NULL, NULL, 0),
    CF("SELECT lower(name), upper(name), abs(x), length(name) FROM t", RD, NONE, "t", NULL, 0,
       "lower upper abs length"),
    CF("SELECT coalesce(a, 0), greatest(a, b), nullif(a, b) FROM t", RD, NONE, "t", NULL, 0, ""),
    CF("SELECT count(*), sum(x), avg(x), max(x) FROM t GROUP BY g", RD, NONE, "t", NULL, 0,
       "count sum avg max"),
    CF("SELECT length(b, 'UTF8') FROM t", RD, VOLF, "t", NULL, 0, "length"),
    CF("SELECT my_func(x) FROM t", RD, NONE, "t", NULL, 0, "my_func"),
    CF("SELECT app.compute(x) FROM t", RD, NONE, "t", NULL, 0, "app.compute"),
    CF("SELECT public.now()", RD, NONE, NULL, NULL, 0, "public.now"),
    CF("SELECT \"NOW\"()", RD, NONE, NULL, NULL, 0, "NOW"),
    CF("SELECT now() FROM t FOR UPDATE", RD, LOCKING, "t", NULL, F_LOCK, "now"),

    /* ---- literals that mean "the current time" ---- */
    C("SELECT 'now'::timestamp", RD, TIMELIT, NULL, NULL, 0),
    C("SELECT * FROM t WHERE d = 'today'", RD, TIMELIT, "t", NULL, 0),
    C("SELECT * FROM t WHERE d > 'Tomorrow'::date", RD, TIMELIT, "t", NULL, 0),
    C("SELECT DATE ' yesterday '", RD, TIMELIT, NULL, NULL, 0),
    C("SELECT * FROM t WHERE ts > 'today 12:00'", RD, TIMELIT, "t", NULL, 0),
    C("SELECT E'\\x6eow'::date", RD, TIMELIT, NULL, NULL, 0),
    C("SELECT $$now$$::date", RD, TIMELIT, NULL, NULL, 0),
    C("SELECT * FROM t WHERE d = '2020-01-01'", RD, NONE, "t", NULL, 0),
    C("SELECT * FROM t WHERE note = 'nowhere'", RD, NONE, "t", NULL, 0),

    /* ---- temporary tables and system catalogs ---- */
    C("SELECT * FROM pg_temp.x", RD, TEMPT, "pg_temp.x", NULL, 0),
    C("SELECT * FROM pg_temp_3.x", RD, TEMPT, "pg_temp_3.x", NULL, 0),
    C("SELECT * FROM pg_catalog.pg_class", RD, SYSCAT, "pg_catalog.pg_class", NULL, 0),
    C("SELECT * FROM pg_class", RD, SYSCAT, "pg_class", NULL, 0),
    C("SELECT * FROM pg_stat_activity", RD, SYSCAT, "pg_stat_activity", NULL, 0),
    C("SELECT * FROM information_schema.tables", RD, SYSCAT, "information_schema.tables", NULL, 0),
    C("SELECT * FROM pg_toast.pg_toast_123", RD, SYSCAT, "pg_toast.pg_toast_123", NULL, 0),
    C("SELECT * FROM t JOIN pg_namespace n ON true", RD, SYSCAT, "t pg_namespace", NULL, 0),
    C("SELECT * FROM \"PG_Thing\"", RD, NONE, "PG_Thing", NULL, 0),
    C("SELECT * FROM pg_temp.x JOIN pg_class ON true WHERE now() > x.t", RD, TEMPT,
      "pg_temp.x pg_class", NULL, 0),

    /* ---- SQL-level prepared statements ---- */
    C("PREPARE p AS SELECT * FROM t WHERE id = $1", OT, NOTR, "t", NULL, F_PARAMS),
    C("PREPARE q (int) AS UPDATE t SET v = $1", OT, NOTR, NULL, "t", F_PARAMS),
    C("EXECUTE p(1)", OT, NOTR, NULL, NULL, 0),
    C("DEALLOCATE p", OT, NOTR, NULL, NULL, 0),
    C("DEALLOCATE ALL", OT, NOTR, NULL, NULL, 0),
    C("DEALLOCATE PREPARE p", OT, NOTR, NULL, NULL, 0),

    /* ---- transaction control ---- */
    CT("BEGIN", 0, SQL_TX_BEGIN, SQL_ISO_DEFAULT),
    CT("BEGIN ISOLATION LEVEL REPEATABLE READ", 0, SQL_TX_BEGIN, SQL_ISO_REPEATABLE_READ),
    CT("BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", 0, SQL_TX_BEGIN,
       SQL_ISO_SERIALIZABLE),
    CT("START TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, SQL_TX_BEGIN, SQL_ISO_SERIALIZABLE),
    CT("START TRANSACTION READ ONLY", 0, SQL_TX_BEGIN, SQL_ISO_DEFAULT),
    CT("BEGIN ISOLATION LEVEL READ COMMITTED", 0, SQL_TX_BEGIN, SQL_ISO_READ_COMMITTED),
    CT("BEGIN ISOLATION LEVEL READ UNCOMMITTED", 0, SQL_TX_BEGIN, SQL_ISO_READ_UNCOMMITTED),
    CT("COMMIT", F_COMMIT, SQL_TX_COMMIT, SQL_ISO_DEFAULT),
    CT("COMMIT AND CHAIN", F_COMMIT, SQL_TX_COMMIT, SQL_ISO_DEFAULT),
    CT("END", F_COMMIT, SQL_TX_COMMIT, SQL_ISO_DEFAULT),
    CT("ROLLBACK", F_ROLLBACK, SQL_TX_ROLLBACK, SQL_ISO_DEFAULT),
    CT("ABORT", F_ROLLBACK, SQL_TX_ROLLBACK, SQL_ISO_DEFAULT),
    CT("SAVEPOINT s", 0, SQL_TX_SAVEPOINT, SQL_ISO_DEFAULT),
    CT("RELEASE s", 0, SQL_TX_RELEASE, SQL_ISO_DEFAULT),
    CT("RELEASE SAVEPOINT s", 0, SQL_TX_RELEASE, SQL_ISO_DEFAULT),
    CT("ROLLBACK TO s", F_ROLLBACK, SQL_TX_ROLLBACK_TO, SQL_ISO_DEFAULT),
    CT("ROLLBACK TO SAVEPOINT s", F_ROLLBACK, SQL_TX_ROLLBACK_TO, SQL_ISO_DEFAULT),
    CT("PREPARE TRANSACTION 'gid'", F_COMMIT, SQL_TX_PREPARE, SQL_ISO_DEFAULT),
    CT("COMMIT PREPARED 'gid'", F_COMMIT | F_INV, SQL_TX_COMMIT_PREPARED, SQL_ISO_DEFAULT),
    CT("ROLLBACK PREPARED 'gid'", 0, SQL_TX_ROLLBACK_PREPARED, SQL_ISO_DEFAULT),
    CT("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", 0, SQL_TX_SET_TRANSACTION,
       SQL_ISO_REPEATABLE_READ),
    CT("SET TRANSACTION READ ONLY", 0, SQL_TX_SET_TRANSACTION, SQL_ISO_DEFAULT),

    /* ---- session state ---- */
    C("SET search_path TO a, b", SE, NOTR, NULL, NULL, F_SESS),
    C("SET LOCAL search_path = a", SE, NOTR, NULL, NULL, F_SESS),
    C("SET TIME ZONE 'UTC'", SE, NOTR, NULL, NULL, F_SESS),
    C("SET app.tenant = '42'", SE, NOTR, NULL, NULL, F_SESS),
    C("RESET search_path", SE, NOTR, NULL, NULL, F_SESS),
    C("RESET ALL", SE, NOTR, NULL, NULL, F_SESS | F_DEFISO),
    C("DISCARD ALL", SE, NOTR, NULL, NULL, F_SESS | F_RMTEMP | F_DEFISO),
    C("DISCARD TEMP", SE, NOTR, NULL, NULL, F_SESS | F_RMTEMP),
    C("DISCARD PLANS", SE, NOTR, NULL, NULL, F_SESS),
    C("SET ROLE admin", SE, NOTR, NULL, NULL, F_SESS),
    C("RESET ROLE", SE, NOTR, NULL, NULL, F_SESS),
    C("SET SESSION AUTHORIZATION bob", SE, NOTR, NULL, NULL, F_SESS),
    C("RESET SESSION AUTHORIZATION", SE, NOTR, NULL, NULL, F_SESS),
    C("SET default_transaction_isolation = 'repeatable read'", SE, NOTR, NULL, NULL,
      F_SESS | F_DEFISO),
    {.sql = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
     .kind = SE,
     .reason = NOTR,
     .flags = F_SESS | F_DEFISO,
     .tx = SQL_TX_SET_TRANSACTION},
    {.sql = "SET transaction_isolation = 'serializable'",
     .kind = SE,
     .reason = NOTR,
     .flags = F_SESS,
     .iso = SQL_ISO_SERIALIZABLE},

    /* ---- everything else ---- */
    CF("CALL p()", OT, NOTR, NULL, NULL, 0, "p"),
    CF("CALL s.proc(1, now())", OT, NOTR, NULL, NULL, 0, "s.proc now"),
    C("DO $$BEGIN PERFORM 1; END$$", OT, NOTR, NULL, NULL, 0),
    C("DO LANGUAGE plpgsql $$BEGIN UPDATE t SET v = 1; END$$", OT, NOTR, NULL, NULL, 0),
    C("EXPLAIN SELECT * FROM t", OT, NOTR, "t", NULL, 0),
    C("EXPLAIN ANALYZE UPDATE t SET v = 1", OT, NOTR, NULL, "t", 0),
    C("EXPLAIN UPDATE t SET v = 1", OT, NOTR, NULL, NULL, 0),
    C("EXPLAIN (ANALYZE, BUFFERS) DELETE FROM t", OT, NOTR, NULL, "t", 0),
    C("EXPLAIN (ANALYZE false) DELETE FROM t", OT, NOTR, NULL, NULL, 0),
    C("EXPLAIN ANALYZE CREATE TEMP TABLE x AS SELECT * FROM t", OT, NOTR, "t", "x",
      F_DDL | F_MKTEMP),
    C("LISTEN ch", OT, NOTR, NULL, NULL, 0),
    C("UNLISTEN *", OT, NOTR, NULL, NULL, 0),
    C("NOTIFY ch, 'payload'", OT, NOTR, NULL, NULL, 0),
    C("VACUUM", OT, NOTR, NULL, NULL, 0),
    C("VACUUM FULL t", OT, NOTR, NULL, NULL, 0),
    C("VACUUM (VERBOSE, ANALYZE) t", OT, NOTR, NULL, NULL, 0),
    C("ANALYZE t", OT, NOTR, NULL, NULL, 0),
    C("LOCK TABLE t", OT, NOTR, NULL, NULL, 0),
    C("LOCK TABLE a, b IN SHARE MODE NOWAIT", OT, NOTR, NULL, NULL, 0),
    C("DECLARE c CURSOR FOR SELECT * FROM t", OT, NOTR, "t", NULL, 0),
    C("DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t FOR UPDATE", OT, NOTR, "t", NULL, F_LOCK),
    C("FETCH NEXT FROM c", OT, NOTR, NULL, NULL, 0),
    C("FETCH 10 c", OT, NOTR, NULL, NULL, 0),
    C("MOVE 5 IN c", OT, NOTR, NULL, NULL, 0),
    C("CLOSE c", OT, NOTR, NULL, NULL, 0),
    C("CLOSE ALL", OT, NOTR, NULL, NULL, 0),
    C("SHOW search_path", OT, NOTR, NULL, NULL, 0),
    C("SHOW ALL", OT, NOTR, NULL, NULL, 0),
    C("CHECKPOINT", OT, NOTR, NULL, NULL, 0),
    C("CLUSTER t USING i", OT, NOTR, NULL, NULL, 0),
    C("REINDEX TABLE t", OT, NOTR, NULL, NULL, 0),
    C("SET CONSTRAINTS ALL DEFERRED", OT, NOTR, NULL, NULL, 0),

    /* ---- TABLESAMPLE ---- */
    C("SELECT * FROM t TABLESAMPLE SYSTEM (10)", RD, SAMPLE, "t", NULL, 0),
    C("SELECT * FROM t TABLESAMPLE BERNOULLI (5) REPEATABLE (42) JOIN u ON true", RD, SAMPLE, "t u",
      NULL, 0),

    /* ---- several statements in one string ---- */
    {.sql = "BEGIN; UPDATE a SET x = 1; COMMIT",
     .kind = TXK,
     .reason = MULTI,
     .writes = "a",
     .flags = F_COMMIT | F_TXC,
     .tx = SQL_TX_COMMIT,
     .n = 3},
    {.sql = "BEGIN; SELECT * FROM t; ROLLBACK",
     .kind = TXK,
     .reason = MULTI,
     .reads = "t",
     .flags = F_ROLLBACK | F_TXC,
     .tx = SQL_TX_ROLLBACK,
     .n = 3},
    CN("SELECT 1; SELECT 2", RD, MULTI, NULL, NULL, 0, 2),
    CN("SELECT * FROM a; SELECT * FROM b", RD, MULTI, "a b", NULL, 0, 2),
    CN("SET search_path = x; SELECT * FROM t", SE, MULTI, "t", NULL, F_SESS, 2),
    CN("SELECT 1;", RD, NONE, NULL, NULL, 0, 1),
    CN("SELECT 1;;", RD, NONE, NULL, NULL, 0, 1),

    /* ---- nothing at all, and garbage ---- */
    C("", EM, NOTR, NULL, NULL, 0),
    C("   \n\t ", EM, NOTR, NULL, NULL, 0),
    C("-- only a comment", EM, NOTR, NULL, NULL, 0),
    C("/* block */", EM, NOTR, NULL, NULL, 0),
    C(";", EM, NOTR, NULL, NULL, 0),
    C("SELEC 1", ER, PERR, NULL, NULL, F_INV),
    C("SELECT FROM WHERE", ER, PERR, NULL, NULL, F_INV),
    C("SELECT 'unterminated", ER, PERR, NULL, NULL, F_INV),
    C("UPDATE t SET", ER, PERR, NULL, NULL, F_INV),
    C("SELECT (1", ER, PERR, NULL, NULL, F_INV),
    C("SELECT 1; SELEC 2", ER, PERR, NULL, NULL, F_INV),
};
#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

static void format_name(char *out, size_t n, const char *schema, const char *name)
{
    if (schema)
        snprintf(out, n, "%s.%s", schema, name);
    else
        snprintf(out, n, "%s", name);
}

/* The actual list, formatted like the expectations (sorted, for a readable message). */
static void format_list(char *out, size_t n, const SqlRelation *list, size_t count)
{
    char names[64][128];
    size_t k = count < 64 ? count : 64;
    for (size_t i = 0; i < k; i++)
        format_name(names[i], sizeof names[i], list[i].schema, list[i].name);
    qsort(names, k, sizeof names[0], (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (size_t i = 0; i < k; i++) {
        strncat(out, i ? " " : "", n - strlen(out) - 1);
        strncat(out, names[i], n - strlen(out) - 1);
    }
}

/* Same set of names? `expected` is space-separated; NULL is the empty set. */
static bool same_set(const char *expected, const SqlRelation *list, size_t count)
{
    char want[64][128];
    size_t n_want = 0;
    if (expected) {
        const char *p = expected;
        while (*p) {
            while (*p == ' ')
                p++;
            size_t len = strcspn(p, " ");
            if (len == 0)
                break;
            snprintf(want[n_want++], sizeof want[0], "%.*s", (int)len, p);
            p += len;
        }
    }
    if (n_want != count)
        return false;
    for (size_t i = 0; i < count; i++) {
        char have[128];
        format_name(have, sizeof have, list[i].schema, list[i].name);
        bool found = false;
        for (size_t j = 0; j < n_want; j++)
            found = found || strcmp(have, want[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static unsigned flags_of(const SqlAnalysis *a)
{
    return (a->invalidate_all ? F_INV : 0) | (a->changes_session ? F_SESS : 0) |
           (a->creates_temp ? F_MKTEMP : 0) | (a->discards_temp ? F_RMTEMP : 0) |
           (a->is_ddl ? F_DDL : 0) | (a->has_locking ? F_LOCK : 0) |
           (a->has_params ? F_PARAMS : 0) | (a->has_commit ? F_COMMIT : 0) |
           (a->has_rollback ? F_ROLLBACK : 0) | (a->has_tx_control ? F_TXC : 0) |
           (a->sets_default_isolation ? F_DEFISO : 0);
}

static void check_case(const Case *c, const SqlAnalysis *a)
{
    char buf[1024];
    ck_assert_msg(a != NULL, "%s: no analysis", c->sql);
    ck_assert_msg(a->kind == c->kind, "%s: kind %s, want %s", c->sql, sqlparse_kind_name(a->kind),
                  sqlparse_kind_name(c->kind));
    ck_assert_msg(a->reason == c->reason, "%s: reason %s, want %s", c->sql,
                  sqlparse_reason_name(a->reason), sqlparse_reason_name(c->reason));
    ck_assert_msg(a->reasons & (1u << c->reason) || c->reason == SQL_REASON_NONE,
                  "%s: reason missing from the mask", c->sql);
    format_list(buf, sizeof buf, a->reads, a->n_reads);
    ck_assert_msg(same_set(c->reads, a->reads, a->n_reads), "%s: reads [%s], want [%s]", c->sql,
                  buf, c->reads ? c->reads : "");
    format_list(buf, sizeof buf, a->writes, a->n_writes);
    ck_assert_msg(same_set(c->writes, a->writes, a->n_writes), "%s: writes [%s], want [%s]", c->sql,
                  buf, c->writes ? c->writes : "");
    if (c->funcs) {
        SqlRelation fn[64];
        size_t n_fn = a->n_functions < 64 ? a->n_functions : 64;
        for (size_t i = 0; i < n_fn; i++)
            fn[i] = (SqlRelation){a->functions[i].schema, a->functions[i].name};
        format_list(buf, sizeof buf, fn, n_fn);
        ck_assert_msg(n_fn == a->n_functions && same_set(c->funcs, fn, n_fn),
                      "%s: functions [%s], want [%s]", c->sql, buf, c->funcs);
    }
    ck_assert_msg(flags_of(a) == c->flags, "%s: flags 0x%x, want 0x%x", c->sql, flags_of(a),
                  c->flags);
    ck_assert_msg(a->tx_op == c->tx, "%s: tx_op %d, want %d", c->sql, a->tx_op, c->tx);
    ck_assert_msg(a->isolation == c->iso, "%s: isolation %d, want %d", c->sql, a->isolation,
                  c->iso);
    int n = c->n ? c->n : (c->kind == SQL_KIND_EMPTY || c->kind == SQL_KIND_ERROR ? 0 : 1);
    ck_assert_msg(a->n_statements == n, "%s: %d statements, want %d", c->sql, a->n_statements, n);
    ck_assert_msg((a->kind == SQL_KIND_ERROR) == (a->error != NULL), "%s: error message", c->sql);
}

START_TEST(test_table)
{
    const Case *c = &cases[_i];
    SqlAnalysis *a = sqlparse_analyze(NULL, c->sql, strlen(c->sql));
    check_case(c, a);
    sqlparse_release(a);

    /* Through a memo, twice (the second is a hit), the same facts. */
    SqlMemo *memo = sqlparse_memo_new(8);
    ck_assert_ptr_nonnull(memo);
    for (int round = 0; round < 2; round++) {
        a = sqlparse_analyze(memo, c->sql, strlen(c->sql));
        check_case(c, a);
        sqlparse_release(a);
    }
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits + st.shape_hits, 1);
    ck_assert_uint_eq(st.parses, 1);
    sqlparse_memo_free(memo);
}
END_TEST

START_TEST(test_table_is_big_enough)
{
    ck_assert_int_ge(N_CASES, 170);
}
END_TEST

/* ---- details the table does not show ---- */

START_TEST(test_prepared_statement_names)
{
    const char *sql = "PREPARE getu (int) AS SELECT * FROM users WHERE id = $1 FOR UPDATE";
    SqlAnalysis *a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_str_eq(a->prepare_name, "getu");
    ck_assert_int_eq(a->prepare_kind, SQL_KIND_READ);
    ck_assert_int_eq(a->prepare_reason, SQL_REASON_LOCKING);
    ck_assert_int_eq(a->reason, SQL_REASON_NOT_READ);
    ck_assert_ptr_null(a->execute_name);
    sqlparse_release(a);

    sql = "PREPARE up AS UPDATE t SET v = now()";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_str_eq(a->prepare_name, "up");
    ck_assert_int_eq(a->prepare_kind, SQL_KIND_WRITE);
    ck_assert_int_eq(a->prepare_reason, SQL_REASON_NOT_READ);
    ck_assert_uint_eq(a->n_functions, 1);
    ck_assert_str_eq(a->functions[0].name, "now");
    sqlparse_release(a);

    sql = "PREPARE r AS SELECT lower(name) FROM users";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_int_eq(a->prepare_reason, SQL_REASON_NONE);
    sqlparse_release(a);

    sql = "EXECUTE getu(42)";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_str_eq(a->execute_name, "getu");
    ck_assert_ptr_null(a->prepare_name);
    sqlparse_release(a);

    sql = "DEALLOCATE PREPARE getu";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_str_eq(a->deallocate_name, "getu");
    sqlparse_release(a);

    sql = "DEALLOCATE ALL";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_str_eq(a->deallocate_name, "");
    sqlparse_release(a);
}
END_TEST

START_TEST(test_default_isolation)
{
    const char *sql = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ";
    SqlAnalysis *a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert(a->sets_default_isolation);
    ck_assert_int_eq(a->default_isolation, SQL_ISO_REPEATABLE_READ);
    ck_assert_int_eq(a->isolation, SQL_ISO_DEFAULT);
    sqlparse_release(a);

    sql = "SET default_transaction_isolation TO serializable";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_int_eq(a->default_isolation, SQL_ISO_SERIALIZABLE);
    sqlparse_release(a);

    sql = "RESET default_transaction_isolation";
    a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert(a->sets_default_isolation);
    ck_assert_int_eq(a->default_isolation, SQL_ISO_DEFAULT);
    sqlparse_release(a);
}
END_TEST

START_TEST(test_command_and_error)
{
    SqlAnalysis *a = sqlparse_analyze(NULL, "SELECT 1", 8);
    ck_assert_str_eq(a->command, "SelectStmt");
    ck_assert_ptr_null(a->error);
    sqlparse_release(a);

    a = sqlparse_analyze(NULL, "UPDATE t SET x = 1; SELECT 1", 28);
    ck_assert_str_eq(a->command, "UpdateStmt");
    ck_assert_int_eq(a->kind, SQL_KIND_WRITE);
    sqlparse_release(a);

    a = sqlparse_analyze(NULL, "SELEC 1", 7);
    ck_assert_str_eq(a->command, "");
    ck_assert_str_eq(a->error, "syntax error at or near \"SELEC\"");
    sqlparse_release(a);
}
END_TEST

START_TEST(test_reasons_mask)
{
    const char *sql = "SELECT now(), current_user, 'today'::date FROM pg_class FOR UPDATE";
    SqlAnalysis *a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_int_eq(a->reason, SQL_REASON_LOCKING);
    uint32_t want = (1u << SQL_REASON_LOCKING) | (1u << SQL_REASON_VOLATILE_FUNCTION) |
                    (1u << SQL_REASON_SQL_VALUE_FUNCTION) | (1u << SQL_REASON_TIME_LITERAL) |
                    (1u << SQL_REASON_SYSTEM_CATALOG);
    ck_assert_uint_eq(a->reasons, want);
    sqlparse_release(a);
}
END_TEST

/* A function's argument count, for volatility by overload; -1 when it cannot be one number. */
START_TEST(test_function_nargs)
{
    static const struct {
        const char *sql;
        int nargs;
    } v[] = {
        {"SELECT length(a) FROM t", 1},
        {"SELECT count(*) FROM t", 0},
        {"SELECT length(a), length(b, 'UTF8') FROM t", -1},
        {"SELECT concat(VARIADIC ARRAY['a', 'b'])", -1},
        {"SELECT f(1, 2, 3), f(4, 5, 6)", 3},
        {"CALL p(1, 2)", 2},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        SqlAnalysis *a = sqlparse_analyze(NULL, v[i].sql, strlen(v[i].sql));
        ck_assert_uint_eq(a->n_functions, 1);
        ck_assert_msg(a->functions[0].nargs == v[i].nargs, "%s: nargs %d", v[i].sql,
                      a->functions[0].nargs);
        sqlparse_release(a);
    }
}
END_TEST

/* Lists hold each name once, in the order first seen. */
START_TEST(test_dedup_and_order)
{
    const char *sql = "SELECT lower(a.x), lower(b.y) FROM b JOIN a ON true JOIN b b2 ON true "
                      "JOIN s.a ON true";
    SqlAnalysis *a = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_uint_eq(a->n_reads, 3);
    ck_assert_str_eq(a->reads[0].name, "b");
    ck_assert_ptr_null(a->reads[0].schema);
    ck_assert_str_eq(a->reads[1].name, "a");
    ck_assert_str_eq(a->reads[2].schema, "s");
    ck_assert_str_eq(a->reads[2].name, "a");
    ck_assert_uint_eq(a->n_functions, 1);
    sqlparse_release(a);
}
END_TEST

/* ---- the memo ---- */

START_TEST(test_memo_exact_hit)
{
    /* Texts the text map answers: a parameterised statement (drivers repeat it verbatim) and
     * one the quick shape declines (the quote). */
    const char *texts[] = {
        "SELECT * FROM users WHERE id = $1",
        "SELECT * FROM users WHERE name = 'ann'",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        SqlMemo *memo = sqlparse_memo_new(16);
        const char *sql = texts[i];
        SqlAnalysis *a1 = sqlparse_analyze(memo, sql, strlen(sql));
        SqlAnalysis *a2 = sqlparse_analyze(memo, sql, strlen(sql));
        ck_assert_ptr_eq(a1, a2);
        SqlMemoStats st;
        sqlparse_memo_stats(memo, &st);
        ck_assert_msg(st.exact_hits == 1, "%s: %llu exact hits", sql,
                      (unsigned long long)st.exact_hits);
        ck_assert_uint_eq(st.shape_hits, 0);
        ck_assert_uint_eq(st.parses, 1);
        ck_assert_uint_eq(st.entries, 1);
        sqlparse_release(a1);
        sqlparse_release(a2);
        sqlparse_memo_free(memo);
    }
}
END_TEST

/* Analyses `text` `times` times through `memo`, expecting `want` every time. */
static void expect_memo_answer(SqlMemo *memo, const char *text, const SqlAnalysis *want,
                               int times)
{
    for (int i = 0; i < times; i++) {
        SqlAnalysis *a = sqlparse_analyze(memo, text, strlen(text));
        ck_assert_msg(a == want, "%s: another analysis", text);
        sqlparse_release(a);
    }
}

START_TEST(test_memo_shape_hit)
{
    SqlMemo *memo = sqlparse_memo_new(16);
    /* Plain texts get the quick shape; texts with comments the scanner's. Each kind shares
     * within itself (the two never mix: one parse each). */
    const char *texts[] = {
        "SELECT * FROM users WHERE id = 1",
        "SELECT * FROM users WHERE id = 2",
        "select *  from USERS\n where id=3 -- trailing comment",
        "SELECT /* hint */ * FROM users WHERE id = 99999999",
        "SELECT * FROM users WHERE id = 0042",
        "select *\tFROM Users where ID=7",
    };
    SqlAnalysis *first = sqlparse_analyze(memo, texts[0], strlen(texts[0]));
    SqlAnalysis *commented = sqlparse_analyze(memo, texts[2], strlen(texts[2]));
    ck_assert_ptr_ne(first, commented);
    for (size_t i = 1; i < sizeof texts / sizeof texts[0]; i++) {
        SqlAnalysis *a = sqlparse_analyze(memo, texts[i], strlen(texts[i]));
        SqlAnalysis *want = strstr(texts[i], "--") || strstr(texts[i], "/*") ? commented : first;
        ck_assert_msg(a == want, "%s: not shared", texts[i]);
        sqlparse_release(a);
    }
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.parses, 2);
    ck_assert_uint_eq(st.shape_hits, 4); /* texts[2] again: by text, it was parsed */
    ck_assert_uint_eq(st.exact_hits, 1);
    ck_assert_uint_eq(st.entries, 2);
    /* Texts found by the quick shape are never remembered by text. */
    expect_memo_answer(memo, texts[1], first, 2);
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.shape_hits, 6);
    ck_assert_uint_eq(st.exact_hits, 1);
    /* Texts found by the scanner's shape are, from their second sighting on. */
    expect_memo_answer(memo, texts[3], commented, 2);
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.entries, 3);
    ck_assert_uint_eq(st.shape_hits, 7);
    ck_assert_uint_eq(st.exact_hits, 2);
    sqlparse_release(commented);

    /* Quoted identifiers, other tables, other operators, other classes of constant (the
     * grammar takes an integer in places where it refuses a string) are other shapes. */
    const char *others[] = {
        "SELECT * FROM \"USERS\" WHERE id = 1", "SELECT * FROM users WHERE id > 1",
        "SELECT * FROM users WHERE id = $1",    "SELECT * FROM userz WHERE id = 1",
        "SELECT * FROM users WHERE id = 'x'",   "SELECT * FROM users WHERE id = 4.5e3",
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        SqlAnalysis *a = sqlparse_analyze(memo, others[i], strlen(others[i]));
        ck_assert_msg(a != first, "%s: shared", others[i]);
        sqlparse_release(a);
    }
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.parses, 8);
    SqlAnalysis *a;

    /* The scanner reports U&"…" as just "U": such texts must not share a shape. */
    a = sqlparse_analyze(memo, "SELECT * FROM U&\"a\"", 19);
    ck_assert_str_eq(a->reads[0].name, "a");
    sqlparse_release(a);
    a = sqlparse_analyze(memo, "SELECT * FROM U&\"b\"", 19);
    ck_assert_str_eq(a->reads[0].name, "b");
    sqlparse_release(a);

    /* FETCH takes an integer: the string form is an error, not FETCH's analysis. */
    a = sqlparse_analyze(memo, "FETCH 10 c", 10);
    ck_assert_int_eq(a->kind, SQL_KIND_OTHER);
    sqlparse_release(a);
    a = sqlparse_analyze(memo, "FETCH 'x' c", 11);
    ck_assert_int_eq(a->kind, SQL_KIND_ERROR);
    sqlparse_release(a);
    sqlparse_release(first);
    sqlparse_memo_free(memo);
}
END_TEST

/* Same kind, reason, error-ness, and tables read and written. */
static void assert_same_as_fresh(const char *sql, const SqlAnalysis *got)
{
    SqlAnalysis *want = sqlparse_analyze(NULL, sql, strlen(sql));
    ck_assert_msg(got->kind == want->kind && got->reason == want->reason &&
                      !got->error == !want->error && got->n_reads == want->n_reads &&
                      got->n_writes == want->n_writes,
                  "%s: memo says %s/%s, a fresh parse %s/%s", sql, sqlparse_kind_name(got->kind),
                  sqlparse_reason_name(got->reason), sqlparse_kind_name(want->kind),
                  sqlparse_reason_name(want->reason));
    for (size_t i = 0; i < want->n_reads; i++)
        ck_assert_msg(strcmp(got->reads[i].name, want->reads[i].name) == 0, "%s: reads %s", sql,
                      got->reads[i].name);
    for (size_t i = 0; i < want->n_writes; i++)
        ck_assert_msg(strcmp(got->writes[i].name, want->writes[i].name) == 0, "%s: writes %s",
                      sql, got->writes[i].name);
    sqlparse_release(want);
}

/* The quick shape (plain texts) must keep apart every pair the grammar tells apart: each
 * text, analysed after its neighbour filled the memo, equals a fresh parse. */
START_TEST(test_memo_quick_shape_keeps_apart)
{
    static const char *const texts[] = {
        "SELECT * FROM t WHERE x <= 1",      "SELECT * FROM t WHERE x < = 1",
        "SELECT * FROM a b",                 "SELECT * FROM ab",
        "FETCH 2147483647 c",                "FETCH 2147483648 c",
        "SELECT * FROM \"T\"",              "SELECT * FROM T",
        "SELECT * FROM \"a\"\"b\"",         "SELECT * FROM \"a\"",
        "SELECT * FROM x$y",                 "SELECT * FROM x$z",
        "SELECT * FROM a-b",                 "SELECT * FROM a--b\n",
        "SELECT * FROM a/b",                 "SELECT * FROM a/*b*/",
        "SELECT * FROM s.t",                 "SELECT * FROM s . t",
        "SELECT * FROM t WHERE x = 1",       "SELECT * FROM t WHERE x = 1.5",
        "SELECT * FROM t WHERE x = 1",       "SELECT * FROM t WHERE x = 1e5",
        "SELECT * FROM t WHERE x = 1",       "SELECT * FROM t WHERE x = .5",
        "SELECT * FROM t WHERE x = 1",       "SELECT * FROM t WHERE x = 12abc",
        "SELECT * FROM t WHERE x = 1",       "SELECT * FROM t WHERE x = $1",
        "SELECT a[1:2] FROM t",              "SELECT a[1::int] FROM t",
        "SELECT * FROM a; DELETE FROM b",    "SELECT * FROM a; SELECT * FROM b",
        "DELETE FROM t WHERE id = 1",        "DELETE FROM u WHERE id = 1",
        "SELECT * FROM u&t",                 "SELECT * FROM U&\"t\"",
        "SELECT * FROM e",                   "SELECT * FROM e'x'",
        "SELECT * FROM t FOR UPDATE",        "SELECT * FROM t",
        "SELECT 1 FROM t WHERE a=-1",        "SELECT 1 FROM t WHERE a= -1",
        "SELECT * FROM t\vx",                "SELECT * FROM t x",
    };
    SqlMemo *memo = sqlparse_memo_new(64);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            SqlAnalysis *a = sqlparse_analyze(memo, texts[i], strlen(texts[i]));
            assert_same_as_fresh(texts[i], a);
            sqlparse_release(a);
        }
    }
    sqlparse_memo_free(memo);
}
END_TEST

/* A time literal makes an analysis differ from its shape's: parse it, remember it by text. */
START_TEST(test_memo_time_literal_not_shared)
{
    SqlMemo *memo = sqlparse_memo_new(16);
    SqlMemoStats st;
    const char *plain = "SELECT * FROM ev WHERE d > '2020-01-01'";
    const char *today = "SELECT * FROM ev WHERE d > 'today'";
    const char *tomorrow = "SELECT * FROM ev WHERE d > 'TOMORROW'";
    const char *escaped = "SELECT * FROM ev WHERE d > E'\\164oday'";
    const char *dollar = "SELECT * FROM ev WHERE d > $q$ now $q$";
    const char *continued = "SELECT * FROM ev WHERE d > 'to'\n'day'";
    const char *plain2 = "SELECT * FROM ev WHERE d > '2021-12-31'";

    SqlAnalysis *a = sqlparse_analyze(memo, plain, strlen(plain));
    ck_assert_int_eq(a->reason, SQL_REASON_NONE);
    sqlparse_release(a);
    const char *timely[] = {today, tomorrow, escaped, dollar, continued};
    for (size_t i = 0; i < sizeof timely / sizeof timely[0]; i++) {
        a = sqlparse_analyze(memo, timely[i], strlen(timely[i]));
        ck_assert_msg(a->reason == SQL_REASON_TIME_LITERAL, "%s: %s", timely[i],
                      sqlparse_reason_name(a->reason));
        sqlparse_release(a);
    }
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.parses, 6);
    ck_assert_uint_eq(st.shape_hits, 0);

    /* By exact text they are remembered. */
    a = sqlparse_analyze(memo, today, strlen(today));
    ck_assert_int_eq(a->reason, SQL_REASON_TIME_LITERAL);
    sqlparse_release(a);
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits, 1);
    ck_assert_uint_eq(st.parses, 6);

    /* And they did not spoil the shape for ordinary dates. */
    a = sqlparse_analyze(memo, plain2, strlen(plain2));
    ck_assert_int_eq(a->reason, SQL_REASON_NONE);
    sqlparse_release(a);
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.shape_hits, 1);
    ck_assert_uint_eq(st.parses, 6);
    sqlparse_memo_free(memo);
}
END_TEST

/* When the first text of a shape has a time literal, later plain ones must not inherit it. */
START_TEST(test_memo_time_literal_first)
{
    SqlMemo *memo = sqlparse_memo_new(16);
    const char *today = "SELECT * FROM ev WHERE d > 'today'";
    const char *plain = "SELECT * FROM ev WHERE d > '2020-01-01'";
    SqlAnalysis *a = sqlparse_analyze(memo, today, strlen(today));
    ck_assert_int_eq(a->reason, SQL_REASON_TIME_LITERAL);
    sqlparse_release(a);
    a = sqlparse_analyze(memo, plain, strlen(plain));
    ck_assert_int_eq(a->reason, SQL_REASON_NONE);
    sqlparse_release(a);
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.parses, 2);
    sqlparse_memo_free(memo);
}
END_TEST

/* Analyses that depend on a constant's value, and errors, never share a shape. */
START_TEST(test_memo_constant_dependent_not_shared)
{
    SqlMemo *memo = sqlparse_memo_new(16);
    SqlAnalysis *a = sqlparse_analyze(memo, "SELECT 1 2", 10);
    ck_assert_str_eq(a->error, "syntax error at or near \"2\"");
    sqlparse_release(a);
    a = sqlparse_analyze(memo, "SELECT 1 3", 10);
    ck_assert_str_eq(a->error, "syntax error at or near \"3\"");
    sqlparse_release(a);

    const char *ser = "SET transaction_isolation = 'serializable'";
    const char *rc = "SET transaction_isolation = 'read committed'";
    a = sqlparse_analyze(memo, ser, strlen(ser));
    ck_assert_int_eq(a->isolation, SQL_ISO_SERIALIZABLE);
    sqlparse_release(a);
    a = sqlparse_analyze(memo, rc, strlen(rc));
    ck_assert_int_eq(a->isolation, SQL_ISO_READ_COMMITTED);
    sqlparse_release(a);

    const char *on = "EXPLAIN (ANALYZE 1) DELETE FROM t";
    const char *off = "EXPLAIN (ANALYZE 0) DELETE FROM t";
    a = sqlparse_analyze(memo, on, strlen(on));
    ck_assert_uint_eq(a->n_writes, 1);
    sqlparse_release(a);
    a = sqlparse_analyze(memo, off, strlen(off));
    ck_assert_uint_eq(a->n_writes, 0);
    sqlparse_release(a);

    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.shape_hits, 0);
    ck_assert_uint_eq(st.parses, 6);
    sqlparse_memo_free(memo);
}
END_TEST

/* Custom settings a statement changes, by name: the session probe reads them back. */
START_TEST(test_custom_settings)
{
    static const struct {
        const char *sql;
        const char *names; /* comma-separated, in order */
    } cases[] = {
        {"SET app.tenant = '42'", "app.tenant"},
        {"SET LOCAL app.tenant TO 7", "app.tenant"},
        {"SET \"App.Tenant\" = 1", "app.tenant"},
        {"RESET app.user_id", "app.user_id"},
        {"SELECT set_config('app.user', 'x', false)", "app.user"},
        {"SELECT set_config('App.Role', 'x', true), set_config('app.user', 'y', false)",
         "app.role,app.user"},
        {"SELECT set_config(current_user, 'x', false)", ""},
        {"SET search_path = public", ""},
        {"SELECT set_config('search_path', 'x', false)", ""},
        {"RESET ALL", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        SqlAnalysis *a = sqlparse_analyze(NULL, cases[i].sql, strlen(cases[i].sql));
        char got[256] = "";
        for (size_t k = 0; k < a->n_settings; k++) {
            strcat(got, k ? "," : "");
            strcat(got, a->settings[k].name);
        }
        ck_assert_msg(strcmp(got, cases[i].names) == 0, "%s: settings \"%s\", want \"%s\"",
                      cases[i].sql, got, cases[i].names);
        ck_assert_msg(a->changes_session, "%s must change the session", cases[i].sql);
        sqlparse_release(a);
    }
    /* set_config's name is a constant: two names never share one memoised analysis. */
    SqlMemo *memo = sqlparse_memo_new(16);
    const char *x = "SELECT set_config('app.a', '1', false)";
    const char *y = "SELECT set_config('app.b', '1', false)";
    SqlAnalysis *a = sqlparse_analyze(memo, x, strlen(x));
    sqlparse_release(a);
    a = sqlparse_analyze(memo, y, strlen(y));
    ck_assert_str_eq(a->settings[0].name, "app.b");
    sqlparse_release(a);
    sqlparse_memo_free(memo);

    a = sqlparse_analyze(NULL, "DISCARD ALL", 11);
    ck_assert(a->discards_all && a->discards_temp);
    sqlparse_release(a);
    a = sqlparse_analyze(NULL, "DISCARD TEMP", 12);
    ck_assert(!a->discards_all && a->discards_temp);
    sqlparse_release(a);
}
END_TEST

START_TEST(test_memo_lru_eviction)
{
    SqlMemo *memo = sqlparse_memo_new(2);
    SqlMemoStats st;
    /* Quoted constants: past the quick shape, so the text map answers first. */
    const char *a = "SELECT 'k' FROM a", *b = "SELECT 'k' FROM b", *c = "SELECT 'k' FROM c";
    sqlparse_release(sqlparse_analyze(memo, a, strlen(a)));
    sqlparse_release(sqlparse_analyze(memo, b, strlen(b)));
    sqlparse_release(sqlparse_analyze(memo, a, strlen(a))); /* a is now the most recent */
    sqlparse_release(sqlparse_analyze(memo, c, strlen(c))); /* evicts b */
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.entries, 2);
    ck_assert_uint_eq(st.exact_hits, 1);
    ck_assert_uint_eq(st.parses, 3);

    sqlparse_release(sqlparse_analyze(memo, a, strlen(a)));
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits, 2);
    /* b left the text map; the shape map (its own LRU, touched only by shape lookups) had
     * evicted a's shape instead, so b's is still there. */
    sqlparse_release(sqlparse_analyze(memo, b, strlen(b)));
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits, 2);
    ck_assert_uint_eq(st.shape_hits, 1);
    ck_assert_uint_eq(st.parses, 3);
    ck_assert_uint_eq(st.entries, 2);
    /* Three new shapes push everything out: a comes back only by parsing. */
    const char *d = "SELECT 'k' FROM d", *e = "SELECT 'k' FROM e", *f = "SELECT 'k' FROM f";
    sqlparse_release(sqlparse_analyze(memo, d, strlen(d)));
    sqlparse_release(sqlparse_analyze(memo, e, strlen(e)));
    sqlparse_release(sqlparse_analyze(memo, f, strlen(f)));
    sqlparse_release(sqlparse_analyze(memo, a, strlen(a)));
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits, 2);
    ck_assert_uint_eq(st.shape_hits, 1);
    ck_assert_uint_eq(st.parses, 7);
    ck_assert_uint_eq(st.entries, 2);
    sqlparse_memo_free(memo);
}
END_TEST

START_TEST(test_memo_refcount_survives_eviction)
{
    SqlMemo *memo = sqlparse_memo_new(2);
    const char *sql = "SELECT * FROM kept JOIN s.other ON true";
    SqlAnalysis *kept = sqlparse_analyze(memo, sql, strlen(sql));
    const char *more[] = {"SELECT 1 FROM x1", "UPDATE x2 SET a = 1", "DELETE FROM x3",
                          "INSERT INTO x4 VALUES (1)"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        sqlparse_release(sqlparse_analyze(memo, more[i], strlen(more[i])));
    ck_assert_uint_eq(kept->n_reads, 2);
    ck_assert_str_eq(kept->reads[0].name, "kept");
    ck_assert_str_eq(kept->reads[1].schema, "s");

    /* Held by a session and by the memo again: both may go, in any order. */
    SqlAnalysis *again = sqlparse_analyze(memo, sql, strlen(sql));
    ck_assert_ptr_ne(again, kept);
    sqlparse_memo_free(memo);
    ck_assert_str_eq(again->reads[1].name, "other");
    sqlparse_release(again);
    ck_assert_str_eq(kept->reads[0].name, "kept");
    ck_assert_ptr_eq(sqlparse_ref(kept), kept);
    sqlparse_release(kept);
    sqlparse_release(kept);
    sqlparse_release(NULL);
}
END_TEST

START_TEST(test_memo_capacity_zero_and_null)
{
    SqlMemo *memo = sqlparse_memo_new(0);
    ck_assert_ptr_nonnull(memo);
    for (int i = 0; i < 3; i++)
        sqlparse_release(sqlparse_analyze(memo, "SELECT 1", 8));
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.parses, 3);
    ck_assert_uint_eq(st.entries, 0);
    sqlparse_memo_free(memo);
    sqlparse_memo_free(NULL);
    sqlparse_memo_stats(NULL, &st);
    ck_assert_uint_eq(st.parses, 0);
}
END_TEST

/* The text is len bytes, not NUL-terminated, and ends at a NUL inside. */
START_TEST(test_text_bounds)
{
    SqlMemo *memo = sqlparse_memo_new(4);
    char *unterminated = malloc(8);
    memcpy(unterminated, "SELECT 1", 8);
    SqlAnalysis *a = sqlparse_analyze(memo, unterminated, 8);
    ck_assert_int_eq(a->kind, SQL_KIND_READ);
    sqlparse_release(a);
    free(unterminated);

    a = sqlparse_analyze(memo, "SELECT 1\0; DROP TABLE users", 27);
    ck_assert_int_eq(a->kind, SQL_KIND_READ);
    ck_assert_int_eq(a->n_statements, 1);
    ck_assert_uint_eq(a->n_writes, 0);
    sqlparse_release(a);
    SqlMemoStats st;
    /* The quick shape and the text map both stop at the NUL. */
    a = sqlparse_analyze(memo, "SELECT 'x'\0; DROP TABLE users", 29);
    sqlparse_release(a);
    a = sqlparse_analyze(memo, "SELECT 'x'\0; DELETE FROM users", 30);
    ck_assert_int_eq(a->kind, SQL_KIND_READ);
    ck_assert_uint_eq(a->n_writes, 0);
    sqlparse_release(a);
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.shape_hits, 1);
    ck_assert_uint_eq(st.exact_hits, 1);
    ck_assert_uint_eq(st.parses, 2);

    a = sqlparse_analyze(memo, "SELECT 1; DROP TABLE users", 8);
    ck_assert_int_eq(a->n_statements, 1);
    sqlparse_release(a);
    a = sqlparse_analyze(NULL, NULL, 0);
    ck_assert_int_eq(a->kind, SQL_KIND_EMPTY);
    sqlparse_release(a);
    sqlparse_memo_free(memo);
}
END_TEST

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * n + strlen(tail) + 1;
    char *s = malloc(len), *p = s;
    p = stpcpy(p, head);
    for (size_t i = 0; i < n; i++)
        p = stpcpy(p, unit);
    strcpy(p, tail);
    return s;
}

/* Deep statements are refused before libpg_query could overflow the stack; long flat ones
 * are analysed; neither is remembered beyond the memo's byte budget. */
START_TEST(test_deep_and_huge)
{
    SqlMemo *memo = sqlparse_memo_new(16);
    char *deep = repeat("SELECT ", "1+", 50000, "1");
    SqlAnalysis *a = sqlparse_analyze(memo, deep, strlen(deep));
    ck_assert_int_eq(a->kind, SQL_KIND_ERROR);
    ck_assert_int_eq(a->reason, SQL_REASON_TOO_COMPLEX);
    ck_assert(a->invalidate_all);
    sqlparse_release(a);
    a = sqlparse_analyze(NULL, deep, strlen(deep));
    ck_assert_int_eq(a->reason, SQL_REASON_TOO_COMPLEX);
    sqlparse_release(a);
    free(deep);

    char *parens = repeat("SELECT ", "(", 100000, "1");
    a = sqlparse_analyze(memo, parens, strlen(parens));
    ck_assert_int_eq(a->kind, SQL_KIND_ERROR);
    sqlparse_release(a);
    free(parens);

    char *unions = repeat("", "SELECT a FROM t UNION ALL ", 500, "SELECT a FROM u");
    a = sqlparse_analyze(memo, unions, strlen(unions));
    ck_assert_int_eq(a->reason, SQL_REASON_NONE);
    ck_assert_uint_eq(a->n_reads, 2);
    sqlparse_release(a);
    free(unions);

    char *in_list = repeat("SELECT * FROM t WHERE id IN (0", ", 12345", 40000, ")");
    for (int i = 0; i < 2; i++) {
        a = sqlparse_analyze(memo, in_list, strlen(in_list));
        ck_assert_int_eq(a->kind, SQL_KIND_READ);
        ck_assert_int_eq(a->reason, SQL_REASON_NONE);
        sqlparse_release(a);
    }
    free(in_list);

    char *or_chain = repeat("SELECT * FROM t WHERE ", "a = 1 OR ", 30000, "true");
    a = sqlparse_analyze(NULL, or_chain, strlen(or_chain));
    ck_assert_int_eq(a->reason, SQL_REASON_NONE);
    sqlparse_release(a);
    free(or_chain);

    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    ck_assert_uint_eq(st.exact_hits, 0); /* the 280 kB IN list is over the byte budget */
    sqlparse_memo_free(memo);
}
END_TEST

/* Random bytes, including NULs and high bytes: an analysis every time, nothing else. */
START_TEST(test_garbage)
{
    SqlMemo *memo = sqlparse_memo_new(32);
    static const char alphabet[] = "SELECT FROM WHERE ()'\"$;,.*+-/ \n\t\\0123abcXYZ\xc3\xa9\x01";
    unsigned seed = 12345;
    char buf[300];
    for (int i = 0; i < 1500; i++) {
        size_t len = (size_t)(rand_r(&seed) % (int)sizeof buf);
        for (size_t k = 0; k < len; k++) {
            int r = rand_r(&seed);
            buf[k] = r % 7 == 0 ? (char)(r >> 8) : alphabet[(size_t)r % (sizeof alphabet - 1)];
        }
        SqlAnalysis *a = sqlparse_analyze(memo, buf, len);
        ck_assert_ptr_nonnull(a);
        ck_assert_int_ge(a->kind, SQL_KIND_READ);
        ck_assert_int_le(a->kind, SQL_KIND_ERROR);
        sqlparse_release(a);
    }
    sqlparse_memo_free(memo);
}
END_TEST

/* ---- small lookups ---- */

START_TEST(test_is_time_literal)
{
    static const struct {
        const char *value;
        bool want;
    } v[] = {
        {"now", true},
        {"NOW", true},
        {"  today  ", true},
        {"Tomorrow", true},
        {"yesterday", true},
        {"\tnow\n", true},
        {"today 12:00", true},
        {"tomorrow UTC", true},
        {"yesterday allballs", true},
        {"nowhere", false},
        {"snow", false},
        {"know", false},
        {"2020-01-01", false},
        {"", false},
        {"no w", false},
        {"epoch", false},
        {"infinity", false},
        {"12:00", false},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ck_assert_msg(sqlparse_is_time_literal(v[i].value, strlen(v[i].value)) == v[i].want, "'%s'",
                      v[i].value);
    ck_assert(sqlparse_is_time_literal("nowx", 3));
    ck_assert(!sqlparse_is_time_literal("now", 2));
    ck_assert(sqlparse_is_time_literal("x\0now", 5));
    ck_assert(!sqlparse_is_time_literal(NULL, 0));
}
END_TEST

START_TEST(test_builtin_volatility)
{
    static const struct {
        const char *name;
        char want;
    } v[] = {
        {"now", 's'},
        {"random", 'v'},
        {"nextval", 'v'},
        {"clock_timestamp", 'v'},
        {"gen_random_uuid", 'v'},
        {"current_setting", 's'},
        {"set_config", 'v'},
        {"lower", 'i'},
        {"abs", 'i'},
        {"length", 's'}, /* length(bytea, name) is stable */
        {"count", 'i'},
        {"RI_FKey_cascade_del", 'v'}, /* the first entry (upper case sorts first) */
        {"xpath_exists", 'i'},        /* the last */
        {"no_such_function", 0},
        {"", 0},
        {"NOW", 0},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        ck_assert_msg(sqlparse_builtin_volatility(v[i].name) == v[i].want, "%s", v[i].name);
    ck_assert_int_eq(sqlparse_builtin_volatility(NULL), 0);

    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("length", 1), 'i');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("length", 2), 's');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("length", -1), 's');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("length", 7), 's');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("to_timestamp", 1), 'i');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("to_timestamp", 2), 's');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("generate_series", 2), 'i');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("now", 0), 's');
    ck_assert_int_eq(sqlparse_builtin_volatility_nargs("my_func", 1), 0);
}
END_TEST

START_TEST(test_names)
{
    ck_assert_str_eq(sqlparse_reason_name(SQL_REASON_NONE), "none");
    ck_assert_str_eq(sqlparse_reason_name(SQL_REASON_VOLATILE_FUNCTION), "volatile_function");
    ck_assert_str_eq(sqlparse_reason_name(SQL_REASON_TIME_LITERAL), "time_literal");
    ck_assert_str_eq(sqlparse_reason_name(SQL_REASON_TOO_COMPLEX), "too_complex");
    ck_assert_str_eq(sqlparse_reason_name(SQL_REASON_COUNT_), "unknown");
    ck_assert_str_eq(sqlparse_reason_name((SqlReason)-1), "unknown");
    for (int i = 0; i < SQL_REASON_COUNT_; i++) {
        const char *n = sqlparse_reason_name((SqlReason)i);
        ck_assert_str_ne(n, "unknown");
        for (int j = 0; j < i; j++)
            ck_assert_str_ne(n, sqlparse_reason_name((SqlReason)j));
    }
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_READ), "read");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_WRITE), "write");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_TX), "tx");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_SESSION), "session");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_DDL), "ddl");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_OTHER), "other");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_EMPTY), "empty");
    ck_assert_str_eq(sqlparse_kind_name(SQL_KIND_ERROR), "error");
    ck_assert_str_eq(sqlparse_kind_name((SqlKind)99), "unknown");
}
END_TEST

static Suite *sqlparse_suite(void)
{
    Suite *s = suite_create("sqlparse");
    TCase *tc = tcase_create("statements");
    tcase_add_loop_test(tc, test_table, 0, N_CASES);
    tcase_add_test(tc, test_table_is_big_enough);
    tcase_add_test(tc, test_prepared_statement_names);
    tcase_add_test(tc, test_default_isolation);
    tcase_add_test(tc, test_command_and_error);
    tcase_add_test(tc, test_reasons_mask);
    tcase_add_test(tc, test_dedup_and_order);
    tcase_add_test(tc, test_function_nargs);
    suite_add_tcase(s, tc);

    tc = tcase_create("memo");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_memo_exact_hit);
    tcase_add_test(tc, test_memo_shape_hit);
    tcase_add_test(tc, test_memo_quick_shape_keeps_apart);
    tcase_add_test(tc, test_memo_time_literal_not_shared);
    tcase_add_test(tc, test_memo_time_literal_first);
    tcase_add_test(tc, test_memo_constant_dependent_not_shared);
    tcase_add_test(tc, test_custom_settings);
    tcase_add_test(tc, test_memo_lru_eviction);
    tcase_add_test(tc, test_memo_refcount_survives_eviction);
    tcase_add_test(tc, test_memo_capacity_zero_and_null);
    tcase_add_test(tc, test_text_bounds);
    tcase_add_test(tc, test_deep_and_huge);
    tcase_add_test(tc, test_garbage);
    suite_add_tcase(s, tc);

    tc = tcase_create("lookups");
    tcase_add_test(tc, test_is_time_literal);
    tcase_add_test(tc, test_builtin_volatility);
    tcase_add_test(tc, test_names);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sqlparse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sqlparse_exit(); /* pg_query_exit(), when this process (not only forks) used libpg_query */
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
