/*  The relay against a real Kafka-protocol broker (librdkafka's mock cluster, in process) and a
    real catalog outbox: records flow in order, each signed so that the nodes' verifier accepts
    it, a poison record is dead-lettered without holding up the ones behind it, and re-driving
    puts it back. */
#include "catalog/catalog.h"
#include "mc_outbox.h"
#include "mc_test.h"
#include "mc_util.h"
#include "relay.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <pthread.h>

static char s_dir[64];
static char s_keys[80];

//  Creates a product through the actor core; returns 0 on 201.
static int
s_create(mc_core_t *core, const char *sku, uint64_t t)
{
    msgpack_sbuffer body, env, out;
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&env);
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "sku", sku);
    mc_pack_kv_cstr(&pk, "name", "relay test");
    mc_pack_kv_cstr(&pk, "description", "");
    mc_pack_kv_cstr(&pk, "category", "relay");
    mc_pack_kv_int(&pk, "price_cents", 1);
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, t);
    mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = MC_STR("product.create"), .key = { id, MC_ULID_LEN },
                         .corr = MC_STR("relay-test"), .time = t };
    mc_request_encode(&env, &req, (mc_str_t) { body.data, body.size });
    mc_core_handle(core, MC_PEER_SELF, env.data, env.size, t, &out);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    int rc = mc_reply_decode(&u, out.data, out.size, &rep) == 0 && rep.status == 201 ? 0 : -1;
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    return rc;
}

//  Entries in a named database of the catalog environment; *first gets its first key's number.
static long
s_entries_first(const char *name, uint64_t *first)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/catalog/0", s_dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat st;
    long n = -1;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 32) || mdb_env_open(env, dir, MDB_NOTLS, 0600))
        return -1;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open(txn, name, 0, &dbi) == 0 && mdb_stat(txn, dbi, &st) == 0)
            n = (long) st.ms_entries;
        MDB_cursor *cur;
        MDB_val k, v;
        if (first && n > 0 && mdb_cursor_open(txn, dbi, &cur) == 0) {
            if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0)
                *first = mc_outbox_seq(&k);
            mdb_cursor_close(cur);
        }
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return n;
}

static long
s_entries(const char *name)
{
    return s_entries_first(name, NULL);
}

static void *
s_relay_main(void *arg)
{
    relay_run(arg);
    return NULL;
}

//  Runs the relay until the outbox is empty (or 15 s pass).
static void
s_relay_until_drained(const char *bootstrap)
{
    char err[256];
    mc_event_signer_t *signer = mc_event_signer_new(s_keys, err, sizeof err);
    MC_CHECK(signer);
    relay_t *relay = relay_new(s_dir, bootstrap, NULL, &signer);
    MC_CHECK(!signer);
    pthread_t t;
    zsys_interrupted = 0;
    pthread_create(&t, NULL, s_relay_main, relay);
    uint64_t deadline = mc_mono_ms() + 15000;
    while (s_entries("outbox") != 0 && mc_mono_ms() < deadline)
        zclock_sleep(50);
    zsys_interrupted = 1;
    pthread_join(t, NULL);
    zsys_interrupted = 0;
    relay_destroy(&relay);
}

//  Whether a consumed record carries a signature the nodes' verifier accepts.
static mc_event_check_t
s_check(mc_event_verifier_t *v, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    rd_kafka_message_headers(m, &h);
    mc_event_record_t rec = { .topic = MC_STR("product.events"), .key = { m->key, m->key_len },
                              .value = { m->payload, m->len } };
    mc_str_t kid = { NULL, 0 }, sig = { NULL, 0 };
    const void *value;
    size_t size;
    for (int i = 0; i < MC_EVENT_H_COUNT; i++)
        if (h && rd_kafka_header_get_last(h, mc_event_signed_headers[i], &value, &size) == 0)
            rec.headers[i] = (mc_str_t) { value, size };
    if (h && rd_kafka_header_get_last(h, MC_EVENT_KID_HEADER, &value, &size) == 0)
        kid = (mc_str_t) { value, size };
    if (h && rd_kafka_header_get_last(h, MC_EVENT_SIG_HEADER, &value, &size) == 0)
        sig = (mc_str_t) { value, size };
    mc_event_check_t check = mc_event_verifier_check(v, &rec, kid, sig);
    //  and a changed value no longer verifies
    rec.value.len = rec.value.len ? rec.value.len - 1 : 0;
    ASSERT_EQ(mc_event_verifier_check(v, &rec, kid, sig), MC_EVENT_BAD_SIGNATURE);
    return check;
}

//  Keys of every record on product.events, in order; each must verify.
static int
s_consume(const char *bootstrap, char keys[][32], int max)
{
    char err[256];
    mc_event_verifier_t *v = mc_event_verifier_new(s_keys, err, sizeof err);
    MC_CHECK(v);
    if (!v)
        return -1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof err);
    rd_kafka_conf_set(conf, "group.id", "relay-test", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "product.events", 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    int n = 0;
    uint64_t deadline = mc_mono_ms() + 5000;
    while (n < max && mc_mono_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (!m)
            continue;
        if (!m->err && m->key_len < 32) {
            ASSERT_EQ(s_check(v, m), MC_EVENT_VALID);
            memcpy(keys[n], m->key, m->key_len);
            keys[n++][m->key_len] = 0;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    mc_event_verifier_destroy(&v);
    return n;
}

static void
test_poison_is_dead_lettered_and_redriven(void)
{
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *mk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    rd_kafka_mock_cluster_t *mock = rd_kafka_mock_cluster_new(mk, 1);
    rd_kafka_mock_topic_create(mock, "product.events", 1, 1);
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mock);

    //  A, then a record nobody can decode, then B
    mc_core_t *core = mc_core_new(&catalog_service, s_dir, 0, 1u << 30);
    ASSERT_EQ(s_create(core, "RELAY-A", 1000), 0);
    MDB_txn *txn;
    ASSERT_EQ(mdb_txn_begin(mc_core_env(core), NULL, 0, &txn), 0);
    MDB_dbi seqdb;
    ASSERT_EQ(mdb_dbi_open(txn, "outbox_seq", 0, &seqdb), 0);
    unsigned char key[8];
    mc_outbox_key(key, 2);
    MDB_val k = { 8, key }, v = { 5, "\xc1junk" }, sk = { 4, "last" };
    ASSERT_EQ(mdb_put(txn, mc_core_outbox(core), &k, &v, MDB_APPEND), 0);
    ASSERT_EQ(mdb_put(txn, seqdb, &sk, &k, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    ASSERT_EQ(s_create(core, "RELAY-B", 2000), 0);
    mc_core_destroy(&core);         //  one process must not open an environment twice

    s_relay_until_drained(bootstrap);
    ASSERT_EQ(s_entries("outbox"), 0);
    ASSERT_EQ(s_entries("outbox_dead"), 1);
    char keys[8][32];
    ASSERT_EQ(s_consume(bootstrap, keys, 8), 2);     //  A and B got through, in order

    //  re-driving puts it back in the outbox, under a new number past every one used (a relay
    //  already running reads behind what it has sent), where it is dead-lettered again
    ASSERT_EQ(relay_redrive(s_dir), 1);
    uint64_t first = 0;
    ASSERT_EQ(s_entries_first("outbox", &first), 1);
    ASSERT_EQ(first, 4);
    ASSERT_EQ(s_entries("outbox_dead"), 0);
    s_relay_until_drained(bootstrap);
    ASSERT_EQ(s_entries("outbox_dead"), 1);

    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mk);
}

int
main(void)
{
    //  one shard of the catalog, whatever the environment says: a product made here with any id
    //  must land on this core (a catalog of several shards makes it on its SKU's)
    setenv("MERCATO_SHARDS", "1", 1);
    snprintf(s_dir, sizeof s_dir, "/tmp/mc-relay-test-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    snprintf(s_keys, sizeof s_keys, "%s/plane", s_dir);
    if (mc_event_sign_keygen(s_keys))
        return 1;
    zsys_init();
    zsys_handler_set(NULL);
    MC_TEST_RUN(test_poison_is_dead_lettered_and_redriven);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd) != 0)
        return 1;
    return MC_TEST_DONE();
}
