/* SPDX-License-Identifier: MIT */
/*
 * spec.c -- loads Panther-format rule specs (YAML, via yaml.c) into struct th_spec: the metadata
 * every alert carries and the unit tests `trailhook test` runs; the logic itself is rule.c.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/mem.h"
#include "trailhook/spec.h"
#include "trailhook/yaml.h"
#include "yaml_int.h"

/* Upstream specs with their test logs are a few KiB; anything near this is not a spec. */
#define SPEC_MAX_BYTES     (4u << 20)
#define SPEC_MAX_DEPTH     64
#define DEDUP_MAX_MINUTES  10080 /* one week */
#define SEVERITY_NAMES_MSG "Info, Low, Medium, High, Critical"

static const char *const severity_names[] = {"Info", "Low", "Medium", "High", "Critical"};

/* Keys of Panther's rule format this service reads. */
static const char *const used_keys[] = {
    "RuleID",    "Enabled", "DisplayName", "Severity",          "Description",        "Runbook",
    "Reference", "Tags",    "Reports",     "SummaryAttributes", "DedupPeriodMinutes", "Threshold",
    "Tests",     NULL};
/*
 * The rest of Panther's rule schema (panther_analysis_tool RULE_SCHEMA, which also refuses
 * unknown keys "to prevent user typos"): valid in a spec, of no use to this service.
 */
static const char *const panther_keys[] = {"AnalysisType",
                                           "Filename",
                                           "Detection",
                                           "LogTypes",
                                           "ScheduledQueries",
                                           "InlineFilters",
                                           "OnlyUseBaseRiskScore",
                                           "OutputIds",
                                           "DynamicSeverities",
                                           "AlertTitle",
                                           "AlertContext",
                                           "GroupBy",
                                           "CreateAlert",
                                           "BaseDetection",
                                           NULL};
/* LogType is a test key Panther still accepts for backwards compatibility. */
static const char *const test_keys[] = {"Name", "ExpectedResult", "Log", "Mocks", "LogType", NULL};
static const char *const mock_keys[] = {"objectName", "returnValue", NULL};

struct ctx {
    const char *name; /* file name for messages */
    char *err;
    size_t errlen;
    char where[48]; /* "test 3: " while inside a test, else "" */
};

const char *th_severity_name(enum th_severity sev)
{
    if ((int)sev < 0 || (size_t)sev >= sizeof(severity_names) / sizeof(severity_names[0])) {
        return "Unknown";
    }
    return severity_names[sev];
}

bool th_severity_parse(const char *name, enum th_severity *out)
{
    for (size_t i = 0; name != NULL && i < sizeof(severity_names) / sizeof(severity_names[0]);
         i++) {
        if (strcmp(name, severity_names[i]) == 0) {
            *out = (enum th_severity)i;
            return true;
        }
    }
    return false;
}

static enum th_err fail(const struct ctx *c, const struct th_yaml_node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "NAME:LINE: <where>message". */
static enum th_err fail(const struct ctx *c, const struct th_yaml_node *at, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    if (c->err != NULL && c->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        snprintf(c->err, c->errlen, "%s:%d: %s%s", c->name, at->line, c->where, msg);
    }
    return TH_EINVAL;
}

static bool in_list(const char *const *list, const struct th_yaml_node *key)
{
    for (size_t i = 0; list[i] != NULL; i++) {
        if (strlen(list[i]) == key->scalar_len &&
            memcmp(list[i], key->scalar, key->scalar_len) == 0) {
            return true;
        }
    }
    return false;
}

/* A misspelt optional key ("Severty") would otherwise silently take its default. */
static enum th_err check_keys(const struct ctx *c, const struct th_yaml_node *map,
                              const char *const *known, const char *const *also, const char *what)
{
    for (size_t i = 0; i < map->npairs; i++) {
        const struct th_yaml_node *key = map->pairs[i].key;
        if (!in_list(known, key) && (also == NULL || !in_list(also, key))) {
            return fail(c, key, "unknown key '%.64s' (not part of %s)", key->scalar, what);
        }
    }
    return TH_OK;
}

/* Panther's schema wants str: a plain `yes` or `12` resolves to another type and is refused. */
static bool is_text(const struct th_yaml_node *n)
{
    json_t *v = NULL;
    bool ok = false;

    if (n == NULL || n->type != TH_YAML_SCALAR) {
        return false;
    }
    if (n->quoted) {
        return true;
    }
    v = th_yaml_to_json(n);
    ok = json_is_string(v);
    json_decref(v);
    return ok;
}

/* Folded (>) and literal (|) blocks end in a newline that is no part of the text. */
static char *strip_trailing_space(char *s)
{
    size_t n = strlen(s);

    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) {
        s[--n] = '\0';
    }
    return s;
}

/* Optional text: a copy of the value, or of @p fallback when the key is absent. */
static enum th_err get_text(const struct ctx *c, const struct th_yaml_node *map, const char *key,
                            const char *fallback, char **out)
{
    const struct th_yaml_node *n = th_yaml_map_get(map, key);

    if (n == NULL) {
        *out = th_xstrdup(fallback);
        return TH_OK;
    }
    if (!is_text(n)) {
        return fail(c, n, "%s must be text", key);
    }
    *out = strip_trailing_space(th_xstrdup(n->scalar));
    return TH_OK;
}

static enum th_err get_required_text(const struct ctx *c, const struct th_yaml_node *map,
                                     const char *key, char **out)
{
    if (th_yaml_map_get(map, key) == NULL) {
        return fail(c, map, "%s is required", key);
    }
    return get_text(c, map, key, "", out);
}

static enum th_err get_text_list(const struct ctx *c, const struct th_yaml_node *map,
                                 const char *key, char ***out, size_t *count)
{
    const struct th_yaml_node *n = th_yaml_map_get(map, key);

    if (n == NULL) {
        return TH_OK;
    }
    if (n->type != TH_YAML_SEQ) {
        return fail(c, n, "%s must be a list of strings", key);
    }
    *out = th_xcalloc(n->nitems, sizeof(**out));
    for (size_t i = 0; i < n->nitems; i++) {
        if (!is_text(n->items[i])) {
            return fail(c, n->items[i], "%s must be a list of strings (item %zu is not text)", key,
                        i + 1);
        }
        (*out)[i] = th_xstrdup(n->items[i]->scalar);
        *count = i + 1;
    }
    return TH_OK;
}

static enum th_err get_bool(const struct ctx *c, const struct th_yaml_node *map, const char *key,
                            bool required, bool *out)
{
    const struct th_yaml_node *n = th_yaml_map_get(map, key);

    if (n == NULL) {
        return required ? fail(c, map, "%s is required", key) : TH_OK;
    }
    if (!th_yaml_bool(n, out)) {
        return fail(c, n, "%s must be true or false", key);
    }
    return TH_OK;
}

static enum th_err get_int(const struct ctx *c, const struct th_yaml_node *map, const char *key,
                           int lo, int hi, int *out)
{
    const struct th_yaml_node *n = th_yaml_map_get(map, key);
    json_t *v = NULL;
    json_int_t i = 0;

    if (n == NULL) {
        return TH_OK;
    }
    v = n->type == TH_YAML_SCALAR && !n->quoted ? th_yaml_to_json(n) : NULL;
    i = json_is_integer(v) ? json_integer_value(v) : (json_int_t)lo - 1;
    json_decref(v);
    if (i < lo || i > hi) {
        return hi == INT_MAX ? fail(c, n, "%s must be a whole number of at least %d", key, lo)
                             : fail(c, n, "%s must be a whole number from %d to %d", key, lo, hi);
    }
    *out = (int)i;
    return TH_OK;
}

static enum th_err parse_rule_id(const struct ctx *c, const struct th_yaml_node *root,
                                 struct th_spec *spec)
{
    enum th_err rc = get_required_text(c, root, "RuleID", &spec->rule_id);

    if (rc != TH_OK) {
        return rc;
    }
    spec->rule = th_rule_find(spec->rule_id);
    if (spec->rule == NULL) {
        return fail(c, th_yaml_map_get(root, "RuleID"),
                    "RuleID '%.128s' names no rule compiled into trailhook", spec->rule_id);
    }
    return TH_OK;
}

static enum th_err parse_severity(const struct ctx *c, const struct th_yaml_node *root,
                                  struct th_spec *spec)
{
    const struct th_yaml_node *n = th_yaml_map_get(root, "Severity");

    if (n == NULL) {
        return fail(c, root, "Severity is required (one of " SEVERITY_NAMES_MSG ")");
    }
    if (n->type != TH_YAML_SCALAR) {
        return fail(c, n, "Severity must be one of " SEVERITY_NAMES_MSG " (got a %s)",
                    n->type == TH_YAML_SEQ ? "list" : "mapping");
    }
    if (!th_severity_parse(n->scalar, &spec->severity)) {
        return fail(c, n, "Severity must be one of " SEVERITY_NAMES_MSG " (got '%.64s')",
                    n->scalar);
    }
    return TH_OK;
}

static enum th_err parse_reports(const struct ctx *c, const struct th_yaml_node *root,
                                 struct th_spec *spec)
{
    const struct th_yaml_node *n = th_yaml_map_get(root, "Reports");

    if (n == NULL) {
        spec->reports = json_object();
        return TH_OK;
    }
    if (n->type != TH_YAML_MAP) {
        return fail(c, n, "Reports must be a mapping of framework to a list of ids");
    }
    for (size_t i = 0; i < n->npairs; i++) {
        if (n->pairs[i].value->type != TH_YAML_SEQ) {
            return fail(c, n->pairs[i].value, "Reports: '%.64s' must be a list",
                        n->pairs[i].key->scalar);
        }
    }
    spec->reports = th_yaml_to_json(n);
    return TH_OK;
}

/* Panther takes a test's Log as a mapping or as a string holding JSON; both end as an object. */
static enum th_err parse_log(const struct ctx *c, const struct th_yaml_node *test, json_t **out)
{
    const struct th_yaml_node *n = th_yaml_map_get(test, "Log");
    json_error_t jerr;

    if (n == NULL) {
        return fail(c, test, "Log is required");
    }
    if (n->type == TH_YAML_MAP) {
        *out = th_yaml_to_json(n);
        return TH_OK;
    }
    if (!is_text(n)) {
        return fail(c, n, "Log must be a mapping or a string holding a JSON object");
    }
    *out = json_loadb(n->scalar, n->scalar_len, JSON_REJECT_DUPLICATES, &jerr);
    if (*out == NULL) {
        return fail(c, n, "Log is not valid JSON: %s (line %d, column %d of the JSON)", jerr.text,
                    jerr.line, jerr.column);
    }
    if (!json_is_object(*out)) {
        return fail(c, n, "Log must hold a JSON object");
    }
    return TH_OK;
}

static enum th_err parse_mock(struct ctx *c, const struct th_yaml_node *n,
                              struct th_spec_mock *mock)
{
    const struct th_yaml_node *value = th_yaml_map_get(n, "returnValue");
    enum th_err rc = TH_OK;

    if (n->type != TH_YAML_MAP) {
        return fail(c, n, "a mock must be a mapping with objectName and returnValue");
    }
    rc = check_keys(c, n, mock_keys, NULL, "a Panther mock");
    if (rc == TH_OK) {
        rc = get_required_text(c, n, "objectName", &mock->object_name);
    }
    if (rc == TH_OK && value == NULL) {
        rc = fail(c, n, "returnValue is required");
    }
    if (rc == TH_OK) {
        mock->return_value = th_yaml_to_json(value);
    }
    return rc;
}

static enum th_err parse_mocks(struct ctx *c, const struct th_yaml_node *test,
                               struct th_spec_test *t)
{
    const struct th_yaml_node *n = th_yaml_map_get(test, "Mocks");
    enum th_err rc = TH_OK;

    if (n == NULL) {
        return TH_OK;
    }
    if (n->type != TH_YAML_SEQ) {
        return fail(c, n, "Mocks must be a list of {objectName, returnValue}");
    }
    t->mocks = th_xcalloc(n->nitems, sizeof(*t->mocks));
    for (size_t i = 0; i < n->nitems && rc == TH_OK; i++) {
        t->nmocks = i + 1;
        rc = parse_mock(c, n->items[i], &t->mocks[i]);
    }
    return rc;
}

static enum th_err parse_test(struct ctx *c, const struct th_yaml_node *n, size_t index,
                              struct th_spec_test *t)
{
    enum th_err rc = TH_OK;

    snprintf(c->where, sizeof(c->where), "test %zu: ", index + 1);
    t->line = n->line;
    if (n->type != TH_YAML_MAP) {
        return fail(c, n, "a test must be a mapping with Name, ExpectedResult and Log");
    }
    rc = check_keys(c, n, test_keys, NULL, "a Panther rule test");
    if (rc == TH_OK) {
        rc = get_required_text(c, n, "Name", &t->name);
    }
    if (rc == TH_OK) {
        rc = get_bool(c, n, "ExpectedResult", true, &t->expected);
    }
    if (rc == TH_OK) {
        rc = parse_log(c, n, &t->log);
    }
    if (rc == TH_OK) {
        rc = parse_mocks(c, n, t);
    }
    return rc;
}

static enum th_err parse_tests(struct ctx *c, const struct th_yaml_node *root, struct th_spec *spec)
{
    const struct th_yaml_node *n = th_yaml_map_get(root, "Tests");
    enum th_err rc = TH_OK;

    if (n == NULL) {
        return TH_OK;
    }
    if (n->type != TH_YAML_SEQ) {
        return fail(c, n, "Tests must be a list");
    }
    spec->tests = th_xcalloc(n->nitems, sizeof(*spec->tests));
    for (size_t i = 0; i < n->nitems && rc == TH_OK; i++) {
        spec->ntests = i + 1;
        rc = parse_test(c, n->items[i], i, &spec->tests[i]);
    }
    c->where[0] = '\0';
    return rc;
}

/* RuleID, Severity and the text an alert shows. */
static enum th_err parse_metadata(const struct ctx *c, const struct th_yaml_node *root,
                                  struct th_spec *spec)
{
    enum th_err rc = parse_rule_id(c, root, spec);

    if (rc == TH_OK) {
        rc = parse_severity(c, root, spec);
    }
    if (rc == TH_OK) {
        rc = get_bool(c, root, "Enabled", false, &spec->enabled);
    }
    if (rc == TH_OK) {
        rc = get_text(c, root, "DisplayName", spec->rule_id, &spec->display_name);
    }
    if (rc == TH_OK) {
        rc = get_text(c, root, "Description", "", &spec->description);
    }
    if (rc == TH_OK) {
        rc = get_text(c, root, "Runbook", "", &spec->runbook);
    }
    if (rc == TH_OK) {
        rc = get_text(c, root, "Reference", "", &spec->reference);
    }
    return rc;
}

/* Lists, grouping and tests. */
static enum th_err parse_rest(struct ctx *c, const struct th_yaml_node *root, struct th_spec *spec)
{
    enum th_err rc = get_text_list(c, root, "Tags", &spec->tags, &spec->ntags);

    if (rc == TH_OK) {
        rc = get_text_list(c, root, "SummaryAttributes", &spec->summary_attributes,
                           &spec->nsummary_attributes);
    }
    if (rc == TH_OK) {
        rc = parse_reports(c, root, spec);
    }
    if (rc == TH_OK) {
        rc = get_int(c, root, "DedupPeriodMinutes", 1, DEDUP_MAX_MINUTES,
                     &spec->dedup_period_minutes);
    }
    if (rc == TH_OK) {
        rc = get_int(c, root, "Threshold", 1, INT_MAX, &spec->threshold);
    }
    if (rc == TH_OK) {
        rc = parse_tests(c, root, spec);
    }
    return rc;
}

enum th_err th_spec_parse(const char *name, const char *data, size_t len, struct th_spec **out,
                          char *err, size_t errlen)
{
    struct ctx c = {.name = name, .err = err, .errlen = errlen};
    struct th_yaml_node *root = NULL;
    struct th_spec *spec = NULL;
    char yerr[256];
    enum th_err rc = TH_OK;

    *out = NULL;
    if (th_yaml_parse(data, len, SPEC_MAX_DEPTH, &root, yerr, sizeof(yerr)) != TH_OK) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "%s: %s", name, yerr);
        }
        rc = TH_EPARSE;
        goto out;
    }
    if (root->type != TH_YAML_MAP) {
        rc = fail(&c, root, "a rule spec must be a mapping of keys (RuleID, Severity, ...)");
        goto out;
    }
    spec = th_xcalloc(1, sizeof(*spec));
    spec->path = th_xstrdup(name);
    spec->enabled = true;
    spec->dedup_period_minutes = 60;
    spec->threshold = 1;
    rc = check_keys(&c, root, used_keys, panther_keys, "Panther's rule format");
    if (rc == TH_OK) {
        rc = parse_metadata(&c, root, spec);
    }
    if (rc == TH_OK) {
        rc = parse_rest(&c, root, spec);
    }
    if (rc == TH_OK) {
        *out = spec;
        spec = NULL;
    }
out:
    th_spec_free(spec);
    th_yaml_free(root);
    return rc;
}

enum th_err th_spec_load(const char *path, struct th_spec **out, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int errnum = 0;
    char why[128] = "larger than 4 MiB";
    enum th_err rc = th_yaml_read_file(path, SPEC_MAX_BYTES, &data, &len, &errnum);

    *out = NULL;
    if (rc != TH_OK) {
        if (errnum != 0) {
            strerror_r(errnum, why, sizeof(why));
        }
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "cannot read rule spec %s: %s", path, why);
        }
        return TH_EIO;
    }
    rc = th_spec_parse(path, data, len, out, err, errlen);
    free(data);
    return rc;
}

static void free_strings(char **list, size_t n)
{
    for (size_t i = 0; list != NULL && i < n; i++) {
        free(list[i]);
    }
    free(list);
}

static void free_test(struct th_spec_test *t)
{
    free(t->name);
    json_decref(t->log);
    for (size_t i = 0; i < t->nmocks; i++) {
        free(t->mocks[i].object_name);
        json_decref(t->mocks[i].return_value);
    }
    free(t->mocks);
}

void th_spec_free(struct th_spec *spec)
{
    if (spec == NULL) {
        return;
    }
    free(spec->path);
    free(spec->rule_id);
    free(spec->display_name);
    free(spec->description);
    free(spec->runbook);
    free(spec->reference);
    free_strings(spec->tags, spec->ntags);
    json_decref(spec->reports);
    free_strings(spec->summary_attributes, spec->nsummary_attributes);
    for (size_t i = 0; i < spec->ntests; i++) {
        free_test(&spec->tests[i]);
    }
    free(spec->tests);
    free(spec);
}

/* Takes ownership of @p spec; refuses a second spec for one rule, which would be ambiguous. */
static enum th_err set_add(struct th_spec_set *set, struct th_spec *spec, char *err, size_t errlen)
{
    for (size_t i = 0; i < set->nspecs; i++) {
        if (strcmp(set->specs[i]->rule_id, spec->rule_id) == 0) {
            if (err != NULL && errlen > 0) {
                snprintf(err, errlen, "%s: RuleID '%.128s' is already defined in %s", spec->path,
                         spec->rule_id, set->specs[i]->path);
            }
            th_spec_free(spec);
            return TH_EINVAL;
        }
    }
    set->specs = th_xrealloc(set->specs, (set->nspecs + 1) * sizeof(*set->specs));
    set->specs[set->nspecs++] = spec;
    return TH_OK;
}

static bool is_spec_name(const char *name)
{
    size_t n = strlen(name);

    if (name[0] == '.') {
        return false;
    }
    return (n > 4 && strcmp(name + n - 4, ".yml") == 0) ||
           (n > 5 && strcmp(name + n - 5, ".yaml") == 0);
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yml / *.yaml names of @p dir, sorted so the load order does not depend on the disk. */
static enum th_err list_specs(const char *dir, char ***names, size_t *count, char *err,
                              size_t errlen)
{
    DIR *d = opendir(dir);
    struct dirent *ent = NULL;
    char why[128] = "";

    if (d == NULL) {
        strerror_r(errno, why, sizeof(why));
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "cannot open rules directory %s: %s", dir, why);
        }
        return TH_EIO;
    }
    for (ent = readdir(d); ent != NULL; ent = readdir(d)) {
        if (is_spec_name(ent->d_name)) {
            *names = th_xrealloc(*names, (*count + 1) * sizeof(**names));
            (*names)[(*count)++] = th_xstrdup(ent->d_name);
        }
    }
    closedir(d);
    if (*count > 0) {
        qsort(*names, *count, sizeof(**names), name_cmp);
    }
    return TH_OK;
}

static enum th_err load_dir(const char *dir, struct th_spec_set *out, char *err, size_t errlen)
{
    char **names = NULL;
    size_t count = 0;
    enum th_err rc = list_specs(dir, &names, &count, err, errlen);

    if (rc == TH_OK && count == 0) {
        if (err != NULL && errlen > 0) {
            snprintf(err, errlen, "rules directory %s holds no *.yml or *.yaml rule spec", dir);
        }
        rc = TH_EINVAL;
    }
    for (size_t i = 0; i < count && rc == TH_OK; i++) {
        char *path = th_xasprintf("%s/%s", dir, names[i]);
        struct th_spec *spec = NULL;
        rc = th_spec_load(path, &spec, err, errlen);
        if (rc == TH_OK) {
            rc = set_add(out, spec, err, errlen);
        }
        free(path);
    }
    free_strings(names, count);
    return rc;
}

static enum th_err load_embedded(struct th_spec_set *out, char *err, size_t errlen)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; th_spec_embedded_specs[i].name != NULL && rc == TH_OK; i++) {
        const struct th_spec_embedded *e = &th_spec_embedded_specs[i];
        struct th_spec *spec = NULL;
        rc = th_spec_parse(e->name, e->data, e->len, &spec, err, errlen);
        if (rc == TH_OK) {
            rc = set_add(out, spec, err, errlen);
        }
    }
    return rc;
}

enum th_err th_spec_set_load(const char *dir, struct th_spec_set *out, char *err, size_t errlen)
{
    enum th_err rc = TH_OK;

    out->specs = NULL;
    out->nspecs = 0;
    rc = dir != NULL ? load_dir(dir, out, err, errlen) : load_embedded(out, err, errlen);
    if (rc != TH_OK) {
        th_spec_set_cleanup(out);
    }
    return rc;
}

void th_spec_set_cleanup(struct th_spec_set *set)
{
    for (size_t i = 0; i < set->nspecs; i++) {
        th_spec_free(set->specs[i]);
    }
    free(set->specs);
    set->specs = NULL;
    set->nspecs = 0;
}
