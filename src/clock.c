/* SPDX-License-Identifier: MIT */
/* clock.c -- wall/monotonic clocks and the ISO 8601 UTC times of CloudTrail records. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "trailhook/clock.h"

int64_t th_clock_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t th_clock_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t th_clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* Reads exactly @p n digits at s[*i]. */
static bool digits(const char *s, size_t len, size_t *i, int n, int *out)
{
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9') {
            return false;
        }
        v = v * 10 + (s[*i] - '0');
        (*i)++;
    }
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i < len && (s[*i] == c || (c == 'T' && (s[*i] == 't' || s[*i] == ' ')))) {
        (*i)++;
        return true;
    }
    return false;
}

static bool parse_offset(const char *s, size_t len, size_t *i, int64_t *offset_ms)
{
    int oh = 0;
    int om = 0;
    if (*i < len && (s[*i] == 'Z' || s[*i] == 'z')) {
        (*i)++;
        *offset_ms = 0;
        return true;
    }
    if (*i >= len || (s[*i] != '+' && s[*i] != '-')) {
        return false;
    }
    int sign = s[*i] == '-' ? -1 : 1;
    (*i)++;
    if (!digits(s, len, i, 2, &oh) || !expect(s, len, i, ':') || !digits(s, len, i, 2, &om)) {
        return false;
    }
    if (oh > 23 || om > 59) {
        return false;
    }
    *offset_ms = sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    return true;
}

bool th_clock_parse_iso8601(const char *s, size_t len, int64_t *out_ms)
{
    size_t i = 0;
    int y, mo, d, h, mi, se;
    int ms = 0;
    int64_t offset_ms = 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (!digits(s, len, &i, 4, &y) || !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &mo) ||
        !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &d) || !expect(s, len, &i, 'T') ||
        !digits(s, len, &i, 2, &h) || !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &mi) ||
        !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &se)) {
        return false;
    }
    if (i < len && (s[i] == '.' || s[i] == ',')) {
        i++;
        int scale = 100;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            ms += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start) {
            return false;
        }
    }
    if (!parse_offset(s, len, &i, &offset_ms) || i != len) {
        return false;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60) {
        return false;
    }
    int64_t days = days_from_civil(y, mo, d);
    *out_ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)se * 1000 + ms - offset_ms;
    return true;
}

void th_clock_format_iso8601(int64_t ms, char out[32])
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
    int milli = (int)(ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
    int64_t rem = secs - days * 86400;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int h = (int)(rem / 3600);
    int mi = (int)(rem % 3600 / 60);
    int s = (int)(rem % 60);
    char buf[96];
    if (milli != 0) {
        snprintf(buf, sizeof(buf), "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, m, d, h,
                 mi, s, milli);
    } else {
        snprintf(buf, sizeof(buf), "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)y, m, d, h, mi,
                 s);
    }
    /* Years past 9999 do not occur in CloudTrail; cut rather than overflow. */
    size_t n = strnlen(buf, 31);
    memcpy(out, buf, n);
    out[n] = '\0';
}
