/*  The shipping service through the actor core, with the order service's replies played by
    hand as shipment.step messages: one shipment per paid order however often order.paid
    arrives, labels that depend on the order id alone, who may see and move a shipment, and the
    two-step move (the order answers 200, refuses with 409, or never answers). */
#include "shipping.h"
#include "mc_core_test.h"
#include "mc_outbox.h"
#include "mc_test.h"
#include "mc_util.h"

#include <string.h>

static mc_core_t *s_core;
static uint64_t s_clock = 1800000000000ull;
static const char *s_owner = "01USER00000000000000000001";
static const char *s_other = "01USER00000000000000000002";

//  The correlation id of every admin's request; the runtime's own messages have none.
static const char *s_corr = "admin-request-1";

//  Sends a message as user with role at the current clock; the reply (if any) lands in r.
static int
s_send(result_t *r, const char *type, const char *key, const char *id, const char *user, const char *role,
       const msgpack_sbuffer *body)
{
    char mid[MC_ULID_LEN + 1];
    mc_ulid(mid, s_clock);
    const char *corr = strcmp(role, "admin") == 0 ? s_corr : "";
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { mid, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = { key, strlen(key) }, .role = { role, strlen(role) },
                         .user = { user, strlen(user) }, .corr = { corr, strlen(corr) }, .time = s_clock };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

//  Delivers a Kafka record of type about order (event id event_id), as the consumer does.
static int
s_event(const char *event_id, const char *type, const char *order, const char *user)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "event_id", event_id);
    mc_pack_kv_cstr(&pk, "type", type);
    mc_pack_kv_cstr(&pk, "key", order);
    mc_pack_cstr(&pk, "data");
    msgpack_pack_map(&pk, user ? 4 : 3);
    mc_pack_kv_cstr(&pk, "id", order);
    mc_pack_kv_cstr(&pk, "status", "paid");
    mc_pack_kv_int(&pk, "total_cents", 1250);
    if (user)
        mc_pack_kv_cstr(&pk, "user_id", user);
    result_t r;
    int status = s_send(&r, "shipment.event", order, event_id, "", "system", &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return status;
}

static int
s_paid(const char *event_id, const char *order)
{
    return s_event(event_id, "order.paid", order, s_owner);
}

static int
s_get(const char *order, const char *user, const char *role, result_t *r)
{
    return s_send(r, "shipment.get", order, NULL, user, role, NULL);
}

//  The shipment's status as its owner sees it, or "" when it has none.
static const char *
s_status(const char *order)
{
    static char out[32];
    result_t r;
    mc_str_t s = { "", 0 };
    if (s_get(order, s_owner, "customer", &r) == 200)
        mc_map_str(r.rep.body, "status", &s);
    snprintf(out, sizeof out, "%.*s", (int) s.len, s.ptr);
    s_free(&r);
    return out;
}

//  How many entries the shipment's history has.
static int64_t
s_history(const char *order)
{
    result_t r;
    int64_t n = -1;
    if (s_get(order, "", "admin", &r) == 200) {
        const msgpack_object *events = mc_map_get(r.rep.body, "events");
        n = events && events->type == MSGPACK_OBJECT_ARRAY ? (int64_t) events->via.array.size : -1;
    }
    s_free(&r);
    return n;
}

static int
s_advance(const char *order, const char *status, const char *role)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "status", status);
    result_t r;
    int rc = s_send(&r, "shipment.advance", order, NULL, s_other, role, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void
s_tick(void)
{
    result_t r;
    ASSERT_EQ(s_send(&r, "shipment.tick", "", NULL, "", "system", NULL), 200);
    s_free(&r);
}

//  Plays the order service's reply to the request tagged tag: status, with an error when code.
static void
s_reply(const char *tag, int status, const char *code)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mc_pack_kv_cstr(&pk, "tag", tag);
    mc_pack_kv_int(&pk, "status", status);
    if (code) {
        mc_pack_cstr(&pk, "error");
        mc_pack_error(&pk, code, "an order that is cancelled cannot become shipped", NULL);
    }
    else {
        mc_pack_cstr(&pk, "body");
        msgpack_pack_map(&pk, 0);
    }
    result_t r;
    ASSERT_EQ(s_send(&r, "shipment.step", tag, NULL, "", "system", &b), 200);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

//  The order.advance the last message sent with tag: 1 when it asks for status (as the system,
//  keyed by order, continuing the admin's request), 0 otherwise.
static int
s_asked(const char *tag, const char *order, const char *status)
{
    const mc_fx_t *send = NULL;
    if (mc_core_test_effects(s_core, MC_FX_SEND, tag, &send) != 1)
        return 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    mc_str_t got = { "", 0 };
    int ok = mc_request_decode(&u, send->data.data, send->data.size, &req) == 0
             && strcmp(send->service, "orders.0") == 0 && mc_str_eq(req.type, "order.advance")
             && mc_str_eq(req.key, order) && mc_str_eq(req.role, "system") && mc_str_eq(req.corr, s_corr)
             && mc_map_str(req.body, "status", &got) == 0 && mc_str_eq(got, status);
    msgpack_unpacked_destroy(&u);
    return ok;
}

//  How many events of type the outbox holds; corr receives the last one's correlation id.
static int
s_events_corr(const char *type, char corr[80])
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    mc_outbox_read(mc_core_env(s_core), mc_core_outbox(s_core), 0, 100000, &sb);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int n = 0;
    if (mc_msgpack_unpack(&u, sb.data, sb.size) == 0)
        for (uint32_t i = 0; i < u.data.via.array.size; i++) {
            mc_str_t t, c = { "", 0 };
            if (mc_map_str(&u.data.via.array.ptr[i], "type", &t) == 0 && mc_str_eq(t, type)) {
                mc_map_str(&u.data.via.array.ptr[i], "corr", &c);
                snprintf(corr, 80, "%.*s", (int) c.len, c.ptr);
                n++;
            }
        }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static int
s_events(const char *type)
{
    char corr[80];
    return s_events_corr(type, corr);
}

static void
test_paid_order_gets_one_shipment(void)
{
    const char *order = "01ORDER0000000000000000001";
    ASSERT_EQ(s_paid("E1-0", order), 200);
    ASSERT_STR(s_status(order), "scheduled");
    ASSERT_EQ(s_history(order), 1);
    ASSERT_EQ(s_events("shipment.scheduled"), 1);
    //  a redelivery of the same record, and another order.paid of the same order
    s_clock += 1000;
    ASSERT_EQ(s_paid("E1-0", order), 200);
    ASSERT_EQ(s_paid("E9-0", order), 200);
    ASSERT_EQ(s_history(order), 1);
    ASSERT_EQ(s_events("shipment.scheduled"), 1);
    //  other order events ship nothing
    ASSERT_EQ(s_event("E2-0", "order.created", "01ORDER0000000000000000002", s_owner), 200);
    ASSERT_STR(s_status("01ORDER0000000000000000002"), "");
    //  an order.paid that names no owner is refused, and not marked as seen
    ASSERT_EQ(s_event("E3-0", "order.paid", "01ORDER0000000000000000003", NULL), 422);
    ASSERT_EQ(s_event("E3-0", "order.paid", "01ORDER0000000000000000003", s_owner), 200);
    ASSERT_STR(s_status("01ORDER0000000000000000003"), "scheduled");
}

static void
test_owner_and_admin_see_it(void)
{
    const char *order = "01ORDER0000000000000000001";
    result_t r;
    ASSERT_EQ(s_get(order, s_owner, "customer", &r), 200);
    mc_str_t got = { "", 0 }, user = { "", 0 }, carrier = { "", 0 }, tracking = { "", 0 };
    mc_map_str(r.rep.body, "order_id", &got);
    mc_map_str(r.rep.body, "user_id", &user);
    mc_map_str(r.rep.body, "carrier", &carrier);
    mc_map_str(r.rep.body, "tracking_number", &tracking);
    MC_CHECK(mc_str_eq(got, order));
    MC_CHECK(mc_str_eq(user, s_owner));
    MC_CHECK(carrier.len > 0);
    ASSERT_EQ(tracking.len, 18);
    MC_CHECK(mc_str_eq(r.rep.etag, "\"s1\""));
    s_free(&r);
    ASSERT_EQ(s_get(order, "", "admin", &r), 200);
    s_free(&r);
    ASSERT_EQ(s_get(order, s_other, "customer", &r), 404);
    s_free(&r);
    ASSERT_EQ(s_get("01ORDER0000000000000000099", "", "admin", &r), 404);
    s_free(&r);
}

static void
test_labels_depend_on_the_order_alone(void)
{
    //  the same order.paid on a fresh core, later: the same carrier and tracking number
    result_t r;
    ASSERT_EQ(s_get("01ORDER0000000000000000001", "", "admin", &r), 200);
    mc_str_t carrier = { "", 0 }, tracking = { "", 0 };
    mc_map_str(r.rep.body, "carrier", &carrier);
    mc_map_str(r.rep.body, "tracking_number", &tracking);
    char first[64], first_tracking[32];
    snprintf(first, sizeof first, "%.*s %.*s", (int) carrier.len, carrier.ptr, (int) tracking.len, tracking.ptr);
    snprintf(first_tracking, sizeof first_tracking, "%.*s", (int) tracking.len, tracking.ptr);
    s_free(&r);
    mc_core_t *saved = s_core;
    char dir[64];
    s_core = mc_core_test_open(&shipping_service, dir, 1u << 24);
    MC_CHECK(s_core != NULL);
    s_clock += 86400000;
    ASSERT_EQ(s_paid("E7-0", "01ORDER0000000000000000001"), 200);
    ASSERT_EQ(s_get("01ORDER0000000000000000001", "", "admin", &r), 200);
    mc_map_str(r.rep.body, "carrier", &carrier);
    mc_map_str(r.rep.body, "tracking_number", &tracking);
    char again[64];
    snprintf(again, sizeof again, "%.*s %.*s", (int) carrier.len, carrier.ptr, (int) tracking.len, tracking.ptr);
    ASSERT_STR(again, first);
    s_free(&r);
    //  another order, another tracking number
    ASSERT_EQ(s_paid("E8-0", "01ORDER0000000000000000004"), 200);
    ASSERT_EQ(s_get("01ORDER0000000000000000004", "", "admin", &r), 200);
    mc_map_str(r.rep.body, "tracking_number", &tracking);
    MC_CHECK(!mc_str_eq(tracking, first_tracking));
    s_free(&r);
    ASSERT_EQ(mc_core_test_close(&s_core, dir), 0);
    s_core = saved;
}

static void
test_illegal_moves(void)
{
    const char *order = "01ORDER0000000000000000001";
    ASSERT_EQ(s_advance(order, "in_transit", "customer"), 403);
    ASSERT_EQ(s_advance(order, "lost", "admin"), 422);
    ASSERT_EQ(s_advance(order, "scheduled", "admin"), 422);
    ASSERT_EQ(s_advance("01ORDER0000000000000000099", "in_transit", "admin"), 404);
    ASSERT_EQ(s_advance(order, "delivered", "admin"), 409);     //  not before it is on its way
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    ASSERT_STR(s_status(order), "scheduled");
}

static void
test_the_order_follows_each_move(void)
{
    const char *order = "01ORDER0000000000000000001", *tag = "01ORDER0000000000000000001:t";
    const char *key = "ship:01ORDER0000000000000000001";
    int updated = s_events("shipment.updated");
    uint64_t start = s_clock;
    //  the admin waits while the order is asked to follow
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    ASSERT_EQ(s_asked(tag, order, "shipped"), 1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, key, NULL), 1);
    ASSERT_STR(s_status(order), "scheduled");
    //  the same request meanwhile waits for the same outcome, without asking again
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, key, NULL), 1);
    //  no answer yet: asked again after a second, not before
    s_clock = start + 500;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    s_clock = start + 1000;
    s_tick();
    ASSERT_EQ(s_asked(tag, order, "shipped"), 1);
    s_reply(tag, 503, NULL);        //  no orders node: still waiting
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    ASSERT_STR(s_status(order), "scheduled");
    s_reply(tag, 200, NULL);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, key, &answer), 1);
    ASSERT_EQ(answer->status, 200);
    MC_CHECK(!answer->error);
    ASSERT_STR(s_status(order), "in_transit");
    ASSERT_EQ(s_history(order), 2);
    char corr[80] = "";
    ASSERT_EQ(s_events_corr("shipment.updated", corr), updated + 1);
    ASSERT_STR(corr, s_corr);       //  the admin's request started it, not the order's reply
    //  a repeated reply changes nothing
    s_reply(tag, 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    ASSERT_EQ(s_history(order), 2);
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), 409);
    ASSERT_EQ(s_advance(order, "delivered", "admin"), -1);
    ASSERT_EQ(s_asked("01ORDER0000000000000000001:d", order, "delivered"), 1);
    s_reply("01ORDER0000000000000000001:d", 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, key, &answer), 1);
    ASSERT_EQ(answer->status, 200);
    ASSERT_STR(s_status(order), "delivered");
    ASSERT_EQ(s_history(order), 3);
    ASSERT_EQ(s_events("shipment.updated"), updated + 2);
    ASSERT_EQ(s_advance(order, "delivered", "admin"), 409);
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), 409);
}

static void
test_a_refusing_order_keeps_the_shipment(void)
{
    const char *order = "01ORDER0000000000000000005", *tag = "01ORDER0000000000000000005:t";
    const char *key = "ship:01ORDER0000000000000000005";
    ASSERT_EQ(s_paid("E5-0", order), 200);
    int updated = s_events("shipment.updated");
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    s_reply(tag, 409, "illegal_transition");       //  the order was cancelled meanwhile
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, key, &answer), 1);
    ASSERT_EQ(answer->status, 409);
    MC_CHECK(answer->error);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_str_t code = { "", 0 };
    if (mc_msgpack_unpack(&u, answer->data.data, answer->data.size) == 0)
        mc_map_str(&u.data, "code", &code);
    MC_CHECK(mc_str_eq(code, "illegal_transition"));
    msgpack_unpacked_destroy(&u);
    ASSERT_STR(s_status(order), "scheduled");
    ASSERT_EQ(s_history(order), 1);
    ASSERT_EQ(s_events("shipment.updated"), updated);
    //  the move is gone: nothing left to resend, and asking again asks the order again
    s_clock += 5000;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    ASSERT_EQ(s_asked(tag, order, "shipped"), 1);
    s_reply(tag, 409, "illegal_transition");
}

static void
test_a_silent_order_is_given_up(void)
{
    const char *order = "01ORDER0000000000000000006", *tag = "01ORDER0000000000000000006:t";
    const char *key = "ship:01ORDER0000000000000000006";
    ASSERT_EQ(s_paid("E6-0", order), 200);
    uint64_t start = s_clock;
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    s_clock = start + 14999;
    s_tick();
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    s_clock = start + 15000;
    s_tick();
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, key, &answer), 1);
    ASSERT_EQ(answer->status, 503);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    //  a reply after giving up changes nothing; asking again brings the shipment along
    s_reply(tag, 200, NULL);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, NULL, NULL), 0);
    ASSERT_STR(s_status(order), "scheduled");
    ASSERT_EQ(s_advance(order, "in_transit", "admin"), -1);
    s_reply(tag, 200, NULL);
    ASSERT_STR(s_status(order), "in_transit");
}

//  Only the event types its handler acts on are delivered by its Kafka consumer.
static void
test_wanted_events(void)
{
    MC_CHECK(shipping_service.wants_event(MC_STR("order.paid")));
    MC_CHECK(!shipping_service.wants_event(MC_STR("order.created")));
    MC_CHECK(!shipping_service.wants_event(MC_STR("order.cancelled")));
    MC_CHECK(!shipping_service.wants_event(MC_STR("order.delivered")));
}

int
main(void)
{
    //  one shard of everything, whatever the environment says
    setenv("MERCATO_SHARDS", "1", 1);
    char dir[64];
    s_core = mc_core_test_open(&shipping_service, dir, 1u << 24);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_paid_order_gets_one_shipment);
    MC_TEST_RUN(test_owner_and_admin_see_it);
    MC_TEST_RUN(test_labels_depend_on_the_order_alone);
    MC_TEST_RUN(test_illegal_moves);
    MC_TEST_RUN(test_the_order_follows_each_move);
    MC_TEST_RUN(test_a_refusing_order_keeps_the_shipment);
    MC_TEST_RUN(test_a_silent_order_is_given_up);
    MC_TEST_RUN(test_wanted_events);
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
