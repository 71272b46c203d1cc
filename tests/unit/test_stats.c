/*
 * test_stats.c -- the counters of strata_cache_stats(), transition by
 * transition (DESIGN.md, "Statistics move exactly so"):
 *
 *   get hit -> hits; get of an absent, expired or invalidated entry -> misses
 *   (+ expired when found expired); set -> sets; delete of a present entry ->
 *   deletes; get_or_set -> a hit, or a miss plus a set; capacity eviction ->
 *   evictions; `bytes` is all memory charged to the cache.
 *
 * Each step of a script names the counters it moves; every other counter must
 * stay where it was. The clock is injected (no sleeps).
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

#define T0 UINT64_C(50000)
#define MiB (UINT64_C(1) << 20)

/* ---- helpers ------------------------------------------------------------- */

static _Atomic uint64_t now_ms = T0;

static uint64_t fake_clock(void *ud)
{
    return atomic_load((_Atomic uint64_t *)ud);
}

static strata *open_yaml(const char *yaml)
{
    char path[] = "/tmp/strata-test-stats-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s\n--- yaml ---\n%s", err ? err : "?", yaml);
    atomic_store(&now_ms, T0);
    strata_set_clock(s, fake_clock, &now_ms);
    return s;
}

static strata_cache *cache(strata *s, const char *name)
{
    strata_cache *c = strata_cache_get(s, name);
    cr_assert_not_null(c, "no cache '%s'", name);
    return c;
}

static strata_stats stats(strata_cache *c)
{
    strata_stats st;
    memset(&st, 0xa5, sizeof st);
    strata_cache_stats(c, &st);
    return st;
}

/* The expected counters, moved by the script; `bytes` is checked apart. */
struct want {
    uint64_t hits, misses, sets, deletes, evictions, expired, invalidated, errors,
        items;
};

#define CHECK(c, w, step)                                                              \
    do {                                                                               \
        strata_stats st_ = stats(c);                                                   \
        cr_assert_eq(st_.hits, (w).hits, "%s: hits %lu", step,                         \
                     (unsigned long)st_.hits);                                         \
        cr_assert_eq(st_.misses, (w).misses, "%s: misses %lu", step,                   \
                     (unsigned long)st_.misses);                                       \
        cr_assert_eq(st_.sets, (w).sets, "%s: sets %lu", step,                         \
                     (unsigned long)st_.sets);                                         \
        cr_assert_eq(st_.deletes, (w).deletes, "%s: deletes %lu", step,                \
                     (unsigned long)st_.deletes);                                      \
        cr_assert_eq(st_.evictions, (w).evictions, "%s: evictions %lu", step,          \
                     (unsigned long)st_.evictions);                                    \
        cr_assert_eq(st_.expired, (w).expired, "%s: expired %lu", step,                \
                     (unsigned long)st_.expired);                                      \
        cr_assert_eq(st_.invalidated, (w).invalidated, "%s: invalidated %lu", step,    \
                     (unsigned long)st_.invalidated);                                  \
        cr_assert_eq(st_.errors, (w).errors, "%s: errors %lu", step,                   \
                     (unsigned long)st_.errors);                                       \
        cr_assert_eq(st_.items, (w).items, "%s: items %lu", step,                      \
                     (unsigned long)st_.items);                                        \
    } while (0)

static int get(strata_cache *c, const char *key)
{
    strata_value *v = NULL;
    int rc = strata_get(c, key, strlen(key), &v);
    strata_value_release(v);
    return rc;
}

static void set(strata_cache *c, const char *key, int64_t ttl, const char *tag)
{
    const char *tags[] = {tag};
    strata_set_opts o = {
        .ttl_ms = ttl, .tags = tag ? tags : NULL, .ntags = tag ? 1 : 0};
    cr_assert_eq(strata_set(c, key, strlen(key), key, strlen(key), &o), STRATA_OK);
}

static int nloads;
static int load_ok(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                   strata_set_opts *o)
{
    (void)ud;
    (void)o;
    nloads++;
    *val = malloc(klen);
    memcpy(*val, key, klen);
    *vlen = klen;
    return 0;
}

static int load_fail(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                     strata_set_opts *o)
{
    (void)ud;
    (void)key;
    (void)klen;
    (void)val;
    (void)vlen;
    (void)o;
    nloads++;
    return -1;
}

static int gos(strata_cache *c, const char *key, strata_loader l)
{
    strata_value *v = NULL;
    int rc = strata_get_or_set(c, key, strlen(key), l, NULL, NULL, &v);
    strata_value_release(v);
    return rc;
}

/* ---- the script ------------------------------------------------------------ */

Test(stats, fresh_cache_counts_nothing)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    struct want w = {0};
    CHECK(c, w, "fresh");
    strata_stats st = stats(c);
    cr_assert_gt(st.bytes, 0, "the index is charged to the cache");
    cr_assert_eq(st.max_bytes, MiB);
    strata_close(s);
}

Test(stats, get_set_delete_transitions)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    struct want w = {0};

    cr_assert_eq(get(c, "a"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get absent");

    set(c, "a", 0, NULL);
    w.sets++, w.items++;
    CHECK(c, w, "set new");

    cr_assert_eq(get(c, "a"), STRATA_OK);
    cr_assert_eq(get(c, "a"), STRATA_OK);
    w.hits += 2;
    CHECK(c, w, "two hits");

    set(c, "a", 0, NULL);
    w.sets++;
    CHECK(c, w, "overwrite: a set, same items");

    set(c, "b", 0, NULL);
    w.sets++, w.items++;
    CHECK(c, w, "second key");

    cr_assert_eq(strata_delete(c, "a", 1), STRATA_OK);
    w.deletes++, w.items--;
    CHECK(c, w, "delete present");

    cr_assert_eq(strata_delete(c, "a", 1), STRATA_MISS);
    cr_assert_eq(strata_delete(c, "zzz", 3), STRATA_MISS);
    CHECK(c, w, "delete absent moves nothing");

    cr_assert_eq(get(c, "a"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get deleted");

    cr_assert_eq(gos(c, "g", load_ok), STRATA_LOADED);
    w.misses++, w.sets++, w.items++;
    CHECK(c, w, "get_or_set load: a miss plus a set");

    cr_assert_eq(gos(c, "g", load_ok), STRATA_OK);
    w.hits++;
    CHECK(c, w, "get_or_set hit");

    cr_assert_eq(gos(c, "b", load_ok), STRATA_OK);
    w.hits++;
    CHECK(c, w, "get_or_set of a set key");
    cr_assert_eq(nloads, 1);
    strata_close(s);
}

Test(stats, failed_load_is_a_miss_and_no_set)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    cr_assert_eq(gos(c, "f", load_fail), STRATA_ELOADER);
    strata_stats st = stats(c);
    cr_assert_eq(st.misses, 1);
    cr_assert_eq(st.sets, 0);
    cr_assert_eq(st.hits, 0);
    cr_assert_eq(st.items, 0);
    strata_close(s);
}

Test(stats, expired_transitions)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    struct want w = {0};
    set(c, "e", 100, NULL);
    set(c, "f", 200, NULL);
    w.sets += 2, w.items += 2;
    CHECK(c, w, "set two with ttl");
    atomic_store(&now_ms, T0 + 100);

    cr_assert_eq(get(c, "e"), STRATA_MISS);
    w.misses++, w.expired++, w.items--;
    CHECK(c, w, "get expired: miss + expired, entry dropped");

    cr_assert_eq(get(c, "e"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get again: a plain miss");

    atomic_store(&now_ms, T0 + 200);
    strata_sweep_now(s);
    w.expired++, w.items--;
    CHECK(c, w, "sweep reclaims f");

    cr_assert_eq(get(c, "f"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get swept: a plain miss");

    cr_assert_eq(gos(c, "f", load_ok), STRATA_LOADED);
    w.misses++, w.sets++, w.items++;
    CHECK(c, w, "get_or_set after expiry");
    strata_close(s);
}

Test(stats, invalidation_transitions)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    struct want w = {0};
    set(c, "p:1", 0, NULL);
    set(c, "p:2", 0, NULL);
    set(c, "p:3", 0, NULL);
    set(c, "q:1", 0, NULL);
    set(c, "t:1", 0, "red");
    set(c, "t:2", 0, "red");
    set(c, "t:3", 0, "blue");
    w.sets += 7, w.items += 7;
    CHECK(c, w, "setup");

    cr_assert_eq(strata_invalidate_pattern(c, "p:*"), 3);
    w.invalidated += 3, w.items -= 3;
    CHECK(c, w, "pattern");

    cr_assert_eq(strata_invalidate_pattern(c, "p:*"), 0);
    CHECK(c, w, "pattern matching nothing");

    cr_assert_eq(get(c, "p:1"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get of a pattern-invalidated key");

    const char *red[] = {"red"};
    cr_assert_eq(strata_invalidate_tags(c, red, 1), 2);
    w.invalidated += 2;
    /* Removal is lazy: the sweep (or a get) reclaims the two entries. */
    strata_sweep_now(s);
    w.items -= 2;
    CHECK(c, w, "tag + sweep");

    cr_assert_eq(get(c, "t:1"), STRATA_MISS);
    w.misses++;
    CHECK(c, w, "get of a tag-invalidated key: a miss, not expired");
    cr_assert_eq(get(c, "t:3"), STRATA_OK);
    w.hits++;

    cr_assert_eq(strata_clear(c), STRATA_OK);
    w.invalidated += 2, w.items = 0; /* q:1 and t:3 */
    CHECK(c, w, "clear");
    strata_close(s);
}

Test(stats, invalidate_tags_does_not_count_deleted_entries)
{
    /* A deleted entry is not stored any more: invalidating its tag removes
     * nothing and counts nothing. */
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    set(c, "x", 0, "gone");
    cr_assert_eq(strata_delete(c, "x", 1), STRATA_OK);
    const char *gone[] = {"gone"};
    long n = strata_invalidate_tags(c, gone, 1);
    uint64_t inv = stats(c).invalidated;
    strata_close(s);
    cr_assert_eq(n, 0, "invalidate_tags counted %ld deleted entries", n);
    cr_assert_eq(inv, 0);
}

Test(stats, invalidate_tags_does_not_count_overwritten_versions)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    set(c, "x", 0, "t");
    set(c, "x", 0, "t");
    set(c, "x", 0, "t");
    const char *t[] = {"t"};
    long n = strata_invalidate_tags(c, t, 1);
    strata_close(s);
    cr_assert_eq(n, 1, "one stored entry carries the tag, counted %ld", n);
}

Test(stats, invalidate_tags_counts_each_entry_once)
{
    /* One entry carrying both tags is one entry, whichever way it is named. */
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    const char *xy[] = {"x", "y"}, *zz[] = {"z", "z"};
    strata_set_opts o = {.tags = xy, .ntags = 2};
    cr_assert_eq(strata_set(c, "both", 4, "v", 1, &o), STRATA_OK);
    o.tags = zz;
    cr_assert_eq(strata_set(c, "twice", 5, "v", 1, &o), STRATA_OK);
    long n1 = strata_invalidate_tags(c, xy, 2);
    long n2 = strata_invalidate_tags(c, zz, 1);
    uint64_t inv = stats(c).invalidated;
    int g1 = get(c, "both"), g2 = get(c, "twice");
    strata_close(s);
    cr_assert_eq(g1, STRATA_MISS);
    cr_assert_eq(g2, STRATA_MISS);
    cr_assert_eq(n1, 1, "an entry with tags x and y counted %ld times", n1);
    cr_assert_eq(n2, 1, "an entry with tag z listed twice counted %ld times", n2);
    cr_assert_eq(inv, 2);
}

Test(stats, evictions_with_max_items)
{
    strata *s = open_yaml("caches:\n  small: { max_items: 3 }\n");
    strata_cache *c = cache(s, "small");
    struct want w = {0};
    const char *keys[] = {"k1", "k2", "k3", "k4", "k5"};
    for (int i = 0; i < 5; i++)
        set(c, keys[i], 0, NULL);
    w.sets = 5, w.evictions = 2, w.items = 3;
    CHECK(c, w, "five keys into three slots");
    int live = 0;
    for (int i = 0; i < 5; i++)
        live += get(c, keys[i]) == STRATA_OK;
    cr_assert_eq(live, 3);
    cr_assert_eq(get(c, "k5"), STRATA_OK, "the newest key is kept");
    strata_close(s);
}

Test(stats, bytes_track_what_is_stored)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    uint64_t empty = stats(c).bytes;
    cr_assert_gt(empty, 0);

    static unsigned char big[10000];
    memset(big, 'x', sizeof big);
    cr_assert_eq(strata_set(c, "big", 3, big, sizeof big, NULL), STRATA_OK);
    uint64_t one = stats(c).bytes;
    cr_assert_geq(one, empty + sizeof big + 3, "bytes %lu < empty %lu + value + key",
                  (unsigned long)one, (unsigned long)empty);

    set(c, "small", 0, "tag");
    uint64_t two = stats(c).bytes;
    cr_assert_gt(two, one);

    cr_assert_eq(strata_delete(c, "small", 5), STRATA_OK);
    cr_assert_eq(stats(c).bytes, one, "delete refunds exactly what set charged");

    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof key, "k%d", i);
        set(c, key, 100, i % 2 ? "odd" : NULL);
    }
    cr_assert_gt(stats(c).bytes, one);
    cr_assert_eq(strata_clear(c), STRATA_OK);
    strata_sweep_now(s);
    strata_stats st = stats(c);
    cr_assert_eq(st.items, 0);
    cr_assert_eq(st.bytes, empty, "after clear+sweep bytes %lu != empty %lu",
                 (unsigned long)st.bytes, (unsigned long)empty);
    strata_close(s);
}

Test(stats, max_bytes_is_max_memory)
{
    strata *s =
        open_yaml("caches:\n  a: { max_memory: 1MB }\n  b: { max_memory: 3GB }\n"
                  "  c: {}\n  session: {}\n");
    cr_assert_eq(stats(cache(s, "a")).max_bytes, MiB);
    cr_assert_eq(stats(cache(s, "b")).max_bytes, 3072 * MiB);
    cr_assert_eq(stats(cache(s, "c")).max_bytes, 256 * MiB);
    cr_assert_eq(stats(cache(s, "session")).max_bytes, 64 * MiB);
    strata_close(s);
    s = strata_open(NULL, NULL);
    cr_assert_not_null(s);
    cr_assert_eq(stats(cache(s, "default")).max_bytes, 256 * MiB);
    cr_assert_eq(stats(cache(s, "session")).max_bytes, 64 * MiB);
    cr_assert_eq(stats(cache(s, "static")).max_bytes, 256 * MiB);
    strata_close(s);
}

Test(stats, bytes_never_exceed_max_memory)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    static unsigned char v[20000];
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "k%d", i);
        memset(v, i, sizeof v);
        cr_assert_eq(strata_set(c, key, strlen(key), v, sizeof v, NULL), STRATA_OK);
        strata_stats st = stats(c);
        cr_assert_leq(st.bytes, st.max_bytes, "after %d sets: bytes %lu", i + 1,
                      (unsigned long)st.bytes);
    }
    strata_stats st = stats(c);
    cr_assert_gt(st.evictions, 0);
    cr_assert_eq(st.sets, 200);
    cr_assert_eq(st.items + st.evictions, 200);
    strata_close(s);
}

Test(stats, null_cache_gives_zeroed_stats)
{
    strata_stats st;
    memset(&st, 0xa5, sizeof st);
    strata_cache_stats(NULL, &st);
    strata_stats zero;
    memset(&zero, 0, sizeof zero);
    cr_assert_eq(memcmp(&st, &zero, sizeof st), 0);
    strata_cache_stats(NULL, NULL);
}

/* ---- items stay exact through growth and churn; tags after invalidation ---- */

Test(stats, items_exact_through_index_growth_and_churn)
{
    /* One shard (1MB): 5000 keys force its index to grow; set/delete rounds
     * leave tombstones that later inserts must reuse or rebuild away. */
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        set(c, key, 0, NULL);
    }
    for (int round = 0; round < 10; round++)
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "tmp:%d:%d", round, i);
            set(c, key, 0, NULL);
            cr_assert_eq(strata_delete(c, key, strlen(key)), STRATA_OK);
        }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(key, sizeof key, "key:%d", i);
        cr_assert_eq(strata_delete(c, key, strlen(key)), STRATA_OK, "%s", key);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "key:%d", i);
        strata_value *v = NULL;
        int rc = strata_get(c, key, strlen(key), &v);
        cr_assert_eq(rc, i % 2 ? STRATA_OK : STRATA_MISS, "%s", key);
        if (v)
            cr_assert_eq(memcmp(strata_value_data(v), key, strlen(key)), 0, "%s", key);
        strata_value_release(v);
    }
    strata_stats st = stats(c);
    cr_assert_eq(st.items, 2500);
    cr_assert_eq(st.evictions, 0);
    cr_assert_eq(st.sets, 15000);
    cr_assert_eq(st.deletes, 12500);
    cr_assert_eq(st.hits, 2500);
    cr_assert_eq(st.misses, 2500);
    strata_close(s);
}

Test(stats, a_tag_invalidation_does_not_touch_later_sets)
{
    strata *s = open_yaml("caches:\n  c: { max_memory: 1MB }\n");
    strata_cache *c = cache(s, "c");
    const char *t[] = {"t"};
    set(c, "a", 0, "t");
    cr_assert_eq(strata_invalidate_tags(c, t, 1), 1);
    cr_assert_eq(get(c, "a"), STRATA_MISS);
    set(c, "a", 0, "t");
    set(c, "b", 0, "t");
    cr_assert_eq(get(c, "a"), STRATA_OK);
    cr_assert_eq(get(c, "b"), STRATA_OK);
    /* A tag nobody carries invalidates nothing. */
    const char *u[] = {"unused"};
    cr_assert_eq(strata_invalidate_tags(c, u, 1), 0);
    cr_assert_eq(get(c, "a"), STRATA_OK);
    /* An entry with several tags dies with any of them. */
    const char *two[] = {"x", "y"};
    strata_set_opts o = {.tags = two, .ntags = 2};
    cr_assert_eq(strata_set(c, "xy", 2, "v", 1, &o), STRATA_OK);
    cr_assert_eq(strata_invalidate_tags(c, &two[1], 1), 1);
    cr_assert_eq(get(c, "xy"), STRATA_MISS);
    cr_assert_eq(get(c, "a"), STRATA_OK);
    strata_close(s);
}

/* A cache without a TTL still has entries that can die: tagged ones. The
 * sweeper skips shards holding nothing that can expire or be invalidated, so
 * it must count tagged entries as such, or it never reclaims them. */
Test(stats, sweep_reclaims_tag_invalidated_entries_in_a_cache_without_ttl)
{
    strata *s = open_yaml("caches:\n  forever:\n    ttl: never\n");
    strata_cache *c = strata_cache_get(s, "forever");
    cr_assert_not_null(c);
    const char *t[] = {"t"};
    strata_set_opts o = {.tags = t, .ntags = 1};
    cr_assert_eq(strata_set(c, "tagged", 6, "x", 1, &o), STRATA_OK);
    cr_assert_eq(strata_set(c, "plain", 5, "y", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_invalidate_tags(c, t, 1), 1);
    strata_sweep_now(s);
    strata_stats st;
    strata_cache_stats(c, &st);
    strata_close(s);
    cr_assert_eq(st.items, 1, "the invalidated entry is still stored (items %lu)",
                 (unsigned long)st.items);
}
