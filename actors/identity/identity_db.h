/*  identity_db: the identity actor's state and helpers its handler files share. */
#ifndef IDENTITY_DB_H
#define IDENTITY_DB_H

#include "identity_keys.h"
#include "mc_actor.h"

typedef struct {
    MDB_dbi users, emails, addresses, refresh, families, user_families, failures;
    MDB_dbi admins;             //  user id -> "" for every admin
    identity_keys_t *keys;      //  signing keys
} identity_db_t;

//  LMDB reports its own errors negative and errno values positive; handlers return both negative.
#define IDENTITY_FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

#define IDENTITY_REFRESH_TTL_MS (30ull * 24 * 3600 * 1000)

//  Loads a user record; MDB_NOTFOUND when there is none. u keeps it alive.
int identity_user_load(MDB_txn *txn, const identity_db_t *db, mc_str_t id, msgpack_unpacked *u);

//  Packs the public view of a user record (no hash).
void identity_user_pack_public(msgpack_packer *pk, const msgpack_object *user);

//  Replies 401 with code and detail.
int identity_unauthorized(mc_ctx_t *ctx, const char *code, const char *detail);

//  Requires a caller; replies 401 and returns it when there is none, else 0.
int identity_require_user(mc_ctx_t *ctx);

//  Revokes every refresh-token family of user. 0 or LMDB error.
int identity_revoke_all(MDB_txn *txn, const identity_db_t *db, mc_str_t user);

//  Handlers in identity_sessions.c and identity_addresses.c.
int identity_credentials(mc_ctx_t *ctx);
int identity_login(mc_ctx_t *ctx);
int identity_refresh(mc_ctx_t *ctx);
int identity_logout(mc_ctx_t *ctx);
int identity_address_create(mc_ctx_t *ctx);
int identity_address_list(mc_ctx_t *ctx);
int identity_address_delete(mc_ctx_t *ctx);
int identity_address_get(mc_ctx_t *ctx);

//  identity_directory.c: the admins index (kept by every user write; built once for data that
//  predates it), and the internal user.contact and user.admins.
int identity_admin_index(MDB_txn *txn, const identity_db_t *db, mc_str_t id, mc_str_t role);
int identity_admin_index_build(MDB_txn *txn, const identity_db_t *db);
int identity_contact(mc_ctx_t *ctx);
int identity_admins(mc_ctx_t *ctx);

//  Lowercases ASCII of s into out; returns the length.
size_t identity_lower(char *out, size_t outsz, mc_str_t s);

#endif
