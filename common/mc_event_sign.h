/*  mc_event_sign: Ed25519 signatures on the Kafka records the relay produces.

    A Kafka record is input from outside (CONTRACT §9): anyone who can produce to a topic can
    write any record. So the relay signs every record it produces with the cluster's event key,
    and every consumer verifies a record before it acts on it; a record without a valid
    signature from a key it holds has no effect.

    What is signed (the "signing input"), byte for byte: the 16 bytes "mercato-event-v1", then
    thirteen fields, each as its length (4 bytes, big-endian) followed by its bytes: the key id,
    the topic, the record key, the record value, and the headers of MC_EVENT_SIGNED_HEADERS in
    that order. An absent field is length 0, the same as an empty one. The signature goes in
    the header MC_EVENT_SIG_HEADER as base64url without padding (86 characters), the id of the
    key that made it in MC_EVENT_KID_HEADER: the first 8 bytes of the SHA-256 of the raw 32-byte
    public key, as 16 lower-case hex digits.

    Keys are PEM files in the cluster's key folder (mc_plane_dir): the private key
    "events.key" (PKCS#8, mode 0600) only where a relay runs, the public key "events.pub"
    (SubjectPublicKeyInfo) on every node. A verifier also accepts every other "events*.pub" in
    the folder, which is how keys rotate: give nodes the new public key under another name
    first, then the relay the new private key, and remove the old public key once no record
    it signed is left to consume.

    OpenSSL's EVP interface does the cryptography: it is already a dependency, and it reads and
    writes the PEM files that openssl(1), Python's cryptography and every other team's tooling
    read too. */
#ifndef MC_EVENT_SIGN_H
#define MC_EVENT_SIGN_H

#include "mc_msgpack.h"

#include <stdbool.h>
#include <stddef.h>

#define MC_EVENT_SIG_HEADER "mercato_sig"
#define MC_EVENT_KID_HEADER "mercato_kid"
#define MC_EVENT_KEY_FILE "events.key"
#define MC_EVENT_PUB_FILE "events.pub"
#define MC_EVENT_KID_LEN 16             //  hex digits
#define MC_EVENT_SIG_LEN 86             //  base64url characters of 64 bytes
#define MC_EVENT_KEYS_MAX 8             //  public keys a verifier holds at once

//  The headers a signature covers, in signing order: every header a consumer reads.
#define MC_EVENT_SIGNED_HEADERS(X) \
    X(SPECVERSION, "ce_specversion") X(ID, "ce_id") X(TYPE, "ce_type") X(SOURCE, "ce_source") \
    X(TIME, "ce_time") X(CONTENT_TYPE, "content-type") X(CORRELATION, "ce_correlationid") \
    X(CAUSATION, "ce_causationid") X(TRACEPARENT, "traceparent")

#define MC_EVENT_H_ENUM(name, text) MC_EVENT_H_##name,
typedef enum { MC_EVENT_SIGNED_HEADERS(MC_EVENT_H_ENUM) MC_EVENT_H_COUNT } mc_event_header_t;
#undef MC_EVENT_H_ENUM

//  The header names, indexed by mc_event_header_t.
extern const char *const mc_event_signed_headers[MC_EVENT_H_COUNT];

//  What a signature covers. A field whose ptr is NULL is absent.
typedef struct {
    mc_str_t topic, key, value;
    mc_str_t headers[MC_EVENT_H_COUNT];
} mc_event_record_t;

typedef enum {
    MC_EVENT_VALID = 0,
    MC_EVENT_UNSIGNED,          //  no signature or no key id header
    MC_EVENT_UNKNOWN_KEY,       //  signed by a key this verifier does not hold
    MC_EVENT_BAD_SIGNATURE,     //  the signature is malformed or does not match the record
} mc_event_check_t;

//  A word for logs: "unsigned", "unknown_key", "bad_signature", "valid".
const char *mc_event_check_str(mc_event_check_t check);

//  mercato-keys runs it with the plane's keys. Creates dir (0700) if needed and, when dir has no events.key and no events.pub, a new key
//  pair: events.key (mode 0600) and events.pub. When only events.key is there, writes its
//  events.pub. When events.pub is there, creates nothing (a node's folder, or done already).
//  Returns 0, or -1 with errno set.
int mc_event_sign_keygen(const char *dir);

typedef struct _mc_event_signer_t mc_event_signer_t;

//  Loads <dir>/events.key. Returns NULL, with the reason in err, when it is missing, is not an
//  Ed25519 private key or can be read by others than its owner.
mc_event_signer_t *mc_event_signer_new(const char *dir, char *err, size_t errsz);
void mc_event_signer_destroy(mc_event_signer_t **self_p);

//  The signing key's id, MC_EVENT_KID_LEN hex digits.
const char *mc_event_signer_kid(const mc_event_signer_t *self);

//  Signs rec. sig gets MC_EVENT_SIG_LEN characters and a NUL. Returns 0, or -1 when OpenSSL
//  fails (out of memory).
int mc_event_signer_sign(mc_event_signer_t *self, const mc_event_record_t *rec, char sig[MC_EVENT_SIG_LEN + 1]);

typedef struct _mc_event_verifier_t mc_event_verifier_t;

//  Loads every events*.pub of dir (at most MC_EVENT_KEYS_MAX). Returns NULL, with the reason in
//  err, when there is none or one is not an Ed25519 public key.
mc_event_verifier_t *mc_event_verifier_new(const char *dir, char *err, size_t errsz);
void mc_event_verifier_destroy(mc_event_verifier_t **self_p);

//  Keys held.
size_t mc_event_verifier_size(const mc_event_verifier_t *self);

//  Checks rec against the signature sig made by key kid (the two headers' values; ptr NULL
//  when a header is absent).
mc_event_check_t mc_event_verifier_check(mc_event_verifier_t *self, const mc_event_record_t *rec,
                                         mc_str_t kid, mc_str_t sig);

#endif
