/*
 * tags.c -- per-cache tag records with versions: O(1) tag invalidation.
 *
 * Each tag that some live entry carries has one record: its name, a version
 * and a count of the entries that reference it. An entry stores, for each of
 * its tags, a pointer to the record and the version it saw at set time; a read
 * compares them (one atomic load per tag). Invalidating a tag gives it a new
 * version from one process-wide sequence that never goes back (seeded from the
 * wall clock), so entries set before the bump mismatch forever.
 *
 * A record lives while entries reference it and is freed with the last one,
 * so the registry never holds more records than live tagged entries need.
 * Entries release their records only after the epoch grace period, so a
 * lock-free reader may always dereference a record it reached from an entry.
 *
 * Locking: one mutex per registry; taken after a shard lock, never before.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <xxhash.h>

#include "core/tags.h"

struct tag_rec {
    _Atomic uint64_t version;
    uint64_t refs;  /* entries holding the record (live or awaiting reuse) */
    uint64_t live;  /* entries still stored */
    uint64_t inval; /* version given by the last invalidation, 0 = none */
    struct tag_rec *next;
    uint64_t hash;
    size_t len;
    char name[];
};

/* The last RECENT invalidations, records or not: a loader that started
 * before one of them must not cache a value carrying that tag, even when the
 * tag had no record (no entry) at the time. */
#define RECENT 256

struct tag_reg {
    pthread_mutex_t lock;
    struct tag_rec **b;
    size_t nb, n;
    struct {
        uint64_t hash, seq;
    } recent[RECENT];
    unsigned recent_pos;
    uint64_t forgotten; /* largest seq pushed out of `recent` */
};

static _Atomic uint64_t tag_seq;

static uint64_t next_version(void)
{
    uint64_t v = atomic_load_explicit(&tag_seq, memory_order_relaxed);
    if (v == 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        uint64_t seed = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
        uint64_t zero = 0;
        atomic_compare_exchange_strong(&tag_seq, &zero, seed << 8);
    }
    return atomic_fetch_add(&tag_seq, 1) + 1;
}

tag_reg *tag_reg_new(void)
{
    tag_reg *r = calloc(1, sizeof *r);
    if (r == NULL) return NULL;
    r->nb = 64;
    r->b = calloc(r->nb, sizeof *r->b);
    if (r->b == NULL) {
        free(r);
        return NULL;
    }
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

void tag_reg_free(tag_reg *r)
{
    if (r == NULL) return;
    for (size_t i = 0; i < r->nb; i++) {
        struct tag_rec *t = r->b[i], *n;
        for (; t; t = n) {
            n = t->next;
            free(t);
        }
    }
    free(r->b);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static struct tag_rec **locked_find(tag_reg *r, const char *name, size_t len,
                                    uint64_t h)
{
    struct tag_rec **pp = &r->b[h & (r->nb - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->len == len && !memcmp((*pp)->name, name, len))
            return pp;
    return pp;
}

static void locked_grow(tag_reg *r)
{
    size_t nb = r->nb * 2;
    struct tag_rec **b = calloc(nb, sizeof *b);
    if (b == NULL) return; /* keep the longer chains */
    for (size_t i = 0; i < r->nb; i++) {
        struct tag_rec *t = r->b[i], *n;
        for (; t; t = n) {
            n = t->next;
            t->next = b[t->hash & (nb - 1)];
            b[t->hash & (nb - 1)] = t;
        }
    }
    free(r->b);
    r->b = b;
    r->nb = nb;
}

int tag_reg_acquire(tag_reg *r, const char *const *names, size_t n, tag_rec **recs,
                    uint64_t *versions)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        uint64_t h = XXH3_64bits(names[i], len);
        struct tag_rec **pp = locked_find(r, names[i], len, h);
        struct tag_rec *t = *pp;
        if (t == NULL) {
            t = malloc(sizeof *t + len);
            if (t == NULL) {
                pthread_mutex_unlock(&r->lock);
                tag_reg_unlive(r, recs, i);
                tag_reg_release(r, recs, i);
                return -1;
            }
            atomic_init(&t->version, next_version());
            t->refs = 0;
            t->live = 0;
            t->inval = 0;
            t->next = NULL;
            t->hash = h;
            t->len = len;
            memcpy(t->name, names[i], len);
            *pp = t;
            if (++r->n > r->nb) locked_grow(r);
        }
        t->refs++;
        t->live++;
        recs[i] = t;
        versions[i] = atomic_load_explicit(&t->version, memory_order_acquire);
    }
    pthread_mutex_unlock(&r->lock);
    return 0;
}

void tag_reg_unlive(tag_reg *r, tag_rec *const *recs, size_t n)
{
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < n; i++)
        recs[i]->live--;
    pthread_mutex_unlock(&r->lock);
}

void tag_reg_release(tag_reg *r, tag_rec *const *recs, size_t n)
{
    if (n == 0) return;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < n; i++) {
        struct tag_rec *t = recs[i];
        if (--t->refs > 0) continue;
        struct tag_rec **pp = locked_find(r, t->name, t->len, t->hash);
        if (*pp == t) *pp = t->next;
        r->n--;
        free(t);
    }
    pthread_mutex_unlock(&r->lock);
}

long tag_reg_invalidate(tag_reg *r, const char *name)
{
    size_t len = strlen(name);
    uint64_t h = XXH3_64bits(name, len);
    long n = 0;
    pthread_mutex_lock(&r->lock);
    uint64_t v = next_version();
    struct tag_rec *t = *locked_find(r, name, len, h);
    if (t) {
        t->inval = v;
        atomic_store_explicit(&t->version, v, memory_order_release);
        n = (long)t->live;
    }
    unsigned i = r->recent_pos++ % RECENT;
    if (r->recent[i].seq > r->forgotten) r->forgotten = r->recent[i].seq;
    r->recent[i].hash = h;
    r->recent[i].seq = v;
    pthread_mutex_unlock(&r->lock);
    return n;
}

uint64_t tag_seq_now(void)
{
    uint64_t v = atomic_load(&tag_seq);
    return v ? v : next_version();
}

bool tag_reg_invalidated_since(tag_reg *r, const char *const *names, size_t n,
                               uint64_t since)
{
    pthread_mutex_lock(&r->lock);
    /* More invalidations than we remember since then: assume the worst. */
    bool hit = r->forgotten > since;
    for (size_t i = 0; i < n && !hit; i++) {
        size_t len = strlen(names[i]);
        uint64_t h = XXH3_64bits(names[i], len);
        struct tag_rec *t = *locked_find(r, names[i], len, h);
        hit = t && t->inval > since;
        for (unsigned k = 0; k < RECENT && !hit; k++)
            hit = r->recent[k].hash == h && r->recent[k].seq > since;
    }
    pthread_mutex_unlock(&r->lock);
    return hit;
}

bool tag_rec_current(const tag_rec *t, uint64_t version)
{
    return atomic_load_explicit(&((tag_rec *)t)->version, memory_order_acquire) ==
           version;
}

bool tag_name_valid(const char *name)
{
    if (name == NULL) return false;
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++, len++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == ',' || *p == '"' || *p == '\\')
            return false;
        if (len >= 256) return false;
    }
    return len >= 1;
}
