/*  mc_wait: waiting on several ZeroMQ sockets, for loops that drain what they find.

    zmq_poll asks every socket for its events before it blocks and again after it wakes, and
    each asking costs two system calls (ZeroMQ's fork check, getpid, and a zero-timeout poll of
    the socket's mailbox). With that and a zsock_events check before every receive, those calls
    were 60% of the ~135 system calls per order on the 2-core benchmark VM. mc_wait asks each
    socket once, then blocks on the sockets' descriptors only; callers then receive with
    mc_recv_nowait until it gives NULL, which asks the socket once more, at the end. */
#ifndef MC_WAIT_H
#define MC_WAIT_H

#include "mc_plane.h"

#include <czmq.h>

#define MC_WAIT_MAX 8

//  Waits until one of the n (<= MC_WAIT_MAX) sockets may have input, or timeout_ms passes
//  (-1: no limit). Returns a mask, bit i for socks[i]: set when the socket said it has input,
//  or when its descriptor woke the wait (which may turn out to be nothing). Drain every socket
//  whose bit is set until mc_recv_nowait gives NULL; a socket left with input is found by the
//  next call without blocking.
unsigned mc_wait(zsock_t **socks, int n, int timeout_ms);

//  Receives a whole message if one is waiting; NULL when none is. With fd, *fd gets the
//  descriptor of the connection it came on (ZMQ_SRCFD), or -1.
zmsg_t *mc_recv_nowait(zsock_t *sock, int *fd);

//  As mc_recv_nowait; peer (when not NULL) gets the sender's key id and role from the message's
//  ZAP metadata (MC_PEER_NONE when it has none).
zmsg_t *mc_recv_peer(zsock_t *sock, int *fd, mc_peer_info_t *peer);

#endif
