/*
 * internal.h -- what the files of src/proxy share: the stored HTTP object,
 * HTTP dates, keys and routes.
 */
#ifndef STRATA_PROXY_INTERNAL_H
#define STRATA_PROXY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/hist.h"
#include "strata.h"
#include "http/http.h"
#include "proxy/proxy.h"

/* A growable byte buffer. */
struct sbuf {
    char *p;
    size_t len, cap;
};
int sb_add(struct sbuf *b, const void *p, size_t n);
int sb_str(struct sbuf *b, const char *s);
int sb_fmt(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(struct sbuf *b);

/*
 * The stored object (one engine value):
 *
 *   struct hobj | header block | vary spec | tags | body
 *
 * The header block holds the response's header lines as they are sent
 * ("Name: value\r\n" each; hop-by-hop, framing, Age and tag headers removed,
 * the route's Cache-Control in place of the origin's). The vary spec is the
 * lower-cased names of the response's Vary, '\n'-terminated each; the tags
 * are those the object was stored with, '\n'-terminated each (a 304 that
 * freshens the object stores it again with them).
 *
 * A vary record (HOBJ_VARY) is a bare struct hobj + vary spec stored at the
 * base key: the variants live at key + "|v:" + hash of the request's values
 * of those headers. A hit-for-miss marker (HOBJ_HFM) says the last response
 * for the key was not storable: requests go straight to the origin.
 */
#define HOBJ_MAGIC 0x314a4f48u /* "HOJ1" */
#define HOBJ_VARY 0x31525648u  /* "HVR1" */
#define HOBJ_HFM 0x314d4648u   /* "HFM1" */

enum {
    HOBJ_MUST_REVALIDATE = 1, /* no stale serving (must-revalidate, no-cache) */
    HOBJ_NO_CACHE = 2,        /* revalidate before every use */
};

struct hobj {
    uint32_t magic;
    uint16_t status;
    uint16_t flags;
    int64_t resp_wall_ms; /* when the response arrived (strata's wall clock) */
    int64_t init_age_ms;  /* corrected initial age, RFC 9111 4.2.3 */
    int64_t fresh_ms;     /* freshness lifetime */
    int64_t swr_ms, sie_ms;
    int64_t lm_s; /* Last-Modified, -1: none */
    uint32_t hdr_len, vary_len, tags_len;
    uint32_t etag_off, etag_len; /* the ETag value within the header block */
    uint64_t body_len;
};

/* A view of a stored object: pointers into the value's bytes. */
struct hview {
    struct hobj h;
    const char *hdr, *vary, *tags, *body;
};
/* Parse `len` bytes; returns 0 or -1 (not an object or truncated). */
int hobj_view(const void *p, size_t len, struct hview *v);

/* Current age and remaining freshness at `now_wall_ms`. */
int64_t hobj_age_ms(const struct hobj *h, int64_t now_wall_ms);

/* HTTP-date (IMF-fixdate, RFC 850, asctime) -> seconds since the epoch;
 * -1 when it does not parse. */
int64_t http_date_parse(const char *s, size_t n);
/* Format `t` (seconds) as IMF-fixdate into buf (>= 30 bytes). */
void http_date_fmt(int64_t t, char *buf);

/* strata's wall clock in ms: the real wall clock when strata started, moved
 * by the (test-adjustable) monotonic clock. */
int64_t proxy_wall_ms(void);
uint64_t proxy_mono_ms(void);
/* Requests waiting on another request's fetch right now (tests). */
long proxy_flight_waiters(void);
/* ---- statistics and explain (serve.c; src/admin reads them) ---- */

/* How a request ended: Cache-Status' outcome, the access log's `cache=`. */
#define PROXY_RESULTS(X)                                                               \
    X(PR_NONE, "none")                                                                 \
    X(PR_HIT, "hit")                                                                   \
    X(PR_MISS, "miss")                                                                 \
    X(PR_STALE, "stale")                                                               \
    X(PR_REVALIDATED, "revalidated")                                                   \
    X(PR_BYPASS, "bypass")                                                             \
    X(PR_PASS, "pass")                                                                 \
    X(PR_PURGE, "purge")                                                               \
    X(PR_ERROR, "error")
#define PROXY_ENUM_(e, name) e,
enum proxy_result { PROXY_RESULTS(PROXY_ENUM_) PR_N };
#undef PROXY_ENUM_
extern const char *const proxy_result_name[PR_N];
/* enum up_error's names: connect, timeout, broken. */
#define PROXY_UP_ERRORS 3
extern const char *const proxy_up_error_name[PROXY_UP_ERRORS];

struct proxy;

/* Sums over every worker. Background refreshes count upstream only. */
struct proxy_route_stats {
    uint64_t result[PR_N];
    struct hist_snap latency;  /* request, first byte in to response queued */
    struct hist_snap upstream; /* origin: request sent to response head */
};
struct proxy_totals {
    uint64_t coalesced; /* requests that waited on another's fetch */
    uint64_t upstream_errors[PROXY_UP_ERRORS];
};
/* Routes in file order, then one for requests no route matched. */
size_t proxy_nroutes(const struct proxy *px);
const char *proxy_route_label(const struct proxy *px, size_t i);
#define PROXY_NO_ROUTE "(none)"
void proxy_route_stats(const struct proxy *px, size_t i, struct proxy_route_stats *out);
void proxy_totals(const struct proxy *px, struct proxy_totals *out);

/* Why a URL is or is not cached: its route, its key, the last origin
 * response strata saw for it and what it decided, and what the cache holds
 * now. `host` NULL: the host of that last response. */
struct proxy_explain {
    const struct config_route *route;
    char target[1024]; /* normalised */
    char host[256];    /* "" when unknown */
    bool seen;         /* a response for this target since strata started */
    int status;
    char cache_control[512];
    bool decided_store;
    char reason[32]; /* Cache-Status detail when not stored */
    int64_t seen_age_s;
    /* the cache now (a shared key; per-user keys need the identity) */
    enum { PX_NONE, PX_OBJECT, PX_VARIANTS, PX_HIT_FOR_MISS } holds;
    int64_t ttl_s; /* PX_OBJECT: freshness left (< 0: stale by that much) */
    int64_t age_s;
    unsigned variants;
    char tags[1024]; /* PX_OBJECT: ' '-separated */
};
/* 0, or -1 when the target is not a valid origin-form target. */
int proxy_explain(struct proxy *px, const char *host, const char *target, size_t tlen,
                  struct proxy_explain *out);
/* The HTTP cache, for the admin API. */
strata_cache *proxy_cache(struct proxy *px);

/* Tests (STRATA_TEST_CLOCK=1): move the clock forward. */
void proxy_clock_advance(int64_t ms);
uint64_t proxy_clock_fn(void *ud); /* for strata_set_clock */

/* The implicit tag of an object's URL (host given) or of its path on any
 * host (host NULL); `t` is the normalised path [? query]. */
void proxy_url_tag(struct sbuf *tag, const char *host, size_t hl, const char *t,
                   size_t tl);
/* Normalise "path[?query]" into out (query kept as it is). 0 or -1. */
int proxy_target(const char *in, size_t n, struct sbuf *out);

/* ---- routes and keys (route.c) ---- */

/* The first route whose path glob matches the normalised path, or NULL. */
const struct config_route *route_match(const struct config_http *h, const char *path,
                                       size_t len);

/* The identity of the request for a per_user route: NULL when there is none
 * or it cannot be verified (a bad JWT). *len gets its length; the result
 * points into the request (or into `tmp` for a JWT claim). */
const char *route_identity(const struct config_route *r, const struct http_msg *m,
                           struct sbuf *tmp, size_t *len);

/* The byte that separates a key's parts ("h:" host target, then "\x1fu:"
 * user, "\x1fv:" variant). DESIGN writes it '|'; but '|' may appear in a
 * path or query, so a target could pose as another URL's variant. A
 * control byte cannot: strata refuses targets that hold one. */
#define KEY_SEP "\x1f"

/* Append KEY_SEP "u:" + 32 hex of HMAC-SHA256(secret, identity). */
int key_add_user(struct sbuf *key, const char *secret, const char *id, size_t idlen);

/* Cookie value by name from the request's Cookie headers; NULL if absent. */
const char *cookie_get(const struct http_msg *m, const char *name, size_t *len);

/* 64-bit hash of the request's values of the headers (and cookies) a vary
 * spec names ("name\n" each; "=name\n" for a cookie), normalised: trimmed,
 * Accept-Encoding lower-cased and sorted. */
uint64_t vary_hash_spec(const struct http_msg *m, const char *spec, size_t len);

#endif
