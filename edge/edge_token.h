/*  edge_token: refresh tokens, made and hashed at the edge so that identity only ever holds
    their digests (CONTRACT §11: raw tokens never cross the internal plane).

    A token is 32 bytes from OpenSSL's generator (seeded by the OS), base64url without padding:
    43 characters. Its digest is the SHA-256 of the token's text as the client presents it,
    base64url: 43 characters too. Identity keys its refresh records by the digest's 32 bytes,
    as it always has, so a token issued before the edge made them still names its record. */
#ifndef EDGE_TOKEN_H
#define EDGE_TOKEN_H

#include <stddef.h>

#define EDGE_TOKEN_CHARS 43

//  Room for a token or a digest and the NUL (the encoder needs 4 * ceil(32 / 3) + 1 bytes).
typedef char edge_token_text_t[EDGE_TOKEN_CHARS + 3];

//  Makes a new token and its digest. 0, or -1 when the generator fails (nothing is made).
int edge_token_new(edge_token_text_t token, edge_token_text_t digest);

//  The digest of a token presented by a client (len bytes, any content).
void edge_token_digest(const char *token, size_t len, edge_token_text_t digest);

#endif
