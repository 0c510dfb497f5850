/*
 * ydoc.h — internal to config/: one YAML document as a small tree of scalars, mappings and
 * lists, each node carrying its 1-based line. Built from libyaml's event stream so aliases,
 * extra documents, deep nesting and runaway sizes become errors before anything walks it.
 */
#ifndef PGSTASH_CONFIG_YDOC_H
#define PGSTASH_CONFIG_YDOC_H

#include <stdbool.h>
#include <stddef.h>

#define YDOC_MAX_DEPTH 32     /* deeper nesting is refused; the schema needs 5 levels */
#define YDOC_MAX_NODES 500000 /* ~100 bytes each in memory; about 125000 table rules */

typedef enum {
    YDOC_SCALAR,   /* text */
    YDOC_MAPPING,  /* items = key, value, key, value, ... */
    YDOC_SEQUENCE, /* items = elements */
} YDocKind;

typedef struct YDocNode {
    YDocKind kind;
    int line;                /* 1-based line where the node starts */
    char *text;              /* scalar: NUL-terminated copy ("" for others) */
    size_t len;              /* scalar: byte length; a shorter strlen means an embedded NUL */
    bool plain;              /* scalar: unquoted, so "", "~" and "null" mean null */
    struct YDocNode **items; /* children, owned */
    size_t n_items;
    size_t cap_items;
} YDocNode;

/*
 * Parses `len` bytes of YAML. On success *out is the document's root, or NULL when the
 * stream holds no document (an empty file); free it with ydoc_free. On failure returns false
 * with *err_line (1-based) and a message without file or line in err.
 */
bool ydoc_parse(const char *yaml, size_t len, YDocNode **out, int *err_line, char *err,
                size_t errlen) __attribute__((warn_unused_result));

/* Frees a tree; NULL is fine. */
void ydoc_free(YDocNode *node);

/* True for a plain scalar that YAML reads as null: empty, "~", "null", "Null", "NULL". */
bool ydoc_is_null(const YDocNode *node);

#endif
