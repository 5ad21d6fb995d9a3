/*  relay: publishes every actor's outbox to Kafka, in order, at least once.

    It finds the LMDB environments under the data directory (<service>/<shard>/), reads each
    outbox in sequence order and produces every event with an idempotent producer: topic
    "<aggregate>.events", key the aggregate id, value the event data as JSON, CloudEvents 1.0
    binary-mode headers, and the relay's signature over all of them (mc_event_sign.h: headers
    mercato_sig and mercato_kid). A record is deleted only after its delivery report says Kafka
    has it. On a failed delivery the relay waits, then starts again from the oldest undelivered
    record: it never skips one. A record that still fails after RELAY_ATTEMPTS tries, or that cannot be
    encoded at all, moves to the "outbox_dead" database, with a log line and a counter, and
    `mercato-relay --redrive` puts dead records back. Start-up never waits for Kafka. */
#ifndef RELAY_H
#define RELAY_H

#include "mc_event_sign.h"

#define RELAY_ATTEMPTS 5

typedef struct _relay_t relay_t;

//  brokers: a bootstrap list, or NULL to read it from bootstrap_file (re-read when it changes).
//  The relay takes *signer_p (set to NULL); without a signer it produces nothing.
relay_t *relay_new(const char *data_dir, const char *brokers, const char *bootstrap_file,
                   mc_event_signer_t **signer_p);
void relay_destroy(relay_t **self_p);

//  Relays until zsys_interrupted; returns at once when it has no signer.
void relay_run(relay_t *self);

//  Moves every dead-lettered record of every outbox under data_dir back into its outbox.
//  Returns how many, or -1.
long relay_redrive(const char *data_dir);

#endif
