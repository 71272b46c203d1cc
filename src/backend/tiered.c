/*
 * tiered.c -- the tiered backend: an L1 in this process's memory (the engine
 * of src/core, bounded by l1_max_memory) over an L2 in Redis (redis.c).
 *
 * Reads try L1, then L2; an L2 hit fills L1 with the value and its tags for
 * at most l1_ttl. Writes and invalidations go to L2 first, then L1. So a
 * node's L1 never serves a value longer than l1_ttl after another node
 * changed it in L2 (the invalidation bus, which tells every node at once, is
 * the next step of issue 5); its own changes are seen at once.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"

struct tb {
    engine *l1;
    void *l2;
    int64_t l1_ttl_ms; /* > 0 */
    int64_t ttl_ms;    /* the cache's default TTL (for L2) */
    _Atomic uint64_t hits, misses;
};

/* L1's TTL for a value whose L2 TTL is `ttl` (0: the cache's default). */
static int64_t l1_ttl(const struct tb *b, int64_t ttl)
{
    if (ttl == 0) ttl = b->ttl_ms;
    return ttl > 0 && ttl < b->l1_ttl_ms ? ttl : b->l1_ttl_ms;
}

static int t_get(void *bp, const void *key, size_t klen, strata_value **out)
{
    struct tb *b = bp;
    int rc = engine_get(b->l1, key, klen, out);
    if (rc != STRATA_MISS) {
        if (rc == STRATA_OK) atomic_fetch_add(&b->hits, 1);
        return rc;
    }
    char *tagbuf = NULL;
    size_t nt = 0;
    rc = backend_redis_get_tags(b->l2, key, klen, out, &tagbuf, &nt);
    if (rc == STRATA_OK) {
        const char *tags[256];
        const char *t = tagbuf;
        for (size_t i = 0; i < nt && i < 256; i++) {
            tags[i] = t;
            t += strlen(t) + 1;
        }
        strata_set_opts o = {b->l1_ttl_ms, tags, nt < 256 ? nt : 256};
        /* An L1 that cannot hold it (too many tags, too big) still serves
         * from L2. */
        engine_set(b->l1, key, klen, strata_value_data(*out), strata_value_len(*out),
                   &o);
        atomic_fetch_add(&b->hits, 1);
    } else if (rc == STRATA_MISS) {
        atomic_fetch_add(&b->misses, 1);
    }
    free(tagbuf);
    return rc;
}

static int t_set(void *bp, const void *key, size_t klen, const void *val, size_t vlen,
                 const strata_set_opts *opts)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.set(b->l2, key, klen, val, vlen, opts);
    if (rc != STRATA_OK) {
        engine_delete(b->l1, key, klen); /* never an L1 copy L2 does not have */
        return rc;
    }
    strata_set_opts o = opts ? *opts : (strata_set_opts){0};
    o.ttl_ms = l1_ttl(b, o.ttl_ms);
    engine_set(b->l1, key, klen, val, vlen, &o);
    return STRATA_OK;
}

static int t_del(void *bp, const void *key, size_t klen)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.del(b->l2, key, klen);
    int r1 = engine_delete(b->l1, key, klen);
    return rc == STRATA_MISS && r1 == STRATA_OK ? STRATA_OK : rc;
}

static int t_get_or_set(void *bp, const void *key, size_t klen, strata_loader load,
                        void *ud, const strata_set_opts *opts, strata_value **out)
{
    struct tb *b = bp;
    int rc = engine_get(b->l1, key, klen, out);
    if (rc == STRATA_OK) {
        atomic_fetch_add(&b->hits, 1);
        return rc;
    }
    /* One loader per key (L2's single flight); the next get fills L1. */
    rc = backend_redis_ops.get_or_set(b->l2, key, klen, load, ud, opts, out);
    atomic_fetch_add(rc == STRATA_OK ? &b->hits : &b->misses, 1);
    return rc;
}

static long t_pattern(void *bp, const char *glob)
{
    struct tb *b = bp;
    long n = backend_redis_ops.invalidate_pattern(b->l2, glob);
    long n1 = engine_invalidate_pattern(b->l1, glob);
    (void)n1;
    return n; /* what left Redis (or its error) */
}

static long t_tags(void *bp, const char *const *tags, size_t n)
{
    struct tb *b = bp;
    long r = backend_redis_ops.invalidate_tags(b->l2, tags, n);
    long r1 = engine_invalidate_tags(b->l1, tags, n);
    return r < 0 ? r : r1; /* L1 can count the copies it holds */
}

static int t_clear(void *bp)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.clear(b->l2);
    engine_clear(b->l1);
    return rc;
}

static void t_stats(void *bp, strata_stats *out)
{
    struct tb *b = bp;
    strata_stats l2 = {0};
    engine_stats(b->l1, out); /* items, bytes, evictions, expired: L1's */
    backend_redis_ops.stats(b->l2, &l2);
    out->hits = atomic_load(&b->hits);
    out->misses = atomic_load(&b->misses);
    out->sets = l2.sets;
    out->deletes = l2.deletes;
    out->errors = l2.errors;
    out->invalidated += l2.invalidated;
}

static long t_sweep(void *bp, size_t budget)
{
    return engine_sweep(((struct tb *)bp)->l1, budget);
}

static void t_rebase(void *bp)
{
    engine_rebase(((struct tb *)bp)->l1);
}

static void t_close(void *bp)
{
    struct tb *b = bp;
    if (b == NULL) return;
    if (b->l1) engine_free(b->l1);
    if (b->l2) backend_redis_ops.close(b->l2);
    free(b);
}

const struct backend_ops backend_tiered_ops = {
    .name = "tiered",
    .get = t_get,
    .set = t_set,
    .del = t_del,
    .get_or_set = t_get_or_set,
    .invalidate_pattern = t_pattern,
    .invalidate_tags = t_tags,
    .clear = t_clear,
    .stats = t_stats,
    .sweep = t_sweep,
    .rebase = t_rebase,
    .close = t_close,
};

void *backend_tiered_open(const struct config_cache *cc, const core_clock *clock,
                          int *err, const char **why)
{
    struct tb *b = calloc(1, sizeof *b);
    if (b == NULL) {
        *err = STRATA_ENOMEM;
        return NULL;
    }
    b->l1_ttl_ms = cc->l1_ttl_ms > 0 ? cc->l1_ttl_ms : 5000;
    b->ttl_ms = cc->ttl_ms;
    b->l2 = backend_redis_open(cc, err, why);
    if (b->l2 == NULL) {
        free(b);
        return NULL;
    }
    engine_conf ec = {
        .name = cc->name,
        .ttl_ms = b->l1_ttl_ms,
        .max_memory = cc->l1_max_memory ? cc->l1_max_memory : 64u << 20,
        .max_items = cc->max_items,
        .codec = CORE_CODEC_NONE, /* L1 trades memory for speed */
        .loader_timeout_ms = cc->loader_timeout_ms,
        .clock = clock,
    };
    b->l1 = engine_new(&ec);
    if (b->l1 == NULL) {
        t_close(b);
        *err = STRATA_ENOMEM;
        return NULL;
    }
    return b;
}
