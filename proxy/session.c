/*
 * session.c — per-session tables and write sets.
 */
#include "proxy/session.h"

#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/catalog.h"
#include "proxy/pgproto.h"

void writeset_add(WriteSet *w, const char *name)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->names[i], name) == 0)
            return;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 8;
        char **names = realloc(w->names, cap * sizeof *names);
        if (!names) {
            w->all = true; /* cannot remember the table: bump everything instead */
            return;
        }
        w->names = names;
        w->cap = cap;
    }
    char *copy = strdup(name);
    if (!copy) {
        w->all = true;
        return;
    }
    w->names[w->n++] = copy;
}

void writeset_merge(WriteSet *dst, const WriteSet *src)
{
    dst->all = dst->all || src->all;
    for (size_t i = 0; i < src->n; i++)
        writeset_add(dst, src->names[i]);
}

void writeset_free_names(WriteSet *w)
{
    for (size_t i = 0; i < w->n; i++)
        free(w->names[i]);
    free(w->names);
    memset(w, 0, sizeof *w);
}

void stmt_free(void *p)
{
    Stmt *st = p;
    if (!st)
        return;
    sqlparse_release(st->analysis);
    free(st->param_types);
    free(st->parse_msg);
    free(st);
}

static void release_analysis(void *p)
{
    sqlparse_release(p);
}

void session_init(Session *s)
{
    memset(s, 0, sizeof *s);
    strmap_init(&s->stmts, stmt_free);
    strmap_init(&s->portals, free);
    strmap_init(&s->sql_prepared, release_analysis);
    strmap_init(&s->temp_tables, NULL);
    strmap_init(&s->guc_names, NULL);
    s->probe_needed = true;
}

void session_free(Session *s)
{
    strmap_free(&s->stmts);
    strmap_free(&s->portals);
    strmap_free(&s->sql_prepared);
    strmap_free(&s->temp_tables);
    strmap_free(&s->guc_names);
    writeset_clear(&s->tx_pending);
    writeset_clear(&s->just_bumped);
    catalog_release(s->cat);
    s->cat = NULL;
}

Stmt *session_stmt(Session *s, const char *name)
{
    return strmap_get(&s->stmts, name);
}

Stmt *stmt_new(const uint8_t *parse_msg, size_t len, SqlAnalysis *analysis, bool on_server)
{
    Stmt *st = calloc(1, sizeof *st);
    if (!st || len < 5)
        goto fail;
    st->parse_msg = malloc(len);
    if (!st->parse_msg)
        goto fail;
    memcpy(st->parse_msg, parse_msg, len);
    st->parse_len = len;
    PgParseMsg pm;
    if (!pg_parse_parse(st->parse_msg + 5, len - 5, &pm))
        goto fail;
    st->text = pm.query;
    st->text_len = pm.query_len;
    st->n_param_types = pm.n_param_types;
    if (pm.n_param_types) {
        st->param_types = malloc(pm.n_param_types * sizeof *st->param_types);
        if (!st->param_types)
            goto fail;
        for (uint16_t i = 0; i < pm.n_param_types; i++)
            st->param_types[i] = be32(pm.param_types + 4 * (size_t)i);
    }
    st->analysis = sqlparse_ref(analysis);
    st->on_server = on_server;
    return st;

fail:
    stmt_free(st);
    return NULL;
}

bool session_put_stmt(Session *s, const char *name, Stmt *st)
{
    if (!strmap_put(&s->stmts, name, st)) {
        stmt_free(st);
        return false;
    }
    return true;
}

void session_forget_statements(Session *s)
{
    strmap_clear(&s->stmts);
    strmap_clear(&s->sql_prepared);
}

void session_unnamed_gone(Session *s)
{
    Stmt *st = session_stmt(s, "");
    if (st)
        st->on_server = false;
}

void session_touch(Session *s)
{
    s->probe_needed = true;
}
