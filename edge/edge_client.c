#include "edge_client.h"

#include "mc_envelope.h"
#include "mc_log.h"
#include "mc_nodes.h"
#include "mc_proto.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <pthread.h>

/*  HTTP worker threads do not talk to nodes themselves. Each has an inproc DEALER to one
    dispatcher thread, which sends every request straight to the node that owns its shard
    (mc_nodes.h: the directory's table, one CURVE connection per node) and `mmi.*` to the
    broker. One thread and one socket for all of it lets ZeroMQ batch many messages per system
    call under load; a socket per thread cost a send and a receive per request on 64+
    connections.

    Request id on the node leg: one length byte, the worker's inproc routing id, then the
    worker's own sequence number; the dispatcher reads the worker back out of it.

    The dispatcher moves zmq_msg_t parts from one socket to the other rather than decode and
    encode with mc_proto_msg_t, which would copy every envelope twice more; it takes the
    protocol's constants and bounds from the codec's generated header and checks what the
    broker sends with mc_proto_check, the codec's grammar without the copies. */

#define DISPATCH_ENDPOINT "inproc://mercato-edge-dispatch"
#define ROUTING_ID_MAX 32
#define SEQ_MAX 16
_Static_assert(1 + ROUTING_ID_MAX + SEQ_MAX <= MC_PROTO_REQUEST_ID_MAX, "a worker's request id must fit the protocol's");
//  a REPLY and an UNAVAILABLE are read alike: the request id in the same place, then the last part
_Static_assert(MC_PROTO_CLIENT_REPLY_FRAMES == MC_PROTO_CLIENT_UNAVAILABLE_FRAMES
               && MC_PROTO_CLIENT_REPLY_AT_REQUEST_ID == MC_PROTO_CLIENT_UNAVAILABLE_AT_REQUEST_ID,
               "REPLY and UNAVAILABLE must have the same layout");

static char *s_broker;
static pthread_t s_thread;
static volatile int s_running;
static zsock_t *s_frontend;     //  ROUTER, inproc, facing the worker threads
static zsock_t *s_backend;      //  DEALER to the broker
static mc_plane_watch_t *s_watch;   //  reconnects s_backend after a failed handshake
static mc_nodes_t *s_nodes;     //  to the nodes, by the directory

//  the dispatcher's table as workers read it (edge_client_owners): a copy, replaced whole
static pthread_mutex_t s_owners_lock = PTHREAD_MUTEX_INITIALIZER;
static mc_dir_t *s_owners;
static uint64_t s_owners_version;

static _Thread_local zsock_t *s_sock;
static _Thread_local uint64_t s_seq;

//  Receives every part of one message into parts (at most max); returns the count, or -1 when
//  the message had more parts than max (they are drained and closed).
static int
s_recv_parts(void *sock, zmq_msg_t *parts, int max)
{
    int n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            break;
        }
        more = zmq_msg_more(&part);
        if (n < max)
            parts[n++] = part;
        else {
            zmq_msg_close(&part);
            n = max + 1;
        }
    }
    if (n > max) {
        for (int i = 0; i < max; i++)
            zmq_msg_close(&parts[i]);
        return -1;
    }
    return n;
}

static void
s_close_parts(zmq_msg_t *parts, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close(&parts[i]);
}

//  [worker-id, kind, seq, payload] back to a worker.
static void
s_to_worker(void *front, const void *wid, size_t wlen, int kind, const void *seq, size_t slen, zmq_msg_t *payload)
{
    byte k = (byte) kind;
    zmq_send(front, wid, wlen, ZMQ_SNDMORE);
    zmq_send(front, &k, 1, ZMQ_SNDMORE);
    zmq_send(front, seq, slen, ZMQ_SNDMORE);
    if (payload)
        zmq_msg_send(payload, front, 0);
    else
        zmq_send(front, "", 0, 0);
}

//  The shards of dir whose owner is up, one per line (mmi.services' answer).
static void
s_up_shards(mc_dir_t *dir, zmq_msg_t *out)
{
    size_t len = 0;
    for (int i = 0; i < mc_dir_shards(dir); i++)
        len += strlen(mc_dir_shard_at(dir, i)->name) + 1;
    zmq_msg_init_size(out, len + 1);     //  sprintf's NUL after the last line
    char *at = zmq_msg_data(out);
    for (int i = 0; i < mc_dir_shards(dir); i++) {
        const mc_dir_shard_t *s = mc_dir_shard_at(dir, i);
        const mc_dir_node_t *n = mc_dir_node_at(dir, s->node);
        if (s->up && n && n->up)
            at += sprintf(at, "%s\n", s->name);
    }
    zmq_msg_t whole;
    zmq_msg_init_size(&whole, (size_t) (at - (char *) zmq_msg_data(out)));
    memcpy(zmq_msg_data(&whole), zmq_msg_data(out), zmq_msg_size(&whole));
    //  zmq_msg_move releases out itself: closing it first leaves it invalid, and sending it
    //  then aborts in libzmq (msg.cpp check())
    zmq_msg_move(out, &whole);
}

//  A worker's request: [worker-id, service, seq, envelope] -> its node (or, mmi.*, the broker).
//  False when none waited.
static bool
s_forward_request(void *front, void *back)
{
    zmq_msg_t p[4];
    int n = s_recv_parts(front, p, 4);
    if (n != 4 || zmq_msg_size(&p[0]) > ROUTING_ID_MAX || zmq_msg_size(&p[2]) > SEQ_MAX) {
        s_close_parts(p, n > 0 ? n : 0);
        return n != 0;
    }
    byte rid[1 + ROUTING_ID_MAX + SEQ_MAX];
    size_t wlen = zmq_msg_size(&p[0]), slen = zmq_msg_size(&p[2]);
    rid[0] = (byte) wlen;
    memcpy(rid + 1, zmq_msg_data(&p[0]), wlen);
    memcpy(rid + 1 + wlen, zmq_msg_data(&p[2]), slen);
    byte cmd = MC_PROTO_BYTE(MC_PROTO_CLIENT_REQUEST);
    //  what the broker would drop as malformed, or (an envelope past the frame cap) would drop
    //  the whole connection for, with every request on it, is answered here at once
    size_t service = zmq_msg_size(&p[1]);
    bool valid = service >= MC_PROTO_SERVICE_MIN && service <= MC_PROTO_SERVICE_MAX
              && zmq_msg_size(&p[3]) <= MC_PROTO_ENVELOPE_MAX;
    if (valid && service == 12 && memcmp(zmq_msg_data(&p[1]), "mmi.services", 12) == 0 && mc_nodes_dir(s_nodes)) {
        //  what is up, by the table requests follow: readiness does not need the broker
        zmq_msg_t list;
        s_up_shards(mc_nodes_dir(s_nodes), &list);
        s_to_worker(front, zmq_msg_data(&p[0]), wlen, MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY), zmq_msg_data(&p[2]),
                    slen, &list);
        zmq_msg_close(&list);
        s_close_parts(p, 4);
        return true;
    }
    if (valid && !(service > 4 && memcmp(zmq_msg_data(&p[1]), "mmi.", 4) == 0)) {
        //  a shard: straight to its node
        char name[MC_PROTO_SERVICE_MAX + 1];
        memcpy(name, zmq_msg_data(&p[1]), service);
        name[service] = 0;
        mc_nodes_send(s_nodes, name, rid, 1 + wlen + slen, &p[3]);
        s_close_parts(p, 4);
        return true;
    }
    bool sent = valid && zmq_send(back, MC_PROTO_CLIENT_SIGNATURE, MC_PROTO_SIGNATURE_SIZE, ZMQ_SNDMORE | ZMQ_DONTWAIT)
                         == MC_PROTO_SIGNATURE_SIZE;
    if (!sent && valid) {
        //  no broker connection: give a reconnect a moment, then answer unavailable ourselves
        zmq_pollitem_t out = { back, 0, ZMQ_POLLOUT, 0 };
        sent = zmq_poll(&out, 1, 100) > 0
            && zmq_send(back, MC_PROTO_CLIENT_SIGNATURE, MC_PROTO_SIGNATURE_SIZE, ZMQ_SNDMORE | ZMQ_DONTWAIT)
               == MC_PROTO_SIGNATURE_SIZE;
    }
    if (sent) {
        zmq_send(back, &cmd, 1, ZMQ_SNDMORE);
        zmq_msg_send(&p[1], back, ZMQ_SNDMORE);
        zmq_send(back, rid, 1 + wlen + slen, ZMQ_SNDMORE);
        zmq_msg_send(&p[3], back, 0);
    }
    else
        s_to_worker(front, zmq_msg_data(&p[0]), wlen, MC_PROTO_BYTE(MC_PROTO_CLIENT_UNAVAILABLE), zmq_msg_data(&p[2]),
                    slen, NULL);
    s_close_parts(p, 4);
    return true;
}

//  A node's answer (mc_nodes) -> the worker named in its request id.
static void
s_node_answer(void *arg, bool reply, const char *service, const void *rid, size_t rid_size, zmq_msg_t *payload)
{
    (void) service;
    const byte *r = rid;
    size_t wlen = r[0];
    if (wlen + 1 <= rid_size)
        s_to_worker(arg, r + 1, wlen, MC_PROTO_BYTE(reply ? MC_PROTO_CLIENT_REPLY : MC_PROTO_CLIENT_UNAVAILABLE),
                    r + 1 + wlen, rid_size - 1 - wlen, reply ? payload : NULL);
}

//  The broker's answer, a REPLY or UNAVAILABLE -> the worker named in its request id. False
//  when none waited.
static bool
s_forward_reply(void *front, void *back)
{
    enum { N = MC_PROTO_CLIENT_REPLY_FRAMES, RID = MC_PROTO_CLIENT_REPLY_AT_REQUEST_ID };
    zmq_msg_t p[N];
    int n = s_recv_parts(back, p, N);
    const void *data[N];
    size_t size[N];
    for (int i = 0; i < n; i++)
        data[i] = zmq_msg_data(&p[i]), size[i] = zmq_msg_size(&p[i]);
    mc_proto_id_t id = n == N ? mc_proto_check(data, size, n) : MC_PROTO_INVALID;
    if (id == MC_PROTO_CLIENT_REPLY || id == MC_PROTO_CLIENT_UNAVAILABLE) {
        const byte *rid = data[RID];
        size_t rlen = size[RID], wlen = rid[0];
        if (wlen + 1 <= rlen)
            s_to_worker(front, rid + 1, wlen, MC_PROTO_BYTE(id), rid + 1 + wlen, rlen - 1 - wlen, &p[N - 1]);
    }
    s_close_parts(p, n > 0 ? n : 0);
    return n != 0;
}

//  Publishes a copy of the table for edge_client_owners when it changed.
static void
s_publish_owners(void)
{
    mc_dir_t *dir = mc_nodes_dir(s_nodes);
    if (!dir || mc_dir_version(dir) == s_owners_version)
        return;
    mc_dir_t *copy = mc_dir_copy(dir);
    if (!copy)
        return;
    s_owners_version = mc_dir_version(dir);
    pthread_mutex_lock(&s_owners_lock);
    mc_dir_t *old = s_owners;
    s_owners = copy;
    pthread_mutex_unlock(&s_owners_lock);
    mc_dir_destroy(&old);
}

int
edge_client_owners(const char *service, unsigned n, int *owner)
{
    pthread_mutex_lock(&s_owners_lock);
    for (unsigned i = 0; s_owners && i < n; i++) {
        char name[MC_DIR_SERVICE_MAX + 24];
        snprintf(name, sizeof name, "%s.%u", service, i);
        const mc_dir_node_t *node = mc_dir_owner(s_owners, name, NULL);
        const mc_dir_shard_t *shard = mc_dir_shard(s_owners, name, false);
        owner[i] = node && node->up && shard && shard->up ? mc_dir_node_index(s_owners, node) : -1;
    }
    int rc = s_owners ? 0 : -1;
    pthread_mutex_unlock(&s_owners_lock);
    return rc;
}

static void *
s_dispatch(void *arg)
{
    void *front = zsock_resolve(s_frontend), *back = zsock_resolve(s_backend);
    enum { FRONT = 1, BACK = 2 };           //  mc_wait's bits for socks
    zsock_t *socks[5] = { s_frontend, s_backend };
    int n = 2 + mc_nodes_socks(s_nodes, socks + 2);
    uint64_t watch_at = 0;
    while (s_running) {
        int wait = mc_nodes_timeout(s_nodes);
        unsigned ready = mc_wait(socks, n, wait < 200 ? wait : 200);
        if (mc_mono_ms() >= watch_at) {
            mc_plane_watch_check(s_watch);
            watch_at = mc_mono_ms() + 200;
        }
        //  a bounded burst from each side per wake, so neither starves the other; a side left
        //  with input is found by the next wait without blocking
        for (int i = 0; i < 256 && (ready & FRONT); i++)
            if (!s_forward_request(front, back))
                ready &= ~(unsigned) FRONT;
        for (int i = 0; i < 256 && (ready & BACK); i++)
            if (!s_forward_reply(front, back))
                ready &= ~(unsigned) BACK;
        mc_nodes_handle(s_nodes);
        s_publish_owners();
    }
    return NULL;
}

void
edge_client_init(const char *broker)
{
    s_broker = strdup(broker);
    s_frontend = zsock_new(ZMQ_ROUTER);
    mc_proto_socket_setup(s_frontend);
    zsock_bind(s_frontend, DISPATCH_ENDPOINT);
    s_backend = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(s_backend);
    mc_plane_client(s_backend);
    //  with no connection, fail at once instead of queueing for a broker that is gone
    zsock_set_immediate(s_backend, 1);
    //  after a broker restart, come back quickly rather than after the default 100 ms
    zsock_set_reconnect_ivl(s_backend, 10);
    zsock_set_reconnect_ivl_max(s_backend, 250);
    s_watch = mc_plane_watch_new(s_backend, s_broker);
    zsock_connect(s_backend, "%s", s_broker);
    s_nodes = mc_nodes_new(s_broker, NULL, s_node_answer, zsock_resolve(s_frontend));
    //  the first requests should not race the connection being set up
    zmq_pollitem_t out = { zsock_resolve(s_backend), 0, ZMQ_POLLOUT, 0 };
    zmq_poll(&out, 1, 1000);
    s_running = 1;
    pthread_create(&s_thread, NULL, s_dispatch, NULL);
}

void
edge_client_stop(void)
{
    if (!s_running)
        return;
    s_running = 0;
    pthread_join(s_thread, NULL);
    zsock_destroy(&s_frontend);
    mc_plane_watch_destroy(&s_watch);
    mc_nodes_destroy(&s_nodes);
    mc_dir_destroy(&s_owners);
    zsock_destroy(&s_backend);
    free(s_broker);
}

void
edge_client_thread_exit(void)
{
    zsock_destroy(&s_sock);
}

//  True when the reply envelope in p answers the request envelope (same message id): the broker
//  only passes on a reply from the worker the request went to, and this checks that worker
//  answered this request and not another. The ids are read where the encoders put them, so a
//  list page is not decoded twice (here and by its caller); a frame laid out otherwise is
//  decoded whole.
static bool
s_answers(const void *request, size_t len, zmq_msg_t *p)
{
    mc_str_t a, b;
    if (mc_envelope_id(request, len, &a) == 0 && mc_envelope_id(zmq_msg_data(p), zmq_msg_size(p), &b) == 0)
        return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
    msgpack_unpacked ua, ub;
    msgpack_unpacked_init(&ua);
    msgpack_unpacked_init(&ub);
    mc_request_t req;
    mc_reply_t rep;
    bool ok = mc_request_decode(&ua, request, len, &req) == 0
           && mc_reply_decode(&ub, zmq_msg_data(p), zmq_msg_size(p), &rep) == 0
           && rep.id.len == req.id.len && memcmp(rep.id.ptr, req.id.ptr, req.id.len) == 0;
    msgpack_unpacked_destroy(&ua);
    msgpack_unpacked_destroy(&ub);
    return ok;
}

//  This thread's socket to the dispatcher.
static void *
s_socket(void)
{
    if (!s_sock) {
        s_sock = zsock_new(ZMQ_DEALER);
        mc_proto_socket_setup(s_sock);
        zsock_connect(s_sock, DISPATCH_ENDPOINT);
    }
    return zsock_resolve(s_sock);
}

void
edge_client_call_many(edge_call_many_t *calls, size_t n, int timeout_ms)
{
    void *raw = s_socket();
    //  one sequence number per call, consecutive: a reply's number names its call
    uint64_t first = s_seq + 1;
    for (size_t i = 0; i < n; i++) {
        uint64_t seq = ++s_seq;
        calls[i].outcome = EDGE_CALL_TIMEOUT;
        calls[i].reply = NULL;
        zmq_send(raw, calls[i].service, strlen(calls[i].service), ZMQ_SNDMORE);
        zmq_send(raw, &seq, sizeof seq, ZMQ_SNDMORE);
        zmq_send(raw, calls[i].envelope, calls[i].len, 0);
    }
    size_t open = n;
    uint64_t deadline = mc_mono_ms() + (uint64_t) timeout_ms;
    while (open) {
        uint64_t now = mc_mono_ms();
        if (now >= deadline)
            return;
        if (!mc_wait(&s_sock, 1, (int) (deadline - now)))
            continue;
        zmq_msg_t p[3];
        int got = s_recv_parts(raw, p, 3);
        if (got == 0)
            continue;
        uint64_t seq = 0;
        if (got == 3 && zmq_msg_size(&p[0]) == 1 && zmq_msg_size(&p[1]) == sizeof seq)
            memcpy(&seq, zmq_msg_data(&p[1]), sizeof seq);
        //  a late answer to a request this thread already gave up on has an older number
        if (seq < first || seq >= first + n || calls[seq - first].outcome != EDGE_CALL_TIMEOUT) {
            s_close_parts(p, got > 0 ? got : 0);
            continue;
        }
        edge_call_many_t *c = &calls[seq - first];
        int kind = ((byte *) zmq_msg_data(&p[0]))[0];
        edge_call_t result = kind == MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY) ? EDGE_CALL_REPLY : EDGE_CALL_UNAVAILABLE;
        if (result == EDGE_CALL_REPLY && strncmp(c->service, "mmi.", 4) != 0 && !s_answers(c->envelope, c->len, &p[2])) {
            mc_warn("reply refused", "\"service\":\"%s\",\"why\":\"its id is not the request's\"", c->service);
            s_close_parts(p, 3);
            continue;
        }
        if (result == EDGE_CALL_REPLY)
            c->reply = zframe_new(zmq_msg_data(&p[2]), zmq_msg_size(&p[2]));
        c->outcome = result;
        open--;
        s_close_parts(p, 3);
    }
}

edge_call_t
edge_client_call(const char *service, const void *envelope, size_t len, int timeout_ms, zframe_t **reply)
{
    edge_call_many_t call = { .service = service, .envelope = envelope, .len = len };
    edge_client_call_many(&call, 1, timeout_ms);
    *reply = call.reply;
    return call.outcome;
}
