/*
 * ragline - librdkafka plumbing: client configuration, the embedded
 * cluster, queue wake-ups for the event loop, and the evidence reader.
 *
 * @locality the loop's thread, except where a function says otherwise.
 */
#ifndef RAGLINE_KAFKA_H
#define RAGLINE_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "ragline/config.h"
#include "ragline/evidence.h"
#include "ragline/loop.h"

typedef enum {
    RL_CLIENT_CONSUMER, /**< the group member reading the input topic */
    RL_CLIENT_PRODUCER, /**< answers and dead-letter records */
    RL_CLIENT_EVIDENCE, /**< the group-less reader of the evidence topic */
} rl_client_role_t;

/**
 * @brief Builds the configuration of one client: ragline's defaults for
 *        the role, then every kafka.* key of @p conf, which win.
 *
 * @param bootstrap overrides kafka.bootstrap.servers when non-NULL (the
 *        embedded cluster's address).
 * @returns a configuration the caller hands to rd_kafka_new(), or NULL
 *          with the key librdkafka refused named in @p errstr.
 */
rd_kafka_conf_t *rl_kafka_conf_new(const rl_config_t *conf,
                                   const rl_settings_t *settings,
                                   rl_client_role_t role, const char *bootstrap,
                                   char *errstr, size_t errstr_size);

/**
 * A wake-up pipe between a librdkafka queue and the loop.  librdkafka
 * writes one byte when the queue gets an item after it was last polled;
 * the loop then calls the callback, which must call
 * rl_kafka_wakeup_clear() and serve the queue.  If it stops before the
 * queue is empty it must come back by itself (a 0 ms timer): no new
 * byte arrives until the queue is polled again.
 */
typedef struct rl_wakeup_s {
    int rfd; /**< watched by the loop */
    int wfd; /**< written by librdkafka's threads (non-blocking) */
} rl_wakeup_t;

/**
 * @brief Opens the pipe, hands its write end to @p queue and watches
 *        the read end.
 * @returns 0, or -1 with errno set.
 */
int rl_kafka_wakeup_open(rl_wakeup_t *wakeup, rl_loop_t *loop,
                         rd_kafka_queue_t *queue, rl_io_cb *cb, void *opaque);

/** @brief Empties the pipe. */
void rl_kafka_wakeup_clear(rl_wakeup_t *wakeup);

/**
 * @brief Stops watching and closes both ends.  Call it after the queue
 *        stopped using the fd (rd_kafka_queue_io_event_enable(q, -1..)).
 */
void rl_kafka_wakeup_close(rl_wakeup_t *wakeup, rl_loop_t *loop);

/** @brief Routes librdkafka's log lines to ragline's log (tag "kafka"). */
void rl_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                     const char *buf);

/** An in-process cluster for the embedded default (keeps nothing). */
typedef struct rl_mock_s rl_mock_t;

/**
 * @brief Starts a one-broker mock cluster on 127.0.0.1 and creates
 *        @p topics (NULL-ended), each with @p partitions partitions.
 * @returns the cluster, or NULL with a reason in @p errstr.
 */
rl_mock_t *rl_mock_start(const char *const *topics, int partitions,
                         char *errstr, size_t errstr_size);

/** @returns the cluster's bootstrap address, "127.0.0.1:PORT". */
const char *rl_mock_bootstrap(const rl_mock_t *mock);

/** @brief Stops the cluster.  NULL is a no-op. */
void rl_mock_stop(rl_mock_t *mock);

/**
 * The evidence reader: a consumer outside any group that reads every
 * partition of the evidence topic from the beginning into a cache.
 */
typedef struct rl_evreader_s rl_evreader_t;

/**
 * @brief Creates the reader and reads the topic up to the high
 *        watermarks it had when this call started, blocking (the
 *        worker takes no query before its cache is complete).  Logs how
 *        many records it loaded, in how long, using how much memory.
 *        Afterwards, the loop drives the reader to follow new records.
 *
 * @returns the reader, or NULL with a reason in @p errstr.
 */
rl_evreader_t *rl_evreader_start(rl_loop_t *loop, const rl_config_t *conf,
                                 const rl_settings_t *settings,
                                 const char *bootstrap, rl_evcache_t *cache,
                                 int timeout_ms, char *errstr,
                                 size_t errstr_size);

/** @returns how many records were applied since the start. */
uint64_t rl_evreader_applied(const rl_evreader_t *reader);

/** @brief Closes the reader.  NULL is a no-op. */
void rl_evreader_stop(rl_evreader_t *reader);

#endif
