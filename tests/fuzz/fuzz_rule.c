/* SPDX-License-Identifier: MIT */
/*
 * fuzz_rule.c -- the rule, its context, summary and indicators on arbitrary JSON: every record
 * must give a verdict without crashing.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "fuzz.h"
#include "trailhook/alert.h"
#include "trailhook/indicators.h"
#include "trailhook/rule.h"

static bool any_account(void *ctx, const char *account_id, int64_t at_ms)
{
    (void)ctx;
    (void)at_ms;
    return account_id[0] == '0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char attr0[] = "sourceIpAddress";
    static char attr1[] = "p_any_aws_arns";
    static char attr2[] = "requestParameters.imageId";
    char *const attrs[] = {attr0, attr1, attr2};
    struct th_rule_result res;
    char account[64];
    json_t *ev = json_loadb((const char *)data, size, 0, NULL);
    if (ev == NULL) {
        return 0;
    }
    th_rule_ami_public_eval(ev, any_account, NULL, &res);
    th_rule_created_account(ev, account);
    json_t *ctx = th_rule_context(ev);
    json_t *ind = th_indicators_extract(ev);
    json_t *sum = th_rule_summary(ev, ind, attrs, 3);
    json_decref(sum);
    json_decref(ind);
    json_decref(ctx);
    json_decref(ev);
    return 0;
}
