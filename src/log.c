/*
 * ragline - operator logging.
 */
#include "ragline/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int rl_log_threshold = RL_LOG_INFO;

static const struct {
    const char *name;
    rl_log_level_t level;
} levels[] = {
    {"error", RL_LOG_ERROR}, {"warn", RL_LOG_WARN},   {"notice", RL_LOG_NOTICE},
    {"info", RL_LOG_INFO},   {"debug", RL_LOG_DEBUG},
};

void rl_log_set_level(rl_log_level_t level)
{
    rl_log_threshold = (int)level;
}

int rl_log_level_parse(const char *name, rl_log_level_t *level)
{
    size_t i;

    for (i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        if (strcmp(name, levels[i].name) == 0) {
            *level = levels[i].level;
            return 0;
        }
    }
    return -1;
}

static const char *level_label(rl_log_level_t level)
{
    switch (level) {
    case RL_LOG_ERROR:
        return "ERROR";
    case RL_LOG_WARN:
        return "WARN ";
    case RL_LOG_NOTICE:
        return "NOTE ";
    case RL_LOG_INFO:
        return "INFO ";
    default:
        return "DEBUG";
    }
}

void rl_log_write(rl_log_level_t level, const char *tag, const char *fmt, ...)
{
    char line[4096];
    struct timeval tv;
    struct tm tm;
    size_t n;
    va_list ap;
    int r;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof(line) - n,
                 ".%03dZ %s %s: ", (int)(tv.tv_usec / 1000), level_label(level),
                 tag);
    if (r > 0)
        n += (size_t)r;

    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (r > 0)
        n += (size_t)r;

    /* A record longer than the line is cut, never split across writes. */
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0)
        return; /* nowhere left to report it */
}
