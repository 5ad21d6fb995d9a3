#include "mc_event_sign.h"

#include "mc_config.h"
#include "mc_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONTEXT "mercato-event-v1"
#define CONTEXT_LEN 16
#define RAW_SIG 64

#define MC_EVENT_H_NAME(name, text) text,
const char *const mc_event_signed_headers[MC_EVENT_H_COUNT] = { MC_EVENT_SIGNED_HEADERS(MC_EVENT_H_NAME) };
#undef MC_EVENT_H_NAME

//  OpenSSL reads the PEM files and names the keys; libsodium signs and verifies with the raw
//  keys. Ed25519 signatures are deterministic, so the bytes are the same either way, and
//  libsodium's take 30 us to sign and 92 us to verify where OpenSSL's EVP calls (a context per
//  record) took 76 and 169 (this machine, 600-byte input): signing was two thirds of the
//  relay's CPU.
typedef struct {
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char kid[MC_EVENT_KID_LEN + 1];
} event_key_t;

struct _mc_event_signer_t {
    event_key_t key;
    unsigned char sk[crypto_sign_SECRETKEYBYTES];   //  the seed and the public key, libsodium's form
};

struct _mc_event_verifier_t {
    event_key_t keys[MC_EVENT_KEYS_MAX];
    size_t nkeys;
};

const char *
mc_event_check_str(mc_event_check_t check)
{
    switch (check) {
        case MC_EVENT_VALID: return "valid";
        case MC_EVENT_UNSIGNED: return "unsigned";
        case MC_EVENT_UNKNOWN_KEY: return "unknown_key";
        case MC_EVENT_BAD_SIGNATURE: return "bad_signature";
    }
    return "bad_signature";
}

//  The key id of an Ed25519 key: -1 when it is not one.
static int
s_kid(EVP_PKEY *pkey, char kid[MC_EVENT_KID_LEN + 1])
{
    unsigned char raw[32], md[32];
    size_t len = sizeof raw;
    unsigned mdlen = 0;
    if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519 || EVP_PKEY_get_raw_public_key(pkey, raw, &len) != 1
    ||  len != sizeof raw || EVP_Digest(raw, len, md, &mdlen, EVP_sha256(), NULL) != 1)
        return -1;
    for (int i = 0; i < MC_EVENT_KID_LEN / 2; i++)
        snprintf(kid + 2 * i, 3, "%02x", md[i]);
    return 0;
}

//  The signing input of the header comment, in a new buffer (*len its size); NULL when out of
//  memory.
static unsigned char *
s_input(const mc_event_record_t *rec, const char *kid, size_t *len)
{
    mc_str_t fields[4 + MC_EVENT_H_COUNT] = { { kid, strlen(kid) }, rec->topic, rec->key, rec->value };
    for (int i = 0; i < MC_EVENT_H_COUNT; i++)
        fields[4 + i] = rec->headers[i];
    size_t n = CONTEXT_LEN;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        if (!fields[i].ptr || fields[i].len > UINT32_MAX)
            fields[i].len = 0;
        n += 4 + fields[i].len;
    }
    unsigned char *buf = malloc(n), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, CONTEXT, CONTEXT_LEN);
    p += CONTEXT_LEN;
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        uint32_t l = (uint32_t) fields[i].len;
        *p++ = (unsigned char) (l >> 24);
        *p++ = (unsigned char) (l >> 16);
        *p++ = (unsigned char) (l >> 8);
        *p++ = (unsigned char) l;
        if (l)
            memcpy(p, fields[i].ptr, l);
        p += l;
    }
    *len = n;
    return buf;
}

//  Writes a PEM file through a temporary name and link(2): a reader never sees half a key, and
//  a file already there is never replaced. 0, or -1 with errno.
static int
s_write_pem(const char *path, EVP_PKEY *pkey, bool private, mode_t mode)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int) getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (fd < 0)
        return -1;
    FILE *f = fdopen(fd, "w");
    if (!f) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    bool ok = private ? PEM_write_PrivateKey(f, pkey, NULL, NULL, 0, NULL, NULL) == 1
                      : PEM_write_PUBKEY(f, pkey) == 1;
    ok = fflush(f) == 0 && fsync(fd) == 0 && ok;
    if (fclose(f) || !ok) {
        unlink(tmp);
        errno = EIO;
        return -1;
    }
    int rc = link(tmp, path);
    int e = errno;
    unlink(tmp);
    errno = e;
    return rc;
}

//  Reads a PEM key; private ones must be readable by their owner only. NULL with err set.
static EVP_PKEY *
s_read_pem(const char *path, bool private, char *err, size_t errsz)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    if (private && (fstat(fileno(f), &st) || (st.st_mode & 077))) {
        snprintf(err, errsz, "%s is readable by others than its owner (chmod 600 it)", path);
        fclose(f);
        return NULL;
    }
    EVP_PKEY *pkey = private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
        snprintf(err, errsz, "%s is not an Ed25519 %s key in PEM", path, private ? "private" : "public");
        EVP_PKEY_free(pkey);
        return NULL;
    }
    return pkey;
}

int
mc_event_sign_keygen(const char *dir)
{
    if (mc_config_mkdirs(dir))
        return -1;
    char key[4200], pub[4200];
    snprintf(key, sizeof key, "%s/" MC_EVENT_KEY_FILE, dir);
    snprintf(pub, sizeof pub, "%s/" MC_EVENT_PUB_FILE, dir);
    if (access(pub, F_OK) == 0)
        return 0;
    EVP_PKEY *pkey = NULL;
    if (access(key, F_OK) == 0) {
        char err[256];
        pkey = s_read_pem(key, true, err, sizeof err);
        if (!pkey) {
            errno = EINVAL;
            return -1;
        }
    }
    else {
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        if (!pkey) {
            errno = ENOMEM;
            return -1;
        }
        if (s_write_pem(key, pkey, true, 0600)) {
            int e = errno;
            EVP_PKEY_free(pkey);
            errno = e;
            return -1;
        }
    }
    int rc = s_write_pem(pub, pkey, false, 0644);
    int e = errno;
    EVP_PKEY_free(pkey);
    errno = e;
    return rc;
}

mc_event_signer_t *
mc_event_signer_new(const char *dir, char *err, size_t errsz)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" MC_EVENT_KEY_FILE, dir);
    EVP_PKEY *pkey = s_read_pem(path, true, err, errsz);
    if (!pkey)
        return NULL;
    mc_event_signer_t *self = calloc(1, sizeof *self);
    unsigned char seed[crypto_sign_SEEDBYTES];
    size_t len = sizeof seed;
    if (!self || sodium_init() < 0 || s_kid(pkey, self->key.kid)
    ||  EVP_PKEY_get_raw_private_key(pkey, seed, &len) != 1 || len != sizeof seed
    ||  crypto_sign_seed_keypair(self->key.pk, self->sk, seed) != 0) {
        snprintf(err, errsz, "cannot use %s", path);
        sodium_memzero(seed, sizeof seed);
        EVP_PKEY_free(pkey);
        free(self);
        return NULL;
    }
    sodium_memzero(seed, sizeof seed);
    EVP_PKEY_free(pkey);
    return self;
}

void
mc_event_signer_destroy(mc_event_signer_t **self_p)
{
    mc_event_signer_t *self = *self_p;
    if (!self)
        return;
    sodium_memzero(self->sk, sizeof self->sk);
    free(self);
    *self_p = NULL;
}

const char *
mc_event_signer_kid(const mc_event_signer_t *self)
{
    return self->key.kid;
}

int
mc_event_signer_sign(mc_event_signer_t *self, const mc_event_record_t *rec, char sig[MC_EVENT_SIG_LEN + 1])
{
    size_t len;
    unsigned char *tbs = s_input(rec, self->key.kid, &len);
    unsigned char raw[RAW_SIG];
    int rc = tbs && crypto_sign_detached(raw, NULL, tbs, len, self->sk) == 0 ? 0 : -1;
    if (rc == 0)
        mc_b64url_encode(sig, raw, sizeof raw);
    free(tbs);
    return rc;
}

mc_event_verifier_t *
mc_event_verifier_new(const char *dir, char *err, size_t errsz)
{
    mc_event_verifier_t *self = calloc(1, sizeof *self);
    DIR *d = opendir(dir);
    if (!self || !d || sodium_init() < 0) {
        snprintf(err, errsz, "cannot open the key folder %s: %s", dir, strerror(errno));
        free(self);
        if (d)
            closedir(d);
        return NULL;
    }
    struct dirent *e;
    bool failed = false;
    while (!failed && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "events", 6) || n < 10 || strcmp(e->d_name + n - 4, ".pub"))
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        EVP_PKEY *pkey = s_read_pem(path, false, err, errsz);
        event_key_t k = { .kid = "" };
        size_t len = sizeof k.pk;
        if (!pkey || s_kid(pkey, k.kid) || EVP_PKEY_get_raw_public_key(pkey, k.pk, &len) != 1
        ||  len != sizeof k.pk) {
            if (pkey)
                snprintf(err, errsz, "cannot use %s", path);
            EVP_PKEY_free(pkey);
            failed = true;
            break;
        }
        EVP_PKEY_free(pkey);
        bool known = false;
        for (size_t i = 0; i < self->nkeys && !known; i++)
            known = strcmp(self->keys[i].kid, k.kid) == 0;
        if (!known && self->nkeys < MC_EVENT_KEYS_MAX)
            self->keys[self->nkeys++] = k;
    }
    closedir(d);
    if (!failed && !self->nkeys) {
        snprintf(err, errsz, "no %s in %s (create the cluster's keys with mercato-keys)", MC_EVENT_PUB_FILE, dir);
        failed = true;
    }
    if (failed)
        mc_event_verifier_destroy(&self);
    return self;
}

void
mc_event_verifier_destroy(mc_event_verifier_t **self_p)
{
    mc_event_verifier_t *self = *self_p;
    if (!self)
        return;
    free(self);
    *self_p = NULL;
}

size_t
mc_event_verifier_size(const mc_event_verifier_t *self)
{
    return self->nkeys;
}

mc_event_check_t
mc_event_verifier_check(mc_event_verifier_t *self, const mc_event_record_t *rec, mc_str_t kid, mc_str_t sig)
{
    if (!kid.ptr || !sig.ptr || !kid.len || !sig.len)
        return MC_EVENT_UNSIGNED;
    const event_key_t *key = NULL;
    for (size_t i = 0; i < self->nkeys && !key; i++)
        if (kid.len == MC_EVENT_KID_LEN && memcmp(self->keys[i].kid, kid.ptr, kid.len) == 0)
            key = &self->keys[i];
    if (!key)
        return MC_EVENT_UNKNOWN_KEY;
    unsigned char raw[RAW_SIG];
    if (sig.len != MC_EVENT_SIG_LEN || mc_b64url_decode(raw, sizeof raw, sig.ptr, sig.len) != RAW_SIG)
        return MC_EVENT_BAD_SIGNATURE;
    size_t len;
    unsigned char *tbs = s_input(rec, key->kid, &len);
    bool ok = tbs && crypto_sign_verify_detached(raw, tbs, len, key->pk) == 0;
    free(tbs);
    return ok ? MC_EVENT_VALID : MC_EVENT_BAD_SIGNATURE;
}
