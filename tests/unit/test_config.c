/*
 * test_config.c -- the YAML configuration loader and the value grammars.
 *
 * Every test writes its YAML to a mkstemp file in /tmp and loads it. Error
 * tests assert the whole "PATH:LINE: " prefix (so the line is exact) and a
 * piece of the message, and that a failed load leaves the output zeroed;
 * ASan's leak check covers the error paths. The last tests hold
 * docs/configuration.md to the tables in src/config/keys.h.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "config/keys.h"

#define KB (UINT64_C(1) << 10)
#define MB (UINT64_C(1) << 20)
#define GB (UINT64_C(1) << 30)
#define TB (UINT64_C(1) << 40)
#define SEC INT64_C(1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
#define WEEK (7 * DAY)

/* ---- helpers ------------------------------------------------------------- */

/* Write `yaml` (`len` bytes) to a new temporary file; returns its malloc'd path. */
static char *tmpyaml_n(const char *yaml, size_t len)
{
    char path[] = "/tmp/strata-test-config-XXXXXX";
    int fd = mkstemp(path);

    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, yaml, len), (ssize_t)len);
    close(fd);
    return strdup(path);
}

static char *tmpyaml(const char *yaml)
{
    return tmpyaml_n(yaml, strlen(yaml));
}

/* Load `yaml` and expect success. */
static void load_ok(const char *yaml, struct config_caches *out)
{
    char *path = tmpyaml(yaml), *err = NULL;
    int rc = config_load_caches(path, out, &err);

    cr_assert_eq(rc, 0, "load failed: %s\n--- yaml ---\n%s", err ? err : "(no message)",
                 yaml);
    cr_assert_null(err);
    cr_assert_str_eq(out->path, path);
    unlink(path);
    free(path);
}

/* Load `len` bytes of `yaml`, expect an error at `line` containing `needle`. */
static void error_at_n(const char *yaml, size_t len, unsigned line, const char *needle)
{
    char *path = tmpyaml_n(yaml, len), *err = NULL, *prefix;
    struct config_caches out;
    int rc;

    memset(&out, 0x5a, sizeof out);
    rc = config_load_caches(path, &out, &err);
    cr_assert_eq(rc, -1, "expected an error '%s' at line %u\n--- yaml ---\n%s", needle,
                 line, yaml);
    cr_assert_not_null(err);
    cr_assert(out.v == NULL && out.n == 0 && out.path == NULL,
              "a failed load must leave the output zeroed");
    cr_assert(asprintf(&prefix, "%s:%u: ", path, line) > 0);
    cr_assert(strncmp(err, prefix, strlen(prefix)) == 0,
              "error '%s' does not start with '%s'\n--- yaml ---\n%s", err, prefix,
              yaml);
    cr_assert(strstr(err, needle), "error '%s' does not contain '%s'\n--- yaml ---\n%s",
              err, needle, yaml);
    config_caches_fini(&out);
    unlink(path);
    free(prefix);
    free(err);
    free(path);
}

static void error_at(const char *yaml, unsigned line, const char *needle)
{
    error_at_n(yaml, strlen(yaml), line, needle);
}

static const struct config_cache *find(const struct config_caches *cc, const char *name)
{
    for (size_t i = 0; i < cc->n; i++)
        if (strcmp(cc->v[i].name, name) == 0) return &cc->v[i];
    cr_assert_fail("no cache '%s'", name);
    return NULL;
}

/* The defaults every cache shares (DESIGN.md, "Configuration"). */
static void assert_common_defaults(const struct config_cache *c)
{
    cr_assert_eq(c->backend, CONFIG_BACKEND_MEMORY, "%s", c->name);
    cr_assert_null(c->url, "%s", c->name);
    cr_assert_eq(c->max_items, 0, "%s", c->name);
    cr_assert_eq(c->compress, CONFIG_CODEC_NONE, "%s", c->name);
    cr_assert_eq(c->compress_level, 0, "%s", c->name);
    cr_assert_eq(c->compress_min_size, 1 * KB, "%s", c->name);
    cr_assert_str_eq(c->key_prefix, "strata", "%s", c->name);
    cr_assert_eq(c->l1_ttl_ms, 5 * SEC, "%s", c->name);
    cr_assert_eq(c->l1_max_memory, 64 * MB, "%s", c->name);
    cr_assert_eq(c->connect_timeout_ms, 200, "%s", c->name);
    cr_assert_eq(c->command_timeout_ms, 100, "%s", c->name);
    cr_assert_eq(c->loader_timeout_ms, 30 * SEC, "%s", c->name);
}

/* The three embedded caches, in order, with their defaults. */
static void assert_embedded(const struct config_caches *cc)
{
    cr_assert_eq(cc->n, 3);
    cr_assert_str_eq(cc->v[0].name, "default");
    cr_assert_str_eq(cc->v[1].name, "session");
    cr_assert_str_eq(cc->v[2].name, "static");
    cr_assert_eq(cc->v[0].ttl_ms, 5 * MIN);
    cr_assert_eq(cc->v[0].max_memory, 256 * MB);
    cr_assert_eq(cc->v[1].ttl_ms, 2 * WEEK);
    cr_assert_eq(cc->v[1].max_memory, 64 * MB);
    cr_assert_eq(cc->v[2].ttl_ms, 1 * HOUR);
    cr_assert_eq(cc->v[2].max_memory, 256 * MB);
    for (size_t i = 0; i < cc->n; i++) {
        cr_assert_eq(cc->v[i].line, 0, "built-in caches have no line");
        assert_common_defaults(&cc->v[i]);
    }
}

/* ---- durations ----------------------------------------------------------- */

Test(duration, valid)
{
    static const struct {
        const char *s;
        int64_t ms;
    } ok[] = {
        {"300ms", 300},
        {"5s", 5 * SEC},
        {"10m", 10 * MIN},
        {"1h", HOUR},
        {"30d", 30 * DAY},
        {"2w", 2 * WEEK},
        {"never", -1},
        {"0s", 0},
        {"0ms", 0},
        {"007s", 7 * SEC},
        {"9223372036854775807ms", INT64_MAX},
        {"15250284452w", 15250284452 * WEEK},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int64_t ms = 42;
        const char *why = NULL;
        cr_assert_eq(config_parse_duration(ok[i].s, &ms, &why), 0, "%s: %s", ok[i].s,
                     why);
        cr_assert_eq(ms, ok[i].ms, "%s: got %lld", ok[i].s, (long long)ms);
    }
}

Test(duration, invalid)
{
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"300", "bare number"},
        {"0", "bare number"},
        {"5x", "unknown unit"},
        {"5S", "unknown unit"},
        {"5 s", "unknown unit"},
        {"5sec", "unknown unit"},
        {"1h30m", "unknown unit"},
        {"1.5h", "fractions"},
        {"", "empty"},
        {"ms", "expected a number"},
        {"-5s", "expected a number"},
        {" 5s", "expected a number"},
        {"NEVER", "expected a number"},
        {"9223372036854775808ms", "out of range"},
        {"99999999999999999999999s", "out of range"},
        {"9223372036854775807s", "out of range"},
        {"15250284453w", "out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ms = 42;
        const char *why = NULL;
        cr_assert_eq(config_parse_duration(bad[i].s, &ms, &why), -1, "'%s' parsed",
                     bad[i].s);
        cr_assert_eq(ms, 42, "'%s': output written on error", bad[i].s);
        cr_assert(why && strstr(why, bad[i].why), "'%s': why '%s', expected '%s'",
                  bad[i].s, why, bad[i].why);
    }
    /* why may be NULL. */
    int64_t ms;
    cr_assert_eq(config_parse_duration("5x", &ms, NULL), -1);
}

/* ---- sizes --------------------------------------------------------------- */

Test(size, valid)
{
    static const struct {
        const char *s;
        uint64_t bytes;
    } ok[] = {
        {"512KB", 524288},
        {"256MB", 256 * MB},
        {"2GB", 2 * GB},
        {"1MiB", 1048576},
        {"512B", 512},
        {"1TB", TB},
        {"3TiB", 3 * TB},
        {"4KiB", 4 * KB},
        {"7GiB", 7 * GB},
        {"0MB", 0},
        {"64mb", 64 * MB},
        {"1kib", KB},
        {"2Gb", 2 * GB},
        {"10b", 10},
        {"18446744073709551615B", UINT64_MAX},
        {"16777215TB", 16777215 * TB},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t b = 42;
        const char *why = NULL;
        cr_assert_eq(config_parse_size(ok[i].s, &b, &why), 0, "%s: %s", ok[i].s, why);
        cr_assert_eq(b, ok[i].bytes, "%s: got %llu", ok[i].s, (unsigned long long)b);
    }
}

Test(size, invalid)
{
    static const struct {
        const char *s, *why;
    } bad[] = {
        {"1024", "bare number"},
        {"0", "bare number"},
        {"5XB", "unknown unit"},
        {"5K", "unknown unit"},
        {"5M", "unknown unit"},
        {"256 MB", "unknown unit"},
        {"1.5GB", "fractions"},
        {"", "empty"},
        {"MB", "expected a number"},
        {"-1MB", "expected a number"},
        {"18446744073709551616B", "out of range"},
        {"16777216TB", "out of range"},
        {"99999999999999999999999KB", "out of range"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t b = 42;
        const char *why = NULL;
        cr_assert_eq(config_parse_size(bad[i].s, &b, &why), -1, "'%s' parsed",
                     bad[i].s);
        cr_assert_eq(b, 42, "'%s': output written on error", bad[i].s);
        cr_assert(why && strstr(why, bad[i].why), "'%s': why '%s', expected '%s'",
                  bad[i].s, why, bad[i].why);
    }
    uint64_t b;
    cr_assert_eq(config_parse_size("5XB", &b, NULL), -1);
}

/* ---- defaults ------------------------------------------------------------ */

Test(defaults, embedded)
{
    struct config_caches cc;

    cr_assert_eq(config_caches_defaults(&cc), 0);
    cr_assert_null(cc.path);
    assert_embedded(&cc);
    config_caches_fini(&cc);
    cr_assert(cc.v == NULL && cc.n == 0 && cc.path == NULL, "fini zeroes");
}

Test(defaults, cache_init_per_name)
{
    static const struct {
        const char *name;
        int64_t ttl_ms;
        uint64_t max_memory;
    } want[] = {
        {"default", 5 * MIN, 256 * MB}, {"session", 2 * WEEK, 64 * MB},
        {"static", HOUR, 256 * MB},     {"http", 0, 512 * MB},
        {"products", 0, 256 * MB},      {"Default", 0, 256 * MB},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct config_caches one = {0};
        one.v = calloc(1, sizeof *one.v);
        cr_assert_eq(config_cache_init(&one.v[0], want[i].name), 0);
        one.n = 1;
        cr_assert_str_eq(one.v[0].name, want[i].name);
        cr_assert_eq(one.v[0].line, 0);
        cr_assert_eq(one.v[0].ttl_ms, want[i].ttl_ms, "%s", want[i].name);
        cr_assert_eq(one.v[0].max_memory, want[i].max_memory, "%s", want[i].name);
        assert_common_defaults(&one.v[0]);
        config_caches_fini(&one);
    }
}

Test(defaults, fini_is_safe_on_zeroed_struct)
{
    struct config_caches cc = {0};

    config_caches_fini(&cc);
    config_caches_fini(&cc);
    cr_assert_null(cc.v);
}

Test(load, empty_file_gives_embedded_defaults)
{
    static const char *const empties[] = {
        "", "\n\n", "# only a comment\n", "---\n", "~\n", "--- ~\n...\n", "null\n",
    };
    for (size_t i = 0; i < sizeof empties / sizeof empties[0]; i++) {
        struct config_caches cc;
        load_ok(empties[i], &cc);
        assert_embedded(&cc);
        config_caches_fini(&cc);
    }
}

Test(load, other_sections_only_gives_embedded_defaults)
{
    struct config_caches cc;

    /* Inner keys of the sections strata serve reads are not checked here,
     * and ${VAR}s in them are not expanded (an unset one is not an error). */
    unsetenv("STRATA_TEST_UNSET_TOKEN");
    load_ok("server:\n"
            "  listen: 127.0.0.1:9090\n"
            "  no_such_server_key: [1, 2, {a: b}]\n"
            "admin: { token: \"${STRATA_TEST_UNSET_TOKEN}\", whatever: 1 }\n"
            "http_cache:\n"
            "  routes:\n"
            "    - { path: /x, ttl: 1h }\n"
            "bus:\n",
            &cc);
    assert_embedded(&cc);
    config_caches_fini(&cc);
}

Test(load, named_caches_start_from_their_builtin_defaults)
{
    struct config_caches cc;

    load_ok("caches:\n"
            "  session: { max_items: 10 }\n"
            "  http: {}\n"
            "  products:\n"
            "  default:\n"
            "    ttl: 1m\n",
            &cc);
    cr_assert_eq(cc.n, 4, "only the caches in the file");
    cr_assert_str_eq(cc.v[0].name, "session");
    cr_assert_str_eq(cc.v[1].name, "http");
    cr_assert_str_eq(cc.v[2].name, "products");
    cr_assert_str_eq(cc.v[3].name, "default");
    cr_assert_eq(cc.v[0].line, 2);
    cr_assert_eq(cc.v[1].line, 3);
    cr_assert_eq(cc.v[2].line, 4);
    cr_assert_eq(cc.v[3].line, 5);

    cr_assert_eq(cc.v[0].ttl_ms, 2 * WEEK);
    cr_assert_eq(cc.v[0].max_memory, 64 * MB);
    cr_assert_eq(cc.v[0].max_items, 10);
    cr_assert_eq(cc.v[1].ttl_ms, 0);
    cr_assert_eq(cc.v[1].max_memory, 512 * MB);
    cr_assert_eq(cc.v[2].ttl_ms, 0);
    cr_assert_eq(cc.v[2].max_memory, 256 * MB);
    cr_assert_eq(cc.v[3].ttl_ms, MIN);
    cr_assert_eq(cc.v[3].max_memory, 256 * MB);
    /* Everything not written keeps the shared defaults. */
    cc.v[0].max_items = 0;
    for (size_t i = 0; i < cc.n; i++)
        assert_common_defaults(&cc.v[i]);
    config_caches_fini(&cc);
}

Test(load, every_key)
{
    struct config_caches cc;
    const struct config_cache *c;

    load_ok("caches:\n"
            "  shared:\n"
            "    backend: tiered\n"
            "    url: redis://user:pw@10.0.0.1:6380/3\n"
            "    ttl: 90s\n"
            "    max_memory: 1GiB\n"
            "    max_items: 100000\n"
            "    compress: lz4\n"
            "    compress_level: 9\n"
            "    compress_min_size: 512B\n"
            "    key_prefix: myapp\n"
            "    l1_ttl: 250ms\n"
            "    l1_max_memory: 8MB\n"
            "    connect_timeout: 1s\n"
            "    command_timeout: 50ms\n"
            "    loader_timeout: 2m\n",
            &cc);
    cr_assert_eq(cc.n, 1);
    c = &cc.v[0];
    cr_assert_str_eq(c->name, "shared");
    cr_assert_eq(c->line, 2);
    cr_assert_eq(c->backend, CONFIG_BACKEND_TIERED);
    cr_assert_str_eq(c->url, "redis://user:pw@10.0.0.1:6380/3");
    cr_assert_eq(c->ttl_ms, 90 * SEC);
    cr_assert_eq(c->max_memory, GB);
    cr_assert_eq(c->max_items, 100000);
    cr_assert_eq(c->compress, CONFIG_CODEC_LZ4);
    cr_assert_eq(c->compress_level, 9);
    cr_assert_eq(c->compress_min_size, 512);
    cr_assert_str_eq(c->key_prefix, "myapp");
    cr_assert_eq(c->l1_ttl_ms, 250);
    cr_assert_eq(c->l1_max_memory, 8 * MB);
    cr_assert_eq(c->connect_timeout_ms, SEC);
    cr_assert_eq(c->command_timeout_ms, 50);
    cr_assert_eq(c->loader_timeout_ms, 2 * MIN);
    config_caches_fini(&cc);
}

Test(load, ttl_never_and_zero)
{
    struct config_caches cc;

    load_ok(
        "caches:\n  a: { ttl: never }\n  b: { ttl: 0s }\n  session: { ttl: '1d' }\n",
        &cc);
    cr_assert_eq(find(&cc, "a")->ttl_ms, -1);
    cr_assert_eq(find(&cc, "b")->ttl_ms, 0);
    cr_assert_eq(find(&cc, "session")->ttl_ms, DAY);
    config_caches_fini(&cc);
}

Test(load, codecs_and_levels_in_range)
{
    struct config_caches cc;

    load_ok("caches:\n"
            "  z1: { compress: zstd }\n"
            "  z2: { compress: zstd, compress_level: 19 }\n"
            "  z3: { compress: zstd, compress_level: -5 }\n"
            "  z4: { compress: zstd, compress_level: 1 }\n"
            "  l1: { compress: lz4, compress_level: 0 }\n"
            "  l2: { compress: lz4, compress_level: 12 }\n"
            "  g1: { compress: zlib, compress_level: 1 }\n"
            "  g2: { compress: zlib, compress_level: 9 }\n"
            "  n1: { compress: none }\n"
            "  n2: { compress: none, compress_level: 50 }\n",
            &cc);
    cr_assert_eq(find(&cc, "z1")->compress, CONFIG_CODEC_ZSTD);
    cr_assert_eq(find(&cc, "z1")->compress_level, 0);
    cr_assert_eq(find(&cc, "z2")->compress_level, 19);
    cr_assert_eq(find(&cc, "z3")->compress_level, -5);
    cr_assert_eq(find(&cc, "z4")->compress_level, 1);
    cr_assert_eq(find(&cc, "l1")->compress, CONFIG_CODEC_LZ4);
    cr_assert_eq(find(&cc, "l2")->compress_level, 12);
    cr_assert_eq(find(&cc, "g1")->compress, CONFIG_CODEC_ZLIB);
    cr_assert_eq(find(&cc, "g2")->compress_level, 9);
    cr_assert_eq(find(&cc, "n1")->compress, CONFIG_CODEC_NONE);
    /* A level is ignored (kept, unchecked) while compression is off, so it
     * can be switched off and on without editing the level. */
    cr_assert_eq(find(&cc, "n2")->compress_level, 50);
    config_caches_fini(&cc);
}

Test(load, backends)
{
    struct config_caches cc;

    load_ok("caches:\n"
            "  m: { backend: memory }\n"
            "  r: { backend: redis, url: \"redis://127.0.0.1:6379/2\" }\n"
            "  s: { backend: redis, url: "
            "\"redis-sentinel://h1:26379,h2:26379/mymaster/1\" }\n"
            "  t: { url: 'redis://h:1/0', backend: tiered }\n",
            &cc);
    cr_assert_eq(find(&cc, "m")->backend, CONFIG_BACKEND_MEMORY);
    cr_assert_null(find(&cc, "m")->url);
    cr_assert_eq(find(&cc, "r")->backend, CONFIG_BACKEND_REDIS);
    cr_assert_str_eq(find(&cc, "r")->url, "redis://127.0.0.1:6379/2");
    cr_assert_str_eq(find(&cc, "s")->url,
                     "redis-sentinel://h1:26379,h2:26379/mymaster/1");
    cr_assert_eq(find(&cc, "t")->backend, CONFIG_BACKEND_TIERED);
    config_caches_fini(&cc);
}

Test(load, cache_names)
{
    struct config_caches cc;
    char yaml[256];
    const char *n64 =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678_.-";

    cr_assert_eq(strlen(n64), 64);
    snprintf(yaml, sizeof yaml, "caches:\n  %s: {}\n  a.b-c_D9: {}\n  '7': {}\n", n64);
    load_ok(yaml, &cc);
    cr_assert_eq(cc.n, 3);
    cr_assert_str_eq(cc.v[0].name, n64);
    cr_assert_str_eq(cc.v[1].name, "a.b-c_D9");
    cr_assert_str_eq(cc.v[2].name, "7");
    config_caches_fini(&cc);
}

Test(load, anchors_and_aliases)
{
    struct config_caches cc;

    load_ok("caches:\n"
            "  a: &base { ttl: 1m, max_memory: 1MB }\n"
            "  b: *base\n",
            &cc);
    cr_assert_eq(find(&cc, "a")->ttl_ms, MIN);
    cr_assert_eq(find(&cc, "b")->ttl_ms, MIN);
    cr_assert_eq(find(&cc, "b")->max_memory, MB);
    config_caches_fini(&cc);
}

Test(load, errmsg_may_be_null)
{
    struct config_caches cc;
    char *path = tmpyaml("caches: {}\n");

    cr_assert_eq(config_load_caches(path, &cc, NULL), -1);
    cr_assert_null(cc.v);
    unlink(path);
    free(path);
}

/* The YAML in DESIGN.md, "Configuration", with Redis URLs. */
Test(load, full_example)
{
    struct config_caches cc;
    const struct config_cache *c;

    unsetenv("STRATA_ADMIN_TOKEN");
    unsetenv("STRATA_USER_SECRET");
    setenv("STRATA_TEST_REDIS_HOST", "10.1.2.3", 1);
    load_ok(
        "server:   { listen: \"127.0.0.1:8080\", upstream: \"http://127.0.0.1:8000\", "
        "workers: auto }\n"
        "admin:    { listen: \"127.0.0.1:8081\", token: \"${STRATA_ADMIN_TOKEN}\" }\n"
        "caches:\n"
        "  default: { backend: memory, ttl: 5m, max_memory: 256MB }\n"
        "  session: { backend: redis, url: "
        "\"redis://${STRATA_TEST_REDIS_HOST}:6379/2\" }\n"
        "  static:  { backend: memory, ttl: 1h, compress: zstd }\n"
        "  shared:  { backend: tiered, url: "
        "\"redis-sentinel://h1:26379,h2:26379/mymaster/1\", l1_ttl: 5s }\n"
        "http_cache:                      # HTTP objects live in the implicit `http` "
        "cache\n"
        "  user_secret: \"${STRATA_USER_SECRET}\"\n"
        "  routes:\n"
        "    - { path: \"/api/config/\", ttl: 1h }\n"
        "    - { path: \"/api/products*\", ttl: 10m, vary_headers: [Accept-Language] "
        "}\n"
        "    - { path: \"/api/me*\", per_user: true, user_from: "
        "\"header:Authorization\" }\n"
        "    - { path: \"/static/*\", ttl: 30d, cache_control: \"public, "
        "max-age=2592000, "
        "immutable\" }\n"
        "    - { path: \"/admin/*\", cache: false }\n"
        "bus: { timeout: 5s }\n",
        &cc);
    cr_assert_eq(cc.n, 4);

    c = &cc.v[0];
    cr_assert_str_eq(c->name, "default");
    cr_assert_eq(c->line, 4);
    cr_assert_eq(c->backend, CONFIG_BACKEND_MEMORY);
    cr_assert_eq(c->ttl_ms, 5 * MIN);
    cr_assert_eq(c->max_memory, 256 * MB);
    assert_common_defaults(c);

    c = &cc.v[1];
    cr_assert_str_eq(c->name, "session");
    cr_assert_eq(c->line, 5);
    cr_assert_eq(c->backend, CONFIG_BACKEND_REDIS);
    cr_assert_str_eq(c->url, "redis://10.1.2.3:6379/2");
    cr_assert_eq(c->ttl_ms, 2 * WEEK);
    cr_assert_eq(c->max_memory, 64 * MB);

    c = &cc.v[2];
    cr_assert_str_eq(c->name, "static");
    cr_assert_eq(c->line, 6);
    cr_assert_eq(c->ttl_ms, HOUR);
    cr_assert_eq(c->max_memory, 256 * MB);
    cr_assert_eq(c->compress, CONFIG_CODEC_ZSTD);
    cr_assert_eq(c->compress_level, 0);
    cr_assert_eq(c->compress_min_size, KB);

    c = &cc.v[3];
    cr_assert_str_eq(c->name, "shared");
    cr_assert_eq(c->line, 7);
    cr_assert_eq(c->backend, CONFIG_BACKEND_TIERED);
    cr_assert_str_eq(c->url, "redis-sentinel://h1:26379,h2:26379/mymaster/1");
    cr_assert_eq(c->ttl_ms, 0);
    cr_assert_eq(c->max_memory, 256 * MB);
    cr_assert_eq(c->l1_ttl_ms, 5 * SEC);
    cr_assert_eq(c->l1_max_memory, 64 * MB);
    cr_assert_str_eq(c->key_prefix, "strata");
    config_caches_fini(&cc);
}

/* ---- ${ENV} -------------------------------------------------------------- */

Test(env, expansion)
{
    struct config_caches cc;

    setenv("STRATA_T_HOST", "cache.internal", 1);
    setenv("STRATA_T_DB", "4", 1);
    setenv("STRATA_T_TTL", "10m", 1);
    setenv("STRATA_T_BACKEND", "redis", 1);
    setenv("STRATA_T_EMPTY", "", 1);
    load_ok("caches:\n"
            "  a:\n"
            "    backend: ${STRATA_T_BACKEND}\n"
            "    url: \"redis://${STRATA_T_HOST}:6379/${STRATA_T_DB}\"\n"
            "    ttl: ${STRATA_T_TTL}\n"
            "    key_prefix: \"p$${literal}q${STRATA_T_EMPTY}$x$\"\n",
            &cc);
    cr_assert_eq(cc.v[0].backend, CONFIG_BACKEND_REDIS);
    cr_assert_str_eq(cc.v[0].url, "redis://cache.internal:6379/4");
    cr_assert_eq(cc.v[0].ttl_ms, 10 * MIN);
    cr_assert_str_eq(cc.v[0].key_prefix, "p${literal}q$x$");
    config_caches_fini(&cc);
}

Test(env, unset_variable)
{
    unsetenv("STRATA_T_UNSET");
    error_at("caches:\n"
             "  a:\n"
             "    backend: redis\n"
             "    url: \"redis://${STRATA_T_UNSET}:6379/0\"\n",
             4, "environment variable STRATA_T_UNSET is not set");
}

Test(env, unset_variable_exact_message)
{
    char *path = tmpyaml("caches:\n  a:\n    ttl: ${STRATA_T_UNSET}\n"), *err = NULL,
         *want;
    struct config_caches cc;

    unsetenv("STRATA_T_UNSET");
    cr_assert_eq(config_load_caches(path, &cc, &err), -1);
    cr_assert(asprintf(&want, "%s:3: environment variable STRATA_T_UNSET is not set",
                       path) > 0);
    cr_assert_str_eq(err, want);
    unlink(path);
    free(want);
    free(err);
    free(path);
}

Test(env, unterminated)
{
    error_at("caches:\n  a:\n    ttl: \"${STRATA_T_TTL\"\n", 3, "unterminated ${");
    error_at("caches:\n  a:\n    key_prefix: \"x${\"\n", 3, "unterminated ${");
}

Test(env, bad_name)
{
    error_at("caches:\n  a:\n    key_prefix: \"${}\"\n", 3,
             "bad environment variable name");
    error_at("caches:\n  a:\n    key_prefix: \"${1X}\"\n", 3,
             "bad environment variable name");
    error_at("caches:\n  a:\n    key_prefix: \"${A-B}\"\n", 3, "'${A-B}'");
}

Test(env, empty_value_is_checked_after_expansion)
{
    setenv("STRATA_T_EMPTY", "", 1);
    error_at("caches:\n  a:\n    ttl: \"${STRATA_T_EMPTY}\"\n", 3, "bad duration");
    error_at("caches:\n  a:\n    backend: redis\n    url: \"${STRATA_T_EMPTY}\"\n", 4,
             "caches.a.url: must not be empty");
}

/* ---- errors -------------------------------------------------------------- */

Test(errors, cannot_open)
{
    char *err = NULL;
    struct config_caches cc;

    cr_assert_eq(config_load_caches("/nonexistent/strata.yaml", &cc, &err), -1);
    cr_assert_str_eq(
        err, "/nonexistent/strata.yaml: cannot open: No such file or directory");
    cr_assert_null(cc.v);
    free(err);

    cr_assert_eq(config_load_caches("/tmp", &cc, &err), -1);
    cr_assert_str_eq(err, "/tmp: cannot open: Is a directory");
    free(err);
}

Test(errors, yaml_syntax)
{
    error_at("caches:\n  default:\n    ttl: 5m\n    a: b: c\n", 4,
             "YAML syntax error: mapping values are not allowed");
    error_at("caches:\n  default: {ttl: 5m\n\n", 4, "while parsing a flow mapping");
    error_at("caches:\n\tdefault: {}\n", 2, "YAML syntax error");
    error_at("caches:\n  a: *nope\n", 2, "undefined alias");
    error_at("caches:\n  a: {}\n---\ncaches: {b: {}}\n", 3, "second YAML document");
}

Test(errors, invalid_utf8)
{
    error_at("caches:\n  a: {}\n  b: \xff\n", 3, "invalid YAML input");
}

Test(errors, nul_byte)
{
    error_at("caches:\n  a:\n    key_prefix: \"x\\0y\"\n", 3, "NUL byte");
}

Test(errors, unknown_keys)
{
    error_at("caches:\n  default:\n    ttl: 5m\n    tll: 5m\n", 4,
             "caches.default: unknown key 'tll' (known keys: backend, url, ttl,");
    error_at("server: {}\ncachez:\n  a: {}\n", 2,
             "unknown section 'cachez' (known sections: server, admin, caches, "
             "http_cache, bus)");
    error_at("caches:\n  a: {}\nlogging: {level: info}\n", 3,
             "unknown section 'logging'");
}

Test(errors, wrong_types)
{
    error_at("caches:\n  a:\n    ttl: {x: 1}\n", 3,
             "caches.a.ttl: expected a duration, got a mapping");
    error_at("caches:\n  a:\n    backend:\n      - redis\n", 4,
             "caches.a.backend: expected a backend, got a list");
    error_at("caches:\n  a:\n    ttl:\n", 3,
             "caches.a.ttl: expected a duration, got no value");
    error_at("caches:\n  a: memory\n", 2,
             "caches.a: expected a mapping of settings, got a string");
    error_at("caches:\n  - a\n  - b\n", 2,
             "caches: expected a mapping of cache names, got a list");
    error_at("caches: default\n", 1, "caches: expected a mapping of cache names");
    error_at("server: 127.0.0.1:8080\n", 1, "server: expected a mapping, got a string");
    error_at("\nadmin: [a]\n", 2, "admin: expected a mapping, got a list");
    error_at("http_cache: x\n", 1, "http_cache: expected a mapping");
    error_at("caches: {a: {}}\nbus: 5s\n", 2, "bus: expected a mapping");
    error_at("- caches\n", 1, "the file must be a mapping of sections");
    error_at("hello\n", 1, "the file must be a mapping of sections");
    error_at("caches:\n  ? [a, b]\n  : {}\n", 2,
             "caches: a key must be a name, not a list");
    error_at("caches:\n  a:\n    ? {b: 1}\n    : 5m\n", 3, "a key must be a name");
}

Test(errors, bad_durations)
{
    error_at("caches:\n  a:\n    ttl: 300\n", 3,
             "caches.a.ttl: bad duration '300': a bare number needs a unit");
    error_at("caches:\n  a:\n    ttl: 5x\n", 3, "bad duration '5x': unknown unit");
    error_at("caches:\n  a:\n    ttl: 9223372036854775807s\n", 3, "out of range");
    error_at("caches:\n  a:\n    l1_ttl: 0s\n", 3,
             "caches.a.l1_ttl: must be greater than 0");
    error_at("caches:\n  a:\n    connect_timeout: never\n", 3,
             "caches.a.connect_timeout: never is not allowed here");
    error_at("caches:\n  a:\n    command_timeout: 0ms\n", 3, "must be greater than 0");
    error_at("caches:\n  a:\n    loader_timeout: 30\n", 3, "bare number");
}

Test(errors, bad_sizes)
{
    error_at("caches:\n  a:\n    max_memory: 1024\n", 3,
             "caches.a.max_memory: bad size '1024': a bare number needs a unit");
    error_at("caches:\n  a:\n    max_memory: 12XB\n", 3,
             "bad size '12XB': unknown unit");
    error_at("caches:\n  a:\n    compress_min_size: 1k\n", 3, "bad size");
    error_at("caches:\n  a:\n    max_memory: 99999999TB\n", 3, "out of range");
}

Test(errors, max_memory_zero)
{
    error_at("caches:\n  a:\n    max_memory: 0MB\n", 3,
             "caches.a.max_memory: must be greater than 0");
    error_at("caches:\n  a:\n    l1_max_memory: 0B\n", 3,
             "caches.a.l1_max_memory: must be greater than 0");
}

Test(errors, max_items)
{
    error_at("caches:\n  a:\n    max_items: -1\n", 3, "bad count '-1'");
    error_at("caches:\n  a:\n    max_items: 10k\n", 3, "bad count '10k'");
    error_at("caches:\n  a:\n    max_items: 18446744073709551616\n", 3, "out of range");
}

Test(errors, bad_backend_and_codec)
{
    error_at("caches:\n  a:\n    backend: memcached\n", 3,
             "caches.a.backend: bad backend 'memcached': use memory, redis or tiered");
    error_at("caches:\n  a:\n    backend: Memory\n", 3, "bad backend 'Memory'");
    error_at("caches:\n  a:\n    compress: gzip\n", 3,
             "caches.a.compress: bad codec 'gzip': use none, zstd, lz4 or zlib");
}

Test(errors, compress_level_out_of_range)
{
    error_at("caches:\n  a:\n    compress: zstd\n    compress_level: 20\n", 4,
             "caches.a.compress_level: 20 is out of range for zstd");
    error_at("caches:\n  a:\n    compress: zstd\n    compress_level: -6\n", 4,
             "-6 is out of range for zstd");
    /* Order does not matter: the level is checked against the codec after
     * the whole cache is read, at the level's line. */
    error_at("caches:\n  a:\n    compress_level: 13\n    compress: lz4\n", 3,
             "13 is out of range for lz4");
    error_at("caches:\n  a:\n    compress: lz4\n    compress_level: -1\n", 4,
             "-1 is out of range for lz4");
    error_at("caches:\n  a:\n    compress: zlib\n    compress_level: 10\n", 4,
             "10 is out of range for zlib");
    error_at("caches:\n  a:\n    compress: zlib\n    compress_level: -1\n", 4,
             "-1 is out of range for zlib");
    error_at("caches:\n  a:\n    compress: zstd\n    compress_level: high\n", 4,
             "bad level 'high'");
    error_at("caches:\n  a:\n    compress: zstd\n    compress_level: 99999999999\n", 4,
             "out of range");
}

Test(errors, backend_needs_url)
{
    error_at("caches:\n  a:\n    ttl: 5m\n    backend: redis\n", 4,
             "caches.a: backend redis needs a url");
    error_at("caches:\n  a: {}\n  b:\n    backend: tiered\n", 4,
             "caches.b: backend tiered needs a url");
}

Test(errors, memory_has_no_url)
{
    error_at("caches:\n  a:\n    backend: memory\n    url: redis://h:1/0\n", 4,
             "caches.a.url: a memory cache has no url");
    error_at("caches:\n  a:\n    url: redis://h:1/0\n", 3, "a memory cache has no url");
}

Test(errors, bad_url_scheme)
{
    error_at("caches:\n  a:\n    backend: redis\n    url: http://h:1/0\n", 4,
             "caches.a.url: must start with redis:// or redis-sentinel://");
}

Test(errors, empty_key_prefix)
{
    error_at("caches:\n  a:\n    key_prefix: ''\n", 3,
             "caches.a.key_prefix: must not be empty");
}

Test(errors, duplicate_keys)
{
    error_at("caches:\n  a:\n    ttl: 5m\n    max_items: 1\n    ttl: 10m\n", 5,
             "duplicate key 'ttl' (first at line 3)");
    error_at("caches:\n  a: {}\nserver: {}\ncaches:\n  b: {}\n", 4,
             "duplicate section 'caches' (first at line 1)");
    /* Also in sections this loader does not read, at any depth. */
    error_at("server:\n  listen: a\n  listen: b\ncaches: {a: {}}\n", 3,
             "duplicate key 'listen' (first at line 2)");
    error_at("http_cache:\n  routes:\n    - { path: /a, ttl: 1h }\n"
             "    - { path: /b,\n        path: /c }\n",
             5, "duplicate key 'path' (first at line 4)");
    /* The first repeat in file order is the one reported. */
    error_at("caches:\n  a:\n    ttl: 1m\n    url: x\n    url: y\n    ttl: 2m\n", 5,
             "duplicate key 'url'");
    /* Quoting does not make a key different. */
    error_at("caches:\n  a:\n    ttl: 1m\n    'ttl': 2m\n", 4, "duplicate key 'ttl'");
}

Test(errors, duplicate_cache_names)
{
    error_at("caches:\n  default: {}\n  session: {}\n  default: { ttl: 1m }\n", 4,
             "duplicate cache 'default' (first at line 2)");
}

Test(errors, cache_names)
{
    char yaml[256];
    const char *n65 =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345678_.-x";

    error_at("caches:\n  '': {}\n", 2, "caches: empty cache name");
    error_at("caches:\n  a: {}\n  ?\n  : {}\n", 3, "empty cache name");
    error_at("caches:\n  a b: {}\n", 2, "caches: bad cache name 'a b'");
    error_at("caches:\n  a/b: {}\n", 2, "bad cache name 'a/b'");
    error_at("caches:\n  \"caf\xc3\xa9\": {}\n", 2, "bad cache name");
    error_at("caches:\n  a:b: {}\n", 2, "bad cache name 'a:b'");
    cr_assert_eq(strlen(n65), 65);
    snprintf(yaml, sizeof yaml, "caches:\n  ok: {}\n  %s: {}\n", n65);
    error_at(yaml, 3, "bad cache name");
}

Test(errors, no_caches_defined)
{
    error_at("server: {}\ncaches: {}\n", 2, "no caches defined");
    error_at("caches:\nserver: {}\n", 1, "no caches defined");
    error_at("\n\ncaches:\n", 3, "no caches defined");
}

Test(errors, first_error_wins_and_nothing_leaks)
{
    /* Several caches allocated before the failing one: all freed (ASan). */
    error_at("caches:\n"
             "  a: { backend: redis, url: 'redis://h:1/0', key_prefix: x }\n"
             "  b: { backend: tiered, url: 'redis://h:1/1' }\n"
             "  c: { ttl: 5m, compress: zstd }\n"
             "  d: { ttl: 5 }\n"
             "  e: { ttl: bad }\n",
             5, "caches.d.ttl: bad duration '5'");
}

/* ---- docs match the tables ------------------------------------------------ */

static char *docs;

static void read_docs(void)
{
    /* __FILE__ is tests/unit/test_config.c under the source root, absolute in
     * CMake builds, relative when compiled by hand from the root. */
    const char *file = __FILE__, *suffix = "tests/unit/test_config.c";
    size_t flen = strlen(file), slen = strlen(suffix), n;
    char *path;
    FILE *f;

    cr_assert(flen >= slen && strcmp(file + flen - slen, suffix) == 0,
              "unexpected __FILE__ %s", file);
    cr_assert(asprintf(&path, "%.*sdocs/configuration.md", (int)(flen - slen), file) >
              0);
    f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    docs = calloc(1, 1 << 20);
    n = fread(docs, 1, (1 << 20) - 1, f);
    docs[n] = '\0';
    fclose(f);
    free(path);
}

/* The line of the docs that starts with `start`, as a malloc'd string. */
static char *docline(const char *start)
{
    for (const char *p = docs; p && *p;
         p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, start, strlen(start)) == 0) return strndup(p, strcspn(p, "\n"));
    cr_assert_fail("docs/configuration.md has no line starting with \"%s\"", start);
    return NULL;
}

static void doc_has(const char *start, const char *want)
{
    char *line = docline(start);

    cr_assert(strstr(line, want), "docs/configuration.md: row \"%s\" lacks \"%s\"",
              line, want);
    free(line);
}

Test(docs, every_cache_key_with_its_default)
{
    read_docs();
#define DOC_KEY(n, t, f, d, m, desc)                                                   \
    do {                                                                               \
        const char *def = d;                                                           \
        char want[64];                                                                 \
        snprintf(want, sizeof want, def ? "| `%s`" : "%s| — |", def ? def : "");       \
        doc_has("| `" #n "` |", want);                                                 \
    } while (0);
    CONFIG_CACHE_KEYS(DOC_KEY)
#undef DOC_KEY
    free(docs);
}

/* Rows "| `SECTION.KEY` | type | `DEFAULT` | meaning |"; "| — |" when unset. */
static void doc_key(const char *section, const char *key, const char *def)
{
    char start[128], want[160];

    snprintf(start, sizeof start, "| `%s%s` |", section, key);
    snprintf(want, sizeof want, def ? "| `%s`" : "%s| — |", def ? def : "");
    doc_has(start, want);
}

Test(docs, every_serve_key_with_its_default)
{
    read_docs();
#define DOC_SERVER(n, t, f, d, m, desc) doc_key("server.", n, d);
    CONFIG_SERVER_KEYS(DOC_SERVER)
#undef DOC_SERVER
#define DOC_ADMIN(n, t, f, d, m, desc) doc_key("admin.", n, d);
    CONFIG_ADMIN_KEYS(DOC_ADMIN)
#undef DOC_ADMIN
#define DOC_HTTP(n, t, f, d, m, desc) doc_key("http_cache.", n, d);
    CONFIG_HTTP_KEYS(DOC_HTTP)
#undef DOC_HTTP
#define DOC_ROUTE(n, t, f, d, m, desc) doc_key("http_cache.routes[].", n, d);
    CONFIG_ROUTE_KEYS(DOC_ROUTE)
#undef DOC_ROUTE
#define DOC_BUS(n, t, f, d, m, desc) doc_key("bus.", n, d);
    CONFIG_BUS_KEYS(DOC_BUS)
#undef DOC_BUS
    free(docs);
}

Test(docs, every_builtin_cache_section_backend_and_codec)
{
    read_docs();
#define DOC_BUILTIN(n, ttl, mem, emb, desc)                                            \
    doc_has("| `" n "` |", "| `" ttl "` | `" mem "` |");                               \
    doc_has("| `" n "` |", emb ? "| yes |" : "| no |");
    CONFIG_BUILTIN_CACHES(DOC_BUILTIN)
#undef DOC_BUILTIN
#define DOC_SECTION(n, desc) doc_has("## `" #n ":`", "`" #n ":`");
    CONFIG_SECTIONS(DOC_SECTION)
#undef DOC_SECTION
#define DOC_BACKEND(e, n, desc) doc_has("| `" n "` |", desc);
    CONFIG_BACKENDS(DOC_BACKEND)
#undef DOC_BACKEND
#define DOC_CODEC(e, n, lo, hi, lv) doc_has("| `" n "` |", lv);
    CONFIG_CODECS(DOC_CODEC)
#undef DOC_CODEC
    free(docs);
}
