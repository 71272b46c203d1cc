/*
 * fuzz_normalize.c -- libFuzzer target for path normalisation.
 *   clang-14 -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Iinclude \
 *       tests/fuzz/fuzz_normalize.c src/proxy/normalize.c -o fuzz_norm
 * Invariants: never longer than the input; starts with "/"; idempotent; no
 * "/./" or "/../" segment survives.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = malloc(size + 1), *again = malloc(size + 1);
    size_t n = 0, m = 0;
    if (proxy_normalize_path((const char *)data, size, out, &n) == 0) {
        if (n > size || n == 0 || out[0] != '/') __builtin_trap();
        if (proxy_normalize_path(out, n, again, &m) != 0) __builtin_trap();
        if (m != n || memcmp(out, again, n) != 0) __builtin_trap();
        out[n] = '\0';
        if (strstr(out, "/./") || strstr(out, "/../")) __builtin_trap();
    }
    free(out);
    free(again);
    return 0;
}
