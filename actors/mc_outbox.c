#include "mc_outbox.h"

#include <stdio.h>
#include <string.h>

void
mc_outbox_key(unsigned char out[8], uint64_t seq)
{
    for (int i = 7; i >= 0; i--, seq >>= 8)
        out[i] = (unsigned char) seq;
}

uint64_t
mc_outbox_seq(const MDB_val *key)
{
    uint64_t seq = 0;
    const unsigned char *p = key->mv_data;
    for (size_t i = 0; i < 8 && i < key->mv_size; i++)
        seq = seq << 8 | p[i];
    return seq;
}

int
mc_outbox_append(mc_ctx_t *ctx, const char *aggregate, mc_str_t aggregate_id, const char *type, mc_str_t data)
{
    //  the next sequence follows the last one ever used: the relay empties the outbox, and a
    //  number used before would sort behind its reading position
    MDB_val sk = { 4, "last" }, sv;
    int rc = mdb_get(ctx->txn, ctx->outbox_seq, &sk, &sv);
    uint64_t seq = rc == 0 && sv.mv_size == 8 ? mc_outbox_seq(&sv) + 1 : 1;
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(ctx->txn, ctx->outbox, &cur)))
        return rc;
    MDB_val k, v;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && mc_outbox_seq(&k) >= seq)
        seq = mc_outbox_seq(&k) + 1;
    const mc_request_t *req = ctx->req;
    char id[96], source[64];
    snprintf(id, sizeof id, "%.*s-%u", (int) req->id.len, req->id.ptr, ctx->events++);
    snprintf(source, sizeof source, "/mercato/%s", ctx->service);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 11);
    mc_pack_kv_cstr(&pk, "id", id);
    mc_pack_kv_cstr(&pk, "aggregate", aggregate);
    mc_pack_kv_str(&pk, "aggregate_id", aggregate_id.ptr, aggregate_id.len);
    mc_pack_kv_cstr(&pk, "type", type);
    mc_pack_kv_cstr(&pk, "source", source);
    mc_pack_kv_uint(&pk, "time", req->time);
    mc_pack_kv_str(&pk, "corr", req->corr.ptr, req->corr.len);
    mc_pack_kv_str(&pk, "cause", req->id.ptr, req->id.len);
    mc_pack_kv_str(&pk, "trace", req->trace.ptr, req->trace.len);
    mc_pack_cstr(&pk, "data");
    msgpack_sbuffer_write(&sb, data.ptr, data.len);
    mc_pack_kv_uint(&pk, "seq", seq);
    unsigned char key[8];
    mc_outbox_key(key, seq);
    k = (MDB_val) { 8, key };
    v = (MDB_val) { sb.size, sb.data };
    rc = mdb_cursor_put(cur, &k, &v, MDB_APPEND);
    mdb_cursor_close(cur);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return rc;
    MDB_val last = { 8, key };
    return mdb_put(ctx->txn, ctx->outbox_seq, &sk, &last, 0);
}

long
mc_outbox_read(MDB_env *env, MDB_dbi outbox, uint64_t after, size_t max, msgpack_sbuffer *out)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return rc > 0 ? -rc : rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, outbox, &cur))) {
        mdb_txn_abort(txn);
        return rc > 0 ? -rc : rc;
    }
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    unsigned char key[8];
    mc_outbox_key(key, after + 1);
    MDB_val k = { 8, key }, v;
    size_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < max;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++)
        msgpack_sbuffer_write(&items, v.mv_data, v.mv_size);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, n);
    if (items.size)
        msgpack_sbuffer_write(out, items.data, items.size);
    msgpack_sbuffer_destroy(&items);
    return (long) n;
}
