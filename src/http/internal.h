/*
 * internal.h -- what the files of src/http share and nobody else uses.
 */
#ifndef STRATA_HTTP_INTERNAL_H
#define STRATA_HTTP_INTERNAL_H

#include "http/http.h"

int msg_init(struct http_msg *m, size_t cap, size_t maxh);
void msg_reset(struct http_msg *m);
void msg_free(struct http_msg *m);
/* llhttp callbacks' bodies: -1 when a limit is passed (m->err says which). */
int msg_on_url(struct http_msg *m, const char *p, size_t n);
int msg_on_field(struct http_msg *m, const char *p, size_t n);
int msg_on_value(struct http_msg *m, const char *p, size_t n);
int msg_on_value_complete(struct http_msg *m);
/* Obs-fold (a header line that starts with SP or HT): is the value span
 * [at, at + n) of the read buffer [lo, hi) preceded or followed by a line
 * break and whitespace? `tail` is the byte parsed just before `lo` (the end
 * of the previous read). RFC 9112 5.2 lets a server reject it; strata does. */
bool msg_folded(const char *lo, const char *hi, char tail, const char *at, size_t n);

/* Reads are done into buffers of this size. */
#define HTTP_READ_SIZE 65536

#endif
