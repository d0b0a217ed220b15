/* SPDX-License-Identifier: MIT */
/*
 * http.c -- the HTTP front of the service on libmicrohttpd: routing, authentication, body
 * limits, and handing bodies to the workers through the bounded queue. A connection is
 * suspended while its body is evaluated and resumed by the worker, so the polling thread never
 * waits on evaluation, the store or a destination.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"
#include "trailhook/auth.h"
#include "trailhook/clock.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

#define ALERTS_DEFAULT_LIMIT 50
#define ALERTS_MAX_LIMIT     1000

/* Queues @p text (stolen, JSON with the request id); adds the headers each status needs. */
static enum MHD_Result send_text(struct th_http_req *req, unsigned status, char *text,
                                 unsigned retry_after, const char *allow)
{
    size_t len = strlen(text);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    if (retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%u", retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (allow != NULL) {
        MHD_add_response_header(resp, "Allow", allow);
    }
    if (atomic_load(&req->srv->draining)) {
        /* Draining: no keep-alive, so the connection count falls to zero. */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    if (status == 401) {
        MHD_add_response_header(resp, "WWW-Authenticate", "Basic realm=\"trailhook\"");
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"trailhook\"");
    }
    enum MHD_Result rc = MHD_queue_response(req->conn, status, resp);
    MHD_destroy_response(resp);
    req->answered = true;
    req->status = status;
    return rc;
}

/* Queues @p body (stolen) as JSON with the request id. */
static enum MHD_Result send_json(struct th_http_req *req, unsigned status, json_t *body,
                                 unsigned retry_after, const char *allow)
{
    json_object_set_new(body, "request_id", json_string(req->request_id));
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    return send_text(req, status, text, retry_after, allow);
}

static enum MHD_Result send_error(struct th_http_req *req, unsigned status, const char *msg)
{
    return send_json(req, status, json_pack("{s:s}", "error", msg), 0, NULL);
}

static bool authorized(struct th_http_req *req)
{
    const struct th_config *cfg = req->srv->cfg;
    if (!th_auth_configured(cfg)) {
        return true; /* only possible on loopback or with --insecure-no-auth */
    }
    struct th_auth_request a = {
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, cfg->api_key_header),
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
    };
    return th_auth_check(cfg, &a);
}

/* JSON, NDJSON or unspecified; anything else (e.g. a form post) is refused. */
static bool content_type_ok(const char *ct)
{
    static const char *const ok[] = {"application/json",        "application/x-ndjson",
                                     "application/ndjson",      "application/jsonl",
                                     "application/x-jsonlines", "text/plain"};
    if (ct == NULL) {
        return true;
    }
    size_t n = strcspn(ct, ";");
    while (n > 0 && ct[n - 1] == ' ') {
        n--;
    }
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        if (strlen(ok[i]) == n && strncasecmp(ct, ok[i], n) == 0) {
            return true;
        }
    }
    return n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0;
}

static bool content_encoding_ok(const char *ce)
{
    return ce == NULL || strcasecmp(ce, "identity") == 0 || strcasecmp(ce, "gzip") == 0 ||
           strcasecmp(ce, "x-gzip") == 0;
}

/* Checks made before the body is read; answers at once on the first failure. */
static enum MHD_Result precheck_post(struct th_http_req *req, bool *stop)
{
    const struct th_config *cfg = req->srv->cfg;
    const char *cl =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    *stop = true;
    if (atomic_load(&req->srv->draining)) {
        return send_json(req, 503, json_pack("{s:s}", "error", "shutting down; retry elsewhere"), 5,
                         NULL);
    }
    if (!authorized(req)) {
        return send_error(req, 401, "missing or wrong credentials");
    }
    if (cl != NULL && strtoull(cl, NULL, 10) > cfg->max_body_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "body larger than %zu bytes", cfg->max_body_bytes);
        return send_error(req, 413, msg);
    }
    if (!content_type_ok(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_TYPE))) {
        return send_error(req, 415,
                          "unsupported Content-Type: send application/json or "
                          "application/x-ndjson");
    }
    if (!content_encoding_ok(MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_ENCODING))) {
        return send_error(req, 415, "unsupported Content-Encoding: send gzip or none");
    }
    *stop = false;
    return MHD_YES;
}

static bool append_body(struct th_http_req *req, const char *data, size_t n)
{
    size_t max = req->srv->cfg->max_body_bytes;
    if (req->len + n > max) {
        return false;
    }
    if (req->len + n > req->cap) {
        size_t cap = req->cap == 0 ? 4096 : req->cap;
        while (cap < req->len + n) {
            cap *= 2;
        }
        req->cap = cap > max ? max : cap;
        req->body = th_xrealloc(req->body, req->cap + 1);
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    return true;
}

/* A body the HTTP thread can answer itself (th_ingest_quick): no hand-over, no wake-ups. */
static bool answer_quickly(struct th_http_req *req)
{
    struct th_server *srv = req->srv;
    pthread_rwlock_rdlock(&srv->rt_lock);
    bool quick = th_ingest_quick(srv->cfg, srv->specs, req->body, req->len, &req->result);
    if (quick) {
        th_server_metrics_ingest(srv, &req->result);
    }
    pthread_rwlock_unlock(&srv->rt_lock);
    return quick;
}

/* The whole body is here: answer it, hand it to a worker, or say we are saturated. */
static enum MHD_Result dispatch(struct th_http_req *req)
{
    struct th_server *srv = req->srv;
    if (answer_quickly(req)) {
        struct th_ingest_result *r = &req->result;
        json_t *body = r->body;
        r->body = NULL;
        if (body == NULL) {
            return send_text(req, r->status, th_ingest_skipped_answer(r->accepted, req->request_id),
                             0, NULL);
        }
        return send_json(req, r->status, body, r->retry_after, NULL);
    }
    /* Suspend before the worker can see the request, so its resume never comes first. */
    MHD_suspend_connection(req->conn);
    req->queued = true;
    if (th_queue_push(srv->queue, req) != TH_OK) {
        req->queued = false;
        req->result.status = 503;
        req->result.retry_after = 1;
        req->result.body = json_pack("{s:s}", "error", "too many requests in progress; retry");
        atomic_store(&req->done, true);
        MHD_resume_connection(req->conn);
    }
    return MHD_YES;
}

static enum MHD_Result handle_post(struct th_http_req *req, const char *data, size_t *size)
{
    if (*size > 0) {
        /* Past the limit the rest is read and dropped, and 413 answered at the end. */
        if (!req->too_big && !append_body(req, data, *size)) {
            req->too_big = true;
        }
        *size = 0;
        return MHD_YES;
    }
    if (req->too_big) {
        char msg[96];
        snprintf(msg, sizeof(msg), "body larger than %zu bytes", req->srv->cfg->max_body_bytes);
        return send_error(req, 413, msg);
    }
    if (atomic_load(&req->done)) {
        struct th_ingest_result *r = &req->result;
        json_t *body = r->body;
        r->body = NULL;
        return send_json(req, r->status, body, r->retry_after, NULL);
    }
    return dispatch(req);
}

static enum MHD_Result handle_readyz(struct th_http_req *req)
{
    struct th_server *srv = req->srv;
    json_t *reasons = json_array();
    size_t depth = th_queue_depth(srv->queue);
    size_t cap = th_queue_capacity(srv->queue);

    if (atomic_load(&srv->draining)) {
        json_array_append_new(reasons, json_string("shutting down"));
    }
    if (!atomic_load(&srv->status.store_writable)) {
        json_array_append_new(reasons, json_string("the store is not writable"));
    }
    if (depth * 10 >= cap * 9) {
        json_array_append_new(reasons, json_string("the evaluation queue is nearly full"));
    }
    bool ready = json_array_size(reasons) == 0;
    return send_json(req, ready ? 200 : 503,
                     json_pack("{s:b, s:o, s:I, s:I}", "ready", ready, "reasons", reasons,
                               "queue_depth", (json_int_t)depth, "queue_capacity", (json_int_t)cap),
                     ready ? 0 : 5, NULL);
}

static size_t alerts_limit(struct MHD_Connection *c)
{
    const char *s = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
    if (s == NULL) {
        return ALERTS_DEFAULT_LIMIT;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 1) {
        return 0;
    }
    return v > ALERTS_MAX_LIMIT ? ALERTS_MAX_LIMIT : (size_t)v;
}

static enum MHD_Result handle_alerts(struct th_http_req *req)
{
    struct th_server *srv = req->srv;
    json_t *list = NULL;
    size_t limit = alerts_limit(req->conn);
    if (!authorized(req)) {
        return send_error(req, 401, "missing or wrong credentials");
    }
    if (limit == 0) {
        return send_error(req, 400, "limit must be a positive integer");
    }
    pthread_mutex_lock(&srv->read_lock);
    enum th_err rc = th_store_alerts_recent(srv->read_store, limit, &list);
    pthread_mutex_unlock(&srv->read_lock);
    if (rc != TH_OK) {
        return send_json(req, 503, json_pack("{s:s}", "error", "the store cannot be read now"), 5,
                         NULL);
    }
    return send_json(req, 200, json_pack("{s:o}", "alerts", list), 0, NULL);
}

/* Which listener serves a route: ingest on `listen`; metrics and alerts on `admin_listen` when
 * there is one (else on `listen` too); health on both, for load balancers and orchestrators. */
enum serves {
    ON_INGEST = 1,
    ON_ADMIN = 2,
    ON_BOTH = 3,
};

struct route {
    const char *path;
    const char *allow;
    bool post; /* POST ingest; otherwise GET/HEAD */
    enum MHD_Result (*get)(struct th_http_req *req);
    enum serves serves;
};

static enum MHD_Result handle_healthz(struct th_http_req *req)
{
    return send_json(req, 200, json_pack("{s:s}", "status", "ok"), 0, NULL);
}

static enum MHD_Result handle_metrics(struct th_http_req *req)
{
    size_t len = 0;
    char *text = th_metrics_render(req->srv->metrics, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", TH_METRICS_CONTENT_TYPE);
    enum MHD_Result rc = MHD_queue_response(req->conn, 200, resp);
    MHD_destroy_response(resp);
    req->answered = true;
    req->status = 200;
    return rc;
}

/* POST /-/reload: the main thread reloads (as on SIGHUP); the result shows in the log and in
 * trailhook_config_last_reload_successful. */
static enum MHD_Result handle_reload(struct th_http_req *req)
{
    if (!authorized(req)) {
        return send_error(req, 401, "missing or wrong credentials");
    }
    kill(getpid(), SIGHUP);
    return send_json(req, 202, json_pack("{s:s}", "reload", "requested"), 0, NULL);
}

static const struct route routes[] = {
    {"/events", "POST", true, NULL, ON_INGEST},
    {"/", "POST", true, NULL, ON_INGEST},
    {"/healthz", "GET, HEAD", false, handle_healthz, ON_BOTH},
    {"/readyz", "GET, HEAD", false, handle_readyz, ON_BOTH},
    {"/alerts", "GET, HEAD", false, handle_alerts, ON_ADMIN},
    {"/metrics", "GET, HEAD", false, handle_metrics, ON_ADMIN},
    {"/-/reload", "POST", true, handle_reload, ON_ADMIN},
};

static const struct route *find_route(const struct th_listener *l, const char *url)
{
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(url, routes[i].path) == 0 && (routes[i].serves & l->serves) != 0) {
            return &routes[i];
        }
    }
    return NULL;
}

static struct th_http_req *new_req(struct th_listener *l, struct MHD_Connection *c)
{
    struct th_server *srv = l->srv;
    struct th_http_req *req = th_xcalloc(1, sizeof(*req));
    req->listener = l;
    req->started_us = th_clock_mono_us();
    req->srv = srv;
    req->conn = c;
    snprintf(req->request_id, sizeof(req->request_id), "%s%012llx", srv->request_prefix,
             (unsigned long long)atomic_fetch_add(&srv->request_seq, 1));
    return req;
}

/* The first callback of a request: route it and make the checks that need no body. */
static enum MHD_Result first_call(struct th_http_req *req, const char *url, const char *method)
{
    const struct route *r = find_route(req->listener, url);
    req->route = r;
    bool is_post = strcmp(method, "POST") == 0;
    bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    bool stop = false;

    if (r == NULL) {
        return send_error(req, 404, "no such endpoint");
    }
    if ((r->post && !is_post) || (!r->post && !is_get)) {
        char msg[64];
        snprintf(msg, sizeof(msg), "method %s not allowed here", method);
        return send_json(req, 405, json_pack("{s:s}", "error", msg), 0, r->allow);
    }
    if (!r->post || r->get != NULL) {
        return r->get(req); /* GET handlers, and POSTs that read no body */
    }
    return precheck_post(req, &stop);
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *c, const char *url,
                                      const char *method, const char *data, size_t *size,
                                      void **con_cls)
{
    struct th_http_req *req = *con_cls;
    if (req == NULL) {
        req = new_req(cls, c); /* cls: the struct th_listener of this daemon */
        *con_cls = req;
        return first_call(req, url, method);
    }
    if (req->answered) {
        *size = 0; /* an early error was queued: the rest of the body is discarded */
        return MHD_YES;
    }
    return handle_post(req, data, size);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    struct th_server *srv = ((struct th_listener *)cls)->srv;
    (void)version;
    /* A reload swaps the configuration between callbacks, never during one. */
    pthread_rwlock_rdlock(&srv->rt_lock);
    enum MHD_Result rc = handle_request(cls, c, url, method, data, size, con_cls);
    pthread_rwlock_unlock(&srv->rt_lock);
    return rc;
}

static enum th_handler handler_of(const struct route *r)
{
    static const struct {
        const char *path;
        enum th_handler handler;
    } map[] = {{"/events", TH_HANDLER_EVENTS},   {"/", TH_HANDLER_EVENTS},
               {"/healthz", TH_HANDLER_HEALTHZ}, {"/readyz", TH_HANDLER_READYZ},
               {"/alerts", TH_HANDLER_ALERTS},   {"/metrics", TH_HANDLER_METRICS}};
    for (size_t i = 0; r != NULL && i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(r->path, map[i].path) == 0) {
            return map[i].handler;
        }
    }
    return TH_HANDLER_OTHER;
}

/* Counts the request once it is over, whatever path it took. */
static void account(struct th_http_req *req)
{
    enum th_handler h = handler_of(req->route);
    double seconds = (double)(th_clock_mono_us() - req->started_us) / 1e6;
    if (req->status == 0) {
        return; /* the client went away before an answer */
    }
    th_server_metrics_request(req->srv, h, req->status, seconds);
    if (h == TH_HANDLER_EVENTS && req->status != 202) {
        th_server_metrics_rejected(req->srv, req->status, req->result.rules != NULL);
    }
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct th_http_req *req = *con_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (req == NULL) {
        return;
    }
    account(req);
    free(req->result.rules);
    json_decref(req->result.body);
    free(req->body);
    free(req);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) {
        msg[--n] = '\0'; /* libmicrohttpd ends its messages with a newline */
    }
    th_log(TH_LOG_WARN, "http", "libmicrohttpd: %s", msg);
}

void th_http_resume(struct th_http_req *req)
{
    atomic_store(&req->done, true);
    MHD_resume_connection(req->conn);
}

static enum th_err resolve(const char *addr, struct sockaddr_storage *sa, char *err, size_t errlen)
{
    char host[256];
    char port[8];
    unsigned p = 0;
    struct addrinfo hints;
    struct addrinfo *res = NULL;

    if (!th_config_split_addr(addr, host, &p)) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT", addr);
        return TH_EINVAL;
    }
    snprintf(port, sizeof(port), "%u", p);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host[0] != '\0' ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "listen address '%s': %s", addr, gai_strerror(rc));
        return TH_EINVAL;
    }
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return TH_OK;
}

/* Reads a PEM file whole for libmicrohttpd (which wants the text in memory). */
static char *read_pem(const char *path, const char *key, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot read %s", key, path);
        return NULL;
    }
    buf = th_xmalloc(65537);
    n = fread(buf, 1, 65536, f);
    fclose(f);
    buf[n] = '\0';
    if (n == 0 || n == 65536 || strstr(buf, "-----BEGIN") == NULL) {
        snprintf(err, errlen, "%s: %s is not a PEM file (or is larger than 64 KiB)", key, path);
        free(buf);
        return NULL;
    }
    return buf;
}

/* TLS on the ingest listener when tls_cert_file and tls_key_file are set (EventBridge API
 * destinations only call HTTPS endpoints). The admin listener stays plain HTTP: it is meant for
 * a private network. */
static bool load_tls(struct th_listener *l, char *err, size_t errlen)
{
    const struct th_config *cfg = l->srv->cfg;
    if (!(l->serves & ON_INGEST) || cfg->tls_cert_file == NULL) {
        return true;
    }
    l->tls_cert = read_pem(cfg->tls_cert_file, "tls_cert_file", err, errlen);
    l->tls_key =
        l->tls_cert != NULL ? read_pem(cfg->tls_key_file, "tls_key_file", err, errlen) : NULL;
    return l->tls_key != NULL;
}

static unsigned http_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus < 1 ? 1 : cpus > 4 ? 4 : (unsigned)cpus;
}

static struct MHD_Daemon *start_daemon(struct th_listener *l, const char *addr, char *err,
                                       size_t errlen)
{
    struct th_server *srv = l->srv;
    struct sockaddr_storage sa;
    struct MHD_OptionItem opts[13];
    size_t n = 0;
    memset(&sa, 0, sizeof(sa));
    if (resolve(addr, &sa, err, errlen) != TH_OK || !load_tls(l, err, errlen)) {
        return NULL;
    }
    /* MHD_USE_ITC: with a thread pool, MHD_quiesce_daemon needs it (drain, TLS reload). */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (sa.ss_family == AF_INET6) {
        flags |= MHD_USE_IPv6;
    }
    /* The logger comes first so that even option errors reach th_log. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, srv};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &sa};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, srv};
    /* Idle and trickling clients (slowloris) are closed after the timeout; until then each costs
     * one descriptor and a memory pool that grows only as its headers arrive, so the limit can be
     * far above the number of real senders. Headers beyond the pool are answered 431. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT,
                                        (intptr_t)srv->cfg->connection_timeout_seconds, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                        (intptr_t)srv->cfg->max_connections, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        (intptr_t)srv->cfg->max_header_bytes, NULL};
    /* Most events are answered on the HTTP threads (th_ingest_quick), so ingest gets one per
     * CPU, up to four: one thread would make a single core the ceiling. */
    if (l->serves & ON_INGEST) {
        opts[n++] =
            (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)http_threads(), NULL};
    }
    /* SO_REUSEPORT on a TLS ingest socket: a certificate reload starts the next daemon on the
     * same address before the current one stops, so the port never refuses a connection. Only
     * there: elsewhere a second trailhook on the same port must fail to start, not share it. */
    if ((l->serves & ON_INGEST) && l->tls_cert != NULL) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, NULL};
    }
    if (l->tls_cert != NULL) {
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, l->tls_cert};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, l->tls_key};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    struct MHD_Daemon *d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, l, MHD_OPTION_ARRAY,
                                            opts, MHD_OPTION_END);
    if (d == NULL) {
        snprintf(err, errlen, "cannot listen on %s (address in use, not permitted%s)", addr,
                 l->tls_cert != NULL ? ", or a certificate and key that do not load" : "");
    }
    return d;
}

enum th_err th_http_start(struct th_server *srv, char *err, size_t errlen)
{
    srv->listener = th_xcalloc(1, sizeof(*srv->listener));
    srv->listener->srv = srv;
    srv->listener->serves = srv->cfg->admin_listen != NULL ? ON_INGEST : ON_BOTH;
    srv->admin_listener.srv = srv;
    srv->admin_listener.serves = ON_ADMIN;
    srv->daemon = start_daemon(srv->listener, srv->cfg->listen, err, errlen);
    if (srv->daemon == NULL) {
        return TH_EIO;
    }
    if (srv->cfg->admin_listen != NULL) {
        srv->admin_daemon = start_daemon(&srv->admin_listener, srv->cfg->admin_listen, err, errlen);
        if (srv->admin_daemon == NULL) {
            th_http_stop(srv);
            return TH_EIO;
        }
    }
    return TH_OK;
}

/* Stops accepting; the listening socket is closed once the daemon is stopped (MHD's rule). */
static void quiesce(struct MHD_Daemon *d, int *fd)
{
    if (d != NULL && *fd < 0) {
        MHD_socket s = MHD_quiesce_daemon(d);
        *fd = s == MHD_INVALID_SOCKET ? -1 : (int)s;
    }
}

void th_http_quiesce(struct th_server *srv)
{
    /* Still accepting: a client that connects now gets its 503 + Retry-After at once instead of
     * waiting in the listen backlog for a reset. The listeners close in th_http_wait_idle. */
    atomic_store(&srv->draining, true);
}

static unsigned connections(struct MHD_Daemon *d)
{
    const union MHD_DaemonInfo *info =
        d != NULL ? MHD_get_daemon_info(d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS) : NULL;
    return info != NULL ? info->num_connections : 0;
}

void th_http_wait_idle(struct th_server *srv, int64_t grace_ms)
{
    int64_t deadline = th_clock_mono_ms() + grace_ms;
    quiesce(srv->daemon, &srv->quiesced_fd);
    quiesce(srv->admin_daemon, &srv->admin_quiesced_fd);
    while (connections(srv->daemon) > 0 && th_clock_mono_ms() < deadline) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
}

static void stop_daemon(struct MHD_Daemon **d, int *fd)
{
    if (*d != NULL) {
        MHD_stop_daemon(*d);
        *d = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void free_listener_tls(struct th_listener *l)
{
    free(l->tls_cert);
    free(l->tls_key);
    l->tls_cert = NULL;
    l->tls_key = NULL;
}

void th_http_stop(struct th_server *srv)
{
    stop_daemon(&srv->daemon, &srv->quiesced_fd);
    stop_daemon(&srv->admin_daemon, &srv->admin_quiesced_fd);
    if (srv->listener != NULL) {
        free_listener_tls(srv->listener);
        free(srv->listener);
        srv->listener = NULL;
    }
    free_listener_tls(&srv->admin_listener);
}

/* Has the certificate or key on disk changed from what @p l serves? */
static bool tls_changed(const struct th_listener *l, const struct th_listener *next)
{
    return strcmp(l->tls_cert, next->tls_cert) != 0 || strcmp(l->tls_key, next->tls_key) != 0;
}

enum th_err th_http_reload_tls(struct th_server *srv)
{
    char err[256] = "";
    struct th_listener *cur = srv->listener;
    struct th_listener *next = NULL;
    struct MHD_Daemon *d = NULL;

    if (cur == NULL || cur->tls_cert == NULL) {
        return TH_OK;
    }
    next = th_xcalloc(1, sizeof(*next));
    *next = (struct th_listener){srv, cur->serves, NULL, NULL};
    if (!load_tls(next, err, sizeof(err)) || !tls_changed(cur, next)) {
        if (err[0] != '\0') {
            th_log(TH_LOG_ERROR, "reload", "%s; keeping the running certificate", err);
        }
        free_listener_tls(next);
        free(next);
        return err[0] != '\0' ? TH_EINVAL : TH_OK;
    }
    /* The next daemon takes new connections; the current one finishes its own, then stops. */
    free_listener_tls(next);
    d = start_daemon(next, srv->cfg->listen, err, sizeof(err));
    if (d == NULL) {
        th_log(TH_LOG_ERROR, "reload", "%s; keeping the running certificate", err);
        free_listener_tls(next);
        free(next);
        return TH_EINVAL;
    }
    struct MHD_Daemon *old = srv->daemon;
    int old_fd = -1;
    quiesce(old, &old_fd);
    pthread_rwlock_wrlock(&srv->rt_lock);
    srv->daemon = d;
    srv->listener = next;
    pthread_rwlock_unlock(&srv->rt_lock);
    int64_t deadline = th_clock_mono_ms() + 5000;
    while (connections(old) > 0 && th_clock_mono_ms() < deadline) {
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    stop_daemon(&old, &old_fd);
    free_listener_tls(cur);
    free(cur);
    th_log(TH_LOG_INFO, "reload", "TLS certificate reloaded");
    return TH_OK;
}
