/*
 * cachecontrol.c -- parsing Cache-Control (RFC 9111 section 5.2).
 *
 *   Cache-Control   = #cache-directive
 *   cache-directive = token [ "=" ( token / quoted-string ) ]
 *
 * Directive names are case-insensitive; lists may have empty elements and
 * optional whitespace around commas. Arguments are accepted as tokens or
 * quoted strings (a recipient SHOULD accept both). Delta-seconds are digits
 * only and saturate at 2^31. A known directive whose argument is not valid,
 * or that is repeated with a different argument, marks the directives
 * `invalid`: RFC 9111 section 4.2.1 lets a cache treat such a response as
 * stale, which is the safe reading. The parser is linear, allocates nothing
 * and never reads outside [s, s + len).
 */
#include <string.h>

#include "proxy/proxy.h"

void cc_init(cc_directives *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->max_age = cc->s_maxage = cc->stale_while_revalidate = cc->stale_if_error = -1;
    cc->max_stale = cc->min_fresh = -1;
}

/* tchar, RFC 9110 section 5.6.2 */
static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool name_is(const char *n, size_t nlen, const char *want)
{
    size_t wl = strlen(want);
    if (nlen != wl) return false;
    for (size_t i = 0; i < nlen; i++) {
        unsigned char a = (unsigned char)n[i];
        if (a >= 'A' && a <= 'Z') a = (unsigned char)(a - 'A' + 'a');
        if (a != (unsigned char)want[i]) return false;
    }
    return true;
}

/* Parse delta-seconds from an argument; -1 if it is not one. */
static int64_t delta(const char *v, size_t vlen)
{
    if (vlen == 0) return -1;
    int64_t d = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (v[i] < '0' || v[i] > '9') return -1;
        if (d < CC_DELTA_MAX) d = d * 10 + (v[i] - '0');
    }
    return d > CC_DELTA_MAX ? CC_DELTA_MAX : d;
}

/* Record a delta directive: the first value counts; a different repeat or a
 * bad argument makes the whole set invalid. */
static void set_delta(cc_directives *cc, int64_t *slot, const char *v, size_t vlen,
                      bool has_value)
{
    int64_t d = has_value ? delta(v, vlen) : -1;
    if (d < 0) {
        cc->invalid = true;
        return;
    }
    if (*slot >= 0 && *slot != d) cc->invalid = true;
    if (*slot < 0) *slot = d;
}

static void apply(cc_directives *cc, const char *n, size_t nlen, const char *v,
                  size_t vlen, bool has_value)
{
    if (name_is(n, nlen, "max-age"))
        set_delta(cc, &cc->max_age, v, vlen, has_value);
    else if (name_is(n, nlen, "s-maxage"))
        set_delta(cc, &cc->s_maxage, v, vlen, has_value);
    else if (name_is(n, nlen, "stale-while-revalidate"))
        set_delta(cc, &cc->stale_while_revalidate, v, vlen, has_value);
    else if (name_is(n, nlen, "stale-if-error"))
        set_delta(cc, &cc->stale_if_error, v, vlen, has_value);
    else if (name_is(n, nlen, "min-fresh"))
        set_delta(cc, &cc->min_fresh, v, vlen, has_value);
    else if (name_is(n, nlen, "max-stale")) {
        /* Without an argument: any staleness is acceptable. */
        if (!has_value) {
            if (cc->max_stale < 0) cc->max_stale = CC_DELTA_MAX;
        } else {
            set_delta(cc, &cc->max_stale, v, vlen, true);
        }
    } else if (name_is(n, nlen, "no-store"))
        cc->no_store = true;
    else if (name_is(n, nlen, "no-cache")) {
        /* no-cache="field": a shared cache may not reuse those fields
         * without revalidation; strata treats it as plain no-cache. */
        cc->no_cache = true;
        if (has_value) cc->no_cache_fields = true;
    } else if (name_is(n, nlen, "private")) {
        cc->private_ = true;
        if (has_value) cc->private_fields = true;
    } else if (name_is(n, nlen, "public"))
        cc->public_ = true;
    else if (name_is(n, nlen, "must-revalidate"))
        cc->must_revalidate = true;
    else if (name_is(n, nlen, "proxy-revalidate"))
        cc->proxy_revalidate = true;
    else if (name_is(n, nlen, "must-understand"))
        cc->must_understand = true;
    else if (name_is(n, nlen, "no-transform"))
        cc->no_transform = true;
    else if (name_is(n, nlen, "immutable"))
        cc->immutable = true;
    else if (name_is(n, nlen, "only-if-cached"))
        cc->only_if_cached = true;
    /* Unknown directives are ignored (RFC 9111 section 5.2.3). */
}

void cc_parse(cc_directives *cc, const char *s, size_t len)
{
    size_t i = 0;
    char qbuf[32]; /* an unescaped quoted argument, as long as a delta can be */
    while (i < len) {
        while (i < len && (is_ows((unsigned char)s[i]) || s[i] == ','))
            i++;
        if (i >= len) break;
        size_t n0 = i;
        while (i < len && is_tchar((unsigned char)s[i]))
            i++;
        size_t nlen = i - n0;
        while (i < len && is_ows((unsigned char)s[i]))
            i++;
        const char *v = NULL;
        size_t vlen = 0;
        bool has_value = false, bad = nlen == 0;
        if (!bad && i < len && s[i] == '=') {
            i++;
            while (i < len && is_ows((unsigned char)s[i]))
                i++;
            has_value = true;
            if (i < len && s[i] == '"') {
                /* quoted-string: copy what fits, honouring \-escapes */
                i++;
                size_t q = 0;
                bool closed = false, digits = true;
                while (i < len) {
                    char ch = s[i++];
                    if (ch == '"') {
                        closed = true;
                        break;
                    }
                    if (ch == '\\' && i < len) ch = s[i++];
                    if (q < sizeof qbuf) qbuf[q] = ch;
                    digits = digits && ch >= '0' && ch <= '9';
                    q++;
                }
                bad = !closed;
                v = qbuf;
                vlen = q;
                if (q > sizeof qbuf) {
                    /* Longer than any delta's digits: a huge delta saturates,
                     * anything else stays refused (a non-digit). */
                    memcpy(qbuf, digits ? "2147483648" : "x", digits ? 10 : 1);
                    vlen = digits ? 10 : 1;
                }
            } else {
                v = s + i;
                while (i < len && is_tchar((unsigned char)s[i]))
                    i++;
                vlen = (size_t)(s + i - v);
            }
            while (i < len && is_ows((unsigned char)s[i]))
                i++;
        }
        if (i < len && s[i] != ',') {
            /* Garbage before the next comma: skip it, this element is bad. */
            bad = true;
            while (i < len && s[i] != ',')
                i++;
        }
        if (!bad)
            apply(cc, s + n0, nlen, v, vlen, has_value);
        else if (nlen)
            cc->invalid = true;
    }
}
