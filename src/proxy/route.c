/*
 * route.c -- route matching, per-user identities (header, cookie, JWT claim)
 * and their keyed hash, cookies, and the hash of Vary values.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <xxhash.h>

#include "core/core.h"
#include "proxy/internal.h"

const struct config_route *route_match(const struct config_http *h, const char *path,
                                       size_t len)
{
    for (size_t i = 0; i < h->n_routes; i++) {
        const struct config_route *r = &h->routes[i];
        if (core_glob_match(r->path, strlen(r->path), path, len)) return r;
    }
    return NULL;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t'))
        (*s)++, (*n)--;
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

const char *cookie_get(const struct http_msg *m, const char *name, size_t *len)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < m->nh; i++) {
        if (!http_name_is(&m->h[i], "cookie")) continue;
        const char *v = m->h[i].value, *end = v + m->h[i].vlen;
        while (v < end) {
            const char *semi = memchr(v, ';', (size_t)(end - v));
            if (semi == NULL) semi = end;
            const char *s = v;
            size_t n = (size_t)(semi - v);
            trim(&s, &n);
            const char *eq = memchr(s, '=', n);
            if (eq && (size_t)(eq - s) == nl && memcmp(s, name, nl) == 0) {
                const char *val = eq + 1;
                size_t vl = n - nl - 1;
                trim(&val, &vl);
                if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') val++, vl -= 2;
                *len = vl;
                return val;
            }
            v = semi + 1;
        }
    }
    return NULL;
}

/* How many times the cookie `name` appears in the request's Cookie headers. */
static size_t cookie_count(const struct http_msg *m, const char *name)
{
    size_t nl = strlen(name), k = 0;
    for (size_t i = 0; i < m->nh; i++) {
        if (!http_name_is(&m->h[i], "cookie")) continue;
        const char *v = m->h[i].value, *end = v + m->h[i].vlen;
        while (v < end) {
            const char *semi = memchr(v, ';', (size_t)(end - v));
            if (semi == NULL) semi = end;
            const char *s = v;
            size_t n = (size_t)(semi - v);
            trim(&s, &n);
            if (n > nl && s[nl] == '=' && memcmp(s, name, nl) == 0) k++;
            v = semi + 1;
        }
    }
    return k;
}

/* The claim of a verified JWT: the signature must check with the route's key
 * and algorithm, and `exp`, when present, must be in the future. */
static const char *jwt_claim(const struct config_route *r, const char *tok, size_t n,
                             struct sbuf *tmp, size_t *len)
{
    char *t = strndup(tok, n);
    jwt_t *jwt = NULL;
    const char *out = NULL;
    if (t == NULL) return NULL;
    if (jwt_decode(&jwt, t, (const unsigned char *)r->jwt_key,
                   (int)strlen(r->jwt_key)) != 0 ||
        jwt == NULL)
        goto done;
    jwt_alg_t alg = jwt_get_alg(jwt);
    if (r->jwt_key_is_pem ? (alg != JWT_ALG_RS256 && alg != JWT_ALG_ES256)
                          : alg != JWT_ALG_HS256)
        goto done;
    errno = 0;
    long exp = jwt_get_grant_int(jwt, "exp");
    if (errno == 0 && exp <= (long)(proxy_wall_ms() / 1000)) goto done;
    const char *claim = jwt_get_grant(jwt, r->user_from_name);
    char num[32];
    if (claim == NULL) {
        errno = 0;
        long v = jwt_get_grant_int(jwt, r->user_from_name);
        if (errno != 0) goto done;
        snprintf(num, sizeof num, "%ld", v);
        claim = num;
    }
    if (*claim == 0) goto done;
    tmp->len = 0;
    if (sb_str(tmp, claim) != 0) goto done;
    *len = tmp->len;
    out = tmp->p;
done:
    if (jwt) jwt_free(jwt);
    free(t);
    return out;
}

const char *route_identity(const struct config_route *r, const struct http_msg *m,
                           struct sbuf *tmp, size_t *len)
{
    const struct http_header *h;
    size_t count = 0;
    switch (r->user_from) {
    case CONFIG_USER_HEADER:
        h = http_find(m, r->user_from_name, &count);
        if (h == NULL || count != 1 || h->vlen == 0) return NULL;
        *len = h->vlen;
        return h->value;
    case CONFIG_USER_COOKIE: {
        /* The cookie exactly once: with two (cookie tossing from a sibling
         * domain) strata cannot know which one the origin will believe. */
        if (cookie_count(m, r->user_from_name) != 1) return NULL;
        const char *v = cookie_get(m, r->user_from_name, len);
        return v && *len ? v : NULL;
    }
    case CONFIG_USER_JWT: {
        /* Authorization: Bearer <token>. */
        h = http_find(m, "authorization", &count);
        if (h == NULL || count != 1 || h->vlen < 8 ||
            strncasecmp(h->value, "bearer ", 7))
            return NULL;
        const char *tok = h->value + 7;
        size_t n = h->vlen - 7;
        trim(&tok, &n);
        return n ? jwt_claim(r, tok, n, tmp, len) : NULL;
    }
    default:
        return NULL;
    }
}

int key_add_user(struct sbuf *key, const char *secret, const char *id, size_t idlen)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)id,
             idlen, mac, &maclen) == NULL)
        return -1;
    char hex[3 + 32 + 1] = KEY_SEP "u:";
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[3 + 2 * i] = digits[mac[i] >> 4];
        hex[3 + 2 * i + 1] = digits[mac[i] & 15];
    }
    return sb_add(key, hex, 35);
}

/* Accept-Encoding: its members (codings with their parameters) lower-cased,
 * without spaces, sorted, so reordered or re-spaced headers give one
 * variant. */
static uint64_t hash_accept_encoding(const char *v, size_t n, uint64_t seed)
{
    char toks[16][32];
    size_t nt = 0;
    size_t i = 0;
    while (i < n && nt < 16) {
        while (i < n && (v[i] == ' ' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && v[e - 1] == ' ')
            e--;
        size_t k = 0;
        for (size_t j = s; j < e && k < 31; j++)
            if (v[j] != ' ')
                toks[nt][k++] = (char)((v[j] >= 'A' && v[j] <= 'Z') ? v[j] + 32 : v[j]);
        toks[nt][k] = 0;
        if (k) nt++;
    }
    qsort(toks, nt, sizeof toks[0], (int (*)(const void *, const void *))strcmp);
    uint64_t hsh = seed;
    for (size_t j = 0; j < nt; j++)
        hsh = XXH3_64bits_withSeed(toks[j], strlen(toks[j]) + 1, hsh);
    return hsh;
}

static uint64_t hash_one(const struct http_msg *m, const char *name, size_t nl,
                         bool cookie, uint64_t h)
{
    h = XXH3_64bits_withSeed(name, nl, h ^ 0x9e3779b97f4a7c15ull);
    if (cookie) {
        char nm[256];
        if (nl >= sizeof nm) return h;
        memcpy(nm, name, nl);
        nm[nl] = 0;
        size_t vl = 0;
        const char *v = cookie_get(m, nm, &vl);
        return v ? XXH3_64bits_withSeed(v, vl, h + 1) : h;
    }
    bool ae = nl == 15 && strncasecmp(name, "accept-encoding", 15) == 0;
    for (size_t i = 0; i < m->nh; i++) {
        const struct http_header *x = &m->h[i];
        if (x->nlen != nl || strncasecmp(x->name, name, nl) != 0) continue;
        if (ae)
            h = hash_accept_encoding(x->value, x->vlen, h);
        else
            h = XXH3_64bits_withSeed(x->value, x->vlen, h + 1);
    }
    return h;
}

uint64_t vary_hash_spec(const struct http_msg *m, const char *spec, size_t len)
{
    uint64_t h = 0;
    const char *end = spec + len;
    while (spec < end) {
        const char *nl = memchr(spec, '\n', (size_t)(end - spec));
        if (nl == NULL) nl = end;
        if (spec[0] == '=') /* a cookie the route varies on */
            h = hash_one(m, spec + 1, (size_t)(nl - spec) - 1, true, h);
        else
            h = hash_one(m, spec, (size_t)(nl - spec), false, h);
        spec = nl + 1;
    }
    return h;
}
