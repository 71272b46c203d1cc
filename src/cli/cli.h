/*
 * cli.h -- subcommands that live in their own files (src/cli).
 */
#ifndef STRATA_CLI_H
#define STRATA_CLI_H

int cmd_serve(int argc, char **argv);

#endif
