/*  edge_card: what the edge makes of a card. Every verdict of the simulated gateway and every
    refusal with its field (CONTRACT §7, the 422s the HTTP contract names), brands, the two-digit
    year, the message card's exact members (no number or CVC among them), and complaints that
    never quote the number. */
#include "edge_card.h"
#include "mc_schema.h"
#include "mc_test.h"

#include <string.h>

static const uint64_t s_now = 1800000000000ull;       //  2027-01-15 08:00 UTC

typedef struct {
    const char *number, *cvc;
    int month, year;
} card_in_t;

//  Reads card at s_now; returns edge_card_read's result, with out and errs filled.
static int
s_read(card_in_t in, edge_card_t *out, mc_errors_t *errs)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "number", in.number);
    mc_pack_kv_int(&pk, "exp_month", in.month);
    mc_pack_kv_int(&pk, "exp_year", in.year);
    mc_pack_kv_cstr(&pk, "cvc", in.cvc);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, b.data, b.size), 0);
    int rc = edge_card_read(&u.data, s_now, out, errs);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
    return rc;
}

static void
test_gateway_outcomes(void)
{
    const struct {
        card_in_t in;
        const char *brand, *last4, *outcome;
    } cases[] = {
        { { "4242424242424242", "123", 12, 2030 }, "visa", "4242", "approved" },
        { { "4000000000000002", "123", 12, 2030 }, "visa", "0002", "card_declined" },
        { { "4000000000009995", "123", 12, 2030 }, "visa", "9995", "insufficient_funds" },
        { { "4000-0000-0000-9995", "123", 12, 2030 }, "visa", "9995", "insufficient_funds" },
        { { "4242 4242 4242 4242", "1234", 1, 27 }, "visa", "4242", "approved" },   //  2027-01: this month
        { { "5555555555554444", "123", 12, 2030 }, "mastercard", "4444", "approved" },
        { { "2223003122003222", "123", 12, 2030 }, "mastercard", "3222", "approved" },
        { { "378282246310005", "1234", 12, 2030 }, "amex", "0005", "approved" },
        { { "6011111111111117", "123", 12, 2030 }, "discover", "1117", "approved" },
        { { "3530111333300000", "123", 12, 2030 }, "jcb", "0000", "approved" },
        { { "30569309025904", "123", 12, 2030 }, "diners", "5904", "approved" },
        { { "9999999999999995", "123", 12, 2030 }, "unknown", "9995", "approved" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edge_card_t c;
        mc_errors_t errs = { 0 };
        ASSERT_EQ(s_read(cases[i].in, &c, &errs), 0);
        ASSERT_EQ(errs.count, 0);
        ASSERT_STR(c.brand, cases[i].brand);
        ASSERT_STR(c.last4, cases[i].last4);
        ASSERT_STR(c.outcome, cases[i].outcome);
        MC_CHECK(c.luhn && c.cvc_ok);
        ASSERT_EQ(c.exp_month, cases[i].in.month);
        ASSERT_EQ(c.exp_year, cases[i].in.year);        //  as sent, two digits included
    }
}

static void
test_refusals(void)
{
    const struct {
        card_in_t in;
        const char *field, *message;
    } cases[] = {
        { { "4242424242424241", "123", 12, 2030 }, "card.number", "is not a valid card number (Luhn check)" },
        { { "42424242424242a2", "123", 12, 2030 }, "card.number", "must be 12 to 19 digits" },
        { { "4242", "123", 12, 2030 }, "card.number", "must be 12 to 19 digits" },
        { { "42424242424242424242", "123", 12, 2030 }, "card.number", "must be 12 to 19 digits" },
        { { " 4242424242424242", "123", 12, 2030 }, "card.number", "must be 12 to 19 digits" },
        { { "4242424242424242-", "123", 12, 2030 }, "card.number", "must be 12 to 19 digits" },
        { { "4242424242424242", "12", 12, 2030 }, "card.cvc", "must be 3 or 4 digits" },
        { { "4242424242424242", "12a", 12, 2030 }, "card.cvc", "must be 3 or 4 digits" },
        { { "4242424242424242", "123", 12, 2026 }, "card.exp_year", "the card has expired" },
        { { "4242424242424242", "123", 12, 26 }, "card.exp_year", "the card has expired" },
        { { "4242424242424242", "123", 1, 2090 }, "card.exp_year", "is too far in the future" },
        { { "4242424242424242", "123", 13, 2030 }, "card.exp_month", "must be 1 to 12" },
        { { "4242424242424242", "123", 0, 2030 }, "card.exp_month", "must be 1 to 12" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        edge_card_t c;
        mc_errors_t errs = { 0 };
        ASSERT_EQ(s_read(cases[i].in, &c, &errs), -1);
        ASSERT_EQ(errs.count, 1);
        ASSERT_STR(errs.list[0].field, cases[i].field);
        ASSERT_STR(errs.list[0].message, cases[i].message);
        //  a complaint never quotes the number, nor does what is left in out
        MC_CHECK(strstr(errs.list[0].message, "4242") == NULL);
        MC_CHECK(memmem(&c, sizeof c, "4242424242", 10) == NULL);
    }
    //  every complaint of one card at once, in the order the fields are judged
    edge_card_t c;
    mc_errors_t errs = { 0 };
    ASSERT_EQ(s_read((card_in_t) { "4242", "1", 0, 2030 }, &c, &errs), -1);
    ASSERT_EQ(errs.count, 3);
    ASSERT_STR(errs.list[0].field, "card.number");
    ASSERT_STR(errs.list[1].field, "card.cvc");
    ASSERT_STR(errs.list[2].field, "card.exp_month");
}

//  The message card has exactly the members the actor needs, and satisfies the schema as the
//  actor sees it; the client's card (number and CVC) is what the actor refuses.
static void
test_message_card(void)
{
    edge_card_t c;
    mc_errors_t errs = { 0 };
    ASSERT_EQ(s_read((card_in_t) { "4000 0000 0000 0002", "7391", 3, 2031 }, &c, &errs), 0);
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "order_id", "01ORDER0000000000000000001");
    mc_pack_cstr(&pk, "card");
    edge_card_pack(&pk, &c);
    MC_CHECK(memmem(b.data, b.size, "400000000000", 12) == NULL && memmem(b.data, b.size, "4000 0000", 9) == NULL);
    MC_CHECK(memmem(b.data, b.size, "7391", 4) == NULL);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, b.data, b.size), 0);
    const msgpack_object *card = mc_map_get(&u.data, "card");
    MC_CHECK(card && card->type == MSGPACK_OBJECT_MAP);
    if (card && card->type == MSGPACK_OBJECT_MAP) {
        static const char *const members[] = { "exp_month", "exp_year", "brand", "last4", "luhn", "cvc_ok",
                                               "outcome" };
        ASSERT_EQ(card->via.map.size, sizeof members / sizeof *members);
        for (size_t i = 0; i < sizeof members / sizeof *members; i++)
            MC_CHECK(mc_map_get(card, members[i]) != NULL);
        mc_str_t outcome = { "", 0 }, last4 = { "", 0 };
        mc_map_str(card, "outcome", &outcome);
        mc_map_str(card, "last4", &last4);
        MC_CHECK(mc_str_eq(outcome, "card_declined") && mc_str_eq(last4, "0002"));
    }
    const mc_msgdef_t *def = mc_schema_find("payments", MC_STR("payment.create"));
    MC_CHECK(def != NULL);
    if (def) {
        mc_errors_t verr = { 0 };
        ASSERT_EQ(mc_schema_validate(def, &u.data, &verr), 0);
        //  and the schema as a client sees it: what the edge adds is not the client's to send
        verr = (mc_errors_t) { 0 };
        ASSERT_EQ(mc_schema_validate_http(def, &u.data, &verr), -1);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&b);
}

static void
test_luhn(void)
{
    MC_CHECK(edge_card_luhn("79927398713", 11));
    MC_CHECK(!edge_card_luhn("79927398710", 11));
    MC_CHECK(edge_card_luhn("0", 1));
    MC_CHECK(!edge_card_luhn("", 0));
}

int
main(void)
{
    MC_TEST_RUN(test_gateway_outcomes);
    MC_TEST_RUN(test_refusals);
    MC_TEST_RUN(test_message_card);
    MC_TEST_RUN(test_luhn);
    return MC_TEST_DONE();
}
