#include "catalog_index.h"
#include "mc_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
catalog_lower(char *out, size_t outsz, mc_str_t s)
{
    size_t n = s.len < outsz - 1 ? s.len : outsz - 1;
    for (size_t i = 0; i < n; i++) {
        char c = s.ptr[i];
        out[i] = c >= 'A' && c <= 'Z' ? (char) (c + 32) : c;
    }
    out[n] = 0;
    return n;
}

int
catalog_product_decode(const MDB_val *val, msgpack_unpacked *u, catalog_product_t *p, uint64_t *version)
{
    memset(p, 0, sizeof *p);
    if (val->mv_size <= CATALOG_VERSION_BYTES)
        return -1;
    if (version)
        *version = mc_be64_get(val->mv_data);
    if (mc_msgpack_unpack(u, (const char *) val->mv_data + CATALOG_VERSION_BYTES,
                          val->mv_size - CATALOG_VERSION_BYTES))
        return -1;
    const msgpack_object *m = &u->data;
    if (mc_map_str(m, "id", &p->id) || mc_map_str(m, "sku", &p->sku) || mc_map_str(m, "name", &p->name)
    ||  mc_map_str(m, "description", &p->description) || mc_map_str(m, "category", &p->category)
    ||  mc_map_str(m, "currency", &p->currency) || mc_map_str(m, "created_at", &p->created_at)
    ||  mc_map_str(m, "updated_at", &p->updated_at) || mc_map_int(m, "price_cents", &p->price_cents)
    ||  mc_map_bool(m, "featured", &p->featured))
        return -1;
    p->images = mc_map_get(m, "images");
    return 0;
}

int
catalog_product_load(MDB_txn *txn, const catalog_db_t *db, mc_str_t id, msgpack_unpacked *u, catalog_product_t *p,
                     uint64_t *version)
{
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = id.len ? mdb_get(txn, db->products, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    return catalog_product_decode(&v, u, p, version) ? MDB_CORRUPTED : 0;
}

void
catalog_product_merge(const catalog_product_t *old, const msgpack_object *b, mc_str_t now, catalog_product_t *p)
{
    *p = *old;
    mc_map_str(b, "sku", &p->sku);
    mc_map_str(b, "name", &p->name);
    mc_map_str(b, "category", &p->category);
    mc_map_int(b, "price_cents", &p->price_cents);
    mc_map_str(b, "currency", &p->currency);
    const msgpack_object *o;
    if ((o = mc_map_get(b, "description")))
        p->description = o->type == MSGPACK_OBJECT_NIL ? MC_STR("") : mc_obj_str(o);
    if ((o = mc_map_get(b, "images")))
        p->images = o->type == MSGPACK_OBJECT_NIL ? NULL : o;
    if ((o = mc_map_get(b, "featured")))
        p->featured = o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean;
    p->updated_at = now;
}

void
catalog_etag(char out[32], uint64_t version)
{
    snprintf(out, 32, "\"%" PRIu64 "\"", version);
}

static void
s_kv(msgpack_packer *pk, const char *key, mc_str_t v)
{
    mc_pack_kv_str(pk, key, v.ptr ? v.ptr : "", v.len);
}

void
catalog_product_pack(msgpack_packer *pk, const catalog_product_t *p)
{
    catalog_product_pack_open(pk, p, 0);
}

void
catalog_product_pack_open(msgpack_packer *pk, const catalog_product_t *p, size_t extra)
{
    msgpack_pack_map(pk, 11 + extra);
    s_kv(pk, "id", p->id);
    s_kv(pk, "sku", p->sku);
    s_kv(pk, "name", p->name);
    s_kv(pk, "description", p->description);
    s_kv(pk, "category", p->category);
    mc_pack_kv_int(pk, "price_cents", p->price_cents);
    s_kv(pk, "currency", p->currency);
    mc_pack_cstr(pk, "images");
    if (p->images && p->images->type == MSGPACK_OBJECT_ARRAY)
        mc_pack_obj(pk, p->images);
    else
        msgpack_pack_array(pk, 0);
    mc_pack_kv_bool(pk, "featured", p->featured);
    s_kv(pk, "created_at", p->created_at);
    s_kv(pk, "updated_at", p->updated_at);
}

static int
s_word_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

size_t
catalog_words(const char *text, size_t len, char (*words)[CATALOG_WORD_MAX + 1], size_t max)
{
    size_t n = 0, i = 0;
    while (i < len && n < max) {
        while (i < len) {
            unsigned char c = (unsigned char) text[i];
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
                break;
            i++;
        }
        size_t w = 0;
        while (i < len) {
            unsigned char c = (unsigned char) text[i];
            if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80))
                break;
            //  a word cut at the limit still matches the same cut of a query word
            if (w < CATALOG_WORD_MAX)
                words[n][w++] = (char) (c >= 'A' && c <= 'Z' ? c + 32 : c);
            i++;
        }
        if (w) {
            words[n][w] = 0;
            n++;
        }
    }
    qsort(words, n, sizeof *words, s_word_cmp);
    size_t u = 0;
    for (size_t k = 0; k < n; k++)
        if (u == 0 || strcmp(words[u - 1], words[k]) != 0)
            memmove(words[u++], words[k], sizeof *words);
    return u;
}

//  key = prefix \0 id
static size_t
s_key(unsigned char *out, const char *prefix, size_t plen, mc_str_t id)
{
    memcpy(out, prefix, plen);
    out[plen] = 0;
    memcpy(out + plen + 1, id.ptr, id.len);
    return plen + 1 + id.len;
}

#define WORDS_MAX 4096

static int
s_words_apply(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p, bool put)
{
    size_t tlen = p->name.len + 1 + p->description.len;
    char *text = malloc(tlen + 1);
    char (*words)[CATALOG_WORD_MAX + 1] = malloc(WORDS_MAX * sizeof *words);
    if (!text || !words) {
        free(text);
        free(words);
        return ENOMEM;
    }
    memcpy(text, p->name.ptr, p->name.len);
    text[p->name.len] = ' ';
    if (p->description.len)
        memcpy(text + p->name.len + 1, p->description.ptr, p->description.len);
    size_t n = catalog_words(text, tlen, words, WORDS_MAX);
    int rc = 0;
    static const MDB_val empty = { 0, "" };
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char key[CATALOG_KEY_MAX];
        MDB_val k = { s_key(key, words[i], strlen(words[i]), p->id), key };
        if (put)
            rc = mdb_put(txn, db->idx_word, &k, (MDB_val *) &empty, 0);
        else {
            rc = mdb_del(txn, db->idx_word, &k, NULL);
            if (rc == MDB_NOTFOUND)
                rc = 0;
        }
    }
    free(text);
    free(words);
    return rc;
}

static int
s_category_count(MDB_txn *txn, const catalog_db_t *db, mc_str_t category, int delta)
{
    char lower[CATALOG_KEY_MAX];
    MDB_val k = { catalog_lower(lower, sizeof lower, category), lower }, v;
    uint64_t count = 0;
    int rc = mdb_get(txn, db->categories, &k, &v);
    if (rc == 0 && v.mv_size >= 8)
        count = mc_be64_get(v.mv_data);
    else
    if (rc != MDB_NOTFOUND && rc != 0)
        return rc;
    count = delta < 0 && count == 0 ? 0 : count + (uint64_t) (int64_t) delta;
    if (count == 0) {
        rc = mdb_del(txn, db->categories, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    //  the display name is the spelling of the category's first product
    unsigned char buf[8 + CATALOG_KEY_MAX];
    mc_be64_put(buf, count);
    size_t nlen;
    if (rc == 0 && v.mv_size > 8) {
        nlen = v.mv_size - 8 < CATALOG_KEY_MAX ? v.mv_size - 8 : CATALOG_KEY_MAX;
        memcpy(buf + 8, (char *) v.mv_data + 8, nlen);
    }
    else {
        nlen = category.len < CATALOG_KEY_MAX ? category.len : CATALOG_KEY_MAX;
        memcpy(buf + 8, category.ptr, nlen);
    }
    MDB_val nv = { 8 + nlen, buf };
    return mdb_put(txn, db->categories, &k, &nv, 0);
}

static int
s_apply(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p, bool put)
{
    static const MDB_val empty = { 0, "" };
    MDB_val idv = { p->id.len, (void *) p->id.ptr };
    unsigned char key[CATALOG_KEY_MAX];
    char lower[CATALOG_KEY_MAX];
    int rc;

    size_t clen = catalog_lower(lower, 400, p->category);
    MDB_val ck = { s_key(key, lower, clen, p->id), key };
    rc = put ? mdb_put(txn, db->idx_cat, &ck, (MDB_val *) &empty, 0) : mdb_del(txn, db->idx_cat, &ck, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;

    mc_be64_put(key, (uint64_t) p->price_cents);
    memcpy(key + 8, p->id.ptr, p->id.len);
    MDB_val pk = { 8 + p->id.len, key };
    rc = put ? mdb_put(txn, db->idx_price, &pk, (MDB_val *) &empty, 0) : mdb_del(txn, db->idx_price, &pk, NULL);
    if (rc && rc != MDB_NOTFOUND)
        return rc;

    if (p->featured) {
        rc = put ? mdb_put(txn, db->idx_feat, &idv, (MDB_val *) &empty, 0) : mdb_del(txn, db->idx_feat, &idv, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
    }
    rc = s_category_count(txn, db, p->category, put ? 1 : -1);
    if (rc)
        return rc;
    return s_words_apply(txn, db, p, put);
}

int
catalog_index_put(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p)
{
    return s_apply(txn, db, p, true);
}

int
catalog_index_del(MDB_txn *txn, const catalog_db_t *db, const catalog_product_t *p)
{
    return s_apply(txn, db, p, false);
}
