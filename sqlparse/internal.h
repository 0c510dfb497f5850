/*
 * internal.h — what the files of sqlparse/ share with each other and nobody else: the scratch
 * arena, the scanner pass (statement shape, nesting estimate) and the full parse. Not part of
 * the library's API; only sqlparse.h is.
 */
#ifndef PGSTASH_SQLPARSE_INTERNAL_H
#define PGSTASH_SQLPARSE_INTERNAL_H

#include "sqlparse/sqlparse.h"

#include <protobuf-c/protobuf-c.h>

/* Texts up to this many bytes cannot nest deeply enough to exhaust the stack inside
 * libpg_query, so they are parsed without the scanner's nesting estimate. */
#define SQLPARSE_SHORT_TEXT 1024

/* A statement whose estimated nesting exceeds this is not parsed at all: libpg_query's output
 * and protobuf-c's unpack recurse once per tree level with big frames, so a deep tree would
 * overflow the stack. Calibrated so that the deepest accepted statement needs under 2 MiB. */
#define SQLPARSE_MAX_NESTING 2000

/* Bump allocator for everything that lives only while one text is analysed: unpacked protobuf
 * messages, scratch vectors. Freed in one go; protobuf-c's unpack allocates through it. */
typedef struct SqlArena SqlArena;
SqlArena *sqlparse_arena_new(void) __attribute__((warn_unused_result));
void sqlparse_arena_free(SqlArena *arena);
/* NULL on out-of-memory; 16-byte aligned; valid until the arena is freed. */
void *sqlparse_arena_alloc(SqlArena *arena, size_t size) __attribute__((warn_unused_result));
ProtobufCAllocator *sqlparse_arena_allocator(SqlArena *arena);

/* What one scanner pass learnt about a text. */
typedef struct {
    bool ok;           /* the scanner understood the text; the other fields are valid */
    bool shape_usable; /* the shape may be shared: no string constant that could be a time
                          literal and none the scanner cannot decode (U&'…') */
    size_t nesting;    /* upper bound on the parse tree's nesting, in estimate units */
    char *shape;       /* constants replaced by a placeholder, tokens NUL-separated (malloc) */
    size_t shape_len;
} SqlScan;

/* Scans the NUL-terminated `text`; with want_shape the shape is built too. Returns false only
 * on out-of-memory; a text the scanner rejects gives true with out->ok false. Free the shape
 * with sqlparse_scan_clear. */
bool sqlparse_scan_text(const char *text, bool want_shape, SqlScan *out)
    __attribute__((warn_unused_result));
void sqlparse_scan_clear(SqlScan *scan);

/* Room sqlparse_quick_shape needs for a text of `len` bytes. */
#define SQLPARSE_QUICK_SHAPE_CAP(len) (3 * (size_t)(len) + 2)

/* The shape of a plain text (words, integers, punctuation, operators), built without the
 * scanner into `out` (at least SQLPARSE_QUICK_SHAPE_CAP(len) bytes). False when the text
 * holds anything else: then only sqlparse_scan_text may shape it. Its shapes never equal
 * the scanner's. */
bool sqlparse_quick_shape(const char *text, size_t len, char *out, size_t cap, size_t *out_len)
    __attribute__((warn_unused_result));

/* Parses and analyses the NUL-terminated `text` (one fresh analysis, refcount 1). *shareable
 * says whether the result may be shared with texts of the same shape: false for parse errors
 * and for analyses that depend on a constant's value. NULL only on out-of-memory. */
SqlAnalysis *sqlparse_parse_text(const char *text, bool *shareable)
    __attribute__((warn_unused_result));

/* The analysis given to a text too deeply nested to parse safely. NULL on out-of-memory. */
SqlAnalysis *sqlparse_too_complex(size_t nesting) __attribute__((warn_unused_result));

/* Records that the calling thread has libpg_query state; call before any pg_query_*(). */
void sqlparse_note_libpg_used(void);

/* True when a string constant's value could resolve to the current time once cast to a
 * date/time type, also under standard_conforming_strings = off (backslash escapes). */
bool sqlparse_maybe_time_literal(const char *value, size_t len);

#endif
