/*  mercato-broker: routes requests between the edge and actor nodes.

    usage: mercato-broker [--bind ENDPOINT[,ENDPOINT...]] [--endpoint-file FILE]
    ENDPOINT defaults to $MERCATO_BROKER_ENDPOINT, else tcp://127.0.0.1:5570. The endpoint file
    receives the first one, with its port resolved. */
#include "mc_broker.h"
#include "mc_config.h"
#include "mc_log.h"

int
main(int argc, char **argv)
{
    mc_log_init("broker");
    const char *bind = mc_config_env("MERCATO_BROKER_ENDPOINT", MC_DEFAULT_BROKER);
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--bind") && i + 1 < argc)
            bind = argv[++i];
        else
        if (streq(argv[i], "--endpoint-file") && i + 1 < argc)
            file = argv[++i];
        else {
            fprintf(stderr, "usage: mercato-broker [--bind ENDPOINT] [--endpoint-file FILE]\n");
            return 2;
        }
    }
    zsys_init();
    zsys_set_logstream(stderr);
    zsys_handler_set(NULL);
    mc_config_signals();
    mc_broker_t *broker = mc_broker_new(bind);
    if (!broker)
        return 1;
    if (file && mc_config_write_file(file, mc_broker_endpoint(broker)))
        return 1;
    mc_info("broker listening", "\"endpoint\":\"%s\"", mc_broker_endpoint(broker));
    mc_broker_run(broker, NULL);
    mc_info("broker stopping", NULL);
    mc_broker_destroy(&broker);
    return 0;
}
