/* SPDX-License-Identifier: MIT */
/*
 * alert_fixture.h -- what the formatter tests share: the real alert document of
 * tests/fixtures/alerts as a cmocka fixture, and helpers to build and measure long text.
 */
#ifndef TRAILHOOK_TESTS_ALERT_FIXTURE_H
#define TRAILHOOK_TESTS_ALERT_FIXTURE_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* cmocka setup: *state = the alert document the console printed for the spec's first test. */
static inline int load_alert(void **state)
{
    json_error_t err;
    *state = json_load_file(TH_FIXTURES "/alerts/alert_ami_made_public.json", 0, &err);
    return *state != NULL ? 0 : -1;
}

static inline int free_alert(void **state)
{
    json_decref(*state);
    return 0;
}

/* Characters as Slack counts them: UTF-8 code points. */
static inline size_t code_points(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        n += (*p & 0xc0) != 0x80;
    }
    return n;
}

/* @p unit @p times over. @return new string, free with free(). */
static inline char *repeat(const char *unit, size_t times)
{
    size_t len = strlen(unit);
    char *s = malloc(len * times + 1);
    for (size_t i = 0; i < times; i++) {
        memcpy(s + i * len, unit, len);
    }
    s[len * times] = '\0';
    return s;
}

#endif
