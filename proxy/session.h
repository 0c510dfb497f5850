/*
 * session.h — what pgstash remembers about one client session: its prepared statements
 * (including ones answered from cache that the server never parsed), SQL-level prepared
 * statements, temporary tables, the session half of cache keys and when it must be read again
 * from the server (the probe), and the open transaction block's writes.
 */
#ifndef PGSTASH_SESSION_H
#define PGSTASH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cachekeys/cachekeys.h"
#include "proxy/strmap.h"
#include "sqlparse/sqlparse.h"

typedef struct CatalogDb CatalogDb;

/* A protocol-level prepared statement. */
typedef struct {
    SqlAnalysis *analysis;   /* analysis of its text (a reference) */
    const char *text;        /* points into parse_msg */
    size_t text_len;
    uint16_t n_param_types;
    uint32_t *param_types;   /* host order */
    uint8_t *parse_msg;      /* the whole Parse message, to send it lazily */
    size_t parse_len;
    bool on_server;          /* the server has it under this name */
} Stmt;

/* Tables to bump, or everything (global epoch). */
typedef struct {
    char **names;            /* bare, case-folded names (owned) */
    size_t n, cap;
    bool all;                /* bump the global epoch */
} WriteSet;

void writeset_add(WriteSet *w, const char *name);
void writeset_merge(WriteSet *dst, const WriteSet *src);
/* The slow half of writeset_clear: frees the names and zeroes the set. */
void writeset_free_names(WriteSet *w);
/* Empties the set. Inline: every unit clears several sets that are almost always empty. */
static inline void writeset_clear(WriteSet *w)
{
    if (w->names || w->all || w->n)
        writeset_free_names(w);
}
static inline bool writeset_empty(const WriteSet *w)
{
    return w->n == 0 && !w->all;
}

typedef struct Session {
    StrMap stmts;            /* name → Stmt ("" = unnamed) */
    StrMap portals;          /* portal → statement name (char *) */
    StrMap sql_prepared;     /* SQL-level PREPARE name → SqlAnalysis */
    StrMap temp_tables;      /* this session's temporary relations (names → non-NULL) */
    StrMap guc_names;        /* custom settings the session touched (names → non-NULL) */

    bool probe_needed;       /* read settings, role and temp tables before the next lookup */
    bool probe_failed;       /* the last probe failed: bypass until one succeeds */
    CacheDigest digest;      /* session half of cache keys, valid when !probe_needed */
    bool default_iso_high;   /* default_transaction_isolation is REPEATABLE READ or stricter */

    bool tx_wrote;           /* the open block may have written: no cache until it ends */
    bool tx_iso_high;        /* the open block runs REPEATABLE READ / SERIALIZABLE */
    bool tx_iso_default;     /* the open block runs at default_transaction_isolation */
    bool tx_session_changed; /* settings changed inside the block (revert on rollback) */
    WriteSet tx_pending;     /* written in the open block: bumped when it commits */
    WriteSet just_bumped;    /* what the previous unit bumped (its next read misses anyway) */

    CatalogDb *cat;          /* catalog snapshot of this session's database */
    int cat_state;           /* CatalogState of cat: READY, or LOADING when DDL made it stale */
    uint64_t cat_gen;        /* catalog_generation() when cat was acquired */
} Session;

void session_init(Session *s);
void session_free(Session *s);

Stmt *session_stmt(Session *s, const char *name);

/* A statement from a whole Parse message (copied); takes a new reference to `analysis`.
 * NULL on out-of-memory or a malformed message. Free with stmt_free. */
Stmt *stmt_new(const uint8_t *parse_msg, size_t len, SqlAnalysis *analysis, bool on_server);
void stmt_free(void *p);

/* Registers `st` under `name`, replacing (and freeing) an older one. On failure `st` is
 * freed and false returned. */
bool session_put_stmt(Session *s, const char *name, Stmt *st) __attribute__((warn_unused_result));

/* Forgets every prepared statement (DISCARD ALL, DEALLOCATE ALL). */
void session_forget_statements(Session *s);

/* A simple Query destroys the unnamed statement on the server (protocol rule). */
void session_unnamed_gone(Session *s);

/* Marks that settings/role/temp tables may have changed. */
void session_touch(Session *s);

#endif
