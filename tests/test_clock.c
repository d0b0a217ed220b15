/* SPDX-License-Identifier: MIT */
/* test_clock.c -- CloudTrail's ISO 8601 times, both ways. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/clock.h"

static int64_t parse(const char *s)
{
    int64_t ms = -1;
    assert_true(th_clock_parse_iso8601(s, strlen(s), &ms));
    return ms;
}

static void parses_cloudtrail_times(void **state)
{
    (void)state;
    assert_int_equal(parse("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(parse("2019-01-01T00:00:00Z"), 1546300800000LL);
    assert_int_equal(parse("2019-01-01T00:00:00.250Z"), 1546300800250LL);
    assert_int_equal(parse("2019-01-01T01:00:00+01:00"), 1546300800000LL);
    assert_int_equal(parse("2024-02-29T12:00:00Z"), 1709208000000LL);
}

static void rejects_what_is_not_a_time(void **state)
{
    int64_t ms;
    (void)state;
    assert_false(th_clock_parse_iso8601("yyyy-mm-ddThh:mm:ssZ", 20, &ms));
    assert_false(th_clock_parse_iso8601("2019-13-01T00:00:00Z", 20, &ms));
    assert_false(th_clock_parse_iso8601("2019-02-30T00:00:00Z", 20, &ms));
    assert_false(th_clock_parse_iso8601("2019-01-01T00:00:00", 19, &ms));
    assert_false(th_clock_parse_iso8601("2019-01-01T00:00:00Zjunk", 24, &ms));
}

static void formats_round_trip(void **state)
{
    char out[32];
    (void)state;
    th_clock_format_iso8601(1546300800000LL, out);
    assert_string_equal(out, "2019-01-01T00:00:00Z");
    th_clock_format_iso8601(1546300800250LL, out);
    assert_string_equal(out, "2019-01-01T00:00:00.250Z");
    assert_int_equal(parse(out), 1546300800250LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(parses_cloudtrail_times),
        cmocka_unit_test(rejects_what_is_not_a_time),
        cmocka_unit_test(formats_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
