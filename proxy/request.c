/*
 * request.c — the request path: units, COPY and ReadyForQuery accounting. A unit is one
 * Query/FunctionCall, or extended-protocol messages up to Sync. Extended messages are held in
 * c_in until the unit is complete, so the whole unit can be judged at once; one unit is in
 * flight at a time, and client input that arrives meanwhile waits in c_in.
 */
#include "proxy/request.h"

#include <string.h>

#include "proxy/client.h"
#include "proxy/log.h"
#include "proxy/worker.h"

#define UNIT_COLLECT_MAX (256 * 1024) /* a bigger unit is streamed to the server as it comes */
#define OUT_HIGH         (256 * 1024) /* matches client.c: stop producing above this */

void request_init(Request *r)
{
    memset(r, 0, sizeof *r);
    r->tx_status = 'I';
}

void request_free(Request *r)
{
    (void)r;
}

/* The only place that writes r->state. */
static void request_set_state(Request *r, RequestState state)
{
    r->state = state;
}

bool request_is_idle(const Request *r)
{
    return r->state == REQ_IDLE && r->rfq_pending == 0 && r->tx_status == 'I' &&
           r->copy == COPY_NONE;
}

/* Forwards `n` bytes at the head of c_in to the server and consumes them. */
static bool forward_head(Client *c, size_t n)
{
    if (!server_send(c, iobuf_head(&c->c_in), n))
        return false;
    iobuf_consume(&c->c_in, n);
    return true;
}

/* Bookkeeping for one client message sent to the server. */
static void note_forwarded(Client *c, char type)
{
    Request *r = &c->req;
    switch (type) {
    case 'Q':
    case 'F':
        r->rfq_pending++;
        break;
    case 'S':
        /* During COPY IN the server ignores Sync (protocol: "backend will ignore Flush and
         * Sync messages received during copy-in mode"). */
        if (r->copy == COPY_NONE) {
            r->rfq_pending++;
            r->unit_open = false;
        }
        break;
    case 'c':
    case 'f':
        /* After CopyDone/CopyFail of an extended-protocol COPY the server discards input
         * until a Sync; let the client's Sync through without holding it. */
        if (r->copy == COPY_IN) {
            r->copy = COPY_NONE;
            if (r->extended)
                r->unit_open = true;
        }
        break;
    case 'X':
        c->terminate_sent = true;
        break;
    default:
        break;
    }
}

/* Sends the collected part of the unit (c_in head, collect_len bytes) to the server. */
static bool send_collected(Client *c)
{
    Request *r = &c->req;
    if (!forward_head(c, r->collect_len))
        return false;
    r->collect_len = 0;
    request_set_state(r, REQ_SERVER);
    r->unit_open = true;
    return true;
}

/* A message that starts a unit. Returns false when the loop must stop. */
static bool start_unit(Client *c, const Frame *f)
{
    Request *r = &c->req;
    switch (f->type) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
        r->extended = true;
        r->collect_len = f->n;
        request_set_state(r, REQ_COLLECT);
        return true;
    case 'Q':
    case 'F':
        r->extended = false;
        break;
    case 'S':
        r->extended = true;
        break;
    default:
        /* Flush, Terminate, stray COPY messages, unknown types: the server judges them. */
        if (!forward_head(c, f->n))
            return false;
        note_forwarded(c, f->type);
        return true;
    }
    if (!forward_head(c, f->n))
        return false;
    request_set_state(r, REQ_SERVER);
    r->unit_open = false;
    note_forwarded(c, f->type);
    return true;
}

/* A message arriving while extended-protocol messages are being collected. */
static bool collect(Client *c, const Frame *f)
{
    Request *r = &c->req;
    switch (f->type) {
    case 'P':
    case 'B':
    case 'D':
    case 'E':
    case 'C':
        r->collect_len += f->n;
        if (r->collect_len > UNIT_COLLECT_MAX)
            return send_collected(c);
        return true;
    case 'S':
        r->collect_len += f->n;
        if (!send_collected(c))
            return false;
        note_forwarded(c, 'S');
        return true;
    default:
        /* Flush or anything else ends collecting: the server sees everything so far. */
        return send_collected(c);
    }
}

void request_client_input(Client *c)
{
    Request *r = &c->req;
    while (c->state == CS_READY && iobuf_len(&c->s_out) < OUT_HIGH) {
        if (r->state == REQ_SERVER && !r->unit_open && r->copy == COPY_NONE)
            return; /* hold: one unit in flight */
        size_t off = r->state == REQ_COLLECT ? r->collect_len : 0;
        if (iobuf_len(&c->c_in) <= off) {
            c->c_need = 0;
            return;
        }
        Frame f;
        pg_framer_next(&c->c_framer, iobuf_head(&c->c_in) + off, iobuf_len(&c->c_in) - off, &f);
        if (f.kind == FRAME_NEED_MORE) {
            c->c_need = off + f.need;
            return;
        }
        c->c_need = 0;
        if (f.kind == FRAME_BAD) {
            client_fail(c, "08P01", "invalid message length %d (type '%c')", (int32_t)f.len,
                        f.type >= 32 && f.type < 127 ? f.type : '?');
            return;
        }
        if (f.kind == FRAME_PIECE) {
            /* Only CopyData is streamed; everything collected goes first. */
            if (r->state == REQ_COLLECT && !send_collected(c))
                return;
            if (!forward_head(c, f.n))
                return;
            continue;
        }
        if (c->replication || r->copy != COPY_NONE || (r->state == REQ_SERVER && r->unit_open)) {
            if (!forward_head(c, f.n))
                return;
            note_forwarded(c, f.type);
            continue;
        }
        bool ok = r->state == REQ_COLLECT ? collect(c, &f) : start_unit(c, &f);
        if (!ok)
            return;
    }
}

/* The server finished a unit: the next one may start. */
static void unit_done(Client *c)
{
    Request *r = &c->req;
    if (r->state == REQ_SERVER && r->rfq_pending == 0 && !r->unit_open)
        request_set_state(r, REQ_IDLE);
}

bool request_server_frame(Client *c, const Frame *f)
{
    Request *r = &c->req;
    if (f->kind == FRAME_PIECE)
        return client_send(c, f->p, f->n);
    switch (f->type) {
    case 'Z':
        if (f->n == 6)
            r->tx_status = (char)f->p[5];
        if (r->rfq_pending > 0)
            r->rfq_pending--;
        r->copy = COPY_NONE;
        if (!client_send(c, f->p, f->n))
            return false;
        unit_done(c);
        return true;
    case 'G':
        /* COPY FROM STDIN started. In an extended unit whose Sync already went out, the
         * server will ignore that Sync: it owes one ReadyForQuery less. */
        r->copy = COPY_IN;
        if (r->extended && !r->unit_open && r->rfq_pending > 0)
            r->rfq_pending--;
        break;
    case 'W':
        r->copy = COPY_BOTH;
        break;
    case 'E':
        c->server_errored = f->n > 5 && pg_error_field(f->p + 5, f->n - 5, 'S') &&
                            strcmp(pg_error_field(f->p + 5, f->n - 5, 'S'), "FATAL") == 0;
        break;
    default:
        break;
    }
    return client_send(c, f->p, f->n);
}
