/*  The runtime believes a message only from the kind of peer allowed to send it (CONTRACT §9):
    the edge asserts end users, never the runtime; nodes ask each other; steps and ticks are the
    runtime's own. Driven through real services (catalog, orders) on real LMDB files. */
#include "catalog/catalog.h"
#include "orders/orders.h"
#include "mc_core_test.h"
#include "mc_test.h"
#include "mc_util.h"

static uint64_t s_clock = 1700000000000ull;

static int
s_from(mc_core_t *core, mc_peer_t peer, const char *type, const char *user, const char *role,
       const msgpack_sbuffer *body, char *code, size_t codesz)
{
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, ++s_clock);
    mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = { type, strlen(type) }, .key = { id, MC_ULID_LEN },
                         .user = { user, strlen(user) }, .role = { role, strlen(role) }, .time = s_clock };
    result_t r;
    int status = mc_core_test_call_from(core, peer, &r, &req, body, s_clock);
    mc_str_t c = { "", 0 };
    if (r.rep.error)
        mc_map_str(r.rep.error, "code", &c);
    snprintf(code, codesz, "%.*s", (int) c.len, c.ptr);
    s_free(&r);
    return status;
}

static msgpack_sbuffer
s_product(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "sku", "TRUST-1");
    mc_pack_kv_cstr(&pk, "description", "");
    mc_pack_kv_cstr(&pk, "name", "Trust");
    mc_pack_kv_cstr(&pk, "category", "tests");
    mc_pack_kv_int(&pk, "price_cents", 100);
    return sb;
}

static void
test_catalog_peers(void)
{
    char dir[64], code[64];
    mc_core_t *core = mc_core_test_open(&catalog_service, dir, 64 << 20);
    MC_CHECK(core != NULL);
    msgpack_sbuffer body = s_product();
    //  admin writes: only an edge-asserted admin; a customer is 403, nobody signed in 401
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.create", "U1", "customer", &body, code, sizeof code), 403);
    ASSERT_STR(code, "forbidden_peer");
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.create", "", "anonymous", &body, code, sizeof code), 401);
    //  the edge may not claim the runtime, nor any role it does not know
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.create", "U1", "system", &body, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.create", "U1", "root", &body, code, sizeof code), 403);
    //  relay and ops keys ask nothing, and a message with no peer is nobody's
    ASSERT_EQ(s_from(core, MC_PEER_RELAY, "product.create", "U1", "admin", &body, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_OPS, "product.get", "", "anonymous", NULL, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_NONE, "product.get", "", "anonymous", NULL, code, sizeof code), 403);
    //  a node may not create products (no actor does), but may read snapshots; the edge may not
    ASSERT_EQ(s_from(core, MC_PEER_NODE, "product.create", "U1", "admin", &body, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.snapshot", "", "anonymous", NULL, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.create", "U1", "admin", &body, code, sizeof code), 201);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "product.list", "", "anonymous", NULL, code, sizeof code), 200);
    mc_core_stats_t st = mc_core_stats(core);
    ASSERT_EQ(st.refused, 9);
    msgpack_sbuffer_destroy(&body);
    MC_CHECK(mc_core_test_close(&core, dir) == 0);
}

static void
test_orders_internal(void)
{
    char dir[64], code[64];
    mc_core_t *core = mc_core_test_open(&orders_service, dir, 64 << 20);
    MC_CHECK(core != NULL);
    //  order.pay (payments' capture) from the edge, even as the owner or an admin: refused before
    //  the handler looks at anything
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "order.pay", "U1", "customer", NULL, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "order.pay", "U1", "admin", NULL, code, sizeof code), 403);
    ASSERT_STR(code, "forbidden_peer");
    //  from a node it reaches the handler (which finds the body wanting: 422, not 403)
    ASSERT_EQ(s_from(core, MC_PEER_NODE, "order.pay", "", "system", NULL, code, sizeof code), 422);
    //  steps and ticks only from the runtime: not from an edge, not from a node
    ASSERT_EQ(s_from(core, MC_PEER_NODE, "order.tick", "", "system", NULL, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_EDGE, "order.tick", "", "anonymous", NULL, code, sizeof code), 403);
    ASSERT_EQ(s_from(core, MC_PEER_SELF, "order.tick", "", "system", NULL, code, sizeof code), 200);
    MC_CHECK(mc_core_test_close(&core, dir) == 0);
}

int
main(void)
{
    //  one shard of the catalog, whatever the environment says: a product made here with any id
    //  must land on this core (a catalog of several shards makes it on its SKU's)
    setenv("MERCATO_SHARDS", "1", 1);
    MC_TEST_RUN(test_catalog_peers);
    MC_TEST_RUN(test_orders_internal);
    return MC_TEST_DONE();
}
