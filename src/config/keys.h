/*
 * keys.h -- the tables behind strata's configuration: the top-level sections,
 * the keys of one cache, the keys of server, admin, http_cache (and of one
 * route) and bus, the built-in caches, the backends and the codecs.
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
 * `caches`, config_load_admin() only `admin`; the others must be mappings
 * there. config_load() (strata serve, check-config) reads them all. */
#define CONFIG_SECTIONS(X)                                                             \
    X(server, "the HTTP proxy: listener, origin, limits (used by strata serve)")       \
    X(admin, "the admin API listener and its token (used by strata serve and the "     \
             "CLI's admin commands)")                                                  \
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

/*
 * Keys of the sections `strata serve` reads (config_load): X(name, type,
 * field, default, min, description) as for CONFIG_CACHE_KEYS, but `name` is a
 * string, so that "purge.allow" can be the key `allow` inside the mapping
 * `purge`. `field` is a member of struct config_server, config_admin,
 * config_http, config_route or config_bus. Types beyond the cache ones:
 *
 *   TEXT      a string without control characters; min: the minimum length
 *   TOKEN     a bearer token: 1..128 bytes of printable ASCII without spaces
 *             (config_check_bearer); min is not used
 *   BOOL      true or false, nothing else
 *   LISTEN    HOST:PORT or [IPV6]:PORT (port 0: any free port)
 *   UPSTREAM  http://HOST:PORT with an optional trailing "/"
 *   WORKERS   auto (0) or 1..1024
 *   LOGLEVEL  debug, info, warn or error
 *   CACHE     a cache name (checked against caches: after the whole file)
 *   GLOB      a glob (DESIGN "Globs") on the normalised path: starts with / or *
 *   HVALUE    a header value: printable ASCII
 *   USERFROM  header:NAME, cookie:NAME or jwt:CLAIM
 *   STRINGS, HEADERS, COOKIES, TAGS, CIDRS
 *             YAML lists of those; the default is written "[a, b]"
 *   ROUTES    the list of routes, each a mapping of CONFIG_ROUTE_KEYS
 *
 * A default of NULL leaves the field unset: NULL for strings, CONFIG_MS_UNSET
 * for route durations (set in code, the docs say "—").
 */
#define CONFIG_SERVER_KEYS(X)                                                          \
    X("listen", LISTEN, listen, "127.0.0.1:8080", 0,                                   \
      "the proxy's listener: HOST:PORT or [IPV6]:PORT")                                \
    X("upstream", UPSTREAM, upstream, NULL, 0,                                         \
      "the origin: http://HOST:PORT (http only, no path); required to serve")          \
    X("hosts", STRINGS, hosts, "[]", 0,                                                \
      "allowed Host values; others get 400; empty: any")                               \
    X("workers", WORKERS, workers, "auto", 0,                                          \
      "worker threads, one event loop each: auto (one per core) or 1..1024")           \
    X("max_connections", COUNT, max_connections, "10000", 1,                           \
      "client connections open at once")                                               \
    X("header_timeout", DURATION, header_timeout_ms, "10s", 1,                         \
      "time a client has to send a request's headers")                                 \
    X("idle_timeout", DURATION, idle_timeout_ms, "60s", 1,                             \
      "how long an idle keep-alive client connection stays open")                      \
    X("max_header_size", SIZE, max_header_size, "32KB", 1,                             \
      "largest request header block; 431 beyond")                                      \
    X("max_headers", COUNT, max_headers, "100", 1,                                     \
      "most request header fields; 431 beyond")                                        \
    X("upstream_connect_timeout", DURATION, upstream_connect_timeout_ms, "5s", 1,      \
      "connecting to the origin")                                                      \
    X("upstream_timeout", DURATION, upstream_timeout_ms, "30s", 1,                     \
      "waiting for the origin's response")                                             \
    X("upstream_keepalive", COUNT, upstream_keepalive, "64", 0,                        \
      "idle origin connections kept per worker; 0: none")                              \
    X("strip_request_headers", HEADERS, strip_request_headers,                         \
      "[X-Forwarded-Host, X-Original-URL, X-Rewrite-URL, X-HTTP-Method-Override]", 0,  \
      "request headers removed before the key is computed and the request forwarded")  \
    X("access_log", TEXT, access_log, "stdout", 1,                                     \
      "off, stdout, or the path of a file")                                            \
    X("log_level", LOGLEVEL, log_level, "info", 0, "debug, info, warn or error")

#define CONFIG_ADMIN_KEYS(X)                                                           \
    X("listen", LISTEN, listen, "127.0.0.1:8081", 0,                                   \
      "the admin API's listener: HOST:PORT or [IPV6]:PORT")                            \
    X("token", TOKEN, token, NULL, 1,                                                  \
      "the bearer token of the admin API, 1 to 128 bytes of printable ASCII without "  \
      "spaces; unset: one is generated at start")                                      \
    X("token_file", TEXT, token_file, "strata-admin.token", 1,                         \
      "where a generated token is written (mode 0600)")

#define CONFIG_HTTP_KEYS(X)                                                            \
    X("cache", CACHE, cache, "http", 0, "the named cache holding HTTP objects")        \
    X("max_object_size", SIZE, max_object_size, "8MB", 1,                              \
      "larger responses are streamed, not stored")                                     \
    X("max_variants", COUNT, max_variants, "32", 1, "Vary variants kept per URL")      \
    X("default_ttl", DURATION, default_ttl_ms, "0s", 0,                                \
      "freshness of responses that give none, on routes without ttl; 0s: none")        \
    X("heuristic", BOOL, heuristic, "false", 0,                                        \
      "RFC 9111 heuristic freshness for responses that give none")                     \
    X("keep", DURATION, keep_ms, "1h", 0,                                              \
      "how long stale objects with validators stay for revalidation")                  \
    X("tag_headers", HEADERS, tag_headers,                                             \
      "[Surrogate-Key, Cache-Tag, xkey, Cache-Groups]", 0,                             \
      "response headers read as tags")                                                 \
    X("strip_tag_headers", BOOL, strip_tag_headers, "true", 0,                         \
      "remove the tag headers before the response goes to the client")                 \
    X("user_secret", TEXT, user_secret, NULL, 1,                                       \
      "HMAC key of per-user keys, identical on every node; required with per_user")    \
    X("purge.allow", CIDRS, purge_allow, "[127.0.0.1/32, ::1/128]", 0,                 \
      "client addresses allowed to send PURGE")                                        \
    X("purge.token", TEXT, purge_token, NULL, 1,                                       \
      "a bearer token that also allows PURGE, from any address")                       \
    X("routes", ROUTES, routes, "[]", 0, "the routes (below)")

/* One item of http_cache.routes. */
#define CONFIG_ROUTE_KEYS(X)                                                           \
    X("name", TEXT, name, NULL, 1, "the route's name in stats; default: its path")     \
    X("path", GLOB, path, "*", 0,                                                      \
      "glob on the normalised path; the first route that matches wins")                \
    X("ttl", DURATION, ttl_ms, NULL, 0,                                                \
      "freshness of responses that give none; unset: http_cache.default_ttl")          \
    X("vary_headers", HEADERS, vary_headers, "[]", 0,                                  \
      "request headers added to the key")                                              \
    X("vary_cookies", COOKIES, vary_cookies, "[]", 0,                                  \
      "request cookies added to the key")                                              \
    X("per_user", BOOL, per_user, "false", 0,                                          \
      "one copy per user: the key gets an HMAC of the identity")                       \
    X("user_from", USERFROM, user_from, NULL, 0,                                       \
      "with per_user: the identity, header:NAME, cookie:NAME or jwt:CLAIM")            \
    X("jwt_key", TEXT, jwt_key, NULL, 1,                                               \
      "with jwt: an HS256 secret, or the path of a PEM public key (RS256/ES256)")      \
    X("cache", BOOL, cache, "true", 0, "false: never store this route's responses")    \
    X("cache_control", HVALUE, cache_control, NULL, 1,                                 \
      "Cache-Control sent to the client instead of the origin's")                      \
    X("stale_while_revalidate", DURATION, swr_ms, NULL, 0,                             \
      "serve stale this long while refreshing; unset: the origin's Cache-Control")     \
    X("stale_if_error", DURATION, sie_ms, NULL, 0,                                     \
      "serve stale this long when the origin fails; unset: the origin's")              \
    X("tags", TAGS, tags, "[]", 0, "tags added to every object of the route")

#define CONFIG_BUS_KEYS(X)                                                             \
    X("timeout", DURATION, timeout_ms, "5s", 1,                                        \
      "silence after which a node stops trusting its L1")

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
