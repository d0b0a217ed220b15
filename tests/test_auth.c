/* SPDX-License-Identifier: MIT */
/* test_auth.c -- API key, Bearer and Basic credentials, with rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/auth.h"
#include "trailhook/hash.h"

static char key1[] = "k-one";
static char key2[] = "k-two";
static char basic1[] = "eventbridge:s3cret";

static struct th_config config(void)
{
    static char *keys[] = {key1, key2};
    static char *basics[] = {basic1};
    struct th_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.api_keys = keys;
    cfg.napi_keys = 2;
    cfg.basic_auth = basics;
    cfg.nbasic_auth = 1;
    return cfg;
}

static bool check(const char *api_key, const char *authorization)
{
    struct th_config cfg = config();
    struct th_auth_request r = {api_key, authorization};
    return th_auth_check(&cfg, &r);
}

static void api_key_header_any_of_several(void **state)
{
    (void)state;
    assert_true(check("k-one", NULL));
    assert_true(check("k-two", NULL));
    assert_false(check("k-three", NULL));
    assert_false(check("k-on", NULL));
    assert_false(check("", NULL));
    assert_false(check(NULL, NULL));
}

static void bearer_and_basic(void **state)
{
    (void)state;
    assert_true(check(NULL, "Bearer k-two"));
    assert_true(check(NULL, "bearer k-one"));
    assert_false(check(NULL, "Bearer nope"));
    /* base64("eventbridge:s3cret") */
    assert_true(check(NULL, "Basic ZXZlbnRicmlkZ2U6czNjcmV0"));
    assert_false(check(NULL, "Basic ZXZlbnRicmlkZ2U6czNjcmV1"));
    assert_false(check(NULL, "Basic !!!"));
    /* An API key is not a Basic password, nor the reverse. */
    assert_false(check(NULL, "k-one"));
    assert_false(check("eventbridge:s3cret", NULL));
}

static void configured_only_with_credentials(void **state)
{
    struct th_config cfg;
    (void)state;
    memset(&cfg, 0, sizeof(cfg));
    assert_false(th_auth_configured(&cfg));
    cfg = config();
    assert_true(th_auth_configured(&cfg));
}

static void constant_time_equal_compares_content_and_length(void **state)
{
    (void)state;
    assert_true(th_ct_equal("abc", 3, "abc", 3));
    assert_false(th_ct_equal("abc", 3, "abd", 3));
    assert_false(th_ct_equal("abc", 3, "abcd", 4));
    assert_true(th_ct_equal("", 0, "", 0));
}

static void sha256_known_answers(void **state)
{
    unsigned char d[TH_SHA256_LEN];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    th_sha256("abc", 3, d);
    th_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    th_sha256("", 0, d);
    th_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    th_sha256(two, strlen(two), d);
    th_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_key_header_any_of_several),
        cmocka_unit_test(bearer_and_basic),
        cmocka_unit_test(configured_only_with_credentials),
        cmocka_unit_test(constant_time_equal_compares_content_and_length),
        cmocka_unit_test(sha256_known_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
