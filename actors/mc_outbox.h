/*  mc_outbox: domain events written in the same LMDB transaction as the change they describe.

    Each actor environment has a named database "outbox": key an 8-byte big-endian sequence
    (appended with MDB_APPEND; the last one used is kept in "outbox_seq", so numbers keep rising
    after the relay has emptied the outbox), value one event as a msgpack map:
      id            stable event id, the CloudEvents ce_id: "<message id>-<n>", n counting the
                    events one message caused, so a replayed message makes the same ids
      aggregate     "product", "user"...: the topic is "<aggregate>.events"
      aggregate_id  the Kafka key, which keeps per-aggregate order
      type          "product.created"
      source        CloudEvents source, "/mercato/<service>"
      time          unix ms of the message that caused it
      corr, cause   correlation id (the HTTP request id) and causation id (the message id)
      trace         W3C traceparent, may be empty
      data          the event's data, a map (JSON on Kafka)
    The relay reads the outbox in key order and deletes a record only after Kafka acknowledged it.
    Data never holds secrets: callers pack only public fields. */
#ifndef MC_OUTBOX_H
#define MC_OUTBOX_H

#include "mc_actor.h"

//  Appends an event caused by ctx's message. data is a packed msgpack map. 0 or LMDB error.
int mc_outbox_append(mc_ctx_t *ctx, const char *aggregate, mc_str_t aggregate_id, const char *type,
                     mc_str_t data);

//  Packs up to max events after sequence `after` into out, as one msgpack array in key order.
//  Returns how many, or a negative LMDB error.
long mc_outbox_read(MDB_env *env, MDB_dbi outbox, uint64_t after, size_t max, msgpack_sbuffer *out);

//  Key of a sequence number, and back.
void mc_outbox_key(unsigned char out[8], uint64_t seq);
uint64_t mc_outbox_seq(const MDB_val *key);

#endif
