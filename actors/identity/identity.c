#include "identity.h"

#include "identity_db.h"
#include "mc_config.h"
#include "mc_log.h"
#include "mc_outbox.h"
#include "mc_page.h"
#include "mc_password.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t
identity_lower(char *out, size_t outsz, mc_str_t s)
{
    size_t n = s.len < outsz - 1 ? s.len : outsz - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = s.ptr[i] >= 'A' && s.ptr[i] <= 'Z' ? (char) (s.ptr[i] + 32) : s.ptr[i];
    out[n] = 0;
    return n;
}

int
identity_user_load(MDB_txn *txn, const identity_db_t *db, mc_str_t id, msgpack_unpacked *u)
{
    if (!id.len)
        return MDB_NOTFOUND;
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = mdb_get(txn, db->users, &k, &v);
    if (rc)
        return rc;
    return mc_msgpack_unpack(u, v.mv_data, v.mv_size) ? MDB_CORRUPTED : 0;
}

void
identity_user_pack_public(msgpack_packer *pk, const msgpack_object *user)
{
    static const char *fields[] = { "id", "email", "name", "role", "created_at", "updated_at" };
    msgpack_pack_map(pk, 6);
    for (size_t i = 0; i < 6; i++) {
        mc_str_t v = { "", 0 };
        mc_map_str(user, fields[i], &v);
        mc_pack_kv_str(pk, fields[i], v.ptr, v.len);
    }
}

int
identity_unauthorized(mc_ctx_t *ctx, const char *code, const char *detail)
{
    mc_reply_error(ctx->pk, ctx->req->id, 401, code, detail, NULL);
    return 401;
}

int
identity_require_user(mc_ctx_t *ctx)
{
    return ctx->req->user.len ? 0 : identity_unauthorized(ctx, "unauthorized", "this needs a signed-in user");
}

//  Writes a user record.
static int
s_user_put(MDB_txn *txn, const identity_db_t *db, mc_str_t id, mc_str_t email, mc_str_t name, mc_str_t role,
           mc_str_t created, mc_str_t updated, mc_str_t hash, uint64_t version)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    mc_pack_kv_str(&pk, "id", id.ptr, id.len);
    mc_pack_kv_str(&pk, "email", email.ptr, email.len);
    mc_pack_kv_str(&pk, "name", name.ptr, name.len);
    mc_pack_kv_str(&pk, "role", role.ptr, role.len);
    mc_pack_kv_str(&pk, "created_at", created.ptr, created.len);
    mc_pack_kv_str(&pk, "updated_at", updated.ptr, updated.len);
    mc_pack_kv_str(&pk, "password_hash", hash.ptr, hash.len);
    mc_pack_kv_uint(&pk, "version", version);
    MDB_val k = { id.len, (void *) id.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->users, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc ? rc : identity_admin_index(txn, db, id, role);
}

//  Creates a user; 409 when the email is taken (any case).
static int
s_create_user(mc_ctx_t *ctx, MDB_txn *txn, const identity_db_t *db, mc_str_t id, mc_str_t email, mc_str_t name,
              mc_str_t role, mc_str_t hash, uint64_t now_ms, int *status)
{
    char lower[256];
    MDB_val ek = { identity_lower(lower, sizeof lower, email), lower }, idv = { id.len, (void *) id.ptr };
    int rc = mdb_put(txn, db->emails, &ek, &idv, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        *status = 409;
        return 0;
    }
    if (rc)
        return rc;
    char now[32];
    mc_rfc3339(now, sizeof now, now_ms);
    mc_str_t ts = { now, strlen(now) };
    *status = 201;
    return s_user_put(txn, db, id, email, name, role, ts, ts, hash, 1);
}

//  Which shard store holds: the name of its directory, data_dir/identity/<shard>/ (open is
//  not told). -1 when the path says something else.
static long
s_store_shard(mc_store_t *store)
{
    const char *path = NULL;
    if (mdb_env_get_path(mc_store_env(store), &path) || !path)
        return -1;
    size_t n = strlen(path);
    while (n && path[n - 1] == '/')
        n--;
    size_t start = n;
    while (start && path[start - 1] >= '0' && path[start - 1] <= '9')
        start--;
    if (start == n || n - start > 2)
        return -1;
    return strtol(path + start, NULL, 10);
}

//  MERCATO_ADMIN_EMAIL / MERCATO_ADMIN_PASSWORD: an admin, unless that email already has a user.
//  Like every user it lives on the shard of its email, with an id that falls there too: only
//  that shard makes it.
static void
s_bootstrap_admin(mc_store_t *store, identity_db_t *db)
{
    const char *email = mc_config_env("MERCATO_ADMIN_EMAIL", NULL);
    const char *password = mc_config_env("MERCATO_ADMIN_PASSWORD", NULL);
    if (!email || !password)
        return;
    long shard = s_store_shard(store);
    unsigned home = mc_shard_of_folded("identity", email, strlen(email));
    if (mc_schema_shards("identity") > 1 && shard != (long) home)
        return;
    if (strlen(password) < 8 || strlen(password) > 128) {
        mc_error("MERCATO_ADMIN_PASSWORD must have 8 to 128 characters; no admin created", NULL);
        return;
    }
    MDB_txn *txn;
    if (mc_store_begin(store, &txn))
        return;
    char lower[256];
    MDB_val ek = { identity_lower(lower, sizeof lower, (mc_str_t) { email, strlen(email) }), lower }, v;
    if (mdb_get(txn, db->emails, &ek, &v) == 0) {
        mdb_txn_abort(txn);
        return;
    }
    char hash[MC_PASSWORD_HASH_MAX], id[MC_ULID_LEN + 1];
    uint64_t now = mc_now_ms();
    mc_ulid(id, now);
    for (unsigned i = 0; i < 64 * MC_SHARDS_MAX && mc_shard_of("identity", id, MC_ULID_LEN) != home; i++)
        mc_ulid(id, now);
    int status = 0;
    int rc = mc_password_hash(password, strlen(password), hash) ? -1
           : s_create_user(NULL, txn, db, (mc_str_t) { id, MC_ULID_LEN }, (mc_str_t) { email, strlen(email) },
                           MC_STR("Administrator"), MC_STR("admin"), (mc_str_t) { hash, strlen(hash) }, now, &status);
    if (rc || status != 201 || mdb_txn_commit(txn)) {
        if (rc || status != 201)
            mdb_txn_abort(txn);
        mc_error("admin bootstrap failed", NULL);
        return;
    }
    char esc[300];
    mc_info("admin created", "\"email\":\"%s\",\"id\":\"%s\"", mc_log_escape(esc, sizeof esc, email, strlen(email)), id);
}

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    identity_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "users", "emails", "addresses", "refresh", "families", "user_families",
                                         "failures", "admins", "expiry", "family_exp" };
    MDB_dbi *const dbis[] = { &db->users, &db->emails, &db->addresses, &db->refresh, &db->families,
                              &db->user_families, &db->failures, &db->admins, &db->expiry, &db->family_exp };
    int rc = mc_store_dbis(store, names, dbis, 10);
    MDB_txn *txn;
    if (!rc && !(rc = mc_store_begin(store, &txn))) {
        if ((rc = identity_admin_index_build(txn, db)) || (rc = identity_prune_build(txn, db)))
            mdb_txn_abort(txn);
        else
            rc = mdb_txn_commit(txn);
    }
    if (!rc && !(db->keys = identity_keys_new(data_dir)))
        rc = -1;
    if (rc) {
        identity_keys_destroy(&db->keys);
        free(db);
        return rc;
    }
    s_bootstrap_admin(store, db);
    *state = db;
    return 0;
}

static void
s_close(void **state)
{
    identity_db_t *db = *state;
    if (db)
        identity_keys_destroy(&db->keys);
    free(db);
    *state = NULL;
}

static int
s_register(mc_ctx_t *ctx)
{
    const identity_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t email, name, hash;
    if (mc_map_str(b, "email", &email) || mc_map_str(b, "name", &name) || mc_map_str(b, "password_hash", &hash)
    ||  hash.len < 10) {
        mc_reply_error(ctx->pk, ctx->req->id, 400, "bad_message", "register needs the password hashed by the edge", NULL);
        return 400;
    }
    int status = 0;
    int rc = s_create_user(ctx, ctx->txn, db, ctx->req->id, email, name, MC_STR("customer"), hash, ctx->req->time, &status);
    if (rc)
        return IDENTITY_FAIL(rc);
    if (status == 409) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "email", "is already registered");
        mc_reply_error(ctx->pk, ctx->req->id, 409, "duplicate_email", "a user with this email already exists", &errs);
        return 409;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = identity_user_load(ctx->txn, db, ctx->req->id, &u);
    if (!rc) {
        //  user.registered: the public fields only, never the hash
        static const char *fields[] = { "email", "name", "role", "created_at" };
        msgpack_sbuffer ev;
        msgpack_sbuffer_init(&ev);
        msgpack_packer epk;
        msgpack_packer_init(&epk, &ev, msgpack_sbuffer_write);
        msgpack_pack_map(&epk, 5);
        mc_pack_kv_str(&epk, "user_id", ctx->req->id.ptr, ctx->req->id.len);
        for (size_t i = 0; i < 4; i++) {
            mc_str_t v = { "", 0 };
            mc_map_str(&u.data, fields[i], &v);
            mc_pack_kv_str(&epk, fields[i], v.ptr, v.len);
        }
        mc_reply_begin(ctx->pk, ctx->req->id, 201, NULL);
        identity_user_pack_public(ctx->pk, &u.data);
        rc = mc_outbox_append(ctx, "user", ctx->req->id, "user.registered", (mc_str_t) { ev.data, ev.size });
        msgpack_sbuffer_destroy(&ev);
    }
    msgpack_unpacked_destroy(&u);
    return rc ? IDENTITY_FAIL(rc) : 201;
}

static int
s_user_not_found(mc_ctx_t *ctx)
{
    //  a valid token for a user that no longer exists
    return identity_unauthorized(ctx, "unknown_user", "the signed-in user no longer exists");
}

static void
s_etag(char *out, size_t outsz, const msgpack_object *user)
{
    uint64_t version = 1;
    mc_map_uint(user, "version", &version);
    snprintf(out, outsz, "\"%" PRIu64 "\"", version);
}

//  Loads the signed-in caller into u: 200, or the status already replied (401, or an error).
static int
s_load_caller(mc_ctx_t *ctx, msgpack_unpacked *u)
{
    if (identity_require_user(ctx))
        return 401;
    int rc = identity_user_load(ctx->txn, ctx->state, ctx->req->user, u);
    return rc == MDB_NOTFOUND ? s_user_not_found(ctx) : rc ? IDENTITY_FAIL(rc) : 200;
}

static int
s_me(mc_ctx_t *ctx)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int status = s_load_caller(ctx, &u);
    if (status == 200) {
        char etag[32];
        s_etag(etag, sizeof etag, &u.data);
        mc_reply_begin(ctx->pk, ctx->req->id, 200, etag);
        identity_user_pack_public(ctx->pk, &u.data);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  Rewrites the caller's record with a new name and/or hash.
static int
s_rewrite(mc_ctx_t *ctx, const mc_str_t *name, const mc_str_t *hash, msgpack_unpacked *u)
{
    const identity_db_t *db = ctx->state;
    int rc = identity_user_load(ctx->txn, db, ctx->req->user, u);
    if (rc == MDB_NOTFOUND)
        return s_user_not_found(ctx);
    if (rc)
        return IDENTITY_FAIL(rc);
    const msgpack_object *m = &u->data;
    mc_str_t id, email, old_name, role, created, old_hash;
    mc_map_str(m, "id", &id);
    mc_map_str(m, "email", &email);
    mc_map_str(m, "name", &old_name);
    mc_map_str(m, "role", &role);
    mc_map_str(m, "created_at", &created);
    mc_map_str(m, "password_hash", &old_hash);
    char now[32], etag[32];
    s_etag(etag, sizeof etag, m);
    mc_str_t want = ctx->req->if_match;
    if (want.len && !mc_str_eq(want, "*") && !mc_str_eq(want, etag)) {
        mc_reply_error(ctx->pk, ctx->req->id, 412, "precondition_failed",
                       "the profile has changed since the ETag in If-Match", NULL);
        return 412;
    }
    uint64_t version = 1;
    mc_map_uint(m, "version", &version);
    mc_rfc3339(now, sizeof now, ctx->req->time);
    rc = s_user_put(ctx->txn, db, id, email, name ? *name : old_name, role, created, (mc_str_t) { now, strlen(now) },
                    hash ? *hash : old_hash, version + 1);
    return rc ? IDENTITY_FAIL(rc) : 0;
}

static int
s_update(mc_ctx_t *ctx)
{
    if (identity_require_user(ctx))
        return 401;
    mc_str_t name;
    bool has_name = mc_map_str(ctx->req->body, "name", &name) == 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = s_rewrite(ctx, has_name ? &name : NULL, NULL, &u);
    msgpack_unpacked_destroy(&u);
    if (rc)
        return rc;
    return s_me(ctx);
}

//  The caller's email as the throttle's key (lower is its buffer); 200, or the status already
//  replied.
static int
s_caller_email(mc_ctx_t *ctx, char *lower, size_t size, MDB_val *key)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int status = s_load_caller(ctx, &u);
    if (status == 200) {
        mc_str_t email = { "", 0 };
        mc_map_str(&u.data, "email", &email);
        *key = (MDB_val) { identity_lower(lower, size, email), lower };
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  user.password_hash: the edge checks current_password against it, unless the caller's email is
//  throttled (a wrong current_password counts as a failed sign-in).
static int
s_password_hash(mc_ctx_t *ctx)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int status = s_load_caller(ctx, &u);
    mc_str_t hash = { "", 0 }, email = { "", 0 };
    char lower[256];
    if (status == 200) {
        mc_map_str(&u.data, "password_hash", &hash);
        mc_map_str(&u.data, "email", &email);
        MDB_val ek = { identity_lower(lower, sizeof lower, email), lower };
        status = identity_throttled(ctx, &ek);
        status = status ? status : 200;
    }
    if (status == 200) {
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        msgpack_pack_map(ctx->pk, 2);
        mc_pack_kv_str(ctx->pk, "password_hash", hash.ptr, hash.len);
        mc_pack_kv_str(ctx->pk, "email", email.ptr, email.len);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

//  user.password: the edge has checked current_password (ok) and, when it was right, hashed the
//  new one. A wrong one is recorded as a failed sign-in for the caller's email; the answer to
//  either comes from here, after the throttle, so that it says nothing while the email is
//  throttled.
static int
s_password(mc_ctx_t *ctx)
{
    if (identity_require_user(ctx))
        return 401;
    bool ok = false;
    mc_str_t hash = { "", 0 };
    mc_map_bool(ctx->req->body, "ok", &ok);
    if (ok && (mc_map_str(ctx->req->body, "password_hash", &hash) || hash.len < 10)) {
        mc_reply_error(ctx->pk, ctx->req->id, 400, "bad_message", "a password change needs the hash from the edge", NULL);
        return 400;
    }
    char lower[256];
    MDB_val ek;
    int rc = s_caller_email(ctx, lower, sizeof lower, &ek);
    if (rc != 200 || (rc = identity_throttled(ctx, &ek)))
        return rc;
    if (!ok) {
        if ((rc = identity_failure_record(ctx, &ek)))
            return IDENTITY_FAIL(rc);
        ctx->commit = true;     //  the failure must stick although the reply is an error
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "current_password", "is not your password");
        mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "the request has invalid fields", &errs);
        return 422;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = s_rewrite(ctx, NULL, &hash, &u);
    msgpack_unpacked_destroy(&u);
    if (rc)
        return rc;
    //  every session signed in with the old password ends here; the right password, like a
    //  sign-in, clears the failures
    rc = identity_revoke_all(ctx->txn, ctx->state, ctx->req->user);
    if (!rc)
        rc = identity_failures_clear(ctx->txn, ctx->state, &ek);
    if (rc)
        return IDENTITY_FAIL(rc);
    mc_reply_begin(ctx->pk, ctx->req->id, 204, NULL);
    msgpack_pack_nil(ctx->pk);
    return 204;
}

static int
s_user_list(mc_ctx_t *ctx)
{
    const identity_db_t *db = ctx->state;
    int64_t limit = 20;
    mc_map_int(ctx->req->body, "limit", &limit);
    mc_str_t cursor = { "", 0 };
    mc_map_str(ctx->req->body, "cursor", &cursor);
    char after[MC_ULID_LEN + 2] = "";
    if (cursor.len) {
        long n = mc_b64url_decode(after, sizeof after - 2, cursor.ptr, cursor.len);
        if (n != MC_ULID_LEN) {
            mc_reply_error(ctx->pk, ctx->req->id, 400, "invalid_cursor", "the cursor is not one this API issued", NULL);
            return 400;
        }
    }
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->users, &cur);
    if (rc)
        return IDENTITY_FAIL(rc);
    msgpack_sbuffer items;
    msgpack_sbuffer_init(&items);
    msgpack_packer ipk;
    msgpack_packer_init(&ipk, &items, msgpack_sbuffer_write);
    //  strictly after the cursor: the smallest key past the last id is that id plus a zero byte
    MDB_val k = { cursor.len ? MC_ULID_LEN + 1 : 0, after }, v;
    size_t n = 0;
    char last[MC_ULID_LEN + 1] = "";
    bool more = false;
    //  users are in id order and a cursor is the last id: the same question on every shard, and
    //  each user's key is its id when the edge gathers the list from every shard
    mc_page_keys_t keys;
    mc_page_keys_init(&keys, ctx->req->body);
    for (rc = cursor.len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((int64_t) n == limit) {
            more = true;
            break;
        }
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0) {
            identity_user_pack_public(&ipk, &u.data);
            n++;
            snprintf(last, sizeof last, "%.*s", (int) k.mv_size, (char *) k.mv_data);
            mc_page_keys_add(&keys, last, strlen(last));
        }
        msgpack_unpacked_destroy(&u);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) {
        msgpack_sbuffer_destroy(&items);
        mc_page_keys_destroy(&keys);
        return IDENTITY_FAIL(rc);
    }
    mc_page_reply_keyed(ctx, &items, n, more ? last : NULL, strlen(last), &keys);
    msgpack_sbuffer_destroy(&items);
    mc_page_keys_destroy(&keys);
    return 200;
}

static int
s_keys_list(mc_ctx_t *ctx)
{
    identity_db_t *db = ctx->state;
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    identity_keys_pack(db->keys, ctx->pk, ctx->req->time);
    return 200;
}

static int
s_keys_rotate(mc_ctx_t *ctx)
{
    identity_db_t *db = ctx->state;
    if (identity_keys_rotate(db->keys, ctx->req->time)) {
        mc_reply_error(ctx->pk, ctx->req->id, 500, "rotation_failed", "a new signing key could not be made", NULL);
        return 500;
    }
    char kid[IDENTITY_KID_LEN + 1];
    identity_keys_kid(db->keys, kid);
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 1);
    mc_pack_kv_cstr(ctx->pk, "kid", kid);
    return 200;
}

//  identity.tick: failures and refresh-token families whose time is up go.
static int
s_tick(mc_ctx_t *ctx)
{
    int rc = identity_prune(ctx->txn, ctx->state, ctx->req->time, IDENTITY_PRUNE_MAX);
    return rc ? IDENTITY_FAIL(rc) : mc_reply_empty(ctx, 200);
}

static const mc_handler_t s_handlers[] = {
    { "user.register", true, s_register },
    { "user.credentials", false, identity_credentials },
    { "session.login", true, identity_login },
    { "session.refresh", true, identity_refresh },
    { "session.logout", true, identity_logout },
    { "user.me", false, s_me },
    { "user.update", true, s_update },
    { "user.password_hash", false, s_password_hash },
    { "user.password", true, s_password },
    { "address.create", true, identity_address_create },
    { "address.list", false, identity_address_list },
    { "address.delete", true, identity_address_delete },
    { "address.get", false, identity_address_get },
    { "user.list", false, s_user_list },
    { "user.contact", false, identity_contact },
    { "user.admins", false, identity_admins },
    { "keys.list", false, s_keys_list },
    { "keys.rotate", false, s_keys_rotate },
    { "identity.tick", true, s_tick },
};

const mc_service_t identity_service = {
    .name = "identity",
    .open = s_open,
    .close = s_close,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .tick = "identity.tick",
};
