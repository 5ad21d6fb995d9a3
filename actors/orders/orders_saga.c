/*  The reservation saga, owned by the order actor and durable in its environment.

    order.create records a saga and, once that commits, asks in parallel: each catalog shard
    holding one of the products for their names and prices, identity for the shipping address, and every inventory shard
    holding a line to reserve its lines (all or none within the shard). Each reply comes back as
    an order.step message. When every shard has reserved and the snapshots are in, the order is
    created (pending_payment) in the same transaction that ends the saga. When anything fails
    (a short line, an unknown product or address, no answer within SAGA_TIMEOUT_MS) every
    involved shard is told to release, and only when all have answered does the caller get the
    failure: so a 409 means nothing is held. Releases are idempotent and leave a mark that makes
    a late reserve a no-op, so a crash at any point ends, after restart, fully reserved or fully
    released: order.tick resends whatever has not been answered.

    Settlements (orders_settle.c) are the same idea after a state change. */
#include "orders_db.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

#define SAGA_MAGIC 0x4f534731u      //  "OSG1"

enum { SHARD_NONE, SHARD_WAITING, SHARD_RESERVED, SHARD_SHORT, SHARD_RELEASED };
enum { BLOB_REQUEST, BLOB_CATALOG, BLOB_ADDRESS, BLOB_RESULT, BLOBS };

typedef struct {
    uint32_t magic;
    uint8_t phase;              //  'r' reserving, 'x' releasing
    uint8_t catalog;            //  1 once the snapshot is in
    uint8_t address;            //  0 waiting, 1 have it, 3 unknown
    uint8_t nshort;             //  entries in the result blob while reserving
    uint8_t shard[SHARDS_MAX];  //  SHARD_*
    uint16_t result;            //  releasing: the status the caller gets
    uint64_t created, sent;     //  ms
    char user[72], role[16], idem[256];
    uint32_t len[BLOBS];
} saga_head_t;

typedef struct {
    saga_head_t h;
    msgpack_sbuffer blob[BLOBS];    //  the request body, catalog items, address, result or shorts
    char id[72];                //  the order id
} saga_t;

static void
s_saga_init(saga_t *s)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < BLOBS; i++)
        msgpack_sbuffer_init(&s->blob[i]);
}

static void
s_saga_free(saga_t *s)
{
    for (int i = 0; i < BLOBS; i++)
        msgpack_sbuffer_destroy(&s->blob[i]);
}

static int
s_saga_load(MDB_txn *txn, const orders_db_t *db, mc_str_t id, saga_t *s)
{
    s_saga_init(s);
    snprintf(s->id, sizeof s->id, "%.*s", (int) id.len, id.ptr);
    MDB_val k = { strlen(s->id), s->id }, v;
    int rc = k.mv_size ? mdb_get(txn, db->sagas, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    if (v.mv_size < sizeof s->h)
        return MDB_CORRUPTED;
    memcpy(&s->h, v.mv_data, sizeof s->h);
    size_t at = sizeof s->h;
    for (int i = 0; i < BLOBS; i++) {
        if (s->h.magic != SAGA_MAGIC || at + s->h.len[i] > v.mv_size)
            return MDB_CORRUPTED;
        if (s->h.len[i])
            msgpack_sbuffer_write(&s->blob[i], (const char *) v.mv_data + at, s->h.len[i]);
        at += s->h.len[i];
    }
    return 0;
}

static int
s_saga_save(MDB_txn *txn, const orders_db_t *db, saga_t *s)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int i = 0; i < BLOBS; i++)
        s->h.len[i] = (uint32_t) s->blob[i].size;
    msgpack_sbuffer_write(&sb, (const char *) &s->h, sizeof s->h);
    for (int i = 0; i < BLOBS; i++)
        if (s->blob[i].size)
            msgpack_sbuffer_write(&sb, s->blob[i].data, s->blob[i].size);
    MDB_val k = { strlen(s->id), s->id }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->sagas, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int
s_saga_delete(MDB_txn *txn, const orders_db_t *db, const saga_t *s)
{
    MDB_val k = { strlen(s->id), (void *) s->id };
    return mdb_del(txn, db->sagas, &k, NULL);
}

//  The saga's request body, decoded; lines receives its lines.
static int
s_request(const saga_t *s, msgpack_unpacked *u, order_line_t *lines, size_t *n)
{
    if (mc_msgpack_unpack(u, s->blob[BLOB_REQUEST].data, s->blob[BLOB_REQUEST].size))
        return MDB_CORRUPTED;
    *n = orders_lines(mc_map_get(&u->data, "items"), lines);
    return 0;
}

//  Sends a step of order `order` on behalf of (user, role); the reply comes back as an
//  order.step tagged "<order>:<kind><shard>".
static void
s_send_as(mc_ctx_t *ctx, const char *order, const char *user, const char *role, const char *service,
          unsigned shard, const char *type, char kind, const msgpack_sbuffer *body)
{
    char tag[MC_REQUEST_ID_MAX + 1], id[96];
    snprintf(tag, sizeof tag, "%.40s:%c%u", order, kind, shard);
    snprintf(id, sizeof id, "%s-%c%u", order, kind, shard);
    mc_send_t send = { .service = service, .shard = shard, .type = type, .id = { id, strlen(id) },
                       .key = { order, strlen(order) }, .user = { user, strlen(user) },
                       .role = { role, strlen(role) }, .body = body, .tag = tag };
    mc_send(ctx, &send);
}

static void
s_send(mc_ctx_t *ctx, const saga_t *s, const char *service, unsigned shard, const char *type, char kind,
       const msgpack_sbuffer *body)
{
    s_send_as(ctx, s->id, s->h.user, s->h.role, service, shard, type, kind, body);
}

void
orders_send_stock(mc_ctx_t *ctx, const char *order, const char *user, const char *role, char kind, unsigned shard,
                  const order_line_t *lines, size_t n)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += lines[i].shard == shard;
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "order_id", order);
    mc_pack_cstr(&pk, "lines");
    msgpack_pack_array(&pk, count);
    for (size_t i = 0; i < n; i++)
        if (lines[i].shard == shard) {
            msgpack_pack_map(&pk, 2);
            mc_pack_kv_str(&pk, "product_id", lines[i].product.ptr, lines[i].product.len);
            mc_pack_kv_int(&pk, "quantity", lines[i].quantity);
        }
    const char *type = kind == 'r' ? "stock.reserve" : kind == 's' ? "stock.commit" : "stock.release";
    s_send_as(ctx, order, user, role, "inventory", shard, type, kind, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/*  The snapshot comes from every catalog shard that holds one of the lines' products. Until
    the last has answered (h.catalog 0), BLOB_CATALOG holds one [shard, items] per answer; then
    their items become one array (h.catalog 1), as a saga that asked one shard always had. */

//  Which catalog shards hold the lines' products (need), and which have answered (got).
static void
s_catalog_shards(const saga_t *s, const order_line_t *lines, size_t n, bool need[SHARDS_MAX], bool got[SHARDS_MAX])
{
    memset(need, 0, SHARDS_MAX * sizeof *need);
    memset(got, 0, SHARDS_MAX * sizeof *got);
    for (size_t i = 0; i < n; i++) {
        unsigned shard = mc_shard_of("catalog", lines[i].product.ptr, lines[i].product.len);
        if (shard < SHARDS_MAX)
            need[shard] = true;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    const msgpack_sbuffer *b = &s->blob[BLOB_CATALOG];
    while (!s->h.catalog && msgpack_unpack_next(&u, b->data, b->size, &off) == MSGPACK_UNPACK_SUCCESS)
        if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2
        &&  u.data.via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER
        &&  u.data.via.array.ptr[0].via.u64 < SHARDS_MAX)
            got[u.data.via.array.ptr[0].via.u64] = true;
    msgpack_unpacked_destroy(&u);
}

//  Catalog shard `shard` answered with items: kept, and once every shard needed has answered,
//  merged. Returns whether the saga changed.
static bool
s_catalog_answer(saga_t *s, unsigned shard, const msgpack_object *items)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_line_t lines[ORDER_LINES_MAX];
    size_t n;
    bool need[SHARDS_MAX], got[SHARDS_MAX];
    if (s_request(s, &u, lines, &n) || shard >= SHARDS_MAX) {
        msgpack_unpacked_destroy(&u);
        return false;
    }
    s_catalog_shards(s, lines, n, need, got);
    msgpack_unpacked_destroy(&u);
    if (!need[shard] || got[shard])
        return false;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->blob[BLOB_CATALOG], msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, shard);
    if (items && items->type == MSGPACK_OBJECT_ARRAY)
        msgpack_pack_object(&pk, *items);
    else
        msgpack_pack_array(&pk, 0);
    got[shard] = true;
    bool all = true;
    for (unsigned i = 0; i < SHARDS_MAX; i++)
        all &= !need[i] || got[i];
    if (!all)
        return true;
    //  every answer in: one array of their items
    size_t count = 0, off = 0;
    const msgpack_sbuffer *b = &s->blob[BLOB_CATALOG];
    while (msgpack_unpack_next(&u, b->data, b->size, &off) == MSGPACK_UNPACK_SUCCESS)
        if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2
        &&  u.data.via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY)
            count += u.data.via.array.ptr[1].via.array.size;
    msgpack_sbuffer merged;
    msgpack_sbuffer_init(&merged);
    msgpack_packer_init(&pk, &merged, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, count);
    off = 0;
    while (msgpack_unpack_next(&u, b->data, b->size, &off) == MSGPACK_UNPACK_SUCCESS)
        if (u.data.type == MSGPACK_OBJECT_ARRAY && u.data.via.array.size == 2
        &&  u.data.via.array.ptr[1].type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t i = 0; i < u.data.via.array.ptr[1].via.array.size; i++)
                msgpack_pack_object(&pk, u.data.via.array.ptr[1].via.array.ptr[i]);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&s->blob[BLOB_CATALOG]);
    s->blob[BLOB_CATALOG] = merged;
    s->h.catalog = 1;
    return true;
}

//  (Re)sends every request of the saga still unanswered.
static int
s_send_pending(mc_ctx_t *ctx, saga_t *s)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_line_t lines[ORDER_LINES_MAX];
    size_t n;
    int rc = s_request(s, &u, lines, &n);
    if (rc) {
        msgpack_unpacked_destroy(&u);
        return rc;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool need[SHARDS_MAX], got[SHARDS_MAX];
    s_catalog_shards(s, lines, n, need, got);
    for (unsigned shard = 0; s->h.phase == 'r' && !s->h.catalog && shard < SHARDS_MAX; shard++) {
        if (!need[shard] || got[shard])
            continue;
        size_t count = 0;
        for (size_t i = 0; i < n; i++)
            count += mc_shard_of("catalog", lines[i].product.ptr, lines[i].product.len) == shard;
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 1);
        mc_pack_cstr(&pk, "ids");
        msgpack_pack_array(&pk, count);
        for (size_t i = 0; i < n; i++)
            if (mc_shard_of("catalog", lines[i].product.ptr, lines[i].product.len) == shard)
                mc_pack_str(&pk, lines[i].product.ptr, lines[i].product.len);
        s_send(ctx, s, "catalog", shard, "product.snapshot", 'c', &sb);
    }
    mc_str_t address_id;
    if (s->h.phase == 'r' && s->h.address == 0 && mc_map_str(&u.data, "shipping_address_id", &address_id) == 0) {
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 1);
        mc_pack_kv_str(&pk, "id", address_id.ptr, address_id.len);
        unsigned shard = mc_fnv1a32(s->h.user, strlen(s->h.user)) % mc_schema_shards("identity");
        s_send(ctx, s, "identity", shard, "address.get", 'a', &sb);
    }
    for (unsigned shard = 0; shard < SHARDS_MAX; shard++)
        if (s->h.shard[shard] == SHARD_WAITING)
            orders_send_stock(ctx, s->id, s->h.user, s->h.role, s->h.phase == 'r' ? 'r' : 'y', shard, lines, n);
    s->h.sent = ctx->req->time;
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked_destroy(&u);
    return 0;
}

int
orders_saga_start(mc_ctx_t *ctx, const order_line_t *lines, size_t n)
{
    const orders_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    saga_t s;
    s_saga_init(&s);
    snprintf(s.id, sizeof s.id, "%.*s", (int) req->id.len, req->id.ptr);
    s.h.magic = SAGA_MAGIC;
    s.h.phase = 'r';
    s.h.created = req->time;
    snprintf(s.h.user, sizeof s.h.user, "%.*s", (int) req->user.len, req->user.ptr);
    snprintf(s.h.role, sizeof s.h.role, "%.*s", (int) req->role.len, req->role.ptr);
    snprintf(s.h.idem, sizeof s.h.idem, "%.*s", (int) req->idem.len, req->idem.ptr);
    for (size_t i = 0; i < n; i++)
        s.h.shard[lines[i].shard] = SHARD_WAITING;
    //  the request as the saga will read it: lines merged, the address inline when given
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s.blob[BLOB_REQUEST], msgpack_sbuffer_write);
    const msgpack_object *b = req->body;
    mc_str_t address_id, notes;
    const msgpack_object *address = mc_map_get(b, "shipping_address");
    bool has_id = mc_map_str(b, "shipping_address_id", &address_id) == 0;
    bool has_notes = mc_map_str(b, "notes", &notes) == 0;
    msgpack_pack_map(&pk, 2 + has_notes);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_str(&pk, "product_id", lines[i].product.ptr, lines[i].product.len);
        mc_pack_kv_int(&pk, "quantity", lines[i].quantity);
    }
    if (has_id)
        mc_pack_kv_str(&pk, "shipping_address_id", address_id.ptr, address_id.len);
    else {
        mc_pack_cstr(&pk, "shipping_address");
        msgpack_pack_object(&pk, *address);
        s.h.address = 1;
        msgpack_packer apk;
        msgpack_packer_init(&apk, &s.blob[BLOB_ADDRESS], msgpack_sbuffer_write);
        msgpack_pack_object(&apk, *address);
    }
    if (has_notes)
        mc_pack_kv_str(&pk, "notes", notes.ptr, notes.len);
    int rc = s_send_pending(ctx, &s);
    if (!rc)
        rc = s_saga_save(ctx->txn, db, &s);
    if (!rc)
        rc = orders_pending_put(ctx->txn, db, (mc_str_t) { s.h.user, strlen(s.h.user) }, s.h.created,
                                (mc_str_t) { s.id, strlen(s.id) }, s.h.created + db->ttl_ms);
    s_saga_free(&s);
    return rc;
}

//  The stored outcome goes to everyone waiting, and to the Idempotency-Key record.
static int
s_finish(mc_ctx_t *ctx, saga_t *s, int status, bool error, const void *raw, size_t len)
{
    const orders_db_t *db = ctx->state;
    mc_answer_raw(ctx, s->id, status, error, raw, len);
    int rc = 0;
    if (s->h.idem[0])
        rc = mc_idem_finish(ctx->txn, &db->idem, (mc_str_t) { s->h.user, strlen(s->h.user) },
                            (mc_str_t) { s->h.idem, strlen(s->h.idem) }, status, error, raw, len);
    return rc ? rc : s_saga_delete(ctx->txn, db, s);
}

//  Something failed: release every involved shard; the caller hears once all have.
static void
s_fail(mc_ctx_t *ctx, saga_t *s, int status, const char *code, const char *detail, const mc_errors_t *errs)
{
    msgpack_sbuffer_clear(&s->blob[BLOB_RESULT]);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->blob[BLOB_RESULT], msgpack_sbuffer_write);
    mc_pack_error(&pk, code, detail, errs);
    s->h.phase = 'x';
    s->h.result = (uint16_t) status;
    for (unsigned i = 0; i < SHARDS_MAX; i++)
        if (s->h.shard[i] != SHARD_NONE)
            s->h.shard[i] = SHARD_WAITING;
}

//  Finds the catalog's snapshot of product in items, or NULL.
static const msgpack_object *
s_snapshot(const msgpack_object *items, mc_str_t product)
{
    for (uint32_t i = 0; items && items->type == MSGPACK_OBJECT_ARRAY && i < items->via.array.size; i++) {
        mc_str_t id;
        if (mc_map_str(&items->via.array.ptr[i], "id", &id) == 0 && id.len == product.len
        &&  memcmp(id.ptr, product.ptr, id.len) == 0)
            return &items->via.array.ptr[i];
    }
    return NULL;
}

//  Every line reserved and every snapshot in: the order exists from this commit on.
static int
s_create_order(mc_ctx_t *ctx, saga_t *s, const msgpack_object *request, const order_line_t *lines, size_t n,
               const msgpack_object *catalog)
{
    const orders_db_t *db = ctx->state;
    msgpack_sbuffer value;
    msgpack_sbuffer_init(&value);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &value, msgpack_sbuffer_write);
    //  the items, priced from the snapshot
    msgpack_pack_array(&pk, n);
    int64_t total = 0;
    mc_str_t currency = MC_STR("USD");
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *p = s_snapshot(catalog, lines[i].product);
        mc_str_t sku = { "", 0 }, name = { "", 0 };
        int64_t price = 0;
        mc_map_str(p, "sku", &sku);
        mc_map_str(p, "name", &name);
        mc_map_int(p, "price_cents", &price);
        mc_map_str(p, "currency", &currency);
        msgpack_pack_map(&pk, 6);
        mc_pack_kv_str(&pk, "product_id", lines[i].product.ptr, lines[i].product.len);
        mc_pack_kv_str(&pk, "sku", sku.ptr, sku.len);
        mc_pack_kv_str(&pk, "name", name.ptr, name.len);
        mc_pack_kv_int(&pk, "quantity", lines[i].quantity);
        mc_pack_kv_int(&pk, "unit_price_cents", price);
        mc_pack_kv_int(&pk, "line_total_cents", price * lines[i].quantity);
        total += price * lines[i].quantity;
    }
    msgpack_unpacked items, address;
    msgpack_unpacked_init(&items);
    msgpack_unpacked_init(&address);
    int rc = mc_msgpack_unpack(&items, value.data, value.size)
             || mc_msgpack_unpack(&address, s->blob[BLOB_ADDRESS].data, s->blob[BLOB_ADDRESS].size) ? MDB_CORRUPTED : 0;
    char created[32], expires[32];
    mc_rfc3339(created, sizeof created, s->h.created);
    mc_rfc3339(expires, sizeof expires, s->h.created + db->ttl_ms);
    order_t o = {
        .version = 1, .id = { s->id, strlen(s->id) }, .user_id = { s->h.user, strlen(s->h.user) },
        .status = MC_STR("pending_payment"), .currency = currency, .total_cents = total,
        .created_at = { created, strlen(created) }, .updated_at = { created, strlen(created) },
        .expires_at = { expires, strlen(expires) }, .items = &items.data, .address = &address.data,
        .created_ms = s->h.created, .expires_ms = s->h.created + db->ttl_ms,
    };
    mc_map_str(request, "notes", &o.notes);
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer bpk;
    msgpack_packer_init(&bpk, &body, msgpack_sbuffer_write);
    if (!rc) {
        orders_pack(&bpk, &o);
        rc = orders_store(ctx->txn, db, &o);
    }
    if (!rc)
        rc = orders_event(ctx, "order.created", &o);
    if (!rc)
        rc = s_finish(ctx, s, 201, false, body.data, body.size);
    msgpack_sbuffer_destroy(&body);
    msgpack_unpacked_destroy(&items);
    msgpack_unpacked_destroy(&address);
    msgpack_sbuffer_destroy(&value);
    return rc;
}

//  Looks at what the saga knows and moves it on: wait, fail, create, or finish releasing.
static int
s_advance(mc_ctx_t *ctx, saga_t *s)
{
    const orders_db_t *db = ctx->state;
    if (s->h.phase == 'x') {
        for (unsigned i = 0; i < SHARDS_MAX; i++)
            if (s->h.shard[i] == SHARD_WAITING)
                return s_saga_save(ctx->txn, db, s);
        //  released: no order will come of it, and the customer's slot is free again
        int rc = orders_pending_del(ctx->txn, db, (mc_str_t) { s->h.user, strlen(s->h.user) }, s->h.created,
                                    (mc_str_t) { s->id, strlen(s->id) });
        if (rc)
            return rc;
        return s_finish(ctx, s, s->h.result, true, s->blob[BLOB_RESULT].data, s->blob[BLOB_RESULT].size);
    }
    msgpack_unpacked req, cat;
    msgpack_unpacked_init(&req);
    msgpack_unpacked_init(&cat);
    order_line_t lines[ORDER_LINES_MAX];
    size_t n;
    int rc = s_request(s, &req, lines, &n);
    if (!rc && s->h.catalog && mc_msgpack_unpack(&cat, s->blob[BLOB_CATALOG].data, s->blob[BLOB_CATALOG].size))
        rc = MDB_CORRUPTED;
    if (rc)
        goto done;
    mc_errors_t errs = { 0 };
    bool waiting = false, shorts = false, failed = false;
    for (unsigned i = 0; i < SHARDS_MAX; i++) {
        waiting |= s->h.shard[i] == SHARD_WAITING;
        shorts |= s->h.shard[i] == SHARD_SHORT;
    }
    if (s->h.address == 3) {
        mc_errors_add(&errs, "shipping_address_id", "is not one of your addresses");
        s_fail(ctx, s, 422, "validation_failed", "the request has invalid fields", &errs);
        failed = true;
    }
    mc_str_t currency = { "", 0 };
    for (size_t i = 0; !failed && s->h.catalog && i < n; i++) {
        const msgpack_object *p = s_snapshot(&cat.data, lines[i].product);
        mc_str_t c = { "", 0 };
        char field[48];
        snprintf(field, sizeof field, "items[%zu].product_id", i);
        if (!p)
            mc_errors_add(&errs, field, "is not a product in the catalog");
        else
        if (mc_map_str(p, "currency", &c) == 0 && currency.len
        &&  !(c.len == currency.len && memcmp(c.ptr, currency.ptr, c.len) == 0))
            mc_errors_add(&errs, field, "is priced in another currency than the other items");
        else
            currency = c;
    }
    if (!failed && errs.count) {
        s_fail(ctx, s, 422, "validation_failed", "the request has invalid fields", &errs);
        failed = true;
    }
    //  a short line fails the order only once every answer is in: an unknown product or
    //  address (422) says more than the stock of a product that does not exist
    if (!failed && !waiting && shorts && s->h.catalog && s->h.address != 0) {
        //  name every short product, as the shards reported them
        msgpack_unpacked sh;
        msgpack_unpacked_init(&sh);
        char detail[512] = "not enough stock for:";
        size_t off = 0, dl = strlen(detail);
        const msgpack_sbuffer *b = &s->blob[BLOB_RESULT];
        for (int k = 0; k < s->h.nshort && msgpack_unpack_next(&sh, b->data, b->size, &off) == MSGPACK_UNPACK_SUCCESS; k++) {
            mc_str_t product = { "", 0 }, message = { "", 0 };
            mc_map_str(&sh.data, "field", &product);
            mc_map_str(&sh.data, "message", &message);
            size_t line = 0;
            while (line < n && !(lines[line].product.len == product.len
                                 && memcmp(lines[line].product.ptr, product.ptr, product.len) == 0))
                line++;
            char field[48];
            snprintf(field, sizeof field, "items[%zu].quantity", line);
            mc_errors_add(&errs, field, "product %.*s: %.*s", (int) product.len, product.ptr, (int) message.len,
                          message.ptr);
            dl += (size_t) snprintf(detail + dl, dl < sizeof detail ? sizeof detail - dl : 0, "%s %.*s",
                                    k ? "," : "", (int) product.len, product.ptr);
            if (dl >= sizeof detail)
                dl = sizeof detail - 1;
        }
        msgpack_unpacked_destroy(&sh);
        s_fail(ctx, s, 409, "out_of_stock", detail, &errs);
        failed = true;
    }
    if (failed) {
        rc = s_send_pending(ctx, s);
        if (!rc)
            rc = s_saga_save(ctx->txn, db, s);
    }
    else
    if (waiting || !s->h.catalog || s->h.address == 0)
        rc = s_saga_save(ctx->txn, db, s);
    else
        rc = s_create_order(ctx, s, &req.data, lines, n, &cat.data);
done:
    msgpack_unpacked_destroy(&req);
    msgpack_unpacked_destroy(&cat);
    return rc;
}

int
orders_step(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    mc_str_t tag;
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    const char *colon = memchr(tag.ptr, ':', tag.len);
    int rc = 0;
    if (colon && (size_t) (colon - tag.ptr) + 2 <= tag.len) {
        mc_str_t id = { tag.ptr, (size_t) (colon - tag.ptr) };
        char kind = colon[1];
        unsigned shard = 0;
        for (const char *p = colon + 2; p < tag.ptr + tag.len && *p >= '0' && *p <= '9'; p++)
            shard = shard * 10 + (unsigned) (*p - '0');
        if (kind == 'x' || kind == 's')
            rc = orders_settle_step(ctx, id, shard, (int) status);
        else {
            saga_t s;
            rc = s_saga_load(ctx->txn, db, id, &s);
            bool changed = false;
            const msgpack_object *body = mc_map_get(ctx->req->body, "body");
            const msgpack_object *error = mc_map_get(ctx->req->body, "error");
            if (rc == 0 && shard < SHARDS_MAX) {
                if (kind == 'c' && status == 200 && s.h.phase == 'r' && !s.h.catalog && body)
                    changed = s_catalog_answer(&s, shard, mc_map_get(body, "items"));
                else
                if (kind == 'a' && s.h.phase == 'r' && s.h.address == 0 && (status == 200 || status == 404)) {
                    s.h.address = status == 200 ? 1 : 3;
                    if (status == 200 && body) {
                        //  the address as it is now, without the address book's own fields
                        msgpack_packer pk;
                        msgpack_packer_init(&pk, &s.blob[BLOB_ADDRESS], msgpack_sbuffer_write);
                        static const char *const keep[] = { "name", "line1", "line2", "city", "postal_code", "country" };
                        msgpack_pack_map(&pk, 6);
                        for (int i = 0; i < 6; i++) {
                            mc_str_t v = { "", 0 };
                            mc_map_str(body, keep[i], &v);
                            mc_pack_kv_str(&pk, keep[i], v.ptr, v.len);
                        }
                    }
                    changed = true;
                }
                else
                if (kind == 'r' && s.h.phase == 'r' && s.h.shard[shard] == SHARD_WAITING
                &&  (status == 200 || status == 409)) {
                    s.h.shard[shard] = status == 200 ? SHARD_RESERVED : SHARD_SHORT;
                    const msgpack_object *errs = error ? mc_map_get(error, "errors") : NULL;
                    msgpack_packer pk;
                    msgpack_packer_init(&pk, &s.blob[BLOB_RESULT], msgpack_sbuffer_write);
                    for (uint32_t i = 0; errs && errs->type == MSGPACK_OBJECT_ARRAY && i < errs->via.array.size
                         && s.h.nshort < 100; i++, s.h.nshort++)
                        msgpack_pack_object(&pk, errs->via.array.ptr[i]);
                    changed = true;
                }
                else
                if (kind == 'y' && s.h.phase == 'x' && s.h.shard[shard] == SHARD_WAITING && status == 200) {
                    s.h.shard[shard] = SHARD_RELEASED;
                    changed = true;
                }
            }
            if (changed)
                rc = s_advance(ctx, &s);
            s_saga_free(&s);
            if (rc == MDB_NOTFOUND)
                rc = 0;     //  a late reply to a saga that has ended
        }
    }
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}

size_t
orders_keys(MDB_txn *txn, MDB_dbi dbi, char (*keys)[72], size_t max)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, dbi, &cur))
        return 0;
    MDB_val k, v;
    size_t n = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (k.mv_size < sizeof keys[0]) {
            memcpy(keys[n], k.mv_data, k.mv_size);
            keys[n++][k.mv_size] = 0;
        }
    mdb_cursor_close(cur);
    return n;
}

static int
s_tick_sagas(mc_ctx_t *ctx, uint64_t now)
{
    const orders_db_t *db = ctx->state;
    char keys[TICK_MAX][72];
    size_t n = orders_keys(ctx->txn, db->sagas, keys, TICK_MAX);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        saga_t s;
        rc = s_saga_load(ctx->txn, db, (mc_str_t) { keys[i], strlen(keys[i]) }, &s);
        if (!rc && s.h.sent + RESEND_MS <= now) {
            if (s.h.phase == 'r' && s.h.created + SAGA_TIMEOUT_MS <= now)
                s_fail(ctx, &s, 503, "saga_timeout", "the stock could not be reserved in time; try again", NULL);
            if (!(rc = s_send_pending(ctx, &s)))
                rc = s_saga_save(ctx->txn, db, &s);
        }
        s_saga_free(&s);
    }
    return rc;
}

//  Unpaid orders whose time is up expire, releasing their stock.
static int
s_tick_expiry(mc_ctx_t *ctx, uint64_t now)
{
    const orders_db_t *db = ctx->state;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->expiry, &cur);
    if (rc)
        return rc;
    char keys[64][80];
    size_t lens[64], n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < 64; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 8 || mc_be64_get(k.mv_data) > now || k.mv_size >= sizeof keys[0])
            break;
        memcpy(keys[n], k.mv_data, k.mv_size);
        lens[n++] = k.mv_size;
    }
    mdb_cursor_close(cur);
    rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        order_t o;
        if (!(rc = orders_load(ctx->txn, db, (mc_str_t) { keys[i] + 8, lens[i] - 8 }, &u, &o)))
            rc = orders_transition(ctx, &o, "expired", NULL);
        msgpack_unpacked_destroy(&u);
        if (rc == 409 || rc == MDB_NOTFOUND) {
            //  an index entry left behind by an order no longer pending
            MDB_val ek = { lens[i], keys[i] };
            rc = mdb_del(ctx->txn, db->expiry, &ek, NULL);
            rc = rc == MDB_NOTFOUND ? 0 : rc;
        }
    }
    return rc;
}

int
orders_tick(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    uint64_t now = ctx->req->time;
    int rc = s_tick_sagas(ctx, now);
    if (!rc)
        rc = s_tick_expiry(ctx, now);
    if (!rc)
        rc = orders_settle_tick(ctx, now);
    if (!rc)
        rc = mc_idem_prune(ctx->txn, &db->idem, now, 100);
    if (rc)
        return FAIL(rc);
    return mc_reply_empty(ctx, 200);
}
