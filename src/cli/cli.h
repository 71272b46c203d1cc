/*
 * cli.h -- what the `strata` subcommands share (src/cli).
 *
 * main.c holds the one command table: each command's name, usage line,
 * summary and options (name, alias, argument, description). `strata --help`,
 * `strata CMD --help` and the argument parser (args.c) all read it, so a
 * command's help can never disagree with what it accepts.
 *
 * The admin commands (clear, warm, stats, get, set, del) talk to the admin
 * API of a running `strata serve` through client.c: one blocking HTTP/1.1
 * exchange per call on a fresh loopback connection, with bounded timeouts.
 *
 * Every command returns an exit code: CLI_OK, CLI_FAIL (the operation failed,
 * `get` missed, or stdout could not be written), CLI_USAGE (the command line
 * is wrong). A failure is reported as one line on stderr, "strata CMD: what
 * went wrong".
 */
#ifndef STRATA_CLI_H
#define STRATA_CLI_H

#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* ---- the command table (main.c) and its parser (args.c) ---- */

enum cli_opt_flags {
    CLI_OPT_VALUE = 1u << 0,  /* takes one value: --cache NAME */
    CLI_OPT_MANY = 1u << 1,   /* takes one or more values: --tag A B */
    CLI_OPT_REPEAT = 1u << 2, /* may be given more than once */
};

struct cli_opt {
    const char *name;  /* "--cache" */
    const char *alias; /* "-c", or NULL */
    const char *arg;   /* "NAME" as shown in help; NULL for a flag */
    unsigned flags;    /* enum cli_opt_flags */
    const char *help;  /* one line */
};

struct cli_args;

struct cli_cmd {
    const char *name;
    /* Exactly one of the two is set: `argv` commands parse their own
     * arguments (serve), `run` commands get them parsed from `opts`. */
    int (*argv_fn)(int argc, char **argv);
    int (*run)(const struct cli_args *a);
    const char *usage;      /* what follows "strata NAME" in the usage line */
    const char *summary;    /* one line, for `strata --help` too */
    const char *notes;      /* more for `strata NAME --help`, or NULL */
    const char *positional; /* names of the positional arguments, "KEY VALUE" */
    unsigned min_pos, max_pos;
    const struct cli_opt *opts; /* ends with a {NULL} row */
};

/* What cli_parse read: for each row of cmd->opts (same index) the values
 * given (a flag has n = the number of times it was given), and the
 * positional arguments. Every string points into argv. */
struct cli_args {
    const struct cli_cmd *cmd;
    struct cli_optval {
        const char **v;
        size_t n;
    } * val;
    const char **pos;
    size_t npos;
};

/* Parse argv[1..argc) against c->opts. Returns CLI_OK, or CLI_USAGE after
 * printing one line on stderr; out needs cli_args_fini either way. */
int cli_parse(const struct cli_cmd *c, int argc, char **argv, struct cli_args *out);
void cli_args_fini(struct cli_args *a);

/* Lookups by option name ("--json"); the name must be one of the command's
 * options (a typo aborts: it is a bug, not an input error). */
bool cli_flag(const struct cli_args *a, const char *name);
const char *cli_value(const struct cli_args *a, const char *name); /* NULL: absent */
const char *const *cli_values(const struct cli_args *a, const char *name, size_t *n);

/* Print "strata CMD: MESSAGE (see strata CMD --help)" on stderr; returns
 * CLI_USAGE. */
int cli_usage_error(const struct cli_args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- the admin client (client.c) ---- */

/* Timeouts (ms): connecting, then the whole exchange. A warm batch fetches
 * many URLs before it answers. */
#define CLI_CONNECT_TIMEOUT_MS 10000
#define CLI_READ_TIMEOUT_MS 10000
#define CLI_WARM_TIMEOUT_MS (10 * 60 * 1000)
/* Pattern invalidation on Redis scans the keyspace before it answers. */
#define CLI_CLEAR_TIMEOUT_MS 60000

/* Set from a signal handler (stats --watch): a call waiting on the network
 * gives up with "interrupted". */
extern volatile sig_atomic_t cli_interrupted;

struct cli_admin {
    const char *cmd;     /* command name, the prefix of error lines */
    char host[256];      /* to connect to (an IPv6 address without brackets) */
    char port[8];        /* service */
    char authority[300]; /* host:port as written, sent as Host */
    char *token;         /* malloc'd */
    char err[600];       /* the last error, one line, without the prefix */
};

struct cli_resp {
    int status;
    char *body; /* malloc'd, NUL-terminated (the body may hold NULs) */
    size_t len;
};

/* Find the admin API and its token from --admin URL, -c FILE, the defaults
 * (http://127.0.0.1:8081, ./strata-admin.token) and STRATA_ADMIN_TOKEN.
 * Returns CLI_OK, or CLI_FAIL / CLI_USAGE after printing one line. */
int cli_admin_init(struct cli_admin *ad, const struct cli_args *a);
void cli_admin_fini(struct cli_admin *ad);

/* One exchange: METHOD TARGET with `body` (NULL: none; a PUT or POST always
 * sends Content-Length), waiting at most `timeout_ms` for the answer. Returns
 * 0 with *r filled (whatever the status; cli_resp_fini frees it), or -1 with
 * ad->err set (nothing to free). */
int cli_admin_call(struct cli_admin *ad, const char *method, const char *target,
                   const char *ctype, const void *body, size_t blen, int timeout_ms,
                   struct cli_resp *r);
void cli_resp_fini(struct cli_resp *r);

/* Describe a non-2xx answer in ad->err: 401 names the token, a JSON error
 * body gives "error: detail". */
void cli_admin_explain(struct cli_admin *ad, const struct cli_resp *r);

/* Send `body` (a JSON value, reference taken; NULL: no body) and parse the
 * 2xx JSON answer. Returns a new reference, or NULL with ad->err set. */
json_t *cli_admin_json(struct cli_admin *ad, const char *method, const char *target,
                       json_t *body, int timeout_ms);

/* Print "strata CMD: ad->err" on stderr; returns CLI_FAIL. */
int cli_admin_fail(const struct cli_admin *ad);

/* Percent-encode every byte of s[0..n) that is not unreserved (RFC 3986).
 * Returns a malloc'd string, NULL when out of memory. */
char *cli_pct_encode(const char *s, size_t n);

/* Print a JSON value on stdout, indented, with a final newline. Returns 0,
 * or -1 when it could not be written whole. */
int cli_print_json(const json_t *j);

/* After a command's output: flush stdout and check it. When that fails, or
 * `failed` says a print already did (cli_print_json's -1), print "strata CMD:
 * cannot write to stdout: REASON" (cmd NULL: "strata: ...") and return
 * CLI_FAIL; else CLI_OK. A full disk or a closed pipe is then exit code 1,
 * never output silently lost. */
int cli_stdout_done(const char *cmd, bool failed);

/* ---- the commands ---- */
int cmd_serve(int argc, char **argv);    /* serve.c */
int cmd_clear(const struct cli_args *a); /* clear.c */
int cmd_warm(const struct cli_args *a);  /* warm.c */
int cmd_stats(const struct cli_args *a); /* stats.c */
int cmd_get(const struct cli_args *a);   /* kv.c */
int cmd_set(const struct cli_args *a);   /* kv.c */
int cmd_del(const struct cli_args *a);   /* kv.c */

#endif
