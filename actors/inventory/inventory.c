#include "inventory_db.h"

#include "mc_outbox.h"
#include "mc_page.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    inventory_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "stock", "history", "low", "processed", "reservations" };
    MDB_dbi *const dbis[] = { &db->stock, &db->history, &db->low, &db->processed, &db->reservations };
    int rc = mc_store_dbis(store, names, dbis, 5);
    if (rc) {
        free(db);
        return rc;
    }
    *state = db;
    return 0;
}

int
inventory_load(MDB_txn *txn, const inventory_db_t *db, mc_str_t id, stock_t *st)
{
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = id.len ? mdb_get(txn, db->stock, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    memset(st, 0, sizeof *st);
    mc_str_t at = { "", 0 };
    if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) || mc_map_int(&u.data, "on_hand", &st->on_hand)
    ||  mc_map_int(&u.data, "reserved", &st->reserved) || mc_map_int(&u.data, "low_stock_threshold", &st->threshold))
        rc = MDB_CORRUPTED;
    mc_map_int(&u.data, "sold", &st->sold);
    mc_map_bool(&u.data, "low", &st->low);
    mc_map_uint(&u.data, "changes", &st->changes);
    mc_map_str(&u.data, "updated_at", &at);
    snprintf(st->updated_at, sizeof st->updated_at, "%.*s", (int) at.len, at.ptr);
    msgpack_unpacked_destroy(&u);
    return rc;
}

static int
s_store(MDB_txn *txn, const inventory_db_t *db, mc_str_t id, const stock_t *st)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    mc_pack_kv_int(&pk, "on_hand", st->on_hand);
    mc_pack_kv_int(&pk, "reserved", st->reserved);
    mc_pack_kv_int(&pk, "sold", st->sold);
    mc_pack_kv_int(&pk, "low_stock_threshold", st->threshold);
    mc_pack_kv_bool(&pk, "low", st->low);
    mc_pack_kv_uint(&pk, "changes", st->changes);
    mc_pack_kv_cstr(&pk, "updated_at", st->updated_at);
    MDB_val k = { id.len, (void *) id.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->stock, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return rc;
    static const MDB_val empty = { 0, "" };
    if (st->low)
        return mdb_put(txn, db->low, &k, (MDB_val *) &empty, 0);
    rc = mdb_del(txn, db->low, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  The public view of a stock record.
static void
s_pack_public(msgpack_packer *pk, mc_str_t id, const stock_t *st)
{
    msgpack_pack_map(pk, 7);
    mc_pack_kv_str(pk, "product_id", id.ptr, id.len);
    mc_pack_kv_int(pk, "on_hand", st->on_hand);
    mc_pack_kv_int(pk, "reserved", st->reserved);
    mc_pack_kv_int(pk, "available", st->on_hand - st->reserved);
    mc_pack_kv_int(pk, "sold", st->sold);
    mc_pack_kv_int(pk, "low_stock_threshold", st->threshold);
    mc_pack_kv_cstr(pk, "updated_at", st->updated_at);
}

static int
s_not_found(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 404, "stock_not_found", "no stock record for this product", NULL);
    return 404;
}

int
inventory_change(mc_ctx_t *ctx, mc_str_t id, stock_t *st, const inventory_change_t *c)
{
    const inventory_db_t *db = ctx->state;
    mc_rfc3339(st->updated_at, sizeof st->updated_at, ctx->req->time);
    //  history key: product id, NUL, 8-byte change number
    char key[MC_ENV_KEY_MAX + 1 + 8];
    size_t n = mc_key_join(key, sizeof key - 8, id.ptr, id.len, "", 0);
    if (!n)
        return MDB_BAD_VALSIZE;
    mc_be64_put((unsigned char *) key + n, ++st->changes);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool order = c->order_id.len > 0;
    msgpack_pack_map(&pk, 5 + order * 2);
    mc_pack_kv_int(&pk, "delta", c->delta);
    mc_pack_kv_str(&pk, "reason", c->reason.ptr, c->reason.len);
    mc_pack_kv_int(&pk, "on_hand", st->on_hand);
    mc_pack_kv_int(&pk, "reserved", st->reserved);
    mc_pack_kv_cstr(&pk, "at", st->updated_at);
    if (order) {
        mc_pack_kv_str(&pk, "order_id", c->order_id.ptr, c->order_id.len);
        mc_pack_kv_int(&pk, "quantity", c->quantity);
    }
    MDB_val k = { n + 8, key }, v = { sb.size, sb.data };
    int rc = mdb_put(ctx->txn, db->history, &k, &v, 0);
    //  the event carries what the history says, plus the product it is about
    msgpack_sbuffer ev;
    msgpack_sbuffer_init(&ev);
    msgpack_packer_init(&pk, &ev, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6 + order * 2);
    mc_pack_kv_str(&pk, "product_id", id.ptr, id.len);
    mc_pack_kv_int(&pk, "delta", c->delta);
    mc_pack_kv_str(&pk, "reason", c->reason.ptr, c->reason.len);
    mc_pack_kv_int(&pk, "on_hand", st->on_hand);
    mc_pack_kv_int(&pk, "reserved", st->reserved);
    mc_pack_kv_int(&pk, "available", st->on_hand - st->reserved);
    if (order) {
        mc_pack_kv_str(&pk, "order_id", c->order_id.ptr, c->order_id.len);
        mc_pack_kv_int(&pk, "quantity", c->quantity);
    }
    if (!rc)
        rc = mc_outbox_append(ctx, "inventory", id, c->event ? c->event : "inventory.adjusted",
                              (mc_str_t) { ev.data, ev.size });
    bool low = st->on_hand - st->reserved <= st->threshold;
    if (!rc && low && !st->low) {
        msgpack_sbuffer_clear(&ev);
        msgpack_pack_map(&pk, 4);
        mc_pack_kv_str(&pk, "product_id", id.ptr, id.len);
        mc_pack_kv_int(&pk, "on_hand", st->on_hand);
        mc_pack_kv_int(&pk, "available", st->on_hand - st->reserved);
        mc_pack_kv_int(&pk, "low_stock_threshold", st->threshold);
        rc = mc_outbox_append(ctx, "inventory", id, "inventory.low_stock", (mc_str_t) { ev.data, ev.size });
    }
    st->low = low;
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&ev);
    return rc ? rc : s_store(ctx->txn, db, id, st);
}

static int
s_change(mc_ctx_t *ctx, mc_str_t id, stock_t *st, int64_t delta, mc_str_t reason)
{
    inventory_change_t c = { .delta = delta, .reason = reason };
    return inventory_change(ctx, id, st, &c);
}

static int
s_reply_stock(mc_ctx_t *ctx, mc_str_t id, const stock_t *st)
{
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    s_pack_public(ctx->pk, id, st);
    return 200;
}

static int
s_event(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t event_id, type, product;
    mc_map_str(b, "event_id", &event_id);
    mc_map_str(b, "type", &type);
    mc_map_str(b, "key", &product);
    int rc = mc_store_once(ctx->txn, db->processed, event_id.ptr, event_id.len);
    if (rc == MDB_KEYEXIST) {
        //  a redelivery: already applied, and saying so lets the consumer move on
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        msgpack_pack_map(ctx->pk, 1);
        mc_pack_kv_bool(ctx->pk, "duplicate", true);
        return 200;
    }
    if (rc)
        return FAIL(rc);
    stock_t st;
    if (mc_str_eq(type, "product.created") && inventory_load(ctx->txn, db, product, &st) == MDB_NOTFOUND) {
        int64_t initial = 0;
        const msgpack_object *data = mc_map_get(b, "data");
        if (data && data->type == MSGPACK_OBJECT_MAP && (mc_map_int(data, "initial_stock", &initial) || initial < 0))
            initial = 0;
        memset(&st, 0, sizeof st);
        st.on_hand = initial;
        st.threshold = initial / 10 + (initial % 10 != 0);
        if (st.threshold < 5)
            st.threshold = 5;
        //  born low is not a crossing: no alert for a product that never had stock
        st.low = st.on_hand <= st.threshold;
        if ((rc = s_change(ctx, product, &st, initial, MC_STR("product created"))))
            return FAIL(rc);
    }
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 1);
    mc_pack_kv_bool(ctx->pk, "duplicate", false);
    return 200;
}

static int
s_get(mc_ctx_t *ctx)
{
    stock_t st;
    int rc = inventory_load(ctx->txn, ctx->state, ctx->req->key, &st);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    return rc ? FAIL(rc) : s_reply_stock(ctx, ctx->req->key, &st);
}

static int
s_check(mc_ctx_t *ctx)
{
    mc_str_t product;
    int64_t quantity = 1;
    mc_map_str(ctx->req->body, "product_id", &product);
    mc_map_int(ctx->req->body, "quantity", &quantity);
    stock_t st;
    int rc = inventory_load(ctx->txn, ctx->state, product, &st);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    if (rc)
        return FAIL(rc);
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 3);
    mc_pack_kv_str(ctx->pk, "product_id", product.ptr, product.len);
    mc_pack_kv_int(ctx->pk, "quantity", quantity);
    mc_pack_kv_bool(ctx->pk, "available", st.on_hand - st.reserved >= quantity);
    return 200;
}

static int
s_below_reserved(mc_ctx_t *ctx, const stock_t *st)
{
    char detail[160];
    snprintf(detail, sizeof detail, "on hand cannot go below the %lld units reserved for orders", (long long) st->reserved);
    mc_reply_error(ctx->pk, ctx->req->id, 409, "below_reserved", detail, NULL);
    return 409;
}

//  Sets on_hand (absolute) or moves it by value, and the threshold when the body has one; records
//  why; replies with the stock. on_hand never goes below what is reserved.
static int
s_apply(mc_ctx_t *ctx, bool absolute, int64_t value, mc_str_t reason)
{
    stock_t st;
    mc_str_t id = ctx->req->key;
    int rc = inventory_load(ctx->txn, ctx->state, id, &st);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    if (rc)
        return FAIL(rc);
    int64_t on_hand = absolute ? value : st.on_hand + value;
    if (on_hand < st.reserved)
        return s_below_reserved(ctx, &st);
    mc_map_int(ctx->req->body, "low_stock_threshold", &st.threshold);
    int64_t delta = on_hand - st.on_hand;
    st.on_hand = on_hand;
    if ((rc = s_change(ctx, id, &st, delta, reason)))
        return FAIL(rc);
    return s_reply_stock(ctx, id, &st);
}

static int
s_set(mc_ctx_t *ctx)
{
    int64_t on_hand = 0;
    mc_str_t reason = MC_STR("set by admin");
    mc_map_int(ctx->req->body, "on_hand", &on_hand);
    mc_map_str(ctx->req->body, "reason", &reason);
    return s_apply(ctx, true, on_hand, reason);
}

static int
s_adjust(mc_ctx_t *ctx)
{
    int64_t delta = 0;
    mc_str_t reason = { "", 0 };
    mc_map_int(ctx->req->body, "delta", &delta);
    mc_map_str(ctx->req->body, "reason", &reason);
    return s_apply(ctx, false, delta, reason);
}

static int
s_bad_cursor(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
    return 400;
}

static int
s_history(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    mc_str_t id = ctx->req->key;
    stock_t st;
    int rc = inventory_load(ctx->txn, db, id, &st);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    if (rc)
        return FAIL(rc);
    int64_t limit = 20;
    mc_map_int(ctx->req->body, "limit", &limit);
    mc_str_t cursor = { "", 0 };
    mc_map_str(ctx->req->body, "cursor", &cursor);
    unsigned char after[8] = { 0 };
    if (cursor.len && mc_b64url_decode(after, sizeof after, cursor.ptr, cursor.len) != 8)
        return s_bad_cursor(ctx);
    char key[MC_ENV_KEY_MAX + 1 + 8];
    size_t plen = mc_key_join(key, sizeof key - 8, id.ptr, id.len, "", 0);
    if (!plen)
        return s_not_found(ctx);
    memcpy(key + plen, after, 8);
    //  strictly after the cursor's change
    uint64_t from = 0;
    for (int i = 0; i < 8; i++)
        from = from << 8 | after[i];
    mc_be64_put((unsigned char *) key + plen, from + 1);
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(ctx->txn, db->history, &cur)))
        return FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    MDB_val k = { plen + 8, key }, v;
    size_t n = 0;
    bool more = false;
    unsigned char last[8];
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != plen + 8 || memcmp(k.mv_data, key, plen) != 0)
            break;
        if ((int64_t) n == limit) {
            more = true;
            break;
        }
        msgpack_sbuffer_write(&items, v.mv_data, v.mv_size);
        memcpy(last, (char *) k.mv_data + plen, 8);
        n++;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        return FAIL(rc);
    }
    mc_reply_page(ctx->pk, ctx->req->id, &items, n, more ? last : NULL, 8);
    msgpack_sbuffer_destroy(&items);
    return 200;
}

static int
s_list(mc_ctx_t *ctx)
{
    const inventory_db_t *db = ctx->state;
    bool low_only = false;
    mc_map_bool(ctx->req->body, "low_stock", &low_only);
    int64_t limit = 20;
    mc_map_int(ctx->req->body, "limit", &limit);
    mc_str_t cursor = { "", 0 };
    mc_map_str(ctx->req->body, "cursor", &cursor);
    char after[72] = "";
    long alen = 0;
    if (cursor.len && (alen = mc_b64url_decode(after, sizeof after - 2, cursor.ptr, cursor.len)) <= 0)
        return s_bad_cursor(ctx);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, low_only ? db->low : db->stock, &cur);
    if (rc)
        return FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
    MDB_val k = { (size_t) alen + 1, after }, v;     //  after[alen] is 0: strictly after the cursor
    size_t n = 0;
    bool more = false;
    char last[72] = "";
    //  records are in product id order and a cursor is the last id: the same question on every
    //  shard, and each record's key is its id when the edge gathers the list from every shard
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    for (rc = alen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((int64_t) n == limit) {
            more = true;
            break;
        }
        if (k.mv_size >= sizeof last)
            continue;
        snprintf(last, sizeof last, "%.*s", (int) k.mv_size, (char *) k.mv_data);
        stock_t st;
        if (inventory_load(ctx->txn, db, (mc_str_t) { last, strlen(last) }, &st) == 0) {
            s_pack_public(&ipk, (mc_str_t) { last, strlen(last) }, &st);
            mc_page_keys_add(&keys, last, strlen(last));
            n++;
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        mc_page_keys_destroy(&keys);
        return FAIL(rc);
    }
    mc_page_reply_keyed(ctx, &items, n, more ? last : NULL, strlen(last), &keys);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return 200;
}

static const mc_handler_t s_handlers[] = {
    { "stock.event", true, s_event },
    { "stock.get", false, s_get },
    { "stock.check", false, s_check },
    { "stock.set", true, s_set },
    { "stock.adjust", true, s_adjust },
    { "stock.history", false, s_history },
    { "stock.list", false, s_list },
    { "stock.reserve", true, inventory_reserve },
    { "stock.release", true, inventory_release },
    { "stock.commit", true, inventory_commit },
};

//  stock.event acts on product.created only (a stock record is born)
static bool
s_wants_event(mc_str_t type)
{
    return mc_str_eq(type, "product.created");
}

const mc_service_t inventory_service = {
    .name = "inventory",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .wants_event = s_wants_event,
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
};
