/*
 * rl_json_parse(): errors by example, and agreement with jansson's own
 * json_loadb() on hand-picked edge cases and on thousands of generated
 * texts, valid and mutated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/buf.h"
#include "ragline/json.h"

#define LOAD_FLAGS (JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES)
#define DUMP_FLAGS (JSON_ENCODE_ANY | JSON_COMPACT)

/* @returns json_dumps() of @p v in a buffer the caller frees. */
static char *dump(const json_t *v)
{
    return json_dumps(v, DUMP_FLAGS);
}

/*
 * Parses @p text with both parsers and fails unless both refuse it or
 * both give the same tree (compared as dumped text, so key order
 * counts).  @returns 1 if it was accepted.
 */
static int agree_with(const char *text, size_t len, unsigned flags)
{
    rl_json_error_t err;
    json_error_t jerr;
    json_t *ours = rl_json_parse(text, len, JSON_PARSER_MAX_DEPTH, flags, &err);
    json_t *theirs = json_loadb(
        text, len, LOAD_FLAGS & ~(flags ? JSON_REJECT_DUPLICATES : 0), &jerr);
    int accepted = ours != NULL;

    if (!ours != !theirs) {
        print_error("disagree on %zu bytes: \"%.*s\"\n ours: %s\n jansson: "
                    "%s\n",
                    len, (int)len, text, ours ? "accepted" : err.text,
                    theirs ? "accepted" : jerr.text);
        fail();
    }
    if (ours) {
        char *a = dump(ours), *b = dump(theirs);

        if (strcmp(a, b) != 0) {
            print_error("different trees for \"%.*s\":\n ours: %s\n "
                        "jansson: %s\n",
                        (int)len, text, a, b);
            fail();
        }
        free(a);
        free(b);
    }
    json_decref(ours);
    json_decref(theirs);
    return accepted;
}

/* agree_with() both ways: repeated keys refused, and kept last. */
static int agree(const char *text, size_t len)
{
    agree_with(text, len, RL_JSON_KEEP_LAST);
    return agree_with(text, len, 0);
}

static void agree_str(const char *text)
{
    agree(text, strlen(text));
}

static void test_edge_cases_agree(void **state)
{
    static const char *const cases[] = {
        /* values and white space */
        "0", "-0", "1", "-1", "123456789", " \t\r\n 42 \n", "true", "false",
        "null", "\"\"", "[]", "{}", "[ ]", "{ }", "[1,2,3]", "{\"a\":1}",
        "[[[[]]]]", "{\"a\":{\"b\":{\"c\":[]}}}",
        /* numbers */
        "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        "-9223372036854775809", "99999999999999999999999", "1.0", "-1.5", "0.5",
        "1e5", "1E5", "1e+5", "1e-5", "-0.0", "0e0", "1.5e300", "1e400",
        "-1e400", "1e-400", "2.2250738585072014e-308", "4.9e-324",
        "1.7976931348623157e308", "0.1", "123.456e-7", "01", "-01", "00", "1.",
        ".5", "-", "+1", "1e", "1e+", "-a", "1.e5", "0x10", "1_000", "NaN",
        "Infinity", "[1.0e2,2]", "[-]", "[0,]",
        /* literals */
        "tru", "truex", "nul", "True", "[true,false,null]", "[truefalse]",
        /* strings and escapes */
        "\"abc\"", "\"a\\\"b\"", "\"\\\\\"", "\"\\/\"", "\"\\b\\f\\n\\r\\t\"",
        "\"\\u0041\"", "\"\\u00e9\"", "\"\\u20ac\"", "\"\\uD83D\\uDE00\"",
        "\"\\ud83d\\ude00x\"", "\"\\u0000\"", "\"a\\u0000b\"", "\"\\ud800\"",
        "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\\udbff\\udfff\"",
        "\"\\ud800\\udc00\"", "\"\\ud800\\ue000\"", "\"\\ud800\\ud800\"",
        "\"\\ud800x\"", "\"\\ud800\\\"", "\"\\u12\"", "\"\\u12G4\"",
        "\"\\x41\"", "\"\\a\"", "\"\\'\"", "\"abc", "\"abc\\", "\"\\", "\"\t\"",
        "\"\n\"", "\"\x01\"", "\"\x7f\"", "\"caf\xc3\xa9\"", "\"\xe2\x82\xac\"",
        "\"\xf0\x9f\x98\x80\"", "\"\xc3\"", "\"\xc3x\"", "\"\xc0\x80\"",
        "\"\xe0\x80\x80\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"",
        "\"\xf5\x80\x80\x80\"", "\"\xff\"", "\"\x80\"", "\"\xef\xbf\xbf\"",
        "\"\xf4\x8f\xbf\xbf\"", "\"0123456789abcdef0123456789abcdef\"",
        "\"0123456789abcdef\\n0123456789abcdef\xc3\xa9 0123456789\"",
        /* objects */
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":2,\"a\":3}", "{\"\":1}",
        "{\"a\\u0000\":1}", "{\"\\u0061\":1,\"a\":2}", "{\"a\" : 1 , \"b\":2}",
        "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{1:2}", "{'a':1}",
        "{\"a\":1 \"b\":2}", "{\"z\":1,\"y\":2,\"x\":3}", "{\"a\\nb\":[1]}",
        "{\"x\":{\"x\":{\"x\":1}}}",
        /* arrays and trailing text */
        "[1 2]", "[1,,2]", "[,1]", "]", "}", "[", "{", "[1]]", "{}}", "1 2",
        "\"a\" \"b\"", "", " ", "[1]x", "null null",
        "\xef\xbb\xbf{}", /* a byte order mark is not JSON */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        agree_str(cases[i]);
    /* NUL bytes inside and outside strings */
    agree("\"a\0b\"", 5);
    agree("[1]\0", 4);
    agree("\0", 1);
}

/* ---- generated texts ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

static void gen_space(rl_buf_t *out)
{
    static const char ws[] = " \t\n\r";

    while (rnd(4) == 0)
        rl_buf_putc(out, ws[rnd(4)]);
}

/* A string body: plain runs (some long, to cross the 8-byte scan),
 * escapes of every kind, and multi-byte characters. */
static void gen_string(rl_buf_t *out)
{
    static const char *const pieces[] = {
        "a",
        "hello world",
        "0123456789abcdefghij",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\t",
        "\\b\\f\\r",
        "\\u0041",
        "\\u00e9",
        "\\u2028",
        "\\ud83d\\ude00",
        "\\u0000",
        "\xc3\xa9",
        "\xe4\xb8\xad\xe6\x96\x87",
        "\xf0\x9f\x98\x80",
        "\xcc\x81",
        "'",
        "quote \\\" mid",
        "        ",
    };
    int n = (int)rnd(6);

    rl_buf_putc(out, '"');
    while (n-- > 0)
        rl_buf_puts(out, pieces[rnd(sizeof(pieces) / sizeof(pieces[0]))]);
    rl_buf_putc(out, '"');
}

static void gen_number(rl_buf_t *out)
{
    static const char *const nums[] = {
        "0",
        "-0",
        "7",
        "-42",
        "123456789012",
        "3.25",
        "-0.5",
        "1e3",
        "2.5E-3",
        "1e+2",
        "6.02e23",
        "-1.0",
        "1e-7",
        "9007199254740993",
        "0.1",
        "100",
    };

    rl_buf_puts(out, nums[rnd(sizeof(nums) / sizeof(nums[0]))]);
}

static void gen_value(rl_buf_t *out, int depth)
{
    int kind = (int)rnd(depth > 5 ? 5 : 8);
    int i, n;

    switch (kind) {
    case 0:
        gen_string(out);
        return;
    case 1:
        gen_number(out);
        return;
    case 2:
        rl_buf_puts(out, rnd(2) ? "true" : "false");
        return;
    case 3:
        rl_buf_puts(out, "null");
        return;
    case 4:
        gen_string(out);
        return;
    case 5:
    case 6:
        rl_buf_putc(out, '[');
        n = (int)rnd(5);
        for (i = 0; i < n; i++) {
            if (i)
                rl_buf_putc(out, ',');
            gen_space(out);
            gen_value(out, depth + 1);
            gen_space(out);
        }
        rl_buf_putc(out, ']');
        return;
    default:
        rl_buf_putc(out, '{');
        n = (int)rnd(5);
        for (i = 0; i < n; i++) {
            if (i)
                rl_buf_putc(out, ',');
            gen_space(out);
            /* Short keys from a small set, so that repeats happen. */
            rl_buf_printf(out, "\"k%u\"", rnd(6));
            gen_space(out);
            rl_buf_putc(out, ':');
            gen_space(out);
            gen_value(out, depth + 1);
        }
        rl_buf_putc(out, '}');
        return;
    }
}

/* Changes one byte, drops one or inserts one: mostly invalid texts. */
static void mutate(rl_buf_t *b)
{
    static const char bytes[] = "\"\\{}[],:0-e.tu \x01\x80\xc3\xff";
    size_t at = b->len ? rnd((uint32_t)b->len) : 0;
    char c = bytes[rnd(sizeof(bytes) - 1)];

    switch (rnd(3)) {
    case 0:
        if (b->len)
            b->data[at] = c;
        break;
    case 1:
        if (b->len) {
            memmove(b->data + at, b->data + at + 1, b->len - at - 1);
            b->len--;
        }
        break;
    default:
        rl_buf_putc(b, '\0');
        memmove(b->data + at + 1, b->data + at, b->len - at - 1);
        b->data[at] = c;
        break;
    }
}

static void test_generated_texts_agree(void **state)
{
    rl_buf_t b = RL_BUF_INIT;
    int i, accepted = 0, refused = 0;

    (void)state;
    for (i = 0; i < 20000; i++) {
        rl_buf_reset(&b);
        gen_space(&b);
        gen_value(&b, 0);
        gen_space(&b);
        if (i % 2)
            mutate(&b);
        if (agree(b.data, b.len))
            accepted++;
        else
            refused++;
    }
    /* Both halves must be exercised for the comparison to mean much. */
    assert_true(accepted > 5000);
    assert_true(refused > 3000);
    rl_buf_free(&b);
}

/* ---- our own behaviour ---- */

static void expect_error(const char *text, const char *message, int too_deep,
                         int max_depth)
{
    rl_json_error_t err;
    json_t *v = rl_json_parse(text, strlen(text), max_depth, 0, &err);

    if (v)
        print_error("accepted: %s\n", text);
    assert_null(v);
    assert_string_equal(err.text, message);
    assert_int_equal(err.too_deep, too_deep);
}

static void test_error_messages(void **state)
{
    (void)state;
    expect_error("{\"id\":\"a\",\"id\":\"b\"}",
                 "line 1 column 11: duplicate object key \"id\"", 0, 64);
    expect_error("{\"id\":\"i\",",
                 "line 1 column 11: expected a string key, found the end "
                 "of the text",
                 0, 64);
    expect_error("{\"id\":\"i\"} x",
                 "line 1 column 12: expected the end of the text after the "
                 "value, found 'x'",
                 0, 64);
    expect_error("[1,\n 2,\n \"caf\xc3\xa9\xe9\"]",
                 "line 3 column 7: invalid UTF-8 byte 0xe9 in a string", 0, 64);
    expect_error("\"a\tb\"",
                 "line 1 column 3: control character 0x09 in a string (it "
                 "must be escaped)",
                 0, 64);
    expect_error("\"\\ud800\"",
                 "line 1 column 2: a lone UTF-16 surrogate in a \\u escape", 0,
                 64);
    expect_error("[01]", "line 1 column 2: malformed number", 0, 64);
    expect_error("[1e999]", "line 1 column 2: number too large for a double", 0,
                 64);
    expect_error("[[[1]]]", "line 1 column 3: nesting deeper than 2", 1, 2);
    expect_error("{\"a\":{\"b\":{}}}",
                 "line 1 column 11: nesting deeper than 2", 1, 2);
    expect_error("",
                 "line 1 column 1: expected a value, found the end of the "
                 "text",
                 0, 64);
}

static void test_depth_limit_is_exact(void **state)
{
    rl_json_error_t err;
    json_t *v;

    (void)state;
    v = rl_json_parse("[[1]]", 5, 2, 0, &err);
    assert_non_null(v);
    json_decref(v);
    v = rl_json_parse("[[1]]", 5, 1, 0, &err);
    assert_null(v);
    assert_true(err.too_deep);
    /* A bracket inside a string is not nesting. */
    v = rl_json_parse("[\"[[[[\"]", 8, 1, 0, &err);
    assert_non_null(v);
    json_decref(v);
}

static void test_strings_keep_their_bytes(void **state)
{
    const char text[] = "[\"a\\u0000b\", \"\\u00e9\\n\", \"plain text here\"]";
    json_t *v = rl_json_parse(text, sizeof(text) - 1, 4, 0, NULL);

    (void)state;
    assert_non_null(v);
    assert_int_equal(json_string_length(json_array_get(v, 0)), 3);
    assert_memory_equal(json_string_value(json_array_get(v, 0)), "a\0b", 3);
    assert_string_equal(json_string_value(json_array_get(v, 1)), "\xc3\xa9\n");
    assert_string_equal(json_string_value(json_array_get(v, 2)),
                        "plain text here");
    json_decref(v);
}

static void test_text_need_not_be_terminated(void **state)
{
    /* The parser must stop at len, whatever follows in memory. */
    const char text[] = "{\"a\":12345}99";
    json_t *v = rl_json_parse(text, 11, 4, 0, NULL);

    (void)state;
    assert_non_null(v);
    assert_int_equal(json_integer_value(json_object_get(v, "a")), 12345);
    json_decref(v);
    assert_null(rl_json_parse(text, 10, 4, 0, NULL));
    assert_null(rl_json_parse("\"abc\"", 4, 4, 0, NULL));
    assert_null(rl_json_parse("1.5e3", 4, 4, 0, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_cases_agree),
        cmocka_unit_test(test_generated_texts_agree),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_depth_limit_is_exact),
        cmocka_unit_test(test_strings_keep_their_bytes),
        cmocka_unit_test(test_text_need_not_be_terminated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
