/*
 * core.h -- the memory engine: what the rest of strata may use.
 *
 * An engine is one named cache held in this process's memory. It is split in
 * shards by key hash; each shard has a writer lock, an open-addressing index,
 * a slab of items addressed by 32-bit ids, and its own S3-FIFO queues. Readers
 * take no lock: they run inside an epoch (ebr_enter/ebr_exit), and memory a
 * writer unlinks is reused only after every reader that could see it has left.
 *
 * Values of up to ENGINE_INLINE_MAX stored bytes live in the item and are
 * copied out on a hit (no shared counter is written, so a hot key does not
 * bounce a cache line between cores); larger ones live in a refcounted blob
 * that hits share without copying.
 *
 * Time: the engine reads `now_ms` from the clock its owner gives it, so tests
 * move time without sleeping.
 */
#ifndef STRATA_CORE_H
#define STRATA_CORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "strata.h"

#define ENGINE_KEY_MAX 65535u  /* keys are 1..65535 bytes */
#define ENGINE_INLINE_MAX 512u /* larger stored values go to a shared blob */
/* Tags per entry: the 64 the API takes, plus two for the HTTP cache's
 * implicit url and path tags (strata.c holds callers to STRATA_TAGS_MAX). */
#define ENGINE_TAGS_MAX 66u
#define STRATA_TAGS_MAX 64u
#define ENGINE_TAG_LEN_MAX 256u

/* ---- clock ---- */

typedef struct core_clock {
    strata_clock_fn fn; /* NULL: the real monotonic clock */
    void *ud;
} core_clock;

uint64_t core_clock_now(const core_clock *clk); /* ms */
uint64_t core_clock_real_ms(void);              /* CLOCK_MONOTONIC, ms */

/* ---- epoch-based reclamation (ebr.c) ---- */

/* A reader brackets every access to shared engine memory with enter/exit.
 * Critical sections nest. Writers retire memory with the epoch
 * ebr_retire_epoch() returned after they unlinked it; ebr_safe(e) says when it
 * may be reused. enter/exit are inline: a few instructions plus one atomic
 * exchange on a cache line the thread owns. */
struct ebr_rec {
    _Atomic uint64_t state; /* (epoch << 1) | active */
    _Atomic int in_use;
    unsigned slot;
    unsigned depth; /* owner thread only */
    struct ebr_rec *next;
    char pad[64 - 8 - 4 - 4 - 4 - 8];
} __attribute__((aligned(64)));

extern _Atomic uint64_t ebr_global_epoch;
extern int ebr_asym; /* writers fence readers with membarrier() */
extern __thread struct ebr_rec *ebr_my_rec __attribute__((tls_model("initial-exec")));
struct ebr_rec *ebr_rec_slow(void);

static inline struct ebr_rec *ebr_rec(void)
{
    struct ebr_rec *r = ebr_my_rec;
    return __builtin_expect(r != NULL, 1) ? r : ebr_rec_slow();
}

static inline void ebr_enter_rec(struct ebr_rec *r)
{
    if (r->depth++ == 0) {
        /* Acquire: on weakly ordered CPUs the epoch read must not be
         * satisfied after the reads of shared memory that follow. */
        uint64_t e = atomic_load_explicit(&ebr_global_epoch, memory_order_acquire);
        /* The announcement must be visible before any pointer a writer may
         * retire is read: membarrier() on the writer's side, or an exchange. */
        if (ebr_asym) {
            atomic_store_explicit(&r->state, (e << 1) | 1, memory_order_relaxed);
            atomic_signal_fence(memory_order_seq_cst);
        } else {
            atomic_exchange_explicit(&r->state, (e << 1) | 1, memory_order_seq_cst);
        }
    }
}

static inline struct ebr_rec *ebr_enter(void)
{
    struct ebr_rec *r = ebr_rec();
    ebr_enter_rec(r);
    return r;
}

static inline void ebr_exit(struct ebr_rec *r)
{
    if (--r->depth == 0) atomic_store_explicit(&r->state, 0, memory_order_release);
}

uint64_t ebr_retire_epoch(void); /* call after unlinking; full fence inside */
bool ebr_safe(uint64_t retired); /* no reader can still see it (no side effects) */
/* Move the global epoch if every reader caught up. Costs a membarrier():
 * call it for a batch of retired memory, not per item. */
bool ebr_try_advance(void);

/* ---- glob (glob.c): Redis MATCH grammar, byte-level ---- */

bool core_glob_valid(const char *pat);
bool core_glob_match(const char *pat, size_t plen, const void *s, size_t slen);

/* ---- compression (compress.c) ---- */

enum core_codec {
    CORE_CODEC_NONE = 0,
    CORE_CODEC_ZSTD,
    CORE_CODEC_LZ4,
    CORE_CODEC_ZLIB
};

/* Compress `src` into a malloc'd buffer (*dst, *dlen) that records the
 * original length. Returns 0, or -1 when it failed or would not shrink. */
int core_compress(enum core_codec codec, int level, const void *src, size_t slen,
                  void **dst, size_t *dlen);
/* Decompress into `dst` of exactly the original length (core_compressed_len). */
int core_decompress(enum core_codec codec, const void *src, size_t slen, void *dst,
                    size_t dlen);
size_t core_compressed_len(const void *src, size_t slen); /* original length */

/* ---- values handed to callers ---- */

/* A blob: a refcounted, immutable byte buffer shared by an item and the
 * handles of its readers. */
typedef struct core_blob {
    _Atomic uint32_t refs;
    uint32_t magic;
    size_t len;
    unsigned char *data; /* into `tail`, or a buffer taken from the caller */
    unsigned char tail[];
} core_blob;

core_blob *core_blob_new(const void *data, size_t len); /* refs = 1 */
core_blob *core_blob_take(void *mallocd, size_t len);   /* no copy when possible */
void core_blob_ref(core_blob *b);
void core_blob_release(core_blob *b);

struct strata_value {
    const unsigned char *data;
    size_t len;
    core_blob *blob; /* NULL: data points into `inline_buf` */
    size_t cap;      /* capacity of inline_buf */
    unsigned char inline_buf[];
};

/* Handles of small values are recycled through a per-thread stack (value.c),
 * so a hit allocates nothing; the copy of up to 64 bytes is a few overlapping
 * fixed-size moves that never touch a byte outside [src, src + n). */
#define CORE_VCACHE_MAX 16
struct core_vcache {
    unsigned n;
    bool registered; /* the thread-exit destructor knows about this stack */
    strata_value *v[CORE_VCACHE_MAX];
};
extern __thread struct core_vcache core_vc __attribute__((tls_model("initial-exec")));

static inline void core_copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
    if (n >= 16) {
        unsigned char a[16], b[16], c[16], e[16];
        if (n <= 32) {
            memcpy(a, s, 16);
            memcpy(b, s + n - 16, 16);
            memcpy(d, a, 16);
            memcpy(d + n - 16, b, 16);
            return;
        }
        memcpy(a, s, 16);
        memcpy(b, s + 16, 16);
        memcpy(c, s + n - 32, 16);
        memcpy(e, s + n - 16, 16);
        memcpy(d, a, 16);
        memcpy(d + 16, b, 16);
        memcpy(d + n - 32, c, 16);
        memcpy(d + n - 16, e, 16);
    } else if (n >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

strata_value *core_value_copy_slow(const void *data, size_t len);

/* Copy-out of a value into a new handle. */
static inline strata_value *core_value_copy(const void *data, size_t len)
{
    if (__builtin_expect(len <= 64 && core_vc.n > 0, 1)) {
        strata_value *v = core_vc.v[--core_vc.n];
        v->data = v->inline_buf;
        v->len = len;
        v->blob = NULL;
        core_copy_small(v->inline_buf, data, len);
        return v;
    }
    return core_value_copy_slow(data, len);
}
strata_value *core_value_alloc(size_t len);  /* uninitialised inline buffer */
strata_value *core_value_blob(core_blob *b); /* takes a new reference */

/* ---- the engine ---- */

typedef struct engine_conf {
    const char *name;
    int64_t ttl_ms;      /* default TTL; <= 0: none */
    uint64_t max_memory; /* bytes, > 0 */
    uint64_t max_items;  /* 0: unbounded */
    enum core_codec codec;
    int level;
    uint64_t compress_min_size;
    int64_t loader_timeout_ms;
    unsigned shards;         /* 0: chosen from the bounds */
    const core_clock *clock; /* borrowed; outlives the engine */
} engine_conf;

typedef struct engine engine;

engine *engine_new(const engine_conf *conf);
void engine_free(engine *e);

int engine_set(engine *e, const void *key, size_t klen, const void *val, size_t vlen,
               const strata_set_opts *opts);
int engine_get(engine *e, const void *key, size_t klen, strata_value **out);
/* engine_get that moves the hit/miss counters only when `count`. */
int engine_lookup(engine *e, const void *key, size_t klen, strata_value **out,
                  bool count);
/* A last check made under the shard lock just before a value is published:
 * true cancels the store (single flight: an invalidation won the race). */
typedef struct engine_veto {
    bool (*fn)(void *ud);
    void *ud;
} engine_veto;

/* Store a blob without copying it (the caller keeps its reference). Returns
 * STRATA_MISS, storing nothing, when `veto` (may be NULL) says so. */
int engine_set_blob(engine *e, const void *key, size_t klen, core_blob *b,
                    const strata_set_opts *opts, const engine_veto *veto);
/* Take the clock's current reading as the origin of expiry (after the clock
 * changed, before use). */
void engine_rebase(engine *e);
int engine_delete(engine *e, const void *key, size_t klen);
long engine_invalidate_pattern(engine *e, const char *glob);
long engine_invalidate_tags(engine *e, const char *const *tags, size_t ntags);
int engine_clear(engine *e);
/* Remove every entry whose key `match` accepts (one shard locked at a time).
 * Returns how many went. */
typedef bool (*engine_key_pred)(const void *key, size_t klen, void *ud);
long engine_invalidate_where(engine *e, engine_key_pred match, void *ud);
void engine_stats(engine *e, strata_stats *out);
/* Reclaim expired and invalidated entries: at most `budget` index slots per
 * shard. Returns how many entries it removed. */
long engine_sweep(engine *e, size_t budget);

/* Single flight (flight.c) */
int engine_get_or_set(engine *e, const void *key, size_t klen, strata_loader load,
                      void *ud, const strata_set_opts *opts, strata_value **out);
struct flights;
struct flights *engine_flights(engine *e);
/* Invalidations call these before they remove entries (see flight.c). */
void engine_flights_poison_key(engine *e, const void *key, size_t klen);
void engine_flights_poison_glob(engine *e, const char *glob);
void engine_flights_poison_all(engine *e);
bool engine_tags_invalidated_since(engine *e, const char *const *tags, size_t n,
                                   uint64_t since);

/* How many callers are waiting on the flight for `key` (tests). */
long engine_flight_waiters(engine *e, const void *key, size_t klen);

/* Stats counters, striped per thread (engine.c). */
enum engine_stat {
    ST_HITS,
    ST_MISSES,
    ST_SETS,
    ST_DELETES,
    ST_EVICTIONS,
    ST_EXPIRED,
    ST_INVALIDATED,
    ST_ERRORS,
    ST__COUNT
};
void engine_count(engine *e, enum engine_stat st, uint64_t n);
int64_t engine_loader_timeout_ms(const engine *e);
bool engine_valid_tags(const strata_set_opts *opts);

#endif /* STRATA_CORE_H */
