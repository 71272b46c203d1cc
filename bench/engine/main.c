/*
 * bench/engine -- the memory engine measured against the physical limit.
 *
 * What one run measures, all in one process so every number shares the same
 * machine state (see docs/benchmarks.md, section "Engine"):
 *
 *   1. metadata bytes per item, in a forked child with a clean heap: a cache
 *      bounded at 1M items is filled with 1M items, then churned through
 *      eviction by 1M new keys; (RSS growth - key and value bytes) / items.
 *   2. for a hot key set (10k keys) and a large one (4M keys): get-hit,
 *      set (overwrite) and a 90/10 get/set mix, with 1 and 2 threads, for
 *      strata and for a reference table.
 *
 * The reference table is the physical limit: a plain, unlocked open-addressing
 * table (xxh3 of the key, linear probing) that stores key and value inline in
 * an 80-byte slot. Its get does the work a cache get must do at the least:
 * hash, probe, compare the 16-byte key, copy the 64-byte value out. strata's
 * get is strata_get + the same copy + strata_value_release. Every strata
 * number is printed as a ratio to the reference on the same request stream.
 *
 * Request streams are arrays of key indices drawn from a Zipf(0.99)
 * distribution (rejection-inversion sampling, Hormann & Derflinger 1996),
 * computed before any timing. Keys are 16 bytes, the "%016x" form of the
 * index, built on the fly in the timed loop (a few ALU instructions, so the
 * loop reads no key array). Both tables are filled in the same shuffled
 * order, so popular keys are not packed together in memory by accident.
 *
 * Each measurement: warm up, then time a fixed number of operations with
 * CLOCK_MONOTONIC; repeated 3 times, the median is reported. With T threads,
 * each thread runs its own slice of the stream; throughput is the total
 * operation count over the span from the first start to the last finish.
 * The reference is read by 2 threads only for get (read-only, so safe);
 * it has no 2-thread set or mix, since it has no locks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "strata.h"

#define KLEN 16
#define VLEN 64
#define ZIPF_S 0.99
#define HOT_KEYS 10000u
#define LARGE_KEYS 4000000u
#define META_ITEMS 1000000u
#define REPS 3
#define MAX_THREADS 2
#define SET_FLAG 0x80000000u /* in a mix stream: this request is a set */

/* ------------------------------------------------------------ utilities */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench-engine: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) die("out of memory");
    return p;
}

/* splitmix64: seeds and small draws. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_double(uint64_t *s)
{
    return (double)(rng_next(s) >> 11) * 0x1.0p-53;
}

/* The key of index i: "%016x" of i, built without snprintf. The 8 low
 * nibbles are spread one per byte, turned into ASCII hex digits, and
 * byte-swapped into string order; the 8 high digits of a 32-bit index are
 * always '0'. */
static inline void make_key(uint32_t i, unsigned char k[KLEN])
{
    uint64_t x = i;
    x = ((x & 0xffff0000ull) << 16) | (x & 0xffffull);
    x = ((x & 0x0000ff000000ff00ull) << 8) | (x & 0x000000ff000000ffull);
    x = ((x & 0x00f000f000f000f0ull) << 4) | (x & 0x000f000f000f000full);
    uint64_t letter = ((x + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    x += 0x3030303030303030ull + letter * ('a' - '0' - 10);
    x = __builtin_bswap64(x);
    memcpy(k, "00000000", 8);
    memcpy(k + 8, &x, 8);
}

/* The value of index i: 8 words derived from it (the first word is i). */
static void make_val(uint32_t i, unsigned char v[VLEN])
{
    uint64_t w = i;
    for (unsigned j = 0; j < VLEN / 8; j++) {
        memcpy(v + 8 * j, &w, 8);
        w = w * 0x9e3779b97f4a7c15ull + j + 1;
    }
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* "Read the value": copy it out and make the copy observable, as a caller
 * that returns the value would. Identical for strata and the reference. */
static inline uint64_t consume(const void *val)
{
    unsigned char buf[VLEN];
    memcpy(buf, val, VLEN);
    __asm__ volatile("" : : "r"(buf) : "memory");
    return load64(buf) ^ load64(buf + VLEN - 8);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median3(double v[REPS])
{
    double s[REPS];
    memcpy(s, v, sizeof s);
    qsort(s, REPS, sizeof s[0], cmp_double);
    return s[REPS / 2];
}

/* Resident set size in bytes (/proc/self/statm, second field). */
static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f == NULL) return 0;
    if (fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    fclose(f);
    return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* The 1-minute load average: other work on the machine skews every number. */
static double loadavg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* CPU seconds the whole machine spent busy (/proc/stat), and this process
 * (with its waited-for children): the difference is other work that ran
 * during the benchmark and skewed it. */
static double machine_busy_s(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL) return -1;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1;
    /* user nice system [idle] [iowait] irq softirq steal */
    unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu_s(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec +
                    b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec +
                    b.ru_stime.tv_usec) /
               1e6;
}

/* ----------------------------------------------------------- Zipf(0.99) */

/* Rejection-inversion sampling of Zipf over 1..n with exponent s: O(1) per
 * draw, exact (W. Hormann, G. Derflinger, "Rejection-inversion to generate
 * variates from monotone discrete distributions", 1996). */
struct zipf {
    double n, s, hx1, hn, sv;
};

static double zh1(double x) /* log1p(x)/x */
{
    return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x));
}

static double zh2(double x) /* expm1(x)/x */
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x / 3 * (1 + 0.25 * x));
}

static double zipf_h(const struct zipf *z, double x)
{
    return exp(-z->s * log(x));
}

static double zipf_hint(const struct zipf *z, double x)
{
    double lx = log(x);
    return zh2((1 - z->s) * lx) * lx;
}

static double zipf_hinv(const struct zipf *z, double x)
{
    double t = x * (1 - z->s);
    if (t < -1) t = -1;
    return exp(zh1(t) * x);
}

static void zipf_init(struct zipf *z, uint32_t n, double s)
{
    z->n = n;
    z->s = s;
    z->hx1 = zipf_hint(z, 1.5) - 1;
    z->hn = zipf_hint(z, n + 0.5);
    z->sv = 2 - zipf_hinv(z, zipf_hint(z, 2.5) - zipf_h(z, 2));
}

/* A rank in 1..n; rank 1 is the most popular. */
static uint32_t zipf_draw(const struct zipf *z, uint64_t *rng)
{
    for (;;) {
        double u = z->hn + rng_double(rng) * (z->hx1 - z->hn);
        double x = zipf_hinv(z, u);
        double k = floor(x + 0.5);
        if (k < 1)
            k = 1;
        else if (k > z->n)
            k = z->n;
        if (k - x <= z->sv || u >= zipf_hint(z, k + 0.5) - zipf_h(z, k))
            return (uint32_t)k;
    }
}

/* --------------------------------------------------- the reference table */

/* One slot holds key and value inline; an empty slot has key[0] == 0, which
 * no generated key has (they are ASCII). Capacity: a power of two at least
 * twice the number of keys (load factor <= 0.5). */
struct ref_slot {
    unsigned char key[KLEN];
    unsigned char val[VLEN];
};

struct ref_table {
    struct ref_slot *slot;
    uint64_t mask;
    size_t bytes;
};

static void ref_init(struct ref_table *t, size_t nkeys)
{
    uint64_t cap = 16;
    while (cap < 2 * nkeys)
        cap *= 2;
    t->bytes = cap * sizeof(struct ref_slot);
    t->slot = mmap(NULL, t->bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (t->slot == MAP_FAILED) die("mmap of the reference table failed");
    t->mask = cap - 1;
}

static void ref_fini(struct ref_table *t)
{
    munmap(t->slot, t->bytes);
}

/* The slot holding `key`, or the empty slot where it would go. */
static inline struct ref_slot *ref_probe(const struct ref_table *t,
                                         const unsigned char *key)
{
    uint64_t pos = XXH3_64bits(key, KLEN) & t->mask;
    for (;;) {
        struct ref_slot *s = &t->slot[pos];
        if (s->key[0] == 0 || memcmp(s->key, key, KLEN) == 0) return s;
        pos = (pos + 1) & t->mask;
    }
}

static inline void ref_put(struct ref_table *t, const unsigned char *key,
                           const unsigned char *val)
{
    struct ref_slot *s = ref_probe(t, key);
    if (s->key[0] == 0) memcpy(s->key, key, KLEN);
    memcpy(s->val, val, VLEN);
}

struct ref_fill {
    struct ref_table *t;
    const uint32_t *order;
    uint32_t n;
};

static void *ref_fill_main(void *arg)
{
    struct ref_fill *f = arg;
    unsigned char key[KLEN], val[VLEN];
    for (uint32_t i = 0; i < f->n; i++) {
        make_key(f->order[i], key);
        make_val(f->order[i], val);
        ref_put(f->t, key, val);
    }
    return NULL;
}

/* ---------------------------------------------------------- measurement */

enum impl { IMPL_STRATA, IMPL_REF };
enum op { OP_GET, OP_SET, OP_MIX };
static const char *const op_name[] = {"get", "set", "mix"};

struct job {
    enum impl impl;
    enum op op;
    strata_cache *cache;
    struct ref_table *ref;
    const uint32_t *stream; /* key indices; in a mix stream SET_FLAG marks sets */
    size_t len;
    size_t off;  /* where the timed slice starts */
    size_t n;    /* timed operations */
    size_t warm; /* untimed operations before (the slice just before off) */
    int cpu;     /* -1: not pinned */
    pthread_barrier_t *bar;
    uint64_t t0, t1;
    uint64_t misses, errors, sink;
};

/* The timed loops, one per implementation so that the inner loop makes no
 * indirect call; noinline keeps them apart in profiles. Both loops do the
 * same work around the table: read the stream, build the key, and on a get
 * copy the value out (consume), on a set write a value whose first word is
 * the index. */
__attribute__((noinline)) static void run_strata(struct job *j, size_t pos, size_t n)
{
    unsigned char key[KLEN], val[VLEN];
    uint64_t sink = 0, misses = 0, errors = 0;
    make_val(0, val);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = j->stream[pos];
        if (++pos == j->len) pos = 0;
        uint32_t idx = r & ~SET_FLAG;
        make_key(idx, key);
        if (j->op == OP_SET || (j->op == OP_MIX && (r & SET_FLAG))) {
            uint64_t w = idx;
            memcpy(val, &w, 8);
            if (strata_set(j->cache, key, KLEN, val, VLEN, NULL) != STRATA_OK) errors++;
            continue;
        }
        strata_value *v;
        int rc = strata_get(j->cache, key, KLEN, &v);
        if (rc == STRATA_OK) {
            if (strata_value_len(v) == VLEN)
                sink += consume(strata_value_data(v));
            else
                errors++;
            strata_value_release(v);
        } else if (rc == STRATA_MISS) {
            misses++;
        } else {
            errors++;
        }
    }
    j->sink += sink;
    j->misses += misses;
    j->errors += errors;
}

__attribute__((noinline)) static void run_ref(struct job *j, size_t pos, size_t n)
{
    unsigned char key[KLEN], val[VLEN];
    uint64_t sink = 0, misses = 0;
    make_val(0, val);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = j->stream[pos];
        if (++pos == j->len) pos = 0;
        uint32_t idx = r & ~SET_FLAG;
        make_key(idx, key);
        if (j->op == OP_SET || (j->op == OP_MIX && (r & SET_FLAG))) {
            uint64_t w = idx;
            memcpy(val, &w, 8);
            ref_put(j->ref, key, val);
            continue;
        }
        struct ref_slot *s = ref_probe(j->ref, key);
        if (s->key[0] != 0)
            sink += consume(s->val);
        else
            misses++;
    }
    j->sink += sink;
    j->misses += misses;
}

static void run_ops(struct job *j, size_t pos, size_t n)
{
    if (j->impl == IMPL_STRATA)
        run_strata(j, pos, n);
    else
        run_ref(j, pos, n);
}

static void *job_main(void *arg)
{
    struct job *j = arg;
    if (j->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(j->cpu, &set);
        (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    run_ops(j, (j->off + j->len - j->warm % j->len) % j->len, j->warm);
    pthread_barrier_wait(j->bar);
    j->t0 = now_ns();
    run_ops(j, j->off, j->n);
    j->t1 = now_ns();
    return NULL;
}

static int cpus[MAX_THREADS];
static int ncpus;

static void find_cpus(void)
{
    cpu_set_t set;
    ncpus = 0;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return;
    for (int c = 0; c < CPU_SETSIZE && ncpus < MAX_THREADS; c++)
        if (CPU_ISSET(c, &set)) cpus[ncpus++] = c;
}

struct result {
    double ops_s;
    uint64_t misses, errors;
};

/* One timed run: `threads` threads, `total` operations between them. */
static struct result measure(enum impl impl, enum op op, unsigned threads,
                             strata_cache *c, struct ref_table *ref,
                             const uint32_t *stream, size_t len, size_t total,
                             size_t warm)
{
    struct job jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, threads);
    for (unsigned t = 0; t < threads; t++) {
        jobs[t] = (struct job){
            .impl = impl,
            .op = op,
            .cache = c,
            .ref = ref,
            .stream = stream,
            .len = len,
            .off = len / threads * t,
            .n = total / threads,
            .warm = warm / threads,
            .cpu = ncpus >= (int)threads ? cpus[t] : -1,
            .bar = &bar,
        };
        if (pthread_create(&tid[t], NULL, job_main, &jobs[t]) != 0)
            die("pthread_create failed");
    }
    uint64_t t0 = UINT64_MAX, t1 = 0;
    struct result r = {0};
    uint64_t sink = 0;
    for (unsigned t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        t0 = jobs[t].t0 < t0 ? jobs[t].t0 : t0;
        t1 = jobs[t].t1 > t1 ? jobs[t].t1 : t1;
        r.misses += jobs[t].misses;
        r.errors += jobs[t].errors;
        sink += jobs[t].sink;
    }
    pthread_barrier_destroy(&bar);
    __asm__ volatile("" : : "r"(sink));
    r.ops_s = (double)(total / threads * threads) / ((double)(t1 - t0) / 1e9);
    return r;
}

/* ------------------------------------------------------------- options */

struct opts {
    bool quick;
    const char *only;  /* NULL: everything; else "meta", "hot" or "large" */
    size_t stream_len; /* requests per precomputed stream */
    size_t get_ops;    /* timed operations per get / mix measurement */
    size_t set_ops;    /* per set measurement */
    size_t warm_ops;
};

/* ------------------------------------------------------------- the cache */

static char *write_config(const char *yaml)
{
    const char *dir = getenv("TMPDIR");
    char *path;
    if (asprintf(&path, "%s/strata-bench-XXXXXX", dir && *dir ? dir : "/tmp") < 0)
        die("out of memory");
    int fd = mkstemp(path);
    if (fd < 0) die("cannot create a temporary config file");
    size_t n = strlen(yaml);
    if (write(fd, yaml, n) != (ssize_t)n) die("cannot write the temporary config file");
    close(fd);
    return path;
}

static strata *open_cache(const char *yaml, strata_cache **c)
{
    char *path = write_config(yaml);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    free(path);
    if (s == NULL) {
        fprintf(stderr, "bench-engine: strata_open: %s\n", err ? err : "failed");
        exit(1);
    }
    *c = strata_cache_get(s, "bench");
    if (*c == NULL) die("no cache named bench");
    return s;
}

/* --------------------------------------------------- metadata per item */

struct meta {
    uint64_t rss_before, rss_after, items, bytes, evictions;
    double per_item, engine_per_item;
    int ok;
};

static void meta_child(int fd)
{
    struct meta m = {0};
    strata_cache *c;
    /* Bounded by count; max_memory is the default (256MB, room for the
     * ~112 MB this holds), so the cache runs on ordinary pages: caches of
     * 1 GB or more use huge pages, which cost up to 2 MB more per shard. */
    strata *s = open_cache("caches:\n  bench: { max_memory: 256MB, max_items: 1000000, "
                           "ttl: never }\n",
                           &c);
    unsigned char key[KLEN], val[VLEN];
    m.rss_before = rss_bytes();
    /* Keys are made on the fly so that only the cache's memory grows. */
    for (uint32_t i = 0; i < 2 * META_ITEMS; i++) {
        make_key(i, key);
        make_val(i, val);
        if (strata_set(c, key, KLEN, val, VLEN, NULL) != STRATA_OK) _exit(2);
    }
    m.rss_after = rss_bytes();
    strata_stats st;
    strata_cache_stats(c, &st);
    m.items = st.items;
    m.bytes = st.bytes;
    m.evictions = st.evictions;
    if (m.items) {
        m.per_item = ((double)m.rss_after - (double)m.rss_before -
                      (double)m.items * (KLEN + VLEN)) /
                     (double)m.items;
        m.engine_per_item = (double)m.bytes / (double)m.items;
    }
    m.ok = 1;
    if (write(fd, &m, sizeof m) != (ssize_t)sizeof m) _exit(3);
    strata_close(s);
    _exit(0);
}

/* Run in a forked child, so its RSS holds nothing but the cache. */
static struct meta measure_meta(void)
{
    struct meta m = {0};
    int p[2];
    if (pipe(p) != 0) die("pipe failed");
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork failed");
    if (pid == 0) {
        close(p[0]);
        meta_child(p[1]);
    }
    close(p[1]);
    if (read(p[0], &m, sizeof m) != (ssize_t)sizeof m) m.ok = 0;
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) m.ok = 0;
    return m;
}

/* ------------------------------------------------------------ key sets */

struct row {
    const char *set;
    uint32_t nkeys;
    enum op op;
    unsigned threads;
    double strata, ref; /* median ops/s; ref 0 = not measured */
};

#define MAX_ROWS 16
static struct row rows[MAX_ROWS];
static unsigned nrows;
static bool warned;

static struct row *add_row(const char *set, uint32_t nkeys, enum op op, unsigned thr)
{
    struct row *r = &rows[nrows++];
    *r = (struct row){.set = set, .nkeys = nkeys, .op = op, .threads = thr};
    return r;
}

static void check(const char *what, struct result r, bool expect_hits)
{
    if (r.errors || (expect_hits && r.misses)) {
        fprintf(stderr,
                "WARNING: %s: %" PRIu64 " misses, %" PRIu64 " errors (expected none)\n",
                what, r.misses, r.errors);
        warned = true;
    }
}

static void bench_set(const struct opts *o, const char *name, uint32_t nkeys,
                      uint64_t seed)
{
    uint64_t t_setup = now_ns();
    uint64_t rng = seed;
    /* Streams first, then the tables: timing starts with everything built. */
    struct zipf z;
    zipf_init(&z, nkeys, ZIPF_S);
    uint32_t *stream = xmalloc(o->stream_len * sizeof *stream);
    uint32_t *mix = xmalloc(o->stream_len * sizeof *mix);
    for (size_t i = 0; i < o->stream_len; i++) {
        stream[i] = zipf_draw(&z, &rng) - 1;
        mix[i] = stream[i] | (rng_next(&rng) % 10 == 0 ? SET_FLAG : 0);
    }
    uint32_t *order = xmalloc((size_t)nkeys * sizeof *order);
    for (uint32_t i = 0; i < nkeys; i++)
        order[i] = i;
    for (uint32_t i = nkeys - 1; i > 0; i--) {
        uint32_t k = (uint32_t)(rng_next(&rng) % (i + 1));
        uint32_t t = order[i];
        order[i] = order[k];
        order[k] = t;
    }

    strata_cache *c;
    strata *s = open_cache("caches:\n  bench: { max_memory: 4GB, ttl: never }\n", &c);
    struct ref_table ref;
    ref_init(&ref, nkeys);
    /* The two fills are independent: the reference fills on a second thread. */
    struct ref_fill rf = {.t = &ref, .order = order, .n = nkeys};
    pthread_t filler;
    if (pthread_create(&filler, NULL, ref_fill_main, &rf) != 0)
        die("pthread_create failed");
    unsigned char key[KLEN], val[VLEN];
    for (uint32_t i = 0; i < nkeys; i++) {
        make_key(order[i], key);
        make_val(order[i], val);
        if (strata_set(c, key, KLEN, val, VLEN, NULL) != STRATA_OK)
            die("strata_set failed while filling");
    }
    pthread_join(filler, NULL);
    free(order);
    /* Both tables answer the same for a sample of keys. */
    for (uint32_t i = 0; i < 1000; i++) {
        uint32_t idx = (uint32_t)(rng_next(&rng) % nkeys);
        strata_value *v;
        make_key(idx, key);
        make_val(idx, val);
        if (strata_get(c, key, KLEN, &v) != STRATA_OK || strata_value_len(v) != VLEN ||
            memcmp(strata_value_data(v), val, VLEN) != 0)
            die("strata returned a wrong value while checking");
        strata_value_release(v);
        struct ref_slot *rs = ref_probe(&ref, key);
        if (rs->key[0] == 0 || memcmp(rs->val, val, VLEN) != 0)
            die("the reference table returned a wrong value while checking");
    }
    strata_stats st0, st1;
    strata_cache_stats(c, &st0);
    printf("# %s set: %" PRIu32 " keys, strata %.1f MB charged, reference %.1f MB, "
           "setup %.1f s\n",
           name, nkeys, (double)st0.bytes / 1048576.0, (double)ref.bytes / 1048576.0,
           (double)(now_ns() - t_setup) / 1e9);
    fflush(stdout);

    static const struct {
        enum op op;
        unsigned threads;
        bool ref;
    } plan[] = {
        {OP_GET, 1, true},  {OP_GET, 2, true}, {OP_SET, 1, true},
        {OP_SET, 2, false}, {OP_MIX, 1, true}, {OP_MIX, 2, false},
    };
    for (size_t p = 0; p < sizeof plan / sizeof plan[0]; p++) {
        enum op op = plan[p].op;
        unsigned thr = plan[p].threads;
        const uint32_t *str = op == OP_MIX ? mix : stream;
        size_t n = op == OP_SET ? o->set_ops : o->get_ops;
        size_t warm = op == OP_SET ? o->warm_ops / 2 : o->warm_ops;
        double vs[REPS], vr[REPS];
        char what[64];
        snprintf(what, sizeof what, "%s %s %u thread(s)", name, op_name[op], thr);
        strata_cache_stats(c, &st0);
        for (int k = 0; k < REPS; k++) {
            struct result r =
                measure(IMPL_STRATA, op, thr, c, NULL, str, o->stream_len, n, warm);
            check(what, r, op != OP_SET);
            vs[k] = r.ops_s;
            vr[k] = 0;
            if (plan[p].ref) {
                r = measure(IMPL_REF, op, thr, NULL, &ref, str, o->stream_len, n, warm);
                check(what, r, op != OP_SET);
                vr[k] = r.ops_s;
            }
        }
        strata_cache_stats(c, &st1);
        if (op != OP_SET && st1.misses != st0.misses) {
            fprintf(stderr,
                    "WARNING: %s: strata stats show %" PRIu64
                    " misses during a get-hit run\n",
                    what, st1.misses - st0.misses);
            warned = true;
        }
        if (st1.evictions != st0.evictions) {
            fprintf(stderr, "WARNING: %s: %" PRIu64 " evictions during the run\n", what,
                    st1.evictions - st0.evictions);
            warned = true;
        }
        struct row *row = add_row(name, nkeys, op, thr);
        row->strata = median3(vs);
        row->ref = plan[p].ref ? median3(vr) : 0;
        printf("#   %-4s %u thr: strata %7.2f Mops/s", op_name[op], thr,
               row->strata / 1e6);
        if (row->ref)
            printf("   limit %7.2f Mops/s   ratio %.3f", row->ref / 1e6,
                   row->strata / row->ref);
        printf("\n");
        fflush(stdout);
    }
    strata_close(s);
    ref_fini(&ref);
    free(stream);
    free(mix);
}

static const struct row *find_row(const char *set, enum op op, unsigned threads)
{
    for (unsigned i = 0; i < nrows; i++)
        if (strcmp(rows[i].set, set) == 0 && rows[i].op == op &&
            rows[i].threads == threads)
            return &rows[i];
    return NULL;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bench-engine [--quick] [--only=meta|hot|large]\n"
            "  Engine throughput against an unlocked open-addressing table, and\n"
            "  metadata bytes per item. --quick: fewer operations (smoke run);\n"
            "  --only: one part (for profiling; targets of the others are skipped).\n"
            "  Results: docs/benchmarks.md, section Engine.\n");
}

struct target {
    const char *name, *what;
    double value, limit;
    bool at_least; /* value >= limit passes; else value <= limit */
};

int main(int argc, char **argv)
{
    struct opts o = {.stream_len = 16u << 20,
                     .get_ops = 12000000,
                     .set_ops = 4000000,
                     .warm_ops = 2000000};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            o.quick = true;
        } else if (strncmp(argv[i], "--only=", 7) == 0 &&
                   (strcmp(argv[i] + 7, "meta") == 0 ||
                    strcmp(argv[i] + 7, "hot") == 0 ||
                    strcmp(argv[i] + 7, "large") == 0)) {
            o.only = argv[i] + 7;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (o.quick) {
        o.stream_len = 2u << 20;
        o.get_ops = 1000000;
        o.set_ops = 400000;
        o.warm_ops = 200000;
    }
    for (uint32_t i = 0; i < 70000; i += 997) {
        /* The fast key encoder is exactly "%016x". */
        char want[KLEN + 1];
        unsigned char got[KLEN];
        snprintf(want, sizeof want, "%016x", i);
        make_key(i, got);
        if (memcmp(want, got, KLEN) != 0) die("make_key disagrees with %016x");
    }
    find_cpus();

    char cmd[512] = "";
    for (int i = 0; i < argc; i++) {
        strncat(cmd, argv[i], sizeof cmd - strlen(cmd) - 2);
        if (i + 1 < argc) strcat(cmd, " ");
    }
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %Z", localtime(&t));
    printf("strata engine benchmark\n");
    printf("command: %s\n", cmd);
    double load0 = loadavg();
    printf("date: %s   nproc: %ld   load average: %.2f   pinned to cpus:", date,
           sysconf(_SC_NPROCESSORS_ONLN), load0);
    for (int i = 0; i < ncpus; i++)
        printf(" %d", cpus[i]);
    printf("\nkeys %d B (\"%%016x\"), values %d B, Zipf %.2f, %zu ops per get/mix "
           "measurement, %zu per set, median of %d\n",
           KLEN, VLEN, ZIPF_S, o.get_ops, o.set_ops, REPS);
    printf(
        "limit = unlocked open-addressing table: xxh3, linear probing, key and value "
        "inline (80 B slots, load <= 0.5)\n"
        "strata get = strata_get + copy of the 64 B value + strata_value_release; "
        "set = strata_set of an existing key\n\n");
    fflush(stdout);
    uint64_t t_start = now_ns();
    double busy0 = machine_busy_s(), self0 = self_cpu_s();

    /* Before anything big is allocated, so the child forks small. */
    struct meta m = {0};
    bool do_meta = !o.only || strcmp(o.only, "meta") == 0;
    if (do_meta) {
        m = measure_meta();
        if (!m.ok) die("the metadata measurement failed");
        printf("# metadata: %" PRIu64 " items after churn (%" PRIu64 " evictions), "
               "RSS %+.1f MB\n\n",
               m.items, m.evictions,
               ((double)m.rss_after - (double)m.rss_before) / 1048576.0);
    }
    if (!o.only || strcmp(o.only, "hot") == 0)
        bench_set(&o, "hot", HOT_KEYS, 0x5eed0001);
    if (!o.only || strcmp(o.only, "large") == 0)
        bench_set(&o, "large", LARGE_KEYS, 0x5eed0002);

    /* ---- the table ---- */
    if (nrows)
        printf("\n%-6s %8s %-4s %3s %14s %14s %7s\n", "set", "keys", "op", "thr",
               "strata Mops/s", "limit Mops/s", "ratio");
    for (unsigned i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        printf("%-6s %8" PRIu32 " %-4s %3u %14.2f", r->set, r->nkeys, op_name[r->op],
               r->threads, r->strata / 1e6);
        if (r->ref)
            printf(" %14.2f %7.3f\n", r->ref / 1e6, r->strata / r->ref);
        else
            printf(" %14s %7s\n", "-", "-");
    }

    /* ---- targets ---- */
    struct target tg[8];
    unsigned nt = 0;
    double scal[2][2] = {{0, 0}, {0, 0}}; /* [hot, large][strata, limit] speedup */
    printf("\n");
    for (int k = 0; k < 2; k++) {
        const char *set = k == 0 ? "hot" : "large";
        const struct row *r1 = find_row(set, OP_GET, 1), *r2 = find_row(set, OP_GET, 2);
        if (r1 == NULL || r2 == NULL) continue;
        static const char *const ratio_name[] = {"get_hot_ratio", "get_large_ratio"};
        static const char *const ratio_what[] = {
            "get-hit, hot set, 1 thread (x limit)",
            "get-hit, large set, 1 thread (x limit)"};
        static const char *const scal_name[] = {"get_hot_scaling", "get_large_scaling"};
        static const char *const scal_what[] = {
            "2-thread speedup, hot set (x limit's speedup)",
            "2-thread speedup, large set (x limit's speedup)"};
        double ss = r2->strata / r1->strata, rs = r2->ref / r1->ref;
        tg[nt++] = (struct target){ratio_name[k], ratio_what[k], r1->strata / r1->ref,
                                   k == 0 ? 0.3 : 0.5, true};
        tg[nt++] = (struct target){scal_name[k], scal_what[k], ss / rs, 0.85, true};
        printf("2-thread speedup on get, %s set: strata %.2fx, limit %.2fx\n", set, ss,
               rs);
        scal[k][0] = ss;
        scal[k][1] = rs;
    }
    if (do_meta) {
        tg[nt++] =
            (struct target){"meta_bytes_per_item",
                            "metadata bytes per item (memcached 56, CacheLib 31)",
                            m.per_item, 32, false};
        printf("metadata: RSS %.1f B/item beyond key+value (RSS %+" PRId64
               " B for %" PRIu64
               " items); engine `bytes` stat %.1f B/item (%.1f beyond "
               "key+value)\n",
               m.per_item, (int64_t)(m.rss_after - m.rss_before), m.items,
               m.engine_per_item, m.engine_per_item - (KLEN + VLEN));
    }

    printf("\n%-50s %9s %8s %s\n", "target", "value", "bound", "verdict");
    bool all = true;
    for (unsigned i = 0; i < nt; i++) {
        bool pass =
            tg[i].at_least ? tg[i].value >= tg[i].limit : tg[i].value <= tg[i].limit;
        all &= pass;
        printf("%-50s %9.3f %2s%6.2f %s\n", tg[i].what, tg[i].value,
               tg[i].at_least ? ">=" : "<=", tg[i].limit, pass ? "PASS" : "FAIL");
    }
    double wall = (double)(now_ns() - t_start) / 1e9;
    double other = (machine_busy_s() - busy0) - (self_cpu_s() - self0);
    if (other < 0 || busy0 < 0) other = 0;
    double other_pct = 100 * other / (wall * (double)sysconf(_SC_NPROCESSORS_ONLN));
    printf("\nelapsed %.1f s; other processes used %.1f CPU-s meanwhile (%.0f%% of the "
           "machine)%s%s\n\n",
           wall, other, other_pct,
           other_pct > 5 ? ": the numbers are skewed, rerun on an idle machine" : "",
           warned ? "  (WARNINGS above: see stderr)" : "");

    /* ---- machine-parsable ---- */
    printf("RESULT name=run command=\"%s\" date=\"%s\" nproc=%ld load_start=%.2f "
           "other_cpu_pct=%.1f elapsed_s=%.1f quick=%d reps=%d get_ops=%zu set_ops=%zu "
           "warnings=%d\n",
           cmd, date, sysconf(_SC_NPROCESSORS_ONLN), load0, other_pct, wall, o.quick,
           REPS, o.get_ops, o.set_ops, warned);
    for (unsigned i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        printf("RESULT name=%s_%s_t%u keys=%" PRIu32 " strata_ops_s=%.0f",
               op_name[r->op], r->set, r->threads, r->nkeys, r->strata);
        if (r->ref) printf(" limit_ops_s=%.0f ratio=%.4f", r->ref, r->strata / r->ref);
        printf("\n");
    }
    for (int k = 0; k < 2; k++)
        if (scal[k][0] > 0)
            printf(
                "RESULT name=get_scaling_%s strata_speedup=%.4f limit_speedup=%.4f\n",
                k == 0 ? "hot" : "large", scal[k][0], scal[k][1]);
    if (do_meta)
        printf("RESULT name=meta items=%" PRIu64 " rss_before=%" PRIu64
               " rss_after=%" PRIu64 " bytes_per_item=%.2f engine_bytes_per_item=%.2f "
               "memcached=56 cachelib=31\n",
               m.items, m.rss_before, m.rss_after, m.per_item, m.engine_per_item);
    for (unsigned i = 0; i < nt; i++) {
        bool pass =
            tg[i].at_least ? tg[i].value >= tg[i].limit : tg[i].value <= tg[i].limit;
        printf("RESULT name=target_%s value=%.4f bound=%s%.2f status=%s\n", tg[i].name,
               tg[i].value, tg[i].at_least ? ">=" : "<=", tg[i].limit,
               pass ? "PASS" : "FAIL");
    }
    printf("RESULT name=targets status=%s%s\n", all ? "PASS" : "FAIL",
           o.only ? " partial=1" : "");
    return 0;
}
