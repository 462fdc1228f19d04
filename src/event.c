/*
 * ragline - query events in, answer events out.
 *
 * Parsing checks the size first, then reads the text once with
 * rl_json_parse() (ragline/json.h), which also enforces the nesting
 * limit, into a jansson tree, and walks the fields the renderer relies
 * on, naming the field's path in the error.  Answers are written by
 * hand into a buffer, without building a jansson tree.
 */
#include "ragline/event.h"
#include "ragline/arena.h"
#include "ragline/buf.h"
#include "ragline/json.h"
#include "ragline/utf8.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rl_errclass_name(rl_errclass_t cls)
{
    switch (cls) {
    case RL_ERR_NONE:
        return "none";
    case RL_ERR_INVALID_JSON:
        return "invalid_json";
    case RL_ERR_INVALID_EVENT:
        return "invalid_event";
    case RL_ERR_LIMIT:
        return "limit_exceeded";
    case RL_ERR_RENDER:
        return "render_failed";
    case RL_ERR_BACKEND:
        return "backend_failed";
    case RL_ERR_PRODUCE:
        return "produce_failed";
    }
    return "unknown";
}

/* ---- parsing ---- */

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

static const char *type_wanted(json_type type)
{
    switch (type) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    default:
        return "a string";
    }
}

/* Sets "PATH: expected WANT, got TYPE", the path given printf-style (so
 * that it is only formatted on failure).  @returns -1. */
static int type_error(const json_t *v, json_type want, char *errstr,
                      size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int type_error(const json_t *v, json_type want, char *errstr,
                      size_t errstr_size, const char *fmt, ...)
{
    char path[128];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(path, sizeof(path), fmt, ap);
    va_end(ap);
    rl_errstr(errstr, errstr_size, "%s: expected %s, got %s", path,
              type_wanted(want), type_name(v));
    return -1;
}

/* A turn index meaning "a member of the event itself". */
#define TOP_LEVEL ((size_t)-1)

/*
 * Fetches member @p name of @p obj, the event (turn == TOP_LEVEL) or
 * history[turn].  A missing member is an error when @p required; an
 * optional one that is missing or null gives *out = NULL.
 * @returns 0, or -1 with errstr set.
 */
static int member(const json_t *obj, size_t turn, const char *name,
                  json_type type, int required, json_t **out, char *errstr,
                  size_t errstr_size)
{
    *out = json_object_get(obj, name);
    if (*out && json_typeof(*out) == type)
        return 0;
    /* Producers that serialise an unset field as null (Python's None)
     * mean "absent"; the renderer reads null the same way. */
    if (!required && (!*out || json_is_null(*out))) {
        *out = NULL;
        return 0;
    }

    if (*out && turn == TOP_LEVEL)
        return type_error(*out, type, errstr, errstr_size, "%s", name);
    if (*out)
        return type_error(*out, type, errstr, errstr_size, "history[%zu].%s",
                          turn, name);
    if (turn == TOP_LEVEL)
        rl_errstr(errstr, errstr_size, "%s: missing", name);
    else
        rl_errstr(errstr, errstr_size, "history[%zu].%s: missing", turn, name);
    return -1;
}

/* all_queries: an array of strings. */
static int check_queries(const json_t *queries, size_t turn, char *errstr,
                         size_t errstr_size)
{
    size_t i;

    for (i = 0; i < json_array_size(queries); i++) {
        const json_t *q = json_array_get(queries, i);

        if (!json_is_string(q))
            return type_error(q, JSON_STRING, errstr, errstr_size,
                              "history[%zu].all_queries[%zu]", turn, i);
    }
    return 0;
}

/* all_evidences: an array (one per query) of arrays of objects. */
static int check_evidences(const json_t *lists, size_t turn, char *errstr,
                           size_t errstr_size)
{
    size_t i, j;

    for (i = 0; i < json_array_size(lists); i++) {
        const json_t *list = json_array_get(lists, i);

        if (!json_is_array(list))
            return type_error(list, JSON_ARRAY, errstr, errstr_size,
                              "history[%zu].all_evidences[%zu]", turn, i);
        for (j = 0; j < json_array_size(list); j++) {
            const json_t *item = json_array_get(list, j);

            if (!json_is_object(item))
                return type_error(item, JSON_OBJECT, errstr, errstr_size,
                                  "history[%zu].all_evidences[%zu][%zu]", turn,
                                  i, j);
        }
    }
    return 0;
}

static int check_turn(const json_t *turn, size_t t, char *errstr,
                      size_t errstr_size)
{
    json_t *role, *content, *queries, *lists;
    const char *r;

    if (!json_is_object(turn))
        return type_error(turn, JSON_OBJECT, errstr, errstr_size,
                          "history[%zu]", t);

    if (member(turn, t, "role", JSON_STRING, 1, &role, errstr, errstr_size) < 0)
        return -1;
    r = json_string_value(role);
    if (strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0) {
        rl_errstr(errstr, errstr_size,
                  "history[%zu].role: expected \"user\" or \"assistant\"", t);
        return -1;
    }
    if (member(turn, t, "content", JSON_STRING, 1, &content, errstr,
               errstr_size) < 0)
        return -1;

    if (member(turn, t, "all_queries", JSON_ARRAY, 0, &queries, errstr,
               errstr_size) < 0)
        return -1;
    if (queries && check_queries(queries, t, errstr, errstr_size) < 0)
        return -1;
    if (member(turn, t, "all_evidences", JSON_ARRAY, 0, &lists, errstr,
               errstr_size) < 0)
        return -1;
    if (lists && check_evidences(lists, t, errstr, errstr_size) < 0)
        return -1;
    return 0;
}

static rl_errclass_t check_history(const json_t *history,
                                   const rl_limits_t *limits, char *errstr,
                                   size_t errstr_size)
{
    size_t i;

    if (json_array_size(history) > limits->max_turns) {
        rl_errstr(errstr, errstr_size,
                  "history has %zu turns, more than limits.turns (%zu)",
                  json_array_size(history), limits->max_turns);
        return RL_ERR_LIMIT;
    }
    for (i = 0; i < json_array_size(history); i++) {
        if (check_turn(json_array_get(history, i), i, errstr, errstr_size) < 0)
            return RL_ERR_INVALID_EVENT;
    }
    return RL_ERR_NONE;
}

/* id and conversation_id travel as C strings (headers, logs). */
static int check_c_string(const json_t *s, const char *path, char *errstr,
                          size_t errstr_size)
{
    if (strlen(json_string_value(s)) == json_string_length(s))
        return 0;
    rl_errstr(errstr, errstr_size, "%s: must not contain \\u0000", path);
    return -1;
}

static int check_id(const json_t *root, const char **id, char *errstr,
                    size_t errstr_size)
{
    json_t *v;
    int rc;

    rc = member(root, TOP_LEVEL, "id", JSON_STRING, 1, &v, errstr, errstr_size);
    if (rc < 0)
        return -1;
    if (json_string_length(v) == 0) {
        rl_errstr(errstr, errstr_size, "id: must not be empty");
        return -1;
    }
    *id = json_string_value(v);
    return check_c_string(v, "id", errstr, errstr_size);
}

static int check_conversation(rl_event_t *ev, const void *key, size_t key_len,
                              char *errstr, size_t errstr_size)
{
    json_t *v;

    if (member(ev->root, TOP_LEVEL, "conversation_id", JSON_STRING, 0, &v,
               errstr, errstr_size) < 0)
        return -1;
    if (v) {
        ev->conversation_id = json_string_value(v);
        return check_c_string(v, "conversation_id", errstr, errstr_size);
    }
    ev->conversation_owned = rl_xmemdup(key ? key : "", key ? key_len : 0);
    ev->conversation_id = ev->conversation_owned;
    return 0;
}

/* Checks the fields of a parsed event and points @p ev into it. */
static rl_errclass_t check_event(rl_event_t *ev, const void *key,
                                 size_t key_len, const rl_limits_t *limits,
                                 char *errstr, size_t errstr_size)
{
    rl_prompt_input_t *p = &ev->prompt;
    json_t *query, *recommended, *history;

    if (!json_is_object(ev->root)) {
        type_error(ev->root, JSON_OBJECT, errstr, errstr_size, "event");
        return RL_ERR_INVALID_EVENT;
    }
    if (check_id(ev->root, &ev->id, errstr, errstr_size) < 0 ||
        check_conversation(ev, key, key_len, errstr, errstr_size) < 0 ||
        member(ev->root, TOP_LEVEL, "query", JSON_STRING, 1, &query, errstr,
               errstr_size) < 0 ||
        member(ev->root, TOP_LEVEL, "recommended_answer", JSON_STRING, 0,
               &recommended, errstr, errstr_size) < 0 ||
        member(ev->root, TOP_LEVEL, "history", JSON_ARRAY, 0, &history, errstr,
               errstr_size) < 0)
        return RL_ERR_INVALID_EVENT;

    p->query = json_string_value(query);
    p->query_len = json_string_length(query);
    p->recommended = recommended ? json_string_value(recommended) : "";
    p->recommended_len = recommended ? json_string_length(recommended) : 0;
    p->history = history;
    return history ? check_history(history, limits, errstr, errstr_size)
                   : RL_ERR_NONE;
}

rl_errclass_t rl_event_parse(rl_event_t *ev, const void *value, size_t len,
                             const void *key, size_t key_len,
                             const rl_limits_t *limits, char *errstr,
                             size_t errstr_size)
{
    return rl_event_parse_in(ev, NULL, value, len, key, key_len, limits, errstr,
                             errstr_size);
}

rl_errclass_t rl_event_parse_in(rl_event_t *ev, rl_arena_t *arena,
                                const void *value, size_t len, const void *key,
                                size_t key_len, const rl_limits_t *limits,
                                char *errstr, size_t errstr_size)
{
    rl_arena_t *previous = NULL;
    rl_json_error_t jerr;
    rl_errclass_t cls;

    memset(ev, 0, sizeof(*ev));
    if (!value || !len) {
        rl_errstr(errstr, errstr_size, "the message value is empty");
        return RL_ERR_INVALID_JSON;
    }
    if (len > limits->event_bytes) {
        rl_errstr(errstr, errstr_size,
                  "event is %zu bytes, more than limits.event.bytes (%zu)", len,
                  limits->event_bytes);
        return RL_ERR_LIMIT;
    }
    /* The tree lives as long as the event: one arena holds it all; a
     * tree takes about one and a half times its text. */
    if (arena && rl_arena_installed()) {
        ev->arena = arena;
        ev->arena_borrowed = 1;
    } else if (rl_arena_installed()) {
        ev->arena = rl_arena_new(len * 3 / 2 + 4096);
    }
    if (ev->arena)
        previous = rl_arena_use(ev->arena);
    /* Duplicate keys are refused: parsers disagree on which one wins,
     * and an event must mean the same thing to every consumer. */
    ev->root = rl_json_parse(value, len, limits->max_depth, 0, &jerr);
    if (ev->arena)
        rl_arena_use(previous);
    if (!ev->root) {
        if (jerr.too_deep)
            rl_errstr(errstr, errstr_size,
                      "event nests deeper than limits.depth (%d), at line %d "
                      "column %d",
                      limits->max_depth, jerr.line, jerr.column);
        else
            rl_errstr(errstr, errstr_size, "%s", jerr.text);
        rl_event_clear(ev);
        return jerr.too_deep ? RL_ERR_LIMIT : RL_ERR_INVALID_JSON;
    }

    cls = check_event(ev, key, key_len, limits, errstr, errstr_size);
    if (cls != RL_ERR_NONE)
        rl_event_clear(ev);
    return cls;
}

void rl_event_clear(rl_event_t *ev)
{
    /* An arena-held tree goes with its arena, without a walk. */
    if (!ev->arena)
        json_decref(ev->root);
    else if (!ev->arena_borrowed)
        rl_arena_destroy(ev->arena);
    free(ev->conversation_owned);
    memset(ev, 0, sizeof(*ev));
}

/* ---- UTF-8 ---- */

/* @returns the length of the longest valid UTF-8 prefix of @p s. */
static size_t utf8_valid_prefix(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp;
        int n = rl_utf8_decode(u + i, len - i, &cp);

        if (n < 0)
            break;
        i += (size_t)n;
    }
    return i;
}

/* Appends the JSON string body of @p s, with every ill-formed subpart
 * replaced by U+FFFD. */
static void put_escaped(rl_buf_t *out, const char *s, size_t len)
{
    static const char replacement[] = "\xef\xbf\xbd";
    size_t done = 0;

    while (done < len) {
        size_t ok = utf8_valid_prefix(s + done, len - done);
        uint32_t cp;
        int bad;

        rl_buf_json_escape(out, s + done, ok);
        done += ok;
        if (done == len)
            break;
        bad = -rl_utf8_decode((const unsigned char *)s + done, len - done, &cp);
        rl_buf_append(out, replacement, sizeof(replacement) - 1);
        done += (size_t)bad;
    }
}

/* ---- answers ---- */

/* Appends "s" as a JSON string, or null for NULL. */
static void put_string(rl_buf_t *out, const char *s, size_t len)
{
    if (!s) {
        rl_buf_puts(out, "null");
        return;
    }
    rl_buf_putc(out, '"');
    put_escaped(out, s, len);
    rl_buf_putc(out, '"');
}

static void put_cstring(rl_buf_t *out, const char *s)
{
    put_string(out, s, s ? strlen(s) : 0);
}

/* Appends @p v in decimal: printf was a fifth of an answer's cost. */
static void put_int(rl_buf_t *out, long long v)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    unsigned long long u =
        v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    rl_buf_append(out, p, (size_t)(tmp + sizeof(tmp) - p));
}

/* "name": (names here never need escaping) */
static void put_key(rl_buf_t *out, const char *name)
{
    rl_buf_putc(out, '"');
    rl_buf_puts(out, name);
    rl_buf_puts(out, "\":");
}

/* "name":ms rounded to the nearest thousandth, with three decimals. */
static void put_ms(rl_buf_t *out, const char *name, double ms)
{
    long long thousandths;
    char frac[4];

    put_key(out, name);
    if (!isfinite(ms)) {
        rl_buf_puts(out, "null");
        return;
    }
    if (fabs(ms) >= 1e15) {
        rl_buf_printf(out, "%.3f", ms);
        return;
    }
    thousandths = llround(ms * 1000.0);
    if (thousandths < 0) {
        rl_buf_putc(out, '-');
        thousandths = -thousandths;
    }
    put_int(out, thousandths / 1000);
    frac[0] = '.';
    frac[1] = (char)('0' + thousandths / 100 % 10);
    frac[2] = (char)('0' + thousandths / 10 % 10);
    frac[3] = (char)('0' + thousandths % 10);
    rl_buf_append(out, frac, sizeof(frac));
}

/* The usage object holds only the counts the backend reported. */
static void put_usage(rl_buf_t *out, const rl_answer_t *a)
{
    const char *names[3] = {"prompt_tokens", "completion_tokens",
                            "total_tokens"};
    long long counts[3] = {a->prompt_tokens, a->completion_tokens,
                           a->total_tokens};
    const char *sep = "";
    int i;

    if (counts[0] < 0 && counts[1] < 0 && counts[2] < 0)
        return;
    rl_buf_puts(out, ",\"usage\":{");
    for (i = 0; i < 3; i++) {
        if (counts[i] < 0)
            continue;
        rl_buf_puts(out, sep);
        put_key(out, names[i]);
        put_int(out, counts[i]);
        sep = ",";
    }
    rl_buf_putc(out, '}');
}

static void put_evidence(rl_buf_t *out, const rl_render_stats_t *st)
{
    static const rl_render_stats_t none;
    size_t i;

    if (!st)
        st = &none;
    rl_buf_puts(out, ",\"evidence\":{\"queries\":");
    put_int(out, st->queries);
    rl_buf_puts(out, ",\"found\":");
    put_int(out, st->found);
    rl_buf_puts(out, ",\"missing\":");
    put_int(out, st->missing);
    rl_buf_puts(out, ",\"missing_queries\":[");
    for (i = 0; i < json_array_size(st->missing_list); i++) {
        const json_t *q = json_array_get(st->missing_list, i);

        if (i)
            rl_buf_putc(out, ',');
        put_string(out, json_string_value(q), json_string_length(q));
    }
    rl_buf_puts(out, "],\"inline_turns\":");
    put_int(out, st->inline_turns);
    rl_buf_putc(out, '}');
}

void rl_answer_write(rl_buf_t *out, const rl_answer_t *a)
{
    rl_buf_puts(out, "{\"id\":");
    put_cstring(out, a->id);
    rl_buf_puts(out, ",\"conversation_id\":");
    put_cstring(out, a->conversation_id);
    rl_buf_puts(out, ",\"answer\":");
    put_string(out, a->answer ? a->answer : "", a->answer ? a->answer_len : 0);
    rl_buf_puts(out, ",\"backend\":");
    put_cstring(out, a->backend);
    rl_buf_puts(out, ",\"model\":");
    put_cstring(out, a->model);
    rl_buf_puts(out, ",\"finish_reason\":");
    put_cstring(out, a->finish_reason);

    put_usage(out, a);
    put_evidence(out, a->evidence);

    rl_buf_puts(out, ",\"latency_ms\":{");
    put_ms(out, "queued", a->queued_ms);
    rl_buf_putc(out, ',');
    put_ms(out, "backend", a->backend_ms);
    rl_buf_putc(out, ',');
    put_ms(out, "total", a->total_ms);

    rl_buf_puts(out, "},\"source\":{\"topic\":");
    put_cstring(out, a->topic);
    rl_buf_puts(out, ",\"partition\":");
    put_int(out, a->partition);
    rl_buf_puts(out, ",\"offset\":");
    put_int(out, a->offset);
    rl_buf_puts(out, "}}");
}

/* ---- peeking at a bad event ---- */

const char *rl_event_peek_id(const void *value, size_t len, char *dst,
                             size_t dst_size)
{
    json_t *root, *id;
    const char *s;
    size_t n, i;

    if (!dst_size)
        return dst;
    dst[0] = '\0';
    if (!value)
        return dst;
    /* jansson's own parser, which keeps the last of repeated keys: this
     * runs on events already refused, to name them in a log line. */
    root = json_loadb(value, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    id = json_object_get(root, "id");
    if (!json_is_string(id))
        goto out_root;

    /* jansson checked the UTF-8: backing off continuation bytes is
     * enough to cut at a character boundary.  No control byte goes into
     * a log line. */
    s = json_string_value(id);
    n = json_string_length(id);
    if (n > dst_size - 1) {
        n = dst_size - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
            n--;
    }
    for (i = 0; i < n; i++)
        dst[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    dst[n] = '\0';

out_root:
    json_decref(root);
    return dst;
}
