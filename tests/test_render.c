/*
 * Tests of prompt rendering: the seed's worked example, byte for byte,
 * with evidence from the cache and inline; the join statistics; turns of
 * the wrong shape; and every generated case under data/render/ (see
 * tools/gen_render_fixtures.py), whose expected prompts CPython wrote.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/render.h"

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

static json_t *load_json(const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &err);

    if (!root)
        fail_msg("%s:%d: %s", path, err.line, err.text);
    return root;
}

/*
 * Applies the records of an evidence .jsonl file: {"key", "value"} with
 * the value as JSON (null for a tombstone), or {"key", "raw"} with the
 * exact bytes; "ok": false marks a record the cache must refuse.
 */
static rl_evcache_t *load_cache(const char *path)
{
    rl_evcache_t *cache = rl_evcache_new();
    char *text = slurp(path, NULL);
    char *line = text;

    while (*line) {
        char *nl = strchr(line, '\n');
        json_t *rec, *key, *value, *raw;
        char *dumped = NULL;
        const char *bytes = NULL;
        size_t len = 0;
        char err[256];
        int rc, want_ok;

        *nl = '\0';
        rec = json_loads(line, JSON_ALLOW_NUL, NULL);
        assert_non_null(rec);
        key = json_object_get(rec, "key");
        value = json_object_get(rec, "value");
        raw = json_object_get(rec, "raw");
        want_ok = !json_is_false(json_object_get(rec, "ok"));
        if (raw) {
            bytes = json_string_value(raw);
            len = json_string_length(raw);
        } else if (!json_is_null(value)) {
            dumped = json_dumps(value, JSON_COMPACT);
            bytes = dumped;
            len = strlen(dumped);
        }
        rc = rl_evcache_apply(cache, json_string_value(key),
                              json_string_length(key), bytes, len, err,
                              sizeof(err));
        if (rc != (want_ok ? 0 : -1))
            fail_msg("%s: record %s gave %d", path, line, rc);
        free(dumped);
        json_decref(rec);
        line = nl + 1;
    }
    free(text);
    return cache;
}

static rl_template_t *load_template(const char *path)
{
    char err[256];
    rl_template_t *tpl =
        rl_template_load(path, rl_render_names, err, sizeof(err));

    if (!tpl)
        fail_msg("%s", err);
    return tpl;
}

/* Points @p in at the fields of a query event. */
static void event_input(const json_t *event, rl_prompt_input_t *in)
{
    const json_t *query = json_object_get(event, "query");
    const json_t *rec = json_object_get(event, "recommended_answer");

    in->history = json_object_get(event, "history");
    in->query = json_string_value(query);
    in->query_len = json_string_length(query);
    in->recommended = rec ? json_string_value(rec) : "";
    in->recommended_len = rec ? json_string_length(rec) : 0;
}

/* rl_render_escaped() must append exactly the JSON escape of what
 * rl_render() appended as @p plain, with no statistics of its own. */
static void assert_escaped_twin(const rl_template_t *tpl,
                                const rl_prompt_input_t *in,
                                const rl_evcache_t *cache,
                                const rl_buf_t *plain, const char *path)
{
    rl_buf_t twin = RL_BUF_INIT, want = RL_BUF_INIT;
    char err[256] = "";

    rl_buf_putc(&twin, '>'); /* appends: earlier text stays */
    if (rl_render_escaped(tpl, in, cache, &twin, NULL, err, sizeof(err)) < 0)
        fail_msg("%s: escaped: %s", path, err);
    rl_buf_putc(&want, '>');
    rl_buf_json_escape(&want, plain->data, plain->len);
    if (twin.len != want.len || memcmp(twin.data, want.data, want.len) != 0)
        fail_msg("%s: the escaped prompt differs from the escaped plain one",
                 path);
    rl_buf_free(&twin);
    rl_buf_free(&want);
}

/* Renders the event file through the template; the prompt is in @p out
 * (which must start empty).  The escaped form is checked on the way. */
static int render_file(const char *event_path, const rl_template_t *tpl,
                       const rl_evcache_t *cache, rl_buf_t *out,
                       rl_render_stats_t *stats)
{
    json_t *event = load_json(event_path);
    rl_prompt_input_t in;
    char err[256] = "";
    int rc;

    event_input(event, &in);
    rc = rl_render(tpl, &in, cache, out, stats, err, sizeof(err));
    if (rc < 0)
        fail_msg("%s: %s", event_path, err);
    assert_escaped_twin(tpl, &in, cache, out, event_path);
    json_decref(event);
    return rc;
}

/* Compares a prompt with the expected file, naming the first difference. */
static void assert_prompt(const rl_buf_t *out, const char *expected_path)
{
    size_t len, i;
    char *want = slurp(expected_path, &len);

    for (i = 0; i < len && i < out->len && want[i] == out->data[i]; i++)
        ;
    if (i < len || out->len != len)
        fail_msg("%s: differs at byte %zu (want %zu bytes, got %zu)\n"
                 "want: %.60s\ngot:  %.60s",
                 expected_path, i, len, out->len, want + i,
                 i < out->len ? out->data + i : "");
    free(want);
}

static void test_example_from_cache(void **state)
{
    rl_template_t *tpl = load_template("../templates/default.txt");
    rl_evcache_t *cache = load_cache("data/contrastive.evidence.jsonl");
    rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
    rl_buf_t out = RL_BUF_INIT;

    render_file("data/contrastive.event.json", tpl, cache, &out, &stats);
    assert_prompt(&out, "data/contrastive.prompt.txt");
    assert_int_equal(stats.queries, 3);
    assert_int_equal(stats.found, 3);
    assert_int_equal(stats.missing, 0);
    assert_int_equal(stats.inline_turns, 0);
    assert_int_equal(json_array_size(stats.missing_list), 0);

    json_decref(stats.missing_list);
    rl_buf_free(&out);
    rl_evcache_destroy(cache);
    rl_template_destroy(tpl);
}

static void test_example_inline(void **state)
{
    rl_template_t *tpl = load_template("../templates/default.txt");
    rl_render_stats_t stats = {0, 0, 0, 0, NULL};
    rl_buf_t out = RL_BUF_INIT;

    render_file("data/contrastive-inline.event.json", tpl, NULL, &out, &stats);
    assert_prompt(&out, "data/contrastive.prompt.txt");
    assert_int_equal(stats.queries, 0);
    assert_int_equal(stats.inline_turns, 1);

    rl_buf_free(&out);
    rl_template_destroy(tpl);
}

/* With one query deleted from the cache, its evidence renders as []. */
static void test_example_missing_query(void **state)
{
    static const char gone[] =
        "'Examples of contrastive learning in computer vision.'";
    static const char q1[] =
        "'Explanation of contrastive learning in machine learning.'";
    static const char q3[] = "'Comparison of contrastive learning with "
                             "other types of unsupervised learning.'";
    rl_template_t *tpl = load_template("../templates/default.txt");
    rl_evcache_t *cache = load_cache("data/contrastive.evidence.jsonl");
    rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
    rl_buf_t out = RL_BUF_INIT, miss = RL_BUF_INIT;
    const char *first, *third;
    size_t first_len, third_len;

    assert_int_equal(
        rl_evcache_apply(cache, gone, strlen(gone), NULL, 0, NULL, 0), 0);
    render_file("data/contrastive.event.json", tpl, cache, &out, &stats);
    assert_int_equal(stats.queries, 3);
    assert_int_equal(stats.found, 2);
    assert_int_equal(stats.missing, 1);
    assert_int_equal(json_array_size(stats.missing_list), 1);
    assert_string_equal(
        json_string_value(json_array_get(stats.missing_list, 0)), gone);

    /* The evidence list is [first, [], third], each from the cache. */
    first = rl_evcache_get(cache, q1, strlen(q1), &first_len);
    third = rl_evcache_get(cache, q3, strlen(q3), &third_len);
    assert_non_null(first);
    assert_non_null(third);
    rl_buf_puts(&miss, "'all_evidences': [");
    assert_int_equal(rl_buf_json_unescape(&miss, first, first_len), 0);
    rl_buf_puts(&miss, ", [], ");
    assert_int_equal(rl_buf_json_unescape(&miss, third, third_len), 0);
    rl_buf_puts(&miss, "], 'all_queries': [");
    assert_non_null(strstr(rl_buf_cstr(&out), rl_buf_cstr(&miss)));

    /* With no cache at all, every lookup misses. */
    rl_buf_reset(&out);
    render_file("data/contrastive.event.json", tpl, NULL, &out, &stats);
    assert_int_equal(stats.missing, 4);
    assert_int_equal(json_array_size(stats.missing_list), 4);
    assert_non_null(strstr(rl_buf_cstr(&out),
                           "'all_evidences': [[], [], []], 'all_queries': "
                           "[\"'Explanation"));

    json_decref(stats.missing_list);
    rl_buf_free(&miss);
    rl_buf_free(&out);
    rl_evcache_destroy(cache);
    rl_template_destroy(tpl);
}

/* Renders a history given as JSON through "$cur_history_with_context". */
static int render_history(const char *history_json, rl_buf_t *out,
                          rl_render_stats_t *stats, char *err, size_t err_size)
{
    rl_template_t *tpl;
    rl_prompt_input_t in = {NULL, "q", 1, "", 0};
    json_t *history = json_loads(history_json, JSON_DECODE_ANY, NULL);
    int rc;

    assert_non_null(history);
    tpl = rl_template_parse("[$cur_history_with_context]", 27, rl_render_names,
                            NULL, err, err_size);
    assert_non_null(tpl);
    in.history = history;
    rc = rl_render(tpl, &in, NULL, out, stats, err, err_size);
    rl_template_destroy(tpl);
    json_decref(history);
    return rc;
}

static void assert_history(const char *history_json, const char *expected)
{
    rl_buf_t out = RL_BUF_INIT;
    char err[256] = "";

    if (render_history(history_json, &out, NULL, err, sizeof(err)) < 0)
        fail_msg("%s: %s", history_json, err);
    assert_string_equal(rl_buf_cstr(&out), expected);
    rl_buf_free(&out);
}

static void test_turn_shapes(void **state)
{
    assert_history("[]", "[]");
    assert_history("[{\"role\": \"user\", \"content\": \"hi\"}, "
                   "{\"content\": \"yo\", \"role\": \"assistant\", "
                   "\"extra\": 1}]",
                   "[{'role': 'user', 'content': 'hi'}\n"
                   "{'role': 'assistant', 'content': 'yo'}]");
    /* Evidence without queries renders an empty query list. */
    assert_history("[{\"role\": \"user\", \"content\": \"c\", "
                   "\"all_evidences\": [[{\"t\": 1}]]}]",
                   "[{'role': 'user', 'content': 'c', 'all_evidences': "
                   "[[{'t': 1}]], 'all_queries': []}]");
    assert_history("[{\"all_queries\": [], \"role\": \"user\", "
                   "\"content\": \"c\"}]",
                   "[{'role': 'user', 'content': 'c', 'all_evidences': [], "
                   "'all_queries': []}]");
    /* null counts as absent. */
    assert_history("[{\"role\": \"user\", \"content\": \"c\", "
                   "\"all_queries\": null, \"all_evidences\": null}]",
                   "[{'role': 'user', 'content': 'c'}]");
}

static void test_wrong_shapes(void **state)
{
    static const struct {
        const char *history, *err;
    } cases[] = {
        {"{}", "history: expected a list of turns"},
        {"[1]", "history[0]: expected an object"},
        {"[{\"role\": \"user\", \"content\": \"c\"}, []]",
         "history[1]: expected an object"},
        {"[{\"content\": \"c\"}]", "history[0].role: expected a string"},
        {"[{\"role\": 1, \"content\": \"c\"}]",
         "history[0].role: expected a string"},
        {"[{\"role\": \"user\"}]", "history[0].content: expected a string"},
        {"[{\"role\": \"user\", \"content\": [\"c\"]}]",
         "history[0].content: expected a string"},
        {"[{\"role\": \"user\", \"content\": \"c\", \"all_queries\": \"q\"}]",
         "history[0].all_queries: expected a list of strings"},
        {"[{\"role\": \"user\", \"content\": \"c\", \"all_queries\": [1]}]",
         "history[0].all_queries: expected a list of strings"},
        {"[{\"role\": \"user\", \"content\": \"c\", \"all_evidences\": {}}]",
         "history[0].all_evidences: expected a list"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
        rl_buf_t out = RL_BUF_INIT;
        char err[256] = "";

        rl_buf_puts(&out, "before");
        assert_int_equal(
            render_history(cases[i].history, &out, &stats, err, sizeof(err)),
            -1);
        assert_string_equal(err, cases[i].err);
        /* Nothing is left behind in the buffer or the stats. */
        assert_string_equal(rl_buf_cstr(&out), "before");
        assert_int_equal(stats.queries, 0);
        json_decref(stats.missing_list);
        rl_buf_free(&out);
    }
}

/* A failure after some misses leaves the missing list as it was. */
static void test_failure_rolls_back_missing(void **state)
{
    rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
    rl_buf_t out = RL_BUF_INIT;
    char err[256];

    json_array_append_new(stats.missing_list, json_string("older"));
    assert_int_equal(render_history("[{\"role\": \"u\", \"content\": \"c\", "
                                    "\"all_queries\": [\"a\", \"b\"]}, 5]",
                                    &out, &stats, err, sizeof(err)),
                     -1);
    assert_int_equal(json_array_size(stats.missing_list), 1);
    assert_int_equal(stats.missing, 0);
    json_decref(stats.missing_list);
    rl_buf_free(&out);
}

static void assert_stats(const rl_render_stats_t *got, const char *path)
{
    json_t *want = load_json(path);
    json_t *list = json_object_get(want, "missing_list");
    size_t i;

    assert_int_equal(got->queries,
                     json_integer_value(json_object_get(want, "queries")));
    assert_int_equal(got->found,
                     json_integer_value(json_object_get(want, "found")));
    assert_int_equal(got->missing,
                     json_integer_value(json_object_get(want, "missing")));
    assert_int_equal(got->inline_turns,
                     json_integer_value(json_object_get(want, "inline_turns")));
    assert_int_equal(json_array_size(got->missing_list), json_array_size(list));
    for (i = 0; i < json_array_size(list); i++)
        assert_true(json_equal(json_array_get(got->missing_list, i),
                               json_array_get(list, i)));
    json_decref(want);
}

static void run_case(const char *name, const char *tpl_path)
{
    rl_template_t *tpl = load_template(tpl_path);
    rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
    rl_buf_t out = RL_BUF_INIT;
    rl_evcache_t *cache;
    char path[256];

    snprintf(path, sizeof(path), "data/render/%s.evidence.jsonl", name);
    cache = load_cache(path);
    snprintf(path, sizeof(path), "data/render/%s.event.json", name);
    render_file(path, tpl, cache, &out, &stats);
    snprintf(path, sizeof(path), "data/render/%s.prompt.txt", name);
    assert_prompt(&out, path);
    snprintf(path, sizeof(path), "data/render/%s.stats.json", name);
    assert_stats(&stats, path);

    json_decref(stats.missing_list);
    rl_buf_free(&out);
    rl_evcache_destroy(cache);
    rl_template_destroy(tpl);
}

static void test_generated_cases(void **state)
{
    char *index = slurp("data/render/index.txt", NULL);
    char *line = index;
    size_t cases = 0;

    while (*line) {
        char name[64], tpl_path[128];

        if (sscanf(line, "%63s %127s", name, tpl_path) != 2)
            fail_msg("data/render/index.txt: malformed line");
        run_case(name, tpl_path);
        cases++;
        line = strchr(line, '\n') + 1;
    }
    free(index);
    assert_true(cases >= 300);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_from_cache),
        cmocka_unit_test(test_example_inline),
        cmocka_unit_test(test_example_missing_query),
        cmocka_unit_test(test_turn_shapes),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_failure_rolls_back_missing),
        cmocka_unit_test(test_generated_cases),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
