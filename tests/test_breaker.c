/*
 * Tests of the circuit breaker: what opens it (a run of failures, a
 * failure rate in the window) and what must not (permanent errors, old
 * failures that left the window), the single probe of HALF_OPEN, the
 * growing wait between failed probes, and closing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ragline/breaker.h"

/* What the change callback saw. */
typedef struct {
    int changes;
    rl_breaker_state_t from, to;
    char why[400];
} seen_t;

static void on_change(void *opaque, rl_breaker_state_t from,
                      rl_breaker_state_t to, const char *why)
{
    seen_t *seen = opaque;

    assert_int_not_equal(from, to);
    seen->changes++;
    seen->from = from;
    seen->to = to;
    snprintf(seen->why, sizeof(seen->why), "%s", why);
}

static rl_breaker_t *new_breaker(const rl_breaker_conf_t *conf, seen_t *seen)
{
    char errstr[128];
    rl_breaker_t *b =
        rl_breaker_new(conf, on_change, seen, errstr, sizeof(errstr));

    if (!b)
        fail_msg("rl_breaker_new: %s", errstr);
    memset(seen, 0, sizeof(*seen));
    return b;
}

static rl_breaker_conf_t default_conf(void)
{
    rl_breaker_conf_t conf;

    rl_breaker_conf_default(&conf);
    return conf;
}

/* Opens @p b with consecutive failures at @p now. */
static void trip(rl_breaker_t *b, const rl_breaker_conf_t *conf, int64_t now)
{
    int i;

    for (i = 0; i < conf->failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, "HTTP 503", now);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
}

/* ---- Opening --------------------------------------------------------- */

static void test_opens_on_consecutive_failures(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    char want[64];
    int i;

    assert_int_equal(rl_breaker_allow(b, 0), RL_BREAKER_GO);
    assert_int_equal(rl_breaker_next_probe_ms(b), -1);
    for (i = 1; i < conf.failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, "timeout", 100);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    assert_int_equal(seen.changes, 0);

    rl_breaker_record(b, RL_BREAKER_FAILURE, "HTTP 503: overloaded", 200);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
    assert_int_equal(seen.changes, 1);
    assert_int_equal(seen.from, RL_BREAKER_CLOSED);
    assert_int_equal(seen.to, RL_BREAKER_OPEN);
    snprintf(want, sizeof(want), "%d consecutive failures", conf.failures);
    assert_non_null(strstr(seen.why, want));
    assert_non_null(strstr(seen.why, "(last: HTTP 503: overloaded)"));
    assert_int_equal(rl_breaker_next_probe_ms(b), 200 + conf.open_ms);
    assert_int_equal(rl_breaker_allow(b, 201), RL_BREAKER_WAIT);
    rl_breaker_destroy(b);
}

/* An answer, or a permanent error, breaks the run. */
static void test_answer_breaks_the_run(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b;
    rl_breaker_outcome_t breaks[] = {RL_BREAKER_SUCCESS, RL_BREAKER_PERMANENT};
    int i, k;

    conf.error_rate = 0; /* the run alone decides */
    b = new_breaker(&conf, &seen);
    for (k = 0; k < 2; k++) {
        for (i = 1; i < conf.failures; i++)
            rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 1000 * k);
        rl_breaker_record(b, breaks[k], NULL, 1000 * k);
    }
    for (i = 1; i < conf.failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 2000);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 2000);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
    assert_non_null(strstr(seen.why, "last: no detail"));
    rl_breaker_destroy(b);
}

static void test_permanent_never_opens(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    int64_t t;

    /* A stream of bad events, faster than anything else. */
    for (t = 0; t < 60000; t += 3)
        rl_breaker_record(b, RL_BREAKER_PERMANENT, "HTTP 400", t);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    assert_int_equal(seen.changes, 0);
    rl_breaker_destroy(b);
}

/* Rate only: the window opens once min_calls are in and the rate is
 * reached, not before. */
static void test_opens_on_rate(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b;
    int i;

    conf.failures = 0;
    b = new_breaker(&conf, &seen);

    /* Alternating, starting with an answer: the rate is exactly 0.5
     * after every failure, and the 20th call is one. */
    for (i = 1; i < conf.min_calls; i++) {
        rl_breaker_record(b, i % 2 ? RL_BREAKER_SUCCESS : RL_BREAKER_FAILURE,
                          "HTTP 502", 100 * i);
        assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    }
    rl_breaker_record(b, RL_BREAKER_FAILURE, "HTTP 502", 100 * i);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
    assert_non_null(strstr(seen.why, "10 of 20 calls failed"));
    rl_breaker_destroy(b);
}

/* Just under the rate: it stays closed however long it runs. */
static void test_below_rate_stays_closed(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b;
    int i;

    conf.failures = 0;
    b = new_breaker(&conf, &seen);
    for (i = 0; i < 5000; i++) {
        /* 4 failures in every 10 calls, after the answers, so that
         * the rate never reaches 0.5 even among the first calls */
        rl_breaker_outcome_t o =
            i % 10 >= 6 ? RL_BREAKER_FAILURE : RL_BREAKER_SUCCESS;

        rl_breaker_record(b, o, NULL, 37 * (int64_t)i);
    }
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_destroy(b);
}

/* Failures older than the window no longer count. */
static void test_window_ages_out(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b;
    int i;

    conf.failures = 0;
    b = new_breaker(&conf, &seen);
    for (i = 1; i < conf.min_calls; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 500);
    /* The window's length later, the first failures are gone. */
    rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 500 + conf.window_ms);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_destroy(b);

    /* Control: the same failures a second sooner open it. */
    b = new_breaker(&conf, &seen);
    for (i = 1; i < conf.min_calls; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 500);
    rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 500 + conf.window_ms - 1000);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
    rl_breaker_destroy(b);
}

/*
 * Random model check of the window: calls at random times, a naive
 * list of every call kept alongside; the breaker must open exactly when
 * the naive count over the last window seconds says so.
 */
static void test_window_against_model(void **state)
{
    enum { N = 5000 };
    static int64_t when[N];
    static int failed[N];
    rl_breaker_conf_t conf = default_conf();
    int64_t nsec = conf.window_ms / 1000, now = 0;
    int round, i, j, opened = 0;

    conf.failures = 0;
    conf.min_calls = 8;
    srand(7);
    for (round = 0; round < 40; round++) {
        seen_t seen;
        rl_breaker_t *b = new_breaker(&conf, &seen);
        int fail_pct = rand() % 100;

        for (i = 0; i < N; i++) {
            int64_t calls = 0, fails = 0, sec;
            int expect_open;

            now += rand() % 1500;
            sec = now / 1000;
            when[i] = now;
            failed[i] = rand() % 100 < fail_pct;
            rl_breaker_record(
                b, failed[i] ? RL_BREAKER_FAILURE : RL_BREAKER_SUCCESS, NULL,
                now);
            for (j = i; j >= 0 && when[j] / 1000 > sec - nsec; j--) {
                calls++;
                fails += failed[j];
            }
            expect_open = failed[i] && calls >= conf.min_calls &&
                          fails >= conf.error_rate * calls;
            if (expect_open != (rl_breaker_state(b) == RL_BREAKER_OPEN))
                fail_msg("round %d call %d: %lld of %lld failed, state %s",
                         round, i, (long long)fails, (long long)calls,
                         rl_breaker_state_name(rl_breaker_state(b)));
            if (expect_open) {
                opened++;
                break;
            }
        }
        rl_breaker_destroy(b);
    }
    assert_true(opened > 10); /* the check did see it open */
}

/* ---- Probing ---------------------------------------------------------- */

static void test_half_open_admits_one_probe(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    int64_t probe_at;
    int i;

    trip(b, &conf, 1000);
    probe_at = rl_breaker_next_probe_ms(b);

    /* While OPEN, more failures neither re-open it nor move the probe. */
    seen.changes = 0;
    for (i = 0; i < 2 * conf.failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, 1500);
    assert_int_equal(seen.changes, 0);
    assert_int_equal(rl_breaker_next_probe_ms(b), probe_at);

    assert_int_equal(rl_breaker_allow(b, probe_at - 1), RL_BREAKER_WAIT);
    assert_int_equal(rl_breaker_allow(b, probe_at), RL_BREAKER_PROBE);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_HALF_OPEN);
    assert_int_equal(seen.to, RL_BREAKER_HALF_OPEN);
    assert_int_equal(rl_breaker_next_probe_ms(b), -1);
    for (i = 0; i < 100; i++)
        assert_int_equal(rl_breaker_allow(b, probe_at + 100000 * i),
                         RL_BREAKER_WAIT);

    /* Late results of calls sent before the breaker opened say nothing
     * about the probe. */
    rl_breaker_record(b, RL_BREAKER_SUCCESS, NULL, probe_at + 5);
    for (i = 0; i < 2 * conf.failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, probe_at + 6);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_HALF_OPEN);
    rl_breaker_destroy(b);
}

static void test_failed_probes_back_off_to_cap(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    int64_t now = 0, want = conf.open_ms;
    int i;

    trip(b, &conf, now);
    for (i = 0; i < 12; i++) {
        char text[64];

        assert_int_equal(rl_breaker_next_probe_ms(b) - now, want);
        now = rl_breaker_next_probe_ms(b);
        assert_int_equal(rl_breaker_allow(b, now), RL_BREAKER_PROBE);
        now += 250; /* the probe's own time */
        rl_breaker_probe_done(b, RL_BREAKER_FAILURE, "connection refused", now);
        assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
        assert_int_equal(seen.from, RL_BREAKER_HALF_OPEN);

        want = want * 2 > conf.max_open_ms ? conf.max_open_ms : want * 2;
        snprintf(text, sizeof(text), "next probe in %lld ms", (long long)want);
        assert_non_null(strstr(seen.why, text));
        assert_non_null(strstr(seen.why, "connection refused"));
    }
    assert_int_equal(want, conf.max_open_ms);
    rl_breaker_destroy(b);
}

static void test_probe_success_closes(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    int64_t opened = 5000, now;
    int i;

    trip(b, &conf, opened);
    /* Two failed probes, then a good one, 31.2 s after it opened. */
    for (i = 0; i < 2; i++) {
        now = rl_breaker_next_probe_ms(b);
        assert_int_equal(rl_breaker_allow(b, now), RL_BREAKER_PROBE);
        rl_breaker_probe_done(b, RL_BREAKER_FAILURE, NULL, now + 10);
    }
    now = rl_breaker_next_probe_ms(b);
    assert_true(now < opened + 31200);
    assert_int_equal(rl_breaker_allow(b, opened + 31200), RL_BREAKER_PROBE);
    rl_breaker_probe_done(b, RL_BREAKER_SUCCESS, NULL, opened + 31200);

    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    assert_int_equal(seen.from, RL_BREAKER_HALF_OPEN);
    assert_int_equal(seen.to, RL_BREAKER_CLOSED);
    assert_non_null(strstr(seen.why, "closed after probe succeeded"));
    assert_non_null(strstr(seen.why, "was open 31.2 s"));
    assert_int_equal(rl_breaker_allow(b, opened + 31201), RL_BREAKER_GO);
    assert_int_equal(rl_breaker_next_probe_ms(b), -1);

    /* Counts start over, and the next outage waits open_ms again. */
    now = opened + 32000;
    for (i = 1; i < conf.failures; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, now);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, now);
    assert_int_equal(rl_breaker_next_probe_ms(b) - now, conf.open_ms);
    rl_breaker_destroy(b);
}

/* A permanent error to the probe is still an answer from the backend. */
static void test_probe_permanent_closes(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);
    int64_t now;

    trip(b, &conf, 0);
    now = rl_breaker_next_probe_ms(b);
    assert_int_equal(rl_breaker_allow(b, now), RL_BREAKER_PROBE);
    rl_breaker_probe_done(b, RL_BREAKER_PERMANENT, "HTTP 400", now);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_destroy(b);
}

static void test_stray_probe_done_ignored(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    seen_t seen;
    rl_breaker_t *b = new_breaker(&conf, &seen);

    rl_breaker_probe_done(b, RL_BREAKER_FAILURE, NULL, 0);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    trip(b, &conf, 0);
    seen.changes = 0;
    rl_breaker_probe_done(b, RL_BREAKER_SUCCESS, NULL, 1);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_OPEN);
    assert_int_equal(seen.changes, 0);
    rl_breaker_destroy(b);
}

/* ---- Configuration ---------------------------------------------------- */

static void test_bad_conf_refused(void **state)
{
    rl_breaker_conf_t bad[7];
    char errstr[128];
    size_t i;

    for (i = 0; i < 7; i++)
        rl_breaker_conf_default(&bad[i]);
    bad[0].failures = -1;
    bad[1].error_rate = 1.5;
    bad[2].error_rate = -0.1;
    bad[3].window_ms = 0;
    bad[4].min_calls = 0;
    bad[5].open_ms = 0;
    bad[6].max_open_ms = bad[6].open_ms - 1;
    for (i = 0; i < 7; i++) {
        errstr[0] = '\0';
        assert_null(
            rl_breaker_new(&bad[i], NULL, NULL, errstr, sizeof(errstr)));
        assert_non_null(strstr(errstr, "breaker."));
    }
}

/* Both triggers off: nothing opens it; no callback is fine. */
static void test_disabled_and_no_callback(void **state)
{
    rl_breaker_conf_t conf = default_conf();
    char errstr[128];
    rl_breaker_t *b;
    int i;

    conf.failures = 0;
    conf.error_rate = 0;
    b = rl_breaker_new(&conf, NULL, NULL, errstr, sizeof(errstr));
    assert_non_null(b);
    for (i = 0; i < 1000; i++)
        rl_breaker_record(b, RL_BREAKER_FAILURE, NULL, i);
    assert_int_equal(rl_breaker_state(b), RL_BREAKER_CLOSED);
    rl_breaker_destroy(b);

    rl_breaker_conf_default(&conf);
    b = rl_breaker_new(&conf, NULL, NULL, errstr, sizeof(errstr));
    trip(b, &conf, 0);
    rl_breaker_destroy(b);
    rl_breaker_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_on_consecutive_failures),
        cmocka_unit_test(test_answer_breaks_the_run),
        cmocka_unit_test(test_permanent_never_opens),
        cmocka_unit_test(test_opens_on_rate),
        cmocka_unit_test(test_below_rate_stays_closed),
        cmocka_unit_test(test_window_ages_out),
        cmocka_unit_test(test_window_against_model),
        cmocka_unit_test(test_half_open_admits_one_probe),
        cmocka_unit_test(test_failed_probes_back_off_to_cap),
        cmocka_unit_test(test_probe_success_closes),
        cmocka_unit_test(test_probe_permanent_closes),
        cmocka_unit_test(test_stray_probe_done_ignored),
        cmocka_unit_test(test_bad_conf_refused),
        cmocka_unit_test(test_disabled_and_no_callback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
