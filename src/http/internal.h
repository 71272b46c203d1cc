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

/* Reads are done into buffers of this size. */
#define HTTP_READ_SIZE 65536

#endif
