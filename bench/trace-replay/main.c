/*
 * trace-replay -- miss ratio of the engine's eviction policy on real traces.
 *
 * Replays each oracleGeneral trace (24-byte records, zstd-compressed; format
 * in the traces' README) through a strata cache bounded by max_items = 1%, 5%
 * and 10% of the trace's distinct objects: a get, and on a miss a set. Prints
 * the object miss ratio next to the reference numbers of LRU, ARC, W-TinyLFU,
 * SIEVE and S3-FIFO computed by the policy authors' simulator on the same
 * files, and checks the targets: at or below the best reference + 0.005 on
 * every row, at or below S3-FIFO on the zipf and web rows.
 *
 * usage: bench-trace-replay [TRACE_DIR]
 * Exits 0 whatever the verdicts (they are printed); 1 only on a bad argument.
 *   TRACE_DIR defaults to $STRATA_TRACES, then ../shared/traces next to the
 *   source tree. Missing traces are reported and skipped.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "strata.h"

#ifndef STRATA_SOURCE_DIR
#define STRATA_SOURCE_DIR "."
#endif

struct ref {
    const char *trace;
    int pct;
    double lru, arc, tinylfu, sieve, s3fifo;
    int strict; /* must also be <= S3-FIFO */
};

/* From the traces' README (the S3-FIFO/SIEVE authors' simulator). */
static const struct ref refs[] = {
    {"zipf0.8_100k_1m", 1, .7986, .6932, .6902, .6949, .6877, 1},
    {"zipf0.8_100k_1m", 5, .6359, .5464, .5379, .5498, .5384, 1},
    {"zipf0.8_100k_1m", 10, .5380, .4678, .4546, .4671, .4591, 1},
    {"zipf1.0_100k_1m", 1, .5154, .4233, .4148, .4189, .4196, 1},
    {"zipf1.0_100k_1m", 5, .3576, .2960, .2875, .2962, .2922, 1},
    {"zipf1.0_100k_1m", 10, .2876, .2420, .2372, .2415, .2389, 1},
    {"web12", 1, .6030, .5931, .6305, .5975, .5900, 1},
    {"web12", 5, .4000, .3735, .3756, .3648, .3519, 1},
    {"web12", 10, .3152, .2913, .2950, .2828, .2775, 1},
    {"orm_busy", 1, .2297, .2325, .4049, .2947, .2436, 0},
    {"orm_busy", 5, .1587, .1568, .1836, .1611, .1475, 0},
    {"orm_busy", 10, .1199, .1196, .1181, .1188, .1111, 0},
};

static uint64_t *load_trace(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return NULL;
    ZSTD_DStream *ds = ZSTD_createDStream();
    size_t cap = 1 << 20, len = 0;
    uint64_t *ids = malloc(cap * sizeof *ids);
    size_t inbuf_sz = ZSTD_DStreamInSize(), outbuf_sz = ZSTD_DStreamOutSize();
    unsigned char *in = malloc(inbuf_sz), *out = malloc(outbuf_sz + 24);
    size_t carry = 0;
    size_t rd;
    while ((rd = fread(in, 1, inbuf_sz, f)) > 0) {
        ZSTD_inBuffer ib = {in, rd, 0};
        while (ib.pos < ib.size) {
            ZSTD_outBuffer ob = {out + carry, outbuf_sz, 0};
            size_t r = ZSTD_decompressStream(ds, &ob, &ib);
            if (ZSTD_isError(r)) {
                fprintf(stderr, "%s: %s\n", path, ZSTD_getErrorName(r));
                goto fail;
            }
            size_t have = carry + ob.pos, off = 0;
            for (; have - off >= 24; off += 24) {
                if (len == cap) {
                    cap *= 2;
                    ids = realloc(ids, cap * sizeof *ids);
                }
                memcpy(&ids[len++], out + off + 4, 8);
            }
            carry = have - off;
            memmove(out, out + off, carry);
        }
    }
    free(in);
    free(out);
    ZSTD_freeDStream(ds);
    fclose(f);
    *n = len;
    return ids;
fail:
    free(in);
    free(out);
    free(ids);
    ZSTD_freeDStream(ds);
    fclose(f);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static size_t distinct(const uint64_t *ids, size_t n)
{
    uint64_t *c = malloc(n * sizeof *c);
    memcpy(c, ids, n * sizeof *c);
    qsort(c, n, sizeof *c, cmp_u64);
    size_t d = n ? 1 : 0;
    for (size_t i = 1; i < n; i++)
        d += c[i] != c[i - 1];
    free(c);
    return d;
}

static double replay(const uint64_t *ids, size_t n, size_t cap)
{
    char path[] = "/tmp/strata-trace-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    dprintf(fd,
            "caches:\n  trace:\n    max_items: %zu\n    max_memory: 1GB\n"
            "    ttl: never\n",
            cap);
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    if (s == NULL) {
        fprintf(stderr, "strata_open: %s\n", err);
        free(err);
        return -1;
    }
    strata_cache *c = strata_cache_get(s, "trace");
    size_t miss = 0;
    for (size_t i = 0; i < n; i++) {
        strata_value *v;
        if (strata_get(c, &ids[i], 8, &v) == STRATA_OK) {
            strata_value_release(v);
        } else {
            miss++;
            strata_set(c, &ids[i], 8, "v", 1, NULL);
        }
    }
    strata_close(s);
    return (double)miss / (double)n;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : getenv("STRATA_TRACES");
    char defdir[4096];
    if (dir == NULL) {
        snprintf(defdir, sizeof defdir, "%s/../shared/traces", STRATA_SOURCE_DIR);
        dir = defdir;
    }
    printf("trace-replay: traces from %s; max_items = 1%%/5%%/10%% of distinct "
           "objects\n\n",
           dir);
    printf("%-16s %4s %7s | %6s %6s %6s %6s %6s | %7s %s\n", "trace", "size", "strata",
           "LRU", "ARC", "TinyLFU", "SIEVE", "S3FIFO", "target", "");
    int fails = 0, rows = 0, missing = 0;
    const char *loaded_name = NULL;
    uint64_t *ids = NULL;
    size_t n = 0, d = 0;
    for (size_t r = 0; r < sizeof refs / sizeof *refs; r++) {
        const struct ref *x = &refs[r];
        if (loaded_name == NULL || strcmp(loaded_name, x->trace) != 0) {
            free(ids);
            char path[4352];
            snprintf(path, sizeof path, "%s/%s.oracleGeneral.bin.zst", dir, x->trace);
            ids = load_trace(path, &n);
            loaded_name = x->trace;
            if (ids == NULL) {
                printf("%-16s  (absent: %s)\n", x->trace, path);
                missing++;
                continue;
            }
            d = distinct(ids, n);
        }
        if (ids == NULL) continue;
        size_t cap = (size_t)((double)d * x->pct / 100.0);
        double best = x->lru;
        double refv[] = {x->arc, x->tinylfu, x->sieve, x->s3fifo};
        for (int i = 0; i < 4; i++)
            if (refv[i] < best) best = refv[i];
        double target = best + 0.005;
        if (x->strict && x->s3fifo < target) target = x->s3fifo;
        double mr = replay(ids, n, cap);
        int ok = mr >= 0 && mr <= target + 1e-9;
        fails += !ok;
        rows++;
        printf("%-16s %3d%% %7.4f | %6.4f %6.4f %6.4f %6.4f %6.4f | <=%.4f %s\n",
               x->trace, x->pct, mr, x->lru, x->arc, x->tinylfu, x->sieve, x->s3fifo,
               target, ok ? "PASS" : "FAIL");
        printf("RESULT trace=%s pct=%d cap=%zu miss_ratio=%.4f target=%.4f ok=%d\n",
               x->trace, x->pct, cap, mr, target, ok);
    }
    free(ids);
    if (missing)
        printf("\n%d trace file(s) absent: those rows were not measured.\n", missing);
    printf("\n%d/%d rows meet the target\n", rows - fails, rows);
    printf("RESULT name=target_trace_replay value=%d/%d status=%s\n", rows - fails,
           rows, fails || rows == 0 ? "FAIL" : "PASS");
    /* A missed target is reported, not an error (bench/run-all.sh). */
    return 0;
}
