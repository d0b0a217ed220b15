/* SPDX-License-Identifier: MIT */
/*
 * config.h -- the service configuration (DESIGN §4): embedded defaults, then one YAML file, then
 * TRAILHOOK_* environment variables; secrets also from TRAILHOOK_<KEY>_FILE. A bad value stops
 * the start with a message naming the key.
 */
#ifndef TRAILHOOK_CONFIG_H
#define TRAILHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trailhook/err.h"
#include "trailhook/log.h"
#include "trailhook/spec.h"

enum th_dedup_mode {
    TH_DEDUP_IMAGE = 0, /**< rule + account + region + imageId (default) */
    TH_DEDUP_RULE,      /**< Panther's own: one alert per rule per period */
};

enum th_dest_type {
    TH_DEST_CONSOLE = 0,
    TH_DEST_SLACK,
    TH_DEST_PAGERDUTY,
    TH_DEST_WEBHOOK,
};

/** "console", "slack", "pagerduty", "webhook". */
const char *th_dest_type_name(enum th_dest_type type);

/** One entry of `destinations` (or one made from a quick-path key). */
struct th_config_dest {
    char *name; /**< unique; defaults to the type name, then type-2, type-3 ... */
    enum th_dest_type type;
    char *url;                     /**< slack/webhook URL, PagerDuty endpoint */
    char *secret;                  /**< PagerDuty routing key, webhook header secret (a secret) */
    enum th_severity min_severity; /**< alerts below it are not sent here (default Info) */
    bool rule_errors;              /**< also deliver rule-error records (default false) */
    char *hmac_secret;             /**< webhook: key of the X-Trailhook-Signature HMAC (a secret) */
    char *secret_header;    /**< webhook: header carrying `secret` (default "X-Trailhook-Secret") */
    int concurrency;        /**< parallel deliveries, 1..16 (default 1) */
    double rate_per_minute; /**< sustained sends a minute; 0 = unlimited. Defaults: slack 60,
                               pagerduty 120, webhook 600, console 0 */
    int burst;              /**< sends allowed at once above the rate (default slack 3, else 10) */
    int64_t max_age_seconds;    /**< undelivered this long after creation: dead letter (86400) */
    int64_t connect_timeout_ms; /**< default 3000 */
    int64_t timeout_ms;         /**< whole request, default 10000 */
};

/** Plain data; read-only once loaded, any thread. */
struct th_config {
    char *listen;       /**< "host:port", default "127.0.0.1:8080" */
    char *admin_listen; /**< NULL: admin endpoints on listen */
    char **api_keys;    /**< secrets */
    size_t napi_keys;
    char *api_key_header; /**< default "X-Api-Key" */
    char **basic_auth;    /**< "user:password" entries, secrets */
    size_t nbasic_auth;
    char *state_dir;                    /**< default "./var" */
    char *rules_dir;                    /**< NULL: the specs compiled into the binary */
    size_t max_body_bytes;              /**< default 10485760 */
    size_t max_inflated_bytes;          /**< gzip bodies after inflation, default 67108864 */
    size_t max_events;                  /**< per request, default 100000 */
    size_t max_json_depth;              /**< default 64 */
    size_t max_string_bytes;            /**< longest JSON string in a request, default 1048576 */
    size_t max_header_bytes;            /**< a request's line and headers, default 16384 */
    int max_connections;                /**< open connections per listener, default 4096 */
    int64_t connection_timeout_seconds; /**< an idle connection is closed, default 30 */
    int workers;                    /**< evaluation threads, default: number of CPUs (at least 2) */
    size_t queue_capacity;          /**< pending requests, default 1024 */
    enum th_log_level log_level;    /**< default info */
    enum th_dedup_mode dedup;       /**< default image */
    int64_t seen_event_ttl_seconds; /**< how long event IDs are remembered, default 172800 */
    int64_t new_account_ttl_seconds;   /**< learned account lifetime, default 259200 (3 days) */
    char *slack_webhook_url;           /**< quick path, secret */
    char *pagerduty_routing_key;       /**< quick path, secret */
    char *pagerduty_url;               /**< default https://events.pagerduty.com/v2/enqueue */
    char *state_backend;               /**< "sqlite" (default) or "redis" */
    char *state_redis_url;             /**< secret (may hold a password) */
    int64_t state_claim_after_seconds; /**< redis: an unfinished delivery of a dead replica is
                                            taken over after this long, default 60 */
    char *tls_cert_file;
    char *tls_key_file;
    int64_t drain_grace_seconds;         /**< deliveries' grace on SIGTERM, default 10 */
    struct th_config_dest *destinations; /**< never empty after load: console when none given */
    size_t ndestinations;
};

/** Fills @p cfg with the embedded defaults (no destinations yet). Release with cleanup. */
void th_config_defaults(struct th_config *cfg);

/**
 * Builds the configuration: defaults, then the YAML file at @p path (NULL: none), then the
 * environment @p envp (NULL-terminated "NAME=value" strings, usually `environ`). Quick-path keys
 * (slack_webhook_url, pagerduty_routing_key) add a destination each; with no destination at all,
 * `console` is added.
 * @param[out] cfg    filled on success; release with th_config_cleanup() in every case
 * @param[out] err    on failure one sentence naming the key (and file line), never a secret
 * @return TH_OK, TH_EIO (unreadable file), TH_EPARSE (bad YAML), TH_EINVAL (unknown key, bad
 * value).
 */
enum th_err th_config_load(const char *path, char *const *envp, struct th_config *cfg, char *err,
                           size_t errlen);

/** One top-level setting, as `trailhook config` and the README's reference name it. */
struct th_config_key {
    const char *key; /**< file key; "state.backend" is `backend` under `state:` */
    char env[64];    /**< its environment variable, e.g. TRAILHOOK_STATE_BACKEND */
    bool secret;     /**< never shown; also read from <key>_file / TRAILHOOK_<KEY>_FILE */
};

/** The number of top-level settings, in the order config/trailhook.yml documents them. */
size_t th_config_nkeys(void);

/** Describes setting @p i (< th_config_nkeys()). */
void th_config_key_info(size_t i, struct th_config_key *out);

/**
 * Setting @p i's value in @p cfg as text: "" when unset, lists comma-separated, and
 * "<redacted>" for a secret that is set.
 */
void th_config_format(const struct th_config *cfg, size_t i, char *buf, size_t len);

/**
 * @p url for display: user:password@ becomes <redacted>@ (libcurl would send it as
 * credentials) and, unless @p keep_path, the path and query become "/…" (Slack's carry a token).
 */
void th_config_redact_url(const char *url, bool keep_path, char *buf, size_t len);

/** Frees everything @p cfg owns and zeroes it. */
void th_config_cleanup(struct th_config *cfg);

/**
 * Splits "host:port" (IPv4, "[v6]:port" or a name) into parts.
 * @param[out] host at least 256 bytes
 * @return true when well-formed with a port 1..65535.
 */
bool th_config_split_addr(const char *addr, char host[256], unsigned *port);

#endif
