/*
 * idleserver.h — server connections kept after their client left (limits.server_idle_timeout)
 * and handed to the next client of the same worker whose StartupMessage is byte for byte the
 * same: that client does not wait for a new backend, and PostgreSQL does not pay for one
 * (a backend's start and warm-up cost tens of milliseconds of CPU).
 *
 * pgstash never sees passwords, so it cannot check a new client's: only logins PostgreSQL
 * accepted without a challenge (trust, or a peer-style rule) are kept, and the same start-up
 * packet from pgstash's address is accepted the same way again. Before a connection is
 * offered, its session is reset with DISCARD ALL and kept only once PostgreSQL confirms it
 * idle; anything the backend says while kept, other than a notice or a notification, closes
 * it (pg_terminate_backend, a setting changed by a reload).
 */
#ifndef PGSTASH_IDLESERVER_H
#define PGSTASH_IDLESERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Worker Worker;
typedef struct IdleServer IdleServer;

/* What a kept connection carries from login to login. */
typedef struct {
    uint8_t *startup; /* the StartupMessage that opened it (the lookup key) */
    size_t startup_len;
    uint8_t *greeting; /* AuthenticationOk .. ReadyForQuery, replayed to the next client */
    size_t greeting_len;
    int64_t born_ms; /* clock_ms() when it was opened, for limits.server_lifetime */
} ServerLogin;

/* A worker's kept connections (most recently kept first). */
typedef struct {
    IdleServer *head;
} IdleServers;

/*
 * Takes over the server socket fd (connected, idle, outside a transaction) and the buffers
 * of `login`: sends DISCARD ALL and offers the connection once PostgreSQL confirms the reset.
 * Closes it instead when it cannot.
 */
void idleserver_keep(Worker *w, int fd, ServerLogin *login);

/*
 * A kept connection opened with exactly this StartupMessage, or -1. On success the caller
 * owns the fd and `login` (its buffers included).
 */
int idleserver_take(Worker *w, const uint8_t *startup, size_t len, ServerLogin *login);

/* Closes every kept connection (shutdown, reload, worker end). */
void idleserver_close_all(Worker *w);

/*
 * Checks one server message of a login being recorded (`at` = its position, 0 first). True
 * while the login can still be kept: it must begin with AuthenticationOk (no password was
 * asked) and hold only ParameterStatus, BackendKeyData and the closing ReadyForQuery.
 */
bool idleserver_greeting_ok(char type, const uint8_t *msg, size_t len, size_t at);

void login_free(ServerLogin *login);

#endif
