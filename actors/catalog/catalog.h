/*  catalog: the product catalog service (CONTRACT §4).

    State, one LMDB environment per shard:
      products    id -> 8-byte big-endian version + the product as a msgpack map (sent as is)
      sku         lower(sku) -> id                      uniqueness, any case
      idx_cat     lower(category) \0 id -> ""           category filter, in id order
      idx_word    word \0 id -> ""                      q search, in id order
      idx_price   price (8-byte big-endian) id -> ""    price-only filters, in price order
      idx_feat    id -> ""                              featured filter, in id order
      categories  lower(category) -> count (8-byte BE) + display name
    Filters on the id-ordered indexes are intersected by leapfrogging cursors, so a page costs
    what its matches cost, not what the catalog holds. */
#ifndef CATALOG_H
#define CATALOG_H

#include "mc_actor.h"

extern const mc_service_t catalog_service;

#endif
