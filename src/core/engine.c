/*
 * engine.c -- the memory engine's operations: open and close, get (lock-free),
 * set, delete, glob and tag invalidation, the background sweep, statistics.
 * The layout, the locking and the eviction policy are described in shard.h;
 * the work done under a shard's lock is in shard.c.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/shard.h"

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

/* ----------------------------------------------------------------- stats */

/* Threads with one of the first STRIPES slots own a stripe and update it
 * with a plain load and store (no locked instruction on a hit); every later
 * thread shares the last stripe and adds atomically. */
void engine_count(engine *e, enum engine_stat st, uint64_t n)
{
    unsigned slot = ebr_rec()->slot;
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

/* ----------------------------------------------------------- construction */

#define HUGE_CACHE ((uint64_t)1 << 30)

/* Shards exist for write concurrency: four per CPU keep two writers from
 * meeting on a lock most of the time. More only spread a cache's items and
 * indexes over more memory (slower reads), and a small cache keeps one
 * eviction order: about one shard per 8k items. */
static unsigned pick_shards(const engine_conf *c)
{
    if (c->shards) return c->shards;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned lim = 4;
    while (lim < MAX_SHARDS && lim < 4 * (unsigned)(cpus > 0 ? cpus : 1))
        lim *= 2;
    uint64_t cap = c->max_items ? c->max_items : c->max_memory / 256;
    unsigned n = 1;
    while (n < lim && (uint64_t)n * 2 * 4096 <= cap)
        n *= 2;
    return n;
}

engine *engine_new(const engine_conf *c)
{
    if (c == NULL || c->max_memory == 0) return NULL;
    unsigned ns = pick_shards(c);
    if (ns == 0 || (ns & (ns - 1)) || ns > MAX_SHARDS) return NULL;
    engine *e = aligned_alloc(64, (sizeof *e + ns * sizeof(struct shard) + 63) & ~63ul);
    if (e == NULL) return NULL;
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
    /* A cache this large spends its reads on TLB misses unless its items and
     * index sit on huge pages; it can afford their 2 MB granularity. */
    e->huge = c->max_memory >= HUGE_CACHE;
    e->base = core_clock_now(c->clock);
    e->name = strdup(c->name ? c->name : "");
    e->tags = tag_reg_new();
    e->flights = flights_new();
    if (e->name == NULL || e->tags == NULL || e->flights == NULL) goto fail;
    /* A count-bounded cache sizes each shard's index for its share of
     * max_items at ~76% load, so it never grows; no more than max_memory
     * could hold, though (a tiny item and its slot take 32 bytes), or the
     * index alone would leave no room for values. A byte-bounded cache
     * starts small and grows its index with its data, so a cache far from
     * full keeps a compact, cache-friendly index. */
    uint64_t per = e->max_items ? e->max_items / ns + 1 : 16;
    uint64_t per_mem = c->max_memory / ns / 32;
    if (per > per_mem) per = per_mem > 16 ? per_mem : 16;
    /* Keys spread over shards binomially: three standard deviations of
     * slack keep a shard from outgrowing its index. */
    per += 3 * (uint64_t)sqrt((double)per) + 8;
    uint64_t n = per * 5 / 4 + 16;
    if (n > UINT32_MAX / 2) n = UINT32_MAX / 2;
    for (unsigned i = 0; i < ns; i++) {
        struct shard *sh = &e->shard[i];
        pthread_mutex_init(&sh->lock, NULL);
        sh->s_share = S_SHARE_INIT;
        /* Room for the whole cache in any one shard (the bounds are global)
         * plus partly carved pages of every size class. */
        if (slab_init(&sh->slab, c->max_memory + 256u * SLAB_PAGE_SIZE, e->huge) != 0)
            goto fail;
        struct index *x = shard_index_new((uint32_t)n, e->huge);
        if (x == NULL) goto fail;
        atomic_store(&sh->idx, x);
        sh->gn = (uint32_t)(n / 2) | 1; /* ~0.65 x capacity, 2 bytes each */
        sh->ghost = calloc(sh->gn, sizeof *sh->ghost);
        if (sh->ghost == NULL) goto fail;
        uint64_t meta = index_bytes((uint32_t)n) + ghost_bytes(sh->gn);
        engine_charge(e, (int64_t)meta, 0);
        atomic_fetch_add(&e->meta, meta);
    }
    return e;
fail:
    engine_free(e);
    return NULL;
}

void engine_free(engine *e)
{
    if (e == NULL) return;
    for (unsigned i = 0; i < e->nshards; i++) {
        struct shard *sh = &e->shard[i];
        if (sh->slab.base == NULL) continue;
        /* Live items, then limbo: release what they hold. */
        for (struct queue *q = &sh->s; q; q = q == &sh->s ? &sh->m : NULL) {
            uint32_t id = q->head;
            while (id) {
                uint32_t next = item_at(sh, id)->next;
                shard_item_free(e, sh, id);
                id = next;
            }
        }
        for (uint32_t id = sh->limbo_head; id;) {
            uint32_t next = item_at(sh, id)->next;
            shard_item_free(e, sh, id);
            id = next;
        }
        while (sh->old_idx) {
            struct retired_index *r = sh->old_idx;
            sh->old_idx = r->next;
            shard_index_free(r->idx);
            free(r);
        }
        shard_index_free(atomic_load(&sh->idx));
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

/* Copy the value of a live item out to a new handle (inside the epoch):
 * blobs and compressed values, off the hot path. */
__attribute__((noinline, cold)) static int copy_out_slow(struct item *it, size_t klen,
                                                         strata_value **out)
{
    unsigned codec = (it->flags & F_CODEC) >> 2;
    const unsigned char *src;
    size_t slen;
    if (it->flags & F_BLOB) {
        core_blob *b = item_blob(it);
        if (codec == CORE_CODEC_NONE) {
            *out = core_value_blob(b);
            return *out ? 0 : STRATA_ENOMEM;
        }
        src = b->data;
        slen = b->len;
    } else {
        src = it->data + klen;
        slen = item_vlen(it);
    }
    if (codec == CORE_CODEC_NONE) {
        *out = core_value_copy(src, slen);
        return *out ? 0 : STRATA_ENOMEM;
    }
    size_t olen = core_compressed_len(src, slen);
    *out = core_value_alloc(olen);
    if (*out == NULL) return STRATA_ENOMEM;
    if (core_decompress(codec, src, slen, (*out)->inline_buf, olen) != 0) {
        strata_value_release(*out);
        *out = NULL;
        return STRATA_EBACKEND;
    }
    return 0;
}

static inline int copy_out(struct item *it, size_t klen, strata_value **out)
{
    if (__builtin_expect((it->flags & (F_BLOB | F_CODEC)) == 0, 1)) {
        *out = core_value_copy(it->data + klen, item_vlen(it));
        return *out ? 0 : STRATA_ENOMEM;
    }
    return copy_out_slow(it, klen, out);
}

/* The lock-free read: probe, compare, check expiry (reading the clock only
 * for an entry that has one) and tags, bump the frequency, copy out. */
static enum found lookup(engine *e, struct shard *sh, uint64_t h, const void *key,
                         size_t klen, strata_value **out, int *err, struct ebr_rec *rec)
{
    enum found r = F_NONE;
    ebr_enter_rec(rec);
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_acquire);
    uint32_t n = x->n, pos = home(h, n), fp = (uint32_t)(h >> 32);
    struct item *it = NULL;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_acquire);
        if (s == 0) break;
        if ((uint32_t)(s >> 32) == fp && (uint32_t)s) {
            struct item *c = item_at(sh, (uint32_t)s);
            /* An item may straddle two lines (slots are 4-byte aligned):
             * start the second line's fetch with the first's. */
            __builtin_prefetch((const char *)c + 64);
            if (c->klen == klen && key_eq(c->data, key, klen)) {
                it = c;
                break;
            }
        }
        if (++pos == n) pos = 0;
    }
    if (it) {
        uint64_t exp = item_exp(it);
        if (exp != EXP_NEVER && enow(e) >= exp) {
            if (shard_mark_expired_seen(it)) engine_count(e, ST_EXPIRED, 1);
            r = F_DEAD;
        } else if (it->ntags && !item_tags_current(it)) {
            r = F_DEAD;
        } else {
            unsigned f = fq_get(it);
            if (f < FQ_MAX)
                fq_set(it, f + 1); /* no store once hot: lines stay shared */
            *err = copy_out(it, klen, out);
            r = F_HIT;
        }
    }
    ebr_exit(rec);
    return r;
}

/* engine_count for a thread whose epoch record is at hand (the read path). */
static inline void count_rec(engine *e, struct ebr_rec *rec, enum engine_stat st)
{
    if (__builtin_expect(rec->slot < STRIPES, 1)) {
        _Atomic uint64_t *c = &e->stripes[rec->slot].c[st];
        atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&e->stripes[STRIPES].c[st], 1, memory_order_relaxed);
    }
}

/* Find `key` in the shard under its lock: its item id and slot, or 0. */
static uint32_t locked_find(struct shard *sh, uint64_t h, const void *key, size_t klen,
                            uint32_t *slot_pos)
{
    struct index *x = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint32_t pos = home(h, x->n), fp = (uint32_t)(h >> 32);
    for (uint32_t i = 0; i < x->n; i++) {
        uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_relaxed);
        if (s == 0) break;
        if (s != TOMB && (uint32_t)(s >> 32) == fp) {
            struct item *it = item_at(sh, (uint32_t)s);
            if (it->klen == klen && key_eq(it->data, key, klen)) {
                *slot_pos = pos;
                return (uint32_t)s;
            }
        }
        if (++pos == x->n) pos = 0;
    }
    return 0;
}

/* Remove the dead entry a reader found for `key`, if it is still dead. */
static void drop_dead(engine *e, struct shard *sh, uint64_t h, const void *key,
                      size_t klen)
{
    uint32_t pos;
    pthread_mutex_lock(&sh->lock);
    uint32_t id = locked_find(sh, h, key, klen, &pos);
    if (id) {
        struct item *it = item_at(sh, id);
        if (shard_locked_dead(e, it, enow(e)))
            shard_locked_remove(e, sh, id, it, h, pos);
    }
    shard_locked_reclaim(e, sh, false);
    pthread_mutex_unlock(&sh->lock);
}

static bool key_ok(const void *key, size_t klen)
{
    return key != NULL && klen >= 1 && klen <= ENGINE_KEY_MAX;
}

int engine_lookup(engine *e, const void *key, size_t klen, strata_value **out,
                  bool count)
{
    if (out) *out = NULL;
    if (e == NULL || !key_ok(key, klen) || out == NULL) return STRATA_EINVAL;
    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    int err = 0;
    struct ebr_rec *rec = ebr_rec();
    enum found f = lookup(e, sh, h, key, klen, out, &err, rec);
    if (__builtin_expect(f == F_HIT && !err, 1)) {
        if (count) count_rec(e, rec, ST_HITS);
        return STRATA_OK;
    }
    if (err) {
        if (count) count_rec(e, rec, ST_ERRORS);
        return err;
    }
    if (f == F_DEAD) drop_dead(e, sh, h, key, klen);
    if (count) count_rec(e, rec, ST_MISSES);
    return STRATA_MISS;
}

int engine_get(engine *e, const void *key, size_t klen, strata_value **out)
{
    return engine_lookup(e, key, klen, out, true);
}

/* ----------------------------------------------------------------- writes */

bool engine_valid_tags(const strata_set_opts *o)
{
    if (o == NULL || o->ntags == 0) return true;
    if (o->tags == NULL || o->ntags > ENGINE_TAGS_MAX) return false;
    for (size_t i = 0; i < o->ntags; i++)
        if (!tag_name_valid(o->tags[i])) return false;
    return true;
}

static uint64_t expiry(engine *e, const strata_set_opts *o, uint64_t now)
{
    int64_t ttl = o ? o->ttl_ms : 0;
    if (ttl == 0) ttl = e->ttl_ms;
    if (ttl <= 0) return EXP_NEVER;
    uint64_t x = now + (uint64_t)ttl;
    /* Beyond 40 bits of ms (34 years from the cache's start) is never. */
    return x >= EXP_NEVER || x < now ? EXP_NEVER : x;
}

/* Undo an item built under the shard lock but never published. */
static void locked_unbuild(engine *e, struct shard *sh, uint32_t id, struct item *it)
{
    if (it->ntags) {
        tag_rec *recs[ENGINE_TAGS_MAX];
        unsigned char *p = item_tags(it);
        for (unsigned i = 0; i < it->ntags; i++)
            memcpy(&recs[i], p + 16 * i, sizeof recs[i]);
        tag_reg_unlive(e->tags, recs, it->ntags);
    }
    shard_item_free(e, sh, id);
}

/* Store: `val` is copied unless `blob` (a reference the callee takes) is given;
 * `veto` (may be NULL) can cancel the store at the last moment. */
static int store(engine *e, const void *key, size_t klen, const void *val, size_t vlen,
                 core_blob *blob, const strata_set_opts *o, const engine_veto *veto)
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
    /* Tags, each once. (ntags counts only references actually acquired: the
     * exit path gives those back.) */
    const char *uniq[ENGINE_TAGS_MAX];
    size_t nuniq = 0;
    for (size_t i = 0; o && i < o->ntags; i++) {
        size_t j = 0;
        while (j < nuniq && strcmp(uniq[j], o->tags[i]) != 0)
            j++;
        if (j == nuniq) uniq[nuniq++] = o->tags[i];
    }
    size_t isize = sizeof(struct item) + klen +
                   (use_blob ? sizeof(core_blob *) : slen) + nuniq * 16;
    uint32_t ssize = slab_size_for((uint32_t)(isize > UINT32_MAX ? 0 : isize));
    uint64_t charge = ssize + (use_blob ? sizeof(core_blob) + blob->len : 0);
    /* What the index and ghost take is not available to values. */
    uint64_t meta = atomic_load_explicit(&e->meta, memory_order_relaxed);
    if (ssize == 0 || charge + meta > e->max_memory) {
        rc = STRATA_E2BIG;
        goto out;
    }
    if (nuniq && tag_reg_acquire(e->tags, uniq, nuniq, recs, vers) != 0) {
        rc = STRATA_ENOMEM;
        goto out;
    }
    ntags = nuniq;

    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    pthread_mutex_lock(&sh->lock);
    uint64_t now = enow(e);
    shard_locked_reclaim(e, sh, false);
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
    atomic_init(&it->vst, (uint16_t)(VST_LIVE | (use_blob ? 0 : slen)));
    atomic_init(&it->freq, 0);
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
    if (shard_locked_index_room(e, sh) != 0) {
        locked_unbuild(e, sh, id, it);
        pthread_mutex_unlock(&sh->lock);
        rc = STRATA_ENOMEM;
        goto out;
    }
    struct index *xi = atomic_load_explicit(&sh->idx, memory_order_relaxed);
    uint32_t pos = home(h, xi->n), fp = (uint32_t)(h >> 32);
    int64_t free_pos = -1;
    uint32_t old = 0;
    for (uint32_t i = 0; i < xi->n; i++) {
        uint64_t s = atomic_load_explicit(&xi->slot[pos], memory_order_relaxed);
        if (s == 0) {
            if (free_pos < 0) free_pos = pos;
            break;
        }
        if (s == TOMB) {
            if (free_pos < 0) free_pos = pos;
        } else if ((uint32_t)(s >> 32) == fp) {
            struct item *o2 = item_at(sh, (uint32_t)s);
            if (o2->klen == klen && key_eq(o2->data, key, klen)) {
                old = (uint32_t)s;
                free_pos = pos;
                break;
            }
        }
        if (++pos == xi->n) pos = 0;
    }
    /* The veto runs under the lock: an invalidation that poisons before it
     * is seen here, one that poisons after it removes what we publish. */
    if (free_pos < 0 || (veto && veto->fn(veto->ud))) {
        locked_unbuild(e, sh, id, it);
        pthread_mutex_unlock(&sh->lock);
        rc = free_pos < 0 ? STRATA_ENOMEM : STRATA_MISS;
        goto out;
    }
    uint64_t slot = (uint64_t)fp << 32 | id;
    if (old) {
        /* Replace in place: readers see the old or the new item, never none. */
        struct item *oi = item_at(sh, old);
        unsigned fq = fq_get(oi);
        atomic_init(&it->freq, (uint8_t)(fq < FQ_MAX ? fq + 1 : FQ_MAX));
        atomic_init(&it->vst,
                    (uint16_t)(atomic_load_explicit(&it->vst, memory_order_relaxed) |
                               (st_get(oi) & VST_INM)));
        atomic_store_explicit(&xi->slot[free_pos], slot, memory_order_release);
        shard_locked_retire(e, sh, old, oi);
    } else {
        if (atomic_load_explicit(&xi->slot[free_pos], memory_order_relaxed) == TOMB)
            sh->tomb--;
        sh->used++;
        int g = shard_locked_ghost_take(sh, h);
        if (g) {
            shard_adapt(sh, g);
            atomic_init(&it->vst, (uint16_t)(atomic_load_explicit(
                                                 &it->vst, memory_order_relaxed) |
                                             VST_INM));
        }
        atomic_store_explicit(&xi->slot[free_pos], slot, memory_order_release);
    }
    shard_q_push(sh, q_of(sh, it), id, it, charge);
    if (item_exp(it) != EXP_NEVER || it->ntags) sh->mortal++;
    engine_charge(e, (int64_t)charge, 1);
    shard_locked_make_room(e, sh, now);
    pthread_mutex_unlock(&sh->lock);
    engine_count(e, ST_SETS, 1);

out:
    if (ntags) {
        tag_reg_unlive(e->tags, recs, ntags);
        tag_reg_release(e->tags, recs, ntags);
    }
    core_blob_release(blob);
    free(cbuf);
    if (e && (rc == STRATA_ENOMEM || rc == STRATA_EBACKEND))
        engine_count(e, ST_ERRORS, 1);
    return rc;
}

int engine_set(engine *e, const void *key, size_t klen, const void *val, size_t vlen,
               const strata_set_opts *opts)
{
    return store(e, key, klen, val, vlen, NULL, opts, NULL);
}

int engine_set_blob(engine *e, const void *key, size_t klen, core_blob *b,
                    const strata_set_opts *opts, const engine_veto *veto)
{
    core_blob_ref(b);
    return store(e, key, klen, b->data, b->len, b, opts, veto);
}

static int delete_key(engine *e, const void *key, size_t klen, bool count)
{
    if (e == NULL || !key_ok(key, klen)) return STRATA_EINVAL;
    engine_flights_poison_key(e, key, klen);
    uint64_t h = hash_key(key, klen);
    struct shard *sh = shard_of(e, h);
    int rc = STRATA_MISS;
    uint32_t pos;
    pthread_mutex_lock(&sh->lock);
    uint32_t id = locked_find(sh, h, key, klen, &pos);
    if (id) {
        struct item *it = item_at(sh, id);
        rc = shard_locked_dead(e, it, enow(e)) ? STRATA_MISS : STRATA_OK;
        shard_locked_remove(e, sh, id, it, h, pos);
    }
    shard_locked_reclaim(e, sh, false);
    pthread_mutex_unlock(&sh->lock);
    if (rc == STRATA_OK && count) engine_count(e, ST_DELETES, 1);
    return rc;
}

int engine_delete(engine *e, const void *key, size_t klen)
{
    return delete_key(e, key, klen, true);
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
                    bool dead = shard_locked_dead(e, it, now);
                    shard_locked_remove(e, sh, id, it, item_hash(it), -1);
                    if (!dead) n++;
                }
                id = next;
            }
        }
        shard_locked_reclaim(e, sh, false);
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
    if (e == NULL || !core_glob_valid(glob)) return STRATA_EINVAL;
    engine_flights_poison_glob(e, glob);
    long n = remove_where(e, match_glob, (void *)glob);
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return n;
}

long engine_invalidate_tags(engine *e, const char *const *tags, size_t ntags)
{
    if (e == NULL || (tags == NULL && ntags > 0)) return STRATA_EINVAL;
    for (size_t i = 0; i < ntags; i++)
        if (!tag_name_valid(tags[i])) return STRATA_EINVAL;
    /* Each tag's count is exact (live entries carrying it); an entry carrying
     * several of the tags would be counted once per tag, so report the
     * largest count: a lower bound, as DESIGN asks of lazy removal. */
    long n = 0;
    for (size_t i = 0; i < ntags; i++) {
        long k = tag_reg_invalidate(e->tags, tags[i]);
        if (k > n) n = k;
    }
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return n;
}

struct key_pred {
    engine_key_pred fn;
    void *ud;
};

static bool match_key(engine *e, struct item *it, uint64_t now, void *ud)
{
    (void)e;
    (void)now;
    struct key_pred *kp = ud;
    return kp->fn(it->data, it->klen, kp->ud);
}

long engine_invalidate_where(engine *e, engine_key_pred match, void *ud)
{
    if (e == NULL || match == NULL) return STRATA_EINVAL;
    struct key_pred kp = {match, ud};
    long n = remove_where(e, match_key, &kp);
    engine_count(e, ST_INVALIDATED, (uint64_t)n);
    return n;
}

int engine_clear(engine *e)
{
    if (e == NULL) return STRATA_EINVAL;
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
        /* Nothing here can expire or be invalidated by a tag: reading every
         * item header would only push useful lines out of the CPU caches. */
        size_t todo = sh->mortal ? budget : 0;
        for (size_t k = 0; k < todo && k < x->n; k++) {
            uint64_t s = atomic_load_explicit(&x->slot[pos], memory_order_relaxed);
            uint32_t id = (uint32_t)s;
            if (id) {
                struct item *it = item_at(sh, id);
                if (shard_locked_dead(e, it, now)) {
                    shard_locked_remove(e, sh, id, it, item_hash(it), pos);
                    n++;
                }
            }
            if (++pos == x->n) pos = 0;
        }
        sh->sweep_pos = pos;
        shard_locked_reclaim(e, sh, true);
        pthread_mutex_unlock(&sh->lock);
    }
    return n;
}
