/*  identity: users, sessions, addresses and signing keys (CONTRACT §3).

    Sharded by email: a user lives on the shard of lower(email), its id drawn at the edge to fall
    there too (the register route's shard_by), so the shard that holds an email's index entry
    holds its user, sessions, addresses and throttle, and routing by the user id or by the email
    finds the same shard. Refresh tokens route by their digest, which the edge draws to fall on
    the session's shard. Signing keys are files beside the environments, shared by the identity
    shards of a process (identity_keys.h).

    State, one LMDB environment per shard:
      users          id -> user map (with password_hash, which never leaves except to the edge)
      emails         lower(email) -> id
      addresses      user id \0 address id -> address map
      refresh        sha256(refresh token), 32 bytes -> {family, user, exp, used}
      families       family id -> {user, revoked}
      user_families  user id \0 family id -> ""      (revoke them all on a password change)
      failures       lower(email) -> failed login times, 8-byte big-endian unix ms each
                     (wrong passwords at sign-in and wrong current passwords alike)
      expiry         due ms (8) kind (1) id -> value: failures and refresh tokens and families
                     to remove when their time is up (identity_prune.c, on identity.tick)
      family_exp     family id -> expiry of its newest refresh token

    Passwords are hashed and verified by the edge (argon2id costs ~25 ms, which the actor's one
    thread must not spend); the actor stores and hands out hashes only. Refresh tokens are
    minted at the edge (32 bytes from the OS) and hashed there: messages carry only their
    SHA-256 digests (base64url), which name the refresh records, so a handler stays a function
    of state and message and no raw token reaches the actor. */
#ifndef IDENTITY_H
#define IDENTITY_H

#include "mc_actor.h"

extern const mc_service_t identity_service;

#endif
