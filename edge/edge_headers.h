/*  edge_headers: the request line and header limits the edge adds to civetweb's parser.

    civetweb 1.15 keeps at most 64 header fields and stops parsing, silently, at the first line
    that does not start like a field name (a continuation line or anything else), so a later
    Transfer-Encoding or Authorization would never be seen; it accepts any target its buffer
    holds, and HTTP/1.1 without Host. These checks turn each of those into an answer. */
#ifndef EDGE_HEADERS_H
#define EDGE_HEADERS_H

#include <stdbool.h>

#include <civetweb.h>

//  Limits (CONTRACT 9): one field line (name and value) and the request target.
#define EDGE_HEADER_MAX 8192
#define EDGE_TARGET_MAX 8192
//  More fields than this is 431; civetweb's MG_MAX_HEADERS leaves no way to see past them.
#define EDGE_HEADERS_MAX (MG_MAX_HEADERS - 1)

typedef struct {
    int status;             //  400, 414, 431 or 501
    const char *code;       //  the problem's code
    const char *detail;     //  the problem's detail
    const char *kind;       //  what edge_metrics_rejected counts it as
} edge_headers_problem_t;

//  Checks a request civetweb has parsed. Returns 0 when it may be served, or -1 with *problem
//  saying why not: 501 for a method the edge does not implement, 414 for a target over
//  EDGE_TARGET_MAX, 431 for more than EDGE_HEADERS_MAX fields, a field over EDGE_HEADER_MAX or a
//  continuation line, 400 for a header line civetweb could not parse or HTTP/1.1 without exactly
//  one Host. Call before anything rewrites ri's headers (edge_force_close does).
int edge_headers_check(const struct mg_request_info *ri, edge_headers_problem_t *problem);

//  True when method is one the edge implements (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS).
bool edge_headers_method_implemented(const char *method);

//  True when s is an RFC 9110 token (a method name, say) of at most 32 characters.
bool edge_headers_token(const char *s);

#endif
