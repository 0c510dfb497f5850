/*
 * cachekeys.c — the canonical serialisation behind cache keys. Each ingredient is written as
 * a one-byte tag, a 32-bit big-endian length and the bytes (integers as 8 bytes), so no two
 * different ingredient lists serialise alike; both halves start with a domain string and
 * CACHEKEY_FORMAT_VERSION. Hashing is incremental (no buffer, no allocation).
 */
#define OPENSSL_SUPPRESS_DEPRECATED /* SHA256_*: the allocation-free low-level interface */
#include "cachekeys/cachekeys.h"

#include <openssl/sha.h>
#include <string.h>

enum {
    TAG_DATABASE = 1,
    TAG_USER,
    TAG_ROLE,
    TAG_SETTING_COUNT,
    TAG_SETTING_NAME,
    TAG_SETTING_VALUE,
    TAG_SESSION,
    TAG_PROTOCOL,
    TAG_TEXT,
    TAG_PARAM_TYPES,
    TAG_PARAM_COUNT,
    TAG_PARAM_FORMAT,
    TAG_PARAM_VALUE,
    TAG_PARAM_NULL,
    TAG_RESULT_FORMATS,
    TAG_TABLE_COUNT,
    TAG_TABLE_NAME,
    TAG_TABLE_VERSION,
    TAG_EPOCH,
};

/* Small writes are gathered here and hashed in blocks: the per-call cost of SHA256_Update
 * dominated short keys. */
typedef struct {
    SHA256_CTX ctx;
    size_t n;
    unsigned char buf[256];
} Hasher;

static void h_flush(Hasher *h)
{
    if (h->n) {
        SHA256_Update(&h->ctx, h->buf, h->n);
        h->n = 0;
    }
}

static void h_put(Hasher *h, const void *p, size_t len)
{
    if (len > sizeof h->buf - h->n) {
        h_flush(h);
        if (len > sizeof h->buf / 2) {
            SHA256_Update(&h->ctx, p, len);
            return;
        }
    }
    memcpy(h->buf + h->n, p, len);
    h->n += len;
}

static void put_header(Hasher *h, unsigned char tag, size_t len)
{
    unsigned char b[5] = {tag, (unsigned char)(len >> 24), (unsigned char)(len >> 16),
                          (unsigned char)(len >> 8), (unsigned char)len};
    h_put(h, b, sizeof b);
}

static void put_bytes(Hasher *h, unsigned char tag, const void *p, size_t len)
{
    put_header(h, tag, len);
    if (len)
        h_put(h, p, len);
}

static void put_str(Hasher *h, unsigned char tag, const char *s)
{
    put_bytes(h, tag, s ? s : "", s ? strlen(s) : 0);
}

static void put_u64(Hasher *h, unsigned char tag, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (56 - 8 * i));
    put_bytes(h, tag, b, sizeof b);
}

static void put_domain(Hasher *h, const char *domain)
{
    h_put(h, domain, strlen(domain) + 1);
    unsigned char v = CACHEKEY_FORMAT_VERSION;
    h_put(h, &v, 1);
}

static void h_init(Hasher *h)
{
    SHA256_Init(&h->ctx);
    h->n = 0;
}

static void h_final(Hasher *h, unsigned char *out)
{
    h_flush(h);
    SHA256_Final(out, &h->ctx);
}

void cachekey_session(const CacheKeySession *s, CacheDigest *out)
{
    Hasher h;
    h_init(&h);
    put_domain(&h, "pgstash/session");
    put_str(&h, TAG_DATABASE, s->database);
    put_str(&h, TAG_USER, s->user);
    put_str(&h, TAG_ROLE, s->role);
    put_u64(&h, TAG_SETTING_COUNT, s->n_settings);
    for (size_t i = 0; i < s->n_settings; i++) {
        put_str(&h, TAG_SETTING_NAME, s->settings[i].name);
        put_str(&h, TAG_SETTING_VALUE, s->settings[i].value);
    }
    h_final(&h, out->bytes);
}

_Static_assert(sizeof(SHA256_CTX) <= sizeof(CacheKeyPartial), "CacheKeyPartial too small");

void cachekey_partial(const CacheDigest *session, const CacheKeyQuery *q, CacheKeyPartial *out)
{
    Hasher h;
    h_init(&h);
    put_domain(&h, "pgstash/key");
    put_bytes(&h, TAG_SESSION, session->bytes, CACHEKEY_LEN);
    put_u64(&h, TAG_PROTOCOL, (uint64_t)q->protocol);
    put_bytes(&h, TAG_TEXT, q->text, q->text_len);

    unsigned char oid[4];
    put_header(&h, TAG_PARAM_TYPES, q->n_param_types * 4);
    for (size_t i = 0; i < q->n_param_types; i++) {
        uint32_t v = q->param_types[i];
        oid[0] = (unsigned char)(v >> 24);
        oid[1] = (unsigned char)(v >> 16);
        oid[2] = (unsigned char)(v >> 8);
        oid[3] = (unsigned char)v;
        h_put(&h, oid, 4);
    }
    put_u64(&h, TAG_PARAM_COUNT, q->n_params);
    for (size_t i = 0; i < q->n_params; i++) {
        put_u64(&h, TAG_PARAM_FORMAT, (uint64_t)(uint16_t)q->param_formats[i]);
        if (q->params[i].len < 0)
            put_header(&h, TAG_PARAM_NULL, 0);
        else
            put_bytes(&h, TAG_PARAM_VALUE, q->params[i].data, (size_t)q->params[i].len);
    }
    unsigned char fmt[2];
    put_header(&h, TAG_RESULT_FORMATS, q->n_result_formats * 2);
    for (size_t i = 0; i < q->n_result_formats; i++) {
        fmt[0] = (unsigned char)((uint16_t)q->result_formats[i] >> 8);
        fmt[1] = (unsigned char)q->result_formats[i];
        h_put(&h, fmt, 2);
    }
    h_flush(&h);
    memcpy(out->state, &h.ctx, sizeof h.ctx);
}

void cachekey_finish(const CacheKeyPartial *partial, const CacheKeyTable *tables, size_t n_tables,
                     uint64_t epoch, CacheDigest *out)
{
    Hasher h;
    memcpy(&h.ctx, partial->state, sizeof h.ctx);
    h.n = 0;
    put_u64(&h, TAG_TABLE_COUNT, n_tables);
    for (size_t i = 0; i < n_tables; i++) {
        put_str(&h, TAG_TABLE_NAME, tables[i].name);
        put_u64(&h, TAG_TABLE_VERSION, tables[i].version);
    }
    put_u64(&h, TAG_EPOCH, epoch);
    h_final(&h, out->bytes);
}

void cachekey_compute(const CacheDigest *session, const CacheKeyQuery *q, CacheDigest *out)
{
    CacheKeyPartial p;
    cachekey_partial(session, q, &p);
    cachekey_finish(&p, q->tables, q->n_tables, q->epoch, out);
}

void cachekey_hex(const CacheDigest *d, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < CACHEKEY_LEN; i++) {
        out[2 * i] = hex[d->bytes[i] >> 4];
        out[2 * i + 1] = hex[d->bytes[i] & 15];
    }
    out[CACHEKEY_HEX_LEN] = 0;
}
