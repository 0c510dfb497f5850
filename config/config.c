/*
 * config.c — loads pgstash's YAML into an immutable Config: defaults first, then every key
 * of the file checked against the schema below, the first problem reported as
 * "FILE:LINE: what is wrong". Also the value parsers (addresses, Redis URLs, durations,
 * sizes) that the command line shares with the file.
 */
#include "config/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config/ydoc.h"

#define WUR __attribute__((warn_unused_result))

#define DEFAULT_LISTEN_PORT   6432
#define DEFAULT_UPSTREAM_PORT 5432
#define DEFAULT_REDIS_PORT    6379
#define DEFAULT_ADMIN_PORT    9187
#define MAX_WORKERS           256

#define MS_SECOND INT64_C(1000)
#define MS_MINUTE (60 * MS_SECOND)
#define MS_HOUR   (60 * MS_MINUTE)
#define MS_DAY    (24 * MS_HOUR)
#define MS_MAX    (3650 * MS_DAY) /* ten years: far beyond any TTL, far below overflow */

#define KB ((size_t)1024)
#define MB (KB * 1024)
#define GB (MB * 1024)

#define MAX_FILE_BYTES (16 * MB) /* a config file larger than this is a mistake */
#define MAX_NAME_BYTES 63        /* PostgreSQL truncates identifiers to NAMEDATALEN-1 */
#define MAX_REDIS_DB   INT_MAX
/* sun_path holds 108 bytes: "<dir>/.s.PGSQL.65535" and a NUL must fit. */
#define MAX_SOCKET_DIR (108 - sizeof("/.s.PGSQL.65535"))

/* Values quoted back in messages are cut to this many bytes and escaped. */
#define SHOW_BYTES 48

typedef struct {
    char s[SHOW_BYTES * 4 + 8]; /* every byte may become \xNN, then "..." and a NUL */
} Shown;

/* What the walk over one file needs: where errors go and what is being filled. */
typedef struct {
    const char *name; /* file name for messages */
    char *err;        /* caller's buffer, NULL when it wants no message */
    size_t errlen;    /* its size */
    Config *cfg;      /* being filled; owned by config_load_buffer */
} Loader;

/* --- messages ------------------------------------------------------------------------------ */

static bool fail_at(Loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "FILE:LINE: message" and returns false, so callers can `return fail_at(...)`. */
static bool fail_at(Loader *ld, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!ld->err || ld->errlen == 0)
        return false;
    n = snprintf(ld->err, ld->errlen, "%s:%d: ", ld->name, line);
    if (n < 0 || (size_t)n >= ld->errlen)
        return false;
    va_start(ap, fmt);
    vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * A user-supplied value made safe to quote in a log line: control bytes escaped as \xNN,
 * cut to SHOW_BYTES (on a UTF-8 boundary) with "..." appended.
 */
static const char *show(Shown *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0, lim = len;
    unsigned char c;

    if (lim > SHOW_BYTES) {
        lim = SHOW_BYTES;
        while (lim > 0 && ((unsigned char)s[lim] & 0xC0) == 0x80)
            lim--;
    }
    for (i = 0; i < lim; i++) {
        c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\') {
            b->s[o++] = '\\';
            b->s[o++] = 'x';
            b->s[o++] = hex[c >> 4];
            b->s[o++] = hex[c & 15];
        } else {
            b->s[o++] = (char)c;
        }
    }
    if (lim < len) {
        memcpy(b->s + o, "...", 3);
        o += 3;
    }
    b->s[o] = '\0';
    return b->s;
}

static const char *show_node(Shown *b, const YDocNode *n)
{
    return show(b, n->text, n->len);
}

/* A Redis URL for a message, with any password replaced by "***". */
static const char *show_url(Shown *b, const char *url)
{
    const char *at = strrchr(url, '@');
    const char *scheme = strstr(url, "://");
    char tmp[SHOW_BYTES + 32];

    if (!at || !scheme || scheme > at)
        return show(b, url, strlen(url));
    snprintf(tmp, sizeof(tmp), "%.*s://***@%.*s", (int)(scheme - url < 10 ? scheme - url : 10), url,
             SHOW_BYTES, at + 1);
    return show(b, tmp, strlen(tmp));
}

static const char *kind_name(const YDocNode *n)
{
    if (ydoc_is_null(n))
        return "nothing";
    switch (n->kind) {
    case YDOC_MAPPING:
        return "a mapping";
    case YDOC_SEQUENCE:
        return "a list";
    default:
        return "a scalar";
    }
}

/* "1h", "500ms": the largest unit that divides evenly. */
static void fmt_duration(int64_t ms, char *buf, size_t len)
{
    if (ms != 0 && ms % MS_DAY == 0)
        snprintf(buf, len, "%lldd", (long long)(ms / MS_DAY));
    else if (ms != 0 && ms % MS_HOUR == 0)
        snprintf(buf, len, "%lldh", (long long)(ms / MS_HOUR));
    else if (ms != 0 && ms % MS_MINUTE == 0)
        snprintf(buf, len, "%lldm", (long long)(ms / MS_MINUTE));
    else if (ms != 0 && ms % MS_SECOND == 0)
        snprintf(buf, len, "%llds", (long long)(ms / MS_SECOND));
    else
        snprintf(buf, len, "%lldms", (long long)ms);
}

static void fmt_size(size_t n, char *buf, size_t len)
{
    if (n != 0 && n % GB == 0)
        snprintf(buf, len, "%zuGB", n / GB);
    else if (n != 0 && n % MB == 0)
        snprintf(buf, len, "%zuMB", n / MB);
    else if (n != 0 && n % KB == 0)
        snprintf(buf, len, "%zuKB", n / KB);
    else
        snprintf(buf, len, "%zu", n);
}

/* --- value parsers --------------------------------------------------------------------------- */

/* Digits only, no sign or space; false on overflow past max. */
static WUR bool parse_uint(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0)
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (max - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

static size_t digits_len(const char *s)
{
    size_t n = 0;

    while (s[n] >= '0' && s[n] <= '9')
        n++;
    return n;
}

bool config_parse_duration_ms(const char *text, int64_t *out)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {{"", MS_SECOND},  {"ms", 1},      {"s", MS_SECOND},
                 {"m", MS_MINUTE}, {"h", MS_HOUR}, {"d", MS_DAY}};
    size_t nd, i;
    uint64_t v;

    if (!text || !out)
        return false;
    nd = digits_len(text);
    if (nd == 0 || !parse_uint(text, nd, (uint64_t)MS_MAX, &v))
        return false;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(text + nd, units[i].unit) != 0)
            continue;
        if (v > (uint64_t)(MS_MAX / units[i].ms))
            return false;
        *out = (int64_t)v * units[i].ms;
        return true;
    }
    return false;
}

bool config_parse_size(const char *text, size_t *out)
{
    static const struct {
        const char *unit;
        size_t mult;
    } units[] = {{"", 1},    {"b", 1},    {"kb", KB}, {"kib", KB},
                 {"mb", MB}, {"mib", MB}, {"gb", GB}, {"gib", GB}};
    size_t nd, i;
    uint64_t v;

    if (!text || !out)
        return false;
    nd = digits_len(text);
    if (nd == 0 || !parse_uint(text, nd, (uint64_t)SIZE_MAX, &v))
        return false;
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(text + nd, units[i].unit) != 0)
            continue;
        if (v > SIZE_MAX / units[i].mult)
            return false;
        *out = (size_t)v * units[i].mult;
        return true;
    }
    return false;
}

static bool is_host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

static bool is_v6_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
           c == '.';
}

/* The inside of [...]: hex groups, colons, an optional embedded IPv4 and %zone. */
static bool valid_v6(const char *s, size_t n)
{
    size_t i;
    bool colon = false, zone = false;

    if (n == 0)
        return false;
    for (i = 0; i < n; i++) {
        if (zone) {
            if (!is_host_char(s[i]))
                return false;
        } else if (s[i] == '%') {
            if (i + 1 == n)
                return false;
            zone = true;
        } else if (!is_v6_char(s[i])) {
            return false;
        } else if (s[i] == ':') {
            colon = true;
        }
    }
    return colon;
}

/* config_parse_hostport with the reason for a refusal. */
static WUR bool parse_hostport(const char *text, HostPort *out, int default_port, const char **why)
{
    const char *host = text, *port = NULL, *p;
    size_t host_len, i;
    uint64_t v;

    *why = "empty address";
    if (!text || !*text)
        return false;
    if (text[0] == '[') {
        p = strchr(text, ']');
        *why = "missing ']' after the IPv6 address";
        if (!p)
            return false;
        host = text + 1;
        host_len = (size_t)(p - host);
        *why = "invalid IPv6 address";
        if (!valid_v6(host, host_len))
            return false;
        *why = "unexpected text after ']' (expected [address]:port)";
        if (p[1] != '\0' && p[1] != ':')
            return false;
        if (p[1] == ':')
            port = p + 2;
    } else if (text[0] == '/') {
        /* A Unix-socket directory; its port names the socket file, as in libpq. */
        p = strrchr(text, ':');
        host_len = p ? (size_t)(p - text) : strlen(text);
        if (p)
            port = p + 1;
        *why = "socket directory too long for a Unix socket path";
        if (host_len > MAX_SOCKET_DIR)
            return false;
        *why = "control character in socket directory";
        for (i = 0; i < host_len; i++)
            if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
                return false;
    } else {
        p = strchr(text, ':');
        *why = "IPv6 addresses need brackets, e.g. [::1]:6432";
        if (p && strchr(p + 1, ':'))
            return false;
        host_len = p ? (size_t)(p - text) : strlen(text);
        if (p)
            port = p + 1;
        *why = "missing host";
        if (host_len == 0)
            return false;
        *why = "invalid character in host name";
        for (i = 0; i < host_len; i++)
            if (!is_host_char(text[i]))
                return false;
    }
    *why = "host name too long";
    if (host_len >= sizeof(out->host) || host_len > 253)
        return false;
    if (port) {
        *why = "port must be a number 1..65535";
        if (!parse_uint(port, strlen(port), 65535, &v) || v == 0)
            return false;
    } else {
        *why = "no default port";
        if (default_port < 1 || default_port > 65535)
            return false;
        v = (uint64_t)default_port;
    }
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    out->port = (int)v;
    return true;
}

bool config_parse_hostport(const char *text, HostPort *out, int default_port)
{
    const char *why;

    return out && parse_hostport(text, out, default_port, &why);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A %-decoded heap copy of s[0..n), NULL in *out when empty. */
static WUR bool url_decode(const char *s, size_t n, char **out, const char **why)
{
    char *d;
    size_t i, o = 0;
    int hi, lo;

    *out = NULL;
    if (n == 0)
        return true;
    *why = "out of memory";
    d = malloc(n + 1);
    if (!d)
        return false;
    for (i = 0; i < n; i++) {
        if (s[i] != '%') {
            d[o++] = s[i];
            continue;
        }
        /* %00 is refused: the strings are NUL-terminated. */
        hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
        lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            *why = "bad %-escape in the user or password";
            free(d);
            return false;
        }
        d[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    d[o] = '\0';
    *out = d;
    return true;
}

void config_redis_url_clear(RedisUrl *url)
{
    if (!url)
        return;
    free(url->user);
    if (url->password)
        explicit_bzero(url->password, strlen(url->password));
    free(url->password);
    url->user = NULL;
    url->password = NULL;
}

/* config_parse_redis_url with the reason for a refusal. */
static WUR bool parse_redis_url(const char *text, RedisUrl *out, const char **why)
{
    RedisUrl u = {.db = 0};
    const char *rest, *at, *colon, *slash;
    char hostport[sizeof(u.addr.host) + 16];
    size_t n;
    uint64_t db = 0;
    bool ok = false;

    *why = "empty URL";
    if (!text || !*text)
        goto fail;
    *why = "rediss:// (TLS) is not supported yet";
    if (strncasecmp(text, "rediss://", 9) == 0)
        goto fail;
    *why = "expected redis://[[user]:password@]host[:port][/db]";
    if (strncasecmp(text, "redis://", 8) != 0)
        goto fail;
    rest = text + 8;
    /* The last '@' ends the credentials, so an unescaped '@' in a password still works. */
    at = strrchr(rest, '@');
    if (at) {
        colon = memchr(rest, ':', (size_t)(at - rest));
        *why = "a user needs a password: redis://user:password@host, or redis://:password@host";
        if (!colon)
            goto fail;
        if (!url_decode(rest, (size_t)(colon - rest), &u.user, why) ||
            !url_decode(colon + 1, (size_t)(at - colon - 1), &u.password, why))
            goto fail;
        *why = "a user needs a password: redis://user:password@host";
        if (u.user && !u.password)
            goto fail;
        rest = at + 1;
    }
    slash = strchr(rest, '/');
    n = slash ? (size_t)(slash - rest) : strlen(rest);
    *why = "missing host";
    if (n == 0)
        goto fail;
    *why = "host name too long";
    if (n >= sizeof(hostport))
        goto fail;
    memcpy(hostport, rest, n);
    hostport[n] = '\0';
    if (!parse_hostport(hostport, &u.addr, DEFAULT_REDIS_PORT, why))
        goto fail;
    if (slash && slash[1] != '\0') {
        *why = "database must be a number, e.g. redis://127.0.0.1:6379/0";
        if (!parse_uint(slash + 1, strlen(slash + 1), MAX_REDIS_DB, &db))
            goto fail;
    }
    u.db = (int)db;
    *out = u;
    ok = true;
fail:
    if (!ok)
        config_redis_url_clear(&u);
    return ok;
}

bool config_parse_redis_url(const char *text, RedisUrl *out)
{
    const char *why;

    return out && parse_redis_url(text, out, &why);
}

/* --- defaults and teardown --------------------------------------------------------------- */

Config *config_defaults(void)
{
    Config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg)
        return NULL;
    snprintf(cfg->listen.host, sizeof(cfg->listen.host), "127.0.0.1");
    cfg->listen.port = DEFAULT_LISTEN_PORT;
    snprintf(cfg->upstream.host, sizeof(cfg->upstream.host), "127.0.0.1");
    cfg->upstream.port = DEFAULT_UPSTREAM_PORT;
    snprintf(cfg->redis.addr.host, sizeof(cfg->redis.addr.host), "127.0.0.1");
    cfg->redis.addr.port = DEFAULT_REDIS_PORT;
    cfg->redis.db = 0;
    cfg->workers = 0;

    cfg->cache.default_ttl_ms = 60 * MS_SECOND;
    cfg->cache.max_entry_bytes = 1 * MB;
    cfg->cache.consistency = CONSISTENCY_STRICT;
    cfg->cache.key_prefix = strdup("pgstash");
    cfg->cache.redis_timeout_ms = 50;
    cfg->cache.local_max_bytes = 64 * MB;
    cfg->cache.local_ttl_ms = 1000;
    cfg->cache.enabled = true;

    cfg->log.level = LOG_INFO;
    cfg->log.format = LOG_FORMAT_TEXT;
    cfg->log.stats_interval_ms = 10 * MS_SECOND;

    cfg->limits.max_message_bytes = 64 * MB;
    cfg->limits.max_startup_bytes = 10000;
    cfg->limits.auth_timeout_ms = 60 * MS_SECOND;
    cfg->limits.idle_timeout_ms = 0;
    cfg->limits.max_client_conn = 10000;
    cfg->limits.shutdown_grace_ms = 30 * MS_SECOND;
    cfg->limits.server_idle_timeout_ms = 0;
    cfg->limits.server_lifetime_ms = 3600 * MS_SECOND;

    if (!cfg->cache.key_prefix) {
        free(cfg);
        return NULL;
    }
    return cfg;
}

static void free_strings(char **v, size_t n)
{
    size_t i;

    if (!v)
        return;
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(Config *cfg)
{
    size_t i;

    if (!cfg)
        return;
    free(cfg->path);
    config_redis_url_clear(&cfg->redis);
    free(cfg->catalog.user);
    free(cfg->catalog.password_env);
    free(cfg->catalog.dbname);
    free(cfg->cache.key_prefix);
    for (i = 0; i < cfg->n_tables; i++) {
        free(cfg->tables[i].name);
        free_strings(cfg->tables[i].also_invalidates, cfg->tables[i].n_also_invalidates);
    }
    free(cfg->tables);
    for (i = 0; i < cfg->n_functions; i++) {
        free(cfg->functions[i].name);
        free_strings(cfg->functions[i].writes, cfg->functions[i].n_writes);
    }
    free(cfg->functions);
    for (i = 0; i < cfg->admin.n_users; i++) {
        free(cfg->admin.users[i].name);
        if (cfg->admin.users[i].secret)
            explicit_bzero(cfg->admin.users[i].secret, strlen(cfg->admin.users[i].secret));
        free(cfg->admin.users[i].secret);
    }
    free(cfg->admin.users);
    free(cfg);
}

/* --- schema helpers ------------------------------------------------------------------------ */

/*
 * Checks the key of one mapping entry against the keys a section allows: a scalar, known,
 * and not given twice (first_line[] remembers where each was seen). `where` names the
 * section in messages; NULL for the top level.
 */
static WUR bool key_index(Loader *ld, const YDocNode *key, const char *where,
                          const char *const *names, size_t n_names, int *first_line, size_t *which)
{
    char expected[512];
    size_t i, o = 0;
    Shown s;

    if (key->kind != YDOC_SCALAR)
        return fail_at(ld, key->line, "keys must be scalars, got %s%s%s", kind_name(key),
                       where ? " in " : "", where ? where : "");
    for (i = 0; i < n_names; i++) {
        if (strcmp(key->text, names[i]) != 0 || key->len != strlen(names[i]))
            continue;
        if (first_line[i])
            return fail_at(ld, key->line, "duplicate key '%s'%s%s (first at line %d)", names[i],
                           where ? " in " : "", where ? where : "", first_line[i]);
        first_line[i] = key->line;
        *which = i;
        return true;
    }
    expected[0] = '\0';
    for (i = 0; i < n_names && o < sizeof(expected); i++)
        o += (size_t)snprintf(expected + o, sizeof(expected) - o, "%s%s", i ? ", " : "", names[i]);
    return fail_at(ld, key->line, "unknown key '%s'%s%s (expected one of: %s)", show_node(&s, key),
                   where ? " in " : "", where ? where : "", expected);
}

/* A mapping, or nothing (`key:` with no value), which reads as an empty mapping. */
static WUR bool want_mapping(Loader *ld, const YDocNode *n, const char *what)
{
    if (n->kind == YDOC_MAPPING || ydoc_is_null(n))
        return true;
    return fail_at(ld, n->line, "%s: expected a mapping, got %s", what, kind_name(n));
}

static WUR bool want_list(Loader *ld, const YDocNode *n, const char *what)
{
    if (n->kind == YDOC_SEQUENCE || ydoc_is_null(n))
        return true;
    return fail_at(ld, n->line, "%s: expected a list, got %s", what, kind_name(n));
}

/* A non-null scalar without NUL bytes; null is "missing value". */
static WUR bool want_scalar(Loader *ld, const YDocNode *n, const char *what)
{
    if (n->kind != YDOC_SCALAR)
        return fail_at(ld, n->line, "%s: expected a scalar, got %s", what, kind_name(n));
    if (ydoc_is_null(n))
        return fail_at(ld, n->line, "%s: missing value", what);
    if (strlen(n->text) != n->len)
        return fail_at(ld, n->line, "%s: contains a NUL byte", what);
    return true;
}

static WUR bool load_duration(Loader *ld, const YDocNode *n, const char *what, int64_t min,
                              int64_t max, int64_t *out)
{
    char lo[32], hi[32];
    int64_t v;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    if (!config_parse_duration_ms(n->text, &v))
        return fail_at(ld, n->line,
                       "%s: invalid duration '%s' (expected a whole number with ms, s, m, h or "
                       "d, e.g. 500ms, 60s, 10m; a bare number is seconds)",
                       what, show_node(&s, n));
    if (v < min || v > max) {
        fmt_duration(min, lo, sizeof(lo));
        fmt_duration(max, hi, sizeof(hi));
        return fail_at(ld, n->line, "%s: %s is out of range (%s..%s)", what, show_node(&s, n), lo,
                       hi);
    }
    *out = v;
    return true;
}

static WUR bool load_size(Loader *ld, const YDocNode *n, const char *what, size_t min, size_t max,
                          size_t *out)
{
    char lo[32], hi[32];
    size_t v;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    if (!config_parse_size(n->text, &v))
        return fail_at(ld, n->line,
                       "%s: invalid size '%s' (expected a whole number of bytes with an optional "
                       "KB, MB or GB, e.g. 4096, 512KB, 1MB)",
                       what, show_node(&s, n));
    if (v < min || v > max) {
        fmt_size(min, lo, sizeof(lo));
        fmt_size(max, hi, sizeof(hi));
        return fail_at(ld, n->line, "%s: %s is out of range (%s..%s)", what, show_node(&s, n), lo,
                       hi);
    }
    *out = v;
    return true;
}

static WUR bool load_int(Loader *ld, const YDocNode *n, const char *what, int min, int max,
                         int *out)
{
    uint64_t v;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    if (!parse_uint(n->text, n->len, UINT64_MAX, &v) || v < (uint64_t)min || v > (uint64_t)max)
        return fail_at(ld, n->line, "%s: invalid value '%s' (expected a number %d..%d)", what,
                       show_node(&s, n), min, max);
    *out = (int)v;
    return true;
}

static WUR bool load_bool(Loader *ld, const YDocNode *n, const char *what, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    size_t i;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    for (i = 0; i < 3; i++) {
        if (strcasecmp(n->text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(n->text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return fail_at(ld, n->line, "%s: invalid value '%s' (expected true or false)", what,
                   show_node(&s, n));
}

/* One of a fixed set of words, case-insensitive; *out is its index. */
static WUR bool load_word(Loader *ld, const YDocNode *n, const char *what, const char *const *words,
                          size_t n_words, const char *expected, int *out)
{
    size_t i;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    for (i = 0; i < n_words; i++) {
        if (strcasecmp(n->text, words[i]) == 0) {
            *out = (int)i;
            return true;
        }
    }
    return fail_at(ld, n->line, "%s: invalid value '%s' (expected %s)", what, show_node(&s, n),
                   expected);
}

/* A non-empty string without control characters, replacing *dst. */
static WUR bool load_string(Loader *ld, const YDocNode *n, const char *what, char **dst)
{
    char *copy;
    size_t i;

    if (!want_scalar(ld, n, what))
        return false;
    if (n->len == 0)
        return fail_at(ld, n->line, "%s: must not be empty", what);
    for (i = 0; i < n->len; i++)
        if ((unsigned char)n->text[i] < 0x20 || n->text[i] == 0x7f)
            return fail_at(ld, n->line, "%s: contains a control character", what);
    copy = strdup(n->text);
    if (!copy)
        return fail_at(ld, n->line, "%s: out of memory", what);
    free(*dst);
    *dst = copy;
    return true;
}

static WUR bool load_hostport(Loader *ld, const YDocNode *n, const char *what, int default_port,
                              HostPort *out)
{
    const char *why;
    Shown s;

    if (!want_scalar(ld, n, what))
        return false;
    if (!parse_hostport(n->text, out, default_port, &why))
        return fail_at(ld, n->line, "%s: invalid address '%s': %s", what, show_node(&s, n), why);
    return true;
}

/*
 * A bare relation or function name as the analyser tags it: no schema, at most 63 bytes
 * (PostgreSQL would truncate a longer one, so the rule could never match).
 */
static WUR bool check_name(Loader *ld, const YDocNode *n, const char *what)
{
    size_t i;
    Shown s;

    if (n->kind == YDOC_SCALAR && (ydoc_is_null(n) || n->len == 0))
        return fail_at(ld, n->line, "%s: empty name", what);
    if (!want_scalar(ld, n, what))
        return false;
    for (i = 0; i < n->len; i++)
        if ((unsigned char)n->text[i] < 0x20 || n->text[i] == 0x7f)
            return fail_at(ld, n->line, "%s: '%s' contains a control character", what,
                           show_node(&s, n));
    if (memchr(n->text, '.', n->len))
        return fail_at(ld, n->line,
                       "%s: '%s' is not a bare name (drop the schema: a rule applies to the "
                       "name in every schema)",
                       what, show_node(&s, n));
    if (n->len > MAX_NAME_BYTES)
        return fail_at(ld, n->line, "%s: '%s' is longer than %d bytes", what, show_node(&s, n),
                       MAX_NAME_BYTES);
    return true;
}

/* A list of bare names into a fresh heap array (NULL when empty). */
static WUR bool load_names(Loader *ld, const YDocNode *n, const char *what, char ***out,
                           size_t *n_out)
{
    char item[160];
    char **v = NULL;
    size_t i, count = 0;
    bool ok = false;

    if (!want_list(ld, n, what))
        goto fail;
    if (n->n_items > 0) {
        v = calloc(n->n_items, sizeof(*v));
        if (!v) {
            fail_at(ld, n->line, "%s: out of memory", what);
            goto fail;
        }
    }
    for (i = 0; i < n->n_items; i++) {
        snprintf(item, sizeof(item), "%s[%zu]", what, i);
        if (!check_name(ld, n->items[i], item))
            goto fail;
        v[count] = strdup(n->items[i]->text);
        if (!v[count]) {
            fail_at(ld, n->items[i]->line, "%s: out of memory", item);
            goto fail;
        }
        count++;
    }
    free_strings(*out, *n_out);
    *out = v;
    *n_out = count;
    v = NULL;
    ok = true;
fail:
    free_strings(v, count);
    return ok;
}

/* --- sections ------------------------------------------------------------------------------ */

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static WUR bool load_catalog(Loader *ld, const YDocNode *map)
{
    static const char *const keys[] = {"user", "password_env", "dbname"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    const YDocNode *v;
    size_t i, k, j;

    if (!want_mapping(ld, map, "catalog"))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], "catalog", keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        switch (k) {
        case 0:
            if (!load_string(ld, v, "catalog.user", &cfg->catalog.user))
                return false;
            break;
        case 1:
            if (!load_string(ld, v, "catalog.password_env", &cfg->catalog.password_env))
                return false;
            for (j = 0; j < v->len; j++) {
                char c = v->text[j];
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
                      (j > 0 && c >= '0' && c <= '9'))) {
                    Shown s;
                    return fail_at(ld, v->line,
                                   "catalog.password_env: '%s' is not an environment variable "
                                   "name",
                                   show_node(&s, v));
                }
            }
            break;
        default:
            if (!load_string(ld, v, "catalog.dbname", &cfg->catalog.dbname))
                return false;
            break;
        }
    }
    return true;
}

static WUR bool load_cache(Loader *ld, const YDocNode *map)
{
    static const char *const keys[] = {"enabled",     "default_ttl",   "max_entry_bytes",
                                       "consistency", "key_prefix",    "redis_timeout",
                                       "local_max_bytes", "local_ttl"};
    static const char *const consistency[] = {"strict", "local"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    const YDocNode *v;
    size_t i, k, j;
    int word = 0;
    Shown s;

    if (!want_mapping(ld, map, "cache"))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], "cache", keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        switch (k) {
        case 0:
            if (!load_bool(ld, v, "cache.enabled", &cfg->cache.enabled))
                return false;
            break;
        case 1:
            if (!load_duration(ld, v, "cache.default_ttl", 0, MS_MAX, &cfg->cache.default_ttl_ms))
                return false;
            break;
        case 2:
            /* Redis refuses strings above 512MB. */
            if (!load_size(ld, v, "cache.max_entry_bytes", 1, 512 * MB,
                           &cfg->cache.max_entry_bytes))
                return false;
            break;
        case 3:
            if (!load_word(ld, v, "cache.consistency", consistency, N_OF(consistency),
                           "strict or local", &word))
                return false;
            cfg->cache.consistency = (Consistency)word;
            break;
        case 4:
            if (!load_string(ld, v, "cache.key_prefix", &cfg->cache.key_prefix))
                return false;
            /* It starts every Redis key: keep it printable and space-free. */
            for (j = 0; j < v->len; j++)
                if ((unsigned char)v->text[j] <= ' ' || (unsigned char)v->text[j] >= 0x7f)
                    return fail_at(ld, v->line,
                                   "cache.key_prefix: '%s' must be printable ASCII without "
                                   "spaces",
                                   show_node(&s, v));
            if (v->len > 128)
                return fail_at(ld, v->line, "cache.key_prefix: longer than 128 bytes");
            break;
        case 5:
            /* Zero would mean "wait forever", the opposite of failing open. */
            if (!load_duration(ld, v, "cache.redis_timeout", 1, MS_HOUR,
                               &cfg->cache.redis_timeout_ms))
                return false;
            break;
        case 6:
            if (!load_size(ld, v, "cache.local_max_bytes", 0, 64 * GB,
                           &cfg->cache.local_max_bytes))
                return false;
            break;
        default:
            if (!load_duration(ld, v, "cache.local_ttl", 0, MS_HOUR, &cfg->cache.local_ttl_ms))
                return false;
            break;
        }
    }
    return true;
}

static WUR bool load_log(Loader *ld, const YDocNode *map)
{
    static const char *const keys[] = {"level", "format", "stats_interval"};
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    static const char *const formats[] = {"text", "json"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    const YDocNode *v;
    size_t i, k;
    int word = 0;
    Shown s;

    if (!want_mapping(ld, map, "log"))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], "log", keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        switch (k) {
        case 0:
            if (!load_word(ld, v, "log.level", levels, N_OF(levels), "error, warn, info or debug",
                           &word))
                return false;
            cfg->log.level = (LogLevel)word;
            break;
        case 1:
            if (!load_word(ld, v, "log.format", formats, N_OF(formats), "text or json", &word))
                return false;
            cfg->log.format = (LogFormat)word;
            break;
        default:
            if (!load_duration(ld, v, "log.stats_interval", 0, MS_MAX, &cfg->log.stats_interval_ms))
                return false;
            /* Below 100ms the stats lines would drown everything else. */
            if (cfg->log.stats_interval_ms > 0 && cfg->log.stats_interval_ms < 100)
                return fail_at(ld, v->line,
                               "log.stats_interval: %s is too short (0 = off, or at least 100ms)",
                               show_node(&s, v));
            break;
        }
    }
    return true;
}

static WUR bool load_limits(Loader *ld, const YDocNode *map)
{
    static const char *const keys[] = {"max_message_bytes", "max_startup_bytes",
                                       "auth_timeout",      "client_idle_timeout",
                                       "max_client_conn",   "shutdown_grace",
                                       "server_idle_timeout", "server_lifetime"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    const YDocNode *v;
    size_t i, k;
    bool ok;

    if (!want_mapping(ld, map, "limits"))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], "limits", keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        switch (k) {
        case 0:
            /* A message length is an int32, and PostgreSQL itself stops at 1GB. */
            ok = load_size(ld, v, "limits.max_message_bytes", KB, GB,
                           &cfg->limits.max_message_bytes);
            break;
        case 1:
            /* The fixed part of a StartupMessage is 8 bytes; PostgreSQL allows 10000. */
            ok = load_size(ld, v, "limits.max_startup_bytes", 64, MB,
                           &cfg->limits.max_startup_bytes);
            break;
        case 2:
            /* Zero would let a half-sent start-up hold a connection forever. */
            ok = load_duration(ld, v, "limits.auth_timeout", 1, MS_MAX,
                               &cfg->limits.auth_timeout_ms);
            break;
        case 3:
            ok = load_duration(ld, v, "limits.client_idle_timeout", 0, MS_MAX,
                               &cfg->limits.idle_timeout_ms);
            break;
        case 4:
            ok =
                load_int(ld, v, "limits.max_client_conn", 1, 1000000, &cfg->limits.max_client_conn);
            break;
        case 5:
            ok = load_duration(ld, v, "limits.shutdown_grace", 0, MS_MAX,
                               &cfg->limits.shutdown_grace_ms);
            break;
        case 6:
            ok = load_duration(ld, v, "limits.server_idle_timeout", 0, MS_MAX,
                               &cfg->limits.server_idle_timeout_ms);
            break;
        default:
            /* Zero would keep nothing: that is server_idle_timeout: 0. */
            ok = load_duration(ld, v, "limits.server_lifetime", 1, MS_MAX,
                               &cfg->limits.server_lifetime_ms);
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static int cmp_table(const void *a, const void *b)
{
    const TableRule *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int cmp_function(const void *a, const void *b)
{
    const FunctionRule *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Names given twice: report the repeat that comes first in the file. */
static WUR bool check_repeats(Loader *ld, const char *section, const char *const *names,
                              const int *lines, size_t n)
{
    size_t i, worst = 0;
    Shown s;

    for (i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0 && (!worst || lines[i] < lines[worst]))
            worst = i;
    if (!worst)
        return true;
    return fail_at(ld, lines[worst], "duplicate key '%s' in %s (first at line %d)",
                   show(&s, names[worst], strlen(names[worst])), section, lines[worst - 1]);
}

static WUR bool load_table_rule(Loader *ld, TableRule *rule, const YDocNode *map)
{
    static const char *const keys[] = {"ttl", "cache", "safe", "also_invalidates"};
    int seen[N_OF(keys)] = {0};
    char where[128], what[160];
    const YDocNode *v;
    size_t i, k;
    bool ok;
    Shown s;

    snprintf(where, sizeof(where), "tables.%s", show(&s, rule->name, strlen(rule->name)));
    if (!want_mapping(ld, map, where))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], where, keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        snprintf(what, sizeof(what), "%s.%s", where, keys[k]);
        switch (k) {
        case 0:
            ok = load_duration(ld, v, what, 0, MS_MAX, &rule->ttl_ms);
            break;
        case 1:
            ok = load_bool(ld, v, what, &rule->cache);
            break;
        case 2:
            ok = load_bool(ld, v, what, &rule->safe);
            break;
        default:
            ok = load_names(ld, v, what, &rule->also_invalidates, &rule->n_also_invalidates);
            rule->also_invalidates_set = true;
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

static WUR bool load_tables(Loader *ld, const YDocNode *map)
{
    Config *cfg = ld->cfg;
    size_t i, n;
    const char **names = NULL;
    int *lines = NULL;
    TableRule *rule;
    bool ok = false;

    if (!want_mapping(ld, map, "tables"))
        goto fail;
    n = map->n_items / 2;
    if (n == 0) {
        ok = true;
        goto fail;
    }
    cfg->tables = calloc(n, sizeof(*cfg->tables));
    names = calloc(n, sizeof(*names));
    lines = calloc(n, sizeof(*lines));
    if (!cfg->tables || !names || !lines) {
        fail_at(ld, map->line, "tables: out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        if (!check_name(ld, map->items[2 * i], "tables"))
            goto fail;
        rule = &cfg->tables[cfg->n_tables];
        rule->name = strdup(map->items[2 * i]->text);
        if (!rule->name) {
            fail_at(ld, map->items[2 * i]->line, "tables: out of memory");
            goto fail;
        }
        cfg->n_tables++;
        rule->ttl_ms = -1;
        rule->cache = true;
        rule->line = map->items[2 * i]->line;
        if (!load_table_rule(ld, rule, map->items[2 * i + 1]))
            goto fail;
    }
    qsort(cfg->tables, cfg->n_tables, sizeof(*cfg->tables), cmp_table);
    for (i = 0; i < n; i++) {
        names[i] = cfg->tables[i].name;
        lines[i] = cfg->tables[i].line;
    }
    ok = check_repeats(ld, "tables", names, lines, n);
fail:
    free(names);
    free(lines);
    return ok;
}

static WUR bool load_function_rule(Loader *ld, FunctionRule *rule, const YDocNode *map)
{
    static const char *const keys[] = {"writes"};
    int seen[N_OF(keys)] = {0};
    char where[128], what[160];
    size_t i, k;
    Shown s;

    snprintf(where, sizeof(where), "functions.%s", show(&s, rule->name, strlen(rule->name)));
    if (!want_mapping(ld, map, where))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], where, keys, N_OF(keys), seen, &k))
            return false;
        snprintf(what, sizeof(what), "%s.writes", where);
        /* An empty `writes:` may be a slip; only an explicit [] declares "writes nothing". */
        if (ydoc_is_null(map->items[i + 1]))
            return fail_at(ld, map->items[i + 1]->line,
                           "%s: missing value (use [] for a function that writes no table)", what);
        if (!load_names(ld, map->items[i + 1], what, &rule->writes, &rule->n_writes))
            return false;
    }
    if (!seen[0])
        return fail_at(ld, rule->line,
                       "%s: 'writes' is required (list the tables it writes, [] for none)", where);
    return true;
}

static WUR bool load_functions(Loader *ld, const YDocNode *map)
{
    Config *cfg = ld->cfg;
    size_t i, n;
    const char **names = NULL;
    int *lines = NULL;
    FunctionRule *rule;
    bool ok = false;

    if (!want_mapping(ld, map, "functions"))
        goto fail;
    n = map->n_items / 2;
    if (n == 0) {
        ok = true;
        goto fail;
    }
    cfg->functions = calloc(n, sizeof(*cfg->functions));
    names = calloc(n, sizeof(*names));
    lines = calloc(n, sizeof(*lines));
    if (!cfg->functions || !names || !lines) {
        fail_at(ld, map->line, "functions: out of memory");
        goto fail;
    }
    for (i = 0; i < n; i++) {
        if (!check_name(ld, map->items[2 * i], "functions"))
            goto fail;
        rule = &cfg->functions[cfg->n_functions];
        rule->name = strdup(map->items[2 * i]->text);
        if (!rule->name) {
            fail_at(ld, map->items[2 * i]->line, "functions: out of memory");
            goto fail;
        }
        cfg->n_functions++;
        rule->line = map->items[2 * i]->line;
        if (!load_function_rule(ld, rule, map->items[2 * i + 1]))
            goto fail;
    }
    qsort(cfg->functions, cfg->n_functions, sizeof(*cfg->functions), cmp_function);
    for (i = 0; i < n; i++) {
        names[i] = cfg->functions[i].name;
        lines[i] = cfg->functions[i].line;
    }
    ok = check_repeats(ld, "functions", names, lines, n);
fail:
    free(names);
    free(lines);
    return ok;
}

/* Bytes that `n` characters of base64 decode to, or -1 when they are not base64. */
static long b64_decoded_len(const char *p, size_t n)
{
    if (n == 0 || n % 4 != 0)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (c == '=') {
            if (i < n - 2)
                return -1;
            pad++;
        } else if (pad || !(alnum || c == '+' || c == '/')) {
            return -1;
        }
    }
    return (long)(n / 4 * 3 - pad);
}

/*
 * A SCRAM-SHA-256 verifier as PostgreSQL stores it:
 * SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>, with a
 * positive iteration count and 32-byte keys — checked here so an unusable secret is a
 * FILE:LINE error, not a login that fails later.
 */
static bool looks_like_scram(const char *s)
{
    static const char prefix[] = "SCRAM-SHA-256$";
    const char *p = s + sizeof(prefix) - 1, *colon, *dollar, *colon2;

    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0)
        return false;
    colon = strchr(p, ':');
    if (!colon || colon == p || digits_len(p) != (size_t)(colon - p) || colon - p > 9 ||
        atol(p) < 1)
        return false;
    dollar = strchr(colon + 1, '$');
    if (!dollar || b64_decoded_len(colon + 1, (size_t)(dollar - colon - 1)) < 1)
        return false;
    colon2 = strchr(dollar + 1, ':');
    return colon2 && b64_decoded_len(dollar + 1, (size_t)(colon2 - dollar - 1)) == 32 &&
           b64_decoded_len(colon2 + 1, strlen(colon2 + 1)) == 32;
}

static WUR bool load_admin_user(Loader *ld, AdminUser *user, const YDocNode *map, size_t index)
{
    static const char *const keys[] = {"name", "secret"};
    int seen[N_OF(keys)] = {0};
    char where[64], what[80];
    size_t i, k;

    snprintf(where, sizeof(where), "admin.users[%zu]", index);
    if (map->kind != YDOC_MAPPING)
        return fail_at(ld, map->line, "%s: expected a mapping, got %s", where, kind_name(map));
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], where, keys, N_OF(keys), seen, &k))
            return false;
        snprintf(what, sizeof(what), "%s.%s", where, keys[k]);
        if (!load_string(ld, map->items[i + 1], what, k == 0 ? &user->name : &user->secret))
            return false;
        /* The secret itself never goes into a message. */
        if (k == 1 && !looks_like_scram(user->secret))
            return fail_at(ld, map->items[i + 1]->line,
                           "%s: not a SCRAM-SHA-256 verifier (expected "
                           "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)",
                           what);
    }
    if (!seen[0] || !seen[1])
        return fail_at(ld, map->line, "%s: needs both 'name' and 'secret'", where);
    return true;
}

static WUR bool load_admin(Loader *ld, const YDocNode *map)
{
    static const char *const keys[] = {"listen", "users"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    const YDocNode *v;
    size_t i, j, k;
    Shown s;

    if (!want_mapping(ld, map, "admin"))
        return false;
    for (i = 0; i + 1 < map->n_items; i += 2) {
        if (!key_index(ld, map->items[i], "admin", keys, N_OF(keys), seen, &k))
            return false;
        v = map->items[i + 1];
        if (k == 0) {
            if (!load_hostport(ld, v, "admin.listen", DEFAULT_ADMIN_PORT, &cfg->admin.listen))
                return false;
            cfg->admin.listen_set = true;
            continue;
        }
        if (!want_list(ld, v, "admin.users"))
            return false;
        if (v->n_items == 0)
            continue;
        cfg->admin.users = calloc(v->n_items, sizeof(*cfg->admin.users));
        if (!cfg->admin.users)
            return fail_at(ld, v->line, "admin.users: out of memory");
        for (j = 0; j < v->n_items; j++) {
            cfg->admin.n_users++;
            if (!load_admin_user(ld, &cfg->admin.users[j], v->items[j], j))
                return false;
            for (k = 0; k < j; k++)
                if (cfg->admin.users[k].name && cfg->admin.users[j].name &&
                    strcmp(cfg->admin.users[k].name, cfg->admin.users[j].name) == 0)
                    return fail_at(
                        ld, v->items[j]->line, "admin.users[%zu]: user '%s' is listed twice", j,
                        show(&s, cfg->admin.users[j].name, strlen(cfg->admin.users[j].name)));
        }
    }
    return true;
}

static WUR bool load_root(Loader *ld, const YDocNode *root)
{
    static const char *const keys[] = {"listen",  "upstream", "redis",  "workers",
                                       "catalog", "cache",    "tables", "functions",
                                       "log",     "limits",   "admin"};
    int seen[N_OF(keys)] = {0};
    Config *cfg = ld->cfg;
    RedisUrl url;
    const YDocNode *v;
    const char *why;
    uint64_t num;
    size_t i, k;
    bool ok;
    Shown s;

    if (ydoc_is_null(root))
        return true;
    if (root->kind != YDOC_MAPPING)
        return fail_at(ld, root->line, "expected a mapping at the top level, got %s",
                       kind_name(root));
    for (i = 0; i + 1 < root->n_items; i += 2) {
        if (!key_index(ld, root->items[i], NULL, keys, N_OF(keys), seen, &k))
            return false;
        v = root->items[i + 1];
        switch (k) {
        case 0:
            ok = load_hostport(ld, v, "listen", DEFAULT_LISTEN_PORT, &cfg->listen);
            break;
        case 1:
            ok = load_hostport(ld, v, "upstream", DEFAULT_UPSTREAM_PORT, &cfg->upstream);
            break;
        case 2:
            ok = want_scalar(ld, v, "redis");
            if (ok && !parse_redis_url(v->text, &url, &why))
                return fail_at(ld, v->line, "redis: invalid URL '%s': %s", show_url(&s, v->text),
                               why);
            if (ok) {
                config_redis_url_clear(&cfg->redis);
                cfg->redis = url;
            }
            break;
        case 3:
            ok = want_scalar(ld, v, "workers");
            if (!ok || strcasecmp(v->text, "auto") == 0) {
                cfg->workers = 0;
                break;
            }
            if (!parse_uint(v->text, v->len, MAX_WORKERS, &num) || num == 0)
                return fail_at(ld, v->line, "workers: invalid value '%s' (expected auto or 1..%d)",
                               show_node(&s, v), MAX_WORKERS);
            cfg->workers = (int)num;
            break;
        case 4:
            ok = load_catalog(ld, v);
            break;
        case 5:
            ok = load_cache(ld, v);
            break;
        case 6:
            ok = load_tables(ld, v);
            break;
        case 7:
            ok = load_functions(ld, v);
            break;
        case 8:
            ok = load_log(ld, v);
            break;
        case 9:
            ok = load_limits(ld, v);
            break;
        default:
            ok = load_admin(ld, v);
            break;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* --- loading ----------------------------------------------------------------------------- */

bool config_load_buffer(const char *name, const char *yaml, size_t len, Config **out, char *err,
                        size_t errlen)
{
    Loader ld = {.name = name ? name : "<config>", .err = err, .errlen = errlen};
    YDocNode *root = NULL;
    char msg[CONFIG_ERR_LEN];
    int line = 1;
    bool ok = false;

    if (err && errlen > 0)
        err[0] = '\0';
    if (!out) {
        set_err(err, errlen, "%s: nowhere to store the configuration", ld.name);
        goto fail;
    }
    *out = NULL;
    if (len > MAX_FILE_BYTES) {
        set_err(err, errlen, "%s: larger than 16MB, not a configuration file", ld.name);
        goto fail;
    }
    ld.cfg = config_defaults();
    if (!ld.cfg) {
        set_err(err, errlen, "%s: out of memory", ld.name);
        goto fail;
    }
    if (!ydoc_parse(yaml, yaml ? len : 0, &root, &line, msg, sizeof(msg))) {
        fail_at(&ld, line, "%s", msg);
        goto fail;
    }
    if (root && !load_root(&ld, root))
        goto fail;
    *out = ld.cfg;
    ld.cfg = NULL;
    ok = true;
fail:
    ydoc_free(root);
    config_free(ld.cfg);
    return ok;
}

bool config_load(const char *path, Config **out, char *err, size_t errlen)
{
    FILE *f = NULL;
    char *buf = NULL, *grown;
    size_t len = 0, cap = 0, got;
    bool ok = false;

    if (err && errlen > 0)
        err[0] = '\0';
    if (out)
        *out = NULL;
    if (!path || !out) {
        set_err(err, errlen, "%s: cannot open: %s", path ? path : "(null)", strerror(EINVAL));
        goto fail;
    }
    f = fopen(path, "rb");
    if (!f) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    /* Read up to one byte past the limit, so config_load_buffer can tell "too large". */
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 64 * KB;
            if (cap > MAX_FILE_BYTES + 1)
                cap = MAX_FILE_BYTES + 1;
            grown = realloc(buf, cap);
            if (!grown) {
                set_err(err, errlen, "%s: out of memory", path);
                goto fail;
            }
            buf = grown;
        }
        got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0 || len > MAX_FILE_BYTES)
            break;
    }
    if (ferror(f)) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno ? errno : EIO));
        goto fail;
    }
    if (!config_load_buffer(path, buf, len, out, err, errlen))
        goto fail;
    (*out)->path = strdup(path);
    if (!(*out)->path) {
        set_err(err, errlen, "%s: out of memory", path);
        config_free(*out);
        *out = NULL;
        goto fail;
    }
    ok = true;
fail:
    if (f)
        fclose(f);
    free(buf);
    return ok;
}

bool config_override(Config *cfg, const char *key, const char *value, char *err, size_t errlen)
{
    RedisUrl url;
    HostPort hp;
    const char *why;
    Shown s;

    if (err && errlen > 0)
        err[0] = '\0';
    if (!cfg || !key) {
        set_err(err, errlen, "--%s: no configuration to override", key ? key : "(null)");
        return false;
    }
    if (!value || !*value) {
        set_err(err, errlen, "--%s: missing value", show(&s, key, strlen(key)));
        return false;
    }
    if (strcmp(key, "listen") == 0 || strcmp(key, "upstream") == 0) {
        if (!parse_hostport(value, &hp, key[0] == 'l' ? DEFAULT_LISTEN_PORT : DEFAULT_UPSTREAM_PORT,
                            &why)) {
            set_err(err, errlen, "--%s: invalid address '%s': %s", key,
                    show(&s, value, strlen(value)), why);
            return false;
        }
        if (key[0] == 'l')
            cfg->listen = hp;
        else
            cfg->upstream = hp;
        return true;
    }
    if (strcmp(key, "redis") == 0) {
        if (!parse_redis_url(value, &url, &why)) {
            set_err(err, errlen, "--redis: invalid URL '%s': %s", show_url(&s, value), why);
            return false;
        }
        config_redis_url_clear(&cfg->redis);
        cfg->redis = url;
        return true;
    }
    set_err(err, errlen, "--%s: cannot be overridden (expected listen, upstream or redis)",
            show(&s, key, strlen(key)));
    return false;
}

/* --- lookups --------------------------------------------------------------------------------- */

static int cmp_name_table(const void *key, const void *elem)
{
    return strcmp(key, ((const TableRule *)elem)->name);
}

static int cmp_name_function(const void *key, const void *elem)
{
    return strcmp(key, ((const FunctionRule *)elem)->name);
}

const TableRule *config_table(const Config *cfg, const char *name)
{
    if (!cfg || !name || cfg->n_tables == 0)
        return NULL;
    return bsearch(name, cfg->tables, cfg->n_tables, sizeof(*cfg->tables), cmp_name_table);
}

const FunctionRule *config_function(const Config *cfg, const char *name)
{
    if (!cfg || !name || cfg->n_functions == 0)
        return NULL;
    return bsearch(name, cfg->functions, cfg->n_functions, sizeof(*cfg->functions),
                   cmp_name_function);
}

int64_t config_table_ttl_ms(const Config *cfg, const char *name)
{
    const TableRule *rule;

    if (!cfg || !cfg->cache.enabled)
        return 0;
    rule = config_table(cfg, name);
    if (rule && !rule->cache)
        return 0;
    if (rule && rule->ttl_ms >= 0)
        return rule->ttl_ms;
    return cfg->cache.default_ttl_ms;
}

int config_worker_count(const Config *cfg)
{
    long n;

    if (cfg && cfg->workers > 0)
        return cfg->workers;
    n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

const char *config_consistency_name(Consistency c)
{
    switch (c) {
    case CONSISTENCY_STRICT:
        return "strict";
    case CONSISTENCY_LOCAL:
        return "local";
    }
    return "unknown";
}

const char *config_log_level_name(LogLevel l)
{
    switch (l) {
    case LOG_ERROR:
        return "error";
    case LOG_WARN:
        return "warn";
    case LOG_INFO:
        return "info";
    case LOG_DEBUG:
        return "debug";
    }
    return "unknown";
}

const char *config_log_format_name(LogFormat f)
{
    switch (f) {
    case LOG_FORMAT_TEXT:
        return "text";
    case LOG_FORMAT_JSON:
        return "json";
    }
    return "unknown";
}
