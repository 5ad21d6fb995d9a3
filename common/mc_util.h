/*  mc_util: clocks, ids and hashing shared by every process. */
#ifndef MC_UTIL_H
#define MC_UTIL_H

#include <stddef.h>
#include <stdint.h>

//  Wall clock in unix milliseconds.
uint64_t mc_now_ms(void);
//  Monotonic clock in milliseconds, for timeouts.
uint64_t mc_mono_ms(void);

#define MC_ULID_LEN 26

//  Writes a ULID (26 Crockford base32 characters + NUL) for time ms: ids sort by creation time.
void mc_ulid(char out[MC_ULID_LEN + 1], uint64_t ms);

//  True when s (len bytes) is a syntactically valid ULID.
int mc_ulid_valid(const char *s, size_t len);

//  The n-th variant of a ULID: id with its last four characters replaced by n (below 2^20) in
//  base32, so the time part, and so the order of ids, stays the same.
void mc_ulid_variant(char id[MC_ULID_LEN + 1], uint32_t n);

//  FNV-1a 32-bit: the shard function, shard = mc_fnv1a32(key) % shards.
uint32_t mc_fnv1a32(const void *data, size_t len);

//  Unsigned 64-bit integers as 8 big-endian bytes, so that LMDB's byte order is numeric order.
void mc_be64_put(unsigned char out[8], uint64_t v);
uint64_t mc_be64_get(const unsigned char in[8]);

//  Formats unix ms as RFC 3339 UTC with milliseconds ("2026-11-22T01:02:03.456Z"); out >= 25.
void mc_rfc3339(char *out, size_t outsz, uint64_t ms);

//  base64url without padding; out must hold 4*ceil(len/3)+1. Returns chars written.
size_t mc_b64url_encode(char *out, const void *in, size_t len);
//  Returns bytes decoded, or -1 on a bad character or when out (outsz) is too small.
long mc_b64url_decode(void *out, size_t outsz, const char *in, size_t len);

//  A storage key of two parts: a, one NUL, then b (no NUL after it), so that parts holding no
//  NUL never make one key from two different pairs, and every key of a sorts together. Returns
//  its length, or 0 when it does not fit in size (never a truncated key).
size_t mc_key_join(char *out, size_t size, const void *a, size_t alen, const void *b, size_t blen);

#endif
