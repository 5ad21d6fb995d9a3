/*  identity_directory: who a user is and who the admins are, for other services (the
    notifications service addresses its mails with them). Internal messages only: no route
    reaches them, and they answer only the runtime's role "system". */
#include "identity_db.h"

#include "mc_util.h"

#include <string.h>

int
identity_admin_index(MDB_txn *txn, const identity_db_t *db, mc_str_t id, mc_str_t role)
{
    MDB_val k = { id.len, (void *) id.ptr }, v = { 0, "" };
    if (!mc_str_eq(role, "admin"))
        return 0;
    return mdb_put(txn, db->admins, &k, &v, 0);
}

int
identity_admin_index_build(MDB_txn *txn, const identity_db_t *db)
{
    MDB_stat st;
    int rc = mdb_stat(txn, db->admins, &st);
    if (rc || st.ms_entries)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, db->users, &cur)))
        return rc;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_str_t role = { "", 0 };
        if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0 && mc_map_str(&u.data, "role", &role) == 0) {
            MDB_val id = { k.mv_size, k.mv_data }, empty = { 0, "" };
            if (mc_str_eq(role, "admin"))
                rc = mdb_put(txn, db->admins, &id, &empty, 0);
        }
        msgpack_unpacked_destroy(&u);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
s_system_only(mc_ctx_t *ctx)
{
    if (mc_str_eq(ctx->req->role, "system"))
        return 0;
    mc_reply_error(ctx->pk, ctx->req->id, 403, "forbidden", "for other services only", NULL);
    return 403;
}

//  user.contact: the public profile of the user named by the key.
int
identity_contact(mc_ctx_t *ctx)
{
    int status = s_system_only(ctx);
    if (status)
        return status;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = identity_user_load(ctx->txn, ctx->state, ctx->req->key, &u);
    if (rc == MDB_NOTFOUND) {
        mc_reply_error(ctx->pk, ctx->req->id, 404, "user_not_found", "no such user", NULL);
        status = 404;
    }
    else
    if (rc)
        status = IDENTITY_FAIL(rc);
    else {
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        identity_user_pack_public(ctx->pk, &u.data);
        status = 200;
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  user.admins: every admin's public profile (there are few).
int
identity_admins(mc_ctx_t *ctx)
{
    int status = s_system_only(ctx);
    if (status)
        return status;
    const identity_db_t *db = ctx->state;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->admins, &cur);
    if (rc)
        return IDENTITY_FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &items, msgpack_sbuffer_write);
    uint32_t n = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < 1000; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (identity_user_load(ctx->txn, db, (mc_str_t) { k.mv_data, k.mv_size }, &u) == 0) {
            identity_user_pack_public(&pk, &u.data);
            n++;
        }
        msgpack_unpacked_destroy(&u);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        return IDENTITY_FAIL(rc);
    }
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 1);
    mc_pack_cstr(ctx->pk, "items");
    msgpack_pack_array(ctx->pk, n);
    if (items.size)
        msgpack_sbuffer_write(ctx->pk->data, items.data, items.size);
    msgpack_sbuffer_destroy(&items);
    return 200;
}
