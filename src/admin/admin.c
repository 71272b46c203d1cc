/*
 * admin.c -- the admin API. For now: health, invalidate, and for tests (with
 * STRATA_TEST_CLOCK=1) the clock and the count of coalesced waiters; the rest of
 * DESIGN's table (stats, warm, keys, metrics, ui) builds on the
 * same request handling.
 *
 * Every request needs `Authorization: Bearer <token>` (compared in constant
 * time) and a Host naming the admin listener or localhost (a DNS-rebinding
 * page cannot reach it); POST bodies must be application/json. Errors are
 * {"error": "...", "detail": "..."}; every response has an X-Request-Id.
 */
#define _GNU_SOURCE
#include <errno.h>
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
#include "backend/backend.h"
#include "http/http.h"
#include "proxy/internal.h"

#define ADMIN_MAX_BODY (1u << 20)

struct admin {
    const struct config *cfg;
    strata *s;
    bool test_clock;
    char token[129];
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
};

static void reply(struct areq *r, int status, const char *ctype, const char *body)
{
    char head[512];
    size_t blen = strlen(body);
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\nCache-Control: no-store\r\n%s\r\n",
                     status, http_reason(status), ctype, blen, r->id,
                     r->req->keep_alive ? "" : "Connection: close\r\n");
    struct http_conn *c = r->c;
    bool keep = r->req->keep_alive;
    http_conn_set_data(c, NULL); /* ours to free from here */
    free(r->body);
    free(r);
    http_conn_write_copy(c, head, (size_t)n);
    http_conn_write_copy(c, body, blen);
    http_conn_end(c, keep);
}

static void reply_json(struct areq *r, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
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

static void error(struct areq *r, int status, const char *err, const char *detail)
{
    reply_json(r, status, json_pack("{s:s, s:s}", "error", err, "detail", detail));
}

static bool host_ok(struct admin *a, const struct http_msg *m)
{
    size_t n = 0;
    const struct http_header *h = http_find(m, "host", &n);
    if (h == NULL || n != 1) return false;
    const char *listen = a->cfg->admin.listen;
    if (h->vlen == strlen(listen) && strncasecmp(h->value, listen, h->vlen) == 0)
        return true;
    char lh[64];
    int k = snprintf(lh, sizeof lh, "localhost:%s", a->port);
    if (h->vlen == (size_t)k && strncasecmp(h->value, lh, h->vlen) == 0) return true;
    return h->vlen == 9 && strncasecmp(h->value, "localhost", 9) == 0;
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
            json_decref(j);
            error(r, 400, "unknown field", k);
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
            sb_free(&utags);
            json_decref(j);
            error(r, 404, "unknown cache", json_string_value(cache));
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

static void dispatch(struct areq *r)
{
    const struct http_msg *m = r->req->msg;
    bool get = r->req->method == HTTP_GET, post = r->req->method == HTTP_POST;
    if (r->too_big) {
        error(r, 413, "body too large", "at most 1 MB");
        return;
    }
    if (post) {
        const struct http_header *ct = http_find(m, "content-type", NULL);
        if (ct == NULL || ct->vlen < 16 ||
            strncasecmp(ct->value, "application/json", 16) != 0) {
            error(r, 415, "unsupported media type",
                  "POST bodies must be application/json");
            return;
        }
    }
    if (path_is(m, "/_strata/health")) {
        if (!get) {
            error(r, 405, "method not allowed", "GET");
            return;
        }
        health(r);
        return;
    }
    if (path_is(m, "/_strata/invalidate")) {
        if (!post) {
            error(r, 405, "method not allowed", "POST");
            return;
        }
        invalidate(r);
        return;
    }
    if (path_is(m, "/_strata/debug/flights") && r->a->test_clock) {
        if (!get) {
            error(r, 405, "method not allowed", "GET");
            return;
        }
        reply_json(r, 200,
                   json_pack("{s:I}", "waiters", (json_int_t)proxy_flight_waiters()));
        return;
    }
    if (path_is(m, "/_strata/debug/clock") && r->a->test_clock) {
        if (!post) {
            error(r, 405, "method not allowed", "POST");
            return;
        }
        debug_clock(r);
        return;
    }
    error(r, 404, "not found", "no such endpoint");
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
    bool valid = rid && rid->vlen > 0 && rid->vlen < sizeof r->id;
    for (size_t i = 0; valid && i < rid->vlen; i++)
        if (rid->value[i] <= 0x20 || rid->value[i] >= 0x7f) valid = false;
    if (valid)
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
    if (!auth_ok(a, req->msg)) {
        error(r, 401, "unauthorized", "Authorization: Bearer <token> required");
        return;
    }
    if (!req->body) dispatch(r);
}

static void on_body(struct http_conn *c, const char *p, size_t n)
{
    struct areq *r = http_conn_data(c);
    if (r == NULL) return;
    if (r->blen + n > ADMIN_MAX_BODY) {
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
    if (r) {
        free(r->body);
        free(r);
    }
}

static void *worker_init(struct http_worker *w, void *ud)
{
    (void)w;
    return ud;
}

static const struct http_handler handler = {
    worker_init, NULL, on_request, on_body, on_body_end, NULL, on_close,
};

static int make_token(struct admin *a, char **err)
{
    unsigned char raw[24];
    if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
        if (asprintf(err, "admin token: getrandom: %s", strerror(errno)) < 0)
            *err = NULL;
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++)
        sprintf(a->token + 2 * i, "%02x", raw[i]);
    const char *path = a->cfg->admin.token_file;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || fchmod(fd, 0600) != 0 || write(fd, a->token, 48) != 48 ||
        write(fd, "\n", 1) != 1) {
        if (asprintf(err, "admin.token_file %s: %s", path, strerror(errno)) < 0)
            *err = NULL;
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    fprintf(stderr, "level=info msg=\"admin token generated\" token_file=%s\n", path);
    return 0;
}

struct admin *admin_start(const struct config *cfg, strata *s, bool test_clock,
                          char **err)
{
    struct admin *a = calloc(1, sizeof *a);
    if (a == NULL) return NULL;
    a->cfg = cfg;
    a->s = s;
    a->test_clock = test_clock;
    if (cfg->admin.token && *cfg->admin.token)
        snprintf(a->token, sizeof a->token, "%s", cfg->admin.token);
    else if (make_token(a, err) != 0) {
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
        free(a);
        return NULL;
    }
    return a;
}

void admin_stop(struct admin *a)
{
    if (a == NULL) return;
    http_server_free(a->srv);
    free(a);
}
