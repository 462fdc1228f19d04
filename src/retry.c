/*
 * ragline - when to try a failed backend call again.
 *
 * The generator is splitmix64: one 64-bit word of state, every seed
 * (0 included) good, and cheap enough to draw once per retry.  Header
 * values are parsed by hand rather than with strtod() or strptime(),
 * which accept forms (hex, "inf", exponents, locale names) that no
 * server means and would turn garbage into a wait.
 */
#include "ragline/retry.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void rl_retry_policy_default(rl_retry_policy_t *policy)
{
    policy->max_attempts = 5;
    policy->base_ms = 200;
    policy->max_backoff_ms = 10000;
    policy->max_retry_after_ms = 30000;
    policy->deadline_ms = 120000;
}

rl_retry_class_t rl_retry_classify(int http_status, int transport_error)
{
    if (transport_error || http_status == 0)
        return RL_RETRY_RETRIABLE;
    if (http_status >= 500 && http_status <= 599)
        return RL_RETRY_RETRIABLE;
    switch (http_status) {
    case 408: /* request timeout */
    case 409: /* conflict: usually a lock that clears */
    case 424: /* TGI: the model shard failed */
    case 429: /* too many requests */
        return RL_RETRY_RETRIABLE;
    default:
        return RL_RETRY_PERMANENT;
    }
}

/* ---- The decision ---------------------------------------------------- */

static uint64_t next_random(uint64_t *state)
{
    uint64_t z;

    *state += UINT64_C(0x9e3779b97f4a7c15);
    z = *state;
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* A uniform draw in [0, n), n > 0.  Draws below 2^64 mod n are thrown
 * away so that every result is equally likely (no modulo bias). */
static uint64_t uniform_below(uint64_t *rng, uint64_t n)
{
    uint64_t reject_below = (0 - n) % n;
    uint64_t r = next_random(rng);

    while (r < reject_below)
        r = next_random(rng);
    return r % n;
}

/* min(max_backoff_ms, base_ms * 2^(attempt-1)), without overflowing. */
static int64_t backoff_ceiling(const rl_retry_policy_t *policy, int attempt)
{
    int64_t base = policy->base_ms;
    int64_t cap = policy->max_backoff_ms;
    int shift = attempt > 1 ? attempt - 1 : 0;

    if (base <= 0 || cap <= 0)
        return 0;
    /* base << shift > cap exactly when base > cap >> shift. */
    if (shift >= 62 || base > (cap >> shift))
        return cap;
    return base << shift;
}

__attribute__((format(printf, 3, 4))) static int64_t
give_up(char *reason, size_t reason_size, const char *fmt, ...)
{
    va_list ap;

    if (reason && reason_size > 0) {
        va_start(ap, fmt);
        vsnprintf(reason, reason_size, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int64_t rl_retry_next_delay(const rl_retry_policy_t *policy,
                            const rl_retry_failure_t *failure, uint64_t *rng,
                            char *reason, size_t reason_size)
{
    int64_t elapsed = failure->elapsed_ms > 0 ? failure->elapsed_ms : 0;
    int64_t delay;

    if (reason && reason_size > 0)
        reason[0] = '\0';

    if (!failure->retriable) {
        if (failure->http_status > 0)
            return give_up(reason, reason_size, "permanent: HTTP %d",
                           failure->http_status);
        return give_up(reason, reason_size, "permanent: no HTTP reply");
    }
    if (failure->attempt >= policy->max_attempts)
        return give_up(reason, reason_size, "gave up after %d attempts",
                       failure->attempt);

    /* The server knows its own load better than a guess does; a cap of
     * 0 or less means its hints are not trusted at all. */
    if (failure->retry_after_ms >= 0 && policy->max_retry_after_ms > 0) {
        delay = failure->retry_after_ms;
        if (delay > policy->max_retry_after_ms)
            delay = policy->max_retry_after_ms;
    } else {
        uint64_t span = (uint64_t)backoff_ceiling(policy, failure->attempt);

        delay = (int64_t)uniform_below(rng, span + 1);
    }

    /* A retry that starts with no budget left could only fail late. */
    if (policy->deadline_ms > 0 && delay >= policy->deadline_ms - elapsed)
        return give_up(reason, reason_size, "deadline of %lld ms would pass",
                       (long long)policy->deadline_ms);
    return delay;
}

/* ---- Retry-After ----------------------------------------------------- */

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void skip_blanks(const char **p)
{
    while (is_blank(**p))
        (*p)++;
}

/* Only blanks may follow what was parsed. */
static int at_end(const char *p)
{
    skip_blanks(&p);
    return *p == '\0';
}

static int64_t saturating_mul(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_mul_overflow(a, b, &r))
        return INT64_MAX;
    return r;
}

static int64_t saturating_add(int64_t a, int64_t b)
{
    int64_t r;

    if (__builtin_add_overflow(a, b, &r))
        return INT64_MAX;
    return r;
}

/* Reads one or more digits as a non-negative count, saturating.
 * @returns 0, or -1 if *p does not start with a digit. */
static int take_count(const char **p, int64_t *value)
{
    int64_t v = 0;

    if (!is_digit(**p))
        return -1;
    while (is_digit(**p)) {
        v = saturating_add(saturating_mul(v, 10), **p - '0');
        (*p)++;
    }
    *value = v;
    return 0;
}

/* "1500" or "1500.25"; a fraction rounds up, so the hint is never cut. */
static int64_t parse_millis(const char *s)
{
    int64_t ms;
    int round_up = 0;

    skip_blanks(&s);
    if (take_count(&s, &ms) != 0)
        return -1;
    if (*s == '.') {
        s++;
        if (!is_digit(*s))
            return -1;
        for (; is_digit(*s); s++)
            round_up |= *s != '0';
    }
    if (!at_end(s))
        return -1;
    return saturating_add(ms, round_up);
}

/* Reads exactly @p min to @p max digits into an int. */
static int take_digits(const char **p, int min, int max, int *value)
{
    int n, v = 0;

    for (n = 0; n < max && is_digit(**p); n++, (*p)++)
        v = v * 10 + (**p - '0');
    if (n < min)
        return -1;
    *value = v;
    return 0;
}

/* Consumes @p lit if *p starts with it (case matters: "GMT"). */
static int take_literal(const char **p, const char *lit)
{
    size_t len = strlen(lit);

    if (strncmp(*p, lit, len) != 0)
        return -1;
    *p += len;
    return 0;
}

static int is_letter(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Matches one of @p words (case-insensitively) as a whole word.
 * @returns its index, or -1. */
static int take_word(const char **p, const char *const *words, int count)
{
    int i;

    for (i = 0; i < count; i++) {
        size_t len = strlen(words[i]);

        /* A shorter *p differs at its NUL, so (*p)[len] is in bounds. */
        if (strncasecmp(*p, words[i], len) == 0 && !is_letter((*p)[len])) {
            *p += len;
            return i;
        }
    }
    return -1;
}

static const char *const short_days[] = {"Sun", "Mon", "Tue", "Wed",
                                         "Thu", "Fri", "Sat"};
static const char *const long_days[] = {"Sunday",    "Monday",   "Tuesday",
                                        "Wednesday", "Thursday", "Friday",
                                        "Saturday"};
static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int take_month(const char **p, struct tm *tm)
{
    tm->tm_mon = take_word(p, months, 12);
    return tm->tm_mon < 0 ? -1 : 0;
}

/* "08:49:37" */
static int take_time(const char **p, struct tm *tm)
{
    if (take_digits(p, 2, 2, &tm->tm_hour) != 0 || take_literal(p, ":") != 0 ||
        take_digits(p, 2, 2, &tm->tm_min) != 0 || take_literal(p, ":") != 0 ||
        take_digits(p, 2, 2, &tm->tm_sec) != 0)
        return -1;
    return 0;
}

/* ", 06 Nov 1994 08:49:37 GMT", after "Sun" */
static int take_imf_rest(const char **p, struct tm *tm)
{
    int year;

    if (take_literal(p, ", ") != 0 || take_digits(p, 1, 2, &tm->tm_mday) != 0 ||
        take_literal(p, " ") != 0 || take_month(p, tm) != 0 ||
        take_literal(p, " ") != 0 || take_digits(p, 4, 4, &year) != 0 ||
        take_literal(p, " ") != 0 || take_time(p, tm) != 0 ||
        take_literal(p, " GMT") != 0)
        return -1;
    tm->tm_year = year - 1900;
    return 0;
}

/* RFC 9110: a two-digit year that would be more than 50 years ahead
 * belongs to the century before. */
static int full_year(int yy, int64_t now_unix_ms)
{
    time_t now = (time_t)(now_unix_ms / 1000);
    struct tm now_tm;
    int this_year, year;

    if (!gmtime_r(&now, &now_tm))
        return 1900 + yy;
    this_year = now_tm.tm_year + 1900;
    year = this_year - this_year % 100 + yy;
    if (year > this_year + 50)
        year -= 100;
    return year;
}

/* ", 06-Nov-94 08:49:37 GMT", after "Sunday" */
static int take_rfc850_rest(const char **p, struct tm *tm, int64_t now_unix_ms)
{
    int yy;

    if (take_literal(p, ", ") != 0 || take_digits(p, 1, 2, &tm->tm_mday) != 0 ||
        take_literal(p, "-") != 0 || take_month(p, tm) != 0 ||
        take_literal(p, "-") != 0 || take_digits(p, 2, 2, &yy) != 0 ||
        take_literal(p, " ") != 0 || take_time(p, tm) != 0 ||
        take_literal(p, " GMT") != 0)
        return -1;
    tm->tm_year = full_year(yy, now_unix_ms) - 1900;
    return 0;
}

/* " Nov  6 08:49:37 1994", after "Sun" */
static int take_asctime_rest(const char **p, struct tm *tm)
{
    int year;

    if (take_literal(p, " ") != 0 || take_month(p, tm) != 0 ||
        take_literal(p, " ") != 0)
        return -1;
    if (**p == ' ') /* the day is padded with a space, not a zero */
        (*p)++;
    if (take_digits(p, 1, 2, &tm->tm_mday) != 0 || take_literal(p, " ") != 0 ||
        take_time(p, tm) != 0 || take_literal(p, " ") != 0 ||
        take_digits(p, 4, 4, &year) != 0)
        return -1;
    tm->tm_year = year - 1900;
    return 0;
}

static int days_in_month(int mon, int year)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return mon == 1 && leap ? 29 : days[mon];
}

/* timegm() would quietly carry "Feb 31" into March; refuse it instead.
 * A second of 60 is a leap second and allowed. */
static int valid_fields(const struct tm *tm)
{
    return tm->tm_mday >= 1 &&
           tm->tm_mday <= days_in_month(tm->tm_mon, tm->tm_year + 1900) &&
           tm->tm_hour <= 23 && tm->tm_min <= 59 && tm->tm_sec <= 60;
}

/* @returns 0 and the date in *unix_s, or -1 for anything else. */
static int parse_http_date(const char *s, int64_t now_unix_ms, int64_t *unix_s)
{
    struct tm tm;
    int rc;

    memset(&tm, 0, sizeof(tm));
    skip_blanks(&s);

    /* The weekday tells which form follows; RFC 9110 lets a recipient
     * ignore whether it matches the date, and so does this. */
    if (take_word(&s, long_days, 7) >= 0)
        rc = take_rfc850_rest(&s, &tm, now_unix_ms);
    else if (take_word(&s, short_days, 7) < 0)
        rc = -1;
    else if (*s == ',')
        rc = take_imf_rest(&s, &tm);
    else
        rc = take_asctime_rest(&s, &tm);

    if (rc != 0 || !at_end(s) || !valid_fields(&tm))
        return -1;
    /* The fields are in range, so timegm() cannot fail here. */
    *unix_s = (int64_t)timegm(&tm);
    return 0;
}

/* Delta-seconds ("120") or an HTTP-date, as ms from now. */
static int64_t parse_retry_after(const char *s, int64_t now_unix_ms)
{
    const char *p = s;
    int64_t seconds, date_ms, delta;

    skip_blanks(&p);
    if (is_digit(*p)) {
        if (take_count(&p, &seconds) != 0 || !at_end(p))
            return -1;
        return saturating_mul(seconds, 1000);
    }

    if (parse_http_date(s, now_unix_ms, &seconds) != 0)
        return -1;
    date_ms = seconds * 1000; /* years 0-9999 fit many times over */
    if (date_ms <= now_unix_ms)
        return 0;
    if (__builtin_sub_overflow(date_ms, now_unix_ms, &delta))
        return INT64_MAX;
    return delta;
}

int64_t rl_retry_after_ms(const char *retry_after_ms_header,
                          const char *retry_after_header, int64_t now_unix_ms)
{
    int64_t ms = -1;

    if (retry_after_ms_header)
        ms = parse_millis(retry_after_ms_header);
    if (ms < 0 && retry_after_header)
        ms = parse_retry_after(retry_after_header, now_unix_ms);
    return ms;
}
