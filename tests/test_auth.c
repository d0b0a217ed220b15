/* SPDX-License-Identifier: MIT */
/* test_auth.c -- API key, Bearer and Basic credentials, with rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/auth.h"
#include "trailhook/hash.h"

static char key1[] = "k-one";
static char key2[] = "k-two";
static char basic1[] = "eventbridge:s3cret";

/* A configuration holding only these credentials. */
static struct th_config credentials(char **keys, size_t nkeys, char **basics, size_t nbasics)
{
    struct th_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.api_keys = keys;
    cfg.napi_keys = nkeys;
    cfg.basic_auth = basics;
    cfg.nbasic_auth = nbasics;
    return cfg;
}

static bool check_with(struct th_config cfg, const char *api_key, const char *authorization)
{
    struct th_auth_request r = {api_key, authorization};
    return th_auth_check(&cfg, &r);
}

static struct th_config config(void)
{
    static char *keys[] = {key1, key2};
    static char *basics[] = {basic1};
    return credentials(keys, 2, basics, 1);
}

static bool check(const char *api_key, const char *authorization)
{
    return check_with(config(), api_key, authorization);
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

/* Five keys of one length, and two Basic credentials whose passwords hold a colon. */
static char rot1[] = "rot-key-aaaaaaaaaaaaaaaa";
static char rot2[] = "rot-key-bbbbbbbbbbbbbbbb";
static char rot3[] = "rot-key-cccccccccccccccc";
static char rot4[] = "rot-key-dddddddddddddddd";
static char rot5[] = "rot-key-eeeeeeeeeeeeeeee";
static char cred1[] = "alice:pa:ss";
static char cred2[] = "bob:wo:rd";

static bool check_rotation(const char *api_key, const char *authorization)
{
    static char *keys[] = {rot1, rot2, rot3, rot4, rot5};
    static char *basics[] = {cred1, cred2};
    return check_with(credentials(keys, 5, basics, 2), api_key, authorization);
}

static bool bearer_rotation(const char *key)
{
    char header[64];
    snprintf(header, sizeof(header), "Bearer %s", key);
    return check_rotation(NULL, header);
}

/* "Basic " and the base64 of @p text. */
static void basic_header(const char *text, char *out, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(text);
    size_t k = (size_t)snprintf(out, len, "Basic ");
    for (size_t i = 0; i < n && k + 4 < len; i += 3) {
        unsigned v = (unsigned char)text[i] << 16;
        v |= i + 1 < n ? (unsigned char)text[i + 1] << 8 : 0;
        v |= i + 2 < n ? (unsigned char)text[i + 2] : 0;
        out[k++] = alphabet[v >> 18 & 63];
        out[k++] = alphabet[v >> 12 & 63];
        out[k++] = i + 1 < n ? alphabet[v >> 6 & 63] : '=';
        out[k++] = i + 2 < n ? alphabet[v & 63] : '=';
    }
    out[k] = '\0';
}

static bool basic_rotation(const char *text)
{
    char header[128];
    basic_header(text, header, sizeof(header));
    return check_rotation(NULL, header);
}

static void every_key_is_accepted_wherever_it_is_configured(void **state)
{
    const char *keys[] = {rot1, rot2, rot3, rot4, rot5};
    (void)state;
    /* First, middle and last: no key is skipped, whatever matched before it. */
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        assert_true(check_rotation(keys[i], NULL));
        assert_true(bearer_rotation(keys[i]));
    }
    assert_true(basic_rotation(cred1));
    assert_true(basic_rotation(cred2));
}

static void near_misses_of_every_key_are_refused(void **state)
{
    const char *keys[] = {rot1, rot2, rot3, rot4, rot5};
    char other[64];
    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        size_t len = strlen(keys[i]);
        /* Its first byte wrong, its last byte wrong, one byte short, one byte long. */
        snprintf(other, sizeof(other), "%s", keys[i]);
        other[0] = 'R';
        assert_false(check_rotation(other, NULL));
        assert_false(bearer_rotation(other));
        snprintf(other, sizeof(other), "%s", keys[i]);
        other[len - 1] = 'z';
        assert_false(check_rotation(other, NULL));
        assert_false(bearer_rotation(other));
        snprintf(other, sizeof(other), "%.*s", (int)(len - 1), keys[i]);
        assert_false(check_rotation(other, NULL));
        assert_false(bearer_rotation(other));
        snprintf(other, sizeof(other), "%s%c", keys[i], keys[i][len - 1]);
        assert_false(check_rotation(other, NULL));
        assert_false(bearer_rotation(other));
    }
}

static void basic_near_misses_are_refused(void **state)
{
    char header[8200];
    (void)state;
    /* The wrong user, the wrong password, and each half alone. */
    assert_false(basic_rotation("blice:pa:ss"));
    assert_false(basic_rotation("alicf:pa:ss"));
    assert_false(basic_rotation("alice:Pa:ss"));
    assert_false(basic_rotation("alice:pa:sS"));
    assert_false(basic_rotation("alice:pa"));
    assert_false(basic_rotation("alice"));
    assert_false(basic_rotation("alice:"));
    assert_false(basic_rotation(":pa:ss"));
    assert_false(basic_rotation("pa:ss"));
    assert_false(basic_rotation("alice:pa:ss "));
    /* Users and passwords do not mix between credentials. */
    assert_false(basic_rotation("alice:wo:rd"));
    assert_false(basic_rotation("bob:pa:ss"));
    /* A NUL after the credential is one byte too many (base64 of "alice:pa:ss\0"). */
    assert_false(check_rotation(NULL, "Basic YWxpY2U6cGE6c3MA"));
    /* An API key is no Basic credential, in base64 or not. */
    assert_false(basic_rotation(rot1));
    assert_false(check_rotation(NULL, "Basic rot-key-aaaaaaaaaaaaaaaa"));
    /* Over-long: refused without reading it all. */
    memset(header, 'A', sizeof(header) - 1);
    memcpy(header, "Basic ", 6);
    header[sizeof(header) - 1] = '\0';
    assert_false(check_rotation(NULL, header));
}

static void a_scheme_needs_its_space_and_a_value(void **state)
{
    char header[64];
    (void)state;
    snprintf(header, sizeof(header), "Bearer%s", rot1);
    assert_false(check_rotation(NULL, header));
    snprintf(header, sizeof(header), "Bearer  %s", rot1);
    assert_true(check_rotation(NULL, header));
    assert_false(check_rotation(NULL, "Bearer "));
    assert_false(check_rotation(NULL, "Basic "));
    assert_false(check_rotation(NULL, ""));
    assert_false(check_rotation("", NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(api_key_header_any_of_several),
        cmocka_unit_test(bearer_and_basic),
        cmocka_unit_test(configured_only_with_credentials),
        cmocka_unit_test(constant_time_equal_compares_content_and_length),
        cmocka_unit_test(sha256_known_answers),
        cmocka_unit_test(every_key_is_accepted_wherever_it_is_configured),
        cmocka_unit_test(near_misses_of_every_key_are_refused),
        cmocka_unit_test(basic_near_misses_are_refused),
        cmocka_unit_test(a_scheme_needs_its_space_and_a_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
