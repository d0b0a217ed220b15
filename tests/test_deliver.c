/* SPDX-License-Identifier: MIT */
/* test_deliver.c -- backoff with full jitter, and the per-destination rate limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "trailhook/deliver.h"

static void backoff_grows_is_capped_and_honours_the_floor(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        int64_t first = th_deliver_backoff_ms(1, 1000, 300000, 0);
        int64_t fifth = th_deliver_backoff_ms(5, 1000, 300000, 0);
        int64_t late = th_deliver_backoff_ms(40, 1000, 300000, 0);
        assert_true(first >= 0 && first <= 1000);
        assert_true(fifth >= 0 && fifth <= 16000);
        assert_true(late >= 0 && late <= 300000);
        /* Retry-After is a floor, whatever the jitter drew. */
        assert_true(th_deliver_backoff_ms(1, 1000, 300000, 2000) >= 2000);
    }
}

static void jitter_spreads_retries(void **state)
{
    int64_t lo = INT64_MAX;
    int64_t hi = 0;
    (void)state;
    for (int i = 0; i < 200; i++) {
        int64_t d = th_deliver_backoff_ms(4, 1000, 300000, 0);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    /* Full jitter over [0, 8 s]: 200 draws are not all alike. */
    assert_true(hi - lo > 2000);
}

static void rate_limit_allows_a_burst_then_the_rate(void **state)
{
    struct th_ratelimit rl;
    (void)state;
    th_ratelimit_init(&rl, 60, 3, 0); /* Slack: one a second, a burst of three */
    assert_int_equal(th_ratelimit_take(&rl, 0), 0);
    assert_int_equal(th_ratelimit_take(&rl, 0), 0);
    assert_int_equal(th_ratelimit_take(&rl, 0), 0);
    int64_t wait = th_ratelimit_take(&rl, 0);
    assert_true(wait > 900 && wait <= 1001);
    assert_int_equal(th_ratelimit_take(&rl, 1000), 0);
    assert_true(th_ratelimit_take(&rl, 1000) > 0);
    /* Unlimited. */
    th_ratelimit_init(&rl, 0, 1, 0);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(th_ratelimit_take(&rl, 0), 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(backoff_grows_is_capped_and_honours_the_floor),
        cmocka_unit_test(jitter_spreads_retries),
        cmocka_unit_test(rate_limit_allows_a_burst_then_the_rate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
