/*  An admin's move of a shipment, which the order must follow.

    shipment.advance checks the move against the shipment, records it in `moves` and, once that
    commits, sends order.advance to the order's shard; the admin waits. The order's reply comes
    back as shipment.step: a 200 applies the move (history entry, shipment.updated) and answers
    with the shipment; a refusal drops the move and passes the order's answer on (409
    illegal_transition when the order has moved elsewhere, cancelled for one). shipment.tick
    sends order.advance again while it is unanswered, which is safe because the order answers
    200 to a move it has already made, and gives up after MOVE_TIMEOUT_MS with 503, leaving the
    shipment as it was: asking again later then brings the shipment to where the order is. The
    move keeps the admin's correlation id and trace, so that the resends and shipment.updated
    continue the admin's request rather than the runtime's step or tick. */
#include "shipping_db.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  An order.advance not answered within this long is sent again.
#define RESEND_MS 1000
//  A move whose order has not answered within this long is dropped, and its caller hears 503.
#define MOVE_TIMEOUT_MS 15000
#define TICK_MAX 128

//  The one way forward: from each status one move, and the order's status that goes with it.
static const struct {
    const char *from, *to, *order;
    char kind;                  //  names the move in its order.advance's id and tag
} s_moves[] = {
    { "scheduled", "in_transit", "shipped", 't' },
    { "in_transit", "delivered", "delivered", 'd' },
};
#define MOVES (sizeof s_moves / sizeof *s_moves)

//  What the admin who asked for a move of the order's shipment waits on.
static void
s_waitkey(char key[96], mc_str_t order_id)
{
    snprintf(key, 96, "ship:%.*s", (int) order_id.len, order_id.ptr);
}

//  A move waiting for the order to follow, as `moves` keeps it.
typedef struct {
    size_t m;                   //  its entry in s_moves
    uint64_t at;                //  when it was asked for
    uint64_t sent;              //  when order.advance last left
    char corr[72], trace[72];   //  of the request that asked for it, which its event continues
} move_t;

static int
s_move_store(mc_ctx_t *ctx, mc_str_t order_id, const move_t *mv)
{
    const shipping_db_t *db = ctx->state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "to", s_moves[mv->m].to);
    mc_pack_kv_uint(&pk, "at", mv->at);
    mc_pack_kv_uint(&pk, "sent", mv->sent);
    mc_pack_kv_cstr(&pk, "corr", mv->corr);
    mc_pack_kv_cstr(&pk, "trace", mv->trace);
    MDB_val k = { order_id.len, (void *) order_id.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(ctx->txn, db->moves, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

//  The move waiting on an order: 0, MDB_NOTFOUND or an LMDB error.
static int
s_move_load(MDB_txn *txn, const shipping_db_t *db, mc_str_t order_id, move_t *mv)
{
    MDB_val k = { order_id.len, (void *) order_id.ptr }, v;
    int rc = mdb_get(txn, db->moves, &k, &v);
    if (rc)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_str_t to = { "", 0 }, corr = { "", 0 }, trace = { "", 0 };
    if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) || mc_map_str(&u.data, "to", &to)
    ||  mc_map_uint(&u.data, "at", &mv->at) || mc_map_uint(&u.data, "sent", &mv->sent)
    ||  mc_map_str(&u.data, "corr", &corr) || mc_map_str(&u.data, "trace", &trace)
    ||  corr.len >= sizeof mv->corr || trace.len >= sizeof mv->trace)
        rc = MDB_CORRUPTED;
    else {
        snprintf(mv->corr, sizeof mv->corr, "%.*s", (int) corr.len, corr.ptr);
        snprintf(mv->trace, sizeof mv->trace, "%.*s", (int) trace.len, trace.ptr);
    }
    for (mv->m = 0; !rc && mv->m < MOVES && !mc_str_eq(to, s_moves[mv->m].to); mv->m++)
        ;
    msgpack_unpacked_destroy(&u);
    return rc ? rc : mv->m < MOVES ? 0 : MDB_CORRUPTED;
}

static int
s_move_delete(MDB_txn *txn, const shipping_db_t *db, mc_str_t order_id)
{
    MDB_val k = { order_id.len, (void *) order_id.ptr };
    return mdb_del(txn, db->moves, &k, NULL);
}

//  Makes ctx's message continue the chain of the request that asked for mv: what it sends and
//  emits carries that request's correlation and trace, not the runtime's own empty ones. req
//  receives the copy; returns the message to put back.
static const mc_request_t *
s_continue(mc_ctx_t *ctx, const move_t *mv, mc_request_t *req)
{
    const mc_request_t *own = ctx->req;
    *req = *own;
    req->corr = (mc_str_t) { mv->corr, strlen(mv->corr) };
    req->trace = (mc_str_t) { mv->trace, strlen(mv->trace) };
    ctx->req = req;
    return own;
}

//  Sends (again) the order.advance of mv; its id is the same on every resend.
static void
s_ask_order(mc_ctx_t *ctx, mc_str_t order_id, const move_t *mv)
{
    size_t m = mv->m;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "status", s_moves[m].order);
    char id[72], tag[MC_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s-s%c", (int) order_id.len, order_id.ptr, s_moves[m].kind);
    snprintf(tag, sizeof tag, "%.*s:%c", (int) order_id.len, order_id.ptr, s_moves[m].kind);
    mc_send_t send = { .service = "orders", .shard = mc_shard_of("orders", order_id.ptr, order_id.len),
                       .type = "order.advance", .id = { id, strlen(id) }, .key = order_id, .user = MC_STR(""),
                       .role = MC_STR("system"), .body = &sb, .tag = tag };
    mc_request_t req;
    const mc_request_t *own = s_continue(ctx, mv, &req);
    mc_send(ctx, &send);
    ctx->req = own;
    msgpack_sbuffer_destroy(&sb);
}

static int
s_reply_illegal(mc_ctx_t *ctx, mc_str_t from, mc_str_t to)
{
    char detail[160];
    snprintf(detail, sizeof detail, "a shipment that is %.*s cannot become %.*s", (int) from.len, from.ptr,
             (int) to.len, to.ptr);
    mc_reply_error(ctx->pk, ctx->req->id, 409, "illegal_transition", detail, NULL);
    return 409;
}

int
shipping_advance(mc_ctx_t *ctx)
{
    const shipping_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    if (!mc_str_eq(req->role, "admin")) {
        mc_reply_error(ctx->pk, req->id, 403, "forbidden", "only an admin may move a shipment", NULL);
        return 403;
    }
    mc_str_t to = { "", 0 };
    mc_map_str(req->body, "status", &to);
    if (!mc_str_eq(to, "in_transit") && !mc_str_eq(to, "delivered")) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "status", "must be in_transit or delivered");
        mc_reply_error(ctx->pk, req->id, 422, "validation_failed", "the request has invalid fields", &errs);
        return 422;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    shipment_t s;
    int rc = shipping_load(ctx->txn, db, req->key, &u, &s);
    size_t m = 0;
    while (!rc && m < MOVES && !(mc_str_eq(s.status, s_moves[m].from) && mc_str_eq(to, s_moves[m].to)))
        m++;
    int status;
    if (rc == MDB_NOTFOUND) {
        mc_reply_error(ctx->pk, req->id, 404, "shipment_not_found", "no shipment for this order", NULL);
        status = 404;
    }
    else
    if (rc)
        status = FAIL(rc);
    else
    if (m == MOVES)
        status = s_reply_illegal(ctx, s.status, to);
    else {
        //  a move already waiting for the order is this one (each status has one way forward):
        //  this caller waits for the same outcome
        MDB_val k = { req->key.len, (void *) req->key.ptr }, v;
        rc = mdb_get(ctx->txn, db->moves, &k, &v);
        move_t mv = { .m = m, .at = req->time, .sent = req->time };
        snprintf(mv.corr, sizeof mv.corr, "%.*s", (int) req->corr.len, req->corr.ptr);
        snprintf(mv.trace, sizeof mv.trace, "%.*s", (int) req->trace.len, req->trace.ptr);
        if (rc == MDB_NOTFOUND && !(rc = s_move_store(ctx, req->key, &mv)))
            s_ask_order(ctx, req->key, &mv);
        if (rc)
            status = FAIL(rc);
        else {
            char key[96];
            s_waitkey(key, req->key);
            mc_park(ctx, key, false);
            status = MC_PARKED;
        }
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  The order answered move `kind` with status: apply the move, or drop it.
static int
s_answered(mc_ctx_t *ctx, mc_str_t order_id, char kind, int status, const msgpack_object *error)
{
    const shipping_db_t *db = ctx->state;
    move_t mv;
    int rc = s_move_load(ctx->txn, db, order_id, &mv);
    //  a late reply to a move that has ended; a 5xx is no answer: the tick asks again
    if (rc == MDB_NOTFOUND || (!rc && (s_moves[mv.m].kind != kind || status >= 500)))
        return 0;
    if (rc)
        return rc;
    char key[96];
    s_waitkey(key, order_id);
    if (status == 200) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        shipment_t s;
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        rc = shipping_load(ctx->txn, db, order_id, &u, &s);
        mc_request_t req;
        const mc_request_t *own = s_continue(ctx, &mv, &req);
        if (!rc)
            rc = shipping_record(ctx, &s, s_moves[mv.m].to, "shipment.updated", &out);
        ctx->req = own;
        if (!rc)
            mc_answer_raw(ctx, key, 200, false, out.data, out.size);
        msgpack_sbuffer_destroy(&out);
        msgpack_unpacked_destroy(&u);
    }
    else
    if (error) {
        msgpack_sbuffer raw;
        msgpack_sbuffer_init(&raw);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &raw, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *error);
        mc_answer_raw(ctx, key, status, true, raw.data, raw.size);
        msgpack_sbuffer_destroy(&raw);
    }
    else
        mc_answer_error(ctx, key, status, "illegal_transition", "the order cannot follow this move", NULL);
    return rc ? rc : s_move_delete(ctx->txn, db, order_id);
}

int
shipping_step(mc_ctx_t *ctx)
{
    mc_str_t tag = { "", 0 };
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    int rc = 0;
    if (tag.len > 2 && tag.ptr[tag.len - 2] == ':')
        rc = s_answered(ctx, (mc_str_t) { tag.ptr, tag.len - 2 }, tag.ptr[tag.len - 1], (int) status,
                        mc_map_get(ctx->req->body, "error"));
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}

int
shipping_tick(mc_ctx_t *ctx)
{
    const shipping_db_t *db = ctx->state;
    uint64_t now = ctx->req->time;
    //  the keys first, so that the loop below may write
    char keys[TICK_MAX][72];
    size_t n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->moves, &cur);
    if (rc)
        return FAIL(rc);
    MDB_val k, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && n < TICK_MAX; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (k.mv_size < sizeof keys[0]) {
            memcpy(keys[n], k.mv_data, k.mv_size);
            keys[n++][k.mv_size] = 0;
        }
    mdb_cursor_close(cur);
    for (size_t i = 0; i < n && !rc; i++) {
        mc_str_t order_id = { keys[i], strlen(keys[i]) };
        move_t mv;
        rc = s_move_load(ctx->txn, db, order_id, &mv);
        if (!rc && mv.at + MOVE_TIMEOUT_MS <= now) {
            char key[96];
            s_waitkey(key, order_id);
            mc_answer_error(ctx, key, 503, "unavailable", "the order service did not answer; try again", NULL);
            rc = s_move_delete(ctx->txn, db, order_id);
        }
        else
        if (!rc && mv.sent + RESEND_MS <= now) {
            s_ask_order(ctx, order_id, &mv);
            mv.sent = now;
            rc = s_move_store(ctx, order_id, &mv);
        }
    }
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}
