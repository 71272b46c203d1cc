/*
 * test_proxy_util.c -- the proxy's small pieces: HTTP dates, the stored
 * object's view and age, cookies, the Vary hash, the per-user key part,
 * route matching, header lookups and lists, and address parsing. Requests
 * are struct http_msg built by hand (no parser).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "proxy/internal.h"

/* ------------------------------------------------------------ messages */

#define MAXH 16

struct req {
    struct http_msg m;
    struct http_header h[MAXH];
};

/* A request with the given headers: name, value, name, value, ..., NULL. */
static void req_init(struct req *r, ...)
{
    va_list ap;
    memset(r, 0, sizeof *r);
    r->m.h = r->h;
    r->m.maxh = MAXH;
    va_start(ap, r);
    for (;;) {
        const char *name = va_arg(ap, const char *);
        if (name == NULL) break;
        const char *value = va_arg(ap, const char *);
        cr_assert_lt(r->m.nh, MAXH);
        struct http_header *h = &r->h[r->m.nh++];
        h->name = name;
        h->nlen = (uint32_t)strlen(name);
        h->value = value;
        h->vlen = (uint32_t)strlen(value);
    }
    va_end(ap);
}

/* ---------------------------------------------------------------- dates */

#define RFC_EXAMPLE 784111777 /* Sun, 06 Nov 1994 08:49:37 GMT */

static int64_t date(const char *s)
{
    return http_date_parse(s, strlen(s));
}

Test(http_date, the_three_formats)
{
    cr_assert_eq(date("Sun, 06 Nov 1994 08:49:37 GMT"), RFC_EXAMPLE);  /* IMF-fixdate */
    cr_assert_eq(date("Sunday, 06-Nov-94 08:49:37 GMT"), RFC_EXAMPLE); /* RFC 850 */
    cr_assert_eq(date("Sun Nov  6 08:49:37 1994"), RFC_EXAMPLE);       /* asctime */
    cr_assert_eq(date("Thu, 01 Jan 1970 00:00:00 GMT"), 0);
}

Test(http_date, length_is_honoured)
{
    const char *s = "Sun, 06 Nov 1994 08:49:37 GMTxyz";
    cr_assert_eq(http_date_parse(s, strlen(s) - 3), RFC_EXAMPLE);
    cr_assert_eq(http_date_parse(s, strlen(s)), -1);
}

Test(http_date, garbage)
{
    static const char *const bad[] = {
        "",
        "yesterday",
        "Sun, 06 Nov 1994 08:49:37",       /* no zone */
        "Sun, 06 Nov 1994 08:49:37 GMT x", /* trailing bytes */
        "Sun, 06 Nov 1994 25:49:37 GMT",   /* hour */
        "Sun, 32 Nov 1994 08:49:37 GMT",   /* day */
        "Sun, 06 Foo 1994 08:49:37 GMT",   /* month */
        "1994-11-06T08:49:37Z",            /* ISO 8601 is not an HTTP-date */
        "784111777",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_expect_eq(date(bad[i]), -1, "'%s' parsed", bad[i]);
    cr_assert_eq(http_date_parse(NULL, 0), -1);
    /* 64 bytes or more are not a date, whatever they hold. */
    char pad[128];
    memset(pad, ' ', 40);
    strcpy(pad + 40, "Sun, 06 Nov 1994 08:49:37 GMT");
    cr_assert_eq(date(pad), -1);
}

Test(http_date, fmt_is_imf_fixdate)
{
    char buf[32];
    http_date_fmt(RFC_EXAMPLE, buf);
    cr_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    http_date_fmt(0, buf);
    cr_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
}

Test(http_date, round_trip)
{
    static const int64_t ts[] = {0,
                                 1,
                                 RFC_EXAMPLE,
                                 951782400 /* 29 Feb */,
                                 1700000000,
                                 2147483647,
                                 2147483648LL,
                                 4102444800LL,
                                 253402300799LL /* 9999-12-31 23:59:59 */};
    for (size_t i = 0; i < sizeof ts / sizeof *ts; i++) {
        char buf[32];
        http_date_fmt(ts[i], buf);
        cr_assert_eq(strlen(buf), 29, "'%s'", buf);
        cr_expect_eq(date(buf), ts[i], "'%s' -> %lld", buf, (long long)date(buf));
    }
}

/* -------------------------------------------------------------- objects */

/* An object: header block, vary spec, tags, body, one after the other. */
static size_t make_obj(unsigned char *buf, uint32_t magic, const char *hdr,
                       const char *vary, const char *tags, const char *body)
{
    struct hobj h;
    memset(&h, 0, sizeof h);
    h.magic = magic;
    h.status = 200;
    h.hdr_len = (uint32_t)strlen(hdr);
    h.vary_len = (uint32_t)strlen(vary);
    h.tags_len = (uint32_t)strlen(tags);
    h.body_len = strlen(body);
    const char *etag = strstr(hdr, "\"");
    if (etag) {
        h.etag_off = (uint32_t)(etag - hdr);
        h.etag_len = 4;
    }
    size_t n = 0;
    memcpy(buf, &h, sizeof h);
    n += sizeof h;
    memcpy(buf + n, hdr, h.hdr_len);
    n += h.hdr_len;
    memcpy(buf + n, vary, h.vary_len);
    n += h.vary_len;
    memcpy(buf + n, tags, h.tags_len);
    n += h.tags_len;
    memcpy(buf + n, body, h.body_len);
    return n + h.body_len;
}

#define HDR "ETag: \"v1\"\r\nContent-Type: text/plain\r\n"

Test(hobj, view_of_a_valid_object)
{
    unsigned char buf[512];
    size_t n = make_obj(buf, HOBJ_MAGIC, HDR, "accept-encoding\n", "a\nb\n", "hello");
    struct hview v;
    cr_assert_eq(hobj_view(buf, n, &v), 0);
    cr_assert_eq(v.h.magic, HOBJ_MAGIC);
    cr_assert_eq(v.h.status, 200);
    cr_assert_eq(v.hdr, (const char *)buf + sizeof(struct hobj));
    cr_assert_eq(memcmp(v.hdr, HDR, strlen(HDR)), 0);
    cr_assert_eq(memcmp(v.vary, "accept-encoding\n", v.h.vary_len), 0);
    cr_assert_eq(memcmp(v.tags, "a\nb\n", v.h.tags_len), 0);
    cr_assert_eq(v.h.body_len, 5);
    cr_assert_eq(memcmp(v.body, "hello", 5), 0);
    cr_assert_eq(memcmp(v.hdr + v.h.etag_off, "\"v1\"", v.h.etag_len), 0);
}

Test(hobj, vary_record_and_hit_for_miss_are_objects_too)
{
    unsigned char buf[512];
    struct hview v;
    size_t n = make_obj(buf, HOBJ_VARY, "", "accept-language\n", "", "");
    cr_assert_eq(hobj_view(buf, n, &v), 0);
    cr_assert_eq(v.h.vary_len, 16);
    n = make_obj(buf, HOBJ_HFM, "", "", "", "");
    cr_assert_eq(hobj_view(buf, n, &v), 0);
    cr_assert_eq(n, sizeof(struct hobj));
}

Test(hobj, truncated_or_longer)
{
    unsigned char buf[512];
    struct hview v;
    size_t n = make_obj(buf, HOBJ_MAGIC, HDR, "", "t\n", "body");
    cr_assert_eq(hobj_view(buf, n - 1, &v), -1);
    cr_assert_eq(hobj_view(buf, n + 1, &v), -1);
    cr_assert_eq(hobj_view(buf, sizeof(struct hobj) - 1, &v), -1);
    cr_assert_eq(hobj_view(buf, 0, &v), -1);
}

Test(hobj, wrong_magic)
{
    unsigned char buf[512];
    struct hview v;
    size_t n = make_obj(buf, 0x12345678u, HDR, "", "", "body");
    cr_assert_eq(hobj_view(buf, n, &v), -1);
    memset(buf, 'x', sizeof buf); /* a KV value that is not an object */
    cr_assert_eq(hobj_view(buf, sizeof buf, &v), -1);
}

Test(hobj, etag_outside_the_header_block)
{
    unsigned char buf[512];
    struct hview v;
    size_t n = make_obj(buf, HOBJ_MAGIC, HDR, "", "", "body");
    struct hobj h;
    memcpy(&h, buf, sizeof h);
    h.etag_off = h.hdr_len - 2;
    memcpy(buf, &h, sizeof h);
    cr_assert_eq(hobj_view(buf, n, &v), -1);
    h.etag_off = 0xfffffff0u;
    h.etag_len = 0x20;
    memcpy(buf, &h, sizeof h);
    cr_assert_eq(hobj_view(buf, n, &v), -1);
}

/* The four lengths must not wrap when added. */
Test(hobj, huge_lengths_do_not_wrap)
{
    unsigned char buf[512];
    struct hview v;
    size_t n = make_obj(buf, HOBJ_MAGIC, "", "", "", "");
    struct hobj h;
    memcpy(&h, buf, sizeof h);
    h.body_len = UINT64_MAX - 1; /* with hdr_len 2: wraps to 0 in 64 bits */
    h.hdr_len = 2;
    memcpy(buf, &h, sizeof h);
    cr_assert_eq(hobj_view(buf, n, &v), -1);
}

Test(hobj, age)
{
    struct hobj h;
    memset(&h, 0, sizeof h);
    h.resp_wall_ms = 1000000;
    h.init_age_ms = 5000;
    cr_assert_eq(hobj_age_ms(&h, 1000000), 5000);
    cr_assert_eq(hobj_age_ms(&h, 1003000), 8000);
    /* A clock behind the response time does not make it younger. */
    cr_assert_eq(hobj_age_ms(&h, 999000), 5000);
    h.init_age_ms = 0;
    cr_assert_eq(hobj_age_ms(&h, 1000000 + 86400000), 86400000);
}

/* -------------------------------------------------------------- cookies */

static void cookie_is(const struct http_msg *m, const char *name, const char *want)
{
    size_t len = 12345;
    const char *v = cookie_get(m, name, &len);
    if (want == NULL) {
        cr_assert_null(v, "cookie %s: got '%.*s'", name, (int)(v ? len : 0),
                       v ? v : "");
        return;
    }
    cr_assert_not_null(v, "cookie %s absent", name);
    cr_assert_eq(len, strlen(want), "cookie %s: '%.*s'", name, (int)len, v);
    cr_assert_eq(memcmp(v, want, len), 0, "cookie %s: '%.*s'", name, (int)len, v);
}

Test(cookie, several)
{
    struct req r;
    req_init(&r, "Host", "h", "Cookie", "a=1; bb=two; c=3", NULL);
    cookie_is(&r.m, "a", "1");
    cookie_is(&r.m, "bb", "two");
    cookie_is(&r.m, "c", "3");
}

Test(cookie, quoted_value)
{
    struct req r;
    req_init(&r, "Cookie", "session=\"abc def\"; q=\"\"; half=\"x", NULL);
    cookie_is(&r.m, "session", "abc def");
    cookie_is(&r.m, "q", "");
    cookie_is(&r.m, "half", "\"x"); /* not a quoted string: kept */
}

Test(cookie, spaces)
{
    struct req r;
    req_init(&r, "Cookie", "  a=1 ;b=2;   c= 3 ;d=\t4\t", NULL);
    cookie_is(&r.m, "a", "1");
    cookie_is(&r.m, "b", "2");
    cookie_is(&r.m, "c", "3");
    cookie_is(&r.m, "d", "4");
}

Test(cookie, absent)
{
    struct req r;
    req_init(&r, "Host", "h", "Cookie", "ab=1; b=a=2; A=3; flag", "X-Cookie", "a=9",
             NULL);
    cookie_is(&r.m, "a", NULL);    /* prefix of "ab", a value "a=2", "A" (case) */
    cookie_is(&r.m, "flag", NULL); /* no '=' */
    cookie_is(&r.m, "zzz", NULL);
    cookie_is(&r.m, "b", "a=2");
    req_init(&r, "Host", "h", NULL);
    cookie_is(&r.m, "a", NULL);
}

Test(cookie, empty_value_is_present)
{
    struct req r;
    req_init(&r, "Cookie", "a=; b=1", NULL);
    cookie_is(&r.m, "a", "");
}

Test(cookie, multiple_cookie_headers)
{
    struct req r;
    req_init(&r, "Cookie", "a=1", "Accept", "*/*", "COOKIE", "b=2; a=other", "cookie",
             "c=3", NULL);
    cookie_is(&r.m, "a", "1"); /* the first one wins */
    cookie_is(&r.m, "b", "2");
    cookie_is(&r.m, "c", "3");
}

/* ----------------------------------------------------------------- vary */

static uint64_t vh(const struct req *r, const char *spec)
{
    return vary_hash_spec(&r->m, spec, strlen(spec));
}

Test(vary, same_values_same_hash)
{
    struct req a, b;
    req_init(&a, "Host", "a", "Accept-Language", "en", "X-Other", "1", NULL);
    req_init(&b, "accept-language", "en", "Host", "b", "X-Other", "2", NULL);
    const char *spec = "accept-language\n";
    cr_assert_eq(vh(&a, spec), vh(&b, spec));
    cr_assert_eq(vh(&a, spec), vh(&a, spec));
}

Test(vary, different_values_different_hash)
{
    struct req a, b, c;
    req_init(&a, "Accept-Language", "en", NULL);
    req_init(&b, "Accept-Language", "de", NULL);
    req_init(&c, "Host", "h", NULL); /* absent */
    const char *spec = "accept-language\n";
    cr_assert_neq(vh(&a, spec), vh(&b, spec));
    cr_assert_neq(vh(&a, spec), vh(&c, spec));
    cr_assert_neq(vh(&b, spec), vh(&c, spec));
}

Test(vary, every_named_header_counts)
{
    struct req a, b;
    req_init(&a, "Accept-Language", "en", "X-Device", "phone", NULL);
    req_init(&b, "Accept-Language", "en", "X-Device", "desktop", NULL);
    cr_assert_eq(vh(&a, "accept-language\n"), vh(&b, "accept-language\n"));
    cr_assert_neq(vh(&a, "accept-language\nx-device\n"),
                  vh(&b, "accept-language\nx-device\n"));
    /* Same values under other names are other variants. */
    struct req c, d;
    req_init(&c, "X-A", "1", NULL);
    req_init(&d, "X-B", "1", NULL);
    cr_assert_neq(vh(&c, "x-a\nx-b\n"), vh(&d, "x-a\nx-b\n"));
}

Test(vary, accept_encoding_normalised)
{
    struct req a, b, c, d, e;
    req_init(&a, "Accept-Encoding", "gzip, br", NULL);
    req_init(&b, "Accept-Encoding", "br,gzip", NULL);
    req_init(&c, "Accept-Encoding", "BR ,  GZip", NULL);
    req_init(&d, "Accept-Encoding", "gzip", NULL);
    req_init(&e, "Accept-Encoding", "gzip, br, zstd", NULL);
    const char *spec = "accept-encoding\n";
    cr_assert_eq(vh(&a, spec), vh(&b, spec));
    cr_assert_eq(vh(&a, spec), vh(&c, spec));
    cr_assert_neq(vh(&a, spec), vh(&d, spec));
    cr_assert_neq(vh(&a, spec), vh(&e, spec));
}

Test(vary, other_headers_are_not_reordered)
{
    struct req a, b;
    req_init(&a, "Accept-Language", "en, de", NULL);
    req_init(&b, "Accept-Language", "de, en", NULL);
    cr_assert_neq(vh(&a, "accept-language\n"), vh(&b, "accept-language\n"));
}

Test(vary, cookie_entries)
{
    struct req a, b, c, d;
    req_init(&a, "Cookie", "theme=dark; sid=1", NULL);
    req_init(&b, "Cookie", "sid=2; theme=dark", NULL);
    req_init(&c, "Cookie", "theme=light; sid=1", NULL);
    req_init(&d, "Cookie", "sid=1", NULL);
    const char *spec = "=theme\n";
    cr_assert_eq(vh(&a, spec), vh(&b, spec)); /* only the named cookie counts */
    cr_assert_neq(vh(&a, spec), vh(&c, spec));
    cr_assert_neq(vh(&a, spec), vh(&d, spec));
    /* A cookie entry is not the header of that name. */
    struct req e, f;
    req_init(&e, "Theme", "dark", NULL);
    req_init(&f, "Theme", "light", NULL);
    cr_assert_eq(vh(&e, spec), vh(&f, spec));
    cr_assert_neq(vh(&e, "theme\n"), vh(&f, "theme\n"));
}

Test(vary, headers_and_cookies_together)
{
    struct req a, b;
    req_init(&a, "Accept-Language", "en", "Cookie", "theme=dark", NULL);
    req_init(&b, "Accept-Language", "en", "Cookie", "theme=light", NULL);
    const char *spec = "accept-language\n=theme\n";
    cr_assert_neq(vh(&a, spec), vh(&b, spec));
    cr_assert_eq(vh(&a, "accept-language\n"), vh(&b, "accept-language\n"));
}

/* ------------------------------------------------------------- user key */

Test(key, hmac_sha256_vector)
{
    /* printf 'alice' | openssl dgst -sha256 -hmac secret, first 32 hex. */
    struct sbuf k = {0};
    cr_assert_eq(key_add_user(&k, "secret", "alice", 5), 0);
    cr_assert_eq(k.len, 35);
    cr_assert_eq(memcmp(k.p, KEY_SEP "u:4360c67bc81025114044578d7c4e8e0f", 35), 0, "%.*s",
                 (int)k.len, k.p);
    sb_free(&k);
}

Test(key, appends_to_the_key)
{
    struct sbuf k = {0};
    sb_str(&k, "h:example.com/a?b");
    size_t base = k.len;
    cr_assert_eq(key_add_user(&k, "secret", "alice", 5), 0);
    cr_assert_eq(k.len, base + 35);
    cr_assert_eq(
        memcmp(k.p, "h:example.com/a?b" KEY_SEP "u:4360c67bc81025114044578d7c4e8e0f", k.len), 0);
    /* Another user, another secret: another key. */
    struct sbuf b = {0}, c = {0};
    key_add_user(&b, "secret", "bob", 3);
    key_add_user(&c, "other", "alice", 5);
    cr_assert_neq(memcmp(b.p, k.p + base, 35), 0);
    cr_assert_neq(memcmp(c.p, k.p + base, 35), 0);
    /* Only idlen bytes of the identity count. */
    struct sbuf d = {0};
    key_add_user(&d, "secret", "alice and more", 5);
    cr_assert_eq(memcmp(d.p, k.p + base, 35), 0);
    sb_free(&k);
    sb_free(&b);
    sb_free(&c);
    sb_free(&d);
}

/* --------------------------------------------------------------- routes */

static const char *match(const struct config_http *h, const char *path)
{
    const struct config_route *r = route_match(h, path, strlen(path));
    return r ? r->name : NULL;
}

static void match_is(const struct config_http *h, const char *path, const char *want)
{
    const char *got = match(h, path);
    if (want == NULL)
        cr_assert_null(got, "%s matched %s", path, got);
    else
        cr_assert(got && strcmp(got, want) == 0, "%s: %s, not %s", path,
                  got ? got : "(none)", want);
}

Test(route, first_match_wins)
{
    struct config_route rs[] = {
        {.name = "deep", .path = "/a/b/*"},
        {.name = "a", .path = "/a/*"},
        {.name = "deep-too-late", .path = "/a/b/c/*"},
        {.name = "all", .path = "*"},
    };
    struct config_http h = {.routes = rs, .n_routes = 4};
    match_is(&h, "/a/b/c/d", "deep");
    match_is(&h, "/a/x", "a");
    match_is(&h, "/a/", "a");
    match_is(&h, "/a", "all");
    match_is(&h, "/", "all");
}

Test(route, globs)
{
    struct config_route rs[] = {
        {.name = "version", .path = "/v[12]/*"}, {.name = "one-char", .path = "/x?"},
        {.name = "css", .path = "*.css"},        {.name = "exact", .path = "/exact"},
        {.name = "not-a", .path = "/[!a]*"},
    };
    struct config_http h = {.routes = rs, .n_routes = 5};
    match_is(&h, "/v1/users", "version");
    match_is(&h, "/v2/", "version");
    match_is(&h, "/xy", "one-char");
    match_is(&h, "/static/site.css", "css");
    match_is(&h, "/exact", "exact");
    match_is(&h, "/v3/users", "not-a");
    match_is(&h, "/exact/more", "not-a");
    match_is(&h, "/a", NULL);
    match_is(&h, "/abc", NULL);
}

Test(route, matching_uses_the_length)
{
    struct config_route rs[] = {{.name = "exact", .path = "/a"}};
    struct config_http h = {.routes = rs, .n_routes = 1};
    cr_assert_not_null(route_match(&h, "/abc", 2));
    cr_assert_null(route_match(&h, "/abc", 3));
}

Test(route, no_routes)
{
    struct config_http h = {0};
    match_is(&h, "/", NULL);
}

/* -------------------------------------------------------------- headers */

static bool has(const char *list, const char *token)
{
    return http_list_has(list, strlen(list), token);
}

Test(headers, list_has)
{
    cr_assert(has("keep-alive, Upgrade", "upgrade"));
    cr_assert(has("keep-alive, Upgrade", "Keep-Alive"));
    cr_assert(has("close", "close"));
    cr_assert(has(" ,, a ,\tb\t, ", "b"));
    cr_assert(has("x-a , x-b  ", "x-b"));
    cr_assert_not(has("keep-alive", "keep"));
    cr_assert_not(has("x-ab", "x-a"));
    cr_assert_not(has("a b", "a"));
    cr_assert_not(has("", "close"));
    cr_assert_not(has("close", ""));
    cr_assert(http_list_has("close, x", 5, "close"));
    cr_assert_not(http_list_has("close, x", 5, "x"));
}

static bool hbh(const char *name)
{
    return http_hop_by_hop(name, strlen(name));
}

Test(headers, hop_by_hop)
{
    static const char *const yes[] = {"Connection",
                                      "keep-alive",
                                      "TE",
                                      "Trailer",
                                      "Upgrade",
                                      "Transfer-Encoding",
                                      "Proxy-Connection",
                                      "proxy-authorization",
                                      "Proxy-Authenticate"};
    static const char *const no[] = {"Host",        "Content-Length", "tee",
                                     "Connections", "proxy",          "X-Proxy-Id",
                                     "Trailers",    "Cookie",         ""};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        cr_expect(hbh(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        cr_expect_not(hbh(no[i]), "%s", no[i]);
    cr_assert(http_hop_by_hop("TE: x", 2)); /* only nlen bytes count */
}

Test(headers, find_and_count)
{
    struct req r;
    req_init(&r, "Host", "h", "Cookie", "a=1", "X", "x", "cookie", "b=2", "COOKIE",
             "c=3", NULL);
    size_t n = 99;
    const struct http_header *h = http_find(&r.m, "cookie", &n);
    cr_assert_eq(n, 3);
    cr_assert_eq(h, &r.h[1]);
    cr_assert_eq(http_find(&r.m, "COOKIE", NULL), &r.h[1]);
    h = http_find(&r.m, "host", &n);
    cr_assert_eq(n, 1);
    cr_assert_eq(h, &r.h[0]);
    h = http_find(&r.m, "range", &n);
    cr_assert_null(h);
    cr_assert_eq(n, 0);
    cr_assert_null(http_find(&r.m, "cooki", &n)); /* no prefix matches */
    cr_assert_eq(n, 0);
    struct req empty;
    req_init(&empty, NULL);
    cr_assert_null(http_find(&empty.m, "host", &n));
    cr_assert_eq(n, 0);
}

/* ------------------------------------------------------------ addresses */

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

Test(address, upstream_valid)
{
    struct sockaddr_storage ss;
    char hp[64];
    cr_assert_eq(http_parse_upstream("http://127.0.0.1:8000", &ss, hp, sizeof hp), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(port_of(&ss), 8000);
    cr_assert_str_eq(hp, "127.0.0.1:8000");
    cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(0x7f000001));

    cr_assert_eq(http_parse_upstream("http://10.1.2.3:80/", &ss, hp, sizeof hp), 0);
    cr_assert_str_eq(hp, "10.1.2.3:80");
    cr_assert_eq(port_of(&ss), 80);

    cr_assert_eq(http_parse_upstream("http://localhost:65535", &ss, hp, sizeof hp), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(port_of(&ss), 65535);
    cr_assert_str_eq(hp, "localhost:65535"); /* the Host strata sends */

    cr_assert_eq(http_parse_upstream("http://127.0.0.1:1", &ss, NULL, 0), 0);
}

Test(address, upstream_ipv6)
{
    struct sockaddr_storage ss;
    char hp[64];
    cr_assert_eq(http_parse_upstream("http://[::1]:8080", &ss, hp, sizeof hp), 0);
    cr_assert_eq(ss.ss_family, AF_INET6);
    cr_assert_eq(port_of(&ss), 8080);
    cr_assert_str_eq(hp, "[::1]:8080");
    struct in6_addr lo = IN6ADDR_LOOPBACK_INIT;
    cr_assert_eq(memcmp(&((struct sockaddr_in6 *)&ss)->sin6_addr, &lo, sizeof lo), 0);
    cr_assert_eq(http_parse_upstream("http://[2001:db8::7]:443/", &ss, hp, sizeof hp),
                 0);
    cr_assert_eq(ss.ss_family, AF_INET6);
}

Test(address, upstream_invalid)
{
    static const char *const bad[] = {
        "https://127.0.0.1:443",      /* no TLS */
        "127.0.0.1:8000",             /* no scheme */
        "http://127.0.0.1:8000/path", /* a path */
        "http://127.0.0.1:8000//",
        "http://127.0.0.1", /* no port */
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:123456",
        "http://127.0.0.1:8o",
        "http://127.0.0.1:-1",
        "http://example.com:80", /* numeric hosts only */
        "http://[::1]8080",
        "http://[::1:8080",
        "http://::1]:8080",
        "http://:8080",
        "http://",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct sockaddr_storage ss;
        char hp[64];
        cr_expect_neq(http_parse_upstream(bad[i], &ss, hp, sizeof hp), 0,
                      "'%s' accepted", bad[i]);
    }
}

Test(address, listen)
{
    struct sockaddr_storage ss;
    cr_assert_eq(http_parse_listen("127.0.0.1:8080", &ss), 0);
    cr_assert_eq(ss.ss_family, AF_INET);
    cr_assert_eq(port_of(&ss), 8080);
    cr_assert_eq(http_parse_listen("0.0.0.0:1", &ss), 0);
    cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(0));
    cr_assert_eq(http_parse_listen("localhost:9000", &ss), 0);
    cr_assert_eq(((struct sockaddr_in *)&ss)->sin_addr.s_addr, htonl(0x7f000001));
    cr_assert_eq(http_parse_listen("[::1]:8080", &ss), 0);
    cr_assert_eq(ss.ss_family, AF_INET6);
    cr_assert_eq(port_of(&ss), 8080);
    cr_assert_eq(http_parse_listen("[::]:443", &ss), 0);
    cr_assert_eq(ss.ss_family, AF_INET6);

    static const char *const bad[] = {"8080",
                                      ":8080",
                                      "127.0.0.1",
                                      "127.0.0.1:",
                                      "127.0.0.1:0",
                                      "127.0.0.1:70000",
                                      "127.0.0.1:http",
                                      "[::1]",
                                      "[::1]:",
                                      "[::1]8080",
                                      "256.0.0.1:80",
                                      "host.example:80",
                                      "",
                                      "http://127.0.0.1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        cr_expect_neq(http_parse_listen(bad[i], &ss), 0, "'%s' accepted", bad[i]);
}
