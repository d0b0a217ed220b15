/* SPDX-License-Identifier: MIT */
/*
 * notify.c -- what the Slack and PagerDuty formatters share: reading an alert document that may
 * hold anything anywhere, and the links they build from it, trusting event data in one narrow way.
 */
#include <stdio.h>
#include <string.h>

#include "notify_int.h"
#include "trailhook/mem.h"

#define MAX_REGION 32
#define MAX_IMAGE  64

/* ---- reading the document ------------------------------------------------------------------ */

const char *th_notify_str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s != NULL && s[0] != '\0' ? s : NULL;
}

const char *th_notify_scalar(const json_t *obj, const char *key, char *buf, size_t size)
{
    const json_t *v = json_object_get(obj, key);
    if (json_is_integer(v)) {
        snprintf(buf, size, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return buf;
    }
    return th_notify_str(obj, key);
}

/* ---- links ----------------------------------------------------------------------------------- */

bool th_notify_url_ok(const char *url)
{
    size_t sent = 0;

    if (url == NULL || (strncmp(url, "https://", 8) != 0 && strncmp(url, "http://", 7) != 0)) {
        return false;
    }
    for (const char *p = url; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("<>|\"'\\`", c) != NULL) {
            return false;
        }
        /* Measured as sent: each '&' goes out as "&amp;". */
        sent += c == '&' ? 5 : 1;
    }
    return sent <= TH_NOTIFY_MAX_URL;
}

/* True when @p s is 1..@p max characters from @p allowed. */
static bool shaped(const char *s, const char *allowed, size_t max)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n > 0 && n <= max && strspn(s, allowed) == n;
}

char *th_notify_console_url(const json_t *alert)
{
    const char *region = th_notify_str(alert, "region");
    const char *image = th_notify_str(alert, "image_id");

    /* The region becomes part of the host name: only AWS's own shape may get there. */
    if (!shaped(region, "abcdefghijklmnopqrstuvwxyz0123456789-", MAX_REGION) ||
        !shaped(image, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                MAX_IMAGE)) {
        return NULL;
    }
    return th_xasprintf("https://%s.console.aws.amazon.com/ec2/home?region=%s"
                        "#ImageDetails:imageId=%s",
                        region, region, image);
}

char *th_notify_place(const json_t *alert)
{
    const char *account = th_notify_str(alert, "account_id");
    const char *region = th_notify_str(alert, "region");

    if (account != NULL && region != NULL) {
        return th_xasprintf("%s/%s", account, region);
    }
    return th_xstrdup(account != NULL ? account : region);
}
