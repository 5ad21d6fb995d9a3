/*  inventory: stock per product (CONTRACT §5).

    State, one LMDB environment per shard:
      stock      product id -> {on_hand, reserved, low_stock_threshold, low, updated_at, changes}
      history    product id \0 change number (8-byte big-endian) -> {delta, reason, on_hand, reserved, at}
      low        product id -> ""              products at or below their threshold
      processed  event id -> ""                Kafka events already applied (redelivery is a no-op)
    A stock record is born from product.created (on_hand = initial_stock, threshold = 10% of it,
    at least 5). "Low" means available <= threshold; inventory.low_stock is emitted when a change
    crosses into low, once per crossing. on_hand >= reserved always holds. */
#ifndef INVENTORY_H
#define INVENTORY_H

#include "mc_actor.h"

extern const mc_service_t inventory_service;

#endif
