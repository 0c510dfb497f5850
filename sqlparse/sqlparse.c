/*
 * sqlparse.c — the library's front door: the memo (quick shape, else exact text ~25 ns, else
 * scanner + shape, else full parse ~26 µs; see docs/SQLPARSE.md), reference counting, and the
 * small lookups (built-in volatility, time literals, names).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* gettid() */
#endif
#include "sqlparse/internal.h"

#include <pg_query.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- the memo ------------------------------------------------------------------------ */

typedef struct MemoEntry {
    struct MemoEntry *chain; /* next in the same bucket */
    struct MemoEntry *newer; /* LRU neighbours; newest is used most recently */
    struct MemoEntry *older;
    uint64_t hash;
    size_t len;            /* key bytes */
    size_t charge;         /* bytes counted against the map's budget */
    SqlAnalysis *analysis; /* the entry's own reference */
    char key[];
} MemoEntry;

/* Texts answered by the scanner's shape are remembered from their second sighting; this
 * many recent first sightings are recalled (direct-mapped by hash). */
#define MEMO_SEEN_SLOTS 4096

/* A bounded LRU hash map from byte strings to analyses. */
typedef struct {
    MemoEntry **buckets;
    size_t n_buckets; /* power of two */
    MemoEntry *newest, *oldest;
    size_t count, capacity;
    size_t bytes, max_bytes;
} MemoMap;

struct SqlMemo {
    uint64_t seed; /* random per memo: texts cannot be chosen to collide */
    MemoMap exact; /* statement text → analysis */
    MemoMap shape; /* constant-stripped token stream → analysis */
    uint64_t seen[MEMO_SEEN_SLOTS]; /* hashes of texts found by shape once (remember_text) */
    uint64_t exact_hits, shape_hits, parses;
};

static uint64_t mix(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static uint64_t read64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static uint64_t read32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* A multiply-mix hash in the style of wyhash: 16 bytes per step, no allocation. */
static uint64_t hash_bytes(const void *data, size_t len, uint64_t seed)
{
    static const uint64_t k0 = 0xa0761d6478bd642full, k1 = 0xe7037ed1a0b428dbull,
                          k2 = 0x8ebc6af09c88c6e3ull;
    const unsigned char *p = data;
    uint64_t h = seed ^ mix(seed ^ k0, k1), a, b;
    if (len <= 16) {
        if (len >= 4) {
            size_t mid = (len >> 3) << 2;
            a = (read32(p) << 32) | read32(p + mid);
            b = (read32(p + len - 4) << 32) | read32(p + len - 4 - mid);
        } else if (len > 0) {
            a = ((uint64_t)p[0] << 16) | ((uint64_t)p[len >> 1] << 8) | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = len;
        while (left > 16) {
            h = mix(read64(p) ^ k1, read64(p + 8) ^ h);
            p += 16;
            left -= 16;
        }
        a = read64(p + left - 16);
        b = read64(p + left - 8);
    }
    return mix(k1 ^ len, mix(a ^ k1, b ^ h) ^ k2);
}

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) == (ssize_t)sizeof seed)
        return seed;
    /* No entropy yet (early boot): still differs between processes and runs. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32), (uintptr_t)&seed | 1);
}

__attribute__((warn_unused_result)) static bool map_init(MemoMap *m, size_t capacity)
{
    size_t n = 16;
    while (n < capacity && n < ((size_t)1 << 20))
        n *= 2;
    m->buckets = calloc(n, sizeof *m->buckets);
    if (!m->buckets)
        return false;
    m->n_buckets = n;
    m->capacity = capacity;
    size_t per = SQLPARSE_MEMO_BYTES_PER_ENTRY;
    m->max_bytes = capacity > SIZE_MAX / per ? SIZE_MAX : capacity * per;
    if (m->max_bytes < ((size_t)1 << 20))
        m->max_bytes = (size_t)1 << 20;
    return true;
}

static MemoEntry *map_find(const MemoMap *m, uint64_t hash, const char *key, size_t len)
{
    for (MemoEntry *e = m->buckets[hash & (m->n_buckets - 1)]; e; e = e->chain) {
        if (e->hash == hash && e->len == len && (len == 0 || memcmp(e->key, key, len) == 0))
            return e;
    }
    return NULL;
}

static void lru_unlink(MemoMap *m, MemoEntry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        m->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        m->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push_newest(MemoMap *m, MemoEntry *e)
{
    e->older = m->newest;
    e->newer = NULL;
    if (m->newest)
        m->newest->newer = e;
    m->newest = e;
    if (!m->oldest)
        m->oldest = e;
}

static void map_touch(MemoMap *m, MemoEntry *e)
{
    if (m->newest == e)
        return;
    lru_unlink(m, e);
    lru_push_newest(m, e);
}

static void map_remove(MemoMap *m, MemoEntry *e)
{
    MemoEntry **pp = &m->buckets[e->hash & (m->n_buckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = e->chain;
    lru_unlink(m, e);
    m->count--;
    m->bytes -= e->charge;
    sqlparse_release(e->analysis);
    free(e);
}

static size_t analysis_bytes(const SqlAnalysis *a)
{
    size_t n = sizeof *a + (a->n_reads + a->n_writes) * sizeof(SqlRelation) +
               a->n_functions * sizeof(SqlFunction);
    for (size_t i = 0; i < a->n_reads; i++)
        n += strlen(a->reads[i].name) + (a->reads[i].schema ? strlen(a->reads[i].schema) : 0) + 2;
    for (size_t i = 0; i < a->n_writes; i++)
        n +=
            strlen(a->writes[i].name) + (a->writes[i].schema ? strlen(a->writes[i].schema) : 0) + 2;
    for (size_t i = 0; i < a->n_functions; i++)
        n += strlen(a->functions[i].name) +
             (a->functions[i].schema ? strlen(a->functions[i].schema) : 0) + 2;
    if (a->error)
        n += strlen(a->error) + 1;
    return n;
}

/*
 * Remembers key → a (taking a reference), evicting the least recently used entries beyond
 * the map's bounds. Failing to remember is not an error: the caller has its analysis anyway.
 */
static void map_insert(MemoMap *m, uint64_t hash, const char *key, size_t len, SqlAnalysis *a)
{
    if (m->capacity == 0)
        return;
    size_t charge = sizeof(MemoEntry) + len + analysis_bytes(a);
    if (charge > m->max_bytes / 16)
        return;
    MemoEntry *e = malloc(sizeof *e + len);
    if (!e)
        return;
    *e = (MemoEntry){.hash = hash, .len = len, .charge = charge, .analysis = sqlparse_ref(a)};
    if (len)
        memcpy(e->key, key, len);
    MemoEntry **bucket = &m->buckets[hash & (m->n_buckets - 1)];
    e->chain = *bucket;
    *bucket = e;
    lru_push_newest(m, e);
    m->count++;
    m->bytes += charge;
    while ((m->count > m->capacity || m->bytes > m->max_bytes) && m->oldest != e)
        map_remove(m, m->oldest);
}

static void map_clear(MemoMap *m)
{
    while (m->oldest)
        map_remove(m, m->oldest);
    free(m->buckets);
    m->buckets = NULL;
}

SqlMemo *sqlparse_memo_new(size_t capacity)
{
    SqlMemo *memo = calloc(1, sizeof *memo);
    if (!memo)
        goto fail;
    memo->seed = random_seed();
    if (!map_init(&memo->exact, capacity) || !map_init(&memo->shape, capacity))
        goto fail;
    return memo;
fail:
    sqlparse_memo_free(memo);
    return NULL;
}

void sqlparse_memo_free(SqlMemo *memo)
{
    if (!memo)
        return;
    map_clear(&memo->exact);
    map_clear(&memo->shape);
    free(memo);
}

void sqlparse_memo_stats(const SqlMemo *memo, SqlMemoStats *out)
{
    *out = (SqlMemoStats){0};
    if (!memo)
        return;
    out->exact_hits = memo->exact_hits;
    out->shape_hits = memo->shape_hits;
    out->parses = memo->parses;
    out->entries = memo->exact.count;
}

/*
 * The statement's shape for people: constants replaced by $n (libpg_query's normaliser),
 * cut to NORMALIZED_MAX bytes; the text itself when it does not normalise. Once per shape.
 */
static char *normalize(const char *text, size_t len)
{
    enum { NORMALIZED_MAX = 512 };
    PgQueryNormalizeResult r = pg_query_normalize(text);
    const char *src = r.error || !r.normalized_query ? text : r.normalized_query;
    size_t n = r.error || !r.normalized_query ? len : strlen(src);
    if (n > NORMALIZED_MAX)
        n = NORMALIZED_MAX;
    char *out = malloc(n + 1);
    if (out) {
        memcpy(out, src, n);
        out[n] = 0;
    }
    pg_query_free_normalize_result(r);
    return out;
}

/*
 * Remembers a text's analysis under the text. An analysis found by the scanner's shape is
 * remembered only when the text comes a second time: texts seen once (point reads with a
 * quoted key inlined) would otherwise churn the map and push out the texts that do repeat.
 */
static void remember_text(SqlMemo *memo, uint64_t hash, const char *text, size_t len,
                          SqlAnalysis *a, bool parsed)
{
    if (!parsed) {
        uint64_t *slot = &memo->seen[hash & (MEMO_SEEN_SLOTS - 1)];
        if (*slot != hash) {
            *slot = hash;
            return;
        }
    }
    map_insert(&memo->exact, hash, text, len, a);
}

/* The analysis remembered under a shape, or NULL. */
static SqlAnalysis *shape_lookup(SqlMemo *memo, uint64_t shape_hash, const char *shape,
                                 size_t shape_len)
{
    MemoEntry *e = map_find(&memo->shape, shape_hash, shape, shape_len);
    if (!e)
        return NULL;
    memo->shape_hits++;
    map_touch(&memo->shape, e);
    return sqlparse_ref(e->analysis);
}

/* A text's quick shape (sqlparse_quick_shape). */
typedef struct {
    uint64_t hash;
    size_t len;
    char text[SQLPARSE_QUICK_SHAPE_CAP(SQLPARSE_SHORT_TEXT)];
} QuickShape;

/* Computes the text's quick shape and its hash. False when the text is not plain. */
static bool quick_shape(const SqlMemo *memo, const char *text, size_t len, QuickShape *q)
{
    if (memo->shape.capacity == 0 || len > SQLPARSE_SHORT_TEXT ||
        !sqlparse_quick_shape(text, len, q->text, sizeof q->text, &q->len))
        return false;
    q->hash = hash_bytes(q->text, q->len, memo->seed);
    return true;
}

/*
 * Everything after the memo missed: shape the text with the scanner when the quick shape
 * did not (the scanner also estimates nesting), look that shape up, parse when it misses
 * too, and remember the result under the text and, when it does not depend on a constant's
 * value, under the shape. `quick` is the text's quick shape, already looked up, or NULL.
 */
static SqlAnalysis *analyze_miss(SqlMemo *memo, const char *text, size_t len, uint64_t hash,
                                 const QuickShape *quick)
{
    SqlAnalysis *a = NULL;
    SqlScan scan = {0};
    uint64_t shape_hash = quick ? quick->hash : 0;
    bool shareable = false, parsed = false;
    const char *shape = quick ? quick->text : NULL;
    size_t shape_len = quick ? quick->len : 0;

    bool want_shape = memo && memo->shape.capacity > 0;
    char *buf = malloc(len + 1);
    if (!buf)
        goto done;
    memcpy(buf, text, len);
    buf[len] = '\0';

    /* Short texts cannot nest dangerously deep: they are always parsed (so the answer does
     * not depend on having a memo), and without a memo they skip the scanner. */
    if (!shape && (memo || len > SQLPARSE_SHORT_TEXT)) {
        if (!sqlparse_scan_text(buf, want_shape, &scan))
            goto done;
        if (scan.ok && len > SQLPARSE_SHORT_TEXT && scan.nesting > SQLPARSE_MAX_NESTING) {
            a = sqlparse_too_complex(scan.nesting);
            parsed = true;
            goto remember;
        }
        if (want_shape && scan.ok && scan.shape_usable) {
            shape = scan.shape;
            shape_len = scan.shape_len;
            shape_hash = hash_bytes(shape, shape_len, memo->seed);
            if ((a = shape_lookup(memo, shape_hash, shape, shape_len)))
                goto remember;
        }
    }
    a = sqlparse_parse_text(buf, &shareable);
    if (!a)
        goto done;
    parsed = true;
    if (memo) {
        a->normalized = normalize(buf, len);
        memo->parses++;
    }
    if (shape && shareable)
        map_insert(&memo->shape, shape_hash, shape, shape_len, a);
remember:
    if (memo && a)
        remember_text(memo, hash, text, len, a, parsed);
done:
    sqlparse_scan_clear(&scan);
    free(buf);
    return a;
}

/*
 * The memo's order. A text with a `$` is a driver's parameterised statement: it repeats
 * verbatim, and the text map answers it for the price of a hash. A plain text without one
 * may have its constants inlined (point reads), so it is looked up by its quick shape first:
 * the shape map holds one entry per statement shape and stays in the CPU's caches, while a
 * text map of one-off texts is cache misses that cost more than shaping the text. Texts found
 * by quick shape are never remembered by text. The text map serves the rest: parameterised
 * texts, texts the quick shape declines (it saves the scanner) and analyses that depend on a
 * constant's value.
 */
SqlAnalysis *sqlparse_analyze(SqlMemo *memo, const char *text, size_t len)
{
    if (!text)
        len = 0;
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    if (nul)
        len = (size_t)(nul - text);
    if (!text)
        text = "";
    if (!memo)
        return analyze_miss(NULL, text, len, 0, NULL);

    QuickShape quick;
    bool have_quick = !(len && memchr(text, '$', len)) && quick_shape(memo, text, len, &quick);
    if (have_quick) {
        SqlAnalysis *a = shape_lookup(memo, quick.hash, quick.text, quick.len);
        if (a)
            return a;
    }
    uint64_t hash = hash_bytes(text, len, memo->seed);
    MemoEntry *e = map_find(&memo->exact, hash, text, len);
    if (e) {
        memo->exact_hits++;
        map_touch(&memo->exact, e);
        return sqlparse_ref(e->analysis);
    }
    return analyze_miss(memo, text, len, hash, have_quick ? &quick : NULL);
}

SqlAnalysis *sqlparse_ref(SqlAnalysis *a)
{
    if (a)
        a->refcount_++;
    return a;
}

void sqlparse_release(SqlAnalysis *a)
{
    /* The analysis is one block (see analyze.c's freeze), plus its normalized text. */
    if (a && --a->refcount_ == 0) {
        free(a->normalized);
        free(a);
    }
}

/* Whether this thread holds libpg_query memory (see sqlparse_exit). */
static __thread bool libpg_used;

void sqlparse_note_libpg_used(void)
{
    libpg_used = true;
}

void sqlparse_exit(void)
{
    if (libpg_used && gettid() == getpid()) {
        pg_query_exit();
        libpg_used = false;
    }
}

/* ---- small lookups ---------------------------------------------------------------------- */

typedef struct {
    const char *name;
    char volatility;      /* most volatile over all overloads */
    const char *by_nargs; /* "1:i 2:s" when it depends on the argument count, else NULL */
} BuiltinFunc;

static const BuiltinFunc builtin_funcs[] = {
#include "sqlparse/builtin_volatility.inc"
};

static const BuiltinFunc *builtin_find(const char *name)
{
    if (!name)
        return NULL;
    size_t lo = 0, hi = sizeof builtin_funcs / sizeof builtin_funcs[0];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, builtin_funcs[mid].name);
        if (c == 0)
            return &builtin_funcs[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

char sqlparse_builtin_volatility(const char *name)
{
    const BuiltinFunc *f = builtin_find(name);
    return f ? f->volatility : 0;
}

char sqlparse_builtin_volatility_nargs(const char *name, int nargs)
{
    const BuiltinFunc *f = builtin_find(name);
    if (!f)
        return 0;
    if (nargs < 0 || !f->by_nargs)
        return f->volatility;
    for (const char *p = f->by_nargs; *p;) {
        char *end;
        long n = strtol(p, &end, 10);
        if (end == p || end[0] != ':' || end[1] == '\0')
            break;
        if (n == nargs)
            return end[1];
        p = end + 2;
        while (*p == ' ')
            p++;
    }
    /* No overload takes that many: the call fails anyway. */
    return f->volatility;
}

static bool is_ascii_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

bool sqlparse_is_time_literal(const char *value, size_t len)
{
    static const char *const words[] = {"now", "today", "tomorrow", "yesterday"};
    if (!value)
        return false;
    for (size_t i = 0; i < len;) {
        if (!is_ascii_alpha(value[i])) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < len && is_ascii_alpha(value[j]))
            j++;
        size_t n = j - i;
        if (n >= 3 && n <= 9) {
            char word[10];
            for (size_t k = 0; k < n; k++)
                word[k] = (char)(value[i + k] | 0x20); /* ASCII letters only: lower case */
            word[n] = '\0';
            for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
                if (strcmp(word, words[w]) == 0)
                    return true;
            }
        }
        i = j;
    }
    return false;
}

const char *sqlparse_reason_name(SqlReason reason)
{
    static const char *const names[SQL_REASON_COUNT_] = {
        [SQL_REASON_NONE] = "none",
        [SQL_REASON_NOT_READ] = "not_read",
        [SQL_REASON_MULTI_STATEMENT] = "multi_statement",
        [SQL_REASON_PARSE_ERROR] = "parse_error",
        [SQL_REASON_LOCKING] = "locking",
        [SQL_REASON_VOLATILE_FUNCTION] = "volatile_function",
        [SQL_REASON_SQL_VALUE_FUNCTION] = "sql_value_function",
        [SQL_REASON_SYSTEM_CATALOG] = "system_catalog",
        [SQL_REASON_TEMP_TABLE] = "temp_table",
        [SQL_REASON_MODIFYING_CTE] = "modifying_cte",
        [SQL_REASON_SELECT_INTO] = "select_into",
        [SQL_REASON_TABLESAMPLE] = "tablesample",
        [SQL_REASON_TIME_LITERAL] = "time_literal",
        [SQL_REASON_PARAM_UNSUPPORTED] = "param_unsupported",
        [SQL_REASON_TOO_COMPLEX] = "too_complex",
    };
    if ((unsigned)reason >= SQL_REASON_COUNT_ || !names[reason])
        return "unknown";
    return names[reason];
}

const char *sqlparse_kind_name(SqlKind kind)
{
    switch (kind) {
    case SQL_KIND_READ:
        return "read";
    case SQL_KIND_WRITE:
        return "write";
    case SQL_KIND_TX:
        return "tx";
    case SQL_KIND_SESSION:
        return "session";
    case SQL_KIND_DDL:
        return "ddl";
    case SQL_KIND_OTHER:
        return "other";
    case SQL_KIND_EMPTY:
        return "empty";
    case SQL_KIND_ERROR:
        return "error";
    }
    return "unknown";
}
