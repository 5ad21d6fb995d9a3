/*  Driving the notifications actor by hand, for notifications_test.c: messages, Kafka events
    and the replies of identity and the mailer played to one core at a clock the tests move,
    and the payloads those carry. */
#ifndef NOTIFICATIONS_TEST_SUPPORT_H
#define NOTIFICATIONS_TEST_SUPPORT_H

#include "notifications.h"
#include "mc_core_test.h"
#include "mc_test.h"
#include "mc_util.h"

#include <string.h>

static mc_core_t *s_core;
static uint64_t s_clock = 1800000000000ull;
static const char *s_customer = "01CUSTOMER0000000000000001";
static const char *s_other = "01CUSTOMER0000000000000002";

//  Sends a message with role at the current clock (user is the customer unless given); the
//  reply (if any) lands in r.
static int
s_send(result_t *r, const char *type, const char *id, const char *role, const char *user, const msgpack_sbuffer *body)
{
    char mid[MC_ULID_LEN + 1];
    mc_ulid(mid, s_clock);
    if (!user)
        user = strcmp(role, "system") == 0 ? "" : s_customer;
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { mid, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = MC_STR(""), .role = { role, strlen(role) },
                         .user = { user, strlen(user) }, .time = s_clock };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

static void
s_call(const char *type, const char *role, const msgpack_sbuffer *body, int expect)
{
    result_t r;
    ASSERT_EQ(s_send(&r, type, NULL, role, NULL, body), expect);
    s_free(&r);
}

static void
s_tick(void)
{
    s_call("notification.tick", "system", NULL, 200);
}

//  The sends of the last message; the last one whose tag starts with prefix goes to *last.
static size_t
s_sends(const char *prefix, const mc_fx_t **last)
{
    size_t n, count = 0;
    mc_fx_t *const *fx = mc_core_effects(s_core, &n);
    for (size_t i = 0; i < n; i++)
        if (fx[i]->kind == MC_FX_SEND && strncmp(fx[i]->tag, prefix, strlen(prefix)) == 0) {
            count++;
            if (last)
                *last = fx[i];
        }
    return count;
}

//  A string of a send's body.
static void
s_send_field(const mc_fx_t *fx, const char *key, char *out, size_t outsz)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    mc_str_t v = { "", 0 };
    if (fx && mc_request_decode(&u, fx->data.data, fx->data.size, &req) == 0)
        mc_map_str(req.body, key, &v);
    snprintf(out, outsz, "%.*s", (int) v.len, v.ptr);
    msgpack_unpacked_destroy(&u);
}

//  An event of type with id, its data packed by fill.
static void
s_event(const char *event_id, const char *type, const char *key, void (*fill)(msgpack_packer *pk), bool duplicate)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "event_id", event_id);
    mc_pack_kv_cstr(&pk, "type", type);
    mc_pack_kv_cstr(&pk, "key", key);
    mc_pack_cstr(&pk, "data");
    fill(&pk);
    result_t r;
    ASSERT_EQ(s_send(&r, "notification.event", event_id, "system", NULL, &b), 200);
    bool dup = !duplicate;
    if (r.rep.body)
        mc_map_bool(r.rep.body, "duplicate", &dup);
    ASSERT_EQ(dup, duplicate);
    s_free(&r);
    msgpack_sbuffer_destroy(&b);
}

//  Plays a reply to the request tagged tag: status with a body (packed by fill) or an error.
static void
s_reply(const char *tag, int status, void (*fill)(msgpack_packer *pk), const char *error)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, fill || error ? 3 : 2);
    mc_pack_kv_cstr(&pk, "tag", tag);
    mc_pack_kv_int(&pk, "status", status);
    if (fill) {
        mc_pack_cstr(&pk, "body");
        fill(&pk);
    }
    else
    if (error) {
        mc_pack_cstr(&pk, "error");
        mc_pack_error(&pk, "smtp_failed", error, NULL);
    }
    s_call("notification.step", "system", &b, 200);
    msgpack_sbuffer_destroy(&b);
}

static void s_sent(msgpack_packer *pk) { msgpack_pack_map(pk, 1); mc_pack_kv_cstr(pk, "outcome", "sent"); }
static void s_logged(msgpack_packer *pk) { msgpack_pack_map(pk, 1); mc_pack_kv_cstr(pk, "outcome", "logged"); }

//  The notifications the caller sees (role admin or customer as user), newest first, as one
//  decoded page in r.
static int
s_list(result_t *r, const char *role, const char *user, int limit, const char *cursor)
{
    msgpack_sbuffer b;
    msgpack_sbuffer_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, cursor ? 2 : 1);
    mc_pack_kv_int(&pk, "limit", limit);
    if (cursor)
        mc_pack_kv_cstr(&pk, "cursor", cursor);
    int status = s_send(r, "notification.list", NULL, role, user, &b);
    msgpack_sbuffer_destroy(&b);
    return status;
}

//  The newest notification an admin sees: a string member of it into out.
static void
s_newest(const char *key, char *out, size_t outsz)
{
    result_t r;
    ASSERT_EQ(s_list(&r, "admin", "01ADMIN0000000000000000000", 1, NULL), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    mc_str_t v = { "", 0 };
    if (items && items->via.array.size)
        mc_map_str(&items->via.array.ptr[0], key, &v);
    snprintf(out, outsz, "%.*s", (int) v.len, v.ptr);
    s_free(&r);
}

static int64_t
s_newest_attempts(void)
{
    result_t r;
    ASSERT_EQ(s_list(&r, "admin", "01ADMIN0000000000000000000", 1, NULL), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    int64_t attempts = -1;
    if (items && items->via.array.size)
        mc_map_int(&items->via.array.ptr[0], "attempts", &attempts);
    s_free(&r);
    return attempts;
}

static size_t
s_count(const char *role, const char *user)
{
    result_t r;
    ASSERT_EQ(s_list(&r, role, user, 100, NULL), 200);
    const msgpack_object *items = mc_map_get(r.rep.body, "items");
    size_t n = items ? items->via.array.size : 0;
    s_free(&r);
    return n;
}

static void
s_registered(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 5);
    mc_pack_kv_cstr(pk, "user_id", s_customer);
    mc_pack_kv_cstr(pk, "email", "ada@example.test");
    mc_pack_kv_cstr(pk, "name", "Ada");
    mc_pack_kv_cstr(pk, "role", "customer");
    mc_pack_kv_cstr(pk, "created_at", "2027-01-15T08:00:00.000Z");
}

static void
s_order(msgpack_packer *pk, const char *user)
{
    msgpack_pack_map(pk, 7);
    mc_pack_kv_cstr(pk, "id", "01ORDER0000000000000000001");
    mc_pack_kv_cstr(pk, "user_id", user);
    mc_pack_kv_cstr(pk, "status", "pending_payment");
    mc_pack_kv_int(pk, "total_cents", 2250);
    mc_pack_kv_cstr(pk, "currency", "EUR");
    mc_pack_kv_cstr(pk, "expires_at", "2027-01-15T08:15:00.000Z");
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 4);
    mc_pack_kv_cstr(pk, "name", "First");
    mc_pack_kv_cstr(pk, "sku", "SKU-1");
    mc_pack_kv_int(pk, "quantity", 2);
    mc_pack_kv_int(pk, "line_total_cents", 2000);
    msgpack_pack_map(pk, 4);
    mc_pack_kv_cstr(pk, "name", "Second\r\nBcc: evil@example.test");
    mc_pack_kv_cstr(pk, "sku", "SKU-2");
    mc_pack_kv_int(pk, "quantity", 1);
    mc_pack_kv_int(pk, "line_total_cents", 250);
}

static void s_order_of_customer(msgpack_packer *pk) { s_order(pk, s_customer); }
static void s_order_of_other(msgpack_packer *pk) { s_order(pk, s_other); }

static void
s_contact(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    mc_pack_kv_cstr(pk, "id", s_customer);
    mc_pack_kv_cstr(pk, "email", "ada@example.test");
    mc_pack_kv_cstr(pk, "name", "Ada");
    mc_pack_kv_cstr(pk, "role", "customer");
}

static void
s_payment(msgpack_packer *pk, const char *status, const char *decline)
{
    msgpack_pack_map(pk, decline ? 10 : 9);
    mc_pack_kv_cstr(pk, "id", "01PAYMENT00000000000000001");
    mc_pack_kv_cstr(pk, "order_id", "01ORDER0000000000000000001");
    mc_pack_kv_cstr(pk, "user_id", s_customer);
    mc_pack_kv_cstr(pk, "status", status);
    mc_pack_kv_int(pk, "amount_cents", 1234);
    mc_pack_kv_cstr(pk, "currency", "USD");
    mc_pack_kv_cstr(pk, "card_brand", "visa");
    mc_pack_kv_cstr(pk, "card_last4", decline ? "0002" : "4242");
    //  never in a real event; here to show a mail would not carry it
    mc_pack_kv_cstr(pk, "card_number", "4242424242424242");
    if (decline)
        mc_pack_kv_cstr(pk, "decline_code", decline);
}

static void s_paid(msgpack_packer *pk) { s_payment(pk, "succeeded", NULL); }
static void s_declined(msgpack_packer *pk) { s_payment(pk, "declined", "insufficient_funds"); }

static void
s_low_stock(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 4);
    mc_pack_kv_cstr(pk, "product_id", "01PRODUCT00000000000000001");
    mc_pack_kv_int(pk, "on_hand", 15);
    mc_pack_kv_int(pk, "available", 9);
    mc_pack_kv_int(pk, "low_stock_threshold", 10);
}

static void
s_admins(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 2);
    const char *ids[] = { "01ADMIN0000000000000000001", "01ADMIN0000000000000000002" };
    const char *emails[] = { "root@example.test", "ops@example.test" };
    for (int i = 0; i < 2; i++) {
        msgpack_pack_map(pk, 3);
        mc_pack_kv_cstr(pk, "id", ids[i]);
        mc_pack_kv_cstr(pk, "email", emails[i]);
        mc_pack_kv_cstr(pk, "name", "Admin");
    }
}

static void
s_product(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    mc_pack_kv_cstr(pk, "id", "P1");
}

#endif
