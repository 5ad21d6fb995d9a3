/*  edge_framing: what a request's headers say about its body, decided from the parsed headers
    alone: the request-smuggling defences (RFC 9112 §6) and the media types a route accepts.
    Pure functions of their arguments, so tests/fuzz/fuzz_framing.c can drive them directly. */
#ifndef EDGE_FRAMING_H
#define EDGE_FRAMING_H

#include <civetweb.h>
#include <stdbool.h>

//  The first value of the header called name (case-insensitive), or NULL; *found gets how many
//  times it appears.
const char *edge_framing_header(const struct mg_header *headers, int count, const char *name, int *found);

//  NULL when the headers frame a body unambiguously: at most one Content-Length, all digits
//  (at most 18 of them), never beside Transfer-Encoding, and no Transfer-Encoding but a single
//  "chunked". Otherwise the reason, for a 400 that closes the connection.
const char *edge_framing_error(const struct mg_header *headers, int count);

//  True when the request has no body: Content-Length 0, or neither Content-Length nor
//  Transfer-Encoding (RFC 9112 §6.3). content_length is civetweb's (-1 when absent);
//  transfer_encoding is the header's value or NULL.
bool edge_framing_bodiless(long long content_length, const char *transfer_encoding);

//  True when content_type (NULL when absent) names application/json, or with merge_patch also
//  application/merge-patch+json; parameters after ';' are ignored, case is not significant.
bool edge_framing_json_media(const char *content_type, bool merge_patch);

#endif
