/*  edge_identity: the routes whose passwords and refresh tokens the edge handles before any
    actor sees them.

    register  policy check, argon2id hash; the actor receives password_hash, never the password
    login     the actor hands over the stored hash; the edge verifies it (unknown emails are
              checked against a dummy hash, so both failures cost the same and read the same);
              the actor then records a failure or opens a session
    password  the current password is verified like a login, the new one checked and hashed
    refresh   the presented token travels as its SHA-256 digest
    logout    likewise

    Refresh tokens are made here (edge_token): login and refresh send the new token's digest
    (new_refresh_digest), and the edge adds the token to a 200 answer. */
#ifndef EDGE_IDENTITY_H
#define EDGE_IDENTITY_H

#include "edge_request.h"

void edge_identity_init(void);

//  Runs the route's flow with the client's body (JSON already turned into a msgpack map).
void edge_identity_flow(edge_req_t *q, mc_str_t body);

//  Why password is not acceptable for email (which may be empty), or NULL when it is.
const char *edge_identity_policy(mc_str_t password, mc_str_t email);

#endif
