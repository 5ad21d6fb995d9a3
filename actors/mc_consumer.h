/*  mc_consumer: feeds a Kafka topic to an actor service, the way an outside team would consume.

    A consumer group per service reads its topics; each record becomes one message to the shard
    of the service that owns the record's key, through the broker, with the body
    {event_id, type, key, data}: the CloudEvent's id and type, the Kafka key (the aggregate id)
    and the record's JSON value as a map. The envelope id is the event's ce_id too, so the actor
    deduplicates redeliveries by it in the same transaction as their effect. A record's offset
    is stored only after the actor has answered 200, and stored offsets are committed in the
    background: a crash at any point means a redelivery, never a loss. A record of a type the
    service does not act on is skipped without a message, so it costs the service nothing (not
    even a processed event id). Every other record must carry our relay's signature over its
    topic, key, value and CloudEvents headers (mc_event_sign.h), checked against the public
    keys in keys_dir before anything in it is parsed: one without (unsigned, an unknown key, a
    signature that does not match, a signed header repeated) is logged as "unauthenticated
    record skipped", counted, and its offset stored, never delivered. A record that cannot be
    understood (no ce_id, not JSON) is logged, counted and skipped too. */
#ifndef MC_CONSUMER_H
#define MC_CONSUMER_H

#include "mc_msgpack.h"

#include <czmq.h>

typedef struct {
    const char *service;        //  "inventory": messages go to "<service>.<shard>"
    unsigned shards;            //  the service's shard count
    const char *topics;         //  "product.events", or several: "order.events,user.events"
    const char *message_type;   //  "stock.event"
    bool (*wants)(mc_str_t type);   //  the event types delivered, or NULL: all
    const char *data_dir;       //  where kafka.bootstrap is, when MERCATO_KAFKA_BROKERS is unset
    const char *keys_dir;       //  the relay's public keys, events*.pub
    const char *broker;         //  broker endpoint
} mc_consumer_args_t;

//  zactor body.
void mc_consumer(zsock_t *pipe, void *args);

#endif
