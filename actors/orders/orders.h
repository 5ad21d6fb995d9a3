/*  orders: orders and the reservation saga that creates them (CONTRACT §6).

    State, one LMDB environment per shard (see orders_db.h for the databases). An order is
    created by a saga (orders_saga.c) that reserves every line in the inventory shards or none,
    snapshots names and prices from the catalog and the address from identity; the caller of
    order.create waits for its outcome. The state machine lives in one table (orders.c):

      pending_payment -> paid | cancelled | expired      paid -> shipped | cancelled
      shipped -> delivered | refunded                    delivered -> refunded

    Leaving pending_payment or paid for cancelled or expired releases the stock; shipping sells
    it. expired is reached only by the clock: order.tick carries the time. */
#ifndef ORDERS_H
#define ORDERS_H

#include "mc_actor.h"

extern const mc_service_t orders_service;

#endif
