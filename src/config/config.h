/*
 * config.h -- loading and validating strata's YAML configuration.
 *
 * The configuration is described by tables (config.c): one row per key with
 * its name, type, default, bounds and description. The parser, the validator
 * and docs/configuration.md come from those rows (src/config/keys.h). This
 * header is what the rest of strata may use: the parsed `caches:` section
 * (strata_open), the `admin:` section (the CLI's admin commands), the whole
 * file (strata serve, check-config), and the value parsers that the CLI and
 * the admin API share (durations, sizes, the admin token).
 *
 * Errors are strings "FILE:LINE: what is wrong" (malloc'd, the caller frees).
 * Nothing here keeps global state; every call is thread-safe.
 */
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum config_backend {
    CONFIG_BACKEND_MEMORY,
    CONFIG_BACKEND_REDIS,
    CONFIG_BACKEND_TIERED
};
enum config_codec {
    CONFIG_CODEC_NONE,
    CONFIG_CODEC_ZSTD,
    CONFIG_CODEC_LZ4,
    CONFIG_CODEC_ZLIB
};

/* One named cache. Durations in ms; sizes in bytes. */
struct config_cache {
    char *name;
    unsigned line; /* line of the cache's name in the file; 0 = built in */
    enum config_backend backend; /* default memory */
    char *url;                   /* redis/tiered; NULL for memory */
    int64_t ttl_ms;      /* default TTL: > 0 that, 0 none (no expiry), < 0 never */
    uint64_t max_memory; /* bytes, > 0 */
    uint64_t max_items;  /* 0 = unbounded */
    enum config_codec compress; /* default none */
    int compress_level;         /* 0 = the codec's default */
    uint64_t compress_min_size; /* default 1KB */
    char *key_prefix;           /* default "strata" */
    int64_t l1_ttl_ms;          /* default 5s */
    uint64_t l1_max_memory;     /* default 64MB */
    int64_t connect_timeout_ms; /* default 200ms */
    int64_t command_timeout_ms; /* default 100ms */
    int64_t loader_timeout_ms;  /* default 30s */
};

struct config_caches {
    struct config_cache *v;
    size_t n;
    char *path; /* the file read, NULL for built-in defaults */
};

/* Fill `out` with the embedded defaults: default (ttl 5m, 256MB), session
 * (ttl 2w, 64MB), static (ttl 1h, 256MB). Returns 0 or -1 (out of memory). */
int config_caches_defaults(struct config_caches *out);

/* Set `cc` to the defaults for a cache called `name`: the built-in values of
 * default/session/static/http when the name is one of them, else no TTL and
 * 256MB. Strings are malloc'd. Returns 0 or -1 (out of memory). */
int config_cache_init(struct config_cache *cc, const char *name);

/* Read the `caches:` section of the YAML file at `path` (other known sections
 * are parsed for syntax but otherwise ignored; unknown top-level keys are
 * errors). A file without `caches:` gives the embedded defaults. A cache named
 * in the file starts from config_cache_init(name) and the file's keys override
 * it. `${ENV}` is expanded in every scalar; an unset variable is an error.
 * Returns 0, or -1 with *errmsg = "PATH:LINE: message" (malloc'd). */
int config_load_caches(const char *path, struct config_caches *out, char **errmsg);

void config_caches_fini(struct config_caches *cc);

/* Value parsers shared with the CLI and admin API. Return 0, or -1 with a
 * static message in *why.
 *   durations: "300ms" "5s" "10m" "1h" "2d" "2w" or "never" (-> -1);
 *              a bare number is an error; "0s" is 0.
 *   sizes:     "512B" "512KB" "256MB" "2GB" "1TB" (1024-based; KiB MiB GiB
 *              TiB also accepted; case-insensitive units); a bare number is
 *              an error. */
int config_parse_duration(const char *s, int64_t *ms, const char **why);
int config_parse_size(const char *s, uint64_t *bytes, const char **why);

/* A bearer token (admin.token, and what the CLI sends as one): 1 to
 * CONFIG_BEARER_MAX bytes of printable ASCII without spaces, since it goes
 * into an `Authorization: Bearer` header as is. The message never quotes
 * the token. */
#define CONFIG_BEARER_MAX 128
int config_check_bearer(const char *s, const char **why);

/*
 * The whole file, as `strata serve` reads it (DESIGN "Configuration"). Every
 * duration is in ms, every size in bytes. Lists are arrays of malloc'd
 * strings with a count. `line` fields give the line in the file (0 = built
 * in) so later checks can still say FILE:LINE.
 */
enum config_user_from {
    CONFIG_USER_NONE,
    CONFIG_USER_HEADER,
    CONFIG_USER_COOKIE,
    CONFIG_USER_JWT
};

/* A route duration the file does not set (ttl_ms, swr_ms, sie_ms). */
#define CONFIG_MS_UNSET INT64_C(-2)

struct config_strings {
    char **v;
    size_t n;
};

struct config_route {
    char *name; /* default: the path glob */
    unsigned line;
    char *path;     /* glob on the normalised path; default "*" */
    int64_t ttl_ms; /* -2: not set (fall back to http_cache.default_ttl) */
    struct config_strings vary_headers, vary_cookies;
    bool per_user;
    enum config_user_from user_from; /* required with per_user */
    char *user_from_name;            /* header name, cookie name or JWT claim */
    char *jwt_key; /* user_from jwt: an HS256 secret, or the *contents* of
                      the PEM file it named (RS256/ES256) */
    bool jwt_key_is_pem;
    bool cache;             /* default true */
    char *cache_control;    /* written to the client; NULL: the origin's */
    int64_t swr_ms, sie_ms; /* -2: not set (the origin's Cache-Control decides) */
    struct config_strings tags;
};

/* An address range for purge.allow: "127.0.0.1/32", "::1/128", or a bare
 * address (full-length prefix). */
struct config_cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    unsigned prefix;
};

struct config_server {
    char *listen;   /* "127.0.0.1:8080"; "[::1]:8080" for IPv6 */
    char *upstream; /* http://host:port[/]; NULL: not set (serve refuses) */
    struct config_strings hosts;
    unsigned workers; /* 0 = auto (one per core) */
    uint64_t max_connections;
    int64_t header_timeout_ms, idle_timeout_ms;
    uint64_t max_header_size, max_headers;
    int64_t upstream_connect_timeout_ms, upstream_timeout_ms;
    uint64_t upstream_keepalive;
    struct config_strings strip_request_headers;
    char *access_log; /* "off", "stdout" or a path */
    char *log_level;  /* debug info warn error */
};

struct config_admin {
    char *listen;
    char *token; /* NULL: generated at start; else see config_check_bearer */
    char *token_file;
};

struct config_http {
    char *cache; /* default "http" */
    uint64_t max_object_size, max_variants;
    int64_t default_ttl_ms;
    bool heuristic;
    int64_t keep_ms;
    struct config_strings tag_headers;
    bool strip_tag_headers;
    char *user_secret;
    struct config_cidr *purge_allow;
    size_t n_purge_allow;
    char *purge_token;
    struct config_route *routes;
    size_t n_routes;
};

struct config_bus {
    int64_t timeout_ms;
};

struct config {
    char *path; /* NULL for built-in defaults */
    struct config_server server;
    struct config_admin admin;
    struct config_caches caches; /* includes the http cache (http_cache.cache)
                                    with its built-in defaults when the file does
                                    not name it */
    struct config_http http;
    struct config_bus bus;
};

/* Read the whole file (NULL: every default). Checks across sections too:
 * per_user routes need user_from and http_cache.user_secret, jwt needs
 * jwt_key, http_cache.cache must name a cache, server.upstream must be
 * http://host:port. Returns 0, or -1 with *errmsg = "PATH:LINE: message".
 * `${ENV}` is expanded in every value of every section. A route's jwt_key
 * that names an existing file is read here: it must hold a PEM key (the
 * contents replace the path, jwt_key_is_pem is set). On failure `out` is
 * zeroed; errmsg may be NULL. */
int config_load(const char *path, struct config *out, char **errmsg);
/* Free what config_load filled and zero it; safe on a zeroed struct. */
void config_fini(struct config *c);

/* Read the `admin:` section of the file at `path` (the CLI's admin commands
 * need nothing else): the admin defaults, overridden by the file's keys,
 * checked as config_load checks them. The other known sections are parsed
 * for syntax and must be mappings, but are otherwise ignored: their ${ENV}
 * are not expanded, so an unset variable there (http_cache.user_secret, say)
 * is no error here, while one in `admin:` is. Unknown top-level keys and
 * duplicate keys anywhere are errors. Returns 0, or -1 with *errmsg =
 * "PATH:LINE: message" (errmsg may be NULL); on failure `out` is zeroed. */
int config_load_admin(const char *path, struct config_admin *out, char **errmsg);
/* Free what config_load_admin filled and zero it; safe on a zeroed struct. */
void config_admin_fini(struct config_admin *a);

/* The cache called `name` in `cc`, or NULL. */
const struct config_cache *config_cache_find(const struct config_caches *cc,
                                             const char *name);

#endif /* STRATA_CONFIG_H */
