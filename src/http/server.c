/*
 * server.c -- worker threads, listeners and client connections.
 *
 * Each worker owns a libuv loop, its own SO_REUSEPORT listening socket (the
 * kernel spreads connections over them) and every connection it accepted.
 * A connection reads into its buffer and feeds llhttp; when a request's head
 * is complete the handler gets it. While the handler answers, parsing stops
 * at the end of that request (llhttp pause); pipelined requests wait in the
 * buffer and are parsed when the response ends. A response that ends inside
 * the request's callbacks (a cache hit) lets the parser go straight on to
 * the next pipelined request in the same pass.
 *
 * Timers: a connection waits header_timeout for its first request head and
 * idle_timeout between requests and between body reads. Closing is lingering:
 * after the last byte is written the write side is shut down and the socket
 * is read (and discarded) until EOF or 2 s, so a client's unread pipelined
 * bytes do not turn into an RST that destroys the response.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"
#include "core/log.h"
#include "http/internal.h"

#define CLIENT_READ_SIZE 16384
#define LINGER_MS 2000

struct task {
    http_task_fn fn;
    void *arg;
    struct task *next;
};

struct http_worker {
    struct http_server *srv;
    unsigned id;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    int fd; /* bound socket until the worker takes it */
    uv_async_t async;
    pthread_mutex_t qlock;
    struct task *qhead, *qtail;
    void *ud;
    struct http_conn *conns;
    bool stopping;
    uv_timer_t drain;
    uint64_t drain_deadline;
};

struct http_server {
    struct http_server_conf conf;
    struct http_worker *w;
    unsigned n;
    _Atomic uint64_t nconns;
    bool stopped;
};

enum cstate { C_IDLE, C_HEAD, C_BODY, C_SERVING, C_LINGER };

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    struct http_worker *w;
    struct http_conn *prev, *next;
    llhttp_t parser;
    struct http_msg msg;
    struct http_request req;
    char *rbuf;
    size_t rlen, roff;
    enum cstate state;
    unsigned closes; /* handles still to close */
    unsigned writes; /* uv_write requests in flight */
    size_t queued;
    bool reading, paused, in_parse, ended, close_after, closing, high, first;
    bool watch_eof;    /* while serving: the client closing aborts (long answers) */
    bool dying;        /* closing on the next loop turn (see conn_fail) */
    bool wblocked;     /* pipelined responses fill the queue: parsing waits */
    uint64_t progress; /* uv_now() when written bytes were last seen to move */
    size_t last_wq;    /* libuv's write queue size then */
    char tail;         /* the last byte parsed before the buffer was emptied */
    void *data;
};

struct wreq {
    uv_write_t req;
    struct http_conn *c;
    http_write_done done;
    void *arg;
    size_t bytes;
    char data[]; /* copies of the buffers the caller does not keep */
};

static const llhttp_settings_t *req_settings(void);
static void conn_close(struct http_conn *c);
static void conn_parse(struct http_conn *c);
static void conn_read_start(struct http_conn *c);

/* ------------------------------------------------------------ accessors */

void *http_conn_data(struct http_conn *c)
{
    return c->data;
}
void http_conn_set_data(struct http_conn *c, void *d)
{
    c->data = d;
}
struct http_worker *http_conn_worker(struct http_conn *c)
{
    return c->w;
}
size_t http_conn_queued(const struct http_conn *c)
{
    return c->queued;
}
uv_loop_t *http_worker_loop(struct http_worker *w)
{
    return &w->loop;
}
void *http_worker_data(struct http_worker *w)
{
    return w->ud;
}
unsigned http_worker_id(const struct http_worker *w)
{
    return w->id;
}
bool http_worker_stopping(const struct http_worker *w)
{
    return w->stopping;
}
unsigned http_server_workers(const struct http_server *s)
{
    return s->n;
}

/* --------------------------------------------------------------- timers */

static void on_timer(uv_timer_t *t)
{
    struct http_conn *c = t->data;
    if (c->dying) {
        conn_close(c);
        return;
    }
    /* Responses still being written keep an idle connection open as long as
     * the client takes bytes (idle_timeout without progress ends it). */
    if (c->state == C_IDLE && c->writes > 0) {
        uint64_t idle = c->w->srv->conf.idle_timeout_ms, now = uv_now(&c->w->loop);
        size_t wq = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
        if (wq < c->last_wq) { /* bytes went out since the last look */
            c->last_wq = wq;
            c->progress = now;
        }
        if (now - c->progress < idle) {
            uv_timer_start(&c->timer, on_timer, idle - (now - c->progress), 0);
            return;
        }
    }
    switch (c->state) {
    case C_HEAD:
        http_conn_error(c, 408, "request head not received in time");
        break;
    case C_SERVING:
        break;
    default:
        conn_close(c);
        break;
    }
}

static void arm(struct http_conn *c, uint64_t ms)
{
    if (ms && !c->dying) uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* --------------------------------------------------------------- closing */

static void on_closed(uv_handle_t *h)
{
    struct http_conn *c = h->data;
    if (--c->closes > 0) return;
    msg_free(&c->msg);
    free(c->rbuf);
    atomic_fetch_sub(&c->w->srv->nconns, 1);
    free(c);
}

static void conn_close(struct http_conn *c)
{
    if (c->closing) return;
    c->closing = true;
    if (c->w->srv->conf.handler->on_close) c->w->srv->conf.handler->on_close(c);
    c->data = NULL;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->closes = 2;
    uv_close((uv_handle_t *)&c->timer, on_closed);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Close on the next loop turn. The handler's calls (writes, abort) use this,
 * so its on_close never runs inside one of its own calls. */
static void conn_fail(struct http_conn *c)
{
    if (c->closing || c->dying) return;
    c->dying = true;
    if (c->reading) uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    uv_timer_start(&c->timer, on_timer, 0, 0);
}

void http_conn_abort(struct http_conn *c)
{
    conn_fail(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b);

/* Lingering: what the client still sends is read and dropped. */
static void on_linger_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct http_conn *c = s->data;
    c->roff = c->rlen = 0;
    if (n < 0) conn_close(c);
}

static void on_shutdown(uv_shutdown_t *r, int status)
{
    struct http_conn *c = r->data;
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->state = C_LINGER;
    arm(c, LINGER_MS);
    c->paused = false;
    c->reading = true;
    c->roff = c->rlen = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_linger_read);
}

static void linger(struct http_conn *c)
{
    if (c->closing || c->state == C_LINGER) return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    c->state = C_LINGER;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_fail(c);
}

/* ---------------------------------------------------------------- writes */

static void on_write(uv_write_t *r, int status)
{
    struct wreq *wr = (struct wreq *)r;
    struct http_conn *c = wr->c;
    c->writes--;
    c->queued -= wr->bytes;
    if (wr->done) wr->done(wr->arg);
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    c->progress = uv_now(&c->w->loop);
    if (c->high && c->queued < HTTP_QUEUE_LOW) {
        c->high = false;
        if (c->w->srv->conf.handler->on_drain) c->w->srv->conf.handler->on_drain(c);
        if (c->closing || c->dying) return;
    }
    if (c->wblocked && c->queued < HTTP_QUEUE_LOW) {
        c->wblocked = false;
        if (!c->in_parse) conn_parse(c);
        if (c->closing || c->dying) return;
        if (!c->close_after && !c->paused && !c->wblocked && c->state != C_SERVING)
            conn_read_start(c);
    }
    if (c->writes == 0 && c->close_after) linger(c);
}

int http_conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned n,
                    http_write_done done, void *arg)
{
    return http_conn_writev(c, bufs, n, 0, done, arg);
}

int http_conn_writev(struct http_conn *c, const uv_buf_t *bufs, unsigned n,
                     unsigned copy, http_write_done done, void *arg)
{
    if (c->closing || c->dying || c->state == C_LINGER) {
        if (done) done(arg);
        return -1;
    }
    size_t total = 0;
    for (unsigned i = 0; i < n; i++)
        total += bufs[i].len;
    /* Write what the socket takes now; queue only the rest. */
    int w = uv_try_write((uv_stream_t *)&c->tcp, bufs, n);
    size_t wrote = w > 0 ? (size_t)w : 0;
    if (w < 0 && w != UV_EAGAIN) {
        if (done) done(arg);
        conn_fail(c);
        return -1;
    }
    if (wrote == total) {
        if (done) done(arg);
        return 0;
    }
    uv_buf_t rest[16];
    unsigned k = 0;
    size_t skip = wrote, ncopy = 0;
    for (unsigned i = 0; i < n && k < 16; i++) {
        if (skip >= bufs[i].len) {
            skip -= bufs[i].len;
            continue;
        }
        rest[k] = uv_buf_init(bufs[i].base + skip, (unsigned)(bufs[i].len - skip));
        if (copy & (1u << i)) ncopy += rest[k].len;
        skip = 0;
        k++;
    }
    /* The buffers the caller does not keep (copy) move into the request. */
    struct wreq *wr = malloc(sizeof *wr + ncopy);
    if (wr && ncopy) {
        char *q = wr->data;
        unsigned j = 0;
        skip = wrote;
        for (unsigned i = 0; i < n; i++) {
            if (skip >= bufs[i].len) {
                skip -= bufs[i].len;
                continue;
            }
            skip = 0;
            if (copy & (1u << i)) {
                memcpy(q, rest[j].base, rest[j].len);
                rest[j].base = q;
                q += rest[j].len;
            }
            j++;
        }
    }
    if (wr == NULL) {
        if (done) done(arg);
        conn_fail(c);
        return -1;
    }
    wr->c = c;
    wr->done = done;
    wr->arg = arg;
    wr->bytes = total - wrote;
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, rest, k, on_write) != 0) {
        free(wr);
        if (done) done(arg);
        conn_fail(c);
        return -1;
    }
    if (c->writes == 0) { /* the clock of write progress starts */
        c->progress = uv_now(&c->w->loop);
        c->last_wq = SIZE_MAX;
    }
    c->writes++;
    c->queued += total - wrote;
    if (c->queued >= HTTP_QUEUE_HIGH) c->high = true;
    return 0;
}

int http_conn_write_copy(struct http_conn *c, const void *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    if (c->closing || c->dying || c->state == C_LINGER) return -1;
    int w = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (w == (int)n) return 0;
    size_t off = w > 0 ? (size_t)w : 0;
    if (w < 0 && w != UV_EAGAIN) {
        conn_fail(c);
        return -1;
    }
    char *copy = malloc(n - off);
    if (copy == NULL) {
        conn_fail(c);
        return -1;
    }
    memcpy(copy, (const char *)p + off, n - off);
    b = uv_buf_init(copy, (unsigned)(n - off));
    return http_conn_write(c, &b, 1, free, copy);
}

void http_conn_error(struct http_conn *c, int status, const char *why)
{
    http_conn_error_hdr(c, status, why, NULL);
}

void http_conn_error_hdr(struct http_conn *c, int status, const char *why,
                         const char *hdr)
{
    char buf[1024], extra[512] = "";
    if (c->closing || c->dying) return;
    if (hdr == NULL && c->w->srv->conf.handler->error_headers)
        c->w->srv->conf.handler->error_headers(c, extra, sizeof extra);
    int body = (int)strlen(why) + 1;
    int n =
        snprintf(buf, sizeof buf,
                 "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                 "%sConnection: close\r\n\r\n%s\n",
                 status, http_reason(status), body, hdr ? hdr : extra, why);
    if (n > 0 && (size_t)n < sizeof buf) http_conn_write_copy(c, buf, (size_t)n);
    if (c->closing || c->dying) return;
    c->close_after = true;
    uv_timer_stop(&c->timer);
    if (c->writes == 0)
        linger(c);
    else {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* --------------------------------------------------------- request flow */

void http_conn_end(struct http_conn *c, bool keep_alive)
{
    if (c->closing || c->dying) return;
    if (!keep_alive || c->w->stopping) {
        c->close_after = true;
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
        if (c->writes == 0) linger(c);
        return;
    }
    c->watch_eof = false;
    if (c->state != C_SERVING) {
        /* Ended inside the request's callbacks: on_message_complete goes on
         * with the next request. */
        c->ended = true;
        return;
    }
    c->state = C_IDLE;
    arm(c, c->w->srv->conf.idle_timeout_ms);
    if (!c->in_parse) conn_parse(c);
    if (!c->closing && !c->close_after && !c->paused) conn_read_start(c);
}

void http_conn_watch_close(struct http_conn *c)
{
    if (c->closing || c->dying) return;
    c->watch_eof = true;
    if (c->state == C_SERVING && !c->paused && !c->close_after) conn_read_start(c);
}

void http_conn_pause(struct http_conn *c)
{
    c->paused = true;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

void http_conn_resume(struct http_conn *c)
{
    if (!c->paused || c->closing || c->dying) return;
    c->paused = false;
    if (!c->in_parse) conn_parse(c);
    if (!c->closing && !c->close_after && !c->paused && c->state != C_SERVING)
        conn_read_start(c);
}

static struct http_conn *pconn(llhttp_t *p)
{
    return p->data;
}

static int on_message_begin(llhttp_t *p)
{
    struct http_conn *c = pconn(p);
    msg_reset(&c->msg);
    c->state = C_HEAD;
    c->ended = false;
    /* The first request gets header_timeout from accept; later ones from
     * their first byte. */
    if (!c->first) arm(c, c->w->srv->conf.header_timeout_ms);
    c->first = false;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_url(&pconn(p)->msg, at, n) ? -1 : 0;
}
static int on_field(llhttp_t *p, const char *at, size_t n)
{
    return msg_on_field(&pconn(p)->msg, at, n) ? -1 : 0;
}
static int on_value(llhttp_t *p, const char *at, size_t n)
{
    struct http_conn *c = pconn(p);
    if (msg_folded(c->rbuf, c->rbuf + c->rlen, c->tail, at, n)) {
        c->msg.err = MSG_BAD;
        return -1;
    }
    return msg_on_value(&c->msg, at, n) ? -1 : 0;
}
static int on_value_complete(llhttp_t *p)
{
    return msg_on_value_complete(&pconn(p)->msg);
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_conn *c = pconn(p);
    struct http_request *r = &c->req;
    r->method = (llhttp_method_t)p->method;
    r->method_name = llhttp_method_name(r->method);
    r->major = p->http_major;
    r->minor = p->http_minor;
    r->msg = &c->msg;
    r->chunked = (p->flags & F_CHUNKED) != 0;
    r->content_length = (p->flags & F_CONTENT_LENGTH) ? p->content_length : 0;
    r->body = r->chunked || r->content_length > 0;
    r->keep_alive = llhttp_should_keep_alive(p);
    c->state = C_BODY;
    arm(c, c->w->srv->conf.idle_timeout_ms);
    c->w->srv->conf.handler->on_request(c, r);
    if (c->closing || c->dying || c->close_after) return -1;
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct http_conn *c = pconn(p);
    if (!c->ended && c->w->srv->conf.handler->on_body)
        c->w->srv->conf.handler->on_body(c, at, n);
    return c->closing || c->dying || c->close_after ? -1 : 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_conn *c = pconn(p);
    if (!c->ended && c->w->srv->conf.handler->on_body_end)
        c->w->srv->conf.handler->on_body_end(c);
    if (c->closing || c->dying || c->close_after) return -1;
    if (c->ended) {
        c->ended = false;
        c->state = C_IDLE;
        arm(c, c->w->srv->conf.idle_timeout_ms);
        if (c->queued >= HTTP_QUEUE_HIGH) { /* pipelined hits: wait for the client */
            c->wblocked = true;
            return HPE_PAUSED;
        }
        return 0;
    }
    c->state = C_SERVING;
    uv_timer_stop(&c->timer);
    return HPE_PAUSED;
}

static llhttp_settings_t settings;
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;

static void settings_init(void)
{
    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_field;
    settings.on_header_value = on_value;
    settings.on_header_value_complete = on_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
}

static const llhttp_settings_t *req_settings(void)
{
    pthread_once(&settings_once, settings_init);
    return &settings;
}

static void conn_parse(struct http_conn *c)
{
    c->in_parse = true;
    while (c->roff < c->rlen && !c->closing && !c->dying && !c->close_after &&
           !c->paused && !c->wblocked && c->state != C_SERVING &&
           c->state != C_LINGER) {
        const char *start = c->rbuf + c->roff;
        enum llhttp_errno e = llhttp_execute(&c->parser, start, c->rlen - c->roff);
        if (e == HPE_OK) {
            c->roff = c->rlen;
            break;
        }
        if (e == HPE_PAUSED) {
            c->roff = (size_t)(llhttp_get_error_pos(&c->parser) - c->rbuf);
            llhttp_resume(&c->parser);
            continue;
        }
        if (c->closing || c->dying || c->close_after) break; /* the handler answered */
        if (c->msg.err == MSG_TOO_BIG)
            http_conn_error(c, 431, "request header fields too large");
        else if (c->msg.err == MSG_TOO_MANY)
            http_conn_error(c, 431, "too many request header fields");
        else if (c->msg.err == MSG_BAD)
            http_conn_error(c, 400, "obsolete line folding in a header");
        else if (e == HPE_INVALID_METHOD || e == HPE_INVALID_URL ||
                 e == HPE_INVALID_VERSION || e == HPE_INVALID_HEADER_TOKEN ||
                 e == HPE_INVALID_CONTENT_LENGTH ||
                 e == HPE_UNEXPECTED_CONTENT_LENGTH || e == HPE_INVALID_CHUNK_SIZE ||
                 e == HPE_INVALID_TRANSFER_ENCODING || e == HPE_INVALID_CONSTANT ||
                 e == HPE_LF_EXPECTED || e == HPE_STRICT || e == HPE_CR_EXPECTED ||
                 e == HPE_CLOSED_CONNECTION)
            http_conn_error(c, 400, llhttp_get_error_reason(&c->parser));
        else
            http_conn_error(c, 400, "malformed request");
        break;
    }
    if (c->roff == c->rlen) {
        if (c->rlen) c->tail = c->rbuf[c->rlen - 1];
        c->roff = c->rlen = 0;
    }
    c->in_parse = false;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    struct http_conn *c = h->data;
    if (c->rbuf == NULL) c->rbuf = malloc(CLIENT_READ_SIZE);
    if (c->rbuf == NULL) {
        *b = uv_buf_init(NULL, 0);
        return;
    }
    if (c->roff > 0 && c->roff == c->rlen) {
        c->tail = c->rbuf[c->rlen - 1];
        c->roff = c->rlen = 0;
    }
    if (c->rlen == CLIENT_READ_SIZE && c->roff > 0) {
        c->tail = c->rbuf[c->roff - 1];
        memmove(c->rbuf, c->rbuf + c->roff, c->rlen - c->roff);
        c->rlen -= c->roff;
        c->roff = 0;
    }
    *b = uv_buf_init(c->rbuf + c->rlen, (unsigned)(CLIENT_READ_SIZE - c->rlen));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct http_conn *c = s->data;
    if (n < 0) {
        if (c->watch_eof && c->state == C_SERVING) { /* the client gave up */
            conn_close(c);
            return;
        }
        /* EOF: a half-closed client still gets the response it asked for. */
        if (n == UV_EOF && (c->state == C_SERVING || c->writes > 0)) {
            uv_read_stop(s);
            c->reading = false;
            c->close_after = true;
            return;
        }
        conn_close(c);
        return;
    }
    if (n == 0) return;
    c->rlen += (size_t)n;
    if (c->state == C_BODY) arm(c, c->w->srv->conf.idle_timeout_ms);
    conn_parse(c);
    if (c->closing) return;
    /* A full buffer that the parser cannot consume (a response in progress
     * with pipelined requests behind it): stop reading until it ends. */
    if ((c->state == C_SERVING && !c->watch_eof) || c->wblocked || c->dying ||
        (c->rlen == CLIENT_READ_SIZE && c->roff == 0)) {
        uv_read_stop(s);
        c->reading = false;
    }
}

static void conn_read_start(struct http_conn *c)
{
    if (c->reading || c->closing || c->dying) return;
    c->reading = true;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ----------------------------------------------------------------- accept */

static void on_connection(uv_stream_t *l, int status)
{
    struct http_worker *w = l->data;
    struct http_server *srv = w->srv;
    if (status < 0) return;
    struct http_conn *c = calloc(1, sizeof *c);
    if (c == NULL) return;
    if (msg_init(&c->msg, srv->conf.max_header_size, srv->conf.max_headers) != 0) {
        free(c);
        return;
    }
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    atomic_fetch_add(&srv->nconns, 1);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (atomic_load(&srv->nconns) > srv->conf.max_connections) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    int len = sizeof c->req.peer;
    uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->req.peer, &len);
    llhttp_init(&c->parser, HTTP_REQUEST, req_settings());
    c->parser.data = c;
    c->state = C_IDLE;
    c->first = true;
    arm(c, srv->conf.header_timeout_ms);
    conn_read_start(c);
}

/* ---------------------------------------------------------------- workers */

static void run_tasks(uv_async_t *a)
{
    struct http_worker *w = a->data;
    pthread_mutex_lock(&w->qlock);
    struct task *t = w->qhead;
    w->qhead = w->qtail = NULL;
    pthread_mutex_unlock(&w->qlock);
    while (t) {
        struct task *next = t->next;
        t->fn(w, t->arg);
        free(t);
        t = next;
    }
}

void http_worker_post(struct http_worker *w, http_task_fn fn, void *arg)
{
    struct task *t = malloc(sizeof *t);
    if (t == NULL) abort(); /* a lost wakeup would hang a request */
    t->fn = fn;
    t->arg = arg;
    t->next = NULL;
    pthread_mutex_lock(&w->qlock);
    if (w->qtail)
        w->qtail->next = t;
    else
        w->qhead = t;
    w->qtail = t;
    pthread_mutex_unlock(&w->qlock);
    uv_async_send(&w->async);
}

static void close_cb_noop(uv_handle_t *h)
{
    (void)h;
}

/* Draining: every 50 ms, close the connections that finished their request;
 * when none is left, or the drain timeout passed, close everything so the
 * loop ends. */
static void on_drain_tick(uv_timer_t *t)
{
    struct http_worker *w = t->data;
    bool late = uv_now(&w->loop) >= w->drain_deadline;
    struct http_conn *c = w->conns;
    while (c) {
        struct http_conn *next = c->next;
        if (late || (c->state == C_IDLE && c->writes == 0) || c->state == C_LINGER)
            conn_close(c);
        c = next;
    }
    if (w->conns != NULL) return;
    uv_close((uv_handle_t *)&w->drain, close_cb_noop);
    uv_close((uv_handle_t *)&w->async, close_cb_noop);
    if (w->srv->conf.handler->worker_fini) w->srv->conf.handler->worker_fini(w, w->ud);
    w->ud = NULL;
}

static void stop_task(struct http_worker *w, void *arg)
{
    (void)arg;
    if (w->stopping) return;
    w->stopping = true;
    uv_close((uv_handle_t *)&w->listener, close_cb_noop);
    w->drain_deadline = uv_now(&w->loop) + w->srv->conf.drain_timeout_ms;
    uv_timer_init(&w->loop, &w->drain);
    w->drain.data = w;
    uv_timer_start(&w->drain, on_drain_tick, 0, 50);
}

static void worker_main(void *arg)
{
    struct http_worker *w = arg;
    const struct http_server_conf *conf = &w->srv->conf;
    if (conf->handler->worker_init) w->ud = conf->handler->worker_init(w, conf->ud);
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    if (uv_tcp_open(&w->listener, w->fd) != 0 ||
        uv_listen((uv_stream_t *)&w->listener, 4096, on_connection) != 0) {
        slog(SLOG_ERROR, "msg=\"worker cannot listen\" worker=%u", w->id);
        abort();
    }
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Close what the handler left (upstream pools close in worker_fini). */
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

static int bind_socket(const struct sockaddr_storage *ss, bool reuseport, char **err,
                       const char *listen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) goto fail;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        goto fail;
    socklen_t len = ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
    if (bind(fd, (const struct sockaddr *)ss, len) != 0) goto fail;
    return fd;
fail:
    if (err && asprintf(err, "listen %s: %s", listen, strerror(errno)) < 0) *err = NULL;
    if (fd >= 0) close(fd);
    return -1;
}

struct http_server *http_server_start(const struct http_server_conf *conf, char **err)
{
    struct sockaddr_storage ss;
    *err = NULL;
    if (http_parse_listen(conf->listen, &ss) != 0) {
        if (asprintf(err, "listen %s: not an address:port", conf->listen) < 0)
            *err = NULL;
        return NULL;
    }
    /* Probe without SO_REUSEPORT first: another process listening with
     * SO_REUSEPORT on the port would otherwise silently share it. */
    int probe = bind_socket(&ss, false, err, conf->listen);
    if (probe < 0) return NULL;
    close(probe);

    struct http_server *s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    s->conf = *conf;
    s->n = conf->workers ? conf->workers : 1;
    s->w = calloc(s->n, sizeof *s->w);
    if (s->w == NULL) {
        free(s);
        return NULL;
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct http_worker *w = &s->w[i];
        w->srv = s;
        w->id = i;
        w->fd = bind_socket(&ss, true, err, conf->listen);
        if (w->fd < 0) {
            for (unsigned j = 0; j < i; j++)
                close(s->w[j].fd);
            free(s->w);
            free(s);
            return NULL;
        }
    }
    for (unsigned i = 0; i < s->n; i++) {
        struct http_worker *w = &s->w[i];
        uv_loop_init(&w->loop);
        pthread_mutex_init(&w->qlock, NULL);
        uv_async_init(&w->loop, &w->async, run_tasks);
        w->async.data = w;
        uv_thread_create(&w->thread, worker_main, w);
    }
    return s;
}

void http_server_stop(struct http_server *s)
{
    if (s == NULL || s->stopped) return;
    s->stopped = true;
    for (unsigned i = 0; i < s->n; i++)
        http_worker_post(&s->w[i], stop_task, NULL);
    for (unsigned i = 0; i < s->n; i++)
        uv_thread_join(&s->w[i].thread);
}

void http_server_free(struct http_server *s)
{
    if (s == NULL) return;
    http_server_stop(s);
    for (unsigned i = 0; i < s->n; i++) {
        struct http_worker *w = &s->w[i];
        uv_loop_close(&w->loop);
        pthread_mutex_destroy(&w->qlock);
        struct task *t = w->qhead;
        while (t) {
            struct task *next = t->next;
            free(t);
            t = next;
        }
    }
    free(s->w);
    free(s);
}
