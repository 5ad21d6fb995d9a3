/*  mc_front: a node's one door (DESIGN: "The broker is the directory, not the road").

    A thread of the node process. It binds the node's endpoint, a CURVE server whose clients
    (the edge, other nodes) prove keys of the allow-list, and serves the node's own shards from
    there: a request for a shard this node runs goes over inproc to its actor, and the reply
    goes straight back. A request for a shard it does not run, or that the directory gives to
    another node, is answered MOVED with what it knows of the owner, and the sender follows the
    table. Its actors, Kafka consumers and mailer speak to it over inproc, as to a broker (the
    same protocols, schemas/broker-protocol.md): what they ask of a local shard stays in the
    process, the rest goes to its owner (mc_nodes.h). It announces the shards it runs to the
    directory whenever that changes and every heartbeat.

    Who may ask: edge and node keys send requests (the actor learns which, as before); relay
    and ops keys are refused and counted. Workers (READY) come only over inproc. */
#ifndef MC_FRONT_H
#define MC_FRONT_H

#include <czmq.h>

typedef struct {
    const char *broker;         //  the directory
    const char *node_id;        //  this node, as the directory knows it
    const char *bind;           //  where it takes requests: "tcp://10.0.0.5:5571", "ipc://...",
                                //  "tcp://127.0.0.1:*" (a free port)
    const char *advertise;      //  the endpoint other hosts reach it at, when it differs from the
                                //  bound one (a wildcard address); NULL: the bound one
    const char *local;          //  inproc endpoint for its actors, consumers and mailer
    const char *key_name;       //  this node's plane key, which local requests are stamped with
} mc_front_args_t;

//  zactor body: binds, then sends on the pipe the endpoint it announces ("" when it could not
//  bind), then serves until $TERM.
void mc_front(zsock_t *pipe, void *args);

#endif
