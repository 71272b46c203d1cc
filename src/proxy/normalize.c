/*
 * normalize.c -- the normal form of a request path (RFC 3986 section 6.2.2).
 *
 * The cache key and the route match are computed from the same normal form,
 * so "/%61dmin/" and "/admin/" are one URL to strata, and "/a/../admin/" too:
 *
 *   1. percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are
 *      decoded; every other percent-encoding is kept, with upper-case hex;
 *   2. dot segments are removed (section 5.2.4), after decoding, so an
 *      encoded dot cannot smuggle "..";
 *   3. nothing else changes: "//" stays, the case of the path stays.
 *
 * Linear time, no allocation: the result is never longer than the input.
 */
#include <string.h>

#include "proxy/proxy.h"

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* Is [p, end) at a segment of exactly `dots` dots ("." or "..")? */
static bool dot_segment(const char *p, const char *end, size_t dots)
{
    for (size_t i = 0; i < dots; i++)
        if (p + i >= end || p[i] != '.') return false;
    return p + dots == end || p[dots] == '/';
}

int proxy_normalize_path(const char *in, size_t len, char *out, size_t *outlen)
{
    if (len == 0 || in[0] != '/') return -1;
    /* 1. Decode into `out` (never longer than the input). */
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c <= 0x20 || c >= 0x7f) return -1;
        if (c != '%') {
            out[n++] = (char)c;
            continue;
        }
        if (i + 2 >= len) return -1;
        int hi = hexval((unsigned char)in[i + 1]),
            lo = hexval((unsigned char)in[i + 2]);
        if (hi < 0 || lo < 0) return -1;
        unsigned char d = (unsigned char)(hi << 4 | lo);
        if (unreserved(d)) {
            out[n++] = (char)d;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            out[n++] = '%';
            out[n++] = hex[hi];
            out[n++] = hex[lo];
        }
        i += 2;
    }
    /* 2. Remove dot segments in place: `r` reads, `w` writes; w <= r. The
     * input always starts with "/", so only rules B, C and E apply. */
    const char *end = out + n;
    char *r = out, *w = out;
    while (r < end) {
        /* r is at a "/". */
        if (dot_segment(r + 1, end, 1)) {
            /* "/./" -> "/", "/." at the end -> "/" */
            r += 2;
            if (r >= end) *w++ = '/';
            continue;
        }
        if (dot_segment(r + 1, end, 2)) {
            /* "/../" or "/.." at the end: drop the last output segment. */
            r += 3;
            while (w > out && *--w != '/')
                ;
            if (r >= end) *w++ = '/';
            continue;
        }
        /* Move "/segment" to the output. */
        *w++ = *r++;
        while (r < end && *r != '/')
            *w++ = *r++;
    }
    if (w == out) *w++ = '/';
    *outlen = (size_t)(w - out);
    return 0;
}
