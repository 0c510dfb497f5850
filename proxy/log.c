/*
 * log.c — one write(2) per line so lines from several workers never interleave.
 */
#include "proxy/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

_Atomic int log_level_ = LOG_INFO;
_Atomic int log_format_ = LOG_FORMAT_TEXT;

void log_configure(LogLevel level, LogFormat format)
{
    atomic_store(&log_level_, (int)level);
    atomic_store(&log_format_, (int)format);
}

static const char *level_name(LogLevel level)
{
    return config_log_level_name(level);
}

static void timestamp(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, len - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void write_line(const char *line, size_t len)
{
    /* stderr may be a pipe to a slow terminal: retry partial writes, give up on errors. */
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, line, len);
        if (n <= 0)
            return;
        line += n;
        len -= (size_t)n;
    }
}

static void emit_json(LogLevel level, json_t *obj)
{
    char ts[40];
    timestamp(ts, sizeof ts);
    json_object_set_new(obj, "ts", json_string(ts));
    json_object_set_new(obj, "level", json_string(level_name(level)));
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        size_t n = strlen(s);
        s[n] = '\n'; /* json_dumps leaves room for nothing more: write NUL-less below */
        write_line(s, n + 1);
        free(s);
    }
}

void log_write(LogLevel level, const char *who, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    if (atomic_load(&log_format_) == LOG_FORMAT_JSON) {
        json_t *obj = json_object();
        if (who)
            json_object_set_new(obj, "conn", json_string(who));
        json_object_set_new(obj, "msg", json_string(msg));
        emit_json(level, obj);
        json_decref(obj);
        return;
    }
    char ts[40];
    char line[2400];
    timestamp(ts, sizeof ts);
    int n = snprintf(line, sizeof line, "%s %-5s %s%s%s\n", ts, level_name(level),
                     who ? who : "", who ? " " : "", msg);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line) {
        n = (int)sizeof line - 1;
        line[n - 1] = '\n';
    }
    write_line(line, (size_t)n);
}

static void append_text_value(char *buf, size_t cap, size_t *len, json_t *v);

static void append_text(char *buf, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n >= cap)
        n = cap - *len - 1;
    memcpy(buf + *len, s, n);
    *len += n;
    buf[*len] = 0;
}

static void append_text_value(char *buf, size_t cap, size_t *len, json_t *v)
{
    char tmp[64];
    switch (json_typeof(v)) {
    case JSON_STRING:
        append_text(buf, cap, len, json_string_value(v));
        break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        append_text(buf, cap, len, tmp);
        break;
    case JSON_REAL:
        snprintf(tmp, sizeof tmp, "%.4g", json_real_value(v));
        append_text(buf, cap, len, tmp);
        break;
    case JSON_TRUE:
        append_text(buf, cap, len, "true");
        break;
    case JSON_FALSE:
        append_text(buf, cap, len, "false");
        break;
    case JSON_NULL:
        append_text(buf, cap, len, "-");
        break;
    default: {
        char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s) {
            append_text(buf, cap, len, s);
            free(s);
        }
        break;
    }
    }
}

void log_event(LogLevel level, const char *msg, json_t *fields)
{
    if (!fields)
        return;
    if (atomic_load(&log_format_) == LOG_FORMAT_JSON) {
        json_t *obj = json_object();
        json_object_set_new(obj, "msg", json_string(msg));
        json_object_update(obj, fields);
        emit_json(level, obj);
        json_decref(obj);
        json_decref(fields);
        return;
    }
    char line[8192];
    size_t len = 0;
    char ts[40];
    timestamp(ts, sizeof ts);
    line[0] = 0;
    append_text(line, sizeof line, &len, ts);
    append_text(line, sizeof line, &len, " ");
    char lv[8];
    snprintf(lv, sizeof lv, "%-5s ", level_name(level));
    append_text(line, sizeof line, &len, lv);
    append_text(line, sizeof line, &len, msg);
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value)
    {
        append_text(line, sizeof line, &len, " ");
        append_text(line, sizeof line, &len, key);
        append_text(line, sizeof line, &len, "=");
        append_text_value(line, sizeof line, &len, value);
    }
    append_text(line, sizeof line, &len, "\n");
    if (line[len - 1] != '\n')
        line[len - 1] = '\n';
    write_line(line, len);
    json_decref(fields);
}

bool log_ratelimit(LogRateLimit *rl, int64_t interval_ms, uint64_t *suppressed)
{
    int64_t now = clock_ms();
    int64_t next = atomic_load(&rl->next_ms);
    if (now < next || !atomic_compare_exchange_strong(&rl->next_ms, &next, now + interval_ms)) {
        atomic_fetch_add(&rl->suppressed, 1);
        return false;
    }
    *suppressed = atomic_exchange(&rl->suppressed, 0);
    return true;
}

int64_t clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wallclock_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
