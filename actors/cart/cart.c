/*  cart: each signed-in user's cart (CONTRACT §6), keyed by user id.

    State, one LMDB environment per shard:
      carts      user id -> {items: [{product_id, sku, name, quantity, unit_price_cents, currency}], updated_at}
      puts       message id -> {user, product_id, quantity, at}   items waiting for the catalog
      checkouts  user id -> {id, idem, role, request, at, sent}    a checkout waiting for its order
      idempotency, idempotency_time   Idempotency-Key records (mc_idem)

    Putting an item asks the catalog for its name and price; checkout sends order.create (the
    order id is derived from the checkout's message id, so a resend finds the same order, and
    falls on the customer's orders shard, mc_shard_ulid) and empties the
    cart in the transaction that learns the order exists. Replies arrive as cart.step
    messages; cart.tick resends what is unanswered and gives up after a while. */
#include "cart.h"

#include "mc_idem.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    MDB_dbi carts, puts, checkouts;
    mc_idem_db_t idem;
} cart_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))
#define CART_LINES_MAX 100
#define RESEND_MS 1000
#define PUT_TIMEOUT_MS 5000
#define CHECKOUT_TIMEOUT_MS 30000

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    (void) data_dir;
    cart_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "carts", "puts", "checkouts" };
    MDB_dbi *const dbis[] = { &db->carts, &db->puts, &db->checkouts };
    int rc = mc_store_dbis(store, names, dbis, 3);
    if (!rc)
        rc = mc_idem_open(store, &db->idem);
    if (rc) {
        free(db);
        return rc;
    }
    *state = db;
    return 0;
}

//  A stored msgpack value of db under key, decoded into u; NULL when absent.
static const msgpack_object *
s_get(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, msgpack_unpacked *u, int *rc)
{
    MDB_val k = { key.len, (void *) key.ptr }, v;
    *rc = key.len ? mdb_get(txn, dbi, &k, &v) : MDB_NOTFOUND;
    if (*rc == MDB_NOTFOUND) {
        *rc = 0;
        return NULL;
    }
    if (*rc)
        return NULL;
    if (mc_msgpack_unpack(u, v.mv_data, v.mv_size)) {
        *rc = MDB_CORRUPTED;
        return NULL;
    }
    return &u->data;
}

static int
s_put(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, const msgpack_sbuffer *sb)
{
    MDB_val k = { key.len, (void *) key.ptr }, v = { sb->size, sb->data };
    return mdb_put(txn, dbi, &k, &v, 0);
}

static int
s_del(MDB_txn *txn, MDB_dbi dbi, mc_str_t key)
{
    MDB_val k = { key.len, (void *) key.ptr };
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Packs the public cart from its stored items (NULL for an empty cart).
static void
s_pack_cart(msgpack_packer *pk, const msgpack_object *cart)
{
    const msgpack_object *items = cart ? mc_map_get(cart, "items") : NULL;
    uint32_t n = items && items->type == MSGPACK_OBJECT_ARRAY ? items->via.array.size : 0;
    mc_str_t currency = MC_STR("USD"), updated = { "", 0 };
    if (cart)
        mc_map_str(cart, "updated_at", &updated);
    int64_t total = 0;
    msgpack_pack_map(pk, 4);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        mc_str_t id = { "", 0 }, sku = { "", 0 }, name = { "", 0 };
        int64_t qty = 0, price = 0;
        mc_map_str(it, "product_id", &id);
        mc_map_str(it, "sku", &sku);
        mc_map_str(it, "name", &name);
        mc_map_int(it, "quantity", &qty);
        mc_map_int(it, "unit_price_cents", &price);
        if (i == 0)
            mc_map_str(it, "currency", &currency);
        msgpack_pack_map(pk, 6);
        mc_pack_kv_str(pk, "product_id", id.ptr, id.len);
        mc_pack_kv_str(pk, "sku", sku.ptr, sku.len);
        mc_pack_kv_str(pk, "name", name.ptr, name.len);
        mc_pack_kv_int(pk, "quantity", qty);
        mc_pack_kv_int(pk, "unit_price_cents", price);
        mc_pack_kv_int(pk, "line_total_cents", price * qty);
        total += price * qty;
    }
    mc_pack_kv_int(pk, "total_cents", total);
    mc_pack_kv_str(pk, "currency", currency.ptr, currency.len);
    mc_pack_cstr(pk, "updated_at");
    if (updated.len)
        mc_pack_str(pk, updated.ptr, updated.len);
    else
        msgpack_pack_nil(pk);
}

//  Writes the user's cart with product's line set to item (a snapshot map) or removed (NULL).
//  Packs the new public cart into out when it is not NULL.
static int
s_set_line(mc_ctx_t *ctx, mc_str_t user, mc_str_t product, const msgpack_object *item, int64_t quantity,
           msgpack_sbuffer *out, bool *full)
{
    const cart_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc;
    const msgpack_object *cart = s_get(ctx->txn, db->carts, user, &u, &rc);
    if (rc) {
        msgpack_unpacked_destroy(&u);
        return rc;
    }
    const msgpack_object *items = cart ? mc_map_get(cart, "items") : NULL;
    uint32_t n = items && items->type == MSGPACK_OBJECT_ARRAY ? items->via.array.size : 0;
    bool found = false;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < n; i++) {
        mc_str_t id = { "", 0 };
        mc_map_str(&items->via.array.ptr[i], "product_id", &id);
        if (id.len == product.len && memcmp(id.ptr, product.ptr, id.len) == 0)
            found = true;
        else
            keep++;
    }
    if (full)
        *full = item && !found && keep >= CART_LINES_MAX;
    if (full && *full) {
        msgpack_unpacked_destroy(&u);
        return 0;
    }
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, keep + (item != NULL));
    for (uint32_t i = 0; i < n; i++) {
        mc_str_t id = { "", 0 };
        mc_map_str(&items->via.array.ptr[i], "product_id", &id);
        if (!(id.len == product.len && memcmp(id.ptr, product.ptr, id.len) == 0))
            msgpack_pack_object(&pk, items->via.array.ptr[i]);
    }
    if (item) {
        mc_str_t sku = { "", 0 }, name = { "", 0 }, currency = MC_STR("USD");
        int64_t price = 0;
        mc_map_str(item, "sku", &sku);
        mc_map_str(item, "name", &name);
        mc_map_str(item, "currency", &currency);
        mc_map_int(item, "price_cents", &price);
        msgpack_pack_map(&pk, 6);
        mc_pack_kv_str(&pk, "product_id", product.ptr, product.len);
        mc_pack_kv_str(&pk, "sku", sku.ptr, sku.len);
        mc_pack_kv_str(&pk, "name", name.ptr, name.len);
        mc_pack_kv_int(&pk, "quantity", quantity);
        mc_pack_kv_int(&pk, "unit_price_cents", price);
        mc_pack_kv_str(&pk, "currency", currency.ptr, currency.len);
    }
    mc_pack_kv_cstr(&pk, "updated_at", now);
    msgpack_unpacked_destroy(&u);
    char key[72];
    snprintf(key, sizeof key, "%.*s", (int) user.len, user.ptr);
    rc = s_put(ctx->txn, db->carts, (mc_str_t) { key, strlen(key) }, &sb);
    if (!rc && out) {
        msgpack_unpacked c;
        msgpack_unpacked_init(&c);
        msgpack_packer opk;
        msgpack_packer_init(&opk, out, msgpack_sbuffer_write);
        if (mc_msgpack_unpack(&c, sb.data, sb.size) == 0)
            s_pack_cart(&opk, &c.data);
        msgpack_unpacked_destroy(&c);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int
s_require_user(mc_ctx_t *ctx)
{
    if (ctx->req->user.len && ctx->req->user.len < 64)
        return 0;
    mc_reply_error(ctx->pk, ctx->req->id, 401, "authentication_required", "sign in to use a cart", NULL);
    return 401;
}

static int
s_cart_get(mc_ctx_t *ctx)
{
    if (s_require_user(ctx))
        return 401;
    const cart_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc;
    const msgpack_object *cart = s_get(ctx->txn, db->carts, ctx->req->user, &u, &rc);
    if (!rc) {
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        s_pack_cart(ctx->pk, cart);
    }
    msgpack_unpacked_destroy(&u);
    return rc ? FAIL(rc) : 200;
}

//  Asks the catalog shard that holds product for its name and price, tagged by the put.
static void
s_ask_product(mc_ctx_t *ctx, mc_str_t put_id, mc_str_t product)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_cstr(&pk, "ids");
    msgpack_pack_array(&pk, 1);
    mc_pack_str(&pk, product.ptr, product.len);
    char tag[MC_REQUEST_ID_MAX + 1], mid[96];
    snprintf(tag, sizeof tag, "%.*s:p", (int) (put_id.len < 40 ? put_id.len : 40), put_id.ptr);
    snprintf(mid, sizeof mid, "%.*s-c", (int) put_id.len, put_id.ptr);
    mc_send_t send = { .service = "catalog", .shard = mc_shard_of("catalog", product.ptr, product.len),
                       .type = "product.snapshot", .id = { mid, strlen(mid) }, .key = product,
                       .user = MC_STR(""), .role = MC_STR("system"), .body = &sb, .tag = tag };
    mc_send(ctx, &send);
    msgpack_sbuffer_destroy(&sb);
}

static int
s_cart_put(mc_ctx_t *ctx)
{
    if (s_require_user(ctx))
        return 401;
    const cart_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    mc_str_t product = { "", 0 };
    int64_t quantity = 0;
    mc_map_str(req->body, "id", &product);
    mc_map_int(req->body, "quantity", &quantity);
    if (!product.len || req->id.len > 40) {
        mc_reply_error(ctx->pk, req->id, 404, "product_not_found", "no such product", NULL);
        return 404;
    }
    if (quantity == 0) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        int rc = s_set_line(ctx, req->user, product, NULL, 0, &out, NULL);
        if (!rc) {
            mc_reply_begin(ctx->pk, req->id, 200, NULL);
            msgpack_sbuffer_write(ctx->pk->data, out.data, out.size);
        }
        msgpack_sbuffer_destroy(&out);
        return rc ? FAIL(rc) : 200;
    }
    //  the line waits for the catalog's name and price
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_str(&pk, "user", req->user.ptr, req->user.len);
    mc_pack_kv_str(&pk, "product_id", product.ptr, product.len);
    mc_pack_kv_int(&pk, "quantity", quantity);
    mc_pack_kv_uint(&pk, "at", req->time);
    int rc = s_put(ctx->txn, db->puts, req->id, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return FAIL(rc);
    s_ask_product(ctx, req->id, product);
    char key[96];
    snprintf(key, sizeof key, "put:%.*s", (int) req->id.len, req->id.ptr);
    mc_park(ctx, key, false);
    return MC_PARKED;
}

static int
s_cart_remove(mc_ctx_t *ctx)
{
    if (s_require_user(ctx))
        return 401;
    mc_str_t product = { "", 0 };
    mc_map_str(ctx->req->body, "id", &product);
    int rc = s_set_line(ctx, ctx->req->user, product, NULL, 0, NULL, NULL);
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 204);
}

//  Sends (again) the order.create of a checkout record.
static void
s_send_order(mc_ctx_t *ctx, const msgpack_object *co)
{
    mc_str_t id = { "", 0 }, user = { "", 0 }, role = { "", 0 }, request = { "", 0 };
    mc_map_str(co, "id", &id);
    mc_map_str(co, "user", &user);
    mc_map_str(co, "role", &role);
    const msgpack_object *r = mc_map_get(co, "request");
    if (r && r->type == MSGPACK_OBJECT_BIN)
        request = (mc_str_t) { r->via.bin.ptr, r->via.bin.size };
    msgpack_sbuffer body = { .size = request.len, .data = (char *) request.ptr, .alloc = 0 };
    char tag[MC_REQUEST_ID_MAX + 1];
    snprintf(tag, sizeof tag, "%.*s:o", (int) (user.len < 40 ? user.len : 40), user.ptr);
    mc_send_t send = { .service = "orders", .shard = mc_shard_of("orders", id.ptr, id.len),
                       .type = "order.create", .id = id, .key = id, .user = user, .role = role, .body = &body,
                       .tag = tag };
    mc_send(ctx, &send);
}

static int
s_checkout(mc_ctx_t *ctx)
{
    if (s_require_user(ctx))
        return 401;
    const cart_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    char waitkey[96];
    snprintf(waitkey, sizeof waitkey, "co:%.*s", (int) req->user.len, req->user.ptr);
    int rc = 0;
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
            mc_park(ctx, waitkey, true);
            status = MC_PARKED;
        }
        msgpack_sbuffer_destroy(&rec.raw);
        if (status)
            return status;
    }
    MDB_val k = { req->user.len, (void *) req->user.ptr }, v;
    if ((rc = mdb_get(ctx->txn, db->checkouts, &k, &v)) != MDB_NOTFOUND) {
        if (rc)
            return FAIL(rc);
        mc_reply_error(ctx->pk, req->id, 409, "checkout_in_progress", "a checkout of this cart is in progress", NULL);
        return 409;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *cart = s_get(ctx->txn, db->carts, req->user, &u, &rc);
    const msgpack_object *items = cart ? mc_map_get(cart, "items") : NULL;
    if (rc || !items || items->type != MSGPACK_OBJECT_ARRAY || !items->via.array.size) {
        msgpack_unpacked_destroy(&u);
        if (rc)
            return FAIL(rc);
        mc_reply_error(ctx->pk, req->id, 409, "cart_empty", "there is nothing in your cart", NULL);
        return 409;
    }
    //  the order's request: the cart's lines (never its prices) and the address
    msgpack_sbuffer order;
    msgpack_sbuffer_init(&order);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &order, msgpack_sbuffer_write);
    mc_str_t address = { "", 0 }, notes = { "", 0 };
    mc_map_str(req->body, "shipping_address_id", &address);
    bool has_notes = mc_map_str(req->body, "notes", &notes) == 0;
    msgpack_pack_map(&pk, 2 + has_notes);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, items->via.array.size);
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        mc_str_t id = { "", 0 };
        int64_t qty = 0;
        mc_map_str(&items->via.array.ptr[i], "product_id", &id);
        mc_map_int(&items->via.array.ptr[i], "quantity", &qty);
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_str(&pk, "product_id", id.ptr, id.len);
        mc_pack_kv_int(&pk, "quantity", qty);
    }
    mc_pack_kv_str(&pk, "shipping_address_id", address.ptr, address.len);
    if (has_notes)
        mc_pack_kv_str(&pk, "notes", notes.ptr, notes.len);
    msgpack_unpacked_destroy(&u);
    //  the order lands on the customer's orders shard, as POST /api/v1/orders places it (the
    //  route's shard_by): their orders, and the cap on unpaid ones, are all there
    char order_id[72];
    if (mc_shard_ulid(order_id, req->id, "orders", mc_shard_of_folded("orders", req->user.ptr, req->user.len)))
        snprintf(order_id, sizeof order_id, "%.*s", (int) req->id.len, req->id.ptr);
    msgpack_sbuffer co;
    msgpack_sbuffer_init(&co);
    msgpack_packer_init(&pk, &co, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mc_pack_kv_cstr(&pk, "id", order_id);
    mc_pack_kv_str(&pk, "user", req->user.ptr, req->user.len);
    mc_pack_kv_str(&pk, "role", req->role.ptr, req->role.len);
    mc_pack_kv_str(&pk, "idem", req->idem.ptr, req->idem.len);
    mc_pack_kv_uint(&pk, "at", req->time);
    mc_pack_cstr(&pk, "request");
    msgpack_pack_bin(&pk, order.size);
    msgpack_pack_bin_body(&pk, order.data, order.size);
    msgpack_sbuffer_destroy(&order);
    rc = s_put(ctx->txn, db->checkouts, req->user, &co);
    if (!rc && req->idem.len)
        rc = mc_idem_begin(ctx->txn, &db->idem, req, waitkey);
    if (!rc) {
        msgpack_unpacked c;
        msgpack_unpacked_init(&c);
        if (mc_msgpack_unpack(&c, co.data, co.size) == 0)
            s_send_order(ctx, &c.data);
        msgpack_unpacked_destroy(&c);
    }
    msgpack_sbuffer_destroy(&co);
    if (rc)
        return FAIL(rc);
    mc_park(ctx, waitkey, false);
    return MC_PARKED;
}

//  The checkout of user ends with status and body (or error): the answer, the Idempotency-Key
//  record, and, for a 201, an empty cart.
static int
s_checkout_done(mc_ctx_t *ctx, mc_str_t user, const msgpack_object *co, int status, bool error,
                const msgpack_object *result)
{
    const cart_db_t *db = ctx->state;
    char waitkey[96];
    snprintf(waitkey, sizeof waitkey, "co:%.*s", (int) user.len, user.ptr);
    msgpack_sbuffer raw;
    msgpack_sbuffer_init(&raw);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &raw, msgpack_sbuffer_write);
    if (result)
        msgpack_pack_object(&pk, *result);
    else
        mc_pack_error(&pk, "unavailable", "the order service did not answer; try again", NULL);
    mc_answer_raw(ctx, waitkey, status, error || !result, raw.data, raw.size);
    mc_str_t idem = { "", 0 };
    mc_map_str(co, "idem", &idem);
    char u[72], key[260];
    snprintf(u, sizeof u, "%.*s", (int) user.len, user.ptr);
    snprintf(key, sizeof key, "%.*s", (int) idem.len, idem.ptr);
    int rc = 0;
    if (idem.len)
        rc = mc_idem_finish(ctx->txn, &db->idem, (mc_str_t) { u, strlen(u) }, (mc_str_t) { key, strlen(key) },
                            status, error || !result, raw.data, raw.size);
    msgpack_sbuffer_destroy(&raw);
    if (!rc && status == 201) {
        msgpack_sbuffer empty;
        msgpack_sbuffer_init(&empty);
        msgpack_packer_init(&pk, &empty, msgpack_sbuffer_write);
        char now[32];
        mc_rfc3339(now, sizeof now, ctx->req->time);
        msgpack_pack_map(&pk, 2);
        mc_pack_cstr(&pk, "items");
        msgpack_pack_array(&pk, 0);
        mc_pack_kv_cstr(&pk, "updated_at", now);
        rc = s_put(ctx->txn, db->carts, (mc_str_t) { u, strlen(u) }, &empty);
        msgpack_sbuffer_destroy(&empty);
    }
    return rc ? rc : s_del(ctx->txn, db->checkouts, (mc_str_t) { u, strlen(u) });
}

static int
s_put_done(mc_ctx_t *ctx, mc_str_t put_id, const msgpack_object *put, int status, const msgpack_object *body)
{
    const cart_db_t *db = ctx->state;
    char waitkey[96], id[72];
    snprintf(waitkey, sizeof waitkey, "put:%.*s", (int) put_id.len, put_id.ptr);
    snprintf(id, sizeof id, "%.*s", (int) put_id.len, put_id.ptr);
    mc_str_t user = { "", 0 }, product = { "", 0 };
    int64_t quantity = 0;
    mc_map_str(put, "user", &user);
    mc_map_str(put, "product_id", &product);
    mc_map_int(put, "quantity", &quantity);
    int rc = 0;
    const msgpack_object *items = body ? mc_map_get(body, "items") : NULL;
    if (status != 200)
        mc_answer_error(ctx, waitkey, 503, "unavailable", "the catalog did not answer; try again", NULL);
    else
    if (!items || items->type != MSGPACK_OBJECT_ARRAY || items->via.array.size != 1)
        mc_answer_error(ctx, waitkey, 404, "product_not_found", "no such product", NULL);
    else {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        bool full = false;
        rc = s_set_line(ctx, user, product, &items->via.array.ptr[0], quantity, &out, &full);
        if (!rc && full)
            mc_answer_error(ctx, waitkey, 409, "cart_full", "a cart holds at most 100 products", NULL);
        else
        if (!rc)
            mc_answer_raw(ctx, waitkey, 200, false, out.data, out.size);
        msgpack_sbuffer_destroy(&out);
    }
    return rc ? rc : s_del(ctx->txn, db->puts, (mc_str_t) { id, strlen(id) });
}

static int
s_step(mc_ctx_t *ctx)
{
    const cart_db_t *db = ctx->state;
    mc_str_t tag = { "", 0 };
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    const msgpack_object *body = mc_map_get(ctx->req->body, "body");
    const msgpack_object *error = mc_map_get(ctx->req->body, "error");
    int rc = 0;
    if (tag.len > 2 && tag.ptr[tag.len - 2] == ':') {
        mc_str_t id = { tag.ptr, tag.len - 2 };
        char kind = tag.ptr[tag.len - 1];
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        const msgpack_object *rec = s_get(ctx->txn, kind == 'p' ? db->puts : db->checkouts, id, &u, &rc);
        //  a 5xx or no answer: the tick sends again
        if (rec && kind == 'p' && status < 500)
            rc = s_put_done(ctx, id, rec, (int) status, body);
        else
        if (rec && kind == 'o' && status < 500)
            rc = s_checkout_done(ctx, id, rec, (int) status, error != NULL, error ? error : body);
        msgpack_unpacked_destroy(&u);
    }
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}

#define TICK_MAX 128

static int
s_tick(mc_ctx_t *ctx)
{
    const cart_db_t *db = ctx->state;
    uint64_t now = ctx->req->time;
    int rc = 0;
    for (int which = 0; which < 2 && !rc; which++) {
        MDB_dbi dbi = which ? db->checkouts : db->puts;
        char keys[TICK_MAX][72];
        size_t n = 0;
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(ctx->txn, dbi, &cur)))
            break;
        MDB_val k, v;
        for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && n < TICK_MAX; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            if (k.mv_size < sizeof keys[0]) {
                memcpy(keys[n], k.mv_data, k.mv_size);
                keys[n++][k.mv_size] = 0;
            }
        mdb_cursor_close(cur);
        for (size_t i = 0; i < n && !rc; i++) {
            mc_str_t key = { keys[i], strlen(keys[i]) };
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            const msgpack_object *rec = s_get(ctx->txn, dbi, key, &u, &rc);
            uint64_t at = 0, sent = 0;
            if (rec) {
                mc_map_uint(rec, "at", &at);
                sent = at;
                mc_map_uint(rec, "sent", &sent);
            }
            if (rec && !which) {
                mc_str_t product = { "", 0 };
                mc_map_str(rec, "product_id", &product);
                if (at + PUT_TIMEOUT_MS <= now)
                    rc = s_put_done(ctx, key, rec, 503, NULL);
                else
                if (sent + RESEND_MS <= now)
                    s_ask_product(ctx, key, product);
            }
            else
            if (rec) {
                if (at + CHECKOUT_TIMEOUT_MS <= now)
                    rc = s_checkout_done(ctx, key, rec, 503, true, NULL);
                else
                if (sent + RESEND_MS <= now) {
                    s_send_order(ctx, rec);
                    //  remember when, so the next resend waits its turn
                    msgpack_sbuffer sb;
                    msgpack_sbuffer_init(&sb);
                    msgpack_packer pk;
                    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
                    uint32_t keep = 0;
                    for (uint32_t m = 0; m < rec->via.map.size; m++)
                        keep += !mc_str_eq(mc_obj_str(&rec->via.map.ptr[m].key), "sent");
                    msgpack_pack_map(&pk, keep + 1);
                    for (uint32_t m = 0; m < rec->via.map.size; m++)
                        if (!mc_str_eq(mc_obj_str(&rec->via.map.ptr[m].key), "sent")) {
                            msgpack_pack_object(&pk, rec->via.map.ptr[m].key);
                            msgpack_pack_object(&pk, rec->via.map.ptr[m].val);
                        }
                    mc_pack_kv_uint(&pk, "sent", now);
                    rc = s_put(ctx->txn, dbi, key, &sb);
                    msgpack_sbuffer_destroy(&sb);
                }
            }
            msgpack_unpacked_destroy(&u);
        }
    }
    if (!rc)
        rc = mc_idem_prune(ctx->txn, &db->idem, now, 100);
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}

static const mc_handler_t s_handlers[] = {
    { "cart.get", false, s_cart_get },
    { "cart.put", true, s_cart_put },
    { "cart.remove", true, s_cart_remove },
    { "cart.checkout", true, s_checkout },
    { "cart.step", true, s_step },
    { "cart.tick", true, s_tick },
};

const mc_service_t cart_service = {
    .name = "cart",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "cart.step",
    .tick = "cart.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
};
