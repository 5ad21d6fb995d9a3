#include "catalog.h"

#include "catalog_index.h"
#include "catalog_list.h"
#include "catalog_sku.h"
#include "mc_page.h"
#include "mc_outbox.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  LMDB reports its own errors negative and errno values positive; handlers return both negative.
#define LMDB_FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    catalog_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "products", "sku", "idx_cat", "idx_word", "idx_price", "idx_feat",
                                         "categories", "sku_token", "sku_ops", "sku_gone" };
    MDB_dbi *const dbis[] = { &db->products, &db->sku, &db->idx_cat, &db->idx_word, &db->idx_price,
                              &db->idx_feat, &db->categories, &db->sku_token, &db->sku_ops, &db->sku_gone };
    int rc = mc_store_dbis(store, names, dbis, sizeof names / sizeof *names);
    if (rc) {
        free(db);
        return rc;
    }
    *state = db;
    return 0;
}

static int
s_not_found(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 404, "product_not_found", "no product has this id", NULL);
    return 404;
}

//  Writes the record (version + product); out (may be NULL) receives the product map.
static int
s_store(mc_ctx_t *ctx, const catalog_product_t *p, uint64_t version, msgpack_sbuffer *out)
{
    const catalog_db_t *db = ctx->state;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    unsigned char ver[8];
    mc_be64_put(ver, version);
    msgpack_sbuffer_write(&buf, (const char *) ver, 8);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    catalog_product_pack(&pk, p);
    MDB_val k = { p->id.len, (void *) p->id.ptr }, v = { buf.size, buf.data };
    int rc = mdb_put(ctx->txn, db->products, &k, &v, 0);
    if (!rc && out)
        msgpack_sbuffer_write(out, buf.data + 8, buf.size - 8);
    msgpack_sbuffer_destroy(&buf);
    return rc;
}

//  Replies status with the product map in body and version's ETag.
static int
s_reply_product(mc_ctx_t *ctx, const msgpack_sbuffer *body, uint64_t version, int status)
{
    char etag[32];
    catalog_etag(etag, version);
    mc_reply_begin(ctx->pk, ctx->req->id, status, etag);
    msgpack_sbuffer_write(ctx->pk->data, body->data, body->size);
    return status;
}

//  product.created / product.updated: the product as the API shows it (created also carries
//  initial_stock, from which inventory opens the stock record).
static int
s_event(mc_ctx_t *ctx, const char *type, const catalog_product_t *p, const int64_t *initial_stock)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    catalog_product_pack_open(&pk, p, initial_stock ? 1 : 0);
    if (initial_stock)
        mc_pack_kv_int(&pk, "initial_stock", *initial_stock);
    int rc = mc_outbox_append(ctx, "product", p->id, type, (mc_str_t) { sb.data, sb.size });
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static mc_str_t
s_opt(const msgpack_object *body, const char *key, mc_str_t fallback)
{
    mc_str_t s;
    return mc_map_str(body, key, &s) ? fallback : s;
}

static int
s_create(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    //  the product id is the message id: a replayed message creates the same product
    mc_str_t id = ctx->req->id;
    if (!mc_ulid_valid(id.ptr, id.len)) {
        mc_reply_error(ctx->pk, id, 400, "bad_envelope", "message id is not a ULID", NULL);
        return 400;
    }
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = mdb_get(ctx->txn, db->products, &k, &v);
    if (rc == 0) {
        mc_reply_error(ctx->pk, id, 409, "duplicate_id", "a product with this id already exists", NULL);
        return 409;
    }
    if (rc != MDB_NOTFOUND)
        return LMDB_FAIL(rc);
    catalog_product_t p = { .id = id };
    mc_map_str(b, "sku", &p.sku);
    mc_map_str(b, "name", &p.name);
    mc_map_str(b, "category", &p.category);
    mc_map_int(b, "price_cents", &p.price_cents);
    p.description = s_opt(b, "description", MC_STR(""));
    p.currency = s_opt(b, "currency", MC_STR("USD"));
    mc_map_bool(b, "featured", &p.featured);
    p.images = mc_map_get(b, "images");
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    p.created_at = p.updated_at = (mc_str_t) { now, strlen(now) };
    //  the edge drew the id onto the SKU's home (shard_by), where the SKU's claim is decided
    if (catalog_sku_home(p.sku) != mc_shard_of("catalog", id.ptr, id.len)) {
        mc_reply_error_retry(ctx->pk, id, 503, "misrouted", "the product's id is not on its sku's shard; send it again",
                             1);
        return 503;
    }
    bool taken = false;
    if ((rc = catalog_sku_claim(ctx->txn, db, p.sku, id, id, &taken)))
        return LMDB_FAIL(rc);
    if (taken)
        return catalog_conflict_sku(ctx);
    int64_t stock = 0;
    mc_map_int(b, "initial_stock", &stock);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    if ((rc = catalog_index_put(ctx->txn, db, &p)) || (rc = s_event(ctx, "product.created", &p, &stock))
    ||  (rc = s_store(ctx, &p, 1, &out))) {
        msgpack_sbuffer_destroy(&out);
        return LMDB_FAIL(rc);
    }
    int status = s_reply_product(ctx, &out, 1, 201);
    msgpack_sbuffer_destroy(&out);
    return status;
}

static int
s_get(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    MDB_val k = { ctx->req->key.len, (void *) ctx->req->key.ptr }, v;
    if (k.mv_size == 0)
        return s_not_found(ctx);
    int rc = mdb_get(ctx->txn, db->products, &k, &v);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    if (rc || v.mv_size <= CATALOG_VERSION_BYTES)
        return LMDB_FAIL(rc ? rc : MDB_CORRUPTED);
    char etag[32];
    catalog_etag(etag, mc_be64_get(v.mv_data));
    //  the stored map is the public representation: no decode, no re-encode
    mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
    msgpack_sbuffer_write(ctx->pk->data, (const char *) v.mv_data + CATALOG_VERSION_BYTES,
                          v.mv_size - CATALOG_VERSION_BYTES);
    return 200;
}

//  Loads the product named by the routing key and checks If-Match. Returns 0 to go on, or the
//  status already replied.
static int
s_load_for_write(mc_ctx_t *ctx, msgpack_unpacked *u, catalog_product_t *p, uint64_t *version)
{
    const catalog_db_t *db = ctx->state;
    MDB_val k = { ctx->req->key.len, (void *) ctx->req->key.ptr }, v;
    if (k.mv_size == 0)
        return s_not_found(ctx);
    int rc = mdb_get(ctx->txn, db->products, &k, &v);
    if (rc == MDB_NOTFOUND)
        return s_not_found(ctx);
    if (rc)
        return LMDB_FAIL(rc);
    if (catalog_product_decode(&v, u, p, version))
        return LMDB_FAIL(MDB_CORRUPTED);
    char etag[32];
    catalog_etag(etag, *version);
    mc_str_t want = ctx->req->if_match;
    if (want.len && !mc_str_eq(want, "*") && !mc_str_eq(want, etag)) {
        mc_reply_error(ctx->pk, ctx->req->id, 412, "precondition_failed",
                       "the product has changed since the ETag in If-Match", NULL);
        return 412;
    }
    return 0;
}

int
catalog_update_store(mc_ctx_t *ctx, const catalog_product_t *old, const catalog_product_t *p, uint64_t version,
                     msgpack_sbuffer *out)
{
    const catalog_db_t *db = ctx->state;
    int rc;
    if ((rc = catalog_index_del(ctx->txn, db, old)) || (rc = catalog_index_put(ctx->txn, db, p))
    ||  (rc = s_event(ctx, "product.updated", p, NULL)))
        return rc;
    return s_store(ctx, p, version + 1, out);
}

static int
s_update(mc_ctx_t *ctx)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    catalog_product_t old;
    uint64_t version;
    int status = s_load_for_write(ctx, &u, &old, &version);
    if (status) {
        msgpack_unpacked_destroy(&u);
        return status;
    }
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    catalog_product_t p;
    catalog_product_merge(&old, ctx->req->body, (mc_str_t) { now, strlen(now) }, &p);
    if (!catalog_sku_same(old.sku, p.sku))
        status = catalog_sku_change(ctx, &old, &p, version);
    else {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        int rc = catalog_update_store(ctx, &old, &p, version, &out);
        status = rc ? LMDB_FAIL(rc) : s_reply_product(ctx, &out, version + 1, 200);
        msgpack_sbuffer_destroy(&out);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

static int
s_delete(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    catalog_product_t old;
    uint64_t version;
    int rc = s_load_for_write(ctx, &u, &old, &version);
    if (rc == 0)
        rc = catalog_sku_check_idle(ctx, old.id);
    if (rc == 0) {
        //  the event is packed before the delete: LMDB values live until the next write
        msgpack_sbuffer ev;
        msgpack_sbuffer_init(&ev);
        msgpack_packer epk;
        msgpack_packer_init(&epk, &ev, msgpack_sbuffer_write);
        msgpack_pack_map(&epk, 2);
        mc_pack_kv_str(&epk, "id", old.id.ptr, old.id.len);
        mc_pack_kv_str(&epk, "sku", old.sku.ptr, old.sku.len);
        char idbuf[64], skubuf[CATALOG_KEY_MAX];
        snprintf(idbuf, sizeof idbuf, "%.*s", (int) old.id.len, old.id.ptr);
        snprintf(skubuf, sizeof skubuf, "%.*s", (int) old.sku.len, old.sku.ptr);
        mc_str_t id = { idbuf, strlen(idbuf) };
        MDB_val k = { id.len, idbuf };
        if ((rc = mc_outbox_append(ctx, "product", id, "product.deleted", (mc_str_t) { ev.data, ev.size }))
        ||  (rc = catalog_index_del(ctx->txn, db, &old)) || (rc = mdb_del(ctx->txn, db->products, &k, NULL)))
            rc = LMDB_FAIL(rc);
        else
            rc = catalog_sku_deleted(ctx, id, (mc_str_t) { skubuf, strlen(skubuf) });
        msgpack_sbuffer_destroy(&ev);
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

static int
s_categories(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->categories, &cur);
    if (rc)
        return LMDB_FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &items, msgpack_sbuffer_write);
    size_t n = 0;
    MDB_val k, v;
    //  a category's key is its lowercase name, the same on every shard: the edge adds up the
    //  counts of one key when it gathers the list from every shard
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size < 8)
            continue;
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_str(&pk, "name", (const char *) v.mv_data + 8, v.mv_size - 8);
        mc_pack_kv_uint(&pk, "product_count", mc_be64_get(v.mv_data));
        mc_page_keys_add(&keys, k.mv_data, k.mv_size);
        n++;
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND && keys.on)
        mc_page_reply_keyed(ctx, &items, n, NULL, 0, &keys);
    else
    if (rc == MDB_NOTFOUND) {
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        msgpack_pack_array(ctx->pk, n);
        msgpack_sbuffer_write(ctx->pk->data, items.data, items.size);
    }
    rc = rc == MDB_NOTFOUND ? 200 : LMDB_FAIL(rc);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return rc;
}

//  What an order snapshots of each product: the ones that exist, in the order asked.
static int
s_snapshot(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    const msgpack_object *ids = mc_map_get(ctx->req->body, "ids");
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
    size_t n = 0;
    int rc = 0;
    for (uint32_t i = 0; ids && i < ids->via.array.size && !rc; i++) {
        mc_str_t id = mc_obj_str(&ids->via.array.ptr[i]);
        MDB_val k = { id.len, (void *) id.ptr }, v;
        if (!id.len || (rc = mdb_get(ctx->txn, db->products, &k, &v)) == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        catalog_product_t p;
        uint64_t version;
        if (!rc && !(rc = catalog_product_decode(&v, &u, &p, &version))) {
            msgpack_pack_map(&ipk, 5);
            mc_pack_kv_str(&ipk, "id", p.id.ptr, p.id.len);
            mc_pack_kv_str(&ipk, "sku", p.sku.ptr, p.sku.len);
            mc_pack_kv_str(&ipk, "name", p.name.ptr, p.name.len);
            mc_pack_kv_int(&ipk, "price_cents", p.price_cents);
            mc_pack_kv_str(&ipk, "currency", p.currency.ptr, p.currency.len);
            n++;
        }
        msgpack_unpacked_destroy(&u);
    }
    if (!rc) {
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        msgpack_pack_map(ctx->pk, 1);
        mc_pack_cstr(ctx->pk, "items");
        msgpack_pack_array(ctx->pk, n);
        msgpack_sbuffer_write(ctx->pk->data, items.data, items.size);
    }
    msgpack_sbuffer_destroy(&items);
    return rc ? LMDB_FAIL(rc) : 200;
}

static const mc_handler_t s_handlers[] = {
    { "product.snapshot", false, s_snapshot },
    { "product.create", true, s_create },
    { "product.get", false, s_get },
    { "product.update", true, s_update },
    { "product.delete", true, s_delete },
    { "product.list", false, catalog_list },
    { "category.list", false, s_categories },
    { "sku.claim", true, catalog_sku_claim_msg },
    { "sku.release", true, catalog_sku_release_msg },
    { "catalog.step", true, catalog_sku_step },
    { "catalog.tick", true, catalog_sku_tick },
};

const mc_service_t catalog_service = {
    .name = "catalog",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "catalog.step",
    .tick = "catalog.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
};
