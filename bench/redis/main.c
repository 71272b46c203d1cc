/*
 * bench/redis -- strata's Redis backend against redis-benchmark, on the same
 * redis-server in the same run, as ratios; and a two-node tiered cache's hit
 * rate and latency.
 *
 *   build/bench-redis [--quick]
 *
 * It starts its own redis-server on a free loopback port (Debian's
 * redis-server and redis-benchmark; says so and exits 77 when they are
 * missing) and stops it at the end.
 *
 *   sync    strata_get / strata_set of 64-byte values on 100 000 keys, from 1
 *           and 4 threads (the C API's blocking path, one connection per
 *           thread from the pool), against `redis-benchmark -t get,set -d 64
 *           -r 100000 -c 1|4 -P 1` (plain GET/SET, no pipelining). strata's
 *           get is an EVALSHA that also checks tag versions, its set a script
 *           that records them: the ratio is what that costs.
 *   tiered  two strata nodes (tiered caches, L1 over the same Redis) reading a
 *           Zipf(0.99) mix of 100 000 keys, 5% of them writes; hit rate of
 *           L1, and mean/p99 latency of a get.
 *   async   not measured: the asynchronous path (strata serve on Redis) is not
 *           built yet (issue 5).
 *
 * Results: docs/benchmarks.md, section Redis.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "strata.h"

#define KEYS 100000
#define VLEN 64

static int port;
static pid_t server = -1;
static long ops_per_thread = 100000;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

static void stop(void)
{
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        server = -1;
    }
}

static int start(void)
{
    char p[16];
    port = free_port();
    snprintf(p, sizeof p, "%d", port);
    server = fork();
    if (server == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("redis-server", "redis-server", "--port", p, "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", (char *)NULL);
        _exit(127);
    }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d ping >/dev/null 2>&1", port);
    for (int i = 0; i < 500; i++) {
        if (system(cmd) == 0) return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

/* redis-benchmark's requests per second for one test. */
static double redis_benchmark(const char *test, int clients, long n)
{
    char cmd[256];
    snprintf(
        cmd, sizeof cmd,
        "redis-benchmark -p %d -t %s -d %d -r %d -c %d -P 1 -n %ld --csv 2>/dev/null",
        port, test, VLEN, KEYS, clients, n);
    FILE *f = popen(cmd, "r");
    if (f == NULL) return 0;
    char line[512];
    double rps = 0;
    while (fgets(line, sizeof line, f)) {
        /* "test","rps",... (the header line starts with "test") */
        char *q = strchr(line, ',');
        if (q && q[1] == '"' && line[1] != 't') rps = strtod(q + 2, NULL);
    }
    pclose(f);
    return rps;
}

static strata *open_caches(const char *fmt)
{
    char yaml[512], path[] = "/tmp/strata-bench-redis-XXXXXX";
    snprintf(yaml, sizeof yaml, fmt, port);
    int fd = mkstemp(path);
    if (write(fd, yaml, strlen(yaml)) < 0) abort();
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    if (s == NULL) {
        fprintf(stderr, "bench-redis: %s\n", err ? err : "strata_open failed");
        exit(1);
    }
    return s;
}

struct job {
    strata_cache *c;
    int set;
    unsigned seed;
    long errors;
    double *lat; /* per op, seconds (tiered) */
    long n;
    double write_share;
};

static void key_of(unsigned i, char *k)
{
    snprintf(k, 16, "key:%06u", i % KEYS);
}

static void *sync_worker(void *arg)
{
    struct job *j = arg;
    char k[16], v[VLEN];
    memset(v, 'x', sizeof v);
    for (long i = 0; i < j->n; i++) {
        key_of((unsigned)rand_r(&j->seed), k);
        int rc;
        if (j->set) {
            rc = strata_set(j->c, k, strlen(k), v, sizeof v, NULL);
        } else {
            strata_value *x = NULL;
            rc = strata_get(j->c, k, strlen(k), &x);
            strata_value_release(x);
            if (rc == STRATA_MISS) rc = STRATA_OK;
        }
        if (rc != STRATA_OK) j->errors++;
    }
    return NULL;
}

static double run_sync(strata_cache *c, int set, int threads)
{
    pthread_t th[8];
    struct job jobs[8];
    double t0 = now_s();
    for (int i = 0; i < threads; i++) {
        jobs[i] =
            (struct job){c, set, (unsigned)(i * 7919 + 1), 0, NULL, ops_per_thread, 0};
        pthread_create(&th[i], NULL, sync_worker, &jobs[i]);
    }
    long errors = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        errors += jobs[i].errors;
    }
    double dt = now_s() - t0;
    if (errors) fprintf(stderr, "bench-redis: %ld errors\n", errors);
    return (double)ops_per_thread * threads / dt;
}

/* Zipf(0.99) over KEYS by rejection-free inverse CDF on a table. */
static double *zipf_cdf;

static unsigned zipf(unsigned *seed)
{
    double u = (double)rand_r(seed) / RAND_MAX;
    unsigned lo = 0, hi = KEYS - 1;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void *tiered_worker(void *arg)
{
    struct job *j = arg;
    char k[16], v[VLEN];
    memset(v, 'y', sizeof v);
    for (long i = 0; i < j->n; i++) {
        key_of(zipf(&j->seed), k);
        double t0 = now_s();
        if ((double)rand_r(&j->seed) / RAND_MAX < j->write_share) {
            if (strata_set(j->c, k, strlen(k), v, sizeof v, NULL) != STRATA_OK)
                j->errors++;
        } else {
            strata_value *x = NULL;
            int rc = strata_get(j->c, k, strlen(k), &x);
            if (rc == STRATA_MISS)
                rc = strata_set(j->c, k, strlen(k), v, sizeof v, NULL);
            strata_value_release(x);
            if (rc < 0) j->errors++;
        }
        j->lat[i] = now_s() - t0;
    }
    return NULL;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    bool quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    if (quick) ops_per_thread = 20000;
    if (system("command -v redis-server >/dev/null && command -v redis-benchmark "
               ">/dev/null") != 0) {
        printf("bench-redis: redis-server or redis-benchmark is not installed "
               "(scripts/install-deps); skipped\nRESULT name=redis status=SKIP\n");
        return 77;
    }
    if (start() != 0) {
        fprintf(stderr, "bench-redis: redis-server did not start\n");
        stop();
        return 1;
    }
    strata *s = open_caches("caches:\n  r: { backend: redis, url: "
                            "\"redis://127.0.0.1:%d/0\", command_timeout: 1s }\n");
    strata_cache *c = strata_cache_get(s, "r");
    run_sync(c, 1, 1); /* fill every key once (and warm the scripts) */
    printf(
        "bench-redis: redis-server on 127.0.0.1:%d, %d keys, %d-byte values, %ld ops "
        "per thread\n",
        port, KEYS, VLEN, ops_per_thread);
    printf("%-8s %-4s %7s %14s %14s %7s\n", "path", "op", "threads", "strata ops/s",
           "redis-bench", "ratio");
    int threads[] = {1, 4};
    for (int t = 0; t < 2; t++)
        for (int set = 0; set < 2; set++) {
            double st = run_sync(c, set, threads[t]);
            double rb = redis_benchmark(set ? "set" : "get", threads[t],
                                        ops_per_thread * threads[t]);
            printf("%-8s %-4s %7d %14.0f %14.0f %7.2f\n", "sync", set ? "set" : "get",
                   threads[t], st, rb, rb > 0 ? st / rb : 0);
            printf("RESULT name=redis_sync_%s_t%d strata_ops_s=%.0f "
                   "redis_benchmark_ops_s=%.0f "
                   "ratio=%.3f\n",
                   set ? "set" : "get", threads[t], st, rb, rb > 0 ? st / rb : 0);
        }
    strata_close(s);

    /* tiered: two nodes */
    zipf_cdf = malloc(KEYS * sizeof *zipf_cdf);
    double sum = 0;
    for (unsigned i = 0; i < KEYS; i++)
        sum += 1.0 / pow(i + 1, 0.99);
    double acc = 0;
    for (unsigned i = 0; i < KEYS; i++) {
        acc += 1.0 / pow(i + 1, 0.99) / sum;
        zipf_cdf[i] = acc;
    }
    const char *tiered =
        "caches:\n  t: { backend: tiered, url: \"redis://127.0.0.1:%d/0\", "
        "l1_ttl: 5s, l1_max_memory: 64MB, command_timeout: 1s }\n";
    strata *n1 = open_caches(tiered), *n2 = open_caches(tiered);
    struct tiered_bus_state bs;
    for (int i = 0; i < 500; i++) { /* until both buses are heard */
        strata_cache_bus_state(strata_cache_get(n1, "t"), &bs);
        bool a = bs.trusted;
        strata_cache_bus_state(strata_cache_get(n2, "t"), &bs);
        if (a && bs.trusted) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    struct job jobs[2];
    pthread_t th[2];
    strata *nodes[2] = {n1, n2};
    for (int i = 0; i < 2; i++) {
        jobs[i] = (struct job){strata_cache_get(nodes[i], "t"),
                               0,
                               (unsigned)(i + 11),
                               0,
                               malloc(ops_per_thread * sizeof(double)),
                               ops_per_thread,
                               0.05};
        pthread_create(&th[i], NULL, tiered_worker, &jobs[i]);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        strata_stats st;
        strata_cache_stats(jobs[i].c, &st);
        qsort(jobs[i].lat, (size_t)ops_per_thread, sizeof(double), cmp_d);
        double mean = 0;
        for (long k = 0; k < ops_per_thread; k++)
            mean += jobs[i].lat[k];
        mean /= (double)ops_per_thread;
        double p99 = jobs[i].lat[(long)(ops_per_thread * 0.99)];
        struct tiered_bus_state ts;
        strata_cache_bus_state(jobs[i].c, &ts);
        double gets = (double)(st.hits + st.misses);
        double hit = gets ? (double)st.hits / gets : 0,
               l1 = gets ? (double)ts.l1_hits / gets : 0;
        printf(
            "tiered node %d: hit rate %.3f, from L1 %.3f (L1 items %lu), mean %.1f us, "
            "p99 %.1f us, errors %ld\n",
            i + 1, hit, l1, (unsigned long)st.items, mean * 1e6, p99 * 1e6,
            jobs[i].errors);
        printf("RESULT name=redis_tiered_node%d hit_rate=%.4f l1_hit_rate=%.4f "
               "mean_us=%.1f "
               "p99_us=%.1f errors=%ld\n",
               i + 1, hit, l1, mean * 1e6, p99 * 1e6, jobs[i].errors);
        free(jobs[i].lat);
    }
    strata_close(n1);
    strata_close(n2);
    free(zipf_cdf);
    printf("RESULT name=redis_async status=NOT_BUILT\n");
    stop();
    return 0;
}
