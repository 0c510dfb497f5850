/*
 * ydoc.c — turns libyaml's event stream into the ydoc tree that config.c walks. Working
 * from events rather than yaml_parser_load lets us refuse aliases (no billion laughs),
 * bound the nesting depth, and report libyaml's own syntax errors with their line.
 */
#include "config/ydoc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define WUR __attribute__((warn_unused_result))

typedef struct {
    YDocNode *root;                 /* the document, once started */
    YDocNode *open[YDOC_MAX_DEPTH]; /* mappings and lists not yet closed */
    int depth;                      /* entries used in open[] */
    int documents;                  /* documents seen so far */
    size_t nodes;                   /* nodes built so far */
    int err_line;                   /* where the first error is */
    char *err;                      /* caller's message buffer */
    size_t errlen;
} Builder;

static bool build_fail(Builder *b, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first error and returns false, so callers can `return build_fail(...)`. */
static bool build_fail(Builder *b, int line, const char *fmt, ...)
{
    va_list ap;

    b->err_line = line;
    if (b->err && b->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(b->err, b->errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

void ydoc_free(YDocNode *node)
{
    size_t i;

    if (!node)
        return;
    for (i = 0; i < node->n_items; i++)
        ydoc_free(node->items[i]);
    free(node->items);
    free(node->text);
    free(node);
}

bool ydoc_is_null(const YDocNode *node)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    size_t i;

    if (!node || node->kind != YDOC_SCALAR || !node->plain)
        return false;
    for (i = 0; i < sizeof(nulls) / sizeof(nulls[0]); i++)
        if (strcmp(node->text, nulls[i]) == 0)
            return true;
    return false;
}

/* libyaml counts lines from 0; clamp so a huge input cannot overflow an int. */
static int mark_line(const yaml_mark_t *m)
{
    return m->line < 100000000 ? (int)m->line + 1 : 100000000;
}

static YDocNode *node_new(YDocKind kind, const yaml_event_t *ev)
{
    YDocNode *n = calloc(1, sizeof(*n));

    if (!n)
        return NULL;
    n->kind = kind;
    n->line = mark_line(&ev->start_mark);
    if (kind == YDOC_SCALAR) {
        n->len = ev->data.scalar.length;
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->text = malloc(n->len + 1);
        if (n->text && n->len > 0)
            memcpy(n->text, ev->data.scalar.value, n->len);
    } else {
        n->text = malloc(1);
    }
    if (!n->text) {
        free(n);
        return NULL;
    }
    n->text[n->len] = '\0';
    return n;
}

/* Hangs a new node under the innermost open container (or makes it the root); from then on
 * the tree owns it, or it is freed here. */
static WUR bool attach(Builder *b, YDocNode *n)
{
    YDocNode *parent;
    YDocNode **grown;
    size_t cap;
    int line = n->line;

    /* Each node costs far more memory than its bytes of YAML: bound the total. */
    if (++b->nodes > YDOC_MAX_NODES) {
        ydoc_free(n);
        return build_fail(b, line, "more than %d YAML values", YDOC_MAX_NODES);
    }
    if (b->depth == 0) {
        if (b->root) {
            ydoc_free(n);
            return build_fail(b, line, "only one YAML document is allowed");
        }
        b->root = n;
        return true;
    }
    parent = b->open[b->depth - 1];
    if (parent->n_items == parent->cap_items) {
        cap = parent->cap_items ? parent->cap_items * 2 : 8;
        grown = realloc(parent->items, cap * sizeof(*grown));
        if (!grown) {
            ydoc_free(n);
            return build_fail(b, parent->line, "out of memory");
        }
        parent->items = grown;
        parent->cap_items = cap;
    }
    parent->items[parent->n_items++] = n;
    return true;
}

/* libyaml's own complaint, e.g. "mapping values are not allowed in this context". */
static bool syntax_error(Builder *b, const yaml_parser_t *p, const char *yaml, size_t len)
{
    size_t i, end;
    int line = 1;

    if (p->error == YAML_MEMORY_ERROR)
        return build_fail(b, 1, "out of memory while parsing YAML");
    if (p->error == YAML_READER_ERROR) {
        /* Reader errors carry a byte offset, not a mark. */
        end = p->problem_offset < len ? p->problem_offset : len;
        for (i = 0; i < end; i++)
            if (yaml[i] == '\n')
                line++;
        if (p->problem_value >= 0)
            return build_fail(b, line, "invalid YAML: %s (byte 0x%02X)",
                              p->problem ? p->problem : "unreadable input",
                              (unsigned)p->problem_value & 0xFFu);
        return build_fail(b, line, "invalid YAML: %s",
                          p->problem ? p->problem : "unreadable input");
    }
    line = mark_line(&p->problem_mark);
    if (p->context)
        return build_fail(b, line, "invalid YAML: %s (%s at line %d)",
                          p->problem ? p->problem : "syntax error", p->context,
                          mark_line(&p->context_mark));
    return build_fail(b, line, "invalid YAML: %s", p->problem ? p->problem : "syntax error");
}

/* Handles one event; *done is set at the end of the stream. */
static WUR bool on_event(Builder *b, const yaml_event_t *ev, bool *done)
{
    int line = mark_line(&ev->start_mark);
    YDocNode *n;

    switch (ev->type) {
    case YAML_STREAM_END_EVENT:
        *done = true;
        return true;
    case YAML_DOCUMENT_START_EVENT:
        if (++b->documents > 1)
            return build_fail(b, line, "only one YAML document is allowed");
        return true;
    case YAML_ALIAS_EVENT:
        return build_fail(b, line, "YAML aliases (*%s) are not supported; write the value out",
                          ev->data.alias.anchor && strlen((char *)ev->data.alias.anchor) <= 64
                              ? (const char *)ev->data.alias.anchor
                              : "...");
    case YAML_SCALAR_EVENT:
        n = node_new(YDOC_SCALAR, ev);
        if (!n)
            return build_fail(b, line, "out of memory");
        return attach(b, n);
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
        if (b->depth == YDOC_MAX_DEPTH)
            return build_fail(b, line, "YAML nested deeper than %d levels", YDOC_MAX_DEPTH);
        n = node_new(ev->type == YAML_MAPPING_START_EVENT ? YDOC_MAPPING : YDOC_SEQUENCE, ev);
        if (!n)
            return build_fail(b, line, "out of memory");
        if (!attach(b, n))
            return false;
        b->open[b->depth++] = n;
        return true;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        if (b->depth > 0)
            b->depth--;
        return true;
    default: /* stream start, document end, no event */
        return true;
    }
}

bool ydoc_parse(const char *yaml, size_t len, YDocNode **out, int *err_line, char *err,
                size_t errlen)
{
    Builder b = {.err = err, .errlen = errlen, .err_line = 1};
    yaml_parser_t parser;
    yaml_event_t ev;
    bool parser_ready = false, done = false, handled, ok = false;

    *out = NULL;
    if (!yaml)
        len = 0;
    if (!yaml_parser_initialize(&parser)) {
        build_fail(&b, 1, "out of memory");
        goto fail;
    }
    parser_ready = true;
    yaml_parser_set_input_string(&parser, (const unsigned char *)(yaml ? yaml : ""), len);
    while (!done) {
        if (!yaml_parser_parse(&parser, &ev)) {
            syntax_error(&b, &parser, yaml ? yaml : "", len);
            goto fail;
        }
        handled = on_event(&b, &ev, &done);
        yaml_event_delete(&ev);
        if (!handled)
            goto fail;
    }
    *out = b.root;
    b.root = NULL;
    ok = true;
fail:
    if (!ok && err_line)
        *err_line = b.err_line;
    if (parser_ready)
        yaml_parser_delete(&parser);
    ydoc_free(b.root);
    return ok;
}
