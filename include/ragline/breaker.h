/*
 * ragline - a circuit breaker for "the backend is down as a whole".
 *
 * While the backend answers, the breaker is CLOSED and every request
 * goes.  Enough backend failures (a run of consecutive ones, or a high
 * error rate over a sliding window of per-second buckets) OPEN it: no
 * request goes, so that events wait in Kafka instead of burning their
 * retries and landing in the dead-letter topic.  After open_ms the next
 * request is let through alone as a probe (HALF_OPEN).  Its success
 * closes the breaker; its failure opens it again for twice as long, up
 * to max_open_ms.
 *
 * Only failures that say something about the backend count: transport
 * errors, timeouts, 5xx, 429.  A permanent 4xx is the event's fault and
 * counts as an answer, so one bad event cannot open the breaker.
 *
 * Pure logic: no I/O, no clock (times are the caller's monotonic
 * milliseconds, never decreasing), no allocation after rl_breaker_new().
 *
 * @locality one thread (the worker's loop).
 */
#ifndef RAGLINE_BREAKER_H
#define RAGLINE_BREAKER_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    RL_BREAKER_CLOSED,    /**< requests go */
    RL_BREAKER_OPEN,      /**< requests wait for the next probe time */
    RL_BREAKER_HALF_OPEN, /**< one probe is in flight; the rest wait */
} rl_breaker_state_t;

/** How one call ended, as far as the backend's health goes. */
typedef enum {
    RL_BREAKER_SUCCESS,   /**< an answer */
    RL_BREAKER_PERMANENT, /**< a permanent error: the backend is up */
    RL_BREAKER_FAILURE,   /**< a retriable failure: it may be down */
} rl_breaker_outcome_t;

/** What rl_breaker_allow() lets the caller do with one request. */
typedef enum {
    RL_BREAKER_WAIT = 0,  /**< hold it */
    RL_BREAKER_GO = 1,    /**< send it */
    RL_BREAKER_PROBE = 2, /**< send it as the probe; report its end with
                           *   rl_breaker_probe_done() */
} rl_breaker_verdict_t;

typedef struct rl_breaker_conf_s {
    int failures;        /**< consecutive failures that open; 0: off */
    double error_rate;   /**< failed/calls that opens, in (0, 1]; 0: off */
    int64_t window_ms;   /**< the rate's window, <= 1 h; whole seconds */
    int min_calls;       /**< calls in the window before the rate counts */
    int64_t open_ms;     /**< first wait before a probe, >= 1 */
    int64_t max_open_ms; /**< longest wait, >= open_ms */
} rl_breaker_conf_t;

/**
 * Called on every change of state, from inside rl_breaker_allow(),
 * rl_breaker_record() or rl_breaker_probe_done().  @p why is one line
 * for the operator's log, e.g. "backend circuit opened: 5 consecutive
 * failures (last: HTTP 503 ...)", valid during the call only.  The
 * callback may read the breaker but not change it.
 */
typedef void(rl_breaker_change_cb)(void *opaque, rl_breaker_state_t from,
                                   rl_breaker_state_t to, const char *why);

typedef struct rl_breaker_s rl_breaker_t;

/**
 * @brief Fills @p conf with the documented defaults: 5 failures, rate
 *        0.5 over 10 s with at least 20 calls, open 1 s growing to 30 s.
 */
void rl_breaker_conf_default(rl_breaker_conf_t *conf);

/**
 * @returns a CLOSED breaker, or NULL with a one-line reason in
 *          @p errstr if @p conf is out of range.  @p cb may be NULL.
 */
rl_breaker_t *rl_breaker_new(const rl_breaker_conf_t *conf,
                             rl_breaker_change_cb *cb, void *opaque,
                             char *errstr, size_t errstr_size);

/** @brief Frees it.  NULL is a no-op. */
void rl_breaker_destroy(rl_breaker_t *breaker);

/**
 * @brief Asks whether one request may be sent at @p now_ms.
 *
 * CLOSED: GO.  OPEN: WAIT, until rl_breaker_next_probe_ms() has come;
 * then the breaker turns HALF_OPEN and this one request is the PROBE.
 * HALF_OPEN: WAIT (the probe is out).  A PROBE must be sent and its end
 * reported, or the breaker stays HALF_OPEN.
 */
rl_breaker_verdict_t rl_breaker_allow(rl_breaker_t *breaker, int64_t now_ms);

/**
 * @brief Records the end of a request that was sent on GO.
 *
 * When CLOSED, counts it and may open the breaker.  Otherwise it was
 * sent before the breaker opened, says nothing new, and is ignored.
 * @p detail (may be NULL) is a short description of a failure ("HTTP
 * 503: overloaded"), quoted in the message when the breaker opens.
 */
void rl_breaker_record(rl_breaker_t *breaker, rl_breaker_outcome_t outcome,
                       const char *detail, int64_t now_ms);

/**
 * @brief Records the end of the probe (the request sent on PROBE).
 *
 * FAILURE opens the breaker again with the wait doubled (at most
 * max_open_ms); SUCCESS or PERMANENT close it and clear every count.
 * Ignored unless the breaker is HALF_OPEN.
 */
void rl_breaker_probe_done(rl_breaker_t *breaker, rl_breaker_outcome_t outcome,
                           const char *detail, int64_t now_ms);

/** @returns the current state. */
rl_breaker_state_t rl_breaker_state(const rl_breaker_t *breaker);

/**
 * @returns when OPEN, the time (in the caller's ms) from which
 *          rl_breaker_allow() hands out the probe; else -1.
 */
int64_t rl_breaker_next_probe_ms(const rl_breaker_t *breaker);

/** @returns "closed", "open" or "half-open". */
const char *rl_breaker_state_name(rl_breaker_state_t state);

#endif
