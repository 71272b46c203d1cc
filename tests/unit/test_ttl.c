/*
 * test_ttl.c -- expiry: per-entry TTLs, cache defaults, `never`, and how
 * expired entries are counted and reclaimed.
 *
 * Time is a counter the test moves through strata_set_clock(); nothing
 * sleeps. The background sweeper may run at any moment (it reads the same
 * clock), so every assertion here holds whether it reclaimed an entry or not:
 * expired entries are never returned, and `expired` moves once per entry
 * whoever finds it first. strata_sweep_now() (backend/backend.h) reclaims on
 * demand where a test needs the `items` count to settle.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/backend.h"
#include "strata.h"

#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define WEEK (7 * DAY)
#define YEAR (365 * DAY)

#define T0 UINT64_C(7000000)

/* ---- helpers ------------------------------------------------------------- */

static _Atomic uint64_t now_ms = T0;

static uint64_t fake_clock(void *ud)
{
    return atomic_load((_Atomic uint64_t *)ud);
}

static void at(uint64_t t)
{
    atomic_store(&now_ms, t);
}

static strata *with_clock(strata *s)
{
    cr_assert_not_null(s);
    at(T0);
    strata_set_clock(s, fake_clock, &now_ms);
    return s;
}

static strata *open_defaults(void)
{
    char *err = NULL;
    strata *s = strata_open(NULL, &err);
    cr_assert_not_null(s, "%s", err ? err : "?");
    return with_clock(s);
}

static strata *open_yaml(const char *yaml)
{
    char path[] = "/tmp/strata-test-ttl-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s\n--- yaml ---\n%s", err ? err : "?", yaml);
    return with_clock(s);
}

static strata_cache *cache(strata *s, const char *name)
{
    strata_cache *c = strata_cache_get(s, name);
    cr_assert_not_null(c, "no cache '%s'", name);
    return c;
}

static void set_ttl(strata_cache *c, const char *key, int64_t ttl)
{
    strata_set_opts o = {.ttl_ms = ttl};
    int rc = strata_set(c, key, strlen(key), key, strlen(key), &o);
    cr_assert_eq(rc, STRATA_OK, "set %s: %s", key, strata_errname(rc));
}

static bool alive(strata_cache *c, const char *key)
{
    strata_value *v = (strata_value *)0x1;
    int rc = strata_get(c, key, strlen(key), &v);
    cr_assert(rc == STRATA_OK || rc == STRATA_MISS, "get %s: %s", key,
              strata_errname(rc));
    if (rc == STRATA_MISS) {
        cr_assert_null(v);
        return false;
    }
    cr_assert_eq(strata_value_len(v), strlen(key));
    cr_assert_eq(memcmp(strata_value_data(v), key, strlen(key)), 0);
    strata_value_release(v);
    return true;
}

static strata_stats stats(strata_cache *c)
{
    strata_stats st;
    strata_cache_stats(c, &st);
    return st;
}

/* An entry set at T0 in `c` with opts `ttl` lives exactly `life` ms. */
static void expect_life(strata_cache *c, int64_t ttl, int64_t life)
{
    at(T0);
    set_ttl(c, "k", ttl);
    at(T0 + (uint64_t)life - 1);
    cr_assert(alive(c, "k"), "%s: gone at +%lld, before its TTL %lld",
              strata_cache_name(c), (long long)life - 1, (long long)life);
    at(T0 + (uint64_t)life);
    cr_assert(!alive(c, "k"), "%s: still alive at +%lld", strata_cache_name(c),
              (long long)life);
}

/* ---- default TTLs ---------------------------------------------------------- */

Test(ttl, default_cache_default_is_5m)
{
    strata *s = open_defaults();
    expect_life(cache(s, "default"), 0, 5 * MIN);
    strata_close(s);
}

Test(ttl, static_cache_default_is_1h)
{
    strata *s = open_defaults();
    expect_life(cache(s, "static"), 0, HOUR);
    strata_close(s);
}

Test(ttl, session_cache_default_is_2w)
{
    strata *s = open_defaults();
    expect_life(cache(s, "session"), 0, 2 * WEEK);
    strata_close(s);
}

Test(ttl, null_opts_means_the_cache_default)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    cr_assert_eq(strata_set(c, "k", 1, "k", 1, NULL), STRATA_OK);
    at(T0 + 5 * MIN - 1);
    cr_assert(alive(c, "k"));
    at(T0 + 5 * MIN);
    cr_assert(!alive(c, "k"));
    strata_close(s);
}

Test(ttl, configured_ttl_is_the_default)
{
    strata *s =
        open_yaml("caches:\n  pages: { ttl: 90s }\n  default: { ttl: 250ms }\n");
    expect_life(cache(s, "pages"), 0, 90 * SEC);
    expect_life(cache(s, "default"), 0, 250);
    strata_close(s);
}

/* ---- explicit TTLs ----------------------------------------------------------- */

Test(ttl, positive_ttl_expires_exactly_at_that_ms)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    expect_life(c, 1234, 1234);
    expect_life(c, 1, 1);
    expect_life(c, 10 * MIN, 10 * MIN); /* longer than the cache default */
    expect_life(cache(s, "session"), 3 * SEC, 3 * SEC);
    strata_close(s);
}

Test(ttl, ttl_counts_from_the_last_set)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 1000);
    at(T0 + 600);
    set_ttl(c, "k", 1000);
    at(T0 + 1599);
    cr_assert(alive(c, "k"));
    at(T0 + 1600);
    cr_assert(!alive(c, "k"));
    strata_close(s);
}

Test(ttl, negative_ttl_never_expires)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "forever", -1);
    set_ttl(c, "forever2", INT64_MIN);
    at(T0 + 100 * YEAR);
    cr_assert(alive(c, "forever"));
    cr_assert(alive(c, "forever2"));
    strata_sweep_now(s);
    cr_assert(alive(c, "forever"));
    cr_assert_eq(stats(c).expired, 0);
    strata_close(s);
}

Test(ttl, zero_ttl_is_the_cache_default_not_immediate)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "static");
    set_ttl(c, "k", 0);
    cr_assert(alive(c, "k"));
    at(T0 + HOUR - 1);
    cr_assert(alive(c, "k"));
    at(T0 + HOUR);
    cr_assert(!alive(c, "k"));
    strata_close(s);
}

Test(ttl, cache_with_ttl_never_keeps_entries_forever)
{
    strata *s = open_yaml("caches:\n  forever:\n    ttl: never\n  plain: {}\n");
    strata_cache *f = cache(s, "forever"), *p = cache(s, "plain");
    set_ttl(f, "k", 0);
    cr_assert_eq(strata_set(f, "n", 1, "n", 1, NULL), STRATA_OK);
    set_ttl(p, "k", 0); /* no ttl key: no default TTL, no expiry */
    set_ttl(f, "short", 500);
    at(T0 + 100 * YEAR);
    strata_sweep_now(s);
    cr_assert(alive(f, "k"));
    cr_assert(alive(f, "n"));
    cr_assert(alive(p, "k"));
    cr_assert(!alive(f, "short"), "an explicit TTL beats `ttl: never`");
    strata_close(s);
}

Test(ttl, configured_ttl_0s_means_no_default_expiry)
{
    strata *s = open_yaml("caches:\n  default:\n    ttl: 0s\n");
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 0);
    set_ttl(c, "t", 100);
    at(T0 + 10 * YEAR);
    cr_assert(alive(c, "k"), "ttl: 0s gives no default TTL: no expiry");
    cr_assert(!alive(c, "t"));
    strata_close(s);
}

Test(ttl, very_long_ttl_is_not_cut_short)
{
    /* A 50-year TTL is that TTL: the entry is alive after 40 years. */
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 50 * YEAR);
    at(T0 + 40 * YEAR);
    bool ok = alive(c, "k");
    strata_close(s);
    cr_assert(ok, "an entry with a 50-year TTL expired before 40 years");
}

/* ---- expired entries are never returned -------------------------------------- */

Test(ttl, expired_entries_are_never_returned)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    char key[32];
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set_ttl(c, key, 100 + i);
    }
    at(T0 + 150);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert_eq(alive(c, key), i > 50, "%s at +150", key);
    }
    at(T0 + 200);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cr_assert(!alive(c, key), "%s at +200", key);
    }
    strata_close(s);
}

static int calls;
static int load_x(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                  strata_set_opts *o)
{
    (void)ud;
    (void)key;
    (void)klen;
    (void)o;
    calls++;
    *val = malloc(4);
    memcpy(*val, "new!", 4);
    *vlen = 4;
    return 0;
}

Test(ttl, get_or_set_reloads_an_expired_entry)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    calls = 0;
    set_ttl(c, "k", 100);
    strata_value *v = NULL;
    at(T0 + 99);
    cr_assert_eq(strata_get_or_set(c, "k", 1, load_x, NULL, NULL, &v), STRATA_OK);
    cr_assert_eq(memcmp(strata_value_data(v), "k", 1), 0);
    strata_value_release(v);
    at(T0 + 100);
    cr_assert_eq(strata_get_or_set(c, "k", 1, load_x, NULL, NULL, &v), STRATA_LOADED);
    cr_assert_eq(calls, 1);
    cr_assert_eq(memcmp(strata_value_data(v), "new!", 4), 0);
    strata_value_release(v);
    /* The reloaded entry has the cache default TTL from now. */
    at(T0 + 100 + 5 * MIN - 1);
    cr_assert_eq(strata_get_or_set(c, "k", 1, load_x, NULL, NULL, &v), STRATA_OK);
    strata_value_release(v);
    cr_assert_eq(calls, 1);
    strata_close(s);
}

Test(ttl, delete_of_an_expired_entry_is_a_miss)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 10);
    at(T0 + 10);
    cr_assert_eq(strata_delete(c, "k", 1), STRATA_MISS);
    strata_stats st = stats(c);
    cr_assert_eq(st.deletes, 0);
    cr_assert_eq(st.expired, 1);
    strata_close(s);
}

/* ---- counting and reclaiming ----------------------------------------------- */

Test(ttl, expired_counted_once_when_gets_find_it)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 100);
    at(T0 + 100);
    cr_assert(!alive(c, "k"));
    cr_assert(!alive(c, "k"));
    cr_assert(!alive(c, "k"));
    strata_sweep_now(s);
    strata_stats st = stats(c);
    cr_assert_eq(st.expired, 1);
    cr_assert_eq(st.misses, 3);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.items, 0);
    strata_close(s);
}

Test(ttl, expired_counted_once_when_the_sweep_finds_it_first)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "a", 100);
    set_ttl(c, "b", 100);
    set_ttl(c, "keep", -1);
    cr_assert_eq(stats(c).items, 3);
    at(T0 + 100);
    strata_sweep_now(s);
    strata_stats st = stats(c);
    cr_assert_eq(st.expired, 2);
    cr_assert_eq(st.items, 1, "the sweep must reclaim expired entries");
    cr_assert_eq(st.misses, 0);
    /* The get now finds nothing: a plain miss, not a second expiry. */
    cr_assert(!alive(c, "a"));
    cr_assert(!alive(c, "b"));
    cr_assert_eq(strata_sweep_now(s), 0);
    st = stats(c);
    cr_assert_eq(st.expired, 2);
    cr_assert_eq(st.misses, 2);
    cr_assert(alive(c, "keep"));
    strata_close(s);
}

Test(ttl, sweep_reclaims_memory_and_items)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    strata_stats empty = stats(c);
    char key[32];
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        set_ttl(c, key, i < 400 ? 1000 : -1);
    }
    strata_stats full = stats(c);
    cr_assert_eq(full.items, 500);
    at(T0 + 999);
    strata_sweep_now(s);
    cr_assert_eq(stats(c).items, 500, "nothing has expired at +999");
    cr_assert_eq(stats(c).expired, 0);
    at(T0 + 1000);
    strata_sweep_now(s);
    strata_stats after = stats(c);
    cr_assert_eq(after.items, 100);
    cr_assert_eq(after.expired, 400);
    cr_assert_lt(after.bytes, full.bytes);
    cr_assert_gt(after.bytes, empty.bytes);
    for (int i = 0; i < 500; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        cr_assert_eq(alive(c, key), i >= 400, "%s", key);
    }
    cr_assert_eq(stats(c).expired, 400);
    strata_close(s);
}

Test(ttl, clock_going_back_does_not_resurrect_and_cannot_underflow)
{
    strata *s = open_defaults();
    strata_cache *c = cache(s, "default");
    set_ttl(c, "k", 100);
    at(T0 + 100);
    cr_assert(!alive(c, "k"));
    at(T0);
    cr_assert(!alive(c, "k"), "an expired entry found dead stays dead");
    at(0); /* before the clock's origin */
    set_ttl(c, "z", 100);
    cr_assert(alive(c, "z"));
    strata_close(s);
}
