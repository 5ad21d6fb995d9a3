/*  mc_proto: the broker protocol's codec (schemas/broker-protocol.md), and socket set-up.

    The protocol is modelled once, in schemas/broker-protocol.json: its commands, each one's
    frames in order, and every field's kind and size. schemas/gen_proto.py makes from it the
    constants, the message struct and the tables in mc_proto_gen.h (the build tree's generated/
    folder) and the frame tables of broker-protocol.md; the functions here decode and encode by
    those tables, so what is checked on receipt and what may be sent cannot differ.

    Receiving: mc_proto_msg_recv (or mc_proto_msg_decode of a zmsg_t already received) gives a
    message that follows the grammar exactly: a known signature and command, exactly the
    command's frames, every one within its size, strings without NUL bytes, a role that is one.
    Anything else is MC_PROTO_MALFORMED, for the caller to count. Sending: fill an mc_proto_msg_t
    (its setters refuse oversized values) and mc_proto_msg_send it; a message that would break
    the grammar is not sent.

    Caveats: the codec knows the grammar, not the rules: who may send which command (the roles
    of CONTRACT §9), which services exist, whether a reply is owed are the broker's. The edge's
    dispatcher forwards raw zmq_msg_t parts to spare copies of the envelopes; it checks them
    with mc_proto_check, the same grammar without decoding. */
#ifndef MC_PROTO_H
#define MC_PROTO_H

#include "mc_proto_gen.h"

#include <czmq.h>

//  A peer silent for 3 s is dead. A process that dies is noticed sooner, when its connection
//  closes (the broker watches its socket); the silence rule is for peers still connected but
//  gone (a hung process, an unreachable host). Half a second was too short: an actor busy with
//  a burst on a loaded 2-core machine under a sanitizer went quiet that long and was dropped.
#define MC_HEARTBEAT_MS       100
#define MC_HEARTBEAT_LIVENESS 30
//  An actor's tag for a request it sends: a node's front adds the asker's inproc routing id
//  (and its length) when the request leaves the process
#define MC_REQUEST_ID_MAX     64
_Static_assert(1 + 32 + MC_REQUEST_ID_MAX <= MC_PROTO_REQUEST_ID_MAX, "a tag and a routing id must fit a request id");

//  What mc_proto_msg_recv, _decode, _encode and _send return besides 0.
#define MC_PROTO_AGAIN     (-1)     //  recv: no message was waiting; send: the socket took none
#define MC_PROTO_MALFORMED (-2)     //  the message breaks the grammar (received: it is consumed)

//  Applies the settings every Mercato socket needs: frame cap, high-water marks, no linger.
void mc_proto_socket_setup(zsock_t *sock);

//  Makes self an empty message (no command, no routing id, empty fields). Call once before use.
void mc_proto_msg_init(mc_proto_msg_t *self);

//  Frees what self holds (its envelope frame) and empties it again; harmless when empty.
void mc_proto_msg_reset(mc_proto_msg_t *self);

//  Sets the routing id a ROUTER sends self to: size 1 to MC_PROTO_ROUTING_ID_MAX bytes.
//  Returns 0; -1 (errno EINVAL) when size is not, and the routing id is left as it was.
int mc_proto_msg_set_routing_id(mc_proto_msg_t *self, const void *data, size_t size);

//  The definition of command id (mc_proto_commands), or NULL when id is none.
const mc_proto_command_t *mc_proto_command(mc_proto_id_t id);

//  Checks n message parts, the signature first (no routing id), against the grammar without
//  copying or keeping anything: data[i] and size[i] are part i. Returns the command, or
//  MC_PROTO_INVALID when the parts are not exactly one of the protocol's messages.
mc_proto_id_t mc_proto_check(const void *const *data, const size_t *size, int n);

//  Decodes *msg_p into self (reset first) and destroys it (*msg_p becomes NULL). routed: the
//  message starts with a ROUTER's routing-id frame, which goes to self->routing_id.
//  Returns 0; MC_PROTO_MALFORMED when the message breaks the grammar. Then self->routing_id is
//  set when there was one, and self->id when the signature and command were known (so a
//  receiver can still answer, for example DISCONNECT to a broken READY); no field is.
int mc_proto_msg_decode(mc_proto_msg_t *self, zmsg_t **msg_p, bool routed);

//  Receives and decodes the next message waiting on sock, without blocking; a ROUTER socket's
//  routing-id frame goes to self->routing_id. fd and peer as for mc_recv_peer (the connection's
//  descriptor; the sender's plane key and role), NULL when not wanted; they are set whenever a
//  message came, malformed or not.
//  Returns 0; MC_PROTO_AGAIN when no message was waiting; MC_PROTO_MALFORMED as for decode.
int mc_proto_msg_recv(mc_proto_msg_t *self, zsock_t *sock, int *fd, mc_peer_info_t *peer);

//  Encodes self (its command, and the fields the command has) into a new message in *msg_p,
//  with self->routing_id in front when routed. The envelope frame moves into the message; self
//  is reset either way.
//  Returns 0; MC_PROTO_MALFORMED, *msg_p NULL, when self->id is no command, a field is out of
//  its bounds, or routed and there is no routing id.
int mc_proto_msg_encode(mc_proto_msg_t *self, bool routed, zmsg_t **msg_p);

//  Encodes self and sends it on sock, routed when sock is a ROUTER; self is reset either way.
//  Returns 0; MC_PROTO_MALFORMED as for encode (nothing is sent); MC_PROTO_AGAIN when the
//  socket would not take it (zmq_errno says why: EAGAIN with a send timeout and no peer), and
//  the message is freed, not left to the caller.
int mc_proto_msg_send(mc_proto_msg_t *self, zsock_t *sock);

#endif
