/*
 * ragline - prompt templates with Python string.Template syntax.
 *
 * "$$" is a literal "$"; "$name" and "${name}" are placeholders, where a
 * name is [_A-Za-z][_A-Za-z0-9]*.  Any other use of "$" is an error, as
 * is a placeholder the caller does not know: both are found when the
 * template is loaded, never when an event arrives.
 *
 * @locality a loaded template is immutable and may be shared.
 */
#ifndef RAGLINE_TEMPLATE_H
#define RAGLINE_TEMPLATE_H

#include <stddef.h>

#include "ragline/buf.h"

typedef struct rl_template_s rl_template_t;

/** One piece of a parsed template: literal text, or a placeholder. */
typedef struct rl_template_part_s {
    const char *text; /**< literal bytes, or the placeholder's name */
    size_t len;
    const char *escaped; /**< literal text escaped for a JSON string */
    size_t escaped_len;
    int slot; /**< -1 for literal text, else index into the names list */
} rl_template_part_t;

/**
 * @brief Parses template text.
 *
 * @param names the placeholder names the caller can fill, NULL-ended;
 *              a part's slot is its index here.
 * @param origin a file name for error messages ("<default>" if none).
 * @returns the template, or NULL with a one-line reason in @p errstr
 *          naming the origin, line and column.
 */
rl_template_t *rl_template_parse(const char *text, size_t len,
                                 const char *const *names, const char *origin,
                                 char *errstr, size_t errstr_size);

/** @brief Reads and parses a template file (same contract as parse). */
rl_template_t *rl_template_load(const char *path, const char *const *names,
                                char *errstr, size_t errstr_size);

/** @brief Frees a template.  NULL is a no-op. */
void rl_template_destroy(rl_template_t *tpl);

/** @returns the parts, in order, and sets *count. */
const rl_template_part_t *rl_template_parts(const rl_template_t *tpl,
                                            size_t *count);

/** The text of templates/default.txt, compiled in (default_template.c). */
extern const char rl_default_template[];
extern const size_t rl_default_template_len;

#endif
