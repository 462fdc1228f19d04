/*
 * ragline - per-partition offset tracking.
 *
 * Events of one partition are taken in offset order but finish in any
 * order (backend calls overlap).  A tracker remembers every event taken
 * and not yet finished, so that the offset stored for commit is never
 * past the lowest unfinished one: after a crash, everything from that
 * offset on is consumed again, and nothing is lost.
 *
 * Offsets may have gaps (compaction, transaction markers); a tracker
 * holds the offsets it was given, not a range.
 *
 * @locality one thread (the worker's loop).
 */
#ifndef RAGLINE_OFFSETS_H
#define RAGLINE_OFFSETS_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_offtrack_s rl_offtrack_t;

/** @returns a new, empty tracker. */
rl_offtrack_t *rl_offtrack_new(void);

/** @brief Frees it.  NULL is a no-op. */
void rl_offtrack_destroy(rl_offtrack_t *track);

/**
 * @brief Records that the event at @p offset was taken.
 *
 * @p offset must be greater than every offset pushed before.
 * @returns a ticket for rl_offtrack_done(), or UINT64_MAX (nothing
 *          recorded) if @p offset is not increasing.
 */
uint64_t rl_offtrack_push(rl_offtrack_t *track, int64_t offset);

/**
 * @brief Records that the event of @p ticket finished (answered or
 *        dead-lettered, and acknowledged by the broker).
 * @returns the new commit position (the offset to resume from) if it
 *          moved forward, else -1.  A ticket finished twice is ignored.
 */
int64_t rl_offtrack_done(rl_offtrack_t *track, uint64_t ticket);

/**
 * @returns the offset to resume from: the lowest unfinished offset, or
 *          one past the last finished one when none is pending; -1 if
 *          no event has been taken yet.
 */
int64_t rl_offtrack_position(const rl_offtrack_t *track);

/** @returns how many taken events have not finished. */
size_t rl_offtrack_pending(const rl_offtrack_t *track);

#endif
