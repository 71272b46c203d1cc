/*
 * test_normalize.c -- the normal form of request paths (RFC 3986 6.2.2).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

static char *norm(const char *in)
{
    size_t len = strlen(in), outlen = 0;
    char *out = malloc(len + 1);
    if (proxy_normalize_path(in, len, out, &outlen) != 0) {
        free(out);
        return NULL;
    }
    cr_assert_leq(outlen, len, "never longer than the input");
    out[outlen] = '\0';
    return out;
}

static void expect(const char *in, const char *want)
{
    char *got = norm(in);
    cr_assert_not_null(got, "'%s' was refused", in);
    cr_assert_str_eq(got, want, "'%s' -> '%s', want '%s'", in, got, want);
    free(got);
}

static void refuse(const char *in)
{
    char *got = norm(in);
    cr_assert_null(got, "'%s' must be refused, got '%s'", in, got ? got : "");
    free(got);
}

Test(normalize, plain_paths_are_unchanged)
{
    expect("/", "/");
    expect("/api/products", "/api/products");
    expect("/a/b/", "/a/b/");
    expect("/A/B", "/A/B");
}

Test(normalize, slashes_are_kept)
{
    expect("//", "//");
    expect("/a//b", "/a//b");
}

Test(normalize, unreserved_percent_encodings_are_decoded)
{
    expect("/%61dmin/", "/admin/");
    expect("/%41%42%7e%2D%5f", "/AB~-_");
}

Test(normalize, other_percent_encodings_get_upper_case_hex)
{
    expect("/a%2fb", "/a%2Fb");
    expect("/%3f%00%c3%a9", "/%3F%00%C3%A9");
}

Test(normalize, dot_segments_are_removed)
{
    expect("/a/./b", "/a/b");
    expect("/a/b/../c", "/a/c");
    expect("/a/..", "/");
    expect("/a/.", "/a/");
    expect("/..", "/");
    expect("/../../x", "/x");
    expect("/a/b/../../..", "/");
    expect("/./", "/");
    expect("/a/...", "/a/...");
    expect("/a/.b/..c", "/a/.b/..c");
}

Test(normalize, encoded_dots_cannot_smuggle_traversal)
{
    expect("/%2e%2e/admin", "/admin");
    expect("/x/%2E%2E/admin/", "/admin/");
    expect("/x/.%2e/admin", "/admin");
    expect("/%2e/admin", "/admin");
}

Test(normalize, bad_paths_are_refused)
{
    refuse("");
    refuse("a/b");
    refuse("*");
    refuse("/a%");
    refuse("/a%4");
    refuse("/a%zz");
    refuse("/a b");
    refuse("/a\tb");
    refuse("/a\x7f");
    refuse("/\xc3\xa9");
}

Test(normalize, does_not_read_past_len)
{
    const char in[] = "/a%41XYZ";
    char out[16];
    size_t n = 0;
    cr_assert_eq(proxy_normalize_path(in, 4, out, &n), -1, "'/a%%4' cut short is bad");
    cr_assert_eq(proxy_normalize_path(in, 5, out, &n), 0);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(out, "/aA", 3), 0);
}
