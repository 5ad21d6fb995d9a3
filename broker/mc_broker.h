/*  mc_broker: the stateless request router of schemas/broker-protocol.md.

    It knows which workers are alive, spreads requests over the workers of a service and
    answers UNAVAILABLE at once for a service with no live worker, or for requests a dead
    worker still owed. It keeps no message once forwarded. */
#ifndef MC_BROKER_H
#define MC_BROKER_H

#include <czmq.h>

typedef struct _mc_broker_t mc_broker_t;

//  Binds a ROUTER to endpoint, a comma-separated list ("tcp://127.0.0.1:*" picks a free port).
//  NULL on failure.
mc_broker_t *mc_broker_new(const char *endpoint);
void mc_broker_destroy(mc_broker_t **self_p);

//  Keeps the directory (mc_directory.h) durable in dir. 0, or -1 with a logged reason.
int mc_broker_set_directory(mc_broker_t *self, const char *dir);

//  The endpoint actually bound, with the port resolved.
const char *mc_broker_endpoint(mc_broker_t *self);

//  Serves until zsys_interrupted is set or $TERM arrives on pipe (pipe may be NULL).
void mc_broker_run(mc_broker_t *self, zsock_t *pipe);

//  zactor body: args is the endpoint; sends the bound endpoint on the pipe, then serves.
void mc_broker_actor(zsock_t *pipe, void *args);

#endif
