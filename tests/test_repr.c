/*
 * Tests of repr(): strings, escapes, printability, floats, ints and
 * nested values, against CPython's own output (fixtures under data/repr/
 * written by tools/gen_render_fixtures.py).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/repr.h"

extern const char rl__unicode_version[];

/* Returns repr() of @p len bytes of @p s, or NULL when it fails. */
static char *repr_of(const char *s, size_t len)
{
    rl_buf_t out = RL_BUF_INIT;

    if (rl_repr_str(&out, s, len) < 0) {
        rl_buf_free(&out);
        return NULL;
    }
    return rl_buf_steal(&out, NULL);
}

static void assert_repr(const char *s, const char *expected)
{
    char *got = repr_of(s, strlen(s));

    assert_non_null(got);
    assert_string_equal(got, expected);
    free(got);
}

static void assert_float(double v, const char *expected)
{
    rl_buf_t out = RL_BUF_INIT;

    rl_repr_float(&out, v);
    assert_string_equal(rl_buf_cstr(&out), expected);
    rl_buf_free(&out);
}

static void test_quote_choice(void **state)
{
    assert_repr("", "''");
    assert_repr("abc", "'abc'");
    assert_repr("it's", "\"it's\"");
    assert_repr("say \"hi\"", "'say \"hi\"'");
    assert_repr("it's \"x\"", "'it\\'s \"x\"'");
    assert_repr("'", "\"'\"");
    assert_repr("\"", "'\"'");
    assert_repr("'\"", "'\\'\"'");
}

static void test_escapes(void **state)
{
    assert_repr("a\\b", "'a\\\\b'");
    assert_repr("\n\r\t", "'\\n\\r\\t'");
    assert_repr("\x01\x1f\x7f", "'\\x01\\x1f\\x7f'");
    assert_repr("\x0b\x0c\x1b", "'\\x0b\\x0c\\x1b'");
    /* C1 controls, no-break space and soft hyphen are not printable. */
    assert_repr("\xc2\x80\xc2\x9f\xc2\xa0\xc2\xad", "'\\x80\\x9f\\xa0\\xad'");
    assert_repr("\xc2\xa1\xc3\xa9\xc3\xbf", "'\xc2\xa1\xc3\xa9\xc3\xbf'");
    /* BMP: format characters, separators, unassigned, non-characters. */
    assert_repr("\xe2\x80\x8b\xe2\x80\xa8\xe2\x80\xa9\xef\xbb\xbf",
                "'\\u200b\\u2028\\u2029\\ufeff'");
    assert_repr("\xcd\xb8\xef\xbf\xbf\xee\x80\x80", "'\\u0378\\uffff\\ue000'");
    assert_repr("\xe3\x80\x80", "'\\u3000'"); /* ideographic space */
    /* Astral: tag characters and private use escaped, emoji kept. */
    assert_repr("\xf3\xa0\x80\x81\xf4\x8f\xbf\xbf", "'\\U000e0001\\U0010ffff'");
    assert_repr("\xf0\x9f\x98\x80\xf0\x9d\x84\x9e",
                "'\xf0\x9f\x98\x80\xf0\x9d\x84\x9e'");
    /* Combining marks print as themselves, even with no base. */
    assert_repr("\xcc\x81"
                "e\xcc\x81",
                "'\xcc\x81"
                "e\xcc\x81'");
}

static void test_nul(void **state)
{
    char *got = repr_of("a\0b", 3);

    assert_non_null(got);
    assert_string_equal(got, "'a\\x00b'");
    free(got);
}

static void test_invalid_utf8(void **state)
{
    static const char *const bad[] = {
        "\x80",             /* lone continuation */
        "a\xc3",            /* truncated */
        "\xe2\x82",         /* truncated */
        "\xc0\xaf",         /* overlong */
        "\xc1\xbf",         /* overlong */
        "\xe0\x80\xaf",     /* overlong */
        "\xf0\x80\x80\xaf", /* overlong */
        "\xed\xa0\x80",     /* surrogate */
        "\xed\xbf\xbf",     /* surrogate */
        "\xf4\x90\x80\x80", /* past U+10FFFF */
        "\xf5\x80\x80\x80",
        "\xff",
        "\xfe",
        "\xe2\x28\xa1",         /* bad second byte */
        "\xe2\x82\x28",         /* bad third byte */
        "\xf0\x9f\x98\x28",     /* bad fourth byte */
        "0123456789abcdef\x80", /* past the 8-byte fast path */
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rl_buf_t out = RL_BUF_INIT;

        rl_buf_puts(&out, "keep");
        assert_int_equal(rl_repr_str(&out, bad[i], strlen(bad[i])), -1);
        assert_string_equal(rl_buf_cstr(&out), "keep");
        rl_buf_free(&out);
    }
}

/*
 * The fast path reads eight bytes at a time: put each kind of byte that
 * needs attention at every offset of a long ASCII run.
 */
static void test_fast_path_offsets(void **state)
{
    static const struct {
        const char *in, *out;
    } specials[] = {
        {"\\", "\\\\"},        {"'", "\\'"},  {"\x01", "\\x01"},
        {"\x7f", "\\x7f"},     {"\n", "\\n"}, {"\xc3\xa9", "\xc3\xa9"},
        {"\xc2\xa0", "\\xa0"}, {" ", " "},    {"~", "~"},
    };
    size_t k, pos;

    for (k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        for (pos = 0; pos < 40; pos++) {
            char in[128], want[160];

            /* A '"' keeps the quote choice fixed at single quotes. */
            snprintf(in, sizeof(in), "\"%.*s%s%.*s", (int)pos,
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN", specials[k].in,
                     (int)(40 - pos),
                     "0123456789012345678901234567890123456789");
            snprintf(want, sizeof(want), "'\"%.*s%s%.*s'", (int)pos,
                     "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN",
                     specials[k].out, (int)(40 - pos),
                     "0123456789012345678901234567890123456789");
            assert_repr(in, want);
        }
    }
}

static void test_isprintable(void **state)
{
    assert_true(rl_unicode_isprintable(' '));
    assert_true(rl_unicode_isprintable('~'));
    assert_false(rl_unicode_isprintable(0x1f));
    assert_false(rl_unicode_isprintable(0x7f));
    assert_false(rl_unicode_isprintable(0x85));
    assert_false(rl_unicode_isprintable(0xa0));
    assert_true(rl_unicode_isprintable(0xa1));
    assert_true(rl_unicode_isprintable(0x4e2d));
    assert_false(rl_unicode_isprintable(0xd800));
    assert_true(rl_unicode_isprintable(0x1f600));
    assert_false(rl_unicode_isprintable(0xe0001));
    assert_false(rl_unicode_isprintable(0x10ffff));
    assert_false(rl_unicode_isprintable(0x110000));
    assert_string_equal(rl__unicode_version, "14.0.0");
}

static void test_float_edges(void **state)
{
    assert_float(0.0, "0.0");
    assert_float(-0.0, "-0.0");
    assert_float(1.0, "1.0");
    assert_float(100.0, "100.0");
    assert_float(0.1, "0.1");
    assert_float(1.0 / 3, "0.3333333333333333");
    assert_float(0.1 + 0.2, "0.30000000000000004");
    assert_float(1e16, "1e+16");
    assert_float(1e15, "1000000000000000.0");
    assert_float(9999999999999998.0, "9999999999999998.0");
    assert_float(123456789012345678.0, "1.2345678901234568e+17");
    assert_float(0.0001, "0.0001");
    assert_float(0.00001, "1e-05");
    assert_float(1.5e-5, "1.5e-05");
    assert_float(-2.5e-7, "-2.5e-07");
    assert_float(1e100, "1e+100");
    assert_float(1e-100, "1e-100");
    assert_float(1.7976931348623157e308, "1.7976931348623157e+308");
    assert_float(2.2250738585072014e-308, "2.2250738585072014e-308");
    assert_float(5e-324, "5e-324");
    /* Powers of two, where the gap below is half the gap above. */
    assert_float(9007199254740992.0, "9007199254740992.0");
    assert_float(8.98846567431158e307, "8.98846567431158e+307");
    assert_float(1.0 / 0.0, "inf");
    assert_float(-1.0 / 0.0, "-inf");
}

static void assert_json_repr(const char *json, const char *expected)
{
    json_error_t err;
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    rl_buf_t out = RL_BUF_INIT;

    assert_non_null(v);
    assert_int_equal(rl_repr_json(&out, v), 0);
    assert_string_equal(rl_buf_cstr(&out), expected);
    rl_buf_free(&out);
    json_decref(v);
}

static void test_json_values(void **state)
{
    assert_json_repr("true", "True");
    assert_json_repr("false", "False");
    assert_json_repr("null", "None");
    assert_json_repr("0", "0");
    assert_json_repr("-0", "0");
    assert_json_repr("-9223372036854775808", "-9223372036854775808");
    assert_json_repr("9223372036854775807", "9223372036854775807");
    assert_json_repr("1E5", "100000.0");
    assert_json_repr("-0.0", "-0.0");
    assert_json_repr("[]", "[]");
    assert_json_repr("{}", "{}");
    assert_json_repr("[1, [2, []], {\"a\": null}]",
                     "[1, [2, []], {'a': None}]");
    assert_json_repr("{\"b\": 1, \"a\": [true, 1.5], \"it's\": \"\\u0000\"}",
                     "{'b': 1, 'a': [True, 1.5], \"it's\": '\\x00'}");
    /* A repeated key keeps its first place and its last value. */
    assert_json_repr("{\"x\": 1, \"y\": 2, \"x\": 3}", "{'x': 3, 'y': 2}");
}

/* Reads a whole fixture file, NUL-terminated. */
static char *slurp(const char *path, size_t *lenp)
{
    rl_buf_t buf = RL_BUF_INIT;
    char chunk[65536];
    FILE *f = fopen(path, "rb");
    size_t n;

    if (!f)
        fail_msg("cannot open %s (run from tests/)", path);
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0)
            break;
        rl_buf_append(&buf, chunk, n);
    }
    fclose(f);
    return rl_buf_steal(&buf, lenp);
}

/* Calls @p fn for each line of @p path, without its newline; returns the
 * number of lines. */
static size_t each_line(const char *path,
                        void (*fn)(char *line, size_t len, size_t lineno))
{
    char *text = slurp(path, NULL);
    char *p = text;
    size_t lineno = 0;

    while (*p) {
        char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        p[len] = '\0';
        fn(p, len, ++lineno);
        p += len + (nl ? 1 : 0);
    }
    free(text);
    return lineno;
}

static void check_float_line(char *line, size_t len, size_t lineno)
{
    json_t *v = json_loads(line, JSON_DECODE_ANY, NULL);
    rl_buf_t out = RL_BUF_INIT;

    assert_non_null(v);
    assert_true(json_is_real(v));
    rl_repr_float(&out, json_real_value(v));
    if (strcmp(rl_buf_cstr(&out), line) != 0)
        fail_msg("floats.txt:%zu: want %s, got %s", lineno, line,
                 rl_buf_cstr(&out));
    rl_buf_free(&out);
    json_decref(v);
}

static void test_float_fixture(void **state)
{
    assert_true(each_line("data/repr/floats.txt", check_float_line) > 20000);
}

/*
 * The _escaped twin must give exactly what escaping the plain output
 * for JSON gives.
 */
static void check_escaped_twin(const rl_buf_t *plain, const rl_buf_t *twin,
                               size_t lineno)
{
    rl_buf_t want = RL_BUF_INIT;

    rl_buf_json_escape(&want, plain->data, plain->len);
    if (want.len != twin->len || memcmp(want.data, twin->data, want.len) != 0)
        fail_msg("line %zu: escaped twin differs:\nwant %s\ngot  %s", lineno,
                 rl_buf_cstr(&want), twin->data);
    rl_buf_free(&want);
}

static void check_value_line(char *line, size_t len, size_t lineno)
{
    json_error_t err;
    json_t *rec = json_loadb(line, len, JSON_ALLOW_NUL, &err);
    json_t *want;
    rl_buf_t out = RL_BUF_INIT, twin = RL_BUF_INIT;

    if (!rec)
        fail_msg("values.jsonl:%zu: %s", lineno, err.text);
    want = json_object_get(rec, "r");
    assert_int_equal(rl_repr_json(&out, json_object_get(rec, "v")), 0);
    if (out.len != json_string_length(want) ||
        memcmp(out.data, json_string_value(want), out.len) != 0)
        fail_msg("values.jsonl:%zu: want %s\ngot %s", lineno,
                 json_string_value(want), rl_buf_cstr(&out));
    assert_int_equal(rl_repr_json_escaped(&twin, json_object_get(rec, "v")), 0);
    check_escaped_twin(&out, &twin, lineno);
    rl_buf_free(&out);
    rl_buf_free(&twin);
    json_decref(rec);
}

static void test_value_fixture(void **state)
{
    assert_true(each_line("data/repr/values.jsonl", check_value_line) > 3000);
}

static void put_utf8(rl_buf_t *buf, unsigned cp)
{
    char b[4];

    if (cp < 0x80) {
        rl_buf_putc(buf, (char)cp);
        return;
    }
    if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        rl_buf_append(buf, b, 2);
        return;
    }
    if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        rl_buf_append(buf, b, 3);
        return;
    }
    b[0] = (char)(0xf0 | (cp >> 18));
    b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    b[3] = (char)(0x80 | (cp & 0x3f));
    rl_buf_append(buf, b, 4);
}

static uint64_t fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

/* A line of allchars.txt: first last kind length fnv [repr]. */
static void check_block_line(char *line, size_t len, size_t lineno)
{
    unsigned first, last, cp;
    char kind;
    size_t want_len;
    unsigned long long want_hash;
    int off = 0;
    rl_buf_t in = RL_BUF_INIT, out = RL_BUF_INIT, twin = RL_BUF_INIT;

    if (sscanf(line, "%x %x %c %zu %llx%n", &first, &last, &kind, &want_len,
               &want_hash, &off) != 5)
        fail_msg("allchars.txt:%zu: malformed", lineno);

    for (cp = first; cp <= last; cp++) {
        if (cp < 0xd800 || cp > 0xdfff)
            put_utf8(&in, cp);
    }
    assert_int_equal(rl_repr_str(&out, in.data, in.len), 0);

    /* Mixed blocks carry CPython's text, for a readable failure. */
    if (kind == 'M')
        assert_string_equal(rl_buf_cstr(&out), line + off + 1);
    if (out.len != want_len || fnv1a64(out.data, out.len) != want_hash)
        fail_msg("allchars.txt:%zu: block %04x..%04x (%c) differs from "
                 "CPython",
                 lineno, first, last, kind);
    assert_int_equal(rl_repr_str_escaped(&twin, in.data, in.len), 0);
    check_escaped_twin(&out, &twin, lineno);
    rl_buf_free(&in);
    rl_buf_free(&out);
    rl_buf_free(&twin);
}

static void test_every_code_point(void **state)
{
    /* 0x110000 / 256 blocks, less the 8 all-surrogate ones. */
    assert_int_equal(each_line("data/repr/allchars.txt", check_block_line),
                     0x1100 - 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_choice),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_nul),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_fast_path_offsets),
        cmocka_unit_test(test_isprintable),
        cmocka_unit_test(test_float_edges),
        cmocka_unit_test(test_json_values),
        cmocka_unit_test(test_float_fixture),
        cmocka_unit_test(test_value_fixture),
        cmocka_unit_test(test_every_code_point),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
