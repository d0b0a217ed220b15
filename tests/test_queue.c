/* SPDX-License-Identifier: MIT */
/* test_queue.c -- the bounded queue between the HTTP thread and the workers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "trailhook/queue.h"

static void full_queue_refuses_instead_of_blocking(void **state)
{
    struct th_queue *q = th_queue_new(2);
    int a, b, c;
    (void)state;
    assert_int_equal(th_queue_push(q, &a), TH_OK);
    assert_int_equal(th_queue_push(q, &b), TH_OK);
    assert_int_equal(th_queue_push(q, &c), TH_EFULL);
    assert_int_equal(th_queue_depth(q), 2);
    assert_ptr_equal(th_queue_pop(q), &a);
    assert_int_equal(th_queue_push(q, &c), TH_OK);
    assert_ptr_equal(th_queue_pop(q), &b);
    assert_ptr_equal(th_queue_pop(q), &c);
    assert_int_equal(th_queue_depth(q), 0);
    th_queue_free(q);
}

static void close_drains_then_ends(void **state)
{
    struct th_queue *q = th_queue_new(4);
    int a;
    (void)state;
    th_queue_push(q, &a);
    th_queue_close(q);
    assert_int_equal(th_queue_push(q, &a), TH_EINVAL);
    assert_ptr_equal(th_queue_pop(q), &a);
    assert_null(th_queue_pop(q));
    th_queue_free(q);
}

struct counter {
    struct th_queue *q;
    long sum;
};

static void *consume(void *arg)
{
    struct counter *c = arg;
    void *item;
    while ((item = th_queue_pop(c->q)) != NULL) {
        c->sum += (long)(intptr_t)item;
    }
    return NULL;
}

static void every_item_reaches_one_consumer(void **state)
{
    struct th_queue *q = th_queue_new(16);
    struct counter c[3] = {{q, 0}, {q, 0}, {q, 0}};
    pthread_t t[3];
    long expected = 0;
    (void)state;
    for (int i = 0; i < 3; i++) {
        pthread_create(&t[i], NULL, consume, &c[i]);
    }
    for (intptr_t i = 1; i <= 2000; i++) {
        while (th_queue_push(q, (void *)i) == TH_EFULL) {
            sched_yield();
        }
        expected += (long)i;
    }
    th_queue_close(q);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
    }
    assert_int_equal(c[0].sum + c[1].sum + c[2].sum, expected);
    th_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(full_queue_refuses_instead_of_blocking),
        cmocka_unit_test(close_drains_then_ends),
        cmocka_unit_test(every_item_reaches_one_consumer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
