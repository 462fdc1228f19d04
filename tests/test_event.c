/*
 * Tests of query event parsing and answer event writing.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "ragline/event.h"

static const rl_limits_t limits = {1048576, 64, 1000};

static char *read_file(const char *path, size_t *len)
{
    char *text = NULL;
    size_t cap = 0;
    FILE *fp = fopen(path, "r");
    ssize_t n;

    assert_non_null(fp);
    n = getdelim(&text, &cap, '\0', fp);
    assert_true(n > 0);
    fclose(fp);
    *len = (size_t)n;
    return text;
}

static rl_errclass_t parse_str(rl_event_t *ev, const char *json,
                               const rl_limits_t *lim, char *err,
                               size_t err_size)
{
    return rl_event_parse(ev, json, strlen(json), NULL, 0, lim, err, err_size);
}

/* The example events parse, and the event points at what jansson reads
 * from the same file. */
static void check_example(const char *path, size_t turns)
{
    rl_event_t ev;
    json_t *ref;
    char err[256];
    size_t len;
    char *text = read_file(path, &len);

    ref = json_loadb(text, len, 0, NULL);
    assert_non_null(ref);
    assert_int_equal(
        rl_event_parse(&ev, text, len, "key", 3, &limits, err, sizeof(err)),
        RL_ERR_NONE);
    assert_string_equal(ev.id, json_string_value(json_object_get(ref, "id")));
    assert_string_equal(ev.conversation_id, "contrastive");
    assert_null(ev.conversation_owned);
    assert_string_equal(ev.prompt.query,
                        json_string_value(json_object_get(ref, "query")));
    assert_int_equal(ev.prompt.query_len, strlen(ev.prompt.query));
    assert_string_equal(
        ev.prompt.recommended,
        json_string_value(json_object_get(ref, "recommended_answer")));
    assert_int_equal(ev.prompt.recommended_len, strlen(ev.prompt.recommended));
    assert_non_null(ev.prompt.history);
    assert_int_equal(json_array_size(ev.prompt.history), turns);
    assert_true(json_equal((json_t *)ev.prompt.history,
                           json_object_get(ref, "history")));

    rl_event_clear(&ev);
    assert_null(ev.root);
    json_decref(ref);
    free(text);
}

static void test_examples_parse(void **state)
{
    check_example("data/contrastive.event.json", 2);
    check_example("data/contrastive-inline.event.json", 2);
}

static void test_defaults_and_key(void **state)
{
    const char *plain = "{\"id\":\"r1\",\"query\":\"q?\"}";
    const char *nulls =
        "{\"id\":\"r1\",\"query\":\"q?\",\"conversation_id\":null,"
        "\"recommended_answer\":null,\"history\":[{\"role\":\"user\","
        "\"content\":\"c\",\"all_queries\":null,\"all_evidences\":null}]}";
    rl_event_t ev;
    char err[256];

    assert_int_equal(rl_event_parse(&ev, plain, strlen(plain), "conv-7", 6,
                                    &limits, err, sizeof(err)),
                     RL_ERR_NONE);
    assert_string_equal(ev.id, "r1");
    assert_string_equal(ev.conversation_id, "conv-7");
    assert_string_equal(ev.prompt.recommended, "");
    assert_int_equal(ev.prompt.recommended_len, 0);
    assert_null(ev.prompt.history);
    rl_event_clear(&ev);

    /* Optional fields set to null count as absent. */
    assert_int_equal(rl_event_parse(&ev, nulls, strlen(nulls), "conv-8", 6,
                                    &limits, err, sizeof(err)),
                     RL_ERR_NONE);
    assert_string_equal(ev.conversation_id, "conv-8");
    assert_string_equal(ev.prompt.recommended, "");
    assert_int_equal(json_array_size(ev.prompt.history), 1);
    rl_event_clear(&ev);

    /* No key either: the conversation id is empty. */
    assert_int_equal(parse_str(&ev, plain, &limits, err, sizeof(err)),
                     RL_ERR_NONE);
    assert_string_equal(ev.conversation_id, "");
    rl_event_clear(&ev);
}

/* Every way an event can be refused, with its class and message. */
static void test_validation_errors(void **state)
{
    static const struct {
        const char *json;
        rl_errclass_t cls;
        const char *err;
    } cases[] = {
        {"[1]", RL_ERR_INVALID_EVENT,
         "event: expected an object, got an array"},
        {"\"s\"", RL_ERR_INVALID_EVENT,
         "event: expected an object, got a string"},
        {"{\"query\":\"q\"}", RL_ERR_INVALID_EVENT, "id: missing"},
        {"{\"id\":7,\"query\":\"q\"}", RL_ERR_INVALID_EVENT,
         "id: expected a string, got an integer"},
        {"{\"id\":\"\",\"query\":\"q\"}", RL_ERR_INVALID_EVENT,
         "id: must not be empty"},
        {"{\"id\":\"a\\u0000b\",\"query\":\"q\"}", RL_ERR_INVALID_EVENT,
         "id: must not contain \\u0000"},
        {"{\"id\":\"i\",\"conversation_id\":5,\"query\":\"q\"}",
         RL_ERR_INVALID_EVENT,
         "conversation_id: expected a string, got an integer"},
        {"{\"id\":null,\"query\":\"q\"}", RL_ERR_INVALID_EVENT,
         "id: expected a string, got null"},
        {"{\"id\":\"i\",\"conversation_id\":\"c\\u0000\",\"query\":\"q\"}",
         RL_ERR_INVALID_EVENT, "conversation_id: must not contain \\u0000"},
        {"{\"id\":\"i\"}", RL_ERR_INVALID_EVENT, "query: missing"},
        {"{\"id\":\"i\",\"query\":[]}", RL_ERR_INVALID_EVENT,
         "query: expected a string, got an array"},
        {"{\"id\":\"i\",\"query\":\"q\",\"recommended_answer\":1.5}",
         RL_ERR_INVALID_EVENT,
         "recommended_answer: expected a string, got a real number"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":{}}", RL_ERR_INVALID_EVENT,
         "history: expected an array, got an object"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":[true]}",
         RL_ERR_INVALID_EVENT, "history[0]: expected an object, got a boolean"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":[{\"content\":\"c\"}]}",
         RL_ERR_INVALID_EVENT, "history[0].role: missing"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\"},"
         "{\"role\":\"system\",\"content\":\"c\"}]}",
         RL_ERR_INVALID_EVENT,
         "history[1].role: expected \"user\" or \"assistant\""},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":[{\"role\":\"user\"}]}",
         RL_ERR_INVALID_EVENT, "history[0].content: missing"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":null}]}",
         RL_ERR_INVALID_EVENT,
         "history[0].content: expected a string, got null"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\",\"all_queries\":\"x\"}]}",
         RL_ERR_INVALID_EVENT,
         "history[0].all_queries: expected an array, got a string"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":[{},{},{},"
         "{\"role\":\"user\",\"content\":\"c\",\"all_queries\":[\"a\",2]}]}",
         RL_ERR_INVALID_EVENT, "history[0].role: missing"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\"},"
         "{\"role\":\"assistant\",\"content\":\"c\"},"
         "{\"role\":\"user\",\"content\":\"c\"},"
         "{\"role\":\"user\",\"content\":\"c\",\"all_queries\":[\"a\",2]}]}",
         RL_ERR_INVALID_EVENT,
         "history[3].all_queries[1]: expected a string, got an integer"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\",\"all_evidences\":{}}]}",
         RL_ERR_INVALID_EVENT,
         "history[0].all_evidences: expected an array, got an object"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\",\"all_evidences\":[[],{}]}]}",
         RL_ERR_INVALID_EVENT,
         "history[0].all_evidences[1]: expected an array, got an object"},
        {"{\"id\":\"i\",\"query\":\"q\",\"history\":["
         "{\"role\":\"user\",\"content\":\"c\","
         "\"all_evidences\":[[{\"title\":1}],[{},\"t\"]]}]}",
         RL_ERR_INVALID_EVENT,
         "history[0].all_evidences[1][1]: expected an object, got a string"},
        {"{\"id\":\"a\",\"id\":\"b\",\"query\":\"q\"}", RL_ERR_INVALID_JSON,
         "line 1 column 11: duplicate object key \"id\""},
        {"{\"id\":\"i\",", RL_ERR_INVALID_JSON,
         "line 1 column 11: expected a string key, found the end of the text"},
        {"", RL_ERR_INVALID_JSON, "the message value is empty"},
        {"{\"id\":\"i\"} x", RL_ERR_INVALID_JSON,
         "line 1 column 12: expected the end of the text after the value, "
         "found 'x'"},
    };
    char err[256];
    rl_event_t ev;
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rl_errclass_t cls =
            parse_str(&ev, cases[i].json, &limits, err, sizeof(err));

        if (cls != cases[i].cls || strcmp(err, cases[i].err) != 0)
            fail_msg("case %zu: got %s '%s', want %s '%s'", i,
                     rl_errclass_name(cls), err, rl_errclass_name(cases[i].cls),
                     cases[i].err);
        /* A refused event is left clear. */
        assert_null(ev.root);
        assert_null(ev.conversation_owned);
        rl_event_clear(&ev);
    }
}

static void test_invalid_utf8_refused(void **state)
{
    const char json[] = "{\"id\":\"i\",\"query\":\"caf\xe9\"}";
    rl_event_t ev;
    char err[256];

    assert_int_equal(parse_str(&ev, json, &limits, err, sizeof(err)),
                     RL_ERR_INVALID_JSON);
    assert_string_equal(err, "line 1 column 23: invalid UTF-8 byte 0xe9 in a "
                             "string");
    assert_int_equal(
        rl_event_parse(&ev, NULL, 0, NULL, 0, &limits, err, sizeof(err)),
        RL_ERR_INVALID_JSON);
}

static void test_size_limit(void **state)
{
    const char *json = "{\"id\":\"i\",\"query\":\"0123456789\"}";
    rl_limits_t lim = limits;
    rl_event_t ev;
    char err[256], want[256];

    lim.event_bytes = strlen(json);
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)), RL_ERR_NONE);
    rl_event_clear(&ev);

    lim.event_bytes = strlen(json) - 1;
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)),
                     RL_ERR_LIMIT);
    snprintf(want, sizeof(want),
             "event is %zu bytes, more than limits.event.bytes (%zu)",
             strlen(json), lim.event_bytes);
    assert_string_equal(err, want);
}

/* An event whose "x" member nests @p depth - 1 arrays (depth counts the
 * event object too). */
static char *nested(int depth, const char *inner)
{
    rl_buf_t b = RL_BUF_INIT;
    int i;

    rl_buf_puts(&b, "{\"id\":\"i\",\"query\":\"q\",\"x\":");
    for (i = 1; i < depth; i++)
        rl_buf_putc(&b, '[');
    rl_buf_puts(&b, inner);
    for (i = 1; i < depth; i++)
        rl_buf_putc(&b, ']');
    rl_buf_putc(&b, '}');
    return rl_buf_steal(&b, NULL);
}

static void test_depth_limit(void **state)
{
    rl_limits_t lim = limits;
    rl_event_t ev;
    char err[256], brackets[2001], *json;

    lim.max_depth = 8;
    json = nested(8, "");
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)), RL_ERR_NONE);
    rl_event_clear(&ev);
    free(json);

    json = nested(9, "");
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)),
                     RL_ERR_LIMIT);
    assert_string_equal(err, "event nests deeper than limits.depth (8), at "
                             "line 1 column 34");
    free(json);

    /* A deep bomb is refused before jansson recurses into it. */
    json = nested(100000, "");
    assert_int_equal(parse_str(&ev, json, &limits, err, sizeof(err)),
                     RL_ERR_LIMIT);
    free(json);

    /* Brackets inside strings, escaped quotes included, do not count. */
    memset(brackets, '[', sizeof(brackets) - 1);
    brackets[sizeof(brackets) - 1] = '\0';
    memcpy(brackets, "\"\\\"", 3);
    brackets[sizeof(brackets) - 2] = '"';
    json = nested(8, brackets);
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)), RL_ERR_NONE);
    rl_event_clear(&ev);
    free(json);
}

static void test_turn_limit(void **state)
{
    const char *json = "{\"id\":\"i\",\"query\":\"q\",\"history\":["
                       "{\"role\":\"user\",\"content\":\"a\"},"
                       "{\"role\":\"assistant\",\"content\":\"b\"},"
                       "{\"role\":\"user\",\"content\":\"c\"}]}";
    rl_limits_t lim = limits;
    rl_event_t ev;
    char err[256];

    lim.max_turns = 3;
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)), RL_ERR_NONE);
    rl_event_clear(&ev);

    lim.max_turns = 2;
    assert_int_equal(parse_str(&ev, json, &lim, err, sizeof(err)),
                     RL_ERR_LIMIT);
    assert_string_equal(err, "history has 3 turns, more than limits.turns (2)");
}

static void test_nul_in_strings(void **state)
{
    const char *json = "{\"id\":\"i\",\"query\":\"a\\u0000b\","
                       "\"recommended_answer\":\"\\u0000\","
                       "\"history\":[{\"role\":\"user\","
                       "\"content\":\"x\\u0000y\"}]}";
    rl_event_t ev;
    char err[256];
    const json_t *content;

    assert_int_equal(parse_str(&ev, json, &limits, err, sizeof(err)),
                     RL_ERR_NONE);
    assert_int_equal(ev.prompt.query_len, 3);
    assert_memory_equal(ev.prompt.query, "a\0b", 3);
    assert_int_equal(ev.prompt.recommended_len, 1);
    assert_int_equal(ev.prompt.recommended[0], '\0');
    content = json_object_get(json_array_get(ev.prompt.history, 0), "content");
    assert_int_equal(json_string_length(content), 3);
    rl_event_clear(&ev);
}

static void test_peek_id(void **state)
{
    static const struct {
        const char *json;
        const char *id;
    } cases[] = {
        {"{\"id\":\"abc\",\"query\":5}", "abc"},
        {"{\"query\":5,\"id\":\"x\\ny\\u0000z\"}", "x?y?z"},
        {"{\"id\":7}", ""},
        {"[\"id\"]", ""},
        {"{\"id\":\"abc\"", ""},
        {"not json", ""},
    };
    const char *utf8_id = "{\"id\":\"abc\xc3\xa9\"}";
    char dst[16];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(dst, 'Z', sizeof(dst));
        rl_event_peek_id(cases[i].json, strlen(cases[i].json), dst,
                         sizeof(dst));
        assert_string_equal(dst, cases[i].id);
    }

    /* Cut to fit, but never inside a character: "é" is two bytes. */
    rl_event_peek_id(utf8_id, strlen(utf8_id), dst, 5);
    assert_string_equal(dst, "abc");
    rl_event_peek_id(utf8_id, strlen(utf8_id), dst, 6);
    assert_string_equal(dst, "abc\xc3\xa9");
}

static void test_errclass_names(void **state)
{
    assert_string_equal(rl_errclass_name(RL_ERR_INVALID_JSON), "invalid_json");
    assert_string_equal(rl_errclass_name(RL_ERR_INVALID_EVENT),
                        "invalid_event");
    assert_string_equal(rl_errclass_name(RL_ERR_LIMIT), "limit_exceeded");
    assert_string_equal(rl_errclass_name(RL_ERR_RENDER), "render_failed");
    assert_string_equal(rl_errclass_name(RL_ERR_BACKEND), "backend_failed");
    assert_string_equal(rl_errclass_name(RL_ERR_PRODUCE), "produce_failed");
}

static rl_answer_t sample_answer(const rl_render_stats_t *stats)
{
    rl_answer_t a = {0};

    a.id = "req-\"1\"";
    a.conversation_id = "conv\n1";
    a.answer = "Hello, \xe4\xb8\x96\xe7\x95\x8c!\n\"quoted\" \\ \t";
    a.answer_len = strlen(a.answer);
    a.backend = "openai-chat";
    a.model = "m-7b";
    a.finish_reason = "stop";
    a.prompt_tokens = 120;
    a.completion_tokens = 30;
    a.total_tokens = 150;
    a.evidence = stats;
    a.queued_ms = 1.5;
    a.backend_ms = 250.25;
    a.total_ms = 251.875;
    a.topic = "ragline.queries";
    a.partition = 3;
    a.offset = 9007199254740993LL;
    return a;
}

static json_t *write_and_load(const rl_answer_t *a, rl_buf_t *out)
{
    json_error_t jerr;
    json_t *root;

    rl_buf_reset(out);
    rl_answer_write(out, a);
    root = json_loadb(out->data, out->len, JSON_ALLOW_NUL, &jerr);
    if (!root)
        fail_msg("answer is not JSON: %s: %s", jerr.text, out->data);
    return root;
}

/* Latencies print with three decimals, rounded, whatever the value. */
static void test_answer_latency_digits(void **state)
{
    static const struct {
        double ms;
        const char *text;
    } cases[] = {
        {0, "\"queued\":0.000,"},
        {0.0004, "\"queued\":0.000,"},
        {0.0006, "\"queued\":0.001,"},
        {-0.0004, "\"queued\":0.000,"},
        {12.3456, "\"queued\":12.346,"},
        {999.9996, "\"queued\":1000.000,"},
        {-2.5, "\"queued\":-2.500,"},
        {86400000.125, "\"queued\":86400000.125,"},
        {1e16, "\"queued\":10000000000000000.000,"},
    };
    rl_render_stats_t stats = {0, 0, 0, 0, json_array()};
    rl_buf_t out = RL_BUF_INIT;
    rl_answer_t a = sample_answer(&stats);
    size_t i;
    json_t *root;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        a.queued_ms = cases[i].ms;
        root = write_and_load(&a, &out);
        if (!strstr(out.data, cases[i].text))
            fail_msg("%g: wanted %s in %s", cases[i].ms, cases[i].text,
                     out.data);
        json_decref(root);
    }
    a.queued_ms = NAN;
    root = write_and_load(&a, &out);
    assert_true(json_is_null(
        json_object_get(json_object_get(root, "latency_ms"), "queued")));
    json_decref(root);
    json_decref(stats.missing_list);
    rl_buf_free(&out);
    (void)state;
}

static void test_answer_round_trip(void **state)
{
    rl_render_stats_t stats = {3, 1, 2, 1, json_array()};
    rl_buf_t out = RL_BUF_INIT;
    rl_answer_t a;
    json_t *root, *v;
    const char *order[] = {
        "\"id\":",      "\"conversation_id\":", "\"answer\":",
        "\"backend\":", "\"model\":",           "\"finish_reason\":",
        "\"usage\":",   "\"evidence\":",        "\"latency_ms\":",
        "\"source\":"};
    const char *prev = NULL;
    size_t i;

    json_array_append_new(stats.missing_list, json_string("q \"one\""));
    json_array_append_new(stats.missing_list, json_string("q2"));
    a = sample_answer(&stats);
    root = write_and_load(&a, &out);

    assert_string_equal(json_string_value(json_object_get(root, "id")), a.id);
    assert_string_equal(
        json_string_value(json_object_get(root, "conversation_id")),
        a.conversation_id);
    v = json_object_get(root, "answer");
    assert_int_equal(json_string_length(v), a.answer_len);
    assert_memory_equal(json_string_value(v), a.answer, a.answer_len);
    assert_string_equal(json_string_value(json_object_get(root, "backend")),
                        "openai-chat");
    assert_string_equal(json_string_value(json_object_get(root, "model")),
                        "m-7b");
    assert_string_equal(
        json_string_value(json_object_get(root, "finish_reason")), "stop");

    v = json_object_get(root, "usage");
    assert_int_equal(json_integer_value(json_object_get(v, "prompt_tokens")),
                     120);
    assert_int_equal(
        json_integer_value(json_object_get(v, "completion_tokens")), 30);
    assert_int_equal(json_integer_value(json_object_get(v, "total_tokens")),
                     150);

    v = json_object_get(root, "evidence");
    assert_int_equal(json_integer_value(json_object_get(v, "queries")), 3);
    assert_int_equal(json_integer_value(json_object_get(v, "found")), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "missing")), 2);
    assert_int_equal(json_integer_value(json_object_get(v, "inline_turns")), 1);
    assert_true(
        json_equal(json_object_get(v, "missing_queries"), stats.missing_list));

    v = json_object_get(root, "latency_ms");
    assert_true(json_real_value(json_object_get(v, "queued")) == 1.5);
    assert_true(json_real_value(json_object_get(v, "backend")) == 250.25);
    assert_true(json_real_value(json_object_get(v, "total")) == 251.875);
    assert_non_null(strstr(out.data, "\"queued\":1.500,"));

    v = json_object_get(root, "source");
    assert_string_equal(json_string_value(json_object_get(v, "topic")),
                        "ragline.queries");
    assert_int_equal(json_integer_value(json_object_get(v, "partition")), 3);
    assert_true(json_integer_value(json_object_get(v, "offset")) ==
                9007199254740993LL);

    /* Keys in the documented order, compact, one object. */
    for (i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
        const char *at = strstr(out.data, order[i]);

        assert_non_null(at);
        assert_true(!prev || at > prev);
        prev = at;
    }
    assert_null(strchr(out.data, '\n'));
    assert_int_equal(out.data[0], '{');
    assert_int_equal(out.data[out.len - 1], '}');

    json_decref(root);
    json_decref(stats.missing_list);
    rl_buf_free(&out);
}

static void test_answer_optional_fields(void **state)
{
    rl_buf_t out = RL_BUF_INIT;
    rl_answer_t a = sample_answer(NULL);
    json_t *root, *v;

    a.model = NULL;
    a.finish_reason = NULL;
    a.prompt_tokens = a.completion_tokens = a.total_tokens = -1;
    root = write_and_load(&a, &out);
    assert_true(json_is_null(json_object_get(root, "model")));
    assert_true(json_is_null(json_object_get(root, "finish_reason")));
    assert_null(json_object_get(root, "usage"));
    v = json_object_get(root, "evidence");
    assert_int_equal(json_integer_value(json_object_get(v, "queries")), 0);
    assert_int_equal(json_array_size(json_object_get(v, "missing_queries")), 0);
    json_decref(root);

    /* Only the counts reported. */
    a.completion_tokens = 12;
    root = write_and_load(&a, &out);
    v = json_object_get(root, "usage");
    assert_int_equal(json_object_size(v), 1);
    assert_int_equal(
        json_integer_value(json_object_get(v, "completion_tokens")), 12);
    json_decref(root);
    rl_buf_free(&out);
}

/* Bytes that are not UTF-8 become U+FFFD, one per maximal ill-formed
 * subpart, as Python's bytes.decode(errors="replace") does. */
static void test_answer_invalid_utf8(void **state)
{
    static const struct {
        const char *in;
        size_t in_len;
        const char *want;
    } cases[] = {
        {"ok\xff\xc3(\xe2\x82", 7, "ok\xef\xbf\xbd\xef\xbf\xbd(\xef\xbf\xbd"},
        {"\xed\xa0\x80x", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx"},
        {"\xf4\x90\x80\x80", 4,
         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"\xe0\x80\xaf", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"a\xf0\x9f\x98\x80"
         "b\xc0\xaf",
         8,
         "a\xf0\x9f\x98\x80"
         "b\xef\xbf\xbd\xef\xbf\xbd"},
        {"nul\0inside", 10, "nul\0inside"},
    };
    rl_buf_t out = RL_BUF_INIT;
    rl_answer_t a = sample_answer(NULL);
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t want_len = strlen(cases[i].want);
        json_t *root, *v;

        if (i == sizeof(cases) / sizeof(cases[0]) - 1)
            want_len = 10;
        a.answer = cases[i].in;
        a.answer_len = cases[i].in_len;
        root = write_and_load(&a, &out);
        v = json_object_get(root, "answer");
        assert_int_equal(json_string_length(v), want_len);
        assert_memory_equal(json_string_value(v), cases[i].want, want_len);
        json_decref(root);
    }
    rl_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_examples_parse),
        cmocka_unit_test(test_defaults_and_key),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_turn_limit),
        cmocka_unit_test(test_nul_in_strings),
        cmocka_unit_test(test_peek_id),
        cmocka_unit_test(test_errclass_names),
        cmocka_unit_test(test_answer_round_trip),
        cmocka_unit_test(test_answer_latency_digits),
        cmocka_unit_test(test_answer_optional_fields),
        cmocka_unit_test(test_answer_invalid_utf8),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
