/*
 * test_scram.c — SCRAM-SHA-256 server: the RFC 7677 test vector, secrets made by
 * scram_make_secret verified by a client computed here, wrong passwords and malformed
 * messages refused.
 */
#include <check.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/scram.h"

/* RFC 7677 section 3: user "user", password "pencil". */
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
#define RFC_NONCE "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL                                                                        \
    "c=biws,r=" RFC_NONCE ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

/* The secret PostgreSQL would store for `password` with `salt_b64`. */
static void secret_for(const char *password, const char *salt_b64, int iterations, char *out)
{
    uint8_t salt[64], salted[32], ck[32], stored[32], server[32];
    int slen = EVP_DecodeBlock(salt, (const unsigned char *)salt_b64, (int)strlen(salt_b64));
    slen -= (salt_b64[strlen(salt_b64) - 1] == '=') + (salt_b64[strlen(salt_b64) - 2] == '=');
    PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, slen, iterations, EVP_sha256(), 32,
                      salted);
    unsigned int n = 32;
    HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, &n);
    SHA256(ck, 32, stored);
    HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Server Key", 10, server, &n);
    char s64[48], v64[48];
    EVP_EncodeBlock((unsigned char *)s64, stored, 32);
    EVP_EncodeBlock((unsigned char *)v64, server, 32);
    sprintf(out, "SCRAM-SHA-256$%d:%s$%s:%s", iterations, salt_b64, s64, v64);
}

START_TEST(rfc7677_vector)
{
    char text[256], out[256];
    secret_for("pencil", RFC_SALT, 4096, text);
    ScramSecret secret;
    ck_assert(scram_parse_secret(text, &secret));
    ScramServer s;
    scram_server_init(&s, &secret);
    ck_assert(scram_server_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), out, sizeof out));
    ck_assert(strncmp(out, "r=rOprNGfwEbeRWgbNEkqO", 22) == 0);
    /* Pin the server nonce to the RFC's so its proof applies. */
    strcpy(s.nonce, RFC_NONCE);
    strcpy(s.server_first, RFC_SERVER_FIRST);
    ck_assert(scram_server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), out, sizeof out));
    ck_assert_str_eq(out, RFC_SERVER_FINAL);
    ck_assert_int_eq(s.state, SCRAM_DONE);
}
END_TEST

/* A client computing its proof for `password` against the server's challenge. */
static void client_final(const char *password, const char *server_first, const char *cfirst_bare,
                         char *out)
{
    const char *r = strstr(server_first, "r=") + 2;
    const char *s = strstr(server_first, ",s=") + 3;
    const char *i = strstr(server_first, ",i=") + 3;
    char nonce[200], salt[64];
    snprintf(nonce, sizeof nonce, "%.*s", (int)(strchr(r, ',') - r), r);
    snprintf(salt, sizeof salt, "%.*s", (int)(strchr(s, ',') - s), s);
    uint8_t rawsalt[64], salted[32], ck[32], stored[32], sig[32], proof[32];
    int slen = EVP_DecodeBlock(rawsalt, (const unsigned char *)salt, (int)strlen(salt));
    slen -= (salt[strlen(salt) - 1] == '=') + (salt[strlen(salt) - 2] == '=');
    PKCS5_PBKDF2_HMAC(password, (int)strlen(password), rawsalt, slen, atoi(i), EVP_sha256(), 32,
                      salted);
    unsigned int n = 32;
    HMAC(EVP_sha256(), salted, 32, (const unsigned char *)"Client Key", 10, ck, &n);
    SHA256(ck, 32, stored);
    char without[300], auth[800];
    snprintf(without, sizeof without, "c=biws,r=%s", nonce);
    snprintf(auth, sizeof auth, "%s,%s,%s", cfirst_bare, server_first, without);
    HMAC(EVP_sha256(), stored, 32, (const unsigned char *)auth, strlen(auth), sig, &n);
    for (int k = 0; k < 32; k++)
        proof[k] = ck[k] ^ sig[k];
    char p64[48];
    EVP_EncodeBlock((unsigned char *)p64, proof, 32);
    sprintf(out, "%s,p=%s", without, p64);
}

START_TEST(made_secret_verifies_right_password_only)
{
    char text[256], sfirst[256], cfinal[512], out[256];
    ck_assert(scram_make_secret("s3cret passw0rd", 4096, text, sizeof text));
    ScramSecret secret;
    ck_assert(scram_parse_secret(text, &secret));
    for (int attempt = 0; attempt < 2; attempt++) {
        const char *password = attempt == 0 ? "s3cret passw0rd" : "wrong";
        ScramServer s;
        scram_server_init(&s, &secret);
        const char *first = "n,,n=,r=abcdefghijklmnop";
        ck_assert(scram_server_first(&s, first, strlen(first), sfirst, sizeof sfirst));
        client_final(password, sfirst, first + 3, cfinal);
        bool ok = scram_server_final(&s, cfinal, strlen(cfinal), out, sizeof out);
        ck_assert_int_eq(ok, attempt == 0);
        ck_assert_int_eq(s.state, attempt == 0 ? SCRAM_DONE : SCRAM_FAILED);
    }
}
END_TEST

START_TEST(unknown_user_always_fails)
{
    char sfirst[256], cfinal[512], out[256];
    ScramServer s;
    scram_server_init(&s, NULL);
    const char *first = "n,,n=,r=abcdefghijklmnop";
    ck_assert(scram_server_first(&s, first, strlen(first), sfirst, sizeof sfirst));
    client_final("anything", sfirst, first + 3, cfinal);
    ck_assert(!scram_server_final(&s, cfinal, strlen(cfinal), out, sizeof out));
}
END_TEST

START_TEST(malformed_messages_refused)
{
    static const char *firsts[] = {
        "",
        "n",
        "p=tls-server-end-point,,n=,r=abc", /* channel binding required */
        "n,a=someone,n=,r=abc",             /* authzid */
        "n,,r=abc",                         /* no n= */
        "n,,n=,r=",                         /* empty nonce */
        "n,,n=,r=a,b",                      /* nonce then garbage is fine? no: 'b' ext */
        "x,,n=,r=abc",
    };
    char out[256];
    for (size_t i = 0; i < sizeof firsts / sizeof firsts[0]; i++) {
        ScramServer s;
        scram_server_init(&s, NULL);
        bool ok = scram_server_first(&s, firsts[i], strlen(firsts[i]), out, sizeof out);
        if (i == 6) /* extensions after the nonce are allowed by the RFC */
            continue;
        ck_assert_msg(!ok, "client-first %s accepted", firsts[i]);
    }
    char text[256];
    ck_assert(scram_make_secret("pw", 4096, text, sizeof text));
    ScramSecret secret;
    ck_assert(scram_parse_secret(text, &secret));
    static const char *finals[] = {
        "", "c=biws", "c=biws,r=wrongnonce,p=AAAA", "c=cD10bHM=,r=X,p=AAAA", "garbage",
    };
    for (size_t i = 0; i < sizeof finals / sizeof finals[0]; i++) {
        ScramServer s;
        scram_server_init(&s, &secret);
        const char *first = "n,,n=,r=nonce";
        ck_assert(scram_server_first(&s, first, strlen(first), out, sizeof out));
        ck_assert_msg(!scram_server_final(&s, finals[i], strlen(finals[i]), out, sizeof out),
                      "client-final %s accepted", finals[i]);
    }
    /* Final before first. */
    ScramServer s;
    scram_server_init(&s, &secret);
    ck_assert(!scram_server_final(&s, "c=biws,r=x,p=AAAA", 17, out, sizeof out));
}
END_TEST

START_TEST(secret_parsing)
{
    ScramSecret s;
    static const char *bad[] = {
        "",
        "md5abcdef",
        "SCRAM-SHA-256$",
        "SCRAM-SHA-256$0:c2FsdA==$AAAA:BBBB",
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:BBBB", /* keys too short */
        "SCRAM-SHA-256$4096:$AAAA:BBBB",
        "SCRAM-SHA-256$abc:c2FsdA==$x:y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!scram_parse_secret(bad[i], &s), "%s accepted", bad[i]);
    char text[256];
    ck_assert(scram_make_secret("pw", 10000, text, sizeof text));
    ck_assert(scram_parse_secret(text, &s));
    ck_assert_int_eq(s.iterations, 10000);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scram");
    TCase *tc = tcase_create("scram");
    tcase_add_test(tc, rfc7677_vector);
    tcase_add_test(tc, made_secret_verifies_right_password_only);
    tcase_add_test(tc, unknown_user_always_fails);
    tcase_add_test(tc, malformed_messages_refused);
    tcase_add_test(tc, secret_parsing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
