/*
 * ragline - configuration.
 *
 * Every key ragline knows is one row of keys[] below: its type, range,
 * default and the sentence that documents it.  Parsing, error messages,
 * rl_config_print() and the table in docs/configuration.md all come
 * from that row, so they cannot drift apart.  Keys under "kafka." are
 * not in the table: librdkafka owns their names and checks them itself.
 */
#include "ragline/config.h"
#include "ragline/buf.h"
#include "ragline/log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KAFKA_PREFIX     "kafka."
#define KAFKA_PREFIX_LEN (sizeof(KAFKA_PREFIX) - 1)
#define ENV_PREFIX       "RAGLINE_"
#define ENV_PREFIX_LEN   (sizeof(ENV_PREFIX) - 1)
#define REDACTED         "[redacted]"

/* An API key file larger than this is surely the wrong file. */
#define API_KEY_FILE_MAX 16384

typedef enum {
    KEY_STRING,
    KEY_INT,    /* a decimal integer within [min, max] */
    KEY_DOUBLE, /* a finite number within [min, max], or "" for unset */
    KEY_ENUM,   /* one of choices[] */
} key_type_t;

/* How rl_config_print() shows a value. */
typedef enum {
    SHOW_PLAIN,
    SHOW_REDACTED, /* a secret: never shown */
    SHOW_URL,      /* shown with any user:password@ part redacted */
} key_show_t;

typedef struct key_def_s {
    const char *name;
    key_type_t type;
    const char *def;
    long long min, max;
    const char *const *choices; /* NULL-ended */
    key_show_t show;
    const char *doc;
} key_def_t;

/* Alphabetical, which is also the order of the docs table. */
typedef enum {
    K_BACKEND_API,
    K_BACKEND_API_KEY_ENV,
    K_BACKEND_API_KEY_FILE,
    K_BACKEND_CONNECT_TIMEOUT_MS,
    K_BACKEND_DEADLINE_MS,
    K_BACKEND_MAX_REPLY_BYTES,
    K_BACKEND_MAX_TOKENS,
    K_BACKEND_MODEL,
    K_BACKEND_RETRY_BASE_MS,
    K_BACKEND_RETRY_MAX_ATTEMPTS,
    K_BACKEND_RETRY_MAX_BACKOFF_MS,
    K_BACKEND_RETRY_MAX_RETRY_AFTER_MS,
    K_BACKEND_SYSTEM_PROMPT,
    K_BACKEND_TEMPERATURE,
    K_BACKEND_TIMEOUT_MS,
    K_BACKEND_URL,
    K_BREAKER_ERROR_RATE,
    K_BREAKER_FAILURES,
    K_BREAKER_MAX_OPEN_MS,
    K_BREAKER_MIN_CALLS,
    K_BREAKER_OPEN_MS,
    K_BREAKER_WINDOW_MS,
    K_DELIVERY,
    K_GROUP_ID,
    K_INFLIGHT_BACKLOG_BYTES,
    K_INFLIGHT_MAX,
    K_INFLIGHT_PARTITION_MAX,
    K_INSTANCE_ID,
    K_LIMITS_DEPTH,
    K_LIMITS_EVENT_BYTES,
    K_LIMITS_TURNS,
    K_LOG_LEVEL,
    K_ORDERING,
    K_REBALANCE_TIMEOUT_MS,
    K_SHUTDOWN_TIMEOUT_MS,
    K_TEMPLATE_FILE,
    K_TOPIC_DLQ,
    K_TOPIC_EVIDENCE,
    K_TOPIC_INPUT,
    K_TOPIC_OUTPUT,
    K_TRANSACTION_INTERVAL_MS,
    K_COUNT
} key_id_t;

static const char *const api_choices[] = {"chat", "completions", NULL};
static const char *const delivery_choices[] = {"at-least-once", "exactly-once",
                                               NULL};
static const char *const ordering_choices[] = {"key", "partition", "none",
                                               NULL};
static const char *const level_choices[] = {"error", "warn",  "notice",
                                            "info",  "debug", NULL};

#define STR(n, d, doc)                                                         \
    {                                                                          \
        n, KEY_STRING, d, 0, 0, NULL, SHOW_PLAIN, doc                          \
    }
#define INT(n, d, lo, hi, doc)                                                 \
    {                                                                          \
        n, KEY_INT, d, lo, hi, NULL, SHOW_PLAIN, doc                           \
    }
#define DBL(n, d, lo, hi, doc)                                                 \
    {                                                                          \
        n, KEY_DOUBLE, d, lo, hi, NULL, SHOW_PLAIN, doc                        \
    }
#define ENUM(n, d, list, doc)                                                  \
    {                                                                          \
        n, KEY_ENUM, d, 0, 0, list, SHOW_PLAIN, doc                            \
    }

static const key_def_t keys[K_COUNT] = {
    [K_BACKEND_API] = ENUM("backend.api", "chat", api_choices,
                           "API of the backend at backend.url: "
                           "/v1/chat/completions or /v1/completions."),
    [K_BACKEND_API_KEY_ENV] = STR("backend.api.key.env", "",
                                  "Name of an environment variable holding "
                                  "the backend's API key (Bearer token)."),
    [K_BACKEND_API_KEY_FILE] = STR("backend.api.key.file", "",
                                   "File holding the backend's API key; a "
                                   "trailing newline is ignored."),
    [K_BACKEND_CONNECT_TIMEOUT_MS] =
        INT("backend.connect.timeout.ms", "5000", 1, 600000,
            "Time allowed to connect to the "
            "backend."),
    [K_BACKEND_DEADLINE_MS] =
        INT("backend.deadline.ms", "120000", 0, 86400000,
            "Time an event may spend on backend attempts and their "
            "backoff, while the backend is up; 0 = no limit."),
    [K_BACKEND_MAX_REPLY_BYTES] =
        INT("backend.max.reply.bytes", "4194304", 1024, 1073741824,
            "A larger backend reply fails the "
            "event."),
    [K_BACKEND_MAX_TOKENS] = INT("backend.max.tokens", "0", 0, 10000000,
                                 "max_tokens of a request; 0 = not sent "
                                 "(completions sends 256)."),
    [K_BACKEND_MODEL] =
        STR("backend.model", "", "Model name sent with each request."),
    [K_BACKEND_RETRY_BASE_MS] =
        INT("backend.retry.base.ms", "200", 1, 3600000,
            "Backoff ceiling of the first retry; doubles per attempt."),
    [K_BACKEND_RETRY_MAX_ATTEMPTS] =
        INT("backend.retry.max.attempts", "5", 1, 1000,
            "Attempts per event, the first included; 1 = no retries."),
    [K_BACKEND_RETRY_MAX_BACKOFF_MS] =
        INT("backend.retry.max.backoff.ms", "10000", 1, 3600000,
            "Largest backoff ceiling; the delay is drawn below it."),
    [K_BACKEND_RETRY_MAX_RETRY_AFTER_MS] =
        INT("backend.retry.max.retry.after.ms", "30000", 0, 3600000,
            "Longest Retry-After hint honoured; 0 = ignore hints."),
    [K_BACKEND_SYSTEM_PROMPT] = STR("backend.system.prompt", "",
                                    "System message put before the prompt "
                                    "(chat API only)."),
    [K_BACKEND_TEMPERATURE] = DBL("backend.temperature", "", 0, 2,
                                  "Sampling temperature; empty = not "
                                  "sent."),
    [K_BACKEND_TIMEOUT_MS] = INT("backend.timeout.ms", "120000", 1, 86400000,
                                 "Time allowed for a whole backend "
                                 "request."),
    [K_BACKEND_URL] = {"backend.url", KEY_STRING, "", 0, 0, NULL, SHOW_URL,
                       "Base URL of an OpenAI-compatible server; empty = the "
                       "builtin backend."},
    [K_BREAKER_ERROR_RATE] =
        DBL("breaker.error.rate", "0.5", 0, 1,
            "Failed share of backend calls in the window that opens the "
            "circuit; 0 = off."),
    [K_BREAKER_FAILURES] =
        INT("breaker.failures", "5", 0, 1000000,
            "Consecutive failed backend calls that open the circuit; "
            "0 = off."),
    [K_BREAKER_MAX_OPEN_MS] =
        INT("breaker.max.open.ms", "30000", 1, 3600000,
            "Longest wait between probes of an open circuit."),
    [K_BREAKER_MIN_CALLS] =
        INT("breaker.min.calls", "20", 1, 1000000,
            "Calls in the window before the error rate counts."),
    [K_BREAKER_OPEN_MS] =
        INT("breaker.open.ms", "1000", 1, 3600000,
            "Wait before the first probe of an open circuit; doubles "
            "while probes fail."),
    [K_BREAKER_WINDOW_MS] = INT("breaker.window.ms", "10000", 1000, 3600000,
                                "Window of the error rate, in whole seconds."),
    [K_DELIVERY] = ENUM("delivery", "at-least-once", delivery_choices,
                        "Delivery guarantee; exactly-once uses Kafka "
                        "transactions."),
    [K_GROUP_ID] = STR("group.id", "ragline", "Kafka consumer group."),
    [K_INFLIGHT_BACKLOG_BYTES] =
        INT("inflight.backlog.bytes", "4194304", 1024, 1073741824,
            "Bytes of taken events (value, key and 512 a piece) that may "
            "wait for a backend slot; "
            "when full, input stops being read (paused after 1 s) until "
            "half is left."),
    [K_INFLIGHT_MAX] =
        INT("inflight.max", "1024", 1, 100000,
            "Events at the backend at once (also its connection pool "
            "size)."),
    [K_INFLIGHT_PARTITION_MAX] =
        INT("inflight.partition.max", "0", 0, 100000,
            "Events taken at once from one partition, started or "
            "waiting; 0 = no cap of its own."),
    [K_INSTANCE_ID] = STR("instance.id", "",
                          "Stable name of this worker, unique in its "
                          "group; required for exactly-once."),
    [K_LIMITS_DEPTH] = INT("limits.depth", "64", 6, 2048,
                           "Deepest nesting of arrays and objects in an "
                           "event."),
    [K_LIMITS_EVENT_BYTES] =
        INT("limits.event.bytes", "1048576", 1024, 1073741824,
            "Largest query event accepted, in bytes."),
    [K_LIMITS_TURNS] = INT("limits.turns", "1000", 0, 1000000,
                           "Most history turns an event may have."),
    [K_LOG_LEVEL] =
        ENUM("log.level", "info", level_choices, "Least severe level logged."),
    [K_ORDERING] = ENUM("ordering", "key", ordering_choices,
                        "Events one at a time, in offset order, per key, "
                        "per partition, or none."),
    [K_REBALANCE_TIMEOUT_MS] =
        INT("rebalance.timeout.ms", "10000", 0, 600000,
            "Time a revoked partition's in-flight events get to finish "
            "before they are abandoned to the next owner."),
    [K_SHUTDOWN_TIMEOUT_MS] = INT("shutdown.timeout.ms", "30000", 0, 3600000,
                                  "Time allowed to finish in-flight events "
                                  "on shutdown."),
    [K_TEMPLATE_FILE] = STR("template.file", "",
                            "Prompt template file; empty = the built-in "
                            "default template."),
    [K_TOPIC_DLQ] =
        STR("topic.dlq", "ragline.dlq", "Topic for dead-letter records."),
    [K_TOPIC_EVIDENCE] = STR("topic.evidence", "ragline.evidence",
                             "Compacted evidence topic; empty = no evidence "
                             "cache."),
    [K_TOPIC_INPUT] =
        STR("topic.input", "ragline.queries", "Topic of query events."),
    [K_TRANSACTION_INTERVAL_MS] =
        INT("transaction.interval.ms", "100", 1, 600000,
            "Exactly-once: how long a transaction collects records before "
            "it is committed."),
    [K_TOPIC_OUTPUT] =
        STR("topic.output", "ragline.answers", "Topic of answer events."),
};

typedef struct kafka_prop_s {
    char *name; /* without the "kafka." prefix */
    char *value;
} kafka_prop_t;

struct rl_config_s {
    char *value[K_COUNT]; /* NULL: the default */
    kafka_prop_t *kafka;  /* sorted by name */
    size_t kafka_count;
    size_t kafka_cap;
    char *api_key; /* resolved by rl_config_validate() */
    rl_settings_t settings;
};

/* Wipes a secret before freeing it, so it does not linger in the heap. */
static void free_secret(char *s)
{
    if (!s)
        return;
    explicit_bzero(s, strlen(s));
    free(s);
}

rl_config_t *rl_config_new(void)
{
    return rl_xcalloc(1, sizeof(rl_config_t));
}

void rl_config_destroy(rl_config_t *conf)
{
    size_t i;

    if (!conf)
        return;
    for (i = 0; i < K_COUNT; i++)
        free(conf->value[i]);
    for (i = 0; i < conf->kafka_count; i++) {
        free(conf->kafka[i].name);
        free_secret(conf->kafka[i].value);
    }
    free(conf->kafka);
    free_secret(conf->api_key);
    free(conf);
}

/* ---- values and their types ---- */

static int find_key(const char *name)
{
    int i;

    for (i = 0; i < K_COUNT; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return i;
    }
    return -1;
}

/* Writes what a key accepts, as in "an integer from 1 to 100000". */
static void describe_type(const key_def_t *def, char *dst, size_t size)
{
    size_t n;
    int i;

    switch (def->type) {
    case KEY_STRING:
        snprintf(dst, size, "a string");
        return;
    case KEY_INT:
        snprintf(dst, size, "an integer from %lld to %lld", def->min, def->max);
        return;
    case KEY_DOUBLE:
        snprintf(dst, size, "a number from %lld to %lld, or empty", def->min,
                 def->max);
        return;
    case KEY_ENUM:
        n = (size_t)snprintf(dst, size, "one of");
        for (i = 0; def->choices[i] && n < size; i++)
            n += (size_t)snprintf(dst + n, size - n, "%s %s", i ? "," : "",
                                  def->choices[i]);
        return;
    }
}

static int parse_int(const char *text, long long *out)
{
    char *end;

    if (!isdigit((unsigned char)text[0]) && text[0] != '-')
        return -1;
    errno = 0;
    *out = strtoll(text, &end, 10);
    return (errno || *end) ? -1 : 0;
}

static int parse_double(const char *text, double *out)
{
    char *end;

    if (!isdigit((unsigned char)text[0]) && text[0] != '-' && text[0] != '.')
        return -1;
    errno = 0;
    *out = strtod(text, &end);
    return (errno || *end || !isfinite(*out)) ? -1 : 0;
}

static int enum_index(const key_def_t *def, const char *text)
{
    int i;

    for (i = 0; def->choices[i]; i++) {
        if (strcmp(def->choices[i], text) == 0)
            return i;
    }
    return -1;
}

/* @returns 0 if @p text is a valid value for @p def. */
static int check_value(const key_def_t *def, const char *text)
{
    long long i;
    double d;

    switch (def->type) {
    case KEY_STRING:
        return 0;
    case KEY_INT:
        if (parse_int(text, &i) < 0)
            return -1;
        return (i < def->min || i > def->max) ? -1 : 0;
    case KEY_DOUBLE:
        if (!*text)
            return 0;
        if (parse_double(text, &d) < 0)
            return -1;
        return (d < (double)def->min || d > (double)def->max) ? -1 : 0;
    case KEY_ENUM:
        return enum_index(def, text) < 0 ? -1 : 0;
    }
    return -1;
}

static const char *value_of(const rl_config_t *conf, key_id_t k)
{
    return conf->value[k] ? conf->value[k] : keys[k].def;
}

/* Only for keys already checked by check_value(). */
static long long int_of(const rl_config_t *conf, key_id_t k)
{
    long long i = 0;

    parse_int(value_of(conf, k), &i);
    return i;
}

/* ---- the kafka.* namespace ---- */

/* librdkafka names its secrets plainly; matching on the words catches
 * them all (ssl.key.password, sasl.password, ssl.key.pem, ...), at the
 * price of also hiding a few harmless paths such as ssl.key.location. */
static int kafka_is_secret(const char *name)
{
    static const char *const words[] = {"password", "secret", "key", "token"};
    size_t i;

    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strstr(name, words[i]))
            return 1;
    }
    return 0;
}

/* @returns the index of @p name, or where it would go with *found = 0. */
static size_t kafka_find(const rl_config_t *conf, const char *name, int *found)
{
    size_t lo = 0, hi = conf->kafka_count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int cmp = strcmp(conf->kafka[mid].name, name);

        if (cmp == 0) {
            *found = 1;
            return mid;
        }
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = 0;
    return lo;
}

static void kafka_set(rl_config_t *conf, const char *name, const char *value)
{
    int found;
    size_t at = kafka_find(conf, name, &found);

    if (found) {
        free_secret(conf->kafka[at].value);
        conf->kafka[at].value = rl_xstrdup(value);
        return;
    }
    if (conf->kafka_count == conf->kafka_cap) {
        conf->kafka_cap = conf->kafka_cap ? conf->kafka_cap * 2 : 8;
        conf->kafka =
            rl_xrealloc(conf->kafka, conf->kafka_cap * sizeof(*conf->kafka));
    }
    memmove(conf->kafka + at + 1, conf->kafka + at,
            (conf->kafka_count - at) * sizeof(*conf->kafka));
    conf->kafka[at].name = rl_xstrdup(name);
    conf->kafka[at].value = rl_xstrdup(value);
    conf->kafka_count++;
}

static const char *kafka_get(const rl_config_t *conf, const char *name)
{
    int found;
    size_t at = kafka_find(conf, name, &found);

    return found ? conf->kafka[at].value : NULL;
}

/* ---- setting keys ---- */

static int set_kafka(rl_config_t *conf, const char *name, const char *value,
                     char *errstr, size_t errstr_size)
{
    if (!*name) {
        rl_errstr(errstr, errstr_size, "empty key after 'kafka.'");
        return -1;
    }
    /* The consumer group is ragline's own setting: the worker decides
     * how it is used, and one name for it avoids two disagreeing. */
    if (strcmp(name, "group.id") == 0) {
        rl_errstr(errstr, errstr_size, "kafka.group.id: use group.id");
        return -1;
    }
    kafka_set(conf, name, value);
    return 0;
}

int rl_config_set(rl_config_t *conf, const char *key, const char *value,
                  char *errstr, size_t errstr_size)
{
    char expected[128];
    int k;

    if (strncmp(key, KAFKA_PREFIX, KAFKA_PREFIX_LEN) == 0)
        return set_kafka(conf, key + KAFKA_PREFIX_LEN, value, errstr,
                         errstr_size);

    k = find_key(key);
    if (k < 0) {
        rl_errstr(errstr, errstr_size, "unknown key '%s'", key);
        return -1;
    }
    if (check_value(&keys[k], value) < 0) {
        describe_type(&keys[k], expected, sizeof(expected));
        rl_errstr(errstr, errstr_size, "%s: expected %s, got '%s'", key,
                  expected, value);
        return -1;
    }
    free(conf->value[k]);
    conf->value[k] = rl_xstrdup(value);
    return 0;
}

const char *rl_config_get(const rl_config_t *conf, const char *key)
{
    int k;

    if (strncmp(key, KAFKA_PREFIX, KAFKA_PREFIX_LEN) == 0)
        return kafka_get(conf, key + KAFKA_PREFIX_LEN);
    k = find_key(key);
    return k < 0 ? NULL : value_of(conf, (key_id_t)k);
}

/* ---- the file ---- */

/* A key seen in the file being read, to report duplicates. */
typedef struct seen_key_s {
    char *key;
    int line;
} seen_key_t;

typedef struct seen_keys_s {
    seen_key_t *items;
    size_t count;
} seen_keys_t;

/* @returns the line @p key was first seen on, 0 if new (then adds it). */
static int seen_before(seen_keys_t *seen, const char *key, int line)
{
    size_t i;

    for (i = 0; i < seen->count; i++) {
        if (strcmp(seen->items[i].key, key) == 0)
            return seen->items[i].line;
    }
    seen->items =
        rl_xrealloc(seen->items, (seen->count + 1) * sizeof(*seen->items));
    seen->items[seen->count].key = rl_xstrdup(key);
    seen->items[seen->count].line = line;
    seen->count++;
    return 0;
}

static void seen_free(seen_keys_t *seen)
{
    size_t i;

    for (i = 0; i < seen->count; i++)
        free(seen->items[i].key);
    free(seen->items);
}

/* Trims in place and returns the first non-blank byte. */
static char *trim(char *s)
{
    size_t n;

    while (isspace((unsigned char)*s))
        s++;
    n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    s[n] = '\0';
    return s;
}

/* Applies one line.  @returns 0, or -1 with the reason (no location). */
static int load_line(rl_config_t *conf, char *text, int line, seen_keys_t *seen,
                     char *errstr, size_t errstr_size)
{
    char *eq, *key, *value;
    int first;

    text = trim(text);
    if (!*text || *text == '#')
        return 0;

    eq = strchr(text, '=');
    if (!eq) {
        rl_errstr(errstr, errstr_size, "expected 'key = value'");
        return -1;
    }
    *eq = '\0';
    key = trim(text);
    value = trim(eq + 1);
    if (!*key) {
        rl_errstr(errstr, errstr_size, "missing key before '='");
        return -1;
    }

    first = seen_before(seen, key, line);
    if (first) {
        rl_errstr(errstr, errstr_size, "'%s' is already set on line %d", key,
                  first);
        return -1;
    }
    return rl_config_set(conf, key, value, errstr, errstr_size);
}

int rl_config_load_file(rl_config_t *conf, const char *path, char *errstr,
                        size_t errstr_size)
{
    seen_keys_t seen = {NULL, 0};
    char reason[512];
    char *text = NULL;
    size_t cap = 0;
    int line = 0, rc = 0;
    FILE *fp;

    fp = fopen(path, "r");
    if (!fp) {
        rl_errstr(errstr, errstr_size, "%s: %s", path, strerror(errno));
        return -1;
    }

    while (getline(&text, &cap, fp) >= 0) {
        line++;
        if (load_line(conf, text, line, &seen, reason, sizeof(reason)) < 0) {
            rl_errstr(errstr, errstr_size, "%s:%d: %s", path, line, reason);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(fp)) {
        rl_errstr(errstr, errstr_size, "%s: read error", path);
        rc = -1;
    }

    free(text);
    seen_free(&seen);
    fclose(fp);
    return rc;
}

/* ---- the environment ---- */

/* @returns 1 if @p suffix (e.g. "BACKEND_TIMEOUT_MS") names @p key. */
static int env_names_key(const char *suffix, size_t len, const char *key)
{
    size_t i;

    for (i = 0; i < len && key[i]; i++) {
        char want = key[i] == '.' ? '_' : (char)toupper((unsigned char)key[i]);

        if (suffix[i] != want)
            return 0;
    }
    return i == len && !key[i];
}

/* Maps the part after RAGLINE_ to a key.  @returns 0, or -1 if none. */
static int env_to_key(const char *suffix, size_t len, rl_buf_t *key)
{
    static const char kafka_env[] = "KAFKA_";
    size_t i;
    int k;

    if (len > sizeof(kafka_env) - 1 &&
        strncmp(suffix, kafka_env, sizeof(kafka_env) - 1) == 0) {
        rl_buf_puts(key, KAFKA_PREFIX);
        for (i = sizeof(kafka_env) - 1; i < len; i++) {
            char c = suffix[i] == '_' ? '.' : suffix[i];

            rl_buf_putc(key, (char)tolower((unsigned char)c));
        }
        return 0;
    }
    for (k = 0; k < K_COUNT; k++) {
        if (env_names_key(suffix, len, keys[k].name)) {
            rl_buf_puts(key, keys[k].name);
            return 0;
        }
    }
    return -1;
}

/* Applies one "NAME=value" entry of the environment, if it is ours. */
static int load_env_var(rl_config_t *conf, const char *var, rl_buf_t *key,
                        char *errstr, size_t errstr_size)
{
    const char *eq = strchr(var, '=');
    const char *suffix;
    size_t suffix_len;
    char reason[512];

    if (!eq || strncmp(var, ENV_PREFIX, ENV_PREFIX_LEN) != 0)
        return 0;
    suffix = var + ENV_PREFIX_LEN;
    suffix_len = (size_t)(eq - suffix);
    /* RAGLINE_CONFIG names the file; the CLI reads it, not us. */
    if (suffix_len == 6 && strncmp(suffix, "CONFIG", 6) == 0)
        return 0;

    /*
     * A name that maps to no key is skipped with a warning, not refused:
     * scripts around ragline use the prefix for their own variables
     * (RAGLINE_BUILD, RAGLINE_CACHE), and refusing to start whenever one
     * is exported would punish the wrong party.
     */
    rl_buf_reset(key);
    if (env_to_key(suffix, suffix_len, key) < 0) {
        rl_warn("config", "%.*s names no configuration key; ignored",
                (int)(eq - var), var);
        return 0;
    }
    if (rl_config_set(conf, rl_buf_cstr(key), eq + 1, reason, sizeof(reason)) <
        0) {
        rl_errstr(errstr, errstr_size, "%.*s: %s", (int)(eq - var), var,
                  reason);
        return -1;
    }
    return 0;
}

int rl_config_load_env(rl_config_t *conf, char *const *envp, char *errstr,
                       size_t errstr_size)
{
    rl_buf_t key = RL_BUF_INIT;
    int rc = 0;

    for (; envp && *envp && rc == 0; envp++)
        rc = load_env_var(conf, *envp, &key, errstr, errstr_size);
    rl_buf_free(&key);
    return rc;
}

int rl_config_foreach_kafka(const rl_config_t *conf,
                            int (*fn)(const char *name, const char *value,
                                      void *opaque),
                            void *opaque)
{
    size_t i;
    int rc;

    for (i = 0; i < conf->kafka_count; i++) {
        rc = fn(conf->kafka[i].name, conf->kafka[i].value, opaque);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- validation ---- */

/* Reads the key file; the key itself never appears in errstr. */
static char *read_key_file(const char *path, char *errstr, size_t errstr_size)
{
    char buf[API_KEY_FILE_MAX + 1];
    size_t n;
    FILE *fp;

    fp = fopen(path, "r");
    if (!fp) {
        rl_errstr(errstr, errstr_size, "backend.api.key.file: %s: %s", path,
                  strerror(errno));
        return NULL;
    }
    n = fread(buf, 1, sizeof(buf), fp);
    if (ferror(fp) || n > API_KEY_FILE_MAX) {
        rl_errstr(errstr, errstr_size, "backend.api.key.file: %s: %s", path,
                  ferror(fp) ? "read error" : "larger than 16 KiB");
        fclose(fp);
        explicit_bzero(buf, sizeof(buf));
        return NULL;
    }
    fclose(fp);

    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return rl_xmemdup(buf, n);
}

static int has_control(const char *s)
{
    for (; *s; s++) {
        if (iscntrl((unsigned char)*s))
            return 1;
    }
    return 0;
}

/* Finds the API key named by backend.api.key.env or .file, if any. */
static int resolve_api_key(rl_config_t *conf, char *errstr, size_t errstr_size)
{
    const char *env = value_of(conf, K_BACKEND_API_KEY_ENV);
    const char *file = value_of(conf, K_BACKEND_API_KEY_FILE);
    const char *s;
    char *key;

    free_secret(conf->api_key);
    conf->api_key = NULL;
    if (*env && *file) {
        rl_errstr(errstr, errstr_size,
                  "set backend.api.key.env or backend.api.key.file, not both");
        return -1;
    }
    if (*env) {
        s = getenv(env);
        if (!s) {
            rl_errstr(errstr, errstr_size,
                      "backend.api.key.env: variable %s is not set", env);
            return -1;
        }
        key = rl_xstrdup(s);
    } else if (*file) {
        key = read_key_file(file, errstr, errstr_size);
        if (!key)
            return -1;
    } else {
        return 0;
    }

    /* The key goes into an HTTP header: a control byte would break it. */
    if (!*key || has_control(key)) {
        rl_errstr(errstr, errstr_size, "the API key in %s %s",
                  *env ? env : file,
                  *key ? "contains a control character" : "is empty");
        free_secret(key);
        return -1;
    }
    conf->api_key = key;
    return 0;
}

static void fill_backend(rl_config_t *conf, rl_backend_conf_t *b)
{
    const char *temp = value_of(conf, K_BACKEND_TEMPERATURE);
    double t = -1;

    b->url = value_of(conf, K_BACKEND_URL);
    if (!*b->url)
        b->api = RL_API_BUILTIN;
    else if (enum_index(&keys[K_BACKEND_API], value_of(conf, K_BACKEND_API)) ==
             0)
        b->api = RL_API_CHAT;
    else
        b->api = RL_API_COMPLETIONS;
    b->model = value_of(conf, K_BACKEND_MODEL);
    b->api_key = conf->api_key;
    b->system_prompt = value_of(conf, K_BACKEND_SYSTEM_PROMPT);
    if (*temp)
        parse_double(temp, &t);
    b->temperature = t;
    b->max_tokens = (int)int_of(conf, K_BACKEND_MAX_TOKENS);
    b->connect_timeout_ms = (long)int_of(conf, K_BACKEND_CONNECT_TIMEOUT_MS);
    b->timeout_ms = (long)int_of(conf, K_BACKEND_TIMEOUT_MS);
    b->max_connections = (int)int_of(conf, K_INFLIGHT_MAX);
    b->max_reply_bytes = (size_t)int_of(conf, K_BACKEND_MAX_REPLY_BYTES);
}

static int choice_of(const rl_config_t *conf, key_id_t id)
{
    const char *v = value_of(conf, id);
    int i;

    for (i = 0; keys[id].choices[i]; i++)
        if (strcmp(v, keys[id].choices[i]) == 0)
            return i;
    return 0;
}

/* Ordering, caps, delivery, retries and the breaker. */
static void fill_reliability(const rl_config_t *conf, rl_settings_t *s)
{
    long long pmax = int_of(conf, K_INFLIGHT_PARTITION_MAX);
    double rate = 0.0;

    s->partition_inflight_max = (int)pmax;
    s->backlog_bytes = (size_t)int_of(conf, K_INFLIGHT_BACKLOG_BYTES);
    s->ordering = (rl_ordering_t)choice_of(conf, K_ORDERING);
    s->exactly_once = choice_of(conf, K_DELIVERY) == 1;
    s->instance_id = value_of(conf, K_INSTANCE_ID);
    s->rebalance_timeout_ms = (int)int_of(conf, K_REBALANCE_TIMEOUT_MS);
    s->transaction_interval_ms = (int)int_of(conf, K_TRANSACTION_INTERVAL_MS);

    s->retry.max_attempts = (int)int_of(conf, K_BACKEND_RETRY_MAX_ATTEMPTS);
    s->retry.base_ms = int_of(conf, K_BACKEND_RETRY_BASE_MS);
    s->retry.max_backoff_ms = int_of(conf, K_BACKEND_RETRY_MAX_BACKOFF_MS);
    s->retry.max_retry_after_ms =
        int_of(conf, K_BACKEND_RETRY_MAX_RETRY_AFTER_MS);
    s->retry.deadline_ms = int_of(conf, K_BACKEND_DEADLINE_MS);

    parse_double(value_of(conf, K_BREAKER_ERROR_RATE), &rate);
    s->breaker.failures = (int)int_of(conf, K_BREAKER_FAILURES);
    s->breaker.error_rate = rate;
    s->breaker.window_ms = int_of(conf, K_BREAKER_WINDOW_MS);
    s->breaker.min_calls = (int)int_of(conf, K_BREAKER_MIN_CALLS);
    s->breaker.open_ms = int_of(conf, K_BREAKER_OPEN_MS);
    s->breaker.max_open_ms = int_of(conf, K_BREAKER_MAX_OPEN_MS);
}

/* Topics that must not be the same: ragline would read its own output. */
static int check_topics(const rl_settings_t *s, char *errstr,
                        size_t errstr_size)
{
    const char *name = NULL;

    if (!*s->group_id)
        name = "group.id";
    else if (!*s->input_topic)
        name = "topic.input";
    else if (!*s->output_topic)
        name = "topic.output";
    else if (!*s->dlq_topic)
        name = "topic.dlq";
    if (name) {
        rl_errstr(errstr, errstr_size, "%s must not be empty", name);
        return -1;
    }

    if (strcmp(s->input_topic, s->output_topic) == 0 ||
        strcmp(s->input_topic, s->dlq_topic) == 0 ||
        strcmp(s->input_topic, s->evidence_topic) == 0) {
        rl_errstr(errstr, errstr_size,
                  "topic.input '%s' is also used as another topic",
                  s->input_topic);
        return -1;
    }
    return 0;
}

const rl_settings_t *rl_config_validate(rl_config_t *conf, char *errstr,
                                        size_t errstr_size)
{
    rl_settings_t *s = &conf->settings;
    const char *servers = kafka_get(conf, "bootstrap.servers");
    const char *tpl = value_of(conf, K_TEMPLATE_FILE);

    memset(s, 0, sizeof(*s));
    s->group_id = value_of(conf, K_GROUP_ID);
    s->input_topic = value_of(conf, K_TOPIC_INPUT);
    s->output_topic = value_of(conf, K_TOPIC_OUTPUT);
    s->dlq_topic = value_of(conf, K_TOPIC_DLQ);
    s->evidence_topic = value_of(conf, K_TOPIC_EVIDENCE);
    s->template_file = *tpl ? tpl : NULL;
    s->inflight_max = (int)int_of(conf, K_INFLIGHT_MAX);
    s->limits.event_bytes = (size_t)int_of(conf, K_LIMITS_EVENT_BYTES);
    s->limits.max_depth = (int)int_of(conf, K_LIMITS_DEPTH);
    s->limits.max_turns = (size_t)int_of(conf, K_LIMITS_TURNS);
    s->shutdown_timeout_ms = (int)int_of(conf, K_SHUTDOWN_TIMEOUT_MS);
    rl_log_level_parse(value_of(conf, K_LOG_LEVEL), &s->log_level);
    s->embedded = !servers || !*servers;

    fill_reliability(conf, s);

    if (check_topics(s, errstr, errstr_size) < 0)
        return NULL;
    if (s->exactly_once && !*s->instance_id) {
        rl_errstr(errstr, errstr_size,
                  "delivery = exactly-once needs instance.id: a stable name, "
                  "unique in the group (the pod or host name)");
        return NULL;
    }
    if (resolve_api_key(conf, errstr, errstr_size) < 0)
        return NULL;
    fill_backend(conf, &s->backend);
    return s;
}

/* ---- printing ---- */

/* Appends @p url with any "user:password@" before the host redacted. */
static void put_url(rl_buf_t *line, const char *url)
{
    const char *host = strstr(url, "://");
    const char *at, *end;

    if (!host) {
        rl_buf_puts(line, url);
        return;
    }
    host += 3;
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', (size_t)(end - host));
    if (!at) {
        rl_buf_puts(line, url);
        return;
    }
    rl_buf_append(line, url, (size_t)(host - url));
    rl_buf_puts(line, REDACTED);
    rl_buf_puts(line, at);
}

static char *format_line(const char *prefix, const char *name,
                         const char *value, key_show_t show)
{
    rl_buf_t line = RL_BUF_INIT;

    rl_buf_printf(&line, "%s%s = ", prefix, name);
    if (show == SHOW_REDACTED)
        rl_buf_puts(&line, REDACTED);
    else if (show == SHOW_URL)
        put_url(&line, value);
    else
        rl_buf_puts(&line, value);
    return rl_buf_steal(&line, NULL);
}

static int compare_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void rl_config_print(const rl_config_t *conf, FILE *out)
{
    size_t count = K_COUNT + conf->kafka_count, n = 0, i;
    char **lines = rl_xcalloc(count, sizeof(*lines));

    for (i = 0; i < K_COUNT; i++)
        lines[n++] =
            format_line("", keys[i].name, value_of(conf, i), keys[i].show);
    for (i = 0; i < conf->kafka_count; i++) {
        const kafka_prop_t *p = &conf->kafka[i];

        lines[n++] =
            format_line(KAFKA_PREFIX, p->name, p->value,
                        kafka_is_secret(p->name) ? SHOW_REDACTED : SHOW_PLAIN);
    }

    /* ' ' sorts before every character of a key, so sorting whole lines
     * sorts by key. */
    qsort(lines, n, sizeof(*lines), compare_lines);
    for (i = 0; i < n; i++) {
        fprintf(out, "%s\n", lines[i]);
        free(lines[i]);
    }
    free(lines);
}

void rl_config_print_keys(FILE *out)
{
    char type[128];
    int i;

    fprintf(out, "| key | accepts | default | meaning |\n");
    fprintf(out, "|---|---|---|---|\n");
    for (i = 0; i < K_COUNT; i++) {
        describe_type(&keys[i], type, sizeof(type));
        fprintf(out, "| `%s` | %s | %s%s%s | %s |\n", keys[i].name, type,
                *keys[i].def ? "`" : "", *keys[i].def ? keys[i].def : "(empty)",
                *keys[i].def ? "`" : "", keys[i].doc);
    }
}
