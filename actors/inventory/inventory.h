/*  inventory: stock per product (CONTRACT §5).

    State, one LMDB environment per shard:
      stock      product id -> {on_hand, reserved, low_stock_threshold, low, updated_at, changes}
      history    product id \0 change number (8-byte big-endian) -> {delta, reason, on_hand, reserved, at}
      low        product id -> ""              products at or below their threshold
      processed  event id -> ""                Kafka events already applied (redelivery is a no-op)
      reservations  order id \0 product id -> state byte + quantity (8-byte big-endian)
                 what each order holds of each product: reserved, released or sold. Reserve,
                 release and commit are idempotent by (order, product); a release that arrives
                 before its reserve leaves a "released" mark, so the late reserve is refused.
    A stock record is born from product.created (on_hand = initial_stock, threshold = 10% of it,
    at least 5). "Low" means available <= threshold; inventory.low_stock is emitted when a change
    crosses into low, once per crossing. on_hand >= reserved >= 0 always holds; available is
    on_hand - reserved; a sale (commit) moves units from on_hand and reserved to sold. */
#ifndef INVENTORY_H
#define INVENTORY_H

#include "mc_actor.h"

extern const mc_service_t inventory_service;

#endif
