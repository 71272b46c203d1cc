/*
 * slab.h -- per-shard item memory addressed by 32-bit ids (slab.c).
 * Internal to src/core. Not thread-safe: the shard lock protects it, except
 * slab_ptr(), which lock-free readers call on ids they found in the index.
 */
#ifndef STRATA_CORE_SLAB_H
#define STRATA_CORE_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define SLAB_PAGE_SHIFT 20 /* 1 MiB pages */
#define SLAB_PAGE_SIZE (1u << SLAB_PAGE_SHIFT)
#define SLAB_SLOT_BITS 16
#define SLAB_MAX_PAGES (1u << 16)
#define SLAB_MAX_SIZE (128u * 1024u) /* largest slot */
#define SLAB_NCLASSES 160

struct slab_page {
    unsigned char *base;
    uint32_t size; /* slot size */
    uint32_t cls;
};

struct slab_class {
    uint32_t size;
    uint32_t free_head; /* id of a free slot, linked through its first 4 bytes */
    uint32_t page;      /* page being carved, 0 = none */
    uint32_t carved;    /* slots carved from it */
};

typedef struct slab {
    struct slab_page *pages; /* SLAB_MAX_PAGES entries, lazily touched */
    uint32_t npages;         /* pages[1..npages] are in use; 0 is reserved */
    struct slab_class cls[SLAB_NCLASSES];
    uint64_t mapped; /* bytes of pages mapped */
} slab;

int slab_init(slab *s);
void slab_fini(slab *s);
/* The slot size that an object of `size` bytes gets, 0 if too large. */
uint32_t slab_size_for(uint32_t size);
/* Allocate a slot for `size` bytes; 0 when out of memory or too large. */
uint32_t slab_alloc(slab *s, uint32_t size);
void slab_free(slab *s, uint32_t id);

static inline void *slab_ptr(const slab *s, uint32_t id)
{
    const struct slab_page *p = &s->pages[id >> SLAB_SLOT_BITS];
    return p->base + (size_t)(id & ((1u << SLAB_SLOT_BITS) - 1)) * p->size;
}

static inline uint32_t slab_slot_size(const slab *s, uint32_t id)
{
    return s->pages[id >> SLAB_SLOT_BITS].size;
}

#endif
