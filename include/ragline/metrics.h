/*
 * ragline - counters and latency histograms of one worker.
 *
 * Plain fields updated by the loop's thread; read by the same thread to
 * log a summary line.  Histograms are log-linear (8 buckets per power of
 * two of microseconds): about 9 % relative error, constant memory.
 *
 * @locality the loop's thread.
 */
#ifndef RAGLINE_METRICS_H
#define RAGLINE_METRICS_H

#include <stdint.h>

#include "ragline/event.h"

#define RL_HIST_BUCKETS (8 * 40)

typedef struct rl_hist_s {
    uint64_t count;
    uint64_t buckets[RL_HIST_BUCKETS];
} rl_hist_t;

/** @brief Records one sample, in milliseconds. */
void rl_hist_add(rl_hist_t *hist, double ms);

/** @returns the q-quantile (0..1) in ms, 0 when empty. */
double rl_hist_quantile(const rl_hist_t *hist, double q);

typedef struct rl_metrics_s {
    uint64_t consumed;         /**< messages taken from the input topic */
    uint64_t answered;         /**< answers acknowledged by the broker */
    uint64_t dead_lettered;    /**< dead-letter records acknowledged */
    uint64_t by_class[8];      /**< dead letters by rl_errclass_t */
    uint64_t backend_failed;   /**< events given up on after retries */
    uint64_t retries;          /**< backend attempts after the first */
    uint64_t evidence_missing; /**< all_queries lookups that missed */
    uint64_t inflight;         /**< events taken and not finished */
    uint64_t inflight_peak;
    uint64_t active_peak;        /**< most events started at once (<= cap) */
    uint64_t backlog_bytes_peak; /**< most bytes waiting for a slot */
    uint64_t stalls;      /**< times a full backlog stopped input being read */
    uint64_t pauses;      /**< times a cap paused input partitions */
    rl_hist_t total_ms;   /**< consume to broker acknowledgement */
    rl_hist_t backend_ms; /**< backend calls */
} rl_metrics_t;

/** @brief Logs one summary line at info level under @p tag. */
void rl_metrics_log(const rl_metrics_t *m, const char *tag);

#endif
