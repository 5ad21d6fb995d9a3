/*  edge_auth_bench: what verifying an access token costs the edge per request.

    usage: edge_auth_bench [N]
    Signs a token with the identity service's own signer, loads its public key the way the edge
    does, then times N verifications. Prints microseconds per verification. Not a test. */
#include "edge_auth.h"
#include "identity/identity_keys.h"
#include "mc_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int
main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 20000;
    char dir[] = "/tmp/mc-auth-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    identity_keys_t *keys = identity_keys_new(dir);
    if (!keys)
        return 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    identity_keys_pack(keys, &pk, mc_now_ms());
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    if (edge_auth_load(&u.data))
        return 1;
    char *token = identity_keys_sign(keys, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "customer", "bench", mc_now_ms());
    char header[4200];
    snprintf(header, sizeof header, "Bearer %s", token);
    edge_identity_t who;
    const char *why = "";
    if (edge_auth_verify(header, &who, &why)) {
        fprintf(stderr, "verification failed: %s\n", why);
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++)
        edge_auth_verify(header, &who, &why);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double us = ((double) (t1.tv_sec - t0.tv_sec) * 1e9 + (double) (t1.tv_nsec - t0.tv_nsec)) / 1e3 / (double) n;
    printf("jwt verify: %.1f us per request (%ld verifications, RS256, 2048-bit key)\n", us, n);
    free(token);
    identity_keys_destroy(&keys);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : 1;
}
