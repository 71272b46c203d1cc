/*
 * test_singleflight.c -- strata_get_or_set under real threads: one loader per
 * key, every concurrent caller gets its result, waiters give up after
 * loader_timeout, different keys load in parallel.
 *
 * Every test holds its loader until the callers it claims to coalesce are
 * really waiting (strata_flight_waiters, a test hook in backend.h), so each
 * fails without single flight instead of passing by luck of scheduling. All
 * waiting is bounded polling (short nanosleeps, ~10 s at most) or a bounded
 * condition wait; a bound that runs out fails the test rather than hanging it.
 * Worker threads never call Criterion: they record what they saw and the main
 * thread asserts after joining them.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "strata.h"

#define NCALLERS 16
#define POLL_LIMIT_MS 10000 /* how long a bounded poll may take before it fails */

/* ---- helpers ------------------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap(void)
{
    struct timespec ts = {0, 200 * 1000}; /* 200 us */
    nanosleep(&ts, NULL);
}

/* Open a strata whose `caches:` section is `yaml`; the cache called `name`. */
static strata *open_yaml(const char *yaml, const char *name, strata_cache **c)
{
    char path[] = "/tmp/strata-test-singleflight-XXXXXX";
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

static const char *const CONF_DEFAULT = "caches:\n"
                                        "  sf:\n"
                                        "    max_memory: 64MB\n";

/* The deterministic value of `len` bytes the loaders produce. */
static void fill_value(unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)(i * 31u + 7u);
}

/* ---- 16 callers, one loader ---------------------------------------------- */

struct flight_test {
    strata_cache *c;
    const char *key;
    size_t vlen;         /* bytes the loader returns */
    int loader_rc;       /* what the loader returns once everyone waits */
    atomic_int calls;    /* loader invocations */
    atomic_bool gave_up; /* the loader never saw NCALLERS-1 waiters */
    long seen_waiters;   /* the last count the loader polled */
};

struct caller {
    pthread_t tid;
    struct flight_test *t;
    int rc;
    strata_value *v;
};

/* Blocks until all the other callers wait on this flight, then answers. */
static int loader_after_all_wait(void *ud, const void *key, size_t klen, void **val,
                                 size_t *vlen, strata_set_opts *opts)
{
    struct flight_test *t = ud;
    (void)opts;
    atomic_fetch_add(&t->calls, 1);
    uint64_t deadline = mono_ms() + POLL_LIMIT_MS;
    long n;
    while ((n = strata_flight_waiters(t->c, key, klen)) != NCALLERS - 1) {
        if (mono_ms() > deadline) {
            t->seen_waiters = n;
            atomic_store(&t->gave_up, true);
            return -1;
        }
        nap();
    }
    t->seen_waiters = n;
    if (t->loader_rc < 0) return t->loader_rc;
    unsigned char *p = malloc(t->vlen ? t->vlen : 1);
    if (p == NULL) return -1;
    fill_value(p, t->vlen);
    *val = p;
    *vlen = t->vlen;
    return 0;
}

static void *caller_main(void *arg)
{
    struct caller *c = arg;
    struct flight_test *t = c->t;
    c->rc = strata_get_or_set(t->c, t->key, strlen(t->key), loader_after_all_wait, t,
                              NULL, &c->v);
    return NULL;
}

static void run_callers(struct flight_test *t, struct caller *cs)
{
    for (int i = 0; i < NCALLERS; i++) {
        cs[i].t = t;
        cs[i].rc = 99;
        cs[i].v = NULL;
        cr_assert_eq(pthread_create(&cs[i].tid, NULL, caller_main, &cs[i]), 0);
    }
    for (int i = 0; i < NCALLERS; i++)
        pthread_join(cs[i].tid, NULL);
    cr_assert_not(atomic_load(&t->gave_up),
                  "the loader saw %ld waiters, never %d, in %d ms: callers did not "
                  "join the flight",
                  t->seen_waiters, NCALLERS - 1, POLL_LIMIT_MS);
    cr_assert_eq(atomic_load(&t->calls), 1, "loader ran %d times for one key",
                 atomic_load(&t->calls));
}

static void sixteen_callers_one_loader(size_t vlen)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    struct flight_test t = {.c = c, .key = "user:42", .vlen = vlen, .loader_rc = 0};
    struct caller cs[NCALLERS];
    run_callers(&t, cs);

    static unsigned char want[4096];
    cr_assert_leq(vlen, sizeof want);
    fill_value(want, vlen);
    for (int i = 0; i < NCALLERS; i++) {
        cr_assert_eq(cs[i].rc, STRATA_LOADED, "caller %d: %s", i,
                     strata_errname(cs[i].rc));
        cr_assert_not_null(cs[i].v, "caller %d got no value", i);
        cr_assert_eq(strata_value_len(cs[i].v), vlen, "caller %d", i);
        cr_assert(memcmp(strata_value_data(cs[i].v), want, vlen) == 0,
                  "caller %d got other bytes", i);
        strata_value_release(cs[i].v);
    }
    cr_assert_eq(strata_flight_waiters(c, t.key, strlen(t.key)), -1,
                 "the flight outlived its loader");

    /* Stored once: a plain get now hits the same bytes. */
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, t.key, strlen(t.key), &v), STRATA_OK);
    cr_assert_eq(strata_value_len(v), vlen);
    cr_assert(memcmp(strata_value_data(v), want, vlen) == 0);
    strata_value_release(v);

    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.sets, 1, "one loader, one set (got %llu)",
                 (unsigned long long)st.sets);
    cr_assert_eq(st.misses, NCALLERS, "every get_or_set missed first (got %llu)",
                 (unsigned long long)st.misses);
    cr_assert_eq(st.hits, 1);
    strata_close(s);
}

Test(singleflight, sixteen_callers_one_loader_small_value)
{
    sixteen_callers_one_loader(64); /* stored inline in the item */
}

Test(singleflight, sixteen_callers_one_loader_large_value)
{
    sixteen_callers_one_loader(3000); /* stored as a shared blob */
}

Test(singleflight, loader_error_reaches_every_waiter_and_caches_nothing)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    struct flight_test t = {.c = c, .key = "broken", .vlen = 8, .loader_rc = -1};
    struct caller cs[NCALLERS];
    run_callers(&t, cs);

    for (int i = 0; i < NCALLERS; i++) {
        cr_assert_eq(cs[i].rc, STRATA_ELOADER, "caller %d: %s", i,
                     strata_errname(cs[i].rc));
        cr_assert_null(cs[i].v, "caller %d got a value from a failed loader", i);
    }
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, t.key, strlen(t.key), &v), STRATA_MISS,
                 "a failed loader cached something");
    cr_assert_null(v);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.sets, 0);
    cr_assert_eq(st.items, 0);
    strata_close(s);
}

/* ---- a waiter gives up after loader_timeout ------------------------------ */

struct gate {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool started;  /* the loader is running */
    bool released; /* the test lets it finish */
    bool gave_up;  /* nobody released it within the bound */
    int calls;
};

static void gate_init(struct gate *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cond, &ca);
    pthread_condattr_destroy(&ca);
}

static void gate_fini(struct gate *g)
{
    pthread_cond_destroy(&g->cond);
    pthread_mutex_destroy(&g->lock);
}

/* Wait (lock held) until *flag, at most POLL_LIMIT_MS. */
static bool locked_wait_flag(struct gate *g, const bool *flag)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += POLL_LIMIT_MS / 1000;
    int rc = 0;
    while (!*flag && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cond, &g->lock, &dl);
    return *flag;
}

static const char GATED_VALUE[] = "computed slowly";

static int loader_gated(void *ud, const void *key, size_t klen, void **val,
                        size_t *vlen, strata_set_opts *opts)
{
    struct gate *g = ud;
    (void)key;
    (void)klen;
    (void)opts;
    pthread_mutex_lock(&g->lock);
    g->calls++;
    g->started = true;
    pthread_cond_broadcast(&g->cond);
    bool ok = locked_wait_flag(g, &g->released);
    if (!ok) g->gave_up = true;
    pthread_mutex_unlock(&g->lock);
    if (!ok) return -1;
    *val = strdup(GATED_VALUE);
    *vlen = sizeof GATED_VALUE - 1;
    return *val ? 0 : -1;
}

struct gated_caller {
    strata_cache *c;
    struct gate *g;
    const char *key;
    int rc;
    strata_value *v;
};

static void *gated_caller_main(void *arg)
{
    struct gated_caller *gc = arg;
    gc->rc = strata_get_or_set(gc->c, gc->key, strlen(gc->key), loader_gated, gc->g,
                               NULL, &gc->v);
    return NULL;
}

Test(singleflight, waiter_times_out_after_loader_timeout)
{
    strata_cache *c;
    strata *s = open_yaml("caches:\n"
                          "  sf:\n"
                          "    max_memory: 16MB\n"
                          "    loader_timeout: 50ms\n",
                          "sf", &c);
    struct gate g;
    gate_init(&g);
    struct gated_caller owner = {.c = c, .g = &g, .key = "slow", .rc = 99};
    pthread_t tid;
    cr_assert_eq(pthread_create(&tid, NULL, gated_caller_main, &owner), 0);

    pthread_mutex_lock(&g.lock);
    bool started = locked_wait_flag(&g, &g.started);
    pthread_mutex_unlock(&g.lock);
    cr_assert(started, "the loader did not start within %d ms", POLL_LIMIT_MS);

    /* The main thread joins the flight and must give up after 50 ms. Its own
     * loader must never run: the gate counts every call. */
    strata_value *v = NULL;
    uint64_t t0 = mono_ms();
    int rc = strata_get_or_set(c, "slow", 4, loader_gated, &g, NULL, &v);
    uint64_t waited = mono_ms() - t0;
    long waiters = strata_flight_waiters(c, "slow", 4);

    pthread_mutex_lock(&g.lock);
    g.released = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
    pthread_join(tid, NULL);

    cr_assert_eq(rc, STRATA_ETIMEDOUT, "the waiter got %s", strata_errname(rc));
    cr_assert_null(v);
    cr_assert(waited >= 49, "the waiter gave up after %llu ms, before loader_timeout",
              (unsigned long long)waited);
    cr_assert(waited < POLL_LIMIT_MS, "the waiter waited %llu ms for a 50 ms timeout",
              (unsigned long long)waited);
    cr_assert_eq(waiters, 0, "after timing out, the flight still counts %ld waiters",
                 waiters);
    cr_assert_not(g.gave_up, "the loader was never released");
    cr_assert_eq(g.calls, 1, "the loader ran %d times", g.calls);

    cr_assert_eq(owner.rc, STRATA_LOADED, "the loader's caller got %s",
                 strata_errname(owner.rc));
    cr_assert_not_null(owner.v);
    cr_assert_eq(strata_value_len(owner.v), sizeof GATED_VALUE - 1);
    cr_assert(memcmp(strata_value_data(owner.v), GATED_VALUE, sizeof GATED_VALUE - 1) ==
              0);
    strata_value_release(owner.v);

    cr_assert_eq(strata_get(c, "slow", 4, &v), STRATA_OK,
                 "the loaded value was not cached");
    cr_assert_eq(strata_value_len(v), sizeof GATED_VALUE - 1);
    cr_assert(memcmp(strata_value_data(v), GATED_VALUE, sizeof GATED_VALUE - 1) == 0);
    strata_value_release(v);
    cr_assert_eq(strata_flight_waiters(c, "slow", 4), -1);
    strata_close(s);
    gate_fini(&g);
}

/* ---- different keys load in parallel ------------------------------------- */

struct pair_test {
    strata_cache *c;
    atomic_bool started[2];
    atomic_bool gave_up[2];
    atomic_int calls[2];
};

struct pair_caller {
    struct pair_test *t;
    int which; /* 0 or 1: the key "pair:0" / "pair:1" */
    int rc;
    strata_value *v;
};

/* Each loader announces itself, then waits for the other key's loader: both
 * finish only if they run at the same time. */
static int loader_meets_other(void *ud, const void *key, size_t klen, void **val,
                              size_t *vlen, strata_set_opts *opts)
{
    struct pair_caller *pc = ud;
    struct pair_test *t = pc->t;
    (void)opts;
    int me = pc->which, other = 1 - pc->which;
    atomic_fetch_add(&t->calls[me], 1);
    atomic_store(&t->started[me], true);
    uint64_t deadline = mono_ms() + POLL_LIMIT_MS;
    while (!atomic_load(&t->started[other])) {
        if (mono_ms() > deadline) {
            atomic_store(&t->gave_up[me], true);
            return -1;
        }
        nap();
    }
    char *p = malloc(klen);
    if (p == NULL) return -1;
    memcpy(p, key, klen); /* the value is the key: each flight answers its own */
    *val = p;
    *vlen = klen;
    return 0;
}

static void *pair_caller_main(void *arg)
{
    struct pair_caller *pc = arg;
    char key[16];
    snprintf(key, sizeof key, "pair:%d", pc->which);
    pc->rc = strata_get_or_set(pc->t->c, key, strlen(key), loader_meets_other, pc, NULL,
                               &pc->v);
    return NULL;
}

Test(singleflight, different_keys_load_in_parallel)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    struct pair_test t = {.c = c};
    struct pair_caller pcs[2] = {{.t = &t, .which = 0}, {.t = &t, .which = 1}};
    pthread_t tids[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&tids[i], NULL, pair_caller_main, &pcs[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(tids[i], NULL);

    for (int i = 0; i < 2; i++) {
        char key[16];
        snprintf(key, sizeof key, "pair:%d", i);
        cr_assert_not(atomic_load(&t.gave_up[i]),
                      "the loader of %s waited %d ms for the other key's loader: "
                      "loaders of different keys do not run in parallel",
                      key, POLL_LIMIT_MS);
        cr_assert_eq(atomic_load(&t.calls[i]), 1);
        cr_assert_eq(pcs[i].rc, STRATA_LOADED, "%s: %s", key,
                     strata_errname(pcs[i].rc));
        cr_assert_eq(strata_value_len(pcs[i].v), strlen(key));
        cr_assert(memcmp(strata_value_data(pcs[i].v), key, strlen(key)) == 0,
                  "%s got another key's value", key);
        strata_value_release(pcs[i].v);
    }
    strata_close(s);
}

/* ---- an invalidation during a load: the value is not cached ----------------
 * The loader blocks until the test has run the invalidation; its caller still
 * gets the value (it asked first), but the value must not survive the
 * invalidation in the cache. Without poisoning, the get afterwards hits. */

enum inval_kind { INV_DELETE, INV_PATTERN, INV_CLEAR, INV_TAG };

struct inval_test {
    strata_cache *c;
    atomic_int started;
    atomic_int release;
    int rc;
    size_t len;
};

static int blocking_tag_loader(void *ud, const void *key, size_t klen, void **val,
                               size_t *vlen, strata_set_opts *opts)
{
    (void)key;
    (void)klen;
    struct inval_test *t = ud;
    static const char *const tags[] = {"price"};
    atomic_store(&t->started, 1);
    uint64_t t0 = mono_ms();
    while (!atomic_load(&t->release) && mono_ms() - t0 < POLL_LIMIT_MS)
        nap();
    *val = strdup("old-price");
    *vlen = strlen("old-price");
    opts->tags = tags;
    opts->ntags = 1;
    return 0;
}

static void *inval_caller(void *arg)
{
    struct inval_test *t = arg;
    strata_value *v = NULL;
    t->rc = strata_get_or_set(t->c, "item:1", 6, blocking_tag_loader, t, NULL, &v);
    t->len = strata_value_len(v);
    strata_value_release(v);
    return NULL;
}

static void run_inval_during_load(enum inval_kind kind)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    struct inval_test t = {.c = c};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, inval_caller, &t), 0);
    uint64_t t0 = mono_ms();
    while (!atomic_load(&t.started) && mono_ms() - t0 < POLL_LIMIT_MS)
        nap();
    cr_assert(atomic_load(&t.started), "loader never started");
    switch (kind) {
    case INV_DELETE:
        cr_assert_eq(strata_delete(c, "item:1", 6), STRATA_MISS);
        break;
    case INV_PATTERN:
        cr_assert_eq(strata_invalidate_pattern(c, "item:*"), 0);
        break;
    case INV_CLEAR:
        cr_assert_eq(strata_clear(c), STRATA_OK);
        break;
    case INV_TAG:
        strata_invalidate_tags(c, (const char *const[]){"price"}, 1);
        break;
    }
    atomic_store(&t.release, 1);
    pthread_join(th, NULL);
    cr_assert_eq(t.rc, STRATA_LOADED, "caller got %s", strata_errname(t.rc));
    cr_assert_eq(t.len, strlen("old-price"));
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "item:1", 6, &v), STRATA_MISS,
                 "a value loaded before the invalidation is still cached");
    cr_assert_null(v);
    strata_close(s);
}

Test(singleflight, delete_during_load_is_not_undone)
{
    run_inval_during_load(INV_DELETE);
}

Test(singleflight, pattern_during_load_is_not_undone)
{
    run_inval_during_load(INV_PATTERN);
}

Test(singleflight, clear_during_load_is_not_undone)
{
    run_inval_during_load(INV_CLEAR);
}

Test(singleflight, tag_invalidation_during_load_is_not_undone)
{
    run_inval_during_load(INV_TAG);
}

Test(singleflight, unrelated_invalidation_during_load_keeps_the_value)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    struct inval_test t = {.c = c};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, inval_caller, &t), 0);
    uint64_t t0 = mono_ms();
    while (!atomic_load(&t.started) && mono_ms() - t0 < POLL_LIMIT_MS)
        nap();
    strata_delete(c, "other", 5);
    strata_invalidate_pattern(c, "user:*");
    strata_invalidate_tags(c, (const char *const[]){"stock"}, 1);
    atomic_store(&t.release, 1);
    pthread_join(th, NULL);
    cr_assert_eq(t.rc, STRATA_LOADED);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "item:1", 6, &v), STRATA_OK);
    strata_value_release(v);
    strata_close(s);
}

/* ---- regression: a stale load was visible between its store and its undo ---
 * The loader's store used to publish first and check for poison afterwards,
 * so a get that started after strata_delete() returned could still see the
 * value loaded before it, for a moment. A reader spins on the key from the
 * moment the delete returns until the load is over: it must never hit. */

struct race {
    strata_cache *c;
    char key[32];
    atomic_int started, release, done;
    int rc;
};

static int race_loader(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                       strata_set_opts *opts)
{
    (void)key;
    (void)klen;
    (void)opts;
    struct race *r = ud;
    atomic_store(&r->started, 1);
    uint64_t t0 = mono_ms();
    while (!atomic_load(&r->release) && mono_ms() - t0 < POLL_LIMIT_MS)
        ;
    *val = strdup("stale");
    *vlen = 5;
    return 0;
}

static void *race_caller(void *arg)
{
    struct race *r = arg;
    strata_value *v = NULL;
    r->rc = strata_get_or_set(r->c, r->key, strlen(r->key), race_loader, r, NULL, &v);
    strata_value_release(v);
    atomic_store(&r->done, 1);
    return NULL;
}

Test(singleflight, no_get_after_delete_sees_the_value_loaded_before_it)
{
    strata_cache *c;
    strata *s = open_yaml(CONF_DEFAULT, "sf", &c);
    int stale_hits = 0;
    for (int i = 0; i < 2000 && stale_hits == 0; i++) {
        struct race r = {.c = c};
        snprintf(r.key, sizeof r.key, "race:%d", i);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, race_caller, &r), 0);
        uint64_t t0 = mono_ms();
        while (!atomic_load(&r.started) && mono_ms() - t0 < POLL_LIMIT_MS)
            ;
        strata_delete(c, r.key, strlen(r.key));
        atomic_store(&r.release, 1);
        /* Every get from here on starts after the delete returned. */
        for (int spins = 0; !atomic_load(&r.done) || spins < 50; spins++) {
            strata_value *v = NULL;
            if (strata_get(c, r.key, strlen(r.key), &v) == STRATA_OK) stale_hits++;
            strata_value_release(v);
        }
        pthread_join(th, NULL);
        cr_assert_eq(r.rc, STRATA_LOADED);
    }
    strata_close(s);
    cr_assert_eq(stale_hits, 0, "a get after the delete saw the stale loaded value");
}
