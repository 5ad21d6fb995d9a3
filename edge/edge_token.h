/*  edge_token: refresh tokens, made and hashed at the edge so that identity only ever holds
    their digests (CONTRACT §11: raw tokens never cross the internal plane).

    A token is 32 bytes from OpenSSL's generator (seeded by the OS), base64url without padding:
    43 characters. Its digest is the SHA-256 of the token's text as the client presents it,
    base64url: 43 characters too. Identity keys its refresh records by the digest's 32 bytes,
    as it always has, so a token issued before the edge made them still names its record.

    The digest also routes the token: its session lives on identity shard
    mc_shard_of("identity", digest), and a new token is drawn until its digest falls on the
    shard of the session it belongs to (the user's, which is the email's). So a token says
    where it lives without a visible shard part, and whatever a client makes up routes
    somewhere and is unknown there. */
#ifndef EDGE_TOKEN_H
#define EDGE_TOKEN_H

#include <stddef.h>

#define EDGE_TOKEN_CHARS 43

//  Room for a token or a digest and the NUL (the encoder needs 4 * ceil(32 / 3) + 1 bytes).
typedef char edge_token_text_t[EDGE_TOKEN_CHARS + 3];

//  Makes a new token whose session lives on identity shard `shard`, and its digest. 0, or -1
//  when the generator fails or no draw lands there (nothing is made then).
int edge_token_new(unsigned shard, edge_token_text_t token, edge_token_text_t digest);

//  The digest of a token presented by a client (len bytes, any content).
void edge_token_digest(const char *token, size_t len, edge_token_text_t digest);

//  The identity shard that keeps the session of the token with this digest.
unsigned edge_token_shard(const edge_token_text_t digest);

#endif
