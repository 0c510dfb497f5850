/*
 * test_config.c — config/ as a specification: tables of (YAML, field, expected value) and of
 * (YAML, exact error message), the value parsers, command-line overrides, rule lookups and
 * hostile input. Run from the repository root (it reads pgstash.example.yaml from there, or
 * from $srcdir).
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

/* --- helpers ------------------------------------------------------------------------------- */

static void append(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t n, const char *fmt, ...)
{
    size_t used = strlen(buf);
    va_list ap;

    if (used >= n)
        return;
    va_start(ap, fmt);
    vsnprintf(buf + used, n - used, fmt, ap);
    va_end(ap);
}

static void hostport_str(const HostPort *hp, char *buf, size_t n)
{
    if (strchr(hp->host, ':'))
        snprintf(buf, n, "[%s]:%d", hp->host, hp->port);
    else
        snprintf(buf, n, "%s:%d", hp->host, hp->port);
}

static const char *str_or_null(const char *s)
{
    return s ? s : "(null)";
}

static void names_str(char *const *v, size_t n, char *buf, size_t len)
{
    size_t i;

    append(buf, len, "[");
    for (i = 0; i < n; i++)
        append(buf, len, "%s%s", i ? "," : "", v[i]);
    append(buf, len, "]");
}

/*
 * One field of a Config as text, so the tables below can say what they expect in the
 * terms of the YAML. Unknown field names fail the test.
 */
static void describe(const Config *c, const char *field, char *buf, size_t n)
{
    size_t i;

    buf[0] = '\0';
    if (strcmp(field, "listen") == 0)
        hostport_str(&c->listen, buf, n);
    else if (strcmp(field, "upstream") == 0)
        hostport_str(&c->upstream, buf, n);
    else if (strcmp(field, "redis") == 0) {
        hostport_str(&c->redis.addr, buf, n);
        append(buf, n, " db=%d user=%s password=%s", c->redis.db, str_or_null(c->redis.user),
               str_or_null(c->redis.password));
    } else if (strcmp(field, "workers") == 0)
        snprintf(buf, n, "%d", c->workers);
    else if (strcmp(field, "catalog.user") == 0)
        snprintf(buf, n, "%s", str_or_null(c->catalog.user));
    else if (strcmp(field, "catalog.password_env") == 0)
        snprintf(buf, n, "%s", str_or_null(c->catalog.password_env));
    else if (strcmp(field, "catalog.dbname") == 0)
        snprintf(buf, n, "%s", str_or_null(c->catalog.dbname));
    else if (strcmp(field, "cache.enabled") == 0)
        snprintf(buf, n, "%s", c->cache.enabled ? "true" : "false");
    else if (strcmp(field, "cache.default_ttl_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->cache.default_ttl_ms);
    else if (strcmp(field, "cache.max_entry_bytes") == 0)
        snprintf(buf, n, "%zu", c->cache.max_entry_bytes);
    else if (strcmp(field, "cache.consistency") == 0)
        snprintf(buf, n, "%s", config_consistency_name(c->cache.consistency));
    else if (strcmp(field, "cache.key_prefix") == 0)
        snprintf(buf, n, "%s", str_or_null(c->cache.key_prefix));
    else if (strcmp(field, "cache.redis_timeout_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->cache.redis_timeout_ms);
    else if (strcmp(field, "cache.local_max_bytes") == 0)
        snprintf(buf, n, "%zu", c->cache.local_max_bytes);
    else if (strcmp(field, "cache.local_ttl_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->cache.local_ttl_ms);
    else if (strcmp(field, "log.level") == 0)
        snprintf(buf, n, "%s", config_log_level_name(c->log.level));
    else if (strcmp(field, "log.format") == 0)
        snprintf(buf, n, "%s", config_log_format_name(c->log.format));
    else if (strcmp(field, "log.stats_interval_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->log.stats_interval_ms);
    else if (strcmp(field, "limits.max_message_bytes") == 0)
        snprintf(buf, n, "%zu", c->limits.max_message_bytes);
    else if (strcmp(field, "limits.max_startup_bytes") == 0)
        snprintf(buf, n, "%zu", c->limits.max_startup_bytes);
    else if (strcmp(field, "limits.auth_timeout_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->limits.auth_timeout_ms);
    else if (strcmp(field, "limits.idle_timeout_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->limits.idle_timeout_ms);
    else if (strcmp(field, "limits.max_client_conn") == 0)
        snprintf(buf, n, "%d", c->limits.max_client_conn);
    else if (strcmp(field, "limits.shutdown_grace_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->limits.shutdown_grace_ms);
    else if (strcmp(field, "limits.server_idle_timeout_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->limits.server_idle_timeout_ms);
    else if (strcmp(field, "limits.server_lifetime_ms") == 0)
        snprintf(buf, n, "%lld", (long long)c->limits.server_lifetime_ms);
    else if (strcmp(field, "admin.listen") == 0) {
        if (c->admin.listen_set)
            hostport_str(&c->admin.listen, buf, n);
        else
            snprintf(buf, n, "unset");
    } else if (strcmp(field, "admin.users") == 0) {
        for (i = 0; i < c->admin.n_users; i++)
            append(buf, n, "%s%s=%s", i ? "; " : "", c->admin.users[i].name,
                   c->admin.users[i].secret);
    } else if (strcmp(field, "tables") == 0) {
        for (i = 0; i < c->n_tables; i++) {
            const TableRule *t = &c->tables[i];
            append(buf, n, "%s%s ttl=%lld cache=%d safe=%d also=", i ? "; " : "", t->name,
                   (long long)t->ttl_ms, t->cache, t->safe);
            if (t->also_invalidates_set)
                names_str(t->also_invalidates, t->n_also_invalidates, buf, n);
            else
                append(buf, n, "-");
            append(buf, n, " line=%d", t->line);
        }
    } else if (strcmp(field, "functions") == 0) {
        for (i = 0; i < c->n_functions; i++) {
            const FunctionRule *f = &c->functions[i];
            append(buf, n, "%s%s writes=", i ? "; " : "", f->name);
            names_str(f->writes, f->n_writes, buf, n);
            append(buf, n, " line=%d", f->line);
        }
    } else
        ck_abort_msg("describe: unknown field %s", field);
}

/* Loads YAML from memory as "x.yaml"; fails the test on an error. */
static Config *load_ok(const char *yaml)
{
    char err[CONFIG_ERR_LEN] = "";
    Config *cfg = NULL;

    if (!config_load_buffer("x.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err)))
        ck_abort_msg("unexpected error for YAML:\n%s\n-> %s", yaml, err);
    ck_assert_ptr_nonnull(cfg);
    return cfg;
}

/* --- defaults ------------------------------------------------------------------------------ */

/* Every field with its default, as DESIGN.md and config.h state them. */
static const struct {
    const char *field;
    const char *expect;
} defaults[] = {
    {"listen", "127.0.0.1:6432"},
    {"upstream", "127.0.0.1:5432"},
    {"redis", "127.0.0.1:6379 db=0 user=(null) password=(null)"},
    {"workers", "0"},
    {"catalog.user", "(null)"},
    {"catalog.password_env", "(null)"},
    {"catalog.dbname", "(null)"},
    {"cache.enabled", "true"},
    {"cache.default_ttl_ms", "60000"},
    {"cache.max_entry_bytes", "1048576"},
    {"cache.consistency", "strict"},
    {"cache.key_prefix", "pgstash"},
    {"cache.redis_timeout_ms", "50"},
    {"cache.local_max_bytes", "67108864"},
    {"cache.local_ttl_ms", "1000"},
    {"log.level", "info"},
    {"log.format", "text"},
    {"log.stats_interval_ms", "10000"},
    {"limits.max_message_bytes", "67108864"},
    {"limits.max_startup_bytes", "10000"},
    {"limits.auth_timeout_ms", "60000"},
    {"limits.idle_timeout_ms", "0"},
    {"limits.max_client_conn", "10000"},
    {"limits.shutdown_grace_ms", "30000"},
    {"limits.server_idle_timeout_ms", "0"},
    {"limits.server_lifetime_ms", "3600000"},
    {"admin.listen", "unset"},
    {"admin.users", ""},
    {"tables", ""},
    {"functions", ""},
};

/* Inputs that mean "nothing configured": all of them give exactly the defaults. */
static const char *const empty_inputs[] = {
    "",
    "\n\n",
    "# only a comment\n",
    "---\n",
    "---\n...\n",
    "~\n",
    "{}\n",
    "cache:\ntables:\nfunctions:\nlog:\nlimits:\nadmin:\ncatalog:\n",
    "tables: {}\nfunctions: {}\nadmin: {users: []}\n",
};

static void assert_defaults(const Config *cfg, const char *what)
{
    char got[1024];
    size_t i;

    for (i = 0; i < N_OF(defaults); i++) {
        describe(cfg, defaults[i].field, got, sizeof(got));
        ck_assert_msg(strcmp(got, defaults[i].expect) == 0, "%s: %s is '%s', expected '%s'", what,
                      defaults[i].field, got, defaults[i].expect);
    }
}

START_TEST(test_defaults)
{
    Config *cfg = config_defaults();

    ck_assert_ptr_nonnull(cfg);
    assert_defaults(cfg, "config_defaults()");
    ck_assert_ptr_null(cfg->path);
    config_free(cfg);
}
END_TEST

START_TEST(test_empty_inputs)
{
    Config *cfg = load_ok(empty_inputs[_i]);

    assert_defaults(cfg, empty_inputs[_i]);
    ck_assert_ptr_null(cfg->path);
    config_free(cfg);
}
END_TEST

/* The example shipped to operators must load and must state the defaults truthfully. */
START_TEST(test_example_file)
{
    char path[4096], err[CONFIG_ERR_LEN] = "";
    const char *dir = getenv("srcdir");
    Config *cfg = NULL;

    snprintf(path, sizeof(path), "%s/pgstash.example.yaml", dir ? dir : ".");
    if (!config_load(path, &cfg, err, sizeof(err)))
        ck_abort_msg("%s", err);
    assert_defaults(cfg, path);
    ck_assert_str_eq(cfg->path, path);
    config_free(cfg);
}
END_TEST

/* --- value parsers ------------------------------------------------------------------------- */

static const struct {
    const char *text;
    bool ok;
    int64_t ms;
} durations[] = {
    {"60s", true, 60000},
    {"10m", true, 600000},
    {"5s", true, 5000},
    {"500ms", true, 500},
    {"1h", true, 3600000},
    {"2d", true, 172800000},
    {"0", true, 0},
    {"0s", true, 0},
    {"0ms", true, 0},
    {"30", true, 30000}, /* a bare number is seconds */
    {"007s", true, 7000},
    {"3650d", true, INT64_C(315360000000)}, /* the ceiling: ten years */
    {"87600h", true, INT64_C(315360000000)},
    {"3651d", false, 0},
    {"315360001", false, 0},
    {"99999999999999999999999", false, 0},
    {"", false, 0},
    {"s", false, 0},
    {"ms", false, 0},
    {"-5s", false, 0},
    {"+5s", false, 0},
    {"1.5s", false, 0}, /* no fractions: write 1500ms */
    {"5 s", false, 0},
    {" 5s", false, 0},
    {"5s ", false, 0},
    {"5S", false, 0},
    {"5MS", false, 0},
    {"5sec", false, 0},
    {"5ms5", false, 0},
    {"1w", false, 0},
    {"5us", false, 0},
    {"1h30m", false, 0},
    {"0x10", false, 0},
};

START_TEST(test_durations)
{
    int64_t ms = -42;
    bool ok = config_parse_duration_ms(durations[_i].text, &ms);

    ck_assert_msg(ok == durations[_i].ok, "'%s': ok=%d", durations[_i].text, ok);
    if (ok)
        ck_assert_int_eq(ms, durations[_i].ms);
    else
        ck_assert_int_eq(ms, -42); /* untouched on failure */
}
END_TEST

static const struct {
    const char *text;
    bool ok;
    size_t bytes;
} sizes[] = {
    {"1MB", true, 1048576},
    {"512KB", true, 524288},
    {"1GB", true, 1073741824},
    {"4096", true, 4096},
    {"4096B", true, 4096},
    {"4096b", true, 4096},
    {"0", true, 0},
    {"1mb", true, 1048576},
    {"1Mb", true, 1048576},
    {"1MiB", true, 1048576},
    {"1mib", true, 1048576},
    {"2KiB", true, 2048},
    {"2kb", true, 2048},
    {"3GiB", true, (size_t)3 << 30},
    {"1536KB", true, 1572864},
    {"1.5MB", false, 0}, /* fractions are refused: write 1536KB */
    {"0.5GB", false, 0},
    {"1 MB", false, 0},
    {" 1MB", false, 0},
    {"-1", false, 0},
    {"+1", false, 0},
    {"1TB", false, 0},
    {"1K", false, 0},
    {"1M", false, 0},
    {"1KBB", false, 0},
    {"", false, 0},
    {"MB", false, 0},
    {"18446744073709551616", false, 0}, /* 2^64 */
    {"17179869184GB", false, 0},        /* 2^34 GB = 2^64 bytes */
    {"99999999999999999999999999", false, 0},
};

START_TEST(test_sizes)
{
    size_t bytes = 42;
    bool ok = config_parse_size(sizes[_i].text, &bytes);

    ck_assert_msg(ok == sizes[_i].ok, "'%s': ok=%d", sizes[_i].text, ok);
    ck_assert_uint_eq(bytes, ok ? sizes[_i].bytes : 42);
}
END_TEST

static const struct {
    const char *text;
    int default_port;
    bool ok;
    const char *host;
    int port;
} hostports[] = {
    {"127.0.0.1:6432", 1, true, "127.0.0.1", 6432},
    {"localhost:5432", 1, true, "localhost", 5432},
    {"db.example.com:5433", 1, true, "db.example.com", 5433},
    {"db_1-a:1", 1, true, "db_1-a", 1},
    {"0.0.0.0:65535", 1, true, "0.0.0.0", 65535},
    {"[::1]:6432", 1, true, "::1", 6432},
    {"[::]:6432", 1, true, "::", 6432},
    {"[fe80::1%eth0]:6432", 1, true, "fe80::1%eth0", 6432},
    {"[::ffff:10.0.0.1]:5432", 1, true, "::ffff:10.0.0.1", 5432},
    {"/var/run/postgresql:5432", 1, true, "/var/run/postgresql", 5432},
    {"/tmp", 5432, true, "/tmp", 5432},
    {"localhost", 5432, true, "localhost", 5432}, /* missing port: the default */
    {"[::1]", 6432, true, "::1", 6432},
    {"127.0.0.1", 6379, true, "127.0.0.1", 6379},
    {"localhost:0", 1, false, NULL, 0},
    {"localhost:65536", 1, false, NULL, 0},
    {"localhost:99999999999999999999", 1, false, NULL, 0},
    {"localhost:", 1, false, NULL, 0},
    {"localhost:abc", 1, false, NULL, 0},
    {"localhost:-1", 1, false, NULL, 0},
    {"localhost:+5", 1, false, NULL, 0},
    {"localhost: 5", 1, false, NULL, 0},
    {":5432", 1, false, NULL, 0},
    {"", 1, false, NULL, 0},
    {"::1", 1, false, NULL, 0}, /* IPv6 needs brackets */
    {"::1:5432", 1, false, NULL, 0},
    {"[::1", 1, false, NULL, 0},
    {"[::1]5432", 1, false, NULL, 0},
    {"[]:5432", 1, false, NULL, 0},
    {"[nothex]:5432", 1, false, NULL, 0},
    {"[1.2.3.4]:5432", 1, false, NULL, 0},
    {"local host:1", 1, false, NULL, 0},
    {"host/x:1", 1, false, NULL, 0},
    {"/tmp:x", 1, false, NULL, 0},
    {"/tmp/", 1, true, "/tmp/", 1},
    {"/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaa:1",
     1, false, NULL, 0},              /* <dir>/.s.PGSQL.<port> would not fit sun_path */
    {"localhost", 0, false, NULL, 0}, /* no port and no usable default */
};

START_TEST(test_hostports)
{
    HostPort hp = {.host = "untouched", .port = -1};
    bool ok = config_parse_hostport(hostports[_i].text, &hp, hostports[_i].default_port);

    ck_assert_msg(ok == hostports[_i].ok, "'%s': ok=%d", hostports[_i].text, ok);
    if (ok) {
        ck_assert_str_eq(hp.host, hostports[_i].host);
        ck_assert_int_eq(hp.port, hostports[_i].port);
    } else {
        ck_assert_str_eq(hp.host, "untouched");
        ck_assert_int_eq(hp.port, -1);
    }
}
END_TEST

static const struct {
    const char *text;
    bool ok;
    const char *host;
    int port;
    const char *user;
    const char *password;
    int db;
} redis_urls[] = {
    {"redis://127.0.0.1:6379/0", true, "127.0.0.1", 6379, NULL, NULL, 0},
    {"redis://cache.local:7000/3", true, "cache.local", 7000, NULL, NULL, 3},
    {"redis://localhost", true, "localhost", 6379, NULL, NULL, 0},
    {"redis://localhost/", true, "localhost", 6379, NULL, NULL, 0},
    {"REDIS://localhost:1/15", true, "localhost", 1, NULL, NULL, 15},
    {"redis://[::1]:6380/2", true, "::1", 6380, NULL, NULL, 2},
    {"redis://:s3cret@host:6379/0", true, "host", 6379, NULL, "s3cret", 0},
    {"redis://user:pass@host", true, "host", 6379, "user", "pass", 0},
    {"redis://user:p@ss@host:1", true, "host", 1, "user", "p@ss", 0},
    {"redis://us%3Aer:p%40%2Fss@host", true, "host", 6379, "us:er", "p@/ss", 0},
    {"redis://:@host", true, "host", 6379, NULL, NULL, 0},
    {"redis://user:@host", false, NULL, 0, NULL, NULL, 0},
    {"redis://pass@host", false, NULL, 0, NULL, NULL, 0},
    {"http://localhost:6379", false, NULL, 0, NULL, NULL, 0},
    {"rediss://localhost:6379", false, NULL, 0, NULL, NULL, 0},
    {"localhost:6379", false, NULL, 0, NULL, NULL, 0},
    {"redis:/localhost", false, NULL, 0, NULL, NULL, 0},
    {"redis://", false, NULL, 0, NULL, NULL, 0},
    {"redis:///0", false, NULL, 0, NULL, NULL, 0},
    {"redis://host/abc", false, NULL, 0, NULL, NULL, 0},
    {"redis://host/-1", false, NULL, 0, NULL, NULL, 0},
    {"redis://host/1/2", false, NULL, 0, NULL, NULL, 0},
    {"redis://host/0?timeout=1", false, NULL, 0, NULL, NULL, 0},
    {"redis://host/99999999999", false, NULL, 0, NULL, NULL, 0},
    {"redis://host:0", false, NULL, 0, NULL, NULL, 0},
    {"redis://host:x/0", false, NULL, 0, NULL, NULL, 0},
    {"redis://:p%zz@host", false, NULL, 0, NULL, NULL, 0},
    {"redis://:p%4@host", false, NULL, 0, NULL, NULL, 0},
    {"redis://:p%00@host", false, NULL, 0, NULL, NULL, 0},
    {"", false, NULL, 0, NULL, NULL, 0},
};

START_TEST(test_redis_urls)
{
    RedisUrl u = {.db = -1};
    bool ok = config_parse_redis_url(redis_urls[_i].text, &u);

    ck_assert_msg(ok == redis_urls[_i].ok, "'%s': ok=%d", redis_urls[_i].text, ok);
    if (ok) {
        ck_assert_str_eq(u.addr.host, redis_urls[_i].host);
        ck_assert_int_eq(u.addr.port, redis_urls[_i].port);
        ck_assert_pstr_eq(u.user, redis_urls[_i].user);
        ck_assert_pstr_eq(u.password, redis_urls[_i].password);
        ck_assert_int_eq(u.db, redis_urls[_i].db);
    } else {
        ck_assert_int_eq(u.db, -1);
        ck_assert_ptr_null(u.user);
        ck_assert_ptr_null(u.password);
    }
    config_redis_url_clear(&u);
    config_redis_url_clear(&u); /* twice is fine */
}
END_TEST

/* --- loading: accepted files --------------------------------------------------------------- */

static const struct {
    const char *yaml;
    const char *field;
    const char *expect;
} values[] = {
    /* addresses */
    {"listen: 0.0.0.0:7432\n", "listen", "0.0.0.0:7432"},
    {"listen: localhost\n", "listen", "localhost:6432"},
    {"listen: '[::1]:6433'\n", "listen", "[::1]:6433"},
    {"listen: \"[::]\"\n", "listen", "[::]:6432"},
    {"upstream: localhost:5433\n", "upstream", "localhost:5433"},
    {"upstream: /var/run/postgresql:5432\n", "upstream", "/var/run/postgresql:5432"},
    {"upstream: /tmp\n", "upstream", "/tmp:5432"},
    {"upstream: db.internal\n", "upstream", "db.internal:5432"},
    {"redis: redis://10.0.0.5:6380/2\n", "redis", "10.0.0.5:6380 db=2 user=(null) password=(null)"},
    {"redis: redis://:pw@r:1/0\n", "redis", "r:1 db=0 user=(null) password=pw"},
    {"redis: redis://app:pw@r\n", "redis", "r:6379 db=0 user=app password=pw"},
    /* workers */
    {"workers: auto\n", "workers", "0"},
    {"workers: AUTO\n", "workers", "0"},
    {"workers: 1\n", "workers", "1"},
    {"workers: 4\n", "workers", "4"},
    {"workers: 256\n", "workers", "256"},
    {"workers: '8'\n", "workers", "8"},
    /* catalog */
    {"catalog:\n  user: pgstash\n", "catalog.user", "pgstash"},
    {"catalog: {password_env: PGSTASH_CATALOG_PASSWORD}\n", "catalog.password_env",
     "PGSTASH_CATALOG_PASSWORD"},
    {"catalog: {password_env: _x1}\n", "catalog.password_env", "_x1"},
    {"catalog: {dbname: postgres}\n", "catalog.dbname", "postgres"},
    {"catalog: {user: \"Ünïcode user\"}\n", "catalog.user", "Ünïcode user"},
    /* cache */
    {"cache: {enabled: false}\n", "cache.enabled", "false"},
    {"cache: {enabled: true}\n", "cache.enabled", "true"},
    {"cache: {enabled: no}\n", "cache.enabled", "false"},
    {"cache: {enabled: On}\n", "cache.enabled", "true"},
    {"cache: {enabled: FALSE}\n", "cache.enabled", "false"},
    {"cache:\n  default_ttl: 60s\n", "cache.default_ttl_ms", "60000"},
    {"cache:\n  default_ttl: 10m\n", "cache.default_ttl_ms", "600000"},
    {"cache:\n  default_ttl: 0\n", "cache.default_ttl_ms", "0"},
    {"cache:\n  default_ttl: 90\n", "cache.default_ttl_ms", "90000"},
    {"cache:\n  default_ttl: 1h\n", "cache.default_ttl_ms", "3600000"},
    {"cache:\n  default_ttl: 500ms\n", "cache.default_ttl_ms", "500"},
    {"cache: {max_entry_bytes: 1MB}\n", "cache.max_entry_bytes", "1048576"},
    {"cache: {max_entry_bytes: 512KB}\n", "cache.max_entry_bytes", "524288"},
    {"cache: {max_entry_bytes: 4096}\n", "cache.max_entry_bytes", "4096"},
    {"cache: {max_entry_bytes: 512MiB}\n", "cache.max_entry_bytes", "536870912"},
    {"cache: {max_entry_bytes: 1}\n", "cache.max_entry_bytes", "1"},
    {"cache: {consistency: strict}\n", "cache.consistency", "strict"},
    {"cache: {consistency: local}\n", "cache.consistency", "local"},
    {"cache: {consistency: Local}\n", "cache.consistency", "local"},
    {"cache: {key_prefix: myapp}\n", "cache.key_prefix", "myapp"},
    {"cache: {key_prefix: '{pgstash}'}\n", "cache.key_prefix", "{pgstash}"},
    {"cache: {redis_timeout: 50ms}\n", "cache.redis_timeout_ms", "50"},
    {"cache: {redis_timeout: 2s}\n", "cache.redis_timeout_ms", "2000"},
    {"cache: {local_max_bytes: 0}\n", "cache.local_max_bytes", "0"},
    {"cache: {local_max_bytes: 256MB}\n", "cache.local_max_bytes", "268435456"},
    {"cache: {local_ttl: 250ms}\n", "cache.local_ttl_ms", "250"},
    {"cache: {local_ttl: 0}\n", "cache.local_ttl_ms", "0"},
    {"cache: {redis_timeout: 1ms}\n", "cache.redis_timeout_ms", "1"},
    /* log */
    {"log: {level: error}\n", "log.level", "error"},
    {"log: {level: warn}\n", "log.level", "warn"},
    {"log: {level: info}\n", "log.level", "info"},
    {"log: {level: debug}\n", "log.level", "debug"},
    {"log: {level: DEBUG}\n", "log.level", "debug"},
    {"log: {format: text}\n", "log.format", "text"},
    {"log: {format: json}\n", "log.format", "json"},
    {"log: {stats_interval: 10s}\n", "log.stats_interval_ms", "10000"},
    {"log: {stats_interval: 0}\n", "log.stats_interval_ms", "0"},
    {"log: {stats_interval: 100ms}\n", "log.stats_interval_ms", "100"},
    {"log: {stats_interval: 1m}\n", "log.stats_interval_ms", "60000"},
    /* limits */
    {"limits: {max_message_bytes: 16MB}\n", "limits.max_message_bytes", "16777216"},
    {"limits: {max_message_bytes: 1GB}\n", "limits.max_message_bytes", "1073741824"},
    {"limits: {max_message_bytes: 1KB}\n", "limits.max_message_bytes", "1024"},
    {"limits: {max_startup_bytes: 20000}\n", "limits.max_startup_bytes", "20000"},
    {"limits: {auth_timeout: 5s}\n", "limits.auth_timeout_ms", "5000"},
    {"limits: {client_idle_timeout: 10m}\n", "limits.idle_timeout_ms", "600000"},
    {"limits: {client_idle_timeout: 0}\n", "limits.idle_timeout_ms", "0"},
    {"limits: {max_client_conn: 500}\n", "limits.max_client_conn", "500"},
    {"limits: {max_client_conn: 1000000}\n", "limits.max_client_conn", "1000000"},
    {"limits: {shutdown_grace: 0}\n", "limits.shutdown_grace_ms", "0"},
    {"limits: {shutdown_grace: 2m}\n", "limits.shutdown_grace_ms", "120000"},
    {"limits: {server_idle_timeout: 30s}\n", "limits.server_idle_timeout_ms", "30000"},
    {"limits: {server_idle_timeout: 0}\n", "limits.server_idle_timeout_ms", "0"},
    {"limits: {server_lifetime: 10m}\n", "limits.server_lifetime_ms", "600000"},
    /* tables: sorted by name whatever the file's order; -1 = inherit the default */
    {"tables:\n"
     "  products: { ttl: 10m }\n"
     "  orders:   { ttl: 5s }\n"
     "  audit_log: { cache: false }\n",
     "tables",
     "audit_log ttl=-1 cache=0 safe=0 also=- line=4; "
     "orders ttl=5000 cache=1 safe=0 also=- line=3; "
     "products ttl=600000 cache=1 safe=0 also=- line=2"},
    {"tables:\n  t: { ttl: 0 }\n", "tables", "t ttl=0 cache=1 safe=0 also=- line=2"},
    {"tables:\n  v_report: { safe: true }\n", "tables",
     "v_report ttl=-1 cache=1 safe=1 also=- line=2"},
    {"tables:\n  orders:\n    also_invalidates: [order_totals, stock]\n", "tables",
     "orders ttl=-1 cache=1 safe=0 also=[order_totals,stock] line=2"},
    {"tables:\n  orders:\n    also_invalidates:\n      - a\n      - b\n", "tables",
     "orders ttl=-1 cache=1 safe=0 also=[a,b] line=2"},
    {"tables:\n  orders: { also_invalidates: [] }\n", "tables",
     "orders ttl=-1 cache=1 safe=0 also=[] line=2"},
    {"tables:\n  orders:\n", "tables", "orders ttl=-1 cache=1 safe=0 also=- line=2"},
    {"tables:\n  \"Users\": { ttl: 1s }\n  users: { ttl: 2s }\n", "tables",
     "Users ttl=1000 cache=1 safe=0 also=- line=2; users ttl=2000 cache=1 safe=0 also=- line=3"},
    {"tables:\n  t: { ttl: 1m, cache: false, safe: true }\n", "tables",
     "t ttl=60000 cache=0 safe=1 also=- line=2"},
    /* functions: `writes: []` declares a read-only function */
    {"functions: { f: { writes: [t1, t2] }, g: { writes: [] } }\n", "functions",
     "f writes=[t1,t2] line=1; g writes=[] line=1"},
    {"functions:\n  place_order:\n    writes: [orders, stock]\n  calc: {writes: []}\n", "functions",
     "calc writes=[] line=4; place_order writes=[orders,stock] line=2"},
    /* admin */
    {"admin: { listen: 127.0.0.1:9187 }\n", "admin.listen", "127.0.0.1:9187"},
    {"admin: { listen: localhost }\n", "admin.listen", "localhost:9187"},
    {"admin:\n  users:\n    - {name: x, secret: "
     "\"SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\"}\n"
     "    - name: y\n      secret: SCRAM-SHA-256$10000:c2FsdHNhbHRzYWx0$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\n",
     "admin.users",
     "x=SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=; y=SCRAM-SHA-256$10000:c2FsdHNhbHRzYWx0$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0="},
    /* the contract's own example, comments and all */
    {"listen: 127.0.0.1:6432            # where applications connect\n"
     "upstream: 127.0.0.1:5432          # the real PostgreSQL\n"
     "redis: redis://127.0.0.1:6379/0   # redis://[:password@]host:port/db\n"
     "workers: auto\n"
     "catalog:                          # pgstash's own connection for catalog reads\n"
     "  user: pgstash                   # default: the user running the demo / tests\n"
     "  password_env: PGSTASH_CATALOG_PASSWORD\n"
     "cache:\n"
     "  default_ttl: 60s                # 0 = cache nothing unless a table says so\n"
     "  max_entry_bytes: 1MB\n"
     "  consistency: strict             # or: local\n"
     "  key_prefix: pgstash\n"
     "tables:                           # per-table TTLs, bare table names\n"
     "  products: { ttl: 10m }\n"
     "  orders:   { ttl: 5s }\n"
     "  audit_log: { cache: false }\n"
     "log:\n"
     "  level: info                     # error | warn | info | debug\n"
     "  format: text                    # or: json\n"
     "  stats_interval: 10s\n",
     "tables",
     "audit_log ttl=-1 cache=0 safe=0 also=- line=16; "
     "orders ttl=5000 cache=1 safe=0 also=- line=15; "
     "products ttl=600000 cache=1 safe=0 also=- line=14"},
    /* YAML details: documents markers, BOM, anchors without aliases, tags, CRLF */
    {"---\nworkers: 3\n...\n", "workers", "3"},
    {"\xef\xbb\xbfworkers: 3\n", "workers", "3"},
    {"workers: &w 3\n", "workers", "3"},
    {"workers: !!str 3\n", "workers", "3"},
    {"workers: 3\r\nlisten: h:1\r\n", "listen", "h:1"},
};

START_TEST(test_values)
{
    char got[2048], err[CONFIG_ERR_LEN] = "";
    Config *cfg = NULL;
    const char *yaml = values[_i].yaml;
    bool ok = config_load_buffer("x.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));

    ck_assert_msg(ok, "unexpected error for:\n%s-> %s", yaml, err);
    describe(cfg, values[_i].field, got, sizeof(got));
    ck_assert_msg(strcmp(got, values[_i].expect) == 0, "for:\n%s%s is\n  '%s', expected\n  '%s'",
                  yaml, values[_i].field, got, values[_i].expect);
    config_free(cfg);
}
END_TEST

/* --- loading: refused files, with the exact message ----------------------------------------- */

static const struct {
    const char *yaml;
    const char *error;
} errors[] = {
    /* unknown keys, at every level */
    {"listen: 127.0.0.1:6432\n\n\n\n\n\ncahce:\n  default_ttl: 1s\n",
     "x.yaml:7: unknown key 'cahce' (expected one of: listen, upstream, redis, workers, catalog, "
     "cache, tables, functions, log, limits, admin)"},
    {"cache:\n  default_tll: 1s\n",
     "x.yaml:2: unknown key 'default_tll' in cache (expected one of: enabled, default_ttl, "
     "max_entry_bytes, consistency, key_prefix, redis_timeout, local_max_bytes, local_ttl)"},
    {"catalog: {password: x}\n",
     "x.yaml:1: unknown key 'password' in catalog (expected one of: user, password_env, dbname)"},
    {"log:\n  lvl: info\n",
     "x.yaml:2: unknown key 'lvl' in log (expected one of: level, format, stats_interval)"},
    {"limits:\n  max_conn: 1\n",
     "x.yaml:2: unknown key 'max_conn' in limits (expected one of: max_message_bytes, "
     "max_startup_bytes, auth_timeout, client_idle_timeout, max_client_conn, shutdown_grace, "
     "server_idle_timeout, server_lifetime)"},
    {"tables:\n  products: { tll: 10m }\n",
     "x.yaml:2: unknown key 'tll' in tables.products (expected one of: ttl, cache, safe, "
     "also_invalidates)"},
    {"functions:\n  f:\n    write: []\n",
     "x.yaml:3: unknown key 'write' in functions.f (expected one of: writes)"},
    {"admin:\n  port: 1\n",
     "x.yaml:2: unknown key 'port' in admin (expected one of: listen, users)"},
    {"admin:\n  users:\n    - {name: a, secret: \"SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\", role: x}\n",
     "x.yaml:3: unknown key 'role' in admin.users[0] (expected one of: name, secret)"},
    {"Listen: h:1\n",
     "x.yaml:1: unknown key 'Listen' (expected one of: listen, upstream, redis, workers, catalog, "
     "cache, tables, functions, log, limits, admin)"},
    {"\"\": 1\n",
     "x.yaml:1: unknown key '' (expected one of: listen, upstream, redis, workers, catalog, "
     "cache, tables, functions, log, limits, admin)"},
    {"\"listen\\0x\": 1\n",
     "x.yaml:1: unknown key 'listen\\x00x' (expected one of: listen, upstream, redis, workers, "
     "catalog, cache, tables, functions, log, limits, admin)"},
    {"? [a]\n: 1\n", "x.yaml:1: keys must be scalars, got a list"},
    {"cache:\n  ? {a: 1}\n  : 1\n", "x.yaml:2: keys must be scalars, got a mapping in cache"},
    /* duplicate keys */
    {"listen: a:1\nworkers: 2\nlisten: b:2\n",
     "x.yaml:3: duplicate key 'listen' (first at line 1)"},
    {"cache:\n  default_ttl: 1s\n  default_ttl: 2s\n",
     "x.yaml:3: duplicate key 'default_ttl' in cache (first at line 2)"},
    {"tables:\n  a: {ttl: 1s}\n  b: {ttl: 1s}\n  a: {ttl: 2s}\n",
     "x.yaml:4: duplicate key 'a' in tables (first at line 2)"},
    {"tables:\n  b: {}\n  a: {}\n  b: {}\n  a: {}\n",
     "x.yaml:4: duplicate key 'b' in tables (first at line 2)"},
    {"functions:\n  f: {writes: []}\n  f: {writes: [t]}\n",
     "x.yaml:3: duplicate key 'f' in functions (first at line 2)"},
    {"tables:\n  t: {ttl: 1s, ttl: 2s}\n",
     "x.yaml:2: duplicate key 'ttl' in tables.t (first at line 2)"},
    {"admin:\n  users:\n    - {name: a, secret: \"SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\"}\n"
     "    - {name: a, secret: \"SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\"}\n",
     "x.yaml:4: admin.users[1]: user 'a' is listed twice"},
    /* wrong types */
    {"- listen\n", "x.yaml:1: expected a mapping at the top level, got a list"},
    {"hello\n", "x.yaml:1: expected a mapping at the top level, got a scalar"},
    {"cache: 5\n", "x.yaml:1: cache: expected a mapping, got a scalar"},
    {"cache:\n  - default_ttl\n", "x.yaml:2: cache: expected a mapping, got a list"},
    {"log: []\n", "x.yaml:1: log: expected a mapping, got a list"},
    {"limits: x\n", "x.yaml:1: limits: expected a mapping, got a scalar"},
    {"catalog: [a]\n", "x.yaml:1: catalog: expected a mapping, got a list"},
    {"admin: on\n", "x.yaml:1: admin: expected a mapping, got a scalar"},
    {"tables: [products]\n", "x.yaml:1: tables: expected a mapping, got a list"},
    {"tables:\n  products: 10m\n", "x.yaml:2: tables.products: expected a mapping, got a scalar"},
    {"functions: f\n", "x.yaml:1: functions: expected a mapping, got a scalar"},
    {"functions:\n  f: [t]\n", "x.yaml:2: functions.f: expected a mapping, got a list"},
    {"listen: [a, b]\n", "x.yaml:1: listen: expected a scalar, got a list"},
    {"upstream:\n  host: x\n", "x.yaml:2: upstream: expected a scalar, got a mapping"},
    {"cache:\n  default_ttl: {s: 1}\n",
     "x.yaml:2: cache.default_ttl: expected a scalar, got a mapping"},
    {"tables:\n  t:\n    also_invalidates: a\n",
     "x.yaml:3: tables.t.also_invalidates: expected a list, got a scalar"},
    {"tables:\n  t:\n    also_invalidates: [a, [b]]\n",
     "x.yaml:3: tables.t.also_invalidates[1]: expected a scalar, got a list"},
    {"functions:\n  f: {writes: t1}\n",
     "x.yaml:2: functions.f.writes: expected a list, got a scalar"},
    {"admin: {users: {name: x}}\n", "x.yaml:1: admin.users: expected a list, got a mapping"},
    {"admin:\n  users:\n    - x\n", "x.yaml:3: admin.users[0]: expected a mapping, got a scalar"},
    {"[a, b]\n", "x.yaml:1: expected a mapping at the top level, got a list"},
    /* missing values */
    {"listen:\n", "x.yaml:1: listen: missing value"},
    {"listen: ~\n", "x.yaml:1: listen: missing value"},
    {"workers: null\n", "x.yaml:1: workers: missing value"},
    {"cache:\n  key_prefix:\nlog: {}\n", "x.yaml:2: cache.key_prefix: missing value"},
    {"functions:\n  f:\n", "x.yaml:2: functions.f: 'writes' is required (list the tables it "
                           "writes, [] for none)"},
    {"functions:\n  f: {}\n", "x.yaml:2: functions.f: 'writes' is required (list the tables it "
                              "writes, [] for none)"},
    {"functions:\n  f:\n    writes:\n",
     "x.yaml:3: functions.f.writes: missing value (use [] for a function that writes no table)"},
    {"admin:\n  users:\n    - {name: x}\n",
     "x.yaml:3: admin.users[0]: needs both 'name' and 'secret'"},
    /* bad values */
    {"listen: 127.0.0.1:99999\n",
     "x.yaml:1: listen: invalid address '127.0.0.1:99999': port must be a number 1..65535"},
    {"listen: \"127.0.0.1:\"\n",
     "x.yaml:1: listen: invalid address '127.0.0.1:': port must be a number 1..65535"},
    {"listen: \"::1\"\n",
     "x.yaml:1: listen: invalid address '::1': IPv6 addresses need brackets, e.g. [::1]:6432"},
    {"listen: \"[::1\"\n",
     "x.yaml:1: listen: invalid address '[::1': missing ']' after the IPv6 address"},
    {"upstream: bad host:5432\n",
     "x.yaml:1: upstream: invalid address 'bad host:5432': invalid character in host name"},
    {"upstream: \"\"\n", "x.yaml:1: upstream: invalid address '': empty address"},
    {"redis: http://localhost\n", "x.yaml:1: redis: invalid URL 'http://localhost': expected "
                                  "redis://[[user]:password@]host[:port][/db]"},
    {"redis: rediss://localhost\n",
     "x.yaml:1: redis: invalid URL 'rediss://localhost': rediss:// (TLS) is not supported yet"},
    {"redis: redis://localhost/x\n",
     "x.yaml:1: redis: invalid URL 'redis://localhost/x': database must be a number, e.g. "
     "redis://127.0.0.1:6379/0"},
    {"redis: redis://:hunter2@localhost:0\n",
     "x.yaml:1: redis: invalid URL 'redis://***@localhost:0': port must be a number 1..65535"},
    {"redis: redis://hunter2@localhost\n",
     "x.yaml:1: redis: invalid URL 'redis://***@localhost': a user needs a password: "
     "redis://user:password@host, or redis://:password@host"},
    {"workers: 0\n", "x.yaml:1: workers: invalid value '0' (expected auto or 1..256)"},
    {"workers: 257\n", "x.yaml:1: workers: invalid value '257' (expected auto or 1..256)"},
    {"workers: -1\n", "x.yaml:1: workers: invalid value '-1' (expected auto or 1..256)"},
    {"workers: many\n", "x.yaml:1: workers: invalid value 'many' (expected auto or 1..256)"},
    {"workers: 99999999999999999999999\n",
     "x.yaml:1: workers: invalid value '99999999999999999999999' (expected auto or 1..256)"},
    {"cache:\n  default_ttl: 60x\n",
     "x.yaml:2: cache.default_ttl: invalid duration '60x' (expected a whole number with ms, s, m, "
     "h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"cache:\n  default_ttl: 1.5s\n",
     "x.yaml:2: cache.default_ttl: invalid duration '1.5s' (expected a whole number with ms, s, "
     "m, h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"cache:\n  default_ttl: -1s\n",
     "x.yaml:2: cache.default_ttl: invalid duration '-1s' (expected a whole number with ms, s, "
     "m, h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"cache:\n  default_ttl: 99999999999999999999999999h\n",
     "x.yaml:2: cache.default_ttl: invalid duration '99999999999999999999999999h' (expected a "
     "whole number with ms, s, m, h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"cache: {redis_timeout: 0}\n", "x.yaml:1: cache.redis_timeout: 0 is out of range (1ms..1h)"},
    {"cache: {redis_timeout: 2h}\n", "x.yaml:1: cache.redis_timeout: 2h is out of range (1ms..1h)"},
    {"cache: {max_entry_bytes: 1.5MB}\n",
     "x.yaml:1: cache.max_entry_bytes: invalid size '1.5MB' (expected a whole number of bytes "
     "with an optional KB, MB or GB, e.g. 4096, 512KB, 1MB)"},
    {"cache: {max_entry_bytes: 1TB}\n",
     "x.yaml:1: cache.max_entry_bytes: invalid size '1TB' (expected a whole number of bytes "
     "with an optional KB, MB or GB, e.g. 4096, 512KB, 1MB)"},
    {"cache: {max_entry_bytes: 0}\n",
     "x.yaml:1: cache.max_entry_bytes: 0 is out of range (1..512MB)"},
    {"cache: {max_entry_bytes: 1GB}\n",
     "x.yaml:1: cache.max_entry_bytes: 1GB is out of range (1..512MB)"},
    {"cache: {consistency: eventual}\n",
     "x.yaml:1: cache.consistency: invalid value 'eventual' (expected strict or local)"},
    {"cache: {enabled: maybe}\n",
     "x.yaml:1: cache.enabled: invalid value 'maybe' (expected true or false)"},
    {"cache: {enabled: 1}\n",
     "x.yaml:1: cache.enabled: invalid value '1' (expected true or false)"},
    {"cache: {key_prefix: \"my app\"}\n",
     "x.yaml:1: cache.key_prefix: 'my app' must be printable ASCII without spaces"},
    {"cache: {key_prefix: \"\"}\n", "x.yaml:1: cache.key_prefix: must not be empty"},
    {"log: {level: verbose}\n",
     "x.yaml:1: log.level: invalid value 'verbose' (expected error, warn, info or debug)"},
    {"log: {level: warning}\n",
     "x.yaml:1: log.level: invalid value 'warning' (expected error, warn, info or debug)"},
    {"log: {format: xml}\n", "x.yaml:1: log.format: invalid value 'xml' (expected text or json)"},
    {"log: {stats_interval: 10ms}\n",
     "x.yaml:1: log.stats_interval: 10ms is too short (0 = off, or at least 100ms)"},
    {"limits: {max_message_bytes: 100}\n",
     "x.yaml:1: limits.max_message_bytes: 100 is out of range (1KB..1GB)"},
    {"limits: {max_message_bytes: 2GB}\n",
     "x.yaml:1: limits.max_message_bytes: 2GB is out of range (1KB..1GB)"},
    {"limits: {max_startup_bytes: 8}\n",
     "x.yaml:1: limits.max_startup_bytes: 8 is out of range (64..1MB)"},
    {"limits: {auth_timeout: 0}\n",
     "x.yaml:1: limits.auth_timeout: 0 is out of range (1ms..3650d)"},
    {"limits: {server_lifetime: 0}\n",
     "x.yaml:1: limits.server_lifetime: 0 is out of range (1ms..3650d)"},
    {"limits: {client_idle_timeout: 3651d}\n",
     "x.yaml:1: limits.client_idle_timeout: invalid duration '3651d' (expected a whole number "
     "with ms, s, m, h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"limits: {max_client_conn: 0}\n",
     "x.yaml:1: limits.max_client_conn: invalid value '0' (expected a number 1..1000000)"},
    {"limits: {max_client_conn: lots}\n",
     "x.yaml:1: limits.max_client_conn: invalid value 'lots' (expected a number 1..1000000)"},
    {"catalog: {password_env: MY-PASS}\n",
     "x.yaml:1: catalog.password_env: 'MY-PASS' is not an environment variable name"},
    {"catalog: {password_env: 1PASS}\n",
     "x.yaml:1: catalog.password_env: '1PASS' is not an environment variable name"},
    {"catalog: {user: \"\"}\n", "x.yaml:1: catalog.user: must not be empty"},
    {"catalog: {user: \"a\\nb\"}\n", "x.yaml:1: catalog.user: contains a control character"},
    {"tables:\n  public.users: {ttl: 1s}\n",
     "x.yaml:2: tables: 'public.users' is not a bare name (drop the schema: a rule applies to the "
     "name in every schema)"},
    {"tables:\n  \"\": {ttl: 1s}\n", "x.yaml:2: tables: empty name"},
    {"tables:\n  ~: {ttl: 1s}\n", "x.yaml:2: tables: empty name"},
    {"tables:\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: {}\n",
     "x.yaml:2: tables: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...' is longer than 63 "
     "bytes"},
    {"tables:\n  t: {ttl: forever}\n",
     "x.yaml:2: tables.t.ttl: invalid duration 'forever' (expected a whole number with ms, s, m, "
     "h or d, e.g. 500ms, 60s, 10m; a bare number is seconds)"},
    {"tables:\n  t: {cache: nope}\n",
     "x.yaml:2: tables.t.cache: invalid value 'nope' (expected true or false)"},
    {"tables:\n  t: {safe: 2}\n",
     "x.yaml:2: tables.t.safe: invalid value '2' (expected true or false)"},
    {"tables:\n  t:\n    also_invalidates:\n      - ok\n      - s.t\n",
     "x.yaml:5: tables.t.also_invalidates[1]: 's.t' is not a bare name (drop the schema: a rule "
     "applies to the name in every schema)"},
    {"functions:\n  f: {writes: [a, \"\"]}\n", "x.yaml:2: functions.f.writes[1]: empty name"},
    {"functions:\n  public.f: {writes: []}\n",
     "x.yaml:2: functions: 'public.f' is not a bare name (drop the schema: a rule applies to the "
     "name in every schema)"},
    {"admin: {listen: \"nope:x\"}\n",
     "x.yaml:1: admin.listen: invalid address 'nope:x': port must be a number 1..65535"},
    {"admin:\n  users:\n    - name: x\n      secret: md5abc\n",
     "x.yaml:4: admin.users[0].secret: not a SCRAM-SHA-256 verifier (expected "
     "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)"},
    {"admin:\n  users:\n    - name: x\n      secret: SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\n",
     "x.yaml:4: admin.users[0].secret: not a SCRAM-SHA-256 verifier (expected "
     "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)"},
    {"admin:\n  users:\n    - name: x\n      secret: SCRAM-SHA-256$0:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\n",
     "x.yaml:4: admin.users[0].secret: not a SCRAM-SHA-256 verifier (expected "
     "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)"},
    {"admin:\n  users:\n    - name: x\n      secret: SCRAM-SHA-256$4096:not*base64$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\n",
     "x.yaml:4: admin.users[0].secret: not a SCRAM-SHA-256 verifier (expected "
     "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)"},
    {"admin:\n  users:\n    - name: x\n      secret: SCRAM-SHA-256$x:s$a:b\n",
     "x.yaml:4: admin.users[0].secret: not a SCRAM-SHA-256 verifier (expected "
     "SCRAM-SHA-256$<iterations>:<salt>$<storedkey>:<serverkey>)"},
    {"admin:\n  users:\n    - name: \"\"\n      secret: SCRAM-SHA-256$4096:Hx0uhie5PhtRU17UDUNYdA==$x+rFkZNd5w/u4T+eZLA9TcnATsOlPQekkswAarB3ZtE=:FdvcYy5tIdwMNZUAwc5OkajRcx8cSiiwwjS6utAA2Z0=\n",
     "x.yaml:3: admin.users[0].name: must not be empty"},
    /* YAML syntax, as libyaml words it, on the right line */
    {"listen: a:1\ncache:\n  default_ttl: 1s\n   max_entry_bytes: 1MB\n",
     "x.yaml:4: invalid YAML: mapping values are not allowed in this context"},
    {"listen: a:1\ntables:\n  t: {ttl: 1s\n",
     "x.yaml:4: invalid YAML: did not find expected ',' or '}' (while parsing a flow mapping at "
     "line 3)"},
    {"cache:\n\tdefault_ttl: 1s\n",
     "x.yaml:2: invalid YAML: found character that cannot start any token (while scanning for "
     "the next token at line 2)"},
    {"listen: \"unterminated\n",
     "x.yaml:2: invalid YAML: found unexpected end of stream (while scanning a quoted scalar at "
     "line 1)"},
    {"a: b: c\n", "x.yaml:1: invalid YAML: mapping values are not allowed in this context"},
    {"workers: 2\nlisten\n",
     "x.yaml:3: invalid YAML: could not find expected ':' (while scanning a simple key at line 2)"},
    {"workers: 2\n---\nworkers: 3\n", "x.yaml:2: only one YAML document is allowed"},
    /* hostile YAML */
    {"base: &b {ttl: 1s}\ntables:\n  t: *b\n",
     "x.yaml:3: YAML aliases (*b) are not supported; write the value out"},
    {"tables:\n  a: &b {ttl: 1s}\n  t: *b\n",
     "x.yaml:3: YAML aliases (*b) are not supported; write the value out"},
    {"tables:\n  a: {ttl: 1s}\n  t:\n    <<: *x\n",
     "x.yaml:4: YAML aliases (*x) are not supported; write the value out"},
    {"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n",
     "x.yaml:2: YAML aliases (*a) are not supported; write the value out"},
    {"listen: \xff\xfe\n", "x.yaml:1: invalid YAML: invalid leading UTF-8 octet (byte 0xFF)"},
    {"workers: 2\nlisten: \xc3\x28\n",
     "x.yaml:2: invalid YAML: invalid trailing UTF-8 octet (byte 0x28)"},
    {"workers: 2\nlisten: a\x01\n", "x.yaml:2: invalid YAML: control characters are not allowed "
                                    "(byte 0x01)"},
    {"listen: \"a\\0b\"\n", "x.yaml:1: listen: contains a NUL byte"},
    {"listen: !!binary aGVsbG8=\n",
     "x.yaml:1: listen: invalid address 'aGVsbG8=': invalid character in host name"},
    {"cache: {key_prefix: \"\\e[31mred\"}\n",
     "x.yaml:1: cache.key_prefix: contains a control character"},
    {"\"\\e[31m\": 1\n",
     "x.yaml:1: unknown key '\\x1b[31m' (expected one of: listen, upstream, redis, workers, "
     "catalog, cache, tables, functions, log, limits, admin)"},
};

START_TEST(test_errors)
{
    char err[CONFIG_ERR_LEN] = "";
    Config *cfg = (Config *)&err; /* must be reset to NULL */
    const char *yaml = errors[_i].yaml;
    bool ok = config_load_buffer("x.yaml", yaml, strlen(yaml), &cfg, err, sizeof(err));

    ck_assert_msg(!ok, "accepted:\n%s", yaml);
    ck_assert_ptr_null(cfg);
    ck_assert_msg(strcmp(err, errors[_i].error) == 0, "for:\n%s\ngot:      %s\nexpected: %s", yaml,
                  err, errors[_i].error);
}
END_TEST

/* Errors that need bytes a C string literal table cannot hold or that are generated. */
START_TEST(test_hostile)
{
    char err[CONFIG_ERR_LEN], small[16];
    static const char nul_in_file[] = "workers: 2\nlisten: a\0b\n";
    Config *cfg = NULL;
    char *deep, *wide;
    size_t i, n = 10000;

    /* A NUL byte in the file itself. */
    ck_assert(!config_load_buffer("x.yaml", nul_in_file, sizeof(nul_in_file) - 1, &cfg, err,
                                  sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:2: invalid YAML: control characters are not allowed (byte 0x00)");

    /* Deep nesting stops at 32 levels, without recursion trouble. */
    deep = calloc(2 * n + 16, 1);
    ck_assert_ptr_nonnull(deep);
    strcpy(deep, "tables: ");
    memset(deep + 8, '[', n);
    ck_assert(!config_load_buffer("x.yaml", deep, strlen(deep), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:1: YAML nested deeper than 32 levels");
    memset(deep, 0, 2 * n + 16);
    for (i = 0; i < 40; i++)
        append(deep, 2 * n + 16, "%*sk%zu:\n", (int)(2 * i), "", i);
    ck_assert(!config_load_buffer("x.yaml", deep, strlen(deep), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:33: YAML nested deeper than 32 levels");
    free(deep);

    /* Many keys: one unknown key among thousands of tables is still found and named. */
    wide = calloc(n * 24 + 64, 1);
    ck_assert_ptr_nonnull(wide);
    strcpy(wide, "tables:\n");
    for (i = 0; i < n; i++)
        append(wide, n * 24 + 64, "  t%zu: {ttl: %zus}\n", n - i, i);
    cfg = load_ok(wide);
    ck_assert_uint_eq(cfg->n_tables, n);
    for (i = 1; i < n; i++)
        ck_assert_int_lt(strcmp(cfg->tables[i - 1].name, cfg->tables[i].name), 0);
    ck_assert_int_eq(config_table_ttl_ms(cfg, "t1"), (int64_t)(n - 1) * 1000);
    config_free(cfg);
    append(wide, n * 24 + 64, "  t%zu: {ttl: %zus}\n", n / 2, (size_t)1);
    ck_assert(!config_load_buffer("x.yaml", wide, strlen(wide), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:10002: duplicate key 't5000' in tables (first at line 5002)");
    free(wide);

    /* A long unknown key is cut in the message; past 1024 bytes libyaml refuses it. */
    wide = calloc(5000, 1);
    ck_assert_ptr_nonnull(wide);
    memset(wide, 'k', 1000);
    strcat(wide, ": 1\n");
    ck_assert(!config_load_buffer("x.yaml", wide, strlen(wide), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err,
                     "x.yaml:1: unknown key 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...' "
                     "(expected one of: listen, upstream, redis, workers, catalog, cache, "
                     "tables, functions, log, limits, admin)");
    memset(wide, 'k', 4000);
    strcat(wide, ": 1\n");
    ck_assert(!config_load_buffer("x.yaml", wide, strlen(wide), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:1: invalid YAML: mapping values are not allowed in this context");
    free(wide);

    /* A tiny error buffer is truncated, never overrun; NULL/0 is fine too. */
    memset(small, 'Z', sizeof(small));
    ck_assert(!config_load_buffer("x.yaml", "workers: 0\n", 11, &cfg, small, 8));
    ck_assert_str_eq(small, "x.yaml:");
    ck_assert_int_eq(small[8], 'Z');
    ck_assert(!config_load_buffer("x.yaml", "workers: 0\n", 11, &cfg, NULL, 0));
    ck_assert(!config_load_buffer("x.yaml", "workers: 0\n", 11, NULL, err, sizeof(err)));
    ck_assert(config_load_buffer(NULL, NULL, 0, &cfg, err, sizeof(err)));
    config_free(cfg);

    /* Half a million values is the most the tree will hold. */
    wide = malloc(2000000);
    ck_assert_ptr_nonnull(wide);
    strcpy(wide, "tables: [");
    for (i = 0; i < 600000; i++)
        memcpy(wide + 9 + 3 * i, "a, ", 3);
    strcpy(wide + 9 + 3 * i, "a]\n");
    ck_assert(!config_load_buffer("x.yaml", wide, strlen(wide), &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml:1: more than 500000 YAML values");
    free(wide);

    /* Larger than any sane configuration. */
    ck_assert(!config_load_buffer("x.yaml", "", (size_t)17 << 20, &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "x.yaml: larger than 16MB, not a configuration file");
}
END_TEST

/* --- files --------------------------------------------------------------------------------- */

START_TEST(test_files)
{
    char path[] = "/tmp/test_config_XXXXXX", err[CONFIG_ERR_LEN], expect[256];
    static const char good[] = "listen: 127.0.0.1:7000\n";
    static const char bad[] = "listen: 127.0.0.1:7000\nworkers: 0\n";
    Config *cfg = (Config *)&err;
    FILE *f;
    int fd;

    ck_assert(!config_load("/nonexistent/pgstash.yaml", &cfg, err, sizeof(err)));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, "/nonexistent/pgstash.yaml: cannot open: No such file or directory");

    ck_assert(!config_load("/", &cfg, err, sizeof(err)));
    ck_assert_str_eq(err, "/: cannot read: Is a directory");

    fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    f = fdopen(fd, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(good, 1, sizeof(good) - 1, f), sizeof(good) - 1);
    fclose(f);
    ck_assert_msg(config_load(path, &cfg, err, sizeof(err)), "%s", err);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_int_eq(cfg->listen.port, 7000);
    config_free(cfg);

    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(bad, 1, sizeof(bad) - 1, f), sizeof(bad) - 1);
    fclose(f);
    ck_assert(!config_load(path, &cfg, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "%s:2: workers: invalid value '0' (expected auto or 1..256)",
             path);
    ck_assert_str_eq(err, expect);
    ck_assert_ptr_null(cfg);

    f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    ck_assert_msg(config_load(path, &cfg, err, sizeof(err)), "%s", err);
    assert_defaults(cfg, "empty file");
    config_free(cfg);
    unlink(path);
}
END_TEST

/* --- command-line overrides ---------------------------------------------------------------- */

static const struct {
    const char *key;
    const char *value;
    const char *field;
    const char *expect; /* the field after, or the exact error */
} overrides[] = {
    {"listen", "0.0.0.0:7432", "listen", "0.0.0.0:7432"},
    {"listen", "localhost", "listen", "localhost:6432"},
    {"listen", "[::1]:1", "listen", "[::1]:1"},
    {"upstream", "/var/run/postgresql:5433", "upstream", "/var/run/postgresql:5433"},
    {"upstream", "db", "upstream", "db:5432"},
    {"redis", "redis://r:7000/4", "redis", "r:7000 db=4 user=(null) password=(null)"},
    {"redis", "redis://u:p@r", "redis", "r:6379 db=0 user=u password=p"},
    {"listen", "host:0", NULL,
     "--listen: invalid address 'host:0': port must be a number 1..65535"},
    {"upstream", "::1", NULL,
     "--upstream: invalid address '::1': IPv6 addresses need brackets, e.g. [::1]:6432"},
    {"redis", "http://r", NULL,
     "--redis: invalid URL 'http://r': expected redis://[[user]:password@]host[:port][/db]"},
    {"redis", "redis://:secret@r/x", NULL,
     "--redis: invalid URL 'redis://***@r/x': database must be a number, e.g. "
     "redis://127.0.0.1:6379/0"},
    {"listen", "", NULL, "--listen: missing value"},
    {"workers", "4", NULL, "--workers: cannot be overridden (expected listen, upstream or redis)"},
};

START_TEST(test_overrides)
{
    char err[CONFIG_ERR_LEN] = "", got[512], before[512];
    Config *cfg = load_ok("redis: redis://:old@h:1/1\n");
    bool ok = config_override(cfg, overrides[_i].key, overrides[_i].value, err, sizeof(err));

    if (overrides[_i].field) {
        ck_assert_msg(ok, "--%s %s: %s", overrides[_i].key, overrides[_i].value, err);
        describe(cfg, overrides[_i].field, got, sizeof(got));
        ck_assert_str_eq(got, overrides[_i].expect);
    } else {
        ck_assert(!ok);
        ck_assert_str_eq(err, overrides[_i].expect);
        /* a refused override leaves the Config as it was */
        describe(cfg, "redis", got, sizeof(got));
        ck_assert_str_eq(got, "h:1 db=1 user=(null) password=old");
        describe(cfg, "listen", before, sizeof(before));
        ck_assert_str_eq(before, "127.0.0.1:6432");
    }
    config_free(cfg);
}
END_TEST

START_TEST(test_override_null)
{
    char err[CONFIG_ERR_LEN];

    ck_assert(!config_override(NULL, "listen", "h:1", err, sizeof(err)));
    ck_assert_str_eq(err, "--listen: no configuration to override");
}
END_TEST

/* --- lookups ------------------------------------------------------------------------------- */

static const char rules_yaml[] = "cache:\n"
                                 "  default_ttl: 30s\n"
                                 "tables:\n"
                                 "  products: { ttl: 10m }\n"
                                 "  orders: { ttl: 5s }\n"
                                 "  audit_log: { cache: false }\n"
                                 "  never: { ttl: 0 }\n"
                                 "  v_sales: { safe: true }\n"
                                 "  triggers: { also_invalidates: [totals] }\n"
                                 "  muted: { ttl: 1h, cache: false }\n"
                                 "functions:\n"
                                 "  place_order: { writes: [orders, stock] }\n"
                                 "  calc: { writes: [] }\n"
                                 "  audit: { writes: [audit_log] }\n";

static const struct {
    const char *table;
    int64_t ttl_ms;
} ttls[] = {
    {"products", 600000},                   /* its own ttl */
    {"orders", 5000},     {"audit_log", 0}, /* cache: false */
    {"never", 0},                           /* ttl: 0 */
    {"v_sales", 30000},                     /* a rule without ttl inherits the default */
    {"triggers", 30000},  {"muted", 0},     /* cache: false wins over ttl */
    {"customers", 30000},                   /* no rule: the default */
    {"Products", 30000}, /* matched exactly: a quoted "Products" is another table */
    {"", 30000},
};

START_TEST(test_table_ttls)
{
    Config *cfg = load_ok(rules_yaml);

    ck_assert_int_eq(config_table_ttl_ms(cfg, ttls[_i].table), ttls[_i].ttl_ms);
    /* cache.enabled: false means nothing is cached at all */
    cfg->cache.enabled = false;
    ck_assert_int_eq(config_table_ttl_ms(cfg, ttls[_i].table), 0);
    config_free(cfg);
}
END_TEST

START_TEST(test_lookups)
{
    Config *cfg = load_ok(rules_yaml);
    const TableRule *t;
    const FunctionRule *f;
    static const char *const all_tables[] = {"audit_log", "muted",    "never",  "orders",
                                             "products",  "triggers", "v_sales"};
    size_t i;

    ck_assert_uint_eq(cfg->n_tables, N_OF(all_tables));
    for (i = 0; i < N_OF(all_tables); i++) {
        t = config_table(cfg, all_tables[i]);
        ck_assert_ptr_nonnull(t);
        ck_assert_ptr_eq(t, &cfg->tables[i]); /* sorted by name */
        ck_assert_str_eq(t->name, all_tables[i]);
    }
    t = config_table(cfg, "v_sales");
    ck_assert(t->safe);
    ck_assert(!t->also_invalidates_set);
    t = config_table(cfg, "triggers");
    ck_assert(t->also_invalidates_set);
    ck_assert_uint_eq(t->n_also_invalidates, 1);
    ck_assert_str_eq(t->also_invalidates[0], "totals");
    ck_assert_int_eq(t->line, 9);
    ck_assert_ptr_null(config_table(cfg, "missing"));
    ck_assert_ptr_null(config_table(cfg, "a"));
    ck_assert_ptr_null(config_table(cfg, "zzz"));
    ck_assert_ptr_null(config_table(cfg, NULL));
    ck_assert_ptr_null(config_table(NULL, "orders"));

    f = config_function(cfg, "place_order");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->n_writes, 2);
    ck_assert_str_eq(f->writes[0], "orders");
    ck_assert_str_eq(f->writes[1], "stock");
    ck_assert_int_eq(f->line, 12);
    f = config_function(cfg, "calc");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(f->n_writes, 0); /* declared read-only */
    ck_assert_ptr_nonnull(config_function(cfg, "audit"));
    ck_assert_ptr_null(config_function(cfg, "nextval"));
    ck_assert_ptr_null(config_function(cfg, NULL));
    ck_assert_ptr_null(config_function(NULL, "calc"));
    config_free(cfg);

    cfg = config_defaults();
    ck_assert_ptr_null(config_table(cfg, "orders"));
    ck_assert_ptr_null(config_function(cfg, "calc"));
    ck_assert_int_eq(config_table_ttl_ms(cfg, "orders"), 60000);
    config_free(cfg);
    ck_assert_int_eq(config_table_ttl_ms(NULL, "orders"), 0);
}
END_TEST

START_TEST(test_workers_and_names)
{
    Config *cfg = load_ok("workers: auto\n");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_int_eq(config_worker_count(cfg), cpus < 1 ? 1 : cpus > 256 ? 256 : (int)cpus);
    config_free(cfg);
    cfg = load_ok("workers: 3\n");
    ck_assert_int_eq(config_worker_count(cfg), 3);
    config_free(cfg);
    ck_assert_int_ge(config_worker_count(NULL), 1);

    ck_assert_str_eq(config_consistency_name(CONSISTENCY_STRICT), "strict");
    ck_assert_str_eq(config_consistency_name(CONSISTENCY_LOCAL), "local");
    ck_assert_str_eq(config_log_level_name(LOG_ERROR), "error");
    ck_assert_str_eq(config_log_level_name(LOG_WARN), "warn");
    ck_assert_str_eq(config_log_level_name(LOG_INFO), "info");
    ck_assert_str_eq(config_log_level_name(LOG_DEBUG), "debug");
    ck_assert_str_eq(config_log_format_name(LOG_FORMAT_TEXT), "text");
    ck_assert_str_eq(config_log_format_name(LOG_FORMAT_JSON), "json");
    ck_assert_str_eq(config_log_level_name((LogLevel)99), "unknown");
}
END_TEST

/* "<dir>/.s.PGSQL.<port>" must fit in sun_path's 108 bytes: a 92-byte directory is the most. */
START_TEST(test_socket_dir_limit)
{
    char text[200];
    HostPort hp;

    memset(text, 'd', sizeof(text));
    text[0] = '/';
    strcpy(text + 92, ":5432");
    ck_assert(config_parse_hostport(text, &hp, 1));
    ck_assert_uint_eq(strlen(hp.host), 92);
    ck_assert_int_eq(hp.port, 5432);
    text[92] = 'd';
    strcpy(text + 93, ":5432");
    ck_assert(!config_parse_hostport(text, &hp, 1));
}
END_TEST

START_TEST(test_free_null)
{
    config_free(NULL);
    config_redis_url_clear(NULL);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, test_defaults);
    tcase_add_loop_test(tc, test_empty_inputs, 0, N_OF(empty_inputs));
    tcase_add_test(tc, test_example_file);
    tcase_add_loop_test(tc, test_durations, 0, N_OF(durations));
    tcase_add_loop_test(tc, test_sizes, 0, N_OF(sizes));
    tcase_add_loop_test(tc, test_hostports, 0, N_OF(hostports));
    tcase_add_loop_test(tc, test_redis_urls, 0, N_OF(redis_urls));
    tcase_add_loop_test(tc, test_values, 0, N_OF(values));
    tcase_add_loop_test(tc, test_errors, 0, N_OF(errors));
    tcase_add_test(tc, test_hostile);
    tcase_add_test(tc, test_files);
    tcase_add_loop_test(tc, test_overrides, 0, N_OF(overrides));
    tcase_add_test(tc, test_override_null);
    tcase_add_loop_test(tc, test_table_ttls, 0, N_OF(ttls));
    tcase_add_test(tc, test_lookups);
    tcase_add_test(tc, test_workers_and_names);
    tcase_add_test(tc, test_socket_dir_limit);
    tcase_add_test(tc, test_free_null);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
