/*
 * test_glob.c -- the one glob grammar (Redis MATCH, byte-level) and pattern
 * invalidation on a cache.
 *
 *   *  any run (also empty)   ?  one byte   [abc] [a-z] [^a] [!a]   \x literal
 *
 * The first tests call core_glob_match / core_glob_valid (src/core/glob.c)
 * directly; the last ones go through strata_invalidate_pattern() and check
 * that exactly the matching keys go and the count is right.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "strata.h"

/* ---- helpers ------------------------------------------------------------- */

static bool m(const char *pat, const char *s)
{
    return core_glob_match(pat, strlen(pat), s, strlen(s));
}

#define MATCH(p, s) cr_assert(m(p, s), "'%s' should match '%s'", p, s)
#define NOMATCH(p, s) cr_assert(!m(p, s), "'%s' should not match '%s'", p, s)

/* ---- the grammar ----------------------------------------------------------- */

Test(glob, literal)
{
    MATCH("abc", "abc");
    NOMATCH("abc", "abd");
    NOMATCH("abc", "ab");
    NOMATCH("abc", "abcd");
    NOMATCH("abc", "ABC");
    MATCH("", "");
    NOMATCH("", "a");
}

Test(glob, star)
{
    MATCH("*", "");
    MATCH("*", "anything at all");
    MATCH("user:*", "user:");
    MATCH("user:*", "user:42");
    NOMATCH("user:*", "user");
    NOMATCH("user:*", "xuser:1");
    MATCH("*:42", "user:42");
    NOMATCH("*:42", "user:421");
    MATCH("a*b*c", "abc");
    MATCH("a*b*c", "aXXbYYc");
    MATCH("a*b*c", "abbbcbc");
    NOMATCH("a*b*c", "aXXbYY");
    NOMATCH("a*b*c", "acb");
    MATCH("**", "x");
    MATCH("a**b", "ab");
    MATCH("*a", "bbba");
    NOMATCH("*a", "bbab");
}

Test(glob, question_mark)
{
    MATCH("?", "a");
    NOMATCH("?", "");
    NOMATCH("?", "ab");
    MATCH("a?c", "abc");
    MATCH("a?c", "a?c");
    NOMATCH("a?c", "ac");
    MATCH("???", "xyz");
    MATCH("*?", "a");
    NOMATCH("*??", "a");
    MATCH("?*?", "ab");
}

Test(glob, sets)
{
    MATCH("[abc]", "a");
    MATCH("[abc]", "c");
    NOMATCH("[abc]", "d");
    NOMATCH("[abc]", "");
    NOMATCH("[abc]", "ab");
    MATCH("x[abc]y", "xby");
    MATCH("[a-z]", "a");
    MATCH("[a-z]", "m");
    MATCH("[a-z]", "z");
    NOMATCH("[a-z]", "A");
    NOMATCH("[a-z]", "0");
    MATCH("[z-a]", "m"); /* a reversed range is the same range (as Redis) */
    MATCH("[0-9a-f]", "7");
    MATCH("[0-9a-f]", "e");
    NOMATCH("[0-9a-f]", "g");
    MATCH("id:[0-9][0-9]", "id:42");
    NOMATCH("id:[0-9][0-9]", "id:4x");
    MATCH("[a-]", "-"); /* '-' before ']' is literal */
    MATCH("[a-]", "a");
    NOMATCH("[a-]", "b");
    NOMATCH("[]", "a"); /* the empty set matches nothing */
}

Test(glob, negated_sets)
{
    MATCH("[^a]", "b");
    NOMATCH("[^a]", "a");
    NOMATCH("[^a]", "");
    MATCH("[!a]", "b");
    NOMATCH("[!a]", "a");
    MATCH("[^a-c]x", "dx");
    NOMATCH("[^a-c]x", "bx");
    MATCH("[!0-9]*", "key9");
    NOMATCH("[!0-9]*", "9key");
    MATCH("[a^]", "^"); /* '^' elsewhere is literal */
}

Test(glob, escapes)
{
    MATCH("\\*", "*");
    NOMATCH("\\*", "a");
    NOMATCH("\\*", "");
    MATCH("a\\*b", "a*b");
    NOMATCH("a\\*b", "axb");
    MATCH("\\?", "?");
    NOMATCH("\\?", "x");
    MATCH("\\[abc]", "[abc]");
    NOMATCH("\\[abc]", "a");
    MATCH("\\\\", "\\");
    MATCH("\\a", "a");
    MATCH("[\\]]", "]");
    MATCH("[\\-a]", "-");
    MATCH("[a\\-z]", "-");
    NOMATCH("[a\\-z]", "m"); /* an escaped '-' is not a range */
    MATCH("*\\*", "abc*");
    NOMATCH("*\\*", "abc");
}

Test(glob, validity)
{
    cr_assert(core_glob_valid(""));
    cr_assert(core_glob_valid("*"));
    cr_assert(core_glob_valid("a?[bc][^d][!e][f-g]\\*\\\\"));
    cr_assert(core_glob_valid("[\\]]"));
    cr_assert(core_glob_valid("]"));
    cr_assert(!core_glob_valid(NULL));
    cr_assert(!core_glob_valid("[abc"));
    cr_assert(!core_glob_valid("abc\\"));
    cr_assert(!core_glob_valid("["));
    cr_assert(!core_glob_valid("[^"));
    cr_assert(!core_glob_valid("[!"));
    cr_assert(!core_glob_valid("[a\\"));
    cr_assert(!core_glob_valid("[a\\]"));
    cr_assert(!core_glob_valid("ok*then[x-"));
}

Test(glob, binary_strings_with_nul_bytes)
{
    const char s1[] = {'a', 0, 'b'};
    cr_assert(core_glob_match("a?b", 3, s1, 3));
    cr_assert(core_glob_match("a*", 2, s1, 3));
    cr_assert(core_glob_match("*b", 2, s1, 3));
    cr_assert(!core_glob_match("ab", 2, s1, 3));
    /* A NUL in the pattern is a literal byte. */
    const char p1[] = {'a', 0, '*'};
    cr_assert(core_glob_match(p1, 3, s1, 3));
    cr_assert(!core_glob_match(p1, 3, "ab", 2));
    const char p2[] = {'[', 0, 'x', ']'};
    const char z[] = {0};
    cr_assert(core_glob_match(p2, 4, z, 1));
    cr_assert(core_glob_match(p2, 4, "x", 1));
    cr_assert(!core_glob_match(p2, 4, "y", 1));
    /* High bytes compare unsigned. */
    const char hi[] = {(char)0xff, (char)0x80};
    cr_assert(core_glob_match("??", 2, hi, 2));
    cr_assert(core_glob_match("\xff*", 2, hi, 2));
    const char range[] = {'[', (char)0x80, '-', (char)0xff, ']', '*'};
    cr_assert(core_glob_match(range, 6, hi, 2));
    cr_assert(!core_glob_match(range, 6, "a", 1));
    /* The pattern length is honoured: bytes after plen are not pattern. */
    cr_assert(core_glob_match("abXXX", 2, "ab", 2));
}

Test(glob, pathological_pattern_completes, .timeout = 10)
{
    /* Exponential backtracking would need ~n^5 steps here: hours. */
    size_t n = 100000;
    char *s = malloc(n);
    memset(s, 'a', n);
    const char *p = "a*a*a*a*a*b";
    cr_assert(!core_glob_match(p, strlen(p), s, n));
    s[n - 1] = 'b';
    cr_assert(core_glob_match(p, strlen(p), s, n));
    const char *q = "*a*a*a*a*a*a*a*a*a*a*c";
    s[n - 1] = 'a';
    cr_assert(!core_glob_match(q, strlen(q), s, n));
    const char *r = "?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*?*x";
    cr_assert(!core_glob_match(r, strlen(r), s, n));
    free(s);
}

/* ---- strata_invalidate_pattern --------------------------------------------- */

static bool present(strata_cache *c, const void *k, size_t klen)
{
    strata_value *v = NULL;
    int rc = strata_get(c, k, klen, &v);
    strata_value_release(v);
    cr_assert(rc == STRATA_OK || rc == STRATA_MISS);
    return rc == STRATA_OK;
}

Test(glob, invalidate_pattern_removes_exactly_the_matching_keys)
{
    strata *s = strata_open(NULL, NULL);
    cr_assert_not_null(s);
    strata_cache *c = strata_cache_get(s, "default"),
                 *other = strata_cache_get(s, "static");
    static const char *keys[] = {
        "user:1",   "user:2",  "user:10", "user:",    "users:1",
        "user:1:x", "xuser:1", "order:1", "order:22", "u*"};
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nk; i++)
        cr_assert_eq(strata_set(c, keys[i], strlen(keys[i]), "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_set(other, "user:1", 6, "v", 1, NULL), STRATA_OK);

    struct {
        const char *glob;
        long n;
        const char *gone[5];
    } steps[] = {
        {"user:?", 2, {"user:1", "user:2"}},
        {"nomatch*", 0, {0}},
        {"user:[0-9]*", 2, {"user:10", "user:1:x"}},
        {"u\\*", 1, {"u*"}},
        {"order:*", 2, {"order:1", "order:22"}},
        {"*", 3, {"user:", "users:1", "xuser:1"}},
    };
    bool alive[sizeof keys / sizeof keys[0]];
    for (size_t i = 0; i < nk; i++)
        alive[i] = true;
    for (size_t st = 0; st < sizeof steps / sizeof steps[0]; st++) {
        long n = strata_invalidate_pattern(c, steps[st].glob);
        cr_assert_eq(n, steps[st].n, "glob '%s' removed %ld", steps[st].glob, n);
        for (size_t g = 0; g < 5 && steps[st].gone[g]; g++)
            for (size_t i = 0; i < nk; i++)
                if (strcmp(keys[i], steps[st].gone[g]) == 0) alive[i] = false;
        for (size_t i = 0; i < nk; i++)
            cr_assert_eq(present(c, keys[i], strlen(keys[i])), alive[i],
                         "after '%s': key '%s'", steps[st].glob, keys[i]);
    }
    cr_assert(present(other, "user:1", 6), "another cache is untouched");
    strata_stats stt;
    strata_cache_stats(c, &stt);
    cr_assert_eq(stt.items, 0);
    cr_assert_eq(stt.invalidated, 10);
    strata_close(s);
}

Test(glob, invalidate_pattern_on_binary_keys)
{
    strata *s = strata_open(NULL, NULL);
    strata_cache *c = strata_cache_get(s, "default");
    const char k1[] = {'b', 0, '1'}, k2[] = {'b', 0, '2'}, k3[] = {'b', '1'};
    cr_assert_eq(strata_set(c, k1, 3, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, k2, 3, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_set(c, k3, 2, "v", 1, NULL), STRATA_OK);
    cr_assert_eq(strata_invalidate_pattern(c, "b?1"), 1);
    cr_assert(!present(c, k1, 3));
    cr_assert(present(c, k2, 3));
    cr_assert(present(c, k3, 2));
    cr_assert_eq(strata_invalidate_pattern(c, "b*"), 2);
    cr_assert(!present(c, k2, 3));
    cr_assert(!present(c, k3, 2));
    strata_close(s);
}

Test(glob, invalidate_pattern_counts_what_it_removed)
{
    strata *s = strata_open(NULL, NULL);
    strata_cache *c = strata_cache_get(s, "default");
    for (int i = 0; i < 300; i++) {
        char k[32];
        snprintf(k, sizeof k, "page:%d", i);
        cr_assert_eq(strata_set(c, k, strlen(k), k, strlen(k), NULL), STRATA_OK);
    }
    cr_assert_eq(strata_invalidate_pattern(c, "page:1*"), 111); /* 1, 10-19, 100-199 */
    cr_assert_eq(strata_invalidate_pattern(c, "page:?"), 9);    /* 0, 2..9 */
    cr_assert_eq(strata_invalidate_pattern(c, "page:*"), 180);
    strata_close(s);
}
