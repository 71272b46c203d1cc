/*
 * engine.c -- the memory engine: shards, index, items, eviction, expiry.
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
 *   | prev | next | exp_lo | klen |exp_hi|flags | vlen | freq |ntags| key   |value |
 *   |  u32 |  u32 |  u32   | u16  |  u8  |  u8  | u16  |  u8  | u8  | klen  |      |
 *   +------+------+--------+------+------+------+------+------+-----+-------+------+
 *   (freq is the atomic state byte: frequency, queue, live, expiry-counted)
 *   value = vlen bytes inline, or (F_BLOB) a core_blob pointer; then, with
 *   ntags > 0, ntags x { tag_rec *, u64 version }. 20 bytes of header.
 *
 * prev/next link the item in its shard's S or M queue and are touched only
 * under the shard lock; every other field is written before the item is
 * published in the index (release store) and never again, except freq, an
 * atomic byte that hits bump with a relaxed CAS only while it is below 3 (a
 * hot item's line then stays shared between cores).
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
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
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
#define F_CODEC 0x0cu   /* codec << 2 */
/* the atomic state byte: readers bump the frequency (CAS), writers the rest */
#define FQ_MASK 0x03u   /* 2-bit access frequency */
#define FQ_INM 0x04u    /* in M (else S) */
#define FQ_LIVE 0x08u   /* linked in the index and a queue */
#define FQ_SEEN 0x80u   /* expiry already counted */

/* Policy parameters: one set for every workload (trace-replay measures them). */
#define SHARE_ONE 65536u
#define S_SHARE_INIT 6554  /* of SHARE_ONE: S starts at 10% */
#define S_SHARE_MIN 655    /* 1% */
#define S_SHARE_MAX 58982  /* 90% */
#define PROMOTE_FREQ 2     /* leaving S with freq >= this: to M */

struct item {
    uint32_t prev, next;
    uint32_t exp_lo;
    uint16_t klen;
    uint8_t exp_hi;
    uint8_t flags;
    uint16_t vlen;
    _Atomic uint8_t freq;
    uint8_t ntags;
    unsigned char data[];
};

struct index {
    uint32_t n;
    uint32_t pad;
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
    uint32_t s_share;     /* S's share of the shard, of SHARE_ONE */
    uint16_t *ghost;
    uint32_t gn;
    uint32_t g_s, g_m;    /* ghost entries that left S / M */
    uint32_t limbo_head, limbo_tail, limbo_n;
    struct retired_index *old_idx;
    uint32_t sweep_pos;
    uint64_t bytes;       /* charged to this shard */
    uint64_t items;
} __attribute__((aligned(64)));

struct stripe {
    _Atomic uint64_t c[ST__COUNT];
} __attribute__((aligned(64)));

struct engine {
    uint32_t magic;
    unsigned nshards;
    unsigned shard_shift;
    int64_t ttl_ms;
    uint64_t max_memory, max_items;
    enum core_codec codec;
    int level;
    uint64_t compress_min;
    int64_t loader_timeout_ms;
    const core_clock *clock;
    uint64_t base;              /* clock reading that item expiry is relative to */
    char *name;
    tag_reg *tags;
    _Atomic uint64_t bytes, items;
    _Atomic uint64_t meta;      /* of bytes: index arrays and ghosts */
    struct flights *flights;
    struct stripe stripes[STRIPES + 1]; /* the last one is shared */
    struct shard shard[];
};

/* flight.c */
struct flights *flights_new(void);
void flights_free(struct flights *f);

/* ---------------------------------------------------------------- helpers */

/* Engine time: ms since `base`, so 40 bits of expiry last 34 years whatever
 * the clock's origin. */
static uint64_t enow(engine *e)
{
    uint64_t n = core_clock_now(e->clock);
    return n > e->base ? n - e->base : 0;
}

void engine_rebase(engine *e)
{
    e->base = core_clock_now(e->clock);
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

static inline size_t item_vbytes(const struct item *it)
{
    return it->flags & F_BLOB ? sizeof(core_blob *) : it->vlen;
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

static bool item_tags_current(struct item *it)
{
    unsigned char *p = item_tags(it);
    for (unsigned i = 0; i < it->ntags; i++, p += 16) {
        tag_rec *t;
        uint64_t v;
        memcpy(&t, p, sizeof t);
        memcpy(&v, p + 8, sizeof v);
        if (!tag_rec_current(t, v))
            return false;
    }
    return true;
}

static inline bool item_expired(const struct item *it, uint64_t now)
{
    uint64_t x = item_exp(it);
    return x != EXP_NEVER && now >= x;
}

static uint64_t item_charge(struct shard *sh, uint32_t id, struct item *it)
{
    uint64_t c = slab_slot_size(&sh->slab, id);
    if (it->flags & F_BLOB)
        c += sizeof(core_blob) + item_blob(it)->len;
    return c;
}

size_t engine_item_overhead(void)
{
    return sizeof(struct item);
}

/* ----------------------------------------------------------------- stats */

/* Threads with one of the first STRIPES slots own a stripe and update it
 * with a plain load and store (no locked instruction on a hit); every later
 * thread shares the last stripe and adds atomically. */
void engine_count(engine *e, enum engine_stat st, uint64_t n)
{
    unsigned slot = ebr_thread_slot();
    if (slot < STRIPES) {
        _Atomic uint64_t *c = &e->stripes[slot].c[st];
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&e->stripes[STRIPES].c[st], n, memory_order_relaxed);
    }
}

void engine_stats(engine *e, strata_stats *out)
{
    uint64_t c[ST__COUNT] = {0};
    for (unsigned i = 0; i <= STRIPES; i++)
        for (unsigned k = 0; k < ST__COUNT; k++)
            c[k] += atomic_load_explicit(&e->stripes[i].c[k], memory_order_relaxed);
    out->hits = c[ST_HITS];
    out->misses = c[ST_MISSES];
    out->sets = c[ST_SETS];
    out->deletes = c[ST_DELETES];
    out->evictions = c[ST_EVICTIONS];
    out->expired = c[ST_EXPIRED];
    out->invalidated = c[ST_INVALIDATED];
    out->errors = c[ST_ERRORS];
    out->items = atomic_load(&e->items);
    out->bytes = atomic_load(&e->bytes);
    out->max_bytes = e->max_memory;
}

struct flights *engine_flights(engine *e)
{
    return e->flights;
}

int64_t engine_loader_timeout_ms(const engine *e)
{
    return e->loader_timeout_ms;
}

/* ----------------------------------------------------------------- index */

static struct index *index_new(uint32_t n)
{
    struct index *x = calloc(1, sizeof *x + (size_t)n * sizeof(uint64_t));
    if (x)
        x->n = n;
    return x;
}

static size_t index_bytes(uint32_t n)
{
    return sizeof(struct index) + (size_t)n * sizeof(uint64_t);
}

static size_t ghost_bytes(uint32_t gn)
{
    return (size_t)gn * sizeof(uint16_t);
}

/* Charge (or refund, with sign) memory to the shard and the engine. */
static void locked_charge(engine *e, struct shard *sh, int64_t bytes, int64_t items)
{
    sh->bytes += (uint64_t)bytes;
    sh->items += (uint64_t)items;
    if (bytes)
        atomic_fetch_add_explicit(&e->bytes, (uint64_t)bytes, memory_order_relaxed);
    if (items)
        atomic_fetch_add_explicit(&e->items, (uint64_t)items, memory_order_relaxed);
}

/* Find the slot holding `id`, or -1. */
static int64_t locked_slot_of(struct index *x, uint64_t h, uint32_t id)
{
    uint32_t pos = home(h, x->n);
    for (uint32_t i = 0; i < x->n; i++) {
        uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_relaxed);
        if (s == 0)
            return -1;
        if ((uint32_t)s == id)
            return pos;
        if (++pos == x->n)
            pos = 0;
    }
    return -1;
}

static void locked_index_clear(struct shard *sh, struct index *x, uint32_t pos)
{
    uint32_t next = pos + 1 == x->n ? 0 : pos + 1;
    if (atomic_load_explicit(&x->slot[next], memory_order_relaxed) != 0) {
        atomic_store_explicit(&x->slot[pos], TOMB, memory_order_release);
        sh->tomb++;
        return;
    }
    /* The next slot is empty: no probe continues past this one, so it and
     * the tombstones right before it can become empty. */
    atomic_store_explicit(&x->slot[pos], 0, memory_order_release);
    uint32_t p = pos;
    for (;;) {
        p = p == 0 ? x->n - 1 : p - 1;
        if (atomic_load_explicit(&x->slot[p], memory_order_relaxed) != TOMB)
            break;
        atomic_store_explicit(&x->slot[p], 0, memory_order_release);
        sh->tomb--;
    }
}

static void locked_retire_index(struct shard *sh, struct index *old)
{
    struct retired_index *r = malloc(sizeof *r);
    if (r == NULL) {
        /* Cannot defer: wait for readers to leave instead. */
        uint64_t ep = ebr_retire_epoch();
        while (!ebr_safe(ep))
            ;
        free(old);
        return;
    }
    r->idx = old;
    r->epoch = ebr_retire_epoch();
    r->next = sh->old_idx;
    sh->old_idx = r;
}

static uint64_t item_hash(struct item *it)
{
    return hash_key(it->data, it->klen);
}

/* Rebuild the index at size n (dropping tombstones) and publish it. */
static int locked_rebuild(engine *e, struct shard *sh, uint32_t n)
{
    struct index *old = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    struct index *x = index_new(n);
    if (x == NULL)
        return -1;
    for (uint32_t i = 0; i < old->n; i++) {
        uint64_t s = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
        uint32_t id = (uint32_t)s;
        if (id == 0)
            continue;
        uint64_t h = item_hash(item_at(sh, id));
        uint32_t pos = home(h, n);
        while (atomic_load_explicit(&x->slot[pos], memory_order_relaxed) != 0)
            if (++pos == n)
                pos = 0;
        atomic_store_explicit(&x->slot[pos], s, memory_order_relaxed);
    }
    atomic_store_explicit(&sh->idx, x, memory_order_release);
    int64_t d = (int64_t)index_bytes(n) - (int64_t)index_bytes(old->n);
    locked_charge(e, sh, d, 0);
    atomic_fetch_add(&e->meta, (uint64_t)d);
    sh->tomb = 0;
    locked_retire_index(sh, old);
    return 0;
}

/* Keep (used + tombstones) <= 85% of the slots; grow by half when live
 * entries pass 70%. */
static void locked_index_room(engine *e, struct shard *sh)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint64_t occ = (uint64_t)sh->used + sh->tomb + 1;
    if (occ * 100 <= (uint64_t)x->n * 85)
        return;
    uint32_t n = x->n;
    if ((uint64_t)(sh->used + 1) * 100 > (uint64_t)n * 70)
        n = n + n / 2 + 16;
    (void)locked_rebuild(e, sh, n);
}

/* --------------------------------------------------------------- ghost */

static inline uint32_t ghost_pos(struct shard *sh, uint64_t h)
{
    return (uint32_t)(((h >> 16) & 0xffffffffu) * sh->gn >> 32);
}

static inline uint16_t ghost_fp(uint64_t h, unsigned from_m)
{
    return (uint16_t)((((h >> 49) | 0x4000u) << 1) | from_m);
}

static void locked_ghost_add(struct shard *sh, uint64_t h, unsigned from_m)
{
    if (sh->gn == 0)
        return;
    uint16_t *g = &sh->ghost[ghost_pos(sh, h)];
    if (*g)
        (*g & 1u) ? sh->g_m-- : sh->g_s--;
    *g = ghost_fp(h, from_m);
    from_m ? sh->g_m++ : sh->g_s++;
}

/* 0: not in the ghost; 1: left S; 2: left M. The entry is consumed. */
static int locked_ghost_take(struct shard *sh, uint64_t h)
{
    if (sh->gn == 0)
        return 0;
    uint16_t *g = &sh->ghost[ghost_pos(sh, h)];
    if ((*g | 1u) != (ghost_fp(h, 0) | 1u))
        return 0;
    int r = (*g & 1u) ? 2 : 1;
    r == 2 ? sh->g_m-- : sh->g_s--;
    *g = 0;
    return r;
}

/* ---------------------------------------------------------------- queues */

static void q_push(struct shard *sh, struct queue *q, uint32_t id, struct item *it,
                   uint64_t charge)
{
    it->next = 0;
    it->prev = q->tail;
    if (q->tail)
        item_at(sh, q->tail)->next = id;
    else
        q->head = id;
    q->tail = id;
    q->bytes += charge;
    q->items++;
}

static void q_unlink(struct shard *sh, struct queue *q, struct item *it,
                     uint64_t charge)
{
    if (it->prev)
        item_at(sh, it->prev)->next = it->next;
    else
        q->head = it->next;
    if (it->next)
        item_at(sh, it->next)->prev = it->prev;
    else
        q->tail = it->prev;
    it->prev = it->next = 0;
    q->bytes -= charge;
    q->items--;
}

static inline uint8_t st_get(struct item *it)
{
    return atomic_load_explicit(&it->freq, memory_order_relaxed);
}

/* Writer-side update of the state byte; a reader's concurrent frequency bump
 * makes the CAS retry, so neither update is lost. */
static void st_update(struct item *it, uint8_t clear, uint8_t set)
{
    uint8_t f = st_get(it);
    while (!atomic_compare_exchange_weak_explicit(&it->freq, &f,
                                                  (uint8_t)((f & ~clear) | set),
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

static inline struct queue *q_of(struct shard *sh, struct item *it)
{
    return (st_get(it) & FQ_INM) ? &sh->m : &sh->s;
}

/* ---------------------------------------------------------- item lifecycle */

static void item_free_now(engine *e, struct shard *sh, uint32_t id)
{
    struct item *it = item_at(sh, id);
    if (it->flags & F_BLOB)
        core_blob_release(item_blob(it));
    if (it->ntags) {
        tag_rec *recs[ENGINE_TAGS_MAX];
        unsigned char *p = item_tags(it);
        for (unsigned i = 0; i < it->ntags; i++)
            memcpy(&recs[i], p + 16 * i, sizeof recs[i]);
        tag_reg_release(e->tags, recs, it->ntags);
    }
    slab_free(&sh->slab, id);
}

/* Free what readers can no longer see. */
static void locked_reclaim(engine *e, struct shard *sh)
{
    while (sh->limbo_head) {
        uint32_t id = sh->limbo_head;
        struct item *it = item_at(sh, id);
        uint64_t cur = ebr_retire_epoch();
        uint64_t ep = cur - (uint32_t)((uint32_t)cur - it->prev);
        if (!ebr_safe(ep))
            break;
        sh->limbo_head = it->next;
        if (sh->limbo_head == 0)
            sh->limbo_tail = 0;
        sh->limbo_n--;
        item_free_now(e, sh, id);
    }
    struct retired_index **pp = &sh->old_idx;
    while (*pp) {
        struct retired_index *r = *pp;
        if (ebr_safe(r->epoch)) {
            *pp = r->next;
            free(r->idx);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* Take item `id` (already out of the index) off its queue, refund it, and
 * retire it: its tags stop counting it now, its memory is reused later. */
static void locked_retire(engine *e, struct shard *sh, uint32_t id, struct item *it)
{
    uint64_t charge = item_charge(sh, id, it);
    q_unlink(sh, q_of(sh, it), it, charge);
    st_update(it, FQ_LIVE, 0);
    locked_charge(e, sh, -(int64_t)charge, -1);
    if (it->ntags) {
        tag_rec *recs[ENGINE_TAGS_MAX];
        unsigned char *p = item_tags(it);
        for (unsigned i = 0; i < it->ntags; i++)
            memcpy(&recs[i], p + 16 * i, sizeof recs[i]);
        tag_reg_unlive(e->tags, recs, it->ntags);
    }
    /* The epoch goes in prev (low 32 bits), the limbo link in next. */
    it->prev = (uint32_t)ebr_retire_epoch();
    it->next = 0;
    if (sh->limbo_tail)
        item_at(sh, sh->limbo_tail)->next = id;
    else
        sh->limbo_head = id;
    sh->limbo_tail = id;
    sh->limbo_n++;
}

/* Unlink item `id` from the index (at `pos`, or found from `h`) and retire it. */
static void locked_remove(engine *e, struct shard *sh, uint32_t id, struct item *it,
                          uint64_t h, int64_t pos)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    if (pos < 0)
        pos = locked_slot_of(x, h, id);
    if (pos >= 0)
        locked_index_clear(sh, x, (uint32_t)pos);
    sh->used--;
    locked_retire(e, sh, id, it);
}

static bool mark_expired_seen(struct item *it)
{
    uint8_t old = atomic_fetch_or_explicit(&it->freq, FQ_SEEN, memory_order_relaxed);
    return !(old & FQ_SEEN);
}

/* Is the item dead (expired or invalidated by a tag)? Counts expiry once. */
static bool locked_dead(engine *e, struct item *it, uint64_t now)
{
    if (item_expired(it, now)) {
        if (mark_expired_seen(it))
            engine_count(e, ST_EXPIRED, 1);
        return true;
    }
    return it->ntags && !item_tags_current(it);
}

/* -------------------------------------------------------------- eviction */

static bool over_bounds(engine *e)
{
    if (atomic_load_explicit(&e->bytes, memory_order_relaxed) > e->max_memory)
        return true;
    return e->max_items &&
           atomic_load_explicit(&e->items, memory_order_relaxed) > e->max_items;
}

/* A key that comes back from S's ghost says S was too small for it; one back
 * from M's ghost says M was. As in ARC, each such hit moves S's share by one
 * item, times the ratio of the other ghost's size to this one's. */
static void adapt(struct shard *sh, int from)
{
    uint64_t titems = sh->s.items + sh->m.items;
    uint64_t step = SHARE_ONE / (titems ? titems : 1);
    if (from == 1 && sh->g_s && sh->g_m > sh->g_s)
        step *= sh->g_m / sh->g_s;
    if (from == 2 && sh->g_m && sh->g_s > sh->g_m)
        step *= sh->g_s / sh->g_m;
    if (step == 0)
        step = 1;
    if (step > SHARE_ONE)
        step = SHARE_ONE;
    if (from == 1)
        sh->s_share = sh->s_share + step > S_SHARE_MAX ? S_SHARE_MAX
                                                        : sh->s_share + (uint32_t)step;
    else if (from == 2)
        sh->s_share = sh->s_share < S_SHARE_MIN + step ? S_SHARE_MIN
                                                        : sh->s_share - (uint32_t)step;
}

/* Evict one item from the shard. Returns false when the shard is empty. */
static bool locked_evict_one(engine *e, struct shard *sh, uint64_t now)
{
    for (;;) {
        uint64_t total = sh->s.bytes + sh->m.bytes;
        uint64_t titems = sh->s.items + sh->m.items;
        if (titems == 0)
            return false;
        bool from_s;
        if (e->max_items)
            from_s = sh->s.items > 0 &&
                     (sh->m.items == 0 || sh->s.items * SHARE_ONE > titems * sh->s_share);
        else
            from_s = sh->s.items > 0 &&
                     (sh->m.items == 0 || sh->s.bytes * SHARE_ONE > total * sh->s_share);
        struct queue *q = from_s ? &sh->s : &sh->m;
        uint32_t id = q->head;
        struct item *it = item_at(sh, id);
        uint64_t h = item_hash(it);
        if (locked_dead(e, it, now)) {
            locked_remove(e, sh, id, it, h, -1);
            return true;
        }
        uint8_t f = st_get(it);
        uint64_t charge = item_charge(sh, id, it);
        if (from_s) {
            if ((f & FQ_MASK) >= PROMOTE_FREQ) {
                q_unlink(sh, q, it, charge);
                st_update(it, FQ_MASK, FQ_INM);
                q_push(sh, &sh->m, id, it, charge);
                continue;
            }
            locked_ghost_add(sh, h, 0);
        } else if (f & FQ_MASK) {
            q_unlink(sh, q, it, charge);
            /* Decrement whatever a concurrent hit made of it. */
            uint8_t g = st_get(it);
            while ((g & FQ_MASK) &&
                   !atomic_compare_exchange_weak_explicit(&it->freq, &g, g - 1,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed))
                ;
            q_push(sh, q, id, it, charge);
            continue;
        } else {
            locked_ghost_add(sh, h, 1);
        }
        locked_remove(e, sh, id, it, h, -1);
        engine_count(e, ST_EVICTIONS, 1);
        return true;
    }
}

static void locked_make_room(engine *e, struct shard *sh, uint64_t now)
{
    while (over_bounds(e) && locked_evict_one(e, sh, now))
        ;
    if (!over_bounds(e))
        return;
    /* This shard is empty and the engine is still over (a large value, or
     * skew): take from the others, without waiting on their locks. */
    for (unsigned i = 0; i < e->nshards && over_bounds(e); i++) {
        struct shard *o = &e->shard[i];
        if (o == sh || pthread_mutex_trylock(&o->lock) != 0)
            continue;
        while (over_bounds(e) && locked_evict_one(e, o, now))
            ;
        locked_reclaim(e, o);
        pthread_mutex_unlock(&o->lock);
    }
}

/* ----------------------------------------------------------- construction */

static unsigned pick_shards(const engine_conf *c)
{
    if (c->shards)
        return c->shards;
    uint64_t cap = c->max_items ? c->max_items : c->max_memory / 256;
    unsigned n = 1;
    while (n < MAX_SHARDS && (uint64_t)n * 2 * 4096 <= cap)
        n *= 2;
    return n;
}

engine *engine_new(const engine_conf *c)
{
    if (c == NULL || c->max_memory == 0)
        return NULL;
    unsigned ns = pick_shards(c);
    if (ns == 0 || (ns & (ns - 1)) || ns > MAX_SHARDS)
        return NULL;
    engine *e = aligned_alloc(64, (sizeof *e + ns * sizeof(struct shard) + 63) & ~63ul);
    if (e == NULL)
        return NULL;
    memset(e, 0, sizeof *e + ns * sizeof(struct shard));
    e->magic = ENGINE_MAGIC;
    e->nshards = ns;
    e->ttl_ms = c->ttl_ms;
    e->max_memory = c->max_memory;
    e->max_items = c->max_items;
    e->codec = c->codec;
    e->level = c->level;
    e->compress_min = c->compress_min_size;
    e->loader_timeout_ms = c->loader_timeout_ms > 0 ? c->loader_timeout_ms : 30000;
    e->clock = c->clock;
    e->base = core_clock_now(c->clock);
    e->name = strdup(c->name ? c->name : "");
    e->tags = tag_reg_new();
    e->flights = flights_new();
    if (e->name == NULL || e->tags == NULL || e->flights == NULL)
        goto fail;
    /* Size each shard's index for its share of max_items (5% slack for
     * imbalance) at 80% load, so a count-bounded cache never resizes. */
    uint64_t per = e->max_items ? (e->max_items + ns - 1) / ns : c->max_memory / ns / 512;
    if (!e->max_items)
        per = per < 16 ? 16 : per > 1024 ? 1024 : per;
    per += per / 20 + 8;
    uint64_t n = per * 5 / 4 + 16;
    if (n > UINT32_MAX / 2)
        n = UINT32_MAX / 2;
    for (unsigned i = 0; i < ns; i++) {
        struct shard *sh = &e->shard[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->s_share = S_SHARE_INIT;
        if (slab_init(&sh->slab) != 0)
            goto fail;
        struct index *x = index_new((uint32_t)n);
        if (x == NULL)
            goto fail;
        atomic_store(&sh->idx, x);
        sh->gn = (uint32_t)(n / 2) | 1; /* ~0.65 x capacity, 2 bytes each */
        sh->ghost = calloc(sh->gn, sizeof *sh->ghost);
        if (sh->ghost == NULL)
            goto fail;
        uint64_t meta = index_bytes((uint32_t)n) + ghost_bytes(sh->gn);
        locked_charge(e, sh, (int64_t)meta, 0);
        atomic_fetch_add(&e->meta, meta);
    }
    return e;
fail:
    engine_free(e);
    return NULL;
}

void engine_free(engine *e)
{
    if (e == NULL)
        return;
    for (unsigned i = 0; i < e->nshards; i++) {
        struct shard *sh = &e->shard[i];
        if (sh->slab.pages == NULL)
            continue;
        /* Live items, then limbo: release what they hold. */
        for (struct queue *q = &sh->s; q; q = q == &sh->s ? &sh->m : NULL) {
            uint32_t id = q->head;
            while (id) {
                uint32_t next = item_at(sh, id)->next;
                item_free_now(e, sh, id);
                id = next;
            }
        }
        for (uint32_t id = sh->limbo_head; id;) {
            uint32_t next = item_at(sh, id)->next;
            item_free_now(e, sh, id);
            id = next;
        }
        while (sh->old_idx) {
            struct retired_index *r = sh->old_idx;
            sh->old_idx = r->next;
            free(r->idx);
            free(r);
        }
        free(atomic_load(&sh->idx));
        free(sh->ghost);
        slab_fini(&sh->slab);
        pthread_mutex_destroy(&sh->lock);
    }
    flights_free(e->flights);
    tag_reg_free(e->tags);
    free(e->name);
    e->magic = 0;
    free(e);
}

/* ------------------------------------------------------------------ reads */

enum found { F_NONE, F_HIT, F_DEAD };

/* Lock-free lookup. On F_HIT, *out holds the value (unless out is NULL). */
static enum found lookup(engine *e, struct shard *sh, uint64_t h, const void *key,
                         size_t klen, uint64_t now, strata_value **out, int *err,
                         uint32_t *dead_id)
{
    enum found r = F_NONE;
    ebr_enter();
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_acquire);
    uint32_t pos = home(h, x->n);
    uint32_t fp = (uint32_t)(h >> 32);
    for (uint32_t i = 0; i < x->n; i++) {
        uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_acquire);
        if (s == 0)
            break;
        uint32_t id = (uint32_t)s;
        if (id && (uint32_t)(s >> 32) == fp) {
            struct item *it = item_at(sh, id);
            if (it->klen == klen && memcmp(it->data, key, klen) == 0) {
                if (item_expired(it, now)) {
                    if (mark_expired_seen(it))
                        engine_count(e, ST_EXPIRED, 1);
                    r = F_DEAD;
                    *dead_id = id;
                    break;
                }
                if (it->ntags && !item_tags_current(it)) {
                    r = F_DEAD;
                    *dead_id = id;
                    break;
                }
                uint8_t f = atomic_load_explicit(&it->freq, memory_order_relaxed);
                if ((f & FQ_MASK) < 3)
                    atomic_compare_exchange_weak_explicit(&it->freq, &f, f + 1,
                                                          memory_order_relaxed,
                                                          memory_order_relaxed);
                r = F_HIT;
                if (out == NULL)
                    break;
                unsigned codec = (it->flags & F_CODEC) >> 2;
                const unsigned char *src;
                size_t slen;
                if (it->flags & F_BLOB) {
                    core_blob *b = item_blob(it);
                    if (codec == CORE_CODEC_NONE) {
                        *out = core_value_blob(b);
                        if (*out == NULL)
                            *err = STRATA_ENOMEM;
                        break;
                    }
                    src = b->data;
                    slen = b->len;
                } else {
                    src = it->data + klen;
                    slen = it->vlen;
                }
                if (codec == CORE_CODEC_NONE) {
                    *out = core_value_copy(src, slen);
                } else {
                    size_t olen = core_compressed_len(src, slen);
                    *out = core_value_alloc(olen);
                    if (*out && core_decompress(codec, src, slen, (*out)->inline_buf,
                                                olen) != 0) {
                        strata_value_release(*out);
                        *out = NULL;
                        *err = STRATA_EBACKEND;
                        break;
                    }
                }
                if (*out == NULL && *err == 0)
                    *err = STRATA_ENOMEM;
                break;
            }
        }
        if (++pos == x->n)
            pos = 0;
    }
    ebr_exit();
    return r;
}

/* Find `key` in the shard under its lock: its item id and slot, or 0. */
static uint32_t locked_find(struct shard *sh, uint64_t h, const void *key, size_t klen,
                            uint32_t *slot_pos)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint32_t pos = home(h, x->n), fp = (uint32_t)(h >> 32);
    for (uint32_t i = 0; i < x->n; i++) {
        uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_relaxed);
        if (s == 0)
            break;
        if (s != TOMB && (uint32_t)(s >> 32) == fp) {
            struct item *it = item_at(sh, (uint32_t)s);
            if (it->klen == klen && memcmp(it->data, key, klen) == 0) {
                *slot_pos = pos;
                return (uint32_t)s;
            }
        }
        if (++pos == x->n)
            pos = 0;
    }
    return 0;
}

static uint64_t enow(engine *e);

/* Remove the dead entry a reader found for `key`, if it is still dead. */
static void drop_dead(engine *e, struct shard *sh, uint64_t h, const void *key,
                      size_t klen)
{
    uint32_t pos;
    pthread_mutex_lock(&sh->lock);
    uint32_t id = locked_find(sh, h, key, klen, &pos);
    if (id) {
        struct item *it = item_at(sh, id);
        if (locked_dead(e, it, enow(e)))
            locked_remove(e, sh, id, it, h, pos);
    }
    locked_reclaim(e, sh);
    pthread_mutex_unlock(&sh->lock);
}

static bool key_ok(const void *key, size_t klen)
{
    return key != NULL && klen >= 1 && klen <= ENGINE_KEY_MAX;
}

int engine_lookup(engine *e, const void *key, size_t klen, strata_value **out,
                  bool count)
{
    if (out)
        *out = NULL;
    if (e == NULL || !key_ok(key, klen) || out == NULL)
        return STRATA_EINVAL;
    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    int err = 0;
    uint32_t dead = 0;
    enum found f = lookup(e, sh, h, key, klen, enow(e), out, &err, &dead);
    if (err) {
        if (count)
            engine_count(e, ST_ERRORS, 1);
        return err;
    }
    if (f == F_DEAD)
        drop_dead(e, sh, h, key, klen);
    if (count)
        engine_count(e, f == F_HIT ? ST_HITS : ST_MISSES, 1);
    return f == F_HIT ? STRATA_OK : STRATA_MISS;
}

int engine_get(engine *e, const void *key, size_t klen, strata_value **out)
{
    return engine_lookup(e, key, klen, out, true);
}

/* ----------------------------------------------------------------- writes */

bool engine_valid_tags(const strata_set_opts *o)
{
    if (o == NULL || o->ntags == 0)
        return true;
    if (o->tags == NULL || o->ntags > ENGINE_TAGS_MAX)
        return false;
    for (size_t i = 0; i < o->ntags; i++)
        if (!tag_name_valid(o->tags[i]))
            return false;
    return true;
}

static uint64_t expiry(engine *e, const strata_set_opts *o, uint64_t now)
{
    int64_t ttl = o ? o->ttl_ms : 0;
    if (ttl == 0)
        ttl = e->ttl_ms;
    if (ttl <= 0)
        return EXP_NEVER;
    uint64_t x = now + (uint64_t)ttl;
    /* Beyond 40 bits of ms (34 years from the cache's start) is never. */
    return x >= EXP_NEVER || x < now ? EXP_NEVER : x;
}

/* Store: `val` is copied unless `blob` (a reference the callee takes) is given;
 * `owned` (malloc'd, may equal val) is freed by the callee. */
static int store(engine *e, const void *key, size_t klen, const void *val, size_t vlen,
                 core_blob *blob, void *owned, const strata_set_opts *o)
{
    int rc = STRATA_OK;
    void *cbuf = NULL;
    tag_rec *recs[ENGINE_TAGS_MAX];
    uint64_t vers[ENGINE_TAGS_MAX];
    size_t ntags = 0;
    unsigned codec = CORE_CODEC_NONE;

    if (e == NULL || !key_ok(key, klen) || (val == NULL && vlen > 0) ||
        !engine_valid_tags(o)) {
        rc = STRATA_EINVAL;
        goto out;
    }
    if (vlen > e->max_memory) {
        rc = STRATA_E2BIG;
        goto out;
    }
    const void *sv = val;
    size_t slen = vlen;
    size_t clen;
    if (e->codec != CORE_CODEC_NONE && vlen >= e->compress_min && vlen > 0 &&
        core_compress(e->codec, e->level, val, vlen, &cbuf, &clen) == 0) {
        codec = e->codec;
        sv = cbuf;
        slen = clen;
    }
    bool use_blob = slen > ENGINE_INLINE_MAX;
    if (use_blob) {
        if (blob && codec == CORE_CODEC_NONE) {
            /* keep the caller's blob */
        } else {
            core_blob_release(blob);
            blob = NULL;
            if (cbuf) {
                blob = core_blob_take(cbuf, slen);
                cbuf = NULL;
            } else if (owned && owned == val) {
                blob = core_blob_take(owned, slen);
                owned = NULL;
            } else {
                blob = core_blob_new(sv, slen);
            }
            if (blob == NULL) {
                rc = STRATA_ENOMEM;
                goto out;
            }
            sv = blob->data;
        }
    }
    /* Tags, each once. */
    const char *uniq[ENGINE_TAGS_MAX];
    ntags = 0;
    for (size_t i = 0; o && i < o->ntags; i++) {
        size_t j = 0;
        while (j < ntags && strcmp(uniq[j], o->tags[i]) != 0)
            j++;
        if (j == ntags)
            uniq[ntags++] = o->tags[i];
    }
    size_t isize = sizeof(struct item) + klen + (use_blob ? sizeof(core_blob *) : slen) +
                   ntags * 16;
    uint32_t ssize = slab_size_for((uint32_t)(isize > UINT32_MAX ? 0 : isize));
    uint64_t charge = ssize + (use_blob ? sizeof(core_blob) + blob->len : 0);
    /* What the index and ghost take is not available to values. */
    uint64_t meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
    if (ssize == 0 || charge + meta > e->max_memory) {
        rc = STRATA_E2BIG;
        goto out;
    }
    if (ntags && tag_reg_acquire(e->tags, uniq, ntags, recs, vers) != 0) {
        ntags = 0;
        rc = STRATA_ENOMEM;
        goto out;
    }

    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    pthread_mutex_lock(&sh->lock);
    uint64_t now = enow(e);
    locked_reclaim(e, sh);
    uint32_t id = slab_alloc(&sh->slab, (uint32_t)isize);
    if (id == 0) {
        pthread_mutex_unlock(&sh->lock);
        rc = STRATA_ENOMEM;
        goto out;
    }
    struct item *it = item_at(sh, id);
    uint64_t x = expiry(e, o, now);
    it->prev = it->next = 0;
    it->exp_lo = (uint32_t)x;
    it->exp_hi = (uint8_t)(x >> 32);
    it->klen = (uint16_t)klen;
    it->flags = (uint8_t)(codec << 2 | (use_blob ? F_BLOB : 0));
    it->vlen = (uint16_t)(use_blob ? 0 : slen);
    atomic_init(&it->freq, FQ_LIVE);
    it->ntags = (uint8_t)ntags;
    memcpy(it->data, key, klen);
    if (use_blob) {
        memcpy(it->data + klen, &blob, sizeof blob);
        blob = NULL; /* the item owns that reference now */
    } else if (slen) {
        memcpy(it->data + klen, sv, slen);
    }
    unsigned char *tp = item_tags(it);
    for (size_t i = 0; i < ntags; i++) {
        memcpy(tp + 16 * i, &recs[i], sizeof recs[i]);
        memcpy(tp + 16 * i + 8, &vers[i], sizeof vers[i]);
    }
    ntags = 0; /* the item owns the tag references */
    charge = item_charge(sh, id, it);

    /* Find the key, remembering the first reusable slot. */
    locked_index_room(e, sh);
    struct index *xi = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint32_t pos = home(h, xi->n), fp = (uint32_t)(h >> 32);
    int64_t free_pos = -1;
    uint32_t old = 0;
    for (uint32_t i = 0; i < xi->n; i++) {
        uint64_t s = atomic_load_explicit(&xi->slot[pos], memory_order_relaxed);
        if (s == 0) {
            if (free_pos < 0)
                free_pos = pos;
            break;
        }
        if (s == TOMB) {
            if (free_pos < 0)
                free_pos = pos;
        } else if ((uint32_t)(s >> 32) == fp) {
            struct item *o2 = item_at(sh, (uint32_t)s);
            if (o2->klen == klen && memcmp(o2->data, key, klen) == 0) {
                old = (uint32_t)s;
                free_pos = pos;
                break;
            }
        }
        if (++pos == xi->n)
            pos = 0;
    }
    uint64_t slot = (uint64_t)fp << 32 | id;
    if (old) {
        /* Replace in place: readers see the old or the new item, never none. */
        struct item *oi = item_at(sh, old);
        uint8_t f = st_get(oi);
        uint8_t fq = f & FQ_MASK;
        atomic_init(&it->freq, (uint8_t)(FQ_LIVE | (f & FQ_INM) | (fq < 3 ? fq + 1 : 3)));
        atomic_store_explicit(&xi->slot[free_pos], slot, memory_order_release);
        locked_retire(e, sh, old, oi);
    } else {
        if (atomic_load_explicit(&xi->slot[free_pos], memory_order_relaxed) == TOMB)
            sh->tomb--;
        sh->used++;
        int g = locked_ghost_take(sh, h);
        if (g) {
            adapt(sh, g);
            atomic_init(&it->freq, FQ_LIVE | FQ_INM);
        }
        atomic_store_explicit(&xi->slot[free_pos], slot, memory_order_release);
    }
    q_push(sh, q_of(sh, it), id, it, charge);
    locked_charge(e, sh, (int64_t)charge, 1);
    locked_make_room(e, sh, now);
    pthread_mutex_unlock(&sh->lock);
    engine_count(e, ST_SETS, 1);

out:
    if (ntags) {
        tag_reg_unlive(e->tags, recs, ntags);
        tag_reg_release(e->tags, recs, ntags);
    }
    core_blob_release(blob);
    free(cbuf);
    free(owned);
    if (e && (rc == STRATA_ENOMEM || rc == STRATA_EBACKEND))
        engine_count(e, ST_ERRORS, 1);
    return rc;
}

int engine_set(engine *e, const void *key, size_t klen, const void *val, size_t vlen,
               const strata_set_opts *opts)
{
    return store(e, key, klen, val, vlen, NULL, NULL, opts);
}

int engine_set_take(engine *e, const void *key, size_t klen, void *val, size_t vlen,
                    const strata_set_opts *opts)
{
    return store(e, key, klen, val, vlen, NULL, val, opts);
}

int engine_set_blob(engine *e, const void *key, size_t klen, core_blob *b,
                    const strata_set_opts *opts)
{
    core_blob_ref(b);
    return store(e, key, klen, b->data, b->len, b, NULL, opts);
}

static int delete_key(engine *e, const void *key, size_t klen, bool count)
{
    if (e == NULL || !key_ok(key, klen))
        return STRATA_EINVAL;
    engine_flights_poison_key(e, key, klen);
    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    int rc = STRATA_MISS;
    uint32_t pos;
    pthread_mutex_lock(&sh->lock);
    uint32_t id = locked_find(sh, h, key, klen, &pos);
    if (id) {
        struct item *it = item_at(sh, id);
        rc = locked_dead(e, it, enow(e)) ? STRATA_MISS : STRATA_OK;
        locked_remove(e, sh, id, it, h, pos);
    }
    locked_reclaim(e, sh);
    pthread_mutex_unlock(&sh->lock);
    if (rc == STRATA_OK && count)
        engine_count(e, ST_DELETES, 1);
    return rc;
}

int engine_delete(engine *e, const void *key, size_t klen)
{
    return delete_key(e, key, klen, true);
}

void engine_remove_quiet(engine *e, const void *key, size_t klen)
{
    (void)delete_key(e, key, klen, false);
}

bool engine_tags_invalidated_since(engine *e, const char *const *tags, size_t n,
                                   uint64_t since)
{
    return tag_reg_invalidated_since(e->tags, tags, n, since);
}

/* ------------------------------------------------------ bulk invalidation */

typedef bool (*item_pred)(engine *e, struct item *it, uint64_t now, void *ud);

/* Remove every item of every shard matching pred, one shard lock at a time. */
static long remove_where(engine *e, item_pred pred, void *ud)
{
    long n = 0;
    for (unsigned i = 0; i < e->nshards; i++) {
        struct shard *sh = &e->shard[i];
        pthread_mutex_lock(&sh->lock);
        uint64_t now = enow(e);
        for (struct queue *q = &sh->s; q; q = q == &sh->s ? &sh->m : NULL) {
            uint32_t id = q->head;
            while (id) {
                struct item *it = item_at(sh, id);
                uint32_t next = it->next;
                if (pred(e, it, now, ud)) {
                    bool dead = locked_dead(e, it, now);
                    locked_remove(e, sh, id, it, item_hash(it), -1);
                    if (!dead)
                        n++;
                }
                id = next;
            }
        }
        locked_reclaim(e, sh);
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}

static bool match_glob(engine *e, struct item *it, uint64_t now, void *ud)
{
    (void)e;
    (void)now;
    const char *g = ud;
    return core_glob_match(g, strlen(g), it->data, it->klen);
}

static bool match_all(engine *e, struct item *it, uint64_t now, void *ud)
{
    (void)e;
    (void)it;
    (void)now;
    (void)ud;
    return true;
}

long engine_invalidate_pattern(engine *e, const char *glob)
{
    if (e == NULL || !core_glob_valid(glob))
        return STRATA_EINVAL;
    engine_flights_poison_glob(e, glob);
    long n = remove_where(e, match_glob, (void *)glob);
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return n;
}

long engine_invalidate_tags(engine *e, const char *const *tags, size_t ntags)
{
    if (e == NULL || (tags == NULL && ntags > 0))
        return STRATA_EINVAL;
    for (size_t i = 0; i < ntags; i++)
        if (!tag_name_valid(tags[i]))
            return STRATA_EINVAL;
    /* Each tag's count is exact (live entries carrying it); an entry carrying
     * several of the tags would be counted once per tag, so report the
     * largest count: a lower bound, as DESIGN asks of lazy removal. */
    long n = 0;
    for (size_t i = 0; i < ntags; i++) {
        long k = tag_reg_invalidate(e->tags, tags[i]);
        if (k > n)
            n = k;
    }
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return n;
}

int engine_clear(engine *e)
{
    if (e == NULL)
        return STRATA_EINVAL;
    engine_flights_poison_all(e);
    long n = remove_where(e, match_all, NULL);
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return STRATA_OK;
}

/* ------------------------------------------------------------- background */

long engine_sweep(engine *e, size_t budget)
{
    long n = 0;
    for (unsigned i = 0; i < e->nshards; i++) {
        struct shard *sh = &e->shard[i];
        pthread_mutex_lock(&sh->lock);
        uint64_t now = enow(e);
        struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
        uint32_t pos = sh->sweep_pos % x->n;
        for (size_t k = 0; k < budget && k < x->n; k++) {
            uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_relaxed);
            uint32_t id = (uint32_t)s;
            if (id) {
                struct item *it = item_at(sh, id);
                if (locked_dead(e, it, now)) {
                    locked_remove(e, sh, id, it, item_hash(it), pos);
                    n++;
                }
            }
            if (++pos == x->n)
                pos = 0;
        }
        sh->sweep_pos = pos;
        locked_reclaim(e, sh);
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}
