/*
 * catalog.h — what names mean in each database, read from the database itself with libpq on
 * a thread of its own: relation kinds (tables, views resolved to base tables, partitions,
 * foreign/unlogged tables, row-level security), writes hidden behind a table (user triggers,
 * rules, cascading foreign keys) and function volatility. Snapshots are immutable and
 * reference-counted; workers hold one per client and notice newer ones by a generation.
 */
#ifndef PGSTASH_CATALOG_H
#define PGSTASH_CATALOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/strmap.h"

typedef struct Worker Worker;

enum {
    REL_TABLE = 1 << 0,       /* ordinary table (relkind r) */
    REL_PARTITIONED = 1 << 1, /* partitioned table (p) */
    REL_VIEW = 1 << 2,        /* view (v) */
    REL_MATVIEW = 1 << 3,     /* materialized view (m) */
    REL_FOREIGN = 1 << 4,     /* foreign table (f) */
};

/* Everything known about one bare relation name (merged over schemas). */
typedef struct {
    unsigned kinds;          /* REL_* bits of every relation with this name */
    bool unlogged;           /* some relation with this name is unlogged */
    bool rls;                /* row-level security enabled on one of them */
    bool hidden_writes;      /* user triggers or rules: a write may change other tables */
    bool view_cacheable;     /* views: the definition is cacheable by pgstash's rules */
    char **read_tables;      /* views: base tables read, transitively (NULL-terminated) */
    char **also_bump;        /* on a write: partitions up and down, cascading FK tables,
                                a view's base tables (NULL-terminated) */
} RelInfo;

/* One overload's argument-count range and volatility. */
typedef struct {
    int16_t min_args;        /* pronargs - pronargdefaults */
    int16_t max_args;        /* pronargs, or INT16_MAX when VARIADIC */
    char volatility;         /* 'i', 's' or 'v' */
} FuncOverload;

typedef struct {
    char volatility;         /* most volatile over all overloads: 'i', 's' or 'v' */
    bool builtin;            /* every overload lives in pg_catalog */
    FuncOverload *overloads; /* every overload of the name, any schema */
    size_t n_overloads;
} FuncInfo;

typedef struct CatalogDb {
    char *db;                /* database name */
    StrMap rels;             /* bare name → RelInfo */
    StrMap funcs;            /* function name → FuncInfo */
    char **hidden_writers;   /* tables with user triggers/rules, for the start-up log */
    char **policy_settings;  /* custom settings row-level security policies read
                                (current_setting('app.x')): part of every session's key */
    uint64_t loaded_dirty;   /* private: the database's invalidation count when read */
    _Atomic int refs;
} CatalogDb;

typedef enum {
    CATALOG_LOADING, /* being read; ask again after the worker is woken. With a snapshot: it
                        predates DDL, fit to resolve writes but not to judge reads */
    CATALOG_READY,   /* a current snapshot was returned */
    CATALOG_FAILED,  /* could not be read: relations are of unknown kind */
} CatalogState;

/* Starts the catalog thread. Workers are woken (worker_wake_catalog) after each load. */
bool catalog_start(Worker *workers, int n_workers) __attribute__((warn_unused_result));
void catalog_stop(void);

/*
 * The latest snapshot of a database (a reference: release it) with *state READY, or LOADING
 * when DDL made it stale (a reload is under way); NULL with *state LOADING (a load was
 * requested) or FAILED. Never blocks.
 */
CatalogDb *catalog_acquire(const char *db, CatalogState *state);
void catalog_release(CatalogDb *cat);

/* Something changed the catalog (DDL relayed, unknown relation seen): read `db` again soon. */
void catalog_invalidate(const char *db);
/* Reload: read every database again. */
void catalog_invalidate_all(void);

/* Copies up to `max` names of databases whose catalog was requested; returns the count. */
int catalog_databases(char (*out)[128], int max);

/* Copies the name of some database whose catalog was requested; false when none. */
bool catalog_some_database(char *out, size_t len);

/* Changes whenever any snapshot is replaced; a cheap test for "re-acquire". */
uint64_t catalog_generation(void);

/* Lookups on a snapshot (NULL when unknown). */
const RelInfo *catalog_rel(const CatalogDb *cat, const char *name);
const FuncInfo *catalog_func(const CatalogDb *cat, const char *name);

/* Volatility of a call with `nargs` arguments: the most volatile overload that accepts that
 * many (defaults and VARIADIC considered); every overload when nargs is -1 or none fits. */
char catalog_func_volatility(const FuncInfo *f, int nargs);

#endif
