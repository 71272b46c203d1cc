/*
 * hist.h -- a fixed-bucket latency histogram that threads update without a
 * lock (relaxed atomic adds) and a scrape reads at any time. The buckets are
 * Prometheus' cumulative `le` bounds, shared by every histogram strata
 * exports: from 1 us (a memory-engine get) to 10 s (a slow origin).
 */
#ifndef STRATA_CORE_HIST_H
#define STRATA_CORE_HIST_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define HIST_BUCKETS 20

/* Upper bounds in ns; an observation counts in the first bucket whose bound
 * it does not exceed, or in the last (+Inf) slot. */
static const uint64_t hist_bounds_ns[HIST_BUCKETS] = {
    1000,      5000,      10000,      50000,      100000,     250000,      500000,
    1000000,   2500000,   5000000,    10000000,   25000000,   50000000,    100000000,
    250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};

struct hist {
    _Atomic uint64_t n[HIST_BUCKETS + 1]; /* per bucket, not cumulative */
    _Atomic uint64_t sum_ns;
};

static inline void hist_add(struct hist *h, uint64_t ns)
{
    unsigned i = 0;
    while (i < HIST_BUCKETS && ns > hist_bounds_ns[i])
        i++;
    atomic_fetch_add_explicit(&h->n[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

/* A plain copy for reading: sums of several histograms add up. */
struct hist_snap {
    uint64_t n[HIST_BUCKETS + 1];
    uint64_t sum_ns;
};

static inline void hist_read(const struct hist *h, struct hist_snap *into)
{
    for (unsigned i = 0; i <= HIST_BUCKETS; i++)
        into->n[i] += atomic_load_explicit(&h->n[i], memory_order_relaxed);
    into->sum_ns += atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}

static inline uint64_t hist_count(const struct hist_snap *s)
{
    uint64_t c = 0;
    for (unsigned i = 0; i <= HIST_BUCKETS; i++)
        c += s->n[i];
    return c;
}

static inline uint64_t hist_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
