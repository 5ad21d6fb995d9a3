/*  mc_consumer: feeds a Kafka topic to an actor service, the way an outside team would consume.

    A consumer group per service reads its topics; each record becomes one message to the shard
    of the service that owns the record's key, through the broker, with the body
    {event_id, type, key, data}: the CloudEvent's id and type, the Kafka key (the aggregate id)
    and the record's JSON value as a map. The envelope id is the event's ce_id too, so the actor
    deduplicates redeliveries by it in the same transaction as their effect. The offset is committed only after the actor
    has answered 200: a crash at any point means a redelivery, never a loss. A record that cannot
    be understood (no ce_id, not JSON) is logged, counted and skipped. */
#ifndef MC_CONSUMER_H
#define MC_CONSUMER_H

#include <czmq.h>

typedef struct {
    const char *service;        //  "inventory": messages go to "<service>.<shard>"
    unsigned shards;            //  the service's shard count
    const char *topics;         //  "product.events", or several: "order.events,user.events"
    const char *message_type;   //  "stock.event"
    const char *data_dir;       //  where kafka.bootstrap is, when MERCATO_KAFKA_BROKERS is unset
    const char *broker;         //  broker endpoint
} mc_consumer_args_t;

//  zactor body.
void mc_consumer(zsock_t *pipe, void *args);

#endif
