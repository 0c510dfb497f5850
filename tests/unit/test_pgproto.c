/*
 * test_pgproto.c — message framing over real captured PostgreSQL streams (fed whole, byte by
 * byte and in random chunks, as sockets deliver them), length limits, the bounds-checked
 * parsers of frontend messages and the builders. The captures in tests/unit/data/ were
 * recorded with tests/unit/data/capture.py from psql and psycopg 3 sessions.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/pgproto.h"

typedef struct {
    uint8_t *data;
    size_t len;
} Blob;

static Blob read_file(const char *path)
{
    Blob b = {0};
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s (run from the repository root)", path);
    fseek(f, 0, SEEK_END);
    b.len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(b.len);
    ck_assert(fread(b.data, 1, b.len, f) == b.len);
    fclose(f);
    return b;
}

/* The messages of a stream as a trivially correct reference split. */
typedef struct {
    size_t n;
    size_t off[20000];
    size_t len[20000];
} Split;

static void reference_split(const Blob *b, size_t start, Split *s)
{
    s->n = 0;
    size_t at = start;
    while (at < b->len) {
        ck_assert(at + 5 <= b->len);
        size_t total = 1 + be32(b->data + at + 1);
        ck_assert(at + total <= b->len);
        s->off[s->n] = at;
        s->len[s->n] = total;
        s->n++;
        at += total;
    }
}

/*
 * Feeds the stream in chunks of sizes from `next_chunk`, framing as the connection does
 * (append, frame the head, consume), reassembling streamed pieces; checks the result equals
 * the reference split byte for byte. Returns how many messages arrived in pieces.
 */
static size_t frame_in_chunks(const Blob *b, size_t start, const Split *ref,
                              size_t (*next_chunk)(size_t), size_t stream_min)
{
    PgFramer fr;
    pg_framer_init(&fr, 1u << 30, stream_min);
    IoBuf in = {0};
    ByteWriter msg = {0};
    size_t at = start, got = 0, streamed = 0;
    bool in_piece = false;
    while (at < b->len || iobuf_len(&in) > 0) {
        if (at < b->len) {
            size_t n = next_chunk(b->len - at);
            if (n > b->len - at)
                n = b->len - at;
            ck_assert(iobuf_append(&in, b->data + at, n));
            at += n;
        }
        for (;;) {
            Frame f;
            pg_framer_next(&fr, iobuf_head(&in), iobuf_len(&in), &f);
            if (f.kind == FRAME_NEED_MORE) {
                ck_assert_msg(at < b->len, "stream ended inside a message");
                break;
            }
            ck_assert_int_ne(f.kind, FRAME_BAD);
            bw_put(&msg, f.p, f.n);
            iobuf_consume(&in, f.n);
            if (f.kind == FRAME_PIECE) {
                if (f.first) {
                    ck_assert(!in_piece);
                    in_piece = true;
                    streamed++;
                }
                if (!f.last)
                    continue;
                in_piece = false;
            }
            ck_assert_uint_lt(got, ref->n);
            ck_assert_uint_eq(msg.len, ref->len[got]);
            ck_assert(memcmp(msg.data, b->data + ref->off[got], msg.len) == 0);
            got++;
            bw_reset(&msg);
            if (iobuf_len(&in) == 0)
                break;
        }
    }
    ck_assert_uint_eq(got, ref->n);
    iobuf_free(&in);
    bw_free(&msg);
    return streamed;
}

static size_t chunk_whole(size_t left)
{
    return left;
}

static size_t chunk_byte(size_t left)
{
    return 1;
}

static unsigned rng_state = 12345;
static size_t chunk_random(size_t left)
{
    rng_state = rng_state * 1103515245u + 12345u;
    unsigned r = (rng_state >> 16) & 0x7fff;
    /* Mostly small reads, sometimes large ones, like a busy socket. */
    return (r % 8 == 0) ? 1 + r % 70000 : 1 + r % 700;
}

static const char *captures[] = {"psql.backend", "psql.frontend", "ext.backend",
                                 "ext.frontend"};

static size_t stream_start(const char *name, const Blob *b)
{
    /* A frontend stream opens with the untyped start-up packet. */
    return strstr(name, "frontend") ? be32(b->data) : 0;
}

START_TEST(captured_streams_frame_identically_in_any_chunking)
{
    char path[256];
    snprintf(path, sizeof path, "tests/unit/data/%s", captures[_i]);
    Blob b = read_file(path);
    size_t start = stream_start(captures[_i], &b);
    static Split ref;
    reference_split(&b, start, &ref);
    ck_assert_uint_gt(ref.n, 5);
    frame_in_chunks(&b, start, &ref, chunk_whole, 16 * 1024);
    frame_in_chunks(&b, start, &ref, chunk_byte, 16 * 1024);
    for (unsigned seed = 1; seed <= 20; seed++) {
        rng_state = seed;
        frame_in_chunks(&b, start, &ref, chunk_random, 16 * 1024);
    }
    /* With a small streaming threshold the big rows really arrive in pieces. */
    rng_state = 99;
    size_t streamed = frame_in_chunks(&b, start, &ref, chunk_random, 64);
    if (strstr(captures[_i], "backend"))
        ck_assert_uint_gt(streamed, 0);
    free(b.data);
}
END_TEST

START_TEST(bad_lengths_are_refused)
{
    static const struct {
        uint8_t bytes[5];
        FrameKind want;
    } cases[] = {
        {{'Q', 0, 0, 0, 3}, FRAME_BAD},          /* below 4 */
        {{'Q', 0, 0, 0, 0}, FRAME_BAD},          /* zero */
        {{'Q', 0xff, 0xff, 0xff, 0xfe}, FRAME_BAD}, /* negative */
        {{'Q', 0x00, 0x10, 0x00, 0x01}, FRAME_BAD}, /* above the 1 MB limit */
        {{'Q', 0x00, 0x10, 0x00, 0x00}, FRAME_NEED_MORE}, /* exactly the limit */
        {{'S', 0, 0, 0, 4}, FRAME_MESSAGE},      /* Sync: just the length */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PgFramer fr;
        pg_framer_init(&fr, 1u << 20, 16);
        Frame f;
        pg_framer_next(&fr, cases[i].bytes, 5, &f);
        ck_assert_msg(f.kind == cases[i].want, "case %zu: kind %d", i, f.kind);
    }
    /* Fewer than five bytes is never a verdict. */
    PgFramer fr;
    pg_framer_init(&fr, 1u << 20, 16);
    Frame f;
    pg_framer_next(&fr, (const uint8_t *)"Q\0\0", 3, &f);
    ck_assert_int_eq(f.kind, FRAME_NEED_MORE);
    ck_assert_uint_eq(f.need, 5);
}
END_TEST

START_TEST(non_streamable_big_message_waits_whole)
{
    PgFramer fr;
    pg_framer_init(&fr, 1u << 20, 16);
    uint8_t head[10] = {'T', 0, 0, 0x10, 0};
    Frame f;
    pg_framer_next(&fr, head, sizeof head, &f);
    ck_assert_int_eq(f.kind, FRAME_NEED_MORE);
    ck_assert_uint_eq(f.need, 1 + 0x1000);
    head[0] = 'D';
    pg_framer_next(&fr, head, sizeof head, &f);
    ck_assert_int_eq(f.kind, FRAME_PIECE);
    ck_assert(f.first && !f.last);
    ck_assert(pg_framer_mid_message(&fr));
}
END_TEST

/* Builds a message body from a list of pieces. */
static size_t build(uint8_t *out, const void *const *pieces, const size_t *lens, size_t n)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + at, pieces[i], lens[i]);
        at += lens[i];
    }
    return at;
}

START_TEST(parse_and_bind_parsers)
{
    uint8_t buf[256];
    const void *p1[] = {"s1\0", "SELECT $1\0", "\0\1", "\0\0\0\x17"};
    size_t l1[] = {3, 10, 2, 4};
    size_t n = build(buf, p1, l1, 4);
    PgParseMsg pm;
    ck_assert(pg_parse_parse(buf, n, &pm));
    ck_assert_str_eq(pm.name, "s1");
    ck_assert_str_eq(pm.query, "SELECT $1");
    ck_assert_uint_eq(pm.query_len, 9);
    ck_assert_uint_eq(pm.n_param_types, 1);
    ck_assert_uint_eq(be32(pm.param_types), 23);
    for (size_t cut = 0; cut < n; cut++)
        ck_assert_msg(!pg_parse_parse(buf, cut, &pm), "truncated Parse at %zu accepted", cut);
    buf[n] = 'x';
    ck_assert(!pg_parse_parse(buf, n + 1, &pm)); /* trailing garbage */

    /* Bind: portal "", stmt "s1", 1 format (binary), 2 params (NULL, "ab"), 1 result fmt. */
    const void *p2[] = {"\0", "s1\0", "\0\1\0\1", "\0\2", "\xff\xff\xff\xff", "\0\0\0\2ab",
                        "\0\1\0\0"};
    size_t l2[] = {1, 3, 4, 2, 4, 6, 4};
    n = build(buf, p2, l2, 7);
    PgBindMsg bm;
    ck_assert(pg_parse_bind(buf, n, &bm));
    ck_assert_str_eq(bm.portal, "");
    ck_assert_str_eq(bm.stmt, "s1");
    ck_assert_uint_eq(bm.n_params, 2);
    ck_assert_int_eq(pg_bind_param_format(&bm, 0), 1);
    ck_assert_int_eq(pg_bind_param_format(&bm, 1), 1);
    ck_assert_uint_eq(bm.params_len, 10);
    ck_assert_uint_eq(bm.n_result_formats, 1);
    for (size_t cut = 0; cut < n; cut++)
        ck_assert_msg(!pg_parse_bind(buf, cut, &bm), "truncated Bind at %zu accepted", cut);
    /* A parameter length below -1, or longer than the message, is refused. */
    buf[10] = 0xff, buf[11] = 0xff, buf[12] = 0xff, buf[13] = 0xfe;
    ck_assert(!pg_parse_bind(buf, n, &bm));
    buf[10] = 0x7f;
    ck_assert(!pg_parse_bind(buf, n, &bm));
}
END_TEST

START_TEST(small_message_parsers)
{
    PgTargetMsg t;
    ck_assert(pg_parse_target((const uint8_t *)"Sname", 6, &t));
    ck_assert_int_eq(t.kind, 'S');
    ck_assert_str_eq(t.name, "name");
    ck_assert(!pg_parse_target((const uint8_t *)"Xname", 6, &t));
    ck_assert(!pg_parse_target((const uint8_t *)"Sname", 5, &t));

    PgExecuteMsg e;
    ck_assert(pg_parse_execute((const uint8_t *)"p\0\0\0\0\x0a", 6, &e));
    ck_assert_str_eq(e.portal, "p");
    ck_assert_uint_eq(e.max_rows, 10);
    ck_assert(!pg_parse_execute((const uint8_t *)"p\0\0\0\0", 5, &e));

    const char *text;
    size_t len;
    ck_assert(pg_parse_query((const uint8_t *)"SELECT 1", 9, &text, &len));
    ck_assert_uint_eq(len, 8);
    ck_assert(!pg_parse_query((const uint8_t *)"SELECT 1", 8, &text, &len));
    ck_assert(!pg_parse_query((const uint8_t *)"SEL\0CT 1", 9, &text, &len));
    ck_assert(!pg_parse_query((const uint8_t *)"", 0, &text, &len));
}
END_TEST

START_TEST(builders_and_error_fields)
{
    ByteWriter w = {0};
    pg_write_error(&w, "FATAL", "08P01", "bad", "why");
    ck_assert(!w.failed);
    ck_assert_int_eq(w.data[0], 'E');
    ck_assert_uint_eq(be32(w.data + 1) + 1, w.len);
    ck_assert_str_eq(pg_error_field(w.data + 5, w.len - 5, 'C'), "08P01");
    ck_assert_str_eq(pg_error_field(w.data + 5, w.len - 5, 'M'), "bad");
    ck_assert_str_eq(pg_error_field(w.data + 5, w.len - 5, 'D'), "why");
    ck_assert_ptr_null(pg_error_field(w.data + 5, w.len - 5, 'H'));
    /* Truncated error payloads never read past the end. */
    for (size_t cut = 0; cut < w.len - 5; cut++)
        (void)pg_error_field(w.data + 5, cut, 'D');
    bw_reset(&w);
    pg_write_ready(&w, 'T');
    ck_assert_uint_eq(w.len, 6);
    ck_assert(memcmp(w.data, "Z\0\0\0\5T", 6) == 0);
    bw_reset(&w);
    pg_write_empty(&w, '1');
    ck_assert(memcmp(w.data, "1\0\0\0\4", 5) == 0);
    bw_free(&w);
}
END_TEST

START_TEST(byte_reader_is_bounded)
{
    ByteReader r;
    br_init(&r, "ab", 2);
    ck_assert_uint_eq(br_u16(&r), ('a' << 8) | 'b');
    ck_assert_uint_eq(br_u8(&r), 0);
    ck_assert(r.failed);
    ck_assert_uint_eq(br_left(&r), 0);
    br_init(&r, "abc", 3);
    ck_assert_ptr_null(br_cstr(&r, NULL)); /* no NUL */
    ck_assert_ptr_null(br_bytes(&r, 1));   /* sticky */
}
END_TEST

static Suite *pgproto_suite(void)
{
    Suite *s = suite_create("pgproto");
    TCase *tc = tcase_create("framing");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, captured_streams_frame_identically_in_any_chunking, 0,
                        (int)(sizeof captures / sizeof captures[0]));
    tcase_add_test(tc, bad_lengths_are_refused);
    tcase_add_test(tc, non_streamable_big_message_waits_whole);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("parsers");
    tcase_add_test(tp, parse_and_bind_parsers);
    tcase_add_test(tp, small_message_parsers);
    tcase_add_test(tp, builders_and_error_fields);
    tcase_add_test(tp, byte_reader_is_bounded);
    suite_add_tcase(s, tp);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(pgproto_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
