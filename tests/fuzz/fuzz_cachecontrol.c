/*
 * fuzz_cachecontrol.c -- libFuzzer target for the Cache-Control parser.
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_cachecontrol.c src/proxy/cachecontrol.c -o fuzz_cc
 */
#include <stddef.h>
#include <stdint.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cc_directives cc;
    cc_init(&cc);
    cc_parse(&cc, (const char *)data, size);
    /* Invariants: deltas are absent or within [0, 2^31]. */
    const int64_t *d[] = {&cc.max_age,        &cc.s_maxage,  &cc.stale_while_revalidate,
                          &cc.stale_if_error, &cc.max_stale, &cc.min_fresh};
    for (size_t i = 0; i < sizeof d / sizeof *d; i++)
        if (*d[i] < -1 || *d[i] > CC_DELTA_MAX) __builtin_trap();
    return 0;
}
