/*
 * range.c -- the Range header (RFC 9110 section 14.2), for 206 answers from
 * a stored full representation.
 *
 *   Range = "bytes" "=" OWS range-spec OWS     (one range-spec: see below)
 *   range-spec = first-pos "-" [ last-pos ]  /  "-" suffix-length
 *
 * One range is served; a list of several is ignored (the whole
 * representation is a valid answer to any Range request), as are other
 * units and syntax errors. A range that starts at or past the end, or a zero
 * suffix, is unsatisfiable (416). Numbers saturate instead of overflowing.
 */
#include <string.h>

#include "proxy/proxy.h"

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Digits at s[*i..]: false if none. Saturates at UINT64_MAX. */
static bool number(const char *s, size_t len, size_t *i, uint64_t *v)
{
    size_t start = *i;
    uint64_t x = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        unsigned d = (unsigned)(s[*i] - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
        (*i)++;
    }
    *v = x;
    return *i > start;
}

enum range_result proxy_parse_range(const char *s, size_t len, uint64_t size,
                                    uint64_t *first, uint64_t *last)
{
    size_t i = 0;
    while (i < len && is_ows(s[i]))
        i++;
    /* The unit is case-insensitive. */
    static const char unit[] = "bytes";
    for (size_t k = 0; k < 5; k++, i++) {
        if (i >= len || (s[i] | 0x20) != unit[k]) return RANGE_IGNORE;
    }
    while (i < len && is_ows(s[i]))
        i++;
    if (i >= len || s[i] != '=') return RANGE_IGNORE;
    i++;
    while (i < len && is_ows(s[i]))
        i++;
    uint64_t a = 0, b = 0;
    bool has_a = number(s, len, &i, &a);
    if (i >= len || s[i] != '-') return RANGE_IGNORE;
    i++;
    bool has_b = number(s, len, &i, &b);
    while (i < len && is_ows(s[i]))
        i++;
    if (i != len) return RANGE_IGNORE; /* several ranges, or garbage */
    if (!has_a && !has_b) return RANGE_IGNORE;
    if (!has_a) {
        /* suffix: the last b bytes */
        if (b == 0 || size == 0) return RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return RANGE_OK;
    }
    if (has_b && b < a) return RANGE_IGNORE; /* invalid: ignore the header */
    if (a >= size) return RANGE_UNSATISFIABLE;
    *first = a;
    *last = has_b && b < size - 1 ? b : size - 1;
    return RANGE_OK;
}
