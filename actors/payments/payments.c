#include "payments_db.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    (void) data_dir;
    payments_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "payments", "payments_by_order", "pending", "order_payments", "closed_orders",
                                         "processed" };
    MDB_dbi *const dbis[] = { &db->payments, &db->by_order, &db->pending, &db->orders, &db->closed,
                              &db->processed };
    int rc = mc_store_dbis(store, names, dbis, 6);
    if (!rc)
        rc = mc_idem_open(store, &db->idem);
    if (rc) {
        free(db);
        return rc;
    }
    *state = db;
    return 0;
}

int
payments_load(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, msgpack_unpacked *u)
{
    MDB_val k = { key.len, (void *) key.ptr }, v;
    int rc = key.len ? mdb_get(txn, dbi, &k, &v) : MDB_NOTFOUND;
    if (!rc && mc_msgpack_unpack(u, v.mv_data, v.mv_size))
        rc = MDB_CORRUPTED;
    return rc;
}

size_t
payments_lock(char *out, size_t size, mc_str_t order, mc_str_t user)
{
    int n = snprintf(out, size, "%.*s%c%.*s", (int) order.len, order.ptr, 0, (int) user.len, user.ptr);
    return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

int
payments_put(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, const msgpack_sbuffer *map)
{
    MDB_val k = { key.len, (void *) key.ptr }, v = { map->size, map->data };
    return mdb_put(txn, dbi, &k, &v, 0);
}

void
payments_send_step(mc_ctx_t *ctx, const msgpack_object *pending)
{
    mc_str_t id = { "", 0 }, order = { "", 0 }, user = { "", 0 }, role = { "", 0 }, stage = { "", 0 };
    int64_t amount = 0;
    mc_map_str(pending, "id", &id);
    mc_map_str(pending, "order_id", &order);
    mc_map_str(pending, "user", &user);
    mc_map_str(pending, "role", &role);
    mc_map_str(pending, "stage", &stage);
    mc_map_int(pending, "amount_cents", &amount);
    bool capture = mc_str_eq(stage, "c");
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, capture ? 2 : 0);
    if (capture) {
        mc_pack_kv_str(&pk, "payment_id", id.ptr, id.len);
        mc_pack_kv_int(&pk, "amount_cents", amount);
    }
    //  the same message id on every resend; tags name the payment and the step
    char mid[64], tag[MC_REQUEST_ID_MAX + 1];
    snprintf(mid, sizeof mid, "%.*s-%c", (int) id.len, id.ptr, capture ? 'c' : 'q');
    snprintf(tag, sizeof tag, "%.*s:%c", (int) id.len, id.ptr, capture ? 'c' : 'q');
    mc_send_t send = { .service = "orders", .shard = mc_shard_of("orders", order.ptr, order.len),
                       .type = capture ? "order.pay" : "order.get", .id = { mid, strlen(mid) }, .key = order,
                       .user = user, .role = role, .body = &body, .tag = tag };
    mc_send(ctx, &send);
    msgpack_sbuffer_destroy(&body);
}

//  The card as the edge read it (edge/edge_card.h); strings are copies.
typedef struct {
    char brand[16];
    char last4[5];
    const char *decline;    //  NULL: approved; else "card_declined" or "insufficient_funds"
} card_t;

//  Reads the message's card. The edge answers 422 for a card that fails a check before any
//  message leaves, so a card that is not Luhn-valid with a well-formed CVC, or whose outcome
//  the gateway never gives, was not sent by our edge; it is refused all the same. 0, or -1
//  with the complaints in errs.
static int
s_card(const msgpack_object *c, card_t *out, mc_errors_t *errs)
{
    int before = errs->count;
    mc_str_t brand = { "", 0 }, last4 = { "", 0 }, outcome = { "", 0 };
    bool luhn = false, cvc_ok = false;
    mc_map_str(c, "brand", &brand);
    mc_map_str(c, "last4", &last4);
    mc_map_str(c, "outcome", &outcome);
    mc_map_bool(c, "luhn", &luhn);
    mc_map_bool(c, "cvc_ok", &cvc_ok);
    if (!luhn)
        mc_errors_add(errs, "card.luhn", "must be true: the number failed the Luhn check");
    if (!cvc_ok)
        mc_errors_add(errs, "card.cvc_ok", "must be true: the CVC was not 3 or 4 digits");
    bool digits = last4.len == 4;
    for (size_t i = 0; i < last4.len && digits; i++)
        digits = last4.ptr[i] >= '0' && last4.ptr[i] <= '9';
    if (!digits)
        mc_errors_add(errs, "card.last4", "must be 4 digits");
    static const char *const declines[] = { "card_declined", "insufficient_funds" };
    out->decline = NULL;
    for (size_t i = 0; i < sizeof declines / sizeof *declines; i++)
        if (mc_str_eq(outcome, declines[i]))
            out->decline = declines[i];
    if (!out->decline && !mc_str_eq(outcome, "approved"))
        mc_errors_add(errs, "card.outcome", "must be approved, card_declined or insufficient_funds");
    snprintf(out->brand, sizeof out->brand, "%.*s", (int) brand.len, brand.ptr);
    snprintf(out->last4, sizeof out->last4, "%.*s", (int) last4.len, last4.ptr);
    return errs->count == before ? 0 : -1;
}

//  What the idempotency record hashes: the request as far as it may be kept. Two requests that
//  differ only in card digits other than the last 4 count as the same one; a hash of the whole
//  number would let anyone with the file recover it (a card number has few unknown digits).
static void
s_fingerprint(const mc_request_t *req, const card_t *card, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    mc_str_t order = { "", 0 };
    int64_t month = 0, year = 0;
    const msgpack_object *c = mc_map_get(req->body, "card");
    mc_map_str(req->body, "order_id", &order);
    mc_map_int(c, "exp_month", &month);
    mc_map_int(c, "exp_year", &year);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_str(&pk, "order_id", order.ptr, order.len);
    mc_pack_kv_cstr(&pk, "card_brand", card->brand);
    mc_pack_kv_cstr(&pk, "card_last4", card->last4);
    mc_pack_kv_int(&pk, "exp_month", month);
    mc_pack_kv_int(&pk, "exp_year", year);
}

//  payment.create: takes the card as the edge read it, then reads the order on the payer's
//  behalf; the caller waits for the outcome (payments_flow.c).
static int
s_create(mc_ctx_t *ctx)
{
    const payments_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    if (!req->user.len) {
        mc_reply_error(ctx->pk, req->id, 401, "authentication_required", "sign in to pay", NULL);
        return 401;
    }
    if (req->id.len > 40) {
        mc_reply_error(ctx->pk, req->id, 400, "bad_envelope", "a payment's message id has at most 40 characters", NULL);
        return 400;
    }
    card_t card;
    mc_errors_t errs = { 0 };
    if (s_card(mc_map_get(req->body, "card"), &card, &errs)) {
        mc_reply_error(ctx->pk, req->id, 422, "validation_failed", "the card is not valid", &errs);
        return 422;
    }
    mc_str_t order = { "", 0 };
    mc_map_str(req->body, "order_id", &order);
    //  the payment lives with its order's payments, where GET /api/v1/payments/{id} routes its id
    char pid[48];
    if (mc_shard_ulid(pid, req->id, "payments", mc_shard_of("payments", order.ptr, order.len)))
        snprintf(pid, sizeof pid, "%.*s", (int) req->id.len, req->id.ptr);
    msgpack_sbuffer fp;
    msgpack_sbuffer_init(&fp);
    s_fingerprint(req, &card, &fp);
    msgpack_unpacked fu;
    msgpack_unpacked_init(&fu);
    mc_request_t kept = *req;
    int rc = mc_msgpack_unpack(&fu, fp.data, fp.size) ? MDB_CORRUPTED : 0;
    kept.body = &fu.data;
    int status = rc ? FAIL(rc) : 0;
    if (!status && req->idem.len) {
        mc_idem_t rec;
        if ((rc = mc_idem_check(ctx->txn, &db->idem, &kept, &rec)))
            status = FAIL(rc);
        else
        if (rec.state == MC_IDEM_DONE)
            status = mc_idem_replay(ctx, &rec);
        else
        if (rec.state == MC_IDEM_MISMATCH)
            status = mc_idem_mismatch(ctx);
        else
        if (rec.state == MC_IDEM_PENDING) {
            mc_park(ctx, rec.ref, true);
            status = MC_PARKED;
        }
        msgpack_sbuffer_destroy(&rec.raw);
    }
    //  one payment of an order at a time, and one that succeeds; held per payer, so that what
    //  someone else's attempts hold never shows (theirs end in 404)
    char lock[160];
    MDB_val ok = { payments_lock(lock, sizeof lock, order, req->user), lock }, ov;
    if (!status && (rc = mdb_get(ctx->txn, db->orders, &ok, &ov)) != MDB_NOTFOUND) {
        if (rc)
            status = FAIL(rc);
        else
        if (ov.mv_size && ((const char *) ov.mv_data)[0] == 's') {
            mc_reply_error(ctx->pk, req->id, 409, "already_paid", "the order has been paid already", NULL);
            status = 409;
        }
        else {
            mc_reply_error(ctx->pk, req->id, 409, "payment_in_progress", "another payment of this order is in progress",
                           NULL);
            status = 409;
        }
    }
    if (!status) {
        msgpack_sbuffer p;
        msgpack_sbuffer_init(&p);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &p, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 13);
        mc_pack_kv_str(&pk, "corr", req->corr.ptr, req->corr.len);
        mc_pack_kv_cstr(&pk, "id", pid);
        mc_pack_kv_str(&pk, "order_id", order.ptr, order.len);
        mc_pack_kv_str(&pk, "user", req->user.ptr, req->user.len);
        mc_pack_kv_str(&pk, "role", req->role.ptr, req->role.len);
        mc_pack_kv_str(&pk, "idem", req->idem.ptr, req->idem.len);
        mc_pack_kv_cstr(&pk, "stage", "q");
        mc_pack_kv_cstr(&pk, "decline", card.decline ? card.decline : "");
        mc_pack_kv_cstr(&pk, "brand", card.brand);
        mc_pack_kv_cstr(&pk, "last4", card.last4);
        mc_pack_kv_int(&pk, "amount_cents", 0);
        mc_pack_kv_uint(&pk, "started", req->time);
        mc_pack_kv_uint(&pk, "sent", req->time);
        char mark[64];
        int ml = snprintf(mark, sizeof mark, "p%s", pid);
        MDB_val mv = { (size_t) ml, mark };
        msgpack_unpacked pu;
        msgpack_unpacked_init(&pu);
        if ((rc = payments_put(ctx->txn, db->pending, (mc_str_t) { pid, strlen(pid) }, &p))
        ||  (rc = mdb_put(ctx->txn, db->orders, &ok, &mv, 0))
        ||  (req->idem.len && (rc = mc_idem_begin(ctx->txn, &db->idem, &kept, pid)))
        ||  (rc = mc_msgpack_unpack(&pu, p.data, p.size) ? MDB_CORRUPTED : 0))
            status = FAIL(rc);
        else {
            payments_send_step(ctx, &pu.data);
            mc_park(ctx, pid, false);
            status = MC_PARKED;
        }
        msgpack_unpacked_destroy(&pu);
        msgpack_sbuffer_destroy(&p);
    }
    msgpack_unpacked_destroy(&fu);
    msgpack_sbuffer_destroy(&fp);
    return status;
}

static bool
s_visible(const mc_request_t *req, const msgpack_object *payment)
{
    mc_str_t user = { "", 0 };
    mc_map_str(payment, "user_id", &user);
    return mc_str_eq(req->role, "admin") || mc_str_eq(req->role, "system")
           || (req->user.len && req->user.len == user.len && memcmp(req->user.ptr, user.ptr, user.len) == 0);
}

static int
s_get(mc_ctx_t *ctx)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const payments_db_t *db = ctx->state;
    int rc = payments_load(ctx->txn, db->payments, ctx->req->key, &u);
    int status;
    if (rc == MDB_NOTFOUND || (!rc && !s_visible(ctx->req, &u.data))) {
        mc_reply_error(ctx->pk, ctx->req->id, 404, "payment_not_found", "no such payment", NULL);
        status = 404;
    }
    else
    if (rc)
        status = FAIL(rc);
    else {
        MDB_val k = { ctx->req->key.len, (void *) ctx->req->key.ptr }, v;
        char etag[32] = "";
        if (mdb_get(ctx->txn, db->payments, &k, &v) == 0)
            snprintf(etag, sizeof etag, "\"p%08x\"", mc_fnv1a32(v.mv_data, v.mv_size));
        mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
        msgpack_pack_object(ctx->pk, u.data);
        status = 200;
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  payment.list: an order's payments, oldest first, declines included. An order with no
//  payments is asked after, so that someone else's order stays a 404.
static int
s_list(mc_ctx_t *ctx)
{
    const payments_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    int64_t limit = 20;
    mc_map_int(req->body, "limit", &limit);
    mc_str_t cursor = { "", 0 };
    mc_map_str(req->body, "cursor", &cursor);
    char after[72] = "";
    long alen = 0;
    if (cursor.len && (alen = mc_b64url_decode(after, sizeof after - 1, cursor.ptr, cursor.len)) <= 0) {
        mc_reply_error(ctx->pk, req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
        return 400;
    }
    //  the whole key, never a truncated one that another order's could start with
    char prefix[MC_ENV_KEY_MAX + 1];
    size_t plen = mc_key_join(prefix, sizeof prefix, req->key.ptr, req->key.len, "", 0);
    if (!plen) {
        mc_reply_error(ctx->pk, req->id, 404, "order_not_found", "no such order", NULL);
        return 404;
    }
    char start[sizeof prefix + sizeof after];
    memcpy(start, prefix, plen);
    memcpy(start + plen, after, (size_t) alen);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->by_order, &cur);
    if (rc)
        return FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &items, msgpack_sbuffer_write);
    //  strictly after the cursor: the cursor's own key plus a zero byte is the next one possible
    start[plen + (size_t) alen] = 0;
    MDB_val k = { plen + (size_t) alen + (alen ? 1 : 0), start }, v;
    size_t n = 0, hidden = 0;
    char last[72] = "";
    bool more = false;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        mc_str_t pid = { (const char *) k.mv_data + plen, k.mv_size - plen };
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (payments_load(ctx->txn, db->payments, pid, &u) == 0) {
            if (!s_visible(req, &u.data))
                hidden++;
            else
            if ((int64_t) n == limit)
                more = true;
            else {
                msgpack_pack_object(&pk, u.data);
                n++;
                snprintf(last, sizeof last, "%.*s", (int) pid.len, pid.ptr);
            }
        }
        msgpack_unpacked_destroy(&u);
        if (more)
            break;
    }
    mdb_cursor_close(cur);
    int status;
    if (rc && rc != MDB_NOTFOUND && !more)
        status = FAIL(rc);
    else
    if (n || more || alen) {
        mc_reply_page(ctx->pk, req->id, &items, n, more ? last : NULL, strlen(last));
        status = 200;
    }
    else
    if (hidden) {
        mc_reply_error(ctx->pk, req->id, 404, "order_not_found", "no such order", NULL);
        status = 404;
    }
    else {
        //  no payments yet: whether the order is the caller's is the orders service's to say
        char tag[MC_REQUEST_ID_MAX + 1], key[96], mid[64];
        snprintf(tag, sizeof tag, "%.*s:l", (int) (req->id.len < 40 ? req->id.len : 40), req->id.ptr);
        snprintf(key, sizeof key, "list:%.*s", (int) (req->id.len < 40 ? req->id.len : 40), req->id.ptr);
        snprintf(mid, sizeof mid, "%.*s-l", (int) (req->id.len < 40 ? req->id.len : 40), req->id.ptr);
        msgpack_sbuffer empty;
        msgpack_sbuffer_init(&empty);
        msgpack_packer epk;
        msgpack_packer_init(&epk, &empty, msgpack_sbuffer_write);
        msgpack_pack_map(&epk, 0);
        mc_send_t send = { .service = "orders", .shard = mc_shard_of("orders", req->key.ptr, req->key.len),
                           .type = "order.get", .id = { mid, strlen(mid) }, .key = req->key, .user = req->user,
                           .role = req->role, .body = &empty, .tag = tag };
        mc_send(ctx, &send);
        msgpack_sbuffer_destroy(&empty);
        mc_park(ctx, key, false);
        status = MC_PARKED;
    }
    msgpack_sbuffer_destroy(&items);
    return status;
}

static const mc_handler_t s_handlers[] = {
    { "payment.create", true, s_create },
    { "payment.get", false, s_get },
    { "payment.list", false, s_list },
    { "payment.event", true, payments_event },
    { "payment.step", true, payments_step },
    { "payment.tick", true, payments_tick },
};

//  payment.event acts on the events that give money back
static bool
s_wants_event(mc_str_t type)
{
    return mc_str_eq(type, "order.cancelled") || mc_str_eq(type, "order.refunded");
}

const mc_service_t payments_service = {
    .name = "payments",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "payment.step",
    .tick = "payment.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
    .wants_event = s_wants_event,
};
