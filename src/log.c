/* SPDX-License-Identifier: MIT */
/*
 * log.c -- one JSON object per line on stderr, so log pipelines need no parsing rules:
 * {"time":"2026-01-02T03:04:05.678Z","level":"info","module":"http","message":"...",
 *  "request_id":"...","event_id":"..."}.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "trailhook/clock.h"
#include "trailhook/log.h"

/* The one process-wide setting besides the server: read on every log call from any thread. */
static _Atomic int min_level = TH_LOG_INFO;

/* Per-thread context: which request and event a worker is busy with. Thread-local, so setting
 * it needs no lock and no thread sees another's. */
static _Thread_local char ctx_request_id[40];
static _Thread_local char ctx_event_id[80];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void th_log_set_level(enum th_log_level level)
{
    atomic_store(&min_level, (int)level);
}

bool th_log_enabled(enum th_log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

bool th_log_parse_level(const char *name, enum th_log_level *out)
{
    if (name == NULL) {
        return false;
    }
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (enum th_log_level)i;
            return true;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = TH_LOG_WARN;
        return true;
    }
    return false;
}

void th_log_set_context(const char *request_id, const char *event_id)
{
    snprintf(ctx_request_id, sizeof(ctx_request_id), "%s", request_id != NULL ? request_id : "");
    snprintf(ctx_event_id, sizeof(ctx_event_id), "%s", event_id != NULL ? event_id : "");
}

void th_log_set_event(const char *event_id)
{
    snprintf(ctx_event_id, sizeof(ctx_event_id), "%s", event_id != NULL ? event_id : "");
}

/* Length of the valid UTF-8 sequence at @p s (at most @p n bytes), 0 when invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return len;
}

/* Appends @p s as a JSON string: escapes, and U+FFFD for bytes that are not UTF-8 (event data
 * ends up in messages and must not break the line's JSON). */
static size_t put_string(char *out, size_t pos, size_t cap, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    pos += (size_t)snprintf(out + pos, pos < cap ? cap - pos : 0, "\"");
    for (size_t i = 0; i < n && pos + 8 < cap;) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            pos += (size_t)snprintf(out + pos, cap - pos, "\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            pos += (size_t)snprintf(out + pos, cap - pos, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            out[pos++] = (char)c;
            i++;
        } else {
            size_t len = utf8_len(p + i, n - i);
            if (len == 0) {
                pos += (size_t)snprintf(out + pos, cap - pos, "\\ufffd");
                i++;
            } else {
                memcpy(out + pos, p + i, len);
                pos += len;
                i += len;
            }
        }
    }
    if (pos + 1 < cap) {
        out[pos++] = '"';
    }
    return pos;
}

static size_t put_field(char *out, size_t pos, size_t cap, const char *name, const char *value)
{
    if (pos + strlen(name) + 8 >= cap) {
        return pos;
    }
    pos += (size_t)snprintf(out + pos, cap - pos, ",\"%s\":", name);
    return put_string(out, pos, cap, value);
}

void th_log_write(enum th_log_level level, const char *module, const char *fmt, ...)
{
    char ts[32];
    char msg[2048];
    char line[4608];
    va_list ap;
    int idx = (level >= TH_LOG_DEBUG && level <= TH_LOG_ERROR) ? (int)level : (int)TH_LOG_ERROR;

    th_clock_format_iso8601(th_clock_now_ms(), ts);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t pos = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\"", ts,
                                  level_names[idx]);
    pos = put_field(line, pos, sizeof(line) - 2, "module", module);
    pos = put_field(line, pos, sizeof(line) - 2, "message", msg);
    if (ctx_request_id[0] != '\0') {
        pos = put_field(line, pos, sizeof(line) - 2, "request_id", ctx_request_id);
    }
    if (ctx_event_id[0] != '\0') {
        pos = put_field(line, pos, sizeof(line) - 2, "event_id", ctx_event_id);
    }
    line[pos++] = '}';
    line[pos++] = '\n';
    /* One fwrite on an unbuffered stderr is one write(2): lines do not interleave. */
    fwrite(line, 1, pos, stderr);
}
