/*
 * strata.h -- the public C API of strata, a multi-layer cache.
 *
 * A `strata` is a set of named caches opened from a YAML file (its `caches:`
 * section) or from the embedded defaults. Each `strata_cache` is borrowed from
 * its `strata` and lives until strata_close(). Lookups return a `strata_value`,
 * an immutable handle the caller owns and must release; it stays valid after
 * its entry is evicted, overwritten or invalidated.
 *
 * Thread-safety: every function may be called from any thread at the same
 * time, on the same or different caches, except strata_close() and
 * strata_set_clock(), which need the caller to stop using the strata first.
 *
 * Errors: calls return STRATA_OK (0), a positive status (STRATA_MISS,
 * STRATA_LOADED) or a count, or a negative STRATA_E* code; strata_strerror()
 * names any of them. The library never aborts on bad input.
 */
#ifndef STRATA_H
#define STRATA_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define STRATA_API __attribute__((visibility("default")))
#else
#define STRATA_API
#endif

#define STRATA_VERSION_MAJOR 0
#define STRATA_VERSION_MINOR 1
#define STRATA_VERSION_PATCH 0
#define STRATA_VERSION "0.1.0"

/* Return codes: X(name, value, message). One table gives names and messages. */
#define STRATA_ERRNO_MAP(X)                                                            \
    X(OK, 0, "ok")                                                                     \
    X(MISS, 1, "no live entry for this key")                                           \
    X(LOADED, 2, "value computed by the loader")                                       \
    X(EINVAL, -1, "invalid argument")                                                  \
    X(ENOMEM, -2, "out of memory")                                                     \
    X(E2BIG, -3, "value larger than the cache can hold")                               \
    X(ENOTSUP, -4, "not supported by this build or backend")                           \
    X(ETIMEDOUT, -5, "timed out")                                                      \
    X(EBACKEND, -6, "backend failure")                                                 \
    X(ELOADER, -7, "loader failed; nothing was cached")                                \
    X(ECONFIG, -8, "bad configuration")

enum strata_errno {
#define STRATA_X_ENUM(name, value, msg) STRATA_##name = (value),
    STRATA_ERRNO_MAP(STRATA_X_ENUM)
#undef STRATA_X_ENUM
};

typedef struct strata strata;             /* a set of named caches */
typedef struct strata_cache strata_cache; /* one named cache, borrowed from strata */
typedef struct strata_value
    strata_value; /* immutable, owned by the caller until released */

/* Options of a set. A NULL opts pointer means all defaults.
 *   ttl_ms  > 0: that TTL; 0: the cache's default TTL (none: no expiry);
 *           < 0: never expires.
 *   tags    NULL or an array of `ntags` NUL-terminated tag names (1-256 bytes
 *           of printable ASCII without space, comma, quote or backslash; at
 *           most 64). strata copies what it keeps; the caller keeps ownership. */
typedef struct {
    int64_t ttl_ms;
    const char *const *tags;
    size_t ntags;
} strata_set_opts;

/* Open the caches named in the `caches:` section of the YAML file at
 * `config_path`, or the embedded defaults when it is NULL: `default` (ttl 5m,
 * 256MB), `session` (ttl 2w, 64MB), `static` (ttl 1h, 256MB), all on the memory
 * engine. Other sections of the file are ignored.
 * On failure returns NULL and, if `errmsg` is not NULL, sets *errmsg to a
 * malloc'd message ("file:line: what is wrong") the caller frees. */
STRATA_API strata *strata_open(const char *config_path, char **errmsg);

/* Close every cache and free everything. Values still held by the caller stay
 * valid and must still be released. NULL is a no-op. */
STRATA_API void strata_close(strata *s);

/* The cache called `name`, or NULL if there is none. Borrowed: valid until
 * strata_close(). */
STRATA_API strata_cache *strata_cache_get(strata *s, const char *name);

/* The cache's name (borrowed). */
STRATA_API const char *strata_cache_name(const strata_cache *c);

/* Store a copy of `val` under `key` (binary, klen >= 1), replacing any entry.
 * Returns STRATA_OK, STRATA_EINVAL (NULL, empty or oversized key, bad tag),
 * STRATA_E2BIG (value larger than max_memory), STRATA_ENOMEM. */
STRATA_API int strata_set(strata_cache *c, const void *key, size_t klen,
                          const void *val, size_t vlen, const strata_set_opts *opts);

/* Look up `key`. On STRATA_OK, *out holds a reference the caller must pass to
 * strata_value_release(); on STRATA_MISS (absent, expired or invalidated) *out
 * is NULL. Negative on error (*out NULL). */
STRATA_API int strata_get(strata_cache *c, const void *key, size_t klen,
                          strata_value **out);

/* Remove `key`. Returns STRATA_OK if an entry was removed, STRATA_MISS if
 * there was none, or a negative error. */
STRATA_API int strata_delete(strata_cache *c, const void *key, size_t klen);

/* The bytes of a value (decompressed) and their length. The pointer stays
 * valid until strata_value_release(). */
STRATA_API const void *strata_value_data(const strata_value *v);
STRATA_API size_t strata_value_len(const strata_value *v);

/* Drop the caller's reference. NULL is a no-op. */
STRATA_API void strata_value_release(strata_value *v);

/* Single-flight loader. Called with the key when it is missing; it returns 0
 * and sets *val to a malloc'd buffer of *vlen bytes (strata takes ownership
 * and frees it), and may set opts->ttl_ms / opts->tags for the value (the tag
 * strings must stay valid until strata_get_or_set returns: point them into
 * `ud`). A negative return is passed to every waiter and nothing is cached. */
typedef int (*strata_loader)(void *ud, const void *key, size_t klen, void **val,
                             size_t *vlen, strata_set_opts *opts);

/* Get `key`, or run `load` to compute and store it. One loader runs per key at
 * a time; concurrent callers for the same key wait for its result (at most the
 * cache's loader_timeout, then STRATA_ETIMEDOUT).
 * Returns STRATA_OK (a hit), STRATA_LOADED (computed by this call or the
 * flight it joined), STRATA_ELOADER (the loader failed; nothing cached),
 * STRATA_EINVAL (bad argument, or the loader re-entered get_or_set on the same
 * key), STRATA_ETIMEDOUT, STRATA_E2BIG, STRATA_ENOMEM. On STRATA_OK and
 * STRATA_LOADED *out holds a reference (even when the value was too large to
 * store it is returned once). `opts` gives the defaults the loader may
 * override. */
STRATA_API int strata_get_or_set(strata_cache *c, const void *key, size_t klen,
                                 strata_loader load, void *ud,
                                 const strata_set_opts *opts, strata_value **out);

/* get_or_set whose key is formatted printf-style from `keyfmt` (the
 * function's name and arguments). The format is the caller's: make it
 * unambiguous ("price:%zu:%s", lengths first). */
STRATA_API int strata_memoize(strata_cache *c, strata_loader load, void *ud,
                              const strata_set_opts *opts, strata_value **out,
                              const char *keyfmt, ...)
    __attribute__((format(printf, 6, 7)));
STRATA_API int strata_vmemoize(strata_cache *c, strata_loader load, void *ud,
                               const strata_set_opts *opts, strata_value **out,
                               const char *keyfmt, va_list ap);

/* Remove every entry whose key matches the glob (Redis MATCH grammar,
 * byte-level: `*`, `?`, `[abc]`, `[a-z]`, `[^a]`/`[!a]`, `\` escapes).
 * Returns how many entries were removed, or STRATA_EINVAL for a bad glob.
 * No get that starts after the call returns sees a matching entry. */
STRATA_API long strata_invalidate_pattern(strata_cache *c, const char *glob);

/* Invalidate every entry carrying any of the tags, in O(1) per tag: no get
 * that starts after the call returns sees one. Removal is lazy, so the count
 * is not exact: it is the number of stored entries carrying the tag (with
 * several tags, the largest such number, so no entry counts twice).
 * Returns that count, or STRATA_EINVAL (NULL, bad tag). */
STRATA_API long strata_invalidate_tags(strata_cache *c, const char *const *tags,
                                       size_t ntags);

/* Remove every entry of the cache. Returns STRATA_OK. */
STRATA_API int strata_clear(strata_cache *c);

typedef struct {
    uint64_t hits, misses, sets, deletes, evictions, expired, invalidated, errors;
    uint64_t items, bytes, max_bytes;
} strata_stats;

/* A snapshot of the cache's counters (see docs/api.md for exactly when each
 * moves). `bytes` is all memory charged to the cache: keys, values, metadata
 * and index. */
STRATA_API void strata_cache_stats(strata_cache *c, strata_stats *out);

/* A static message for any return code (unknown codes included). */
STRATA_API const char *strata_strerror(int err);

/* The symbolic name of a return code ("STRATA_MISS"), or "STRATA_UNKNOWN". */
STRATA_API const char *strata_errname(int err);

/* Clock used for expiry, in milliseconds of a monotonic clock. Tests replace
 * it to move time without sleeping. `fn` NULL restores the real clock.
 * Call before the caches are used from other threads. */
typedef uint64_t (*strata_clock_fn)(void *ud);
STRATA_API void strata_set_clock(strata *s, strata_clock_fn fn, void *ud);

#ifdef __cplusplus
}
#endif
#endif /* STRATA_H */
