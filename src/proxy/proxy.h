/*
 * proxy.h -- the HTTP caching policy (src/proxy): what the rest of strata may
 * use. For now: parsing Cache-Control (RFC 9111 section 5.2). The proxy
 * itself (`strata serve`) builds on it.
 */
#ifndef STRATA_PROXY_H
#define STRATA_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Delta-seconds are capped at 2^31 (RFC 9111 section 1.2.2). */
#define CC_DELTA_MAX 2147483648LL

/* Parsed Cache-Control directives of a request or a response. A delta of -1
 * means the directive is absent. Flags for directives that may carry a list
 * of field names (no-cache, private) are set for the bare and the qualified
 * form alike; the qualified form also sets *_fields. */
typedef struct cc_directives {
    int64_t max_age, s_maxage, stale_while_revalidate, stale_if_error;
    int64_t max_stale, min_fresh; /* request; max_stale without a value: CC_DELTA_MAX */
    bool no_store, no_cache, no_cache_fields, private_, private_fields, public_;
    bool must_revalidate, proxy_revalidate, must_understand, no_transform;
    bool immutable, only_if_cached;
    /* A directive repeated with different values, or with a value that is not
     * a delta-seconds (max-age=abc): RFC 9111 says to treat the response as
     * stale, so freshness must not come from it. */
    bool invalid;
} cc_directives;

/* Parse one or more Cache-Control field values (call once per header line,
 * or once with the lines joined by ", "). `len` bytes of `s`, not
 * NUL-terminated. Unknown directives are ignored. Never fails: what cannot be
 * parsed is skipped, and marks `invalid` if it was a known directive. */
void cc_init(cc_directives *cc);
void cc_parse(cc_directives *cc, const char *s, size_t len);

/* Normalise the path of an origin-form request target for the cache key and
 * route matching (RFC 3986 section 6.2.2): percent-encoded unreserved
 * characters are decoded, other percent-encodings get upper-case hex, dot
 * segments are removed (section 5.2.4); slashes are kept as they are, so
 * "/a//b" stays. `in` is the path only (no query), `len` bytes. `out` needs
 * room for `len` bytes; *outlen gets the result's length.
 * Returns 0, or -1 for a path strata refuses (400): not starting with "/", a
 * "%" not followed by two hex digits, a control byte, a space or a byte
 * >= 0x7f. */
int proxy_normalize_path(const char *in, size_t len, char *out, size_t *outlen);

/* A Range request header (RFC 9110 section 14.2) against a stored
 * representation of `size` bytes. strata answers one byte range; a header it
 * does not take (another unit, several ranges, bad syntax) is ignored and
 * the whole representation is served (200), as the RFC allows. */
enum range_result {
    RANGE_IGNORE,       /* serve the whole representation (200) */
    RANGE_OK,           /* serve [*first, *last] (206) */
    RANGE_UNSATISFIABLE /* 416 with Content-Range: bytes * / size */
};
enum range_result proxy_parse_range(const char *s, size_t len, uint64_t size,
                                    uint64_t *first, uint64_t *last);

/* Tags from a response header (DESIGN "Tags"): Surrogate-Key and xkey are
 * space-separated, Cache-Tag comma-separated, Cache-Groups (RFC 9875) a
 * structured-field list of strings. A tag is 1-256 bytes of printable ASCII
 * without space, comma, quote or backslash. */
enum tag_syntax { TAGS_SPACE, TAGS_COMMA, TAGS_SF_STRINGS };

/* The syntax of a tag header by name (case-insensitive): Surrogate-Key and
 * xkey -> SPACE, Cache-Groups -> SF_STRINGS, any other -> COMMA. */
enum tag_syntax proxy_tag_syntax(const char *name);

/* Call `emit` for each tag in the header value. Returns the number of tags,
 * or -1 when a tag is not valid (the caller then does not store the object)
 * or `emit` returned non-zero. Members of a Cache-Groups list that are not
 * strings are skipped; their parameters are ignored. */
typedef int (*tag_emit_fn)(void *ud, const char *tag, size_t len);
int proxy_tags_parse(enum tag_syntax syn, const char *s, size_t len, tag_emit_fn emit,
                     void *ud);

/* `strata serve`: run the caching proxy (and the admin listener) with the
 * loaded configuration until SIGTERM or SIGINT, then drain and return 0.
 * Returns -1 with *err (malloc'd) when it cannot start. */
struct config;
int proxy_serve(const struct config *cfg, char **err);

#endif /* STRATA_PROXY_H */
