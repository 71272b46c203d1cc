/*
 * value.c -- value handles and shared blobs.
 *
 * A strata_value is what a lookup gives the caller. Small values are copied
 * into the handle (a hit then writes nothing shared); large ones point into a
 * refcounted core_blob that the entry and every handle share, so a handle
 * stays valid after its entry is gone.
 *
 * Handles of small values are recycled through a short per-thread free list,
 * so a hit costs no malloc. The list is freed when its thread exits.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

#define BLOB_MAGIC 0x626c6f62u /* "blob" */
#define SMALL_CAP ENGINE_INLINE_MAX

/* In the thread's static TLS block: one instruction away, no NULL check. */
__thread struct core_vcache core_vc __attribute__((tls_model("initial-exec")));
#define tls_vc core_vc
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_gone(void *p)
{
    struct core_vcache *c = p;
    for (unsigned i = 0; i < c->n; i++)
        free(c->v[i]);
    c->n = 0;
    c->registered = false; /* a later push registers again */
}

static void make_key(void)
{
    (void)pthread_key_create(&cache_key, cache_gone);
}

static strata_value *value_malloc(size_t len)
{
    size_t cap = len <= SMALL_CAP ? SMALL_CAP : len;
    strata_value *v = malloc(sizeof *v + cap);
    if (v) v->cap = cap;
    return v;
}

strata_value *core_value_alloc(size_t len)
{
    strata_value *v;
    if (len <= SMALL_CAP && tls_vc.n > 0)
        v = tls_vc.v[--tls_vc.n];
    else if ((v = value_malloc(len)) == NULL)
        return NULL;
    v->data = v->inline_buf;
    v->len = len;
    v->blob = NULL;
    return v;
}

strata_value *core_value_copy_slow(const void *data, size_t len)
{
    strata_value *v = core_value_alloc(len);
    if (v == NULL) return NULL;
    if (len <= 64)
        core_copy_small(v->inline_buf, data, len);
    else
        memcpy(v->inline_buf, data, len);
    return v;
}

strata_value *core_value_blob(core_blob *b)
{
    strata_value *v = malloc(sizeof *v);
    if (v == NULL) return NULL;
    core_blob_ref(b);
    v->blob = b;
    v->data = b->data;
    v->len = b->len;
    v->cap = 0;
    return v;
}

const void *strata_value_data(const strata_value *v)
{
    return v ? v->data : NULL;
}

size_t strata_value_len(const strata_value *v)
{
    return v ? v->len : 0;
}

void strata_value_release(strata_value *v)
{
    if (v == NULL) return;
    if (v->blob == NULL && v->cap == SMALL_CAP && tls_vc.n < CORE_VCACHE_MAX) {
        if (__builtin_expect(!tls_vc.registered, 0)) {
            pthread_once(&cache_once, make_key);
            (void)pthread_setspecific(cache_key, &tls_vc);
            tls_vc.registered = true;
        }
        tls_vc.v[tls_vc.n++] = v;
        return;
    }
    if (v->blob) core_blob_release(v->blob);
    free(v);
}

core_blob *core_blob_new(const void *data, size_t len)
{
    core_blob *b = malloc(sizeof *b + len);
    if (b == NULL) return NULL;
    atomic_init(&b->refs, 1);
    b->magic = BLOB_MAGIC;
    b->len = len;
    b->data = b->tail;
    if (len) memcpy(b->data, data, len);
    return b;
}

core_blob *core_blob_take(void *mallocd, size_t len)
{
    /* The header lives apart from the caller's buffer, so nothing is copied. */
    core_blob *b = malloc(sizeof *b);
    if (b == NULL) {
        free(mallocd);
        return NULL;
    }
    atomic_init(&b->refs, 1);
    b->magic = BLOB_MAGIC;
    b->len = len;
    b->data = mallocd;
    return b;
}

void core_blob_ref(core_blob *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
}

void core_blob_release(core_blob *b)
{
    if (b == NULL) return;
    if (b->magic != BLOB_MAGIC)
        abort(); /* a corrupted or double-freed blob: stop before worse */
    uint32_t old = atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel);
    if (old == 1) {
        b->magic = 0;
        if (b->data != b->tail) free(b->data);
        free(b);
    } else if (old == 0) {
        abort();
    }
}
