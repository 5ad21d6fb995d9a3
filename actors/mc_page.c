#include "mc_page.h"

#include "mc_schema.h"
#include "mc_store.h"
#include "mc_util.h"

#include <string.h>

#define KEY_MAX 200
#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

void
mc_page_keys_init(mc_page_keys_t *keys, const msgpack_object *body)
{
    bool on = false;
    mc_map_bool(body, mc_gather_field, &on);
    *keys = (mc_page_keys_t) { .on = on };
    msgpack_sbuffer_init(&keys->buf);
}

void
mc_page_keys_add(mc_page_keys_t *keys, const void *raw, size_t len)
{
    if (!keys->on || len > MC_PAGE_KEY_MAX)
        return;
    char enc[MC_PAGE_KEY_MAX * 4 / 3 + 4];
    msgpack_packer pk;
    msgpack_packer_init(&pk, &keys->buf, msgpack_sbuffer_write);
    mc_pack_str(&pk, enc, mc_b64url_encode(enc, raw, len));
    keys->n++;
}

void
mc_page_keys_destroy(mc_page_keys_t *keys)
{
    msgpack_sbuffer_destroy(&keys->buf);
}

void
mc_page_reply_keyed(mc_ctx_t *ctx, const msgpack_sbuffer *items, size_t n, const void *next, size_t nextlen,
                    const mc_page_keys_t *keys)
{
    if (!keys || !keys->on) {
        mc_reply_page(ctx->pk, ctx->req->id, items, n, next, nextlen);
        return;
    }
    msgpack_packer *pk = ctx->pk;
    mc_reply_page_more(pk, ctx->req->id, items, n, next, nextlen, 1);
    //  a key short of an item (one too long to encode) would shift every key after it
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, keys->n == n ? n : 0);
    if (keys->n == n && keys->buf.size)
        msgpack_sbuffer_write(pk->data, keys->buf.data, keys->buf.size);
}

int
mc_page_reply(mc_ctx_t *ctx, const mc_page_t *page, mc_page_visit_fn *visit, void *arg)
{
    unsigned char key[KEY_MAX], last[KEY_MAX], seen[KEY_MAX];
    size_t plen = page->prefix.len, klen, lastlen = 0;
    if (plen + 8 > KEY_MAX)
        return MDB_BAD_VALSIZE;
    memcpy(key, page->prefix.ptr, plen);
    if (page->cursor.len) {
        long alen = mc_b64url_decode(key + plen, KEY_MAX - plen, page->cursor.ptr, page->cursor.len);
        if (alen < 8) {
            mc_reply_error(ctx->pk, ctx->req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
            return 400;
        }
        klen = plen + (size_t) alen;
    }
    else {
        mc_be64_put(key + plen, page->to == UINT64_MAX ? UINT64_MAX : page->to + 1);
        klen = plen + 8;
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, page->dbi, &cur);
    if (rc)
        return FAIL(rc);
    //  the first entry below the bound, then older ones
    MDB_val k = { klen, key }, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    rc = rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST) : mdb_cursor_get(cur, &k, &v, MDB_PREV);
    msgpack_sbuffer items, peek;
    msgpack_sbuffer_init(&items);
    msgpack_sbuffer_init(&peek);
    msgpack_packer ipk, ppk;
    msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
    msgpack_packer_init(&ppk, &peek, msgpack_sbuffer_write);
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    size_t n = 0;
    bool more = false;
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        const unsigned char *kp = k.mv_data;
        if (k.mv_size < plen + 8 || k.mv_size - plen > sizeof last || (plen && memcmp(kp, key, plen) != 0))
            break;
        uint64_t created = mc_be64_get(kp + plen);
        if (created < page->from)
            break;
        if (created > page->to)
            continue;
        //  visit reads other records: work on a copy of the key rather than LMDB's page
        size_t seenlen = k.mv_size - plen;
        memcpy(seen, kp + plen, seenlen);
        mc_str_t id = { (const char *) seen + 8, seenlen - 8 };
        if ((int64_t) n == page->limit) {
            //  a full page: it has a next one only if a further entry belongs on a page
            msgpack_sbuffer_clear(&peek);
            if ((more = visit(ctx, id, &ppk, arg)))
                break;
            continue;
        }
        if (visit(ctx, id, &ipk, arg)) {
            n++;
            lastlen = seenlen;
            memcpy(last, seen, lastlen);
            mc_page_keys_add(&keys, last, lastlen);
        }
    }
    mdb_cursor_close(cur);
    msgpack_sbuffer_destroy(&peek);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        mc_page_keys_destroy(&keys);
        return FAIL(rc);
    }
    mc_page_reply_keyed(ctx, &items, n, more && lastlen ? last : NULL, lastlen, &keys);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return 200;
}
