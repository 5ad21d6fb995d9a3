/*  The notifications actor through its core, with identity and the mailer played by hand as
    notification.step messages: dedupe of redelivered events, lookups, attempts and their
    backoff, the admin fan-out, who sees which notifications, the mails themselves (rendering,
    no card numbers, the wire message), and that the same event gives the same notification on
    a fresh core. */
#include "notifications_test_support.h"
#include "notifications_render.h"
#include "mailer.h"

static void
test_registration_mails_the_new_user_once(void)
{
    s_clock += 1000;
    s_event("01EVENT00000000000000000001-0", "user.registered", s_customer, s_registered, false);
    //  the clock makes the first attempt, with the time it really is
    ASSERT_EQ(s_sends("", NULL), 0);
    char status[32];
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "pending");
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("m:", &send), 1);
    MC_CHECK(send && strcmp(send->service, "mailer.0") == 0);
    char to[64], message_id[96], subject[128], text[1024], id[32];
    s_send_field(send, "to", to, sizeof to);
    s_send_field(send, "message_id", message_id, sizeof message_id);
    s_send_field(send, "subject", subject, sizeof subject);
    s_send_field(send, "text", text, sizeof text);
    s_send_field(send, "id", id, sizeof id);
    char tag[64];
    snprintf(tag, sizeof tag, "m:%s:1", id);
    MC_CHECK(strcmp(send->tag, tag) == 0);
    ASSERT_STR(to, "ada@example.test");
    ASSERT_STR(message_id, "<01EVENT00000000000000000001-0@mercato>");
    ASSERT_STR(subject, "Welcome to Mercato");
    MC_CHECK(strstr(text, "Hello Ada,") != NULL);
    ASSERT_EQ(s_newest_attempts(), 1);      //  recorded before the mail left
    s_reply(tag, 200, s_sent, NULL);
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "sent");
    ASSERT_EQ(s_newest_attempts(), 1);
    //  a redelivery of the event, or a late repeat of the answer, changes nothing
    size_t before = s_count("admin", "01ADMIN0000000000000000000");
    s_event("01EVENT00000000000000000001-0", "user.registered", s_customer, s_registered, true);
    s_reply(tag, 502, NULL, "late");
    s_clock += 60000;
    s_tick();
    ASSERT_EQ(s_sends("", NULL), 0);
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before);
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "sent");
}

static void
test_order_mail_asks_identity_for_the_address(void)
{
    s_clock += 1000;
    s_event("01EVENT00000000000000000002-0", "order.created", "01ORDER0000000000000000001", s_order_of_customer, false);
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("c:", &send), 1);
    MC_CHECK(send && strcmp(send->service, "identity.0") == 0);
    char tag[MC_REQUEST_ID_MAX + 1];
    snprintf(tag, sizeof tag, "%s", send ? send->tag : "");
    char recipient[64] = "x";
    s_newest("recipient", recipient, sizeof recipient);
    ASSERT_STR(recipient, "");      //  null until identity names it
    //  no answer: asked again a second later, not before
    s_clock += 500;
    s_tick();
    ASSERT_EQ(s_sends("c:", NULL), 0);
    s_clock += 500;
    s_tick();
    ASSERT_EQ(s_sends("c:", NULL), 1);
    s_reply(tag, 200, s_contact, NULL);
    ASSERT_EQ(s_sends("m:", &send), 1);     //  the attempt follows at once
    char to[64], subject[128], text[2048];
    s_send_field(send, "to", to, sizeof to);
    s_send_field(send, "subject", subject, sizeof subject);
    s_send_field(send, "text", text, sizeof text);
    ASSERT_STR(to, "ada@example.test");
    ASSERT_STR(subject, "Your Mercato order 01ORDER0000000000000000001 is placed");
    MC_CHECK(strstr(text, "2 x First (SKU-1): EUR 20.00") != NULL);
    MC_CHECK(strstr(text, "Total: EUR 22.50") != NULL);
    MC_CHECK(strstr(text, "\r\nBcc") == NULL && strstr(text, "\nBcc") == NULL);
    s_reply(send->tag, 200, s_logged, NULL);
    char status[32];
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "logged");
    //  a user identity does not know: failed, without an attempt
    s_clock += 1000;
    s_event("01EVENT00000000000000000003-0", "order.cancelled", "01ORDER0000000000000000001", s_order_of_other, false);
    s_tick();
    ASSERT_EQ(s_sends("c:", &send), 1);
    s_reply(send->tag, 404, NULL, "no such user");
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "failed");
    ASSERT_EQ(s_newest_attempts(), 0);
}

static void
test_failed_attempts_back_off_then_fail(void)
{
    //  MERCATO_SMTP_RETRY_MS=1000, MERCATO_SMTP_ATTEMPTS=4 (main)
    s_clock += 1000;
    s_event("01EVENT00000000000000000004-0", "user.registered", s_customer, s_registered, false);
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("m:", &send), 1);
    char id[32], tag[64];
    s_send_field(send, "id", id, sizeof id);
    snprintf(tag, sizeof tag, "m:%s:1", id);
    s_reply(tag, 502, NULL, "Failed to connect to the server");
    char status[32], error[128];
    s_newest("status", status, sizeof status);
    s_newest("last_error", error, sizeof error);
    ASSERT_STR(status, "pending");
    ASSERT_STR(error, "Failed to connect to the server");
    //  1 s, then 2 s, then 4 s
    uint64_t backoff[] = { 1000, 2000 };
    for (int k = 0; k < 2; k++) {
        s_clock += backoff[k] - 1;
        s_tick();
        ASSERT_EQ(s_sends("m:", NULL), 0);
        s_clock += 1;
        s_tick();
        ASSERT_EQ(s_sends("m:", &send), 1);
        snprintf(tag, sizeof tag, "m:%s:%d", id, k + 2);
        MC_CHECK(strcmp(send->tag, tag) == 0);
        char message_id[96];
        s_send_field(send, "message_id", message_id, sizeof message_id);
        ASSERT_STR(message_id, "<01EVENT00000000000000000004-0@mercato>");      //  the same on every attempt
        if (k == 0) {
            //  a late failure of an attempt already given up on costs nothing
            char old[64];
            snprintf(old, sizeof old, "m:%s:1", id);
            s_reply(old, 502, NULL, "late");
            ASSERT_EQ(s_newest_attempts(), 2);
            s_newest("status", status, sizeof status);
            ASSERT_STR(status, "pending");
        }
        s_reply(tag, 503, NULL, NULL);      //  no mailer
    }
    ASSERT_EQ(s_newest_attempts(), 3);
    //  an attempt the mailer never answers counts as failed after 30 s
    s_clock += 4000;
    s_tick();
    ASSERT_EQ(s_sends("m:", NULL), 1);
    s_clock += 29999;
    s_tick();
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "pending");
    s_clock += 1;
    s_tick();
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "failed");       //  the fourth of four
    s_newest("last_error", error, sizeof error);
    ASSERT_STR(error, "the mailer did not answer");
    ASSERT_EQ(s_newest_attempts(), 4);
    s_clock += 3600000;
    s_tick();
    ASSERT_EQ(s_sends("", NULL), 0);
    //  unless the last attempt did go through after all
    snprintf(tag, sizeof tag, "m:%s:4", id);
    s_reply(tag, 200, s_sent, NULL);
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "sent");
}

static void
test_late_success_of_an_earlier_attempt_counts(void)
{
    s_clock += 1000;
    s_event("01EVENT00000000000000000005-0", "user.registered", s_customer, s_registered, false);
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("m:", &send), 1);
    char id[32], tag[64];
    s_send_field(send, "id", id, sizeof id);
    s_clock += 30000;
    s_tick();       //  attempt 1 given up on
    s_clock += 1000;
    s_tick();
    ASSERT_EQ(s_sends("m:", NULL), 1);      //  attempt 2
    snprintf(tag, sizeof tag, "m:%s:1", id);
    s_reply(tag, 200, s_sent, NULL);        //  but 1 got through after all
    char status[32];
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "sent");
    //  a mail no server could take fails at once
    s_clock += 1000;
    s_event("01EVENT00000000000000000006-0", "user.registered", s_customer, s_registered, false);
    s_tick();
    ASSERT_EQ(s_sends("m:", &send), 1);
    s_reply(send->tag, 422, NULL, "the mail has an invalid address");
    s_newest("status", status, sizeof status);
    ASSERT_STR(status, "failed");
    ASSERT_EQ(s_newest_attempts(), 1);
}

static void
test_low_stock_mails_every_admin(void)
{
    s_clock += 1000;
    s_event("01EVENT00000000000000000007-0", "inventory.low_stock", "01PRODUCT00000000000000001", s_low_stock, false);
    size_t before = s_count("admin", "01ADMIN0000000000000000000");
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("a:", &send), 1);
    MC_CHECK(send && strcmp(send->service, "identity.0") == 0);
    char tag[MC_REQUEST_ID_MAX + 1];
    snprintf(tag, sizeof tag, "%s", send ? send->tag : "");
    s_clock += 1000;
    s_tick();
    ASSERT_EQ(s_sends("a:", NULL), 1);      //  unanswered: asked again
    s_reply(tag, 200, s_admins, NULL);
    ASSERT_EQ(s_sends("m:", NULL), 2);
    size_t n;
    mc_fx_t *const *fx = mc_core_effects(s_core, &n);
    char seen[2][96] = { "", "" }, to[2][64] = { "", "" };
    for (size_t i = 0, k = 0; i < n && k < 2; i++)
        if (fx[i]->kind == MC_FX_SEND) {
            s_send_field(fx[i], "message_id", seen[k], sizeof seen[k]);
            s_send_field(fx[i], "to", to[k++], sizeof to[0]);
        }
    ASSERT_STR(seen[0], "<01EVENT00000000000000000007-0.1@mercato>");
    ASSERT_STR(seen[1], "<01EVENT00000000000000000007-0.2@mercato>");
    ASSERT_STR(to[0], "root@example.test");
    ASSERT_STR(to[1], "ops@example.test");
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before + 2);
    ASSERT_EQ(s_count("customer", "01ADMIN0000000000000000001"), 1);
    //  the answer repeated, or the event redelivered: nobody is mailed twice
    s_reply(tag, 200, s_admins, NULL);
    s_event("01EVENT00000000000000000007-0", "inventory.low_stock", "01PRODUCT00000000000000001", s_low_stock, true);
    s_tick();
    ASSERT_EQ(s_sends("", NULL), 0);
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before + 2);
}

static void
s_root(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mc_pack_kv_cstr(pk, "id", "01ADMIN0000000000000000001");
    mc_pack_kv_cstr(pk, "email", "root@example.test");
}

static void
s_ops(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 2);
    mc_pack_kv_cstr(pk, "id", "01ADMIN0000000000000000002");
    mc_pack_kv_cstr(pk, "email", "ops@example.test");
}

static void
s_nobody(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 0);
}

//  With identity in three shards every shard is asked for its admins, and the alert goes out
//  only once all three have answered: to the admins of each, numbered in shard order whatever
//  order the answers came in.
static void
test_low_stock_asks_every_identity_shard(void)
{
    setenv("MERCATO_SHARDS", "1,identity=3", 1);
    s_clock += 1000;
    s_event("01EVENT00000000000000000017-0", "inventory.low_stock", "01PRODUCT00000000000000001", s_low_stock, false);
    size_t before = s_count("admin", "01ADMIN0000000000000000000");
    s_tick();
    ASSERT_EQ(s_sends("a:", NULL), 3);
    char tags[3][MC_REQUEST_ID_MAX + 1];
    size_t n;
    mc_fx_t *const *fx = mc_core_effects(s_core, &n);
    for (size_t i = 0, k = 0; i < n; i++)
        if (fx[i]->kind == MC_FX_SEND && k < 3) {
            char want[16];
            snprintf(want, sizeof want, "identity.%zu", k);
            ASSERT_STR(fx[i]->service, want);
            snprintf(tags[k++], sizeof tags[0], "%s", fx[i]->tag);
        }
    //  shard 2 answers first, shard 0 next, shard 1 fails: nobody is mailed yet
    s_reply(tags[2], 200, s_ops, NULL);
    ASSERT_EQ(s_sends("", NULL), 0);
    s_reply(tags[0], 200, s_root, NULL);
    ASSERT_EQ(s_sends("", NULL), 0);
    s_reply(tags[1], 503, NULL, "no live node");
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before);
    //  the tick asks again only the shard that has not answered
    s_clock += 1000;
    s_tick();
    const mc_fx_t *send = NULL;
    ASSERT_EQ(s_sends("a:", &send), 1);
    MC_CHECK(send && strcmp(send->service, "identity.1") == 0);
    s_reply(tags[2], 200, s_ops, NULL);     //  a repeated answer changes nothing
    ASSERT_EQ(s_sends("", NULL), 0);
    s_reply(tags[1], 200, s_nobody, NULL);
    ASSERT_EQ(s_sends("m:", NULL), 2);
    fx = mc_core_effects(s_core, &n);
    char to[2][64] = { "", "" }, seen[2][96] = { "", "" };
    for (size_t i = 0, k = 0; i < n && k < 2; i++)
        if (fx[i]->kind == MC_FX_SEND) {
            s_send_field(fx[i], "message_id", seen[k], sizeof seen[k]);
            s_send_field(fx[i], "to", to[k++], sizeof to[0]);
        }
    ASSERT_STR(to[0], "root@example.test");
    ASSERT_STR(to[1], "ops@example.test");
    ASSERT_STR(seen[0], "<01EVENT00000000000000000017-0.1@mercato>");
    ASSERT_STR(seen[1], "<01EVENT00000000000000000017-0.2@mercato>");
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before + 2);
    //  done: late answers and ticks mail nobody again
    s_reply(tags[0], 200, s_root, NULL);
    s_clock += 1000;
    s_tick();
    ASSERT_EQ(s_sends("", NULL), 0);
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before + 2);
    setenv("MERCATO_SHARDS", "1", 1);
}

static void
test_other_events_are_ignored(void)
{
    size_t before = s_count("admin", "01ADMIN0000000000000000000");
    s_event("01EVENT00000000000000000008-0", "product.created", "P1", s_product, false);
    s_event("01EVENT00000000000000000008-0", "product.created", "P1", s_product, false);
    s_tick();
    ASSERT_EQ(s_sends("", NULL), 0);
    ASSERT_EQ(s_count("admin", "01ADMIN0000000000000000000"), before);
}

static void
test_who_sees_what(void)
{
    s_clock += 1000;
    s_event("01EVENT00000000000000000009-0", "order.expired", "01ORDER0000000000000000001", s_order_of_other, false);
    size_t all = s_count("admin", "01ADMIN0000000000000000000");
    size_t mine = s_count("customer", s_customer), theirs = s_count("customer", s_other);
    ASSERT_EQ(theirs, 2);       //  the cancelled and the expired order
    MC_CHECK(mine >= 5);
    MC_CHECK(all >= mine + theirs + 2);
    result_t r;
    ASSERT_EQ(s_list(&r, "customer", s_customer, 100, NULL), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    for (uint32_t i = 0; items && i < items->via.array.size; i++) {
        mc_str_t user = { "", 0 };
        mc_map_str(&items->via.array.ptr[i], "user_id", &user);
        MC_CHECK(mc_str_eq(user, s_customer));
    }
    s_free(&r);
    //  pages of 2, newest first, every one once
    char cursor[128] = "";
    size_t seen = 0;
    uint64_t newest = UINT64_MAX;
    for (int page = 0; page < 50; page++) {
        ASSERT_EQ(s_list(&r, "admin", "01ADMIN0000000000000000000", 2, *cursor ? cursor : NULL), 200);
        items = mc_map_get(r.rep.body, "items");
        for (uint32_t i = 0; items && i < items->via.array.size; i++) {
            mc_str_t id = { "", 0 };
            mc_map_str(&items->via.array.ptr[i], "id", &id);
            uint64_t t = 0;
            for (int k = 0; k < 10 && k < (int) id.len; k++)
                t = t << 5 | (uint64_t) (strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", id.ptr[k]) -
                                         "0123456789ABCDEFGHJKMNPQRSTVWXYZ");
            MC_CHECK(t <= newest);
            newest = t;
            seen++;
        }
        mc_str_t next = { "", 0 };
        bool more = mc_map_str(r.rep.body, "next_cursor", &next) == 0;
        snprintf(cursor, sizeof cursor, "%.*s", (int) next.len, next.ptr);
        s_free(&r);
        if (!more)
            break;
    }
    ASSERT_EQ(seen, all);
    ASSERT_EQ(s_list(&r, "customer", "", 10, NULL), 401);
    s_free(&r);
}

static void
test_test_mail_is_for_admins(void)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "to", "someone@example.test");
    s_call("notification.test", "customer", &b, 403);
    ASSERT_EQ(s_sends("", NULL), 0);
    result_t r;
    ASSERT_EQ(s_send(&r, "notification.test", "01TESTMAIL0000000000000001", "admin", "01ADMIN0000000000000000001", &b), 202);
    mc_str_t status = { "", 0 }, to = { "", 0 }, message_id = { "", 0 };
    int64_t attempts = 0;
    mc_map_str(r.rep.body, "status", &status);
    mc_map_str(r.rep.body, "recipient", &to);
    mc_map_str(r.rep.body, "message_id", &message_id);
    mc_map_int(r.rep.body, "attempts", &attempts);
    MC_CHECK(mc_str_eq(status, "pending"));
    MC_CHECK(mc_str_eq(to, "someone@example.test"));
    MC_CHECK(mc_str_eq(message_id, "<01TESTMAIL0000000000000001@mercato>"));
    ASSERT_EQ(attempts, 1);
    s_free(&r);
    ASSERT_EQ(s_sends("m:", NULL), 1);
    //  the same message again: the same notification, no second mail
    ASSERT_EQ(s_send(&r, "notification.test", "01TESTMAIL0000000000000001", "admin", "01ADMIN0000000000000000001", &b), 202);
    s_free(&r);
    ASSERT_EQ(s_sends("", NULL), 0);
    msgpack_sbuffer_destroy(&b);
}

//  Renders an event whose data fill packs; subject and text into the buffers.
static void
s_render(const char *type, void (*fill)(msgpack_packer *pk), char *subject, char *text, size_t textsz)
{
    msgpack_sbuffer d, t;
    msgpack_sbuffer_init(&d);
    msgpack_sbuffer_init(&t);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &d, msgpack_sbuffer_write);
    fill(&pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    MC_CHECK(mc_msgpack_unpack(&u, d.data, d.size) == 0);
    MC_CHECK(notifications_render((mc_str_t) { type, strlen(type) }, &u.data, subject, &t));
    snprintf(text, textsz, "%.*s", (int) t.size, t.data);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&t);
    msgpack_sbuffer_destroy(&d);
}

static void
test_each_event_renders_its_mail(void)
{
    char subject[NOTIFY_SUBJECT_MAX], text[4096];
    s_render("payment.succeeded", s_paid, subject, text, sizeof text);
    ASSERT_STR(subject, "Payment received for your Mercato order 01ORDER0000000000000000001");
    MC_CHECK(strstr(text, "USD 12.34") && strstr(text, "Visa ending in 4242"));
    MC_CHECK(!strstr(text, "4242424242424242"));
    s_render("payment.declined", s_declined, subject, text, sizeof text);
    ASSERT_STR(subject, "Payment declined for your Mercato order 01ORDER0000000000000000001");
    MC_CHECK(strstr(text, "Visa ending in 0002") && strstr(text, "insufficient funds"));
    s_render("order.shipped", s_order_of_customer, subject, text, sizeof text);
    ASSERT_STR(subject, "Your Mercato order 01ORDER0000000000000000001 has shipped");
    s_render("order.cancelled", s_order_of_customer, subject, text, sizeof text);
    ASSERT_STR(subject, "Your Mercato order 01ORDER0000000000000000001 is cancelled");
    s_render("order.expired", s_order_of_customer, subject, text, sizeof text);
    ASSERT_STR(subject, "Your Mercato order 01ORDER0000000000000000001 has expired");
    MC_CHECK(strstr(text, "Total: EUR 22.50") != NULL);
    s_render("inventory.low_stock", s_low_stock, subject, text, sizeof text);
    ASSERT_STR(subject, "Low stock: product 01PRODUCT00000000000000001");
    MC_CHECK(strstr(text, "9 available to sell (15 on hand)") && strstr(text, "threshold of 10"));
    ASSERT_EQ(notifications_audience(MC_STR("inventory.low_stock")), NOTIFY_ADMINS);
    ASSERT_EQ(notifications_audience(MC_STR("payment.declined")), NOTIFY_USER);
    ASSERT_EQ(notifications_audience(MC_STR("notification.test")), NOTIFY_NOBODY);
    ASSERT_EQ(notifications_audience(MC_STR("order.paid")), NOTIFY_NOBODY);
    char money[48];
    notifications_money(money, sizeof money, 1234, MC_STR("USD"));
    ASSERT_STR(money, "USD 12.34");
    notifications_money(money, sizeof money, 5, (mc_str_t) { "", 0 });
    ASSERT_STR(money, "USD 0.05");
    notifications_money(money, sizeof money, -150, MC_STR("EUR"));
    ASSERT_STR(money, "EUR -1.50");
}

static void
test_card_numbers_never_reach_a_mail(void)
{
    struct { const char *in, *out; } cases[] = {
        { "card 4242424242424242 here", "card ************4242 here" },
        { "4000 0000 0000 0002", "**** **** **** 0002" },
        { "4000-0000-0000-9995.", "****-****-****-9995." },
        { "not luhn 4242424242424241", "not luhn 4242424242424241" },
        { "short 424242424242", "short 424242424242" },
        { "01ORDER0000000000000000001 at 2027-01-15T08:15:00.000Z", "01ORDER0000000000000000001 at 2027-01-15T08:15:00.000Z" },
        { "USD 12.34", "USD 12.34" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "%s", cases[i].in);
        notifications_mask_pan(buf, strlen(buf));
        ASSERT_STR(buf, cases[i].out);
    }
}

static void
s_card_in_name(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    mc_pack_kv_cstr(pk, "user_id", s_customer);
    mc_pack_kv_cstr(pk, "email", "ada@example.test");
    mc_pack_kv_cstr(pk, "name", "4242 4242 4242 4242");
}

static void
test_card_number_in_free_text_is_masked(void)
{
    char subject[NOTIFY_SUBJECT_MAX], text[4096];
    s_render("user.registered", s_card_in_name, subject, text, sizeof text);
    MC_CHECK(strstr(text, "Hello **** **** **** 4242,") != NULL);
}

static void
test_mailer_message(void)
{
    msgpack_sbuffer m;
    msgpack_sbuffer_init(&m);
    mailer_message(&m, "noreply@mercato.test", MC_STR("ada@example.test"), MC_STR("Welcome\r\nBcc: x@y.z"),
                   MC_STR("<01EV-0@mercato>"), MC_STR("Hello Ada,\n.\nbye\n"), 1800000000000ull);
    char msg[1024];
    snprintf(msg, sizeof msg, "%.*s", (int) m.size, m.data);
    ASSERT_STR(msg, "Date: Fri, 15 Jan 2027 08:00:00 +0000\r\n"
                    "From: Mercato <noreply@mercato.test>\r\n"
                    "To: <ada@example.test>\r\n"
                    "Subject: Welcome  Bcc: x@y.z\r\n"
                    "Message-ID: <01EV-0@mercato>\r\n"
                    "MIME-Version: 1.0\r\n"
                    "Content-Type: text/plain; charset=UTF-8\r\n"
                    "Content-Transfer-Encoding: 8bit\r\n"
                    "\r\n"
                    "Hello Ada,\r\n.\r\nbye\r\n");
    msgpack_sbuffer_clear(&m);
    mailer_message(&m, "noreply@mercato.test", MC_STR("a@b.c"), MC_STR("Grüße"), MC_STR("<x@y>"), MC_STR("t"),
                   1800000000000ull);
    snprintf(msg, sizeof msg, "%.*s", (int) m.size, m.data);
    MC_CHECK(strstr(msg, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n") != NULL);
    MC_CHECK(strstr(msg, "\r\n\r\nt\r\n") != NULL);
    msgpack_sbuffer_destroy(&m);
}

static void
test_the_same_event_gives_the_same_notification(void)
{
    //  on a fresh core, at the same clock
    char first[32], again[32];
    s_clock += 1000;
    s_event("01EVENT00000000000000000010-0", "order.expired", "01ORDER0000000000000000001", s_order_of_other, false);
    s_newest("id", first, sizeof first);
    mc_core_t *saved = s_core;
    char dir[64];
    s_core = mc_core_test_open(&notifications_service, dir, 1u << 24);
    MC_CHECK(s_core != NULL);
    s_event("01EVENT00000000000000000010-0", "order.expired", "01ORDER0000000000000000001", s_order_of_other, false);
    s_newest("id", again, sizeof again);
    ASSERT_STR(again, first);
    ASSERT_EQ(mc_core_test_close(&s_core, dir), 0);
    s_core = saved;
}

//  Only the event types its handler acts on are delivered by its Kafka consumer.
static void
test_wanted_events(void)
{
    MC_CHECK(notifications_service.wants_event(MC_STR("user.registered")));
    MC_CHECK(notifications_service.wants_event(MC_STR("order.created")));
    MC_CHECK(notifications_service.wants_event(MC_STR("payment.succeeded")));
    MC_CHECK(notifications_service.wants_event(MC_STR("payment.declined")));
    MC_CHECK(notifications_service.wants_event(MC_STR("order.shipped")));
    MC_CHECK(notifications_service.wants_event(MC_STR("order.cancelled")));
    MC_CHECK(notifications_service.wants_event(MC_STR("order.expired")));
    MC_CHECK(notifications_service.wants_event(MC_STR("inventory.low_stock")));
    MC_CHECK(!notifications_service.wants_event(MC_STR("inventory.reserved")));
    MC_CHECK(!notifications_service.wants_event(MC_STR("order.paid")));
    MC_CHECK(!notifications_service.wants_event(MC_STR("notification.test")));
    MC_CHECK(!notifications_service.wants_event(MC_STR("shipment.updated")));
}

int
main(void)
{
    //  one shard of everything unless a test says otherwise, whatever the environment says
    setenv("MERCATO_SHARDS", "1", 1);
    setenv("MERCATO_SMTP_RETRY_MS", "1000", 1);
    setenv("MERCATO_SMTP_ATTEMPTS", "4", 1);
    char dir[64];
    s_core = mc_core_test_open(&notifications_service, dir, 1u << 24);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_registration_mails_the_new_user_once);
    MC_TEST_RUN(test_order_mail_asks_identity_for_the_address);
    MC_TEST_RUN(test_failed_attempts_back_off_then_fail);
    MC_TEST_RUN(test_late_success_of_an_earlier_attempt_counts);
    MC_TEST_RUN(test_low_stock_mails_every_admin);
    MC_TEST_RUN(test_low_stock_asks_every_identity_shard);
    MC_TEST_RUN(test_other_events_are_ignored);
    MC_TEST_RUN(test_who_sees_what);
    MC_TEST_RUN(test_test_mail_is_for_admins);
    MC_TEST_RUN(test_each_event_renders_its_mail);
    MC_TEST_RUN(test_card_numbers_never_reach_a_mail);
    MC_TEST_RUN(test_card_number_in_free_text_is_masked);
    MC_TEST_RUN(test_mailer_message);
    MC_TEST_RUN(test_the_same_event_gives_the_same_notification);
    MC_TEST_RUN(test_wanted_events);
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
