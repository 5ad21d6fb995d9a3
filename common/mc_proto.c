#include "mc_proto.h"

#include "mc_envelope.h"
#include "mc_wait.h"

void
mc_proto_socket_setup(zsock_t *sock)
{
    zsock_set_maxmsgsize(sock, MC_FRAME_MAX);
    zsock_set_sndhwm(sock, 100000);
    zsock_set_rcvhwm(sock, 100000);
    zsock_set_linger(sock, 0);
}

//  mc_proto_msg_init, which names every field, is generated with them (mc_proto_gen.c).

void
mc_proto_msg_reset(mc_proto_msg_t *self)
{
    //  every frame field the model has (at most one per command, but any command's)
    for (int i = 0; i < MC_PROTO_COMMANDS; i++)
        for (int f = 0; f < mc_proto_commands[i].nfields; f++)
            if (mc_proto_commands[i].fields[f]->kind == MC_PROTO_FRAME)
                zframe_destroy((zframe_t **) ((char *) self + mc_proto_commands[i].fields[f]->offset));
    mc_proto_msg_init(self);
}

int
mc_proto_msg_set_routing_id(mc_proto_msg_t *self, const void *data, size_t size)
{
    if (size == 0 || size > MC_PROTO_ROUTING_ID_MAX) {
        errno = EINVAL;
        return -1;
    }
    memcpy(self->routing_id, data, size);
    self->routing_id_size = size;
    return 0;
}

const mc_proto_command_t *
mc_proto_command(mc_proto_id_t id)
{
    for (int i = 0; i < MC_PROTO_COMMANDS; i++)
        if (mc_proto_commands[i].id == id)
            return &mc_proto_commands[i];
    return NULL;
}

//  The command a signature and command frame name, or NULL.
static const mc_proto_command_t *
s_command(const void *sig, size_t sig_size, const void *cmd, size_t cmd_size)
{
    if (sig_size != MC_PROTO_SIGNATURE_SIZE || cmd_size != 1)
        return NULL;
    for (int i = 0; i < MC_PROTO_COMMANDS; i++) {
        const mc_proto_command_t *c = &mc_proto_commands[i];
        if (MC_PROTO_BYTE(c->id) == *(const byte *) cmd && memcmp(c->signature, sig, MC_PROTO_SIGNATURE_SIZE) == 0)
            return c;
    }
    return NULL;
}

static bool
s_field_ok(const mc_proto_field_t *f, const void *data, size_t size)
{
    if (size < f->min || size > f->max)
        return false;
    if (f->kind == MC_PROTO_STRING)
        return !memchr(data, 0, size);
    if (f->kind == MC_PROTO_ROLE)
        return mc_peer_parse(data, size) != MC_PEER_NONE;
    return true;
}

mc_proto_id_t
mc_proto_check(const void *const *data, const size_t *size, int n)
{
    const mc_proto_command_t *c = n >= 2 ? s_command(data[0], size[0], data[1], size[1]) : NULL;
    if (!c || n != 2 + c->nfields)
        return MC_PROTO_INVALID;
    for (int i = 0; i < c->nfields; i++)
        if (!s_field_ok(c->fields[i], data[2 + i], size[2 + i]))
            return MC_PROTO_INVALID;
    return c->id;
}

int
mc_proto_msg_decode(mc_proto_msg_t *self, zmsg_t **msg_p, bool routed)
{
    mc_proto_msg_reset(self);
    zmsg_t *msg = *msg_p;
    *msg_p = NULL;
    if (!msg)
        return MC_PROTO_MALFORMED;
    int rc = MC_PROTO_MALFORMED;
    zframe_t *frame = zmsg_first(msg);
    if (routed) {
        if (!frame || zframe_size(frame) == 0 || zframe_size(frame) > MC_PROTO_ROUTING_ID_MAX)
            goto done;
        self->routing_id_size = zframe_size(frame);
        memcpy(self->routing_id, zframe_data(frame), self->routing_id_size);
        frame = zmsg_next(msg);
    }
    //  one part more than any command has is enough to know there are too many
    zframe_t *parts[MC_PROTO_FRAMES_MAX + 1];
    const void *data[MC_PROTO_FRAMES_MAX + 1];
    size_t size[MC_PROTO_FRAMES_MAX + 1];
    int n = 0;
    for (; frame && n <= MC_PROTO_FRAMES_MAX; frame = zmsg_next(msg), n++) {
        parts[n] = frame;
        data[n] = zframe_data(frame);
        size[n] = zframe_size(frame);
    }
    const mc_proto_command_t *c = n >= 2 ? s_command(data[0], size[0], data[1], size[1]) : NULL;
    if (c)
        self->id = c->id;
    if (!c || mc_proto_check(data, size, n) != c->id)
        goto done;
    for (int i = 0; i < c->nfields; i++) {
        const mc_proto_field_t *f = c->fields[i];
        char *at = (char *) self + f->offset;
        if (f->kind == MC_PROTO_STRING) {
            memcpy(at, data[2 + i], size[2 + i]);
            at[size[2 + i]] = 0;
        }
        else
        if (f->kind == MC_PROTO_BYTES) {
            memcpy(at, data[2 + i], size[2 + i]);
            *(size_t *) ((char *) self + f->size_offset) = size[2 + i];
        }
        else
        if (f->kind == MC_PROTO_ROLE)
            *(mc_peer_t *) at = mc_peer_parse(data[2 + i], size[2 + i]);
        else {
            //  the envelope is kept as it came: no copy of what may be a megabyte
            zmsg_remove(msg, parts[2 + i]);
            *(zframe_t **) at = parts[2 + i];
        }
    }
    rc = 0;
done:
    zmsg_destroy(&msg);
    return rc;
}

int
mc_proto_msg_recv(mc_proto_msg_t *self, zsock_t *sock, int *fd, mc_peer_info_t *peer)
{
    zmsg_t *msg = mc_recv_peer(sock, fd, peer);
    if (!msg) {
        mc_proto_msg_reset(self);
        return MC_PROTO_AGAIN;
    }
    return mc_proto_msg_decode(self, &msg, zsock_type(sock) == ZMQ_ROUTER);
}

int
mc_proto_msg_encode(mc_proto_msg_t *self, bool routed, zmsg_t **msg_p)
{
    *msg_p = NULL;
    const mc_proto_command_t *c = mc_proto_command(self->id);
    bool ok = c && (!routed || self->routing_id_size);
    //  every field within its bounds before anything is built: what is sent is what decodes
    for (int i = 0; ok && i < c->nfields; i++) {
        const mc_proto_field_t *f = c->fields[i];
        const char *at = (const char *) self + f->offset;
        if (f->kind == MC_PROTO_STRING)
            ok = s_field_ok(f, at, strnlen(at, f->max + 1));
        else
        if (f->kind == MC_PROTO_BYTES)
            ok = s_field_ok(f, at, *(const size_t *) ((const char *) self + f->size_offset));
        else
        if (f->kind == MC_PROTO_ROLE) {
            const char *name = mc_peer_name(*(const mc_peer_t *) at);
            ok = s_field_ok(f, name, strlen(name));
        }
        else {
            zframe_t *frame = *(zframe_t *const *) at;
            size_t size = frame ? zframe_size(frame) : 0;
            ok = size >= f->min && size <= f->max;
        }
    }
    if (!ok) {
        mc_proto_msg_reset(self);
        return MC_PROTO_MALFORMED;
    }
    zmsg_t *msg = zmsg_new();
    if (routed)
        zmsg_addmem(msg, self->routing_id, self->routing_id_size);
    byte cmd = MC_PROTO_BYTE(c->id);
    zmsg_addmem(msg, c->signature, MC_PROTO_SIGNATURE_SIZE);
    zmsg_addmem(msg, &cmd, 1);
    for (int i = 0; i < c->nfields; i++) {
        const mc_proto_field_t *f = c->fields[i];
        char *at = (char *) self + f->offset;
        if (f->kind == MC_PROTO_STRING)
            zmsg_addstr(msg, at);
        else
        if (f->kind == MC_PROTO_BYTES)
            zmsg_addmem(msg, at, *(size_t *) ((char *) self + f->size_offset));
        else
        if (f->kind == MC_PROTO_ROLE)
            zmsg_addstr(msg, mc_peer_name(*(mc_peer_t *) at));
        else
        if (*(zframe_t **) at)
            zmsg_append(msg, (zframe_t **) at);
        else
            zmsg_addmem(msg, "", 0);
    }
    mc_proto_msg_reset(self);
    *msg_p = msg;
    return 0;
}

int
mc_proto_msg_send(mc_proto_msg_t *self, zsock_t *sock)
{
    zmsg_t *msg;
    int rc = mc_proto_msg_encode(self, zsock_type(sock) == ZMQ_ROUTER, &msg);
    if (rc)
        return rc;
    if (zmsg_send(&msg, sock)) {
        zmsg_destroy(&msg);
        return MC_PROTO_AGAIN;
    }
    return 0;
}
