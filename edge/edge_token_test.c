/*  edge_token: digests are base64url SHA-256 of the token's text (known vectors, so identity's
    records and the e2e scan agree with the edge), new tokens are 43 base64url characters that
    decode to 32 bytes, carry their own digest, do not repeat, and land on the identity shard they
    are made for (their digest routes them). */
#include "edge_token.h"
#include "mc_schema.h"
#include "mc_test.h"
#include "mc_util.h"

#include <stdlib.h>
#include <string.h>

static void
test_digest_vectors(void)
{
    edge_token_text_t d;
    edge_token_digest("abc", 3, d);
    ASSERT_STR(d, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    edge_token_digest("", 0, d);
    ASSERT_STR(d, "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
    ASSERT_EQ(strlen(d), EDGE_TOKEN_CHARS);
}

static void
test_new_tokens(void)
{
    static edge_token_text_t seen[256];
    for (size_t i = 0; i < sizeof seen / sizeof *seen; i++) {
        edge_token_text_t digest, again;
        ASSERT_EQ(edge_token_new(0, seen[i], digest), 0);
        ASSERT_EQ(strlen(seen[i]), EDGE_TOKEN_CHARS);
        ASSERT_EQ(strspn(seen[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                  EDGE_TOKEN_CHARS);
        unsigned char raw[40];
        ASSERT_EQ(mc_b64url_decode(raw, sizeof raw, seen[i], strlen(seen[i])), 32);
        edge_token_digest(seen[i], strlen(seen[i]), again);
        ASSERT_STR(digest, again);
        MC_CHECK(strcmp(digest, seen[i]) != 0);
        for (size_t j = 0; j < i; j++)
            MC_CHECK(strcmp(seen[i], seen[j]) != 0);
    }
}

//  With 16 identity shards every token lands where it was made for, whatever the shard.
static void
test_tokens_land_on_their_shard(void)
{
    setenv("MERCATO_SHARDS", "1,identity=16", 1);
    ASSERT_EQ(mc_schema_shards("identity"), 16);
    unsigned landed[16] = { 0 };
    for (unsigned i = 0; i < 16 * 8; i++) {
        edge_token_text_t token, digest, again;
        unsigned shard = i % 16;
        ASSERT_EQ(edge_token_new(shard, token, digest), 0);
        edge_token_digest(token, strlen(token), again);
        ASSERT_EQ(edge_token_shard(again), shard);
        ASSERT_EQ(mc_shard_of("identity", digest, strlen(digest)), shard);
        landed[edge_token_shard(digest)]++;
    }
    for (unsigned s = 0; s < 16; s++)
        ASSERT_EQ(landed[s], 8);
    //  a made-up token routes to some shard, where it names nothing
    edge_token_text_t d;
    edge_token_digest("not-a-token", 11, d);
    MC_CHECK(edge_token_shard(d) < 16);
    setenv("MERCATO_SHARDS", "1", 1);
    ASSERT_EQ(edge_token_shard(d), 0);
}

int
main(void)
{
    MC_TEST_RUN(test_digest_vectors);
    MC_TEST_RUN(test_new_tokens);
    MC_TEST_RUN(test_tokens_land_on_their_shard);
    return MC_TEST_DONE();
}
