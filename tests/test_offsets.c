/*
 * Tests of the offset tracker: the commit position never passes an
 * unfinished event, whatever order events finish in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ragline/offsets.h"

static void test_empty(void **state)
{
    rl_offtrack_t *t = rl_offtrack_new();

    assert_int_equal(rl_offtrack_position(t), -1);
    assert_int_equal(rl_offtrack_pending(t), 0);
    rl_offtrack_destroy(t);
}

static void test_in_order(void **state)
{
    rl_offtrack_t *t = rl_offtrack_new();
    uint64_t a = rl_offtrack_push(t, 10);
    uint64_t b = rl_offtrack_push(t, 11);

    assert_int_equal(rl_offtrack_position(t), 10);
    assert_int_equal(rl_offtrack_done(t, a), 11);
    assert_int_equal(rl_offtrack_done(t, b), 12);
    assert_int_equal(rl_offtrack_pending(t), 0);
    assert_int_equal(rl_offtrack_position(t), 12);
    rl_offtrack_destroy(t);
}

static void test_out_of_order_holds_back(void **state)
{
    rl_offtrack_t *t = rl_offtrack_new();
    uint64_t a = rl_offtrack_push(t, 5);
    uint64_t b = rl_offtrack_push(t, 9); /* a gap, as after compaction */
    uint64_t c = rl_offtrack_push(t, 10);

    assert_int_equal(rl_offtrack_done(t, c), -1);
    assert_int_equal(rl_offtrack_done(t, b), -1);
    assert_int_equal(rl_offtrack_position(t), 5);
    assert_int_equal(rl_offtrack_done(t, a), 11);
    rl_offtrack_destroy(t);
}

static void test_rejects_bad_input(void **state)
{
    rl_offtrack_t *t = rl_offtrack_new();
    uint64_t a = rl_offtrack_push(t, 7);

    assert_true(rl_offtrack_push(t, 7) == UINT64_MAX);
    assert_true(rl_offtrack_push(t, 3) == UINT64_MAX);
    assert_int_equal(rl_offtrack_done(t, a), 8);
    assert_int_equal(rl_offtrack_done(t, a), -1);     /* twice */
    assert_int_equal(rl_offtrack_done(t, a + 5), -1); /* never issued */
    assert_int_equal(rl_offtrack_pending(t), 0);
    rl_offtrack_destroy(t);
}

/*
 * Random model check: thousands of events finishing in random order,
 * with the ring growing past its initial size.  After every step the
 * position must equal the lowest unfinished offset, computed naively.
 */
static void test_random_against_model(void **state)
{
    enum { N = 5000 };
    static int64_t offsets[N];
    static uint64_t tickets[N];
    static int finished[N];
    static size_t order[N];
    rl_offtrack_t *t = rl_offtrack_new();
    int64_t off = 100;
    size_t i, j, lowest = 0;

    srand(12345);
    for (i = 0; i < N; i++) {
        off += 1 + rand() % 3;
        offsets[i] = off;
        tickets[i] = rl_offtrack_push(t, off);
        order[i] = i;
    }
    for (i = N - 1; i > 0; i--) {
        size_t k = (size_t)rand() % (i + 1), tmp = order[i];

        order[i] = order[k];
        order[k] = tmp;
    }

    for (j = 0; j < N; j++) {
        int64_t expect, got;

        finished[order[j]] = 1;
        got = rl_offtrack_done(t, tickets[order[j]]);
        while (lowest < N && finished[lowest])
            lowest++;
        expect = lowest < N ? offsets[lowest] : offsets[N - 1] + 1;
        assert_int_equal(rl_offtrack_position(t), expect);
        if (got != -1)
            assert_int_equal(got, expect);
        assert_int_equal(rl_offtrack_pending(t), N - j - 1);
    }
    rl_offtrack_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_in_order),
        cmocka_unit_test(test_out_of_order_holds_back),
        cmocka_unit_test(test_rejects_bad_input),
        cmocka_unit_test(test_random_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
