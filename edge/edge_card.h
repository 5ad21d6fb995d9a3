/*  edge_card: the card of POST /api/v1/payments, read at the edge so that its number and CVC
    never cross the internal plane (CONTRACT §11).

    The number and the CVC live only in the HTTP request being handled. The edge judges them
    (digits, Luhn, CVC, month, expiry against the request's time) and answers 422 itself;
    a valid card travels to the payments actor as what it needs and may keep:

        card: {exp_month, exp_year, brand, last4, luhn: true, cvc_ok: true, outcome}

    exp_month and exp_year are the client's (a two-digit year stays two digits: the
    Idempotency-Key record hashes what was sent); outcome is the simulated gateway's verdict
    (CONTRACT §7): "approved", "card_declined" or "insufficient_funds". */
#ifndef EDGE_CARD_H
#define EDGE_CARD_H

#include "edge_request.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char brand[16];         //  "visa", "mastercard", "amex", "discover", "jcb", "diners", "unknown"
    char last4[5];          //  the number's last 4 digits
    int64_t exp_month;      //  1 to 12, as sent
    int64_t exp_year;       //  as sent: four digits, or two for 20xx
    bool luhn;              //  the number passed the Luhn check
    bool cvc_ok;            //  the CVC was 3 or 4 digits
    const char *outcome;    //  "approved", "card_declined" or "insufficient_funds"
} edge_card_t;

/*  Reads the card member of a payment request (a map with number, cvc, exp_month and exp_year)
    at time now_ms (UTC months): 12 to 19 digits (spaces and dashes allowed between them), Luhn,
    a 3 or 4 digit CVC, a month 1 to 12 and an expiry not before the current month nor more than
    50 years ahead (two-digit years are 20xx).
    Returns 0 and fills out when the card is valid; -1 with the complaints added to errs under
    "card.<field>" (they never quote the number) otherwise. No copy of the number or the CVC
    stays in out or on the stack. */
int edge_card_read(const msgpack_object *card, uint64_t now_ms, edge_card_t *out, mc_errors_t *errs);

//  Packs card as the message's card member (the map above; the caller has packed the key).
void edge_card_pack(msgpack_packer *pk, const edge_card_t *card);

//  True when digits (n of them, '0' to '9') pass the Luhn check; false for n == 0.
bool edge_card_luhn(const char *digits, size_t n);

/*  The card flow of POST /api/v1/payments: body is the client's validated body as a msgpack
    map. Answers 422 (validation_failed, "the card is not valid") for a card edge_card_read
    refuses; otherwise sends payment.create with the card replaced by what edge_card_pack
    writes, and answers with the actor's reply. */
void edge_card_flow(edge_req_t *q, mc_str_t body);

#endif
