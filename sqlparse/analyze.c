/*
 * analyze.c — one full parse: libpg_query's protobuf tree, unpacked into an arena, walked
 * through protobuf-c's descriptors (by hand where position gives meaning: DML targets, CTE
 * scopes), frozen into one SqlAnalysis block. Protobuf, not JSON: parse+unpack+walk 25 µs vs
 * 30 µs through jansson per statement (tests/bench/sqlparse_bench.c, docs/SQLPARSE.md).
 */
#include "sqlparse/internal.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Message levels the walker descends before giving up with TOO_COMPLEX. Well above what any
 * statement accepted by the scanner's nesting estimate needs; it only guards the stack. */
#define SQLPARSE_MAX_WALK_DEPTH 8000

#define BIT(r) (1u << (r))

/* What a relation named below the current node means. (VACUUM, LOCK and the like name
 * relations too, but their trees are not walked.) */
typedef enum {
    ROLE_READ,  /* it is read, unless it is a CTE in scope */
    ROLE_WRITE, /* it is written: DDL targets and what they drag along */
} Role;

typedef struct {
    const char *schema; /* NULL if unqualified */
    const char *name;
    int nargs; /* functions only */
} NamePair;

typedef struct {
    NamePair *v;
    size_t n, cap;
} NameList;

/* Everything learnt so far. Strings point into the unpacked tree, which lives in the arena
 * until the analysis is frozen. */
typedef struct {
    SqlArena *arena;
    bool oom;
    NameList reads, writes, funcs;
    NameList settings; /* custom settings (names with a dot) set or reset */
    const char **ctes; /* CTE names in scope, innermost last */
    size_t n_ctes, cap_ctes;
    unsigned depth;
    bool too_deep;
    uint32_t reasons; /* of the statement being walked */
    bool shareable;   /* the facts do not depend on any constant's value */

    bool invalidate_all, changes_session, creates_temp, discards_temp, discards_all, is_ddl;
    bool has_locking, has_params;
    SqlTxOp tx_op;
    bool has_commit, has_rollback, has_tx_control;
    SqlIsolation isolation;
    bool sets_default_isolation;
    SqlIsolation default_isolation;
    const char *prepare_name, *execute_name, *deallocate_name;
    SqlKind prepare_kind;
    SqlReason prepare_reason;
} Builder;

/* What a nested statement (EXPLAIN's, PREPARE's) may change that its parent must undo when
 * the nested statement does not run now. */
typedef struct {
    size_t n_writes;
    uint32_t reasons;
    bool invalidate_all, creates_temp, is_ddl;
    const char *execute_name;
} Snapshot;

static void walk(Builder *b, const ProtobufCMessage *m, Role role);
static SqlKind analyze_stmt(Builder *b, const PgQuery__Node *stmt);
static const char *node_string(const PgQuery__Node *n);

/* Reason precedence, first wins; documented in sqlparse.h. */
static const SqlReason reason_order[] = {
    SQL_REASON_PARSE_ERROR,   SQL_REASON_TOO_COMPLEX,       SQL_REASON_MULTI_STATEMENT,
    SQL_REASON_MODIFYING_CTE, SQL_REASON_SELECT_INTO,       SQL_REASON_NOT_READ,
    SQL_REASON_LOCKING,       SQL_REASON_TEMP_TABLE,        SQL_REASON_SYSTEM_CATALOG,
    SQL_REASON_TABLESAMPLE,   SQL_REASON_VOLATILE_FUNCTION, SQL_REASON_SQL_VALUE_FUNCTION,
    SQL_REASON_TIME_LITERAL,  SQL_REASON_PARAM_UNSUPPORTED,
};

static SqlReason pick_reason(uint32_t reasons)
{
    for (size_t i = 0; i < sizeof reason_order / sizeof reason_order[0]; i++) {
        if (reasons & BIT(reason_order[i]))
            return reason_order[i];
    }
    return SQL_REASON_NONE;
}

static const char *str_or_null(const char *s)
{
    return s && s[0] ? s : NULL;
}

static void names_add_n(Builder *b, NameList *l, const char *schema, const char *name, int nargs)
{
    if (!name || !name[0] || b->oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        NamePair *v = sqlparse_arena_alloc(b->arena, cap * sizeof *v);
        if (!v) {
            b->oom = true;
            return;
        }
        if (l->n)
            memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (NamePair){str_or_null(schema), name, nargs};
}

static void names_add(Builder *b, NameList *l, const char *schema, const char *name)
{
    names_add_n(b, l, schema, name, 0);
}

/* The string of a String node, else NULL. */
static const char *string_of(const PgQuery__Node *n)
{
    return n && n->node_case == PG_QUERY__NODE__NODE_STRING && n->string ? n->string->sval : NULL;
}

/* Qualified name from a list of String nodes (a.b.c): the last two parts, minus `drop_last`
 * trailing ones (DROP TRIGGER's list ends with the trigger's own name). */
static void names_add_list(Builder *b, NameList *l, size_t n, PgQuery__Node *const *items,
                           size_t drop_last)
{
    if (n <= drop_last)
        return;
    n -= drop_last;
    const char *name = string_of(items[n - 1]);
    const char *schema = n >= 2 ? string_of(items[n - 2]) : NULL;
    if (name && (n < 2 || schema))
        names_add(b, l, schema, name);
}

static void add_write_rv(Builder *b, const PgQuery__RangeVar *rv)
{
    if (rv)
        names_add(b, &b->writes, rv->schemaname, rv->relname);
}

static bool is_temp_schema(const char *s)
{
    if (strncmp(s, "pg_temp", 7) != 0)
        return false;
    if (s[7] == '\0')
        return true;
    if (s[7] != '_' || s[8] == '\0')
        return false;
    for (const char *p = s + 8; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    return true;
}

static bool rv_is_temp(const PgQuery__RangeVar *rv)
{
    return rv && ((rv->relpersistence && rv->relpersistence[0] == 't') ||
                  (rv->schemaname && is_temp_schema(rv->schemaname)));
}

static bool cte_in_scope(const Builder *b, const char *name)
{
    for (size_t i = b->n_ctes; i-- > 0;) {
        if (strcmp(b->ctes[i], name) == 0)
            return true;
    }
    return false;
}

static void cte_push(Builder *b, const char *name)
{
    if (b->oom || !name)
        return;
    if (b->n_ctes == b->cap_ctes) {
        size_t cap = b->cap_ctes ? b->cap_ctes * 2 : 8;
        const char **v = sqlparse_arena_alloc(b->arena, cap * sizeof *v);
        if (!v) {
            b->oom = true;
            return;
        }
        if (b->n_ctes)
            memcpy(v, b->ctes, b->n_ctes * sizeof *v);
        b->ctes = v;
        b->cap_ctes = cap;
    }
    b->ctes[b->n_ctes++] = name;
}

static void visit_range_var(Builder *b, const PgQuery__RangeVar *rv, Role role)
{
    const char *schema = str_or_null(rv->schemaname);
    const char *name = str_or_null(rv->relname);
    if (!name)
        return;
    if (role == ROLE_WRITE) {
        names_add(b, &b->writes, schema, name);
        return;
    }
    /* A CTE can only be named unqualified, and a WITH in scope hides a table of that name. */
    if (!schema && !str_or_null(rv->catalogname) && cte_in_scope(b, name))
        return;
    names_add(b, &b->reads, schema, name);
    if (schema) {
        if (is_temp_schema(schema))
            b->reasons |= BIT(SQL_REASON_TEMP_TABLE);
        else if (strncmp(schema, "pg_", 3) == 0 || strcmp(schema, "information_schema") == 0)
            b->reasons |= BIT(SQL_REASON_SYSTEM_CATALOG); /* pg_catalog, pg_toast, ... */
    } else if (strncmp(name, "pg_", 3) == 0) {
        b->reasons |= BIT(SQL_REASON_SYSTEM_CATALOG);
    }
}

/* Records a custom setting's name, lower-cased as PostgreSQL folds GUC names. */
static void add_setting(Builder *b, const char *name)
{
    size_t n = strlen(name);
    char *lower = sqlparse_arena_alloc(b->arena, n + 1);
    if (!lower) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)tolower((unsigned char)name[i]);
    names_add(b, &b->settings, NULL, lower);
}

static void visit_func_call(Builder *b, const PgQuery__FuncCall *fc, Role role)
{
    size_t n = fc->n_funcname;
    const char *name = n >= 1 ? string_of(fc->funcname[n - 1]) : NULL;
    const char *schema = n >= 2 ? str_or_null(string_of(fc->funcname[n - 2])) : NULL;
    if (str_or_null(name)) {
        int nargs = fc->func_variadic || fc->n_args > 100000 ? -1 : (int)fc->n_args;
        names_add_n(b, &b->funcs, schema, name, nargs);
        if (!schema || strcmp(schema, "pg_catalog") == 0) {
            char v = sqlparse_builtin_volatility_nargs(name, nargs);
            if (v == 's' || v == 'v')
                b->reasons |= BIT(SQL_REASON_VOLATILE_FUNCTION);
            if (strcmp(name, "set_config") == 0) {
                b->changes_session = true;
                /* The setting's name is a constant: remember it, and do not share this
                 * analysis with texts that name another setting. */
                const char *guc = fc->n_args >= 1 ? node_string(fc->args[0]) : NULL;
                if (guc && strchr(guc, '.')) {
                    b->shareable = false;
                    add_setting(b, guc);
                }
            }
        }
    }
    for (size_t i = 0; i < fc->n_args; i++)
        walk(b, (const ProtobufCMessage *)fc->args[i], role);
    for (size_t i = 0; i < fc->n_agg_order; i++)
        walk(b, (const ProtobufCMessage *)fc->agg_order[i], role);
    walk(b, (const ProtobufCMessage *)fc->agg_filter, role);
    walk(b, (const ProtobufCMessage *)fc->over, role);
}

static void walk_list(Builder *b, size_t n, PgQuery__Node *const *v, Role role)
{
    for (size_t i = 0; i < n; i++)
        walk(b, (const ProtobufCMessage *)v[i], role);
}

static bool node_is_dml(const PgQuery__Node *n)
{
    return n && (n->node_case == PG_QUERY__NODE__NODE_INSERT_STMT ||
                 n->node_case == PG_QUERY__NODE__NODE_UPDATE_STMT ||
                 n->node_case == PG_QUERY__NODE__NODE_DELETE_STMT ||
                 n->node_case == PG_QUERY__NODE__NODE_MERGE_STMT);
}

/*
 * Walks a WITH's CTE bodies, each seeing the names PostgreSQL lets it see (the earlier CTEs;
 * all of them, itself included, under RECURSIVE), and leaves every name pushed for the
 * statement's own body. The caller pops back to the n_ctes it saw before.
 */
static void enter_with(Builder *b, const PgQuery__WithClause *w)
{
    if (!w)
        return;
    if (w->recursive) {
        for (size_t i = 0; i < w->n_ctes; i++) {
            const PgQuery__Node *n = w->ctes[i];
            if (n && n->node_case == PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
                cte_push(b, str_or_null(n->common_table_expr->ctename));
        }
    }
    for (size_t i = 0; i < w->n_ctes; i++) {
        const PgQuery__Node *n = w->ctes[i];
        if (!n || n->node_case != PG_QUERY__NODE__NODE_COMMON_TABLE_EXPR)
            continue;
        const PgQuery__CommonTableExpr *cte = n->common_table_expr;
        if (node_is_dml(cte->ctequery))
            b->reasons |= BIT(SQL_REASON_MODIFYING_CTE);
        walk(b, (const ProtobufCMessage *)cte->ctequery, ROLE_READ);
        if (!w->recursive)
            cte_push(b, str_or_null(cte->ctename));
    }
}

static void visit_into(Builder *b, const PgQuery__IntoClause *into)
{
    if (!into)
        return;
    add_write_rv(b, into->rel);
    if (rv_is_temp(into->rel))
        b->creates_temp = true;
}

static void visit_select(Builder *b, const PgQuery__SelectStmt *s)
{
    size_t scope = b->n_ctes;
    enter_with(b, s->with_clause);
    if (s->into_clause) {
        visit_into(b, s->into_clause);
        b->reasons |= BIT(SQL_REASON_SELECT_INTO);
        b->is_ddl = true; /* it creates a table: the catalog changes */
    }
    walk_list(b, s->n_distinct_clause, s->distinct_clause, ROLE_READ);
    walk_list(b, s->n_target_list, s->target_list, ROLE_READ);
    walk_list(b, s->n_from_clause, s->from_clause, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->where_clause, ROLE_READ);
    walk_list(b, s->n_group_clause, s->group_clause, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->having_clause, ROLE_READ);
    walk_list(b, s->n_window_clause, s->window_clause, ROLE_READ);
    walk_list(b, s->n_values_lists, s->values_lists, ROLE_READ);
    walk_list(b, s->n_sort_clause, s->sort_clause, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->limit_offset, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->limit_count, ROLE_READ);
    if (s->n_locking_clause) {
        /* Its OF list names FROM items (maybe aliases), not further reads. */
        b->has_locking = true;
        b->reasons |= BIT(SQL_REASON_LOCKING);
    }
    walk(b, (const ProtobufCMessage *)s->larg, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->rarg, ROLE_READ);
    b->n_ctes = scope;
}

/* DML targets are always tables, never CTEs, whatever WITH is in scope. */
static void visit_insert(Builder *b, const PgQuery__InsertStmt *s)
{
    size_t scope = b->n_ctes;
    enter_with(b, s->with_clause);
    add_write_rv(b, s->relation);
    walk(b, (const ProtobufCMessage *)s->select_stmt, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->on_conflict_clause, ROLE_READ);
    walk_list(b, s->n_returning_list, s->returning_list, ROLE_READ);
    b->n_ctes = scope;
}

static void visit_update(Builder *b, const PgQuery__UpdateStmt *s)
{
    size_t scope = b->n_ctes;
    enter_with(b, s->with_clause);
    add_write_rv(b, s->relation);
    walk_list(b, s->n_target_list, s->target_list, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->where_clause, ROLE_READ);
    walk_list(b, s->n_from_clause, s->from_clause, ROLE_READ);
    walk_list(b, s->n_returning_list, s->returning_list, ROLE_READ);
    b->n_ctes = scope;
}

static void visit_delete(Builder *b, const PgQuery__DeleteStmt *s)
{
    size_t scope = b->n_ctes;
    enter_with(b, s->with_clause);
    add_write_rv(b, s->relation);
    walk_list(b, s->n_using_clause, s->using_clause, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->where_clause, ROLE_READ);
    walk_list(b, s->n_returning_list, s->returning_list, ROLE_READ);
    b->n_ctes = scope;
}

static void visit_merge(Builder *b, const PgQuery__MergeStmt *s)
{
    size_t scope = b->n_ctes;
    enter_with(b, s->with_clause);
    add_write_rv(b, s->relation);
    walk(b, (const ProtobufCMessage *)s->source_relation, ROLE_READ);
    walk(b, (const ProtobufCMessage *)s->join_condition, ROLE_READ);
    walk_list(b, s->n_merge_when_clauses, s->merge_when_clauses, ROLE_READ);
    b->n_ctes = scope;
}

/* Every message field of any message, through its descriptor: the default for nodes whose
 * position gives their relations no special meaning. */
static void walk_fields(Builder *b, const ProtobufCMessage *m, Role role)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    const char *base = (const char *)m;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
            *(const uint32_t *)(const void *)(base + f->quantifier_offset) != f->id)
            continue;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(const void *)(base + f->quantifier_offset);
            ProtobufCMessage *const *v =
                *(ProtobufCMessage *const *const *)(const void *)(base + f->offset);
            for (size_t k = 0; k < n && v; k++)
                walk(b, v[k], role);
        } else {
            walk(b, *(const ProtobufCMessage *const *)(const void *)(base + f->offset), role);
        }
    }
}

static void walk(Builder *b, const ProtobufCMessage *m, Role role)
{
    if (!m || b->too_deep || b->oom)
        return;
    if (++b->depth > SQLPARSE_MAX_WALK_DEPTH) {
        b->too_deep = true;
        goto out;
    }
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__node__descriptor) {
        const PgQuery__Node *n = (const PgQuery__Node *)m;
        switch (n->node_case) {
        case PG_QUERY__NODE__NODE__NOT_SET:
        case PG_QUERY__NODE__NODE_STRING:
        case PG_QUERY__NODE__NODE_INTEGER:
        case PG_QUERY__NODE__NODE_FLOAT:
        case PG_QUERY__NODE__NODE_BOOLEAN:
        case PG_QUERY__NODE__NODE_BIT_STRING:
        case PG_QUERY__NODE__NODE_COLUMN_REF:
        case PG_QUERY__NODE__NODE_A_STAR:
        case PG_QUERY__NODE__NODE_TYPE_NAME:
        case PG_QUERY__NODE__NODE_ALIAS:
        case PG_QUERY__NODE__NODE_ROLE_SPEC:
            break; /* leaves: nothing below names a relation or calls a function */
        default:
            /* Every member of the oneof is a message pointer at the same place. */
            walk(b, (const ProtobufCMessage *)n->range_var, role);
        }
    } else if (d == &pg_query__range_var__descriptor) {
        visit_range_var(b, (const PgQuery__RangeVar *)m, role);
    } else if (d == &pg_query__func_call__descriptor) {
        visit_func_call(b, (const PgQuery__FuncCall *)m, role);
    } else if (d == &pg_query__a__const__descriptor) {
        const PgQuery__AConst *c = (const PgQuery__AConst *)m;
        if (c->val_case == PG_QUERY__A__CONST__VAL_SVAL && c->sval && c->sval->sval &&
            sqlparse_maybe_time_literal(c->sval->sval, strlen(c->sval->sval))) {
            b->reasons |= BIT(SQL_REASON_TIME_LITERAL);
            b->shareable = false;
        }
    } else if (d == &pg_query__param_ref__descriptor) {
        b->has_params = true;
    } else if (d == &pg_query__sqlvalue_function__descriptor) {
        b->reasons |= BIT(SQL_REASON_SQL_VALUE_FUNCTION);
    } else if (d == &pg_query__select_stmt__descriptor) {
        visit_select(b, (const PgQuery__SelectStmt *)m);
    } else if (d == &pg_query__insert_stmt__descriptor) {
        visit_insert(b, (const PgQuery__InsertStmt *)m);
    } else if (d == &pg_query__update_stmt__descriptor) {
        visit_update(b, (const PgQuery__UpdateStmt *)m);
    } else if (d == &pg_query__delete_stmt__descriptor) {
        visit_delete(b, (const PgQuery__DeleteStmt *)m);
    } else if (d == &pg_query__merge_stmt__descriptor) {
        visit_merge(b, (const PgQuery__MergeStmt *)m);
    } else if (d == &pg_query__locking_clause__descriptor) {
        b->has_locking = true;
        b->reasons |= BIT(SQL_REASON_LOCKING);
    } else if (d == &pg_query__range_table_sample__descriptor) {
        b->reasons |= BIT(SQL_REASON_TABLESAMPLE);
        walk_fields(b, m, role);
    } else if (d == &pg_query__constraint__descriptor ||
               d == &pg_query__table_like_clause__descriptor) {
        /* REFERENCES other, LIKE other: read (to check or copy), never changed. */
        walk_fields(b, m, role == ROLE_WRITE ? ROLE_READ : role);
    } else if (d == &pg_query__type_name__descriptor || d == &pg_query__alias__descriptor ||
               d == &pg_query__column_ref__descriptor) {
        /* leaves */
    } else {
        walk_fields(b, m, role);
    }
out:
    b->depth--;
}

static SqlIsolation isolation_from_name(const char *s)
{
    if (!s)
        return SQL_ISO_DEFAULT;
    if (strcasecmp(s, "read uncommitted") == 0)
        return SQL_ISO_READ_UNCOMMITTED;
    if (strcasecmp(s, "read committed") == 0)
        return SQL_ISO_READ_COMMITTED;
    if (strcasecmp(s, "repeatable read") == 0)
        return SQL_ISO_REPEATABLE_READ;
    if (strcasecmp(s, "serializable") == 0)
        return SQL_ISO_SERIALIZABLE;
    return SQL_ISO_DEFAULT;
}

/* The string in an A_Const or String node, else NULL. */
static const char *node_string(const PgQuery__Node *n)
{
    if (!n)
        return NULL;
    if (n->node_case == PG_QUERY__NODE__NODE_STRING && n->string)
        return n->string->sval;
    if (n->node_case == PG_QUERY__NODE__NODE_A_CONST && n->a_const &&
        n->a_const->val_case == PG_QUERY__A__CONST__VAL_SVAL && n->a_const->sval)
        return n->a_const->sval->sval;
    return NULL;
}

/* transaction_isolation among BEGIN's or SET TRANSACTION's options, else DEFAULT. */
static SqlIsolation isolation_from_options(size_t n, PgQuery__Node *const *opts)
{
    SqlIsolation iso = SQL_ISO_DEFAULT;
    for (size_t i = 0; i < n; i++) {
        const PgQuery__Node *o = opts[i];
        if (!o || o->node_case != PG_QUERY__NODE__NODE_DEF_ELEM || !o->def_elem->defname)
            continue;
        if (strcmp(o->def_elem->defname, "transaction_isolation") == 0)
            iso = isolation_from_name(node_string(o->def_elem->arg));
    }
    return iso;
}

static SqlKind analyze_transaction(Builder *b, const PgQuery__TransactionStmt *s)
{
    b->has_tx_control = true;
    switch (s->kind) {
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_BEGIN:
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_START:
        b->tx_op = SQL_TX_BEGIN;
        b->isolation = isolation_from_options(s->n_options, s->options);
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT:
        b->tx_op = SQL_TX_COMMIT;
        b->has_commit = true;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK:
        b->tx_op = SQL_TX_ROLLBACK;
        b->has_rollback = true;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_SAVEPOINT:
        b->tx_op = SQL_TX_SAVEPOINT;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_RELEASE:
        b->tx_op = SQL_TX_RELEASE;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_TO:
        b->tx_op = SQL_TX_ROLLBACK_TO;
        b->has_rollback = true;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_PREPARE:
        b->tx_op = SQL_TX_PREPARE;
        b->has_commit = true;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_COMMIT_PREPARED:
        b->tx_op = SQL_TX_COMMIT_PREPARED;
        b->has_commit = true;
        /* Its writes were made by some transaction we may never have seen; they become
         * visible only now. */
        b->invalidate_all = true;
        break;
    case PG_QUERY__TRANSACTION_STMT_KIND__TRANS_STMT_ROLLBACK_PREPARED:
        b->tx_op = SQL_TX_ROLLBACK_PREPARED;
        break;
    default:
        break;
    }
    return SQL_KIND_TX;
}

static SqlKind analyze_set(Builder *b, const PgQuery__VariableSetStmt *s)
{
    const char *name = s->name ? s->name : "";
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI &&
        strcasecmp(name, "transaction") == 0) {
        b->tx_op = SQL_TX_SET_TRANSACTION;
        b->has_tx_control = true;
        SqlIsolation iso = isolation_from_options(s->n_args, s->args);
        if (iso != SQL_ISO_DEFAULT)
            b->isolation = iso;
        return SQL_KIND_TX;
    }
    b->changes_session = true;
    if (strchr(name, '.'))
        add_setting(b, name);
    if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_MULTI &&
        strcasecmp(name, "session characteristics") == 0) {
        b->tx_op = SQL_TX_SET_TRANSACTION;
        SqlIsolation iso = isolation_from_options(s->n_args, s->args);
        if (iso != SQL_ISO_DEFAULT) {
            b->sets_default_isolation = true;
            b->default_isolation = iso;
        }
    } else if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_RESET_ALL) {
        b->sets_default_isolation = true;
        b->default_isolation = SQL_ISO_DEFAULT;
    } else if (strcasecmp(name, "transaction_isolation") == 0) {
        /* The value is a constant: texts of this shape do not share an analysis. */
        b->shareable = false;
        if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE && s->n_args == 1)
            b->isolation = isolation_from_name(node_string(s->args[0]));
    } else if (strcasecmp(name, "default_transaction_isolation") == 0 && !s->is_local) {
        b->shareable = false;
        b->sets_default_isolation = true;
        b->default_isolation = SQL_ISO_DEFAULT;
        if (s->kind == PG_QUERY__VARIABLE_SET_KIND__VAR_SET_VALUE && s->n_args == 1)
            b->default_isolation = isolation_from_name(node_string(s->args[0]));
    }
    return SQL_KIND_SESSION;
}

/* PostgreSQL's boolean spelling for an option argument; anything unclear counts as true. */
static bool option_is_true(const PgQuery__Node *arg)
{
    if (!arg)
        return true;
    if (arg->node_case == PG_QUERY__NODE__NODE_INTEGER)
        return arg->integer->ival != 0;
    if (arg->node_case == PG_QUERY__NODE__NODE_BOOLEAN)
        return arg->boolean->boolval;
    const char *s = node_string(arg);
    if (!s)
        return true;
    return !(strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0 || strcasecmp(s, "no") == 0 ||
             strcasecmp(s, "f") == 0 || strcasecmp(s, "n") == 0 || strcasecmp(s, "0") == 0 ||
             strcasecmp(s, "fa") == 0 || strcasecmp(s, "fal") == 0 || strcasecmp(s, "fals") == 0);
}

static Snapshot take_snapshot(const Builder *b)
{
    return (Snapshot){b->writes.n,     b->reasons, b->invalidate_all,
                      b->creates_temp, b->is_ddl,  b->execute_name};
}

/* Forgets the effects of a nested statement that does not run now. */
static void undo_effects(Builder *b, const Snapshot *s)
{
    b->writes.n = s->n_writes;
    b->invalidate_all = s->invalidate_all;
    b->creates_temp = s->creates_temp;
    b->is_ddl = s->is_ddl;
    b->execute_name = s->execute_name;
}

/* EXPLAIN runs its statement only with ANALYZE: then its writes are writes. */
static SqlKind analyze_explain(Builder *b, const PgQuery__ExplainStmt *s)
{
    bool runs = false;
    for (size_t i = 0; i < s->n_options; i++) {
        const PgQuery__Node *o = s->options[i];
        if (!o || o->node_case != PG_QUERY__NODE__NODE_DEF_ELEM || !o->def_elem->defname)
            continue;
        if (o->def_elem->arg)
            b->shareable = false; /* ANALYZE 0 and ANALYZE 1 share a shape */
        if (strcmp(o->def_elem->defname, "analyze") == 0)
            runs = option_is_true(o->def_elem->arg);
    }
    Snapshot snap = take_snapshot(b);
    if (s->query)
        (void)analyze_stmt(b, s->query);
    if (!runs)
        undo_effects(b, &snap);
    b->reasons = snap.reasons;
    return SQL_KIND_OTHER;
}

static SqlKind analyze_prepare(Builder *b, const PgQuery__PrepareStmt *s)
{
    b->prepare_name = s->name;
    Snapshot snap = take_snapshot(b);
    b->reasons = 0;
    SqlKind inner = s->query ? analyze_stmt(b, s->query) : SQL_KIND_EMPTY;
    uint32_t inner_reasons = b->reasons | (inner == SQL_KIND_READ ? 0 : BIT(SQL_REASON_NOT_READ));
    b->prepare_kind = inner;
    b->prepare_reason = pick_reason(inner_reasons);
    /* Reads, writes and functions stay: they describe what each EXECUTE will do. */
    size_t n_writes = b->writes.n;
    undo_effects(b, &snap);
    b->writes.n = n_writes;
    b->reasons = snap.reasons;
    return SQL_KIND_OTHER;
}

static SqlKind analyze_copy(Builder *b, const PgQuery__CopyStmt *s)
{
    if (s->is_from) {
        add_write_rv(b, s->relation);
        walk(b, (const ProtobufCMessage *)s->where_clause, ROLE_READ);
        return SQL_KIND_WRITE;
    }
    walk(b, (const ProtobufCMessage *)s->relation, ROLE_READ);
    /* COPY (INSERT … RETURNING …) TO writes: the DML visitor records it. */
    walk(b, (const ProtobufCMessage *)s->query, ROLE_READ);
    return SQL_KIND_OTHER;
}

static bool object_is_relation(PgQuery__ObjectType t)
{
    return t == PG_QUERY__OBJECT_TYPE__OBJECT_TABLE || t == PG_QUERY__OBJECT_TYPE__OBJECT_VIEW ||
           t == PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW ||
           t == PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE ||
           t == PG_QUERY__OBJECT_TYPE__OBJECT_SEQUENCE || t == PG_QUERY__OBJECT_TYPE__OBJECT_INDEX;
}

static void analyze_drop(Builder *b, const PgQuery__DropStmt *s)
{
    if (s->behavior == PG_QUERY__DROP_BEHAVIOR__DROP_CASCADE)
        b->invalidate_all = true; /* dependent objects we cannot name go too */
    bool on_table = s->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_TRIGGER ||
                    s->remove_type == PG_QUERY__OBJECT_TYPE__OBJECT_RULE;
    if (!object_is_relation(s->remove_type) && !on_table) {
        b->invalidate_all = true; /* schema, function, policy, type, ... */
        return;
    }
    for (size_t i = 0; i < s->n_objects; i++) {
        const PgQuery__Node *o = s->objects[i];
        if (o && o->node_case == PG_QUERY__NODE__NODE_LIST)
            names_add_list(b, &b->writes, o->list->n_items, o->list->items, on_table ? 1 : 0);
    }
}

static void analyze_rename(Builder *b, const PgQuery__RenameStmt *s)
{
    switch (s->rename_type) {
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABLE:
    case PG_QUERY__OBJECT_TYPE__OBJECT_VIEW:
    case PG_QUERY__OBJECT_TYPE__OBJECT_MATVIEW:
    case PG_QUERY__OBJECT_TYPE__OBJECT_FOREIGN_TABLE:
    case PG_QUERY__OBJECT_TYPE__OBJECT_SEQUENCE:
    case PG_QUERY__OBJECT_TYPE__OBJECT_INDEX:
        /* Both names: reads of the new name meant something else before. */
        add_write_rv(b, s->relation);
        if (s->relation)
            names_add(b, &b->writes, s->relation->schemaname, s->newname);
        break;
    case PG_QUERY__OBJECT_TYPE__OBJECT_COLUMN:
    case PG_QUERY__OBJECT_TYPE__OBJECT_TABCONSTRAINT:
    case PG_QUERY__OBJECT_TYPE__OBJECT_TRIGGER:
    case PG_QUERY__OBJECT_TYPE__OBJECT_RULE:
        if (s->relation) {
            add_write_rv(b, s->relation);
            break;
        }
        b->invalidate_all = true; /* a column of a type, a domain's constraint, ... */
        break;
    default:
        b->invalidate_all = true; /* schema, policy, function, role, ... */
    }
}

static void analyze_alter_table(Builder *b, const PgQuery__AlterTableStmt *s)
{
    for (size_t i = 0; i < s->n_cmds; i++) {
        const PgQuery__Node *c = s->cmds[i];
        if (!c || c->node_case != PG_QUERY__NODE__NODE_ALTER_TABLE_CMD)
            continue;
        switch (c->alter_table_cmd->subtype) {
        case PG_QUERY__ALTER_TABLE_TYPE__AT_EnableRowSecurity:
        case PG_QUERY__ALTER_TABLE_TYPE__AT_DisableRowSecurity:
        case PG_QUERY__ALTER_TABLE_TYPE__AT_ForceRowSecurity:
        case PG_QUERY__ALTER_TABLE_TYPE__AT_NoForceRowSecurity:
        case PG_QUERY__ALTER_TABLE_TYPE__AT_ChangeOwner:
            b->invalidate_all = true; /* who may see which rows changes */
            break;
        default:
            break;
        }
    }
    /* The table, and any other named in a command (ATTACH PARTITION, INHERIT, ...). */
    walk_fields(b, &s->base, ROLE_WRITE);
}

static SqlKind analyze_ddl(Builder *b, const PgQuery__Node *stmt)
{
    const ProtobufCMessage *m = (const ProtobufCMessage *)stmt->range_var;
    b->is_ddl = true;
    switch (stmt->node_case) {
    case PG_QUERY__NODE__NODE_CREATE_STMT:
        if (rv_is_temp(stmt->create_stmt->relation))
            b->creates_temp = true;
        walk_fields(b, m, ROLE_WRITE); /* the table, and INHERITS/PARTITION OF parents */
        break;
    case PG_QUERY__NODE__NODE_CREATE_TABLE_AS_STMT:
        visit_into(b, stmt->create_table_as_stmt->into);
        walk(b, (const ProtobufCMessage *)stmt->create_table_as_stmt->query, ROLE_READ);
        break;
    case PG_QUERY__NODE__NODE_VIEW_STMT:
        add_write_rv(b, stmt->view_stmt->view);
        if (rv_is_temp(stmt->view_stmt->view))
            b->creates_temp = true;
        walk(b, (const ProtobufCMessage *)stmt->view_stmt->query, ROLE_READ);
        break;
    case PG_QUERY__NODE__NODE_CREATE_SEQ_STMT:
        if (rv_is_temp(stmt->create_seq_stmt->sequence))
            b->creates_temp = true;
        walk_fields(b, m, ROLE_WRITE);
        break;
    case PG_QUERY__NODE__NODE_INDEX_STMT:
    case PG_QUERY__NODE__NODE_ALTER_SEQ_STMT:
    case PG_QUERY__NODE__NODE_RULE_STMT:
    case PG_QUERY__NODE__NODE_CREATE_TRIG_STMT:
        walk_fields(b, m, ROLE_WRITE);
        break;
    case PG_QUERY__NODE__NODE_ALTER_TABLE_STMT:
        analyze_alter_table(b, stmt->alter_table_stmt);
        break;
    case PG_QUERY__NODE__NODE_DROP_STMT:
        analyze_drop(b, stmt->drop_stmt);
        break;
    case PG_QUERY__NODE__NODE_RENAME_STMT:
        analyze_rename(b, stmt->rename_stmt);
        break;
    case PG_QUERY__NODE__NODE_ALTER_OBJECT_SCHEMA_STMT: {
        const PgQuery__AlterObjectSchemaStmt *s = stmt->alter_object_schema_stmt;
        if (object_is_relation(s->object_type) && s->relation) {
            add_write_rv(b, s->relation);
            names_add(b, &b->writes, s->newschema, s->relation->relname);
        } else {
            b->invalidate_all = true;
        }
        break;
    }
    case PG_QUERY__NODE__NODE_CREATE_POLICY_STMT:
        b->invalidate_all = true;
        add_write_rv(b, stmt->create_policy_stmt->table);
        break;
    case PG_QUERY__NODE__NODE_ALTER_POLICY_STMT:
        b->invalidate_all = true;
        add_write_rv(b, stmt->alter_policy_stmt->table);
        break;
    case PG_QUERY__NODE__NODE_COMMENT_STMT:
        break; /* pg_description is never cached */
    default:
        /* Privileges, roles, functions, schemas, types, extensions, ...: nothing tells which
         * cached results they change. */
        b->invalidate_all = true;
        walk_fields(b, m, ROLE_WRITE);
    }
    return SQL_KIND_DDL;
}

/* Classifies one statement and records its facts; b->reasons collects its reason bits. */
static SqlKind analyze_stmt(Builder *b, const PgQuery__Node *stmt)
{
    const ProtobufCMessage *m = (const ProtobufCMessage *)stmt->range_var;
    if (!m)
        return SQL_KIND_OTHER;
    switch (stmt->node_case) {
    case PG_QUERY__NODE__NODE_SELECT_STMT:
        walk(b, m, ROLE_READ);
        return b->reasons & (BIT(SQL_REASON_SELECT_INTO) | BIT(SQL_REASON_MODIFYING_CTE))
                   ? SQL_KIND_WRITE
                   : SQL_KIND_READ;
    case PG_QUERY__NODE__NODE_INSERT_STMT:
    case PG_QUERY__NODE__NODE_UPDATE_STMT:
    case PG_QUERY__NODE__NODE_DELETE_STMT:
    case PG_QUERY__NODE__NODE_MERGE_STMT:
        walk(b, m, ROLE_READ);
        return SQL_KIND_WRITE;
    case PG_QUERY__NODE__NODE_TRUNCATE_STMT:
        walk_list(b, stmt->truncate_stmt->n_relations, stmt->truncate_stmt->relations, ROLE_WRITE);
        if (stmt->truncate_stmt->behavior == PG_QUERY__DROP_BEHAVIOR__DROP_CASCADE)
            b->invalidate_all = true; /* also empties every table referencing these */
        return SQL_KIND_WRITE;
    case PG_QUERY__NODE__NODE_REFRESH_MAT_VIEW_STMT:
        add_write_rv(b, stmt->refresh_mat_view_stmt->relation);
        return SQL_KIND_WRITE;
    case PG_QUERY__NODE__NODE_COPY_STMT:
        return analyze_copy(b, stmt->copy_stmt);
    case PG_QUERY__NODE__NODE_TRANSACTION_STMT:
        return analyze_transaction(b, stmt->transaction_stmt);
    case PG_QUERY__NODE__NODE_VARIABLE_SET_STMT:
        return analyze_set(b, stmt->variable_set_stmt);
    case PG_QUERY__NODE__NODE_DISCARD_STMT:
        b->changes_session = true;
        if (stmt->discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_ALL) {
            b->discards_temp = true;
            b->discards_all = true;
            b->sets_default_isolation = true;
            b->default_isolation = SQL_ISO_DEFAULT;
        } else if (stmt->discard_stmt->target == PG_QUERY__DISCARD_MODE__DISCARD_TEMP) {
            b->discards_temp = true;
        }
        return SQL_KIND_SESSION;
    case PG_QUERY__NODE__NODE_EXPLAIN_STMT:
        return analyze_explain(b, stmt->explain_stmt);
    case PG_QUERY__NODE__NODE_PREPARE_STMT:
        return analyze_prepare(b, stmt->prepare_stmt);
    case PG_QUERY__NODE__NODE_EXECUTE_STMT:
        b->execute_name = stmt->execute_stmt->name;
        walk_list(b, stmt->execute_stmt->n_params, stmt->execute_stmt->params, ROLE_READ);
        return SQL_KIND_OTHER;
    case PG_QUERY__NODE__NODE_DEALLOCATE_STMT:
        b->deallocate_name = stmt->deallocate_stmt->name ? stmt->deallocate_stmt->name : "";
        return SQL_KIND_OTHER;
    case PG_QUERY__NODE__NODE_CALL_STMT:
        walk(b, (const ProtobufCMessage *)stmt->call_stmt->funccall, ROLE_READ);
        return SQL_KIND_OTHER;
    case PG_QUERY__NODE__NODE_DECLARE_CURSOR_STMT:
        walk(b, (const ProtobufCMessage *)stmt->declare_cursor_stmt->query, ROLE_READ);
        return SQL_KIND_OTHER;
    case PG_QUERY__NODE__NODE_VARIABLE_SHOW_STMT:
    case PG_QUERY__NODE__NODE_DO_STMT:
    case PG_QUERY__NODE__NODE_LISTEN_STMT:
    case PG_QUERY__NODE__NODE_UNLISTEN_STMT:
    case PG_QUERY__NODE__NODE_NOTIFY_STMT:
    case PG_QUERY__NODE__NODE_VACUUM_STMT:
    case PG_QUERY__NODE__NODE_LOCK_STMT:
    case PG_QUERY__NODE__NODE_FETCH_STMT:
    case PG_QUERY__NODE__NODE_CLOSE_PORTAL_STMT:
    case PG_QUERY__NODE__NODE_CHECK_POINT_STMT:
    case PG_QUERY__NODE__NODE_CLUSTER_STMT:
    case PG_QUERY__NODE__NODE_REINDEX_STMT:
    case PG_QUERY__NODE__NODE_LOAD_STMT:
    case PG_QUERY__NODE__NODE_CONSTRAINTS_SET_STMT:
        /* No table's contents change (DO and CALL are the proxy's to judge by name). */
        return SQL_KIND_OTHER;
    default:
        return analyze_ddl(b, stmt);
    }
}

/* FNV-1a over schema and name, for deduplication. */
static uint64_t pair_hash(const NamePair *p)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *s = p->schema ? p->schema : ""; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull; /* separator: a.bc differs from ab.c */
    for (const char *s = p->name; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool pair_equal(const NamePair *a, const NamePair *b)
{
    if ((a->schema == NULL) != (b->schema == NULL))
        return false;
    if (a->schema && strcmp(a->schema, b->schema) != 0)
        return false;
    return strcmp(a->name, b->name) == 0;
}

/* Removes later duplicates in place, keeping first-seen order. Linear time: texts with
 * thousands of names must not cost quadratic time. */
static void names_dedup(Builder *b, NameList *l)
{
    if (l->n < 2 || b->oom)
        return;
    size_t slots = 16;
    while (slots < 2 * l->n)
        slots *= 2;
    size_t *table = sqlparse_arena_alloc(b->arena, slots * sizeof *table);
    if (!table) {
        b->oom = true;
        return;
    }
    memset(table, 0, slots * sizeof *table); /* 0 = empty, else index + 1 */
    size_t out = 0;
    for (size_t i = 0; i < l->n; i++) {
        size_t s = (size_t)pair_hash(&l->v[i]) & (slots - 1);
        bool dup = false;
        while (table[s]) {
            NamePair *kept = &l->v[table[s] - 1];
            if (pair_equal(kept, &l->v[i])) {
                if (kept->nargs != l->v[i].nargs)
                    kept->nargs = -1;
                dup = true;
                break;
            }
            s = (s + 1) & (slots - 1);
        }
        if (dup)
            continue;
        l->v[out] = l->v[i];
        table[s] = ++out;
    }
    l->n = out;
}

/* Bytes needed to copy a list's strings. */
static size_t names_bytes(const NameList *l)
{
    size_t n = 0;
    for (size_t i = 0; i < l->n; i++)
        n += (l->v[i].schema ? strlen(l->v[i].schema) + 1 : 0) + strlen(l->v[i].name) + 1;
    return n;
}

static char *copy_str(char **pool, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = *pool;
    memcpy(d, s, n);
    *pool += n;
    return d;
}

static void copy_relations(const NameList *l, SqlRelation *out, char **pool)
{
    for (size_t i = 0; i < l->n; i++) {
        out[i].schema = copy_str(pool, l->v[i].schema);
        out[i].name = copy_str(pool, l->v[i].name);
    }
}

static void copy_functions(const NameList *l, SqlFunction *out, char **pool)
{
    for (size_t i = 0; i < l->n; i++) {
        out[i].schema = copy_str(pool, l->v[i].schema);
        out[i].name = copy_str(pool, l->v[i].name);
        out[i].nargs = l->v[i].nargs;
    }
}

static size_t str_bytes(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Everything in one malloc block: the struct, then the three arrays, then the strings. */
static SqlAnalysis *freeze(const Builder *b, SqlKind kind, int n_statements, const char *command,
                           const char *error)
{
    _Static_assert(_Alignof(SqlRelation) >= _Alignof(SqlFunction), "arrays share one block");
    size_t n_rels = b->reads.n + b->writes.n + b->settings.n;
    size_t size = sizeof(SqlAnalysis) + n_rels * sizeof(SqlRelation) +
                  b->funcs.n * sizeof(SqlFunction) + names_bytes(&b->reads) +
                  names_bytes(&b->writes) + names_bytes(&b->settings) + names_bytes(&b->funcs) +
                  str_bytes(b->prepare_name) +
                  str_bytes(b->execute_name) + str_bytes(b->deallocate_name) + str_bytes(error);
    SqlAnalysis *a = calloc(1, size);
    if (!a)
        return NULL;
    SqlRelation *arr = (SqlRelation *)(a + 1);
    SqlFunction *funcs = (SqlFunction *)(arr + n_rels);
    char *pool = (char *)(funcs + b->funcs.n);

    a->kind = kind;
    a->reasons = b->reasons;
    a->reason = pick_reason(b->reasons);
    a->n_statements = n_statements;
    a->command = command ? command : "";
    a->reads = b->reads.n ? arr : NULL;
    a->n_reads = b->reads.n;
    copy_relations(&b->reads, arr, &pool);
    arr += b->reads.n;
    a->writes = b->writes.n ? arr : NULL;
    a->n_writes = b->writes.n;
    copy_relations(&b->writes, arr, &pool);
    arr += b->writes.n;
    a->settings = b->settings.n ? arr : NULL;
    a->n_settings = b->settings.n;
    copy_relations(&b->settings, arr, &pool);
    a->functions = b->funcs.n ? funcs : NULL;
    a->n_functions = b->funcs.n;
    copy_functions(&b->funcs, funcs, &pool);

    a->invalidate_all = b->invalidate_all;
    a->changes_session = b->changes_session;
    a->creates_temp = b->creates_temp;
    a->discards_temp = b->discards_temp;
    a->discards_all = b->discards_all;
    a->is_ddl = b->is_ddl;
    a->has_locking = b->has_locking;
    a->has_params = b->has_params;
    a->tx_op = b->tx_op;
    a->has_commit = b->has_commit;
    a->has_rollback = b->has_rollback;
    a->has_tx_control = b->has_tx_control;
    a->isolation = b->isolation;
    a->sets_default_isolation = b->sets_default_isolation;
    a->default_isolation = b->default_isolation;
    a->prepare_name = copy_str(&pool, b->prepare_name);
    a->prepare_kind = b->prepare_kind;
    a->prepare_reason = b->prepare_reason;
    a->execute_name = copy_str(&pool, b->execute_name);
    a->deallocate_name = copy_str(&pool, b->deallocate_name);
    a->error = copy_str(&pool, error);
    a->refcount_ = 1;
    return a;
}

static SqlAnalysis *error_analysis(SqlReason reason, const char *message)
{
    Builder b = {0};
    b.reasons = BIT(reason);
    b.invalidate_all = true; /* it may be a write in a grammar newer than ours */
    return freeze(&b, SQL_KIND_ERROR, 0, "", message ? message : "parse error");
}

SqlAnalysis *sqlparse_too_complex(size_t nesting)
{
    char msg[128];
    snprintf(msg, sizeof msg, "statement nested too deeply to analyse (estimate %zu > %d)", nesting,
             SQLPARSE_MAX_NESTING);
    return error_analysis(SQL_REASON_TOO_COMPLEX, msg);
}

SqlAnalysis *sqlparse_parse_text(const char *text, bool *shareable)
{
    SqlAnalysis *a = NULL;
    Builder b = {.shareable = true};

    *shareable = false;
    sqlparse_note_libpg_used();
    PgQueryProtobufParseResult r = pg_query_parse_protobuf(text);
    if (r.error) {
        a = error_analysis(SQL_REASON_PARSE_ERROR, r.error->message);
        goto done;
    }
    b.arena = sqlparse_arena_new();
    if (!b.arena)
        goto done;
    PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
        sqlparse_arena_allocator(b.arena), r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
    if (!tree)
        goto done; /* only out-of-memory: the bytes come from libpg_query itself */

    SqlKind kind = SQL_KIND_EMPTY;
    const char *command = "";
    uint32_t all_reasons = 0;
    int n_statements = 0;
    for (size_t i = 0; i < tree->n_stmts; i++) {
        const PgQuery__RawStmt *raw = tree->stmts[i];
        if (!raw || !raw->stmt || raw->stmt->node_case == PG_QUERY__NODE__NODE__NOT_SET)
            continue;
        b.reasons = 0;
        b.n_ctes = 0;
        SqlKind k = analyze_stmt(&b, raw->stmt);
        if (k != SQL_KIND_READ)
            b.reasons |= BIT(SQL_REASON_NOT_READ);
        all_reasons |= b.reasons;
        if (n_statements++ == 0) {
            kind = k;
            const ProtobufCMessage *m = (const ProtobufCMessage *)raw->stmt->range_var;
            command = m && m->descriptor ? m->descriptor->short_name : "";
        }
    }
    if (n_statements == 0)
        all_reasons |= BIT(SQL_REASON_NOT_READ);
    if (n_statements > 1)
        all_reasons |= BIT(SQL_REASON_MULTI_STATEMENT);
    if (b.too_deep) {
        all_reasons |= BIT(SQL_REASON_TOO_COMPLEX);
        b.invalidate_all = true; /* unseen parts might write */
    }
    b.reasons = all_reasons;
    names_dedup(&b, &b.reads);
    names_dedup(&b, &b.writes);
    names_dedup(&b, &b.funcs);
    names_dedup(&b, &b.settings);
    if (b.oom)
        goto done;
    a = freeze(&b, kind, n_statements, command, NULL);
    *shareable = b.shareable && !b.too_deep;
done:
    sqlparse_arena_free(b.arena);
    pg_query_free_protobuf_parse_result(r);
    return a;
}
