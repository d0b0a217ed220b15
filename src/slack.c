/* SPDX-License-Identifier: MIT */
/*
 * slack.c -- the Slack incoming-webhook message of an alert, resolution or rule error: Block Kit
 * blocks with a plain-text fallback, every text escaped and cut to Slack's limits.
 *
 * Event values (user agent, ARN, region...) are attacker-controlled. They reach Slack only
 * escaped (&amp; &lt; &gt;) inside mrkdwn objects marked "verbatim", so they can neither open a
 * link or mention nor be auto-linked; the only links are the ones built here from checked URLs.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "notify_int.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"
#include "trailhook/slack.h"

#define ELLIPSIS     "\xe2\x80\xa6"
#define ELLIPSIS_LEN 3
#define REPLACEMENT  "\xef\xbf\xbd" /* U+FFFD, for bytes that are not UTF-8 */

/* ---- text: UTF-8 cuts and mrkdwn escaping ------------------------------------------------ */

/*
 * Length of the well-formed UTF-8 sequence at @p s (RFC 3629: no overlongs, surrogates or code
 * points past U+10FFFF), or 0 when @p s does not start one. Continuation bytes are checked one
 * by one, so a NUL ends the scan and nothing past the terminator is read.
 */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n = c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;

    if (n <= 1) {
        return n;
    }
    /* The second byte's range is narrower after these leads (overlongs, surrogates, > 10FFFF). */
    if (c == 0xe0) {
        lo = 0xa0;
    } else if (c == 0xed) {
        hi = 0x9f;
    } else if (c == 0xf0) {
        lo = 0x90;
    } else if (c == 0xf4) {
        hi = 0x8f;
    }
    if (s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

/* Counts code points; a byte that starts no sequence counts as one (it becomes U+FFFD). */
static size_t utf8_count(const char *s, bool *valid)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t count = 0;

    *valid = true;
    while (*p != '\0') {
        size_t n = utf8_seq(p);
        if (n == 0) {
            *valid = false;
            n = 1;
        }
        p += n;
        count++;
    }
    return count;
}

/*
 * The first @p keep code points of @p s, ill-formed bytes replaced by U+FFFD so that the result
 * is always a string jansson accepts, then "…" when @p ellipsis.
 */
static char *utf8_copy(const char *s, size_t keep, bool ellipsis)
{
    const unsigned char *p = (const unsigned char *)s;
    /* A kept code point is at most 4 bytes, U+FFFD included: a 10 MB runbook cut to 3000
     * characters needs 12 KB, not a copy of itself. */
    char *out = th_xmalloc(keep * 4 + ELLIPSIS_LEN + 1);
    size_t len = 0;

    for (size_t i = 0; i < keep && *p != '\0'; i++) {
        size_t n = utf8_seq(p);
        if (n == 0) {
            memcpy(out + len, REPLACEMENT, 3);
            len += 3;
            p++;
            continue;
        }
        memcpy(out + len, p, n);
        len += n;
        p += n;
    }
    if (ellipsis) {
        memcpy(out + len, ELLIPSIS, ELLIPSIS_LEN);
        len += ELLIPSIS_LEN;
    }
    out[len] = '\0';
    return out;
}

/* th_slack_truncate that also says whether it cut. */
static char *cut(const char *s, size_t max, bool *was_cut)
{
    bool valid = true;
    size_t count = utf8_count(s, &valid);

    *was_cut = count > max;
    if (!*was_cut) {
        return valid ? th_xstrdup(s) : utf8_copy(s, count, false);
    }
    if (max == 0) {
        return th_xstrdup("");
    }
    /* The ellipsis is one of the max characters. */
    return utf8_copy(s, max - 1, true);
}

char *th_slack_truncate(const char *s, size_t max)
{
    bool was_cut = false;
    return cut(s != NULL ? s : "", max, &was_cut);
}

/* @p s with &, < and > as the entities Slack requires in mrkdwn. @return new string. */
static char *escape(const char *s)
{
    size_t n = 0;
    for (const char *p = s; *p != '\0'; p++) {
        n += *p == '&' ? 5 : *p == '<' || *p == '>' ? 4 : 1;
    }
    char *out = th_xmalloc(n + 1);
    char *q = out;
    for (const char *p = s; *p != '\0'; p++) {
        const char *rep = *p == '&' ? "&amp;" : *p == '<' ? "&lt;" : *p == '>' ? "&gt;" : NULL;
        if (rep == NULL) {
            *q++ = *p;
        } else {
            memcpy(q, rep, strlen(rep));
            q += strlen(rep);
        }
    }
    *q = '\0';
    return out;
}

/*
 * Cuts escaped mrkdwn to @p max characters without leaving half an entity ("&am…"), which Slack
 * would show raw. Every '&' in our mrkdwn starts an entity, and entities are ASCII, so looking
 * back four bytes from the ellipsis for an unclosed '&' finds any partial one.
 * @return new string.
 */
static char *cut_mrkdwn(const char *text, size_t max)
{
    bool was_cut = false;
    char *out = cut(text, max, &was_cut);
    size_t len = strlen(out);

    if (!was_cut || len < ELLIPSIS_LEN) {
        return out;
    }
    char *end = out + len - ELLIPSIS_LEN;
    for (char *p = end; p > out && end - p < 5;) {
        p--;
        if (*p == ';') {
            break;
        }
        if (*p == '&') {
            memcpy(p, ELLIPSIS, ELLIPSIS_LEN + 1);
            break;
        }
    }
    return out;
}

/* "*label*\n" then @p value escaped, within @p max characters. @return new string. */
static char *labelled(const char *label, const char *value, size_t max)
{
    char *esc = escape(value);
    char *text = th_xasprintf("*%s*\n%s", label, esc);
    char *out = cut_mrkdwn(text, max);
    free(esc);
    free(text);
    return out;
}

/* @p raw escaped and cut to @p max. @return new string. */
static char *mrkdwn(const char *raw, size_t max)
{
    char *esc = escape(raw);
    char *out = cut_mrkdwn(esc, max);
    free(esc);
    return out;
}

/* ---- raw text, built up -------------------------------------------------------------------- */

/*
 * A growing string that stops taking text once it holds @c cap bytes: a raw text of 4 * max
 * bytes has at least max code points, and whatever lies past them would be cut anyway, so a
 * hostile 10 MB list costs no more than a short one.
 */
struct strbuf {
    char *s;
    size_t len;
    size_t cap;
};

static void sb_init(struct strbuf *sb, size_t max_chars)
{
    sb->s = th_xstrdup("");
    sb->len = 0;
    sb->cap = max_chars * 4;
}

static void sb_add(struct strbuf *sb, const char *s)
{
    size_t n = strlen(s);
    if (sb->len >= sb->cap) {
        return;
    }
    sb->s = th_xrealloc(sb->s, sb->len + n + 1);
    memcpy(sb->s + sb->len, s, n + 1);
    sb->len += n;
}

/* Adds @p s (may be NULL: nothing) between @p before and @p after. */
static void sb_add3(struct strbuf *sb, const char *before, const char *s, const char *after)
{
    if (s != NULL) {
        sb_add(sb, before);
        sb_add(sb, s);
        sb_add(sb, after);
    }
}

/* ---- blocks ---------------------------------------------------------------------------------- */

/* A mrkdwn text object; "verbatim" stops Slack auto-linking URLs, channels and @-mentions. */
static json_t *mrkdwn_obj(char *text_take)
{
    json_t *obj = json_pack("{s:s, s:s, s:b}", "type", "mrkdwn", "text", text_take, "verbatim", 1);
    free(text_take);
    return obj;
}

static json_t *header_block(const char *text)
{
    char *cut_text = th_slack_truncate(text, TH_SLACK_MAX_HEADER);
    json_t *block = json_pack("{s:s, s:{s:s, s:s, s:b}}", "type", "header", "text", "type",
                              "plain_text", "text", cut_text, "emoji", 1);
    free(cut_text);
    return block;
}

/* @p text_take must already be escaped and within TH_SLACK_MAX_SECTION. */
static json_t *section_block(char *text_take)
{
    return json_pack("{s:s, s:o}", "type", "section", "text", mrkdwn_obj(text_take));
}

static void add_field(json_t *fields, const char *label, const char *value)
{
    if (value != NULL && json_array_size(fields) < TH_SLACK_MAX_FIELDS) {
        json_array_append_new(fields, mrkdwn_obj(labelled(label, value, TH_SLACK_MAX_FIELD)));
    }
}

/* Appends a section of @p fields, or nothing when it is empty (Slack refuses an empty one). */
static void add_fields_block(json_t *blocks, json_t *fields)
{
    if (json_array_size(fields) == 0) {
        json_decref(fields);
        return;
    }
    json_array_append_new(blocks, json_pack("{s:s, s:o}", "type", "section", "fields", fields));
}

/* ---- building text from lists -------------------------------------------------------------- */

/* Appends the strings of @p list (or @p list itself when it is a string), separated by ", ". */
static void sb_add_list(struct strbuf *sb, const json_t *list)
{
    size_t added = 0;

    if (json_is_string(list)) {
        sb_add(sb, json_string_value(list));
        return;
    }
    for (size_t i = 0; i < json_array_size(list) && sb->len < sb->cap; i++) {
        const char *s = json_string_value(json_array_get(list, i));
        if (s != NULL && s[0] != '\0') {
            sb_add(sb, added++ > 0 ? ", " : "");
            sb_add(sb, s);
        }
    }
}

/* "MITRE ATT&CK: TA0010:T1537; ..." from the reports object, raw (not yet escaped). */
static void sb_add_reports(struct strbuf *sb, const json_t *reports)
{
    /* jansson's iterator takes a non-const object; a copy avoids casting const away. */
    json_t *copy = json_is_object(reports) ? json_deep_copy(reports) : NULL;
    const char *key = NULL;
    json_t *value = NULL;
    size_t added = 0;

    json_object_foreach(copy, key, value)
    {
        if (sb->len >= sb->cap) {
            break;
        }
        sb_add(sb, added++ > 0 ? "; " : "");
        sb_add(sb, key);
        sb_add(sb, ": ");
        sb_add_list(sb, value);
    }
    json_decref(copy);
}

/* The context block: rule and alert id, the MITRE reports, the tags. */
static json_t *context_block(const json_t *alert)
{
    json_t *elements = json_array();
    struct strbuf sb;
    char *text =
        th_xasprintf("Rule: %s | Alert: %s", th_notify_or(th_notify_str(alert, "rule"), "unknown"),
                     th_notify_or(th_notify_str(alert, "id"), "unknown"));

    json_array_append_new(elements, mrkdwn_obj(mrkdwn(text, TH_SLACK_MAX_SECTION)));
    sb_init(&sb, TH_SLACK_MAX_SECTION);
    sb_add_reports(&sb, json_object_get(alert, "reports"));
    if (sb.len > 0) {
        json_array_append_new(elements, mrkdwn_obj(mrkdwn(sb.s, TH_SLACK_MAX_SECTION)));
    }
    free(sb.s);
    sb_init(&sb, TH_SLACK_MAX_SECTION);
    sb_add_list(&sb, json_object_get(alert, "tags"));
    if (sb.len > 0) {
        char *tags = th_xasprintf("Tags: %s", sb.s);
        json_array_append_new(elements, mrkdwn_obj(mrkdwn(tags, TH_SLACK_MAX_SECTION)));
        free(tags);
    }
    free(text);
    free(sb.s);
    return json_pack("{s:s, s:o}", "type", "context", "elements", elements);
}

/* ---- the alert message --------------------------------------------------------------------- */

static const char *severity_emoji(const char *severity)
{
    static const char *const names[] = {"Info", "Low", "Medium", "High", "Critical"};
    static const char *const emoji[] = {
        ":information_source:", ":large_yellow_circle:", ":large_orange_circle:", ":red_circle:",
        ":rotating_light:"};
    for (size_t i = 0; severity != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(severity, names[i]) == 0) {
            return emoji[i];
        }
    }
    return ":warning:";
}

static const char *title_of(const json_t *alert)
{
    return th_notify_or(th_notify_str(alert, "title"),
                        th_notify_or(th_notify_str(alert, "rule"), "trailhook alert"));
}

/* "[Medium] Title: ami-1111 in 123456789012/us-west-2", raw. @return new string. */
static char *alert_summary(const json_t *alert)
{
    char *place = th_notify_place(alert);
    struct strbuf sb;

    sb_init(&sb, TH_SLACK_MAX_TEXT);
    sb_add3(&sb, "[", th_notify_str(alert, "severity"), "] ");
    sb_add(&sb, title_of(alert));
    sb_add3(&sb, ": ", th_notify_str(alert, "image_id"), "");
    sb_add3(&sb, " in ", place, "");
    free(place);
    return sb.s;
}

static json_t *alert_fields(const json_t *alert)
{
    const json_t *ctx = json_object_get(alert, "context");
    char count[32];
    json_t *fields = json_array();

    add_field(fields, "Account", th_notify_str(alert, "account_id"));
    add_field(fields, "Region", th_notify_str(alert, "region"));
    add_field(fields, "Image", th_notify_str(alert, "image_id"));
    add_field(fields, "Actor", th_notify_str(json_object_get(ctx, "userIdentity"), "arn"));
    add_field(fields, "Source IP", th_notify_str(ctx, "sourceIPAddress"));
    add_field(fields, "User agent", th_notify_str(ctx, "userAgent"));
    add_field(fields, "Event time", th_notify_str(alert, "first_seen"));
    add_field(fields, "Event count", th_notify_scalar(alert, "event_count", count, sizeof(count)));
    return fields;
}

/* The reference and console links; NULL when there is neither. Checked URLs only. */
static char *links_text(const json_t *alert)
{
    const char *reference = th_notify_str(alert, "reference");
    char *console = th_notify_console_url(alert);
    char *ref_link = NULL;
    char *console_link = NULL;
    char *out = NULL;

    if (th_notify_url_ok(reference)) {
        char *esc = escape(reference);
        ref_link = th_xasprintf("<%s|Runbook reference>", esc);
        free(esc);
    }
    if (console != NULL) {
        console_link =
            th_xasprintf("<%s|AWS console: %s>", console, th_notify_str(alert, "image_id"));
    }
    if (ref_link != NULL || console_link != NULL) {
        /* Two links of at most TH_NOTIFY_MAX_URL escaped: within a section, never cut. */
        out = th_xasprintf("%s%s%s", th_notify_or(ref_link, ""),
                           ref_link != NULL && console_link != NULL ? "  |  " : "",
                           th_notify_or(console_link, ""));
    }
    free(console);
    free(ref_link);
    free(console_link);
    return out;
}

static json_t *alert_blocks(const json_t *alert)
{
    const char *severity = th_notify_str(alert, "severity");
    const char *description = th_notify_str(alert, "description");
    const char *runbook = th_notify_str(alert, "runbook");
    char *links = links_text(alert);
    json_t *blocks = json_array();
    struct strbuf header;

    sb_init(&header, TH_SLACK_MAX_HEADER);
    sb_add(&header, severity_emoji(severity));
    sb_add3(&header, " [", severity, "]");
    sb_add3(&header, " ", title_of(alert), "");
    json_array_append_new(blocks, header_block(header.s));
    if (description != NULL) {
        json_array_append_new(blocks, section_block(mrkdwn(description, TH_SLACK_MAX_SECTION)));
    }
    if (runbook != NULL) {
        json_array_append_new(blocks,
                              section_block(labelled("Runbook", runbook, TH_SLACK_MAX_SECTION)));
    }
    add_fields_block(blocks, alert_fields(alert));
    if (links != NULL) {
        json_array_append_new(blocks, section_block(cut_mrkdwn(links, TH_SLACK_MAX_SECTION)));
    }
    json_array_append_new(blocks, context_block(alert));
    free(header.s);
    free(links);
    return blocks;
}

/* ---- resolution and rule errors -------------------------------------------------------------- */

/* "Resolved: Title — ami-1111 in 123456789012/us-west-2 was made private again", raw. */
static char *resolve_summary(const json_t *alert)
{
    const char *image = th_notify_str(alert, "image_id");
    char *place = th_notify_place(alert);
    char *out = th_xasprintf("Resolved: %s \xe2\x80\x94 %s%s%s was made private again",
                             title_of(alert), th_notify_or(image, "the image"),
                             place != NULL ? " in " : "", th_notify_or(place, ""));
    free(place);
    return out;
}

static json_t *resolve_blocks(const json_t *alert, const char *summary)
{
    const char *at = th_notify_str(alert, "resolved_at");
    char *header = th_xasprintf(":white_check_mark: Resolved: %s", title_of(alert));
    char *esc = escape(summary);
    /* The time is document text like the rest: escaped too. */
    char *at_esc = escape(th_notify_or(at, ""));
    char *text = th_xasprintf("%s%s%s", esc, at != NULL ? "\n*Resolved at* " : "", at_esc);
    json_t *blocks = json_array();

    json_array_append_new(blocks, header_block(header));
    json_array_append_new(blocks, section_block(cut_mrkdwn(text, TH_SLACK_MAX_SECTION)));
    free(at_esc);
    free(header);
    free(esc);
    free(text);
    return blocks;
}

static json_t *rule_error_blocks(const json_t *doc)
{
    char id[32];
    char *header =
        th_xasprintf(":warning: Rule error: %s", th_notify_or(th_notify_str(doc, "rule"), "?"));
    json_t *blocks = json_array();
    json_t *fields = json_array();

    add_field(fields, "Rule", th_notify_str(doc, "rule"));
    add_field(fields, "Event ID", th_notify_scalar(doc, "event_id", id, sizeof(id)));
    add_field(fields, "Error", th_notify_str(doc, "error"));
    json_array_append_new(blocks, header_block(header));
    add_fields_block(blocks, fields);
    free(header);
    return blocks;
}

/* "Rule error in <rule> on event <event_id>: <error>", raw. */
static char *rule_error_summary(const json_t *doc)
{
    char id[32];
    return th_xasprintf("Rule error in %s on event %s: %s",
                        th_notify_or(th_notify_str(doc, "rule"), "?"),
                        th_notify_or(th_notify_scalar(doc, "event_id", id, sizeof(id)), "?"),
                        th_notify_or(th_notify_str(doc, "error"), "unknown error"));
}

/* ---- the message ------------------------------------------------------------------------------
 */

json_t *th_slack_message(enum th_outbox_kind kind, const json_t *alert)
{
    char *summary = NULL;
    json_t *blocks = NULL;

    if (kind == TH_OUTBOX_RESOLVE) {
        summary = resolve_summary(alert);
        blocks = resolve_blocks(alert, summary);
    } else if (kind == TH_OUTBOX_RULE_ERROR) {
        summary = rule_error_summary(alert);
        blocks = rule_error_blocks(alert);
    } else {
        summary = alert_summary(alert);
        blocks = alert_blocks(alert);
    }
    char *text = mrkdwn(summary, TH_SLACK_MAX_TEXT);
    json_t *msg = json_pack("{s:s, s:o}", "text", text, "blocks", blocks);
    free(summary);
    free(text);
    if (msg == NULL) {
        /* Every text went through cut(), which yields valid UTF-8: only allocation fails. */
        th_log(TH_LOG_ERROR, "slack", "out of memory building a message");
        abort();
    }
    return msg;
}
