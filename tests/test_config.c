/* SPDX-License-Identifier: MIT */
/* test_config.c -- configuration: defaults, file, environment, secret files and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "trailhook/config.h"

#define DEFAULT_FILE TH_SOURCE_DIR "/config/trailhook.yml"
#define SECRET       "s3cr3t-VALUE-never-shown"

static const char *const no_vars[] = {NULL};

/* Writes @p text to a new temporary file; @p path receives its name. */
static void write_tmp(char path[64], const char *text)
{
    FILE *fp = NULL;
    int fd = -1;

    snprintf(path, 64, "/tmp/th_config_XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* th_config_load with an environment made of copies of @p vars. */
static enum th_err load(const char *path, const char *const *vars, struct th_config *cfg, char *err,
                        size_t errlen)
{
    size_t n = 0;
    char **env = NULL;
    enum th_err rc = TH_OK;

    while (vars[n] != NULL) {
        n++;
    }
    env = calloc(n + 1, sizeof(*env));
    assert_non_null(env);
    for (size_t i = 0; i < n; i++) {
        env[i] = strdup(vars[i]);
    }
    rc = th_config_load(path, env, cfg, err, errlen);
    for (size_t i = 0; i < n; i++) {
        free(env[i]);
    }
    free(env);
    return rc;
}

/* Loads @p text as a config file with @p vars; expects failure and returns the message. */
static enum th_err load_text_err(const char *text, const char *const *vars, char *err,
                                 size_t errlen, char path[64])
{
    struct th_config cfg;
    enum th_err rc = TH_OK;

    write_tmp(path, text);
    rc = load(path, vars, &cfg, err, errlen);
    th_config_cleanup(&cfg);
    unlink(path);
    assert_int_not_equal(rc, TH_OK);
    assert_true(err[0] != '\0');
    return rc;
}

static void assert_default_scalars(const struct th_config *cfg)
{
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_null(cfg->admin_listen);
    assert_int_equal(cfg->napi_keys, 0);
    assert_string_equal(cfg->api_key_header, "X-Api-Key");
    assert_int_equal(cfg->nbasic_auth, 0);
    assert_string_equal(cfg->state_dir, "./var");
    assert_null(cfg->rules_dir);
    assert_int_equal(cfg->max_body_bytes, 10485760);
    assert_int_equal(cfg->max_inflated_bytes, 67108864);
    assert_int_equal(cfg->max_events, 100000);
    assert_int_equal(cfg->max_json_depth, 64);
    assert_int_equal(cfg->max_string_bytes, 1048576);
    assert_int_equal(cfg->max_header_bytes, 16384);
    assert_int_equal(cfg->max_connections, 4096);
    assert_int_equal(cfg->connection_timeout_seconds, 30);
    assert_true(cfg->workers >= 2);
    assert_int_equal(cfg->queue_capacity, 1024);
    assert_int_equal(cfg->log_level, TH_LOG_INFO);
    assert_int_equal(cfg->dedup, TH_DEDUP_IMAGE);
    assert_int_equal(cfg->seen_event_ttl_seconds, 172800);
    assert_int_equal(cfg->new_account_ttl_seconds, 259200);
    assert_null(cfg->slack_webhook_url);
    assert_null(cfg->pagerduty_routing_key);
    assert_string_equal(cfg->pagerduty_url, "https://events.pagerduty.com/v2/enqueue");
    assert_string_equal(cfg->state_backend, "sqlite");
    assert_null(cfg->state_redis_url);
    assert_null(cfg->tls_cert_file);
    assert_null(cfg->tls_key_file);
}

static void assert_console_only(const struct th_config *cfg)
{
    assert_int_equal(cfg->ndestinations, 1);
    assert_string_equal(cfg->destinations[0].name, "console");
    assert_int_equal(cfg->destinations[0].type, TH_DEST_CONSOLE);
    assert_null(cfg->destinations[0].url);
}

static void test_defaults(void **state)
{
    struct th_config cfg;

    (void)state;
    th_config_defaults(&cfg);
    assert_default_scalars(&cfg);
    assert_int_equal(cfg.ndestinations, 0);
    th_config_cleanup(&cfg);
    assert_null(cfg.listen);
    th_config_cleanup(&cfg);
}

static void test_no_file_gives_defaults_and_console(void **state)
{
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, no_vars, &cfg, err, sizeof(err)), TH_OK);
    assert_default_scalars(&cfg);
    assert_console_only(&cfg);
    th_config_cleanup(&cfg);
    assert_int_equal(th_config_load(NULL, NULL, &cfg, err, sizeof(err)), TH_OK);
    assert_console_only(&cfg);
    th_config_cleanup(&cfg);
}

static void test_documented_default_file(void **state)
{
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    if (load(DEFAULT_FILE, no_vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("config/trailhook.yml does not load: %s", err);
    }
    assert_default_scalars(&cfg);
    assert_console_only(&cfg);
    th_config_cleanup(&cfg);
}

static void test_file_overrides_defaults(void **state)
{
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    write_tmp(path, "listen: 0.0.0.0:9000\nadmin_listen: '[::1]:9100'\n"
                    "api_keys: [k1, k2]\nbasic_auth: 'eb:pw1'\nmax_body_bytes: 2048\n"
                    "workers: 3\nlog_level: debug\ndedup: rule\nrules_dir: /etc/rules\n"
                    "state:\n  backend: redis\n  redis_url: redis://r:6379/0\n"
                    "tls_cert_file: c.pem\ntls_key_file: k.pem\n");
    if (load(path, no_vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_string_equal(cfg.listen, "0.0.0.0:9000");
    assert_string_equal(cfg.admin_listen, "[::1]:9100");
    assert_int_equal(cfg.napi_keys, 2);
    assert_string_equal(cfg.api_keys[1], "k2");
    assert_int_equal(cfg.nbasic_auth, 1);
    assert_string_equal(cfg.basic_auth[0], "eb:pw1");
    assert_int_equal(cfg.max_body_bytes, 2048);
    assert_int_equal(cfg.workers, 3);
    assert_int_equal(cfg.log_level, TH_LOG_DEBUG);
    assert_int_equal(cfg.dedup, TH_DEDUP_RULE);
    assert_string_equal(cfg.rules_dir, "/etc/rules");
    assert_string_equal(cfg.state_backend, "redis");
    assert_string_equal(cfg.state_redis_url, "redis://r:6379/0");
    assert_string_equal(cfg.api_key_header, "X-Api-Key");
    assert_console_only(&cfg);
    th_config_cleanup(&cfg);
    unlink(path);
}

static void test_env_overrides_file(void **state)
{
    const char *const vars[] = {"PATH=/usr/bin",
                                "TRAILHOOK_LISTEN=10.0.0.1:8443",
                                "TRAILHOOK_API_KEYS= a , b,,c ",
                                "TRAILHOOK_MAX_BODY_BYTES=4096",
                                "TRAILHOOK_STATE_BACKEND=sqlite",
                                "TRAILHOOK_LOG_LEVEL=warn",
                                "TRAILHOOK_ADMIN_LISTEN=",
                                "TRAILHOOK_CONFIG=/ignored/by/config.c",
                                NULL};
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    write_tmp(path, "listen: 0.0.0.0:9000\napi_keys: [filekey]\nmax_body_bytes: 2048\n"
                    "admin_listen: 127.0.0.1:9100\nstate: {backend: redis, "
                    "redis_url: 'redis://h:1/0'}\n");
    if (load(path, vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_string_equal(cfg.listen, "10.0.0.1:8443");
    assert_int_equal(cfg.napi_keys, 3);
    assert_string_equal(cfg.api_keys[0], "a");
    assert_string_equal(cfg.api_keys[1], "b");
    assert_string_equal(cfg.api_keys[2], "c");
    assert_int_equal(cfg.max_body_bytes, 4096);
    assert_string_equal(cfg.state_backend, "sqlite");
    assert_int_equal(cfg.log_level, TH_LOG_WARN);
    /* An empty variable counts as unset: the file's value stays. */
    assert_string_equal(cfg.admin_listen, "127.0.0.1:9100");
    th_config_cleanup(&cfg);
    unlink(path);
}

static void test_secret_files(void **state)
{
    char keys_path[64];
    char pd_path[64];
    char slack_path[64];
    char keys_var[128];
    char pd_var[128];
    char file_path[64];
    char file_text[256];
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    write_tmp(keys_path, "key-one\nkey-two, key-three\n\n");
    write_tmp(pd_path, "R0UTING\n");
    write_tmp(slack_path, "https://hooks.slack.com/services/T/B/X  \n");
    snprintf(keys_var, sizeof(keys_var), "TRAILHOOK_API_KEYS_FILE=%s", keys_path);
    snprintf(pd_var, sizeof(pd_var), "TRAILHOOK_PAGERDUTY_ROUTING_KEY_FILE=%s", pd_path);
    snprintf(file_text, sizeof(file_text), "slack_webhook_url_file: %s\n", slack_path);
    write_tmp(file_path, file_text);
    const char *const vars[] = {keys_var, pd_var, NULL};
    if (load(file_path, vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cfg.napi_keys, 3);
    assert_string_equal(cfg.api_keys[2], "key-three");
    assert_string_equal(cfg.pagerduty_routing_key, "R0UTING");
    assert_string_equal(cfg.slack_webhook_url, "https://hooks.slack.com/services/T/B/X");
    th_config_cleanup(&cfg);
    unlink(keys_path);
    unlink(pd_path);
    unlink(slack_path);
    unlink(file_path);
}

static void test_secret_file_unreadable_or_empty(void **state)
{
    const char *const missing[] = {"TRAILHOOK_BASIC_AUTH_FILE=/nonexistent/secret", NULL};
    struct th_config cfg;
    char empty_path[64];
    char var[128];
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, missing, &cfg, err, sizeof(err)), TH_EIO);
    assert_string_equal(err, "TRAILHOOK_BASIC_AUTH_FILE: cannot read /nonexistent/secret: No "
                             "such file or directory");
    th_config_cleanup(&cfg);
    write_tmp(empty_path, " \n");
    snprintf(var, sizeof(var), "TRAILHOOK_PAGERDUTY_ROUTING_KEY_FILE=%s", empty_path);
    const char *const empty[] = {var, NULL};
    assert_int_equal(load(NULL, empty, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_non_null(strstr(err, "is empty"));
    th_config_cleanup(&cfg);
    unlink(empty_path);
}

static void test_both_value_and_file_is_error(void **state)
{
    const char *const vars[] = {"TRAILHOOK_SLACK_WEBHOOK_URL=https://hooks.slack.com/" SECRET,
                                "TRAILHOOK_SLACK_WEBHOOK_URL_FILE=/run/secrets/slack", NULL};
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, vars, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_string_equal(err, "set TRAILHOOK_SLACK_WEBHOOK_URL or TRAILHOOK_SLACK_WEBHOOK_URL_FILE, "
                             "not both");
    th_config_cleanup(&cfg);
    load_text_err("api_keys: [" SECRET "]\napi_keys_file: /run/secrets/keys\n", no_vars, err,
                  sizeof(err), path);
    assert_non_null(strstr(err, ":2: set api_keys or api_keys_file, not both"));
    assert_null(strstr(err, SECRET));
    load_text_err("state:\n  redis_url_file: /x\n  redis_url: redis://h/0\n", no_vars, err,
                  sizeof(err), path);
    assert_non_null(strstr(err, ":2: set state.redis_url or state.redis_url_file, not both"));
}

static void test_unknown_key_names_key_and_line(void **state)
{
    char path[64];
    char err[512];
    char want[160];

    (void)state;
    assert_int_equal(
        load_text_err("listen: 127.0.0.1:1\n\nlisten_adress: x\n", no_vars, err, sizeof(err), path),
        TH_EINVAL);
    snprintf(want, sizeof(want), "%s:3: unknown key 'listen_adress'", path);
    assert_string_equal(err, want);
    load_text_err("state:\n  backend: sqlite\n  bakend: redis\n", no_vars, err, sizeof(err), path);
    snprintf(want, sizeof(want), "%s:3: unknown key 'state.bakend'", path);
    assert_string_equal(err, want);
    load_text_err("state.backend: redis\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: unknown key 'state.backend'"));
    load_text_err("listen_file: /x\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: unknown key 'listen_file'"));
}

static void test_unknown_env_variable(void **state)
{
    const char *const vars[] = {"TRAILHOOK_LISTN=0.0.0.0:1", NULL};
    const char *const secret_file[] = {"TRAILHOOK_STATE_DIR_FILE=/x", NULL};
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, vars, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_true(strncmp(err, "unknown environment variable TRAILHOOK_LISTN ", 45) == 0);
    th_config_cleanup(&cfg);
    /* Only secrets have a _FILE form. */
    assert_int_equal(load(NULL, secret_file, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_non_null(strstr(err, "TRAILHOOK_STATE_DIR_FILE"));
    th_config_cleanup(&cfg);
}

/* A Kubernetes Service named trailhook injects these into every pod of its namespace. */
static void test_kubernetes_service_links_are_not_settings(void **state)
{
    const char *const links[] = {"TRAILHOOK_SERVICE_HOST=10.0.0.7",
                                 "TRAILHOOK_SERVICE_PORT=8080",
                                 "TRAILHOOK_SERVICE_PORT_HTTP=8080",
                                 "TRAILHOOK_PORT=tcp://10.0.0.7:8080",
                                 "TRAILHOOK_PORT_8080_TCP=tcp://10.0.0.7:8080",
                                 "TRAILHOOK_PORT_8080_TCP_PROTO=tcp",
                                 "TRAILHOOK_PORT_8080_TCP_PORT=8080",
                                 "TRAILHOOK_PORT_8080_TCP_ADDR=10.0.0.7",
                                 "TRAILHOOK_ADMIN_SERVICE_HOST=10.0.0.8",
                                 "TRAILHOOK_ADMIN_PORT_9090_TCP=tcp://10.0.0.8:9090",
                                 NULL};
    const char *const near[] = {"TRAILHOOK_PORT_HTTP=1", NULL};
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, links, &cfg, err, sizeof(err)), TH_OK);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    th_config_cleanup(&cfg);
    assert_int_equal(load(NULL, near, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_non_null(strstr(err, "TRAILHOOK_PORT_HTTP"));
    th_config_cleanup(&cfg);
}

/* A shared outbox takes over deliveries idle this long: a slower attempt would be sent twice. */
static void test_claim_after_must_exceed_delivery_timeouts(void **state)
{
    const char *const ok[] = {"TRAILHOOK_STATE_BACKEND=redis",
                              "TRAILHOOK_STATE_REDIS_URL=redis://127.0.0.1:6379/0", NULL};
    const char *const tight[] = {"TRAILHOOK_STATE_BACKEND=redis",
                                 "TRAILHOOK_STATE_REDIS_URL=redis://127.0.0.1:6379/0",
                                 "TRAILHOOK_STATE_CLAIM_AFTER_SECONDS=13", NULL};
    const char *const sqlite[] = {"TRAILHOOK_STATE_CLAIM_AFTER_SECONDS=1", NULL};
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    assert_int_equal(load(NULL, ok, &cfg, err, sizeof(err)), TH_OK);
    assert_int_equal(cfg.state_claim_after_seconds, 60);
    th_config_cleanup(&cfg);
    /* console: 10 000 + 3 000 ms is not below 13 s */
    assert_int_equal(load(NULL, tight, &cfg, err, sizeof(err)), TH_EINVAL);
    assert_non_null(strstr(err, "destination console: timeout_ms plus connect_timeout_ms"));
    th_config_cleanup(&cfg);
    /* Without the shared outbox nothing is taken over. */
    assert_int_equal(load(NULL, sqlite, &cfg, err, sizeof(err)), TH_OK);
    th_config_cleanup(&cfg);
}

static void test_bad_values_name_key(void **state)
{
    const char *const workers[] = {"TRAILHOOK_WORKERS=many", NULL};
    const char *const negative[] = {"TRAILHOOK_MAX_EVENTS=-1", NULL};
    char path[64];
    char err[512];
    char want[200];

    (void)state;
    load_text_err("max_body_bytes: 10MB\n", no_vars, err, sizeof(err), path);
    snprintf(want, sizeof(want),
             "%s:1: max_body_bytes must be a whole number from 1 to 1073741824 (got '10MB')", path);
    assert_string_equal(err, want);
    load_text_err("\nlisten: 127.0.0.1:70000\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":2: listen must be host:port"));
    assert_non_null(strstr(err, "(got '127.0.0.1:70000')"));
    load_text_err("log_level: loud\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: log_level must be debug, info, warn or error (got 'loud')"));
    load_text_err("dedup: account\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: dedup must be image or rule (got 'account')"));
    load_text_err("state: {backend: postgres}\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: state.backend must be sqlite or redis"));
    load_text_err("listen: [a, b]\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":1: listen must be a single value, not a list"));
    load_text_err("workers: 2\n", workers, err, sizeof(err), path);
    assert_string_equal(err,
                        "TRAILHOOK_WORKERS must be a whole number from 1 to 1024 (got 'many')");
    load_text_err("", negative, err, sizeof(err), path);
    assert_non_null(strstr(err, "TRAILHOOK_MAX_EVENTS must be a whole number"));
}

static void test_unreadable_and_malformed_file(void **state)
{
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    assert_int_equal(load("/nonexistent/trailhook.yml", no_vars, &cfg, err, sizeof(err)), TH_EIO);
    assert_string_equal(err, "cannot read config file /nonexistent/trailhook.yml: No such file "
                             "or directory");
    th_config_cleanup(&cfg);
    assert_int_equal(load_text_err("listen: a\n  bad: [\n", no_vars, err, sizeof(err), path),
                     TH_EPARSE);
    assert_non_null(strstr(err, ": line 2, column "));
}

/* Whatever goes wrong around a secret, its value must not reach the message. */
static void test_secret_never_in_errors(void **state)
{
    static const char *const files[] = {
        "slack_webhook_url: ftp://" SECRET "\n",
        "basic_auth: [" SECRET "]\n",
        "basic_auth: ':" SECRET "'\n",
        "api_keys: [ok, '']\n",
        "slack_webhook_url: " SECRET "\n",
        "state: {redis_url: 'http://" SECRET "'}\n",
        "pagerduty_routing_key: [" SECRET "]\n",
        "destinations:\n  - {type: webhook, url: 'gopher://" SECRET "'}\n",
        "destinations:\n  - {type: pagerduty, secret: " SECRET ", min_severity: Urgent}\n",
        "destinations:\n  - {type: slack, url: 'https://" SECRET "', url_file: /x}\n",
        "slack_webhook_url: https://" SECRET "\nslack_webhook_url_file: /x\n",
        "destinations:\n  - {type: webhook, url: 'http://x/', hmac_secret: " SECRET
        ", hmac_secret_file: /x}\n",
        "destinations:\n  - {type: slack, url: 'https://h/', hmac_secret: " SECRET "}\n",
        "destinations:\n  - {type: webhook, url: 'http://x/', hmac_secret: [" SECRET "]}\n",
        "destinations:\n  - {type: webhook, url: 'http://x/', hmac_secret: {" SECRET ": 1}}\n",
        "destinations:\n  - {type: webhook, url: 'http://x/', hmac_secret: " SECRET
        ", timeout_ms: 1}\n",
        "destinations:\n  - {type: webhook, hmac_secret: " SECRET "}\n",
        "destinations:\n  - {type: webhook, url: 'http://x/', hmac_secret: " SECRET
        ", secret_header: 'a b'}\n",
    };
    const char *const env_sets[][3] = {
        {"TRAILHOOK_API_KEYS=" SECRET, "TRAILHOOK_API_KEYS_FILE=/x", NULL},
        {"TRAILHOOK_STATE_REDIS_URL=" SECRET, NULL, NULL},
        {"TRAILHOOK_BASIC_AUTH=" SECRET, NULL, NULL},
        {"TRAILHOOK_SLACK_WEBHOOK_URL=" SECRET, NULL, NULL},
        {"TRAILHOOK_UNKNOWN=" SECRET, NULL, NULL},
        {"TRAILHOOK_PAGERDUTY_ROUTING_KEY=" SECRET, "TRAILHOOK_TLS_CERT_FILE=/c", NULL},
    };
    char path[64];
    char err[512];

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        load_text_err(files[i], no_vars, err, sizeof(err), path);
        if (strstr(err, SECRET) != NULL || strstr(err, "s3cr3t") != NULL) {
            fail_msg("file case %zu shows the secret: %s", i, err);
        }
    }
    for (size_t i = 0; i < sizeof(env_sets) / sizeof(env_sets[0]); i++) {
        load_text_err("", env_sets[i], err, sizeof(err), path);
        if (strstr(err, "s3cr3t") != NULL) {
            fail_msg("environment case %zu shows the secret: %s", i, err);
        }
    }
}

static void test_quick_paths_make_destinations(void **state)
{
    const char *const vars[] = {"TRAILHOOK_SLACK_WEBHOOK_URL=https://hooks.slack.com/services/x",
                                "TRAILHOOK_PAGERDUTY_ROUTING_KEY=R0UTE",
                                "TRAILHOOK_PAGERDUTY_URL=http://127.0.0.1:9/enqueue", NULL};
    struct th_config cfg;
    char err[512] = "";

    (void)state;
    if (load(NULL, vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cfg.ndestinations, 2);
    assert_string_equal(cfg.destinations[0].name, "slack");
    assert_int_equal(cfg.destinations[0].type, TH_DEST_SLACK);
    assert_string_equal(cfg.destinations[0].url, "https://hooks.slack.com/services/x");
    assert_string_equal(cfg.destinations[1].name, "pagerduty");
    assert_int_equal(cfg.destinations[1].type, TH_DEST_PAGERDUTY);
    assert_string_equal(cfg.destinations[1].url, "http://127.0.0.1:9/enqueue");
    assert_string_equal(cfg.destinations[1].secret, "R0UTE");
    assert_int_equal(cfg.destinations[1].min_severity, TH_SEV_INFO);
    assert_false(cfg.destinations[1].rule_errors);
    th_config_cleanup(&cfg);
}

static void test_destinations_list(void **state)
{
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    write_tmp(path, "destinations:\n"
                    "  - {type: slack, url: 'https://hooks.slack.com/a', min_severity: High}\n"
                    "  - {name: slack-2, type: webhook, url: 'http://siem/x', rule_errors: true}\n"
                    "  - {type: slack, url: 'https://hooks.slack.com/b'}\n"
                    "  - {type: pagerduty, secret: key}\n"
                    "slack_webhook_url: https://hooks.slack.com/c\n");
    if (load(path, no_vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cfg.ndestinations, 5);
    assert_string_equal(cfg.destinations[0].name, "slack");
    assert_int_equal(cfg.destinations[0].min_severity, TH_SEV_HIGH);
    assert_string_equal(cfg.destinations[1].name, "slack-2");
    assert_int_equal(cfg.destinations[1].type, TH_DEST_WEBHOOK);
    assert_true(cfg.destinations[1].rule_errors);
    assert_string_equal(cfg.destinations[2].name, "slack-3");
    assert_string_equal(cfg.destinations[3].name, "pagerduty");
    assert_string_equal(cfg.destinations[3].url, "https://events.pagerduty.com/v2/enqueue");
    assert_string_equal(cfg.destinations[4].name, "slack-4");
    assert_string_equal(cfg.destinations[4].url, "https://hooks.slack.com/c");
    th_config_cleanup(&cfg);
    unlink(path);
}

static void assert_dest_defaults(const struct th_config_dest *d, double rate, int burst)
{
    assert_string_equal(d->secret_header, "X-Trailhook-Secret");
    assert_null(d->hmac_secret);
    assert_int_equal(d->concurrency, 1);
    assert_true(d->rate_per_minute == rate);
    assert_int_equal(d->burst, burst);
    assert_int_equal(d->max_age_seconds, 86400);
    assert_int_equal(d->connect_timeout_ms, 3000);
    assert_int_equal(d->timeout_ms, 10000);
}

static void test_destination_defaults_per_type(void **state)
{
    const char *const vars[] = {"TRAILHOOK_SLACK_WEBHOOK_URL=https://hooks.slack.com/services/x",
                                "TRAILHOOK_PAGERDUTY_ROUTING_KEY=R0UTE", NULL};
    struct th_config cfg;
    char path[64];
    char err[512] = "";

    (void)state;
    write_tmp(path, "destinations:\n"
                    "  - {type: console}\n"
                    "  - {type: slack, url: 'https://hooks.slack.com/a'}\n"
                    "  - {type: pagerduty, secret: key}\n"
                    "  - {type: webhook, url: 'http://siem/x'}\n");
    if (load(path, vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cfg.ndestinations, 6);
    assert_dest_defaults(&cfg.destinations[0], 0, 10);
    assert_dest_defaults(&cfg.destinations[1], 60, 3);
    assert_dest_defaults(&cfg.destinations[2], 120, 10);
    assert_dest_defaults(&cfg.destinations[3], 600, 10);
    /* The quick paths get their type's defaults too. */
    assert_int_equal(cfg.destinations[4].type, TH_DEST_SLACK);
    assert_dest_defaults(&cfg.destinations[4], 60, 3);
    assert_int_equal(cfg.destinations[5].type, TH_DEST_PAGERDUTY);
    assert_dest_defaults(&cfg.destinations[5], 120, 10);
    th_config_cleanup(&cfg);
    unlink(path);

    /* And so does the console fallback. */
    assert_int_equal(load(NULL, no_vars, &cfg, err, sizeof(err)), TH_OK);
    assert_console_only(&cfg);
    assert_dest_defaults(&cfg.destinations[0], 0, 10);
    th_config_cleanup(&cfg);
}

static void test_destination_limits_and_webhook_keys(void **state)
{
    struct th_config cfg;
    char path[64];
    char key_path[64];
    char text[1024];
    char err[512] = "";
    const struct th_config_dest *d = NULL;

    (void)state;
    write_tmp(key_path, SECRET "\n");
    snprintf(text, sizeof(text),
             "destinations:\n"
             "  - type: webhook\n"
             "    url: http://siem/x\n"
             "    secret: token\n"
             "    hmac_secret: " SECRET "\n"
             "    secret_header: X-Siem-Token\n"
             "    concurrency: 16\n"
             "    rate_per_minute: 0.5\n"
             "    burst: 1000\n"
             "    max_age_seconds: 60\n"
             "    connect_timeout_ms: 100\n"
             "    timeout_ms: 300000\n"
             "  - {type: webhook, url: 'http://b/', hmac_secret_file: %s, rate_per_minute: 0}\n"
             "  - {type: slack, url: 'https://hooks.slack.com/a', rate_per_minute: '90',\n"
             "     concurrency: 1, burst: 1, max_age_seconds: 31622400, timeout_ms: 100}\n"
             "  - {type: console, concurrency: , rate_per_minute: ~}\n",
             key_path);
    write_tmp(path, text);
    if (load(path, no_vars, &cfg, err, sizeof(err)) != TH_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cfg.ndestinations, 4);
    d = &cfg.destinations[0];
    assert_string_equal(d->hmac_secret, SECRET);
    assert_string_equal(d->secret_header, "X-Siem-Token");
    assert_string_equal(d->secret, "token");
    assert_int_equal(d->concurrency, 16);
    assert_true(d->rate_per_minute == 0.5);
    assert_int_equal(d->burst, 1000);
    assert_int_equal(d->max_age_seconds, 60);
    assert_int_equal(d->connect_timeout_ms, 100);
    assert_int_equal(d->timeout_ms, 300000);
    d = &cfg.destinations[1];
    assert_string_equal(d->hmac_secret, SECRET); /* the file's, newline dropped */
    assert_string_equal(d->secret_header, "X-Trailhook-Secret");
    assert_true(d->rate_per_minute == 0);
    assert_int_equal(d->burst, 10);
    d = &cfg.destinations[2];
    assert_true(d->rate_per_minute == 90);
    assert_int_equal(d->concurrency, 1);
    assert_int_equal(d->burst, 1);
    assert_int_equal(d->max_age_seconds, 31622400);
    assert_int_equal(d->timeout_ms, 100);
    assert_int_equal(d->connect_timeout_ms, 3000);
    /* Empty values keep the defaults, as everywhere in the file. */
    assert_dest_defaults(&cfg.destinations[3], 0, 10);
    th_config_cleanup(&cfg);
    unlink(path);
    unlink(key_path);
}

static void test_destination_limit_errors(void **state)
{
    static const struct {
        const char *entry; /* one flow mapping, on line 2 of the file */
        const char *want;  /* follows "FILE:2: destination 1: " */
    } cases[] = {
        {"{type: console, concurrency: 0}",
         "concurrency must be a whole number from 1 to 16 (got '0')"},
        {"{type: console, concurrency: 17}", "concurrency must be a whole number from 1 to 16"},
        {"{type: console, concurrency: [1, 2]}", "concurrency must be a single value, not a list"},
        {"{type: console, rate_per_minute: -1}",
         "rate_per_minute must be a number of 0 or more, like 30 or 0.5; 0 is unlimited (got "
         "'-1')"},
        {"{type: console, rate_per_minute: fast}", "rate_per_minute must be a number of 0 or more"},
        {"{type: console, rate_per_minute: 1e3}", "rate_per_minute must be a number of 0 or more"},
        {"{type: console, rate_per_minute: '.5'}", "rate_per_minute must be a number of 0 or more"},
        {"{type: console, burst: 0}", "burst must be a whole number from 1 to 1000 (got '0')"},
        {"{type: console, burst: 1001}", "burst must be a whole number from 1 to 1000"},
        {"{type: console, max_age_seconds: 59}",
         "max_age_seconds must be a whole number from 60 to 31622400 (got '59')"},
        {"{type: console, connect_timeout_ms: 99}",
         "connect_timeout_ms must be a whole number from 100 to 60000 (got '99')"},
        {"{type: console, connect_timeout_ms: 60001}",
         "connect_timeout_ms must be a whole number from 100 to 60000"},
        {"{type: console, timeout_ms: 300001}",
         "timeout_ms must be a whole number from 100 to 300000 (got '300001')"},
        {"{type: console, timeout_ms: 5s}", "timeout_ms must be a whole number from 100 to 300000"},
        {"{type: webhook, url: 'http://x/', secret_header: 'X Token'}",
         "secret_header must be an HTTP header name (got 'X Token')"},
        {"{type: webhook, url: 'http://x/', secret_header: ''}",
         "secret_header must be an HTTP header name"},
        {"{type: pagerduty, secret: k, secret_header: X-Token}",
         "secret_header applies to webhook destinations only"},
        {"{type: slack, url: 'https://h/', hmac_secret: k}",
         "hmac_secret applies to webhook destinations only"},
        {"{type: webhook, url: 'http://x/', hmac_secret: ''}", "hmac_secret must not be empty"},
        {"{type: webhook, url: 'http://x/', hmac_secret: k, hmac_secret_file: /x}",
         "set hmac_secret or hmac_secret_file, not both"},
        {"{type: webhook, url: 'http://x/', hmac_secret_file: /nonexistent/k}",
         "hmac_secret_file: cannot read /nonexistent/k"},
    };
    char path[64];
    char text[256];
    char err[512];
    char want[400];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "destinations:\n  - %s\n", cases[i].entry);
        load_text_err(text, no_vars, err, sizeof(err), path);
        snprintf(want, sizeof(want), "%s:2: destination 1: %s", path, cases[i].want);
        if (strncmp(err, want, strlen(want)) != 0) {
            fail_msg("case %zu: got \"%s\", want \"%s...\"", i, err, want);
        }
    }
}

static void test_destination_errors(void **state)
{
    char path[64];
    char err[512];

    (void)state;
    load_text_err("destinations:\n  - {name: a, type: console}\n  - {name: a, type: console}\n",
                  no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":3: destination 2: name 'a' is already used by destination 1"));
    load_text_err("destinations:\n  - type: slack\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":2: destination 1: a slack destination needs a url"));
    load_text_err("destinations:\n  - type: webhook\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, "a webhook destination needs a url"));
    load_text_err("destinations:\n  - type: pagerduty\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, ":2: destination 1: a pagerduty destination needs a secret"));
    load_text_err("destinations:\n  - type: email\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, "type must be console, slack, pagerduty or webhook (got 'email')"));
    load_text_err("destinations:\n  - {type: console, min_severity: medium}\n", no_vars, err,
                  sizeof(err), path);
    assert_non_null(strstr(err, "min_severity must be one of Info, Low, Medium, High, Critical "
                                "(got 'medium')"));
    load_text_err("destinations:\n  - {type: console, colour: red}\n", no_vars, err, sizeof(err),
                  path);
    assert_non_null(strstr(err, ":2: destination 1: unknown key 'colour'"));
    load_text_err("destinations:\n  - name: x\n", no_vars, err, sizeof(err), path);
    assert_non_null(strstr(err, "destination 1: type is required"));
}

static void test_cross_checks(void **state)
{
    char path[64];
    char err[512];

    (void)state;
    load_text_err("tls_cert_file: /c.pem\n", no_vars, err, sizeof(err), path);
    assert_string_equal(err, "tls_cert_file and tls_key_file must be set together");
    load_text_err("state: {backend: redis}\n", no_vars, err, sizeof(err), path);
    assert_string_equal(err, "state.redis_url is required when state.backend is redis");
}

static void test_split_addr(void **state)
{
    char host[256];
    unsigned port = 0;

    (void)state;
    assert_true(th_config_split_addr("127.0.0.1:8080", host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_true(th_config_split_addr("[::1]:443", host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 443);
    assert_true(th_config_split_addr("trailhook.internal:1", host, &port));
    assert_string_equal(host, "trailhook.internal");
    assert_false(th_config_split_addr("127.0.0.1", host, &port));
    assert_false(th_config_split_addr("127.0.0.1:0", host, &port));
    assert_false(th_config_split_addr("127.0.0.1:65536", host, &port));
    assert_false(th_config_split_addr("127.0.0.1:80x", host, &port));
    assert_false(th_config_split_addr(":8080", host, &port));
    assert_false(th_config_split_addr("::1:8080", host, &port));
    assert_false(th_config_split_addr("[::1]8080", host, &port));
    assert_false(th_config_split_addr("a b:80", host, &port));
    assert_false(th_config_split_addr(NULL, host, &port));
}

static void test_dest_type_names(void **state)
{
    (void)state;
    assert_string_equal(th_dest_type_name(TH_DEST_CONSOLE), "console");
    assert_string_equal(th_dest_type_name(TH_DEST_SLACK), "slack");
    assert_string_equal(th_dest_type_name(TH_DEST_PAGERDUTY), "pagerduty");
    assert_string_equal(th_dest_type_name(TH_DEST_WEBHOOK), "webhook");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_no_file_gives_defaults_and_console),
        cmocka_unit_test(test_documented_default_file),
        cmocka_unit_test(test_file_overrides_defaults),
        cmocka_unit_test(test_env_overrides_file),
        cmocka_unit_test(test_secret_files),
        cmocka_unit_test(test_secret_file_unreadable_or_empty),
        cmocka_unit_test(test_both_value_and_file_is_error),
        cmocka_unit_test(test_unknown_key_names_key_and_line),
        cmocka_unit_test(test_unknown_env_variable),
        cmocka_unit_test(test_kubernetes_service_links_are_not_settings),
        cmocka_unit_test(test_claim_after_must_exceed_delivery_timeouts),
        cmocka_unit_test(test_bad_values_name_key),
        cmocka_unit_test(test_unreadable_and_malformed_file),
        cmocka_unit_test(test_secret_never_in_errors),
        cmocka_unit_test(test_quick_paths_make_destinations),
        cmocka_unit_test(test_destinations_list),
        cmocka_unit_test(test_destination_defaults_per_type),
        cmocka_unit_test(test_destination_limits_and_webhook_keys),
        cmocka_unit_test(test_destination_limit_errors),
        cmocka_unit_test(test_destination_errors),
        cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_split_addr),
        cmocka_unit_test(test_dest_type_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
