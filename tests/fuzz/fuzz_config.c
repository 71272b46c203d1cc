/*
 * fuzz_config.c -- libFuzzer target for the YAML configuration: the input is
 * a whole file, read by both loaders from memory (config_load_buf and
 * config_load_caches_buf are config_load and config_load_caches after the
 * file was read).
 *
 * Invariants: an error is one "fuzz.yaml..." message and a zeroed output; a
 * whole-file load that succeeds satisfies the checks across sections (the
 * HTTP cache exists, per_user routes have an identity and a secret), and the
 * caches-only load then succeeds too, with the same caches (without the
 * built-in http one that the whole-file load may add).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/internal.h"

#define NAME "fuzz.yaml"

static int zeroed(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i]) return 0;
    return 1;
}

static void check_error(char *err, const void *out, size_t size)
{
    if (err && strncmp(err, NAME, strlen(NAME)) != 0) __builtin_trap();
    if (!zeroed(out, size)) __builtin_trap();
    free(err);
}

static void check_config(const struct config *c)
{
    if (c->caches.n == 0 || !config_cache_find(&c->caches, c->http.cache))
        __builtin_trap();
    for (size_t i = 0; i < c->http.n_routes; i++) {
        const struct config_route *r = &c->http.routes[i];
        if (!r->name || !r->path || r->line == 0) __builtin_trap();
        if (r->per_user && (r->user_from == CONFIG_USER_NONE || !c->http.user_secret))
            __builtin_trap();
        if ((r->user_from == CONFIG_USER_JWT) != (r->jwt_key != NULL)) __builtin_trap();
        if (r->user_from != CONFIG_USER_NONE && !r->user_from_name) __builtin_trap();
    }
    if (!c->server.listen || !c->admin.listen || !c->http.cache) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    struct config_caches cc;
    char *err = NULL;
    int full, caches;

    full = config_load_buf(NAME, (const char *)data, size, &c, &err);
    if (full != 0)
        check_error(err, &c, sizeof c);
    else
        check_config(&c);

    err = NULL;
    caches = config_load_caches_buf(NAME, (const char *)data, size, &cc, &err);
    if (caches != 0) {
        if (full == 0) __builtin_trap();
        check_error(err, &cc, sizeof cc);
    } else if (full == 0) {
        if (c.caches.n != cc.n && c.caches.n != cc.n + 1) __builtin_trap();
        for (size_t i = 0; i < cc.n; i++)
            if (strcmp(cc.v[i].name, c.caches.v[i].name) != 0 ||
                cc.v[i].max_memory != c.caches.v[i].max_memory)
                __builtin_trap();
    }
    if (caches == 0) config_caches_fini(&cc);
    if (full == 0) config_fini(&c);
    return 0;
}
