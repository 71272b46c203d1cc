/*
 * log.h -- strata's process log: logfmt lines on stderr
 * (`ts=... level=... msg="..." key=value ...`), below a level set once at
 * start (server.log_level). The access log is the proxy's own (serve.c).
 */
#ifndef STRATA_CORE_LOG_H
#define STRATA_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum slog_level { SLOG_DEBUG, SLOG_INFO, SLOG_WARN, SLOG_ERROR };

/* "debug" "info" "warn" "error" (NULL or other: info). */
void slog_set_level(const char *name);
bool slog_on(int level);
/* One line: `fmt` gives what follows "ts=... level=... ". */
void slog(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Write `s` (n bytes) into buf (cap bytes, NUL-terminated) as a logfmt
 * value: quoted and escaped when it needs to be; control bytes as \xHH. */
void slog_val(char *buf, size_t cap, const char *s, size_t n);

#endif
