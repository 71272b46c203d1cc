/*
 * args.c -- the command-line parser that reads argv against a command's
 * option table (main.c).
 *
 * Grammar: options and positional arguments in any order; `--name VALUE` or
 * `--name=VALUE`; an option marked CLI_OPT_MANY takes every following
 * argument up to the next one that starts with '-' (`--tag a b c`); a value
 * that starts with '-' is written `--name=-VALUE`; `--` ends
 * the options (a key may then start with '-'); a lone `-` is a positional
 * argument (set KEY - reads stdin). An option not marked CLI_OPT_REPEAT may
 * be given once. Values are never copied: they point into argv.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static size_t count_opts(const struct cli_cmd *c)
{
    size_t n = 0;
    while (c->opts && c->opts[n].name)
        n++;
    return n;
}

int cli_usage_error(const struct cli_args *a, const char *fmt, ...)
{
    fprintf(stderr, "strata %s: ", a->cmd->name);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see strata %s --help)\n", a->cmd->name);
    return CLI_USAGE;
}

/* The row for `arg` (without any "=VALUE"), or -1. */
static int find_opt(const struct cli_cmd *c, const char *arg, size_t len)
{
    for (int i = 0; c->opts && c->opts[i].name; i++) {
        const struct cli_opt *o = &c->opts[i];
        if (strlen(o->name) == len && memcmp(o->name, arg, len) == 0) return i;
        if (o->alias && strlen(o->alias) == len && memcmp(o->alias, arg, len) == 0)
            return i;
    }
    return -1;
}

static int add(const char ***v, size_t *n, const char *s)
{
    const char **t = realloc(*v, (*n + 1) * sizeof **v);
    if (t == NULL) return -1;
    t[(*n)++] = s;
    *v = t;
    return 0;
}

static bool is_option(const char *s)
{
    return s[0] == '-' && s[1] != '\0';
}

/* Read the option at argv[*i] and its values; advances *i past them. */
static int parse_opt(struct cli_args *out, int argc, char **argv, int *i)
{
    const char *arg = argv[*i];
    const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    int k = find_opt(out->cmd, arg, len);
    if (k < 0) return cli_usage_error(out, "unknown option '%.*s'", (int)len, arg);
    const struct cli_opt *o = &out->cmd->opts[k];
    struct cli_optval *ov = &out->val[k];
    if (ov->n > 0 && !(o->flags & CLI_OPT_REPEAT))
        return cli_usage_error(out, "%s given twice", o->name);
    if (!(o->flags & (CLI_OPT_VALUE | CLI_OPT_MANY))) {
        if (eq) return cli_usage_error(out, "%s takes no value", o->name);
        ov->n++;
        return CLI_OK;
    }
    size_t before = ov->n;
    if (eq) {
        if (add(&ov->v, &ov->n, eq + 1) != 0) goto oom;
    } else if (*i + 1 < argc && !is_option(argv[*i + 1])) {
        if (add(&ov->v, &ov->n, argv[++*i]) != 0) goto oom;
    }
    if (ov->n == before) return cli_usage_error(out, "%s needs a value", o->name);
    if (o->flags & CLI_OPT_MANY) {
        while (*i + 1 < argc && !is_option(argv[*i + 1]))
            if (add(&ov->v, &ov->n, argv[++*i]) != 0) goto oom;
    }
    return CLI_OK;
oom:
    fprintf(stderr, "strata %s: out of memory\n", out->cmd->name);
    return CLI_FAIL;
}

static int check_positional(struct cli_args *out)
{
    const struct cli_cmd *c = out->cmd;
    if (out->npos > c->max_pos)
        return cli_usage_error(out, "unexpected argument '%s'", out->pos[c->max_pos]);
    if (out->npos < c->min_pos) {
        /* Name the first missing one: the npos-th word of c->positional. */
        const char *p = c->positional ? c->positional : "ARGUMENT";
        for (size_t k = 0; k < out->npos && strchr(p, ' '); k++)
            p = strchr(p, ' ') + 1;
        size_t n = strcspn(p, " ");
        return cli_usage_error(out, "missing %.*s", (int)n, p);
    }
    return CLI_OK;
}

int cli_parse(const struct cli_cmd *c, int argc, char **argv, struct cli_args *out)
{
    memset(out, 0, sizeof *out);
    out->cmd = c;
    out->val = calloc(count_opts(c) + 1, sizeof *out->val);
    if (out->val == NULL) {
        fprintf(stderr, "strata %s: out of memory\n", c->name);
        return CLI_FAIL;
    }
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        if (!only_pos && strcmp(argv[i], "--") == 0) {
            only_pos = true;
            continue;
        }
        if (!only_pos && is_option(argv[i])) {
            int rc = parse_opt(out, argc, argv, &i);
            if (rc != CLI_OK) return rc;
            continue;
        }
        if (add(&out->pos, &out->npos, argv[i]) != 0) {
            fprintf(stderr, "strata %s: out of memory\n", c->name);
            return CLI_FAIL;
        }
    }
    return check_positional(out);
}

void cli_args_fini(struct cli_args *a)
{
    if (a->val) {
        size_t n = count_opts(a->cmd);
        for (size_t i = 0; i < n; i++)
            free(a->val[i].v);
    }
    free(a->val);
    free(a->pos);
    memset(a, 0, sizeof *a);
}

static const struct cli_optval *lookup(const struct cli_args *a, const char *name)
{
    int k = find_opt(a->cmd, name, strlen(name));
    if (k < 0) {
        fprintf(stderr, "strata %s: internal error: no option %s\n", a->cmd->name,
                name);
        abort();
    }
    return &a->val[k];
}

bool cli_flag(const struct cli_args *a, const char *name)
{
    return lookup(a, name)->n > 0;
}

const char *cli_value(const struct cli_args *a, const char *name)
{
    const struct cli_optval *v = lookup(a, name);
    return v->n ? v->v[v->n - 1] : NULL;
}

const char *const *cli_values(const struct cli_args *a, const char *name, size_t *n)
{
    const struct cli_optval *v = lookup(a, name);
    *n = v->n;
    return v->v;
}
