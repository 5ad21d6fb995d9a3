#include "mc_nodes.h"

#include "mc_gather.h"
#include "mc_log.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <stdatomic.h>

//  How long a request waits for a connection or a table before it is unavailable; and how
//  often it is tried meanwhile.
#define WAIT_MS 1000
#define RETRY_MS 5
//  Sends after MOVED, at most; then the shard counts as unavailable.
#define MOVES_MAX 5
//  The table is asked for this often, so a broker restart or a lost push costs at most this.
#define SUBSCRIBE_MS 1000
//  A request still unanswered after this is forgotten (its caller gave up long before).
#define FORGET_MS 60000

//  A request that went out and has no answer yet, or waits to go out.
typedef struct {
    char key[2 * MC_PROTO_REQUEST_ID_MAX + 1];      //  hex of rid
    byte rid[MC_PROTO_REQUEST_ID_MAX];
    size_t rid_size;
    char service[MC_PROTO_SERVICE_MAX + 1];
    char node[MC_DIR_NODE_ID_MAX + 16];     //  the link it went on (its routing id; "" while it waits)
    zmq_msg_t envelope;                     //  a copy, to send again after MOVED
    uint64_t first_ms, due_ms;              //  mono: first try; next try while it waits
    int moves;
    bool waiting;                           //  not sent: no connection or no table yet
} flight_t;

//  A node we are connected to, as the directory gave it at the time.
typedef struct {
    char endpoint[MC_DIR_ENDPOINT_MAX + 1];
    char key[MC_DIR_KEY_LEN + 1];
    char rid[MC_DIR_NODE_ID_MAX + 16];      //  "<node id>#<n>": a new one for every connect, as
                                            //  libzmq asserts a connect's routing id is not
                                            //  still held by the connection it replaces
    bool up;                //  its handshake succeeded and it has not closed since: ZeroMQ makes
                            //  a connection's pipe at connect time (ZMQ_IMMEDIATE would lose the
                            //  routing id), and what goes into the pipe of a dead address waits
                            //  there, so nothing is sent to a link that is not up
} link_t;

struct _mc_nodes_t {
    char *broker;
    char *self_id;
    mc_nodes_answer_fn *answer;
    void *arg;
    zsock_t *out;               //  ROUTER to the nodes
    zsock_t *dir_sock;          //  DEALER to the broker
    zsock_t *monitor;           //  out's closed connections
    mc_plane_watch_t *watch;    //  reconnects dir_sock after a failed handshake
    mc_dir_t *dir;
    zhashx_t *links;            //  node id -> link_t
    zhashx_t *flights;          //  hex rid -> flight_t
    size_t waiting;             //  flights waiting to go out
    uint64_t subscribe_at, forget_at;
    unsigned connects;          //  numbers the links' routing ids
    mc_nodes_stats_t stats;
};

static void
s_flight_free(void **item)
{
    flight_t *f = *item;
    if (f) {
        zmq_msg_close(&f->envelope);
        free(f);
        *item = NULL;
    }
}

static void
s_hex(char *out, const byte *data, size_t size)
{
    static const char digits[] = "0123456789ABCDEF";
    for (size_t i = 0; i < size; i++) {
        *out++ = digits[data[i] >> 4];
        *out++ = digits[data[i] & 15];
    }
    *out = 0;
}

static void
s_subscribe(mc_nodes_t *self)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_DIRECTORY_SUBSCRIBE;
    uint64_t v = self->dir ? mc_dir_version(self->dir) : 0;
    byte be[8];
    for (int i = 7; i >= 0; i--, v >>= 8)
        be[i] = (byte) v;
    mc_proto_msg_set_version(&m, be, sizeof be);
    mc_proto_msg_send(&m, self->dir_sock);
    self->subscribe_at = mc_mono_ms() + SUBSCRIBE_MS;
}

mc_nodes_t *
mc_nodes_new(const char *broker, const char *self_id, mc_nodes_answer_fn *answer, void *arg)
{
    mc_nodes_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->broker = strdup(broker);
    self->self_id = self_id ? strdup(self_id) : NULL;
    self->answer = answer;
    self->arg = arg;
    self->out = zsock_new(ZMQ_ROUTER);
    self->dir_sock = zsock_new(ZMQ_DEALER);
    self->links = zhashx_new();
    self->flights = zhashx_new();
    if (!self->broker || !self->out || !self->dir_sock || !self->links || !self->flights) {
        mc_nodes_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->links, (zhashx_destructor_fn *) zstr_free);
    zhashx_set_destructor(self->flights, s_flight_free);
    mc_proto_socket_setup(self->out);
    mc_plane_client(self->out);
    //  a send to a node we have no connection to fails at once (and waits here) rather than
    //  vanish
    zsock_set_router_mandatory(self->out, 1);
    zsock_set_sndtimeo(self->out, 0);
    zsock_set_reconnect_ivl(self->out, 10);
    zsock_set_reconnect_ivl_max(self->out, 250);
    static atomic_uint s_monitors;
    char name[64];
    snprintf(name, sizeof name, "inproc://mc-nodes-monitor-%u", atomic_fetch_add(&s_monitors, 1));
    if (zmq_socket_monitor(zsock_resolve(self->out), name, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) == 0
    &&  (self->monitor = zsock_new(ZMQ_PAIR)))
        zsock_connect(self->monitor, "%s", name);
    mc_proto_socket_setup(self->dir_sock);
    mc_plane_client(self->dir_sock);
    zsock_set_sndtimeo(self->dir_sock, 0);
    zsock_set_reconnect_ivl(self->dir_sock, 10);
    zsock_set_reconnect_ivl_max(self->dir_sock, 250);
    self->watch = mc_plane_watch_new(self->dir_sock, broker);
    zsock_connect(self->dir_sock, "%s", broker);
    s_subscribe(self);
    self->forget_at = mc_mono_ms() + FORGET_MS;
    return self;
}

void
mc_nodes_destroy(mc_nodes_t **self_p)
{
    mc_nodes_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy(&self->flights);
    zhashx_destroy(&self->links);
    mc_dir_destroy(&self->dir);
    if (self->monitor && self->out)
        zmq_socket_monitor(zsock_resolve(self->out), NULL, 0);
    zsock_destroy(&self->monitor);
    mc_plane_watch_destroy(&self->watch);
    zsock_destroy(&self->dir_sock);
    zsock_destroy(&self->out);
    free(self->self_id);
    free(self->broker);
    free(self);
    *self_p = NULL;
}

int
mc_nodes_socks(mc_nodes_t *self, zsock_t **socks)
{
    int n = 0;
    socks[n++] = self->out;
    socks[n++] = self->dir_sock;
    if (self->monitor)
        socks[n++] = self->monitor;
    return n;
}

mc_dir_t *
mc_nodes_dir(mc_nodes_t *self)
{
    return self->dir;
}

mc_nodes_stats_t
mc_nodes_stats(const mc_nodes_t *self)
{
    return self->stats;
}

//  Answers f through the callback and forgets it.
static void
s_finish(mc_nodes_t *self, flight_t *f, zmq_msg_t *reply)
{
    if (reply)
        self->stats.replies++;
    else
        self->stats.unavailable++;
    if (f->waiting)
        self->waiting--;
    self->answer(self->arg, reply != NULL, f->service, f->rid, f->rid_size, reply);
    zhashx_delete(self->flights, f->key);
}

//  Tries to send f to its shard's owner now. False when it must wait (no table yet, or no
//  connection to the owner yet); it is answered unavailable when there is no point waiting.
static bool
s_try(mc_nodes_t *self, flight_t *f)
{
    uint64_t now = mc_mono_ms();
    char route[MC_DIR_SERVICE_MAX + 1];
    const mc_dir_node_t *owner = self->dir ? mc_dir_owner(self->dir, mc_gather_route(f->service, route), NULL) : NULL;
    bool expired = now >= f->first_ms + WAIT_MS;
    if (self->dir && (!owner || !owner->up || (self->self_id && streq(owner->id, self->self_id)))) {
        //  no owner, or one the broker saw go: callers get 503 now rather than wait; a shard we
        //  own ourselves is never sent here (our front serves it)
        if (!owner || !owner->up || expired) {
            s_finish(self, f, NULL);
            return true;
        }
    }
    if (!owner) {
        if (expired)
            s_finish(self, f, NULL);
        return !expired ? false : true;
    }
    void *out = zsock_resolve(self->out);
    link_t *link = zhashx_lookup(self->links, owner->id);
    bool sent = link && link->up && zmq_send(out, link->rid, strlen(link->rid), ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    if (sent) {
        byte cmd = MC_PROTO_BYTE(MC_PROTO_CLIENT_REQUEST);
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, &f->envelope);
        zmq_send(out, MC_PROTO_CLIENT_SIGNATURE, MC_PROTO_SIGNATURE_SIZE, ZMQ_SNDMORE);
        zmq_send(out, &cmd, 1, ZMQ_SNDMORE);
        zmq_send(out, f->service, strlen(f->service), ZMQ_SNDMORE);
        zmq_send(out, f->rid, f->rid_size, ZMQ_SNDMORE);
        zmq_msg_send(&copy, out, 0);
        zmq_msg_close(&copy);
        snprintf(f->node, sizeof f->node, "%s", link->rid);
        self->stats.sent++;
        return true;
    }
    if (expired) {
        s_finish(self, f, NULL);
        return true;
    }
    return false;
}

static void
s_wait(mc_nodes_t *self, flight_t *f, uint64_t due)
{
    if (!f->waiting)
        self->waiting++;
    f->waiting = true;
    f->node[0] = 0;
    f->due_ms = due;
}

void
mc_nodes_send(mc_nodes_t *self, const char *service, const void *rid, size_t rid_size, zmq_msg_t *envelope)
{
    flight_t *f = calloc(1, sizeof *f);
    if (!f || rid_size == 0 || rid_size > sizeof f->rid || strlen(service) > MC_PROTO_SERVICE_MAX) {
        free(f);
        zmq_msg_close(envelope);
        self->stats.unavailable++;
        self->answer(self->arg, false, service, rid, rid_size, NULL);
        return;
    }
    memcpy(f->rid, rid, rid_size);
    f->rid_size = rid_size;
    s_hex(f->key, f->rid, rid_size);
    snprintf(f->service, sizeof f->service, "%s", service);
    zmq_msg_init(&f->envelope);
    zmq_msg_move(&f->envelope, envelope);
    f->first_ms = mc_mono_ms();
    //  the same id again replaces the old request (its caller gave up on it)
    flight_t *old = zhashx_lookup(self->flights, f->key);
    if (old && old->waiting)
        self->waiting--;
    zhashx_update(self->flights, f->key, f);
    if (!s_try(self, f))
        s_wait(self, f, f->first_ms + RETRY_MS);
}

//  Connects to every node of the table we are not connected to yet (or whose endpoint or key
//  changed), proving each by the key the table gives.
static void
s_links(mc_nodes_t *self)
{
    for (int i = 0; i < mc_dir_nodes(self->dir); i++) {
        const mc_dir_node_t *n = mc_dir_node_at(self->dir, i);
        if (!*n->endpoint || strlen(n->key) != MC_DIR_KEY_LEN || (self->self_id && streq(n->id, self->self_id)))
            continue;
        link_t *l = zhashx_lookup(self->links, n->id);
        if (l && streq(l->endpoint, n->endpoint) && streq(l->key, n->key))
            continue;
        if (l)
            zsock_disconnect(self->out, "%s", l->endpoint);
        link_t fresh = { .up = false };
        snprintf(fresh.endpoint, sizeof fresh.endpoint, "%s", n->endpoint);
        snprintf(fresh.key, sizeof fresh.key, "%s", n->key);
        snprintf(fresh.rid, sizeof fresh.rid, "%s#%u", n->id, ++self->connects);
        mc_plane_client_to(self->out, n->key);
        zmq_setsockopt(zsock_resolve(self->out), ZMQ_CONNECT_ROUTING_ID, fresh.rid, strlen(fresh.rid));
        if (zsock_connect(self->out, "%s", n->endpoint) != 0) {
            mc_warn("cannot connect to node", "\"node\":\"%s\",\"endpoint\":\"%s\"", n->id, n->endpoint);
            continue;
        }
        link_t *copy = malloc(sizeof *copy);
        if (copy) {
            *copy = fresh;
            zhashx_update(self->links, n->id, copy);
        }
    }
}

static void
s_table(mc_nodes_t *self, zframe_t *frame)
{
    mc_dir_t *dir = frame ? mc_dir_unpack(zframe_data(frame), zframe_size(frame)) : NULL;
    if (!dir) {
        mc_warn("directory table malformed", NULL);
        return;
    }
    if (self->dir && mc_dir_version(dir) <= mc_dir_version(self->dir) && mc_dir_version(dir) != 0
    &&  mc_dir_version(self->dir) - mc_dir_version(dir) < (1u << 30)) {
        mc_dir_destroy(&dir);
        return;
    }
    mc_dir_destroy(&self->dir);
    self->dir = dir;
    self->stats.tables++;
    s_links(self);
    //  whatever waited for a table (or for this change) tries again now
    uint64_t now = mc_mono_ms();
    for (flight_t *f = zhashx_first(self->flights); f; f = zhashx_next(self->flights))
        if (f->waiting)
            f->due_ms = now;
}

//  Whatever waits and is due tries again.
static void
s_retry(mc_nodes_t *self)
{
    if (!self->waiting)
        return;
    uint64_t now = mc_mono_ms();
    zlistx_t *due = zlistx_new();
    for (flight_t *f = zhashx_first(self->flights); f; f = zhashx_next(self->flights))
        if (f->waiting && f->due_ms <= now)
            zlistx_add_end(due, f);
    for (flight_t *f = zlistx_first(due); f; f = zlistx_next(due)) {
        f->waiting = false;
        self->waiting--;
        self->stats.resent++;
        if (!s_try(self, f))
            s_wait(self, f, now + RETRY_MS);
    }
    zlistx_destroy(&due);
}

//  An answer from a node: [node id, signature, command, service, rid, payload].
static bool
s_read_out(mc_nodes_t *self)
{
    zmsg_t *msg = mc_recv_nowait(self->out, NULL);
    if (!msg)
        return false;
    enum { N = 6 };
    const void *data[N];
    size_t size[N];
    int n = 0;
    for (zframe_t *fr = zmsg_first(msg); fr && n < N; fr = zmsg_next(msg), n++)
        data[n] = zframe_data(fr), size[n] = zframe_size(fr);
    mc_proto_id_t id = n == N && zmsg_size(msg) == N ? mc_proto_check(data + 1, size + 1, N - 1) : MC_PROTO_INVALID;
    char key[2 * MC_PROTO_REQUEST_ID_MAX + 1];
    flight_t *f = NULL;
    if (id == MC_PROTO_CLIENT_REPLY || id == MC_PROTO_CLIENT_UNAVAILABLE || id == MC_PROTO_CLIENT_MOVED) {
        s_hex(key, data[4], size[4]);
        f = zhashx_lookup(self->flights, key);
        //  only the node a request went to answers it
        if (f && (f->waiting || strlen(f->node) != size[0] || memcmp(f->node, data[0], size[0]) != 0))
            f = NULL;
    }
    if (f && id == MC_PROTO_CLIENT_REPLY) {
        zmq_msg_t reply;
        zmq_msg_init_size(&reply, size[5]);
        memcpy(zmq_msg_data(&reply), data[5], size[5]);
        s_finish(self, f, &reply);
        zmq_msg_close(&reply);
    }
    else
    if (f && id == MC_PROTO_CLIENT_UNAVAILABLE)
        s_finish(self, f, NULL);
    else
    if (f && id == MC_PROTO_CLIENT_MOVED) {
        self->stats.moved++;
        //  a gathered list whose shards are no longer all on one node: the asker plans again
        //  (mc_gather.h), as sending it anywhere again would be MOVED again
        if (++f->moves > MOVES_MAX || strstr(f->service, ".*"))
            s_finish(self, f, NULL);
        else {
            //  the node knows a newer owner than our table: fetch the table, then send again
            //  (a table that still names the same node sends it there again, which answers
            //  MOVED until the move is over or the moves run out)
            s_subscribe(self);
            f->first_ms = mc_mono_ms();
            s_wait(self, f, f->first_ms + 50);
        }
    }
    zmsg_destroy(&msg);
    return true;
}

//  A closed connection: what went to that node and is unanswered will never be answered.
static bool
s_read_monitor(mc_nodes_t *self)
{
    zmsg_t *event = self->monitor ? mc_recv_nowait(self->monitor, NULL) : NULL;
    if (!event)
        return false;
    zframe_t *head = zmsg_first(event);
    zframe_t *where = zmsg_size(event) == 2 ? zmsg_last(event) : NULL;
    uint16_t what = 0;
    if (head && zframe_size(head) == 6)
        memcpy(&what, zframe_data(head), sizeof what);
    char *endpoint = where ? zframe_strdup(where) : NULL;
    const char *node = NULL;
    for (link_t *l = zhashx_first(self->links); l && endpoint; l = zhashx_next(self->links))
        if (streq(l->endpoint, endpoint)) {
            node = l->rid;
            l->up = what == ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
        }
    if (node && what == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        //  what waited for this connection goes now
        uint64_t now = mc_mono_ms();
        for (flight_t *f = zhashx_first(self->flights); f; f = zhashx_next(self->flights))
            if (f->waiting)
                f->due_ms = now;
    }
    else
    if (node) {
        zlistx_t *lost = zlistx_new();
        for (flight_t *f = zhashx_first(self->flights); f; f = zhashx_next(self->flights))
            if (!f->waiting && streq(f->node, node))
                zlistx_add_end(lost, f);
        for (flight_t *f = zlistx_first(lost); f; f = zlistx_next(lost))
            s_finish(self, f, NULL);
        zlistx_destroy(&lost);
    }
    free(endpoint);
    zmsg_destroy(&event);
    return true;
}

static bool
s_read_dir(mc_nodes_t *self)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    int rc = mc_proto_msg_recv(&m, self->dir_sock, NULL, NULL);
    if (rc == MC_PROTO_AGAIN)
        return false;
    if (rc == 0 && m.id == MC_PROTO_DIRECTORY_TABLE)
        s_table(self, m.table);
    mc_proto_msg_reset(&m);
    return true;
}

void
mc_nodes_handle(mc_nodes_t *self)
{
    while (s_read_monitor(self))
        ;
    for (int i = 0; i < 16 && s_read_dir(self); i++)
        ;
    for (int i = 0; i < 256 && s_read_out(self); i++)
        ;
    s_retry(self);
    uint64_t now = mc_mono_ms();
    if (now >= self->subscribe_at) {
        mc_plane_watch_check(self->watch);
        s_subscribe(self);
    }
    if (now >= self->forget_at) {
        self->forget_at = now + FORGET_MS;
        zlistx_t *old = zlistx_new();
        for (flight_t *f = zhashx_first(self->flights); f; f = zhashx_next(self->flights))
            if (f->first_ms + FORGET_MS < now)
                zlistx_add_end(old, f);
        for (flight_t *f = zlistx_first(old); f; f = zlistx_next(old)) {
            if (f->waiting)
                self->waiting--;
            zhashx_delete(self->flights, f->key);
        }
        zlistx_destroy(&old);
    }
}

int
mc_nodes_timeout(const mc_nodes_t *self)
{
    if (self->waiting)
        return RETRY_MS;
    uint64_t now = mc_mono_ms();
    return self->subscribe_at > now ? (int) (self->subscribe_at - now) : 0;
}

void
mc_nodes_announce(mc_nodes_t *self, const char *node_id, const char *endpoint, const char *services)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_DIRECTORY_ANNOUNCE;
    mc_proto_msg_set_node_id(&m, node_id);
    mc_proto_msg_set_endpoint(&m, endpoint);
    zframe_t *list = zframe_new(services, strlen(services));
    mc_proto_msg_set_services(&m, &list);
    mc_proto_msg_send(&m, self->dir_sock);
}
