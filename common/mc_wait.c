#include "mc_wait.h"

#include <poll.h>

unsigned
mc_wait(zsock_t **socks, int n, int timeout_ms)
{
    //  Asking for events also consumes the socket's wake-up signal, so after a "no" here any
    //  later message or command makes its descriptor readable: blocking on it cannot miss one,
    //  however many sends (which may consume that signal too) came before.
    unsigned ready = 0;
    for (int i = 0; i < n; i++)
        if (zsock_events(socks[i]) & ZMQ_POLLIN)
            ready |= 1u << i;
    if (ready || timeout_ms == 0)
        return ready;
    struct pollfd fds[MC_WAIT_MAX];
    for (int i = 0; i < n; i++)
        fds[i] = (struct pollfd) { .fd = zsock_fd(socks[i]), .events = POLLIN };
    if (poll(fds, (nfds_t) n, timeout_ms) <= 0)
        return 0;
    for (int i = 0; i < n; i++)
        if (fds[i].revents)
            ready |= 1u << i;
    return ready;
}

zmsg_t *
mc_recv_nowait(zsock_t *sock, int *fd)
{
    return mc_recv_peer(sock, fd, NULL);
}

zmsg_t *
mc_recv_peer(zsock_t *sock, int *fd, mc_peer_info_t *peer)
{
    void *raw = zsock_resolve(sock);
    zmsg_t *msg = NULL;
    if (fd)
        *fd = -1;
    if (peer)
        *peer = (mc_peer_info_t) { MC_PEER_NONE, "", "" };
    for (bool more = true; more; ) {
        zmq_msg_t part;
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, raw, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&part);
            zmsg_destroy(&msg);
            return NULL;
        }
        if (!msg)
            msg = zmsg_new();
        //  a ROUTER's made-up routing-id part may not carry it; the peer's own parts do
        if (fd && *fd < 0)
            *fd = zmq_msg_get(&part, ZMQ_SRCFD);
        if (peer && peer->role == MC_PEER_NONE)
            mc_plane_peer(&part, peer);
        zmsg_addmem(msg, zmq_msg_data(&part), zmq_msg_size(&part));
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
    }
    return msg;
}
