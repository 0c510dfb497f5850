/*
 * harness.h — one whole proxied session, in-process, for the fuzz targets of the protocol
 * path (fuzz_frontend, fuzz_backend): the process runtime with a config snapshot, a Worker set
 * up by worker_init() on its own libev loop, a Client from client_new() on one end of a
 * socketpair, a scripted fake PostgreSQL on a Unix socket of the harness's own, and optionally
 * a fake Redis (a tiny in-memory RESP server) on another. The loop is driven with
 * EVRUN_NOWAIT until nothing moves; then everything is closed and freed, and the harness
 * aborts if a file descriptor is left behind.
 */
#ifndef PGSTASH_FUZZ_HARNESS_H
#define PGSTASH_FUZZ_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DELIVER_WHOLE,  /* everything in one write */
    DELIVER_BYTES,  /* one byte per loop round (coarser for long inputs) */
    DELIVER_CHUNKS, /* pseudo-random chunk sizes from a seed */
} Delivery;

typedef enum {
    UPAUTH_TRUST,    /* AuthenticationOk at once */
    UPAUTH_PASSWORD, /* AuthenticationCleartextPassword, any 'p' accepted */
    UPAUTH_MD5,      /* AuthenticationMD5Password, any 'p' accepted */
    UPAUTH_SASL,     /* SCRAM-SHA-256 exchange of three steps, nothing verified */
    UPAUTH_REFUSE,   /* asks for a password, then FATAL 28P01 */
    UPAUTH_COUNT_
} UpstreamAuth;

#define HARNESS_MAX_ANSWERS 16

typedef struct {
    const uint8_t *client; /* bytes the application sends */
    size_t client_len;
    Delivery client_delivery;
    uint32_t seed;            /* chunk sizes (both directions) */
    bool client_eof;          /* close the application's end once everything is delivered */
    bool redis;               /* a fake Redis is reachable (else the store fails open) */
    UpstreamAuth auth;        /* how the fake upstream authenticates */
    bool check_stream;        /* abort if the stream the application receives is not framed */
    bool admin;               /* the harness logs in to the admin console (user admin, password
                                 pencil, SCRAM-SHA-256) before `client` is delivered */
    bool upstream_missing;    /* nothing listens where the upstream should be */
    uint32_t corrupt_entries; /* nonzero: the fake Redis damages every entry it stores (a byte
                                 flipped or the blob cut, chosen by this value) */

    /* fuzz_backend: after authentication the upstream answers each unit (a Query, a Sync)
     * with the next of these, verbatim. n_answers 0 = the scripted upstream. */
    const uint8_t *answers[HARNESS_MAX_ANSWERS];
    size_t answer_lens[HARNESS_MAX_ANSWERS];
    size_t n_answers;
    Delivery answer_delivery;
    bool fuzz_probe;   /* the session probe gets an answer from the list too */
    bool fuzz_startup; /* the start-up packet gets an answer from the list too */
    bool upstream_eof; /* the upstream hangs up once the last answer is out */
} SessionSpec;

/* Once per process (LLVMFuzzerInitialize). */
void harness_init(void);

/* Runs one session as the spec says and tears it all down. */
void harness_run(const SessionSpec *spec);

/* Splits `data` at every occurrence of HARNESS_SEPARATOR into at most `max` parts. */
#define HARNESS_SEPARATOR "|NEXT|"
size_t harness_split(const uint8_t *data, size_t len, const uint8_t **parts, size_t *lens,
                     size_t max);

#endif
