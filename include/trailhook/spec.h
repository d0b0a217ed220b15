/* SPDX-License-Identifier: MIT */
/*
 * spec.h -- Panther-format rule specs (the *.yml files of config/rules): the metadata of a
 * compiled rule and its unit tests. Nothing a user reads in an alert (title, severity, runbook,
 * ...) lives in C.
 */
#ifndef TRAILHOOK_SPEC_H
#define TRAILHOOK_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "trailhook/err.h"
#include "trailhook/rule.h"

enum th_severity {
    TH_SEV_INFO = 0,
    TH_SEV_LOW,
    TH_SEV_MEDIUM,
    TH_SEV_HIGH,
    TH_SEV_CRITICAL,
};

/** "Info", "Low", "Medium", "High", "Critical". */
const char *th_severity_name(enum th_severity sev);

/** Parses exactly one of the five names above (case-sensitive, as Panther's schema). */
bool th_severity_parse(const char *name, enum th_severity *out);

/** One `Mocks` entry of a test. */
struct th_spec_mock {
    char *object_name;    /**< e.g. "check_account_age" */
    json_t *return_value; /**< the YAML value as JSON (new reference owned by the spec) */
};

/** One entry of `Tests`. */
struct th_spec_test {
    char *name;
    bool expected; /**< ExpectedResult */
    json_t *log;   /**< the Log document (owned by the spec) */
    struct th_spec_mock *mocks;
    size_t nmocks;
    int line; /**< line of the test in the spec file */
};

/** A loaded rule spec. Plain data; read-only after th_spec_load(), any thread. */
struct th_spec {
    char *path; /**< the file it came from (or the embedded name) */
    char *rule_id;
    const struct th_rule_def *rule; /**< the compiled rule RuleID names */
    bool enabled;
    char *display_name;
    enum th_severity severity;
    char *description;
    char *runbook;
    char *reference;
    char **tags;
    size_t ntags;
    json_t *reports; /**< object, e.g. {"MITRE ATT&CK":["TA0010:T1537"]}; never NULL */
    char **summary_attributes;
    size_t nsummary_attributes;
    int dedup_period_minutes; /**< default 60 */
    int threshold;            /**< default 1 */
    struct th_spec_test *tests;
    size_t ntests;
};

/**
 * Parses a spec from memory. Required: RuleID (naming a compiled rule), Severity (one of the five
 * names). Optional with defaults: Enabled (true), DisplayName (RuleID), Description, Runbook,
 * Reference (""), Tags, SummaryAttributes ([]), Reports ({}), DedupPeriodMinutes (60, 1..10080),
 * Threshold (1, >= 1), Tests ([]). Keys of Panther's format that do not concern this service
 * (AnalysisType, Filename, LogTypes, OutputIds, ...) are accepted and ignored.
 * @param[in]  name   file name used in messages
 * @param[in]  data   bytes of the YAML file
 * @param[in]  len    length of data
 * @param[out] out    new spec, free with th_spec_free()
 * @param[out] err    on failure "NAME:LINE: what is wrong" (may be NULL)
 * @param[in]  errlen size of err
 * @return TH_OK, TH_EPARSE (YAML), TH_EINVAL (a bad value).
 */
enum th_err th_spec_parse(const char *name, const char *data, size_t len, struct th_spec **out,
                          char *err, size_t errlen);

/** Reads and parses a spec file; as th_spec_parse(), plus TH_EIO when unreadable. */
enum th_err th_spec_load(const char *path, struct th_spec **out, char *err, size_t errlen);

/** Frees a spec; NULL is fine. */
void th_spec_free(struct th_spec *spec);

/** A spec compiled into the binary from config/rules (generated at build time). */
struct th_spec_embedded {
    const char *name;
    const char *data;
    size_t len;
};

/** The embedded specs, ended by an entry whose name is NULL. */
extern const struct th_spec_embedded th_spec_embedded_specs[];

/** A set of loaded specs. */
struct th_spec_set {
    struct th_spec **specs;
    size_t nspecs;
};

/**
 * Loads every *.yml / *.yaml file of @p dir (sorted by name), or the embedded specs when @p dir
 * is NULL. Two specs with one RuleID are an error.
 * @param[out] out filled; release with th_spec_set_cleanup()
 */
enum th_err th_spec_set_load(const char *dir, struct th_spec_set *out, char *err, size_t errlen);

/** Frees every spec of the set and empties it. */
void th_spec_set_cleanup(struct th_spec_set *set);

#endif
