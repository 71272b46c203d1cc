/*
 * test_concurrent.c -- the memory engine under real threads: invalidation is
 * visible at once while others write, the bounds hold under random load,
 * eviction resists a scan, value handles outlive their entries, and a mixed
 * stress run keeps the statistics exact.
 *
 * Every test is bounded by operation counts, never by wall time; the only
 * waiting is joining threads. Worker threads never call Criterion: they count
 * what went wrong in a `struct faults` (keeping the first message) and the
 * main thread asserts after joining them. Values carry what a reader needs to
 * judge them on their own: the key they belong to, a generation number, a
 * length and a checksum.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata.h"

#define NTHREADS 4

/* ---- helpers ------------------------------------------------------------- */

/* Open a strata whose `caches:` section is `yaml`; the cache called `name`. */
static strata *open_yaml(const char *yaml, const char *name, strata_cache **c)
{
    char path[] = "/tmp/strata-test-concurrent-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(yaml);
    cr_assert_eq(write(fd, yaml, len), (ssize_t)len);
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s\n--- yaml ---\n%s", err ? err : "?", yaml);
    *c = strata_cache_get(s, name);
    cr_assert_not_null(*c, "no cache '%s'", name);
    return s;
}

/* What worker threads saw go wrong; the main thread asserts on it. */
struct faults {
    pthread_mutex_t lock;
    long n;
    char first[512];
};

static void faults_init(struct faults *f)
{
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->lock, NULL);
}

static void fault(struct faults *f, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void fault(struct faults *f, const char *fmt, ...)
{
    pthread_mutex_lock(&f->lock);
    if (f->n++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(f->first, sizeof f->first, fmt, ap);
        va_end(ap);
    }
    pthread_mutex_unlock(&f->lock);
}

static void assert_no_faults(struct faults *f)
{
    cr_assert_eq(f->n, 0, "%ld faults; the first: %s", f->n, f->first);
    pthread_mutex_destroy(&f->lock);
}

/* xorshift64*: a cheap per-thread generator. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void start_threads(pthread_t *tids, int n, void *(*fn)(void *), void *args,
                          size_t argsize)
{
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&tids[i], NULL, fn, (char *)args + i * argsize), 0);
}

static void join_threads(pthread_t *tids, int n)
{
    for (int i = 0; i < n; i++)
        pthread_join(tids[i], NULL);
}

/* ---- invalidation is visible at once while others write ------------------ */

/*
 * Each writer owns KEYS_PER_WRITER keys and keeps overwriting them with
 * "<key>#<generation>"; after strata_set returns it publishes the generation
 * in done[key]. Half the keys are targets (tag "t", or under the "p:" prefix),
 * half controls (tag "u", prefix "q:"). The main thread, in each round,
 * snapshots done[] (every generation in it was set before the invalidation
 * started), invalidates, and at once reads every key: a target may be absent
 * or carry a newer generation than its snapshot, never the snapshot's or an
 * older one; a control is always present (the cache has room for all) with at
 * least its snapshot's generation.
 */
#define KEYS_PER_WRITER 64
#define NKEYS (NTHREADS * KEYS_PER_WRITER)
#define INV_ROUNDS 300          /* at least this many rounds ... */
#define INV_MAX_ROUNDS 5000     /* ... and more until writers raced one (bounded) */
#define WRITER_MAX_OPS 4000000L /* a safety cap: writers stop when the rounds end */

enum inv_kind { INV_TAGS, INV_PATTERN };

struct inv_test {
    strata_cache *c;
    enum inv_kind kind;
    _Atomic uint64_t done[NKEYS];
    atomic_bool stop;
    struct faults f;
};

struct inv_writer {
    struct inv_test *t;
    int id;
};

static bool inv_target(int key)
{
    return key % 2 == 0;
}

static int inv_key(const struct inv_test *t, int key, char *buf, size_t n)
{
    if (t->kind == INV_PATTERN)
        return snprintf(buf, n, "%s:%04d", inv_target(key) ? "p" : "q", key);
    return snprintf(buf, n, "k:%04d", key);
}

/* Parse "<key>#<gen>" for `key`; false when it is not this key's value. */
static bool inv_parse(const char *key, int klen, const strata_value *v, uint64_t *gen)
{
    size_t len = strata_value_len(v);
    const char *p = strata_value_data(v);
    char buf[64];
    if (len <= (size_t)klen + 1 || len >= sizeof buf ||
        memcmp(p, key, (size_t)klen) != 0 || p[klen] != '#')
        return false;
    memcpy(buf, p + klen + 1, len - (size_t)klen - 1);
    buf[len - (size_t)klen - 1] = 0;
    char *end;
    *gen = strtoull(buf, &end, 10);
    return *end == 0;
}

static void *inv_writer_main(void *arg)
{
    struct inv_writer *w = arg;
    struct inv_test *t = w->t;
    uint64_t gen[KEYS_PER_WRITER] = {0};
    uint64_t seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(w->id + 1);
    static const char *const tag_t[] = {"t"}, *const tag_u[] = {"u"};
    for (long op = 0; op < WRITER_MAX_OPS && !atomic_load(&t->stop); op++) {
        int i = (int)(rnd(&seed) % KEYS_PER_WRITER);
        int key = w->id * KEYS_PER_WRITER + i;
        char k[32], v[64];
        int klen = inv_key(t, key, k, sizeof k);
        if (op % 4 == 3) {
            /* Readers too: a get must never show another key's value. */
            strata_value *val = NULL;
            uint64_t g;
            int rc = strata_get(t->c, k, (size_t)klen, &val);
            if (rc == STRATA_OK && !inv_parse(k, klen, val, &g))
                fault(&t->f, "get %s returned '%.*s'", k, (int)strata_value_len(val),
                      (const char *)strata_value_data(val));
            else if (rc < 0)
                fault(&t->f, "get %s: %s", k, strata_errname(rc));
            strata_value_release(val);
            continue;
        }
        uint64_t g = ++gen[i];
        int vlen = snprintf(v, sizeof v, "%s#%" PRIu64, k, g);
        strata_set_opts o = {.ttl_ms = -1};
        if (t->kind == INV_TAGS) {
            o.tags = inv_target(key) ? tag_t : tag_u;
            o.ntags = 1;
        }
        int rc = strata_set(t->c, k, (size_t)klen, v, (size_t)vlen, &o);
        if (rc != STRATA_OK) {
            fault(&t->f, "set %s: %s", k, strata_errname(rc));
            continue;
        }
        atomic_store_explicit(&t->done[key], g, memory_order_release);
    }
    return NULL;
}

static void invalidation_visible_at_once(enum inv_kind kind)
{
    strata_cache *c;
    strata *s = open_yaml("caches:\n  c:\n    max_memory: 64MB\n", "c", &c);
    static struct inv_test inv; /* large: not on the stack; no leak on failure */
    struct inv_test *t = &inv;
    memset(t, 0, sizeof *t);
    t->c = c;
    t->kind = kind;
    faults_init(&t->f);
    struct inv_writer ws[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        ws[i] = (struct inv_writer){.t = t, .id = i};
    start_threads(tids, NTHREADS, inv_writer_main, ws, sizeof ws[0]);

    static uint64_t snap[NKEYS];
    long stale = 0, lost = 0, targets_seen = 0;
    char first[256] = "";
    static const char *const tag_t[] = {"t"};
    for (int round = 0;
         round < INV_ROUNDS || (targets_seen == 0 && round < INV_MAX_ROUNDS); round++) {
        for (int k = 0; k < NKEYS; k++)
            snap[k] = atomic_load_explicit(&t->done[k], memory_order_acquire);
        long n = kind == INV_TAGS ? strata_invalidate_tags(c, tag_t, 1)
                                  : strata_invalidate_pattern(c, "p:*");
        if (n < 0) {
            fault(&t->f, "invalidate: %s", strata_errname((int)n));
            break;
        }
        for (int k = 0; k < NKEYS; k++) {
            char key[32];
            int klen = inv_key(t, k, key, sizeof key);
            strata_value *v = NULL;
            uint64_t g = 0;
            int rc = strata_get(c, key, (size_t)klen, &v);
            if (rc == STRATA_OK && !inv_parse(key, klen, v, &g)) {
                fault(&t->f, "get %s returned '%.*s'", key, (int)strata_value_len(v),
                      (const char *)strata_value_data(v));
            } else if (rc == STRATA_OK && inv_target(k)) {
                targets_seen++;
                if (g <= snap[k] && stale++ == 0)
                    snprintf(
                        first, sizeof first,
                        "round %d: %s has generation %" PRIu64
                        ", set before the invalidation started (last set then: %" PRIu64
                        ")",
                        round, key, g, snap[k]);
            } else if (rc == STRATA_OK) {
                if (g < snap[k] && stale++ == 0)
                    snprintf(first, sizeof first,
                             "round %d: control %s went back to generation %" PRIu64
                             " from %" PRIu64,
                             round, key, g, snap[k]);
            } else if (rc == STRATA_MISS && !inv_target(k) && snap[k] > 0) {
                if (lost++ == 0)
                    snprintf(first, sizeof first,
                             "round %d: control %s (not invalidated) is gone", round,
                             key);
            } else if (rc < 0) {
                fault(&t->f, "get %s: %s", key, strata_errname(rc));
            }
            strata_value_release(v);
        }
    }
    atomic_store(&t->stop, true);
    join_threads(tids, NTHREADS);

    cr_assert_eq(stale, 0, "%ld invalidated values were returned; the first: %s", stale,
                 first);
    cr_assert_eq(lost, 0,
                 "%ld entries that were not targeted disappeared; the first: %s", lost,
                 first);
    assert_no_faults(&t->f);
    /* The test is only worth something if writers really raced the rounds. */
    cr_assert_gt(targets_seen, 0,
                 "in %d rounds, no target was rewritten between an invalidation and "
                 "the reads after it: the writers never raced the invalidations",
                 INV_MAX_ROUNDS);
    strata_close(s);
}

Test(concurrent, tag_invalidation_visible_at_once_under_writers)
{
    invalidation_visible_at_once(INV_TAGS);
}

Test(concurrent, pattern_invalidation_visible_at_once_under_writers)
{
    invalidation_visible_at_once(INV_PATTERN);
}

/* ---- the bounds hold under random load ----------------------------------- */

/*
 * Four threads do random set/get/delete with values of 1..2000 bytes over a
 * key space larger than the cache; a checker thread samples the stats the
 * whole time. At any moment a bound may be exceeded by at most one object per
 * concurrent writer (a generous 4 KiB charge each at these sizes); once the
 * writers are done it holds exactly.
 */
#define BOUND_OPS_PER_THREAD 50000
#define BOUND_KEYS 6000
#define BOUND_VMAX 2000
#define BOUND_SLACK_BYTES (NTHREADS * 4096u)

struct bound_test {
    strata_cache *c;
    uint64_t max_items; /* 0: not bounded by count */
    uint64_t max_bytes;
    atomic_int running;
    struct faults f;
    long samples;
};

struct bound_worker {
    struct bound_test *t;
    int id;
};

static void *bound_worker_main(void *arg)
{
    struct bound_worker *w = arg;
    struct bound_test *t = w->t;
    uint64_t seed = 0x1234567ULL * (uint64_t)(w->id + 1) + 99;
    static unsigned char buf[NTHREADS][BOUND_VMAX];
    unsigned char *val = buf[w->id];
    for (long op = 0; op < BOUND_OPS_PER_THREAD; op++) {
        uint64_t r = rnd(&seed);
        char k[32];
        int klen = snprintf(k, sizeof k, "key:%u", (unsigned)(r % BOUND_KEYS));
        unsigned what = (unsigned)(r >> 32) % 100;
        if (what < 50) {
            size_t vlen = 1 + (size_t)(rnd(&seed) % BOUND_VMAX);
            memset(val, (int)(r & 0xff), vlen);
            int rc = strata_set(t->c, k, (size_t)klen, val, vlen, NULL);
            if (rc != STRATA_OK)
                fault(&t->f, "set %s (%zu bytes): %s", k, vlen, strata_errname(rc));
        } else if (what < 85) {
            strata_value *v = NULL;
            int rc = strata_get(t->c, k, (size_t)klen, &v);
            if (rc < 0) fault(&t->f, "get %s: %s", k, strata_errname(rc));
            strata_value_release(v);
        } else {
            int rc = strata_delete(t->c, k, (size_t)klen);
            if (rc < 0) fault(&t->f, "delete %s: %s", k, strata_errname(rc));
        }
    }
    atomic_fetch_sub(&t->running, 1);
    return NULL;
}

static void *bound_checker_main(void *arg)
{
    struct bound_test *t = arg;
    /* Ends when the writers do: bounded by their operation counts. */
    while (atomic_load(&t->running) > 0) {
        strata_stats st;
        strata_cache_stats(t->c, &st);
        t->samples++;
        if (t->max_items && st.items > t->max_items + NTHREADS)
            fault(&t->f,
                  "sample %ld: %" PRIu64 " items, bound %" PRIu64 " + %d writers",
                  t->samples, st.items, t->max_items, NTHREADS);
        if (st.bytes > t->max_bytes + BOUND_SLACK_BYTES)
            fault(&t->f, "sample %ld: %" PRIu64 " bytes, bound %" PRIu64 " + %u",
                  t->samples, st.bytes, t->max_bytes, BOUND_SLACK_BYTES);
        sched_yield();
    }
    return NULL;
}

static void bounds_hold(const char *yaml, uint64_t max_items, uint64_t max_bytes)
{
    strata_cache *c;
    strata *s = open_yaml(yaml, "c", &c);
    struct bound_test t = {.c = c, .max_items = max_items, .max_bytes = max_bytes};
    faults_init(&t.f);
    atomic_store(&t.running, NTHREADS);
    pthread_t checker, tids[NTHREADS];
    struct bound_worker ws[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        ws[i] = (struct bound_worker){.t = &t, .id = i};
    cr_assert_eq(pthread_create(&checker, NULL, bound_checker_main, &t), 0);
    start_threads(tids, NTHREADS, bound_worker_main, ws, sizeof ws[0]);
    join_threads(tids, NTHREADS);
    pthread_join(checker, NULL);
    assert_no_faults(&t.f);

    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.max_bytes, max_bytes);
    if (max_items)
        cr_assert_leq(st.items, max_items,
                      "quiescent: %" PRIu64 " items > max_items %" PRIu64, st.items,
                      max_items);
    cr_assert_leq(st.bytes, max_bytes,
                  "quiescent: %" PRIu64 " bytes > max_memory %" PRIu64, st.bytes,
                  max_bytes);
    /* The load must have pressed on the bound, or the test proves nothing. */
    cr_assert_gt(st.evictions, 0, "no eviction: the load never reached the bound");
    cr_assert_gt(t.samples, 0);
    strata_close(s);
}

Test(concurrent, max_items_never_exceeded_by_more_than_one_per_writer)
{
    bounds_hold("caches:\n  c:\n    max_items: 1000\n    max_memory: 256MB\n", 1000,
                256u << 20);
}

Test(concurrent, max_memory_never_exceeded_by_more_than_one_per_writer)
{
    bounds_hold("caches:\n  c:\n    max_memory: 1MB\n", 0, 1u << 20);
}

/* ---- eviction prefers frequently used keys over a one-time scan ---------- */

#define HOT_KEYS 500
#define HOT_READS 4
#define SCAN_KEYS 10000

struct scan_worker {
    strata_cache *c;
    int id;
    struct faults *f;
};

static void *hot_reader_main(void *arg)
{
    struct scan_worker *w = arg;
    for (int r = 0; r < HOT_READS; r++)
        for (int i = w->id; i < HOT_KEYS; i += NTHREADS) {
            char k[32];
            int klen = snprintf(k, sizeof k, "hot:%d", i);
            strata_value *v = NULL;
            int rc = strata_get(w->c, k, (size_t)klen, &v);
            if (rc != STRATA_OK)
                fault(w->f, "hot read of %s: %s", k, strata_errname(rc));
            strata_value_release(v);
        }
    return NULL;
}

static void *scanner_main(void *arg)
{
    struct scan_worker *w = arg;
    for (int i = w->id; i < SCAN_KEYS; i += NTHREADS) {
        char k[32];
        int klen = snprintf(k, sizeof k, "scan:%d", i);
        int rc = strata_set(w->c, k, (size_t)klen, "once", 4, NULL);
        if (rc != STRATA_OK) fault(w->f, "set %s: %s", k, strata_errname(rc));
    }
    return NULL;
}

Test(concurrent, eviction_keeps_hot_keys_through_a_scan)
{
    strata_cache *c;
    strata *s = open_yaml("caches:\n  c:\n    max_items: 1000\n", "c", &c);
    struct faults f;
    faults_init(&f);
    for (int i = 0; i < HOT_KEYS; i++) {
        char k[32];
        int klen = snprintf(k, sizeof k, "hot:%d", i);
        cr_assert_eq(strata_set(c, k, (size_t)klen, "hot", 3, NULL), STRATA_OK);
    }
    struct scan_worker ws[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        ws[i] = (struct scan_worker){.c = c, .id = i, .f = &f};
    start_threads(tids, NTHREADS, hot_reader_main, ws, sizeof ws[0]);
    join_threads(tids, NTHREADS);
    start_threads(tids, NTHREADS, scanner_main, ws, sizeof ws[0]);
    join_threads(tids, NTHREADS);
    assert_no_faults(&f);

    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_leq(st.items, 1000);
    cr_assert_geq(st.evictions, HOT_KEYS + SCAN_KEYS - 1000);
    int kept = 0;
    for (int i = 0; i < HOT_KEYS; i++) {
        char k[32];
        int klen = snprintf(k, sizeof k, "hot:%d", i);
        strata_value *v = NULL;
        if (strata_get(c, k, (size_t)klen, &v) == STRATA_OK) kept++;
        strata_value_release(v);
    }
    cr_assert_geq(kept * 10, HOT_KEYS * 9,
                  "only %d of %d hot keys survived a scan of %d one-time keys", kept,
                  HOT_KEYS, SCAN_KEYS);
    strata_close(s);
}

/* ---- value handles survive eviction and invalidation --------------------- */

/*
 * Value layout: u32 length, u32 key index, u64 seed, then bytes drawn from the
 * seed, then a u32 FNV-1a checksum of everything before it. A reader checks a
 * handle when it gets it and again after writers had time to overwrite,
 * delete, evict and invalidate its entry, just before releasing it.
 */
#define VH_KEYS 48
#define VH_MAX_ITEMS 32 /* fewer slots than keys: sets evict */
#define VH_OPS 20000
#define VH_HELD 24
#define VH_VMIN 20
#define VH_VMAX 2000

static uint32_t fnv1a(const unsigned char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static size_t vh_make(unsigned char *buf, uint32_t key, uint64_t seed, size_t len)
{
    uint32_t l32 = (uint32_t)len;
    memcpy(buf, &l32, 4);
    memcpy(buf + 4, &key, 4);
    memcpy(buf + 8, &seed, 8);
    uint64_t s = seed | 1;
    for (size_t i = 16; i < len - 4; i++)
        buf[i] = (unsigned char)rnd(&s);
    uint32_t sum = fnv1a(buf, len - 4);
    memcpy(buf + len - 4, &sum, 4);
    return len;
}

/* NULL when the value is one consistent value of `key`, else what is wrong. */
static const char *vh_check(const strata_value *v, uint32_t key)
{
    const unsigned char *p = strata_value_data(v);
    size_t len = strata_value_len(v);
    uint32_t l32, k32, sum;
    uint64_t seed;
    if (len < VH_VMIN || len > VH_VMAX) return "bad length";
    memcpy(&l32, p, 4);
    memcpy(&k32, p + 4, 4);
    memcpy(&seed, p + 8, 8);
    if (l32 != len) return "length field differs from the handle's length";
    if (k32 != key) return "another key's value";
    memcpy(&sum, p + len - 4, 4);
    if (fnv1a(p, len - 4) != sum) return "checksum mismatch";
    uint64_t s = seed | 1;
    for (size_t i = 16; i < len - 4; i++)
        if (p[i] != (unsigned char)rnd(&s)) return "bytes differ from the seed's";
    return NULL;
}

struct vh_test {
    strata_cache *c;
    struct faults f;
    atomic_long handles_checked;
};

struct vh_worker {
    struct vh_test *t;
    int id;
};

static void *vh_writer_main(void *arg)
{
    struct vh_worker *w = arg;
    struct vh_test *t = w->t;
    uint64_t seed = 0xabcdefULL * (uint64_t)(w->id + 3);
    unsigned char buf[VH_VMAX];
    static const char *const tags[] = {"even", "odd"};
    for (long op = 0; op < VH_OPS; op++) {
        uint64_t r = rnd(&seed);
        uint32_t key = (uint32_t)(r % VH_KEYS);
        char k[32];
        int klen = snprintf(k, sizeof k, "vh:%u", key);
        unsigned what = (unsigned)(r >> 40) % 100;
        if (what < 80) {
            /* Sizes on both sides of the inline/blob threshold. */
            size_t len = VH_VMIN + (size_t)(rnd(&seed) % (VH_VMAX - VH_VMIN + 1));
            vh_make(buf, key, rnd(&seed), len);
            strata_set_opts o = {.ttl_ms = -1, .tags = &tags[key % 2], .ntags = 1};
            int rc = strata_set(t->c, k, (size_t)klen, buf, len, &o);
            if (rc != STRATA_OK) fault(&t->f, "set %s: %s", k, strata_errname(rc));
        } else if (what < 95) {
            (void)strata_delete(t->c, k, (size_t)klen);
        } else if (what < 98) {
            (void)strata_invalidate_tags(t->c, &tags[r & 1], 1);
        } else {
            (void)strata_invalidate_pattern(t->c, (r & 1) ? "vh:1*" : "vh:?");
        }
    }
    return NULL;
}

static void vh_check_or_fault(struct vh_test *t, const strata_value *v, uint32_t key,
                              const char *when)
{
    const char *why = vh_check(v, key);
    if (why) fault(&t->f, "handle of vh:%u %s: %s", key, when, why);
    atomic_fetch_add(&t->handles_checked, 1);
}

static void *vh_reader_main(void *arg)
{
    struct vh_worker *w = arg;
    struct vh_test *t = w->t;
    uint64_t seed = 0x5151ULL * (uint64_t)(w->id + 7);
    strata_value *held[VH_HELD] = {0};
    uint32_t held_key[VH_HELD] = {0};
    for (long op = 0; op < VH_OPS; op++) {
        uint32_t key = (uint32_t)(rnd(&seed) % VH_KEYS);
        char k[32];
        int klen = snprintf(k, sizeof k, "vh:%u", key);
        strata_value *v = NULL;
        int rc = strata_get(t->c, k, (size_t)klen, &v);
        if (rc < 0) fault(&t->f, "get %s: %s", k, strata_errname(rc));
        if (rc != STRATA_OK) continue;
        vh_check_or_fault(t, v, key, "at get");
        /* Keep it a while: check the one it replaces once more, then drop it. */
        unsigned slot = (unsigned)(op % VH_HELD);
        if (held[slot]) {
            vh_check_or_fault(t, held[slot], held_key[slot], "held across writes");
            strata_value_release(held[slot]);
        }
        held[slot] = v;
        held_key[slot] = key;
    }
    for (unsigned i = 0; i < VH_HELD; i++)
        if (held[i]) {
            vh_check_or_fault(t, held[i], held_key[i], "at the end");
            strata_value_release(held[i]);
        }
    return NULL;
}

Test(concurrent, value_handles_survive_overwrite_eviction_and_invalidation)
{
    strata_cache *c;
    strata *s =
        open_yaml("caches:\n  c:\n    max_items: 32\n    max_memory: 64MB\n", "c", &c);
    struct vh_test t = {.c = c};
    faults_init(&t.f);
    struct vh_worker ws[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        ws[i] = (struct vh_worker){.t = &t, .id = i};
    /* Two writers, two readers. */
    for (int i = 0; i < NTHREADS; i++)
        cr_assert_eq(pthread_create(&tids[i], NULL,
                                    i < 2 ? vh_writer_main : vh_reader_main, &ws[i]),
                     0);
    join_threads(tids, NTHREADS);
    assert_no_faults(&t.f);
    cr_assert_gt(atomic_load(&t.handles_checked), 0, "no reader ever got a value");

    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_leq(st.items, VH_MAX_ITEMS);
    cr_assert_gt(st.evictions, 0);
    strata_close(s);
}

/* ---- stress: every operation at once, exact statistics ------------------- */

/*
 * Four threads run a fixed mix of get, set, delete, get_or_set,
 * invalidate_pattern and invalidate_tags over a small key space with three
 * tags. Every value names its key, so a get that returns another key's bytes
 * is caught. Afterwards the statistics must equal what the threads counted:
 * each get or get_or_set is exactly one hit or one miss, each successful set
 * and each successful loader run one set, each delete that removed something
 * one delete.
 */
#define ST_OPS 25000
#define ST_KEYS 500

struct st_counts {
    long gets, sets, deletes, loads, loaded;
};

struct st_worker {
    strata_cache *c;
    int id;
    struct faults *f;
    struct st_counts n;
};

static const char *const ST_TAGS[] = {"red", "green", "blue"};

static int st_loader(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                     strata_set_opts *opts)
{
    struct st_worker *w = ud;
    w->n.loads++;
    char *p = malloc(klen + 8);
    if (p == NULL) return -1;
    memcpy(p, key, klen);
    memcpy(p + klen, "=loaded", 7);
    *val = p;
    *vlen = klen + 7;
    opts->ttl_ms = -1;
    opts->tags = &ST_TAGS[klen % 3]; /* static: valid past the call */
    opts->ntags = 1;
    return 0;
}

static void st_check_value(struct st_worker *w, const char *k, size_t klen,
                           const strata_value *v, const char *op)
{
    size_t len = strata_value_len(v);
    const char *p = strata_value_data(v);
    if (len <= klen || memcmp(p, k, klen) != 0 || p[klen] != '=')
        fault(w->f, "%s %s returned '%.*s'", op, k, (int)len, p);
}

static void *st_worker_main(void *arg)
{
    struct st_worker *w = arg;
    uint64_t seed = 0x77777ULL * (uint64_t)(w->id + 11);
    char val[600];
    for (long op = 0; op < ST_OPS; op++) {
        uint64_t r = rnd(&seed);
        char k[32];
        int klen = snprintf(k, sizeof k, "s%u", (unsigned)(r % ST_KEYS));
        unsigned what = (unsigned)(r >> 32) % 1000;
        strata_value *v = NULL;
        int rc;
        if (what < 400) {
            rc = strata_get(w->c, k, (size_t)klen, &v);
            w->n.gets++;
            if (rc == STRATA_OK)
                st_check_value(w, k, (size_t)klen, v, "get");
            else if (rc != STRATA_MISS)
                fault(w->f, "get %s: %s", k, strata_errname(rc));
        } else if (what < 700) {
            /* Small and large values: inline items and shared blobs. */
            size_t vlen = (size_t)klen + 1 + (size_t)(rnd(&seed) % 560);
            memset(val, 'x', vlen);
            memcpy(val, k, (size_t)klen);
            val[klen] = '=';
            const char *const *tags = &ST_TAGS[(r >> 8) % 3];
            strata_set_opts o = {
                .ttl_ms = -1, .tags = tags, .ntags = (r >> 12) % 3 ? 1 : 0};
            rc = strata_set(w->c, k, (size_t)klen, val, vlen, &o);
            if (rc == STRATA_OK)
                w->n.sets++;
            else
                fault(w->f, "set %s: %s", k, strata_errname(rc));
        } else if (what < 800) {
            rc = strata_delete(w->c, k, (size_t)klen);
            if (rc == STRATA_OK)
                w->n.deletes++;
            else if (rc != STRATA_MISS)
                fault(w->f, "delete %s: %s", k, strata_errname(rc));
        } else if (what < 990) {
            long before = w->n.loads;
            rc = strata_get_or_set(w->c, k, (size_t)klen, st_loader, w, NULL, &v);
            w->n.gets++;
            if (rc == STRATA_OK || rc == STRATA_LOADED)
                st_check_value(w, k, (size_t)klen, v, "get_or_set");
            else
                fault(w->f, "get_or_set %s: %s", k, strata_errname(rc));
            /* Our loader ran: its value was stored, unless an invalidation
             * (pattern, tags, delete) overtook the load (flight.c). */
            if (w->n.loads != before && rc == STRATA_LOADED) w->n.loaded++;
        } else if (what < 995) {
            char glob[8];
            snprintf(glob, sizeof glob, "s%u*", (unsigned)(r >> 16) % 10);
            long n = strata_invalidate_pattern(w->c, glob);
            if (n < 0)
                fault(w->f, "invalidate_pattern %s: %s", glob, strata_errname((int)n));
        } else {
            long n = strata_invalidate_tags(w->c, &ST_TAGS[(r >> 16) % 3], 1);
            if (n < 0) fault(w->f, "invalidate_tags: %s", strata_errname((int)n));
        }
        strata_value_release(v);
    }
    return NULL;
}

Test(concurrent, stress_mixed_operations_keep_stats_exact)
{
    strata_cache *c;
    strata *s =
        open_yaml("caches:\n  c:\n    max_items: 300\n    max_memory: 64MB\n", "c", &c);
    struct faults f;
    faults_init(&f);
    struct st_worker ws[NTHREADS];
    pthread_t tids[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        ws[i] = (struct st_worker){.c = c, .id = i, .f = &f};
    start_threads(tids, NTHREADS, st_worker_main, ws, sizeof ws[0]);
    join_threads(tids, NTHREADS);
    assert_no_faults(&f);

    struct st_counts sum = {0};
    for (int i = 0; i < NTHREADS; i++) {
        sum.gets += ws[i].n.gets;
        sum.sets += ws[i].n.sets;
        sum.deletes += ws[i].n.deletes;
        sum.loads += ws[i].n.loads;
        sum.loaded += ws[i].n.loaded;
    }
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.hits + st.misses, (uint64_t)sum.gets,
                 "hits %" PRIu64 " + misses %" PRIu64 " != %ld gets and get_or_sets",
                 st.hits, st.misses, sum.gets);
    cr_assert(st.sets >= (uint64_t)sum.sets &&
                  st.sets <= (uint64_t)(sum.sets + sum.loaded),
              "sets %" PRIu64 " not in [%ld sets, + %ld loads]", st.sets, sum.sets,
              sum.loaded);
    cr_assert_eq(st.deletes, (uint64_t)sum.deletes,
                 "deletes %" PRIu64 " != %ld counted", st.deletes, sum.deletes);
    cr_assert_eq(st.errors, 0);
    cr_assert_leq(st.items, 300);
    cr_assert_gt(sum.loads, 0, "no loader ever ran");

    /* Still usable and consistent after the storm. */
    cr_assert_eq(strata_clear(c), STRATA_OK);
    strata_cache_stats(c, &st);
    cr_assert_eq(st.items, 0);
    strata_close(s);
}

/*
 * Counters stay exact with more threads than the engine has counter stripes
 * (64). MANY_THREADS threads first touch the cache one after the other and
 * then stay alive (as a large worker pool would); two of them, 64 apart in
 * that order, then hammer gets at the same time. The engine hands each thread
 * a slot in that order and picks a stripe by slot % 64; a thread with a slot
 * below 64 counts with a plain load+store, which loses the concurrent atomic
 * adds of the thread 64 slots later on the same stripe.
 */
#define MANY_THREADS 80
#define MANY_BUSY_OPS 300000L

struct many_test {
    strata_cache *c;
    pthread_mutex_t order;
    int next;
    pthread_barrier_t registered, done;
    long gets[MANY_THREADS];
};

static void *many_main(void *arg)
{
    struct many_test *t = arg;
    strata_value *v = NULL;
    pthread_mutex_lock(&t->order);
    int idx = t->next++;
    (void)strata_get(t->c, "k", 1, &v); /* this thread's first use of the engine */
    strata_value_release(v);
    t->gets[idx]++;
    pthread_mutex_unlock(&t->order);
    pthread_barrier_wait(&t->registered);
    if (idx == 0 || idx == 64) {
        for (long i = 0; i < MANY_BUSY_OPS; i++) {
            (void)strata_get(t->c, "k", 1, &v);
            strata_value_release(v);
        }
        t->gets[idx] += MANY_BUSY_OPS;
    }
    pthread_barrier_wait(&t->done); /* nobody exits (and frees a slot) early */
    return NULL;
}

Test(concurrent, stats_exact_with_more_threads_than_counter_stripes)
{
    strata_cache *c;
    strata *s = open_yaml("caches:\n  c:\n    max_memory: 16MB\n", "c", &c);
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, NULL), STRATA_OK);
    static struct many_test many; /* no leak when an assertion fails */
    struct many_test *t = &many;
    memset(t, 0, sizeof *t);
    t->c = c;
    pthread_mutex_init(&t->order, NULL);
    pthread_barrier_init(&t->registered, NULL, MANY_THREADS);
    pthread_barrier_init(&t->done, NULL, MANY_THREADS);
    pthread_t tids[MANY_THREADS];
    for (int i = 0; i < MANY_THREADS; i++)
        cr_assert_eq(pthread_create(&tids[i], NULL, many_main, t), 0);
    join_threads(tids, MANY_THREADS);

    long gets = 0;
    for (int i = 0; i < MANY_THREADS; i++)
        gets += t->gets[i];
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.hits + st.misses, (uint64_t)gets,
                 "hits %" PRIu64 " + misses %" PRIu64 " != %ld gets: %" PRId64
                 " counts lost with %d threads",
                 st.hits, st.misses, gets,
                 (int64_t)gets - (int64_t)(st.hits + st.misses), MANY_THREADS);
    pthread_barrier_destroy(&t->registered);
    pthread_barrier_destroy(&t->done);
    pthread_mutex_destroy(&t->order);
    strata_close(s);
}
