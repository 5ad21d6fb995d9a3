/*  mc_proto: constants and socket set-up of the broker protocol (schemas/broker-protocol.md). */
#ifndef MC_PROTO_H
#define MC_PROTO_H

#include <czmq.h>

#define MC_CLIENT "MCC1"
//  MCW2: requests to a worker carry the sending peer's key id and role (MCW1 did not)
#define MC_WORKER "MCW2"

//  Client commands
#define MC_C_REQUEST     0x01
#define MC_C_REPLY       0x02
#define MC_C_UNAVAILABLE 0x03

//  Worker commands
#define MC_W_READY      0x01
#define MC_W_REQUEST    0x02
#define MC_W_REPLY      0x03
#define MC_W_HEARTBEAT  0x04
#define MC_W_DISCONNECT 0x05

//  A peer silent for 3 s is dead. A process that dies is noticed sooner, when its connection
//  closes (the broker watches its socket); the silence rule is for peers still connected but
//  gone (a hung process, an unreachable host). Half a second was too short: an actor busy with
//  a burst on a loaded 2-core machine under a sanitizer went quiet that long and was dropped.
#define MC_HEARTBEAT_MS       100
#define MC_HEARTBEAT_LIVENESS 30
#define MC_REQUEST_ID_MAX     64

//  Applies the settings every Mercato socket needs: frame cap, high-water marks, no linger.
void mc_proto_socket_setup(zsock_t *sock);

//  True when frame holds exactly the command byte cmd.
bool mc_proto_is(zframe_t *frame, int cmd);

#endif
