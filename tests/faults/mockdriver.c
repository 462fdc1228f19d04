/*
 * ragline fault suite - a librdkafka mock cluster driven from stdin.
 *
 * Some broker faults cannot be made to happen on a real single-node
 * broker on demand: a request failing with a chosen error code, the
 * group coordinator moving, one broker of several going away.  The mock
 * cluster can do all of them, but only from inside the process that
 * created it, so this program owns one and takes orders on its
 * standard input while ragline and the suite's clients talk to it over
 * TCP like to any cluster.
 *
 *   mockdriver [BROKERS]          (default 3)
 *
 * First line written: "bootstrap HOST:PORT,...".  Then one command a
 * line, each answered with "ok" or "error: <why>":
 *
 *   topic NAME PARTITIONS REPLICATION
 *   errors APIKEY ERROR...        next requests of that API fail, in order
 *   coordinator group|transaction KEY BROKER
 *   leader TOPIC PARTITION BROKER
 *   down BROKER | up BROKER
 *
 * ERROR is a librdkafka error name without its RD_KAFKA_RESP_ERR_
 * prefix (NOT_COORDINATOR) or a number.  End of input destroys the
 * cluster and exits 0.
 *
 * Built by tests/faults/run.sh: cc mockdriver.c -lrdkafka.
 */
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORDS  64
#define LINE_BYTES 4096

typedef struct {
    char *word[MAX_WORDS];
    int count;
} words_t;

/* Splits @p line in place at blanks; at most MAX_WORDS words are kept. */
static void split(char *line, words_t *w)
{
    static const char blanks[] = " \t\r\n";
    char *p = line;

    w->count = 0;
    for (;;) {
        p += strspn(p, blanks);
        if (!*p || w->count == MAX_WORDS)
            return;
        w->word[w->count++] = p;
        p += strcspn(p, blanks);
        if (*p)
            *p++ = '\0';
    }
}

/* Reads a whole decimal number from @p s into *out.
 * @returns 0, or -1 if @p s is not one or is out of [min, max]. */
static int parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Looks an error up by librdkafka's name for it, or takes a number.
 * @returns 0 and sets *err, or -1 for an unknown name. */
static int parse_error(const char *s, rd_kafka_resp_err_t *err)
{
    const struct rd_kafka_err_desc *descs;
    size_t n, i;
    long num;

    if (parse_int(s, -200, 1000, &num) == 0) {
        *err = (rd_kafka_resp_err_t)num;
        return 0;
    }
    rd_kafka_get_err_descs(&descs, &n);
    for (i = 0; i < n; i++) {
        if (descs[i].name && strcmp(descs[i].name, s) == 0) {
            *err = descs[i].code;
            return 0;
        }
    }
    return -1;
}

/* The commands.  Each returns NULL when done, else why it failed. */

static const char *cmd_topic(rd_kafka_mock_cluster_t *mc, const words_t *w)
{
    long parts, rf;

    if (w->count != 4 || parse_int(w->word[2], 1, 10000, &parts) < 0 ||
        parse_int(w->word[3], 1, 100, &rf) < 0)
        return "usage: topic NAME PARTITIONS REPLICATION";
    if (rd_kafka_mock_topic_create(mc, w->word[1], (int)parts, (int)rf))
        return "topic not created";
    return NULL;
}

static const char *cmd_errors(rd_kafka_mock_cluster_t *mc, const words_t *w)
{
    rd_kafka_resp_err_t errs[MAX_WORDS];
    long apikey;
    int i;

    if (w->count < 3 || parse_int(w->word[1], 0, 1000, &apikey) < 0)
        return "usage: errors APIKEY ERROR...";
    for (i = 2; i < w->count; i++)
        if (parse_error(w->word[i], &errs[i - 2]) < 0)
            return "unknown error name";
    rd_kafka_mock_push_request_errors_array(mc, (int16_t)apikey,
                                            (size_t)(w->count - 2), errs);
    return NULL;
}

static const char *cmd_coordinator(rd_kafka_mock_cluster_t *mc,
                                   const words_t *w)
{
    long broker;

    if (w->count != 4 || parse_int(w->word[3], 1, 1000, &broker) < 0 ||
        (strcmp(w->word[1], "group") && strcmp(w->word[1], "transaction")))
        return "usage: coordinator group|transaction KEY BROKER";
    if (rd_kafka_mock_coordinator_set(mc, w->word[1], w->word[2],
                                      (int32_t)broker))
        return "coordinator not set";
    return NULL;
}

static const char *cmd_leader(rd_kafka_mock_cluster_t *mc, const words_t *w)
{
    long part, broker;

    if (w->count != 4 || parse_int(w->word[2], 0, 10000, &part) < 0 ||
        parse_int(w->word[3], -1, 1000, &broker) < 0)
        return "usage: leader TOPIC PARTITION BROKER";
    if (rd_kafka_mock_partition_set_leader(mc, w->word[1], (int32_t)part,
                                           (int32_t)broker))
        return "leader not set";
    return NULL;
}

static const char *cmd_updown(rd_kafka_mock_cluster_t *mc, const words_t *w)
{
    rd_kafka_resp_err_t err;
    long broker;

    if (w->count != 2 || parse_int(w->word[1], 1, 1000, &broker) < 0)
        return "usage: down|up BROKER";
    if (strcmp(w->word[0], "down") == 0)
        err = rd_kafka_mock_broker_set_down(mc, (int32_t)broker);
    else
        err = rd_kafka_mock_broker_set_up(mc, (int32_t)broker);
    return err ? "no such broker" : NULL;
}

static const char *run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
    words_t w;

    split(line, &w);
    if (w.count == 0)
        return "empty command";
    if (strcmp(w.word[0], "topic") == 0)
        return cmd_topic(mc, &w);
    if (strcmp(w.word[0], "errors") == 0)
        return cmd_errors(mc, &w);
    if (strcmp(w.word[0], "coordinator") == 0)
        return cmd_coordinator(mc, &w);
    if (strcmp(w.word[0], "leader") == 0)
        return cmd_leader(mc, &w);
    if (strcmp(w.word[0], "down") == 0 || strcmp(w.word[0], "up") == 0)
        return cmd_updown(mc, &w);
    return "unknown command";
}

int main(int argc, char **argv)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_mock_cluster_t *mc;
    char errstr[512], line[LINE_BYTES];
    const char *why;
    long brokers = 3;
    rd_kafka_t *rk;

    if (argc > 2 || (argc == 2 && parse_int(argv[1], 1, 16, &brokers) < 0)) {
        fprintf(stderr, "usage: mockdriver [BROKERS (1-16)]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* The mock cluster lives on a client handle; this one sends nothing. */
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "mockdriver: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (!mc) {
        fprintf(stderr, "mockdriver: the mock cluster did not start\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));

    while (fgets(line, sizeof(line), stdin)) {
        why = run_command(mc, line);
        if (why)
            printf("error: %s\n", why);
        else
            printf("ok\n");
    }

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
