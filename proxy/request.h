/*
 * request.h — the request path of an authenticated connection: splits the client's stream
 * into units (one Query, or extended-protocol messages up to Sync), keeps one unit at a
 * time in flight, follows COPY and transaction status, and relays the server's answers.
 */
#ifndef PGSTASH_REQUEST_H
#define PGSTASH_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/pgproto.h"

typedef struct Client Client;

typedef enum {
    REQ_IDLE,    /* no unit open: the next client message starts one */
    REQ_COLLECT, /* extended-protocol messages buffered in c_in until Sync or Flush */
    REQ_SERVER,  /* unit sent to the server; waiting for its ReadyForQuery */
} RequestState;

typedef enum {
    COPY_NONE, /* not copying */
    COPY_IN,   /* server sent CopyInResponse: client data flows until CopyDone/Fail */
    COPY_BOTH, /* server sent CopyBothResponse (replication): everything flows */
} CopyState;

typedef struct Request {
    RequestState state;   /* written only by request_set_state() */
    bool unit_open;       /* REQ_SERVER: forward client messages until the unit's Sync */
    bool extended;        /* the current unit uses the extended protocol */
    size_t collect_len;   /* REQ_COLLECT: bytes of c_in that belong to the unit */
    int rfq_pending;      /* ReadyForQuery messages the server still owes */
    CopyState copy;       /* COPY sub-protocol in progress */
    char tx_status;       /* 'I', 'T' or 'E' from the last ReadyForQuery */
} Request;

void request_init(Request *r);
void request_free(Request *r);

/* Handles the client's buffered input; stops when a unit must wait. */
void request_client_input(Client *c);

/*
 * Handles one frame from the server (whole message or piece). Returns false when the
 * client was failed and must not be touched further.
 */
bool request_server_frame(Client *c, const Frame *f) __attribute__((warn_unused_result));

/* True when nothing is in flight and no transaction is open. */
bool request_is_idle(const Request *r);

#endif
