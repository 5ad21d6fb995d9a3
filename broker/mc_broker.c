#include "mc_broker.h"

#include "mc_directory.h"

#include "mc_log.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_schema.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <stdatomic.h>

struct _mc_broker_t {
    zsock_t *router;        //  nodes and clients connect here
    zsock_t *monitor;       //  the router's closed connections (ZMQ_EVENT_DISCONNECTED)
    char *endpoint;         //  bound endpoint
    uint64_t heartbeat_at;  //  next round of the directory's liveness checks, mono ms
    //  counters, served by mmi.stats
    uint64_t requests, malformed;
    uint64_t refused;       //  messages from a peer whose role may not send them
    uint64_t handshakes_refused;    //  connections without an allowed key (or not CURVE at all)
    mc_directory_t *directory;      //  the shard table, when the broker keeps one
};

mc_broker_t *
mc_broker_new(const char *endpoint, const char *dir)
{
    mc_broker_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) {
        mc_broker_destroy(&self);
        return NULL;
    }
    mc_proto_socket_setup(self->router);
    //  nothing on the plane is trusted for being there: every peer proves a key on the allow-list
    mc_plane_server(self->router);
    //  a comma-separated list: typically ipc:// for this host's processes, tcp:// for other hosts
    char *list = strdup(endpoint), *save = NULL;
    for (char *ep = strtok_r(list, ",", &save); ep; ep = strtok_r(NULL, ",", &save)) {
        if (zsock_bind(self->router, "%s", ep) < 0) {
            mc_error("bind failed", "\"endpoint\":\"%s\",\"error\":\"%s\"", ep, zmq_strerror(zmq_errno()));
            free(list);
            mc_broker_destroy(&self);
            return NULL;
        }
        if (!self->endpoint)
            self->endpoint = zsock_last_endpoint(self->router);
    }
    free(list);
    if (!self->endpoint) {
        mc_broker_destroy(&self);
        return NULL;
    }
    //  a node whose process died is gone the moment its connection closes; its announcements
    //  falling silent decide for nodes still connected (a hung process, a lost host)
    //  a name never used before: a previous broker's monitor may still be bound to its own
    static atomic_uint s_monitors;
    char monitor[64];
    snprintf(monitor, sizeof monitor, "inproc://mc-broker-monitor-%u", atomic_fetch_add(&s_monitors, 1));
    //  and a connection that fails the CURVE handshake (no allowed key) is counted and logged:
    //  it never gets as far as a message
    int events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
               | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL;
    if (zmq_socket_monitor(zsock_resolve(self->router), monitor, events) == 0)
        self->monitor = zsock_new(ZMQ_PAIR);
    if (self->monitor)
        zsock_connect(self->monitor, "%s", monitor);
    self->heartbeat_at = mc_mono_ms() + MC_HEARTBEAT_MS;
    self->directory = mc_directory_new(dir);
    if (!self->directory)
        mc_broker_destroy(&self);
    return self;
}

void
mc_broker_destroy(mc_broker_t **self_p)
{
    mc_broker_t *self = *self_p;
    if (!self)
        return;
    mc_directory_destroy(&self->directory);
    if (self->monitor && self->router)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->router);
    zstr_free(&self->endpoint);
    free(self);
    *self_p = NULL;
}

const char *
mc_broker_endpoint(mc_broker_t *self)
{
    return self->endpoint;
}

//  Answers request rid of the client at client: REPLY with *reply (taken), or UNAVAILABLE with
//  reason when reply is NULL.
static void
s_send_client(mc_broker_t *self, const void *client, size_t client_size, const char *service,
              const void *rid, size_t rid_size, zframe_t **reply, const char *reason)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = reply ? MC_PROTO_CLIENT_REPLY : MC_PROTO_CLIENT_UNAVAILABLE;
    mc_proto_msg_set_routing_id(&m, client, client_size);
    mc_proto_msg_set_service(&m, service);
    mc_proto_msg_set_request_id(&m, rid, rid_size);
    if (reply)
        mc_proto_msg_set_envelope(&m, reply);
    else
        mc_proto_msg_set_reason(&m, reason);
    mc_proto_msg_send(&m, self->router);
}

//  A peer asked for what its role does not allow: it gets nothing, and it is counted and logged
//  (at most 10 lines a second, so a flood cannot fill the disk).
static void
s_refuse(mc_broker_t *self, const mc_peer_info_t *peer, const char *what, const char *service)
{
    static uint64_t window, lines;
    self->refused++;
    uint64_t now = mc_mono_ms() / 1000;
    if (now != window)
        window = now, lines = 0;
    if (lines++ < 10) {
        char svc[80];
        mc_warn("peer refused", "\"what\":\"%s\",\"role\":\"%s\",\"key\":\"%s\",\"service\":\"%s\",\"refused_total\":%" PRIu64,
                what, mc_peer_name(peer->role), peer->name, mc_log_escape(svc, sizeof svc, service, strlen(service)),
                self->refused);
    }
}

//  "<line>\n" for every shard of the table with a live owner: "<shard>", or with nodes
//  "<shard> <node-id>".
static char *
s_up_shards(mc_dir_t *dir, bool nodes)
{
    char *text = strdup("");
    for (int i = 0; i < mc_dir_shards(dir) && text; i++) {
        const mc_dir_shard_t *sh = mc_dir_shard_at(dir, i);
        const mc_dir_node_t *n = mc_dir_node_at(dir, sh->node);
        if (sh->up && n && n->up) {
            char *line = zsys_sprintf("%s%s%s%s\n", text, sh->name, nodes ? " " : "", nodes ? n->id : "");
            free(text);
            text = line;
        }
    }
    return text;
}

static void
s_handle_mmi(mc_broker_t *self, mc_proto_msg_t *req)
{
    const char *service = req->service;
    mc_dir_t *dir = mc_directory_table(self->directory);
    zframe_t *reply;
    if (streq(service, "mmi.service")) {
        char *name = req->envelope ? zframe_strdup(req->envelope) : strdup("");
        const mc_dir_shard_t *sh = name ? mc_dir_shard(dir, name, false) : NULL;
        const mc_dir_node_t *n = sh ? mc_dir_node_at(dir, sh->node) : NULL;
        reply = zframe_from(sh && sh->up && n && n->up ? "200" : "404");
        free(name);
    }
    else
    if (streq(service, "mmi.directory")) {
        char *json = mc_dir_json(dir);
        reply = zframe_from(json ? json : "{}");
        free(json);
    }
    else
    if (streq(service, "mmi.services") || streq(service, "mmi.nodes")) {
        char *text = s_up_shards(dir, streq(service, "mmi.nodes"));
        reply = zframe_from(text ? text : "");
        free(text);
    }
    else
    if (streq(service, "mmi.stats")) {
        mc_directory_stats_t d = mc_directory_stats(self->directory);
        char *text = zsys_sprintf(
            "mercato_broker_requests_total %" PRIu64 "\nmercato_broker_malformed_frames_total %" PRIu64 "\n"
            "mercato_broker_refused_total %" PRIu64 "\nmercato_broker_handshakes_refused_total %" PRIu64 "\n"
            "mercato_directory_announces_total %" PRIu64 "\nmercato_directory_conflicts_total %" PRIu64 "\n"
            "mercato_directory_takeovers_total %" PRIu64 "\nmercato_directory_tables_sent_total %" PRIu64 "\n"
            "mercato_directory_version %" PRIu64 "\n",
            self->requests, self->malformed, self->refused, self->handshakes_refused, d.announces, d.conflicts,
            d.takeovers, d.published, mc_dir_version(dir));
        reply = zframe_from(text);
        free(text);
    }
    else
        reply = zframe_from("501");
    s_send_client(self, req->routing_id, req->routing_id_size, service, req->request_id, req->request_id_size,
                  &reply, NULL);
}

//  A client-protocol message: mmi.* is ours; a request for a shard goes to its node, never here
//  (the broker is the directory, not the road).
static void
s_handle_client(mc_broker_t *self, mc_proto_msg_t *req, const mc_peer_info_t *peer)
{
    if (req->id != MC_PROTO_CLIENT_REQUEST) {       //  answers go the other way
        self->malformed++;
        return;
    }
    self->requests++;
    if (strncmp(req->service, "mmi.", 4) == 0)
        s_handle_mmi(self, req);
    else
    if (peer->role != MC_PEER_EDGE && peer->role != MC_PEER_NODE)
        s_refuse(self, peer, "request", req->service);
    else
        s_send_client(self, req->routing_id, req->routing_id_size, req->service, req->request_id,
                      req->request_id_size, NULL, "the broker is the directory: ask the shard's node (mmi.directory)");
}

static void
s_heartbeat(mc_broker_t *self)
{
    uint64_t now = mc_mono_ms();
    if (now < self->heartbeat_at)
        return;
    mc_directory_tick(self->directory, self->router);
    self->heartbeat_at = now + MC_HEARTBEAT_MS;
}

//  A connection closed: a node that announced on it is gone (its process died or left); a
//  handshake failed: counted and logged.
static bool
s_handle_monitor(mc_broker_t *self)
{
    zmsg_t *event = mc_recv_nowait(self->monitor, NULL);
    if (!event)
        return false;
    zframe_t *head = event ? zmsg_first(event) : NULL;
    if (head && zframe_size(head) == 6) {
        //  16-bit event and 32-bit value (the descriptor), in host order
        const byte *d = zframe_data(head);
        uint16_t id;
        int32_t fd;
        memcpy(&id, d, sizeof id);
        memcpy(&fd, d + 2, sizeof fd);
        if (id != ZMQ_EVENT_DISCONNECTED) {
            static uint64_t window, lines;
            uint64_t now = mc_mono_ms() / 1000;
            self->handshakes_refused++;
            if (now != window)
                window = now, lines = 0;
            if (lines++ < 10) {
                zframe_t *where = zmsg_next(event);
                char endpoint[128];
                mc_warn("connection refused", "\"why\":\"%s\",\"endpoint\":\"%s\",\"refused_total\":%" PRIu64,
                        id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "no allowed key" : "not a CURVE handshake",
                        where ? mc_log_escape(endpoint, sizeof endpoint, (const char *) zframe_data(where), zframe_size(where)) : "",
                        self->handshakes_refused);
            }
        }
        if (id == ZMQ_EVENT_DISCONNECTED)
            mc_directory_disconnected(self->directory, self->router, fd);
    }
    zmsg_destroy(&event);
    return true;
}

void
mc_broker_run(mc_broker_t *self, zsock_t *pipe)
{
    enum { ROUTER = 1, PIPE = 2, MONITOR = 4 };
    zsock_t *socks[3] = { self->router };
    unsigned role[3] = { ROUTER };
    int n = 1;
    if (pipe)
        socks[n] = pipe, role[n++] = PIPE;
    if (self->monitor)
        socks[n] = self->monitor, role[n++] = MONITOR;
    while (!zsys_interrupted) {
        uint64_t now = mc_mono_ms();
        int wait = self->heartbeat_at > now ? (int) (self->heartbeat_at - now) : 0;
        unsigned got = mc_wait(socks, n, wait), ready = 0;
        for (int i = 0; i < n; i++)
            if (got & (1u << i))
                ready |= role[i];
        if (ready & PIPE) {
            zmsg_t *cmd = mc_recv_nowait(pipe, NULL);
            bool term = cmd && zframe_streq(zmsg_first(cmd), "$TERM");
            zmsg_destroy(&cmd);
            if (term)
                break;
        }
        //  closed connections first: a descriptor closed and reused by a new connection must not
        //  take the new connection's node with it
        if (ready & MONITOR)
            while (s_handle_monitor(self))
                ;
        //  drain what is there before the next wait: one wait per burst, not per message
        for (int i = 0; i < 1000 && (ready & ROUTER); i++) {
            int fd;
            mc_peer_info_t peer;
            mc_proto_msg_t msg;
            mc_proto_msg_init(&msg);
            int rc = mc_proto_msg_recv(&msg, self->router, &fd, &peer);
            if (rc == MC_PROTO_AGAIN)
                break;
            if (peer.role == MC_PEER_NONE)
                //  ZAP lets no such peer connect; a message without a role is never served
                s_refuse(self, &peer, "unauthenticated", "");
            else
            if (rc == MC_PROTO_MALFORMED)
                self->malformed++;
            else
            if (MC_PROTO_SIDE(msg.id) == MC_PROTO_DIRECTORY) {
                //  only a node's key announces shards: any other would be handed their requests
                if (mc_directory_handle(self->directory, self->router, &msg, fd, &peer))
                    s_refuse(self, &peer, "announce", msg.node_id);
            }
            else
            if (MC_PROTO_SIDE(msg.id) == MC_PROTO_CLIENT)
                s_handle_client(self, &msg, &peer);
            else
                //  workers register with their own node's front, over inproc
                s_refuse(self, &peer, "worker", msg.service);
            mc_proto_msg_reset(&msg);
        }
        s_heartbeat(self);
    }
}

void
mc_broker_actor(zsock_t *pipe, void *args)
{
    const mc_broker_actor_args_t *a = args;
    mc_broker_t *self = mc_broker_new(a->endpoint, a->dir);
    zsock_signal(pipe, 0);
    zstr_send(pipe, self ? mc_broker_endpoint(self) : "");
    if (self)
        mc_broker_run(self, pipe);
    mc_broker_destroy(&self);
}
