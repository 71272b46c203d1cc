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
#define SLAB_ALIGN_SHIFT 2 /* ids count 4-byte units */
#define SLAB_REGION_MAX ((uint64_t)1 << (32 + SLAB_ALIGN_SHIFT)) /* 16 GiB */
#define SLAB_MAX_SIZE (128u * 1024u)                             /* largest slot */
#define SLAB_NCLASSES 160

struct slab_class {
    uint32_t size;
    uint32_t free_head; /* id of a free slot, linked through its first 4 bytes */
    uint32_t page;      /* page being carved, 0 = none */
    uint32_t carved;    /* slots carved from it */
};

typedef struct slab {
    unsigned char *base; /* the reserved region; item id i is at base + 4i */
    unsigned char *map;  /* the mapping (base, maybe aligned up, is inside) */
    size_t maplen;
    uint64_t region;   /* bytes reserved */
    uint8_t *page_cls; /* class of each page */
    uint32_t npages;   /* pages first..npages are in use; page 0 is never used */
    uint32_t open_end; /* pages below this are accessible */
    int huge;          /* open and advise in 2 MiB steps */
    uint32_t maxpages;
    struct slab_class cls[SLAB_NCLASSES];
    uint64_t mapped; /* bytes of pages made accessible */
} slab;

/* Reserve `region` bytes of address space (no memory) for the shard's items;
 * pages become accessible as they are carved. With `huge`, the region is
 * 2 MiB-aligned, opened 2 MiB at a time and advised for transparent huge
 * pages. Returns 0 or -1. */
int slab_init(slab *s, uint64_t region, int huge);
void slab_fini(slab *s);
/* The slot size that an object of `size` bytes gets, 0 if too large. */
uint32_t slab_size_for(uint32_t size);
/* Allocate a slot for `size` bytes; 0 when out of memory or too large. */
uint32_t slab_alloc(slab *s, uint32_t size);
void slab_free(slab *s, uint32_t id);
uint32_t slab_slot_size(const slab *s, uint32_t id);

/* One add: no table lookup between an index slot and its item. */
static inline void *slab_ptr(const slab *s, uint32_t id)
{
    return s->base + ((size_t)id << SLAB_ALIGN_SHIFT);
}

#endif
