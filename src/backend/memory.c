/*
 * memory.c -- the memory backend: the engine of src/core behind the vtable.
 */
#include "backend/backend.h"

static int m_get(void *b, const void *key, size_t klen, strata_value **out)
{
    return engine_get(b, key, klen, out);
}

static int m_set(void *b, const void *key, size_t klen, const void *val, size_t vlen,
                 const strata_set_opts *opts)
{
    return engine_set(b, key, klen, val, vlen, opts);
}

static int m_del(void *b, const void *key, size_t klen)
{
    return engine_delete(b, key, klen);
}

static int m_get_or_set(void *b, const void *key, size_t klen, strata_loader load,
                        void *ud, const strata_set_opts *opts, strata_value **out)
{
    return engine_get_or_set(b, key, klen, load, ud, opts, out);
}

static long m_pattern(void *b, const char *glob)
{
    return engine_invalidate_pattern(b, glob);
}

static long m_tags(void *b, const char *const *tags, size_t n)
{
    return engine_invalidate_tags(b, tags, n);
}

static int m_clear(void *b)
{
    return engine_clear(b);
}

static void m_stats(void *b, strata_stats *out)
{
    engine_stats(b, out);
}

static long m_sweep(void *b, size_t budget)
{
    return engine_sweep(b, budget);
}

static void m_rebase(void *b)
{
    engine_rebase(b);
}

static void m_close(void *b)
{
    engine_free(b);
}

const struct backend_ops backend_memory_ops = {
    .name = "memory",
    .get = m_get,
    .set = m_set,
    .del = m_del,
    .get_or_set = m_get_or_set,
    .invalidate_pattern = m_pattern,
    .invalidate_tags = m_tags,
    .clear = m_clear,
    .stats = m_stats,
    .sweep = m_sweep,
    .rebase = m_rebase,
    .close = m_close,
};

static enum core_codec codec_of(enum config_codec c)
{
    switch (c) {
    case CONFIG_CODEC_ZSTD:
        return CORE_CODEC_ZSTD;
    case CONFIG_CODEC_LZ4:
        return CORE_CODEC_LZ4;
    case CONFIG_CODEC_ZLIB:
        return CORE_CODEC_ZLIB;
    default:
        return CORE_CODEC_NONE;
    }
}

void *backend_open(const struct config_cache *cc, const core_clock *clock,
                   const struct backend_ops **ops, int *err, const char **why)
{
    if (cc->backend == CONFIG_BACKEND_REDIS) {
        void *b = backend_redis_open(cc, err, why);
        if (b) *ops = &backend_redis_ops;
        return b;
    }
    if (cc->backend == CONFIG_BACKEND_TIERED) {
        void *b = backend_tiered_open(cc, clock, err, why);
        if (b) *ops = &backend_tiered_ops;
        return b;
    }
    if (cc->backend != CONFIG_BACKEND_MEMORY) {
        *err = STRATA_ENOTSUP;
        return NULL;
    }
    engine_conf ec = {
        .name = cc->name,
        .ttl_ms = cc->ttl_ms,
        .max_memory = cc->max_memory,
        .max_items = cc->max_items,
        .codec = codec_of(cc->compress),
        .level = cc->compress_level,
        .compress_min_size = cc->compress_min_size,
        .loader_timeout_ms = cc->loader_timeout_ms,
        .clock = clock,
    };
    engine *e = engine_new(&ec);
    if (e == NULL) {
        *err = STRATA_ENOMEM;
        return NULL;
    }
    *ops = &backend_memory_ops;
    return e;
}
