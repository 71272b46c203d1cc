/*
 * object.c -- the stored HTTP object, HTTP dates, strata's clocks and a
 * small byte buffer.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "proxy/internal.h"

/* ---------------------------------------------------------------- sbuf */

int sb_add(struct sbuf *b, const void *p, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n)
            cap *= 2;
        char *q = realloc(b->p, cap);
        if (q == NULL) return -1;
        b->p = q;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

int sb_str(struct sbuf *b, const char *s)
{
    return sb_add(b, s, strlen(s));
}

int sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof tmp) return sb_add(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (big == NULL) return -1;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = sb_add(b, big, (size_t)n);
    free(big);
    return rc;
}

void sb_free(struct sbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* -------------------------------------------------------------- objects */

int hobj_view(const void *p, size_t len, struct hview *v)
{
    if (len < sizeof v->h) return -1;
    memcpy(&v->h, p, sizeof v->h);
    const char *c = (const char *)p + sizeof v->h;
    size_t rest = len - sizeof v->h;
    if (v->h.magic != HOBJ_MAGIC && v->h.magic != HOBJ_VARY && v->h.magic != HOBJ_HFM)
        return -1;
    if (v->h.body_len > rest) return -1; /* (then the sum below cannot wrap) */
    uint64_t need =
        (uint64_t)v->h.hdr_len + v->h.vary_len + v->h.tags_len + v->h.body_len;
    if (need != rest) return -1;
    if ((uint64_t)v->h.etag_off + v->h.etag_len > v->h.hdr_len) return -1;
    v->hdr = c;
    v->vary = c + v->h.hdr_len;
    v->tags = v->vary + v->h.vary_len;
    v->body = v->tags + v->h.tags_len;
    return 0;
}

int64_t hobj_age_ms(const struct hobj *h, int64_t now)
{
    int64_t resident = now - h->resp_wall_ms;
    if (resident < 0) resident = 0;
    return h->init_age_ms + resident;
}

/* ---------------------------------------------------------------- dates */

int64_t http_date_parse(const char *s, size_t n)
{
    static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S GMT",
                                       "%A, %d-%b-%y %H:%M:%S GMT",
                                       "%a %b %e %H:%M:%S %Y"};
    char buf[64];
    if (n == 0 || n >= sizeof buf) return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(buf, fmts[i], &tm);
        if (end && *end == 0) return (int64_t)timegm(&tm);
    }
    return -1;
}

void http_date_fmt(int64_t t, char *buf)
{
    struct tm tm;
    time_t tt = (time_t)t;
    gmtime_r(&tt, &tm);
    strftime(buf, 30, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

/* ---------------------------------------------------------------- clock */

static _Atomic int64_t clock_offset;
static int64_t wall_base_ms;
static uint64_t mono_base_ms;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static void clock_init(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    wall_base_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    mono_base_ms = core_clock_real_ms();
}

uint64_t proxy_mono_ms(void)
{
    return core_clock_real_ms() +
           (uint64_t)atomic_load_explicit(&clock_offset, memory_order_relaxed);
}

int64_t proxy_wall_ms(void)
{
    pthread_once(&clock_once, clock_init);
    return wall_base_ms + (int64_t)(proxy_mono_ms() - mono_base_ms);
}

void proxy_clock_advance(int64_t ms)
{
    if (ms > 0) atomic_fetch_add(&clock_offset, ms);
}

uint64_t proxy_clock_fn(void *ud)
{
    (void)ud;
    return proxy_mono_ms();
}
