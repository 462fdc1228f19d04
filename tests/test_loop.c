/*
 * Tests of the event loop: fd readiness, removal during dispatch, and
 * timers firing in deadline order.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "ragline/loop.h"

typedef struct {
    int calls;
    int other_fd; /* removed by the callback when >= 0 */
} io_state_t;

static void on_read(rl_loop_t *loop, int fd, int events, void *opaque)
{
    io_state_t *st = opaque;
    char c;

    st->calls++;
    assert_true(events & RL_IO_READ);
    assert_int_equal(read(fd, &c, 1), 1);
    if (st->other_fd >= 0)
        rl_loop_io_del(loop, st->other_fd);
}

static void test_io_ready_and_removed(void **state)
{
    rl_loop_t *loop = rl_loop_new();
    int a[2], b[2];
    io_state_t sa = {0, -1}, sb = {0, -1};

    assert_int_equal(pipe(a), 0);
    assert_int_equal(pipe(b), 0);
    sa.other_fd = b[0];
    sb.other_fd = a[0];
    assert_int_equal(rl_loop_io_add(loop, a[0], RL_IO_READ, on_read, &sa), 0);
    assert_int_equal(rl_loop_io_add(loop, b[0], RL_IO_READ, on_read, &sb), 0);

    /* Both ready at once: whichever runs first removes the other, whose
     * event, already collected, must not be delivered. */
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(write(b[1], "y", 1), 1);
    assert_int_equal(rl_loop_run_once(loop, 1000), 1);
    assert_int_equal(sa.calls + sb.calls, 1);

    rl_loop_destroy(loop);
    close(a[0]), close(a[1]), close(b[0]), close(b[1]);
}

typedef struct {
    int order[4];
    int n;
} fired_t;

typedef struct {
    rl_timer_t timer;
    int id;
    fired_t *fired;
} tagged_timer_t;

static void on_timer(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    tagged_timer_t *t = opaque;

    t->fired->order[t->fired->n++] = t->id;
}

static void test_timers_in_order(void **state)
{
    rl_loop_t *loop = rl_loop_new();
    fired_t fired = {{0}, 0};
    tagged_timer_t t[4];
    int64_t start = rl_now_us();
    int i, delays[4] = {30, 10, 20, 15};

    for (i = 0; i < 4; i++) {
        t[i].id = i;
        t[i].fired = &fired;
        rl_timer_init(&t[i].timer, on_timer, &t[i]);
        rl_timer_start(loop, &t[i].timer, delays[i]);
    }
    rl_timer_stop(loop, &t[3].timer); /* the 15 ms one never fires */
    assert_false(rl_timer_active(&t[3].timer));

    while (fired.n < 3 && rl_now_us() - start < 2000000)
        rl_loop_run_once(loop, -1);

    assert_int_equal(fired.n, 3);
    assert_int_equal(fired.order[0], 1);
    assert_int_equal(fired.order[1], 2);
    assert_int_equal(fired.order[2], 0);
    assert_true(rl_now_us() - start >= 30000);
    rl_loop_destroy(loop);
}

/* Many timers restarted in a shuffled order still fire sorted. */
static void on_count(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    int64_t *last = opaque;

    assert_true(timer->due_ms >= *last);
    *last = timer->due_ms;
}

static void test_timer_heap_stress(void **state)
{
    enum { N = 500 };
    rl_loop_t *loop = rl_loop_new();
    static rl_timer_t timers[N];
    int64_t last = 0;
    int i;

    srand(7);
    for (i = 0; i < N; i++) {
        rl_timer_init(&timers[i], on_count, &last);
        rl_timer_start(loop, &timers[i], rand() % 40);
    }
    for (i = 0; i < N; i += 3)
        rl_timer_start(loop, &timers[i], rand() % 40);
    for (i = 1; i < N; i += 7)
        rl_timer_stop(loop, &timers[i]);
    for (i = 0; i < 200; i++)
        rl_loop_run_once(loop, 5);
    for (i = 0; i < N; i++)
        assert_false(rl_timer_active(&timers[i]));
    rl_loop_destroy(loop);
}

/* A 0 ms timer that re-arms itself runs once per turn, so fd events
 * still get through between its runs. */
static void on_rearm(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    int *runs = opaque;

    (*runs)++;
    rl_timer_start(loop, timer, 0);
}

static void test_zero_timer_does_not_starve_io(void **state)
{
    rl_loop_t *loop = rl_loop_new();
    io_state_t st = {0, -1};
    rl_timer_t timer;
    int fds[2], runs = 0, turns;

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(rl_loop_io_add(loop, fds[0], RL_IO_READ, on_read, &st), 0);
    rl_timer_init(&timer, on_rearm, &runs);
    rl_timer_start(loop, &timer, 0);
    assert_int_equal(write(fds[1], "x", 1), 1);

    for (turns = 0; turns < 5 && st.calls == 0; turns++)
        rl_loop_run_once(loop, 1000);
    assert_int_equal(st.calls, 1);
    assert_true(runs >= 1 && runs <= turns);

    rl_timer_stop(loop, &timer);
    rl_loop_destroy(loop);
    close(fds[0]), close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_ready_and_removed),
        cmocka_unit_test(test_timers_in_order),
        cmocka_unit_test(test_timer_heap_stress),
        cmocka_unit_test(test_zero_timer_does_not_starve_io),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
