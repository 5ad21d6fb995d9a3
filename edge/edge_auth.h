/*  edge_auth: access-token verification at the edge, without a round trip.

    Tokens are checked with OpenSSL against public keys held in memory (parsed once, not per
    request). The key table comes from the identity service (keys.list) at start, every 10 s,
    right after a rotation passes through this edge, and when a token names a kid we do not know
    (at most every 100 ms). Only RS256 is accepted;
    iss must be "mercato"; exp, iat and nbf are checked with 60 s of leeway. */
#ifndef EDGE_AUTH_H
#define EDGE_AUTH_H

#include <msgpack.h>
#include <stdbool.h>

typedef struct {
    char sub[64];       //  user id
    char role[16];      //  customer or admin
} edge_identity_t;

//  Starts the key refresher.
void edge_auth_init(void);

//  Ends the refresher (before edge_client_stop: it calls through the client).
void edge_auth_stop(void);

//  Verifies an Authorization header value. 0 with *who filled; -1 with *why set to a short
//  reason (never echoing the token); -2 when no signing key is known yet (identity unreachable
//  since start), which is the service's fault, not the token's.
int edge_auth_verify(const char *header, edge_identity_t *who, const char **why);

//  Replaces the key table with a keys.list reply body ({keys: [{kid, n, e, ...}]}). 0 or -1.
int edge_auth_load(const msgpack_object *body);

//  Reloads the key table now (after a rotation).
void edge_auth_refresh(void);

//  True once the key table has been loaded.
bool edge_auth_ready(void);

//  Appends the JWK Set as JSON; false when no key is known yet.
bool edge_auth_jwks(msgpack_sbuffer *out);

#endif
