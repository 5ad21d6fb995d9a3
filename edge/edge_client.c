#include "edge_client.h"

#include "mc_proto.h"
#include "mc_util.h"

static char *s_broker;
static _Thread_local zsock_t *s_sock;
static _Thread_local uint64_t s_seq;
static _Thread_local bool s_fresh;     //  connecting for the first time

void
edge_client_init(const char *broker)
{
    s_broker = strdup(broker);
}

static zsock_t *
s_socket(void)
{
    if (!s_sock) {
        s_sock = zsock_new(ZMQ_DEALER);
        mc_proto_socket_setup(s_sock);
        //  with no connection, fail the send at once instead of queueing for a broker that is gone
        zsock_set_immediate(s_sock, 1);
        //  after a broker restart, come back quickly rather than after the default 100 ms
        zsock_set_reconnect_ivl(s_sock, 10);
        zsock_set_reconnect_ivl_max(s_sock, 250);
        zsock_connect(s_sock, "%s", s_broker);
        s_fresh = true;
    }
    return s_sock;
}

void
edge_client_thread_exit(void)
{
    zsock_destroy(&s_sock);
}

edge_call_t
edge_client_call(const char *service, const void *envelope, size_t len, int timeout_ms, zframe_t **reply)
{
    zsock_t *sock = s_socket();
    char rid[24];
    int ridlen = snprintf(rid, sizeof rid, "%" PRIu64, ++s_seq);
    void *raw = zsock_resolve(sock);
    byte cmd = MC_C_REQUEST;
    *reply = NULL;
    if (zmq_send(raw, MC_CLIENT, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        //  a new socket may still be connecting; an established one that cannot send has no broker
        zmq_pollitem_t out = { raw, 0, ZMQ_POLLOUT, 0 };
        int wait = s_fresh ? (timeout_ms < 1000 ? timeout_ms : 1000) : 100;
        if (zmq_poll(&out, 1, wait) <= 0 || zmq_send(raw, MC_CLIENT, 4, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
            return EDGE_CALL_UNAVAILABLE;
    }
    s_fresh = false;
    zmq_send(raw, &cmd, 1, ZMQ_SNDMORE);
    zmq_send(raw, service, strlen(service), ZMQ_SNDMORE);
    zmq_send(raw, rid, (size_t) ridlen, ZMQ_SNDMORE);
    zmq_send(raw, envelope, len, 0);

    uint64_t deadline = mc_mono_ms() + (uint64_t) timeout_ms;
    while (true) {
        uint64_t now = mc_mono_ms();
        if (now >= deadline)
            return EDGE_CALL_TIMEOUT;
        zmq_pollitem_t item = { raw, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll(&item, 1, (long) (deadline - now));
        if (rc < 0 && zmq_errno() != EINTR)
            return EDGE_CALL_UNAVAILABLE;
        if (rc <= 0)
            continue;
        zmsg_t *msg = zmsg_recv(sock);
        if (!msg)
            continue;
        zframe_t *proto = zmsg_first(msg);
        zframe_t *kind = zmsg_next(msg);
        zmsg_next(msg);                     //  service
        zframe_t *got = zmsg_next(msg);
        zframe_t *payload = zmsg_next(msg);
        bool mine = proto && zframe_streq(proto, MC_CLIENT) && got && payload
                 && zframe_size(got) == (size_t) ridlen && memcmp(zframe_data(got), rid, (size_t) ridlen) == 0;
        if (!mine) {
            //  a late answer to a request this thread already gave up on
            zmsg_destroy(&msg);
            continue;
        }
        edge_call_t result = mc_proto_is(kind, MC_C_REPLY) ? EDGE_CALL_REPLY : EDGE_CALL_UNAVAILABLE;
        if (result == EDGE_CALL_REPLY) {
            zmsg_remove(msg, payload);
            *reply = payload;
        }
        zmsg_destroy(&msg);
        return result;
    }
}
