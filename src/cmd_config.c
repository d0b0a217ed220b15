/* SPDX-License-Identifier: MIT */
/*
 * cmd_config.c -- `trailhook config`: the effective configuration (defaults, then the file, then
 * TRAILHOOK_* variables), one setting a line with its environment variable, secrets redacted.
 */
#include <stdio.h>
#include <string.h>

#include "trailhook/cmd.h"

/* Values print as YAML scalars: an unset one as ~, anything YAML could misread quoted. */
static void print_value(FILE *out, const char *value)
{
    if (value[0] == '\0') {
        fputs("~", out);
    } else if (strpbrk(value, ":#,[]{}&*!|>'\"%@`<") != NULL || value[0] == '-') {
        fputc('"', out);
        for (const char *p = value; *p != '\0'; p++) {
            if (*p == '"' || *p == '\\') {
                fputc('\\', out);
            }
            fputc(*p, out);
        }
        fputc('"', out);
    } else {
        fputs(value, out);
    }
}

static void print_setting(FILE *out, const char *key, const char *value, const char *env)
{
    fprintf(out, "%s: ", key);
    print_value(out, value);
    fprintf(out, "  # %s\n", env);
}

static void print_destination(FILE *out, const struct th_config_dest *d)
{
    char origin[512];

    th_config_redact_url(d->url, false, origin, sizeof(origin));
    fprintf(out, "  - name: ");
    print_value(out, d->name);
    fprintf(out, "\n    type: %s\n    url: ", th_dest_type_name(d->type));
    print_value(out, origin);
    fprintf(out, "\n    secret: %s\n", d->secret != NULL ? "\"<redacted>\"" : "~");
    fprintf(out, "    min_severity: %s\n    rule_errors: %s\n", th_severity_name(d->min_severity),
            d->rule_errors ? "true" : "false");
    if (d->type == TH_DEST_WEBHOOK) {
        fprintf(out, "    hmac_secret: %s\n    secret_header: ",
                d->hmac_secret != NULL ? "\"<redacted>\"" : "~");
        print_value(out, d->secret_header != NULL ? d->secret_header : "");
        fputc('\n', out);
    }
    fprintf(out,
            "    concurrency: %d\n    rate_per_minute: %g\n    burst: %d\n"
            "    max_age_seconds: %lld\n    connect_timeout_ms: %lld\n    timeout_ms: %lld\n",
            d->concurrency, d->rate_per_minute, d->burst, (long long)d->max_age_seconds,
            (long long)d->connect_timeout_ms, (long long)d->timeout_ms);
}

int th_cmd_config(const struct th_config *cfg, FILE *out)
{
    char value[4096];
    struct th_config_key key;

    fputs("# trailhook's effective configuration: defaults, then the file, then TRAILHOOK_*\n"
          "# variables. Secrets show as \"<redacted>\"; ~ is unset.\n",
          out);
    for (size_t i = 0; i < th_config_nkeys(); i++) {
        th_config_key_info(i, &key);
        th_config_format(cfg, i, value, sizeof(value));
        print_setting(out, key.key, value, key.env);
    }
    fputs("destinations:\n", out);
    for (size_t i = 0; i < cfg->ndestinations; i++) {
        print_destination(out, &cfg->destinations[i]);
    }
    return ferror(out) ? TH_EXIT_USAGE : TH_EXIT_OK;
}
