/*
 * log.h — log lines on stderr, as text or one JSON object per line. The level test is a
 * relaxed atomic load in the macro, so a disabled level costs no formatting. Lines about a
 * connection carry its identity ("c17 alice@shop").
 */
#ifndef PGSTASH_LOG_H
#define PGSTASH_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

typedef struct json_t json_t;

extern _Atomic int log_level_;  /* private: current LogLevel */
extern _Atomic int log_format_; /* private: current LogFormat */

static inline bool log_enabled(LogLevel level)
{
    return (int)level <= atomic_load_explicit(&log_level_, memory_order_relaxed);
}

/* Sets level and format; called at start-up and on reload. */
void log_configure(LogLevel level, LogFormat format);

/* Writes one line: `who` identifies a connection or subsystem (NULL for none). */
void log_write(LogLevel level, const char *who, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Writes a structured event: in JSON format the object itself (plus ts/level), in text
 * format "msg key=value ...". Takes ownership of `fields` (a JSON object).
 */
void log_event(LogLevel level, const char *msg, json_t *fields);

#define LOG_AT(level, who, ...)                                                              \
    do {                                                                                     \
        if (log_enabled(level))                                                              \
            log_write(level, who, __VA_ARGS__);                                              \
    } while (0)

#define log_error(...) LOG_AT(LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, NULL, __VA_ARGS__)

/*
 * Rate limiting for warnings that could repeat per query (Redis down, catalog unreadable):
 * at most one line per interval; the next allowed line says how many were suppressed.
 * Safe to share between threads.
 */
typedef struct {
    _Atomic int64_t next_ms;     /* earliest time the next line may be written */
    _Atomic uint64_t suppressed; /* lines dropped since the last one written */
} LogRateLimit;

/* True when a line may be written now; *suppressed gets the count dropped before it. */
bool log_ratelimit(LogRateLimit *rl, int64_t interval_ms, uint64_t *suppressed);

/* Monotonic milliseconds / microseconds, for timers and latencies. */
int64_t clock_ms(void);
int64_t clock_us(void);
/* Wall-clock microseconds since the epoch. */
int64_t wallclock_us(void);

#endif
