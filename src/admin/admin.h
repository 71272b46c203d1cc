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
 * With no admin.token, a token is generated (admin_publish_token writes it). Returns
 * NULL with *err set (malloc'd). */
struct proxy;
struct admin *admin_start(const struct config *cfg, strata *s, struct proxy *px,
                          bool test_clock, char **err);
/* With a generated token: write it to admin.token_file. Call once every
 * listener is bound. 0, or -1 with *err set. */
int admin_publish_token(struct admin *a, char **err);
void admin_stop(struct admin *a);

#endif
