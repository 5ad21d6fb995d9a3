/*  inventory_db: the inventory service's records, shared by its stock handlers (inventory.c)
    and its reservation handlers (inventory_reserve.c). */
#ifndef INVENTORY_DB_H
#define INVENTORY_DB_H

#include "inventory.h"

typedef struct {
    MDB_dbi stock, history, low, processed, reservations;
} inventory_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

typedef struct {
    int64_t on_hand, reserved, sold, threshold; //  the counts
    bool low;                               //  at or below the threshold when last changed
    uint64_t changes;                       //  history entries so far
    char updated_at[32];                    //  RFC 3339
} stock_t;

//  Loads a product's stock: 0, MDB_NOTFOUND or an LMDB error.
int inventory_load(MDB_txn *txn, const inventory_db_t *db, mc_str_t id, stock_t *st);

//  One change to a stock record, as its history entry and event tell it.
typedef struct {
    int64_t delta;              //  change to on_hand
    mc_str_t reason;            //  why
    const char *event;          //  event type; NULL is inventory.adjusted
    mc_str_t order_id;          //  the order it is for, may be empty
    int64_t quantity;           //  units of that order
} inventory_change_t;

//  Records the change in the history, emits its event and, when it crosses into low,
//  inventory.low_stock; then stores the record. 0 or an LMDB error.
int inventory_change(mc_ctx_t *ctx, mc_str_t id, stock_t *st, const inventory_change_t *c);

//  stock.reserve, stock.release, stock.commit (inventory_reserve.c)
int inventory_reserve(mc_ctx_t *ctx);
int inventory_release(mc_ctx_t *ctx);
int inventory_commit(mc_ctx_t *ctx);

#endif
