#include "edge_card.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

bool
edge_card_luhn(const char *digits, size_t n)
{
    unsigned sum = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned) (digits[n - 1 - i] - '0');
        if (i % 2 == 1)
            d = d * 2 > 9 ? d * 2 - 9 : d * 2;
        sum += d;
    }
    return n > 0 && sum % 10 == 0;
}

static bool
s_prefix(const char *digits, int from, int to, int len)
{
    int v = 0;
    for (int i = 0; i < len; i++)
        v = v * 10 + (digits[i] - '0');
    return v >= from && v <= to;
}

static const char *
s_brand(const char *d, size_t n)
{
    if (d[0] == '4')
        return "visa";
    if (s_prefix(d, 51, 55, 2) || s_prefix(d, 2221, 2720, 4))
        return "mastercard";
    if (n == 15 && (s_prefix(d, 34, 34, 2) || s_prefix(d, 37, 37, 2)))
        return "amex";
    if (s_prefix(d, 6011, 6011, 4) || s_prefix(d, 65, 65, 2) || s_prefix(d, 644, 649, 3))
        return "discover";
    if (s_prefix(d, 3528, 3589, 4))
        return "jcb";
    if (s_prefix(d, 300, 305, 3) || s_prefix(d, 36, 36, 2) || s_prefix(d, 38, 39, 2))
        return "diners";
    return "unknown";
}

int
edge_card_read(const msgpack_object *card, uint64_t now_ms, edge_card_t *out, mc_errors_t *errs)
{
    memset(out, 0, sizeof *out);
    int before = errs->count;
    mc_str_t number = { "", 0 }, cvc = { "", 0 };
    int64_t month = 0, year = 0;
    mc_map_str(card, "number", &number);
    mc_map_str(card, "cvc", &cvc);
    mc_map_int(card, "exp_month", &month);
    mc_map_int(card, "exp_year", &year);
    char digits[20];
    size_t n = 0;
    bool clean = true;
    for (size_t i = 0; i < number.len && clean; i++) {
        char c = number.ptr[i];
        if (c >= '0' && c <= '9' && n < sizeof digits - 1)
            digits[n++] = c;
        else
        if (!((c == ' ' || c == '-') && n > 0 && i + 1 < number.len))
            clean = false;
    }
    if (!clean || n < 12 || n > 19)
        mc_errors_add(errs, "card.number", "must be 12 to 19 digits");
    else
    if (!(out->luhn = edge_card_luhn(digits, n)))
        mc_errors_add(errs, "card.number", "is not a valid card number (Luhn check)");
    bool cvc_ok = cvc.len == 3 || cvc.len == 4;
    for (size_t i = 0; i < cvc.len && cvc_ok; i++)
        cvc_ok = cvc.ptr[i] >= '0' && cvc.ptr[i] <= '9';
    if (!(out->cvc_ok = cvc_ok))
        mc_errors_add(errs, "card.cvc", "must be 3 or 4 digits");
    if (month < 1 || month > 12)
        mc_errors_add(errs, "card.exp_month", "must be 1 to 12");
    out->exp_month = month;
    out->exp_year = year;
    if (year >= 0 && year < 100)
        year += 2000;
    time_t t = (time_t) (now_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    int64_t now_month = (int64_t) (tm.tm_year + 1900) * 12 + tm.tm_mon;
    if (month >= 1 && month <= 12 && year * 12 + (month - 1) < now_month)
        mc_errors_add(errs, "card.exp_year", "the card has expired");
    else
    if (year > (int64_t) tm.tm_year + 1900 + 50)
        mc_errors_add(errs, "card.exp_year", "is too far in the future");
    if (errs->count != before) {
        OPENSSL_cleanse(digits, sizeof digits);
        return -1;
    }
    digits[n] = 0;
    snprintf(out->brand, sizeof out->brand, "%s", s_brand(digits, n));
    memcpy(out->last4, digits + n - 4, 4);
    //  the gateway's test cards (CONTRACT §7); every other valid number is approved
    out->outcome = strcmp(digits, "4000000000000002") == 0 ? "card_declined"
                 : strcmp(digits, "4000000000009995") == 0 ? "insufficient_funds" : "approved";
    //  no copy of the number stays behind on the stack (a plain memset may be optimised away)
    OPENSSL_cleanse(digits, sizeof digits);
    return 0;
}

void
edge_card_pack(msgpack_packer *pk, const edge_card_t *card)
{
    msgpack_pack_map(pk, 7);
    mc_pack_kv_int(pk, "exp_month", card->exp_month);
    mc_pack_kv_int(pk, "exp_year", card->exp_year);
    mc_pack_kv_cstr(pk, "brand", card->brand);
    mc_pack_kv_cstr(pk, "last4", card->last4);
    mc_pack_kv_bool(pk, "luhn", card->luhn);
    mc_pack_kv_bool(pk, "cvc_ok", card->cvc_ok);
    mc_pack_kv_cstr(pk, "outcome", card->outcome);
}

void
edge_card_flow(edge_req_t *q, mc_str_t body)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    edge_card_t card;
    mc_errors_t errs = { 0 };
    if (mc_msgpack_unpack(&u, body.ptr, body.len) || u.data.type != MSGPACK_OBJECT_MAP)
        edge_problem(q->r, 400, "malformed_json", "the body must be a JSON object", NULL, NULL);
    else
    if (edge_card_read(mc_map_get(&u.data, "card"), q->received_ms, &card, &errs))
        edge_request_refuse(q->r, "the card is not valid", &errs);
    else {
        //  the body as validated, its card replaced by what the actor needs
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, u.data.via.map.size);
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            const msgpack_object_kv *kv = &u.data.via.map.ptr[i];
            mc_pack_obj(&pk, &kv->key);
            if (mc_str_eq(mc_obj_str(&kv->key), "card"))
                edge_card_pack(&pk, &card);
            else
                mc_pack_obj(&pk, &kv->val);
        }
        edge_request_forward(q, (mc_str_t) { sb.data, sb.size });
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
}
