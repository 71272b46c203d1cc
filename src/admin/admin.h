/*
 * admin.h -- the admin API listener (src/admin): JSON over HTTP on
 * admin.listen, one worker thread of its own, bearer-token auth.
 */
#ifndef STRATA_ADMIN_H
#define STRATA_ADMIN_H

#include <stdbool.h>

#include "config/config.h"
#include "strata.h"

struct admin;

/* Start the admin listener for the caches of `s` and the proxy `px` (its
 * routes' statistics, explain). `test_clock`: expose POST /_strata/debug/clock.
 * With no admin.token, a token is generated and written (0600) to
 * admin.token_file. Returns NULL with *err set (malloc'd). */
struct proxy;
struct admin *admin_start(const struct config *cfg, strata *s, struct proxy *px,
                          bool test_clock, char **err);
void admin_stop(struct admin *a);

#endif
