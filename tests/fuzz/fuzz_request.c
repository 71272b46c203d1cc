/*
 * fuzz_request.c -- libFuzzer target for the request path: llhttp (strict
 * mode) feeding src/http/msg.c's collectors, then what the proxy computes
 * from a request head (serve.c's on_request and build_head): the checks on
 * names, values, Host and Transfer-Encoding, the normalised target
 * (proxy_normalize_path inline as on_request does it, and proxy_target), the
 * route, the implicit url and path tags, the forwarded header set, request
 * Cache-Control, the cache key with a per-user identity (header, cookie and
 * JWT routes), the Vary hash, Range, If-Range and If-Modified-Since.
 *
 * Input: byte 0 is the mode, the rest the bytes a client sends.
 *   mode & 0x3f  size of the pieces llhttp gets (0: all at once), so values,
 *                names and targets split over reads take the partial paths
 *   mode & 0x40  small limits (256-byte arena, 8 headers) instead of the
 *                defaults (32KB, 100)
 *   mode & 0x80  pause at the end of each message and resume, as server.c
 *                does while a response is written
 *
 * Invariants (trap when broken): the inline normalisation and proxy_target
 * agree; a target is idempotent under proxy_target; a url/path tag is a
 * valid tag (1-256 printable bytes, no space, comma, quote or backslash);
 * no hop-by-hop header is forwarded; a user key part is KEY_SEP "u:" + 32 hex;
 * hashes and parses are deterministic; a 206 range lies in the object.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/internal.h"
#include "proxy/internal.h"

/* ------------------------------------------------------------ the routes */

static char *vary_h_static[] = {"Accept-Language"};
static char *vary_c_static[] = {"theme"};

static struct config_route routes[] = {
    {.name = "static",
     .path = "/static/*",
     .ttl_ms = CONFIG_MS_UNSET,
     .cache = true,
     .vary_headers = {vary_h_static, 1},
     .vary_cookies = {vary_c_static, 1}},
    {.name = "hdr",
     .path = "/u/*",
     .per_user = true,
     .user_from = CONFIG_USER_HEADER,
     .user_from_name = "X-User",
     .cache = true},
    {.name = "cookie",
     .path = "/c/*",
     .per_user = true,
     .user_from = CONFIG_USER_COOKIE,
     .user_from_name = "session",
     .cache = true},
    {.name = "jwt",
     .path = "/j/*",
     .per_user = true,
     .user_from = CONFIG_USER_JWT,
     .user_from_name = "sub",
     .jwt_key = "fuzz-secret",
     .cache = true},
    {.name = "nocache", .path = "/api/*/live", .cache = false},
    {.name = "all", .path = "*", .cache = true},
};

static const struct config_http http_conf = {
    .user_secret = "secret",
    .routes = routes,
    .n_routes = sizeof routes / sizeof *routes,
};

/* --------------------------------------------------------------- parsing */

struct fz {
    struct http_msg msg;
    const char *lo, *hi; /* the bytes of the current read (server.c's rbuf) */
    bool pause;
};

static struct fz *fzp(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    msg_reset(&fzp(p)->msg);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_url(&fzp(p)->msg, at, n) ? -1 : 0;
}

static int on_field(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_field(&fzp(p)->msg, at, n) ? -1 : 0;
}

/* The obs-fold test server.c makes (msg_folded), on the current read. */
static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct fz *f = fzp(p);
    if (msg_folded(f->lo, f->hi, 0, at, n)) {
        f->msg.err = MSG_BAD;
        return -1;
    }
    return msg_on_value(&f->msg, at, n) ? -1 : 0;
}

static int on_value_complete(llhttp_t *p)
{
    return msg_on_value_complete(&fzp(p)->msg);
}

static int on_message_complete(llhttp_t *p)
{
    return fzp(p)->pause ? HPE_PAUSED : 0;
}

/* ----------------------------------------------------------- invariants */

static void check_tag(const struct sbuf *t, const char *pre)
{
    size_t pl = strlen(pre);
    if (t->len == 0 || t->len > 256 + pl + 1 || t->p[t->len] != '\0') __builtin_trap();
    if (strncmp(t->p, pre, pl) != 0 || (t->p[pl] != ':' && t->p[pl] != '#'))
        __builtin_trap();
    if (t->p[pl] == '#' && t->len != pl + 1 + 32) __builtin_trap();
    if (t->p[pl] == ':' && t->len > 256) __builtin_trap();
    for (size_t i = 0; i < t->len; i++) {
        unsigned char ch = (unsigned char)t->p[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == ',' || ch == '"' || ch == '\\')
            __builtin_trap();
    }
}

static bool token_char(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", ch);
}

/* proxy_target reads in[n] (it copies n + 1 bytes): its callers hand it
 * NUL-terminated strings, so does this. */
static int target_of(const char *in, size_t n, struct sbuf *out)
{
    char *z = malloc(n + 1);
    if (z == NULL) return -1;
    memcpy(z, in, n);
    z[n] = '\0';
    int rc = proxy_target(z, n, out);
    free(z);
    return rc;
}

/* build_head's header filter: what goes to the origin. */
static void forwarded(const struct http_msg *m, bool fetch)
{
    const struct http_header *conn_h = http_find(m, "connection", NULL);
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        if (http_hop_by_hop(h->name, h->nlen)) continue;
        if (http_name_is(h, "content-length") || http_name_is(h, "expect")) continue;
        if (http_name_is(h, "x-forwarded-for") || http_name_is(h, "x-forwarded-proto"))
            continue;
        if (http_named_in(conn_h, h)) continue;
        if (fetch &&
            (http_name_is(h, "range") || http_name_is(h, "if-range") ||
             http_name_is(h, "if-none-match") || http_name_is(h, "if-modified-since")))
            continue;
        /* Forwarded: it must not be hop-by-hop. */
        if (http_name_is(h, "connection") || http_name_is(h, "keep-alive") ||
            http_name_is(h, "te") || http_name_is(h, "upgrade") ||
            http_name_is(h, "transfer-encoding") ||
            (h->nlen >= 6 && strncasecmp(h->name, "proxy-", 6) == 0))
            __builtin_trap();
    }
}

/* The vary spec decide() builds: the route's headers and cookies, then the
 * names of a Vary value (taken here from the request's X-Vary). */
static void vary_spec(const struct config_route *r, const struct http_msg *m,
                      struct sbuf *spec)
{
    spec->len = 0;
    if (r) {
        for (size_t i = 0; i < r->vary_headers.n; i++) {
            for (const char *c = r->vary_headers.v[i]; *c; c++) {
                char ch = (*c >= 'A' && *c <= 'Z') ? (char)(*c + 32) : *c;
                sb_add(spec, &ch, 1);
            }
            sb_add(spec, "\n", 1);
        }
        for (size_t i = 0; i < r->vary_cookies.n; i++) {
            sb_add(spec, "=", 1);
            sb_str(spec, r->vary_cookies.v[i]);
            sb_add(spec, "\n", 1);
        }
    }
    const struct http_header *h = http_find(m, "x-vary", NULL);
    if (h == NULL) return;
    size_t j = 0;
    while (j < h->vlen) {
        while (j < h->vlen && (h->value[j] == ' ' || h->value[j] == ','))
            j++;
        size_t s = j;
        while (j < h->vlen && h->value[j] != ',' && h->value[j] != ' ')
            j++;
        if (j == s) continue;
        for (size_t k = s; k < j; k++) {
            char ch = h->value[k];
            if (ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
            sb_add(spec, &ch, 1);
        }
        sb_add(spec, "\n", 1);
    }
}

static void dates_and_ranges(const struct http_msg *m)
{
    static const char *const names[] = {"if-modified-since", "if-range", "date",
                                        "if-unmodified-since"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const struct http_header *h = http_find(m, names[i], NULL);
        if (h == NULL) continue;
        int64_t t = http_date_parse(h->value, h->vlen);
        if (t != http_date_parse(h->value, h->vlen)) __builtin_trap();
        /* Years 1000-9999 format back to the same second. */
        if (t >= -30610224000LL && t < 253402300800LL) {
            char buf[32];
            http_date_fmt(t, buf);
            if (http_date_parse(buf, strlen(buf)) != t) __builtin_trap();
        }
    }
    const struct http_header *rh = http_find(m, "range", NULL);
    if (rh == NULL) return;
    static const uint64_t sizes[] = {0, 1, 100, 1u << 20, UINT64_MAX / 2};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        uint64_t f = 0, l = 0;
        if (proxy_parse_range(rh->value, rh->vlen, sizes[i], &f, &l) == RANGE_OK &&
            (sizes[i] == 0 || f > l || l >= sizes[i]))
            __builtin_trap();
    }
}

/* ------------------------------------------------ on_request, abridged */

struct work {
    struct sbuf host, target, t2, tag, ptag, key, tmp, spec;
};

static void on_head(llhttp_t *p, struct work *w)
{
    const struct http_msg *m = &fzp(p)->msg;
    llhttp_method_t method = (llhttp_method_t)p->method;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    uint64_t clen = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    bool body = chunked || clen > 0;

    /* Whatever the request, lookups must hold up. */
    size_t k = 0;
    const struct http_header *x = http_find(m, "host", &k);
    if ((x == NULL) != (k == 0)) __builtin_trap();
    for (size_t i = 0; i < m->nh; i++) {
        size_t c = 0;
        const struct http_header *h = &m->h[i];
        char nm[64];
        if (h->nlen >= sizeof nm) continue;
        memcpy(nm, h->name, h->nlen);
        nm[h->nlen] = 0;
        const struct http_header *f = http_find(m, nm, &c);
        if (f == NULL || c == 0 || f > h) __builtin_trap();
    }

    if (method == HTTP_CONNECT) return;
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *h = &m->h[i];
        if (h->nlen == 0) return;
        for (size_t j = 0; j < h->nlen; j++)
            if (!token_char((unsigned char)h->name[j])) return;
        for (size_t j = 0; j < h->vlen; j++) {
            unsigned char ch = (unsigned char)h->value[j];
            if (ch == '\r' || ch == '\n' || ch == 0) return;
        }
    }
    size_t nhost = 0;
    const struct http_header *hh = http_find(m, "host", &nhost);
    if (nhost != 1 || hh->vlen == 0) return;
    w->host.len = 0;
    for (size_t j = 0; j < hh->vlen; j++) {
        char ch = hh->value[j];
        if (ch == '/' || ch == ' ' || ch == '@' || ch == '?' || ch == '#' ||
            ch == '\\' || (unsigned char)ch < 0x21 || (unsigned char)ch > 0x7e)
            return;
        char lc = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
        sb_add(&w->host, &lc, 1);
    }
    size_t nte = 0;
    const struct http_header *te = http_find(m, "transfer-encoding", &nte);
    if (te && (nte != 1 || te->vlen != 7 || strncasecmp(te->value, "chunked", 7) != 0))
        return;
    if ((method == HTTP_GET || method == HTTP_HEAD) && body) return;

    /* The target: origin-form, absolute-form (its path), or OPTIONS *. */
    const char *u = m->url;
    size_t ul = m->url_len;
    if (u == NULL) u = "", ul = 0;
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
    if (ul == 1 && u[0] == '*' && method == HTTP_OPTIONS) {
        proxy_url_tag(&w->tag, w->host.p, w->host.len, "*", 1);
        check_tag(&w->tag, "url");
        return;
    }
    if (ul == 0 || u[0] != '/') return;
    const char *hash = memchr(u, '#', ul);
    if (hash) ul = (size_t)(hash - u);
    const char *q = memchr(u, '?', ul);
    size_t pl = q ? (size_t)(q - u) : ul;
    w->target.len = 0;
    if (sb_add(&w->target, u, ul + 1) != 0) return; /* room for the path */
    size_t out = 0;
    int nrc = proxy_normalize_path(u, pl, w->target.p, &out);
    int trc = target_of(u, ul, &w->t2);
    if ((nrc == 0) != (trc == 0)) __builtin_trap();
    if (nrc != 0) return;
    w->target.len = out;
    if (q) sb_add(&w->target, q, ul - pl);
    if (w->t2.len != w->target.len || memcmp(w->t2.p, w->target.p, w->t2.len) != 0)
        __builtin_trap();
    /* A normalised target normalises to itself (the query is kept). */
    if (target_of(w->target.p, w->target.len, &w->t2) != 0 ||
        w->t2.len != w->target.len || memcmp(w->t2.p, w->target.p, w->t2.len) != 0)
        __builtin_trap();

    const struct config_route *r = route_match(&http_conf, w->target.p, out);
    if (r == NULL) __builtin_trap(); /* "*" matches every path */
    proxy_url_tag(&w->tag, w->host.p, w->host.len, w->target.p, w->target.len);
    check_tag(&w->tag, "url");
    proxy_url_tag(&w->ptag, NULL, 0, w->target.p, w->target.len);
    check_tag(&w->ptag, "path");

    forwarded(m, false);
    forwarded(m, true);

    cc_directives rcc;
    cc_init(&rcc);
    bool any_cc = false;
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], "cache-control")) {
            cc_parse(&rcc, m->h[i].value, m->h[i].vlen);
            any_cc = true;
        }
    const struct http_header *pragma = http_find(m, "pragma", NULL);
    volatile bool no_cache =
        rcc.no_cache || rcc.max_age == 0 ||
        (!any_cc && pragma && http_list_has(pragma->value, pragma->vlen, "no-cache"));
    (void)no_cache;

    dates_and_ranges(m);

    /* The key. */
    w->key.len = 0;
    sb_add(&w->key, "h:", 2);
    sb_add(&w->key, w->host.p, w->host.len);
    sb_add(&w->key, w->target.p, w->target.len);
    if (r->per_user) {
        size_t il = 0;
        const char *id = route_identity(r, m, &w->tmp, &il);
        if (id) {
            size_t before = w->key.len;
            if (il == 0) __builtin_trap();
            if (key_add_user(&w->key, http_conf.user_secret, id, il) != 0 ||
                w->key.len != before + 35 ||
                memcmp(w->key.p + before, KEY_SEP "u:", 3) != 0)
                __builtin_trap();
            for (size_t i = before + 3; i < w->key.len; i++)
                if (!strchr("0123456789abcdef", w->key.p[i])) __builtin_trap();
        }
    }
    /* Cookies the routes know, and the Vary hash. */
    size_t cl = 0;
    const char *cv = cookie_get(m, "session", &cl);
    if (cv && (cv < m->arena || cv + cl > m->arena + m->len)) __builtin_trap();
    /* serve.c hashes only a non-empty spec (the vary record's). */
    vary_spec(r, m, &w->spec);
    if (w->spec.len) {
        uint64_t h1 = vary_hash_spec(m, w->spec.p, w->spec.len);
        if (h1 != vary_hash_spec(m, w->spec.p, w->spec.len)) __builtin_trap();
    }
}

/* ---------------------------------------------------------------- driver */

struct ctx {
    struct fz f;
    struct work w;
};

static int on_headers_complete(llhttp_t *p)
{
    struct ctx *c = (struct ctx *)p->data; /* f is the first member */
    on_head(p, &c->w);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned mode = data[0];
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    size_t piece = mode & 0x3f;
    if (piece == 0) piece = n ? n : 1;

    struct ctx c;
    memset(&c, 0, sizeof c);
    c.f.pause = (mode & 0x80) != 0;
    if (mode & 0x40) {
        if (msg_init(&c.f.msg, 256, 8) != 0) return 0;
    } else if (msg_init(&c.f.msg, 32768, 100) != 0) {
        return 0;
    }

    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = on_message_begin;
    s.on_url = on_url;
    s.on_header_field = on_field;
    s.on_header_value = on_value;
    s.on_header_value_complete = on_value_complete;
    s.on_headers_complete = on_headers_complete;
    s.on_message_complete = on_message_complete;
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &s);
    parser.data = &c;

    /* Each piece is one read: parse it whole (resuming after pauses) or stop
     * at the first error, as server.c does. */
    for (size_t off = 0; off < n;) {
        size_t len = n - off < piece ? n - off : piece;
        const char *start = in + off, *end = in + off + len;
        c.f.lo = start;
        c.f.hi = end;
        bool failed = false;
        while (start < end) {
            enum llhttp_errno e = llhttp_execute(&parser, start, (size_t)(end - start));
            if (e == HPE_OK) break;
            if (e == HPE_PAUSED) {
                start = llhttp_get_error_pos(&parser);
                llhttp_resume(&parser);
                continue;
            }
            failed = true;
            break;
        }
        if (failed) break;
        off += len;
    }

    msg_free(&c.f.msg);
    sb_free(&c.w.host);
    sb_free(&c.w.target);
    sb_free(&c.w.t2);
    sb_free(&c.w.tag);
    sb_free(&c.w.ptag);
    sb_free(&c.w.key);
    sb_free(&c.w.tmp);
    sb_free(&c.w.spec);
    return 0;
}
