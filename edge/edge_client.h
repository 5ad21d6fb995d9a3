/*  edge_client: requests from HTTP worker threads to the broker, multiplexed by a dispatcher
    thread over one broker connection (ZeroMQ sockets are not thread-safe: each worker thread
    has its own inproc socket to the dispatcher). */
#ifndef EDGE_CLIENT_H
#define EDGE_CLIENT_H

#include <czmq.h>

typedef enum {
    EDGE_CALL_REPLY,        //  *reply holds the actor's reply envelope
    EDGE_CALL_UNAVAILABLE,  //  no live node (or the broker is unreachable)
    EDGE_CALL_TIMEOUT,      //  no answer before the deadline
} edge_call_t;

//  Connects to the broker and starts the dispatcher; call once before any edge_client_call.
void edge_client_init(const char *broker);
//  Stops the dispatcher (after the HTTP server has stopped).
void edge_client_stop(void);

//  Sends envelope to service and waits up to timeout_ms. The caller destroys *reply.
edge_call_t edge_client_call(const char *service, const void *envelope, size_t len,
                             int timeout_ms, zframe_t **reply);

//  One of several requests sent together (a list gathered from every shard).
typedef struct {
    const char *service;        //  "catalog.3"
    const void *envelope;       //  the request envelope (each call needs its own message id)
    size_t len;
    edge_call_t outcome;        //  out
    zframe_t *reply;            //  out, when outcome is EDGE_CALL_REPLY; the caller destroys it
} edge_call_many_t;

//  Sends every call at once and waits up to timeout_ms in all for their answers; a call still
//  unanswered then has outcome EDGE_CALL_TIMEOUT.
void edge_client_call_many(edge_call_many_t *calls, size_t n, int timeout_ms);

//  Which node owns each of the n shards of service ("<service>.<i>") by the dispatcher's last
//  table: owner[i] numbers the node (the same number for the same node within one call), or is
//  -1 when the shard has no live owner. 0, or -1 before the first table.
int edge_client_owners(const char *service, unsigned n, int *owner);

//  Frees this thread's socket (civetweb's exit_thread callback).
void edge_client_thread_exit(void);

#endif
