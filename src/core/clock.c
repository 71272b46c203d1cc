/*
 * clock.c -- the one clock of the engine. Expiry reads CLOCK_MONOTONIC_COARSE
 * (a few ns through the vDSO; its resolution is the kernel tick, at most a
 * few ms) unless the owner installed a test clock.
 */
#include <time.h>

#include "core/core.h"

uint64_t core_clock_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t core_clock_now(const core_clock *clk)
{
    if (clk && clk->fn) return clk->fn(clk->ud);
    return core_clock_real_ms();
}
