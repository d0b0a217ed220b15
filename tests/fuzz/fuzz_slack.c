/* SPDX-License-Identifier: MIT */
/*
 * fuzz_slack.c -- the Slack formatter on arbitrary JSON taken as an alert document: for every
 * kind the message must be valid JSON within Slack's limits, and event data must never open a
 * link or mention. The raw bytes also go through th_slack_truncate, which must give UTF-8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "trailhook/slack.h"

static void require(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_slack: %s\n", what);
        abort();
    }
}

/* A mrkdwn text: within @p max, and every '<' opens one of our own http(s) links. */
static void check_mrkdwn(const json_t *obj, size_t max)
{
    const char *text = json_string_value(json_object_get(obj, "text"));
    require(text != NULL, "text object without text");
    require(code_points(text) <= max, "text over its limit");
    if (strcmp(json_string_value(json_object_get(obj, "type")), "plain_text") == 0) {
        return;
    }
    for (const char *p = strchr(text, '<'); p != NULL; p = strchr(p + 1, '<')) {
        require(strncmp(p, "<https://", 9) == 0 || strncmp(p, "<http://", 8) == 0,
                "'<' that is not our link: event data reached mrkdwn unescaped");
        /* A link cut before its '>' would swallow the rest of the text. */
        require(strchr(p, '>') != NULL, "link without its closing '>'");
    }
}

static void check_block(const json_t *b)
{
    const char *type = json_string_value(json_object_get(b, "type"));
    const json_t *text = json_object_get(b, "text");
    const json_t *fields = json_object_get(b, "fields");
    const json_t *elements = json_object_get(b, "elements");

    require(type != NULL, "block without type");
    if (text != NULL) {
        check_mrkdwn(text,
                     strcmp(type, "header") == 0 ? TH_SLACK_MAX_HEADER : TH_SLACK_MAX_SECTION);
    }
    require(text != NULL || json_array_size(fields) > 0 || json_array_size(elements) > 0,
            "empty block");
    require(json_array_size(fields) <= TH_SLACK_MAX_FIELDS, "too many fields");
    for (size_t i = 0; i < json_array_size(fields); i++) {
        check_mrkdwn(json_array_get(fields, i), TH_SLACK_MAX_FIELD);
    }
    require(json_array_size(elements) <= 10, "too many context elements");
    for (size_t i = 0; i < json_array_size(elements); i++) {
        check_mrkdwn(json_array_get(elements, i), TH_SLACK_MAX_SECTION);
    }
}

static void check_message(const json_t *msg)
{
    char *dumped = json_dumps(msg, JSON_COMPACT);
    json_t *back = dumped != NULL ? json_loads(dumped, 0, NULL) : NULL;
    const json_t *blocks = json_object_get(msg, "blocks");
    const char *text = json_string_value(json_object_get(msg, "text"));

    require(back != NULL, "message is not valid JSON");
    require(text != NULL && code_points(text) <= TH_SLACK_MAX_TEXT, "fallback text over 4000");
    require(json_array_size(blocks) > 0 && json_array_size(blocks) <= TH_SLACK_MAX_BLOCKS,
            "block count");
    for (size_t i = 0; i < json_array_size(blocks); i++) {
        check_block(json_array_get(blocks, i));
    }
    json_decref(back);
    free(dumped);
}

static void check_truncate(const uint8_t *data, size_t size)
{
    char *raw = malloc(size + 1);
    memcpy(raw, data, size);
    raw[size] = '\0';
    size_t max = size > 0 ? data[0] % 64 : 0;
    char *cut = th_slack_truncate(raw, max);
    json_t *s = json_string(cut);
    require(s != NULL, "truncate gave invalid UTF-8");
    require(code_points(cut) <= max, "truncate over its limit");
    json_decref(s);
    free(cut);
    free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const enum th_outbox_kind kinds[] = {TH_OUTBOX_ALERT, TH_OUTBOX_RULE_ERROR,
                                                TH_OUTBOX_RESOLVE};
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);

    check_truncate(data, size);
    if (doc == NULL) {
        return 0;
    }
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_t *msg = th_slack_message(kinds[i], doc);
        check_message(msg);
        json_decref(msg);
    }
    json_decref(doc);
    return 0;
}
