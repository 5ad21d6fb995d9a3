/*  mercato-relay: the outbox relay (see relay.h).

    usage: mercato-relay [--data DIR] [--brokers LIST | --bootstrap-file FILE]
           mercato-relay --redrive [--data DIR]
    Brokers default to $MERCATO_KAFKA_BROKERS, else the file $MERCATO_DATA_DIR/kafka.bootstrap
    that the development Kafka writes. The relay signs every record with events.key of the
    cluster's key folder ($MERCATO_KEYS_DIR, else DIR/plane; mercato-keys makes it) and will not
    start without it. */
#include "mc_config.h"
#include "mc_event_sign.h"
#include "mc_log.h"
#include "mc_plane.h"
#include "relay.h"

#include <czmq.h>

int
main(int argc, char **argv)
{
    mc_log_init("relay");
    const char *data = mc_config_env("MERCATO_DATA_DIR", "./data");
    const char *brokers = mc_config_env("MERCATO_KAFKA_BROKERS", NULL);
    const char *file = NULL;
    bool redrive = false;
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else
        if (streq(argv[i], "--brokers") && i + 1 < argc)
            brokers = argv[++i];
        else
        if (streq(argv[i], "--bootstrap-file") && i + 1 < argc) {
            file = argv[++i];
            brokers = NULL;
        }
        else
        if (streq(argv[i], "--redrive"))
            redrive = true;
        else {
            fprintf(stderr, "usage: mercato-relay [--data DIR] [--brokers LIST | --bootstrap-file FILE] [--redrive]\n");
            return 2;
        }
    }
    if (redrive) {
        long n = relay_redrive(data);
        printf("%ld dead-lettered event(s) back in their outbox\n", n);
        return n < 0 ? 1 : 0;
    }
    char keys[4200], err[512];
    snprintf(keys, sizeof keys, "%s", mc_plane_dir(data));
    mc_event_signer_t *signer = mc_event_signer_new(keys, err, sizeof err);
    if (!signer) {
        //  an unsigned record would be refused by every consumer: do not produce any
        char why[600];
        mc_error("no event signing key, not starting", "\"reason\":\"%s\"", mc_log_escape(why, sizeof why, err, strlen(err)));
        fprintf(stderr, "mercato-relay: %s\n", err);
        return 1;
    }
    char fallback[4096];
    if (!brokers && !file) {
        snprintf(fallback, sizeof fallback, "%s/kafka.bootstrap", data);
        file = fallback;
    }
    zsys_init();
    zsys_handler_set(NULL);
    mc_config_signals();
    relay_t *relay = relay_new(data, brokers, file, &signer);
    if (!relay)
        return 1;
    mc_info("relay started", "\"data\":\"%s\",\"keys\":\"%s\"", data, keys);
    relay_run(relay);
    mc_info("relay stopping", NULL);
    relay_destroy(&relay);
    return 0;
}
