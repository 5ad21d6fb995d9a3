"""CONTRACT 7 (payments) through HTTP, with the conventions of CONTRACT 2 and the events of 8.

The simulated gateway: 4242424242424242 and every other Luhn-valid number succeed,
4000000000000002 is declined (card_declined), 4000000000009995 too (insufficient_funds);
a Luhn-invalid number, an expired card, a bad cvc or exp_month is 422. A success answers 201 with
the payment and the order becomes paid; a decline answers 402 (a problem naming the recorded
payment in `payment_id`) and the order stays pending_payment. Only the brand and the last 4
digits are kept (test_card_leaks.py scans every file and Kafka record for the rest).

Covered here: every test card and the brand rules (with README.md's extensions: jcb, diners,
spaces or dashes between digits, two-digit years), declines then success, double payment (409
already_paid), paying cancelled / shipped / expired orders (409), another user's order and
unknown orders (404), 401 without a token, validation (Luhn, expiry, cvc, exp_month, types,
missing / unknown / read-only fields, malformed JSON, wrong media type), GET /payments/{id} and
GET /orders/{id}/payments for owner, admin and others, paging, Idempotency-Key (replayed 201 and
402, a reused key with another body -- except that a body differing only in the CVC or in the
digits between the first and last 4 may replay, since only brand and last 4 are kept -- keys per
user, concurrent duplicates), concurrent payments of one order without a key (one 201, the rest
409), refunds when a paid order is cancelled or a shipped / delivered one refunded, and
payment.succeeded|declined|refunded and order.paid on Kafka with their CloudEvents headers.

Every class runs catalog, identity, inventory, orders, cart and payments with Kafka (stock records
come from product.created, refunds from order.events). Tests isolate themselves with their own
products, customers and orders, so they may run in any order and alone.
"""

import collections
import json
import os
import sys
import threading
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import HarnessError, wait_for  # noqa: E402
from test_orders import (API, ORDERS, PENDING_CAP, REPLAYED, RFC3339_UTC, SHOP_ACTORS, UNKNOWN_ID,  # noqa: E402
                         ShopCase, new_customer)
from test_events import (MDB_STAT, EventCase, outbox_entries, rid,  # noqa: E402
                         traceparent)
from test_events import READY, WHY  # noqa: E402,F811  (Kafka client and kafka-dev/relay built)

PAYMENTS = API + "/payments"
PAY_ACTORS = tuple(dict.fromkeys(tuple(SHOP_ACTORS) + ("payments",)))
PAYMENT_FIELDS = {"id", "order_id", "status", "amount_cents", "currency", "card_brand",
                  "card_last4", "created_at"}
EVENT_FIELDS = PAYMENT_FIELDS | {"user_id"}
EVENT_OPTIONAL = {"decline_code", "updated_at", "refunded_at"}
# Members that would mean card data is kept or shown (exact names, lower case).
CARD_SECRET_MEMBERS = {"number", "card_number", "pan", "cvc", "cvv", "cvv2", "csc",
                       "security_code", "exp_month", "exp_year", "expiry"}
SETTLE_S = 15.0          # how long an asynchronous effect (a refund from order.events) may take
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"

VISA = "4242424242424242"
DECLINED = "4000000000000002"
NO_FUNDS = "4000000000009995"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
DECLINES = ((DECLINED, "card_declined"), (NO_FUNDS, "insufficient_funds"))


# --- cards ----------------------------------------------------------------------------------
def luhn_ok(number):
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_complete(body):
    """body + the check digit that makes it Luhn-valid."""
    for c in "0123456789":
        if luhn_ok(body + c):
            return body + c
    raise AssertionError(body)


def luhn_fill(prefix, length, filler="0"):
    """A Luhn-valid number of this length starting with prefix (deterministic)."""
    return luhn_complete(prefix + filler * (length - len(prefix) - 1))


def luhn_random(prefix, length, rnd):
    return luhn_complete(prefix + "".join(rnd.choice("0123456789")
                                          for _ in range(length - len(prefix) - 1)))


def luhn_broken(number):
    """The same number with a wrong check digit."""
    last = int(number[-1])
    return number[:-1] + str((last + 1) % 10)


#  (number, card_brand): every brand rule and its edges.
BRAND_CASES = (
    (VISA, "visa"),
    ("4000056655665556", "visa"),
    ("4111111111111111", "visa"),
    ("4222222222222", "visa"),                       # 13 digits
    (luhn_fill("4", 19, "7"), "visa"),               # 19 digits
    (MASTERCARD, "mastercard"),
    ("5105105105105100", "mastercard"),
    ("2223003122003222", "mastercard"),
    (luhn_fill("51", 16, "3"), "mastercard"),
    (luhn_fill("55", 16, "8"), "mastercard"),
    (luhn_fill("2221", 16, "1"), "mastercard"),
    (luhn_fill("2720", 16, "9"), "mastercard"),
    (luhn_fill("50", 16, "2"), "unknown"),
    (luhn_fill("56", 16, "2"), "unknown"),
    (luhn_fill("2220", 16, "5"), "unknown"),
    (luhn_fill("2721", 16, "5"), "unknown"),
    (AMEX, "amex"),
    ("371449635398431", "amex"),
    (luhn_fill("34", 15, "6"), "amex"),
    ("6011111111111117", "discover"),
    ("6011000990139424", "discover"),
    (luhn_fill("65", 16, "4"), "discover"),
    (luhn_fill("6012", 16, "4"), "unknown"),
    (luhn_fill("640", 16, "4"), "unknown"),
    (luhn_fill("62", 16, "4"), "unknown"),           # UnionPay
    (luhn_fill("1", 16, "3"), "unknown"),
)
#  (number, card_brand, network): the brands the project adds to the four named above, documented
#  in README.md as extensions ("jcb", "diners"; discover also for its 644-649 range), with their
#  edges.
OTHER_NETWORKS = (
    ("3530111333300000", "jcb", "JCB"),
    (luhn_fill("3528", 16, "6"), "jcb", "JCB, first of 3528-3589"),
    (luhn_fill("3589", 16, "6"), "jcb", "JCB, last of 3528-3589"),
    (luhn_fill("3527", 16, "6"), "unknown", "just below JCB"),
    ("36227206271667", "diners", "Diners Club, 14 digits"),
    (luhn_fill("300", 14, "5"), "diners", "Diners Club 300-305"),
    (luhn_fill("305", 14, "5"), "diners", "Diners Club 300-305"),
    (luhn_fill("306", 14, "5"), "unknown", "just above Diners Club 300-305"),
    (luhn_fill("38", 14, "5"), "diners", "Diners Club 38-39"),
    (luhn_fill("644", 16, "4"), "discover", "Discover 644-649"),
    (luhn_fill("649", 16, "1"), "discover", "Discover 644-649"),
    (luhn_fill("643", 16, "1"), "unknown", "just below Discover 644-649"),
)
assert all(luhn_ok(c[0]) for c in BRAND_CASES + OTHER_NETWORKS)
assert luhn_ok(VISA) and luhn_ok(DECLINED) and luhn_ok(NO_FUNDS) and not luhn_ok(
    luhn_broken(VISA))


def this_month():
    now = datetime.now(timezone.utc)
    return now.year, now.month


def last_month():
    y, m = this_month()
    return (y - 1, 12) if m == 1 else (y, m - 1)


def card(number=VISA, cvc="123", exp=None):
    y, m = exp or (this_month()[0] + 3, 12)
    return {"number": number, "exp_month": m, "exp_year": y, "cvc": cvc}


def pay_body(order_id, number=VISA, **kw):
    return {"order_id": order_id, "card": card(number, **kw)}


def sans_instance(body):
    """A problem without its instance member (which names the request it answered)."""
    return {k: v for k, v in body.items() if k != "instance"}


def problem_code(r):
    try:
        return r.json().get("code")
    except ValueError:
        return None


class PayCase(ShopCase):
    """ShopCase plus the payments actor, and helpers for paying and reading payments."""

    ACTORS = PAY_ACTORS
    PRICE = 1234

    # --- fixtures ------------------------------------------------------------------------------
    def goods(self):
        """One product per test with plenty of stock, for its orders."""
        if "_goods" not in self.__dict__:
            self._goods = self.product(stock=1000, price_cents=self.PRICE, name="Payable thing")
        return self._goods

    def pending(self, who=None, qty=2):
        """(customer, pending_payment order of qty units)."""
        who = who or self.customer()
        return who, self.order(who, (self.goods()["id"], qty))

    # --- requests -------------------------------------------------------------------------------
    def pay(self, who, order_id, number=VISA, key=None, request_id=None, tp=None, body=None,
            **card_kw):
        h = {}
        if key is not None:
            h["Idempotency-Key"] = key
        if request_id is not None:
            h["X-Request-Id"] = request_id
        if tp is not None:
            h["traceparent"] = tp
        if body is None:
            body = pay_body(order_id, number, **card_kw)
        return self.call("POST", PAYMENTS, body, auth=who, headers=h)

    def get_payment(self, who, pay_id):
        return self.call("GET", PAYMENTS + "/" + pay_id, auth=who)

    def payment(self, who, pay_id):
        r = self.get_payment(who, pay_id)
        self.assertStatus(r, 200)
        return r.json()

    def payments_page(self, who, order_id, **params):
        return self.call("GET", ORDERS + "/%s/payments" % order_id, auth=who, params=params)

    def all_payments(self, who, order_id, max_pages=50, **params):
        """Every payment of an order the listing yields, following next_cursor."""
        items, cursor = [], None
        for _ in range(max_pages):
            q = dict(params)
            if cursor is not None:
                q["cursor"] = cursor
            r = self.payments_page(who, order_id, **q)
            self.assertStatus(r, 200, "list the payments of " + order_id)
            page = r.json()
            self.assertIsInstance(page.get("items"), list, page)
            self.assertIn("next_cursor", page, page)
            if "limit" in params:
                self.assertLessEqual(len(page["items"]), int(params["limit"]), page)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
            self.assertIsInstance(cursor, str, page)
        self.fail("payment pagination does not terminate")

    def status_of(self, who, order_id):
        return self.fetch(who, order_id)["status"]

    def await_payment_status(self, who, pay_id, status, timeout=SETTLE_S):
        try:
            return wait_for(lambda: (lambda p: p if p["status"] == status else None)(
                self.payment(who, pay_id)), timeout, interval=0.05,
                what="payment %s to become %s" % (pay_id, status))
        except HarnessError:
            self.fail("payment %s did not become %s within %.0f s: %s" % (
                pay_id, status, timeout, self.get_payment(who, pay_id).text[:500]))

    # --- assertions ------------------------------------------------------------------------------
    def assertNoCardData(self, obj, numbers=(), what=""):
        """No member that holds card data, and no full card number anywhere in obj."""
        text = json.dumps(obj)
        for n in numbers:
            self.assertNotIn(n, text, "full card number in %s: %s" % (what, text[:500]))

        def walk(v, path):
            if isinstance(v, dict):
                for k, x in v.items():
                    self.assertNotIn(k.lower(), CARD_SECRET_MEMBERS,
                                     "card data member %s.%s in %s: %s" % (
                                         path, k, what, text[:500]))
                    walk(x, path + "." + k)
            elif isinstance(v, list):
                for i, x in enumerate(v):
                    walk(x, "%s[%d]" % (path, i))
        walk(obj, "$")

    def assertPayment(self, p, order, status, number, brand=None, decline_code=None):
        """A payment representation (CONTRACT 7) of order, paid with card number."""
        self.assertIsInstance(p, dict, p)
        self.assertEqual(set(p) & PAYMENT_FIELDS, PAYMENT_FIELDS, "missing fields in %s" % p)
        self.assertIsInstance(p["id"], str)
        self.assertTrue(p["id"], p)
        self.assertEqual(p["order_id"], order["id"], p)
        self.assertEqual(p["status"], status, p)
        self.assertEqual(p["amount_cents"], order["total_cents"], "amount is the order's total")
        self.assertEqual(p["currency"], order["currency"], p)
        if brand is not None:
            self.assertEqual(p["card_brand"], brand, "brand of %s: %s" % (number, p))
        self.assertEqual(p["card_last4"], number[-4:], p)
        self.assertRegex(p["created_at"], RFC3339_UTC, "created_at")
        if decline_code is None:
            self.assertIsNone(p.get("decline_code"), "decline_code on a %s payment: %s" % (
                status, p))
        else:
            self.assertEqual(p.get("decline_code"), decline_code, p)
        self.assertNoCardData(p, [number], "payment %s" % p.get("id"))
        return p

    def assertPaid(self, r, order, number=VISA, brand=None):
        """A 201 for order: the payment, Location, not a replay. Returns the payment."""
        self.assertStatus(r, 201)
        p = self.assertPayment(r.json(), order, "succeeded", number, brand)
        self.assertEqual(r.headers.get("Location"), PAYMENTS + "/" + p["id"], dict(r.headers))
        self.assertNotEqual(r.headers.get(REPLAYED, "").lower(), "true",
                            "a first answer is not a replay")
        return p

    def assertDeclined(self, r, code, number=None):
        """402 problem with the decline code and the recorded payment's id in payment_id."""
        self.assertStatus(r, 402)
        prob = self.assertProblem(r, 402, code)
        self.assertIsInstance(prob.get("payment_id"), str,
                              "402 without the payment's id in payment_id: %s" % prob)
        self.assertTrue(prob["payment_id"], prob)
        if number:
            self.assertNotIn(number, r.text, "the 402 shows the card number")
        return prob["payment_id"]

    def pay_ok(self, who, order, number=VISA, **kw):
        return self.assertPaid(self.pay(who, order["id"], number, **kw), order, number)


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPay(PayCase):
    def test_success_pays_the_order(self):
        me = self.customer()
        p = self.product(stock=10, price_cents=1234)
        o = self.order(me, (p["id"], 3))
        self.assertEqual(o["total_cents"], 3702)
        r = self.pay(me, o["id"], VISA, cvc="123")
        pay = self.assertPaid(r, o, VISA, "visa")
        self.assertEqual((pay["amount_cents"], pay["currency"]), (3702, "USD"))
        # The order is paid once the 201 is there.
        self.assertEqual(self.status_of(me, o["id"]), "paid",
                         "the payment answered 201 but the order is not paid")
        # Location resolves to the payment; the admin sees it too.
        g = self.call("GET", r.headers["Location"], auth=me)
        self.assertStatus(g, 200)
        self.assertEqual(g.json(), pay)
        self.assertEqual(self.payment(self.admin(), pay["id"]), pay)
        # The order's payments: just this one.
        self.assertEqual(self.all_payments(me, o["id"]), [pay])
        self.assertEqual(self.all_payments(self.admin(), o["id"]), [pay])
        # Paying keeps the reservation (shipping sells it).
        self.assertStock(p["id"], 10, 3, "after paying")
        # CONTRACT 2: single-resource GETs return an ETag.
        self.assertTrue(g.headers.get("ETag"), "GET %s without ETag: %s" % (
            r.headers["Location"], dict(g.headers)))

    def test_every_test_card_and_brand(self):
        me = self.customer()
        for number, brand in BRAND_CASES:
            with self.subTest(number=number, brand=brand):
                _, o = self.pending(me, qty=1)
                cvc = "1234" if brand == "amex" else "321"
                pay = self.assertPaid(self.pay(me, o["id"], number, cvc=cvc), o, number, brand)
                self.assertEqual(self.payment(me, pay["id"]), pay)
                self.assertEqual(self.status_of(me, o["id"]), "paid")

    def test_other_networks(self):
        """Brands beyond the four of the brand rules, as README.md documents them."""
        me = self.customer()
        for number, brand, network in OTHER_NETWORKS:
            with self.subTest(number=number, network=network):
                _, o = self.pending(me, qty=1)
                pay = self.assertPaid(self.pay(me, o["id"], number), o, number)
                self.assertEqual(pay["card_brand"], brand, "%s (%s)" % (number, network))

    def test_documented_leniencies(self):
        """README.md: spaces or dashes between digits, and a two-digit exp_year is 20xx."""
        me = self.customer()
        yy = this_month()[0] % 100
        for number, kw in (("4242 4242 4242 4242", {}), ("4242-4242-4242-4242", {}),
                           ("3782 822463 10005", {"cvc": "1234"}),
                           (VISA, {"exp": (yy + 2, 6)})):
            with self.subTest(number=number, **kw):
                _, o = self.pending(me, qty=1)
                r = self.pay(me, o["id"], number, **kw)
                digits = number.replace(" ", "").replace("-", "")
                pay = self.assertPaid(r, o, digits)
                self.assertNoCardData(pay, [number, digits], "payment")
        _, o = self.pending(me, qty=1)
        for number, kw in ((" 4242424242424242", {}), ("4242424242424242 ", {}),
                           ("4242--4242", {}), (VISA, {"exp": (yy - 1, 12)})):
            with self.subTest(refused=number, **kw):
                self.assertInvalid(self.pay(me, o["id"], number, **kw), "card.")
        self.assertEqual(self.all_payments(me, o["id"]), [])

    def test_cvc_of_three_or_four_digits_and_this_month_are_accepted(self):
        me = self.customer()
        for kw in ({"cvc": "000"}, {"cvc": "9999"}, {"exp": this_month()},
                   {"exp": (this_month()[0] + 20, 1)}):
            with self.subTest(**kw):
                _, o = self.pending(me, qty=1)
                self.pay_ok(me, o, MASTERCARD, **kw)

    def test_declines_then_success(self):
        me, o = self.pending(qty=2)
        declined = {}
        for number, code in DECLINES:
            with self.subTest(number=number):
                r = self.pay(me, o["id"], number)
                pid = self.assertDeclined(r, code, number)
                self.assertEqual(self.status_of(me, o["id"]), "pending_payment",
                                 "a decline changed the order")
                rec = self.payment(me, pid)
                self.assertPayment(rec, o, "declined", number, "visa", code)
                self.assertEqual(self.payment(self.admin(), pid), rec)
                declined[pid] = rec
        self.assertEqual(len(declined), 2, "two declines, one payment id each")
        listed = self.all_payments(me, o["id"])
        self.assertEqual({p["id"]: p for p in listed}, declined, "the declines are listed")
        # After declines the order can still be paid.
        ok = self.pay_ok(me, o, MASTERCARD)
        self.assertNotIn(ok["id"], declined)
        self.assertEqual(ok["card_brand"], "mastercard")
        self.assertEqual(self.status_of(me, o["id"]), "paid")
        listed = {p["id"]: p for p in self.all_payments(me, o["id"])}
        self.assertEqual(listed, dict(declined, **{ok["id"]: ok}))
        # A decline card on the paid order is a second payment: 409, not 402, nothing recorded.
        self.assertProblem(self.pay(me, o["id"], DECLINED), 409, "already_paid")
        self.assertEqual(len(self.all_payments(me, o["id"])), 3)

    def test_second_payment_is_409_already_paid(self):
        me, o = self.pending()
        first = self.pay_ok(me, o)
        for number in (VISA, MASTERCARD, AMEX):
            with self.subTest(number=number):
                cvc = "1234" if number == AMEX else "123"
                self.assertProblem(self.pay(me, o["id"], number, cvc=cvc), 409, "already_paid")
        self.assertEqual(self.all_payments(me, o["id"]), [first], "a refused payment was recorded")
        self.assertEqual(self.payment(me, first["id"]), first)
        self.assertEqual(self.status_of(me, o["id"]), "paid")

    def test_only_pending_orders_can_be_paid(self):
        me = self.customer()
        # cancelled
        _, o = self.pending(me)
        self.assertStatus(self.cancel(me, o["id"]), 200)
        self.assertProblem(self.pay(me, o["id"]), 409, "illegal_transition")
        self.assertEqual(self.all_payments(me, o["id"]), [])
        self.assertEqual(self.status_of(me, o["id"]), "cancelled")
        # paid, then shipped / delivered / refunded by the admin: still 409 (its one payment stays)
        for path in (["shipped"], ["shipped", "delivered"], ["shipped", "refunded"]):
            with self.subTest(path=path):
                _, o = self.pending(me)
                first = self.pay_ok(me, o)
                for s in path:
                    self.move(o["id"], s)
                r = self.pay(me, o["id"], MASTERCARD)
                self.assertProblem(r, 409)
                self.assertEqual([p["id"] for p in self.all_payments(me, o["id"])],
                                 [first["id"]], "a refused payment was recorded")
                self.assertEqual(self.status_of(me, o["id"]), path[-1])

    def test_amount_comes_from_the_order(self):
        me, o = self.pending(qty=4)
        for f, v in (("amount_cents", 1), ("currency", "EUR"), ("status", "succeeded"),
                     ("id", UNKNOWN_ID), ("user_id", me.id)):
            with self.subTest(field=f):
                body = pay_body(o["id"])
                body[f] = v
                self.assertInvalid(self.pay(me, o["id"], body=body), f)
        self.assertEqual(self.all_payments(me, o["id"]), [])
        pay = self.pay_ok(me, o)
        self.assertEqual(pay["amount_cents"], 4 * self.PRICE)


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPayValidation(PayCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.me, cls.unpaid = None, PENDING_CAP

    def setUp(self):
        super().setUp()
        # Every test leaves its order unpaid: a new customer whenever the last one holds as
        # many unpaid orders as the cap allows.
        cls = type(self)
        if cls.unpaid == PENDING_CAP:
            cls.me, cls.unpaid = new_customer(cls.cluster), 0
        cls.unpaid += 1
        _, self.o = self.pending(self.me, qty=1)
        self.oid = self.o["id"]

    def tearDown(self):
        # A refused payment records nothing and leaves the order as it was.
        self.assertEqual(self.all_payments(self.me, self.oid), [],
                         "a refused payment was recorded")
        self.assertEqual(self.fetch(self.me, self.oid), self.o,
                         "a refused payment changed the order")

    def with_card(self, **over):
        body = pay_body(self.oid)
        body["card"].update(over)
        return body

    def without_card(self, member):
        body = pay_body(self.oid)
        del body["card"][member]
        return body

    def test_luhn_invalid_number(self):
        for number in (luhn_broken(VISA), luhn_broken(MASTERCARD), luhn_broken(AMEX),
                       "4242424242424241", "1234567812345678"):
            with self.subTest(number=number):
                r = self.pay(self.me, self.oid, number)
                self.assertInvalid(r, "card.number")
                self.assertNotIn(number, r.text, "the 422 shows the card number")

    def test_malformed_numbers(self):
        for number in ("", "424242424242424x", "abcdabcdabcdabcd",
                       "\uff14\uff12" * 8,                  # full-width digits
                       int(VISA), None, ["4242424242424242"]):
            with self.subTest(number=number):
                self.assertInvalid(self.pay(self.me, self.oid, body=self.with_card(
                    number=number)), "card.number")

    def test_expired_cards(self):
        y, m = this_month()
        for exp in (last_month(), (y - 1, m), (y - 1, 12), (2001, 1)):
            with self.subTest(exp=exp):
                self.assertInvalid(self.pay(self.me, self.oid, VISA, exp=exp), "card.exp")

    def test_exp_month_and_year_range_and_type(self):
        y = this_month()[0] + 2
        for m in (0, 13, -1, 1.5, "12", None):
            with self.subTest(exp_month=m):
                self.assertInvalid(self.pay(self.me, self.oid, body=self.with_card(
                    exp_month=m, exp_year=y)), "card.exp_month")
        for yy in ("2030", None, 1.5):
            with self.subTest(exp_year=yy):
                self.assertInvalid(self.pay(self.me, self.oid, body=self.with_card(
                    exp_year=yy)), "card.exp_year")

    def test_cvc_is_3_or_4_digits(self):
        for cvc in ("", "1", "12", "12345", "12a", "abc", " 123", "1 23"):
            with self.subTest(cvc=cvc):
                self.assertInvalid(self.pay(self.me, self.oid, VISA, cvc=cvc), "card.cvc")

    def test_missing_members(self):
        for member in ("number", "exp_month", "exp_year", "cvc"):
            with self.subTest(member=member):
                self.assertInvalid(self.pay(self.me, self.oid, body=self.without_card(member)),
                                   "card." + member)
        body = pay_body(self.oid)
        del body["card"]
        self.assertInvalid(self.pay(self.me, self.oid, body=body), "card")
        for bad in ("4242424242424242", [], None, 5):
            with self.subTest(card=bad):
                self.assertInvalid(self.pay(self.me, self.oid, body={"order_id": self.oid,
                                                                     "card": bad}), "card")
        body = pay_body(self.oid)
        del body["order_id"]
        self.assertInvalid(self.pay(self.me, self.oid, body=body), "order_id")
        for bad in (5, None, ["x"]):
            with self.subTest(order_id=bad):
                self.assertInvalid(self.pay(self.me, self.oid, body=dict(pay_body(self.oid),
                                                                         order_id=bad)),
                                   "order_id")

    def test_unknown_members(self):
        body = pay_body(self.oid)
        body["colour"] = "red"
        self.assertInvalid(self.pay(self.me, self.oid, body=body), "colour")
        self.assertInvalid(self.pay(self.me, self.oid, body=self.with_card(colour="red")),
                           "card.colour")

    def test_malformed_and_non_json_bodies(self):
        self.assertProblem(self.call("POST", PAYMENTS, data='{"order_id": "%s", "card": {'
                                     % self.oid, auth=self.me), 400)
        self.assertProblem(self.call("POST", PAYMENTS, data=json.dumps(pay_body(self.oid)),
                                     auth=self.me, content_type="text/plain"), 415)
        self.assertProblem(self.call("POST", PAYMENTS, data="[]", auth=self.me), 422)

    def test_no_token_is_401(self):
        self.assertUnauthorized(self.call("POST", PAYMENTS, pay_body(self.oid)))
        self.assertUnauthorized(self.call("POST", PAYMENTS, pay_body(self.oid), auth="not-a-token"))


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPaymentAccess(PayCase):
    def test_another_users_order_is_404(self):
        alice, o = self.pending()
        bob = self.customer()
        for number in (VISA, DECLINED):
            with self.subTest(number=number):
                r = self.pay(bob, o["id"], number)
                self.assertProblem(r, 404)
        self.assertEqual(self.all_payments(alice, o["id"]), [], "bob's attempt was recorded")
        self.assertEqual(self.status_of(alice, o["id"]), "pending_payment")
        # Unknown orders look the same.
        self.assertProblem(self.pay(alice, UNKNOWN_ID), 404)
        # Alice can still pay her order.
        pay = self.pay_ok(alice, o)
        # Once it is paid it is still not bob's: 404, not a 409 telling him it has been paid.
        for number in (VISA, DECLINED):
            with self.subTest(number=number, paid=True):
                r = self.pay(bob, o["id"], number)
                self.assertProblem(r, 404)
        self.assertEqual(self.all_payments(alice, o["id"]), [pay])

    def test_who_sees_a_payment(self):
        alice, o = self.pending()
        bob = self.customer()
        declined = self.assertDeclined(self.pay(alice, o["id"], DECLINED), "card_declined")
        ok = self.pay_ok(alice, o)
        for pid in (declined, ok["id"]):
            with self.subTest(payment=pid):
                self.assertStatus(self.get_payment(alice, pid), 200)
                self.assertStatus(self.get_payment(self.admin(), pid), 200)
                self.assertProblem(self.get_payment(bob, pid), 404)
                self.assertUnauthorized(self.get_payment(None, pid))
                self.assertUnauthorized(self.get_payment("not-a-token", pid))
        self.assertProblem(self.get_payment(alice, UNKNOWN_ID), 404)
        self.assertProblem(self.get_payment(self.admin(), UNKNOWN_ID), 404)
        # The order's list: owner and admin; others and unknown orders 404; no token 401.
        want = {declined, ok["id"]}
        self.assertEqual({p["id"] for p in self.all_payments(alice, o["id"])}, want)
        self.assertEqual({p["id"] for p in self.all_payments(self.admin(), o["id"])}, want)
        self.assertProblem(self.payments_page(bob, o["id"]), 404)
        self.assertProblem(self.payments_page(alice, UNKNOWN_ID), 404)
        self.assertUnauthorized(self.payments_page(None, o["id"]))

    def test_an_order_without_payments_lists_none(self):
        me, o = self.pending()
        r = self.payments_page(me, o["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), {"items": [], "next_cursor": None})

    def test_listing_pages(self):
        me, o = self.pending()
        made = [self.assertDeclined(self.pay(me, o["id"], n), c) for n, c in DECLINES * 2]
        made.append(self.pay_ok(me, o)["id"])
        everything = self.all_payments(me, o["id"])
        self.assertEqual(sorted(p["id"] for p in everything), sorted(made))
        for limit in (1, 2, 3):
            with self.subTest(limit=limit):
                paged = self.all_payments(me, o["id"], limit=limit)
                self.assertEqual([p["id"] for p in paged], [p["id"] for p in everything],
                                 "paging with limit=%d skips, repeats or reorders" % limit)
        first = self.payments_page(me, o["id"], limit=2).json()
        self.assertEqual(len(first["items"]), 2)
        self.assertIsNotNone(first["next_cursor"])
        statuses = collections.Counter(p["status"] for p in everything)
        self.assertEqual(statuses, {"declined": 4, "succeeded": 1})


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPaymentIdempotency(PayCase):
    def test_replayed_201(self):
        me, o = self.pending()
        key = uuid.uuid4().hex
        first = self.pay(me, o["id"], VISA, key=key)
        pay = self.assertPaid(first, o)
        again = self.pay(me, o["id"], VISA, key=key)
        self.assertStatus(again, 201, "a replay of a 201")
        self.assertEqual(again.headers.get(REPLAYED), "true", dict(again.headers))
        self.assertEqual(again.json(), first.json(), "a replay answers the same body")
        self.assertEqual(again.headers.get("Location"), first.headers.get("Location"))
        self.assertEqual(self.all_payments(me, o["id"]), [pay], "a replay paid again")
        self.assertEqual(self.status_of(me, o["id"]), "paid")
        # Without the key, the same body is a second payment: 409.
        self.assertProblem(self.pay(me, o["id"], VISA), 409, "already_paid")

    def test_replayed_402(self):
        me, o = self.pending()
        key = uuid.uuid4().hex
        first = self.pay(me, o["id"], NO_FUNDS, key=key)
        pid = self.assertDeclined(first, "insufficient_funds")
        self.assertNotEqual(first.headers.get(REPLAYED, "").lower(), "true")
        again = self.pay(me, o["id"], NO_FUNDS, key=key)
        self.assertStatus(again, 402, "a replay of a 402")
        self.assertEqual(again.headers.get(REPLAYED), "true", dict(again.headers))
        self.assertEqual(sans_instance(again.json()), sans_instance(first.json()))
        self.assertEqual(again.json()["payment_id"], pid)
        self.assertEqual([p["id"] for p in self.all_payments(me, o["id"])], [pid],
                         "a replayed decline was recorded again")
        # The same card without the key is a new attempt with a new id.
        pid2 = self.assertDeclined(self.pay(me, o["id"], NO_FUNDS), "insufficient_funds")
        self.assertNotEqual(pid2, pid)
        self.assertEqual(len(self.all_payments(me, o["id"])), 2)
        # CONTRACT 2: "the same status and body" -- the problem's instance member included.
        self.assertEqual(again.json(), first.json(), "a replayed 402 is not the same body")

    def test_same_key_different_body_is_422(self):
        me, o = self.pending()
        key = uuid.uuid4().hex
        first = self.pay(me, o["id"], DECLINED, key=key)
        pid = self.assertDeclined(first, "card_declined")
        for what, body in (("another card", pay_body(o["id"], VISA)),
                           ("another expiry", pay_body(o["id"], DECLINED,
                                                       exp=(this_month()[0] + 4, 1))),
                           ("another expiry month", pay_body(o["id"], DECLINED,
                                                             exp=(this_month()[0] + 3, 11)))):
            with self.subTest(what):
                self.assertProblem(self.pay(me, o["id"], key=key, body=body), 422,
                                   "idempotency_key_reused")
        self.assertEqual([p["id"] for p in self.all_payments(me, o["id"])], [pid])
        self.assertEqual(self.status_of(me, o["id"]), "pending_payment",
                         "a reused key paid the order")
        again = self.pay(me, o["id"], DECLINED, key=key)
        self.assertStatus(again, 402)
        self.assertEqual(again.headers.get(REPLAYED), "true", dict(again.headers))
        self.assertEqual(sans_instance(again.json()), sans_instance(first.json()),
                         "the original answer is still replayed")
        # After a 201 too.
        key2 = uuid.uuid4().hex
        ok = self.pay_ok(me, o, key=key2)
        self.assertProblem(self.pay(me, o["id"], MASTERCARD, key=key2), 422,
                           "idempotency_key_reused")
        self.assertEqual({p["id"] for p in self.all_payments(me, o["id"])}, {pid, ok["id"]})

    def test_same_key_other_cvc_or_middle_digits_pays_nothing_more(self):
        """CONTRACT 2 makes any other body a 422; CONTRACT 7 keeps only brand and last 4 of a
        card, so the idempotency record cannot tell a body that differs only in the CVC or in
        the digits between the first and the last 4. Either answer is safe: 422
        idempotency_key_reused, or the first answer replayed. Never a second payment."""
        me, o = self.pending()
        key = uuid.uuid4().hex
        first = self.pay(me, o["id"], VISA, key=key, cvc="123")
        pay = self.assertPaid(first, o)
        [twin] = [n for n in ("4242" + "0" * 7 + str(d) + "4242" for d in range(10))
                  if luhn_ok(n)]         # visa, the same last 4, other digits between
        others = (("another cvc", pay_body(o["id"], VISA, cvc="999")),
                  ("other middle digits", pay_body(o["id"], twin)))
        for what, body in others:
            with self.subTest(what):
                r = self.pay(me, o["id"], key=key, body=body)
                if r.status_code == 422:
                    self.assertProblem(r, 422, "idempotency_key_reused")
                else:
                    self.assertStatus(r, 201, what)
                    self.assertEqual(r.headers.get(REPLAYED), "true", dict(r.headers))
                    self.assertEqual(r.json(), first.json())
                print("\n[payments] same key, %s: %d %s" % (what, r.status_code,
                                                            problem_code(r) or ""),
                      file=sys.stderr)
        self.assertEqual(self.all_payments(me, o["id"]), [pay])

    def test_keys_are_per_user(self):
        key = uuid.uuid4().hex
        alice, a = self.pending()
        bob, b = self.pending()
        pa = self.pay_ok(alice, a, key=key)
        rb = self.pay(bob, b["id"], VISA, key=key)
        pb = self.assertPaid(rb, b)
        self.assertNotEqual(pa["id"], pb["id"])
        self.assertEqual(self.status_of(bob, b["id"]), "paid")

    def test_concurrent_duplicates_pay_once(self):
        me, o = self.pending()
        key = uuid.uuid4().hex
        body = json.dumps(pay_body(o["id"], MASTERCARD))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **me.headers()}
        n = 10
        go = threading.Barrier(n)

        def send(_):
            go.wait()
            return requests.post(self.cluster.api + "/payments", data=body, headers=headers,
                                 timeout=30)

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(send, range(n)))
        statuses = collections.Counter(r.status_code for r in answers)
        self.assertEqual(statuses, {201: n}, [r.text[:200] for r in answers])
        self.assertEqual(len({json.dumps(r.json(), sort_keys=True) for r in answers}), 1,
                         "duplicates got different answers")
        self.assertEqual(sum(r.headers.get(REPLAYED) == "true" for r in answers), n - 1)
        self.assertEqual([p["id"] for p in self.all_payments(me, o["id"])],
                         [answers[0].json()["id"]])


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestConcurrentPayments(PayCase):
    THREADS = 8

    def test_one_order_paid_from_many_threads_once(self):
        me, o = self.pending()
        numbers = [luhn_fill("49%d" % i, 16, str(i)) for i in range(self.THREADS)]
        go = threading.Barrier(self.THREADS)

        def send(number):
            body = json.dumps(pay_body(o["id"], number))
            go.wait()
            return requests.post(self.cluster.api + "/payments", data=body, timeout=30, headers={
                "Content-Type": "application/json", **me.headers()})

        with ThreadPoolExecutor(self.THREADS) as pool:
            answers = list(pool.map(send, numbers))
        statuses = collections.Counter(r.status_code for r in answers)
        print("\n[payments] %d concurrent payments of one order: %s" % (
            self.THREADS, dict(sorted(statuses.items()))), file=sys.stderr)
        self.assertEqual(statuses, {201: 1, 409: self.THREADS - 1},
                         [r.text[:200] for r in answers])
        for r in answers:
            if r.status_code == 409:
                self.assertProblem(r, 409)
        [(number, won)] = [(n, r) for n, r in zip(numbers, answers) if r.status_code == 201]
        pay = self.assertPaid(won, o, number, "visa")
        self.assertEqual(self.all_payments(me, o["id"]), [pay], "more than one payment recorded")
        self.assertEqual(self.status_of(me, o["id"]), "paid")
        codes = collections.Counter(problem_code(r) for r in answers if r.status_code == 409)
        print("[payments] 409 codes: %s" % dict(codes), file=sys.stderr)

    def test_many_orders_paid_concurrently(self):
        """Payments of different orders do not get in each other's way."""
        people = [self.pending(qty=1) for _ in range(12)]
        go = threading.Barrier(len(people))

        def send(pair):
            who, o = pair
            body = json.dumps(pay_body(o["id"], VISA))
            go.wait()
            return requests.post(self.cluster.api + "/payments", data=body, timeout=30, headers={
                "Content-Type": "application/json", **who.headers()})

        with ThreadPoolExecutor(len(people)) as pool:
            answers = list(pool.map(send, people))
        self.assertEqual(collections.Counter(r.status_code for r in answers),
                         {201: len(people)}, [r.text[:200] for r in answers])
        for (who, o), r in zip(people, answers):
            self.assertEqual(r.json()["order_id"], o["id"])
            self.assertEqual(self.status_of(who, o["id"]), "paid")


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestRefunds(PayCase):
    def test_cancelling_a_paid_order_refunds_its_payment(self):
        me, o = self.pending(qty=3)
        pid = self.goods()["id"]
        declined = self.assertDeclined(self.pay(me, o["id"], DECLINED), "card_declined")
        pay = self.pay_ok(me, o)
        r = self.cancel(me, o["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "cancelled")
        refunded = self.await_payment_status(me, pay["id"], "refunded")
        self.assertEqual({k: v for k, v in refunded.items() if k not in ("status", "updated_at",
                                                                          "refunded_at")},
                         {k: v for k, v in pay.items() if k not in ("status", "updated_at",
                                                                     "refunded_at")},
                         "a refund changes only the status")
        self.assertPayment(refunded, o, "refunded", VISA, "visa")
        # The decline stays a decline (same order: its events are handled in order).
        self.assertEqual(self.payment(me, declined)["status"], "declined")
        self.assertEqual({p["id"]: p["status"] for p in self.all_payments(me, o["id"])},
                         {declined: "declined", pay["id"]: "refunded"})
        self.assertEqual(self.status_of(me, o["id"]), "cancelled")
        self.awaitStock(pid, 1000, 0, "a cancelled paid order releases its stock")
        # A refunded order cannot be paid again.
        self.assertProblem(self.pay(me, o["id"]), 409)

    def test_admin_cancellations_refund(self):
        for how in ("post cancel", "put cancelled"):
            with self.subTest(how=how):
                me, o = self.pending()
                pay = self.pay_ok(me, o)
                if how == "post cancel":
                    self.assertStatus(self.cancel(self.admin(), o["id"]), 200)
                else:
                    self.move(o["id"], "cancelled")
                self.await_payment_status(me, pay["id"], "refunded")

    def test_returns_refund(self):
        for path in (["shipped", "refunded"], ["shipped", "delivered", "refunded"]):
            with self.subTest(path=path):
                me, o = self.pending()
                pay = self.pay_ok(me, o)
                for s in path[:-1]:
                    self.move(o["id"], s)
                    self.assertEqual(self.payment(me, pay["id"])["status"], "succeeded",
                                     "a payment changed when the order was " + s)
                self.move(o["id"], "refunded")
                self.await_payment_status(me, pay["id"], "refunded")
                self.assertEqual(self.status_of(me, o["id"]), "refunded")

    def test_cancelling_an_unpaid_order_refunds_nothing(self):
        me, o = self.pending()
        declined = self.assertDeclined(self.pay(me, o["id"], NO_FUNDS), "insufficient_funds")
        self.assertStatus(self.cancel(me, o["id"]), 200)
        # Barrier: a refund triggered after this cancel has been made.
        me2, o2 = self.pending()
        pay2 = self.pay_ok(me2, o2)
        self.assertStatus(self.cancel(me2, o2["id"]), 200)
        self.await_payment_status(me2, pay2["id"], "refunded")
        self.assertEqual(self.payment(me, declined)["status"], "declined",
                         "a decline was 'refunded'")
        self.assertEqual([p["status"] for p in self.all_payments(me, o["id"])], ["declined"])


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPayExpiry(PayCase):
    TTL_S = 2
    ENV = {"MERCATO_RESERVATION_TTL_S": str(TTL_S)}

    def await_status(self, who, oid, status, timeout):
        return wait_for(lambda: (lambda o: o if o["status"] == status else None)(
            self.fetch(who, oid)), timeout, interval=0.1, what="order %s to be %s" % (oid, status))

    def test_expired_orders_cannot_be_paid_and_paid_ones_do_not_expire(self):
        me = self.customer()
        paid_p, unpaid_p = self.products(2, stock=10)
        paid = self.order(me, (paid_p["id"], 2))
        pay = self.pay_ok(me, paid)
        unpaid = self.order(me, (unpaid_p["id"], 3))      # placed later: expires later
        declined = self.assertDeclined(self.pay(me, unpaid["id"], DECLINED), "card_declined")
        self.await_status(me, unpaid["id"], "expired", self.TTL_S + 15)
        self.awaitStock(unpaid_p["id"], 10, 0, "expiry released the stock")
        r = self.pay(me, unpaid["id"])
        self.assertProblem(r, 409, "illegal_transition")
        self.assertEqual([p["id"] for p in self.all_payments(me, unpaid["id"])], [declined])
        self.assertEqual(self.payment(me, declined)["status"], "declined")
        self.assertEqual(self.status_of(me, unpaid["id"]), "expired")
        # The paid order, older than the expired one, did not expire and keeps its stock.
        self.assertEqual(self.status_of(me, paid["id"]), "paid", "a paid order expired")
        self.assertEqual(self.payment(me, pay["id"])["status"], "succeeded")
        self.assertStockBehindBarrier(paid_p["id"], 10, 2, "a paid order's stock was released")


# ============================================================================================
class PayEventCase(PayCase, EventCase):
    """PayCase with EventCase's Kafka reader and envelope checks."""

    def drained(self, envs=("payments", "orders")):
        """Wait until the outboxes of these actor environments are empty (mdb_stat); without
        mdb_stat just return False."""
        envs = [e for e in envs if os.path.isdir(os.path.join(self.cluster.data_dir, e, "0"))]
        if MDB_STAT is None or not envs:
            return False
        got = {}

        def empty():
            for e in envs:
                got[e] = outbox_entries(self.cluster.data_dir, e)
            return all(n == 0 for n in got.values())
        try:
            wait_for(empty, 15, interval=0.1, what="empty outboxes")
        except HarnessError as e:
            self.fail("outboxes not drained: %s (%s)" % (got, e))
        return True

    def distinct(self, recs):
        """Records with distinct ce_id, in partition order (at-least-once delivery)."""
        out = {}
        for r in recs:
            out.setdefault(r.ce_id, r)
        return list(out.values())

    def assertChained(self, rec, ce_type, source, corr, what=""):
        """Envelope of an event caused by another event (no ULID causation: the cause's ce_id)."""
        ctx = "%s: %s record %r" % (what, ce_type, rec)
        for h in ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type",
                  "ce_correlationid", "ce_causationid"):
            self.assertIn(h, rec.headers, "missing header %s; %s" % (h, ctx))
        self.assertEqual(rec.headers["ce_specversion"], "1.0", ctx)
        self.assertEqual(rec.headers["ce_type"], ce_type, ctx)
        self.assertEqual(rec.headers["ce_source"], source, ctx)
        self.assertEqual(rec.headers["content-type"], "application/json", ctx)
        self.assertEqual(rec.headers["ce_correlationid"], corr,
                         "ce_correlationid is not the X-Request-Id that started the chain; " + ctx)
        self.assertTrue(rec.headers["ce_causationid"], ctx)
        self.assertTrue(rec.headers["ce_id"], ctx)
        self.assertRegex(rec.headers["ce_time"], RFC3339_UTC, ctx)
        self.assertIsInstance(rec.value, dict, ctx)

    def assertPaymentEvent(self, rec, pay, who, status, decline_code=None, number=None):
        v = rec.value
        self.assertIsInstance(v, dict, rec)
        self.assertEqual(set(v) & EVENT_FIELDS, EVENT_FIELDS, "missing members in %r" % rec)
        self.assertEqual(set(v) - EVENT_FIELDS - EVENT_OPTIONAL, set(),
                         "members outside the payment event in %r" % rec)
        want = {k: pay[k] for k in PAYMENT_FIELDS}
        want.update(user_id=who.id, status=status)
        self.assertEqual({k: v[k] for k in EVENT_FIELDS}, want, "value of %r" % rec)
        self.assertEqual(v.get("decline_code"), decline_code, rec)
        self.assertEqual(rec.key, pay["id"], "the key is the payment id")
        self.assertNoCardData(v, [number] if number else [], repr(rec))
        self.assertSchema(v, rec.type)

    def assertSchema(self, value, ce_type):
        """When schemas/events/<type>.json exists: required members, no others if closed."""
        from test_events import SCHEMA_DIR
        path = os.path.join(SCHEMA_DIR, ce_type + ".json")
        if not os.path.exists(path):
            return
        with open(path) as f:
            schema = json.load(f)
        for k in schema.get("required", []):
            self.assertIn(k, value, "%s: required %r missing in %s" % (ce_type, k, value))
        if schema.get("additionalProperties") is False:
            self.assertEqual(set(value) - set(schema.get("properties", {})), set(),
                             "%s: members outside the schema in %s" % (ce_type, value))


@unittest.skipUnless(READY, WHY)
class TestPaymentEvents(PayEventCase):
    def test_succeeded_and_order_paid(self):
        log = self.log(("payment.events", "order.events"))
        me, o = self.pending(qty=2)
        corr, tp = rid("pay"), traceparent()
        pay = self.assertPaid(self.pay(me, o["id"], MASTERCARD, request_id=corr, tp=tp), o,
                              MASTERCARD, "mastercard")
        log.wait(log.has("payment.events", pay["id"], ["payment.succeeded"]),
                 what="payment.succeeded for %s" % pay["id"])
        log.wait(log.has("order.events", o["id"], ["order.paid"]),
                 what="order.paid for %s" % o["id"])
        self.drained()
        log.catch_up()
        recs = self.distinct(log.by_key("payment.events", pay["id"]))
        self.assertEqual([r.type for r in recs], ["payment.succeeded"], recs)
        rec = recs[0]
        self.assertPaymentEvent(rec, pay, me, "succeeded", None, MASTERCARD)
        # order.paid: the order as GET shows it.
        orecs = self.distinct(log.by_key("order.events", o["id"]))
        self.assertEqual([r.type for r in orecs], ["order.created", "order.paid"], orecs)
        paid = orecs[1]
        self.assertEqual(paid.value, self.fetch(me, o["id"]), "order.paid value")
        self.assertEqual(paid.value["status"], "paid")
        self.assertSchema(paid.value, "order.paid")
        # Both in the chain the payment's request started (CONTRACT 8 headers).
        with self.subTest(envelope="payment.succeeded"):
            self.assertEnvelope(rec, "payment.succeeded", "/mercato/payments", corr, tp,
                                "POST payments")
        with self.subTest(envelope="order.paid"):
            self.assertChained(paid, "order.paid", "/mercato/orders", corr,
                               "order paid by a payment")
            if "traceparent" in paid.headers:
                self.assertEqual(paid.headers["traceparent"], tp, paid)

    def test_declined(self):
        log = self.log(("payment.events", "order.events"))
        me, o = self.pending()
        seen = []
        for number, code in DECLINES:
            corr = rid("decl")
            pid = self.assertDeclined(self.pay(me, o["id"], number, request_id=corr), code)
            rec = self.payment(me, pid)
            seen.append((pid, rec, number, code, corr))
        ok = self.pay_ok(me, o, request_id=rid("ok"))
        log.wait(lambda s: all(s.has("payment.events", pid, ["payment.declined"])(s)
                               for pid, *_ in seen)
                 and s.has("payment.events", ok["id"], ["payment.succeeded"])(s),
                 what="two payment.declined and a payment.succeeded")
        log.wait(log.has("order.events", o["id"], ["order.paid"]), what="order.paid")
        self.drained()
        log.catch_up()
        declines = []
        for pid, rec, number, code, corr in seen:
            recs = self.distinct(log.by_key("payment.events", pid))
            self.assertEqual([r.type for r in recs], ["payment.declined"], recs)
            self.assertPaymentEvent(recs[0], rec, me, "declined", code, number)
            declines.append((recs[0], corr))
        # One order.paid, after the success only.
        types = [r.type for r in self.distinct(log.by_key("order.events", o["id"]))]
        self.assertEqual(types, ["order.created", "order.paid"], "declines changed the order")
        for rec, corr in declines:
            self.assertEnvelope(rec, "payment.declined", "/mercato/payments", corr, None,
                                "declined POST")

    def test_refunded(self):
        log = self.log(("payment.events", "order.events"))
        for how in ("owner cancels", "admin refunds a return"):
            with self.subTest(how=how):
                me, o = self.pending()
                pay = self.pay_ok(me, o, request_id=rid("pay"))
                corr = rid("ref")
                if how == "owner cancels":
                    r = self.call("POST", ORDERS + "/%s/cancel" % o["id"], auth=me,
                                  headers={"X-Request-Id": corr})
                    self.assertStatus(r, 200)
                    cause_type = "order.cancelled"
                else:
                    self.move(o["id"], "shipped")
                    r = self.call("PUT", ORDERS + "/%s/status" % o["id"], {"status": "refunded"},
                                  auth=self.admin(), headers={"X-Request-Id": corr})
                    self.assertStatus(r, 200)
                    cause_type = "order.refunded"
                log.wait(log.has("payment.events", pay["id"], ["payment.refunded"]),
                         timeout=SETTLE_S, what="payment.refunded for %s (%s)" % (pay["id"], how))
                refunded = self.await_payment_status(me, pay["id"], "refunded")
                self.drained()
                log.catch_up()
                recs = self.distinct(log.by_key("payment.events", pay["id"]))
                self.assertEqual([x.type for x in recs], ["payment.succeeded", "payment.refunded"],
                                 recs)
                rec = recs[1]
                self.assertChained(rec, "payment.refunded", "/mercato/payments", corr, how)
                self.assertPaymentEvent(rec, refunded, me, "refunded", None, VISA)
                [cause] = [x for x in self.distinct(log.by_key("order.events", o["id"]))
                           if x.type == cause_type]
                self.assertEqual(rec.headers["ce_causationid"], cause.ce_id,
                                 "payment.refunded is caused by %s" % cause_type)

    def test_refused_and_replayed_requests_emit_nothing(self):
        log = self.log(("payment.events", "order.events"))
        me, o = self.pending()
        bob, b = self.pending()
        key = uuid.uuid4().hex
        first = self.pay_ok(me, o, key=key, request_id=rid("first"))
        quiet = {}
        quiet["replay"] = rid("replay")
        r = self.pay(me, o["id"], key=key, request_id=quiet["replay"])
        self.assertEqual(r.headers.get(REPLAYED), "true")
        quiet["double"] = rid("double")
        self.assertProblem(self.pay(me, o["id"], MASTERCARD, request_id=quiet["double"]), 409)
        quiet["luhn"] = rid("luhn")
        self.assertInvalid(self.pay(bob, b["id"], luhn_broken(VISA), request_id=quiet["luhn"]),
                           "card.number")
        quiet["expired"] = rid("expired")
        self.assertInvalid(self.pay(bob, b["id"], VISA, exp=last_month(),
                                    request_id=quiet["expired"]), "card.exp")
        quiet["other"] = rid("other")
        _, still_open = self.pending(me)
        self.assertProblem(self.pay(bob, still_open["id"], VISA, request_id=quiet["other"]), 404)
        quiet["reused"] = rid("reused")
        self.assertProblem(self.pay(me, o["id"], MASTERCARD, key=key, request_id=quiet["reused"]),
                           422, "idempotency_key_reused")
        # Barrier: a later payment's events have arrived, and the outboxes are empty.
        last = self.pay_ok(bob, b, request_id=rid("last"))
        log.wait(log.has("payment.events", last["id"], ["payment.succeeded"]),
                 what="payment.succeeded of the barrier payment")
        self.drained()
        log.catch_up()
        for what, corr in quiet.items():
            self.assertEqual(log.by_corr(corr), [], "%s produced events" % what)
        recs = self.distinct(log.by_key("payment.events", first["id"]))
        self.assertEqual([x.type for x in recs], ["payment.succeeded"], "a replay emitted again")
        paid = [x for x in self.distinct(log.by_key("order.events", o["id"]))
                if x.type == "order.paid"]
        self.assertEqual(len(paid), 1, paid)


if __name__ == "__main__":
    unittest.main()
