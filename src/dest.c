/* SPDX-License-Identifier: MIT */
/*
 * dest.c -- the four destination types: format the document (slack.c, pagerduty.c, webhook.c),
 * POST it with the lane's client, and classify the answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/dest.h"
#include "trailhook/mem.h"
#include "trailhook/pagerduty.h"
#include "trailhook/slack.h"
#include "trailhook/webhook.h"

static const char *const kind_names[] = {"alert", "rule_error", "resolve"};

/* Printable start of a receiver's body for a dead letter: one line, no control bytes. */
static void body_excerpt(const char *body, char *out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; body[i] != '\0' && k + 1 < n && i < 160; i++) {
        unsigned char ch = (unsigned char)body[i];
        out[k++] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[k] = '\0';
}

static void classify_status(const struct th_httpc_response *resp, int64_t now_ms,
                            struct th_dest_result *res)
{
    char excerpt[192];
    long st = resp->status;
    body_excerpt(resp->body, excerpt, sizeof(excerpt));
    res->status = st;
    if (st >= 200 && st < 300) {
        res->outcome = TH_DEST_DELIVERED;
        return;
    }
    bool temporary = st == 429 || st >= 500;
    res->outcome = temporary ? TH_DEST_RETRY : TH_DEST_DEAD;
    res->reason = st == 429   ? TH_DEST_REASON_RATELIMITED
                  : st >= 500 ? TH_DEST_REASON_SERVER
                              : TH_DEST_REASON_CLIENT;
    if (temporary && !th_httpc_retry_after(resp->retry_after, now_ms, &res->retry_after_ms)) {
        res->retry_after_ms = 0;
    }
    snprintf(res->detail, sizeof(res->detail), "HTTP %ld: %s", st,
             excerpt[0] != '\0' ? excerpt : "(empty body)");
}

void th_dest_classify(enum th_err rc, const struct th_httpc_response *resp, int64_t now_ms,
                      struct th_dest_result *res)
{
    memset(res, 0, sizeof(*res));
    if (rc == TH_OK) {
        classify_status(resp, now_ms, res);
        return;
    }
    /* A URL libcurl cannot use will not get better by retrying. */
    res->outcome = rc == TH_EINVAL ? TH_DEST_DEAD : TH_DEST_RETRY;
    res->reason =
        resp->failure == TH_HTTPC_TIMEOUT ? TH_DEST_REASON_TIMEOUT : TH_DEST_REASON_NETWORK;
    snprintf(res->detail, sizeof(res->detail), "%s: %.200s",
             resp->failure == TH_HTTPC_TIMEOUT ? "timeout" : "network error", resp->error);
}

static void post_json(const struct th_config_dest *cfg, const struct th_dest_io *io,
                      const char *body, size_t len, const char *const *extra, size_t nextra,
                      struct th_dest_result *res)
{
    const char *headers[8] = {"Content-Type: application/json"};
    size_t n = 1;
    for (size_t i = 0; i < nextra && n < sizeof(headers) / sizeof(headers[0]); i++) {
        headers[n++] = extra[i];
    }
    struct th_httpc_request req = {
        cfg->url, body, len, headers, n, (long)cfg->connect_timeout_ms, (long)cfg->timeout_ms};
    struct th_httpc_response resp;
    enum th_err rc = th_httpc_post(io->http, &req, &resp);
    th_dest_classify(rc, &resp, io->now_ms, res);
}

/* ---- console ---------------------------------------------------------------------------- */

static void console_send(const struct th_config_dest *cfg, const struct th_dest_io *io,
                         enum th_outbox_kind kind, const json_t *doc, struct th_dest_result *res)
{
    json_t *line = json_deep_copy(doc);
    (void)cfg;
    memset(res, 0, sizeof(*res));
    json_object_set_new(line, "type", json_string(kind_names[kind]));
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    /* One write per line, flushed now: a reader piping stdout sees each alert at once. */
    int rc = fprintf(io->console, "%s\n", text);
    free(text);
    if (rc < 0 || fflush(io->console) != 0) {
        res->outcome = TH_DEST_RETRY;
        snprintf(res->detail, sizeof(res->detail), "cannot write to stdout");
        return;
    }
    res->outcome = TH_DEST_DELIVERED;
}

/* ---- slack, pagerduty, webhook ------------------------------------------------------------ */

static void slack_send(const struct th_config_dest *cfg, const struct th_dest_io *io,
                       enum th_outbox_kind kind, const json_t *doc, struct th_dest_result *res)
{
    json_t *msg = th_slack_message(kind, doc);
    char *body = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    post_json(cfg, io, body, strlen(body), NULL, 0, res);
    free(body);
}

static void pagerduty_send(const struct th_config_dest *cfg, const struct th_dest_io *io,
                           enum th_outbox_kind kind, const json_t *doc, struct th_dest_result *res)
{
    size_t len = 0;
    char *body = th_pagerduty_event(kind, doc, cfg->secret, &len);
    post_json(cfg, io, body, len, NULL, 0, res);
    free(body);
}

static void webhook_send(const struct th_config_dest *cfg, const struct th_dest_io *io,
                         enum th_outbox_kind kind, const json_t *doc, struct th_dest_result *res)
{
    size_t len = 0;
    char *body = th_webhook_body(kind, doc, &len);
    char *extra[2] = {NULL, NULL};
    size_t n = 0;
    if (cfg->secret != NULL) {
        extra[n++] = th_xasprintf(
            "%s: %s", cfg->secret_header != NULL ? cfg->secret_header : "X-Trailhook-Secret",
            cfg->secret);
    }
    if (cfg->hmac_secret != NULL) {
        char sig[72];
        th_webhook_signature(cfg->hmac_secret, body, len, sig);
        extra[n++] = th_xasprintf("%s: %s", TH_WEBHOOK_SIGNATURE_HEADER, sig);
    }
    post_json(cfg, io, body, len, (const char *const *)extra, n, res);
    for (size_t i = 0; i < n; i++) {
        free(extra[i]);
    }
    free(body);
}

static const struct th_dest_ops ops[] = {
    [TH_DEST_CONSOLE] = {"console", console_send},
    [TH_DEST_SLACK] = {"slack", slack_send},
    [TH_DEST_PAGERDUTY] = {"pagerduty", pagerduty_send},
    [TH_DEST_WEBHOOK] = {"webhook", webhook_send},
};

const struct th_dest_ops *th_dest_ops_for(enum th_dest_type type)
{
    return &ops[type];
}
