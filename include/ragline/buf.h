/*
 * ragline - growable byte buffer.
 *
 * A buffer owns one heap block that grows geometrically.  Allocation
 * failure aborts the process (see rl_xmalloc()): a worker that cannot
 * allocate a few kilobytes cannot make progress anyway, and aborting
 * before offsets are stored loses nothing.
 *
 * @locality any thread; a buffer is not shared between threads.
 */
#ifndef RAGLINE_BUF_H
#define RAGLINE_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct rl_buf_s {
    char *data; /**< NUL-terminated when len > 0 or after rl_buf_cstr() */
    size_t len; /**< bytes in use, not counting the terminator */
    size_t cap; /**< bytes allocated */
} rl_buf_t;

#define RL_BUF_INIT                                                            \
    {                                                                          \
        NULL, 0, 0                                                             \
    }

/** @brief malloc/realloc/strdup that abort with a message on failure. */
void *rl_xmalloc(size_t size);
void *rl_xcalloc(size_t n, size_t size);
void *rl_xrealloc(void *ptr, size_t size);
char *rl_xstrdup(const char *s);
char *rl_xmemdup(const void *p, size_t n); /**< adds a NUL terminator */

/** @brief Makes room for @p extra more bytes (plus a terminator). */
void rl_buf_reserve(rl_buf_t *buf, size_t extra);

void rl_buf_append(rl_buf_t *buf, const void *data, size_t len);
void rl_buf_puts(rl_buf_t *buf, const char *s);
void rl_buf_putc(rl_buf_t *buf, char c);

/** @brief Appends printf-style formatted text. */
void rl_buf_printf(rl_buf_t *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void rl_buf_vprintf(rl_buf_t *buf, const char *fmt, va_list ap);

/**
 * @brief Formats a one-line error into @p errstr, the error idiom of
 *        ragline's APIs.  A NULL or empty @p errstr is ignored.
 */
void rl_errstr(char *errstr, size_t errstr_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** @brief Appends @p s as the body of a JSON string (no quotes). */
void rl_buf_json_escape(rl_buf_t *buf, const char *s, size_t len);

/**
 * @brief Appends the text that rl_buf_json_escape() turned into @p s:
 *        the inverse, for text ragline escaped itself (the escapes it
 *        writes, \uXXXX only below U+0080).
 * @returns 0, or -1 on an escape it does not write (the buffer then
 *          holds what came before it).
 */
int rl_buf_json_unescape(rl_buf_t *buf, const char *s, size_t len);

/** @returns the data as a NUL-terminated string ("" when empty). */
const char *rl_buf_cstr(rl_buf_t *buf);

/** @brief Empties the buffer and keeps its memory for reuse. */
void rl_buf_reset(rl_buf_t *buf);

/** @brief Frees the memory; the buffer is empty and reusable after. */
void rl_buf_free(rl_buf_t *buf);

/**
 * @brief Hands the block to the caller, who frees it with free().
 * @returns the NUL-terminated data (never NULL); the buffer is empty.
 */
char *rl_buf_steal(rl_buf_t *buf, size_t *lenp);

#endif
