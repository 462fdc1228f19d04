/*
 * ragline - the pipeline.
 *
 * A job is one input message on its way through the worker.  It holds
 * the librdkafka message itself (key, value and headers are produced
 * from it without copies) until the broker acknowledged the job's
 * answer or dead-letter record; then its ticket in the partition's
 * offset tracker is finished and the message released.
 *
 *   consume -> parse -> render -> backend --ok--> produce answer --ack--.
 *                |        |         |                    |            |
 *                +--------+---------+--fail--> produce dead letter --ack+
 *                                                                     |
 *                                          finish: track, store offset <
 */
#include "ragline/pipeline.h"
#include "ragline/arena.h"
#include "ragline/backend.h"
#include "ragline/breaker.h"
#include "ragline/buf.h"
#include "ragline/event.h"
#include "ragline/evidence.h"
#include "ragline/kafka.h"
#include "ragline/keyq.h"
#include "ragline/log.h"
#include "ragline/offsets.h"
#include "ragline/render.h"
#include "ragline/retry.h"
#include "ragline/template.h"

#include <errno.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAG "pipeline"

#define CONSUME_BUDGET     256  /**< messages per wake-up before yielding */
#define TICK_MS            100  /**< offset store and consumer poll period */
#define STALL_MAX_MS       1000 /**< unread input before pausing instead */
#define TRIM_EVERY_MS      1000 /**< free memory handed back this often */
#define TRIM_KEEP_BYTES    (4 << 20) /**< left at the top of the heap */
#define STATS_EVERY_MS     30000     /**< summary log line period */
#define STARTUP_TIMEOUT_MS 60000

/* One input partition, as assigned to this worker.  A revoked partition
 * stays alive, detached, until its last in-flight job let go of it. */
typedef struct part_s {
    int32_t id;
    int assigned;
    int refs; /**< jobs holding it, plus one while in the table */
    rl_offtrack_t *track;
    int64_t store_pos; /**< offset to store next; -1: nothing new */
    int inflight;      /**< its jobs not yet finished */
    int capped;        /**< over inflight.partition.max (hysteresis) */
    int revoking;      /**< revoked; waiting for its jobs to finish */
    int paused;        /**< as last told to librdkafka */
    int rewind;        /**< exactly-once: aborted; held until sought back */
    struct job_s *fifo_head, *fifo_tail; /**< exactly-once: offset order */
} part_t;

typedef enum {
    JOB_WAITING, /**< behind an earlier event of its ordering key */
    JOB_BACKEND, /**< with the backend, in backoff, or parked */
    JOB_ANSWER,  /**< answer produced, waiting for the broker */
    JOB_DLQ,     /**< dead-letter record produced, waiting */
} job_stage_t;

typedef struct job_s {
    rl_pipeline_t *pl;
    struct job_s *prev, *next; /**< every live job, for destroy */
    part_t *part;
    uint64_t ticket;
    rd_kafka_message_t *msg;
    char *id;   /**< the event's, once parsed */
    char *conv; /**< its conversation id */
    rl_render_stats_t stats;
    job_stage_t stage;
    int ordered;  /**< holds its ordering key in pl->keyq */
    int attempts; /**< backend attempts started */
    int last_status;
    int64_t first_attempt_ms;
    rl_timer_t backoff;   /**< until the next attempt */
    struct job_s *parked; /**< next in pl's parked FIFO */
    struct job_s *queued; /**< next in pl's backlog */
    int active;           /**< counted in pl->active */
    struct job_s *fifo;   /**< exactly-once: next job of its partition */
    struct job_s *fifo_prev;
    int ready; /**< exactly-once: its record is built */
    const char *out_topic;
    char *out_value; /**< exactly-once: the record, until produced */
    size_t out_len;
    rd_kafka_headers_t *out_hdrs;
    int64_t consumed_us;
    int64_t submitted_us;
    char last_error[200];
} job_t;

struct rl_pipeline_s {
    rl_loop_t *loop;
    const rl_settings_t *settings;

    rl_template_t *tpl;
    rl_evcache_t *cache;
    rl_evreader_t *evreader;
    rl_backend_t *backend;

    rd_kafka_t *consumer;
    rd_kafka_queue_t *cqueue;
    rl_wakeup_t cwake;
    rd_kafka_t *producer;
    rd_kafka_queue_t *pqueue;
    rl_wakeup_t pwake;

    part_t **parts; /**< indexed by partition id; NULL when unassigned */
    int nparts;
    int store_pending; /**< some part has a store_pos to store */

    job_t *jobs; /**< head of the live job list */
    int active;  /**< jobs started: at most inflight.max */
    job_t *backlog_head, *backlog_tail; /**< taken, not started yet */
    int backlog;
    size_t backlog_bytes; /**< backlog_cost() of the backlog */
    rl_keyq_t *keyq;      /**< ordering keys with an event in progress */
    rl_buf_t keybuf;      /**< an ordering key being built */

    rl_breaker_t *breaker;
    job_t *parked_head, *parked_tail; /**< waiting for the breaker */
    rl_timer_t probe;                 /**< the open breaker's next probe */
    int probing;                      /**< the probe request is out */
    rl_timer_t unpark;                /**< releases parked jobs */
    uint64_t rng;                     /**< backoff jitter */

    int txn_open; /**< exactly-once: a transaction has begun */
    int txn_dead; /**< exactly-once: a fatal error; commit nothing */
    int64_t txn_begun_ms;
    rl_timer_t rewind; /**< exactly-once: rewinds aborted partitions */

    rd_kafka_topic_partition_list_t *revoking; /**< deferred unassign */
    int revoking_cooperative;
    rl_timer_t revoke_deadline;
    rl_metrics_t metrics;
    rl_buf_t scratch;  /**< answer rendering, reused */
    rl_buf_t body;     /**< a request body being rendered; see send_attempt */
    rl_arena_t *arena; /**< the event being attempted is parsed into it */
    int arena_busy;

    int capped;           /**< backlog over its budget (hysteresis) */
    int stalled;          /**< capped: input not read, not paused (yet) */
    int64_t next_trim_ms; /**< when to hand free memory back */
    int64_t stalled_ms;   /**< when input stopped being read */
    int draining;         /**< shutdown requested: no new events */
    int closing;          /**< finish_shutdown() is running */
    int finished;
    int status;

    rl_timer_t again;    /**< resumes a consume cut short by its budget */
    rl_timer_t tick;     /**< periodic: offsets, consumer liveness */
    rl_timer_t deadline; /**< shutdown timeout */
    int64_t next_stats_ms;
};

static void finish_shutdown(rl_pipeline_t *pl);
static void stop_soon(rl_pipeline_t *pl);
static void job_attempt(job_t *job);
static void maybe_complete_revoke(rl_pipeline_t *pl);
static void eos_ready(job_t *job);
static void start_backlog(rl_pipeline_t *pl);
static void eos_drop_ready(part_t *part);

/* ------------------------------------------------------------------ */
/* Partitions and offsets                                              */

static part_t *part_lookup(rl_pipeline_t *pl, int32_t id)
{
    if (id < 0 || id >= pl->nparts)
        return NULL;
    return pl->parts[id];
}

static void part_release(part_t *part)
{
    if (--part->refs > 0)
        return;
    rl_offtrack_destroy(part->track);
    free(part);
}

static void part_attach(rl_pipeline_t *pl, int32_t id)
{
    part_t *part;

    if (id >= pl->nparts) {
        int n = id + 1;

        pl->parts = rl_xrealloc(pl->parts, (size_t)n * sizeof(*pl->parts));
        memset(pl->parts + pl->nparts, 0,
               (size_t)(n - pl->nparts) * sizeof(*pl->parts));
        pl->nparts = n;
    }
    if (pl->parts[id])
        return;
    part = rl_xcalloc(1, sizeof(*part));
    part->id = id;
    part->assigned = 1;
    part->refs = 1;
    part->track = rl_offtrack_new();
    part->store_pos = -1;
    pl->parts[id] = part;
}

static void part_detach(rl_pipeline_t *pl, int32_t id)
{
    part_t *part = part_lookup(pl, id);

    if (!part)
        return;
    pl->parts[id] = NULL;
    part->assigned = 0;
    if (pl->settings->exactly_once)
        eos_drop_ready(part);
    part_release(part);
}

/* Hands every new commit position to librdkafka's offset store; its
 * auto-commit (or an explicit commit) sends them to the broker. */
static void store_offsets(rl_pipeline_t *pl)
{
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;
    int i;

    if (!pl->store_pending || pl->settings->exactly_once)
        return;
    pl->store_pending = 0;
    list = rd_kafka_topic_partition_list_new(pl->nparts);
    for (i = 0; i < pl->nparts; i++) {
        part_t *part = pl->parts[i];

        if (!part || part->store_pos < 0)
            continue;
        rd_kafka_topic_partition_list_add(list, pl->settings->input_topic, i)
            ->offset = part->store_pos;
        part->store_pos = -1;
    }
    if (list->cnt > 0) {
        err = rd_kafka_offsets_store(pl->consumer, list);
        if (err)
            rl_warn(TAG, "storing offsets: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* ------------------------------------------------------------------ */
/* Flow control                                                        */

/* Updates a cap's flag: set at the cap, cleared at half of it, so that
 * the consumer does not flap (each resume costs a fetch round trip). */
static int hysteresis(int flag, int64_t count, int64_t cap)
{
    if (count >= cap)
        return 1;
    if (count <= cap / 2)
        return 0;
    return flag;
}

/*
 * Events taken while inflight.max events are active wait in a backlog,
 * and input pauses only when the backlog holds inflight.backlog.bytes.
 * Pausing is not free: librdkafka drops what it prefetched for the
 * partition, and a resumed partition's first fetch comes up to a second
 * later (librdkafka 2.0.2 serves it on its broker thread's next round).
 * Input resumes at half, so the other half keeps the backend busy
 * through that gap.  A budget in events would not do: with a small
 * inflight.max and a fast backend, 64 events last a few ms and the
 * worker idled through every gap (130 events/s at inflight.max 64).
 */
static size_t backlog_max(const rl_pipeline_t *pl)
{
    return pl->settings->backlog_bytes;
}

/* What a waiting event costs besides its value: the job, librdkafka's
 * message and key, counted so that tiny events cannot pile up by the
 * hundred thousand inside the byte budget. */
#define BACKLOG_EVENT_OVERHEAD 512

static size_t backlog_cost(const job_t *job)
{
    return job->msg->len + job->msg->key_len + BACKLOG_EVENT_OVERHEAD;
}

static void backlog_push(rl_pipeline_t *pl, job_t *job)
{
    if (pl->backlog_tail)
        pl->backlog_tail->queued = job;
    else
        pl->backlog_head = job;
    pl->backlog_tail = job;
    pl->backlog++;
    pl->backlog_bytes += backlog_cost(job);
    if (pl->backlog_bytes > pl->metrics.backlog_bytes_peak)
        pl->metrics.backlog_bytes_peak = pl->backlog_bytes;
}

/* Accounts for a job taken out of the backlog (unlinked by the caller). */
static void backlog_taken(rl_pipeline_t *pl, const job_t *job)
{
    pl->backlog--;
    pl->backlog_bytes -= backlog_cost(job);
}

/* An open breaker holds input back only while it holds events back:
 * with none parked there would be nothing to probe it with. */
static int breaker_holds(const rl_pipeline_t *pl)
{
    return rl_breaker_state(pl->breaker) != RL_BREAKER_CLOSED &&
           pl->parked_head;
}

static void add_part(rd_kafka_topic_partition_list_t **list,
                     const rl_pipeline_t *pl, int32_t id)
{
    if (!*list)
        *list = rd_kafka_topic_partition_list_new(pl->nparts);
    rd_kafka_topic_partition_list_add(*list, pl->settings->input_topic, id);
}

/* @returns 1 while the consumer is to be left unread (see below). */
static int input_stalled(const rl_pipeline_t *pl)
{
    return pl->stalled && pl->capped &&
           rl_loop_now_ms(pl->loop) - pl->stalled_ms < STALL_MAX_MS;
}

/*
 * At the backlog budget, input first only stops being read: librdkafka
 * keeps what it prefetched and stops fetching when its queue is full,
 * and reading resumes with no fetch lost.  A pause would drop the
 * prefetched messages and cost a second of refetching.  But rebalance
 * callbacks are served only when the consumer is read, so after
 * STALL_MAX_MS the partitions are paused and reading resumes.
 * @returns 1 while input is to be left unread rather than paused.
 */
static int stall_input(rl_pipeline_t *pl)
{
    if (!pl->stalled) {
        pl->stalled = 1;
        pl->stalled_ms = rl_loop_now_ms(pl->loop);
        pl->metrics.stalls++;
    }
    return input_stalled(pl);
}

/*
 * Pauses or resumes each assigned partition so that it consumes only if
 * nothing holds it back: shutdown, its revocation, an open breaker, the
 * global in-flight cap or its own.  Paused partitions stay assigned and
 * the consumer keeps polling, so the group membership holds.
 */
static void update_flow(rl_pipeline_t *pl)
{
    rd_kafka_topic_partition_list_t *pause = NULL, *resume = NULL;
    int hold, i;

    pl->capped = hysteresis(pl->capped, (int64_t)pl->backlog_bytes,
                            (int64_t)backlog_max(pl));
    hold =
        pl->draining || breaker_holds(pl) || (pl->capped && !stall_input(pl));
    for (i = 0; i < pl->nparts; i++) {
        part_t *part = pl->parts[i];
        int want;

        if (!part)
            continue;
        /* A cap of the partition's own, if any.  Without one the
         * partition must not pause on its count: that count includes
         * the backlog, and each pause makes librdkafka drop and fetch
         * again what it had prefetched. */
        part->capped = pl->settings->partition_inflight_max > 0 &&
                       hysteresis(part->capped, part->inflight,
                                  pl->settings->partition_inflight_max);
        want = hold || part->capped || part->revoking || part->rewind;
        if (want == part->paused)
            continue;
        part->paused = want;
        add_part(want ? &pause : &resume, pl, part->id);
        if (want && (pl->capped || part->capped) && !pl->draining)
            pl->metrics.pauses++;
    }
    if (pause) {
        rd_kafka_pause_partitions(pl->consumer, pause);
        rd_kafka_topic_partition_list_destroy(pause);
    }
    if (resume) {
        rd_kafka_resume_partitions(pl->consumer, resume);
        rd_kafka_topic_partition_list_destroy(resume);
    }
    if (pl->stalled && !pl->capped) {
        /* The consumer's queue is not empty, so no wake-up will come. */
        pl->stalled = 0;
        rl_timer_start(pl->loop, &pl->again, 0);
    }
}

/* ------------------------------------------------------------------ */
/* Jobs                                                                */

static void on_backoff(rl_loop_t *loop, rl_timer_t *timer, void *opaque);

static job_t *job_new(rl_pipeline_t *pl, part_t *part, uint64_t ticket,
                      rd_kafka_message_t *msg)
{
    job_t *job = rl_xcalloc(1, sizeof(*job));

    job->pl = pl;
    job->part = part;
    part->refs++;
    part->inflight++;
    job->ticket = ticket;
    job->msg = msg;
    job->consumed_us = rl_now_us();
    rl_timer_init(&job->backoff, on_backoff, job);
    if (pl->settings->exactly_once) {
        job->fifo_prev = part->fifo_tail;
        if (part->fifo_tail)
            part->fifo_tail->fifo = job;
        else
            part->fifo_head = job;
        part->fifo_tail = job;
    }
    job->next = pl->jobs;
    if (pl->jobs)
        pl->jobs->prev = job;
    pl->jobs = job;

    pl->metrics.consumed++;
    pl->metrics.inflight++;
    if (pl->metrics.inflight > pl->metrics.inflight_peak)
        pl->metrics.inflight_peak = pl->metrics.inflight;
    return job;
}

/* Only for jobs out of the parked FIFO and with no timer running. */
static void job_free(job_t *job)
{
    rl_pipeline_t *pl = job->pl;

    rl_timer_stop(pl->loop, &job->backoff);
    if (job->prev)
        job->prev->next = job->next;
    else
        pl->jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    pl->metrics.inflight--;
    job->part->inflight--;
    if (job->active)
        pl->active--;

    free(job->id);
    free(job->conv);
    json_decref(job->stats.missing_list);
    free(job->out_value);
    if (job->out_hdrs)
        rd_kafka_headers_destroy(job->out_hdrs);
    rd_kafka_message_destroy(job->msg);
    part_release(job->part);
    free(job);
}

/* The key events of one ordering group share: the partition, plus the
 * message key under ordering = key.  Returns 0 for an event that waits
 * for nothing (ordering = none, or no message key). */
static int ordering_key(rl_pipeline_t *pl, const job_t *job)
{
    const rd_kafka_message_t *m = job->msg;
    int32_t partition = m->partition;

    if (pl->settings->ordering == RL_ORDER_NONE ||
        (pl->settings->ordering == RL_ORDER_KEY && !m->key))
        return 0;
    rl_buf_reset(&pl->keybuf);
    rl_buf_append(&pl->keybuf, &partition, sizeof(partition));
    if (pl->settings->ordering == RL_ORDER_KEY)
        rl_buf_append(&pl->keybuf, m->key, m->key_len);
    return 1;
}

/* The job's record went to the producer: the next event of its key
 * may go to the backend (the producer keeps the order per partition). */
static void release_key(job_t *job)
{
    rl_pipeline_t *pl = job->pl;
    job_t *next;

    if (!job->ordered)
        return;
    job->ordered = 0;
    ordering_key(pl, job);
    next = rl_keyq_leave(pl->keyq, pl->keybuf.data, pl->keybuf.len);
    if (next)
        job_attempt(next);
}

/* The broker has the job's record: its offset may now be committed. */
static void job_finish(job_t *job)
{
    rl_pipeline_t *pl = job->pl;
    part_t *part = job->part;
    int64_t pos = rl_offtrack_done(part->track, job->ticket);

    if (pos >= 0 && part->assigned) {
        part->store_pos = pos;
        pl->store_pending = 1;
    }
    rl_hist_add(&pl->metrics.total_ms,
                (rl_now_us() - job->consumed_us) / 1000.0);
    release_key(job);
    job_free(job);
    start_backlog(pl);

    if (part->revoking)
        maybe_complete_revoke(pl);
    if (pl->draining && pl->metrics.inflight == 0)
        stop_soon(pl);
    else
        update_flow(pl);
}

/* The event's id for log lines; for an event that did not parse, what
 * can be read of it. */
static const char *job_id(const job_t *job, char *dst, size_t dst_size)
{
    if (job->id)
        return job->id;
    rl_event_peek_id(job->msg->payload, job->msg->len, dst, dst_size);
    return *dst ? dst : "(none)";
}

static void fatal(rl_pipeline_t *pl, const char *why)
{
    rl_error(TAG, "%s; stopping", why);
    pl->status = 1;
    pl->draining = 1;
    update_flow(pl);
    stop_soon(pl);
}

/* Produces one record keyed as the job's input; takes @p hdrs and, if
 * @p owned, @p value.  The job is the delivery report's opaque. */
static rd_kafka_resp_err_t produce(job_t *job, const char *topic, void *value,
                                   size_t len, int owned,
                                   rd_kafka_headers_t *hdrs)
{
    rd_kafka_resp_err_t err;

    err = rd_kafka_producev(
        job->pl->producer, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY(job->msg->key, job->msg->key_len),
        RD_KAFKA_V_VALUE(value, len),
        RD_KAFKA_V_MSGFLAGS(owned ? RD_KAFKA_MSG_F_FREE : 0),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(job), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        if (owned)
            free(value);
    }
    return err;
}

/*
 * Hands the job's record over.  At-least-once: to the producer now; the
 * delivery report finishes the job.  Exactly-once: the record waits in
 * the job until every earlier event of its partition has one, then goes
 * out in the open transaction (eos_ready()).  Takes @p hdrs and, if
 * @p owned, @p value; returns 0 or the producer's error.
 */
static rd_kafka_resp_err_t emit(job_t *job, const char *topic, void *value,
                                size_t len, int owned, rd_kafka_headers_t *hdrs)
{
    rd_kafka_resp_err_t err;

    if (!job->pl->settings->exactly_once) {
        err = produce(job, topic, value, len, owned, hdrs);
        if (!err)
            release_key(job);
        return err;
    }
    job->out_topic = topic;
    job->out_value = owned ? value : rl_xmemdup(value, len);
    job->out_len = len;
    job->out_hdrs = hdrs;
    release_key(job);
    eos_ready(job);
    return RD_KAFKA_RESP_ERR_NO_ERROR;
}

static rd_kafka_headers_t *input_headers(const job_t *job)
{
    rd_kafka_headers_t *hdrs = NULL;

    /* The message keeps ownership of what this returns. */
    if (rd_kafka_message_headers(job->msg, &hdrs) == 0 && hdrs)
        return rd_kafka_headers_copy(hdrs);
    return rd_kafka_headers_new(8);
}

static void add_header(rd_kafka_headers_t *hdrs, const char *name,
                       const char *value)
{
    rd_kafka_header_add(hdrs, name, -1, value, -1);
}

static void add_header_num(rd_kafka_headers_t *hdrs, const char *name,
                           long long value)
{
    char num[32];

    snprintf(num, sizeof(num), "%lld", value);
    add_header(hdrs, name, num);
}

/*
 * Sends the job's input, as it came, to the dead-letter topic with
 * headers saying why.  If even that cannot be produced the worker stops
 * without storing the offset: the event is consumed again on restart.
 */
static void dead_letter(job_t *job, rl_errclass_t cls, const char *why)
{
    rl_pipeline_t *pl = job->pl;
    const rd_kafka_message_t *m = job->msg;
    rd_kafka_headers_t *hdrs = input_headers(job);
    rd_kafka_resp_err_t err;
    char id[128];

    rl_warn(TAG, "%s [%d] offset %lld id '%s': %s: %s; dead-lettered",
            rd_kafka_topic_name(m->rkt), (int)m->partition,
            (long long)m->offset, job_id(job, id, sizeof(id)),
            rl_errclass_name(cls), why);

    add_header(hdrs, "ragline.error.class", rl_errclass_name(cls));
    add_header(hdrs, "ragline.error.message", why);
    add_header(hdrs, "ragline.source.topic", rd_kafka_topic_name(m->rkt));
    add_header_num(hdrs, "ragline.source.partition", m->partition);
    add_header_num(hdrs, "ragline.source.offset", m->offset);
    if (job->attempts > 0) {
        add_header_num(hdrs, "ragline.error.attempts", job->attempts);
        add_header_num(hdrs, "ragline.error.status", job->last_status);
    }

    pl->metrics.by_class[cls]++;
    job->stage = JOB_DLQ;
    err = emit(job, pl->settings->dlq_topic, m->payload, m->len, 0, hdrs);
    if (err) {
        char line[512];

        snprintf(line, sizeof(line),
                 "cannot produce the dead-letter record of %s [%d] offset "
                 "%lld to '%s': %s",
                 rd_kafka_topic_name(m->rkt), (int)m->partition,
                 (long long)m->offset, pl->settings->dlq_topic,
                 rd_kafka_err2str(err));
        job_free(job);
        fatal(pl, line);
    }
}

static void produce_answer(job_t *job, const rl_backend_result_t *res)
{
    rl_pipeline_t *pl = job->pl;
    const rd_kafka_message_t *m = job->msg;
    rl_answer_t a;
    rd_kafka_resp_err_t err;
    char *value;
    size_t len;

    memset(&a, 0, sizeof(a));
    a.id = job->id;
    a.conversation_id = job->conv;
    a.answer = res->text;
    a.answer_len = res->text_len;
    a.backend = rl_backend_name(pl->backend);
    a.model = res->model ? res->model : rl_backend_model(pl->backend);
    a.finish_reason = res->finish_reason;
    a.prompt_tokens = res->prompt_tokens;
    a.completion_tokens = res->completion_tokens;
    a.total_tokens = res->total_tokens;
    a.evidence = &job->stats;
    a.queued_ms = (job->submitted_us - job->consumed_us) / 1000.0;
    a.backend_ms = res->elapsed_ms;
    a.total_ms = (rl_now_us() - job->consumed_us) / 1000.0;
    a.topic = rd_kafka_topic_name(m->rkt);
    a.partition = m->partition;
    a.offset = m->offset;

    rl_buf_reset(&pl->scratch);
    rl_answer_write(&pl->scratch, &a);
    value = rl_xmemdup(pl->scratch.data, pl->scratch.len);
    len = pl->scratch.len;

    job->stage = JOB_ANSWER;
    err = emit(job, pl->settings->output_topic, value, len, 1,
               input_headers(job));
    if (err)
        dead_letter(job, RL_ERR_PRODUCE, rd_kafka_err2str(err));
}

/* ---- the backend: attempts, retries, the breaker ---- */

static void park(job_t *job)
{
    rl_pipeline_t *pl = job->pl;

    job->parked = NULL;
    if (pl->parked_tail)
        pl->parked_tail->parked = job;
    else
        pl->parked_head = job;
    pl->parked_tail = job;
}

static job_t *unpark_one(rl_pipeline_t *pl)
{
    job_t *job = pl->parked_head;

    if (job) {
        pl->parked_head = job->parked;
        if (!pl->parked_head)
            pl->parked_tail = NULL;
        job->parked = NULL;
    }
    return job;
}

/* The backend is back: every parked job starts again, with a fresh
 * deadline; the attempts that failed while the breaker was open were
 * not counted against it. */
static void on_unpark(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_pipeline_t *pl = opaque;
    job_t *job;

    while (rl_breaker_state(pl->breaker) == RL_BREAKER_CLOSED &&
           (job = unpark_one(pl)) != NULL) {
        job->first_attempt_ms = rl_loop_now_ms(loop);
        job_attempt(job);
    }
    update_flow(pl);
}

static void on_probe_done(void *opaque, const rl_backend_result_t *res)
{
    rl_pipeline_t *pl = opaque;
    rl_breaker_outcome_t outcome = res->ok || res->http_status == 429
                                       ? RL_BREAKER_SUCCESS
                                   : res->retriable ? RL_BREAKER_FAILURE
                                                    : RL_BREAKER_PERMANENT;

    pl->probing = 0;
    rl_breaker_probe_done(pl->breaker, outcome, res->error,
                          rl_loop_now_ms(pl->loop));
}

/* Sends the probe the breaker granted (HALF_OPEN). */
static void send_probe(rl_pipeline_t *pl)
{
    rl_backend_req_t req;

    memset(&req, 0, sizeof(req));
    req.prompt = "ping";
    req.prompt_len = 4;
    req.recommended = "pong";
    req.recommended_len = 4;
    req.request_id = "ragline-breaker-probe";
    pl->probing = 1;
    if (rl_backend_submit(pl->backend, &req, on_probe_done, pl) < 0) {
        pl->probing = 0;
        rl_breaker_probe_done(pl->breaker, RL_BREAKER_FAILURE,
                              "the probe could not start",
                              rl_loop_now_ms(pl->loop));
    }
}

/*
 * The open breaker's wait is over: probe the backend with a request of
 * its own, a one-word prompt.  Not with a parked event: an event whose
 * every call hangs or fails would keep the breaker open for all.
 */
static void on_probe(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_pipeline_t *pl = opaque;
    rl_breaker_verdict_t verdict;

    if (pl->probing || pl->finished)
        return;
    verdict = rl_breaker_allow(pl->breaker, rl_loop_now_ms(loop));
    if (verdict == RL_BREAKER_GO) {
        rl_timer_start(loop, &pl->unpark, 0);
        return;
    }
    if (verdict == RL_BREAKER_WAIT) {
        rl_timer_start(loop, &pl->probe,
                       rl_breaker_next_probe_ms(pl->breaker) -
                           rl_loop_now_ms(loop));
        return;
    }
    send_probe(pl);
}

static void on_breaker_change(void *opaque, rl_breaker_state_t from,
                              rl_breaker_state_t to, const char *why)
{
    rl_pipeline_t *pl = opaque;
    int64_t next;

    if (to == RL_BREAKER_CLOSED)
        rl_notice(TAG, "%s", why);
    else if (from == RL_BREAKER_CLOSED)
        rl_warn(TAG, "%s", why);
    else
        rl_info(TAG, "%s", why);

    /* The breaker is mid-call: act from timers, not from here. */
    if (to == RL_BREAKER_CLOSED) {
        rl_timer_stop(pl->loop, &pl->probe);
        rl_timer_start(pl->loop, &pl->unpark, 0);
    } else if (to == RL_BREAKER_OPEN) {
        next = rl_breaker_next_probe_ms(pl->breaker) - rl_loop_now_ms(pl->loop);
        rl_timer_start(pl->loop, &pl->probe, next);
    }
}

static void on_backend_done(void *opaque, const rl_backend_result_t *res);

/*
 * Parses the job's message.  The tree is not kept between attempts (a
 * parsed 10 KB event takes ~25 KB, and thousands may wait): each attempt
 * parses into the pipeline's arena, reset each time, and the job keeps
 * only its ids.  Failures go to the dead letters.
 */
static int job_parse(job_t *job, rl_event_t *ev)
{
    rl_pipeline_t *pl = job->pl;
    const rd_kafka_message_t *m = job->msg;
    rl_arena_t *arena = NULL;
    rl_errclass_t cls;
    char why[512];

    /* Only one tree at a time lives in the shared arena. */
    if (!pl->arena_busy) {
        rl_arena_reset(pl->arena);
        arena = pl->arena;
    }
    cls = rl_event_parse_in(ev, arena, m->payload, m->len, m->key, m->key_len,
                            &pl->settings->limits, why, sizeof(why));
    if (cls != RL_ERR_NONE) {
        dead_letter(job, cls, why);
        return -1;
    }
    if (ev->arena == pl->arena)
        pl->arena_busy = 1;
    if (!job->id) {
        job->id = rl_xstrdup(ev->id);
        job->conv = rl_xstrdup(ev->conversation_id);
    }
    return 0;
}

/* Takes the pipeline, not the job: the attempt may have freed the job
 * (a dead letter that could not be produced). */
static void job_unparse(rl_pipeline_t *pl, rl_event_t *ev)
{
    if (ev->arena && ev->arena == pl->arena)
        pl->arena_busy = 0;
    rl_event_clear(ev);
}

/* Renders and submits one attempt of a parsed event. */
static void send_attempt(job_t *job, const rl_event_t *ev)
{
    rl_pipeline_t *pl = job->pl;
    rl_backend_req_t req;
    char why[512];

    /* Rendered again for each attempt rather than kept, like the tree. */
    json_array_clear(job->stats.missing_list);
    job->stats.queries = job->stats.found = job->stats.missing = 0;
    job->stats.inline_turns = 0;
    /* Rendered escaped, straight into the request body. */
    rl_backend_body_start(pl->backend, &pl->body);
    if (rl_render_escaped(pl->tpl, &ev->prompt, pl->cache, &pl->body,
                          &job->stats, why, sizeof(why)) < 0) {
        dead_letter(job, RL_ERR_RENDER, why);
        return;
    }

    memset(&req, 0, sizeof(req));
    req.body = &pl->body;
    req.recommended = ev->prompt.recommended;
    req.recommended_len = ev->prompt.recommended_len;
    req.request_id = job->id;
    if (job->attempts++ == 0) {
        job->first_attempt_ms = rl_loop_now_ms(pl->loop);
        job->submitted_us = rl_now_us();
        pl->metrics.evidence_missing += job->stats.missing;
    }
    if (rl_backend_submit(pl->backend, &req, on_backend_done, job) < 0)
        dead_letter(job, RL_ERR_BACKEND, "the backend call could not start");
}

/* One attempt: ask the breaker; then parse (unless @p parsed already
 * holds the event), render and submit. */
static void attempt(job_t *job, const rl_event_t *parsed)
{
    rl_pipeline_t *pl = job->pl;
    rl_breaker_verdict_t verdict =
        rl_breaker_allow(pl->breaker, rl_loop_now_ms(pl->loop));
    rl_event_t ev;

    job->stage = JOB_BACKEND;
    if (verdict != RL_BREAKER_GO) {
        park(job);
        update_flow(pl);
        /* The breaker probes with a request of its own, not this event. */
        if (verdict == RL_BREAKER_PROBE)
            send_probe(pl);
        return;
    }
    if (parsed) {
        send_attempt(job, parsed);
        return;
    }
    if (job_parse(job, &ev) < 0)
        return;
    send_attempt(job, &ev);
    job_unparse(pl, &ev);
}

static void job_attempt(job_t *job)
{
    attempt(job, NULL);
}

static void on_backoff(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    job_attempt(opaque);
}

/* A failed attempt: retry after a backoff, park while the backend is
 * down as a whole, or give up to the dead letters. */
static void retry_or_give_up(job_t *job, const rl_backend_result_t *res)
{
    rl_pipeline_t *pl = job->pl;
    int64_t now = rl_loop_now_ms(pl->loop), delay;
    rl_retry_failure_t f;
    char reason[160], why[512];

    job->last_status = res->http_status;
    snprintf(job->last_error, sizeof(job->last_error), "%s",
             res->error ? res->error : "failed");
    if (res->retriable && rl_breaker_state(pl->breaker) != RL_BREAKER_CLOSED) {
        job->attempts--; /* the backend's failure, not the event's */
        park(job);
        update_flow(pl);
        return;
    }

    f.attempt = job->attempts;
    f.retriable = res->retriable;
    f.http_status = res->http_status;
    f.retry_after_ms = res->retry_after_ms;
    f.elapsed_ms = now - job->first_attempt_ms;
    delay = rl_retry_next_delay(&pl->settings->retry, &f, &pl->rng, reason,
                                sizeof(reason));
    if (delay >= 0) {
        pl->metrics.retries++;
        rl_timer_start(pl->loop, &job->backoff, delay);
        return;
    }
    pl->metrics.backend_failed++;
    snprintf(why, sizeof(why), "%s; last: %s", reason, job->last_error);
    dead_letter(job, RL_ERR_BACKEND, why);
}

static void on_backend_done(void *opaque, const rl_backend_result_t *res)
{
    job_t *job = opaque;
    rl_pipeline_t *pl = job->pl;
    int64_t now = rl_loop_now_ms(pl->loop);
    rl_breaker_outcome_t outcome = res->ok          ? RL_BREAKER_SUCCESS
                                   : res->retriable ? RL_BREAKER_FAILURE
                                                    : RL_BREAKER_PERMANENT;

    /* A 429 is a live backend asking us to slow down, which the retry
     * backoff (and its Retry-After) does; opening the breaker on it
     * would stall all input on a partial rate limit. */
    if (res->http_status == 429)
        outcome = RL_BREAKER_PERMANENT;

    rl_hist_add(&pl->metrics.backend_ms, res->elapsed_ms);
    rl_breaker_record(pl->breaker, outcome, res->error, now);
    if (res->ok)
        produce_answer(job, res);
    else
        retry_or_give_up(job, res);
}

/* Parse (invalid events go to the dead letters at once), then wait for
 * the ordering key or go to the backend. */
static void job_start(job_t *job)
{
    rl_pipeline_t *pl = job->pl;
    rl_event_t ev;

    if (job_parse(job, &ev) < 0)
        return;
    job->stats.missing_list = json_array();

    if (ordering_key(pl, job)) {
        job->ordered = 1;
        if (!rl_keyq_enter(pl->keyq, pl->keybuf.data, pl->keybuf.len, job)) {
            job->stage = JOB_WAITING;
            job_unparse(pl, &ev);
            return;
        }
    }
    attempt(job, &ev);
    job_unparse(pl, &ev);
}

static void job_begin(job_t *job)
{
    rl_pipeline_t *pl = job->pl;

    job->active = 1;
    if (++pl->active > (int)pl->metrics.active_peak)
        pl->metrics.active_peak = (uint64_t)pl->active;
    job_start(job);
}

/* Unlinks a job that never became ready from its partition's
 * exactly-once FIFO. */
static void fifo_unlink(job_t *job)
{
    part_t *part = job->part;

    if (!job->pl->settings->exactly_once || !part->assigned)
        return;
    if (job->fifo_prev)
        job->fifo_prev->fifo = job->fifo;
    else
        part->fifo_head = job->fifo;
    if (job->fifo)
        job->fifo->fifo_prev = job->fifo_prev;
    else
        part->fifo_tail = job->fifo_prev;
}

/*
 * Drops the backlog events of @p part (NULL: of every partition)
 * unfinished: nothing was done for them yet, and their offsets cannot
 * be committed before them, so they are consumed again.
 */
static void drop_backlog(rl_pipeline_t *pl, const part_t *part)
{
    job_t **link = &pl->backlog_head, *last = NULL;

    while (*link) {
        job_t *job = *link;

        if (part && job->part != part) {
            last = job;
            link = &job->queued;
            continue;
        }
        *link = job->queued;
        backlog_taken(pl, job);
        fifo_unlink(job);
        job_free(job);
    }
    pl->backlog_tail = last;
}

/* Starts backlog events while there is room.  One whose partition was
 * taken away meanwhile is dropped unfinished: it is consumed again. */
static void start_backlog(rl_pipeline_t *pl)
{
    while (pl->backlog_head && pl->active < pl->settings->inflight_max) {
        job_t *job = pl->backlog_head;

        pl->backlog_head = job->queued;
        if (!pl->backlog_head)
            pl->backlog_tail = NULL;
        backlog_taken(pl, job);
        if (job->part->assigned)
            job_begin(job);
        else
            job_free(job);
    }
}

/* ------------------------------------------------------------------ */
/* Exactly-once                                                        */

/*
 * Records go out in offset order per partition, each transaction with
 * the offsets of the records it holds (KIP-447), so a transaction
 * always covers a contiguous prefix of each partition however backend
 * calls overlap.  An event whose partition was revoked or rewound while
 * it was in flight is dropped at the end: the partition's next owner,
 * or this worker after the rewind, consumes it again.
 */

#define TXN_TIMEOUT_MS    30000
#define REWIND_TIMEOUT_MS 5000 /**< each blocking call of a rewind */
#define REWIND_RETRY_MS   1000 /**< after a rewind that did not finish */
#define GROUP_SETTLE_MS   3000 /**< longest wait for a rejoin to finish */

/* Frees the jobs of a detached partition whose records were built but
 * not produced; the others are dropped when their records are built. */
static void eos_drop_ready(part_t *part)
{
    job_t *job = part->fifo_head, *next;

    part->fifo_head = part->fifo_tail = NULL;
    for (; job; job = next) {
        next = job->fifo;
        if (job->ready)
            job_free(job);
    }
}

/* Fatal: fenced by a newer instance, or the producer is unusable. */
static void eos_fatal(rl_pipeline_t *pl, const char *what,
                      const rd_kafka_error_t *error)
{
    char line[512];

    snprintf(line, sizeof(line), "exactly-once: %s: %s", what,
             rd_kafka_error_string(error));
    pl->txn_dead = 1;
    fatal(pl, line);
}

/* Aborts the open transaction, retrying what librdkafka calls
 * retriable.  @returns 0, or -1 when the worker is stopping. */
static int eos_abort_txn(rl_pipeline_t *pl)
{
    rd_kafka_error_t *error;
    int tries;

    pl->txn_open = 0;
    for (tries = 1;; tries++) {
        error = rd_kafka_abort_transaction(pl->producer, TXN_TIMEOUT_MS);
        if (!error)
            return 0;
        if (!rd_kafka_error_is_retriable(error) || tries == 3)
            break;
        rl_info(TAG, "exactly-once: abort: %s; retrying",
                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    eos_fatal(pl, "abort", error);
    rd_kafka_error_destroy(error);
    return -1;
}

/*
 * After an abort no partition may consume again before it is sought
 * back to its committed offset: its fetch position is past the events
 * whose records were just discarded.  So each assigned partition gets a
 * fresh offset tracker (the jobs of the old one are dropped as they
 * end) and is paused until on_rewind() has sought it.  Its pause state
 * is carried over, so that update_flow() stays in step with librdkafka.
 * A partition being revoked is let go at once: its next owner starts
 * from the committed offset, and what it still has in flight must not
 * move that offset past the aborted records.
 */
static void eos_forget_progress(rl_pipeline_t *pl)
{
    int i, paused;

    for (i = 0; i < pl->nparts; i++) {
        part_t *part = pl->parts[i];

        if (!part)
            continue;
        if (part->revoking) {
            part_detach(pl, i);
            continue;
        }
        paused = part->paused;
        part_detach(pl, i);
        part_attach(pl, i);
        pl->parts[i]->paused = paused;
        pl->parts[i]->rewind = 1;
    }
    maybe_complete_revoke(pl);
    update_flow(pl);
}

/* Whether the group's generation moved on under the transaction: the
 * broker refused its offsets because this member was rebalanced, timed
 * out or replaced.  Only a producer fenced by a newer instance with the
 * same instance.id is fatal, and librdkafka reports that as fatal. */
static int eos_group_moved(const rd_kafka_error_t *error)
{
    rd_kafka_resp_err_t code = rd_kafka_error_code(error);

    return code == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
           code == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID ||
           code == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

/*
 * Aborts the open transaction and has every assigned partition rewound
 * to its committed offset, from a timer: never from inside a librdkafka
 * callback, and never blocking on a group that is rebalancing.
 *
 * When the group moved on (@p settle), the rewind waits for the next
 * assignment callback, or GROUP_SETTLE_MS if none comes (librdkafka
 * calls it, with no partitions, even when a rebalance changes nothing
 * here).  Until the consumer has rejoined, its group metadata would get
 * every new transaction refused the same way; consuming meanwhile would
 * only call the backend for answers that are thrown away.
 */
static void eos_abort(rl_pipeline_t *pl, const char *why, int settle)
{
    rl_warn(TAG, "exactly-once: aborting the transaction: %s%s", why,
            settle ? "; input held until the group settles" : "");
    if (eos_abort_txn(pl) < 0)
        return;
    eos_forget_progress(pl);
    rl_timer_start(pl->loop, &pl->rewind, settle ? GROUP_SETTLE_MS : 0);
}

/* An assignment callback ran: the group has settled for now, so a
 * rewind that waits for it may go ahead. */
static void eos_settled(rl_pipeline_t *pl)
{
    if (rl_timer_active(&pl->rewind))
        rl_timer_start(pl->loop, &pl->rewind, 0);
}

/* The partitions waiting for a rewind, or NULL. */
static rd_kafka_topic_partition_list_t *eos_rewind_list(rl_pipeline_t *pl)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    int i;

    for (i = 0; i < pl->nparts; i++)
        if (pl->parts[i] && pl->parts[i]->rewind)
            add_part(&list, pl, i);
    return list;
}

/* Seeks the partitions of @p list whose committed offset was read;
 * clears the rewind of each one sought. */
static void eos_seek(rl_pipeline_t *pl, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_topic_partition_list_t *seek;
    rd_kafka_error_t *error;
    int i;

    seek = rd_kafka_topic_partition_list_new(list->cnt);
    for (i = 0; i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];

        if (tp->err) {
            rl_warn(TAG, "exactly-once: committed offset of %s [%d]: %s",
                    tp->topic, (int)tp->partition, rd_kafka_err2str(tp->err));
            continue;
        }
        rd_kafka_topic_partition_list_add(seek, tp->topic, tp->partition)
            ->offset = tp->offset < 0 ? RD_KAFKA_OFFSET_BEGINNING : tp->offset;
    }
    if (seek->cnt == 0) {
        rd_kafka_topic_partition_list_destroy(seek);
        return;
    }
    error = rd_kafka_seek_partitions(pl->consumer, seek, REWIND_TIMEOUT_MS);
    if (error) {
        rl_warn(TAG, "exactly-once: rewind: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        rd_kafka_topic_partition_list_destroy(seek);
        return;
    }
    for (i = 0; i < seek->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &seek->elems[i];
        part_t *part = part_lookup(pl, tp->partition);

        if (tp->err)
            rl_warn(TAG, "exactly-once: rewind of %s [%d]: %s", tp->topic,
                    (int)tp->partition, rd_kafka_err2str(tp->err));
        else if (part)
            part->rewind = 0;
    }
    rd_kafka_topic_partition_list_destroy(seek);
}

/*
 * Seeks the aborted partitions back to their committed offsets, then
 * lets them consume.  Neither step failing is a reason to stop: the
 * group may be rebalancing (the coordinator moving, the partition just
 * lost).  A partition that could not be rewound stays paused, so it
 * never consumes from the wrong place, and is tried again shortly; if
 * it was lost meanwhile, the rebalance callback frees it and its new
 * assignment starts from the committed offset anyway.
 */
static void on_rewind(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_pipeline_t *pl = opaque;
    rd_kafka_topic_partition_list_t *list;
    rd_kafka_resp_err_t err;

    if (pl->closing || pl->finished)
        return;
    list = eos_rewind_list(pl);
    if (!list)
        return;
    err = rd_kafka_committed(pl->consumer, list, REWIND_TIMEOUT_MS);
    if (err)
        rl_warn(TAG,
                "exactly-once: reading the committed offsets to rewind "
                "to: %s; trying again",
                rd_kafka_err2str(err));
    else
        eos_seek(pl, list);
    rd_kafka_topic_partition_list_destroy(list);

    list = eos_rewind_list(pl);
    if (list) {
        rd_kafka_topic_partition_list_destroy(list);
        rl_timer_start(loop, &pl->rewind, REWIND_RETRY_MS);
    } else {
        rl_info(TAG, "exactly-once: rewound to the committed offsets");
    }
    update_flow(pl);
}

/*
 * Runs one transactional call's error through librdkafka's classes.
 * @returns 0 when done, 1 to retry the same call, -1 when the
 *          transaction was aborted (or the worker is stopping).
 */
static int eos_check(rl_pipeline_t *pl, rd_kafka_error_t *error,
                     const char *what)
{
    if (!error)
        return 0;
    if (rd_kafka_error_is_retriable(error) && !rd_kafka_error_is_fatal(error)) {
        rl_info(TAG, "exactly-once: %s: %s; retrying", what,
                rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        return 1;
    }
    if (rd_kafka_error_txn_requires_abort(error) &&
        !rd_kafka_error_is_fatal(error))
        eos_abort(pl, rd_kafka_error_string(error), eos_group_moved(error));
    else
        eos_fatal(pl, what, error);
    rd_kafka_error_destroy(error);
    return -1;
}

static int eos_begin(rl_pipeline_t *pl)
{
    if (pl->txn_open)
        return 0;
    if (pl->txn_dead ||
        eos_check(pl, rd_kafka_begin_transaction(pl->producer), "begin") < 0)
        return -1;
    pl->txn_open = 1;
    pl->txn_begun_ms = rl_loop_now_ms(pl->loop);
    return 0;
}

/* Produces one built record into the transaction and finishes its job. */
static void eos_produce(job_t *job)
{
    rl_pipeline_t *pl = job->pl;
    part_t *part = job->part;
    rd_kafka_resp_err_t err;
    int64_t pos;

    if (eos_begin(pl) < 0) {
        job_free(job);
        return;
    }
    err = rd_kafka_producev(pl->producer, RD_KAFKA_V_TOPIC(job->out_topic),
                            RD_KAFKA_V_KEY(job->msg->key, job->msg->key_len),
                            RD_KAFKA_V_VALUE(job->out_value, job->out_len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                            RD_KAFKA_V_HEADERS(job->out_hdrs), RD_KAFKA_V_END);
    if (err) {
        job_free(job); /* frees the record and headers it still owns */
        eos_abort(pl, rd_kafka_err2str(err), 0);
        return;
    }
    job->out_value = NULL; /* the producer's now */
    job->out_hdrs = NULL;

    if (job->stage == JOB_ANSWER)
        pl->metrics.answered++;
    else
        pl->metrics.dead_lettered++;
    pos = rl_offtrack_done(part->track, job->ticket);
    if (pos >= 0)
        part->store_pos = pos;
    rl_hist_add(&pl->metrics.total_ms,
                (rl_now_us() - job->consumed_us) / 1000.0);
    job_free(job);
}

/* Produces the partition's built records that have no gap before them. */
static void eos_flush_part(rl_pipeline_t *pl, part_t *part)
{
    part->refs++; /* an abort on the way may detach it */
    while (part->assigned && part->fifo_head && part->fifo_head->ready) {
        job_t *job = part->fifo_head;

        part->fifo_head = job->fifo;
        if (part->fifo_head)
            part->fifo_head->fifo_prev = NULL;
        else
            part->fifo_tail = NULL;
        eos_produce(job);
    }
    part_release(part);
}

static void eos_ready(job_t *job)
{
    rl_pipeline_t *pl = job->pl;
    part_t *part = job->part;

    if (!part->assigned) {
        job_free(job);
    } else {
        job->ready = 1;
        eos_flush_part(pl, part);
    }
    start_backlog(pl);
    if (pl->draining && pl->metrics.inflight == 0)
        stop_soon(pl);
    else
        update_flow(pl);
}

/*
 * Commits the open transaction with the consumer positions of what it
 * holds.  @returns 0 when committed (or nothing was open), -1 when the
 * transaction was aborted or the worker is stopping.
 */
static int eos_commit(rl_pipeline_t *pl)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_consumer_group_metadata_t *cgmd;
    int i, r;

    if (!pl->txn_open || pl->txn_dead)
        return pl->txn_dead ? -1 : 0;
    for (i = 0; i < pl->nparts; i++)
        if (pl->parts[i] && pl->parts[i]->store_pos >= 0) {
            add_part(&list, pl, i);
            list->elems[list->cnt - 1].offset = pl->parts[i]->store_pos;
        }

    if (list) {
        cgmd = rd_kafka_consumer_group_metadata(pl->consumer);
        do {
            r = eos_check(pl,
                          rd_kafka_send_offsets_to_transaction(
                              pl->producer, list, cgmd, TXN_TIMEOUT_MS),
                          "send offsets");
        } while (r == 1);
        rd_kafka_consumer_group_metadata_destroy(cgmd);
        rd_kafka_topic_partition_list_destroy(list);
        if (r < 0)
            return -1;
    }
    do {
        r = eos_check(pl,
                      rd_kafka_commit_transaction(pl->producer, TXN_TIMEOUT_MS),
                      "commit");
    } while (r == 1);
    if (r < 0)
        return -1;

    pl->txn_open = 0;
    for (i = 0; i < pl->nparts; i++)
        if (pl->parts[i])
            pl->parts[i]->store_pos = -1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* The producer                                                        */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *rec,
                        void *opaque)
{
    job_t *job = rec->_private;
    rl_pipeline_t *pl = opaque;
    char line[512];

    /* Exactly-once records have no job: a failure fails the commit. */
    if (!job) {
        if (rec->err)
            rl_warn(TAG, "exactly-once: record to '%s' failed: %s",
                    rd_kafka_topic_name(rec->rkt), rd_kafka_err2str(rec->err));
        return;
    }
    if (!rec->err) {
        if (job->stage == JOB_ANSWER)
            pl->metrics.answered++;
        else
            pl->metrics.dead_lettered++;
        job_finish(job);
        return;
    }

    if (job->stage == JOB_ANSWER) {
        snprintf(line, sizeof(line), "answer refused by '%s': %s",
                 rd_kafka_topic_name(rec->rkt), rd_kafka_err2str(rec->err));
        dead_letter(job, RL_ERR_PRODUCE, line);
        return;
    }
    snprintf(line, sizeof(line),
             "dead-letter record of %s [%d] offset %lld refused by '%s': %s",
             rd_kafka_topic_name(job->msg->rkt), (int)job->msg->partition,
             (long long)job->msg->offset, rd_kafka_topic_name(rec->rkt),
             rd_kafka_err2str(rec->err));
    job_free(job);
    fatal(pl, line);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason,
                           void *opaque)
{
    rl_pipeline_t *pl = opaque;
    char line[512];

    if (err != RD_KAFKA_RESP_ERR__FATAL) {
        rl_warn(TAG, "%s: %s", rd_kafka_name(rk), reason);
        return;
    }
    rd_kafka_fatal_error(rk, line, sizeof(line));
    fatal(pl, line);
}

static void serve_producer(rl_pipeline_t *pl)
{
    rl_kafka_wakeup_clear(&pl->pwake);
    while (rd_kafka_poll(pl->producer, 0) > 0)
        ;
}

static void on_producer_wakeup(rl_loop_t *loop, int fd, int events,
                               void *opaque)
{
    serve_producer(opaque);
}

/* ------------------------------------------------------------------ */
/* The consumer                                                        */

static void assign(rl_pipeline_t *pl, rd_kafka_t *rk, int cooperative,
                   rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_error_t *error = NULL;
    rd_kafka_resp_err_t err = 0;
    int i;

    for (i = 0; i < parts->cnt; i++)
        part_attach(pl, parts->elems[i].partition);
    if (cooperative)
        error = rd_kafka_incremental_assign(rk, parts);
    else
        err = rd_kafka_assign(rk, parts);
    if (error) {
        rl_error(TAG, "assign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    } else if (err) {
        rl_error(TAG, "assign: %s", rd_kafka_err2str(err));
    }
    /* librdkafka 2.0.2 can keep an application pause across unassign
     * and assign, while a new part_t starts "not paused": clear any old
     * pause so the two agree, then let update_flow() pause as needed. */
    rd_kafka_resume_partitions(rk, parts);
    rl_info(TAG, "assigned %d partition(s) of '%s'", parts->cnt,
            pl->settings->input_topic);
    if (pl->settings->exactly_once)
        eos_settled(pl);
    update_flow(pl); /* new partitions start paused if input is held */
}

static void unassign(rl_pipeline_t *pl, int cooperative,
                     rd_kafka_topic_partition_list_t *parts, const char *what)
{
    rd_kafka_error_t *error = NULL;
    int i;

    for (i = 0; i < parts->cnt; i++)
        part_detach(pl, parts->elems[i].partition);
    if (cooperative)
        error = rd_kafka_incremental_unassign(pl->consumer, parts);
    else
        rd_kafka_assign(pl->consumer, NULL);
    if (error) {
        rl_error(TAG, "unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    rl_info(TAG, "%s %d partition(s) of '%s'", what, parts->cnt,
            pl->settings->input_topic);
}

/* Commits what finished and lets the revoked partitions go.  Events
 * still in flight are abandoned to the next owner, which consumes them
 * again (their answers may then be written twice). */
static void complete_revoke(rl_pipeline_t *pl)
{
    rd_kafka_topic_partition_list_t *parts = pl->revoking;
    rd_kafka_resp_err_t err;
    int i, abandoned = 0;

    if (!parts)
        return;
    pl->revoking = NULL;
    rl_timer_stop(pl->loop, &pl->revoke_deadline);

    if (pl->settings->exactly_once) {
        eos_commit(pl); /* on failure the next owner redoes the work */
    } else {
        store_offsets(pl);
        err = rd_kafka_commit(pl->consumer, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            rl_warn(TAG, "commit on revoke: %s", rd_kafka_err2str(err));
    }
    for (i = 0; i < parts->cnt; i++) {
        part_t *part = part_lookup(pl, parts->elems[i].partition);

        if (part)
            abandoned += part->inflight;
    }
    if (abandoned)
        rl_warn(TAG,
                "revoke: %d event(s) still in flight after %d ms are "
                "left to the next owner",
                abandoned, pl->settings->rebalance_timeout_ms);
    unassign(pl, pl->revoking_cooperative, parts, "revoked");
    rd_kafka_topic_partition_list_destroy(parts);
}

static void on_revoke_deadline(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    complete_revoke(opaque);
}

/* Completes a pending revoke, from a timer, once its partitions have
 * nothing in flight. */
static void maybe_complete_revoke(rl_pipeline_t *pl)
{
    int i;

    if (!pl->revoking)
        return;
    for (i = 0; i < pl->revoking->cnt; i++) {
        part_t *part = part_lookup(pl, pl->revoking->elems[i].partition);

        if (part && part->inflight > 0)
            return;
    }
    rl_timer_start(pl->loop, &pl->revoke_deadline, 0);
}

/*
 * Revoked partitions take no new events at once; their in-flight events
 * get up to rebalance.timeout.ms to finish before the commit.  librdkafka
 * waits for the (incremental) unassign call, which comes from a timer.
 * A lost assignment is dropped without committing: another member may
 * already own it.
 */
static void begin_revoke(rl_pipeline_t *pl, rd_kafka_t *rk, int cooperative,
                         rd_kafka_topic_partition_list_t *parts)
{
    int i;

    if (rd_kafka_assignment_lost(rk)) {
        unassign(pl, cooperative, parts, "lost");
        /* The open transaction may hold records of the lost partitions,
         * which their new owner will write too. */
        if (pl->txn_open)
            eos_abort(pl, "partitions lost", 0);
        return;
    }
    pl->revoking = rd_kafka_topic_partition_list_copy(parts);
    pl->revoking_cooperative = cooperative;
    for (i = 0; i < parts->cnt; i++) {
        part_t *part = part_lookup(pl, parts->elems[i].partition);

        if (part) {
            part->revoking = 1;
            drop_backlog(pl, part);
        }
    }
    update_flow(pl);
    if (pl->closing || pl->settings->rebalance_timeout_ms == 0) {
        complete_revoke(pl);
        return;
    }
    rl_timer_start(pl->loop, &pl->revoke_deadline,
                   pl->settings->rebalance_timeout_ms);
    maybe_complete_revoke(pl);
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    rl_pipeline_t *pl = opaque;
    int cooperative =
        strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assign(pl, rk, cooperative, parts);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        begin_revoke(pl, rk, cooperative, parts);
    } else {
        rl_error(TAG, "rebalance failed: %s", rd_kafka_err2str(err));
        unassign(pl, cooperative, parts, "dropped");
    }
}

static void handle_consumed(rl_pipeline_t *pl, rd_kafka_message_t *msg)
{
    job_t *job;
    part_t *part;
    uint64_t ticket;

    if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            rl_warn(TAG, "consumer: %s", rd_kafka_message_errstr(msg));
        rd_kafka_message_destroy(msg);
        return;
    }

    /* While draining, or for a partition just revoked, the message is
     * not taken: its offset is never stored, so it is consumed again. */
    part = part_lookup(pl, msg->partition);
    if (pl->draining || !part || part->revoking) {
        rd_kafka_message_destroy(msg);
        return;
    }
    ticket = rl_offtrack_push(part->track, msg->offset);
    if (ticket == UINT64_MAX) {
        rl_debug(TAG, "%s [%d] offset %lld delivered again, skipped",
                 rd_kafka_topic_name(msg->rkt), (int)msg->partition,
                 (long long)msg->offset);
        rd_kafka_message_destroy(msg);
        return;
    }
    job = job_new(pl, part, ticket, msg);
    if (pl->active < pl->settings->inflight_max)
        job_begin(job);
    else
        backlog_push(pl, job);
    update_flow(pl);
}

static void serve_consumer(rl_pipeline_t *pl)
{
    int budget = CONSUME_BUDGET;
    rd_kafka_message_t *msg;

    rl_kafka_wakeup_clear(&pl->cwake);
    while (budget-- > 0 && !pl->finished) {
        if (input_stalled(pl))
            return;
        msg = rd_kafka_consumer_poll(pl->consumer, 0);
        if (!msg)
            return;
        handle_consumed(pl, msg);
    }
    /* Yield to the backend and producer; come back on the next turn. */
    if (!pl->finished)
        rl_timer_start(pl->loop, &pl->again, 0);
}

static void on_consumer_wakeup(rl_loop_t *loop, int fd, int events,
                               void *opaque)
{
    serve_consumer(opaque);
}

static void on_again(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    serve_consumer(opaque);
}

/* Stores offsets, and polls the consumer even when nothing arrives:
 * librdkafka leaves the group if the application stops polling. */
static void on_tick(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_pipeline_t *pl = opaque;

    if (pl->finished)
        return;
    store_offsets(pl);
    if (pl->txn_open && rl_loop_now_ms(loop) - pl->txn_begun_ms >=
                            pl->settings->transaction_interval_ms)
        eos_commit(pl);
    if (pl->stalled)
        update_flow(pl); /* may be time to pause instead */
#ifdef __GLIBC__
    if (rl_loop_now_ms(loop) >= pl->next_trim_ms) {
        malloc_trim(TRIM_KEEP_BYTES);
        pl->next_trim_ms = rl_loop_now_ms(loop) + TRIM_EVERY_MS;
    }
#endif
    serve_consumer(pl);
    serve_producer(pl);
    if (rl_loop_now_ms(loop) >= pl->next_stats_ms) {
        rl_metrics_log(&pl->metrics, TAG);
        pl->next_stats_ms = rl_loop_now_ms(loop) + STATS_EVERY_MS;
    }
    rl_timer_start(loop, &pl->tick, TICK_MS);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                            */

static void on_deadline(rl_loop_t *loop, rl_timer_t *timer, void *opaque)
{
    rl_pipeline_t *pl = opaque;

    if (pl->metrics.inflight > 0)
        rl_warn(TAG,
                "shutdown timeout: %llu event(s) still in flight are left "
                "uncommitted and will be consumed again",
                (unsigned long long)pl->metrics.inflight);
    finish_shutdown(pl);
}

/*
 * The stop itself runs from a timer, never from inside a librdkafka
 * callback: it flushes the producer, which serves delivery reports.
 */
static void stop_soon(rl_pipeline_t *pl)
{
    if (!pl->closing && !pl->finished)
        rl_timer_start(pl->loop, &pl->deadline, 0);
}

static void finish_shutdown(rl_pipeline_t *pl)
{
    rd_kafka_resp_err_t err;

    if (pl->closing || pl->finished)
        return;
    pl->closing = 1;
    rl_timer_stop(pl->loop, &pl->deadline);
    rl_timer_stop(pl->loop, &pl->again);
    rl_timer_stop(pl->loop, &pl->tick);

    if (pl->settings->exactly_once) {
        /* Committing the transaction flushes its records. */
        eos_commit(pl);
        pl->finished = 1;
    } else {
        /* Acknowledgements that arrive while flushing finish their jobs
         * and move the offsets, so store after the flush. */
        err = rd_kafka_flush(pl->producer, 10000);
        if (err)
            rl_warn(TAG, "flush: %s; %d record(s) not acknowledged",
                    rd_kafka_err2str(err), rd_kafka_outq_len(pl->producer));
        pl->finished = 1;
        store_offsets(pl);
        err = rd_kafka_commit(pl->consumer, NULL, 0);
        if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
            rl_warn(TAG, "final commit: %s", rd_kafka_err2str(err));
    }
    rd_kafka_consumer_close(pl->consumer);
    rl_metrics_log(&pl->metrics, TAG);
    rl_info(TAG, "stopped");
}

void rl_pipeline_shutdown(rl_pipeline_t *pl)
{
    if (pl->finished)
        return;
    if (pl->draining) {
        rl_notice(TAG, "stopping now");
        stop_soon(pl);
        return;
    }
    pl->draining = 1;
    drop_backlog(pl, NULL); /* not started: left to the next consumer */
    rl_info(TAG, "stopping: %llu event(s) in flight, waiting up to %d ms",
            (unsigned long long)pl->metrics.inflight,
            pl->settings->shutdown_timeout_ms);
    update_flow(pl);
    if (pl->metrics.inflight == 0) {
        stop_soon(pl);
        return;
    }
    rl_timer_start(pl->loop, &pl->deadline, pl->settings->shutdown_timeout_ms);
}

int rl_pipeline_finished(const rl_pipeline_t *pl)
{
    return pl->finished;
}

int rl_pipeline_exit_status(const rl_pipeline_t *pl)
{
    return pl->status;
}

const rl_metrics_t *rl_pipeline_metrics(const rl_pipeline_t *pl)
{
    return &pl->metrics;
}

/* ------------------------------------------------------------------ */
/* Construction                                                        */

static int load_template(rl_pipeline_t *pl, char *errstr, size_t errstr_size)
{
    const char *path = pl->settings->template_file;

    if (path && *path)
        pl->tpl = rl_template_load(path, rl_render_names, errstr, errstr_size);
    else
        pl->tpl = rl_template_parse(rl_default_template,
                                    rl_default_template_len, rl_render_names,
                                    "<default>", errstr, errstr_size);
    return pl->tpl ? 0 : -1;
}

static int check_topic(rl_pipeline_t *pl, const char *name, char *errstr,
                       size_t errstr_size)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(pl->producer, name, NULL);
    rd_kafka_resp_err_t err =
        rd_kafka_metadata(pl->producer, 0, rkt, &md, STARTUP_TIMEOUT_MS);
    int ret = 0;

    if (err) {
        snprintf(errstr, errstr_size, "topic '%s': metadata: %s", name,
                 rd_kafka_err2str(err));
        ret = -1;
    } else if (md->topic_cnt != 1 || md->topics[0].err ||
               md->topics[0].partition_cnt == 0) {
        snprintf(errstr, errstr_size, "topic '%s' does not exist", name);
        ret = 1; /* maybe not yet: a new topic takes a moment */
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return ret;
}

/* The output and dead-letter topics must exist: a record for a missing
 * topic would wait in the producer for minutes before failing.  A topic
 * created just before the worker started gets a few seconds to show. */
static int check_topics(rl_pipeline_t *pl, char *errstr, size_t errstr_size)
{
    const char *names[2] = {pl->settings->output_topic,
                            pl->settings->dlq_topic};
    int64_t deadline = rl_now_us() + 5000000;
    int i, r;

    for (i = 0; i < 2; i++) {
        while ((r = check_topic(pl, names[i], errstr, errstr_size)) == 1 &&
               rl_now_us() < deadline)
            usleep(200 * 1000);
        if (r != 0)
            return -1;
    }
    return 0;
}

static int start_producer(rl_pipeline_t *pl, const rl_config_t *conf,
                          const char *bootstrap, char *errstr,
                          size_t errstr_size)
{
    rd_kafka_conf_t *kconf = rl_kafka_conf_new(
        conf, pl->settings, RL_CLIENT_PRODUCER, bootstrap, errstr, errstr_size);

    if (!kconf)
        return -1;
    rd_kafka_conf_set_opaque(kconf, pl);
    rd_kafka_conf_set_dr_msg_cb(kconf, on_delivery);
    rd_kafka_conf_set_error_cb(kconf, on_kafka_error);
    pl->producer = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr, errstr_size);
    if (!pl->producer) {
        rd_kafka_conf_destroy(kconf);
        return -1;
    }
    pl->pqueue = rd_kafka_queue_get_main(pl->producer);
    if (rl_kafka_wakeup_open(&pl->pwake, pl->loop, pl->pqueue,
                             on_producer_wakeup, pl) < 0) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        return -1;
    }
    if (check_topics(pl, errstr, errstr_size) < 0)
        return -1;
    if (pl->settings->exactly_once) {
        /* Fences any older producer with our transactional.id and
         * aborts what it left open. */
        rd_kafka_error_t *error =
            rd_kafka_init_transactions(pl->producer, STARTUP_TIMEOUT_MS);

        if (error) {
            snprintf(errstr, errstr_size, "exactly-once: init: %s",
                     rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
            return -1;
        }
    }
    return 0;
}

static int start_consumer(rl_pipeline_t *pl, const rl_config_t *conf,
                          const char *bootstrap, char *errstr,
                          size_t errstr_size)
{
    rd_kafka_conf_t *kconf = rl_kafka_conf_new(
        conf, pl->settings, RL_CLIENT_CONSUMER, bootstrap, errstr, errstr_size);
    rd_kafka_topic_partition_list_t *topics;
    rd_kafka_resp_err_t err;

    if (!kconf)
        return -1;
    rd_kafka_conf_set_opaque(kconf, pl);
    rd_kafka_conf_set_rebalance_cb(kconf, on_rebalance);
    rd_kafka_conf_set_error_cb(kconf, on_kafka_error);
    pl->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, kconf, errstr, errstr_size);
    if (!pl->consumer) {
        rd_kafka_conf_destroy(kconf);
        return -1;
    }
    rd_kafka_poll_set_consumer(pl->consumer);
    pl->cqueue = rd_kafka_queue_get_consumer(pl->consumer);
    if (rl_kafka_wakeup_open(&pl->cwake, pl->loop, pl->cqueue,
                             on_consumer_wakeup, pl) < 0) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        return -1;
    }

    topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, pl->settings->input_topic,
                                      RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(pl->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, errstr_size, "subscribe to '%s': %s",
                 pl->settings->input_topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

rl_pipeline_t *rl_pipeline_new(rl_loop_t *loop, const rl_config_t *conf,
                               const rl_settings_t *settings,
                               const char *bootstrap, char *errstr,
                               size_t errstr_size)
{
    rl_pipeline_t *pl = rl_xcalloc(1, sizeof(*pl));

    pl->loop = loop;
    pl->settings = settings;
    pl->cwake.rfd = pl->pwake.rfd = -1;
    rl_timer_init(&pl->again, on_again, pl);
    rl_timer_init(&pl->tick, on_tick, pl);
    rl_timer_init(&pl->deadline, on_deadline, pl);
    rl_timer_init(&pl->probe, on_probe, pl);
    rl_timer_init(&pl->unpark, on_unpark, pl);
    rl_timer_init(&pl->revoke_deadline, on_revoke_deadline, pl);
    rl_timer_init(&pl->rewind, on_rewind, pl);
    pl->cache = rl_evcache_new();
    pl->keyq = rl_keyq_new();
    pl->arena = rl_arena_new(65536);
    pl->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);

    if (load_template(pl, errstr, errstr_size) < 0)
        goto fail;
    pl->breaker = rl_breaker_new(&settings->breaker, on_breaker_change, pl,
                                 errstr, errstr_size);
    if (!pl->breaker)
        goto fail;
    pl->backend = rl_backend_new(loop, &settings->backend, errstr, errstr_size);
    if (!pl->backend)
        goto fail;
    if (settings->evidence_topic && *settings->evidence_topic) {
        pl->evreader =
            rl_evreader_start(loop, conf, settings, bootstrap, pl->cache,
                              STARTUP_TIMEOUT_MS, errstr, errstr_size);
        if (!pl->evreader)
            goto fail;
    }
    if (start_producer(pl, conf, bootstrap, errstr, errstr_size) < 0 ||
        start_consumer(pl, conf, bootstrap, errstr, errstr_size) < 0)
        goto fail;

    rl_info(TAG,
            "consuming '%s' as group '%s'; answers to '%s', dead "
            "letters to '%s'; backend %s, at most %d in flight",
            settings->input_topic, settings->group_id, settings->output_topic,
            settings->dlq_topic, rl_backend_name(pl->backend),
            settings->inflight_max);
    pl->next_stats_ms = rl_loop_now_ms(loop) + STATS_EVERY_MS;
    rl_timer_start(loop, &pl->tick, TICK_MS);
    return pl;

fail:
    rl_pipeline_destroy(pl);
    return NULL;
}

void rl_pipeline_destroy(rl_pipeline_t *pl)
{
    int i;

    if (!pl)
        return;
    rl_timer_stop(pl->loop, &pl->again);
    rl_timer_stop(pl->loop, &pl->tick);
    rl_timer_stop(pl->loop, &pl->deadline);
    rl_timer_stop(pl->loop, &pl->probe);
    rl_timer_stop(pl->loop, &pl->unpark);
    rl_timer_stop(pl->loop, &pl->revoke_deadline);
    rl_timer_stop(pl->loop, &pl->rewind);
    pl->closing = 1; /* a revoke from consumer_close() completes at once */

    /*
     * Order matters.  The backend goes first, so that no callback
     * reaches a freed job; then the producer, whose unacknowledged
     * records may point into consumed messages (their offsets were never
     * stored, so those events are consumed again); then the jobs, which
     * hold the consumed messages that the consumer's destruction waits
     * for.
     */
    rl_backend_destroy(pl->backend);
    if (pl->producer) {
        if (pl->pqueue) {
            rd_kafka_queue_io_event_enable(pl->pqueue, -1, NULL, 0);
            rd_kafka_queue_destroy(pl->pqueue);
        }
        rd_kafka_purge(pl->producer,
                       RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(pl->producer);
    }
    while (pl->jobs)
        job_free(pl->jobs);
    if (pl->consumer) {
        rd_kafka_queue_io_event_enable(pl->cqueue, -1, NULL, 0);
        rd_kafka_queue_destroy(pl->cqueue);
        if (!pl->finished)
            rd_kafka_consumer_close(pl->consumer);
        rd_kafka_destroy(pl->consumer);
    }
    rl_kafka_wakeup_close(&pl->cwake, pl->loop);
    rl_kafka_wakeup_close(&pl->pwake, pl->loop);
    rl_evreader_stop(pl->evreader);
    for (i = 0; i < pl->nparts; i++)
        if (pl->parts[i])
            part_release(pl->parts[i]);
    free(pl->parts);
    if (pl->revoking)
        rd_kafka_topic_partition_list_destroy(pl->revoking);
    rl_evcache_destroy(pl->cache);
    rl_template_destroy(pl->tpl);
    rl_breaker_destroy(pl->breaker);
    rl_keyq_destroy(pl->keyq);
    rl_arena_destroy(pl->arena);
    rl_buf_free(&pl->keybuf);
    rl_buf_free(&pl->scratch);
    rl_buf_free(&pl->body);
    free(pl);
}
