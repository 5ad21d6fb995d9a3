/*  identity_db: the identity actor's state and helpers its handler files share. */
#ifndef IDENTITY_DB_H
#define IDENTITY_DB_H

#include "identity_keys.h"
#include "mc_actor.h"

typedef struct {
    MDB_dbi users, emails, addresses, refresh, families, user_families, failures;
    MDB_dbi admins;             //  user id -> "" for every admin
    MDB_dbi expiry;             //  due ms (8) kind (1) id -> value: what pruning removes when
    MDB_dbi family_exp;         //  family id -> its newest token's expiry (identity_prune.c)
    identity_keys_t *keys;      //  signing keys
} identity_db_t;

//  LMDB reports its own errors negative and errno values positive; handlers return both negative.
#define IDENTITY_FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

#define IDENTITY_REFRESH_TTL_MS (30ull * 24 * 3600 * 1000)

//  The sign-in throttle: this many failures for an email within the window answer 429.
#define IDENTITY_FAILURE_WINDOW_MS (15ull * 60 * 1000)
#define IDENTITY_FAILURES_MAX 5

//  Index entries pruning handles per identity.tick: 5 ticks a second keep up with 320
//  failures, sign-ins or refreshes a second, and a backlog never makes one tick long.
#define IDENTITY_PRUNE_MAX 64

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

//  identity_throttle.c: the sign-in throttle, keyed by lower(email).
//  identity_throttled       0 when the email may try; 429 (replied, with retry_after) when it
//                           has IDENTITY_FAILURES_MAX failures in the window; a negative LMDB error
//  identity_failure_record  records a failure at the message's time: 0 or an LMDB error (the
//                           handler sets ctx->commit so that it sticks)
//  identity_failures_clear  forgets the email's failures (a right password): 0 or an LMDB error
int identity_throttled(mc_ctx_t *ctx, MDB_val *email);
int identity_failure_record(mc_ctx_t *ctx, MDB_val *email);
int identity_failures_clear(MDB_txn *txn, const identity_db_t *db, MDB_val *email);

//  identity_prune.c: removing failures and refresh-token families whose time is up. Each
//  returns 0 or an LMDB error.
//  identity_prune_failure   the email's failures are all out of the window at due
//  identity_prune_token     a refresh token (its digest) of family, for user, expires at exp;
//                           the family lasts as long as its newest token
//  identity_prune           removes what is due at now, at most max index entries
//  identity_prune_build     indexes what an environment from before pruning holds (at open;
//                           does nothing when the index has entries)
int identity_prune_failure(MDB_txn *txn, const identity_db_t *db, const MDB_val *email, uint64_t due);
int identity_prune_token(MDB_txn *txn, const identity_db_t *db, const unsigned char digest[32], mc_str_t family,
                         mc_str_t user, uint64_t exp);
int identity_prune(MDB_txn *txn, const identity_db_t *db, uint64_t now, size_t max);
int identity_prune_build(MDB_txn *txn, const identity_db_t *db);

//  Lowercases ASCII of s into out; returns the length.
size_t identity_lower(char *out, size_t outsz, mc_str_t s);

#endif
