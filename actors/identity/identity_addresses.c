/*  A user's addresses: at most one is the default, and once there is one, there always is. */
#include "identity_db.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

/*  Keys: user id, NUL, address id. A user id has at most MC_ENV_USER_MAX bytes (the envelope
    decoder refuses longer ones) and an address id is a ULID; an id from a request body that
    does not fit names no address. */
#define ADDRESS_KEY_MAX 160

//  The key of user's address id, or 0 when it cannot be one.
static size_t
s_key(char *out, mc_str_t user, mc_str_t id)
{
    return mc_key_join(out, ADDRESS_KEY_MAX, user.ptr, user.len, id.ptr, id.len);
}

//  The signed-in user, with an id short enough for an address key. 0, or the status with the
//  problem answered.
static int
s_require_user(mc_ctx_t *ctx)
{
    if (identity_require_user(ctx))
        return 401;
    if (ctx->req->user.len > MC_ENV_USER_MAX) {
        mc_reply_error(ctx->pk, ctx->req->id, 400, "bad_envelope", "the user id is too long", NULL);
        return 400;
    }
    return 0;
}

//  Packs an address record from its fields, with is_default replaced.
static void
s_pack(msgpack_packer *pk, const msgpack_object *a, bool is_default)
{
    static const char *fields[] = { "id", "name", "line1", "line2", "city", "postal_code", "country", "created_at" };
    msgpack_pack_map(pk, 9);
    for (size_t i = 0; i < 8; i++) {
        mc_str_t v = { "", 0 };
        mc_map_str(a, fields[i], &v);
        mc_pack_kv_str(pk, fields[i], v.ptr, v.len);
    }
    mc_pack_kv_bool(pk, "is_default", is_default);
}

//  With change, sets is_default on the user's addresses: true only on keep (which may be empty
//  for none); without, only counts them. Returns the number of addresses seen, or a negative
//  LMDB error; newest (may be NULL) receives the id of the newest one.
static long
s_set_default(MDB_txn *txn, const identity_db_t *db, mc_str_t user, bool change, mc_str_t keep, char *newest,
              size_t newestsz)
{
    char prefix[ADDRESS_KEY_MAX];
    size_t plen = s_key(prefix, user, (mc_str_t) { "", 0 });
    if (!plen)
        return IDENTITY_FAIL(MDB_BAD_VALSIZE);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->addresses, &cur);
    if (rc)
        return IDENTITY_FAIL(rc);
    long seen = 0;
    MDB_val k = { plen, prefix }, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        seen++;
        if (newest)
            snprintf(newest, newestsz, "%.*s", (int) (k.mv_size - plen), (char *) k.mv_data + plen);
        mc_str_t id = { (char *) k.mv_data + plen, k.mv_size - plen };
        bool want = keep.len == id.len && memcmp(keep.ptr, id.ptr, id.len) == 0;
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        bool is_default = false;
        if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0)
            mc_map_bool(&u.data, "is_default", &is_default);
        if (change && is_default != want) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            s_pack(&pk, &u.data, want);
            MDB_val nv = { sb.size, sb.data };
            rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
            msgpack_sbuffer_destroy(&sb);
        }
        msgpack_unpacked_destroy(&u);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)
        return IDENTITY_FAIL(rc);
    return seen;
}

int
identity_address_create(mc_ctx_t *ctx)
{
    int status = s_require_user(ctx);
    if (status)
        return status;
    const identity_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t user = ctx->req->user, id = ctx->req->id;
    bool want_default = false;
    mc_map_bool(b, "is_default", &want_default);
    long existing = s_set_default(ctx->txn, db, user, want_default, id, NULL, 0);
    if (existing < 0)
        return (int) existing;
    if (existing >= 100) {
        mc_reply_error(ctx->pk, ctx->req->id, 409, "too_many_addresses", "a user keeps at most 100 addresses", NULL);
        return 409;
    }
    //  the first address is the default whatever the client said
    bool is_default = want_default || existing == 0;
    char now[32];
    mc_rfc3339(now, sizeof now, ctx->req->time);
    static const char *fields[] = { "name", "line1", "line2", "city", "postal_code", "country" };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    mc_pack_kv_str(&pk, "id", id.ptr, id.len);
    for (size_t i = 0; i < 6; i++) {
        mc_str_t v = { "", 0 };
        mc_map_str(b, fields[i], &v);
        mc_pack_kv_str(&pk, fields[i], v.ptr, v.len);
    }
    mc_pack_kv_cstr(&pk, "created_at", now);
    mc_pack_kv_bool(&pk, "is_default", is_default);
    char key[ADDRESS_KEY_MAX];
    MDB_val k = { s_key(key, user, id), key }, v = { sb.size, sb.data };
    int rc = k.mv_size ? mdb_put(ctx->txn, db->addresses, &k, &v, MDB_NOOVERWRITE) : MDB_BAD_VALSIZE;
    if (!rc) {
        mc_reply_begin(ctx->pk, ctx->req->id, 201, NULL);
        msgpack_sbuffer_write(ctx->pk->data, sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    return rc ? IDENTITY_FAIL(rc) : 201;
}

int
identity_address_list(mc_ctx_t *ctx)
{
    int status = s_require_user(ctx);
    if (status)
        return status;
    const identity_db_t *db = ctx->state;
    int64_t limit = 20;
    mc_map_int(ctx->req->body, "limit", &limit);
    mc_str_t cursor = { "", 0 };
    mc_map_str(ctx->req->body, "cursor", &cursor);
    char prefix[ADDRESS_KEY_MAX], after[64] = "";
    mc_str_t user = ctx->req->user;
    size_t plen = s_key(prefix, user, (mc_str_t) { "", 0 });
    long alen = 0;
    if (cursor.len && ((alen = mc_b64url_decode(after, sizeof after - 1, cursor.ptr, cursor.len)) != MC_ULID_LEN)) {
        mc_reply_error(ctx->pk, ctx->req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
        return 400;
    }
    //  strictly after the cursor's id: the id and a NUL
    char start[ADDRESS_KEY_MAX];
    size_t slen = s_key(start, user, (mc_str_t) { after, (size_t) alen + (alen ? 1 : 0) });
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->addresses, &cur);
    if (rc)
        return IDENTITY_FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    size_t n = 0;
    bool more = false;
    char last[64] = "";
    MDB_val k = { slen, start }, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if ((int64_t) n == limit) {
            more = true;
            break;
        }
        msgpack_sbuffer_write(&items, v.mv_data, v.mv_size);
        snprintf(last, sizeof last, "%.*s", (int) (k.mv_size - plen), (char *) k.mv_data + plen);
        n++;
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        return IDENTITY_FAIL(rc);
    }
    mc_reply_page(ctx->pk, ctx->req->id, &items, n, more ? last : NULL, strlen(last));
    msgpack_sbuffer_destroy(&items);
    return 200;
}

int
identity_address_delete(mc_ctx_t *ctx)
{
    int status = s_require_user(ctx);
    if (status)
        return status;
    const identity_db_t *db = ctx->state;
    mc_str_t id = { "", 0 };
    mc_map_str(ctx->req->body, "id", &id);
    char key[ADDRESS_KEY_MAX];
    MDB_val k = { s_key(key, ctx->req->user, id), key }, v;
    int rc = id.len && k.mv_size ? mdb_get(ctx->txn, db->addresses, &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        //  another user's address looks exactly like one that does not exist
        mc_reply_error(ctx->pk, ctx->req->id, 404, "address_not_found", "you have no address with this id", NULL);
        return 404;
    }
    bool was_default = false;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (!rc && mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0)
        mc_map_bool(&u.data, "is_default", &was_default);
    msgpack_unpacked_destroy(&u);
    if (!rc)
        rc = mdb_del(ctx->txn, db->addresses, &k, NULL);
    if (rc)
        return IDENTITY_FAIL(rc);
    if (was_default) {
        //  the newest remaining address takes over
        char newest[64] = "";
        long seen = s_set_default(ctx->txn, db, ctx->req->user, false, (mc_str_t) { "", 0 }, newest, sizeof newest);
        if (seen > 0)
            seen = s_set_default(ctx->txn, db, ctx->req->user, true, (mc_str_t) { newest, strlen(newest) }, NULL, 0);
        if (seen < 0)
            return (int) seen;
    }
    mc_reply_begin(ctx->pk, ctx->req->id, 204, NULL);
    msgpack_pack_nil(ctx->pk);
    return 204;
}

int
identity_address_get(mc_ctx_t *ctx)
{
    int status = s_require_user(ctx);
    if (status)
        return status;
    const identity_db_t *db = ctx->state;
    mc_str_t id = { "", 0 };
    mc_map_str(ctx->req->body, "id", &id);
    char key[ADDRESS_KEY_MAX];
    MDB_val k = { s_key(key, ctx->req->user, id), key }, v;
    int rc = id.len && k.mv_size ? mdb_get(ctx->txn, db->addresses, &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        mc_reply_error(ctx->pk, ctx->req->id, 404, "address_not_found", "you have no address with this id", NULL);
        return 404;
    }
    if (rc)
        return IDENTITY_FAIL(rc);
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_sbuffer_write(ctx->pk->data, v.mv_data, v.mv_size);
    return 200;
}
