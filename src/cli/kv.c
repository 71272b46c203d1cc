/*
 * kv.c -- `strata get|set|del KEY`: one key of a named cache through the
 * admin KV API, /_strata/caches/{cache}/keys/{key} (both percent-encoded).
 *
 * get writes the raw value to stdout and exits 1 on a miss; set takes the
 * value from the command line or, for `-`, from stdin (binary safe), with
 * --ttl DUR and --tags a,b sent as the query; del exits 1 when the key was
 * absent. A 404 is a miss unless the admin says the cache is unknown.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"

#define DEFAULT_CACHE "default"

static const char *cache_name(const struct cli_args *a)
{
    const char *c = cli_value(a, "--cache");
    return c ? c : DEFAULT_CACHE;
}

/* "/_strata/caches/C/keys/K" + query (may be ""); malloc'd or NULL. */
static char *key_target(const struct cli_args *a, const char *query)
{
    const char *cache = cache_name(a), *key = a->pos[0];
    char *c = cli_pct_encode(cache, strlen(cache));
    char *k = cli_pct_encode(key, strlen(key));
    char *t = NULL;
    if (c && k && asprintf(&t, "/_strata/caches/%s/keys/%s%s", c, k, query) < 0)
        t = NULL;
    free(c);
    free(k);
    return t;
}

/* A 404 that means "no such key" (not an unknown cache or endpoint). */
static bool is_miss(const struct cli_resp *r)
{
    if (r->status != 404) return false;
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *d = json_string_value(json_object_get(j, "detail"));
    bool miss = !(e && strstr(e, "cache")) && !(d && !strcmp(d, "no such endpoint"));
    json_decref(j);
    return miss;
}

/* Run one call; on anything but 2xx print the one-line reason. Returns
 * CLI_OK with *r to free, or CLI_FAIL (nothing to free). */
static int call(const struct cli_args *a, const char *method, const char *query,
                const void *body, size_t blen, struct cli_resp *r)
{
    struct cli_admin ad;
    int rc = cli_admin_init(&ad, a);
    if (rc != CLI_OK) return rc;
    char *target = key_target(a, query);
    if (target == NULL) {
        snprintf(ad.err, sizeof ad.err, "out of memory");
        rc = cli_admin_fail(&ad);
    } else if (cli_admin_call(&ad, method, target,
                              body ? "application/octet-stream" : NULL, body, blen,
                              CLI_READ_TIMEOUT_MS, r) != 0) {
        rc = cli_admin_fail(&ad);
    } else if (is_miss(r)) {
        fprintf(stderr, "strata %s: %s: not found in cache '%s'\n", a->cmd->name,
                a->pos[0], cache_name(a));
        cli_resp_fini(r);
        rc = CLI_FAIL;
    } else if (r->status < 200 || r->status > 299) {
        cli_admin_explain(&ad, r);
        cli_resp_fini(r);
        rc = cli_admin_fail(&ad);
    }
    free(target);
    cli_admin_fini(&ad);
    return rc;
}

int cmd_get(const struct cli_args *a)
{
    struct cli_resp r;
    int rc = call(a, "GET", "", NULL, 0, &r);
    if (rc != CLI_OK) return rc;
    if (fwrite(r.body, 1, r.len, stdout) != r.len || fflush(stdout) != 0) {
        fprintf(stderr, "strata get: cannot write the value to stdout\n");
        rc = CLI_FAIL;
    }
    cli_resp_fini(&r);
    return rc;
}

int cmd_del(const struct cli_args *a)
{
    struct cli_resp r;
    int rc = call(a, "DELETE", "", NULL, 0, &r);
    if (rc == CLI_OK) cli_resp_fini(&r);
    return rc;
}

/* All of stdin; NULL on a read error or out of memory. */
static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (ferror(stdin)) break;
        if (feof(stdin)) {
            *len = n;
            return buf;
        }
        char *t = cap < ((size_t)1 << 31) ? realloc(buf, cap * 2) : NULL;
        if (t == NULL) break;
        buf = t;
        cap *= 2;
    }
    free(buf);
    return NULL;
}

/* "?ttl=DUR&tags=a,b" (each part only when given); NULL after a usage
 * error (*rc set) or out of memory. */
static char *set_query(const struct cli_args *a, int *rc)
{
    const char *ttl = cli_value(a, "--ttl"), *tags = cli_value(a, "--tags");
    int64_t ms;
    const char *why;
    if (ttl && config_parse_duration(ttl, &ms, &why) != 0) {
        *rc = cli_usage_error(a, "--ttl '%s': %s", ttl, why);
        return NULL;
    }
    size_t cap = 16 + (ttl ? 3 * strlen(ttl) : 0) + (tags ? 3 * strlen(tags) : 0);
    char *q = calloc(1, cap);
    if (q == NULL) return NULL;
    if (ttl) {
        char *e = cli_pct_encode(ttl, strlen(ttl));
        if (e) snprintf(q, cap, "?ttl=%s", e);
        free(e);
    }
    for (const char *t = tags; t; t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL) {
        size_t n = strcspn(t, ",");
        if (n == 0) {
            free(q);
            *rc = cli_usage_error(a, "--tags '%s': an empty tag", tags);
            return NULL;
        }
        /* Commas stay literal: they separate the tags. */
        char *e = cli_pct_encode(t, n);
        if (e) {
            size_t len = strlen(q);
            snprintf(q + len, cap - len, "%s%s",
                     t == tags ? (ttl ? "&tags=" : "?tags=") : ",", e);
        }
        free(e);
    }
    return q;
}

int cmd_set(const struct cli_args *a)
{
    int rc = CLI_FAIL;
    char *query = set_query(a, &rc);
    if (query == NULL) {
        if (rc == CLI_FAIL) fprintf(stderr, "strata set: out of memory\n");
        return rc;
    }
    const char *v = a->pos[1];
    size_t vlen = strlen(v);
    char *owned = NULL;
    if (strcmp(v, "-") == 0) {
        owned = read_stdin(&vlen);
        if (owned == NULL) {
            fprintf(stderr, "strata set: cannot read the value from stdin\n");
            free(query);
            return CLI_FAIL;
        }
        v = owned;
    }
    struct cli_resp r;
    /* An empty value still sends a body: a zero Content-Length. */
    rc = call(a, "PUT", query, vlen ? v : "", vlen, &r);
    if (rc == CLI_OK) cli_resp_fini(&r);
    free(owned);
    free(query);
    return rc;
}
