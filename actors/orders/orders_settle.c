/*  Settlements: the stock of an order after a state change, released on cancel or expiry and
    sold on shipping, as the reservation saga does (orders_saga.c). The settle record names the
    inventory shards that have not answered yet; order.tick resends to them until each has, and
    callers waiting on the change hear once all have, or after SETTLE_ANSWER_MS (the change
    itself is committed; the stock follows). */
#include "orders_db.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    uint32_t magic;
    char op;                    //  'x' release, 's' sell
    bool answered;              //  callers waiting on it have had their answer
    uint8_t waiting[SHARDS_MAX];
    uint64_t created, sent;
} settle_t;

#define SETTLE_MAGIC 0x4f53544cu    //  "OSTL"

//  A reply about a settlement: its shard is done; when all are, waiting callers hear.
int
orders_settle_step(mc_ctx_t *ctx, mc_str_t id, unsigned shard, int status)
{
    const orders_db_t *db = ctx->state;
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = mdb_get(ctx->txn, db->settle, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc;
    settle_t st;
    if (v.mv_size != sizeof st)
        return MDB_CORRUPTED;
    memcpy(&st, v.mv_data, sizeof st);
    if (status != 200 || shard >= SHARDS_MAX)
        return 0;       //  not done: the tick sends it again
    st.waiting[shard] = 0;
    for (unsigned i = 0; i < SHARDS_MAX; i++)
        if (st.waiting[i]) {
            v = (MDB_val) { sizeof st, &st };
            return mdb_put(ctx->txn, db->settle, &k, &v, 0);
        }
    char key[96];
    snprintf(key, sizeof key, "settle:%.*s", (int) id.len, id.ptr);
    if (!st.answered && (rc = orders_answer(ctx, key, id, 200)))
        return rc;
    return mdb_del(ctx->txn, db->settle, &k, NULL);
}

//  The stock of order id still to settle, to each shard that has not answered (as the system:
//  no user asks).
static void
s_send_settle(mc_ctx_t *ctx, mc_str_t id, const settle_t *st, const order_line_t *lines, size_t n)
{
    char order[72];
    snprintf(order, sizeof order, "%.*s", (int) id.len, id.ptr);
    for (unsigned shard = 0; shard < SHARDS_MAX; shard++)
        if (st->waiting[shard])
            orders_send_stock(ctx, order, "", "system", st->op, shard, lines, n);
}

int
orders_settle(mc_ctx_t *ctx, mc_str_t order_id, char op, const order_line_t *lines, size_t n)
{
    const orders_db_t *db = ctx->state;
    settle_t st = { .magic = SETTLE_MAGIC, .op = op, .created = ctx->req->time, .sent = ctx->req->time };
    for (size_t i = 0; i < n; i++)
        st.waiting[lines[i].shard] = 1;
    s_send_settle(ctx, order_id, &st, lines, n);
    char id[72];
    snprintf(id, sizeof id, "%.*s", (int) order_id.len, order_id.ptr);
    MDB_val k = { strlen(id), id }, v = { sizeof st, &st };
    return mdb_put(ctx->txn, db->settle, &k, &v, 0);
}

int
orders_settle_tick(mc_ctx_t *ctx, uint64_t now)
{
    const orders_db_t *db = ctx->state;
    char keys[TICK_MAX][72];
    size_t n = orders_keys(ctx->txn, db->settle, keys, TICK_MAX);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        mc_str_t id = { keys[i], strlen(keys[i]) };
        MDB_val k = { id.len, keys[i] }, v;
        settle_t st;
        if ((rc = mdb_get(ctx->txn, db->settle, &k, &v)) || v.mv_size != sizeof st)
            break;
        memcpy(&st, v.mv_data, sizeof st);
        bool changed = false;
        if (!st.answered && st.created + SETTLE_ANSWER_MS <= now) {
            //  the change itself is committed; the stock follows when inventory answers
            char key[96];
            snprintf(key, sizeof key, "settle:%s", keys[i]);
            rc = orders_answer(ctx, key, id, 200);
            st.answered = changed = true;
        }
        if (!rc && st.sent + RESEND_MS <= now) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            order_t o;
            if (!(rc = orders_load(ctx->txn, db, id, &u, &o))) {
                order_line_t lines[ORDER_LINES_MAX];
                size_t nl = orders_lines(o.items, lines);
                s_send_settle(ctx, id, &st, lines, nl);
            }
            msgpack_unpacked_destroy(&u);
            st.sent = now;
            changed = true;
        }
        if (!rc && changed) {
            v = (MDB_val) { sizeof st, &st };
            rc = mdb_put(ctx->txn, db->settle, &k, &v, 0);
        }
    }
    return rc;
}
