/*
 * fuzz_scram.c — libFuzzer target for the admin console's SCRAM-SHA-256 server:
 * scram_server_first() and scram_server_final() on arbitrary client messages, and
 * scram_parse_secret() on arbitrary secrets.
 *
 * Input: byte 0 flags, then client-first "|NEXT|" client-final [ "|NEXT|" secret ].
 *   flags bit 0  the user is unknown (no secret)
 *         bit 1  the third part is parsed as the secret (else the secret of "pencil")
 * In client-final, "@N" is replaced by the nonce the server chose (it is random, so an input
 * cannot contain it), and "@P" by the correct proof for the password "pencil" over what
 * precedes ",p=": without them the exchange could never get past the nonce check.
 */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/scram.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP      "|NEXT|"
#define PASSWORD "pencil"

static ScramSecret pencil;
static uint8_t client_key[SCRAM_KEY_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char text[256];
    if (!scram_make_secret(PASSWORD, 4096, text, sizeof text) || !scram_parse_secret(text, &pencil))
        abort();
    /* ClientKey = HMAC(SaltedPassword, "Client Key"), what a client derives. */
    uint8_t salt[64], salted[SCRAM_KEY_LEN];
    int n =
        EVP_DecodeBlock(salt, (const unsigned char *)pencil.salt_b64, (int)strlen(pencil.salt_b64));
    size_t pad = strlen(pencil.salt_b64) >= 2 && pencil.salt_b64[strlen(pencil.salt_b64) - 1] == '='
                     ? (pencil.salt_b64[strlen(pencil.salt_b64) - 2] == '=' ? 2 : 1)
                     : 0;
    if (n < 0 || !PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), salt, n - (int)pad,
                                    pencil.iterations, EVP_sha256(), sizeof salted, salted))
        abort();
    unsigned int len = 0;
    HMAC(EVP_sha256(), salted, sizeof salted, (const unsigned char *)"Client Key", 10, client_key,
         &len);
    return 0;
}

/* Copies src into out replacing "@N" by the nonce and "@P" by the proof over what
 * precedes ",p=" in the result so far. Returns the length, or 0 when out is too small. */
static size_t expand(const ScramServer *s, const uint8_t *src, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char add[128];
        size_t an = 0;
        if (i + 1 < n && src[i] == '@' && src[i + 1] == 'N') {
            an = (size_t)snprintf(add, sizeof add, "%s", s->nonce);
            i++;
        } else if (i + 1 < n && src[i] == '@' && src[i + 1] == 'P') {
            /* AuthMessage = client-first-bare "," server-first "," final-without-proof */
            const char *p = o >= 3 ? memmem(out, o, ",p=", 3) : NULL;
            size_t without = p ? (size_t)(p - out) : o;
            char auth[4096];
            int al = snprintf(auth, sizeof auth, "%s,%s,%.*s", s->client_first_bare,
                              s->server_first, (int)without, out);
            if (al < 0 || (size_t)al >= sizeof auth)
                return 0;
            uint8_t stored[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
            SHA256(client_key, sizeof client_key, stored);
            unsigned int sl = 0;
            HMAC(EVP_sha256(), stored, sizeof stored, (const unsigned char *)auth, (size_t)al, sig,
                 &sl);
            for (int k = 0; k < SCRAM_KEY_LEN; k++)
                proof[k] = client_key[k] ^ sig[k];
            an = (size_t)EVP_EncodeBlock((unsigned char *)add, proof, sizeof proof);
            i++;
        } else {
            add[0] = (char)src[i];
            an = 1;
        }
        if (o + an >= cap)
            return 0;
        memcpy(out + o, add, an);
        o += an;
    }
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 1;
    size_t left = size - 1;
    const uint8_t *parts[3] = {p, NULL, NULL};
    size_t lens[3] = {left, 0, 0};
    int n = 1;
    for (size_t i = 0; n < 3 && i + 6 <= left; i++)
        if (memcmp(p + i, SEP, 6) == 0) {
            lens[n - 1] = (size_t)(p + i - parts[n - 1]);
            parts[n] = p + i + 6;
            lens[n] = left - (i + 6);
            n++;
            i += 5;
        }

    ScramSecret secret = pencil;
    if ((flags & 2) && n == 3) {
        char *text = malloc(lens[2] + 1);
        if (!text)
            return 0;
        memcpy(text, parts[2], lens[2]);
        text[lens[2]] = 0;
        if (!scram_parse_secret(text, &secret))
            secret = pencil;
        free(text);
    }
    ScramServer s;
    scram_server_init(&s, flags & 1 ? NULL : &secret);
    char out[512];
    /* The messages as they arrive: exact-size heap copies, not NUL-terminated. */
    char *first = malloc(lens[0] ? lens[0] : 1);
    if (!first)
        return 0;
    memcpy(first, parts[0], lens[0]);
    bool ok = scram_server_first(&s, first, lens[0], out, sizeof out);
    free(first);
    if (!ok) {
        if (s.state != SCRAM_FAILED)
            abort();
        return 0;
    }
    if (s.state != SCRAM_WANT_FINAL || strncmp(out, "r=", 2) != 0)
        abort();
    if (n < 2)
        return 0;
    char final[2048];
    size_t fl = expand(&s, parts[1], lens[1], final, sizeof final);
    char *msg = malloc(fl ? fl : 1);
    if (!msg)
        return 0;
    memcpy(msg, final, fl);
    ok = scram_server_final(&s, msg, fl, out, sizeof out);
    free(msg);
    if (ok != (s.state == SCRAM_DONE) || (ok && strncmp(out, "v=", 2) != 0))
        abort();
    if (ok && (flags & 1))
        abort(); /* an unknown user can never log in */
    return 0;
}
