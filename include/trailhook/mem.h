/* SPDX-License-Identifier: MIT */
/* mem.h -- allocation wrappers that abort on OOM (the outbox replays after a restart). */
#ifndef TRAILHOOK_MEM_H
#define TRAILHOOK_MEM_H

#include <stddef.h>

/** malloc that logs and aborts on failure. @return new memory, free with free(). */
void *th_xmalloc(size_t n);
/** calloc that logs and aborts on failure. */
void *th_xcalloc(size_t count, size_t size);
/** realloc that logs and aborts on failure. */
void *th_xrealloc(void *p, size_t n);
/** strdup that aborts on failure; NULL in gives NULL out. */
char *th_xstrdup(const char *s);
/** Copies @p n bytes and NUL-terminates. @return new string, free with free(). */
char *th_xstrndup(const char *s, size_t n);
/** asprintf that aborts on failure. @return new string, free with free(). */
char *th_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
