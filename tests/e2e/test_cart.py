"""CONTRACT 6 (cart) through HTTP: a private cart per user priced from the catalog, line
replacement and removal, and checkout into an order (cart emptied; out of stock leaves it as it
was; Idempotency-Key replays).

Uses test_orders.ShopCase (a cluster with catalog, identity, inventory, orders, cart and Kafka).
"""

import os
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_orders import (API, ORDERS, READY, REPLAYED, RFC3339_UTC, UNKNOWN_ID, WHY,  # noqa: E402
                         ShopCase, ids)

CART = API + "/cart"
CART_FIELDS = {"items", "total_cents", "currency", "updated_at"}
LINE_KEYS = ("product_id", "sku", "name", "quantity", "unit_price_cents", "line_total_cents")


def by_product(items):
    return {li["product_id"]: li for li in items}


def expected_line(product, quantity):
    return {"product_id": product["id"], "sku": product["sku"], "name": product["name"],
            "quantity": quantity, "unit_price_cents": product["price_cents"],
            "line_total_cents": product["price_cents"] * quantity}


@unittest.skipUnless(READY, WHY)
class TestCart(ShopCase):
    # --- helpers -------------------------------------------------------------------------------
    def cart(self, who):
        r = self.call("GET", CART, auth=who)
        self.assertStatus(r, 200)
        c = r.json()
        self.assertEqual(set(c) & CART_FIELDS, CART_FIELDS, "missing fields in %s" % c)
        return c

    def put_item(self, who, pid, quantity):
        return self.call("PUT", CART + "/items/" + pid, {"quantity": quantity}, auth=who)

    def set_item(self, who, pid, quantity):
        r = self.put_item(who, pid, quantity)
        self.assertStatus(r, 200)
        return r.json()

    def remove(self, who, pid):
        return self.call("DELETE", CART + "/items/" + pid, auth=who)

    def checkout(self, who, body, key=None):
        h = {"Idempotency-Key": key} if key else None
        return self.call("POST", CART + "/checkout", body, auth=who, headers=h)

    def assertLines(self, cart, *expected):
        """The cart holds exactly these lines (any order) and its total is their sum."""
        self.assertEqual(by_product([{k: li.get(k) for k in LINE_KEYS} for li in cart["items"]]),
                         by_product(expected))
        self.assertEqual(len(cart["items"]), len(expected), "duplicate lines: %s" % cart)
        self.assertEqual(cart["total_cents"], sum(li["line_total_cents"] for li in expected))

    def assertEmpty(self, cart):
        self.assertEqual(cart["items"], [])
        self.assertEqual(cart["total_cents"], 0)

    # --- tests ---------------------------------------------------------------------------------
    def test_a_new_cart_is_empty(self):
        self.assertEmpty(self.cart(self.customer()))

    def test_put_replaces_zero_removes_delete_removes(self):
        me = self.customer()
        a = self.product(stock=10, price_cents=1250, name="Cart widget")
        b = self.product(stock=10, price_cents=399, name="Cart gadget")
        c = self.set_item(me, a["id"], 2)
        self.assertLines(c, expected_line(a, 2))
        self.assertEqual(c["currency"], "USD")
        self.assertRegex(c["updated_at"], RFC3339_UTC)
        self.assertEqual(self.cart(me), c, "GET differs from the PUT's answer")
        c = self.set_item(me, b["id"], 1)
        self.assertLines(c, expected_line(a, 2), expected_line(b, 1))
        self.assertEqual(c["total_cents"], 2 * 1250 + 399)
        c = self.set_item(me, a["id"], 5)                 # replaces the quantity, no sum
        self.assertLines(c, expected_line(a, 5), expected_line(b, 1))
        c = self.set_item(me, a["id"], 0)                 # 0 removes the line
        self.assertLines(c, expected_line(b, 1))
        self.assertEqual(self.cart(me), c)
        r = self.remove(me, b["id"])
        self.assertStatus(r, 204)
        self.assertEqual(r.content, b"")
        self.assertEmpty(self.cart(me))
        # A cart reserves nothing.
        self.assertStock(a["id"], 10, 0)
        self.assertStock(b["id"], 10, 0)

    def test_invalid_puts_change_nothing(self):
        me = self.customer()
        a = self.product(stock=10)
        before = self.set_item(me, a["id"], 1)
        self.assertProblem(self.put_item(me, UNKNOWN_ID, 1), 404)
        for q in (-1, 1.5, "2", None, True):
            with self.subTest(quantity=q):
                self.assertInvalid(self.put_item(me, a["id"], q), "quantity")
        self.assertInvalid(self.call("PUT", CART + "/items/" + a["id"], {}, auth=me), "quantity")
        self.assertInvalid(self.call("PUT", CART + "/items/" + a["id"],
                                     {"quantity": 2, "unit_price_cents": 1}, auth=me),
                           "unit_price_cents")
        self.assertEqual(self.cart(me), before, "a refused PUT changed the cart")

    def test_carts_are_private(self):
        alice, bob = self.customer(), self.customer()
        a, b = self.products(2, stock=10)
        mine = self.set_item(alice, a["id"], 2)
        self.assertEmpty(self.cart(bob))
        self.assertLines(self.set_item(bob, b["id"], 3), expected_line(b, 3))
        self.assertIn(self.remove(bob, a["id"]).status_code, (204, 404))
        self.assertEqual(self.cart(alice), mine, "bob's cart writes reached alice's cart")
        self.assertLines(self.cart(bob), expected_line(b, 3))
        for method, path, body in (("GET", CART, None),
                                   ("PUT", CART + "/items/" + a["id"], {"quantity": 1}),
                                   ("DELETE", CART + "/items/" + a["id"], None),
                                   ("POST", CART + "/checkout", {"shipping_address_id": UNKNOWN_ID})):
            with self.subTest(method=method, path=path):
                self.assertUnauthorized(self.call(method, path, body))
        self.assertEqual(self.cart(alice), mine)

    def test_checkout_places_the_order_and_empties_the_cart(self):
        me = self.customer()
        addr = self.saved_address(me, city="Lisbon", country="PT", postal_code="1100-148")
        a = self.product(stock=10, price_cents=1250, name="Checkout widget")
        b = self.product(stock=10, price_cents=399, name="Checkout gadget")
        self.set_item(me, a["id"], 2)
        cart = self.set_item(me, b["id"], 1)
        r = self.checkout(me, {"shipping_address_id": addr["id"]})
        self.assertStatus(r, 201)
        o = r.json()
        self.assertOrderShape(o, me)
        self.assertEqual(r.headers.get("Location"), ORDERS + "/" + o["id"], dict(r.headers))
        self.assertEqual(by_product(o["items"]), by_product(
            [expected_line(a, 2), expected_line(b, 1)]))
        self.assertEqual(o["total_cents"], cart["total_cents"])
        self.assertEqual(o["currency"], cart["currency"])
        for k in ("name", "line1", "line2", "city", "postal_code", "country"):
            self.assertEqual(o["shipping_address"].get(k), addr[k], k)
        self.assertEqual(self.fetch(me, o["id"]), o)
        self.assertEqual(ids(self.list_all(me)), [o["id"]])
        self.assertEmpty(self.cart(me))
        self.assertStock(a["id"], 10, 2)
        self.assertStock(b["id"], 10, 1)
        # Nothing left to check out.
        self.assertProblem(self.checkout(me, {"shipping_address_id": addr["id"]}), 409,
                           "cart_empty")
        self.assertEqual(ids(self.list_all(me)), [o["id"]])

    def test_checkout_of_an_empty_cart_is_409(self):
        me = self.customer()
        addr = self.saved_address(me)
        self.assertProblem(self.checkout(me, {"shipping_address_id": addr["id"]}), 409,
                           "cart_empty")
        self.assertEqual(self.list_all(me), [])

    def test_checkout_validation_keeps_the_cart(self):
        me = self.customer()
        addr = self.saved_address(me)
        a = self.product(stock=10)
        cart = self.set_item(me, a["id"], 2)
        other = self.saved_address(self.customer())
        for body, field in (({}, "shipping_address_id"),
                            ({"shipping_address_id": UNKNOWN_ID}, "shipping_address_id"),
                            ({"shipping_address_id": other["id"]}, "shipping_address_id"),
                            ({"shipping_address_id": addr["id"], "colour": "red"}, "colour")):
            with self.subTest(body=body):
                self.assertInvalid(self.checkout(me, body), field)
        self.assertEqual(self.cart(me), cart, "a refused checkout changed the cart")
        self.assertStock(a["id"], 10, 0)
        self.assertEqual(self.list_all(me), [])

    def test_checkout_out_of_stock_keeps_the_cart(self):
        alice, bob = self.customer(), self.customer()
        addr = self.saved_address(alice)
        a = self.product(stock=3)
        b = self.product(stock=3)
        self.set_item(alice, a["id"], 2)
        cart = self.set_item(alice, b["id"], 1)
        self.order(bob, (a["id"], 2))                     # leaves 1 of a
        r = self.checkout(alice, {"shipping_address_id": addr["id"]})
        prob = self.assertProblem(r, 409, "out_of_stock")
        self.assertIn(a["id"], prob["detail"], "the detail names the short product")
        self.assertNotIn(b["id"], prob["detail"])
        self.assertEqual(self.cart(alice), cart, "a failed checkout changed the cart")
        self.assertStock(a["id"], 3, 2, "only bob's order holds a")
        self.assertStock(b["id"], 3, 0, "a failed checkout reserved b")
        self.assertEqual(self.list_all(alice), [])
        # Fix the cart to what is there, and it goes through.
        self.set_item(alice, a["id"], 1)
        self.assertStatus(self.checkout(alice, {"shipping_address_id": addr["id"]}), 201)
        self.assertStock(a["id"], 3, 3)
        self.assertEmpty(self.cart(alice))

    def test_checkout_idempotency(self):
        me = self.customer()
        addr, addr2 = self.saved_address(me), self.saved_address(me, city="Elsewhere")
        a = self.product(stock=10)
        self.set_item(me, a["id"], 2)
        key = uuid.uuid4().hex
        first = self.checkout(me, {"shipping_address_id": addr["id"]}, key=key)
        self.assertStatus(first, 201)
        self.assertNotEqual(first.headers.get(REPLAYED, "").lower(), "true")
        again = self.checkout(me, {"shipping_address_id": addr["id"]}, key=key)
        self.assertStatus(again, 201, "a replay is not cart_empty")
        self.assertEqual(again.headers.get(REPLAYED), "true", dict(again.headers))
        self.assertEqual(again.json(), first.json())
        self.assertEqual(ids(self.list_all(me)), [first.json()["id"]])
        self.assertStock(a["id"], 10, 2, "a replay reserved again")
        self.assertEmpty(self.cart(me))
        self.assertProblem(self.checkout(me, {"shipping_address_id": addr2["id"]}, key=key), 422,
                           "idempotency_key_reused")
        # Another user's use of the key is independent.
        other = self.customer()
        self.set_item(other, a["id"], 1)
        r = self.checkout(other, {"shipping_address_id": self.saved_address(other)["id"]}, key=key)
        self.assertStatus(r, 201)
        self.assertNotEqual(r.json()["id"], first.json()["id"])
        self.assertStock(a["id"], 10, 3)


if __name__ == "__main__":
    unittest.main()
