/* SPDX-License-Identifier: MIT */
/*
 * fuzz_redis_url.c -- the state.redis_url parser on arbitrary strings. A failure leaves nothing
 * allocated and says why; a success has a host, a port in 1..65535 and a database >= 0, and
 * parses to the same result when written back out. The password never shows: a URL that parsed
 * fails with its port made 0, and its error is the one the same URL gives with another password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store_redis_int.h"
#include "fuzz.h"

#define MAX_URL 512

static const char scheme[] = "redis://";
static const char other_userinfo[] = "redis://someone:other-pw@";

static void check(bool ok)
{
    if (!ok) {
        abort();
    }
}

/* Appends @p len bytes of @p s to @p buf (of @p cap bytes, @p *n used), NUL-terminated. */
static void put(char *buf, size_t cap, size_t *n, const char *s, size_t len)
{
    check(*n + len < cap);
    memcpy(buf + *n, s, len);
    *n += len;
    buf[*n] = '\0';
}

/* Appends every byte of @p s percent-encoded. */
static void put_escaped(char *buf, size_t cap, size_t *n, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[4];
        snprintf(esc, sizeof(esc), "%%%02X", *p);
        put(buf, cap, n, esc, 3);
    }
}

static bool same(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Writes @p u back out as a URL and checks it parses to the same thing. */
static void check_round_trip(const struct th_redis_url *u)
{
    char url[4 * MAX_URL];
    char err[512] = "";
    char num[32];
    size_t n = 0;
    struct th_redis_url again;
    bool bracket = u->host[0] == '[' || strchr(u->host, ':') != NULL;

    put(url, sizeof(url), &n, scheme, strlen(scheme));
    if (u->password != NULL) {
        if (u->user != NULL) {
            put_escaped(url, sizeof(url), &n, u->user);
        }
        put(url, sizeof(url), &n, ":", 1);
        put_escaped(url, sizeof(url), &n, u->password);
        put(url, sizeof(url), &n, "@", 1);
    }
    put(url, sizeof(url), &n, "[", bracket ? 1 : 0);
    put(url, sizeof(url), &n, u->host, strlen(u->host));
    put(url, sizeof(url), &n, "]", bracket ? 1 : 0);
    snprintf(num, sizeof(num), ":%d/%d", u->port, u->db);
    put(url, sizeof(url), &n, num, strlen(num));
    check(th_redis_parse_url(url, &again, err, sizeof(err)) == TH_OK);
    check(strcmp(again.host, u->host) == 0 && again.port == u->port && again.db == u->db);
    check(same(again.user, u->user) && same(again.password, u->password));
    th_redis_url_free(&again);
}

/* @p url parsed to @p u, with a password: with the port made 0 it must fail, and the error must
 * be the one the same URL gives with another user and password. */
static void check_password_hidden(const char *url, const struct th_redis_url *u)
{
    const char *p = url + strlen(scheme);
    size_t auth_len = strcspn(p, "/");
    const char *at = NULL;
    const char *host = NULL;
    const char *host_end = NULL;
    char bad[2 * MAX_URL];
    char other[2 * MAX_URL];
    char err[512] = "";
    char other_err[512] = "";
    size_t n = 0;
    struct th_redis_url v;

    for (const char *q = p; q < p + auth_len; q++) {
        at = *q == '@' ? q : at;
    }
    check(at != NULL); /* a password comes before an @ */
    host = at + 1;
    if (host[0] == '[') {
        host_end = memchr(host, ']', (size_t)(p + auth_len - host));
        check(host_end != NULL);
        host_end++;
    } else {
        host_end = memchr(host, ':', (size_t)(p + auth_len - host));
        host_end = host_end == NULL ? p + auth_len : host_end;
    }
    /* The same URL, its port 0: redis://userinfo@host:0/db */
    put(bad, sizeof(bad), &n, url, (size_t)(host_end - url));
    put(bad, sizeof(bad), &n, ":0", 2);
    put(bad, sizeof(bad), &n, p + auth_len, strlen(p + auth_len));
    /* And with another user and password. */
    n = 0;
    put(other, sizeof(other), &n, other_userinfo, strlen(other_userinfo));
    put(other, sizeof(other), &n, host, (size_t)(host_end - host));
    put(other, sizeof(other), &n, ":0", 2);
    put(other, sizeof(other), &n, p + auth_len, strlen(p + auth_len));

    check(th_redis_parse_url(bad, &v, err, sizeof(err)) == TH_EINVAL);
    check(v.host == NULL && v.user == NULL && v.password == NULL);
    check(strstr(err, "port") != NULL);
    check(th_redis_parse_url(other, &v, other_err, sizeof(other_err)) == TH_EINVAL);
    /* The error does not depend on the userinfo, so it cannot show the password... */
    check(strcmp(err, other_err) == 0);
    /* ...which appears in it only when it is a word of the message anyway (say "port"). */
    check(u->password[0] == '\0' || strstr(err, u->password) == NULL ||
          strstr(other_err, u->password) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char url[MAX_URL + 1];
    char err[512] = "";
    size_t n = size < MAX_URL ? size : MAX_URL;
    struct th_redis_url u;
    enum th_err rc;

    memcpy(url, data, n);
    url[n] = '\0';
    memset(&u, 0x5a, sizeof(u));
    rc = th_redis_parse_url(url, &u, err, sizeof(err));
    if (rc != TH_OK) {
        /* Nothing to free, and one reason given; rediss:// alone is unsupported. */
        check(u.host == NULL && u.user == NULL && u.password == NULL);
        check(err[0] != '\0');
        check(rc == (strncmp(url, "rediss://", 9) == 0 ? TH_EUNSUPPORTED : TH_EINVAL));
        return 0;
    }
    check(strncmp(url, scheme, strlen(scheme)) == 0 && strpbrk(url, "?#") == NULL);
    check(err[0] == '\0');
    check(u.host != NULL && u.host[0] != '\0' && strpbrk(u.host, "/@") == NULL);
    check(u.port >= 1 && u.port <= 65535);
    check(u.db >= 0);
    check(u.user == NULL || (u.user[0] != '\0' && u.password != NULL));
    check_round_trip(&u);
    if (u.password != NULL) {
        check_password_hidden(url, &u);
    }
    th_redis_url_free(&u);
    check(u.host == NULL && u.user == NULL && u.password == NULL);
    return 0;
}
