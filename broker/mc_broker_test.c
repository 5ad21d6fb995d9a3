/*  The broker as a zactor on a loopback TCP port, driven by hand-written workers and a client:
    routing, round-robin, unavailable, expiry of silent workers, MMI, and the plane's trust
    rules (CURVE keys and their roles). */
#include "mc_broker.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_test.h"
#include "mc_util.h"

static char s_keys[64];     //  the test cluster's key folder

//  True when frame is exactly the command byte of id. The frames here are built and read by
//  hand, not with the codec: this test checks the broker's wire, not the codec's round trip.
static bool
s_is(zframe_t *frame, mc_proto_id_t id)
{
    return frame && zframe_size(frame) == 1 && zframe_data(frame)[0] == MC_PROTO_BYTE(id);
}

//  A DEALER connected to endpoint proving the plane key called key (NULL: no CURVE at all;
//  "stranger": a key that is on no allow-list).
static zsock_t *
s_dealer(const char *endpoint, const char *key)
{
    zsock_t *d = zsock_new(ZMQ_DEALER);
    zsock_set_rcvtimeo(d, 2000);
    if (key) {
        char path[128];
        snprintf(path, sizeof path, "%s/%s.cert_secret", s_keys, key);
        zcert_t *cert = streq(key, "stranger") ? zcert_new() : zcert_load(path);
        snprintf(path, sizeof path, "%s/broker.cert", s_keys);
        zcert_t *server = zcert_load(path);
        MC_CHECK(cert && server);
        mc_plane_client_with(d, cert, zcert_public_txt(server));
        zcert_destroy(&cert);
        zcert_destroy(&server);
    }
    zsock_connect(d, "%s", endpoint);
    return d;
}

static zsock_t *
s_worker_as(const char *endpoint, const char *key, const char *service, const char *node)
{
    zsock_t *w = s_dealer(endpoint, key);
    zstr_sendx(w, MC_PROTO_WORKER_SIGNATURE, "\x01", service, node, NULL);
    return w;
}

static zsock_t *
s_worker(const char *endpoint, const char *service, const char *node)
{
    return s_worker_as(endpoint, "node", service, node);
}

static zsock_t *
s_client(const char *endpoint)
{
    return s_dealer(endpoint, "edge");
}

static void
s_request(zsock_t *client, const char *service, const char *rid, const char *body)
{
    zstr_sendx(client, MC_PROTO_CLIENT_SIGNATURE, "\x01", service, rid, body, NULL);
}

//  Receives a REQUEST on worker w (skipping heartbeats); returns the request id, or NULL.
//  When role is not NULL it gets the sender's role as the broker stamped it.
static char *
s_worker_take_from(zsock_t *w, zframe_t **client, char **key, char **role)
{
    while (true) {
        zmsg_t *msg = zmsg_recv(w);
        if (!msg)
            return NULL;
        zframe_t *proto = zmsg_first(msg);
        zframe_t *cmd = zmsg_next(msg);
        if (zframe_streq(proto, MC_PROTO_WORKER_SIGNATURE) && s_is(cmd, MC_PROTO_WORKER_REQUEST) && zmsg_size(msg) == MC_PROTO_WORKER_REQUEST_FRAMES) {
            *client = zframe_dup(zmsg_next(msg));
            char *rid = zframe_strdup(zmsg_next(msg));
            char *k = zframe_strdup(zmsg_next(msg)), *r = zframe_strdup(zmsg_next(msg));
            if (key)
                *key = k;
            else
                free(k);
            if (role)
                *role = r;
            else
                free(r);
            zmsg_destroy(&msg);
            return rid;
        }
        zmsg_destroy(&msg);
    }
}

static char *
s_worker_take(zsock_t *w, zframe_t **client)
{
    return s_worker_take_from(w, client, NULL, NULL);
}

//  Receives the client's next message: returns its command byte, or -1; *rid gets the id.
static int
s_client_take(zsock_t *c, char **rid, char **payload)
{
    zmsg_t *msg = zmsg_recv(c);
    if (!msg || zmsg_size(msg) != 5) {
        zmsg_destroy(&msg);
        return -1;
    }
    free(zmsg_popstr(msg));
    zframe_t *cmd = zmsg_pop(msg);
    int kind = zframe_data(cmd)[0];
    zframe_destroy(&cmd);
    free(zmsg_popstr(msg));
    *rid = zmsg_popstr(msg);
    *payload = zmsg_popstr(msg);
    zmsg_destroy(&msg);
    return kind;
}

static void
test_routing(void)
{
    zactor_t *broker = zactor_new(mc_broker_actor, "tcp://127.0.0.1:*");
    char *endpoint = zstr_recv(broker);
    MC_CHECK(endpoint && *endpoint);
    zsock_t *client = s_client(endpoint);

    //  no worker: UNAVAILABLE at once
    s_request(client, "catalog.0", "r1", "x");
    char *rid, *payload;
    ASSERT_EQ(s_client_take(client, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_UNAVAILABLE));
    ASSERT_STR(rid, "r1");
    free(rid);
    free(payload);

    zsock_t *w1 = s_worker(endpoint, "catalog.0", "n1");
    zsock_t *w2 = s_worker(endpoint, "catalog.0", "n2");
    //  MMI knows both
    for (int tries = 0; tries < 100; tries++) {
        s_request(client, "mmi.nodes", "m", "");
        s_client_take(client, &rid, &payload);
        bool both = payload && strstr(payload, "catalog.0 n1") && strstr(payload, "catalog.0 n2");
        free(rid);
        free(payload);
        if (both)
            break;
        zclock_sleep(10);
    }
    s_request(client, "mmi.service", "m2", "catalog.0");
    s_client_take(client, &rid, &payload);
    ASSERT_STR(payload, "200");
    free(rid);
    free(payload);

    //  four requests alternate between the two workers, and replies find the client
    int got1 = 0, got2 = 0;
    for (int i = 0; i < 4; i++) {
        char r[8];
        snprintf(r, sizeof r, "q%d", i);
        s_request(client, "catalog.0", r, "body");
        zpoller_t *poller = zpoller_new(w1, w2, NULL);
        zsock_t *which = zpoller_wait(poller, 2000);
        zpoller_destroy(&poller);
        MC_CHECK(which != NULL);
        if (!which)
            break;
        zframe_t *caddr = NULL;
        char *wrid = s_worker_take(which, &caddr);
        ASSERT_STR(wrid, r);
        got1 += which == w1;
        got2 += which == w2;
        zmsg_t *reply = zmsg_new();
        zmsg_addstr(reply, MC_PROTO_WORKER_SIGNATURE);
        zmsg_addmem(reply, "\x03", 1);
        zmsg_append(reply, &caddr);
        zmsg_addstr(reply, wrid);
        zmsg_addstr(reply, "answer");
        zmsg_send(&reply, which);
        ASSERT_EQ(s_client_take(client, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
        ASSERT_STR(rid, r);
        ASSERT_STR(payload, "answer");
        free(rid);
        free(payload);
        free(wrid);
    }
    ASSERT_EQ(got1, 2);
    ASSERT_EQ(got2, 2);

    //  a worker whose connection closes with a request in hand: the client hears UNAVAILABLE at
    //  once, long before its heartbeats would have run out. Requests go round-robin, so at most
    //  two are needed before w2 holds one (a request w1 takes stays unanswered: harmless).
    char *held = NULL;
    for (int i = 0; i < 2 && !held; i++) {
        char r[8];
        snprintf(r, sizeof r, "h%d", i);
        s_request(client, "catalog.0", r, "body");
        zpoller_t *poller = zpoller_new(w1, w2, NULL);
        zsock_t *which = zpoller_wait(poller, 2000);
        zpoller_destroy(&poller);
        if (!which)
            break;
        zframe_t *caddr = NULL;
        char *wrid = s_worker_take(which, &caddr);
        zframe_destroy(&caddr);
        if (which == w2) {
            held = wrid;
            break;
        }
        free(wrid);
    }
    MC_CHECK(held != NULL);
    zsock_destroy(&w2);
    uint64_t t0 = mc_mono_ms();
    int kind = -1;
    rid = payload = NULL;
    zsock_set_rcvtimeo(client, 50);
    while (kind < 0 && mc_mono_ms() - t0 < 1000)
        kind = s_client_take(client, &rid, &payload);
    ASSERT_EQ(kind, MC_PROTO_BYTE(MC_PROTO_CLIENT_UNAVAILABLE));
    MC_CHECK(rid && held && streq(rid, held));
    free(rid);
    free(payload);
    free(held);
    //  and later requests all go to the live worker
    s_request(client, "catalog.0", "after", "body");
    zframe_t *caddr = NULL;
    char *wrid = s_worker_take(w1, &caddr);
    ASSERT_STR(wrid, "after");
    free(wrid);
    zframe_destroy(&caddr);

    //  an unknown worker that sends a heartbeat is told to disconnect
    zsock_t *stranger = s_dealer(endpoint, "node");
    zstr_sendx(stranger, MC_PROTO_WORKER_SIGNATURE, "\x04", NULL);
    zmsg_t *msg = zmsg_recv(stranger);
    MC_CHECK(msg && zmsg_size(msg) == 2);
    if (msg) {
        zframe_t *cmd = zmsg_last(msg);
        MC_CHECK(s_is(cmd, MC_PROTO_WORKER_DISCONNECT));
    }
    zmsg_destroy(&msg);

    zsock_destroy(&stranger);
    zsock_destroy(&w1);
    zsock_destroy(&client);
    zstr_free(&endpoint);
    zactor_destroy(&broker);
}

//  A worker still connected but silent for a second (busy with a long group commit) keeps its
//  place: only MC_HEARTBEAT_LIVENESS of silence, or a closed connection, ends it.
static void
test_busy_worker_is_not_dead(void)
{
    zactor_t *broker = zactor_new(mc_broker_actor, "tcp://127.0.0.1:*");
    char *endpoint = zstr_recv(broker);
    zsock_t *client = s_client(endpoint);
    zsock_t *w = s_worker(endpoint, "orders.0", "n1");
    //  the broker knows the worker (mmi.service answers 200) before the silence starts
    char *answer = NULL;
    for (int i = 0; i < 100 && !(answer && streq(answer, "200")); i++) {
        char *rid = NULL;
        zstr_free(&answer);
        s_request(client, "mmi.service", "ready?", "orders.0");
        s_client_take(client, &rid, &answer);
        free(rid);
        if (!answer || !streq(answer, "200"))
            zclock_sleep(20);
    }
    MC_CHECK(answer && streq(answer, "200"));
    zstr_free(&answer);
    zframe_t *caddr = NULL;
    zclock_sleep(1200);     //  the worker says nothing for 1.2 s: the condition under test
    s_request(client, "orders.0", "busy", "x");
    char *wrid = s_worker_take(w, &caddr);
    MC_CHECK(wrid && strcmp(wrid, "busy") == 0);
    free(wrid);
    zframe_destroy(&caddr);
    zsock_destroy(&w);
    zsock_destroy(&client);
    zstr_free(&endpoint);
    zactor_destroy(&broker);
}

//  Nothing but allowed keys gets anything, each role only what it may do (CONTRACT §9).
static void
test_trust(void)
{
    zactor_t *broker = zactor_new(mc_broker_actor, "tcp://127.0.0.1:*");
    char *endpoint = zstr_recv(broker);
    zsock_t *w1 = s_worker(endpoint, "payments.0", "n1");
    zsock_t *edge = s_client(endpoint);
    char *rid = NULL, *payload = NULL;
    for (int i = 0; i < 100 && !(payload && streq(payload, "200")); i++) {
        zstr_free(&rid);
        zstr_free(&payload);
        s_request(edge, "mmi.service", "up?", "payments.0");
        s_client_take(edge, &rid, &payload);
        if (!payload || !streq(payload, "200"))
            zclock_sleep(20);
    }
    ASSERT_STR(payload, "200");
    zstr_free(&rid);
    zstr_free(&payload);

    //  no CURVE, or a key on no allow-list: no reply, no work for anyone
    const char *outsiders[] = { NULL, "stranger" };
    for (int i = 0; i < 2; i++) {
        zsock_t *c = s_dealer(endpoint, outsiders[i]);
        zsock_set_rcvtimeo(c, 300);
        s_request(c, "mmi.services", "x", "");
        s_request(c, "payments.0", "x", "card");
        ASSERT_EQ(s_client_take(c, &rid, &payload), -1);
        zsock_t *fake = s_worker_as(endpoint, outsiders[i], "payments.0", "n1");
        zsock_set_rcvtimeo(fake, 300);
        zmsg_t *got = zmsg_recv(fake);
        MC_CHECK(got == NULL);
        zmsg_destroy(&got);
        zsock_destroy(&fake);
        zsock_destroy(&c);
    }

    //  the worker learns who asked: the edge's key and role
    s_request(edge, "payments.0", "p1", "body");
    zframe_t *caddr = NULL;
    char *key = NULL, *role = NULL;
    char *wrid = s_worker_take_from(w1, &caddr, &key, &role);
    ASSERT_STR(wrid, "p1");
    ASSERT_STR(key, "edge");
    ASSERT_STR(role, "edge");
    zstr_free(&key);
    zstr_free(&role);

    //  an ops key may look (mmi) but not ask an actor; an edge or ops key may not serve
    zsock_t *ops = s_dealer(endpoint, "ops");
    s_request(ops, "mmi.service", "o1", "payments.0");
    ASSERT_EQ(s_client_take(ops, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
    ASSERT_STR(payload, "200");
    zstr_free(&rid);
    zstr_free(&payload);
    s_request(ops, "payments.0", "o2", "body");
    const char *not_nodes[] = { "edge", "ops", "relay" };
    for (int i = 0; i < 3; i++) {
        zsock_t *fake = s_worker_as(endpoint, not_nodes[i], "payments.0", "impostor");
        zmsg_t *got = zmsg_recv(fake);
        MC_CHECK(got && s_is(zmsg_last(got), MC_PROTO_WORKER_DISCONNECT));
        zmsg_destroy(&got);
        zsock_destroy(&fake);
    }
    //  a node key may serve only actors' services
    zsock_t *odd = s_worker(endpoint, "evil.0", "n9");
    zmsg_t *got = zmsg_recv(odd);
    MC_CHECK(got && s_is(zmsg_last(got), MC_PROTO_WORKER_DISCONNECT));
    zmsg_destroy(&got);
    zsock_destroy(&odd);

    //  another node's key reusing w1's node id does not evict w1
    MC_CHECK(mc_plane_add(s_keys, "node", "node-b") == 0);
    zsock_t *w2 = s_worker_as(endpoint, "node-b", "payments.0", "n1");
    for (int i = 0; i < 100; i++) {
        s_request(edge, "mmi.nodes", "n", "");
        s_client_take(edge, &rid, &payload);
        bool two = payload && strstr(payload, "payments.0 n1\npayments.0 n1");
        zstr_free(&rid);
        zstr_free(&payload);
        if (two)
            break;
        zclock_sleep(20);
    }
    //  w2 answers w1's request: refused; w1's own answer goes through, once
    for (int from = 2; from >= 1; from--) {
        zmsg_t *reply = zmsg_new();
        zmsg_addstr(reply, MC_PROTO_WORKER_SIGNATURE);
        zmsg_addmem(reply, "\x03", 1);
        zmsg_addmem(reply, zframe_data(caddr), zframe_size(caddr));
        zmsg_addstr(reply, "p1");
        zmsg_addstr(reply, from == 2 ? "forged" : "genuine");
        zmsg_send(&reply, from == 2 ? w2 : w1);
    }
    ASSERT_EQ(s_client_take(edge, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
    ASSERT_STR(payload, "genuine");
    zstr_free(&rid);
    zstr_free(&payload);
    //  binary request ids that differ only after a NUL byte (the edge's do) are two requests
    zsock_t *w3 = s_worker(endpoint, "catalog.0", "n3");
    zclock_sleep(100);
    for (byte i = 1; i <= 2; i++) {
        byte bin[2] = { 0, i };
        zmsg_t *req = zmsg_new();
        zmsg_addstr(req, MC_PROTO_CLIENT_SIGNATURE);
        zmsg_addmem(req, "\x01", 1);
        zmsg_addstr(req, "catalog.0");
        zmsg_addmem(req, bin, 2);
        zmsg_addstr(req, "body");
        zmsg_send(&req, edge);
    }
    zframe_t *addr[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++) {
        zmsg_t *req = zmsg_recv(w3);
        while (req && zmsg_size(req) != MC_PROTO_WORKER_REQUEST_FRAMES) {     //  heartbeats
            zmsg_destroy(&req);
            req = zmsg_recv(w3);
        }
        MC_CHECK(req && zmsg_size(req) == MC_PROTO_WORKER_REQUEST_FRAMES);
        if (!req)
            break;
        zmsg_first(req);
        zmsg_next(req);
        zframe_t *c = zmsg_next(req), *r = zmsg_next(req);
        zmsg_t *reply = zmsg_new();
        zmsg_addstr(reply, MC_PROTO_WORKER_SIGNATURE);
        zmsg_addmem(reply, "\x03", 1);
        zmsg_addmem(reply, zframe_data(c), zframe_size(c));
        zmsg_addmem(reply, zframe_data(r), zframe_size(r));
        zmsg_addstr(reply, "ok");
        addr[i] = zframe_dup(r);
        zmsg_send(&reply, w3);
        zmsg_destroy(&req);
    }
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(s_client_take(edge, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
        zstr_free(&rid);
        zstr_free(&payload);
        zframe_destroy(&addr[i]);
    }
    zsock_destroy(&w3);
    s_request(edge, "mmi.stats", "s", "");
    s_client_take(edge, &rid, &payload);
    MC_CHECK(payload && strstr(payload, "mercato_broker_refused_total"));
    MC_CHECK(payload && !strstr(payload, "mercato_broker_refused_total 0\n"));
    //  the connections with no key, or one on no allow-list, failed their handshakes
    MC_CHECK(payload && strstr(payload, "mercato_broker_handshakes_refused_total"));
    MC_CHECK(payload && !strstr(payload, "mercato_broker_handshakes_refused_total 0\n"));
    zstr_free(&rid);
    zstr_free(&payload);
    free(wrid);
    zframe_destroy(&caddr);
    zsock_destroy(&w2);
    zsock_destroy(&ops);
    zsock_destroy(&edge);
    zsock_destroy(&w1);
    zstr_free(&endpoint);
    zactor_destroy(&broker);
}

//  mercato_broker_malformed_frames_total from mmi.stats, asked by client.
static long
s_malformed_total(zsock_t *client)
{
    char *rid = NULL, *payload = NULL;
    s_request(client, "mmi.stats", "m", "");
    s_client_take(client, &rid, &payload);
    const char *at = payload ? strstr(payload, "mercato_broker_malformed_frames_total ") : NULL;
    long n = at ? atol(at + strlen("mercato_broker_malformed_frames_total ")) : -1;
    zstr_free(&rid);
    zstr_free(&payload);
    return n;
}

//  The broker takes only what the codec decodes: a service name with a NUL is not the name
//  before it, an empty one is no name, and a READY that does not parse is told to start again.
static void
test_grammar(void)
{
    zactor_t *broker = zactor_new(mc_broker_actor, "tcp://127.0.0.1:*");
    char *endpoint = zstr_recv(broker);
    zsock_t *client = s_client(endpoint);
    zsock_t *w = s_worker(endpoint, "catalog.0", "n1");
    char *rid = NULL, *payload = NULL;
    for (int i = 0; i < 100 && !(payload && streq(payload, "200")); i++) {
        zstr_free(&rid);
        zstr_free(&payload);
        s_request(client, "mmi.service", "up?", "catalog.0");
        s_client_take(client, &rid, &payload);
        if (!payload || !streq(payload, "200"))
            zclock_sleep(20);
    }
    ASSERT_STR(payload, "200");
    zstr_free(&rid);
    zstr_free(&payload);
    long before = s_malformed_total(client);
    MC_CHECK(before >= 0);
    const struct { const char *service; size_t len; } bad[] = { { "catalog.0\0evil", 14 }, { "", 0 } };
    for (int i = 0; i < 2; i++) {
        zmsg_t *req = zmsg_new();
        zmsg_addstr(req, MC_PROTO_CLIENT_SIGNATURE);
        zmsg_addmem(req, "\x01", 1);
        zmsg_addmem(req, bad[i].service, bad[i].len);
        zmsg_addstr(req, "g1");
        zmsg_addstr(req, "body");
        zmsg_send(&req, client);
    }
    ASSERT_EQ(s_malformed_total(client), before + 2);
    //  nothing reached the worker: the next request it gets is the next valid one
    s_request(client, "catalog.0", "g2", "body");
    zframe_t *caddr = NULL;
    char *wrid = s_worker_take(w, &caddr);
    ASSERT_STR(wrid, "g2");
    zstr_free(&wrid);
    zframe_destroy(&caddr);

    char node[MC_PROTO_NODE_ID_MAX + 2];
    memset(node, 'n', sizeof node - 1);
    node[sizeof node - 1] = 0;
    zsock_t *odd = s_worker(endpoint, "catalog.0", node);
    zmsg_t *got = zmsg_recv(odd);
    MC_CHECK(got && s_is(zmsg_last(got), MC_PROTO_WORKER_DISCONNECT));
    zmsg_destroy(&got);
    ASSERT_EQ(s_malformed_total(client), before + 3);
    zsock_destroy(&odd);
    zsock_destroy(&w);
    zsock_destroy(&client);
    zstr_free(&endpoint);
    zactor_destroy(&broker);
}

//  mercato_broker_refused_total from mmi.stats, asked with an ops key; -1 with no answer.
static long
s_refused_total(zsock_t *ops)
{
    char *rid = NULL, *payload = NULL;
    s_request(ops, "mmi.stats", "s", "");
    s_client_take(ops, &rid, &payload);
    const char *at = payload ? strstr(payload, "mercato_broker_refused_total ") : NULL;
    long n = at ? atol(at + strlen("mercato_broker_refused_total ")) : -1;
    zstr_free(&rid);
    zstr_free(&payload);
    return n;
}

//  A key that may not serve speaking the worker protocol without READY (a REPLY naming someone
//  else's client, a heartbeat) is no worker that lost its session but a peer passing as one: it
//  is told DISCONNECT, and refused, counted and logged.
static void
test_non_workers_refused(void)
{
    zactor_t *broker = zactor_new(mc_broker_actor, "tcp://127.0.0.1:*");
    char *endpoint = zstr_recv(broker);
    zsock_t *ops = s_dealer(endpoint, "ops");
    ASSERT_EQ(s_refused_total(ops), 0);
    const char *not_nodes[] = { "edge", "ops", "relay" };
    for (int i = 0; i < 3; i++) {
        zsock_t *fake = s_dealer(endpoint, not_nodes[i]);
        zmsg_t *reply = zmsg_new();
        zmsg_addstr(reply, MC_PROTO_WORKER_SIGNATURE);
        zmsg_addmem(reply, i == 2 ? "\x04" : "\x03", 1);
        if (i < 2) {
            zmsg_addstr(reply, "victim");
            zmsg_addstr(reply, "1");
            zmsg_addstr(reply, "forged");
        }
        zmsg_send(&reply, fake);
        zmsg_t *got = zmsg_recv(fake);
        MC_CHECK(got && s_is(zmsg_last(got), MC_PROTO_WORKER_DISCONNECT));
        zmsg_destroy(&got);
        ASSERT_EQ(s_refused_total(ops), i + 1);
        zsock_destroy(&fake);
    }
    zsock_destroy(&ops);
    zstr_free(&endpoint);
    zactor_destroy(&broker);
}

//  A fake broker without CURVE on the broker's address ends a plane client's connection for
//  good (libzmq 4.3 does not retry after a protocol error); a watched client connects afresh
//  and reaches the real broker once it is back on that address.
static void
test_watch_reconnects(void)
{
    zsock_t *fake = zsock_new(ZMQ_ROUTER);
    int port = zsock_bind(fake, "tcp://127.0.0.1:*");
    MC_CHECK(port > 0);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    zsock_t *c = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(c);
    zsock_set_sndtimeo(c, 0);
    zsock_set_rcvtimeo(c, 50);
    char path[128];
    snprintf(path, sizeof path, "%s/edge.cert_secret", s_keys);
    zcert_t *cert = zcert_load(path);
    snprintf(path, sizeof path, "%s/broker.cert", s_keys);
    zcert_t *server = zcert_load(path);
    MC_CHECK(cert && server);
    mc_plane_client_with(c, cert, zcert_public_txt(server));
    zcert_destroy(&cert);
    zcert_destroy(&server);
    mc_plane_watch_t *watch = mc_plane_watch_new(c, endpoint);
    MC_CHECK(watch != NULL);
    zsock_connect(c, "%s", endpoint);
    bool failed = false;
    for (int i = 0; i < 300 && !failed; i++) {
        failed = mc_plane_watch_check(watch);
        if (!failed)
            zclock_sleep(10);
    }
    MC_CHECK(failed);
    zsock_destroy(&fake);
    //  the fake's port is free once its listener has closed, in the background
    zactor_t *broker = NULL;
    char *bound = NULL;
    for (int i = 0; i < 100 && !(bound && *bound); i++) {
        zstr_free(&bound);
        zactor_destroy(&broker);
        broker = zactor_new(mc_broker_actor, endpoint);
        bound = zstr_recv(broker);
        if (!*bound)
            zclock_sleep(20);
    }
    ASSERT_STR(bound, endpoint);
    char *rid = NULL, *payload = NULL;
    for (int i = 0; i < 100 && !payload; i++) {
        mc_plane_watch_check(watch);
        s_request(c, "mmi.services", "w", "");
        if (s_client_take(c, &rid, &payload) != MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY))
            zstr_free(&payload);
    }
    MC_CHECK(payload != NULL);
    zstr_free(&rid);
    zstr_free(&payload);
    mc_plane_watch_destroy(&watch);
    MC_CHECK(watch == NULL);
    zsock_destroy(&c);
    zstr_free(&bound);
    zactor_destroy(&broker);
}

int
main(void)
{
    zsys_init();
    snprintf(s_keys, sizeof s_keys, "/tmp/mc-broker-test-XXXXXX");
    MC_CHECK(mkdtemp(s_keys) != NULL);
    MC_CHECK(mc_plane_keygen(s_keys) == 0);
    MC_CHECK(mc_plane_init(s_keys, "broker", true) == 0);
    MC_TEST_RUN(test_routing);
    MC_TEST_RUN(test_busy_worker_is_not_dead);
    MC_TEST_RUN(test_trust);
    MC_TEST_RUN(test_grammar);
    MC_TEST_RUN(test_non_workers_refused);
    MC_TEST_RUN(test_watch_reconnects);
    mc_plane_shutdown();
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_keys);
    MC_CHECK(system(cmd) == 0);
    return MC_TEST_DONE();
}
