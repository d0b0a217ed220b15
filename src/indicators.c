/* SPDX-License-Identifier: MIT */
/*
 * indicators.c -- p_any_* fields as Panther's CloudTrail parser fills them: identity fields by
 * name, request/response data scanned by key, and every string that parses as an ARN.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/event.h"
#include "trailhook/indicators.h"

/* A set of strings kept as a JSON object's keys; turned into a sorted list at the end. */
static void add(json_t *set, const char *s)
{
    if (s != NULL && s[0] != '\0') {
        json_object_set_new(set, s, json_true());
    }
}

bool th_indicators_is_arn(const char *s, size_t len)
{
    size_t colons = 0;
    if (len < 4 || memcmp(s, "arn:", 4) != 0) {
        return false;
    }
    for (size_t i = 0; i < len && colons < 5; i++) {
        colons += s[i] == ':';
    }
    return colons >= 5;
}

bool th_indicators_is_account_id(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        if (s[n] < '0' || s[n] > '9') {
            return false;
        }
    }
    return n == 12;
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void add_account(json_t *accounts, const char *s)
{
    if (s != NULL && th_indicators_is_account_id(s)) {
        add(accounts, s);
    }
}

/* The account section of arn:partition:service:region:account:resource. */
static void add_arn_account(json_t *accounts, const char *arn)
{
    const char *p = arn;
    for (int i = 0; i < 4 && p != NULL; i++) {
        p = strchr(p, ':');
        p = p != NULL ? p + 1 : NULL;
    }
    const char *end = p != NULL ? strchr(p, ':') : NULL;
    if (end != NULL && end - p == 12) {
        char id[13];
        memcpy(id, p, 12);
        id[12] = '\0';
        add_account(accounts, id);
    }
}

struct sets {
    json_t *arns;
    json_t *accounts;
    json_t *ips;
};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s);
    size_t m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_ip_key(const char *k)
{
    static const char *const names[] = {"ipv6Addresses", "publicIp", "privateIpAddress",
                                        "ipAddressV4", "sourceIPAddress"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(k, names[i]) == 0) {
            return true;
        }
    }
    return false;
}

/* Keys of raw request/response data that name an account or an IP (Panther's scanners). */
static void scan_keyed(struct sets *s, const char *key, const json_t *v)
{
    if (key == NULL || !json_is_string(v)) {
        return;
    }
    const char *str = json_string_value(v);
    if (strcmp(key, "accountId") == 0 || strcmp(key, "account") == 0 ||
        ends_with(key, "AccountId")) {
        add_account(s->accounts, str);
    }
    if (is_ip_key(key) && is_ip(str)) {
        add(s->ips, str);
    }
}

/* Walks every value; ARNs anywhere, keyed indicators only inside raw data (@p raw). */
static void walk(struct sets *s, const char *key, const json_t *v, bool raw, int depth)
{
    const char *k;
    json_t *child;
    size_t i;

    if (depth > 64) {
        return;
    }
    if (json_is_string(v)) {
        const char *str = json_string_value(v);
        if (th_indicators_is_arn(str, json_string_length(v))) {
            add(s->arns, str);
            add_arn_account(s->accounts, str);
        }
        if (raw) {
            scan_keyed(s, key, v);
        }
    } else if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, child)
        {
            walk(s, k, child, raw, depth + 1);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, child)
        {
            walk(s, key, child, raw, depth + 1);
        }
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Moves a set into out[name] as a sorted list, unless it is empty. */
static void emit(json_t *out, const char *name, json_t *set)
{
    size_t n = json_object_size(set);
    if (n > 0) {
        const char **keys = malloc(n * sizeof(*keys));
        const char *k;
        json_t *v;
        size_t i = 0;
        json_t *list = json_array();
        json_object_foreach(set, k, v)
        {
            keys[i++] = k;
        }
        qsort(keys, n, sizeof(*keys), cmp_str);
        for (i = 0; i < n; i++) {
            json_array_append_new(list, json_string(keys[i]));
        }
        free(keys);
        json_object_set_new(out, name, list);
    }
    json_decref(set);
}

json_t *th_indicators_extract(const json_t *event)
{
    static const char *const raw_fields[] = {"requestParameters", "responseElements",
                                             "additionalEventData", "serviceEventDetails"};
    struct sets s = {json_object(), json_object(), json_object()};
    const json_t *identity = th_event_get(event, "userIdentity");
    const json_t *issuer = th_event_get_path(identity, "sessionContext.sessionIssuer");
    const json_t *resources = th_event_get(event, "resources");
    const json_t *res;
    size_t i;

    add_account(s.accounts, th_event_get_string(event, "recipientAccountId"));
    add_account(s.accounts, th_event_get_string(identity, "accountId"));
    add_account(s.accounts, th_event_get_string(issuer, "accountId"));
    json_array_foreach(resources, i, res)
    {
        add_account(s.accounts, th_event_get_string(res, "accountId"));
    }
    const char *ip = th_event_get_string(event, "sourceIPAddress");
    if (ip != NULL && is_ip(ip)) {
        add(s.ips, ip);
    }
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)event, k, v)
    {
        bool raw = false;
        for (i = 0; i < sizeof(raw_fields) / sizeof(raw_fields[0]); i++) {
            raw = raw || strcmp(k, raw_fields[i]) == 0;
        }
        walk(&s, k, v, raw, 0);
    }
    json_t *out = json_object();
    emit(out, "p_any_aws_arns", s.arns);
    emit(out, "p_any_aws_account_ids", s.accounts);
    emit(out, "p_any_ip_addresses", s.ips);
    return out;
}
