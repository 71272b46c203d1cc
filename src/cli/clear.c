/*
 * clear.c -- `strata clear`: remove cache entries through
 * POST /_strata/invalidate.
 *
 * Selectors: --all, --pattern GLOB, --tag TAG..., --url URL...,
 * --url-pattern GLOB. At least one is required; --all stands alone, the
 * others may be combined (the admin applies each). Without --cache every
 * cache is cleared. Prints "removed N", "(approximate)" appended when the
 * admin says the count is not exact (tags and URLs invalidate lazily).
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
        for (size_t k = 0; k < n; k++)
            json_array_append_new(arr, json_string(v[k]));
        json_object_set_new(b, selectors[i].field, arr);
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
    if (all) json_object_set_new(b, "all", json_true());
    const char *cache = cli_value(a, "--cache");
    if (cache) json_object_set_new(b, "cache", json_string(cache));
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
        cli_print_json(r);
    } else {
        json_t *removed = json_object_get(r, "removed");
        if (!json_is_integer(removed)) {
            snprintf(ad.err, sizeof ad.err,
                     "admin %s: no 'removed' count in the answer", ad.authority);
            rc = cli_admin_fail(&ad);
        } else {
            printf("removed %lld%s\n", (long long)json_integer_value(removed),
                   json_is_false(json_object_get(r, "exact")) ? " (approximate)" : "");
        }
    }
    json_decref(r);
    cli_admin_fini(&ad);
    return rc;
}
