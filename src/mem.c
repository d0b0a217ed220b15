/* SPDX-License-Identifier: MIT */
/* mem.c -- allocation that aborts on failure: a half-handled OOM is worse than a restart. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "trailhook/mem.h"

static void oom(size_t n)
{
    fprintf(stderr, "trailhook: out of memory allocating %zu bytes\n", n);
    abort();
}

void *th_xmalloc(size_t n)
{
    void *p = malloc(n == 0 ? 1 : n);
    if (p == NULL) {
        oom(n);
    }
    return p;
}

void *th_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
    if (p == NULL) {
        oom(count * size);
    }
    return p;
}

void *th_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n == 0 ? 1 : n);
    if (q == NULL) {
        oom(n);
    }
    return q;
}

char *th_xstrdup(const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    return th_xstrndup(s, strlen(s));
}

char *th_xstrndup(const char *s, size_t n)
{
    char *p = th_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *th_xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        oom(0);
    }
    char *p = th_xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
