/*
 * tagheader.c -- tags from response headers (DESIGN "Tags").
 *
 *   Surrogate-Key: a b c          xkey: a b c        (space-separated)
 *   Cache-Tag: a, b, c                               (comma-separated)
 *   Cache-Groups: "a", "b";p=1                       (RFC 9875: sf-list of strings)
 *
 * Every tag is checked against the one tag grammar shared with the C API
 * (1-256 bytes of printable ASCII without space, comma, quote, backslash);
 * one bad tag makes the whole header bad, so an object is never stored with
 * half of its tags (it could then escape an invalidation).
 */
#include <strings.h>

#include "proxy/proxy.h"

#define TAG_MAX 256

static bool tag_char(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != ',' && c != '"' && c != '\\';
}

enum tag_syntax proxy_tag_syntax(const char *name)
{
    if (!strcasecmp(name, "Surrogate-Key") || !strcasecmp(name, "xkey"))
        return TAGS_SPACE;
    if (!strcasecmp(name, "Cache-Groups")) return TAGS_SF_STRINGS;
    return TAGS_COMMA;
}

static int emit_checked(const char *t, size_t n, tag_emit_fn emit, void *ud)
{
    if (n == 0 || n > TAG_MAX) return -1;
    for (size_t i = 0; i < n; i++)
        if (!tag_char((unsigned char)t[i])) return -1;
    return emit(ud, t, n) ? -1 : 0;
}

/* Space- or comma-separated lists. For commas, whitespace around a tag is
 * optional; inside a tag it is an error. */
static int parse_list(const char *s, size_t len, char sep, tag_emit_fn emit, void *ud)
{
    int count = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == sep))
            i++;
        if (i >= len) break;
        size_t t0 = i;
        while (i < len && s[i] != sep && s[i] != ' ' && s[i] != '\t')
            i++;
        size_t t1 = i;
        if (sep == ',') {
            while (i < len && (s[i] == ' ' || s[i] == '\t'))
                i++;
            if (i < len && s[i] != ',') return -1; /* "a b, c": a space in a tag */
        }
        if (emit_checked(s + t0, t1 - t0, emit, ud) != 0) return -1;
        count++;
    }
    return count;
}

/* RFC 8941 list of strings, parameters skipped. Bad syntax: -1. */
static int parse_sf(const char *s, size_t len, tag_emit_fn emit, void *ud)
{
    int count = 0;
    size_t i = 0;
    while (i < len && s[i] == ' ')
        i++;
    while (i < len) {
        bool is_string = s[i] == '"';
        size_t t0 = i + 1, t1 = t0;
        if (is_string) {
            i++;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\') return -1; /* an escape can only make a bad tag */
                i++;
            }
            if (i >= len) return -1;
            t1 = i++;
        } else {
            /* another bare item (token, number...): skip it */
            while (i < len && s[i] != ';' && s[i] != ',' && s[i] != ' ')
                i++;
        }
        /* parameters: ;key[=value] -- skipped, quoted values included */
        while (i < len && s[i] == ';') {
            i++;
            while (i < len && s[i] != ';' && s[i] != ',' && s[i] != ' ') {
                if (s[i] == '"') {
                    i++;
                    while (i < len && s[i] != '"')
                        i += s[i] == '\\' ? 2 : 1;
                    if (i >= len) return -1;
                }
                i++;
            }
        }
        if (is_string) {
            if (emit_checked(s + t0, t1 - t0, emit, ud) != 0) return -1;
            count++;
        }
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= len) break;
        if (s[i] != ',') return -1;
        i++;
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        if (i >= len) return -1; /* a trailing comma is an error in RFC 8941 */
    }
    return count;
}

int proxy_tags_parse(enum tag_syntax syn, const char *s, size_t len, tag_emit_fn emit,
                     void *ud)
{
    switch (syn) {
    case TAGS_SPACE:
        return parse_list(s, len, ' ', emit, ud);
    case TAGS_COMMA:
        return parse_list(s, len, ',', emit, ud);
    case TAGS_SF_STRINGS:
        return parse_sf(s, len, emit, ud);
    }
    return -1;
}
