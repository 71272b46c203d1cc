/*
 * flight.c -- single flight for get_or_set: one loader per key.
 *
 * The first caller that misses a key opens a flight and runs the loader
 * outside every lock; callers that miss the same key while it runs join the
 * flight and sleep on its condition variable (at most loader_timeout). When
 * the loader returns, its caller stores the value, records the outcome in the
 * flight and wakes every waiter: they all get the same value (a shared blob,
 * no copy) or the same error. A loader error caches nothing.
 *
 *   open (refs 1, owner) --join--> refs n --done--> waiters wake, refs drop
 *                                                   last one frees it
 *
 * The flight leaves the table when its loader finishes, so a later miss starts
 * a new flight.
 *
 * An invalidation that lands while a loader runs (a delete of the key, a
 * matching glob, a clear, or a tag the value turns out to carry) may have
 * been meant for exactly the data the loader is reading, so its value must
 * not stay cached. Invalidations poison the matching flights before they
 * remove entries (under the shard locks); the loader's store checks for
 * poison, and for its tags' invalidation since the load started, under the
 * shard lock just before it publishes, and stores nothing if either
 * happened. If the check comes first, the invalidation's removal follows and
 * removes the value; if the poison comes first, the check sees it. No get
 * that starts after the invalidation returned sees the value. The callers still get the
 * value: they asked before the invalidation. A loader that calls get_or_set on its own
 * key would wait on itself forever: that is refused with STRATA_EINVAL.
 *
 * Locking: one mutex per engine guards the table and every flight's fields.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#include "core/core.h"
#include "core/tags.h"

#define NBUCKETS 64

struct flight {
    struct flight *next;
    uint64_t hash;
    size_t klen;
    pthread_t owner;
    pthread_cond_t cond;
    unsigned refs;
    long waiters;
    bool done;
    _Atomic bool poisoned; /* set under the table lock, read under a shard lock */
    int err;
    core_blob *blob;
    unsigned char key[];
};

struct flights {
    pthread_mutex_t lock;
    struct flight *b[NBUCKETS];
};

struct flights *flights_new(void)
{
    struct flights *f = calloc(1, sizeof *f);
    if (f) pthread_mutex_init(&f->lock, NULL);
    return f;
}

void flights_free(struct flights *f)
{
    if (f == NULL) return;
    pthread_mutex_destroy(&f->lock);
    free(f);
}

static struct flight **locked_find(struct flights *fs, uint64_t h, const void *key,
                                   size_t klen)
{
    struct flight **pp = &fs->b[h % NBUCKETS];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen))
            break;
    return pp;
}

static void locked_unref(struct flight *f)
{
    if (--f->refs > 0) return;
    core_blob_release(f->blob);
    pthread_cond_destroy(&f->cond);
    free(f);
}

static void deadline_after(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Wait for flight f (lock held, f referenced by us). */
static int locked_wait(engine *e, struct flights *fs, struct flight *f,
                       strata_value **out)
{
    struct timespec dl;
    deadline_after(&dl, engine_loader_timeout_ms(e));
    f->waiters++;
    int rc = 0;
    while (!f->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&f->cond, &fs->lock, &dl);
    f->waiters--;
    int r;
    if (!f->done) {
        r = STRATA_ETIMEDOUT;
    } else if (f->err < 0) {
        r = f->err;
    } else {
        *out = core_value_blob(f->blob);
        r = *out ? STRATA_LOADED : STRATA_ENOMEM;
    }
    locked_unref(f);
    return r;
}

struct veto_ctx {
    engine *e;
    struct flight *f;
    uint64_t since;
    const strata_set_opts *lo;
};

/* Called by the store under the shard lock, just before it publishes. */
static bool vetoed(void *ud)
{
    struct veto_ctx *v = ud;
    if (atomic_load(&v->f->poisoned)) return true;
    return v->lo->ntags &&
           engine_tags_invalidated_since(v->e, v->lo->tags, v->lo->ntags, v->since);
}

int engine_get_or_set(engine *e, const void *key, size_t klen, strata_loader load,
                      void *ud, const strata_set_opts *opts, strata_value **out)
{
    if (out) *out = NULL;
    if (e == NULL || load == NULL || out == NULL || key == NULL || klen == 0 ||
        klen > ENGINE_KEY_MAX)
        return STRATA_EINVAL;
    int r = engine_get(e, key, klen, out);
    if (r != STRATA_MISS) return r;

    struct flights *fs = engine_flights(e);
    uint64_t h = XXH3_64bits(key, klen);
    pthread_mutex_lock(&fs->lock);
    struct flight **pp = locked_find(fs, h, key, klen);
    struct flight *f = *pp;
    if (f) {
        if (pthread_equal(f->owner, pthread_self())) {
            pthread_mutex_unlock(&fs->lock);
            return STRATA_EINVAL; /* the loader asked for its own key */
        }
        f->refs++;
        r = locked_wait(e, fs, f, out);
        pthread_mutex_unlock(&fs->lock);
        return r;
    }
    f = calloc(1, sizeof *f + klen);
    if (f == NULL) {
        pthread_mutex_unlock(&fs->lock);
        return STRATA_ENOMEM;
    }
    f->hash = h;
    f->klen = klen;
    memcpy(f->key, key, klen);
    f->owner = pthread_self();
    f->refs = 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    *pp = f;
    uint64_t since = tag_seq_now();
    pthread_mutex_unlock(&fs->lock);

    /* A flight that finished between our miss and our lock stored the value:
     * look again before loading (not counted: the miss was). */
    core_blob *blob = NULL;
    strata_set_opts lo = opts ? *opts : (strata_set_opts){0};
    r = engine_lookup(e, key, klen, out, false);
    if (r == STRATA_OK) {
        blob = core_blob_new(strata_value_data(*out), strata_value_len(*out));
        if (blob == NULL) {
            strata_value_release(*out);
            *out = NULL;
            r = STRATA_ENOMEM;
        }
    } else {
        void *val = NULL;
        size_t vlen = 0;
        int lr = load(ud, key, klen, &val, &vlen, &lo);
        if (lr < 0 || (val == NULL && vlen > 0)) {
            free(val);
            r = STRATA_ELOADER;
        } else {
            blob = val ? core_blob_take(val, vlen) : core_blob_new(NULL, 0);
            if (blob == NULL) {
                r = STRATA_ENOMEM;
            } else {
                /* A value too large to keep, tags it cannot store, or a
                 * value an invalidation overtook (veto) is still the answer
                 * to this call; it is just not cached. */
                struct veto_ctx vc = {e, f, since, &lo};
                engine_veto veto = {vetoed, &vc};
                (void)engine_set_blob(e, key, klen, blob, &lo, &veto);
                *out = core_value_blob(blob);
                r = *out ? STRATA_LOADED : STRATA_ENOMEM;
            }
        }
    }

    pthread_mutex_lock(&fs->lock);
    f->done = true;
    f->err = r < 0 ? r : 0;
    f->blob = r < 0 ? NULL : blob;
    blob = r < 0 ? blob : NULL;
    *locked_find(fs, h, key, klen) = f->next;
    pthread_cond_broadcast(&f->cond);
    locked_unref(f);
    pthread_mutex_unlock(&fs->lock);
    core_blob_release(blob);
    return r;
}

typedef bool (*flight_pred)(const struct flight *f, const void *ud);

static void poison_where(engine *e, flight_pred pred, const void *ud)
{
    struct flights *fs = engine_flights(e);
    pthread_mutex_lock(&fs->lock);
    for (size_t i = 0; i < NBUCKETS; i++)
        for (struct flight *f = fs->b[i]; f; f = f->next)
            if (pred(f, ud)) atomic_store(&f->poisoned, true);
    pthread_mutex_unlock(&fs->lock);
}

struct keyref {
    const void *key;
    size_t klen;
};

static bool is_key(const struct flight *f, const void *ud)
{
    const struct keyref *k = ud;
    return f->klen == k->klen && memcmp(f->key, k->key, k->klen) == 0;
}

static bool is_glob(const struct flight *f, const void *ud)
{
    return core_glob_match(ud, strlen(ud), f->key, f->klen);
}

static bool is_any(const struct flight *f, const void *ud)
{
    (void)f;
    (void)ud;
    return true;
}

void engine_flights_poison_key(engine *e, const void *key, size_t klen)
{
    struct keyref k = {key, klen};
    poison_where(e, is_key, &k);
}

void engine_flights_poison_glob(engine *e, const char *glob)
{
    poison_where(e, is_glob, glob);
}

void engine_flights_poison_all(engine *e)
{
    poison_where(e, is_any, NULL);
}

long engine_flight_waiters(engine *e, const void *key, size_t klen)
{
    struct flights *fs = engine_flights(e);
    uint64_t h = XXH3_64bits(key, klen);
    pthread_mutex_lock(&fs->lock);
    struct flight *f = *locked_find(fs, h, key, klen);
    long n = f ? f->waiters : -1;
    pthread_mutex_unlock(&fs->lock);
    return n;
}
