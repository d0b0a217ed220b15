/* SPDX-License-Identifier: MIT */
/* event.c -- Panther-style field lookup on CloudTrail records (exact, then case-insensitive). */
#include <string.h>
#include <strings.h>

#include "trailhook/event.h"

const json_t *th_event_get(const json_t *obj, const char *key)
{
    json_t *found;
    size_t keylen = strlen(key);

    if (!json_is_object(obj)) {
        return NULL;
    }
    found = json_object_getn(obj, key, keylen);
    /* Panther's ImmutableCaseInsensitiveDict: the first key in document order wins. Keys are
     * compared with their lengths, so one holding U+0000 never passes for a shorter one. */
    for (void *it = json_object_iter((json_t *)obj); found == NULL && it != NULL;
         it = json_object_iter_next((json_t *)obj, it)) {
        if (json_object_iter_key_len(it) == keylen &&
            strncasecmp(json_object_iter_key(it), key, keylen) == 0) {
            found = json_object_iter_value(it);
        }
    }
    return json_is_null(found) ? NULL : found;
}

const json_t *th_event_get_path(const json_t *obj, const char *dotpath)
{
    char key[256];
    const json_t *cur = obj;
    const char *p = dotpath;

    while (cur != NULL) {
        const char *dot = strchr(p, '.');
        size_t n = dot != NULL ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(key)) {
            return NULL;
        }
        memcpy(key, p, n);
        key[n] = '\0';
        cur = th_event_get(cur, key);
        if (dot == NULL) {
            return cur;
        }
        p = dot + 1;
    }
    return NULL;
}

const char *th_event_get_string(const json_t *obj, const char *key)
{
    const json_t *v = th_event_get(obj, key);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        return NULL; /* a string holding U+0000 must not compare equal to its prefix */
    }
    return json_string_value(v);
}

bool th_event_truthy(const json_t *value)
{
    if (value == NULL) {
        return false;
    }
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return json_object_size(value) > 0;
    case JSON_ARRAY:
        return json_array_size(value) > 0;
    case JSON_STRING:
        return json_string_length(value) > 0;
    case JSON_INTEGER:
        return json_integer_value(value) != 0;
    case JSON_REAL:
        return json_real_value(value) != 0.0;
    case JSON_TRUE:
        return true;
    case JSON_FALSE:
    case JSON_NULL:
        return false;
    }
    return false;
}

bool th_event_is_cloudtrail(const json_t *value)
{
    return json_is_string(th_event_get(value, "eventName"));
}

const char *th_event_id(const json_t *event)
{
    return th_event_get_string(event, "eventID");
}
