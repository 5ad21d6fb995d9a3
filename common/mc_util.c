#include "mc_util.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

uint64_t
mc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

uint64_t
mc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

static const char s_crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

//  xoshiro-style generator per thread, seeded from the kernel: ids need uniqueness, not secrecy.
static _Thread_local uint64_t s_rng[2];

static uint64_t
s_rand64(void)
{
    if (s_rng[0] == 0 && s_rng[1] == 0) {
        if (getrandom(s_rng, sizeof s_rng, 0) != sizeof s_rng || (s_rng[0] | s_rng[1]) == 0) {
            s_rng[0] = (uint64_t) time(NULL) ^ (uint64_t) (uintptr_t) &s_rng;
            s_rng[1] = 0x9e3779b97f4a7c15ull;
        }
    }
    uint64_t s1 = s_rng[0];
    const uint64_t s0 = s_rng[1];
    const uint64_t result = s0 + s1;
    s_rng[0] = s0;
    s1 ^= s1 << 23;
    s_rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return result;
}

void
mc_ulid(char out[MC_ULID_LEN + 1], uint64_t ms)
{
    //  48 bits of time in 10 characters, then 80 random bits in 16
    for (int i = 9; i >= 0; i--) {
        out[i] = s_crockford[ms & 31];
        ms >>= 5;
    }
    uint64_t r1 = s_rand64(), r2 = s_rand64();
    for (int i = 10; i < 26; i++) {
        uint64_t *r = i < 22 ? &r1 : &r2;
        out[i] = s_crockford[*r & 31];
        *r >>= 5;
    }
    out[26] = 0;
}

int
mc_ulid_valid(const char *s, size_t len)
{
    if (len != MC_ULID_LEN || s[0] > '7')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!memchr(s_crockford, s[i], 32))
            return 0;
    return 1;
}

void
mc_ulid_variant(char id[MC_ULID_LEN + 1], uint32_t n)
{
    for (int i = MC_ULID_LEN - 1; i >= MC_ULID_LEN - 4; i--) {
        id[i] = s_crockford[n & 31];
        n >>= 5;
    }
}

uint32_t
mc_fnv1a32(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

void
mc_rfc3339(char *out, size_t outsz, uint64_t ms)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
//  each character's value plus one, 0 for none of the alphabet: a gathered list decodes every
//  item's sort key, and a search of the alphabet per character was a tenth of a node's time
#define B64(c, v) [c] = (v) + 1
static const signed char s_b64_value[256] = {
    B64('A', 0), B64('B', 1), B64('C', 2), B64('D', 3), B64('E', 4), B64('F', 5), B64('G', 6), B64('H', 7),
    B64('I', 8), B64('J', 9), B64('K', 10), B64('L', 11), B64('M', 12), B64('N', 13), B64('O', 14), B64('P', 15),
    B64('Q', 16), B64('R', 17), B64('S', 18), B64('T', 19), B64('U', 20), B64('V', 21), B64('W', 22), B64('X', 23),
    B64('Y', 24), B64('Z', 25), B64('a', 26), B64('b', 27), B64('c', 28), B64('d', 29), B64('e', 30), B64('f', 31),
    B64('g', 32), B64('h', 33), B64('i', 34), B64('j', 35), B64('k', 36), B64('l', 37), B64('m', 38), B64('n', 39),
    B64('o', 40), B64('p', 41), B64('q', 42), B64('r', 43), B64('s', 44), B64('t', 45), B64('u', 46), B64('v', 47),
    B64('w', 48), B64('x', 49), B64('y', 50), B64('z', 51), B64('0', 52), B64('1', 53), B64('2', 54), B64('3', 55),
    B64('4', 56), B64('5', 57), B64('6', 58), B64('7', 59), B64('8', 60), B64('9', 61), B64('-', 62), B64('_', 63),
};
#undef B64

size_t
mc_b64url_encode(char *out, const void *in, size_t len)
{
    const unsigned char *p = in;
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8 | p[i + 2];
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
        out[o++] = s_b64[v >> 6 & 63];
        out[o++] = s_b64[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t) p[i] << 16;
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
    }
    else
    if (len - i == 2) {
        uint32_t v = (uint32_t) p[i] << 16 | (uint32_t) p[i + 1] << 8;
        out[o++] = s_b64[v >> 18 & 63];
        out[o++] = s_b64[v >> 12 & 63];
        out[o++] = s_b64[v >> 6 & 63];
    }
    out[o] = 0;
    return o;
}

long
mc_b64url_decode(void *out, size_t outsz, const char *in, size_t len)
{
    unsigned char *o = out;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (len % 4 == 1)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = s_b64_value[(unsigned char) in[i]] - 1;
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t) v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= outsz)
                return -1;
            o[n++] = (unsigned char) (acc >> bits);
        }
    }
    return (long) n;
}

void
mc_be64_put(unsigned char out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (unsigned char) v;
}

uint64_t
mc_be64_get(const unsigned char in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

size_t
mc_key_join(char *out, size_t size, const void *a, size_t alen, const void *b, size_t blen)
{
    if (alen >= size || blen > size - alen - 1)
        return 0;
    if (alen)
        memcpy(out, a, alen);
    out[alen] = 0;
    if (blen)
        memcpy(out + alen + 1, b, blen);
    return alen + 1 + blen;
}
