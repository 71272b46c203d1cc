/*
 * test_compress.c -- per-cache value compression (zstd, lz4, zlib) through
 * the public API: values come back byte for byte whatever their size and
 * content, values below compress_min_size are stored as they are, and the
 * `bytes` statistic counts what is stored (compressed).
 *
 * Every cache lives in one YAML file; each test opens it. Data is generated
 * by a fixed PRNG, so sizes are reproducible run to run.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "strata.h"

static const char *const CONFIG =
    "caches:\n"
    "  plain: { max_memory: 64MB }\n"
    "  none:  { max_memory: 64MB, compress: none, compress_min_size: 16B }\n"
    "  zstd:  { max_memory: 64MB, compress: zstd, compress_min_size: 16B }\n"
    "  lz4:   { max_memory: 64MB, compress: lz4, compress_min_size: 16B }\n"
    "  zlib:  { max_memory: 64MB, compress: zlib, compress_min_size: 16B }\n"
    "  zstd1: { max_memory: 64MB, compress: zstd, compress_level: 1, "
    "compress_min_size: 16B }\n"
    "  zstd19: { max_memory: 64MB, compress: zstd, compress_level: 19, "
    "compress_min_size: 16B }\n"
    "  zstdfast: { max_memory: 64MB, compress: zstd, compress_level: -5, "
    "compress_min_size: 16B }\n"
    "  lz4hc: { max_memory: 64MB, compress: lz4, compress_level: 12, "
    "compress_min_size: 16B }\n"
    "  zlib1: { max_memory: 64MB, compress: zlib, compress_level: 1, "
    "compress_min_size: 16B }\n"
    "  zlib9: { max_memory: 64MB, compress: zlib, compress_level: 9, "
    "compress_min_size: 16B }\n"
    "  zdef:  { max_memory: 64MB, compress: zstd }\n"
    "  ldef:  { max_memory: 64MB, compress: lz4 }\n"
    "  gdef:  { max_memory: 64MB, compress: zlib }\n";

static const char *const CODECS[] = {"zstd",     "lz4",   "zlib",  "zstd1", "zstd19",
                                     "zstdfast", "lz4hc", "zlib1", "zlib9"};
#define NCODECS (sizeof CODECS / sizeof CODECS[0])

/* ---- helpers ------------------------------------------------------------- */

static strata *open_all(void)
{
    char path[] = "/tmp/strata-test-compress-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp: %s", strerror(errno));
    cr_assert_eq(write(fd, CONFIG, strlen(CONFIG)), (ssize_t)strlen(CONFIG));
    close(fd);
    char *err = NULL;
    strata *s = strata_open(path, &err);
    unlink(path);
    cr_assert_not_null(s, "strata_open: %s", err ? err : "?");
    return s;
}

static strata_cache *cache(strata *s, const char *name)
{
    strata_cache *c = strata_cache_get(s, name);
    cr_assert_not_null(c, "no cache '%s'", name);
    return c;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Text that compresses well: numbered lines of a few words. */
static unsigned char *text(size_t n, unsigned seed)
{
    static const char *w[] = {"alpha", "beta",  "gamma", "delta", "cache", "strata",
                              "value", "entry", "key",   "tag",   "ttl",   "shard"};
    unsigned char *b = malloc(n + 64);
    size_t off = 0;
    rng = 0x9e3779b97f4a7c15ull ^ seed;
    for (unsigned line = 0; off < n; line++) {
        off += (size_t)sprintf((char *)b + off, "%u:%s %s %s\n", line, w[next() % 12],
                               w[next() % 12], w[next() % 12]);
    }
    return b;
}

static unsigned char *random_bytes(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n);
    rng = 0x243f6a8885a308d3ull ^ seed;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(next() >> 24);
    return b;
}

/* Random letters of a 4-letter alphabet: shrinks to about a quarter, so the
 * stored form is still larger than an inline item. */
static unsigned char *dna(size_t n, unsigned seed)
{
    unsigned char *b = malloc(n);
    rng = 0x13198a2e03707344ull ^ seed;
    for (size_t i = 0; i < n; i++)
        b[i] = "ACGT"[next() >> 62];
    return b;
}

static void put(strata_cache *c, const char *key, const void *v, size_t n)
{
    int rc = strata_set(c, key, strlen(key), v, n, NULL);
    cr_assert_eq(rc, STRATA_OK, "%s: set %s (%zu bytes): %s", strata_cache_name(c), key,
                 n, strata_errname(rc));
}

static void expect(strata_cache *c, const char *key, const void *v, size_t n)
{
    strata_value *got = NULL;
    int rc = strata_get(c, key, strlen(key), &got);
    cr_assert_eq(rc, STRATA_OK, "%s: get %s: %s", strata_cache_name(c), key,
                 strata_errname(rc));
    cr_assert_eq(strata_value_len(got), n, "%s: %s: length %zu, want %zu",
                 strata_cache_name(c), key, strata_value_len(got), n);
    cr_assert_eq(memcmp(strata_value_data(got), v, n), 0, "%s: %s: bytes differ",
                 strata_cache_name(c), key);
    strata_value_release(got);
}

static uint64_t bytes(strata_cache *c)
{
    strata_stats st;
    strata_cache_stats(c, &st);
    return st.bytes;
}

/* ---- round trips ------------------------------------------------------------ */

Test(compress, round_trip_every_codec_every_shape)
{
    strata *s = open_all();
    static const size_t sizes[] = {1,   10,  15,  16,   17,         100,
                                   511, 512, 513, 4096, 100 * 1024, 1 << 20};
    for (size_t k = 0; k < NCODECS; k++) {
        strata_cache *c = cache(s, CODECS[k]);
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            size_t n = sizes[i];
            unsigned char *t = text(n, (unsigned)i), *r = random_bytes(n, (unsigned)i),
                          *d = dna(n, (unsigned)i);
            put(c, "text", t, n);
            put(c, "rand", r, n);
            put(c, "dna", d, n);
            expect(c, "text", t, n);
            expect(c, "rand", r, n);
            expect(c, "dna", d, n);
            free(t);
            free(r);
            free(d);
        }
        put(c, "empty", "", 0);
        expect(c, "empty", "", 0);
    }
    strata_close(s);
}

Test(compress, binary_values_with_nul_runs)
{
    strata *s = open_all();
    for (size_t k = 0; k < NCODECS; k++) {
        strata_cache *c = cache(s, CODECS[k]);
        unsigned char *z = calloc(1, 200000);
        z[0] = 1;
        z[199999] = 0xff;
        put(c, "zeros", z, 200000);
        expect(c, "zeros", z, 200000);
        free(z);
    }
    strata_close(s);
}

static int load_text(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                     strata_set_opts *o)
{
    (void)ud;
    (void)key;
    (void)klen;
    (void)o;
    *val = text(50000, 7);
    *vlen = 50000;
    return 0;
}

Test(compress, get_or_set_and_overwrite_with_compression)
{
    strata *s = open_all();
    unsigned char *want = text(50000, 7);
    for (size_t k = 0; k < NCODECS; k++) {
        strata_cache *c = cache(s, CODECS[k]);
        strata_value *v = NULL;
        cr_assert_eq(strata_get_or_set(c, "g", 1, load_text, NULL, NULL, &v),
                     STRATA_LOADED);
        cr_assert_eq(strata_value_len(v), 50000);
        cr_assert_eq(memcmp(strata_value_data(v), want, 50000), 0);
        strata_value_release(v);
        cr_assert_eq(strata_get_or_set(c, "g", 1, load_text, NULL, NULL, &v),
                     STRATA_OK);
        cr_assert_eq(memcmp(strata_value_data(v), want, 50000), 0);
        strata_value_release(v);
        /* compressed -> raw -> compressed under one key */
        unsigned char *r = random_bytes(3000, 1);
        put(c, "g", r, 3000);
        expect(c, "g", r, 3000);
        put(c, "g", want, 50000);
        expect(c, "g", want, 50000);
        free(r);
    }
    free(want);
    strata_close(s);
}

Test(compress, decompressed_handle_survives_close)
{
    strata *s = open_all();
    unsigned char *t = text(100 * 1024, 3), *d = dna(100 * 1024, 3);
    strata_value *vt = NULL, *vd = NULL;
    strata_cache *c = cache(s, "zstd");
    put(c, "t", t, 100 * 1024);
    put(c, "d", d, 100 * 1024);
    cr_assert_eq(strata_get(c, "t", 1, &vt), STRATA_OK);
    cr_assert_eq(strata_get(c, "d", 1, &vd), STRATA_OK);
    cr_assert_eq(strata_delete(c, "t", 1), STRATA_OK);
    strata_close(s);
    cr_assert_eq(memcmp(strata_value_data(vt), t, 100 * 1024), 0);
    cr_assert_eq(memcmp(strata_value_data(vd), d, 100 * 1024), 0);
    strata_value_release(vt);
    strata_value_release(vd);
    free(t);
    free(d);
}

/* ---- what is stored ---------------------------------------------------------- */

Test(compress, compressed_cache_charges_fewer_bytes)
{
    strata *s = open_all();
    strata_cache *plain = cache(s, "plain");
    uint64_t p0 = bytes(plain);
    unsigned char *vals[20];
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "v%d", i);
        vals[i] = text(100 * 1024, (unsigned)i);
        put(plain, key, vals[i], 100 * 1024);
    }
    uint64_t pdelta = bytes(plain) - p0;
    cr_assert_geq(pdelta, 20 * 100 * 1024, "plain cache charges at least the values");
    const char *names[] = {"zstd", "lz4", "zlib", "zstd19", "lz4hc", "zlib9", "none"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        strata_cache *c = cache(s, names[k]);
        uint64_t c0 = bytes(c);
        cr_assert_eq(c0, p0, "same max_memory: same empty footprint");
        for (int i = 0; i < 20; i++) {
            char key[16];
            snprintf(key, sizeof key, "v%d", i);
            put(c, key, vals[i], 100 * 1024);
        }
        uint64_t cdelta = bytes(c) - c0;
        if (strcmp(names[k], "none") == 0)
            cr_assert_eq(cdelta, pdelta, "compress: none stores values as they are");
        else
            cr_assert_lt(cdelta * 2, pdelta, "%s: %lu bytes vs %lu uncompressed",
                         names[k], (unsigned long)cdelta, (unsigned long)pdelta);
        for (int i = 0; i < 20; i++) {
            char key[16];
            snprintf(key, sizeof key, "v%d", i);
            expect(c, key, vals[i], 100 * 1024);
        }
    }
    for (int i = 0; i < 20; i++)
        free(vals[i]);
    strata_close(s);
}

Test(compress, incompressible_values_are_stored_as_they_are)
{
    strata *s = open_all();
    unsigned char *r = random_bytes(64 * 1024, 5);
    strata_cache *plain = cache(s, "plain");
    uint64_t p0 = bytes(plain);
    put(plain, "r", r, 64 * 1024);
    uint64_t pdelta = bytes(plain) - p0;
    for (size_t k = 0; k < NCODECS; k++) {
        strata_cache *c = cache(s, CODECS[k]);
        uint64_t c0 = bytes(c);
        put(c, "r", r, 64 * 1024);
        cr_assert_eq(bytes(c) - c0, pdelta,
                     "%s: random data must cost what it costs raw", CODECS[k]);
        expect(c, "r", r, 64 * 1024);
    }
    free(r);
    strata_close(s);
}

Test(compress, values_below_min_size_are_not_compressed)
{
    /* Default compress_min_size is 1KB: 1023 zero bytes are stored raw (over
     * 1023 bytes charged), 1024 are compressed to a few bytes. */
    strata *s = open_all();
    const char *names[] = {"zdef", "ldef", "gdef"};
    unsigned char *z = calloc(1, 1024);
    for (size_t k = 0; k < 3; k++) {
        strata_cache *c = cache(s, names[k]);
        uint64_t b0 = bytes(c);
        put(c, "below", z, 1023);
        uint64_t b1 = bytes(c);
        cr_assert_geq(b1 - b0, 1023, "%s: 1023 bytes are below the minimum", names[k]);
        put(c, "at", z, 1024);
        uint64_t b2 = bytes(c);
        cr_assert_lt(b2 - b1, 512, "%s: 1024 bytes should be compressed (charged %lu)",
                     names[k], (unsigned long)(b2 - b1));
        expect(c, "below", z, 1023);
        expect(c, "at", z, 1024);
    }
    /* With 16B, a 15-byte value is charged like the uncompressed cache's. */
    strata_cache *pl = cache(s, "plain"), *zs = cache(s, "zstd");
    uint64_t p0 = bytes(pl), z0 = bytes(zs);
    put(pl, "s", z, 15);
    put(zs, "s", z, 15);
    cr_assert_eq(bytes(pl) - p0, bytes(zs) - z0);
    expect(zs, "s", z, 15);
    free(z);
    strata_close(s);
}

Test(compress, level_changes_the_stored_size)
{
    strata *s = open_all();
    struct {
        const char *lo, *hi;
    } pairs[] = {{"zstd1", "zstd19"},
                 {"lz4", "lz4hc"},
                 {"zlib1", "zlib9"},
                 {"zstdfast", "zstd"}};
    unsigned char *t = text(256 * 1024, 11);
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        strata_cache *lo = cache(s, pairs[k].lo), *hi = cache(s, pairs[k].hi);
        uint64_t l0 = bytes(lo), h0 = bytes(hi);
        put(lo, "t", t, 256 * 1024);
        put(hi, "t", t, 256 * 1024);
        uint64_t ld = bytes(lo) - l0, hd = bytes(hi) - h0;
        cr_assert_lt(hd, ld, "%s stores %lu bytes, %s %lu: the level is ignored",
                     pairs[k].hi, (unsigned long)hd, pairs[k].lo, (unsigned long)ld);
        expect(lo, "t", t, 256 * 1024);
        expect(hi, "t", t, 256 * 1024);
    }
    free(t);
    strata_close(s);
}
