/* SPDX-License-Identifier: MIT */
/*
 * test_hash.c -- HMAC-SHA256 against the RFC 4231 test vectors (what webhook receivers verify
 * our signatures with), plus the SHA-256 and hex helpers under it, and th_ct_equal, which every
 * credential check goes through (that it runs the same instructions wherever two values differ
 * is proved on the real binary by tests/integration/test_security.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/hash.h"

/* Hex of HMAC-SHA256(key, data), for comparing with the published digests. */
static void hmac_hex(const void *key, size_t keylen, const void *data, size_t len,
                     char out[2 * TH_SHA256_LEN + 1])
{
    unsigned char mac[TH_SHA256_LEN];
    th_hmac_sha256(key, keylen, data, len, mac);
    th_hex(mac, sizeof(mac), out);
}

static void sha256_of_abc_is_the_fips_digest(void **state)
{
    unsigned char d[TH_SHA256_LEN];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    th_sha256("abc", 3, d);
    th_hex(d, sizeof(d), hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void rfc4231_case1_short_key(void **state)
{
    unsigned char key[20];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 0x0b, sizeof(key));
    hmac_hex(key, sizeof(key), "Hi There", 8, hex);
    assert_string_equal(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

static void rfc4231_case2_key_shorter_than_output(void **state)
{
    const char data[] = "what do ya want for nothing?";
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    hmac_hex("Jefe", 4, data, strlen(data), hex);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void rfc4231_case3_combined_length_over_block(void **state)
{
    unsigned char key[20];
    unsigned char data[50];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 0xaa, sizeof(key));
    memset(data, 0xdd, sizeof(data));
    hmac_hex(key, sizeof(key), data, sizeof(data), hex);
    assert_string_equal(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
}

static void rfc4231_case4_counting_key(void **state)
{
    unsigned char key[25];
    unsigned char data[50];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    for (size_t i = 0; i < sizeof(key); i++) {
        key[i] = (unsigned char)(i + 1);
    }
    memset(data, 0xcd, sizeof(data));
    hmac_hex(key, sizeof(key), data, sizeof(data), hex);
    assert_string_equal(hex, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
}

static void rfc4231_case5_truncated_output(void **state)
{
    unsigned char key[20];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 0x0c, sizeof(key));
    hmac_hex(key, sizeof(key), "Test With Truncation", 20, hex);
    /* The RFC publishes only the first 128 bits for this case. */
    assert_memory_equal(hex, "a3b6167473100ee06e0c796c2955552b", 32);
}

static void rfc4231_case6_key_longer_than_block(void **state)
{
    const char data[] = "Test Using Larger Than Block-Size Key - Hash Key First";
    unsigned char key[131];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 0xaa, sizeof(key));
    hmac_hex(key, sizeof(key), data, strlen(data), hex);
    assert_string_equal(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void rfc4231_case7_long_key_and_data(void **state)
{
    const char data[] = "This is a test using a larger than block-size key and a larger than "
                        "block-size data. The key needs to be hashed before being used by the "
                        "HMAC algorithm.";
    unsigned char key[131];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 0xaa, sizeof(key));
    hmac_hex(key, sizeof(key), data, strlen(data), hex);
    assert_string_equal(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}

static void key_of_exactly_one_block_is_not_hashed(void **state)
{
    char key[65];
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    memset(key, 'k', sizeof(key));
    /* 64 bytes is used as is, 65 is hashed first: the boundary is where off-by-ones live. */
    hmac_hex(key, 64, "block-sized key", 15, hex);
    assert_string_equal(hex, "fa828622183c28b475ecd957cc29b1fe479712fa50bb4333dd58b526dcd751b1");
    hmac_hex(key, 65, "block-sized key", 15, hex);
    assert_string_equal(hex, "1fbcad30b5038ba6a971422ce472fc4f0c0e9761bbe1297473521d2b96803d83");
}

static void empty_key_and_message_are_allowed(void **state)
{
    char hex[2 * TH_SHA256_LEN + 1];
    (void)state;
    hmac_hex("", 0, "", 0, hex);
    assert_string_equal(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

/* A credential of 39 bytes: no multiple of a word or of a block. */
static const char ct_key[] = "k-0123456789abcdefghijklmnopqrstuvwxyz!";

static void ct_equal_rejects_a_difference_at_every_position(void **state)
{
    char other[sizeof(ct_key)];
    const size_t len = strlen(ct_key);
    (void)state;
    assert_true(th_ct_equal(ct_key, len, ct_key, len));
    for (size_t i = 0; i < len; i++) {
        /* The lowest and the highest bit of byte i: first byte, last byte and all between. */
        for (unsigned bit = 0x01; bit <= 0x80; bit <<= 7) {
            memcpy(other, ct_key, sizeof(other));
            other[i] = (char)(other[i] ^ bit);
            assert_false(th_ct_equal(ct_key, len, other, len));
            assert_false(th_ct_equal(other, len, ct_key, len));
        }
    }
}

static void ct_equal_rejects_prefixes_and_extensions(void **state)
{
    char longer[sizeof(ct_key) + 1];
    const size_t len = strlen(ct_key);
    (void)state;
    for (size_t n = 0; n < len; n++) {
        assert_false(th_ct_equal(ct_key, len, ct_key, n));
        assert_false(th_ct_equal(ct_key, n, ct_key, len));
    }
    memcpy(longer, ct_key, len);
    longer[len] = 'x';
    assert_false(th_ct_equal(ct_key, len, longer, len + 1));
    /* A NUL after the value is a byte like any other: lengths count, not terminators. */
    longer[len] = '\0';
    assert_false(th_ct_equal(ct_key, len, longer, len + 1));
    assert_false(th_ct_equal("", 0, "\0", 1));
}

static void ct_equal_compares_past_the_first_block(void **state)
{
    unsigned char a[200];
    unsigned char b[200];
    (void)state;
    for (size_t i = 0; i < sizeof(a); i++) {
        a[i] = (unsigned char)(i * 7 + 3);
    }
    memcpy(b, a, sizeof(b));
    assert_true(th_ct_equal(a, sizeof(a), b, sizeof(b)));
    /* Differences in the second, third and last SHA-256 block. */
    static const size_t at[] = {64, 150, 199};
    for (size_t k = 0; k < sizeof(at) / sizeof(at[0]); k++) {
        memcpy(b, a, sizeof(b));
        b[at[k]] ^= 0x01;
        assert_false(th_ct_equal(a, sizeof(a), b, sizeof(b)));
    }
    /* Lengths either side of the padding boundary (55/56 bytes) and of a block (64/65). */
    assert_false(th_ct_equal(a, 55, a, 56));
    assert_false(th_ct_equal(a, 64, a, 65));
    assert_true(th_ct_equal(a, 56, b, 56));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sha256_of_abc_is_the_fips_digest),
        cmocka_unit_test(rfc4231_case1_short_key),
        cmocka_unit_test(rfc4231_case2_key_shorter_than_output),
        cmocka_unit_test(rfc4231_case3_combined_length_over_block),
        cmocka_unit_test(rfc4231_case4_counting_key),
        cmocka_unit_test(rfc4231_case5_truncated_output),
        cmocka_unit_test(rfc4231_case6_key_longer_than_block),
        cmocka_unit_test(rfc4231_case7_long_key_and_data),
        cmocka_unit_test(key_of_exactly_one_block_is_not_hashed),
        cmocka_unit_test(empty_key_and_message_are_allowed),
        cmocka_unit_test(ct_equal_rejects_a_difference_at_every_position),
        cmocka_unit_test(ct_equal_rejects_prefixes_and_extensions),
        cmocka_unit_test(ct_equal_compares_past_the_first_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
