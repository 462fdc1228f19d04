/*
 * ragline - the event loop.
 *
 * One loop per worker thread multiplexes every file descriptor the
 * worker waits on (librdkafka queue wake-up fds, libcurl sockets, the
 * signal fd) and a heap of millisecond timers.  Callbacks run on the
 * loop's thread, one at a time, so the state they touch needs no lock.
 *
 * @locality every function must be called on the loop's own thread.
 */
#ifndef RAGLINE_LOOP_H
#define RAGLINE_LOOP_H

#include <stddef.h>
#include <stdint.h>

typedef struct rl_loop_s rl_loop_t;
typedef struct rl_timer_s rl_timer_t;

enum {
    RL_IO_READ = 1,  /**< wait for readability */
    RL_IO_WRITE = 2, /**< wait for writability */
    RL_IO_ERROR = 4, /**< reported only: hang-up or error on the fd */
};

/** @brief Called when @p fd is ready; @p events is a mask of RL_IO_*. */
typedef void(rl_io_cb)(rl_loop_t *loop, int fd, int events, void *opaque);

/** @brief Called once when a started timer expires. */
typedef void(rl_timer_cb)(rl_loop_t *loop, rl_timer_t *timer, void *opaque);

/**
 * A timer lives in memory the caller owns (usually embedded in a larger
 * struct), so starting and stopping one never allocates.
 */
struct rl_timer_s {
    int64_t due_ms;    /**< monotonic deadline while active */
    size_t heap_index; /**< position in the loop's heap; 0 = inactive */
    uint64_t seq;      /**< start order, so a turn runs only older timers */
    rl_timer_cb *cb;
    void *opaque;
};

/** @returns a new loop, or NULL with errno set if epoll fails. */
rl_loop_t *rl_loop_new(void);

/** @brief Frees the loop.  Registered fds are not closed. */
void rl_loop_destroy(rl_loop_t *loop);

/**
 * @brief Watches @p fd for @p events (RL_IO_READ and/or RL_IO_WRITE).
 *        Registering an fd that is already watched replaces its entry.
 * @returns 0, or -1 with errno set.
 */
int rl_loop_io_add(rl_loop_t *loop, int fd, int events, rl_io_cb *cb,
                   void *opaque);

/** @brief Changes the events watched on a registered fd. */
int rl_loop_io_mod(rl_loop_t *loop, int fd, int events);

/**
 * @brief Stops watching @p fd.  Safe to call from the fd's own callback;
 *        events already collected for it are discarded.
 */
int rl_loop_io_del(rl_loop_t *loop, int fd);

/** @brief Prepares a timer; it is inactive until started. */
void rl_timer_init(rl_timer_t *timer, rl_timer_cb *cb, void *opaque);

/** @brief (Re)starts @p timer to fire @p delay_ms from now. */
void rl_timer_start(rl_loop_t *loop, rl_timer_t *timer, int64_t delay_ms);

/** @brief Stops @p timer; harmless if it is not active. */
void rl_timer_stop(rl_loop_t *loop, rl_timer_t *timer);

/** @returns non-zero while @p timer is started and has not fired. */
int rl_timer_active(const rl_timer_t *timer);

/**
 * @brief Waits up to @p max_wait_ms (-1: until the next timer) for I/O,
 *        then runs the ready callbacks and the expired timers.
 * @returns the number of callbacks run, or -1 on an epoll error.
 */
int rl_loop_run_once(rl_loop_t *loop, int max_wait_ms);

/** @returns the loop's monotonic clock in ms, read once per iteration. */
int64_t rl_loop_now_ms(const rl_loop_t *loop);

/** @returns a fresh monotonic clock reading in microseconds. */
int64_t rl_now_us(void);

#endif
