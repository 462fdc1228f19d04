/*
 * ragline - rendering a query event into a prompt.
 *
 * Everything is appended straight into the caller's buffer: the dicts
 * CPython would build are written out key by key, and evidence comes out
 * of the cache already rendered.  A placeholder used twice is rendered
 * once and copied, so that the join statistics count each lookup once.
 *
 * rl_render_escaped() writes the same prompt escaped for the inside of a
 * JSON string, the form a request body wants: repr() escapes in the
 * same pass, and the evidence cache and the template hold their text in
 * that form already.
 */
#include "ragline/render.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ragline/repr.h"

const char *const rl_render_names[] = {
    "cur_history_with_context",
    "current_query",
    "recommended_answer",
    NULL,
};

enum { SLOT_HISTORY, SLOT_QUERY, SLOT_RECOMMENDED, SLOT_COUNT };

/* What one render call is doing; errors go to errstr. */
typedef struct render_ctx_s {
    const rl_evcache_t *cache;
    rl_buf_t *out;
    rl_render_stats_t stats; /* this call's counts only */
    json_t *missing_list;    /* the caller's, or NULL */
    int json;                /* escape for the inside of a JSON string */
    char *errstr;
    size_t errstr_size;
} render_ctx_t;

static int fail(render_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(render_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    if (ctx->errstr && ctx->errstr_size) {
        va_start(ap, fmt);
        vsnprintf(ctx->errstr, ctx->errstr_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define PUT_LITERAL(out, s) rl_buf_append((out), (s), sizeof(s) - 1)

static int repr_str(const render_ctx_t *ctx, const char *s, size_t len)
{
    return ctx->json ? rl_repr_str_escaped(ctx->out, s, len)
                     : rl_repr_str(ctx->out, s, len);
}

static int repr_json(const render_ctx_t *ctx, const json_t *v)
{
    return ctx->json ? rl_repr_json_escaped(ctx->out, v)
                     : rl_repr_json(ctx->out, v);
}

/* Appends repr() of a dict {'role': ROLE, 'content': TEXT} up to, not
 * including, its closing brace.  The fixed parts need no escaping. */
static int open_message(const render_ctx_t *ctx, const char *role,
                        size_t role_len, const char *text, size_t text_len)
{
    PUT_LITERAL(ctx->out, "{'role': ");
    if (repr_str(ctx, role, role_len) < 0)
        return -1;
    PUT_LITERAL(ctx->out, ", 'content': ");
    return repr_str(ctx, text, text_len);
}

/* Appends [cache[q] for q in queries], with [] for a miss. */
static void render_cached(render_ctx_t *ctx, const json_t *queries)
{
    size_t i, n = json_array_size(queries);

    rl_buf_putc(ctx->out, '[');
    for (i = 0; i < n; i++) {
        const json_t *q = json_array_get(queries, i);
        const char *repr;
        size_t len = 0;

        if (i)
            PUT_LITERAL(ctx->out, ", ");
        ctx->stats.queries++;
        repr = rl_evcache_get(ctx->cache, json_string_value(q),
                              json_string_length(q), &len);
        if (repr) {
            ctx->stats.found++;
            /* The cache holds the escaped form (see evidence.h). */
            if (ctx->json)
                rl_buf_append(ctx->out, repr, len);
            else
                rl_buf_json_unescape(ctx->out, repr, len);
            continue;
        }
        ctx->stats.missing++;
        PUT_LITERAL(ctx->out, "[]");
        if (ctx->missing_list)
            json_array_append_new(
                ctx->missing_list,
                json_stringn(json_string_value(q), json_string_length(q)));
    }
    rl_buf_putc(ctx->out, ']');
}

/* Returns the turn's @p key if present and not null, else NULL. */
static const json_t *optional(const json_t *turn, const char *key)
{
    const json_t *v = json_object_get(turn, key);

    return json_is_null(v) ? NULL : v;
}

static int is_string_list(const json_t *v)
{
    size_t i;

    if (!json_is_array(v))
        return 0;
    for (i = 0; i < json_array_size(v); i++) {
        if (!json_is_string(json_array_get(v, i)))
            return 0;
    }
    return 1;
}

/* Checks the fields render_turn() relies on; the event parser checks the
 * rest, but a bad turn must fail here rather than crash. */
static int check_turn(render_ctx_t *ctx, const json_t *turn, size_t idx)
{
    const json_t *queries, *evidences;

    if (!json_is_object(turn))
        return fail(ctx, "history[%zu]: expected an object", idx);
    if (!json_is_string(json_object_get(turn, "role")))
        return fail(ctx, "history[%zu].role: expected a string", idx);
    if (!json_is_string(json_object_get(turn, "content")))
        return fail(ctx, "history[%zu].content: expected a string", idx);

    queries = optional(turn, "all_queries");
    evidences = optional(turn, "all_evidences");
    if (queries && !is_string_list(queries))
        return fail(ctx,
                    "history[%zu].all_queries: expected a list of "
                    "strings",
                    idx);
    if (evidences && !json_is_array(evidences))
        return fail(ctx, "history[%zu].all_evidences: expected a list", idx);
    return 0;
}

static int render_turn(render_ctx_t *ctx, const json_t *turn, size_t idx)
{
    const json_t *role, *content, *queries, *evidences;
    rl_buf_t *out = ctx->out;

    if (check_turn(ctx, turn, idx) < 0)
        return -1;
    role = json_object_get(turn, "role");
    content = json_object_get(turn, "content");
    queries = optional(turn, "all_queries");
    evidences = optional(turn, "all_evidences");

    if (open_message(ctx, json_string_value(role), json_string_length(role),
                     json_string_value(content),
                     json_string_length(content)) < 0)
        goto not_utf8;

    if (queries || evidences) {
        PUT_LITERAL(out, ", 'all_evidences': ");
        if (evidences) {
            ctx->stats.inline_turns++;
            if (repr_json(ctx, evidences) < 0)
                goto not_utf8;
        } else {
            render_cached(ctx, queries);
        }
        PUT_LITERAL(out, ", 'all_queries': ");
        if (queries) {
            if (repr_json(ctx, queries) < 0)
                goto not_utf8;
        } else {
            PUT_LITERAL(out, "[]");
        }
    }
    rl_buf_putc(out, '}');
    return 0;

not_utf8:
    return fail(ctx, "history[%zu]: a string is not valid UTF-8", idx);
}

static int render_history(render_ctx_t *ctx, const json_t *history)
{
    size_t i;

    if (!history)
        return 0;
    if (!json_is_array(history))
        return fail(ctx, "history: expected a list of turns");
    for (i = 0; i < json_array_size(history); i++) {
        if (i)
            rl_buf_append(ctx->out, ctx->json ? "\\n" : "\n",
                          ctx->json ? 2 : 1);
        if (render_turn(ctx, json_array_get(history, i), i) < 0)
            return -1;
    }
    return 0;
}

static int render_message(render_ctx_t *ctx, const char *role, const char *text,
                          size_t len, const char *field)
{
    if (open_message(ctx, role, strlen(role), text ? text : "",
                     text ? len : 0) < 0)
        return fail(ctx, "%s: not valid UTF-8", field);
    rl_buf_putc(ctx->out, '}');
    return 0;
}

static int render_slot(render_ctx_t *ctx, int slot, const rl_prompt_input_t *in)
{
    switch (slot) {
    case SLOT_HISTORY:
        return render_history(ctx, in->history);
    case SLOT_QUERY:
        return render_message(ctx, "user", in->query, in->query_len, "query");
    case SLOT_RECOMMENDED:
        return render_message(ctx, "assistant", in->recommended,
                              in->recommended_len, "recommended_answer");
    }
    return fail(ctx,
                "template placeholder %d is not one of "
                "rl_render_names",
                slot);
}

/* Adds this call's counts to the caller's stats. */
static void add_stats(rl_render_stats_t *dst, const rl_render_stats_t *src)
{
    dst->queries += src->queries;
    dst->found += src->found;
    dst->missing += src->missing;
    dst->inline_turns += src->inline_turns;
}

static int render(const rl_template_t *tpl, const rl_prompt_input_t *in,
                  const rl_evcache_t *cache, rl_buf_t *out, int json,
                  rl_render_stats_t *stats, char *errstr, size_t errstr_size)
{
    render_ctx_t ctx = {cache, out,    {0, 0, 0, 0, NULL}, NULL,
                        json,  errstr, errstr_size};
    size_t done_off[SLOT_COUNT], done_len[SLOT_COUNT];
    int done[SLOT_COUNT] = {0};
    const rl_template_part_t *parts;
    size_t start = out->len;
    size_t missing_before = 0;
    size_t i, count;

    if (stats && json_is_array(stats->missing_list)) {
        ctx.missing_list = stats->missing_list;
        missing_before = json_array_size(ctx.missing_list);
    }

    parts = rl_template_parts(tpl, &count);
    for (i = 0; i < count; i++) {
        const rl_template_part_t *part = &parts[i];
        int slot = part->slot;
        size_t off = out->len;

        if (slot < 0) {
            if (json)
                rl_buf_append(out, part->escaped, part->escaped_len);
            else
                rl_buf_append(out, part->text, part->len);
            continue;
        }
        if (slot < SLOT_COUNT && done[slot]) {
            /* Reserve first: the source lies in the buffer itself. */
            rl_buf_reserve(out, done_len[slot]);
            memcpy(out->data + out->len, out->data + done_off[slot],
                   done_len[slot]);
            out->len += done_len[slot];
            out->data[out->len] = '\0';
            continue;
        }
        if (render_slot(&ctx, slot, in) < 0)
            goto undo;
        done[slot] = 1;
        done_off[slot] = off;
        done_len[slot] = out->len - off;
    }

    if (stats)
        add_stats(stats, &ctx.stats);
    return 0;

undo:
    /* Leave the buffer and the missing list as they were. */
    out->len = start;
    if (out->data)
        out->data[start] = '\0';
    while (ctx.missing_list &&
           json_array_size(ctx.missing_list) > missing_before)
        json_array_remove(ctx.missing_list,
                          json_array_size(ctx.missing_list) - 1);
    return -1;
}

int rl_render(const rl_template_t *tpl, const rl_prompt_input_t *in,
              const rl_evcache_t *cache, rl_buf_t *out,
              rl_render_stats_t *stats, char *errstr, size_t errstr_size)
{
    return render(tpl, in, cache, out, 0, stats, errstr, errstr_size);
}

int rl_render_escaped(const rl_template_t *tpl, const rl_prompt_input_t *in,
                      const rl_evcache_t *cache, rl_buf_t *out,
                      rl_render_stats_t *stats, char *errstr,
                      size_t errstr_size)
{
    return render(tpl, in, cache, out, 1, stats, errstr, errstr_size);
}
