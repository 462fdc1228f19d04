/*
 * Tests of the retry decisions: how failures are classified, the
 * jittered backoff (bounds, growth and spread over many seeds), server
 * hints, the attempt and deadline limits, and every form of
 * Retry-After a server may send.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "ragline/retry.h"

static rl_retry_policy_t default_policy(void)
{
    rl_retry_policy_t p;

    rl_retry_policy_default(&p);
    return p;
}

static rl_retry_failure_t retriable_failure(int attempt)
{
    rl_retry_failure_t f = {.attempt = attempt,
                            .retriable = 1,
                            .http_status = 503,
                            .retry_after_ms = -1,
                            .elapsed_ms = 0};
    return f;
}

/* The ceiling the contract promises, computed the slow way. */
static int64_t expected_ceiling(const rl_retry_policy_t *p, int attempt)
{
    double c = (double)p->base_ms;
    int i;

    for (i = 1; i < attempt; i++)
        c *= 2;
    return c > (double)p->max_backoff_ms ? p->max_backoff_ms : (int64_t)c;
}

/* ---- Classification -------------------------------------------------- */

static void test_classify(void **state)
{
    static const int retriable[] = {0,   408, 409, 424, 429,
                                    500, 502, 503, 504, 599};
    static const int permanent[] = {200, 301, 400, 401, 403, 404,
                                    405, 413, 422, 451, 499, 600};
    size_t i;

    for (i = 0; i < sizeof(retriable) / sizeof(retriable[0]); i++)
        assert_int_equal(rl_retry_classify(retriable[i], 0),
                         RL_RETRY_RETRIABLE);
    for (i = 0; i < sizeof(permanent) / sizeof(permanent[0]); i++)
        assert_int_equal(rl_retry_classify(permanent[i], 0),
                         RL_RETRY_PERMANENT);
    /* A transport error is retriable whatever status was seen. */
    assert_int_equal(rl_retry_classify(0, 1), RL_RETRY_RETRIABLE);
    assert_int_equal(rl_retry_classify(400, 1), RL_RETRY_RETRIABLE);
}

/* ---- Backoff --------------------------------------------------------- */

/*
 * Full jitter over 4000 seeds per attempt: every delay within
 * [0, ceiling], the spread reaching both ends, and the mean about half
 * the ceiling (the standard error of the mean is ceiling/sqrt(12 * n),
 * under 0.5 % here, so 5 % is a wide margin).
 */
static void test_backoff_bounds_and_spread(void **state)
{
    enum { SEEDS = 4000 };
    rl_retry_policy_t p = default_policy();
    int attempt;

    p.max_attempts = 40;
    p.deadline_ms = 0;
    for (attempt = 1; attempt < p.max_attempts; attempt++) {
        int64_t ceiling = expected_ceiling(&p, attempt);
        int64_t lo = INT64_MAX, hi = -1;
        double sum = 0, mean;
        uint64_t seed;

        for (seed = 0; seed < SEEDS; seed++) {
            uint64_t rng = seed * 7919;
            rl_retry_failure_t f = retriable_failure(attempt);
            int64_t d = rl_retry_next_delay(&p, &f, &rng, NULL, 0);

            assert_true(d >= 0 && d <= ceiling);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            sum += (double)d;
        }
        mean = sum / SEEDS;
        assert_true(mean > 0.45 * (double)ceiling);
        assert_true(mean < 0.55 * (double)ceiling);
        assert_true(lo < ceiling / 50);
        assert_true(hi > ceiling - ceiling / 50);
    }
}

/* The ceiling doubles each attempt until the cap, then stays there:
 * seen through the largest delay drawn. */
static void test_backoff_growth(void **state)
{
    rl_retry_policy_t p = default_policy();
    int64_t prev_max = 0;
    int attempt;

    p.max_attempts = 100;
    p.deadline_ms = 0;
    for (attempt = 1; attempt <= 10; attempt++) {
        uint64_t rng = 42;
        int64_t max = 0;
        int i;

        for (i = 0; i < 3000; i++) {
            rl_retry_failure_t f = retriable_failure(attempt);
            int64_t d = rl_retry_next_delay(&p, &f, &rng, NULL, 0);

            max = d > max ? d : max;
        }
        if (expected_ceiling(&p, attempt) < p.max_backoff_ms && attempt > 1)
            assert_true(max > prev_max * 19 / 10);
        assert_true(max <= p.max_backoff_ms);
        prev_max = max;
    }
    assert_true(prev_max > p.max_backoff_ms * 99 / 100);
}

static void test_backoff_deterministic(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(3);
    uint64_t a = 12345, b = 12345, c = 54321;
    int64_t da = rl_retry_next_delay(&p, &f, &a, NULL, 0);
    int64_t db = rl_retry_next_delay(&p, &f, &b, NULL, 0);
    int differs = 0;
    int i;

    assert_int_equal(da, db);
    assert_true(a == b);
    assert_true(a != 12345); /* the state advanced */

    /* Another seed gives another sequence. */
    for (i = 0; i < 10; i++)
        differs |= rl_retry_next_delay(&p, &f, &b, NULL, 0) !=
                   rl_retry_next_delay(&p, &f, &c, NULL, 0);
    assert_true(differs);
}

static void test_backoff_odd_policy(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(2);
    uint64_t rng = 1;

    p.base_ms = 0;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), 0);
    p.base_ms = -100;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), 0);

    /* A base above the cap is cut to the cap from the first retry. */
    p.base_ms = 50000;
    f.attempt = 1;
    assert_true(rl_retry_next_delay(&p, &f, &rng, NULL, 0) <= p.max_backoff_ms);
}

/* ---- Hints, limits, reasons ------------------------------------------ */

static void test_hint_replaces_backoff(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(1);
    uint64_t rng = 7, before;

    f.http_status = 429;
    f.retry_after_ms = 4321; /* far above attempt 1's 200 ms ceiling */
    before = rng;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), 4321);
    assert_true(rng == before); /* nothing drawn */

    f.retry_after_ms = 0; /* "come back now" is honoured too */
    f.attempt = 4;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), 0);

    /* A hint beyond the cap waits the cap, not less and not more. */
    f.retry_after_ms = p.max_retry_after_ms + 1;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0),
                     p.max_retry_after_ms);
    f.retry_after_ms = INT64_MAX;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0),
                     p.max_retry_after_ms);
}

static void test_hint_ignored_when_cap_is_zero(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(1);
    uint64_t rng = 7;
    int i;

    p.max_retry_after_ms = 0;
    f.retry_after_ms = 5000;
    for (i = 0; i < 100; i++)
        assert_true(rl_retry_next_delay(&p, &f, &rng, NULL, 0) <= p.base_ms);
}

static void test_max_attempts(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(p.max_attempts - 1);
    char reason[64];
    char want[64];
    uint64_t rng = 3;

    assert_true(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)) >= 0);
    assert_string_equal(reason, "");

    f.attempt = p.max_attempts;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)),
                     -1);
    snprintf(want, sizeof(want), "gave up after %d attempts", p.max_attempts);
    assert_string_equal(reason, want);

    /* One attempt in all: never a retry. */
    p.max_attempts = 1;
    f.attempt = 1;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), -1);
}

static void test_permanent(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(p.max_attempts);
    char reason[64];
    uint64_t rng = 3;

    /* Permanent is the more useful reason, even on the last attempt. */
    f.retriable = 0;
    f.http_status = 400;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)),
                     -1);
    assert_string_equal(reason, "permanent: HTTP 400");

    f.attempt = 1;
    f.http_status = 0; /* e.g. a reply too large to keep */
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)),
                     -1);
    assert_string_equal(reason, "permanent: no HTTP reply");

    /* A short buffer truncates; NULL is allowed. */
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, 5), -1);
    assert_string_equal(reason, "perm");
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), -1);
}

static void test_deadline(void **state)
{
    rl_retry_policy_t p = default_policy();
    rl_retry_failure_t f = retriable_failure(2);
    char reason[64], want[64];
    uint64_t rng = 9;

    p.deadline_ms = 60000;
    f.retry_after_ms = 1000;

    /* Starting one ms before the deadline still goes... */
    f.elapsed_ms = p.deadline_ms - f.retry_after_ms - 1;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)),
                     1000);

    /* ...starting on it does not. */
    f.elapsed_ms = p.deadline_ms - f.retry_after_ms;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, reason, sizeof(reason)),
                     -1);
    snprintf(want, sizeof(want), "deadline of %lld ms would pass",
             (long long)p.deadline_ms);
    assert_string_equal(reason, want);

    /* Already past it, even with no wait at all. */
    f.retry_after_ms = 0;
    f.elapsed_ms = p.deadline_ms + 5;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), -1);

    /* No deadline. */
    p.deadline_ms = 0;
    f.elapsed_ms = INT64_MAX;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), 0);
}

/* Extreme values must neither overflow (UBSan watches) nor misbehave. */
static void test_extremes(void **state)
{
    rl_retry_policy_t p = {.max_attempts = INT32_MAX,
                           .base_ms = INT64_MAX / 3,
                           .max_backoff_ms = INT64_MAX - 1,
                           .max_retry_after_ms = INT64_MAX,
                           .deadline_ms = INT64_MAX};
    rl_retry_failure_t f = retriable_failure(INT32_MAX - 1);
    uint64_t rng = 0;
    int i;

    for (i = 0; i < 100; i++) {
        int64_t d = rl_retry_next_delay(&p, &f, &rng, NULL, 0);

        assert_true(d == -1 || (d >= 0 && d <= p.max_backoff_ms));
    }
    f.retry_after_ms = INT64_MAX;
    f.elapsed_ms = 1;
    assert_int_equal(rl_retry_next_delay(&p, &f, &rng, NULL, 0), -1);
    f.attempt = -5; /* nonsense in, a bounded delay out */
    f.retry_after_ms = -1;
    assert_true(rl_retry_next_delay(&p, &f, &rng, NULL, 0) >= 0);
}

/* ---- Retry-After ----------------------------------------------------- */

/* The Unix time, in ms, of a UTC calendar time. */
static int64_t utc_ms(int year, int mon, int mday, int h, int m, int s)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = mday;
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm) * 1000;
}

static void test_retry_after_ms_header(void **state)
{
    assert_int_equal(rl_retry_after_ms("1500", NULL, 0), 1500);
    assert_int_equal(rl_retry_after_ms("0", NULL, 0), 0);
    assert_int_equal(rl_retry_after_ms(" \t42 ", NULL, 0), 42);
    assert_int_equal(rl_retry_after_ms("250.5", NULL, 0), 251);
    assert_int_equal(rl_retry_after_ms("250.001", NULL, 0), 251);
    assert_int_equal(rl_retry_after_ms("250.000", NULL, 0), 250);
    assert_int_equal(rl_retry_after_ms("99999999999999999999999999", NULL, 0),
                     INT64_MAX);
    assert_int_equal(rl_retry_after_ms("9223372036854775807.5", NULL, 0),
                     INT64_MAX);

    /* Garbage and negatives are not hints. */
    assert_int_equal(rl_retry_after_ms("-5", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("1e3", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("0x10", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("inf", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms(".5", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("5.", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("12 ms", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms("", NULL, 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, NULL, 0), -1);
}

static void test_retry_after_precedence(void **state)
{
    /* retry-after-ms wins when valid, else Retry-After is read. */
    assert_int_equal(rl_retry_after_ms("1500", "7", 0), 1500);
    assert_int_equal(rl_retry_after_ms("soon", "7", 0), 7000);
    assert_int_equal(rl_retry_after_ms("-1", "7", 0), 7000);
    assert_int_equal(rl_retry_after_ms(NULL, "7", 0), 7000);
    assert_int_equal(rl_retry_after_ms("soon", "later", 0), -1);
}

static void test_retry_after_seconds(void **state)
{
    assert_int_equal(rl_retry_after_ms(NULL, "120", 0), 120000);
    assert_int_equal(rl_retry_after_ms(NULL, "0", 0), 0);
    assert_int_equal(rl_retry_after_ms(NULL, " 3\t", 0), 3000);
    assert_int_equal(rl_retry_after_ms(NULL, "9223372036854776", 0),
                     INT64_MAX); /* seconds * 1000 saturates */
    assert_int_equal(rl_retry_after_ms(NULL, "99999999999999999999999", 0),
                     INT64_MAX);

    /* delta-seconds are whole and not signed. */
    assert_int_equal(rl_retry_after_ms(NULL, "-1", 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, "+1", 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, "1.5", 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, "5s", 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, "", 0), -1);
    assert_int_equal(rl_retry_after_ms(NULL, "   ", 0), -1);
}

static void test_retry_after_dates(void **state)
{
    int64_t now = utc_ms(1994, 11, 6, 8, 49, 0);
    int64_t later = utc_ms(1994, 11, 16, 8, 49, 37);

    /* The three forms of one instant. */
    assert_int_equal(
        rl_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:37 GMT", now), 37000);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Sunday, 06-Nov-94 08:49:37 GMT", now), 37000);
    assert_int_equal(rl_retry_after_ms(NULL, "Sun Nov  6 08:49:37 1994", now),
                     37000);

    /* The hint counts from now to the ms. */
    assert_int_equal(
        rl_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:49:37 GMT", now + 250),
        36750);

    /* Two-digit days in asctime, blanks around, other days and months. */
    assert_int_equal(rl_retry_after_ms(NULL, "Wed Nov 16 08:49:37 1994", now),
                     later - now);
    assert_int_equal(
        rl_retry_after_ms(NULL, "  Wed, 16 Nov 1994 08:49:37 GMT \t", now),
        later - now);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Thu, 29 Feb 1996 00:00:00 GMT", now),
        utc_ms(1996, 2, 29, 0, 0, 0) - now);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Fri, 31 Dec 9999 23:59:59 GMT", now),
        utc_ms(9999, 12, 31, 23, 59, 59) - now);

    /* A date already past means "now". */
    assert_int_equal(
        rl_retry_after_ms(NULL, "Sun, 06 Nov 1994 08:48:59 GMT", now), 0);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Thu, 01 Jan 1970 00:00:00 GMT", now), 0);
}

/* RFC 850's two-digit year: at most 50 years ahead of now, else the
 * century before. */
static void test_retry_after_two_digit_year(void **state)
{
    int64_t now = utc_ms(2026, 1, 1, 0, 0, 0);

    assert_int_equal(
        rl_retry_after_ms(NULL, "Thursday, 01-Jan-26 00:00:10 GMT", now),
        10000);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Wednesday, 01-Jan-76 00:00:00 GMT", now),
        utc_ms(2076, 1, 1, 0, 0, 0) - now);
    assert_int_equal(
        rl_retry_after_ms(NULL, "Saturday, 01-Jan-77 00:00:00 GMT", now), 0);
}

static void test_retry_after_garbage(void **state)
{
    static const char *const bad[] = {
        "Sun, 06 Nov 1994 08:49:37 PST",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Fri, 29 Feb 1900 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Fun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT x",
        "Sun, 06 Nov",
        "Sun",
        "Sundays, 06-Nov-94 08:49:37 GMT",
        "tomorrow",
        "06 Nov 1994 08:49:37 GMT",
        "Sun,06 Nov 1994 08:49:37 GMT",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (rl_retry_after_ms(NULL, bad[i], 0) != -1)
            fail_msg("accepted \"%s\"", bad[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_backoff_bounds_and_spread),
        cmocka_unit_test(test_backoff_growth),
        cmocka_unit_test(test_backoff_deterministic),
        cmocka_unit_test(test_backoff_odd_policy),
        cmocka_unit_test(test_hint_replaces_backoff),
        cmocka_unit_test(test_hint_ignored_when_cap_is_zero),
        cmocka_unit_test(test_max_attempts),
        cmocka_unit_test(test_permanent),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_extremes),
        cmocka_unit_test(test_retry_after_ms_header),
        cmocka_unit_test(test_retry_after_precedence),
        cmocka_unit_test(test_retry_after_seconds),
        cmocka_unit_test(test_retry_after_dates),
        cmocka_unit_test(test_retry_after_two_digit_year),
        cmocka_unit_test(test_retry_after_garbage),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
