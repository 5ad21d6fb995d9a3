#include "edge_auth.h"

#include "edge_client.h"
#include "mc_json.h"
#include "mc_envelope.h"
#include "mc_log.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

//  a node publishes its signing key and the retired ones still live; nodes each have their own
#define KEYS_MAX 64
#define TOKEN_MAX 4096
#define LEEWAY_S 60

typedef struct {
    char kid[64];           //  RFC 7638 thumbprint
    EVP_PKEY *pkey;         //  parsed once
} pubkey_t;

static pthread_rwlock_t s_lock = PTHREAD_RWLOCK_INITIALIZER;
static pubkey_t s_keys[KEYS_MAX];
static size_t s_count;
static char *s_jwks;                    //  the JWK Set as JSON
static pthread_mutex_t s_refresh_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t s_refreshed_at;         //  mono ms of the last attempt
//  the refresher has a socket of its own: it ends before the client and ZeroMQ's context do
static pthread_t s_refresher_thread;
static pthread_mutex_t s_stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t s_stop_cond;
static bool s_stopping;

static EVP_PKEY *
s_rsa_from_jwk(mc_str_t n64, mc_str_t e64)
{
    unsigned char n[600], e[16];
    long nl = mc_b64url_decode(n, sizeof n, n64.ptr, n64.len);
    long el = mc_b64url_decode(e, sizeof e, e64.ptr, e64.len);
    if (nl < 256 || el < 1)
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, (int) nl, NULL), *be = BN_bin2bn(e, (int) el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (bn && be && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn)
    &&  OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) && (params = OSSL_PARAM_BLD_to_param(bld))
    &&  EVP_PKEY_fromdata_init(ctx) > 0)
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

//  Packs into pk, as {keys: [...]}, every key of the keys.list reply bodies in bodies (n of
//  them) once, by kid; with keep, the keys of the current JWK Set as well.
static void
s_union(msgpack_packer *pk, const msgpack_object *const *bodies, size_t n, const msgpack_object *keep)
{
    const msgpack_object *keys[KEYS_MAX];
    size_t count = 0;
    for (size_t b = 0; b <= n; b++) {
        const msgpack_object *list = mc_map_get(b < n ? bodies[b] : keep, "keys");
        for (uint32_t i = 0; list && list->type == MSGPACK_OBJECT_ARRAY && i < list->via.array.size; i++) {
            mc_str_t kid, had;
            if (mc_map_str(&list->via.array.ptr[i], "kid", &kid))
                continue;
            bool seen = false;
            for (size_t j = 0; j < count && !seen; j++)
                seen = mc_map_str(keys[j], "kid", &had) == 0 && had.len == kid.len
                    && memcmp(had.ptr, kid.ptr, kid.len) == 0;
            if (!seen && count < KEYS_MAX)
                keys[count++] = &list->via.array.ptr[i];
        }
    }
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < count; i++)
        mc_pack_obj(pk, keys[i]);
}

//  Asks every identity shard for its keys and replaces the table with all of them: the shards
//  of one node share their keys, nodes each have their own, and a token signed by any must
//  verify. When some shard does not answer, the keys it published before stay. 0 or -1.
static int
s_refresh(void)
{
    unsigned shards = mc_schema_shards("identity");
    edge_call_many_t calls[MC_SHARDS_MAX];
    msgpack_sbuffer envs[MC_SHARDS_MAX];
    char names[MC_SHARDS_MAX][32];
    uint64_t now = mc_now_ms();
    for (unsigned i = 0; i < shards; i++) {
        char id[MC_ULID_LEN + 1];
        mc_ulid(id, now);
        mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = MC_STR("keys.list"), .key = MC_STR(""),
                             .corr = { id, MC_ULID_LEN }, .reply = MC_STR("edge/keys"), .role = MC_STR("anonymous"),
                             .deadline = now + 2000, .time = now };
        msgpack_sbuffer_init(&envs[i]);
        mc_request_encode(&envs[i], &req, (mc_str_t) { "", 0 });
        snprintf(names[i], sizeof names[i], "identity.%u", i);
        calls[i] = (edge_call_many_t) { .service = names[i], .envelope = envs[i].data, .len = envs[i].size };
    }
    edge_client_call_many(calls, shards, 2000);
    msgpack_unpacked replies[MC_SHARDS_MAX];
    const msgpack_object *bodies[MC_SHARDS_MAX];
    size_t n = 0;
    for (unsigned i = 0; i < shards; i++) {
        msgpack_sbuffer_destroy(&envs[i]);
        msgpack_unpacked_init(&replies[i]);
        mc_reply_t rep;
        if (calls[i].outcome == EDGE_CALL_REPLY
        &&  mc_reply_decode(&replies[i], zframe_data(calls[i].reply), zframe_size(calls[i].reply), &rep) == 0
        &&  rep.status == 200 && rep.body)
            bodies[n++] = rep.body;
    }
    int rc = -1;
    if (n) {
        //  the current set, for the keys of shards that did not answer
        msgpack_unpacked had;
        msgpack_unpacked_init(&had);
        msgpack_sbuffer old, packed;
        msgpack_sbuffer_init(&old);
        msgpack_sbuffer_init(&packed);
        const msgpack_object *keep = NULL;
        char err[64];
        if (n < shards && edge_auth_jwks(&old) && mc_json_parse(old.data, old.size, &packed, err, sizeof err) == 0
        &&  mc_msgpack_unpack(&had, packed.data, packed.size) == 0)
            keep = &had.data;
        msgpack_sbuffer all;
        msgpack_sbuffer_init(&all);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &all, msgpack_sbuffer_write);
        s_union(&pk, bodies, n, keep);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (mc_msgpack_unpack(&u, all.data, all.size) == 0)
            rc = edge_auth_load(&u.data);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&all);
        msgpack_sbuffer_destroy(&old);
        msgpack_sbuffer_destroy(&packed);
        msgpack_unpacked_destroy(&had);
    }
    for (unsigned i = 0; i < shards; i++) {
        msgpack_unpacked_destroy(&replies[i]);
        zframe_destroy(&calls[i].reply);
    }
    return rc;
}

int
edge_auth_load(const msgpack_object *body)
{
    const msgpack_object *keys = mc_map_get(body, "keys");
    if (!keys || keys->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    pubkey_t fresh[KEYS_MAX];
    size_t n = 0;
    for (uint32_t i = 0; i < keys->via.array.size && n < KEYS_MAX; i++) {
        const msgpack_object *k = &keys->via.array.ptr[i];
        mc_str_t kid, nn, e;
        if (mc_map_str(k, "kid", &kid) || mc_map_str(k, "n", &nn) || mc_map_str(k, "e", &e) || kid.len >= 64)
            continue;
        EVP_PKEY *pkey = s_rsa_from_jwk(nn, e);
        if (!pkey)
            continue;
        snprintf(fresh[n].kid, sizeof fresh[n].kid, "%.*s", (int) kid.len, kid.ptr);
        fresh[n++].pkey = pkey;
    }
    msgpack_sbuffer json;
    msgpack_sbuffer_init(&json);
    mc_json_write(&json, body);
    msgpack_sbuffer_write(&json, "", 1);
    pthread_rwlock_wrlock(&s_lock);
    for (size_t i = 0; i < s_count; i++)
        EVP_PKEY_free(s_keys[i].pkey);
    memcpy(s_keys, fresh, n * sizeof *fresh);
    s_count = n;
    free(s_jwks);
    s_jwks = json.data;     //  the buffer now belongs to the table
    pthread_rwlock_unlock(&s_lock);
    return 0;
}

//  Refreshes unless another thread did within min_gap_ms.
static void
s_refresh_throttled(uint64_t min_gap_ms)
{
    pthread_mutex_lock(&s_refresh_lock);
    uint64_t now = mc_mono_ms();
    if (s_refreshed_at == 0 || now - s_refreshed_at >= min_gap_ms) {
        s_refreshed_at = now;
        s_refresh();
    }
    pthread_mutex_unlock(&s_refresh_lock);
}

static void *
s_refresher(void *arg)
{
    pthread_mutex_lock(&s_stop_lock);
    while (!s_stopping) {
        pthread_mutex_unlock(&s_stop_lock);
        pthread_rwlock_rdlock(&s_lock);
        bool empty = s_count == 0;
        pthread_rwlock_unlock(&s_lock);
        //  until the identity service has answered once, ask often
        s_refresh_throttled(empty ? 200 : 10000);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += 200 * 1000000L;
        if (until.tv_nsec >= 1000000000L)
            until.tv_sec++, until.tv_nsec -= 1000000000L;
        pthread_mutex_lock(&s_stop_lock);
        while (!s_stopping && pthread_cond_timedwait(&s_stop_cond, &s_stop_lock, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&s_stop_lock);
    edge_client_thread_exit();
    return NULL;
}

void
edge_auth_init(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s_stop_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_create(&s_refresher_thread, NULL, s_refresher, NULL);
}

void
edge_auth_stop(void)
{
    pthread_mutex_lock(&s_stop_lock);
    s_stopping = true;
    pthread_cond_signal(&s_stop_cond);
    pthread_mutex_unlock(&s_stop_lock);
    pthread_join(s_refresher_thread, NULL);
}

void
edge_auth_refresh(void)
{
    s_refresh_throttled(0);
}

bool
edge_auth_ready(void)
{
    pthread_rwlock_rdlock(&s_lock);
    bool ready = s_count > 0;
    pthread_rwlock_unlock(&s_lock);
    return ready;
}

bool
edge_auth_jwks(msgpack_sbuffer *out)
{
    pthread_rwlock_rdlock(&s_lock);
    bool have = s_jwks != NULL;
    if (have)
        msgpack_sbuffer_write(out, s_jwks, strlen(s_jwks));
    pthread_rwlock_unlock(&s_lock);
    return have;
}

static bool
s_b64url_chars(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '_')
            return false;
    return len > 0;
}

//  Decodes a base64url JSON object; NULL when it is anything else.
static json_t *
s_json_part(const char *s, size_t len, size_t max)
{
    if (len > max * 4 / 3 + 4)
        return NULL;
    char buf[4096];
    long n = mc_b64url_decode(buf, sizeof buf, s, len);
    if (n <= 0)
        return NULL;
    json_t *j = json_loadb(buf, (size_t) n, JSON_REJECT_DUPLICATES, NULL);
    if (j && !json_is_object(j)) {
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool
s_signature_ok(const char *kid, const char *input, size_t ilen, const char *sig64, size_t slen, const char **why)
{
    unsigned char sig[1024];
    long siglen = mc_b64url_decode(sig, sizeof sig, sig64, slen);
    if (siglen <= 0) {
        *why = "malformed signature";
        return false;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        pthread_rwlock_rdlock(&s_lock);
        EVP_PKEY *pkey = NULL;
        for (size_t i = 0; i < s_count && !pkey; i++)
            if (strcmp(s_keys[i].kid, kid) == 0)
                pkey = s_keys[i].pkey;
        bool ok = false;
        if (pkey && (size_t) siglen == (size_t) EVP_PKEY_get_size(pkey)) {
            EVP_MD_CTX *md = EVP_MD_CTX_new();
            ok = md && EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) == 1
              && EVP_DigestVerify(md, sig, (size_t) siglen, (const unsigned char *) input, ilen) == 1;
            EVP_MD_CTX_free(md);
        }
        pthread_rwlock_unlock(&s_lock);
        if (pkey) {
            if (!ok)
                *why = "bad signature";
            return ok;
        }
        pthread_rwlock_rdlock(&s_lock);
        bool none = s_count == 0;
        pthread_rwlock_unlock(&s_lock);
        if (none && attempt == 1) {
            *why = NULL;        //  not the token's fault: we have no keys to check it with
            return false;
        }
        //  a kid we do not know may be a key rotated in a moment ago
        if (attempt == 0)
            s_refresh_throttled(100);
    }
    *why = "unknown key";
    return false;
}

static bool
s_int_claim(json_t *claims, const char *name, json_int_t *out)
{
    json_t *v = json_object_get(claims, name);
    if (!v || !json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

int
edge_auth_verify(const char *header, edge_identity_t *who, const char **why)
{
    memset(who, 0, sizeof *who);
    *why = "malformed token";
    if (strncasecmp(header, "Bearer ", 7) != 0) {
        *why = "not a bearer token";
        return -1;
    }
    const char *token = header + 7;
    while (*token == ' ')
        token++;
    size_t len = strlen(token);
    if (len == 0 || len > TOKEN_MAX)
        return -1;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t) (dot1 + 1 - token)) : NULL;
    if (!dot1 || !dot2 || memchr(dot2 + 1, '.', len - (size_t) (dot2 + 1 - token)))
        return -1;
    size_t hlen = (size_t) (dot1 - token), plen = (size_t) (dot2 - dot1 - 1), slen = len - (size_t) (dot2 + 1 - token);
    if (!s_b64url_chars(token, hlen) || !s_b64url_chars(dot1 + 1, plen) || !s_b64url_chars(dot2 + 1, slen))
        return -1;
    //  the header decides nothing but the key: the algorithm is ours, not the token's
    json_t *head = s_json_part(token, hlen, 1024);
    if (!head)
        return -1;
    const char *alg = json_string_value(json_object_get(head, "alg"));
    const char *kid = json_string_value(json_object_get(head, "kid"));
    char kidbuf[64] = "";
    bool head_ok = alg && strcmp(alg, "RS256") == 0 && kid && strlen(kid) < sizeof kidbuf
                && s_b64url_chars(kid, strlen(kid)) && !json_object_get(head, "crit");
    if (head_ok)
        snprintf(kidbuf, sizeof kidbuf, "%s", kid);
    else
        *why = alg && strcmp(alg, "RS256") != 0 ? "algorithm not allowed" : "bad token header";
    json_decref(head);
    if (!head_ok)
        return -1;
    if (!s_signature_ok(kidbuf, token, (size_t) (dot2 - token), dot2 + 1, slen, why))
        return *why ? -1 : -2;
    json_t *claims = s_json_part(dot1 + 1, plen, 3072);
    if (!claims)
        return -1;
    json_int_t exp, iat, nbf;
    json_int_t now = (json_int_t) (mc_now_ms() / 1000);
    const char *iss = json_string_value(json_object_get(claims, "iss"));
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *role = json_string_value(json_object_get(claims, "role"));
    int rc = -1;
    if (!iss || strcmp(iss, "mercato") != 0)
        *why = "wrong issuer";
    else
    if (!s_int_claim(claims, "exp", &exp) || !s_int_claim(claims, "iat", &iat))
        *why = "exp and iat must be integers";
    else
    if (now >= exp + LEEWAY_S)
        *why = "token expired";
    else
    if (iat > now + LEEWAY_S)
        *why = "token issued in the future";
    else
    if (json_object_get(claims, "nbf") && (!s_int_claim(claims, "nbf", &nbf) || nbf > now + LEEWAY_S))
        *why = "token not valid yet";
    else
    if (!sub || !*sub || strlen(sub) >= sizeof who->sub || !role
    ||  (strcmp(role, "customer") != 0 && strcmp(role, "admin") != 0))
        *why = "bad subject or role";
    else {
        snprintf(who->sub, sizeof who->sub, "%s", sub);
        snprintf(who->role, sizeof who->role, "%s", role);
        rc = 0;
    }
    json_decref(claims);
    return rc;
}
