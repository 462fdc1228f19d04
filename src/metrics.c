/*
 * ragline - counters and latency histograms.
 */
#include "ragline/metrics.h"
#include "ragline/log.h"

#include <math.h>

/*
 * Bucket b covers [lo, lo * 2^(1/8)) microseconds with lo = 2^(b/8):
 * an index from the base-2 logarithm, clamped to the table.
 */
static int bucket_of(double ms)
{
    double us = ms * 1000.0;
    int b;

    if (us < 1.0)
        return 0;
    b = (int)(log2(us) * 8.0);
    return b >= RL_HIST_BUCKETS ? RL_HIST_BUCKETS - 1 : b;
}

void rl_hist_add(rl_hist_t *hist, double ms)
{
    hist->buckets[bucket_of(ms)]++;
    hist->count++;
}

double rl_hist_quantile(const rl_hist_t *hist, double q)
{
    uint64_t rank, seen = 0;
    int b;

    if (!hist->count)
        return 0.0;
    rank = (uint64_t)ceil(q * (double)hist->count);
    if (rank < 1)
        rank = 1;
    for (b = 0; b < RL_HIST_BUCKETS; b++) {
        seen += hist->buckets[b];
        if (seen >= rank)
            break;
    }
    /* The middle of the bucket, geometrically, back in ms. */
    return exp2((b + 0.5) / 8.0) / 1000.0;
}

void rl_metrics_log(const rl_metrics_t *m, const char *tag)
{
    rl_info(tag,
            "consumed %llu, answered %llu, dead-lettered %llu "
            "(invalid %llu, backend %llu), in flight %llu (peak %llu), "
            "input stalled %llu and paused %llu time(s), "
            "latency p50 %.1f ms p99 %.1f ms, backend p50 %.1f ms",
            (unsigned long long)m->consumed, (unsigned long long)m->answered,
            (unsigned long long)m->dead_lettered,
            (unsigned long long)(m->by_class[RL_ERR_INVALID_JSON] +
                                 m->by_class[RL_ERR_INVALID_EVENT] +
                                 m->by_class[RL_ERR_LIMIT]),
            (unsigned long long)m->by_class[RL_ERR_BACKEND],
            (unsigned long long)m->inflight,
            (unsigned long long)m->inflight_peak, (unsigned long long)m->stalls,
            (unsigned long long)m->pauses, rl_hist_quantile(&m->total_ms, 0.5),
            rl_hist_quantile(&m->total_ms, 0.99),
            rl_hist_quantile(&m->backend_ms, 0.5));
}
