/*
 * Tests of the per-key queues: one item in progress per key, the rest
 * released in the order they entered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/keyq.h"

static void test_one_key_in_order(void **state)
{
    rl_keyq_t *q = rl_keyq_new();
    int a, b, c;

    assert_int_equal(rl_keyq_enter(q, "k", 1, &a), 1);
    assert_int_equal(rl_keyq_enter(q, "k", 1, &b), 0);
    assert_int_equal(rl_keyq_enter(q, "k", 1, &c), 0);
    assert_int_equal(rl_keyq_keys(q), 1);
    assert_ptr_equal(rl_keyq_leave(q, "k", 1), &b);
    assert_ptr_equal(rl_keyq_leave(q, "k", 1), &c);
    assert_null(rl_keyq_leave(q, "k", 1));
    assert_int_equal(rl_keyq_keys(q), 0);
    /* Forgotten: the next item starts at once. */
    assert_int_equal(rl_keyq_enter(q, "k", 1, &a), 1);
    rl_keyq_destroy(q);
}

static void test_keys_independent(void **state)
{
    rl_keyq_t *q = rl_keyq_new();
    int a, b;

    assert_int_equal(rl_keyq_enter(q, "k1", 2, &a), 1);
    assert_int_equal(rl_keyq_enter(q, "k2", 2, &b), 1);
    assert_int_equal(rl_keyq_enter(q, "", 0, &a), 1);      /* empty key */
    assert_int_equal(rl_keyq_enter(q, "k1\0x", 4, &b), 1); /* binary */
    assert_int_equal(rl_keyq_keys(q), 4);
    assert_null(rl_keyq_leave(q, "k1", 2));
    assert_null(rl_keyq_leave(q, "nope", 4));
    rl_keyq_destroy(q); /* frees what is left */
}

/*
 * Many keys through growth: items are released per key in entry order,
 * and the number of keys in progress matches a naive count.
 */
static void test_many_keys_against_model(void **state)
{
    enum { KEYS = 3000, PER = 4 };
    static int items[KEYS][PER];
    rl_keyq_t *q = rl_keyq_new();
    char key[32];
    int k, j;

    for (j = 0; j < PER; j++) {
        for (k = 0; k < KEYS; k++) {
            snprintf(key, sizeof(key), "key-%d", k);
            assert_int_equal(rl_keyq_enter(q, key, strlen(key), &items[k][j]),
                             j == 0);
        }
    }
    assert_int_equal(rl_keyq_keys(q), KEYS);
    for (k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "key-%d", k);
        for (j = 1; j < PER; j++)
            assert_ptr_equal(rl_keyq_leave(q, key, strlen(key)), &items[k][j]);
        assert_null(rl_keyq_leave(q, key, strlen(key)));
        assert_int_equal(rl_keyq_keys(q), (size_t)(KEYS - k - 1));
    }
    rl_keyq_destroy(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_key_in_order),
        cmocka_unit_test(test_keys_independent),
        cmocka_unit_test(test_many_keys_against_model),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
