/*
 * fuzz_frontend.c — libFuzzer target for what an application sends pgstash: the first packet
 * (SSLRequest, GSSENCRequest, StartupMessage, CancelRequest), the authentication relay, simple
 * and extended queries, COPY and everything else, through the real Client/Request state
 * machine on a libev loop, against a scripted PostgreSQL and a fake Redis or none (harness.h).
 *
 * Input: byte 0 flags, byte 1 mode, then the application's bytes.
 *   flags bits 0-1  delivery: 0 whole, 1 byte by byte, 2-3 pseudo-random chunks
 *         bit 2     a fake Redis is reachable (lookups, fills, hits, bumps); else it fails open
 *         bit 3     the harness sends a StartupMessage (user fuzz, database fuzzdb) first
 *         bits 4-6  how the fake upstream authenticates (UpstreamAuth, modulo its count)
 *         bit 7     the application closes its end after its last byte
 *   mode  bits 0-5  seed of the chunk sizes
 *         bit 6     the harness logs in to the admin console first (bit 3 is then ignored):
 *                   the bytes are admin console commands
 *         bit 7     nothing listens where the upstream should be
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "tests/fuzz/harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}

/* Its length is patched in; the literal's own NUL ends the parameter list. */
static const uint8_t STARTUP[] = "LLLL\0\3\0\0user\0fuzz\0database\0fuzzdb\0application_name\0fz\0";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    SessionSpec spec = {0};
    spec.client_delivery = (flags & 3) == 0   ? DELIVER_WHOLE
                           : (flags & 3) == 1 ? DELIVER_BYTES
                                              : DELIVER_CHUNKS;
    spec.redis = flags & 4;
    spec.auth = (UpstreamAuth)(((flags >> 4) & 7) % UPAUTH_COUNT_);
    spec.client_eof = flags & 0x80;
    spec.seed = data[1] & 0x3f;
    spec.admin = data[1] & 0x40;
    spec.upstream_missing = data[1] & 0x80;
    spec.check_stream = true;

    uint8_t *joined = NULL;
    if ((flags & 8) && !spec.admin) {
        size_t n = sizeof STARTUP;
        joined = malloc(n + size - 2 + 1);
        if (!joined)
            return 0;
        memcpy(joined, STARTUP, n);
        put_be32(joined, (uint32_t)n);
        memcpy(joined + n, data + 2, size - 2);
        spec.client = joined;
        spec.client_len = n + size - 2;
    } else {
        spec.client = data + 2;
        spec.client_len = size - 2;
    }
    harness_run(&spec);
    free(joined);
    return 0;
}
