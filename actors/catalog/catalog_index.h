/*  catalog_index: the product record and the secondary indexes kept beside it. */
#ifndef CATALOG_INDEX_H
#define CATALOG_INDEX_H

#include "mc_actor.h"

typedef struct {
    MDB_dbi products, sku, idx_cat, idx_word, idx_price, idx_feat, categories;
    MDB_dbi sku_token, sku_ops, sku_gone;   //  catalog_sku.h
} catalog_db_t;

//  A product, pointing into a decoded msgpack map or a request body.
typedef struct {
    mc_str_t id, sku, name, description, category, currency, created_at, updated_at;
    int64_t price_cents;
    bool featured;
    const msgpack_object *images;   //  array of str, or NULL for none
} catalog_product_t;

#define CATALOG_VERSION_BYTES 8
#define CATALOG_WORD_MAX 64
#define CATALOG_KEY_MAX 480

//  Decodes a stored record (version + msgpack) into p; u keeps the objects alive.
int catalog_product_decode(const MDB_val *val, msgpack_unpacked *u, catalog_product_t *p,
                           uint64_t *version);

//  Loads product id into p (u keeps it alive): 0, MDB_NOTFOUND, MDB_CORRUPTED or an LMDB error.
int catalog_product_load(MDB_txn *txn, const catalog_db_t *db, mc_str_t id, msgpack_unpacked *u,
                         catalog_product_t *p, uint64_t *version);

//  p = old with the merge patch applied (RFC 7386: a member present replaces, null removes,
//  back to its default, absent keeps), updated at now. p points into old, patch and now.
void catalog_product_merge(const catalog_product_t *old, const msgpack_object *patch, mc_str_t now,
                           catalog_product_t *p);

//  The ETag of a version, "\"<version>\"".
void catalog_etag(char out[32], uint64_t version);

//  (catalog.c) Stores p as the new state of old, at version + 1: its indexes, product.updated,
//  the record; out receives the product map. Claims nothing: the caller holds p's SKU. 0 or an
//  LMDB error.
int catalog_update_store(mc_ctx_t *ctx, const catalog_product_t *old, const catalog_product_t *p, uint64_t version,
                         msgpack_sbuffer *out);

//  Packs p as the public product map.
void catalog_product_pack(msgpack_packer *pk, const catalog_product_t *p);

//  Packs p's fields in a map that has room for `extra` more members, which the caller packs next.
void catalog_product_pack_open(msgpack_packer *pk, const catalog_product_t *p, size_t extra);

//  Adds or removes every index entry of p (not its SKU's claim: catalog_sku.h). 0 or an LMDB error.
int catalog_index_put(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p);
int catalog_index_del(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p);

//  Splits text into lowercase words (ASCII letters and digits, and any non-ASCII byte), sorted
//  and unique, into words[] (each CATALOG_WORD_MAX + 1 bytes); returns how many (at most max).
size_t catalog_words(const char *text, size_t len, char (*words)[CATALOG_WORD_MAX + 1], size_t max);

//  Lowercases ASCII of s into out (NUL-terminated, truncated to outsz - 1); returns its length.
size_t catalog_lower(char *out, size_t outsz, mc_str_t s);

#endif
