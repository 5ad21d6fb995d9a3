/*  mc_kafka: how every Mercato Kafka client (the relay's producer, the nodes' consumers) reaches
    a Kafka that asks who it is.

    From the environment (README, Configuration):
      MERCATO_KAFKA_SASL_USERNAME        a SASL user; unset: no authentication (the development
                                         Kafka, or a cluster that needs none)
      MERCATO_KAFKA_SASL_PASSWORD        its password, or
      MERCATO_KAFKA_SASL_PASSWORD_FILE   a file holding it (a Docker secret), first line only
      MERCATO_KAFKA_SASL_MECHANISM       default SCRAM-SHA-512
      MERCATO_KAFKA_SECURITY_PROTOCOL    default SASL_PLAINTEXT with a user, else PLAINTEXT;
                                         SASL_SSL or SSL for TLS
      MERCATO_KAFKA_SSL_CA_FILE          the CA bundle that signed the brokers' certificates
    The password is never logged. */
#ifndef MC_KAFKA_H
#define MC_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

//  Sets conf's security properties from the environment. Returns 0, or -1 with the reason in
//  err: a property librdkafka refuses, a user without a password, an unreadable password file.
int mc_kafka_conf_security(rd_kafka_conf_t *conf, char *err, size_t errsz);

#endif
