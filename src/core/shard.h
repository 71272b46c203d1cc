/*
 * shard.h -- the engine's data structures (internal to src/core).
 *
 * Layout. A key's 64-bit hash h picks a shard (bits 32..37) and a home slot
 * in the shard's index (low 32 bits, by multiply-shift). The index is an
 * open-addressing array of 8-byte slots, linear probing:
 *
 *     slot = fp32 << 32 | id32      fp32 = h >> 32, id32 = item id in the slab
 *     0 = empty, TOMB = a deleted entry (id 0, fp 1)
 *
 * An item is one slab slot:
 *
 *   +------+------+--------+------+------+------+------+------+-----+-------+------+
 *   | prev | next | exp_lo | klen |exp_hi|flags | vst  | freq |ntags| key   |value |
 *   |  u32 |  u32 |  u32   | u16  |  u8  |  u8  | u16  |  u8  | u8  | klen  |      |
 *   +------+------+--------+------+------+------+------+------+-----+-------+------+
 *   (vst: value length and state bits; freq: the access frequency)
 *   value = vlen bytes inline, or (F_BLOB) a core_blob pointer; then, with
 *   ntags > 0, ntags x { tag_rec *, u64 version }. 20 bytes of header.
 *
 * prev/next link the item in its shard's S or M queue and are touched only
 * under the shard lock; every other field is written before the item is
 * published in the index (release store) and never again, except freq, an
 * atomic byte that hits bump with a plain relaxed store only while it is
 * below 3 (no locked instruction; a hot item's line then stays shared between
 * cores), and the state bits of vst (queue, live, expiry counted).
 *
 * Readers (get) take no lock: inside an epoch they load the index pointer,
 * probe, compare the key, check expiry and tag versions, and copy the value
 * out (or take a blob reference). Writers (set, delete, evict, sweep) hold the
 * shard mutex. A removed item is put on the shard's limbo list with the epoch
 * of its removal and its slot reused only once ebr_safe() says no reader can
 * hold it. Index arrays replaced by a rebuild are retired the same way.
 *
 * Eviction: S3-FIFO (Yang et al., SOSP'23) per shard -- a small FIFO S for
 * new keys, a main FIFO M with reinsertion (CLOCK-like, 2-bit frequency), and
 * a ghost of recently evicted keys (hash fingerprints in a direct-mapped
 * array) -- with S's share of the shard adapted from ghost hits: a key that
 * returns after leaving S says S was too small, one that returns after
 * leaving M says M was. The bounds (max_memory, max_items) are global to the
 * engine: a writer evicts from its own shard until the engine fits.
 */
#ifndef STRATA_CORE_SHARD_H
#define STRATA_CORE_SHARD_H

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
/* Inlined: a hash of a short key is a few instructions, not a library call. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/core.h"
#include "core/slab.h"
#include "core/tags.h"

#define ENGINE_MAGIC 0x656e6731u
#define MAX_SHARDS 64
#define STRIPES 64
#define TOMB ((uint64_t)1 << 32)
#define EXP_NEVER ((uint64_t)0xffffffffffull)

/* item flags: written before the item is published, then immutable */
#define F_BLOB 0x01u
#define F_CODEC 0x0cu /* codec << 2 */
/* vst: the value length and the state bits, one atomic 16-bit word. Readers
 * only load it (and set VST_SEEN with an atomic OR); writers change the state
 * bits with CAS under the shard lock. */
#define VST_VLEN 0x03ffu /* inline value length (<= ENGINE_INLINE_MAX) */
#define VST_INM 0x0400u  /* in M (else S) */
#define VST_LIVE 0x0800u /* linked in the index and a queue */
#define VST_SEEN 0x1000u /* expiry already counted */
/* freq: the 2-bit access frequency alone in its byte, so a hit bumps it with
 * a plain store (no locked instruction, no fence); a lost race only loses a
 * count. */
#define FQ_MAX 3u
_Static_assert(ENGINE_INLINE_MAX <= VST_VLEN, "inline values must fit vst");

/* Policy parameters: one set for every workload (trace-replay measures them). */
#define SHARE_ONE 65536u
#define S_SHARE_INIT 6554 /* of SHARE_ONE: S starts at 10% */
#define S_SHARE_MIN 655   /* 1% */
#define S_SHARE_MAX 58982 /* 90% */
#define PROMOTE_FREQ 2    /* leaving S with freq >= this: to M */

struct item {
    uint32_t prev, next;
    uint32_t exp_lo;
    uint16_t klen;
    uint8_t exp_hi;
    uint8_t flags;
    _Atomic uint16_t vst;
    _Atomic uint8_t freq;
    uint8_t ntags;
    unsigned char data[];
};

struct index {
    uint32_t n;
    uint32_t mapped; /* allocated with mmap (large arrays) rather than calloc */
    _Atomic uint64_t slot[];
};

struct retired_index {
    struct index *idx;
    uint64_t epoch;
    struct retired_index *next;
};

struct queue {
    uint32_t head, tail; /* head: oldest */
    uint64_t bytes;
    uint64_t items;
};

struct shard {
    pthread_mutex_t lock;
    struct index *_Atomic idx;
    uint32_t used, tomb;
    slab slab;
    struct queue s, m;
    uint32_t s_share; /* S's share of the shard, of SHARE_ONE */
    uint16_t *ghost;
    uint32_t gn;
    uint32_t g_s, g_m; /* ghost entries that left S / M */
    uint32_t limbo_head, limbo_tail, limbo_n;
    struct retired_index *old_idx;
    uint32_t sweep_pos;
    uint64_t mortal; /* items that can die on their own (a TTL or tags) */
} __attribute__((aligned(64)));

struct stripe {
    _Atomic uint64_t c[ST__COUNT];
} __attribute__((aligned(64)));

struct engine {
    uint32_t magic;
    unsigned nshards;
    int64_t ttl_ms;
    uint64_t max_memory, max_items;
    enum core_codec codec;
    int level;
    uint64_t compress_min;
    int64_t loader_timeout_ms;
    const core_clock *clock;
    uint64_t base; /* clock reading that item expiry is relative to */
    bool huge;     /* large cache: items and index on transparent huge pages */
    char *name;
    tag_reg *tags;
    _Atomic uint64_t bytes, items;
    _Atomic uint64_t meta; /* of bytes: index arrays and ghosts */
    struct flights *flights;
    struct stripe stripes[STRIPES + 1]; /* the last one is shared */
    struct shard shard[];
};

/* flight.c */
struct flights *flights_new(void);
void flights_free(struct flights *f);

/* ---------------------------------------------------------------- helpers */

/* Key equality; keys of up to 16 bytes (the common case) compare in
 * registers instead of through a memcmp call. */
static inline bool key_eq(const unsigned char *a, const void *bv, size_t n)
{
    const unsigned char *b = bv;
    if (n <= 16 && n >= 8) {
        uint64_t x0, y0, x1, y1;
        memcpy(&x0, a, 8);
        memcpy(&y0, b, 8);
        memcpy(&x1, a + n - 8, 8);
        memcpy(&y1, b + n - 8, 8);
        return ((x0 ^ y0) | (x1 ^ y1)) == 0;
    }
    return memcmp(a, b, n) == 0;
}

static inline uint64_t hash_key(const void *k, size_t n)
{
    return XXH3_64bits(k, n);
}

static inline uint32_t home(uint64_t h, uint32_t n)
{
    return (uint32_t)(((uint64_t)(uint32_t)h * n) >> 32);
}

static inline struct shard *shard_of(engine *e, uint64_t h)
{
    return &e->shard[(h >> 32) & (e->nshards - 1)];
}

static inline struct item *item_at(struct shard *sh, uint32_t id)
{
    return slab_ptr(&sh->slab, id);
}

static inline uint64_t item_exp(const struct item *it)
{
    return (uint64_t)it->exp_hi << 32 | it->exp_lo;
}

static inline size_t item_vlen(const struct item *it)
{
    return atomic_load_explicit(&((struct item *)it)->vst, memory_order_relaxed) &
           VST_VLEN;
}

static inline size_t item_vbytes(const struct item *it)
{
    return it->flags & F_BLOB ? sizeof(core_blob *) : item_vlen(it);
}

static inline unsigned char *item_tags(struct item *it)
{
    return it->data + it->klen + item_vbytes(it);
}

static inline core_blob *item_blob(const struct item *it)
{
    core_blob *b;
    memcpy(&b, it->data + it->klen, sizeof b);
    return b;
}

static inline bool item_tags_current(struct item *it)
{
    unsigned char *p = item_tags(it);
    for (unsigned i = 0; i < it->ntags; i++, p += 16) {
        tag_rec *t;
        uint64_t v;
        memcpy(&t, p, sizeof t);
        memcpy(&v, p + 8, sizeof v);
        if (!tag_rec_current(t, v)) return false;
    }
    return true;
}

static inline bool item_expired(const struct item *it, uint64_t now)
{
    uint64_t x = item_exp(it);
    return x != EXP_NEVER && now >= x;
}

static inline uint64_t item_charge(struct shard *sh, uint32_t id, struct item *it)
{
    uint64_t c = slab_slot_size(&sh->slab, id);
    if (it->flags & F_BLOB) c += sizeof(core_blob) + item_blob(it)->len;
    return c;
}

static inline size_t index_bytes(uint32_t n)
{
    return sizeof(struct index) + (size_t)n * sizeof(uint64_t);
}

static inline size_t ghost_bytes(uint32_t gn)
{
    return (size_t)gn * sizeof(uint16_t);
}

static inline uint64_t item_hash(struct item *it)
{
    return hash_key(it->data, it->klen);
}

static inline uint16_t st_get(struct item *it)
{
    return atomic_load_explicit(&it->vst, memory_order_relaxed);
}

static inline uint8_t fq_get(struct item *it)
{
    return atomic_load_explicit(&it->freq, memory_order_relaxed);
}

static inline void fq_set(struct item *it, unsigned f)
{
    atomic_store_explicit(&it->freq, (uint8_t)f, memory_order_relaxed);
}

static inline struct queue *q_of(struct shard *sh, struct item *it)
{
    return (st_get(it) & VST_INM) ? &sh->m : &sh->s;
}

/* ---- shard.c: everything below runs with the shard's lock held ---- */

struct index *shard_index_new(uint32_t n, bool huge);
void shard_index_free(struct index *x);
void engine_charge(engine *e, int64_t bytes, int64_t items);
/* Make room in the index for one more entry: 0, or -1 when it is full and
 * no larger index could be allocated. */
int shard_locked_index_room(engine *e, struct shard *sh);
int shard_locked_ghost_take(struct shard *sh, uint64_t h);
void shard_q_push(struct shard *sh, struct queue *q, uint32_t id, struct item *it,
                  uint64_t charge);
void shard_item_free(engine *e, struct shard *sh, uint32_t id);
/* Reuse what readers can no longer see; `force` advances the epoch even for
 * a small batch (the sweeper). */
void shard_locked_reclaim(engine *e, struct shard *sh, bool force);
void shard_locked_retire(engine *e, struct shard *sh, uint32_t id, struct item *it);
void shard_locked_remove(engine *e, struct shard *sh, uint32_t id, struct item *it,
                         uint64_t h, int64_t pos);
bool shard_mark_expired_seen(struct item *it);
bool shard_locked_dead(engine *e, struct item *it, uint64_t now);
void shard_adapt(struct shard *sh, int from);
void shard_locked_make_room(engine *e, struct shard *sh, uint64_t now);

#endif /* STRATA_CORE_SHARD_H */
