/*  edge_request: one HTTP request on its way to the actors and back; shared by the generic
    path (edge_http) and the flows that handle secrets (edge_identity, edge_card). */
#ifndef EDGE_REQUEST_H
#define EDGE_REQUEST_H

#include "edge_auth.h"
#include "edge_client.h"
#include "edge_response.h"
#include "mc_envelope.h"
#include "mc_schema.h"

typedef struct {
    edge_reply_t *r;                    //  where the answer goes
    const struct mg_request_info *ri;   //  the HTTP request
    const mc_route_t *route;            //  what it matched
    mc_str_t param;                     //  the {param} of the path, if any
    uint64_t received_ms;               //  the clock every message of this request carries
    edge_identity_t who;                //  the verified caller; who.sub is empty when anonymous
    int timeout_ms;                     //  how long to wait for an actor
} edge_req_t;

//  Sends a message of type (in the route's service) with body, keyed by the route's key rule,
//  and waits for the answer. The caller destroys *reply.
edge_call_t edge_request_call(edge_req_t *q, const char *type, mc_str_t body, zframe_t **reply);

//  Encodes the request envelope edge_request_call sends (the caller, trace, deadline, If-Match,
//  Idempotency-Key of q) for a message of type with body, message id and routing key.
void edge_request_encode(edge_req_t *q, const char *type, mc_str_t body, mc_str_t id, mc_str_t key,
                         msgpack_sbuffer *env);

//  Turns a call's outcome into the HTTP answer: the actor's reply, 503 or 504.
void edge_request_answer(edge_req_t *q, edge_call_t outcome, zframe_t *reply);

//  Sends the route's own message with body and answers with what comes back (a gathered list:
//  from every shard, merged; edge_gather.h).
void edge_request_forward(edge_req_t *q, mc_str_t body);

//  422 listing errs.
void edge_request_invalid(edge_reply_t *r, const mc_errors_t *errs);

//  422 validation_failed with detail, listing errs.
void edge_request_refuse(edge_reply_t *r, const char *detail, const mc_errors_t *errs);

#endif
