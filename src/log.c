/* SPDX-License-Identifier: MIT */
/* log.c -- one line per event on stderr: "2026-01-02T03:04:05.678Z level module: message". */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "trailhook/clock.h"
#include "trailhook/log.h"

/* The one process-wide setting besides the server: read on every log call from any thread. */
static _Atomic int min_level = TH_LOG_INFO;

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

void th_log_write(enum th_log_level level, const char *module, const char *fmt, ...)
{
    char ts[32];
    char msg[2048];
    va_list ap;

    th_clock_format_iso8601(th_clock_now_ms(), ts);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* Keep one event on one line whatever the message holds. */
    for (char *p = msg; *p != '\0'; p++) {
        if (*p == '\n' || *p == '\r') {
            *p = ' ';
        }
    }
    int idx = (level >= TH_LOG_DEBUG && level <= TH_LOG_ERROR) ? (int)level : (int)TH_LOG_ERROR;
    /* A single fprintf on an unbuffered stderr is one write(2): lines do not interleave. */
    fprintf(stderr, "%s %s %s: %s\n", ts, level_names[idx], module, msg);
}
