/* SPDX-License-Identifier: MIT */
/*
 * httpc.c -- POSTs to Slack, PagerDuty and webhooks over a libcurl easy handle kept per thread
 * (connections are reused between deliveries), and the Retry-After parser.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "trailhook/clock.h"
#include "trailhook/httpc.h"
#include "trailhook/mem.h"

#define MAX_DELAY_MS (24LL * 3600 * 1000)

struct th_httpc {
    CURL *curl;
    th_httpc_abort_cb abort_cb;
    void *abort_ctx;
    struct th_httpc_response *resp; /* of the transfer in progress */
    size_t body_len;
    char errbuf[CURL_ERROR_SIZE];
};

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct th_httpc *c = ctx;
    size_t len = size * n;
    size_t room = sizeof(c->resp->body) - 1 - c->body_len;
    size_t take = len < room ? len : room;
    /* Only the start is kept (for dead letters and logs); the rest is read and dropped. */
    memcpy(c->resp->body + c->body_len, data, take);
    c->body_len += take;
    c->resp->body[c->body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    struct th_httpc *c = ctx;
    size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof(name) - 1 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        size_t start = sizeof(name) - 1;
        while (start < len && (data[start] == ' ' || data[start] == '\t')) {
            start++;
        }
        size_t end = len;
        while (end > start && isspace((unsigned char)data[end - 1])) {
            end--;
        }
        size_t v = end - start < sizeof(c->resp->retry_after) - 1
                       ? end - start
                       : sizeof(c->resp->retry_after) - 1;
        memcpy(c->resp->retry_after, data + start, v);
        c->resp->retry_after[v] = '\0';
    }
    return len;
}

static int on_progress(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct th_httpc *c = ctx;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return c->abort_cb != NULL && c->abort_cb(c->abort_ctx) ? 1 : 0;
}

struct th_httpc *th_httpc_new(th_httpc_abort_cb abort_cb, void *abort_ctx)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        return NULL;
    }
    struct th_httpc *c = th_xcalloc(1, sizeof(*c));
    c->curl = curl;
    c->abort_cb = abort_cb;
    c->abort_ctx = abort_ctx;
    return c;
}

void th_httpc_free(struct th_httpc *c)
{
    if (c != NULL) {
        curl_easy_cleanup(c->curl);
        free(c);
    }
}

static void set_options(struct th_httpc *c, const struct th_httpc_request *req,
                        struct curl_slist *headers)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->len);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    /* Signals are the main thread's business; curl must not use them for its timeouts. */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "trailhook/" TH_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
}

static enum th_err failure(struct th_httpc_response *resp, CURLcode rc, const char *errbuf)
{
    snprintf(resp->error, sizeof(resp->error), "%s",
             errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        resp->failure = TH_HTTPC_TIMEOUT;
        return TH_ETIMEOUT;
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        resp->failure = TH_HTTPC_ABORTED;
        return TH_ETEMP;
    }
    resp->failure = TH_HTTPC_NETWORK;
    /* Only a URL libcurl cannot parse is hopeless (the loader already refuses other schemes).
     * CURLE_UNSUPPORTED_PROTOCOL also means a receiver that answered something other than HTTP
     * ("Received HTTP/0.9"): a broken or restarting receiver, worth retrying like a reset. */
    return rc == CURLE_URL_MALFORMAT ? TH_EINVAL : TH_ETEMP;
}

enum th_err th_httpc_post(struct th_httpc *c, const struct th_httpc_request *req,
                          struct th_httpc_response *resp)
{
    struct curl_slist *headers = NULL;
    memset(resp, 0, sizeof(*resp));
    c->resp = resp;
    c->body_len = 0;
    c->errbuf[0] = '\0';
    for (size_t i = 0; i < req->nheaders; i++) {
        headers = curl_slist_append(headers, req->headers[i]);
    }
    /* No "Expect: 100-continue" round trip before small JSON bodies. */
    headers = curl_slist_append(headers, "Expect:");
    set_options(c, req, headers);
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_TOTAL_TIME, &resp->seconds);
    curl_slist_free_all(headers);
    c->resp = NULL;
    if (rc != CURLE_OK) {
        return failure(resp, rc, c->errbuf);
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    return TH_OK;
}

/* "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994" */
static bool parse_http_date(const char *s, int64_t *out_ms)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    char mon[4] = "";
    char iso[64];
    int d = 0, y = 0, h = 0, mi = 0, se = 0;
    const char *comma = strchr(s, ',');

    if (comma != NULL && strchr(comma, '-') != NULL) {
        if (sscanf(comma + 1, " %2d-%3s-%2d %2d:%2d:%2d GMT", &d, mon, &y, &h, &mi, &se) != 6) {
            return false;
        }
        y += y < 70 ? 2000 : 1900;
    } else if (comma != NULL) {
        if (sscanf(comma + 1, " %2d %3s %4d %2d:%2d:%2d GMT", &d, mon, &y, &h, &mi, &se) != 6) {
            return false;
        }
    } else if (sscanf(s, "%*3s %3s %d %2d:%2d:%2d %4d", mon, &d, &h, &mi, &se, &y) != 6) {
        return false;
    }
    const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
    if (m == NULL || (m - months) % 3 != 0) {
        return false;
    }
    snprintf(iso, sizeof(iso), "%04d-%02d-%02dT%02d:%02d:%02dZ", y % 10000,
             (int)((m - months) / 3) + 1, d % 100, h % 100, mi % 100, se % 100);
    return th_clock_parse_iso8601(iso, strlen(iso), out_ms);
}

bool th_httpc_retry_after(const char *value, int64_t now_ms, int64_t *delay_ms)
{
    const char *p = value;
    int64_t secs = 0;
    int64_t at = 0;

    if (value == NULL || value[0] == '\0') {
        return false;
    }
    while (*p >= '0' && *p <= '9') {
        secs = secs < MAX_DELAY_MS ? secs * 10 + (*p - '0') : secs;
        p++;
    }
    if (p != value && *p == '\0') {
        *delay_ms = secs * 1000 > MAX_DELAY_MS ? MAX_DELAY_MS : secs * 1000;
        return true;
    }
    if (!parse_http_date(value, &at)) {
        return false;
    }
    int64_t d = at - now_ms;
    *delay_ms = d < 0 ? 0 : d > MAX_DELAY_MS ? MAX_DELAY_MS : d;
    return true;
}
