/*  edge_response: every HTTP answer leaves through here, headers and body in one mg_write
    (separate writes cost ~40 ms per response to Nagle and delayed ACKs). */
#ifndef EDGE_RESPONSE_H
#define EDGE_RESPONSE_H

#include "mc_msgpack.h"

#include <civetweb.h>

typedef struct {
    struct mg_connection *conn;     //  where to answer
    char request_id[80];            //  X-Request-Id
    int status;                     //  what was answered, for metrics
    bool close;                     //  send Connection: close
    const char *origin;             //  CORS origin to allow on this response, or NULL
    bool head;                      //  HEAD: the headers GET would get, no body
    msgpack_sbuffer *sink;          //  when set, the response is appended here instead of sent on conn
} edge_reply_t;

//  Sends status with body (may be NULL/0), a Date and the X-Request-Id. extra_headers: complete
//  "Name: value\r\n" lines or NULL.
void edge_respond(edge_reply_t *r, int status, const char *content_type, const char *extra_headers,
                  const char *body, size_t len);

//  Sends an RFC 9457 problem. errors: msgpack array of {field, message} or NULL.
void edge_problem(edge_reply_t *r, int status, const char *code, const char *detail,
                  const msgpack_object *errors, const char *extra_headers);

//  A problem with extension members (RFC 9457 §3.2): members is a map, e.g. {payment_id}; the
//  standard members cannot be overridden by it.
void edge_problem_ext(edge_reply_t *r, int status, const char *code, const char *detail,
                      const msgpack_object *errors, const msgpack_object *members, const char *extra_headers);

const char *edge_reason(int status);

//  Makes civetweb close the connection after this response (framing errors, refused bodies).
void edge_force_close(struct mg_connection *conn);

#endif
