/*
 * harness.c — the in-process proxied session of harness.h: runtime and worker set-up, the
 * application's end of a socketpair, a scripted fake PostgreSQL and a fake Redis on Unix
 * sockets in a private directory, a loop driver, and a teardown that leaves nothing behind.
 */
#include "tests/fuzz/harness.h"

#include <dirent.h>
#include <errno.h>
#include <ev.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proxy/buf.h"
#include "proxy/client.h"
#include "proxy/log.h"
#include "proxy/pgproto.h"
#include "proxy/runtime.h"
#include "proxy/scram.h"
#include "proxy/store.h"
#include "proxy/versions.h"
#include "proxy/worker.h"

#define MAX_PEERS    4     /* connections per fake server in one session */
#define MAX_ROUNDS   20000 /* loop rounds per drive, whatever happens */
#define QUIET_ROUNDS 4     /* rounds without a byte moving = nothing will move */
#define BYTE_ROUNDS  2048  /* byte-by-byte delivery coarsens beyond this many rounds */
#define UP_PORT      5432

/* --- process-wide ------------------------------------------------------------------------- */

static char dir[64]; /* private directory of the Unix sockets */
static char redis_path[128];
static int up_listen = -1, redis_listen = -1;
static Snapshot *snaps[2][2];  /* [Redis reachable][upstream reachable] */
static int diag_fd = 2;        /* stderr as it was before libFuzzer's -close_fd_mask */
static char admin_secret[256]; /* SCRAM verifier of the admin console's user "admin" */
static uint8_t admin_client_key[SCRAM_KEY_LEN]; /* ClientKey for the password "pencil" */

#define ADMIN_PASSWORD "pencil"
#define ADMIN_NONCE    "fuzzclientnonce"

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0) {
        ssize_t w = write(diag_fd, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)w;
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static void cleanup_dir(void)
{
    char p[192];
    snprintf(p, sizeof p, "%s/.s.PGSQL.%d", dir, UP_PORT);
    unlink(p);
    unlink(redis_path);
    rmdir(dir);
}

static int listen_unix(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&un, sizeof un) < 0 || listen(fd, 64) < 0) {
        diag("harness: listen %s: %s\n", path, strerror(errno));
        abort();
    }
    return fd;
}

static Snapshot *make_snapshot(const char *redis_host, const char *upstream_dir, uint64_t gen)
{
    Config *cfg = config_defaults();
    if (!cfg)
        abort();
    snprintf(cfg->upstream.host, sizeof cfg->upstream.host, "%s", upstream_dir);
    cfg->upstream.port = UP_PORT;
    snprintf(cfg->redis.addr.host, sizeof cfg->redis.addr.host, "%s", redis_host);
    cfg->redis.addr.port = 0;
    cfg->cache.enabled = true;
    /* A loaded machine must not turn a 50 ms Redis deadline into a different code path. */
    cfg->cache.redis_timeout_ms = 30000;
    /* Small enough that fuzzed answers reach the "too big to store" path. */
    cfg->cache.max_entry_bytes = 4096;
    cfg->limits.max_message_bytes = 1 << 20;
    cfg->workers = 1;
    cfg->admin.users = calloc(1, sizeof *cfg->admin.users);
    if (!cfg->admin.users)
        abort();
    cfg->admin.users[0].name = strdup("admin");
    cfg->admin.users[0].secret = strdup(admin_secret);
    cfg->admin.n_users = 1;
    Snapshot *s;
    char err[256];
    if (!snapshot_build(cfg, gen, &s, err, sizeof err)) {
        diag("harness: snapshot: %s\n", err);
        abort();
    }
    return s;
}

void harness_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    int d = dup(2);
    if (d >= 0)
        diag_fd = d;
    snprintf(dir, sizeof dir, "/tmp/pgstash-fuzz-XXXXXX");
    if (!mkdtemp(dir)) {
        diag("harness: mkdtemp: %s\n", strerror(errno));
        abort();
    }
    atexit(cleanup_dir);
    char p[192];
    snprintf(p, sizeof p, "%s/.s.PGSQL.%d", dir, UP_PORT);
    up_listen = listen_unix(p);
    snprintf(redis_path, sizeof redis_path, "%s/redis.sock", dir);
    redis_listen = listen_unix(redis_path);

    /* The admin console's user, and what a client derives from its password. */
    ScramSecret sec;
    if (!scram_make_secret(ADMIN_PASSWORD, 4096, admin_secret, sizeof admin_secret) ||
        !scram_parse_secret(admin_secret, &sec))
        abort();
    uint8_t salt[64], salted[SCRAM_KEY_LEN];
    size_t b64 = strlen(sec.salt_b64);
    int n = EVP_DecodeBlock(salt, (const unsigned char *)sec.salt_b64, (int)b64);
    int pad = b64 >= 2 ? (sec.salt_b64[b64 - 1] == '=') + (sec.salt_b64[b64 - 2] == '=') : 0;
    unsigned int kl = 0;
    if (n < 0 ||
        !PKCS5_PBKDF2_HMAC(ADMIN_PASSWORD, (int)strlen(ADMIN_PASSWORD), salt, n - pad,
                           sec.iterations, EVP_sha256(), sizeof salted, salted) ||
        !HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Client Key", 10,
              admin_client_key, &kl))
        abort();

    char nowhere[160];
    snprintf(nowhere, sizeof nowhere, "%s/no-redis.sock", dir);
    char no_upstream[160];
    snprintf(no_upstream, sizeof no_upstream, "%s/no-upstream", dir);
    for (int r = 0; r < 2; r++)
        for (int u = 0; u < 2; u++)
            snaps[r][u] = make_snapshot(r ? redis_path : nowhere, u ? dir : no_upstream,
                                        (uint64_t)(1 + 2 * r + u));

    const char *lv = getenv("PGSTASH_FUZZ_LOG");
    LogLevel level = LOG_DEBUG; /* the formatting of every log line is fuzzed too */
    if (lv && strcmp(lv, "error") == 0)
        level = LOG_ERROR;
    else if (lv && strcmp(lv, "info") == 0)
        level = LOG_INFO;
    log_configure(level, LOG_FORMAT_TEXT);
    versions_init();
    rt.started_ms = clock_ms();
}

size_t harness_split(const uint8_t *data, size_t len, const uint8_t **parts, size_t *lens,
                     size_t max)
{
    const size_t sl = sizeof HARNESS_SEPARATOR - 1;
    size_t n = 0, start = 0;
    for (size_t i = 0; n + 1 < max && i + sl <= len; i++) {
        if (memcmp(data + i, HARNESS_SEPARATOR, sl) == 0) {
            parts[n] = data + start;
            lens[n++] = i - start;
            start = i + sl;
            i += sl - 1;
        }
    }
    if (max > 0) {
        parts[n] = data + start;
        lens[n++] = len - start;
    }
    return n;
}

/* --- one session's state -------------------------------------------------------------------- */

typedef enum {
    UPS_STARTUP, /* waiting for the startup packet (or a cancel request) */
    UPS_AUTH,    /* waiting for a PasswordMessage / SASL response */
    UPS_READY,   /* answering queries */
} UpPhase;

typedef struct {
    char name[64];
    int cls;      /* QueryClass of its text */
    char tag[32]; /* its first word, for CommandComplete */
} FakeStmt;

typedef struct {
    int fd; /* -1: free slot */
    ev_io rd, wr;
    IoBuf in, out;
    IoBuf trickle;    /* answer bytes still to hand over, a chunk per round */
    bool close_after; /* close once `out` is flushed */
    /* fake PostgreSQL */
    UpPhase phase;
    int auth_step;
    char tx;             /* 'I', 'T', 'E' */
    bool ext_error;      /* an extended-protocol error: skip to Sync */
    bool copy_in;        /* COPY FROM STDIN in progress */
    bool copy_simple;    /* ... started by a simple Query (else by an Execute) */
    uint64_t pending;    /* writes of the open transaction block, not yet committed */
    uint64_t implicit;   /* writes of Executes outside a block: committed by the Sync */
    bool in_probe;       /* answering pgstash's session probe with canned rows */
    size_t early;        /* bytes that had arrived before the first ReadyForQuery went out:
                            pgstash sent them before it could know the session was ready */
    int portal_cls;      /* class of the statement bound to the unnamed portal */
    char portal_tag[32]; /* ... and its first word */
    FakeStmt stmts[8];
    int n_stmts;
} Peer;

typedef struct {
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
} KvEntry;

static struct {
    const SessionSpec *spec;
    Worker w;
    Client *client;
    int app_fd;         /* the application's end */
    size_t fed;         /* client bytes delivered */
    size_t client_step; /* DELIVER_BYTES: client bytes per round */
    size_t answer_step; /* DELIVER_BYTES: answer bytes per round */
    uint32_t rng;
    uint64_t activity; /* bumps whenever a byte moves somewhere the harness sees */
    ev_io up_accept, redis_accept;
    Peer ups[MAX_PEERS];
    Peer reds[MAX_PEERS];
    size_t next_answer;
    KvEntry *kv;
    size_t n_kv, cap_kv;
    /* the admin login (spec->admin) */
    int login;    /* 0 not yet, 1 waiting for the server, 2 done */
    IoBuf app_in; /* what the application received, during the login */
    char client_first_bare[64];
    /* The fake database's one datum: how many writes it committed. SELECT returns it
     * ("v=N"), so a stale cache hit is visible in the application's stream. */
    uint64_t committed;
    /* The same count as the application learns it from the answers it has received. */
    uint64_t seen_committed, seen_pending, seen_implicit;
    char seen_tx;
    uint8_t msgbuf[128]; /* the payload of a small message being received */
    size_t msg_have;
    /* check of the stream the application receives */
    bool started;
    uint8_t hdr[5];
    size_t hdr_have;
    size_t skip;
} S;

static uint32_t rng_next(void)
{
    uint32_t x = S.rng ? S.rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    S.rng = x;
    return x;
}

/* How much of `left` bytes goes in this round; `step` is DELIVER_BYTES's step. */
static size_t chunk_len(Delivery d, size_t step, size_t left)
{
    size_t n;
    switch (d) {
    case DELIVER_WHOLE:
        n = left;
        break;
    case DELIVER_BYTES:
        n = step;
        break;
    default:
        n = 1 + rng_next() % 97;
        break;
    }
    return n < left ? n : left;
}

/* --- peers ---------------------------------------------------------------------------------- */

static void peer_close(Peer *p)
{
    if (p->fd < 0)
        return;
    ev_io_stop(S.w.loop, &p->rd);
    ev_io_stop(S.w.loop, &p->wr);
    close(p->fd);
    p->fd = -1;
    S.activity++;
}

static void peer_flush(Peer *p)
{
    while (p->fd >= 0 && iobuf_len(&p->out) > 0) {
        ssize_t n = send(p->fd, iobuf_head(&p->out), iobuf_len(&p->out), MSG_NOSIGNAL);
        if (n > 0) {
            iobuf_consume(&p->out, (size_t)n);
            S.activity++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        peer_close(p);
        return;
    }
    if (p->fd < 0)
        return;
    if (iobuf_len(&p->out) > 0)
        ev_io_start(S.w.loop, &p->wr);
    else {
        ev_io_stop(S.w.loop, &p->wr);
        if (p->close_after)
            peer_close(p);
    }
}

static void put(Peer *p, const void *data, size_t n)
{
    if (!iobuf_append(&p->out, data, n))
        abort();
}

/* Appends one backend message. */
static void msg(Peer *p, char type, const void *body, size_t n)
{
    uint8_t h[5];
    h[0] = (uint8_t)type;
    put_be32(h + 1, (uint32_t)(n + 4));
    put(p, h, 5);
    put(p, body, n);
}

static void msg_w(Peer *p, ByteWriter *w)
{
    if (w->failed)
        abort();
    put(p, w->data, w->len);
    bw_free(w);
}

static void msg_auth(Peer *p, uint32_t code, const void *extra, size_t n)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'R');
    bw_u32(&w, code);
    bw_put(&w, extra, n);
    bw_msg_end(&w, at);
    msg_w(p, &w);
}

static void msg_error(Peer *p, const char *sev, const char *code, const char *text)
{
    ByteWriter w = {0};
    pg_write_error(&w, sev, code, text, NULL);
    msg_w(p, &w);
}

static void msg_ready(Peer *p)
{
    ByteWriter w = {0};
    pg_write_ready(&w, p->tx);
    msg_w(p, &w);
}

static void msg_tag(Peer *p, const char *tag)
{
    msg(p, 'C', tag, strlen(tag) + 1);
}

static void msg_param(Peer *p, const char *name, const char *value)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'S');
    bw_cstr(&w, name);
    bw_cstr(&w, value);
    bw_msg_end(&w, at);
    msg_w(p, &w);
}

/* RowDescription of one int4 column. */
static void msg_rowdesc(Peer *p)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'T');
    bw_u16(&w, 1);
    bw_cstr(&w, "?column?");
    bw_u32(&w, 0);
    bw_u16(&w, 0);
    bw_u32(&w, 23);
    bw_u16(&w, 4);
    bw_u32(&w, 0xffffffffu);
    bw_u16(&w, 0);
    bw_msg_end(&w, at);
    msg_w(p, &w);
}

static void msg_datarow(Peer *p, int ncols, const char *const *vals)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'D');
    bw_u16(&w, (uint16_t)ncols);
    for (int i = 0; i < ncols; i++) {
        if (!vals[i]) {
            bw_u32(&w, 0xffffffffu);
            continue;
        }
        bw_u32(&w, (uint32_t)strlen(vals[i]));
        bw_put(&w, vals[i], strlen(vals[i]));
    }
    bw_msg_end(&w, at);
    msg_w(p, &w);
}

/* --- the fake PostgreSQL ---------------------------------------------------------------------- */

typedef enum {
    QC_EMPTY,
    QC_SELECT,
    QC_BEGIN,
    QC_COMMIT,
    QC_ROLLBACK,
    QC_COPY_IN,
    QC_COPY_OUT,
    QC_SET,
    QC_NOTIFY,
    QC_DO,
    QC_ERROR,
    QC_PROBE,
    QC_WRITE,
    QC_OTHER,
} QueryClass;

static bool has_word(const char *q, size_t n, const char *w)
{
    size_t wl = strlen(w);
    for (size_t i = 0; i + wl <= n; i++)
        if (strncasecmp(q + i, w, wl) == 0)
            return true;
    return false;
}

/* What the fake server does with a statement: a guess from its first word, good enough to
 * walk pgstash through results, transactions, COPY, notices and errors. */
static QueryClass classify(const char *q, size_t n, char *tag, size_t taglen)
{
    size_t i = 0;
    while (i < n && (q[i] == ' ' || q[i] == '\t' || q[i] == '\n' || q[i] == '\r' || q[i] == '(' ||
                     q[i] == ';'))
        i++;
    size_t j = i;
    while (j < n && ((q[j] >= 'a' && q[j] <= 'z') || (q[j] >= 'A' && q[j] <= 'Z')))
        j++;
    size_t wl = j - i < 20 ? j - i : 20;
    snprintf(tag, taglen, "%.*s", (int)wl, q + i);
    for (char *t = tag; *t; t++)
        if (*t >= 'a' && *t <= 'z')
            *t = (char)(*t - 'a' + 'A');
    if (has_word(q, n, "pg_settings"))
        return QC_PROBE;
    if (has_word(q, n, "1/0") || has_word(q, n, "raise exception"))
        return QC_ERROR;
    if (i == n)
        return QC_EMPTY;
    if (wl == 0)
        return QC_OTHER;
#define IS(w) (strcmp(tag, w) == 0)
    if (IS("SELECT") || IS("VALUES") || IS("TABLE") || IS("WITH") || IS("SHOW") || IS("FETCH"))
        return QC_SELECT;
    if (IS("BEGIN") || IS("START"))
        return QC_BEGIN;
    if (IS("COMMIT") || IS("END"))
        return QC_COMMIT;
    if (IS("ROLLBACK") || IS("ABORT"))
        return QC_ROLLBACK;
    if (IS("COPY"))
        return has_word(q, n, "stdin") ? QC_COPY_IN : QC_COPY_OUT;
    if (IS("SET") || IS("RESET") || IS("DISCARD"))
        return QC_SET;
    if (IS("NOTIFY") || IS("LISTEN"))
        return QC_NOTIFY;
    if (IS("DO"))
        return QC_DO;
    if (IS("INSERT") || IS("UPDATE") || IS("DELETE") || IS("MERGE") || IS("TRUNCATE"))
        return QC_WRITE;
#undef IS
    return QC_OTHER;
}

static void answer_ok(Peer *p)
{
    msg_auth(p, 0, NULL, 0);
    msg_param(p, "server_version", "15.0");
    msg_param(p, "client_encoding", "UTF8");
    msg_param(p, "standard_conforming_strings", "on");
    uint8_t key[8] = {0, 0, 0x30, 0x39, 0x12, 0x34, 0x56, 0x78};
    msg(p, 'K', key, sizeof key);
    p->tx = 'I';
    msg_ready(p);
    p->phase = UPS_READY;
}

/* The probe's rows: name/value pairs, as pg_settings would give them. */
static void answer_probe_rows(Peer *p)
{
    static const char *const rows[][2] = {
        {"DateStyle", "ISO, MDY"},
        {"TimeZone", "UTC"},
        {"role", "fuzz/fuzz"},
        {"search_path", "\"$user\", public"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        msg_datarow(p, 2, rows[i]);
    msg_tag(p, "SELECT 4");
}

/* A write succeeded: committed now (a simple Query outside a block), with its block, or,
 * run by an Execute outside a block, with the implicit transaction the next Sync commits. */
static void write_done(Peer *p, bool simple)
{
    if (p->tx == 'T')
        p->pending++;
    else if (simple)
        S.committed++;
    else
        p->implicit++;
}

/* What a SELECT sees now. */
static uint64_t visible(const Peer *p)
{
    return S.committed + (p->tx == 'T' ? p->pending : 0) + p->implicit;
}

/* An ERROR: it aborts the open block, or the implicit transaction of an extended unit (its
 * writes are gone); in the extended protocol the server then skips to Sync. */
static void fake_error(Peer *p, const char *code, const char *text, bool simple)
{
    msg_error(p, "ERROR", code, text);
    if (p->tx == 'T')
        p->tx = 'E';
    p->implicit = 0;
    if (!simple)
        p->ext_error = true;
}

/* The implicit transaction of the extended messages so far ends well. */
static void commit_implicit(Peer *p)
{
    S.committed += p->implicit;
    p->implicit = 0;
}

/* Runs one statement of class `cls` as the server would; `tag` is its first word. */
static void run_statement(Peer *p, QueryClass cls, const char *tag, bool simple)
{
    if (p->tx == 'E' && cls != QC_ROLLBACK && cls != QC_COMMIT) {
        fake_error(p, "25P02", "current transaction is aborted", simple);
        return;
    }
    char t[64];
    switch (cls) {
    case QC_EMPTY:
        msg(p, 'I', NULL, 0);
        return;
    case QC_PROBE:
        answer_probe_rows(p);
        return;
    case QC_SELECT: {
        char v[32];
        snprintf(v, sizeof v, "v=%llu", (unsigned long long)visible(p));
        const char *vals[1] = {v};
        if (simple)
            msg_rowdesc(p);
        msg_datarow(p, 1, vals);
        msg_tag(p, "SELECT 1");
        return;
    }
    case QC_BEGIN:
        if (p->tx == 'I') {
            p->tx = 'T'; /* the implicit transaction so far becomes the block */
            p->pending += p->implicit;
            p->implicit = 0;
        }
        msg_tag(p, "BEGIN");
        return;
    case QC_COMMIT:
        msg_tag(p, p->tx == 'E' ? "ROLLBACK" : "COMMIT");
        if (p->tx == 'T')
            S.committed += p->pending;
        if (p->tx == 'I')
            commit_implicit(p);
        p->pending = p->implicit = 0;
        p->tx = 'I';
        return;
    case QC_ROLLBACK:
        msg_tag(p, "ROLLBACK");
        p->pending = p->implicit = 0;
        p->tx = 'I';
        return;
    case QC_ERROR:
        fake_error(p, "22012", "division by zero", simple);
        return;
    case QC_COPY_IN: {
        uint8_t g[3] = {0, 0, 0}; /* text format, no columns */
        msg(p, 'G', g, sizeof g);
        p->copy_in = true;
        p->copy_simple = simple;
        return;
    }
    case QC_COPY_OUT: {
        uint8_t h[3] = {0, 0, 0};
        msg(p, 'H', h, sizeof h);
        msg(p, 'd', "1\n", 2);
        msg(p, 'c', NULL, 0);
        msg_tag(p, "COPY 1");
        return;
    }
    case QC_SET:
        msg_param(p, "application_name", "fuzzed");
        msg_tag(p, tag);
        return;
    case QC_NOTIFY: {
        ByteWriter w = {0};
        size_t at = bw_msg_begin(&w, 'A');
        bw_u32(&w, 4242);
        bw_cstr(&w, "ch");
        bw_cstr(&w, "payload");
        bw_msg_end(&w, at);
        msg_w(p, &w);
        msg_tag(p, tag);
        return;
    }
    case QC_DO: {
        ByteWriter w = {0};
        size_t at = bw_msg_begin(&w, 'N');
        bw_u8(&w, 'S');
        bw_cstr(&w, "NOTICE");
        bw_u8(&w, 'C');
        bw_cstr(&w, "00000");
        bw_u8(&w, 'M');
        bw_cstr(&w, "hi");
        bw_u8(&w, 0);
        bw_msg_end(&w, at);
        msg_w(p, &w);
        msg_tag(p, "DO");
        return;
    }
    case QC_WRITE:
        snprintf(t, sizeof t, "%s%s", tag, strcmp(tag, "INSERT") == 0 ? " 0 1" : " 1");
        write_done(p, simple);
        msg_tag(p, t);
        return;
    case QC_OTHER:
        msg_tag(p, tag[0] ? tag : "OK");
        return;
    }
}

static const char *cstr_at(const uint8_t *payload, size_t len, size_t *at)
{
    if (*at >= len)
        return NULL;
    const uint8_t *nul = memchr(payload + *at, 0, len - *at);
    if (!nul)
        return NULL;
    const char *s = (const char *)payload + *at;
    *at = (size_t)(nul - payload) + 1;
    return s;
}

static FakeStmt *find_stmt(Peer *p, const char *name)
{
    for (int i = 0; i < p->n_stmts; i++)
        if (strcmp(p->stmts[i].name, name) == 0)
            return &p->stmts[i];
    return NULL;
}

/* A bounds-checked reader in the manner of PostgreSQL's pq_getmsg* (written apart from
 * pgstash's own parsers, so that a disagreement between the two shows). */
typedef struct {
    const uint8_t *p;
    size_t n, at;
    bool bad;
} Rd;

static void rd_skip(Rd *r, size_t k)
{
    if (r->bad || k > r->n - r->at)
        r->bad = true;
    else
        r->at += k;
}

static uint32_t rd_int(Rd *r, size_t k)
{
    uint32_t v = 0;
    if (r->bad || k > r->n - r->at) {
        r->bad = true;
        return 0;
    }
    for (size_t i = 0; i < k; i++)
        v = v << 8 | r->p[r->at++];
    return v;
}

static void rd_str(Rd *r)
{
    const uint8_t *nul = r->bad || r->at >= r->n ? NULL : memchr(r->p + r->at, 0, r->n - r->at);
    if (!nul)
        r->bad = true;
    else
        r->at = (size_t)(nul - r->p) + 1;
}

/* Whether PostgreSQL would accept the layout of a frontend message (exec_parse_message,
 * exec_bind_message, exec_execute_message, ... up to their pq_getmsgend). */
static bool pg_message_valid(char type, const uint8_t *payload, size_t len)
{
    Rd r = {payload, len, 0, false};
    switch (type) {
    case 'Q':
        rd_str(&r);
        break;
    case 'P': {
        rd_str(&r);
        rd_str(&r);
        uint32_t n = rd_int(&r, 2);
        rd_skip(&r, (size_t)n * 4);
        break;
    }
    case 'B': {
        rd_str(&r);
        rd_str(&r);
        uint32_t nf = rd_int(&r, 2);
        rd_skip(&r, (size_t)nf * 2);
        uint32_t np = rd_int(&r, 2);
        if (nf > 1 && nf != np)
            return false;
        for (uint32_t i = 0; i < np && !r.bad; i++) {
            int32_t pl = (int32_t)rd_int(&r, 4);
            if (pl == -1)
                continue;
            if (pl < 0)
                return false;
            rd_skip(&r, (size_t)pl);
        }
        uint32_t nr = rd_int(&r, 2);
        rd_skip(&r, (size_t)nr * 2);
        break;
    }
    case 'E':
        rd_str(&r);
        rd_int(&r, 4);
        break;
    case 'D':
    case 'C': {
        uint32_t kind = rd_int(&r, 1);
        if (!r.bad && kind != 'S' && kind != 'P')
            return false;
        rd_str(&r);
        break;
    }
    case 'S':
    case 'H':
        break;
    default:
        return true;
    }
    return !r.bad && r.at == r.n;
}

/* One frontend message after authentication, scripted. */
static void up_scripted(Peer *p, char type, const uint8_t *payload, size_t len)
{
    char tag[32];
    size_t at = 0;
    if (p->copy_in) {
        if (type == 'd')
            return;
        /* Started by an Execute, the COPY ends without ReadyForQuery: the unit's Sync
         * (which comes after it) gets that; an error skips to it. */
        if (type == 'c' || type == 'f') {
            p->copy_in = false;
            if (type == 'c') {
                write_done(p, p->copy_simple);
                msg_tag(p, "COPY 3");
            } else {
                fake_error(p, "57014", "COPY from stdin failed", p->copy_simple);
            }
            if (p->copy_simple)
                msg_ready(p);
            return;
        }
        if (type == 'H' || type == 'S')
            return; /* ignored during COPY IN */
        p->copy_in = false;
        fake_error(p, "08P01", "unexpected message type during COPY from stdin", p->copy_simple);
        if (p->copy_simple)
            msg_ready(p);
        return;
    }
    if (p->ext_error && type != 'S' && type != 'Q' && type != 'X')
        return; /* skipped until Sync */
    if (!pg_message_valid(type, payload, len)) {
        /* PostgreSQL checks every message's layout before acting on it (pq_getmsg*,
         * pq_getmsgend): a malformed one is an ERROR that runs nothing; in the extended
         * protocol the server then skips to Sync. */
        bool simple = type == 'Q' || type == 'S';
        if (simple)
            commit_implicit(p); /* earlier extended messages end with it */
        fake_error(p, "08P01", "invalid message format", simple);
        if (simple)
            msg_ready(p);
        return;
    }
    switch (type) {
    case 'Q': {
        const char *q = cstr_at(payload, len, &at);
        if (!q) {
            msg_error(p, "FATAL", "08P01", "invalid string in message");
            p->close_after = true;
            return;
        }
        QueryClass cls = classify(q, strlen(q), tag, sizeof tag);
        commit_implicit(p); /* a Query joins and ends an implicit transaction */
        run_statement(p, cls, tag, true);
        if (!p->copy_in)
            msg_ready(p);
        return;
    }
    case 'P': {
        const char *name = cstr_at(payload, len, &at);
        const char *q = name ? cstr_at(payload, len, &at) : NULL;
        if (!q) {
            msg_error(p, "FATAL", "08P01", "invalid string in message");
            p->close_after = true;
            return;
        }
        QueryClass cls = classify(q, strlen(q), tag, sizeof tag);
        FakeStmt *st = find_stmt(p, name);
        if (name[0] && st) {
            fake_error(p, "42P05", "prepared statement already exists", false);
            return;
        }
        if (!st && p->n_stmts < (int)(sizeof p->stmts / sizeof p->stmts[0])) {
            st = &p->stmts[p->n_stmts++];
            snprintf(st->name, sizeof st->name, "%s", name);
        }
        if (st) {
            st->cls = cls;
            snprintf(st->tag, sizeof st->tag, "%s", tag);
        }
        msg(p, '1', NULL, 0);
        return;
    }
    case 'B': {
        const char *portal = cstr_at(payload, len, &at);
        const char *stmt = portal ? cstr_at(payload, len, &at) : NULL;
        FakeStmt *st = stmt ? find_stmt(p, stmt) : NULL;
        if (!st) {
            fake_error(p, "26000", "prepared statement does not exist", false);
            return;
        }
        p->portal_cls = st->cls;
        snprintf(p->portal_tag, sizeof p->portal_tag, "%s", st->tag);
        msg(p, '2', NULL, 0);
        return;
    }
    case 'D': {
        char kind = len > 0 ? (char)payload[0] : 0;
        at = 1;
        const char *name = cstr_at(payload, len, &at);
        FakeStmt *st = kind == 'S' && name ? find_stmt(p, name) : NULL;
        if (kind == 'S') {
            if (!st) {
                fake_error(p, "26000", "prepared statement does not exist", false);
                return;
            }
            uint8_t none[2] = {0, 0};
            msg(p, 't', none, sizeof none);
        }
        int cls = kind == 'S' ? st->cls : p->portal_cls;
        if (cls == QC_SELECT || cls == QC_PROBE)
            msg_rowdesc(p);
        else
            msg(p, 'n', NULL, 0);
        return;
    }
    case 'E':
        if (p->portal_cls == QC_PROBE) {
            answer_probe_rows(p);
            return;
        }
        run_statement(p, (QueryClass)p->portal_cls, p->portal_tag, false);
        return;
    case 'C':
        msg(p, '3', NULL, 0);
        return;
    case 'S':
        p->ext_error = false;
        commit_implicit(p); /* nothing left after an error */
        msg_ready(p);
        return;
    case 'H':
        return;
    case 'X':
        p->close_after = true;
        return;
    case 'F': {
        uint8_t null_result[4] = {0xff, 0xff, 0xff, 0xff};
        msg(p, 'V', null_result, sizeof null_result);
        msg_ready(p);
        return;
    }
    case 'd':
    case 'c':
    case 'f':
        return; /* outside COPY: ignored, as PostgreSQL does */
    default:
        msg_error(p, "FATAL", "08P01", "invalid frontend message type");
        p->close_after = true;
        return;
    }
}

/* One frontend message after authentication, answered from the fuzz input. */
static void up_from_input(Peer *p, char type, const uint8_t *payload, size_t len)
{
    const SessionSpec *spec = S.spec;
    if (type == 'X') {
        p->close_after = true;
        return;
    }
    if (!spec->fuzz_probe) {
        /* pgstash's session probe gets a good answer: the input answers the units. */
        char tag[32];
        size_t at = 0;
        if (type == 'P') {
            const char *name = cstr_at(payload, len, &at);
            const char *q = name ? cstr_at(payload, len, &at) : NULL;
            if (q && classify(q, strlen(q), tag, sizeof tag) == QC_PROBE)
                p->in_probe = true;
        }
        if (p->in_probe) {
            if (type == 'P')
                msg(p, '1', NULL, 0);
            else if (type == 'B')
                msg(p, '2', NULL, 0);
            else if (type == 'E')
                answer_probe_rows(p);
            else if (type == 'S') {
                msg_ready(p);
                p->in_probe = false;
            }
            return;
        }
    }
    if (type != 'Q' && type != 'S')
        return;
    if (S.next_answer < spec->n_answers) {
        size_t i = S.next_answer++;
        if (!iobuf_append(&p->trickle, spec->answers[i], spec->answer_lens[i]))
            abort();
    }
}

static void up_start_auth(Peer *p)
{
    static const uint8_t salt[4] = {1, 2, 3, 4};
    static const char mech[] = "SCRAM-SHA-256\0";
    switch (S.spec->auth) {
    case UPAUTH_TRUST:
        answer_ok(p);
        return;
    case UPAUTH_PASSWORD:
    case UPAUTH_REFUSE:
        msg_auth(p, 3, NULL, 0);
        break;
    case UPAUTH_MD5:
        msg_auth(p, 5, salt, sizeof salt);
        break;
    default:
        msg_auth(p, 10, mech, sizeof mech);
        break;
    }
    p->phase = UPS_AUTH;
    p->auth_step = 0;
}

static void up_auth_message(Peer *p, char type)
{
    if (type != 'p') {
        msg_error(p, "FATAL", "08P01", "expected password response");
        p->close_after = true;
        return;
    }
    if (S.spec->auth == UPAUTH_REFUSE) {
        msg_error(p, "FATAL", "28P01", "password authentication failed for user \"fuzz\"");
        p->close_after = true;
        return;
    }
    if (S.spec->auth == UPAUTH_SASL && p->auth_step == 0) {
        static const char cont[] = "r=abcdefserver,s=c2FsdA==,i=4096";
        msg_auth(p, 11, cont, sizeof cont - 1);
        p->auth_step = 1;
        return;
    }
    if (S.spec->auth == UPAUTH_SASL) {
        static const char fin[] = "v=c2lnbmF0dXJl";
        msg_auth(p, 12, fin, sizeof fin - 1);
    }
    answer_ok(p);
}

/* The session's client, or NULL once it was freed. */
static Client *live_client(void)
{
    for (Client *c = S.w.clients; c; c = c->next)
        if (c == S.client)
            return c;
    for (Client *c = S.w.dead; c; c = c->next)
        if (c == S.client)
            return c;
    return NULL;
}

/* Every message after the start-up packet, except the authentication exchange's own, must
 * have gone through the request path: pgstash sends it in CS_READY (it may have moved on to
 * closing since). Relayed earlier, it would skip judgement and invalidation. */
static void check_request_path(char type)
{
    Client *c = live_client();
    if (type == 'p' || type == 'X' || !c)
        return;
    if (c->state == CS_STARTUP || c->state == CS_CONNECTING || c->state == CS_AUTH) {
        diag("harness: upstream got a '%c' message while the client was still in start-up "
             "(state %d): it bypassed the request path\n",
             type, (int)c->state);
        abort();
    }
}

static void up_process(Peer *p)
{
    while (p->fd >= 0 && !p->close_after) {
        const uint8_t *b = iobuf_head(&p->in);
        size_t avail = iobuf_len(&p->in);
        if (p->phase == UPS_STARTUP) {
            if (avail < 8)
                return;
            uint32_t len = be32(b);
            if (len < 8 || len > 10000) {
                peer_close(p);
                return;
            }
            if (avail < len)
                return;
            uint32_t code = be32(b + 4);
            iobuf_consume(&p->in, len);
            if (code == PG_CANCEL_REQUEST) {
                peer_close(p); /* the whole conversation */
                return;
            }
            if (code != PG_PROTOCOL_3) {
                msg_error(p, "FATAL", "0A000", "unsupported frontend protocol");
                p->close_after = true;
                return;
            }
            if (S.spec->fuzz_startup && S.next_answer < S.spec->n_answers) {
                /* The authentication exchange is the input's too. */
                size_t i = S.next_answer++;
                if (!iobuf_append(&p->trickle, S.spec->answers[i], S.spec->answer_lens[i]))
                    abort();
                p->phase = UPS_READY;
                continue;
            }
            up_start_auth(p);
            if (p->phase == UPS_READY)
                p->early = iobuf_len(&p->in);
            continue;
        }
        if (avail < 5)
            return;
        uint32_t len = be32(b + 1);
        if (len < 4 || len > (1u << 24)) {
            msg_error(p, "FATAL", "08P01", "invalid message length");
            p->close_after = true;
            return;
        }
        if (avail < (size_t)len + 1)
            return;
        char type = (char)b[0];
        check_request_path(type);
        if (p->early > 0) {
            if (type != 'p' && type != 'X') {
                diag("harness: pgstash relayed a '%c' message sent before the session was "
                     "ready: it bypassed the request path\n",
                     type);
                abort();
            }
            p->early -= p->early < (size_t)len + 1 ? p->early : (size_t)len + 1;
        }
        UpPhase was = p->phase;
        if (p->phase == UPS_AUTH)
            up_auth_message(p, type);
        else if (S.spec->n_answers > 0)
            up_from_input(p, type, b + 5, len - 4);
        else
            up_scripted(p, type, b + 5, len - 4);
        iobuf_consume(&p->in, (size_t)len + 1);
        if (was != UPS_READY && p->phase == UPS_READY)
            p->early = iobuf_len(&p->in);
    }
}

/* --- the fake Redis -------------------------------------------------------------------------- */

typedef struct {
    const char *p;
    size_t n;
} Arg;

#define MAX_ARGS 2100

/* Parses one RESP array of bulk strings: 1 done, 0 need more, -1 malformed. */
static int resp_parse(const uint8_t *b, size_t avail, size_t *used, Arg *args, int *argc)
{
    size_t at = 0;
    long n = -1;
    const uint8_t *nl;
#define LINE()                                                                                     \
    do {                                                                                           \
        nl = at < avail ? memchr(b + at, '\n', avail - at) : NULL;                                 \
        if (!nl)                                                                                   \
            return 0;                                                                              \
    } while (0)
    LINE();
    if (b[0] != '*')
        return -1;
    n = strtol((const char *)b + 1, NULL, 10);
    if (n < 1 || n > MAX_ARGS)
        return -1;
    at = (size_t)(nl - b) + 1;
    for (long i = 0; i < n; i++) {
        LINE();
        if (b[at] != '$')
            return -1;
        long len = strtol((const char *)b + at + 1, NULL, 10);
        if (len < 0 || len > (1 << 24))
            return -1;
        at = (size_t)(nl - b) + 1;
        if (avail - at < (size_t)len + 2)
            return 0;
        args[i].p = (const char *)b + at;
        args[i].n = (size_t)len;
        at += (size_t)len + 2;
    }
#undef LINE
    *argc = (int)n;
    *used = at;
    return 1;
}

static KvEntry *kv_find(const Arg *k)
{
    for (size_t i = 0; i < S.n_kv; i++)
        if (S.kv[i].klen == k->n && memcmp(S.kv[i].key, k->p, k->n) == 0)
            return &S.kv[i];
    return NULL;
}

static void kv_set(const Arg *k, const char *v, size_t vn)
{
    KvEntry *e = kv_find(k);
    if (!e) {
        if (S.n_kv == S.cap_kv) {
            size_t cap = S.cap_kv ? S.cap_kv * 2 : 16;
            KvEntry *n = realloc(S.kv, cap * sizeof *n);
            if (!n)
                abort();
            S.kv = n;
            S.cap_kv = cap;
        }
        e = &S.kv[S.n_kv++];
        e->key = malloc(k->n ? k->n : 1);
        if (!e->key)
            abort();
        memcpy(e->key, k->p, k->n);
        e->klen = k->n;
    } else {
        free(e->val);
    }
    e->val = malloc(vn ? vn : 1);
    if (!e->val)
        abort();
    memcpy(e->val, v, vn);
    e->vlen = vn;
}

static void resp_bulk(Peer *p, const KvEntry *e)
{
    char h[32];
    if (!e) {
        put(p, "$-1\r\n", 5);
        return;
    }
    int n = snprintf(h, sizeof h, "$%zu\r\n", e->vlen);
    put(p, h, (size_t)n);
    put(p, e->val, e->vlen);
    put(p, "\r\n", 2);
}

static void resp_int(Peer *p, unsigned long long v)
{
    char h[32];
    int n = snprintf(h, sizeof h, ":%llu\r\n", v);
    put(p, h, (size_t)n);
}

static bool cmd_is(const Arg *a, const char *name)
{
    return a->n == strlen(name) && strncasecmp(a->p, name, a->n) == 0;
}

static unsigned long long arg_u64(const char *p, size_t n)
{
    unsigned long long v = 0;
    for (size_t i = 0; i < n && p[i] >= '0' && p[i] <= '9'; i++)
        v = v * 10 + (unsigned long long)(p[i] - '0');
    return v;
}

static void redis_command(Peer *p, const Arg *a, int argc)
{
    char h[32];
    if (cmd_is(&a[0], "PING")) {
        put(p, "+PONG\r\n", 7);
    } else if (cmd_is(&a[0], "AUTH") || cmd_is(&a[0], "SELECT")) {
        put(p, "+OK\r\n", 5);
    } else if (cmd_is(&a[0], "GET") && argc == 2) {
        resp_bulk(p, kv_find(&a[1]));
    } else if (cmd_is(&a[0], "MGET") && argc >= 2) {
        int n = snprintf(h, sizeof h, "*%d\r\n", argc - 1);
        put(p, h, (size_t)n);
        for (int i = 1; i < argc; i++)
            resp_bulk(p, kv_find(&a[i]));
    } else if (cmd_is(&a[0], "SET") && argc >= 3) {
        bool nx = false;
        for (int i = 3; i < argc; i++)
            nx = nx || cmd_is(&a[i], "NX");
        if (nx && kv_find(&a[1])) {
            put(p, "$-1\r\n", 5);
        } else {
            kv_set(&a[1], a[2].p, a[2].n);
            uint32_t k = S.spec->corrupt_entries;
            KvEntry *e = kv_find(&a[1]);
            if (k && e->vlen >= 4 && memcmp(e->val, "PGS1", 4) == 0) {
                /* Damage the stored entry: what comes back from Redis is untrusted. */
                size_t at = (k >> 8) % e->vlen;
                if (k & 1)
                    e->vlen = at;
                else
                    e->val[at] ^= (char)((k >> 1 & 0x7f) | 1);
            }
            put(p, "+OK\r\n", 5);
        }
    } else if (cmd_is(&a[0], "EVAL") && argc >= 3) {
        /* The bump script: KEYS get INCR, or the seed (ARGV[1]) when missing. */
        long nkeys = (long)arg_u64(a[2].p, a[2].n);
        if (nkeys < 0 || 3 + nkeys >= argc) {
            put(p, "-ERR bad EVAL\r\n", 15);
            return;
        }
        if (nkeys == 0) {
            resp_int(p, 1); /* the admin console's FLUSH TABLE: databases walked */
            return;
        }
        const Arg *seed = &a[3 + nkeys];
        int n = snprintf(h, sizeof h, "*%ld\r\n", nkeys);
        put(p, h, (size_t)n);
        for (long i = 0; i < nkeys; i++) {
            const Arg *k = &a[3 + i];
            KvEntry *e = kv_find(k);
            unsigned long long v = e ? arg_u64(e->val, e->vlen) + 1 : arg_u64(seed->p, seed->n);
            char num[32];
            int nl = snprintf(num, sizeof num, "%llu", v);
            kv_set(k, num, (size_t)nl);
            resp_int(p, v);
        }
    } else if (cmd_is(&a[0], "SADD") || cmd_is(&a[0], "PUBLISH") || cmd_is(&a[0], "DEL")) {
        resp_int(p, 1);
    } else {
        put(p, "-ERR unknown command\r\n", 22);
    }
}

static void redis_process(Peer *p)
{
    static Arg args[MAX_ARGS];
    while (p->fd >= 0) {
        size_t used = 0;
        int argc = 0;
        int rc = resp_parse(iobuf_head(&p->in), iobuf_len(&p->in), &used, args, &argc);
        if (rc == 0)
            return;
        if (rc < 0) {
            diag("harness: fake redis: malformed command from pgstash\n");
            abort();
        }
        redis_command(p, args, argc);
        iobuf_consume(&p->in, used);
    }
}

/* --- libev callbacks of the fake servers ------------------------------------------------------ */

static void on_peer_write(struct ev_loop *loop, ev_io *io, int revents)
{
    peer_flush(io->data);
}

static void on_peer_read(struct ev_loop *loop, ev_io *io, int revents)
{
    Peer *p = io->data;
    bool is_up = p >= S.ups && p < S.ups + MAX_PEERS;
    for (;;) {
        if (!iobuf_reserve(&p->in, 65536))
            abort();
        ssize_t n = read(p->fd, p->in.data + p->in.end, p->in.cap - p->in.end);
        if (n > 0) {
            p->in.end += (size_t)n;
            S.activity++;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        /* EOF or error: answer what came, then go. */
        if (is_up)
            up_process(p);
        else
            redis_process(p);
        peer_close(p);
        return;
    }
    if (is_up)
        up_process(p);
    else
        redis_process(p);
    peer_flush(p);
}

static void accept_into(int lfd, Peer *peers)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        S.activity++;
        Peer *p = NULL;
        for (int i = 0; i < MAX_PEERS && !p; i++)
            if (peers[i].fd < 0)
                p = &peers[i];
        if (!p) {
            close(fd);
            continue;
        }
        iobuf_free(&p->in);
        iobuf_free(&p->out);
        iobuf_free(&p->trickle);
        memset(p, 0, sizeof *p);
        p->fd = fd;
        p->tx = 'I';
        ev_io_init(&p->rd, on_peer_read, fd, EV_READ);
        ev_io_init(&p->wr, on_peer_write, fd, EV_WRITE);
        p->rd.data = p->wr.data = p;
        ev_io_start(S.w.loop, &p->rd);
    }
}

static void on_up_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    accept_into(up_listen, S.ups);
}

static void on_redis_accept(struct ev_loop *loop, ev_io *io, int revents)
{
    accept_into(redis_listen, S.reds);
}

/* --- the application's end -------------------------------------------------------------------- */

static bool backend_type(uint8_t t)
{
    return t && strchr("RSKZTDCIENA123tnsGHWdcVv", t) != NULL;
}

static bool tag_is(const uint8_t *p, size_t n, const char *tag)
{
    return n == strlen(tag) + 1 && memcmp(p, tag, n) == 0;
}

/*
 * One whole small message the application received. Keeps the application's view of the
 * fake database (which writes it has seen succeed, committed or pending) and checks every
 * "v=N" row against it: N below what the application already knows is committed is a stale
 * read (a write's invalidation was lost); N above what the database holds now is data of a
 * rolled-back transaction served from the cache.
 */
static void on_app_message(uint8_t type, const uint8_t *p, size_t n)
{
    switch (type) {
    case 'Z':
        S.seen_committed += S.seen_implicit; /* the unit ended well */
        S.seen_implicit = 0;
        if (n == 1)
            S.seen_tx = (char)p[0];
        if (S.seen_tx == 'I')
            S.seen_pending = 0;
        return;
    case 'E':
        if (S.seen_tx == 'T')
            S.seen_tx = 'E';
        S.seen_implicit = 0;
        return;
    case 'C':
        if (tag_is(p, n, "BEGIN")) {
            if (S.seen_tx == 'I') {
                S.seen_tx = 'T';
                S.seen_pending += S.seen_implicit;
                S.seen_implicit = 0;
            }
        } else if (tag_is(p, n, "COMMIT")) {
            if (S.seen_tx == 'T')
                S.seen_committed += S.seen_pending;
            if (S.seen_tx == 'I')
                S.seen_committed += S.seen_implicit;
            S.seen_pending = S.seen_implicit = 0;
            S.seen_tx = 'I';
        } else if (tag_is(p, n, "ROLLBACK")) {
            S.seen_pending = S.seen_implicit = 0;
            S.seen_tx = 'I';
        } else if (tag_is(p, n, "INSERT 0 1") || tag_is(p, n, "UPDATE 1") ||
                   tag_is(p, n, "DELETE 1") || tag_is(p, n, "MERGE 1") ||
                   tag_is(p, n, "TRUNCATE 1") || tag_is(p, n, "COPY 3")) {
            /* Outside a block: committed at the unit's ReadyForQuery, unless an error
             * comes first (an extended unit is one implicit transaction). */
            if (S.seen_tx == 'T')
                S.seen_pending++;
            else if (S.seen_tx == 'I')
                S.seen_implicit++;
        }
        return;
    case 'D': {
        if (n < 8 || be16(p) != 1 || be32(p + 2) != n - 6 || n - 6 < 3 || memcmp(p + 6, "v=", 2))
            return;
        char num[24];
        snprintf(num, sizeof num, "%.*s", (int)(n - 8 < 20 ? n - 8 : 20), (const char *)p + 8);
        unsigned long long v = strtoull(num, NULL, 10);
        /* In a block, the row also counts the block's own writes, all of which were
         * acknowledged before it. The database's count can only have grown since. */
        uint64_t own = (S.seen_tx == 'T' ? S.seen_pending : 0) + S.seen_implicit;
        uint64_t low = S.seen_committed + own;
        uint64_t high = S.committed + own;
        if (v < low || v > high) {
            diag("harness: the application read v=%llu; it knows %llu writes committed (%llu "
                 "pending), the database holds %llu: %s\n",
                 v, (unsigned long long)S.seen_committed, (unsigned long long)S.seen_pending,
                 (unsigned long long)high, v < low ? "a stale read" : "rolled-back data");
            abort();
        }
        return;
    }
    default:
        return;
    }
}

/* Follows the framing of what pgstash sends the application; aborts on a desynchronised
 * stream (the fake upstream only ever sends well-formed messages). Small messages are
 * handed whole to on_app_message(). */
static void check_stream(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (S.skip > 0) {
            size_t k = n - i < S.skip ? n - i : S.skip;
            size_t len = (size_t)be32(S.hdr + 1) - 4;
            if (len <= sizeof S.msgbuf) {
                memcpy(S.msgbuf + S.msg_have, b + i, k);
                S.msg_have += k;
            }
            S.skip -= k;
            i += k;
            if (S.skip == 0 && len <= sizeof S.msgbuf)
                on_app_message(S.hdr[0], S.msgbuf, S.msg_have);
            continue;
        }
        if (!S.started && S.hdr_have == 0 && b[i] == 'N') {
            i++; /* refusal of SSLRequest/GSSENCRequest: one byte */
            continue;
        }
        S.hdr[S.hdr_have++] = b[i++];
        if (S.hdr_have < 5)
            continue;
        S.started = true;
        S.hdr_have = 0;
        uint32_t len = be32(S.hdr + 1);
        if (!backend_type(S.hdr[0]) || len < 4 || len > (64u << 20)) {
            diag("harness: pgstash sent the client a broken stream: type 0x%02x length %u\n",
                 S.hdr[0], len);
            abort();
        }
        S.skip = len - 4;
        S.msg_have = 0;
        if (S.skip == 0)
            on_app_message(S.hdr[0], S.msgbuf, 0);
    }
}

static void app_send(const void *p, size_t n)
{
    if (send(S.app_fd, p, n, MSG_NOSIGNAL) != (ssize_t)n) {
        diag("harness: admin login: cannot write %zu bytes\n", n);
        abort();
    }
    S.activity++;
}

static void app_sasl(const char *mech, const char *data)
{
    ByteWriter w = {0};
    size_t at = bw_msg_begin(&w, 'p');
    if (mech) {
        bw_cstr(&w, mech);
        bw_u32(&w, (uint32_t)strlen(data));
    }
    bw_put(&w, data, strlen(data));
    bw_msg_end(&w, at);
    if (w.failed)
        abort();
    app_send(w.data, w.len);
    bw_free(&w);
}

/* The client-final-message for a server-first-message, as a SCRAM client computes it. */
static void admin_final(const char *server_first, size_t n)
{
    char sf[256], nonce[160], final[512], auth[1024];
    snprintf(sf, sizeof sf, "%.*s", (int)n, server_first);
    const char *r = strstr(sf, "r=");
    size_t rl = r ? strcspn(r + 2, ",") : 0;
    if (!r || rl >= sizeof nonce) {
        diag("harness: admin login: bad server-first-message '%s'\n", sf);
        abort();
    }
    snprintf(nonce, sizeof nonce, "%.*s", (int)rl, r + 2);
    int wl = snprintf(final, sizeof final, "c=biws,r=%s", nonce);
    int al = snprintf(auth, sizeof auth, "%s,%s,%s", S.client_first_bare, sf, final);
    uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    unsigned int sl = 0;
    SHA256(admin_client_key, sizeof admin_client_key, stored);
    HMAC(EVP_sha256(), stored, sizeof stored, (const unsigned char *)auth, (size_t)al, sig, &sl);
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        proof[i] = admin_client_key[i] ^ sig[i];
    char p64[64];
    EVP_EncodeBlock((unsigned char *)p64, proof, sizeof proof);
    snprintf(final + wl, sizeof final - (size_t)wl, ",p=%s", p64);
    app_sasl(NULL, final);
}

/* Messages the application received while the harness logs in to the admin console. */
static void admin_login_input(const uint8_t *b, size_t n)
{
    if (!iobuf_append(&S.app_in, b, n))
        abort();
    while (S.login == 1 && iobuf_len(&S.app_in) >= 5) {
        const uint8_t *m = iobuf_head(&S.app_in);
        size_t len = (size_t)be32(m + 1) + 1;
        if (len < 5 || iobuf_len(&S.app_in) < len)
            return;
        if (m[0] == 'R' && len >= 9) {
            uint32_t code = be32(m + 5);
            if (code == 10) {
                snprintf(S.client_first_bare, sizeof S.client_first_bare, "n=,r=%s", ADMIN_NONCE);
                char first[80];
                snprintf(first, sizeof first, "n,,%s", S.client_first_bare);
                app_sasl("SCRAM-SHA-256", first);
            } else if (code == 11) {
                admin_final((const char *)m + 9, len - 9);
            }
        } else if (m[0] == 'Z') {
            S.login = 2; /* logged in: the input follows */
        } else if (m[0] == 'E') {
            diag("harness: the admin console refused the harness's login\n");
            abort();
        }
        iobuf_consume(&S.app_in, len);
    }
}

static void drain_app(void)
{
    if (S.app_fd < 0)
        return;
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(S.app_fd, buf, sizeof buf);
        if (n > 0) {
            S.activity++;
            if (S.spec->check_stream)
                check_stream(buf, (size_t)n);
            if (S.login == 1)
                admin_login_input(buf, (size_t)n);
            continue;
        }
        return; /* EAGAIN, or EOF: the proxy closed; the close is noticed by the writes */
    }
}

static void feed_app(void)
{
    const SessionSpec *spec = S.spec;
    if (S.app_fd < 0 || S.fed >= spec->client_len || S.login == 1)
        return;
    size_t n = chunk_len(spec->client_delivery, S.client_step, spec->client_len - S.fed);
    ssize_t w = send(S.app_fd, spec->client + S.fed, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
        S.fed += (size_t)w;
        S.activity++;
    } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
        S.fed = spec->client_len; /* the proxy hung up: nothing more goes through */
    }
}

static void trickle_answers(void)
{
    for (int i = 0; i < MAX_PEERS; i++) {
        Peer *p = &S.ups[i];
        if (p->fd < 0 || iobuf_len(&p->trickle) == 0)
            continue;
        size_t n = chunk_len(S.spec->answer_delivery, S.answer_step, iobuf_len(&p->trickle));
        put(p, iobuf_head(&p->trickle), n);
        iobuf_consume(&p->trickle, n);
        if (S.spec->upstream_eof && iobuf_len(&p->trickle) == 0 &&
            S.next_answer == S.spec->n_answers)
            p->close_after = true; /* hang up once this is flushed */
        peer_flush(p);
    }
}

/* Rounds of feeding and EVRUN_NOWAIT until nothing has moved for a few rounds. */
static void drive(int max_rounds)
{
    int quiet = 0;
    for (int round = 0; round < max_rounds && quiet < QUIET_ROUNDS; round++) {
        uint64_t before = S.activity;
        feed_app();
        trickle_answers();
        ev_run(S.w.loop, EVRUN_NOWAIT);
        drain_app();
        quiet = S.activity == before ? quiet + 1 : 0;
    }
}

/* --- a session ---------------------------------------------------------------------------------
 */

static void drain_backlog(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return;
        close(fd);
    }
}

/* PGSTASH_FUZZ_MEMCHECK=1: report what a session leaves allocated (libFuzzer re-runs an
 * input under LeakSanitizer, slowly, whenever mallocs outnumber frees). */
size_t __sanitizer_get_current_allocated_bytes(void);
static void harness_session(const SessionSpec *spec);

void harness_run(const SessionSpec *spec)
{
    static int memcheck = -1;
    if (memcheck < 0)
        memcheck = getenv("PGSTASH_FUZZ_MEMCHECK") != NULL;
    size_t before = memcheck ? __sanitizer_get_current_allocated_bytes() : 0;
    harness_session(spec);
    if (memcheck)
        diag("harness: session left %ld bytes allocated\n",
             (long)(__sanitizer_get_current_allocated_bytes() - before));
}

static void harness_session(const SessionSpec *spec)
{
    int baseline_fds = count_fds(); /* here: libFuzzer's -close_fd_mask opens one after init */
    memset(&S, 0, sizeof S);
    S.spec = spec;
    S.seen_tx = 'I';
    S.app_fd = -1;
    S.rng = spec->seed * 2654435761u + 1;
    S.client_step = spec->client_len / BYTE_ROUNDS + 1;
    size_t answers = 0;
    for (size_t i = 0; i < spec->n_answers; i++)
        answers += spec->answer_lens[i];
    S.answer_step = answers / BYTE_ROUNDS + 1;
    for (int i = 0; i < MAX_PEERS; i++)
        S.ups[i].fd = S.reds[i].fd = -1;

    /* Process-wide state a previous session may have changed. */
    versions_forget_all();
    atomic_store(&rt.snap, snaps[spec->redis][!spec->upstream_missing]);
    rt.workers = &S.w;
    rt.n_workers = 1;

    S.w.listen_fd = S.w.spare_fd = -1; /* no accepting: the harness hands the client over */
    if (!worker_init(&S.w)) {
        diag("harness: worker_init failed\n");
        abort();
    }
    ev_io_init(&S.up_accept, on_up_accept, up_listen, EV_READ);
    ev_io_init(&S.redis_accept, on_redis_accept, redis_listen, EV_READ);
    ev_io_start(S.w.loop, &S.up_accept);
    ev_io_start(S.w.loop, &S.redis_accept);

    /* With a Redis, wait until the store serves (a lost write of an earlier session is
     * covered by an epoch bump first), so every session starts alike. */
    for (int i = 0; spec->redis && i < 64 && !store_ready(S.w.store); i++)
        drive(QUIET_ROUNDS + 1);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        diag("harness: socketpair: %s\n", strerror(errno));
        abort();
    }
    S.app_fd = sv[1];
    Client *c = client_new(&S.w, sv[0]);
    if (!c)
        abort();
    /* Linked into the worker as on_accept does. */
    c->next = S.w.clients;
    if (S.w.clients)
        S.w.clients->prev = c;
    S.w.clients = c;
    S.w.n_clients++;
    S.client = c;

    if (spec->admin) {
        ByteWriter w = {0};
        size_t at = w.len;
        bw_u32(&w, 0);
        bw_u32(&w, PG_PROTOCOL_3);
        bw_cstr(&w, "user");
        bw_cstr(&w, "admin");
        bw_cstr(&w, "database");
        bw_cstr(&w, "pgstash");
        bw_u8(&w, 0);
        if (w.failed)
            abort();
        put_be32(w.data + at, (uint32_t)w.len);
        S.login = 1;
        app_send(w.data, w.len);
        bw_free(&w);
    }
    drive(MAX_ROUNDS);
    if (spec->client_eof) {
        close(S.app_fd);
        S.app_fd = -1;
        drive(MAX_ROUNDS);
    }

    /* Teardown: the harness's watchers leave the loop, the worker frees the rest. */
    ev_io_stop(S.w.loop, &S.up_accept);
    ev_io_stop(S.w.loop, &S.redis_accept);
    for (int i = 0; i < MAX_PEERS; i++) {
        Peer *ps[2] = {&S.ups[i], &S.reds[i]};
        for (int k = 0; k < 2; k++) {
            ev_io_stop(S.w.loop, &ps[k]->rd);
            ev_io_stop(S.w.loop, &ps[k]->wr);
        }
    }
    worker_fini(&S.w);
    for (int i = 0; i < MAX_PEERS; i++) {
        Peer *ps[2] = {&S.ups[i], &S.reds[i]};
        for (int k = 0; k < 2; k++) {
            if (ps[k]->fd >= 0)
                close(ps[k]->fd);
            iobuf_free(&ps[k]->in);
            iobuf_free(&ps[k]->out);
            iobuf_free(&ps[k]->trickle);
        }
    }
    if (S.app_fd >= 0)
        close(S.app_fd);
    iobuf_free(&S.app_in);
    drain_backlog(up_listen);
    drain_backlog(redis_listen);
    for (size_t i = 0; i < S.n_kv; i++) {
        free(S.kv[i].key);
        free(S.kv[i].val);
    }
    free(S.kv);
    rt.workers = NULL;
    rt.n_workers = 0;
    /* Learned versions are process-wide; left over they would look like a leak to libFuzzer
     * (more mallocs than frees) and change the next session's path. */
    versions_forget_all();

    int fds = count_fds();
    if (fds != baseline_fds) {
        diag("harness: %d file descriptors open after the session, %d before\n", fds, baseline_fds);
        abort();
    }
}
