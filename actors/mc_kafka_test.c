/*  mc_kafka: the security properties each environment gives a Kafka client. */
#include "mc_kafka.h"
#include "mc_test.h"

#include <stdlib.h>
#include <unistd.h>

//  conf's value of name, in out.
static const char *
s_get(rd_kafka_conf_t *conf, const char *name, char *out, size_t outsz)
{
    size_t n = outsz;
    if (rd_kafka_conf_get(conf, name, out, &n) != RD_KAFKA_CONF_OK)
        snprintf(out, outsz, "(unset)");
    return out;
}

static void
s_clear(void)
{
    const char *vars[] = { "MERCATO_KAFKA_SASL_USERNAME", "MERCATO_KAFKA_SASL_PASSWORD", "MERCATO_KAFKA_SASL_PASSWORD_FILE",
                           "MERCATO_KAFKA_SASL_MECHANISM", "MERCATO_KAFKA_SECURITY_PROTOCOL", "MERCATO_KAFKA_SSL_CA_FILE" };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        unsetenv(vars[i]);
}

static void
test_plaintext_without_a_user(void)
{
    s_clear();
    char err[256], v[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), 0);
    ASSERT_STR(s_get(conf, "security.protocol", v, sizeof v), "plaintext");
    rd_kafka_conf_destroy(conf);
}

static void
test_scram_with_a_user(void)
{
    s_clear();
    setenv("MERCATO_KAFKA_SASL_USERNAME", "relay", 1);
    setenv("MERCATO_KAFKA_SASL_PASSWORD", "dev-only", 1);
    char err[256], v[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), 0);
    ASSERT_STR(s_get(conf, "security.protocol", v, sizeof v), "sasl_plaintext");
    ASSERT_STR(s_get(conf, "sasl.mechanisms", v, sizeof v), "SCRAM-SHA-512");
    ASSERT_STR(s_get(conf, "sasl.username", v, sizeof v), "relay");
    ASSERT_STR(s_get(conf, "sasl.password", v, sizeof v), "dev-only");
    rd_kafka_conf_destroy(conf);

    //  the password from a file (a Docker secret), which wins; another mechanism and TLS
    char path[] = "/tmp/mc-kafka-test-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_EQ(write(fd, "from-file\nsecond line\n", 22), 22);
    close(fd);
    setenv("MERCATO_KAFKA_SASL_PASSWORD_FILE", path, 1);
    setenv("MERCATO_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256", 1);
    setenv("MERCATO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL", 1);
    conf = rd_kafka_conf_new();
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), 0);
    ASSERT_STR(s_get(conf, "sasl.password", v, sizeof v), "from-file");
    ASSERT_STR(s_get(conf, "sasl.mechanisms", v, sizeof v), "SCRAM-SHA-256");
    ASSERT_STR(s_get(conf, "security.protocol", v, sizeof v), "sasl_ssl");
    rd_kafka_conf_destroy(conf);
    unlink(path);
}

static void
test_refusals(void)
{
    char err[256];
    s_clear();
    setenv("MERCATO_KAFKA_SASL_USERNAME", "relay", 1);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), -1);
    MC_CHECK(strstr(err, "without a password"));
    setenv("MERCATO_KAFKA_SASL_PASSWORD_FILE", "/nonexistent/mercato", 1);
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), -1);
    MC_CHECK(strstr(err, "cannot read MERCATO_KAFKA_SASL_PASSWORD_FILE"));
    s_clear();
    setenv("MERCATO_KAFKA_SECURITY_PROTOCOL", "carrier-pigeon", 1);
    ASSERT_EQ(mc_kafka_conf_security(conf, err, sizeof err), -1);
    rd_kafka_conf_destroy(conf);
    s_clear();
}

int
main(void)
{
    MC_TEST_RUN(test_plaintext_without_a_user);
    MC_TEST_RUN(test_scram_with_a_user);
    MC_TEST_RUN(test_refusals);
    return MC_TEST_DONE();
}
