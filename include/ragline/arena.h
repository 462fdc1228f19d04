/*
 * ragline - an arena for jansson trees.
 *
 * A parsed event is a tree of many small jansson allocations that live
 * exactly as long as the event.  With the arena, jansson takes them from
 * a few large chunks owned by the event, and the whole tree is freed
 * with the chunks: no per-node malloc or free, and no tree walk.
 *
 * jansson's allocator hooks are process-wide, so rl_arena_install()
 * must run before the first jansson allocation (first thing in main);
 * every block then carries a 16-byte header saying whether it came from
 * an arena or from malloc.  Without the install, arenas are not used
 * and jansson allocates as usual.
 *
 * @locality jansson may be used from one thread only once installed
 *           (the arena in use is a process-wide pointer).
 */
#ifndef RAGLINE_ARENA_H
#define RAGLINE_ARENA_H

#include <stddef.h>

typedef struct rl_arena_s rl_arena_t;

/** @brief Routes jansson's allocations through ragline's hooks. */
void rl_arena_install(void);

/** @returns non-zero once rl_arena_install() ran. */
int rl_arena_installed(void);

/** @returns a new arena whose first chunk holds @p hint bytes. */
rl_arena_t *rl_arena_new(size_t hint);

/** @brief Frees every chunk.  Trees allocated in it must not be used
 *         (nor json_decref'd) afterwards.  NULL is a no-op. */
void rl_arena_destroy(rl_arena_t *arena);

/**
 * @brief Makes jansson allocate from @p arena (NULL: from malloc) until
 *        the next call.
 * @returns the arena that was in use, to restore afterwards.
 */
rl_arena_t *rl_arena_use(rl_arena_t *arena);

/**
 * @brief Forgets everything allocated in @p arena, keeping one chunk as
 *        large as all its chunks were, so that the next tree of the same
 *        size fits in it at once.
 */
void rl_arena_reset(rl_arena_t *arena);

/** @returns the bytes of the arena's chunks. */
size_t rl_arena_size(const rl_arena_t *arena);

#endif
