/*  orders_db: the order service's records, shared by its files.

    orders.c        order.create, order.cancel, order.status, order.pay, order.advance and the
                    state machine
    orders_saga.c   the reservation saga (order.step replies, order.tick timers)
    orders_settle.c the stock's settlement after a state change
    orders_view.c   the public order, order.get and order.list
    orders_pending.c  the unpaid orders each customer holds, against MERCATO_MAX_PENDING_ORDERS */
#ifndef ORDERS_DB_H
#define ORDERS_DB_H

#include "orders.h"
#include "mc_idem.h"

typedef struct {
    MDB_dbi orders;     //  order id -> version (8 bytes) + public order map
    MDB_dbi by_user;    //  user id \0 created ms (8) order id -> ""
    MDB_dbi by_time;    //  created ms (8) order id -> ""
    MDB_dbi expiry;     //  expires ms (8) order id -> ""      (pending_payment orders only)
    MDB_dbi sagas;      //  order id -> saga_t + blobs          (orders being reserved)
    MDB_dbi settle;     //  order id -> settle_t               (stock still to release or sell)
    MDB_dbi paid_by;    //  order id -> payment id              (orders the payments service paid)
    MDB_dbi pending;    //  user id \0 created ms (8) order id -> expires ms (8)
                        //  (pending_payment orders and the sagas that will make them)
    mc_idem_db_t idem;  //  Idempotency-Key records
    uint64_t ttl_ms;    //  MERCATO_RESERVATION_TTL_S
    size_t max_pending; //  MERCATO_MAX_PENDING_ORDERS
} orders_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

#define ORDER_LINES_MAX 100
//  The bytes of a user id a saga keeps (and so the order, and the pending index).
#define ORDER_USER_MAX 71
#define SHARDS_MAX 64
//  A saga or settlement step not answered within this long is sent again.
#define RESEND_MS 1000
//  A saga that cannot reserve within this long gives up, releases, and answers 503.
#define SAGA_TIMEOUT_MS 15000
//  A caller waiting for its cancel's stock to come back gets its answer after this long anyway.
#define SETTLE_ANSWER_MS 2000

typedef struct {
    mc_str_t product;
    int64_t quantity;
    unsigned shard;
} order_line_t;

//  An order as stored; strings point into the decoded record.
typedef struct {
    uint64_t version;
    mc_str_t id, user_id, status, currency, notes, created_at, updated_at, expires_at;
    int64_t total_cents;
    const msgpack_object *items, *address;
    uint64_t created_ms, expires_ms;
} order_t;

//  Loads an order into o (u keeps it alive): 0, MDB_NOTFOUND or an LMDB error.
int orders_load(MDB_txn *txn, const orders_db_t *db, mc_str_t id, msgpack_unpacked *u, order_t *o);

//  Packs o as the public order map.
void orders_pack(msgpack_packer *pk, const order_t *o);

//  Stores o (its version already set) and its indexes. 0 or an LMDB error.
int orders_store(MDB_txn *txn, const orders_db_t *db, const order_t *o);

//  Emits order.<what> carrying the order.
int orders_event(mc_ctx_t *ctx, const char *type, const order_t *o);

//  The lines of an order's items, with their inventory shard.
size_t orders_lines(const msgpack_object *items, order_line_t *lines);

//  Answers everyone waiting on key with the order named id as it now is.
int orders_answer(mc_ctx_t *ctx, const char *key, mc_str_t id, int status);

//  True when the caller may see the order: its owner, an admin, or another service.
bool orders_visible(const mc_request_t *req, const order_t *o);

//  Starts releasing (op 'x') or selling (op 's') the order's stock; the settle record keeps
//  resending until every shard has answered (orders_settle.c).
int orders_settle(mc_ctx_t *ctx, mc_str_t order_id, char op, const order_line_t *lines, size_t n);
//  An order.step reply about a settlement from inventory shard `shard`; order.tick's resends.
int orders_settle_step(mc_ctx_t *ctx, mc_str_t id, unsigned shard, int status);
int orders_settle_tick(mc_ctx_t *ctx, uint64_t now);

//  Sends reserve (kind 'r'), release ('y', 'x') or sell ('s') of the lines in inventory shard
//  `shard` for order `order`, on behalf of (user, role); the reply comes back as an order.step.
void orders_send_stock(mc_ctx_t *ctx, const char *order, const char *user, const char *role, char kind, unsigned shard,
                       const order_line_t *lines, size_t n);

//  Up to max keys of dbi, copied (NUL-terminated), so the loop that handles them may write.
#define TICK_MAX 256
size_t orders_keys(MDB_txn *txn, MDB_dbi dbi, char (*keys)[72], size_t max);

//  The saga: starts one (order.create), and its messages.
int orders_saga_start(mc_ctx_t *ctx, const order_line_t *lines, size_t n);
int orders_step(mc_ctx_t *ctx);
int orders_tick(mc_ctx_t *ctx);

//  order.get, order.list
int orders_get(mc_ctx_t *ctx);
int orders_list(mc_ctx_t *ctx);

//  Moves o to status `to` (order.cancel, order.status, expiry): stores it, emits order.<to> and
//  starts the stock's settlement, and packs the new order into out (may be NULL). Returns 0,
//  409 when the state machine forbids the move (nothing done), or an LMDB error.
int orders_transition(mc_ctx_t *ctx, const order_t *o, const char *to, msgpack_sbuffer *out);

/*  The pending index (orders_pending.c). Each returns 0 or an LMDB error unless said otherwise.
    orders_pending_put      records the order (or its saga) id of user created at created_ms
    orders_pending_del      forgets it; one that is not there is no error
    orders_pending_count    how many user holds, and the earliest of their expiry times
                            (UINT64_MAX when none)
    orders_pending_check    for order.create: 0 when the caller may hold one more; 429
                            too_many_pending_orders (replied, with retry_after: seconds until the
                            oldest expires) when not; a negative LMDB error
    orders_pending_build    fills an empty index from the expiry index, for an environment that
                            predates it (at open) */
int orders_pending_put(MDB_txn *txn, const orders_db_t *db, mc_str_t user, uint64_t created_ms, mc_str_t id,
                       uint64_t expires_ms);
int orders_pending_del(MDB_txn *txn, const orders_db_t *db, mc_str_t user, uint64_t created_ms, mc_str_t id);
int orders_pending_count(MDB_txn *txn, const orders_db_t *db, mc_str_t user, size_t *count, uint64_t *first_expiry);
int orders_pending_check(mc_ctx_t *ctx);
int orders_pending_build(MDB_txn *txn, const orders_db_t *db);

#endif
