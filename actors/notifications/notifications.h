/*  notifications: email notifications for events worth telling someone about (CONTRACT §7).

    The node's consumer feeds user.events, order.events, payment.events, inventory.events and
    shipping.events to this service as notification.event messages. An event of a type that
    mails someone is recorded as processed (by its event id, in the transaction of its effect,
    so a redelivery changes nothing) and becomes one notification per recipient: its subject and
    plain-text body are rendered from the event's data there and then (notifications_render.c).

    Everything after that is a durable state machine in this actor's environment, moved on by
    replies (notification.step) and the clock (notification.tick):

      lookup  ──identity answers──▶  waiting  ──tick: attempt n──▶  sending  ──mailer: sent──▶  sent | logged
      (who?)   user.contact           (due at)  (attempts = n,       (until      ──mailer: failed──▶ waiting,
                                                 then mail.send)      answered)      backoff · 2^(n-1)
                                                                                  ... after the last attempt: failed

    A user's own events name the user, and identity (user.contact) names the address; a
    low-stock alert goes to every admin (user.admins), one notification each. An attempt is
    committed (attempts + 1) before its mail.send leaves, so a crash between the two costs an
    attempt, never a silent send; a crash after the mailer sent but before its answer was
    recorded sends again, with the same Message-ID (<event_id@mercato>, <event_id.N@mercato> for
    the N-th admin), which is the one duplicate at-least-once delivery cannot rule out. The
    mailer (mailer.h) is the node thread that talks SMTP, so no handler ever waits on the
    network.

    Configuration: MERCATO_SMTP_RETRY_MS (first backoff, default 1000; it doubles up to 5
    minutes) and MERCATO_SMTP_ATTEMPTS (default 10). */
#ifndef NOTIFICATIONS_H
#define NOTIFICATIONS_H

#include "mc_actor.h"

extern const mc_service_t notifications_service;

#endif
