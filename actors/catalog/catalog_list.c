#include "catalog_list.h"

#include "catalog_index.h"
#include "mc_page.h"
#include "mc_util.h"

#include <string.h>

#define LMDB_FAIL(rc) ((rc) > 0 ? -(rc) : (rc))
#define QUERY_WORDS_MAX 8
#define STREAMS_MAX (QUERY_WORDS_MAX + 3)

static _Thread_local uint64_t s_reads;

uint64_t
catalog_list_reads(void)
{
    return s_reads;
}

//  A source of product ids in ascending order: the keys of dbi that start with prefix, each
//  followed by the id.
typedef struct {
    MDB_cursor *cur;                    //  open on the index
    unsigned char prefix[CATALOG_KEY_MAX];  //  key prefix, "" for whole-id databases
    size_t plen;                        //  its length
} stream_t;

//  Positions s at the first id >= id (id may be empty for the start). Returns 0 and the id in
//  out, MDB_NOTFOUND at the end of the stream, or an LMDB error.
static int
s_seek(stream_t *s, const char *id, size_t idlen, char out[MC_ULID_LEN + 1], size_t *outlen)
{
    unsigned char key[CATALOG_KEY_MAX + 32];
    s_reads++;
    memcpy(key, s->prefix, s->plen);
    memcpy(key + s->plen, id, idlen);
    MDB_val k = { s->plen + idlen, key }, v;
    //  LMDB refuses empty keys: the start of a whole-id database is its first key
    int rc = k.mv_size ? mdb_cursor_get(s->cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(s->cur, &k, &v, MDB_FIRST);
    if (rc)
        return rc;
    if (k.mv_size < s->plen || memcmp(k.mv_data, s->prefix, s->plen) != 0)
        return MDB_NOTFOUND;
    size_t n = k.mv_size - s->plen;
    if (n > MC_ULID_LEN)
        n = MC_ULID_LEN;
    memcpy(out, (char *) k.mv_data + s->plen, n);
    out[n] = 0;
    *outlen = n;
    return 0;
}

typedef struct {
    bool has_min, has_max, has_featured;
    int64_t min_price, max_price;
    bool featured;
} predicate_t;

//  Fetches the product, checks what the indexes could not, and appends it to items.
static int
s_emit(MDB_txn *txn, const catalog_db_t *db, const char *id, size_t idlen, const predicate_t *pr,
       msgpack_sbuffer *items, bool *matched)
{
    MDB_val k = { idlen, (void *) id }, v;
    s_reads++;
    int rc = mdb_get(txn, db->products, &k, &v);
    *matched = false;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (pr->has_min || pr->has_max || pr->has_featured) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        catalog_product_t p;
        int bad = catalog_product_decode(&v, &u, &p, NULL);
        msgpack_unpacked_destroy(&u);
        if (bad)
            return MDB_CORRUPTED;
        if ((pr->has_min && p.price_cents < pr->min_price) || (pr->has_max && p.price_cents > pr->max_price)
        ||  (pr->has_featured && p.featured != pr->featured))
            return 0;
    }
    *matched = true;
    if (items)
        msgpack_sbuffer_write(items, (const char *) v.mv_data + CATALOG_VERSION_BYTES,
                              v.mv_size - CATALOG_VERSION_BYTES);
    return 0;
}

//  Cursor: "i" + last id (id order) or "p" + 8-byte price + last id (price order): the sort key
//  of the page's last product, which means the same on every shard. Each product's key, when
//  the edge gathers the list from every shard, is that of a page ending at it.
static void
s_key_add(mc_page_keys_t *keys, char order, const void *key, size_t len)
{
    unsigned char raw[1 + 8 + MC_ULID_LEN];
    if (len > sizeof raw - 1)
        return;
    raw[0] = (unsigned char) order;
    memcpy(raw + 1, key, len);
    mc_page_keys_add(keys, raw, 1 + len);
}

static int
s_bad_cursor(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
    return 400;
}


//  Only a price range: walk idx_price, in price order.
static int
s_by_price(mc_ctx_t *ctx, const catalog_db_t *db, const predicate_t *pr, int64_t limit,
           const unsigned char *after, size_t afterlen)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->idx_price, &cur);
    if (rc)
        return LMDB_FAIL(rc);
    unsigned char key[8 + MC_ULID_LEN + 1];
    MDB_val k, v;
    if (after) {
        memcpy(key, after, afterlen);
        key[afterlen] = 0;      //  strictly after the last key returned
        k = (MDB_val) { afterlen + 1, key };
    }
    else {
        mc_be64_put(key, (uint64_t) pr->min_price);
        k = (MDB_val) { 8, key };
    }
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    size_t n = 0;
    unsigned char last[8 + MC_ULID_LEN];
    size_t lastlen = 0;
    bool more = false;
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        s_reads++;
        if (k.mv_size < 8 || k.mv_size > 8 + MC_ULID_LEN)
            continue;
        if (pr->has_max && (int64_t) mc_be64_get(k.mv_data) > pr->max_price)
            break;
        if ((int64_t) n == limit) {
            more = true;
            break;
        }
        bool matched;
        rc = s_emit(ctx->txn, db, (char *) k.mv_data + 8, k.mv_size - 8, pr, &items, &matched);
        if (rc)
            break;
        if (matched) {
            n++;
            memcpy(last, k.mv_data, k.mv_size);
            lastlen = k.mv_size;
            s_key_add(&keys, 'p', last, lastlen);
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        mc_page_keys_destroy(&keys);
        return LMDB_FAIL(rc);
    }
    unsigned char next[1 + sizeof last];
    next[0] = 'p';
    memcpy(next + 1, last, lastlen);
    mc_page_reply_keyed(ctx, &items, n, more ? next : NULL, 1 + lastlen, &keys);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return 200;
}

//  Intersects id-ordered streams by leapfrogging: each seeks to the largest id seen so far,
//  until all agree on one id.
static int
s_by_id(mc_ctx_t *ctx, const catalog_db_t *db, stream_t *streams, size_t ns, const predicate_t *pr,
        int64_t limit, const char *after, size_t afterlen)
{
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    size_t n = 0;
    char target[MC_ULID_LEN + 2] = "";
    size_t tlen = 0;
    if (after) {
        memcpy(target, after, afterlen);
        target[afterlen] = 0;   //  the smallest key after the last id returned
        tlen = afterlen + 1;
    }
    char last[MC_ULID_LEN + 1] = "";
    size_t lastlen = 0;
    bool more = false;
    int rc = 0;
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    while (true) {
        char x[MC_ULID_LEN + 1];
        size_t xlen;
        rc = s_seek(&streams[0], target, tlen, x, &xlen);
        if (rc)
            break;
        bool agree = true;
        for (size_t i = 1; i < ns && agree; i++) {
            char y[MC_ULID_LEN + 1];
            size_t ylen;
            rc = s_seek(&streams[i], x, xlen, y, &ylen);
            if (rc)
                break;
            if (ylen != xlen || memcmp(x, y, xlen) != 0) {
                memcpy(target, y, ylen);
                tlen = ylen;
                agree = false;
            }
        }
        if (rc)
            break;
        if (!agree)
            continue;
        bool matched;
        if ((int64_t) n == limit) {
            //  one more match means another page exists
            rc = s_emit(ctx->txn, db, x, xlen, pr, NULL, &matched);
            if (rc)
                break;
            if (matched) {
                more = true;
                break;
            }
        }
        else {
            rc = s_emit(ctx->txn, db, x, xlen, pr, &items, &matched);
            if (rc)
                break;
            if (matched) {
                n++;
                memcpy(last, x, xlen);
                lastlen = xlen;
                s_key_add(&keys, 'i', last, lastlen);
            }
        }
        memcpy(target, x, xlen);
        target[xlen] = 0;
        tlen = xlen + 1;
    }
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        mc_page_keys_destroy(&keys);
        return LMDB_FAIL(rc);
    }
    unsigned char next[1 + MC_ULID_LEN];
    next[0] = 'i';
    memcpy(next + 1, last, lastlen);
    mc_page_reply_keyed(ctx, &items, n, more ? next : NULL, 1 + lastlen, &keys);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return 200;
}

int
catalog_list(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    predicate_t pr = { 0 };
    pr.has_min = mc_map_int(b, "min_price", &pr.min_price) == 0;
    pr.has_max = mc_map_int(b, "max_price", &pr.max_price) == 0;
    bool featured_only = false;
    if (mc_map_bool(b, "featured", &pr.featured) == 0) {
        //  featured=true has its own index; featured=false is checked on each candidate
        featured_only = pr.featured;
        pr.has_featured = !pr.featured;
    }
    int64_t limit = 20;
    mc_map_int(b, "limit", &limit);
    mc_str_t q = { "", 0 }, category = { "", 0 }, cursor = { "", 0 };
    mc_map_str(b, "q", &q);
    mc_map_str(b, "category", &category);
    mc_map_str(b, "cursor", &cursor);

    unsigned char after[1 + 8 + MC_ULID_LEN + 1];
    long alen = 0;
    if (cursor.len) {
        alen = mc_b64url_decode(after, sizeof after, cursor.ptr, cursor.len);
        if (alen < 2 || (after[0] != 'i' && after[0] != 'p'))
            return s_bad_cursor(ctx);
    }
    char words[QUERY_WORDS_MAX][CATALOG_WORD_MAX + 1];
    size_t nwords = catalog_words(q.ptr, q.len, words, QUERY_WORDS_MAX);
    bool price_only = !nwords && !category.len && !featured_only && (pr.has_min || pr.has_max);
    if (pr.has_min && pr.has_max && pr.min_price > pr.max_price) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "min_price", "must not exceed max_price");
        mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "the request has invalid fields", &errs);
        return 422;
    }
    if (price_only) {
        if (cursor.len && (after[0] != 'p' || alen != 1 + 8 + MC_ULID_LEN))
            return s_bad_cursor(ctx);
        //  the index walk starts at min_price, so only max_price is left to check
        predicate_t walk = { .has_max = pr.has_max, .max_price = pr.max_price, .min_price = pr.min_price };
        return s_by_price(ctx, db, &walk, limit, cursor.len ? after + 1 : NULL, (size_t) alen - 1);
    }
    if (cursor.len && (after[0] != 'i' || alen != 1 + MC_ULID_LEN))
        return s_bad_cursor(ctx);

    stream_t streams[STREAMS_MAX] = { 0 };
    size_t ns = 0;
    int rc = 0;
    if (category.len) {
        streams[ns].plen = catalog_lower((char *) streams[ns].prefix, 400, category) + 1;
        rc = mdb_cursor_open(ctx->txn, db->idx_cat, &streams[ns++].cur);
    }
    for (size_t i = 0; i < nwords && !rc; i++) {
        size_t wl = strlen(words[i]);
        memcpy(streams[ns].prefix, words[i], wl + 1);
        streams[ns].plen = wl + 1;
        rc = mdb_cursor_open(ctx->txn, db->idx_word, &streams[ns++].cur);
    }
    if (featured_only && !rc) {
        streams[ns].plen = 0;
        rc = mdb_cursor_open(ctx->txn, db->idx_feat, &streams[ns++].cur);
    }
    if (ns == 0 && !rc) {
        streams[ns].plen = 0;
        rc = mdb_cursor_open(ctx->txn, db->products, &streams[ns++].cur);
    }
    int status = rc ? LMDB_FAIL(rc)
                    : s_by_id(ctx, db, streams, ns, &pr, limit, cursor.len ? (char *) after + 1 : NULL,
                              cursor.len ? (size_t) alen - 1 : 0);
    for (size_t i = 0; i < ns; i++)
        if (streams[i].cur)
            mdb_cursor_close(streams[i].cur);
    return status;
}
