/*
 * glob.c -- the one glob grammar of strata (the same as Redis MATCH).
 *
 *   *        any run of bytes (also empty)     ?      exactly one byte
 *   [abc]    one of the set   [a-z] a range    [^a] [!a]  not in the set
 *   \x       the byte x, literally (also inside a set)
 *
 * Matching is byte-level over binary strings. It is iterative: on a mismatch
 * it resumes after the last `*`, so no pattern can make it backtrack
 * exponentially (O(len(pattern) * len(string)) at worst).
 * A pattern with an unterminated set or a trailing backslash is invalid.
 */
#include <string.h>

#include "core/core.h"

/* Parse the set at p (just after '['); return a pointer after ']' and whether
 * c is in the set. The set was validated by core_glob_valid(). */
static const char *set_match(const char *p, const char *end, unsigned char c,
                             bool *matched)
{
    bool neg = false, hit = false;
    if (p < end && (*p == '^' || *p == '!')) {
        neg = true;
        p++;
    }
    while (p < end && *p != ']') {
        unsigned char lo, hi;
        if (*p == '\\' && p + 1 < end) p++;
        lo = (unsigned char)*p++;
        hi = lo;
        if (p + 1 < end && *p == '-' && p[1] != ']') {
            p++;
            if (*p == '\\' && p + 1 < end) p++;
            hi = (unsigned char)*p++;
            if (lo > hi) {
                unsigned char t = lo;
                lo = hi;
                hi = t;
            }
        }
        if (c >= lo && c <= hi) hit = true;
    }
    if (p < end) p++; /* the ']' */
    *matched = hit != neg;
    return p;
}

bool core_glob_valid(const char *pat)
{
    if (pat == NULL) return false;
    for (const char *p = pat; *p; p++) {
        if (*p == '\\') {
            if (p[1] == '\0') return false;
            p++;
        } else if (*p == '[') {
            p++;
            if (*p == '^' || *p == '!') p++;
            while (*p && *p != ']') {
                if (*p == '\\') {
                    if (p[1] == '\0') return false;
                    p++;
                }
                p++;
            }
            if (*p != ']') return false;
        }
    }
    return true;
}

bool core_glob_match(const char *pat, size_t plen, const void *str, size_t slen)
{
    const char *p = pat, *pend = pat + plen;
    const unsigned char *s = str, *send = s + slen;
    const char *star_p = NULL;
    const unsigned char *star_s = NULL;

    while (s < send) {
        if (p < pend) {
            switch (*p) {
            case '*':
                while (p < pend && *p == '*')
                    p++;
                if (p == pend) return true;
                star_p = p;
                star_s = s;
                continue;
            case '?':
                p++;
                s++;
                continue;
            case '[': {
                bool m;
                const char *np = set_match(p + 1, pend, *s, &m);
                if (m) {
                    p = np;
                    s++;
                    continue;
                }
                break;
            }
            case '\\':
                if (p + 1 < pend && (unsigned char)p[1] == *s) {
                    p += 2;
                    s++;
                    continue;
                }
                break;
            default:
                if ((unsigned char)*p == *s) {
                    p++;
                    s++;
                    continue;
                }
                break;
            }
        }
        /* Mismatch: let the last star eat one more byte, or fail. */
        if (star_p == NULL) return false;
        p = star_p;
        s = ++star_s;
    }
    while (p < pend && *p == '*')
        p++;
    return p == pend;
}
