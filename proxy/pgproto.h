/*
 * pgproto.h — PostgreSQL wire protocol v3: framing of the byte stream into messages (with
 * length limits and streaming of big rows), bounds-checked parsers of the frontend messages
 * pgstash acts on, and builders of the messages it writes itself.
 */
#ifndef PGSTASH_PGPROTO_H
#define PGSTASH_PGPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"

#define PG_PROTOCOL_3      196608u   /* 3.0 */
#define PG_CANCEL_REQUEST  80877102u
#define PG_SSL_REQUEST     80877103u
#define PG_GSSENC_REQUEST  80877104u

/* --- framing ------------------------------------------------------------------------- */

typedef enum {
    FRAME_MESSAGE,   /* a whole message is at p[0..n) */
    FRAME_PIECE,     /* a piece of a streamed message is at p[0..n) */
    FRAME_NEED_MORE, /* not enough bytes: `need` is the total the caller must buffer */
    FRAME_BAD,       /* protocol violation: length below 4 or above the maximum */
} FrameKind;

typedef struct {
    FrameKind kind;
    char type;        /* message type byte */
    const uint8_t *p; /* bytes to consume (whole message, or the piece) */
    size_t n;         /* their count */
    uint32_t len;     /* the message's length field (bytes after the type byte) */
    bool first;       /* FRAME_PIECE: this piece starts the message (holds its header) */
    bool last;        /* FRAME_PIECE: this piece ends the message */
    size_t need;      /* FRAME_NEED_MORE: total bytes needed from p */
} Frame;

/*
 * Splits a byte stream into messages. Messages of a streamable type (DataRow, CopyData)
 * longer than `stream_min` are handed over in pieces as bytes arrive, so a 100 MB row never
 * needs a 100 MB buffer; every other message is handed over whole, up to `max_len`.
 */
typedef struct {
    size_t max_len;     /* largest allowed length field */
    size_t stream_min;  /* streamable messages at least this long may come in pieces */
    uint32_t remaining; /* bytes of the current streamed message still to come */
    char type;          /* type of the streamed message */
} PgFramer;

void pg_framer_init(PgFramer *f, size_t max_len, size_t stream_min);

/* Looks at the next bytes of the stream. The caller handles the frame and consumes
 * frame->n bytes (nothing for NEED_MORE/BAD), then calls again. */
void pg_framer_next(PgFramer *f, const uint8_t *p, size_t avail, Frame *out);

/* True while a streamed message is only partly passed. */
static inline bool pg_framer_mid_message(const PgFramer *f)
{
    return f->remaining > 0;
}

/* --- frontend message parsers (payload = bytes after type and length) ---------------- */

typedef struct {
    const char *name;          /* prepared statement name, "" = unnamed */
    const char *query;         /* NUL-terminated query text */
    size_t query_len;
    uint16_t n_param_types;
    const uint8_t *param_types; /* n_param_types big-endian OIDs */
} PgParseMsg;

typedef struct {
    const char *portal;
    const char *stmt;
    uint16_t n_formats;          /* parameter format codes as sent (0, 1 or n) */
    const uint8_t *formats;      /* big-endian int16s */
    uint16_t n_params;
    const uint8_t *params;       /* n_params × (int32 len, bytes); validated */
    size_t params_len;
    uint16_t n_result_formats;
    const uint8_t *result_formats; /* big-endian int16s */
} PgBindMsg;

typedef struct {
    char kind;        /* 'S' statement or 'P' portal */
    const char *name;
} PgTargetMsg;        /* Describe and Close */

typedef struct {
    const char *portal;
    uint32_t max_rows; /* 0 = no limit */
} PgExecuteMsg;

bool pg_parse_parse(const uint8_t *payload, size_t len, PgParseMsg *out)
    __attribute__((warn_unused_result));
bool pg_parse_bind(const uint8_t *payload, size_t len, PgBindMsg *out)
    __attribute__((warn_unused_result));
bool pg_parse_target(const uint8_t *payload, size_t len, PgTargetMsg *out)
    __attribute__((warn_unused_result));
bool pg_parse_execute(const uint8_t *payload, size_t len, PgExecuteMsg *out)
    __attribute__((warn_unused_result));
/* Query ('Q'): the NUL-terminated text; false when the NUL is missing or not last. */
bool pg_parse_query(const uint8_t *payload, size_t len, const char **text, size_t *text_len)
    __attribute__((warn_unused_result));

/* Format code of parameter i under Bind's 0/1/n convention. */
int16_t pg_bind_param_format(const PgBindMsg *b, uint16_t i);

/* --- backend message fields ---------------------------------------------------------- */

/* Finds field `code` ('C' SQLSTATE, 'M' message, ...) of an ErrorResponse/NoticeResponse
 * payload; returns the NUL-terminated value or NULL. */
const char *pg_error_field(const uint8_t *payload, size_t len, char code);

/* --- builders ------------------------------------------------------------------------ */

/* ErrorResponse with severity (ERROR/FATAL), SQLSTATE, message and optional detail. */
void pg_write_error(ByteWriter *w, const char *severity, const char *sqlstate,
                    const char *message, const char *detail);
void pg_write_ready(ByteWriter *w, char tx_status);
/* A message of only type and length: ParseComplete '1', BindComplete '2',
 * CloseComplete '3', NoData 'n', EmptyQueryResponse 'I', ... */
void pg_write_empty(ByteWriter *w, char type);

#endif
