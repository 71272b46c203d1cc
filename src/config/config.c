/*
 * config.c -- strata's YAML configuration: the tables of keys.h turned into
 * parser rows, the one walk that reads every section through them, and the
 * checks across keys and sections.
 *
 * What a user may write is a row in keys.h; this file only knows how to read
 * each type of row:
 *
 *     document (document.c) --read_map(table)--> struct config_cache / server
 *          |                                     / admin / http / route / bus
 *          \--config_dups--> every mapping in the file
 *
 * Three entry points share the walk. config_load_caches() (strata_open) reads
 * `caches:` only, and config_load_admin() (the CLI's admin commands) `admin:`
 * only; the other sections are checked to be mappings and nothing more, so a
 * library user or the CLI is never stopped by a setting it does not use (nor
 * by an unset ${ENV} in one). config_load() (strata serve, check-config) reads
 * every section, then checks what spans sections: the HTTP cache must exist,
 * per_user routes need http_cache.user_secret.
 *
 * The walk goes down only where a table says there is something to read, so
 * its work is bounded by the size of the file, and what aliases or ${ENV} copy
 * is charged to a budget (document.c). The first error stops the load and
 * everything allocated so far is freed; on failure the output is zeroed.
 */
#define _GNU_SOURCE
#include "config.h"
#include "internal.h"
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

/* ---- tables ---------------------------------------------------------------- */

enum ktype {
    T_BACKEND,
    T_URL,
    T_STRING,
    T_DURATION,
    T_SIZE,
    T_COUNT,
    T_LEVEL,
    T_CODEC,
    T_TEXT,
    T_BOOL,
    T_LISTEN,
    T_UPSTREAM,
    T_WORKERS,
    T_LOGLEVEL,
    T_CACHE,
    T_GLOB,
    T_HVALUE,
    T_USERFROM,
    T_TOKEN,
    /* Lists: a YAML sequence of scalars. */
    T_STRINGS,
    T_HEADERS,
    T_COOKIES,
    T_TAGS,
    T_CIDRS,
    /* A YAML sequence of mappings. */
    T_ROUTES,
};

static const char *const tnames[] = {
    [T_BACKEND] = "backend",
    [T_URL] = "URL",
    [T_STRING] = "string",
    [T_DURATION] = "duration",
    [T_SIZE] = "size",
    [T_COUNT] = "count",
    [T_LEVEL] = "level",
    [T_CODEC] = "codec",
    [T_TEXT] = "string",
    [T_BOOL] = "boolean",
    [T_LISTEN] = "address",
    [T_UPSTREAM] = "URL",
    [T_WORKERS] = "worker count",
    [T_LOGLEVEL] = "log level",
    [T_CACHE] = "cache name",
    [T_GLOB] = "path glob",
    [T_HVALUE] = "header value",
    [T_USERFROM] = "identity source",
    [T_TOKEN] = "token",
    [T_STRINGS] = "list of strings",
    [T_HEADERS] = "list of header names",
    [T_COOKIES] = "list of cookie names",
    [T_TAGS] = "list of tags",
    [T_CIDRS] = "list of CIDRs",
    [T_ROUTES] = "list of routes",
};

/* What one item of a list type is called. */
static const char *const inames[] = {
    [T_STRINGS] = "string", [T_HEADERS] = "header name", [T_COOKIES] = "cookie name",
    [T_TAGS] = "tag",       [T_CIDRS] = "CIDR",          [T_ROUTES] = "route",
};

/* The C type of the member each key type fills. */
#define CTYPE_BACKEND enum config_backend
#define CTYPE_URL char *
#define CTYPE_STRING char *
#define CTYPE_DURATION int64_t
#define CTYPE_SIZE uint64_t
#define CTYPE_COUNT uint64_t
#define CTYPE_LEVEL int
#define CTYPE_CODEC enum config_codec
#define CTYPE_TEXT char *
#define CTYPE_BOOL bool
#define CTYPE_LISTEN char *
#define CTYPE_UPSTREAM char *
#define CTYPE_WORKERS unsigned
#define CTYPE_LOGLEVEL char *
#define CTYPE_CACHE char *
#define CTYPE_GLOB char *
#define CTYPE_HVALUE char *
#define CTYPE_USERFROM enum config_user_from
#define CTYPE_TOKEN char *
#define CTYPE_STRINGS struct config_strings
#define CTYPE_HEADERS struct config_strings
#define CTYPE_COOKIES struct config_strings
#define CTYPE_TAGS struct config_strings
#define CTYPE_CIDRS struct config_cidr *
#define CTYPE_ROUTES struct config_route *

struct key {
    const char *name; /* "ttl"; "purge.allow" is allow inside purge */
    enum ktype type;
    size_t off;      /* of the member in the table's struct */
    const char *def; /* text of the default, NULL: unset */
    int64_t min;
};

struct table {
    const struct key *rows;
    size_t n;
};

/* Rows per table at most: the size of the arrays that record each key's line. */
#define MAXROWS 32

/* A row whose type does not match its member would write the wrong width. The
 * member types of CIDRS, ROUTES and USERFROM exist in one struct each, so
 * this also proves which struct those rows belong to (apply and read_list
 * rely on it). */
#define ROW_CHECK(S, n, t, f)                                                          \
    _Static_assert(_Generic(((S *)0)->f, CTYPE_##t : 1, default : 0),                  \
                   "config key " #n ": member " #f " is not a " #t);

#define CACHE_ROW(n, t, f, d, m, desc)                                                 \
    {#n, T_##t, offsetof(struct config_cache, f), d, m},
#define CACHE_CHECK(n, t, f, ...) ROW_CHECK(struct config_cache, n, t, f)
static const struct key cache_keys[] = {CONFIG_CACHE_KEYS(CACHE_ROW)};
CONFIG_CACHE_KEYS(CACHE_CHECK)

#define CACHE_ENUM(n, ...) K_##n,
enum { CONFIG_CACHE_KEYS(CACHE_ENUM) NKEYS };

#define SERVER_ROW(n, t, f, d, m, desc)                                                \
    {n, T_##t, offsetof(struct config_server, f), d, m},
#define SERVER_CHECK(n, t, f, ...) ROW_CHECK(struct config_server, n, t, f)
static const struct key server_keys[] = {CONFIG_SERVER_KEYS(SERVER_ROW)};
CONFIG_SERVER_KEYS(SERVER_CHECK)

#define ADMIN_ROW(n, t, f, d, m, desc)                                                 \
    {n, T_##t, offsetof(struct config_admin, f), d, m},
#define ADMIN_CHECK(n, t, f, ...) ROW_CHECK(struct config_admin, n, t, f)
static const struct key admin_keys[] = {CONFIG_ADMIN_KEYS(ADMIN_ROW)};
CONFIG_ADMIN_KEYS(ADMIN_CHECK)

#define HTTP_ROW(n, t, f, d, m, desc) {n, T_##t, offsetof(struct config_http, f), d, m},
#define HTTP_CHECK(n, t, f, ...) ROW_CHECK(struct config_http, n, t, f)
static const struct key http_keys[] = {CONFIG_HTTP_KEYS(HTTP_ROW)};
CONFIG_HTTP_KEYS(HTTP_CHECK)

#define ROUTE_ROW(n, t, f, d, m, desc)                                                 \
    {n, T_##t, offsetof(struct config_route, f), d, m},
#define ROUTE_CHECK(n, t, f, ...) ROW_CHECK(struct config_route, n, t, f)
static const struct key route_keys[] = {CONFIG_ROUTE_KEYS(ROUTE_ROW)};
CONFIG_ROUTE_KEYS(ROUTE_CHECK)

#define BUS_ROW(n, t, f, d, m, desc) {n, T_##t, offsetof(struct config_bus, f), d, m},
#define BUS_CHECK(n, t, f, ...) ROW_CHECK(struct config_bus, n, t, f)
static const struct key bus_keys[] = {CONFIG_BUS_KEYS(BUS_ROW)};
CONFIG_BUS_KEYS(BUS_CHECK)

static const struct table cache_table = {cache_keys, NELEM(cache_keys)};
static const struct table server_table = {server_keys, NELEM(server_keys)};
static const struct table admin_table = {admin_keys, NELEM(admin_keys)};
static const struct table http_table = {http_keys, NELEM(http_keys)};
static const struct table route_table = {route_keys, NELEM(route_keys)};
static const struct table bus_table = {bus_keys, NELEM(bus_keys)};

_Static_assert(NELEM(cache_keys) <= MAXROWS && NELEM(server_keys) <= MAXROWS &&
                   NELEM(admin_keys) <= MAXROWS && NELEM(http_keys) <= MAXROWS &&
                   NELEM(route_keys) <= MAXROWS && NELEM(bus_keys) <= MAXROWS,
               "raise MAXROWS");

#define SECTION_ROW(n, desc) #n,
static const char *const sections[] = {CONFIG_SECTIONS(SECTION_ROW)};
#define SECTION_LIST(n, desc) ", " #n
static const char *const known_sections = &CONFIG_SECTIONS(SECTION_LIST)[2];

struct builtin {
    const char *name, *ttl, *max_memory;
    bool embedded;
};
#define BUILTIN_ROW(n, ttl, mem, emb, desc) {n, ttl, mem, emb},
static const struct builtin builtins[] = {CONFIG_BUILTIN_CACHES(BUILTIN_ROW)};

#define BACKEND_ROW(e, n, desc) [CONFIG_BACKEND_##e] = n,
static const char *const backends[] = {CONFIG_BACKENDS(BACKEND_ROW)};

struct codec {
    const char *name;
    int lo, hi;
    const char *levels;
};
#define CODEC_ROW(e, n, lo, hi, lv) [CONFIG_CODEC_##e] = {n, lo, hi, lv},
static const struct codec codecs[] = {CONFIG_CODECS(CODEC_ROW)};

static const char *const loglevels[] = {"debug", "info", "warn", "error"};

/* The index of `s` in `names`, or -1. */
static int lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0) return (int)i;
    return -1;
}

/* The index of the row called `name` (a name from keys.h). */
static size_t rowof(const struct table *t, const char *name)
{
    size_t i = 0;

    while (i < t->n && strcmp(t->rows[i].name, name) != 0)
        i++;
    return i; /* t->n only for a name keys.h lacks: a compile-time typo */
}

static bool islist(enum ktype t)
{
    return t >= T_STRINGS && t <= T_CIDRS;
}

/* ---- one value ------------------------------------------------------------- */

static int setstr(void *f, const char *val)
{
    char *dup = strdup(val);

    if (!dup) return -1;
    free(*(char **)f);
    *(char **)f = dup;
    return 0;
}

/*
 * Parse `val` as the scalar key `k` into the struct at `base`. Returns 0; 1
 * with *why when `val` is not a value of the key's type (the message quotes
 * it); 2 with *why when it is wrong in a way the message must not quote it
 * for (bounds; a URL or a secret); -1 when out of memory. The field is
 * unchanged unless 0 is returned.
 */
static int apply(void *base, const struct key *k, const char *val, const char **why)
{
    void *f = (char *)base + k->off;
    int64_t ms;
    uint64_t u;
    unsigned w;
    bool b;
    int i;

    switch (k->type) {
    case T_DURATION:
        if (config_parse_duration(val, &ms, why)) return 1;
        if (ms < k->min) {
            *why = ms >= 0  ? "must be greater than 0"
                   : k->min ? "never is not allowed here: give a duration > 0"
                            : "never is not allowed here: give a duration (0s or more)";
            return 2;
        }
        *(int64_t *)f = ms;
        return 0;
    case T_SIZE:
    case T_COUNT:
        if (k->type == T_SIZE ? config_parse_size(val, &u, why)
                              : config_parse_count(val, &u, why))
            return 1;
        if (u < (uint64_t)k->min) return *why = "must be greater than 0", 2;
        *(uint64_t *)f = u;
        return 0;
    case T_LEVEL:
        if (config_parse_level(val, &i, why)) return 1;
        *(int *)f = i;
        return 0;
    case T_BACKEND:
        if ((i = lookup(backends, NELEM(backends), val)) < 0)
            return *why = "use memory, redis or tiered", 1;
        *(enum config_backend *)f = (enum config_backend)i;
        return 0;
    case T_CODEC:
        for (i = 0; i < (int)NELEM(codecs) && strcmp(codecs[i].name, val) != 0; i++)
            ;
        if (i == (int)NELEM(codecs)) return *why = "use none, zstd, lz4 or zlib", 1;
        *(enum config_codec *)f = (enum config_codec)i;
        return 0;
    case T_URL:
    case T_STRING:
        if (strlen(val) < (size_t)k->min) return *why = "must not be empty", 2;
        if (k->type == T_URL && strncmp(val, "redis://", 8) != 0 &&
            strncmp(val, "redis-sentinel://", 17) != 0)
            return *why = "must start with redis:// or redis-sentinel://", 2;
        return setstr(f, val);
    case T_TEXT:
        if (strlen(val) < (size_t)k->min) return *why = "must not be empty", 2;
        if (config_check_text(val, why)) return 2;
        return setstr(f, val);
    case T_HVALUE:
        if (strlen(val) < (size_t)k->min) return *why = "must not be empty", 2;
        if (config_check_header_value(val, why)) return 2;
        return setstr(f, val);
    case T_TOKEN:
        if (config_check_bearer(val, why)) return 2;
        return setstr(f, val);
    case T_BOOL:
        if (config_parse_bool(val, &b, why)) return 1;
        *(bool *)f = b;
        return 0;
    case T_WORKERS:
        if (config_parse_workers(val, &w, why)) return 1;
        *(unsigned *)f = w;
        return 0;
    case T_LISTEN:
        if (config_check_listen(val, why)) return 1;
        return setstr(f, val);
    case T_UPSTREAM:
        if (config_check_upstream(val, why)) return 2;
        return setstr(f, val);
    case T_LOGLEVEL:
        if (lookup(loglevels, NELEM(loglevels), val) < 0)
            return *why = "use debug, info, warn or error", 1;
        return setstr(f, val);
    case T_CACHE:
        if (!config_cache_name_ok(val))
            return *why = "use 1 to 64 of A-Z a-z 0-9 _ . -", 1;
        return setstr(f, val);
    case T_GLOB:
        if (!*val) return *why = "must not be empty", 2;
        if (!core_glob_valid(val))
            return *why = "an unterminated [ or a trailing \\ (write \\[ for a [)", 1;
        if (!strchr("/*?[", *val))
            return *why = "the glob matches the normalised path, which starts with /: "
                          "write /... or *",
                   1;
        return setstr(f, val);
    case T_USERFROM: {
        /* USERFROM rows fill struct config_route only (ROW_CHECK). */
        struct config_route *r = base;
        enum config_user_from from;
        const char *name;
        if (config_parse_user_from(val, &from, &name, why)) return 1;
        if (setstr(&r->user_from_name, name) != 0) return -1;
        r->user_from = from;
        return 0;
    }
    default:
        return *why = "not a single value", 1;
    }
}

/* Room for item n (0-based) of a growing array of `size`-byte items. */
static int grow(void *vp, size_t n, size_t size)
{
    void **v = vp, *nv;

    if (n & (n - 1)) return 0; /* not a power of two: there is room */
    if (!(nv = realloc(*v, (n ? 2 * n : 1) * size))) return -1;
    *v = nv;
    return 0;
}

/* Append one item to the list key `k`; the same returns as apply(). */
static int list_add(void *base, const struct key *k, const char *val, const char **why)
{
    void *f = (char *)base + k->off;
    int bad;

    switch (k->type) {
    case T_STRINGS:
        if (!*val) return *why = "must not be empty", 2;
        bad = config_check_text(val, why) ? 2 : 0;
        break;
    case T_HEADERS:
    case T_COOKIES:
        bad = config_check_token(val, why);
        break;
    case T_TAGS:
        bad = config_check_tag(val, why);
        break;
    case T_CIDRS: {
        /* CIDRS rows fill struct config_http only (ROW_CHECK). */
        struct config_http *h = base;
        struct config_cidr c;
        if (config_parse_cidr(val, &c, why)) return 1;
        if (grow(&h->purge_allow, h->n_purge_allow, sizeof c)) return -1;
        h->purge_allow[h->n_purge_allow++] = c;
        return 0;
    }
    default:
        return *why = "not a list", 1;
    }
    if (bad) return bad < 0 ? 1 : bad;
    struct config_strings *l = f;
    char *dup = strdup(val);
    if (!dup || grow(&l->v, l->n, sizeof *l->v)) {
        free(dup);
        return -1;
    }
    l->v[l->n++] = dup;
    return 0;
}

static void list_clear(void *base, const struct key *k)
{
    void *f = (char *)base + k->off;

    if (k->type == T_CIDRS) {
        struct config_http *h = base;
        free(h->purge_allow);
        h->purge_allow = NULL;
        h->n_purge_allow = 0;
        return;
    }
    struct config_strings *l = f;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static void route_fini(struct config_route *r);

/* Free what the rows of `t` own in `base` and zero them. */
static void table_fini(const struct table *t, void *base)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct key *k = &t->rows[i];
        void *f = (char *)base + k->off;
        switch (k->type) {
        case T_URL:
        case T_STRING:
        case T_TEXT:
        case T_LISTEN:
        case T_UPSTREAM:
        case T_LOGLEVEL:
        case T_CACHE:
        case T_GLOB:
        case T_HVALUE:
        case T_TOKEN:
            free(*(char **)f);
            *(char **)f = NULL;
            break;
        case T_USERFROM: {
            struct config_route *r = base;
            free(r->user_from_name);
            r->user_from_name = NULL;
            break;
        }
        case T_STRINGS:
        case T_HEADERS:
        case T_COOKIES:
        case T_TAGS:
        case T_CIDRS:
            list_clear(base, k);
            break;
        case T_ROUTES: {
            struct config_http *h = base;
            for (size_t j = 0; j < h->n_routes; j++)
                route_fini(&h->routes[j]);
            free(h->routes);
            h->routes = NULL;
            h->n_routes = 0;
            break;
        }
        default:
            break;
        }
    }
}

/*
 * Set every row of `t` that has a default. Defaults go through the parsers
 * users' values go through, so the text in keys.h (and in the docs) is what
 * the code does. A list's default is written "[a, b]". Returns 0 or -1 (out
 * of memory; a default keys.h got wrong fails the same way, and the unit
 * tests of the defaults catch it).
 */
static int table_init(const struct table *t, void *base)
{
    const char *why;
    char item[128];

    for (size_t i = 0; i < t->n; i++) {
        const struct key *k = &t->rows[i];
        if (!k->def || k->type == T_ROUTES) continue;
        if (!islist(k->type)) {
            if (apply(base, k, k->def, &why) != 0) return -1;
            continue;
        }
        for (const char *p = k->def + 1; *p && *p != ']';) {
            size_t n = strcspn(p, ",]");
            if (n >= sizeof item) return -1;
            memcpy(item, p, n);
            item[n] = '\0';
            if (list_add(base, k, item, &why) != 0) return -1;
            p += n + (p[n] == ',');
            p += strspn(p, " ");
        }
    }
    return 0;
}

/* ---- the walk ---------------------------------------------------------------- */

/* The keys of `t` inside the mapping `prefix` ("" or "purge."), for a
 * message: "backend, url, ttl". Malloc'd, or NULL. */
static char *known(const struct table *t, const char *prefix)
{
    size_t plen = strlen(prefix), len = 0;
    const char *last = NULL;
    size_t lastlen = 0;
    char *out = NULL;
    FILE *f = open_memstream(&out, &len);

    if (!f) return NULL;
    for (size_t i = 0; i < t->n; i++) {
        const char *n = t->rows[i].name;
        size_t cl;
        if (strncmp(n, prefix, plen) != 0) continue;
        n += plen;
        cl = strcspn(n, ".");
        if (last && cl == lastlen && strncmp(n, last, cl) == 0) continue;
        fprintf(f, "%s%.*s", last ? ", " : "", (int)cl, n);
        last = n;
        lastlen = cl;
    }
    if (ferror(f) | fclose(f)) {
        free(out);
        return NULL;
    }
    return out;
}

static int read_map(struct ld *ld, const struct table *t, void *base,
                    const yaml_node_t *map, const char *where, const char *prefix,
                    unsigned *lines);
static int read_routes(struct ld *ld, struct config_http *h, const yaml_node_t *seq,
                       const char *what);

/* A scalar value of `what`, ${ENV} expanded: malloc'd, or NULL (reported). */
static char *value(struct ld *ld, const yaml_node_t *v, const char *tname,
                   const char *what)
{
    const char *raw;

    if (v->type != YAML_SCALAR_NODE || config_isnull(v)) {
        config_fail(ld, config_line(v), "%s: expected a %s, got %s", what, tname,
                    config_kind(v));
        return NULL;
    }
    if (!(raw = config_scalar(ld, v, what))) return NULL;
    return config_expand(ld, raw, config_line(v), what);
}

/* Report the result `rc` of apply() or list_add() for `val`. */
static int verdict(struct ld *ld, int rc, const yaml_node_t *v, const char *what,
                   const char *tname, const char *val, const char *why)
{
    if (rc == 1)
        return config_fail(ld, config_line(v), "%s: bad %s '%.*s': %s", what, tname,
                           QUOTE, val, why);
    if (rc == 2) return config_fail(ld, config_line(v), "%s: %s", what, why);
    if (rc < 0) return config_oom(ld);
    return 0;
}

/* Read the YAML list `seq` into the list key `k`; it replaces the default. */
static int read_list(struct ld *ld, void *base, const struct key *k,
                     const yaml_node_t *seq, const char *what)
{
    char iw[160];

    if (seq->type != YAML_SEQUENCE_NODE)
        return config_fail(ld, config_line(seq), "%s: expected a %s, got %s", what,
                           tnames[k->type], config_kind(seq));
    list_clear(base, k);
    for (size_t i = 0; i < config_nitems(seq); i++) {
        const yaml_node_t *it = config_node(ld, seq->data.sequence.items.start[i]);
        const char *why = NULL;
        char *val;
        int rc;

        if (!it) return config_fail(ld, config_line(seq), "%s: malformed list", what);
        if (snprintf(iw, sizeof iw, "%s[%zu]", what, i) >= (int)sizeof iw)
            iw[sizeof iw - 1] = 0; /* a long name is cut in messages */
        /* The item's slot in its array (at most a CIDR's size), then its text. */
        if (config_charge(ld, sizeof(struct config_cidr), config_line(it)) ||
            !(val = value(ld, it, inames[k->type], iw)))
            return -1;
        rc = list_add(base, k, val, &why);
        verdict(ld, rc, it, iw, inames[k->type], val, why);
        free(val);
        if (rc != 0) return -1;
    }
    return 0;
}

/*
 * Read the mapping `map` into `base` through the rows of `t` whose names
 * start with `prefix` ("" at the top of a table; "purge." inside purge:).
 * `where` names the mapping in messages ("caches.a", "http_cache.purge").
 * lines[i] gets the line of row i's value. Unknown keys are errors; a key
 * that is the first part of some rows' names ("purge") is a nested mapping.
 */
static int read_map(struct ld *ld, const struct table *t, void *base,
                    const yaml_node_t *map, const char *where, const char *prefix,
                    unsigned *lines)
{
    size_t plen = strlen(prefix);
    char what[160];

    if (config_dups(ld, map, "key")) return -1;
    for (size_t i = 0; i < config_npairs(map); i++) {
        const yaml_node_t *k = config_node(ld, map->data.mapping.pairs.start[i].key);
        const yaml_node_t *v = config_node(ld, map->data.mapping.pairs.start[i].value);
        const char *name, *why = NULL;
        const struct key *row = NULL;
        bool nested = false;
        char *val;
        size_t j;
        int rc;

        if (!k || !v)
            return config_fail(ld, config_line(map), "%s: malformed mapping", where);
        if (!(name = config_keytext(ld, k, where))) return -1;
        /* A dot in a row's name is nesting; the same dot in a key is not. */
        for (j = 0; j < t->n && !row && !strchr(name, '.'); j++) {
            const char *rn = t->rows[j].name;
            size_t nl = strlen(name);
            if (strncmp(rn, prefix, plen) != 0 || strncmp(rn + plen, name, nl) != 0)
                continue;
            if (rn[plen + nl] == '\0')
                row = &t->rows[j];
            else if (rn[plen + nl] == '.' && nl > 0)
                nested = true;
        }
        if (!row && !nested) {
            char *list = known(t, prefix);
            config_fail(ld, config_line(k), "%s: unknown key '%.*s' (known keys: %s)",
                        where, QUOTE, name, list ? list : "?");
            free(list);
            return -1;
        }
        snprintf(what, sizeof what, "%s.%s", where, name);
        if (!row) {
            char sub[64];
            if (v->type != YAML_MAPPING_NODE)
                return config_fail(ld, config_line(v), "%s: expected a mapping, got %s",
                                   what, config_kind(v));
            snprintf(sub, sizeof sub, "%s%s.", prefix, name);
            if (read_map(ld, t, base, v, what, sub, lines)) return -1;
            continue;
        }
        lines[row - t->rows] = config_line(v);
        if (row->type == T_ROUTES) {
            if (read_routes(ld, base, v, what)) return -1;
            continue;
        }
        if (islist(row->type)) {
            if (read_list(ld, base, row, v, what)) return -1;
            continue;
        }
        if (!(val = value(ld, v, tnames[row->type], what))) return -1;
        rc = apply(base, row, val, &why);
        verdict(ld, rc, v, what, tnames[row->type], val, why);
        free(val);
        if (rc != 0) return -1;
    }
    return 0;
}

/* ---- caches ------------------------------------------------------------------ */

static void cache_fini(struct config_cache *cc)
{
    free(cc->name);
    table_fini(&cache_table, cc);
    memset(cc, 0, sizeof *cc);
}

int config_cache_init(struct config_cache *cc, const char *name)
{
    const char *why;

    memset(cc, 0, sizeof *cc);
    if (!name || !(cc->name = strdup(name))) goto fail;
    if (table_init(&cache_table, cc) != 0) goto fail;
    for (size_t i = 0; i < NELEM(builtins); i++) {
        if (strcmp(builtins[i].name, name) != 0) continue;
        if (apply(cc, &cache_keys[K_ttl], builtins[i].ttl, &why) != 0 ||
            apply(cc, &cache_keys[K_max_memory], builtins[i].max_memory, &why) != 0)
            goto fail;
    }
    return 0;
fail:
    cache_fini(cc);
    return -1;
}

void config_caches_fini(struct config_caches *cc)
{
    for (size_t i = 0; i < cc->n; i++)
        cache_fini(&cc->v[i]);
    free(cc->v);
    free(cc->path);
    memset(cc, 0, sizeof *cc);
}

int config_caches_defaults(struct config_caches *out)
{
    memset(out, 0, sizeof *out);
    if (!(out->v = calloc(NELEM(builtins), sizeof *out->v))) return -1;
    for (size_t i = 0; i < NELEM(builtins); i++) {
        if (!builtins[i].embedded) continue;
        if (config_cache_init(&out->v[out->n], builtins[i].name) != 0) {
            config_caches_fini(out);
            return -1;
        }
        out->n++;
    }
    return 0;
}

const struct config_cache *config_cache_find(const struct config_caches *cc,
                                             const char *name)
{
    for (size_t i = 0; name && i < cc->n; i++)
        if (strcmp(cc->v[i].name, name) == 0) return &cc->v[i];
    return NULL;
}

/* Read the settings of one cache; `cc` already holds its defaults. */
static int read_cache(struct ld *ld, struct config_cache *cc, const yaml_node_t *map)
{
    unsigned lines[MAXROWS] = {0};
    const struct codec *co;
    char where[96];

    snprintf(where, sizeof where, "caches.%s", cc->name);
    if (config_isnull(map)) return 0;
    if (map->type != YAML_MAPPING_NODE)
        return config_fail(ld, config_line(map),
                           "%s: expected a mapping of settings, got %s", where,
                           config_kind(map));
    if (read_map(ld, &cache_table, cc, map, where, "", lines)) return -1;

    /* Checks across keys: after the walk, so the order of keys does not matter. */
    if (cc->backend != CONFIG_BACKEND_MEMORY && !cc->url)
        return config_fail(ld, lines[K_backend] ? lines[K_backend] : cc->line,
                           "%s: backend %s needs a url (redis://host:port/db or "
                           "redis-sentinel://host:port,.../master/db)",
                           where, backends[cc->backend]);
    if (cc->backend == CONFIG_BACKEND_MEMORY && cc->url)
        return config_fail(
            ld, lines[K_url],
            "%s.url: a memory cache has no url (set backend: redis or tiered, or "
            "remove url)",
            where);
    co = &codecs[cc->compress];
    if (cc->compress != CONFIG_CODEC_NONE &&
        (cc->compress_level < co->lo || cc->compress_level > co->hi))
        return config_fail(ld, lines[K_compress_level],
                           "%s.compress_level: %d is out of range for %s (%s)", where,
                           cc->compress_level, co->name, co->levels);
    return 0;
}

static int read_caches(struct ld *ld, const yaml_node_t *map, unsigned keyline,
                       struct config_caches *out)
{
    size_t n;

    if (config_isnull(map) ||
        (map->type == YAML_MAPPING_NODE && config_npairs(map) == 0))
        return config_fail(
            ld, keyline,
            "caches: no caches defined (remove the section to get the built-in "
            "default, session and static caches)");
    if (map->type != YAML_MAPPING_NODE)
        return config_fail(ld, config_line(map),
                           "caches: expected a mapping of cache names, got %s",
                           config_kind(map));
    if (config_dups(ld, map, "cache")) return -1;
    n = config_npairs(map);
    /* One spare slot: config_load may add the built-in http cache. */
    if (!(out->v = calloc(n + 1, sizeof *out->v))) return config_oom(ld);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *k = config_node(ld, map->data.mapping.pairs.start[i].key);
        const yaml_node_t *v = config_node(ld, map->data.mapping.pairs.start[i].value);
        struct config_cache *cc = &out->v[out->n];
        const char *name;

        if (!k || !v)
            return config_fail(ld, config_line(map), "caches: malformed mapping");
        if (!(name = config_keytext(ld, k, "caches"))) return -1;
        if (!*name) return config_fail(ld, config_line(k), "caches: empty cache name");
        if (!config_cache_name_ok(name))
            return config_fail(
                ld, config_line(k),
                "caches: bad cache name '%.*s': use 1 to 64 of A-Z a-z 0-9 _ . -",
                QUOTE, name);
        if (config_charge(ld, sizeof *cc, config_line(k))) return -1;
        if (config_cache_init(cc, name) != 0) return config_oom(ld);
        cc->line = config_line(k);
        out->n++;
        if (read_cache(ld, cc, v) != 0) return -1;
    }
    return 0;
}

/* ---- routes ------------------------------------------------------------------ */

static void route_fini(struct config_route *r)
{
    table_fini(&route_table, r);
    memset(r, 0, sizeof *r);
}

static int route_init(struct config_route *r)
{
    memset(r, 0, sizeof *r);
    r->ttl_ms = r->swr_ms = r->sie_ms = CONFIG_MS_UNSET;
    if (table_init(&route_table, r) != 0) {
        route_fini(r);
        return -1;
    }
    return 0;
}

/* A PEM key is a few kilobytes; this bounds what a wrong path costs. */
#define MAX_KEY_FILE (64u << 10)

/*
 * jwt_key names a key file when it is the path of an existing regular file
 * (relative paths from the working directory), or when it ends in ".pem":
 * read it, and it must hold a PEM key. Anything else is an HS256 secret. A
 * file that is there but is not PEM, or a missing .pem file, is an error
 * rather than a secret: using a path as an HMAC key would make every token
 * forgeable by anyone who can guess the path.
 */
static int read_key_file(struct ld *ld, struct config_route *r, unsigned line,
                         const char *what)
{
    size_t klen = strlen(r->jwt_key), len = 0;
    char ebuf[128], *buf = NULL;
    struct stat st;
    ssize_t got;
    int fd, err = 0;

    if (stat(r->jwt_key, &st) != 0) {
        if (klen < 4 || strcasecmp(r->jwt_key + klen - 4, ".pem") != 0) return 0;
        err = errno;
        return config_fail(ld, line, "%s: cannot read the key file '%.*s': %s", what,
                           QUOTE, r->jwt_key, strerror_r(err, ebuf, sizeof ebuf));
    }
    if (!S_ISREG(st.st_mode)) return 0;
    /* O_NONBLOCK: if the path became a FIFO since stat, open must not wait. */
    if ((fd = open(r->jwt_key, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)) < 0)
        err = errno;
    else if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        err = EINVAL;
    else if (!(buf = malloc(MAX_KEY_FILE + 1)))
        err = ENOMEM;
    while (!err && len <= MAX_KEY_FILE) {
        if ((got = read(fd, buf + len, MAX_KEY_FILE + 1 - len)) < 0) {
            if (errno != EINTR) err = errno;
            continue;
        }
        if (got == 0) break;
        len += (size_t)got;
    }
    if (fd >= 0) close(fd);
    if (err) {
        free(buf);
        return config_fail(ld, line, "%s: cannot read the key file '%.*s': %s", what,
                           QUOTE, r->jwt_key, strerror_r(err, ebuf, sizeof ebuf));
    }
    if (len > MAX_KEY_FILE || memchr(buf, '\0', len) ||
        !memmem(buf, len, "-----BEGIN", 10)) {
        free(buf);
        return config_fail(
            ld, line,
            "%s: the file '%.*s' holds no PEM key (-----BEGIN ...): give "
            "an RS256/ES256 public key file or an HS256 secret",
            what, QUOTE, r->jwt_key);
    }
    buf[len] = '\0';
    if (config_charge(ld, len + 1, line)) {
        free(buf);
        return -1;
    }
    free(r->jwt_key);
    r->jwt_key = buf;
    r->jwt_key_is_pem = true;
    return 0;
}

/* The checks inside one route, after all its keys were read. */
static int route_check(struct ld *ld, struct config_route *r, const unsigned *lines,
                       const char *where)
{
    unsigned uline = lines[rowof(&route_table, "user_from")];
    unsigned kline = lines[rowof(&route_table, "jwt_key")];

    if (!r->name && !(r->name = strdup(r->path))) return config_oom(ld);
    if (r->per_user && r->user_from == CONFIG_USER_NONE)
        return config_fail(ld, r->line,
                           "%s: per_user needs user_from (header:NAME, cookie:NAME or "
                           "jwt:CLAIM)",
                           where);
    if (!r->per_user && r->user_from != CONFIG_USER_NONE)
        return config_fail(ld, uline,
                           "%s.user_from: only with per_user: true (add it, or remove "
                           "user_from)",
                           where);
    if (r->user_from == CONFIG_USER_JWT && !r->jwt_key)
        return config_fail(ld, r->line,
                           "%s: user_from jwt: needs jwt_key (an HS256 secret, or the "
                           "path of an RS256/ES256 public key file)",
                           where);
    if (r->user_from != CONFIG_USER_JWT && r->jwt_key)
        return config_fail(ld, kline, "%s.jwt_key: only with user_from: jwt:CLAIM",
                           where);
    if (r->jwt_key) {
        char what[160];
        if (snprintf(what, sizeof what, "%s.jwt_key", where) >= (int)sizeof what)
            what[sizeof what - 1] = 0;
        return read_key_file(ld, r, kline, what);
    }
    return 0;
}

struct nref {
    const char *name;
    size_t idx;
};

static int ncmp(const void *a, const void *b)
{
    const struct nref *x = a, *y = b;
    int c = strcmp(x->name, y->name);

    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Route names are the labels of route statistics: report the first route (in
 * file order) whose name an earlier one has. Sorting keeps this O(n log n). */
static int route_names(struct ld *ld, const struct config_http *h, const char *what)
{
    const struct nref *dup = NULL, *orig = NULL;
    struct nref *v;
    size_t g = 0;

    if (h->n_routes < 2) return 0;
    if (!(v = malloc(h->n_routes * sizeof *v))) return config_oom(ld);
    for (size_t i = 0; i < h->n_routes; i++)
        v[i] = (struct nref){h->routes[i].name, i};
    qsort(v, h->n_routes, sizeof *v, ncmp);
    for (size_t i = 1; i < h->n_routes; i++) {
        if (strcmp(v[g].name, v[i].name) != 0) {
            g = i;
            continue;
        }
        if (i == g + 1 && (!dup || v[i].idx < dup->idx)) {
            dup = &v[i];
            orig = &v[g];
        }
    }
    if (dup)
        config_fail(ld, h->routes[dup->idx].line,
                    "%s[%zu]: duplicate route name '%.*s' (first at line %u); a "
                    "route's name defaults to its path: give one of them a name",
                    what, dup->idx, QUOTE, dup->name, h->routes[orig->idx].line);
    free(v);
    return dup ? -1 : 0;
}

static int read_routes(struct ld *ld, struct config_http *h, const yaml_node_t *seq,
                       const char *what)
{
    char where[160];

    if (seq->type != YAML_SEQUENCE_NODE)
        return config_fail(ld, config_line(seq),
                           "%s: expected a list of routes, got %s", what,
                           config_kind(seq));
    for (size_t i = 0; i < config_nitems(seq); i++) {
        const yaml_node_t *it = config_node(ld, seq->data.sequence.items.start[i]);
        unsigned lines[MAXROWS] = {0};
        struct config_route *r;

        if (!it) return config_fail(ld, config_line(seq), "%s: malformed list", what);
        if (snprintf(where, sizeof where, "%s[%zu]", what, i) >= (int)sizeof where)
            where[sizeof where - 1] = 0;
        if (it->type != YAML_MAPPING_NODE)
            return config_fail(ld, config_line(it),
                               "%s: expected a mapping of route settings, got %s",
                               where, config_kind(it));
        if (config_charge(ld, sizeof *r, config_line(it))) return -1;
        if (grow(&h->routes, h->n_routes, sizeof *h->routes)) return config_oom(ld);
        r = &h->routes[h->n_routes];
        if (route_init(r) != 0) return config_oom(ld);
        h->n_routes++;
        r->line = config_line(it);
        if (read_map(ld, &route_table, r, it, where, "", lines) ||
            route_check(ld, r, lines, where))
            return -1;
    }
    return route_names(ld, h, what);
}

/* ---- the file ---------------------------------------------------------------- */

/* What config_load (c) or config_load_admin (admin) reads besides caches, and
 * the lines checked later. */
struct whole {
    struct config *c;           /* every section */
    struct config_admin *admin; /* or only admin: */
    unsigned http_lines[MAXROWS];
};

/* Read the top-level mapping: `caches:` into `cc` (NULL: it is only checked
 * to be a mapping); with `w`, the sections it asks for too. The sections not
 * read are only checked to be mappings. */
static int read_top(struct ld *ld, struct config_caches *cc, struct whole *w)
{
    const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    bool have = false;

    if (root && !config_isnull(root)) {
        if (root->type != YAML_MAPPING_NODE)
            return config_fail(ld, config_line(root),
                               "the file must be a mapping of sections (%s), not %s",
                               known_sections, config_kind(root));
        if (config_dups(ld, root, "section")) return -1;
        for (size_t i = 0; i < config_npairs(root); i++) {
            const yaml_node_t *k =
                config_node(ld, root->data.mapping.pairs.start[i].key);
            const yaml_node_t *v =
                config_node(ld, root->data.mapping.pairs.start[i].value);
            unsigned lines[MAXROWS];
            const char *name;
            int s;

            if (!k || !v)
                return config_fail(ld, config_line(root), "malformed mapping");
            if (!(name = config_keytext(ld, k, "top level"))) return -1;
            if ((s = lookup(sections, NELEM(sections), name)) < 0)
                return config_fail(ld, config_line(k),
                                   "unknown section '%.*s' (known sections: %s)", QUOTE,
                                   name, known_sections);
            if (cc && strcmp(sections[s], "caches") == 0) {
                if (read_caches(ld, v, config_line(k), cc) != 0) return -1;
                have = true;
                continue;
            }
            if (v->type != YAML_MAPPING_NODE && !config_isnull(v))
                return config_fail(ld, config_line(v), "%s: expected a mapping, got %s",
                                   sections[s], config_kind(v));
            if (!w || config_isnull(v)) continue;
            if (w->admin) {
                if (strcmp(name, "admin") == 0 &&
                    read_map(ld, &admin_table, w->admin, v, name, "", lines))
                    return -1;
                continue;
            }
            if (strcmp(name, "server") == 0)
                s = read_map(ld, &server_table, &w->c->server, v, name, "", lines);
            else if (strcmp(name, "admin") == 0)
                s = read_map(ld, &admin_table, &w->c->admin, v, name, "", lines);
            else if (strcmp(name, "http_cache") == 0)
                s = read_map(ld, &http_table, &w->c->http, v, name, "", w->http_lines);
            else
                s = read_map(ld, &bus_table, &w->c->bus, v, name, "", lines);
            if (s) return -1;
        }
    }
    if (cc && !have && config_caches_defaults(cc) != 0) return config_oom(ld);
    /* YAML forbids duplicate keys in any mapping, also in the sections this
     * load does not read; the ones above were checked in file order. */
    for (yaml_node_t *n = ld->doc->nodes.start; n < ld->doc->nodes.top; n++)
        if (n->type == YAML_MAPPING_NODE && config_dups(ld, n, "key")) return -1;
    return 0;
}

/* Parse `len` bytes and read them (see read_top). */
static int read_doc(struct ld *ld, const char *buf, size_t len,
                    struct config_caches *cc, struct whole *w)
{
    yaml_document_t doc;
    int rc;

    if (config_doc_parse(ld, buf, len, &doc) != 0) return -1;
    ld->doc = &doc;
    rc = read_top(ld, cc, w);
    yaml_document_delete(&doc);
    ld->doc = NULL;
    return rc;
}

/* Hand the first error to the caller (or free it). */
static void give_error(struct ld *ld, char **errmsg)
{
    if (errmsg)
        *errmsg = ld->err;
    else
        free(ld->err);
}

int config_load_caches_buf(const char *name, const char *buf, size_t len,
                           struct config_caches *out, char **errmsg)
{
    struct ld ld = {.path = name, .budget = CONFIG_BUDGET};

    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (read_doc(&ld, buf, len, out, NULL) == 0) {
        if ((out->path = strdup(name))) return 0;
        config_oom(&ld);
    }
    config_caches_fini(out);
    give_error(&ld, errmsg);
    return -1;
}

/* The file at `path`, whole (*buf malloc'd). 0, or -1 with *errmsg. */
static int read_path(const char *path, char **buf, size_t *len, char **errmsg)
{
    struct ld ld = {.path = path ? path : "(null)"};
    if (!path)
        config_fail(&ld, 0, "cannot open: %s", "no path given");
    else if (config_slurp(&ld, buf, len) == 0)
        return 0;
    give_error(&ld, errmsg);
    return -1;
}

int config_load_caches(const char *path, struct config_caches *out, char **errmsg)
{
    char *buf = NULL;
    size_t len = 0;

    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (read_path(path, &buf, &len, errmsg) != 0) return -1;
    int rc = config_load_caches_buf(path, buf, len, out, errmsg);
    free(buf);
    return rc;
}

/* The checks that span sections, after the whole file was read. */
static int check_whole(struct ld *ld, struct whole *w)
{
    struct config *c = w->c;
    struct config_caches *cc = &c->caches;

    if (!config_cache_find(cc, c->http.cache)) {
        unsigned line = w->http_lines[rowof(&http_table, "cache")];
        if (strcmp(c->http.cache, "http") != 0) {
            char *names = NULL;
            size_t len = 0;
            FILE *f = open_memstream(&names, &len);
            if (!f) return config_oom(ld);
            for (size_t i = 0; i < cc->n; i++)
                fprintf(f, "%s%s", i ? ", " : "", cc->v[i].name);
            if (ferror(f) | fclose(f)) {
                free(names);
                return config_oom(ld);
            }
            config_fail(ld, line,
                        "http_cache.cache: no cache '%s' (caches: %s; leave "
                        "http_cache.cache unset for the built-in http cache)",
                        c->http.cache, names);
            free(names);
            return -1;
        }
        /* The built-in http cache exists unless the file says otherwise. A
         * caches: section left a spare slot; the embedded defaults did not. */
        struct config_cache *v = realloc(cc->v, (cc->n + 1) * sizeof *cc->v);
        if (!v) return config_oom(ld);
        cc->v = v;
        if (config_cache_init(&cc->v[cc->n], "http") != 0) return config_oom(ld);
        cc->n++;
    }
    for (size_t i = 0; i < c->http.n_routes; i++) {
        const struct config_route *r = &c->http.routes[i];
        if (r->per_user && !c->http.user_secret)
            return config_fail(ld, r->line,
                               "http_cache.routes[%zu]: per_user needs "
                               "http_cache.user_secret (the HMAC key of per-user keys, "
                               "identical on every node)",
                               i);
    }
    return 0;
}

/* Every default: the sections' tables, no caches yet. */
static int defaults(struct config *c)
{
    memset(c, 0, sizeof *c);
    return table_init(&server_table, &c->server) ||
                   table_init(&admin_table, &c->admin) ||
                   table_init(&http_table, &c->http) || table_init(&bus_table, &c->bus)
               ? -1
               : 0;
}

int config_load_buf(const char *name, const char *buf, size_t len, struct config *out,
                    char **errmsg)
{
    struct ld ld = {.path = name ? name : "(defaults)", .budget = CONFIG_BUDGET};
    struct whole w = {.c = out};
    int rc = -1;

    if (errmsg) *errmsg = NULL;
    if (defaults(out) != 0)
        config_oom(&ld);
    else if (!name && config_caches_defaults(&out->caches) != 0)
        config_oom(&ld);
    else if (name && read_doc(&ld, buf, len, &out->caches, &w) != 0)
        ;
    else if (check_whole(&ld, &w) != 0)
        ;
    else if (name &&
             (!(out->path = strdup(name)) || !(out->caches.path = strdup(name))))
        config_oom(&ld);
    else
        rc = 0;
    if (rc != 0) {
        config_fini(out);
        give_error(&ld, errmsg);
    }
    return rc;
}

int config_load(const char *path, struct config *out, char **errmsg)
{
    char *buf = NULL;
    size_t len = 0;

    if (!path) return config_load_buf(NULL, NULL, 0, out, errmsg);
    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (read_path(path, &buf, &len, errmsg) != 0) return -1;
    int rc = config_load_buf(path, buf, len, out, errmsg);
    free(buf);
    return rc;
}

int config_load_admin_buf(const char *name, const char *buf, size_t len,
                          struct config_admin *out, char **errmsg)
{
    struct ld ld = {.path = name, .budget = CONFIG_BUDGET};
    struct whole w = {.admin = out};

    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (table_init(&admin_table, out) != 0)
        config_oom(&ld);
    else if (read_doc(&ld, buf, len, NULL, &w) == 0)
        return 0;
    config_admin_fini(out);
    give_error(&ld, errmsg);
    return -1;
}

int config_load_admin(const char *path, struct config_admin *out, char **errmsg)
{
    char *buf = NULL;
    size_t len = 0;

    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (read_path(path, &buf, &len, errmsg) != 0) return -1;
    int rc = config_load_admin_buf(path, buf, len, out, errmsg);
    free(buf);
    return rc;
}

void config_admin_fini(struct config_admin *a)
{
    table_fini(&admin_table, a);
    memset(a, 0, sizeof *a);
}

void config_fini(struct config *c)
{
    table_fini(&server_table, &c->server);
    table_fini(&admin_table, &c->admin);
    table_fini(&http_table, &c->http);
    table_fini(&bus_table, &c->bus);
    config_caches_fini(&c->caches);
    free(c->path);
    memset(c, 0, sizeof *c);
}
