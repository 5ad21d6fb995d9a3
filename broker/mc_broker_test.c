/*  The broker as a zactor on a loopback TCP port, driven by hand-written nodes and clients: the
    directory (announcements, the table and its pushes, owners and epochs, a second claimant
    refused, a takeover once the owner is gone, the table kept across a restart), MMI, the
    grammar, and the plane's trust rules (CURVE keys and their roles). */
#include "mc_broker.h"
#include "mc_dir.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_test.h"
#include "mc_util.h"

static char s_keys[64];     //  the test cluster's key folder
static char s_data[96];     //  where the brokers keep the directory

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
s_client(const char *endpoint)
{
    return s_dealer(endpoint, "edge");
}

static void
s_request(zsock_t *client, const char *service, const char *rid, const char *body)
{
    zstr_sendx(client, MC_PROTO_CLIENT_SIGNATURE, "\x01", service, rid, body, NULL);
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

static zactor_t *
s_broker(char **endpoint)
{
    static mc_broker_actor_args_t args;
    args = (mc_broker_actor_args_t) { "tcp://127.0.0.1:*", s_data };
    zactor_t *broker = zactor_new(mc_broker_actor, &args);
    *endpoint = zstr_recv(broker);
    MC_CHECK(*endpoint && **endpoint);
    return broker;
}

//  A node announcing services ("catalog.0 catalog.1") from endpoint "tcp://<id>:1".
static void
s_announce(zsock_t *node, const char *id, const char *services)
{
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "tcp://%s:1", id);
    zstr_sendx(node, MC_PROTO_DIRECTORY_SIGNATURE, "\x01", id, endpoint, services, NULL);
}

//  The next table the subscriber gets after asking with version (0: any), skipping tables whose
//  version is not above it; NULL when none comes.
static mc_dir_t *
s_table_after(zsock_t *sub, uint64_t version)
{
    for (int tries = 0; tries < 50; tries++) {
        byte be[8];
        for (int i = 7, v = 0; i >= 0; i--, v++)
            be[i] = (byte) (version >> (8 * v));
        zmsg_t *ask = zmsg_new();
        zmsg_addstr(ask, MC_PROTO_DIRECTORY_SIGNATURE);
        zmsg_addmem(ask, "\x02", 1);
        zmsg_addmem(ask, be, 8);
        zmsg_send(&ask, sub);
        zmsg_t *got = zmsg_recv(sub);
        if (got && zmsg_size(got) == 3) {
            zframe_t *t = zmsg_last(got);
            mc_dir_t *dir = mc_dir_unpack(zframe_data(t), zframe_size(t));
            zmsg_destroy(&got);
            if (dir && mc_dir_version(dir) > version)
                return dir;
            mc_dir_destroy(&dir);
        }
        zmsg_destroy(&got);
        zclock_sleep(20);
    }
    return NULL;
}

//  The table, once shard is owned by node (and up, when up) in it; NULL when it never is.
static mc_dir_t *
s_table_when(zsock_t *sub, const char *shard, const char *node, bool up)
{
    uint64_t version = 0;
    for (int tries = 0; tries < 20; tries++) {
        mc_dir_t *dir = s_table_after(sub, version);
        if (!dir)
            return NULL;
        uint64_t epoch;
        const mc_dir_node_t *owner = mc_dir_owner(dir, shard, &epoch);
        const mc_dir_shard_t *s = mc_dir_shard(dir, shard, false);
        if (owner && streq(owner->id, node) && s->up == up && owner->up == up)
            return dir;
        version = mc_dir_version(dir);
        mc_dir_destroy(&dir);
    }
    return NULL;
}

static uint64_t
s_epoch(mc_dir_t *dir, const char *shard)
{
    uint64_t epoch = 0;
    mc_dir_owner(dir, shard, &epoch);
    return epoch;
}

static long s_stat(zsock_t *ops, const char *name);

//  The first live node owns what it announces, under epoch 1; a second live node's claim is
//  refused; once the owner's connection closes its shards are down, and the next claimant takes
//  them over under epoch 2. A restarted broker publishes the table it had, at a higher version.
static void
test_directory(void)
{
    char *endpoint;
    zactor_t *broker = s_broker(&endpoint);
    zsock_t *sub = s_client(endpoint);
    zsock_t *n1 = s_dealer(endpoint, "node");
    s_announce(n1, "n1", "catalog.0 catalog.1");
    mc_dir_t *dir = s_table_when(sub, "catalog.1", "n1", true);
    MC_CHECK(dir != NULL);
    if (dir) {
        ASSERT_EQ(s_epoch(dir, "catalog.0"), 1);
        const mc_dir_node_t *n = mc_dir_node(dir, "n1", false);
        MC_CHECK(n && streq(n->endpoint, "tcp://n1:1") && strlen(n->key) == MC_DIR_KEY_LEN);
    }
    uint64_t version = dir ? mc_dir_version(dir) : 0;
    mc_dir_destroy(&dir);

    //  n2 proves another node key; its claim on a live owner's shard changes nothing
    zsock_t *n2 = s_dealer(endpoint, "node-2");
    s_announce(n2, "n2", "catalog.0");
    dir = s_table_after(sub, version);
    MC_CHECK(dir && mc_dir_version(dir) == version + 1);    //  n2 itself is new in the table
    const mc_dir_node_t *owner = dir ? mc_dir_owner(dir, "catalog.0", NULL) : NULL;
    MC_CHECK(owner && streq(owner->id, "n1"));
    mc_dir_destroy(&dir);

    //  nor may n2 take n1's shards by announcing under n1's id: refused, the table unchanged
    zsock_t *ops = s_dealer(endpoint, "ops");
    long refused = s_stat(ops, "refused_total");
    s_announce(n2, "n1", "catalog.0 catalog.1");
    for (int tries = 0; tries < 50 && s_stat(ops, "refused_total") == refused; tries++)
        zclock_sleep(20);       //  n2's connection is not ops': no order between them
    ASSERT_EQ(s_stat(ops, "refused_total"), refused + 1);
    dir = s_table_after(sub, 0);
    owner = dir ? mc_dir_owner(dir, "catalog.0", NULL) : NULL;
    MC_CHECK(owner && streq(owner->id, "n1") && streq(owner->endpoint, "tcp://n1:1"));
    ASSERT_EQ(dir ? mc_dir_version(dir) : 0, version + 1);
    mc_dir_destroy(&dir);
    zsock_destroy(&ops);

    //  n1 goes: its shards are down (not given away), until n2 claims one
    zsock_destroy(&n1);
    dir = s_table_when(sub, "catalog.0", "n1", false);
    MC_CHECK(dir != NULL);
    mc_dir_destroy(&dir);
    s_announce(n2, "n2", "catalog.0");
    dir = s_table_when(sub, "catalog.0", "n2", true);
    MC_CHECK(dir != NULL);
    if (dir) {
        ASSERT_EQ(s_epoch(dir, "catalog.0"), 2);
        owner = mc_dir_owner(dir, "catalog.1", NULL);
        MC_CHECK(owner && streq(owner->id, "n1"));
        version = mc_dir_version(dir);
    }
    mc_dir_destroy(&dir);

    //  a new broker on the same directory: the same owners and epochs, a newer version
    zsock_destroy(&n2);
    zsock_destroy(&sub);
    zactor_destroy(&broker);
    zstr_free(&endpoint);
    broker = s_broker(&endpoint);
    sub = s_client(endpoint);
    dir = s_table_after(sub, 0);
    MC_CHECK(dir != NULL);
    if (dir) {
        MC_CHECK(mc_dir_version(dir) > version);
        owner = mc_dir_owner(dir, "catalog.0", NULL);
        MC_CHECK(owner && streq(owner->id, "n2"));
        ASSERT_EQ(s_epoch(dir, "catalog.0"), 2);
        owner = mc_dir_owner(dir, "catalog.1", NULL);
        MC_CHECK(owner && streq(owner->id, "n1"));
        ASSERT_EQ(s_epoch(dir, "catalog.1"), 1);
    }
    mc_dir_destroy(&dir);
    zsock_destroy(&sub);
    zactor_destroy(&broker);
    zstr_free(&endpoint);
}

//  mercato_broker_<name> from mmi.stats, asked with an ops key; -1 with no answer.
static long
s_stat(zsock_t *ops, const char *name)
{
    char *rid = NULL, *payload = NULL;
    s_request(ops, "mmi.stats", "s", "");
    s_client_take(ops, &rid, &payload);
    char key[96];
    snprintf(key, sizeof key, "mercato_broker_%s ", name);
    const char *at = payload ? strstr(payload, key) : NULL;
    long n = at ? atol(at + strlen(key)) : -1;
    zstr_free(&rid);
    zstr_free(&payload);
    return n;
}

//  mercato_broker_<name> once it has reached want (messages sent on other connections are
//  handled in no particular order with this one's), or what it was after 2 s.
static long
s_stat_reaches(zsock_t *ops, const char *name, long want)
{
    long n = -1;
    for (int i = 0; i < 100 && (n = s_stat(ops, name)) < want; i++)
        zclock_sleep(20);
    return n;
}

//  Only node keys announce; edge, relay and ops keys are refused (nothing changes, counted). No
//  key or an unknown one gets no answer at all. Requests for a shard are no business of the
//  broker: an edge asking is told so, a relay or ops key is refused; mmi.* is for every key.
static void
test_trust(void)
{
    char *endpoint;
    zactor_t *broker = s_broker(&endpoint);
    zsock_t *ops = s_dealer(endpoint, "ops");
    ASSERT_EQ(s_stat(ops, "refused_total"), 0);
    const char *not_nodes[] = { "edge", "relay", "ops" };
    for (int i = 0; i < 3; i++) {
        zsock_t *fake = s_dealer(endpoint, not_nodes[i]);
        s_announce(fake, "intruder", "identity.0");
        zsock_t *worker = s_dealer(endpoint, not_nodes[i]);
        zstr_sendx(worker, MC_PROTO_WORKER_SIGNATURE, "\x01", "identity.0", "intruder", NULL);
        mc_dir_t *dir = s_table_after(fake, 0);
        MC_CHECK(dir && !mc_dir_node(dir, "intruder", false) && !mc_dir_shard(dir, "identity.0", false));
        mc_dir_destroy(&dir);
        //  both refused before the sockets go (closing one drops what it has not sent yet)
        ASSERT_EQ(s_stat_reaches(ops, "refused_total", 2 * (i + 1)), 2 * (i + 1));
        zsock_destroy(&worker);
        zsock_destroy(&fake);
    }
    //  a worker READY is no broker business either, from any key
    zsock_t *n = s_dealer(endpoint, "node");
    zstr_sendx(n, MC_PROTO_WORKER_SIGNATURE, "\x01", "identity.0", "n1", NULL);
    s_request(n, "mmi.service", "m", "identity.0");
    char *rid = NULL, *payload = NULL;
    ASSERT_EQ(s_client_take(n, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
    ASSERT_STR(payload, "404");
    zstr_free(&rid);
    zstr_free(&payload);
    zsock_destroy(&n);
    //  three announcements and three READYs refused, and one READY from a node key
    ASSERT_EQ(s_stat_reaches(ops, "refused_total", 7), 7);

    zsock_t *edge = s_client(endpoint);
    s_request(edge, "catalog.0", "r1", "body");
    ASSERT_EQ(s_client_take(edge, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_UNAVAILABLE));
    ASSERT_STR(rid, "r1");
    zstr_free(&rid);
    zstr_free(&payload);
    s_request(ops, "catalog.0", "r2", "body");
    s_request(ops, "mmi.services", "r3", "");
    ASSERT_EQ(s_client_take(ops, &rid, &payload), MC_PROTO_BYTE(MC_PROTO_CLIENT_REPLY));
    ASSERT_STR(rid, "r3");      //  r2 got nothing
    zstr_free(&rid);
    zstr_free(&payload);
    ASSERT_EQ(s_stat_reaches(ops, "refused_total", 8), 8);

    const char *outsiders[] = { NULL, "stranger" };
    for (int i = 0; i < 2; i++) {
        zsock_t *o = s_dealer(endpoint, outsiders[i]);
        zsock_set_rcvtimeo(o, 300);
        s_request(o, "mmi.services", "o", "");
        zmsg_t *got = zmsg_recv(o);
        MC_CHECK(got == NULL);
        zmsg_destroy(&got);
        zsock_destroy(&o);
    }
    MC_CHECK(s_stat(ops, "handshakes_refused_total") >= 1);
    zsock_destroy(&edge);
    zsock_destroy(&ops);
    zactor_destroy(&broker);
    zstr_free(&endpoint);
}

//  Frames that are not the protocol are counted and dropped; the broker goes on answering.
static void
test_grammar(void)
{
    char *endpoint;
    zactor_t *broker = s_broker(&endpoint);
    zsock_t *client = s_client(endpoint);
    long before = s_stat(client, "malformed_frames_total");
    MC_CHECK(before >= 0);
    const struct { const char *sig, *cmd; const char *field; size_t len; } bad[] = {
        { MC_PROTO_CLIENT_SIGNATURE, "\x01", "catalog.0\0evil", 14 },
        { MC_PROTO_CLIENT_SIGNATURE, "\x01", "", 0 },
        { MC_PROTO_DIRECTORY_SIGNATURE, "\x02", "short", 5 },      //  a version is 8 bytes
        { MC_PROTO_DIRECTORY_SIGNATURE, "\x09", "", 0 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        zmsg_t *req = zmsg_new();
        zmsg_addstr(req, bad[i].sig);
        zmsg_addmem(req, bad[i].cmd, 1);
        zmsg_addmem(req, bad[i].field, bad[i].len);
        if (streq(bad[i].sig, MC_PROTO_CLIENT_SIGNATURE)) {
            zmsg_addstr(req, "g1");
            zmsg_addstr(req, "body");
        }
        zmsg_send(&req, client);
    }
    ASSERT_EQ(s_stat(client, "malformed_frames_total"), before + 4);
    zsock_destroy(&client);
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
        mc_broker_actor_args_t args = { endpoint, s_data };
        broker = zactor_new(mc_broker_actor, &args);
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
    MC_CHECK(mc_plane_add(s_keys, "node", "node-2") == 0);
    MC_CHECK(mc_plane_init(s_keys, "broker", true) == 0);
    snprintf(s_data, sizeof s_data, "%s/directory", s_keys);
    MC_TEST_RUN(test_directory);
    MC_TEST_RUN(test_trust);
    MC_TEST_RUN(test_grammar);
    MC_TEST_RUN(test_watch_reconnects);
    mc_plane_shutdown();
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_keys);
    MC_CHECK(system(cmd) == 0);
    return MC_TEST_DONE();
}
