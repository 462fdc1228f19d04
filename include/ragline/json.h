/*
 * ragline - a fast JSON reader that builds jansson trees.
 *
 * jansson's own parser reads its input one byte at a time through a
 * stream and copies every string twice; on a 10 KB event that was 40 %
 * of the worker's CPU.  This reader takes the whole text at once, finds
 * the end of a string eight bytes at a time, checks nesting as it goes
 * and hands jansson finished values (json_stringn_nocheck(),
 * json_object_setn_new_nocheck()), so the result is an ordinary jansson
 * tree: everything downstream keeps using jansson.
 *
 * What it accepts is what json_loadb() accepts with JSON_DECODE_ANY,
 * JSON_ALLOW_NUL and JSON_REJECT_DUPLICATES, or without the last given
 * RL_JSON_KEEP_LAST (tests/test_json.c checks both against each other):
 * RFC 8259 JSON in UTF-8; integers that fit in 64 bits become integers,
 * other numbers reals; \u0000 may appear in strings but not in object
 * keys.  Only the error messages are its own.
 *
 * @locality any thread; it allocates through jansson, so an installed
 *           arena (ragline/arena.h) is used.
 */
#ifndef RAGLINE_JSON_H
#define RAGLINE_JSON_H

#include <jansson.h>
#include <stddef.h>

/** Where and why a text was refused. */
typedef struct rl_json_error_s {
    size_t offset;  /**< byte offset of the problem */
    int line;       /**< 1-based */
    int column;     /**< 1-based, in characters */
    int too_deep;   /**< non-zero: nesting went past the limit */
    char text[160]; /**< "line L column C: what is wrong" */
} rl_json_error_t;

/** A repeated object key is not an error: its last value wins, in the
 *  place of its first (as jansson's and Python's parsers do). */
#define RL_JSON_KEEP_LAST 0x1

/**
 * @brief Parses the JSON text @p text of @p len bytes (it need not be
 *        NUL-terminated).
 * @param max_depth the deepest nesting of arrays and objects allowed
 *        (1: a flat array or object); deeper is refused with too_deep
 *        set.
 * @param flags 0 or RL_JSON_KEEP_LAST.
 * @returns a new reference, or NULL with @p err filled (err may be
 *          NULL).
 */
json_t *rl_json_parse(const char *text, size_t len, int max_depth,
                      unsigned flags, rl_json_error_t *err);

#endif
