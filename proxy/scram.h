/*
 * scram.h — the server side of SCRAM-SHA-256 (RFC 5802/7677, as PostgreSQL speaks it), for
 * the admin console: pgstash verifies admin passwords itself against secrets in the config,
 * never storing or seeing a password. Also makes such secrets from a password.
 */
#ifndef PGSTASH_SCRAM_H
#define PGSTASH_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32

/* A parsed secret: "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>". */
typedef struct {
    int iterations;
    char salt_b64[64];
    uint8_t stored_key[SCRAM_KEY_LEN];
    uint8_t server_key[SCRAM_KEY_LEN];
} ScramSecret;

bool scram_parse_secret(const char *text, ScramSecret *out) __attribute__((warn_unused_result));

/* Makes a secret for `password` with a random 16-byte salt; `out` holds at least 200 bytes. */
bool scram_make_secret(const char *password, int iterations, char *out, size_t outlen)
    __attribute__((warn_unused_result));

typedef enum {
    SCRAM_WANT_FIRST, /* waiting for client-first-message */
    SCRAM_WANT_FINAL, /* waiting for client-final-message */
    SCRAM_DONE,       /* verified */
    SCRAM_FAILED,     /* malformed exchange or wrong password */
} ScramState;

typedef struct {
    ScramState state;
    ScramSecret secret;
    bool secret_valid;        /* false: the user is unknown; the exchange fails at the end */
    char client_first_bare[512];
    char server_first[256];
    char nonce[160];          /* client nonce + server nonce */
} ScramServer;

/* Starts an exchange; `secret` NULL for an unknown user (to fail without telling why). */
void scram_server_init(ScramServer *s, const ScramSecret *secret);

/*
 * Handles the client-first-message (n,,n=user,r=nonce); writes the server-first-message.
 * False (state FAILED) when malformed or channel binding is required.
 */
bool scram_server_first(ScramServer *s, const char *msg, size_t len, char *out, size_t outlen)
    __attribute__((warn_unused_result));

/*
 * Handles the client-final-message (c=biws,r=nonce,p=proof); on a correct proof writes the
 * server-final-message (v=signature) and returns true (state DONE).
 */
bool scram_server_final(ScramServer *s, const char *msg, size_t len, char *out, size_t outlen)
    __attribute__((warn_unused_result));

#endif
