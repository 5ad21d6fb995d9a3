/*  shipping_db: the shipping service's records, shared by its files.

    shipping.c          shipments from order.paid, shipment.get, the stored shipment
    shipping_advance.c  the admin's moves and the order that follows (shipment.advance, its
                        step replies and its tick) */
#ifndef SHIPPING_DB_H
#define SHIPPING_DB_H

#include "shipping.h"

typedef struct {
    MDB_dbi shipments;  //  order id -> the shipment, the map GET answers with
    MDB_dbi moves;      //  order id -> {to, at, sent}: a move waiting for the order to follow
    MDB_dbi processed;  //  event id -> "": Kafka events already applied
} shipping_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

//  A shipment as stored; strings point into the decoded record.
typedef struct {
    mc_str_t order_id, user_id, status, carrier, tracking_number, created_at;
    const msgpack_object *events;   //  [{status, at}], oldest first; NULL for a new shipment
} shipment_t;

//  Loads the shipment of an order into s (u keeps it alive): 0, MDB_NOTFOUND or an LMDB error.
int shipping_load(MDB_txn *txn, const shipping_db_t *db, mc_str_t order_id, msgpack_unpacked *u, shipment_t *s);

//  s becomes `status` at the message's time (a history entry, updated_at): stores it, emits
//  event carrying it, and packs it into out. s may point into the record it rewrites.
//  0 or an LMDB error.
int shipping_record(mc_ctx_t *ctx, const shipment_t *s, const char *status, const char *event, msgpack_sbuffer *out);

//  shipment.advance, shipment.step, shipment.tick (shipping_advance.c)
int shipping_advance(mc_ctx_t *ctx);
int shipping_step(mc_ctx_t *ctx);
int shipping_tick(mc_ctx_t *ctx);

#endif
