#include "edge_token.h"

#include "mc_schema.h"
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

unsigned
edge_token_shard(const edge_token_text_t digest)
{
    return mc_shard_of("identity", digest, strlen(digest));
}

int
edge_token_new(unsigned shard, edge_token_text_t token, edge_token_text_t digest)
{
    //  1 in N draws lands on the shard; past 64 * N the generator or the shard is wrong
    unsigned shards = mc_schema_shards("identity");
    for (unsigned i = 0; i < 64 * shards; i++) {
        unsigned char bytes[32];
        if (RAND_bytes(bytes, sizeof bytes) != 1)
            break;
        mc_b64url_encode(token, bytes, sizeof bytes);
        OPENSSL_cleanse(bytes, sizeof bytes);
        edge_token_digest(token, strlen(token), digest);
        if (edge_token_shard(digest) == shard)
            return 0;
    }
    OPENSSL_cleanse(token, sizeof (edge_token_text_t));
    return -1;
}
