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
