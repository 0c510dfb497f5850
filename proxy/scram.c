/*
 * scram.c — SCRAM-SHA-256 server side and secret generation, with OpenSSL's PBKDF2, HMAC and
 * SHA-256. Every message from the client is parsed with explicit bounds; the proof is
 * compared in constant time.
 */
#include "proxy/scram.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* Decodes exactly `want` bytes of base64 (padding considered). */
static bool b64_decode(const char *in, size_t len, uint8_t *out, size_t want)
{
    if (len == 0 || len % 4 != 0 || len > 4 * ((want + 2) / 3) + 4)
        return false;
    uint8_t buf[128];
    if (len / 4 * 3 > sizeof buf)
        return false;
    int n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
    if (n < 0)
        return false;
    size_t pad = (in[len - 1] == '=') + (len > 1 && in[len - 2] == '=');
    if ((size_t)n - pad != want)
        return false;
    memcpy(out, buf, want);
    return true;
}

static void hmac(const uint8_t *key, size_t klen, const void *msg, size_t mlen, uint8_t *out)
{
    unsigned int olen = SCRAM_KEY_LEN;
    HMAC(EVP_sha256(), key, (int)klen, msg, mlen, out, &olen);
}

bool scram_parse_secret(const char *text, ScramSecret *out)
{
    memset(out, 0, sizeof *out);
    static const char prefix[] = "SCRAM-SHA-256$";
    if (strncmp(text, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *p = text + sizeof prefix - 1;
    char *end;
    long it = strtol(p, &end, 10);
    if (end == p || *end != ':' || it < 1 || it > 100000000)
        return false;
    out->iterations = (int)it;
    const char *salt = end + 1;
    const char *dollar = strchr(salt, '$');
    if (!dollar || (size_t)(dollar - salt) >= sizeof out->salt_b64 || dollar == salt)
        return false;
    memcpy(out->salt_b64, salt, (size_t)(dollar - salt));
    out->salt_b64[dollar - salt] = 0;
    uint8_t tmp[64];
    size_t slen = strlen(out->salt_b64);
    if (slen % 4 != 0 || EVP_DecodeBlock(tmp, (const unsigned char *)out->salt_b64, (int)slen) < 0)
        return false;
    const char *stored = dollar + 1;
    const char *colon = strchr(stored, ':');
    if (!colon)
        return false;
    return b64_decode(stored, (size_t)(colon - stored), out->stored_key, SCRAM_KEY_LEN) &&
           b64_decode(colon + 1, strlen(colon + 1), out->server_key, SCRAM_KEY_LEN);
}

bool scram_make_secret(const char *password, int iterations, char *out, size_t outlen)
{
    uint8_t salt[16], salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
    uint8_t stored[SCRAM_KEY_LEN], server[SCRAM_KEY_LEN];
    if (RAND_bytes(salt, sizeof salt) != 1)
        return false;
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, sizeof salt, iterations,
                          EVP_sha256(), SCRAM_KEY_LEN, salted) != 1)
        return false;
    hmac(salted, sizeof salted, "Client Key", 10, client_key);
    SHA256(client_key, sizeof client_key, stored);
    hmac(salted, sizeof salted, "Server Key", 10, server);
    char salt64[32], stored64[48], server64[48];
    b64_encode(salt, sizeof salt, salt64);
    b64_encode(stored, sizeof stored, stored64);
    b64_encode(server, sizeof server, server64);
    int n = snprintf(out, outlen, "SCRAM-SHA-256$%d:%s$%s:%s", iterations, salt64, stored64,
                     server64);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return n > 0 && (size_t)n < outlen;
}

void scram_server_init(ScramServer *s, const ScramSecret *secret)
{
    memset(s, 0, sizeof *s);
    s->state = SCRAM_WANT_FIRST;
    if (secret) {
        s->secret = *secret;
        s->secret_valid = true;
    }
}

/* Printable ASCII except ',' (RFC 5802 "printable"). */
static bool valid_nonce(const char *p, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
            return false;
    return true;
}

static bool fail(ScramServer *s)
{
    s->state = SCRAM_FAILED;
    return false;
}

bool scram_server_first(ScramServer *s, const char *msg, size_t len, char *out, size_t outlen)
{
    if (s->state != SCRAM_WANT_FIRST || memchr(msg, 0, len))
        return fail(s);
    /* gs2-header: "n,," (no binding) or "y,," (client could bind, server cannot); "p=" asks
     * for channel binding, which cannot cross a proxy. */
    if (len < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',')
        return fail(s);
    const char *comma = memchr(msg + 2, ',', len - 2);
    if (!comma || comma != msg + 2) /* no authzid */
        return fail(s);
    const char *bare = comma + 1;
    size_t bare_len = len - (size_t)(bare - msg);
    if (bare_len >= sizeof s->client_first_bare || bare_len < 4)
        return fail(s);
    memcpy(s->client_first_bare, bare, bare_len);
    s->client_first_bare[bare_len] = 0;
    /* "n=<user>,r=<nonce>[,extensions]": PostgreSQL ignores the user name here. */
    if (strncmp(s->client_first_bare, "n=", 2) != 0)
        return fail(s);
    const char *r = strstr(s->client_first_bare, ",r=");
    if (!r)
        return fail(s);
    r += 3;
    const char *r_end = strchr(r, ',');
    size_t rlen = r_end ? (size_t)(r_end - r) : strlen(r);
    if (!valid_nonce(r, rlen) || rlen > 100)
        return fail(s);
    uint8_t raw[18];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return fail(s);
    char server_nonce[32];
    b64_encode(raw, sizeof raw, server_nonce);
    snprintf(s->nonce, sizeof s->nonce, "%.*s%s", (int)rlen, r, server_nonce);
    /* An unknown user still gets a well-formed challenge. */
    const char *salt = s->secret_valid ? s->secret.salt_b64 : "AAAAAAAAAAAAAAAAAAAAAA==";
    int iterations = s->secret_valid ? s->secret.iterations : 4096;
    int n = snprintf(s->server_first, sizeof s->server_first, "r=%s,s=%s,i=%d", s->nonce, salt,
                     iterations);
    if (n < 0 || (size_t)n >= sizeof s->server_first || (size_t)n >= outlen)
        return fail(s);
    memcpy(out, s->server_first, (size_t)n + 1);
    s->state = SCRAM_WANT_FINAL;
    return true;
}

bool scram_server_final(ScramServer *s, const char *msg, size_t len, char *out, size_t outlen)
{
    if (s->state != SCRAM_WANT_FINAL || memchr(msg, 0, len) || len > 1024)
        return fail(s);
    char buf[1025];
    memcpy(buf, msg, len);
    buf[len] = 0;
    /* c=<base64(gs2-header)>,r=<nonce>,p=<proof> */
    if (strncmp(buf, "c=biws,", 7) != 0 && strncmp(buf, "c=eSws,", 7) != 0)
        return fail(s);
    if (strncmp(buf + 7, "r=", 2) != 0)
        return fail(s);
    const char *nonce = buf + 9;
    const char *p = strstr(nonce, ",p=");
    if (!p || strlen(s->nonce) != (size_t)(p - nonce) ||
        memcmp(nonce, s->nonce, (size_t)(p - nonce)) != 0)
        return fail(s);
    size_t without_proof = (size_t)(p - buf);
    uint8_t proof[SCRAM_KEY_LEN];
    if (!b64_decode(p + 3, strlen(p + 3), proof, sizeof proof))
        return fail(s);

    char auth[2048];
    int an = snprintf(auth, sizeof auth, "%s,%s,%.*s", s->client_first_bare, s->server_first,
                      (int)without_proof, buf);
    if (an < 0 || (size_t)an >= sizeof auth || !s->secret_valid)
        return fail(s);
    uint8_t client_sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], check[SCRAM_KEY_LEN];
    hmac(s->secret.stored_key, SCRAM_KEY_LEN, auth, (size_t)an, client_sig);
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    SHA256(client_key, sizeof client_key, check);
    if (CRYPTO_memcmp(check, s->secret.stored_key, SCRAM_KEY_LEN) != 0)
        return fail(s);
    uint8_t server_sig[SCRAM_KEY_LEN];
    hmac(s->secret.server_key, SCRAM_KEY_LEN, auth, (size_t)an, server_sig);
    char sig64[48];
    b64_encode(server_sig, sizeof server_sig, sig64);
    if ((size_t)snprintf(out, outlen, "v=%s", sig64) >= outlen)
        return fail(s);
    s->state = SCRAM_DONE;
    return true;
}
