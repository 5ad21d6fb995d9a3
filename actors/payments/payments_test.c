/*  Payments through the actor core, with the orders service's replies played by hand as
    payment.step messages and cards packed as the edge packs them (edge_card): messages
    carrying a card number or CVC refused, the gateway's test cards, the two steps of a capture,
    one success per order, declines recorded, Idempotency-Key, refunds from order events, and no
    card number or CVC in the LMDB file afterwards. (The card checks are edge_card_test's.) */
#include "payments.h"
#include "edge_card.h"
#include "mc_core_test.h"
#include "mc_outbox.h"
#include "mc_test.h"
#include "mc_util.h"

#include <string.h>

static mc_core_t *s_core;
static char s_dir[64];
static uint64_t s_clock = 1800000000000ull;        //  2027-01-15
static const char *s_user = "01USER00000000000000000001";

static int
s_send(result_t *r, const char *type, const char *key, const char *id, const char *role, const char *idem,
       const msgpack_sbuffer *body)
{
    char mid[MC_ULID_LEN + 1];
    s_clock += 10;
    mc_ulid(mid, s_clock);
    const char *user = strcmp(role, "system") == 0 ? "" : s_user;
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { mid, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = { key, strlen(key) }, .role = { role, strlen(role) },
                         .user = { user, strlen(user) }, .idem = { idem ? idem : "", idem ? strlen(idem) : 0 },
                         .time = s_clock };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

static int
s_pay(const char *id, const char *order, const char *number, int month, int year, const char *idem, result_t *r)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "order_id", order);
    mc_pack_cstr(&pk, "card");
    //  the card as the edge turns it into what the actor needs
    msgpack_sbuffer cb;
    msgpack_sbuffer_init(&cb);
    msgpack_packer cpk;
    msgpack_packer_init(&cpk, &cb, msgpack_sbuffer_write);
    msgpack_pack_map(&cpk, 4);
    mc_pack_kv_cstr(&cpk, "number", number);
    mc_pack_kv_int(&cpk, "exp_month", month);
    mc_pack_kv_int(&cpk, "exp_year", year);
    mc_pack_kv_cstr(&cpk, "cvc", "7391");
    msgpack_unpacked cu;
    msgpack_unpacked_init(&cu);
    edge_card_t card;
    mc_errors_t errs = { 0 };
    ASSERT_EQ(mc_msgpack_unpack(&cu, cb.data, cb.size), 0);
    ASSERT_EQ(edge_card_read(&cu.data, s_clock, &card, &errs), 0);
    edge_card_pack(&pk, &card);
    msgpack_unpacked_destroy(&cu);
    msgpack_sbuffer_destroy(&cb);
    int status = s_send(r, "payment.create", order, id, "customer", idem, &b);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  Plays the orders service's reply to tag: the order (owner, status, total) or an error.
static void
s_reply(const char *tag, int status, const char *owner, const char *order_status, int64_t total)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mc_pack_kv_cstr(&pk, "tag", tag);
    mc_pack_kv_int(&pk, "status", status);
    if (status == 200) {
        mc_pack_cstr(&pk, "body");
        msgpack_pack_map(&pk, 5);
        mc_pack_kv_cstr(&pk, "id", "O");
        mc_pack_kv_cstr(&pk, "user_id", owner);
        mc_pack_kv_cstr(&pk, "status", order_status);
        mc_pack_kv_int(&pk, "total_cents", total);
        mc_pack_kv_cstr(&pk, "currency", "EUR");
    }
    else {
        mc_pack_cstr(&pk, "error");
        mc_pack_error(&pk, status == 404 ? "order_not_found" : "illegal_transition", "no", NULL);
    }
    result_t r;
    ASSERT_EQ(s_send(&r, "payment.step", tag, NULL, "system", NULL, &b), 200);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

//  Sends payment.create for order with the card member card packs.
static int
s_create_raw(const char *id, const char *order, void (*card)(msgpack_packer *), result_t *r)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "order_id", order);
    mc_pack_cstr(&pk, "card");
    card(&pk);
    int status = s_send(r, "payment.create", order, id, "customer", NULL, &b);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  The card the edge sends, plus one member the edge never sends (name: value).
static void
s_card_plus(msgpack_packer *pk, const char *name, const char *value)
{
    msgpack_pack_map(pk, 8);
    mc_pack_kv_cstr(pk, name, value);
    mc_pack_kv_int(pk, "exp_month", 12);
    mc_pack_kv_int(pk, "exp_year", 2030);
    mc_pack_kv_cstr(pk, "brand", "visa");
    mc_pack_kv_cstr(pk, "last4", "4242");
    mc_pack_kv_bool(pk, "luhn", true);
    mc_pack_kv_bool(pk, "cvc_ok", true);
    mc_pack_kv_cstr(pk, "outcome", "approved");
}

static void
s_card_with_number(msgpack_packer *pk)
{
    s_card_plus(pk, "number", "4242424242424242");
}

static void
s_card_with_cvc(msgpack_packer *pk)
{
    s_card_plus(pk, "cvc", "7391");
}

//  what a client would send, passed through as if there were no edge
static void
s_card_as_client_sends(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    mc_pack_kv_cstr(pk, "number", "4242424242424242");
    mc_pack_kv_int(pk, "exp_month", 12);
    mc_pack_kv_int(pk, "exp_year", 2030);
    mc_pack_kv_cstr(pk, "cvc", "7391");
}

static void
s_card_not_attested(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    mc_pack_kv_int(pk, "exp_month", 12);
    mc_pack_kv_int(pk, "exp_year", 2030);
    mc_pack_kv_cstr(pk, "brand", "visa");
    mc_pack_kv_cstr(pk, "last4", "4x42");
    mc_pack_kv_bool(pk, "luhn", false);
    mc_pack_kv_bool(pk, "cvc_ok", false);
    mc_pack_kv_cstr(pk, "outcome", "free_money");
}

//  True when one of the complaints of r's error names field.
static bool
s_complains(const result_t *r, const char *field)
{
    const msgpack_object *errs = mc_map_get(r->rep.error, "errors");
    for (uint32_t i = 0; errs && errs->type == MSGPACK_OBJECT_ARRAY && i < errs->via.array.size; i++) {
        mc_str_t f = { "", 0 };
        mc_map_str(&errs->via.array.ptr[i], "field", &f);
        if (mc_str_eq(f, field))
            return true;
    }
    return false;
}

//  CONTRACT §11: card numbers and CVCs never cross the internal plane. A message that carries
//  one is refused before the handler runs, so nothing of it is stored; so is a card the edge
//  would never have let through.
static void
test_card_secrets_are_refused(void)
{
    const char *order = "01ORDER0000000000000000099";
    result_t r;
    ASSERT_EQ(s_create_raw("01PAY00000000000000000091", order, s_card_with_number, &r), 422);
    MC_CHECK(s_complains(&r, "card.number"));
    s_free(&r);
    ASSERT_EQ(s_create_raw("01PAY00000000000000000092", order, s_card_with_cvc, &r), 422);
    MC_CHECK(s_complains(&r, "card.cvc"));
    s_free(&r);
    ASSERT_EQ(s_create_raw("01PAY00000000000000000093", order, s_card_as_client_sends, &r), 422);
    MC_CHECK(s_complains(&r, "card.number"));
    MC_CHECK(s_complains(&r, "card.cvc"));
    MC_CHECK(s_complains(&r, "card.brand"));        //  and what the edge adds is missing
    s_free(&r);
    ASSERT_EQ(s_create_raw("01PAY00000000000000000094", order, s_card_not_attested, &r), 422);
    MC_CHECK(s_complains(&r, "card.luhn"));
    MC_CHECK(s_complains(&r, "card.cvc_ok"));
    MC_CHECK(s_complains(&r, "card.last4"));
    MC_CHECK(s_complains(&r, "card.outcome"));
    s_free(&r);
    //  none of them started a payment: the order is free, and nothing was asked of orders
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);
    ASSERT_EQ(s_send(&r, "payment.list", order, "01LIST00000000000000000099", "customer", NULL, NULL), -1);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01LIST00000000000000000099:l", NULL), 1);
}

static void
test_payment_lives_with_its_order(void)
{
    //  payment.create reaches the payments shard of its order: the payment's id is made to
    //  fall there too, so that GET /api/v1/payments/{id} routed by the id finds it
    setenv("MERCATO_SHARDS", "1,payments=16", 1);
    const char *order = "01ZRDER0000000000000000077";
    unsigned want = mc_shard_of("payments", order, strlen(order));
    result_t r;
    ASSERT_EQ(s_pay("01PAY000000000000000000077", order, "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    const mc_fx_t *park = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, NULL, &park), 1);
    if (park) {
        ASSERT_EQ(mc_shard_of("payments", park->key, strlen(park->key)), want);
        MC_CHECK(mc_ulid_valid(park->key, strlen(park->key)));
        MC_CHECK(strncmp(park->key, "01PAY00000", 10) == 0);   //  the message id's time
    }
    setenv("MERCATO_SHARDS", "1", 1);
}

static void
test_capture_in_two_steps(void)
{
    const char *pid = "01PAY00000000000000000001", *order = "01ORDER0000000000000000001";
    result_t r;
    ASSERT_EQ(s_pay(pid, order, "4242424242424242", 12, 2030, "k1", &r), -1);
    s_free(&r);
    //  the order is read on the payer's behalf, and the caller waits
    const mc_fx_t *send = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01PAY00000000000000000001:q", &send), 1);
    ASSERT_STR(send->service, "orders.0");
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_PARK, pid, NULL), 1);
    //  a second payment of the same order meanwhile
    ASSERT_EQ(s_pay("01PAY00000000000000000002", order, "4242424242424242", 12, 2030, NULL, &r), 409);
    s_free(&r);
    s_reply("01PAY00000000000000000001:q", 200, s_user, "pending_payment", 2250);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01PAY00000000000000000001:c", &send), 1);
    //  the capture carries the order's amount, not the client's
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    ASSERT_EQ(mc_request_decode(&u, send->data.data, send->data.size, &req), 0);
    int64_t amount = 0;
    mc_map_int(req.body, "amount_cents", &amount);
    ASSERT_EQ(amount, 2250);
    MC_CHECK(mc_str_eq(req.type, "order.pay"));
    msgpack_unpacked_destroy(&u);
    //  unanswered: sent again after a second
    s_clock += 1000;
    ASSERT_EQ(s_send(&r, "payment.tick", "", NULL, "system", NULL, NULL), 200);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01PAY00000000000000000001:c", NULL), 1);
    s_reply("01PAY00000000000000000001:c", 200, s_user, "paid", 2250);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, pid, &answer), 1);
    ASSERT_EQ(answer->status, 201);
    ASSERT_EQ(s_send(&r, "payment.get", pid, NULL, "customer", NULL, NULL), 200);
    mc_str_t status = { "", 0 }, last4 = { "", 0 }, brand = { "", 0 };
    mc_map_str(r.rep.body, "status", &status);
    mc_map_str(r.rep.body, "card_last4", &last4);
    mc_map_str(r.rep.body, "card_brand", &brand);
    MC_CHECK(mc_str_eq(status, "succeeded") && mc_str_eq(last4, "4242") && mc_str_eq(brand, "visa"));
    s_free(&r);
    //  the same key and body: the stored answer
    ASSERT_EQ(s_pay("01PAY00000000000000000003", order, "4242424242424242", 12, 2030, "k1", &r), 201);
    MC_CHECK(r.rep.replayed);
    s_free(&r);
    //  another card with the same key: reused
    ASSERT_EQ(s_pay("01PAY00000000000000000004", order, "5555555555554444", 12, 2030, "k1", &r), 422);
    s_free(&r);
    //  paid: a new payment is refused at once
    ASSERT_EQ(s_pay("01PAY00000000000000000005", order, "4242424242424242", 12, 2030, NULL, &r), 409);
    s_free(&r);
    //  someone else's payment is not found
    const char *me = s_user;
    s_user = "01USER00000000000000000002";
    ASSERT_EQ(s_send(&r, "payment.get", pid, NULL, "customer", NULL, NULL), 404);
    s_free(&r);
    s_user = me;
}

static void
test_declines_are_recorded(void)
{
    const char *pid = "01PAY00000000000000000011", *order = "01ORDER0000000000000000002";
    result_t r;
    ASSERT_EQ(s_pay(pid, order, "4000000000009995", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000011:q", 200, s_user, "pending_payment", 500);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, NULL, NULL), 0);        //  nothing to capture
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, pid, &answer), 1);
    ASSERT_EQ(answer->status, 402);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, answer->data.data, answer->data.size), 0);
    mc_str_t code = { "", 0 }, id = { "", 0 };
    mc_map_str(&u.data, "code", &code);
    mc_map_str(mc_map_get(&u.data, "members"), "payment_id", &id);
    MC_CHECK(mc_str_eq(code, "insufficient_funds") && mc_str_eq(id, pid));
    msgpack_unpacked_destroy(&u);
    //  the order is free to be paid again, and the list has the decline
    ASSERT_EQ(s_pay("01PAY00000000000000000012", order, "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000012:q", 200, s_user, "pending_payment", 500);
    s_reply("01PAY00000000000000000012:c", 200, s_user, "paid", 500);
    ASSERT_EQ(s_send(&r, "payment.list", order, NULL, "customer", NULL, NULL), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    MC_CHECK(items && items->via.array.size == 2);
    if (items && items->via.array.size == 2) {
        mc_str_t s0 = { "", 0 }, s1 = { "", 0 };
        mc_map_str(&items->via.array.ptr[0], "status", &s0);
        mc_map_str(&items->via.array.ptr[1], "status", &s1);
        MC_CHECK(mc_str_eq(s0, "declined") && mc_str_eq(s1, "succeeded"));
    }
    s_free(&r);
    //  another user's order: not found, whether it has payments or not
    const char *me = s_user;
    s_user = "01USER00000000000000000002";
    ASSERT_EQ(s_send(&r, "payment.list", order, NULL, "customer", NULL, NULL), 404);
    s_free(&r);
    s_user = me;
    //  an order nobody paid for yet: the orders service says whose it is
    ASSERT_EQ(s_send(&r, "payment.list", "01ORDER0000000000000000009", "01LIST00000000000000000001", "customer",
                     NULL, NULL), -1);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_SEND, "01LIST00000000000000000001:l", NULL), 1);
    s_reply("01LIST00000000000000000001:l", 404, s_user, "", 0);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "list:01LIST00000000000000000001", &answer), 1);
    ASSERT_EQ(answer->status, 404);
}

static void
test_orders_that_cannot_be_paid(void)
{
    result_t r;
    //  someone else's order
    ASSERT_EQ(s_pay("01PAY00000000000000000021", "01ORDER0000000000000000003", "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000021:q", 200, "01USER00000000000000000002", "pending_payment", 100);
    const mc_fx_t *answer = NULL;
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01PAY00000000000000000021", &answer), 1);
    ASSERT_EQ(answer->status, 404);
    //  an expired one
    ASSERT_EQ(s_pay("01PAY00000000000000000022", "01ORDER0000000000000000004", "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000022:q", 200, s_user, "expired", 100);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01PAY00000000000000000022", &answer), 1);
    ASSERT_EQ(answer->status, 409);
    //  one that expires between the two steps: nothing is captured
    ASSERT_EQ(s_pay("01PAY00000000000000000023", "01ORDER0000000000000000005", "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000023:q", 200, s_user, "pending_payment", 100);
    s_reply("01PAY00000000000000000023:c", 409, s_user, "", 0);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01PAY00000000000000000023", &answer), 1);
    ASSERT_EQ(answer->status, 409);
    ASSERT_EQ(s_send(&r, "payment.get", "01PAY00000000000000000023", NULL, "admin", NULL, NULL), 404);
    s_free(&r);
    //  an orders service that never answers the read: 503 after the timeout
    ASSERT_EQ(s_pay("01PAY00000000000000000024", "01ORDER0000000000000000006", "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_clock += 16000;
    ASSERT_EQ(s_send(&r, "payment.tick", "", NULL, "system", NULL, NULL), 200);
    s_free(&r);
    ASSERT_EQ(mc_core_test_effects(s_core, MC_FX_ANSWER, "01PAY00000000000000000024", &answer), 1);
    ASSERT_EQ(answer->status, 503);
}

static int
s_order_event(const char *event_id, const char *type, const char *order)
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
    msgpack_pack_map(&pk, 0);
    result_t r;
    int status = s_send(&r, "payment.event", order, event_id, "system", NULL, &b);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
    return status;
}

static void
test_cancelled_orders_are_refunded(void)
{
    ASSERT_EQ(s_order_event("E1", "order.cancelled", "01ORDER0000000000000000001"), 200);
    result_t r;
    ASSERT_EQ(s_send(&r, "payment.get", "01PAY00000000000000000001", NULL, "customer", NULL, NULL), 200);
    mc_str_t status = { "", 0 };
    mc_map_str(r.rep.body, "status", &status);
    MC_CHECK(mc_str_eq(status, "refunded"));
    MC_CHECK(mc_map_get(r.rep.body, "refunded_at")->type == MSGPACK_OBJECT_STR);
    s_free(&r);
    //  redelivered: nothing more
    ASSERT_EQ(s_order_event("E1", "order.cancelled", "01ORDER0000000000000000001"), 200);
    //  a cancellation heard before the capture's reply: refunded as soon as it is captured
    const char *order = "01ORDER0000000000000000007", *pid = "01PAY00000000000000000031";
    ASSERT_EQ(s_pay(pid, order, "4242424242424242", 12, 2030, NULL, &r), -1);
    s_free(&r);
    s_reply("01PAY00000000000000000031:q", 200, s_user, "pending_payment", 100);
    ASSERT_EQ(s_order_event("E2", "order.cancelled", order), 200);
    s_reply("01PAY00000000000000000031:c", 200, s_user, "cancelled", 100);
    ASSERT_EQ(s_send(&r, "payment.get", pid, NULL, "customer", NULL, NULL), 200);
    mc_map_str(r.rep.body, "status", &status);
    MC_CHECK(mc_str_eq(status, "refunded"));
    s_free(&r);
}

//  The file holds what was stored, the outbox's events included: never the number or the CVC.
static void
test_no_card_data_at_rest(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/payments/0/data.mdb", s_dir);
    FILE *f = fopen(path, "rb");
    MC_CHECK(f != NULL);
    if (!f)
        return;
    static char buf[1 << 22];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    const char *secrets[] = { "4242424242424242", "4000000000009995", "5555555555554444", "7391" };
    for (size_t s = 0; s < sizeof secrets / sizeof *secrets; s++)
        MC_CHECK(memmem(buf, n, secrets[s], strlen(secrets[s])) == NULL);
    MC_CHECK(memmem(buf, n, "9995", 4) != NULL);     //  the last 4 are kept: the scan sees the file
}

//  Only the event types its handler acts on are delivered by its Kafka consumer.
static void
test_wanted_events(void)
{
    MC_CHECK(payments_service.wants_event(MC_STR("order.cancelled")));
    MC_CHECK(payments_service.wants_event(MC_STR("order.refunded")));
    MC_CHECK(!payments_service.wants_event(MC_STR("order.created")));
    MC_CHECK(!payments_service.wants_event(MC_STR("order.paid")));
    MC_CHECK(!payments_service.wants_event(MC_STR("order.shipped")));
}

int
main(void)
{
    //  one shard of everything, whatever the environment says: the tests of several shards set
    //  their own
    setenv("MERCATO_SHARDS", "1", 1);
    s_core = mc_core_test_open(&payments_service, s_dir, 1u << 26);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_card_secrets_are_refused);
    MC_TEST_RUN(test_capture_in_two_steps);
    MC_TEST_RUN(test_declines_are_recorded);
    MC_TEST_RUN(test_orders_that_cannot_be_paid);
    MC_TEST_RUN(test_cancelled_orders_are_refunded);
    MC_TEST_RUN(test_payment_lives_with_its_order);
    mc_core_destroy(&s_core);
    MC_TEST_RUN(test_no_card_data_at_rest);
    MC_TEST_RUN(test_wanted_events);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd))
        return 1;
    return MC_TEST_DONE();
}
