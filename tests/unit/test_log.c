/*
 * test_log.c -- the process log (src/core/log.c): levels filter, values are
 * logfmt-escaped so a key or a URL cannot forge a field or a line.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/log.h"

static const char *val(const char *s, size_t n)
{
    static char buf[256];
    slog_val(buf, sizeof buf, s, n);
    return buf;
}

Test(log, plain_values_stay_bare)
{
    cr_assert_str_eq(val("h:example.com/a?b", 17), "h:example.com/a?b");
}

Test(log, values_that_need_it_are_quoted_and_escaped)
{
    cr_assert_str_eq(val("", 0), "\"\"");
    cr_assert_str_eq(val("a b", 3), "\"a b\"");
    cr_assert_str_eq(val("k=v", 3), "\"k=v\"");
    cr_assert_str_eq(val("say \"hi\"", 8), "\"say \\\"hi\\\"\"");
    cr_assert_str_eq(val("a\\b", 3), "\"a\\\\b\"");
    /* a newline cannot start a forged line; the key separator is visible */
    cr_assert_str_eq(val("x\nlevel=error", 13), "\"x\\x0alevel=error\"");
    cr_assert_str_eq(val("h:a/b\x1fu:1", 9), "\"h:a/b\\x1fu:1\"");
    cr_assert_str_eq(val("\xff", 1), "\"\\xff\"");
}

Test(log, long_values_are_cut_inside_the_buffer)
{
    char big[1000];
    memset(big, 'a', sizeof big);
    char out[16];
    slog_val(out, sizeof out, big, sizeof big);
    cr_assert_lt(strlen(out), sizeof out);
    char q[1000];
    memset(q, ' ', sizeof q);
    slog_val(out, sizeof out, q, sizeof q);
    cr_assert_lt(strlen(out), sizeof out);
    cr_assert_eq(out[0], '"');
}

Test(log, levels_filter)
{
    slog_set_level("warn");
    cr_assert(!slog_on(SLOG_INFO));
    cr_assert(slog_on(SLOG_WARN));
    cr_assert(slog_on(SLOG_ERROR));
    slog_set_level("debug");
    cr_assert(slog_on(SLOG_DEBUG));
    slog_set_level(NULL);
    cr_assert(!slog_on(SLOG_DEBUG));
    cr_assert(slog_on(SLOG_INFO));
}
