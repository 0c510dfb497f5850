/*
 * reasons.c — names of bypass reason codes.
 */
#include "proxy/reasons.h"

#include "proxy/stats.h"

_Static_assert(BYPASS_COUNT_ <= STATS_MAX_REASONS, "raise STATS_MAX_REASONS");

const char *bypass_reason_name(int reason)
{
    if (reason >= 0 && reason < SQL_REASON_COUNT_)
        return sqlparse_reason_name((SqlReason)reason);
    switch ((BypassReason)reason) {
    case BYPASS_CATALOG_UNAVAILABLE:
        return "catalog_unavailable";
    case BYPASS_CATALOG_LOADING:
        return "catalog_loading";
    case BYPASS_UNKNOWN_RELATION:
        return "unknown_relation";
    case BYPASS_VIEW:
        return "view";
    case BYPASS_FOREIGN_TABLE:
        return "foreign_table";
    case BYPASS_UNLOGGED_TABLE:
        return "unlogged_table";
    case BYPASS_USER_FUNCTION:
        return "non_immutable_function";
    case BYPASS_SESSION_TEMP_TABLE:
        return "session_temp_table";
    case BYPASS_TABLE_NOT_CACHED:
        return "table_not_cached";
    case BYPASS_TX_AFTER_WRITE:
        return "tx_after_write";
    case BYPASS_TX_ISOLATION:
        return "tx_isolation";
    case BYPASS_TX_FAILED:
        return "tx_failed";
    case BYPASS_REDIS_UNAVAILABLE:
        return "redis_unavailable";
    case BYPASS_SESSION_UNKNOWN:
        return "session_unknown";
    case BYPASS_ROW_LIMIT:
        return "row_limit";
    case BYPASS_PROTOCOL:
        return "protocol";
    case BYPASS_PARAM_TIME_LITERAL:
        return "param_time_literal";
    case BYPASS_SQL_EXECUTE:
        return "sql_execute";
    case BYPASS_CACHE_DISABLED:
        return "cache_disabled";
    case BYPASS_COUNT_:
        break;
    }
    return "unknown";
}

const char *bypass_reason_text(int reason)
{
    switch (reason) {
    case SQL_REASON_NONE:
        return "cacheable";
    case SQL_REASON_NOT_READ:
        return "not a SELECT: it goes to PostgreSQL every time";
    case SQL_REASON_MULTI_STATEMENT:
        return "several statements in one query string";
    case SQL_REASON_PARSE_ERROR:
        return "PostgreSQL's parser does not accept it";
    case SQL_REASON_LOCKING:
        return "a locking clause (FOR UPDATE/SHARE) must reach the server";
    case SQL_REASON_VOLATILE_FUNCTION:
        return "calls a built-in function that is not immutable (its result can change)";
    case SQL_REASON_SQL_VALUE_FUNCTION:
        return "uses CURRENT_TIMESTAMP, current_user or a similar value function";
    case SQL_REASON_SYSTEM_CATALOG:
        return "reads a system catalog or information_schema";
    case SQL_REASON_TEMP_TABLE:
        return "reads a temporary table (pg_temp)";
    case SQL_REASON_MODIFYING_CTE:
        return "a WITH clause modifies data";
    case SQL_REASON_SELECT_INTO:
        return "SELECT INTO creates a table";
    case SQL_REASON_TABLESAMPLE:
        return "TABLESAMPLE returns different rows each time";
    case SQL_REASON_TIME_LITERAL:
        return "a literal like 'now' or 'today' means the current time";
    case SQL_REASON_TOO_COMPLEX:
        return "nested too deeply to analyse safely";
    case BYPASS_CATALOG_UNAVAILABLE:
        return "the database's catalog cannot be read: relation kinds are unknown";
    case BYPASS_CATALOG_LOADING:
        return "the database's catalog is being read";
    case BYPASS_UNKNOWN_RELATION:
        return "reads a relation the catalog does not know (created outside pgstash?)";
    case BYPASS_VIEW:
        return "reads a view whose definition is not cacheable (mark it `safe: true` to override)";
    case BYPASS_FOREIGN_TABLE:
        return "reads a foreign table, which can change behind PostgreSQL's back";
    case BYPASS_UNLOGGED_TABLE:
        return "reads an unlogged table";
    case BYPASS_USER_FUNCTION:
        return "calls a function pg_proc does not declare immutable";
    case BYPASS_SESSION_TEMP_TABLE:
        return "reads a name that is a temporary table of this session";
    case BYPASS_TABLE_NOT_CACHED:
        return "a table it reads has `cache: false` or a TTL of 0";
    case BYPASS_TX_AFTER_WRITE:
        return "the transaction block has already written";
    case BYPASS_TX_ISOLATION:
        return "the transaction runs at REPEATABLE READ or SERIALIZABLE";
    case BYPASS_TX_FAILED:
        return "the transaction block has failed";
    case BYPASS_REDIS_UNAVAILABLE:
        return "Redis is unreachable or slow, or lost invalidations are not yet covered";
    case BYPASS_SESSION_UNKNOWN:
        return "the session's settings could not be read";
    case BYPASS_ROW_LIMIT:
        return "an Execute with a row limit (cursor-style fetching)";
    case BYPASS_PROTOCOL:
        return "a protocol shape pgstash does not answer itself";
    case BYPASS_PARAM_TIME_LITERAL:
        return "a parameter like 'now' means the current time";
    case BYPASS_SQL_EXECUTE:
        return "EXECUTE of an SQL-level prepared statement";
    case BYPASS_CACHE_DISABLED:
        return "the cache is disabled (cache.enabled: false)";
    default:
        return "not cacheable";
    }
}
