/*
 * slab.c -- item memory for one shard: size classes carved from 1 MiB pages.
 *
 * A shard reserves one region of address space (up to 16 GiB, no memory) and
 * carves it into 1 MiB pages, each of one size class. An item is addressed by
 * a 32-bit id, its offset in the region in 4-byte units: the index and the
 * queues spend 4 bytes per reference instead of 8, a reader turns an id into
 * a pointer with one add, and malloc's per-chunk header and rounding
 * disappear. Classes step by 4 bytes up to 256, by 16 up
 * to 1 KiB, then grow by 1/8 up to 128 KiB; a page is carved lazily (a slot
 * is touched only when first used), so unused capacity costs no RSS.
 *
 * Pages are never unmapped before slab_fini: lock-free readers may still be
 * reading a slot that a writer just freed (the epoch scheme in ebr.c keeps
 * them from reading it after it is reused).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/slab.h"

#define HUGE (2u << 20)

static uint32_t class_sizes[SLAB_NCLASSES];
static unsigned nclasses;

static void init_classes(void)
{
    if (nclasses) return;
    unsigned n = 0;
    uint32_t sz;
    for (sz = 24; sz <= 256; sz += 4)
        class_sizes[n++] = sz;
    for (sz = 272; sz <= 1024; sz += 16)
        class_sizes[n++] = sz;
    while (sz < SLAB_MAX_SIZE && n < SLAB_NCLASSES - 1) {
        sz = (sz + sz / 8 + 15) & ~15u;
        class_sizes[n++] = sz < SLAB_MAX_SIZE ? sz : SLAB_MAX_SIZE;
    }
    if (class_sizes[n - 1] < SLAB_MAX_SIZE) class_sizes[n++] = SLAB_MAX_SIZE;
    nclasses = n;
}

static int class_for(uint32_t size)
{
    if (size <= 256) return size <= 24 ? 0 : (int)((size - 24 + 3) / 4);
    unsigned lo = 0, hi = nclasses;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (class_sizes[mid] < size)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nclasses ? (int)lo : -1;
}

int slab_init(slab *s, uint64_t region, int huge)
{
    static int once; /* class table is a pure function; racing inits agree */
    if (!once) {
        init_classes();
        once = 1;
    }
    memset(s, 0, sizeof *s);
    if (region > SLAB_REGION_MAX) region = SLAB_REGION_MAX;
    region = (region + HUGE - 1) & ~(uint64_t)(HUGE - 1);
    if (region < 2 * (uint64_t)HUGE) region = 2 * (uint64_t)HUGE;
    /* Address space only: PROT_NONE reservations cost no memory and no
     * commit charge; pages are opened as they are carved. One extra huge page
     * of slack lets the base be aligned. */
    size_t len = region + (huge ? HUGE : 0);
    unsigned char *b =
        mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED) return -1;
    s->map = b;
    s->maplen = len;
    if (huge) b = (unsigned char *)(((uintptr_t)b + HUGE - 1) & ~(uintptr_t)(HUGE - 1));
    s->maxpages = (uint32_t)(region >> SLAB_PAGE_SHIFT);
    s->page_cls = calloc(s->maxpages, sizeof *s->page_cls);
    if (s->page_cls == NULL) {
        munmap(s->map, s->maplen);
        return -1;
    }
    s->base = b;
    s->region = region;
    s->huge = huge;
    /* Page 0 is never used (id 0 means none); in huge mode pages 0-1 share
     * a huge page, so start at 2. */
    s->npages = huge ? 1 : 0;
    s->open_end = s->npages + 1;
    if (huge) (void)madvise(b, region, MADV_HUGEPAGE);
    for (unsigned i = 0; i < nclasses; i++)
        s->cls[i].size = class_sizes[i];
    return 0;
}

void slab_fini(slab *s)
{
    if (s->base == NULL) return;
    munmap(s->map, s->maplen);
    free(s->page_cls);
    s->base = NULL;
}

uint32_t slab_size_for(uint32_t size)
{
    init_classes();
    int c = class_for(size);
    return c < 0 ? 0 : class_sizes[c];
}

uint32_t slab_slot_size(const slab *s, uint32_t id)
{
    uint32_t page = (uint32_t)(((uint64_t)id << SLAB_ALIGN_SHIFT) >> SLAB_PAGE_SHIFT);
    return s->cls[s->page_cls[page]].size;
}

uint32_t slab_alloc(slab *s, uint32_t size)
{
    int c = class_for(size);
    if (c < 0) return 0;
    struct slab_class *k = &s->cls[c];
    if (k->free_head) {
        uint32_t id = k->free_head;
        memcpy(&k->free_head, slab_ptr(s, id), sizeof(uint32_t));
        return id;
    }
    if (k->page == 0 || k->carved == SLAB_PAGE_SIZE / k->size) {
        if (s->npages + 1 >= s->maxpages) return 0;
        uint32_t p = s->npages + 1;
        if (p >= s->open_end) {
            uint32_t step = s->huge ? HUGE >> SLAB_PAGE_SHIFT : 1;
            if (p + step > s->maxpages) return 0;
            if (mprotect(s->base + ((size_t)p << SLAB_PAGE_SHIFT),
                         (size_t)step << SLAB_PAGE_SHIFT, PROT_READ | PROT_WRITE) != 0)
                return 0;
            s->open_end = p + step;
        }
        s->npages = p;
        s->page_cls[p] = (uint8_t)c;
        s->mapped += SLAB_PAGE_SIZE;
        k->page = p;
        k->carved = 0;
    }
    uint64_t off =
        ((uint64_t)k->page << SLAB_PAGE_SHIFT) + (uint64_t)k->carved++ * k->size;
    return (uint32_t)(off >> SLAB_ALIGN_SHIFT);
}

void slab_free(slab *s, uint32_t id)
{
    uint32_t page = (uint32_t)(((uint64_t)id << SLAB_ALIGN_SHIFT) >> SLAB_PAGE_SHIFT);
    struct slab_class *k = &s->cls[s->page_cls[page]];
    memcpy(slab_ptr(s, id), &k->free_head, sizeof(uint32_t));
    k->free_head = id;
}
