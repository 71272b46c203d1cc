/*
 * client.c -- the CLI's way to the admin API: which admin (address and
 * token) and one blocking HTTP/1.1 exchange with it.
 *
 * Which admin, first match wins:
 *   address  --admin URL | admin.listen of -c FILE | 127.0.0.1:8081
 *   token    admin.token of -c FILE | $STRATA_ADMIN_TOKEN |
 *            the token file (admin.token_file of -c FILE, else
 *            ./strata-admin.token), first line, whitespace trimmed
 * Of -c FILE only the `admin:` section is read (config_load_admin), so a
 * setting the CLI does not use, or an unset ${ENV} in one, does not stop it.
 * A token must be what the server accepts as admin.token
 * (config_check_bearer: 1 to 128 bytes of printable ASCII without spaces).
 *
 * An exchange opens a new connection, sends the request with
 * `Connection: close`, and reads one response with llhttp (Content-Length,
 * chunked, or until the admin closes). Connecting is bounded by
 * CLI_CONNECT_TIMEOUT_MS; the whole exchange by the caller's timeout. Nothing
 * here keeps a connection or any state between calls except cli_interrupted,
 * which a signal handler sets to abandon a call that is waiting.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config/config.h"
#include "strata.h"

#define DEFAULT_ADMIN "127.0.0.1:8081"
#define DEFAULT_TOKEN_FILE "strata-admin.token"
#define MAX_BODY ((size_t)256 << 20)

volatile sig_atomic_t cli_interrupted;

/* ---- which admin ---- */

/* Split "host:port", "[v6]:port" or "host" (port 80) into ad's fields. */
static int set_address(struct cli_admin *ad, const char *hp, size_t n)
{
    const char *host = hp, *port = "80";
    size_t hl = n, pl = 2;
    if (n > 0 && hp[0] == '[') {
        const char *rb = memchr(hp, ']', n);
        if (rb == NULL) return -1;
        host = hp + 1;
        hl = (size_t)(rb - host);
        if (rb + 1 < hp + n) {
            if (rb[1] != ':') return -1;
            port = rb + 2;
            pl = (size_t)(hp + n - port);
        }
    } else {
        const char *colon = memchr(hp, ':', n);
        if (colon) {
            hl = (size_t)(colon - hp);
            port = colon + 1;
            pl = (size_t)(hp + n - port);
        }
    }
    if (hl == 0 || hl >= sizeof ad->host || pl == 0 || pl >= sizeof ad->port ||
        n >= sizeof ad->authority)
        return -1;
    for (size_t i = 0; i < pl; i++)
        if (!isdigit((unsigned char)port[i])) return -1;
    memcpy(ad->host, host, hl);
    ad->host[hl] = 0;
    memcpy(ad->port, port, pl);
    ad->port[pl] = 0;
    memcpy(ad->authority, hp, n);
    ad->authority[n] = 0;
    return 0;
}

/* --admin: "http://host:port[/]" or "host:port". */
static int set_admin_url(struct cli_admin *ad, const char *url)
{
    const char *p = url;
    if (strncasecmp(p, "http://", 7) == 0)
        p += 7;
    else if (strstr(p, "://"))
        return -1;
    size_t n = strlen(p);
    if (n > 0 && p[n - 1] == '/') n--;
    if (memchr(p, '/', n) || memchr(p, '@', n)) return -1;
    return set_address(ad, p, n);
}

static char *trimmed_copy(const char *s, size_t n)
{
    while (n > 0 && isspace((unsigned char)*s))
        s++, n--;
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    return strndup(s, n);
}

/* s[0..n) trimmed, if it is a token the server accepts; NULL with ad->err
 * set ("the admin token in SRC is not valid: WHY"; never the token). */
static char *checked_token(struct cli_admin *ad, const char *s, size_t n,
                           const char *src)
{
    const char *why;
    char *t = trimmed_copy(s, n);
    if (t == NULL) {
        snprintf(ad->err, sizeof ad->err, "out of memory");
        return NULL;
    }
    if (config_check_bearer(t, &why) != 0) {
        snprintf(ad->err, sizeof ad->err, "the admin token in %s is not valid: %s", src,
                 why);
        free(t);
        return NULL;
    }
    return t;
}

/* The first line of `path`, trimmed; NULL with ad->err set. */
static char *read_token_file(struct cli_admin *ad, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(ad->err, sizeof ad->err,
                 "no admin token: STRATA_ADMIN_TOKEN is not set and the token file "
                 "%s cannot be read (%s)",
                 path, strerror(errno));
        return NULL;
    }
    char buf[512], src[300];
    char *line = fgets(buf, sizeof buf, f);
    fclose(f);
    snprintf(src, sizeof src, "the token file %s", path);
    return checked_token(ad, line ? line : "", line ? strlen(line) : 0, src);
}

/* Token from (in order) the config, the environment, the token file. */
static int find_token(struct cli_admin *ad, const struct config_admin *cfg)
{
    const char *env = getenv("STRATA_ADMIN_TOKEN");
    if (cfg && cfg->token) /* config_load_admin checked it */
        ad->token = checked_token(ad, cfg->token, strlen(cfg->token), "admin.token");
    else if (env && *env)
        ad->token = checked_token(ad, env, strlen(env), "STRATA_ADMIN_TOKEN");
    else
        ad->token = read_token_file(ad, cfg && cfg->token_file && *cfg->token_file
                                            ? cfg->token_file
                                            : DEFAULT_TOKEN_FILE);
    return ad->token ? 0 : -1;
}

int cli_admin_init(struct cli_admin *ad, const struct cli_args *a)
{
    memset(ad, 0, sizeof *ad);
    ad->cmd = a->cmd->name;
    const char *url = cli_value(a, "--admin"), *path = cli_value(a, "--config");
    if (url && set_admin_url(ad, url) != 0)
        return cli_usage_error(a, "--admin: '%s' is not http://HOST:PORT", url);
    struct config_admin cfg;
    bool have_cfg = false;
    if (path) {
        char *e = NULL;
        if (config_load_admin(path, &cfg, &e) != 0) {
            fprintf(stderr, "strata %s: %s\n", ad->cmd, e ? e : "out of memory");
            free(e);
            return CLI_FAIL;
        }
        have_cfg = true;
    }
    int rc = CLI_OK;
    const char *listen = have_cfg && cfg.listen ? cfg.listen : DEFAULT_ADMIN;
    if (url == NULL && set_address(ad, listen, strlen(listen)) != 0) {
        fprintf(stderr, "strata %s: admin.listen '%s' is not HOST:PORT\n", ad->cmd,
                listen);
        rc = CLI_FAIL;
    } else if (find_token(ad, have_cfg ? &cfg : NULL) != 0) {
        rc = cli_admin_fail(ad);
    }
    if (have_cfg) config_admin_fini(&cfg);
    if (rc != CLI_OK) cli_admin_fini(ad);
    return rc;
}

void cli_admin_fini(struct cli_admin *ad)
{
    free(ad->token);
    ad->token = NULL;
}

int cli_admin_fail(const struct cli_admin *ad)
{
    fprintf(stderr, "strata %s: %s\n", ad->cmd, ad->err);
    return CLI_FAIL;
}

/* ---- one exchange ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "admin HOST:PORT: connection refused" (strerror's capital lowered). */
static void net_error(struct cli_admin *ad, const char *what)
{
    int k = snprintf(ad->err, sizeof ad->err, "admin %s: ", ad->authority);
    snprintf(ad->err + k, sizeof ad->err - (size_t)k, "%s", what);
    char *p = ad->err + k;
    if (isupper((unsigned char)p[0]) && !isupper((unsigned char)p[1]))
        p[0] = (char)tolower((unsigned char)p[0]);
}

/* Wait for `events` on fd until `deadline`. 1 ready, 0 timed out, -1 error
 * (interrupted by a signal that asked us to stop). */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left > INT32_MAX ? INT32_MAX : (int)left);
        if (n > 0) return 1;
        if (n == 0) return 0;
        if (errno != EINTR) return -1;
        if (cli_interrupted) {
            errno = EINTR;
            return -1;
        }
    }
}

static int connect_one(const struct addrinfo *ai, int64_t deadline, int *err)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return fd;
    if (errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    int w = wait_fd(fd, POLLOUT, deadline);
    socklen_t sl = sizeof *err;
    if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &sl) == 0 && *err == 0)
        return fd;
    if (w == 0) *err = ETIMEDOUT;
    if (w < 0) *err = errno;
    close(fd);
    return -1;
}

static int open_conn(struct cli_admin *ad)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(ad->host, ad->port, &hints, &res);
    if (g != 0) {
        net_error(ad, gai_strerror(g));
        return -1;
    }
    int64_t deadline = now_ms() + CLI_CONNECT_TIMEOUT_MS;
    int fd = -1, err = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, deadline, &err);
    freeaddrinfo(res);
    if (fd < 0) {
        char why[120];
        if (err == ETIMEDOUT)
            snprintf(why, sizeof why, "no connection within %d s",
                     CLI_CONNECT_TIMEOUT_MS / 1000);
        else
            snprintf(why, sizeof why, "%s",
                     err == EINTR ? "interrupted" : strerror(err));
        net_error(ad, why);
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k > 0) {
            p += k;
            n -= (size_t)k;
            continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EINTR) return -1;
        int w = wait_fd(fd, POLLOUT, deadline);
        if (w <= 0) {
            if (w == 0) errno = ETIMEDOUT;
            return -1;
        }
    }
    return 0;
}

struct reader {
    llhttp_t p;
    struct cli_resp *r;
    size_t cap;
    bool done, too_big;
};

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct reader *rd = p->data;
    struct cli_resp *r = rd->r;
    if (r->len + n > MAX_BODY) {
        rd->too_big = true;
        return -1;
    }
    if (r->len + n + 1 > rd->cap) {
        size_t cap = rd->cap ? rd->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (b == NULL) {
            rd->too_big = true;
            return -1;
        }
        r->body = b;
        rd->cap = cap;
    }
    memcpy(r->body + r->len, at, n);
    r->len += n;
    r->body[r->len] = 0;
    return 0;
}

static int on_complete(llhttp_t *p)
{
    struct reader *rd = p->data;
    rd->done = true;
    rd->r->status = p->status_code;
    return 0;
}

/* Read one response into *r. 0, or -1 with a reason in why. */
static int read_resp(int fd, struct cli_resp *r, int64_t deadline, char *why, size_t wn)
{
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_body = on_body;
    st.on_message_complete = on_complete;
    struct reader rd = {.r = r};
    llhttp_init(&rd.p, HTTP_RESPONSE, &st);
    rd.p.data = &rd;
    char buf[65536];
    while (!rd.done) {
        int w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0) {
            snprintf(why, wn, "%s", w == 0 ? "no answer in time" : "interrupted");
            return -1;
        }
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) {
            snprintf(why, wn, "%s", strerror(errno));
            return -1;
        }
        enum llhttp_errno e =
            n == 0 ? llhttp_finish(&rd.p) : llhttp_execute(&rd.p, buf, (size_t)n);
        if (rd.done) break;
        if (rd.too_big) {
            snprintf(why, wn, "the answer is larger than %zu MB", MAX_BODY >> 20);
            return -1;
        }
        if (e != HPE_OK) {
            snprintf(why, wn, "bad HTTP answer (%s)", llhttp_errno_name(e));
            return -1;
        }
        if (n == 0) {
            snprintf(why, wn, "the connection closed before the answer was complete");
            return -1;
        }
    }
    if (r->body == NULL && (r->body = calloc(1, 1)) == NULL) {
        snprintf(why, wn, "out of memory");
        return -1;
    }
    return 0;
}

static char *request_head(const struct cli_admin *ad, const char *method,
                          const char *target, const char *ctype, const void *body,
                          size_t blen)
{
    char *head = NULL, ct[128] = "", cl[64] = "";
    if (ctype) snprintf(ct, sizeof ct, "Content-Type: %s\r\n", ctype);
    if (body || !strcmp(method, "POST") || !strcmp(method, "PUT"))
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body ? blen : 0);
    if (asprintf(&head,
                 "%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                 "User-Agent: strata-cli/%s\r\n%s%sConnection: close\r\n\r\n",
                 method, target, ad->authority, ad->token, STRATA_VERSION, ct, cl) < 0)
        return NULL;
    return head;
}

int cli_admin_call(struct cli_admin *ad, const char *method, const char *target,
                   const char *ctype, const void *body, size_t blen, int timeout_ms,
                   struct cli_resp *r)
{
    memset(r, 0, sizeof *r);
    char *head = request_head(ad, method, target, ctype, body, blen);
    if (head == NULL) {
        snprintf(ad->err, sizeof ad->err, "out of memory");
        return -1;
    }
    int fd = open_conn(ad);
    if (fd < 0) {
        free(head);
        return -1;
    }
    int64_t deadline = now_ms() + timeout_ms;
    /* A send that fails may still leave an answer to read (the admin refused
     * the request early and closed): read it before blaming the send. */
    int serr = 0;
    if (send_all(fd, head, strlen(head), deadline) != 0 ||
        (body && send_all(fd, body, blen, deadline) != 0))
        serr = errno;
    free(head);
    char why[200];
    int rc = read_resp(fd, r, deadline, why, sizeof why);
    close(fd);
    if (rc != 0) {
        cli_resp_fini(r);
        if (serr)
            net_error(ad, serr == ETIMEDOUT ? "no answer in time" : strerror(serr));
        else
            net_error(ad, why);
        return -1;
    }
    return 0;
}

void cli_resp_fini(struct cli_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

void cli_admin_explain(struct cli_admin *ad, const struct cli_resp *r)
{
    if (r->status == 401) {
        snprintf(ad->err, sizeof ad->err,
                 "unauthorized (check STRATA_ADMIN_TOKEN or the token file)");
        return;
    }
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *d = json_string_value(json_object_get(j, "detail"));
    if (e && d && *d)
        snprintf(ad->err, sizeof ad->err, "%s: %s", e, d);
    else if (e)
        snprintf(ad->err, sizeof ad->err, "%s", e);
    else
        snprintf(ad->err, sizeof ad->err, "admin %s answered %d", ad->authority,
                 r->status);
    json_decref(j);
}

json_t *cli_admin_json(struct cli_admin *ad, const char *method, const char *target,
                       json_t *body, int timeout_ms)
{
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        if (text == NULL) {
            snprintf(ad->err, sizeof ad->err, "out of memory");
            return NULL;
        }
    }
    struct cli_resp r;
    int rc = cli_admin_call(ad, method, target, text ? "application/json" : NULL, text,
                            text ? strlen(text) : 0, timeout_ms, &r);
    free(text);
    if (rc != 0) return NULL;
    json_t *j = NULL;
    if (r.status < 200 || r.status > 299) {
        cli_admin_explain(ad, &r);
    } else {
        json_error_t je;
        j = json_loadb(r.body, r.len, 0, &je);
        if (j == NULL)
            snprintf(ad->err, sizeof ad->err, "admin %s: the answer is not JSON (%s)",
                     ad->authority, je.text);
    }
    cli_resp_fini(&r);
    return j;
}

/* ---- small shared helpers ---- */

char *cli_pct_encode(const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * n + 1), *o = out;
    if (out == NULL) return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                          c == '~';
        if (unreserved) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = 0;
    return out;
}

int cli_print_json(const json_t *j)
{
    if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 ||
        fputc('\n', stdout) == EOF)
        return -1;
    return 0;
}

int cli_stdout_done(const char *cmd, bool failed)
{
    int err = 0;
    if (fflush(stdout) != 0) err = errno;
    if (!failed && !err && !ferror(stdout)) return CLI_OK;
    fprintf(stderr, "strata%s%s: cannot write to stdout%s%s\n", cmd ? " " : "",
            cmd ? cmd : "", err ? ": " : "", err ? strerror(err) : "");
    return CLI_FAIL;
}
