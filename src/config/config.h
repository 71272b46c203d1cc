/*
 * config.h -- loading and validating strata's YAML configuration.
 *
 * The configuration is described by tables (config.c): one row per key with
 * its name, type, default, bounds and description. The parser, the validator
 * and docs/configuration.md come from those rows. This header is what the rest
 * of strata may use: the parsed `caches:` section and the value parsers that
 * the CLI and the admin API share (durations, sizes).
 *
 * Errors are strings "FILE:LINE: what is wrong" (malloc'd, the caller frees).
 * Nothing here keeps global state; every call is thread-safe.
 */
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

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

#endif /* STRATA_CONFIG_H */
