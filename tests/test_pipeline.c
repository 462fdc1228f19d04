/*
 * Tests of the whole pipeline on librdkafka's mock cluster with the
 * built-in backend: every event ends as exactly one answer or one
 * dead-letter record, the in-flight cap holds, headers are carried over
 * and a graceful stop commits every partition to its end.
 *
 * The same paths run against a real broker in tests/integration/; this
 * test is the fast one, and the one that runs under the sanitizers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "ragline/arena.h"
#include "ragline/config.h"
#include "ragline/kafka.h"
#include "ragline/loop.h"
#include "ragline/pipeline.h"

#define NEVENTS         300
#define MAX_EVENT_BYTES 512 /* produce_events() writes less */
#define BACKLOG_BYTES   "2048"
#define NBAD            30 /* every tenth event is malformed */
#define PARTS           4
#define CAP             32

static const char *const topics[] = {"in", "out", "dlq", "evidence", NULL};

typedef struct {
    rl_mock_t *mock;
    rl_config_t *conf;
    const rl_settings_t *settings;
} fixture_t;

static rd_kafka_t *client(const char *bootstrap, rd_kafka_type_t type,
                          const char *group)
{
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(kconf, "bootstrap.servers", bootstrap, NULL, 0);
    rd_kafka_conf_set(kconf, "log_level", "3", NULL, 0);
    if (group) {
        rd_kafka_conf_set(kconf, "group.id", group, NULL, 0);
        rd_kafka_conf_set(kconf, "enable.auto.commit", "false", NULL, 0);
    }
    rk = rd_kafka_new(type, kconf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

static void set(fixture_t *f, const char *key, const char *value)
{
    char errstr[256];

    if (rl_config_set(f->conf, key, value, errstr, sizeof(errstr)) < 0)
        fail_msg("%s", errstr);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char errstr[256];

    f->mock = rl_mock_start(topics, PARTS, errstr, sizeof(errstr));
    assert_non_null(f->mock);
    f->conf = rl_config_new();
    set(f, "kafka.bootstrap.servers", rl_mock_bootstrap(f->mock));
    set(f, "topic.input", "in");
    set(f, "topic.output", "out");
    set(f, "topic.dlq", "dlq");
    set(f, "topic.evidence", "evidence");
    set(f, "group.id", "test-pipeline");
    set(f, "inflight.max", "32");
    /* Small, so that these small events fill it and pause input. */
    set(f, "inflight.backlog.bytes", BACKLOG_BYTES);
    set(f, "log.level", "warn");
    f->settings = rl_config_validate(f->conf, errstr, sizeof(errstr));
    assert_non_null(f->settings);
    rl_log_set_level(RL_LOG_ERROR);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    rl_config_destroy(f->conf);
    rl_mock_stop(f->mock);
    free(f);
    return 0;
}

/* Event i: good ones carry id "ev-i"; every tenth one is broken in one
 * of three ways.  Keys are "k-i" so the dead letters can be matched. */
static void produce_events(const char *bootstrap)
{
    rd_kafka_t *p = client(bootstrap, RD_KAFKA_PRODUCER, NULL);
    char key[32], value[MAX_EVENT_BYTES];
    int i;

    for (i = 0; i < NEVENTS; i++) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(1);

        snprintf(key, sizeof(key), "k-%d", i);
        if (i % 10 != 9)
            snprintf(value, sizeof(value),
                     "{\"id\": \"ev-%d\", \"query\": \"q %d\", "
                     "\"recommended_answer\": \"a %d\", \"history\": "
                     "[{\"role\": \"user\", \"content\": \"hi\", "
                     "\"all_queries\": [\"missing %d\"]}]}",
                     i, i, i, i);
        else if (i % 30 == 9)
            snprintf(value, sizeof(value), "{\"id\": \"ev-%d\"", i);
        else if (i % 30 == 19)
            snprintf(value, sizeof(value), "{\"id\": \"ev-%d\", \"query\": 5}",
                     i);
        else
            snprintf(value, sizeof(value), "[1, 2, 3]");
        rd_kafka_header_add(h, "traceparent", -1, key, -1);
        assert_int_equal(
            rd_kafka_producev(p, RD_KAFKA_V_TOPIC("in"),
                              RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE(value, strlen(value)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
            0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
}

typedef struct {
    int answers[NEVENTS]; /* times each index was answered */
    int dead[NEVENTS];    /* times each index was dead-lettered */
} tally_t;

static int header_is(const rd_kafka_message_t *m, const char *name,
                     const char *want)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t n;

    if (rd_kafka_message_headers(m, &h) || !h ||
        rd_kafka_header_get_last(h, name, &v, &n))
        return 0;
    return n == strlen(want) && memcmp(v, want, n) == 0;
}

/* Reads a topic from the beginning, counting by key, until @p expect
 * records came and then a second passed with nothing more (duplicates
 * would show up in that second), or 30 s passed. */
static void read_topic(const char *bootstrap, const char *topic, int *counts,
                       int expect, int is_answer)
{
    int64_t deadline = rl_now_us() + 30 * 1000000LL;
    int seen = 0;
    rd_kafka_t *c = client(bootstrap, RD_KAFKA_CONSUMER, "test-reader");
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(4);
    int i, eof = 0;

    for (i = 0; i < PARTS; i++)
        rd_kafka_topic_partition_list_add(list, topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, list);
    rd_kafka_topic_partition_list_destroy(list);

    while (eof < 10 && rl_now_us() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        int idx;
        char key[32];

        if (!m) {
            if (seen >= expect)
                eof++;
            continue;
        }
        seen++;
        assert_int_equal(m->err, 0);
        assert_true(m->key_len < sizeof(key));
        memcpy(key, m->key, m->key_len);
        key[m->key_len] = '\0';
        assert_int_equal(sscanf(key, "k-%d", &idx), 1);
        assert_true(idx >= 0 && idx < NEVENTS);
        counts[idx]++;
        assert_true(header_is(m, "traceparent", key));
        if (is_answer) {
            char id[32];

            snprintf(id, sizeof(id), "\"id\":\"ev-%d\"", idx);
            assert_non_null(memmem(m->payload, m->len, id, strlen(id)));
            assert_non_null(memmem(m->payload, m->len, "\"missing\":1", 11));
        } else {
            assert_true(header_is(m, "ragline.source.topic", "in"));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_destroy(c);
}

static void run_until(rl_loop_t *loop, rl_pipeline_t *pl, uint64_t done)
{
    const rl_metrics_t *m = rl_pipeline_metrics(pl);
    int64_t deadline = rl_now_us() + 60 * 1000000LL;

    while (m->answered + m->dead_lettered < done && rl_now_us() < deadline)
        rl_loop_run_once(loop, 100);
}

static void test_every_event_ends_once(void **state)
{
    fixture_t *f = *state;
    const char *bs = rl_mock_bootstrap(f->mock);
    rl_loop_t *loop = rl_loop_new();
    static tally_t t;
    rl_pipeline_t *pl;
    const rl_metrics_t *m;
    char errstr[512];
    int i;

    produce_events(bs);
    pl = rl_pipeline_new(loop, f->conf, f->settings, NULL, errstr,
                         sizeof(errstr));
    if (!pl)
        fail_msg("%s", errstr);
    m = rl_pipeline_metrics(pl);
    run_until(loop, pl, NEVENTS);
    assert_int_equal(m->answered, NEVENTS - NBAD);
    assert_int_equal(m->dead_lettered, NBAD);
    /* At most CAP events reach the backend at once; taken events wait
     * in a backlog of inflight.backlog.bytes (each counted with its key
     * and 512 bytes of bookkeeping), which the last event taken may
     * overfill.  Filling it stops input being read. */
    assert_true(m->active_peak <= CAP);
    assert_true(m->backlog_bytes_peak > 0);
    assert_true(m->backlog_bytes_peak < 2048 + MAX_EVENT_BYTES + 32 + 512);
    assert_true(m->stalls > 0);

    rl_pipeline_shutdown(pl);
    while (!rl_pipeline_finished(pl))
        rl_loop_run_once(loop, 100);
    assert_int_equal(rl_pipeline_exit_status(pl), 0);
    rl_pipeline_destroy(pl);
    rl_loop_destroy(loop);

    read_topic(bs, "out", t.answers, NEVENTS - NBAD, 1);
    read_topic(bs, "dlq", t.dead, NBAD, 0);
    for (i = 0; i < NEVENTS; i++) {
        int bad = i % 10 == 9;

        assert_int_equal(t.answers[i], bad ? 0 : 1);
        assert_int_equal(t.dead[i], bad ? 1 : 0);
    }
}

/* After the graceful stop above, the group's committed offsets are at
 * the end of every partition: a restart would take nothing again. */
static void test_committed_to_the_end(void **state)
{
    fixture_t *f = *state;
    rd_kafka_t *c =
        client(rl_mock_bootstrap(f->mock), RD_KAFKA_CONSUMER, "test-pipeline");
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new(4);
    int64_t total = 0;
    int i;

    for (i = 0; i < PARTS; i++)
        rd_kafka_topic_partition_list_add(list, "in", i);
    assert_int_equal(rd_kafka_committed(c, list, 10000), 0);
    for (i = 0; i < PARTS; i++) {
        int64_t lo, hi;

        assert_int_equal(
            rd_kafka_query_watermark_offsets(c, "in", i, &lo, &hi, 10000), 0);
        assert_int_equal(list->elems[i].offset, hi);
        total += hi;
    }
    assert_int_equal(total, NEVENTS);
    rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_destroy(c);
}

int main(void)
{
    /* As the worker does, so that events are parsed into arenas. */
    rl_arena_install();

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_event_ends_once),
        cmocka_unit_test(test_committed_to_the_end),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
