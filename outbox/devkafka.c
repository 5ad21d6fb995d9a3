/*  mercato-kafka-dev: an embedded Kafka for development and tests, librdkafka's mock cluster.

    usage: mercato-kafka-dev [--bootstrap-file FILE] [--partitions N]
    It speaks the Kafka protocol on a random loopback port (the mock cannot choose one), keeps
    every record in memory only, and drops the oldest data past ~5 MiB per partition: it is for
    development, never for production, where MERCATO_KAFKA_BROKERS points at real Kafka. It
    creates the topics of CONTRACT §8 at start and writes its bootstrap address to FILE. */
#include "mc_config.h"
#include "mc_log.h"

#include <czmq.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static const char *s_topics[] = { "product.events", "inventory.events", "order.events",
                                  "payment.events", "user.events", "shipping.events" };

int
main(int argc, char **argv)
{
    mc_log_init("kafka-dev");
    const char *file = NULL;
    int partitions = 4;
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--bootstrap-file") && i + 1 < argc)
            file = argv[++i];
        else
        if (streq(argv[i], "--partitions") && i + 1 < argc)
            partitions = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mercato-kafka-dev [--bootstrap-file FILE] [--partitions N]\n");
            return 2;
        }
    }
    mc_config_signals();
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        mc_error("cannot create the kafka handle", NULL);
        return 1;
    }
    rd_kafka_mock_cluster_t *cluster = rd_kafka_mock_cluster_new(rk, 1);
    if (!cluster) {
        mc_error("cannot start the mock cluster", NULL);
        return 1;
    }
    for (size_t i = 0; i < sizeof s_topics / sizeof *s_topics; i++)
        rd_kafka_mock_topic_create(cluster, s_topics[i], partitions, 1);
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
    //  the data directory may not exist yet on a first start
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", file ? file : "");
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        mc_config_mkdirs(dir);
    }
    if (file && mc_config_write_file(file, bootstrap)) {
        mc_error("cannot write the bootstrap file", NULL);
        return 1;
    }
    mc_info("development kafka up (in memory only)", "\"bootstrap\":\"%s\"", bootstrap);
    printf("Kafka bootstrap: %s\n", bootstrap);
    fflush(stdout);
    while (!zsys_interrupted)
        zclock_sleep(100);
    mc_info("development kafka stopping", NULL);
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 0;
}
