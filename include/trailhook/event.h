/* SPDX-License-Identifier: MIT */
/*
 * event.h -- reading fields of a CloudTrail record as Panther's event wrapper does: an exact key
 * first, then a case-insensitive one (first key in document order wins); a JSON null counts as
 * absent. Pure functions over jansson values; any thread.
 */
#ifndef TRAILHOOK_EVENT_H
#define TRAILHOOK_EVENT_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/**
 * Looks @p key up in @p obj: exact match, else the first key equal ignoring ASCII case.
 * @return borrowed value, or NULL when absent, null, or @p obj is not an object.
 */
const json_t *th_event_get(const json_t *obj, const char *key);

/**
 * Panther's deep_get over a dot path ("requestParameters.launchPermission.add.items"): each step
 * looks the key up in the current object; a step on a non-object, an absent key or a final null
 * gives NULL.
 * @return borrowed value or NULL.
 */
const json_t *th_event_get_path(const json_t *obj, const char *dotpath);

/**
 * The string at @p key (looked up as th_event_get), or NULL when absent, not a string, or holding
 * U+0000 (which no C string comparison may see).
 */
const char *th_event_get_string(const json_t *obj, const char *key);

/** Python truthiness of a JSON value: false for NULL, null, false, 0, "", [] and {}. */
bool th_event_truthy(const json_t *value);

/**
 * Is @p value a CloudTrail record: an object with a string eventName? Digest files, EventBridge
 * events of other detail types and test-case wrappers are not.
 */
bool th_event_is_cloudtrail(const json_t *value);

/** The record's eventID as a string, or NULL. Borrowed. */
const char *th_event_id(const json_t *event);

#endif
