/*
 * cache.h — the Redis side of the request path: cache keys of one execution, the pipelined
 * lookup (entry plus table versions in strict mode), storing captured results, and bumping
 * table versions after writes. Replies come back to the request path through
 * request_lookup_done() and request_bump_done().
 */
#ifndef PGSTASH_CACHE_H
#define PGSTASH_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "cachekeys/cachekeys.h"
#include "proxy/buf.h"
#include "proxy/decide.h"
#include "proxy/entry.h"
#include "proxy/pgproto.h"
#include "proxy/session.h"
#include "sqlparse/sqlparse.h"

typedef struct Client Client;

typedef enum {
    LOOKUP_NONE,    /* not looked up (bypassed) */
    LOOKUP_WAIT,    /* command sent, reply not yet here */
    LOOKUP_HIT,     /* a valid entry: blob/view hold it */
    LOOKUP_MISS,    /* no usable entry; `fill` says whether to store the answer */
    LOOKUP_FAILED,  /* Redis failed: serve from PostgreSQL, store nothing */
} LookupResult;

#define EXEC_INLINE_VERSIONS 8

/* One Query or Execute of a unit. */
typedef struct Exec {
    SqlAnalysis *analysis;   /* reference */
    int reason;              /* DECIDE_CACHE or a bypass reason */
    ReadTables tables;       /* tables the result depends on, when cacheable */
    CacheKeyPartial partial; /* the key before table versions: re-keying needs no text */
    CacheDigest key;         /* the cache key the lookup/fill uses */
    uint64_t inline_versions[EXEC_INLINE_VERSIONS]; /* versions of `tables` the key was
                                made with (see exec_versions) */
    uint64_t *heap_versions; /* used instead beyond EXEC_INLINE_VERSIONS tables */
    uint64_t epoch;
    bool want_desc;          /* the unit Describes its portal: the entry must have one */
    LookupResult lookup;
    bool fill;               /* store the server's answer under `key` */
    bool refetched;          /* versions were re-read after seeding missing counters */
    uint8_t *blob;           /* LOOKUP_HIT: copy of the entry */
    size_t blob_len;
    EntryView view;          /* LOOKUP_HIT: parsed blob */
    ByteWriter capture;      /* the server's answer being captured, entry format */
    bool capturing;          /* capture is live (not abandoned) */
    bool captured;           /* the answer completed and is storable */
    const char *fail_note;   /* why the capture was abandoned, for debug logs */
} Exec;

void exec_clear(Exec *e);

/* The versions array of an execution. (No self-pointer: execs live in a realloc'd array.) */
static inline uint64_t *exec_versions(Exec *e)
{
    return e->heap_versions ? e->heap_versions : e->inline_versions;
}

/*
 * Hashes what identifies a cacheable execution (session digest, statement, parameters,
 * result formats) into e->partial, then finishes the key with the table versions known
 * locally. Returns false when a version or the epoch is not known locally yet: the lookup
 * then fetches them and the statement misses once. `st`/`bind` are NULL for a Query.
 */
bool cache_make_key(Client *c, Exec *e, CacheKeyProtocol proto, const char *text, size_t text_len,
                    const Stmt *st, const PgBindMsg *bind);

/* True when the in-process tier may answer (local mode, live invalidation channel). */
bool cache_tier_usable(const Client *c);

/* Looks an execution whose key is known up in the in-process tier; on a hit its view points
 * into the tier (valid until the tier is next used) and e->lookup is LOOKUP_HIT. */
bool cache_tier_lookup(Client *c, Exec *e);

/* Sends the lookup of one execution. False when Redis is not usable (fail open). */
bool cache_lookup(Client *c, Exec *e, bool key_known) __attribute__((warn_unused_result));

/* Stores a completed capture (fire and forget). */
void cache_fill(Client *c, Exec *e);

typedef enum {
    BUMP_FINAL,  /* the unit's end: its answer is released when Redis confirms */
    BUMP_EARLY,  /* a held answer overflowed: bump now, again at the end */
    BUMP_COMMIT, /* a COMMIT confirmed in an open (Flush) unit: release what was held */
} BumpKind;

/* Bumps the versions of a write set. False when Redis is not usable: the caller releases
 * the client's answer anyway and records the loss (global epoch bump later). */
bool cache_bump(Client *c, const WriteSet *w, BumpKind kind) __attribute__((warn_unused_result));

/* Records the session's database in <prefix>:dbs, which FLUSH TABLE walks (fire and
 * forget, idempotent). */
void cache_register_database(Client *c);

/* Tells every pgstash sharing the Redis that DDL changed this session's database: they read
 * its catalog again and do not judge reads by the old one meanwhile (fire and forget). */
void cache_publish_ddl(Client *c);

/* Called by cache.c when the unit's last lookup reply / its bump reply arrives (the caller
 * then runs client_kick). */
void request_lookup_done(Client *c);
void request_bump_done(Client *c, BumpKind kind);

#endif
