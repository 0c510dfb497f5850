/*
 * buf.h — byte buffers. IoBuf holds bytes read from or queued for a socket (a window
 * [start, end) in a heap block); ByteWriter appends with a sticky error flag checked once at
 * the end; ByteReader reads a bounded message payload and never walks past it.
 */
#ifndef PGSTASH_BUF_H
#define PGSTASH_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    uint8_t *data; /* heap block, NULL until first use */
    size_t start;  /* first unconsumed byte */
    size_t end;    /* one past the last byte */
    size_t cap;    /* size of data */
} IoBuf;

static inline size_t iobuf_len(const IoBuf *b)
{
    return b->end - b->start;
}

static inline uint8_t *iobuf_head(const IoBuf *b)
{
    /* An empty buffer may have no block yet: NULL + 0 is undefined behaviour in C (UBSan's
     * pointer-overflow check, found by tests/fuzz), so never form it. */
    return b->data ? b->data + b->start : NULL;
}

/* Makes room for `need` more bytes after end (compacting or growing). False on OOM. */
bool iobuf_reserve(IoBuf *b, size_t need) __attribute__((warn_unused_result));

/* iobuf_append when the block must grow or be compacted first. */
bool iobuf_append_slow(IoBuf *b, const void *p, size_t n) __attribute__((warn_unused_result));

/* Appends bytes; false on out-of-memory (buffer unchanged). Inline: every relayed message
 * takes this path, and it almost always fits. */
__attribute__((warn_unused_result)) static inline bool iobuf_append(IoBuf *b, const void *p,
                                                                   size_t n)
{
    if (n == 0)
        return true;
    if (b->cap - b->end < n)
        return iobuf_append_slow(b, p, n);
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return true;
}

/* Marks n bytes at the head consumed; resets to the block start when empty. */
void iobuf_consume(IoBuf *b, size_t n);

/* Frees the block if it is empty and bigger than `keep` bytes (idle connections stay small). */
void iobuf_shrink(IoBuf *b, size_t keep);

void iobuf_free(IoBuf *b);

/* --- ByteWriter: growable output with a sticky error flag ---------------------------- */

typedef struct {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool failed; /* set on the first allocation failure; all later writes are no-ops */
} ByteWriter;

void bw_put(ByteWriter *w, const void *p, size_t n);
void bw_u8(ByteWriter *w, uint8_t v);
void bw_u16(ByteWriter *w, uint16_t v); /* network byte order */
void bw_u32(ByteWriter *w, uint32_t v); /* network byte order */
void bw_u64(ByteWriter *w, uint64_t v); /* network byte order */
void bw_cstr(ByteWriter *w, const char *s);     /* with its NUL */
void bw_cstr_raw(ByteWriter *w, const char *s); /* without its NUL */
/* Starts a PostgreSQL message: type byte and a length placeholder; returns its offset. */
size_t bw_msg_begin(ByteWriter *w, char type);
/* Patches the length of the message begun at `at`. */
void bw_msg_end(ByteWriter *w, size_t at);
void bw_reset(ByteWriter *w); /* len = 0, error cleared, memory kept */
void bw_free(ByteWriter *w);

/* --- ByteReader: bounds-checked reads over an untrusted block ------------------------ */

typedef struct {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool failed; /* set on the first read past the end; later reads return zeros */
} ByteReader;

static inline void br_init(ByteReader *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->pos = 0;
    r->failed = false;
}

static inline size_t br_left(const ByteReader *r)
{
    return r->failed ? 0 : r->len - r->pos;
}

static inline uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(((uint16_t)p[0] << 8) | p[1]);
}

/*
 * The readers are inline: a relayed extended-protocol unit parses a dozen fields, and the
 * calls cost more than the reads.
 */

/* Returns a pointer to n bytes inside the block and skips them, or NULL. */
static inline const uint8_t *br_bytes(ByteReader *r, size_t n)
{
    if (r->failed || r->len - r->pos < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static inline uint8_t br_u8(ByteReader *r)
{
    const uint8_t *p = br_bytes(r, 1);
    return p ? p[0] : 0;
}

static inline uint16_t br_u16(ByteReader *r)
{
    const uint8_t *p = br_bytes(r, 2);
    return p ? be16(p) : 0;
}

static inline int16_t br_i16(ByteReader *r)
{
    return (int16_t)br_u16(r);
}

static inline uint32_t br_u32(ByteReader *r)
{
    const uint8_t *p = br_bytes(r, 4);
    return p ? be32(p) : 0;
}

static inline int32_t br_i32(ByteReader *r)
{
    return (int32_t)br_u32(r);
}

uint64_t br_u64(ByteReader *r);

/* br_cstr past its inline case. */
const char *br_cstr_scan(ByteReader *r, size_t *len_out);

/* Returns a NUL-terminated string inside the block (and its length), or NULL. The empty
 * string, the name of every unnamed statement and portal, is answered without a scan. */
static inline const char *br_cstr(ByteReader *r, size_t *len_out)
{
    if (!r->failed && r->pos < r->len && r->p[r->pos] == 0) {
        if (len_out)
            *len_out = 0;
        return (const char *)r->p + r->pos++;
    }
    return br_cstr_scan(r, len_out);
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

#endif
