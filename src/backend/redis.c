/*
 * redis.c -- the redis backend (DESIGN "Globs, Redis layout, tag versions").
 *
 * Layout, under `{prefix}:{cache}:` so that a shared Redis db is safe:
 *
 *   k:<key>   the value: "S1" flags codec ntags, then per tag
 *             taglen(2, big-endian) tag verlen(1) version (decimal), then
 *             the payload (compressed when flags has VF_COMPRESSED)
 *   t:<tag>   the tag's version: drawn from tagseq, never reset
 *   tagseq    INCR source of every version
 *
 * A set stores the value with the versions its tags have now; invalidating
 * a tag gives it a new version; a get (one EVALSHA) returns the value only
 * if every tag still has the version it was stored with, and unlinks it
 * otherwise. A tag record that is gone (evicted, flushed) invalidates its
 * entries the same way. No per-tag sets that grow without bound.
 *
 * This is the synchronous path of the C API: a small pool of blocking
 * hiredis connections, each call bounded by command_timeout. When Redis
 * cannot be reached the backend fails fast for a backoff period (100 ms
 * doubling to 5 s) instead of making every caller wait for a connect
 * timeout, and logs one line per burst of errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend/backend.h"
#include "core/log.h"

#define POOL_MAX 16
#define SCAN_COUNT "1000"
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define ERROR_LOG_EVERY_MS 10000

enum { VF_COMPRESSED = 1 };

/* KEYS[1] the value; ARGV[1] the tag prefix. Returns {value, PTTL} (the
 * tiered L1 keeps a copy no longer than Redis does), or false. */
static const char get_lua[] =
    "local v = redis.call('GET', KEYS[1])\n"
    "if not v then return false end\n"
    "if #v < 5 or string.sub(v, 1, 2) ~= 'S1' then return {v, -1} end\n"
    "local n = string.byte(v, 5)\n"
    "local pos = 6\n"
    "for i = 1, n do\n"
    "  local tl = string.byte(v, pos) * 256 + string.byte(v, pos + 1)\n"
    "  local tag = string.sub(v, pos + 2, pos + 1 + tl)\n"
    "  pos = pos + 2 + tl\n"
    "  local vl = string.byte(v, pos)\n"
    "  local ver = string.sub(v, pos + 1, pos + vl)\n"
    "  pos = pos + 1 + vl\n"
    "  if redis.call('GET', ARGV[1] .. tag) ~= ver then\n"
    "    redis.call('UNLINK', KEYS[1])\n"
    "    return false\n"
    "  end\n"
    "end\n"
    "return {v, redis.call('PTTL', KEYS[1])}\n";

/* A missing tag sequence (new, or lost: evicted, flushed) starts from Redis'
 * clock in ms, above any version it gave before; Lua's numbers are doubles
 * printed with 14 digits, which ms since 1970 fit for millennia.
 *
 * KEYS[1] the value; ARGV: tag prefix, tagseq key, PX ms ("0": none), flags
 * and codec (2 bytes), payload, since ("0": no check), tags... Returns 1, or
 * 0 when a tag was invalidated after `since` (the loader's data may predate
 * it: nothing is stored). */
static const char set_lua[] =
    "if redis.call('EXISTS', ARGV[2]) == 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  redis.call('SET', ARGV[2], t[1] * 1000 + math.floor(t[2] / 1000))\n"
    "end\n"
    "local parts = {'S1', ARGV[4], string.char(#ARGV - 6)}\n"
    "for i = 7, #ARGV do\n"
    "  local tag = ARGV[i]\n"
    "  local tk = ARGV[1] .. tag\n"
    "  local ver = redis.call('GET', tk)\n"
    "  if not ver then\n"
    "    ver = tostring(redis.call('INCR', ARGV[2]))\n"
    "    redis.call('SET', tk, ver)\n"
    "  elseif ARGV[6] ~= '-' and tonumber(ver) > tonumber(ARGV[6]) then\n"
    "    return 0\n"
    "  end\n"
    "  parts[#parts + 1] = string.char(math.floor(#tag / 256), #tag % 256) .. tag ..\n"
    "    string.char(#ver) .. ver\n"
    "end\n"
    "parts[#parts + 1] = ARGV[5]\n"
    "if ARGV[3] ~= '0' then\n"
    "  redis.call('SET', KEYS[1], table.concat(parts), 'PX', ARGV[3])\n"
    "else\n"
    "  redis.call('SET', KEYS[1], table.concat(parts))\n"
    "end\n"
    "return 1\n";

/* ARGV: tag prefix, tagseq key, tags... */
static const char inv_lua[] =
    "if redis.call('EXISTS', ARGV[2]) == 0 then\n"
    "  local t = redis.call('TIME')\n"
    "  redis.call('SET', ARGV[2], t[1] * 1000 + math.floor(t[2] / 1000))\n"
    "end\n"
    "for i = 3, #ARGV do\n"
    "  redis.call('SET', ARGV[1] .. ARGV[i],\n"
    "    tostring(redis.call('INCR', ARGV[2])))\n"
    "end\n"
    "return #ARGV - 2\n";

struct script {
    const char *src;
    char sha[41];
};

struct rconn {
    redisContext *c;
    struct rconn *next;
};

struct rflight {
    struct rflight *next;
    char *key;
    size_t klen;
    pthread_t owner;
    bool done;
    int rc;
    void *val; /* a copy of the loaded bytes, for the waiters */
    size_t vlen;
    int refs;
    pthread_cond_t cv;
};

struct rb {
    char *name;
    char *kpre, *tpre, *seq; /* "{prefix}:{cache}:k:" ... */
    size_t kpre_len;
    char *host, *user, *pass;
    int port, db;
    /* redis-sentinel://: the sentinels, the master's name, and the master
     * they named last (host/port above; `resolved` false: ask again) */
    bool sentinel, resolved;
    char *master;
    struct {
        char *host;
        int port;
    } sent[8];
    int nsent;
    struct timeval connect_to, command_to;
    int64_t ttl_ms, loader_timeout_ms;
    enum core_codec codec;
    int level;
    uint64_t min_size;
    struct script get, set, inv;
    pthread_mutex_t lock; /* pool, backoff, flights */
    struct rconn *idle;
    size_t nconn;
    uint64_t down_until_ms, backoff_ms;
    uint64_t last_log_ms, quiet_errors;
    struct rflight *flights;
    _Atomic uint64_t hits, misses, sets, deletes, errors, invalidated;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void script_init(struct script *s, const char *src)
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)src, strlen(src), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        sprintf(s->sha + 2 * i, "%02x", d[i]);
    s->src = src;
}

/* ---------------------------------------------------------------- the URL */

/* "host:port" or "[v6]:port" from p to end into *host, *port (default
 * `dport`). 0, or -1 with *why. */
static int host_port(const char *p, const char *end, char **host, int *port, int dport,
                     const char **why)
{
    const char *colon = NULL;
    if (*p == '[') { /* [v6]:port */
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (rb == NULL) return *why = "bad [IPv6] host", -1;
        *host = strndup(p + 1, (size_t)(rb - p - 1));
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
    } else {
        colon = memchr(p, ':', (size_t)(end - p));
        *host = strndup(p, (size_t)((colon ? colon : end) - p));
    }
    *why = NULL;
    if (*host == NULL || (*host)[0] == 0) *why = "no host";
    *port = dport;
    if (*why == NULL && colon) {
        char *e;
        long v = strtol(colon + 1, &e, 10);
        if (e != end || v < 1 || v > 65535) *why = "bad port";
        *port = (int)v;
    }
    if (*why == NULL) return 0;
    free(*host);
    *host = NULL;
    return -1;
}

/* redis://[user:pass@]host:port[/db] or
 * redis-sentinel://[user:pass@]h1:port,h2:port/master[/db] (the password is
 * the master's). 0, or -1 with *why. */
static int parse_url(struct rb *b, const char *url, const char **why)
{
    const char *p;
    if (strncmp(url, "redis-sentinel://", 17) == 0) {
        b->sentinel = true;
        p = url + 17;
    } else if (strncmp(url, "redis://", 8) == 0) {
        p = url + 8;
    } else {
        return *why = "must start with redis:// or redis-sentinel://", -1;
    }
    const char *slash = strchr(p, '/');
    const char *at = memchr(p, '@', slash ? (size_t)(slash - p) : strlen(p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            b->user = colon > p ? strndup(p, (size_t)(colon - p)) : NULL;
            b->pass = strndup(colon + 1, (size_t)(at - colon - 1));
        } else {
            b->pass = strndup(p, (size_t)(at - p));
        }
        p = at + 1;
    }
    const char *hp_end = slash ? slash : p + strlen(p);
    const char *dbs = slash;
    if (b->sentinel) {
        while (p < hp_end) {
            const char *comma = memchr(p, ',', (size_t)(hp_end - p));
            const char *e = comma ? comma : hp_end;
            if (b->nsent == (int)(sizeof b->sent / sizeof *b->sent))
                return *why = "at most 8 sentinels", -1;
            if (host_port(p, e, &b->sent[b->nsent].host, &b->sent[b->nsent].port, 26379,
                          why) != 0)
                return -1;
            b->nsent++;
            p = comma ? comma + 1 : e;
        }
        if (b->nsent == 0) return *why = "no sentinel", -1;
        if (slash == NULL || slash[1] == 0 || slash[1] == '/')
            return *why = "no master name: redis-sentinel://h1:port,h2:port/MASTER/db",
                   -1;
        const char *m = slash + 1, *ms = strchr(m, '/');
        b->master = strndup(m, ms ? (size_t)(ms - m) : strlen(m));
        dbs = ms;
    } else if (host_port(p, hp_end, &b->host, &b->port, 6379, why) != 0) {
        return -1;
    }
    if (dbs && dbs[1]) {
        char *e;
        long db = strtol(dbs + 1, &e, 10);
        if (*e || db < 0 || db > 65535) return *why = "bad database number", -1;
        b->db = (int)db;
    }
    return 0;
}

/* ------------------------------------------------------------ connections */

/* An error: counted, logged once per burst. */
static void fail(struct rb *b, const char *what, const char *detail)
{
    atomic_fetch_add(&b->errors, 1);
    pthread_mutex_lock(&b->lock);
    uint64_t now = now_ms(), quiet = 0;
    bool log = b->last_log_ms == 0 || now - b->last_log_ms >= ERROR_LOG_EVERY_MS;
    if (log) {
        quiet = b->quiet_errors;
        b->quiet_errors = 0;
        b->last_log_ms = now;
    } else {
        b->quiet_errors++;
    }
    pthread_mutex_unlock(&b->lock);
    if (log && b->sentinel)
        slog(SLOG_WARN,
             "msg=\"redis %s\" cache=%s master=%s error=\"%s\" errors_not_logged=%llu",
             what, b->name, b->master, detail ? detail : "", (unsigned long long)quiet);
    else if (log)
        slog(SLOG_WARN,
             "msg=\"redis %s\" cache=%s server=%s:%d error=\"%s\" "
             "errors_not_logged=%llu",
             what, b->name, b->host, b->port, detail ? detail : "",
             (unsigned long long)quiet);
}

static redisReply *cmd(redisContext *c, int argc, const char **argv, const size_t *lens)
{
    return redisCommandArgv(c, argc, argv, lens);
}

static int setup(struct rb *b, redisContext *c)
{
    if (redisSetTimeout(c, b->command_to) != REDIS_OK) return -1;
    redisReply *r = NULL;
    if (b->pass) {
        const char *av[3] = {"AUTH", b->user ? b->user : b->pass, b->pass};
        r = cmd(c, b->user ? 3 : 2, av, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) goto bad;
        freeReplyObject(r);
    }
    if (b->db) {
        char db[16];
        snprintf(db, sizeof db, "%d", b->db);
        const char *av[2] = {"SELECT", db};
        r = cmd(c, 2, av, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) goto bad;
        freeReplyObject(r);
    }
    return 0;
bad:
    fail(b, "setup failed", r ? r->str : c->errstr);
    if (r) freeReplyObject(r);
    return -1;
}

/* Ask the sentinels for the master's address (the first that answers). */
static int resolve(struct rb *b)
{
    for (int i = 0; i < b->nsent; i++) {
        redisContext *c =
            redisConnectWithTimeout(b->sent[i].host, b->sent[i].port, b->connect_to);
        if (c == NULL || c->err) {
            if (c) redisFree(c);
            continue;
        }
        redisSetTimeout(c, b->command_to);
        redisReply *r =
            redisCommand(c, "SENTINEL get-master-addr-by-name %s", b->master);
        bool ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                  r->element[0]->type == REDIS_REPLY_STRING &&
                  r->element[1]->type == REDIS_REPLY_STRING;
        if (ok) {
            pthread_mutex_lock(&b->lock);
            free(b->host);
            b->host = strdup(r->element[0]->str);
            b->port = atoi(r->element[1]->str);
            b->resolved = b->host != NULL;
            pthread_mutex_unlock(&b->lock);
        }
        if (r) freeReplyObject(r);
        redisFree(c);
        if (ok) return 0;
    }
    fail(b, "no sentinel named the master", b->master);
    return -1;
}

/* A new connection to the server (through the sentinels: to the master
 * they name, checked with ROLE), set up; NULL on failure. */
static redisContext *connect_server(struct rb *b)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        char host[256];
        int port;
        pthread_mutex_lock(&b->lock);
        bool need = b->sentinel && !b->resolved;
        pthread_mutex_unlock(&b->lock);
        if (need && resolve(b) != 0) return NULL;
        pthread_mutex_lock(&b->lock);
        snprintf(host, sizeof host, "%s", b->host ? b->host : "");
        port = b->port;
        pthread_mutex_unlock(&b->lock);
        redisContext *c = redisConnectWithTimeout(host, port, b->connect_to);
        if (c == NULL || c->err || setup(b, c) != 0) {
            if (c && c->err) fail(b, "connect failed", c->errstr);
            if (c) redisFree(c);
            if (!b->sentinel) return NULL;
            pthread_mutex_lock(&b->lock);
            b->resolved = false; /* the master moved? ask again */
            pthread_mutex_unlock(&b->lock);
            continue;
        }
        if (b->sentinel) {
            redisReply *r = redisCommand(c, "ROLE");
            bool master = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
                          r->element[0]->type == REDIS_REPLY_STRING &&
                          strcmp(r->element[0]->str, "master") == 0;
            if (r) freeReplyObject(r);
            if (!master) {
                redisFree(c);
                pthread_mutex_lock(&b->lock);
                b->resolved = false;
                pthread_mutex_unlock(&b->lock);
                continue;
            }
        }
        return c;
    }
    return NULL;
}

/* A connection from the pool, or a new one; NULL while Redis is down. */
static redisContext *conn_get(struct rb *b)
{
    pthread_mutex_lock(&b->lock);
    struct rconn *rc = b->idle;
    if (rc) {
        b->idle = rc->next;
        pthread_mutex_unlock(&b->lock);
        redisContext *c = rc->c;
        free(rc);
        return c;
    }
    if (b->down_until_ms && now_ms() < b->down_until_ms) {
        pthread_mutex_unlock(&b->lock);
        atomic_fetch_add(&b->errors, 1);
        return NULL;
    }
    b->nconn++;
    pthread_mutex_unlock(&b->lock);
    redisContext *c = connect_server(b);
    if (c == NULL) {
        pthread_mutex_lock(&b->lock);
        b->nconn--;
        b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (b->backoff_ms > BACKOFF_MAX_MS) b->backoff_ms = BACKOFF_MAX_MS;
        b->down_until_ms = now_ms() + b->backoff_ms;
        pthread_mutex_unlock(&b->lock);
        return NULL;
    }
    pthread_mutex_lock(&b->lock);
    b->backoff_ms = b->down_until_ms = 0;
    pthread_mutex_unlock(&b->lock);
    return c;
}

/* Back to the pool when it is healthy, else closed. */
static void conn_put(struct rb *b, redisContext *c)
{
    if (c == NULL) return;
    if (c->err) {
        redisFree(c);
        pthread_mutex_lock(&b->lock);
        b->nconn--;
        pthread_mutex_unlock(&b->lock);
        return;
    }
    struct rconn *rc = malloc(sizeof *rc);
    pthread_mutex_lock(&b->lock);
    if (rc && b->nconn <= POOL_MAX) {
        rc->c = c;
        rc->next = b->idle;
        b->idle = rc;
        c = NULL;
        rc = NULL;
    } else {
        b->nconn--;
    }
    pthread_mutex_unlock(&b->lock);
    free(rc);
    if (c) redisFree(c);
}

/* Run a command; NULL (and the error counted) on failure. An error reply
 * is returned as is for the caller to look at. */
static redisReply *run(struct rb *b, int argc, const char **argv, const size_t *lens)
{
    redisContext *c = conn_get(b);
    if (c == NULL) return NULL;
    redisReply *r = cmd(c, argc, argv, lens);
    if (r == NULL) {
        fail(b, "command failed", c->errstr);
        /* A Redis that stopped answering: fail fast for a while, as after a
         * failed connect (and ask the sentinels again). */
        pthread_mutex_lock(&b->lock);
        b->resolved = false;
        b->backoff_ms = b->backoff_ms ? b->backoff_ms * 2 : BACKOFF_MIN_MS;
        if (b->backoff_ms > BACKOFF_MAX_MS) b->backoff_ms = BACKOFF_MAX_MS;
        b->down_until_ms = now_ms() + b->backoff_ms;
        pthread_mutex_unlock(&b->lock);
    } else if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "READONLY")) {
        /* a master that became a replica: drop it, find the new one */
        c->err = REDIS_ERR_OTHER;
        pthread_mutex_lock(&b->lock);
        b->resolved = false;
        pthread_mutex_unlock(&b->lock);
    }
    conn_put(b, c);
    return r;
}

/* EVALSHA, or EVAL when the server does not know the script yet (a new or
 * restarted Redis). argv[0..2] are filled here. */
static redisReply *eval(struct rb *b, const struct script *s, int argc,
                        const char **argv, size_t *lens)
{
    argv[0] = "EVALSHA";
    lens[0] = 7;
    argv[1] = s->sha;
    lens[1] = 40;
    redisReply *r = run(b, argc, argv, lens);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        lens[0] = 4;
        argv[1] = s->src;
        lens[1] = strlen(s->src);
        r = run(b, argc, argv, lens);
    }
    if (r && r->type == REDIS_REPLY_ERROR) {
        fail(b, "script error", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* ------------------------------------------------------------ operations */

static char *full_key(struct rb *b, const void *key, size_t klen, size_t *len)
{
    char *k = malloc(b->kpre_len + klen);
    if (k == NULL) return NULL;
    memcpy(k, b->kpre, b->kpre_len);
    memcpy(k + b->kpre_len, key, klen);
    *len = b->kpre_len + klen;
    return k;
}

/* The value bytes of a stored record, decompressed; with `tags`, its tag
 * names too ('\0'-terminated each, in one malloc'd buffer; *ntags of them). */
static int decode(const char *v, size_t n, strata_value **out, char **tags,
                  size_t *ntags)
{
    if (n < 5 || v[0] != 'S' || v[1] != '1') return STRATA_EBACKEND;
    unsigned flags = (unsigned char)v[2], codec = (unsigned char)v[3],
             nt = (unsigned char)v[4];
    size_t pos = 5, tpos = 0;
    char *tb = NULL;
    if (tags && (tb = malloc(n + 1)) == NULL) return STRATA_ENOMEM;
    for (unsigned i = 0; i < nt; i++) {
        if (pos + 2 > n) goto bad;
        size_t tl = ((size_t)(unsigned char)v[pos] << 8) | (unsigned char)v[pos + 1];
        if (pos + 2 + tl > n) goto bad;
        if (tb) {
            memcpy(tb + tpos, v + pos + 2, tl);
            tb[tpos + tl] = 0;
            tpos += tl + 1;
        }
        pos += 2 + tl;
        if (pos + 1 > n) goto bad;
        pos += 1 + (unsigned char)v[pos];
    }
    if (pos > n) goto bad;
    const char *p = v + pos;
    size_t len = n - pos;
    strata_value *x;
    if (flags & VF_COMPRESSED) {
        size_t orig = core_compressed_len(p, len);
        if (orig > (512u << 20)) goto bad; /* Redis holds at most 512 MB */
        if ((x = core_value_alloc(orig)) == NULL) {
            free(tb);
            return STRATA_ENOMEM;
        }
        if (core_decompress((enum core_codec)codec, p, len,
                            (void *)strata_value_data(x), orig) != 0) {
            strata_value_release(x);
            goto bad;
        }
    } else if ((x = core_value_copy(p, len)) == NULL) {
        free(tb);
        return STRATA_ENOMEM;
    }
    *out = x;
    if (tags) {
        *tags = tb;
        *ntags = nt;
    }
    return STRATA_OK;
bad:
    free(tb);
    return STRATA_EBACKEND;
}

/* A get that also gives the value's tags (the tiered backend fills its L1
 * with them, so a local tag invalidation reaches the copy). */
int backend_redis_get_tags(void *bp, const void *key, size_t klen, strata_value **out,
                           char **tags, size_t *ntags, int64_t *pttl_ms)
{
    if (pttl_ms) *pttl_ms = -1;
    struct rb *b = bp;
    *out = NULL;
    if (tags) *tags = NULL;
    if (ntags) *ntags = 0;
    if (key == NULL || klen == 0) return STRATA_EINVAL;
    size_t kl;
    char *k = full_key(b, key, klen, &kl);
    if (k == NULL) return STRATA_ENOMEM;
    const char *av[5] = {NULL, NULL, "1", k, b->tpre};
    size_t ln[5] = {0, 0, 1, kl, strlen(b->tpre)};
    redisReply *r = eval(b, &b->get, 5, av, ln);
    free(k);
    if (r == NULL) return STRATA_EBACKEND;
    int rc;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[1]->type == REDIS_REPLY_INTEGER) {
        rc = decode(r->element[0]->str, r->element[0]->len, out, tags, ntags);
        if (rc == STRATA_EBACKEND) fail(b, "bad value", "not a strata record");
        if (pttl_ms) *pttl_ms = r->element[1]->integer;
    } else if (r->type == REDIS_REPLY_NIL) {
        rc = STRATA_MISS;
    } else {
        rc = STRATA_EBACKEND;
        fail(b, "bad reply", "get script");
    }
    freeReplyObject(r);
    atomic_fetch_add(rc == STRATA_OK ? &b->hits : &b->misses, 1);
    return rc;
}

static int rb_get(void *bp, const void *key, size_t klen, strata_value **out)
{
    return backend_redis_get_tags(bp, key, klen, out, NULL, NULL, NULL);
}

/* The tag sequence now (for a loader's store veto): 0 when there is none
 * yet (every version later is newer), -1 when Redis did not answer (then
 * nothing is stored: an invalidation could go unseen). */
static int64_t tag_seq(struct rb *b)
{
    const char *av[2] = {"GET", b->seq};
    redisReply *r = run(b, 2, av, NULL);
    int64_t v = -1;
    if (r && r->type == REDIS_REPLY_STRING) v = strtoll(r->str, NULL, 10);
    if (r && r->type == REDIS_REPLY_NIL) v = 0;
    if (r) freeReplyObject(r);
    return v;
}

static int store(struct rb *b, const void *key, size_t klen, const void *val,
                 size_t vlen, const strata_set_opts *opts, int64_t since)
{
    if (key == NULL || klen == 0 || (val == NULL && vlen)) return STRATA_EINVAL;
    size_t nt = opts ? opts->ntags : 0;
    if (nt > 255) return STRATA_EINVAL;
    for (size_t i = 0; i < nt; i++)
        if (opts->tags[i] == NULL || strlen(opts->tags[i]) == 0 ||
            strlen(opts->tags[i]) > 256)
            return STRATA_EINVAL;
    int64_t ttl = opts ? opts->ttl_ms : 0;
    if (ttl == 0) ttl = b->ttl_ms;
    char px[24], since_s[24];
    snprintf(px, sizeof px, "%lld", (long long)(ttl > 0 ? ttl : 0));
    if (since < 0)
        snprintf(since_s, sizeof since_s, "-");
    else
        snprintf(since_s, sizeof since_s, "%lld", (long long)since);
    unsigned char fc[2] = {0, 0};
    void *z = NULL;
    size_t zl = 0;
    if (b->codec != CORE_CODEC_NONE && vlen >= b->min_size &&
        core_compress(b->codec, b->level, val, vlen, &z, &zl) == 0) {
        fc[0] = VF_COMPRESSED;
        fc[1] = (unsigned char)b->codec;
        val = z;
        vlen = zl;
    }
    size_t kl;
    char *k = full_key(b, key, klen, &kl);
    /* EVALSHA sha 1 key | tpre seq px flags+codec payload since tags... */
    const char **av = calloc(10 + nt, sizeof *av);
    size_t *ln = calloc(10 + nt, sizeof *ln);
    int rc = STRATA_ENOMEM;
    if (k && av && ln) {
        const char *args[] = {
            "1", k, b->tpre, b->seq, px, (const char *)fc, val ? val : "", since_s};
        size_t lens[] = {1, kl,   strlen(b->tpre), strlen(b->seq), strlen(px),
                         2, vlen, strlen(since_s)};
        for (size_t i = 0; i < 8; i++) {
            av[2 + i] = args[i];
            ln[2 + i] = lens[i];
        }
        for (size_t i = 0; i < nt; i++) {
            av[10 + i] = opts->tags[i];
            ln[10 + i] = strlen(opts->tags[i]);
        }
        redisReply *r = eval(b, &b->set, (int)(10 + nt), av, ln);
        if (r == NULL)
            rc = STRATA_EBACKEND;
        else
            rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? STRATA_OK
                                                                   : STRATA_MISS;
        if (r) freeReplyObject(r);
    }
    free(k);
    free(av);
    free(ln);
    free(z);
    if (rc == STRATA_OK) atomic_fetch_add(&b->sets, 1);
    return rc;
}

static int rb_set(void *bp, const void *key, size_t klen, const void *val, size_t vlen,
                  const strata_set_opts *opts)
{
    int rc = store(bp, key, klen, val, vlen, opts, -1);
    return rc == STRATA_MISS ? STRATA_OK : rc; /* (no veto without `since`) */
}

static int rb_del(void *bp, const void *key, size_t klen)
{
    struct rb *b = bp;
    if (key == NULL || klen == 0) return STRATA_EINVAL;
    size_t kl;
    char *k = full_key(b, key, klen, &kl);
    if (k == NULL) return STRATA_ENOMEM;
    const char *av[2] = {"UNLINK", k};
    size_t ln[2] = {6, kl};
    redisReply *r = run(b, 2, av, ln);
    free(k);
    if (r == NULL) return STRATA_EBACKEND;
    int rc = r->type != REDIS_REPLY_INTEGER ? STRATA_EBACKEND
             : r->integer > 0               ? STRATA_OK
                                            : STRATA_MISS;
    if (rc == STRATA_EBACKEND)
        fail(b, "delete failed", r->type == REDIS_REPLY_ERROR ? r->str : "");
    freeReplyObject(r);
    if (rc == STRATA_OK) atomic_fetch_add(&b->deletes, 1);
    return rc;
}

/* ----------------------------------------------------------- single flight */

/* Drop a reference to a flight (under b->lock); the last one frees it. */
static void flight_put(struct rflight *f)
{
    if (--f->refs > 0) return;
    pthread_cond_destroy(&f->cv);
    free(f->val);
    free(f->key);
    free(f);
}

static int rb_get_or_set(void *bp, const void *key, size_t klen, strata_loader load,
                         void *ud, const strata_set_opts *opts, strata_value **out)
{
    struct rb *b = bp;
    int rc = rb_get(b, key, klen, out);
    if (rc != STRATA_MISS && rc != STRATA_EBACKEND) return rc;
    /* Redis down: still one loader per key in this process. */
    pthread_mutex_lock(&b->lock);
    struct rflight *f = b->flights;
    while (f && !(f->klen == klen && memcmp(f->key, key, klen) == 0))
        f = f->next;
    if (f) {
        if (pthread_equal(f->owner, pthread_self())) {
            pthread_mutex_unlock(&b->lock);
            return STRATA_EINVAL;
        }
        f->refs++;
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        int64_t ms = b->loader_timeout_ms > 0 ? b->loader_timeout_ms : 30000;
        dl.tv_sec += ms / 1000;
        dl.tv_nsec += (ms % 1000) * 1000000;
        if (dl.tv_nsec >= 1000000000) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000;
        }
        int w = 0;
        while (!f->done && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&f->cv, &b->lock, &dl);
        if (!f->done)
            rc = STRATA_ETIMEDOUT;
        else if (f->rc < 0)
            rc = f->rc;
        else {
            *out = core_value_copy(f->val, f->vlen);
            rc = *out ? STRATA_LOADED : STRATA_ENOMEM;
        }
        flight_put(f);
        pthread_mutex_unlock(&b->lock);
        return rc;
    }
    f = calloc(1, sizeof *f);
    if (f == NULL || (f->key = malloc(klen)) == NULL) {
        free(f);
        pthread_mutex_unlock(&b->lock);
        return STRATA_ENOMEM;
    }
    memcpy(f->key, key, klen);
    f->klen = klen;
    f->owner = pthread_self();
    f->refs = 1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cv, &ca);
    pthread_condattr_destroy(&ca);
    f->next = b->flights;
    b->flights = f;
    pthread_mutex_unlock(&b->lock);

    int64_t since = tag_seq(b);
    void *val = NULL;
    size_t vlen = 0;
    strata_set_opts o = opts ? *opts : (strata_set_opts){0};
    int lr = load(ud, key, klen, &val, &vlen, &o);
    if (lr < 0 || (val == NULL && vlen)) {
        free(val);
        val = NULL; /* (the flight must not free it again) */
        vlen = 0;
        rc = STRATA_ELOADER;
    } else {
        if (since >= 0) /* Redis down: served, not kept */
            store(b, key, klen, val, vlen, &o, since);
        *out = core_value_copy(val ? val : "", vlen);
        rc = *out ? STRATA_LOADED : STRATA_ENOMEM;
    }
    pthread_mutex_lock(&b->lock);
    for (struct rflight **pp = &b->flights; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    f->done = true;
    f->rc = rc == STRATA_LOADED ? STRATA_OK : rc;
    f->val = val;
    f->vlen = vlen;
    pthread_cond_broadcast(&f->cv);
    flight_put(f);
    pthread_mutex_unlock(&b->lock);
    return rc;
}

/* ----------------------------------------------------------- invalidation */

/* SCAN MATCH `match` (under the cache's own prefix) and UNLINK what it
 * finds, in batches. Returns how many keys went, or a negative error. */
static long scan_unlink(struct rb *b, const char *match)
{
    long n = 0;
    char cursor[32] = "0";
    do {
        const char *av[6] = {"SCAN", cursor, "MATCH", match, "COUNT", SCAN_COUNT};
        redisReply *r = run(b, 6, av, NULL);
        if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            if (r) freeReplyObject(r);
            return STRATA_EBACKEND;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (keys->elements) {
            const char **av2 = calloc(keys->elements + 1, sizeof *av2);
            size_t *ln2 = calloc(keys->elements + 1, sizeof *ln2);
            if (av2 == NULL || ln2 == NULL) {
                free(av2);
                free(ln2);
                freeReplyObject(r);
                return STRATA_ENOMEM;
            }
            av2[0] = "UNLINK";
            ln2[0] = 6;
            for (size_t i = 0; i < keys->elements; i++) {
                if (keys->element[i]->type != REDIS_REPLY_STRING) {
                    free(av2);
                    free(ln2);
                    freeReplyObject(r);
                    return STRATA_EBACKEND;
                }
                av2[i + 1] = keys->element[i]->str;
                ln2[i + 1] = keys->element[i]->len;
            }
            redisReply *u = run(b, (int)keys->elements + 1, av2, ln2);
            free(av2);
            free(ln2);
            if (u == NULL) {
                freeReplyObject(r);
                return STRATA_EBACKEND;
            }
            if (u->type != REDIS_REPLY_INTEGER) { /* READONLY and the like */
                fail(b, "unlink failed", u->type == REDIS_REPLY_ERROR ? u->str : "");
                freeReplyObject(u);
                freeReplyObject(r);
                return STRATA_EBACKEND;
            }
            n += (long)u->integer;
            freeReplyObject(u);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

/* The cache's key prefix with the glob's special bytes escaped. */
static char *escaped_prefix(struct rb *b, const char *glob)
{
    size_t gl = strlen(glob);
    char *m = malloc(2 * b->kpre_len + gl + 1), *o = m;
    if (m == NULL) return NULL;
    for (size_t i = 0; i < b->kpre_len; i++) {
        char c = b->kpre[i];
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') *o++ = '\\';
        *o++ = c;
    }
    memcpy(o, glob, gl + 1);
    return m;
}

static long rb_invalidate_pattern(void *bp, const char *glob)
{
    struct rb *b = bp;
    if (!core_glob_valid(glob)) return STRATA_EINVAL;
    /* strata's grammar takes [!a] for [^a]; Redis MATCH only knows [^a] */
    char *g = strdup(glob);
    if (g == NULL) return STRATA_ENOMEM;
    bool in_class = false;
    for (char *c = g; *c; c++) {
        if (*c == '\\' && c[1]) {
            c++;
        } else if (!in_class && *c == '[') {
            in_class = true;
            if (c[1] == '!') c[1] = '^';
        } else if (in_class && *c == ']') {
            in_class = false;
        }
    }
    char *m = escaped_prefix(b, g);
    free(g);
    if (m == NULL) return STRATA_ENOMEM;
    long n = scan_unlink(b, m);
    free(m);
    if (n > 0) atomic_fetch_add(&b->invalidated, (uint64_t)n);
    return n;
}

static long rb_invalidate_tags(void *bp, const char *const *tags, size_t ntags)
{
    struct rb *b = bp;
    if (ntags == 0) return 0;
    const char **av = calloc(ntags + 5, sizeof *av);
    size_t *ln = calloc(ntags + 5, sizeof *ln);
    long rc = STRATA_ENOMEM;
    if (av && ln) {
        av[2] = "0";
        ln[2] = 1;
        av[3] = b->tpre;
        ln[3] = strlen(b->tpre);
        av[4] = b->seq;
        ln[4] = strlen(b->seq);
        rc = 0;
        for (size_t i = 0; i < ntags; i++) {
            if (tags[i] == NULL || tags[i][0] == 0) rc = STRATA_EINVAL;
            av[5 + i] = tags[i];
            ln[5 + i] = tags[i] ? strlen(tags[i]) : 0;
        }
        if (rc == 0) {
            redisReply *r = eval(b, &b->inv, (int)(ntags + 5), av, ln);
            /* Entries go lazily (on their next get): Redis cannot say how
             * many carry the tags without an index per tag. */
            rc = r ? 0 : STRATA_EBACKEND;
            if (r) freeReplyObject(r);
        }
    }
    free(av);
    free(ln);
    return rc;
}

static int rb_clear(void *bp)
{
    struct rb *b = bp;
    long n = rb_invalidate_pattern(b, "*"); /* values only: tagseq never resets */
    return n < 0 ? (int)n : STRATA_OK;
}

static void rb_stats(void *bp, strata_stats *out)
{
    struct rb *b = bp;
    out->hits = atomic_load(&b->hits);
    out->misses = atomic_load(&b->misses);
    out->sets = atomic_load(&b->sets);
    out->deletes = atomic_load(&b->deletes);
    out->errors = atomic_load(&b->errors);
    out->invalidated = atomic_load(&b->invalidated);
    /* items, bytes, evictions, expired: Redis' own (INFO keyspace, stats);
     * counting them per cache would need a scan. */
}

static long rb_sweep(void *bp, size_t budget)
{
    (void)bp;
    (void)budget;
    return 0; /* Redis expires on its own */
}

static void rb_rebase(void *bp)
{
    (void)bp;
}

static void rb_close(void *bp)
{
    struct rb *b = bp;
    if (b == NULL) return;
    while (b->idle) {
        struct rconn *rc = b->idle;
        b->idle = rc->next;
        redisFree(rc->c);
        free(rc);
    }
    pthread_mutex_destroy(&b->lock);
    free(b->name);
    free(b->kpre);
    free(b->tpre);
    free(b->seq);
    free(b->host);
    free(b->user);
    free(b->pass);
    free(b->master);
    for (int i = 0; i < b->nsent; i++)
        free(b->sent[i].host);
    free(b);
}

/* ---- for the tiered backend's invalidation bus ---- */

void *backend_redis_command(void *bp, int argc, const char **argv, const size_t *lens)
{
    struct rb *b = bp;
    redisReply *r = run(b, argc, argv, lens);
    if (r && r->type == REDIS_REPLY_ERROR) {
        fail(b, "command error", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

void *backend_redis_connect(void *bp, int64_t timeout_ms)
{
    struct rb *b = bp;
    redisContext *c = connect_server(b);
    if (c == NULL) return NULL;
    struct timeval tv = {(time_t)(timeout_ms / 1000),
                         (suseconds_t)(timeout_ms % 1000) * 1000};
    redisSetTimeout(c, tv);
    return c;
}

int64_t backend_redis_command_timeout_ms(void *bp)
{
    struct rb *b = bp;
    return (int64_t)b->command_to.tv_sec * 1000 + b->command_to.tv_usec / 1000;
}

long backend_redis_flight_waiters(void *bp, const void *key, size_t klen)
{
    struct rb *b = bp;
    long n = 0;
    pthread_mutex_lock(&b->lock);
    for (struct rflight *f = b->flights; f; f = f->next)
        if (f->klen == klen && memcmp(f->key, key, klen) == 0) n = f->refs - 1;
    pthread_mutex_unlock(&b->lock);
    return n;
}

const struct backend_ops backend_redis_ops = {
    .name = "redis",
    .get = rb_get,
    .set = rb_set,
    .del = rb_del,
    .get_or_set = rb_get_or_set,
    .invalidate_pattern = rb_invalidate_pattern,
    .invalidate_tags = rb_invalidate_tags,
    .clear = rb_clear,
    .stats = rb_stats,
    .sweep = rb_sweep,
    .rebase = rb_rebase,
    .close = rb_close,
};

static struct timeval tv_of(int64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

void *backend_redis_open(const struct config_cache *cc, int *err, const char **why)
{
    struct rb *b = calloc(1, sizeof *b);
    if (b == NULL) {
        *err = STRATA_ENOMEM;
        return NULL;
    }
    pthread_mutex_init(&b->lock, NULL);
    const char *pre = cc->key_prefix ? cc->key_prefix : "strata";
    b->name = strdup(cc->name);
    if (asprintf(&b->kpre, "%s:%s:k:", pre, cc->name) < 0) b->kpre = NULL;
    if (asprintf(&b->tpre, "%s:%s:t:", pre, cc->name) < 0) b->tpre = NULL;
    if (asprintf(&b->seq, "%s:%s:tagseq", pre, cc->name) < 0) b->seq = NULL;
    if (b->name == NULL || b->kpre == NULL || b->tpre == NULL || b->seq == NULL) {
        rb_close(b);
        *err = STRATA_ENOMEM;
        return NULL;
    }
    b->kpre_len = strlen(b->kpre);
    if (parse_url(b, cc->url ? cc->url : "", why) != 0) {
        rb_close(b);
        *err = STRATA_ECONFIG;
        return NULL;
    }
    b->connect_to = tv_of(cc->connect_timeout_ms > 0 ? cc->connect_timeout_ms : 200);
    b->command_to = tv_of(cc->command_timeout_ms > 0 ? cc->command_timeout_ms : 100);
    b->ttl_ms = cc->ttl_ms;
    b->loader_timeout_ms = cc->loader_timeout_ms;
    b->codec = cc->compress == CONFIG_CODEC_ZSTD   ? CORE_CODEC_ZSTD
               : cc->compress == CONFIG_CODEC_LZ4  ? CORE_CODEC_LZ4
               : cc->compress == CONFIG_CODEC_ZLIB ? CORE_CODEC_ZLIB
                                                   : CORE_CODEC_NONE;
    b->level = cc->compress_level;
    b->min_size = cc->compress_min_size;
    script_init(&b->get, get_lua);
    script_init(&b->set, set_lua);
    script_init(&b->inv, inv_lua);
    return b;
}
