/*
 * ragline - a circuit breaker for "the backend is down as a whole".
 *
 * The error rate is counted in a ring of per-second buckets, one slot a
 * second of the window.  A bucket remembers which second it counts, so
 * a slot left from an older lap of the ring is recognised as stale and
 * started afresh when written, and skipped when summed: old failures
 * age out without a timer.
 */
#include "ragline/breaker.h"
#include "ragline/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WINDOW_MS 3600000
#define NEVER         INT64_MIN

typedef struct {
    int64_t second; /**< the second counted here; NEVER: unused */
    uint32_t calls;
    uint32_t failures;
} bucket_t;

struct rl_breaker_s {
    rl_breaker_conf_t conf;
    rl_breaker_change_cb *cb;
    void *opaque;
    rl_breaker_state_t state;

    bucket_t *ring;
    int64_t nbuckets;
    int consecutive; /**< failures since the last answer */

    int64_t wait_ms;       /**< current wait before a probe */
    int64_t opened_at_ms;  /**< when this outage began */
    int64_t next_probe_ms; /**< when OPEN: the probe's time */

    char last_failure[160]; /**< detail of the latest failure */
    char why[320];          /**< the message handed to cb */
};

void rl_breaker_conf_default(rl_breaker_conf_t *conf)
{
    conf->failures = 5;
    conf->error_rate = 0.5;
    conf->window_ms = 10000;
    conf->min_calls = 20;
    conf->open_ms = 1000;
    conf->max_open_ms = 30000;
}

const char *rl_breaker_state_name(rl_breaker_state_t state)
{
    switch (state) {
    case RL_BREAKER_CLOSED:
        return "closed";
    case RL_BREAKER_OPEN:
        return "open";
    case RL_BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "?";
}

/* @returns NULL, or what is wrong with @p conf. */
static const char *conf_problem(const rl_breaker_conf_t *conf)
{
    if (conf->failures < 0)
        return "breaker.failures must be 0 (off) or more";
    if (!(conf->error_rate >= 0 && conf->error_rate <= 1))
        return "breaker.error.rate must be between 0 (off) and 1";
    if (conf->window_ms < 1 || conf->window_ms > MAX_WINDOW_MS)
        return "breaker.window.ms must be between 1 and 3600000";
    if (conf->min_calls < 1)
        return "breaker.min.calls must be 1 or more";
    if (conf->open_ms < 1)
        return "breaker.open.ms must be 1 or more";
    if (conf->max_open_ms < conf->open_ms)
        return "breaker.max.open.ms must be at least breaker.open.ms";
    return NULL;
}

static void clear_counts(rl_breaker_t *b)
{
    int64_t i;

    for (i = 0; i < b->nbuckets; i++) {
        b->ring[i].second = NEVER;
        b->ring[i].calls = 0;
        b->ring[i].failures = 0;
    }
    b->consecutive = 0;
    b->last_failure[0] = '\0';
}

rl_breaker_t *rl_breaker_new(const rl_breaker_conf_t *conf,
                             rl_breaker_change_cb *cb, void *opaque,
                             char *errstr, size_t errstr_size)
{
    const char *problem = conf_problem(conf);
    rl_breaker_t *b;

    if (problem) {
        snprintf(errstr, errstr_size, "%s", problem);
        return NULL;
    }

    b = rl_xcalloc(1, sizeof(*b));
    b->conf = *conf;
    b->cb = cb;
    b->opaque = opaque;
    b->state = RL_BREAKER_CLOSED;
    b->nbuckets = (conf->window_ms + 999) / 1000;
    b->ring = rl_xcalloc((size_t)b->nbuckets, sizeof(*b->ring));
    b->wait_ms = conf->open_ms;
    b->next_probe_ms = -1;
    clear_counts(b);
    return b;
}

void rl_breaker_destroy(rl_breaker_t *breaker)
{
    if (!breaker)
        return;
    free(breaker->ring);
    free(breaker);
}

rl_breaker_state_t rl_breaker_state(const rl_breaker_t *breaker)
{
    return breaker->state;
}

int64_t rl_breaker_next_probe_ms(const rl_breaker_t *breaker)
{
    return breaker->state == RL_BREAKER_OPEN ? breaker->next_probe_ms : -1;
}

/* ---- State changes --------------------------------------------------- */

/* Moves to @p to and tells the caller why, in one line. */
__attribute__((format(printf, 3, 4))) static void
change(rl_breaker_t *b, rl_breaker_state_t to, const char *fmt, ...)
{
    rl_breaker_state_t from = b->state;
    va_list ap;

    b->state = to;
    if (!b->cb)
        return;
    va_start(ap, fmt);
    vsnprintf(b->why, sizeof(b->why), fmt, ap);
    va_end(ap);
    b->cb(b->opaque, from, to, b->why);
}

static int64_t add_capped(int64_t now_ms, int64_t wait_ms)
{
    return now_ms > INT64_MAX - wait_ms ? INT64_MAX : now_ms + wait_ms;
}

/* Keeps the failure's detail for the message that may follow. */
static void note_failure(rl_breaker_t *b, const char *detail)
{
    snprintf(b->last_failure, sizeof(b->last_failure), "%s",
             detail && *detail ? detail : "no detail");
}

static void schedule_probe(rl_breaker_t *b, int64_t now_ms)
{
    b->next_probe_ms = add_capped(now_ms, b->wait_ms);
}

/* ---- Counting while CLOSED ------------------------------------------- */

/* Floors, so that the buckets stay a second wide below zero too. */
static int64_t second_of(int64_t ms)
{
    return ms >= 0 ? ms / 1000 : -((999 - ms) / 1000);
}

static bucket_t *current_bucket(rl_breaker_t *b, int64_t second)
{
    int64_t slot = second % b->nbuckets;
    bucket_t *bucket;

    if (slot < 0)
        slot += b->nbuckets;
    bucket = &b->ring[slot];
    if (bucket->second != second) {
        bucket->second = second;
        bucket->calls = 0;
        bucket->failures = 0;
    }
    return bucket;
}

/* Sums the buckets of the window that ends with @p second. */
static void window_totals(const rl_breaker_t *b, int64_t second,
                          uint64_t *calls, uint64_t *failures)
{
    int64_t i;

    *calls = 0;
    *failures = 0;
    for (i = 0; i < b->nbuckets; i++) {
        const bucket_t *bucket = &b->ring[i];

        /* NEVER, and every second of an older lap, fall below. */
        if (bucket->second > second || bucket->second <= second - b->nbuckets)
            continue;
        *calls += bucket->calls;
        *failures += bucket->failures;
    }
}

/* The first opening of an outage: its clock starts, the wait resets. */
static void begin_outage(rl_breaker_t *b, int64_t now_ms)
{
    b->opened_at_ms = now_ms;
    b->wait_ms = b->conf.open_ms;
    schedule_probe(b, now_ms);
}

static void open_on_failures(rl_breaker_t *b, int64_t now_ms)
{
    begin_outage(b, now_ms);
    change(b, RL_BREAKER_OPEN,
           "backend circuit opened: %d consecutive failures (last: %s); "
           "first probe in %lld ms",
           b->consecutive, b->last_failure, (long long)b->wait_ms);
}

static void open_on_rate(rl_breaker_t *b, uint64_t calls, uint64_t failures,
                         int64_t now_ms)
{
    begin_outage(b, now_ms);
    change(b, RL_BREAKER_OPEN,
           "backend circuit opened: %llu of %llu calls failed in the last "
           "%lld s (last: %s); first probe in %lld ms",
           (unsigned long long)failures, (unsigned long long)calls,
           (long long)b->nbuckets, b->last_failure, (long long)b->wait_ms);
}

void rl_breaker_record(rl_breaker_t *breaker, rl_breaker_outcome_t outcome,
                       const char *detail, int64_t now_ms)
{
    int64_t second = second_of(now_ms);
    bucket_t *bucket;
    uint64_t calls, failures;

    if (breaker->state != RL_BREAKER_CLOSED)
        return;

    bucket = current_bucket(breaker, second);
    bucket->calls++;
    if (outcome != RL_BREAKER_FAILURE) {
        breaker->consecutive = 0;
        return;
    }
    bucket->failures++;
    breaker->consecutive++;
    note_failure(breaker, detail);

    if (breaker->conf.failures > 0 &&
        breaker->consecutive >= breaker->conf.failures) {
        open_on_failures(breaker, now_ms);
        return;
    }
    if (breaker->conf.error_rate <= 0)
        return;
    window_totals(breaker, second, &calls, &failures);
    if (calls >= (uint64_t)breaker->conf.min_calls &&
        (double)failures >= breaker->conf.error_rate * (double)calls)
        open_on_rate(breaker, calls, failures, now_ms);
}

/* ---- Probing ---------------------------------------------------------- */

rl_breaker_verdict_t rl_breaker_allow(rl_breaker_t *breaker, int64_t now_ms)
{
    switch (breaker->state) {
    case RL_BREAKER_CLOSED:
        return RL_BREAKER_GO;
    case RL_BREAKER_HALF_OPEN:
        return RL_BREAKER_WAIT;
    case RL_BREAKER_OPEN:
        break;
    }
    if (now_ms < breaker->next_probe_ms)
        return RL_BREAKER_WAIT;
    change(breaker, RL_BREAKER_HALF_OPEN,
           "backend circuit half-open: sending one probe");
    return RL_BREAKER_PROBE;
}

void rl_breaker_probe_done(rl_breaker_t *breaker, rl_breaker_outcome_t outcome,
                           const char *detail, int64_t now_ms)
{
    double open_s;

    if (breaker->state != RL_BREAKER_HALF_OPEN)
        return;

    if (outcome == RL_BREAKER_FAILURE) {
        /* Each failed probe doubles the wait, so a long outage costs
         * the backend few probes. */
        note_failure(breaker, detail);
        if (breaker->wait_ms > breaker->conf.max_open_ms / 2)
            breaker->wait_ms = breaker->conf.max_open_ms;
        else
            breaker->wait_ms *= 2;
        schedule_probe(breaker, now_ms);
        change(breaker, RL_BREAKER_OPEN,
               "backend circuit still open: probe failed (%s); next probe "
               "in %lld ms",
               breaker->last_failure, (long long)breaker->wait_ms);
        return;
    }

    open_s = (double)(now_ms - breaker->opened_at_ms) / 1000.0;
    clear_counts(breaker);
    breaker->wait_ms = breaker->conf.open_ms;
    breaker->next_probe_ms = -1;
    change(breaker, RL_BREAKER_CLOSED,
           "backend circuit closed after probe succeeded; was open %.1f s",
           open_s);
}
