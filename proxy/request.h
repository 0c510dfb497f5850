/*
 * request.h — the request path of an authenticated connection. The client's stream is cut
 * into units (one Query, or extended-protocol messages up to Sync); one unit at a time is in
 * flight. A unit whose every Execute is a cache hit is answered by pgstash alone; any other
 * unit goes to the server, cacheable results are captured on their way back to the client and
 * stored, and a unit's writes are invalidated in Redis after the server confirms them and
 * before the client sees the confirmation.
 */
#ifndef PGSTASH_REQUEST_H
#define PGSTASH_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/catalog.h"
#include "proxy/pgproto.h"
#include "proxy/session.h"

typedef struct Client Client;
typedef struct Exec Exec;
typedef struct Expect Expect;

typedef enum {
    REQ_IDLE,    /* no unit open: the next client message starts one */
    REQ_COLLECT, /* extended-protocol messages buffered in c_in until Sync or Flush */
    REQ_CATALOG, /* unit waits for its database's catalog to be read */
    REQ_PROBE,   /* unit waits for the session probe (settings, role, temp tables) */
    REQ_LOOKUP,  /* unit waits for its cache lookups in Redis */
    REQ_SERVER,  /* unit sent to the server; waiting for its ReadyForQuery */
    REQ_BUMP,    /* server answered; waiting for Redis to confirm the invalidations */
} RequestState;

typedef enum {
    COPY_NONE, /* not copying */
    COPY_IN,   /* server sent CopyInResponse: client data flows until CopyDone/Fail */
    COPY_BOTH, /* server sent CopyBothResponse (replication): everything flows */
} CopyState;

typedef struct Request {
    RequestState state;      /* written only by request_set_state() */
    bool unit_open;          /* REQ_SERVER: forward client messages until the unit's Sync */
    bool extended;           /* the current unit uses the extended protocol */
    size_t collect_len;      /* bytes of c_in that belong to the current unit */
    int rfq_pending;         /* ReadyForQuery messages the server still owes */
    CopyState copy;          /* COPY sub-protocol in progress */
    char tx_status;          /* 'I', 'T' or 'E' from the last ReadyForQuery */
    char tx_before;          /* tx_status when the current unit started */
    int64_t unit_start_us;   /* when the current unit was judged */
    int64_t catalog_wait_ms; /* REQ_CATALOG since (clock_ms) */
    int64_t idle_since_ms;   /* when the last unit finished (idle timeout counts from here) */

    Session session;         /* statements, settings, transaction block */

    /* The current unit. */
    Exec *execs;             /* one per Query or Execute */
    int n_execs, cap_execs;
    int lookups_pending;     /* Redis replies still awaited */
    int cacheable;           /* execs that may be served from the cache */
    WriteSet writes;         /* what the unit invalidates if it commits */
    WriteSet prev_bumped;    /* what the previous unit bumped: reading it now misses anyway */
    bool maybe_writes;       /* the unit may write (ends caching in a block) */
    bool unit_flags_session; /* the unit may change settings/role/temp tables */
    bool unit_ddl;           /* the unit runs DDL: read the catalog again */
    SqlIsolation unit_iso;   /* strictest isolation the unit asks for */
    bool errored;            /* the server reported an error in this unit */
    bool saw_commit;         /* a COMMIT/PREPARE TRANSACTION tag came back */
    bool saw_rollback;       /* a ROLLBACK tag came back */
    bool unit_tx_control;    /* the unit holds transaction control statements */
    bool unit_has_commit;    /* the unit holds a statement that commits */

    /* Server answer of the current unit. */
    Expect *expect;          /* what each server message answers, in order */
    int n_expect, cap_expect, at_expect;
    bool holding;            /* client output goes to `held` until invalidations land */
    IoBuf held;              /* output withheld until the bump is confirmed */
    bool early_bumped;       /* held output overflowed: bumped once before releasing it */

    /* The session probe. */
    ByteWriter probe_rows;   /* name/value pairs read from the probe's rows */
    bool probe_ok;
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

/*
 * True when the server is running a complete unit that may write (or the unit waits for its
 * invalidations): PostgreSQL commits it even if the client vanishes now, so its answer must
 * still be awaited and its tables bumped.
 */
bool request_write_in_flight(const Request *r);

/* The server connection ended (after its last frames were handled): output withheld for
 * an invalidation goes to the client now. */
void request_server_lost(Client *c);

/* True when nothing is in flight and no transaction is open. */
bool request_is_idle(const Request *r);

/* The worker was woken: a unit waiting for the catalog may go on. */
void request_catalog_ready(Client *c);

/* Periodic check: a unit that waited for the catalog longer than the limit goes on without
 * it (its reads bypass, its writes invalidate everything). */
void request_catalog_tick(Client *c, int64_t now_ms);

#endif
