/*
 * tiered.c -- the tiered backend: an L1 in this process's memory (the engine
 * of src/core, bounded by l1_max_memory) over an L2 in Redis (redis.c).
 *
 * Reads try L1, then L2; an L2 hit fills L1 with the value and its tags for
 * at most l1_ttl. Writes and invalidations go to L2 first, then L1. So a
 * node's L1 never serves a value longer than l1_ttl after another node
 * changed it in L2, and normally much sooner: every invalidation is also
 * published on the bus, and every node applies what it hears to its L1.
 *
 * The bus (DESIGN "Multi-node") is the Stream {prefix}:bus: entries
 * `node <id> cache <name> op <del|pattern|tags|all|hb> arg <bytes>`, trimmed
 * to about BUS_MAXLEN entries. A thread per tiered cache publishes a
 * heartbeat every second and reads the stream (XREAD BLOCK) on a connection
 * of its own. While it has heard the bus within bus.timeout and has missed
 * nothing, L1 is trusted; otherwise reads skip L1 (they go to Redis) until
 * the bus is back, and if the stream no longer holds the last entry the node
 * read (trimmed, or Redis restarted empty), the node cannot know what it
 * missed and flushes its L1. So what a node's L1 serves is at most
 * max(l1_ttl, bus.timeout) behind Redis.
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "backend/backend.h"
#include "core/log.h"

#define BUS_MAXLEN "100000"
#define BUS_BLOCK_MS 500
#define BUS_HEARTBEAT_MS 1000
#define BUS_COUNT 1000

struct tb {
    engine *l1;
    void *l2;
    char *name;
    int64_t l1_ttl_ms; /* > 0 */
    int64_t ttl_ms;    /* the cache's default TTL (for L2) */
    _Atomic uint64_t hits, misses, l1_hits;
    /* Bumped by every invalidation (local or from the bus) before it reaches
     * L1: an L2 read that started before it must not fill L1 with what it
     * read (checked under the shard lock by engine_set_blob's veto). */
    _Atomic uint64_t gen;
    /* the bus */
    char node[17];
    char *stream;
    _Atomic int64_t bus_timeout_ms;
    _Atomic int64_t heard_ms; /* monotonic ms of the last entry read; 0: never */
    _Atomic uint64_t flushes, applied;
    _Atomic bool stop;
    pthread_t thread;
    bool thread_on;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* L1 may answer: the bus was heard, caught up, within bus.timeout (what it
 * could not replay was flushed before that). */
static bool l1_trusted(struct tb *b)
{
    int64_t h = atomic_load_explicit(&b->heard_ms, memory_order_relaxed);
    return h && mono_ms() - h <
                    atomic_load_explicit(&b->bus_timeout_ms, memory_order_relaxed);
}

struct fill_veto {
    struct tb *b;
    uint64_t gen;
};

static bool fill_vetoed(void *ud)
{
    struct fill_veto *v = ud;
    return atomic_load(&v->b->gen) != v->gen;
}

static void bump(struct tb *b)
{
    atomic_fetch_add(&b->gen, 1);
}

/* Tell the other nodes (best effort: when Redis is down, their L1 copies
 * run out within l1_ttl, and their bus goes silent too). */
static void publish(struct tb *b, const char *op, const char *arg, size_t alen)
{
    const char *av[] = {"XADD",  b->stream, "MAXLEN", "~",  BUS_MAXLEN, "*",   "node",
                        b->node, "cache",   b->name,  "op", op,         "arg", arg};
    size_t ln[] = {4,
                   strlen(b->stream),
                   6,
                   1,
                   strlen(BUS_MAXLEN),
                   1,
                   4,
                   strlen(b->node),
                   5,
                   strlen(b->name),
                   2,
                   strlen(op),
                   3,
                   alen};
    redisReply *r = backend_redis_command(b->l2, 14, av, ln);
    if (r) freeReplyObject(r);
}

/* L1's TTL for a value whose L2 TTL is `ttl` (0: the cache's default). */
static int64_t l1_ttl(const struct tb *b, int64_t ttl)
{
    if (ttl == 0) ttl = b->ttl_ms;
    return ttl > 0 && ttl < b->l1_ttl_ms ? ttl : b->l1_ttl_ms;
}

static int t_get(void *bp, const void *key, size_t klen, strata_value **out)
{
    struct tb *b = bp;
    bool trusted = l1_trusted(b);
    int rc = trusted ? engine_get(b->l1, key, klen, out) : STRATA_MISS;
    if (rc != STRATA_MISS) {
        if (rc == STRATA_OK) {
            atomic_fetch_add(&b->hits, 1);
            atomic_fetch_add_explicit(&b->l1_hits, 1, memory_order_relaxed);
        }
        return rc;
    }
    char *tagbuf = NULL;
    size_t nt = 0;
    struct fill_veto fv = {b, atomic_load(&b->gen)};
    int64_t pttl = -1;
    rc = backend_redis_get_tags(b->l2, key, klen, out, &tagbuf, &nt, &pttl);
    if (rc == STRATA_OK && !trusted) {
        atomic_fetch_add(&b->hits, 1);
    } else if (rc == STRATA_OK) {
        const char *tags[256];
        const char *t = tagbuf;
        for (size_t i = 0; i < nt && i < 256; i++) {
            tags[i] = t;
            t += strlen(t) + 1;
        }
        /* no longer than Redis keeps it (PTTL -1: no expiry) */
        strata_set_opts o = {pttl > 0 && pttl < b->l1_ttl_ms ? pttl : b->l1_ttl_ms,
                             tags, nt < 256 ? nt : 256};
        /* An L1 that cannot hold it (too many tags, too big) still serves
         * from L2; an invalidation since the read vetoes the fill. */
        core_blob *blob =
            core_blob_new(strata_value_data(*out), strata_value_len(*out));
        engine_veto veto = {fill_vetoed, &fv};
        if (blob) {
            engine_set_blob(b->l1, key, klen, blob, &o, &veto);
            core_blob_release(blob);
        }
        atomic_fetch_add(&b->hits, 1);
    } else if (rc == STRATA_MISS) {
        atomic_fetch_add(&b->misses, 1);
    }
    free(tagbuf);
    return rc;
}

static int t_set(void *bp, const void *key, size_t klen, const void *val, size_t vlen,
                 const strata_set_opts *opts)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.set(b->l2, key, klen, val, vlen, opts);
    if (rc != STRATA_OK) {
        engine_delete(b->l1, key, klen); /* never an L1 copy L2 does not have */
        return rc;
    }
    bump(b);
    strata_set_opts o = opts ? *opts : (strata_set_opts){0};
    o.ttl_ms = l1_ttl(b, o.ttl_ms);
    engine_set(b->l1, key, klen, val, vlen, &o);
    publish(b, "del", key, klen); /* other nodes drop their old copies */
    return STRATA_OK;
}

static int t_del(void *bp, const void *key, size_t klen)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.del(b->l2, key, klen);
    bump(b);
    int r1 = engine_delete(b->l1, key, klen);
    publish(b, "del", key, klen);
    return rc == STRATA_MISS && r1 == STRATA_OK ? STRATA_OK : rc;
}

static int t_get_or_set(void *bp, const void *key, size_t klen, strata_loader load,
                        void *ud, const strata_set_opts *opts, strata_value **out)
{
    struct tb *b = bp;
    int rc = l1_trusted(b) ? engine_get(b->l1, key, klen, out) : STRATA_MISS;
    if (rc == STRATA_OK) {
        atomic_fetch_add(&b->hits, 1);
        return rc;
    }
    /* One loader per key (L2's single flight); the next get fills L1. */
    rc = backend_redis_ops.get_or_set(b->l2, key, klen, load, ud, opts, out);
    atomic_fetch_add(rc == STRATA_OK ? &b->hits : &b->misses, 1);
    return rc;
}

static long t_pattern(void *bp, const char *glob)
{
    struct tb *b = bp;
    if (!core_glob_valid(glob)) return STRATA_EINVAL;
    long n = backend_redis_ops.invalidate_pattern(b->l2, glob);
    bump(b);
    engine_invalidate_pattern(b->l1, glob);
    publish(b, "pattern", glob, strlen(glob));
    return n; /* what left Redis (or its error) */
}

static long t_tags(void *bp, const char *const *tags, size_t n)
{
    struct tb *b = bp;
    for (size_t i = 0; i < n; i++)
        if (tags[i] == NULL || tags[i][0] == 0) return STRATA_EINVAL;
    long r = backend_redis_ops.invalidate_tags(b->l2, tags, n);
    bump(b);
    long r1 = engine_invalidate_tags(b->l1, tags, n);
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(tags[i]) + 1;
    char *arg = malloc(len + 1), *o = arg;
    if (arg && n) {
        for (size_t i = 0; i < n; i++) {
            size_t tl = strlen(tags[i]);
            memcpy(o, tags[i], tl);
            o[tl] = '\n';
            o += tl + 1;
        }
        publish(b, "tags", arg, len - 1);
    }
    free(arg);
    return r < 0 ? r : r1; /* L1 can count the copies it holds */
}

static int t_clear(void *bp)
{
    struct tb *b = bp;
    int rc = backend_redis_ops.clear(b->l2);
    bump(b);
    engine_clear(b->l1);
    publish(b, "all", "", 0);
    return rc;
}

static void t_stats(void *bp, strata_stats *out)
{
    struct tb *b = bp;
    strata_stats l2 = {0};
    engine_stats(b->l1, out); /* items, bytes, evictions, expired: L1's */
    backend_redis_ops.stats(b->l2, &l2);
    out->hits = atomic_load(&b->hits);
    out->misses = atomic_load(&b->misses);
    out->sets = l2.sets;
    out->deletes = l2.deletes;
    out->errors = l2.errors;
    out->invalidated += l2.invalidated;
}

static long t_sweep(void *bp, size_t budget)
{
    return engine_sweep(((struct tb *)bp)->l1, budget);
}

static void t_rebase(void *bp)
{
    engine_rebase(((struct tb *)bp)->l1);
}

static void t_close(void *bp)
{
    struct tb *b = bp;
    if (b == NULL) return;
    if (b->thread_on) {
        atomic_store(&b->stop, true);
        pthread_join(b->thread, NULL);
    }
    free(b->stream);
    free(b->name);
    if (b->l1) engine_free(b->l1);
    if (b->l2) backend_redis_ops.close(b->l2);
    free(b);
}

/* ------------------------------------------------------------- the bus */

struct sid {
    uint64_t ms, seq;
};

static bool sid_parse(const char *s, struct sid *o)
{
    char *e;
    o->ms = strtoull(s, &e, 10);
    if (*e != '-') return false;
    o->seq = strtoull(e + 1, &e, 10);
    return *e == 0;
}

static int sid_cmp(const struct sid *a, const struct sid *b)
{
    if (a->ms != b->ms) return a->ms < b->ms ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* The id of the stream's first (or last) entry into out; false when the
 * stream is empty or missing, or on error (*err). */
static bool end_id(redisContext *c, struct tb *b, bool last, char *out, size_t cap,
                   bool *err)
{
    redisReply *r = last ? redisCommand(c, "XREVRANGE %s + - COUNT 1", b->stream)
                         : redisCommand(c, "XRANGE %s - + COUNT 1", b->stream);
    *err = r == NULL || r->type == REDIS_REPLY_ERROR;
    bool found = !*err && r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
                 r->element[0]->type == REDIS_REPLY_ARRAY &&
                 r->element[0]->elements == 2 &&
                 r->element[0]->element[0]->type == REDIS_REPLY_STRING;
    if (found) snprintf(out, cap, "%s", r->element[0]->element[0]->str);
    if (r) freeReplyObject(r);
    return found;
}

static void apply(struct tb *b, const redisReply *f)
{
    const redisReply *node = NULL, *cache = NULL, *op = NULL, *arg = NULL;
    if (f->type != REDIS_REPLY_ARRAY) return;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        if (f->element[i]->type != REDIS_REPLY_STRING ||
            f->element[i + 1]->type != REDIS_REPLY_STRING)
            return;
        const char *k = f->element[i]->str;
        const redisReply *v = f->element[i + 1];
        if (strcmp(k, "node") == 0) node = v;
        if (strcmp(k, "cache") == 0) cache = v;
        if (strcmp(k, "op") == 0) op = v;
        if (strcmp(k, "arg") == 0) arg = v;
    }
    if (!node || !cache || !op || !arg || strcmp(node->str, b->node) == 0 ||
        strcmp(cache->str, b->name) != 0 || strcmp(op->str, "hb") == 0)
        return;
    bump(b);
    if (strcmp(op->str, "del") == 0) {
        engine_delete(b->l1, arg->str, arg->len);
    } else if (strcmp(op->str, "pattern") == 0) {
        engine_invalidate_pattern(b->l1, arg->str);
    } else if (strcmp(op->str, "all") == 0) {
        engine_clear(b->l1);
    } else if (strcmp(op->str, "tags") == 0) {
        char *copy = strndup(arg->str, arg->len);
        const char *tags[ENGINE_TAGS_MAX];
        size_t n = 0;
        for (char *save = NULL, *t = copy ? strtok_r(copy, "\n", &save) : NULL; t;
             t = strtok_r(NULL, "\n", &save)) {
            tags[n++] = t;
            if (n == ENGINE_TAGS_MAX) {
                engine_invalidate_tags(b->l1, tags, n);
                n = 0;
            }
        }
        if (n) engine_invalidate_tags(b->l1, tags, n);
        free(copy);
    } else {
        return;
    }
    atomic_fetch_add(&b->applied, 1);
}

static void flush_l1(struct tb *b, const char *why)
{
    engine_clear(b->l1);
    atomic_fetch_add(&b->flushes, 1);
    slog(SLOG_WARN,
         "msg=\"L1 flushed: the bus may have missed invalidations\" cache=%s why=%s",
         b->name, why);
}

static void nap_ms(struct tb *b, int64_t ms)
{
    for (int64_t t = 0; t < ms && !atomic_load(&b->stop); t += 20) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void *bus_main(void *arg)
{
    struct tb *b = arg;
    redisContext *c = NULL;
    char last[64] = "", id[64];
    int64_t last_hb = 0, backoff = 100;
    int64_t to = BUS_BLOCK_MS + backend_redis_command_timeout_ms(b->l2) + 500;
    while (!atomic_load(&b->stop)) {
        if (c == NULL && (c = backend_redis_connect(b->l2, to)) == NULL) {
            nap_ms(b, backoff);
            backoff = backoff < 2000 ? backoff * 2 : 2000;
            continue;
        }
        backoff = 100;
        bool err = false;
        /* Where to read from: the newest entry at start; later, check that
         * the stream still holds the last entry read (else: flush). */
        if (last[0] == 0) {
            if (!end_id(c, b, true, last, sizeof last, &err))
                snprintf(last, sizeof last, "0-0");
        } else {
            struct sid first, mine;
            bool have = end_id(c, b, false, id, sizeof id, &err);
            if (!err && sid_parse(last, &mine) && (mine.ms || mine.seq) &&
                (!have || (sid_parse(id, &first) && sid_cmp(&first, &mine) > 0))) {
                flush_l1(b, have ? "trimmed" : "stream gone");
                if (!end_id(c, b, true, last, sizeof last, &err))
                    snprintf(last, sizeof last, "0-0");
            }
        }
        int64_t now = mono_ms();
        if (!err && now - last_hb >= BUS_HEARTBEAT_MS) {
            redisReply *r =
                redisCommand(c, "XADD %s MAXLEN ~ %s * node %s cache %s op hb arg x",
                             b->stream, BUS_MAXLEN, b->node, b->name);
            err = r == NULL || r->type == REDIS_REPLY_ERROR;
            if (r) freeReplyObject(r);
            last_hb = now;
        }
        redisReply *r = err ? NULL
                            : redisCommand(c, "XREAD COUNT %d BLOCK %d STREAMS %s %s",
                                           BUS_COUNT, BUS_BLOCK_MS, b->stream, last);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            if (r) freeReplyObject(r);
            redisFree(c);
            c = NULL;
            continue;
        }
        const redisReply *entries = NULL;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
            r->element[0]->element[1]->type == REDIS_REPLY_ARRAY)
            entries = r->element[0]->element[1];
        for (size_t i = 0; entries && i < entries->elements; i++) {
            const redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
                e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            snprintf(last, sizeof last, "%s", e->element[0]->str);
            apply(b, e->element[1]);
        }
        /* Heard, and caught up: a full batch means more is waiting, and L1
         * must not be trusted before the node has read it all. */
        if (entries && entries->elements && entries->elements < BUS_COUNT)
            atomic_store(&b->heard_ms, mono_ms());
        freeReplyObject(r);
    }
    if (c) redisFree(c);
    return NULL;
}

void backend_tiered_set_bus_timeout(void *bp, int64_t ms)
{
    atomic_store(&((struct tb *)bp)->bus_timeout_ms, ms > 0 ? ms : 5000);
}

void backend_tiered_bus_state(void *bp, struct tiered_bus_state *out)
{
    struct tb *b = bp;
    int64_t h = atomic_load(&b->heard_ms), bt = atomic_load(&b->bus_timeout_ms);
    out->lag_ms = h ? mono_ms() - h : -1;
    out->trusted = l1_trusted(b);
    out->flushes = atomic_load(&b->flushes);
    out->applied = atomic_load(&b->applied);
    out->l1_hits = atomic_load(&b->l1_hits);
    out->staleness_bound_ms = b->l1_ttl_ms > bt ? b->l1_ttl_ms : bt;
}

const struct backend_ops backend_tiered_ops = {
    .name = "tiered",
    .get = t_get,
    .set = t_set,
    .del = t_del,
    .get_or_set = t_get_or_set,
    .invalidate_pattern = t_pattern,
    .invalidate_tags = t_tags,
    .clear = t_clear,
    .stats = t_stats,
    .sweep = t_sweep,
    .rebase = t_rebase,
    .close = t_close,
};

void *backend_tiered_open(const struct config_cache *cc, const core_clock *clock,
                          int *err, const char **why)
{
    struct tb *b = calloc(1, sizeof *b);
    if (b == NULL) {
        *err = STRATA_ENOMEM;
        return NULL;
    }
    b->l1_ttl_ms = cc->l1_ttl_ms > 0 ? cc->l1_ttl_ms : 5000;
    b->ttl_ms = cc->ttl_ms;
    atomic_store(&b->bus_timeout_ms, 5000);
    b->l2 = backend_redis_open(cc, err, why);
    if (b->l2 == NULL) {
        free(b);
        return NULL;
    }
    unsigned char rnd[8] = {0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = (uint64_t)mono_ms() ^ (uint64_t)(uintptr_t)b;
        memcpy(rnd, &t, sizeof rnd);
    }
    for (int i = 0; i < 8; i++)
        sprintf(b->node + 2 * i, "%02x", rnd[i]);
    b->name = strdup(cc->name);
    if (asprintf(&b->stream, "%s:bus", cc->key_prefix ? cc->key_prefix : "strata") < 0)
        b->stream = NULL;
    if (b->name == NULL || b->stream == NULL) {
        t_close(b);
        *err = STRATA_ENOMEM;
        return NULL;
    }
    engine_conf ec = {
        .name = cc->name,
        .ttl_ms = b->l1_ttl_ms,
        .max_memory = cc->l1_max_memory ? cc->l1_max_memory : 64u << 20,
        .max_items = cc->max_items,
        .codec = CORE_CODEC_NONE, /* L1 trades memory for speed */
        .loader_timeout_ms = cc->loader_timeout_ms,
        .clock = clock,
    };
    b->l1 = engine_new(&ec);
    if (b->l1 == NULL) {
        t_close(b);
        *err = STRATA_ENOMEM;
        return NULL;
    }
    if (pthread_create(&b->thread, NULL, bus_main, b) != 0) {
        t_close(b);
        *err = STRATA_ENOMEM;
        return NULL;
    }
    b->thread_on = true;
    return b;
}
