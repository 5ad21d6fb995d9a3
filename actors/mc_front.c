#include "mc_front.h"

#include "mc_gather.h"
#include "mc_gather_read.h"
#include "mc_log.h"
#include "mc_nodes.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_reads.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <sys/prctl.h>

//  The directory hears from us this often even when nothing changed: the heartbeat by which it
//  knows we are alive.
#define ANNOUNCE_MS 500

//  Where a worker's reply goes: the client frame a worker gets (and gives back) is this byte, the
//  length of the asker's routing id on that socket, the routing id, then the request's service
//  (which the answer names).
enum { FROM_EXTERNAL = 'E', FROM_LOCAL = 'L' };

typedef struct {
    mc_front_args_t args;
    zsock_t *ext;               //  ROUTER: the node's endpoint (CURVE server)
    zsock_t *local;             //  ROUTER, inproc: actors (workers and clients), consumers, mailer
    mc_nodes_t *nodes;          //  to the other nodes, and the directory
    char endpoint[MC_DIR_ENDPOINT_MAX + 1];     //  what we announce
    zhashx_t *workers;          //  service -> zframe_t routing id on local
    bool changed;               //  what we run changed since the last announcement
    uint64_t announce_at;
    uint64_t served, read_here, gathered, moved, unavailable, refused, malformed, forwarded;
    uint64_t refused_window, refused_lines;     //  the log's budget of refusals: this second's
} front_t;

static void
s_worker_free(void **item)
{
    zframe_destroy((zframe_t **) item);
}

//  A client-protocol answer (REPLY with *envelope, else UNAVAILABLE or MOVED with text).
static void
s_answer(zsock_t *sock, const void *to, size_t to_size, mc_proto_id_t id, const char *service, const void *rid,
         size_t rid_size, zframe_t **envelope, const char *text)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = id;
    mc_proto_msg_set_routing_id(&m, to, to_size);
    mc_proto_msg_set_service(&m, service);
    mc_proto_msg_set_request_id(&m, rid, rid_size);
    if (id == MC_PROTO_CLIENT_REPLY)
        mc_proto_msg_set_envelope(&m, envelope);
    else
    if (id == MC_PROTO_CLIENT_MOVED)
        mc_proto_msg_set_owner(&m, text);
    else
        mc_proto_msg_set_reason(&m, text);
    mc_proto_msg_send(&m, sock);
}

//  Hands request rid for service to its local worker, the reply to go back to (from, to).
static void
s_deliver(front_t *self, zframe_t *worker, char from, const void *to, size_t to_size, mc_proto_msg_t *req,
          const mc_peer_info_t *peer)
{
    byte client[MC_PROTO_CLIENT_MAX];
    size_t service = strlen(req->service);
    if (2 + to_size + service > sizeof client) {
        self->malformed++;
        return;
    }
    client[0] = (byte) from;
    client[1] = (byte) to_size;
    memcpy(client + 2, to, to_size);
    memcpy(client + 2 + to_size, req->service, service);
    mc_proto_msg_t out;
    mc_proto_msg_init(&out);
    out.id = MC_PROTO_WORKER_REQUEST;
    mc_proto_msg_set_routing_id(&out, zframe_data(worker), zframe_size(worker));
    mc_proto_msg_set_client(&out, client, 2 + to_size + service);
    mc_proto_msg_set_request_id(&out, req->request_id, req->request_id_size);
    mc_proto_msg_set_peer_key(&out, peer->name);
    out.peer_role = peer->role;
    mc_proto_msg_set_envelope(&out, &req->envelope);
    mc_proto_msg_send(&out, self->local);
    self->served++;
}

//  A read of a shard whose actor published a view (mc_reads.h) runs here, on this thread, and
//  is answered to (sock, to): true. False when the actor must have it.
static bool
s_read_here(front_t *self, zsock_t *sock, const void *to, size_t to_size, mc_proto_msg_t *req, mc_peer_t role)
{
    mc_core_t *view = req->envelope ? mc_reads_acquire(req->service) : NULL;
    if (!view)
        return false;
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    int rc = mc_core_read(view, role, zframe_data(req->envelope), zframe_size(req->envelope), mc_now_ms(), &out);
    mc_reads_release(view);
    if (rc == 0) {
        zframe_t *env = zframe_new(out.data, out.size);
        s_answer(sock, to, to_size, MC_PROTO_CLIENT_REPLY, req->service, req->request_id, req->request_id_size, &env,
                 NULL);
        zframe_destroy(&env);
        self->read_here++;
    }
    msgpack_sbuffer_destroy(&out);
    return rc == 0;
}

//  The local worker of service when this node is the one to serve it: it runs it, and the
//  directory does not give it to another node. Else NULL, with *owner (when the directory
//  names one) the node that should.
static zframe_t *
s_ours(front_t *self, const char *service, const mc_dir_node_t **owner, uint64_t *epoch)
{
    mc_dir_t *dir = mc_nodes_dir(self->nodes);
    *owner = dir ? mc_dir_owner(dir, service, epoch) : NULL;
    zframe_t *worker = zhashx_lookup(self->workers, service);
    if (*owner && !streq((*owner)->id, self->args.node_id))
        return NULL;    //  a stale owner applies nothing: the directory moved it elsewhere
    *owner = NULL;
    return worker;
}

//  A list asked of several shards at once ("catalog.*ffff", mc_gather.h), when this node owns
//  each of them and may read each in place: every shard's page is read here and the merged
//  page answered to (sock, to): true. False otherwise, with *owner the node that owns a shard
//  the directory gives elsewhere (or NULL): the asker then asks shard by shard.
static bool
s_gather_here(front_t *self, zsock_t *sock, const void *to, size_t to_size, mc_proto_msg_t *req, mc_peer_t role,
              const mc_dir_node_t **owner, uint64_t *epoch)
{
    char service[MC_DIR_SERVICE_MAX + 1], name[MC_DIR_SERVICE_MAX + 24];
    uint64_t mask;
    *owner = NULL;
    if (!req->envelope || !mc_gather_parse(req->service, service, &mask))
        return false;
    mc_core_t *views[MC_SHARDS_MAX];
    unsigned n = 0;
    bool ok = true;
    for (unsigned i = 0; ok && i < MC_SHARDS_MAX; i++) {
        if (!(mask >> i & 1))
            continue;
        snprintf(name, sizeof name, "%s.%u", service, i);
        views[n] = s_ours(self, name, owner, epoch) ? mc_reads_acquire(name) : NULL;
        ok = views[n] != NULL;
        n += ok;
    }
    msgpack_sbuffer merged;
    msgpack_sbuffer_init(&merged);
    ok = ok && mc_gather_read(views, n, service, role, zframe_data(req->envelope), zframe_size(req->envelope),
                              mc_now_ms(), &merged) == 0;
    for (unsigned i = 0; i < n; i++)
        mc_reads_release(views[i]);
    if (ok) {
        zframe_t *env = zframe_new(merged.data, merged.size);
        s_answer(sock, to, to_size, MC_PROTO_CLIENT_REPLY, req->service, req->request_id, req->request_id_size, &env,
                 NULL);
        zframe_destroy(&env);
        self->gathered++;
    }
    msgpack_sbuffer_destroy(&merged);
    return ok;
}

//  Answers a gathered list this node cannot serve whole: MOVED when the directory gives one of
//  its shards to another node, else UNAVAILABLE; either way the asker falls back to one
//  request per shard.
static void
s_gather_refuse(front_t *self, zsock_t *sock, const void *to, size_t to_size, mc_proto_msg_t *m,
                const mc_dir_node_t *owner, uint64_t epoch)
{
    char text[MC_PROTO_OWNER_MAX + 1];
    if (owner)
        snprintf(text, sizeof text, "%s %" PRIu64, owner->id, epoch);
    s_answer(sock, to, to_size, owner ? MC_PROTO_CLIENT_MOVED : MC_PROTO_CLIENT_UNAVAILABLE, m->service, m->request_id,
             m->request_id_size, NULL, owner ? text : "not gathered on this node");
    if (owner)
        self->moved++;
    else
        self->unavailable++;
}

static void
s_external(front_t *self, mc_proto_msg_t *m, const mc_peer_info_t *peer)
{
    if (m->id != MC_PROTO_CLIENT_REQUEST) {
        self->malformed++;
        return;
    }
    if (peer->role != MC_PEER_EDGE && peer->role != MC_PEER_NODE) {
        //  relay and ops keys look, they do not ask actors for anything; at most 10 lines a
        //  second, as the broker's, so a flood cannot fill the disk
        self->refused++;
        uint64_t now = mc_mono_ms() / 1000;
        if (now != self->refused_window)
            self->refused_window = now, self->refused_lines = 0;
        if (self->refused_lines++ < 10)
            mc_warn("peer refused", "\"what\":\"request\",\"role\":\"%s\",\"key\":\"%s\",\"refused_total\":%" PRIu64,
                    mc_peer_name(peer->role), peer->name, self->refused);
        return;
    }
    const mc_dir_node_t *owner = NULL;
    uint64_t epoch = 0;
    if (strstr(m->service, ".*")) {
        if (!s_gather_here(self, self->ext, m->routing_id, m->routing_id_size, m, peer->role, &owner, &epoch))
            s_gather_refuse(self, self->ext, m->routing_id, m->routing_id_size, m, owner, epoch);
        return;
    }
    zframe_t *worker = strncmp(m->service, "mailer.", 7) == 0 ? NULL : s_ours(self, m->service, &owner, &epoch);
    if (worker) {
        if (!s_read_here(self, self->ext, m->routing_id, m->routing_id_size, m, peer->role))
            s_deliver(self, worker, FROM_EXTERNAL, m->routing_id, m->routing_id_size, m, peer);
    }
    else
    if (owner) {
        char text[MC_PROTO_OWNER_MAX + 1];
        snprintf(text, sizeof text, "%s %" PRIu64, owner->id, epoch);
        s_answer(self->ext, m->routing_id, m->routing_id_size, MC_PROTO_CLIENT_MOVED, m->service, m->request_id,
                 m->request_id_size, NULL, text);
        self->moved++;
    }
    else {
        s_answer(self->ext, m->routing_id, m->routing_id_size, MC_PROTO_CLIENT_UNAVAILABLE, m->service,
                 m->request_id, m->request_id_size, NULL, "not running on this node");
        self->unavailable++;
    }
}

//  A request from inside the node: served here when the shard is ours, else sent to its owner
//  with our routing of the asker in front of its request id.
static void
s_local_request(front_t *self, mc_proto_msg_t *m)
{
    const mc_dir_node_t *owner = NULL;
    uint64_t epoch = 0;
    bool local_only = strncmp(m->service, "mailer.", 7) == 0;
    zframe_t *worker = local_only ? zhashx_lookup(self->workers, m->service) : s_ours(self, m->service, &owner, &epoch);
    if (worker && !local_only && s_read_here(self, self->local, m->routing_id, m->routing_id_size, m, MC_PEER_NODE))
        return;
    if (worker) {
        mc_peer_info_t self_peer = { .role = MC_PEER_NODE };
        snprintf(self_peer.name, sizeof self_peer.name, "%s", self->args.key_name);
        s_deliver(self, worker, FROM_LOCAL, m->routing_id, m->routing_id_size, m, &self_peer);
        return;
    }
    if (local_only || strncmp(m->service, "mmi.", 4) == 0 || m->routing_id_size > 32) {
        s_answer(self->local, m->routing_id, m->routing_id_size, MC_PROTO_CLIENT_UNAVAILABLE, m->service,
                 m->request_id, m->request_id_size, NULL, "not running on this node");
        self->unavailable++;
        return;
    }
    byte rid[MC_PROTO_REQUEST_ID_MAX];
    rid[0] = (byte) m->routing_id_size;
    memcpy(rid + 1, m->routing_id, m->routing_id_size);
    memcpy(rid + 1 + m->routing_id_size, m->request_id, m->request_id_size);
    zmq_msg_t env;
    if (m->envelope) {
        zmq_msg_init_size(&env, zframe_size(m->envelope));
        memcpy(zmq_msg_data(&env), zframe_data(m->envelope), zframe_size(m->envelope));
    }
    else
        zmq_msg_init(&env);
    self->forwarded++;
    mc_nodes_send(self->nodes, m->service, rid, 1 + m->routing_id_size + m->request_id_size, &env);
}

//  Another node's answer to what a local client asked: back to the asker named in its id.
static void
s_remote_answer(void *arg, bool reply, const char *service, const void *rid, size_t rid_size, zmq_msg_t *payload)
{
    front_t *self = arg;
    const byte *r = rid;
    size_t to = r[0];
    if (1 + to > rid_size || rid_size - 1 - to == 0)
        return;
    zframe_t *env = reply ? zframe_new(zmq_msg_data(payload), zmq_msg_size(payload)) : NULL;
    s_answer(self->local, r + 1, to, reply ? MC_PROTO_CLIENT_REPLY : MC_PROTO_CLIENT_UNAVAILABLE, service,
             r + 1 + to, rid_size - 1 - to, &env, "no live node");
    zframe_destroy(&env);
}

static void
s_worker(front_t *self, mc_proto_msg_t *m)
{
    if (m->id == MC_PROTO_WORKER_READY) {
        if (!*m->service || strncmp(m->service, "mmi.", 4) == 0) {
            self->malformed++;
            return;
        }
        zhashx_update(self->workers, m->service, zframe_new(m->routing_id, m->routing_id_size));
        self->changed = true;
    }
    else
    if (m->id == MC_PROTO_WORKER_REPLY && m->client_size >= 4 && (size_t) 2 + m->client[1] < m->client_size) {
        zsock_t *to = m->client[0] == FROM_EXTERNAL ? self->ext : m->client[0] == FROM_LOCAL ? self->local : NULL;
        size_t id = m->client[1], len = m->client_size - 2 - id;
        char service[MC_PROTO_SERVICE_MAX + 1];
        if (to && id && len <= MC_PROTO_SERVICE_MAX) {
            memcpy(service, m->client + 2 + id, len);
            service[len] = 0;
            s_answer(to, m->client + 2, id, MC_PROTO_CLIENT_REPLY, service, m->request_id, m->request_id_size,
                     &m->envelope, NULL);
        }
    }
    else
    if (m->id == MC_PROTO_WORKER_DISCONNECT) {
        for (zframe_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
            if (zframe_size(w) == m->routing_id_size && memcmp(zframe_data(w), m->routing_id, m->routing_id_size) == 0) {
                zhashx_delete(self->workers, zhashx_cursor(self->workers));
                self->changed = true;
                break;
            }
    }
    else
    if (m->id != MC_PROTO_WORKER_HEARTBEAT)
        self->malformed++;
}

static void
s_announce(front_t *self)
{
    uint64_t now = mc_mono_ms();
    if (!self->changed && now < self->announce_at)
        return;
    //  mailer.* serves only its own node's notifications: not the directory's business
    zlistx_t *names = zhashx_keys(self->workers);
    zlistx_set_comparator(names, (zlistx_comparator_fn *) strcmp);
    zlistx_sort(names);
    size_t len = 0;
    for (const char *n = zlistx_first(names); n; n = zlistx_next(names))
        len += strlen(n) + 1;
    char *list = calloc(1, len + 1);
    for (const char *n = zlistx_first(names); n && list; n = zlistx_next(names))
        if (strncmp(n, "mailer.", 7) != 0) {
            strcat(list, *list ? " " : "");
            strcat(list, n);
        }
    mc_nodes_announce(self->nodes, self->args.node_id, self->endpoint, list ? list : "");
    free(list);
    zlistx_destroy(&names);
    self->changed = false;
    self->announce_at = now + ANNOUNCE_MS;
}

static bool
s_setup(front_t *self)
{
    self->workers = zhashx_new();
    self->ext = zsock_new(ZMQ_ROUTER);
    self->local = zsock_new(ZMQ_ROUTER);
    if (!self->workers || !self->ext || !self->local)
        return false;
    zhashx_set_destructor(self->workers, s_worker_free);
    mc_proto_socket_setup(self->ext);
    mc_plane_server(self->ext);
    mc_proto_socket_setup(self->local);
    if (zsock_bind(self->local, "%s", self->args.local) < 0) {
        mc_error("bind failed", "\"endpoint\":\"%s\"", self->args.local);
        return false;
    }
    if (zsock_bind(self->ext, "%s", self->args.bind) < 0) {
        mc_error("bind failed", "\"endpoint\":\"%s\",\"error\":\"%s\"", self->args.bind, zmq_strerror(zmq_errno()));
        return false;
    }
    char *bound = zsock_last_endpoint(self->ext);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", self->args.advertise ? self->args.advertise : bound);
    zstr_free(&bound);
    self->nodes = mc_nodes_new(self->args.broker, self->args.node_id, s_remote_answer, self);
    return self->nodes != NULL;
}

void
mc_front(zsock_t *pipe, void *args)
{
    front_t self = { .args = *(mc_front_args_t *) args, .changed = true };
    prctl(PR_SET_NAME, "front", 0, 0, 0);
    bool ok = s_setup(&self);
    zsock_signal(pipe, 0);
    zstr_send(pipe, ok ? self.endpoint : "");
    if (ok)
        mc_info("front listening", "\"node\":\"%s\",\"endpoint\":\"%s\"", self.args.node_id, self.endpoint);
    enum { PIPE, EXT, LOCAL, NODES };
    zsock_t *socks[6] = { pipe, self.ext, self.local };
    int n = 3 + (ok ? mc_nodes_socks(self.nodes, socks + 3) : 0);
    bool terminated = !ok;
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    while (!terminated) {
        int wait = ok ? mc_nodes_timeout(self.nodes) : 100;
        if (wait > ANNOUNCE_MS)
            wait = ANNOUNCE_MS;
        unsigned ready = mc_wait(socks, n, wait);
        if (ready & (1u << PIPE)) {
            zmsg_t *cmd = mc_recv_nowait(pipe, NULL);
            terminated = !cmd || zframe_streq(zmsg_first(cmd), "$TERM");
            zmsg_destroy(&cmd);
        }
        //  drain each side in bounded bursts: one wait per burst, not per message
        for (int i = 0; i < 256 && (ready & (1u << LOCAL)); i++) {
            int rc = mc_proto_msg_recv(&m, self.local, NULL, NULL);
            if (rc == MC_PROTO_AGAIN)
                break;
            if (rc)
                self.malformed++;
            else
            if (MC_PROTO_SIDE(m.id) == MC_PROTO_WORKER)
                s_worker(&self, &m);
            else
            if (m.id == MC_PROTO_CLIENT_REQUEST)
                s_local_request(&self, &m);
            else
                self.malformed++;
            mc_proto_msg_reset(&m);
        }
        for (int i = 0; i < 256 && (ready & (1u << EXT)); i++) {
            mc_peer_info_t peer;
            int rc = mc_proto_msg_recv(&m, self.ext, NULL, &peer);
            if (rc == MC_PROTO_AGAIN)
                break;
            if (rc || peer.role == MC_PEER_NONE || MC_PROTO_SIDE(m.id) != MC_PROTO_CLIENT)
                self.malformed++;   //  workers register over inproc only
            else
                s_external(&self, &m, &peer);
            mc_proto_msg_reset(&m);
        }
        mc_nodes_handle(self.nodes);
        s_announce(&self);
    }
    mc_info("front stopped", "\"node\":\"%s\",\"served\":%" PRIu64 ",\"read_here\":%" PRIu64 ",\"gathered\":%" PRIu64 ",\"forwarded\":%" PRIu64 ",\"moved\":%" PRIu64
            ",\"unavailable\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"malformed\":%" PRIu64,
            self.args.node_id, self.served, self.read_here, self.gathered, self.forwarded, self.moved, self.unavailable, self.refused, self.malformed);
    mc_nodes_destroy(&self.nodes);
    zhashx_destroy(&self.workers);
    zsock_destroy(&self.ext);
    zsock_destroy(&self.local);
}
