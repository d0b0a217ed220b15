/* SPDX-License-Identifier: MIT */
/*
 * queue.h -- a bounded multi-producer multi-consumer queue of pointers between the HTTP thread
 * and the evaluation workers. Full means "answer 503", never "block the HTTP thread".
 * Threads: every function may be called from any thread.
 */
#ifndef TRAILHOOK_QUEUE_H
#define TRAILHOOK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "trailhook/err.h"

struct th_queue;

/** @return new queue holding at most @p capacity items; free with th_queue_free(). */
struct th_queue *th_queue_new(size_t capacity);

/** Frees the queue (items still in it are not touched); NULL is fine. */
void th_queue_free(struct th_queue *q);

/** Adds @p item without blocking. @return TH_OK, TH_EFULL, or TH_EINVAL once closed. */
enum th_err th_queue_push(struct th_queue *q, void *item);

/**
 * Takes the oldest item, waiting while the queue is empty and open.
 * @return the item, or NULL once the queue is closed and empty.
 */
void *th_queue_pop(struct th_queue *q);

/**
 * Takes up to @p max of the oldest items into @p items, waiting while the queue is empty and
 * open: what is waiting when a worker comes back is handled together (group commit).
 * @return how many, 0 once the queue is closed and empty.
 */
size_t th_queue_pop_many(struct th_queue *q, void **items, size_t max);

/** Refuses further pushes and wakes waiters; items already queued are still popped. */
void th_queue_close(struct th_queue *q);

/** Items waiting now. */
size_t th_queue_depth(const struct th_queue *q);

/** The capacity given at creation. */
size_t th_queue_capacity(const struct th_queue *q);

#endif
