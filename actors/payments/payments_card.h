/*  payments_card: what the simulated gateway decides from a card, without storing it.

    The number and the CVC live only in the request being handled: these functions read them
    and return what may be kept (brand, last 4 digits) and the gateway's verdict. */
#ifndef PAYMENTS_CARD_H
#define PAYMENTS_CARD_H

#include "mc_envelope.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char brand[16];         //  "visa", "mastercard", "amex", "discover", "jcb", "diners", "unknown"
    char last4[5];
    const char *decline;    //  NULL: approved; else "card_declined" or "insufficient_funds"
} payments_card_t;

/*  Checks the card member of a payment request at time now_ms (UTC months): digits (spaces
    and dashes allowed between them), 12 to 19 of them, Luhn, a 3 or 4 digit CVC, a month 1 to
    12 and an expiry not before the current month (two-digit years are 20xx). Complaints go to
    errs under "card.<field>" and never quote the number. Returns 0 and fills out when valid. */
int payments_card_check(const msgpack_object *card, uint64_t now_ms, payments_card_t *out, mc_errors_t *errs);

//  True when digits (n of them) pass the Luhn check.
bool payments_luhn(const char *digits, size_t n);

#endif
