/*
 * Tests of the evidence cache: records in, rendered repr() out, deletes
 * by tombstone and by invalid value, growth and memory accounting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/buf.h"
#include "ragline/evidence.h"

static int apply(rl_evcache_t *cache, const char *key, const char *value)
{
    char err[256];

    return rl_evcache_apply(cache, key, strlen(key), value,
                            value ? strlen(value) : 0, err, sizeof(err));
}

/* Asserts the cache holds the repr() @p want for @p key (NULL: a miss),
 * kept escaped for JSON. */
static void assert_get(const rl_evcache_t *cache, const char *key,
                       const char *want)
{
    size_t len = 0;
    const char *got = rl_evcache_get(cache, key, strlen(key), &len);
    rl_buf_t escaped = RL_BUF_INIT;

    if (!want) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    rl_buf_json_escape(&escaped, want, strlen(want));
    assert_int_equal(len, escaped.len);
    assert_memory_equal(got, escaped.data, len);
    rl_buf_free(&escaped);
}

static void test_put_get(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();

    assert_int_equal(rl_evcache_count(cache), 0);
    assert_get(cache, "q", NULL);
    assert_int_equal(
        apply(cache, "q",
              "{\"results\": [{\"title\": \"T\", \"text\": \"it's\"}]}"),
        0);
    assert_get(cache, "q", "[{'title': 'T', 'text': \"it's\"}]");
    assert_get(cache, "Q", NULL);
    assert_get(cache, "", NULL);
    assert_int_equal(rl_evcache_count(cache), 1);

    /* Other keys of the record are ignored; empty results are kept. */
    assert_int_equal(apply(cache, "", "{\"x\": 1, \"results\": []}"), 0);
    assert_get(cache, "", "[]");
    assert_int_equal(rl_evcache_count(cache), 2);
    rl_evcache_destroy(cache);
}

static void test_values_rendered(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();

    assert_int_equal(
        apply(cache, "k",
              "{\"results\": [1, 2.5, 1e16, true, null, "
              "\"\\u0000\\u00e9\\u200b\", {\"b\": [], \"a\": {}}]}"),
        0);
    assert_get(cache, "k",
               "[1, 2.5, 1e+16, True, None, '\\x00\xc3\xa9\\u200b', "
               "{'b': [], 'a': {}}]");
    rl_evcache_destroy(cache);
}

static void test_overwrite(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();

    assert_int_equal(apply(cache, "q", "{\"results\": [1]}"), 0);
    assert_int_equal(apply(cache, "q", "{\"results\": [2, 3]}"), 0);
    assert_get(cache, "q", "[2, 3]");
    assert_int_equal(rl_evcache_count(cache), 1);
    rl_evcache_destroy(cache);
}

static void test_tombstone(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();

    assert_int_equal(apply(cache, "a", "{\"results\": [1]}"), 0);
    assert_int_equal(apply(cache, "b", "{\"results\": [2]}"), 0);
    assert_int_equal(apply(cache, "a", NULL), 0);
    assert_get(cache, "a", NULL);
    assert_get(cache, "b", "[2]");
    assert_int_equal(rl_evcache_count(cache), 1);

    /* Deleting an absent key is not an error. */
    assert_int_equal(apply(cache, "never", NULL), 0);
    assert_int_equal(rl_evcache_count(cache), 1);
    rl_evcache_destroy(cache);
}

static void test_invalid_value_deletes(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "5",
        "{\"results\": 5}",
        "{\"results\": {}}",
        "{\"results\": null}",
        "{\"result\": []}",
        "{\"results\": [1,]}",
        "{\"results\": [\"\\ud800\"]}",
    };
    rl_evcache_t *cache = rl_evcache_new();
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";

        assert_int_equal(apply(cache, "q", "{\"results\": [1]}"), 0);
        assert_int_equal(rl_evcache_apply(cache, "q", 1, bad[i], strlen(bad[i]),
                                          err, sizeof(err)),
                         -1);
        assert_true(strlen(err) > 0);
        assert_get(cache, "q", NULL);
        assert_int_equal(rl_evcache_count(cache), 0);
    }

    /* An invalid value for an absent key is still refused. */
    assert_int_equal(apply(cache, "new", "nope"), -1);
    assert_int_equal(rl_evcache_count(cache), 0);
    rl_evcache_destroy(cache);
}

static void test_binary_keys(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();
    size_t len;
    const char *v;

    assert_int_equal(
        rl_evcache_apply(cache, "a\0b", 3, "{\"results\": [1]}", 16, NULL, 0),
        0);
    assert_int_equal(
        rl_evcache_apply(cache, "a\0c", 3, "{\"results\": [2]}", 16, NULL, 0),
        0);
    v = rl_evcache_get(cache, "a\0c", 3, &len);
    assert_non_null(v);
    assert_memory_equal(v, "[2]", 3);
    assert_null(rl_evcache_get(cache, "a", 1, &len));
    assert_null(rl_evcache_get(NULL, "a", 1, &len));
    rl_evcache_destroy(cache);
    rl_evcache_destroy(NULL);
}

#define MANY 20000

/* Thousands of keys: growth, then deletes that shift probe runs back. */
static void test_grow_and_delete(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();
    char key[32], value[64], want[32];
    int i;

    for (i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "query %d", i);
        snprintf(value, sizeof(value), "{\"results\": [%d]}", i);
        assert_int_equal(apply(cache, key, value), 0);
    }
    assert_int_equal(rl_evcache_count(cache), MANY);

    for (i = 0; i < MANY; i += 2) {
        snprintf(key, sizeof(key), "query %d", i);
        assert_int_equal(apply(cache, key, i % 4 ? NULL : "bad"),
                         i % 4 ? 0 : -1);
    }
    assert_int_equal(rl_evcache_count(cache), MANY / 2);

    for (i = 0; i < MANY; i++) {
        snprintf(key, sizeof(key), "query %d", i);
        snprintf(want, sizeof(want), "[%d]", i);
        assert_get(cache, key, i % 2 ? want : NULL);
    }

    /* Deleted keys can come back. */
    for (i = 0; i < MANY; i += 2) {
        snprintf(key, sizeof(key), "query %d", i);
        assert_int_equal(apply(cache, key, "{\"results\": []}"), 0);
    }
    assert_int_equal(rl_evcache_count(cache), MANY);
    assert_get(cache, "query 0", "[]");
    assert_get(cache, "query 1", "[1]");
    rl_evcache_destroy(cache);
}

static void test_memory(void **state)
{
    rl_evcache_t *cache = rl_evcache_new();
    size_t empty = rl_evcache_memory(cache);
    size_t one, full, cleared, repr_bytes = 0;
    char key[32];
    int i;

    assert_true(empty > 0);

    /* One small entry costs exactly its key and its rendered value. */
    assert_int_equal(apply(cache, "key", "{\"results\": [1, 2]}"), 0);
    one = rl_evcache_memory(cache);
    assert_int_equal(one - empty, strlen("key") + strlen("[1, 2]"));
    assert_int_equal(apply(cache, "key", "{\"results\": []}"), 0);
    assert_int_equal(rl_evcache_memory(cache) - empty, 3 + 2);
    assert_int_equal(apply(cache, "key", NULL), 0);
    assert_int_equal(rl_evcache_memory(cache), empty);

    /* Many: at least keys and values, plus a table that grew. */
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(apply(cache, key, "{\"results\": [\"x\"]}"), 0);
        repr_bytes += strlen(key) + strlen("['x']");
    }
    full = rl_evcache_memory(cache);
    assert_true(full > empty + repr_bytes + 5000 * sizeof(void *));

    /* Emptied, only the (grown) table is left. */
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(apply(cache, key, NULL), 0);
    }
    cleared = rl_evcache_memory(cache);
    assert_int_equal(full - cleared, repr_bytes);
    assert_true(cleared > empty);
    rl_evcache_destroy(cache);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get),
        cmocka_unit_test(test_values_rendered),
        cmocka_unit_test(test_overwrite),
        cmocka_unit_test(test_tombstone),
        cmocka_unit_test(test_invalid_value_deletes),
        cmocka_unit_test(test_binary_keys),
        cmocka_unit_test(test_grow_and_delete),
        cmocka_unit_test(test_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
