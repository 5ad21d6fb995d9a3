#include "notifications_render.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define FIELD_MAX 256
#define ITEMS_MAX 100

static void
s_put(msgpack_sbuffer *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_put(msgpack_sbuffer *out, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        msgpack_sbuffer_write(out, line, (size_t) n < sizeof line ? (size_t) n : sizeof line - 1);
}

//  A string member of data as one line of text: control characters (a line break in a name
//  could start a header or end the mail) become spaces; absent is "".
static const char *
s_field(char out[FIELD_MAX], const msgpack_object *data, const char *key)
{
    mc_str_t s = { "", 0 };
    mc_map_str(data, key, &s);
    size_t n = s.len < FIELD_MAX - 1 ? s.len : FIELD_MAX - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (unsigned char) s.ptr[i] < 0x20 || s.ptr[i] == 0x7f ? ' ' : s.ptr[i];
    out[n] = 0;
    return out;
}

void
notifications_money(char *out, size_t outsz, int64_t cents, mc_str_t currency)
{
    uint64_t abs = cents < 0 ? (uint64_t) 0 - (uint64_t) cents : (uint64_t) cents;
    if (currency.len != 3)
        currency = MC_STR("USD");
    snprintf(out, outsz, "%.3s %s%" PRIu64 ".%02" PRIu64, currency.ptr, cents < 0 ? "-" : "", abs / 100, abs % 100);
}

static const char *
s_money(char out[48], const msgpack_object *data, const char *key)
{
    int64_t cents = 0;
    mc_str_t currency = { "", 0 };
    mc_map_int(data, key, &cents);
    mc_map_str(data, "currency", &currency);
    notifications_money(out, 48, cents, currency);
    return out;
}

static void
s_footer(msgpack_sbuffer *text)
{
    s_put(text, "\n-- \nMercato\n");
}

static void
s_registered(const msgpack_object *data, char *subject, msgpack_sbuffer *text)
{
    char name[FIELD_MAX], email[FIELD_MAX];
    snprintf(subject, NOTIFY_SUBJECT_MAX, "Welcome to Mercato");
    s_put(text, "Hello %s,\n\nwelcome to Mercato. Your account for %s is ready: sign in to start shopping.\n",
          s_field(name, data, "name"), s_field(email, data, "email"));
}

//  The lines of an order and its total.
static void
s_order_lines(const msgpack_object *order, msgpack_sbuffer *text)
{
    const msgpack_object *items = mc_map_get(order, "items");
    char money[48];
    s_put(text, "\n");
    for (uint32_t i = 0; items && items->type == MSGPACK_OBJECT_ARRAY && i < items->via.array.size && i < ITEMS_MAX; i++) {
        const msgpack_object *it = &items->via.array.ptr[i];
        char name[FIELD_MAX], sku[FIELD_MAX];
        int64_t quantity = 0, line = 0;
        mc_str_t currency = { "", 0 };
        mc_map_int(it, "quantity", &quantity);
        mc_map_int(it, "line_total_cents", &line);
        mc_map_str(order, "currency", &currency);
        notifications_money(money, sizeof money, line, currency);
        s_put(text, "  %" PRId64 " x %s (%s): %s\n", quantity, s_field(name, it, "name"), s_field(sku, it, "sku"), money);
    }
    s_put(text, "\nTotal: %s\n", s_money(money, order, "total_cents"));
}

static void
s_order(const char *what, const msgpack_object *data, char *subject, msgpack_sbuffer *text)
{
    char id[FIELD_MAX], when[FIELD_MAX];
    s_field(id, data, "id");
    if (strcmp(what, "created") == 0) {
        snprintf(subject, NOTIFY_SUBJECT_MAX, "Your Mercato order %.64s is placed", id);
        s_put(text, "Hello,\n\nthank you for your order %s.\n", id);
        s_order_lines(data, text);
        s_field(when, data, "expires_at");
        if (*when)
            s_put(text, "\nIts items are reserved for you until %s: pay before then, or the order expires.\n", when);
    }
    else
    if (strcmp(what, "shipped") == 0) {
        snprintf(subject, NOTIFY_SUBJECT_MAX, "Your Mercato order %.64s has shipped", id);
        s_put(text, "Hello,\n\nyour order %s is on its way.\n", id);
        s_order_lines(data, text);
    }
    else
    if (strcmp(what, "cancelled") == 0) {
        snprintf(subject, NOTIFY_SUBJECT_MAX, "Your Mercato order %.64s is cancelled", id);
        s_put(text, "Hello,\n\nyour order %s has been cancelled. If you had paid for it, your payment will be refunded.\n", id);
        s_order_lines(data, text);
    }
    else {
        snprintf(subject, NOTIFY_SUBJECT_MAX, "Your Mercato order %.64s has expired", id);
        s_put(text, "Hello,\n\nyour order %s was not paid in time, so it has expired and its items are no longer "
                    "reserved for you.\n", id);
        s_order_lines(data, text);
    }
}

//  "Visa ending in 4242": the brand, and the last four digits only when they are exactly that.
static void
s_card(char out[96], const msgpack_object *data)
{
    static const struct {
        const char *code, *name;
    } brands[] = {
        { "visa", "Visa" }, { "mastercard", "Mastercard" }, { "amex", "American Express" },
        { "discover", "Discover" }, { "jcb", "JCB" }, { "diners", "Diners Club" }, { "unknown", "" },
    };
    char brand[FIELD_MAX];
    mc_str_t last4 = { "", 0 };
    s_field(brand, data, "card_brand");
    for (size_t i = 0; i < sizeof brands / sizeof *brands; i++)
        if (strcasecmp(brand, brands[i].code) == 0)
            snprintf(brand, sizeof brand, "%s", brands[i].name);
    mc_map_str(data, "card_last4", &last4);
    bool digits = last4.len == 4;
    for (size_t i = 0; digits && i < 4; i++)
        digits = last4.ptr[i] >= '0' && last4.ptr[i] <= '9';
    snprintf(out, 96, "%.24s%s%.*s", *brand ? brand : "your card", digits ? " ending in " : "", digits ? 4 : 0,
             last4.ptr);
}

static void
s_payment(bool succeeded, const msgpack_object *data, char *subject, msgpack_sbuffer *text)
{
    char id[FIELD_MAX], order[FIELD_MAX], money[48], card[96];
    s_field(id, data, "id");
    s_field(order, data, "order_id");
    s_money(money, data, "amount_cents");
    s_card(card, data);
    if (succeeded) {
        snprintf(subject, NOTIFY_SUBJECT_MAX, "Payment received for your Mercato order %.64s", order);
        s_put(text, "Hello,\n\nwe have received your payment of %s for order %s, paid with %s.\n"
                    "Payment reference: %s\n", money, order, card, id);
        return;
    }
    char code[FIELD_MAX];
    s_field(code, data, "decline_code");
    const char *why = strcmp(code, "insufficient_funds") == 0 ? "the card has insufficient funds"
                    : strcmp(code, "card_declined") == 0 || !*code ? "the card was declined" : code;
    snprintf(subject, NOTIFY_SUBJECT_MAX, "Payment declined for your Mercato order %.64s", order);
    s_put(text, "Hello,\n\nyour payment of %s for order %s with %s was declined: %s.\n"
                "The order still waits for payment; you can pay with another card before it expires.\n"
                "Payment reference: %s\n", money, order, card, why, id);
}

static void
s_low_stock(const msgpack_object *data, char *subject, msgpack_sbuffer *text)
{
    char product[FIELD_MAX];
    int64_t on_hand = 0, available = 0, threshold = 0;
    s_field(product, data, "product_id");
    mc_map_int(data, "on_hand", &on_hand);
    mc_map_int(data, "available", &available);
    mc_map_int(data, "low_stock_threshold", &threshold);
    snprintf(subject, NOTIFY_SUBJECT_MAX, "Low stock: product %.64s", product);
    s_put(text, "Hello,\n\nproduct %s is running low: %" PRId64 " available to sell (%" PRId64 " on hand), at or "
                "below its low-stock threshold of %" PRId64 ".\nRestock it with an adjustment: POST "
                "/api/v1/inventory/%s/adjustments.\n", product, available, on_hand, threshold, product);
}

static void
s_test(const msgpack_object *data, char *subject, msgpack_sbuffer *text)
{
    (void) data;
    snprintf(subject, NOTIFY_SUBJECT_MAX, "Mercato test message");
    s_put(text, "Hello,\n\nthis is a test message from Mercato. If you can read it, mail delivery works.\n");
}

static void s_created(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_order("created", d, s, t); }
static void s_shipped(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_order("shipped", d, s, t); }
static void s_cancelled(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_order("cancelled", d, s, t); }
static void s_expired(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_order("expired", d, s, t); }
static void s_paid(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_payment(true, d, s, t); }
static void s_declined(const msgpack_object *d, char *s, msgpack_sbuffer *t) { s_payment(false, d, s, t); }

//  Every event that mails someone; notification.test is the admin's test mail, never an event.
static const struct {
    const char *type;
    notify_audience_t audience;
    void (*render)(const msgpack_object *data, char *subject, msgpack_sbuffer *text);
} s_mails[] = {
    { "user.registered", NOTIFY_REGISTERED, s_registered },
    { "order.created", NOTIFY_USER, s_created },
    { "payment.succeeded", NOTIFY_USER, s_paid },
    { "payment.declined", NOTIFY_USER, s_declined },
    { "order.shipped", NOTIFY_USER, s_shipped },
    { "order.cancelled", NOTIFY_USER, s_cancelled },
    { "order.expired", NOTIFY_USER, s_expired },
    { "inventory.low_stock", NOTIFY_ADMINS, s_low_stock },
    { "notification.test", NOTIFY_NOBODY, s_test },
};
#define MAILS (sizeof s_mails / sizeof *s_mails)

notify_audience_t
notifications_audience(mc_str_t type)
{
    for (size_t i = 0; i < MAILS; i++)
        if (mc_str_eq(type, s_mails[i].type))
            return s_mails[i].audience;
    return NOTIFY_NOBODY;
}

bool
notifications_render(mc_str_t type, const msgpack_object *data, char subject[NOTIFY_SUBJECT_MAX], msgpack_sbuffer *text)
{
    for (size_t i = 0; i < MAILS; i++)
        if (mc_str_eq(type, s_mails[i].type)) {
            size_t from = text->size;
            s_mails[i].render(data, subject, text);
            s_footer(text);
            notifications_mask_pan(subject, strlen(subject));
            notifications_mask_pan(text->data + from, text->size - from);
            return true;
        }
    return false;
}

//  The Luhn check over the n digits of s[from, to).
static bool
s_luhn(const char *s, size_t from, size_t to)
{
    unsigned sum = 0, i = 0;
    for (size_t k = to; k-- > from;)
        if (s[k] >= '0' && s[k] <= '9') {
            unsigned d = (unsigned) (s[k] - '0');
            if (i++ % 2) {
                d *= 2;
                if (d > 9)
                    d -= 9;
            }
            sum += d;
        }
    return sum % 10 == 0;
}

void
notifications_mask_pan(char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        if (s[i] < '0' || s[i] > '9') {
            i++;
            continue;
        }
        //  a run of digits, with at most one space or dash between two of them
        size_t n = 0, j = i;
        while (j < len) {
            if (s[j] >= '0' && s[j] <= '9') {
                n++;
                j++;
            }
            else
            if ((s[j] == ' ' || s[j] == '-') && j + 1 < len && s[j + 1] >= '0' && s[j + 1] <= '9')
                j++;
            else
                break;
        }
        //  longer runs cannot be told from a card number with something glued to it
        if (n > 19 || (n >= 13 && s_luhn(s, i, j)))
            for (size_t k = i, seen = 0; k < j && seen + 4 < n; k++)
                if (s[k] >= '0' && s[k] <= '9') {
                    s[k] = '*';
                    seen++;
                }
        i = j;
    }
}
