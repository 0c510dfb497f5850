/*
 * entry.c — validation of cached result blobs.
 */
#include "proxy/entry.h"

#include <string.h>

#include "proxy/buf.h"

void entry_header(uint8_t *out, bool has_desc)
{
    memcpy(out, "PGS1", 4);
    out[4] = has_desc ? ENTRY_HAS_DESC : 0;
    out[5] = out[6] = out[7] = 0;
}

/* Checks one message header at p (len bytes left); returns its total size or 0. */
static size_t message_at(const uint8_t *p, size_t left)
{
    if (left < 5)
        return 0;
    uint32_t len = be32(p + 1);
    if (len < 4 || (size_t)len + 1 > left)
        return 0;
    return (size_t)len + 1;
}

/* A DataRow: int16 column count, then per column int32 length (-1 = NULL) and bytes. */
static bool valid_datarow(const uint8_t *p, size_t total)
{
    ByteReader r;
    br_init(&r, p + 5, total - 5);
    int16_t cols = br_i16(&r);
    if (cols < 0)
        return false;
    for (int i = 0; i < cols && !r.failed; i++) {
        int32_t n = br_i32(&r);
        if (n < -1)
            return false;
        if (n > 0)
            (void)br_bytes(&r, (size_t)n);
    }
    return !r.failed && br_left(&r) == 0;
}

bool entry_parse(const uint8_t *blob, size_t len, EntryView *out)
{
    memset(out, 0, sizeof *out);
    if (len < ENTRY_HEADER_LEN || memcmp(blob, "PGS1", 4) != 0)
        return false;
    uint8_t flags = blob[4];
    if ((flags & ~ENTRY_HAS_DESC) || blob[5] || blob[6] || blob[7])
        return false;
    const uint8_t *p = blob + ENTRY_HEADER_LEN;
    size_t left = len - ENTRY_HEADER_LEN;
    if (flags & ENTRY_HAS_DESC) {
        size_t n = message_at(p, left);
        if (!n || (p[0] != 'T' && p[0] != 'n'))
            return false;
        out->desc = p;
        out->desc_len = n;
        p += n;
        left -= n;
    }
    out->body = p;
    out->body_len = left;
    for (;;) {
        size_t n = message_at(p, left);
        if (!n)
            return false;
        if (p[0] == 'D') {
            if (!valid_datarow(p, n))
                return false;
            out->rows++;
        } else if (p[0] == 'C' || p[0] == 'I') {
            /* The completion must be last; CommandComplete carries a NUL-terminated tag. */
            if (n != left)
                return false;
            if (p[0] == 'C' && (n < 6 || p[n - 1] != 0))
                return false;
            return true;
        } else {
            return false;
        }
        p += n;
        left -= n;
    }
}
