/*
 * fuzz_tagheader.c -- libFuzzer target for tag headers: every tag handed out
 * must satisfy the tag grammar and lie inside the input.
 */
#include <stdint.h>
#include <string.h>

#include "proxy/proxy.h"

struct ctx {
    const char *lo, *hi;
};

static int check(void *ud, const char *t, size_t len)
{
    struct ctx *c = ud;
    if (t < c->lo || t + len > c->hi || len == 0 || len > 256) __builtin_trap();
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ',' || ch == '"' || ch == '\\')
            __builtin_trap();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    enum tag_syntax syn = (enum tag_syntax)(data[0] % 3);
    struct ctx c = {(const char *)data + 1, (const char *)data + size};
    proxy_tags_parse(syn, (const char *)data + 1, size - 1, check, &c);
    return 0;
}
