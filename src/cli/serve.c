/*
 * serve.c -- `strata serve [-c FILE] [--listen ADDR] [--upstream URL]`.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "config/config.h"
#include "proxy/proxy.h"

static int serve_usage(FILE *out, int rc)
{
    fprintf(
        out,
        "usage: strata serve [-c FILE] [--listen ADDR] [--upstream URL]\n\n"
        "Run the caching reverse proxy in front of the origin.\n"
        "  -c, --config FILE  the YAML configuration (default: built-in defaults)\n"
        "  --listen ADDR      proxy listener, overrides server.listen "
        "(127.0.0.1:8080)\n"
        "  --upstream URL     origin, overrides server.upstream (http://host:port)\n"
        "SIGTERM or SIGINT stops accepting, lets requests in flight finish (10 s at "
        "most) and exits 0.\n");
    return rc;
}

static int replace(char **field, const char *v)
{
    char *s = strdup(v);
    if (s == NULL) return -1;
    free(*field);
    *field = s;
    return 0;
}

int cmd_serve(int argc, char **argv)
{
    const char *path = NULL, *listen = NULL, *upstream = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return serve_usage(stdout, 0);
        if (!strcmp(a, "-c") || !strcmp(a, "--config"))
            slot = &path;
        else if (!strcmp(a, "--listen"))
            slot = &listen;
        else if (!strcmp(a, "--upstream"))
            slot = &upstream;
        else {
            fprintf(stderr, "strata serve: unknown argument '%s'\n", a);
            return serve_usage(stderr, 2);
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "strata serve: %s needs a value\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    struct config cfg;
    char *err = NULL;
    if (config_load(path, &cfg, &err) != 0) {
        fprintf(stderr, "strata serve: %s\n", err ? err : "out of memory");
        free(err);
        config_fini(&cfg);
        return 1;
    }
    if ((listen && replace(&cfg.server.listen, listen) != 0) ||
        (upstream && replace(&cfg.server.upstream, upstream) != 0)) {
        fprintf(stderr, "strata serve: out of memory\n");
        config_fini(&cfg);
        return 1;
    }
    int rc = proxy_serve(&cfg, &err);
    if (rc != 0) fprintf(stderr, "strata serve: %s\n", err ? err : "cannot start");
    free(err);
    config_fini(&cfg);
    return rc == 0 ? 0 : 1;
}
