/*
 * main.c -- the `strata` command. Subcommands come from one table; each has a
 * one-line summary that `strata --help` prints. This version has `serve`
 * (src/cli/serve.c), `check-config` and `version`; `clear`, `warm`, `stats`
 * and `get/set/del` arrive with the rest of the admin API.
 *
 * Exit codes: 0 ok, 1 the operation failed, 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "cli/cli.h"
#include "strata.h"

typedef int (*cmd_fn)(int argc, char **argv);

static int cmd_version(int argc, char **argv);
static int cmd_check_config(int argc, char **argv);

#define COMMANDS(X)                                                                    \
    X("serve", cmd_serve, "[-c FILE] [--listen ADDR] [--upstream URL]",                \
      "run the caching reverse proxy")                                                 \
    X("check-config", cmd_check_config, "-c FILE",                                     \
      "validate a configuration file")                                                 \
    X("version", cmd_version, "", "print the version")

static const struct command {
    const char *name;
    cmd_fn fn;
    const char *args;
    const char *help;
} commands[] = {
#define X(n, f, a, h) {n, f, a, h},
    COMMANDS(X)
#undef X
};

static void usage(FILE *out)
{
    fprintf(out, "usage: strata COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(out, "  %-13s %-10s %s\n", commands[i].name, commands[i].args,
                commands[i].help);
    fprintf(out, "\n`strata COMMAND --help` describes one command.\n");
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int want_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    printf("strata %s\n", STRATA_VERSION);
    return 0;
}

static int cmd_check_config(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "strata check-config: unexpected argument '%s'\n", argv[i]);
            return 2;
        }
    }
    if (path == NULL) {
        fprintf(stderr, "strata check-config: -c FILE is required\n");
        return 2;
    }
    /* The whole file, as strata serve reads it; then the caches are opened
     * the way strata_open opens them (a backend this build lacks fails). */
    char *err = NULL;
    struct config cfg;
    if (config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "cannot load configuration: out of memory");
        free(err);
        return 1;
    }
    config_fini(&cfg);
    strata *s = strata_open(path, &err);
    if (s == NULL) {
        fprintf(stderr, "%s\n", err ? err : "cannot open configuration");
        free(err);
        return 1;
    }
    strata_close(s);
    printf("%s: ok\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) return cmd_version(argc - 1, argv + 1);
    const struct command *c = find(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "strata: unknown command '%s' (try strata --help)\n", argv[1]);
        return 2;
    }
    if (want_help(argc - 1, argv + 1)) {
        printf("usage: strata %s %s\n\n%s\n", c->name, c->args, c->help);
        return 0;
    }
    return c->fn(argc - 1, argv + 1);
}
