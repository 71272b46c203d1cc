/*
 * log.c -- the process log (log.h). One fprintf per line: stdio's lock keeps
 * lines from different threads whole.
 */
#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static _Atomic int level = SLOG_INFO;

void slog_set_level(const char *name)
{
    int l = SLOG_INFO;
    if (name && strcmp(name, "debug") == 0) l = SLOG_DEBUG;
    if (name && strcmp(name, "warn") == 0) l = SLOG_WARN;
    if (name && strcmp(name, "error") == 0) l = SLOG_ERROR;
    atomic_store(&level, l);
}

bool slog_on(int l)
{
    return l >= atomic_load_explicit(&level, memory_order_relaxed);
}

void slog(int l, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (!slog_on(l)) return;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char t[32];
    strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "ts=%s.%03ldZ level=%s %s\n", t, ts.tv_nsec / 1000000, names[l],
            buf);
}

void slog_val(char *buf, size_t cap, const char *s, size_t n)
{
    bool q = n == 0;
    for (size_t i = 0; i < n && !q; i++)
        if (s[i] == ' ' || s[i] == '"' || s[i] == '=' || s[i] == '\\' ||
            (unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            q = true;
    size_t o = 0;
    if (cap == 0) return;
    if (q && o + 1 < cap) buf[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        size_t k;
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            k = 2;
        } else if (q && (c < 0x20 || c >= 0x7f)) {
            snprintf(tmp, sizeof tmp, "\\x%02x", c);
            k = 4;
        } else {
            tmp[0] = (char)c;
            k = 1;
        }
        if (o + k + 2 > cap) break;
        memcpy(buf + o, tmp, k);
        o += k;
    }
    if (q && o + 1 < cap) buf[o++] = '"';
    buf[o] = 0;
}
