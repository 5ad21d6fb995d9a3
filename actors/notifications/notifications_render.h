/*  notifications_render: which events mail whom, and the plain-text mail each one becomes.

    Rendering reads only named fields of the event's data, so nothing the event carries by
    accident reaches a mail; a payment is told by its card's brand and last four digits alone.
    As a last guard every rendered subject and body is passed through notifications_mask_pan,
    so a card number that arrives in free text (a name, a product) never leaves either. */
#ifndef NOTIFICATIONS_RENDER_H
#define NOTIFICATIONS_RENDER_H

#include "mc_msgpack.h"

#include <stdbool.h>

typedef enum {
    NOTIFY_NOBODY,              //  not an event that mails anyone
    NOTIFY_REGISTERED,          //  the user the event names, at the email it carries
    NOTIFY_USER,                //  the user the event names (data.user_id), at their address
    NOTIFY_ADMINS               //  every admin
} notify_audience_t;

#define NOTIFY_SUBJECT_MAX 200

//  Who an event of type mails.
notify_audience_t notifications_audience(mc_str_t type);

//  Renders the mail for an event of type with data (the event's value, a map): subject gets one
//  line (NUL-terminated, at most NOTIFY_SUBJECT_MAX - 1 bytes), text is appended the body.
//  Returns false for a type that mails nobody.
bool notifications_render(mc_str_t type, const msgpack_object *data, char subject[NOTIFY_SUBJECT_MAX],
                          msgpack_sbuffer *text);

//  Formats integer minor units as "USD 12.34"; out >= 48. currency may be empty (USD).
void notifications_money(char *out, size_t outsz, int64_t cents, mc_str_t currency);

//  Overwrites with '*' all but the last four digits of every run of 13 to 19 digits (single
//  spaces or dashes may separate them) that passes the Luhn check: a card number.
void notifications_mask_pan(char *s, size_t len);

#endif
