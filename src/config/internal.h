/*
 * internal.h -- what the files of src/config share and nobody else uses.
 *
 *   values.c    the grammars of single values (durations, sizes, addresses,
 *               CIDRs, header names, tags...): pure functions of a string
 *   document.c  a YAML file or buffer as a checked libyaml document, the
 *               "PATH:LINE: message" errors, duplicate keys, ${ENV}
 *   config.c    the tables of keys.h, the walk that reads a document through
 *               them, the checks across keys and sections, the public API
 *
 * The rest of strata includes config.h only.
 */
#ifndef STRATA_CONFIG_INTERNAL_H
#define STRATA_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config.h"

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* Longest excerpt of a user's value or key quoted in a message. */
#define QUOTE 64

/* ---- value grammars (values.c) ----------------------------------------------
 * Each returns 0, or -1 with a static message in *why; the output is written
 * only on success. */

/* A whole number >= 0 with no unit. */
int config_parse_count(const char *s, uint64_t *v, const char **why);
/* A whole number, possibly negative, within int. */
int config_parse_level(const char *s, int *v, const char **why);
/* true or false (only these spellings). */
int config_parse_bool(const char *s, bool *v, const char **why);
/* auto (-> 0) or 1..CONFIG_MAX_WORKERS. */
int config_parse_workers(const char *s, unsigned *v, const char **why);
/* HOST:PORT or [IPV6]:PORT; port 0..65535 (0: any free port). */
int config_check_listen(const char *s, const char **why);
/* http://HOST:PORT with an optional trailing "/" and nothing else. */
int config_check_upstream(const char *s, const char **why);
/* ADDR/PREFIX or a bare ADDR (IPv4 or IPv6); host bits are cleared. */
int config_parse_cidr(const char *s, struct config_cidr *out, const char **why);
/* A header or cookie name: 1..256 of RFC 9110's tchar. */
int config_check_token(const char *s, const char **why);
/* A tag: 1..256 bytes of printable ASCII without space , " \ */
int config_check_tag(const char *s, const char **why);
/* Text without control characters (it may end up in a header or a log). */
int config_check_text(const char *s, const char **why);
/* A header value strata writes: printable ASCII, space and tab. */
int config_check_header_value(const char *s, const char **why);
/* header:NAME, cookie:NAME or jwt:CLAIM; *name points into s. */
int config_parse_user_from(const char *s, enum config_user_from *from,
                           const char **name, const char **why);
/* A cache name: 1..64 of A-Z a-z 0-9 _ . - */
bool config_cache_name_ok(const char *s);

#define CONFIG_MAX_WORKERS 1024

/* ---- documents (document.c) ----------------------------------------------- */

/* One load: the source, the document and the first error. */
struct ld {
    const char *path; /* as given; the PATH of messages */
    yaml_document_t *doc;
    char *err;     /* the first error, "PATH:LINE: ..." */
    bool failed;   /* an error happened (err is NULL if there was no memory for it) */
    size_t budget; /* bytes values may still take (aliases and ${ENV} copy) */
};

/* What a file may expand to in values: aliases copy, so a small file could
 * otherwise describe gigabytes. No real configuration comes near. */
#define CONFIG_BUDGET (64u << 20)

/* Record an error at `line` (0: about the file as a whole). Only the first
 * one is kept: later ones are consequences. Returns -1. */
int config_fail(struct ld *ld, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int config_oom(struct ld *ld);

/* Take `n` bytes from the budget; -1 (reported) when it is spent. */
int config_charge(struct ld *ld, size_t n, unsigned line);

/* Parse `len` bytes of YAML into `doc` (one document; a second non-empty one
 * is an error). Returns 0, or -1 (reported; `doc` is then not initialised). */
int config_doc_parse(struct ld *ld, const char *buf, size_t len, yaml_document_t *doc);

/* Read the file ld->path whole (at most 16MB). Returns 0 or -1 (reported). */
int config_slurp(struct ld *ld, char **bufp, size_t *lenp);

static inline yaml_node_t *config_node(const struct ld *ld, int id)
{
    return yaml_document_get_node(ld->doc, id);
}

static inline unsigned config_line(const yaml_node_t *n)
{
    return (unsigned)n->start_mark.line + 1;
}

static inline size_t config_npairs(const yaml_node_t *map)
{
    return (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static inline size_t config_nitems(const yaml_node_t *seq)
{
    return (size_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

/* YAML's null: an empty or ~/null plain scalar ("ttl:" with no value). */
bool config_isnull(const yaml_node_t *n);
/* "a mapping", "a list", "a string", "no value": for messages. */
const char *config_kind(const yaml_node_t *n);
/* A scalar's text, or NULL (reported) when it holds a NUL byte. */
const char *config_scalar(struct ld *ld, const yaml_node_t *n, const char *where);
/* The text of a mapping key, or NULL (reported) when it is not a scalar. */
const char *config_keytext(struct ld *ld, const yaml_node_t *k, const char *where);
/* Report the first key of `map` that repeats an earlier one; `what` names
 * the keys ("key", "cache", "section"). Returns 0 or -1. */
int config_dups(struct ld *ld, const yaml_node_t *map, const char *what);
/* `s` with ${NAME} expanded, charged to the budget; malloc'd, or NULL
 * (reported). */
char *config_expand(struct ld *ld, const char *s, unsigned line, const char *where);

/* ---- loading from memory (config.c) -----------------------------------------
 * config_load_caches(), config_load() and config_load_admin() after the file
 * was read: `name` is the PATH of messages and what out->path gets,
 * where there is one (config_load_buf: NULL gives every default and ignores
 * buf). For the fuzz
 * target and tests. */
int config_load_caches_buf(const char *name, const char *buf, size_t len,
                           struct config_caches *out, char **errmsg);
int config_load_buf(const char *name, const char *buf, size_t len, struct config *out,
                    char **errmsg);
int config_load_admin_buf(const char *name, const char *buf, size_t len,
                          struct config_admin *out, char **errmsg);

#endif /* STRATA_CONFIG_INTERNAL_H */
