/*  Inventory handlers through the actor core: stock born from product.created, redelivery,
    adjustments that would break on_hand >= reserved, low-stock crossings, history. */
#include "inventory.h"
#include "mc_outbox.h"
#include "mc_core_test.h"
#include "mc_test.h"
#include "mc_util.h"

static mc_core_t *s_core;
static uint64_t s_clock = 1800000000000ull;

static int
s_call(result_t *r, const char *type, const char *key, const char *id, const msgpack_sbuffer *body)
{
    char mid[MC_ULID_LEN + 1];
    mc_ulid(mid, ++s_clock);
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { mid, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = { key, strlen(key) }, .role = MC_STR("admin"),
                         .time = s_clock };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

static int
s_event(const char *event_id, const char *product, int64_t stock)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "event_id", event_id);
    mc_pack_kv_cstr(&pk, "type", "product.created");
    mc_pack_kv_cstr(&pk, "key", product);
    mc_pack_cstr(&pk, "data");
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_int(&pk, "initial_stock", stock);
    result_t r;
    int status = s_call(&r, "stock.event", product, event_id, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return status;
}

static int64_t
s_int(const char *product, const char *field)
{
    result_t r;
    int64_t v = -1;
    if (s_call(&r, "stock.get", product, NULL, NULL) == 200)
        mc_map_int(r.rep.body, field, &v);
    s_free(&r);
    return v;
}

static int
s_adjust(const char *product, int64_t delta)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_int(&pk, "delta", delta);
    mc_pack_kv_cstr(&pk, "reason", "test");
    result_t r;
    int status = s_call(&r, "stock.adjust", product, NULL, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  How many events of type the outbox holds.
static int
s_events(const char *type)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    mc_outbox_read(mc_core_env(s_core), mc_core_outbox(s_core), 0, 100000, &sb);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int n = 0;
    if (mc_msgpack_unpack(&u, sb.data, sb.size) == 0)
        for (uint32_t i = 0; i < u.data.via.array.size; i++) {
            mc_str_t t;
            n += mc_map_str(&u.data.via.array.ptr[i], "type", &t) == 0 && mc_str_eq(t, type);
        }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void
test_stock_from_events(void)
{
    ASSERT_EQ(s_event("E1-0", "P1", 120), 200);
    ASSERT_EQ(s_int("P1", "on_hand"), 120);
    ASSERT_EQ(s_int("P1", "low_stock_threshold"), 12);     //  10% of 120
    //  the same event again (a redelivery) changes nothing
    ASSERT_EQ(s_event("E1-0", "P1", 999), 200);
    ASSERT_EQ(s_int("P1", "on_hand"), 120);
    ASSERT_EQ(s_event("E2-0", "P2", 3), 200);
    ASSERT_EQ(s_int("P2", "low_stock_threshold"), 5);      //  at least 5
    ASSERT_EQ(s_int("P9", "on_hand"), -1);                 //  never created
}

static void
test_adjustments_and_low_stock(void)
{
    ASSERT_EQ(s_adjust("P1", -121), 409);                  //  would go below what is reserved (0)
    ASSERT_EQ(s_int("P1", "on_hand"), 120);
    int before = s_events("inventory.low_stock");
    ASSERT_EQ(s_adjust("P1", -100), 200);                  //  20 left: above 12
    ASSERT_EQ(s_events("inventory.low_stock"), before);
    ASSERT_EQ(s_adjust("P1", -10), 200);                   //  10: crosses into low
    ASSERT_EQ(s_events("inventory.low_stock"), before + 1);
    ASSERT_EQ(s_adjust("P1", -1), 200);                    //  still low: no second alert
    ASSERT_EQ(s_events("inventory.low_stock"), before + 1);
    ASSERT_EQ(s_adjust("P1", +50), 200);                   //  back above
    ASSERT_EQ(s_adjust("P1", -50), 200);                   //  a new crossing, a new alert
    ASSERT_EQ(s_events("inventory.low_stock"), before + 2);
    ASSERT_EQ(s_adjust("P9", 1), 404);

    result_t r;
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_int(&pk, "limit", 2);
    ASSERT_EQ(s_call(&r, "stock.history", "P1", NULL, &b), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    ASSERT_EQ(items ? items->via.array.size : 0, 2);
    mc_str_t next;
    MC_CHECK(mc_map_str(r.rep.body, "next_cursor", &next) == 0);  //  6 changes: more pages
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_bool(&pk, "low_stock", true);
    ASSERT_EQ(s_call(&r, "stock.list", "", NULL, &b), 200);
    items = mc_map_get(r.rep.body, "items");
    ASSERT_EQ(items ? items->via.array.size : 0, 2);       //  P1 (low again) and P2 (born low)
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

//  Sends stock.reserve / release / commit of order's lines (product, quantity pairs).
static int
s_stock_op(const char *type, const char *order, const char *p1, int64_t q1, const char *p2, int64_t q2,
           result_t *out)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "order_id", order);
    mc_pack_cstr(&pk, "lines");
    msgpack_pack_array(&pk, p2 ? 2 : 1);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "product_id", p1);
    mc_pack_kv_int(&pk, "quantity", q1);
    if (p2) {
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_cstr(&pk, "product_id", p2);
        mc_pack_kv_int(&pk, "quantity", q2);
    }
    result_t r;
    int status = s_call(&r, type, order, NULL, &b);
    if (out)
        *out = r;
    else
        s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  on_hand == available + reserved, nothing negative, and on_hand + sold == what came in.
static void
s_conserved(const char *product, int64_t received)
{
    int64_t on_hand = s_int(product, "on_hand"), reserved = s_int(product, "reserved");
    int64_t available = s_int(product, "available"), sold = s_int(product, "sold");
    ASSERT_EQ(on_hand, available + reserved);
    MC_CHECK(available >= 0 && reserved >= 0 && sold >= 0);
    ASSERT_EQ(on_hand + sold, received);
}

static void
test_reservations(void)
{
    ASSERT_EQ(s_event("E-R1", "R1", 10), 200);
    ASSERT_EQ(s_event("E-R2", "R2", 3), 200);
    //  all or nothing: one short line reserves neither
    result_t r;
    ASSERT_EQ(s_stock_op("stock.reserve", "O1", "R1", 2, "R2", 4, &r), 409);
    const msgpack_object *errs = mc_map_get(r.rep.error, "errors");
    ASSERT_EQ(errs ? errs->via.array.size : 0, 1);
    mc_str_t field = { "", 0 };
    mc_map_str(&errs->via.array.ptr[0], "field", &field);
    MC_CHECK(mc_str_eq(field, "R2"));
    s_free(&r);
    ASSERT_EQ(s_int("R1", "reserved"), 0);
    ASSERT_EQ(s_int("R2", "reserved"), 0);
    //  reserved once, however often it is asked
    ASSERT_EQ(s_stock_op("stock.reserve", "O2", "R1", 2, "R2", 3, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.reserve", "O2", "R1", 2, "R2", 3, NULL), 200);
    ASSERT_EQ(s_int("R1", "reserved"), 2);
    ASSERT_EQ(s_int("R2", "available"), 0);
    ASSERT_EQ(s_events("inventory.reserved"), 2);
    //  the stock an order holds cannot be adjusted away
    ASSERT_EQ(s_adjust("R2", -1), 409);
    //  released once; a second release and a late reserve change nothing
    ASSERT_EQ(s_stock_op("stock.release", "O2", "R1", 2, "R2", 3, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.release", "O2", "R1", 2, "R2", 3, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.reserve", "O2", "R1", 2, "R2", 3, NULL), 409);
    ASSERT_EQ(s_int("R1", "reserved"), 0);
    ASSERT_EQ(s_int("R2", "reserved"), 0);
    ASSERT_EQ(s_events("inventory.released"), 2);
    //  a release that overtakes its reserve blocks it
    ASSERT_EQ(s_stock_op("stock.release", "O3", "R1", 1, NULL, 0, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.reserve", "O3", "R1", 1, NULL, 0, NULL), 409);
    ASSERT_EQ(s_int("R1", "reserved"), 0);
    //  selling moves reserved units out of on_hand, once
    ASSERT_EQ(s_stock_op("stock.reserve", "O4", "R1", 4, NULL, 0, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.commit", "O4", "R1", 4, NULL, 0, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.commit", "O4", "R1", 4, NULL, 0, NULL), 200);
    ASSERT_EQ(s_stock_op("stock.release", "O4", "R1", 4, NULL, 0, NULL), 200);
    ASSERT_EQ(s_int("R1", "on_hand"), 6);
    ASSERT_EQ(s_int("R1", "reserved"), 0);
    ASSERT_EQ(s_int("R1", "sold"), 4);
    s_conserved("R1", 10);
    s_conserved("R2", 3);
}

//  Only the event types its handler acts on are delivered by its Kafka consumer.
static void
test_wanted_events(void)
{
    MC_CHECK(inventory_service.wants_event(MC_STR("product.created")));
    MC_CHECK(!inventory_service.wants_event(MC_STR("product.updated")));
    MC_CHECK(!inventory_service.wants_event(MC_STR("product.deleted")));
    MC_CHECK(!inventory_service.wants_event(MC_STR("order.created")));
}

int
main(void)
{
    //  one shard of everything, whatever the environment says
    setenv("MERCATO_SHARDS", "1", 1);
    char dir[64];
    s_core = mc_core_test_open(&inventory_service, dir, 1u << 30);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_stock_from_events);
    MC_TEST_RUN(test_adjustments_and_low_stock);
    MC_TEST_RUN(test_reservations);
    MC_TEST_RUN(test_wanted_events);
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
