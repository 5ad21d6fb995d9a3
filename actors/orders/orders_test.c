/*  The order saga through the actor core, with the other services' replies played by hand as
    order.step messages: all-or-nothing reservation, answers only after releases, idempotency,
    resends and timeouts driven by order.tick, the state machine, expiry, and determinism (the
    same messages give the same order on a fresh core). */
#include "orders.h"
#include "orders_db.h"
#include "mc_core_test.h"
#include "mc_test.h"
#include "mc_util.h"

#include <string.h>

static mc_core_t *s_core;
static uint64_t s_clock = 1800000000000ull;
static const char *s_user = "01USER00000000000000000001";
static msgpack_sbuffer s_order_seen;     //  order 1 as the first test made it

//  Sends a message as user with role at the current clock; the reply (if any) lands in r.
static int
s_send(result_t *r, const char *type, const char *key, const char *id, const char *role, const char *idem,
       const msgpack_sbuffer *body)
{
    char mid[MC_ULID_LEN + 1];
    mc_ulid(mid, s_clock);
    const char *user = strcmp(role, "system") == 0 ? "" : s_user;
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { mid, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = { key, strlen(key) }, .role = { role, strlen(role) },
                         .user = { user, strlen(user) }, .idem = { idem ? idem : "", idem ? strlen(idem) : 0 },
                         .time = s_clock };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

static void
s_create_body(msgpack_sbuffer *b, int64_t q1, int64_t q2)
{
    msgpack_sbuffer_init(b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "product_id", "P1");
    mc_pack_kv_int(&pk, "quantity", q1);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "product_id", "P2");
    mc_pack_kv_int(&pk, "quantity", q2);
    mc_pack_cstr(&pk, "shipping_address");
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "name", "Ada");
    mc_pack_kv_cstr(&pk, "line1", "1 Loop");
    mc_pack_kv_cstr(&pk, "city", "Berlin");
    mc_pack_kv_cstr(&pk, "postal_code", "10115");
    mc_pack_kv_cstr(&pk, "country", "DE");
}

//  Places an order (id) of q1 x P1 and q2 x P2; returns the status of an immediate reply, or
//  -1 when the caller was parked.
static int
s_create(const char *id, const char *idem, int64_t q1, int64_t q2, result_t *r)
{
    msgpack_sbuffer b;
    s_create_body(&b, q1, q2);
    int status = s_send(r, "order.create", id, id, "customer", idem, &b);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  Plays a reply to the request tagged tag: status with body (a packed object) or error.
static void
s_reply(const char *tag, int status, const msgpack_sbuffer *payload, bool error)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, payload ? 3 : 2);
    mc_pack_kv_cstr(&pk, "tag", tag);
    mc_pack_kv_int(&pk, "status", status);
    if (payload) {
        mc_pack_cstr(&pk, error ? "error" : "body");
        msgpack_sbuffer_write(&b, payload->data, payload->size);
    }
    result_t r;
    ASSERT_EQ(s_send(&r, "order.step", tag, NULL, "system", NULL, &b), 200);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

static void
s_catalog_reply(const char *order)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, 2);
    const char *ids[] = { "P1", "P2" };
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(&pk, 5);
        mc_pack_kv_cstr(&pk, "id", ids[i]);
        mc_pack_kv_cstr(&pk, "sku", ids[i]);
        mc_pack_kv_cstr(&pk, "name", i ? "Second" : "First");
        mc_pack_kv_int(&pk, "price_cents", i ? 250 : 1000);
        mc_pack_kv_cstr(&pk, "currency", "EUR");
    }
    char tag[64];
    snprintf(tag, sizeof tag, "%s:c0", order);
    s_reply(tag, 200, &b, false);
    msgpack_sbuffer_destroy(&b);
}

static void
s_stock_reply(const char *order, char kind, int status, const char *short_product)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    if (short_product) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, short_product, "1 available");
        mc_pack_error(&pk, "out_of_stock", "not enough stock", &errs);
    }
    else
        msgpack_pack_map(&pk, 0);
    char tag[64];
    snprintf(tag, sizeof tag, "%s:%c0", order, kind);
    s_reply(tag, status, &b, short_product != NULL);
    msgpack_sbuffer_destroy(&b);
}

static int
s_get(const char *id, result_t *r)
{
    return s_send(r, "order.get", id, NULL, "customer", NULL, NULL);
}

static void
s_expect_status(const char *id, const char *status)
{
    result_t r;
    ASSERT_EQ(s_get(id, &r), 200);
    mc_str_t s = { "", 0 };
    mc_map_str(r.rep.body, "status", &s);
    MC_CHECK(mc_str_eq(s, status));
    s_free(&r);
}

static void
s_tick(void)
{
    result_t r;
    ASSERT_EQ(s_send(&r, "order.tick", "", NULL, "system", NULL, NULL), 200);
    s_free(&r);
}

static void
test_order_is_created_when_all_is_reserved(void)
{
    result_t r;
    ASSERT_EQ(s_create("01ORDER0000000000000000001", "k1", 2, 1, &r), -1);
    s_free(&r);
    //  after its commit: the catalog and the inventory shard are asked, the caller waits
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000001:c0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000001:r0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, "01ORDER0000000000000000001", NULL), 1);
    ASSERT_EQ(s_get("01ORDER0000000000000000001", &r), 404);       //  no order before the saga ends
    s_free(&r);
    s_catalog_reply("01ORDER0000000000000000001");
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    s_stock_reply("01ORDER0000000000000000001", 'r', 200, NULL);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01ORDER0000000000000000001", &answer), 1);
    ASSERT_EQ(answer->status, 201);
    ASSERT_EQ(s_get("01ORDER0000000000000000001", &r), 200);
    int64_t total = 0;
    mc_str_t currency = { "", 0 };
    mc_map_int(r.rep.body, "total_cents", &total);
    mc_map_str(r.rep.body, "currency", &currency);
    ASSERT_EQ(total, 2250);     //  prices from the catalog: 2 x 1000 + 1 x 250
    MC_CHECK(mc_str_eq(currency, "EUR"));
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s_order_seen, msgpack_sbuffer_write);
    msgpack_sbuffer_clear(&s_order_seen);
    msgpack_pack_object(&pk, *r.rep.body);
    s_free(&r);
    //  the same key and body: the stored answer, no new saga
    ASSERT_EQ(s_create("01ORDER0000000000000000009", "k1", 2, 1, &r), 201);
    MC_CHECK(r.rep.replayed);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    //  the same key, another body
    ASSERT_EQ(s_create("01ORDER0000000000000000010", "k1", 3, 1, &r), 422);
    s_free(&r);
}

static void
test_short_line_releases_everything_before_answering(void)
{
    result_t r;
    ASSERT_EQ(s_create("01ORDER0000000000000000002", "k2", 1, 5, &r), -1);
    s_free(&r);
    //  a duplicate while it runs waits for the same outcome
    ASSERT_EQ(s_create("01ORDER0000000000000000003", "k2", 1, 5, &r), -1);
    s_free(&r);
    const mc_fx_t *park = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, "01ORDER0000000000000000002", &park), 1);
    MC_CHECK(park->replayed);
    s_stock_reply("01ORDER0000000000000000002", 'r', 409, "P2");
    //  an unknown product would say more than a short one: the catalog is heard first
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000002:y0", NULL), 0);
    s_catalog_reply("01ORDER0000000000000000002");
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000002:y0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);     //  not before the release is confirmed
    s_stock_reply("01ORDER0000000000000000002", 'y', 200, NULL);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01ORDER0000000000000000002", &answer), 1);
    ASSERT_EQ(answer->status, 409);
    MC_CHECK(answer->error);
    ASSERT_EQ(s_get("01ORDER0000000000000000002", &r), 404);
    s_free(&r);
    //  a late (repeated) reply to the ended saga changes nothing
    s_stock_reply("01ORDER0000000000000000002", 'r', 409, "P2");
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    //  and the key now replays the 409
    ASSERT_EQ(s_create("01ORDER0000000000000000004", "k2", 1, 5, &r), 409);
    MC_CHECK(r.rep.replayed);
    s_free(&r);
}

static void
test_unanswered_saga_is_resent_then_released(void)
{
    result_t r;
    uint64_t start = s_clock;
    ASSERT_EQ(s_create("01ORDER0000000000000000005", NULL, 1, 1, &r), -1);
    s_free(&r);
    s_clock = start + 500;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    s_clock = start + 1000;
    s_tick();       //  a crash lost the requests or their replies: ask again
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000005:r0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000005:c0", NULL), 1);
    s_stock_reply("01ORDER0000000000000000005", 'r', 503, NULL);     //  no inventory node
    s_clock = start + 15000;
    s_tick();       //  too long: give up and release
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000005:y0", NULL), 1);
    s_stock_reply("01ORDER0000000000000000005", 'y', 200, NULL);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01ORDER0000000000000000005", &answer), 1);
    ASSERT_EQ(answer->status, 503);
}

//  Creates an order (all replies played) and returns nothing; the order is pending_payment.
static void
s_placed(const char *id)
{
    result_t r;
    ASSERT_EQ(s_create(id, NULL, 1, 1, &r), -1);
    s_free(&r);
    s_catalog_reply(id);
    s_stock_reply(id, 'r', 200, NULL);
    s_expect_status(id, "pending_payment");
}

static int
s_set_status(const char *id, const char *status, const char *role)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "status", status);
    result_t r;
    int rc = s_send(&r, "order.status", id, NULL, role, NULL, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void
test_state_machine(void)
{
    const char *id = "01ORDER0000000000000000006";
    s_placed(id);
    ASSERT_EQ(s_set_status(id, "paid", "customer"), 403);
    ASSERT_EQ(s_set_status(id, "shipped", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "delivered", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "refunded", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "expired", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "pending_payment", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "paid", "admin"), 200);
    ASSERT_EQ(s_set_status(id, "paid", "admin"), 409);
    //  shipping sells the stock: the caller hears once inventory has
    ASSERT_EQ(s_set_status(id, "shipped", "admin"), -1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000006:s0", NULL), 1);
    char settle[64];
    snprintf(settle, sizeof settle, "settle:%s", id);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, settle, NULL), 1);
    s_stock_reply(id, 's', 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, settle, NULL), 1);
    ASSERT_EQ(s_set_status(id, "cancelled", "admin"), 409);
    ASSERT_EQ(s_set_status(id, "delivered", "admin"), 200);
    ASSERT_EQ(s_set_status(id, "refunded", "admin"), 200);
    ASSERT_EQ(s_set_status(id, "cancelled", "admin"), 409);
    s_expect_status(id, "refunded");
    //  cancelling releases
    const char *c = "01ORDER0000000000000000007";
    s_placed(c);
    result_t r;
    ASSERT_EQ(s_send(&r, "order.cancel", c, NULL, "customer", NULL, NULL), -1);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000007:x0", NULL), 1);
    ASSERT_EQ(s_send(&r, "order.cancel", c, NULL, "customer", NULL, NULL), 409);
    s_free(&r);
    s_stock_reply(c, 'x', 200, NULL);
    s_expect_status(c, "cancelled");
}

static int
s_pay(const char *id, const char *payment, int64_t amount)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "payment_id", payment);
    mc_pack_kv_int(&pk, "amount_cents", amount);
    result_t r;
    int rc = s_send(&r, "order.pay", id, NULL, "customer", NULL, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static int
s_advance(const char *id, const char *status, const char *role)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "status", status);
    result_t r;
    int rc = s_send(&r, "order.advance", id, NULL, role, NULL, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void
test_payment_and_shipping_move_the_order(void)
{
    const char *id = "01ORDER0000000000000000013";
    s_placed(id);
    result_t r;
    ASSERT_EQ(s_get(id, &r), 200);
    int64_t total = 0;
    mc_map_int(r.rep.body, "total_cents", &total);
    s_free(&r);
    MC_CHECK(total > 0);
    //  only the owner pays, and only the order's total
    const char *owner = s_user;
    s_user = "01USER00000000000000000002";
    ASSERT_EQ(s_pay(id, "PAY1", total), 404);
    s_user = owner;
    ASSERT_EQ(s_pay(id, "PAY1", total - 1), 409);
    ASSERT_EQ(s_advance(id, "shipped", "system"), 409);         //  not paid yet
    ASSERT_EQ(s_pay(id, "PAY1", total), 200);
    s_expect_status(id, "paid");
    ASSERT_EQ(s_pay(id, "PAY1", total), 200);                   //  the same payment, resent
    ASSERT_EQ(s_pay(id, "PAY2", total), 409);                   //  another one
    ASSERT_EQ(s_advance(id, "shipped", "admin"), 403);          //  shipping's own message
    ASSERT_EQ(s_advance(id, "shipped", "system"), -1);          //  waits for the stock to be sold
    s_stock_reply(id, 's', 200, NULL);
    s_expect_status(id, "shipped");
    ASSERT_EQ(s_advance(id, "shipped", "system"), 200);         //  resent: answered as it is
    ASSERT_EQ(s_advance(id, "delivered", "system"), 200);
    s_expect_status(id, "delivered");
    ASSERT_EQ(s_advance(id, "shipped", "system"), 200);         //  overtaken
    ASSERT_EQ(s_advance(id, "returned", "system"), 422);
    //  an expired reservation cannot be paid, even before the timer has run
    const char *late = "01ORDER0000000000000000014";
    s_placed(late);
    ASSERT_EQ(s_get(late, &r), 200);
    mc_map_int(r.rep.body, "total_cents", &total);
    s_free(&r);
    s_clock += 900 * 1000;
    ASSERT_EQ(s_pay(late, "PAY3", total), 409);
    s_tick();
    s_stock_reply(late, 'x', 200, NULL);
    s_expect_status(late, "expired");
}

static void
test_unpaid_orders_expire(void)
{
    const char *id = "01ORDER0000000000000000008";
    s_placed(id);
    s_clock += 899 * 1000;
    s_tick();
    s_expect_status(id, "pending_payment");
    s_clock += 1000;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000008:x0", NULL), 1);
    s_expect_status(id, "expired");
    ASSERT_EQ(s_set_status(id, "paid", "admin"), 409);
}

static void
test_lines_in_two_shards(void)
{
    //  P1 lives in inventory shard 0 and P2 in shard 1: each shard reserves its own lines, and
    //  one shard's shortage releases the other's reservation before the caller hears
    setenv("MERCATO_SHARDS", "1,inventory=2", 1);
    const char *ok = "01ORDER0000000000000000011", *bad = "01ORDER0000000000000000012";
    result_t r;
    ASSERT_EQ(s_create(ok, NULL, 1, 1, &r), -1);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000011:r0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000011:r1", NULL), 1);
    const mc_fx_t *send = NULL;
    mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000011:r1", &send);
    MC_CHECK(send && strcmp(send->service, "inventory.1") == 0);
    s_catalog_reply(ok);
    s_stock_reply(ok, 'r', 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);     //  shard 1 has not answered
    char tag[64];
    snprintf(tag, sizeof tag, "%s:r1", ok);
    s_reply(tag, 200, NULL, false);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, ok, &answer), 1);
    ASSERT_EQ(answer->status, 201);
    ASSERT_EQ(s_create(bad, NULL, 1, 1, &r), -1);
    s_free(&r);
    s_catalog_reply(bad);
    s_stock_reply(bad, 'r', 200, NULL);
    snprintf(tag, sizeof tag, "%s:r1", bad);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, "P2", "0 available");
    mc_pack_error(&pk, "out_of_stock", "not enough stock", &errs);
    s_reply(tag, 409, &b, true);
    msgpack_sbuffer_destroy(&b);
    //  both shards are told to release (shard 1 too: a resent reserve must find the mark)
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000012:y0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000012:y1", NULL), 1);
    s_stock_reply(bad, 'y', 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    snprintf(tag, sizeof tag, "%s:y1", bad);
    s_reply(tag, 200, NULL, false);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, bad, &answer), 1);
    ASSERT_EQ(answer->status, 409);
    setenv("MERCATO_SHARDS", "1", 1);
}

//  Catalog shard `shard` answers order's snapshot with product (priced price), or with nothing.
static void
s_catalog_shard_reply(const char *order, unsigned shard, const char *product, int64_t price)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, product ? 1 : 0);
    if (product) {
        msgpack_pack_map(&pk, 5);
        mc_pack_kv_cstr(&pk, "id", product);
        mc_pack_kv_cstr(&pk, "sku", product);
        mc_pack_kv_cstr(&pk, "name", product);
        mc_pack_kv_int(&pk, "price_cents", price);
        mc_pack_kv_cstr(&pk, "currency", "EUR");
    }
    char tag[64];
    snprintf(tag, sizeof tag, "%s:c%u", order, shard);
    s_reply(tag, 200, &b, false);
    msgpack_sbuffer_destroy(&b);
}

static void
test_snapshot_from_each_catalog_shard(void)
{
    //  P1 lives in catalog shard 0 and P2 in shard 1: each is asked for its own product, the
    //  order waits for both, and a product no shard has fails it as unknown
    setenv("MERCATO_SHARDS", "1,catalog=2", 1);
    const char *ok = "01ORDER0000000000000000021", *bad = "01ORDER0000000000000000022";
    result_t r;
    ASSERT_EQ(s_create(ok, NULL, 2, 1, &r), -1);
    s_free(&r);
    const mc_fx_t *send = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000021:c0", &send), 1);
    MC_CHECK(send && strcmp(send->service, "catalog.0") == 0);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000021:c1", &send), 1);
    MC_CHECK(send && strcmp(send->service, "catalog.1") == 0);
    s_stock_reply(ok, 'r', 200, NULL);
    s_catalog_shard_reply(ok, 1, "P2", 250);
    s_catalog_shard_reply(ok, 1, "P2", 999);       //  a resend's answer changes nothing
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    //  only the shard that has not answered is asked again
    s_clock += RESEND_MS;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000021:c0", NULL), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01ORDER0000000000000000021:c1", NULL), 0);
    s_catalog_shard_reply(ok, 0, "P1", 1000);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, ok, &answer), 1);
    ASSERT_EQ(answer->status, 201);
    ASSERT_EQ(s_get(ok, &r), 200);
    int64_t total = 0;
    mc_map_int(r.rep.body, "total_cents", &total);
    ASSERT_EQ(total, 2250);
    s_free(&r);
    ASSERT_EQ(s_create(bad, NULL, 1, 1, &r), -1);
    s_free(&r);
    s_stock_reply(bad, 'r', 200, NULL);
    s_catalog_shard_reply(bad, 0, "P1", 1000);
    s_catalog_shard_reply(bad, 1, NULL, 0);
    s_stock_reply(bad, 'y', 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, bad, &answer), 1);
    ASSERT_EQ(answer->status, 422);
    setenv("MERCATO_SHARDS", "1", 1);
}

static void
test_steps_and_ticks_are_the_runtimes_own(void)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "tag", "01ORDER0000000000000000006:r0");
    mc_pack_kv_int(&pk, "status", 200);
    result_t r;
    ASSERT_EQ(s_send(&r, "order.step", "x", NULL, "admin", NULL, &b), 403);
    s_free(&r);
    ASSERT_EQ(s_send(&r, "order.tick", "", NULL, "customer", NULL, NULL), 403);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

static void
test_replay_gives_the_same_order(void)
{
    //  the same messages, on a fresh core, from the same clock
    msgpack_sbuffer first;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_write(&first, s_order_seen.data, s_order_seen.size);
    mc_core_t *saved = s_core;
    char dir[64];
    s_core = mc_core_test_open(&orders_service, dir, 1u << 26);
    MC_CHECK(s_core != NULL);
    s_clock = 1800000000000ull;
    test_order_is_created_when_all_is_reserved();
    ASSERT_EQ(s_order_seen.size, first.size);
    MC_CHECK(memcmp(s_order_seen.data, first.data, first.size) == 0);
    msgpack_sbuffer_destroy(&first);
    ASSERT_EQ(mc_core_test_close(&s_core, dir), 0);
    s_core = saved;
}

//  The pending index's entries for user, read from the environment itself.
static size_t
s_pending_entries(const char *user)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    size_t n = 0, ulen = strlen(user);
    if (mdb_txn_begin(mc_core_env(s_core), NULL, MDB_RDONLY, &txn))
        return SIZE_MAX;
    if (mdb_dbi_open(txn, "pending", 0, &dbi) == 0 && mdb_cursor_open(txn, dbi, &cur) == 0) {
        MDB_val k, v;
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            n += k.mv_size > ulen && memcmp(k.mv_data, user, ulen) == 0 && ((char *) k.mv_data)[ulen] == 0;
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return n;
}

//  The order id of the i-th order of the pending-cap test.
static const char *
s_cap_id(int i)
{
    static char ids[16][32];
    snprintf(ids[i], sizeof ids[i], "01CAP%021d", i);
    return ids[i];
}

static void
test_pending_orders_are_capped(void)
{
    //  a fresh environment with the default cap of 5
    mc_core_t *saved = s_core;
    const char *saved_user = s_user;
    char dir[64];
    unsetenv("MERCATO_MAX_PENDING_ORDERS");
    s_core = mc_core_test_open(&orders_service, dir, 1u << 26);
    MC_CHECK(s_core != NULL);
    if (!s_core) {
        s_core = saved;
        return;
    }
    uint64_t start = s_clock;
    result_t r;
    //  two orders complete, three still reserving: sagas count, or orders sent at once would
    //  all get past the cap
    s_placed(s_cap_id(0));
    s_placed(s_cap_id(1));
    for (int i = 2; i < 5; i++) {
        ASSERT_EQ(s_create(s_cap_id(i), NULL, 1, 1, &r), -1);
        s_free(&r);
    }
    ASSERT_EQ(s_pending_entries(s_user), 5);
    s_clock += 1000;
    ASSERT_EQ(s_create(s_cap_id(5), "cap-key", 1, 1, &r), 429);
    mc_str_t code = { "", 0 };
    uint64_t retry = 0;
    mc_map_str(r.rep.error, "code", &code);
    mc_map_uint(r.rep.error, "retry_after", &retry);
    MC_CHECK(mc_str_eq(code, "too_many_pending_orders"));
    ASSERT_EQ(retry, 899);      //  until the oldest reservation expires: 900 s after it, 1 s later
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);     //  nothing reserved
    //  the cap is per customer
    s_user = "01USER00000000000000000077";
    ASSERT_EQ(s_create(s_cap_id(6), NULL, 1, 1, &r), -1);
    s_free(&r);
    ASSERT_EQ(s_pending_entries(s_user), 1);
    s_user = saved_user;
    //  a saga that fails frees its slot once its release has ended, not before
    s_stock_reply(s_cap_id(2), 'r', 409, "P1");
    s_catalog_reply(s_cap_id(2));
    ASSERT_EQ(s_pending_entries(s_user), 5);
    s_stock_reply(s_cap_id(2), 'y', 200, NULL);
    ASSERT_EQ(s_pending_entries(s_user), 4);
    //  the refused key was not kept: the same request now passes
    ASSERT_EQ(s_create(s_cap_id(5), "cap-key", 1, 1, &r), -1);
    s_free(&r);
    ASSERT_EQ(s_create(s_cap_id(7), NULL, 1, 1, &r), 429);
    s_free(&r);
    //  the sagas become orders: the count stays (the order's entry is its saga's)
    for (int i = 3; i < 6; i++) {
        s_catalog_reply(s_cap_id(i));
        s_stock_reply(s_cap_id(i), 'r', 200, NULL);
        s_expect_status(s_cap_id(i), "pending_payment");
    }
    ASSERT_EQ(s_pending_entries(s_user), 5);
    //  replays still answer what was decided: the same message, and the same key
    ASSERT_EQ(s_create(s_cap_id(0), NULL, 1, 1, &r), 201);
    s_free(&r);
    ASSERT_EQ(s_create(s_cap_id(8), "cap-key", 1, 1, &r), 201);
    MC_CHECK(r.rep.replayed);
    s_free(&r);
    //  paying frees a slot
    ASSERT_EQ(s_get(s_cap_id(0), &r), 200);
    int64_t total = 0;
    mc_map_int(r.rep.body, "total_cents", &total);
    s_free(&r);
    ASSERT_EQ(s_pay(s_cap_id(0), "PAYCAP", total), 200);
    ASSERT_EQ(s_pending_entries(s_user), 4);
    s_placed(s_cap_id(9));
    ASSERT_EQ(s_create(s_cap_id(10), NULL, 1, 1, &r), 429);
    s_free(&r);
    //  cancelling frees one
    ASSERT_EQ(s_send(&r, "order.cancel", s_cap_id(1), NULL, "customer", NULL, NULL), -1);
    s_free(&r);
    ASSERT_EQ(s_pending_entries(s_user), 4);
    s_placed(s_cap_id(10));
    ASSERT_EQ(s_create(s_cap_id(11), NULL, 1, 1, &r), 429);
    s_free(&r);
    //  and so does the clock: every order expires 900 s after its creation
    s_clock = start + 900 * 1000 + 10000;
    s_tick();
    ASSERT_EQ(s_pending_entries(s_user), 0);
    s_placed(s_cap_id(11));
    ASSERT_EQ(s_pending_entries(s_user), 1);
    ASSERT_EQ(mc_core_test_close(&s_core, dir), 0);
    s_core = saved;
    setenv("MERCATO_MAX_PENDING_ORDERS", "100", 1);
}

static void
test_pending_index_is_rebuilt_for_older_data(void)
{
    //  an environment written before the index: emptied by hand, the next open fills it again
    mc_core_t *saved = s_core;
    char dir[64];
    s_core = mc_core_test_open(&orders_service, dir, 1u << 26);
    MC_CHECK(s_core != NULL);
    if (!s_core) {
        s_core = saved;
        return;
    }
    s_placed("01OLD00000000000000000001");
    s_placed("01OLD00000000000000000002");
    ASSERT_EQ(s_set_status("01OLD00000000000000000002", "paid", "admin"), 200);
    ASSERT_EQ(s_pending_entries(s_user), 1);
    MDB_txn *txn;
    MDB_dbi dbi;
    ASSERT_EQ(mdb_txn_begin(mc_core_env(s_core), NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_dbi_open(txn, "pending", 0, &dbi), 0);
    ASSERT_EQ(mdb_drop(txn, dbi, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    ASSERT_EQ(s_pending_entries(s_user), 0);
    mc_core_destroy(&s_core);
    s_core = mc_core_new(&orders_service, dir, 0, 1u << 26);
    MC_CHECK(s_core != NULL);
    ASSERT_EQ(s_pending_entries(s_user), 1);
    ASSERT_EQ(mc_core_test_close(&s_core, dir), 0);
    s_core = saved;
}

int
main(void)
{
    //  one shard of everything, whatever the environment says: the tests of several shards set
    //  their own
    setenv("MERCATO_SHARDS", "1", 1);
    setenv("MERCATO_RESERVATION_TTL_S", "900", 1);
    //  the tests below place more orders for one customer than the default cap allows; the cap
    //  has a test of its own, on a fresh core
    setenv("MERCATO_MAX_PENDING_ORDERS", "100", 1);
    msgpack_sbuffer_init(&s_order_seen);
    char dir[64];
    s_core = mc_core_test_open(&orders_service, dir, 1u << 26);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_order_is_created_when_all_is_reserved);
    MC_TEST_RUN(test_short_line_releases_everything_before_answering);
    MC_TEST_RUN(test_unanswered_saga_is_resent_then_released);
    MC_TEST_RUN(test_state_machine);
    MC_TEST_RUN(test_unpaid_orders_expire);
    MC_TEST_RUN(test_payment_and_shipping_move_the_order);
    MC_TEST_RUN(test_lines_in_two_shards);
    MC_TEST_RUN(test_snapshot_from_each_catalog_shard);
    MC_TEST_RUN(test_steps_and_ticks_are_the_runtimes_own);
    MC_TEST_RUN(test_replay_gives_the_same_order);
    MC_TEST_RUN(test_pending_orders_are_capped);
    MC_TEST_RUN(test_pending_index_is_rebuilt_for_older_data);
    msgpack_sbuffer_destroy(&s_order_seen);
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
