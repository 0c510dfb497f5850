/*
 * client.h — one client connection and its 1:1 server connection: sockets, buffers,
 * back-pressure, start-up and authentication relay. Once authenticated, every message is
 * handed to the request path (request.h), which decides what reaches the other side.
 */
#ifndef PGSTASH_CLIENT_H
#define PGSTASH_CLIENT_H

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#include "proxy/buf.h"
#include "proxy/pgproto.h"
#include "proxy/request.h"

typedef struct Worker Worker;

typedef enum {
    CS_STARTUP,    /* waiting for the client's first packet (startup, SSL, GSS, cancel) */
    CS_CONNECTING, /* waiting for the upstream TCP connection to open */
    CS_AUTH,       /* relaying authentication until the server's first ReadyForQuery */
    CS_READY,      /* relaying queries through the request path */
    CS_CANCEL,     /* waiting to hand a CancelRequest to the upstream, then closing */
    CS_ADMIN_AUTH, /* admin console: waiting for the client's SCRAM messages */
    CS_ADMIN,      /* admin console: answering commands */
    CS_CLOSING,    /* flushing a last message to the client, then closing */
    CS_DEAD,       /* closed; freed by the worker before its loop blocks again */
} ClientState;

struct Client {
    Worker *worker;            /* owner; the client never changes threads */
    uint64_t id;               /* for log lines */
    char ident[160];           /* "c17 alice@shop" */
    ClientState state;         /* written only by client_set_state() */
    int cfd;                   /* client socket */
    int sfd;                   /* server socket, -1 when not connected */
    ev_io c_rd, c_wr;          /* client readable / writable */
    ev_io s_rd, s_wr;          /* server readable / writable (also: connect finished) */
    ev_timer timer;            /* start-up deadline, idle and half-message timeouts */
    int64_t last_activity_ms;  /* last byte from the client */
    IoBuf c_in, c_out;         /* bytes from / to the client */
    IoBuf s_in, s_out;         /* bytes from / to the server */
    PgFramer c_framer;         /* splits client bytes into messages */
    PgFramer s_framer;         /* splits server bytes into messages */
    uint8_t *startup;          /* the startup packet, forwarded once connected (kept while
                                  the server may be kept: see idleserver.h) */
    size_t startup_len;
    bool keepable;             /* the server may be kept for the next client (so far) */
    ByteWriter greeting;       /* the server's login answer, recorded while keepable */
    size_t greeting_msgs;      /* messages in it */
    int64_t server_born_ms;    /* clock_ms() when the server connection was opened */
    char *user;                /* from the startup packet */
    char *database;            /* from the startup packet (defaults to user) */
    size_t c_need;             /* bytes c_in must hold before the next frame can be handled */
    size_t s_need;             /* the same for s_in */
    bool connecting;           /* a non-blocking connect to the upstream is under way */
    bool replication;          /* replication connection: relayed untouched */
    bool server_errored;       /* the server sent a FATAL/ERROR we relayed */
    bool terminate_sent;       /* client sent Terminate: close once s_out is flushed */
    bool orphaned;             /* client gone while its write ran: finish it, then close */
    int pending_callbacks;     /* Redis replies that still point at this client */
    Request req;               /* the request path's state */
    struct AdminSession *admin;/* admin console state, NULL for ordinary sessions */
    int64_t connected_ms;      /* clock_ms() at accept */
    char peer[64];             /* client address "host:port" */
    Client *prev, *next;       /* worker's list */
};

/* Accepted socket → new client in CS_STARTUP. NULL on out-of-memory (fd closed). */
Client *client_new(Worker *w, int fd);

/* Frees a parked client; only the worker calls it, when pending_callbacks is 0. */
void client_free(Client *c);

/* The only way to change c->state. */
void client_set_state(Client *c, ClientState state);

/* Closes both sockets and parks the client (safe to call twice). */
void client_close(Client *c, const char *why);

/*
 * The client is leaving between statements (Terminate, or EOF): when its server connection
 * may serve the next client (limits.server_idle_timeout), hands it to the worker's kept
 * connections and closes the client. False (nothing done) otherwise.
 */
bool client_keep_server(Client *c);

/* Sends ErrorResponse(severity, sqlstate, message) to the client, then closes. */
void client_fail(Client *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends bytes for the client / server. False on out-of-memory (client is failed). */
bool client_send(Client *c, const void *p, size_t n) __attribute__((warn_unused_result));
bool server_send(Client *c, const void *p, size_t n) __attribute__((warn_unused_result));

/*
 * Runs pending work after something changed outside a socket callback (a Redis reply,
 * a probe result): processes buffered input of both sides, flushes output and updates
 * the watchers. Safe to call at any time on a live client.
 */
void client_kick(Client *c);

/* True when the client is idle between statements outside a transaction (SIGTERM drain). */
bool client_is_idle(const Client *c);

#endif
