/*
 * clear.c -- `strata clear`: remove cache entries through
 * POST /_strata/invalidate.
 *
 * Selectors: --all, --pattern GLOB, --tag TAG..., --url URL...,
 * --url-pattern GLOB. At least one is required; --all stands alone, the
 * others may be combined (the admin applies each). Without --cache every
 * cache is cleared. Prints "removed N", "(approximate)" appended when the
 * admin says the count is not exact (tags and URLs invalidate lazily).
 * A selector or cache name that is not UTF-8 cannot go into the JSON body: a
 * usage error, rather than a body without it (which would clear more).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Selector options and the body field each fills. */
static const struct {
    const char *opt, *field;
} selectors[] = {
    {"--pattern", "patterns"},
    {"--tag", "tags"},
    {"--url", "urls"},
    {"--url-pattern", "url_patterns"},
};

/* Set b[field] = v (reference taken). v NULL is json_string() of an
 * argument that is not UTF-8: a usage error. */
static int set_field(const struct cli_args *a, json_t *b, const char *field, json_t *v,
                     const char *opt)
{
    if (v == NULL || json_object_set_new(b, field, v) != 0)
        return cli_usage_error(a, "%s: a value is not valid UTF-8", opt);
    return CLI_OK;
}

static int build_body(const struct cli_args *a, json_t **out)
{
    bool all = cli_flag(a, "--all");
    size_t given = 0;
    json_t *b = json_object();
    for (size_t i = 0; i < sizeof selectors / sizeof *selectors; i++) {
        size_t n;
        const char *const *v = cli_values(a, selectors[i].opt, &n);
        if (n == 0) continue;
        given++;
        json_t *arr = json_array();
        for (size_t k = 0; arr && k < n; k++) {
            if (json_array_append_new(arr, json_string(v[k])) != 0) {
                json_decref(arr);
                arr = NULL;
            }
        }
        if (set_field(a, b, selectors[i].field, arr, selectors[i].opt) != CLI_OK) {
            json_decref(b);
            return CLI_USAGE;
        }
    }
    if (all && given) {
        json_decref(b);
        return cli_usage_error(a, "--all cannot be combined with other selectors");
    }
    if (!all && !given) {
        json_decref(b);
        return cli_usage_error(
            a, "say what to clear: --all, --pattern, --tag, --url or --url-pattern");
    }
    const char *cache = cli_value(a, "--cache");
    if ((all && set_field(a, b, "all", json_true(), "--all") != CLI_OK) ||
        (cache && set_field(a, b, "cache", json_string(cache), "--cache") != CLI_OK)) {
        json_decref(b);
        return CLI_USAGE;
    }
    *out = b;
    return CLI_OK;
}

int cmd_clear(const struct cli_args *a)
{
    json_t *body = NULL;
    int rc = build_body(a, &body);
    if (rc != CLI_OK) return rc;
    struct cli_admin ad;
    rc = cli_admin_init(&ad, a);
    if (rc != CLI_OK) {
        json_decref(body);
        return rc;
    }
    json_t *r =
        cli_admin_json(&ad, "POST", "/_strata/invalidate", body, CLI_CLEAR_TIMEOUT_MS);
    if (r == NULL) {
        rc = cli_admin_fail(&ad);
    } else if (cli_flag(a, "--json")) {
        rc = cli_stdout_done(ad.cmd, cli_print_json(r) != 0);
    } else {
        json_t *removed = json_object_get(r, "removed");
        if (!json_is_integer(removed)) {
            snprintf(ad.err, sizeof ad.err,
                     "admin %s: no 'removed' count in the answer", ad.authority);
            rc = cli_admin_fail(&ad);
        } else {
            printf("removed %lld%s\n", (long long)json_integer_value(removed),
                   json_is_false(json_object_get(r, "exact")) ? " (approximate)" : "");
            rc = cli_stdout_done(ad.cmd, false);
        }
    }
    json_decref(r);
    cli_admin_fini(&ad);
    return rc;
}
