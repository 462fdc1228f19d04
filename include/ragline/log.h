/*
 * ragline - operator logging.
 *
 * One line per record on stderr:
 *
 *   2026-12-03T12:00:00.123Z WARN  pipeline: <message>
 *
 * Levels follow syslog's order.  The level is checked before any
 * formatting, so a disabled debug line costs one comparison.  Nothing
 * secret (API keys, SASL passwords) is ever passed to these functions.
 *
 * @locality any thread; each record is written with a single write(2).
 */
#ifndef RAGLINE_LOG_H
#define RAGLINE_LOG_H

typedef enum {
    RL_LOG_ERROR = 3,
    RL_LOG_WARN = 4,
    RL_LOG_NOTICE = 5,
    RL_LOG_INFO = 6,
    RL_LOG_DEBUG = 7,
} rl_log_level_t;

/** The process-wide threshold; records above it are dropped. */
extern int rl_log_threshold;

/** @brief Sets the threshold. */
void rl_log_set_level(rl_log_level_t level);

/**
 * @brief Parses "error", "warn", "notice", "info" or "debug".
 * @returns 0 and sets *level, or -1 for an unknown name.
 */
int rl_log_level_parse(const char *name, rl_log_level_t *level);

/** @brief Writes one record; use the rl_log() macro instead. */
void rl_log_write(rl_log_level_t level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rl_log(level, tag, ...)                                                \
    do {                                                                       \
        if ((int)(level) <= rl_log_threshold)                                  \
            rl_log_write((level), (tag), __VA_ARGS__);                         \
    } while (0)

#define rl_error(tag, ...)  rl_log(RL_LOG_ERROR, tag, __VA_ARGS__)
#define rl_warn(tag, ...)   rl_log(RL_LOG_WARN, tag, __VA_ARGS__)
#define rl_notice(tag, ...) rl_log(RL_LOG_NOTICE, tag, __VA_ARGS__)
#define rl_info(tag, ...)   rl_log(RL_LOG_INFO, tag, __VA_ARGS__)
#define rl_debug(tag, ...)  rl_log(RL_LOG_DEBUG, tag, __VA_ARGS__)

#endif
