#include "mc_directory.h"

#include "mc_config.h"
#include "mc_log.h"
#include "mc_util.h"

#include <errno.h>
#include <lmdb.h>
#include <sys/stat.h>

//  A node is down once it has not announced for this long (fronts announce every 500 ms); a
//  subscriber is forgotten once it has not asked for this long (clients ask every second).
#define NODE_LIVENESS_MS 3000
#define SUBSCRIBER_LIVENESS_MS 5000

typedef struct {
    int fd;                     //  the connection it announced on
    uint64_t expiry;            //  mono ms
} node_state_t;

typedef struct {
    byte id[MC_PROTO_ROUTING_ID_MAX];
    size_t size;
    uint64_t expiry;
} subscriber_t;

struct _mc_directory_t {
    MDB_env *env;
    MDB_dbi dbi;
    mc_dir_t *dir;
    zhashx_t *nodes;            //  node id -> node_state_t
    zhashx_t *subscribers;      //  hex routing id -> subscriber_t
    bool dirty;                 //  changed since last published
    mc_directory_stats_t stats;
};

static void
s_free(void **item)
{
    free(*item);
    *item = NULL;
}

static int
s_load(mc_directory_t *self)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "directory", MDB_CREATE, &self->dbi);
    MDB_val k = { 5, "table" }, v;
    if (rc == 0 && mdb_get(txn, self->dbi, &k, &v) == 0)
        self->dir = mc_dir_unpack(v.mv_data, v.mv_size);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    if (!self->dir)
        self->dir = mc_dir_new();
    return rc;
}

//  Writes the table before anyone sees it: a restarted broker must never publish an older one.
static int
s_store(mc_directory_t *self)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_dir_pack(self->dir, &pk);
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    MDB_val k = { 5, "table" }, v = { sb.size, sb.data };
    if (rc == 0 && (rc = mdb_put(txn, self->dbi, &k, &v, 0)) == 0)
        rc = mdb_txn_commit(txn);
    else
    if (rc == 0)
        mdb_txn_abort(txn);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        mc_error("directory not stored", "\"error\":\"%s\"", mdb_strerror(rc));
    return rc;
}

mc_directory_t *
mc_directory_new(const char *dir)
{
    mc_directory_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    mc_config_mkdirs(dir);
    int rc = mdb_env_create(&self->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(self->env, 2);
    if (rc == 0)
        rc = mdb_env_open(self->env, dir, MDB_NOTLS, 0600);
    if (rc == 0)
        rc = s_load(self);
    self->nodes = zhashx_new();
    self->subscribers = zhashx_new();
    if (rc || !self->dir || !self->nodes || !self->subscribers) {
        mc_error("cannot open the directory", "\"dir\":\"%s\",\"error\":\"%s\"", dir, rc ? mdb_strerror(rc) : "out of memory");
        mc_directory_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->nodes, s_free);
    zhashx_set_destructor(self->subscribers, s_free);
    //  the nodes of the stored table keep their shards while they reconnect: a broker restart
    //  is no reason for a client to stop sending to them
    uint64_t grace = mc_mono_ms() + NODE_LIVENESS_MS;
    for (int i = 0; i < mc_dir_nodes(self->dir); i++) {
        mc_dir_node_t *n = mc_dir_node_at(self->dir, i);
        node_state_t *st = calloc(1, sizeof *st);
        if (st && n->up) {
            *st = (node_state_t) { -1, grace };
            zhashx_update(self->nodes, n->id, st);
        }
        else
            free(st);
    }
    mc_dir_set_version(self->dir, mc_dir_version(self->dir) + 1);
    mc_info("directory open", "\"nodes\":%d,\"shards\":%d,\"version\":%" PRIu64, mc_dir_nodes(self->dir),
            mc_dir_shards(self->dir), mc_dir_version(self->dir));
    return self;
}

void
mc_directory_destroy(mc_directory_t **self_p)
{
    mc_directory_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->subscribers);
    zhashx_destroy(&self->nodes);
    mc_dir_destroy(&self->dir);
    if (self->env)
        mdb_env_close(self->env);
    free(self);
    *self_p = NULL;
}

mc_dir_t *
mc_directory_table(mc_directory_t *self)
{
    return self->dir;
}

mc_directory_stats_t
mc_directory_stats(const mc_directory_t *self)
{
    return self->stats;
}

static void
s_send_table(mc_directory_t *self, zsock_t *router, const subscriber_t *s, const msgpack_sbuffer *packed)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_DIRECTORY_TABLE;
    mc_proto_msg_set_routing_id(&m, s->id, s->size);
    zframe_t *table = zframe_new(packed->data, packed->size);
    mc_proto_msg_set_table(&m, &table);
    mc_proto_msg_send(&m, router);
    self->stats.published++;
}

//  A change: a new version, stored, then sent to every subscriber.
static void
s_publish(mc_directory_t *self, zsock_t *router)
{
    mc_dir_set_version(self->dir, mc_dir_version(self->dir) + 1);
    s_store(self);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_dir_pack(self->dir, &pk);
    for (subscriber_t *s = zhashx_first(self->subscribers); s; s = zhashx_next(self->subscribers))
        s_send_table(self, router, s, &sb);
    msgpack_sbuffer_destroy(&sb);
}

//  Node idx is down: so is every shard it owns.
static bool
s_node_down(mc_directory_t *self, int idx)
{
    mc_dir_node_t *n = mc_dir_node_at(self->dir, idx);
    bool changed = n && n->up;
    if (n)
        n->up = false;
    for (int i = 0; i < mc_dir_shards(self->dir); i++) {
        mc_dir_shard_t *s = mc_dir_shard_at(self->dir, i);
        if (s->node == idx && s->up)
            s->up = false, changed = true;
    }
    if (changed)
        mc_warn("node down", "\"node\":\"%s\"", n ? n->id : "");
    return changed;
}

//  The shards node idx announces (a list separated by spaces): it owns those nobody else
//  serves, and those it no longer lists are down.
static bool
s_claim(mc_directory_t *self, int idx, const char *list, size_t len)
{
    bool changed = false;
    const mc_dir_node_t *me = mc_dir_node_at(self->dir, idx);
    int n = mc_dir_shards(self->dir);
    bool *listed = calloc((size_t) n + 1, sizeof *listed);
    for (size_t at = 0; at < len;) {
        size_t w = 0;
        while (at + w < len && list[at + w] != ' ')
            w++;
        char name[MC_DIR_SERVICE_MAX + 1];
        if (w && w <= MC_DIR_SERVICE_MAX) {
            memcpy(name, list + at, w);
            name[w] = 0;
            mc_dir_shard_t *s = mc_dir_shard(self->dir, name, true);
            mc_dir_node_t *owner = s ? mc_dir_node_at(self->dir, s->node) : NULL;
            if (!s)
                ;
            else
            if (s->node == idx) {
                changed |= !s->up;
                s->up = true;
            }
            else
            if (owner && owner->up) {
                //  two copies of one shard would split its state: the first owner keeps it
                static uint64_t logged;
                self->stats.conflicts++;
                if (mc_mono_ms() - logged > 1000) {
                    logged = mc_mono_ms();
                    mc_warn("shard claimed by a second node, refused", "\"shard\":\"%s\",\"owner\":\"%s\",\"claimant\":\"%s\"",
                            name, owner->id, me->id);
                }
            }
            else {
                if (owner)
                    mc_warn("shard taken over", "\"shard\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"", name, owner->id, me->id);
                self->stats.takeovers += owner != NULL;
                s->node = idx;
                s->epoch++;
                s->up = true;
                changed = true;
            }
            int si = (int) (s ? s - mc_dir_shard_at(self->dir, 0) : -1);
            if (si >= 0 && si < n)
                listed[si] = true;
        }
        at += w + 1;
    }
    for (int i = 0; i < n && listed; i++) {
        mc_dir_shard_t *s = mc_dir_shard_at(self->dir, i);
        if (s->node == idx && s->up && !listed[i])
            s->up = false, changed = true;
    }
    free(listed);
    return changed;
}

static int
s_announce(mc_directory_t *self, zsock_t *router, mc_proto_msg_t *msg, int fd, const mc_peer_info_t *peer)
{
    if (peer->role != MC_PEER_NODE || !*msg->node_id || strlen(peer->key) != MC_DIR_KEY_LEN)
        return -1;
    self->stats.announces++;
    mc_dir_node_t *n = mc_dir_node(self->dir, msg->node_id, true);
    if (!n)
        return 0;
    bool changed = !n->up || !streq(n->endpoint, msg->endpoint) || !streq(n->key, peer->key);
    if (changed)
        mc_info("node up", "\"node\":\"%s\",\"endpoint\":\"%s\",\"key\":\"%s\"", n->id, msg->endpoint, peer->name);
    n->up = true;
    snprintf(n->endpoint, sizeof n->endpoint, "%s", msg->endpoint);
    //  the key its connection proved, not one it names: clients check the node by it
    snprintf(n->key, sizeof n->key, "%s", peer->key);
    node_state_t *st = zhashx_lookup(self->nodes, n->id);
    if (!st && (st = calloc(1, sizeof *st)))
        zhashx_insert(self->nodes, n->id, st);
    if (st)
        *st = (node_state_t) { fd, mc_mono_ms() + NODE_LIVENESS_MS };
    const char *list = msg->services ? (const char *) zframe_data(msg->services) : "";
    size_t len = msg->services ? zframe_size(msg->services) : 0;
    changed |= s_claim(self, mc_dir_node_index(self->dir, n), list, len);
    if (changed)
        s_publish(self, router);
    return 0;
}

static void
s_subscribe(mc_directory_t *self, zsock_t *router, mc_proto_msg_t *msg)
{
    char key[2 * MC_PROTO_ROUTING_ID_MAX + 1];
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < msg->routing_id_size; i++) {
        key[2 * i] = digits[msg->routing_id[i] >> 4];
        key[2 * i + 1] = digits[msg->routing_id[i] & 15];
    }
    key[2 * msg->routing_id_size] = 0;
    subscriber_t *s = zhashx_lookup(self->subscribers, key);
    if (!s && (s = calloc(1, sizeof *s))) {
        memcpy(s->id, msg->routing_id, msg->routing_id_size);
        s->size = msg->routing_id_size;
        zhashx_insert(self->subscribers, key, s);
    }
    if (!s)
        return;
    s->expiry = mc_mono_ms() + SUBSCRIBER_LIVENESS_MS;
    uint64_t v = 0;
    for (size_t i = 0; i < msg->version_size; i++)
        v = v << 8 | msg->version[i];
    if (v != mc_dir_version(self->dir)) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        mc_dir_pack(self->dir, &pk);
        s_send_table(self, router, s, &sb);
        msgpack_sbuffer_destroy(&sb);
    }
}

int
mc_directory_handle(mc_directory_t *self, zsock_t *router, mc_proto_msg_t *msg, int fd, const mc_peer_info_t *peer)
{
    if (msg->id == MC_PROTO_DIRECTORY_ANNOUNCE)
        return s_announce(self, router, msg, fd, peer);
    if (msg->id == MC_PROTO_DIRECTORY_SUBSCRIBE)
        s_subscribe(self, router, msg);
    return 0;
}

void
mc_directory_disconnected(mc_directory_t *self, zsock_t *router, int fd)
{
    bool changed = false;
    for (node_state_t *st = zhashx_first(self->nodes); st; st = zhashx_next(self->nodes))
        if (st->fd == fd && fd >= 0) {
            mc_dir_node_t *n = mc_dir_node(self->dir, zhashx_cursor(self->nodes), false);
            st->fd = -1;
            changed |= s_node_down(self, mc_dir_node_index(self->dir, n));
        }
    if (changed)
        s_publish(self, router);
}

void
mc_directory_tick(mc_directory_t *self, zsock_t *router)
{
    uint64_t now = mc_mono_ms();
    bool changed = false;
    for (node_state_t *st = zhashx_first(self->nodes); st; st = zhashx_next(self->nodes))
        if (st->expiry && st->expiry < now) {
            mc_dir_node_t *n = mc_dir_node(self->dir, zhashx_cursor(self->nodes), false);
            st->expiry = 0;
            changed |= s_node_down(self, mc_dir_node_index(self->dir, n));
        }
    zlistx_t *gone = zlistx_new();
    for (subscriber_t *s = zhashx_first(self->subscribers); s; s = zhashx_next(self->subscribers))
        if (s->expiry < now)
            zlistx_add_end(gone, (void *) zhashx_cursor(self->subscribers));
    for (const char *k = zlistx_first(gone); k; k = zlistx_next(gone))
        zhashx_delete(self->subscribers, k);
    zlistx_destroy(&gone);
    if (changed)
        s_publish(self, router);
}
