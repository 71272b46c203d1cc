/*
 * upstream.c -- the origin client: one pool per worker of keep-alive
 * connections to the origin, a request at a time on each.
 *
 * A request takes an idle connection or opens one (bounded by the connect
 * timeout), writes its head and body, and parses the response with llhttp,
 * handing the head and then the body to its callbacks. upstream_timeout
 * bounds the wait for every read. When the response ends cleanly and both
 * sides want keep-alive the connection goes back to the pool (at most
 * `keepalive` idle ones); idle connections are watched so an origin that
 * closes one is noticed. An idempotent request whose reused connection fails
 * before any response byte is sent once more on a fresh connection (the
 * origin may have closed it just as we picked it).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "http/internal.h"

struct up_pool {
    uv_loop_t *loop;
    int api;               /* > 0 inside a caller's up_send / up_req_body */
    struct up_req *failed; /* failures to report on the next loop turn */
    uv_timer_t fail_timer;
    struct up_conf conf;
    struct up_conn *idle;
    size_t nidle;
    struct up_conn *all; /* every connection (to close them at the end) */
};

struct up_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t creq;
    struct up_pool *pool;
    struct up_conn *next_idle, *prev_all, *next_all;
    llhttp_t parser;
    struct http_msg msg;
    struct rbuf *rb; /* the read buffer; writers may hold references */
    struct up_req *req;
    unsigned closes;
    bool connected, closing, reused, got_bytes, interim, reading, finished;
};

/* Read buffers are refcounted so a response body can be written to the
 * client straight from them (up_buf_ref); a held buffer is left to its
 * holders and the next read gets a new one. One loop thread: plain ints. */
struct rbuf {
    unsigned refs;
    char data[HTTP_READ_SIZE];
};

void up_buf_unref(void *b)
{
    struct rbuf *rb = b;
    if (rb && --rb->refs == 0) free(rb);
}

struct body_chunk {
    struct body_chunk *next;
    size_t len;
    char data[];
};

struct up_req {
    struct up_pool *pool;
    struct up_conn *conn;
    char *head;
    size_t hlen;
    const struct up_callbacks *cb;
    void *ud;
    struct body_chunk *pending, *pending_tail; /* body before the connection is up */
    size_t queued;
    void (*drain)(void *ud);
    struct up_req *next_failed;
    enum up_error err;
    bool head_only, retry, body, body_ended, headed, paused, failing, cancelled;
};

struct up_write {
    uv_write_t w;
    struct up_conn *c;
    size_t len;
    char data[];
};

static llhttp_settings_t settings;
static uv_once_t settings_once = UV_ONCE_INIT;
static void start(struct up_req *r);

/* ------------------------------------------------------------- lifecycle */

static void on_closed(uv_handle_t *h)
{
    struct up_conn *c = h->data;
    if (--c->closes > 0) return;
    msg_free(&c->msg);
    up_buf_unref(c->rb);
    free(c);
}

static void unlink_idle(struct up_conn *c)
{
    struct up_pool *p = c->pool;
    for (struct up_conn **pp = &p->idle; *pp; pp = &(*pp)->next_idle)
        if (*pp == c) {
            *pp = c->next_idle;
            p->nidle--;
            break;
        }
    c->next_idle = NULL;
}

static void conn_close(struct up_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    unlink_idle(c);
    struct up_pool *p = c->pool;
    if (c->prev_all)
        c->prev_all->next_all = c->next_all;
    else
        p->all = c->next_all;
    if (c->next_all) c->next_all->prev_all = c->prev_all;
    if (c->req) c->req->conn = NULL;
    c->req = NULL;
    c->closes = 2;
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static void req_free(struct up_req *r)
{
    struct body_chunk *b = r->pending;
    while (b) {
        struct body_chunk *next = b->next;
        free(b);
        b = next;
    }
    free(r->head);
    free(r);
}

static void report_failures(uv_timer_t *t)
{
    struct up_pool *p = t->data;
    while (p->failed) {
        struct up_req *r = p->failed;
        p->failed = r->next_failed;
        const struct up_callbacks *cb = r->cb;
        void *ud = r->ud;
        bool cancelled = r->cancelled, before = !r->headed;
        enum up_error e = r->err;
        req_free(r);
        if (!cancelled) cb->on_error(ud, e, before);
    }
}

/* The request failed. Retries once when allowed and nothing was received.
 * Inside a caller's own call (up_send, up_req_body) the failure is reported
 * on the next loop turn, so no callback runs under the caller. */
static void fail(struct up_req *r, enum up_error e)
{
    if (r->failing) return;
    struct up_conn *c = r->conn;
    bool reused = c && c->reused;
    bool got = c && c->got_bytes;
    if (c) conn_close(c);
    r->conn = NULL;
    if (r->retry && reused && !got && !r->headed && e != UP_TIMEOUT) {
        r->retry = false;
        start(r);
        return;
    }
    if (r->pool->api > 0) {
        r->failing = true;
        r->err = e;
        r->next_failed = r->pool->failed;
        r->pool->failed = r;
        uv_timer_start(&r->pool->fail_timer, report_failures, 0, 0);
        return;
    }
    const struct up_callbacks *cb = r->cb;
    void *ud = r->ud;
    bool before = !r->headed;
    req_free(r);
    cb->on_error(ud, e, before);
}

/* ---------------------------------------------------------------- writes */

static void on_written(uv_write_t *w, int status)
{
    struct up_write *uw = (struct up_write *)w;
    struct up_conn *c = uw->c;
    size_t len = uw->len;
    free(uw);
    if (c->closing) return;
    struct up_req *r = c->req;
    if (status < 0) {
        /* Leave the error to the read side when the origin already answered
         * (it may reply early and close). */
        if (r && !r->headed) fail(r, UP_BROKEN);
        return;
    }
    if (r) {
        r->queued -= len;
        if (r->drain && r->queued < HTTP_QUEUE_LOW) r->drain(r->ud);
    }
}

static int write_copy(struct up_conn *c, const char *p, size_t n)
{
    struct up_write *uw = malloc(sizeof *uw + n);
    if (uw == NULL) return -1;
    uw->c = c;
    uw->len = n;
    memcpy(uw->data, p, n);
    uv_buf_t b = uv_buf_init(uw->data, (unsigned)n);
    if (uv_write(&uw->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(uw);
        return -1;
    }
    if (c->req) c->req->queued += n;
    return 0;
}

/* --------------------------------------------------------------- parsing */

static struct up_conn *pc(llhttp_t *p)
{
    return p->data;
}

static int on_begin(llhttp_t *p)
{
    msg_reset(&pc(p)->msg);
    return 0;
}
static int on_field(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_field(&pc(p)->msg, at, n) ? -1 : 0;
}
static int on_value(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_value(&pc(p)->msg, at, n) ? -1 : 0;
}
static int on_value_complete(llhttp_t *p)
{
    return msg_on_value_complete(&pc(p)->msg);
}

static int on_headers(llhttp_t *p)
{
    struct up_conn *c = pc(p);
    struct up_req *r = c->req;
    if (r == NULL) return -1;
    if (p->status_code < 200) { /* 100 Continue, 103 Early Hints: skip */
        c->interim = true;
        return 0;
    }
    c->interim = false;
    r->headed = true;
    bool chunked = (p->flags & F_CHUNKED) != 0;
    int64_t len = (p->flags & F_CONTENT_LENGTH) ? (int64_t)p->content_length : -1;
    if (p->status_code == 204 || p->status_code == 304)
        len = 0; /* (HEAD: the length of the GET it describes) */
    if (r->cb->on_head(r->ud, p->status_code, &c->msg, chunked, len) != 0) {
        /* Abandoned: the caller freed nothing of ours; we close and free. */
        r->conn = NULL;
        c->req = NULL;
        req_free(r);
        conn_close(c);
        return -1;
    }
    return r->head_only ? 1 : 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct up_conn *c = pc(p);
    if (c->req == NULL) return -1;
    c->req->cb->on_body(c->req->ud, at, n);
    return c->closing ? -1 : 0;
}

static void idle_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b);
static void idle_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

/* The response ended. The rest happens in complete(), after llhttp
 * returned: the callbacks it runs may send the next request on this very
 * connection. */
static int on_complete(llhttp_t *p)
{
    struct up_conn *c = pc(p);
    if (c->interim) {
        c->interim = false;
        return 0;
    }
    if (c->req == NULL) return -1;
    c->finished = true;
    return HPE_PAUSED;
}

static void complete(struct up_conn *c, bool reusable)
{
    struct up_req *r = c->req;
    struct up_pool *pool = c->pool;
    bool keep = reusable && llhttp_should_keep_alive(&c->parser) && r->body_ended;
    c->finished = false;
    c->req = NULL;
    r->conn = NULL;
    uv_timer_stop(&c->timer);
    if (keep && pool->nidle < pool->conf.keepalive && !c->closing) {
        llhttp_resume(&c->parser);
        c->next_idle = pool->idle;
        pool->idle = c;
        pool->nidle++;
        c->reused = true;
        c->got_bytes = false;
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_read_start((uv_stream_t *)&c->tcp, idle_alloc, idle_read);
        c->reading = true;
    } else {
        conn_close(c);
    }
    const struct up_callbacks *cb = r->cb;
    void *ud = r->ud;
    req_free(r);
    cb->on_done(ud);
}

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_begin;
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_complete;
    settings.on_headers_complete = on_headers;
    settings.on_body = on_body;
    settings.on_message_complete = on_complete;
}

/* ------------------------------------------------------------------ reads */

static void on_timeout(uv_timer_t *t)
{
    struct up_conn *c = t->data;
    if (c->req)
        fail(c->req, c->connected ? UP_TIMEOUT : UP_CONNECT);
    else
        conn_close(c);
}

static void alloc_buf(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct up_conn *c = h->data;
    if (c->rb && c->rb->refs > 1) { /* still being written somewhere */
        up_buf_unref(c->rb);
        c->rb = NULL;
    }
    if (c->rb == NULL && (c->rb = malloc(sizeof *c->rb)) != NULL) c->rb->refs = 1;
    *b = uv_buf_init(c->rb ? c->rb->data : NULL, c->rb ? HTTP_READ_SIZE : 0);
}

static void idle_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    alloc_buf(h, hint, b);
}

/* Anything on an idle connection (EOF, an error, stray bytes) ends it. */
static void idle_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    if (n != 0) conn_close(s->data);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct up_conn *c = s->data;
    struct up_req *r = c->req;
    if (r == NULL) {
        if (n != 0) conn_close(c);
        return;
    }
    if (n == 0) return;
    if (n < 0) {
        /* A body delimited by the close ends here. */
        if (n == UV_EOF && r->headed) {
            llhttp_finish(&c->parser);
            if (c->finished) {
                complete(c, false);
                return;
            }
        }
        if (c->req) fail(c->req, UP_BROKEN);
        return;
    }
    c->got_bytes = true;
    uv_timer_start(&c->timer, on_timeout, c->pool->conf.timeout_ms, 0);
    enum llhttp_errno e = llhttp_execute(&c->parser, b->base, (size_t)n);
    if (e == HPE_OK) return;
    if (e == HPE_PAUSED && c->finished) {
        /* Bytes after the response mean the origin is confused: do not
         * reuse the connection. */
        complete(c, llhttp_get_error_pos(&c->parser) == b->base + n);
        return;
    }
    if (c->req) fail(c->req, UP_BROKEN);
}

/* -------------------------------------------------------------- requests */

static void send_head(struct up_req *r)
{
    struct up_conn *c = r->conn;
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
    c->interim = false;
    if (write_copy(c, r->head, r->hlen) != 0) {
        fail(r, UP_BROKEN);
        return;
    }
    struct body_chunk *b = r->pending;
    r->pending = r->pending_tail = NULL;
    while (b) {
        struct body_chunk *next = b->next;
        r->queued -= b->len; /* counted when it was kept; write_copy counts it */
        if (r->conn) write_copy(c, b->data, b->len);
        free(b);
        b = next;
    }
    if (r->conn == NULL) return;
    uv_timer_start(&c->timer, on_timeout, r->pool->conf.timeout_ms, 0);
    if (!r->paused) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
        c->reading = true;
    }
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct up_conn *c = cr->data;
    if (c->closing) return;
    if (status < 0) {
        if (c->req)
            fail(c->req, UP_CONNECT);
        else
            conn_close(c);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->req) send_head(c->req);
}

static void start(struct up_req *r)
{
    struct up_pool *p = r->pool;
    struct up_conn *c = p->idle;
    if (c) {
        p->idle = c->next_idle;
        p->nidle--;
        c->next_idle = NULL;
        c->req = r;
        r->conn = c;
        send_head(r);
        return;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL ||
        msg_init(&c->msg, p->conf.max_header_size, p->conf.max_headers) != 0) {
        free(c);
        r->retry = false;
        fail(r, UP_CONNECT);
        return;
    }
    c->pool = p;
    uv_tcp_init(p->loop, &c->tcp);
    uv_timer_init(p->loop, &c->timer);
    c->tcp.data = c->timer.data = c->creq.data = c;
    c->next_all = p->all;
    if (p->all) p->all->prev_all = c;
    p->all = c;
    c->req = r;
    r->conn = c;
    uv_timer_start(&c->timer, on_timeout, p->conf.connect_timeout_ms, 0);
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&p->conf.addr,
                       on_connect) != 0)
        fail(r, UP_CONNECT);
}

struct up_req *up_send(struct up_pool *p, char *head, size_t len, bool head_only,
                       bool retry, bool body, const struct up_callbacks *cb, void *ud)
{
    uv_once(&settings_once, settings_init);
    struct up_req *r = calloc(1, sizeof *r);
    if (r == NULL) {
        free(head);
        return NULL;
    }
    r->pool = p;
    r->head = head;
    r->hlen = len;
    r->head_only = head_only;
    r->retry = retry && !body;
    r->body = body;
    r->body_ended = !body;
    r->cb = cb;
    r->ud = ud;
    p->api++;
    start(r);
    p->api--;
    return r;
}

/* The caller must not use `r` after a callback that ends it (on_done,
 * on_error); these functions are called only while it lives. */
size_t up_req_body(struct up_req *r, const char *p, size_t n)
{
    if (r->failing) return 0;
    if (r->conn && r->conn->connected) {
        r->pool->api++;
        if (write_copy(r->conn, p, n) != 0) fail(r, UP_BROKEN);
        r->pool->api--;
        return r->queued;
    }
    struct body_chunk *b = malloc(sizeof *b + n);
    if (b == NULL) return r->queued;
    b->next = NULL;
    b->len = n;
    memcpy(b->data, p, n);
    if (r->pending_tail)
        r->pending_tail->next = b;
    else
        r->pending = b;
    r->pending_tail = b;
    r->queued += n;
    return r->queued;
}

void up_req_body_end(struct up_req *r)
{
    r->body_ended = true;
}

void up_req_on_body_drain(struct up_req *r, void (*fn)(void *ud))
{
    r->drain = fn;
}

void up_req_pause(struct up_req *r)
{
    r->paused = true;
    if (r->conn && r->conn->reading) {
        uv_read_stop((uv_stream_t *)&r->conn->tcp);
        r->conn->reading = false;
        /* The origin is not the slow one now: its timeout waits too. */
        uv_timer_stop(&r->conn->timer);
    }
}

void up_req_resume(struct up_req *r)
{
    r->paused = false;
    struct up_conn *c = r->conn;
    if (c && c->connected && !c->reading && !c->closing) {
        uv_read_start((uv_stream_t *)&c->tcp, alloc_buf, on_read);
        c->reading = true;
        uv_timer_start(&c->timer, on_timeout, r->pool->conf.timeout_ms, 0);
    }
}

void *up_buf_ref(struct up_req *r)
{
    if (r == NULL || r->conn == NULL || r->conn->rb == NULL) return NULL;
    r->conn->rb->refs++;
    return r->conn->rb;
}

void up_req_cancel(struct up_req *r)
{
    if (r->failing) { /* reported soon: report nothing, free it then */
        r->cancelled = true;
        return;
    }
    if (r->conn) conn_close(r->conn);
    r->conn = NULL;
    req_free(r);
}

/* ------------------------------------------------------------------- pool */

struct up_pool *up_pool_new(uv_loop_t *loop, const struct up_conf *conf)
{
    uv_once(&settings_once, settings_init);
    struct up_pool *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->loop = loop;
    p->conf = *conf;
    uv_timer_init(loop, &p->fail_timer);
    p->fail_timer.data = p;
    return p;
}

size_t up_pool_idle(const struct up_pool *p)
{
    return p->nidle;
}

static void pool_closed(uv_handle_t *h)
{
    free(h->data);
}

void up_pool_free(struct up_pool *p)
{
    if (p == NULL) return;
    report_failures(&p->fail_timer);
    while (p->all) {
        struct up_conn *c = p->all;
        if (c->req) {
            struct up_req *r = c->req;
            r->retry = false;
            fail(r, UP_BROKEN); /* closes c */
        } else {
            conn_close(c);
        }
    }
    report_failures(&p->fail_timer);
    uv_close((uv_handle_t *)&p->fail_timer, pool_closed);
}
