/*  mercato-node: hosts a set of actors and keeps them running.

    usage: mercato-node [--broker ENDPOINT] [--data DIR] [--actors catalog,...] [--node-id ID]
                        [--keys DIR] [--key NAME]
    Each actor is a thread with its own LMDB environment under DIR/<service>/<shard>/. An actor
    that stops on its own is restarted, one for one, with a doubling backoff. Every connection
    to the broker proves the plane key NAME (default "node") from the key folder (mc_plane.h;
    default $MERCATO_KEYS_DIR or DIR/plane); without it the node does not start. */
#include "mc_actor.h"
#include "mc_consumer.h"
#include "mc_front.h"
#include "mc_dir.h"
#include "mc_config.h"
#include "mc_event_sign.h"
#include "mc_log.h"
#include "mc_plane.h"
#include "mc_schema.h"
#include "mc_util.h"
#include "catalog/catalog.h"
#include "identity/identity.h"
#include "inventory/inventory.h"
#include "orders/orders.h"
#include "cart/cart.h"
#include "payments/payments.h"
#include "shipping/shipping.h"
#include "notifications/mailer.h"
#include "notifications/notifications.h"

#include <unistd.h>

static const mc_service_t *s_services[] = { &catalog_service, &identity_service, &inventory_service,
                                             &orders_service, &cart_service,
                                             &payments_service, &shipping_service, &notifications_service };

//  What each service consumes from Kafka, and the message type a record becomes.
static const struct {
    const char *service, *topics, *message_type;
} s_feeds[] = {
    { "inventory", "product.events", "stock.event" },
    { "payments", "order.events", "payment.event" },
    { "shipping", "order.events", "shipment.event" },
    { "notifications", "user.events,order.events,payment.events,inventory.events,shipping.events", "notification.event" },
};
#define MC_FEEDS (sizeof s_feeds / sizeof *s_feeds)

typedef struct {
    mc_actor_args_t args;       //  how to start it
    zactor_t *actor;            //  running thread, or NULL while it waits for restart
    uint64_t restart_at;        //  mono ms of the next start
    unsigned backoff_ms;        //  next backoff
} child_t;

static const mc_service_t *
s_service(const char *name)
{
    for (size_t i = 0; i < sizeof s_services / sizeof *s_services; i++)
        if (streq(s_services[i]->name, name))
            return s_services[i];
    return NULL;
}

//  The child running shard 0 of a feed's service, where its consumer runs; NULL when none.
static const child_t *
s_feed_host(const child_t *children, size_t count, size_t feed)
{
    for (size_t i = 0; i < count; i++)
        if (streq(children[i].args.service->name, s_feeds[feed].service) && children[i].args.shard == 0)
            return &children[i];
    return NULL;
}

//  The shard counts are fixed when a data directory is made (a key's shard depends on them):
//  the first start records them in DATA/shards, and a start with other counts refuses. A data
//  directory from before the record holds one shard of each service.
static int
s_shards_check(const char *data)
{
    char want[1024], had[1024] = "", path[4200];
    mc_schema_shards_text(want, sizeof want);
    snprintf(path, sizeof path, "%s/shards", data);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(had, sizeof had, f))
            had[0] = 0;
        fclose(f);
        had[strcspn(had, "\n")] = 0;
    }
    else {
        for (size_t i = 0; i < mc_services_count && !*had; i++) {
            char old[4200];
            snprintf(old, sizeof old, "%s/%s/0", data, mc_services[i].name);
            if (access(old, F_OK) == 0) {
                size_t at = 0;
                for (size_t j = 0; j < mc_services_count; j++)
                    at += (size_t) snprintf(had + at, sizeof had - at, "%s%s=1", j ? "," : "", mc_services[j].name);
            }
        }
        if (!*had && (mc_config_mkdirs(data) || mc_config_write_file(path, want))) {
            mc_error("cannot record the shard counts", "\"path\":\"%s\"", path);
            return -1;
        }
        if (!*had)
            return 0;
    }
    if (strcmp(had, want) != 0) {
        mc_error("shard counts differ from the data directory's, not starting",
                 "\"data\":\"%s\",\"recorded\":\"%s\",\"configured\":\"%s\"", data, had, want);
        fprintf(stderr, "mercato-node: %s was made with MERCATO_SHARDS=%s; this process has %s "
                "(a key's shard depends on the counts: start with the recorded ones)\n", data, had, want);
        return -1;
    }
    return 0;
}

//  This node's id: --node-id, else the one recorded in DATA/node.id, made at the first start. A
//  node keeps its id across restarts, so the directory gives it back its own shards.
static const char *
s_node_id(const char *data, const char *given, char *buf, size_t size)
{
    if (given)
        return given;
    char path[4200];
    snprintf(path, sizeof path, "%s/node.id", data);
    FILE *f = fopen(path, "r");
    if (f) {
        bool ok = fgets(buf, (int) size, f) != NULL;
        fclose(f);
        buf[strcspn(buf, "\n")] = 0;
        if (ok && *buf)
            return buf;
    }
    char ulid[MC_ULID_LEN + 1];
    mc_ulid(ulid, mc_now_ms());
    snprintf(buf, size, "node-%.8s", ulid + 18);
    mc_config_write_file(path, buf);
    return buf;
}

//  Where a node's actors, consumers and mailer reach its front.
static const char local[] = "inproc://mercato-front";

int
main(int argc, char **argv)
{
    mc_log_init("node");
    const char *broker = mc_config_env("MERCATO_BROKER_ENDPOINT", MC_DEFAULT_BROKER);
    const char *data = mc_config_env("MERCATO_DATA_DIR", "./data");
    const char *actors = mc_config_env("MERCATO_ACTORS", "catalog,identity,inventory,orders,cart,payments,shipping,notifications");
    char node_id[MC_DIR_NODE_ID_MAX + 1];
    const char *node = NULL;
    const char *keys = NULL, *key = "node";
    const char *bind = mc_config_env("MERCATO_NODE_BIND", "tcp://127.0.0.1:*");
    const char *advertise = getenv("MERCATO_NODE_ADVERTISE");
    for (int i = 1; i < argc; i++) {
        if (streq(argv[i], "--broker") && i + 1 < argc)
            broker = argv[++i];
        else
        if (streq(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else
        if (streq(argv[i], "--actors") && i + 1 < argc)
            actors = argv[++i];
        else
        if (streq(argv[i], "--node-id") && i + 1 < argc)
            node = argv[++i];
        else
        if (streq(argv[i], "--keys") && i + 1 < argc)
            keys = argv[++i];
        else
        if (streq(argv[i], "--key") && i + 1 < argc)
            key = argv[++i];
        else
        if (streq(argv[i], "--bind") && i + 1 < argc)
            bind = argv[++i];
        else
        if (streq(argv[i], "--advertise") && i + 1 < argc)
            advertise = argv[++i];
        else {
            fprintf(stderr, "usage: mercato-node [--broker ENDPOINT] [--data DIR] [--actors LIST] [--node-id ID] [--keys DIR] [--key NAME] [--bind ENDPOINT] [--advertise ENDPOINT]\n");
            return 2;
        }
    }
    zsys_init();
    zsys_set_logstream(stderr);
    zsys_handler_set(NULL);
    mc_config_signals();
    if (mc_plane_init(keys ? keys : mc_plane_dir(data), key, false) || mc_plane_serve(keys ? keys : mc_plane_dir(data)))
        return 1;
    if (s_shards_check(data))
        return 1;
    node = s_node_id(data, node, node_id, sizeof node_id);
    size_t map_max = (size_t) mc_config_env_long("MERCATO_LMDB_MAP_MAX_MB", 65536, 64, 1L << 24) << 20;

    //  every shard of every service, at most
    enum { CHILDREN_MAX = 8 * MC_SHARDS_MAX };
    static child_t children[CHILDREN_MAX];
    size_t count = 0;
    char *list = strdup(actors), *save = NULL;
    for (char *name = strtok_r(list, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
        //  "inventory:3" is shard 3; "inventory" is every shard it has (mc_schema_shards)
        char *colon = strchr(name, ':');
        unsigned first = colon ? (unsigned) atoi(colon + 1) : 0;
        if (colon)
            *colon = 0;
        const mc_service_t *svc = s_service(name);
        unsigned last = colon ? first : mc_schema_shards(name) - 1;
        if (!svc) {
            mc_error("unknown actor", "\"name\":\"%s\"", name);
            return 2;
        }
        for (unsigned shard = first; shard <= last; shard++) {
            if (count == CHILDREN_MAX) {
                mc_error("too many actors", "\"max\":%d", CHILDREN_MAX);
                return 2;
            }
            children[count++] = (child_t) {
                .args = { .service = svc, .shard = shard, .data_dir = data, .broker = local,
                          .node_id = node, .map_max = map_max },
                .backoff_ms = 100 };
        }
    }
    //  a node that consumes Kafka must tell our relay's records from forged ones: without the
    //  relay's public key it would have to act on anything, so it does not start
    char events_dir[4200], err[512];
    snprintf(events_dir, sizeof events_dir, "%s", keys ? keys : mc_plane_dir(data));
    bool consumes = false;
    for (size_t f = 0; f < MC_FEEDS; f++)
        consumes = consumes || s_feed_host(children, count, f);
    mc_event_verifier_t *verifier = consumes ? mc_event_verifier_new(events_dir, err, sizeof err) : NULL;
    if (consumes && !verifier) {
        char why[600];
        mc_error("no event public key, not starting", "\"reason\":\"%s\"", mc_log_escape(why, sizeof why, err, strlen(err)));
        fprintf(stderr, "mercato-node: %s\n", err);
        mc_plane_shutdown();
        return 1;
    }
    mc_event_verifier_destroy(&verifier);
    //  the node's one door: its actors, consumers and mailer speak to it over inproc
    mc_front_args_t front_args = { .broker = broker, .node_id = node, .bind = bind, .advertise = advertise,
                                   .local = local, .key_name = key };
    zactor_t *front = zactor_new(mc_front, &front_args);
    char *bound = front ? zstr_recv(front) : NULL;
    if (!bound || !*bound) {
        fprintf(stderr, "mercato-node: cannot bind %s\n", bind);
        zstr_free(&bound);
        zactor_destroy(&front);
        mc_plane_shutdown();
        return 1;
    }
    zstr_free(&bound);
    for (size_t i = 0; i < count; i++)
        children[i].actor = zactor_new(mc_actor, &children[i].args);
    //  services that learn from other services' events read them from Kafka like anyone else: one
    //  consumer per service, on the node that runs its shard 0
    zactor_t *consumers[MC_FEEDS] = { NULL };
    mc_consumer_args_t consumer_args[MC_FEEDS];
    size_t nconsumers = 0;
    for (size_t f = 0; f < MC_FEEDS; f++) {
        const child_t *host = s_feed_host(children, count, f);
        if (!host)
            continue;
        consumer_args[nconsumers] = (mc_consumer_args_t) {
            .service = s_feeds[f].service, .shards = mc_schema_shards(s_feeds[f].service),
            .topics = s_feeds[f].topics, .message_type = s_feeds[f].message_type,
            .wants = host->args.service->wants_event,
            .data_dir = data, .keys_dir = events_dir, .broker = local };
        consumers[nconsumers] = zactor_new(mc_consumer, &consumer_args[nconsumers]);
        nconsumers++;
    }
    //  a node with the notifications actor hands its mails to SMTP (mailer.h)
    zactor_t *mailer = NULL;
    mailer_args_t mailer_args = { .broker = local, .node_id = node };
    for (size_t i = 0; i < count && !mailer; i++)
        if (children[i].args.service == &notifications_service)
            mailer = zactor_new(mailer_actor, &mailer_args);
    mc_info("node started", "\"node\":\"%s\",\"broker\":\"%s\",\"actors\":\"%s\"", node, broker, actors);

    while (!zsys_interrupted) {
        zpoller_t *poller = zpoller_new(NULL);
        for (size_t i = 0; i < count; i++)
            if (children[i].actor)
                zpoller_add(poller, children[i].actor);
        zsock_t *which = zpoller_wait(poller, 100);
        zpoller_destroy(&poller);
        uint64_t now = mc_mono_ms();
        for (size_t i = 0; i < count; i++) {
            child_t *c = &children[i];
            if (c->actor && which == zactor_sock(c->actor)) {
                char *msg = zstr_recv(c->actor);
                if (msg && streq(msg, "EXIT")) {
                    mc_error("actor stopped, restarting", "\"service\":\"%s\",\"backoff_ms\":%u",
                             c->args.service->name, c->backoff_ms);
                    zactor_destroy(&c->actor);
                    c->restart_at = now + c->backoff_ms;
                    c->backoff_ms = c->backoff_ms < 5000 ? c->backoff_ms * 2 : 10000;
                }
                free(msg);
            }
            if (!c->actor && now >= c->restart_at)
                c->actor = zactor_new(mc_actor, &c->args);
        }
    }
    mc_info("node stopping", NULL);
    for (size_t i = 0; i < nconsumers; i++)
        zactor_destroy(&consumers[i]);
    zactor_destroy(&mailer);
    //  every actor is told at once and closes its environment in parallel: one after the other,
    //  a hundred shards took longer than a supervisor waits (zactor_destroy then finds each done).
    //  One that has already stopped (it saw the signal too) has no peer to take the message: do
    //  not wait for one.
    for (size_t i = 0; i < count; i++)
        if (children[i].actor) {
            zsock_set_sndtimeo(zactor_sock(children[i].actor), 0);
            zstr_send(children[i].actor, "$TERM");
        }
    for (size_t i = 0; i < count; i++)
        zactor_destroy(&children[i].actor);
    zactor_destroy(&front);
    free(list);
    mc_plane_shutdown();
    return 0;
}
