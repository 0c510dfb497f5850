/*
 * sqlparse.h — statement analysis on libpg_query. One call turns SQL text into its kind,
 * the relations it reads and writes, the functions it calls, and whether it is cacheable
 * (or the reason code why not). Analyses are memoised per statement text, and for texts
 * without special literals per text with constants stripped, so the parser runs once per
 * distinct statement shape. Knows nothing of sockets, libev or the database's catalog:
 * catalog facts (views, temp tables, volatility of user functions) are applied by the proxy.
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
    SQL_KIND_TX,      /* BEGIN, START TRANSACTION, COMMIT, ROLLBACK, SAVEPOINT, RELEASE,
                         PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED, SET TRANSACTION */
    SQL_KIND_SESSION, /* SET, RESET, DISCARD, SET ROLE, SET SESSION AUTHORIZATION */
    SQL_KIND_DDL,     /* CREATE, ALTER, DROP, COMMENT, GRANT, REVOKE, POLICY, ... */
    SQL_KIND_OTHER,   /* CALL, DO, EXPLAIN, SHOW, COPY TO, LISTEN, NOTIFY, VACUUM, ANALYZE,
                         LOCK, PREPARE, EXECUTE, DEALLOCATE, DECLARE, FETCH, CLOSE, ... */
    SQL_KIND_EMPTY,   /* empty string or only comments */
    SQL_KIND_ERROR,   /* libpg_query could not parse it */
} SqlKind;

/* Why a statement is not cacheable. SQL_REASON_NONE means cacheable as far as the text
 * tells; the proxy may still refuse it for catalog or session reasons. */
typedef enum {
    SQL_REASON_NONE = 0,          /* cacheable */
    SQL_REASON_NOT_READ,          /* not a SELECT-like statement */
    SQL_REASON_MULTI_STATEMENT,   /* more than one statement in the string */
    SQL_REASON_PARSE_ERROR,       /* libpg_query could not parse it */
    SQL_REASON_LOCKING,           /* FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE */
    SQL_REASON_VOLATILE_FUNCTION, /* calls a built-in stable/volatile function */
    SQL_REASON_SQL_VALUE_FUNCTION,/* CURRENT_TIMESTAMP, current_user, ... */
    SQL_REASON_SYSTEM_CATALOG,    /* reads pg_catalog.*, pg_* relations, information_schema */
    SQL_REASON_TEMP_TABLE,        /* reads pg_temp.* */
    SQL_REASON_MODIFYING_CTE,     /* WITH x AS (INSERT/UPDATE/DELETE …) */
    SQL_REASON_SELECT_INTO,       /* SELECT … INTO t */
    SQL_REASON_TABLESAMPLE,       /* TABLESAMPLE */
    SQL_REASON_TIME_LITERAL,      /* 'now', 'today', 'tomorrow', 'yesterday' literals */
    SQL_REASON_PARAM_UNSUPPORTED, /* reserved for the proxy: non-cacheable parameter use */
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
    SQL_TX_SET_TRANSACTION,   /* SET TRANSACTION … / SET SESSION CHARACTERISTICS … */
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

/* A function called anywhere in the statement (including operators' functions? no:
 * only explicit calls, FuncCall nodes). */
typedef struct {
    char *schema; /* NULL if unqualified */
    char *name;   /* case-folded unless quoted */
} SqlFunction;

/*
 * The analysis of one SQL string (which may hold several statements: their facts are
 * merged, in_order flags say what happened). Immutable once returned; reference-counted
 * so sessions may keep one beyond the memo's eviction. Not shared between threads.
 */
typedef struct SqlAnalysis {
    SqlKind kind;             /* the first statement's kind (ERROR if any failed to parse) */
    SqlReason reason;         /* NONE = cacheable as far as the text tells */
    int n_statements;         /* statements in the string (0 for EMPTY) */
    const char *command;      /* node type of the first statement, e.g. "SelectStmt" */

    SqlRelation *reads;       /* relations read (deduplicated), excluding CTE names */
    size_t n_reads;
    SqlRelation *writes;      /* relations written (deduplicated): DML targets, TRUNCATE,
                                 COPY FROM, CREATE/ALTER/DROP of tables, SELECT INTO,
                                 CREATE TABLE AS, REFRESH MATERIALIZED VIEW, ... */
    size_t n_writes;
    SqlFunction *functions;   /* functions called (deduplicated) */
    size_t n_functions;

    bool invalidate_all;      /* GRANT, REVOKE, ALTER/CREATE/DROP ROLE or POLICY, ALTER TABLE
                                 … ROW LEVEL SECURITY, ALTER DEFAULT PRIVILEGES,
                                 an unparseable or unknown write */
    bool changes_session;     /* SET/RESET/DISCARD/SET ROLE/SET SESSION AUTHORIZATION, or a
                                 call of set_config(): session settings may have changed */
    bool creates_temp;        /* CREATE TEMP TABLE/VIEW/SEQUENCE, SELECT INTO TEMP, ... */
    bool discards_temp;       /* DISCARD TEMP / DISCARD ALL */
    bool is_ddl;              /* any statement is DDL (catalog must be re-read) */
    bool has_locking;         /* FOR UPDATE/SHARE anywhere */
    bool has_params;          /* references $n parameters */

    SqlTxOp tx_op;            /* last transaction-control op in the string */
    bool has_commit;          /* some statement commits: COMMIT, END, PREPARE TRANSACTION,
                                 COMMIT PREPARED */
    bool has_rollback;        /* some statement rolls back: ROLLBACK, ABORT, ROLLBACK TO */
    bool has_tx_control;      /* any SQL_KIND_TX statement */
    SqlIsolation isolation;   /* isolation level set by BEGIN/START/SET TRANSACTION */

    /* SQL-level prepared statements. For PREPARE, reads/writes/functions describe the
     * inner statement, which runs only at EXECUTE. */
    char *prepare_name;       /* PREPARE name AS …: name, else NULL */
    char *execute_name;       /* EXECUTE name: name, else NULL */
    char *deallocate_name;    /* DEALLOCATE name: name; "" for DEALLOCATE ALL; else NULL */

    char *error;              /* parse error message for SQL_KIND_ERROR, else NULL */

    int refcount_;            /* private: see sqlparse_ref/sqlparse_release */
} SqlAnalysis;

typedef struct SqlMemo SqlMemo;

/* A memo of analyses, bounded to `capacity` texts (least recently used evicted).
 * One per worker thread. Free with sqlparse_memo_free (NULL is fine). */
SqlMemo *sqlparse_memo_new(size_t capacity);
void sqlparse_memo_free(SqlMemo *memo);

/* Counters of a memo, for stats and tests. */
typedef struct {
    uint64_t exact_hits;      /* found by exact text */
    uint64_t shape_hits;      /* found by constant-stripped text (scanner only) */
    uint64_t parses;          /* full libpg_query parses */
    size_t entries;           /* texts held now */
} SqlMemoStats;
void sqlparse_memo_stats(const SqlMemo *memo, SqlMemoStats *out);

/*
 * Analyses `text` (len bytes, need not be NUL-terminated; a NUL inside ends it). Returns a
 * reference the caller releases with sqlparse_release(); NULL only on out-of-memory.
 * With memo == NULL the text is parsed and nothing is remembered.
 */
SqlAnalysis *sqlparse_analyze(SqlMemo *memo, const char *text, size_t len)
    __attribute__((warn_unused_result));

SqlAnalysis *sqlparse_ref(SqlAnalysis *a); /* +1 reference; returns a */
void sqlparse_release(SqlAnalysis *a);     /* -1 reference; frees at zero; NULL is fine */

/*
 * Volatility of a function known without the catalog: 'i' immutable, 's' stable,
 * 'v' volatile, 0 unknown (user-defined). Used when the database's pg_proc cannot be read,
 * and for functions of pg_catalog (most common built-ins).
 */
char sqlparse_builtin_volatility(const char *name);

/* True when `value` is one of PostgreSQL's special date/time inputs that resolve to the
 * current time: now, today, tomorrow, yesterday (any case, surrounding blanks). Used for
 * string literals and for text-format parameter values. */
bool sqlparse_is_time_literal(const char *value, size_t len);

/* Short, stable name of a reason code ("volatile_function", ...) for stats and logs. */
const char *sqlparse_reason_name(SqlReason reason);
const char *sqlparse_kind_name(SqlKind kind);

#endif
