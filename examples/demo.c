/*
 * demo.c -- a short tour of the strata C API (build/strata-demo).
 * It opens the embedded default caches and shows set/get, TTLs, tags,
 * pattern invalidation, get_or_set and statistics.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata.h"

static int load_price(void *ud, const void *key, size_t klen, void **val, size_t *vlen,
                      strata_set_opts *opts)
{
    int *calls = ud;
    (*calls)++;
    char *v = malloc(32);
    if (v == NULL) return -1;
    int n = snprintf(v, 32, "price of %.*s = 42", (int)klen, (const char *)key);
    *val = v;
    *vlen = (size_t)n;
    opts->ttl_ms = 60000;
    return 0;
}

static void show(strata_cache *c, const char *key)
{
    strata_value *v;
    int rc = strata_get(c, key, strlen(key), &v);
    if (rc == STRATA_OK) {
        printf("  get %-12s -> \"%.*s\"\n", key, (int)strata_value_len(v),
               (const char *)strata_value_data(v));
        strata_value_release(v);
    } else {
        printf("  get %-12s -> %s\n", key, strata_errname(rc));
    }
}

int main(void)
{
    char *err = NULL;
    strata *s = strata_open(NULL, &err);
    if (s == NULL) {
        fprintf(stderr, "strata_open: %s\n", err);
        free(err);
        return 1;
    }
    strata_cache *c = strata_cache_get(s, "default");
    printf("strata %s demo: the `default` cache (memory engine, ttl 5m)\n\n",
           STRATA_VERSION);

    const char *ptags[] = {"products", "inventory"};
    strata_set_opts tagged = {.ttl_ms = 0, .tags = ptags, .ntags = 2};
    strata_set(c, "product:1", 9, "lamp", 4, &tagged);
    strata_set(c, "product:2", 9, "desk", 4, &tagged);
    strata_set(c, "user:1", 6, "ada", 3, NULL);
    strata_set(c, "user:2", 6, "alan", 4, NULL);
    printf("set product:1, product:2 (tags products, inventory), user:1, user:2\n");
    show(c, "product:1");
    show(c, "user:2");

    long n = strata_invalidate_pattern(c, "user:*");
    printf("\ninvalidate_pattern(\"user:*\") removed %ld\n", n);
    show(c, "user:1");

    n = strata_invalidate_tags(c, (const char *const[]){"products"}, 1);
    printf("\ninvalidate_tags([\"products\"]) invalidated %ld\n", n);
    show(c, "product:1");

    int calls = 0;
    strata_value *v;
    printf("\nget_or_set(\"sku:7\") twice, loader calls:");
    for (int i = 0; i < 2; i++) {
        int rc = strata_get_or_set(c, "sku:7", 5, load_price, &calls, NULL, &v);
        printf(" %s", strata_errname(rc));
        strata_value_release(v);
    }
    printf(" (loader ran %d time)\n", calls);

    strata_stats st;
    strata_cache_stats(c, &st);
    printf("\nstats: hits=%llu misses=%llu sets=%llu invalidated=%llu items=%llu "
           "bytes=%llu\n",
           (unsigned long long)st.hits, (unsigned long long)st.misses,
           (unsigned long long)st.sets, (unsigned long long)st.invalidated,
           (unsigned long long)st.items, (unsigned long long)st.bytes);
    strata_close(s);
    return 0;
}
