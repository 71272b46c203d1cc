/*
 * test_redis.c -- the redis backend against a real redis-server (Debian's),
 * which every test starts on a free loopback port and stops: the C API on
 * Redis, the key layout, tag versions, pattern invalidation with SCAN,
 * compression, single flight, and Redis going away and coming back.
 *
 * Redis expires keys on its own clock, so TTLs are checked with PTTL, not by
 * waiting. Waiting for processes is bounded polling.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "strata.h"

#define POLL_LIMIT_MS 10000

static pid_t server = -1;
static int port;
static pid_t extra[2] = {-1,
                         -1}; /* a test's replica and sentinel, stopped in teardown */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void nap(void)
{
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static redisContext *raw(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static void start_server(void)
{
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    server = fork();
    cr_assert_geq(server, 0);
    if (server == 0) {
        int null = open("/dev/null", 1);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    uint64_t t0 = mono_ms();
    for (;;) {
        redisContext *c = raw();
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            bool ok = r && r->type == REDIS_REPLY_STATUS;
            if (r) freeReplyObject(r);
            redisFree(c);
            if (ok) return;
        }
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "redis-server did not start on %d",
                     port);
        nap();
    }
}

static void stop_server(void)
{
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
    }
    server = -1;
}

static void setup(void)
{
    port = free_port();
    start_server();
}

static void teardown(void)
{
    stop_server();
    for (int i = 0; i < 2; i++)
        if (extra[i] > 0) {
            kill(extra[i], SIGKILL);
            waitpid(extra[i], NULL, 0);
            extra[i] = -1;
        }
}

TestSuite(redis, .init = setup, .fini = teardown, .timeout = 60);

/* A strata with the caches of `yaml` (%d: the port, for every url). */
static strata *open_yaml(const char *fmt)
{
    char yaml[2048], path[] = "/tmp/strata-test-redis-XXXXXX";
    snprintf(yaml, sizeof yaml, fmt, port, port, port);
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s\n%s", err ? err : "?", yaml);
    return s;
}

#define ONE "caches:\n  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\" }\n"

static redisReply *rcmd(const char *fmt, const char *arg)
{
    redisContext *c = raw();
    cr_assert_not_null(c);
    redisReply *r = redisCommand(c, fmt, arg);
    redisFree(c);
    cr_assert_not_null(r);
    return r;
}

static bool exists(const char *key)
{
    redisReply *r = rcmd("EXISTS %s", key);
    bool e = r->integer == 1;
    freeReplyObject(r);
    return e;
}

static int get_str(strata_cache *c, const char *k, char *buf, size_t cap)
{
    strata_value *v = NULL;
    int rc = strata_get(c, k, strlen(k), &v);
    if (rc == STRATA_OK) {
        size_t n = strata_value_len(v) < cap - 1 ? strata_value_len(v) : cap - 1;
        memcpy(buf, strata_value_data(v), n);
        buf[n] = 0;
        strata_value_release(v);
    }
    return rc;
}

Test(redis, set_get_delete_binary_values_in_the_documented_layout)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    const char val[] = {'a', 0, 'b', (char)0xff};
    cr_assert_eq(strata_set(c, "k\0x", 3, val, sizeof val, NULL), STRATA_OK);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "k\0x", 3, &v), STRATA_OK);
    cr_assert_eq(strata_value_len(v), sizeof val);
    cr_assert_eq(memcmp(strata_value_data(v), val, sizeof val), 0);
    strata_value_release(v);
    /* {prefix}:{cache}:k:<key> */
    redisContext *rc = raw();
    redisReply *r = redisCommand(rc, "EXISTS %b", "strata:r:k:k\0x", (size_t)14);
    cr_assert_eq(r->integer, 1);
    freeReplyObject(r);
    redisFree(rc);
    cr_assert_eq(strata_get(c, "nope", 4, &v), STRATA_MISS);
    cr_assert_null(v);
    cr_assert_eq(strata_delete(c, "k\0x", 3), STRATA_OK);
    cr_assert_eq(strata_delete(c, "k\0x", 3), STRATA_MISS);
    cr_assert_eq(strata_get(c, "k\0x", 3, &v), STRATA_MISS);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_eq(st.hits, 1);
    cr_assert_eq(st.misses, 2);
    cr_assert_eq(st.sets, 1);
    cr_assert_eq(st.deletes, 1);
    cr_assert_eq(st.errors, 0);
    strata_close(s);
}

Test(redis, ttls_are_redis_expiry)
{
    strata *s =
        open_yaml("caches:\n"
                  "  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\", ttl: 10m }\n"
                  "  n: { backend: redis, url: \"redis://127.0.0.1:%d/0\" }\n");
    strata_cache *c = strata_cache_get(s, "r"), *n = strata_cache_get(s, "n");
    strata_set_opts five = {5000, NULL, 0}, never = {-1, NULL, 0};
    cr_assert_eq(strata_set(c, "a", 1, "1", 1, &five), STRATA_OK);
    cr_assert_eq(strata_set(c, "b", 1, "1", 1, NULL), STRATA_OK); /* cache default */
    cr_assert_eq(strata_set(c, "c", 1, "1", 1, &never), STRATA_OK);
    cr_assert_eq(strata_set(n, "d", 1, "1", 1, NULL), STRATA_OK); /* no default: none */
    redisReply *r = rcmd("PTTL %s", "strata:r:k:a");
    cr_assert(r->integer > 0 && r->integer <= 5000, "%lld", r->integer);
    freeReplyObject(r);
    r = rcmd("PTTL %s", "strata:r:k:b");
    cr_assert(r->integer > 5000 && r->integer <= 600000, "%lld", r->integer);
    freeReplyObject(r);
    r = rcmd("PTTL %s", "strata:r:k:c");
    cr_assert_eq(r->integer, -1);
    freeReplyObject(r);
    r = rcmd("PTTL %s", "strata:n:k:d");
    cr_assert_eq(r->integer, -1);
    freeReplyObject(r);
    strata_close(s);
}

Test(redis, tag_versions_invalidate_and_a_missing_tag_record_too)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    const char *ab[] = {"a", "b"}, *b[] = {"b"}, *x[] = {"x"};
    strata_set_opts oab = {0, ab, 2}, ob = {0, b, 1}, ox = {0, x, 1};
    cr_assert_eq(strata_set(c, "1", 1, "one", 3, &oab), STRATA_OK);
    cr_assert_eq(strata_set(c, "2", 1, "two", 3, &ob), STRATA_OK);
    cr_assert_eq(strata_set(c, "3", 1, "three", 5, &ox), STRATA_OK);
    cr_assert(exists("strata:r:t:a") && exists("strata:r:t:b") &&
              exists("strata:r:tagseq"));
    const char *a[] = {"a"};
    cr_assert_geq(strata_invalidate_tags(c, a, 1), 0);
    char buf[16];
    cr_assert_eq(get_str(c, "1", buf, sizeof buf), STRATA_MISS);
    cr_assert(!exists("strata:r:k:1"), "an invalidated value is unlinked on its get");
    cr_assert_eq(get_str(c, "2", buf, sizeof buf), STRATA_OK);
    cr_assert_str_eq(buf, "two");
    /* a tag record that is gone (evicted, flushed) invalidates its entries */
    redisReply *r = rcmd("DEL %s", "strata:r:t:x");
    freeReplyObject(r);
    cr_assert_eq(get_str(c, "3", buf, sizeof buf), STRATA_MISS);
    /* storing again takes the tag's new version */
    cr_assert_eq(strata_set(c, "1", 1, "uno", 3, &oab), STRATA_OK);
    cr_assert_eq(get_str(c, "1", buf, sizeof buf), STRATA_OK);
    cr_assert_str_eq(buf, "uno");
    strata_close(s);
}

Test(redis, patterns_scan_only_the_caches_own_keys)
{
    strata *s = open_yaml("caches:\n"
                          "  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\" }\n"
                          "  o: { backend: redis, url: \"redis://127.0.0.1:%d/0\" }\n"
                          "  p: { backend: redis, url: \"redis://127.0.0.1:%d/0\", "
                          "key_prefix: \"x*y\" }\n");
    strata_cache *r = strata_cache_get(s, "r"), *o = strata_cache_get(s, "o"),
                 *p = strata_cache_get(s, "p");
    char k[32];
    for (int i = 0; i < 2500; i++) { /* more than one SCAN batch */
        snprintf(k, sizeof k, "user:%d", i);
        cr_assert_eq(strata_set(r, k, strlen(k), "v", 1, NULL), STRATA_OK);
    }
    cr_assert_eq(strata_set(r, "other", 5, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_set(o, "user:1", 6, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_set(p, "user:1", 6, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_invalidate_pattern(r, "user:*"), 2500);
    cr_assert_eq(strata_invalidate_pattern(r, "user:*"), 0);
    char buf[8];
    cr_assert_eq(get_str(r, "other", buf, sizeof buf), STRATA_OK);
    cr_assert_eq(get_str(o, "user:1", buf, sizeof buf), STRATA_OK);
    cr_assert_eq(get_str(p, "user:1", buf, sizeof buf), STRATA_OK);
    /* the prefix's glob bytes are escaped: "x*y" matches itself only */
    cr_assert_eq(strata_invalidate_pattern(p, "u[s]er:?"), 1);
    cr_assert_eq(strata_invalidate_pattern(r, "[bad"), STRATA_EINVAL);
    strata_close(s);
}

Test(redis, clear_removes_values_and_keeps_the_tag_sequence)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    const char *t[] = {"t"};
    strata_set_opts o = {0, t, 1};
    cr_assert_eq(strata_set(c, "a", 1, "1", 1, &o), STRATA_OK);
    cr_assert_eq(strata_invalidate_tags(c, t, 1), 0);
    redisReply *r = rcmd("GET %s", "strata:r:tagseq");
    long long seq = atoll(r->str);
    freeReplyObject(r);
    cr_assert_eq(strata_set(c, "b", 1, "1", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_clear(c), STRATA_OK);
    char buf[8];
    cr_assert_eq(get_str(c, "b", buf, sizeof buf), STRATA_MISS);
    r = rcmd("GET %s", "strata:r:tagseq");
    cr_assert_eq(atoll(r->str), seq, "the tag sequence is never reset");
    freeReplyObject(r);
    strata_close(s);
}

Test(redis, compressed_values_round_trip)
{
    strata *s =
        open_yaml("caches:\n  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\", "
                  "compress: zstd, compress_min_size: 1KB }\n");
    strata_cache *c = strata_cache_get(s, "r");
    char big[8192];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 7);
    cr_assert_eq(strata_set(c, "z", 1, big, sizeof big, NULL), STRATA_OK);
    redisReply *r = rcmd("STRLEN %s", "strata:r:k:z");
    cr_assert_lt(r->integer, 1024, "stored compressed: %lld bytes", r->integer);
    freeReplyObject(r);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "z", 1, &v), STRATA_OK);
    cr_assert_eq(strata_value_len(v), sizeof big);
    cr_assert_eq(memcmp(strata_value_data(v), big, sizeof big), 0);
    strata_value_release(v);
    strata_close(s);
}

/* ---- single flight ---- */

struct gate {
    pthread_mutex_t m;
    pthread_cond_t cv;
    bool open;
    atomic_int calls;
};

static int slow_loader(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                       strata_set_opts *opts)
{
    (void)key;
    (void)klen;
    (void)opts;
    struct gate *g = ud;
    atomic_fetch_add(&g->calls, 1);
    pthread_mutex_lock(&g->m);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->m);
    pthread_mutex_unlock(&g->m);
    *val = strdup("loaded");
    *vlen = 6;
    return 0;
}

struct caller {
    strata_cache *c;
    struct gate *g;
    int rc;
    char got[16];
};

static void *call(void *arg)
{
    struct caller *k = arg;
    strata_value *v = NULL;
    k->rc = strata_get_or_set(k->c, "f", 1, slow_loader, k->g, NULL, &v);
    if (v) {
        snprintf(k->got, sizeof k->got, "%.*s", (int)strata_value_len(v),
                 (const char *)strata_value_data(v));
        strata_value_release(v);
    }
    return NULL;
}

Test(redis, get_or_set_runs_one_loader_per_key)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0};
    enum { N = 8 };
    struct caller k[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        k[i] = (struct caller){c, &g, 0, ""};
        pthread_create(&th[i], NULL, call, &k[i]);
    }
    uint64_t t0 = mono_ms();
    while (strata_flight_waiters(c, "f", 1) < N - 1) { /* every other caller waits */
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "waiters: %ld",
                     strata_flight_waiters(c, "f", 1));
        nap();
    }
    pthread_mutex_lock(&g.m);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.m);
    for (int i = 0; i < N; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(atomic_load(&g.calls), 1);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(k[i].rc, STRATA_LOADED);
        cr_assert_str_eq(k[i].got, "loaded");
    }
    struct caller again = {c, &g, 0, ""};
    call(&again);
    cr_assert_eq(again.rc, STRATA_OK, "the value was stored in Redis");
    cr_assert_eq(atomic_load(&g.calls), 1);
    strata_close(s);
}

static strata_cache *veto_cache;

static int invalidating_loader(void *ud, const void *key, size_t klen, void **val,
                               size_t *vlen, strata_set_opts *opts)
{
    (void)ud;
    (void)key;
    (void)klen;
    static const char *tags[] = {"price"};
    /* The data this loader read is what an invalidation during the load
     * was meant for: the value must not stay cached. */
    cr_assert_eq(strata_invalidate_tags(veto_cache, tags, 1), 0);
    opts->tags = tags;
    opts->ntags = 1;
    *val = strdup("old");
    *vlen = 3;
    return 0;
}

Test(redis, an_invalidation_during_the_load_vetoes_the_store)
{
    strata *s = open_yaml(ONE);
    veto_cache = strata_cache_get(s, "r");
    const char *tags[] = {"price"};
    strata_set_opts o = {0, tags, 1};
    cr_assert_eq(strata_set(veto_cache, "other", 5, "x", 1, &o),
                 STRATA_OK); /* tag exists */
    strata_value *v = NULL;
    cr_assert_eq(
        strata_get_or_set(veto_cache, "p", 1, invalidating_loader, NULL, NULL, &v),
        STRATA_LOADED);
    strata_value_release(v);
    char buf[8];
    cr_assert_eq(get_str(veto_cache, "p", buf, sizeof buf), STRATA_MISS);
    strata_close(s);
}

/* ---- failures ---- */

Test(redis, redis_down_fails_fast_and_recovers_on_its_own)
{
    strata *s =
        open_yaml("caches:\n  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\", "
                  "connect_timeout: 200ms, command_timeout: 100ms }\n");
    strata_cache *c = strata_cache_get(s, "r");
    cr_assert_eq(strata_set(c, "a", 1, "1", 1, NULL), STRATA_OK);
    stop_server();
    strata_value *v = NULL;
    uint64_t t0 = mono_ms();
    for (int i = 0; i < 50; i++)
        cr_assert_eq(strata_get(c, "a", 1, &v), STRATA_EBACKEND);
    /* 50 calls: the first pays a connect, the others fail fast (backoff) */
    cr_assert_lt(mono_ms() - t0, 2000);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_geq(st.errors, 50);
    start_server(); /* same port, empty */
    t0 = mono_ms();
    while (strata_set(c, "a", 1, "2", 1, NULL) != STRATA_OK) { /* backoff <= 5 s */
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "no recovery");
        nap();
    }
    char buf[8];
    cr_assert_eq(get_str(c, "a", buf, sizeof buf), STRATA_OK);
    cr_assert_str_eq(buf, "2");
    strata_close(s);
}

Test(redis, a_value_that_is_not_stratas_is_an_error_not_a_crash)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    redisReply *r = rcmd("SET strata:r:k:junk %s", "S1\x05");
    freeReplyObject(r);
    r = rcmd("SET strata:r:k:junk2 %s", "hello");
    freeReplyObject(r);
    strata_value *v = NULL;
    cr_assert_eq(strata_get(c, "junk", 4, &v), STRATA_EBACKEND);
    cr_assert_eq(strata_get(c, "junk2", 5, &v), STRATA_EBACKEND);
    cr_assert_null(v);
    strata_close(s);
}

/* ---- tiered: L1 memory over L2 redis ---- */

static _Atomic uint64_t fake_ms = 1000;

static uint64_t fake_clock(void *ud)
{
    (void)ud;
    return atomic_load(&fake_ms);
}

#define TIERED                                                                         \
    "caches:\n  t: { backend: tiered, url: \"redis://127.0.0.1:%d/0\", l1_ttl: 5s, "   \
    "ttl: 10m }\n"

static void wait_trusted(strata_cache *c, bool want)
{
    struct tiered_bus_state bs;
    uint64_t t0 = mono_ms();
    for (;;) {
        cr_assert_eq(strata_cache_bus_state(c, &bs), 0);
        if (bs.trusted == want) return;
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "L1 trusted is not %d", want);
        nap();
    }
}

static uint64_t l1_items(strata_cache *c)
{
    strata_stats st;
    strata_cache_stats(c, &st);
    return st.items;
}

Test(redis, tiered_l1_without_news_is_bounded_by_l1_ttl)
{
    strata *a = open_yaml(TIERED), *b = open_yaml(TIERED); /* two nodes, one Redis */
    strata_set_clock(b, fake_clock, NULL);
    strata_cache *ta = strata_cache_get(a, "t"), *tb = strata_cache_get(b, "t");
    cr_assert_str_eq(strata_cache_backend(ta), "tiered");
    wait_trusted(tb, true);
    cr_assert_eq(strata_set(ta, "k", 1, "v1", 2, NULL), STRATA_OK);
    cr_assert(exists("strata:t:k:k"), "written through to L2");
    char buf[8];
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_OK); /* L2 -> B's L1 */
    cr_assert_str_eq(buf, "v1");
    cr_assert_eq(l1_items(tb), 1, "B's L1 holds it");
    /* removed behind strata's back (no bus message): B's L1 serves its copy
     * until l1_ttl, then reads Redis */
    redisReply *r = rcmd("DEL %s", "strata:t:k:k");
    freeReplyObject(r);
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_OK);
    atomic_fetch_add(&fake_ms, 5001);
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_MISS, "stale beyond l1_ttl");
    strata_close(a);
    strata_close(b);
}

Test(redis, tiered_invalidations_reach_other_nodes_through_the_bus)
{
    strata *a = open_yaml(TIERED), *b = open_yaml(TIERED);
    strata_cache *ta = strata_cache_get(a, "t"), *tb = strata_cache_get(b, "t");
    wait_trusted(tb, true);
    const char *tags[] = {"p1"};
    strata_set_opts o = {0, tags, 1};
    char buf[8];
    const char *keys[] = {"k1", "k2", "k3", "k4"};
    struct tiered_bus_state bs;
    for (int i = 0; i < 4; i++) /* each set is published: B drops old copies */
        cr_assert_eq(strata_set(ta, keys[i], 2, "v", 1, i == 0 ? &o : NULL), STRATA_OK);
    uint64_t t1 = mono_ms();
    do {
        cr_assert_eq(strata_cache_bus_state(tb, &bs), 0);
        cr_assert_lt(mono_ms() - t1, POLL_LIMIT_MS, "B heard %lu of A's 4 sets",
                     (unsigned long)bs.applied);
        nap();
    } while (bs.applied < 4);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(get_str(tb, keys[i], buf, sizeof buf), STRATA_OK);
    cr_assert_eq(l1_items(tb), 4);
    cr_assert_geq(strata_invalidate_tags(ta, tags, 1), 0); /* k1 */
    cr_assert_eq(strata_delete(ta, "k2", 2), STRATA_OK);
    cr_assert_eq(strata_invalidate_pattern(ta, "k[3]"), 1);
    uint64_t t0 = mono_ms();
    while (l1_items(tb) > 1) { /* B's copies go as the messages arrive */
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "B's L1 still holds %lu",
                     (unsigned long)l1_items(tb));
        nap();
    }
    cr_assert_eq(strata_cache_bus_state(tb, &bs), 0);
    cr_assert_geq(bs.applied, 4 + 3);
    cr_assert_eq(bs.staleness_bound_ms, 5000);
    cr_assert_eq(strata_clear(ta), STRATA_OK);
    t0 = mono_ms();
    while (l1_items(tb) > 0) {
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "clear did not reach B");
        nap();
    }
    strata_close(a);
    strata_close(b);
}

Test(redis, tiered_a_silent_bus_stops_l1_and_a_gap_flushes_it)
{
    strata *s = open_yaml(TIERED);
    strata_set_bus_timeout(s, 300);
    strata_cache *t = strata_cache_get(s, "t");
    wait_trusted(t, true);
    cr_assert_eq(strata_set(t, "k", 1, "v", 1, NULL), STRATA_OK);
    stop_server();
    char buf[8];
    wait_trusted(t, false); /* the bus is silent for bus.timeout */
    cr_assert_eq(get_str(t, "k", buf, sizeof buf), STRATA_EBACKEND,
                 "an untrusted L1 does not answer");
    start_server(); /* empty: whatever was published meanwhile is lost */
    wait_trusted(t, true);
    struct tiered_bus_state bs;
    cr_assert_eq(strata_cache_bus_state(t, &bs), 0);
    cr_assert_geq(bs.flushes, 1);
    cr_assert_eq(l1_items(t), 0, "L1 was flushed");
    strata_close(s);
}

Test(redis, tiered_serves_l1_while_redis_is_down)
{
    strata *s = open_yaml(TIERED);
    strata_cache *t = strata_cache_get(s, "t");
    wait_trusted(t, true);
    cr_assert_eq(strata_set(t, "k", 1, "v", 1, NULL), STRATA_OK);
    stop_server();
    char buf[8];
    cr_assert_eq(get_str(t, "k", buf, sizeof buf), STRATA_OK); /* within bus.timeout */
    cr_assert_eq(get_str(t, "other", buf, sizeof buf), STRATA_EBACKEND);
    /* a write that Redis did not take leaves no L1 copy behind */
    cr_assert_neq(strata_set(t, "k", 1, "w", 1, NULL), STRATA_OK);
    cr_assert_neq(get_str(t, "k", buf, sizeof buf), STRATA_OK);
    strata_close(s);
}

/* ---- Sentinel: master, replica and sentinel started here; master killed ---- */

static pid_t spawn(const char *const *argv)
{
    pid_t p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return p;
}

/* The reply of one command to 127.0.0.1:p, as a string ("" on failure). */
static void ask(int p, const char *cmd, char *out, size_t cap)
{
    struct timeval tv = {1, 0};
    out[0] = 0;
    redisContext *c = redisConnectWithTimeout("127.0.0.1", p, tv);
    if (c == NULL || c->err) {
        if (c) redisFree(c);
        return;
    }
    redisReply *r = redisCommand(c, cmd);
    if (r && r->type == REDIS_REPLY_STRING) snprintf(out, cap, "%s", r->str);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements && r->element[0]->str)
        snprintf(out, cap, "%s", r->element[0]->str);
    if (r) freeReplyObject(r);
    redisFree(c);
}

static void wait_for(int p, const char *cmd, const char *want)
{
    char buf[4096];
    uint64_t t0 = mono_ms();
    for (;;) {
        ask(p, cmd, buf, sizeof buf);
        if (strstr(buf, want)) return;
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "%d %s: no '%s' in '%s'", p, cmd,
                     want, buf);
        nap();
    }
}

Test(redis, sentinel_failover_writes_resume_on_the_new_master, .timeout = 90)
{
    int rport = free_port(), sport = free_port();
    char rp[16], mp[16], sp[16], conf[] = "/tmp/strata-test-sentinel-XXXXXX";
    snprintf(rp, sizeof rp, "%d", rport);
    snprintf(mp, sizeof mp, "%d", port);
    snprintf(sp, sizeof sp, "%d", sport);
    const char *replica[] = {"redis-server",
                             "--port",
                             rp,
                             "--bind",
                             "127.0.0.1",
                             "--save",
                             "",
                             "--appendonly",
                             "no",
                             "--replicaof",
                             "127.0.0.1",
                             mp,
                             NULL};
    extra[0] = spawn(replica);
    wait_for(rport, "INFO replication", "master_link_status:up");
    int fd = mkstemp(conf);
    cr_assert_geq(fd, 0);
    dprintf(fd,
            "port %d\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %d 1\n"
            "sentinel down-after-milliseconds mymaster 500\n"
            "sentinel failover-timeout mymaster 3000\n",
            sport, port);
    close(fd);
    const char *sentinel[] = {"redis-server", conf, "--sentinel", NULL};
    extra[1] = spawn(sentinel);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "SENTINEL get-master-addr-by-name mymaster");
    wait_for(sport, cmd, "127.0.0.1");
    wait_for(sport, "INFO sentinel", "slaves=1");

    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "caches:\n  r: { backend: redis, url: "
             "\"redis-sentinel://127.0.0.1:%d/mymaster/0\" "
             "}\n",
             sport);
    strata *s = open_yaml(yaml); /* (no %d left in it) */
    strata_cache *c = strata_cache_get(s, "r");
    cr_assert_eq(strata_set(c, "before", 6, "1", 1, NULL), STRATA_OK);
    wait_for(rport, "GET strata:r:k:before", "S1"); /* replicated */

    stop_server(); /* the master dies */
    uint64_t t0 = mono_ms();
    int rc;
    while ((rc = strata_set(c, "after", 5, "2", 1, NULL)) != STRATA_OK) {
        cr_assert_eq(rc, STRATA_EBACKEND, "only a backend error while failing over");
        cr_assert_lt(mono_ms() - t0, 10000, "writes did not resume within 10 s");
        nap();
    }
    char role[64];
    ask(rport, "ROLE", role, sizeof role);
    cr_assert_str_eq(role, "master", "the replica was promoted");
    char buf[8];
    cr_assert_eq(get_str(c, "before", buf, sizeof buf), STRATA_OK);
    cr_assert_eq(get_str(c, "after", buf, sizeof buf), STRATA_OK);
    cr_assert_str_eq(buf, "2");
    strata_close(s);
    unlink(conf);
}

/* ---- regressions from review ---- */

Test(redis, a_set_on_one_node_reaches_the_others_l1)
{
    strata *a = open_yaml(TIERED), *b = open_yaml(TIERED);
    strata_cache *ta = strata_cache_get(a, "t"), *tb = strata_cache_get(b, "t");
    wait_trusted(tb, true);
    char buf[8];
    cr_assert_eq(strata_set(ta, "k", 1, "v1", 2, NULL), STRATA_OK);
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_OK);
    cr_assert_eq(strata_set(ta, "k", 1, "v2", 2, NULL), STRATA_OK);
    uint64_t t0 = mono_ms(); /* no clock moved: only the bus can tell B */
    while (get_str(tb, "k", buf, sizeof buf) != STRATA_OK || strcmp(buf, "v2") != 0) {
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS, "B still serves %s", buf);
        nap();
    }
    strata_close(a);
    strata_close(b);
}

struct reader {
    strata_cache *c;
    atomic_bool stop;
};

static void *read_loop(void *arg)
{
    struct reader *r = arg;
    char buf[8];
    while (!atomic_load(&r->stop))
        get_str(r->c, "k", buf, sizeof buf);
    return NULL;
}

Test(redis, no_get_after_an_invalidation_returns_sees_the_old_value)
{
    strata *s = open_yaml(TIERED);
    strata_cache *t = strata_cache_get(s, "t");
    wait_trusted(t, true);
    struct reader r = {t, false};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, read_loop, &r);
    const char *tags[] = {"x"};
    strata_set_opts o = {0, tags, 1};
    int bad = 0;
    char buf[8];
    for (int i = 0; i < 300; i++) { /* readers fill L1 from L2 all the time */
        cr_assert_eq(strata_set(t, "k", 1, "old", 3, &o), STRATA_OK);
        if (i % 2)
            strata_delete(t, "k", 1);
        else
            strata_invalidate_tags(t, tags, 1);
        if (get_str(t, "k", buf, sizeof buf) == STRATA_OK) bad++;
    }
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(bad, 0, "%d gets after an invalidation saw the value", bad);
    strata_close(s);
}

Test(redis, errors_of_a_demoted_master_are_errors)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    cr_assert_eq(strata_set(c, "k1", 2, "v", 1, NULL), STRATA_OK);
    int other = free_port();
    char op[16], cmd[64];
    snprintf(op, sizeof op, "%d", other);
    const char *argv[] = {"redis-server", "--port", op, "--bind",
                          "127.0.0.1",    "--save", "", "--appendonly",
                          "no",           NULL};
    extra[0] = spawn(argv);
    wait_for(other, "INFO server", "redis_version");
    char junk[8];
    ask(other, "SET strata:r:k:k2 x", junk,
        sizeof junk); /* what the replica will hold */
    snprintf(cmd, sizeof cmd, "REPLICAOF 127.0.0.1 %d", other);
    freeReplyObject(rcmd(cmd, ""));
    /* The server strata talks to is a replica now: writes are refused with
     * READONLY, which must come back as an error, never as "no such key" */
    cr_assert_eq(strata_delete(c, "k1", 2), STRATA_EBACKEND);
    wait_for(port, "GET strata:r:k:k2", "x"); /* synced: SCAN finds k2 */
    cr_assert_eq(strata_invalidate_pattern(c, "k*"), STRATA_EBACKEND);
    strata_stats st;
    strata_cache_stats(c, &st);
    cr_assert_geq(st.errors, 2);
    strata_close(s);
}

Test(redis, globs_mean_on_redis_what_they_mean_in_memory)
{
    strata *s =
        open_yaml("caches:\n  r: { backend: redis, url: \"redis://127.0.0.1:%d/0\" }\n"
                  "  m: { backend: memory }\n");
    strata_cache *r = strata_cache_get(s, "r"), *m = strata_cache_get(s, "m");
    const char *keys[] = {"ua", "ub", "u!"};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(strata_set(r, keys[i], 2, "v", 1, NULL), STRATA_OK);
        cr_assert_eq(strata_set(m, keys[i], 2, "v", 1, NULL), STRATA_OK);
    }
    cr_assert_eq(strata_invalidate_pattern(m, "u[!a]"), 2);
    cr_assert_eq(strata_invalidate_pattern(r, "u[!a]"), 2);
    char buf[8];
    cr_assert_eq(get_str(r, "ua", buf, sizeof buf), STRATA_OK);
    cr_assert_eq(get_str(r, "ub", buf, sizeof buf), STRATA_MISS);
    strata_close(s);
}

Test(redis, a_lost_tag_sequence_never_brings_an_old_value_back)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    const char *tags[] = {"x"};
    strata_set_opts o = {0, tags, 1};
    cr_assert_eq(strata_set(c, "old", 3, "OLD", 3, &o), STRATA_OK);
    cr_assert_geq(strata_invalidate_tags(c, tags, 1), 0);
    redisReply *r = rcmd("DEL %s", "strata:r:tagseq"); /* as an eviction would */
    freeReplyObject(r);
    for (int i = 0; i < 5; i++)
        cr_assert_geq(strata_invalidate_tags(c, tags, 1), 0);
    char buf[8];
    cr_assert_eq(get_str(c, "old", buf, sizeof buf), STRATA_MISS);
    const char *bad[] = {"a", NULL};
    strata *t = open_yaml(TIERED);
    cr_assert_eq(strata_invalidate_tags(strata_cache_get(t, "t"), bad, 2),
                 STRATA_EINVAL);
    strata_close(t);
    strata_close(s);
}

static int failing_loader(void *ud, const void *key, size_t klen, void **val,
                          size_t *vlen, strata_set_opts *opts)
{
    (void)ud;
    (void)key;
    (void)klen;
    (void)opts;
    *val = strdup("partial"); /* a loader that fails after allocating */
    *vlen = 7;
    return -1;
}

Test(redis, a_failing_loader_caches_nothing_and_frees_once)
{
    strata *s = open_yaml(ONE);
    strata_cache *c = strata_cache_get(s, "r");
    strata_value *v = NULL;
    cr_assert_eq(strata_get_or_set(c, "f", 1, failing_loader, NULL, NULL, &v),
                 STRATA_ELOADER);
    cr_assert_null(v);
    char buf[8];
    cr_assert_eq(get_str(c, "f", buf, sizeof buf), STRATA_MISS);
    strata_close(s);
}

Test(redis, an_l1_copy_lives_no_longer_than_its_redis_ttl)
{
    strata *a = open_yaml(TIERED), *b = open_yaml(TIERED);
    strata_set_clock(b, fake_clock, NULL);
    strata_cache *ta = strata_cache_get(a, "t"), *tb = strata_cache_get(b, "t");
    wait_trusted(tb, true);
    strata_set_opts o = {60000, NULL, 0}; /* 60 s in Redis, l1_ttl 5 s */
    cr_assert_eq(strata_set(ta, "k", 1, "v", 1, &o), STRATA_OK);
    struct tiered_bus_state bs;
    uint64_t t0 = mono_ms();
    do { /* A's set was published; B has heard it before it reads */
        strata_cache_bus_state(tb, &bs);
        cr_assert_lt(mono_ms() - t0, POLL_LIMIT_MS);
        nap();
    } while (bs.applied < 1);
    freeReplyObject(rcmd("PEXPIRE strata:t:k:k %s", "300")); /* now 300 ms left */
    char buf[8];
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_OK); /* fills B's L1 */
    cr_assert_eq(get_str(tb, "k", buf, sizeof buf), STRATA_OK);
    strata_cache_bus_state(tb, &bs);
    uint64_t l1 = bs.l1_hits;
    cr_assert_geq(l1, 1);
    atomic_fetch_add(&fake_ms, 301); /* past the entry's TTL, well within l1_ttl */
    get_str(tb, "k", buf, sizeof buf);
    strata_cache_bus_state(tb, &bs);
    cr_assert_eq(bs.l1_hits, l1, "L1 kept the copy past its Redis TTL");
    strata_close(a);
    strata_close(b);
}
