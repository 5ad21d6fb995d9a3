/*  mailer: the node thread that hands mails to an SMTP server, so that no actor handler ever
    waits on the network.

    It is a worker of the broker protocol (schemas/broker-protocol.md) serving "mailer.0", with
    one message, mail.send (schemas/notifications.json), which only the runtime's role "system"
    may send. The notifications actor asks it once the attempt is committed; it answers
    200 {outcome: "sent"} once the server has taken the mail, 200 {outcome: "logged"} when
    MERCATO_SMTP_URL is unset (it logs the recipient and subject, nothing else), 502 when the
    server failed or did not answer within 20 s, and 422 for a mail no server could take.

    Transfers run concurrently on libcurl's multi interface, driven from the same poll as the
    broker socket, so heartbeats go on while a server is slow. The mailer keeps no state: what
    was sent is the notification actor's record, and a mail sent twice after a crash carries
    the same Message-ID.

    Configuration: MERCATO_SMTP_URL (smtp:// or smtps://, credentials in the URL when the
    server wants them), MERCATO_SMTP_FROM (the sender address, default noreply@mercato.local). */
#ifndef MAILER_H
#define MAILER_H

#include "mc_msgpack.h"

#include <czmq.h>

typedef struct {
    const char *broker;         //  broker endpoint
    const char *node_id;        //  this node's name, announced to the broker
} mailer_args_t;

//  zactor body: serves mailer.0 until $TERM.
void mailer_actor(zsock_t *pipe, void *args);

//  Appends the RFC 5322 message to out: headers (From "Mercato <from>", To, Subject, Date of
//  date_ms, Message-ID, MIME plain text in UTF-8) and text with CRLF line ends. A subject that
//  is not ASCII is sent as RFC 2047 encoded words; line breaks in it become spaces.
void mailer_message(msgpack_sbuffer *out, const char *from, mc_str_t to, mc_str_t subject, mc_str_t message_id,
                    mc_str_t text, uint64_t date_ms);

#endif
