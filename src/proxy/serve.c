/*
 * serve.c -- `strata serve`: the caching reverse proxy.
 *
 * One request, one key (DESIGN "HTTP cache behaviour"). A request is checked
 * and normalised, matched to a route, and then either answered from the
 * cache, forwarded and stored, or passed through:
 *
 *   lookup   base key -> object | vary record (-> variant key -> object) |
 *            hit-for-miss marker | nothing
 *   fresh    answered from the stored bytes (writev, the value's reference
 *            held until the write completes): 200, 206, 304 or HEAD
 *   stale    within stale-while-revalidate: answered, one background refresh;
 *            else revalidated with the object's validators (a 304 freshens
 *            it), and within stale-if-error answered stale if the origin fails
 *   miss     one fetch per key (the flight table, shared by the workers); the
 *            others wait and look up again when it ends
 *   fetched  a storable response that fits max_object_size is read whole,
 *            stored and answered from the object; anything else streams to
 *            the client as it arrives, with backpressure on the origin
 *
 * Every response carries strata's Cache-Status member.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "admin/admin.h"
#include "backend/backend.h"
#include "core/log.h"
#include "proxy/internal.h"
#include "strata.h"

#define HFM_TTL_MS 10000
#define MAX_TAGS 64 /* from the response and the route; the url tag is extra */
#define FLIGHT_BUCKETS 1024

#define DECISIONS 1024 /* explain: the last origin decision per target hash */

/* Counters of one worker (only its thread writes them). */
struct route_ctr {
    _Atomic uint64_t result[PR_N];
    struct hist latency, upstream;
};
struct wstats {
    struct route_ctr *routes; /* cfg routes + 1 */
    _Atomic uint64_t coalesced;
    _Atomic uint64_t up_err[PROXY_UP_ERRORS];
};

struct decision {
    uint64_t hash; /* of the normalised target; 0: empty */
    int64_t wall_ms;
    int status;
    bool stored;
    char reason[32];
    char host[256];
    char cc[512];
};

struct proxy {
    const struct config *cfg;
    strata *s;
    strata_cache *cache;
    struct up_conf upc;
    char upstream_hp[300];
    FILE *access; /* NULL: off */
    struct http_server *srv;
    unsigned nworkers;
    struct wstats *wst; /* one per worker */
    char rid_prefix[9]; /* request ids: prefix-worker-counter */
    pthread_mutex_t dlock;
    struct decision *dec; /* DECISIONS slots */
    pthread_mutex_t flock;
    struct flight *flights[FLIGHT_BUCKETS];
};

struct pworker {
    struct proxy *px;
    struct http_worker *w;
    struct up_pool *pool;
    struct preq *free;
    struct preq *bg; /* background refreshes and detached fetches */
    struct wstats *st;
    uint64_t rid_next;
    struct sbuf log;
    uv_timer_t flush;
};

struct flight {
    struct flight *next;
    uint64_t hash;
    struct preq *waiters;
    size_t klen;
    char key[];
};

enum pstate { PS_IDLE, PS_LOOKUP, PS_WAIT, PS_FETCH, PS_PASS };

struct preq {
    struct pworker *pw;
    struct http_conn *c; /* NULL: the client left, or a background fetch */
    struct preq *next;   /* freelist, waiters, background list */
    enum pstate state;
    /* the request */
    llhttp_method_t method;
    bool head, http10, keep, cacheable, per_user, has_auth, req_no_cache, req_no_store;
    bool body, body_chunked, expect;
    const struct config_route *route;
    const struct http_msg *msg;
    struct sockaddr_storage peer;
    struct sbuf host;   /* lower-cased */
    struct sbuf target; /* normalised path [+ ? query] */
    size_t path_len;    /* of the path within target */
    struct sbuf key;    /* base key */
    struct sbuf vkey;   /* variant key */
    struct sbuf tag;    /* the implicit url tag */
    struct sbuf ptag;   /* the implicit path tag */
    struct sbuf tmp;
    struct sbuf out; /* a response's dynamic headers */
    /* the fetch */
    struct up_req *up;
    bool owner, waiting, background, collapsed, vary_miss, failed, reval, freshen,
        use_stale;
    bool req_buffering, hdr_stored, only_if_cached;
    unsigned variants; /* the vary record's count of variants, at lookup */
    uint64_t since;    /* strata_tag_seq() when the fetch started */
    enum up_error err;
    strata_value *stale;
    struct hview sv;
    int status;
    bool streaming, buffering, chunked_out, stream_head_sent, storable;
    const char *reason;
    struct hobj ho;
    struct sbuf hdr;  /* response header block (stored / streamed) */
    struct sbuf vary; /* vary spec */
    struct sbuf tags; /* '\n'-terminated tags */
    struct sbuf bodyb;
    size_t ntags;
    int64_t content_length;
    int64_t req_wall;
    uint64_t t0, tup;
    int64_t up_ns;
    uint64_t bytes;
    enum proxy_result result;
    char cs[200];
    char rid[40]; /* X-Request-Id */
};

static _Atomic long flight_waiters; /* requests waiting on another's fetch */

long proxy_flight_waiters(void)
{
    return atomic_load(&flight_waiters);
}

/* ----------------------------------------------------------------- logs */

const char *const proxy_result_name[PR_N] = {
#define X(e, name) name,
    PROXY_RESULTS(X)
#undef X
};
const char *const proxy_up_error_name[PROXY_UP_ERRORS] = {"connect", "timeout",
                                                          "broken"};

/* logfmt value: quoted when it holds a space, a quote or '='. */
static void log_val(struct sbuf *b, const char *s, size_t n)
{
    bool q = n == 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\' ||
            (unsigned char)s[i] < 0x20)
            q = true;
    if (!q) {
        sb_add(b, s, n);
        return;
    }
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\') sb_add(b, "\\", 1);
        if ((unsigned char)s[i] < 0x20)
            sb_add(b, "?", 1);
        else
            sb_add(b, &s[i], 1);
    }
    sb_add(b, "\"", 1);
}

static void flush_log(struct pworker *pw)
{
    if (pw->log.len == 0 || pw->px->access == NULL) return;
    fwrite(pw->log.p, 1, pw->log.len, pw->px->access);
    fflush(pw->px->access);
    pw->log.len = 0;
}

static void on_flush(uv_timer_t *t)
{
    flush_log(t->data);
}

static void access_log(struct preq *p, int status)
{
    struct pworker *pw = p->pw;
    if (pw->px->access == NULL || p->background) return;
    char ts[32];
    int64_t now = proxy_wall_ms();
    time_t t = (time_t)(now / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    struct sbuf *b = &pw->log;
    sb_fmt(b, "ts=%s.%03dZ method=%s path=", ts, (int)(now % 1000),
           llhttp_method_name(p->method));
    log_val(b, p->target.p ? p->target.p : "", p->target.len);
    double dur = (double)(uv_hrtime() - p->t0) / 1e9;
    sb_fmt(b, " status=%d cache=%s bytes=%" PRIu64 " duration=%.3f", status,
           proxy_result_name[p->result], p->bytes, dur);
    if (p->up_ns >= 0)
        sb_fmt(b, " upstream_time=%.4f", (double)p->up_ns / 1e9);
    else
        sb_str(b, " upstream_time=-");
    sb_fmt(b, " request_id=%s\n", p->rid);
    /* One write per line, as nginx does: lines from every worker stay in
     * order of completion. */
    flush_log(pw);
}

static void debug_op(struct preq *p, const char *op, const char *result);
static void note_decision(struct preq *p, int status, const struct http_msg *m,
                          bool stored, const char *why);

/* ------------------------------------------------------------ the preq */

/* A request id: the process's random prefix, the worker, a counter. */
static void request_id(struct pworker *pw, char *out)
{
    static const char hex[] = "0123456789abcdef";
    memcpy(out, pw->px->rid_prefix, 8);
    out[8] = '-';
    unsigned w = http_worker_id(pw->w);
    size_t o = 9;
    out[o++] = hex[(w >> 4) & 15];
    out[o++] = hex[w & 15];
    out[o++] = '-';
    uint64_t n = ++pw->rid_next;
    char d[16];
    int k = 0;
    do {
        d[k++] = hex[n & 15];
        n >>= 4;
    } while (n && k < 16);
    while (k)
        out[o++] = d[--k];
    out[o] = 0;
}

/* A client's valid X-Request-Id is kept (http_request_id_ok). */
static void request_id_from(struct preq *p, const struct http_msg *m)
{
    const struct http_header *h = http_find(m, "x-request-id", NULL);
    if (h == NULL || !http_request_id_ok(h->value, h->vlen)) return;
    memcpy(p->rid, h->value, h->vlen);
    p->rid[h->vlen] = 0;
}

/* The request is over: count it (route, result, latency) and log it. */
static void account(struct preq *p, int status)
{
    struct pworker *pw = p->pw;
    const struct config_http *hc = &pw->px->cfg->http;
    size_t ri = p->route ? (size_t)(p->route - hc->routes) : hc->n_routes;
    struct route_ctr *rc = &pw->st->routes[ri];
    if (p->up_ns >= 0) hist_add(&rc->upstream, (uint64_t)p->up_ns);
    if (!p->background) {
        atomic_fetch_add_explicit(&rc->result[p->result], 1, memory_order_relaxed);
        hist_add(&rc->latency, uv_hrtime() - p->t0);
    }
    access_log(p, status);
}

static struct preq *preq_get(struct pworker *pw)
{
    struct preq *p = pw->free;
    if (p) {
        pw->free = p->next;
    } else {
        p = calloc(1, sizeof *p);
        if (p == NULL) return NULL;
    }
    struct sbuf keep[11] = {p->host, p->target, p->key,  p->vkey, p->tag, p->tmp,
                            p->hdr,  p->vary,   p->tags, p->ptag, p->out};
    memset(p, 0, sizeof *p);
    p->host = keep[0];
    p->target = keep[1];
    p->key = keep[2];
    p->vkey = keep[3];
    p->tag = keep[4];
    p->tmp = keep[5];
    p->hdr = keep[6];
    p->vary = keep[7];
    p->tags = keep[8];
    p->ptag = keep[9];
    p->out = keep[10];
    p->host.len = p->target.len = p->key.len = p->vkey.len = p->tag.len = p->tmp.len =
        p->hdr.len = p->vary.len = p->tags.len = p->ptag.len = 0;
    p->pw = pw;
    p->up_ns = -1;
    request_id(pw, p->rid);
    p->content_length = -1;
    p->t0 = uv_hrtime();
    return p;
}

static void preq_put(struct preq *p)
{
    struct pworker *pw = p->pw;
    if (p->stale) strata_value_release(p->stale);
    p->stale = NULL;
    sb_free(&p->bodyb);
    p->state = PS_IDLE;
    if (p->hdr.cap > 65536) sb_free(&p->hdr);
    p->next = pw->free;
    pw->free = p;
}

static void preq_free_all(struct preq *p)
{
    while (p) {
        struct preq *next = p->next;
        sb_free(&p->host);
        sb_free(&p->target);
        sb_free(&p->key);
        sb_free(&p->vkey);
        sb_free(&p->tag);
        sb_free(&p->tmp);
        sb_free(&p->hdr);
        sb_free(&p->vary);
        sb_free(&p->tags);
        sb_free(&p->ptag);
        sb_free(&p->out);
        sb_free(&p->bodyb);
        free(p);
        p = next;
    }
}

static void bg_add(struct preq *p)
{
    p->next = p->pw->bg;
    p->pw->bg = p;
}

static void bg_remove(struct preq *p)
{
    for (struct preq **pp = &p->pw->bg; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            return;
        }
}

/* The response is complete: log it, let the connection go on. */
static void finish(struct preq *p, int status, bool keep)
{
    account(p, status);
    struct http_conn *c = p->c;
    bool detached = p->background;
    if (c) {
        http_conn_set_data(c, NULL);
        p->c = NULL;
    }
    if (detached) bg_remove(p);
    preq_put(p);
    if (c) {
        http_conn_resume(c); /* paused for an upload the origin no longer reads */
        http_conn_end(c, keep);
    }
}

/* ------------------------------------------------------------- flights */

static struct flight **fbucket(struct proxy *px, uint64_t h)
{
    return &px->flights[h % FLIGHT_BUCKETS];
}

/* Join the flight for p's key, or start one. Returns true when a flight
 * exists already: p then waits on it (unless !wait: a background refresh
 * just leaves). */
static bool flight_join_or(struct preq *p, bool wait)
{
    struct proxy *px = p->pw->px;
    uint64_t h = XXH3_64bits(p->key.p, p->key.len);
    pthread_mutex_lock(&px->flock);
    for (struct flight *f = *fbucket(px, h); f; f = f->next)
        if (f->hash == h && f->klen == p->key.len &&
            memcmp(f->key, p->key.p, f->klen) == 0) {
            if (!wait) {
                pthread_mutex_unlock(&px->flock);
                return true;
            }
            p->next = f->waiters;
            f->waiters = p;
            p->waiting = true;
            atomic_fetch_add(&flight_waiters, 1);
            atomic_fetch_add_explicit(&p->pw->st->coalesced, 1, memory_order_relaxed);
            pthread_mutex_unlock(&px->flock);
            return true;
        }
    struct flight *f = malloc(sizeof *f + p->key.len);
    if (f) {
        f->hash = h;
        f->waiters = NULL;
        f->klen = p->key.len;
        memcpy(f->key, p->key.p, p->key.len);
        f->next = *fbucket(px, h);
        *fbucket(px, h) = f;
        p->owner = true;
    }
    pthread_mutex_unlock(&px->flock);
    return false;
}

static bool flight_join(struct preq *p)
{
    return flight_join_or(p, true);
}

static void wake(struct http_worker *w, void *arg);

/* The owner's fetch ended: every waiter looks up again on its own loop
 * (after a failure, it answers the error itself). */
static void flight_end(struct preq *p, bool failed, enum up_error err)
{
    if (!p->owner) return;
    p->owner = false;
    struct proxy *px = p->pw->px;
    uint64_t h = XXH3_64bits(p->key.p, p->key.len);
    struct preq *ws = NULL;
    pthread_mutex_lock(&px->flock);
    for (struct flight **fp = fbucket(px, h); *fp; fp = &(*fp)->next) {
        struct flight *f = *fp;
        if (f->hash == h && f->klen == p->key.len &&
            memcmp(f->key, p->key.p, f->klen) == 0) {
            *fp = f->next;
            ws = f->waiters;
            free(f);
            break;
        }
    }
    pthread_mutex_unlock(&px->flock);
    while (ws) {
        struct preq *next = ws->next;
        ws->failed = failed;
        ws->err = err;
        http_worker_post(ws->pw->w, wake, ws);
        ws = next;
    }
}

/* ------------------------------------------------------- cache status */

static void cs_set(struct preq *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void cs_set(struct preq *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->cs, sizeof p->cs - 16, fmt, ap);
    va_end(ap);
    if (n > 0 && p->collapsed && (size_t)n < sizeof p->cs - 16)
        strcat(p->cs, "; collapsed");
}

/* ---------------------------------------------------------- responses */

static void release_value(void *arg)
{
    strata_value_release(arg);
}

/* A short response strata makes itself. */
static void respond_simple(struct preq *p, int status, const char *ctype,
                           const char *body, const char *extra)
{
    struct sbuf b = {0};
    size_t blen = strlen(body);
    sb_fmt(&b, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    char date[32];
    http_date_fmt(proxy_wall_ms() / 1000, date);
    sb_fmt(&b, "Date: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n", date, ctype,
           blen);
    if (extra) sb_str(&b, extra);
    sb_fmt(&b, "Cache-Status: %s\r\nX-Request-Id: %s\r\n", p->cs, p->rid);
    if (!p->keep)
        sb_str(&b, "Connection: close\r\n");
    else if (p->http10)
        sb_str(&b, "Connection: keep-alive\r\n");
    sb_str(&b, "\r\n");
    if (!p->head) sb_add(&b, body, blen);
    p->bytes += b.len;
    if (p->c) {
        uv_buf_t ub = uv_buf_init(b.p, (unsigned)b.len);
        http_conn_write(p->c, &ub, 1, free, b.p);
    } else {
        sb_free(&b);
    }
    finish(p, status, p->keep);
}

static bool etag_match(const char *inm, size_t n, const char *etag, size_t elen)
{
    /* Weak comparison (RFC 9110 13.1.2): W/ prefixes ignored. */
    if (elen >= 2 && etag[0] == 'W' && etag[1] == '/') etag += 2, elen -= 2;
    size_t i = 0;
    while (i < n) {
        while (i < n && (inm[i] == ' ' || inm[i] == ','))
            i++;
        size_t s = i;
        if (i < n && inm[i] == '*') return true;
        if (i + 1 < n && inm[i] == 'W' && inm[i + 1] == '/') s = i += 2;
        if (i < n && inm[i] == '"') {
            i++;
            while (i < n && inm[i] != '"')
                i++;
            if (i < n) i++;
        } else {
            while (i < n && inm[i] != ',')
                i++;
        }
        if (i - s == elen && memcmp(inm + s, etag, elen) == 0) return true;
    }
    return false;
}

/* Would the stored object answer the client's conditional request with 304? */
static bool not_modified(const struct preq *p, const struct hview *o)
{
    const struct http_msg *m = p->msg;
    /* RFC 9110 13.2.1: preconditions apply to a response that would be 2xx. */
    if (m == NULL || o->h.status < 200 || o->h.status > 299) return false;
    const struct http_header *inm = http_find(m, "if-none-match", NULL);
    if (inm) {
        if (o->h.etag_len == 0) return false;
        return etag_match(inm->value, inm->vlen, o->hdr + o->h.etag_off, o->h.etag_len);
    }
    const struct http_header *ims = http_find(m, "if-modified-since", NULL);
    if (ims && o->h.lm_s >= 0) {
        int64_t t = http_date_parse(ims->value, ims->vlen);
        return t >= 0 && o->h.lm_s <= t;
    }
    return false;
}

/* Header lines of a block a 304 carries (RFC 9110 15.4.5). */
static void add_304_headers(struct sbuf *b, const char *hdr, size_t len)
{
    static const char *const keep[] = {"cache-control", "content-location", "date",
                                       "etag",          "expires",          "vary",
                                       "last-modified"};
    const char *end = hdr + len;
    while (hdr < end) {
        const char *eol = memmem(hdr, (size_t)(end - hdr), "\r\n", 2);
        if (eol == NULL) break;
        const char *colon = memchr(hdr, ':', (size_t)(eol - hdr));
        if (colon)
            for (size_t i = 0; i < sizeof keep / sizeof *keep; i++)
                if (strlen(keep[i]) == (size_t)(colon - hdr) &&
                    strncasecmp(hdr, keep[i], (size_t)(colon - hdr)) == 0) {
                    sb_add(b, hdr, (size_t)(eol - hdr) + 2);
                    break;
                }
        hdr = eol + 2;
    }
}

/*
 * Answer from a stored object: 200, 206, 416, 304 or HEAD. `v` is the
 * value holding `o` (released when the write completes). `route_cc`: the
 * route's Cache-Control replaces the object's Cache-Control lines, which
 * the header block keeps last (from hdr_len - cc_len).
 */
static void serve_obj(struct preq *p, strata_value *v, const struct hview *o)
{
    char head[96];
    int status = o->h.status;
    uint64_t first = 0, last = o->h.body_len ? o->h.body_len - 1 : 0;
    bool nm = false;
    int64_t now = proxy_wall_ms();
    int64_t age = hobj_age_ms(&o->h, now) / 1000;
    if (age < 0) age = 0;

    if (p->msg && (nm = not_modified(p, o))) {
        status = 304;
    } else if (p->msg && status == 200 && !p->head) {
        const struct http_header *rh = http_find(p->msg, "range", NULL);
        const struct http_header *ir = http_find(p->msg, "if-range", NULL);
        if (rh && ir) { /* If-Range: only when it names this representation */
            bool same = o->h.etag_len && ir->vlen == o->h.etag_len &&
                        memcmp(ir->value, o->hdr + o->h.etag_off, ir->vlen) == 0 &&
                        ir->value[0] == '"';
            int64_t t = http_date_parse(ir->value, ir->vlen);
            if (!same && !(t >= 0 && o->h.lm_s >= 0 && o->h.lm_s == t)) rh = NULL;
        }
        if (rh) {
            enum range_result r =
                proxy_parse_range(rh->value, rh->vlen, o->h.body_len, &first, &last);
            if (r == RANGE_OK) {
                status = 206;
            } else if (r == RANGE_UNSATISFIABLE) {
                status = 416;
            }
        }
    }

    int hn =
        snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n", status, http_reason(status));
    struct sbuf extra = {0};
    uv_buf_t iov[5];
    unsigned n = 0;
    iov[n++] = uv_buf_init(head, (unsigned)hn);
    const char *cc = p->route ? p->route->cache_control : NULL;
    if (status == 304) {
        add_304_headers(&extra, o->hdr, o->h.hdr_len);
    } else if (cc) {
        /* Everything but the Cache-Control lines (kept last). */
        size_t cut = o->h.hdr_len;
        const char *hb = o->hdr;
        size_t i = 0;
        while (i < o->h.hdr_len) {
            const char *eol = memmem(hb + i, o->h.hdr_len - i, "\r\n", 2);
            if (eol == NULL) break;
            if ((size_t)(o->h.hdr_len - i) >= 14 &&
                strncasecmp(hb + i, "cache-control:", 14) == 0) {
                cut = i;
                break;
            }
            i = (size_t)(eol - hb) + 2;
        }
        iov[n++] = uv_buf_init((char *)o->hdr, (unsigned)cut);
    } else {
        iov[n++] = uv_buf_init((char *)o->hdr, o->h.hdr_len);
    }
    uint64_t blen = status == 206   ? last - first + 1
                    : status == 416 ? 0
                                    : o->h.body_len;
    struct sbuf *t = &p->out; /* the tail: dynamic headers */
    t->len = 0;
    if (status != 304 && cc) sb_fmt(t, "Cache-Control: %s\r\n", cc);
    sb_fmt(t, "Age: %" PRId64 "\r\nCache-Status: %s\r\nX-Request-Id: %s\r\n", age,
           p->cs, p->rid);
    if (status == 206)
        sb_fmt(t, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", first,
               last, o->h.body_len);
    if (status == 416)
        sb_fmt(t, "Content-Range: bytes */%" PRIu64 "\r\n", o->h.body_len);
    if (status != 304 && status != 204)
        sb_fmt(t, "Content-Length: %" PRIu64 "\r\n", blen);
    if (!p->keep)
        sb_str(t, "Connection: close\r\n");
    else if (p->http10)
        sb_str(t, "Connection: keep-alive\r\n");
    sb_str(t, "\r\n");
    /* The status line, the 304's headers and the tail are ours (copied if
     * they must wait); the header block and the body are the value's, held
     * until written. */
    unsigned copy = 1u; /* iov[0] */
    if (extra.len) {
        copy |= 1u << n;
        iov[n++] = uv_buf_init(extra.p, (unsigned)extra.len);
    }
    copy |= 1u << n;
    iov[n++] = uv_buf_init(t->p, (unsigned)t->len);
    if (!p->head && !nm && status != 416 && blen)
        iov[n++] = uv_buf_init((char *)o->body + first, (unsigned)blen);
    for (unsigned i = 0; i < n; i++)
        p->bytes += iov[i].len;
    if (p->c)
        http_conn_writev(p->c, iov, n, copy, release_value, v);
    else
        strata_value_release(v);
    sb_free(&extra);
    finish(p, status, p->keep);
}

/* ------------------------------------------------------ request checks */

/* RFC 9110 tchar. */
static const bool tchar[256] = {
    ['!'] = 1,         ['#'] = 1,         ['$'] = 1,         ['%'] = 1, ['&'] = 1,
    ['\''] = 1,        ['*'] = 1,         ['+'] = 1,         ['-'] = 1, ['.'] = 1,
    ['^'] = 1,         ['_'] = 1,         ['`'] = 1,         ['|'] = 1, ['~'] = 1,
    ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
};

static bool token_char(unsigned char ch)
{
    return tchar[ch];
}

static bool in_list(const struct config_strings *l, const char *name, size_t n)
{
    for (size_t i = 0; i < l->n; i++)
        if (strlen(l->v[i]) == n && strncasecmp(l->v[i], name, n) == 0) return true;
    return false;
}

static bool cidr_has(const struct config_cidr *c, const struct sockaddr_storage *ss)
{
    const uint8_t *a;
    size_t alen;
    uint8_t mapped[16];
    if (ss->ss_family == AF_INET) {
        a = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
        alen = 4;
        if (c->family == AF_INET6) { /* v4-mapped form */
            memset(mapped, 0, 10);
            mapped[10] = mapped[11] = 0xff;
            memcpy(mapped + 12, a, 4);
            a = mapped;
            alen = 16;
        }
    } else {
        a = (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
        alen = 16;
    }
    if ((c->family == AF_INET) != (alen == 4)) return false;
    unsigned bits = c->prefix;
    for (size_t i = 0; i < alen && bits; i++) {
        unsigned take = bits >= 8 ? 8 : bits;
        uint8_t mask = (uint8_t)(0xff << (8 - take));
        if ((a[i] & mask) != (c->addr[i] & mask)) return false;
        bits -= take;
    }
    return true;
}

static void peer_ip(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, buf,
                  (socklen_t)n);
    else if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, buf,
                  (socklen_t)n);
    else
        snprintf(buf, n, "unknown");
}

/* The implicit tags of an object: "url:" host path ? query, and "path:"
 * path ? query (for invalidation by path on every host). When that is not a
 * valid tag (too long, or bytes a tag may not hold) the prefix ends in '#'
 * and a hash follows. */
void proxy_url_tag(struct sbuf *tag, const char *host, size_t hl, const char *t,
                   size_t tl)
{
    const char *pre = host ? "url" : "path";
    tag->len = 0;
    sb_str(tag, pre);
    sb_add(tag, ":", 1);
    if (host) sb_add(tag, host, hl);
    sb_add(tag, t, tl);
    bool ok = tag->len <= 256;
    for (size_t i = 0; ok && i < tag->len; i++) {
        unsigned char ch = (unsigned char)tag->p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ',' || ch == '"' || ch == '\\')
            ok = false;
    }
    if (!ok) {
        size_t pl = strlen(pre) + 1;
        XXH128_hash_t h = XXH3_128bits(tag->p + pl, tag->len - pl);
        tag->len = 0;
        sb_fmt(tag, "%s#%016" PRIx64 "%016" PRIx64, pre, (uint64_t)h.high64,
               (uint64_t)h.low64);
    }
    sb_add(tag, "", 1);
    tag->len--;
}

static void url_tag(struct sbuf *tag, const char *host, size_t hl, const char *t,
                    size_t tl)
{
    proxy_url_tag(tag, host, hl, t, tl);
}

/* The request's url tag, made when first needed (a hit needs none). */
static const char *req_tag(struct preq *p)
{
    if (p->tag.len == 0)
        url_tag(&p->tag, p->host.p, p->host.len, p->target.p, p->target.len);
    return p->tag.p;
}

int proxy_target(const char *in, size_t n, struct sbuf *out)
{
    const char *q = memchr(in, '?', n);
    size_t pl = q ? (size_t)(q - in) : n;
    out->len = 0;
    if (sb_add(out, in, n) != 0) return -1;
    size_t len = 0;
    if (proxy_normalize_path(in, pl, out->p, &len) != 0) return -1;
    out->len = len;
    if (q) sb_add(out, q, n - pl);
    return 0;
}

static long purge_url(struct proxy *px, const char *tag)
{
    const char *tags[1] = {tag};
    long n = strata_invalidate_tags(px->cache, tags, 1);
    if (slog_on(SLOG_DEBUG)) {
        char t[600];
        slog_val(t, sizeof t, tag, strlen(tag));
        slog(SLOG_DEBUG, "msg=\"invalidate\" tag=%s removed=%ld", t, n);
    }
    return n < 0 ? 0 : n;
}

/* Invalidate a URL named by Location / Content-Location of an unsafe
 * method's response: a path, or an absolute URL on the request's host. */
static void purge_location(struct preq *p, const char *v, size_t n)
{
    struct proxy *px = p->pw->px;
    const char *path = v;
    size_t plen = n;
    if (n > 7 && strncasecmp(v, "http://", 7) == 0) {
        const char *h = v + 7;
        const char *slash = memchr(h, '/', n - 7);
        size_t hl = slash ? (size_t)(slash - h) : n - 7;
        if (hl != p->host.len || strncasecmp(h, p->host.p, hl) != 0) return;
        path = slash ? slash : "/";
        plen = slash ? n - 7 - hl : 1;
    } else if (n == 0 || v[0] != '/') {
        return;
    }
    const char *q = memchr(path, '?', plen);
    size_t pl = q ? (size_t)(q - path) : plen;
    struct sbuf t = {0};
    if (sb_add(&t, path, plen + 1) != 0) return;
    size_t out = 0;
    if (proxy_normalize_path(path, pl, t.p, &out) == 0) {
        t.len = out;
        if (q) {
            t.len = out;
            struct sbuf t2 = {0};
            sb_add(&t2, t.p, out);
            sb_add(&t2, q, plen - pl);
            struct sbuf tag = {0};
            url_tag(&tag, p->host.p, p->host.len, t2.p, t2.len);
            purge_url(px, tag.p);
            sb_free(&tag);
            sb_free(&t2);
        } else {
            struct sbuf tag = {0};
            url_tag(&tag, p->host.p, p->host.len, t.p, out);
            purge_url(px, tag.p);
            sb_free(&tag);
        }
    }
    sb_free(&t);
}

/* ------------------------------------------------------- upstream head */

/* The request head for the origin: the normalised target, the client's
 * headers without hop-by-hop ones, the headers named in Connection and
 * server.strip_request_headers; X-Forwarded-For/-Proto set by strata. A
 * cache fetch (`fetch`) also drops the client's conditionals and Range and
 * asks with GET; `reval` adds the stored object's validators. */
static char *build_head(struct preq *p, bool fetch, const struct hview *reval,
                        size_t *len)
{
    struct proxy *px = p->pw->px;
    const struct http_msg *m = p->msg;
    struct sbuf b = {0};
    const struct http_header *conn_h = http_find(m, "connection", NULL);
    const char *method = fetch ? "GET" : llhttp_method_name(p->method);
    sb_fmt(&b, "%s ", method);
    sb_add(&b, p->target.p, p->target.len);
    sb_str(&b, " HTTP/1.1\r\n");
    const struct http_header *xff = NULL;
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        if (http_hop_by_hop(h->name, h->nlen)) continue;
        if (http_name_is(h, "content-length") || http_name_is(h, "expect")) continue;
        if (http_name_is(h, "x-forwarded-for")) {
            xff = h;
            continue;
        }
        if (http_name_is(h, "x-forwarded-proto")) continue;
        if (http_name_is(h, "x-request-id")) continue; /* p->rid, below */
        if (in_list(&px->cfg->server.strip_request_headers, h->name, h->nlen)) continue;
        if (http_named_in(conn_h, h)) continue;
        if (fetch &&
            (http_name_is(h, "range") || http_name_is(h, "if-range") ||
             http_name_is(h, "if-none-match") || http_name_is(h, "if-modified-since") ||
             http_name_is(h, "if-match") || http_name_is(h, "if-unmodified-since")))
            continue;
        sb_add(&b, h->name, h->nlen);
        sb_add(&b, ": ", 2);
        sb_add(&b, h->value, h->vlen);
        sb_add(&b, "\r\n", 2);
    }
    char ip[64];
    peer_ip(&p->peer, ip, sizeof ip);
    if (xff)
        sb_fmt(&b, "X-Forwarded-For: %.*s, %s\r\n", (int)xff->vlen, xff->value, ip);
    else
        sb_fmt(&b, "X-Forwarded-For: %s\r\n", ip);
    sb_str(&b, "X-Forwarded-Proto: http\r\n");
    /* The client's id when it was valid, else strata's: the origin logs the
     * id the client is answered with. */
    sb_fmt(&b, "X-Request-Id: %s\r\n", p->rid);
    if (reval) {
        if (reval->h.etag_len) {
            sb_str(&b, "If-None-Match: ");
            sb_add(&b, reval->hdr + reval->h.etag_off, reval->h.etag_len);
            sb_str(&b, "\r\n");
        }
        if (reval->h.lm_s >= 0) {
            char d[32];
            http_date_fmt(reval->h.lm_s, d);
            sb_fmt(&b, "If-Modified-Since: %s\r\n", d);
        }
    }
    if (!fetch && p->body) {
        if (p->body_chunked)
            sb_str(&b, "Transfer-Encoding: chunked\r\n");
        else
            sb_fmt(&b, "Content-Length: %" PRIu64 "\r\n", (uint64_t)p->content_length);
    }
    sb_str(&b, "\r\n");
    *len = b.len;
    return b.p;
}

/* -------------------------------------------------------- store policy */

static const int heuristic_status[] = {200, 203, 204, 300, 301, 308,
                                       404, 405, 410, 414, 501};

static bool heuristic_ok(int status)
{
    for (size_t i = 0; i < sizeof heuristic_status / sizeof *heuristic_status; i++)
        if (heuristic_status[i] == status) return true;
    return false;
}

struct tagctx {
    struct preq *p;
    bool bad;
    unsigned extra; /* room beyond MAX_TAGS (the url tag) */
};

static int add_tag(void *ud, const char *t, size_t n)
{
    struct tagctx *tc = ud;
    struct preq *p = tc->p;
    /* skip duplicates */
    const char *s = p->tags.p, *end = s + p->tags.len;
    while (s && s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if ((size_t)(nl - s) == n && memcmp(s, t, n) == 0) return 0;
        s = nl + 1;
    }
    if (++p->ntags > MAX_TAGS + tc->extra) {
        tc->bad = true;
        return -1;
    }
    sb_add(&p->tags, t, n);
    sb_add(&p->tags, "\n", 1);
    return 0;
}

/* Decide whether the response (status, headers `m`) may be stored, and with
 * what freshness. Fills p->ho, p->vary, p->tags. Returns NULL (storable) or
 * the reason it is not (Cache-Status detail). */
static const char *decide(struct preq *p, int status, const struct http_msg *m)
{
    struct proxy *px = p->pw->px;
    const struct config_http *hc = &px->cfg->http;
    const struct config_route *r = p->route;
    cc_directives cc;
    cc_init(&cc);
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], "cache-control"))
            cc_parse(&cc, m->h[i].value, m->h[i].vlen);
    memset(&p->ho, 0, sizeof p->ho);
    p->vary.len = p->tags.len = 0;
    p->ntags = 0;
    /* The route's vary headers and cookies join the response's Vary: the
     * object's variants are keyed by all of them. */
    if (r) {
        for (size_t i = 0; i < r->vary_headers.n; i++) {
            for (const char *c = r->vary_headers.v[i]; *c; c++) {
                char ch = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c;
                sb_add(&p->vary, &ch, 1);
            }
            sb_add(&p->vary, "\n", 1);
        }
        for (size_t i = 0; i < r->vary_cookies.n; i++) {
            sb_add(&p->vary, "=", 1);
            sb_str(&p->vary, r->vary_cookies.v[i]);
            sb_add(&p->vary, "\n", 1);
        }
    }
    if (p->req_no_store) return "no-store";
    if (status < 200 || status == 206 || status == 304) return "status";
    if (cc.no_store) return "no-store";
    if (cc.private_ && !p->per_user) return "private";
    if (http_find(m, "set-cookie", NULL)) return "set-cookie";
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        if (!http_name_is(h, "vary")) continue;
        size_t j = 0;
        while (j < h->vlen) {
            while (j < h->vlen && (h->value[j] == ' ' || h->value[j] == ','))
                j++;
            size_t s = j;
            while (j < h->vlen && h->value[j] != ',' && h->value[j] != ' ')
                j++;
            if (j == s) continue;
            if (j - s == 1 && h->value[s] == '*') return "vary";
            for (size_t k = s; k < j; k++) {
                char ch = h->value[k];
                if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
                sb_add(&p->vary, &ch, 1);
            }
            sb_add(&p->vary, "\n", 1);
        }
    }
    bool credentials = p->has_auth && !p->per_user;
    if (credentials && !cc.public_ && cc.s_maxage < 0 && !cc.must_revalidate)
        return "auth";

    int64_t now = proxy_wall_ms();
    const struct http_header *dh = http_find(m, "date", NULL);
    int64_t date = dh ? http_date_parse(dh->value, dh->vlen) : -1;
    const struct http_header *lmh = http_find(m, "last-modified", NULL);
    p->ho.lm_s = lmh ? http_date_parse(lmh->value, lmh->vlen) : -1;
    const struct http_header *eh = http_find(m, "etag", NULL);
    bool validators = eh != NULL || p->ho.lm_s >= 0;

    int64_t fresh = -1;
    bool explicit_ = true;
    if (cc.invalid)
        fresh = 0;
    else if (cc.s_maxage >= 0)
        fresh = cc.s_maxage * 1000;
    else if (cc.max_age >= 0)
        fresh = cc.max_age * 1000;
    else {
        const struct http_header *xh = http_find(m, "expires", NULL);
        if (xh) {
            int64_t exp = http_date_parse(xh->value, xh->vlen);
            int64_t base = date >= 0 ? date : now / 1000;
            fresh = exp < 0 ? 0 : (exp - base) * 1000;
            if (fresh < 0) fresh = 0;
        } else {
            explicit_ = false;
        }
    }
    if (!explicit_) {
        if (!heuristic_ok(status)) return "status";
        if (r && r->ttl_ms != -2)
            fresh = r->ttl_ms < 0 ? INT64_MAX / 4 : r->ttl_ms;
        else if (hc->default_ttl_ms > 0)
            fresh = hc->default_ttl_ms;
        else if (hc->default_ttl_ms < 0)
            fresh = INT64_MAX / 4;
        else if (hc->heuristic && p->ho.lm_s >= 0 && date >= 0 && date > p->ho.lm_s) {
            fresh = (date - p->ho.lm_s) * 100; /* 10% of the age, in ms */
            if (fresh > 86400000) fresh = 86400000;
        } else
            return "no-freshness";
    }
    if (cc.no_cache && !cc.no_cache_fields) p->ho.flags |= HOBJ_NO_CACHE;
    if (cc.must_revalidate || cc.proxy_revalidate || cc.no_cache)
        p->ho.flags |= HOBJ_MUST_REVALIDATE;
    int64_t swr = r && r->swr_ms != -2             ? r->swr_ms
                  : cc.stale_while_revalidate >= 0 ? cc.stale_while_revalidate * 1000
                                                   : 0;
    int64_t sie = r && r->sie_ms != -2     ? r->sie_ms
                  : cc.stale_if_error >= 0 ? cc.stale_if_error * 1000
                                           : 0;
    if (p->ho.flags & HOBJ_MUST_REVALIDATE) swr = sie = 0;
    if (swr < 0) swr = 0;
    if (sie < 0) sie = 0;
    if (p->ho.flags & HOBJ_NO_CACHE) fresh = 0;
    if (fresh <= 0 && !validators && swr == 0 && sie == 0) return "no-freshness";

    /* Age (RFC 9111 4.2.3). */
    const struct http_header *ah = http_find(m, "age", NULL);
    int64_t age_value = 0;
    if (ah) {
        age_value = 0;
        for (size_t i = 0; i < ah->vlen && ah->value[i] >= '0' && ah->value[i] <= '9';
             i++)
            if (age_value < CC_DELTA_MAX)
                age_value = age_value * 10 + (ah->value[i] - '0');
        age_value *= 1000;
    }
    /* RFC 9111 4.2.3 also takes the apparent age (now - Date); like
     * Varnish, strata does not: a origin clock that runs behind would make
     * every response arrive stale. Age and the response delay count. */
    int64_t corrected = age_value + (now - p->req_wall);
    p->ho.init_age_ms = corrected > 0 ? corrected : 0;
    p->ho.resp_wall_ms = now;
    p->ho.fresh_ms = fresh;
    p->ho.swr_ms = swr;
    p->ho.sie_ms = sie;
    p->ho.status = (uint16_t)status;

    /* Tags: the response's tag headers, the route's, the URL's. */
    struct tagctx tc = {p, false, 0};
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        for (size_t j = 0; j < hc->tag_headers.n; j++)
            if (http_name_is(h, hc->tag_headers.v[j])) {
                if (proxy_tags_parse(proxy_tag_syntax(hc->tag_headers.v[j]), h->value,
                                     h->vlen, add_tag, &tc) < 0)
                    tc.bad = true;
            }
    }
    if (r)
        for (size_t j = 0; j < r->tags.n; j++)
            add_tag(&tc, r->tags.v[j], strlen(r->tags.v[j]));
    tc.extra = 2;
    req_tag(p);
    add_tag(&tc, p->tag.p, p->tag.len);
    url_tag(&p->ptag, NULL, 0, p->target.p, p->target.len);
    add_tag(&tc, p->ptag.p, p->ptag.len);
    if (tc.bad) {
        char u[600];
        slog_val(u, sizeof u, p->target.p, p->target.len);
        slog(SLOG_WARN, "msg=\"not stored: bad or too many tags (max %d)\" url=%s",
             MAX_TAGS - 1, u);
        return "tags";
    }
    return NULL;
}

static bool is_tag_header(struct proxy *px, const struct http_header *h)
{
    const struct config_strings *t = &px->cfg->http.tag_headers;
    for (size_t j = 0; j < t->n; j++)
        if (http_name_is(h, t->v[j])) return true;
    return false;
}

/* The response header block: what the client gets (and the object keeps).
 * `stored`: for an object (Age dropped; Cache-Control lines last; Date
 * added when the origin sent none); else for a stream (the route's
 * Cache-Control replaces the origin's). Sets etag_off/len. */
static void build_hdr(struct preq *p, const struct http_msg *m, bool stored)
{
    struct proxy *px = p->pw->px;
    struct sbuf *b = &p->hdr;
    const struct http_header *conn_h = http_find(m, "connection", NULL);
    bool strip_tags = px->cfg->http.strip_tag_headers;
    bool has_date = false;
    b->len = 0;
    p->ho.etag_off = p->ho.etag_len = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < m->nh; i++) {
            const struct http_header *h = &m->h[i];
            bool is_cc = http_name_is(h, "cache-control");
            if (is_cc != (pass == 1)) continue;
            if (http_hop_by_hop(h->name, h->nlen) || http_name_is(h, "content-length"))
                continue;
            if (stored && http_name_is(h, "age")) continue;
            if (http_name_is(h, "x-request-id")) continue; /* strata's own is added */
            if (strip_tags && is_tag_header(px, h)) continue;
            if (http_named_in(conn_h, h)) continue;
            if (is_cc && !stored && p->route && p->route->cache_control) continue;
            if (http_name_is(h, "date")) has_date = true;
            sb_add(b, h->name, h->nlen);
            sb_add(b, ": ", 2);
            if (http_name_is(h, "etag")) {
                p->ho.etag_off = (uint32_t)b->len;
                p->ho.etag_len = h->vlen;
            }
            sb_add(b, h->value, h->vlen);
            sb_add(b, "\r\n", 2);
        }
        if (pass == 0 && !has_date) {
            char d[32];
            http_date_fmt(proxy_wall_ms() / 1000, d);
            sb_fmt(b, "Date: %s\r\n", d);
        }
    }
    if (!stored && p->route && p->route->cache_control)
        sb_fmt(b, "Cache-Control: %s\r\n", p->route->cache_control);
}

/* ------------------------------------------------------------- storing */

static core_blob *make_object(struct preq *p, const void *body, size_t blen)
{
    p->ho.magic = HOBJ_MAGIC;
    p->ho.hdr_len = (uint32_t)p->hdr.len;
    p->ho.vary_len = (uint32_t)p->vary.len;
    p->ho.tags_len = (uint32_t)p->tags.len;
    p->ho.body_len = blen;
    size_t len = sizeof p->ho + p->hdr.len + p->vary.len + p->tags.len + blen;
    char *buf = malloc(len ? len : 1);
    if (buf == NULL) return NULL;
    char *q = buf;
    memcpy(q, &p->ho, sizeof p->ho);
    q += sizeof p->ho;
    memcpy(q, p->hdr.p, p->hdr.len);
    q += p->hdr.len;
    if (p->vary.len) memcpy(q, p->vary.p, p->vary.len);
    q += p->vary.len;
    if (p->tags.len) memcpy(q, p->tags.p, p->tags.len);
    q += p->tags.len;
    if (blen) memcpy(q, body, blen);
    return core_blob_take(buf, len);
}

static int64_t engine_ttl(const struct hobj *h, bool validators, int64_t keep)
{
    int64_t extra = h->swr_ms > h->sie_ms ? h->swr_ms : h->sie_ms;
    if (validators && keep > extra) extra = keep;
    int64_t fresh = h->fresh_ms - h->init_age_ms;
    if (fresh < 0) fresh = 0;
    int64_t ttl = fresh + extra;
    if (h->fresh_ms >= INT64_MAX / 4) return -1; /* never */
    return ttl > 0 ? ttl : 1;
}

/* Split p->tags into the array strata_set_opts wants (NUL-terminated in a
 * copy). */
static size_t tag_array(struct preq *p, const char **out, char *copy)
{
    size_t n = 0;
    memcpy(copy, p->tags.p, p->tags.len);
    char *s = copy, *end = copy + p->tags.len;
    while (s < end && n < MAX_TAGS + 2) {
        char *nl = memchr(s, '\n', (size_t)(end - s));
        *nl = 0;
        out[n++] = s;
        s = nl + 1;
    }
    return n;
}

/* A PURGE (or any invalidation of the object's tags) made while it was being
 * fetched wins: the object is not stored. */
struct store_veto {
    struct preq *p;
    const char *const *tags;
    size_t n;
};

static bool vetoed(void *ud)
{
    struct store_veto *sv = ud;
    return strata_cache_tags_invalidated_since(sv->p->pw->px->cache, sv->tags, sv->n,
                                               sv->p->since);
}

static void store(struct preq *p, core_blob *b)
{
    struct proxy *px = p->pw->px;
    const char *tags[MAX_TAGS + 2];
    char *copy = malloc(p->tags.len + 1);
    if (copy == NULL) return;
    size_t nt = tag_array(p, tags, copy);
    bool validators = p->ho.etag_len || p->ho.lm_s >= 0;
    strata_set_opts o = {engine_ttl(&p->ho, validators, px->cfg->http.keep_ms), tags,
                         nt};
    struct store_veto sv = {p, tags, nt};
    engine_veto veto = {vetoed, &sv};
    if (p->vary.len) {
        struct hobj vr = {0};
        vr.magic = HOBJ_VARY;
        /* How many variants the URL has (approximate: two new variants stored
         * at once count one). */
        unsigned nv = p->variants + (p->vary_miss || p->variants == 0 ? 1 : 0);
        vr.status = (uint16_t)(nv > 65535 ? 65535 : nv);
        vr.vary_len = (uint32_t)p->vary.len;
        struct sbuf v = {0};
        sb_add(&v, &vr, sizeof vr);
        sb_add(&v, p->vary.p, p->vary.len);
        const char *utag[1] = {req_tag(p)};
        strata_set_opts vo = {o.ttl_ms, utag, 1};
        strata_set(px->cache, p->key.p, p->key.len, v.p, v.len, &vo);
        sb_free(&v);
        if (p->msg) {
            p->vkey.len = 0;
            sb_add(&p->vkey, p->key.p, p->key.len);
        }
        if (p->msg)
            sb_fmt(&p->vkey, KEY_SEP "v:%016" PRIx64,
                   vary_hash_spec(p->msg, p->vary.p, p->vary.len));
        else if (p->vkey.len <= p->key.len) { /* a refresh without the request */
            free(copy);
            return;
        }
        int rc = strata_cache_set_blob(px->cache, p->vkey.p, p->vkey.len, b, &o, &veto);
        debug_op(p, "set", rc == STRATA_OK ? "stored" : strata_errname(rc));
    } else {
        int rc = strata_cache_set_blob(px->cache, p->key.p, p->key.len, b, &o, &veto);
        debug_op(p, "set", rc == STRATA_OK ? "stored" : strata_errname(rc));
    }
    free(copy);
}

static void store_hfm(struct preq *p)
{
    struct hobj h = {0};
    h.magic = HOBJ_HFM;
    strata_set_opts o = {HFM_TTL_MS, NULL, 0};
    const char *tags[1] = {req_tag(p)};
    o.tags = tags;
    o.ntags = 1;
    strata_set(p->pw->px->cache, p->key.p, p->key.len, &h, sizeof h, &o);
}

/* ------------------------------------------------------------ fetching */

static void lookup(struct preq *p);
static bool start_fetch(struct preq *p, const struct hview *reval);

static void serve_stale(struct preq *p, const char *detail)
{
    int64_t now = proxy_wall_ms();
    int64_t over = (hobj_age_ms(&p->sv.h, now) - p->sv.h.fresh_ms) / 1000;
    cs_set(p, "strata; hit; ttl=%" PRId64 "; detail=%s", -(over > 0 ? over : 0),
           detail);
    p->result = PR_STALE;
    strata_value *v = p->stale;
    p->stale = NULL;
    struct hview o = p->sv;
    serve_obj(p, v, &o);
}

static bool sie_ok(struct preq *p)
{
    if (p->stale == NULL || p->sv.h.sie_ms <= 0) return false;
    int64_t over = hobj_age_ms(&p->sv.h, proxy_wall_ms()) - p->sv.h.fresh_ms;
    return over <= p->sv.h.sie_ms;
}

static void send_error(struct preq *p, enum up_error e)
{
    int status = e == UP_TIMEOUT ? 504 : 502;
    if (p->cs[0] == 0 || strstr(p->cs, "fwd=") == NULL)
        cs_set(p, "strata; fwd=uri-miss; detail=origin-error");
    else
        cs_set(p, "strata; fwd=%s; detail=%s", p->stale ? "stale" : "uri-miss",
               e == UP_CONNECT   ? "connect-error"
               : e == UP_TIMEOUT ? "timeout"
                                 : "origin-error");
    char u[600];
    slog_val(u, sizeof u, p->target.p, p->target.len);
    slog(SLOG_WARN, "msg=\"origin %s\" url=%s request_id=%s",
         e == UP_CONNECT   ? "unreachable"
         : e == UP_TIMEOUT ? "timed out"
                           : "failed",
         u, p->rid);
    p->keep = false;
    respond_simple(
        p, status, "text/plain",
        status == 504 ? "origin timed out\n" : "origin unreachable or failed\n", NULL);
}

static void wake(struct http_worker *w, void *arg)
{
    (void)w;
    struct preq *p = arg;
    p->waiting = false;
    atomic_fetch_sub(&flight_waiters, 1);
    if (p->c == NULL) { /* the client left while waiting */
        preq_put(p);
        return;
    }
    p->collapsed = true;
    if (p->failed) {
        if (sie_ok(p)) {
            serve_stale(p, "sie");
            return;
        }
        send_error(p, p->err);
        return;
    }
    lookup(p);
}

/* Streamed bodies: written as they come, from the origin connection's read
 * buffer when they are in it (`from_read`), without a copy; the origin
 * waits when the client is slow. */
struct chunk_line {
    void *hold;
    char line[24];
};

static void chunk_line_done(void *arg)
{
    struct chunk_line *cl = arg;
    up_buf_unref(cl->hold);
    free(cl);
}

static void stream_body(struct preq *p, const char *d, size_t n, bool from_read)
{
    if (p->c == NULL || n == 0 || p->head) return;
    void *hold = from_read ? up_buf_ref(p->up) : NULL;
    if (p->chunked_out) {
        struct chunk_line *cl = malloc(sizeof *cl);
        if (cl == NULL) {
            up_buf_unref(hold);
            http_conn_abort(p->c);
            return;
        }
        int hn = snprintf(cl->line, sizeof cl->line, "%zx\r\n", n);
        cl->hold = hold;
        uv_buf_t iov[3] = {uv_buf_init(cl->line, (unsigned)hn),
                           uv_buf_init((char *)d, (unsigned)n), uv_buf_init("\r\n", 2)};
        if (hold == NULL) { /* copy: the bytes do not outlive this call */
            char *copy = malloc((size_t)hn + n + 2);
            if (copy == NULL) {
                free(cl);
                http_conn_abort(p->c);
                return;
            }
            memcpy(copy, cl->line, (size_t)hn);
            free(cl);
            memcpy(copy + hn, d, n);
            memcpy(copy + hn + n, "\r\n", 2);
            uv_buf_t one = uv_buf_init(copy, (unsigned)((size_t)hn + n + 2));
            http_conn_write(p->c, &one, 1, free, copy);
        } else {
            http_conn_write(p->c, iov, 3, chunk_line_done, cl);
        }
        p->bytes += (size_t)hn + n + 2;
    } else if (hold) {
        uv_buf_t b = uv_buf_init((char *)d, (unsigned)n);
        http_conn_write(p->c, &b, 1, up_buf_unref, hold);
        p->bytes += n;
    } else {
        http_conn_write_copy(p->c, d, n);
        p->bytes += n;
    }
    if (p->c && p->up && http_conn_queued(p->c) >= HTTP_QUEUE_HIGH) up_req_pause(p->up);
}

/* The header block in p->hdr was built for storing (Cache-Control lines
 * last, the origin's): for the client, the route's Cache-Control replaces
 * them. */
static void add_stream_hdr(struct preq *p, struct sbuf *b)
{
    if (!(p->hdr_stored && p->route && p->route->cache_control)) {
        sb_add(b, p->hdr.p, p->hdr.len);
        return;
    }
    size_t i = 0, cut = p->hdr.len;
    while (i < p->hdr.len) {
        char *eol = memmem(p->hdr.p + i, p->hdr.len - i, "\r\n", 2);
        if (eol == NULL) break;
        if (p->hdr.len - i >= 14 &&
            strncasecmp(p->hdr.p + i, "cache-control:", 14) == 0) {
            cut = i;
            break;
        }
        i = (size_t)(eol - p->hdr.p) + 2;
    }
    sb_add(b, p->hdr.p, cut);
    sb_fmt(b, "Cache-Control: %s\r\n", p->route->cache_control);
}

static void stream_head(struct preq *p)
{
    struct sbuf b = {0};
    p->stream_head_sent = true;
    sb_fmt(&b, "HTTP/1.1 %d %s\r\n", p->status, http_reason(p->status));
    add_stream_hdr(p, &b);
    sb_fmt(&b, "Cache-Status: %s\r\nX-Request-Id: %s\r\n", p->cs, p->rid);
    bool nobody =
        p->status == 204 || p->status == 304 || (p->status >= 100 && p->status < 200);
    if (p->content_length >= 0 && !nobody) {
        sb_fmt(&b, "Content-Length: %" PRId64 "\r\n", p->content_length);
    } else if (!nobody && !p->head) {
        if (p->http10)
            p->keep = false; /* the close delimits the body */
        else {
            p->chunked_out = true;
            sb_str(&b, "Transfer-Encoding: chunked\r\n");
        }
    }
    if (!p->keep)
        sb_str(&b, "Connection: close\r\n");
    else if (p->http10)
        sb_str(&b, "Connection: keep-alive\r\n");
    sb_str(&b, "\r\n");
    p->bytes += b.len;
    if (p->c) {
        uv_buf_t ub = uv_buf_init(b.p, (unsigned)b.len);
        http_conn_write(p->c, &ub, 1, free, b.p);
    } else {
        sb_free(&b);
    }
}

static void invalidate_after_unsafe(struct preq *p, const struct http_msg *m)
{
    struct proxy *px = p->pw->px;
    purge_url(px, req_tag(p));
    const struct http_header *h;
    if ((h = http_find(m, "location", NULL))) purge_location(p, h->value, h->vlen);
    if ((h = http_find(m, "content-location", NULL)))
        purge_location(p, h->value, h->vlen);
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], "cache-group-invalidation")) {
            struct sbuf tmp = {0};
            struct preq q = {0};
            q.pw = p->pw;
            q.tags = tmp;
            struct tagctx tc = {&q, false, 0};
            proxy_tags_parse(TAGS_SF_STRINGS, m->h[i].value, m->h[i].vlen, add_tag,
                             &tc);
            const char *tags[MAX_TAGS + 2];
            char *copy = malloc(q.tags.len + 1);
            if (copy) {
                size_t nt = tag_array(&q, tags, copy);
                if (nt) strata_invalidate_tags(px->cache, tags, nt);
                free(copy);
            }
            sb_free(&q.tags);
        }
}

static int on_up_head(void *ud, int status, struct http_msg *m, bool chunked,
                      int64_t len)
{
    struct preq *p = ud;
    struct proxy *px = p->pw->px;
    (void)chunked;
    p->up_ns = (int64_t)(uv_hrtime() - p->tup);
    p->status = status;
    p->content_length = len;

    if (!p->cacheable) { /* pass */
        if (p->method != HTTP_GET && p->method != HTTP_HEAD &&
            p->method != HTTP_OPTIONS && p->method != HTTP_TRACE && status >= 200 &&
            status < 400)
            invalidate_after_unsafe(p, m);
        build_hdr(p, m, false);
        p->streaming = true;
        stream_head(p);
        return 0;
    }
    /* Revalidation answered 304: freshen the stored object. */
    if (p->reval && status == 304 && p->stale) {
        p->freshen = true;
        note_decision(p, status, m, true, "revalidated");
        /* merged headers: the stored ones, replaced by those the 304 has */
        struct sbuf *mb = &p->tmp;
        mb->len = 0;
        const char *hb = p->sv.hdr, *end = hb + p->sv.h.hdr_len;
        while (hb < end) {
            const char *eol = memmem(hb, (size_t)(end - hb), "\r\n", 2);
            const char *colon = memchr(hb, ':', (size_t)(eol - hb));
            bool replaced = false;
            if (colon) {
                for (size_t i = 0; i < m->nh; i++)
                    if (m->h[i].nlen == (size_t)(colon - hb) &&
                        strncasecmp(m->h[i].name, hb, m->h[i].nlen) == 0 &&
                        !http_name_is(&m->h[i], "content-length"))
                        replaced = true;
            }
            if (!replaced) sb_add(mb, hb, (size_t)(eol - hb) + 2);
            hb = eol + 2;
        }
        for (size_t i = 0; i < m->nh; i++) {
            if (http_name_is(&m->h[i], "content-length")) continue;
            sb_add(mb, m->h[i].name, m->h[i].nlen);
            sb_add(mb, ": ", 2);
            sb_add(mb, m->h[i].value, m->h[i].vlen);
            sb_add(mb, "\r\n", 2);
        }
        return 0;
    }
    if (status >= 500 && sie_ok(p)) {
        p->use_stale = true;
        return 0;
    }
    const char *why = decide(p, status, m);
    if (why == NULL && p->vary.len && p->vary_miss &&
        p->variants >= px->cfg->http.max_variants)
        why = "variants";
    const char *fwd = p->req_no_cache ? "request"
                      : p->stale      ? "stale"
                      : p->vary_miss  ? "vary-miss"
                                      : "uri-miss";
    if (why == NULL && len > (int64_t)px->cfg->http.max_object_size) why = "too-big";
    p->storable = why == NULL;
    p->reason = why;
    note_decision(p, status, m, p->storable, why);
    if (why)
        cs_set(p, "strata; fwd=%s; fwd-status=%d; detail=%s", fwd, status, why);
    else
        cs_set(p, "strata; fwd=%s; fwd-status=%d; stored", fwd, status);
    p->result = p->reval && status == 304 ? PR_REVALIDATED : PR_MISS;
    build_hdr(p, m, p->storable);
    p->hdr_stored = p->storable;
    if (p->storable) {
        p->buffering = true;
        return 0;
    }
    /* Not storable: remember that for a while (later requests skip the
     * queue), and stream. */
    /* (Not over a vary record: the URL's other variants stay usable.) */
    if (p->owner && !p->vary_miss) store_hfm(p);
    if (p->owner) flight_end(p, false, UP_BROKEN);
    if (p->background) {
        p->up = NULL;
        finish(p, status, false);
        return -1;
    }
    p->streaming = true;
    stream_head(p);
    if (p->head) { /* HEAD asked as GET: the body is not wanted */
        p->up = NULL;
        finish(p, status, p->keep);
        return -1;
    }
    return 0;
}

/* A storable response of unknown length is kept whole up to this many
 * bytes before the client sees any of it; past that it streams to the
 * client while strata keeps reading it for the cache. */
#define STREAM_AFTER (256u << 10)

static void on_up_body(void *ud, const char *d, size_t n)
{
    struct preq *p = ud;
    struct proxy *px = p->pw->px;
    if (p->use_stale || p->freshen) return;
    if (p->buffering) {
        if (p->bodyb.len + n > px->cfg->http.max_object_size) {
            /* Too big after all (no Content-Length): stream from here. */
            p->buffering = false;
            p->storable = false;
            p->reason = "too-big";
            note_decision(p, 0, NULL, false, "too-big");
            if (p->owner) flight_end(p, false, UP_BROKEN);
            if (p->background) {
                sb_free(&p->bodyb); /* the rest is read and dropped */
                return;
            }
            if (!p->streaming) {
                cs_set(p, "strata; fwd=%s; fwd-status=%d; detail=too-big",
                       p->stale ? "stale" : "uri-miss", p->status);
                p->streaming = true;
                stream_head(p);
                stream_body(p, p->bodyb.p, p->bodyb.len, false);
            }
            sb_free(&p->bodyb);
        } else {
            sb_add(&p->bodyb, d, n);
            if (!p->streaming && p->c && !p->background && p->content_length < 0 &&
                p->bodyb.len > STREAM_AFTER && !p->head) {
                /* Still arriving: the client gets it as it comes; the cache
                 * keeps reading. Whether it is stored is not known yet. */
                cs_set(p, "strata; fwd=%s; fwd-status=%d; detail=streaming",
                       p->stale ? "stale" : "uri-miss", p->status);
                p->streaming = true;
                stream_head(p);
                stream_body(p, p->bodyb.p, p->bodyb.len, false);
            } else if (p->streaming) {
                stream_body(p, d, n, true);
            }
            return;
        }
    }
    if (p->streaming) stream_body(p, d, n, true);
}

static void on_up_done(void *ud)
{
    struct preq *p = ud;
    struct proxy *px = p->pw->px;
    p->up = NULL;
    if (p->use_stale) {
        /* The origin failed (5xx): the waiters answer for themselves (stale
         * within their window, or the error) rather than refetch in turn. */
        flight_end(p, true, UP_BROKEN);
        if (p->background) {
            finish(p, 0, false);
            return;
        }
        serve_stale(p, "sie");
        return;
    }
    if (p->freshen) {
        /* Re-store the object with the merged headers, the old body. */
        struct http_msg mm = {0};
        struct http_header hs[256];
        mm.h = hs;
        mm.maxh = 256;
        char *hb = p->tmp.p, *end = hb + p->tmp.len;
        while (hb < end && mm.nh < 256) {
            char *eol = memmem(hb, (size_t)(end - hb), "\r\n", 2);
            char *colon = memchr(hb, ':', (size_t)(eol - hb));
            if (colon) {
                struct http_header *h = &hs[mm.nh++];
                h->name = hb;
                h->nlen = (uint32_t)(colon - hb);
                const char *v = colon + 1;
                while (v < eol && *v == ' ')
                    v++;
                h->value = v;
                h->vlen = (uint32_t)(eol - v);
            }
            hb = eol + 2;
        }
        const char *why = decide(p, p->sv.h.status, &mm);
        if (why ==
            NULL) { /* the stored object's tags stay (its tag headers are gone) */
            struct tagctx tc = {p, false, 2};
            const char *t = p->sv.tags, *tend = t + p->sv.h.tags_len;
            while (t < tend) {
                const char *nl = memchr(t, '\n', (size_t)(tend - t));
                if (nl == NULL) break;
                add_tag(&tc, t, (size_t)(nl - t));
                t = nl + 1;
            }
        }
        cs_set(p, "strata; fwd=stale; fwd-status=304");
        p->result = PR_REVALIDATED;
        if (why == NULL) {
            build_hdr(p, &mm, true);
            core_blob *b = make_object(p, p->sv.body, p->sv.h.body_len);
            if (b) {
                store(p, b);
                flight_end(p, false, UP_BROKEN);
                if (p->background) {
                    core_blob_release(b);
                    finish(p, 0, false);
                    return;
                }
                strata_value *v = core_value_blob(b);
                core_blob_release(b);
                struct hview o;
                if (v &&
                    hobj_view(strata_value_data(v), strata_value_len(v), &o) == 0) {
                    serve_obj(p, v, &o);
                    return;
                }
                if (v) strata_value_release(v);
            }
        }
        flight_end(p, false, UP_BROKEN);
        if (p->background) {
            finish(p, 0, false);
            return;
        }
        /* Not storable any more: the client still gets the (validated)
         * stored response. */
        strata_value *v = p->stale;
        p->stale = NULL;
        struct hview o = p->sv;
        serve_obj(p, v, &o);
        return;
    }
    if (p->buffering) {
        core_blob *b = make_object(p, p->bodyb.p, p->bodyb.len);
        sb_free(&p->bodyb);
        if (b == NULL) {
            flight_end(p, true, UP_BROKEN);
            if (p->background) {
                finish(p, 0, false);
                return;
            }
            send_error(p, UP_BROKEN);
            return;
        }
        store(p, b);
        flight_end(p, false, UP_BROKEN);
        if (p->background || p->streaming) {
            core_blob_release(b);
            if (p->streaming) {
                if (p->chunked_out && p->c) {
                    http_conn_write(p->c, &(uv_buf_t){.base = "0\r\n\r\n", .len = 5}, 1,
                                    NULL, NULL);
                    p->bytes += 5;
                }
                finish(p, p->status, p->keep);
                return;
            }
            finish(p, 0, false);
            return;
        }
        strata_value *v = core_value_blob(b);
        core_blob_release(b);
        struct hview o;
        if (v == NULL ||
            hobj_view(strata_value_data(v), strata_value_len(v), &o) != 0) {
            if (v) strata_value_release(v);
            send_error(p, UP_BROKEN);
            return;
        }
        serve_obj(p, v, &o);
        return;
    }
    flight_end(p, false, UP_BROKEN);
    if (p->chunked_out && p->c) {
        http_conn_write(p->c, &(uv_buf_t){.base = "0\r\n\r\n", .len = 5}, 1, NULL,
                        NULL);
        p->bytes += 5;
    }
    (void)px;
    finish(p, p->status, p->keep);
}

static void on_up_error(void *ud, enum up_error e, bool before_head)
{
    struct preq *p = ud;
    p->up = NULL;
    if ((unsigned)e < PROXY_UP_ERRORS)
        atomic_fetch_add_explicit(&p->pw->st->up_err[e], 1, memory_order_relaxed);
    flight_end(p, true, e);
    if (p->background) {
        finish(p, 0, false);
        return;
    }
    if (p->c && sie_ok(p) && !p->stream_head_sent && (before_head || p->buffering)) {
        serve_stale(p, "sie");
        return;
    }
    if (p->stream_head_sent || p->c == NULL) {
        /* Mid-body: the client cannot be told in-band; close its connection. */
        if (p->c) http_conn_abort(p->c);
        finish(p, p->status, false);
        return;
    }
    send_error(p, e);
}

static const struct up_callbacks up_cb = {on_up_head, on_up_body, on_up_done,
                                          on_up_error};

static void on_req_drain(void *ud)
{
    struct preq *p = ud;
    if (p->c) http_conn_resume(p->c);
}

/* Send the request to the origin. false: it failed at once and p was
 * answered and released (the caller must not touch it). */
static bool start_up(struct preq *p, bool fetch, const struct hview *reval)
{
    size_t len;
    char *head = build_head(p, fetch, reval, &len);
    if (head == NULL) {
        on_up_error(p, UP_BROKEN, true);
        return false;
    }
    bool idempotent = fetch || p->method == HTTP_GET || p->method == HTTP_HEAD ||
                      p->method == HTTP_OPTIONS || p->method == HTTP_PUT ||
                      p->method == HTTP_DELETE || p->method == HTTP_TRACE;
    p->tup = uv_hrtime();
    p->req_wall = proxy_wall_ms();
    p->since = strata_tag_seq();
    p->state = fetch ? PS_FETCH : PS_PASS;
    bool body = !fetch && p->body;
    p->up = up_send(p->pw->pool, head, len, !fetch && p->method == HTTP_HEAD,
                    idempotent, body, &up_cb, p);
    if (p->up == NULL) { /* out of memory: fail as a broken origin would */
        on_up_error(p, UP_BROKEN, true);
        return false;
    }
    if (body) up_req_on_body_drain(p->up, on_req_drain);
    return true;
}

static bool start_fetch(struct preq *p, const struct hview *reval)
{
    p->reval = reval != NULL;
    return start_up(p, true, reval);
}

/* A stale object within its stale-while-revalidate window: one background
 * refresh (when no fetch for the key runs already). */
static void refresh_in_background(struct preq *from)
{
    struct preq *p = preq_get(from->pw);
    if (p == NULL) return;
    p->background = true;
    p->cacheable = true;
    p->method = HTTP_GET;
    p->route = from->route;
    p->per_user = from->per_user;
    p->has_auth = from->has_auth;
    p->peer = from->peer;
    p->msg = from->msg; /* used now to build the head and for Vary */
    sb_add(&p->host, from->host.p, from->host.len);
    sb_add(&p->target, from->target.p, from->target.len);
    sb_add(&p->key, from->key.p, from->key.len);
    if (flight_join_or(p, false)) { /* someone is already at it */
        preq_put(p);
        return;
    }
    /* Its own reference to the stale object (validators, and the body a
     * 304 keeps). */
    if (from->vkey.len) sb_add(&p->vkey, from->vkey.p, from->vkey.len);
    const struct sbuf *ok = p->vkey.len ? &p->vkey : &p->key;
    strata_value *v = NULL;
    if (strata_get(p->pw->px->cache, ok->p, ok->len, &v) == STRATA_OK &&
        hobj_view(strata_value_data(v), strata_value_len(v), &p->sv) == 0 &&
        p->sv.h.magic == HOBJ_MAGIC)
        p->stale = v;
    else if (v)
        strata_value_release(v);
    bg_add(p);
    if (start_fetch(p, p->stale && (p->sv.h.etag_len || p->sv.h.lm_s >= 0) ? &p->sv
                                                                           : NULL))
        p->msg = NULL; /* the client's message is not ours to keep */
}

/* ------------------------------------------------------------ requests */

/* Forward as it is, stream the answer back; nothing is stored. A request
 * body is read first, up to REQ_BUFFER bytes: a body that is malformed
 * (bad chunking) is then refused before anything reaches the origin. A
 * larger body streams from there on; a framing error later in it aborts the
 * origin connection mid-request. */
#define REQ_BUFFER 65536

static void pass(struct preq *p)
{
    p->cacheable = false;
    if (p->body) {
        p->state = PS_PASS;
        p->req_buffering = true;
        return;
    }
    start_up(p, false, NULL);
}

static void send_body(struct preq *p, const char *d, size_t n);

/* Start the origin request with what was buffered of the body. false: it
 * failed and p is gone. */
static bool unbuffer(struct preq *p)
{
    p->req_buffering = false;
    struct sbuf b = p->bodyb;
    p->bodyb = (struct sbuf){0};
    bool ok = start_up(p, false, NULL);
    if (ok && b.len) send_body(p, b.p, b.len);
    sb_free(&b);
    return ok;
}

static void lookup(struct preq *p)
{
    struct proxy *px = p->pw->px;
    p->state = PS_LOOKUP;
    p->vary_miss = false;
    p->vkey.len = 0;
    if (p->stale) strata_value_release(p->stale);
    p->stale = NULL;
    strata_value *v = NULL;
    struct hview o;
    if (strata_get(px->cache, p->key.p, p->key.len, &v) == STRATA_OK &&
        hobj_view(strata_value_data(v), strata_value_len(v), &o) == 0) {
        if (o.h.magic == HOBJ_HFM) {
            strata_value_release(v);
            cs_set(p, "strata; fwd=bypass");
            p->result = PR_BYPASS;
            pass(p);
            return;
        }
        if (o.h.magic == HOBJ_VARY) {
            p->variants = o.h.status;
            sb_add(&p->vkey, p->key.p, p->key.len);
            sb_fmt(&p->vkey, KEY_SEP "v:%016" PRIx64,
                   vary_hash_spec(p->msg, o.vary, o.h.vary_len));
            strata_value_release(v);
            v = NULL;
            if (strata_get(px->cache, p->vkey.p, p->vkey.len, &v) != STRATA_OK ||
                hobj_view(strata_value_data(v), strata_value_len(v), &o) != 0 ||
                o.h.magic != HOBJ_MAGIC) {
                if (v) strata_value_release(v);
                v = NULL;
                p->vary_miss = true;
            }
        }
        if (v) {
            int64_t age = hobj_age_ms(&o.h, proxy_wall_ms());
            if (!(o.h.flags & HOBJ_NO_CACHE) && age < o.h.fresh_ms) {
                int64_t ttl = (o.h.fresh_ms - age) / 1000;
                if (o.h.fresh_ms >= INT64_MAX / 4)
                    cs_set(p, "strata; hit");
                else
                    cs_set(p, "strata; hit; ttl=%" PRId64, ttl);
                p->result = PR_HIT;
                debug_op(p, "get", "hit");
                serve_obj(p, v, &o);
                return;
            }
            p->stale = v;
            p->sv = o;
            debug_op(p, "get", "stale");
            int64_t over = age - o.h.fresh_ms;
            if (o.h.swr_ms > 0 && over <= o.h.swr_ms) {
                refresh_in_background(p);
                serve_stale(p, "swr");
                return;
            }
        }
    } else if (v) {
        strata_value_release(v);
    }
    if (p->stale == NULL) debug_op(p, "get", p->vary_miss ? "vary-miss" : "miss");
    if (p->only_if_cached) { /* RFC 9111 5.2.1.7: never the origin */
        cs_set(p, "strata; detail=only-if-cached");
        p->result = PR_MISS;
        respond_simple(p, 504, "text/plain", "not in the cache (only-if-cached)\n",
                       NULL);
        return;
    }
    if (flight_join(p)) {
        p->state = PS_WAIT;
        if (p->stale) { /* the waiter looks up again when woken */
            /* keep p->stale for stale-if-error */
        }
        return;
    }
    bool validators = p->stale && (p->sv.h.etag_len || p->sv.h.lm_s >= 0);
    cs_set(p, "strata; fwd=%s",
           p->stale       ? "stale"
           : p->vary_miss ? "vary-miss"
                          : "uri-miss");
    start_fetch(p, validators ? &p->sv : NULL);
}

static bool token_ok(const struct http_msg *m, const char *token)
{
    if (token == NULL) return false;
    const struct http_header *h = http_find(m, "authorization", NULL);
    if (h == NULL || h->vlen < 7 || strncasecmp(h->value, "bearer ", 7) != 0)
        return false;
    size_t tl = strlen(token), n = h->vlen - 7;
    if (n != tl) return false;
    unsigned char d = 0;
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(h->value[7 + i] ^ token[i]);
    return d == 0;
}

static void do_purge(struct preq *p)
{
    struct proxy *px = p->pw->px;
    const struct config_http *hc = &px->cfg->http;
    bool ok = token_ok(p->msg, hc->purge_token);
    for (size_t i = 0; !ok && i < hc->n_purge_allow; i++)
        ok = cidr_has(&hc->purge_allow[i], &p->peer);
    p->result = PR_PURGE;
    cs_set(p, "strata; detail=purge");
    if (!ok) {
        respond_simple(
            p, 403, "application/json",
            "{\"error\":\"forbidden\",\"detail\":\"PURGE is not allowed from "
            "this address\"}\n",
            NULL);
        return;
    }
    long n = purge_url(px, req_tag(p));
    char body[64];
    snprintf(body, sizeof body, "{\"removed\":%ld}\n", n);
    respond_simple(p, 200, "application/json", body, NULL);
}

static void reject(struct preq *p, int status, const char *why)
{
    struct http_conn *c = p->c;
    char rid[128];
    snprintf(
        rid, sizeof rid,
        "Cache-Status: strata; fwd=request; detail=invalid\r\nX-Request-Id: %s\r\n",
        p->rid);
    p->result = PR_ERROR;
    account(p, status);
    http_conn_set_data(c, NULL);
    p->c = NULL;
    preq_put(p);
    http_conn_error_hdr(c, status, why, rid);
}

static void on_request(struct http_conn *c, struct http_request *req)
{
    struct pworker *pw = http_worker_data(http_conn_worker(c));
    struct proxy *px = pw->px;
    const struct config *cfg = px->cfg;
    struct preq *p = preq_get(pw);
    if (p == NULL) {
        http_conn_error(c, 503, "out of memory");
        return;
    }
    struct http_msg *m = req->msg;
    p->c = c;
    http_conn_set_data(c, p);
    p->msg = m;
    p->method = req->method;
    p->head = req->method == HTTP_HEAD;
    p->http10 = req->major == 1 && req->minor == 0;
    p->keep = req->keep_alive && !http_worker_stopping(http_conn_worker(c));
    p->peer = req->peer;
    p->body = req->body;
    p->body_chunked = req->chunked;
    p->content_length = req->chunked ? -1 : (int64_t)req->content_length;
    sb_add(&p->target, m->url, m->url_len); /* for the log until normalised */
    request_id_from(p, m);

    if (req->method == HTTP_CONNECT) {
        reject(p, 405, "CONNECT is not supported");
        return;
    }
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        if (h->nlen == 0) {
            reject(p, 400, "empty header name");
            return;
        }
        for (size_t j = 0; j < h->nlen; j++)
            if (!token_char((unsigned char)h->name[j])) {
                reject(p, 400, "invalid header name");
                return;
            }
        for (size_t j = 0; j < h->vlen; j++) {
            unsigned char ch = (unsigned char)h->value[j];
            if (ch == '\r' || ch == '\n' || ch == 0) {
                reject(p, 400, "invalid header value");
                return;
            }
        }
    }
    size_t nhost = 0;
    const struct http_header *hh = http_find(m, "host", &nhost);
    if (nhost != 1 || hh->vlen == 0) {
        reject(p, 400, nhost > 1 ? "more than one Host header" : "missing Host header");
        return;
    }
    for (size_t j = 0; j < hh->vlen; j++) {
        char ch = hh->value[j];
        if (ch == '/' || ch == ' ' || ch == '@' || ch == '?' || ch == '#' ||
            ch == '\\' || (unsigned char)ch < 0x21 || (unsigned char)ch > 0x7e) {
            reject(p, 400, "invalid Host header");
            return;
        }
        char lc = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        sb_add(&p->host, &lc, 1);
    }
    if (cfg->server.hosts.n) {
        const char *colon = memchr(p->host.p, ':', p->host.len);
        size_t bare =
            colon && p->host.p[0] != '[' ? (size_t)(colon - p->host.p) : p->host.len;
        if (!in_list(&cfg->server.hosts, p->host.p, p->host.len) &&
            !in_list(&cfg->server.hosts, p->host.p, bare)) {
            reject(p, 400, "Host not allowed");
            return;
        }
    }
    size_t nte = 0;
    const struct http_header *te = http_find(m, "transfer-encoding", &nte);
    if (te &&
        (nte != 1 || te->vlen != 7 || strncasecmp(te->value, "chunked", 7) != 0)) {
        reject(p, 400, "Transfer-Encoding other than chunked");
        return;
    }
    if ((req->method == HTTP_GET || req->method == HTTP_HEAD) && req->body) {
        reject(p, 400, "a GET or HEAD request may not have a body");
        return;
    }

    /* The target: origin-form, absolute-form (its path), or OPTIONS *. */
    const char *u = m->url;
    size_t ul = m->url_len;
    if (ul > 7 && strncasecmp(u, "http://", 7) == 0) {
        const char *slash = memchr(u + 7, '/', ul - 7);
        if (slash == NULL) {
            u = "/";
            ul = 1;
        } else {
            ul -= (size_t)(slash - u);
            u = slash;
        }
    }
    p->target.len = 0;
    if (ul == 1 && u[0] == '*' && req->method == HTTP_OPTIONS) {
        sb_add(&p->target, "*", 1);
        p->path_len = 1;
        cs_set(p, "strata; fwd=method");
        p->result = PR_PASS;
        pass(p);
        return;
    }
    if (ul == 0 || u[0] != '/') {
        reject(p, 400, "invalid request target");
        return;
    }
    const char *hash = memchr(u, '#', ul);
    if (hash) ul = (size_t)(hash - u);
    if (proxy_target(u, ul, &p->target) != 0) {
        p->target.len = 0;
        sb_add(&p->target, m->url, m->url_len);
        reject(p, 400, "invalid request path");
        return;
    }
    const char *q = memchr(p->target.p, '?', p->target.len);
    p->path_len = q ? (size_t)(q - p->target.p) : p->target.len;
    for (size_t i = p->path_len; i < p->target.len; i++) {
        unsigned char ch = (unsigned char)p->target.p[i];
        if (ch < 0x21 || ch == 0x7f) { /* (llhttp lets some through) */
            p->target.len = 0;
            sb_add(&p->target, m->url, m->url_len);
            reject(p, 400, "invalid request target");
            return;
        }
    }
    p->route = route_match(&cfg->http, p->target.p, p->path_len);
    p->per_user = p->route && p->route->per_user;

    if (req->method == HTTP_PURGE) {
        do_purge(p);
        return;
    }
    p->has_auth = http_find(m, "authorization", NULL) != NULL;
    const struct http_header *ex = http_find(m, "expect", NULL);
    if (ex && req->body && ex->vlen == 12 &&
        strncasecmp(ex->value, "100-continue", 12) == 0)
        http_conn_write_copy(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);

    cc_directives rcc;
    cc_init(&rcc);
    bool any_cc = false;
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], "cache-control")) {
            cc_parse(&rcc, m->h[i].value, m->h[i].vlen);
            any_cc = true;
        }
    const struct http_header *pragma = http_find(m, "pragma", NULL);
    p->req_no_cache =
        rcc.no_cache || rcc.max_age == 0 ||
        (!any_cc && pragma && http_list_has(pragma->value, pragma->vlen, "no-cache"));
    p->req_no_store = rcc.no_store;
    p->only_if_cached = rcc.only_if_cached;

    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        cs_set(p, "strata; fwd=method");
        p->result = PR_PASS;
        pass(p);
        return;
    }
    if (p->route && !p->route->cache) {
        cs_set(p, "strata; fwd=bypass");
        p->result = PR_BYPASS;
        pass(p);
        return;
    }
    /* The key. */
    sb_add(&p->key, "h:", 2);
    sb_add(&p->key, p->host.p, p->host.len);
    sb_add(&p->key, p->target.p, p->target.len);
    if (p->per_user) {
        size_t il = 0;
        const char *id = route_identity(p->route, m, &p->tmp, &il);
        if (id == NULL || cfg->http.user_secret == NULL) {
            cs_set(p, "strata; fwd=bypass; detail=no-identity");
            p->result = PR_BYPASS;
            pass(p);
            return;
        }
        key_add_user(&p->key, cfg->http.user_secret, id, il);
    }
    p->cacheable = true;
    if (p->req_no_store) {
        cs_set(p, "strata; fwd=request; detail=no-store");
        p->result = PR_PASS;
        pass(p);
        return;
    }
    if (p->req_no_cache) {
        cs_set(p, "strata; fwd=request");
        p->result = PR_MISS;
        start_fetch(p, NULL);
        return;
    }
    lookup(p);
}

static void on_body(struct http_conn *c, const char *d, size_t n)
{
    struct preq *p = http_conn_data(c);
    if (p == NULL || p->state != PS_PASS) return;
    if (p->req_buffering) {
        if (p->bodyb.len + n <= REQ_BUFFER) {
            sb_add(&p->bodyb, d, n);
            return;
        }
        if (!unbuffer(p)) return;
    }
    if (p->up) send_body(p, d, n);
}

static void send_body(struct preq *p, const char *d, size_t n)
{
    size_t q;
    if (p->body_chunked) {
        char hdr[24];
        int hn = snprintf(hdr, sizeof hdr, "%zx\r\n", n);
        up_req_body(p->up, hdr, (size_t)hn);
        if (p->up == NULL) return;
        up_req_body(p->up, d, n);
        if (p->up == NULL) return;
        q = up_req_body(p->up, "\r\n", 2);
    } else {
        q = up_req_body(p->up, d, n);
    }
    if (q >= HTTP_QUEUE_HIGH && p->c) http_conn_pause(p->c);
}

static void on_body_end(struct http_conn *c)
{
    struct preq *p = http_conn_data(c);
    if (p == NULL || p->state != PS_PASS || !p->body) return;
    if (p->req_buffering && !unbuffer(p)) return;
    if (p->up == NULL) return;
    if (p->body_chunked) up_req_body(p->up, "0\r\n\r\n", 5);
    if (p->up) up_req_body_end(p->up);
}

static void on_drain(struct http_conn *c)
{
    struct preq *p = http_conn_data(c);
    if (p && p->up && p->streaming) up_req_resume(p->up);
}

static void on_close(struct http_conn *c)
{
    struct preq *p = http_conn_data(c);
    if (p == NULL) return;
    p->c = NULL;
    p->msg = NULL;
    if (p->state == PS_WAIT) return; /* freed when woken */
    if (p->up && p->owner && p->state == PS_FETCH && (p->buffering || !p->streaming)) {
        /* Others wait for this fetch: finish it without the client. */
        p->background = true;
        bg_add(p);
        return;
    }
    if (p->up) up_req_cancel(p->up);
    p->up = NULL;
    flight_end(p, true, UP_BROKEN);
    preq_put(p);
}

/* ------------------------------------------------------------- workers */

static void *worker_init(struct http_worker *w, void *ud)
{
    struct proxy *px = ud;
    struct pworker *pw = calloc(1, sizeof *pw);
    if (pw == NULL) abort();
    pw->px = px;
    pw->w = w;
    pw->st = &px->wst[http_worker_id(w) % px->nworkers];
    pw->pool = up_pool_new(http_worker_loop(w), &px->upc);
    if (pw->pool == NULL) abort();
    uv_timer_init(http_worker_loop(w), &pw->flush);
    pw->flush.data = pw;
    if (px->access) {
        uv_timer_start(&pw->flush, on_flush, 200, 200);
        uv_unref((uv_handle_t *)&pw->flush);
    }
    return pw;
}

static void close_noop(uv_handle_t *h)
{
    (void)h;
}

static void worker_fini(struct http_worker *w, void *ud)
{
    (void)w;
    struct pworker *pw = ud;
    up_pool_free(pw->pool); /* fails what is still in flight */
    while (pw->bg) {        /* a refresh still connecting */
        struct preq *p = pw->bg;
        pw->bg = p->next;
        flight_end(p, true, UP_BROKEN);
        preq_put(p);
    }
    flush_log(pw);
    sb_free(&pw->log);
    uv_close((uv_handle_t *)&pw->flush, close_noop);
    preq_free_all(pw->free);
    /* the loop runs once more to close the timer; pw must outlive it */
    uv_run(http_worker_loop(w), UV_RUN_NOWAIT);
    free(pw);
}

/* Errors the HTTP layer answers itself (malformed requests, 431, 408). */
static void error_headers(struct http_conn *c, char *buf, size_t cap)
{
    char rid[40];
    request_id(http_worker_data(http_conn_worker(c)), rid);
    snprintf(
        buf, cap,
        "Cache-Status: strata; fwd=request; detail=invalid\r\nX-Request-Id: %s\r\n",
        rid);
}

static const struct http_handler handler = {
    worker_init, worker_fini, on_request, on_body,
    on_body_end, on_drain,    on_close,   error_headers,
};

/* ---------------------------------------------------------------- main */

static int open_access_log(struct proxy *px, const char *where, char **err)
{
    if (where == NULL || strcmp(where, "stdout") == 0) {
        px->access = stdout;
        return 0;
    }
    if (strcmp(where, "off") == 0) {
        px->access = NULL;
        return 0;
    }
    px->access = fopen(where, "a");
    if (px->access == NULL) {
        if (asprintf(err, "access_log %s: %s", where, strerror(errno)) < 0) *err = NULL;
        return -1;
    }
    return 0;
}

/* SIGHUP (logrotate's postrotate): the access log file is opened again
 * under its name. The new descriptor replaces the old one under the same
 * FILE (dup2), so workers writing at that moment write to one or the other,
 * never to a closed one. */
static void reopen_access_log(struct proxy *px)
{
    const char *where = px->cfg->server.access_log;
    if (px->access == NULL || px->access == stdout || where == NULL) return;
    int fd = open(where, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 || dup2(fd, fileno(px->access)) < 0) {
        slog(SLOG_ERROR, "msg=\"cannot reopen the access log\" path=%s error=\"%s\"",
             where, strerror(errno));
    } else {
        slog(SLOG_INFO, "msg=\"access log reopened\" path=%s", where);
    }
    if (fd >= 0) close(fd);
}

/* ---------------------------------------------------- stats, explain */

size_t proxy_nroutes(const struct proxy *px)
{
    return px->cfg->http.n_routes + 1;
}

const char *proxy_route_label(const struct proxy *px, size_t i)
{
    const struct config_http *hc = &px->cfg->http;
    if (i >= hc->n_routes) return PROXY_NO_ROUTE;
    return hc->routes[i].name ? hc->routes[i].name : hc->routes[i].path;
}

void proxy_route_stats(const struct proxy *px, size_t i, struct proxy_route_stats *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned w = 0; w < px->nworkers; w++) {
        const struct route_ctr *rc = &px->wst[w].routes[i];
        for (int r = 0; r < PR_N; r++)
            out->result[r] +=
                atomic_load_explicit(&rc->result[r], memory_order_relaxed);
        hist_read(&rc->latency, &out->latency);
        hist_read(&rc->upstream, &out->upstream);
    }
}

void proxy_totals(const struct proxy *px, struct proxy_totals *out)
{
    memset(out, 0, sizeof *out);
    for (unsigned w = 0; w < px->nworkers; w++) {
        out->coalesced +=
            atomic_load_explicit(&px->wst[w].coalesced, memory_order_relaxed);
        for (int e = 0; e < PROXY_UP_ERRORS; e++)
            out->upstream_errors[e] +=
                atomic_load_explicit(&px->wst[w].up_err[e], memory_order_relaxed);
    }
}

strata_cache *proxy_cache(struct proxy *px)
{
    return px->cache;
}

static uint64_t target_hash(const char *t, size_t n)
{
    uint64_t h = XXH3_64bits(t, n);
    return h ? h : 1;
}

/* What strata decided about an origin response for p's target (explain). */
static void note_decision(struct preq *p, int status, const struct http_msg *m,
                          bool stored, const char *why)
{
    struct proxy *px = p->pw->px;
    uint64_t h = target_hash(p->target.p, p->target.len);
    struct decision *d = &px->dec[h % DECISIONS];
    pthread_mutex_lock(&px->dlock);
    d->hash = h;
    d->wall_ms = proxy_wall_ms();
    if (status) d->status = status;
    d->stored = stored;
    snprintf(d->reason, sizeof d->reason, "%s", why ? why : "");
    snprintf(d->host, sizeof d->host, "%.*s", (int)p->host.len, p->host.p);
    if (m) {
        size_t o = 0;
        d->cc[0] = 0;
        for (size_t i = 0; i < m->nh; i++)
            if (http_name_is(&m->h[i], "cache-control") && o + 3 < sizeof d->cc)
                o += (size_t)snprintf(d->cc + o, sizeof d->cc - o, "%s%.*s",
                                      o ? ", " : "", (int)m->h[i].vlen, m->h[i].value);
    }
    pthread_mutex_unlock(&px->dlock);
}

int proxy_explain(struct proxy *px, const char *host, const char *target, size_t tlen,
                  struct proxy_explain *out)
{
    memset(out, 0, sizeof *out);
    struct sbuf t = {0}, key = {0};
    if (tlen == 0 || target[0] != '/' || proxy_target(target, tlen, &t) != 0 ||
        t.len >= sizeof out->target) {
        sb_free(&t);
        return -1;
    }
    memcpy(out->target, t.p, t.len);
    const char *q = memchr(t.p, '?', t.len);
    out->route = route_match(&px->cfg->http, t.p, q ? (size_t)(q - t.p) : t.len);
    uint64_t h = target_hash(t.p, t.len);
    const struct decision *d = &px->dec[h % DECISIONS];
    pthread_mutex_lock(&px->dlock);
    if (d->hash == h && (host == NULL || strcasecmp(host, d->host) == 0)) {
        out->seen = true;
        out->status = d->status;
        out->decided_store = d->stored;
        out->seen_age_s = (proxy_wall_ms() - d->wall_ms) / 1000;
        memcpy(out->reason, d->reason, sizeof out->reason);
        memcpy(out->cache_control, d->cc, sizeof out->cache_control);
        if (host == NULL) memcpy(out->host, d->host, sizeof out->host);
    }
    pthread_mutex_unlock(&px->dlock);
    if (host) snprintf(out->host, sizeof out->host, "%s", host);
    for (char *c = out->host; *c; c++)
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c + 32);
    if (out->host[0] == 0) {
        sb_free(&t);
        return 0;
    }
    sb_add(&key, "h:", 2);
    sb_str(&key, out->host);
    sb_add(&key, t.p, t.len);
    strata_value *v = NULL;
    struct hview o;
    if (strata_cache_peek(px->cache, key.p, key.len, &v) == STRATA_OK &&
        hobj_view(strata_value_data(v), strata_value_len(v), &o) == 0) {
        if (o.h.magic == HOBJ_HFM) {
            out->holds = PX_HIT_FOR_MISS;
        } else if (o.h.magic == HOBJ_VARY) {
            out->holds = PX_VARIANTS;
            out->variants = o.h.status;
        } else {
            int64_t age = hobj_age_ms(&o.h, proxy_wall_ms());
            out->holds = PX_OBJECT;
            out->age_s = age / 1000;
            out->ttl_s = o.h.fresh_ms >= INT64_MAX / 4 ? INT64_MAX / 4
                                                       : (o.h.fresh_ms - age) / 1000;
            size_t n =
                o.h.tags_len < sizeof out->tags ? o.h.tags_len : sizeof out->tags - 1;
            memcpy(out->tags, o.tags, n);
            out->tags[n] = 0;
            for (size_t i = 0; i < n; i++)
                if (out->tags[i] == '\n') out->tags[i] = ' ';
            while (n && out->tags[n - 1] == ' ')
                out->tags[--n] = 0;
        }
    }
    if (v) strata_value_release(v);
    sb_free(&key);
    sb_free(&t);
    return 0;
}

/* Cache operations at debug level: what was looked up, stored, removed. */
static void debug_op(struct preq *p, const char *op, const char *result)
{
    if (!slog_on(SLOG_DEBUG)) return;
    char k[600];
    const struct sbuf *key = p->vkey.len ? &p->vkey : &p->key;
    slog_val(k, sizeof k, key->p, key->len);
    slog(SLOG_DEBUG, "msg=\"cache %s\" cache=%s key=%s result=%s request_id=%s", op,
         p->pw->px->cfg->http.cache, k, result, p->rid);
}

int proxy_serve(const struct config *cfg, char **err)
{
    struct proxy *px = calloc(1, sizeof *px);
    *err = NULL;
    if (px == NULL) return -1;
    px->cfg = cfg;
    slog_set_level(cfg->server.log_level);
    pthread_mutex_init(&px->flock, NULL);
    pthread_mutex_init(&px->dlock, NULL);

    /* Signals are taken by this thread only (sigwait below): block them
     * before any thread starts. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = -1;
    if (cfg->server.upstream == NULL) {
        *err = strdup("no upstream: set server.upstream or pass --upstream URL");
        goto out;
    }
    if (http_parse_upstream(cfg->server.upstream, &px->upc.addr, px->upstream_hp,
                            sizeof px->upstream_hp) != 0) {
        if (asprintf(err, "server.upstream %s: not http://host:port",
                     cfg->server.upstream) < 0)
            *err = NULL;
        goto out;
    }
    px->upc.connect_timeout_ms = (uint64_t)cfg->server.upstream_connect_timeout_ms;
    px->upc.timeout_ms = (uint64_t)cfg->server.upstream_timeout_ms;
    px->upc.keepalive = cfg->server.upstream_keepalive;
    px->upc.max_header_size =
        65536 > cfg->server.max_header_size ? 65536 : cfg->server.max_header_size;
    px->upc.max_headers = 256 > cfg->server.max_headers ? 256 : cfg->server.max_headers;

    px->s = strata_open_caches(&cfg->caches, err);
    if (px->s == NULL) goto out;
    px->cache = strata_cache_get(px->s, cfg->http.cache);
    if (px->cache == NULL) {
        if (asprintf(err, "http_cache.cache: no cache named '%s'", cfg->http.cache) < 0)
            *err = NULL;
        goto out;
    }
    const char *tc = getenv("STRATA_TEST_CLOCK");
    bool test_clock = tc && strcmp(tc, "1") == 0;
    if (test_clock) strata_set_clock(px->s, proxy_clock_fn, NULL);
    strata_set_bus_timeout(px->s, cfg->bus.timeout_ms);
    if (open_access_log(px, cfg->server.access_log, err) != 0) goto out;

    unsigned workers = cfg->server.workers;
    if (workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        workers = n > 0 ? (unsigned)n : 1;
    }
    px->nworkers = workers;
    px->wst = calloc(workers, sizeof *px->wst);
    px->dec = calloc(DECISIONS, sizeof *px->dec);
    if (px->wst == NULL || px->dec == NULL) goto out;
    for (unsigned i = 0; i < workers; i++) {
        px->wst[i].routes = calloc(cfg->http.n_routes + 1, sizeof *px->wst[i].routes);
        if (px->wst[i].routes == NULL) goto out;
    }
    unsigned char rnd[4] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = uv_hrtime();
        memcpy(rnd, &t, sizeof rnd);
    }
    snprintf(px->rid_prefix, sizeof px->rid_prefix, "%02x%02x%02x%02x", rnd[0], rnd[1],
             rnd[2], rnd[3]);

    struct admin *adm = admin_start(cfg, px->s, px, test_clock, err);
    if (adm == NULL) goto out;

    struct http_server_conf sc = {
        .listen = cfg->server.listen,
        .workers = workers,
        .max_connections = cfg->server.max_connections,
        .max_header_size = cfg->server.max_header_size,
        .max_headers = cfg->server.max_headers,
        .header_timeout_ms = (uint64_t)cfg->server.header_timeout_ms,
        .idle_timeout_ms = (uint64_t)cfg->server.idle_timeout_ms,
        .drain_timeout_ms = 10000,
        .handler = &handler,
        .ud = px,
    };
    px->srv = http_server_start(&sc, err);
    if (px->srv == NULL) {
        admin_stop(adm);
        goto out;
    }
    if (admin_publish_token(adm, err) != 0) {
        http_server_stop(px->srv);
        admin_stop(adm);
        http_server_free(px->srv);
        px->srv = NULL;
        goto out;
    }
    slog(SLOG_INFO,
         "msg=\"serving\" listen=%s upstream=%s workers=%u cache=%s test_clock=%d",
         cfg->server.listen, cfg->server.upstream, workers, cfg->http.cache,
         test_clock);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        reopen_access_log(px);
    slog(SLOG_INFO, "msg=\"stopping\" signal=%s", sig == SIGTERM ? "TERM" : "INT");
    http_server_stop(px->srv);
    admin_stop(adm);
    http_server_free(px->srv);
    px->srv = NULL;
    slog(SLOG_INFO, "msg=\"stopped\"");
    rc = 0;
out:
    if (px->access && px->access != stdout) fclose(px->access);
    if (px->access == stdout) fflush(stdout);
    strata_close(px->s);
    for (unsigned i = 0; px->wst && i < px->nworkers; i++)
        free(px->wst[i].routes);
    free(px->wst);
    free(px->dec);
    pthread_mutex_destroy(&px->flock);
    pthread_mutex_destroy(&px->dlock);
    free(px);
    return rc;
}
