/*
 * fuzz_range.c -- libFuzzer target for Range parsing. The first 8 bytes are
 * the representation's size; a 206 range must lie inside it.
 */
#include <stdint.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8) return 0;
    uint64_t len, f = 0, l = 0;
    memcpy(&len, data, 8);
    len >>= 16; /* keep sizes plausible but large */
    if (proxy_parse_range((const char *)data + 8, size - 8, len, &f, &l) == RANGE_OK)
        if (len == 0 || f > l || l >= len) __builtin_trap();
    return 0;
}
