/*
 * values.c -- the grammars of single configuration values: durations, sizes,
 * counts, booleans, listen addresses, the origin URL, CIDRs, header and cookie
 * names, bearer tokens, tags, identity sources.
 *
 * Every function here reads one NUL-terminated string and nothing else: no
 * YAML, no environment, no allocation. Each says what was wrong in a static
 * message, and writes its output only on success, so a caller can parse into
 * the field it will keep.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <arpa/inet.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Read the decimal digits at *sp into *v. Returns 0, -1 when there is no
 * digit, -2 when the number is larger than `max`. */
static int number(const char **sp, uint64_t *v, uint64_t max)
{
    const char *p = *sp;
    uint64_t n = 0;

    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (n > (max - d) / 10) return -2;
        n = n * 10 + d;
    }
    *sp = p;
    *v = n;
    return 0;
}

int config_parse_duration(const char *s, int64_t *ms, const char **why)
{
    static const struct {
        const char *unit;
        int64_t ms;
    } units[] = {
        {"ms", 1},          {"s", 1000},           {"m", 60 * 1000},
        {"h", 3600 * 1000}, {"d", 86400 * 1000LL}, {"w", 7 * 86400 * 1000LL},
    };
    const char *dummy, *p = s;
    uint64_t v;

    if (!why) why = &dummy;
    if (!s || !*s) return *why = "empty value", -1;
    if (strcmp(s, "never") == 0) {
        *ms = -1;
        return 0;
    }
    switch (number(&p, &v, INT64_MAX)) {
    case -1:
        *why = "expected a number and a unit (300ms, 5s, 10m, 1h, 30d, 2w) or never";
        return -1;
    case -2:
        *why = "out of range";
        return -1;
    }
    if (!*p) return *why = "a bare number needs a unit: ms, s, m, h, d or w", -1;
    if (*p == '.' || *p == ',')
        return *why = "fractions are not supported: use a smaller unit (1500ms)", -1;
    for (size_t i = 0; i < NELEM(units); i++) {
        if (strcmp(p, units[i].unit) != 0) continue;
        if (v > (uint64_t)(INT64_MAX / units[i].ms)) return *why = "out of range", -1;
        *ms = (int64_t)v * units[i].ms;
        return 0;
    }
    *why = "unknown unit (use ms, s, m, h, d or w)";
    return -1;
}

int config_parse_size(const char *s, uint64_t *bytes, const char **why)
{
    static const struct {
        const char *unit;
        unsigned shift;
    } units[] = {
        {"B", 0},   {"KB", 10},  {"KiB", 10}, {"MB", 20},  {"MiB", 20},
        {"GB", 30}, {"GiB", 30}, {"TB", 40},  {"TiB", 40},
    };
    const char *dummy, *p = s;
    uint64_t v;

    if (!why) why = &dummy;
    if (!s || !*s) return *why = "empty value", -1;
    switch (number(&p, &v, UINT64_MAX)) {
    case -1:
        *why = "expected a number and a unit (512KB, 256MB, 2GB)";
        return -1;
    case -2:
        *why = "out of range";
        return -1;
    }
    if (!*p) return *why = "a bare number needs a unit: B, KB, MB, GB or TB", -1;
    if (*p == '.' || *p == ',')
        return *why = "fractions are not supported: use a smaller unit (1536KB)", -1;
    for (size_t i = 0; i < NELEM(units); i++) {
        if (strcasecmp(p, units[i].unit) != 0) continue;
        if (v > (UINT64_MAX >> units[i].shift)) return *why = "out of range", -1;
        *bytes = v << units[i].shift;
        return 0;
    }
    *why = "unknown unit (use B, KB, MB, GB, TB; KiB, MiB, GiB, TiB)";
    return -1;
}

int config_parse_count(const char *s, uint64_t *v, const char **why)
{
    const char *p = s;
    uint64_t n;

    switch (number(&p, &n, UINT64_MAX)) {
    case -1:
        return *why = "expected a whole number (0 or more)", -1;
    case -2:
        return *why = "out of range", -1;
    }
    if (*p) return *why = "expected a whole number (0 or more)", -1;
    *v = n;
    return 0;
}

int config_parse_level(const char *s, int *v, const char **why)
{
    const char *p = s + (*s == '-');
    uint64_t n;

    switch (number(&p, &n, INT_MAX)) {
    case -1:
        return *why = "expected a whole number", -1;
    case -2:
        return *why = "out of range", -1;
    }
    if (*p) return *why = "expected a whole number", -1;
    *v = *s == '-' ? -(int)n : (int)n;
    return 0;
}

int config_parse_bool(const char *s, bool *v, const char **why)
{
    /* YAML 1.1 also had yes/no/on/off; they are easy to misread (`no` is a
     * country code), so only the two words everybody agrees on. */
    if (strcmp(s, "true") == 0)
        *v = true;
    else if (strcmp(s, "false") == 0)
        *v = false;
    else
        return *why = "use true or false", -1;
    return 0;
}

int config_parse_workers(const char *s, unsigned *v, const char **why)
{
    const char *p = s;
    uint64_t n;

    if (strcmp(s, "auto") == 0) {
        *v = 0;
        return 0;
    }
    if (number(&p, &n, UINT64_MAX) != 0 || *p || n < 1 || n > CONFIG_MAX_WORKERS)
        return *why = "use auto (one per core) or a whole number from 1 to 1024", -1;
    *v = (unsigned)n;
    return 0;
}

/* A host name's bytes: letters, digits, '-', '.' and '_' (seen in container
 * names), not empty. */
static bool hostname(const char *s, size_t n)
{
    if (n == 0 || n > 253) return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '-' || s[i] == '.' || s[i] == '_' ||
              (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z')))
            return false;
    return true;
}

/*
 * "HOST:PORT" or "[IPV6]:PORT" at s; *rest gets what follows the port.
 * A dotted-digit host must be a valid IPv4 address. Returns 0 or -1.
 */
static int hostport(const char *s, unsigned minport, const char **rest,
                    const char **why)
{
    const char *host = s, *colon, *p;
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char addr[16];
    uint64_t port;
    size_t hlen;

    if (*s == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof buf)
            return *why = "an IPv6 address is written [ADDR]:PORT", -1;
        memcpy(buf, s + 1, (size_t)(end - s - 1));
        buf[end - s - 1] = '\0';
        if (inet_pton(AF_INET6, buf, addr) != 1)
            return *why = "not a valid IPv6 address between [ and ]", -1;
        colon = end + 1;
        if (*colon != ':') return *why = "a port is required: write HOST:PORT", -1;
    } else {
        colon = strchr(s, ':');
        if (!colon) return *why = "a port is required: write HOST:PORT", -1;
        hlen = (size_t)(colon - host);
        if (strchr(colon + 1, ':'))
            return *why = "write an IPv6 address in brackets: [::1]:8080", -1;
        if (!hostname(host, hlen))
            return *why = "bad host: use a name, an IPv4 address or [IPv6]", -1;
        if (strspn(host, "0123456789.") == hlen) {
            if (hlen >= sizeof buf) return *why = "not a valid IPv4 address", -1;
            memcpy(buf, host, hlen);
            buf[hlen] = '\0';
            if (inet_pton(AF_INET, buf, addr) != 1)
                return *why = "not a valid IPv4 address", -1;
        }
    }
    p = colon + 1;
    if (number(&p, &port, 65535) != 0 || port < minport)
        return *why = minport ? "the port must be a number from 1 to 65535"
                              : "the port must be a number from 0 to 65535",
               -1;
    *rest = p;
    return 0;
}

int config_check_listen(const char *s, const char **why)
{
    const char *rest;

    if (hostport(s, 0, &rest, why) != 0) return -1;
    if (*rest) return *why = "unexpected text after the port (write HOST:PORT)", -1;
    return 0;
}

int config_check_upstream(const char *s, const char **why)
{
    const char *rest, *hp;

    if (strncasecmp(s, "https://", 8) == 0)
        return *why = "https is not supported: strata reaches the origin over plain "
                      "http://HOST:PORT",
               -1;
    if (strncasecmp(s, "http://", 7) != 0)
        return *why = "must be http://HOST:PORT (an origin URL, http only)", -1;
    hp = s + 7;
    if (memchr(hp, '@', strcspn(hp, "/?#")))
        return *why = "no user or password in the origin URL: write http://HOST:PORT",
               -1;
    if (hostport(hp, 1, &rest, why) != 0) return -1;
    if (rest[0] == '/' && rest[1] == '\0') return 0;
    if (*rest)
        return *why = "no path, query or fragment: the origin URL is http://HOST:PORT "
                      "(optionally with a trailing /)",
               -1;
    return 0;
}

int config_parse_cidr(const char *s, struct config_cidr *out, const char **why)
{
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    char buf[INET6_ADDRSTRLEN + 1];
    struct config_cidr c = {0};
    unsigned max;
    uint64_t prefix;

    if (alen == 0 || alen >= sizeof buf)
        return *why = "expected ADDRESS/PREFIX (10.0.0.0/8, ::1/128) or an address", -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    c.family = memchr(buf, ':', alen) ? AF_INET6 : AF_INET;
    max = c.family == AF_INET6 ? 128 : 32;
    if (inet_pton(c.family, buf, c.addr) != 1)
        return *why = c.family == AF_INET6 ? "not a valid IPv6 address"
                                           : "not a valid IPv4 address",
               -1;
    prefix = max;
    if (slash) {
        const char *p = slash + 1;
        if (number(&p, &prefix, UINT64_MAX) != 0 || *p || prefix > max)
            return *why = c.family == AF_INET6 ? "the prefix length must be 0 to 128"
                                               : "the prefix length must be 0 to 32",
                   -1;
    }
    c.prefix = (unsigned)prefix;
    /* Clear the host bits so a match is a plain compare of `prefix` bits. */
    for (unsigned bit = c.prefix; bit < max; bit++)
        c.addr[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    *out = c;
    return 0;
}

int config_check_token(const char *s, const char **why)
{
    size_t n = strlen(s);

    if (n == 0) return *why = "must not be empty", -1;
    if (n > 256) return *why = "longer than 256 bytes", -1;
    if (strspn(s, "!#$%&'*+-.^_`|~0123456789"
                  "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != n)
        return *why = "use letters, digits and !#$%&'*+-.^_`|~ only", -1;
    return 0;
}

_Static_assert(CONFIG_BEARER_MAX == 128, "the messages below say 128");

int config_check_bearer(const char *s, const char **why)
{
    size_t n = strlen(s);

    if (n == 0) return *why = "must not be empty", -1;
    if (n > CONFIG_BEARER_MAX)
        return *why = "longer than 128 bytes (a token is 1 to 128 bytes of printable "
                      "ASCII without spaces)",
               -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) return *why = "contains a control character", -1;
        if (*p == ' ')
            return *why = "contains a space (a token is 1 to 128 bytes of printable "
                          "ASCII without spaces)",
                   -1;
        if (*p > 0x7f)
            return *why = "contains a byte that is not ASCII (a token is 1 to 128 "
                          "bytes of printable ASCII without spaces)",
                   -1;
    }
    return 0;
}

int config_check_tag(const char *s, const char **why)
{
    size_t n = strlen(s);

    if (n == 0) return *why = "must not be empty", -1;
    if (n > 256) return *why = "longer than 256 bytes", -1;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == ',' || *p == '"' || *p == '\\')
            return *why = "a tag is printable ASCII without space , \" or \\", -1;
    return 0;
}

int config_check_text(const char *s, const char **why)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return *why = "contains a control character", -1;
    return 0;
}

int config_check_header_value(const char *s, const char **why)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p < 0x20 && *p != '\t') || *p >= 0x7f)
            return *why = "a header value is printable ASCII (no line breaks)", -1;
    return 0;
}

int config_parse_user_from(const char *s, enum config_user_from *from,
                           const char **name, const char **why)
{
    static const struct {
        const char *prefix;
        enum config_user_from from;
    } kinds[] = {
        {"header:", CONFIG_USER_HEADER},
        {"cookie:", CONFIG_USER_COOKIE},
        {"jwt:", CONFIG_USER_JWT},
    };
    static const char *const use = "use header:NAME, cookie:NAME or jwt:CLAIM";

    for (size_t i = 0; i < NELEM(kinds); i++) {
        size_t n = strlen(kinds[i].prefix);
        const char *rest = s + n;
        if (strncmp(s, kinds[i].prefix, n) != 0) continue;
        if (kinds[i].from == CONFIG_USER_JWT) {
            if (!*rest || config_check_text(rest, why) != 0 || strlen(rest) > 256)
                return *why = "jwt: needs a claim name (jwt:sub)", -1;
        } else if (config_check_token(rest, why) != 0) {
            return *why = kinds[i].from == CONFIG_USER_HEADER
                              ? "header: needs a header name (header:Authorization)"
                              : "cookie: needs a cookie name (cookie:sessionid)",
                   -1;
        }
        *from = kinds[i].from;
        *name = rest;
        return 0;
    }
    return *why = use, -1;
}

bool config_cache_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n < 1 || n > 64) return false;
    for (; *s; s++)
        if (!(*s == '_' || *s == '.' || *s == '-' || (*s >= '0' && *s <= '9') ||
              (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
            return false;
    return true;
}
