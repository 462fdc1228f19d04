/*
 * ragline - when to try a failed backend call again.
 *
 * Pure decisions, no I/O and no clock: the caller passes the time (in
 * milliseconds) and the state of the random generator that spreads
 * retries, so that every answer can be reproduced in a test.
 *
 * The delay before a retry is drawn with "full jitter": uniform in
 * [0, min(max_backoff_ms, base_ms * 2^(attempt-1))], which keeps many
 * workers that failed together from coming back together.  A server's
 * Retry-After hint, when there is one, replaces the drawn delay.
 *
 * @locality any thread; the functions keep no state of their own.
 */
#ifndef RAGLINE_RETRY_H
#define RAGLINE_RETRY_H

#include <stddef.h>
#include <stdint.h>

/** What a failed call says about the next attempt. */
typedef enum {
    RL_RETRY_PERMANENT = 0, /**< the same request will fail again */
    RL_RETRY_RETRIABLE = 1, /**< a later attempt may succeed */
} rl_retry_class_t;

typedef struct rl_retry_policy_s {
    int max_attempts;           /**< attempts in all, the first included */
    int64_t base_ms;            /**< backoff ceiling of the first retry */
    int64_t max_backoff_ms;     /**< backoff ceiling, whatever the attempt */
    int64_t max_retry_after_ms; /**< longest hint honoured; <= 0: ignore */
    int64_t deadline_ms; /**< budget from the first attempt; <= 0: none */
} rl_retry_policy_t;

/** One failed attempt, as the retry decision sees it. */
typedef struct rl_retry_failure_s {
    int attempt;            /**< the attempt that failed, 1-based */
    int retriable;          /**< the result's retriable flag */
    int http_status;        /**< 0 when no HTTP reply was received */
    int64_t retry_after_ms; /**< server hint (rl_retry_after_ms()), or -1 */
    int64_t elapsed_ms;     /**< since the event's first attempt began */
} rl_retry_failure_t;

/**
 * @brief Fills @p policy with the documented defaults: 5 attempts, base
 *        200 ms, backoff cap 10 s, hint cap 30 s, deadline 120 s.
 */
void rl_retry_policy_default(rl_retry_policy_t *policy);

/**
 * @brief Classifies a failed call.
 *
 * @p transport_error non-zero means no complete HTTP reply arrived
 * (connection refused or reset, DNS, TLS, timeout): retriable.  Without
 * one, HTTP status 0 (no reply), 408, 409, 424 (TGI), 429 and 5xx are
 * retriable; every other status is permanent, 4xx included.  A reply
 * that arrived but could not be used (unparseable, too large) is
 * permanent whatever its status; the caller decides that, not this
 * function.
 */
rl_retry_class_t rl_retry_classify(int http_status, int transport_error);

/**
 * @brief Decides whether, and after how long, to try again.
 *
 * Steps, in order: a failure that is not retriable gives up
 * ("permanent: HTTP 400"); so does reaching policy->max_attempts ("gave
 * up after 5 attempts").  Otherwise the delay is drawn with full jitter,
 * or, when failure->retry_after_ms >= 0, is that hint capped at
 * policy->max_retry_after_ms (a cap <= 0 ignores hints).  Last, if
 * the retry would start at or after policy->deadline_ms from the first
 * attempt, it gives up ("deadline of 60000 ms would pass").
 *
 * @p rng is the caller's generator state (any value, 0 included, is a
 * valid seed); it advances when a delay is drawn.  @p reason may be
 * NULL; when given, it receives the one-line reason for the dead-letter
 * record on giving up and "" otherwise (truncated to @p reason_size).
 *
 * @returns the delay in ms (>= 0) before the next attempt, or -1 to
 *          give up.  Negative or odd policy values never make it
 *          overflow: base_ms <= 0 retries at once, max_attempts <= 1
 *          never retries.
 */
int64_t rl_retry_next_delay(const rl_retry_policy_t *policy,
                            const rl_retry_failure_t *failure, uint64_t *rng,
                            char *reason, size_t reason_size);

/**
 * @brief Reads a server's hint of when to come back.
 *
 * @p retry_after_ms_header (the value of "retry-after-ms", as OpenAI
 * and vLLM proxies send it) wins when it holds a non-negative number of
 * milliseconds, fraction allowed ("1500", "250.5", rounded up).
 * Otherwise @p retry_after_header ("Retry-After") is read as
 * delta-seconds ("120") or an HTTP-date in any of its three forms:
 * "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT"
 * (two-digit years read as at most 50 years ahead of @p now_unix_ms)
 * and "Sun Nov  6 08:49:37 1994".  Either header may be NULL; leading
 * and trailing blanks are allowed.
 *
 * @returns milliseconds from @p now_unix_ms (0 for a date already
 *          past; huge values saturate at INT64_MAX), or -1 when neither
 *          header is present and valid.
 */
int64_t rl_retry_after_ms(const char *retry_after_ms_header,
                          const char *retry_after_header, int64_t now_unix_ms);

#endif
