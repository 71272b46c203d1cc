/*
 * main.c -- the `strata` command and its one table of subcommands.
 *
 * Each row of COMMANDS gives a command's name, its function, the usage line,
 * a one-line summary, optional notes, its positional arguments and its
 * options (name, alias, argument, flags, description). `strata --help` lists
 * the summaries, `strata CMD --help` prints the usage line, the summary, the
 * options and the notes, and args.c parses the command line against the same
 * rows, so what the help says is what the command accepts. docs/strata.1 is
 * the long form of this table.
 *
 * `serve` parses its own arguments (serve.c); its row is for the help.
 * The admin commands (clear, warm, stats, get, set, del) reach a running
 * strata's admin API (client.c).
 *
 * Exit codes: 0 ok, 1 the operation failed (get: a miss; or stdout could not
 * be written: cli_stdout_done), 2 usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "strata.h"

static int cmd_version(const struct cli_args *a);
static int cmd_check_config(const struct cli_args *a);

#define OPT(name, alias, arg, flags, help)                                             \
    {                                                                                  \
        name, alias, arg, flags, help                                                  \
    }
#define HELP_OPT OPT("--help", "-h", NULL, 0, "print this help")
#define JSON_OPT OPT("--json", NULL, NULL, 0, "print the admin's answer as JSON")
#define ADMIN_OPTS                                                                     \
    OPT("--admin", NULL, "URL", CLI_OPT_VALUE,                                         \
        "the admin API, http://HOST:PORT (default 127.0.0.1:8081)"),                   \
        OPT("--config", "-c", "FILE", CLI_OPT_VALUE,                                   \
            "read admin.listen and the admin token from this configuration")
#define CACHE_OPT(dflt) OPT("--cache", NULL, "NAME", CLI_OPT_VALUE, "the cache: " dflt)

#define ADMIN_NOTE                                                                     \
    "The admin API: --admin URL, else admin.listen of -c FILE, else "                  \
    "127.0.0.1:8081.\nIts token: admin.token of -c FILE, else $STRATA_ADMIN_TOKEN, "   \
    "else the token file\n(admin.token_file of -c FILE, else ./strata-admin.token)."

/* X(name, argv_fn, run_fn, usage, summary, notes, positional, min_pos, max_pos,
 *   options...) */
#define COMMANDS(X)                                                                    \
    X("serve", cmd_serve, NULL, "[-c FILE] [--listen ADDR] [--upstream URL]",          \
      "run the caching reverse proxy",                                                 \
      "SIGTERM or SIGINT stops accepting, lets requests in flight finish (10 s at "    \
      "most) and exits 0.",                                                            \
      NULL, 0, 0,                                                                      \
      OPT("--config", "-c", "FILE", CLI_OPT_VALUE,                                     \
          "the YAML configuration (default: built-in defaults)"),                      \
      OPT("--listen", NULL, "ADDR", CLI_OPT_VALUE,                                     \
          "proxy listener, overrides server.listen (127.0.0.1:8080)"),                 \
      OPT("--upstream", NULL, "URL", CLI_OPT_VALUE,                                    \
          "origin, overrides server.upstream (http://host:port)"),                     \
      HELP_OPT)                                                                        \
    X("check-config", NULL, cmd_check_config, "-c FILE",                               \
      "validate a configuration file", NULL, NULL, 0, 0,                               \
      OPT("--config", "-c", "FILE", CLI_OPT_VALUE, "the YAML configuration to check"), \
      HELP_OPT)                                                                        \
    X("clear", NULL, cmd_clear,                                                        \
      "(--all | --pattern GLOB | --tag TAG... | --url URL... | --url-pattern GLOB) "   \
      "[--cache NAME]",                                                                \
      "remove cache entries by pattern, tag or URL",                                   \
      "Selectors other than --all may be combined. Prints \"removed N\", with\n"       \
      "\"(approximate)\" when tags or URLs were invalidated (counted "                 \
      "lazily).\n" ADMIN_NOTE,                                                         \
      NULL, 0, 0, OPT("--all", NULL, NULL, 0, "every entry"),                          \
      OPT("--pattern", NULL, "GLOB", CLI_OPT_VALUE | CLI_OPT_REPEAT,                   \
          "keys matching GLOB (* ? [a-z] \\ as in Redis MATCH)"),                      \
      OPT("--tag", NULL, "TAG...", CLI_OPT_MANY | CLI_OPT_REPEAT,                      \
          "entries carrying any of these tags"),                                       \
      OPT("--url", NULL, "URL...", CLI_OPT_MANY | CLI_OPT_REPEAT,                      \
          "HTTP objects of these paths or absolute http:// URLs"),                     \
      OPT("--url-pattern", NULL, "GLOB", CLI_OPT_VALUE | CLI_OPT_REPEAT,               \
          "HTTP objects whose path?query matches GLOB, on any host"),                  \
      CACHE_OPT("only this one (default: every cache)"), JSON_OPT, ADMIN_OPTS,         \
      HELP_OPT)                                                                        \
    X("warm", NULL, cmd_warm, "(--endpoints URL... | --file FILE) [--concurrency N]",  \
      "fetch URLs through the cache so that they are stored",                          \
      "URLs are paths (/api/x) or absolute http://host/path; spaces, control "         \
      "and non-ASCII\nbytes in them are percent-encoded. They are sent in batches "    \
      "of N * 4; a progress\nbar is drawn on stderr when it is a terminal. Exits 1 "   \
      "if a URL failed (status 0\nor 5xx).\n" ADMIN_NOTE,                              \
      NULL, 0, 0,                                                                      \
      OPT("--endpoints", NULL, "URL...", CLI_OPT_MANY | CLI_OPT_REPEAT,                \
          "the URLs to warm"),                                                         \
      OPT("--file", NULL, "FILE", CLI_OPT_VALUE,                                       \
          "read the URLs from FILE (- for stdin): one a line, # comments"),            \
      OPT("--concurrency", NULL, "N", CLI_OPT_VALUE,                                   \
          "fetches in flight at once (1 to 64, default 8)"),                           \
      OPT("--json", NULL, NULL, 0,                                                     \
          "print every result {url, status, cache_status, seconds} as one JSON "       \
          "array"),                                                                    \
      ADMIN_OPTS, HELP_OPT)                                                            \
    X("stats", NULL, cmd_stats, "[--json] [--watch [--interval DUR]]",                 \
      "show the caches' and routes' counters",                                         \
      "--watch cannot be combined with --json. SIGINT (Ctrl-C) ends --watch with "     \
      "exit code 0.\n" ADMIN_NOTE,                                                     \
      NULL, 0, 0, JSON_OPT,                                                            \
      OPT("--watch", NULL, NULL, 0, "redraw the tables in place until Ctrl-C"),        \
      OPT("--interval", NULL, "DUR", CLI_OPT_VALUE,                                    \
          "time between two --watch refreshes (default 2s)"),                          \
      ADMIN_OPTS, HELP_OPT)                                                            \
    X("get", NULL, cmd_get, "KEY [--cache NAME]", "write the value of KEY to stdout",  \
      "Exits 1 when KEY is not in the cache.\n" ADMIN_NOTE, "KEY", 1, 1,               \
      CACHE_OPT("default, unless this names another"), ADMIN_OPTS, HELP_OPT)           \
    X("set", NULL, cmd_set, "KEY VALUE [--ttl DUR] [--tags a,b] [--cache NAME]",       \
      "store VALUE under KEY (VALUE - reads stdin)",                                   \
      "Write -- before a KEY that starts with '-'.\n" ADMIN_NOTE, "KEY VALUE", 2, 2,   \
      OPT("--ttl", NULL, "DUR", CLI_OPT_VALUE,                                         \
          "time to live: 300ms 5s 10m 1h 30d or never (default: the cache's)"),        \
      OPT("--tags", NULL, "a,b", CLI_OPT_VALUE,                                        \
          "tags for the entry, comma-separated"),                                      \
      CACHE_OPT("default, unless this names another"), ADMIN_OPTS, HELP_OPT)           \
    X("del", NULL, cmd_del, "KEY [--cache NAME]", "delete KEY",                        \
      "Exits 1 when KEY was not in the cache.\n" ADMIN_NOTE, "KEY", 1, 1,              \
      CACHE_OPT("default, unless this names another"), ADMIN_OPTS, HELP_OPT)           \
    X("version", NULL, cmd_version, "", "print the version", NULL, NULL, 0, 0, HELP_OPT)

static const struct cli_cmd commands[] = {
#define X(n, af, rf, u, s, notes, p, lo, hi, ...)                                      \
    {n, af, rf, u, s, notes, p, lo, hi, (const struct cli_opt[]){__VA_ARGS__, {NULL}}},
    COMMANDS(X)
#undef X
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static void usage(FILE *out)
{
    fprintf(out, "usage: strata COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n`strata COMMAND --help` describes one command; `man strata` all of "
                 "them.\nExit codes: 0 ok, 1 the operation failed, 2 usage error.\n");
}

/* "  -c, --config FILE" or "      --admin URL" */
static int opt_label(char *b, size_t n, const struct cli_opt *o)
{
    return snprintf(b, n, "  %s%s%s%s%s", o->alias ? o->alias : "",
                    o->alias ? ", " : "    ", o->name, o->arg ? " " : "",
                    o->arg ? o->arg : "");
}

static void command_help(const struct cli_cmd *c)
{
    printf("usage: strata %s%s%s\n\n%s\n", c->name, *c->usage ? " " : "", c->usage,
           c->summary);
    int w = 0;
    char b[128];
    for (const struct cli_opt *o = c->opts; o->name; o++) {
        int n = opt_label(b, sizeof b, o);
        if (n > w) w = n;
    }
    printf("\noptions:\n");
    for (const struct cli_opt *o = c->opts; o->name; o++) {
        opt_label(b, sizeof b, o);
        printf("%-*s  %s\n", w, b, o->help);
    }
    if (c->notes) printf("\n%s\n", c->notes);
}

static const struct cli_cmd *find(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

static int want_help(int argc, char **argv)
{
    for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static int cmd_version(const struct cli_args *a)
{
    (void)a;
    printf("strata %s\n", STRATA_VERSION);
    return CLI_OK;
}

static int cmd_check_config(const struct cli_args *a)
{
    const char *path = cli_value(a, "--config");
    if (path == NULL) return cli_usage_error(a, "-c FILE is required");
    /* The whole file, as strata serve reads it; then the caches are opened
     * the way strata_open opens them (a backend this build lacks fails). */
    char *err = NULL;
    struct config cfg;
    if (config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "%s\n", err ? err : "cannot load configuration: out of memory");
        free(err);
        return CLI_FAIL;
    }
    config_fini(&cfg);
    strata *s = strata_open(path, &err);
    if (s == NULL) {
        fprintf(stderr, "%s\n", err ? err : "cannot open configuration");
        free(err);
        return CLI_FAIL;
    }
    strata_close(s);
    printf("%s: ok\n", path);
    return CLI_OK;
}

static int run(const struct cli_cmd *c, int argc, char **argv)
{
    if (c->argv_fn) return c->argv_fn(argc, argv); /* serve: stdout is its log */
    struct cli_args a;
    int rc = cli_parse(c, argc, argv, &a);
    if (rc == CLI_OK) rc = c->run(&a);
    cli_args_fini(&a);
    /* What a command printed and did not check itself (version,
     * check-config) must have been written too. */
    return rc == CLI_OK ? cli_stdout_done(c->name, false) : rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(stdout);
        return cli_stdout_done(NULL, false);
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(NULL) == CLI_OK ? cli_stdout_done(NULL, false) : CLI_FAIL;
    const struct cli_cmd *c = find(argv[1]);
    if (c == NULL) {
        fprintf(stderr, "strata: unknown command '%s' (try strata --help)\n", argv[1]);
        return CLI_USAGE;
    }
    if (want_help(argc - 1, argv + 1)) {
        command_help(c);
        return cli_stdout_done(c->name, false);
    }
    return run(c, argc - 1, argv + 1);
}
