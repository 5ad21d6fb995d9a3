"""Abuse limits of CONTRACT 9, through HTTP.

- A customer holds at most MERCATO_MAX_PENDING_ORDERS (default 5) orders in pending_payment; one
  more (POST /orders or POST /cart/checkout) is 429 too_many_pending_orders with Retry-After, the
  seconds until the oldest of them expires. Paying or cancelling one frees a slot; the count is
  per customer; admins count like anyone.
- A wrong current_password on PUT /users/me/password counts toward the sign-in throttle of
  CONTRACT 3: after 5 failures for an email in 15 minutes, password changes and sign-ins alike
  are 429, with the right password too.
"""

import os
import sys
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import API  # noqa: E402
from identity_support import IdentityCase  # noqa: E402
from test_orders import DEFAULT_TTL_S, PENDING_CAP, ShopCase, lines, parse_time  # noqa: E402

VISA = "4242424242424242"
CART = API + "/cart"
LOGIN = API + "/auth/login"
PASSWORD = API + "/users/me/password"


def card():
    return {"number": VISA, "exp_month": 12, "exp_year": datetime.now(timezone.utc).year + 2, "cvc": "123"}


class TestPendingOrderCap(ShopCase):
    def assertCapped(self, r, oldest, msg=""):
        """429 too_many_pending_orders, Retry-After the seconds until oldest expires."""
        self.assertProblem(r, 429, "too_many_pending_orders")
        ra = r.headers.get("Retry-After", "")
        self.assertRegex(ra, r"^\d+$", "429 without delay-seconds Retry-After %s: %s" % (msg, dict(r.headers)))
        left = (parse_time(oldest["expires_at"]) - datetime.now(timezone.utc)).total_seconds()
        self.assertGreater(int(ra), 0, msg)
        self.assertLessEqual(int(ra), DEFAULT_TTL_S, msg)
        self.assertLess(abs(int(ra) - left), 10, "Retry-After %s, the oldest expires in %.0f s %s" % (ra, left, msg))

    def pay(self, who, oid):
        r = self.call("POST", API + "/payments", {"order_id": oid, "card": card()}, auth=who)
        self.assertStatus(r, 201, "fixture: paying %s" % oid)
        self.assertEqual(self.fetch(who, oid)["status"], "paid")

    def test_sixth_pending_order_is_429_until_one_is_paid_or_cancelled(self):
        who, other = self.customer(), self.customer()
        pid = self.product(stock=100)["id"]
        placed = [self.order(who, (pid, 1)) for _ in range(PENDING_CAP)]
        r = self.place(who, lines((pid, 1)), key="cap-" + uuid.uuid4().hex)
        self.assertCapped(r, placed[0], "for the sixth order")
        self.assertStock(pid, 100, PENDING_CAP, "after a refused order")

        # Per customer: another one orders as usual.
        self.order(other, (pid, 1))

        # Paying one frees a slot, and only one.
        self.pay(who, placed[0]["id"])
        self.order(who, (pid, 1))
        self.assertCapped(self.place(who, lines((pid, 1))), placed[1], "after the slot was taken again")

        # Cancelling one frees a slot.
        self.assertStatus(self.cancel(who, placed[1]["id"]), 200)
        self.order(who, (pid, 1))
        self.assertCapped(self.place(who, lines((pid, 1))), placed[2], "after the second slot was taken")
        self.awaitStock(pid, 100, PENDING_CAP + 1 + 1, "with who's 5 pending and 1 paid, and other's 1")

    def test_refused_key_is_not_kept_and_replays_still_answer(self):
        who = self.customer()
        pid = self.product(stock=100)["id"]
        first_key = "first-" + uuid.uuid4().hex
        placed = [self.order(who, (pid, 1), key=first_key)]
        placed += [self.order(who, (pid, 1)) for _ in range(PENDING_CAP - 1)]
        # A replay of an order placed before the cap was reached answers as it did.
        r = self.place(who, lines((pid, 1)), key=first_key)
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["id"], placed[0]["id"])
        self.assertEqual(r.headers.get("Idempotent-Replayed"), "true")
        # A refused key is not an outcome: once a slot is free, the same request goes through.
        key = "later-" + uuid.uuid4().hex
        self.assertCapped(self.place(who, lines((pid, 1)), key=key), placed[0])
        self.assertStatus(self.cancel(who, placed[0]["id"]), 200)
        r = self.place(who, lines((pid, 1)), key=key)
        self.assertStatus(r, 201)
        self.assertNotIn("Idempotent-Replayed", r.headers)

    def test_checkout_is_capped_and_the_cart_is_kept(self):
        who = self.customer()
        pid = self.product(stock=100)["id"]
        placed = [self.order(who, (pid, 1)) for _ in range(PENDING_CAP)]
        address = self.saved_address(who)
        self.assertStatus(self.call("PUT", CART + "/items/" + pid, {"quantity": 2}, auth=who), 200)
        key = "co-" + uuid.uuid4().hex
        r = self.call("POST", CART + "/checkout", {"shipping_address_id": address["id"]}, auth=who,
                      headers={"Idempotency-Key": key})
        self.assertCapped(r, placed[0], "for a checkout")
        cart = self.call("GET", CART, auth=who).json()
        self.assertEqual([(i["product_id"], i["quantity"]) for i in cart["items"]], [(pid, 2)],
                         "a refused checkout emptied the cart")
        self.pay(who, placed[0]["id"])
        r = self.call("POST", CART + "/checkout", {"shipping_address_id": address["id"]}, auth=who,
                      headers={"Idempotency-Key": key})
        self.assertStatus(r, 201)
        self.assertEqual(self.call("GET", CART, auth=who).json()["items"], [])

    def test_admins_count_like_customers(self):
        admin = self.admin()
        pid = self.product(stock=100)["id"]
        # The shared admin may hold orders of other tests of this class: fill up to the cap.
        placed = []
        while True:
            r = self.place(admin, lines((pid, 1)))
            if r.status_code == 429:
                break
            self.assertStatus(r, 201)
            placed.append(r.json())
            self.assertLessEqual(len(placed), PENDING_CAP, "the admin placed more than the cap allows")
        self.assertProblem(r, 429, "too_many_pending_orders")
        self.assertTrue(r.headers.get("Retry-After", "").isdigit(), dict(r.headers))


class TestPasswordChangeThrottle(IdentityCase):
    def change(self, who, current, new=None):
        return self.call("PUT", PASSWORD, {"current_password": current,
                                           "new_password": new or "fresh-%s-Pw" % uuid.uuid4().hex[:12]},
                         auth=who)

    def assertThrottled(self, r, msg=""):
        self.assertProblem(r, 429, "too_many_attempts")
        ra = r.headers.get("Retry-After", "")
        self.assertRegex(ra, r"^\d+$", "429 without delay-seconds Retry-After %s: %s" % (msg, dict(r.headers)))
        self.assertGreater(int(ra), 0, msg)
        self.assertLessEqual(int(ra), 15 * 60, msg)

    def test_five_wrong_current_passwords_then_429_for_login_too(self):
        p, other = self.customer(), self.customer()
        for i in range(5):
            prob = self.assertProblem(self.change(p, "wrong-%d-%s" % (i, uuid.uuid4().hex)), 422, "validation_failed")
            self.assertEqual([e["field"] for e in prob.get("errors", [])], ["current_password"], prob)
        # The sixth is refused with the right password, and so is signing in.
        self.assertThrottled(self.change(p, p.password), "for a password change with the right password")
        self.assertThrottled(self.login_raw(p.email, p.password), "for a login with the right password")
        # The password did not change: after the window it still works (not waited for here);
        # another account is not affected.
        self.assertStatus(self.change(other, other.password, "other-%s-Pw" % uuid.uuid4().hex[:12]), 204)

    def test_failed_logins_throttle_password_changes(self):
        p = self.customer()
        for i in range(5):
            self.assertUnauthorized(self.login_raw(p.email, "wrong-%d-%s" % (i, uuid.uuid4().hex)))
        self.assertThrottled(self.change(p, p.password), "for a password change after 5 failed logins")

    def test_failures_mix_and_a_bad_new_password_reveals_nothing(self):
        p = self.customer()
        # A new password the policy refuses is answered before the current one is checked, so
        # the answer does not tell whether the current one was right, and nothing is counted.
        for current in (p.password, "wrong-" + uuid.uuid4().hex):
            prob = self.assertProblem(self.change(p, current, "password123"), 422)
            self.assertEqual([e["field"] for e in prob.get("errors", [])], ["new_password"], prob)
        for i in range(3):
            self.assertUnauthorized(self.login_raw(p.email, "wrong-%d-%s" % (i, uuid.uuid4().hex)))
        for i in range(2):
            self.assertProblem(self.change(p, "wrong-%d-%s" % (i, uuid.uuid4().hex)), 422)
        self.assertThrottled(self.login_raw(p.email, p.password), "after 3 failed logins and 2 wrong passwords")


if __name__ == "__main__":
    import unittest
    unittest.main()
