/* SPDX-License-Identifier: MIT */
/*
 * test_httpc.c -- the outbound client against a real loopback server, the Retry-After parser,
 * and how answers become delivered / retry / dead.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "trailhook/clock.h"
#include "trailhook/dest.h"
#include "trailhook/httpc.h"

/* A one-shot HTTP server: accepts one connection, reads the request, sends @p answer. */
struct server {
    int fd;
    unsigned port;
    const char *answer;
    int delay_ms;
    char request[4096];
    pthread_t thread;
};

static void *serve_once(void *arg)
{
    struct server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    size_t n = 0;
    if (c < 0) {
        return NULL;
    }
    /* Read until the body (Content-Length after the blank line) is in; small requests only. */
    for (int i = 0; i < 50 && n < sizeof(s->request) - 1; i++) {
        ssize_t r = recv(c, s->request + n, sizeof(s->request) - 1 - n, 0);
        if (r <= 0) {
            break;
        }
        n += (size_t)r;
        s->request[n] = '\0';
        const char *body = strstr(s->request, "\r\n\r\n");
        const char *cl = strstr(s->request, "Content-Length: ");
        if (body != NULL && cl != NULL && strlen(body + 4) >= (size_t)atoi(cl + 16)) {
            break;
        }
    }
    if (s->delay_ms > 0) {
        nanosleep(&(struct timespec){s->delay_ms / 1000, (s->delay_ms % 1000) * 1000000L}, NULL);
    }
    send(c, s->answer, strlen(s->answer), MSG_NOSIGNAL);
    close(c);
    return NULL;
}

static void start(struct server *s, const char *answer, int delay_ms)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    memset(s, 0, sizeof(*s));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->fd, 4), 0);
    getsockname(s->fd, (struct sockaddr *)&a, &len);
    s->port = ntohs(a.sin_port);
    s->answer = answer;
    s->delay_ms = delay_ms;
    pthread_create(&s->thread, NULL, serve_once, s);
}

static void finish(struct server *s)
{
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static enum th_err post(struct server *s, long timeout_ms, struct th_httpc_response *resp)
{
    char url[64];
    const char *headers[] = {"Content-Type: application/json", "X-Test: yes"};
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/hook", s->port);
    struct th_httpc_request req = {url, "{\"a\":1}", 7, headers, 2, 1000, timeout_ms};
    struct th_httpc *c = th_httpc_new(NULL, NULL);
    enum th_err rc = th_httpc_post(c, &req, resp);
    th_httpc_free(c);
    return rc;
}

static void posts_and_reads_the_answer(void **state)
{
    struct server s;
    struct th_httpc_response resp;
    struct th_dest_result res;
    (void)state;
    start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", 0);
    assert_int_equal(post(&s, 2000, &resp), TH_OK);
    finish(&s);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body, "ok");
    assert_non_null(strstr(s.request, "POST /hook HTTP/1.1"));
    assert_non_null(strstr(s.request, "X-Test: yes"));
    assert_non_null(strstr(s.request, "{\"a\":1}"));
    th_dest_classify(TH_OK, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_DELIVERED);
}

static void rate_limited_answer_is_retried_after_its_delay(void **state)
{
    struct server s;
    struct th_httpc_response resp;
    struct th_dest_result res;
    (void)state;
    start(&s,
          "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 12\r\n"
          "Connection: close\r\n\r\nrate_limited",
          0);
    assert_int_equal(post(&s, 2000, &resp), TH_OK);
    finish(&s);
    assert_string_equal(resp.retry_after, "7");
    th_dest_classify(TH_OK, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_RETRY);
    assert_int_equal(res.reason, TH_DEST_REASON_RATELIMITED);
    assert_int_equal(res.retry_after_ms, 7000);
}

static void client_errors_are_dead_letters_with_status_and_body(void **state)
{
    struct server s;
    struct th_httpc_response resp;
    struct th_dest_result res;
    (void)state;
    start(&s,
          "HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\nConnection: close\r\n\r\n"
          "invalid_payload",
          0);
    assert_int_equal(post(&s, 2000, &resp), TH_OK);
    finish(&s);
    th_dest_classify(TH_OK, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_DEAD);
    assert_int_equal(res.reason, TH_DEST_REASON_CLIENT);
    assert_non_null(strstr(res.detail, "400"));
    assert_non_null(strstr(res.detail, "invalid_payload"));
}

static void server_errors_and_timeouts_are_retried(void **state)
{
    struct server s;
    struct th_httpc_response resp;
    struct th_dest_result res;
    (void)state;
    start(&s, "HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 0);
    assert_int_equal(post(&s, 2000, &resp), TH_OK);
    finish(&s);
    th_dest_classify(TH_OK, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_RETRY);
    assert_int_equal(res.reason, TH_DEST_REASON_SERVER);
    /* A receiver that hangs past the timeout. */
    start(&s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 1500);
    int64_t t0 = th_clock_mono_ms();
    enum th_err rc = post(&s, 300, &resp);
    assert_true(th_clock_mono_ms() - t0 < 1200);
    finish(&s);
    assert_int_equal(rc, TH_ETIMEOUT);
    th_dest_classify(rc, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_RETRY);
    assert_int_equal(res.reason, TH_DEST_REASON_TIMEOUT);
}

static void refused_connection_is_a_network_error(void **state)
{
    struct server s;
    struct th_httpc_response resp;
    struct th_dest_result res;
    (void)state;
    start(&s, "", 0);
    unsigned port = s.port;
    /* Close the listener without serving: the port now refuses. */
    shutdown(s.fd, SHUT_RDWR);
    finish(&s);
    s.port = port;
    enum th_err rc = post(&s, 1000, &resp);
    assert_int_equal(rc, TH_ETEMP);
    th_dest_classify(rc, &resp, th_clock_now_ms(), &res);
    assert_int_equal(res.outcome, TH_DEST_RETRY);
    assert_int_equal(res.reason, TH_DEST_REASON_NETWORK);
}

static void retry_after_seconds_and_dates(void **state)
{
    int64_t now = 0;
    int64_t d = -1;
    (void)state;
    assert_true(th_clock_parse_iso8601("2015-10-21T07:28:00Z", 20, &now));
    assert_true(th_httpc_retry_after("120", now, &d));
    assert_int_equal(d, 120000);
    assert_true(th_httpc_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now, &d));
    assert_int_equal(d, 30000);
    assert_true(th_httpc_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", now, &d));
    assert_int_equal(d, 60000);
    assert_true(th_httpc_retry_after("Wed Oct 21 07:28:05 2015", now, &d));
    assert_int_equal(d, 5000);
    /* A date in the past asks for no wait; a huge number is capped at a day. */
    assert_true(th_httpc_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now, &d));
    assert_int_equal(d, 0);
    assert_true(th_httpc_retry_after("99999999999999999999", now, &d));
    assert_int_equal(d, 24LL * 3600 * 1000);
    assert_false(th_httpc_retry_after("", now, &d));
    assert_false(th_httpc_retry_after("-5", now, &d));
    assert_false(th_httpc_retry_after("soon", now, &d));
    assert_false(th_httpc_retry_after("Wed, 21 Foo 2015 07:28:30 GMT", now, &d));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(posts_and_reads_the_answer),
        cmocka_unit_test(rate_limited_answer_is_retried_after_its_delay),
        cmocka_unit_test(client_errors_are_dead_letters_with_status_and_body),
        cmocka_unit_test(server_errors_and_timeouts_are_retried),
        cmocka_unit_test(refused_connection_is_a_network_error),
        cmocka_unit_test(retry_after_seconds_and_dates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
