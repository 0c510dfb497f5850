/*
 * buf.c — byte buffers for socket I/O, message building and bounds-checked parsing.
 */
#include "proxy/buf.h"

#include <stdlib.h>

#define IOBUF_MIN 4096

bool iobuf_reserve(IoBuf *b, size_t need)
{
    if (b->cap - b->end >= need)
        return true;
    size_t used = b->end - b->start;
    /* Compacting is enough when the consumed head frees the room. */
    if (b->data && b->cap - used >= need) {
        memmove(b->data, b->data + b->start, used);
        b->start = 0;
        b->end = used;
        return true;
    }
    size_t cap = b->cap ? b->cap : IOBUF_MIN;
    while (cap - used < need) {
        if (cap > SIZE_MAX / 2)
            return false;
        cap *= 2;
    }
    uint8_t *data = malloc(cap);
    if (!data)
        return false;
    if (used)
        memcpy(data, b->data + b->start, used);
    free(b->data);
    b->data = data;
    b->cap = cap;
    b->start = 0;
    b->end = used;
    return true;
}

bool iobuf_append_slow(IoBuf *b, const void *p, size_t n)
{
    if (!iobuf_reserve(b, n))
        return false;
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return true;
}

void iobuf_consume(IoBuf *b, size_t n)
{
    b->start += n;
    if (b->start >= b->end)
        b->start = b->end = 0;
}

void iobuf_shrink(IoBuf *b, size_t keep)
{
    if (b->start == b->end && b->cap > keep) {
        free(b->data);
        b->data = NULL;
        b->cap = b->start = b->end = 0;
    }
}

void iobuf_free(IoBuf *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

/* --- ByteWriter ----------------------------------------------------------------------- */

static bool bw_grow(ByteWriter *w, size_t n)
{
    if (w->failed)
        return false;
    if (w->cap - w->len >= n)
        return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n) {
        if (cap > SIZE_MAX / 2) {
            w->failed = true;
            return false;
        }
        cap *= 2;
    }
    uint8_t *data = realloc(w->data, cap);
    if (!data) {
        w->failed = true;
        return false;
    }
    w->data = data;
    w->cap = cap;
    return true;
}

void bw_put(ByteWriter *w, const void *p, size_t n)
{
    if (n && bw_grow(w, n)) {
        memcpy(w->data + w->len, p, n);
        w->len += n;
    }
}

void bw_u8(ByteWriter *w, uint8_t v)
{
    bw_put(w, &v, 1);
}

void bw_u16(ByteWriter *w, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    bw_put(w, b, 2);
}

void bw_u32(ByteWriter *w, uint32_t v)
{
    uint8_t b[4];
    put_be32(b, v);
    bw_put(w, b, 4);
}

void bw_u64(ByteWriter *w, uint64_t v)
{
    bw_u32(w, (uint32_t)(v >> 32));
    bw_u32(w, (uint32_t)v);
}

void bw_cstr(ByteWriter *w, const char *s)
{
    bw_put(w, s, strlen(s) + 1);
}

void bw_cstr_raw(ByteWriter *w, const char *s)
{
    bw_put(w, s, strlen(s));
}

size_t bw_msg_begin(ByteWriter *w, char type)
{
    size_t at = w->len;
    bw_u8(w, (uint8_t)type);
    bw_u32(w, 0);
    return at;
}

void bw_msg_end(ByteWriter *w, size_t at)
{
    if (!w->failed && w->len >= at + 5)
        put_be32(w->data + at + 1, (uint32_t)(w->len - at - 1));
}

void bw_reset(ByteWriter *w)
{
    w->len = 0;
    w->failed = false;
}

void bw_free(ByteWriter *w)
{
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
    w->failed = false;
}

/* --- ByteReader ----------------------------------------------------------------------- */

uint64_t br_u64(ByteReader *r)
{
    uint64_t hi = br_u32(r);
    return (hi << 32) | br_u32(r);
}

const char *br_cstr_scan(ByteReader *r, size_t *len_out)
{
    if (r->failed)
        return NULL;
    const uint8_t *start = r->p + r->pos;
    const uint8_t *nul = memchr(start, 0, r->len - r->pos);
    if (!nul) {
        r->failed = true;
        return NULL;
    }
    size_t n = (size_t)(nul - start);
    r->pos += n + 1;
    if (len_out)
        *len_out = n;
    return (const char *)start;
}
