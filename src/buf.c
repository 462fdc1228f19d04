/*
 * ragline - growable byte buffer.
 */
#include "ragline/buf.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t size)
{
    fprintf(stderr, "ragline: out of memory allocating %zu bytes\n", size);
    abort();
}

void *rl_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    if (!p)
        oom(size);
    return p;
}

void *rl_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    if (!p)
        oom(n * size);
    return p;
}

void *rl_xrealloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);

    if (!p)
        oom(size);
    return p;
}

char *rl_xstrdup(const char *s)
{
    return rl_xmemdup(s, strlen(s));
}

char *rl_xmemdup(const void *p, size_t n)
{
    char *copy = rl_xmalloc(n + 1);

    if (n)
        memcpy(copy, p, n);
    copy[n] = '\0';
    return copy;
}

void rl_buf_reserve(rl_buf_t *buf, size_t extra)
{
    size_t need = buf->len + extra + 1;
    size_t cap;

    if (need <= buf->cap)
        return;
    /* At least double, so appends stay amortised O(1); a larger
     * reservation gets exactly what it asked for. */
    cap = buf->cap ? buf->cap * 2 : 64;
    if (cap < need)
        cap = need;
    buf->data = rl_xrealloc(buf->data, cap);
    buf->cap = cap;
}

void rl_buf_append(rl_buf_t *buf, const void *data, size_t len)
{
    rl_buf_reserve(buf, len);
    if (len)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
    buf->data[buf->len] = '\0';
}

void rl_buf_puts(rl_buf_t *buf, const char *s)
{
    rl_buf_append(buf, s, strlen(s));
}

void rl_buf_putc(rl_buf_t *buf, char c)
{
    rl_buf_reserve(buf, 1);
    buf->data[buf->len++] = c;
    buf->data[buf->len] = '\0';
}

void rl_buf_vprintf(rl_buf_t *buf, const char *fmt, va_list ap)
{
    va_list again;
    int n;

    /* Try in the space we have; retry once with the exact size. */
    rl_buf_reserve(buf, 64);
    va_copy(again, ap);
    n = vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, ap);
    if (n < 0) {
        va_end(again);
        return;
    }
    if ((size_t)n >= buf->cap - buf->len) {
        rl_buf_reserve(buf, (size_t)n);
        vsnprintf(buf->data + buf->len, buf->cap - buf->len, fmt, again);
    }
    va_end(again);
    buf->len += (size_t)n;
}

void rl_buf_printf(rl_buf_t *buf, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    rl_buf_vprintf(buf, fmt, ap);
    va_end(ap);
}

/*
 * Whether any byte of @p w needs escaping in a JSON string: a control
 * character (< 0x20), '"' or '\\'.  The classic SWAR tests: a byte of
 * (w - 0x20..) & ~w has its top bit set only for bytes below 0x20, and
 * (v - 0x01..) & ~v & 0x80.. is non-zero iff v has a zero byte.  Bytes
 * from 0x80 (UTF-8) never match.
 */
static int word_needs_escape(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
    uint64_t ctrl = (w - ones * 0x20) & ~w;

    ctrl |= (quote - ones) & ~quote;
    ctrl |= (bslash - ones) & ~bslash;
    return (ctrl & high) != 0;
}

static size_t escape_byte(char *out, unsigned char c)
{
    static const char hex[] = "0123456789abcdef";
    char esc = 0;

    switch (c) {
    case '"':
        esc = '"';
        break;
    case '\\':
        esc = '\\';
        break;
    case '\n':
        esc = 'n';
        break;
    case '\r':
        esc = 'r';
        break;
    case '\t':
        esc = 't';
        break;
    case '\b':
        esc = 'b';
        break;
    case '\f':
        esc = 'f';
        break;
    }
    out[0] = '\\';
    if (esc) {
        out[1] = esc;
        return 2;
    }
    out[1] = 'u';
    out[2] = '0';
    out[3] = '0';
    out[4] = hex[c >> 4];
    out[5] = hex[c & 15];
    return 6;
}

void rl_buf_json_escape(rl_buf_t *buf, const char *s, size_t len)
{
    size_t i = 0, run = 0;

    /* Room for the common case; escapes reserve more as they come. */
    rl_buf_reserve(buf, len + 16);
    while (i < len) {
        uint64_t w;
        unsigned char c;

        /* Skip clean 8-byte blocks; most text has no escapes at all. */
        if (len - i >= 8) {
            memcpy(&w, s + i, 8);
            if (!word_needs_escape(w)) {
                i += 8;
                continue;
            }
        }
        c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        /* Flush the plain run before this byte, then its escape. */
        rl_buf_append(buf, s + run, i - run);
        rl_buf_reserve(buf, 6);
        buf->len += escape_byte(buf->data + buf->len, c);
        buf->data[buf->len] = '\0';
        run = ++i;
    }
    rl_buf_append(buf, s + run, len - run);
}

/* The byte a two-character escape stands for, or -1. */
static int unescape_simple(char c)
{
    switch (c) {
    case '"':
    case '\\':
    case '/':
        return c;
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    }
    return -1;
}

static int hex_value(char c)
{
    return isdigit((unsigned char)c) ? c - '0'
                                     : tolower((unsigned char)c) - 'a' + 10;
}

int rl_buf_json_unescape(rl_buf_t *buf, const char *s, size_t len)
{
    const char *end = s + len, *bs;

    rl_buf_reserve(buf, len);
    while ((bs = memchr(s, '\\', (size_t)(end - s))) != NULL) {
        int c;

        rl_buf_append(buf, s, (size_t)(bs - s));
        if (end - bs < 2)
            return -1;
        c = unescape_simple(bs[1]);
        if (c >= 0) {
            rl_buf_putc(buf, (char)c);
            s = bs + 2;
            continue;
        }
        /* \u00XX: the control characters escape_byte() writes. */
        if (bs[1] != 'u' || end - bs < 6 || bs[2] != '0' || bs[3] != '0' ||
            !isxdigit((unsigned char)bs[4]) || !isxdigit((unsigned char)bs[5]))
            return -1;
        rl_buf_putc(buf, (char)(hex_value(bs[4]) << 4 | hex_value(bs[5])));
        s = bs + 6;
    }
    rl_buf_append(buf, s, (size_t)(end - s));
    return 0;
}

void rl_errstr(char *errstr, size_t errstr_size, const char *fmt, ...)
{
    va_list ap;

    if (!errstr || !errstr_size)
        return;
    va_start(ap, fmt);
    vsnprintf(errstr, errstr_size, fmt, ap);
    va_end(ap);
}

const char *rl_buf_cstr(rl_buf_t *buf)
{
    if (!buf->data)
        return "";
    return buf->data;
}

void rl_buf_reset(rl_buf_t *buf)
{
    buf->len = 0;
    if (buf->data)
        buf->data[0] = '\0';
}

void rl_buf_free(rl_buf_t *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = buf->cap = 0;
}

char *rl_buf_steal(rl_buf_t *buf, size_t *lenp)
{
    char *data = buf->data ? buf->data : rl_xstrdup("");

    if (lenp)
        *lenp = buf->len;
    buf->data = NULL;
    buf->len = buf->cap = 0;
    return data;
}
