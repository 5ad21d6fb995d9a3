/*  mc_directory: the broker's side of the directory (DESIGN: "The broker is the directory").

    Nodes announce the shards they run; the first live node to announce a shard owns it, under
    an epoch that rises whenever the owner changes. A node that stops announcing (3 s) or whose
    connection closes is down, and so are its shards, until it is back: its shards stay its own
    (its data is there), and another node announcing one of them takes it over only then, with
    epoch + 1. A second live node announcing a shard that has a live owner is refused and
    logged: its copy would split the shard's state. The table and its version are kept in an
    LMDB environment and written before they are published, so a restarted broker publishes
    the table it had (its nodes count as up until they have had time to announce again).
    Every subscriber gets the whole table when it changes, and on asking with an older version. */
#ifndef MC_DIRECTORY_H
#define MC_DIRECTORY_H

#include "mc_dir.h"
#include "mc_plane.h"
#include "mc_proto.h"

#include <czmq.h>

typedef struct _mc_directory_t mc_directory_t;

//  Opens (creating) the durable table in dir. NULL with a logged reason when it cannot.
mc_directory_t *mc_directory_new(const char *dir);
void mc_directory_destroy(mc_directory_t **self_p);

//  A directory message (ANNOUNCE, SUBSCRIBE) from peer on connection fd of router. Returns 0,
//  or -1 when peer's role may not send it (an ANNOUNCE from a key that is not a node's): the
//  caller counts and logs the refusal.
int mc_directory_handle(mc_directory_t *self, zsock_t *router, mc_proto_msg_t *msg, int fd,
                         const mc_peer_info_t *peer);

//  A connection closed: a node that announced on it is down.
void mc_directory_disconnected(mc_directory_t *self, zsock_t *router, int fd);

//  Nodes silent too long are down; subscribers silent too long are forgotten. Call every
//  heartbeat.
void mc_directory_tick(mc_directory_t *self, zsock_t *router);

mc_dir_t *mc_directory_table(mc_directory_t *self);

//  Counters, for mmi.stats.
typedef struct {
    uint64_t announces, conflicts, takeovers, published;
} mc_directory_stats_t;
mc_directory_stats_t mc_directory_stats(const mc_directory_t *self);

#endif
