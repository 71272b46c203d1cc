/*
 * document.c -- a configuration file as a libyaml document, and the errors
 * that point into it.
 *
 *     file bytes --libyaml--> document tree --config.c walks it--> structs
 *
 * libyaml's document API builds the tree. An alias is a reference to the node
 * it names, never a copy, so an "alias bomb" costs nothing to build; what a
 * walk copies out of it is charged to a budget (struct ld), so neither aliases
 * nor ${ENV} can make a small file take gigabytes.
 *
 * Every error is one string "PATH:LINE: what is wrong"; the first one wins,
 * since later ones are usually its consequences. No global state: a load only
 * reads its arguments, the file and the environment (getenv).
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A configuration file is a few kilobytes; this only stops a wrong path (a
 * device, a log file) from being read into memory whole. */
#define MAX_FILE (16u << 20)

int config_fail(struct ld *ld, unsigned line, const char *fmt, ...)
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

int config_oom(struct ld *ld)
{
    return config_fail(ld, 0, "out of memory");
}

int config_charge(struct ld *ld, size_t n, unsigned line)
{
    if (n > ld->budget)
        return config_fail(ld, line,
                           "the configuration expands to more than %u MB of values "
                           "(through aliases or ${ENV}); write it out plainly",
                           CONFIG_BUDGET >> 20);
    ld->budget -= n;
    return 0;
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

bool config_isnull(const yaml_node_t *n)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};

    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    for (size_t i = 0; i < NELEM(nulls); i++)
        if (strcmp(nulls[i], text(n)) == 0) return true;
    return false;
}

const char *config_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_SCALAR_NODE:
        return config_isnull(n) ? "no value" : "a string";
    default:
        return "nothing";
    }
}

const char *config_scalar(struct ld *ld, const yaml_node_t *n, const char *where)
{
    /* C strings would silently cut the value at the NUL. */
    if (strlen(text(n)) != n->data.scalar.length) {
        config_fail(ld, config_line(n), "%s: contains a NUL byte", where);
        return NULL;
    }
    return text(n);
}

const char *config_keytext(struct ld *ld, const yaml_node_t *k, const char *where)
{
    if (k->type != YAML_SCALAR_NODE) {
        config_fail(ld, config_line(k), "%s: a key must be a name, not %s", where,
                    config_kind(k));
        return NULL;
    }
    return config_scalar(ld, k, where);
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

/* Sorting keeps this O(n log n) for a mapping of any size. */
int config_dups(struct ld *ld, const yaml_node_t *map, const char *what)
{
    const struct kref *dup = NULL, *orig = NULL;
    size_t n = config_npairs(map), m = 0, g = 0;
    struct kref *v;

    if (n < 2) return 0;
    if (!(v = malloc(n * sizeof *v))) return config_oom(ld);
    for (size_t i = 0; i < n; i++) {
        const yaml_node_t *k = config_node(ld, map->data.mapping.pairs.start[i].key);
        if (k && k->type == YAML_SCALAR_NODE)
            v[m++] = (struct kref){text(k), k->data.scalar.length, i, config_line(k)};
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
        config_fail(ld, dup->line, "duplicate %s '%.*s' (first at line %u)", what,
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
 * Every ${NAME} is replaced by the value of the environment variable NAME,
 * and $${ by a literal ${. An unset variable, a bad name or an unterminated
 * ${ is an error.
 */
char *config_expand(struct ld *ld, const char *s, unsigned line, const char *where)
{
    char *out = NULL, *name = NULL;
    size_t outlen = 0;
    FILE *f;

    if (!(f = open_memstream(&out, &outlen))) {
        config_oom(ld);
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
            config_fail(ld, line, "%s: unterminated ${ (write ${NAME})", where);
            goto fail;
        }
        if (!varname(p + 2, (size_t)(end - p - 2))) {
            config_fail(ld, line,
                        "%s: bad environment variable name '${%.*s}' (letters, "
                        "digits and _, not starting with a digit)",
                        where, (int)(end - p - 2 > QUOTE ? QUOTE : end - p - 2), p + 2);
            goto fail;
        }
        if (!(name = strndup(p + 2, (size_t)(end - p - 2)))) {
            config_oom(ld);
            goto fail;
        }
        if (!(val = getenv(name))) {
            config_fail(ld, line, "environment variable %s is not set", name);
            goto fail;
        }
        fputs(val, f);
        free(name);
        name = NULL;
        p = end + 1;
        /* Stop a value that grows without bound before it is all written. */
        if (ftell(f) > (long)ld->budget) break;
    }
    if (ferror(f) | fclose(f)) {
        free(out);
        config_oom(ld);
        return NULL;
    }
    if (config_charge(ld, outlen + 1, line) != 0) {
        free(out);
        return NULL;
    }
    return out;
fail:
    fclose(f);
    free(out);
    free(name);
    return NULL;
}

static void yaml_fail(struct ld *ld, const yaml_parser_t *p, const char *buf,
                      size_t len)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    unsigned line = 1;

    switch (p->error) {
    case YAML_MEMORY_ERROR:
        config_oom(ld);
        return;
    case YAML_READER_ERROR:
        /* The reader reports a byte offset, not a mark. */
        for (size_t i = 0; i < len && i < p->problem_offset; i++)
            line += buf[i] == '\n';
        if (p->problem_value >= 0)
            config_fail(ld, line, "invalid YAML input: %s (byte 0x%02x)", problem,
                        (unsigned)p->problem_value);
        else
            config_fail(ld, line, "invalid YAML input: %s", problem);
        return;
    default:
        line = (unsigned)p->problem_mark.line + 1;
        if (p->context)
            config_fail(ld, line, "YAML syntax error: %s (%s that started at line %u)",
                        problem, p->context, (unsigned)p->context_mark.line + 1);
        else
            config_fail(ld, line, "YAML syntax error: %s", problem);
    }
}

int config_doc_parse(struct ld *ld, const char *buf, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    yaml_document_t extra;

    if (!yaml_parser_initialize(&parser)) return config_oom(ld);
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, doc)) {
        yaml_fail(ld, &parser, buf, len);
        yaml_parser_delete(&parser);
        return -1;
    }
    /* A second document would be silently ignored: say so. An empty one (a
     * trailing "---") is harmless. Each load consumes input, so this ends. */
    for (;;) {
        const yaml_node_t *root;
        if (!yaml_parser_load(&parser, &extra)) {
            yaml_fail(ld, &parser, buf, len);
            break;
        }
        root = yaml_document_get_root_node(&extra);
        if (root && !config_isnull(root))
            config_fail(ld, (unsigned)extra.start_mark.line + 1,
                        "a second YAML document starts here; a config file holds one");
        yaml_document_delete(&extra);
        if (!root || ld->failed) break;
    }
    yaml_parser_delete(&parser);
    if (ld->failed) {
        yaml_document_delete(doc);
        return -1;
    }
    return 0;
}

int config_slurp(struct ld *ld, char **bufp, size_t *lenp)
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
        return config_fail(ld, 0, "cannot open: %s",
                           strerror_r(err, ebuf, sizeof ebuf));
    }
    *bufp = buf;
    *lenp = len;
    return 0;
}
