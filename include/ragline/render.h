/*
 * ragline - rendering a query event into a prompt.
 *
 * The default template has three placeholders (RL_RENDER_NAMES):
 *
 *   cur_history_with_context  one line per history turn, each the repr()
 *                             of a dict: role, content, then, for a turn
 *                             with all_queries or all_evidences, the keys
 *                             all_evidences and all_queries in that order
 *   current_query             repr({'role': 'user', 'content': query})
 *   recommended_answer        repr({'role': 'assistant',
 *                                   'content': recommended_answer})
 *
 * A user turn with all_queries but no all_evidences gets all_evidences
 * from the evidence cache: one list per query, [] for a miss.
 *
 * @locality any thread, provided the cache is not being written.
 */
#ifndef RAGLINE_RENDER_H
#define RAGLINE_RENDER_H

#include <jansson.h>
#include <stddef.h>

#include "ragline/buf.h"
#include "ragline/evidence.h"
#include "ragline/template.h"

/** The placeholder names a template may use, NULL-ended. */
extern const char *const rl_render_names[];

/** What the renderer needs of an event; strings are UTF-8. */
typedef struct rl_prompt_input_s {
    const json_t *history; /**< array of turn objects, or NULL */
    const char *query;
    size_t query_len;
    const char *recommended; /**< "" when the event has none */
    size_t recommended_len;
} rl_prompt_input_t;

/** How the evidence join went, for the answer event. */
typedef struct rl_render_stats_s {
    unsigned queries;      /**< all_queries entries looked up in the cache */
    unsigned found;        /**< of those, found */
    unsigned missing;      /**< of those, not found (rendered as []) */
    unsigned inline_turns; /**< turns that brought their own all_evidences */
    json_t *missing_list;  /**< if non-NULL, missing queries are appended */
} rl_render_stats_t;

/**
 * @brief Renders @p in through @p tpl, appending the prompt to @p out.
 *
 * @param cache the evidence cache; NULL renders every lookup as a miss.
 * @param stats may be NULL; its counters are added to, not reset.
 * @returns 0, or -1 with a one-line reason in @p errstr when the input
 *          cannot be rendered (a turn of the wrong shape).
 */
int rl_render(const rl_template_t *tpl, const rl_prompt_input_t *in,
              const rl_evcache_t *cache, rl_buf_t *out,
              rl_render_stats_t *stats, char *errstr, size_t errstr_size);

/**
 * @brief rl_render(), but the prompt is appended escaped for the inside
 *        of a JSON string: exactly rl_buf_json_escape() of what
 *        rl_render() appends, made in one pass.  A request body takes it
 *        as it is.
 */
int rl_render_escaped(const rl_template_t *tpl, const rl_prompt_input_t *in,
                      const rl_evcache_t *cache, rl_buf_t *out,
                      rl_render_stats_t *stats, char *errstr,
                      size_t errstr_size);

#endif
