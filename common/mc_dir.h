/*  mc_dir: the directory's shard table (DESIGN: "The broker is the directory, not the road").

    Which node owns each shard, under an epoch that rises whenever the owner changes, and where
    each node takes requests: its endpoint and the CURVE public key it proves there. The broker
    keeps the one that counts (durable across its restart) and publishes it whole, with a
    version, whenever it changes; the edge and every node's front hold a copy and send each
    request straight to the owner. The table is small (a few hundred shards), so a change is
    published as the whole table rather than as a delta. */
#ifndef MC_DIR_H
#define MC_DIR_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define MC_DIR_NODE_ID_MAX 64
#define MC_DIR_ENDPOINT_MAX 255
#define MC_DIR_SERVICE_MAX 80           //  "<service>.<shard>"
#define MC_DIR_KEY_LEN 40               //  a CURVE public key in Z85

typedef struct {
    char id[MC_DIR_NODE_ID_MAX + 1];
    char endpoint[MC_DIR_ENDPOINT_MAX + 1];
    char key[MC_DIR_KEY_LEN + 1];       //  the public key its front proves to clients
    bool up;                            //  announcing (its connection to the broker is alive)
} mc_dir_node_t;

typedef struct {
    char name[MC_DIR_SERVICE_MAX + 1];  //  "catalog.3"
    int node;                           //  owner: an index into the nodes, or -1 for none yet
    uint64_t epoch;                     //  rises with every change of owner
    bool up;                            //  its owner runs it now
} mc_dir_shard_t;

typedef struct _mc_dir_t mc_dir_t;

mc_dir_t *mc_dir_new(void);
void mc_dir_destroy(mc_dir_t **self_p);

//  The version: rises with every change the broker publishes.
uint64_t mc_dir_version(const mc_dir_t *self);
void mc_dir_set_version(mc_dir_t *self, uint64_t version);

//  The node called id, added (down, no endpoint) when create and unknown; NULL otherwise.
mc_dir_node_t *mc_dir_node(mc_dir_t *self, const char *id, bool create);
//  Node i (0 <= i < mc_dir_nodes), or NULL.
mc_dir_node_t *mc_dir_node_at(mc_dir_t *self, int i);
int mc_dir_nodes(const mc_dir_t *self);
int mc_dir_node_index(const mc_dir_t *self, const mc_dir_node_t *node);

//  The shard called name ("catalog.3"), added without owner when create and unknown; NULL
//  otherwise (or when name is too long).
mc_dir_shard_t *mc_dir_shard(mc_dir_t *self, const char *name, bool create);
mc_dir_shard_t *mc_dir_shard_at(mc_dir_t *self, int i);
int mc_dir_shards(const mc_dir_t *self);

//  The node that owns shard name, or NULL when it has none.
const mc_dir_node_t *mc_dir_owner(mc_dir_t *self, const char *name, uint64_t *epoch);

//  The table as a msgpack map {version, nodes: [[id, endpoint, key, up]...],
//  shards: [[name, node index, epoch, up]...]}.
void mc_dir_pack(const mc_dir_t *self, msgpack_packer *pk);

//  The table packed in data; NULL when it is not one (counted by the caller as malformed).
mc_dir_t *mc_dir_unpack(const void *data, size_t len);

//  A copy of the table (for another thread to read), or NULL when out of memory.
mc_dir_t *mc_dir_copy(const mc_dir_t *self);

//  The table as JSON, for people and tools (mmi.directory, mercato-admin).
char *mc_dir_json(const mc_dir_t *self);

#endif
