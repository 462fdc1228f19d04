/*
 * ragline - per-key queues, for ordering = key and ordering = partition.
 *
 * Events that share an ordering key run one at a time, in the order
 * they were taken; events with different keys run concurrently.  A
 * keyq maps each key that has an event in progress to the FIFO of the
 * events waiting behind it; a key with nothing in progress holds no
 * memory.
 *
 * @locality one thread (the worker's loop).
 */
#ifndef RAGLINE_KEYQ_H
#define RAGLINE_KEYQ_H

#include <stddef.h>

typedef struct rl_keyq_s rl_keyq_t;

/** @returns a new, empty keyq. */
rl_keyq_t *rl_keyq_new(void);

/** @brief Frees it; the items are the caller's.  NULL is a no-op. */
void rl_keyq_destroy(rl_keyq_t *q);

/**
 * @brief Registers @p item under @p key.
 * @returns 1 if @p item may start now (no other item of the key is in
 *          progress), 0 if it waits: rl_keyq_leave() of the item ahead
 *          of it returns it when its turn comes.
 */
int rl_keyq_enter(rl_keyq_t *q, const void *key, size_t key_len, void *item);

/**
 * @brief Says the item in progress for @p key finished.
 * @returns the next item of the key, which is now in progress, or NULL
 *          when none waits (the key is forgotten).
 */
void *rl_keyq_leave(rl_keyq_t *q, const void *key, size_t key_len);

/** @returns the number of keys with an item in progress. */
size_t rl_keyq_keys(const rl_keyq_t *q);

#endif
