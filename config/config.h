/*
 * config.h — pgstash configuration: the YAML file (libyaml), its defaults, validation with
 * FILE:LINE errors, and command-line overrides. A loaded Config is an immutable snapshot:
 * workers hold a `const Config *` and a reload builds a new one, never edits the old.
 * No sockets, no libev: unit-testable and fuzzable alone.
 */
#ifndef PGSTASH_CONFIG_H
#define PGSTASH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_ERR_LEN 512 /* size of the error buffers the functions below fill */

typedef enum {
    CONSISTENCY_STRICT, /* confirm table versions against Redis on every hit */
    CONSISTENCY_LOCAL,  /* trust the worker's version map, fed by the invalidation channel */
} Consistency;

typedef enum {
    LOG_ERROR, /* only errors */
    LOG_WARN,  /* errors and warnings */
    LOG_INFO,  /* plus start-up, reload and stats lines (default) */
    LOG_DEBUG, /* plus one line per statement decision */
} LogLevel;

typedef enum {
    LOG_FORMAT_TEXT, /* human-readable key=value lines */
    LOG_FORMAT_JSON, /* one JSON object per line */
} LogFormat;

/* An address: TCP host:port, or a Unix-socket directory (host starts with '/'),
 * in which case the socket is <host>/.s.PGSQL.<port>, as libpq does it. */
typedef struct {
    char host[256]; /* hostname, IPv4/IPv6 literal (without brackets), or socket dir */
    int port;       /* 1..65535 */
} HostPort;

/* redis://[[user]:password@]host[:port][/db] */
typedef struct {
    HostPort addr;  /* default 127.0.0.1:6379 */
    char *user;     /* ACL user, NULL when absent */
    char *password; /* NULL when absent */
    int db;         /* SELECT index, default 0 */
} RedisUrl;

/* tables.<name>: per-table cache rules, keyed by bare table name. */
typedef struct {
    char *name;              /* bare name as written in the YAML (matched exactly) */
    int64_t ttl_ms;          /* -1 = inherit cache.default_ttl; 0 = never cached */
    bool cache;              /* false = never cached (`cache: false`) */
    bool safe;               /* `safe: true`: a view/unknown relation may be cached */
    char **also_invalidates; /* tables bumped with this one (its triggers' writes) */
    size_t n_also_invalidates;
    bool also_invalidates_set; /* given, even as []: triggers declared, no epoch bump */
    int line;                  /* YAML line, for messages */
} TableRule;

/* functions.<name>: the declared write set of a user-defined function/procedure. */
typedef struct {
    char *name;    /* bare function name */
    char **writes; /* tables it writes; empty with `writes: []` = read-only */
    size_t n_writes;
    int line; /* YAML line, for messages */
} FunctionRule;

/* admin.users: who may use the admin console; secret is a SCRAM-SHA-256 verifier. */
typedef struct {
    char *name;   /* user name */
    char *secret; /* "SCRAM-SHA-256$<iter>:<salt>$<storedkey>:<serverkey>" */
} AdminUser;

typedef struct Config {
    char *path; /* file it was read from, NULL for pure defaults */

    HostPort listen;   /* listen: default 127.0.0.1:6432 */
    HostPort upstream; /* upstream: default 127.0.0.1:5432 */
    RedisUrl redis;    /* redis: default redis://127.0.0.1:6379/0 */
    int workers;       /* workers: 0 = auto (number of cores) */

    struct {
        char *user;         /* catalog.user; NULL = the OS user running pgstash */
        char *password_env; /* catalog.password_env: env var holding the password */
        char *dbname;       /* catalog.dbname; NULL = the database being cached */
    } catalog;

    struct {
        int64_t default_ttl_ms;   /* cache.default_ttl: default 60s; 0 = nothing cached
                                     unless a table sets a ttl */
        size_t max_entry_bytes;   /* cache.max_entry_bytes: default 1MB */
        Consistency consistency;  /* cache.consistency: default strict */
        char *key_prefix;         /* cache.key_prefix: default "pgstash" */
        int64_t redis_timeout_ms; /* cache.redis_timeout: default 50ms */
        bool enabled;             /* cache.enabled: default true; false = pure proxy */
        size_t local_max_bytes;   /* cache.local_max_bytes: default 64MB; the in-process tier
                                     (consistency: local only), split between workers; 0 = off */
        int64_t local_ttl_ms;     /* cache.local_ttl: default 1s; longest an entry lives in the
                                     in-process tier (its own TTL bounds it too) */
    } cache;

    TableRule *tables; /* tables: sorted by name */
    size_t n_tables;
    FunctionRule *functions; /* functions: sorted by name */
    size_t n_functions;

    struct {
        LogLevel level;            /* log.level: default info */
        LogFormat format;          /* log.format: default text */
        int64_t stats_interval_ms; /* log.stats_interval: default 10s; 0 = off */
    } log;

    struct {
        size_t max_message_bytes;  /* limits.max_message_bytes: default 64MB; larger
                                      frontend or backend messages are 08P01 */
        size_t max_startup_bytes;  /* limits.max_startup_bytes: default 10000 */
        int64_t auth_timeout_ms;   /* limits.auth_timeout: default 60s to finish start-up */
        int64_t idle_timeout_ms;   /* limits.client_idle_timeout: default 0 = none; a
                                      half-sent message is always bounded by auth/idle */
        int max_client_conn;       /* limits.max_client_conn: default 10000 */
        int64_t shutdown_grace_ms; /* limits.shutdown_grace: default 30s (SIGTERM drain) */
        int64_t server_idle_timeout_ms; /* limits.server_idle_timeout: default 0 = a server
                                           connection closes with its client; else how long
                                           a password-less login's server connection waits
                                           for the next client with the same start-up packet */
        int64_t server_lifetime_ms;     /* limits.server_lifetime: default 1h; an older server
                                           connection is closed, not kept */
    } limits;

    struct {
        HostPort listen;  /* admin.listen: HTTP /metrics, /healthz, /stats */
        bool listen_set;  /* false = no HTTP listener */
        AdminUser *users; /* admin.users */
        size_t n_users;
    } admin;
} Config;

/*
 * Returns a new Config holding every default of DESIGN.md's contract. Never NULL except on
 * out-of-memory. Free with config_free().
 */
Config *config_defaults(void);

/*
 * Reads and validates a YAML file. On success stores a new Config (caller frees with
 * config_free) in *out and returns true. On failure returns false and writes one line,
 * "FILE:LINE: what is wrong", into err (CONFIG_ERR_LEN bytes). Unknown keys are errors, and
 * so are YAML aliases, files above 16MB, more than 500000 values or nesting deeper than 32.
 * An empty file gives the defaults.
 */
bool config_load(const char *path, Config **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Same as config_load, from a buffer; `name` is used in messages in place of the file,
 * and the Config's path stays NULL. */
bool config_load_buffer(const char *name, const char *yaml, size_t len, Config **out, char *err,
                        size_t errlen) __attribute__((warn_unused_result));

/*
 * Applies a command-line override: key is "listen", "upstream" or "redis", value in the
 * same syntax as the YAML. Returns false with "--KEY: what is wrong" in err.
 */
bool config_override(Config *cfg, const char *key, const char *value, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Parsers shared with the YAML loader; exposed for the command line and tests. On failure
 * they return false and leave *out untouched.
 *   hostport: "host:port", "[v6]:port", "/socket/dir:port"; no port = default_port.
 *   redis url: fills out->user/password with heap strings; release with
 *              config_redis_url_clear (a Config's own are freed by config_free).
 *   duration: a whole number and a unit ms|s|m|h|d ("500ms" "60s" "10m" "1h"); a bare
 *             number is seconds; at most 3650d. No fractions, signs or spaces.
 *   size: a whole number and an optional unit B|KB|KiB|MB|MiB|GB|GiB, any case, all
 *         1024 multiples; no fractions ("1.5MB" is refused: write "1536KB").
 */
bool config_parse_hostport(const char *text, HostPort *out, int default_port)
    __attribute__((warn_unused_result));
bool config_parse_redis_url(const char *text, RedisUrl *out) __attribute__((warn_unused_result));
bool config_parse_duration_ms(const char *text, int64_t *out) __attribute__((warn_unused_result));
bool config_parse_size(const char *text, size_t *out) __attribute__((warn_unused_result));

/* Frees the strings of a RedisUrl filled by config_parse_redis_url and NULLs them (the
 * password is wiped first); NULL and repeated calls are fine. */
void config_redis_url_clear(RedisUrl *url);

/* Rules for a bare table / function name, or NULL. Binary search; no allocation: the
 * rule belongs to cfg and lives as long as it. */
const TableRule *config_table(const Config *cfg, const char *name);
const FunctionRule *config_function(const Config *cfg, const char *name);

/*
 * The effective TTL in milliseconds of one table: 0 when it must not be cached
 * (`cache: false`, `ttl: 0`, or `cache.enabled: false`), else its own ttl or
 * cache.default_ttl.
 */
int64_t config_table_ttl_ms(const Config *cfg, const char *name);

/* Effective worker count: cfg->workers, or the number of online CPUs for auto. */
int config_worker_count(const Config *cfg);

/* The names used in the YAML for enum values ("strict", "debug", "json", ...). */
const char *config_consistency_name(Consistency c);
const char *config_log_level_name(LogLevel l);
const char *config_log_format_name(LogFormat f);

/* Frees a Config and everything it owns; NULL is fine. */
void config_free(Config *cfg);

#endif
