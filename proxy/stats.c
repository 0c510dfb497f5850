/*
 * stats.c — log-linear latency histograms: 8 sub-buckets per power of two of microseconds,
 * so a quantile is within 12.5% of the true value at any scale, in constant memory.
 */
#include "proxy/stats.h"

static unsigned bucket_of(uint64_t us)
{
    if (us < HIST_SUB)
        return (unsigned)us;
    unsigned msb = 63u - (unsigned)__builtin_clzll(us); /* >= 3 */
    unsigned sub = (unsigned)(us >> (msb - 3)) & (HIST_SUB - 1);
    unsigned b = (msb - 2) * HIST_SUB + sub;
    return b < HIST_BUCKETS ? b : HIST_BUCKETS - 1;
}

uint64_t hist_bucket_floor(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned msb = b / HIST_SUB + 2;
    unsigned sub = b % HIST_SUB;
    return ((uint64_t)(HIST_SUB + sub)) << (msb - 3);
}

void hist_record(Histogram *h, uint64_t micros)
{
    stat_add(&h->counts[bucket_of(micros)], 1);
}

uint64_t hist_quantile(const Histogram *const *hs, size_t n, double q)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
            total += atomic_load_explicit(&hs[i]->counts[b], memory_order_relaxed);
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)total);
    if (rank >= total)
        rank = total - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        for (size_t i = 0; i < n; i++)
            seen += atomic_load_explicit(&hs[i]->counts[b], memory_order_relaxed);
        if (seen > rank) {
            /* Report the middle of the bucket. */
            uint64_t lo = hist_bucket_floor(b);
            uint64_t hi = b + 1 < HIST_BUCKETS ? hist_bucket_floor(b + 1) : lo;
            return lo + (hi - lo) / 2;
        }
    }
    return 0;
}
