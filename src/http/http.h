/*
 * http.h -- HTTP/1.1 on libuv + llhttp (src/http): worker threads with their
 * own event loops and SO_REUSEPORT listeners, client connections (keep-alive,
 * pipelining, limits, timeouts) and an origin client with a keep-alive pool.
 *
 * This layer knows nothing of caching. A handler (the proxy, the admin API)
 * gets each request once its head is complete, its body as it arrives, and
 * answers with http_conn_write() / http_conn_end(). Everything about one
 * connection happens on its worker's loop thread; the only calls that may
 * come from another thread are http_worker_post() and http_server_stop().
 */
#ifndef STRATA_HTTP_H
#define STRATA_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#include "llhttp.h"

/* Backpressure: a source stops above HIGH queued bytes, restarts below LOW. */
#define HTTP_QUEUE_HIGH (1u << 20)
#define HTTP_QUEUE_LOW (256u << 10)

/* ---------------------------------------------------------------- messages */

/* A header as received: name and value point into the message's arena. */
struct http_header {
    const char *name;
    const char *value;
    uint32_t nlen, vlen;
};

/* The head of a request or response, collected from llhttp's callbacks into
 * one arena of at most `cap` bytes (server.max_header_size). */
struct http_msg {
    char *arena;
    size_t len, cap;
    struct http_header *h;
    size_t nh, maxh; /* maxh: server.max_headers */
    const char *url; /* request target (requests) */
    size_t url_len;
    enum { MSG_OK, MSG_TOO_BIG, MSG_TOO_MANY, MSG_BAD } err;
    bool in_value; /* last callback was a value (a new field starts a header) */
};

/* Case-insensitive lookup; returns the first match or NULL. `*count` (may be
 * NULL) gets how many headers have that name. */
const struct http_header *http_find(const struct http_msg *m, const char *name,
                                    size_t *count);
bool http_name_is(const struct http_header *h, const char *name);
/* Does the comma-separated list value `v` contain `token` (case-insensitive)? */
bool http_list_has(const char *v, size_t vlen, const char *token);
/* Is header `h` named in the Connection header `conn` (NULL: no)? */
bool http_named_in(const struct http_header *conn, const struct http_header *h);
/* An X-Request-Id strata keeps from a client: 1-36 bytes of [A-Za-z0-9._-]
 * (a UUID fits; nothing that could break a log line or a header). */
#define HTTP_REQUEST_ID_MAX 36
bool http_request_id_ok(const char *v, size_t n);
/* Is the Content-Type value exactly `type` (case-insensitive), optionally
 * followed by parameters (";...")? */
bool http_media_type_is(const char *v, size_t n, const char *type);
/* Hop-by-hop by name (RFC 9110 section 7.6.1). */
bool http_hop_by_hop(const char *name, size_t nlen);

const char *http_reason(int status);

/* ----------------------------------------------------------------- server */

struct http_server;
struct http_worker;
struct http_conn;

struct http_request {
    llhttp_method_t method;
    const char *method_name;
    int major, minor;
    struct http_msg *msg; /* target and headers */
    bool body;            /* the request has a body (length > 0 or chunked) */
    bool chunked;
    uint64_t content_length; /* when !chunked */
    bool keep_alive;         /* llhttp_should_keep_alive() */
    struct sockaddr_storage peer;
};

struct http_handler {
    /* Per-worker state: called on the worker's thread before it accepts. */
    void *(*worker_init)(struct http_worker *w, void *ud);
    void (*worker_fini)(struct http_worker *w, void *wud);
    /* The head of a request is complete. */
    void (*on_request)(struct http_conn *c, struct http_request *req);
    /* Request body bytes (valid only during the call), then its end. */
    void (*on_body)(struct http_conn *c, const char *p, size_t n);
    void (*on_body_end)(struct http_conn *c);
    /* The client's write queue fell below the low watermark. */
    void (*on_drain)(struct http_conn *c);
    /* The connection is going away (the client closed, an error, a
     * timeout): the handler drops every pointer to it. */
    void (*on_close)(struct http_conn *c);
    /* Optional: header lines ("Name: value\r\n"...) for the error responses
     * this layer writes itself (400 malformed, 408, 431...): at most `cap`
     * bytes, NUL-terminated. */
    void (*error_headers)(struct http_conn *c, char *buf, size_t cap);
};

struct http_server_conf {
    const char *listen; /* "127.0.0.1:8080", "[::1]:8080" */
    unsigned workers;   /* >= 1 */
    uint64_t max_connections;
    uint64_t max_header_size, max_headers;
    uint64_t header_timeout_ms, idle_timeout_ms;
    uint64_t drain_timeout_ms; /* on stop: how long in-flight requests get */
    const struct http_handler *handler;
    void *ud;
};

/* Bind (every worker its own SO_REUSEPORT socket) and start the worker
 * threads. Returns NULL with *err set ("listen 127.0.0.1:8080: Address
 * already in use"; malloc'd). */
struct http_server *http_server_start(const struct http_server_conf *conf, char **err);
/* Stop accepting, let in-flight requests finish (bounded by
 * drain_timeout_ms), close everything, join the workers. Thread-safe. */
void http_server_stop(struct http_server *s);
void http_server_free(struct http_server *s);
unsigned http_server_workers(const struct http_server *s);

/* Run `fn(w, arg)` on worker `w`'s loop thread, soon. Thread-safe. */
typedef void (*http_task_fn)(struct http_worker *w, void *arg);
void http_worker_post(struct http_worker *w, http_task_fn fn, void *arg);
uv_loop_t *http_worker_loop(struct http_worker *w);
void *http_worker_data(struct http_worker *w); /* worker_init's result */
unsigned http_worker_id(const struct http_worker *w);
bool http_worker_stopping(const struct http_worker *w);

/* Connection: the handler's per-request pointer, its worker. */
void *http_conn_data(struct http_conn *c);
void http_conn_set_data(struct http_conn *c, void *d);
struct http_worker *http_conn_worker(struct http_conn *c);

/* Queue bytes for the client. `done(arg)` runs once libuv no longer needs the
 * buffers (written, or the connection failed), so callers may point into
 * shared storage held by `arg`. done may be NULL when the buffers are static
 * or copied (`copy` true copies them first). Returns 0 or -1 (connection
 * closing; done has run). */
typedef void (*http_write_done)(void *arg);
int http_conn_write(struct http_conn *c, const uv_buf_t *bufs, unsigned n,
                    http_write_done done, void *arg);
int http_conn_write_copy(struct http_conn *c, const void *p, size_t n);
/* http_conn_write where buffer i is copied when it must wait (bit i of
 * `copy`): those may live on the caller's stack; the others must stay valid
 * until `done`. At most 16 buffers. */
int http_conn_writev(struct http_conn *c, const uv_buf_t *bufs, unsigned n,
                     unsigned copy, http_write_done done, void *arg);
size_t http_conn_queued(const struct http_conn *c); /* bytes not yet written */
/* The response is complete (all of it queued). keep_alive false closes the
 * connection once the queue is written; true reads the next request. */
void http_conn_end(struct http_conn *c, bool keep_alive);
/* For an answer that takes long (the admin's warm): from now until the
 * response ends, the client closing its side closes the connection (and
 * on_close runs) instead of being taken for a half-close that still wants
 * the answer. Pipelined bytes are kept for after the response. */
void http_conn_watch_close(struct http_conn *c);
/* Stop / restart reading the request body (backpressure towards the origin). */
void http_conn_pause(struct http_conn *c);
void http_conn_resume(struct http_conn *c);
/* Close now, dropping what is queued (an aborted response). */
void http_conn_abort(struct http_conn *c);
/* A short complete response ("400 Bad Request" and so on) and close.
 * `_hdr` adds header lines (each ending in CRLF); with NULL (and in
 * http_conn_error) the handler's error_headers give them. */
void http_conn_error(struct http_conn *c, int status, const char *why);
void http_conn_error_hdr(struct http_conn *c, int status, const char *why,
                         const char *hdr);

/* --------------------------------------------------------------- upstream */

/* What went wrong talking to the origin. */
enum up_error {
    UP_CONNECT, /* could not connect (refused, unreachable, connect timeout) */
    UP_TIMEOUT, /* no response (or no progress) within upstream_timeout */
    UP_BROKEN,  /* closed or malformed mid-response */
};

struct up_callbacks {
    /* The response head. Return 0 to go on, -1 to abandon (the upstream
     * connection is closed; no further callback). */
    int (*on_head)(void *ud, int status, struct http_msg *m, bool chunked,
                   int64_t content_length);
    void (*on_body)(void *ud, const char *p, size_t n);
    /* Complete; the connection went back to the pool (or was closed). */
    void (*on_done)(void *ud);
    /* Failed; no further callback. `before_head`: nothing was received. */
    void (*on_error)(void *ud, enum up_error e, bool before_head);
};

struct up_conf {
    struct sockaddr_storage addr; /* the origin */
    uint64_t connect_timeout_ms, timeout_ms;
    uint64_t keepalive; /* idle connections kept per worker */
    uint64_t max_header_size, max_headers;
};

struct up_pool;
struct up_req;

struct up_pool *up_pool_new(uv_loop_t *loop, const struct up_conf *conf);
void up_pool_free(struct up_pool *p); /* closes idle connections */
size_t up_pool_idle(const struct up_pool *p);

/* Send a request: `head` is the complete request head (malloc'd; the request
 * takes it). `head_only` tells the parser the response has no body (HEAD).
 * `retry`: an idempotent request is sent again once if a reused connection
 * fails before any response byte. `body`: more bytes follow through
 * up_req_body() and up_req_body_end(). */
struct up_req *up_send(struct up_pool *p, char *head, size_t len, bool head_only,
                       bool retry, bool body, const struct up_callbacks *cb, void *ud);
/* Request body bytes (copied); returns the bytes queued towards the origin so
 * the caller can pause its source. */
size_t up_req_body(struct up_req *r, const char *p, size_t n);
void up_req_body_end(struct up_req *r);
/* Backpressure from the client: stop / restart reading the response. */
void up_req_pause(struct up_req *r);
void up_req_resume(struct up_req *r);
/* The caller no longer wants the response: no more callbacks. The connection
 * is closed (its remaining bytes are unknown). */
void up_req_cancel(struct up_req *r);
/* Response body bytes handed to on_body point into the connection's read
 * buffer. up_buf_ref() (during on_body) takes a reference to it so the bytes
 * can be written without a copy; up_buf_unref() (an http_write_done) drops
 * it. Returns NULL when there is no buffer (then copy). */
void *up_buf_ref(struct up_req *r);
void up_buf_unref(void *buf);
/* Called by the pool when the request's body writes drained. */
void up_req_on_body_drain(struct up_req *r, void (*fn)(void *ud));

/* Parse "http://host:port[/]" (numeric host or "localhost"). */
int http_parse_upstream(const char *url, struct sockaddr_storage *out, char *hostport,
                        size_t hplen);
int http_parse_listen(const char *listen, struct sockaddr_storage *out);

#endif /* STRATA_HTTP_H */
