/* SPDX-License-Identifier: MIT */
/*
 * server.c -- `trailhook serve`: builds the server (store handles, queue, workers, deliverer,
 * listeners), waits for a signal, and stops in order so that nothing acknowledged is lost.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "server_int.h"
#include "trailhook/auth.h"
#include "trailhook/clock.h"
#include "trailhook/cmd.h"
#include "trailhook/hash.h"
#include "trailhook/log.h"
#include "trailhook/mem.h"

#define HTTP_GRACE_MS 5000

/* Requests a worker commits together at most (group commit). */
#define WORKER_GROUP 32

/* What a worker thread starts with: the server and its own store handle (STYLE 17). */
struct worker_arg {
    struct th_server *srv;
    struct th_store *st;
};

/* After the commit: metrics, the deliverer's wake-up, /readyz. Under rt_lock. */
static void account_request(struct th_server *srv, struct th_http_req *req)
{
    th_server_metrics_ingest(srv, &req->result);
    if (req->result.new_alerts) {
        th_deliverer_notify(srv->deliverer);
    }
    /* /readyz says so at once; the housekeeper's probe says when the store writes again. */
    if (req->result.store_failed) {
        atomic_store(&srv->status.store_writable, false);
    }
    th_log(TH_LOG_DEBUG, "ingest", "%s: %u, %zu events (%s), %zu matched", req->request_id,
           req->result.status, req->result.accepted, th_input_form_name(req->result.form),
           req->result.matched);
}

/*
 * Takes every request waiting (up to WORKER_GROUP), evaluates each, and commits them together:
 * under load the requests that queued during one commit share the next one's fsync.
 */
static void *worker_main(void *p)
{
    struct worker_arg *arg = p;
    struct th_server *srv = arg->srv;
    struct th_store *st = arg->st;
    struct th_http_req *reqs[WORKER_GROUP];
    struct th_ingest_job *jobs[WORKER_GROUP];
    free(arg);
    for (;;) {
        size_t n = th_queue_pop_many(srv->queue, (void **)reqs, WORKER_GROUP);
        if (n == 0) {
            return NULL;
        }
        /* The configuration, the specs and the deliverer stay put while the lock is held. */
        pthread_rwlock_rdlock(&srv->rt_lock);
        for (size_t i = 0; i < n; i++) {
            th_log_set_context(reqs[i]->request_id, NULL);
            jobs[i] = th_ingest_prepare(srv->cfg, srv->specs, st, reqs[i]->body, reqs[i]->len,
                                        &reqs[i]->result);
        }
        th_log_set_context(NULL, NULL);
        th_ingest_commit(st, jobs, n);
        for (size_t i = 0; i < n; i++) {
            th_ingest_job_free(jobs[i]);
            account_request(srv, reqs[i]);
        }
        pthread_rwlock_unlock(&srv->rt_lock);
        for (size_t i = 0; i < n; i++) {
            th_http_resume(reqs[i]);
        }
    }
}

static bool is_loopback(const char *addr)
{
    char host[256];
    unsigned port;
    struct in_addr v4;
    if (!th_config_split_addr(addr, host, &port)) {
        return false;
    }
    if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) {
        return true;
    }
    return inet_pton(AF_INET, host, &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127;
}

/* Without credentials the service may only listen where nobody else can reach it. */
static bool auth_policy_ok(const struct th_server *srv)
{
    if (th_auth_configured(srv->cfg) || srv->insecure_no_auth) {
        return true;
    }
    /* The admin listener serves /alerts and /-/reload: it needs credentials as much. */
    const char *open_addr = NULL;
    if (!is_loopback(srv->cfg->listen)) {
        open_addr = srv->cfg->listen;
    } else if (srv->cfg->admin_listen != NULL && !is_loopback(srv->cfg->admin_listen)) {
        open_addr = srv->cfg->admin_listen;
    }
    if (open_addr == NULL) {
        return true;
    }
    fprintf(stderr,
            "trailhook: refusing to listen on %s without credentials: set api_keys or "
            "basic_auth (TRAILHOOK_API_KEYS), listen on 127.0.0.1, or pass --insecure-no-auth\n",
            open_addr);
    return false;
}

static enum th_err open_stores(struct th_server *srv, char *err, size_t errlen)
{
    const struct th_config *cfg = srv->cfg;
    enum th_err rc = th_store_open_config(cfg, TH_STORE_READWRITE, &srv->read_store, err, errlen);
    for (size_t i = 0; rc == TH_OK && i < srv->nworkers; i++) {
        rc = th_store_open_config(cfg, TH_STORE_READWRITE, &srv->worker_stores[i], err, errlen);
    }
    if (rc == TH_OK) {
        atomic_store(&srv->status.store_writable,
                     th_store_check_writable(srv->read_store) == TH_OK);
    }
    return rc;
}

static enum th_err start_workers(struct th_server *srv)
{
    for (size_t i = 0; i < srv->nworkers; i++) {
        struct worker_arg *arg = th_xmalloc(sizeof(*arg));
        arg->srv = srv;
        arg->st = srv->worker_stores[i];
        if (pthread_create(&srv->workers[i], NULL, worker_main, arg) != 0) {
            free(arg);
            srv->nworkers = i;
            return TH_ENOMEM;
        }
    }
    return TH_OK;
}

static void init_server(struct th_server *srv, const struct th_config *cfg,
                        const struct th_spec_set *specs, const struct th_cmd_overrides *ov,
                        bool insecure_no_auth)
{
    unsigned char rnd[6] = {0};
    memset(srv, 0, sizeof(*srv));
    pthread_rwlock_init(&srv->rt_lock, NULL);
    srv->overrides = ov;
    srv->cfg = cfg;
    srv->specs = specs;
    srv->insecure_no_auth = insecure_no_auth;
    srv->nworkers = (size_t)cfg->workers;
    srv->workers = th_xcalloc(srv->nworkers, sizeof(*srv->workers));
    srv->worker_stores = th_xcalloc(srv->nworkers, sizeof(*srv->worker_stores));
    srv->queue = th_queue_new(cfg->queue_capacity);
    srv->metrics = th_metrics_new();
    srv->quiesced_fd = -1;
    srv->admin_quiesced_fd = -1;
    pthread_mutex_init(&srv->read_lock, NULL);
    th_rand_bytes(rnd, sizeof(rnd));
    th_hex(rnd, sizeof(rnd), srv->request_prefix);
}

/* Stops in dependency order: listeners quiet, queue drained, workers joined, deliveries ended. */
static void stop_server(struct th_server *srv)
{
    th_http_quiesce(srv);
    th_queue_close(srv->queue);
    for (size_t i = 0; i < srv->nworkers; i++) {
        pthread_join(srv->workers[i], NULL);
    }
    /* Every queued request has its answer; let the answers leave before closing. */
    th_http_wait_idle(srv, HTTP_GRACE_MS);
    th_http_stop(srv);
    th_deliverer_stop(srv->deliverer, srv->cfg->drain_grace_seconds * 1000);
}

static void free_server(struct th_server *srv)
{
    th_deliverer_free(srv->deliverer);
    for (size_t i = 0; i < srv->nworkers; i++) {
        th_store_free(srv->worker_stores[i]);
    }
    th_store_free(srv->read_store);
    th_queue_free(srv->queue);
    th_server_metrics_cleanup(srv);
    th_metrics_free(srv->metrics);
    pthread_mutex_destroy(&srv->read_lock);
    pthread_rwlock_destroy(&srv->rt_lock);
    if (srv->owned_cfg != NULL) {
        th_config_cleanup(srv->owned_cfg);
        free(srv->owned_cfg);
    }
    if (srv->owned_specs != NULL) {
        th_spec_set_cleanup(srv->owned_specs);
        free(srv->owned_specs);
    }
    free(srv->workers);
    free(srv->worker_stores);
}

/* Signals are taken synchronously by the main thread; every other thread blocks them. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* A second SIGTERM/SIGINT during the drain ends the process at once; SQLite keeps what it
 * committed, and the outbox resends what was not delivered. */
static void *second_signal(void *arg)
{
    sigset_t *set = arg;
    int sig = 0;
    for (;;) {
        sigwait(set, &sig);
        if (sig != SIGHUP) {
            th_log(TH_LOG_WARN, "server", "second signal %d: exiting now", sig);
            _exit(1);
        }
    }
}

static int wait_for_stop(struct th_server *srv, sigset_t *set)
{
    int sig = 0;
    for (;;) {
        sigwait(set, &sig);
        if (sig == SIGHUP) {
            th_log(TH_LOG_INFO, "server", "SIGHUP: reloading the configuration");
            th_server_reload(srv);
            continue;
        }
        return sig;
    }
}

/*
 * Every open connection holds a descriptor. Many systems start processes with a soft limit of
 * 1024, which a thousand idle clients would exhaust; raise it towards the hard limit so that
 * max_connections, not EMFILE, decides when connections are refused.
 */
static void raise_descriptor_limit(const struct th_config *cfg)
{
    struct rlimit rl;
    rlim_t listeners = cfg->admin_listen != NULL ? 2 : 1;
    rlim_t want = (rlim_t)cfg->max_connections * listeners + 256;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur < want) {
        th_log(TH_LOG_WARN, "server",
               "the descriptor limit (%llu) is below max_connections; connections beyond about "
               "%llu will be refused",
               (unsigned long long)rl.rlim_cur,
               (unsigned long long)(rl.rlim_cur > 256 ? (rl.rlim_cur - 256) / listeners : 0));
    }
}

static int run(struct th_server *srv, sigset_t *set)
{
    char err[512] = "";
    if (open_stores(srv, err, sizeof(err)) != TH_OK ||
        th_deliverer_new(srv->cfg, &srv->status, srv->metrics, &srv->deliverer, err, sizeof(err)) !=
            TH_OK) {
        fprintf(stderr, "trailhook: %s\n", err);
        return TH_EXIT_USAGE;
    }
    th_server_metrics_init(srv);
    raise_descriptor_limit(srv->cfg);
    if (start_workers(srv) != TH_OK || th_deliverer_start(srv->deliverer) != TH_OK ||
        th_http_start(srv, err, sizeof(err)) != TH_OK) {
        fprintf(stderr, "trailhook: %s\n", err[0] != '\0' ? err : "cannot start threads");
        stop_server(srv);
        return TH_EXIT_USAGE;
    }
    th_log(TH_LOG_INFO, "server",
           "trailhook %s listening on %s://%s%s%s (%zu rules, %d workers, state %s)", TH_VERSION,
           srv->cfg->tls_cert_file != NULL ? "https" : "http", srv->cfg->listen,
           srv->cfg->admin_listen != NULL ? ", admin on http://" : "",
           srv->cfg->admin_listen != NULL ? srv->cfg->admin_listen : "", srv->specs->nspecs,
           srv->cfg->workers,
           strcmp(srv->cfg->state_backend, "redis") == 0 ? "in redis" : srv->cfg->state_dir);
    int sig = wait_for_stop(srv, set);
    th_log(TH_LOG_INFO, "server", "signal %d: draining", sig);
    pthread_t t;
    pthread_create(&t, NULL, second_signal, set);
    pthread_detach(t);
    stop_server(srv);
    th_log(TH_LOG_INFO, "server", "stopped");
    return TH_EXIT_OK;
}

int th_cmd_serve(const struct th_config *cfg, const struct th_spec_set *specs,
                 const struct th_cmd_overrides *ov, bool insecure_no_auth)
{
    static sigset_t set;
    struct th_server srv;

    init_server(&srv, cfg, specs, ov, insecure_no_auth);
    int status = TH_EXIT_USAGE;
    if (auth_policy_ok(&srv)) {
        block_signals(&set);
        status = run(&srv, &set);
    }
    free_server(&srv);
    return status;
}
