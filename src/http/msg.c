/*
 * msg.c -- collecting a message head from llhttp's callbacks, header lookup,
 * address parsing, reason phrases.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/http.h"
#include "http/internal.h"

int msg_init(struct http_msg *m, size_t cap, size_t maxh)
{
    memset(m, 0, sizeof *m);
    m->arena = malloc(cap ? cap : 1);
    m->h = calloc(maxh ? maxh : 1, sizeof *m->h);
    if (m->arena == NULL || m->h == NULL) {
        msg_free(m);
        return -1;
    }
    m->cap = cap;
    m->maxh = maxh;
    return 0;
}

void msg_reset(struct http_msg *m)
{
    m->len = 0;
    m->nh = 0;
    m->url = NULL;
    m->url_len = 0;
    m->err = MSG_OK;
    m->in_value = false;
    if (m->maxh) m->h[0].name = NULL; /* the first field starts a header */
}

void msg_free(struct http_msg *m)
{
    free(m->arena);
    free(m->h);
    m->arena = NULL;
    m->h = NULL;
}

static int append(struct http_msg *m, const char *p, size_t n)
{
    if (n > m->cap - m->len) {
        m->err = MSG_TOO_BIG;
        return -1;
    }
    memcpy(m->arena + m->len, p, n);
    m->len += n;
    return 0;
}

int msg_on_url(struct http_msg *m, const char *p, size_t n)
{
    if (m->url == NULL) m->url = m->arena + m->len;
    if (append(m, p, n)) return -1;
    m->url_len += n;
    return 0;
}

int msg_on_field(struct http_msg *m, const char *p, size_t n)
{
    if (m->nh >= m->maxh) {
        m->err = MSG_TOO_MANY;
        return -1;
    }
    struct http_header *h = &m->h[m->nh];
    if (h->name == NULL || m->in_value) {
        h->name = m->arena + m->len;
        h->nlen = 0;
        h->value = NULL;
        h->vlen = 0;
        m->in_value = false;
    }
    if (append(m, p, n)) return -1;
    h->nlen += (uint32_t)n;
    return 0;
}

int msg_on_value(struct http_msg *m, const char *p, size_t n)
{
    struct http_header *h = &m->h[m->nh];
    if (!m->in_value) {
        h->value = m->arena + m->len;
        h->vlen = 0;
        m->in_value = true;
    }
    if (append(m, p, n)) return -1;
    h->vlen += (uint32_t)n;
    return 0;
}

int msg_on_value_complete(struct http_msg *m)
{
    struct http_header *h = &m->h[m->nh];
    if (!m->in_value) { /* empty value */
        h->value = m->arena + m->len;
        h->vlen = 0;
    }
    /* llhttp keeps trailing whitespace of a value (RFC 9110 5.5 says to
     * drop it). */
    while (h->vlen > 0 &&
           (h->value[h->vlen - 1] == ' ' || h->value[h->vlen - 1] == '\t'))
        h->vlen--;
    m->nh++;
    m->in_value = true; /* the next field starts a new header */
    if (m->nh < m->maxh) m->h[m->nh].name = NULL;
    return 0;
}

bool http_name_is(const struct http_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->nlen == n && strncasecmp(h->name, name, n) == 0;
}

const struct http_header *http_find(const struct http_msg *m, const char *name,
                                    size_t *count)
{
    const struct http_header *first = NULL;
    size_t k = 0;
    for (size_t i = 0; i < m->nh; i++)
        if (http_name_is(&m->h[i], name)) {
            if (first == NULL) first = &m->h[i];
            k++;
            if (count == NULL) break;
        }
    if (count) *count = k;
    return first;
}

bool http_list_has(const char *v, size_t vlen, const char *token)
{
    size_t tl = strlen(token);
    size_t i = 0;
    while (i < vlen) {
        while (i < vlen && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < vlen && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, token, tl) == 0) return true;
    }
    return false;
}

bool http_named_in(const struct http_header *conn, const struct http_header *h)
{
    char nm[128];
    if (conn == NULL || h->nlen >= sizeof nm) return false;
    memcpy(nm, h->name, h->nlen);
    nm[h->nlen] = 0;
    return http_list_has(conn->value, conn->vlen, nm);
}

bool msg_folded(const char *lo, const char *hi, char tail, const char *at, size_t n)
{
    if (at < lo || at + n > hi) return false;
    const char *b = at;
    while (b > lo && (b[-1] == ' ' || b[-1] == '\t'))
        b--;
    if (b < at && b - lo >= 1 && b[-1] == '\n') return true;
    /* The line break may be the last byte of the previous read. */
    if (b < at && b == lo && tail == '\n') return true;
    const char *e = at + n;
    return hi - e >= 3 && e[0] == '\r' && e[1] == '\n' && (e[2] == ' ' || e[2] == '\t');
}

bool http_hop_by_hop(const char *name, size_t n)
{
    static const char *const hop[] = {
        "connection",        "keep-alive",      "te", "trailer", "upgrade",
        "transfer-encoding", "proxy-connection"};
    for (size_t i = 0; i < sizeof hop / sizeof *hop; i++)
        if (strlen(hop[i]) == n && strncasecmp(hop[i], name, n) == 0) return true;
    return n >= 6 && strncasecmp(name, "proxy-", 6) == 0;
}

bool http_request_id_ok(const char *v, size_t n)
{
    if (n == 0 || n > HTTP_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool http_media_type_is(const char *v, size_t n, const char *type)
{
    size_t tl = strlen(type), i = 0;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    if (n - i < tl || strncasecmp(v + i, type, tl) != 0) return false;
    for (i += tl; i < n && (v[i] == ' ' || v[i] == '\t'); i++)
        ;
    return i == n || v[i] == ';';
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 203:
        return "Non-Authoritative Information";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 300:
        return "Multiple Choices";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 415:
        return "Unsupported Media Type";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 416:
        return "Range Not Satisfiable";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static int hostport(const char *s, size_t n, struct sockaddr_storage *out)
{
    char host[256];
    const char *colon;
    const char *port;
    memset(out, 0, sizeof *out);
    if (n == 0 || n >= sizeof host) return -1;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL || rb + 1 >= s + n || rb[1] != ':') return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        port = rb + 2;
    } else {
        colon = memrchr(s, ':', n);
        if (colon == NULL) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
        port = colon + 1;
    }
    size_t plen = (size_t)(s + n - port);
    if (plen == 0 || plen > 5) return -1;
    unsigned p = 0;
    for (size_t i = 0; i < plen; i++) {
        if (port[i] < '0' || port[i] > '9') return -1;
        p = p * 10 + (unsigned)(port[i] - '0');
    }
    if (p == 0 || p > 65535) return -1;
    if (strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
    struct sockaddr_in *a4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        return 0;
    }
    return -1;
}

int http_parse_listen(const char *listen, struct sockaddr_storage *out)
{
    return hostport(listen, strlen(listen), out);
}

int http_parse_upstream(const char *url, struct sockaddr_storage *out, char *hp,
                        size_t hplen)
{
    if (strncmp(url, "http://", 7) != 0) return -1;
    const char *s = url + 7;
    size_t n = strcspn(s, "/");
    if (s[n] == '/' && s[n + 1] != 0) return -1; /* no path */
    if (hostport(s, n, out) != 0) return -1;
    if (hp) snprintf(hp, hplen, "%.*s", (int)n, s);
    return 0;
}
