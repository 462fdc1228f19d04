/*
 * Tests of the jansson arena: events parse into an arena and read the
 * same as without one; heap allocations made while no arena is in use
 * are freed normally; arenas grow past their first chunk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ragline/arena.h"
#include "ragline/event.h"

static const rl_limits_t limits = {1 << 20, 64, 1000};

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long n;

    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = malloc((size_t)n + 1);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return data;
}

static void test_event_in_arena(void **state)
{
    size_t len;
    char *text = read_file("data/contrastive-inline.event.json", &len);
    rl_event_t ev;
    char err[256];
    json_t *turn, *again;

    assert_true(rl_arena_installed());
    assert_int_equal(
        rl_event_parse(&ev, text, len, "k", 1, &limits, err, sizeof(err)),
        RL_ERR_NONE);
    assert_non_null(ev.arena);
    assert_string_equal(ev.id, "contrastive-2");
    assert_int_equal(json_array_size(ev.prompt.history), 2);
    turn = json_array_get(ev.prompt.history, 0);
    assert_string_equal(json_string_value(json_object_get(turn, "role")),
                        "user");

    /* The same text parsed on the heap serializes identically. */
    again = json_loadb(text, len, 0, NULL);
    assert_non_null(again);
    assert_true(json_equal(again, ev.root));
    json_decref(again);

    rl_event_clear(&ev);
    assert_null(ev.arena);
    free(text);
}

static void test_failed_parse_frees_arena(void **state)
{
    rl_event_t ev;
    char err[256];

    assert_int_equal(
        rl_event_parse(&ev, "{\"id\": ", 7, NULL, 0, &limits, err, sizeof(err)),
        RL_ERR_INVALID_JSON);
    assert_null(ev.arena); /* cleared: nothing left to leak */
    assert_int_equal(rl_event_parse(&ev, "{\"id\": 1}", 9, NULL, 0, &limits,
                                    err, sizeof(err)),
                     RL_ERR_INVALID_EVENT);
    assert_null(ev.arena);
}

/* Many values in a small arena: it grows by chunks, and every value
 * stays readable until the arena goes. */
static void test_arena_grows(void **state)
{
    rl_arena_t *arena = rl_arena_new(1024), *prev;
    json_t *list;
    char name[32];
    int i;

    prev = rl_arena_use(arena);
    list = json_array();
    for (i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "value %d", i);
        json_array_append_new(list, json_string(name));
    }
    rl_arena_use(prev);
    assert_true(rl_arena_size(arena) > 5000 * 16);
    assert_string_equal(json_string_value(json_array_get(list, 4999)),
                        "value 4999");
    rl_arena_destroy(arena);
}

int main(void)
{
    rl_arena_install(); /* before any jansson allocation */

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_in_arena),
        cmocka_unit_test(test_failed_parse_frees_arena),
        cmocka_unit_test(test_arena_grows),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
