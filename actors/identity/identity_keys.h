/*  identity_keys: the RSA keys that sign access tokens. (Refresh tokens are minted at the edge:
    the actor only ever holds their SHA-256 digests.)

    On disk, in $MERCATO_DATA_DIR/keys/ (directory 0700, files 0600):
      <kid>.pem       a private key; kid is its RFC 7638 thumbprint
      signing         the kid that signs new tokens
      <kid>.retired   unix ms at which the key stopped signing; it is published until every
                      token it signed has expired
    MERCATO_JWT_KEY_FILE names a PEM private key to sign with instead of a generated one. */
#ifndef IDENTITY_KEYS_H
#define IDENTITY_KEYS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define IDENTITY_ACCESS_TTL_S 900
#define IDENTITY_KID_LEN 43

typedef struct _identity_keys_t identity_keys_t;

//  The keys in data_dir/keys, loaded (generating what is missing) by the first caller and
//  shared with later ones for the same data_dir: every identity shard of a process signs with
//  one key, and a rotation through any shard is every shard's. Safe from any thread. NULL on
//  failure (logged).
identity_keys_t *identity_keys_new(const char *data_dir);
//  Lets go of the set; the last holder frees it.
void identity_keys_destroy(identity_keys_t **self_p);

//  Signs an access token; the caller frees the result. NULL on failure.
char *identity_keys_sign(identity_keys_t *self, const char *sub, const char *role, const char *jti,
                         uint64_t now_ms);

//  Packs {keys: [{kid, kty, use, alg, n, e}]}: the signing key and every retired key that may
//  still have live tokens at now_ms.
void identity_keys_pack(identity_keys_t *self, msgpack_packer *pk, uint64_t now_ms);

//  Generates a new signing key and retires the current one at now_ms. 0 or -1.
int identity_keys_rotate(identity_keys_t *self, uint64_t now_ms);

//  The current signing kid, copied into kid.
void identity_keys_kid(identity_keys_t *self, char kid[IDENTITY_KID_LEN + 1]);

#endif
