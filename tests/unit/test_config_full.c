/*
 * test_config_full.c -- config_load(): the whole file as `strata serve` and
 * `strata check-config` read it (server, admin, caches, http_cache with its
 * routes, bus) and the checks across sections; config_load_admin(): the
 * `admin:` section alone, as the CLI's admin commands read it.
 *
 * As in test_config.c, every test writes its YAML to a mkstemp file, and
 * every error test asserts the whole "PATH:LINE: " prefix, a piece of the
 * message, and that a failed load leaves the output zeroed; ASan's leak check
 * covers the error paths. test_config.c holds the caches: section and the
 * docs to the tables.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

#define KB (UINT64_C(1) << 10)
#define MB (UINT64_C(1) << 20)
#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)

/* ---- helpers ------------------------------------------------------------- */

static char *tmpfile_with(const char *text)
{
    char path[] = "/tmp/strata-test-full-XXXXXX";
    int fd = mkstemp(path);
    size_t len = strlen(text);

    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
    return strdup(path);
}

static void load_ok(const char *yaml, struct config *c)
{
    char *path = tmpfile_with(yaml), *err = NULL;
    int rc = config_load(path, c, &err);

    cr_assert_eq(rc, 0, "load failed: %s\n--- yaml ---\n%s", err ? err : "(no message)",
                 yaml);
    cr_assert_null(err);
    cr_assert_str_eq(c->path, path);
    cr_assert_str_eq(c->caches.path, path);
    unlink(path);
    free(path);
}

static bool zeroed(const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        if (b[i]) return false;
    return true;
}

/* Load `yaml`, expect an error at `line` containing `needle`. */
static void error_at(const char *yaml, unsigned line, const char *needle)
{
    char *path = tmpfile_with(yaml), *err = NULL, *prefix;
    struct config c;
    int rc;

    memset(&c, 0x5a, sizeof c);
    rc = config_load(path, &c, &err);
    cr_assert_eq(rc, -1, "expected an error '%s' at line %u\n--- yaml ---\n%s", needle,
                 line, yaml);
    cr_assert_not_null(err);
    cr_assert(zeroed(&c, sizeof c), "a failed load must leave the output zeroed");
    cr_assert(asprintf(&prefix, "%s:%u: ", path, line) > 0);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
              "error '%s' does not start with '%s'\n--- yaml ---\n%s", err, prefix,
              yaml);
    cr_assert(strstr(err, needle), "error '%s' does not contain '%s'\n--- yaml ---\n%s",
              err, needle, yaml);
    config_fini(&c);
    unlink(path);
    free(prefix);
    free(err);
    free(path);
}

static void assert_list(const struct config_strings *l, size_t n,
                        const char *const *want)
{
    cr_assert_eq(l->n, n, "list has %zu items, want %zu", l->n, n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(l->v[i], want[i]);
}

#define LIST(l, ...)                                                                   \
    do {                                                                               \
        static const char *const want_[] = {__VA_ARGS__};                              \
        assert_list((l), sizeof want_ / sizeof want_[0], want_);                       \
    } while (0)

static void assert_cidr(const struct config_cidr *c, int family, const char *addr,
                        unsigned prefix)
{
    uint8_t want[16] = {0};

    cr_assert_eq(inet_pton(family, addr, want), 1);
    cr_assert_eq(c->family, family);
    cr_assert_eq(c->prefix, prefix);
    cr_assert_eq(memcmp(c->addr, want, family == AF_INET ? 4 : 16), 0, "address %s",
                 addr);
}

static const struct config_cache *cache(const struct config *c, const char *name)
{
    const struct config_cache *cc = config_cache_find(&c->caches, name);

    cr_assert_not_null(cc, "no cache '%s'", name);
    return cc;
}

/* Every default of DESIGN.md's table, except the caches. */
static void assert_section_defaults(const struct config *c)
{
    const struct config_server *s = &c->server;
    const struct config_http *h = &c->http;

    cr_assert_str_eq(s->listen, "127.0.0.1:8080");
    cr_assert_null(s->upstream);
    cr_assert_eq(s->hosts.n, 0);
    cr_assert_eq(s->workers, 0, "auto");
    cr_assert_eq(s->max_connections, 10000);
    cr_assert_eq(s->header_timeout_ms, 10 * SEC);
    cr_assert_eq(s->idle_timeout_ms, 60 * SEC);
    cr_assert_eq(s->max_header_size, 32 * KB);
    cr_assert_eq(s->max_headers, 100);
    cr_assert_eq(s->upstream_connect_timeout_ms, 5 * SEC);
    cr_assert_eq(s->upstream_timeout_ms, 30 * SEC);
    cr_assert_eq(s->upstream_keepalive, 64);
    LIST(&s->strip_request_headers, "X-Forwarded-Host", "X-Original-URL",
         "X-Rewrite-URL", "X-HTTP-Method-Override");
    cr_assert_str_eq(s->access_log, "stdout");
    cr_assert_str_eq(s->log_level, "info");

    cr_assert_str_eq(c->admin.listen, "127.0.0.1:8081");
    cr_assert_null(c->admin.token);
    cr_assert_str_eq(c->admin.token_file, "strata-admin.token");

    cr_assert_str_eq(h->cache, "http");
    cr_assert_eq(h->max_object_size, 8 * MB);
    cr_assert_eq(h->max_variants, 32);
    cr_assert_eq(h->default_ttl_ms, 0);
    cr_assert_eq(h->heuristic, false);
    cr_assert_eq(h->keep_ms, HOUR);
    LIST(&h->tag_headers, "Surrogate-Key", "Cache-Tag", "xkey", "Cache-Groups");
    cr_assert_eq(h->strip_tag_headers, true);
    cr_assert_null(h->user_secret);
    cr_assert_eq(h->n_purge_allow, 2);
    assert_cidr(&h->purge_allow[0], AF_INET, "127.0.0.1", 32);
    assert_cidr(&h->purge_allow[1], AF_INET6, "::1", 128);
    cr_assert_null(h->purge_token);
    cr_assert_eq(h->n_routes, 0);
    cr_assert_null(h->routes);

    cr_assert_eq(c->bus.timeout_ms, 5 * SEC);
}

/* The embedded caches and the built-in http one. */
static void assert_default_caches(const struct config *c)
{
    static const char *const names[] = {"default", "session", "static", "http"};

    cr_assert_eq(c->caches.n, 4);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_str_eq(c->caches.v[i].name, names[i]);
        cr_assert_eq(c->caches.v[i].line, 0);
    }
    cr_assert_eq(cache(c, "http")->max_memory, 512 * MB);
    cr_assert_eq(cache(c, "http")->ttl_ms, 0);
    cr_assert_eq(cache(c, "http")->compress, CONFIG_CODEC_NONE);
    cr_assert_eq(cache(c, "default")->ttl_ms, 5 * MIN);
}

/* A route's defaults (name and path aside). */
static void assert_route_defaults(const struct config_route *r)
{
    cr_assert_eq(r->ttl_ms, CONFIG_MS_UNSET);
    cr_assert_eq(r->vary_headers.n, 0);
    cr_assert_eq(r->vary_cookies.n, 0);
    cr_assert_eq(r->per_user, false);
    cr_assert_eq(r->user_from, CONFIG_USER_NONE);
    cr_assert_null(r->user_from_name);
    cr_assert_null(r->jwt_key);
    cr_assert_eq(r->jwt_key_is_pem, false);
    cr_assert_eq(r->cache, true);
    cr_assert_null(r->cache_control);
    cr_assert_eq(r->swr_ms, CONFIG_MS_UNSET);
    cr_assert_eq(r->sie_ms, CONFIG_MS_UNSET);
    cr_assert_eq(r->tags.n, 0);
}

/* ---- defaults ------------------------------------------------------------ */

Test(full_defaults, no_file)
{
    struct config c;
    char *err = (char *)"untouched";

    cr_assert_eq(config_load(NULL, &c, &err), 0);
    cr_assert_null(err);
    cr_assert_null(c.path);
    cr_assert_null(c.caches.path);
    assert_section_defaults(&c);
    assert_default_caches(&c);
    config_fini(&c);
    cr_assert(zeroed(&c, sizeof c), "fini zeroes");
    config_fini(&c);
}

Test(full_defaults, empty_file_and_empty_sections)
{
    static const char *const files[] = {
        "",
        "# nothing\n",
        "server:\nadmin:\nhttp_cache:\nbus:\n",
        "server: {}\nadmin: {}\nhttp_cache: {}\nbus: {}\n",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        struct config c;
        load_ok(files[i], &c);
        assert_section_defaults(&c);
        assert_default_caches(&c);
        config_fini(&c);
    }
}

Test(full_defaults, errmsg_may_be_null)
{
    struct config c;
    char *path = tmpfile_with("server: {listen: x}\n");

    cr_assert_eq(config_load(path, &c, NULL), -1);
    cr_assert(zeroed(&c, sizeof c));
    cr_assert_eq(config_load(NULL, &c, NULL), 0);
    config_fini(&c);
    unlink(path);
    free(path);
}

Test(full_defaults, cannot_open)
{
    struct config c;
    char *err = NULL;

    cr_assert_eq(config_load("/nonexistent/strata.yaml", &c, &err), -1);
    cr_assert_str_eq(
        err, "/nonexistent/strata.yaml: cannot open: No such file or directory");
    cr_assert(zeroed(&c, sizeof c));
    free(err);
}

/* ---- every key ----------------------------------------------------------- */

Test(full_keys, server)
{
    struct config c;
    const struct config_server *s = &c.server;

    load_ok("server:\n"
            "  listen: \"[::1]:9090\"\n"
            "  upstream: http://origin.internal:8000/\n"
            "  hosts: [example.com, www.example.com]\n"
            "  workers: 4\n"
            "  max_connections: 500\n"
            "  header_timeout: 2s\n"
            "  idle_timeout: 2m\n"
            "  max_header_size: 16KB\n"
            "  max_headers: 50\n"
            "  upstream_connect_timeout: 250ms\n"
            "  upstream_timeout: 1m\n"
            "  upstream_keepalive: 0\n"
            "  strip_request_headers: [X-Debug]\n"
            "  access_log: /var/log/strata/access.log\n"
            "  log_level: debug\n",
            &c);
    cr_assert_str_eq(s->listen, "[::1]:9090");
    cr_assert_str_eq(s->upstream, "http://origin.internal:8000/");
    LIST(&s->hosts, "example.com", "www.example.com");
    cr_assert_eq(s->workers, 4);
    cr_assert_eq(s->max_connections, 500);
    cr_assert_eq(s->header_timeout_ms, 2 * SEC);
    cr_assert_eq(s->idle_timeout_ms, 2 * MIN);
    cr_assert_eq(s->max_header_size, 16 * KB);
    cr_assert_eq(s->max_headers, 50);
    cr_assert_eq(s->upstream_connect_timeout_ms, 250);
    cr_assert_eq(s->upstream_timeout_ms, MIN);
    cr_assert_eq(s->upstream_keepalive, 0);
    LIST(&s->strip_request_headers, "X-Debug");
    cr_assert_str_eq(s->access_log, "/var/log/strata/access.log");
    cr_assert_str_eq(s->log_level, "debug");
    assert_default_caches(&c);
    config_fini(&c);
}

Test(full_keys, server_values)
{
    static const char *const listens[] = {"0.0.0.0:80", "localhost:0", "[::]:8080",
                                          "my-host.local:65535"};
    static const char *const upstreams[] = {"http://127.0.0.1:8000", "HTTP://h:1/",
                                            "http://[::1]:8000"};
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    char yaml[256];

    for (size_t i = 0; i < sizeof listens / sizeof listens[0]; i++) {
        struct config c;
        snprintf(yaml, sizeof yaml, "server: {listen: \"%s\"}\n", listens[i]);
        load_ok(yaml, &c);
        cr_assert_str_eq(c.server.listen, listens[i]);
        config_fini(&c);
    }
    for (size_t i = 0; i < sizeof upstreams / sizeof upstreams[0]; i++) {
        struct config c;
        snprintf(yaml, sizeof yaml, "server: {upstream: \"%s\"}\n", upstreams[i]);
        load_ok(yaml, &c);
        cr_assert_str_eq(c.server.upstream, upstreams[i]);
        config_fini(&c);
    }
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        struct config c;
        snprintf(yaml, sizeof yaml, "server:\n  log_level: %s\n  access_log: off\n",
                 levels[i]);
        load_ok(yaml, &c);
        cr_assert_str_eq(c.server.log_level, levels[i]);
        cr_assert_str_eq(c.server.access_log, "off");
        config_fini(&c);
    }
    struct config c;
    load_ok("server: {workers: auto, hosts: [], strip_request_headers: []}\n", &c);
    cr_assert_eq(c.server.workers, 0);
    cr_assert_eq(c.server.hosts.n, 0);
    cr_assert_eq(c.server.strip_request_headers.n, 0, "a list replaces the default");
    config_fini(&c);
    load_ok("server: {workers: 1024}\n", &c);
    cr_assert_eq(c.server.workers, 1024);
    config_fini(&c);
}

Test(full_keys, admin)
{
    struct config c;

    load_ok("admin:\n"
            "  listen: 127.0.0.1:9091\n"
            "  token: s3cret\n"
            "  token_file: /run/strata/admin.token\n",
            &c);
    cr_assert_str_eq(c.admin.listen, "127.0.0.1:9091");
    cr_assert_str_eq(c.admin.token, "s3cret");
    cr_assert_str_eq(c.admin.token_file, "/run/strata/admin.token");
    config_fini(&c);
}

Test(full_keys, http_cache)
{
    struct config c;
    const struct config_http *h = &c.http;

    load_ok("caches:\n"
            "  pages: { max_memory: 1GB }\n"
            "http_cache:\n"
            "  cache: pages\n"
            "  max_object_size: 1MB\n"
            "  max_variants: 4\n"
            "  default_ttl: 30s\n"
            "  heuristic: true\n"
            "  keep: 0s\n"
            "  tag_headers: [Surrogate-Key]\n"
            "  strip_tag_headers: false\n"
            "  user_secret: hmac-key\n"
            "  purge:\n"
            "    allow: [10.1.2.3/8, 192.168.1.7, \"2001:db8::1/32\", \"::/0\"]\n"
            "    token: purge-me\n"
            "  routes: []\n",
            &c);
    cr_assert_str_eq(h->cache, "pages");
    cr_assert_eq(c.caches.n, 1, "the http cache is not added when another is named");
    cr_assert_str_eq(c.caches.v[0].name, "pages");
    cr_assert_eq(h->max_object_size, MB);
    cr_assert_eq(h->max_variants, 4);
    cr_assert_eq(h->default_ttl_ms, 30 * SEC);
    cr_assert_eq(h->heuristic, true);
    cr_assert_eq(h->keep_ms, 0);
    LIST(&h->tag_headers, "Surrogate-Key");
    cr_assert_eq(h->strip_tag_headers, false);
    cr_assert_str_eq(h->user_secret, "hmac-key");
    cr_assert_eq(h->n_purge_allow, 4);
    /* Host bits are cleared; a bare address is a full-length prefix. */
    assert_cidr(&h->purge_allow[0], AF_INET, "10.0.0.0", 8);
    assert_cidr(&h->purge_allow[1], AF_INET, "192.168.1.7", 32);
    assert_cidr(&h->purge_allow[2], AF_INET6, "2001:db8::", 32);
    assert_cidr(&h->purge_allow[3], AF_INET6, "::", 0);
    cr_assert_str_eq(h->purge_token, "purge-me");
    cr_assert_eq(h->n_routes, 0);
    config_fini(&c);
}

Test(full_keys, purge_allow_may_be_empty)
{
    struct config c;

    load_ok("http_cache:\n  purge: { allow: [] }\n", &c);
    cr_assert_eq(c.http.n_purge_allow, 0);
    cr_assert_null(c.http.purge_token);
    config_fini(&c);
}

Test(full_keys, routes)
{
    struct config c;
    const struct config_route *r;

    load_ok("http_cache:\n"
            "  user_secret: k\n"
            "  routes:\n"
            "    - name: products\n"
            "      path: /api/products*\n"
            "      ttl: 10m\n"
            "      vary_headers: [Accept-Language, X-Tenant]\n"
            "      vary_cookies: [currency]\n"
            "      cache_control: \"public, max-age=60\"\n"
            "      stale_while_revalidate: 30s\n"
            "      stale_if_error: 1d\n"
            "      tags: [products, \"catalog:v2\"]\n"
            "    - { path: \"/api/me*\", per_user: true, user_from: "
            "\"header:Authorization\" }\n"
            "    - { path: /cart, per_user: true, user_from: \"cookie:sessionid\", "
            "ttl: 0s }\n"
            "    - { path: \"/admin/*\", cache: false }\n"
            "    - {}\n",
            &c);
    cr_assert_eq(c.http.n_routes, 5);

    r = &c.http.routes[0];
    cr_assert_str_eq(r->name, "products");
    cr_assert_eq(r->line, 4);
    cr_assert_str_eq(r->path, "/api/products*");
    cr_assert_eq(r->ttl_ms, 10 * MIN);
    LIST(&r->vary_headers, "Accept-Language", "X-Tenant");
    LIST(&r->vary_cookies, "currency");
    cr_assert_eq(r->per_user, false);
    cr_assert_eq(r->cache, true);
    cr_assert_str_eq(r->cache_control, "public, max-age=60");
    cr_assert_eq(r->swr_ms, 30 * SEC);
    cr_assert_eq(r->sie_ms, DAY);
    LIST(&r->tags, "products", "catalog:v2");

    r = &c.http.routes[1];
    cr_assert_str_eq(r->name, "/api/me*", "the name defaults to the path");
    cr_assert_eq(r->line, 13);
    cr_assert_eq(r->per_user, true);
    cr_assert_eq(r->user_from, CONFIG_USER_HEADER);
    cr_assert_str_eq(r->user_from_name, "Authorization");
    cr_assert_eq(r->ttl_ms, CONFIG_MS_UNSET);

    r = &c.http.routes[2];
    cr_assert_eq(r->line, 14);
    cr_assert_eq(r->user_from, CONFIG_USER_COOKIE);
    cr_assert_str_eq(r->user_from_name, "sessionid");
    cr_assert_eq(r->ttl_ms, 0, "0s is set, not unset");

    r = &c.http.routes[3];
    cr_assert_str_eq(r->name, "/admin/*");
    cr_assert_eq(r->cache, false);

    r = &c.http.routes[4];
    cr_assert_str_eq(r->path, "*", "the path defaults to *");
    cr_assert_str_eq(r->name, "*");
    assert_route_defaults(r);
    config_fini(&c);
}

Test(full_keys, route_jwt_secret)
{
    struct config c;

    load_ok("http_cache:\n"
            "  user_secret: k\n"
            "  routes:\n"
            "    - path: /api/*\n"
            "      per_user: true\n"
            "      user_from: jwt:sub\n"
            "      jwt_key: not-a-file-but-a-secret\n",
            &c);
    cr_assert_eq(c.http.routes[0].user_from, CONFIG_USER_JWT);
    cr_assert_str_eq(c.http.routes[0].user_from_name, "sub");
    cr_assert_str_eq(c.http.routes[0].jwt_key, "not-a-file-but-a-secret");
    cr_assert_eq(c.http.routes[0].jwt_key_is_pem, false);
    config_fini(&c);
}

Test(full_keys, route_jwt_pem_file)
{
    static const char pem[] = "-----BEGIN PUBLIC KEY-----\n"
                              "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
                              "-----END PUBLIC KEY-----\n";
    char *keyfile = tmpfile_with(pem), yaml[512];
    struct config c;

    snprintf(yaml, sizeof yaml,
             "http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - { path: /api/*, per_user: true, user_from: \"jwt:user_id\", "
             "jwt_key: \"%s\" }\n",
             keyfile);
    load_ok(yaml, &c);
    cr_assert_eq(c.http.routes[0].jwt_key_is_pem, true);
    cr_assert_str_eq(c.http.routes[0].jwt_key, pem, "the contents replace the path");
    config_fini(&c);
    unlink(keyfile);
    free(keyfile);
}

Test(full_keys, bus)
{
    struct config c;

    load_ok("bus:\n  timeout: 750ms\n", &c);
    cr_assert_eq(c.bus.timeout_ms, 750);
    config_fini(&c);
}

/* The YAML of DESIGN.md, "Configuration". */
Test(full_keys, design_example)
{
    struct config c;

    setenv("STRATA_ADMIN_TOKEN", "admintoken", 1);
    setenv("STRATA_USER_SECRET", "usersecret", 1);
    load_ok(
        "server:   { listen: \"127.0.0.1:8080\", upstream: \"http://127.0.0.1:8000\", "
        "workers: auto }\n"
        "admin:    { listen: \"127.0.0.1:8081\", token: \"${STRATA_ADMIN_TOKEN}\" }\n"
        "caches:\n"
        "  default: { backend: memory, ttl: 5m, max_memory: 256MB }\n"
        "  session: { backend: redis, url: \"redis://127.0.0.1:6379/2\" }\n"
        "  static:  { backend: memory, ttl: 1h, compress: zstd }\n"
        "  shared:  { backend: tiered, url: "
        "\"redis-sentinel://h1:26379,h2:26379/mymaster/1\", l1_ttl: 5s }\n"
        "http_cache:                      # HTTP objects live in the implicit `http` "
        "cache unless `cache:` names one\n"
        "  user_secret: \"${STRATA_USER_SECRET}\"\n"
        "  routes:\n"
        "    - { path: \"/api/config/\", ttl: 1h }\n"
        "    - { path: \"/api/products*\", ttl: 10m, vary_headers: [Accept-Language] "
        "}\n"
        "    - { path: \"/api/me*\", per_user: true, user_from: "
        "\"header:Authorization\" }\n"
        "    - { path: \"/static/*\", ttl: 30d, cache_control: \"public, "
        "max-age=2592000, immutable\" }\n"
        "    - { path: \"/admin/*\", cache: false }\n",
        &c);
    cr_assert_str_eq(c.server.upstream, "http://127.0.0.1:8000");
    cr_assert_str_eq(c.admin.token, "admintoken");
    cr_assert_str_eq(c.http.user_secret, "usersecret");
    cr_assert_eq(c.http.n_routes, 5);
    cr_assert_eq(c.http.routes[3].ttl_ms, 30 * DAY);
    cr_assert_eq(c.caches.n, 5, "four from the file and the built-in http");
    cr_assert_str_eq(c.caches.v[4].name, "http");
    cr_assert_eq(c.caches.v[4].line, 0);
    cr_assert_eq(c.caches.v[4].max_memory, 512 * MB);
    config_fini(&c);
}

/* ---- the http cache ------------------------------------------------------ */

Test(full_http_cache, added_to_the_file_caches)
{
    struct config c;

    load_ok("caches:\n  a: {}\n", &c);
    cr_assert_eq(c.caches.n, 2);
    cr_assert_str_eq(c.caches.v[0].name, "a");
    cr_assert_str_eq(c.caches.v[1].name, "http");
    cr_assert_eq(c.caches.v[1].max_memory, 512 * MB);
    config_fini(&c);
}

Test(full_http_cache, the_file_may_define_it)
{
    struct config c;

    load_ok("caches:\n  http: { max_memory: 2GB, ttl: 1m }\n  b: {}\n", &c);
    cr_assert_eq(c.caches.n, 2);
    cr_assert_eq(cache(&c, "http")->line, 2);
    cr_assert_eq(cache(&c, "http")->max_memory, 2048 * MB);
    config_fini(&c);
}

Test(full_http_cache, an_embedded_cache)
{
    struct config c;

    load_ok("http_cache: { cache: static }\n", &c);
    cr_assert_eq(c.caches.n, 3, "no http cache when another one holds HTTP objects");
    config_fini(&c);
}

Test(full_http_cache, unknown_cache)
{
    error_at("caches:\n  a: {}\nhttp_cache:\n  max_variants: 3\n  cache: pages\n", 5,
             "http_cache.cache: no cache 'pages' (caches: a;");
    /* Without caches: the embedded ones are the caches. */
    error_at("http_cache: { cache: Default }\n", 1,
             "no cache 'Default' (caches: default, session, static;");
    error_at("http_cache: { cache: \"a b\" }\n", 1,
             "http_cache.cache: bad cache name 'a b'");
}

/* ---- ${ENV} -------------------------------------------------------------- */

Test(full_env, every_section)
{
    struct config c;

    setenv("STRATA_T_PORT", "9999", 1);
    setenv("STRATA_T_HDR", "X-Tenant", 1);
    setenv("STRATA_T_NET", "10.9.0.0/16", 1);
    setenv("STRATA_T_BOOL", "true", 1);
    setenv("STRATA_T_TTL", "7s", 1);
    load_ok("server:\n"
            "  listen: \"127.0.0.1:${STRATA_T_PORT}\"\n"
            "  hosts: [\"h${STRATA_T_PORT}\"]\n"
            "admin: { token_file: \"/tmp/${STRATA_T_PORT}\" }\n"
            "http_cache:\n"
            "  heuristic: ${STRATA_T_BOOL}\n"
            "  purge: { allow: [\"${STRATA_T_NET}\"] }\n"
            "  routes:\n"
            "    - { path: /x, vary_headers: [\"${STRATA_T_HDR}\"], ttl: "
            "\"${STRATA_T_TTL}\" }\n"
            "bus: { timeout: \"${STRATA_T_TTL}\" }\n",
            &c);
    cr_assert_str_eq(c.server.listen, "127.0.0.1:9999");
    LIST(&c.server.hosts, "h9999");
    cr_assert_str_eq(c.admin.token_file, "/tmp/9999");
    cr_assert_eq(c.http.heuristic, true);
    assert_cidr(&c.http.purge_allow[0], AF_INET, "10.9.0.0", 16);
    LIST(&c.http.routes[0].vary_headers, "X-Tenant");
    cr_assert_eq(c.http.routes[0].ttl_ms, 7 * SEC);
    cr_assert_eq(c.bus.timeout_ms, 7 * SEC);
    config_fini(&c);
}

Test(full_env, unset_in_server)
{
    unsetenv("STRATA_T_UNSET");
    error_at("caches:\n  a: {}\nserver:\n  listen: 127.0.0.1:8080\n"
             "  upstream: \"http://${STRATA_T_UNSET}:8000\"\n",
             5, "environment variable STRATA_T_UNSET is not set");
    error_at("admin: { token: \"${STRATA_T_UNSET}\" }\n", 1,
             "environment variable STRATA_T_UNSET is not set");
    error_at("server:\n  hosts:\n    - a\n    - \"${STRATA_T_UNSET}\"\n", 4,
             "STRATA_T_UNSET is not set");
    error_at(
        "http_cache:\n  routes:\n    - path: /x\n      tags: [\"${STRATA_T_UNSET}\"]\n",
        4, "STRATA_T_UNSET is not set");
}

Test(full_env, unset_outside_caches_does_not_stop_the_cache_loader)
{
    char *path = tmpfile_with("server: { upstream: \"${STRATA_T_UNSET}\" }\n"
                              "caches: { a: {} }\n"),
         *err = NULL;
    struct config_caches cc;

    unsetenv("STRATA_T_UNSET");
    cr_assert_eq(config_load_caches(path, &cc, &err), 0, "%s", err);
    cr_assert_eq(cc.n, 1);
    config_caches_fini(&cc);
    unlink(path);
    free(path);
}

/* ---- errors: values ------------------------------------------------------ */

Test(full_errors, bad_durations)
{
    error_at("server:\n  header_timeout: 10\n", 2,
             "server.header_timeout: bad duration '10': a bare number needs a unit");
    error_at("server:\n  idle_timeout: 0s\n", 2,
             "server.idle_timeout: must be greater than 0");
    error_at("bus:\n  timeout: never\n", 2,
             "bus.timeout: never is not allowed here: give a duration > 0");
    error_at(
        "http_cache:\n  keep: never\n", 2,
        "http_cache.keep: never is not allowed here: give a duration (0s or more)");
    error_at("http_cache:\n  routes:\n    - { path: /a, ttl: 5x }\n", 3,
             "http_cache.routes[0].ttl: bad duration '5x': unknown unit");
    error_at("http_cache:\n  routes:\n    - path: /a\n    - path: /b\n"
             "      stale_if_error: never\n",
             5, "http_cache.routes[1].stale_if_error: never is not allowed here");
}

Test(full_errors, bad_sizes_and_counts)
{
    error_at("server:\n  max_header_size: 32\n", 2,
             "server.max_header_size: bad size '32': a bare number needs a unit");
    error_at("server:\n  max_connections: 0\n", 2,
             "server.max_connections: must be greater than 0");
    error_at("server:\n  max_headers: many\n", 2,
             "server.max_headers: bad count 'many'");
    error_at("http_cache:\n  max_object_size: 0MB\n", 2,
             "http_cache.max_object_size: must be greater than 0");
    error_at("http_cache:\n  max_variants: -1\n", 2, "bad count '-1'");
}

Test(full_errors, unknown_keys)
{
    error_at("server:\n  listen: 127.0.0.1:1\n  upstreams: http://h:1\n", 3,
             "server: unknown key 'upstreams' (known keys: listen, upstream, hosts, "
             "workers,");
    error_at("admin:\n  tokn: x\n", 2,
             "admin: unknown key 'tokn' (known keys: listen, token, token_file)");
    error_at("bus:\n  timeout: 1s\n  url: x\n", 3,
             "bus: unknown key 'url' (known keys: timeout)");
    error_at("http_cache:\n  ttl: 1h\n", 2,
             "http_cache: unknown key 'ttl' (known keys: cache, max_object_size, "
             "max_variants, default_ttl, heuristic, keep, tag_headers, "
             "strip_tag_headers, user_secret, purge, routes)");
    error_at("http_cache:\n  purge:\n    allow: []\n    tokens: x\n", 4,
             "http_cache.purge: unknown key 'tokens' (known keys: allow, token)");
    error_at("http_cache:\n  purge.allow: []\n", 2, "unknown key 'purge.allow'");
    error_at("http_cache:\n  routes:\n    - path: /a\n    - path: /b\n      tll: 1h\n",
             5,
             "http_cache.routes[1]: unknown key 'tll' (known keys: name, path, ttl, "
             "vary_headers,");
}

Test(full_errors, upstream)
{
    error_at("server:\n  upstream: https://origin:443\n", 2,
             "server.upstream: https is not supported");
    error_at("server:\n  upstream: ftp://origin:21\n", 2,
             "server.upstream: must be http://HOST:PORT");
    error_at("server:\n  upstream: origin:8000\n", 2, "must be http://HOST:PORT");
    error_at("server:\n  upstream: http://origin:8000/app\n", 2,
             "server.upstream: no path, query or fragment");
    error_at("server:\n  upstream: http://origin:8000/?a=b\n", 2, "no path");
    error_at("server:\n  upstream: http://origin:8000?a\n", 2, "no path");
    error_at("server:\n  upstream: http://origin\n", 2,
             "server.upstream: a port is required");
    error_at("server:\n  upstream: http://origin:0\n", 2,
             "the port must be a number from 1 to 65535");
    error_at("server:\n  upstream: http://origin:65536\n", 2, "the port must be");
    error_at("server:\n  upstream: http://user:pw@origin:80\n", 2,
             "no user or password");
    error_at("server:\n  upstream: http://::1:80\n", 2, "in brackets");
    error_at("server:\n  upstream: http://[::g]:80\n", 2, "not a valid IPv6 address");
    error_at("server:\n  upstream: http://300.1.1.1:80\n", 2,
             "not a valid IPv4 address");
    error_at("server:\n  upstream: \"http://a b:80\"\n", 2, "bad host");
    error_at("server:\n  upstream: ''\n", 2, "must be http://HOST:PORT");
}

Test(full_errors, listen)
{
    error_at("server:\n  listen: 8080\n", 2,
             "server.listen: bad address '8080': a port is required");
    error_at(
        "admin:\n  listen: \"localhost:\"\n", 2,
        "admin.listen: bad address 'localhost:': the port must be a number from 0");
    error_at("admin:\n  listen: \"127.0.0.1:80x\"\n", 2,
             "unexpected text after the port");
    error_at("admin:\n  listen: \":8080\"\n", 2, "bad host");
}

Test(full_errors, bad_bools)
{
    error_at("http_cache:\n  heuristic: yes\n", 2,
             "http_cache.heuristic: bad boolean 'yes': use true or false");
    error_at("http_cache:\n  strip_tag_headers: True\n", 2, "bad boolean 'True'");
    error_at("http_cache:\n  routes:\n    - { path: /a, cache: 0 }\n", 3,
             "http_cache.routes[0].cache: bad boolean '0'");
    error_at("http_cache:\n  routes:\n    - { path: /a, per_user: }\n", 3,
             "http_cache.routes[0].per_user: expected a boolean, got no value");
}

Test(full_errors, workers_and_log_level)
{
    error_at("server:\n  workers: 0\n", 2, "server.workers: bad worker count '0'");
    error_at("server:\n  workers: 1025\n", 2, "from 1 to 1024");
    error_at("server:\n  workers: many\n", 2, "use auto");
    error_at(
        "server:\n  log_level: verbose\n", 2,
        "server.log_level: bad log level 'verbose': use debug, info, warn or error");
    error_at("server:\n  access_log: ''\n", 2, "server.access_log: must not be empty");
}

Test(full_errors, bad_cidrs)
{
    error_at(
        "http_cache:\n  purge:\n    allow:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n",
        5,
        "http_cache.purge.allow[1]: bad CIDR '10.0.0.0/33': the prefix length must "
        "be 0 to 32");
    error_at("http_cache:\n  purge: { allow: [\"::1/129\"] }\n", 2,
             "the prefix length must be 0 to 128");
    error_at("http_cache:\n  purge: { allow: [localhost] }\n", 2,
             "bad CIDR 'localhost': not a valid IPv4 address");
    error_at("http_cache:\n  purge: { allow: [\"1.2.3/8\"] }\n", 2,
             "not a valid IPv4 address");
    error_at("http_cache:\n  purge: { allow: [\"10.0.0.0/\"] }\n", 2, "prefix length");
    error_at("http_cache:\n  purge: { allow: [\"10.0.0.0/8x\"] }\n", 2,
             "prefix length");
    error_at("http_cache:\n  purge: { allow: [\"/8\"] }\n", 2,
             "expected ADDRESS/PREFIX");
    error_at("http_cache:\n  purge: { allow: [\"fe80::1%eth0\"] }\n", 2,
             "not a valid IPv6 address");
    error_at("http_cache:\n  purge: { allow: 127.0.0.1/32 }\n", 2,
             "http_cache.purge.allow: expected a list of CIDRs, got a string");
}

Test(full_errors, bad_lists)
{
    error_at("server:\n  hosts: example.com\n", 2,
             "server.hosts: expected a list of strings, got a string");
    error_at("server:\n  hosts:\n", 2,
             "server.hosts: expected a list of strings, got no value");
    error_at("server:\n  hosts: [a, '']\n", 2, "server.hosts[1]: must not be empty");
    error_at("server:\n  hosts: [a, [b]]\n", 2,
             "server.hosts[1]: expected a string, got a list");
    error_at("server:\n  strip_request_headers: [\"X Forwarded\"]\n", 2,
             "server.strip_request_headers[0]: bad header name 'X Forwarded'");
    error_at("http_cache:\n  tag_headers: [\"Cache-Tag:\"]\n", 2, "bad header name");
    error_at("http_cache:\n  routes:\n    - { path: /a, vary_cookies: [\"a=b\"] }\n", 3,
             "http_cache.routes[0].vary_cookies[0]: bad cookie name 'a=b'");
    error_at("http_cache:\n  routes:\n    - { path: /a, tags: [\"two words\"] }\n", 3,
             "http_cache.routes[0].tags[0]: bad tag 'two words'");
    error_at("http_cache:\n  routes:\n    - { path: /a, tags: [\"a,b\"] }\n", 3,
             "bad tag");
}

Test(full_errors, routes_shape)
{
    error_at("http_cache:\n  routes: {path: /a}\n", 2,
             "http_cache.routes: expected a list of routes, got a mapping");
    error_at(
        "http_cache:\n  routes:\n    - /a\n", 3,
        "http_cache.routes[0]: expected a mapping of route settings, got a string");
    error_at("http_cache:\n  routes:\n", 2, "expected a list of routes, got no value");
    error_at("http_cache:\n  purge: []\n", 2,
             "http_cache.purge: expected a mapping, got a list");
    error_at("http_cache:\n  purge:\n", 2,
             "http_cache.purge: expected a mapping, got no value");
}

Test(full_errors, route_values)
{
    error_at("http_cache:\n  routes:\n    - { path: \"api/*\" }\n", 3,
             "http_cache.routes[0].path: bad path glob 'api/*': the glob matches the "
             "normalised path");
    error_at("http_cache:\n  routes:\n    - { path: \"/a[b\" }\n", 3,
             "bad path glob '/a[b': an unterminated [");
    error_at("http_cache:\n  routes:\n    - { path: '' }\n", 3,
             "http_cache.routes[0].path: must not be empty");
    error_at(
        "http_cache:\n  routes:\n    - { path: /a, cache_control: \"public\\r\\nX: "
        "1\" }\n",
        3, "http_cache.routes[0].cache_control: a header value is printable ASCII");
    error_at("http_cache:\n  routes:\n    - { path: /a, name: '' }\n", 3,
             "http_cache.routes[0].name: must not be empty");
    error_at("http_cache:\n  user_secret: k\n  routes:\n"
             "    - { path: /a, per_user: true, user_from: \"query:u\" }\n",
             4,
             "http_cache.routes[0].user_from: bad identity source 'query:u': use "
             "header:NAME, cookie:NAME or jwt:CLAIM");
    error_at("http_cache:\n  user_secret: k\n  routes:\n"
             "    - { path: /a, per_user: true, user_from: \"header:\" }\n",
             4, "header: needs a header name");
    error_at("http_cache:\n  user_secret: k\n  routes:\n"
             "    - { path: /a, per_user: true, user_from: \"jwt:\" }\n",
             4, "jwt: needs a claim name");
}

Test(full_errors, secrets_are_not_quoted)
{
    char *path = tmpfile_with("admin:\n  token: \"abc\\ndef\"\n"), *err = NULL;
    struct config c;

    cr_assert_eq(config_load(path, &c, &err), -1);
    cr_assert(strstr(err, ":2: admin.token: contains a control character"), "%s", err);
    cr_assert_null(strstr(err, "abc"), "the token is not in the message: %s", err);
    free(err);
    unlink(path);
    free(path);
    error_at("http_cache:\n  user_secret: ''\n", 2,
             "http_cache.user_secret: must not be empty");
    error_at("http_cache:\n  purge: { token: '' }\n", 2,
             "http_cache.purge.token: must not be empty");
}

/* ---- errors: checks across keys and sections ------------------------------ */

Test(full_errors, per_user_without_user_from)
{
    error_at("http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - { path: /a }\n"
             "    - path: /me\n"
             "      ttl: 1m\n"
             "      per_user: true\n",
             5,
             "http_cache.routes[1]: per_user needs user_from (header:NAME, cookie:NAME "
             "or jwt:CLAIM)");
}

Test(full_errors, user_from_without_per_user)
{
    error_at("http_cache:\n"
             "  routes:\n"
             "    - path: /me\n"
             "      user_from: header:Authorization\n",
             4, "http_cache.routes[0].user_from: only with per_user: true");
}

Test(full_errors, per_user_without_user_secret)
{
    /* The line of the route, wherever user_secret would have been. */
    error_at("http_cache:\n"
             "  routes:\n"
             "    - { path: /a, ttl: 1m }\n"
             "    - { path: /me, per_user: true, user_from: \"cookie:sid\" }\n"
             "bus: {}\n",
             4, "http_cache.routes[1]: per_user needs http_cache.user_secret");
}

Test(full_errors, jwt_without_jwt_key)
{
    error_at("http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - path: /api/*\n"
             "      per_user: true\n"
             "      user_from: jwt:sub\n",
             4, "http_cache.routes[0]: user_from jwt: needs jwt_key");
}

Test(full_errors, jwt_key_without_jwt)
{
    error_at("http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - path: /api/*\n"
             "      per_user: true\n"
             "      user_from: header:X-User\n"
             "      jwt_key: secret\n",
             7, "http_cache.routes[0].jwt_key: only with user_from: jwt:CLAIM");
}

Test(full_errors, jwt_key_file_without_pem)
{
    char *keyfile = tmpfile_with("just some bytes\n"), yaml[512];

    snprintf(yaml, sizeof yaml,
             "http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - path: /api/*\n"
             "      per_user: true\n"
             "      jwt_key: %s\n"
             "      user_from: jwt:sub\n",
             keyfile);
    error_at(yaml, 6, "http_cache.routes[0].jwt_key: the file");
    error_at(yaml, 6, "holds no PEM key");
    unlink(keyfile);
    free(keyfile);
}

Test(full_errors, jwt_key_missing_pem_file)
{
    error_at("http_cache:\n"
             "  user_secret: k\n"
             "  routes:\n"
             "    - path: /api/*\n"
             "      per_user: true\n"
             "      user_from: jwt:sub\n"
             "      jwt_key: /nonexistent/strata-jwt.PEM\n",
             7,
             "http_cache.routes[0].jwt_key: cannot read the key file "
             "'/nonexistent/strata-jwt.PEM': No such file or directory");
}

Test(full_errors, duplicate_route_names)
{
    error_at("http_cache:\n"
             "  routes:\n"
             "    - { path: /a }\n"
             "    - { path: /b, name: x }\n"
             "    - { path: /a, ttl: 1m }\n",
             5, "http_cache.routes[2]: duplicate route name '/a' (first at line 3)");
    error_at("http_cache:\n"
             "  routes:\n"
             "    - { path: /a, name: x }\n"
             "    - { path: /b, name: x }\n",
             4, "duplicate route name 'x'");
}

Test(full_errors, sections_and_caches_still_checked)
{
    error_at("server: 1\n", 1, "server: expected a mapping, got a string");
    error_at("caches:\n  a:\n    ttl: 5\n", 3, "caches.a.ttl: bad duration '5'");
    error_at("server:\n  listen: a:1\n  listen: b:1\n", 3,
             "duplicate key 'listen' (first at line 2)");
    error_at("http_cache:\n  routes:\n    - { path: /a, path: /b }\n", 3,
             "duplicate key 'path'");
    error_at("servers: {}\n", 1, "unknown section 'servers'");
}

Test(full_errors, first_error_wins_and_nothing_leaks)
{
    /* Much allocated before the failing key: all freed (ASan). */
    error_at("server: { hosts: [a, b, c], upstream: \"http://h:1\" }\n"
             "caches: { a: {}, b: {} }\n"
             "http_cache:\n"
             "  user_secret: k\n"
             "  purge: { allow: [10.0.0.0/8], token: t }\n"
             "  routes:\n"
             "    - { path: /a, tags: [x, y], vary_headers: [A], per_user: true, "
             "user_from: \"header:A\" }\n"
             "    - { path: /b, cache_control: public, ttl: 1 }\n",
             8, "http_cache.routes[1].ttl: bad duration '1'");
}

Test(full_errors, aliases_are_bounded)
{
    /* Aliases are references, so a small file can name a huge configuration:
     * 2000 routes, each an alias of one route whose tags are an alias of a
     * list of 1000 long tags, would copy 400MB of tags. The budget stops the
     * load with a message instead. */
    char *yaml = NULL, *path, *err = NULL;
    size_t len = 0;
    struct config c;
    FILE *f = open_memstream(&yaml, &len);

    fprintf(f, "server:\n  hosts: &t [");
    for (int i = 0; i < 1000; i++)
        fprintf(f, "%s\"%0200d\"", i ? ", " : "", i);
    fprintf(f, "]\nhttp_cache:\n  routes: [&r {path: /a, tags: *t}");
    for (int i = 0; i < 2000; i++)
        fprintf(f, ", *r");
    fprintf(f, "]\n");
    fclose(f);
    path = tmpfile_with(yaml);
    cr_assert_eq(config_load(path, &c, &err), -1);
    cr_assert(strstr(err, "expands to more than 64 MB of values"), "%s", err);
    cr_assert(zeroed(&c, sizeof c));
    free(err);
    unlink(path);
    free(path);
    free(yaml);
}

/* ---- admin.token: what the server accepts and the CLI sends --------------- */

Test(full_admin_token, the_grammar)
{
    char max[CONFIG_BEARER_MAX + 2];
    const char *why = NULL;

    memset(max, 'a', sizeof max);
    max[CONFIG_BEARER_MAX] = '\0';
    cr_assert_eq(config_check_bearer("t", &why), 0);
    cr_assert_eq(config_check_bearer(max, &why), 0, "128 bytes is the limit");
    /* Any printable ASCII but space: base64, hex, punctuation. */
    cr_assert_eq(config_check_bearer("Ab0+/=_-.~!\"#$%&'()*,:;<>?@[\\]^`{|}", &why), 0);
    max[CONFIG_BEARER_MAX] = 'a';
    max[CONFIG_BEARER_MAX + 1] = '\0';
    cr_assert_eq(config_check_bearer(max, &why), -1);
    cr_assert(strstr(why, "longer than 128 bytes"), "%s", why);
    cr_assert_eq(config_check_bearer("", &why), -1);
    cr_assert_str_eq(why, "must not be empty");
    cr_assert_eq(config_check_bearer("a b", &why), -1);
    cr_assert(strstr(why, "contains a space"), "%s", why);
    cr_assert(strstr(why, "printable ASCII without spaces"), "%s", why);
    cr_assert_eq(config_check_bearer(" a", &why), -1,
                 "no trimming: the server has none");
    cr_assert_eq(config_check_bearer("a\tb", &why), -1);
    cr_assert_str_eq(why, "contains a control character");
    cr_assert_eq(config_check_bearer("a\x7f", &why), -1);
    cr_assert_eq(config_check_bearer("t\xc3\xb6k", &why), -1);
    cr_assert(strstr(why, "not ASCII"), "%s", why);
}

Test(full_admin_token, checked_by_config_load)
{
    char yaml[CONFIG_BEARER_MAX + 64];
    struct config c;

    snprintf(yaml, sizeof yaml, "admin:\n  token: %0*d\n", CONFIG_BEARER_MAX, 7);
    load_ok(yaml, &c);
    cr_assert_eq(strlen(c.admin.token), CONFIG_BEARER_MAX);
    config_fini(&c);
    load_ok("admin: { token: \"Zm9vYmFy+/==\" }\n", &c);
    cr_assert_str_eq(c.admin.token, "Zm9vYmFy+/==");
    config_fini(&c);

    snprintf(yaml, sizeof yaml, "admin:\n  token: %0*d\n", CONFIG_BEARER_MAX + 1, 7);
    error_at(yaml, 2,
             "admin.token: longer than 128 bytes (a token is 1 to 128 bytes of "
             "printable ASCII without spaces)");
    error_at("admin:\n  listen: 127.0.0.1:1\n  token: \"two words\"\n", 3,
             "admin.token: contains a space");
    error_at("admin:\n  token: \" padded\"\n", 2, "admin.token: contains a space");
    error_at("admin:\n  token: \"t\xc3\xb6ken\"\n", 2,
             "admin.token: contains a byte "
             "that is not ASCII");
    error_at("admin:\n  token: ''\n", 2, "admin.token: must not be empty");
    setenv("STRATA_T_SPACED", "from env", 1);
    error_at("admin:\n  token: \"${STRATA_T_SPACED}\"\n", 2,
             "admin.token: contains a space");
    unsetenv("STRATA_T_SPACED");
}

Test(full_admin_token, the_message_does_not_quote_it)
{
    char *path = tmpfile_with("admin:\n  token: \"secret words\"\n"), *err = NULL;
    struct config c;

    cr_assert_eq(config_load(path, &c, &err), -1);
    cr_assert_null(strstr(err, "secret"), "the token is not in the message: %s", err);
    free(err);
    unlink(path);
    free(path);
}

/* ---- config_load_admin: the CLI's admin commands --------------------------- */

/* Load `yaml` with config_load_admin; 0 or -1, *err set (malloc'd) on -1. */
static int load_admin(const char *yaml, struct config_admin *a, char **err)
{
    char *path = tmpfile_with(yaml);
    int rc;

    memset(a, 0x5a, sizeof *a);
    *err = NULL;
    rc = config_load_admin(path, a, err);
    if (rc != 0) {
        char *prefix;
        cr_assert_not_null(*err);
        cr_assert(zeroed(a, sizeof *a), "a failed load must leave the output zeroed");
        cr_assert(asprintf(&prefix, "%s:", path) > 0);
        cr_assert(strncmp(*err, prefix, strlen(prefix)) == 0, "%s", *err);
        free(prefix);
    } else {
        cr_assert_null(*err);
    }
    unlink(path);
    free(path);
    return rc;
}

/* config_load_admin fails on `yaml` at `line` with `needle`. */
static void admin_error_at(const char *yaml, unsigned line, const char *needle)
{
    struct config_admin a;
    char *err, want[32];

    cr_assert_eq(load_admin(yaml, &a, &err), -1, "expected '%s'\n%s", needle, yaml);
    snprintf(want, sizeof want, ":%u: ", line);
    cr_assert(strstr(err, want), "error '%s' is not at line %u", err, line);
    cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);
    free(err);
}

Test(full_load_admin, reads_admin_with_its_defaults)
{
    struct config_admin a;
    char *err;

    cr_assert_eq(
        load_admin("admin:\n  listen: \"[::1]:9191\"\n  token: t0k\n", &a, &err), 0,
        "%s", err);
    cr_assert_str_eq(a.listen, "[::1]:9191");
    cr_assert_str_eq(a.token, "t0k");
    cr_assert_str_eq(a.token_file, "strata-admin.token");
    config_admin_fini(&a);
    cr_assert(zeroed(&a, sizeof a));
    config_admin_fini(&a); /* twice: safe on a zeroed struct */

    cr_assert_eq(load_admin("caches: { a: {} }\n", &a, &err), 0, "%s", err);
    cr_assert_str_eq(a.listen, "127.0.0.1:8081");
    cr_assert_null(a.token);
    cr_assert_str_eq(a.token_file, "strata-admin.token");
    config_admin_fini(&a);
    cr_assert_eq(load_admin("", &a, &err), 0, "%s", err);
    cr_assert_str_eq(a.listen, "127.0.0.1:8081");
    config_admin_fini(&a);
}

Test(full_load_admin, unset_env_outside_admin_is_no_error)
{
    const char *yaml = "server:\n"
                       "  listen: \"127.0.0.1:${STRATA_T_UNSET}\"\n"
                       "  upstream: \"http://${STRATA_T_UNSET}:1\"\n"
                       "admin:\n"
                       "  listen: 127.0.0.1:9292\n"
                       "  token: literal-token\n"
                       "caches:\n"
                       "  a: { ttl: \"${STRATA_T_UNSET}\" }\n"
                       "http_cache:\n"
                       "  user_secret: \"${STRATA_T_UNSET}\"\n"
                       "  routes:\n"
                       "    - { path: /x, per_user: true, user_from: "
                       "\"header:${STRATA_T_UNSET}\" }\n"
                       "bus: { timeout: \"${STRATA_T_UNSET}\" }\n";
    struct config_admin a;
    char *err;

    unsetenv("STRATA_T_UNSET");
    cr_assert_eq(load_admin(yaml, &a, &err), 0, "%s", err);
    cr_assert_str_eq(a.listen, "127.0.0.1:9292");
    cr_assert_str_eq(a.token, "literal-token");
    config_admin_fini(&a);
    /* strata serve and check-config read the same file and still refuse it. */
    error_at(yaml, 2, "environment variable STRATA_T_UNSET is not set");
}

Test(full_load_admin, admin_is_checked_as_config_load_checks_it)
{
    struct config_admin a;
    char *err;

    unsetenv("STRATA_T_UNSET");
    admin_error_at(
        "http_cache: { user_secret: k }\nadmin:\n  token: \"${STRATA_T_UNSET}\"\n", 3,
        "environment variable STRATA_T_UNSET is not set");
    admin_error_at("admin:\n  listen: nowhere\n", 2, "admin.listen: bad address");
    admin_error_at("admin:\n  token: \"a b\"\n", 2, "admin.token: contains a space");
    admin_error_at("admin:\n  tokn: x\n", 2, "admin: unknown key 'tokn'");
    admin_error_at("admin: [a]\n", 1, "admin: expected a mapping");
    setenv("STRATA_T_TOK", "tok-from-env", 1);
    cr_assert_eq(load_admin("admin: { token: \"${STRATA_T_TOK}\" }\n", &a, &err), 0,
                 "%s", err);
    cr_assert_str_eq(a.token, "tok-from-env");
    config_admin_fini(&a);
    unsetenv("STRATA_T_TOK");
}

Test(full_load_admin, the_file_is_still_checked)
{
    struct config_admin a;
    char *err = NULL;

    admin_error_at("admin: { token: t }\nadmni: {}\n", 2, "unknown section 'admni'");
    admin_error_at("admin:\n  token: [\n", 3, "YAML syntax error");
    admin_error_at("server: 5\n", 1, "server: expected a mapping, got a string");
    admin_error_at("caches: [a]\n", 1, "caches: expected a mapping, got a list");
    admin_error_at("admin: { token: a, token: b }\n", 1, "duplicate key 'token'");
    admin_error_at("http_cache: { routes: [ {a: 1, a: 2} ] }\n", 1,
                   "duplicate key 'a'");
    cr_assert_eq(config_load_admin("/nonexistent/strata.yaml", &a, &err), -1);
    cr_assert(strstr(err, "/nonexistent/strata.yaml: cannot open:"), "%s", err);
    cr_assert(zeroed(&a, sizeof a));
    free(err);
    cr_assert_eq(config_load_admin(NULL, &a, NULL), -1, "errmsg may be NULL");
}
