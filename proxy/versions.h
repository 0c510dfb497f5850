/*
 * versions.h — the process-wide map of table versions, (database, table) → counter, and
 * the global epoch. In strict mode it is a first guess that every lookup confirms against
 * Redis; in local mode it is the truth, kept fresh by the invalidation channel. Shared by
 * all workers (sharded locks).
 */
#ifndef PGSTASH_VERSIONS_H
#define PGSTASH_VERSIONS_H

#include <stdbool.h>
#include <stdint.h>

void versions_init(void);
void versions_free(void);

/* The known version of a table; false when never learned. */
bool versions_get(const char *db, const char *table, uint64_t *out);

/* Sets the version as Redis reported it in a confirming read (Redis is the truth). */
void versions_set(const char *db, const char *table, uint64_t v);

/* Raises the version (never lowers it): bumps and invalidation messages, which may
 * arrive out of order. */
void versions_raise(const char *db, const char *table, uint64_t v);

/* Drops every learned version (Redis restarted: counters were re-seeded). */
void versions_forget_all(void);

/* The global epoch; false when never learned. */
bool versions_epoch(uint64_t *out);
void versions_set_epoch(uint64_t v);
void versions_raise_epoch(uint64_t v);

#endif
