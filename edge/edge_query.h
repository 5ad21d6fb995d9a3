/*  edge_query: a GET's query string as the message body its route's message expects. */
#ifndef EDGE_QUERY_H
#define EDGE_QUERY_H

#include "mc_schema.h"

//  A query string longer than this, or with more parameters, is a validation error.
#define EDGE_QUERY_MAX 4096
#define EDGE_QUERY_PARAMS 32

//  Packs qs (NULL: none) into out as a msgpack map, each value typed by def's field of that name
//  (integer, boolean, else string), %XX and '+' decoded. Every value that does not parse as its
//  type, an internal member (the edge's own), a malformed escape, or a query past the limits
//  above is reported in errs.
void edge_query_to_body(const char *qs, const mc_msgdef_t *def, msgpack_sbuffer *out, mc_errors_t *errs);

#endif
