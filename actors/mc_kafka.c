#include "mc_kafka.h"

#include "mc_config.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

//  The first line of path into out. 0, or -1 with err set.
static int
s_read_secret(const char *path, char *out, size_t outsz, char *err, size_t errsz)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errsz, "cannot read MERCATO_KAFKA_SASL_PASSWORD_FILE %s: %s", path, strerror(errno));
        return -1;
    }
    if (!fgets(out, (int) outsz, f))
        out[0] = 0;
    fclose(f);
    out[strcspn(out, "\r\n")] = 0;
    return 0;
}

int
mc_kafka_conf_security(rd_kafka_conf_t *conf, char *err, size_t errsz)
{
    const char *user = mc_config_env("MERCATO_KAFKA_SASL_USERNAME", NULL);
    const char *protocol = mc_config_env("MERCATO_KAFKA_SECURITY_PROTOCOL", user ? "SASL_PLAINTEXT" : "PLAINTEXT");
    const char *ca = mc_config_env("MERCATO_KAFKA_SSL_CA_FILE", NULL);
    if (rd_kafka_conf_set(conf, "security.protocol", protocol, err, errsz)
    ||  (ca && rd_kafka_conf_set(conf, "ssl.ca.location", ca, err, errsz)))
        return -1;
    if (!user)
        return 0;
    char password[512] = "";
    const char *file = mc_config_env("MERCATO_KAFKA_SASL_PASSWORD_FILE", NULL);
    if (file && s_read_secret(file, password, sizeof password, err, errsz))
        return -1;
    if (!file)
        snprintf(password, sizeof password, "%s", mc_config_env("MERCATO_KAFKA_SASL_PASSWORD", ""));
    int rc = 0;
    if (!*password) {
        snprintf(err, errsz, "MERCATO_KAFKA_SASL_USERNAME is set without a password "
                 "(MERCATO_KAFKA_SASL_PASSWORD or MERCATO_KAFKA_SASL_PASSWORD_FILE)");
        rc = -1;
    }
    else
    if (rd_kafka_conf_set(conf, "sasl.mechanism", mc_config_env("MERCATO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"), err, errsz)
    ||  rd_kafka_conf_set(conf, "sasl.username", user, err, errsz)
    ||  rd_kafka_conf_set(conf, "sasl.password", password, err, errsz))
        rc = -1;
    OPENSSL_cleanse(password, sizeof password);
    return rc;
}
