#include "mc_dir.h"

#include "mc_json.h"
#include "mc_msgpack.h"

#include <czmq.h>

struct _mc_dir_t {
    uint64_t version;
    mc_dir_node_t *nodes;
    int nnodes, nodes_cap;
    mc_dir_shard_t *shards;
    int nshards, shards_cap;
    zhashx_t *by_name;      //  shard name -> index + 1 (a lookup on every request)
};

mc_dir_t *
mc_dir_new(void)
{
    mc_dir_t *self = calloc(1, sizeof *self);
    if (self && !(self->by_name = zhashx_new()))
        mc_dir_destroy(&self);
    return self;
}

void
mc_dir_destroy(mc_dir_t **self_p)
{
    mc_dir_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->by_name);
    free(self->nodes);
    free(self->shards);
    free(self);
    *self_p = NULL;
}

uint64_t
mc_dir_version(const mc_dir_t *self)
{
    return self->version;
}

void
mc_dir_set_version(mc_dir_t *self, uint64_t version)
{
    self->version = version;
}

mc_dir_node_t *
mc_dir_node(mc_dir_t *self, const char *id, bool create)
{
    for (int i = 0; i < self->nnodes; i++)
        if (strcmp(self->nodes[i].id, id) == 0)
            return &self->nodes[i];
    if (!create || !*id || strlen(id) > MC_DIR_NODE_ID_MAX)
        return NULL;
    if (self->nnodes == self->nodes_cap) {
        int cap = self->nodes_cap ? self->nodes_cap * 2 : 8;
        mc_dir_node_t *grown = realloc(self->nodes, (size_t) cap * sizeof *grown);
        if (!grown)
            return NULL;
        self->nodes = grown, self->nodes_cap = cap;
    }
    mc_dir_node_t *n = &self->nodes[self->nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    return n;
}

mc_dir_node_t *
mc_dir_node_at(mc_dir_t *self, int i)
{
    return i >= 0 && i < self->nnodes ? &self->nodes[i] : NULL;
}

int
mc_dir_nodes(const mc_dir_t *self)
{
    return self->nnodes;
}

int
mc_dir_node_index(const mc_dir_t *self, const mc_dir_node_t *node)
{
    return node ? (int) (node - self->nodes) : -1;
}

mc_dir_shard_t *
mc_dir_shard(mc_dir_t *self, const char *name, bool create)
{
    uintptr_t at = (uintptr_t) zhashx_lookup(self->by_name, name);
    if (at)
        return &self->shards[at - 1];
    if (!create || !*name || strlen(name) > MC_DIR_SERVICE_MAX)
        return NULL;
    if (self->nshards == self->shards_cap) {
        int cap = self->shards_cap ? self->shards_cap * 2 : 64;
        mc_dir_shard_t *grown = realloc(self->shards, (size_t) cap * sizeof *grown);
        if (!grown)
            return NULL;
        self->shards = grown, self->shards_cap = cap;
    }
    mc_dir_shard_t *s = &self->shards[self->nshards++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    s->node = -1;
    zhashx_insert(self->by_name, name, (void *) (uintptr_t) self->nshards);
    return s;
}

mc_dir_shard_t *
mc_dir_shard_at(mc_dir_t *self, int i)
{
    return i >= 0 && i < self->nshards ? &self->shards[i] : NULL;
}

int
mc_dir_shards(const mc_dir_t *self)
{
    return self->nshards;
}

const mc_dir_node_t *
mc_dir_owner(mc_dir_t *self, const char *name, uint64_t *epoch)
{
    const mc_dir_shard_t *s = mc_dir_shard(self, name, false);
    if (epoch)
        *epoch = s ? s->epoch : 0;
    return s && s->node >= 0 && s->node < self->nnodes ? &self->nodes[s->node] : NULL;
}

void
mc_dir_pack(const mc_dir_t *self, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    mc_pack_kv_uint(pk, "version", self->version);
    mc_pack_cstr(pk, "nodes");
    msgpack_pack_array(pk, (size_t) self->nnodes);
    for (int i = 0; i < self->nnodes; i++) {
        const mc_dir_node_t *n = &self->nodes[i];
        msgpack_pack_array(pk, 4);
        mc_pack_cstr(pk, n->id);
        mc_pack_cstr(pk, n->endpoint);
        mc_pack_cstr(pk, n->key);
        n->up ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
    mc_pack_cstr(pk, "shards");
    msgpack_pack_array(pk, (size_t) self->nshards);
    for (int i = 0; i < self->nshards; i++) {
        const mc_dir_shard_t *s = &self->shards[i];
        msgpack_pack_array(pk, 4);
        mc_pack_cstr(pk, s->name);
        msgpack_pack_int(pk, s->node);
        msgpack_pack_uint64(pk, s->epoch);
        s->up ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    }
}

//  Copies a msgpack string of at most max bytes into out; false when o is not one.
static bool
s_str(const msgpack_object *o, char *out, size_t max)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max || memchr(o->via.str.ptr, 0, o->via.str.size))
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = 0;
    return true;
}

static bool
s_array(const msgpack_object *o, uint32_t n)
{
    return o && o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == n;
}

static bool
s_bool(const msgpack_object *o)
{
    return o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
}

static bool
s_unpack(mc_dir_t *self, const msgpack_object *map)
{
    uint64_t version;
    const msgpack_object *nodes = mc_map_get(map, "nodes"), *shards = mc_map_get(map, "shards");
    if (mc_map_uint(map, "version", &version) || !nodes || nodes->type != MSGPACK_OBJECT_ARRAY
    ||  !shards || shards->type != MSGPACK_OBJECT_ARRAY)
        return false;
    self->version = version;
    for (uint32_t i = 0; i < nodes->via.array.size; i++) {
        const msgpack_object *e = &nodes->via.array.ptr[i];
        char id[MC_DIR_NODE_ID_MAX + 1];
        if (!s_array(e, 4) || !s_str(&e->via.array.ptr[0], id, MC_DIR_NODE_ID_MAX))
            return false;
        mc_dir_node_t *n = mc_dir_node(self, id, true);
        if (!n || mc_dir_node_index(self, n) != (int) i
        ||  !s_str(&e->via.array.ptr[1], n->endpoint, MC_DIR_ENDPOINT_MAX)
        ||  !s_str(&e->via.array.ptr[2], n->key, MC_DIR_KEY_LEN))
            return false;
        n->up = s_bool(&e->via.array.ptr[3]);
    }
    for (uint32_t i = 0; i < shards->via.array.size; i++) {
        const msgpack_object *e = &shards->via.array.ptr[i];
        char name[MC_DIR_SERVICE_MAX + 1];
        if (!s_array(e, 4) || !s_str(&e->via.array.ptr[0], name, MC_DIR_SERVICE_MAX))
            return false;
        const msgpack_object *node = &e->via.array.ptr[1], *epoch = &e->via.array.ptr[2];
        mc_dir_shard_t *s = mc_dir_shard(self, name, true);
        if (!s || (node->type != MSGPACK_OBJECT_POSITIVE_INTEGER && node->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
        ||  node->via.i64 < -1 || node->via.i64 >= self->nnodes || epoch->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return false;
        s->node = (int) node->via.i64;
        s->epoch = epoch->via.u64;
        s->up = s_bool(&e->via.array.ptr[3]);
    }
    return true;
}

mc_dir_t *
mc_dir_unpack(const void *data, size_t len)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_dir_t *self = mc_dir_new();
    if (self && (mc_msgpack_unpack(&u, data, len) != 0 || u.data.type != MSGPACK_OBJECT_MAP || !s_unpack(self, &u.data)))
        mc_dir_destroy(&self);
    msgpack_unpacked_destroy(&u);
    return self;
}

char *
mc_dir_json(const mc_dir_t *self)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    //  the contract's cluster shape: nodes with their shards, shards with their owner's id
    msgpack_pack_map(&pk, 3);
    mc_pack_kv_uint(&pk, "version", self->version);
    mc_pack_cstr(&pk, "nodes");
    msgpack_pack_array(&pk, (size_t) self->nnodes);
    for (int i = 0; i < self->nnodes; i++) {
        const mc_dir_node_t *n = &self->nodes[i];
        int owned = 0;
        for (int j = 0; j < self->nshards; j++)
            owned += self->shards[j].node == i;
        msgpack_pack_map(&pk, 5);
        mc_pack_kv_str(&pk, "id", n->id, strlen(n->id));
        mc_pack_kv_str(&pk, "endpoint", n->endpoint, strlen(n->endpoint));
        mc_pack_kv_str(&pk, "key", n->key, strlen(n->key));
        mc_pack_kv_str(&pk, "state", n->up ? "up" : "gone", n->up ? 2 : 4);
        mc_pack_cstr(&pk, "shards");
        msgpack_pack_array(&pk, (size_t) owned);
        for (int j = 0; j < self->nshards; j++)
            if (self->shards[j].node == i)
                mc_pack_cstr(&pk, self->shards[j].name);
    }
    mc_pack_cstr(&pk, "shards");
    msgpack_pack_array(&pk, (size_t) self->nshards);
    for (int j = 0; j < self->nshards; j++) {
        const mc_dir_shard_t *s = &self->shards[j];
        const char *dot = strrchr(s->name, '.');
        size_t base = dot ? (size_t) (dot - s->name) : strlen(s->name);
        const char *node = s->node >= 0 ? self->nodes[s->node].id : "";
        bool up = s->up && s->node >= 0 && self->nodes[s->node].up;
        msgpack_pack_map(&pk, 5);
        mc_pack_kv_str(&pk, "service", s->name, base);
        mc_pack_kv_uint(&pk, "shard", dot ? strtoull(dot + 1, NULL, 10) : 0);
        mc_pack_kv_str(&pk, "node", node, strlen(node));
        mc_pack_kv_uint(&pk, "epoch", s->epoch);
        mc_pack_kv_str(&pk, "state", up ? "up" : "unavailable", up ? 2 : 11);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    char *json = NULL;
    if (mc_msgpack_unpack(&u, sb.data, sb.size) == 0) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        mc_json_write(&out, &u.data);
        json = strndup(out.data, out.size);
        msgpack_sbuffer_destroy(&out);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return json;
}

mc_dir_t *
mc_dir_copy(const mc_dir_t *self)
{
    //  by its wire form: the table is small and copied only when it changes
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_dir_pack(self, &pk);
    mc_dir_t *copy = mc_dir_unpack(sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return copy;
}
