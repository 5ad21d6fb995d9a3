#include "mc_idem.h"
#include "mc_util.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

/*  Record: 1 byte state ('p' pending, 'd' done) | 8 bytes first-seen ms | 32 bytes body hash |
    1 byte ref length | ref | 2 bytes status | 1 byte error | raw. */
#define HEAD (1 + 8 + 32 + 1)

static size_t
s_key(char *out, size_t size, mc_str_t user, mc_str_t key)
{
    int n = snprintf(out, size, "%.*s%c%.*s", (int) user.len, user.ptr, 0, (int) key.len, key.ptr);
    return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

//  The body's hash: its msgpack bytes as the edge sent them (JSON member order is kept).
static void
s_hash(const msgpack_object *body, unsigned char out[32])
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *body);
    SHA256((const unsigned char *) sb.data, sb.size, out);
    msgpack_sbuffer_destroy(&sb);
}

int
mc_idem_open(mc_store_t *store, mc_idem_db_t *db)
{
    static const char *const names[] = { "idempotency", "idempotency_time" };
    MDB_dbi *const dbis[] = { &db->keys, &db->by_time };
    return mc_store_dbis(store, names, dbis, 2);
}

int
mc_idem_check(MDB_txn *txn, const mc_idem_db_t *db, const mc_request_t *req, mc_idem_t *out)
{
    memset(out, 0, sizeof *out);
    msgpack_sbuffer_init(&out->raw);
    char key[400];
    MDB_val k = { s_key(key, sizeof key, req->user, req->idem), key }, v;
    int rc = k.mv_size ? mdb_get(txn, db->keys, &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    const unsigned char *p = v.mv_data;
    if (v.mv_size < HEAD || v.mv_size < HEAD + (size_t) p[HEAD - 1])
        return MDB_CORRUPTED;
    if (mc_be64_get(p + 1) + MC_IDEM_TTL_MS <= req->time)
        return 0;       //  expired: the key may be used again
    unsigned char hash[32];
    s_hash(req->body, hash);
    if (memcmp(hash, p + 9, 32) != 0) {
        out->state = MC_IDEM_MISMATCH;
        return 0;
    }
    size_t rlen = p[HEAD - 1];
    snprintf(out->ref, sizeof out->ref, "%.*s", (int) rlen, (const char *) p + HEAD);
    if (p[0] == 'p') {
        out->state = MC_IDEM_PENDING;
        return 0;
    }
    size_t at = HEAD + rlen;
    if (v.mv_size < at + 3)
        return MDB_CORRUPTED;
    out->state = MC_IDEM_DONE;
    out->status = p[at] << 8 | p[at + 1];
    out->error = p[at + 2] != 0;
    msgpack_sbuffer_write(&out->raw, (const char *) p + at + 3, v.mv_size - at - 3);
    return 0;
}

static int
s_put(MDB_txn *txn, const mc_idem_db_t *db, const char *key, size_t klen, char state, uint64_t first,
      const unsigned char hash[32], const char *ref, size_t rlen, int status, bool error, const void *raw,
      size_t len)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    unsigned char head[HEAD];
    head[0] = (unsigned char) state;
    mc_be64_put(head + 1, first);
    memcpy(head + 9, hash, 32);
    head[HEAD - 1] = (unsigned char) rlen;
    msgpack_sbuffer_write(&sb, (const char *) head, HEAD);
    if (rlen)
        msgpack_sbuffer_write(&sb, ref, rlen);
    if (state == 'd') {
        unsigned char tail[3] = { (unsigned char) (status >> 8), (unsigned char) status, error };
        msgpack_sbuffer_write(&sb, (const char *) tail, 3);
        if (len)
            msgpack_sbuffer_write(&sb, raw, len);
    }
    MDB_val k = { klen, (void *) key }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->keys, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int
mc_idem_begin(MDB_txn *txn, const mc_idem_db_t *db, const mc_request_t *req, const char *ref)
{
    char key[400], tkey[408];
    size_t klen = s_key(key, sizeof key, req->user, req->idem);
    size_t rlen = strlen(ref);
    if (!klen || rlen > 255)
        return MDB_BAD_VALSIZE;
    unsigned char hash[32];
    s_hash(req->body, hash);
    int rc = s_put(txn, db, key, klen, 'p', req->time, hash, ref, rlen, 0, false, NULL, 0);
    mc_be64_put((unsigned char *) tkey, req->time);
    memcpy(tkey + 8, key, klen);
    MDB_val tk = { 8 + klen, tkey }, empty = { 0, "" };
    return rc ? rc : mdb_put(txn, db->by_time, &tk, &empty, 0);
}

int
mc_idem_finish(MDB_txn *txn, const mc_idem_db_t *db, mc_str_t user, mc_str_t key, int status, bool error,
               const void *raw, size_t len)
{
    char k[400];
    MDB_val mk = { s_key(k, sizeof k, user, key), k }, v;
    int rc = mk.mv_size ? mdb_get(txn, db->keys, &mk, &v) : MDB_NOTFOUND;
    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc;
    const unsigned char *p = v.mv_data;
    if (v.mv_size < HEAD || v.mv_size < HEAD + (size_t) p[HEAD - 1])
        return MDB_CORRUPTED;
    uint64_t first = mc_be64_get(p + 1);
    if (status >= 500 || status == 429) {
        char tkey[408];
        mc_be64_put((unsigned char *) tkey, first);
        memcpy(tkey + 8, k, mk.mv_size);
        MDB_val tk = { 8 + mk.mv_size, tkey };
        rc = mdb_del(txn, db->by_time, &tk, NULL);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        return mdb_del(txn, db->keys, &mk, NULL);
    }
    unsigned char hash[32];
    char ref[256];
    memcpy(hash, p + 9, 32);
    size_t rlen = p[HEAD - 1];
    memcpy(ref, p + HEAD, rlen);
    //  p points into the map, which the write below may move: everything needed is copied
    return s_put(txn, db, k, mk.mv_size, 'd', first, hash, ref, rlen, status, error, raw, len);
}

int
mc_idem_prune(MDB_txn *txn, const mc_idem_db_t *db, uint64_t now_ms, int max)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->by_time, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    for (int n = 0; n < max && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0; n++) {
        if (k.mv_size < 8 || mc_be64_get(k.mv_data) + MC_IDEM_TTL_MS > now_ms)
            break;
        //  a key reused after it expired has a newer entry here: only its own record goes
        MDB_val key = { k.mv_size - 8, (char *) k.mv_data + 8 }, rec;
        rc = mdb_get(txn, db->keys, &key, &rec);
        if (rc == 0 && rec.mv_size >= HEAD && mc_be64_get((const unsigned char *) rec.mv_data + 1) == mc_be64_get(k.mv_data))
            rc = mdb_del(txn, db->keys, &key, NULL);
        if ((rc && rc != MDB_NOTFOUND) || (rc = mdb_cursor_del(cur, 0)))
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
mc_idem_replay(mc_ctx_t *ctx, const mc_idem_t *rec)
{
    mc_reply_raw(ctx->pk, ctx->req->id, rec->status, rec->error, rec->raw.data, rec->raw.size, true);
    return rec->status;
}

int
mc_idem_mismatch(mc_ctx_t *ctx)
{
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, "Idempotency-Key", "was used with a different request body");
    mc_reply_error(ctx->pk, ctx->req->id, 422, "idempotency_key_reused",
                   "this Idempotency-Key was already used with a different request", &errs);
    return 422;
}
