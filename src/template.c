/*
 * ragline - prompt templates with Python string.Template syntax.
 *
 * Parsing happens once, at load time, so that a bad template stops the
 * worker at startup instead of dead-lettering every event.  The parts
 * point into the template's own copy of the text: "$$" becomes the first
 * "$" of the pair, kept as the tail of a literal part.
 */
#include "ragline/template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rl_template_s {
    char *text; /* owned; the parts point into it */
    size_t len;
    rl_template_part_t *parts;
    size_t count;
    size_t cap;
};

static void add_part(rl_template_t *tpl, const char *text, size_t len, int slot)
{
    rl_template_part_t *part;

    if (slot < 0 && len == 0)
        return;
    if (tpl->count == tpl->cap) {
        tpl->cap = tpl->cap ? tpl->cap * 2 : 8;
        tpl->parts = rl_xrealloc(tpl->parts, tpl->cap * sizeof(*part));
    }
    part = &tpl->parts[tpl->count++];
    part->text = text;
    part->len = len;
    part->slot = slot;
    part->escaped = NULL;
    part->escaped_len = 0;
    if (slot < 0) {
        /* Escaped once here rather than for every escaped render. */
        rl_buf_t esc = RL_BUF_INIT;

        rl_buf_json_escape(&esc, text, len);
        part->escaped = rl_buf_steal(&esc, &part->escaped_len);
    }
}

static int is_ident_start(char c)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

/* Returns the index of the name in @p names, or -1. */
static int find_slot(const char *const *names, const char *name, size_t len)
{
    int i;

    for (i = 0; names && names[i]; i++) {
        if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
            return i;
    }
    return -1;
}

/* Formats "origin:line:col: " for the byte at @p pos (both 1-based). */
static void locate(const char *text, size_t pos, const char *origin, char *dst,
                   size_t dst_size)
{
    size_t line = 1, col = 1, i;

    for (i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    snprintf(dst, dst_size, "%s:%zu:%zu", origin, line, col);
}

/*
 * Parses the placeholder whose "$" is at @p dollar.  On success adds it
 * and returns the offset just past it; returns 0 on error (a placeholder
 * is never empty, so 0 cannot be a valid end).
 */
static size_t parse_placeholder(rl_template_t *tpl, size_t dollar,
                                const char *const *names, const char *origin,
                                char *errstr, size_t errstr_size)
{
    const char *text = tpl->text;
    size_t i = dollar + 1;
    size_t name_start, name_len;
    int braced, slot;
    char where[256];

    braced = i < tpl->len && text[i] == '{';
    if (braced)
        i++;
    name_start = i;
    if (i < tpl->len && is_ident_start(text[i])) {
        while (i < tpl->len && is_ident_char(text[i]))
            i++;
    }
    name_len = i - name_start;

    if (name_len == 0 || (braced && (i >= tpl->len || text[i] != '}'))) {
        locate(text, dollar, origin, where, sizeof(where));
        rl_errstr(errstr, errstr_size,
                  "%s: invalid placeholder: \"$\" must be followed by \"$\", "
                  "a name or {name}",
                  where);
        return 0;
    }

    slot = find_slot(names, text + name_start, name_len);
    if (slot < 0) {
        locate(text, dollar, origin, where, sizeof(where));
        rl_errstr(errstr, errstr_size, "%s: unknown placeholder \"%.*s\"",
                  where, (int)(name_len < 64 ? name_len : 64),
                  text + name_start);
        return 0;
    }

    add_part(tpl, text + name_start, name_len, slot);
    return braced ? i + 1 : i;
}

rl_template_t *rl_template_parse(const char *text, size_t len,
                                 const char *const *names, const char *origin,
                                 char *errstr, size_t errstr_size)
{
    rl_template_t *tpl = rl_xcalloc(1, sizeof(*tpl));
    size_t lit = 0; /* start of the literal text not yet added */
    size_t i = 0;

    if (!origin)
        origin = "<default>";
    tpl->text = rl_xmemdup(text, len);
    tpl->len = len;

    for (;;) {
        const char *dollar = memchr(tpl->text + i, '$', len - i);
        size_t next;

        if (!dollar)
            break;
        i = (size_t)(dollar - tpl->text);

        if (i + 1 < len && tpl->text[i + 1] == '$') {
            /* "$$": keep the first "$" as the end of the literal. */
            add_part(tpl, tpl->text + lit, i + 1 - lit, -1);
            i += 2;
            lit = i;
            continue;
        }

        add_part(tpl, tpl->text + lit, i - lit, -1);
        next = parse_placeholder(tpl, i, names, origin, errstr, errstr_size);
        if (next == 0)
            goto fail;
        i = next;
        lit = i;
    }
    add_part(tpl, tpl->text + lit, len - lit, -1);
    return tpl;

fail:
    rl_template_destroy(tpl);
    return NULL;
}

rl_template_t *rl_template_load(const char *path, const char *const *names,
                                char *errstr, size_t errstr_size)
{
    rl_template_t *tpl = NULL;
    rl_buf_t text = RL_BUF_INIT;
    char chunk[8192];
    size_t n;
    FILE *f;

    f = fopen(path, "rb");
    if (!f) {
        rl_errstr(errstr, errstr_size, "%s: cannot open template: %s", path,
                  strerror(errno));
        return NULL;
    }
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n == 0)
            break;
        rl_buf_append(&text, chunk, n);
    }
    if (ferror(f)) {
        rl_errstr(errstr, errstr_size, "%s: cannot read template: %s", path,
                  strerror(errno));
        goto close_file;
    }

    tpl = rl_template_parse(rl_buf_cstr(&text), text.len, names, path, errstr,
                            errstr_size);

close_file:
    fclose(f);
    rl_buf_free(&text);
    return tpl;
}

void rl_template_destroy(rl_template_t *tpl)
{
    size_t i;

    if (!tpl)
        return;
    for (i = 0; i < tpl->count; i++)
        free((char *)tpl->parts[i].escaped);
    free(tpl->parts);
    free(tpl->text);
    free(tpl);
}

const rl_template_part_t *rl_template_parts(const rl_template_t *tpl,
                                            size_t *count)
{
    *count = tpl->count;
    return tpl->parts;
}
