/*
 * backend.h -- the one vtable every cache backend implements.
 *
 * A named cache is a backend instance plus this table. The memory backend
 * (memory.c) wraps the engine of src/core; Redis and tiered backends come
 * later and plug in here without the public API changing. Every operation is
 * thread-safe and returns the public STRATA_* codes.
 */
#ifndef STRATA_BACKEND_H
#define STRATA_BACKEND_H

#include "config/config.h"
#include "core/core.h"

struct backend_ops {
    const char *name;
    int (*get)(void *b, const void *key, size_t klen, strata_value **out);
    int (*set)(void *b, const void *key, size_t klen, const void *val, size_t vlen,
               const strata_set_opts *opts);
    int (*del)(void *b, const void *key, size_t klen);
    int (*get_or_set)(void *b, const void *key, size_t klen, strata_loader load,
                      void *ud, const strata_set_opts *opts, strata_value **out);
    long (*invalidate_pattern)(void *b, const char *glob);
    long (*invalidate_tags)(void *b, const char *const *tags, size_t ntags);
    int (*clear)(void *b);
    void (*stats)(void *b, strata_stats *out);
    /* Background work (expiry reclaim): bounded by `budget`. */
    long (*sweep)(void *b, size_t budget);
    /* The clock changed: re-read its origin. */
    void (*rebase)(void *b);
    void (*close)(void *b);
};

/* Open a backend for `cc`. Returns its instance and sets *ops, or NULL with
 * *err a STRATA_E* code. `clock` outlives the backend. */
void *backend_open(const struct config_cache *cc, const core_clock *clock,
                   const struct backend_ops **ops, int *err);

extern const struct backend_ops backend_memory_ops;

/* Open the caches of an already loaded configuration (strata_open reads the
 * file first; `strata serve` loads the whole file itself). */
strata *strata_open_caches(const struct config_caches *cc, char **errmsg);

/* Store a blob without copying it where the backend allows (memory), else a
 * plain set of its bytes. `veto` as engine_set_blob. */
int strata_cache_set_blob(strata_cache *c, const void *key, size_t klen, core_blob *b,
                          const strata_set_opts *opts, const engine_veto *veto);

/* Remove the entries whose key `match` accepts (memory backend; others:
 * STRATA_ENOTSUP). */
long strata_cache_invalidate_where(strata_cache *c, engine_key_pred match, void *ud);

/* For a store that must lose to invalidations made while its value was
 * being fetched: take strata_tag_seq() when the fetch starts, and pass a
 * veto that asks strata_cache_tags_invalidated_since() (memory backend; the
 * others answer false). */
uint64_t strata_tag_seq(void);
bool strata_cache_tags_invalidated_since(strata_cache *c, const char *const *tags,
                                         size_t n, uint64_t since);

/* Test hooks (not in the public header). */
long strata_sweep_now(strata *s);
long strata_flight_waiters(strata_cache *c, const void *key, size_t klen);

#endif
