#include "orders_db.h"

#include "mc_config.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    (void) data_dir;
    orders_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "orders", "orders_by_user", "orders_by_time", "expiry", "sagas", "settle",
                                          "paid_by", "pending" };
    MDB_dbi *const dbis[] = { &db->orders, &db->by_user, &db->by_time, &db->expiry, &db->sagas, &db->settle,
                              &db->paid_by, &db->pending };
    int rc = mc_store_dbis(store, names, dbis, 8);
    if (!rc)
        rc = mc_idem_open(store, &db->idem);
    MDB_txn *txn;
    if (!rc && !(rc = mc_store_begin(store, &txn))) {
        if ((rc = orders_pending_build(txn, db)))
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (rc) {
        free(db);
        return rc;
    }
    db->ttl_ms = (uint64_t) mc_config_env_long("MERCATO_RESERVATION_TTL_S", 900, 1, 30L * 24 * 3600) * 1000;
    db->max_pending = (size_t) mc_config_env_long("MERCATO_MAX_PENDING_ORDERS", 5, 1, 100000);
    *state = db;
    return 0;
}

static int
s_invalid(mc_ctx_t *ctx, const mc_errors_t *errs)
{
    mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "the request has invalid fields", errs);
    return 422;
}

//  order.create: checks what the schema cannot, then hands over to the saga; the caller waits
//  for its outcome.
static int
s_create(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    if (!req->user.len) {
        mc_reply_error(ctx->pk, req->id, 401, "authentication_required", "sign in to order", NULL);
        return 401;
    }
    if (req->id.len > 40) {
        //  the order id names the saga's requests in tags of at most 64 bytes
        mc_reply_error(ctx->pk, req->id, 400, "bad_envelope", "an order's message id has at most 40 characters", NULL);
        return 400;
    }
    char id[72];
    snprintf(id, sizeof id, "%.*s", (int) req->id.len, req->id.ptr);
    //  the same message again (a resend from the cart): its saga or its order answers
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, db, req->id, &u, &o);
    if (rc == 0) {
        mc_reply_begin(ctx->pk, req->id, 201, NULL);
        orders_pack(ctx->pk, &o);
    }
    msgpack_unpacked_destroy(&u);
    if (rc != MDB_NOTFOUND)
        return rc ? FAIL(rc) : 201;
    MDB_val k = { strlen(id), id }, v;
    if ((rc = mdb_get(ctx->txn, db->sagas, &k, &v)) != MDB_NOTFOUND) {
        if (rc)
            return FAIL(rc);
        mc_park(ctx, id, false);
        return MC_PARKED;
    }
    if (req->idem.len) {
        mc_idem_t rec;
        rc = mc_idem_check(ctx->txn, &db->idem, req, &rec);
        int status = 0;
        if (rc)
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
        if (status)
            return status;
    }
    //  one address, given one way; each product once (repeated lines add up)
    mc_errors_t errs = { 0 };
    bool by_id = mc_map_get(req->body, "shipping_address_id") != NULL;
    bool inline_ = mc_map_get(req->body, "shipping_address") != NULL;
    if (by_id == inline_)
        mc_errors_add(&errs, "shipping_address", "give either shipping_address_id or shipping_address");
    order_line_t lines[ORDER_LINES_MAX];
    size_t n = 0;
    order_line_t given[ORDER_LINES_MAX];
    size_t ng = orders_lines(mc_map_get(req->body, "items"), given);
    for (size_t i = 0; i < ng; i++) {
        size_t j = 0;
        while (j < n && !(lines[j].product.len == given[i].product.len
                          && memcmp(lines[j].product.ptr, given[i].product.ptr, given[i].product.len) == 0))
            j++;
        if (j == n)
            lines[n++] = given[i];
        else
            lines[j].quantity += given[i].quantity;
        if (lines[j].quantity > 1000) {
            char field[48];
            snprintf(field, sizeof field, "items[%zu].quantity", i);
            mc_errors_add(&errs, field, "adds up to more than 1000 of one product");
        }
    }
    if (errs.count)
        return s_invalid(ctx, &errs);
    //  after the replays above, which answer what was decided before, and before the key is
    //  taken: a refusal here is not an outcome to keep, the same request may pass later
    if ((rc = orders_pending_check(ctx)))
        return rc;
    if (req->idem.len && (rc = mc_idem_begin(ctx->txn, &db->idem, req, id)))
        return FAIL(rc);
    if ((rc = orders_saga_start(ctx, lines, n)))
        return FAIL(rc);
    mc_park(ctx, id, false);
    return MC_PARKED;
}

typedef struct {
    const char *from, *to;
} edge_t;

//  The state machine: every legal move, and nothing else.
static const edge_t s_moves[] = {
    { "pending_payment", "paid" }, { "pending_payment", "cancelled" }, { "pending_payment", "expired" },
    { "paid", "shipped" }, { "paid", "cancelled" },
    { "shipped", "delivered" }, { "shipped", "refunded" },
    { "delivered", "refunded" },
};

int
orders_transition(mc_ctx_t *ctx, const order_t *from, const char *to, msgpack_sbuffer *out)
{
    order_t m = *from, *o = &m;
    const orders_db_t *db = ctx->state;
    bool legal = false;
    for (size_t i = 0; i < sizeof s_moves / sizeof *s_moves && !legal; i++)
        legal = mc_str_eq(o->status, s_moves[i].from) && strcmp(to, s_moves[i].to) == 0;
    if (!legal)
        return 409;
    bool release = (mc_str_eq(o->status, "pending_payment") || mc_str_eq(o->status, "paid"))
                   && (strcmp(to, "cancelled") == 0 || strcmp(to, "expired") == 0);
    bool sell = strcmp(to, "shipped") == 0;
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    //  o's strings point into the record that orders_store rewrites: keep copies
    order_line_t lines[ORDER_LINES_MAX];
    char id[72], type[48];
    snprintf(id, sizeof id, "%.*s", (int) o->id.len, o->id.ptr);
    snprintf(type, sizeof type, "order.%s", to);
    o->status = (mc_str_t) { to, strlen(to) };
    o->updated_at = (mc_str_t) { now, strlen(now) };
    o->version++;
    msgpack_sbuffer copy;
    msgpack_sbuffer_init(&copy);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &copy, msgpack_sbuffer_write);
    orders_pack(&pk, o);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t c = *o;
    int rc = mc_msgpack_unpack(&u, copy.data, copy.size) ? MDB_CORRUPTED : 0;
    if (!rc) {
        c.items = mc_map_get(&u.data, "items");
        c.address = mc_map_get(&u.data, "shipping_address");
        mc_map_str(&u.data, "id", &c.id);
        mc_map_str(&u.data, "user_id", &c.user_id);
        mc_map_str(&u.data, "status", &c.status);
        mc_map_str(&u.data, "currency", &c.currency);
        mc_map_str(&u.data, "created_at", &c.created_at);
        mc_map_str(&u.data, "updated_at", &c.updated_at);
        mc_map_str(&u.data, "expires_at", &c.expires_at);
        c.notes = (mc_str_t) { "", 0 };
        mc_map_str(&u.data, "notes", &c.notes);
        rc = orders_store(ctx->txn, db, &c);
    }
    if (!rc)
        rc = orders_event(ctx, type, &c);
    size_t n = rc ? 0 : orders_lines(c.items, lines);
    if (!rc && (release || sell))
        rc = orders_settle(ctx, c.id, release ? 'x' : 's', lines, n);
    if (!rc && out)
        msgpack_sbuffer_write(out, copy.data, copy.size);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&copy);
    return rc;
}

static int
s_illegal(mc_ctx_t *ctx, const order_t *o, const char *to)
{
    char detail[160];
    snprintf(detail, sizeof detail, "an order that is %.*s cannot become %s", (int) o->status.len, o->status.ptr, to);
    mc_reply_error(ctx->pk, ctx->req->id, 409, "illegal_transition", detail, NULL);
    return 409;
}

//  Moves the order named by the key; the caller hears once its stock has followed (or after
//  SETTLE_ANSWER_MS, when inventory is slow).
static int
s_move(mc_ctx_t *ctx, const char *to)
{
    const orders_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, db, ctx->req->key, &u, &o);
    int status;
    char etag[32];
    snprintf(etag, sizeof etag, "\"o%" PRIu64 "\"", o.version);
    if (rc == MDB_NOTFOUND || (!rc && !orders_visible(ctx->req, &o))) {
        mc_reply_error(ctx->pk, ctx->req->id, 404, "order_not_found", "no such order", NULL);
        status = 404;
    }
    else
    if (rc)
        status = FAIL(rc);
    else
    if (ctx->req->if_match.len && !mc_str_eq(ctx->req->if_match, "*") && !mc_str_eq(ctx->req->if_match, etag)) {
        mc_reply_error(ctx->pk, ctx->req->id, 412, "precondition_failed",
                       "the order has changed since the ETag you sent", NULL);
        status = 412;
    }
    else {
        bool settles = strcmp(to, "cancelled") == 0 || strcmp(to, "shipped") == 0;
        msgpack_sbuffer body;
        msgpack_sbuffer_init(&body);
        rc = orders_transition(ctx, &o, to, &body);
        if (rc == 409)
            status = s_illegal(ctx, &o, to);
        else
        if (rc)
            status = FAIL(rc);
        else
        if (settles) {
            //  not o.id: o points into a record the transition may have overwritten in place
            char key[96];
            snprintf(key, sizeof key, "settle:%.*s", (int) ctx->req->key.len, ctx->req->key.ptr);
            mc_park(ctx, key, false);
            status = MC_PARKED;
        }
        else {
            snprintf(etag, sizeof etag, "\"o%" PRIu64 "\"", o.version + 1);
            mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
            msgpack_sbuffer_write(ctx->pk->data, body.data, body.size);
            status = 200;
        }
        msgpack_sbuffer_destroy(&body);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  order.pay: the payments service captured payment_id for the order's total. Only the order's
//  owner pays, and only before the reservation expires; the same payment again is answered as
//  before, so the payments service may resend until it hears.
static int
s_pay(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    mc_str_t payment = { "", 0 };
    int64_t amount = -1;
    mc_map_str(req->body, "payment_id", &payment);
    mc_map_int(req->body, "amount_cents", &amount);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, db, req->key, &u, &o);
    int status;
    MDB_val k = { req->key.len, (void *) req->key.ptr }, v;
    bool owner = !rc && req->user.len == o.user_id.len && memcmp(req->user.ptr, o.user_id.ptr, req->user.len) == 0;
    if (rc == MDB_NOTFOUND || (!rc && !owner)) {
        mc_reply_error(ctx->pk, req->id, 404, "order_not_found", "no such order", NULL);
        status = 404;
    }
    else
    if (rc || ((rc = mdb_get(ctx->txn, db->paid_by, &k, &v)) && rc != MDB_NOTFOUND))
        status = FAIL(rc);
    else
    if (rc == 0 && v.mv_size == payment.len && memcmp(v.mv_data, payment.ptr, payment.len) == 0) {
        mc_reply_begin(ctx->pk, req->id, 200, NULL);
        orders_pack(ctx->pk, &o);
        status = 200;
    }
    else
    if (rc == 0) {
        mc_reply_error(ctx->pk, req->id, 409, "already_paid", "the order has been paid already", NULL);
        status = 409;
    }
    else
    if (!mc_str_eq(o.status, "pending_payment"))
        status = s_illegal(ctx, &o, "paid");
    else
    if (req->time >= o.expires_ms) {
        mc_reply_error(ctx->pk, req->id, 409, "illegal_transition", "the order's reservation has expired", NULL);
        status = 409;
    }
    else
    if (amount != o.total_cents) {
        mc_reply_error(ctx->pk, req->id, 409, "amount_mismatch", "the payment's amount is not the order's total", NULL);
        status = 409;
    }
    else {
        msgpack_sbuffer body;
        msgpack_sbuffer_init(&body);
        MDB_val pv = { payment.len, (void *) payment.ptr };
        if ((rc = orders_transition(ctx, &o, "paid", &body)) || (rc = mdb_put(ctx->txn, db->paid_by, &k, &pv, 0)))
            status = FAIL(rc);
        else {
            mc_reply_begin(ctx->pk, req->id, 200, NULL);
            msgpack_sbuffer_write(ctx->pk->data, body.data, body.size);
            status = 200;
        }
        msgpack_sbuffer_destroy(&body);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  order.advance: the shipment moved, and the order follows. A resend of a move already made
//  (or overtaken: delivered when asked for shipped) is answered with the order as it is.
static int
s_advance(mc_ctx_t *ctx)
{
    if (!mc_str_eq(ctx->req->role, "system")) {
        mc_reply_error(ctx->pk, ctx->req->id, 403, "forbidden", "only the shipping service advances orders", NULL);
        return 403;
    }
    mc_str_t to = { "", 0 };
    mc_map_str(ctx->req->body, "status", &to);
    if (!mc_str_eq(to, "shipped") && !mc_str_eq(to, "delivered")) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "status", "must be shipped or delivered");
        return s_invalid(ctx, &errs);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, ctx->state, ctx->req->key, &u, &o);
    bool done = !rc && (mc_str_eq(o.status, "delivered") || (mc_str_eq(o.status, "shipped") && mc_str_eq(to, "shipped")));
    if (done) {
        char etag[32];
        snprintf(etag, sizeof etag, "\"o%" PRIu64 "\"", o.version);
        mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
        orders_pack(ctx->pk, &o);
    }
    msgpack_unpacked_destroy(&u);
    if (done)
        return 200;
    return s_move(ctx, mc_str_eq(to, "shipped") ? "shipped" : "delivered");
}

static int
s_cancel(mc_ctx_t *ctx)
{
    return s_move(ctx, "cancelled");
}

static int
s_status(mc_ctx_t *ctx)
{
    if (!mc_str_eq(ctx->req->role, "admin")) {
        mc_reply_error(ctx->pk, ctx->req->id, 403, "forbidden", "only an admin may set an order's status", NULL);
        return 403;
    }
    mc_str_t to = { "", 0 };
    mc_map_str(ctx->req->body, "status", &to);
    static const char *const statuses[] = { "pending_payment", "paid", "shipped", "delivered", "cancelled",
                                            "refunded" };
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        if (mc_str_eq(to, statuses[i]))
            return s_move(ctx, statuses[i]);
    //  expired is the clock's to set; anything else is not a status
    if (mc_str_eq(to, "expired")) {
        mc_reply_error(ctx->pk, ctx->req->id, 409, "illegal_transition", "only the reservation timer expires orders",
                       NULL);
        return 409;
    }
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, "status", "must be one of pending_payment, paid, shipped, delivered, cancelled, refunded");
    return s_invalid(ctx, &errs);
}

static const mc_handler_t s_handlers[] = {
    { "order.create", true, s_create },
    { "order.get", false, orders_get },
    { "order.list", false, orders_list },
    { "order.cancel", true, s_cancel },
    { "order.status", true, s_status },
    { "order.pay", true, s_pay },
    { "order.advance", true, s_advance },
    { "order.step", true, orders_step },
    { "order.tick", true, orders_tick },
};

const mc_service_t orders_service = {
    .name = "orders",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "order.step",
    .tick = "order.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
};
