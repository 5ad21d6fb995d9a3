/*  Access-token verification at the edge (edge_auth_verify) and the key table it trusts
    (edge_auth_load). The first byte picks what the rest is:
      0  an Authorization header value, as a client sends it;
      1  a token header and claims as JSON, one line each, which the target signs with its own
         RS256 key (kid "fuzz") so that the claim checks behind the signature are reached;
      2  a keys.list reply body (msgpack), as an identity worker would send it.
    Properties: a verified token names a non-empty subject and the role customer or admin,
    NUL-terminated; a refused one has a reason; a malformed key table never replaces keys with
    garbage that verifies (the target's key is loaded again afterwards). edge_client_call(_many)
    and edge_client_thread_exit are stubs here: a token with an unknown kid finds no identity service. */
#include "fuzz.h"
#include "edge_auth.h"
#include "edge_client.h"
#include "mc_msgpack.h"
#include "mc_util.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <string.h>

static EVP_PKEY *s_key;
static msgpack_sbuffer s_table;    //  keys.list body holding s_key as kid "fuzz"

edge_call_t
edge_client_call(const char *service, const void *envelope, size_t len, int timeout_ms, zframe_t **reply)
{
    *reply = NULL;
    return EDGE_CALL_UNAVAILABLE;
}

void
edge_client_call_many(edge_call_many_t *calls, size_t n, int timeout_ms)
{
    for (size_t i = 0; i < n; i++)
        calls[i].outcome = EDGE_CALL_UNAVAILABLE, calls[i].reply = NULL;
}

void
edge_client_thread_exit(void)
{
}

static void
s_pack_bn(msgpack_packer *pk, const char *name, const char *param)
{
    BIGNUM *bn = NULL;
    FUZZ_CHECK(EVP_PKEY_get_bn_param(s_key, param, &bn) == 1);
    unsigned char bin[1024];
    int n = BN_bn2bin(bn, bin);
    char b64[1400];
    size_t bl = mc_b64url_encode(b64, bin, (size_t) n);
    mc_pack_kv_str(pk, name, b64, bl);
    BN_free(bn);
}

static void
s_load_table(void)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    FUZZ_CHECK(mc_msgpack_unpack(&u, s_table.data, s_table.size) == 0);
    FUZZ_CHECK(edge_auth_load(&u.data) == 0 && edge_auth_ready());
    msgpack_unpacked_destroy(&u);
}

static void
s_init(void)
{
    s_key = EVP_RSA_gen(2048);
    FUZZ_CHECK(s_key);
    msgpack_sbuffer_init(&s_table);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s_table, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_cstr(&pk, "keys");
    msgpack_pack_array(&pk, 1);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "kid", "fuzz");
    mc_pack_kv_cstr(&pk, "kty", "RSA");
    s_pack_bn(&pk, "n", OSSL_PKEY_PARAM_RSA_N);
    s_pack_bn(&pk, "e", OSSL_PKEY_PARAM_RSA_E);
    s_load_table();
}

static void
s_verify(const char *header)
{
    edge_identity_t who;
    const char *why = NULL;
    int rc = edge_auth_verify(header, &who, &why);
    FUZZ_CHECK(rc == 0 || rc == -1);    //  -2 only while no key is known, and one always is
    if (rc == 0) {
        FUZZ_CHECK(memchr(who.sub, 0, sizeof who.sub) && who.sub[0]);
        FUZZ_CHECK(strcmp(who.role, "customer") == 0 || strcmp(who.role, "admin") == 0);
    }
    else
        FUZZ_CHECK(why && *why);
}

//  "Bearer " + b64(head) + "." + b64(claims) + "." + b64(RS256 signature).
static void
s_signed(const char *text, size_t len)
{
    const char *nl = memchr(text, '\n', len);
    if (!nl)
        return;
    size_t hl = (size_t) (nl - text), cl = len - hl - 1;
    if (hl > 1024 || cl > 3072)
        return;
    char *token = malloc(7 + 4 * (hl + cl) / 3 + 8 + 400);
    strcpy(token, "Bearer ");
    size_t n = 7;
    n += mc_b64url_encode(token + n, text, hl);
    token[n++] = '.';
    n += mc_b64url_encode(token + n, nl + 1, cl);
    unsigned char sig[512];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    FUZZ_CHECK(md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s_key) == 1
               && EVP_DigestSign(md, sig, &siglen, (unsigned char *) token + 7, n - 7) == 1);
    EVP_MD_CTX_free(md);
    token[n++] = '.';
    n += mc_b64url_encode(token + n, sig, siglen);
    token[n] = 0;
    s_verify(token);
    free(token);
}

static void
s_table_from(const uint8_t *data, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (mc_msgpack_unpack(&u, data, size) == 0) {
        edge_auth_load(&u.data);
        msgpack_sbuffer jwks;
        msgpack_sbuffer_init(&jwks);
        edge_auth_jwks(&jwks);
        msgpack_sbuffer_destroy(&jwks);
        s_load_table();
    }
    msgpack_unpacked_destroy(&u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!s_key)
        s_init();
    if (size < 1)
        return 0;
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = 0;
    switch (data[0] % 3) {
        case 0: s_verify(text); break;
        case 1: s_signed(text, size - 1); break;
        case 2: s_table_from(data + 1, size - 1); break;
    }
    free(text);
    return 0;
}
