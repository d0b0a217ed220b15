/* SPDX-License-Identifier: MIT */
/*
 * test_webhook.c -- the generic webhook body a receiver routes on ("type") and the signature it
 * verifies with the shared key.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "trailhook/hash.h"
#include "trailhook/webhook.h"

#include "alert_fixture.h"

static void body_is_the_document_with_its_type(void **state)
{
    static const char *const types[] = {"alert", "rule_error", "resolve"};
    const enum th_outbox_kind kinds[] = {TH_OUTBOX_ALERT, TH_OUTBOX_RULE_ERROR, TH_OUTBOX_RESOLVE};

    for (size_t i = 0; i < 3; i++) {
        size_t len = 0;
        char *body = th_webhook_body(kinds[i], *state, &len);
        json_t *doc = json_loads(body, 0, NULL);
        assert_int_equal(len, strlen(body));
        assert_non_null(doc);
        assert_string_equal(json_string_value(json_object_get(doc, "type")), types[i]);
        assert_string_equal(json_string_value(json_object_get(doc, "id")),
                            "9c5d40cc4a939b8dd57e6054b52b8126");
        assert_string_equal(json_string_value(json_object_get(doc, "image_id")), "ami-1111");
        /* Everything else is the document as the store gave it. */
        json_object_del(doc, "type");
        assert_true(json_equal(doc, *state));
        /* Compact: one line, no padding. */
        assert_null(strchr(body, '\n'));
        assert_null(strstr(body, "\": "));
        json_decref(doc);
        free(body);
    }
}

static void input_document_is_not_changed(void **state)
{
    json_t *before = json_deep_copy(*state);
    size_t len = 0;
    char *body = th_webhook_body(TH_OUTBOX_RESOLVE, *state, &len);

    assert_true(json_equal(before, *state));
    assert_null(json_object_get(*state, "type"));
    free(body);
    json_decref(before);
}

static void a_document_that_is_not_an_object_still_has_a_type(void **state)
{
    json_t *arr = json_array();
    size_t len = 0;
    char *body = th_webhook_body(TH_OUTBOX_ALERT, arr, &len);
    (void)state;

    assert_string_equal(body, "{\"type\":\"alert\"}");
    free(body);
    body = th_webhook_body(TH_OUTBOX_ALERT, NULL, &len);
    assert_string_equal(body, "{\"type\":\"alert\"}");
    free(body);
    json_decref(arr);
}

static void signature_is_hmac_sha256_of_the_body(void **state)
{
    char sig[72];
    unsigned char mac[TH_SHA256_LEN];
    char hex[2 * TH_SHA256_LEN + 1];
    size_t len = 0;
    char *body = th_webhook_body(TH_OUTBOX_ALERT, *state, &len);

    th_webhook_signature("s3cret", body, len, sig);
    th_hmac_sha256("s3cret", 6, body, len, mac);
    th_hex(mac, sizeof(mac), hex);
    assert_memory_equal(sig, "sha256=", 7);
    assert_string_equal(sig + 7, hex);
    assert_int_equal(strlen(sig), 71);
    free(body);
}

static void signature_matches_a_known_value(void **state)
{
    char sig[72];
    (void)state;
    /* RFC 4231 test case 2, as a receiver in any language would compute it. */
    th_webhook_signature("Jefe", "what do ya want for nothing?", 28, sig);
    assert_string_equal(sig,
                        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

static void signature_changes_with_key_and_body(void **state)
{
    char a[72];
    char b[72];
    char c[72];
    (void)state;
    th_webhook_signature("k1", "{\"type\":\"alert\"}", 16, a);
    th_webhook_signature("k2", "{\"type\":\"alert\"}", 16, b);
    th_webhook_signature("k1", "{\"type\":\"alerT\"}", 16, c);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(body_is_the_document_with_its_type, load_alert, free_alert),
        cmocka_unit_test_setup_teardown(input_document_is_not_changed, load_alert, free_alert),
        cmocka_unit_test(a_document_that_is_not_an_object_still_has_a_type),
        cmocka_unit_test_setup_teardown(signature_is_hmac_sha256_of_the_body, load_alert,
                                        free_alert),
        cmocka_unit_test(signature_matches_a_known_value),
        cmocka_unit_test(signature_changes_with_key_and_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
