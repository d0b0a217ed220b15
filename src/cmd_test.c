/* SPDX-License-Identifier: MIT */
/*
 * cmd_test.c -- `trailhook test`: runs the Tests of Panther-format rule specs against the
 * compiled rules, with Mocks for check_account_age, and no state at all.
 */
#include <string.h>

#include "trailhook/cmd.h"
#include "trailhook/event.h"
#include "trailhook/rule.h"
#include "trailhook/spec.h"

/* The mocks a spec may name: Panther helpers the compiled rules call. */
static const char *const mockable[] = {"check_account_age"};

struct mock_ctx {
    bool has_mock;
    bool value;
};

static bool mocked_account_age(void *ctx, const char *account_id, int64_t at_ms)
{
    const struct mock_ctx *m = ctx;
    (void)account_id;
    (void)at_ms;
    /* Unmocked, a test runs against an empty new-account set: tests are hermetic. */
    return m->has_mock && m->value;
}

/* Applies a test's mocks; on an unknown name fills @p why and returns false. */
static bool apply_mocks(const struct th_spec_test *t, struct mock_ctx *m, char *why, size_t n)
{
    for (size_t i = 0; i < t->nmocks; i++) {
        const char *name = t->mocks[i].object_name;
        if (strcmp(name, mockable[0]) != 0) {
            snprintf(why, n, "unknown mock '%s' (trailhook can mock: %s)", name, mockable[0]);
            return false;
        }
        m->has_mock = true;
        m->value = th_event_truthy(t->mocks[i].return_value);
    }
    return true;
}

/* Runs one test; prints its line; returns true when it passed. */
static bool run_test(const struct th_spec *spec, const struct th_spec_test *t, FILE *out)
{
    struct mock_ctx m = {false, false};
    struct th_rule_result res;
    char why[256] = "";
    bool ok = apply_mocks(t, &m, why, sizeof(why));

    if (ok) {
        spec->rule->eval(t->log, mocked_account_age, &m, &res);
        if (res.verdict == TH_RULE_ERROR) {
            ok = false;
            snprintf(why, sizeof(why), "rule error: %s", res.error);
        } else if ((res.verdict == TH_RULE_MATCH) != t->expected) {
            ok = false;
            snprintf(why, sizeof(why), "expected %s, got %s", t->expected ? "true" : "false",
                     t->expected ? "false" : "true");
        }
    }
    if (ok) {
        fprintf(out, "PASS %s: %s\n", spec->rule_id, t->name);
    } else {
        fprintf(out, "FAIL %s: %s: %s\n", spec->rule_id, t->name, why);
    }
    return ok;
}

int th_cmd_test(int nfiles, char *const *files, FILE *out)
{
    int passed = 0;
    int failed = 0;

    if (nfiles == 0) {
        fprintf(stderr, "trailhook test: give at least one rule spec file\n");
        return TH_EXIT_USAGE;
    }
    for (int i = 0; i < nfiles; i++) {
        struct th_spec *spec = NULL;
        char err[512];
        if (th_spec_load(files[i], &spec, err, sizeof(err)) != TH_OK) {
            fprintf(stderr, "trailhook test: %s\n", err);
            return TH_EXIT_USAGE;
        }
        for (size_t k = 0; k < spec->ntests; k++) {
            if (run_test(spec, &spec->tests[k], out)) {
                passed++;
            } else {
                failed++;
            }
        }
        th_spec_free(spec);
    }
    fprintf(out, "%d passed, %d failed\n", passed, failed);
    fflush(out);
    return failed > 0 ? TH_EXIT_FAILED : TH_EXIT_OK;
}
