/*  The inventory side of the order saga: reserve, release and commit (sell) an order's lines
    in this shard. Each is idempotent by (order id, product id), so a resent or replayed message
    has no second effect, and a reserve is all-or-nothing across the lines it carries. */
#include "inventory_db.h"

#include <stdio.h>
#include <string.h>

typedef enum { RESV_NONE = 0, RESV_RESERVED = 'r', RESV_RELEASED = 'x', RESV_SOLD = 's' } resv_state_t;

typedef struct {
    mc_str_t product;           //  product id
    int64_t quantity;           //  units
} line_t;

#define LINES_MAX 100

//  The body's order id and lines; the schema has checked their shape.
static size_t
s_lines(const mc_request_t *req, mc_str_t *order, line_t *lines)
{
    mc_map_str(req->body, "order_id", order);
    const msgpack_object *arr = mc_map_get(req->body, "lines");
    size_t n = 0;
    for (uint32_t i = 0; arr && i < arr->via.array.size && n < LINES_MAX; i++) {
        const msgpack_object *o = &arr->via.array.ptr[i];
        if (mc_map_str(o, "product_id", &lines[n].product) == 0 && mc_map_int(o, "quantity", &lines[n].quantity) == 0)
            n++;
    }
    return n;
}

static size_t
s_key(char *key, size_t size, mc_str_t order, mc_str_t product)
{
    int n = snprintf(key, size, "%.*s%c%.*s", (int) order.len, order.ptr, 0, (int) product.len, product.ptr);
    return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

static resv_state_t
s_resv_get(mc_ctx_t *ctx, mc_str_t order, mc_str_t product, int64_t *quantity)
{
    const inventory_db_t *db = ctx->state;
    char key[160];
    MDB_val k = { s_key(key, sizeof key, order, product), key }, v;
    if (!k.mv_size || mdb_get(ctx->txn, db->reservations, &k, &v) || v.mv_size != 9)
        return RESV_NONE;
    const unsigned char *p = v.mv_data;
    uint64_t q = 0;
    for (int i = 1; i < 9; i++)
        q = q << 8 | p[i];
    *quantity = (int64_t) q;
    return (resv_state_t) p[0];
}

static int
s_resv_put(mc_ctx_t *ctx, mc_str_t order, mc_str_t product, resv_state_t state, int64_t quantity)
{
    const inventory_db_t *db = ctx->state;
    char key[160];
    unsigned char val[9] = { (unsigned char) state };
    uint64_t q = (uint64_t) quantity;
    for (int i = 8; i >= 1; i--, q >>= 8)
        val[i] = (unsigned char) q;
    MDB_val k = { s_key(key, sizeof key, order, product), key }, v = { 9, val };
    return k.mv_size ? mdb_put(ctx->txn, db->reservations, &k, &v, 0) : MDB_BAD_VALSIZE;
}

static void
s_reply_lines(mc_ctx_t *ctx, mc_str_t order, const line_t *lines, size_t n)
{
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 2);
    mc_pack_kv_str(ctx->pk, "order_id", order.ptr, order.len);
    mc_pack_cstr(ctx->pk, "lines");
    msgpack_pack_array(ctx->pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(ctx->pk, 2);
        mc_pack_kv_str(ctx->pk, "product_id", lines[i].product.ptr, lines[i].product.len);
        mc_pack_kv_int(ctx->pk, "quantity", lines[i].quantity);
    }
}

int
inventory_reserve(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    mc_str_t order;
    line_t lines[LINES_MAX];
    size_t n = s_lines(ctx->req, &order, lines);
    //  check every line before touching any: all or nothing
    mc_errors_t shorts = { 0 };
    for (size_t i = 0; i < n; i++) {
        int64_t held = 0;
        resv_state_t state = s_resv_get(ctx, order, lines[i].product, &held);
        if (state == RESV_RELEASED) {
            mc_reply_error(ctx->pk, ctx->req->id, 409, "reservation_released",
                           "this order's reservation was already released", NULL);
            return 409;
        }
        if (state != RESV_NONE)
            continue;
        stock_t st;
        int rc = inventory_load(ctx->txn, db, lines[i].product, &st);
        if (rc && rc != MDB_NOTFOUND)
            return FAIL(rc);
        int64_t available = rc ? 0 : st.on_hand - st.reserved;
        if (available < lines[i].quantity) {
            char field[80];
            snprintf(field, sizeof field, "%.*s", (int) lines[i].product.len, lines[i].product.ptr);
            mc_errors_add(&shorts, field, "%lld available", (long long) (available > 0 ? available : 0));
        }
    }
    if (shorts.count) {
        mc_reply_error(ctx->pk, ctx->req->id, 409, "out_of_stock", "not enough stock", &shorts);
        return 409;
    }
    char reason[96];
    snprintf(reason, sizeof reason, "reserved for order %.*s", (int) order.len, order.ptr);
    for (size_t i = 0; i < n; i++) {
        int64_t held = 0;
        if (s_resv_get(ctx, order, lines[i].product, &held) != RESV_NONE)
            continue;
        stock_t st;
        int rc = inventory_load(ctx->txn, db, lines[i].product, &st);
        if (rc)
            return FAIL(rc);
        st.reserved += lines[i].quantity;
        inventory_change_t c = { .reason = { reason, strlen(reason) }, .event = "inventory.reserved",
                                 .order_id = order, .quantity = lines[i].quantity };
        if ((rc = inventory_change(ctx, lines[i].product, &st, &c))
        ||  (rc = s_resv_put(ctx, order, lines[i].product, RESV_RESERVED, lines[i].quantity)))
            return FAIL(rc);
    }
    s_reply_lines(ctx, order, lines, n);
    return 200;
}

int
inventory_release(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    mc_str_t order;
    line_t lines[LINES_MAX];
    size_t n = s_lines(ctx->req, &order, lines);
    char reason[96];
    snprintf(reason, sizeof reason, "released by order %.*s", (int) order.len, order.ptr);
    for (size_t i = 0; i < n; i++) {
        int64_t held = 0;
        resv_state_t state = s_resv_get(ctx, order, lines[i].product, &held);
        int rc = 0;
        if (state == RESV_NONE)
            //  the reserve may still be on its way: this mark makes it a no-op when it lands
            rc = s_resv_put(ctx, order, lines[i].product, RESV_RELEASED, 0);
        else
        if (state == RESV_RESERVED) {
            stock_t st;
            if (!(rc = inventory_load(ctx->txn, db, lines[i].product, &st))) {
                st.reserved -= held;
                inventory_change_t c = { .reason = { reason, strlen(reason) }, .event = "inventory.released",
                                         .order_id = order, .quantity = held };
                if (!(rc = inventory_change(ctx, lines[i].product, &st, &c)))
                    rc = s_resv_put(ctx, order, lines[i].product, RESV_RELEASED, held);
            }
        }
        if (rc)
            return FAIL(rc);
    }
    s_reply_lines(ctx, order, lines, n);
    return 200;
}

int
inventory_commit(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    mc_str_t order;
    line_t lines[LINES_MAX];
    size_t n = s_lines(ctx->req, &order, lines);
    char reason[96];
    snprintf(reason, sizeof reason, "sold to order %.*s", (int) order.len, order.ptr);
    for (size_t i = 0; i < n; i++) {
        int64_t held = 0;
        if (s_resv_get(ctx, order, lines[i].product, &held) != RESV_RESERVED)
            continue;   //  already sold, or never held: nothing to move
        stock_t st;
        int rc = inventory_load(ctx->txn, db, lines[i].product, &st);
        if (!rc) {
            st.reserved -= held;
            st.on_hand -= held;
            st.sold += held;
            inventory_change_t c = { .delta = -held, .reason = { reason, strlen(reason) },
                                     .order_id = order, .quantity = held };
            if (!(rc = inventory_change(ctx, lines[i].product, &st, &c)))
                rc = s_resv_put(ctx, order, lines[i].product, RESV_SOLD, held);
        }
        if (rc)
            return FAIL(rc);
    }
    s_reply_lines(ctx, order, lines, n);
    return 200;
}
