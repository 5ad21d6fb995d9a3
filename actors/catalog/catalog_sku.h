/*  catalog_sku: one product per SKU, whichever catalog shards the products live on.

    A SKU's claim lives on the SKU's home shard, catalog_sku_home(sku), the shard
    mc_shard_of_folded gives (so "ABC-1" and "abc-1" share one):
      sku         lower(sku) -> holder product id [\0 token]    (no token: the product id)
      sku_token   product id -> the token of its SKU's claim, when it is not the product id
      sku_ops     product id -> the change of its SKU under way (a msgpack map, catalog_sku.c)
      sku_gone    "k" token -> ms (8) ; "t" ms (8) token -> ""  tokens released, kept 10 min

    A new product is made on its SKU's home (product.create's "shard_by": the edge draws its id
    there), so its claim is written by the transaction that creates it. A PATCH that changes
    the SKU claims the new one on its home: in the same transaction when that is the product's
    own shard, else with sku.claim, the product's shard holding the change (sku_ops) and the
    caller until the claim is granted (the change then commits) or refused (409). The old SKU
    is released on its home the same way (sku.release), and the caller answered once it is
    free, so that a product created with it after the PATCH has answered gets it.

    Every claim carries a token: the id of the message that made it (the product id for a
    creation). A release names its token and removes only the claim that has it, leaving the
    token in sku_gone, where a claim arriving later with the same token is refused (410): a
    resent claim or release overtaken by a newer one can neither take nor free a SKU it no
    longer speaks for. A product has one change of SKU under way at a time (a second one, or a
    DELETE, gets 409 sku_change_in_progress), so each of its releases follows its claims.
    catalog.tick resends whatever is unanswered, gives up on a claim after CATALOG_SKU_CLAIM_MS
    (503, releasing it in case it was granted), answers a caller whose release is slow after
    CATALOG_SKU_ANSWER_MS, and prunes sku_gone.

    Caveats: an answer to a parked caller carries no ETag (the runtime's answers have none), so
    a PATCH that changed the SKU across shards is answered without one; a GET gives it. */
#ifndef CATALOG_SKU_H
#define CATALOG_SKU_H

#include "catalog_index.h"

#define CATALOG_SKU_CLAIM_MS 5000
#define CATALOG_SKU_ANSWER_MS 2000
#define CATALOG_SKU_GONE_MS 600000
//  Tokens name requests in tags, "<product id>:<kind><token>", of at most MC_REQUEST_ID_MAX bytes.
#define CATALOG_TOKEN_MAX 36

//  The shard whose `sku` database holds sku's claim.
unsigned catalog_sku_home(mc_str_t sku);

//  Whether a and b are one SKU (SKUs compare without regard to ASCII case).
bool catalog_sku_same(mc_str_t a, mc_str_t b);

//  Replies 409 duplicate_sku; returns 409.
int catalog_conflict_sku(mc_ctx_t *ctx);

//  Claims sku, on this shard (its home), for product with token, unless another product holds
//  it: *taken says so. Returns 0 or an LMDB error.
int catalog_sku_claim(MDB_txn *txn, const catalog_db_t *db, mc_str_t sku, mc_str_t product, mc_str_t token,
                      bool *taken);

//  Handles a PATCH whose merged product p changes old's SKU (version is old's): claims, commits
//  and releases as above. Returns the status replied, MC_PARKED, or a negative LMDB error.
int catalog_sku_change(mc_ctx_t *ctx, const catalog_product_t *old, const catalog_product_t *p, uint64_t version);

//  For a DELETE of product, whose SKU was sku: 409 (replied) while a change of its SKU is under
//  way, else 0. Returns a negative LMDB error on failure.
int catalog_sku_check_idle(mc_ctx_t *ctx, mc_str_t product);

//  After product's deletion (in the same transaction): releases its SKU and replies 204, at once
//  when the SKU's home is this shard, else once the home has it (MC_PARKED). Returns the status
//  replied, MC_PARKED, or a negative LMDB error.
int catalog_sku_deleted(mc_ctx_t *ctx, mc_str_t product, mc_str_t sku);

//  sku.claim, sku.release (on a SKU's home), catalog.step, catalog.tick (on a product's shard)
int catalog_sku_claim_msg(mc_ctx_t *ctx);
int catalog_sku_release_msg(mc_ctx_t *ctx);
int catalog_sku_step(mc_ctx_t *ctx);
int catalog_sku_tick(mc_ctx_t *ctx);

#endif
