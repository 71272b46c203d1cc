/*
 * test_api.c -- the public C API, call by call (single-threaded semantics).
 *
 * Each test opens its own strata (the embedded defaults, or a YAML file
 * written to a mkstemp file in /tmp), exercises one call or contract of
 * include/strata.h and asserts exact return codes and bytes. Value handles are
 * checked to outlive their entries (delete, overwrite, clear, invalidate,
 * strata_close): ASan turns a dangling handle into a failure. Every value is
 * released and every strata closed, so LeakSanitizer checks the library's
 * ownership rules too.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata.h"

/* ---- helpers ------------------------------------------------------------- */

static strata *open_defaults(void)
{
    char *err = NULL;
    strata *s = strata_open(NULL, &err);
    cr_assert_not_null(s, "strata_open(NULL): %s", err ? err : "(no message)");
    cr_assert_null(err);
    return s;
}

static strata *open_yaml(const char *yaml)
{
    char path[] = "/tmp/strata-test-api-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s\n--- yaml ---\n%s", err ? err : "?", yaml);
    return s;
}

static strata_cache *cache(strata *s, const char *name)
{
    strata_cache *c = strata_cache_get(s, name);
    cr_assert_not_null(c, "no cache '%s'", name);
    return c;
}

/* Assert that `key` holds exactly `val` (vlen bytes). */
static void expect_value(strata_cache *c, const void *key, size_t klen, const void *val,
                         size_t vlen)
{
    strata_value *v = (strata_value *)0x1;
    int rc = strata_get(c, key, klen, &v);
    cr_assert_eq(rc, STRATA_OK, "get: %s", strata_errname(rc));
    cr_assert_not_null(v);
    cr_assert_eq(strata_value_len(v), vlen);
    if (vlen) cr_assert_eq(memcmp(strata_value_data(v), val, vlen), 0);
    strata_value_release(v);
}

static void expect_miss(strata_cache *c, const void *key, size_t klen)
{
    strata_value *v = (strata_value *)0x1;
    int rc = strata_get(c, key, klen, &v);
    cr_assert_eq(rc, STRATA_MISS, "get: %s", strata_errname(rc));
    cr_assert_null(v, "a miss must set *out to NULL");
}

static void set_str(strata_cache *c, const char *key, const char *val)
{
    int rc = strata_set(c, key, strlen(key), val, strlen(val), NULL);
    cr_assert_eq(rc, STRATA_OK, "set %s: %s", key, strata_errname(rc));
}

static void fill(unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 8));
}

/* The injected clock: a counter the test moves (the sweeper reads it too). */
static _Atomic uint64_t fake_now = 1000000;
static uint64_t fake_clock(void *ud)
{
    return atomic_load((_Atomic uint64_t *)ud);
}

/* A loader that records its calls and answers "v:" + key. */
struct ld {
    int calls;
    int fail;           /* < 0: return this */
    int64_t ttl;        /* != 0: set opts->ttl_ms */
    char tagbuf[2][16]; /* tag strings live in ud */
    const char *tags[2];
    size_t ntags;     /* > 0: set opts->tags */
    int64_t seen_ttl; /* opts->ttl_ms the loader was given */
    size_t seen_ntags;
    char key[1024];
    size_t klen;
    strata_cache *reenter; /* non-NULL: call get_or_set on the same key */
    int reenter_rc;
    strata_value *reenter_v;
};

static int loader(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                  strata_set_opts *o)
{
    struct ld *l = ud;
    l->calls++;
    l->seen_ttl = o->ttl_ms;
    l->seen_ntags = o->ntags;
    l->klen = klen;
    memcpy(l->key, key, klen < sizeof l->key ? klen : sizeof l->key);
    if (l->reenter) {
        l->reenter_v = (strata_value *)0x1;
        l->reenter_rc =
            strata_get_or_set(l->reenter, key, klen, loader, ud, NULL, &l->reenter_v);
    }
    if (l->fail < 0) return l->fail;
    char *v = malloc(klen + 2);
    cr_assert_not_null(v);
    memcpy(v, "v:", 2);
    memcpy(v + 2, key, klen);
    *val = v;
    *vlen = klen + 2;
    if (l->ttl) o->ttl_ms = l->ttl;
    if (l->ntags) {
        for (size_t i = 0; i < l->ntags; i++)
            l->tags[i] = l->tagbuf[i];
        o->tags = l->tags;
        o->ntags = l->ntags;
    }
    return 0;
}

/* ---- set / get / delete ---------------------------------------------------- */

Test(api, set_then_get_returns_the_bytes)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "k", 1, "hello", 5, NULL), STRATA_OK);
    expect_value(c, "k", 1, "hello", 5);
    strata_close(s);
}

Test(api, get_of_absent_key_is_miss_with_null_out)
{
    strata *s = open_defaults();
    expect_miss(cache(s, "default"), "absent", 6);
    strata_close(s);
}

Test(api, delete_returns_ok_when_present_miss_when_absent)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_str(c, "k", "v");
    cr_assert_eq(strata_delete(c, "k", 1), STRATA_OK);
    expect_miss(c, "k", 1);
    cr_assert_eq(strata_delete(c, "k", 1), STRATA_MISS);
    cr_assert_eq(strata_delete(c, "never", 5), STRATA_MISS);
    strata_close(s);
}

Test(api, overwrite_replaces_value_and_keeps_one_item)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_str(c, "k", "first");
    set_str(c, "k", "the second value");
    expect_value(c, "k", 1, "the second value", 16);
    unsigned char big[3000];
    fill(big, sizeof big, 3);
    cr_assert_eq(strata_set(c, "k", 1, big, sizeof big, NULL), STRATA_OK);
    expect_value(c, "k", 1, big, sizeof big);
    set_str(c, "k", "small again");
    expect_value(c, "k", 1, "small again", 11);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.items, 1);
    strata_close(s);
}

Test(api, binary_keys_with_nul_bytes_are_distinct)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    const char k1[] = {'a', 0, 'b'}, k2[] = {'a', 0, 'c'}, k3[] = {'a'}, k4[] = {0};
    const char v1[] = {1, 0, 2}, v2[] = {0, 0, 0, 0};
    cr_assert_eq(strata_set(c, k1, 3, v1, 3, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, k2, 3, v2, 4, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, k4, 1, "zero", 4, NULL), STRATA_OK);
    expect_value(c, k1, 3, v1, 3);
    expect_value(c, k2, 3, v2, 4);
    expect_value(c, k4, 1, "zero", 4);
    expect_miss(c, k3, 1); /* a prefix up to the NUL is another key */
    expect_miss(c, "a\0b\0", 4);
    cr_assert_eq(strata_delete(c, k1, 3), STRATA_OK);
    expect_miss(c, k1, 3);
    expect_value(c, k2, 3, v2, 4);
    strata_close(s);
}

Test(api, empty_value_is_stored_and_returned_with_length_zero)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "null-empty", 10, NULL, 0, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, "ptr-empty", 9, "ignored", 0, NULL), STRATA_OK);
    expect_value(c, "null-empty", 10, NULL, 0);
    expect_value(c, "ptr-empty", 9, NULL, 0);
    cr_assert_eq(strata_delete(c, "null-empty", 10), STRATA_OK);
    strata_close(s);
}

Test(api, longest_key_works)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    size_t klen = 65535;
    unsigned char *k = malloc(klen);
    fill(k, klen, 9);
    cr_assert_eq(strata_set(c, k, klen, "v", 1, NULL), STRATA_OK);
    expect_value(c, k, klen, "v", 1);
    cr_assert_eq(strata_delete(c, k, klen), STRATA_OK);
    free(k);
    strata_close(s);
}

/* ---- value handles outlive their entries ------------------------------------ */

/* Sizes: a small value (copied into the handle) and a large one (a shared blob). */
static const size_t hsizes[] = {100, 4000};

static strata_value *get_ok(strata_cache *c, const char *key)
{
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, key, strlen(key), &v), STRATA_OK, "get %s", key);
    return v;
}

static void check_handle(strata_value *v, size_t n, unsigned seed)
{
    unsigned char *want = malloc(n);
    fill(want, n, seed);
    cr_assert_eq(strata_value_len(v), n);
    cr_assert_eq(memcmp(strata_value_data(v), want, n), 0, "handle bytes changed");
    free(want);
    strata_value_release(v);
}

static void put(strata_cache *c, const char *key, size_t n, unsigned seed,
                const char *tag)
{
    unsigned char *b = malloc(n);
    fill(b, n, seed);
    const char *tags[] = {tag};
    strata_set_opts o = {.ttl_ms = 0, .tags = tag ? tags : NULL, .ntags = tag ? 1 : 0};
    cr_assert_eq(strata_set(c, key, strlen(key), b, n, &o), STRATA_OK);
    free(b);
}

Test(api, value_handle_survives_delete_overwrite_clear_invalidate)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    for (size_t i = 0; i < 2; i++) {
        size_t n = hsizes[i];
        put(c, "del", n, 1, NULL);
        put(c, "ovw", n, 2, NULL);
        put(c, "clr", n, 3, NULL);
        put(c, "pat", n, 4, NULL);
        put(c, "tag", n, 5, "t1");
        strata_value *vd = get_ok(c, "del"), *vo = get_ok(c, "ovw"),
                     *vp = get_ok(c, "pat"), *vt = get_ok(c, "tag");
        cr_assert_eq(strata_delete(c, "del", 3), STRATA_OK);
        put(c, "ovw", n, 99, NULL);
        cr_assert_eq(strata_invalidate_pattern(c, "pat"), 1);
        const char *t1[] = {"t1"};
        cr_assert_eq(strata_invalidate_tags(c, t1, 1), 1);
        strata_value *vc = get_ok(c, "clr");
        cr_assert_eq(strata_clear(c), STRATA_OK);
        /* Writes reuse memory: churn so a dangling handle would see it. */
        for (int k = 0; k < 200; k++) {
            char key[16];
            snprintf(key, sizeof key, "churn%d", k);
            put(c, key, n, 77, NULL);
        }
        check_handle(vd, n, 1);
        check_handle(vo, n, 2);
        check_handle(vc, n, 3);
        check_handle(vp, n, 4);
        check_handle(vt, n, 5);
        strata_clear(c);
    }
    strata_close(s);
}

Test(api, value_handle_survives_strata_close)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    put(c, "small", hsizes[0], 1, NULL);
    put(c, "large", hsizes[1], 2, NULL);
    strata_value *a = get_ok(c, "small"), *b = get_ok(c, "large");
    struct ld l = {0};
    strata_value *g = NULL;
    cr_assert_eq(strata_get_or_set(c, "loaded", 6, loader, &l, NULL, &g),
                 STRATA_LOADED);
    strata_close(s);
    check_handle(a, hsizes[0], 1);
    check_handle(b, hsizes[1], 2);
    cr_assert_eq(strata_value_len(g), 8);
    cr_assert_eq(memcmp(strata_value_data(g), "v:loaded", 8), 0);
    strata_value_release(g);
}

/* ---- caches, names, errors ---------------------------------------------------- */

Test(api, cache_get_finds_the_embedded_caches_and_null_for_unknown)
{
    strata *s = open_defaults();
    strata_cache *d = strata_cache_get(s, "default"),
                 *se = strata_cache_get(s, "session"),
                 *st = strata_cache_get(s, "static");
    cr_assert_not_null(d);
    cr_assert_not_null(se);
    cr_assert_not_null(st);
    cr_assert(d != se && se != st && d != st);
    cr_assert_eq(strata_cache_get(s, "default"), d,
                 "the same name gives the same cache");
    cr_assert_null(strata_cache_get(s, "nope"));
    cr_assert_null(strata_cache_get(s, "Default"));
    cr_assert_null(strata_cache_get(s, ""));
    cr_assert_null(strata_cache_get(s, "http"), "http is not an embedded cache");
    /* The caches are separate key spaces. */
    set_str(d, "k", "in default");
    expect_miss(se, "k", 1);
    expect_miss(st, "k", 1);
    strata_close(s);
}

Test(api, cache_name_is_the_configured_name)
{
    strata *s = open_defaults();
    cr_assert_str_eq(strata_cache_name(cache(s, "default")), "default");
    cr_assert_str_eq(strata_cache_name(cache(s, "session")), "session");
    cr_assert_str_eq(strata_cache_name(cache(s, "static")), "static");
    strata_close(s);
    s = open_yaml("caches:\n  pages: { ttl: 10m }\n  a.b-c_9: {}\n");
    cr_assert_str_eq(strata_cache_name(cache(s, "pages")), "pages");
    cr_assert_str_eq(strata_cache_name(cache(s, "a.b-c_9")), "a.b-c_9");
    cr_assert_null(strata_cache_get(s, "default"),
                   "a caches: section names every cache");
    strata_close(s);
}

Test(api, strerror_and_errname_for_every_code)
{
    static const struct {
        int code;
        const char *name, *msg;
    } want[] = {
        {0, "STRATA_OK", "ok"},
        {1, "STRATA_MISS", "no live entry for this key"},
        {2, "STRATA_LOADED", "value computed by the loader"},
        {-1, "STRATA_EINVAL", "invalid argument"},
        {-2, "STRATA_ENOMEM", "out of memory"},
        {-3, "STRATA_E2BIG", "value larger than the cache can hold"},
        {-4, "STRATA_ENOTSUP", "not supported by this build or backend"},
        {-5, "STRATA_ETIMEDOUT", "timed out"},
        {-6, "STRATA_EBACKEND", "backend failure"},
        {-7, "STRATA_ELOADER", "loader failed; nothing was cached"},
        {-8, "STRATA_ECONFIG", "bad configuration"},
    };
    cr_assert_eq(STRATA_OK, 0);
    cr_assert_eq(STRATA_MISS, 1);
    cr_assert_eq(STRATA_LOADED, 2);
    cr_assert_eq(STRATA_EINVAL, -1);
    cr_assert_eq(STRATA_ENOMEM, -2);
    cr_assert_eq(STRATA_E2BIG, -3);
    cr_assert_eq(STRATA_ENOTSUP, -4);
    cr_assert_eq(STRATA_ETIMEDOUT, -5);
    cr_assert_eq(STRATA_EBACKEND, -6);
    cr_assert_eq(STRATA_ELOADER, -7);
    cr_assert_eq(STRATA_ECONFIG, -8);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        cr_assert_str_eq(strata_errname(want[i].code), want[i].name);
        cr_assert_str_eq(strata_strerror(want[i].code), want[i].msg);
    }
    static const int unknown[] = {3,   4,     100,        -9,
                                  -10, -1000, 2147483647, -2147483647 - 1};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        int u = unknown[i];
        cr_assert_str_eq(strata_errname(u), "STRATA_UNKNOWN", "code %d", u);
        const char *m = strata_strerror(u);
        cr_assert_not_null(m, "code %d", u);
        cr_assert_gt(strlen(m), 0, "code %d", u);
        for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
            cr_assert_str_neq(m, want[k].msg, "unknown code %d has %s's message", u,
                              want[k].name);
    }
}

Test(api, clear_removes_every_entry_of_that_cache_only)
{
    strata *s = open_defaults();
    strata_cache *d = cache(s, "default"), *st = cache(s, "static");
    set_str(d, "a", "1");
    set_str(d, "b", "2");
    put(d, "c", 2000, 1, "tag");
    set_str(st, "a", "static");
    cr_assert_eq(strata_clear(d), STRATA_OK);
    expect_miss(d, "a", 1);
    expect_miss(d, "b", 1);
    expect_miss(d, "c", 1);
    expect_value(st, "a", 1, "static", 6);
    strata_stats stats;
    strata_cache_stats(d, &stats);
    cr_assert_eq(stats.items, 0);
    cr_assert_eq(strata_clear(d), STRATA_OK, "clearing an empty cache is fine");
    set_str(d, "a", "again");
    expect_value(d, "a", 1, "again", 5);
    strata_close(s);
}

/* ---- get_or_set and memoize ---------------------------------------------------- */

Test(api, get_or_set_loads_then_hits)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    struct ld l = {0};
    strata_value *v = (strata_value *)0x1;
    cr_assert_eq(strata_get_or_set(c, "user:1", 6, loader, &l, NULL, &v),
                 STRATA_LOADED);
    cr_assert_eq(l.calls, 1);
    cr_assert_eq(l.klen, 6);
    cr_assert_eq(memcmp(l.key, "user:1", 6), 0);
    cr_assert_eq(strata_value_len(v), 8);
    cr_assert_eq(memcmp(strata_value_data(v), "v:user:1", 8), 0);
    strata_value_release(v);
    v = NULL;
    cr_assert_eq(strata_get_or_set(c, "user:1", 6, loader, &l, NULL, &v), STRATA_OK);
    cr_assert_eq(l.calls, 1, "a hit must not run the loader");
    cr_assert_eq(memcmp(strata_value_data(v), "v:user:1", 8), 0);
    strata_value_release(v);
    expect_value(c, "user:1", 6, "v:user:1", 8);
    /* A key that was set directly is a hit. */
    set_str(c, "user:2", "direct");
    cr_assert_eq(strata_get_or_set(c, "user:2", 6, loader, &l, NULL, &v), STRATA_OK);
    cr_assert_eq(l.calls, 1);
    cr_assert_eq(memcmp(strata_value_data(v), "direct", 6), 0);
    strata_value_release(v);
    strata_close(s);
}

Test(api, loader_error_returns_eloader_and_caches_nothing)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    struct ld l = {.fail = -42};
    strata_value *v = (strata_value *)0x1;
    cr_assert_eq(strata_get_or_set(c, "k", 1, loader, &l, NULL, &v), STRATA_ELOADER);
    cr_assert_null(v);
    cr_assert_eq(l.calls, 1);
    expect_miss(c, "k", 1);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.items, 0);
    cr_assert_eq(st.sets, 0);
    /* Nothing was cached: the next call runs the loader again. */
    cr_assert_eq(strata_get_or_set(c, "k", 1, loader, &l, NULL, &v), STRATA_ELOADER);
    cr_assert_eq(l.calls, 2);
    l.fail = 0;
    cr_assert_eq(strata_get_or_set(c, "k", 1, loader, &l, NULL, &v), STRATA_LOADED);
    cr_assert_eq(l.calls, 3);
    strata_value_release(v);
    expect_value(c, "k", 1, "v:k", 3);
    strata_close(s);
}

Test(api, loader_ttl_and_tags_are_honoured)
{
    strata *s = open_defaults();
    atomic_store(&fake_now, 1000000);
    strata_set_clock(s, fake_clock, &fake_now);
    strata_cache *c = cache(s, "default");
    struct ld l = {.ttl = 1000, .ntags = 2};
    strcpy(l.tagbuf[0], "product:7");
    strcpy(l.tagbuf[1], "prices");
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "p7", 2, loader, &l, NULL, &v), STRATA_LOADED);
    strata_value_release(v);
    cr_assert_eq(strata_get_or_set(c, "p8", 2, loader, &l, NULL, &v), STRATA_LOADED);
    strata_value_release(v);
    /* The tag strings the loader pointed at are gone now; strata kept copies. */
    memset(l.tagbuf, 'X', sizeof l.tagbuf);
    atomic_store(&fake_now, 1000000 + 999);
    expect_value(c, "p7", 2, "v:p7", 4);
    const char *prices[] = {"prices"};
    cr_assert_eq(strata_invalidate_tags(c, prices, 1), 2);
    expect_miss(c, "p7", 2);
    expect_miss(c, "p8", 2);
    /* ttl: reload without tags, alive at +999, gone at +1000. */
    l.ntags = 0;
    cr_assert_eq(strata_get_or_set(c, "p9", 2, loader, &l, NULL, &v), STRATA_LOADED);
    strata_value_release(v);
    atomic_store(&fake_now, 1000000 + 999 + 999);
    expect_value(c, "p9", 2, "v:p9", 4);
    atomic_store(&fake_now, 1000000 + 999 + 1000);
    expect_miss(c, "p9", 2);
    strata_close(s);
}

Test(api, get_or_set_opts_are_the_loaders_defaults)
{
    strata *s = open_defaults();
    atomic_store(&fake_now, 5000);
    strata_set_clock(s, fake_clock, &fake_now);
    strata_cache *c = cache(s, "default");
    const char *tags[] = {"base"};
    strata_set_opts o = {.ttl_ms = 2000, .tags = tags, .ntags = 1};
    struct ld l = {0};
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "a", 1, loader, &l, &o, &v), STRATA_LOADED);
    strata_value_release(v);
    cr_assert_eq(l.seen_ttl, 2000);
    cr_assert_eq(l.seen_ntags, 1);
    cr_assert_eq(strata_get_or_set(c, "b", 1, loader, &l, &o, &v), STRATA_LOADED);
    strata_value_release(v);
    cr_assert_eq(strata_invalidate_tags(c, tags, 1), 2);
    expect_miss(c, "a", 1);
    cr_assert_eq(strata_get_or_set(c, "c", 1, loader, &l,
                                   &(strata_set_opts){.ttl_ms = 2000}, &v),
                 STRATA_LOADED);
    strata_value_release(v);
    atomic_store(&fake_now, 5000 + 1999);
    expect_value(c, "c", 1, "v:c", 3);
    atomic_store(&fake_now, 5000 + 2000);
    expect_miss(c, "c", 1);
    strata_close(s);
}

Test(api, loader_reentering_its_own_key_gets_einval)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    struct ld l = {.reenter = c};
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "self", 4, loader, &l, NULL, &v), STRATA_LOADED);
    cr_assert_eq(l.reenter_rc, STRATA_EINVAL, "re-entrant load gave %s",
                 strata_errname(l.reenter_rc));
    cr_assert_null(l.reenter_v);
    cr_assert_eq(l.calls, 1);
    cr_assert_eq(memcmp(strata_value_data(v), "v:self", 6), 0);
    strata_value_release(v);
    expect_value(c, "self", 4, "v:self", 6);
    strata_close(s);
}

/* A loader that loads another key of the same cache: not re-entrance. */
static int outer_loader(void *ud, const void *key, size_t klen, void **val,
                        size_t *vlen, strata_set_opts *o)
{
    (void)key;
    (void)klen;
    (void)o;
    struct ld *l = ud;
    strata_value *inner = NULL;
    int rc = strata_get_or_set(l->reenter, "inner", 5, loader, l, NULL, &inner);
    l->reenter_rc = rc;
    if (rc != STRATA_LOADED && rc != STRATA_OK) return -1;
    *vlen = strata_value_len(inner);
    *val = malloc(*vlen);
    memcpy(*val, strata_value_data(inner), *vlen);
    strata_value_release(inner);
    return 0;
}

Test(api, loader_may_load_a_different_key)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    struct ld l = {.reenter = c};
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "outer", 5, outer_loader, &l, NULL, &v),
                 STRATA_LOADED);
    cr_assert_eq(l.reenter_rc, STRATA_LOADED);
    cr_assert_eq(strata_value_len(v), 7);
    cr_assert_eq(memcmp(strata_value_data(v), "v:inner", 7), 0);
    strata_value_release(v);
    expect_value(c, "inner", 5, "v:inner", 7);
    expect_value(c, "outer", 5, "v:inner", 7);
    strata_close(s);
}

Test(api, memoize_formats_the_key_and_loads_once_per_arguments)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    struct ld l = {0};
    strata_value *v = NULL;
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "price:%zu:%s:%d", (size_t)3,
                                "eur", 42),
                 STRATA_LOADED);
    cr_assert_eq(l.calls, 1);
    cr_assert_eq(l.klen, 14);
    cr_assert_eq(memcmp(l.key, "price:3:eur:42", 14), 0);
    cr_assert_eq(memcmp(strata_value_data(v), "v:price:3:eur:42", 16), 0);
    strata_value_release(v);
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "price:%zu:%s:%d", (size_t)3,
                                "eur", 42),
                 STRATA_OK);
    cr_assert_eq(l.calls, 1, "same arguments: no second load");
    strata_value_release(v);
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "price:%zu:%s:%d", (size_t)3,
                                "usd", 42),
                 STRATA_LOADED);
    cr_assert_eq(l.calls, 2, "different arguments: a new load");
    strata_value_release(v);
    /* The key is exactly the formatted string: a plain get finds it. */
    expect_value(c, "price:3:eur:42", 14, "v:price:3:eur:42", 16);
    strata_close(s);
}

Test(api, memoize_key_longer_than_256_bytes)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    char arg[601];
    for (size_t i = 0; i < 600; i++)
        arg[i] = (char)('a' + i % 26);
    arg[600] = '\0';
    struct ld l = {0};
    strata_value *v = NULL;
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "long:%s:%d", arg, 7),
                 STRATA_LOADED);
    cr_assert_eq(l.klen, 5 + 600 + 2);
    cr_assert_eq(memcmp(l.key, "long:", 5), 0);
    cr_assert_eq(memcmp(l.key + 5, arg, 600), 0);
    cr_assert_eq(memcmp(l.key + 605, ":7", 2), 0);
    cr_assert_eq(strata_value_len(v), 2 + 607);
    strata_value_release(v);
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "long:%s:%d", arg, 7),
                 STRATA_OK);
    cr_assert_eq(l.calls, 1);
    strata_value_release(v);
    /* Exactly 256 and 255 bytes: the boundary of the on-stack buffer. */
    arg[250] = '\0';
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "long:%s", arg),
                 STRATA_LOADED);
    cr_assert_eq(l.klen, 255);
    strata_value_release(v);
    arg[250] = 'x';
    arg[251] = '\0';
    cr_assert_eq(strata_memoize(c, loader, &l, NULL, &v, "long:%s", arg),
                 STRATA_LOADED);
    cr_assert_eq(l.klen, 256);
    cr_assert_eq(l.key[255], 'x');
    strata_value_release(v);
    cr_assert_eq(l.calls, 3);
    strata_close(s);
}
