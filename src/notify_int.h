/* SPDX-License-Identifier: MIT */
/*
 * notify_int.h -- shared by the Slack and PagerDuty formatters (slack.c, pagerduty.c): reading
 * alert documents defensively, and the links both messages carry, so they point to the same
 * pages and trust event data in the same narrow way. Pure; any thread.
 */
#ifndef TRAILHOOK_NOTIFY_INT_H
#define TRAILHOOK_NOTIFY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/**
 * Longest link either message carries, counted as sent in mrkdwn ('&' as "&amp;"): a longer one
 * is left out, never cut into a broken link, and two of them always fit in one Slack section.
 */
#define TH_NOTIFY_MAX_URL 1000

/** A non-empty string member, else NULL: fuzzed or old documents may hold any type anywhere. */
const char *th_notify_str(const json_t *obj, const char *key);

/** A member shown as text: a string as is, an integer in decimal (written into @p buf). */
const char *th_notify_scalar(const json_t *obj, const char *key, char *buf, size_t size);

/** @p s, or @p dflt when @p s is NULL. */
static inline const char *th_notify_or(const char *s, const char *dflt)
{
    return s != NULL ? s : dflt;
}

/**
 * True when @p url is an http(s) URL of printable ASCII, at most TH_NOTIFY_MAX_URL long as sent,
 * with none of the characters that end or split a Slack link (space, quotes, <, >, |, backslash).
 */
bool th_notify_url_ok(const char *url);

/**
 * The AWS console page of the alert's image, or NULL when the document's region or image id is
 * missing or is not the shape AWS gives them (event data must not steer the link elsewhere).
 * @return new string, free with free(); or NULL.
 */
char *th_notify_console_url(const json_t *alert);

/**
 * Where the exposure is: "account/region", or whichever of the two the document has.
 * @return new string (free with free()), or NULL when it has neither.
 */
char *th_notify_place(const json_t *alert);

#endif
