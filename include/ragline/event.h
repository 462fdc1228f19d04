/*
 * ragline - query events in, answer events out.
 *
 * The formats are documented in docs/events.md.  Parsing is done once
 * per event with jansson; the event keeps the parsed tree and points
 * into it.
 *
 * @locality any thread; an event is owned by one thread at a time.
 */
#ifndef RAGLINE_EVENT_H
#define RAGLINE_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "ragline/buf.h"
#include "ragline/render.h"

/**
 * Why an event could not be answered.  The name of the class goes into
 * the dead-letter record's ragline.error.class header.
 */
typedef enum {
    RL_ERR_NONE = 0,
    RL_ERR_INVALID_JSON,  /**< "invalid_json": not JSON, not UTF-8 */
    RL_ERR_INVALID_EVENT, /**< "invalid_event": a field missing or mistyped */
    RL_ERR_LIMIT,         /**< "limit_exceeded": size, depth or turns */
    RL_ERR_RENDER,        /**< "render_failed" */
    RL_ERR_BACKEND,       /**< "backend_failed" */
    RL_ERR_PRODUCE,       /**< "produce_failed": the answer was refused */
} rl_errclass_t;

/** @returns the stable name of @p cls, as above. */
const char *rl_errclass_name(rl_errclass_t cls);

/** Limits checked before and during parsing. */
typedef struct rl_limits_s {
    size_t event_bytes; /**< max size of a message value */
    int max_depth;      /**< max nesting of arrays and objects */
    size_t max_turns;   /**< max history turns */
} rl_limits_t;

/** A parsed query event.  Strings point into @c root or the key copy. */
typedef struct rl_event_s {
    json_t *root;             /**< owned (by @c arena when there is one) */
    struct rl_arena_s *arena; /**< holds the tree once rl_arena_install() ran */
    int arena_borrowed;       /**< @c arena is the caller's, not ours */
    const char *id;           /**< required, non-empty */
    const char *conversation_id;
    char *conversation_owned; /**< the key's copy when it was used */
    rl_prompt_input_t prompt; /**< history, query, recommended answer */
} rl_event_t;

/**
 * @brief Parses and validates one query event.
 *
 * @param key the message key (NULL allowed): the default conversation id.
 * @returns RL_ERR_NONE and fills @p ev, or the class of the problem with
 *          a one-line description in @p errstr naming the field, e.g.
 *          "history[2].content: expected a string, got an integer".
 *          On error @p ev is left cleared; rl_event_clear() is harmless.
 */
rl_errclass_t rl_event_parse(rl_event_t *ev, const void *value, size_t len,
                             const void *key, size_t key_len,
                             const rl_limits_t *limits, char *errstr,
                             size_t errstr_size);

/**
 * @brief rl_event_parse() into the caller's @p arena (which must stay
 *        alive and unreset while @p ev is used); NULL is as
 *        rl_event_parse().  rl_event_clear() leaves the arena alone.
 */
rl_errclass_t rl_event_parse_in(rl_event_t *ev, struct rl_arena_s *arena,
                                const void *value, size_t len, const void *key,
                                size_t key_len, const rl_limits_t *limits,
                                char *errstr, size_t errstr_size);

/** @brief Frees what @p ev owns and zeroes it. */
void rl_event_clear(rl_event_t *ev);

/**
 * @brief Best-effort id of a message that failed to parse, for logs:
 *        the "id" string if the value is a JSON object that has one.
 * @returns @p dst, "" when none is found.
 */
const char *rl_event_peek_id(const void *value, size_t len, char *dst,
                             size_t dst_size);

/** Everything an answer event says.  Absent numbers are -1. */
typedef struct rl_answer_s {
    const char *id;
    const char *conversation_id;
    const char *answer;
    size_t answer_len;
    const char *backend;       /**< "openai-chat", ..., "builtin" */
    const char *model;         /**< may be NULL */
    const char *finish_reason; /**< may be NULL */
    long long prompt_tokens;
    long long completion_tokens;
    long long total_tokens;
    const rl_render_stats_t *evidence;
    double queued_ms;  /**< from consume to backend submission */
    double backend_ms; /**< the backend call */
    double total_ms;   /**< from consume to hand-off to the producer */
    const char *topic;
    int32_t partition;
    int64_t offset;
} rl_answer_t;

/** @brief Appends the answer event as compact JSON to @p out. */
void rl_answer_write(rl_buf_t *out, const rl_answer_t *answer);

#endif
