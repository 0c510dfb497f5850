/*
 * pgproto.c — framing, parsing and building of PostgreSQL v3 messages. Every length read
 * from the network is checked before it is trusted.
 */
#include "proxy/pgproto.h"

#include <string.h>

void pg_framer_init(PgFramer *f, size_t max_len, size_t stream_min)
{
    f->max_len = max_len;
    f->stream_min = stream_min;
    f->remaining = 0;
    f->type = 0;
}

static bool streamable(char type)
{
    return type == 'D' || type == 'd';
}

void pg_framer_next(PgFramer *f, const uint8_t *p, size_t avail, Frame *out)
{
    memset(out, 0, sizeof *out);
    if (f->remaining > 0) {
        if (avail == 0) {
            out->kind = FRAME_NEED_MORE;
            out->need = 1;
            return;
        }
        size_t n = avail < f->remaining ? avail : f->remaining;
        f->remaining -= (uint32_t)n;
        out->kind = FRAME_PIECE;
        out->type = f->type;
        out->p = p;
        out->n = n;
        out->last = f->remaining == 0;
        return;
    }
    if (avail < 5) {
        out->kind = FRAME_NEED_MORE;
        out->need = 5;
        return;
    }
    uint32_t len = be32(p + 1);
    out->type = (char)p[0];
    out->len = len;
    /* The length counts itself; a negative int32 shows up here as a huge unsigned. */
    if (len < 4 || len > f->max_len) {
        out->kind = FRAME_BAD;
        return;
    }
    size_t total = (size_t)len + 1;
    if (avail >= total) {
        out->kind = FRAME_MESSAGE;
        out->p = p;
        out->n = total;
        return;
    }
    if (streamable(out->type) && len >= f->stream_min) {
        f->type = out->type;
        f->remaining = (uint32_t)(total - avail);
        out->kind = FRAME_PIECE;
        out->p = p;
        out->n = avail;
        out->first = true;
        return;
    }
    out->kind = FRAME_NEED_MORE;
    out->need = total;
}

/* --- parsers --------------------------------------------------------------------------- */

bool pg_parse_query(const uint8_t *payload, size_t len, const char **text, size_t *text_len)
{
    if (len == 0 || payload[len - 1] != 0)
        return false;
    const uint8_t *nul = memchr(payload, 0, len);
    if ((size_t)(nul - payload) != len - 1)
        return false;
    *text = (const char *)payload;
    *text_len = len - 1;
    return true;
}

bool pg_parse_parse(const uint8_t *payload, size_t len, PgParseMsg *out)
{
    ByteReader r;
    br_init(&r, payload, len);
    out->name = br_cstr(&r, NULL);
    out->query = br_cstr(&r, &out->query_len);
    out->n_param_types = br_u16(&r);
    out->param_types = br_bytes(&r, (size_t)out->n_param_types * 4);
    return !r.failed && br_left(&r) == 0;
}

bool pg_parse_bind(const uint8_t *payload, size_t len, PgBindMsg *out)
{
    ByteReader r;
    br_init(&r, payload, len);
    out->portal = br_cstr(&r, NULL);
    out->stmt = br_cstr(&r, NULL);
    out->n_formats = br_u16(&r);
    out->formats = br_bytes(&r, (size_t)out->n_formats * 2);
    out->n_params = br_u16(&r);
    size_t params_at = r.pos;
    for (uint16_t i = 0; i < out->n_params && !r.failed; i++) {
        int32_t plen = br_i32(&r);
        if (plen < -1) {
            r.failed = true;
            break;
        }
        if (plen > 0)
            (void)br_bytes(&r, (size_t)plen);
    }
    if (r.failed)
        return false;
    out->params = payload + params_at;
    out->params_len = r.pos - params_at;
    out->n_result_formats = br_u16(&r);
    out->result_formats = br_bytes(&r, (size_t)out->n_result_formats * 2);
    if (out->n_formats > 1 && out->n_formats != out->n_params)
        return false;
    return !r.failed && br_left(&r) == 0;
}

bool pg_parse_target(const uint8_t *payload, size_t len, PgTargetMsg *out)
{
    ByteReader r;
    br_init(&r, payload, len);
    out->kind = (char)br_u8(&r);
    out->name = br_cstr(&r, NULL);
    return !r.failed && br_left(&r) == 0 && (out->kind == 'S' || out->kind == 'P');
}

bool pg_parse_execute(const uint8_t *payload, size_t len, PgExecuteMsg *out)
{
    ByteReader r;
    br_init(&r, payload, len);
    out->portal = br_cstr(&r, NULL);
    out->max_rows = br_u32(&r);
    return !r.failed && br_left(&r) == 0;
}

int16_t pg_bind_param_format(const PgBindMsg *b, uint16_t i)
{
    if (b->n_formats == 0)
        return 0;
    if (b->n_formats == 1)
        return (int16_t)be16(b->formats);
    return (int16_t)be16(b->formats + 2 * (size_t)i);
}

const char *pg_error_field(const uint8_t *payload, size_t len, char code)
{
    ByteReader r;
    br_init(&r, payload, len);
    for (;;) {
        uint8_t field = br_u8(&r);
        if (r.failed || field == 0)
            return NULL;
        const char *value = br_cstr(&r, NULL);
        if (!value)
            return NULL;
        if ((char)field == code)
            return value;
    }
}

/* --- builders -------------------------------------------------------------------------- */

void pg_write_error(ByteWriter *w, const char *severity, const char *sqlstate,
                    const char *message, const char *detail)
{
    size_t at = bw_msg_begin(w, 'E');
    bw_u8(w, 'S');
    bw_cstr(w, severity);
    bw_u8(w, 'V');
    bw_cstr(w, severity);
    bw_u8(w, 'C');
    bw_cstr(w, sqlstate);
    bw_u8(w, 'M');
    bw_cstr(w, message);
    if (detail) {
        bw_u8(w, 'D');
        bw_cstr(w, detail);
    }
    bw_u8(w, 0);
    bw_msg_end(w, at);
}

void pg_write_ready(ByteWriter *w, char tx_status)
{
    size_t at = bw_msg_begin(w, 'Z');
    bw_u8(w, (uint8_t)tx_status);
    bw_msg_end(w, at);
}

void pg_write_empty(ByteWriter *w, char type)
{
    size_t at = bw_msg_begin(w, type);
    bw_msg_end(w, at);
}
