/*
 * Tests of template parsing: Python string.Template syntax, and every
 * way a template is refused at load time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/render.h"
#include "ragline/template.h"

static const char *const names[] = {"name", "other", "_x1", NULL};

/*
 * Parses @p text and flattens the parts back: literal text as is, a
 * placeholder as <slot>.  Returns the flat form (free it), or NULL with
 * the error in @p err.
 */
static char *flatten(const char *text, char *err, size_t err_size)
{
    rl_template_t *tpl;
    const rl_template_part_t *parts;
    rl_buf_t out = RL_BUF_INIT;
    size_t i, n;

    tpl = rl_template_parse(text, strlen(text), names, "t.txt", err, err_size);
    if (!tpl)
        return NULL;
    parts = rl_template_parts(tpl, &n);
    for (i = 0; i < n; i++) {
        if (parts[i].slot < 0) {
            assert_true(parts[i].len > 0);
            rl_buf_append(&out, parts[i].text, parts[i].len);
            continue;
        }
        /* A placeholder's text is its name. */
        assert_int_equal(parts[i].len, strlen(names[parts[i].slot]));
        assert_memory_equal(parts[i].text, names[parts[i].slot], parts[i].len);
        rl_buf_printf(&out, "<%d>", parts[i].slot);
    }
    rl_template_destroy(tpl);
    return rl_buf_steal(&out, NULL);
}

static void assert_parses(const char *text, const char *expected)
{
    char err[256] = "";
    char *flat = flatten(text, err, sizeof(err));

    if (!flat)
        fail_msg("\"%s\" refused: %s", text, err);
    assert_string_equal(flat, expected);
    free(flat);
}

static void assert_refused(const char *text, const char *expected_err)
{
    char err[256] = "";
    char *flat = flatten(text, err, sizeof(err));

    if (flat)
        fail_msg("\"%s\" accepted as \"%s\"", text, flat);
    assert_string_equal(err, expected_err);
}

static void test_literal_only(void **state)
{
    assert_parses("", "");
    assert_parses("plain text\nwith lines\n", "plain text\nwith lines\n");
}

static void test_dollar_escape(void **state)
{
    assert_parses("$$", "$");
    assert_parses("a$$b", "a$b");
    assert_parses("$$$$", "$$");
    assert_parses("cost: $$5", "cost: $5");
    assert_parses("$$name", "$name");
    assert_parses("$name$$", "<0>$");
}

static void test_placeholders(void **state)
{
    assert_parses("$name", "<0>");
    assert_parses("${name}", "<0>");
    assert_parses("a $name b ${other}c", "a <0> b <1>c");
    assert_parses("$name.$other", "<0>.<1>");
    assert_parses("${name}${name}", "<0><0>");
    assert_parses("$_x1 ${_x1}", "<2> <2>");
    assert_parses("x$name\n$other\n", "x<0>\n<1>\n");
    /* A name is as long as it can be: "$names" is not "$name" + "s". */
    assert_refused("$names", "t.txt:1:1: unknown placeholder \"names\"");
    assert_parses("${name}s", "<0>s");
    assert_parses("$name-x", "<0>-x");
}

static void test_invalid_placeholders(void **state)
{
    static const struct {
        const char *text;
        const char *where;
    } cases[] = {
        {"$", "t.txt:1:1"},          {"abc $", "t.txt:1:5"},
        {"$ name", "t.txt:1:1"},     {"$1", "t.txt:1:1"},
        {"${", "t.txt:1:1"},         {"${name", "t.txt:1:1"},
        {"${1}", "t.txt:1:1"},       {"${ name}", "t.txt:1:1"},
        {"${name }", "t.txt:1:1"},   {"${na-me}", "t.txt:1:1"},
        {"${}", "t.txt:1:1"},        {"$-", "t.txt:1:1"},
        {"a\nbc\n  $", "t.txt:3:3"}, {"ok $name\n$$ $\xc3\xa9", "t.txt:2:4"},
        {"$$$", "t.txt:1:3"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char want[256];

        snprintf(want, sizeof(want),
                 "%s: invalid placeholder: \"$\" must be followed by \"$\", "
                 "a name or {name}",
                 cases[i].where);
        assert_refused(cases[i].text, want);
    }
}

static void test_unknown_names(void **state)
{
    assert_refused("$nope", "t.txt:1:1: unknown placeholder \"nope\"");
    assert_refused("x\n ${nope}", "t.txt:2:2: unknown placeholder \"nope\"");
    assert_refused("$Name", "t.txt:1:1: unknown placeholder \"Name\"");
}

static void test_no_names(void **state)
{
    char err[256];
    rl_template_t *tpl;

    tpl = rl_template_parse("$name", 5, NULL, NULL, err, sizeof(err));
    assert_null(tpl);
    assert_string_equal(err, "<default>:1:1: unknown placeholder \"name\"");
}

static void test_small_errstr(void **state)
{
    char err[8];

    assert_null(rl_template_parse("$", 1, names, "t.txt", err, sizeof(err)));
    assert_string_equal(err, "t.txt:1");
    assert_null(rl_template_parse("$", 1, names, "t.txt", NULL, 0));
}

static void test_nul_in_text(void **state)
{
    char err[256];
    const rl_template_part_t *parts;
    rl_template_t *tpl;
    size_t n;

    tpl = rl_template_parse("a\0$name", 7, names, "t.txt", err, sizeof(err));
    assert_non_null(tpl);
    parts = rl_template_parts(tpl, &n);
    assert_int_equal(n, 2);
    assert_int_equal(parts[0].len, 2);
    assert_memory_equal(parts[0].text, "a\0", 2);
    assert_int_equal(parts[1].slot, 0);
    rl_template_destroy(tpl);
}

static void test_default_template(void **state)
{
    char err[256];
    const rl_template_part_t *parts;
    rl_template_t *tpl;
    int seen[3] = {0, 0, 0};
    size_t i, n;

    tpl = rl_template_parse(rl_default_template, rl_default_template_len,
                            rl_render_names, NULL, err, sizeof(err));
    assert_non_null(tpl);
    parts = rl_template_parts(tpl, &n);
    for (i = 0; i < n; i++) {
        if (parts[i].slot >= 0)
            seen[parts[i].slot]++;
    }
    assert_int_equal(seen[0], 1);
    assert_int_equal(seen[1], 1);
    assert_int_equal(seen[2], 1);
    rl_template_destroy(tpl);
}

static void test_load(void **state)
{
    char err[256];
    rl_template_t *tpl;
    size_t n;

    tpl = rl_template_load("../templates/default.txt", rl_render_names, err,
                           sizeof(err));
    assert_non_null(tpl);
    rl_template_parts(tpl, &n);
    assert_int_equal(n, 7);
    rl_template_destroy(tpl);

    /* Errors name the file the template came from. */
    tpl = rl_template_load("../templates/default.txt", names, err, sizeof(err));
    assert_null(tpl);
    assert_non_null(strstr(err, "../templates/default.txt:"));
    assert_non_null(strstr(err, "unknown placeholder"));

    tpl =
        rl_template_load("data/no-such-template.txt", names, err, sizeof(err));
    assert_null(tpl);
    assert_string_equal(err, "data/no-such-template.txt: cannot open "
                             "template: No such file or directory");

    rl_template_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literal_only),
        cmocka_unit_test(test_dollar_escape),
        cmocka_unit_test(test_placeholders),
        cmocka_unit_test(test_invalid_placeholders),
        cmocka_unit_test(test_unknown_names),
        cmocka_unit_test(test_no_names),
        cmocka_unit_test(test_small_errstr),
        cmocka_unit_test(test_nul_in_text),
        cmocka_unit_test(test_default_template),
        cmocka_unit_test(test_load),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
