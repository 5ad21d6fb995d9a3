#include "shipping_db.h"

#include "mc_outbox.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    (void) data_dir;
    shipping_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "shipments", "moves", "processed" };
    MDB_dbi *const dbis[] = { &db->shipments, &db->moves, &db->processed };
    int rc = mc_store_dbis(store, names, dbis, 3);
    if (rc) {
        free(db);
        return rc;
    }
    *state = db;
    return 0;
}

int
shipping_load(MDB_txn *txn, const shipping_db_t *db, mc_str_t order_id, msgpack_unpacked *u, shipment_t *s)
{
    memset(s, 0, sizeof *s);
    MDB_val k = { order_id.len, (void *) order_id.ptr }, v;
    int rc = order_id.len ? mdb_get(txn, db->shipments, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    if (mc_msgpack_unpack(u, v.mv_data, v.mv_size))
        return MDB_CORRUPTED;
    const msgpack_object *m = &u->data;
    if (mc_map_str(m, "order_id", &s->order_id) || mc_map_str(m, "user_id", &s->user_id)
    ||  mc_map_str(m, "status", &s->status) || mc_map_str(m, "carrier", &s->carrier)
    ||  mc_map_str(m, "tracking_number", &s->tracking_number) || mc_map_str(m, "created_at", &s->created_at))
        return MDB_CORRUPTED;
    s->events = mc_map_get(m, "events");
    return s->events && s->events->type == MSGPACK_OBJECT_ARRAY ? 0 : MDB_CORRUPTED;
}

int
shipping_record(mc_ctx_t *ctx, const shipment_t *s, const char *status, const char *event, msgpack_sbuffer *out)
{
    const shipping_db_t *db = ctx->state;
    char at[32];
    mc_rfc3339(at, sizeof at, ctx->req->time);
    uint32_t n = s->events ? s->events->via.array.size : 0;
    //  out is a copy: s may point into the record the put below rewrites
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    mc_pack_kv_str(&pk, "order_id", s->order_id.ptr, s->order_id.len);
    mc_pack_kv_str(&pk, "user_id", s->user_id.ptr, s->user_id.len);
    mc_pack_kv_cstr(&pk, "status", status);
    mc_pack_kv_str(&pk, "carrier", s->carrier.ptr, s->carrier.len);
    mc_pack_kv_str(&pk, "tracking_number", s->tracking_number.ptr, s->tracking_number.len);
    mc_pack_cstr(&pk, "events");
    msgpack_pack_array(&pk, n + 1);
    for (uint32_t i = 0; i < n; i++)
        msgpack_pack_object(&pk, s->events->via.array.ptr[i]);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "status", status);
    mc_pack_kv_cstr(&pk, "at", at);
    if (s->created_at.len)
        mc_pack_kv_str(&pk, "created_at", s->created_at.ptr, s->created_at.len);
    else
        mc_pack_kv_cstr(&pk, "created_at", at);
    mc_pack_kv_cstr(&pk, "updated_at", at);
    char id[72];
    snprintf(id, sizeof id, "%.*s", (int) s->order_id.len, s->order_id.ptr);
    MDB_val k = { strlen(id), id }, v = { out->size, out->data };
    int rc = mdb_put(ctx->txn, db->shipments, &k, &v, 0);
    if (!rc)
        rc = mc_outbox_append(ctx, "shipping", (mc_str_t) { id, strlen(id) }, event,
                              (mc_str_t) { out->data, out->size });
    return rc;
}

//  FNV-1a, 64 bits: the tracking number's digits.
static uint64_t
s_fnv1a64(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char) p[i]) * 0x100000001b3ull;
    return h;
}

//  The carrier and tracking number of an order's shipment: a function of the order id alone,
//  so a replayed order.paid labels it the same way.
static void
s_label(mc_str_t order_id, const char **carrier, char *tracking, size_t size)
{
    static const struct {
        const char *name, *prefix;
    } carriers[] = { { "UPS", "1Z" }, { "FedEx", "FX" }, { "DHL", "JD" } };
    size_t which = mc_fnv1a32(order_id.ptr, order_id.len) % (sizeof carriers / sizeof *carriers);
    *carrier = carriers[which].name;
    snprintf(tracking, size, "%s%016" PRIu64, carriers[which].prefix,
             s_fnv1a64(order_id.ptr, order_id.len) % UINT64_C(10000000000000000));
}

//  An order.paid: its order's shipment, unless it has one. 0 or an LMDB error; *refused when
//  the event names no owner.
static int
s_schedule(mc_ctx_t *ctx, mc_str_t order_id, const msgpack_object *data, bool *refused)
{
    const shipping_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    shipment_t s;
    int rc = shipping_load(ctx->txn, db, order_id, &u, &s);
    msgpack_unpacked_destroy(&u);
    if (rc != MDB_NOTFOUND)
        return rc;
    memset(&s, 0, sizeof s);
    s.order_id = order_id;
    *refused = mc_map_str(data, "user_id", &s.user_id) || !s.user_id.len;
    if (*refused)
        return 0;
    const char *carrier;
    char tracking[32];
    s_label(order_id, &carrier, tracking, sizeof tracking);
    s.carrier = (mc_str_t) { carrier, strlen(carrier) };
    s.tracking_number = (mc_str_t) { tracking, strlen(tracking) };
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    rc = shipping_record(ctx, &s, "scheduled", "shipment.scheduled", &out);
    msgpack_sbuffer_destroy(&out);
    return rc;
}

static int
s_event(mc_ctx_t *ctx)
{
    const shipping_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t event_id = { "", 0 }, type = { "", 0 }, order_id = { "", 0 };
    mc_map_str(b, "event_id", &event_id);
    mc_map_str(b, "type", &type);
    mc_map_str(b, "key", &order_id);
    int rc = mc_store_once(ctx->txn, db->processed, event_id.ptr, event_id.len);
    bool duplicate = rc == MDB_KEYEXIST;
    if (rc && !duplicate)
        return FAIL(rc);
    bool refused = false;
    if (!duplicate && mc_str_eq(type, "order.paid") && (rc = s_schedule(ctx, order_id, mc_map_get(b, "data"), &refused)))
        return FAIL(rc);
    if (refused) {
        mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "an order.paid event without its user_id",
                       NULL);
        return 422;
    }
    //  a redelivery was applied already, and saying so lets the consumer move on
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 1);
    mc_pack_kv_bool(ctx->pk, "duplicate", duplicate);
    return 200;
}

static int
s_get(mc_ctx_t *ctx)
{
    const mc_request_t *req = ctx->req;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    shipment_t s;
    int rc = shipping_load(ctx->txn, ctx->state, req->key, &u, &s);
    int status;
    //  someone else's shipment is as unknown as a missing one
    if (rc == MDB_NOTFOUND
    ||  (!rc && !mc_str_eq(req->role, "admin")
         && !(req->user.len == s.user_id.len && memcmp(req->user.ptr, s.user_id.ptr, s.user_id.len) == 0))) {
        mc_reply_error(ctx->pk, req->id, 404, "shipment_not_found", "no shipment for this order", NULL);
        status = 404;
    }
    else
    if (rc)
        status = FAIL(rc);
    else {
        //  a shipment changes only by gaining a history entry
        char etag[32];
        snprintf(etag, sizeof etag, "\"s%" PRIu32 "\"", s.events->via.array.size);
        mc_reply_begin(ctx->pk, req->id, 200, etag);
        msgpack_pack_object(ctx->pk, u.data);
        status = 200;
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

static const mc_handler_t s_handlers[] = {
    { "shipment.event", true, s_event },
    { "shipment.get", false, s_get },
    { "shipment.advance", true, shipping_advance },
    { "shipment.step", true, shipping_step },
    { "shipment.tick", true, shipping_tick },
};

//  shipment.event acts on order.paid only (a shipment is scheduled)
static bool
s_wants_event(mc_str_t type)
{
    return mc_str_eq(type, "order.paid");
}

const mc_service_t shipping_service = {
    .name = "shipping",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "shipment.step",
    .tick = "shipment.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
    .wants_event = s_wants_event,
};
