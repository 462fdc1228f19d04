/*
 * ragline - the pipeline: input topic -> render -> backend -> output.
 *
 * One pipeline per worker, driven by the caller's loop.  It owns the
 * Kafka clients, the evidence cache, the template and the backend, and
 * every event between consume and the broker's acknowledgement of its
 * answer or dead-letter record.  An event's offset is stored for commit
 * only once that acknowledgement arrived for it and for every earlier
 * event of its partition (at-least-once).
 *
 * @locality the loop's thread.
 */
#ifndef RAGLINE_PIPELINE_H
#define RAGLINE_PIPELINE_H

#include <stddef.h>

#include "ragline/config.h"
#include "ragline/loop.h"
#include "ragline/metrics.h"

typedef struct rl_pipeline_s rl_pipeline_t;

/**
 * @brief Builds the pipeline: loads the template, reads the evidence
 *        topic to its end, checks that the output topics exist, creates
 *        the backend and joins the consumer group.
 *
 * @param bootstrap the embedded cluster's address, or NULL to use
 *        kafka.bootstrap.servers.
 * @returns the running pipeline, or NULL with a reason in @p errstr.
 */
rl_pipeline_t *rl_pipeline_new(rl_loop_t *loop, const rl_config_t *conf,
                               const rl_settings_t *settings,
                               const char *bootstrap, char *errstr,
                               size_t errstr_size);

/**
 * @brief Begins a graceful stop: no new events; in-flight ones get up to
 *        shutdown.timeout.ms to finish; then the producer is flushed,
 *        offsets committed and the group left.  Calling it again makes
 *        the stop immediate (nothing more is waited for).
 */
void rl_pipeline_shutdown(rl_pipeline_t *pl);

/** @returns non-zero once the pipeline has stopped. */
int rl_pipeline_finished(const rl_pipeline_t *pl);

/** @returns 0 after a clean stop, 1 after a fatal error. */
int rl_pipeline_exit_status(const rl_pipeline_t *pl);

/** @returns the live counters. */
const rl_metrics_t *rl_pipeline_metrics(const rl_pipeline_t *pl);

/** @brief Frees everything.  NULL is a no-op. */
void rl_pipeline_destroy(rl_pipeline_t *pl);

#endif
