#include "mc_page.h"

#include "mc_store.h"
#include "mc_util.h"

#include <string.h>

#define KEY_MAX 200
#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

int
mc_page_reply(mc_ctx_t *ctx, const mc_page_t *page, mc_page_visit_fn *visit, void *arg)
{
    unsigned char key[KEY_MAX], last[KEY_MAX];
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
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
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
        if ((int64_t) n == page->limit) {
            more = true;
            break;
        }
        lastlen = k.mv_size - plen;
        memcpy(last, kp + plen, lastlen);
        n += visit(ctx, (mc_str_t) { (const char *) last + 8, lastlen - 8 }, &ipk, arg);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        return FAIL(rc);
    }
    mc_reply_page(ctx->pk, ctx->req->id, &items, n, more && lastlen ? last : NULL, lastlen);
    msgpack_sbuffer_destroy(&items);
    return 200;
}
