/*  mc_password: argon2id password hashes in PHC string form ($argon2id$v=19$m=19456,t=2,p=1$...).

    Parameters follow OWASP's argon2id minimum: 19 MiB, 2 passes, 1 lane. Each call costs about
    25 ms of CPU and 19 MiB of memory, so callers bound how many run at once. */
#ifndef MC_PASSWORD_H
#define MC_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

#define MC_PASSWORD_HASH_MAX 128

//  Hashes password with a fresh random salt into out (MC_PASSWORD_HASH_MAX). 0 or -1.
int mc_password_hash(const char *password, size_t len, char *out);

//  True when password matches the encoded hash.
bool mc_password_verify(const char *encoded, const char *password, size_t len);

#endif
