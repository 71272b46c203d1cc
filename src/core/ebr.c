/*
 * ebr.c -- epoch-based reclamation for lock-free readers.
 *
 * Readers of the engine take no lock and write no shared cache line: each
 * thread owns a record on its own cache line and publishes in it the global
 * epoch it entered in. A writer that unlinks memory reads the global epoch
 * (after a full fence) and tags the memory with it. The global epoch moves
 * from E to E+1 only when every thread inside a critical section entered in
 * E; memory retired in epoch R is therefore unreachable once the global epoch
 * is R+2: every reader that could have seen it has left.
 *
 *   record.state = (epoch << 1) | active
 *
 * Records live in one process-wide list and are reused when their thread
 * exits; they are never freed (a reader can be reading them), which bounds
 * them by the peak number of threads.
 *
 * Entering must be ordered before the reads that follow (StoreLoad). Where
 * the kernel has expedited membarrier, a reader just stores and the thread
 * that advances the epoch issues membarrier(), which fences every running
 * thread of the process; advances are batched, so that costs little. Without
 * it, entry is an atomic exchange on the thread's own record.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/core.h"

_Atomic uint64_t ebr_global_epoch = 1;
__thread struct ebr_rec *ebr_my_rec __attribute__((tls_model("initial-exec")));
int ebr_asym;
static struct ebr_rec *_Atomic records;
static _Atomic unsigned nrecords;
static pthread_key_t rec_key;
static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static void thread_gone(void *p)
{
    struct ebr_rec *r = p;
    /* Another thread may adopt the record now: a later use by this thread
     * (from another key's destructor) must take a record of its own. */
    ebr_my_rec = NULL;
    atomic_store_explicit(&r->state, 0, memory_order_release);
    atomic_store_explicit(&r->in_use, 0, memory_order_release);
}

static void make_key(void)
{
    (void)pthread_key_create(&rec_key, thread_gone);
#ifndef STRATA_TSAN
    /* With expedited membarrier, readers announce themselves with a plain
     * store and the rare epoch advance pays for the fence instead (an IPI to
     * the CPUs running our threads). TSan does not model it: keep the fence
     * on the reader side there. */
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0)
        ebr_asym = 1;
#endif
}

/* First use by a thread: adopt a free record or add one. */
struct ebr_rec *ebr_rec_slow(void)
{
    struct ebr_rec *r;
    pthread_once(&rec_once, make_key);
    for (r = atomic_load_explicit(&records, memory_order_acquire); r; r = r->next) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&r->in_use, &expect, 1)) break;
    }
    if (r == NULL) {
        /* Never freed: concurrent scanners may read it at any time. */
        r = aligned_alloc(64, sizeof *r);
        if (r == NULL) abort(); /* a few bytes per thread; nothing sensible to do */
        atomic_init(&r->state, 0);
        atomic_init(&r->in_use, 1);
        r->slot = atomic_fetch_add(&nrecords, 1);
        r->depth = 0;
        struct ebr_rec *head = atomic_load(&records);
        do {
            r->next = head;
        } while (!atomic_compare_exchange_weak(&records, &head, r));
    }
    r->depth = 0;
    ebr_my_rec = r;
    (void)pthread_setspecific(rec_key, r);
    return r;
}

uint64_t ebr_retire_epoch(void)
{
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&ebr_global_epoch, memory_order_seq_cst);
}

bool ebr_try_advance(void)
{
    pthread_once(&rec_once, make_key);
    uint64_t e = atomic_load_explicit(&ebr_global_epoch, memory_order_seq_cst);
    if (ebr_asym)
        (void)syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    else
        atomic_thread_fence(memory_order_seq_cst);
    for (struct ebr_rec *r = atomic_load_explicit(&records, memory_order_acquire); r;
         r = r->next) {
        uint64_t s = atomic_load_explicit(&r->state, memory_order_acquire);
        if ((s & 1) && (s >> 1) != e) return false;
    }
    return atomic_compare_exchange_strong(&ebr_global_epoch, &e, e + 1);
}

bool ebr_safe(uint64_t retired)
{
    return atomic_load_explicit(&ebr_global_epoch, memory_order_acquire) >= retired + 2;
}
