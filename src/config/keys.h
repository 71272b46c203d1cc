/*
 * keys.h -- the tables behind strata's configuration: the top-level sections,
 * the keys of one cache, the built-in caches, the backends and the codecs.
 *
 * Every table is an X-macro. config.c expands them into the parser's rows and
 * error messages; tests/unit/test_config.c expands them to check that
 * docs/configuration.md documents every key with the default the code uses.
 * So a change here is a change of the documented configuration: update the
 * docs in the same change (the test says so if you forget).
 *
 * Only macros live here, so any file may include it.
 */
#ifndef STRATA_CONFIG_KEYS_H
#define STRATA_CONFIG_KEYS_H

/* Top-level sections: X(name, description). config_load_caches() reads only
 * `caches`; the others must be mappings and are read by `strata serve`. */
#define CONFIG_SECTIONS(X)                                                             \
    X(server, "the HTTP proxy: listener, origin, limits (used by strata serve)")       \
    X(admin, "the admin API listener and its token (used by strata serve)")            \
    X(caches, "the named caches")                                                      \
    X(http_cache, "HTTP caching policy and routes (used by strata serve)")             \
    X(bus, "the invalidation bus between nodes (used by strata serve)")

/*
 * Keys of one cache: X(name, type, field, default, min, description).
 *
 *   type     how the value is read: DURATION (config_parse_duration), SIZE
 *            (config_parse_size), COUNT (a whole number >= 0), LEVEL (an
 *            integer, bounded per codec by CONFIG_CODECS), STRING, URL (a
 *            string starting redis:// or redis-sentinel://), BACKEND, CODEC.
 *   field    the member of struct config_cache it fills (its C type is
 *            checked at compile time against the type).
 *   default  the text the type's parser reads into every new cache (NULL:
 *            unset). ttl and max_memory are then overridden for the built-in
 *            caches (CONFIG_BUILTIN_CACHES).
 *   min      the lowest accepted value: durations -1 (admits `never` and 0)
 *            or 1 (> 0); sizes and counts 0 or 1; strings the minimum length.
 */
#define CONFIG_CACHE_KEYS(X)                                                           \
    X(backend, BACKEND, backend, "memory", 0,                                          \
      "where entries live: memory (in process), redis, or tiered (an L1 in "           \
      "memory in front of redis)")                                                     \
    X(url, URL, url, NULL, 1,                                                          \
      "the Redis server: redis://[user:pass@]host:port/db or "                         \
      "redis-sentinel://h1:port,h2:port/master/db; required for redis and "            \
      "tiered, an error for memory")                                                   \
    X(ttl, DURATION, ttl_ms, "0s", -1,                                                 \
      "default TTL of entries set without one; 0s: no default (entries do not "        \
      "expire); never: entries never expire")                                          \
    X(max_memory, SIZE, max_memory, "256MB", 1,                                        \
      "memory bound of the cache: keys, values and metadata; must be > 0")             \
    X(max_items, COUNT, max_items, "0", 0,                                             \
      "bound on the number of entries; 0: unbounded")                                  \
    X(compress, CODEC, compress, "none", 0,                                            \
      "value compression: none, zstd, lz4, zlib")                                      \
    X(compress_level, LEVEL, compress_level, "0", 0,                                   \
      "codec level; 0: the codec's default; ignored with compress: none")              \
    X(compress_min_size, SIZE, compress_min_size, "1KB", 0,                            \
      "values smaller than this are stored uncompressed")                              \
    X(key_prefix, STRING, key_prefix, "strata", 1,                                     \
      "Redis key namespace: keys are PREFIX:CACHE:k:KEY")                              \
    X(l1_ttl, DURATION, l1_ttl_ms, "5s", 1,                                            \
      "tiered: how long an entry stays in the in-memory L1")                           \
    X(l1_max_memory, SIZE, l1_max_memory, "64MB", 1,                                   \
      "tiered: memory bound of the L1; must be > 0")                                   \
    X(connect_timeout, DURATION, connect_timeout_ms, "200ms", 1,                       \
      "redis and tiered: connecting to Redis")                                         \
    X(command_timeout, DURATION, command_timeout_ms, "100ms", 1,                       \
      "redis and tiered: one Redis command")                                           \
    X(loader_timeout, DURATION, loader_timeout_ms, "30s", 1,                           \
      "get_or_set: how long callers wait for another caller's loader")

/* Caches with their own defaults: X(name, ttl, max_memory, embedded, description).
 * `embedded` ones make up the configuration of a file without `caches:`. */
#define CONFIG_BUILTIN_CACHES(X)                                                       \
    X("default", "5m", "256MB", 1, "general purpose")                                  \
    X("session", "2w", "64MB", 1, "sessions (2 weeks is Django's session age)")        \
    X("static", "1h", "256MB", 1, "rendered fragments, computed assets")               \
    X("http", "0s", "512MB", 0,                                                        \
      "HTTP objects, when http_cache.cache is not set (created by strata serve)")

/* Backends: X(ENUM suffix, name, description). */
#define CONFIG_BACKENDS(X)                                                             \
    X(MEMORY, "memory", "the in-process engine")                                       \
    X(REDIS, "redis", "Redis (or Redis Sentinel) only")                                \
    X(TIERED, "tiered", "an in-memory L1 in front of Redis")

/* Codecs: X(ENUM suffix, name, lowest level, highest level, levels described).
 * Level 0 always means the codec's default and is inside every range. */
#define CONFIG_CODECS(X)                                                               \
    X(NONE, "none", 0, 0, "no compression")                                            \
    X(ZSTD, "zstd", -5, 19, "1..19, or -5..-1 for the fast levels; 0 = default (3)")   \
    X(LZ4, "lz4", 0, 12,                                                               \
      "0..12: 0 = fast (default), 1..2 fast, 3..12 high compression")                  \
    X(ZLIB, "zlib", 0, 9, "1..9; 0 = default (6)")

#endif /* STRATA_CONFIG_KEYS_H */
