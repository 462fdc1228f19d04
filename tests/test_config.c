/*
 * Tests of the configuration: defaults, the file, the environment, the
 * typed settings, the API key and what rl_config_print() may show.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ragline/config.h"

/* Writes @p text to a fresh temporary file; the caller unlinks it. */
static void write_temp(char *path, size_t size, const char *text)
{
    FILE *fp;
    int fd;

    snprintf(path, size, "/tmp/ragline-test-config-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    fp = fdopen(fd, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Loads @p text as a config file.  @returns what load_file returned. */
static int load_text(rl_config_t *conf, const char *text, char *path,
                     size_t path_size, char *errstr, size_t errstr_size)
{
    int rc;

    write_temp(path, path_size, text);
    rc = rl_config_load_file(conf, path, errstr, errstr_size);
    unlink(path);
    return rc;
}

static char *print_to_string(const rl_config_t *conf)
{
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    assert_non_null(fp);
    rl_config_print(conf, fp);
    fclose(fp);
    return text;
}

static void test_defaults(void **state)
{
    rl_config_t *conf = rl_config_new();
    const rl_settings_t *s;
    char err[256];

    s = rl_config_validate(conf, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->group_id, "ragline");
    assert_string_equal(s->input_topic, "ragline.queries");
    assert_string_equal(s->output_topic, "ragline.answers");
    assert_string_equal(s->dlq_topic, "ragline.dlq");
    assert_string_equal(s->evidence_topic, "ragline.evidence");
    assert_null(s->template_file);
    assert_int_equal(s->inflight_max, 1024);
    assert_int_equal(s->limits.event_bytes, 1048576);
    assert_int_equal(s->limits.max_depth, 64);
    assert_int_equal(s->limits.max_turns, 1000);
    assert_int_equal(s->shutdown_timeout_ms, 30000);
    assert_int_equal(s->log_level, RL_LOG_INFO);
    assert_true(s->embedded);

    assert_int_equal(s->backend.api, RL_API_BUILTIN);
    assert_string_equal(s->backend.url, "");
    assert_string_equal(s->backend.model, "");
    assert_null(s->backend.api_key);
    assert_true(s->backend.temperature < 0);
    assert_int_equal(s->backend.max_tokens, 0);
    assert_int_equal(s->backend.connect_timeout_ms, 5000);
    assert_int_equal(s->backend.timeout_ms, 120000);
    assert_int_equal(s->backend.max_connections, 1024);
    assert_int_equal(s->backend.max_reply_bytes, 4194304);

    assert_string_equal(rl_config_get(conf, "topic.dlq"), "ragline.dlq");
    assert_null(rl_config_get(conf, "no.such.key"));
    assert_null(rl_config_get(conf, "kafka.bootstrap.servers"));
    rl_config_destroy(conf);
}

static void test_file_good(void **state)
{
    rl_config_t *conf = rl_config_new();
    const rl_settings_t *s;
    char path[64], err[256];

    assert_int_equal(load_text(conf,
                               "# a comment\n"
                               "\n"
                               "   # an indented comment\n"
                               "  backend.url   =  http://llm:8000/v1  \n"
                               "backend.api=completions\n"
                               "backend.temperature = 0.25\n"
                               "backend.max.tokens = 512\n"
                               "inflight.max = 7\n"
                               "limits.turns = 0\n"
                               "log.level = debug\n"
                               "template.file = /etc/ragline/t.txt\n"
                               "topic.evidence =\n"
                               "kafka.bootstrap.servers = k1:9092,k2:9092\n"
                               "kafka.sasl.password = p=a#s s\r\n",
                               path, sizeof(path), err, sizeof(err)),
                     0);

    /* '#' and '=' inside a value are plain characters. */
    assert_string_equal(rl_config_get(conf, "kafka.sasl.password"), "p=a#s s");
    s = rl_config_validate(conf, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->backend.url, "http://llm:8000/v1");
    assert_int_equal(s->backend.api, RL_API_COMPLETIONS);
    assert_true(s->backend.temperature == 0.25);
    assert_int_equal(s->backend.max_tokens, 512);
    assert_int_equal(s->inflight_max, 7);
    assert_int_equal(s->backend.max_connections, 7);
    assert_int_equal(s->limits.max_turns, 0);
    assert_int_equal(s->log_level, RL_LOG_DEBUG);
    assert_string_equal(s->template_file, "/etc/ragline/t.txt");
    assert_string_equal(s->evidence_topic, "");
    assert_false(s->embedded);
    rl_config_destroy(conf);
}

/* Each bad file must fail on the given line with the given reason. */
static void test_file_errors(void **state)
{
    static const struct {
        const char *text;
        int line;
        const char *reason;
    } cases[] = {
        {"backend.urll = x\n", 1, "unknown key 'backend.urll'"},
        {"# c\n\ninflight.max = 0\n", 3,
         "inflight.max: expected an integer from 1 to 100000, got '0'"},
        {"inflight.max = 100001\n", 1,
         "inflight.max: expected an integer from 1 to 100000, got '100001'"},
        {"backend.timeout.ms = 12x\n", 1,
         "backend.timeout.ms: expected an integer from 1 to 86400000, got "
         "'12x'"},
        {"limits.depth = \n", 1,
         "limits.depth: expected an integer from 6 to 2048, got ''"},
        {"backend.api = grpc\n", 1,
         "backend.api: expected one of chat, completions, got 'grpc'"},
        {"log.level = verbose\n", 1,
         "log.level: expected one of error, warn, notice, info, debug, got "
         "'verbose'"},
        {"backend.temperature = 2.5\n", 1,
         "backend.temperature: expected a number from 0 to 2, or empty, got "
         "'2.5'"},
        {"backend.temperature = nan\n", 1,
         "backend.temperature: expected a number from 0 to 2, or empty, got "
         "'nan'"},
        {"group.id = a\n", 0, NULL},
        {"group.id\n", 1, "expected 'key = value'"},
        {"  = value\n", 1, "missing key before '='"},
        {"group.id = a\n# c\ngroup.id = b\n", 3,
         "'group.id' is already set on line 1"},
        {"kafka.acks = 1\nkafka.acks = all\n", 2,
         "'kafka.acks' is already set on line 1"},
        {"kafka.group.id = g\n", 1, "kafka.group.id: use group.id"},
        {"kafka. = x\n", 1, "empty key after 'kafka.'"},
    };
    char path[64], err[512], want[512];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rl_config_t *conf = rl_config_new();
        int rc;

        err[0] = '\0';
        rc = load_text(conf, cases[i].text, path, sizeof(path), err,
                       sizeof(err));
        if (!cases[i].reason) {
            assert_int_equal(rc, 0);
        } else {
            snprintf(want, sizeof(want), "%s:%d: %s", path, cases[i].line,
                     cases[i].reason);
            assert_int_equal(rc, -1);
            assert_string_equal(err, want);
        }
        rl_config_destroy(conf);
    }
}

static void test_file_missing(void **state)
{
    rl_config_t *conf = rl_config_new();
    char err[256];

    assert_int_equal(rl_config_load_file(conf, "/nonexistent/ragline.conf", err,
                                         sizeof(err)),
                     -1);
    assert_non_null(strstr(err, "/nonexistent/ragline.conf: "));
    rl_config_destroy(conf);
}

static void test_env_overrides(void **state)
{
    char *const envp[] = {
        "PATH=/usr/bin",
        "RAGLINE_CONFIG=/etc/ragline.conf",
        "RAGLINE_BACKEND_TIMEOUT_MS=2500",
        "RAGLINE_BACKEND_API_KEY_ENV=MY_KEY",
        "RAGLINE_KAFKA_SASL_PASSWORD=hunter2",
        "RAGLINE_KAFKA_BOOTSTRAP_SERVERS=b:9092",
        "RAGLINE_TOPIC_INPUT=in=put",
        NULL,
    };
    rl_config_t *conf = rl_config_new();
    char path[64], err[256];

    assert_int_equal(load_text(conf,
                               "backend.timeout.ms = 100\n"
                               "kafka.bootstrap.servers = a:9092\n",
                               path, sizeof(path), err, sizeof(err)),
                     0);
    assert_int_equal(rl_config_load_env(conf, envp, err, sizeof(err)), 0);

    assert_string_equal(rl_config_get(conf, "backend.timeout.ms"), "2500");
    assert_string_equal(rl_config_get(conf, "backend.api.key.env"), "MY_KEY");
    assert_string_equal(rl_config_get(conf, "kafka.sasl.password"), "hunter2");
    assert_string_equal(rl_config_get(conf, "kafka.bootstrap.servers"),
                        "b:9092");
    assert_string_equal(rl_config_get(conf, "topic.input"), "in=put");
    assert_null(rl_config_get(conf, "kafka.config"));
    rl_config_destroy(conf);
}

static void test_env_errors(void **state)
{
    static const struct {
        const char *var;
        const char *err;
    } cases[] = {
        {"RAGLINE_INFLIGHT_MAX=0",
         "RAGLINE_INFLIGHT_MAX: inflight.max: expected an integer from 1 to "
         "100000, got '0'"},
        {"RAGLINE_KAFKA_GROUP_ID=g",
         "RAGLINE_KAFKA_GROUP_ID: kafka.group.id: use group.id"},
    };
    char err[256];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *envp[2] = {(char *)cases[i].var, NULL};
        rl_config_t *conf = rl_config_new();

        assert_int_equal(rl_config_load_env(conf, envp, err, sizeof(err)), -1);
        assert_string_equal(err, cases[i].err);
        rl_config_destroy(conf);
    }
}

/* Names that map to no key are other programs' variables: skipped
 * (with a warning in the log), and nothing is set. */
static void test_env_unknown_ignored(void **state)
{
    char *envp[] = {"RAGLINE_NOPE=1",      "RAGLINE_backend_url=x",
                    "RAGLINE_KAFKA_=x",    "RAGLINE_BACKEND_TIMEOUT=1",
                    "RAGLINE_BUILD=build", NULL};
    rl_config_t *conf = rl_config_new(), *plain = rl_config_new();
    char *printed = NULL, *defaults = NULL;
    size_t n1 = 0, n2 = 0;
    FILE *f1 = open_memstream(&printed, &n1);
    FILE *f2 = open_memstream(&defaults, &n2);
    char err[256];

    rl_log_set_level(RL_LOG_ERROR); /* keep the warnings out of the run */
    assert_int_equal(rl_config_load_env(conf, envp, err, sizeof(err)), 0);
    rl_log_set_level(RL_LOG_INFO);
    rl_config_print(conf, f1);
    rl_config_print(plain, f2);
    fclose(f1);
    fclose(f2);
    assert_string_equal(printed, defaults);
    free(printed);
    free(defaults);
    rl_config_destroy(conf);
    rl_config_destroy(plain);
}

static int collect_kafka(const char *name, const char *value, void *opaque)
{
    rl_buf_t *out = opaque;

    rl_buf_printf(out, "%s=%s;", name, value);
    return strcmp(name, "stop.here") == 0 ? 7 : 0;
}

static void test_foreach_kafka(void **state)
{
    rl_config_t *conf = rl_config_new();
    rl_buf_t out = RL_BUF_INIT;
    char err[256];

    assert_int_equal(rl_config_set(conf, "kafka.z.last", "3", err, sizeof(err)),
                     0);
    assert_int_equal(
        rl_config_set(conf, "kafka.a.first", "1", err, sizeof(err)), 0);
    assert_int_equal(rl_config_set(conf, "kafka.m.mid", "2", err, sizeof(err)),
                     0);
    assert_int_equal(
        rl_config_set(conf, "kafka.a.first", "1b", err, sizeof(err)), 0);
    assert_int_equal(rl_config_foreach_kafka(conf, collect_kafka, &out), 0);
    assert_string_equal(rl_buf_cstr(&out), "a.first=1b;m.mid=2;z.last=3;");

    rl_buf_reset(&out);
    assert_int_equal(
        rl_config_set(conf, "kafka.stop.here", "x", err, sizeof(err)), 0);
    assert_int_equal(rl_config_foreach_kafka(conf, collect_kafka, &out), 7);
    assert_string_equal(rl_buf_cstr(&out), "a.first=1b;m.mid=2;stop.here=x;");
    rl_buf_free(&out);
    rl_config_destroy(conf);
}

static void test_validate_rules(void **state)
{
    rl_config_t *conf = rl_config_new();
    const rl_settings_t *s;
    char err[256];

    /* An empty bootstrap.servers still means embedded mode. */
    assert_int_equal(
        rl_config_set(conf, "kafka.bootstrap.servers", "", err, sizeof(err)),
        0);
    assert_int_equal(
        rl_config_set(conf, "backend.url", "http://h", err, sizeof(err)), 0);
    s = rl_config_validate(conf, err, sizeof(err));
    assert_non_null(s);
    assert_true(s->embedded);
    assert_int_equal(s->backend.api, RL_API_CHAT);

    assert_int_equal(rl_config_set(conf, "topic.output", "ragline.queries", err,
                                   sizeof(err)),
                     0);
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_string_equal(err, "topic.input 'ragline.queries' is also used as "
                             "another topic");

    assert_int_equal(rl_config_set(conf, "topic.output", "", err, sizeof(err)),
                     0);
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_string_equal(err, "topic.output must not be empty");
    rl_config_destroy(conf);
}

static void test_api_key_from_env(void **state)
{
    rl_config_t *conf = rl_config_new();
    const rl_settings_t *s;
    char err[256];

    setenv("RL_TEST_API_KEY", "sk-from-env", 1);
    assert_int_equal(rl_config_set(conf, "backend.api.key.env",
                                   "RL_TEST_API_KEY", err, sizeof(err)),
                     0);
    s = rl_config_validate(conf, err, sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->backend.api_key, "sk-from-env");

    unsetenv("RL_TEST_API_KEY");
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_string_equal(err, "backend.api.key.env: variable RL_TEST_API_KEY is "
                             "not set");

    setenv("RL_TEST_API_KEY", "", 1);
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_string_equal(err, "the API key in RL_TEST_API_KEY is empty");
    unsetenv("RL_TEST_API_KEY");
    rl_config_destroy(conf);
}

/* Validates with the key file holding @p text; returns the settings. */
static const rl_settings_t *with_key_file(rl_config_t *conf, const char *text,
                                          char *path, size_t path_size,
                                          char *err, size_t err_size)
{
    const rl_settings_t *s;

    write_temp(path, path_size, text);
    assert_int_equal(
        rl_config_set(conf, "backend.api.key.file", path, err, err_size), 0);
    s = rl_config_validate(conf, err, err_size);
    unlink(path);
    return s;
}

static void test_api_key_from_file(void **state)
{
    rl_config_t *conf = rl_config_new();
    const rl_settings_t *s;
    char path[64], err[256], want[256];

    s = with_key_file(conf, "sk-file-1\n", path, sizeof(path), err,
                      sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->backend.api_key, "sk-file-1");

    s = with_key_file(conf, "sk-file-2\r\n", path, sizeof(path), err,
                      sizeof(err));
    assert_non_null(s);
    assert_string_equal(s->backend.api_key, "sk-file-2");

    /* A second line would end up inside the HTTP header. */
    assert_null(with_key_file(conf, "sk-a\nsk-b\n", path, sizeof(path), err,
                              sizeof(err)));
    snprintf(want, sizeof(want),
             "the API key in %s contains a control character", path);
    assert_string_equal(err, want);
    assert_null(strstr(err, "sk-"));

    assert_null(
        with_key_file(conf, "\n", path, sizeof(path), err, sizeof(err)));
    snprintf(want, sizeof(want), "the API key in %s is empty", path);
    assert_string_equal(err, want);

    assert_int_equal(rl_config_set(conf, "backend.api.key.file",
                                   "/nonexistent/key", err, sizeof(err)),
                     0);
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_non_null(strstr(err, "backend.api.key.file: /nonexistent/key: "));
    rl_config_destroy(conf);
}

static void test_api_key_both_set(void **state)
{
    rl_config_t *conf = rl_config_new();
    char err[256];

    assert_int_equal(
        rl_config_set(conf, "backend.api.key.env", "K", err, sizeof(err)), 0);
    assert_int_equal(
        rl_config_set(conf, "backend.api.key.file", "/k", err, sizeof(err)), 0);
    assert_null(rl_config_validate(conf, err, sizeof(err)));
    assert_string_equal(err, "set backend.api.key.env or "
                             "backend.api.key.file, not both");
    rl_config_destroy(conf);
}

static size_t count_lines(const char *text)
{
    size_t n = 0;

    for (; *text; text++)
        n += *text == '\n';
    return n;
}

static size_t count_known_keys(void)
{
    char *text = NULL;
    size_t len = 0, n;
    FILE *fp = open_memstream(&text, &len);

    rl_config_print_keys(fp);
    fclose(fp);
    n = count_lines(text) - 2; /* the header and its rule */
    free(text);
    return n;
}

static void test_print_redacts(void **state)
{
    rl_config_t *conf = rl_config_new();
    char path[64], err[256], *text, *line, *prev = NULL, *save = NULL;

    assert_int_equal(load_text(conf,
                               "kafka.bootstrap.servers = b:9092\n"
                               "kafka.sasl.password = pw-sasl\n"
                               "kafka.ssl.key.password = pw-ssl\n"
                               "kafka.sasl.oauthbearer.client.secret = pw-o\n"
                               "kafka.ssl.key.pem = pw-pem\n"
                               "backend.url = https://me:pw-url@llm:8000/v1\n",
                               path, sizeof(path), err, sizeof(err)),
                     0);
    write_temp(path, sizeof(path), "pw-api-key\n");
    assert_int_equal(
        rl_config_set(conf, "backend.api.key.file", path, err, sizeof(err)), 0);
    assert_non_null(rl_config_validate(conf, err, sizeof(err)));
    unlink(path);

    text = print_to_string(conf);
    assert_null(strstr(text, "pw-"));
    assert_non_null(strstr(text, "kafka.sasl.password = [redacted]\n"));
    assert_non_null(strstr(text, "kafka.ssl.key.pem = [redacted]\n"));
    assert_non_null(strstr(text, "kafka.bootstrap.servers = b:9092\n"));
    assert_non_null(
        strstr(text, "backend.url = https://[redacted]@llm:8000/v1\n"));
    assert_non_null(strstr(text, "inflight.max = 1024\n"));
    assert_non_null(strstr(text, "backend.temperature = \n"));
    assert_int_equal(count_lines(text), count_known_keys() + 5);

    for (line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        if (prev)
            assert_true(strcmp(prev, line) < 0);
        prev = line;
    }
    free(text);
    rl_config_destroy(conf);
}

static char *read_file(const char *path)
{
    char *text = NULL;
    size_t cap = 0;
    FILE *fp = fopen(path, "r");
    ssize_t n;

    assert_non_null(fp);
    n = getdelim(&text, &cap, '\0', fp);
    assert_true(n >= 0);
    fclose(fp);
    return text;
}

/* The table in the docs is the one the code prints. */
static void test_docs_table_current(void **state)
{
    char *table = NULL, *docs;
    size_t len = 0;
    FILE *fp = open_memstream(&table, &len);

    rl_config_print_keys(fp);
    fclose(fp);
    docs = read_file("../docs/configuration.md");
    assert_non_null(strstr(docs, table));
    free(docs);
    free(table);
}

static void test_example_file_loads(void **state)
{
    rl_config_t *conf = rl_config_new();
    char err[256];

    assert_int_equal(rl_config_load_file(conf, "../deploy/ragline.conf.example",
                                         err, sizeof(err)),
                     0);
    assert_non_null(rl_config_validate(conf, err, sizeof(err)));
    rl_config_destroy(conf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_good),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_env_unknown_ignored),
        cmocka_unit_test(test_foreach_kafka),
        cmocka_unit_test(test_validate_rules),
        cmocka_unit_test(test_api_key_from_env),
        cmocka_unit_test(test_api_key_from_file),
        cmocka_unit_test(test_api_key_both_set),
        cmocka_unit_test(test_print_redacts),
        cmocka_unit_test(test_docs_table_current),
        cmocka_unit_test(test_example_file_loads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
