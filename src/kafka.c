/*
 * ragline - librdkafka plumbing.
 */
#include "ragline/kafka.h"
#include "ragline/buf.h"
#include "ragline/log.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TAG "kafka"

/* ------------------------------------------------------------------ */
/* Client configuration                                                */

typedef struct {
    const char *name;
    const char *value;
} kv_t;

/*
 * Defaults per role, applied before the user's kafka.* keys.  Offsets
 * are stored by hand (only up to the lowest unfinished event) and
 * committed by librdkafka's timer; a new group starts at the earliest
 * offset so that events sent before the first worker are not skipped.
 * Cooperative rebalancing moves only the partitions that change owner,
 * so a member joining or leaving does not stop the others' work.
 */
static const kv_t consumer_defaults[] = {
    {"enable.auto.offset.store", "false"},
    {"enable.auto.commit", "true"},
    {"auto.commit.interval.ms", "1000"},
    {"auto.offset.reset", "earliest"},
    {"enable.partition.eof", "false"},
    {"partition.assignment.strategy", "cooperative-sticky"},
    /* librdkafka prefetches up to 64 MB by default.  8 MB still holds
     * about a second of 10 KB events at full speed, which is how long
     * librdkafka 2.0.2 can take to fetch again once the worker drains
     * its queue (nothing wakes its fetcher when the queue has room). */
    {"queued.max.messages.kbytes", "8192"},
    {"fetch.max.bytes", "8388608"},
    /* 4 MB a partition a fetch, not 1 MB: the fetcher waits for each
     * response before asking again, and a busy broker's round trip
     * then capped input at ~1,100 events/s of 10 KB (1,400 with 4 MB,
     * bench instant scenario). */
    {"max.partition.fetch.bytes", "4194304"},
    {NULL, NULL},
};

/* Idempotence keeps librdkafka's own retries from writing duplicates. */
static const kv_t producer_defaults[] = {
    {"enable.idempotence", "true"},
    {"acks", "all"},
    {"linger.ms", "5"},
    {NULL, NULL},
};

static const kv_t evidence_defaults[] = {
    {"enable.auto.commit", "false"},
    {"enable.auto.offset.store", "false"},
    {"enable.partition.eof", "true"},
    {"auto.offset.reset", "earliest"},
    {NULL, NULL},
};

typedef struct {
    rd_kafka_conf_t *kconf;
    char *errstr;
    size_t errstr_size;
} conf_ctx_t;

static int set_one(rd_kafka_conf_t *kconf, const char *name, const char *value,
                   char *errstr, size_t errstr_size)
{
    char why[256];

    if (rd_kafka_conf_set(kconf, name, value, why, sizeof(why)) ==
        RD_KAFKA_CONF_OK)
        return 0;
    snprintf(errstr, errstr_size, "kafka.%s: %s", name, why);
    return -1;
}

static int set_user_key(const char *name, const char *value, void *opaque)
{
    conf_ctx_t *ctx = opaque;

    return set_one(ctx->kconf, name, value, ctx->errstr, ctx->errstr_size);
}

static const kv_t *defaults_for(rl_client_role_t role)
{
    switch (role) {
    case RL_CLIENT_CONSUMER:
        return consumer_defaults;
    case RL_CLIENT_PRODUCER:
        return producer_defaults;
    default:
        return evidence_defaults;
    }
}

/*
 * Exactly-once settings win over the user's: offsets then travel only
 * in transactions, and the transactional id is derived from the group
 * and the instance, so that a restarted instance fences its zombie.
 */
static int set_exactly_once(rd_kafka_conf_t *kconf,
                            const rl_settings_t *settings,
                            rl_client_role_t role, char *errstr,
                            size_t errstr_size)
{
    char txn_id[512];

    if (role == RL_CLIENT_PRODUCER) {
        snprintf(txn_id, sizeof(txn_id), "ragline-%s-%s", settings->group_id,
                 settings->instance_id);
        return set_one(kconf, "transactional.id", txn_id, errstr, errstr_size);
    }
    if (role != RL_CLIENT_CONSUMER)
        return 0;
    if (set_one(kconf, "enable.auto.commit", "false", errstr, errstr_size) < 0)
        return -1;
    return set_one(kconf, "isolation.level", "read_committed", errstr,
                   errstr_size);
}

rd_kafka_conf_t *rl_kafka_conf_new(const rl_config_t *conf,
                                   const rl_settings_t *settings,
                                   rl_client_role_t role, const char *bootstrap,
                                   char *errstr, size_t errstr_size)
{
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    conf_ctx_t ctx = {kconf, errstr, errstr_size};
    const kv_t *kv;
    char group[512];

    rd_kafka_conf_set_log_cb(kconf, rl_kafka_log_cb);
    for (kv = defaults_for(role); kv->name; kv++)
        if (set_one(kconf, kv->name, kv->value, errstr, errstr_size) < 0)
            goto fail;

    /* The evidence reader never joins a group, but librdkafka's
     * consumer API wants a group id all the same. */
    if (role == RL_CLIENT_EVIDENCE)
        snprintf(group, sizeof(group), "%s.evidence", settings->group_id);
    else
        snprintf(group, sizeof(group), "%s", settings->group_id);
    if (role != RL_CLIENT_PRODUCER &&
        set_one(kconf, "group.id", group, errstr, errstr_size) < 0)
        goto fail;

    if (rl_config_foreach_kafka(conf, set_user_key, &ctx) != 0)
        goto fail;
    if (bootstrap &&
        set_one(kconf, "bootstrap.servers", bootstrap, errstr, errstr_size) < 0)
        goto fail;
    if (settings->exactly_once &&
        set_exactly_once(kconf, settings, role, errstr, errstr_size) < 0)
        goto fail;
    return kconf;

fail:
    rd_kafka_conf_destroy(kconf);
    return NULL;
}

void rl_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                     const char *buf)
{
    /* librdkafka uses syslog levels, as ragline does; its 0-2 are our 3. */
    int lvl = level < RL_LOG_ERROR ? RL_LOG_ERROR : level;

    rl_log(lvl, TAG, "%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

/* ------------------------------------------------------------------ */
/* Wake-up pipes                                                       */

int rl_kafka_wakeup_open(rl_wakeup_t *wakeup, rl_loop_t *loop,
                         rd_kafka_queue_t *queue, rl_io_cb *cb, void *opaque)
{
    int fds[2];

    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -1;
    if (rl_loop_io_add(loop, fds[0], RL_IO_READ, cb, opaque) < 0) {
        int saved = errno;

        close(fds[0]);
        close(fds[1]);
        errno = saved;
        return -1;
    }
    wakeup->rfd = fds[0];
    wakeup->wfd = fds[1];
    rd_kafka_queue_io_event_enable(queue, wakeup->wfd, "1", 1);
    return 0;
}

void rl_kafka_wakeup_clear(rl_wakeup_t *wakeup)
{
    char sink[256];

    while (read(wakeup->rfd, sink, sizeof(sink)) > 0)
        ;
}

void rl_kafka_wakeup_close(rl_wakeup_t *wakeup, rl_loop_t *loop)
{
    if (wakeup->rfd < 0)
        return;
    rl_loop_io_del(loop, wakeup->rfd);
    close(wakeup->rfd);
    close(wakeup->wfd);
    wakeup->rfd = wakeup->wfd = -1;
}

/* ------------------------------------------------------------------ */
/* The embedded cluster                                                */

struct rl_mock_s {
    rd_kafka_t *rk; /**< owns the cluster's thread */
    rd_kafka_mock_cluster_t *cluster;
    char bootstrap[256];
};

rl_mock_t *rl_mock_start(const char *const *topics, int partitions,
                         char *errstr, size_t errstr_size)
{
    rl_mock_t *mock = rl_xcalloc(1, sizeof(*mock));
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    const char *const *t;

    rd_kafka_conf_set_log_cb(kconf, rl_kafka_log_cb);
    /* This handle only hosts the cluster and never connects: spare the
     * operator its warning about having no bootstrap servers. */
    rd_kafka_conf_set(kconf, "log_level", "4", NULL, 0);
    mock->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr, errstr_size);
    if (!mock->rk) {
        rd_kafka_conf_destroy(kconf);
        goto fail;
    }
    mock->cluster = rd_kafka_mock_cluster_new(mock->rk, 1);
    if (!mock->cluster) {
        snprintf(errstr, errstr_size, "cannot start the embedded cluster");
        goto fail;
    }
    snprintf(mock->bootstrap, sizeof(mock->bootstrap), "%s",
             rd_kafka_mock_cluster_bootstraps(mock->cluster));

    for (t = topics; *t; t++) {
        rd_kafka_resp_err_t err;

        if (!**t)
            continue;
        err = rd_kafka_mock_topic_create(mock->cluster, *t, partitions, 1);
        if (err) {
            snprintf(errstr, errstr_size, "cannot create topic '%s': %s", *t,
                     rd_kafka_err2str(err));
            goto fail;
        }
    }
    return mock;

fail:
    rl_mock_stop(mock);
    return NULL;
}

const char *rl_mock_bootstrap(const rl_mock_t *mock)
{
    return mock->bootstrap;
}

void rl_mock_stop(rl_mock_t *mock)
{
    if (!mock)
        return;
    if (mock->cluster)
        rd_kafka_mock_cluster_destroy(mock->cluster);
    if (mock->rk)
        rd_kafka_destroy(mock->rk);
    free(mock);
}

/* ------------------------------------------------------------------ */
/* The evidence reader                                                 */

typedef struct {
    int64_t target; /**< high watermark at start: read up to here */
    int64_t next;   /**< next offset expected */
} ev_part_t;

struct rl_evreader_s {
    rl_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    rl_wakeup_t wakeup;
    rl_timer_t again; /**< resumes a serve cut short by its budget */
    rl_evcache_t *cache;
    char *topic;
    ev_part_t *parts;
    int nparts;
    uint64_t applied;
    uint64_t invalid;
};

static void apply_record(rl_evreader_t *r, const rd_kafka_message_t *msg)
{
    char why[256];

    if (rl_evcache_apply(r->cache, msg->key, msg->key_len, msg->payload,
                         msg->len, why, sizeof(why)) < 0) {
        r->invalid++;
        rl_warn("evidence",
                "%s [%d] offset %lld: invalid evidence record, key "
                "dropped: %s",
                r->topic, (int)msg->partition, (long long)msg->offset, why);
    }
    r->applied++;
}

/* Handles one message or event of the reader; returns 0 or -1 (fatal). */
static int handle_message(rl_evreader_t *r, const rd_kafka_message_t *msg)
{
    ev_part_t *p = NULL;

    if (msg->partition >= 0 && msg->partition < r->nparts)
        p = &r->parts[msg->partition];
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (p && msg->offset > p->next)
            p->next = msg->offset;
        return 0;
    }
    if (msg->err) {
        rl_warn("evidence", "%s [%d]: %s", r->topic, (int)msg->partition,
                rd_kafka_message_errstr(msg));
        return rd_kafka_fatal_error(r->rk, NULL, 0) ? -1 : 0;
    }
    if (!msg->key) {
        rl_warn("evidence",
                "%s [%d] offset %lld: record without a key, "
                "ignored",
                r->topic, (int)msg->partition, (long long)msg->offset);
    } else {
        apply_record(r, msg);
    }
    if (p)
        p->next = msg->offset + 1;
    return 0;
}

static int caught_up(const rl_evreader_t *r)
{
    int i;

    for (i = 0; i < r->nparts; i++)
        if (r->parts[i].next < r->parts[i].target)
            return 0;
    return 1;
}

static void serve(rl_evreader_t *r)
{
    int budget = 1000;
    rd_kafka_message_t *msg;

    rl_kafka_wakeup_clear(&r->wakeup);
    while (budget-- > 0) {
        msg = rd_kafka_consumer_poll(r->rk, 0);
        if (!msg)
            return;
        handle_message(r, msg);
        rd_kafka_message_destroy(msg);
    }
    rl_timer_start(r->loop, &r->again, 0);
}

static void on_wakeup(rl_loop_t *loop, int fd, int events, void *opaque)
{
    serve(opaque);
}

static void on_again(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    serve(opaque);
}

/* Errors a topic shows for a moment after it is created, or while its
 * leader moves: worth asking again. */
static int transient(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
           err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT ||
           err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
           err == RD_KAFKA_RESP_ERR__TRANSPORT;
}

static rd_kafka_resp_err_t query_watermarks(rl_evreader_t *r, int partition,
                                            int64_t *lo, int64_t *hi,
                                            int timeout_ms)
{
    int64_t deadline = rl_now_us() + timeout_ms * 1000LL;
    rd_kafka_resp_err_t err;

    for (;;) {
        err = rd_kafka_query_watermark_offsets(r->rk, r->topic, partition, lo,
                                               hi, timeout_ms);
        if (!transient(err) || rl_now_us() > deadline)
            return err;
        usleep(100 * 1000);
    }
}

/* The topic's metadata; a topic created a moment ago gets a few
 * seconds to show its partitions. */
static rd_kafka_resp_err_t topic_metadata(rl_evreader_t *r,
                                          rd_kafka_topic_t *rkt,
                                          const struct rd_kafka_metadata **md,
                                          int timeout_ms)
{
    int64_t deadline = rl_now_us() + 5000000;
    rd_kafka_resp_err_t err;

    for (;;) {
        err = rd_kafka_metadata(r->rk, 0, rkt, md, timeout_ms);
        if (err ||
            ((*md)->topic_cnt == 1 && !(*md)->topics[0].err &&
             (*md)->topics[0].partition_cnt > 0) ||
            rl_now_us() > deadline)
            return err;
        rd_kafka_metadata_destroy(*md);
        *md = NULL;
        usleep(200 * 1000);
    }
}

/* Finds the partitions and their high watermarks; assigns them all. */
static int assign_all(rl_evreader_t *r, int timeout_ms, char *errstr,
                      size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(r->rk, r->topic, NULL);
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t err;
    int i, ret = -1;

    err = topic_metadata(r, rkt, &md, timeout_ms);
    if (err) {
        snprintf(errstr, errstr_size, "evidence topic '%s': metadata: %s",
                 r->topic, rd_kafka_err2str(err));
        goto out;
    }
    if (md->topic_cnt != 1 || md->topics[0].err ||
        md->topics[0].partition_cnt == 0) {
        snprintf(errstr, errstr_size,
                 "evidence topic '%s' does not exist (create it, compacted, "
                 "or set topic.evidence empty to run without a cache)",
                 r->topic);
        goto out;
    }

    r->nparts = md->topics[0].partition_cnt;
    r->parts = rl_xcalloc((size_t)r->nparts, sizeof(*r->parts));
    list = rd_kafka_topic_partition_list_new(r->nparts);
    for (i = 0; i < r->nparts; i++) {
        int64_t lo = 0, hi = 0;

        err = query_watermarks(r, i, &lo, &hi, timeout_ms);
        if (err) {
            snprintf(errstr, errstr_size,
                     "evidence topic '%s' [%d]: watermarks: %s", r->topic, i,
                     rd_kafka_err2str(err));
            goto out;
        }
        r->parts[i].target = hi;
        r->parts[i].next = lo;
        rd_kafka_topic_partition_list_add(list, r->topic, i)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    err = rd_kafka_assign(r->rk, list);
    if (err) {
        snprintf(errstr, errstr_size, "evidence topic '%s': assign: %s",
                 r->topic, rd_kafka_err2str(err));
        goto out;
    }
    ret = 0;

out:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return ret;
}

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f)
        return 0;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Reads until every partition reached its start-time high watermark. */
static int load_initial(rl_evreader_t *r, int timeout_ms, char *errstr,
                        size_t errstr_size)
{
    int64_t start = rl_now_us(), deadline = start + timeout_ms * 1000LL;
    long rss0 = rss_kib();
    rd_kafka_message_t *msg;

    while (!caught_up(r)) {
        if (rl_now_us() > deadline) {
            snprintf(errstr, errstr_size,
                     "evidence topic '%s': not read to its end within %d ms "
                     "(%llu records so far)",
                     r->topic, timeout_ms, (unsigned long long)r->applied);
            return -1;
        }
        msg = rd_kafka_consumer_poll(r->rk, 100);
        if (!msg)
            continue;
        if (handle_message(r, msg) < 0) {
            snprintf(errstr, errstr_size, "evidence topic '%s': %s", r->topic,
                     rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            return -1;
        }
        rd_kafka_message_destroy(msg);
    }

    rl_info("evidence",
            "loaded %llu records (%zu keys, %llu invalid) from '%s' in "
            "%.1f ms; cache %.1f MiB, process RSS %+.1f MiB",
            (unsigned long long)r->applied, rl_evcache_count(r->cache),
            (unsigned long long)r->invalid, r->topic,
            (rl_now_us() - start) / 1000.0,
            rl_evcache_memory(r->cache) / 1048576.0,
            (rss_kib() - rss0) / 1024.0);
    return 0;
}

rl_evreader_t *rl_evreader_start(rl_loop_t *loop, const rl_config_t *conf,
                                 const rl_settings_t *settings,
                                 const char *bootstrap, rl_evcache_t *cache,
                                 int timeout_ms, char *errstr,
                                 size_t errstr_size)
{
    rl_evreader_t *r = rl_xcalloc(1, sizeof(*r));
    rd_kafka_conf_t *kconf;

    r->loop = loop;
    r->cache = cache;
    r->topic = rl_xstrdup(settings->evidence_topic);
    r->wakeup.rfd = r->wakeup.wfd = -1;
    rl_timer_init(&r->again, on_again, r);

    kconf = rl_kafka_conf_new(conf, settings, RL_CLIENT_EVIDENCE, bootstrap,
                              errstr, errstr_size);
    if (!kconf)
        goto fail;
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, errstr, errstr_size);
    if (!r->rk) {
        rd_kafka_conf_destroy(kconf);
        goto fail;
    }
    rd_kafka_poll_set_consumer(r->rk);
    r->queue = rd_kafka_queue_get_consumer(r->rk);

    if (assign_all(r, timeout_ms, errstr, errstr_size) < 0 ||
        load_initial(r, timeout_ms, errstr, errstr_size) < 0)
        goto fail;

    if (rl_kafka_wakeup_open(&r->wakeup, loop, r->queue, on_wakeup, r) < 0) {
        snprintf(errstr, errstr_size, "evidence reader: pipe: %s",
                 strerror(errno));
        goto fail;
    }
    /* Records that arrived before the pipe existed sent no wake-up. */
    rl_timer_start(loop, &r->again, 0);
    return r;

fail:
    rl_evreader_stop(r);
    return NULL;
}

uint64_t rl_evreader_applied(const rl_evreader_t *reader)
{
    return reader->applied;
}

void rl_evreader_stop(rl_evreader_t *r)
{
    if (!r)
        return;
    rl_timer_stop(r->loop, &r->again);
    if (r->queue) {
        rd_kafka_queue_io_event_enable(r->queue, -1, NULL, 0);
        rd_kafka_queue_destroy(r->queue);
    }
    rl_kafka_wakeup_close(&r->wakeup, r->loop);
    if (r->rk) {
        rd_kafka_consumer_close(r->rk);
        rd_kafka_destroy(r->rk);
    }
    free(r->parts);
    free(r->topic);
    free(r);
}
