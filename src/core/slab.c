/*
 * slab.c -- item memory for one shard: size classes carved from 1 MiB pages.
 *
 * An item is addressed by a 32-bit id = page << 16 | slot, so the index and
 * the queues spend 4 bytes per reference instead of 8, and malloc's per-chunk
 * header and rounding disappear. Classes step by 4 bytes up to 256, by 16 up
 * to 1 KiB, then grow by 1/8 up to 128 KiB; a page is carved lazily (a slot
 * is touched only when first used), so unused capacity costs no RSS.
 *
 * Pages are never unmapped before slab_fini: lock-free readers may still be
 * reading a slot that a writer just freed (the epoch scheme in ebr.c keeps
 * them from reading it after it is reused).
 */
#include <string.h>
#include <sys/mman.h>

#include "core/slab.h"

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

int slab_init(slab *s)
{
    static int once; /* class table is a pure function; racing inits agree */
    if (!once) {
        init_classes();
        once = 1;
    }
    memset(s, 0, sizeof *s);
    s->pages = mmap(NULL, SLAB_MAX_PAGES * sizeof *s->pages, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (s->pages == MAP_FAILED) {
        s->pages = NULL;
        return -1;
    }
    for (unsigned i = 0; i < nclasses; i++)
        s->cls[i].size = class_sizes[i];
    return 0;
}

void slab_fini(slab *s)
{
    if (s->pages == NULL) return;
    for (uint32_t i = 1; i <= s->npages; i++)
        munmap(s->pages[i].base, SLAB_PAGE_SIZE);
    munmap(s->pages, SLAB_MAX_PAGES * sizeof *s->pages);
    s->pages = NULL;
}

uint32_t slab_size_for(uint32_t size)
{
    init_classes();
    int c = class_for(size);
    return c < 0 ? 0 : class_sizes[c];
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
        if (s->npages + 1 >= SLAB_MAX_PAGES) return 0;
        void *base = mmap(NULL, SLAB_PAGE_SIZE, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (base == MAP_FAILED) return 0;
        uint32_t p = ++s->npages;
        s->pages[p].base = base;
        s->pages[p].size = k->size;
        s->pages[p].cls = (uint32_t)c;
        s->mapped += SLAB_PAGE_SIZE;
        k->page = p;
        k->carved = 0;
    }
    return k->page << SLAB_SLOT_BITS | k->carved++;
}

void slab_free(slab *s, uint32_t id)
{
    struct slab_class *k = &s->cls[s->pages[id >> SLAB_SLOT_BITS].cls];
    memcpy(slab_ptr(s, id), &k->free_head, sizeof(uint32_t));
    k->free_head = id;
}
