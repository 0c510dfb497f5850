/*
 * sqlparse_bench.c — what statement analysis costs, to choose and to keep honest: libpg_query's
 * JSON tree through jansson versus its protobuf tree through protobuf-c (both fully walked),
 * the scanner alone, and sqlparse_analyze itself: full parse, memo hit by shape, memo hit by
 * exact text. Numbers are in docs/SQLPARSE.md. Not a test; build and run by hand:
 *
 *   gcc -O2 -D_GNU_SOURCE -I. tests/bench/sqlparse_bench.c sqlparse/?*.c \
 *       $(pkg-config --cflags --libs jansson) -lpg_query -o /tmp/sqlparse_bench
 *   /tmp/sqlparse_bench [iterations]
 */
#include "sqlparse/sqlparse.h"

#include <jansson.h>
#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A web application's mix: point lookups, joins, a report, writes, session and tx noise. */
static const char *const statements[] = {
    "SELECT * FROM users WHERE id = 42",
    "SELECT id, name, email FROM users WHERE email = 'a@example.com' AND active",
    "SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
    "WHERE o.created_at > '2024-01-01' ORDER BY o.created_at DESC LIMIT 50",
    "SELECT p.*, (SELECT count(*) FROM reviews r WHERE r.product_id = p.id) AS n FROM products p "
    "WHERE p.category_id IN (1, 2, 3) AND p.price BETWEEN 10 AND 100",
    "WITH recent AS (SELECT customer_id, sum(total) AS s FROM orders WHERE created_at > $1 "
    "GROUP BY customer_id) SELECT c.name, r.s FROM recent r JOIN customers c "
    "ON c.id = r.customer_id ORDER BY r.s DESC LIMIT 10",
    "SELECT u.id, array_agg(t.name ORDER BY t.name) FROM users u LEFT JOIN user_tags ut "
    "ON ut.user_id = u.id LEFT JOIN tags t ON t.id = ut.tag_id GROUP BY u.id HAVING count(*) > 2",
    "SELECT lower(name), length(name) FROM users WHERE id = ANY($1::int[])",
    "SELECT \"Id\", \"Title\" FROM \"Posts\" WHERE \"AuthorId\" = $1 ORDER BY \"CreatedAt\" "
    "DESC OFFSET $2 LIMIT $3",
    "SELECT d.name, count(e.id), avg(e.salary), rank() OVER (ORDER BY avg(e.salary) DESC) "
    "FROM departments d LEFT JOIN employees e ON e.department_id = d.id "
    "WHERE d.active AND e.hired_at < '2023-06-30' GROUP BY d.name",
    "SELECT * FROM accounts WHERE id = 7 FOR UPDATE",
    "INSERT INTO events (user_id, kind, payload) VALUES ($1, $2, $3) RETURNING id",
    "INSERT INTO counters (k, v) VALUES ('hits', 1) ON CONFLICT (k) DO UPDATE SET v = "
    "counters.v + 1",
    "UPDATE accounts SET balance = balance - 100 WHERE id = 7",
    "DELETE FROM sessions WHERE expires_at < now()",
    "BEGIN",
    "COMMIT",
    "SET search_path TO app, public",
    "SELECT 1",
};
#define N_STATEMENTS (sizeof statements / sizeof statements[0])

/* CPU time of this thread: other load on the machine costs wall time, not this. */
static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static unsigned long sink; /* keeps the optimiser from dropping work */

/* Generic JSON walk: every object and array, noting relation names. */
static void walk_json(json_t *j)
{
    const char *key;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, key, v)
        {
            if (strcmp(key, "relname") == 0)
                sink += json_string_length(v);
            walk_json(v);
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) walk_json(v);
    }
}

/* Generic protobuf walk through the descriptors, noting relation names. */
static void walk_pb(const ProtobufCMessage *m)
{
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (d == &pg_query__node__descriptor) {
        const PgQuery__Node *n = (const PgQuery__Node *)m;
        if (n->node_case != PG_QUERY__NODE__NODE__NOT_SET)
            walk_pb((const ProtobufCMessage *)n->range_var);
        return;
    }
    if (d == &pg_query__range_var__descriptor)
        sink += strlen(((const PgQuery__RangeVar *)m)->relname);
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
            for (size_t k = 0; k < n; k++)
                walk_pb(v[k]);
        } else {
            const ProtobufCMessage *sub =
                *(const ProtobufCMessage *const *)(const void *)(base + f->offset);
            if (sub)
                walk_pb(sub);
        }
    }
}

/* The bump allocator idea of sqlparse/arena.c, reduced to one fixed block. */
typedef struct {
    unsigned char *buf;
    size_t used, cap;
} Bump;

static void *bump_alloc(void *data, size_t size)
{
    Bump *b = data;
    size = (size + 15) & ~(size_t)15;
    if (size > b->cap - b->used)
        return NULL;
    void *p = b->buf + b->used;
    b->used += size;
    return p;
}

static void bump_free(void *data, void *ptr)
{
    (void)data;
    (void)ptr;
}

static unsigned char bump_buf[4 << 20];

typedef enum {
    M_JSON_PARSE, /* pg_query_parse alone */
    M_JSON_FULL,  /* + json_loads + walk */
    M_PB_PARSE,   /* pg_query_parse_protobuf alone */
    M_PB_FULL,    /* + unpack (malloc) + walk */
    M_PB_ARENA,   /* + unpack (bump allocator) + walk */
    M_SCAN,       /* pg_query_scan + unpack */
    M_ANALYZE,    /* sqlparse_analyze without memo */
} Mode;

static void run_once(Mode mode, const char *sql)
{
    switch (mode) {
    case M_JSON_PARSE: {
        PgQueryParseResult r = pg_query_parse(sql);
        sink += r.parse_tree ? strlen(r.parse_tree) : 0;
        pg_query_free_parse_result(r);
        break;
    }
    case M_JSON_FULL: {
        PgQueryParseResult r = pg_query_parse(sql);
        json_t *j = r.error ? NULL : json_loads(r.parse_tree, 0, NULL);
        if (j)
            walk_json(j);
        json_decref(j);
        pg_query_free_parse_result(r);
        break;
    }
    case M_PB_PARSE: {
        PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
        sink += r.parse_tree.len;
        pg_query_free_protobuf_parse_result(r);
        break;
    }
    case M_PB_FULL: {
        PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
        PgQuery__ParseResult *t = pg_query__parse_result__unpack(
            NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
        if (t)
            walk_pb(&t->base);
        pg_query__parse_result__free_unpacked(t, NULL);
        pg_query_free_protobuf_parse_result(r);
        break;
    }
    case M_PB_ARENA: {
        PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
        Bump b = {bump_buf, 0, sizeof bump_buf};
        ProtobufCAllocator al = {bump_alloc, bump_free, &b};
        PgQuery__ParseResult *t = pg_query__parse_result__unpack(
            &al, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
        if (t)
            walk_pb(&t->base);
        pg_query_free_protobuf_parse_result(r);
        break;
    }
    case M_SCAN: {
        PgQueryScanResult r = pg_query_scan(sql);
        Bump b = {bump_buf, 0, sizeof bump_buf};
        ProtobufCAllocator al = {bump_alloc, bump_free, &b};
        PgQuery__ScanResult *s =
            pg_query__scan_result__unpack(&al, r.pbuf.len, (const uint8_t *)r.pbuf.data);
        sink += s ? s->n_tokens : 0;
        pg_query_free_scan_result(r);
        break;
    }
    case M_ANALYZE: {
        SqlAnalysis *a = sqlparse_analyze(NULL, sql, strlen(sql));
        sink += a ? a->n_reads : 0;
        sqlparse_release(a);
        break;
    }
    }
}

/* Best of three rounds, in ns per statement: other load on the machine only adds. */
static double measure(Mode mode, int iterations)
{
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        for (int it = 0; it < iterations; it++) {
            for (size_t i = 0; i < N_STATEMENTS; i++)
                run_once(mode, statements[i]);
        }
        double per = (now_ns() - t0) / ((double)iterations * N_STATEMENTS);
        if (per < best)
            best = per;
    }
    return best;
}

/* Memo hits: the same statements again and again (plain ones by quick shape, the rest by
 * text). */
static double measure_exact_hits(int iterations)
{
    SqlMemo *memo = sqlparse_memo_new(1024);
    size_t lens[N_STATEMENTS];
    for (size_t i = 0; i < N_STATEMENTS; i++) {
        lens[i] = strlen(statements[i]);
        sqlparse_release(sqlparse_analyze(memo, statements[i], lens[i]));
    }
    double best = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        for (int it = 0; it < iterations * 50; it++) {
            for (size_t i = 0; i < N_STATEMENTS; i++) {
                SqlAnalysis *a = sqlparse_analyze(memo, statements[i], lens[i]);
                sink += a->n_reads;
                sqlparse_release(a);
            }
        }
        double per = (now_ns() - t0) / ((double)iterations * 50 * N_STATEMENTS);
        if (per < best)
            best = per;
    }
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    if (st.parses != N_STATEMENTS)
        fprintf(stderr, "unexpected: %llu parses\n", (unsigned long long)st.parses);
    sqlparse_memo_free(memo);
    return best;
}

/* Memo hits by shape: every text new (another constant), every shape known. */
static double measure_shape_hits(int n_texts, double *full_per)
{
    static const char *const forms[][2] = {
        {"SELECT * FROM users WHERE id = ", ""},
        {"SELECT o.id, o.total, c.name FROM orders o JOIN customers c ON c.id = o.customer_id "
         "WHERE o.customer_id = ",
         " AND o.created_at > '2024-01-01' ORDER BY o.created_at DESC LIMIT 50"},
        {"UPDATE accounts SET balance = balance - ", " WHERE id = 7"},
    };
    size_t n_forms = sizeof forms / sizeof forms[0];
    char **texts = malloc((size_t)n_texts * sizeof *texts);
    for (int i = 0; i < n_texts; i++) {
        char buf[512];
        const char *const *f = forms[(size_t)i % n_forms];
        snprintf(buf, sizeof buf, "%s%d%s", f[0], i, f[1]);
        texts[i] = strdup(buf);
    }
    /* Without a memo: each text parsed. */
    int n_full = n_texts / 10;
    *full_per = 1e30;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ns();
        for (int i = 0; i < n_full; i++) {
            SqlAnalysis *a = sqlparse_analyze(NULL, texts[i], strlen(texts[i]));
            sink += a->n_reads;
            sqlparse_release(a);
        }
        double per = (now_ns() - t0) / n_full;
        if (per < *full_per)
            *full_per = per;
    }

    SqlMemo *memo = sqlparse_memo_new(4096);
    double t0 = now_ns();
    for (int i = 0; i < n_texts; i++) {
        SqlAnalysis *a = sqlparse_analyze(memo, texts[i], strlen(texts[i]));
        sink += a->n_reads;
        sqlparse_release(a);
    }
    double per = (now_ns() - t0) / n_texts;
    SqlMemoStats st;
    sqlparse_memo_stats(memo, &st);
    printf("  shape run: %d texts, %llu shape hits, %llu parses\n", n_texts,
           (unsigned long long)st.shape_hits, (unsigned long long)st.parses);
    sqlparse_memo_free(memo);
    for (int i = 0; i < n_texts; i++)
        free(texts[i]);
    free(texts);
    return per;
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 2000;
    if (iterations < 1)
        iterations = 1;
    printf("sqlparse bench: %zu statements x %d iterations, best of 3, CPU ns per statement\n",
           N_STATEMENTS, iterations);
    static const struct {
        Mode mode;
        const char *what;
    } rows[] = {
        {M_JSON_PARSE, "pg_query_parse (JSON text only)"},
        {M_JSON_FULL, "JSON: parse + jansson load + walk + free"},
        {M_PB_PARSE, "pg_query_parse_protobuf (bytes only)"},
        {M_PB_FULL, "protobuf: parse + unpack(malloc) + walk + free"},
        {M_PB_ARENA, "protobuf: parse + unpack(arena) + walk"},
        {M_SCAN, "scanner: pg_query_scan + unpack(arena)"},
        {M_ANALYZE, "sqlparse_analyze, no memo (full analysis)"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        printf("  %-48s %9.0f\n", rows[i].what, measure(rows[i].mode, iterations));
    double full;
    double shape = measure_shape_hits(iterations * 30, &full);
    printf("  %-48s %9.0f\n", "sqlparse_analyze, no memo, 3 forms", full);
    printf("  %-48s %9.0f\n", "memo: new text, known shape (scan + lookup)", shape);
    printf("  %-48s %9.1f\n", "memo: repeated text (quick shape or text)", measure_exact_hits(iterations));
    sqlparse_exit();
    return sink == 0;
}
