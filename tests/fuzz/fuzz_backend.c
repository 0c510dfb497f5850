/*
 * fuzz_backend.c — libFuzzer target for what PostgreSQL answers through pgstash: a fixed,
 * ordinary application session (start-up, a cacheable simple query, a cacheable extended
 * unit, both again (answered from what was captured, when it was stored), a write, a read)
 * meets an upstream whose answers to each unit come from the input. RowDescription, DataRow,
 * CommandComplete, ErrorResponse, NoticeResponse, CopyInResponse, ReadyForQuery or garbage:
 * all of it goes through request_server_frame(), the capture of results and their replay.
 *
 * Input: byte 0 flags, byte 1 mode, then the answers, separated by "|NEXT|": the first
 * answers the first unit that reaches the upstream (the start-up packet and the session probe
 * included when their bits are set), and so on.
 *   flags bits 0-1  delivery of the answers: 0 whole, 1 byte by byte, 2-3 random chunks
 *         bit 2     the session probe is answered from the input too (else: canned rows)
 *         bit 3     no Redis: nothing is looked up or captured, answers are only relayed
 *         bit 4     the application's bytes arrive in random chunks (else whole)
 *         bit 5     the application closes its end after its last byte
 *         bit 6     the fake Redis damages every entry it stores (where and how: from the
 *                   mode byte and the input's length), so hits replay untrusted blobs
 *         bit 7     the upstream hangs up once its last answer is out
 *   mode  bits 0-5  seed of the chunk sizes
 *         bit 6     the start-up packet is answered from the input too (authentication,
 *                   ParameterStatus, BackendKeyData, ReadyForQuery ... or not)
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/buf.h"
#include "proxy/pgproto.h"
#include "tests/fuzz/harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ByteWriter script;

static void query(ByteWriter *w, const char *sql)
{
    size_t at = bw_msg_begin(w, 'Q');
    bw_cstr(w, sql);
    bw_msg_end(w, at);
}

/* Parse/Bind/Describe/Execute/Sync of one unnamed statement with one text parameter. */
static void extended(ByteWriter *w, const char *sql, const char *param)
{
    size_t at = bw_msg_begin(w, 'P');
    bw_cstr(w, "");
    bw_cstr(w, sql);
    bw_u16(w, 0);
    bw_msg_end(w, at);
    at = bw_msg_begin(w, 'B');
    bw_cstr(w, "");
    bw_cstr(w, "");
    bw_u16(w, 0);
    bw_u16(w, 1);
    bw_u32(w, (uint32_t)strlen(param));
    bw_put(w, param, strlen(param));
    bw_u16(w, 0);
    bw_msg_end(w, at);
    at = bw_msg_begin(w, 'D');
    bw_u8(w, 'P');
    bw_cstr(w, "");
    bw_msg_end(w, at);
    at = bw_msg_begin(w, 'E');
    bw_cstr(w, "");
    bw_u32(w, 0);
    bw_msg_end(w, at);
    pg_write_empty(w, 'S');
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    ByteWriter *w = &script;
    size_t at = w->len;
    bw_u32(w, 0);
    bw_u32(w, PG_PROTOCOL_3);
    bw_cstr(w, "user");
    bw_cstr(w, "fuzz");
    bw_cstr(w, "database");
    bw_cstr(w, "fuzzdb");
    bw_u8(w, 0);
    put_be32(w->data + at, (uint32_t)(w->len - at));
    query(w, "SELECT 1");
    extended(w, "SELECT $1::int", "7");
    query(w, "SELECT 1"); /* hits replay what was captured, if stored */
    extended(w, "SELECT $1::int", "7");
    query(w, "INSERT INTO t VALUES (1)"); /* no catalog: bumps the global epoch */
    query(w, "SELECT 1");
    pg_write_empty(w, 'X');
    if (w->failed)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t flags = data[0];
    SessionSpec spec = {0};
    spec.client = script.data;
    spec.client_len = script.len;
    spec.client_delivery = flags & 0x10 ? DELIVER_CHUNKS : DELIVER_WHOLE;
    spec.client_eof = flags & 0x20;
    spec.seed = data[1] & 0x3f;
    spec.fuzz_startup = data[1] & 0x40;
    spec.upstream_eof = flags & 0x80;
    if (flags & 0x40)
        spec.corrupt_entries = 0x10000u | (uint32_t)(data[1] & 0x3f) << 8 | (uint32_t)(size & 0xff);
    spec.redis = !(flags & 8);
    spec.auth = UPAUTH_TRUST;
    spec.answer_delivery = (flags & 3) == 0   ? DELIVER_WHOLE
                           : (flags & 3) == 1 ? DELIVER_BYTES
                                              : DELIVER_CHUNKS;
    spec.fuzz_probe = flags & 4;
    spec.n_answers =
        harness_split(data + 2, size - 2, spec.answers, spec.answer_lens, HARNESS_MAX_ANSWERS);
    harness_run(&spec);
    return 0;
}
