/*
 * test_badinput.c -- bad arguments and bad configuration: every public call
 * answers with a return code (never a crash), changes nothing, and a failed
 * strata_open() says where the problem is ("PATH:LINE: ...").
 *
 * The library is built with ASan+UBSan in CI, so a call that reads through a
 * NULL or past a buffer here fails the test even when it returns the right
 * code.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata.h"

/* ---- helpers ------------------------------------------------------------- */

static char *tmpyaml(const char *yaml)
{
    char path[] = "/tmp/strata-test-badinput-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    return strdup(path);
}

static strata *open_yaml(const char *yaml)
{
    char *path = tmpyaml(yaml), *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    free(path);
    cr_assert_not_null(s, "strata_open: %s\n--- yaml ---\n%s", err ? err : "?", yaml);
    return s;
}

static strata *open_defaults(void)
{
    strata *s = strata_open(NULL, NULL);
    cr_assert_not_null(s);
    return s;
}

static strata_cache *cache(strata *s, const char *name)
{
    strata_cache *c = strata_cache_get(s, name);
    cr_assert_not_null(c, "no cache '%s'", name);
    return c;
}

static int loads;
static int loader(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                  strata_set_opts *o)
{
    (void)key;
    (void)klen;
    (void)o;
    loads++;
    size_t n = ud ? *(size_t *)ud : 1;
    *val = calloc(1, n);
    *vlen = n;
    return 0;
}

/* Expect strata_open(yaml) to fail with "PATH:LINE: " and `needle`. */
static void open_fails_at(const char *yaml, unsigned line, const char *needle)
{
    char *path = tmpyaml(yaml), *err = NULL, *prefix = NULL;
    strata *s = strata_open(path, &err);
    cr_assert_null(s, "strata_open accepted:\n%s", yaml);
    cr_assert_not_null(err, "no message");
    cr_assert(asprintf(&prefix, "%s:%u: ", path, line) > 0);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
              "'%s' does not start with '%s'", err, prefix);
    cr_assert(strstr(err, needle), "'%s' does not contain '%s'", err, needle);
    free(err);
    /* The message pointer may be NULL: the same failure, no message, no leak. */
    cr_assert_null(strata_open(path, NULL));
    free(prefix);
    unlink(path);
    free(path);
}

static void expect_absent(strata_cache *c, const void *key, size_t klen)
{
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, key, klen, &v), STRATA_MISS);
    cr_assert_null(v);
}

/* ---- NULL handles ------------------------------------------------------------- */

Test(badinput, null_cache_is_einval_everywhere)
{
    strata_value *v = (strata_value *)0x1;
    const char *tags[] = {"t"};
    loads = 0;
    cr_assert_eq(strata_set(NULL, "k", 1, "v", 1, NULL), STRATA_EINVAL);
    cr_assert_eq(strata_get(NULL, "k", 1, &v), STRATA_EINVAL);
    cr_assert_null(v, "*out must be NULL on error");
    cr_assert_eq(strata_delete(NULL, "k", 1), STRATA_EINVAL);
    v = (strata_value *)0x1;
    cr_assert_eq(strata_get_or_set(NULL, "k", 1, loader, NULL, NULL, &v),
                 STRATA_EINVAL);
    cr_assert_null(v);
    v = (strata_value *)0x1;
    cr_assert_eq(strata_memoize(NULL, loader, NULL, NULL, &v, "k:%d", 1),
                 STRATA_EINVAL);
    cr_assert_null(v);
    cr_assert_eq(strata_invalidate_pattern(NULL, "*"), STRATA_EINVAL);
    cr_assert_eq(strata_invalidate_tags(NULL, tags, 1), STRATA_EINVAL);
    cr_assert_eq(strata_clear(NULL), STRATA_EINVAL);
    cr_assert_eq(loads, 0, "a call that fails synchronously never calls the loader");
    cr_assert_null(strata_cache_get(NULL, "default"));
    cr_assert_null(strata_cache_name(NULL));
}

Test(badinput, null_strata_and_value_are_noops)
{
    strata_close(NULL);
    strata_value_release(NULL);
    strata_set_clock(NULL, NULL, NULL);
    strata *s = open_defaults();
    cr_assert_null(strata_cache_get(s, NULL));
    strata_close(s);
}

/* ---- keys --------------------------------------------------------------------- */

Test(badinput, null_key_empty_key_and_oversized_key)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    size_t big = 65536;
    char *k = calloc(1, big);
    strata_value *v = (strata_value *)0x1;
    struct {
        const void *key;
        size_t klen;
    } bad[] = {{NULL, 1}, {NULL, 0}, {"k", 0}, {k, big}, {k, (size_t)-1}};
    loads = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(strata_set(c, bad[i].key, bad[i].klen, "v", 1, NULL),
                     STRATA_EINVAL, "set #%zu", i);
        v = (strata_value *)0x1;
        cr_assert_eq(strata_get(c, bad[i].key, bad[i].klen, &v), STRATA_EINVAL,
                     "get #%zu", i);
        cr_assert_null(v);
        cr_assert_eq(strata_delete(c, bad[i].key, bad[i].klen), STRATA_EINVAL,
                     "delete #%zu", i);
        v = (strata_value *)0x1;
        cr_assert_eq(
            strata_get_or_set(c, bad[i].key, bad[i].klen, loader, NULL, NULL, &v),
            STRATA_EINVAL, "get_or_set #%zu", i);
        cr_assert_null(v);
    }
    cr_assert_eq(loads, 0);
    v = (strata_value *)0x1;
    cr_assert_eq(strata_memoize(c, loader, NULL, NULL, &v, "%s", ""), STRATA_EINVAL,
                 "memoize to an empty key");
    cr_assert_eq(strata_memoize(c, loader, NULL, NULL, &v, NULL), STRATA_EINVAL);
    cr_assert_eq(loads, 0);
    /* 65535 is the longest key; one more is refused. */
    cr_assert_eq(strata_set(c, k, big - 1, "v", 1, NULL), STRATA_OK);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.items, 1);
    cr_assert_eq(st.sets, 1);
    free(k);
    strata_close(s);
}

/* ---- out, loader, value -------------------------------------------------------- */

Test(badinput, null_out_and_null_loader)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, NULL), STRATA_OK);
    loads = 0;
    cr_assert_eq(strata_get(c, "k", 1, NULL), STRATA_EINVAL);
    cr_assert_eq(strata_get_or_set(c, "n", 1, loader, NULL, NULL, NULL), STRATA_EINVAL);
    cr_assert_eq(strata_memoize(c, loader, NULL, NULL, NULL, "n%d", 1), STRATA_EINVAL);
    strata_value *v = (strata_value *)0x1;
    cr_assert_eq(strata_get_or_set(c, "n", 1, NULL, NULL, NULL, &v), STRATA_EINVAL);
    cr_assert_null(v);
    cr_assert_eq(strata_memoize(c, NULL, NULL, NULL, &v, "n%d", 1), STRATA_EINVAL);
    cr_assert_eq(loads, 0);
    expect_absent(c, "n", 1);
    expect_absent(c, "n1", 2);
    strata_close(s);
}

Test(badinput, null_value_with_length_is_einval_and_stores_nothing)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "k", 1, NULL, 5, NULL), STRATA_EINVAL);
    expect_absent(c, "k", 1);
    cr_assert_eq(strata_set(c, "k", 1, "old", 3, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, "k", 1, NULL, 1, NULL), STRATA_EINVAL);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "k", 1, &v), STRATA_OK,
                 "a refused set keeps the old value");
    cr_assert_eq(memcmp(strata_value_data(v), "old", 3), 0);
    strata_value_release(v);
    strata_close(s);
}

Test(badinput, value_larger_than_max_memory_is_e2big)
{
    strata *s = open_yaml("caches:\n  tiny:\n    max_memory: 1MB\n");
    strata_cache *c = cache(s, "tiny");
    size_t n = 2u << 20;
    unsigned char *big = calloc(1, n);
    cr_assert_eq(strata_set(c, "big", 3, big, n, NULL), STRATA_E2BIG);
    expect_absent(c, "big", 3);
    /* Exactly max_memory cannot fit either: keys and metadata count too. */
    cr_assert_eq(strata_set(c, "big", 3, big, 1u << 20, NULL), STRATA_E2BIG);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.items, 0);
    cr_assert_eq(st.sets, 0);
    /* A value that fits is fine. */
    cr_assert_eq(strata_set(c, "ok", 2, big, 100000, NULL), STRATA_OK);
    /* get_or_set returns a too-large value once, without caching it. */
    loads = 0;
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "huge", 4, loader, &n, NULL, &v), STRATA_LOADED);
    cr_assert_eq(strata_value_len(v), n);
    strata_value_release(v);
    expect_absent(c, "huge", 4);
    cr_assert_eq(strata_get_or_set(c, "huge", 4, loader, &n, NULL, &v), STRATA_LOADED);
    strata_value_release(v);
    cr_assert_eq(loads, 2);
    free(big);
    strata_close(s);
}

Test(badinput, value_that_cannot_fit_beside_the_index_is_e2big)
{
    /* max_memory counts the cache's own index too, so a value that fits in
     * max_memory but not beside the index can never be held. The set must say so
     * (E2BIG) and leave the other entries alone -- not answer OK, flush the cache and
     * drop it. */
    strata *s = open_yaml("caches:\n  tiny:\n    max_memory: 1MB\n");
    strata_cache *c = cache(s, "tiny");
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "s%d", i);
        cr_assert_eq(strata_set(c, k, strlen(k), "small", 5, NULL), STRATA_OK);
    }
    /* The largest value that can never fit: everything max_memory leaves
     * once the cache's own index and ghost are counted, plus one byte. */
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "s%d", i);
        cr_assert_eq(strata_delete(c, k, strlen(k)), STRATA_OK);
    }
    strata_stats st0;
    strata_cache_stats(c, &st0);
    uint64_t meta = st0.bytes; /* index and ghost only */
    for (int i = 0; i < 10; i++) {
        char k[8];
        snprintf(k, sizeof k, "s%d", i);
        cr_assert_eq(strata_set(c, k, strlen(k), "small", 5, NULL), STRATA_OK);
    }
    size_t n = (size_t)(st0.max_bytes - meta + 1);
    unsigned char *big = calloc(1, n);
    int rc = strata_set(c, "big", 3, big, n, NULL);
    strata_value *v = NULL;
    int g = strata_get(c, "big", 3, &v);
    strata_value_release(v);
    strata_stats st;
    strata_cache_stats(c, &st);
    free(big);
    strata_close(s); /* before asserting: a failure reports no leak */
    cr_assert(rc != STRATA_OK || g == STRATA_OK,
              "set answered OK but the value is not stored (items %lu, evictions %lu)",
              (unsigned long)st.items, (unsigned long)st.evictions);
    cr_assert_eq(rc, STRATA_E2BIG, "set gave %s", strata_errname(rc));
    cr_assert_eq(st.evictions, 0, "a refused set must not evict");
    cr_assert_eq(st.items, 10);
}

/* ---- tags ---------------------------------------------------------------------- */

Test(badinput, bad_tags_are_einval)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    char t257[258], t256[257];
    memset(t257, 'a', 257);
    t257[257] = '\0';
    memset(t256, 'b', 256);
    t256[256] = '\0';
    const char *bad[] = {"",   "a b",       "a,b",     "a\"b", "a\\b",
                         t257, "tab\there", "del\x7f", "nl\n", "\xc3\xa9t\xc3\xa9"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *tags[] = {"good", bad[i]};
        strata_set_opts o = {.tags = tags, .ntags = 2};
        cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_EINVAL, "tag #%zu", i);
        cr_assert_eq(strata_invalidate_tags(c, tags, 2), STRATA_EINVAL, "tag #%zu", i);
        expect_absent(c, "k", 1);
    }
    const char *null_tag[] = {NULL};
    strata_set_opts o = {.tags = null_tag, .ntags = 1};
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_EINVAL);
    cr_assert_eq(strata_invalidate_tags(c, null_tag, 1), STRATA_EINVAL);
    o = (strata_set_opts){.tags = NULL, .ntags = 1};
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_EINVAL);
    cr_assert_eq(strata_invalidate_tags(c, NULL, 1), STRATA_EINVAL);
    cr_assert_eq(strata_invalidate_tags(c, NULL, 0), 0);
    expect_absent(c, "k", 1);

    /* The edges that are valid: 256 bytes, the printable specials, 64 tags. */
    const char *good[] = {t256, "a", "user:42", "~!#$%&'()*+-./;<=>?@[]^_`{|}"};
    o = (strata_set_opts){.tags = good, .ntags = 4};
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_OK);
    cr_assert_eq(strata_invalidate_tags(c, &good[0], 1), 1);
    expect_absent(c, "k", 1);
    strata_close(s);
}

Test(badinput, at_most_64_tags)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    char names[65][8];
    const char *tags[65];
    for (int i = 0; i < 65; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        tags[i] = names[i];
    }
    strata_set_opts o = {.tags = tags, .ntags = 65};
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_EINVAL);
    expect_absent(c, "k", 1);
    o.ntags = 64;
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_OK);
    cr_assert_eq(strata_invalidate_tags(c, &tags[63], 1), 1);
    expect_absent(c, "k", 1);
    strata_close(s);
}

/* ---- globs ---------------------------------------------------------------------- */

Test(badinput, bad_globs_are_einval_and_remove_nothing)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "abc", 3, "v", 1, NULL), STRATA_OK);
    const char *bad[] = {"[abc", "abc\\", "[", "[^", "[!", "a[b\\", "*[a-"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(strata_invalidate_pattern(c, bad[i]), STRATA_EINVAL, "glob '%s'",
                     bad[i]);
    cr_assert_eq(strata_invalidate_pattern(c, NULL), STRATA_EINVAL);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "abc", 3, &v), STRATA_OK, "a bad glob removed an entry");
    strata_value_release(v);
    strata_close(s);
}

/* ---- strata_open ------------------------------------------------------------------
 */

Test(badinput, unknown_cache_name_is_null)
{
    strata *s = open_yaml("caches:\n  only: {}\n");
    cr_assert_null(strata_cache_get(s, "default"));
    cr_assert_null(strata_cache_get(s, "onl"));
    cr_assert_null(strata_cache_get(s, "only "));
    cr_assert_not_null(strata_cache_get(s, "only"));
    strata_close(s);
}

Test(badinput, open_missing_file)
{
    const char *path = "/tmp/strata-test-badinput-does-not-exist.yaml";
    unlink(path);
    char *err = NULL;
    cr_assert_null(strata_open(path, &err));
    cr_assert_not_null(err);
    cr_assert(strncmp(err, path, strlen(path)) == 0, "'%s' does not name the file",
              err);
    cr_assert(strstr(err, "No such file or directory"), "%s", err);
    free(err);
    cr_assert_null(strata_open(path, NULL));
    err = NULL;
    cr_assert_null(strata_open("/tmp", &err), "a directory is not a config file");
    cr_assert_not_null(err);
    cr_assert(strstr(err, "/tmp"), "%s", err);
    free(err);
}

Test(badinput, open_malformed_yaml)
{
    open_fails_at("caches:\n  default: { ttl: 5m\n  other: {}\n", 3, "YAML");
    open_fails_at("caches:\n  default:\n    ttl: [5m\n", 4, "YAML");
}

Test(badinput, open_unknown_key)
{
    open_fails_at("caches:\n  default:\n    tll: 5m\n", 3, "unknown key 'tll'");
    open_fails_at("cachez:\n  default: {}\n", 1, "unknown section 'cachez'");
}

Test(badinput, open_bare_number_ttl)
{
    open_fails_at("caches:\n  default:\n    max_memory: 1MB\n    ttl: 300\n", 4,
                  "bare number");
    open_fails_at("caches:\n  a: { max_memory: 1024 }\n", 2, "bare number");
}

Test(badinput, open_redis_urls_are_checked)
{
    open_fails_at("caches:\n  default: {}\n  session:\n    backend: redis\n"
                  "    url: \"redis-sentinel://127.0.0.1:26379\"\n",
                  3, "no master name");
    open_fails_at("caches:\n  s:\n    backend: redis\n"
                  "    url: \"redis-sentinel://a:1,b:x/m/0\"\n",
                  2, "bad port");
    open_fails_at(
        "caches:\n  s:\n    backend: tiered\n    url: \"redis://h:99999/2\"\n", 2,
        "bad port");
    open_fails_at("caches:\n  s:\n    backend: redis\n    url: \"redis://h:1/x\"\n", 2,
                  "bad database");
    open_fails_at("caches:\n  s:\n    backend: redis\n    url: \"redis://:1/0\"\n", 2,
                  "no host");
}

Test(badinput, open_bad_values)
{
    open_fails_at("caches:\n  a:\n    max_memory: 0MB\n", 3, "greater than 0");
    open_fails_at("caches:\n  a:\n    compress: gzip\n", 3, "gzip");
    open_fails_at("caches:\n  a:\n    compress: zstd\n    compress_level: 20\n", 4,
                  "out of range");
    open_fails_at("caches:\n  a:\n    loader_timeout: 0s\n", 3, "loader_timeout");
    open_fails_at("caches:\n", 1, "no caches defined");
}

/* Regression: a count-bounded cache sized its index for max_items alone, so a
 * max_items far beyond what max_memory can hold made the index fill
 * max_memory and every set fail with E2BIG. */
Test(badinput, huge_max_items_in_small_memory_still_stores)
{
    strata *s =
        open_yaml("caches:\n  c:\n    max_memory: 1MB\n    max_items: 50000000\n");
    strata_cache *c = cache(s, "c");
    int rc = strata_set(c, "k", 1, "v", 1, NULL);
    strata_value *v = NULL;
    int g = strata_get(c, "k", 1, &v);
    strata_value_release(v);
    strata_stats st;
    strata_cache_stats(c, &st);
    strata_close(s);
    cr_assert_eq(rc, STRATA_OK, "set gave %s", strata_errname(rc));
    cr_assert_eq(g, STRATA_OK);
    cr_assert_leq(st.bytes, st.max_bytes);
}

/* Regression: a tagged value refused as too large gave back tag references it
 * had never taken (uninitialised pointers) and crashed. */
Test(badinput, tagged_value_too_large_is_e2big_without_crash)
{
    strata *s = open_yaml("caches:\n  tiny:\n    max_memory: 1MB\n");
    strata_cache *c = cache(s, "tiny");
    /* Not larger than max_memory itself (refused before the tags are
     * looked at) but too large beside the index: refused after. */
    size_t n = (1u << 20) - 10;
    unsigned char *big = calloc(1, n);
    const char *tags[] = {"a", "b", "a"};
    strata_set_opts o = {.tags = tags, .ntags = 3};
    int rc = strata_set(c, "big", 3, big, n, &o);
    /* The tags still work afterwards. */
    int ok = strata_set(c, "small", 5, "v", 1, &o);
    long inv = strata_invalidate_tags(c, tags, 2);
    free(big);
    strata_close(s);
    cr_assert_eq(rc, STRATA_E2BIG, "set gave %s", strata_errname(rc));
    cr_assert_eq(ok, STRATA_OK);
    cr_assert_eq(inv, 1);
}
