/*
 * fuzz_entry.c — libFuzzer target for the cached-blob decoder: what comes back from Redis is
 * untrusted. entry_parse() on arbitrary blobs (the whole input, and each part between
 * "|NEXT|" separators); every blob it accepts must be a sequence of whole messages inside
 * the blob that a client could be sent as is. Then the parts go through the in-process tier
 * (hottier_put/get/resize) under keys and expiry times taken from the input.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/entry.h"
#include "proxy/hottier.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SEP       "|NEXT|"
#define MAX_PARTS 16

/* What replay() relies on: desc and body are whole, well-framed messages inside the blob,
 * the body ends with its completion, and the DataRow count is right. */
static void check_view(const uint8_t *blob, size_t len, const EntryView *v)
{
    const uint8_t *end = blob + len;
    if (v->desc) {
        if (v->desc < blob || v->desc_len < 5 || v->desc + v->desc_len > end ||
            be32(v->desc + 1) + 1 != v->desc_len || (v->desc[0] != 'T' && v->desc[0] != 'n'))
            abort();
    }
    if (!v->body || v->body < blob || v->body_len < 5 || v->body + v->body_len != end)
        abort();
    uint64_t rows = 0;
    size_t at = 0;
    char last = 0;
    while (at < v->body_len) {
        if (v->body_len - at < 5)
            abort();
        size_t n = (size_t)be32(v->body + at + 1) + 1;
        if (n < 5 || n > v->body_len - at)
            abort();
        last = (char)v->body[at];
        rows += last == 'D';
        at += n;
    }
    if ((last != 'C' && last != 'I') || rows != v->rows)
        abort();
}

static void parse_one(const uint8_t *blob, size_t len)
{
    EntryView v;
    if (entry_parse(blob, len, &v))
        check_view(blob, len, &v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The blob as Redis would hand it over: a heap copy of exactly its length. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    parse_one(copy, size);

    const uint8_t *parts[MAX_PARTS];
    size_t lens[MAX_PARTS], n = 0, start = 0;
    const size_t sl = sizeof SEP - 1;
    for (size_t i = 0; n + 1 < MAX_PARTS && i + sl <= size; i++)
        if (memcmp(copy + i, SEP, sl) == 0) {
            parts[n] = copy + start;
            lens[n++] = i - start;
            start = i + sl;
            i += sl - 1;
        }
    parts[n] = copy + start;
    lens[n++] = size - start;

    /* The tier: a small bound so eviction happens; each part under a key from its first
     * bytes (so parts may share keys and replace each other) with an expiry from a byte. */
    HotTier *t = hottier_new(4096 + (size_t)(size % 7) * 1024);
    if (!t)
        abort();
    CacheDigest keys[MAX_PARTS];
    for (size_t i = 0; i < n; i++) {
        uint8_t *blob = malloc(lens[i] ? lens[i] : 1); /* exact size: ASan sees overreads */
        if (!blob)
            abort();
        memcpy(blob, parts[i], lens[i]);
        if (n > 1)
            parse_one(blob, lens[i]);
        memset(&keys[i], 0, sizeof keys[i]);
        keys[i].bytes[0] = lens[i] ? blob[lens[i] - 1] % 4 : 0;
        int64_t expires = lens[i] > 8 ? 1000 + (blob[8] % 3) * 1000 : 1500;
        HotTierStats before, after;
        hottier_stats(t, &before);
        hottier_put(t, &keys[i], blob, lens[i], expires);
        hottier_stats(t, &after);
        free(blob); /* the tier keeps its own copy */
        EntryView v;
        if (after.stores > before.stores && hottier_get(t, &keys[i], 1200, &v)) {
            /* Just stored: the view is over an exact copy of this part. */
            const uint8_t *start = (v.desc ? v.desc : v.body) - ENTRY_HEADER_LEN;
            size_t len = (size_t)(v.body + v.body_len - start);
            if (len != lens[i] || memcmp(start, parts[i], len) != 0)
                abort();
            check_view(start, len, &v);
        }
    }
    for (size_t i = 0; i < n; i++) {
        EntryView v;
        (void)hottier_get(t, &keys[i], 1700, &v);
    }
    hottier_resize(t, size % 3 == 0 ? 0 : 2048);
    HotTierStats st;
    hottier_stats(t, &st);
    if (st.bytes > 4096 + 6 * 1024)
        abort();
    hottier_free(t);
    free(copy);
    return 0;
}
