/*  payments_db: the payment service's records, shared by its files.

    payments.c       payment.create, payment.get, payment.list
    payments_flow.c  the capture (payment.step replies, payment.tick resends) and refunds
                     (payment.event, from order.events)

    The card is read at the edge (edge/edge_card.c): the actor gets its brand, last 4 digits,
    expiry, the Luhn and CVC verdicts and the simulated gateway's outcome, never the number or
    the CVC (the message schema does not know them, so a message carrying them is refused).

    A payment is made in two steps, each durable before the next message leaves: the order is
    read on the payer's behalf (owner, status, amount; the amount is never the client's), then,
    when the gateway approves, order.pay captures it for the order. A decline is recorded as a
    payment with status "declined". Only the card's brand and last 4 digits are ever written. */
#ifndef PAYMENTS_DB_H
#define PAYMENTS_DB_H

#include "payments.h"
#include "mc_idem.h"

typedef struct {
    MDB_dbi payments;   //  payment id -> public payment map
    MDB_dbi by_order;   //  order id \0 payment id -> ""
    MDB_dbi pending;    //  payment id -> pending map             (payments in progress)
    MDB_dbi orders;     //  order id \0 payer -> 'p'|'s' payment id (in progress, or succeeded)
    MDB_dbi closed;     //  order id -> ""                         (cancelled or refunded: owes a refund)
    MDB_dbi processed;  //  event id -> ""                         (order events applied)
    mc_idem_db_t idem;  //  Idempotency-Key records
} payments_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

//  A step not answered within this long is sent again.
#define RESEND_MS 1000
//  Reading the order gives up after this long (the capture never does: it may have happened).
#define QUOTE_TIMEOUT_MS 15000

//  Loads a record of dbi into u: 0, MDB_NOTFOUND or an LMDB error.
int payments_load(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, msgpack_unpacked *u);

//  The key of an order's payments by one payer in the orders db; 0 when it does not fit.
size_t payments_lock(char *out, size_t size, mc_str_t order, mc_str_t user);

//  Stores a packed map under key.
int payments_put(MDB_txn *txn, MDB_dbi dbi, mc_str_t key, const msgpack_sbuffer *map);

//  Sends the pending payment's current step (order.get or order.pay) to the orders service.
void payments_send_step(mc_ctx_t *ctx, const msgpack_object *pending);

//  payments_flow.c
int payments_step(mc_ctx_t *ctx);
int payments_tick(mc_ctx_t *ctx);
int payments_event(mc_ctx_t *ctx);

#endif
