/*
 * scan.c — the cheap pass over a text with libpg_query's scanner (no parse): the statement's
 * shape (constants replaced by a placeholder, whitespace and comments gone, unquoted words
 * folded) that keys the shape memo, whether a string constant could be a time literal, and
 * an upper bound on the parse tree's nesting that keeps deep statements away from the parser.
 */
#include "sqlparse/internal.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Marks a constant in a shape, followed by its token class (the grammar accepts an integer
 * where it refuses a string: texts differing there must not share a parse). Cannot occur in
 * SQL text, nor can the NUL separating tokens. */
#define SHAPE_PLACEHOLDER '\x01'

/* Growable byte buffer with a sticky error flag, checked once at the end. */
typedef struct {
    char *data;
    size_t len, cap;
    bool failed;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void buf_put_folded(Buf *b, const char *s, size_t n)
{
    size_t start = b->len;
    buf_put(b, s, n);
    if (b->failed)
        return;
    for (size_t i = start; i < b->len; i++) {
        if (b->data[i] >= 'A' && b->data[i] <= 'Z')
            b->data[i] = (char)(b->data[i] + ('a' - 'A'));
    }
}

/*
 * Nesting estimate. libpg_query's tree gets deeper through parentheses (and CASE … END),
 * chains of set operations and joins, and chains of operators; it stays flat across list
 * commas, AND/OR (flattened by the grammar) and clause keywords, which start a fresh
 * subtree. So per bracket level: chain count, plus the longest run of other non-leaf tokens
 * between two such resets (doubled: BETWEEN … AND and IS DISTINCT FROM straddle a reset),
 * plus whatever hangs below. An over-estimate only costs a TOO_COMPLEX.
 */
typedef struct {
    size_t chain;     /* UNION/INTERSECT/EXCEPT/JOIN at this level */
    size_t run;       /* non-leaf tokens since the last reset */
    size_t max_run;   /* longest finished run */
    size_t max_child; /* deepest bracket below, plus where it hangs */
    bool is_case;     /* opened by CASE, closed by END */
} Level;

#define CHAIN_WEIGHT 2
#define LEVEL_COST   6

typedef struct {
    Level *levels;
    size_t n, cap;
    size_t max_stmt; /* deepest finished statement */
    bool failed;
} Nesting;

static size_t level_depth(const Level *l)
{
    size_t run = l->run > l->max_run ? l->run : l->max_run;
    size_t own = 2 * run;
    size_t below = l->max_child > own ? l->max_child : own;
    return LEVEL_COST + CHAIN_WEIGHT * l->chain + below;
}

static void nest_push(Nesting *ns, bool is_case)
{
    if (ns->failed)
        return;
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 32;
        Level *p = realloc(ns->levels, cap * sizeof *p);
        if (!p) {
            ns->failed = true;
            return;
        }
        ns->levels = p;
        ns->cap = cap;
    }
    ns->levels[ns->n++] = (Level){.is_case = is_case};
}

/* Closes the innermost level (never the statement's own). */
static void nest_pop(Nesting *ns)
{
    if (ns->failed || ns->n < 2)
        return;
    size_t d = level_depth(&ns->levels[--ns->n]);
    Level *parent = &ns->levels[ns->n - 1];
    size_t at = 2 * parent->run + d;
    if (at > parent->max_child)
        parent->max_child = at;
}

static void nest_reset_run(Level *l)
{
    if (l->run > l->max_run)
        l->max_run = l->run;
    l->run = 0;
}

static void nest_end_statement(Nesting *ns)
{
    while (ns->n > 1)
        nest_pop(ns);
    if (ns->failed || ns->n == 0)
        return;
    size_t d = level_depth(&ns->levels[0]);
    if (d > ns->max_stmt)
        ns->max_stmt = d;
    ns->levels[0] = (Level){0};
}

static void nest_token(Nesting *ns, PgQuery__Token t)
{
    if (ns->failed)
        return;
    Level *top = &ns->levels[ns->n - 1];
    switch (t) {
    case PG_QUERY__TOKEN__ASCII_40: /* ( */
    case PG_QUERY__TOKEN__ASCII_91: /* [ */
        nest_push(ns, false);
        break;
    case PG_QUERY__TOKEN__CASE:
        top->run++;
        nest_push(ns, true);
        break;
    case PG_QUERY__TOKEN__ASCII_41: /* ) */
    case PG_QUERY__TOKEN__ASCII_93: /* ] */
        /* Close any CASE left open inside, then the bracket itself. */
        while (ns->n > 1 && ns->levels[ns->n - 1].is_case)
            nest_pop(ns);
        nest_pop(ns);
        break;
    case PG_QUERY__TOKEN__END_P:
        if (top->is_case)
            nest_pop(ns);
        else
            top->run++;
        break;
    case PG_QUERY__TOKEN__UNION:
    case PG_QUERY__TOKEN__INTERSECT:
    case PG_QUERY__TOKEN__EXCEPT:
    case PG_QUERY__TOKEN__JOIN:
        top->chain++;
        nest_reset_run(top);
        break;
    case PG_QUERY__TOKEN__ASCII_44: /* , */
    case PG_QUERY__TOKEN__AND:
    case PG_QUERY__TOKEN__OR:
    case PG_QUERY__TOKEN__SELECT:
    case PG_QUERY__TOKEN__FROM:
    case PG_QUERY__TOKEN__WHERE:
    case PG_QUERY__TOKEN__GROUP_P:
    case PG_QUERY__TOKEN__HAVING:
    case PG_QUERY__TOKEN__WINDOW:
    case PG_QUERY__TOKEN__ORDER:
    case PG_QUERY__TOKEN__LIMIT:
    case PG_QUERY__TOKEN__OFFSET:
    case PG_QUERY__TOKEN__RETURNING:
    case PG_QUERY__TOKEN__VALUES:
    case PG_QUERY__TOKEN__SET:
    case PG_QUERY__TOKEN__ON:
    case PG_QUERY__TOKEN__USING:
    case PG_QUERY__TOKEN__WHEN:
    case PG_QUERY__TOKEN__THEN:
    case PG_QUERY__TOKEN__ELSE:
        nest_reset_run(top);
        break;
    case PG_QUERY__TOKEN__ASCII_59: /* ; */
        nest_end_statement(ns);
        break;
    case PG_QUERY__TOKEN__IDENT:
    case PG_QUERY__TOKEN__UIDENT:
    case PG_QUERY__TOKEN__SCONST:
    case PG_QUERY__TOKEN__USCONST:
    case PG_QUERY__TOKEN__BCONST:
    case PG_QUERY__TOKEN__XCONST:
    case PG_QUERY__TOKEN__ICONST:
    case PG_QUERY__TOKEN__FCONST:
    case PG_QUERY__TOKEN__PARAM:
    case PG_QUERY__TOKEN__ASCII_46: /* . */
    case PG_QUERY__TOKEN__SQL_COMMENT:
    case PG_QUERY__TOKEN__C_COMMENT:
        break;
    default:
        top->run++;
        break;
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes the backslash escapes of an E'…' body into out (at most n bytes, never more than
 * the input). Only letters and blanks matter to the time-literal test, so a code point
 * outside ASCII becomes a byte that is neither.
 */
static size_t decode_escapes(const char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 == n) {
            out[o++] = s[i];
            continue;
        }
        char c = s[++i];
        unsigned long v = 0;
        switch (c) {
        case 'b':
            out[o++] = '\b';
            break;
        case 'f':
            out[o++] = '\f';
            break;
        case 'n':
            out[o++] = '\n';
            break;
        case 'r':
            out[o++] = '\r';
            break;
        case 't':
            out[o++] = '\t';
            break;
        case 'x': {
            int digits = 0;
            while (digits < 2 && i + 1 < n && hex_value(s[i + 1]) >= 0)
                v = v * 16 + (unsigned long)hex_value(s[++i]), digits++;
            out[o++] = digits ? (char)(v & 0xff) : 'x';
            break;
        }
        case 'u':
        case 'U': {
            int want = c == 'u' ? 4 : 8, digits = 0;
            while (digits < want && i + 1 < n && hex_value(s[i + 1]) >= 0)
                v = v * 16 + (unsigned long)hex_value(s[++i]), digits++;
            out[o++] = v < 0x80 ? (char)v : (char)0x80;
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                v = (unsigned long)(c - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    v = v * 8 + (unsigned long)(s[++i] - '0');
                out[o++] = (char)(v & 0xff);
            } else {
                out[o++] = c;
            }
        }
    }
    return o;
}

bool sqlparse_maybe_time_literal(const char *value, size_t len)
{
    if (sqlparse_is_time_literal(value, len))
        return true;
    /* With standard_conforming_strings off the server reads backslash escapes in '…' too. */
    if (!memchr(value, '\\', len))
        return false;
    char *tmp = malloc(len ? len : 1);
    if (!tmp)
        return true; /* cannot tell: assume the worst */
    size_t n = decode_escapes(value, len, tmp);
    bool r = sqlparse_is_time_literal(tmp, n);
    free(tmp);
    return r;
}

/*
 * Could the string constant spelt `raw` (a whole SCONST token: '…', E'…', $tag$…$tag$, with
 * '' doubling and continuation lines) be a time literal? Decodes it into `scratch`, which
 * holds at least raw_len bytes.
 */
static bool sconst_maybe_time(const char *raw, size_t raw_len, char *scratch)
{
    if (raw_len == 0)
        return false;
    if (raw[0] == '$') {
        const char *end = memchr(raw + 1, '$', raw_len - 1);
        if (!end)
            return true;
        size_t tag = (size_t)(end - raw) + 1;
        if (raw_len < 2 * tag)
            return true;
        return sqlparse_maybe_time_literal(raw + tag, raw_len - 2 * tag);
    }
    bool extended = raw[0] == 'E' || raw[0] == 'e';
    const char *p = memchr(raw, '\'', raw_len);
    if (!p)
        return true;
    size_t i = (size_t)(p - raw) + 1, n = 0;
    /* Copy the body; a quote not doubled ends a segment, the next quote starts another. */
    while (i < raw_len) {
        char c = raw[i];
        if (c == '\\' && extended && i + 1 < raw_len) {
            scratch[n++] = c;
            scratch[n++] = raw[i + 1];
            i += 2;
        } else if (c == '\'' && i + 1 < raw_len && raw[i + 1] == '\'') {
            scratch[n++] = '\'';
            i += 2;
        } else if (c == '\'') {
            const char *q = i + 1 < raw_len ? memchr(raw + i + 1, '\'', raw_len - i - 1) : NULL;
            if (!q)
                break;
            i = (size_t)(q - raw) + 1;
        } else {
            scratch[n++] = c;
            i++;
        }
    }
    if (!extended)
        return sqlparse_maybe_time_literal(scratch, n);
    /* Decoding only shrinks, so it can work in place. */
    size_t m = decode_escapes(scratch, n, scratch);
    return sqlparse_maybe_time_literal(scratch, m);
}

/* Whitespace as PostgreSQL's scanner skips it. */
static bool only_blanks(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!strchr(" \t\n\r\f\v", s[i]) || s[i] == '\0')
            return false;
    }
    return true;
}

/* The class letter of a constant token, 0 for other tokens. */
static char constant_class(PgQuery__Token t)
{
    switch (t) {
    case PG_QUERY__TOKEN__SCONST:
        return 's';
    case PG_QUERY__TOKEN__USCONST:
        return 'u';
    case PG_QUERY__TOKEN__BCONST:
        return 'b';
    case PG_QUERY__TOKEN__XCONST:
        return 'x';
    case PG_QUERY__TOKEN__ICONST:
        return 'i';
    case PG_QUERY__TOKEN__FCONST:
        return 'f';
    default:
        return 0;
    }
}

/* One token of a scan result, as the wire format carries it. */
typedef struct {
    int32_t start, end;
    PgQuery__Token token;
    PgQuery__KeywordKind keyword_kind;
} ScanTok;

/* Reads a varint; false past the end or beyond 10 bytes. */
static bool pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

/* Skips a field of the given wire type; false when malformed. */
static bool pb_skip(const uint8_t **p, const uint8_t *end, unsigned wire)
{
    uint64_t v;
    switch (wire) {
    case 0:
        return pb_varint(p, end, &v);
    case 1:
        if (end - *p < 8)
            return false;
        *p += 8;
        return true;
    case 2:
        if (!pb_varint(p, end, &v) || v > (uint64_t)(end - *p))
            return false;
        *p += v;
        return true;
    case 5:
        if (end - *p < 4)
            return false;
        *p += 4;
        return true;
    default:
        return false;
    }
}

/*
 * Decodes pg_query's ScanResult (version = 1, repeated ScanToken tokens = 2; ScanToken:
 * start = 1, end = 2, token = 4, keyword_kind = 5) straight from the wire. protobuf-c's generic
 * unpacker cost six times the scanning itself; this reads the four integers per token, with
 * every length checked. Returns the token count, or -1 when malformed or out of memory.
 */
static long decode_scan(const uint8_t *buf, size_t len, ScanTok **out)
{
    const uint8_t *p = buf, *end = buf + len;
    size_t n = 0, cap = 0;
    ScanTok *toks = NULL;
    while (p < end) {
        uint64_t key;
        if (!pb_varint(&p, end, &key))
            goto fail;
        if (key >> 3 != 2 || (key & 7) != 2) {
            if (!pb_skip(&p, end, (unsigned)(key & 7)))
                goto fail;
            continue;
        }
        uint64_t mlen;
        if (!pb_varint(&p, end, &mlen) || mlen > (uint64_t)(end - p))
            goto fail;
        const uint8_t *m = p, *mend = p + mlen;
        p = mend;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            ScanTok *t = realloc(toks, cap * sizeof *t);
            if (!t)
                goto fail;
            toks = t;
        }
        ScanTok t = {0, 0, 0, 0};
        while (m < mend) {
            uint64_t k, v;
            if (!pb_varint(&m, mend, &k))
                goto fail;
            if ((k & 7) != 0) {
                if (!pb_skip(&m, mend, (unsigned)(k & 7)))
                    goto fail;
                continue;
            }
            if (!pb_varint(&m, mend, &v))
                goto fail;
            switch (k >> 3) {
            case 1:
                t.start = (int32_t)(int64_t)v;
                break;
            case 2:
                t.end = (int32_t)(int64_t)v;
                break;
            case 4:
                t.token = (PgQuery__Token)(int32_t)v;
                break;
            case 5:
                t.keyword_kind = (PgQuery__KeywordKind)(int32_t)v;
                break;
            default:
                break;
            }
        }
        toks[n++] = t;
    }
    *out = toks;
    return (long)n;
fail:
    free(toks);
    return -1;
}

bool sqlparse_scan_text(const char *text, bool want_shape, SqlScan *out)
{
    static const char separator = '\0';
    size_t len = strlen(text);
    ScanTok *toks = NULL;
    Buf shape = {0};
    Nesting ns = {0};
    char *scratch = NULL;
    bool ok = false;

    *out = (SqlScan){0};
    sqlparse_note_libpg_used();
    PgQueryScanResult r = pg_query_scan(text);
    if (r.error) {
        ok = true; /* the text is bad, not the machine: out->ok stays false */
        goto done;
    }
    long n_tokens = decode_scan((const uint8_t *)r.pbuf.data, r.pbuf.len, &toks);
    if (n_tokens < 0)
        goto done;
    scratch = malloc(len + 1);
    if (!scratch)
        goto done;
    nest_push(&ns, false);

    out->shape_usable = true;
    size_t covered = 0; /* text before this offset belongs to a token or is blank */
    for (long i = 0; i < n_tokens; i++) {
        const ScanTok *t = &toks[i];
        nest_token(&ns, t->token);
        /* Positions come from the library; still, never trust a length. */
        if (t->start < 0 || t->end < t->start || (size_t)t->end > len ||
            (size_t)t->start < covered) {
            out->shape_usable = false;
            continue;
        }
        /* A shape must spell every byte that matters: the scanner reports U&"…" as just "U"
         * and U&'…' as nothing, so a gap that is not blank means texts could collide. */
        if (!only_blanks(text + covered, (size_t)t->start - covered))
            out->shape_usable = false;
        covered = (size_t)t->end;
        if (t->token == PG_QUERY__TOKEN__SQL_COMMENT || t->token == PG_QUERY__TOKEN__C_COMMENT)
            continue;
        const char *tok = text + t->start;
        size_t tok_len = (size_t)(t->end - t->start);
        if (t->token == PG_QUERY__TOKEN__USCONST || t->token == PG_QUERY__TOKEN__UIDENT) {
            out->shape_usable = false; /* see above; and U&'…' escapes are not decoded here */
        } else if (t->token == PG_QUERY__TOKEN__SCONST && out->shape_usable &&
                   sconst_maybe_time(tok, tok_len, scratch)) {
            out->shape_usable = false;
        }
        if (!want_shape)
            continue;
        char cls = constant_class(t->token);
        if (cls) {
            char placeholder[2] = {SHAPE_PLACEHOLDER, cls};
            buf_put(&shape, placeholder, 2);
        } else if (t->keyword_kind != PG_QUERY__KEYWORD_KIND__NO_KEYWORD ||
                   (t->token == PG_QUERY__TOKEN__IDENT && tok_len > 0 && tok[0] != '"'))
            buf_put_folded(&shape, tok, tok_len);
        else
            buf_put(&shape, tok, tok_len);
        buf_put(&shape, &separator, 1);
    }
    if (!only_blanks(text + covered, len - covered))
        out->shape_usable = false;
    nest_end_statement(&ns);
    if (ns.failed || shape.failed)
        goto done;

    out->ok = true;
    out->nesting = ns.max_stmt;
    if (want_shape) {
        out->shape = shape.data;
        out->shape_len = shape.len;
        shape.data = NULL;
    } else {
        out->shape_usable = false;
    }
    ok = true;
done:
    if (!out->ok)
        out->shape_usable = false;
    free(shape.data);
    free(ns.levels);
    free(scratch);
    free(toks);
    pg_query_free_scan_result(r);
    return ok;
}

void sqlparse_scan_clear(SqlScan *scan)
{
    if (!scan)
        return;
    free(scan->shape);
    *scan = (SqlScan){0};
}

/* ---- the quick shape ------------------------------------------------------------------- */

/*
 * Most statements an application repeats are plain: words, numbers, punctuation, operators.
 * For those the shape is built here in one pass, without libpg_query's scanner (which packs
 * every token into protobuf). Anything outside that subset (quotes, dollar signs, comments,
 * non-ASCII, numbers with a point or exponent) makes this give up, and the scanner decides.
 *
 * Quick shapes start with SHAPE_QUICK; a scanner shape starting with that byte is the
 * one-character token "\x02" and has NUL next, which a quick shape never has. Within the
 * subset the lexing is unambiguous: every byte that could change a token is kept, words
 * are separated from each other, operator runs are kept whole (PostgreSQL lexes a run the
 * same wherever it stands), so two texts with one quick shape differ only in integer values
 * of the same class, whitespace and the case of unquoted words.
 */
#define SHAPE_QUICK '\x02'

/* Byte classes of the quick shape (one table load per byte instead of a chain of tests). */
enum {
    QC_OTHER = 0,     /* digits (an integer starts), or ends the quick shape: quotes, $,
                         backslash, control, non-ASCII; what continues a word: quick_word */
    QC_SPACE = 1,     /* blanks between tokens */
    QC_IDENT = 2,     /* starts a word */
    QC_OP = 16,       /* operator characters: a run is one token */
    QC_PUNCT = 32,    /* one-character tokens */
};

static const unsigned char quick_class[256] = {
    [' '] = QC_SPACE, ['\t'] = QC_SPACE, ['\n'] = QC_SPACE, ['\r'] = QC_SPACE, ['\f'] = QC_SPACE,
    ['_'] = QC_IDENT,
#define R(c) [c] = QC_IDENT, [c - 'a' + 'A'] = QC_IDENT
    R('a'), R('b'), R('c'), R('d'), R('e'), R('f'), R('g'), R('h'), R('i'), R('j'), R('k'),
    R('l'), R('m'), R('n'), R('o'), R('p'), R('q'), R('r'), R('s'), R('t'), R('u'), R('v'),
    R('w'), R('x'), R('y'), R('z'),
#undef R
    ['~'] = QC_OP, ['!'] = QC_OP, ['@'] = QC_OP, ['#'] = QC_OP, ['^'] = QC_OP, ['&'] = QC_OP,
    ['|'] = QC_OP, ['`'] = QC_OP, ['?'] = QC_OP, ['+'] = QC_OP, ['-'] = QC_OP, ['*'] = QC_OP,
    ['/'] = QC_OP, ['%'] = QC_OP, ['<'] = QC_OP, ['>'] = QC_OP, ['='] = QC_OP, [':'] = QC_OP,
    ['('] = QC_PUNCT, [')'] = QC_PUNCT, ['['] = QC_PUNCT, [']'] = QC_PUNCT, [','] = QC_PUNCT,
    [';'] = QC_PUNCT,
};

/* A word's bytes (letters, digits, _ and $) folded to lower case; 0 for a byte that does not
 * continue a word. */
static const unsigned char quick_word[256] = {
    ['_'] = '_', ['$'] = '$',
#define R(c) [c] = c, [c - 'a' + 'A'] = c
    R('a'), R('b'), R('c'), R('d'), R('e'), R('f'), R('g'), R('h'), R('i'), R('j'), R('k'),
    R('l'), R('m'), R('n'), R('o'), R('p'), R('q'), R('r'), R('s'), R('t'), R('u'), R('v'),
    R('w'), R('x'), R('y'), R('z'),
#undef R
    ['0'] = '0', ['1'] = '1', ['2'] = '2', ['3'] = '3', ['4'] = '4', ['5'] = '5', ['6'] = '6',
    ['7'] = '7', ['8'] = '8', ['9'] = '9',
};

static bool quick_ident_start(unsigned char ch)
{
    return quick_class[ch] & QC_IDENT;
}

static bool quick_ident_cont(unsigned char ch)
{
    return quick_word[ch] != 0;
}

static bool quick_op_char(unsigned char ch)
{
    return quick_class[ch] & QC_OP;
}

bool sqlparse_quick_shape(const char *text, size_t len, char *out, size_t cap, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)text;
    size_t at = 0, i = 0;
    if (cap < SQLPARSE_QUICK_SHAPE_CAP(len))
        return false;
    out[at++] = SHAPE_QUICK;
    while (i < len) {
        unsigned char ch = p[i];
        size_t start = i;
        if (quick_class[ch] & QC_SPACE) {
            i++;
            continue;
        }
        if (quick_ident_start(ch)) {
            /* One table load per byte classifies it and folds its case. */
            const unsigned char *word = p + i;
            char *to = out + at;
            size_t n = 0, room = len - i;
            unsigned char folded;
            while (n < room && (folded = quick_word[word[n]]) != 0)
                to[n++] = (char)folded;
            i += n;
            at += n;
            if (i < len && p[i] >= 0x80)
                return false;
            /* U&"…", E'…', B'…', X'…', N'…': a prefix glued to a quote. */
            if (i < len && (p[i] == '\'' || p[i] == '"' || p[i] == '&'))
                return false;
        } else if (ch >= '0' && ch <= '9') {
            uint64_t v = 0;
            while (i < len && p[i] >= '0' && p[i] <= '9') {
                if (v <= INT32_MAX)
                    v = v * 10 + (uint64_t)(p[i] - '0');
                i++;
            }
            /* 1.5, 1e3, 12abc (an error in PostgreSQL 15), 1..2: the scanner's job. */
            if (i < len && (p[i] == '.' || quick_ident_cont(p[i]) || p[i] >= 0x80))
                return false;
            out[at++] = SHAPE_PLACEHOLDER;
            out[at++] = v <= INT32_MAX ? 'i' : 'f'; /* PostgreSQL: too big for int4 → FCONST */
        } else if (ch == '"') {
            /* Quoted identifier, kept as written ("" is an escaped quote). */
            i++;
            for (;;) {
                if (i >= len)
                    return false;
                if (p[i] == '"' && (i + 1 >= len || p[i + 1] != '"'))
                    break;
                i += p[i] == '"' ? 2 : 1;
            }
            i++;
            if (i == start + 2)
                return false; /* "" is an error */
            memcpy(out + at, p + start, i - start);
            at += i - start;
        } else if (quick_op_char(ch)) {
            while (i < len && quick_op_char(p[i]))
                i++;
            for (size_t k = start; k + 1 < i; k++)
                if ((p[k] == '-' && p[k + 1] == '-') || (p[k] == '/' && p[k + 1] == '*'))
                    return false; /* a comment starts inside the run */
            memcpy(out + at, p + start, i - start);
            at += i - start;
        } else if (ch == '.') {
            if (i + 1 < len && (p[i + 1] == '.' || (p[i + 1] >= '0' && p[i + 1] <= '9')))
                return false; /* .5, .. */
            out[at++] = '.';
            i++;
        } else if (quick_class[ch] & QC_PUNCT) {
            out[at++] = (char)ch;
            i++;
        } else {
            return false; /* quotes, $, backslash, control characters, non-ASCII */
        }
        out[at++] = '\0';
    }
    *out_len = at;
    return true;
}
