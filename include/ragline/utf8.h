/*
 * ragline - decoding one UTF-8 sequence.
 *
 * The JSON reader, repr() and the log-safe copy of event ids all need
 * the same strict decoder; it is inline because the first two run it
 * for every non-ASCII character of an event.
 *
 * @locality any thread; no state.
 */
#ifndef RAGLINE_UTF8_H
#define RAGLINE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/**
 * @brief Decodes the UTF-8 sequence at @p s, of which @p avail (>= 1)
 *        bytes may be read.
 *
 * Overlong forms, surrogates, code points past U+10FFFF and truncated
 * sequences are ill-formed, as for Python's decoder.
 *
 * @returns the sequence's length (1 to 4) with its code point in *@p cp,
 *          or, as a negative number, the length of the maximal
 *          ill-formed subpart at @p s (at least 1): the bytes that one
 *          U+FFFD replaces, as Unicode recommends and Python's
 *          errors="replace" does.
 */
static inline int rl_utf8_decode(const unsigned char *s, size_t avail,
                                 uint32_t *cp)
{
    unsigned char lo = 0x80, hi = 0xbf;
    uint32_t v;
    int need, i;

    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        need = 1;
        v = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        need = 2;
        v = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        need = 3;
        v = s[0] & 0x07;
    } else {
        return -1;
    }

    /* The second byte's range rules out overlong forms, surrogates and
     * code points past U+10FFFF. */
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;

    for (i = 1; i <= need; i++) {
        if ((size_t)i >= avail || s[i] < lo || s[i] > hi)
            return -i;
        v = (v << 6) | (s[i] & 0x3f);
        lo = 0x80;
        hi = 0xbf;
    }
    *cp = v;
    return need + 1;
}

#endif
