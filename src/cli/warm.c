/*
 * warm.c -- `strata warm`: have strata fetch URLs so that they are cached
 * before users ask, through POST /_strata/warm.
 *
 * The URLs (paths like /api/x, or absolute http://host/path) come from
 * --endpoints or from --file (one per line; blank lines and # comments
 * skipped; `-` is stdin). Bytes that no request target holds raw (controls,
 * space, bytes >= 0x7f: a line that is not ASCII, or not UTF-8) are
 * percent-encoded, and so is a '%' that does not start an escape; a line that
 * is neither a path nor an http:// URL is an error naming its line, before
 * anything is sent. Every URL sent gets a result. They go to
 * the admin in batches of concurrency * 4 so that a progress bar can advance
 * between batches; the bar is drawn on stderr only when stderr is a terminal.
 * A URL failed when its status is 0 (the fetch itself failed) or 5xx; any
 * failure makes the exit code 1. The summary counts the results the admin
 * returned, and a batch answered with another number of results than it had
 * URLs is an error. Output: the failed URLs and a summary, or with --json the
 * admin's result objects of every batch as one array; a failure to write it
 * is exit code 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"

#define DEFAULT_CONCURRENCY 8
#define MAX_CONCURRENCY 64 /* the admin's bound too */
/* The admin reads at most 1 MB of body: stay well below with the URLs. */
#define MAX_BATCH_BYTES (512u << 10)

struct urls {
    char **v;
    size_t n;
};

static void urls_fini(struct urls *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i]);
    free(u->v);
    memset(u, 0, sizeof *u);
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* s[0..n) (it may hold NULs) with every byte <= 0x20 or >= 0x7f written
 * %XX: what is left is printable ASCII, valid in a request target and in
 * JSON. A '%' that starts an escape stays, so an already encoded URL is sent
 * as it is; any other '%' is written %25. */
static char *encode_url(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * n + 1), *o = out;
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool escape = c == '%' && i + 2 < n && is_hex(s[i + 1]) && is_hex(s[i + 2]);
        if (c > 0x20 && c < 0x7f && (c != '%' || escape)) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = 0;
    return out;
}

/* What the admin's warm takes: a path, or http://HOST[/...]. */
static bool url_ok(const char *s, size_t n)
{
    if (n && s[0] == '/') return true;
    return n > 7 && strncasecmp(s, "http://", 7) == 0 && s[7] != '/';
}

static int urls_add(struct urls *u, const char *s, size_t n)
{
    char **t = realloc(u->v, (u->n + 1) * sizeof *t);
    if (t == NULL) return -1;
    u->v = t;
    if ((t[u->n] = encode_url(s, n)) == NULL) return -1;
    u->n++;
    return 0;
}

/* One URL per line; blank lines and lines starting with # skipped. */
static int read_file(const char *path, struct urls *u)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "strata warm: cannot read %s: %s\n", path, strerror(errno));
        return CLI_FAIL;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    size_t lineno = 0;
    int rc = CLI_OK;
    while (rc == CLI_OK && (n = getline(&line, &cap, f)) >= 0) {
        const char *s = line;
        size_t len = (size_t)n;
        while (len && (*s == ' ' || *s == '\t'))
            s++, len--;
        while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
                       s[len - 1] == '\t'))
            len--;
        lineno++;
        if (len == 0 || s[0] == '#') continue;
        if (!url_ok(s, len)) {
            fprintf(stderr,
                    "strata warm: %s:%zu: not a path (/...) or an http:// URL\n", path,
                    lineno);
            rc = CLI_FAIL;
        } else if (urls_add(u, s, len) != 0) {
            fprintf(stderr, "strata warm: out of memory\n");
            rc = CLI_FAIL;
        }
    }
    if (rc == CLI_OK && ferror(f)) {
        fprintf(stderr, "strata warm: cannot read %s: %s\n", path, strerror(errno));
        rc = CLI_FAIL;
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

static int collect(const struct cli_args *a, struct urls *u)
{
    size_t n;
    const char *const *ep = cli_values(a, "--endpoints", &n);
    const char *file = cli_value(a, "--file");
    if (n && file) return cli_usage_error(a, "give --endpoints or --file, not both");
    if (!n && !file)
        return cli_usage_error(a, "say what to warm: --endpoints or --file");
    if (file) {
        int rc = read_file(file, u);
        if (rc == CLI_OK && u->n == 0) {
            fprintf(stderr, "strata warm: no URLs in %s\n", file);
            rc = CLI_FAIL;
        }
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        if (!url_ok(ep[i], strlen(ep[i])))
            return cli_usage_error(
                a, "--endpoints '%s': not a path (/...) or an http:// URL", ep[i]);
    for (size_t i = 0; i < n; i++)
        if (urls_add(u, ep[i], strlen(ep[i])) != 0) {
            fprintf(stderr, "strata warm: out of memory\n");
            return CLI_FAIL;
        }
    return CLI_OK;
}

static int concurrency(const struct cli_args *a, int *out)
{
    const char *s = cli_value(a, "--concurrency");
    *out = DEFAULT_CONCURRENCY;
    if (s == NULL) return CLI_OK;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < 1 || v > MAX_CONCURRENCY)
        return cli_usage_error(a, "--concurrency '%s': expected 1 to %d", s,
                               MAX_CONCURRENCY);
    *out = (int)v;
    return CLI_OK;
}

/* ---- progress and results ---- */

struct tally {
    size_t done, ok, failed, hit, miss, other;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const struct tally *t, size_t total)
{
    enum { WIDTH = 30 };
    size_t fill = total ? t->done * WIDTH / total : WIDTH;
    char bar[WIDTH + 1];
    for (size_t i = 0; i < WIDTH; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[WIDTH] = 0;
    fprintf(stderr, "\r\033[K[%s] %zu/%zu", bar, t->done, total);
    if (t->failed) fprintf(stderr, "  %zu failed", t->failed);
    fflush(stderr);
}

/* Hit, miss or other, from the result's cache_status: a bare word ("hit"),
 * or strata's Cache-Status member ("strata; hit; ttl=60",
 * "strata; fwd=uri-miss; stored"); "other" is neither (a bypass, a pass). */
static bool word_is(const char *p, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(p, w, n) == 0;
}

static void count_status(struct tally *t, const char *cs)
{
    bool hit = false, miss = false;
    /* Several caches may have added members: strata's is the last one. */
    const char *last = cs ? strrchr(cs, ',') : NULL;
    for (const char *p = last ? last + 1 : cs ? cs : ""; *p;) {
        p += strspn(p, "; ");
        size_t n = strcspn(p, ";"), m = n;
        while (m && p[m - 1] == ' ')
            m--;
        hit |= word_is(p, m, "hit");
        miss |= word_is(p, m, "miss") || word_is(p, m, "stored") ||
                (m >= 8 && !strncmp(p, "fwd=", 4) && !memcmp(p + m - 4, "miss", 4));
        p += n;
    }
    if (hit)
        t->hit++;
    else if (miss)
        t->miss++;
    else
        t->other++;
}

static bool failed(const json_t *res)
{
    json_int_t st = json_integer_value(json_object_get(res, "status"));
    return st == 0 || st >= 500;
}

static void print_failure(const json_t *res)
{
    const char *url = json_string_value(json_object_get(res, "url"));
    const char *err = json_string_value(json_object_get(res, "error"));
    json_int_t st = json_integer_value(json_object_get(res, "status"));
    if (err)
        printf("failed  %s  %s\n", url ? url : "?", err);
    else
        printf("failed  %s  status %lld\n", url ? url : "?", (long long)st);
}

/* ---- batches ---- */

/* The URLs [from, *to) of one batch: `per` of them, fewer near the byte cap.
 * NULL when out of memory (every URL is ASCII: encode_url). */
static json_t *batch_body(const struct urls *u, size_t from, size_t per, int conc,
                          size_t *to)
{
    json_t *arr = json_array();
    size_t bytes = 0, i = from;
    for (; arr && i < u->n && i - from < per; i++) {
        bytes += strlen(u->v[i]) + 4;
        if (i > from && bytes > MAX_BATCH_BYTES) break;
        if (json_array_append_new(arr, json_string(u->v[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    *to = i;
    return arr ? json_pack("{s:o, s:i}", "urls", arr, "concurrency", conc) : NULL;
}

/* Append one batch's results (one per URL sent, `sent` of them) to `all` and
 * count them. */
static int take_results(struct cli_admin *ad, json_t *res, size_t sent, json_t *all,
                        struct tally *t, bool quiet)
{
    if (!json_is_array(res)) {
        snprintf(ad->err, sizeof ad->err, "admin %s: the warm answer is not an array",
                 ad->authority);
        return -1;
    }
    if (json_array_size(res) != sent) {
        snprintf(ad->err, sizeof ad->err,
                 "admin %s: %zu warm results for a batch of %zu URLs", ad->authority,
                 json_array_size(res), sent);
        return -1;
    }
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r)
    {
        t->done++;
        if (failed(r)) {
            t->failed++;
            if (!quiet) print_failure(r);
        } else {
            t->ok++;
            count_status(t, json_string_value(json_object_get(r, "cache_status")));
        }
    }
    if (json_array_extend(all, res) != 0) {
        snprintf(ad->err, sizeof ad->err, "out of memory");
        return -1;
    }
    return 0;
}

/* The totals are those of the results, not of the URLs read. */
static void summary(const struct tally *t, double secs)
{
    printf("warmed %zu URLs in %.2f s: %zu ok, %zu failed; %zu hit, %zu miss", t->done,
           secs, t->ok, t->failed, t->hit, t->miss);
    if (t->other) printf(", %zu other", t->other);
    printf("\n");
}

static int run(struct cli_admin *ad, const struct cli_args *a, const struct urls *u,
               int conc)
{
    bool json = cli_flag(a, "--json"), bar = isatty(STDERR_FILENO);
    json_t *all = json_array();
    struct tally t = {0};
    double t0 = now_s();
    int rc = CLI_OK;
    if (bar) progress(&t, u->n);
    for (size_t from = 0, to; from < u->n && rc == CLI_OK; from = to) {
        json_t *body = batch_body(u, from, (size_t)conc * 4, conc, &to), *res = NULL;
        if (body == NULL)
            snprintf(ad->err, sizeof ad->err, "out of memory");
        else
            res =
                cli_admin_json(ad, "POST", "/_strata/warm", body, CLI_WARM_TIMEOUT_MS);
        if (res == NULL || take_results(ad, res, to - from, all, &t, json) != 0)
            rc = CLI_FAIL;
        json_decref(res);
        if (bar) progress(&t, u->n);
    }
    if (bar) fprintf(stderr, "\r\033[K");
    if (rc != CLI_OK) { /* also when `all` could not be made: json_array_extend */
        json_decref(all);
        return cli_admin_fail(ad);
    }
    bool bad = false;
    if (json)
        bad = cli_print_json(all) != 0;
    else
        summary(&t, now_s() - t0);
    json_decref(all);
    rc = cli_stdout_done("warm", bad);
    if (rc == CLI_OK && t.failed) {
        fprintf(stderr, "strata warm: %zu of %zu URLs failed\n", t.failed, t.done);
        rc = CLI_FAIL;
    }
    return rc;
}

int cmd_warm(const struct cli_args *a)
{
    int conc;
    int rc = concurrency(a, &conc);
    if (rc != CLI_OK) return rc;
    struct urls u = {0};
    rc = collect(a, &u);
    if (rc == CLI_OK) {
        struct cli_admin ad;
        rc = cli_admin_init(&ad, a);
        if (rc == CLI_OK) {
            rc = run(&ad, a, &u, conc);
            cli_admin_fini(&ad);
        }
    }
    urls_fini(&u);
    return rc;
}
