/*
 * config.c -- strata's YAML configuration: the `caches:` section, the value
 * grammars (durations, sizes) and the checks that turn a bad file into one
 * clear "PATH:LINE: what is wrong" message.
 *
 * What a user may write is a row in keys.h; this file only knows how to read
 * each type of row. Loading goes
 *
 *     file bytes --libyaml--> document tree --walk--> struct config_caches
 *                                          \--dups--> every mapping in the file
 *
 * libyaml's document API builds the tree. An alias is a reference to the node
 * it names, never a copy, so an "alias bomb" costs nothing, and the walk goes
 * down only into `caches:` and two levels below it: its work is bounded by the
 * size of the file. The other sections are only checked to be mappings here
 * (`strata serve` reads them), but YAML's own rule that a mapping has no
 * duplicate keys is checked everywhere.
 *
 * The first error stops the load and everything allocated so far is freed;
 * on failure `out` is left zeroed. No global state: every call only reads its
 * arguments, the file and the environment (getenv).
 */
#define _GNU_SOURCE
#include "config.h"
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

/* A configuration file is a few kilobytes; this only stops a wrong path (a
 * device, a log file) from being read into memory whole. */
#define MAX_FILE (16u << 20)

/* Longest excerpt of a user's value or key quoted in a message. */
#define QUOTE 64

/* ---- tables ---------------------------------------------------------------- */

enum ktype {
    T_BACKEND,
    T_URL,
    T_STRING,
    T_DURATION,
    T_SIZE,
    T_COUNT,
    T_LEVEL,
    T_CODEC
};

static const char *const tnames[] = {
    [T_BACKEND] = "backend",   [T_URL] = "URL",     [T_STRING] = "string",
    [T_DURATION] = "duration", [T_SIZE] = "size",   [T_COUNT] = "count",
    [T_LEVEL] = "level",       [T_CODEC] = "codec",
};

/* The C type of the struct config_cache member each key type fills. */
#define CTYPE_BACKEND enum config_backend
#define CTYPE_URL char *
#define CTYPE_STRING char *
#define CTYPE_DURATION int64_t
#define CTYPE_SIZE uint64_t
#define CTYPE_COUNT uint64_t
#define CTYPE_LEVEL int
#define CTYPE_CODEC enum config_codec

struct key {
    const char *name;
    enum ktype type;
    size_t off;      /* of the member in struct config_cache */
    const char *def; /* text of the default, NULL: unset */
    int64_t min;
};

#define KEY_ROW(n, t, f, d, m, desc)                                                   \
    {#n, T_##t, offsetof(struct config_cache, f), d, m},
static const struct key keys[] = {CONFIG_CACHE_KEYS(KEY_ROW)};
#undef KEY_ROW

#define KEY_ENUM(n, ...) K_##n,
enum { CONFIG_CACHE_KEYS(KEY_ENUM) NKEYS };
#undef KEY_ENUM

/* A row whose type does not match its member would write the wrong width. */
#define KEY_CHECK(n, t, f, ...)                                                        \
    _Static_assert(                                                                    \
        _Generic(((struct config_cache *)0)->f, CTYPE_##t : 1, default : 0),           \
        "config key " #n ": member " #f " is not a " #t);
CONFIG_CACHE_KEYS(KEY_CHECK)
#undef KEY_CHECK

#define KEY_LIST(n, ...) ", " #n
static const char *const known_keys = &CONFIG_CACHE_KEYS(KEY_LIST)[2];
#undef KEY_LIST

#define SECTION_ROW(n, desc) #n,
static const char *const sections[] = {CONFIG_SECTIONS(SECTION_ROW)};
#undef SECTION_ROW
#define SECTION_LIST(n, desc) ", " #n
static const char *const known_sections = &CONFIG_SECTIONS(SECTION_LIST)[2];
#undef SECTION_LIST

struct builtin {
    const char *name, *ttl, *max_memory;
    bool embedded;
};
#define BUILTIN_ROW(n, ttl, mem, emb, desc) {n, ttl, mem, emb},
static const struct builtin builtins[] = {CONFIG_BUILTIN_CACHES(BUILTIN_ROW)};
#undef BUILTIN_ROW

#define BACKEND_ROW(e, n, desc) [CONFIG_BACKEND_##e] = n,
static const char *const backends[] = {CONFIG_BACKENDS(BACKEND_ROW)};
#undef BACKEND_ROW

struct codec {
    const char *name;
    int lo, hi;
    const char *levels;
};
#define CODEC_ROW(e, n, lo, hi, lv) [CONFIG_CODEC_##e] = {n, lo, hi, lv},
static const struct codec codecs[] = {CONFIG_CODECS(CODEC_ROW)};
#undef CODEC_ROW

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* ---- value grammars -------------------------------------------------------- */

/* Read the decimal digits at *sp into *v. Returns 0, -1 when there is no
 * digit, -2 when the number is larger than `max`. */
static int number(const char **sp, uint64_t *v, uint64_t max)
{
    const char *p = *sp;
    uint64_t n = 0;

    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (max - d) / 10) return -2;
        n = n * 10 + d;
    }
    *sp = p;
    *v = n;
    return 0;
}

int config_parse_duration(const char *s, int64_t *ms, const char **why)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"ms", 1},          {"s", 1000},           {"m", 60 * 1000},
        {"h", 3600 * 1000}, {"d", 86400 * 1000LL}, {"w", 7 * 86400 * 1000LL},
    };
    const char *dummy, *p = s;
    uint64_t v;

    if (!why) why = &dummy;
    if (!s || !*s) return *why = "empty value", -1;
    if (strcmp(s, "never") == 0) {
        *ms = -1;
        return 0;
    }
    switch (number(&p, &v, INT64_MAX)) {
    case -1:
        *why = "expected a number and a unit (300ms, 5s, 10m, 1h, 30d, 2w) or never";
        return -1;
    case -2:
        *why = "out of range";
        return -1;
    }
    if (!*p) return *why = "a bare number needs a unit: ms, s, m, h, d or w", -1;
    if (*p == '.' || *p == ',')
        return *why = "fractions are not supported: use a smaller unit (1500ms)", -1;
    for (size_t i = 0; i < NELEM(units); i++) {
        if (strcmp(p, units[i].unit) != 0) continue;
        if (v > (uint64_t)(INT64_MAX / units[i].ms)) return *why = "out of range", -1;
        *ms = (int64_t)v * units[i].ms;
        return 0;
    }
    *why = "unknown unit (use ms, s, m, h, d or w)";
    return -1;
}

int config_parse_size(const char *s, uint64_t *bytes, const char **why)
{
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {
        {"B", 0},   {"KB", 10},  {"KiB", 10}, {"MB", 20},  {"MiB", 20},
        {"GB", 30}, {"GiB", 30}, {"TB", 40},  {"TiB", 40},
    };
    const char *dummy, *p = s;
    uint64_t v;

    if (!why) why = &dummy;
    if (!s || !*s) return *why = "empty value", -1;
    switch (number(&p, &v, UINT64_MAX)) {
    case -1:
        *why = "expected a number and a unit (512KB, 256MB, 2GB)";
        return -1;
    case -2:
        *why = "out of range";
        return -1;
    }
    if (!*p) return *why = "a bare number needs a unit: B, KB, MB, GB or TB", -1;
    if (*p == '.' || *p == ',')
        return *why = "fractions are not supported: use a smaller unit (1536KB)", -1;
    for (size_t i = 0; i < NELEM(units); i++) {
        if (strcasecmp(p, units[i].unit) != 0) continue;
        if (v > (UINT64_MAX >> units[i].shift)) return *why = "out of range", -1;
        *bytes = v << units[i].shift;
        return 0;
    }
    *why = "unknown unit (use B, KB, MB, GB, TB; KiB, MiB, GiB, TiB)";
    return -1;
}

static int count(const char *s, uint64_t *v, const char **why)
{
    const char *p = s;

    switch (number(&p, v, UINT64_MAX)) {
    case -1:
        return *why = "expected a whole number (0 or more)", -1;
    case -2:
        return *why = "out of range", -1;
    }
    if (*p) return *why = "expected a whole number (0 or more)", -1;
    return 0;
}

static int level(const char *s, int *v, const char **why)
{
    const char *p = s + (*s == '-');
    uint64_t n;

    switch (number(&p, &n, INT_MAX)) {
    case -1:
        return *why = "expected a whole number", -1;
    case -2:
        return *why = "out of range", -1;
    }
    if (*p) return *why = "expected a whole number", -1;
    *v = *s == '-' ? -(int)n : (int)n;
    return 0;
}

/* The index of `s` in `names`, or -1. */
static int lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0) return (int)i;
    return -1;
}

static int codec(const char *s)
{
    for (size_t i = 0; i < NELEM(codecs); i++)
        if (strcmp(codecs[i].name, s) == 0) return (int)i;
    return -1;
}

/* ---- one cache ------------------------------------------------------------- */

/*
 * Parse `val` as key `k` into `cc`. Returns 0; 1 with *why when `val` is not a
 * value of the key's type; 2 with *why when it is, but outside the key's
 * bounds; -1 when out of memory. `cc` is unchanged unless 0 is returned.
 */
static int apply(struct config_cache *cc, const struct key *k, const char *val,
                 const char **why)
{
    void *f = (char *)cc + k->off;
    int64_t ms;
    uint64_t u;
    int i;

    switch (k->type) {
    case T_DURATION:
        if (config_parse_duration(val, &ms, why)) return 1;
        if (ms < k->min) {
            *why = ms < 0 ? "never is not allowed here: give a duration > 0"
                          : "must be greater than 0";
            return 2;
        }
        *(int64_t *)f = ms;
        return 0;
    case T_SIZE:
    case T_COUNT:
        if (k->type == T_SIZE ? config_parse_size(val, &u, why) : count(val, &u, why))
            return 1;
        if (u < (uint64_t)k->min) return *why = "must be greater than 0", 2;
        *(uint64_t *)f = u;
        return 0;
    case T_LEVEL:
        if (level(val, &i, why)) return 1;
        *(int *)f = i;
        return 0;
    case T_BACKEND:
        if ((i = lookup(backends, NELEM(backends), val)) < 0)
            return *why = "use memory, redis or tiered", 1;
        *(enum config_backend *)f = (enum config_backend)i;
        return 0;
    case T_CODEC:
        if ((i = codec(val)) < 0) return *why = "use none, zstd, lz4 or zlib", 1;
        *(enum config_codec *)f = (enum config_codec)i;
        return 0;
    case T_URL:
    case T_STRING: {
        char *dup;
        if (strlen(val) < (size_t)k->min) return *why = "must not be empty", 2;
        if (k->type == T_URL && strncmp(val, "redis://", 8) != 0 &&
            strncmp(val, "redis-sentinel://", 17) != 0)
            return *why = "must start with redis:// or redis-sentinel://", 2;
        if (!(dup = strdup(val))) return -1;
        free(*(char **)f);
        *(char **)f = dup;
        return 0;
    }
    }
    return *why = "unknown key type", 1;
}

static void cache_fini(struct config_cache *cc)
{
    free(cc->name);
    free(cc->url);
    free(cc->key_prefix);
    memset(cc, 0, sizeof *cc);
}

int config_cache_init(struct config_cache *cc, const char *name)
{
    const char *why;

    memset(cc, 0, sizeof *cc);
    if (!name || !(cc->name = strdup(name))) goto fail;
    /* Defaults go through the parsers users' values go through, so the text
     * in keys.h (and in the docs) is what the code does. */
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].def && apply(cc, &keys[i], keys[i].def, &why) != 0) goto fail;
    for (size_t i = 0; i < NELEM(builtins); i++) {
        if (strcmp(builtins[i].name, name) != 0) continue;
        if (apply(cc, &keys[K_ttl], builtins[i].ttl, &why) != 0 ||
            apply(cc, &keys[K_max_memory], builtins[i].max_memory, &why) != 0)
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

/* ---- loading --------------------------------------------------------------- */

struct ld {
    const char *path;
    yaml_document_t *doc;
    char *err;   /* the first error, "PATH:LINE: ..." */
    bool failed; /* an error happened (err is NULL if there was no memory for it) */
};

/* Record an error at `line` (0: about the file as a whole). Only the first
 * one is kept: later ones are consequences. Returns -1. */
static int fail(struct ld *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct ld *ld, unsigned line, const char *fmt, ...)
{
    char *msg;
    va_list ap;

    if (ld->failed) return -1;
    ld->failed = true;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
    va_end(ap);
    if (!msg) return -1;
    if (line ? asprintf(&ld->err, "%s:%u: %s", ld->path, line, msg) < 0
             : asprintf(&ld->err, "%s: %s", ld->path, msg) < 0)
        ld->err = NULL;
    free(msg);
    return -1;
}

static int oom(struct ld *ld)
{
    return fail(ld, 0, "out of memory");
}

static yaml_node_t *node(struct ld *ld, int id)
{
    return yaml_document_get_node(ld->doc, id);
}

static unsigned lineof(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

/* YAML's null: an empty or ~/null plain scalar ("ttl:" with no value). */
static bool isnull(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    return n->type == YAML_SCALAR_NODE &&
           n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           lookup(nulls, NELEM(nulls), text(n)) >= 0;
}

static const char *kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return isnull(n) ? "no value" : "a string";
    default:
        return "nothing";
    }
}

static size_t npairs(const yaml_node_t *map)
{
    return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

/* A scalar's text, or NULL (error reported) when it holds a NUL byte, which
 * C strings would silently cut. */
static const char *scalar(struct ld *ld, const yaml_node_t *n, const char *where)
{
    if (strlen(text(n)) != n->data.scalar.length) {
        fail(ld, lineof(n), "%s: contains a NUL byte", where);
        return NULL;
    }
    return text(n);
}

/* The text of a mapping key, or NULL (error reported). */
static const char *keytext(struct ld *ld, const yaml_node_t *k, const char *where)
{
    if (k->type != YAML_SCALAR_NODE) {
        fail(ld, lineof(k), "%s: a key must be a name, not %s", where, kind(k));
        return NULL;
    }
    return scalar(ld, k, where);
}

struct kref {
    const char *s;
    size_t len, idx;
    unsigned line;
};

static int kcmp(const void *a, const void *b)
{
    const struct kref *x = a, *y = b;
    int c;

    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    if ((c = memcmp(x->s, y->s, x->len)) != 0) return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/*
 * Report the first key of `map` (in file order) that repeats an earlier one.
 * Sorting keeps this O(n log n) for a mapping of any size. `what` names the
 * keys in the message ("key", "cache", "section"). Returns 0 or -1.
 */
static int dups(struct ld *ld, const yaml_node_t *map, const char *what)
{
    const struct kref *dup = NULL, *orig = NULL;
    size_t n = npairs(map), m = 0, g = 0;
    struct kref *v;

    if (n < 2) return 0;
    if (!(v = malloc(n * sizeof *v))) return oom(ld);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *k = node(ld, map->data.mapping.pairs.start[i].key);
        if (k && k->type == YAML_SCALAR_NODE)
            v[m++] = (struct kref){text(k), k->data.scalar.length, i, lineof(k)};
    }
    qsort(v, m, sizeof *v, kcmp);
    for (size_t i = 1; i < m; i++) {
        if (v[g].len != v[i].len || memcmp(v[g].s, v[i].s, v[i].len) != 0) {
            g = i;
            continue;
        }
        if (i == g + 1 && (!dup || v[i].idx < dup->idx)) {
            dup = &v[i];
            orig = &v[g];
        }
    }
    if (dup)
        fail(ld, dup->line, "duplicate %s '%.*s' (first at line %u)", what,
             dup->len > QUOTE ? QUOTE : (int)dup->len, dup->s, orig->line);
    free(v);
    return dup ? -1 : 0;
}

static bool varname(const char *s, size_t n)
{
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

/*
 * `s` with every ${NAME} replaced by the value of the environment variable
 * NAME, and $${ by a literal ${. Returns a malloc'd string, or NULL (error
 * reported) for an unset variable, a bad name or an unterminated ${.
 */
static char *expand(struct ld *ld, const char *s, unsigned line, const char *where)
{
    char *out = NULL, *name = NULL;
    size_t outlen = 0;
    FILE *f;

    if (!(f = open_memstream(&out, &outlen))) {
        oom(ld);
        return NULL;
    }
    for (const char *p = s; *p;) {
        const char *end, *val;
        if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
            fputs("${", f);
            p += 3;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            fputc(*p++, f);
            continue;
        }
        if (!(end = strchr(p + 2, '}'))) {
            fail(ld, line, "%s: unterminated ${ (write ${NAME})", where);
            goto fail;
        }
        if (!varname(p + 2, (size_t)(end - p - 2))) {
            fail(ld, line,
                 "%s: bad environment variable name '${%.*s}' (letters, digits and _, "
                 "not starting with a digit)",
                 where, (int)(end - p - 2 > QUOTE ? QUOTE : end - p - 2), p + 2);
            goto fail;
        }
        if (!(name = strndup(p + 2, (size_t)(end - p - 2)))) {
            oom(ld);
            goto fail;
        }
        if (!(val = getenv(name))) {
            fail(ld, line, "environment variable %s is not set", name);
            goto fail;
        }
        fputs(val, f);
        free(name);
        name = NULL;
        p = end + 1;
    }
    if (ferror(f) | fclose(f)) {
        free(out);
        oom(ld);
        return NULL;
    }
    return out;
fail:
    fclose(f);
    free(out);
    free(name);
    return NULL;
}

/* Read the settings of one cache; `cc` already holds its defaults. */
static int read_cache(struct ld *ld, struct config_cache *cc, const yaml_node_t *map)
{
    unsigned lines[NKEYS] = {0};
    const struct codec *co;
    char where[96], what[128];

    snprintf(where, sizeof where, "caches.%s", cc->name);
    if (map->type != YAML_MAPPING_NODE && !isnull(map))
        return fail(ld, lineof(map), "%s: expected a mapping of settings, got %s",
                    where, kind(map));
    if (map->type == YAML_MAPPING_NODE && dups(ld, map, "key")) return -1;
    for (size_t i = 0; map->type == YAML_MAPPING_NODE && i < npairs(map); i++) {
        const yaml_node_t *k = node(ld, map->data.mapping.pairs.start[i].key);
        const yaml_node_t *v = node(ld, map->data.mapping.pairs.start[i].value);
        const char *name, *raw, *why = NULL;
        const struct key *row;
        char *val;
        int j, rc;

        if (!k || !v) return fail(ld, lineof(map), "%s: malformed mapping", where);
        if (!(name = keytext(ld, k, where))) return -1;
        for (j = 0; j < (int)NKEYS && strcmp(keys[j].name, name) != 0; j++)
            ;
        if (j == (int)NKEYS)
            return fail(ld, lineof(k), "%s: unknown key '%.*s' (known keys: %s)", where,
                        QUOTE, name, known_keys);
        row = &keys[j];
        snprintf(what, sizeof what, "%s.%s", where, row->name);
        if (v->type != YAML_SCALAR_NODE || isnull(v))
            return fail(ld, lineof(v), "%s: expected a %s, got %s", what,
                        tnames[row->type], kind(v));
        if (!(raw = scalar(ld, v, what)) || !(val = expand(ld, raw, lineof(v), what)))
            return -1;
        rc = apply(cc, row, val, &why);
        if (rc == 1)
            fail(ld, lineof(v), "%s: bad %s '%.*s': %s", what, tnames[row->type], QUOTE,
                 val, why);
        else if (rc == 2)
            fail(ld, lineof(v), "%s: %s", what, why);
        else if (rc < 0)
            oom(ld);
        free(val);
        if (rc != 0) return -1;
        lines[j] = lineof(v);
    }

    /* Checks across keys: after the loop, so the order of keys does not matter. */
    if (cc->backend != CONFIG_BACKEND_MEMORY && !cc->url)
        return fail(ld, lines[K_backend] ? lines[K_backend] : cc->line,
                    "%s: backend %s needs a url (redis://host:port/db or "
                    "redis-sentinel://host:port,.../master/db)",
                    where, backends[cc->backend]);
    if (cc->backend == CONFIG_BACKEND_MEMORY && cc->url)
        return fail(
            ld, lines[K_url],
            "%s.url: a memory cache has no url (set backend: redis or tiered, or "
            "remove url)",
            where);
    co = &codecs[cc->compress];
    if (cc->compress != CONFIG_CODEC_NONE &&
        (cc->compress_level < co->lo || cc->compress_level > co->hi))
        return fail(ld, lines[K_compress_level],
                    "%s.compress_level: %d is out of range for %s (%s)", where,
                    cc->compress_level, co->name, co->levels);
    return 0;
}

static bool goodname(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 64) return false;
    for (; *s; s++)
        if (!(*s == '_' || *s == '.' || *s == '-' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}

static int read_caches(struct ld *ld, const yaml_node_t *map, unsigned keyline,
                       struct config_caches *out)
{
    size_t n;

    if (isnull(map) || (map->type == YAML_MAPPING_NODE && npairs(map) == 0))
        return fail(ld, keyline,
                    "caches: no caches defined (remove the section to get the built-in "
                    "default, session and static caches)");
    if (map->type != YAML_MAPPING_NODE)
        return fail(ld, lineof(map),
                    "caches: expected a mapping of cache names, got %s", kind(map));
    if (dups(ld, map, "cache")) return -1;
    n = npairs(map);
    if (!(out->v = calloc(n, sizeof *out->v))) return oom(ld);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *k = node(ld, map->data.mapping.pairs.start[i].key);
        const yaml_node_t *v = node(ld, map->data.mapping.pairs.start[i].value);
        struct config_cache *cc = &out->v[out->n];
        const char *name;

        if (!k || !v) return fail(ld, lineof(map), "caches: malformed mapping");
        if (!(name = keytext(ld, k, "caches"))) return -1;
        if (!*name) return fail(ld, lineof(k), "caches: empty cache name");
        if (!goodname(name))
            return fail(
                ld, lineof(k),
                "caches: bad cache name '%.*s': use 1 to 64 of A-Z a-z 0-9 _ . -",
                QUOTE, name);
        if (config_cache_init(cc, name) != 0) return oom(ld);
        cc->line = lineof(k);
        out->n++;
        if (read_cache(ld, cc, v) != 0) return -1;
    }
    return 0;
}

static int read_top(struct ld *ld, struct config_caches *out)
{
    const yaml_node_t *root = yaml_document_get_root_node(ld->doc);
    bool have = false;

    if (root && !isnull(root)) {
        if (root->type != YAML_MAPPING_NODE)
            return fail(ld, lineof(root),
                        "the file must be a mapping of sections (%s), not %s",
                        known_sections, kind(root));
        if (dups(ld, root, "section")) return -1;
        for (size_t i = 0; i < npairs(root); i++) {
            const yaml_node_t *k = node(ld, root->data.mapping.pairs.start[i].key);
            const yaml_node_t *v = node(ld, root->data.mapping.pairs.start[i].value);
            const char *name;
            int s;

            if (!k || !v) return fail(ld, lineof(root), "malformed mapping");
            if (!(name = keytext(ld, k, "top level"))) return -1;
            if ((s = lookup(sections, NELEM(sections), name)) < 0)
                return fail(ld, lineof(k),
                            "unknown section '%.*s' (known sections: %s)", QUOTE, name,
                            known_sections);
            if (strcmp(sections[s], "caches") == 0) {
                if (read_caches(ld, v, lineof(k), out) != 0) return -1;
                have = true;
            } else if (v->type != YAML_MAPPING_NODE && !isnull(v)) {
                return fail(ld, lineof(v), "%s: expected a mapping, got %s",
                            sections[s], kind(v));
            }
        }
    }
    if (!have && config_caches_defaults(out) != 0) return oom(ld);
    /* YAML forbids duplicate keys in any mapping, also in the sections this
     * loader does not read; the ones above were checked in file order. */
    for (yaml_node_t *n = ld->doc->nodes.start; n < ld->doc->nodes.top; n++)
        if (n->type == YAML_MAPPING_NODE && dups(ld, n, "key")) return -1;
    return 0;
}

static void yaml_fail(struct ld *ld, const yaml_parser_t *p, const char *buf,
                      size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    unsigned line = 1;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        oom(ld);
        return;
    case YAML_READER_ERROR:
        /* The reader reports a byte offset, not a mark. */
        for (size_t i = 0; i < len && i < p->problem_offset; i++)
            line += buf[i] == '\n';
        if (p->problem_value >= 0)
            fail(ld, line, "invalid YAML input: %s (byte 0x%02x)", problem,
                 (unsigned)p->problem_value);
        else
            fail(ld, line, "invalid YAML input: %s", problem);
        return;
    default:
        line = (unsigned)p->problem_mark.line + 1;
        if (p->context)
            fail(ld, line, "YAML syntax error: %s (%s that started at line %u)",
                 problem, p->context, (unsigned)p->context_mark.line + 1);
        else
            fail(ld, line, "YAML syntax error: %s", problem);
    }
}

/* Read the file whole into a malloc'd buffer. Returns 0 or -1 (reported). */
static int slurp(struct ld *ld, char **bufp, size_t *lenp)
{
    size_t cap = 4096, len = 0;
    char *buf = NULL, *nbuf, ebuf[128];
    struct stat st;
    int fd, err = 0;

    if ((fd = open(ld->path, O_RDONLY | O_CLOEXEC)) < 0) {
        err = errno;
        goto out;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        err = EISDIR;
        goto out;
    }
    if (!(buf = malloc(cap))) {
        err = ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t r;
        if (len == cap) {
            if (cap >= MAX_FILE) {
                err = EFBIG;
                break;
            }
            if (!(nbuf = realloc(buf, cap * 2))) {
                err = ENOMEM;
                break;
            }
            buf = nbuf;
            cap *= 2;
        }
        if ((r = read(fd, buf + len, cap - len)) < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
        }
        if (r == 0) break;
        len += (size_t)r;
    }
out:
    if (fd >= 0) close(fd);
    if (err) {
        free(buf);
        return fail(ld, 0, "cannot open: %s", strerror_r(err, ebuf, sizeof ebuf));
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}

int config_load_caches(const char *path, struct config_caches *out, char **errmsg)
{
    struct ld ld = {.path = path ? path : "(null)"};
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (errmsg) *errmsg = NULL;
    if (!path) {
        fail(&ld, 0, "cannot open: %s", "no path given");
        goto done;
    }
    if (slurp(&ld, &buf, &len) != 0) goto done;
    if (!yaml_parser_initialize(&parser)) {
        oom(&ld);
        goto done;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_fail(&ld, &parser, buf, len);
        goto parsed;
    }
    ld.doc = &doc;
    /* A second document would be silently ignored: say so. An empty one (a
     * trailing "---") is harmless. Each load consumes input, so this ends. */
    for (;;) {
        const yaml_node_t *root;
        if (!yaml_parser_load(&parser, &extra)) {
            yaml_fail(&ld, &parser, buf, len);
            break;
        }
        root = yaml_document_get_root_node(&extra);
        if (root && !isnull(root))
            fail(&ld, (unsigned)extra.start_mark.line + 1,
                 "a second YAML document starts here; a config file holds one");
        yaml_document_delete(&extra);
        if (!root || ld.failed) break;
    }
    if (!ld.failed && read_top(&ld, out) == 0) {
        if ((out->path = strdup(path)))
            rc = 0;
        else
            oom(&ld);
    }
    yaml_document_delete(&doc);
parsed:
    yaml_parser_delete(&parser);
done:
    free(buf);
    if (rc != 0) {
        config_caches_fini(out);
        if (errmsg)
            *errmsg = ld.err;
        else
            free(ld.err);
    }
    return rc;
}
