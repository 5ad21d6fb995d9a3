#include "identity_keys.h"

#include "mc_config.h"
#include "mc_log.h"
#include "mc_msgpack.h"
#include "mc_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYS_MAX 16

typedef struct {
    char kid[IDENTITY_KID_LEN + 1]; //  RFC 7638 thumbprint
    char n[400];                    //  modulus, base64url
    char e[16];                     //  exponent, base64url
    char *pem;                      //  private key PEM (libjwt signs from PEM)
    uint64_t retired_ms;            //  0 while it signs
} key_t_;

struct _identity_keys_t {
    pthread_rwlock_t lock;          //  signing and publishing read; a rotation writes
    size_t refs;                    //  identity shards holding this set
    identity_keys_t *next;          //  the process's other sets (other data directories)
    char dir[4096];                 //  data_dir/keys
    key_t_ keys[KEYS_MAX];          //  signing key first, then retired ones
    size_t count;                   //  keys loaded
    pthread_t spare_thread;         //  makes the next key in the background
    bool spare_running;             //  spare_thread has been started and not joined
    EVP_PKEY *spare;                //  the next signing key, made ahead of a rotation
};

//  RSA key generation takes from tens of milliseconds to seconds: long enough for the actor to
//  miss its heartbeats. So the next key is always made ahead, on another thread.
static void *
s_spare_main(void *arg)
{
    identity_keys_t *self = arg;
    self->spare = EVP_RSA_gen(2048);
    return NULL;
}

static void
s_spare_start(identity_keys_t *self)
{
    self->spare = NULL;
    self->spare_running = pthread_create(&self->spare_thread, NULL, s_spare_main, self) == 0;
}

//  The spare key, waiting for it if it is not ready; a fresh one if there is no spare thread.
static EVP_PKEY *
s_spare_take(identity_keys_t *self)
{
    if (!self->spare_running)
        return EVP_RSA_gen(2048);
    pthread_join(self->spare_thread, NULL);
    self->spare_running = false;
    EVP_PKEY *pkey = self->spare;
    self->spare = NULL;
    return pkey ? pkey : EVP_RSA_gen(2048);
}

static int
s_b64_bn(EVP_PKEY *pkey, const char *name, char *out, size_t outsz)
{
    BIGNUM *bn = NULL;
    if (!EVP_PKEY_get_bn_param(pkey, name, &bn))
        return -1;
    unsigned char buf[520];
    int n = BN_num_bytes(bn);
    if (n <= 0 || (size_t) n > sizeof buf || 4 * ((size_t) n + 2) / 3 + 1 > outsz) {
        BN_free(bn);
        return -1;
    }
    BN_bn2bin(bn, buf);
    BN_free(bn);
    mc_b64url_encode(out, buf, (size_t) n);
    return 0;
}

//  Fills k from a private key: n, e, thumbprint, PEM.
static int
s_describe(EVP_PKEY *pkey, key_t_ *k)
{
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA || EVP_PKEY_get_bits(pkey) < 2048)
        return -1;
    if (s_b64_bn(pkey, OSSL_PKEY_PARAM_RSA_N, k->n, sizeof k->n) || s_b64_bn(pkey, OSSL_PKEY_PARAM_RSA_E, k->e, sizeof k->e))
        return -1;
    //  RFC 7638: the required members in lexicographic order, no whitespace
    char canon[600];
    int len = snprintf(canon, sizeof canon, "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", k->e, k->n);
    if (len < 0 || (size_t) len >= sizeof canon)
        return -1;      //  the thumbprint must hash the whole member list, never a cut one
    unsigned char digest[32];
    unsigned int dlen = 0;
    if (!EVP_Digest(canon, (size_t) len, digest, &dlen, EVP_sha256(), NULL))
        return -1;
    mc_b64url_encode(k->kid, digest, dlen);
    BIO *bio = BIO_new(BIO_s_mem());
    if (!bio || !PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL)) {
        BIO_free(bio);
        return -1;
    }
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    k->pem = malloc((size_t) n + 1);
    memcpy(k->pem, data, (size_t) n);
    k->pem[n] = 0;
    BIO_free(bio);
    return 0;
}

static EVP_PKEY *
s_read_pem(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return pkey;
}

//  Writes bytes to path with mode 0600, replacing it atomically.
static int
s_write_private(const char *path, const void *data, size_t len)
{
    char tmp[4096 + 400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    bool ok = write(fd, data, len) == (ssize_t) len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path)) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int
s_read_small(const char *path, char *out, size_t outsz)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, outsz - 1, f);
    fclose(f);
    out[n] = 0;
    while (n && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = 0;
    return 0;
}

static int
s_add(identity_keys_t *self, EVP_PKEY *pkey, uint64_t retired_ms)
{
    if (self->count == KEYS_MAX)
        return -1;
    key_t_ *k = &self->keys[self->count];
    memset(k, 0, sizeof *k);
    if (s_describe(pkey, k))
        return -1;
    k->retired_ms = retired_ms;
    self->count++;
    return 0;
}

//  A fresh key, saved as <kid>.pem; it becomes the signing key (index 0).
static int
s_generate(identity_keys_t *self)
{
    EVP_PKEY *pkey = s_spare_take(self);
    s_spare_start(self);
    if (!pkey)
        return -1;
    key_t_ k = { 0 };
    int rc = s_describe(pkey, &k);
    EVP_PKEY_free(pkey);
    if (rc)
        return -1;
    char path[sizeof ((identity_keys_t *) 0)->dir + 320];
    snprintf(path, sizeof path, "%s/%s.pem", self->dir, k.kid);
    if (s_write_private(path, k.pem, strlen(k.pem))) {
        free(k.pem);
        return -1;
    }
    snprintf(path, sizeof path, "%s/signing", self->dir);
    if (s_write_private(path, k.kid, strlen(k.kid))) {
        free(k.pem);
        return -1;
    }
    if (self->count == KEYS_MAX) {
        free(self->keys[KEYS_MAX - 1].pem);
        self->count--;
    }
    memmove(&self->keys[1], &self->keys[0], self->count * sizeof k);
    self->keys[0] = k;
    self->count++;
    mc_info("signing key generated", "\"kid\":\"%s\"", k.kid);
    return 0;
}

static void s_free(identity_keys_t **self_p);

//  Loads the keys in dir, generating what is missing. NULL on failure (logged).
static identity_keys_t *
s_load(const char *dir)
{
    identity_keys_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_rwlock_init(&self->lock, NULL);
    snprintf(self->dir, sizeof self->dir, "%s", dir);
    if (mc_config_mkdirs(self->dir)) {
        mc_error("cannot create key directory", "\"dir\":\"%s\"", self->dir);
        s_free(&self);
        return NULL;
    }
    char path[sizeof ((identity_keys_t *) 0)->dir + 320];
    //  the signing key: configured, or the one named in "signing", or a new one
    const char *configured = mc_config_env("MERCATO_JWT_KEY_FILE", NULL);
    char kid[128] = "";
    EVP_PKEY *pkey = NULL;
    if (configured)
        pkey = s_read_pem(configured);
    else {
        snprintf(path, sizeof path, "%s/signing", self->dir);
        if (s_read_small(path, kid, sizeof kid) == 0 && *kid && !strchr(kid, '/')) {
            snprintf(path, sizeof path, "%s/%s.pem", self->dir, kid);
            pkey = s_read_pem(path);
        }
    }
    if (pkey) {
        int rc = s_add(self, pkey, 0);
        EVP_PKEY_free(pkey);
        if (rc) {
            mc_error("signing key unusable (want RSA, 2048 bits or more)", NULL);
            s_free(&self);
            return NULL;
        }
    }
    else
    if (configured) {
        mc_error("cannot read MERCATO_JWT_KEY_FILE", NULL);
        s_free(&self);
        return NULL;
    }
    else
    if (s_generate(self)) {
        mc_error("cannot generate a signing key", NULL);
        s_free(&self);
        return NULL;
    }
    //  retired keys, published until their last tokens expire
    DIR *d = opendir(self->dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 9 || strcmp(de->d_name + n - 8, ".retired") != 0)
            continue;
        char retired[32];
        snprintf(path, sizeof path, "%s/%s", self->dir, de->d_name);
        if (s_read_small(path, retired, sizeof retired))
            continue;
        snprintf(path, sizeof path, "%s/%.*s.pem", self->dir, (int) (n - 8), de->d_name);
        EVP_PKEY *old = s_read_pem(path);
        if (old && strncmp(de->d_name, self->keys[0].kid, n - 8) != 0)
            s_add(self, old, strtoull(retired, NULL, 10));
        EVP_PKEY_free(old);
    }
    if (d)
        closedir(d);
    if (!self->spare_running)
        s_spare_start(self);
    return self;
}

static void
s_free(identity_keys_t **self_p)
{
    identity_keys_t *self = *self_p;
    if (!self)
        return;
    pthread_rwlock_destroy(&self->lock);
    if (self->spare_running)
        pthread_join(self->spare_thread, NULL);
    EVP_PKEY_free(self->spare);
    for (size_t i = 0; i < self->count; i++)
        free(self->keys[i].pem);
    free(self);
    *self_p = NULL;
}

//  Every identity shard of a process signs with the same keys, which it keeps in one data
//  directory: one set per directory, shared, so that the shards never race to make the first
//  key, a rotation through any of them is every one's, and the keys any shard publishes verify
//  the tokens every shard signs.
static pthread_mutex_t s_sets_lock = PTHREAD_MUTEX_INITIALIZER;
static identity_keys_t *s_sets;

identity_keys_t *
identity_keys_new(const char *data_dir)
{
    char dir[sizeof ((identity_keys_t *) 0)->dir];
    snprintf(dir, sizeof dir, "%s/keys", data_dir);
    pthread_mutex_lock(&s_sets_lock);
    identity_keys_t *self = s_sets;
    while (self && strcmp(self->dir, dir) != 0)
        self = self->next;
    if (self)
        self->refs++;
    else
    if ((self = s_load(dir))) {
        self->refs = 1;
        self->next = s_sets;
        s_sets = self;
    }
    pthread_mutex_unlock(&s_sets_lock);
    return self;
}

void
identity_keys_destroy(identity_keys_t **self_p)
{
    identity_keys_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    pthread_mutex_lock(&s_sets_lock);
    if (--self->refs == 0) {
        identity_keys_t **p = &s_sets;
        while (*p && *p != self)
            p = &(*p)->next;
        if (*p)
            *p = self->next;
        s_free(&self);
    }
    pthread_mutex_unlock(&s_sets_lock);
}

void
identity_keys_kid(identity_keys_t *self, char kid[IDENTITY_KID_LEN + 1])
{
    pthread_rwlock_rdlock(&self->lock);
    snprintf(kid, IDENTITY_KID_LEN + 1, "%s", self->keys[0].kid);
    pthread_rwlock_unlock(&self->lock);
}

char *
identity_keys_sign(identity_keys_t *self, const char *sub, const char *role, const char *jti, uint64_t now_ms)
{
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt))
        return NULL;
    long iat = (long) (now_ms / 1000);
    pthread_rwlock_rdlock(&self->lock);
    const key_t_ *k = &self->keys[0];
    char *token = NULL;
    if (jwt_add_header(jwt, "kid", k->kid) == 0 && jwt_add_grant(jwt, "iss", "mercato") == 0
    &&  jwt_add_grant(jwt, "sub", sub) == 0 && jwt_add_grant(jwt, "role", role) == 0
    &&  jwt_add_grant_int(jwt, "iat", iat) == 0 && jwt_add_grant_int(jwt, "exp", iat + IDENTITY_ACCESS_TTL_S) == 0
    &&  jwt_add_grant(jwt, "jti", jti) == 0
    &&  jwt_set_alg(jwt, JWT_ALG_RS256, (const unsigned char *) k->pem, (int) strlen(k->pem)) == 0)
        token = jwt_encode_str(jwt);
    pthread_rwlock_unlock(&self->lock);
    jwt_free(jwt);
    return token;
}

void
identity_keys_pack(identity_keys_t *self, msgpack_packer *pk, uint64_t now_ms)
{
    size_t live = 0;
    //  a retired key stays until the last token it signed has expired, plus the verifier's leeway
    uint64_t horizon = (IDENTITY_ACCESS_TTL_S + 60) * 1000ull;
    pthread_rwlock_rdlock(&self->lock);
    for (size_t i = 0; i < self->count; i++)
        live += !self->keys[i].retired_ms || self->keys[i].retired_ms + horizon > now_ms;
    msgpack_pack_map(pk, 1);
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, live);
    for (size_t i = 0; i < self->count; i++) {
        const key_t_ *k = &self->keys[i];
        if (k->retired_ms && k->retired_ms + horizon <= now_ms)
            continue;
        msgpack_pack_map(pk, 6);
        mc_pack_kv_cstr(pk, "kty", "RSA");
        mc_pack_kv_cstr(pk, "use", "sig");
        mc_pack_kv_cstr(pk, "alg", "RS256");
        mc_pack_kv_cstr(pk, "kid", k->kid);
        mc_pack_kv_cstr(pk, "n", k->n);
        mc_pack_kv_cstr(pk, "e", k->e);
    }
    pthread_rwlock_unlock(&self->lock);
}

int
identity_keys_rotate(identity_keys_t *self, uint64_t now_ms)
{
    char path[sizeof ((identity_keys_t *) 0)->dir + 320], when[32];
    pthread_rwlock_wrlock(&self->lock);
    snprintf(path, sizeof path, "%s/%s.retired", self->dir, self->keys[0].kid);
    snprintf(when, sizeof when, "%" PRIu64, now_ms);
    int rc = s_write_private(path, when, strlen(when));
    if (!rc) {
        uint64_t old = self->keys[0].retired_ms;
        self->keys[0].retired_ms = now_ms;
        if ((rc = s_generate(self))) {
            self->keys[0].retired_ms = old;
            unlink(path);
        }
    }
    pthread_rwlock_unlock(&self->lock);
    return rc ? -1 : 0;
}
