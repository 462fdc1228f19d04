/*
 * ragline - a fast JSON reader that builds jansson trees.
 *
 * A recursive-descent parser over the whole text.  Its one trick is in
 * strings, where the time goes: eight bytes are tested at once for the
 * bytes that need a look (quote, backslash, control, non-ASCII), and a
 * string without escapes goes to jansson straight from the input, so it
 * is copied once.  Escaped strings are decoded into a scratch buffer
 * first.  Recursion is bounded by the caller's depth limit.
 */
#include "ragline/json.h"
#include "ragline/buf.h"
#include "ragline/utf8.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

typedef struct parser_s {
    const unsigned char *text; /**< start, for error positions */
    const unsigned char *p;    /**< next byte to read */
    const unsigned char *end;
    int depth;
    int max_depth;
    unsigned flags;
    rl_buf_t scratch; /**< decoded escaped strings */
    rl_json_error_t *err;
} parser_t;

static json_t *parse_value(parser_t *ps);

/* ---- errors ---- */

/* Fills in line and column of @p at, counting characters, not bytes. */
static void locate(rl_json_error_t *err, const unsigned char *text,
                   const unsigned char *at)
{
    const unsigned char *s;

    err->offset = (size_t)(at - text);
    err->line = 1;
    err->column = 1;
    for (s = text; s < at; s++) {
        if (*s == '\n') {
            err->line++;
            err->column = 1;
        } else if ((*s & 0xc0) != 0x80) {
            err->column++;
        }
    }
}

static void fail_at(parser_t *ps, const unsigned char *at, int too_deep,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail_at(parser_t *ps, const unsigned char *at, int too_deep,
                    const char *fmt, ...)
{
    rl_json_error_t *err = ps->err;
    char what[sizeof(err->text) - 40];
    va_list ap;

    if (!err)
        return;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    locate(err, ps->text, at);
    err->too_deep = too_deep;
    snprintf(err->text, sizeof(err->text), "line %d column %d: %s", err->line,
             err->column, what);
}

/* Describes the byte at @p at for an error: 'x', byte 0xe9, the end. */
static const char *found(const parser_t *ps, const unsigned char *at, char *dst,
                         size_t size)
{
    if (at >= ps->end)
        snprintf(dst, size, "the end of the text");
    else if (*at >= 0x20 && *at < 0x7f)
        snprintf(dst, size, "'%c'", *at);
    else
        snprintf(dst, size, "byte 0x%02x", *at);
    return dst;
}

static void unexpected(parser_t *ps, const char *wanted)
{
    char what[32];

    fail_at(ps, ps->p, 0, "expected %s, found %s", wanted,
            found(ps, ps->p, what, sizeof(what)));
}

/* ---- scanning ---- */

static void skip_space(parser_t *ps)
{
    const unsigned char *p = ps->p;

    while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS (ONES * 0x80)

/*
 * @returns the first byte at or after @p s that a string scan must look
 * at: '"', '\\', a control character or a non-ASCII byte; @p end if
 * none.  SSE2 (always there on x86-64) takes 16 bytes a step, where a
 * signed compare with 0x20 catches control and non-ASCII bytes at once.
 * The portable step takes 8: each of its word tests can flag a byte
 * above a real hit (borrows carry upwards) but never below one, so on a
 * little-endian machine the lowest flag is always a real hit.
 */
static const unsigned char *next_special(const unsigned char *s,
                                         const unsigned char *end)
{
#ifdef __SSE2__
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i bslash = _mm_set1_epi8('\\');

    while (end - s >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)s);
        __m128i hit = _mm_or_si128(
            _mm_cmplt_epi8(x, space),
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)));
        unsigned mask = (unsigned)_mm_movemask_epi8(hit);

        if (mask)
            return s + __builtin_ctz(mask);
        s += 16;
    }
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    while (end - s >= 8) {
        uint64_t x, q, b, hit;

        memcpy(&x, s, 8);
        q = x ^ (ONES * '"');
        b = x ^ (ONES * '\\');
        hit = (((q - ONES) & ~q) | ((b - ONES) & ~b) |
               ((x - ONES * 0x20) & ~x) | x) &
              HIGHS;
        if (hit)
            return s + (__builtin_ctzll(hit) >> 3);
        s += 8;
    }
#endif
    while (s < end && *s != '"' && *s != '\\' && *s >= 0x20 && *s < 0x80)
        s++;
    return s;
}

static int hex4(const unsigned char *s, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;
    int i;

    if (end - s < 4)
        return -1;
    for (i = 0; i < 4; i++) {
        unsigned char c = s[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f')
            v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            v |= (unsigned)(c - 'A' + 10);
        else
            return -1;
    }
    *out = v;
    return 0;
}

static void put_utf8(rl_buf_t *out, unsigned cp)
{
    char b[4];
    size_t n;

    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xc0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xe0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[2] = (char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        b[0] = (char)(0xf0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        b[3] = (char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    rl_buf_append(out, b, n);
}

/*
 * Decodes the escape at ps->p (just past the backslash) into the
 * scratch buffer.  @returns 0, or -1 with the error set.
 */
static int decode_escape(parser_t *ps)
{
    const unsigned char *at = ps->p - 1;
    unsigned cp, lo;
    char simple;

    if (ps->p >= ps->end) {
        fail_at(ps, at, 0, "unterminated string");
        return -1;
    }
    switch (*ps->p) {
    case '"':
    case '\\':
    case '/':
        simple = (char)*ps->p;
        break;
    case 'b':
        simple = '\b';
        break;
    case 'f':
        simple = '\f';
        break;
    case 'n':
        simple = '\n';
        break;
    case 'r':
        simple = '\r';
        break;
    case 't':
        simple = '\t';
        break;
    case 'u':
        goto unicode;
    default:
        fail_at(ps, at, 0, "invalid escape '\\%c' in a string",
                *ps->p >= 0x20 && *ps->p < 0x7f ? *ps->p : '?');
        return -1;
    }
    rl_buf_putc(&ps->scratch, simple);
    ps->p++;
    return 0;

unicode:
    if (hex4(ps->p + 1, ps->end, &cp) < 0)
        goto bad_u;
    ps->p += 5;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        goto lone;
    if (cp >= 0xd800 && cp <= 0xdbff) {
        /* A high surrogate must be followed by an escaped low one. */
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            goto lone;
        if (hex4(ps->p + 2, ps->end, &lo) < 0)
            goto bad_u;
        if (lo < 0xdc00 || lo > 0xdfff)
            goto lone;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        ps->p += 6;
    }
    put_utf8(&ps->scratch, cp);
    return 0;

bad_u:
    fail_at(ps, at, 0, "'\\u' must be followed by four hex digits");
    return -1;
lone:
    fail_at(ps, at, 0, "a lone UTF-16 surrogate in a \\u escape");
    return -1;
}

/*
 * Scans the string whose opening quote is at ps->p.  On success
 * *@p out points either into the input or into the scratch buffer
 * (valid until the next string), and ps->p is past the closing quote.
 */
static int scan_string(parser_t *ps, const char **out, size_t *out_len)
{
    const unsigned char *start = ps->p + 1, *run = start, *s = start;
    int escaped = 0;

    for (;;) {
        int n;

        s = next_special(s, ps->end);
        if (s >= ps->end) {
            fail_at(ps, start - 1, 0, "unterminated string");
            return -1;
        }
        if (*s == '"')
            break;
        if (*s >= 0x80) {
            /* Non-ASCII comes in runs (a word of Cyrillic or CJK): the
             * whole run is taken here. */
            do {
                uint32_t cp;

                n = rl_utf8_decode(s, (size_t)(ps->end - s), &cp);
                if (n < 0) {
                    fail_at(ps, s, 0, "invalid UTF-8 byte 0x%02x in a string",
                            *s);
                    return -1;
                }
                s += n;
            } while (s < ps->end && *s >= 0x80);
            continue;
        }
        if (*s < 0x20) {
            fail_at(ps, s, 0,
                    "control character 0x%02x in a string (it must be "
                    "escaped)",
                    *s);
            return -1;
        }
        /* A backslash: from here on the string is built in scratch. */
        if (!escaped) {
            rl_buf_reset(&ps->scratch);
            escaped = 1;
        }
        rl_buf_append(&ps->scratch, run, (size_t)(s - run));
        ps->p = s + 1;
        if (decode_escape(ps) < 0)
            return -1;
        s = run = ps->p;
    }

    if (escaped) {
        rl_buf_append(&ps->scratch, run, (size_t)(s - run));
        *out = ps->scratch.data;
        *out_len = ps->scratch.len;
    } else {
        *out = (const char *)start;
        *out_len = (size_t)(s - start);
    }
    ps->p = s + 1;
    return 0;
}

/* ---- values ---- */

static int is_digit(const unsigned char *p, const unsigned char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

static const unsigned char *skip_digits(const unsigned char *p,
                                        const unsigned char *end)
{
    while (is_digit(p, end))
        p++;
    return p;
}

/* The integer in [s, e) (digits after an optional '-'), or -1 with
 * the error set when it does not fit in 64 bits. */
static int parse_integer(parser_t *ps, const unsigned char *s,
                         const unsigned char *e, json_int_t *out)
{
    int negative = *s == '-';
    uint64_t v = 0, limit;

    limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (s += negative; s < e; s++) {
        unsigned d = (unsigned)(*s - '0');

        if (v > (limit - d) / 10) {
            fail_at(ps, ps->p, 0,
                    "integer too large for 64 bits (write it as a "
                    "string)");
            return -1;
        }
        v = v * 10 + d;
    }
    if (negative)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(json_int_t)v;
    else
        *out = (json_int_t)v;
    return 0;
}

static json_t *parse_real(parser_t *ps, const unsigned char *e)
{
    size_t len = (size_t)(e - ps->p);
    char small[64], *copy = small, *stop;
    double v;

    /* strtod wants a terminated string; the input is not one. */
    if (len >= sizeof(small))
        copy = rl_xmalloc(len + 1);
    memcpy(copy, ps->p, len);
    copy[len] = '\0';
    errno = 0;
    v = strtod(copy, &stop);
    if (copy != small)
        free(copy);
    if (errno == ERANGE && (v > 1.0 || v < -1.0)) {
        fail_at(ps, ps->p, 0, "number too large for a double");
        return NULL;
    }
    ps->p = e;
    return json_real(v);
}

static json_t *parse_number(parser_t *ps)
{
    const unsigned char *p = ps->p, *end = ps->end;
    int real = 0;
    json_int_t iv;

    if (*p == '-')
        p++;
    if (!is_digit(p, end))
        goto bad;
    if (*p == '0') {
        if (is_digit(++p, end))
            goto bad;
    } else {
        p = skip_digits(p, end);
    }
    if (p < end && *p == '.') {
        real = 1;
        if (!is_digit(++p, end))
            goto bad;
        p = skip_digits(p, end);
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (!is_digit(p, end))
            goto bad;
        p = skip_digits(p, end);
    }
    if (real)
        return parse_real(ps, p);
    if (parse_integer(ps, ps->p, p, &iv) < 0)
        return NULL;
    ps->p = p;
    return json_integer(iv);

bad:
    fail_at(ps, ps->p, 0, "malformed number");
    return NULL;
}

static json_t *parse_literal(parser_t *ps, const char *word, size_t len,
                             json_t *value)
{
    if ((size_t)(ps->end - ps->p) < len || memcmp(ps->p, word, len) != 0) {
        unexpected(ps, "a value");
        return NULL;
    }
    ps->p += len;
    return value;
}

static int enter(parser_t *ps)
{
    if (++ps->depth > ps->max_depth) {
        fail_at(ps, ps->p, 1, "nesting deeper than %d", ps->max_depth);
        return -1;
    }
    ps->p++;
    skip_space(ps);
    return 0;
}

/*
 * Reads `"key": value` at ps->p into @p obj.  A key decoded into the
 * scratch buffer is copied first: parsing the value reuses the buffer.
 */
static int parse_member(parser_t *ps, json_t *obj)
{
    const unsigned char *key_at = ps->p;
    const char *key;
    char *key_copy = NULL;
    size_t key_len, size;
    json_t *value;
    int ret = -1;

    if (ps->p >= ps->end || *ps->p != '"') {
        unexpected(ps, "a string key");
        return -1;
    }
    if (scan_string(ps, &key, &key_len) < 0)
        return -1;
    if (memchr(key, '\0', key_len)) {
        fail_at(ps, key_at, 0, "an object key contains \\u0000");
        return -1;
    }
    if (key == ps->scratch.data)
        key = key_copy = rl_xmemdup(key, key_len);
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p != ':') {
        unexpected(ps, "':' after an object key");
        goto out;
    }
    ps->p++;
    skip_space(ps);
    value = parse_value(ps);
    if (!value)
        goto out;

    /* A repeated key replaces its value in place, so the size tells
     * without a second lookup. */
    size = json_object_size(obj);
    if (json_object_setn_new_nocheck(obj, key, key_len, value) < 0) {
        fail_at(ps, key_at, 0, "cannot add object key");
        goto out;
    }
    if (json_object_size(obj) == size && !(ps->flags & RL_JSON_KEEP_LAST)) {
        fail_at(ps, key_at, 0, "duplicate object key \"%.*s\"",
                key_len > 40 ? 40 : (int)key_len, key);
        goto out;
    }
    ret = 0;
out:
    free(key_copy);
    return ret;
}

static json_t *parse_object(parser_t *ps)
{
    json_t *obj;

    if (enter(ps) < 0)
        return NULL;
    obj = json_object();
    if (ps->p < ps->end && *ps->p == '}')
        goto done;
    for (;;) {
        if (parse_member(ps, obj) < 0)
            goto fail;
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_space(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}')
            break;
        unexpected(ps, "',' or '}' in an object");
        goto fail;
    }
done:
    ps->p++;
    ps->depth--;
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

static json_t *parse_array(parser_t *ps)
{
    json_t *arr, *item;

    if (enter(ps) < 0)
        return NULL;
    arr = json_array();
    if (ps->p < ps->end && *ps->p == ']')
        goto done;
    for (;;) {
        item = parse_value(ps);
        if (!item)
            goto fail;
        json_array_append_new(arr, item);
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            skip_space(ps);
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']')
            break;
        unexpected(ps, "',' or ']' in an array");
        goto fail;
    }
done:
    ps->p++;
    ps->depth--;
    return arr;
fail:
    json_decref(arr);
    return NULL;
}

/* Parses the value at ps->p (white space already skipped). */
static json_t *parse_value(parser_t *ps)
{
    const char *s;
    size_t len;

    if (ps->p >= ps->end) {
        unexpected(ps, "a value");
        return NULL;
    }
    switch (*ps->p) {
    case '"':
        if (scan_string(ps, &s, &len) < 0)
            return NULL;
        return json_stringn_nocheck(s, len);
    case '{':
        return parse_object(ps);
    case '[':
        return parse_array(ps);
    case 't':
        return parse_literal(ps, "true", 4, json_true());
    case 'f':
        return parse_literal(ps, "false", 5, json_false());
    case 'n':
        return parse_literal(ps, "null", 4, json_null());
    default:
        if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
            return parse_number(ps);
        unexpected(ps, "a value");
        return NULL;
    }
}

json_t *rl_json_parse(const char *text, size_t len, int max_depth,
                      unsigned flags, rl_json_error_t *err)
{
    parser_t ps = {(const unsigned char *)text,
                   (const unsigned char *)text,
                   (const unsigned char *)text + len,
                   0,
                   max_depth,
                   flags,
                   {NULL, 0, 0},
                   err};
    json_t *root;

    if (err)
        memset(err, 0, sizeof(*err));
    skip_space(&ps);
    root = parse_value(&ps);
    if (root) {
        skip_space(&ps);
        if (ps.p < ps.end) {
            unexpected(&ps, "the end of the text after the value");
            json_decref(root);
            root = NULL;
        }
    }
    rl_buf_free(&ps.scratch);
    return root;
}
