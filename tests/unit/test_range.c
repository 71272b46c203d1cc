/*
 * test_range.c -- Range headers against a stored representation.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proxy/proxy.h"

static enum range_result rr(const char *h, uint64_t size, uint64_t *f, uint64_t *l)
{
    *f = *l = 12345;
    return proxy_parse_range(h, strlen(h), size, f, l);
}

static void ok(const char *h, uint64_t size, uint64_t want_f, uint64_t want_l)
{
    uint64_t f, l;
    cr_assert_eq(rr(h, size, &f, &l), RANGE_OK, "'%s' of %lu", h, (unsigned long)size);
    cr_assert_eq(f, want_f, "'%s': first %lu", h, (unsigned long)f);
    cr_assert_eq(l, want_l, "'%s': last %lu", h, (unsigned long)l);
}

static void is(const char *h, uint64_t size, enum range_result want)
{
    uint64_t f, l;
    cr_assert_eq(rr(h, size, &f, &l), want, "'%s' of %lu", h, (unsigned long)size);
}

Test(range, closed_open_and_suffix)
{
    ok("bytes=0-99", 1000, 0, 99);
    ok("bytes=100-", 1000, 100, 999);
    ok("bytes=-100", 1000, 900, 999);
    ok("bytes=0-0", 1, 0, 0);
}

Test(range, clamped_to_the_representation)
{
    ok("bytes=990-2000", 1000, 990, 999);
    ok("bytes=-5000", 1000, 0, 999);
    ok("bytes=0-18446744073709551615", 10, 0, 9);
    ok("bytes=0-99999999999999999999999", 10, 0, 9);
}

Test(range, whitespace_and_unit_case)
{
    ok(" bytes = 1-2 ", 10, 1, 2);
    ok("BYTES=1-2", 10, 1, 2);
}

Test(range, unsatisfiable)
{
    is("bytes=1000-", 1000, RANGE_UNSATISFIABLE);
    is("bytes=1000-2000", 1000, RANGE_UNSATISFIABLE);
    is("bytes=-0", 1000, RANGE_UNSATISFIABLE);
    is("bytes=0-", 0, RANGE_UNSATISFIABLE);
    is("bytes=99999999999999999999999-", 10, RANGE_UNSATISFIABLE);
}

Test(range, ignored_means_whole_representation)
{
    is("", 10, RANGE_IGNORE);
    is("items=0-1", 10, RANGE_IGNORE);
    is("bytes", 10, RANGE_IGNORE);
    is("bytes=", 10, RANGE_IGNORE);
    is("bytes=-", 10, RANGE_IGNORE);
    is("bytes=5-1", 10, RANGE_IGNORE);
    is("bytes=0-1,3-4", 10, RANGE_IGNORE);
    is("bytes=0-1 x", 10, RANGE_IGNORE);
    is("bytes=a-b", 10, RANGE_IGNORE);
    is("bytesx=0-1", 10, RANGE_IGNORE);
}

Test(range, does_not_read_past_len)
{
    uint64_t f, l;
    cr_assert_eq(proxy_parse_range("bytes=0-12345", 9, 100, &f, &l), RANGE_OK);
    cr_assert_eq(l, 1, "only 'bytes=0-1' was given");
}
