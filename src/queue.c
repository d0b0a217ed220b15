/* SPDX-License-Identifier: MIT */
/* queue.c -- bounded ring buffer of pointers under a mutex and a condition variable. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "trailhook/mem.h"
#include "trailhook/queue.h"

struct th_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    void **ring;
    size_t capacity;
    size_t head;
    _Atomic size_t count; /* read without the lock by metrics and /readyz */
    bool closed;
};

struct th_queue *th_queue_new(size_t capacity)
{
    struct th_queue *q = th_xcalloc(1, sizeof(*q));
    q->ring = th_xcalloc(capacity, sizeof(*q->ring));
    q->capacity = capacity;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    return q;
}

void th_queue_free(struct th_queue *q)
{
    if (q == NULL) {
        return;
    }
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    free(q->ring);
    free(q);
}

enum th_err th_queue_push(struct th_queue *q, void *item)
{
    enum th_err rc = TH_OK;
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        rc = TH_EINVAL;
    } else if (q->count == q->capacity) {
        rc = TH_EFULL;
    } else {
        q->ring[(q->head + q->count) % q->capacity] = item;
        q->count++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

size_t th_queue_pop_many(struct th_queue *q, void **items, size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&q->lock);
    while (q->count == 0 && !q->closed) {
        pthread_cond_wait(&q->not_empty, &q->lock);
    }
    while (q->count > 0 && n < max) {
        items[n++] = q->ring[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

void *th_queue_pop(struct th_queue *q)
{
    void *item = NULL;
    return th_queue_pop_many(q, &item, 1) == 1 ? item : NULL;
}

void th_queue_close(struct th_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

size_t th_queue_depth(const struct th_queue *q)
{
    return atomic_load(&q->count);
}

size_t th_queue_capacity(const struct th_queue *q)
{
    return q->capacity;
}
