/*  mercato-broker: the directory: which node owns each shard (schemas/broker-protocol.md).

    usage: mercato-broker [--bind ENDPOINT[,ENDPOINT...]] [--endpoint-file FILE] [--keys DIR] [--data DIR]
    ENDPOINT defaults to $MERCATO_BROKER_ENDPOINT, else tcp://127.0.0.1:5570. The endpoint file
    receives the first one, with its port resolved. DIR is the plane's key folder (mc_plane.h),
    default $MERCATO_KEYS_DIR or $MERCATO_DATA_DIR/plane: without it the broker does not start.
    The directory's table is kept in DIR (default $MERCATO_DATA_DIR/broker). */
#include "mc_broker.h"
#include "mc_config.h"
#include "mc_log.h"
#include "mc_plane.h"

int
main(int argc, char **argv)
{
    mc_log_init("broker");
    const char *bind = mc_config_env("MERCATO_BROKER_ENDPOINT", MC_DEFAULT_BROKER);
    const char *file = NULL;
    const char *keys = mc_plane_dir(NULL);
    char data[4096];
    snprintf(data, sizeof data, "%s/broker", mc_config_env("MERCATO_DATA_DIR", "./data"));
    const char *dirpath = data;
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--bind") && i + 1 < argc)
            bind = argv[++i];
        else
        if (streq(argv[i], "--endpoint-file") && i + 1 < argc)
            file = argv[++i];
        else
        if (streq(argv[i], "--keys") && i + 1 < argc)
            keys = argv[++i];
        else
        if (streq(argv[i], "--data") && i + 1 < argc)
            dirpath = argv[++i];
        else {
            fprintf(stderr, "usage: mercato-broker [--bind ENDPOINT] [--endpoint-file FILE] [--keys DIR] [--data DIR]\n");
            return 2;
        }
    }
    zsys_init();
    zsys_set_logstream(stderr);
    zsys_handler_set(NULL);
    mc_config_signals();
    if (mc_plane_init(keys, "broker", true))
        return 1;
    mc_broker_t *broker = mc_broker_new(bind, dirpath);
    if (!broker) {
        mc_plane_shutdown();
        return 1;
    }
    if (file && mc_config_write_file(file, mc_broker_endpoint(broker)))
        return 1;
    mc_info("broker listening", "\"endpoint\":\"%s\"", mc_broker_endpoint(broker));
    mc_broker_run(broker, NULL);
    mc_info("broker stopping", NULL);
    mc_broker_destroy(&broker);
    mc_plane_shutdown();
    return 0;
}
