#include "edge_token.h"

#include "mc_util.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

void
edge_token_digest(const char *token, size_t len, edge_token_text_t digest)
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(token, len, md, &n, EVP_sha256(), NULL);
    mc_b64url_encode(digest, md, sizeof md);
}

int
edge_token_new(edge_token_text_t token, edge_token_text_t digest)
{
    unsigned char bytes[32];
    if (RAND_bytes(bytes, sizeof bytes) != 1)
        return -1;
    mc_b64url_encode(token, bytes, sizeof bytes);
    OPENSSL_cleanse(bytes, sizeof bytes);
    edge_token_digest(token, strlen(token), digest);
    return 0;
}
