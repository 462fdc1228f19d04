/*
 * Tests of the growable buffer and its JSON string escaping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ragline/buf.h"

static void test_append_and_grow(void **state)
{
    rl_buf_t b = RL_BUF_INIT;
    int i;

    assert_string_equal(rl_buf_cstr(&b), "");
    for (i = 0; i < 1000; i++)
        rl_buf_puts(&b, "abc");
    assert_int_equal(b.len, 3000);
    assert_true(b.cap > b.len);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 2997, "abc", 3);
    rl_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(rl_buf_cstr(&b), "");
    rl_buf_free(&b);
    assert_null(b.data);
}

static void test_printf_long(void **state)
{
    rl_buf_t b = RL_BUF_INIT;
    char big[500];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    rl_buf_printf(&b, "%d:%s:%s", 42, big, "end");
    assert_int_equal(b.len, 3 + 499 + 4);
    assert_memory_equal(b.data, "42:x", 4);
    assert_string_equal(b.data + b.len - 4, ":end");
    rl_buf_free(&b);
}

/* Every byte escaped by rl_buf_json_escape must decode back to itself. */
static void test_json_escape_round_trip(void **state)
{
    rl_buf_t b = RL_BUF_INIT;
    char raw[128];
    json_error_t err;
    json_t *v;
    int i;

    for (i = 0; i < 127; i++)
        raw[i] = (char)(i + 1);
    raw[127] = '\0';
    rl_buf_putc(&b, '"');
    rl_buf_json_escape(&b, raw, 127);
    rl_buf_json_escape(&b, "\xc3\xa9", 2); /* UTF-8 passes through */
    rl_buf_putc(&b, '"');

    v = json_loadb(b.data, b.len, JSON_DECODE_ANY, &err);
    assert_non_null(v);
    assert_int_equal(json_string_length(v), 129);
    assert_memory_equal(json_string_value(v), raw, 127);
    assert_memory_equal(json_string_value(v) + 127, "\xc3\xa9", 2);
    json_decref(v);
    rl_buf_free(&b);
}

/* Random strings, special bytes at every offset of the 8-byte scan:
 * each must decode back to itself. */
static void test_json_escape_random(void **state)
{
    static const char alphabet[] = "ab\"\\\n\t\x01\x1f\x7f \xc3\xa9xyz";
    rl_buf_t b = RL_BUF_INIT, back = RL_BUF_INIT;
    char raw[80];
    int round;

    srand(99);
    for (round = 0; round < 20000; round++) {
        size_t len = (size_t)(rand() % 80), i;
        json_error_t err;
        json_t *v;

        for (i = 0; i < len; i++)
            raw[i] = alphabet[rand() % (int)(sizeof(alphabet) - 1)];
        /* Keep the string valid UTF-8: pair every lead byte. */
        for (i = 0; i < len; i++)
            if ((unsigned char)raw[i] == 0xc3)
                raw[i] = i + 1 < len ? raw[i] : 'q';
        for (i = 0; i < len; i++)
            if ((unsigned char)raw[i] == 0xc3)
                raw[++i] = (char)0xa9;
            else if ((unsigned char)raw[i] == 0xa9)
                raw[i] = 'r';
        rl_buf_reset(&b);
        rl_buf_putc(&b, '"');
        rl_buf_json_escape(&b, raw, len);
        rl_buf_putc(&b, '"');
        v = json_loadb(b.data, b.len, JSON_DECODE_ANY, &err);
        if (!v)
            fail_msg("round %d: %s in %s", round, err.text, b.data);
        assert_int_equal(json_string_length(v), len);
        assert_memory_equal(json_string_value(v), raw, len);
        json_decref(v);

        /* And rl_buf_json_unescape() undoes it. */
        rl_buf_reset(&back);
        assert_int_equal(rl_buf_json_unescape(&back, b.data + 1, b.len - 2), 0);
        assert_int_equal(back.len, len);
        assert_memory_equal(back.data, raw, len);
    }
    rl_buf_free(&b);
    rl_buf_free(&back);
}

static void test_json_unescape_refuses_what_it_never_writes(void **state)
{
    rl_buf_t b = RL_BUF_INIT;

    assert_int_equal(rl_buf_json_unescape(&b, "a\\/b\\u0041", 10), 0);
    assert_string_equal(b.data, "a/bA");
    rl_buf_reset(&b);
    assert_int_equal(rl_buf_json_unescape(&b, "x\\q", 3), -1);
    assert_int_equal(rl_buf_json_unescape(&b, "x\\", 2), -1);
    assert_int_equal(rl_buf_json_unescape(&b, "\\u20ac", 6), -1);
    assert_int_equal(rl_buf_json_unescape(&b, "\\u00g1", 6), -1);
    rl_buf_free(&b);
}

static void test_steal(void **state)
{
    rl_buf_t b = RL_BUF_INIT;
    size_t len;
    char *s;

    s = rl_buf_steal(&b, &len);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);

    rl_buf_puts(&b, "hello");
    s = rl_buf_steal(&b, &len);
    assert_string_equal(s, "hello");
    assert_int_equal(len, 5);
    assert_null(b.data);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_grow),
        cmocka_unit_test(test_printf_long),
        cmocka_unit_test(test_json_escape_round_trip),
        cmocka_unit_test(test_json_escape_random),
        cmocka_unit_test(test_json_unescape_refuses_what_it_never_writes),
        cmocka_unit_test(test_steal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
