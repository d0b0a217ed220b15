/* SPDX-License-Identifier: MIT */
/*
 * config.c -- builds struct th_config from embedded defaults, one YAML file (read with yaml.c)
 * and TRAILHOOK_* environment variables, reading secrets from files where asked.
 *
 * One table (keys[] below) names every scalar setting once: the file key, the environment
 * variable derived from it, how its text is checked and which field it fills.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "trailhook/config.h"
#include "trailhook/mem.h"
#include "trailhook/yaml.h"
#include "yaml_int.h"

#define CONFIG_MAX_BYTES (1u << 20)
#define CONFIG_MAX_DEPTH 16
#define SECRET_MAX_BYTES (64u << 10)
#define ENV_PREFIX       "TRAILHOOK_"
#define ENV_CONFIG       "TRAILHOOK_CONFIG" /* read by main to find the file */
#define GIB              ((int64_t)1 << 30)
#define DAY_SECONDS      ((int64_t)86400)
#define SECRET_HEADER    "X-Trailhook-Secret"

/* The kinds up to KIND_BACKEND are held as one char * (is_text_kind relies on the order). */
enum kind {
    KIND_TEXT,      /* any non-empty text: paths, the PagerDuty routing key */
    KIND_ADDR,      /* host:port */
    KIND_HEADER,    /* an HTTP header name */
    KIND_URL,       /* http:// or https:// */
    KIND_REDIS_URL, /* redis:// or rediss:// */
    KIND_BACKEND,   /* sqlite | redis */
    KIND_LIST,      /* comma-separated text, or a YAML list */
    KIND_CREDS,     /* a list of user:password */
    KIND_SIZE,      /* size_t in [min, max] */
    KIND_INT,       /* int in [min, max] */
    KIND_SECONDS,   /* int64_t in [min, max] */
    KIND_LOG_LEVEL,
    KIND_DEDUP,
};

struct key_def {
    const char *key; /* file key; "state.backend" is `backend` under `state:` */
    enum kind kind;
    bool secret;      /* never shown; also read from <key>_file / TRAILHOOK_<KEY>_FILE */
    size_t off;       /* the field of struct th_config */
    size_t count_off; /* lists: the count field */
    int64_t min;      /* numbers */
    int64_t max;
};

/* Where a value came from, for messages: a file key and its line, or a variable (line 0). */
struct origin {
    const char *label;
    int line;
};

struct loader {
    struct th_config *cfg;
    const char *path; /* the config file, for messages */
    char *err;
    size_t errlen;
};

#define FIELD(f) offsetof(struct th_config, f)

static const struct key_def keys[] = {
    {"listen", KIND_ADDR, false, FIELD(listen), 0, 0, 0},
    {"admin_listen", KIND_ADDR, false, FIELD(admin_listen), 0, 0, 0},
    {"api_keys", KIND_LIST, true, FIELD(api_keys), FIELD(napi_keys), 0, 0},
    {"api_key_header", KIND_HEADER, false, FIELD(api_key_header), 0, 0, 0},
    {"basic_auth", KIND_CREDS, true, FIELD(basic_auth), FIELD(nbasic_auth), 0, 0},
    {"state_dir", KIND_TEXT, false, FIELD(state_dir), 0, 0, 0},
    {"rules_dir", KIND_TEXT, false, FIELD(rules_dir), 0, 0, 0},
    {"max_body_bytes", KIND_SIZE, false, FIELD(max_body_bytes), 0, 1, GIB},
    {"max_inflated_bytes", KIND_SIZE, false, FIELD(max_inflated_bytes), 0, 1, 16 * GIB},
    {"max_events", KIND_SIZE, false, FIELD(max_events), 0, 1, 10000000},
    {"max_json_depth", KIND_SIZE, false, FIELD(max_json_depth), 0, 1, 2048},
    {"max_string_bytes", KIND_SIZE, false, FIELD(max_string_bytes), 0, 16, GIB},
    {"max_header_bytes", KIND_SIZE, false, FIELD(max_header_bytes), 0, 4096, 1 << 20},
    {"max_connections", KIND_INT, false, FIELD(max_connections), 0, 16, 1000000},
    {"connection_timeout_seconds", KIND_SECONDS, false, FIELD(connection_timeout_seconds), 0, 1,
     3600},
    {"workers", KIND_INT, false, FIELD(workers), 0, 1, 1024},
    {"queue_capacity", KIND_SIZE, false, FIELD(queue_capacity), 0, 1, 1000000},
    {"log_level", KIND_LOG_LEVEL, false, FIELD(log_level), 0, 0, 0},
    {"dedup", KIND_DEDUP, false, FIELD(dedup), 0, 0, 0},
    {"seen_event_ttl_seconds", KIND_SECONDS, false, FIELD(seen_event_ttl_seconds), 0, 60,
     366 * DAY_SECONDS},
    {"new_account_ttl_seconds", KIND_SECONDS, false, FIELD(new_account_ttl_seconds), 0, 60,
     366 * DAY_SECONDS},
    {"slack_webhook_url", KIND_URL, true, FIELD(slack_webhook_url), 0, 0, 0},
    {"pagerduty_routing_key", KIND_TEXT, true, FIELD(pagerduty_routing_key), 0, 0, 0},
    {"pagerduty_url", KIND_URL, false, FIELD(pagerduty_url), 0, 0, 0},
    {"state.backend", KIND_BACKEND, false, FIELD(state_backend), 0, 0, 0},
    {"state.redis_url", KIND_REDIS_URL, true, FIELD(state_redis_url), 0, 0, 0},
    {"state.claim_after_seconds", KIND_SECONDS, false, FIELD(state_claim_after_seconds), 0, 1,
     3600},
    {"tls_cert_file", KIND_TEXT, false, FIELD(tls_cert_file), 0, 0, 0},
    {"tls_key_file", KIND_TEXT, false, FIELD(tls_key_file), 0, 0, 0},
    {"drain_grace_seconds", KIND_SECONDS, false, FIELD(drain_grace_seconds), 0, 0, 3600},
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

static const char *const dest_type_names[] = {"console", "slack", "pagerduty", "webhook"};
static const char *const dest_keys[] = {"name",
                                        "type",
                                        "url",
                                        "url_file",
                                        "secret",
                                        "secret_file",
                                        "min_severity",
                                        "rule_errors",
                                        "hmac_secret",
                                        "hmac_secret_file",
                                        "secret_header",
                                        "concurrency",
                                        "rate_per_minute",
                                        "burst",
                                        "max_age_seconds",
                                        "connect_timeout_ms",
                                        "timeout_ms",
                                        NULL};

/* The whole-number settings of a destination; rate_per_minute, a fraction, is parsed apart. */
struct dest_number {
    const char *key;
    size_t off;  /* the field of struct th_config_dest */
    bool is_int; /* int, else int64_t */
    int64_t min;
    int64_t max;
};

#define DEST_FIELD(f) offsetof(struct th_config_dest, f)

static const struct dest_number dest_numbers[] = {
    {"concurrency", DEST_FIELD(concurrency), true, 1, 16},
    {"burst", DEST_FIELD(burst), true, 1, 1000},
    {"max_age_seconds", DEST_FIELD(max_age_seconds), false, 60, 366 * DAY_SECONDS},
    {"connect_timeout_ms", DEST_FIELD(connect_timeout_ms), false, 100, 60000},
    {"timeout_ms", DEST_FIELD(timeout_ms), false, 100, 300000},
};

const char *th_dest_type_name(enum th_dest_type type)
{
    if ((int)type < 0 || (size_t)type >= sizeof(dest_type_names) / sizeof(dest_type_names[0])) {
        return "unknown";
    }
    return dest_type_names[type];
}

static enum th_err fail(struct loader *ld, enum th_err rc, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One sentence; prefixed "FILE:LINE: " when it is about a place in the config file. */
static enum th_err fail(struct loader *ld, enum th_err rc, int line, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    if (ld->err == NULL || ld->errlen == 0) {
        return rc;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line > 0 && ld->path != NULL) {
        snprintf(ld->err, ld->errlen, "%s:%d: %s", ld->path, line, msg);
    } else {
        snprintf(ld->err, ld->errlen, "%s", msg);
    }
    return rc;
}

/* Names the setting and the problem; shows the value only when it is no secret. */
static enum th_err bad_value(struct loader *ld, const struct key_def *def, const char *text,
                             const struct origin *o, const char *problem)
{
    if (def->secret) {
        return fail(ld, TH_EINVAL, o->line, "%s %s", o->label, problem);
    }
    return fail(ld, TH_EINVAL, o->line, "%s %s (got '%.64s')", o->label, problem, text);
}

static void *field(struct th_config *cfg, const struct key_def *def)
{
    return (char *)cfg + def->off;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; list != NULL && i < n; i++) {
        free(list[i]);
    }
    free(list);
}

static bool is_list(const struct key_def *def)
{
    return def->kind == KIND_LIST || def->kind == KIND_CREDS;
}

static bool is_text_kind(const struct key_def *def)
{
    return def->kind <= KIND_BACKEND;
}

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* RFC 9110 token characters: what an HTTP header name may hold. */
static bool is_token(const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            return false;
        }
    }
    return *s != '\0';
}

static bool parse_port(const char *s, unsigned *port)
{
    unsigned v = 0;
    size_t n = 0;

    for (; s[n] != '\0'; n++) {
        if (!isdigit((unsigned char)s[n]) || n >= 5) {
            return false;
        }
        v = v * 10 + (unsigned)(s[n] - '0');
    }
    if (n == 0 || v < 1 || v > 65535) {
        return false;
    }
    *port = v;
    return true;
}

bool th_config_split_addr(const char *addr, char host[256], unsigned *port)
{
    const char *h = addr;
    const char *colon = NULL;
    size_t hlen = 0;

    if (addr == NULL) {
        return false;
    }
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (close == NULL || close[1] != ':') {
            return false;
        }
        h = addr + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        /* A bare IPv6 address is ambiguous with its port: it must come in brackets. */
        if (colon == NULL || memchr(addr, ':', (size_t)(colon - addr)) != NULL) {
            return false;
        }
        hlen = (size_t)(colon - addr);
    }
    if (hlen == 0 || hlen >= 256 || !parse_port(colon + 1, port)) {
        return false;
    }
    for (size_t i = 0; i < hlen; i++) {
        if (!isgraph((unsigned char)h[i]) || strchr("[]/@", h[i]) != NULL) {
            return false;
        }
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return true;
}

/* @return NULL when @p text suits @p def, else what is wrong, to follow the key's name. */
static const char *text_problem(const struct key_def *def, const char *text)
{
    char host[256];
    unsigned port = 0;

    if (text[0] == '\0') {
        return "must not be empty";
    }
    switch (def->kind) {
    case KIND_ADDR:
        return th_config_split_addr(text, host, &port)
                   ? NULL
                   : "must be host:port (or [v6]:port) with a port from 1 to 65535";
    case KIND_HEADER:
        return is_token(text) ? NULL : "must be an HTTP header name";
    case KIND_URL:
        return has_prefix(text, "https://") || has_prefix(text, "http://")
                   ? NULL
                   : "must be an http:// or https:// URL";
    case KIND_REDIS_URL:
        return has_prefix(text, "redis://") || has_prefix(text, "rediss://")
                   ? NULL
                   : "must be a redis:// or rediss:// URL";
    case KIND_BACKEND:
        return strcmp(text, "sqlite") == 0 || strcmp(text, "redis") == 0
                   ? NULL
                   : "must be sqlite or redis";
    default:
        return NULL;
    }
}

static enum th_err set_text(struct loader *ld, const struct key_def *def, const char *text,
                            const struct origin *o)
{
    const char *problem = text_problem(def, text);
    char **slot = field(ld->cfg, def);

    if (problem != NULL) {
        return bad_value(ld, def, text, o, problem);
    }
    free(*slot);
    *slot = th_xstrdup(text);
    return TH_OK;
}

/* A whole number in [min, max] (min >= 0). */
static bool parse_whole(const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    unsigned long long v = 0;

    /* strtoull alone would take " 12", "+12" and "-1" (as a huge number). */
    if (!isdigit((unsigned char)text[0])) {
        return false;
    }
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < (unsigned long long)min || v > (unsigned long long)max) {
        return false;
    }
    *out = (int64_t)v;
    return true;
}

static enum th_err set_number(struct loader *ld, const struct key_def *def, const char *text,
                              const struct origin *o)
{
    char problem[96];
    int64_t v = 0;

    snprintf(problem, sizeof(problem), "must be a whole number from %lld to %lld",
             (long long)def->min, (long long)def->max);
    if (!parse_whole(text, def->min, def->max, &v)) {
        return bad_value(ld, def, text, o, problem);
    }
    if (def->kind == KIND_SIZE) {
        *(size_t *)field(ld->cfg, def) = (size_t)v;
    } else if (def->kind == KIND_INT) {
        *(int *)field(ld->cfg, def) = (int)v;
    } else {
        *(int64_t *)field(ld->cfg, def) = v;
    }
    return TH_OK;
}

static enum th_err set_choice(struct loader *ld, const struct key_def *def, const char *text,
                              const struct origin *o)
{
    if (def->kind == KIND_LOG_LEVEL) {
        return th_log_parse_level(text, &ld->cfg->log_level)
                   ? TH_OK
                   : bad_value(ld, def, text, o, "must be debug, info, warn or error");
    }
    if (strcmp(text, "image") == 0 || strcmp(text, "rule") == 0) {
        ld->cfg->dedup = text[0] == 'i' ? TH_DEDUP_IMAGE : TH_DEDUP_RULE;
        return TH_OK;
    }
    return bad_value(ld, def, text, o, "must be image or rule");
}

/* Replaces a list setting by @p items, taking them; an entry's value is never shown. */
static enum th_err set_list(struct loader *ld, const struct key_def *def, char **items, size_t n,
                            const struct origin *o)
{
    char ***slot = field(ld->cfg, def);
    size_t *count = (size_t *)((char *)ld->cfg + def->count_off);

    for (size_t i = 0; i < n; i++) {
        const char *colon = strchr(items[i], ':');
        const char *problem = items[i][0] == '\0' ? "is empty" : NULL;
        if (def->kind == KIND_CREDS && problem == NULL && (colon == NULL || colon == items[i])) {
            problem = "is not user:password";
        }
        if (problem != NULL) {
            free_list(items, n);
            return fail(ld, TH_EINVAL, o->line, "%s: entry %zu %s", o->label, i + 1, problem);
        }
    }
    free_list(*slot, *count);
    *slot = items;
    *count = n;
    return TH_OK;
}

/* Splits on commas and newlines, trimming blanks and dropping empty pieces. */
static void split_list(const char *text, char ***items, size_t *n)
{
    const char *p = text;

    *items = NULL;
    *n = 0;
    while (*p != '\0') {
        size_t len = strcspn(p, ",\n");
        const char *start = p;
        const char *end = p + len;
        while (start < end && isspace((unsigned char)*start)) {
            start++;
        }
        while (end > start && isspace((unsigned char)end[-1])) {
            end--;
        }
        if (end > start) {
            *items = th_xrealloc(*items, (*n + 1) * sizeof(**items));
            (*items)[(*n)++] = th_xstrndup(start, (size_t)(end - start));
        }
        p += len + (p[len] != '\0');
    }
}

static enum th_err set_value(struct loader *ld, const struct key_def *def, const char *text,
                             const struct origin *o)
{
    char **items = NULL;
    size_t n = 0;

    switch (def->kind) {
    case KIND_LIST:
    case KIND_CREDS:
        split_list(text, &items, &n);
        return set_list(ld, def, items, n, o);
    case KIND_SIZE:
    case KIND_INT:
    case KIND_SECONDS:
        return set_number(ld, def, text, o);
    case KIND_LOG_LEVEL:
    case KIND_DEDUP:
        return set_choice(ld, def, text, o);
    default:
        return set_text(ld, def, text, o);
    }
}

/* Reads a secret file (container-secrets convention): trailing blanks and newline dropped. */
static enum th_err read_secret(struct loader *ld, const char *path, const struct origin *o,
                               char **out)
{
    char *data = NULL;
    size_t len = 0;
    int errnum = 0;
    char why[128] = "larger than 64 KiB";

    *out = NULL;
    if (th_yaml_read_file(path, SECRET_MAX_BYTES, &data, &len, &errnum) != TH_OK) {
        if (errnum != 0) {
            strerror_r(errnum, why, sizeof(why));
        }
        return fail(ld, TH_EIO, o->line, "%s: cannot read %s: %s", o->label, path, why);
    }
    if (memchr(data, '\0', len) != NULL) {
        free(data);
        return fail(ld, TH_EINVAL, o->line, "%s: %s holds a NUL byte", o->label, path);
    }
    while (len > 0 && isspace((unsigned char)data[len - 1])) {
        data[--len] = '\0';
    }
    if (len == 0) {
        free(data);
        return fail(ld, TH_EINVAL, o->line, "%s: %s is empty", o->label, path);
    }
    *out = data;
    return TH_OK;
}

/* @p o names the _file key or variable; the value is checked as the setting it feeds. */
static enum th_err set_from_file(struct loader *ld, const struct key_def *def, const char *path,
                                 const struct origin *o)
{
    char *text = NULL;
    char label[128];
    struct origin from = {label, o->line};
    enum th_err rc = read_secret(ld, path, o, &text);

    if (rc == TH_OK) {
        snprintf(label, sizeof(label), "%s from %s", def->key, o->label);
        rc = set_value(ld, def, text, &from);
    }
    free(text);
    return rc;
}

static const struct key_def *find_def(const char *key)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].key, key) == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

/* "api_keys" -> TRAILHOOK_API_KEYS; "state.redis_url", "_FILE" -> TRAILHOOK_STATE_REDIS_URL_FILE */
static void env_name(const struct key_def *def, const char *suffix, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "%s%s%s", ENV_PREFIX, def->key, suffix);

    for (size_t i = strlen(ENV_PREFIX); i < n && i < len; i++) {
        buf[i] = buf[i] == '.' ? '_' : (char)toupper((unsigned char)buf[i]);
    }
}

/* @return the value of @p name in @p envp; NULL when unset or empty (compose passes `X=`). */
static const char *env_get(char *const *envp, const char *name)
{
    size_t n = strlen(name);

    for (size_t i = 0; envp[i] != NULL; i++) {
        if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=') {
            return envp[i][n + 1] != '\0' ? envp[i] + n + 1 : NULL;
        }
    }
    return NULL;
}

static bool env_known(const char *name, size_t len)
{
    char buf[96];

    if (len == strlen(ENV_CONFIG) && strncmp(name, ENV_CONFIG, len) == 0) {
        return true;
    }
    for (size_t i = 0; i < NKEYS; i++) {
        env_name(&keys[i], "", buf, sizeof(buf));
        if (strlen(buf) == len && strncmp(buf, name, len) == 0) {
            return true;
        }
        env_name(&keys[i], "_FILE", buf, sizeof(buf));
        if (keys[i].secret && strlen(buf) == len && strncmp(buf, name, len) == 0) {
            return true;
        }
    }
    return false;
}

/*
 * Kubernetes gives every pod variables for each Service of its namespace: a Service named
 * "trailhook" (or "trailhook-admin") yields TRAILHOOK_SERVICE_HOST, TRAILHOOK_SERVICE_PORT[_NAME],
 * TRAILHOOK_PORT and TRAILHOOK_PORT_8080_TCP[_PROTO|_PORT|_ADDR]. They are not settings (no key
 * ends in _PORT or holds _SERVICE_), and refusing them would stop the pod from starting.
 */
static bool env_service_link(const char *name, size_t len)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%.*s", (int)(len < sizeof(buf) ? len : sizeof(buf) - 1), name);
    size_t n = strlen(buf);

    if ((n > 13 && strcmp(buf + n - 13, "_SERVICE_HOST") == 0) ||
        strstr(buf, "_SERVICE_PORT") != NULL || (n > 5 && strcmp(buf + n - 5, "_PORT") == 0)) {
        return true;
    }
    const char *p = strstr(buf, "_PORT_");
    if (p == NULL || !isdigit((unsigned char)p[6])) {
        return false;
    }
    p += 6 + strspn(p + 6, "0123456789");
    return strncmp(p, "_TCP", 4) == 0 || strncmp(p, "_UDP", 4) == 0 || strncmp(p, "_SCTP", 5) == 0;
}

/* A mistyped variable would otherwise be ignored while the operator believes it applies. */
static enum th_err check_env_names(struct loader *ld, char *const *envp)
{
    for (size_t i = 0; envp[i] != NULL; i++) {
        size_t len = strcspn(envp[i], "=");
        if (has_prefix(envp[i], ENV_PREFIX) && !env_known(envp[i], len) &&
            !env_service_link(envp[i], len)) {
            return fail(ld, TH_EINVAL, 0,
                        "unknown environment variable %.*s (settings are TRAILHOOK_<KEY> for the "
                        "keys of config/trailhook.yml)",
                        (int)(len < 96 ? len : 96), envp[i]);
        }
    }
    return TH_OK;
}

static enum th_err apply_env(struct loader *ld, char *const *envp)
{
    char name[96];
    char file_name[96];
    enum th_err rc = check_env_names(ld, envp);

    for (size_t i = 0; i < NKEYS && rc == TH_OK; i++) {
        const struct key_def *def = &keys[i];
        env_name(def, "", name, sizeof(name));
        env_name(def, "_FILE", file_name, sizeof(file_name));
        const char *value = env_get(envp, name);
        const char *path = def->secret ? env_get(envp, file_name) : NULL;
        if (value != NULL && path != NULL) {
            rc = fail(ld, TH_EINVAL, 0, "set %s or %s, not both", name, file_name);
        } else if (value != NULL) {
            rc = set_value(ld, def, value, &(struct origin){name, 0});
        } else if (path != NULL) {
            rc = set_from_file(ld, def, path, &(struct origin){file_name, 0});
        }
    }
    return rc;
}

/* `key:` with nothing after it (or ~, null) keeps the default, as if commented out. */
static bool is_null(const struct th_yaml_node *n)
{
    json_t *v = NULL;
    bool null = false;

    if (n == NULL || n->type != TH_YAML_SCALAR || n->quoted) {
        return n == NULL;
    }
    v = th_yaml_to_json(n);
    null = json_is_null(v);
    json_decref(v);
    return null;
}

/* A scalar usable as text; a NUL inside would silently cut a key or path short. */
static enum th_err want_text(struct loader *ld, const struct th_yaml_node *n, const char *label)
{
    if (n->type != TH_YAML_SCALAR) {
        return fail(ld, TH_EINVAL, n->line, "%s must be a single value, not a %s", label,
                    n->type == TH_YAML_SEQ ? "list" : "mapping");
    }
    if (strlen(n->scalar) != n->scalar_len) {
        return fail(ld, TH_EINVAL, n->line, "%s must not contain a NUL character", label);
    }
    return TH_OK;
}

static enum th_err set_list_nodes(struct loader *ld, const struct key_def *def,
                                  const struct th_yaml_node *seq, const struct origin *o)
{
    char **items = th_xcalloc(seq->nitems, sizeof(*items));
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < seq->nitems && rc == TH_OK; i++) {
        rc = want_text(ld, seq->items[i], o->label);
        if (rc == TH_OK) {
            items[i] = th_xstrdup(seq->items[i]->scalar);
        }
    }
    if (rc != TH_OK) {
        free_list(items, seq->nitems);
        return rc;
    }
    return set_list(ld, def, items, seq->nitems, o);
}

static enum th_err apply_file_value(struct loader *ld, const struct key_def *def,
                                    const struct th_yaml_node *value)
{
    struct origin o = {def->key, value->line};
    enum th_err rc = TH_OK;

    if (is_null(value)) {
        return TH_OK;
    }
    if (value->type == TH_YAML_SEQ && is_list(def)) {
        return set_list_nodes(ld, def, value, &o);
    }
    rc = want_text(ld, value, def->key);
    return rc == TH_OK ? set_value(ld, def, value->scalar, &o) : rc;
}

/* `<secret>_file: PATH`; @p map is the mapping holding it, to refuse the plain key beside it. */
static enum th_err apply_secret_file_key(struct loader *ld, const struct th_yaml_node *map,
                                         const struct key_def *def, const char *full,
                                         const struct th_yaml_node *value)
{
    const char *dot = strchr(def->key, '.');
    const struct th_yaml_node *plain = th_yaml_map_get(map, dot != NULL ? dot + 1 : def->key);
    enum th_err rc = TH_OK;

    if (plain != NULL && !is_null(plain)) {
        return fail(ld, TH_EINVAL, value->line, "set %s or %s, not both", def->key, full);
    }
    if (is_null(value)) {
        return TH_OK;
    }
    rc = want_text(ld, value, full);
    return rc == TH_OK ? set_from_file(ld, def, value->scalar, &(struct origin){full, value->line})
                       : rc;
}

/* "api_keys_file" -> the api_keys entry, when api_keys is a secret (only secrets have one). */
static const struct key_def *secret_file_def(const char *full)
{
    size_t n = strlen(full);

    for (size_t i = 0; i < NKEYS; i++) {
        size_t k = strlen(keys[i].key);
        if (keys[i].secret && n == k + 5 && strncmp(full, keys[i].key, k) == 0 &&
            strcmp(full + k, "_file") == 0) {
            return &keys[i];
        }
    }
    return NULL;
}

static bool dest_type_parse(const char *name, enum th_dest_type *out)
{
    for (size_t i = 0; i < sizeof(dest_type_names) / sizeof(dest_type_names[0]); i++) {
        if (strcmp(name, dest_type_names[i]) == 0) {
            *out = (enum th_dest_type)i;
            return true;
        }
    }
    return false;
}

/* The defaults of @p d's type; the file's keys, read after, override them. */
static void dest_defaults(struct th_config_dest *d)
{
    static const double rates[] = {[TH_DEST_CONSOLE] = 0,
                                   [TH_DEST_SLACK] = 60,
                                   [TH_DEST_PAGERDUTY] = 120,
                                   [TH_DEST_WEBHOOK] = 600};

    if (d->secret_header == NULL) {
        d->secret_header = th_xstrdup(SECRET_HEADER);
    }
    d->concurrency = 1;
    /* Slack allows about one message a second per incoming webhook, with short bursts. */
    d->rate_per_minute = rates[d->type];
    d->burst = d->type == TH_DEST_SLACK ? 3 : 10;
    d->max_age_seconds = DAY_SECONDS;
    d->connect_timeout_ms = 3000;
    d->timeout_ms = 10000;
}

static struct th_config_dest *add_dest(struct th_config *cfg, enum th_dest_type type,
                                       const char *url, const char *secret)
{
    struct th_config_dest *d = NULL;

    cfg->destinations =
        th_xrealloc(cfg->destinations, (cfg->ndestinations + 1) * sizeof(*cfg->destinations));
    d = &cfg->destinations[cfg->ndestinations++];
    memset(d, 0, sizeof(*d));
    d->type = type;
    d->url = th_xstrdup(url);
    d->secret = th_xstrdup(secret);
    dest_defaults(d);
    return d;
}

/* `url` or `url_file` (`secret` or `secret_file`) of a destination; neither leaves *out NULL. */
static enum th_err dest_value(struct loader *ld, const struct th_yaml_node *n, const char *key,
                              const char *label, char **out)
{
    char file_key[32];
    char what[64];
    const struct th_yaml_node *v = th_yaml_map_get(n, key);
    const struct th_yaml_node *f = NULL;
    enum th_err rc = TH_OK;

    snprintf(file_key, sizeof(file_key), "%s_file", key);
    f = th_yaml_map_get(n, file_key);
    v = is_null(v) ? NULL : v;
    f = is_null(f) ? NULL : f;
    if (v != NULL && f != NULL) {
        return fail(ld, TH_EINVAL, f->line, "%s: set %s or %s, not both", label, key, file_key);
    }
    snprintf(what, sizeof(what), "%s: %s", label, v != NULL ? key : file_key);
    if (v != NULL) {
        rc = want_text(ld, v, what);
        *out = rc == TH_OK ? th_xstrdup(v->scalar) : NULL;
    } else if (f != NULL) {
        rc = want_text(ld, f, what);
        rc = rc == TH_OK ? read_secret(ld, f->scalar, &(struct origin){what, f->line}, out) : rc;
    }
    return rc;
}

static enum th_err dest_type(struct loader *ld, const struct th_yaml_node *n, const char *label,
                             struct th_config_dest *d)
{
    const struct th_yaml_node *t = th_yaml_map_get(n, "type");

    if (t == NULL || is_null(t)) {
        return fail(ld, TH_EINVAL, n->line,
                    "%s: type is required (console, slack, pagerduty or webhook)", label);
    }
    if (t->type != TH_YAML_SCALAR || !dest_type_parse(t->scalar, &d->type)) {
        return fail(ld, TH_EINVAL, t->line,
                    "%s: type must be console, slack, pagerduty or webhook (got '%.32s')", label,
                    t->type == TH_YAML_SCALAR ? t->scalar : "a list or mapping");
    }
    return TH_OK;
}

static enum th_err dest_name(struct loader *ld, const struct th_yaml_node *n, const char *label,
                             struct th_config_dest *d)
{
    const struct th_yaml_node *v = th_yaml_map_get(n, "name");
    struct th_config *cfg = ld->cfg;
    char what[64];
    enum th_err rc = TH_OK;

    if (v == NULL || is_null(v)) {
        return TH_OK;
    }
    snprintf(what, sizeof(what), "%s: name", label);
    rc = want_text(ld, v, what);
    if (rc == TH_OK && v->scalar[0] == '\0') {
        rc = fail(ld, TH_EINVAL, v->line, "%s must not be empty", what);
    }
    for (size_t i = 0; rc == TH_OK && &cfg->destinations[i] != d; i++) {
        if (cfg->destinations[i].name != NULL &&
            strcmp(cfg->destinations[i].name, v->scalar) == 0) {
            rc = fail(ld, TH_EINVAL, v->line, "%s: name '%.64s' is already used by destination %zu",
                      label, v->scalar, i + 1);
        }
    }
    d->name = rc == TH_OK ? th_xstrdup(v->scalar) : NULL;
    return rc;
}

static enum th_err dest_options(struct loader *ld, const struct th_yaml_node *n, const char *label,
                                struct th_config_dest *d)
{
    const struct th_yaml_node *sev = th_yaml_map_get(n, "min_severity");
    const struct th_yaml_node *errs = th_yaml_map_get(n, "rule_errors");

    if (sev != NULL && !is_null(sev) &&
        (sev->type != TH_YAML_SCALAR || !th_severity_parse(sev->scalar, &d->min_severity))) {
        return fail(
            ld, TH_EINVAL, sev->line,
            "%s: min_severity must be one of Info, Low, Medium, High, Critical (got '%.32s')",
            label, sev->type == TH_YAML_SCALAR ? sev->scalar : "a list or mapping");
    }
    if (errs != NULL && !is_null(errs) && !th_yaml_bool(errs, &d->rule_errors)) {
        return fail(ld, TH_EINVAL, errs->line, "%s: rule_errors must be true or false", label);
    }
    return TH_OK;
}

/* The value of @p key when set: NULL when absent or empty; a list or mapping is an error. */
static enum th_err dest_scalar(struct loader *ld, const struct th_yaml_node *n, const char *key,
                               const char *label, const struct th_yaml_node **out)
{
    const struct th_yaml_node *v = th_yaml_map_get(n, key);
    char what[64];

    *out = NULL;
    if (v == NULL || is_null(v)) {
        return TH_OK;
    }
    snprintf(what, sizeof(what), "%s: %s", label, key);
    *out = v;
    return want_text(ld, v, what);
}

/* A rate: digits with an optional fraction ("30", "0.5"); no sign, exponent or hex. */
static bool parse_rate(const char *s, double *out)
{
    size_t i = strspn(s, "0123456789");
    char *end = NULL;

    if (i > 0 && s[i] == '.') {
        size_t frac = strspn(s + i + 1, "0123456789");
        i = frac > 0 ? i + 1 + frac : 0;
    }
    if (i == 0 || s[i] != '\0') {
        return false;
    }
    errno = 0;
    *out = strtod(s, &end);
    return errno == 0 && end == s + i && isfinite(*out);
}

/* Concurrency, rate limit, dead-letter age and timeouts. */
static enum th_err dest_limits(struct loader *ld, const struct th_yaml_node *n, const char *label,
                               struct th_config_dest *d)
{
    const struct th_yaml_node *v = NULL;
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < sizeof(dest_numbers) / sizeof(dest_numbers[0]) && rc == TH_OK; i++) {
        const struct dest_number *num = &dest_numbers[i];
        int64_t value = 0;
        rc = dest_scalar(ld, n, num->key, label, &v);
        if (rc != TH_OK || v == NULL) {
            continue;
        }
        if (!parse_whole(v->scalar, num->min, num->max, &value)) {
            return fail(ld, TH_EINVAL, v->line,
                        "%s: %s must be a whole number from %lld to %lld (got '%.32s')", label,
                        num->key, (long long)num->min, (long long)num->max, v->scalar);
        }
        if (num->is_int) {
            *(int *)((char *)d + num->off) = (int)value;
        } else {
            *(int64_t *)((char *)d + num->off) = value;
        }
    }
    if (rc == TH_OK) {
        rc = dest_scalar(ld, n, "rate_per_minute", label, &v);
    }
    if (rc == TH_OK && v != NULL && !parse_rate(v->scalar, &d->rate_per_minute)) {
        rc = fail(ld, TH_EINVAL, v->line,
                  "%s: rate_per_minute must be a number of 0 or more, like 30 or 0.5; 0 is "
                  "unlimited (got '%.32s')",
                  label, v->scalar);
    }
    return rc;
}

/* How a webhook authenticates: `secret` in secret_header, and an HMAC of the body. */
static enum th_err dest_webhook(struct loader *ld, const struct th_yaml_node *n, const char *label,
                                struct th_config_dest *d)
{
    const struct th_yaml_node *hmac = th_yaml_map_get(n, "hmac_secret");
    const struct th_yaml_node *hdr = NULL;
    enum th_err rc = dest_value(ld, n, "hmac_secret", label, &d->hmac_secret);

    if (hmac == NULL || is_null(hmac)) {
        hmac = th_yaml_map_get(n, "hmac_secret_file");
    }
    if (rc == TH_OK && d->hmac_secret != NULL && d->type != TH_DEST_WEBHOOK) {
        rc = fail(ld, TH_EINVAL, hmac->line, "%s: hmac_secret applies to webhook destinations only",
                  label);
    }
    if (rc == TH_OK && d->hmac_secret != NULL && d->hmac_secret[0] == '\0') {
        rc = fail(ld, TH_EINVAL, hmac->line, "%s: hmac_secret must not be empty", label);
    }
    if (rc == TH_OK) {
        rc = dest_scalar(ld, n, "secret_header", label, &hdr);
    }
    if (rc != TH_OK || hdr == NULL) {
        return rc;
    }
    if (d->type != TH_DEST_WEBHOOK) {
        return fail(ld, TH_EINVAL, hdr->line,
                    "%s: secret_header applies to webhook destinations only", label);
    }
    if (!is_token(hdr->scalar)) {
        return fail(ld, TH_EINVAL, hdr->line,
                    "%s: secret_header must be an HTTP header name (got '%.64s')", label,
                    hdr->scalar);
    }
    free(d->secret_header);
    d->secret_header = th_xstrdup(hdr->scalar);
    return TH_OK;
}

/* What a destination of its type cannot work without. URLs may hold tokens: never shown. */
static enum th_err dest_check(struct loader *ld, const struct th_yaml_node *n, const char *label,
                              const struct th_config_dest *d)
{
    const char *type = th_dest_type_name(d->type);

    if ((d->type == TH_DEST_SLACK || d->type == TH_DEST_WEBHOOK) && d->url == NULL) {
        return fail(ld, TH_EINVAL, n->line, "%s: a %s destination needs a url (or url_file)", label,
                    type);
    }
    if (d->url != NULL && !has_prefix(d->url, "https://") && !has_prefix(d->url, "http://")) {
        return fail(ld, TH_EINVAL, n->line, "%s: url must be an http:// or https:// URL", label);
    }
    if (d->type == TH_DEST_PAGERDUTY && d->secret == NULL) {
        return fail(ld, TH_EINVAL, n->line,
                    "%s: a pagerduty destination needs a secret, its routing key (or secret_file)",
                    label);
    }
    return TH_OK;
}

static enum th_err check_dest_keys(struct loader *ld, const struct th_yaml_node *n,
                                   const char *label)
{
    for (size_t i = 0; i < n->npairs; i++) {
        const struct th_yaml_node *key = n->pairs[i].key;
        bool known = false;
        for (size_t k = 0; dest_keys[k] != NULL && !known; k++) {
            known = strcmp(dest_keys[k], key->scalar) == 0;
        }
        if (!known) {
            return fail(ld, TH_EINVAL, key->line, "%s: unknown key '%.64s'", label, key->scalar);
        }
    }
    return TH_OK;
}

static enum th_err parse_dest(struct loader *ld, const struct th_yaml_node *n, size_t index)
{
    struct th_config_dest *d = NULL;
    char label[48];
    enum th_err rc = TH_OK;

    snprintf(label, sizeof(label), "destination %zu", index + 1);
    if (n->type != TH_YAML_MAP) {
        return fail(ld, TH_EINVAL, n->line, "%s must be a mapping (name, type, url, ...)", label);
    }
    rc = check_dest_keys(ld, n, label);
    if (rc != TH_OK) {
        return rc;
    }
    d = add_dest(ld->cfg, TH_DEST_CONSOLE, NULL, NULL);
    rc = dest_type(ld, n, label, d);
    if (rc == TH_OK) {
        dest_defaults(d); /* again, now that the type is known */
        rc = dest_name(ld, n, label, d);
    }
    if (rc == TH_OK) {
        rc = dest_value(ld, n, "url", label, &d->url);
    }
    if (rc == TH_OK) {
        rc = dest_value(ld, n, "secret", label, &d->secret);
    }
    if (rc == TH_OK) {
        rc = dest_options(ld, n, label, d);
    }
    if (rc == TH_OK) {
        rc = dest_limits(ld, n, label, d);
    }
    if (rc == TH_OK) {
        rc = dest_webhook(ld, n, label, d);
    }
    return rc == TH_OK ? dest_check(ld, n, label, d) : rc;
}

static enum th_err parse_destinations(struct loader *ld, const struct th_yaml_node *value)
{
    enum th_err rc = TH_OK;

    if (is_null(value)) {
        return TH_OK;
    }
    if (value->type != TH_YAML_SEQ) {
        return fail(ld, TH_EINVAL, value->line,
                    "destinations must be a list of mappings (name, type, url, ...)");
    }
    for (size_t i = 0; i < value->nitems && rc == TH_OK; i++) {
        rc = parse_dest(ld, value->items[i], i);
    }
    return rc;
}

static enum th_err apply_map(struct loader *ld, const struct th_yaml_node *map,
                             const char *section);

static enum th_err apply_state(struct loader *ld, const struct th_yaml_node *value)
{
    if (is_null(value)) {
        return TH_OK;
    }
    if (value->type != TH_YAML_MAP) {
        return fail(ld, TH_EINVAL, value->line, "state must be a mapping (backend, redis_url)");
    }
    return apply_map(ld, value, "state.");
}

static enum th_err apply_pair(struct loader *ld, const struct th_yaml_node *map, size_t i,
                              const char *section)
{
    const struct th_yaml_node *key = map->pairs[i].key;
    const struct th_yaml_node *value = map->pairs[i].value;
    bool top = section[0] == '\0';
    const struct key_def *def = NULL;
    char full[128];

    snprintf(full, sizeof(full), "%s%.96s", section, key->scalar);
    if (top && strcmp(full, "state") == 0) {
        return apply_state(ld, value);
    }
    if (top && strcmp(full, "destinations") == 0) {
        return parse_destinations(ld, value);
    }
    /* A literal "state.backend" key is not the nested one: only `state:` opens that section. */
    def = strchr(key->scalar, '.') == NULL ? find_def(full) : NULL;
    if (def != NULL) {
        return apply_file_value(ld, def, value);
    }
    def = strchr(key->scalar, '.') == NULL ? secret_file_def(full) : NULL;
    if (def != NULL) {
        return apply_secret_file_key(ld, map, def, full, value);
    }
    return fail(ld, TH_EINVAL, key->line, "unknown key '%s'", full);
}

static enum th_err apply_map(struct loader *ld, const struct th_yaml_node *map, const char *section)
{
    enum th_err rc = TH_OK;

    for (size_t i = 0; i < map->npairs && rc == TH_OK; i++) {
        rc = apply_pair(ld, map, i, section);
    }
    return rc;
}

static enum th_err load_file(struct loader *ld, const char *path)
{
    char *data = NULL;
    size_t len = 0;
    int errnum = 0;
    struct th_yaml_node *root = NULL;
    char why[256] = "larger than 1 MiB";
    enum th_err rc = th_yaml_read_file(path, CONFIG_MAX_BYTES, &data, &len, &errnum);

    if (rc != TH_OK) {
        if (errnum != 0) {
            strerror_r(errnum, why, sizeof(why));
        }
        rc = fail(ld, TH_EIO, 0, "cannot read config file %s: %s", path, why);
        goto out;
    }
    if (th_yaml_parse(data, len, CONFIG_MAX_DEPTH, &root, why, sizeof(why)) != TH_OK) {
        rc = fail(ld, TH_EPARSE, 0, "%s: %s", path, why);
        goto out;
    }
    if (root->type != TH_YAML_MAP) {
        rc = fail(ld, TH_EINVAL, root->line,
                  "the config file must be a mapping of keys (listen, state_dir, ...)");
        goto out;
    }
    rc = apply_map(ld, root, "");
out:
    th_yaml_free(root);
    free(data);
    return rc;
}

static bool name_taken(const struct th_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        if (cfg->destinations[i].name != NULL && strcmp(cfg->destinations[i].name, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Unnamed destinations take their type's name, then "slack-2", "slack-3", ... */
static void name_destinations(struct th_config *cfg)
{
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        struct th_config_dest *d = &cfg->destinations[i];
        const char *base = th_dest_type_name(d->type);
        char *name = NULL;
        if (d->name != NULL) {
            continue;
        }
        name = th_xstrdup(base);
        for (unsigned k = 2; name_taken(cfg, name); k++) {
            free(name);
            name = th_xasprintf("%s-%u", base, k);
        }
        d->name = name;
    }
}

/* With a shared outbox, a delivery idle longer than claim_after_seconds is taken over by another
 * replica: one still waiting for a slow receiver would then be sent twice. */
static enum th_err check_claim_after(struct loader *ld, const struct th_config *cfg)
{
    if (strcmp(cfg->state_backend, "redis") != 0) {
        return TH_OK;
    }
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        const struct th_config_dest *d = &cfg->destinations[i];
        if (d->timeout_ms + d->connect_timeout_ms >= cfg->state_claim_after_seconds * 1000) {
            return fail(ld, TH_EINVAL, 0,
                        "destination %s: timeout_ms plus connect_timeout_ms must stay below "
                        "state.claim_after_seconds (%lld s), or another replica could take over "
                        "a delivery still in progress",
                        d->name, (long long)cfg->state_claim_after_seconds);
        }
    }
    return TH_OK;
}

/* Runs once every source has been read: quick paths, the console fallback, cross-checks. */
static enum th_err finish(struct loader *ld)
{
    struct th_config *cfg = ld->cfg;

    if (cfg->slack_webhook_url != NULL) {
        add_dest(cfg, TH_DEST_SLACK, cfg->slack_webhook_url, NULL);
    }
    if (cfg->pagerduty_routing_key != NULL) {
        add_dest(cfg, TH_DEST_PAGERDUTY, NULL, cfg->pagerduty_routing_key);
    }
    if (cfg->ndestinations == 0) {
        add_dest(cfg, TH_DEST_CONSOLE, NULL, NULL);
    }
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        struct th_config_dest *d = &cfg->destinations[i];
        if (d->type == TH_DEST_PAGERDUTY && d->url == NULL) {
            d->url = th_xstrdup(cfg->pagerduty_url);
        }
    }
    name_destinations(cfg);
    if ((cfg->tls_cert_file == NULL) != (cfg->tls_key_file == NULL)) {
        return fail(ld, TH_EINVAL, 0, "tls_cert_file and tls_key_file must be set together");
    }
    if (strcmp(cfg->state_backend, "redis") == 0 && cfg->state_redis_url == NULL) {
        return fail(ld, TH_EINVAL, 0, "state.redis_url is required when state.backend is redis");
    }
    return check_claim_after(ld, cfg);
}

void th_config_defaults(struct th_config *cfg)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->listen = th_xstrdup("127.0.0.1:8080");
    cfg->api_key_header = th_xstrdup("X-Api-Key");
    cfg->state_dir = th_xstrdup("./var");
    cfg->max_body_bytes = 10485760;
    cfg->max_inflated_bytes = 67108864;
    cfg->max_events = 100000;
    cfg->max_json_depth = 64;
    cfg->max_string_bytes = 1048576;
    cfg->max_header_bytes = 16384;
    cfg->max_connections = 4096;
    cfg->connection_timeout_seconds = 30;
    /* At least two, so one slow request cannot stall evaluation on a one-CPU container. */
    cfg->workers = cpus > 2 ? (int)(cpus < 1024 ? cpus : 1024) : 2;
    cfg->queue_capacity = 1024;
    cfg->log_level = TH_LOG_INFO;
    cfg->dedup = TH_DEDUP_IMAGE;
    cfg->seen_event_ttl_seconds = 2 * DAY_SECONDS;
    cfg->new_account_ttl_seconds = 3 * DAY_SECONDS;
    cfg->drain_grace_seconds = 10;
    cfg->pagerduty_url = th_xstrdup("https://events.pagerduty.com/v2/enqueue");
    cfg->state_backend = th_xstrdup("sqlite");
    cfg->state_claim_after_seconds = 60;
}

enum th_err th_config_load(const char *path, char *const *envp, struct th_config *cfg, char *err,
                           size_t errlen)
{
    struct loader ld = {.cfg = cfg, .path = path, .err = err, .errlen = errlen};
    enum th_err rc = TH_OK;

    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    th_config_defaults(cfg);
    if (path != NULL) {
        rc = load_file(&ld, path);
    }
    if (rc == TH_OK && envp != NULL) {
        rc = apply_env(&ld, envp);
    }
    return rc == TH_OK ? finish(&ld) : rc;
}

size_t th_config_nkeys(void)
{
    return NKEYS;
}

void th_config_key_info(size_t i, struct th_config_key *out)
{
    out->key = keys[i].key;
    out->secret = keys[i].secret;
    env_name(&keys[i], "", out->env, sizeof(out->env));
}

static void format_list(char *const *items, size_t n, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && used < len; i++) {
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i > 0 ? "," : "", items[i]);
    }
}

void th_config_redact_url(const char *url, bool keep_path, char *buf, size_t len)
{
    const char *scheme_end = url != NULL ? strstr(url, "://") : NULL;
    if (scheme_end == NULL) {
        snprintf(buf, len, "%s", url != NULL && url[0] != '\0' ? "<redacted>" : "");
        return;
    }
    const char *host = scheme_end + 3;
    size_t authority = strcspn(host, "/?#");
    size_t userinfo = 0; /* up to and including the last '@' of the authority */
    for (size_t i = 0; i < authority; i++) {
        userinfo = host[i] == '@' ? i + 1 : userinfo;
    }
    snprintf(buf, len, "%.*s%s%.*s%s", (int)(host - url), url, userinfo > 0 ? "<redacted>@" : "",
             (int)(authority - userinfo), host + userinfo,
             keep_path ? host + authority : (host[authority] != '\0' ? "/…" : ""));
}

void th_config_format(const struct th_config *cfg, size_t i, char *buf, size_t len)
{
    const struct key_def *def = &keys[i];
    void *f = field((struct th_config *)cfg, def);
    bool set = is_list(def)        ? *(size_t *)((char *)cfg + def->count_off) > 0
               : is_text_kind(def) ? *(char **)f != NULL
                                   : true;

    if (!set) {
        snprintf(buf, len, "%s", "");
    } else if (def->secret) {
        snprintf(buf, len, "%s", "<redacted>");
    } else if (is_list(def)) {
        format_list(*(char ***)f, *(size_t *)((char *)cfg + def->count_off), buf, len);
    } else if (def->kind == KIND_URL) {
        th_config_redact_url(*(char **)f, true, buf, len);
    } else if (is_text_kind(def)) {
        snprintf(buf, len, "%s", *(char **)f);
    } else if (def->kind == KIND_SIZE) {
        snprintf(buf, len, "%zu", *(size_t *)f);
    } else if (def->kind == KIND_INT) {
        snprintf(buf, len, "%d", *(int *)f);
    } else if (def->kind == KIND_SECONDS) {
        snprintf(buf, len, "%lld", (long long)*(int64_t *)f);
    } else if (def->kind == KIND_LOG_LEVEL) {
        static const char *const levels[] = {"debug", "info", "warn", "error"};
        snprintf(buf, len, "%s", levels[cfg->log_level]);
    } else {
        snprintf(buf, len, "%s", cfg->dedup == TH_DEDUP_IMAGE ? "image" : "rule");
    }
}

void th_config_cleanup(struct th_config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        const struct key_def *def = &keys[i];
        if (is_list(def)) {
            free_list(*(char ***)field(cfg, def), *(size_t *)((char *)cfg + def->count_off));
        } else if (is_text_kind(def)) {
            free(*(char **)field(cfg, def));
        }
    }
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        free(cfg->destinations[i].name);
        free(cfg->destinations[i].url);
        free(cfg->destinations[i].secret);
        free(cfg->destinations[i].hmac_secret);
        free(cfg->destinations[i].secret_header);
    }
    free(cfg->destinations);
    memset(cfg, 0, sizeof(*cfg));
}
