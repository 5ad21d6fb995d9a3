#include "mc_proto.h"

#include "mc_envelope.h"

void
mc_proto_socket_setup(zsock_t *sock)
{
    zsock_set_maxmsgsize(sock, MC_FRAME_MAX);
    zsock_set_sndhwm(sock, 100000);
    zsock_set_rcvhwm(sock, 100000);
    zsock_set_linger(sock, 0);
}

bool
mc_proto_is(zframe_t *frame, int cmd)
{
    return frame && zframe_size(frame) == 1 && zframe_data(frame)[0] == cmd;
}
