/*
 * shard.c -- the mechanics inside one shard: the index (tombstones, rebuilds),
 * the ghost, the S and M queues, retiring items to limbo and reclaiming them
 * once readers are gone, and eviction (adaptive S3-FIFO). Every function here
 * runs with the shard's lock held; shard.h describes the structures.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "core/shard.h"

#define RECLAIM_BATCH 64 /* retired items per epoch advance */

/* ----------------------------------------------------------------- index */

#define INDEX_MMAP_MIN (256u * 1024u)
#define HUGE_PAGE (2u << 20)

/* Large index arrays come straight from mmap, so a rebuild returns the old
 * array to the system instead of leaving it in malloc's free lists; in a
 * large cache they ask for huge pages (one TLB entry per 2 MB of index). */
struct index *shard_index_new(uint32_t n, bool huge)
{
    size_t sz = sizeof(struct index) + (size_t)n * sizeof(uint64_t);
    struct index *x;
    if (sz < INDEX_MMAP_MIN) {
        x = calloc(1, sz);
        if (x == NULL) return NULL;
    } else {
        size_t len = (sz + 4095) & ~(size_t)4095;
        x = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (x == MAP_FAILED) return NULL;
        if (huge && len >= HUGE_PAGE) (void)madvise(x, len, MADV_HUGEPAGE);
        x->mapped = 1;
    }
    x->n = n;
    return x;
}

void shard_index_free(struct index *x)
{
    if (x == NULL) return;
    if (x->mapped) {
        size_t sz = sizeof(struct index) + (size_t)x->n * sizeof(uint64_t);
        munmap(x, (sz + 4095) & ~(size_t)4095);
    } else {
        free(x);
    }
}

/* Charge (or refund, with sign) memory to the engine (the bounds are global). */
void engine_charge(engine *e, int64_t bytes, int64_t items)
{
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
        if (s == 0) return -1;
        if ((uint32_t)s == id) return pos;
        if (++pos == x->n) pos = 0;
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
        if (atomic_load_explicit(&x->slot[p], memory_order_relaxed) != TOMB) break;
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
        while (!ebr_safe(ep) && (ebr_try_advance(), !ebr_safe(ep)))
            ;
        shard_index_free(old);
        return;
    }
    r->idx = old;
    r->epoch = ebr_retire_epoch();
    r->next = sh->old_idx;
    sh->old_idx = r;
}

/* Rebuild the index at size n (dropping tombstones) and publish it. */
static int locked_rebuild(engine *e, struct shard *sh, uint32_t n)
{
    struct index *old = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    struct index *x = shard_index_new(n, e->huge);
    if (x == NULL) return -1;
    for (uint32_t i = 0; i < old->n; i++) {
        uint64_t s = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
        uint32_t id = (uint32_t)s;
        if (id == 0) continue;
        uint64_t h = item_hash(item_at(sh, id));
        uint32_t pos = home(h, n);
        while (atomic_load_explicit(&x->slot[pos], memory_order_relaxed) != 0)
            if (++pos == n) pos = 0;
        atomic_store_explicit(&x->slot[pos], s, memory_order_relaxed);
    }
    atomic_store_explicit(&sh->idx, x, memory_order_release);
    int64_t d = (int64_t)index_bytes(n) - (int64_t)index_bytes(old->n);
    engine_charge(e, d, 0);
    atomic_fetch_add(&e->meta, (uint64_t)d);
    sh->tomb = 0;
    locked_retire_index(sh, old);
    return 0;
}

static void ghost_resize(engine *e, struct shard *sh, uint32_t gn)
{
    uint16_t *g = calloc(gn, sizeof *g);
    if (g == NULL) return; /* keep the smaller ghost */
    /* Positions depend on the size: the old fingerprints cannot move, so the
     * ghost starts over (it grows geometrically, so this is rare). */
    int64_t d = (int64_t)ghost_bytes(gn) - (int64_t)ghost_bytes(sh->gn);
    free(sh->ghost);
    sh->ghost = g;
    sh->gn = gn;
    sh->g_s = sh->g_m = 0;
    engine_charge(e, d, 0);
    atomic_fetch_add(&e->meta, (uint64_t)d);
}

/* Keep (used + tombstones) <= 85% of the slots. */
int shard_locked_index_room(engine *e, struct shard *sh)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint64_t occ = (uint64_t)sh->used + sh->tomb + 1;
    if (occ * 100 <= (uint64_t)x->n * 85) return 0;
    uint32_t n = x->n, old_n = x->n;
    /* Grow by half when live entries pass 70% (linear probing slows down
     * sharply above that); below, dropping the tombstones is enough. A
     * count-bounded index is sized up front at 76% for its share of
     * max_items (memory per item matters there) and grows only past 80%. */
    unsigned grow_at = e->max_items ? 80 : 70;
    if ((uint64_t)(sh->used + 1) * 100 > (uint64_t)n * grow_at) n = n + n / 2 + 16;
    if (locked_rebuild(e, sh, n) == 0) {
        /* x may be gone already (retired, or freed when memory was short). */
        if (n != old_n) ghost_resize(e, sh, n / 2 | 1);
        return 0;
    }
    /* No memory for a new index: carry on while the old one still has a
     * free slot for this insert, else the insert must fail. */
    return occ < old_n ? 0 : -1;
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
    if (sh->gn == 0) return;
    uint16_t *g = &sh->ghost[ghost_pos(sh, h)];
    if (*g) (*g & 1u) ? sh->g_m-- : sh->g_s--;
    *g = ghost_fp(h, from_m);
    from_m ? sh->g_m++ : sh->g_s++;
}

/* 0: not in the ghost; 1: left S; 2: left M. The entry is consumed. */
int shard_locked_ghost_take(struct shard *sh, uint64_t h)
{
    if (sh->gn == 0) return 0;
    uint16_t *g = &sh->ghost[ghost_pos(sh, h)];
    if ((*g | 1u) != (ghost_fp(h, 0) | 1u)) return 0;
    int r = (*g & 1u) ? 2 : 1;
    r == 2 ? sh->g_m-- : sh->g_s--;
    *g = 0;
    return r;
}

/* ---------------------------------------------------------------- queues */

void shard_q_push(struct shard *sh, struct queue *q, uint32_t id, struct item *it,
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

/* Writer-side update of the state byte; a reader's concurrent frequency bump
 * makes the CAS retry, so neither update is lost. */
static void st_update(struct item *it, uint16_t clear, uint16_t set)
{
    uint16_t f = st_get(it);
    while (!atomic_compare_exchange_weak_explicit(
        &it->vst, &f, (uint16_t)((f & ~clear) | set), memory_order_relaxed,
        memory_order_relaxed))
        ;
}

/* ---------------------------------------------------------- item lifecycle */

void shard_item_free(engine *e, struct shard *sh, uint32_t id)
{
    struct item *it = item_at(sh, id);
    if (it->flags & F_BLOB) core_blob_release(item_blob(it));
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
void shard_locked_reclaim(engine *e, struct shard *sh, bool force)
{
    if (sh->limbo_head == 0 && sh->old_idx == NULL) return;
    uint64_t cur = ebr_retire_epoch();
    /* Advancing the epoch fences every reader: do it for a batch. */
    if (force || sh->limbo_n >= RECLAIM_BATCH || sh->old_idx) {
        uint32_t id = sh->limbo_head;
        uint64_t ep =
            id ? cur - (uint32_t)((uint32_t)cur - item_at(sh, id)->prev) : cur;
        if (!ebr_safe(ep) && ebr_try_advance()) ebr_try_advance();
    }
    while (sh->limbo_head) {
        uint32_t id = sh->limbo_head;
        struct item *it = item_at(sh, id);
        uint64_t ep = cur - (uint32_t)((uint32_t)cur - it->prev);
        if (!ebr_safe(ep)) break;
        sh->limbo_head = it->next;
        if (sh->limbo_head == 0) sh->limbo_tail = 0;
        sh->limbo_n--;
        shard_item_free(e, sh, id);
    }
    struct retired_index **pp = &sh->old_idx;
    while (*pp) {
        struct retired_index *r = *pp;
        if (ebr_safe(r->epoch)) {
            *pp = r->next;
            shard_index_free(r->idx);
            free(r);
        } else {
            pp = &r->next;
        }
    }
}

/* Take item `id` (already out of the index) off its queue, refund it, and
 * retire it: its tags stop counting it now, its memory is reused later. */
void shard_locked_retire(engine *e, struct shard *sh, uint32_t id, struct item *it)
{
    uint64_t charge = item_charge(sh, id, it);
    q_unlink(sh, q_of(sh, it), it, charge);
    st_update(it, VST_LIVE, 0);
    engine_charge(e, -(int64_t)charge, -1);
    if (item_exp(it) != EXP_NEVER || it->ntags) sh->mortal--;
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
void shard_locked_remove(engine *e, struct shard *sh, uint32_t id, struct item *it,
                         uint64_t h, int64_t pos)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    if (pos < 0) pos = locked_slot_of(x, h, id);
    if (pos >= 0) locked_index_clear(sh, x, (uint32_t)pos);
    sh->used--;
    shard_locked_retire(e, sh, id, it);
}

bool shard_mark_expired_seen(struct item *it)
{
    uint16_t old = atomic_fetch_or_explicit(&it->vst, VST_SEEN, memory_order_relaxed);
    return !(old & VST_SEEN);
}

/* Is the item dead (expired or invalidated by a tag)? Counts expiry once. */
bool shard_locked_dead(engine *e, struct item *it, uint64_t now)
{
    if (item_expired(it, now)) {
        if (shard_mark_expired_seen(it)) engine_count(e, ST_EXPIRED, 1);
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
void shard_adapt(struct shard *sh, int from)
{
    uint64_t titems = sh->s.items + sh->m.items;
    uint64_t step = SHARE_ONE / (titems ? titems : 1);
    if (from == 1 && sh->g_s && sh->g_m > sh->g_s) step *= sh->g_m / sh->g_s;
    if (from == 2 && sh->g_m && sh->g_s > sh->g_m) step *= sh->g_s / sh->g_m;
    if (step == 0) step = 1;
    if (step > SHARE_ONE) step = SHARE_ONE;
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
        if (titems == 0) return false;
        bool from_s;
        if (e->max_items)
            from_s = sh->s.items > 0 && (sh->m.items == 0 || sh->s.items * SHARE_ONE >
                                                                 titems * sh->s_share);
        else
            from_s = sh->s.items > 0 && (sh->m.items == 0 ||
                                         sh->s.bytes * SHARE_ONE > total * sh->s_share);
        struct queue *q = from_s ? &sh->s : &sh->m;
        uint32_t id = q->head;
        struct item *it = item_at(sh, id);
        uint64_t h = item_hash(it);
        if (shard_locked_dead(e, it, now)) {
            shard_locked_remove(e, sh, id, it, h, -1);
            return true;
        }
        unsigned f = fq_get(it);
        uint64_t charge = item_charge(sh, id, it);
        if (from_s) {
            if (f >= PROMOTE_FREQ) {
                q_unlink(sh, q, it, charge);
                fq_set(it, 0);
                st_update(it, 0, VST_INM);
                shard_q_push(sh, &sh->m, id, it, charge);
                continue;
            }
            locked_ghost_add(sh, h, 0);
        } else if (f) {
            q_unlink(sh, q, it, charge);
            fq_set(it, f - 1);
            shard_q_push(sh, q, id, it, charge);
            continue;
        } else {
            locked_ghost_add(sh, h, 1);
        }
        shard_locked_remove(e, sh, id, it, h, -1);
        engine_count(e, ST_EVICTIONS, 1);
        return true;
    }
}

void shard_locked_make_room(engine *e, struct shard *sh, uint64_t now)
{
    while (over_bounds(e) && locked_evict_one(e, sh, now))
        ;
    if (!over_bounds(e)) return;
    /* This shard is empty and the engine is still over (a large value, or
     * skew): take from the others, without waiting on their locks. */
    for (unsigned i = 0; i < e->nshards && over_bounds(e); i++) {
        struct shard *o = &e->shard[i];
        if (o == sh || pthread_mutex_trylock(&o->lock) != 0) continue;
        while (over_bounds(e) && locked_evict_one(e, o, now))
            ;
        shard_locked_reclaim(e, o, false);
        pthread_mutex_unlock(&o->lock);
    }
}
