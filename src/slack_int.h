/* SPDX-License-Identifier: MIT */
/*
 * slack_int.h -- the links slack.c builds that pagerduty.c reuses, so both messages point to the
 * same pages and trust event data in the same narrow way.
 */
#ifndef TRAILHOOK_SLACK_INT_H
#define TRAILHOOK_SLACK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/**
 * Longest link either message carries, counted as sent in mrkdwn ('&' as "&amp;"): a longer one
 * is left out, never cut into a broken link, and two of them always fit in one section.
 */
#define TH_SLACK_MAX_URL 1000

/**
 * True when @p url is an http(s) URL of printable ASCII, at most TH_SLACK_MAX_URL long, with
 * none of the characters that end or split a Slack link (space, quotes, <, >, |, backslash).
 */
bool th_slack_url_ok(const char *url);

/**
 * The AWS console page of the alert's image, or NULL when the document's region or image id is
 * missing or is not the shape AWS gives them (event data must not steer the link elsewhere).
 * @return new string, free with free(); or NULL.
 */
char *th_slack_console_url(const json_t *alert);

#endif
