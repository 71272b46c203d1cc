/*
 * test_metrics.c -- the Prometheus exposition (src/admin/metrics.c): the
 * docs' metrics table is the code's table, every family has HELP and TYPE,
 * histograms are cumulative, and the cache counters it reads move.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/metrics.h"
#include "backend/backend.h"
#include "proxy/internal.h"
#include "strata.h"

static char *slurp_doc(const char *rel)
{
    const char *file = __FILE__, *suffix = "tests/unit/test_metrics.c";
    size_t flen = strlen(file), slen = strlen(suffix);
    cr_assert(flen >= slen && strcmp(file + flen - slen, suffix) == 0);
    char *path = NULL;
    cr_assert(asprintf(&path, "%.*s%s", (int)(flen - slen), file, rel) > 0);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = 0;
    fclose(f);
    free(path);
    return buf;
}

Test(metrics, docs_table_is_the_code_table)
{
    char *doc = slurp_doc("docs/operations.md");
    char *sec = strstr(doc, "\n## Metrics reference");
    cr_assert_not_null(sec, "docs/operations.md has no '## Metrics reference' section");
    size_t n;
    const struct metric *t = metrics_table(&n);
    const char *p = sec;
    size_t rows = 0;
    for (; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (strncmp(p, "| `strata_", 10) != 0) {
            if (rows && strncmp(p, "|", 1) != 0) break; /* the table ended */
            continue;
        }
        cr_assert(rows < n, "docs list more metrics than the code (%zu)", n);
        char *want = NULL;
        cr_assert(asprintf(&want, "| `%s` | %s | %s | %s |", t[rows].name, t[rows].type,
                           t[rows].labels[0] ? t[rows].labels : "—", t[rows].help) > 0);
        size_t ll = strcspn(p, "\n");
        cr_assert(ll == strlen(want) && strncmp(p, want, ll) == 0,
                  "docs/operations.md row %zu:\n  is   %.*s\n  want %s", rows + 1,
                  (int)ll, p, want);
        free(want);
        rows++;
    }
    cr_assert_eq(rows, n, "docs list %zu metrics, the code %zu", rows, n);
    free(doc);
}

Test(metrics, names_follow_prometheus_conventions)
{
    size_t n;
    const struct metric *t = metrics_table(&n);
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(t[i].name);
        cr_assert(strncmp(t[i].name, "strata_", 7) == 0);
        if (strcmp(t[i].type, "counter") == 0)
            cr_assert(l > 6 && strcmp(t[i].name + l - 6, "_total") == 0, "%s",
                      t[i].name);
        if (strcmp(t[i].type, "histogram") == 0)
            cr_assert(l > 8 && strcmp(t[i].name + l - 8, "_seconds") == 0, "%s",
                      t[i].name);
        cr_assert(strstr(t[i].labels, "user") == NULL &&
                      strstr(t[i].labels, "key") == NULL &&
                      strstr(t[i].labels, "url") == NULL,
                  "%s: a label that could carry a user, key or URL", t[i].name);
        for (size_t j = 0; j < i; j++)
            cr_assert(strcmp(t[i].name, t[j].name) != 0, "%s twice", t[i].name);
    }
}

/* The value of the first sample line starting with `prefix`, or -1. */
static double value_of(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p;
         p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0 && p[strlen(prefix)] == ' ')
            return strtod(p + strlen(prefix) + 1, NULL);
    return -1;
}

static char *render(strata *s)
{
    struct sbuf b = {0};
    metrics_render(&b, s, NULL, 12.5);
    sb_add(&b, "", 1);
    return b.p;
}

Test(metrics, every_family_has_help_and_type_and_cache_counters_move)
{
    strata *s = strata_open(NULL, NULL);
    cr_assert_not_null(s);
    strata_cache *c = strata_cache_get(s, "default");
    char *before = render(s);
    size_t n;
    const struct metric *t = metrics_table(&n);
    for (size_t i = 0; i < n; i++) {
        /* without a proxy no HTTP families, without a tiered cache no bus ones */
        bool http = strstr(t[i].name, "strata_http_") ||
                    strstr(t[i].name, "strata_upstream_") ||
                    strstr(t[i].help, "Tiered caches:") == t[i].help;
        char *help = NULL, *type = NULL;
        cr_assert(asprintf(&help, "# HELP %s %s\n", t[i].name, t[i].help) > 0);
        cr_assert(asprintf(&type, "# TYPE %s %s\n", t[i].name, t[i].type) > 0);
        cr_assert_eq(strstr(before, help) != NULL, !http, "%s", help);
        cr_assert_eq(strstr(before, type) != NULL, !http, "%s", type);
        free(help);
        free(type);
    }
    cr_assert_eq(value_of(before, "strata_uptime_seconds"), 12.5);
    cr_assert_eq(
        value_of(before, "strata_cache_info{cache=\"default\",backend=\"memory\"}"), 1);
    cr_assert_eq(value_of(before, "strata_cache_sets_total{cache=\"default\"}"), 0);

    const char *tags[] = {"t1"};
    strata_set_opts o = {0, tags, 1};
    cr_assert_eq(strata_set(c, "k", 1, "v", 1, &o), STRATA_OK);
    strata_value *v = NULL;
    for (int i = 0; i < 3 * STRATA_SAMPLE_MEMORY; i++) {
        cr_assert_eq(strata_get(c, "k", 1, &v), STRATA_OK);
        strata_value_release(v);
    }
    cr_assert_eq(strata_delete(c, "nope", 4), STRATA_MISS);
    cr_assert_geq(strata_invalidate_tags(c, tags, 1), 0);
    cr_assert_geq(strata_invalidate_pattern(c, "x*"), 0);
    cr_assert_eq(strata_clear(c), STRATA_OK);
    char *after = render(s);
    cr_assert_eq(value_of(after, "strata_cache_sets_total{cache=\"default\"}"), 1);
    cr_assert_eq(value_of(after, "strata_cache_hits_total{cache=\"default\"}"),
                 3 * STRATA_SAMPLE_MEMORY);
    cr_assert_eq(value_of(after, "strata_cache_hits_total{cache=\"session\"}"), 0);
    static const char *const kinds[] = {"key", "tag", "pattern", "all"};
    for (int k = 0; k < 4; k++) {
        char *l = NULL;
        cr_assert(
            asprintf(&l,
                     "strata_cache_invalidations_total{cache=\"default\",kind=\"%s\"}",
                     kinds[k]) > 0);
        cr_assert_eq(value_of(after, l), 1, "%s", l);
        free(l);
    }
    /* gets: timed one in STRATA_SAMPLE_MEMORY per thread, so 2 or 3 of them
     * (the counter may start anywhere); invalidations every time */
    double gets = value_of(
        after, "strata_cache_op_duration_seconds_count{cache=\"default\",op=\"get\"}");
    cr_assert(gets >= 2 && gets <= 3, "sampled gets: %g", gets);
    cr_assert_eq(value_of(after,
                          "strata_cache_op_duration_seconds_count{cache=\"default\","
                          "op=\"invalidate\"}"),
                 3);
    cr_assert_eq(value_of(after,
                          "strata_cache_op_duration_seconds_bucket{cache=\"default\","
                          "op=\"invalidate\",le=\"+Inf\"}"),
                 3);
    /* buckets are cumulative */
    double last = 0;
    const char *pre =
        "strata_cache_op_duration_seconds_bucket{cache=\"default\",op=\"delete\"";
    for (const char *p = after; (p = strstr(p, pre)) != NULL; p++) {
        double x = strtod(strchr(p, ' ') + 1, NULL);
        cr_assert_geq(x, last);
        last = x;
    }
    cr_assert_eq(last, 1);
    free(before);
    free(after);
    strata_close(s);
}
