/*
 * ragline - an arena for jansson trees.
 *
 * Chunks are a singly linked list; allocation bumps a pointer in the
 * newest chunk and starts a chunk twice as big when it is full.  A
 * block's header records where it came from, so the free hook knows
 * whether to call free() or to do nothing.
 */
#include "ragline/arena.h"
#include "ragline/buf.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#define HEADER 16 /* keeps blocks 16-byte aligned, as malloc's are */

enum { FROM_HEAP = 0x6865, FROM_ARENA = 0x6172 };

typedef struct chunk_s {
    struct chunk_s *next;
    size_t used;
    size_t cap;
    /* 16-byte aligned data follows */
    _Alignas(16) unsigned char data[];
} chunk_t;

struct rl_arena_s {
    chunk_t *chunks; /**< newest first */
    size_t bytes;
};

static rl_arena_t *current;
static int installed;

static chunk_t *chunk_new(size_t cap)
{
    chunk_t *c = rl_xmalloc(sizeof(*c) + cap);

    c->next = NULL;
    c->used = 0;
    c->cap = cap;
    return c;
}

rl_arena_t *rl_arena_new(size_t hint)
{
    rl_arena_t *arena = rl_xmalloc(sizeof(*arena));

    hint = hint < 1024 ? 1024 : hint;
    arena->chunks = chunk_new(hint);
    arena->bytes = hint;
    return arena;
}

void rl_arena_destroy(rl_arena_t *arena)
{
    if (!arena)
        return;
    while (arena->chunks) {
        chunk_t *c = arena->chunks;

        arena->chunks = c->next;
        free(c);
    }
    if (current == arena)
        current = NULL;
    free(arena);
}

void rl_arena_reset(rl_arena_t *arena)
{
    chunk_t *c = arena->chunks;

    if (!c->next) {
        c->used = 0;
        return;
    }
    while (arena->chunks) {
        c = arena->chunks;
        arena->chunks = c->next;
        free(c);
    }
    arena->chunks = chunk_new(arena->bytes);
}

size_t rl_arena_size(const rl_arena_t *arena)
{
    return arena->bytes;
}

rl_arena_t *rl_arena_use(rl_arena_t *arena)
{
    rl_arena_t *previous = current;

    current = installed ? arena : NULL;
    return previous;
}

static void *arena_block(rl_arena_t *arena, size_t need)
{
    chunk_t *c = arena->chunks;
    void *p;

    if (c->cap - c->used < need) {
        size_t cap = c->cap * 2;

        while (cap < need)
            cap *= 2;
        c = chunk_new(cap);
        c->next = arena->chunks;
        arena->chunks = c;
        arena->bytes += cap;
    }
    p = c->data + c->used;
    c->used += need;
    return p;
}

static void *hook_malloc(size_t size)
{
    size_t need = HEADER + ((size + 15) & ~(size_t)15);
    uint16_t *tag;

    if (current) {
        tag = arena_block(current, need);
        *tag = FROM_ARENA;
    } else {
        tag = malloc(need);
        if (!tag)
            return NULL; /* jansson reports its own allocation failure */
        *tag = FROM_HEAP;
    }
    return (unsigned char *)tag + HEADER;
}

static void hook_free(void *ptr)
{
    uint16_t *tag;

    if (!ptr)
        return;
    tag = (uint16_t *)((unsigned char *)ptr - HEADER);
    if (*tag == FROM_HEAP)
        free(tag);
    /* An arena block goes with its arena. */
}

void rl_arena_install(void)
{
    json_set_alloc_funcs(hook_malloc, hook_free);
    installed = 1;
}

int rl_arena_installed(void)
{
    return installed;
}
