/*
 * test_cachekeys.c — cache keys: every ingredient matters, ingredients cannot run into each
 * other, and fixed vectors pin the serialisation (changing it must bump
 * CACHEKEY_FORMAT_VERSION and these vectors together).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "cachekeys/cachekeys.h"

/* A complete, ordinary set of ingredients that each case mutates one field of. */
typedef struct {
    CacheKeySetting settings[3];
    CacheKeySession session;
    uint32_t param_types[2];
    int16_t param_formats[2];
    CacheKeyParam params[2];
    int16_t result_formats[1];
    CacheKeyTable tables[2];
    CacheKeyQuery query;
} Fixture;

static void fixture_init(Fixture *f)
{
    memset(f, 0, sizeof *f);
    f->settings[0] = (CacheKeySetting){"datestyle", "ISO, MDY"};
    f->settings[1] = (CacheKeySetting){"search_path", "\"$user\", public"};
    f->settings[2] = (CacheKeySetting){"timezone", "UTC"};
    f->session = (CacheKeySession){"shop", "alice", "", f->settings, 3};
    f->param_types[0] = 23;
    f->param_types[1] = 25;
    f->param_formats[0] = 0;
    f->param_formats[1] = 1;
    f->params[0] = (CacheKeyParam){(const unsigned char *)"42", 2};
    f->params[1] = (CacheKeyParam){(const unsigned char *)"abc", 3};
    f->result_formats[0] = 1;
    f->tables[0] = (CacheKeyTable){"orders", 7};
    f->tables[1] = (CacheKeyTable){"users", 1700000000000001ull};
    const char *text = "SELECT * FROM orders JOIN users USING (uid) WHERE id = $1 AND n = $2";
    f->query = (CacheKeyQuery){CACHEKEY_EXTENDED, text,          strlen(text),
                               f->param_types,    2,             f->param_formats,
                               f->params,         2,             f->result_formats,
                               1,                 f->tables,     2,
                               3};
}

static void key_of(const Fixture *f, CacheDigest *out)
{
    CacheDigest s;
    cachekey_session(&f->session, &s);
    cachekey_compute(&s, &f->query, out);
}

static char *hex_of(const Fixture *f)
{
    static char hex[CACHEKEY_HEX_LEN + 1];
    CacheDigest d;
    key_of(f, &d);
    cachekey_hex(&d, hex);
    return hex;
}

typedef void (*Mutation)(Fixture *f);

static void m_database(Fixture *f) { f->session.database = "shop2"; }
static void m_user(Fixture *f) { f->session.user = "bob"; }
static void m_role(Fixture *f) { f->session.role = "admin"; }
static void m_setting_value(Fixture *f) { f->settings[2].value = "Europe/Paris"; }
static void m_setting_name(Fixture *f) { f->settings[0].name = "datestyle2"; }
static void m_setting_dropped(Fixture *f) { f->session.n_settings = 2; }
static void m_protocol(Fixture *f) { f->query.protocol = CACHEKEY_SIMPLE; }
static void m_text(Fixture *f) { f->query.text_len--; }
static void m_param_type(Fixture *f) { f->param_types[0] = 20; }
static void m_param_types_count(Fixture *f) { f->query.n_param_types = 1; }
static void m_param_format(Fixture *f) { f->param_formats[1] = 0; }
static void m_param_value(Fixture *f) { f->params[0].data = (const unsigned char *)"43"; }
static void m_param_null(Fixture *f) { f->params[1].len = -1; }
static void m_param_empty(Fixture *f) { f->params[1].len = 0; }
static void m_result_format(Fixture *f) { f->result_formats[0] = 0; }
static void m_result_formats_none(Fixture *f) { f->query.n_result_formats = 0; }
static void m_table_version(Fixture *f) { f->tables[0].version = 8; }
static void m_table_name(Fixture *f) { f->tables[1].name = "users2"; }
static void m_table_dropped(Fixture *f) { f->query.n_tables = 1; }
static void m_epoch(Fixture *f) { f->query.epoch = 4; }

static const struct {
    const char *name;
    Mutation mutate;
} mutations[] = {
    {"database", m_database},
    {"user", m_user},
    {"role", m_role},
    {"setting value", m_setting_value},
    {"setting name", m_setting_name},
    {"setting dropped", m_setting_dropped},
    {"protocol", m_protocol},
    {"text", m_text},
    {"parameter type", m_param_type},
    {"parameter type count", m_param_types_count},
    {"parameter format", m_param_format},
    {"parameter value", m_param_value},
    {"parameter NULL", m_param_null},
    {"parameter empty vs value", m_param_empty},
    {"result format", m_result_format},
    {"result formats absent", m_result_formats_none},
    {"table version", m_table_version},
    {"table name", m_table_name},
    {"table dropped", m_table_dropped},
    {"epoch", m_epoch},
};

START_TEST(each_ingredient_changes_the_key)
{
    Fixture base, f;
    fixture_init(&base);
    CacheDigest k0, k1;
    key_of(&base, &k0);
    fixture_init(&f);
    mutations[_i].mutate(&f);
    key_of(&f, &k1);
    ck_assert_msg(memcmp(k0.bytes, k1.bytes, CACHEKEY_LEN) != 0, "changing the %s kept the key",
                  mutations[_i].name);
}
END_TEST

START_TEST(same_ingredients_same_key)
{
    Fixture a, b;
    fixture_init(&a);
    fixture_init(&b);
    char first[CACHEKEY_HEX_LEN + 1];
    strcpy(first, hex_of(&a));
    ck_assert_str_eq(first, hex_of(&b));
}
END_TEST

/* "ab"+"c" must differ from "a"+"bc" wherever two strings sit side by side. */
START_TEST(ingredients_do_not_run_into_each_other)
{
    CacheDigest d1, d2;
    CacheKeySession s1 = {"ab", "c", "", NULL, 0}, s2 = {"a", "bc", "", NULL, 0};
    cachekey_session(&s1, &d1);
    cachekey_session(&s2, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    CacheKeySession u1 = {"db", "ab", "c", NULL, 0}, u2 = {"db", "a", "bc", NULL, 0};
    cachekey_session(&u1, &d1);
    cachekey_session(&u2, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    CacheKeySetting x1[] = {{"ab", "c"}}, x2[] = {{"a", "bc"}};
    CacheKeySession v1 = {"db", "u", "", x1, 1}, v2 = {"db", "u", "", x2, 1};
    cachekey_session(&v1, &d1);
    cachekey_session(&v2, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    /* One setting "a=b,c=d" vs two settings. */
    CacheKeySetting y1[] = {{"a", "b"}, {"c", "d"}}, y2[] = {{"a", "b\x05\x00\x00\x00\x01c"}};
    CacheKeySession w1 = {"db", "u", "", y1, 2}, w2 = {"db", "u", "", y2, 1};
    cachekey_session(&w1, &d1);
    cachekey_session(&w2, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    /* Parameters "ab","c" vs "a","bc"; tables likewise. */
    CacheDigest sess;
    cachekey_session(&s1, &sess);
    int16_t fmts[2] = {0, 0};
    CacheKeyParam p1[2] = {{(const unsigned char *)"ab", 2}, {(const unsigned char *)"c", 1}};
    CacheKeyParam p2[2] = {{(const unsigned char *)"a", 1}, {(const unsigned char *)"bc", 2}};
    CacheKeyQuery q = {CACHEKEY_EXTENDED, "SELECT $1, $2", 13, NULL, 0, fmts, p1, 2,
                       NULL, 0, NULL, 0, 0};
    cachekey_compute(&sess, &q, &d1);
    q.params = p2;
    cachekey_compute(&sess, &q, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    CacheKeyTable t1[2] = {{"ab", 1}, {"c", 1}}, t2[2] = {{"a", 1}, {"bc", 1}};
    CacheKeyQuery r = {CACHEKEY_SIMPLE, "SELECT 1", 8, NULL, 0, NULL, NULL, 0,
                       NULL, 0, t1, 2, 0};
    cachekey_compute(&sess, &r, &d1);
    r.tables = t2;
    cachekey_compute(&sess, &r, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);

    /* Text "SELECT 1" with table "x" vs text "SELECT 1x" with no table. */
    CacheKeyTable t3[1] = {{"x", 0}};
    CacheKeyQuery a = {CACHEKEY_SIMPLE, "SELECT 1", 8, NULL, 0, NULL, NULL, 0, NULL, 0, t3, 1, 0};
    CacheKeyQuery b = {CACHEKEY_SIMPLE, "SELECT 1x", 9, NULL, 0, NULL, NULL, 0, NULL, 0, NULL,
                       0, 0};
    cachekey_compute(&sess, &a, &d1);
    cachekey_compute(&sess, &b, &d2);
    ck_assert(memcmp(d1.bytes, d2.bytes, CACHEKEY_LEN) != 0);
}
END_TEST

/* Fixed vectors: these pin format version 1. */
START_TEST(fixed_vectors)
{
    Fixture f;
    fixture_init(&f);
    ck_assert_int_eq(CACHEKEY_FORMAT_VERSION, 1);
    ck_assert_str_eq(hex_of(&f),
                     "21efbd94bc82f70ae1e161d0826ff5f946ad883a72ecc11024e99860c4ac6d1d");

    CacheKeySession s = {"postgres", "postgres", "", NULL, 0};
    CacheDigest sd, d;
    char hex[CACHEKEY_HEX_LEN + 1];
    cachekey_session(&s, &sd);
    cachekey_hex(&sd, hex);
    ck_assert_str_eq(hex, "ca46699135f8af4e54add17473aa0b7ef195fbaeda4bcc6e3bab0b830cf50f13");
    CacheKeyQuery q = {CACHEKEY_SIMPLE, "SELECT 1", 8, NULL, 0, NULL, NULL, 0, NULL, 0, NULL,
                       0, 0};
    cachekey_compute(&sd, &q, &d);
    cachekey_hex(&d, hex);
    ck_assert_str_eq(hex, "5a2de0d0ab951b8b0608cafb1db84fff2cfa35845a01fc3eae64874be23bcf0f");
}
END_TEST

START_TEST(hex_is_lower_case_64_chars)
{
    CacheDigest d;
    for (int i = 0; i < CACHEKEY_LEN; i++)
        d.bytes[i] = (unsigned char)(i * 37 + 11);
    char hex[CACHEKEY_HEX_LEN + 1];
    cachekey_hex(&d, hex);
    ck_assert_uint_eq(strlen(hex), 64);
    ck_assert_str_eq(hex, "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186");
}
END_TEST

static Suite *cachekeys_suite(void)
{
    Suite *s = suite_create("cachekeys");
    TCase *tc = tcase_create("keys");
    tcase_add_loop_test(tc, each_ingredient_changes_the_key, 0,
                        (int)(sizeof mutations / sizeof mutations[0]));
    tcase_add_test(tc, same_ingredients_same_key);
    tcase_add_test(tc, ingredients_do_not_run_into_each_other);
    tcase_add_test(tc, fixed_vectors);
    tcase_add_test(tc, hex_is_lower_case_64_chars);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(cachekeys_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
