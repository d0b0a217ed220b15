/* SPDX-License-Identifier: MIT */
/* clock.h -- wall and monotonic time, and the ISO 8601 times CloudTrail writes. */
#ifndef TRAILHOOK_CLOCK_H
#define TRAILHOOK_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Wall-clock milliseconds since the Unix epoch. Any thread. */
int64_t th_clock_now_ms(void);

/** Monotonic milliseconds, for durations and deadlines. Any thread. */
int64_t th_clock_mono_ms(void);

/** Monotonic microseconds, for latencies that metrics record (often under a millisecond). */
int64_t th_clock_mono_us(void);

/**
 * Parses an RFC 3339 / ISO 8601 UTC time as CloudTrail writes it
 * ("2019-01-01T00:00:00Z", optionally with fractional seconds or a +hh:mm offset).
 * @param[in] s   bytes, need not be NUL-terminated
 * @param[in] len length of s
 * @param[out] out_ms milliseconds since the epoch
 * @return true when the whole string is a valid time.
 */
bool th_clock_parse_iso8601(const char *s, size_t len, int64_t *out_ms);

/**
 * Formats @p ms as "YYYY-MM-DDThh:mm:ss.sssZ" (or without millis when they are 0).
 * @param[out] out at least 32 bytes
 */
void th_clock_format_iso8601(int64_t ms, char out[32]);

#endif
