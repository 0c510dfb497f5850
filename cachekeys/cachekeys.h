/*
 * cachekeys.h — the cache key: SHA-256 over a canonical, versioned, length-prefixed
 * serialisation of everything that decides a result. Two halves: the session digest
 * (database, user, role, result-affecting settings) computed once per session state, and
 * the statement part (text, parameters, formats, table versions, epoch) hashed per lookup
 * on top of it. Every field is tagged and length-prefixed, so ingredients cannot run into
 * each other. No sockets, no libev.
 */
#ifndef PGSTASH_CACHEKEYS_H
#define PGSTASH_CACHEKEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the serialisation changes: old entries become unreachable. */
#define CACHEKEY_FORMAT_VERSION 1

#define CACHEKEY_LEN 32     /* SHA-256 */
#define CACHEKEY_HEX_LEN 64 /* without the terminating NUL */

typedef struct {
    unsigned char bytes[CACHEKEY_LEN];
} CacheDigest;

/* One session setting that changes a result's bytes or visibility. */
typedef struct {
    const char *name;  /* GUC name, lower case */
    const char *value; /* its current value as PostgreSQL reports it */
} CacheKeySetting;

typedef struct {
    const char *database;            /* database name from the startup packet */
    const char *user;                /* session user from the startup packet */
    const char *role;                /* current role (after SET ROLE), "" if same as user */
    const CacheKeySetting *settings; /* must be sorted by name, names unique */
    size_t n_settings;
} CacheKeySession;

typedef enum {
    CACHEKEY_SIMPLE = 1,   /* simple query protocol ('Q') */
    CACHEKEY_EXTENDED = 2, /* extended query protocol (Parse/Bind/Execute) */
} CacheKeyProtocol;

/* A parameter value: len -1 is SQL NULL. */
typedef struct {
    const unsigned char *data;
    int32_t len;
} CacheKeyParam;

/* The current version of one table read by the statement. */
typedef struct {
    const char *name; /* bare, case-folded table name */
    uint64_t version;
} CacheKeyTable;

typedef struct {
    CacheKeyProtocol protocol;
    const char *text;              /* statement text, exactly as sent */
    size_t text_len;
    const uint32_t *param_types;   /* Parse's parameter type OIDs (0 = unspecified) */
    size_t n_param_types;
    const int16_t *param_formats;  /* one format per parameter, already expanded */
    const CacheKeyParam *params;   /* n_params values */
    size_t n_params;
    const int16_t *result_formats; /* Bind's result format codes as sent */
    size_t n_result_formats;
    const CacheKeyTable *tables;   /* must be sorted by name, names unique */
    size_t n_tables;
    uint64_t epoch;                /* the global epoch */
} CacheKeyQuery;

/* The key with everything but table versions and epoch hashed: lets a lookup re-key a
 * statement under newer versions without its text. Opaque (a SHA-256 state). */
typedef struct {
    uint64_t state[16];
} CacheKeyPartial;

/* Digest of the session half. Call again whenever a session ingredient changes. */
void cachekey_session(const CacheKeySession *session, CacheDigest *out);

/* The key of one statement execution under a session digest. */
void cachekey_compute(const CacheDigest *session, const CacheKeyQuery *query, CacheDigest *out);

/* The same in two steps: everything but query->tables/epoch, then those. */
void cachekey_partial(const CacheDigest *session, const CacheKeyQuery *query,
                      CacheKeyPartial *out);
void cachekey_finish(const CacheKeyPartial *partial, const CacheKeyTable *tables, size_t n_tables,
                     uint64_t epoch, CacheDigest *out);

/* Lower-case hex of a digest; `out` holds CACHEKEY_HEX_LEN + 1 bytes. */
void cachekey_hex(const CacheDigest *digest, char *out);

#endif
