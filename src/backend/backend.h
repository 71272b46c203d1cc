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
#include "core/hist.h"

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
 * *err a STRATA_E* code (and *why a static message for STRATA_ECONFIG).
 * `clock` outlives the backend. */
void *backend_open(const struct config_cache *cc, const core_clock *clock,
                   const struct backend_ops **ops, int *err, const char **why);

extern const struct backend_ops backend_memory_ops;
extern const struct backend_ops backend_redis_ops;
/* redis.c: connects lazily (the first operation), so a Redis that is down
 * at start is not an error; a bad url is (ECONFIG, *why). */
void *backend_redis_open(const struct config_cache *cc, int *err, const char **why);
long backend_redis_flight_waiters(void *b, const void *key, size_t klen); /* tests */
int backend_redis_get_tags(void *b, const void *key, size_t klen, strata_value **out,
                           char **tags, size_t *ntags, int64_t *pttl_ms);
/* For the bus: a command through the pool (a redisReply *, NULL on error;
 * freeReplyObject it), a dedicated connection (a redisContext *) whose
 * commands may take `timeout_ms`, and the command timeout. */
void *backend_redis_command(void *b, int argc, const char **argv, const size_t *lens);
void *backend_redis_connect(void *b, int64_t timeout_ms);
int64_t backend_redis_command_timeout_ms(void *b);
/* tiered.c: L1 memory over L2 redis. */
extern const struct backend_ops backend_tiered_ops;
void *backend_tiered_open(const struct config_cache *cc, const core_clock *clock,
                          int *err, const char **why);
/* bus.timeout (default 5s) of every tiered cache of `s`. */
void strata_set_bus_timeout(strata *s, int64_t ms);
void backend_tiered_set_bus_timeout(void *b, int64_t ms);
/* The bus' view (metrics, tests): ms since the last message heard (-1:
 * never), whether L1 is trusted, how many times L1 was flushed. */
struct tiered_bus_state {
    int64_t lag_ms;
    bool trusted;
    uint64_t flushes, applied;
    uint64_t l1_hits;           /* gets L1 answered (of the cache's hits) */
    int64_t staleness_bound_ms; /* max(l1_ttl, bus.timeout) */
};
void backend_tiered_bus_state(void *b, struct tiered_bus_state *out);
/* The same for a cache of strata: 0, or -1 when it is not tiered. */
int strata_cache_bus_state(strata_cache *c, struct tiered_bus_state *out);

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

/* ---- metrics (src/admin reads them) ---- */

/* Operations whose latency each cache records, and invalidations by kind
 * (a key invalidation is a delete; `where` counts as a pattern). */
#define STRATA_OPS(X)                                                                  \
    X(STRATA_OP_GET, "get")                                                            \
    X(STRATA_OP_SET, "set")                                                            \
    X(STRATA_OP_DELETE, "delete")                                                      \
    X(STRATA_OP_GET_OR_SET, "get_or_set")                                              \
    X(STRATA_OP_INVALIDATE, "invalidate")
#define STRATA_INVALS(X)                                                               \
    X(STRATA_INV_KEY, "key")                                                           \
    X(STRATA_INV_PATTERN, "pattern")                                                   \
    X(STRATA_INV_TAG, "tag")                                                           \
    X(STRATA_INV_ALL, "all")
#define STRATA_ENUM_(e, name) e,
enum strata_op { STRATA_OPS(STRATA_ENUM_) STRATA_OP_N };
enum strata_inval { STRATA_INVALS(STRATA_ENUM_) STRATA_INV_N };
#undef STRATA_ENUM_
/* get, set and get_or_set on the memory engine are timed one call in this
 * many per thread; the others every call. */
#define STRATA_SAMPLE_MEMORY 64

struct strata_cache_metrics {
    struct hist_snap op[STRATA_OP_N];
    uint64_t inval[STRATA_INV_N];
    uint32_t sample_every; /* get/set/get_or_set: one call in this many timed */
};
void strata_cache_metrics(strata_cache *c, struct strata_cache_metrics *out);
size_t strata_cache_count(const strata *s);
strata_cache *strata_cache_at(strata *s, size_t i);      /* in configuration order */
const char *strata_cache_backend(const strata_cache *c); /* "memory", ... */

/* A get that moves no counter (the admin API's explain looks without
 * changing the hit rate it reports). Memory backend; others: a plain get. */
int strata_cache_peek(strata_cache *c, const void *key, size_t klen,
                      strata_value **out);

/* Test hooks (not in the public header). */
long strata_sweep_now(strata *s);
long strata_flight_waiters(strata_cache *c, const void *key, size_t klen);

#endif
