/*
 * admin.c -- the admin API (DESIGN "Admin API"): health, stats, Prometheus
 * metrics, invalidation, warming, explain, key-value access to every named
 * cache, the admin page; and for tests (STRATA_TEST_CLOCK=1) the clock and
 * the count of coalesced waiters.
 *
 * Every request needs `Authorization: Bearer <token>` (compared in constant
 * time) and a Host naming the admin listener or localhost (a DNS-rebinding
 * page cannot reach it); POST bodies must be application/json. Errors are
 * {"error": "...", "detail": "..."}; every response has an X-Request-Id.
 *
 * One thread, one libuv loop: every handler answers at once except warm,
 * which fetches through the proxy's own listener with the HTTP client of
 * src/http (asynchronously, on this loop) and answers when the last URL is
 * done.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/metrics.h"
#include "admin/ui.h"
#include "backend/backend.h"
#include "core/log.h"
#include "http/http.h"
#include "proxy/internal.h"

#define ADMIN_MAX_JSON (1u << 20)   /* POST bodies */
#define ADMIN_MAX_VALUE (64u << 20) /* PUT .../keys/KEY */
#define WARM_MAX_URLS 10000
#define WARM_MAX_CONCURRENCY 64

struct warm;
struct endpoint;

struct admin {
    const struct config *cfg;
    strata *s;
    struct proxy *px;
    bool test_clock;
    uint64_t started_ns;
    struct up_pool *pool; /* warm: requests to the proxy listener */
    long warms;           /* in progress (the admin loop's; tests read it) */
    struct up_conf upc;
    char *token;
    bool token_generated; /* written to admin.token_file by admin_publish_token */
    char port[8];
    struct http_server *srv;
    _Atomic uint64_t ids;
};

struct areq {
    struct admin *a;
    struct http_conn *c;
    struct http_request *req;
    char id[40];
    char *body;
    size_t blen;
    bool too_big;
    struct warm *warm;         /* a warm in progress */
    const char *extra;         /* more header lines ("Name: value\r\n"...) */
    const struct endpoint *ep; /* decided from the head, when a body follows */
};

static void reply_bytes(struct areq *r, int status, const char *ctype, const char *body,
                        size_t blen)
{
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\nCache-Control: no-store\r\n"
                     "X-Content-Type-Options: nosniff\r\n%s%s\r\n",
                     status, http_reason(status), ctype, blen, r->id,
                     r->extra ? r->extra : "",
                     !r->req->keep_alive  ? "Connection: close\r\n"
                     : r->req->minor == 0 ? "Connection: keep-alive\r\n"
                                          : "");
    if (n < 0 || (size_t)n >= sizeof head) n = 0; /* cannot happen: bounded inputs */
    struct http_conn *c = r->c;
    bool keep = r->req->keep_alive;
    if (r->req->method == HTTP_HEAD) blen = 0; /* the head says how long */
    http_conn_set_data(c, NULL);               /* ours to free from here */
    free(r->body);
    free(r);
    http_conn_write_copy(c, head, (size_t)n);
    http_conn_write_copy(c, body, blen);
    http_conn_end(c, keep);
}

static void reply(struct areq *r, int status, const char *ctype, const char *body)
{
    reply_bytes(r, status, ctype, body, strlen(body));
}

static void reply_json(struct areq *r, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    if (s == NULL) {
        reply(r, 500, "application/json", "{\"error\":\"out of memory\"}\n");
        return;
    }
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (t) {
        t[n] = '\n';
        t[n + 1] = 0;
        s = t;
    }
    reply(r, status, "application/json", s);
    free(s);
}

static json_t *jtext(const char *s);

static void error(struct areq *r, int status, const char *err, const char *detail)
{
    json_t *j = json_object();
    json_object_set_new(j, "error", jtext(err));
    json_object_set_new(j, "detail", jtext(detail));
    reply_json(r, status, j);
}

/* DNS rebinding needs a name: a Host that is the admin listener as
 * configured, `localhost`, or an IP literal (with or without a port) cannot
 * come from a page on another site. Anything else is refused. */
static bool host_ok(struct admin *a, const struct http_msg *m)
{
    size_t n = 0;
    const struct http_header *h = http_find(m, "host", &n);
    if (h == NULL || n != 1 || h->vlen == 0 || h->vlen >= 300) return false;
    const char *listen = a->cfg->admin.listen;
    if (h->vlen == strlen(listen) && strncasecmp(h->value, listen, h->vlen) == 0)
        return true;
    char host[300];
    memcpy(host, h->value, h->vlen);
    host[h->vlen] = 0;
    char *end = host + h->vlen;
    if (host[0] == '[') { /* [v6]:port */
        char *rb = strchr(host, ']');
        if (rb == NULL || (rb[1] && rb[1] != ':')) return false;
        end = rb + 1;
    } else {
        char *colon = strchr(host, ':');
        if (colon) end = colon;
    }
    if (*end == ':') { /* the port: digits only */
        if (end[1] == 0) return false;
        for (const char *c = end + 1; *c; c++)
            if (*c < '0' || *c > '9') return false;
    }
    *end = 0;
    if (strcasecmp(host, "localhost") == 0) return true;
    unsigned char buf[16];
    if (host[0] == '[') {
        end[-1] = 0;
        return inet_pton(AF_INET6, host + 1, buf) == 1;
    }
    return inet_pton(AF_INET, host, buf) == 1;
}

static bool auth_ok(struct admin *a, const struct http_msg *m)
{
    const struct http_header *h = http_find(m, "authorization", NULL);
    if (h == NULL || h->vlen < 7 || strncasecmp(h->value, "bearer ", 7) != 0)
        return false;
    size_t tl = strlen(a->token), n = h->vlen - 7;
    unsigned char d = (unsigned char)(n != tl);
    for (size_t i = 0; i < n; i++)
        d |= (unsigned char)(h->value[7 + i] ^ a->token[i % (tl ? tl : 1)]);
    return d == 0;
}

static bool path_is(const struct http_msg *m, const char *path)
{
    size_t n = strlen(path);
    if (m->url_len < n || memcmp(m->url, path, n) != 0) return false;
    return m->url_len == n || m->url[n] == '?';
}

static void health(struct areq *r)
{
    json_t *b = json_object();
    for (size_t i = 0; i < r->a->cfg->caches.n; i++)
        json_object_set_new(b, r->a->cfg->caches.v[i].name,
                            json_pack("{s:b}", "ok", 1));
    reply_json(r, 200, json_pack("{s:s, s:o}", "status", "ok", "backends", b));
}

static void debug_clock(struct areq *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->blen, 0, &je);
    if (j == NULL) {
        error(r, 400, "bad JSON", je.text);
        return;
    }
    json_t *adv = json_object_get(j, "advance_ms");
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "advance_ms") != 0) {
            char d[300];
            snprintf(d, sizeof d, "unknown field '%s'", k);
            json_decref(j);
            error(r, 400, "unknown field", d);
            return;
        }
    }
    if (!json_is_integer(adv) || json_integer_value(adv) < 0) {
        json_decref(j);
        error(r, 400, "bad field", "advance_ms must be an integer >= 0");
        return;
    }
    proxy_clock_advance(json_integer_value(adv));
    json_decref(j);
    reply_json(r, 200, json_pack("{s:I}", "now_ms", (json_int_t)proxy_wall_ms()));
}

/* ---- POST /_strata/invalidate ---- */

static bool tag_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 256) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f || c == ',' || c == '"' || c == '\\') return false;
    }
    return true;
}

/* The path?query of an HTTP object's key: "h:" host target, less the
 * suffixes strata appends (KEY_SEP "u:" 32 hex, KEY_SEP "v:" 16 hex). */
static bool key_target(const char *k, size_t n, const char **t, size_t *tl)
{
    if (n < 3 || k[0] != 'h' || k[1] != ':') return false;
    const char *slash = memchr(k + 2, '/', n - 2);
    if (slash == NULL) return false;
    size_t end = n;
    static const struct {
        char c;
        size_t hex;
    } sfx[] = {{'v', 16}, {'u', 32}};
    for (size_t i = 0; i < 2; i++) {
        size_t need = 3 + sfx[i].hex;
        if (end - (size_t)(slash - k) > need && k[end - need] == KEY_SEP[0] &&
            k[end - need + 1] == sfx[i].c && k[end - need + 2] == ':')
            end -= need;
    }
    *t = slash;
    *tl = end - (size_t)(slash - k);
    return true;
}

static bool match_url(const void *key, size_t klen, void *ud)
{
    const char *glob = ud, *t;
    size_t tl;
    return key_target(key, klen, &t, &tl) && core_glob_match(glob, strlen(glob), t, tl);
}

/* A string array field, or NULL when absent; *bad on a wrong type. */
static json_t *strings(json_t *j, const char *name, const char **bad)
{
    json_t *a = json_object_get(j, name);
    size_t i;
    json_t *v;
    if (a == NULL) return NULL;
    if (!json_is_array(a)) {
        *bad = name;
        return NULL;
    }
    json_array_foreach(a, i, v) if (!json_is_string(v))
    {
        *bad = name;
        return NULL;
    }
    return a;
}

static void invalidate(struct areq *r)
{
    static const char *const fields[] = {"cache", "keys",         "patterns", "tags",
                                         "urls",  "url_patterns", "all"};
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->blen, 0, &je);
    if (j == NULL || !json_is_object(j)) {
        if (j) json_decref(j);
        error(r, 400, "bad JSON", j ? "expected an object" : je.text);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
            if (strcmp(k, fields[i]) == 0) known = true;
        if (!known) {
            char d[300];
            snprintf(d, sizeof d, "unknown field '%s'", k);
            json_decref(j);
            error(r, 400, "unknown field", d);
            return;
        }
    }
    const char *bad = NULL;
    json_t *keys = strings(j, "keys", &bad), *pats = strings(j, "patterns", &bad),
           *tags = strings(j, "tags", &bad), *urls = strings(j, "urls", &bad),
           *upats = strings(j, "url_patterns", &bad);
    json_t *all = json_object_get(j, "all"), *cache = json_object_get(j, "cache");
    if (all && !json_is_boolean(all)) bad = "all";
    if (cache && !json_is_string(cache) && !json_is_null(cache)) bad = "cache";
    size_t i;
    json_array_foreach(pats, i, v) if (!core_glob_valid(json_string_value(v))) bad =
        "patterns";
    json_array_foreach(upats, i, v) if (!core_glob_valid(json_string_value(v))) bad =
        "url_patterns";
    json_array_foreach(tags, i, v) if (!tag_ok(json_string_value(v))) bad = "tags";
    /* urls: paths or absolute http:// URLs, turned into the objects' tags */
    struct sbuf utags = {0}, t = {0}, tg = {0};
    size_t nut = 0;
    json_array_foreach(urls, i, v)
    {
        const char *u = json_string_value(v);
        size_t n = strlen(u);
        const char *host = NULL;
        size_t hl = 0;
        if (n > 7 && strncasecmp(u, "http://", 7) == 0) {
            host = u + 7;
            const char *slash = strchr(host, '/');
            hl = slash ? (size_t)(slash - host) : strlen(host);
            u = slash ? slash : "/";
            n = strlen(u);
        }
        if (n == 0 || u[0] != '/' || proxy_target(u, n, &t) != 0) {
            bad = "urls";
            break;
        }
        char lh[256];
        if (hl >= sizeof lh) {
            bad = "urls";
            break;
        }
        for (size_t x = 0; x < hl; x++)
            lh[x] = (char)((host[x] >= 'A' && host[x] <= 'Z') ? host[x] + 32 : host[x]);
        proxy_url_tag(&tg, host ? lh : NULL, hl, t.p, t.len);
        sb_add(&utags, tg.p, tg.len + 1);
        nut++;
    }
    sb_free(&t);
    sb_free(&tg);
    if (bad) {
        char d[300];
        snprintf(d, sizeof d,
                 "field '%s' has a wrong type or a value that is not valid", bad);
        sb_free(&utags);
        json_decref(j);
        error(r, 400, "bad field", d);
        return;
    }
    strata_cache *one = NULL;
    if (cache && json_is_string(cache)) {
        one = strata_cache_get(r->a->s, json_string_value(cache));
        if (one == NULL) {
            char d[300];
            snprintf(d, sizeof d, "%s", json_string_value(cache));
            sb_free(&utags);
            json_decref(j);
            error(r, 404, "unknown cache", d);
            return;
        }
    }
    const char **ut = calloc(nut ? nut : 1, sizeof *ut);
    const char *q = utags.p;
    for (size_t x = 0; x < nut; x++) {
        ut[x] = q;
        q += strlen(q) + 1;
    }
    long removed = 0;
    bool exact = true;
    const char *httpname = r->a->cfg->http.cache;
    for (size_t ci = 0; ci < r->a->cfg->caches.n; ci++) {
        strata_cache *c = strata_cache_get(r->a->s, r->a->cfg->caches.v[ci].name);
        if (c == NULL || (one && c != one)) continue;
        if (all && json_is_true(all)) {
            strata_stats st;
            strata_cache_stats(c, &st);
            if (strata_clear(c) == STRATA_OK) removed += (long)st.items;
            continue;
        }
        json_array_foreach(keys, i, v)
        {
            const char *key = json_string_value(v);
            if (strata_delete(c, key, strlen(key)) == STRATA_OK) removed++;
        }
        json_array_foreach(pats, i, v)
        {
            long n = strata_invalidate_pattern(c, json_string_value(v));
            if (n > 0) removed += n;
        }
        if (tags && json_array_size(tags)) {
            const char *tv[64];
            size_t nt = 0;
            json_array_foreach(tags, i, v)
            {
                tv[nt++] = json_string_value(v);
                if (nt == 64 || i + 1 == json_array_size(tags)) {
                    long n = strata_invalidate_tags(c, tv, nt);
                    if (n > 0) removed += n;
                    nt = 0;
                }
            }
            exact = false;
        }
        if (strcmp(strata_cache_name(c), httpname) == 0) {
            for (size_t x = 0; x < nut; x++) {
                long n = strata_invalidate_tags(c, &ut[x], 1);
                if (n > 0) removed += n;
                exact = false;
            }
            json_array_foreach(upats, i, v)
            {
                long n = strata_cache_invalidate_where(c, match_url,
                                                       (void *)json_string_value(v));
                if (n > 0) removed += n;
            }
        }
    }
    free(ut);
    sb_free(&utags);
    json_decref(j);
    reply_json(r, 200,
               json_pack("{s:I, s:b}", "removed", (json_int_t)removed, "exact", exact));
}

/* ---- GET /_strata/stats ---- */

static double uptime_s(const struct admin *a)
{
    return (double)(uv_hrtime() - a->started_ns) / 1e9;
}

static void stats(struct areq *r)
{
    struct admin *a = r->a;
    json_t *caches = json_object();
    for (size_t i = 0; i < strata_cache_count(a->s); i++) {
        strata_cache *c = strata_cache_at(a->s, i);
        strata_stats st;
        strata_cache_stats(c, &st);
        uint64_t looks = st.hits + st.misses;
        json_object_set_new(
            caches, strata_cache_name(c),
            json_pack(
                "{s:s, s:I, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                "backend", strata_cache_backend(c), "hits", (json_int_t)st.hits,
                "misses", (json_int_t)st.misses, "hit_rate",
                looks ? (double)st.hits / (double)looks : 0.0, "sets",
                (json_int_t)st.sets, "deletes", (json_int_t)st.deletes, "evictions",
                (json_int_t)st.evictions, "expired", (json_int_t)st.expired,
                "invalidated", (json_int_t)st.invalidated, "errors",
                (json_int_t)st.errors, "items", (json_int_t)st.items, "bytes",
                (json_int_t)st.bytes, "max_bytes", (json_int_t)st.max_bytes));
    }
    json_t *routes = json_object();
    for (size_t i = 0; a->px && i < proxy_nroutes(a->px); i++) {
        struct proxy_route_stats rs;
        proxy_route_stats(a->px, i, &rs);
        uint64_t total = 0;
        for (int k = 0; k < PR_N; k++)
            total += rs.result[k];
        json_t *o = json_pack("{s:I}", "requests", (json_int_t)total);
        for (int k = PR_NONE + 1; k < PR_N; k++)
            json_object_set_new(o, proxy_result_name[k],
                                json_integer((json_int_t)rs.result[k]));
        json_object_set_new(o, "upstream_requests",
                            json_integer((json_int_t)hist_count(&rs.upstream)));
        json_object_set_new(o, "upstream_seconds",
                            json_real((double)rs.upstream.sum_ns / 1e9));
        uint64_t n = hist_count(&rs.latency);
        json_object_set_new(
            o, "mean_seconds",
            json_real(n ? (double)rs.latency.sum_ns / 1e9 / (double)n : 0));
        json_object_set(routes, proxy_route_label(a->px, i), o);
        json_decref(o);
    }
    json_t *j = json_pack("{s:o, s:o, s:f}", "caches", caches, "routes", routes,
                          "uptime_s", uptime_s(a));
    if (a->px) {
        struct proxy_totals t;
        proxy_totals(a->px, &t);
        json_t *ue = json_object();
        for (int e = 0; e < PROXY_UP_ERRORS; e++)
            json_object_set_new(ue, proxy_up_error_name[e],
                                json_integer((json_int_t)t.upstream_errors[e]));
        json_object_set_new(j, "coalesced", json_integer((json_int_t)t.coalesced));
        json_object_set_new(j, "upstream_errors", ue);
    }
    reply_json(r, 200, j);
}

/* ---- GET /metrics ---- */

static void metrics(struct areq *r)
{
    struct sbuf b = {0};
    metrics_render(&b, r->a->s, r->a->px, uptime_s(r->a));
    if (b.p == NULL) {
        error(r, 500, "out of memory", "metrics");
        return;
    }
    reply_bytes(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    sb_free(&b);
}

/* ---- query strings and percent-encoding ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode n bytes of s into out (plus_space: '+' is a space, as in a query).
 * Returns 0, or -1 for a bad escape. */
static int pct_decode(const char *s, size_t n, struct sbuf *out, bool plus_space)
{
    out->len = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int h, l;
            if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
                return -1;
            c = (char)(h * 16 + l);
            i += 2;
        } else if (c == '+' && plus_space) {
            c = ' ';
        }
        if (sb_add(out, &c, 1) != 0) return -1;
    }
    sb_add(out, "", 1); /* NUL-terminated; len counts it: drop it */
    out->len--;
    return 0;
}

/* The decoded value of query parameter `name`, or 1 when absent, -1 bad. */
static int query_param(const struct http_msg *m, const char *name, struct sbuf *out)
{
    const char *q = memchr(m->url, '?', m->url_len);
    if (q == NULL) return 1;
    const char *end = m->url + m->url_len, *p = q + 1;
    size_t nl = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=')
            return pct_decode(p + nl + 1, (size_t)(e - p) - nl - 1, out, true);
        p = e + 1;
    }
    return 1;
}

/* ---- GET/PUT/DELETE /_strata/caches/{cache}/keys/{key} ---- */

static void kv(struct areq *r, const char *rest, size_t n)
{
    struct admin *a = r->a;
    const char *slash = memchr(rest, '/', n);
    static const char keys[] = "/keys/";
    if (slash == NULL || (size_t)(rest + n - slash) <= sizeof keys - 1 ||
        memcmp(slash, keys, sizeof keys - 1) != 0) {
        error(r, 404, "not found", "expected /_strata/caches/{cache}/keys/{key}");
        return;
    }
    struct sbuf name = {0}, key = {0}, tmp = {0};
    const char *kp = slash + sizeof keys - 1;
    size_t kl = (size_t)(rest + n - kp);
    if (pct_decode(rest, (size_t)(slash - rest), &name, false) != 0 ||
        pct_decode(kp, kl, &key, false) != 0 || key.len == 0) {
        error(r, 400, "bad path", "the cache and the key must be percent-encoded");
        goto out;
    }
    strata_cache *c = strata_cache_get(a->s, name.p);
    if (c == NULL) {
        error(r, 404, "unknown cache", name.p);
        goto out;
    }
    char lk[600];
    slog_val(lk, sizeof lk, key.p, key.len);
    if (r->req->method == HTTP_GET || r->req->method == HTTP_HEAD) {
        strata_value *v = NULL;
        int rc = strata_get(c, key.p, key.len, &v);
        slog(SLOG_DEBUG, "msg=\"cache get\" cache=%s key=%s result=%s request_id=%s",
             name.p, lk,
             rc == STRATA_OK     ? "hit"
             : rc == STRATA_MISS ? "miss"
                                 : strata_errname(rc),
             r->id);
        if (rc == STRATA_OK) {
            reply_bytes(r, 200, "application/octet-stream", strata_value_data(v),
                        strata_value_len(v));
            strata_value_release(v);
        } else if (rc == STRATA_MISS) {
            error(r, 404, "not found", "no such key");
        } else {
            error(r, 500, "cache error", strata_strerror(rc));
        }
    } else if (r->req->method == HTTP_PUT) {
        int64_t ttl = 0;
        const char *why = NULL;
        int q = query_param(r->req->msg, "ttl", &tmp);
        if (q < 0 || (q == 0 && config_parse_duration(tmp.p, &ttl, &why) != 0)) {
            char d[200];
            snprintf(d, sizeof d, "ttl: %s", why ? why : "bad percent-encoding");
            error(r, 400, "bad duration", d);
            goto out;
        }
        const char *tags[STRATA_TAGS_MAX];
        size_t nt = 0;
        struct sbuf tb = {0};
        q = query_param(r->req->msg, "tags", &tb);
        if (q < 0) {
            sb_free(&tb);
            error(r, 400, "bad field", "tags: bad percent-encoding");
            goto out;
        }
        for (char *t = q == 0 ? tb.p : NULL, *save = NULL, *tok; t || save; t = NULL) {
            tok = strtok_r(t, ",", &save);
            if (tok == NULL) break;
            if (!tag_ok(tok) || nt == STRATA_TAGS_MAX) {
                sb_free(&tb);
                error(r, 400, "bad field",
                      "tags: at most 64 tags of 1-256 printable "
                      "bytes without space, comma, quote or backslash");
                goto out;
            }
            tags[nt++] = tok;
        }
        strata_set_opts o = {ttl, tags, nt};
        int rc = strata_set(c, key.p, key.len, r->body ? r->body : "", r->blen, &o);
        sb_free(&tb);
        slog(SLOG_DEBUG,
             "msg=\"cache set\" cache=%s key=%s bytes=%zu ttl_ms=%lld tags=%zu "
             "result=%s "
             "request_id=%s",
             name.p, lk, r->blen, (long long)ttl, nt,
             rc == STRATA_OK ? "stored" : strata_errname(rc), r->id);
        if (rc == STRATA_OK)
            reply_json(
                r, 200,
                json_pack("{s:b, s:I}", "stored", 1, "bytes", (json_int_t)r->blen));
        else
            error(r,
                  rc == STRATA_E2BIG    ? 413
                  : rc == STRATA_EINVAL ? 400
                                        : 500,
                  "not stored", strata_strerror(rc));
    } else if (r->req->method == HTTP_DELETE) {
        int rc = strata_delete(c, key.p, key.len);
        slog(SLOG_DEBUG, "msg=\"cache delete\" cache=%s key=%s result=%s request_id=%s",
             name.p, lk,
             rc == STRATA_OK     ? "deleted"
             : rc == STRATA_MISS ? "miss"
                                 : strata_errname(rc),
             r->id);
        if (rc == STRATA_OK)
            reply_json(r, 200, json_pack("{s:b}", "deleted", 1));
        else if (rc == STRATA_MISS)
            error(r, 404, "not found", "no such key");
        else
            error(r, 500, "cache error", strata_strerror(rc));
    } else {
        error(r, 405, "method not allowed", "GET, PUT, DELETE");
    }
out:
    sb_free(&name);
    sb_free(&key);
    sb_free(&tmp);
}

/* ---- GET /_strata/explain?url=PATH[&host=HOST] ---- */

/* A JSON string of text that came from outside (an origin's header): bytes
 * outside printable ASCII become '?', so it is always valid UTF-8. */
static json_t *jtext(const char *s)
{
    char buf[1024];
    size_t n = 0;
    for (; *s && n + 1 < sizeof buf; s++)
        buf[n++] = (unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : '?';
    return json_stringn(buf, n);
}

/* A key for display: printable ASCII as is, other bytes as \xHH (the
 * separator 0x1F shows as \x1f). */
static json_t *jtext_key(const char *k)
{
    char buf[4096];
    size_t n = 0;
    for (; *k && n + 5 < sizeof buf; k++) {
        unsigned char c = (unsigned char)*k;
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[n++] = (char)c;
        else
            n += (size_t)snprintf(buf + n, sizeof buf - n, "\\x%02x", c);
    }
    return json_stringn(buf, n);
}

static const char *reason_text(const char *code)
{
    static const struct {
        const char *code, *text;
    } t[] = {
        {"no-store", "the response (or the request) said Cache-Control: no-store"},
        {"private", "the response said Cache-Control: private (a shared cache may not "
                    "store it; a per_user route may)"},
        {"set-cookie", "the response sets a cookie (Set-Cookie)"},
        {"vary", "the response said Vary: *"},
        {"auth", "the request carried Authorization and the response did not allow a "
                 "shared cache to store it (public, s-maxage or must-revalidate)"},
        {"no-freshness",
         "the response gave no freshness (no max-age, s-maxage or "
         "Expires) and the route sets no ttl (nor http_cache.default_ttl)"},
        {"status", "the status code is not cacheable without explicit freshness"},
        {"too-big", "the body is larger than http_cache.max_object_size"},
        {"variants", "the URL already has http_cache.max_variants variants"},
        {"revalidated", "the origin answered a revalidation with 304: the stored "
                        "object was freshened"},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if (strcmp(code, t[i].code) == 0) return t[i].text;
    return code;
}

static void explain(struct areq *r)
{
    struct admin *a = r->a;
    if (a->px == NULL) {
        error(r, 404, "not found", "no HTTP cache in this process");
        return;
    }
    struct sbuf url = {0}, host = {0};
    int qu = query_param(r->req->msg, "url", &url);
    int qh = query_param(r->req->msg, "host", &host);
    if (qu != 0 || qh < 0 || url.len == 0) {
        sb_free(&url);
        sb_free(&host);
        error(r, 400, "bad query", "url=PATH (or an absolute http:// URL) is required");
        return;
    }
    const char *t = url.p, *h = qh == 0 ? host.p : NULL;
    char hb[256];
    if (url.len > 7 && strncasecmp(url.p, "http://", 7) == 0) {
        const char *slash = strchr(url.p + 7, '/');
        size_t hl = slash ? (size_t)(slash - url.p - 7) : url.len - 7;
        snprintf(hb, sizeof hb, "%.*s", (int)(hl < sizeof hb ? hl : sizeof hb - 1),
                 url.p + 7);
        h = hb;
        t = slash ? slash : "/";
    }
    struct proxy_explain *x = malloc(sizeof *x);
    if (x == NULL || proxy_explain(a->px, h, t, strlen(t), x) != 0) {
        free(x);
        sb_free(&url);
        sb_free(&host);
        error(r, 400, "bad url",
              "not a valid path: it must start with /, be at most 1023 bytes, and hold "
              "no spaces, control bytes or non-ASCII bytes");
        return;
    }
    const struct config_route *rt = x->route;
    json_t *j = json_object();
    json_object_set_new(j, "url", json_string(x->target));
    json_object_set_new(j, "host", x->host[0] ? jtext(x->host) : json_null());
    json_object_set_new(j, "route",
                        rt ? json_string(rt->name ? rt->name : rt->path) : json_null());
    json_object_set_new(j, "route_path", rt ? json_string(rt->path) : json_null());
    json_object_set_new(j, "per_user", json_boolean(rt && rt->per_user));
    if (rt && rt->ttl_ms != -2)
        json_object_set_new(j, "route_ttl_s", json_integer(rt->ttl_ms / 1000));
    char key[1400] = "";
    if (x->host[0])
        snprintf(key, sizeof key, "h:%s%s%s", x->host, x->target,
                 rt && rt->per_user ? KEY_SEP "u:<identity>" : "");
    json_object_set_new(j, "key", key[0] ? jtext_key(key) : json_null());
    json_object_set_new(j, "cache", json_string(a->cfg->http.cache));
    json_object_set_new(j, "cache_control",
                        x->seen && x->cache_control[0] ? jtext(x->cache_control)
                                                       : json_null());
    json_object_set_new(j, "status", x->seen ? json_integer(x->status) : json_null());
    bool stored = x->holds == PX_OBJECT || x->holds == PX_VARIANTS;
    json_object_set_new(j, "stored", json_boolean(stored));
    if (x->seen)
        json_object_set_new(j, "last_response",
                            json_pack("{s:i, s:b, s:s, s:I}", "status", x->status,
                                      "stored", x->decided_store, "detail", x->reason,
                                      "seconds_ago", (json_int_t)x->seen_age_s));
    if (x->holds == PX_OBJECT) {
        json_t *tags = json_array();
        char *save = NULL;
        for (char *tok = strtok_r(x->tags, " ", &save); tok;
             tok = strtok_r(NULL, " ", &save))
            json_array_append_new(tags, json_string(tok));
        json_object_set_new(j, "object",
                            json_pack("{s:I, s:I, s:o}", "age_s", (json_int_t)x->age_s,
                                      "ttl_s", (json_int_t)x->ttl_s, "tags", tags));
    }
    char why[600];
    if (rt && !rt->cache)
        snprintf(why, sizeof why, "not cached: route '%s' has cache: false",
                 rt->name ? rt->name : rt->path);
    else if (x->holds == PX_OBJECT && x->ttl_s >= 0)
        snprintf(why, sizeof why, "stored: fresh for %lld s more", (long long)x->ttl_s);
    else if (x->holds == PX_OBJECT)
        snprintf(why, sizeof why,
                 "stored but stale for %lld s: revalidated or served stale as its "
                 "Cache-Control allows",
                 (long long)-x->ttl_s);
    else if (x->holds == PX_VARIANTS)
        snprintf(why, sizeof why, "stored as %u variant(s): the response varies (Vary)",
                 x->variants);
    else if (rt && rt->per_user && x->seen)
        snprintf(
            why, sizeof why,
            "per-user route: each user's copy is keyed by an HMAC of the identity, so "
            "explain cannot see it; the last response for this URL was %s%s",
            x->decided_store ? "stored" : "not stored: ",
            x->decided_store ? "" : reason_text(x->reason));
    else if (x->seen && !x->decided_store)
        snprintf(why, sizeof why, "not stored: %s", reason_text(x->reason));
    else if (x->seen)
        snprintf(why, sizeof why,
                 "stored %lld s ago, gone since: expired, evicted or invalidated",
                 (long long)x->seen_age_s);
    else if (rt && rt->per_user)
        snprintf(why, sizeof why,
                 "per-user route: each user's copy is keyed by identity; no shared "
                 "response seen for this URL");
    else
        snprintf(why, sizeof why,
                 "no response for this URL seen since strata started: request it "
                 "through strata first");
    json_object_set_new(j, "reason", json_string(why));
    free(x);
    sb_free(&url);
    sb_free(&host);
    reply_json(r, 200, j);
}

/* ---- POST /_strata/warm ---- */

struct warm_one {
    struct warm *w;
    size_t i;
    struct up_req *up;
    uint64_t t0;
    int status;
    char cs[256]; /* the response's Cache-Status */
};

struct warm {
    struct admin *a;
    struct areq *r; /* NULL once the client left */
    json_t *urls, *headers, *results;
    size_t next, done, n;
    bool starting;          /* in warm(): answer after the first requests are out */
    struct warm_one *slots; /* `conc` of them */
    size_t conc;
};

static void warm_next(struct warm_one *o);

static void warm_free(struct warm *w)
{
    w->a->warms--;
    for (size_t i = 0; i < w->conc; i++)
        if (w->slots[i].up) up_req_cancel(w->slots[i].up);
    json_decref(w->urls);
    json_decref(w->headers);
    json_decref(w->results);
    free(w->slots);
    free(w);
}

/* Every URL is done: answer (if the client is still there) and free. */
static void warm_finish(struct warm *w)
{
    struct areq *r = w->r;
    json_t *out = json_incref(w->results);
    if (r) r->warm = NULL;
    warm_free(w);
    if (r)
        reply_json(r, 200, out);
    else
        json_decref(out);
}

static void warm_result(struct warm_one *o, int status, const char *cs, const char *err)
{
    struct warm *w = o->w;
    o->up = NULL;
    json_t *res =
        json_pack("{s:O, s:i, s:o?, s:f}", "url", json_array_get(w->urls, o->i),
                  "status", status, "cache_status", cs ? jtext(cs) : NULL, "seconds",
                  (double)(uv_hrtime() - o->t0) / 1e9);
    if (err) json_object_set_new(res, "error", json_string(err));
    json_array_set_new(w->results, o->i, res);
    w->done++;
    if (w->done == w->n) {
        if (!w->starting) warm_finish(w);
        return;
    }
    warm_next(o);
}

static int warm_head(void *ud, int status, struct http_msg *m, bool chunked,
                     int64_t len)
{
    (void)chunked;
    (void)len;
    struct warm_one *o = ud;
    /* strata's member is its own line, after any the origin sent */
    const struct http_header *h = NULL;
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], "cache-status")) h = &m->h[i];
    o->status = status;
    o->cs[0] = 0;
    if (h) snprintf(o->cs, sizeof o->cs, "%.*s", (int)h->vlen, h->value);
    /* The body is read to the end (that is what gets stored) and dropped. */
    return 0;
}

static void warm_body(void *ud, const char *p, size_t n)
{
    (void)ud;
    (void)p;
    (void)n;
}

static void warm_done(void *ud)
{
    struct warm_one *o = ud;
    warm_result(o, o->status, o->cs, NULL);
}

static void warm_error(void *ud, enum up_error e, bool before_head)
{
    (void)before_head;
    struct warm_one *o = ud;
    static const char *const what[] = {"could not connect to the proxy listener",
                                       "timed out", "connection broken"};
    warm_result(o, 0, NULL, (unsigned)e < 3 ? what[e] : "failed");
}

static const struct up_callbacks warm_cb = {warm_head, warm_body, warm_done,
                                            warm_error};

/* Split a warm URL into host (may be NULL) and path. -1: not one strata
 * can fetch (*bad says why). */
static int warm_url(const char *u, const char **host, size_t *hl, const char **path,
                    const char **bad)
{
    *host = NULL;
    *hl = 0;
    if (strncasecmp(u, "http://", 7) == 0) {
        *host = u + 7;
        const char *slash = strchr(*host, '/');
        *hl = slash ? (size_t)(slash - *host) : strlen(*host);
        u = slash ? slash : "/";
        if (*hl == 0) {
            *bad = "an absolute URL needs a host";
            return -1;
        }
    }
    if (u[0] != '/') {
        *bad = "a URL is a path (/...) or an absolute http:// URL";
        return -1;
    }
    for (const char *c = *host ? *host : u; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f) {
            *bad = "a URL may not hold spaces, control bytes or non-ASCII bytes";
            return -1;
        }
    *path = u;
    return 0;
}

/* The request head for URL i: GET path, Host from the URL or the headers,
 * else the proxy listener's address. */
static char *warm_request(struct warm *w, size_t i, size_t *len)
{
    const char *host, *path, *bad;
    size_t hl;
    warm_url(json_string_value(json_array_get(w->urls, i)), &host, &hl, &path, &bad);
    struct sbuf b = {0};
    sb_fmt(&b, "GET %s HTTP/1.1\r\n", path);
    bool has_host = false;
    const char *k;
    json_t *v;
    json_object_foreach(w->headers, k, v)
    {
        if (strcasecmp(k, "host") == 0) has_host = true;
        sb_fmt(&b, "%s: %s\r\n", k, json_string_value(v));
    }
    if (!has_host) {
        if (host)
            sb_fmt(&b, "Host: %.*s\r\n", (int)hl, host);
        else
            sb_fmt(&b, "Host: %s\r\n", w->a->cfg->server.listen);
    }
    sb_str(&b, "User-Agent: strata-warm\r\n\r\n");
    *len = b.len;
    return b.p;
}

static void warm_next(struct warm_one *o)
{
    struct warm *w = o->w;
    if (w->next >= w->n) return;
    o->i = w->next++;
    o->t0 = uv_hrtime();
    o->status = 0;
    o->cs[0] = 0;
    size_t len = 0;
    char *head = warm_request(w, o->i, &len);
    o->up =
        head ? up_send(w->a->pool, head, len, false, true, false, &warm_cb, o) : NULL;
    if (o->up == NULL) warm_result(o, 0, NULL, "out of memory");
}

static bool header_ok(const char *k, const char *v)
{
    if (*k == 0) return false;
    for (const char *c = k; *c; c++)
        if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == ':')
            return false;
    for (const char *c = v; *c; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t') return false;
    return strcasecmp(k, "content-length") != 0 &&
           strcasecmp(k, "transfer-encoding") != 0 && strcasecmp(k, "connection") != 0;
}

static void warm(struct areq *r)
{
    json_error_t je;
    json_t *j = json_loadb(r->body ? r->body : "", r->blen, 0, &je);
    if (j == NULL || !json_is_object(j)) {
        if (j) json_decref(j);
        error(r, 400, "bad JSON", j ? "expected an object" : je.text);
        return;
    }
    const char *k, *bad = NULL;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "urls") && strcmp(k, "concurrency") && strcmp(k, "headers")) {
            char d[300];
            snprintf(d, sizeof d, "unknown field '%s'", k);
            json_decref(j);
            error(r, 400, "unknown field", d);
            return;
        }
    }
    json_t *urls = strings(j, "urls", &bad), *conc = json_object_get(j, "concurrency"),
           *hdrs = json_object_get(j, "headers");
    if (urls == NULL && bad == NULL) bad = "urls";
    if (urls && (json_array_size(urls) == 0 || json_array_size(urls) > WARM_MAX_URLS))
        bad = "urls";
    if (conc && (!json_is_integer(conc) || json_integer_value(conc) < 1 ||
                 json_integer_value(conc) > WARM_MAX_CONCURRENCY))
        bad = "concurrency";
    if (hdrs && !json_is_object(hdrs)) bad = "headers";
    size_t ui;
    json_array_foreach(urls, ui, v)
    {
        const char *h, *pth, *why = NULL;
        size_t hl;
        if (warm_url(json_string_value(v), &h, &hl, &pth, &why) != 0) {
            char d[400];
            snprintf(d, sizeof d, "urls[%zu]: %s", ui, why);
            json_decref(j);
            error(r, 400, "bad field", d);
            return;
        }
    }
    json_object_foreach(hdrs, k, v) if (!json_is_string(v) ||
                                        !header_ok(k, json_string_value(v))) bad =
        "headers";
    if (bad) {
        char d[300];
        snprintf(
            d, sizeof d,
            "field '%s' is missing, has a wrong type or a value that is not valid "
            "(urls: 1-%d strings; concurrency: 1-%d; headers: an object of strings)",
            bad, WARM_MAX_URLS, WARM_MAX_CONCURRENCY);
        json_decref(j);
        error(r, 400, "bad field", d);
        return;
    }
    struct warm *w = calloc(1, sizeof *w);
    size_t n = json_array_size(urls);
    size_t c = conc ? (size_t)json_integer_value(conc) : 4;
    if (c > n) c = n;
    if (w) w->slots = calloc(c, sizeof *w->slots);
    if (w == NULL || w->slots == NULL) {
        free(w);
        json_decref(j);
        error(r, 503, "out of memory", "warm");
        return;
    }
    w->a = r->a;
    w->a->warms++;
    w->r = r;
    w->urls = json_incref(urls);
    w->headers = hdrs ? json_incref(hdrs) : json_object();
    w->results = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(w->results, json_null());
    w->n = n;
    w->conc = c;
    r->warm = w;
    json_decref(j);
    slog(SLOG_INFO, "msg=\"warm\" urls=%zu concurrency=%zu request_id=%s", n, c, r->id);
    /* A warm can take minutes: a client that gives up (closes) stops it. */
    http_conn_watch_close(r->c);
    w->starting = true;
    for (size_t i = 0; i < c; i++) {
        w->slots[i].w = w;
        warm_next(&w->slots[i]);
    }
    w->starting = false;
    if (w->done == w->n) warm_finish(w);
}

/* ---- GET /_strata/ui ---- */

static void ui(struct areq *r)
{
    /* The page runs its own inline script and talks to this listener only. */
    r->extra =
        "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; connect-src 'self'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n";
    reply_bytes(r, 200, "text/html; charset=utf-8", admin_ui_html, admin_ui_html_len);
}

/* One endpoint: its path (exact, or a prefix when it ends in '/'), the
 * methods it takes, and its handler. */
enum { M_GET = 1, M_POST = 2, M_PUT = 4, M_DELETE = 8 };

struct endpoint {
    const char *path;
    unsigned methods;
    bool test_only;
    void (*fn)(struct areq *r);
    const char *allow;
};

static void health_ep(struct areq *r)
{
    health(r);
}

static void flights(struct areq *r)
{
    reply_json(r, 200,
               json_pack("{s:I, s:I}", "waiters", (json_int_t)proxy_flight_waiters(),
                         "warms", (json_int_t)r->a->warms));
}

static void caches_ep(struct areq *r)
{
    static const char pre[] = "/_strata/caches/";
    const struct http_msg *m = r->req->msg;
    const char *q = memchr(m->url, '?', m->url_len);
    size_t end = q ? (size_t)(q - m->url) : m->url_len;
    kv(r, m->url + sizeof pre - 1, end - (sizeof pre - 1));
}

static const struct endpoint endpoints[] = {
    {"/_strata/health", M_GET, false, health_ep, "GET, HEAD"},
    {"/_strata/stats", M_GET, false, stats, "GET, HEAD"},
    {"/metrics", M_GET, false, metrics, "GET, HEAD"},
    {"/_strata/invalidate", M_POST, false, invalidate, "POST"},
    {"/_strata/warm", M_POST, false, warm, "POST"},
    {"/_strata/explain", M_GET, false, explain, "GET, HEAD"},
    {"/_strata/caches/", M_GET | M_PUT | M_DELETE, false, caches_ep,
     "GET, HEAD, PUT, DELETE"},
    {"/_strata/ui", M_GET, false, ui, "GET, HEAD"},
    {"/_strata/debug/flights", M_GET, true, flights, "GET, HEAD"},
    {"/_strata/debug/clock", M_POST, true, debug_clock, "POST"},
};

/* The endpoint of r (path, method, content type), or NULL once r has been
 * answered (404, 405, 415): all of it is known from the head. */
static const struct endpoint *route_of(struct areq *r)
{
    const struct http_msg *m = r->req->msg;
    llhttp_method_t meth = r->req->method;
    unsigned mb = meth == HTTP_GET || meth == HTTP_HEAD ? M_GET
                  : meth == HTTP_POST                   ? M_POST
                  : meth == HTTP_PUT                    ? M_PUT
                  : meth == HTTP_DELETE                 ? M_DELETE
                                                        : 0;
    for (size_t i = 0; i < sizeof endpoints / sizeof *endpoints; i++) {
        const struct endpoint *e = &endpoints[i];
        size_t pl = strlen(e->path);
        bool prefix = e->path[pl - 1] == '/';
        if (e->test_only && !r->a->test_clock) continue;
        if (prefix ? (m->url_len <= pl || memcmp(m->url, e->path, pl) != 0)
                   : !path_is(m, e->path))
            continue;
        if (!(e->methods & mb)) {
            char allow[64];
            snprintf(allow, sizeof allow, "Allow: %s\r\n", e->allow);
            r->extra = allow;
            error(r, 405, "method not allowed", e->allow);
            return NULL;
        }
        if (mb == M_POST) {
            const struct http_header *ct = http_find(m, "content-type", NULL);
            if (ct == NULL ||
                !http_media_type_is(ct->value, ct->vlen, "application/json")) {
                error(r, 415, "unsupported media type",
                      "POST bodies must be application/json");
                return NULL;
            }
        }
        return e;
    }
    error(r, 404, "not found", "no such endpoint");
    return NULL;
}

static void too_big(struct areq *r)
{
    error(r, 413, "body too large",
          r->req->method == HTTP_PUT ? "a value is at most 64 MB" : "at most 1 MB");
}

static void dispatch(struct areq *r)
{
    if (r->too_big) {
        too_big(r);
        return;
    }
    const struct endpoint *e = r->ep ? r->ep : route_of(r);
    if (e) e->fn(r);
}

static void on_request(struct http_conn *c, struct http_request *req)
{
    struct admin *a = http_worker_data(http_conn_worker(c));
    struct areq *r = calloc(1, sizeof *r);
    if (r == NULL) {
        http_conn_error(c, 503, "out of memory");
        return;
    }
    r->a = a;
    r->c = c;
    r->req = req;
    const struct http_header *rid = http_find(req->msg, "x-request-id", NULL);
    if (rid && http_request_id_ok(rid->value, rid->vlen))
        snprintf(r->id, sizeof r->id, "%.*s", (int)rid->vlen, rid->value);
    else
        snprintf(r->id, sizeof r->id, "adm-%016llx",
                 (unsigned long long)atomic_fetch_add(&a->ids, 1));
    http_conn_set_data(c, r);
    if (!host_ok(a, req->msg)) {
        req->keep_alive = false;
        error(r, 403, "forbidden", "Host must be the admin listener or localhost");
        return;
    }
    /* The page itself holds no data: it asks for the token and sends it
     * with every call it makes. */
    bool page = (req->method == HTTP_GET || req->method == HTTP_HEAD) &&
                path_is(req->msg, "/_strata/ui");
    if (!page && !auth_ok(a, req->msg)) {
        error(r, 401, "unauthorized", "Authorization: Bearer <token> required");
        return;
    }
    if (!req->body) {
        dispatch(r);
        return;
    }
    /* A body follows: what the head decides is answered before it is read
     * (and before a client that sent Expect: 100-continue sends it). */
    const struct endpoint *e = route_of(r);
    if (e == NULL) return; /* answered: r is gone */
    r->ep = e;
    size_t max = req->method == HTTP_PUT ? ADMIN_MAX_VALUE : ADMIN_MAX_JSON;
    if (!req->chunked && req->content_length > max) {
        req->keep_alive = false; /* not worth reading */
        too_big(r);
        return;
    }
    const struct http_header *ex = http_find(req->msg, "expect", NULL);
    if (ex && ex->vlen == 12 && strncasecmp(ex->value, "100-continue", 12) == 0 &&
        (req->major > 1 || req->minor >= 1)) /* HTTP/1.0 ignores it (RFC 9110 10.1.1) */
        http_conn_write_copy(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
}

static void on_body(struct http_conn *c, const char *p, size_t n)
{
    struct areq *r = http_conn_data(c);
    if (r == NULL) return;
    size_t max = r->req->method == HTTP_PUT ? ADMIN_MAX_VALUE : ADMIN_MAX_JSON;
    if (r->too_big || r->blen + n > max) {
        r->too_big = true;
        return;
    }
    char *b = realloc(r->body, r->blen + n + 1);
    if (b == NULL) {
        r->too_big = true;
        return;
    }
    memcpy(b + r->blen, p, n);
    r->body = b;
    r->blen += n;
    b[r->blen] = 0;
}

static void on_body_end(struct http_conn *c)
{
    struct areq *r = http_conn_data(c);
    if (r && r->req->body) dispatch(r);
}

static void on_close(struct http_conn *c)
{
    struct areq *r = http_conn_data(c);
    if (r && r->warm) { /* the client left: stop fetching */
        r->warm->r = NULL;
        warm_free(r->warm);
    }
    if (r) {
        free(r->body);
        free(r);
    }
}

static void *worker_init(struct http_worker *w, void *ud)
{
    struct admin *a = ud;
    a->pool = up_pool_new(http_worker_loop(w), &a->upc);
    if (a->pool == NULL) abort();
    return ud;
}

static void worker_fini(struct http_worker *w, void *ud)
{
    (void)w;
    struct admin *a = ud;
    up_pool_free(a->pool);
    a->pool = NULL;
}

static void error_headers(struct http_conn *c, char *buf, size_t cap)
{
    struct admin *a = http_worker_data(http_conn_worker(c));
    snprintf(buf, cap, "X-Request-Id: adm-%016llx\r\n",
             (unsigned long long)atomic_fetch_add(&a->ids, 1));
}

static const struct http_handler handler = {
    worker_init, worker_fini, on_request, on_body,
    on_body_end, NULL,        on_close,   error_headers,
};

static int make_token(struct admin *a, char **err)
{
    unsigned char raw[24];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        if (asprintf(err, "admin token: getrandom: %s", strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    a->token = calloc(1, 2 * sizeof raw + 1);
    if (a->token == NULL) return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        sprintf(a->token + 2 * i, "%02x", raw[i]);
    a->token_generated = true;
    return 0;
}

/* A generated token goes to admin.token_file once strata listens (a second
 * strata that fails to start must not replace the running one's token): a
 * new file made next to it (O_EXCL, never through a symlink, 0600), then
 * renamed over the path, so nobody holds it open from before and readers see
 * the old token or the new one, whole. */
int admin_publish_token(struct admin *a, char **err)
{
    if (a == NULL || !a->token_generated) return 0;
    const char *path = a->cfg->admin.token_file;
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0) return -1;
    int fd = mkostemp(tmp, O_CLOEXEC);
    size_t tl = strlen(a->token);
    bool ok = fd >= 0 && fchmod(fd, 0600) == 0 &&
              write(fd, a->token, tl) == (ssize_t)tl && write(fd, "\n", 1) == 1 &&
              fsync(fd) == 0;
    int e = errno;
    if (fd >= 0 && close(fd) != 0 && ok) {
        ok = false;
        e = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        e = errno;
    }
    if (!ok) {
        if (fd >= 0) unlink(tmp);
        if (asprintf(err, "admin.token_file %s: %s", path, strerror(e)) < 0)
            *err = NULL;
        free(tmp);
        return -1;
    }
    free(tmp);
    slog(SLOG_INFO, "msg=\"admin token generated\" token_file=%s", path);
    return 0;
}

struct admin *admin_start(const struct config *cfg, strata *s, struct proxy *px,
                          bool test_clock, char **err)
{
    struct admin *a = calloc(1, sizeof *a);
    if (a == NULL) return NULL;
    a->cfg = cfg;
    a->s = s;
    a->px = px;
    a->test_clock = test_clock;
    a->started_ns = uv_hrtime();
    /* warm fetches through the proxy's own listener */
    if (http_parse_listen(cfg->server.listen, &a->upc.addr) != 0) {
        if (asprintf(err, "server.listen %s: not host:port", cfg->server.listen) < 0)
            *err = NULL;
        free(a);
        return NULL;
    }
    a->upc.connect_timeout_ms = 5000;
    a->upc.timeout_ms = (uint64_t)cfg->server.upstream_timeout_ms + 5000;
    a->upc.keepalive = WARM_MAX_CONCURRENCY;
    a->upc.max_header_size = 65536;
    a->upc.max_headers = 256;
    if (cfg->admin.token && *cfg->admin.token)
        a->token = strdup(cfg->admin.token);
    else if (make_token(a, err) != 0) {
        free(a->token);
        free(a);
        return NULL;
    }
    if (a->token == NULL) {
        free(a);
        return NULL;
    }
    const char *colon = strrchr(cfg->admin.listen, ':');
    snprintf(a->port, sizeof a->port, "%s", colon ? colon + 1 : "");
    struct http_server_conf sc = {
        .listen = cfg->admin.listen,
        .workers = 1,
        .max_connections = 256,
        .max_header_size = 32768,
        .max_headers = 100,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .drain_timeout_ms = 2000,
        .handler = &handler,
        .ud = a,
    };
    char *e = NULL;
    a->srv = http_server_start(&sc, &e);
    if (a->srv == NULL) {
        if (asprintf(err, "admin.%s", e ? e : "listen failed") < 0) *err = NULL;
        free(e);
        free(a->token);
        free(a);
        return NULL;
    }
    return a;
}

void admin_stop(struct admin *a)
{
    if (a == NULL) return;
    http_server_free(a->srv);
    free(a->token);
    free(a);
}
