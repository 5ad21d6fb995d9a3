#include "payments_db.h"

#include "mc_outbox.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  A payment as stored (strings point into its decoded record).
typedef struct {
    mc_str_t id, order_id, user_id, status, currency, brand, last4, decline, created_at;
    int64_t amount;
} payment_t;

static void
s_pack_payment(msgpack_packer *pk, const payment_t *p, const char *updated_at, const char *refunded_at)
{
    msgpack_pack_map(pk, 12);
    mc_pack_kv_str(pk, "id", p->id.ptr, p->id.len);
    mc_pack_kv_str(pk, "order_id", p->order_id.ptr, p->order_id.len);
    mc_pack_kv_str(pk, "user_id", p->user_id.ptr, p->user_id.len);
    mc_pack_kv_str(pk, "status", p->status.ptr, p->status.len);
    mc_pack_kv_int(pk, "amount_cents", p->amount);
    mc_pack_kv_str(pk, "currency", p->currency.ptr, p->currency.len);
    mc_pack_kv_str(pk, "card_brand", p->brand.ptr, p->brand.len);
    mc_pack_kv_str(pk, "card_last4", p->last4.ptr, p->last4.len);
    mc_pack_cstr(pk, "decline_code");
    p->decline.len ? mc_pack_str(pk, p->decline.ptr, p->decline.len) : msgpack_pack_nil(pk);
    mc_pack_kv_str(pk, "created_at", p->created_at.ptr, p->created_at.len);
    mc_pack_kv_cstr(pk, "updated_at", updated_at);
    mc_pack_cstr(pk, "refunded_at");
    refunded_at ? mc_pack_cstr(pk, refunded_at) : msgpack_pack_nil(pk);
}

//  Stores p (a new payment or a new status of one) and emits payment.<status> with it; packs
//  the payment into out.
static int
s_record(mc_ctx_t *ctx, const payment_t *p, bool fresh, const char *refunded_at, msgpack_sbuffer *out)
{
    const payments_db_t *db = ctx->state;
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    s_pack_payment(&pk, p, now, refunded_at);
    int rc = payments_put(ctx->txn, db->payments, p->id, out);
    if (!rc && fresh) {
        char key[160];
        MDB_val k = { mc_key_join(key, sizeof key, p->order_id.ptr, p->order_id.len, p->id.ptr, p->id.len), key },
                v = { 0, "" };
        rc = k.mv_size ? mdb_put(ctx->txn, db->by_order, &k, &v, 0) : MDB_BAD_VALSIZE;
    }
    char type[48];
    snprintf(type, sizeof type, "payment.%.*s", (int) p->status.len, p->status.ptr);
    if (!rc)
        rc = mc_outbox_append(ctx, "payment", p->id, type, (mc_str_t) { out->data, out->size });
    return rc;
}

//  Ends a pending payment: forgets it (and its hold on the order, unless it succeeded), stores
//  the outcome for its Idempotency-Key and answers the caller. raw is the body, or the error
//  map when error.
static int
s_finish(mc_ctx_t *ctx, const msgpack_object *pending, int status, bool error, const msgpack_sbuffer *raw)
{
    const payments_db_t *db = ctx->state;
    mc_str_t id = { "", 0 }, order = { "", 0 }, user = { "", 0 }, idem = { "", 0 };
    mc_map_str(pending, "id", &id);
    mc_map_str(pending, "order_id", &order);
    mc_map_str(pending, "user", &user);
    mc_map_str(pending, "idem", &idem);
    char pid[48];
    snprintf(pid, sizeof pid, "%.*s", (int) id.len, id.ptr);
    char lock[160];
    MDB_val k = { payments_lock(lock, sizeof lock, order, user), lock }, v;
    int rc = mdb_get(ctx->txn, db->orders, &k, &v);
    if (!rc && v.mv_size == id.len + 1 && ((const char *) v.mv_data)[0] == 'p'
    &&  memcmp((const char *) v.mv_data + 1, id.ptr, id.len) == 0)
        rc = mdb_del(ctx->txn, db->orders, &k, NULL);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    MDB_val pk = { strlen(pid), pid };
    if (!rc)
        rc = mdb_del(ctx->txn, db->pending, &pk, NULL);
    if (!rc && idem.len)
        rc = mc_idem_finish(ctx->txn, &db->idem, user, idem, status, error, raw->data, raw->size);
    if (!rc)
        mc_answer_raw(ctx, pid, status, error, raw->data, raw->size);
    return rc;
}

static int
s_fail(mc_ctx_t *ctx, const msgpack_object *pending, int status, const char *code, const char *detail)
{
    msgpack_sbuffer e;
    msgpack_sbuffer_init(&e);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &e, msgpack_sbuffer_write);
    mc_pack_error(&pk, code, detail, NULL);
    int rc = s_finish(ctx, pending, status, true, &e);
    msgpack_sbuffer_destroy(&e);
    return rc;
}

//  created (at least 32 bytes) receives the time the payment was asked for.
static payment_t
s_from_pending(const msgpack_object *pending, const char *status, char *created)
{
    uint64_t started = 0;
    mc_map_uint(pending, "started", &started);
    mc_rfc3339(created, 32, started);
    payment_t p = { .status = { status, strlen(status) }, .created_at = { created, strlen(created) } };
    mc_map_str(pending, "id", &p.id);
    mc_map_str(pending, "order_id", &p.order_id);
    mc_map_str(pending, "user", &p.user_id);
    mc_map_str(pending, "currency", &p.currency);
    mc_map_str(pending, "brand", &p.brand);
    mc_map_str(pending, "last4", &p.last4);
    mc_map_int(pending, "amount_cents", &p.amount);
    if (strcmp(status, "declined") == 0)
        mc_map_str(pending, "decline", &p.decline);
    return p;
}

//  The order as its owner sees it came back: decline, or go on to capture.
static int
s_quoted(mc_ctx_t *ctx, const msgpack_object *pending, const msgpack_object *order)
{
    const payments_db_t *db = ctx->state;
    mc_str_t user = { "", 0 }, owner = { "", 0 }, status = { "", 0 }, currency = { "USD", 3 }, decline = { "", 0 };
    int64_t total = -1;
    mc_map_str(pending, "user", &user);
    mc_map_str(pending, "decline", &decline);
    mc_map_str(order, "user_id", &owner);
    mc_map_str(order, "status", &status);
    mc_map_str(order, "currency", &currency);
    mc_map_int(order, "total_cents", &total);
    if (user.len != owner.len || memcmp(user.ptr, owner.ptr, user.len) != 0)
        return s_fail(ctx, pending, 404, "order_not_found", "no such order");
    if (mc_str_eq(status, "paid") || mc_str_eq(status, "shipped") || mc_str_eq(status, "delivered")
    ||  mc_str_eq(status, "refunded"))
        return s_fail(ctx, pending, 409, "already_paid", "the order has been paid already");
    if (!mc_str_eq(status, "pending_payment")) {
        char detail[120];
        snprintf(detail, sizeof detail, "an order that is %.*s cannot be paid", (int) status.len, status.ptr);
        return s_fail(ctx, pending, 409, "illegal_transition", detail);
    }
    //  the pending record, rewritten with the amount (and, to capture, the next stage)
    msgpack_sbuffer p;
    msgpack_sbuffer_init(&p);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &p, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, pending->via.map.size + 1);
    for (uint32_t i = 0; i < pending->via.map.size; i++) {
        const msgpack_object_kv *kv = &pending->via.map.ptr[i];
        msgpack_pack_object(&pk, kv->key);
        if (mc_str_eq((mc_str_t) { kv->key.via.str.ptr, kv->key.via.str.size }, "amount_cents"))
            msgpack_pack_int64(&pk, total);
        else
        if (mc_str_eq((mc_str_t) { kv->key.via.str.ptr, kv->key.via.str.size }, "stage"))
            mc_pack_cstr(&pk, "c");
        else
        if (mc_str_eq((mc_str_t) { kv->key.via.str.ptr, kv->key.via.str.size }, "sent"))
            msgpack_pack_uint64(&pk, ctx->req->time);
        else
            msgpack_pack_object(&pk, kv->val);
    }
    mc_pack_kv_str(&pk, "currency", currency.ptr, currency.len);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = mc_msgpack_unpack(&u, p.data, p.size) ? MDB_CORRUPTED : 0;
    char now[32];
    if (rc)
        ;
    else
    if (decline.len) {
        //  the gateway said no: the attempt is kept and listed, and the order stays unpaid
        payment_t pay = s_from_pending(&u.data, "declined", now);
        msgpack_sbuffer body, err;
        msgpack_sbuffer_init(&body);
        msgpack_sbuffer_init(&err);
        rc = s_record(ctx, &pay, true, NULL, &body);
        if (!rc) {
            msgpack_packer_init(&pk, &err, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 3);
            mc_pack_kv_str(&pk, "code", decline.ptr, decline.len);
            mc_pack_kv_cstr(&pk, "detail", mc_str_eq(decline, "insufficient_funds")
                                           ? "the card has insufficient funds" : "the card was declined");
            mc_pack_cstr(&pk, "members");
            //  the instance is the first request's, so that a replay is the same body
            mc_str_t corr = { "", 0 };
            mc_map_str(pending, "corr", &corr);
            char instance[200];
            snprintf(instance, sizeof instance, "urn:mercato:request:%.*s", (int) corr.len, corr.ptr);
            msgpack_pack_map(&pk, corr.len ? 3 : 2);
            mc_pack_kv_str(&pk, "payment_id", pay.id.ptr, pay.id.len);
            mc_pack_kv_str(&pk, "id", pay.id.ptr, pay.id.len);
            if (corr.len)
                mc_pack_kv_cstr(&pk, "instance", instance);
            rc = s_finish(ctx, &u.data, 402, true, &err);
        }
        msgpack_sbuffer_destroy(&body);
        msgpack_sbuffer_destroy(&err);
    }
    else {
        mc_str_t id = { "", 0 };
        mc_map_str(pending, "id", &id);
        if (!(rc = payments_put(ctx->txn, db->pending, id, &p)))
            payments_send_step(ctx, &u.data);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&p);
    return rc;
}

//  Refunds the order's successful payment, if it has one that is not refunded yet.
static int
s_refund(mc_ctx_t *ctx, mc_str_t order)
{
    const payments_db_t *db = ctx->state;
    //  by_order keys have at most 160 bytes (s_record): a longer order id has no payment
    char prefix[160], ids[16][48];
    size_t plen = mc_key_join(prefix, sizeof prefix, order.ptr, order.len, "", 0);
    if (!plen)
        return 0;
    size_t n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->by_order, &cur);
    if (rc)
        return rc;
    MDB_val k = { plen, prefix }, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < 16; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (k.mv_size - plen < sizeof ids[0])
            snprintf(ids[n++], sizeof ids[0], "%.*s", (int) (k.mv_size - plen), (const char *) k.mv_data + plen);
    }
    mdb_cursor_close(cur);
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        rc = payments_load(ctx->txn, db->payments, (mc_str_t) { ids[i], strlen(ids[i]) }, &u);
        payment_t p = { 0 };
        if (!rc && (mc_map_str(&u.data, "id", &p.id) || mc_map_str(&u.data, "order_id", &p.order_id)
                    || mc_map_str(&u.data, "user_id", &p.user_id) || mc_map_str(&u.data, "status", &p.status)
                    || mc_map_str(&u.data, "currency", &p.currency) || mc_map_str(&u.data, "card_brand", &p.brand)
                    || mc_map_str(&u.data, "card_last4", &p.last4) || mc_map_str(&u.data, "created_at", &p.created_at)
                    || mc_map_int(&u.data, "amount_cents", &p.amount)))
            rc = MDB_CORRUPTED;
        if (!rc && mc_str_eq(p.status, "succeeded")) {
            char now[32];
            mc_rfc3339(now, sizeof now, ctx->req->time);
            p.status = (mc_str_t) { "refunded", 8 };
            msgpack_sbuffer out;
            msgpack_sbuffer_init(&out);
            rc = s_record(ctx, &p, false, now, &out);
            msgpack_sbuffer_destroy(&out);
        }
        msgpack_unpacked_destroy(&u);
    }
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  order.pay answered 200: the payment succeeded.
static int
s_captured(mc_ctx_t *ctx, const msgpack_object *pending)
{
    const payments_db_t *db = ctx->state;
    char created[32];
    payment_t pay = s_from_pending(pending, "succeeded", created);
    char mark[72], lock[160];
    int ml = snprintf(mark, sizeof mark, "s%.*s", (int) pay.id.len, pay.id.ptr);
    MDB_val k = { payments_lock(lock, sizeof lock, pay.order_id, pay.user_id), lock }, mv = { (size_t) ml, mark }, v;
    MDB_val ck = { pay.order_id.len, (void *) pay.order_id.ptr };
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    int rc = s_record(ctx, &pay, true, NULL, &body);
    if (!rc)
        rc = mdb_put(ctx->txn, db->orders, &k, &mv, 0);
    if (!rc)
        rc = s_finish(ctx, pending, 201, false, &body);
    //  the order was cancelled before this capture was heard of: the refund it is owed
    if (!rc && (rc = mdb_get(ctx->txn, db->closed, &ck, &v)) == 0)
        rc = s_refund(ctx, pay.order_id);
    msgpack_sbuffer_destroy(&body);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  payment.step: a reply from the orders service, tagged "<payment id>:<q|c|l>".
int
payments_step(mc_ctx_t *ctx)
{
    const payments_db_t *db = ctx->state;
    mc_str_t tag = { "", 0 };
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    const msgpack_object *body = mc_map_get(ctx->req->body, "body");
    const msgpack_object *error = mc_map_get(ctx->req->body, "error");
    if (tag.len < 3 || tag.ptr[tag.len - 2] != ':')
        return mc_reply_empty(ctx, 200);
    char kind = tag.ptr[tag.len - 1];
    mc_str_t id = { tag.ptr, tag.len - 2 };
    if (kind == 'l') {
        char key[96];
        snprintf(key, sizeof key, "list:%.*s", (int) id.len, id.ptr);
        if (status == 200) {
            msgpack_packer *pk = mc_answer(ctx, key, 200);
            msgpack_pack_map(pk, 2);
            mc_pack_cstr(pk, "items");
            msgpack_pack_array(pk, 0);
            mc_pack_cstr(pk, "next_cursor");
            msgpack_pack_nil(pk);
        }
        else
        if (status >= 500)
            mc_answer_error(ctx, key, 503, "orders_unavailable", "the orders service did not answer", NULL);
        else
            mc_answer_error(ctx, key, 404, "order_not_found", "no such order", NULL);
        return mc_reply_empty(ctx, 200);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = payments_load(ctx->txn, db->pending, id, &u);
    mc_str_t stage = { "", 0 };
    if (!rc)
        mc_map_str(&u.data, "stage", &stage);
    //  a late or repeated reply, or a failure the tick will resend past
    if (rc || stage.len != 1 || stage.ptr[0] != kind || status >= 500) {
        msgpack_unpacked_destroy(&u);
        return rc && rc != MDB_NOTFOUND ? FAIL(rc) : mc_reply_empty(ctx, 200);
    }
    mc_str_t code = { "order_not_found", 15 }, detail = { "no such order", 13 };
    if (error) {
        mc_map_str(error, "code", &code);
        mc_map_str(error, "detail", &detail);
    }
    char c[64], d[200];
    snprintf(c, sizeof c, "%.*s", (int) code.len, code.ptr);
    snprintf(d, sizeof d, "%.*s", (int) detail.len, detail.ptr);
    if (kind == 'q')
        rc = status == 200 && body ? s_quoted(ctx, &u.data, body)
             : s_fail(ctx, &u.data, 404, "order_not_found", "no such order");
    else
        rc = status == 200 ? s_captured(ctx, &u.data) : s_fail(ctx, &u.data, status == 404 ? 404 : 409, c, d);
    msgpack_unpacked_destroy(&u);
    return rc ? FAIL(rc) : mc_reply_empty(ctx, 200);
}

//  payment.tick: resends unanswered steps; gives up reading an order that does not come.
int
payments_tick(mc_ctx_t *ctx)
{
    const payments_db_t *db = ctx->state;
    uint64_t now = ctx->req->time;
    char ids[64][48];
    size_t n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->pending, &cur);
    if (rc)
        return FAIL(rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < 64; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (k.mv_size < sizeof ids[0])
            snprintf(ids[n++], sizeof ids[0], "%.*s", (int) k.mv_size, (const char *) k.mv_data);
    mdb_cursor_close(cur);
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_str_t id = { ids[i], strlen(ids[i]) }, stage = { "", 0 };
        uint64_t started = 0, sent = 0;
        if (!(rc = payments_load(ctx->txn, db->pending, id, &u))) {
            mc_map_str(&u.data, "stage", &stage);
            mc_map_uint(&u.data, "started", &started);
            mc_map_uint(&u.data, "sent", &sent);
            if (mc_str_eq(stage, "q") && now >= started + QUOTE_TIMEOUT_MS)
                rc = s_fail(ctx, &u.data, 503, "orders_unavailable", "the order could not be read; try again");
            else
            if (now >= sent + RESEND_MS) {
                msgpack_sbuffer p;
                msgpack_sbuffer_init(&p);
                msgpack_packer pk;
                msgpack_packer_init(&pk, &p, msgpack_sbuffer_write);
                msgpack_pack_map(&pk, u.data.via.map.size);
                for (uint32_t j = 0; j < u.data.via.map.size; j++) {
                    const msgpack_object_kv *kv = &u.data.via.map.ptr[j];
                    msgpack_pack_object(&pk, kv->key);
                    if (mc_str_eq((mc_str_t) { kv->key.via.str.ptr, kv->key.via.str.size }, "sent"))
                        msgpack_pack_uint64(&pk, now);
                    else
                        msgpack_pack_object(&pk, kv->val);
                }
                rc = payments_put(ctx->txn, db->pending, id, &p);
                if (!rc)
                    payments_send_step(ctx, &u.data);
                msgpack_sbuffer_destroy(&p);
            }
        }
        msgpack_unpacked_destroy(&u);
    }
    if (!rc)
        rc = mc_idem_prune(ctx->txn, &db->idem, now, 16);
    return rc ? FAIL(rc) : mc_reply_empty(ctx, 200);
}

//  payment.event: order events from Kafka. A paid order that is cancelled, or a shipped one
//  that is refunded, gets its money back; each event applies once.
int
payments_event(mc_ctx_t *ctx)
{
    const payments_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t event_id = { "", 0 }, type = { "", 0 }, order = { "", 0 };
    mc_map_str(b, "event_id", &event_id);
    mc_map_str(b, "type", &type);
    mc_map_str(b, "key", &order);
    int rc = mc_store_once(ctx->txn, db->processed, event_id.ptr, event_id.len);
    if (rc == MDB_KEYEXIST)
        return mc_reply_empty(ctx, 200);
    if (!rc && (mc_str_eq(type, "order.cancelled") || mc_str_eq(type, "order.refunded")) && order.len) {
        MDB_val ok = { order.len, (void *) order.ptr }, empty = { 0, "" };
        if (!(rc = mdb_put(ctx->txn, db->closed, &ok, &empty, 0)))
            rc = s_refund(ctx, order);
    }
    return rc ? FAIL(rc) : mc_reply_empty(ctx, 200);
}
