/*
 * stats.c -- `strata stats`: the counters of GET /_strata/stats as two
 * tables (caches, routes), or as the admin's JSON with --json.
 *
 * --watch redraws the tables in place (ANSI clear + home) every --interval
 * (2 s by default) until SIGINT, which ends it with exit code 0. A failed
 * first fetch exits 1; later failures are shown on the screen and the next
 * refresh tries again (strata may be restarting). --watch and --json do not
 * go together: a stream of redrawn JSON documents is neither readable nor
 * parseable. Output that cannot be written (a full disk, --watch too) ends
 * the command with exit code 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "config/config.h"

#define DEFAULT_INTERVAL_MS 2000

enum fmt { F_STR, F_INT, F_PCT, F_BYTES, F_SECS };

struct col {
    const char *head, *key;
    enum fmt fmt;
};

static const struct col cache_cols[] = {
    {"backend", "backend", F_STR}, {"hit rate", "hit_rate", F_PCT},
    {"hits", "hits", F_INT},       {"misses", "misses", F_INT},
    {"sets", "sets", F_INT},       {"deletes", "deletes", F_INT},
    {"items", "items", F_INT},     {"bytes", "bytes", F_BYTES},
    {"max", "max_bytes", F_BYTES}, {"evictions", "evictions", F_INT},
    {"expired", "expired", F_INT}, {"invalidated", "invalidated", F_INT},
    {"errors", "errors", F_INT},
};

static const struct col route_cols[] = {
    {"requests", "requests", F_INT},
    {"hit", "hit", F_INT},
    {"miss", "miss", F_INT},
    {"stale", "stale", F_INT},
    {"bypass", "bypass", F_INT},
    {"pass", "pass", F_INT},
    {"revalidated", "revalidated", F_INT},
    {"errors", "error", F_INT},
    {"upstream s", "upstream_seconds", F_SECS},
};

static void fmt_bytes(char *b, size_t n, double v)
{
    static const char *const unit[] = {"B", "KB", "MB", "GB", "TB"};
    size_t u = 0;
    while (v >= 1024 && u + 1 < sizeof unit / sizeof *unit)
        v /= 1024, u++;
    if (u == 0)
        snprintf(b, n, "%.0f B", v);
    else
        snprintf(b, n, "%.1f %s", v, unit[u]);
}

/* The hit rate: none before the first lookup, else the admin's fraction
 * (or hits / lookups when it gives none). */
static bool hit_rate(const json_t *row, double *r)
{
    json_int_t h = json_integer_value(json_object_get(row, "hits"));
    json_int_t m = json_integer_value(json_object_get(row, "misses"));
    const json_t *v = json_object_get(row, "hit_rate");
    if (h + m <= 0) return false;
    *r = json_is_number(v) ? json_number_value(v) : (double)h / (double)(h + m);
    return true;
}

static void cell(char *b, size_t n, const json_t *row, const struct col *c)
{
    const json_t *v = json_object_get(row, c->key);
    double r;
    if (c->fmt == F_PCT) {
        if (hit_rate(row, &r))
            snprintf(b, n, "%.1f%%", r * 100);
        else
            snprintf(b, n, "-");
    } else if (c->fmt == F_STR) {
        snprintf(b, n, "%s", json_is_string(v) ? json_string_value(v) : "-");
    } else if (!json_is_number(v)) {
        snprintf(b, n, "-");
    } else if (c->fmt == F_BYTES) {
        fmt_bytes(b, n, json_number_value(v));
    } else if (c->fmt == F_SECS) {
        snprintf(b, n, "%.3f", json_number_value(v));
    } else if (json_is_integer(v)) {
        snprintf(b, n, "%lld", (long long)json_integer_value(v));
    } else {
        snprintf(b, n, "%.0f", json_number_value(v));
    }
}

/* One table: a row per member of `rows` (an object of objects), a column per
 * `cols`, each as wide as its widest cell. */
static void table(FILE *out, const char *title, const json_t *rows,
                  const struct col *cols, size_t ncols)
{
    char b[64];
    int namew = (int)strlen(title), w[16] = {0};
    const char *name;
    json_t *row;
    for (size_t c = 0; c < ncols; c++)
        w[c] = (int)strlen(cols[c].head);
    json_object_foreach((json_t *)rows, name, row)
    {
        if ((int)strlen(name) > namew) namew = (int)strlen(name);
        for (size_t c = 0; c < ncols; c++) {
            cell(b, sizeof b, row, &cols[c]);
            if ((int)strlen(b) > w[c]) w[c] = (int)strlen(b);
        }
    }
    fprintf(out, "%-*s", namew, title);
    for (size_t c = 0; c < ncols; c++)
        fprintf(out, "  %*s", w[c], cols[c].head);
    fprintf(out, "\n");
    if (json_object_size(rows) == 0) fprintf(out, "(no entries)\n");
    json_object_foreach((json_t *)rows, name, row)
    {
        fprintf(out, "%-*s", namew, name);
        for (size_t c = 0; c < ncols; c++) {
            cell(b, sizeof b, row, &cols[c]);
            fprintf(out, "  %*s", w[c], b);
        }
        fprintf(out, "\n");
    }
}

static void render(FILE *out, const json_t *st)
{
    table(out, "cache", json_object_get(st, "caches"), cache_cols,
          sizeof cache_cols / sizeof *cache_cols);
    fprintf(out, "\n");
    table(out, "route", json_object_get(st, "routes"), route_cols,
          sizeof route_cols / sizeof *route_cols);
    long long up = (long long)json_number_value(json_object_get(st, "uptime_s"));
    fprintf(out, "\nuptime %lldd %02lldh %02lldm %02llds\n", up / 86400, up / 3600 % 24,
            up / 60 % 60, up % 60);
}

static json_t *fetch(struct cli_admin *ad)
{
    json_t *st = cli_admin_json(ad, "GET", "/_strata/stats", NULL, CLI_READ_TIMEOUT_MS);
    if (st && !json_is_object(json_object_get(st, "caches"))) {
        snprintf(ad->err, sizeof ad->err, "admin %s: no 'caches' in the stats answer",
                 ad->authority);
        json_decref(st);
        st = NULL;
    }
    return st;
}

/* ---- --watch ---- */

static void on_sigint(int sig)
{
    (void)sig;
    cli_interrupted = 1;
}

/* Sleep `ms` unless SIGINT comes first. */
static void pause_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (!cli_interrupted && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* One screen: clear, home, a title line, then the tables or the error.
 * Returns 0, or -1 when stdout could not be written. */
static int draw(const struct cli_admin *ad, const json_t *st, const char *every)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (m == NULL) return 0; /* out of memory: skip this screen */
    time_t now = time(NULL);
    char clock[16];
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&now));
    fprintf(m, "\033[H\033[2J");
    fprintf(m, "strata stats  %s  every %s (Ctrl-C to stop)  %s\n\n", ad->authority,
            every, clock);
    if (st)
        render(m, st);
    else
        fprintf(m, "strata stats: %s (retrying)\n", ad->err);
    if (ferror(m) | fclose(m)) {
        free(buf);
        return 0;
    }
    int rc = fwrite(buf, 1, len, stdout) == len && fflush(stdout) == 0 ? 0 : -1;
    free(buf);
    return rc;
}

static int watch(struct cli_admin *ad, int64_t every_ms, const char *every)
{
    struct sigaction sa = {.sa_handler = on_sigint}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    bool first = true;
    while (!cli_interrupted) {
        json_t *st = fetch(ad);
        if (cli_interrupted) {
            json_decref(st);
            break;
        }
        if (st == NULL && first) return cli_admin_fail(ad);
        first = false;
        int drawn = draw(ad, st, every);
        json_decref(st);
        if (drawn != 0) return cli_stdout_done(ad->cmd, true);
        pause_ms(every_ms);
    }
    /* After Ctrl-C only a cosmetic newline is left to write: the screens were
     * checked, and the terminal may be gone by now. */
    printf("\n");
    fflush(stdout);
    clearerr(stdout);
    return CLI_OK;
}

int cmd_stats(const struct cli_args *a)
{
    bool json = cli_flag(a, "--json"), w = cli_flag(a, "--watch");
    const char *iv = cli_value(a, "--interval");
    int64_t ms = DEFAULT_INTERVAL_MS;
    const char *why;
    if (w && json) return cli_usage_error(a, "--watch and --json do not go together");
    if (iv && !w) return cli_usage_error(a, "--interval needs --watch");
    if (iv && config_parse_duration(iv, &ms, &why) != 0)
        return cli_usage_error(a, "--interval '%s': %s", iv, why);
    if (ms <= 0) return cli_usage_error(a, "--interval '%s': must be more than 0", iv);
    struct cli_admin ad;
    int rc = cli_admin_init(&ad, a);
    if (rc != CLI_OK) return rc;
    if (w) {
        rc = watch(&ad, ms, iv ? iv : "2s");
    } else {
        json_t *st = fetch(&ad);
        if (st == NULL) {
            rc = cli_admin_fail(&ad);
        } else if (json) {
            rc = cli_stdout_done(ad.cmd, cli_print_json(st) != 0);
        } else {
            render(stdout, st);
            rc = cli_stdout_done(ad.cmd, false);
        }
        json_decref(st);
    }
    cli_admin_fini(&ad);
    return rc;
}
