/*  Sign-in, refresh-token families with rotation and reuse detection, sign-out (the throttle is
    identity_throttle.c).

    Refresh tokens are minted and hashed at the edge; messages name them by their SHA-256
    digests (refresh_digest: the one presented, new_refresh_digest: the one to issue), which
    key the refresh records as before, so tokens issued before the edge minted them still work. */
#include "identity_db.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

int
identity_credentials(mc_ctx_t *ctx)
{
    const identity_db_t *db = ctx->state;
    mc_str_t email;
    mc_map_str(ctx->req->body, "email", &email);
    char lower[256];
    MDB_val ek = { identity_lower(lower, sizeof lower, email), lower }, idv;
    int rc = identity_throttled(ctx, &ek);
    if (rc)
        return rc;
    rc = mdb_get(ctx->txn, db->emails, &ek, &idv);
    if (rc == MDB_NOTFOUND) {
        mc_reply_error(ctx->pk, ctx->req->id, 404, "unknown_email", "no user has this email", NULL);
        return 404;
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (!rc)
        rc = identity_user_load(ctx->txn, db, (mc_str_t) { idv.mv_data, idv.mv_size }, &u);
    if (!rc) {
        mc_str_t hash = { "", 0 };
        mc_map_str(&u.data, "password_hash", &hash);
        mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
        msgpack_pack_map(ctx->pk, 2);
        mc_pack_kv_str(ctx->pk, "user_id", idv.mv_data, idv.mv_size);
        mc_pack_kv_str(ctx->pk, "password_hash", hash.ptr, hash.len);
    }
    msgpack_unpacked_destroy(&u);
    return rc ? IDENTITY_FAIL(rc) : 200;
}

//  The refresh-token digest the edge put in member name (base64url of 32 bytes) into out.
//  0, or 422 answered: the edge always sends one, so anything else is a malformed message.
static int
s_digest(mc_ctx_t *ctx, const char *name, unsigned char out[32])
{
    mc_str_t v = { "", 0 };
    mc_map_str(ctx->req->body, name, &v);
    if (mc_b64url_decode(out, 32, v.ptr, v.len) == 32)
        return 0;
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, name, "must be the base64url SHA-256 digest of a refresh token");
    mc_reply_error(ctx->pk, ctx->req->id, 422, "validation_failed", "the request has invalid fields", &errs);
    return 422;
}

static int
s_family_put(MDB_txn *txn, const identity_db_t *db, mc_str_t family, mc_str_t user, bool revoked)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_str(&pk, "user", user.ptr, user.len);
    mc_pack_kv_bool(&pk, "revoked", revoked);
    MDB_val k = { family.len, (void *) family.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->families, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

//  Revokes a family; its user comes from the family record.
static int
s_revoke_family(MDB_txn *txn, const identity_db_t *db, mc_str_t family)
{
    MDB_val k = { family.len, (void *) family.ptr }, v;
    int rc = mdb_get(txn, db->families, &k, &v);
    if (rc)
        return rc == MDB_NOTFOUND ? 0 : rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_str_t user = { "", 0 };
    if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0)
        mc_map_str(&u.data, "user", &user);
    char ubuf[128];
    snprintf(ubuf, sizeof ubuf, "%.*s", (int) user.len, user.ptr);
    msgpack_unpacked_destroy(&u);
    return s_family_put(txn, db, family, (mc_str_t) { ubuf, strlen(ubuf) }, true);
}

int
identity_revoke_all(MDB_txn *txn, const identity_db_t *db, mc_str_t user)
{
    char prefix[128];
    size_t plen = mc_key_join(prefix, sizeof prefix, user.ptr, user.len, "", 0);
    if (!plen)
        return MDB_BAD_VALSIZE;     //  no family key could hold this user id
    //  in batches: collect a few family ids, revoke them and forget their index entries (a
    //  revoked family never comes back), until the user has none left
    while (true) {
        MDB_cursor *cur;
        int rc = mdb_cursor_open(txn, db->user_families, &cur);
        if (rc)
            return rc;
        char families[64][MC_ULID_LEN + 1];
        size_t n = 0;
        MDB_val k = { plen, prefix }, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < 64;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size <= plen || memcmp(k.mv_data, prefix, plen) != 0)
                break;
            snprintf(families[n++], MC_ULID_LEN + 1, "%.*s", (int) (k.mv_size - plen), (char *) k.mv_data + plen);
        }
        mdb_cursor_close(cur);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        for (size_t i = 0; i < n; i++) {
            size_t flen = strlen(families[i]);
            if ((rc = s_revoke_family(txn, db, (mc_str_t) { families[i], flen })))
                return rc;
            char key[256];
            memcpy(key, prefix, plen);
            memcpy(key + plen, families[i], flen);
            MDB_val dk = { plen + flen, key };
            if ((rc = mdb_del(txn, db->user_families, &dk, NULL)) && rc != MDB_NOTFOUND)
                return rc;
        }
        if (n < 64)
            return 0;
    }
}

//  Issues an access token, and records the refresh token whose digest the edge sent (the edge
//  adds the token itself to the HTTP answer), in family; replies 200 with the access token.
static int
s_issue(mc_ctx_t *ctx, mc_str_t family, const msgpack_object *user, const unsigned char digest[32])
{
    identity_db_t *db = ctx->state;
    char uid[64], role[16], jti[80];
    mc_str_t s = { "", 0 };
    mc_map_str(user, "id", &s);
    snprintf(uid, sizeof uid, "%.*s", (int) s.len, s.ptr);
    mc_map_str(user, "role", &s);
    snprintf(role, sizeof role, "%.*s", (int) s.len, s.ptr);
    snprintf(jti, sizeof jti, "%.*s", (int) ctx->req->id.len, ctx->req->id.ptr);
    char *access = identity_keys_sign(db->keys, uid, role, jti, ctx->req->time);
    if (!access) {
        mc_reply_error(ctx->pk, ctx->req->id, 500, "signing_failed", "the access token could not be signed", NULL);
        return 500;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_str(&pk, "family", family.ptr, family.len);
    mc_pack_kv_cstr(&pk, "user", uid);
    mc_pack_kv_uint(&pk, "exp", ctx->req->time + IDENTITY_REFRESH_TTL_MS);
    mc_pack_kv_bool(&pk, "used", false);
    MDB_val k = { 32, (void *) digest }, v = { sb.size, sb.data };
    //  a digest on record belongs to a token already issued: never given to another family,
    //  nor made unused again; an unused one of this family is this very issue handled again
    int rc = mdb_put(ctx->txn, db->refresh, &k, &v, MDB_NOOVERWRITE);
    msgpack_sbuffer_destroy(&sb);
    if (rc == MDB_KEYEXIST) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_str_t had = { "", 0 };
        bool used = true;
        if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0) {
            mc_map_str(&u.data, "family", &had);
            mc_map_bool(&u.data, "used", &used);
        }
        rc = !used && had.len == family.len && memcmp(had.ptr, family.ptr, family.len) == 0 ? 0 : MDB_KEYEXIST;
        msgpack_unpacked_destroy(&u);
    }
    if (rc == MDB_KEYEXIST) {
        free(access);
        mc_reply_error(ctx->pk, ctx->req->id, 409, "refresh_token_exists", "this refresh token was issued before",
                       NULL);
        return 409;
    }
    if (!rc)
        rc = identity_prune_token(ctx->txn, db, digest, family, (mc_str_t) { uid, strlen(uid) },
                                  ctx->req->time + IDENTITY_REFRESH_TTL_MS);
    if (rc) {
        free(access);
        return IDENTITY_FAIL(rc);
    }
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 3);
    mc_pack_kv_cstr(ctx->pk, "access_token", access);
    mc_pack_kv_cstr(ctx->pk, "token_type", "Bearer");
    mc_pack_kv_int(ctx->pk, "expires_in", IDENTITY_ACCESS_TTL_S);
    free(access);
    return 200;
}

static int
s_bad_credentials(mc_ctx_t *ctx, MDB_val *key)
{
    int rc = identity_failure_record(ctx, key);
    if (rc)
        return IDENTITY_FAIL(rc);
    //  the failure must stick although the reply is an error
    ctx->commit = true;
    return identity_unauthorized(ctx, "invalid_credentials", "the email or the password is wrong");
}

int
identity_login(mc_ctx_t *ctx)
{
    const identity_db_t *db = ctx->state;
    mc_str_t email;
    bool ok = false;
    mc_map_str(ctx->req->body, "email", &email);
    mc_map_bool(ctx->req->body, "ok", &ok);
    unsigned char digest[32];
    int rc = s_digest(ctx, "new_refresh_digest", digest);
    if (rc)
        return rc;
    char lower[256];
    MDB_val ek = { identity_lower(lower, sizeof lower, email), lower }, idv;
    if ((rc = identity_throttled(ctx, &ek)))
        return rc;
    if (!ok)
        return s_bad_credentials(ctx, &ek);
    rc = mdb_get(ctx->txn, db->emails, &ek, &idv);
    if (rc == MDB_NOTFOUND)
        return s_bad_credentials(ctx, &ek);
    //  LMDB values live until the next write: keep a copy of the id across the writes below
    char uid[64];
    snprintf(uid, sizeof uid, "%.*s", rc ? 0 : (int) idv.mv_size, rc ? "" : (char *) idv.mv_data);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (!rc)
        rc = identity_user_load(ctx->txn, db, (mc_str_t) { uid, strlen(uid) }, &u);
    if (!rc)
        rc = identity_failures_clear(ctx->txn, db, &ek);
    //  a sign-in starts a family, named by this message's id
    mc_str_t family = ctx->req->id, user = { uid, strlen(uid) };
    char fkey[256];
    if (!rc)
        rc = s_family_put(ctx->txn, db, family, user, false);
    if (!rc) {
        MDB_val fk = { mc_key_join(fkey, sizeof fkey, user.ptr, user.len, family.ptr, family.len), fkey },
                empty = { 0, "" };
        rc = fk.mv_size ? mdb_put(ctx->txn, db->user_families, &fk, &empty, 0) : MDB_BAD_VALSIZE;
    }
    int status = rc ? IDENTITY_FAIL(rc) : s_issue(ctx, family, &u.data, digest);
    msgpack_unpacked_destroy(&u);
    return status;
}

//  Loads the refresh record named by digest. MDB_NOTFOUND when unknown.
static int
s_refresh_load(mc_ctx_t *ctx, const unsigned char digest[32], msgpack_unpacked *u)
{
    const identity_db_t *db = ctx->state;
    MDB_val k = { 32, (void *) digest }, v;
    int rc = mdb_get(ctx->txn, db->refresh, &k, &v);
    if (rc)
        return rc;
    return mc_msgpack_unpack(u, v.mv_data, v.mv_size) ? MDB_CORRUPTED : 0;
}

static bool
s_family_revoked(MDB_txn *txn, const identity_db_t *db, mc_str_t family)
{
    MDB_val k = { family.len, (void *) family.ptr }, v;
    if (mdb_get(txn, db->families, &k, &v))
        return true;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool revoked = true;
    if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0)
        mc_map_bool(&u.data, "revoked", &revoked);
    msgpack_unpacked_destroy(&u);
    return revoked;
}

int
identity_refresh(mc_ctx_t *ctx)
{
    const identity_db_t *db = ctx->state;
    unsigned char digest[32], next[32];
    int rc = s_digest(ctx, "refresh_digest", digest);
    if (!rc)
        rc = s_digest(ctx, "new_refresh_digest", next);
    if (rc)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = s_refresh_load(ctx, digest, &u);
    int status;
    mc_str_t family = { "", 0 }, user = { "", 0 };
    uint64_t exp = 0;
    bool used = true;
    char fbuf[64], ubuf[64];
    if (!rc) {
        mc_map_str(&u.data, "family", &family);
        mc_map_str(&u.data, "user", &user);
        mc_map_uint(&u.data, "exp", &exp);
        mc_map_bool(&u.data, "used", &used);
        //  LMDB values live until the next write: copy what the writes below still need
        snprintf(fbuf, sizeof fbuf, "%.*s", (int) family.len, family.ptr);
        snprintf(ubuf, sizeof ubuf, "%.*s", (int) user.len, user.ptr);
        family = (mc_str_t) { fbuf, strlen(fbuf) };
        user = (mc_str_t) { ubuf, strlen(ubuf) };
    }
    if (rc == MDB_NOTFOUND)
        status = identity_unauthorized(ctx, "invalid_refresh_token", "the refresh token is not valid");
    else
    if (rc)
        status = IDENTITY_FAIL(rc);
    else
    if (s_family_revoked(ctx->txn, db, family))
        status = identity_unauthorized(ctx, "invalid_refresh_token", "the refresh token is not valid");
    else
    if (used) {
        //  a rotated token came back: someone holds a stolen copy, so the whole family ends
        rc = s_revoke_family(ctx->txn, db, family);
        ctx->commit = rc == 0;
        status = rc ? IDENTITY_FAIL(rc)
                    : identity_unauthorized(ctx, "refresh_token_reused", "the refresh token was already used; "
                                            "every session started with it is now signed out");
    }
    else
    if (exp <= ctx->req->time)
        status = identity_unauthorized(ctx, "refresh_token_expired", "the refresh token has expired");
    else {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        mc_pack_kv_str(&pk, "family", family.ptr, family.len);
        mc_pack_kv_str(&pk, "user", user.ptr, user.len);
        mc_pack_kv_uint(&pk, "exp", exp);
        mc_pack_kv_bool(&pk, "used", true);
        MDB_val k = { 32, digest }, v = { sb.size, sb.data };
        rc = mdb_put(ctx->txn, db->refresh, &k, &v, 0);
        msgpack_sbuffer_destroy(&sb);
        msgpack_unpacked uu;
        msgpack_unpacked_init(&uu);
        if (!rc)
            rc = identity_user_load(ctx->txn, db, user, &uu);
        if (rc == MDB_NOTFOUND)
            status = identity_unauthorized(ctx, "unknown_user", "the user no longer exists");
        else
            status = rc ? IDENTITY_FAIL(rc) : s_issue(ctx, family, &uu.data, next);
        msgpack_unpacked_destroy(&uu);
    }
    msgpack_unpacked_destroy(&u);
    return status;
}

int
identity_logout(mc_ctx_t *ctx)
{
    unsigned char digest[32];
    int rc = s_digest(ctx, "refresh_digest", digest);
    if (rc)
        return rc;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    rc = s_refresh_load(ctx, digest, &u);
    mc_str_t family = { "", 0 };
    char fbuf[64];
    if (!rc && mc_map_str(&u.data, "family", &family) == 0) {
        snprintf(fbuf, sizeof fbuf, "%.*s", (int) family.len, family.ptr);
        rc = s_revoke_family(ctx->txn, ctx->state, (mc_str_t) { fbuf, strlen(fbuf) });
    }
    msgpack_unpacked_destroy(&u);
    //  an unknown token signs nobody out, and says nothing about which tokens exist
    if (rc && rc != MDB_NOTFOUND)
        return IDENTITY_FAIL(rc);
    mc_reply_begin(ctx->pk, ctx->req->id, 204, NULL);
    msgpack_pack_nil(ctx->pk);
    return 204;
}
