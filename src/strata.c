/*
 * strata.c -- the public API: a set of named caches and their housekeeping.
 *
 * strata_open() reads the `caches:` section of the configuration (or takes
 * the embedded defaults), opens one backend per cache, and starts one
 * background thread that reclaims expired and invalidated entries in bounded
 * steps. Every public call validates its arguments and then dispatches
 * through the cache's backend vtable.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/backend.h"
#include "core/hist.h"
#include "core/tags.h"
#include "config/config.h"
#include "strata.h"

#define STRATA_MAGIC 0x73747261u
#define SWEEP_PERIOD_MS 100
#define SWEEP_BUDGET 4096

struct strata_cache {
    strata *s;
    const struct backend_ops *ops;
    void *b;
    char *name;
    /* Operation latency, timed for one call in `sample_mask + 1` per thread
     * (the memory engine's calls are a few hundred ns: timing every one
     * would cost a good part of that), and invalidations by kind. The
     * counters live in their own cache lines: the fields above are read by
     * every call, and a write next to them would slow every thread down. */
    uint32_t sample_mask;
    struct cache_ctr *m;
};

struct cache_ctr {
    _Alignas(64) struct hist op[STRATA_OP_N];
    _Atomic uint64_t inval[STRATA_INV_N];
};

struct strata {
    uint32_t magic;
    core_clock clock;
    size_t n;
    struct strata_cache *caches;
    pthread_t sweeper;
    bool sweeper_on;
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

/* ------------------------------------------------------------- errors */

const char *strata_strerror(int err)
{
    switch (err) {
#define X(name, value, msg)                                                            \
    case value:                                                                        \
        return msg;
        STRATA_ERRNO_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}

const char *strata_errname(int err)
{
    switch (err) {
#define X(name, value, msg)                                                            \
    case value:                                                                        \
        return "STRATA_" #name;
        STRATA_ERRNO_MAP(X)
#undef X
    default:
        return "STRATA_UNKNOWN";
    }
}

/* ------------------------------------------------------------ sweeper */

static void *sweeper_main(void *arg)
{
    strata *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += SWEEP_PERIOD_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->cond, &s->lock, &ts);
        if (s->stopping) break;
        /* Sweeping under s->lock keeps strata_set_clock from changing the
         * clock in the middle of a pass. */
        for (size_t i = 0; i < s->n; i++)
            s->caches[i].ops->sweep(s->caches[i].b, SWEEP_BUDGET);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* -------------------------------------------------------------- open */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *out = NULL;
    va_start(ap, f);
    if (vasprintf(&out, f, ap) < 0) out = NULL;
    va_end(ap);
    return out;
}

strata *strata_open(const char *config_path, char **errmsg)
{
    struct config_caches cc = {0};
    char *err = NULL;
    if (errmsg) *errmsg = NULL;
    int rc = config_path ? config_load_caches(config_path, &cc, &err)
                         : config_caches_defaults(&cc);
    if (rc != 0) {
        if (errmsg)
            *errmsg = err ? err : strdup("out of memory");
        else
            free(err);
        config_caches_fini(&cc);
        return NULL;
    }
    strata *s = strata_open_caches(&cc, errmsg);
    config_caches_fini(&cc);
    return s;
}

strata *strata_open_caches(const struct config_caches *ccp, char **errmsg)
{
    const struct config_caches cc = *ccp;
    if (errmsg) *errmsg = NULL;
    strata *s = calloc(1, sizeof *s);
    if (s == NULL || (s->caches = calloc(cc.n ? cc.n : 1, sizeof *s->caches)) == NULL) {
        free(s);
        if (errmsg) *errmsg = strdup("out of memory");
        return NULL;
    }
    s->magic = STRATA_MAGIC;
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);

    for (size_t i = 0; i < cc.n; i++) {
        struct config_cache *c = &cc.v[i];
        struct strata_cache *sc = &s->caches[i];
        int e = 0;
        const char *why = NULL;
        sc->s = s;
        sc->name = strdup(c->name);
        sc->sample_mask = STRATA_SAMPLE_MEMORY - 1;
        sc->m = aligned_alloc(64, (sizeof *sc->m + 63) / 64 * 64);
        if (sc->m) memset(sc->m, 0, sizeof *sc->m);
        sc->b =
            sc->name && sc->m ? backend_open(c, &s->clock, &sc->ops, &e, &why) : NULL;
        /* Only the memory engine is fast enough for timing to cost. */
        if (sc->b && sc->ops != &backend_memory_ops) sc->sample_mask = 0;
        if (sc->b == NULL) {
            if (errmsg) {
                const char *where = cc.path ? cc.path : "(defaults)";
                if (e == STRATA_ENOTSUP)
                    *errmsg =
                        fmt("%s:%u: cache '%s': backend %s is not available in "
                            "this build (memory and redis are)",
                            where, c->line, c->name,
                            c->backend == CONFIG_BACKEND_REDIS ? "redis" : "tiered");
                else if (e == STRATA_ECONFIG)
                    *errmsg = fmt("%s:%u: cache '%s': url: %s", where, c->line, c->name,
                                  why ? why : "not valid");
                else
                    *errmsg = fmt("%s:%u: cache '%s': %s", where, c->line, c->name,
                                  strata_strerror(e ? e : STRATA_ENOMEM));
            }
            s->n = i + 1;
            strata_close(s);
            return NULL;
        }
        s->n = i + 1;
    }
    if (pthread_create(&s->sweeper, NULL, sweeper_main, s) == 0) s->sweeper_on = true;
    return s;
}

void strata_close(strata *s)
{
    if (s == NULL) return;
    if (s->sweeper_on) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->sweeper, NULL);
    }
    for (size_t i = 0; i < s->n; i++) {
        if (s->caches[i].b) s->caches[i].ops->close(s->caches[i].b);
        free(s->caches[i].name);
        free(s->caches[i].m);
    }
    free(s->caches);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    s->magic = 0;
    free(s);
}

strata_cache *strata_cache_get(strata *s, const char *name)
{
    if (s == NULL || name == NULL) return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->caches[i].name, name) == 0) return &s->caches[i];
    return NULL;
}

const char *strata_cache_name(const strata_cache *c)
{
    return c ? c->name : NULL;
}

void strata_set_clock(strata *s, strata_clock_fn fn, void *ud)
{
    if (s == NULL) return;
    pthread_mutex_lock(&s->lock);
    s->clock.fn = fn;
    s->clock.ud = ud;
    for (size_t i = 0; i < s->n; i++)
        s->caches[i].ops->rebase(s->caches[i].b);
    pthread_mutex_unlock(&s->lock);
}

/* ----------------------------------------------------------- operations */

static bool tags_ok(const strata_set_opts *opts)
{
    return opts == NULL || opts->ntags <= STRATA_TAGS_MAX;
}

/* One call in sample_mask + 1 (per thread) is timed. The others take the
 * plain path, a tail call into the backend: the timing code is out of line. */
static _Thread_local uint32_t op_tick;

static inline bool op_sampled(const strata_cache *c)
{
    return __builtin_expect((++op_tick & c->sample_mask) == 0, 0);
}

static inline void op_end(strata_cache *c, enum strata_op op, uint64_t t0)
{
    hist_add(&c->m->op[op], hist_now_ns() - t0);
}

static inline int get_now(strata_cache *c, const void *key, size_t klen,
                          strata_value **out)
{
    /* The memory engine directly: a hit is short enough for the indirect
     * calls to show. */
    if (c->ops == &backend_memory_ops) return engine_get(c->b, key, klen, out);
    return c->ops->get(c->b, key, klen, out);
}

__attribute__((noinline, cold)) static int timed_get(strata_cache *c, const void *key,
                                                     size_t klen, strata_value **out)
{
    uint64_t t0 = hist_now_ns();
    int r = get_now(c, key, klen, out);
    op_end(c, STRATA_OP_GET, t0);
    return r;
}

__attribute__((noinline, cold)) static int timed_set(strata_cache *c, const void *key,
                                                     size_t klen, const void *val,
                                                     size_t vlen,
                                                     const strata_set_opts *opts)
{
    uint64_t t0 = hist_now_ns();
    int r = c->ops->set(c->b, key, klen, val, vlen, opts);
    op_end(c, STRATA_OP_SET, t0);
    return r;
}

int strata_set(strata_cache *c, const void *key, size_t klen, const void *val,
               size_t vlen, const strata_set_opts *opts)
{
    if (c == NULL || !tags_ok(opts)) return STRATA_EINVAL;
    if (op_sampled(c)) return timed_set(c, key, klen, val, vlen, opts);
    return c->ops->set(c->b, key, klen, val, vlen, opts);
}

int strata_get(strata_cache *c, const void *key, size_t klen, strata_value **out)
{
    if (out) *out = NULL;
    if (c == NULL || out == NULL) return STRATA_EINVAL;
    if (op_sampled(c)) return timed_get(c, key, klen, out);
    return get_now(c, key, klen, out);
}

int strata_delete(strata_cache *c, const void *key, size_t klen)
{
    if (c == NULL) return STRATA_EINVAL;
    uint64_t t0 = hist_now_ns();
    int r = c->ops->del(c->b, key, klen);
    op_end(c, STRATA_OP_DELETE, t0);
    atomic_fetch_add_explicit(&c->m->inval[STRATA_INV_KEY], 1, memory_order_relaxed);
    return r;
}

int strata_get_or_set(strata_cache *c, const void *key, size_t klen, strata_loader load,
                      void *ud, const strata_set_opts *opts, strata_value **out)
{
    if (out) *out = NULL;
    if (c == NULL || out == NULL || load == NULL || !tags_ok(opts))
        return STRATA_EINVAL;
    if (!op_sampled(c)) return c->ops->get_or_set(c->b, key, klen, load, ud, opts, out);
    uint64_t t0 = hist_now_ns();
    int r = c->ops->get_or_set(c->b, key, klen, load, ud, opts, out);
    op_end(c, STRATA_OP_GET_OR_SET, t0);
    return r;
}

int strata_vmemoize(strata_cache *c, strata_loader load, void *ud,
                    const strata_set_opts *opts, strata_value **out, const char *keyfmt,
                    va_list ap)
{
    if (out) *out = NULL;
    if (c == NULL || keyfmt == NULL || out == NULL || load == NULL)
        return STRATA_EINVAL;
    char buf[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(buf, sizeof buf, keyfmt, ap2);
    va_end(ap2);
    if (n <= 0) return STRATA_EINVAL;
    char *key = buf;
    if ((size_t)n >= sizeof buf) {
        key = malloc((size_t)n + 1);
        if (key == NULL) return STRATA_ENOMEM;
        vsnprintf(key, (size_t)n + 1, keyfmt, ap);
    }
    int r = strata_get_or_set(c, key, (size_t)n, load, ud, opts, out);
    if (key != buf) free(key);
    return r;
}

int strata_memoize(strata_cache *c, strata_loader load, void *ud,
                   const strata_set_opts *opts, strata_value **out, const char *keyfmt,
                   ...)
{
    va_list ap;
    va_start(ap, keyfmt);
    int r = strata_vmemoize(c, load, ud, opts, out, keyfmt, ap);
    va_end(ap);
    return r;
}

/* An invalidation of `kind`: counted, and always timed (they are rare). */
static void inval_done(strata_cache *c, enum strata_inval kind, uint64_t t0)
{
    atomic_fetch_add_explicit(&c->m->inval[kind], 1, memory_order_relaxed);
    hist_add(&c->m->op[STRATA_OP_INVALIDATE], hist_now_ns() - t0);
}

long strata_invalidate_pattern(strata_cache *c, const char *glob)
{
    if (c == NULL || glob == NULL) return STRATA_EINVAL;
    uint64_t t0 = hist_now_ns();
    long r = c->ops->invalidate_pattern(c->b, glob);
    inval_done(c, STRATA_INV_PATTERN, t0);
    return r;
}

long strata_invalidate_tags(strata_cache *c, const char *const *tags, size_t ntags)
{
    if (c == NULL || (tags == NULL && ntags)) return STRATA_EINVAL;
    uint64_t t0 = hist_now_ns();
    long r = c->ops->invalidate_tags(c->b, tags, ntags);
    inval_done(c, STRATA_INV_TAG, t0);
    return r;
}

int strata_clear(strata_cache *c)
{
    if (c == NULL) return STRATA_EINVAL;
    uint64_t t0 = hist_now_ns();
    int r = c->ops->clear(c->b);
    inval_done(c, STRATA_INV_ALL, t0);
    return r;
}

void strata_cache_stats(strata_cache *c, strata_stats *out)
{
    if (out == NULL) return;
    memset(out, 0, sizeof *out);
    if (c) c->ops->stats(c->b, out);
}

/* For tests: run one sweep step on every cache now. */
long strata_sweep_now(strata *s)
{
    long n = 0;
    for (size_t i = 0; s && i < s->n; i++)
        n += s->caches[i].ops->sweep(s->caches[i].b, (size_t)-1);
    return n;
}

long strata_flight_waiters(strata_cache *c, const void *key, size_t klen)
{
    if (c && c->ops == &backend_redis_ops)
        return backend_redis_flight_waiters(c->b, key, klen);
    if (c == NULL || c->ops != &backend_memory_ops) return -1;
    return engine_flight_waiters(c->b, key, klen);
}

int strata_cache_set_blob(strata_cache *c, const void *key, size_t klen, core_blob *b,
                          const strata_set_opts *opts, const engine_veto *veto)
{
    if (c == NULL) return STRATA_EINVAL;
    if (c->ops == &backend_memory_ops)
        return engine_set_blob(c->b, key, klen, b, opts, veto);
    if (veto && veto->fn(veto->ud)) return STRATA_MISS;
    return c->ops->set(c->b, key, klen, b->data, b->len, opts);
}

long strata_cache_invalidate_where(strata_cache *c, engine_key_pred match, void *ud)
{
    if (c == NULL) return STRATA_EINVAL;
    if (c->ops != &backend_memory_ops) return STRATA_ENOTSUP;
    uint64_t t0 = hist_now_ns();
    long r = engine_invalidate_where(c->b, match, ud);
    inval_done(c, STRATA_INV_PATTERN, t0);
    return r;
}

int strata_cache_peek(strata_cache *c, const void *key, size_t klen, strata_value **out)
{
    if (out) *out = NULL;
    if (c == NULL || out == NULL) return STRATA_EINVAL;
    if (c->ops == &backend_memory_ops)
        return engine_lookup(c->b, key, klen, out, false);
    return c->ops->get(c->b, key, klen, out);
}

int strata_cache_bus_state(strata_cache *c, struct tiered_bus_state *out)
{
    if (c == NULL || c->ops != &backend_tiered_ops) return -1;
    backend_tiered_bus_state(c->b, out);
    return 0;
}

void strata_set_bus_timeout(strata *s, int64_t ms)
{
    for (size_t i = 0; s && i < s->n; i++)
        if (s->caches[i].ops == &backend_tiered_ops)
            backend_tiered_set_bus_timeout(s->caches[i].b, ms);
}

size_t strata_cache_count(const strata *s)
{
    return s ? s->n : 0;
}

strata_cache *strata_cache_at(strata *s, size_t i)
{
    return s && i < s->n ? &s->caches[i] : NULL;
}

const char *strata_cache_backend(const strata_cache *c)
{
    return c ? c->ops->name : NULL;
}

void strata_cache_metrics(strata_cache *c, struct strata_cache_metrics *out)
{
    memset(out, 0, sizeof *out);
    if (c == NULL) return;
    out->sample_every = c->sample_mask + 1;
    for (int i = 0; i < STRATA_OP_N; i++)
        hist_read(&c->m->op[i], &out->op[i]);
    for (int i = 0; i < STRATA_INV_N; i++)
        out->inval[i] = atomic_load_explicit(&c->m->inval[i], memory_order_relaxed);
}

uint64_t strata_tag_seq(void)
{
    return tag_seq_now();
}

bool strata_cache_tags_invalidated_since(strata_cache *c, const char *const *tags,
                                         size_t n, uint64_t since)
{
    if (c == NULL || c->ops != &backend_memory_ops) return false;
    return engine_tags_invalidated_since(c->b, tags, n, since);
}
