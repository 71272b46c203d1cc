/*
 * tags.h -- tag records and versions (tags.c). Internal to src/core.
 */
#ifndef STRATA_CORE_TAGS_H
#define STRATA_CORE_TAGS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tag_reg tag_reg;
typedef struct tag_rec tag_rec;

tag_reg *tag_reg_new(void);
void tag_reg_free(tag_reg *r);
/* Take a reference on the record of each name (created if absent) and read
 * its current version. Returns 0, or -1 (out of memory, nothing held). */
int tag_reg_acquire(tag_reg *r, const char *const *names, size_t n, tag_rec **recs,
                    uint64_t *versions);
/* The entries holding these records are no longer stored (they still hold
 * the records until their memory is reused). */
void tag_reg_unlive(tag_reg *r, tag_rec *const *recs, size_t n);
/* Drop the references taken by tag_reg_acquire (after tag_reg_unlive, or
 * for an entry that was never stored). */
void tag_reg_release(tag_reg *r, tag_rec *const *recs, size_t n);
/* Bump the tag's version; returns how many stored entries carry it. */
long tag_reg_invalidate(tag_reg *r, const char *name);
/* The tag version sequence now: every later invalidation gives a larger one. */
uint64_t tag_seq_now(void);
/* Was any of the tags invalidated after tag_seq_now() returned `since`? */
bool tag_reg_invalidated_since(tag_reg *r, const char *const *names, size_t n,
                               uint64_t since);
/* Lock-free: is `version` still the tag's version? */
bool tag_rec_current(const tag_rec *t, uint64_t version);
/* 1-256 bytes of printable ASCII without space, comma, quote or backslash. */
bool tag_name_valid(const char *name);

#endif
