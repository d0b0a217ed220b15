/* SPDX-License-Identifier: MIT */
/*
 * log.h -- the one logger: one JSON object per line on stderr ({"time","level","module",
 * "message"}, plus "request_id" and "event_id" while a thread works on a request), level
 * filtered before anything is formatted.
 */
#ifndef TRAILHOOK_LOG_H
#define TRAILHOOK_LOG_H

#include <stdbool.h>

enum th_log_level {
    TH_LOG_DEBUG = 0,
    TH_LOG_INFO,
    TH_LOG_WARN,
    TH_LOG_ERROR,
};

/** Sets the minimum level written. Any thread. */
void th_log_set_level(enum th_log_level level);

/**
 * Parses "debug", "info", "warn"/"warning" or "error".
 * @return true and sets *out on success.
 */
bool th_log_parse_level(const char *name, enum th_log_level *out);

/** @return true when a message of @p level would be written. Any thread. */
bool th_log_enabled(enum th_log_level level);

/**
 * Writes one line: time, level, module, message and the calling thread's context. Never pass
 * secrets. Any thread; lines from several threads do not interleave.
 */
void th_log_write(enum th_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/**
 * Sets the calling thread's log context: the request being handled and the CloudTrail eventID
 * involved (either NULL to clear). Copied; kept until changed.
 */
void th_log_set_context(const char *request_id, const char *event_id);

/** Sets only the eventID of the calling thread's log context (NULL clears it). */
void th_log_set_event(const char *event_id);

/** Logs with level tested first, so arguments are not formatted when filtered out. */
#define th_log(level, module, ...)                                                                 \
    do {                                                                                           \
        if (th_log_enabled(level)) {                                                               \
            th_log_write(level, module, __VA_ARGS__);                                              \
        }                                                                                          \
    } while (0)

#endif
