/*
 * fuzz_sqlparse.c — libFuzzer target for statement analysis: sqlparse_analyze() on arbitrary
 * text without a memo, and with one through both of its paths (exact text, then a variant
 * whose constants differ, which may be answered by shape), then the proxy's judgement of the
 * result (decide_read/decide_writes) with no catalog and an empty session.
 *
 * Besides crashes it checks one promise of sqlparse.h: the answer never depends on the memo.
 * An analysis found by shape must equal a fresh parse of the same text, else a cached
 * decision could be borrowed by a statement it does not describe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "proxy/catalog.h"
#include "proxy/decide.h"
#include "proxy/session.h"
#include "sqlparse/sqlparse.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Config *cfg;
static FILE *diag; /* stderr as it was before libFuzzer's -close_fd_mask=2 */

/* Per-table and per-function rules, so the TTL and declared-write paths run too. */
static const char RULES[] = "tables:\n"
                            "  products: { ttl: 10m }\n"
                            "  orders: { ttl: 5s }\n"
                            "  audit_log: { cache: false }\n"
                            "  v_report: { safe: true }\n"
                            "  t: { also_invalidates: [t_totals, stock] }\n"
                            "functions:\n"
                            "  place_order: { writes: [orders, stock] }\n"
                            "  compute_price: { writes: [] }\n";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd = dup(2);
    diag = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!diag)
        diag = stderr;
    char err[CONFIG_ERR_LEN];
    if (!config_load_buffer("rules.yaml", RULES, sizeof RULES - 1, &cfg, err, sizeof err)) {
        fprintf(stderr, "fuzz_sqlparse: %s\n", err);
        abort();
    }
    return 0;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool same_rels(const SqlRelation *a, size_t na, const SqlRelation *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!same_str(a[i].schema, b[i].schema) || !same_str(a[i].name, b[i].name))
            return false;
    return true;
}

static bool same_analysis(const SqlAnalysis *a, const SqlAnalysis *b)
{
    if (a->kind != b->kind || a->reason != b->reason || a->reasons != b->reasons ||
        a->n_statements != b->n_statements || !same_str(a->command, b->command))
        return false;
    if (!same_rels(a->reads, a->n_reads, b->reads, b->n_reads) ||
        !same_rels(a->writes, a->n_writes, b->writes, b->n_writes) ||
        !same_rels(a->settings, a->n_settings, b->settings, b->n_settings))
        return false;
    if (a->n_functions != b->n_functions)
        return false;
    for (size_t i = 0; i < a->n_functions; i++)
        if (!same_str(a->functions[i].schema, b->functions[i].schema) ||
            !same_str(a->functions[i].name, b->functions[i].name) ||
            a->functions[i].nargs != b->functions[i].nargs)
            return false;
    return a->invalidate_all == b->invalidate_all && a->changes_session == b->changes_session &&
           a->creates_temp == b->creates_temp && a->discards_temp == b->discards_temp &&
           a->discards_all == b->discards_all && a->is_ddl == b->is_ddl &&
           a->has_locking == b->has_locking && a->has_params == b->has_params &&
           a->tx_op == b->tx_op && a->has_commit == b->has_commit &&
           a->has_rollback == b->has_rollback && a->has_tx_control == b->has_tx_control &&
           a->isolation == b->isolation && a->sets_default_isolation == b->sets_default_isolation &&
           a->default_isolation == b->default_isolation &&
           same_str(a->prepare_name, b->prepare_name) && a->prepare_kind == b->prepare_kind &&
           a->prepare_reason == b->prepare_reason && same_str(a->execute_name, b->execute_name) &&
           same_str(a->deallocate_name, b->deallocate_name) && !a->error == !b->error;
}

static void check_same(const char *what, const char *text, size_t len, const SqlAnalysis *memo,
                       const SqlAnalysis *fresh)
{
    if (same_analysis(memo, fresh))
        return;
    fprintf(diag,
            "fuzz_sqlparse: %s analysis differs from a fresh parse for %zu bytes: \"%.*s\"\n"
            "  memo:  kind %s reason %s reads %zu writes %zu functions %zu\n"
            "  fresh: kind %s reason %s reads %zu writes %zu functions %zu\n",
            what, len, (int)(len > 300 ? 300 : len), text, sqlparse_kind_name(memo->kind),
            sqlparse_reason_name(memo->reason), memo->n_reads, memo->n_writes, memo->n_functions,
            sqlparse_kind_name(fresh->kind), sqlparse_reason_name(fresh->reason), fresh->n_reads,
            fresh->n_writes, fresh->n_functions);
    fflush(diag);
    abort();
}

/* The same text with other constants: digits of numbers and characters inside quotes move
 * on by one, identifiers stay (a rough scan is enough: any text is a fair test). */
static char *variant(const char *text, size_t len)
{
    char *v = malloc(len + 1);
    if (!v)
        return NULL;
    bool quoted = false, ident = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        bool letter = ch == '_' || ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z');
        bool digit = ch >= '0' && ch <= '9';
        if (ch == '\'') {
            quoted = !quoted;
        } else if (quoted) {
            if (digit)
                ch = ch == '9' ? '0' : (char)(ch + 1);
            else if (ch >= 'a' && ch <= 'y')
                ch = (char)(ch + 1);
        } else if (digit && !ident) {
            ch = ch == '9' ? '0' : (char)(ch + 1);
        }
        ident = !quoted && (letter || ch == '$' || (ident && digit));
        v[i] = ch;
    }
    v[len] = 0;
    return v;
}

static void judge(const SqlAnalysis *a)
{
    static const char tx[3] = {'I', 'T', 'E'};
    Session s;
    session_init(&s);
    for (int i = 0; i < 3; i++) {
        ReadTables t;
        int r = decide_read(cfg, NULL, i == 1 ? CATALOG_LOADING : CATALOG_FAILED, &s, tx[i], a, &t);
        if (r == DECIDE_CACHE && t.ttl_ms <= 0)
            abort();
        readtables_free(&t);
        s.tx_wrote = i == 1;
    }
    WriteSet w = {0};
    (void)decide_writes(cfg, NULL, &s, a, &w);
    writeset_clear(&w);
    session_free(&s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    SqlAnalysis *fresh = sqlparse_analyze(NULL, text, size);
    SqlMemo *memo = sqlparse_memo_new(8);
    if (!fresh || !memo)
        abort();
    judge(fresh);

    /* A NUL ends the text, as the analyser does. */
    const char *nul = memchr(text, 0, size);
    size_t len = nul ? (size_t)(nul - text) : size;

    SqlAnalysis *first = sqlparse_analyze(memo, text, size);
    SqlAnalysis *again = sqlparse_analyze(memo, text, size); /* a hit: by text or quick shape */
    if (!first || again != first)
        abort();
    check_same("memoised", text, len, first, fresh);

    char *v = variant(text, len);
    if (v) {
        SqlAnalysis *by_shape = sqlparse_analyze(memo, v, len);
        SqlAnalysis *v_fresh = sqlparse_analyze(NULL, v, len);
        if (!by_shape || !v_fresh)
            abort();
        check_same("shape-memoised", v, len, by_shape, v_fresh);
        judge(by_shape);
        sqlparse_release(by_shape);
        sqlparse_release(v_fresh);
        free(v);
    }
    sqlparse_release(first);
    sqlparse_release(again);
    sqlparse_memo_free(memo);
    sqlparse_release(fresh);
    return 0;
}
