/*  The broker protocol's codec: every command round-trips (in memory and over real sockets, with
    and without a ROUTER's routing id), the wire looks as broker-protocol.md says, and whatever
    breaks the grammar is refused on receipt and never sent. */
#include "mc_proto.h"
#include "mc_test.h"

//  True when frame is exactly the one byte b.
static bool
s_byte_is(zframe_t *frame, byte b)
{
    return frame && zframe_size(frame) == 1 && zframe_data(frame)[0] == b;
}

//  A message of raw parts: n of them, part i is size[i] bytes of data[i].
static zmsg_t *
s_raw(int n, const void *const *data, const size_t *size)
{
    zmsg_t *msg = zmsg_new();
    for (int i = 0; i < n; i++)
        zmsg_addmem(msg, data[i], size[i]);
    return msg;
}

//  The parts a valid message of command c has, each field filled to size want(field) with a
//  pattern; data points into store.
typedef size_t (*s_size_fn)(const mc_proto_field_t *f);

static size_t s_max(const mc_proto_field_t *f) { return f->kind == MC_PROTO_FRAME ? 70000 : f->max; }
static size_t s_min(const mc_proto_field_t *f) { return f->min; }

static byte s_store[MC_PROTO_FRAMES_MAX + 1][80000];

static int
s_parts(const mc_proto_command_t *c, s_size_fn want, const void **data, size_t *size)
{
    data[0] = c->signature;
    size[0] = MC_PROTO_SIGNATURE_SIZE;
    static byte cmd;
    cmd = MC_PROTO_BYTE(c->id);
    data[1] = &cmd;
    size[1] = 1;
    for (int i = 0; i < c->nfields; i++) {
        const mc_proto_field_t *f = c->fields[i];
        byte *b = s_store[2 + i];
        size_t n = want(f);
        if (f->kind == MC_PROTO_ROLE) {
            const char *role = n == f->max ? "relay" : "ops";
            n = strlen(role);
            memcpy(b, role, n);
        }
        else
            for (size_t k = 0; k < n; k++)
                //  bytes fields hold NULs and high bytes; strings printable text
                b[k] = f->kind == MC_PROTO_STRING ? (byte) ('a' + (k + (size_t) i) % 26) : (byte) (k * 7 + (size_t) i);
        data[2 + i] = b;
        size[2 + i] = n;
    }
    return 2 + c->nfields;
}

//  True when field f of m holds exactly data/size.
static bool
s_field_is(mc_proto_msg_t *m, const mc_proto_field_t *f, const void *data, size_t size)
{
    const char *at = (const char *) m + f->offset;
    if (f->kind == MC_PROTO_STRING)
        return strlen(at) == size && memcmp(at, data, size) == 0;
    if (f->kind == MC_PROTO_BYTES)
        return *(const size_t *) ((const char *) m + f->size_offset) == size && memcmp(at, data, size) == 0;
    if (f->kind == MC_PROTO_ROLE)
        return *(const mc_peer_t *) at == mc_peer_parse(data, size);
    zframe_t *frame = *(zframe_t *const *) at;
    return frame && zframe_size(frame) == size && memcmp(zframe_data(frame), data, size) == 0;
}

//  Every command, at its fields' largest and smallest: decoded, encoded again, the same parts.
static void
test_round_trip(void)
{
    s_size_fn sizes[] = { s_max, s_min };
    for (int i = 0; i < MC_PROTO_COMMANDS; i++)
        for (int s = 0; s < 2; s++)
            for (int routed = 0; routed < 2; routed++) {
                const mc_proto_command_t *c = &mc_proto_commands[i];
                const void *data[MC_PROTO_FRAMES_MAX + 1];
                size_t size[MC_PROTO_FRAMES_MAX + 1];
                int n = s_parts(c, sizes[s], data, size);
                ASSERT_EQ(mc_proto_check(data, size, n), c->id);
                zmsg_t *msg = s_raw(n, data, size);
                if (routed)
                    zmsg_pushmem(msg, "\0peer", 5);
                mc_proto_msg_t m;
                mc_proto_msg_init(&m);
                ASSERT_EQ(mc_proto_msg_decode(&m, &msg, routed), 0);
                MC_CHECK(msg == NULL);
                ASSERT_EQ(m.id, c->id);
                ASSERT_EQ(m.routing_id_size, routed ? 5 : 0);
                for (int f = 0; f < c->nfields; f++)
                    if (!s_field_is(&m, c->fields[f], data[2 + f], size[2 + f])) {
                        fprintf(stderr, "%s %s: field %s differs\n", c->signature, c->name, c->fields[f]->name);
                        mc_test_failures++;
                    }
                ASSERT_EQ(mc_proto_msg_encode(&m, routed, &msg), 0);
                ASSERT_EQ(m.id, MC_PROTO_INVALID);        //  encoding consumed it
                MC_CHECK(m.envelope == NULL);
                ASSERT_EQ(zmsg_size(msg), (size_t) (n + routed));
                zframe_t *frame = zmsg_first(msg);
                if (routed) {
                    MC_CHECK(zframe_size(frame) == 5 && memcmp(zframe_data(frame), "\0peer", 5) == 0);
                    frame = zmsg_next(msg);
                }
                for (int p = 0; p < n && frame; p++, frame = zmsg_next(msg))
                    if (zframe_size(frame) != size[p] || memcmp(zframe_data(frame), data[p], size[p]) != 0) {
                        fprintf(stderr, "%s %s: part %d differs after encoding\n", c->signature, c->name, p);
                        mc_test_failures++;
                    }
                zmsg_destroy(&msg);
            }
}

//  The wire as broker-protocol.md shows it, built with the setters.
static void
test_wire(void)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_WORKER_REQUEST;
    ASSERT_EQ(mc_proto_msg_set_client(&m, "\0c1", 3), 0);
    ASSERT_EQ(mc_proto_msg_set_request_id(&m, "r\0", 2), 0);
    ASSERT_EQ(mc_proto_msg_set_peer_key(&m, "edge-1"), 0);
    m.peer_role = MC_PEER_EDGE;
    zframe_t *env = zframe_new("env", 3);
    mc_proto_msg_set_envelope(&m, &env);
    MC_CHECK(env == NULL);
    zmsg_t *msg;
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), 0);
    ASSERT_EQ(zmsg_size(msg), MC_PROTO_WORKER_REQUEST_FRAMES);
    ASSERT_EQ(MC_PROTO_WORKER_REQUEST_FRAMES, 7);
    const char *want[] = { "MCW2", "\x02", "\0c1", "r\0", "edge-1", "edge", "env" };
    size_t wsize[] = { 4, 1, 3, 2, 6, 4, 3 };
    int p = 0;
    for (zframe_t *f = zmsg_first(msg); f; f = zmsg_next(msg), p++)
        if (p < 7 && (zframe_size(f) != wsize[p] || memcmp(zframe_data(f), want[p], wsize[p]) != 0)) {
            fprintf(stderr, "worker REQUEST part %d is not as documented\n", p);
            mc_test_failures++;
        }
    zmsg_destroy(&msg);

    //  no fields: two frames
    m.id = MC_PROTO_WORKER_HEARTBEAT;
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), 0);
    ASSERT_EQ(zmsg_size(msg), 2);
    MC_CHECK(zframe_streq(zmsg_first(msg), "MCW2") && s_byte_is(zmsg_next(msg), 0x04));
    zmsg_destroy(&msg);

    //  a command without an envelope set sends an empty one
    m.id = MC_PROTO_CLIENT_REQUEST;
    mc_proto_msg_set_service(&m, "catalog.0");
    mc_proto_msg_set_request_id(&m, "1", 1);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), 0);
    ASSERT_EQ(zframe_size(zmsg_last(msg)), 0);
    MC_CHECK(zframe_streq(zmsg_first(msg), "MCC1") && s_byte_is(zmsg_next(msg), 0x01));
    zmsg_destroy(&msg);

    //  setters refuse what does not fit and keep what was there
    char long_service[MC_PROTO_SERVICE_MAX + 2];
    memset(long_service, 's', sizeof long_service - 1);
    long_service[sizeof long_service - 1] = 0;
    mc_proto_msg_set_service(&m, "kept");
    ASSERT_EQ(mc_proto_msg_set_service(&m, long_service), -1);
    ASSERT_STR(m.service, "kept");
    long_service[MC_PROTO_SERVICE_MAX] = 0;
    ASSERT_EQ(mc_proto_msg_set_service(&m, long_service), 0);
    byte rid[MC_PROTO_REQUEST_ID_MAX + 1] = { 0 };
    ASSERT_EQ(mc_proto_msg_set_request_id(&m, rid, sizeof rid), -1);
    ASSERT_EQ(mc_proto_msg_set_request_id(&m, rid, sizeof rid - 1), 0);
    byte client[MC_PROTO_CLIENT_MAX + 1] = { 1 };
    ASSERT_EQ(mc_proto_msg_set_client(&m, client, sizeof client), -1);
    char key[MC_PEER_NAME_MAX + 2] = { 0 };
    memset(key, 'k', MC_PEER_NAME_MAX + 1);
    ASSERT_EQ(mc_proto_msg_set_peer_key(&m, key), -1);
    mc_proto_msg_reset(&m);
}

//  Over real sockets: a DEALER asks, the ROUTER learns who asked (routing id) and answers.
static void
test_sockets(void)
{
    zsock_t *router = zsock_new_router("inproc://mc-proto-test");
    zsock_t *dealer = zsock_new_dealer("inproc://mc-proto-test");
    MC_CHECK(router && dealer);
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    ASSERT_EQ(mc_proto_msg_recv(&m, router, NULL, NULL), MC_PROTO_AGAIN);

    m.id = MC_PROTO_CLIENT_REQUEST;
    mc_proto_msg_set_service(&m, "catalog.0");
    mc_proto_msg_set_request_id(&m, "\0\1", 2);
    zframe_t *env = zframe_new("hello", 5);
    mc_proto_msg_set_envelope(&m, &env);
    m.routing_id_size = 3;          //  a DEALER sends no routing id, whatever the message says
    ASSERT_EQ(mc_proto_msg_send(&m, dealer), 0);
    ASSERT_EQ(m.id, MC_PROTO_INVALID);

    int rc = MC_PROTO_AGAIN, fd = 0;
    mc_peer_info_t peer;
    for (int i = 0; i < 200 && rc == MC_PROTO_AGAIN; i++) {
        rc = mc_proto_msg_recv(&m, router, &fd, &peer);
        if (rc == MC_PROTO_AGAIN)
            zclock_sleep(5);
    }
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(m.id, MC_PROTO_CLIENT_REQUEST);
    ASSERT_STR(m.service, "catalog.0");
    ASSERT_EQ(m.request_id_size, 2);
    MC_CHECK(m.routing_id_size > 0);
    MC_CHECK(m.envelope && zframe_streq(m.envelope, "hello"));
    ASSERT_EQ(peer.role, MC_PEER_NONE);     //  inproc: no plane metadata

    //  answer with the routing id it came with
    mc_proto_msg_t r;
    mc_proto_msg_init(&r);
    ASSERT_EQ(mc_proto_msg_set_routing_id(&r, m.routing_id, m.routing_id_size), 0);
    ASSERT_EQ(mc_proto_msg_set_routing_id(&r, m.routing_id, 0), -1);
    ASSERT_EQ(mc_proto_msg_set_routing_id(&r, s_store[0], MC_PROTO_ROUTING_ID_MAX + 1), -1);
    ASSERT_EQ(r.routing_id_size, m.routing_id_size);
    r.id = MC_PROTO_CLIENT_UNAVAILABLE;
    mc_proto_msg_set_service(&r, m.service);
    mc_proto_msg_set_request_id(&r, m.request_id, m.request_id_size);
    mc_proto_msg_set_reason(&r, "no live node");
    ASSERT_EQ(mc_proto_msg_send(&r, router), 0);
    mc_proto_msg_reset(&m);
    rc = MC_PROTO_AGAIN;
    for (int i = 0; i < 200 && rc == MC_PROTO_AGAIN; i++) {
        rc = mc_proto_msg_recv(&m, dealer, NULL, NULL);
        if (rc == MC_PROTO_AGAIN)
            zclock_sleep(5);
    }
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(m.id, MC_PROTO_CLIENT_UNAVAILABLE);
    ASSERT_STR(m.reason, "no live node");
    ASSERT_EQ(m.routing_id_size, 0);
    MC_CHECK(m.request_id_size == 2 && memcmp(m.request_id, "\0\1", 2) == 0);

    //  a ROUTER cannot send without knowing to whom: nothing goes out
    mc_proto_msg_reset(&m);
    m.id = MC_PROTO_WORKER_HEARTBEAT;
    ASSERT_EQ(mc_proto_msg_send(&m, router), MC_PROTO_MALFORMED);

    //  a malformed message is consumed, and the next one still decodes
    zstr_sendx(dealer, "MCW2", "\x01", NULL);
    zstr_sendx(dealer, "MCW2", "\x04", NULL);
    int got[2] = { 1, 1 };
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 200 && (got[k] = mc_proto_msg_recv(&m, router, NULL, NULL)) == MC_PROTO_AGAIN; i++)
            zclock_sleep(5);
    ASSERT_EQ(got[0], MC_PROTO_MALFORMED);
    ASSERT_EQ(got[1], 0);
    ASSERT_EQ(m.id, MC_PROTO_WORKER_HEARTBEAT);
    MC_CHECK(m.routing_id_size > 0);
    mc_proto_msg_reset(&m);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
}

//  Decodes the parts as they are; returns the result and the id it read.
static int
s_decode(int n, const void *const *data, const size_t *size, mc_proto_id_t *id)
{
    zmsg_t *msg = s_raw(n, data, size);
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    int rc = mc_proto_msg_decode(&m, &msg, false);
    *id = m.id;
    bool none = m.service[0] == 0 && m.request_id_size == 0 && m.client_size == 0 && !m.envelope;
    if (rc && !none) {
        fprintf(stderr, "a malformed message left fields set\n");
        mc_test_failures++;
    }
    mc_proto_msg_reset(&m);
    return rc;
}

//  Each way of breaking the grammar, for every command and field.
static void
test_rejects(void)
{
    mc_proto_id_t id;
    //  signatures and commands that are none
    const char *sigs[] = { "MCC2", "MCW1", "MCC", "MCW22", "mcc1", "" };
    for (size_t s = 0; s < sizeof sigs / sizeof *sigs; s++) {
        const void *data[] = { sigs[s], "\x04" };
        size_t size[] = { strlen(sigs[s]), 1 };
        ASSERT_EQ(s_decode(2, data, size, &id), MC_PROTO_MALFORMED);
        ASSERT_EQ(id, MC_PROTO_INVALID);
    }
    const struct { const char *sig; const char *cmd; size_t len; } cmds[] = {
        { "MCC1", "\x00", 1 }, { "MCC1", "\x05", 1 }, { "MCW2", "\x06", 1 }, { "MCW2", "\x00", 1 },
        { "MCW2", "\x04\x00", 2 }, { "MCW2", "", 0 }, { "MCC1", "\xff", 1 },
    };
    for (size_t k = 0; k < sizeof cmds / sizeof *cmds; k++) {
        const void *data[] = { cmds[k].sig, cmds[k].cmd };
        size_t size[] = { 4, cmds[k].len };
        ASSERT_EQ(s_decode(2, data, size, &id), MC_PROTO_MALFORMED);
        ASSERT_EQ(id, MC_PROTO_INVALID);
        ASSERT_EQ(mc_proto_check(data, size, 2), MC_PROTO_INVALID);
    }
    ASSERT_EQ(s_decode(0, NULL, NULL, &id), MC_PROTO_MALFORMED);

    for (int i = 0; i < MC_PROTO_COMMANDS; i++) {
        const mc_proto_command_t *c = &mc_proto_commands[i];
        const void *data[MC_PROTO_FRAMES_MAX + 2];
        size_t size[MC_PROTO_FRAMES_MAX + 2];
        int n = s_parts(c, s_min, data, size);
        ASSERT_EQ(s_decode(n, data, size, &id), 0);
        //  a frame missing, a frame too many: the command is known, the message is not it
        if (c->nfields) {
            ASSERT_EQ(s_decode(n - 1, data, size, &id), MC_PROTO_MALFORMED);
            ASSERT_EQ(id, c->id);
        }
        data[n] = "";
        size[n] = 0;
        ASSERT_EQ(s_decode(n + 1, data, size, &id), MC_PROTO_MALFORMED);
        ASSERT_EQ(id, c->id);
        ASSERT_EQ(mc_proto_check(data, size, n + 1), MC_PROTO_INVALID);
        //  each field a byte too long, a byte too short, with a NUL in a string, an unknown role
        for (int f = 0; f < c->nfields; f++) {
            const mc_proto_field_t *field = c->fields[f];
            n = s_parts(c, s_max, data, size);
            const void *keep = data[2 + f];
            size_t keep_size = size[2 + f];
            static byte big[MC_FRAME_MAX + 1];
            memset(big, 'x', sizeof big);
            data[2 + f] = big;
            size[2 + f] = field->max + 1;
            if (s_decode(n, data, size, &id) != MC_PROTO_MALFORMED) {
                fprintf(stderr, "%s %s: %s of %zu bytes accepted\n", c->signature, c->name, field->name, field->max + 1);
                mc_test_failures++;
            }
            if (field->min > 0) {
                size[2 + f] = field->min - 1;
                if (s_decode(n, data, size, &id) != MC_PROTO_MALFORMED) {
                    fprintf(stderr, "%s %s: %s of %zu bytes accepted\n", c->signature, c->name, field->name, field->min - 1);
                    mc_test_failures++;
                }
            }
            data[2 + f] = keep;
            size[2 + f] = keep_size;
            if (field->kind == MC_PROTO_STRING && field->max >= 3) {
                data[2 + f] = "a\0b";
                size[2 + f] = 3;
                ASSERT_EQ(s_decode(n, data, size, &id), MC_PROTO_MALFORMED);
            }
            if (field->kind == MC_PROTO_ROLE) {
                const char *bad[] = { "self", "admin", "Edge", "edge\0" };
                for (int b = 0; b < 4; b++) {
                    data[2 + f] = bad[b];
                    size[2 + f] = b == 3 ? 5 : strlen(bad[b]);
                    ASSERT_EQ(s_decode(n, data, size, &id), MC_PROTO_MALFORMED);
                }
            }
            data[2 + f] = keep;
            size[2 + f] = keep_size;
            ASSERT_EQ(s_decode(n, data, size, &id), 0);
        }
    }

    //  routed: the routing id must be there
    zmsg_t *msg = zmsg_new();
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    ASSERT_EQ(mc_proto_msg_decode(&m, &msg, true), MC_PROTO_MALFORMED);
    msg = zmsg_new();
    zmsg_addstr(msg, "MCW2");
    zmsg_addmem(msg, "\x04", 1);
    ASSERT_EQ(mc_proto_msg_decode(&m, &msg, true), MC_PROTO_MALFORMED);     //  MCW2 taken for the id
    msg = NULL;
    ASSERT_EQ(mc_proto_msg_decode(&m, &msg, false), MC_PROTO_MALFORMED);
}

//  What breaks the grammar is never sent: the message is dropped and self reset.
static void
test_encode_refuses(void)
{
    mc_proto_msg_t m;
    zmsg_t *msg = (zmsg_t *) 1;
    mc_proto_msg_init(&m);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);       //  no command
    MC_CHECK(msg == NULL);

    mc_proto_msg_init(&m);
    m.id = MC_PROTO_CLIENT_REQUEST;
    mc_proto_msg_set_request_id(&m, "1", 1);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);       //  no service

    m.id = MC_PROTO_CLIENT_REQUEST;
    memset(m.service, 's', sizeof m.service);                                   //  written past its bound
    mc_proto_msg_set_request_id(&m, "1", 1);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);

    m.id = MC_PROTO_CLIENT_REQUEST;
    mc_proto_msg_set_service(&m, "catalog.0");
    zframe_t *env = zframe_new("e", 1);
    mc_proto_msg_set_envelope(&m, &env);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);       //  no request id
    MC_CHECK(m.envelope == NULL);                                              //  freed, not leaked

    m.id = MC_PROTO_CLIENT_UNAVAILABLE;
    mc_proto_msg_set_service(&m, "catalog.0");
    mc_proto_msg_set_request_id(&m, "1", 1);
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);       //  no reason

    mc_peer_t roles[] = { MC_PEER_NONE, MC_PEER_SELF, (mc_peer_t) 99 };
    for (int r = 0; r < 3; r++) {
        m.id = MC_PROTO_WORKER_REQUEST;
        mc_proto_msg_set_client(&m, "c", 1);
        mc_proto_msg_set_request_id(&m, "1", 1);
        m.peer_role = roles[r];
        ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);   //  no role to name
    }

    m.id = MC_PROTO_WORKER_HEARTBEAT;
    ASSERT_EQ(mc_proto_msg_encode(&m, true, &msg), MC_PROTO_MALFORMED);        //  routed, to nobody
    m.id = (mc_proto_id_t) 0x206;
    ASSERT_EQ(mc_proto_msg_encode(&m, false, &msg), MC_PROTO_MALFORMED);       //  no such command
}

//  The model's numbers, as the callers and broker-protocol.md rely on them.
static void
test_constants(void)
{
    ASSERT_STR(MC_PROTO_CLIENT_SIGNATURE, "MCC1");
    ASSERT_STR(MC_PROTO_WORKER_SIGNATURE, "MCW2");
    ASSERT_EQ(MC_PROTO_BYTE(MC_PROTO_CLIENT_REQUEST), 0x01);
    ASSERT_EQ(MC_PROTO_BYTE(MC_PROTO_CLIENT_UNAVAILABLE), 0x03);
    ASSERT_EQ(MC_PROTO_BYTE(MC_PROTO_WORKER_DISCONNECT), 0x05);
    ASSERT_EQ(MC_PROTO_REQUEST_ID_MAX, 128);
    ASSERT_STR(MC_PROTO_DIRECTORY_SIGNATURE, "MCD1");
    ASSERT_EQ(MC_PROTO_BYTE(MC_PROTO_CLIENT_MOVED), 0x04);
    ASSERT_EQ(MC_PROTO_BYTE(MC_PROTO_DIRECTORY_TABLE), 0x03);
    ASSERT_EQ(MC_PROTO_SERVICE_MAX, 128);
    ASSERT_EQ(MC_PROTO_ENVELOPE_MAX, MC_FRAME_MAX);
    ASSERT_EQ(MC_PROTO_CLIENT_REPLY_AT_ENVELOPE, 4);
    ASSERT_EQ(MC_PROTO_FRAMES_MAX, 7);
    ASSERT_EQ(MC_PROTO_SIDE(MC_PROTO_CLIENT_UNAVAILABLE), MC_PROTO_CLIENT);
    ASSERT_EQ(MC_PROTO_SIDE(MC_PROTO_WORKER_REQUEST), MC_PROTO_WORKER);
    for (int i = 0; i < MC_PROTO_COMMANDS; i++)
        MC_CHECK(mc_proto_command(mc_proto_commands[i].id) == &mc_proto_commands[i]);
    MC_CHECK(mc_proto_command(MC_PROTO_INVALID) == NULL);
}

int
main(void)
{
    zsys_init();
    MC_TEST_RUN(test_constants);
    MC_TEST_RUN(test_round_trip);
    MC_TEST_RUN(test_wire);
    MC_TEST_RUN(test_sockets);
    MC_TEST_RUN(test_rejects);
    MC_TEST_RUN(test_encode_refuses);
    return MC_TEST_DONE();
}
