/*  The pending index: how many unpaid orders a customer holds, against
    MERCATO_MAX_PENDING_ORDERS (CONTRACT §9). Without a cap one account can reserve the whole
    stock for MERCATO_RESERVATION_TTL_S at no cost, and do it again when the orders expire.

      pending   user id \0 created ms (8) order id -> expires ms (8)

    An entry is written in the commit that starts an order's saga and stays while the order is
    pending_payment; orders_store removes it when the order leaves pending_payment (paid,
    cancelled, expired) and the saga removes it when it fails, once its release has ended. Sagas
    count: orders sent all at once must not get past a cap that orders sent one after the other
    meet. The key holds the creation time, which the saga and its order share, so the order's
    entry is the saga's even when the TTL changed in between. */
#include "orders_db.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  The user part of a key: a saga keeps at most ORDER_USER_MAX bytes of its user, and the count
//  must see the same bytes.
static mc_str_t
s_user(mc_str_t user)
{
    return (mc_str_t) { user.ptr, user.len < ORDER_USER_MAX ? user.len : ORDER_USER_MAX };
}

static size_t
s_key(unsigned char *out, mc_str_t user, uint64_t created_ms, mc_str_t id)
{
    user = s_user(user);
    size_t idlen = id.len < 72 ? id.len : 72;
    return mc_store_time_key(out, user.ptr, user.len, created_ms, id.ptr, idlen);
}

int
orders_pending_put(MDB_txn *txn, const orders_db_t *db, mc_str_t user, uint64_t created_ms, mc_str_t id,
                   uint64_t expires_ms)
{
    unsigned char key[ORDER_USER_MAX + 9 + 72], value[8];
    MDB_val k = { s_key(key, user, created_ms, id), key }, v = { 8, value };
    mc_be64_put(value, expires_ms);
    return mdb_put(txn, db->pending, &k, &v, 0);
}

int
orders_pending_del(MDB_txn *txn, const orders_db_t *db, mc_str_t user, uint64_t created_ms, mc_str_t id)
{
    unsigned char key[ORDER_USER_MAX + 9 + 72];
    MDB_val k = { s_key(key, user, created_ms, id), key };
    int rc = mdb_del(txn, db->pending, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
orders_pending_count(MDB_txn *txn, const orders_db_t *db, mc_str_t user, size_t *count, uint64_t *first_expiry)
{
    *count = 0;
    *first_expiry = UINT64_MAX;
    user = s_user(user);
    unsigned char prefix[ORDER_USER_MAX + 1];
    memcpy(prefix, user.ptr, user.len);
    prefix[user.len] = 0;
    size_t plen = user.len + 1;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->pending, &cur);
    if (rc)
        return rc;
    MDB_val k = { plen, prefix }, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen + 8 || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (v.mv_size != 8) {
            rc = MDB_CORRUPTED;
            break;
        }
        uint64_t expires = mc_be64_get(v.mv_data);
        if (expires < *first_expiry)
            *first_expiry = expires;
        (*count)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
orders_pending_check(mc_ctx_t *ctx)
{
    const orders_db_t *db = ctx->state;
    size_t count;
    uint64_t first;
    int rc = orders_pending_count(ctx->txn, db, ctx->req->user, &count, &first);
    if (rc)
        return FAIL(rc);
    if (count < db->max_pending)
        return 0;
    //  the earliest a slot frees by itself: when the oldest reservation expires (the tick may
    //  have it a moment late, so never less than a second)
    uint64_t now = ctx->req->time;
    uint64_t retry = first > now ? (first - now + 999) / 1000 : 1;
    char detail[160];
    snprintf(detail, sizeof detail, "you already have %zu unpaid orders; pay or cancel one, or wait until one expires",
             count);
    mc_reply_error_retry(ctx->pk, ctx->req->id, 429, "too_many_pending_orders", detail, retry);
    return 429;
}

int
orders_pending_build(MDB_txn *txn, const orders_db_t *db)
{
    MDB_stat st;
    int rc = mdb_stat(txn, db->pending, &st);
    if (rc || st.ms_entries)
        return rc;
    //  an environment from before the index: every pending order is in the expiry index
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, db->expiry, &cur)))
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= 8)
            continue;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        order_t o;
        int lrc = orders_load(txn, db, (mc_str_t) { (const char *) k.mv_data + 8, k.mv_size - 8 }, &u, &o);
        if (lrc == 0 && mc_str_eq(o.status, "pending_payment"))
            lrc = orders_pending_put(txn, db, o.user_id, o.created_ms, o.id, o.expires_ms);
        else
        if (lrc == MDB_NOTFOUND || lrc == MDB_CORRUPTED)
            lrc = 0;        //  left for the tick, which drops such index entries
        msgpack_unpacked_destroy(&u);
        if (lrc) {
            rc = lrc;
            break;
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
