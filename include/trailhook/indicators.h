/* SPDX-License-Identifier: MIT */
/*
 * indicators.h -- Panther's p_any_* indicator fields of a CloudTrail record (AWS ARNs, account
 * IDs, IP addresses), which alerts carry as summary attributes. Pure; any thread.
 */
#ifndef TRAILHOOK_INDICATORS_H
#define TRAILHOOK_INDICATORS_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

/**
 * Extracts p_any_aws_arns (every distinct string of the record that is an AWS ARN),
 * p_any_aws_account_ids (12-digit ids of the identity fields, of ARNs and of *AccountId keys) and
 * p_any_ip_addresses (sourceIPAddress and the IP keys of request/response data, when valid IPs).
 * Each is a sorted list of distinct strings; empty ones are omitted.
 * @return new reference (an object).
 */
json_t *th_indicators_extract(const json_t *event);

/** Is @p s (length @p len) an ARN: "arn:" and six ':'-separated sections? */
bool th_indicators_is_arn(const char *s, size_t len);

/** Is @p s exactly 12 ASCII digits? */
bool th_indicators_is_account_id(const char *s);

#endif
