/* SPDX-License-Identifier: MIT */
/* cmd_healthcheck.c -- `trailhook healthcheck`: the container HEALTHCHECK, over libcurl. */
#include <curl/curl.h>
#include <string.h>

#include "trailhook/cmd.h"
#include "trailhook/mem.h"

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

int th_cmd_healthcheck(const struct th_config *cfg, const char *url)
{
    char host[256];
    unsigned port = 0;
    char *own = NULL;
    long code = 0;

    if (url == NULL) {
        const char *addr = cfg->admin_listen != NULL ? cfg->admin_listen : cfg->listen;
        th_config_split_addr(addr, host, &port);
        /* A wildcard listener is reached on loopback. */
        const char *h = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1"
                        : strcmp(host, "::") == 0    ? "::1"
                                                     : host;
        const char *scheme =
            cfg->tls_cert_file != NULL && cfg->admin_listen == NULL ? "https" : "http";
        own = th_xasprintf("%s://%s%s%s:%u/healthz", scheme, strchr(h, ':') != NULL ? "[" : "", h,
                           strchr(h, ':') != NULL ? "]" : "", port);
        url = own;
    }
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    /* The service's own certificate usually names the public host, not loopback. */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (rc != CURLE_OK || code != 200) {
        fprintf(stderr, "trailhook healthcheck: %s: %s\n", url,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "not 200");
        free(own);
        return TH_EXIT_FAILED;
    }
    free(own);
    return TH_EXIT_OK;
}
