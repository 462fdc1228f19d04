/*
 * ragline - per-partition offset tracking.
 *
 * A ring of (offset, done) entries addressed by an ever-increasing
 * sequence number, which doubles as the ticket: entry seq lives at
 * ring[seq & mask] while head <= seq < tail.  Finishing the head entry
 * pops every finished entry behind it.
 */
#include "ragline/offsets.h"
#include "ragline/buf.h"

#include <stdlib.h>

typedef struct {
    int64_t offset;
    int done;
} entry_t;

struct rl_offtrack_s {
    entry_t *ring;
    size_t mask;   /**< ring size - 1; the size is a power of two */
    uint64_t head; /**< sequence of the oldest unfinished entry */
    uint64_t tail; /**< sequence the next push gets */
    int64_t last;  /**< highest offset pushed; -1 before the first */
    size_t pending;
};

rl_offtrack_t *rl_offtrack_new(void)
{
    rl_offtrack_t *t = rl_xcalloc(1, sizeof(*t));

    t->mask = 15;
    t->ring = rl_xcalloc(t->mask + 1, sizeof(*t->ring));
    t->last = -1;
    return t;
}

void rl_offtrack_destroy(rl_offtrack_t *track)
{
    if (!track)
        return;
    free(track->ring);
    free(track);
}

/* Doubles the ring, moving live entries to their slots in the new one. */
static void grow(rl_offtrack_t *t)
{
    size_t size = (t->mask + 1) * 2;
    entry_t *ring = rl_xcalloc(size, sizeof(*ring));
    uint64_t seq;

    for (seq = t->head; seq < t->tail; seq++)
        ring[seq & (size - 1)] = t->ring[seq & t->mask];
    free(t->ring);
    t->ring = ring;
    t->mask = size - 1;
}

uint64_t rl_offtrack_push(rl_offtrack_t *track, int64_t offset)
{
    entry_t *e;

    if (offset <= track->last)
        return UINT64_MAX;
    if (track->tail - track->head > track->mask)
        grow(track);
    e = &track->ring[track->tail & track->mask];
    e->offset = offset;
    e->done = 0;
    track->last = offset;
    track->pending++;
    return track->tail++;
}

int64_t rl_offtrack_done(rl_offtrack_t *track, uint64_t ticket)
{
    entry_t *e;

    if (ticket < track->head || ticket >= track->tail)
        return -1;
    e = &track->ring[ticket & track->mask];
    if (e->done)
        return -1;
    e->done = 1;
    track->pending--;
    if (ticket != track->head)
        return -1;

    while (track->head < track->tail &&
           track->ring[track->head & track->mask].done)
        track->head++;
    return rl_offtrack_position(track);
}

int64_t rl_offtrack_position(const rl_offtrack_t *track)
{
    if (track->head < track->tail)
        return track->ring[track->head & track->mask].offset;
    return track->last < 0 ? -1 : track->last + 1;
}

size_t rl_offtrack_pending(const rl_offtrack_t *track)
{
    return track->pending;
}
