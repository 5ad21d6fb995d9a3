#include "mc_broker.h"

#include "mc_directory.h"

#include "mc_log.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_schema.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <stdatomic.h>

typedef struct _service_t service_t;

typedef struct {
    char *key;              //  hex of the worker's routing id
    zframe_t *address;      //  routing id, to send to it
    service_t *service;     //  what it serves
    char *node_id;          //  the node process it lives in
    char key_name[MC_PEER_NAME_MAX + 1];    //  the plane key it proved it holds
    void *handle;           //  its place in service->workers, for round-robin
    uint64_t expiry;        //  mono ms after which it is dead
    int fd;                 //  the connection its last message came on, or -1
    zhashx_t *pending;      //  "client-hex/request-id" -> zmsg_t header (client, request-id) it owes
} worker_t;

struct _service_t {
    char *name;             //  "catalog.0"
    zlistx_t *workers;      //  live workers, next to serve first
};

struct _mc_broker_t {
    zsock_t *router;        //  clients and workers connect here
    zsock_t *monitor;       //  the router's closed connections (ZMQ_EVENT_DISCONNECTED)
    char *endpoint;         //  bound endpoint
    zhashx_t *services;     //  name -> service_t
    zhashx_t *workers;      //  key -> worker_t
    uint64_t heartbeat_at;  //  next heartbeat round, mono ms
    //  counters, served by mmi.stats
    uint64_t requests, replies, unavailable, malformed, workers_expired;
    uint64_t refused;       //  messages from a peer whose role may not send them
    uint64_t handshakes_refused;    //  connections without an allowed key (or not CURVE at all)
    mc_directory_t *directory;      //  the shard table, when the broker keeps one
};

static void
s_service_destroy(void **item)
{
    service_t *s = *item;
    if (s) {
        zlistx_destroy(&s->workers);
        free(s->name);
        free(s);
        *item = NULL;
    }
}

static void
s_pending_destroy(void **item)
{
    zmsg_destroy((zmsg_t **) item);
}

mc_broker_t *
mc_broker_new(const char *endpoint)
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
    //  a worker whose process died is gone the moment its connection closes; heartbeats only
    //  decide for workers that are still connected but silent (a hung process, a lost host)
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
    self->services = zhashx_new();
    zhashx_set_destructor(self->services, s_service_destroy);
    self->workers = zhashx_new();
    self->heartbeat_at = mc_mono_ms() + MC_HEARTBEAT_MS;
    return self;
}

static void s_worker_delete(mc_broker_t *self, worker_t *w, bool disconnect);

void
mc_broker_destroy(mc_broker_t **self_p)
{
    mc_broker_t *self = *self_p;
    if (!self)
        return;
    if (self->workers) {
        worker_t *w;
        while ((w = zhashx_first(self->workers)))
            s_worker_delete(self, w, true);
        zhashx_destroy(&self->workers);
    }
    zhashx_destroy(&self->services);
    mc_directory_destroy(&self->directory);
    if (self->monitor && self->router)
        zmq_socket_monitor(zsock_resolve(self->router), NULL, 0);
    zsock_destroy(&self->monitor);
    zsock_destroy(&self->router);
    zstr_free(&self->endpoint);
    free(self);
    *self_p = NULL;
}

int
mc_broker_set_directory(mc_broker_t *self, const char *dir)
{
    mc_directory_destroy(&self->directory);
    self->directory = mc_directory_new(dir);
    return self->directory ? 0 : -1;
}

const char *
mc_broker_endpoint(mc_broker_t *self)
{
    return self->endpoint;
}

//  A command without fields (HEARTBEAT, DISCONNECT) to the worker at address.
static void
s_send_worker(mc_broker_t *self, const void *address, size_t size, mc_proto_id_t id)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = id;
    mc_proto_msg_set_routing_id(&m, address, size);
    mc_proto_msg_send(&m, self->router);
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
    else {
        mc_proto_msg_set_reason(&m, reason);
        self->unavailable++;
    }
    mc_proto_msg_send(&m, self->router);
}

static void
s_worker_delete(mc_broker_t *self, worker_t *w, bool disconnect)
{
    if (disconnect)
        s_send_worker(self, zframe_data(w->address), zframe_size(w->address), MC_PROTO_WORKER_DISCONNECT);
    //  every request it still owes gets a definite answer now rather than a client timeout
    const char *name = w->service ? w->service->name : "";
    for (zmsg_t *hdr = zhashx_first(w->pending); hdr; hdr = zhashx_next(w->pending)) {
        zframe_t *client = zmsg_first(hdr);
        zframe_t *rid = zmsg_next(hdr);
        s_send_client(self, zframe_data(client), zframe_size(client), name, zframe_data(rid), zframe_size(rid),
                      NULL, "node went away");
    }
    zhashx_destroy(&w->pending);
    if (w->service && w->handle)
        zlistx_delete(w->service->workers, w->handle);
    zhashx_delete(self->workers, w->key);
    zframe_destroy(&w->address);
    free(w->node_id);
    free(w->key);
    free(w);
}

static service_t *
s_service_require(mc_broker_t *self, const char *name)
{
    service_t *s = zhashx_lookup(self->services, name);
    if (!s) {
        s = calloc(1, sizeof *s);
        s->name = strdup(name);
        s->workers = zlistx_new();
        zhashx_insert(self->services, name, s);
    }
    return s;
}

//  Writes size bytes of data in hex and a NUL to out (2 * size + 1 bytes); returns the NUL.
static char *
s_hex(char *out, const byte *data, size_t size)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < size; i++) {
        *out++ = digits[data[i] >> 4];
        *out++ = digits[data[i] & 15];
    }
    *out = 0;
    return out;
}

//  The longest "client-hex/request-id-hex" and its NUL.
#define PENDING_KEY_MAX (2 * MC_PROTO_CLIENT_MAX + 1 + 2 * MC_PROTO_REQUEST_ID_MAX + 1)

//  "client-hex/request-id-hex": request ids are binary (the edge's hold NUL bytes), so both in
//  hex. out holds PENDING_KEY_MAX; the codec bounds both parts.
static void
s_pending_key(char *out, const byte *client, size_t client_size, const byte *rid, size_t rid_size)
{
    char *at = s_hex(out, client, client_size);
    *at++ = '/';
    s_hex(at, rid, rid_size);
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

//  The services a node's key may serve: the actors of schemas/ and the node's mailer.
static bool
s_servable(const char *service)
{
    const char *dot = strrchr(service, '.');
    size_t base = dot ? (size_t) (dot - service) : strlen(service);
    if (!dot || !dot[1] || strspn(dot + 1, "0123456789") != strlen(dot + 1))
        return false;
    if (base == 6 && memcmp(service, "mailer", 6) == 0)
        return true;
    for (size_t i = 0; i < mc_services_count; i++)
        if (strlen(mc_services[i].name) == base && memcmp(mc_services[i].name, service, base) == 0)
            return true;
    return false;
}

static void
s_handle_mmi(mc_broker_t *self, mc_proto_msg_t *req)
{
    const char *service = req->service;
    zframe_t *reply;
    if (streq(service, "mmi.service")) {
        char *name = req->envelope ? zframe_strdup(req->envelope) : strdup("");
        service_t *s = zhashx_lookup(self->services, name);
        reply = zframe_from(s && zlistx_size(s->workers) ? "200" : "404");
        free(name);
    }
    else
    if (streq(service, "mmi.directory") && self->directory) {
        char *json = mc_dir_json(mc_directory_table(self->directory));
        reply = zframe_from(json ? json : "{}");
        free(json);
    }
    else
    if (streq(service, "mmi.services") && self->directory) {
        //  the shards a live node runs now
        mc_dir_t *dir = mc_directory_table(self->directory);
        char *text = strdup("");
        for (int i = 0; i < mc_dir_shards(dir); i++) {
            const mc_dir_shard_t *sh = mc_dir_shard_at(dir, i);
            const mc_dir_node_t *n = mc_dir_node_at(dir, sh->node);
            if (sh->up && n && n->up) {
                char *line = zsys_sprintf("%s%s\n", text, sh->name);
                free(text);
                text = line;
            }
        }
        reply = zframe_from(text);
        free(text);
    }
    else
    if (streq(service, "mmi.services") || streq(service, "mmi.nodes")) {
        bool nodes = streq(service, "mmi.nodes");
        char *text = strdup("");
        for (service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services)) {
            for (worker_t *w = zlistx_first(s->workers); w; w = zlistx_next(s->workers)) {
                char *line = zsys_sprintf("%s%s%s%s\n", text, s->name, nodes ? " " : "", nodes ? w->node_id : "");
                free(text);
                text = line;
                if (!nodes)
                    break;
            }
        }
        reply = zframe_from(text);
        free(text);
    }
    else
    if (streq(service, "mmi.stats")) {
        char *text = zsys_sprintf(
            "mercato_broker_requests_total %" PRIu64 "\nmercato_broker_replies_total %" PRIu64 "\n"
            "mercato_broker_unavailable_total %" PRIu64 "\nmercato_broker_malformed_frames_total %" PRIu64 "\n"
            "mercato_broker_workers_expired_total %" PRIu64 "\nmercato_broker_refused_total %" PRIu64
            "\nmercato_broker_handshakes_refused_total %" PRIu64 "\nmercato_broker_workers %zu\n",
            self->requests, self->replies, self->unavailable, self->malformed,
            self->workers_expired, self->refused, self->handshakes_refused, zhashx_size(self->workers));
        reply = zframe_from(text);
        free(text);
    }
    else
        reply = zframe_from("501");
    s_send_client(self, req->routing_id, req->routing_id_size, service, req->request_id, req->request_id_size,
                  &reply, NULL);
}

static void
s_handle_client(mc_broker_t *self, mc_proto_msg_t *req, const mc_peer_info_t *peer)
{
    if (req->id != MC_PROTO_CLIENT_REQUEST) {       //  REPLY and UNAVAILABLE go the other way
        self->malformed++;
        return;
    }
    self->requests++;
    const char *service = req->service;
    if (strncmp(service, "mmi.", 4) == 0)
        s_handle_mmi(self, req);
    else
    if (peer->role != MC_PEER_EDGE && peer->role != MC_PEER_NODE)
        //  relay and ops keys look, they do not ask actors for anything
        s_refuse(self, peer, "request", service);
    else {
        service_t *s = zhashx_lookup(self->services, service);
        worker_t *w = s ? zlistx_first(s->workers) : NULL;
        if (!w)
            s_send_client(self, req->routing_id, req->routing_id_size, service, req->request_id,
                          req->request_id_size, NULL, "no live node");
        else {
            zlistx_move_end(s->workers, w->handle);
            char key[PENDING_KEY_MAX];
            s_pending_key(key, req->routing_id, req->routing_id_size, req->request_id, req->request_id_size);
            zmsg_t *hdr = zmsg_new();
            zmsg_addmem(hdr, req->routing_id, req->routing_id_size);
            zmsg_addmem(hdr, req->request_id, req->request_id_size);
            zhashx_update(w->pending, key, hdr);
            //  the worker learns which key sent it and with which role: an actor believes a
            //  caller's identity only from the kind of peer allowed to assert it
            mc_proto_msg_t out;
            mc_proto_msg_init(&out);
            out.id = MC_PROTO_WORKER_REQUEST;
            mc_proto_msg_set_routing_id(&out, zframe_data(w->address), zframe_size(w->address));
            mc_proto_msg_set_client(&out, req->routing_id, req->routing_id_size);
            mc_proto_msg_set_request_id(&out, req->request_id, req->request_id_size);
            mc_proto_msg_set_peer_key(&out, peer->name);
            out.peer_role = peer->role;
            mc_proto_msg_set_envelope(&out, &req->envelope);
            mc_proto_msg_send(&out, self->router);
        }
    }
}

static void
s_handle_worker(mc_broker_t *self, mc_proto_msg_t *msg, int fd, const mc_peer_info_t *peer)
{
    char key[2 * MC_PROTO_ROUTING_ID_MAX + 1];
    s_hex(key, msg->routing_id, msg->routing_id_size);
    worker_t *w = zhashx_lookup(self->workers, key);
    if (msg->id == MC_PROTO_WORKER_READY) {
        const char *service = msg->service, *node = msg->node_id;
        if (strncmp(service, "mmi.", 4) == 0) {
            self->malformed++;
            s_send_worker(self, msg->routing_id, msg->routing_id_size, MC_PROTO_WORKER_DISCONNECT);
        }
        else
        if (peer->role != MC_PEER_NODE || !s_servable(service)) {
            //  only a node's key serves actors; an edge, relay or ops key claiming a service
            //  would be handed other people's requests
            s_refuse(self, peer, "ready", service);
            s_send_worker(self, msg->routing_id, msg->routing_id_size, MC_PROTO_WORKER_DISCONNECT);
        }
        else {
            if (w)      //  a second READY means the worker restarted its session
                s_worker_delete(self, w, false);
            //  the same node serving the same service from a new socket has restarted: its old
            //  session is dead, so stop routing to it now rather than when its heartbeats run out
            //  (the same node: the same id proved with the same key, so another key cannot evict it)
            service_t *existing = *node ? zhashx_lookup(self->services, service) : NULL;
            for (worker_t *old = existing ? zlistx_first(existing->workers) : NULL; old; ) {
                worker_t *next = zlistx_next(existing->workers);
                if (streq(old->node_id, node) && streq(old->key_name, peer->name)) {
                    mc_info("worker replaced", "\"service\":\"%s\",\"node\":\"%s\"", service, node);
                    s_worker_delete(self, old, true);
                }
                old = next;
            }
            w = calloc(1, sizeof *w);
            w->key = strdup(key);
            w->address = zframe_new(msg->routing_id, msg->routing_id_size);
            w->node_id = strdup(node);
            snprintf(w->key_name, sizeof w->key_name, "%s", peer->name);
            w->pending = zhashx_new();
            zhashx_set_destructor(w->pending, s_pending_destroy);
            w->service = s_service_require(self, service);
            w->handle = zlistx_add_start(w->service->workers, w);
            w->expiry = mc_mono_ms() + MC_HEARTBEAT_MS * MC_HEARTBEAT_LIVENESS;
            w->fd = fd;
            zhashx_insert(self->workers, key, w);
            mc_info("worker ready", "\"service\":\"%s\",\"node\":\"%s\"", service, w->node_id);
        }
    }
    else
    if (!w) {
        //  unknown worker (we restarted, or it expired): make it start a new session; from a
        //  key that may never serve, it is no worker at all but a peer trying to pass as one
        if (msg->id == MC_PROTO_WORKER_REPLY || msg->id == MC_PROTO_WORKER_HEARTBEAT) {
            if (peer->role != MC_PEER_NODE)
                s_refuse(self, peer, msg->id == MC_PROTO_WORKER_REPLY ? "reply" : "heartbeat", "");
            s_send_worker(self, msg->routing_id, msg->routing_id_size, MC_PROTO_WORKER_DISCONNECT);
        }
        else
            self->malformed++;
    }
    else
    if (msg->id == MC_PROTO_WORKER_REPLY) {
        w->fd = fd;
        char pkey[PENDING_KEY_MAX];
        s_pending_key(pkey, msg->client, msg->client_size, msg->request_id, msg->request_id_size);
        if (zhashx_lookup(w->pending, pkey)) {
            zhashx_delete(w->pending, pkey);
            s_send_client(self, msg->client, msg->client_size, w->service->name, msg->request_id,
                          msg->request_id_size, &msg->envelope, NULL);
            self->replies++;
        }
        else
            //  a reply is accepted only from the worker the request went to, once
            s_refuse(self, peer, "reply", w->service->name);
        w->expiry = mc_mono_ms() + MC_HEARTBEAT_MS * MC_HEARTBEAT_LIVENESS;
    }
    else
    if (msg->id == MC_PROTO_WORKER_HEARTBEAT) {
        w->expiry = mc_mono_ms() + MC_HEARTBEAT_MS * MC_HEARTBEAT_LIVENESS;
        w->fd = fd;
    }
    else
    if (msg->id == MC_PROTO_WORKER_DISCONNECT) {
        mc_info("worker left", "\"service\":\"%s\",\"node\":\"%s\"", w->service->name, w->node_id);
        s_worker_delete(self, w, false);
    }
    else
        self->malformed++;      //  a REQUEST goes from the broker, never to it
}

static void
s_heartbeat(mc_broker_t *self)
{
    uint64_t now = mc_mono_ms();
    if (now < self->heartbeat_at)
        return;
    //  with messages still waiting, a worker's heartbeat may be among them: a broker that is
    //  behind gives its workers a second more before calling them dead
    bool behind = (zsock_events(self->router) & ZMQ_POLLIN) != 0;
    uint64_t grace = behind ? 1000 : 0;
    zlistx_t *dead = zlistx_new();
    for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        if (w->expiry + grace < now)
            zlistx_add_end(dead, w);
        else
            s_send_worker(self, zframe_data(w->address), zframe_size(w->address), MC_PROTO_WORKER_HEARTBEAT);
    }
    for (worker_t *w = zlistx_first(dead); w; w = zlistx_next(dead)) {
        mc_warn("worker expired", "\"service\":\"%s\",\"node\":\"%s\"", w->service->name, w->node_id);
        self->workers_expired++;
        s_worker_delete(self, w, true);
    }
    zlistx_destroy(&dead);
    if (self->directory)
        mc_directory_tick(self->directory, self->router);
    self->heartbeat_at = now + MC_HEARTBEAT_MS;
}

//  A connection closed: the workers that spoke on it are gone (their process died or left).
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
        if (id == ZMQ_EVENT_DISCONNECTED && self->directory)
            mc_directory_disconnected(self->directory, self->router, fd);
        zlistx_t *gone = zlistx_new();
        for (worker_t *w = zhashx_first(self->workers); w && id == ZMQ_EVENT_DISCONNECTED; w = zhashx_next(self->workers))
            if (w->fd == fd)
                zlistx_add_end(gone, w);
        for (worker_t *w = zlistx_first(gone); w; w = zlistx_next(gone)) {
            mc_warn("worker disconnected", "\"service\":\"%s\",\"node\":\"%s\"", w->service->name, w->node_id);
            self->workers_expired++;
            s_worker_delete(self, w, false);
        }
        zlistx_destroy(&gone);
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
        //  take the new connection's worker with it
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
            if (rc == MC_PROTO_MALFORMED) {
                self->malformed++;
                //  a worker whose READY did not parse starts again rather than wait for nothing
                if (msg.id == MC_PROTO_WORKER_READY)
                    s_send_worker(self, msg.routing_id, msg.routing_id_size, MC_PROTO_WORKER_DISCONNECT);
            }
            else
            if (MC_PROTO_SIDE(msg.id) == MC_PROTO_DIRECTORY) {
                if (self->directory)
                    mc_directory_handle(self->directory, self->router, &msg, fd, &peer);
                else
                    self->malformed++;
            }
            else
            if (MC_PROTO_SIDE(msg.id) == MC_PROTO_CLIENT)
                s_handle_client(self, &msg, &peer);
            else
                s_handle_worker(self, &msg, fd, &peer);
            mc_proto_msg_reset(&msg);
        }
        s_heartbeat(self);
    }
}

void
mc_broker_actor(zsock_t *pipe, void *args)
{
    mc_broker_t *self = mc_broker_new(args);
    zsock_signal(pipe, 0);
    zstr_send(pipe, self ? mc_broker_endpoint(self) : "");
    if (self)
        mc_broker_run(self, pipe);
    mc_broker_destroy(&self);
}
