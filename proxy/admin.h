/*
 * admin.h — the admin console: a virtual database named "pgstash" that pgstash answers itself
 * (no upstream connection), in the simple and extended protocol, for users listed under
 * admin.users, whose passwords pgstash verifies with SCRAM-SHA-256. Commands: SHOW
 * STATS|TABLES|QUERIES|CLIENTS|CONFIG|VERSION, EXPLAIN CACHE <sql>, FLUSH ALL,
 * FLUSH TABLE <name>, RELOAD.
 */
#ifndef PGSTASH_ADMIN_H
#define PGSTASH_ADMIN_H

#include <stdbool.h>

typedef struct Client Client;
typedef struct AdminSession AdminSession;

/* The admin database's name. */
#define ADMIN_DATABASE "pgstash"

/* The startup packet asked for the admin database: authenticate (or refuse) the user. */
void admin_begin(Client *c);

/* Handles the client's buffered input in CS_ADMIN_AUTH and CS_ADMIN. */
void admin_client_input(Client *c);

void admin_free(AdminSession *a);

#endif
