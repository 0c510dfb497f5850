/*
 * reasons.h — why a read was not served from or stored into the cache. The first codes are
 * sqlparse's (what the text tells); the rest are decided by the proxy from the catalog, the
 * session and the transaction. Every code has a stable name for stats and logs.
 */
#ifndef PGSTASH_REASONS_H
#define PGSTASH_REASONS_H

#include "sqlparse/sqlparse.h"

typedef enum {
    BYPASS_CATALOG_UNAVAILABLE = SQL_REASON_COUNT_, /* relation kinds could not be read */
    BYPASS_CATALOG_LOADING,      /* the database's catalog is being read right now */
    BYPASS_UNKNOWN_RELATION,     /* not a table the catalog knows */
    BYPASS_VIEW,                 /* a view not marked safe (…and whose base tables are unknown) */
    BYPASS_FOREIGN_TABLE,        /* foreign tables change behind PostgreSQL's back */
    BYPASS_UNLOGGED_TABLE,       /* unlogged tables are not cached */
    BYPASS_USER_FUNCTION,        /* calls a function pg_proc says is not immutable */
    BYPASS_SESSION_TEMP_TABLE,   /* reads a name this session made a temporary table */
    BYPASS_TABLE_NOT_CACHED,     /* `cache: false` or ttl 0 for a table read */
    BYPASS_TX_AFTER_WRITE,       /* this transaction block already wrote */
    BYPASS_TX_ISOLATION,         /* REPEATABLE READ / SERIALIZABLE transaction */
    BYPASS_TX_FAILED,            /* the transaction block is aborted */
    BYPASS_REDIS_UNAVAILABLE,    /* Redis down, slow, or lost invalidations not yet covered */
    BYPASS_SESSION_UNKNOWN,      /* the session's settings could not be read */
    BYPASS_ROW_LIMIT,            /* Execute with a row limit (cursor-style fetch) */
    BYPASS_PROTOCOL,             /* unit shape pgstash does not answer (Describe statement,
                                    named portal, Flush, unknown statement) */
    BYPASS_PARAM_TIME_LITERAL,   /* a text parameter 'now', 'today', ... */
    BYPASS_SQL_EXECUTE,          /* EXECUTE of an SQL-level prepared statement */
    BYPASS_CACHE_DISABLED,       /* cache.enabled: false */
    BYPASS_COUNT_
} BypassReason;

/* Name of a reason code (SqlReason or BypassReason), e.g. "volatile_function". */
const char *bypass_reason_name(int reason);

/* The same in words, for EXPLAIN CACHE. */
const char *bypass_reason_text(int reason);

#endif
