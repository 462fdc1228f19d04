/*
 * ragline - the event loop: epoll plus a binary heap of timers.
 */
#include "ragline/loop.h"
#include "ragline/buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct {
    rl_io_cb *cb;
    void *opaque;
    uint32_t gen; /**< bumped on every add/del: stale events are dropped */
    int events;   /**< RL_IO_* mask; 0 = not registered */
} io_slot_t;

struct rl_loop_s {
    int epfd;
    int64_t now_ms;

    io_slot_t *slots; /**< indexed by fd */
    size_t nslots;

    rl_timer_t **heap; /**< heap[1..nheap], 1-based; heap[0] unused */
    size_t nheap;
    size_t heap_cap;
    uint64_t timer_seq; /**< bumped by every rl_timer_start() */
};

int64_t rl_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t rl_loop_now_ms(const rl_loop_t *loop)
{
    return loop->now_ms;
}

rl_loop_t *rl_loop_new(void)
{
    rl_loop_t *loop = rl_xcalloc(1, sizeof(*loop));

    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        free(loop);
        return NULL;
    }
    loop->now_ms = rl_now_us() / 1000;
    return loop;
}

void rl_loop_destroy(rl_loop_t *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    free(loop->slots);
    free(loop->heap);
    free(loop);
}

static uint32_t to_epoll(int events)
{
    uint32_t ev = 0;

    if (events & RL_IO_READ)
        ev |= EPOLLIN;
    if (events & RL_IO_WRITE)
        ev |= EPOLLOUT;
    return ev;
}

static io_slot_t *slot_for(rl_loop_t *loop, int fd)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= loop->nslots) {
        size_t n = loop->nslots ? loop->nslots : 64;

        while (n <= (size_t)fd)
            n *= 2;
        loop->slots = rl_xrealloc(loop->slots, n * sizeof(*loop->slots));
        memset(loop->slots + loop->nslots, 0,
               (n - loop->nslots) * sizeof(*loop->slots));
        loop->nslots = n;
    }
    return &loop->slots[fd];
}

static int epoll_update(rl_loop_t *loop, int op, int fd, io_slot_t *slot)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = to_epoll(slot->events);
    ev.data.u64 = ((uint64_t)slot->gen << 32) | (uint32_t)fd;
    return epoll_ctl(loop->epfd, op, fd, &ev);
}

int rl_loop_io_add(rl_loop_t *loop, int fd, int events, rl_io_cb *cb,
                   void *opaque)
{
    io_slot_t *slot = slot_for(loop, fd);
    int op;

    if (!slot) {
        errno = EBADF;
        return -1;
    }
    op = slot->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    slot->cb = cb;
    slot->opaque = opaque;
    slot->gen++;
    slot->events = events ? events : RL_IO_READ;
    if (epoll_update(loop, op, fd, slot) < 0) {
        slot->events = 0;
        return -1;
    }
    return 0;
}

int rl_loop_io_mod(rl_loop_t *loop, int fd, int events)
{
    io_slot_t *slot = slot_for(loop, fd);

    if (!slot || !slot->events) {
        errno = ENOENT;
        return -1;
    }
    slot->events = events ? events : RL_IO_READ;
    return epoll_update(loop, EPOLL_CTL_MOD, fd, slot);
}

int rl_loop_io_del(rl_loop_t *loop, int fd)
{
    io_slot_t *slot = slot_for(loop, fd);

    if (!slot || !slot->events) {
        errno = ENOENT;
        return -1;
    }
    slot->events = 0;
    slot->gen++;
    /* The fd may already be closed, which removed it from epoll. */
    if (epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, NULL) < 0 && errno != EBADF)
        return -1;
    return 0;
}

/* Timers: a 1-based binary min-heap ordered by due_ms. */

static void heap_set(rl_loop_t *loop, size_t i, rl_timer_t *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void heap_up(rl_loop_t *loop, size_t i)
{
    rl_timer_t *t = loop->heap[i];

    while (i > 1 && loop->heap[i / 2]->due_ms > t->due_ms) {
        heap_set(loop, i, loop->heap[i / 2]);
        i /= 2;
    }
    heap_set(loop, i, t);
}

static void heap_down(rl_loop_t *loop, size_t i)
{
    rl_timer_t *t = loop->heap[i];

    for (;;) {
        size_t c = i * 2;

        if (c > loop->nheap)
            break;
        if (c + 1 <= loop->nheap &&
            loop->heap[c + 1]->due_ms < loop->heap[c]->due_ms)
            c++;
        if (loop->heap[c]->due_ms >= t->due_ms)
            break;
        heap_set(loop, i, loop->heap[c]);
        i = c;
    }
    heap_set(loop, i, t);
}

void rl_timer_init(rl_timer_t *timer, rl_timer_cb *cb, void *opaque)
{
    timer->due_ms = 0;
    timer->heap_index = 0;
    timer->seq = 0;
    timer->cb = cb;
    timer->opaque = opaque;
}

int rl_timer_active(const rl_timer_t *timer)
{
    return timer->heap_index != 0;
}

void rl_timer_stop(rl_loop_t *loop, rl_timer_t *timer)
{
    size_t i = timer->heap_index;
    rl_timer_t *last;

    if (!i)
        return;
    timer->heap_index = 0;
    last = loop->heap[loop->nheap--];
    if (last == timer)
        return;
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->heap_index);
}

void rl_timer_start(rl_loop_t *loop, rl_timer_t *timer, int64_t delay_ms)
{
    rl_timer_stop(loop, timer);
    if (delay_ms < 0)
        delay_ms = 0;
    /* Rounded up, so that a timer never fires before its delay; but a
     * 0 ms timer means "on the next turn" and must not wait for the
     * clock to tick (libcurl asks for one each time work is added). */
    if (delay_ms == 0)
        timer->due_ms = rl_now_us() / 1000;
    else
        timer->due_ms = (rl_now_us() + 999) / 1000 + delay_ms;
    timer->seq = loop->timer_seq++;
    if (loop->nheap + 1 >= loop->heap_cap) {
        loop->heap_cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        loop->heap =
            rl_xrealloc(loop->heap, loop->heap_cap * sizeof(*loop->heap));
    }
    loop->nheap++;
    heap_set(loop, loop->nheap, timer);
    heap_up(loop, loop->nheap);
}

/*
 * Runs the expired timers that were started before this turn.  A timer
 * a callback starts now, even a 0 ms one, waits for the next turn, so
 * that a callback re-arming itself cannot keep the loop from epoll.
 */
static int run_timers(rl_loop_t *loop)
{
    uint64_t limit = loop->timer_seq;
    int ran = 0;

    while (loop->nheap && loop->heap[1]->due_ms <= loop->now_ms &&
           loop->heap[1]->seq < limit) {
        rl_timer_t *t = loop->heap[1];

        rl_timer_stop(loop, t);
        t->cb(loop, t, t->opaque);
        ran++;
    }
    return ran;
}

static int wait_ms(const rl_loop_t *loop, int max_wait_ms)
{
    int64_t until;

    if (!loop->nheap)
        return max_wait_ms;
    until = loop->heap[1]->due_ms - loop->now_ms;
    if (until < 0)
        until = 0;
    if (max_wait_ms >= 0 && until > max_wait_ms)
        return max_wait_ms;
    return until > 60000 ? 60000 : (int)until;
}

int rl_loop_run_once(rl_loop_t *loop, int max_wait_ms)
{
    struct epoll_event evs[MAX_EVENTS];
    int n, i, ran = 0;

    loop->now_ms = rl_now_us() / 1000;
    n = epoll_wait(loop->epfd, evs, MAX_EVENTS, wait_ms(loop, max_wait_ms));
    if (n < 0 && errno != EINTR)
        return -1;
    loop->now_ms = rl_now_us() / 1000;

    for (i = 0; i < n; i++) {
        int fd = (int)(uint32_t)evs[i].data.u64;
        uint32_t gen = (uint32_t)(evs[i].data.u64 >> 32);
        io_slot_t *slot = &loop->slots[fd];
        int events = 0;

        /* Removed or replaced by an earlier callback of this batch. */
        if (!slot->events || slot->gen != gen)
            continue;
        if (evs[i].events & EPOLLIN)
            events |= RL_IO_READ;
        if (evs[i].events & EPOLLOUT)
            events |= RL_IO_WRITE;
        if (evs[i].events & (EPOLLERR | EPOLLHUP))
            events |= RL_IO_ERROR;
        slot->cb(loop, fd, events, slot->opaque);
        ran++;
    }

    return ran + run_timers(loop);
}
