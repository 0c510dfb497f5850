/*
 * entry.h — the format of a cached result as stored in Redis, and its validation. What comes
 * back from Redis is untrusted: entry_parse walks every message header before a single byte
 * of it reaches a client, so a corrupt or hostile blob is a miss, never a desynchronised
 * protocol stream.
 *
 *   "PGS1" | flags (1) | 0 0 0 | backend messages: [RowDescription|NoData] DataRow* completion
 *
 * flags bit 0: the messages start with a RowDescription ('T') or NoData ('n');
 * completion is CommandComplete ('C') or EmptyQueryResponse ('I').
 */
#ifndef PGSTASH_ENTRY_H
#define PGSTASH_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENTRY_HEADER_LEN 8
#define ENTRY_HAS_DESC 0x01

typedef struct {
    const uint8_t *desc; /* the RowDescription/NoData message, or NULL */
    size_t desc_len;
    const uint8_t *body; /* DataRows and the completion message */
    size_t body_len;
    uint64_t rows;       /* DataRow count */
} EntryView;

/* Validates a blob and points into it. False when anything is off. */
bool entry_parse(const uint8_t *blob, size_t len, EntryView *out)
    __attribute__((warn_unused_result));

/* Writes the 8-byte header into `out`. */
void entry_header(uint8_t *out, bool has_desc);

#endif
