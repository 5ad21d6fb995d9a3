/*  mc_broker: the directory of schemas/broker-protocol.md, not the road.

    Nodes announce the shards they run and clients subscribe to the table (mc_directory.h); it
    answers mmi.* questions (the table, the live shards, counters). It forwards no request: a
    request for a shard goes straight to its node. Every peer proves a key of the allow-list,
    and only node keys may announce. */
#ifndef MC_BROKER_H
#define MC_BROKER_H

#include <czmq.h>

typedef struct _mc_broker_t mc_broker_t;

//  Binds a ROUTER to endpoint, a comma-separated list ("tcp://127.0.0.1:*" picks a free port),
//  and keeps the directory durable in dir. NULL on failure, with a logged reason.
mc_broker_t *mc_broker_new(const char *endpoint, const char *dir);
void mc_broker_destroy(mc_broker_t **self_p);

//  The endpoint actually bound, with the port resolved.
const char *mc_broker_endpoint(mc_broker_t *self);

//  Serves until zsys_interrupted is set or $TERM arrives on pipe (pipe may be NULL).
void mc_broker_run(mc_broker_t *self, zsock_t *pipe);

typedef struct {
    const char *endpoint;
    const char *dir;
} mc_broker_actor_args_t;

//  zactor body: args is an mc_broker_actor_args_t; sends the bound endpoint on the pipe (""
//  when it could not start), then serves.
void mc_broker_actor(zsock_t *pipe, void *args);

#endif
