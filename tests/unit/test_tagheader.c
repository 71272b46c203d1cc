/*
 * test_tagheader.c -- tags read from response headers.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proxy/proxy.h"

struct got {
    int n;
    char tags[8][300];
};

static int collect(void *ud, const char *t, size_t len)
{
    struct got *g = ud;
    if (g->n >= 8) return 1;
    memcpy(g->tags[g->n], t, len);
    g->tags[g->n][len] = '\0';
    g->n++;
    return 0;
}

static struct got parse(enum tag_syntax syn, const char *s, int want_rc)
{
    struct got g = {0};
    int rc = proxy_tags_parse(syn, s, strlen(s), collect, &g);
    cr_assert_eq(rc, want_rc, "'%s': rc %d, want %d", s, rc, want_rc);
    return g;
}

Test(tagheader, syntax_by_header_name)
{
    cr_assert_eq(proxy_tag_syntax("Surrogate-Key"), TAGS_SPACE);
    cr_assert_eq(proxy_tag_syntax("surrogate-key"), TAGS_SPACE);
    cr_assert_eq(proxy_tag_syntax("xkey"), TAGS_SPACE);
    cr_assert_eq(proxy_tag_syntax("Cache-Tag"), TAGS_COMMA);
    cr_assert_eq(proxy_tag_syntax("cache-groups"), TAGS_SF_STRINGS);
}

Test(tagheader, space_separated)
{
    struct got g = parse(TAGS_SPACE, "  product:1   products\tinventory ", 3);
    cr_assert_str_eq(g.tags[0], "product:1");
    cr_assert_str_eq(g.tags[1], "products");
    cr_assert_str_eq(g.tags[2], "inventory");
}

Test(tagheader, comma_separated)
{
    struct got g = parse(TAGS_COMMA, "a, b ,c,,d", 4);
    cr_assert_str_eq(g.tags[0], "a");
    cr_assert_str_eq(g.tags[3], "d");
    parse(TAGS_COMMA, "a b, c", -1);
}

Test(tagheader, cache_groups_structured_strings)
{
    struct got g = parse(TAGS_SF_STRINGS, "\"scripts\", \"styles\";p=1, tok, \"x\"", 3);
    cr_assert_str_eq(g.tags[0], "scripts");
    cr_assert_str_eq(g.tags[1], "styles");
    cr_assert_str_eq(g.tags[2], "x");
    parse(TAGS_SF_STRINGS, "\"a\";q=\"v,w\", \"b\"", 2);
    parse(TAGS_SF_STRINGS, "\"a\",", -1);
    parse(TAGS_SF_STRINGS, "\"a", -1);
    parse(TAGS_SF_STRINGS, "\"a\" \"b\"", -1);
    parse(TAGS_SF_STRINGS, "\"a\\\"b\"", -1);
}

Test(tagheader, tag_grammar_is_enforced)
{
    char t256[300], t257[300];
    memset(t256, 'a', 256);
    t256[256] = '\0';
    memset(t257, 'a', 257);
    t257[257] = '\0';
    parse(TAGS_SPACE, t256, 1);
    parse(TAGS_SPACE, t257, -1);
    parse(TAGS_SPACE, "ok bad\"quote", -1);
    parse(TAGS_SPACE, "ok a,b", -1);
    parse(TAGS_SPACE, "\x01", -1);
    parse(TAGS_SF_STRINGS, "\"has space\"", -1);
    parse(TAGS_SF_STRINGS, "\"\"", -1);
}

Test(tagheader, empty_values_give_no_tags)
{
    parse(TAGS_SPACE, "", 0);
    parse(TAGS_COMMA, " , ", 0);
    parse(TAGS_SF_STRINGS, "", 0);
}

Test(tagheader, emit_failure_stops)
{
    struct got g = {.n = 8};
    cr_assert_eq(proxy_tags_parse(TAGS_SPACE, "a b", 3, collect, &g), -1);
}
