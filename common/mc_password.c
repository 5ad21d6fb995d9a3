#include "mc_password.h"

#include <argon2.h>
#include <string.h>
#include <sys/random.h>

#define T_COST 2
#define M_COST_KIB 19456
#define LANES 1
#define SALT_LEN 16
#define HASH_LEN 32

int
mc_password_hash(const char *password, size_t len, char *out)
{
    unsigned char salt[SALT_LEN];
    if (getrandom(salt, sizeof salt, 0) != (ssize_t) sizeof salt)
        return -1;
    int rc = argon2id_hash_encoded(T_COST, M_COST_KIB, LANES, password, len, salt, sizeof salt, HASH_LEN,
                                   out, MC_PASSWORD_HASH_MAX);
    return rc == ARGON2_OK ? 0 : -1;
}

bool
mc_password_verify(const char *encoded, const char *password, size_t len)
{
    //  only our own parameters are accepted: a stored hash with a tiny cost would be a weakness
    if (strncmp(encoded, "$argon2id$", 10) != 0)
        return false;
    return argon2id_verify(encoded, password, len) == ARGON2_OK;
}
