/*  mc_nodes: requests straight to the node that owns their shard (DESIGN: "The broker is the
    directory, not the road").

    Holds a copy of the directory (mc_dir.h), subscribed from the broker and replaced whenever
    it changes, and one ROUTER socket connected to every node in it, each addressed by its node
    id and proved by the public key the directory gives for it (CURVE). The edge's dispatcher
    and every node's front (for what its actors, consumers and mailer ask of other nodes) use
    it; neither puts the broker on a request's path.

    A request is answered exactly once through the answer callback: with the owner's REPLY, or
    with UNAVAILABLE when no node owns the shard, its owner is down or unreachable for a second,
    or its connection closed while the request was out (a killed node's callers learn at once,
    not at their deadline). A MOVED answer (the node no longer owns the shard) makes it fetch
    the table and send again, up to a few times. A reply is taken only from the node the request
    went to. Not thread-safe: one thread owns it. */
#ifndef MC_NODES_H
#define MC_NODES_H

#include "mc_dir.h"

#include <czmq.h>

typedef struct _mc_nodes_t mc_nodes_t;

//  The answer to a request sent with mc_nodes_send: reply true with the reply envelope in
//  payload, or false (unavailable) with payload NULL. service and rid are the request's.
typedef void (mc_nodes_answer_fn)(void *arg, bool reply, const char *service, const void *rid, size_t rid_size,
                                  zmq_msg_t *payload);

//  Subscribes to the directory at broker; self_id is the node this runs in (its front never
//  connects to itself), NULL for the edge. The plane must be initialized (mc_plane_init).
mc_nodes_t *mc_nodes_new(const char *broker, const char *self_id, mc_nodes_answer_fn *answer, void *arg);
void mc_nodes_destroy(mc_nodes_t **self_p);

//  The sockets to wait on (3); after any wait, call mc_nodes_handle.
int mc_nodes_socks(mc_nodes_t *self, zsock_t **socks);

//  Reads what its sockets hold (answers, the table, closed connections), sends what waited for
//  a connection or a new table, asks the broker for the table now and then. Call after every
//  wait, and at least every MC_NODES_TICK_MS.
void mc_nodes_handle(mc_nodes_t *self);
//  How long the caller may wait before the next mc_nodes_handle is due, in ms.
int mc_nodes_timeout(const mc_nodes_t *self);

//  Sends envelope (taken) as request rid to the owner of service ("catalog.3"; a gathered
//  list's "catalog.*ffff" to the owner of its lowest shard, mc_gather.h). The answer comes
//  through the callback, perhaps at once (unavailable).
void mc_nodes_send(mc_nodes_t *self, const char *service, const void *rid, size_t rid_size, zmq_msg_t *envelope);

//  The directory as last received, or NULL before the first.
mc_dir_t *mc_nodes_dir(mc_nodes_t *self);

//  Announces to the broker the shards this node runs (services: "catalog.0 catalog.1 ...")
//  and where it takes requests. Nodes call it when what they run changes and every heartbeat.
void mc_nodes_announce(mc_nodes_t *self, const char *node_id, const char *endpoint, const char *services);

//  Counters, for metrics.
typedef struct {
    uint64_t sent, replies, unavailable, moved, resent, tables;
} mc_nodes_stats_t;
mc_nodes_stats_t mc_nodes_stats(const mc_nodes_t *self);

#endif
