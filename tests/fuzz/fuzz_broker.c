/*  The broker protocol's grammar (common/mc_proto.c, the codec generated from
    schemas/broker-protocol.json) on messages as any peer of the broker could send them. The
    first byte's low bit says whether the message comes through a ROUTER (a routing-id frame
    first); the rest is frames, each a length (one byte below 255, or 255 and two bytes big-
    endian) and its bytes. Properties: mc_proto_check (the edge's copy-free check) and
    mc_proto_msg_decode agree on every message; a decoded message has every field within its
    bounds and encodes back to one that decodes to the same command, and whose encoding is the
    same bytes again. */
#include "fuzz.h"
#include "mc_proto.h"

#include <string.h>

//  Splits data into frames; at most 16, the rest ignored.
static zmsg_t *
s_frames(const uint8_t *data, size_t size)
{
    zmsg_t *msg = zmsg_new();
    size_t at = 0;
    for (int i = 0; i < 16 && at < size; i++) {
        size_t len = data[at++];
        if (len == 255) {
            if (size - at < 2)
                break;
            len = (size_t) data[at] << 8 | data[at + 1];
            at += 2;
        }
        if (len > size - at)
            len = size - at;
        zmsg_addmem(msg, data + at, len);
        at += len;
    }
    return msg;
}

//  The message's frames as one byte string (sizes and bytes), to compare two encodings.
static void
s_flatten(zmsg_t *msg, zchunk_t *out)
{
    for (zframe_t *f = zmsg_first(msg); f; f = zmsg_next(msg)) {
        size_t n = zframe_size(f);
        zchunk_extend(out, &n, sizeof n);
        zchunk_extend(out, zframe_data(f), n);
    }
}

static void
s_check_fields(const mc_proto_msg_t *m)
{
    FUZZ_CHECK(mc_proto_command(m->id) != NULL);
    FUZZ_CHECK(strnlen(m->service, sizeof m->service) < sizeof m->service);
    FUZZ_CHECK(strnlen(m->node_id, sizeof m->node_id) < sizeof m->node_id);
    FUZZ_CHECK(strnlen(m->peer_key, sizeof m->peer_key) < sizeof m->peer_key);
    FUZZ_CHECK(strnlen(m->reason, sizeof m->reason) < sizeof m->reason);
    FUZZ_CHECK(m->request_id_size <= MC_PROTO_REQUEST_ID_MAX && m->client_size <= MC_PROTO_CLIENT_MAX);
    FUZZ_CHECK(m->routing_id_size <= MC_PROTO_ROUTING_ID_MAX);
    FUZZ_CHECK(!m->envelope || zframe_size(m->envelope) <= MC_PROTO_ENVELOPE_MAX);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool routed = data[0] & 1;
    zmsg_t *msg = s_frames(data + 1, size - 1);

    //  the copy-free check sees the frames after the routing id
    const void *parts[16];
    size_t sizes[16];
    int n = 0;
    for (zframe_t *f = zmsg_first(msg); f; f = zmsg_next(msg)) {
        parts[n] = zframe_data(f);
        sizes[n++] = zframe_size(f);
    }
    int skip = routed && n > 0 ? 1 : 0;
    mc_proto_id_t checked = mc_proto_check(parts + skip, sizes + skip, n - skip);
    bool routing_ok = !routed || (n > 0 && sizes[0] >= 1 && sizes[0] <= MC_PROTO_ROUTING_ID_MAX);

    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    int rc = mc_proto_msg_decode(&m, &msg, routed);
    FUZZ_CHECK(msg == NULL);
    FUZZ_CHECK(rc == 0 || rc == MC_PROTO_MALFORMED);
    if (routing_ok)
        FUZZ_CHECK((rc == 0) == (checked != MC_PROTO_INVALID));
    if (rc == 0) {
        FUZZ_CHECK(m.id == checked);
        s_check_fields(&m);
        mc_proto_id_t id = m.id;
        zmsg_t *once = NULL, *twice = NULL;
        FUZZ_CHECK(mc_proto_msg_encode(&m, routed, &once) == 0 && once);
        zchunk_t *a = zchunk_new(NULL, 0), *b = zchunk_new(NULL, 0);
        s_flatten(once, a);
        mc_proto_msg_t again;
        mc_proto_msg_init(&again);
        FUZZ_CHECK(mc_proto_msg_decode(&again, &once, routed) == 0 && again.id == id);
        s_check_fields(&again);
        FUZZ_CHECK(mc_proto_msg_encode(&again, routed, &twice) == 0 && twice);
        s_flatten(twice, b);
        FUZZ_CHECK(zchunk_size(a) == zchunk_size(b) && memcmp(zchunk_data(a), zchunk_data(b), zchunk_size(a)) == 0);
        zchunk_destroy(&a);
        zchunk_destroy(&b);
        zmsg_destroy(&twice);
        mc_proto_msg_reset(&again);
    }
    mc_proto_msg_reset(&m);
    return 0;
}
