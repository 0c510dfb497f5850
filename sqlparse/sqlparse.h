/*
 * sqlparse.h — statement analysis on libpg_query: kind, relations read and written, functions
 * called, cacheable or the reason why not. Memoised per text and per shape (constants
 * stripped), so the parser runs once per distinct statement shape. No sockets, no libev, no
 * catalog: views, temp tables and user functions' volatility are the proxy's to apply.
 */
#ifndef PGSTASH_SQLPARSE_H
#define PGSTASH_SQLPARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    SQL_KIND_READ,    /* SELECT, VALUES, TABLE, WITH … SELECT without data-modifying CTEs */
    SQL_KIND_WRITE,   /* INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY FROM, SELECT INTO,
                         REFRESH MATERIALIZED VIEW, data-modifying WITH */
    SQL_KIND_TX,      /* BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
                         RELEASE, PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED,
                         SET TRANSACTION */
    SQL_KIND_SESSION, /* SET, RESET, DISCARD, SET ROLE, SET SESSION AUTHORIZATION,
                         SET SESSION CHARACTERISTICS */
    SQL_KIND_DDL,     /* CREATE, ALTER, DROP, COMMENT, GRANT, REVOKE, POLICY, CREATE TABLE AS,
                         ... */
    SQL_KIND_OTHER,   /* CALL, DO, EXPLAIN, SHOW, COPY TO, LISTEN, NOTIFY, VACUUM, ANALYZE,
                         LOCK, PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, CLOSE, CLUSTER,
                         REINDEX, CHECKPOINT, SET CONSTRAINTS, ... */
    SQL_KIND_EMPTY,   /* empty string, only comments or semicolons */
    SQL_KIND_ERROR,   /* libpg_query could not parse it (or it is too deeply nested to try) */
} SqlKind;

/* Why a statement is not cacheable. SQL_REASON_NONE means cacheable as far as the text
 * tells; the proxy may still refuse it for catalog or session reasons. When several apply,
 * SqlAnalysis.reason is the first in this order (SqlAnalysis.reasons has them all):
 *   PARSE_ERROR, TOO_COMPLEX, MULTI_STATEMENT, MODIFYING_CTE, SELECT_INTO, NOT_READ, LOCKING,
 *   TEMP_TABLE, SYSTEM_CATALOG, TABLESAMPLE, VOLATILE_FUNCTION, SQL_VALUE_FUNCTION,
 *   TIME_LITERAL
 * i.e. what the statement is before what it reads, and what it reads before how it computes. */
typedef enum {
    SQL_REASON_NONE = 0,           /* cacheable */
    SQL_REASON_NOT_READ,           /* not a SELECT-like statement (also EMPTY) */
    SQL_REASON_MULTI_STATEMENT,    /* more than one statement in the string */
    SQL_REASON_PARSE_ERROR,        /* libpg_query could not parse it */
    SQL_REASON_LOCKING,            /* FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE */
    SQL_REASON_VOLATILE_FUNCTION,  /* calls a built-in stable/volatile function (user functions
                                      are left to the proxy, which knows pg_proc) */
    SQL_REASON_SQL_VALUE_FUNCTION, /* CURRENT_TIMESTAMP, current_user, ... */
    SQL_REASON_SYSTEM_CATALOG,     /* reads pg_catalog.*, information_schema.*, pg_toast.*, or an
                                      unqualified relation named pg_* */
    SQL_REASON_TEMP_TABLE,         /* reads pg_temp.* or pg_temp_N.* */
    SQL_REASON_MODIFYING_CTE,      /* WITH x AS (INSERT/UPDATE/DELETE …) */
    SQL_REASON_SELECT_INTO,        /* SELECT … INTO t */
    SQL_REASON_TABLESAMPLE,        /* TABLESAMPLE */
    SQL_REASON_TIME_LITERAL,       /* 'now', 'today', 'tomorrow', 'yesterday' literals (see
                                      sqlparse_is_time_literal) */
    SQL_REASON_PARAM_UNSUPPORTED,  /* reserved for the proxy: non-cacheable parameter use */
    SQL_REASON_TOO_COMPLEX,        /* nested too deeply to analyse safely: treated like a parse
                                      error (kind ERROR, invalidate_all) */
    SQL_REASON_COUNT_
} SqlReason;

typedef enum {
    SQL_TX_NONE,              /* not a transaction-control statement */
    SQL_TX_BEGIN,             /* BEGIN / START TRANSACTION */
    SQL_TX_COMMIT,            /* COMMIT / END */
    SQL_TX_ROLLBACK,          /* ROLLBACK / ABORT */
    SQL_TX_SAVEPOINT,         /* SAVEPOINT x */
    SQL_TX_RELEASE,           /* RELEASE [SAVEPOINT] x */
    SQL_TX_ROLLBACK_TO,       /* ROLLBACK TO [SAVEPOINT] x */
    SQL_TX_PREPARE,           /* PREPARE TRANSACTION 'x' */
    SQL_TX_COMMIT_PREPARED,   /* COMMIT PREPARED 'x' */
    SQL_TX_ROLLBACK_PREPARED, /* ROLLBACK PREPARED 'x' */
    SQL_TX_SET_TRANSACTION,   /* SET TRANSACTION … (kind TX) / SET SESSION CHARACTERISTICS …
                                 (kind SESSION: it sets the default for later transactions) */
} SqlTxOp;

typedef enum {
    SQL_ISO_DEFAULT,          /* not stated */
    SQL_ISO_READ_UNCOMMITTED, /* behaves as READ COMMITTED in PostgreSQL */
    SQL_ISO_READ_COMMITTED,
    SQL_ISO_REPEATABLE_READ,
    SQL_ISO_SERIALIZABLE,
} SqlIsolation;

/* A relation named in the statement. CTE names are never reported as relations. */
typedef struct {
    char *schema; /* schema as written (case-folded unless quoted), NULL if unqualified */
    char *name;   /* bare name, case-folded unless quoted */
} SqlRelation;

/* A function called explicitly anywhere in the statement (FuncCall nodes, CALL's procedure):
 * not the functions behind operators or casts, which are immutable or settings-dependent. */
typedef struct {
    char *schema; /* NULL if unqualified */
    char *name;   /* case-folded unless quoted */
    int nargs;    /* arguments passed (for sqlparse_builtin_volatility_nargs or pg_proc's
                     pronargs); -1 with VARIADIC or when calls of the name differ */
} SqlFunction;

/*
 * The analysis of one SQL string (which may hold several statements: their facts are
 * merged; kind and command describe the first). Immutable once returned; reference-counted
 * so sessions may keep one beyond the memo's eviction. Not shared between threads. Lists are
 * in order of discovery, without duplicates ((schema, name) pairs compared exactly). Every
 * string in it belongs to it and lives as long as it does.
 */
typedef struct SqlAnalysis {
    SqlKind kind;        /* the first statement's kind (ERROR if any failed to parse) */
    SqlReason reason;    /* NONE = cacheable as far as the text tells */
    uint32_t reasons;    /* bit (1u << r) for every reason r that applies */
    int n_statements;    /* statements in the string (0 for EMPTY and ERROR) */
    const char *command; /* node type of the first statement, e.g. "SelectStmt"; ""
                            for EMPTY and ERROR (static storage) */

    SqlRelation *reads; /* relations read (deduplicated), excluding CTE names */
    size_t n_reads;
    SqlRelation *writes; /* relations written (deduplicated): DML targets (also in
                            CTEs and EXPLAIN ANALYZE), TRUNCATE, COPY FROM, SELECT INTO,
                            CREATE TABLE AS, REFRESH MATERIALIZED VIEW, CREATE/ALTER/
                            DROP/RENAME of tables, views, sequences, indexes (and their
                            tables), rules and triggers (their tables), both names of a
                            rename, parents of CREATE TABLE … INHERITS/PARTITION OF */
    size_t n_writes;
    SqlFunction *functions; /* functions called (deduplicated), also inside writes */
    size_t n_functions;
    SqlRelation *settings;  /* custom settings (names with a dot, lower-cased; in `name`) that
                               SET/RESET or set_config() with a constant name change */
    size_t n_settings;

    bool invalidate_all;  /* GRANT, REVOKE, CREATE/ALTER/DROP ROLE or POLICY, ALTER ROLE/
                             DATABASE … SET, ALTER TABLE … ROW LEVEL SECURITY, ALTER
                             DEFAULT PRIVILEGES, … OWNER TO, DROP/REASSIGN OWNED,
                             CREATE/ALTER/DROP FUNCTION or PROCEDURE, DROP … CASCADE,
                             DROP/RENAME SCHEMA, any other DDL not clearly about named
                             tables, parse errors (a newer server's write?), TOO_COMPLEX */
    bool changes_session; /* SET/RESET/DISCARD/SET ROLE/SET SESSION AUTHORIZATION, or a
                             call of set_config(): session settings may have changed */
    bool creates_temp;    /* CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP, ... */
    bool discards_temp;   /* DISCARD TEMP / DISCARD ALL */
    bool discards_all;    /* DISCARD ALL: also deallocates every prepared statement */
    bool is_ddl;          /* any statement is DDL (catalog must be re-read) */
    bool has_locking;     /* FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE anywhere */
    bool has_params;      /* references $n parameters */

    SqlTxOp tx_op;                  /* last transaction-control op in the string */
    bool has_commit;                /* some statement commits: COMMIT, END, PREPARE TRANSACTION,
                                       COMMIT PREPARED */
    bool has_rollback;              /* some statement rolls back: ROLLBACK, ABORT, ROLLBACK TO */
    bool has_tx_control;            /* any SQL_KIND_TX statement */
    SqlIsolation isolation;         /* isolation level set by BEGIN/START/SET TRANSACTION (or SET
                                       transaction_isolation) for the current transaction */
    bool sets_default_isolation;    /* SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION …,
                                       SET default_transaction_isolation, its RESET, RESET ALL,
                                       DISCARD ALL: later transactions start at default_isolation */
    SqlIsolation default_isolation; /* the new default; SQL_ISO_DEFAULT = the server's */

    /* SQL-level prepared statements. For PREPARE, reads/writes/functions describe the
     * inner statement, which runs only at EXECUTE. */
    char *prepare_name;       /* PREPARE name AS …: name, else NULL */
    SqlKind prepare_kind;     /* PREPARE: the inner statement's kind and reason, which apply */
    SqlReason prepare_reason; /* at each EXECUTE of it (else READ/NONE) */
    char *execute_name;       /* EXECUTE name: name, else NULL */
    char *deallocate_name;    /* DEALLOCATE name: name; "" for DEALLOCATE ALL; else NULL */

    char *error; /* parse error message for SQL_KIND_ERROR, else NULL */
    char *normalized; /* the shape for reports, constants as $n (memoised analyses only) */
    void *user_slot;  /* free for the memo's owner (one thread): e.g. per-shape counters */

    int refcount_; /* private: see sqlparse_ref/sqlparse_release */
} SqlAnalysis;

typedef struct SqlMemo SqlMemo;

/* A memo of analyses, bounded to `capacity` texts and as many shapes (least recently used
 * evicted), and to SQLPARSE_MEMO_BYTES_PER_ENTRY * capacity bytes (at least 1 MiB) of texts
 * and analyses each; an entry bigger than 1/16 of that is analysed but not remembered.
 * capacity 0 remembers nothing. One per worker thread. Free with sqlparse_memo_free (NULL is
 * fine); analyses handed out stay valid after it. NULL on out-of-memory. */
#define SQLPARSE_MEMO_BYTES_PER_ENTRY 4096
SqlMemo *sqlparse_memo_new(size_t capacity) __attribute__((warn_unused_result));
void sqlparse_memo_free(SqlMemo *memo);

/* Counters of a memo, for stats and tests. */
typedef struct {
    uint64_t exact_hits; /* found by exact text */
    uint64_t shape_hits; /* found by constant-stripped text (scanner only) */
    uint64_t parses;     /* full libpg_query parses */
    size_t entries;      /* texts held now */
} SqlMemoStats;
void sqlparse_memo_stats(const SqlMemo *memo, SqlMemoStats *out);

/*
 * Analyses `text` (len bytes, need not be NUL-terminated; a NUL inside ends it). Returns a
 * reference the caller releases with sqlparse_release(); NULL only on out-of-memory.
 * With memo == NULL the text is parsed and nothing is remembered. A memo hit by exact text
 * allocates nothing. Needs about 2 MiB of stack for the deepest statement it accepts
 * (libpg_query and protobuf-c recurse per tree level); deeper ones get TOO_COMPLEX.
 */
SqlAnalysis *sqlparse_analyze(SqlMemo *memo, const char *text, size_t len)
    __attribute__((warn_unused_result));

SqlAnalysis *sqlparse_ref(SqlAnalysis *a); /* +1 reference; returns a */
void sqlparse_release(SqlAnalysis *a);     /* -1 reference; frees at zero; NULL is fine */

/*
 * Volatility of a function known without the catalog: 'i' immutable, 's' stable,
 * 'v' volatile, 0 unknown (user-defined). Used when the database's pg_proc cannot be read,
 * and for functions of pg_catalog (most common built-ins). The most volatile class over all
 * overloads of the name in PostgreSQL 15's pg_catalog (generated table).
 */
char sqlparse_builtin_volatility(const char *name);

/* The same for a call with nargs arguments (-1: unknown): the most volatile class over the
 * overloads taking that many, so length(text) is immutable although length(bytea, name) is
 * stable. What the analysis uses for VOLATILE_FUNCTION. */
char sqlparse_builtin_volatility_nargs(const char *name, int nargs);

/* True when `value` (len bytes) could be a date/time input that PostgreSQL resolves to the
 * current time: it contains now, today, tomorrow or yesterday as a word, in any case ('now',
 * ' Today ', and also 'today 12:00', 'tomorrow UTC', which PostgreSQL accepts too). Errs on
 * the side of true ('buy now' is a harmless false positive). Used for string literals and
 * for text-format parameter values. */
bool sqlparse_is_time_literal(const char *value, size_t len);

/* Frees libpg_query's memory of the calling thread, for leak checkers at process exit. Acts
 * only in the main thread and only if it used libpg_query: other threads must leave it to
 * libpg_query's own thread-exit cleanup (calling pg_query_exit() there frees twice and
 * crashes; so does calling it where libpg_query was never used). */
void sqlparse_exit(void);

/* Short, stable name of a reason code ("volatile_function", ...) for stats and logs. */
const char *sqlparse_reason_name(SqlReason reason);
const char *sqlparse_kind_name(SqlKind kind);

#endif
