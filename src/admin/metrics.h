/*
 * metrics.h -- the Prometheus exposition (GET /metrics): one table declares
 * every metric strata exports (name, type, labels, help); docs/operations.md
 * lists the same table (a unit test keeps the two equal).
 */
#ifndef STRATA_ADMIN_METRICS_H
#define STRATA_ADMIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "strata.h"

struct metric {
    const char *name, *type, *labels, *help;
};

/* The table, in exposition order. */
const struct metric *metrics_table(size_t *n);

struct proxy;
struct sbuf;
/* The text format 0.0.4 of every metric into `out`. `px` may be NULL (no
 * HTTP metrics then); uptime in seconds. */
void metrics_render(struct sbuf *out, strata *s, struct proxy *px, double uptime_s);

#endif
