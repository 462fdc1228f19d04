/*
 * ragline's per-event CPU work without Kafka or HTTP: parse, render the
 * escaped prompt and write an answer, for every event of a file, many
 * times over.  Prints the median time of each step per event.
 *
 *   bench/hotpath EVENTS.jsonl EVIDENCE.jsonl [ROUNDS]
 *
 * EVENTS.jsonl holds one event per line; EVIDENCE.jsonl one
 * {"key": ..., "value": ...} record per line (bench/workload.py --dump
 * writes both).  This is a benchmark: it prints figures and asserts
 * nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ragline/arena.h"
#include "ragline/buf.h"
#include "ragline/event.h"
#include "ragline/evidence.h"
#include "ragline/json.h"
#include "ragline/render.h"
#include "ragline/template.h"

enum { STEP_PARSE, STEP_RENDER, STEP_ANSWER, STEP_COUNT };

static const char *const step_names[] = {"parse", "render", "answer"};

typedef struct line_s {
    char *text;
    size_t len;
} line_t;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* Reads the non-empty lines of @p path; exits on error. */
static line_t *read_lines(const char *path, size_t *count)
{
    FILE *f = fopen(path, "r");
    line_t *lines = NULL;
    size_t n = 0, cap = 0, size = 0;
    char *buf = NULL;
    ssize_t got;

    if (!f) {
        perror(path);
        exit(2);
    }
    while ((got = getline(&buf, &size, f)) > 0) {
        while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r'))
            got--;
        if (!got)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 1024;
            lines = rl_xrealloc(lines, cap * sizeof(*lines));
        }
        lines[n].text = rl_xmemdup(buf, (size_t)got);
        lines[n].len = (size_t)got;
        n++;
    }
    free(buf);
    fclose(f);
    *count = n;
    return lines;
}

static rl_evcache_t *load_evidence(const char *path)
{
    rl_evcache_t *cache = rl_evcache_new();
    line_t *lines;
    size_t n, i;
    char err[256];

    lines = read_lines(path, &n);
    for (i = 0; i < n; i++) {
        json_t *rec = rl_json_parse(lines[i].text, lines[i].len, 64, 0, NULL);
        json_t *key = json_object_get(rec, "key");
        json_t *value = json_object_get(rec, "value");

        if (!json_is_string(key) || !json_is_string(value) ||
            rl_evcache_apply(cache, json_string_value(key),
                             json_string_length(key), json_string_value(value),
                             json_string_length(value), err, sizeof(err)) < 0) {
            fprintf(stderr, "%s:%zu: bad evidence record\n", path, i + 1);
            exit(2);
        }
        json_decref(rec);
        free(lines[i].text);
    }
    free(lines);
    return cache;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    rl_limits_t limits = {1 << 20, 64, 256};
    rl_template_t *tpl;
    rl_evcache_t *cache;
    rl_arena_t *arena;
    line_t *events;
    size_t nevents, i, bytes = 0, prompt_bytes = 0;
    int rounds = argc > 3 ? atoi(argv[3]) : 20, r, s;
    double *per[STEP_COUNT];
    rl_buf_t body = RL_BUF_INIT, answer = RL_BUF_INIT;
    char err[256];

    if (argc < 3 || rounds < 1) {
        fprintf(stderr, "usage: %s EVENTS.jsonl EVIDENCE.jsonl [ROUNDS]\n",
                argv[0]);
        return 2;
    }
    rl_arena_install();
    events = read_lines(argv[1], &nevents);
    cache = load_evidence(argv[2]);
    tpl = rl_template_parse(rl_default_template, rl_default_template_len,
                            rl_render_names, "default", err, sizeof(err));
    if (!tpl || !nevents) {
        fprintf(stderr, "no template or no events: %s\n", err);
        return 2;
    }
    for (i = 0; i < nevents; i++)
        bytes += events[i].len;
    arena = rl_arena_new(64 * 1024);
    for (s = 0; s < STEP_COUNT; s++)
        per[s] = rl_xcalloc((size_t)rounds, sizeof(double));

    for (r = 0; r < rounds; r++) {
        double t[STEP_COUNT] = {0};

        for (i = 0; i < nevents; i++) {
            rl_render_stats_t stats = {0, 0, 0, 0, NULL};
            rl_answer_t a;
            rl_event_t ev;
            double t0, t1, t2, t3;

            t0 = now_ns();
            rl_arena_reset(arena);
            if (rl_event_parse_in(&ev, arena, events[i].text, events[i].len,
                                  NULL, 0, &limits, err,
                                  sizeof(err)) != RL_ERR_NONE) {
                fprintf(stderr, "event %zu: %s\n", i + 1, err);
                return 1;
            }
            t1 = now_ns();
            rl_buf_reset(&body);
            if (rl_render_escaped(tpl, &ev.prompt, cache, &body, &stats, err,
                                  sizeof(err)) < 0) {
                fprintf(stderr, "event %zu: %s\n", i + 1, err);
                return 1;
            }
            t2 = now_ns();
            if (r == 0)
                prompt_bytes += body.len;
            memset(&a, 0, sizeof(a));
            a.id = ev.id;
            a.conversation_id = ev.conversation_id;
            a.answer = ev.prompt.recommended;
            a.answer_len = ev.prompt.recommended_len < 600
                               ? ev.prompt.recommended_len
                               : 600;
            a.backend = "openai-chat";
            a.model = "bench";
            a.finish_reason = "stop";
            a.prompt_tokens = a.completion_tokens = a.total_tokens = 100;
            a.evidence = &stats;
            a.topic = "queries";
            a.offset = (int64_t)i;
            rl_buf_reset(&answer);
            rl_answer_write(&answer, &a);
            t3 = now_ns();
            rl_event_clear(&ev);
            t[STEP_PARSE] += t1 - t0;
            t[STEP_RENDER] += t2 - t1;
            t[STEP_ANSWER] += t3 - t2;
        }
        for (s = 0; s < STEP_COUNT; s++)
            per[s][r] = t[s] / (double)nevents / 1000.0;
    }

    printf("hotpath: %zu events, %.1f KB mean (escaped prompt %.1f KB), "
           "%d rounds; median us per event\n",
           nevents, (double)bytes / (double)nevents / 1024.0,
           (double)prompt_bytes / (double)nevents / 1024.0, rounds);
    for (s = 0; s < STEP_COUNT; s++) {
        double median;

        qsort(per[s], (size_t)rounds, sizeof(double), cmp_double);
        median = per[s][rounds / 2];
        printf("  %-8s %8.2f us  (min %.2f, max %.2f)", step_names[s], median,
               per[s][0], per[s][rounds - 1]);
        if (s == STEP_PARSE)
            printf("  %.0f MB/s", (double)bytes / (double)nevents / median);
        printf("\n");
        free(per[s]);
    }
    return 0;
}
