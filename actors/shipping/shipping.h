/*  shipping: one shipment per paid order (CONTRACT §7), keyed by order id.

    State, one LMDB environment (see shipping_db.h for the databases). A shipment is born
    scheduled from the order.paid event on Kafka (once: redeliveries are deduplicated by event
    id, and an order never gets a second shipment), with a carrier and a tracking number derived
    from the order id. An admin moves it on, one way only:

      scheduled -> in_transit -> delivered

    and the order follows (shipped, delivered): the move is recorded, order.advance goes to the
    order service, and only its 200 applies the move and answers the admin; its refusal (the
    order was cancelled, say) drops the move and answers 409. Each change emits
    shipment.scheduled or shipment.updated (topic shipping.events, key the order id) in its own
    transaction. */
#ifndef SHIPPING_H
#define SHIPPING_H

#include "mc_actor.h"

extern const mc_service_t shipping_service;

#endif
