/*  The stored and public order, and the reads: order.get and order.list (newest first). */
#include "orders_db.h"

#include "mc_outbox.h"
#include "mc_page.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

//  Stored value: version, created ms, expires ms (8 bytes each, big-endian), then the public map.
#define HEAD 24

int
orders_load(MDB_txn *txn, const orders_db_t *db, mc_str_t id, msgpack_unpacked *u, order_t *o)
{
    memset(o, 0, sizeof *o);
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = id.len ? mdb_get(txn, db->orders, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    const unsigned char *p = v.mv_data;
    if (v.mv_size <= HEAD || mc_msgpack_unpack(u, p + HEAD, v.mv_size - HEAD))
        return MDB_CORRUPTED;
    o->version = mc_be64_get(p);
    o->created_ms = mc_be64_get(p + 8);
    o->expires_ms = mc_be64_get(p + 16);
    const msgpack_object *m = &u->data;
    if (mc_map_str(m, "id", &o->id) || mc_map_str(m, "user_id", &o->user_id) || mc_map_str(m, "status", &o->status)
    ||  mc_map_str(m, "currency", &o->currency) || mc_map_int(m, "total_cents", &o->total_cents)
    ||  mc_map_str(m, "created_at", &o->created_at) || mc_map_str(m, "updated_at", &o->updated_at)
    ||  mc_map_str(m, "expires_at", &o->expires_at))
        return MDB_CORRUPTED;
    mc_map_str(m, "notes", &o->notes);
    o->items = mc_map_get(m, "items");
    o->address = mc_map_get(m, "shipping_address");
    return o->items && o->items->type == MSGPACK_OBJECT_ARRAY ? 0 : MDB_CORRUPTED;
}

void
orders_pack(msgpack_packer *pk, const order_t *o)
{
    msgpack_pack_map(pk, 11);
    mc_pack_kv_str(pk, "id", o->id.ptr, o->id.len);
    mc_pack_kv_str(pk, "user_id", o->user_id.ptr, o->user_id.len);
    mc_pack_kv_str(pk, "status", o->status.ptr, o->status.len);
    mc_pack_cstr(pk, "items");
    msgpack_pack_object(pk, *o->items);
    mc_pack_kv_int(pk, "total_cents", o->total_cents);
    mc_pack_kv_str(pk, "currency", o->currency.ptr, o->currency.len);
    mc_pack_cstr(pk, "shipping_address");
    if (o->address)
        msgpack_pack_object(pk, *o->address);
    else
        msgpack_pack_nil(pk);
    mc_pack_cstr(pk, "notes");
    if (o->notes.len)
        mc_pack_str(pk, o->notes.ptr, o->notes.len);
    else
        msgpack_pack_nil(pk);
    mc_pack_kv_str(pk, "created_at", o->created_at.ptr, o->created_at.len);
    mc_pack_kv_str(pk, "updated_at", o->updated_at.ptr, o->updated_at.len);
    mc_pack_kv_str(pk, "expires_at", o->expires_at.ptr, o->expires_at.len);
}

int
orders_store(MDB_txn *txn, const orders_db_t *db, const order_t *o)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    unsigned char head[HEAD];
    mc_be64_put(head, o->version);
    mc_be64_put(head + 8, o->created_ms);
    mc_be64_put(head + 16, o->expires_ms);
    msgpack_sbuffer_write(&sb, (const char *) head, HEAD);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    orders_pack(&pk, o);
    //  o points into the stored record, which the writes below may move: copy what the index
    //  keys need first
    unsigned char ukey[200], tkey[120], ekey[120];
    size_t ulen = mc_store_time_key(ukey, o->user_id.ptr, o->user_id.len, o->created_ms, o->id.ptr, o->id.len);
    size_t tlen = mc_store_time_key(tkey, NULL, 0, o->created_ms, o->id.ptr, o->id.len);
    size_t elen = mc_store_time_key(ekey, NULL, 0, o->expires_ms, o->id.ptr, o->id.len);
    bool pending = mc_str_eq(o->status, "pending_payment");
    char uid[ORDER_USER_MAX + 1];
    snprintf(uid, sizeof uid, "%.*s", (int) o->user_id.len, o->user_id.ptr);
    mc_str_t user = { uid, strlen(uid) };
    char id[72];
    snprintf(id, sizeof id, "%.*s", (int) o->id.len, o->id.ptr);
    MDB_val k = { strlen(id), id }, v = { sb.size, sb.data }, empty = { 0, "" };
    MDB_val uk = { ulen, ukey }, tk = { tlen, tkey }, ek = { elen, ekey };
    int rc = mdb_put(txn, db->orders, &k, &v, 0);
    if (!rc)
        rc = mdb_put(txn, db->by_user, &uk, &empty, 0);
    if (!rc)
        rc = mdb_put(txn, db->by_time, &tk, &empty, 0);
    if (!rc) {
        rc = pending ? mdb_put(txn, db->expiry, &ek, &empty, 0) : mdb_del(txn, db->expiry, &ek, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (!rc)
        rc = pending ? orders_pending_put(txn, db, user, o->created_ms, (mc_str_t) { id, strlen(id) }, o->expires_ms)
                     : orders_pending_del(txn, db, user, o->created_ms, (mc_str_t) { id, strlen(id) });
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int
orders_event(mc_ctx_t *ctx, const char *type, const order_t *o)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    orders_pack(&pk, o);
    int rc = mc_outbox_append(ctx, "order", o->id, type, (mc_str_t) { sb.data, sb.size });
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

size_t
orders_lines(const msgpack_object *items, order_line_t *lines)
{
    size_t n = 0;
    for (uint32_t i = 0; items && i < items->via.array.size && n < ORDER_LINES_MAX; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        if (mc_map_str(it, "product_id", &lines[n].product) || mc_map_int(it, "quantity", &lines[n].quantity))
            continue;
        lines[n].shard = mc_shard_of("inventory", lines[n].product.ptr, lines[n].product.len);
        n++;
    }
    return n;
}

bool
orders_visible(const mc_request_t *req, const order_t *o)
{
    return mc_str_eq(req->role, "admin") || mc_str_eq(req->role, "system") || (req->user.len && req->user.len == o->user_id.len
                                             && memcmp(req->user.ptr, o->user_id.ptr, o->user_id.len) == 0);
}

int
orders_answer(mc_ctx_t *ctx, const char *key, mc_str_t id, int status)
{
    const orders_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, db, id, &u, &o);
    if (!rc)
        orders_pack(mc_answer(ctx, key, status), &o);
    msgpack_unpacked_destroy(&u);
    return rc;
}

static int
s_not_found(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 404, "order_not_found", "no such order", NULL);
    return 404;
}

int
orders_get(mc_ctx_t *ctx)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    int rc = orders_load(ctx->txn, ctx->state, ctx->req->key, &u, &o);
    int status;
    if (rc == MDB_NOTFOUND || (!rc && !orders_visible(ctx->req, &o)))
        status = s_not_found(ctx);
    else
    if (rc)
        status = FAIL(rc);
    else {
        char etag[32];
        snprintf(etag, sizeof etag, "\"o%" PRIu64 "\"", o.version);
        mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
        orders_pack(ctx->pk, &o);
        status = 200;
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  RFC 3339 to unix ms; false when s is not one.
static bool
s_parse_time(mc_str_t s, uint64_t *ms)
{
    char buf[64];
    if (s.len < 20 || s.len >= sizeof buf)
        return false;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    struct tm tm = { 0 };
    int consumed = 0;
    if (sscanf(buf, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
               &tm.tm_sec, &consumed) != 6 || consumed != 19)
        return false;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59
    ||  tm.tm_sec > 60)
        return false;
    const char *p = buf + 19;
    uint64_t frac = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (uint64_t) (*p - '0');
        if (!digits)
            return false;
        for (; digits < 3; digits++)
            frac *= 10;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z')
        p++;
    else
    if ((*p == '+' || *p == '-') && p[1] && p[2] && p[3] == ':' && p[4] && p[5]) {
        int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');
        if (h > 23 || m > 59)
            return false;
        offset = (*p == '+' ? 1 : -1) * (h * 3600L + m * 60L);
        p += 6;
    }
    else
        return false;
    if (*p)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t < 0 || t - offset < 0)
        return false;
    *ms = (uint64_t) (t - offset) * 1000 + frac;
    return true;
}

static int
s_invalid(mc_ctx_t *ctx, const char *field, const char *message)
{
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, field, "%s", message);
    mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "the request has invalid fields", &errs);
    return 422;
}

//  An order on its page, when it has the status asked for (*arg, empty: any).
static bool
s_visit(mc_ctx_t *ctx, mc_str_t id, msgpack_packer *pk, void *arg)
{
    const mc_str_t *status = arg;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    order_t o;
    bool shown = orders_load(ctx->txn, ctx->state, id, &u, &o) == 0
              && (!status->len || (status->len == o.status.len && memcmp(status->ptr, o.status.ptr, status->len) == 0));
    if (shown)
        orders_pack(pk, &o);
    msgpack_unpacked_destroy(&u);
    return shown;
}

int
orders_list(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    bool admin = mc_str_eq(ctx->req->role, "admin");
    mc_str_t status = { "", 0 }, user = { "", 0 }, from_s = { "", 0 }, to_s = { "", 0 }, cursor = { "", 0 };
    int64_t limit = 20;
    mc_map_str(b, "status", &status);
    mc_map_str(b, "user_id", &user);
    mc_map_str(b, "from", &from_s);
    mc_map_str(b, "to", &to_s);
    mc_map_str(b, "cursor", &cursor);
    mc_map_int(b, "limit", &limit);
    if (!admin)
        user = ctx->req->user;     //  a customer sees only their own, whatever they ask for
    if (!user.len && !admin)
        return s_not_found(ctx);
    uint64_t from = 0, to = UINT64_MAX - 1;
    if (from_s.len && !s_parse_time(from_s, &from))
        return s_invalid(ctx, "from", "must be an RFC 3339 date-time");
    if (to_s.len && !s_parse_time(to_s, &to))
        return s_invalid(ctx, "to", "must be an RFC 3339 date-time");
    if (user.len > 100)
        return s_invalid(ctx, "user_id", "is too long");
    //  the index: by user when there is one, else by time; both end in created ms + id
    char prefix[101];
    memcpy(prefix, user.ptr, user.len);
    prefix[user.len] = 0;
    mc_page_t page = { .dbi = user.len ? db->by_user : db->by_time, .prefix = { prefix, user.len ? user.len + 1 : 0 },
                       .cursor = cursor, .from = from, .to = to, .limit = limit };
    return mc_page_reply(ctx, &page, s_visit, &status);
}
