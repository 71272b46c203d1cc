/*
 * test_cachecontrol.c -- the Cache-Control parser (RFC 9111 section 5.2).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proxy/proxy.h"

static cc_directives parse(const char *s)
{
    cc_directives cc;
    cc_init(&cc);
    cc_parse(&cc, s, strlen(s));
    return cc;
}

Test(cachecontrol, empty_means_nothing)
{
    cc_directives cc = parse("");
    cr_assert_eq(cc.max_age, -1);
    cr_assert_eq(cc.s_maxage, -1);
    cr_assert_not(cc.no_store || cc.no_cache || cc.private_ || cc.public_ ||
                  cc.invalid);
}

Test(cachecontrol, response_directives)
{
    cc_directives cc = parse("public, max-age=60, s-maxage=120, must-revalidate, "
                             "proxy-revalidate, no-transform, immutable, "
                             "stale-while-revalidate=30, stale-if-error=600, "
                             "must-understand");
    cr_assert(cc.public_);
    cr_assert_eq(cc.max_age, 60);
    cr_assert_eq(cc.s_maxage, 120);
    cr_assert(cc.must_revalidate && cc.proxy_revalidate && cc.no_transform);
    cr_assert(cc.immutable && cc.must_understand);
    cr_assert_eq(cc.stale_while_revalidate, 30);
    cr_assert_eq(cc.stale_if_error, 600);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, names_are_case_insensitive_and_whitespace_is_optional)
{
    cc_directives cc = parse("  NO-STORE ,Max-Age = 5 ,\tPrivate");
    cr_assert(cc.no_store);
    cr_assert_eq(cc.max_age, 5);
    cr_assert(cc.private_);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, empty_list_elements_are_skipped)
{
    cc_directives cc = parse(",,, no-cache ,, ,max-age=0,");
    cr_assert(cc.no_cache);
    cr_assert_eq(cc.max_age, 0);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, quoted_arguments_are_accepted)
{
    cc_directives cc = parse("max-age=\"42\", s-maxage=\"7\"");
    cr_assert_eq(cc.max_age, 42);
    cr_assert_eq(cc.s_maxage, 7);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, qualified_no_cache_and_private_with_commas_inside_quotes)
{
    cc_directives cc =
        parse("no-cache=\"Set-Cookie, X-Foo\", private=\"A,B\", max-age=9");
    cr_assert(cc.no_cache && cc.no_cache_fields);
    cr_assert(cc.private_ && cc.private_fields);
    cr_assert_eq(cc.max_age, 9, "the comma inside the quotes must not split the list");
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, escapes_in_quoted_strings)
{
    cc_directives cc = parse("private=\"a\\\"b, c\", max-age=3");
    cr_assert(cc.private_fields);
    cr_assert_eq(cc.max_age, 3);
}

Test(cachecontrol, request_directives)
{
    cc_directives cc = parse("max-stale, min-fresh=10, only-if-cached");
    cr_assert_eq(cc.max_stale, CC_DELTA_MAX,
                 "max-stale without a value: any staleness");
    cr_assert_eq(cc.min_fresh, 10);
    cr_assert(cc.only_if_cached);
    cc = parse("max-stale=15");
    cr_assert_eq(cc.max_stale, 15);
}

Test(cachecontrol, deltas_saturate_at_2_pow_31)
{
    cc_directives cc = parse("max-age=99999999999999999999999999999");
    cr_assert_eq(cc.max_age, CC_DELTA_MAX);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, bad_deltas_are_invalid)
{
    const char *bad[] = {"max-age=abc",  "max-age=-1",   "max-age=1.5",
                         "max-age=",     "max-age",      "s-maxage=0x10",
                         "max-age=\"12", "max-age=\"\"", "stale-if-error=x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cc_directives cc = parse(bad[i]);
        cr_assert(cc.invalid, "'%s' must be invalid", bad[i]);
        cr_assert_eq(cc.max_age, -1, "'%s' must give no max-age", bad[i]);
    }
}

Test(cachecontrol, conflicting_repeats_are_invalid_identical_ones_are_not)
{
    cc_directives cc = parse("max-age=60, max-age=60");
    cr_assert_not(cc.invalid);
    cr_assert_eq(cc.max_age, 60);
    cc = parse("max-age=60, max-age=10");
    cr_assert(cc.invalid);
    cr_assert_eq(cc.max_age, 60, "the first value is kept");
}

Test(cachecontrol, several_header_lines_accumulate)
{
    cc_directives cc;
    cc_init(&cc);
    cc_parse(&cc, "public", 6);
    cc_parse(&cc, "max-age=5", 9);
    cr_assert(cc.public_);
    cr_assert_eq(cc.max_age, 5);
}

Test(cachecontrol, unknown_directives_are_ignored)
{
    cc_directives cc = parse("foo, bar=baz, x-ext=\"q\", max-age=8");
    cr_assert_eq(cc.max_age, 8);
    cr_assert_not(cc.invalid);
}

Test(cachecontrol, garbage_does_not_hide_later_directives)
{
    cc_directives cc = parse("max-age=5 junk, no-store");
    cr_assert(cc.invalid);
    cr_assert(cc.no_store, "the element after the comma still counts");
}

Test(cachecontrol, never_reads_past_len)
{
    /* Only the first 9 bytes are the header: "max-age=1". */
    const char s[] = "max-age=1234";
    cc_directives cc;
    cc_init(&cc);
    cc_parse(&cc, s, 9);
    cr_assert_eq(cc.max_age, 1);
    /* An unterminated quote at the very end. */
    cc_init(&cc);
    cc_parse(&cc, "private=\"", 9);
    cr_assert(cc.invalid);
}

Test(cachecontrol, long_quoted_arguments)
{
    char buf[200];
    snprintf(buf, sizeof buf, "max-age=\"%0100d\"", 7);
    cc_directives cc = parse(buf);
    cr_assert_not(cc.invalid);
    cr_assert_eq(cc.max_age, CC_DELTA_MAX, "a 100-digit quoted delta saturates");
    snprintf(buf, sizeof buf, "max-age=\"%0100dx\"", 7);
    cc = parse(buf);
    cr_assert(cc.invalid, "a long quoted non-delta is refused");
    cr_assert_eq(cc.max_age, -1);
}
