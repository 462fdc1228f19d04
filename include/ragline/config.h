/*
 * ragline - configuration.
 *
 * One file of "key = value" lines ('#' starts a comment line), then the
 * environment: RAGLINE_<KEY> with the key upper-cased and dots turned to
 * underscores overrides the file (RAGLINE_BACKEND_TIMEOUT_MS sets
 * backend.timeout.ms).  Keys under "kafka." go to librdkafka as they
 * are; for those, every underscore of the variable name after
 * RAGLINE_KAFKA_ becomes a dot.  An unknown key is an error that names
 * it.  docs/configuration.md lists every key.
 *
 * @locality one thread; the settings are read-only once validated.
 */
#ifndef RAGLINE_CONFIG_H
#define RAGLINE_CONFIG_H

#include <stdio.h>

#include "ragline/backend.h"
#include "ragline/breaker.h"
#include "ragline/event.h"
#include "ragline/log.h"
#include "ragline/retry.h"

/** Which events must wait for each other (the ordering key). */
typedef enum {
    RL_ORDER_KEY,       /**< same message key: one at a time, in order */
    RL_ORDER_PARTITION, /**< same partition: one at a time, in order */
    RL_ORDER_NONE,      /**< all concurrently */
} rl_ordering_t;

/** The typed view of a validated configuration.  Strings are owned by
 *  the rl_config_t and live as long as it does. */
typedef struct rl_settings_s {
    const char *group_id;        /**< group.id */
    const char *input_topic;     /**< topic.input */
    const char *output_topic;    /**< topic.output */
    const char *dlq_topic;       /**< topic.dlq */
    const char *evidence_topic;  /**< topic.evidence; "" disables the cache */
    const char *template_file;   /**< template.file; NULL: built-in default */
    rl_backend_conf_t backend;   /**< backend.*; api_key resolved */
    int inflight_max;            /**< inflight.max */
    int partition_inflight_max;  /**< inflight.partition.max; 0: none */
    size_t backlog_bytes;        /**< inflight.backlog.bytes */
    rl_ordering_t ordering;      /**< ordering */
    int exactly_once;            /**< delivery = exactly-once */
    const char *instance_id;     /**< instance.id; "" when unset */
    int rebalance_timeout_ms;    /**< rebalance.timeout.ms */
    int transaction_interval_ms; /**< transaction.interval.ms */
    rl_retry_policy_t retry;     /**< backend.retry.*, backend.deadline.ms */
    rl_breaker_conf_t breaker;   /**< breaker.* */
    rl_limits_t limits;          /**< limits.* */
    int shutdown_timeout_ms;     /**< shutdown.timeout.ms */
    rl_log_level_t log_level;    /**< log.level */
    int embedded;                /**< no kafka.bootstrap.servers given */
} rl_settings_t;

typedef struct rl_config_s rl_config_t;

/** @returns a configuration holding every default. */
rl_config_t *rl_config_new(void);

/** @brief Frees it.  NULL is a no-op. */
void rl_config_destroy(rl_config_t *conf);

/**
 * @brief Sets one key from a string, checking that the key exists and
 *        that the value parses for its type.
 * @returns 0, or -1 with e.g. "unknown key 'backend.urll'" in errstr.
 */
int rl_config_set(rl_config_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size);

/**
 * @brief Reads a file of key = value lines.
 * @returns 0, or -1 with "FILE:LINE: reason" in errstr.
 */
int rl_config_load_file(rl_config_t *conf, const char *path, char *errstr,
                        size_t errstr_size);

/**
 * @brief Applies RAGLINE_* variables from @p envp (NULL-ended, as
 *        environ).  A variable that maps to no key is an error.
 */
int rl_config_load_env(rl_config_t *conf, char *const *envp, char *errstr,
                       size_t errstr_size);

/**
 * @brief Checks the whole configuration (cross-key rules, the API key
 *        file being readable, ...) and builds the typed settings.
 * @returns the settings, or NULL with a reason in errstr.
 */
const rl_settings_t *rl_config_validate(rl_config_t *conf, char *errstr,
                                        size_t errstr_size);

/** @returns a key's value as a string, or NULL if unset and no default. */
const char *rl_config_get(const rl_config_t *conf, const char *key);

/**
 * @brief Calls @p fn for every "kafka." key set, with the prefix removed
 *        (e.g. "bootstrap.servers").  Stops at a non-zero return.
 */
int rl_config_foreach_kafka(const rl_config_t *conf,
                            int (*fn)(const char *name, const char *value,
                                      void *opaque),
                            void *opaque);

/**
 * @brief Prints every key as "key = value", defaults included, sorted,
 *        with secrets (passwords, keys, tokens) shown as "[redacted]".
 */
void rl_config_print(const rl_config_t *conf, FILE *out);

/**
 * @brief Prints the table of known keys (key, accepted values, default,
 *        meaning) as Markdown: the table in docs/configuration.md.
 */
void rl_config_print_keys(FILE *out);

#endif
