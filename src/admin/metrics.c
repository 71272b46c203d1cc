/*
 * metrics.c -- Prometheus text format 0.0.4 (GET /metrics).
 *
 * METRICS below is the one list: the exposition walks it in order and asks
 * each metric's family for its samples. Labels carry cache names, route
 * names, result and error kinds only: never a key, a URL or a user.
 */
#include "admin/metrics.h"

#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "proxy/internal.h"

#define METRICS(X)                                                                     \
    X(M_CACHE_INFO, "strata_cache_info", "gauge", "cache,backend",                     \
      "Always 1; the cache's backend (memory, redis, tiered).")                        \
    X(M_HITS, "strata_cache_hits_total", "counter", "cache",                           \
      "Lookups that found a live entry.")                                              \
    X(M_MISSES, "strata_cache_misses_total", "counter", "cache",                       \
      "Lookups that found no live entry.")                                             \
    X(M_SETS, "strata_cache_sets_total", "counter", "cache", "Entries stored.")        \
    X(M_DELETES, "strata_cache_deletes_total", "counter", "cache",                     \
      "Entries removed by key.")                                                       \
    X(M_EVICTIONS, "strata_cache_evictions_total", "counter", "cache",                 \
      "Entries evicted to stay within max_memory or max_items.")                       \
    X(M_EXPIRED, "strata_cache_expirations_total", "counter", "cache",                 \
      "Entries that expired (their TTL ran out).")                                     \
    X(M_INVALIDATED, "strata_cache_invalidated_total", "counter", "cache",             \
      "Entries removed by pattern, tag or clear invalidations.")                       \
    X(M_INVALIDATIONS, "strata_cache_invalidations_total", "counter", "cache,kind",    \
      "Invalidation requests by kind (key, pattern, tag, all).")                       \
    X(M_ERRORS, "strata_cache_errors_total", "counter", "cache",                       \
      "Operations that failed (out of memory, too big, backend errors).")              \
    X(M_ITEMS, "strata_cache_items", "gauge", "cache", "Entries stored now.")          \
    X(M_BYTES, "strata_cache_bytes", "gauge", "cache",                                 \
      "Memory charged to the cache now: keys, values, metadata, index.")               \
    X(M_MAX_BYTES, "strata_cache_max_bytes", "gauge", "cache",                         \
      "The cache's max_memory.")                                                       \
    X(M_OP_DURATION, "strata_cache_op_duration_seconds", "histogram", "cache,op",      \
      "Latency of cache operations (get, set and get_or_set on the memory engine "     \
      "are timed one call in 64).")                                                    \
    X(M_BUS_LAG, "strata_cache_bus_lag_seconds", "gauge", "cache",                     \
      "Tiered caches: seconds since the invalidation bus was last heard (-1: never).") \
    X(M_BUS_TRUSTED, "strata_cache_l1_trusted", "gauge", "cache",                      \
      "Tiered caches: 1 while L1 may answer (bus heard within bus.timeout, nothing "   \
      "missed), else 0.")                                                              \
    X(M_STALENESS, "strata_cache_staleness_bound_seconds", "gauge", "cache",           \
      "Tiered caches: how far L1 may be behind Redis, max(l1_ttl, bus.timeout).")      \
    X(M_L1_FLUSHES, "strata_cache_l1_flushes_total", "counter", "cache",               \
      "Tiered caches: L1 flushes because the bus may have missed invalidations.")      \
    X(M_HTTP_REQUESTS, "strata_http_requests_total", "counter", "route,cache_result",  \
      "Proxy requests by route and how the cache answered them.")                      \
    X(M_HTTP_DURATION, "strata_http_request_duration_seconds", "histogram", "route",   \
      "Proxy request latency, request head in to response queued.")                    \
    X(M_COALESCED, "strata_http_coalesced_requests_total", "counter", "",              \
      "Requests that waited for another request's fetch of the same object.")          \
    X(M_UP_REQUESTS, "strata_upstream_requests_total", "counter", "route",             \
      "Requests sent to the origin that got a response head.")                         \
    X(M_UP_ERRORS, "strata_upstream_errors_total", "counter", "kind",                  \
      "Origin failures by kind (connect, timeout, broken).")                           \
    X(M_UP_DURATION, "strata_upstream_duration_seconds", "histogram", "route",         \
      "Origin latency, request sent to response head.")                                \
    X(M_UPTIME, "strata_uptime_seconds", "gauge", "", "Seconds since strata started.") \
    X(M_BUILD, "strata_build_info", "gauge", "version", "Always 1; the version label.")

enum {
#define X(id, name, type, labels, help) id,
    METRICS(X)
#undef X
        M_N
};

static const struct metric table[M_N] = {
#define X(id, name, type, labels, help) {name, type, labels, help},
    METRICS(X)
#undef X
};

const struct metric *metrics_table(size_t *n)
{
    *n = M_N;
    return table;
}

/* A label value, escaped as the text format wants (\\ \" \n). */
static void label(struct sbuf *b, const char *name, const char *v, bool first)
{
    sb_fmt(b, "%s%s=\"", first ? "" : ",", name);
    for (; *v; v++) {
        if (*v == '\\' || *v == '"') sb_add(b, "\\", 1);
        if (*v == '\n') {
            sb_add(b, "\\n", 2);
            continue;
        }
        sb_add(b, v, 1);
    }
    sb_add(b, "\"", 1);
}

/* One sample: name, labels ("k", v pairs; NULL-terminated), value. */
static void sample(struct sbuf *b, const char *name, const char *suffix,
                   const char *const *lv, const char *le, double v)
{
    sb_str(b, name);
    sb_str(b, suffix);
    if ((lv && lv[0]) || le) {
        sb_add(b, "{", 1);
        bool first = true;
        for (size_t i = 0; lv && lv[i]; i += 2) {
            label(b, lv[i], lv[i + 1], first);
            first = false;
        }
        if (le) label(b, "le", le, first);
        sb_add(b, "}", 1);
    }
    if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v)
        sb_fmt(b, " %.0f\n", v);
    else
        sb_fmt(b, " %.9g\n", v);
}

static void histogram(struct sbuf *b, const char *name, const char *const *lv,
                      const struct hist_snap *h)
{
    uint64_t cum = 0;
    char le[32];
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        cum += h->n[i];
        snprintf(le, sizeof le, "%g", (double)hist_bounds_ns[i] / 1e9);
        sample(b, name, "_bucket", lv, le, (double)cum);
    }
    cum += h->n[HIST_BUCKETS];
    sample(b, name, "_bucket", lv, "+Inf", (double)cum);
    sample(b, name, "_sum", lv, NULL, (double)h->sum_ns / 1e9);
    sample(b, name, "_count", lv, NULL, (double)cum);
}

static void cache_family(struct sbuf *b, int id, strata *s)
{
    const char *name = table[id].name;
    for (size_t i = 0; i < strata_cache_count(s); i++) {
        strata_cache *c = strata_cache_at(s, i);
        const char *lv[5] = {"cache", strata_cache_name(c), NULL, NULL, NULL};
        strata_stats st;
        strata_cache_stats(c, &st);
        uint64_t v = 0;
        switch (id) {
        case M_CACHE_INFO:
            lv[2] = "backend";
            lv[3] = strata_cache_backend(c);
            v = 1;
            break;
        case M_HITS:
            v = st.hits;
            break;
        case M_MISSES:
            v = st.misses;
            break;
        case M_SETS:
            v = st.sets;
            break;
        case M_DELETES:
            v = st.deletes;
            break;
        case M_EVICTIONS:
            v = st.evictions;
            break;
        case M_EXPIRED:
            v = st.expired;
            break;
        case M_INVALIDATED:
            v = st.invalidated;
            break;
        case M_ERRORS:
            v = st.errors;
            break;
        case M_ITEMS:
            v = st.items;
            break;
        case M_BYTES:
            v = st.bytes;
            break;
        case M_MAX_BYTES:
            v = st.max_bytes;
            break;
        case M_BUS_LAG:
        case M_BUS_TRUSTED:
        case M_STALENESS:
        case M_L1_FLUSHES: {
            struct tiered_bus_state bs;
            if (strata_cache_bus_state(c, &bs) != 0) continue;
            double x = id == M_BUS_LAG ? (bs.lag_ms < 0 ? -1 : (double)bs.lag_ms / 1e3)
                       : id == M_BUS_TRUSTED ? (bs.trusted ? 1 : 0)
                       : id == M_STALENESS   ? (double)bs.staleness_bound_ms / 1e3
                                             : (double)bs.flushes;
            sample(b, name, "", lv, NULL, x);
            continue;
        }
        case M_INVALIDATIONS:
        case M_OP_DURATION: {
            struct strata_cache_metrics cm;
            strata_cache_metrics(c, &cm);
            static const char *const kinds[] = {
#define K(e, n) n,
                STRATA_INVALS(K)
#undef K
            };
            static const char *const ops[] = {
#define K(e, n) n,
                STRATA_OPS(K)
#undef K
            };
            if (id == M_INVALIDATIONS)
                for (int k = 0; k < STRATA_INV_N; k++) {
                    lv[2] = "kind";
                    lv[3] = kinds[k];
                    sample(b, name, "", lv, NULL, (double)cm.inval[k]);
                }
            else
                for (int k = 0; k < STRATA_OP_N; k++) {
                    lv[2] = "op";
                    lv[3] = ops[k];
                    histogram(b, name, lv, &cm.op[k]);
                }
            continue;
        }
        }
        sample(b, name, "", lv, NULL, (double)v);
    }
}

static void http_family(struct sbuf *b, int id, struct proxy *px)
{
    const char *name = table[id].name;
    struct proxy_totals t;
    switch (id) {
    case M_COALESCED:
        proxy_totals(px, &t);
        sample(b, name, "", NULL, NULL, (double)t.coalesced);
        return;
    case M_UP_ERRORS:
        proxy_totals(px, &t);
        for (int e = 0; e < PROXY_UP_ERRORS; e++) {
            const char *lv[] = {"kind", proxy_up_error_name[e], NULL};
            sample(b, name, "", lv, NULL, (double)t.upstream_errors[e]);
        }
        return;
    }
    for (size_t i = 0; i < proxy_nroutes(px); i++) {
        struct proxy_route_stats rs;
        proxy_route_stats(px, i, &rs);
        const char *lv[5] = {"route", proxy_route_label(px, i), NULL, NULL, NULL};
        if (id == M_HTTP_REQUESTS) {
            for (int r = PR_NONE + 1; r < PR_N; r++) {
                lv[2] = "cache_result";
                lv[3] = proxy_result_name[r];
                sample(b, name, "", lv, NULL, (double)rs.result[r]);
            }
        } else if (id == M_HTTP_DURATION) {
            histogram(b, name, lv, &rs.latency);
        } else if (id == M_UP_REQUESTS) {
            sample(b, name, "", lv, NULL, (double)hist_count(&rs.upstream));
        } else if (id == M_UP_DURATION) {
            histogram(b, name, lv, &rs.upstream);
        }
    }
}

static bool any_tiered(strata *s)
{
    struct tiered_bus_state bs;
    for (size_t i = 0; i < strata_cache_count(s); i++)
        if (strata_cache_bus_state(strata_cache_at(s, i), &bs) == 0) return true;
    return false;
}

void metrics_render(struct sbuf *b, strata *s, struct proxy *px, double uptime_s)
{
    for (int id = 0; id < M_N; id++) {
        bool http = id >= M_HTTP_REQUESTS && id <= M_UP_DURATION;
        if (http && px == NULL) continue;
        if (id >= M_BUS_LAG && id <= M_L1_FLUSHES && !any_tiered(s))
            continue; /* a family without samples says nothing */
        sb_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", table[id].name, table[id].help,
               table[id].name, table[id].type);
        if (id == M_UPTIME) {
            sample(b, table[id].name, "", NULL, NULL, uptime_s);
        } else if (id == M_BUILD) {
            const char *lv[] = {"version", STRATA_VERSION, NULL};
            sample(b, table[id].name, "", lv, NULL, 1);
        } else if (http) {
            http_family(b, id, px);
        } else {
            cache_family(b, id, s);
        }
    }
}
