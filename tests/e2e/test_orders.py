"""CONTRACT 6 (orders) through HTTP: placing orders against real stock, all-or-nothing
reservations, prices from the catalog, ownership, the status machine and its stock effects,
Idempotency-Key, reservation expiry, validation, and 200 buyers racing for 50 units.

Stock records are born from product.created (consumed from Kafka), so every cluster here runs
mercato-kafka-dev and mercato-relay. Tests isolate themselves with their own products and
customers, so they may run in any order and alone. ShopCase holds the helpers test_cart.py
shares; it has no tests of its own.
"""

import collections
import json
import os
import re
import sys
import threading
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (BIN_DIR, DEFAULT_ACTORS, Cluster, ClusterTestCase, HarnessError,  # noqa: E402
                     Principal, strong_password, unique_email, wait_for)

API = "/api/v1"
ORDERS = API + "/orders"
SHOP_ACTORS = tuple(dict.fromkeys(tuple(DEFAULT_ACTORS) +
                                  ("catalog", "identity", "inventory", "orders", "cart")))
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
ORDER_FIELDS = {"id", "user_id", "status", "items", "total_cents", "currency",
                "shipping_address", "created_at", "updated_at", "expires_at"}
LINE_FIELDS = {"product_id", "sku", "name", "quantity", "unit_price_cents", "line_total_cents"}
STATUSES = ("pending_payment", "paid", "shipped", "delivered", "cancelled", "refunded", "expired")
LEGAL = {"pending_payment": {"paid", "cancelled"}, "paid": {"shipped", "cancelled"},
         "shipped": {"delivered", "refunded"}, "delivered": {"refunded"}}
#  The admin PUTs that bring a fresh pending_payment order into each state.
PATH_TO = {"pending_payment": [], "paid": ["paid"], "shipped": ["paid", "shipped"],
           "delivered": ["paid", "shipped", "delivered"], "cancelled": ["cancelled"],
           "refunded": ["paid", "shipped", "refunded"]}
DEFAULT_TTL_S = 900
PENDING_CAP = 5           # MERCATO_MAX_PENDING_ORDERS by default: unpaid orders per customer
SETTLE_S = 10.0           # how long a status change's stock effect may take to show
UNKNOWN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
REPLAYED = "Idempotent-Replayed"

READY = all(os.access(os.path.join(BIN_DIR, b), os.X_OK)
            for b in ("mercato-kafka-dev", "mercato-relay"))
WHY = "mercato-kafka-dev / mercato-relay not built in %s" % BIN_DIR


# --- plain helpers (thread-safe: no shared session) -----------------------------------------
def not_busy(send, what, timeout=60):
    """send() until the answer is not 503: the edge's argon2 pool is bounded and refuses a
    burst of registrations and logins with 503 + Retry-After instead of queueing them."""
    [r] = wait_for(lambda: (lambda r: None if r.status_code == 503 else [r])(send()), timeout,
                   interval=0.05, what=what)
    return r


def new_customer(cluster):
    """Register and log in a fresh customer (retrying the edge's 503 busy)."""
    email, password = unique_email("shop"), strong_password()
    name = "Shopper " + email.split("@")[0]
    r = not_busy(lambda: requests.post(cluster.api + "/auth/register", json={
        "email": email, "password": password, "name": name}, timeout=30), "register " + email)
    if r.status_code != 201:
        raise HarnessError("register %s: %d %s" % (email, r.status_code, r.text[:300]))
    t = not_busy(lambda: requests.post(cluster.api + "/auth/login", json={
        "email": email, "password": password}, timeout=30), "login " + email)
    if t.status_code != 200:
        raise HarnessError("login %s: %d %s" % (email, t.status_code, t.text[:300]))
    return Principal(email, password, name, user=r.json(), tokens=t.json())


def new_customers(cluster, n, workers=8):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda _: new_customer(cluster), range(n)))


def ship_to(**over):
    body = {"name": "Grace Hopper", "line1": "7 Compiler Road", "line2": "Unit 3",
            "city": "Arlington", "postal_code": "22201", "country": "US"}
    body.update(over)
    return body


def lines(*pairs):
    return [{"product_id": pid, "quantity": q} for pid, q in pairs]


def order_body(items, address="inline", **over):
    """An order body; address is "inline", an address id, or None (no address at all)."""
    body = {"items": items}
    if address == "inline":
        body["shipping_address"] = ship_to()
    elif address is not None:
        body["shipping_address_id"] = address
    body.update(over)
    return body


def parse_time(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def rfc3339(dt):
    dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (dt.microsecond // 1000)


def ids(orders):
    return [o["id"] for o in orders]


class ShopCase(ClusterTestCase):
    """A cluster with catalog, identity, inventory, orders and cart, and Kafka (stock records
    come from product.created). ENV adds variables to the cluster's environment."""

    KAFKA = True
    ACTORS = SHOP_ACTORS
    ENV = None

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(actors=cls.ACTORS, kafka=cls.KAFKA, env=cls.ENV)
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()

    # --- people --------------------------------------------------------------------------------
    def admin(self):
        return self.cluster.admin_headers()

    def customer(self):
        return new_customer(self.cluster)

    def saved_address(self, who, **over):
        r = self.call("POST", API + "/users/me/addresses", ship_to(**over), auth=who)
        self.assertStatus(r, 201, "fixture: an address of %s" % who)
        return r.json()

    # --- products and stock --------------------------------------------------------------------
    def product_body(self, stock, price_cents, name):
        body = {"sku": "ORD-" + uuid.uuid4().hex[:12], "name": name or "Order thing",
                "description": "a product for order tests", "category": "orders-e2e",
                "price_cents": price_cents}
        if stock is not None:
            body["initial_stock"] = stock
        return body

    def products(self, n, stock=10, price_cents=1250, name=None):
        """n new products with stock records (created first, then waited for together)."""
        made = []
        for _ in range(n):
            r = self.call("POST", API + "/products", self.product_body(stock, price_cents, name),
                          auth=self.admin())
            self.assertStatus(r, 201, "fixture: admin creates a product")
            made.append(r.json())
        for p in made:
            wait_for(lambda: self.get(API + "/inventory/" + p["id"]).status_code == 200, 20,
                     what="the stock record of %s" % p["id"])
        return made

    def product(self, stock=10, price_cents=1250, name=None):
        return self.products(1, stock, price_cents, name)[0]

    def stock(self, pid):
        r = self.get(API + "/inventory/" + pid)
        self.assertStatus(r, 200)
        s = r.json()
        return {k: s[k] for k in ("on_hand", "reserved", "available")}

    def assertStock(self, pid, on_hand, reserved, msg=""):
        """The stock is exactly this now. Right for what an answer waits for: a 201 comes only
        once every line is reserved, and a refused order holds nothing."""
        self.assertEqual(self.stock(pid), {"on_hand": on_hand, "reserved": reserved,
                                           "available": on_hand - reserved},
                         "stock of %s %s" % (pid, msg))

    def awaitStock(self, pid, on_hand, reserved, msg="", timeout=SETTLE_S):
        """The stock becomes this. For the effects of a status change (release on cancel or
        expiry, sale on shipping): the order's answer may come before inventory applied them."""
        want = {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}
        try:
            wait_for(lambda: self.stock(pid) == want, timeout, what="stock of %s" % pid)
        except HarnessError:
            self.assertEqual(self.stock(pid), want, "stock of %s %s (after waiting %.0f s)" % (
                pid, msg, timeout))

    def assertStockBehindBarrier(self, pid, on_hand, reserved, msg=""):
        """The stock is exactly this, also for a stray effect still on its way: a 1-unit order
        placed now (answered only once reserved) must find exactly that and add exactly 1."""
        self.assertStock(pid, on_hand, reserved, msg)
        self.order(self.barrier_customer(), (pid, 1))
        self.assertStock(pid, on_hand, reserved + 1, msg + " (behind a 1-unit barrier order)")

    def barrier_customer(self):
        """Whose barrier orders (left unpaid) are placed: a new customer whenever the last one
        holds as many unpaid orders as the cap allows."""
        n = self.__dict__.get("_barriers", 0)
        if n % PENDING_CAP == 0:
            self._barrier = self.customer()
        self._barriers = n + 1
        return self._barrier

    # --- orders --------------------------------------------------------------------------------
    def place(self, who, items, key=None, address="inline", **over):
        h = {"Idempotency-Key": key} if key else None
        return self.call("POST", ORDERS, order_body(items, address, **over), auth=who, headers=h)

    def order(self, who, *pairs, **kw):
        """Place an order of (product_id, quantity) pairs; asserts 201 and returns it."""
        r = self.place(who, lines(*pairs), **kw)
        self.assertStatus(r, 201)
        return r.json()

    def fetch(self, who, oid):
        r = self.call("GET", ORDERS + "/" + oid, auth=who)
        self.assertStatus(r, 200)
        return r.json()

    def put_status(self, oid, status, auth=None, headers=None):
        return self.call("PUT", ORDERS + "/%s/status" % oid, {"status": status},
                         auth=self.admin() if auth is None else auth, headers=headers)

    def cancel(self, who, oid):
        return self.call("POST", ORDERS + "/%s/cancel" % oid, auth=who)

    def move(self, oid, status):
        """Admin PUT status; asserts 200 and the new status, returns the order."""
        r = self.put_status(oid, status)
        self.assertStatus(r, 200, "%s -> %s" % (oid, status))
        self.assertEqual(r.json()["status"], status, r.json())
        return r.json()

    def list_page(self, who, **params):
        r = self.call("GET", ORDERS, auth=who, params=params)
        self.assertStatus(r, 200)
        page = r.json()
        self.assertIsInstance(page.get("items"), list, page)
        self.assertIn("next_cursor", page, page)
        return page

    def list_all(self, who, max_pages=200, **params):
        """Every order the listing yields, following next_cursor."""
        items, cursor = [], None
        for _ in range(max_pages):
            q = dict(params)
            if cursor is not None:
                q["cursor"] = cursor
            page = self.list_page(who, **q)
            if "limit" in params:
                self.assertLessEqual(len(page["items"]), int(params["limit"]), page)
            items.extend(page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                return items
            self.assertIsInstance(cursor, str)
        self.fail("order pagination does not terminate")

    def assertIllegal(self, r, msg=""):
        self.assertStatus(r, 409, msg)
        return self.assertProblem(r, 409, "illegal_transition")

    def assertInvalid(self, r, field=None, msg=""):
        self.assertStatus(r, 422, msg)
        prob = self.assertProblem(r, 422)
        if field is not None:
            errs = prob.get("errors")
            self.assertIsInstance(errs, list, "422 without errors[]: %s" % prob)
            self.assertTrue(any(field in str(e.get("field")) for e in errs),
                            "no error names %r (%s): %s" % (field, msg, prob))
        return prob

    def assertOrderShape(self, o, who, status="pending_payment"):
        self.assertEqual(set(o) & ORDER_FIELDS, ORDER_FIELDS, "missing fields in %s" % o)
        self.assertIsInstance(o["id"], str)
        self.assertTrue(o["id"])
        self.assertEqual(o["user_id"], who.id)
        self.assertEqual(o["status"], status)
        for k in ("created_at", "updated_at", "expires_at"):
            self.assertRegex(o[k], RFC3339_UTC, k)
        for line in o["items"]:
            self.assertEqual(set(line) & LINE_FIELDS, LINE_FIELDS, line)
            self.assertEqual(line["line_total_cents"], line["unit_price_cents"] * line["quantity"],
                             line)
        self.assertEqual(o["total_cents"], sum(li["line_total_cents"] for li in o["items"]), o)


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestPlaceOrder(ShopCase):
    def test_order_snapshot_location_and_reservation(self):
        me = self.customer()
        a, b = self.products(2, stock=10, price_cents=1250, name="Widget")
        b_price = 399
        self.assertStatus(self.call("PATCH", API + "/products/" + b["id"], {"price_cents": b_price},
                                    auth=self.admin(), content_type="application/merge-patch+json"),
                          200)
        r = self.place(me, lines((a["id"], 3), (b["id"], 1)), notes="leave at the door")
        self.assertStatus(r, 201)
        o = r.json()
        self.assertOrderShape(o, me)
        self.assertEqual(o["currency"], "USD")
        self.assertEqual(o["notes"], "leave at the door")
        self.assertEqual(o["items"], [
            {"product_id": a["id"], "sku": a["sku"], "name": "Widget", "quantity": 3,
             "unit_price_cents": 1250, "line_total_cents": 3750},
            {"product_id": b["id"], "sku": b["sku"], "name": "Widget", "quantity": 1,
             "unit_price_cents": b_price, "line_total_cents": b_price}])
        self.assertEqual(o["total_cents"], 3750 + b_price)
        for k, v in ship_to().items():
            self.assertEqual(o["shipping_address"].get(k), v, k)
        ttl = (parse_time(o["expires_at"]) - parse_time(o["created_at"])).total_seconds()
        self.assertAlmostEqual(ttl, DEFAULT_TTL_S, delta=2, msg="expires_at = created_at + TTL")
        # Location names the order and resolves to it, with an ETag.
        self.assertEqual(r.headers.get("Location"), ORDERS + "/" + o["id"], dict(r.headers))
        g = self.call("GET", r.headers["Location"], auth=me)
        self.assertStatus(g, 200)
        self.assertEqual(g.json(), o)
        self.assertTrue(g.headers.get("ETag"), "GET without ETag: %s" % dict(g.headers))
        # Every line is reserved: reserved += qty, available -= qty, on_hand unchanged.
        self.assertStock(a["id"], 10, 3)
        self.assertStock(b["id"], 10, 1)

    def test_saved_address_is_copied_into_the_order(self):
        me = self.customer()
        addr = self.saved_address(me, city="Oslo", country="NO", postal_code="0150")
        p = self.product(stock=5)
        o = self.order(me, (p["id"], 1), address=addr["id"])
        for k in ("name", "line1", "line2", "city", "postal_code", "country"):
            self.assertEqual(o["shipping_address"].get(k), addr[k], k)
        # A snapshot: deleting the address later does not change the order.
        self.assertStatus(self.call("DELETE", API + "/users/me/addresses/" + addr["id"], auth=me),
                          204)
        self.assertEqual(self.fetch(me, o["id"])["shipping_address"], o["shipping_address"])

    def test_prices_and_names_come_from_the_catalog_and_stay_in_the_order(self):
        me = self.customer()
        p = self.product(stock=20, price_cents=1000, name="Old name")
        first = self.order(me, (p["id"], 2))
        self.assertEqual((first["items"][0]["unit_price_cents"], first["total_cents"]), (1000, 2000))
        r = self.call("PATCH", API + "/products/" + p["id"], {"price_cents": 1500, "name": "New name"},
                      auth=self.admin(), content_type="application/merge-patch+json")
        self.assertStatus(r, 200)
        second = self.order(me, (p["id"], 2))
        self.assertEqual(second["items"][0]["name"], "New name")
        self.assertEqual((second["items"][0]["unit_price_cents"], second["total_cents"]),
                         (1500, 3000))
        self.assertEqual(self.fetch(me, first["id"]), first, "an order keeps its price snapshot")
        # A client cannot set the price.
        r = self.call("POST", ORDERS, order_body([{"product_id": p["id"], "quantity": 1,
                                                   "unit_price_cents": 1}]), auth=me)
        self.assertInvalid(r, "unit_price_cents")
        # A deleted product cannot be ordered, and old orders keep their snapshot.
        self.assertStatus(self.call("DELETE", API + "/products/" + p["id"], auth=self.admin()), 204)
        self.assertEqual(self.fetch(me, first["id"]), first)
        self.assertEqual(self.fetch(me, second["id"]), second)
        self.assertInvalid(self.place(me, lines((p["id"], 1))), "items[0].product_id")

    def test_out_of_stock_is_all_or_nothing(self):
        me = self.customer()
        a, b, c = self.products(3, stock=5)
        self.order(me, (c["id"], 3))                      # c: 2 left
        before = {p["id"]: self.stock(p["id"]) for p in (a, b, c)}
        r = self.place(me, lines((a["id"], 3), (b["id"], 3), (c["id"], 3)))
        prob = self.assertProblem(r, 409, "out_of_stock")
        self.assertIn(c["id"], prob["detail"], "the detail names the short product")
        for p in (a, b):
            self.assertNotIn(p["id"], prob["detail"], "only the short product is named")
        self.assertEqual({p["id"]: self.stock(p["id"]) for p in (a, b, c)}, before,
                         "a refused order reserved something")
        # Two short lines: both named, still nothing reserved.
        r = self.place(me, lines((a["id"], 6), (b["id"], 1), (c["id"], 3)))
        prob = self.assertProblem(r, 409, "out_of_stock")
        self.assertIn(a["id"], prob["detail"])
        self.assertIn(c["id"], prob["detail"])
        self.assertEqual({p["id"]: self.stock(p["id"]) for p in (a, b, c)}, before)
        self.assertEqual(len(self.list_all(me)), 1, "a refused order was stored")
        # What is there can still be bought, exactly.
        self.order(me, (a["id"], 3), (b["id"], 3), (c["id"], 2))
        self.assertStock(a["id"], 5, 3)
        self.assertStock(b["id"], 5, 3)
        self.assertStock(c["id"], 5, 5)

    def test_limits_are_inclusive(self):
        me = self.customer()
        big = self.product(stock=1000)
        o = self.order(me, (big["id"], 1000))
        self.assertEqual(o["items"][0]["quantity"], 1000)
        self.assertStock(big["id"], 1000, 1000)
        many = self.products(100, stock=1, price_cents=100)
        o = self.order(me, *[(p["id"], 1) for p in many])
        self.assertEqual([li["product_id"] for li in o["items"]], [p["id"] for p in many])
        self.assertEqual(o["total_cents"], 100 * 100)
        for p in (many[0], many[-1]):
            self.assertStock(p["id"], 1, 1)


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestValidation(ShopCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.me = new_customer(cls.cluster)

    def setUp(self):
        super().setUp()
        self.p = self.product(stock=10)
        self.pid = self.p["id"]

    def tearDown(self):
        # Nothing a refused request carried was reserved or stored.
        self.assertStock(self.pid, 10, 0, "after refused orders")
        self.assertEqual(self.list_all(self.me), [], "a refused order was stored")

    def test_quantity_bounds(self):
        for q in (0, -1, 1001, 1.5, "1", None, True):
            with self.subTest(quantity=q):
                self.assertInvalid(self.place(self.me, lines((self.pid, q))), "quantity")
        self.assertInvalid(self.place(self.me, [{"product_id": self.pid}]), "quantity")
        self.assertInvalid(self.place(self.me, [{"quantity": 1}]), "product_id")

    def test_line_count_bounds(self):
        self.assertInvalid(self.place(self.me, []), "items")
        self.assertInvalid(self.place(self.me, lines(*[(self.pid, 1)] * 101)), "items")
        self.assertInvalid(self.place(self.me, {"product_id": self.pid, "quantity": 1}), "items")
        body = order_body(lines((self.pid, 1)))
        del body["items"]
        self.assertInvalid(self.call("POST", ORDERS, body, auth=self.me), "items")

    def test_unknown_and_read_only_fields(self):
        for f, v in (("total_cents", 1), ("status", "paid"), ("user_id", "someone"),
                     ("id", UNKNOWN_ID), ("currency", "EUR"), ("colour", "red")):
            with self.subTest(field=f):
                self.assertInvalid(self.place(self.me, lines((self.pid, 1)), **{f: v}), f)
        for f, v in (("unit_price_cents", 1), ("line_total_cents", 1), ("sku", "x"),
                     ("colour", "red")):
            with self.subTest(line_field=f):
                item = {"product_id": self.pid, "quantity": 1, f: v}
                self.assertInvalid(self.place(self.me, [item]), f)
        self.assertInvalid(self.place(self.me, lines((self.pid, 1)), notes=5), "notes")

    def test_exactly_one_address_form(self):
        addr = self.saved_address(self.me)
        both = order_body(lines((self.pid, 1)), shipping_address_id=addr["id"])
        self.assertIn("shipping_address", both)
        self.assertInvalid(self.call("POST", ORDERS, both, auth=self.me), "shipping_address")
        self.assertInvalid(self.place(self.me, lines((self.pid, 1)), address=None),
                           "shipping_address")
        self.assertInvalid(self.place(self.me, lines((self.pid, 1)), address=UNKNOWN_ID),
                           "shipping_address_id")
        other = self.saved_address(self.customer())
        self.assertInvalid(self.place(self.me, lines((self.pid, 1)), address=other["id"]),
                           "shipping_address_id", "another user's address")
        for f in ("name", "line1", "city", "postal_code", "country"):
            with self.subTest(missing=f):
                a = ship_to()
                del a[f]
                self.assertInvalid(self.place(self.me, lines((self.pid, 1)), address=None,
                                              shipping_address=a), f)
        for f, v in (("country", "USA"), ("colour", "red")):
            with self.subTest(field=f, value=v):
                self.assertInvalid(self.place(self.me, lines((self.pid, 1)), address=None,
                                              shipping_address=ship_to(**{f: v})), f)

    def test_unknown_product_names_its_line(self):
        # Repeated: an unknown product is 422 every time, never whichever failure comes first
        # (an unknown product has no stock either).
        for i in range(10):
            with self.subTest(attempt=i):
                self.assertInvalid(self.place(self.me, lines((self.pid, 1), (UNKNOWN_ID, 1))),
                                   "items[1].product_id")
                self.assertInvalid(self.place(self.me, lines((UNKNOWN_ID, 1), (self.pid, 1))),
                                   "items[0].product_id")

    def test_no_token_is_401(self):
        self.assertUnauthorized(self.call("POST", ORDERS, order_body(lines((self.pid, 1)))))
        self.assertUnauthorized(self.call("POST", ORDERS, order_body(lines((self.pid, 1))),
                                          auth="not-a-token"))
        self.assertUnauthorized(self.call("GET", ORDERS))
        self.assertUnauthorized(self.call("GET", ORDERS + "/" + UNKNOWN_ID))
        self.assertUnauthorized(self.call("POST", ORDERS + "/%s/cancel" % UNKNOWN_ID))
        self.assertUnauthorized(self.call("PUT", ORDERS + "/%s/status" % UNKNOWN_ID,
                                          {"status": "paid"}))

    def test_malformed_and_non_json_bodies(self):
        self.assertProblem(self.call("POST", ORDERS, data='{"items": [', auth=self.me), 400)
        self.assertProblem(self.call("POST", ORDERS, data=json.dumps(order_body(
            lines((self.pid, 1)))), auth=self.me, content_type="text/plain"), 415)


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestOwnershipAndListing(ShopCase):
    def test_only_owner_and_admin_see_an_order(self):
        alice, bob = self.customer(), self.customer()
        p = self.product(stock=10)
        o = self.order(alice, (p["id"], 2))
        self.assertProblem(self.call("GET", ORDERS + "/" + o["id"], auth=bob), 404)
        self.assertProblem(self.cancel(bob, o["id"]), 404)
        self.assertNotIn(o["id"], ids(self.list_all(bob)))
        self.assertEqual(self.fetch(alice, o["id"]), o, "bob's cancel changed alice's order")
        self.assertStock(p["id"], 10, 2)
        self.assertEqual(self.fetch(self.admin(), o["id"]), o)
        self.assertEqual(ids(self.list_all(alice)), [o["id"]])
        self.assertProblem(self.call("GET", ORDERS + "/" + UNKNOWN_ID, auth=alice), 404)
        self.assertProblem(self.cancel(alice, UNKNOWN_ID), 404)

    def test_customer_list_is_own_newest_first_and_pages(self):
        alice, bob = self.customer(), self.customer()
        p = self.product(stock=50)
        made = [self.order(alice, (p["id"], 1)) for _ in range(5)]
        self.order(bob, (p["id"], 1))
        newest_first = list(reversed(ids(made)))
        self.assertEqual(ids(self.list_all(alice)), newest_first)
        self.assertEqual(ids(self.list_all(alice, limit=2)), newest_first,
                         "paging with limit=2 skips, repeats or reorders orders")
        first = self.list_page(alice, limit=2)
        self.assertEqual(len(first["items"]), 2)
        self.assertIsNotNone(first["next_cursor"])
        self.assertEqual(self.list_page(alice, limit=2)["items"], first["items"])

    def test_admin_sees_all_and_filters(self):
        alice, bob = self.customer(), self.customer()
        p = self.product(stock=50)
        a1 = self.order(alice, (p["id"], 1))
        a2 = self.order(alice, (p["id"], 1))
        a3 = self.order(alice, (p["id"], 1))
        b1 = self.order(bob, (p["id"], 1))
        self.assertStatus(self.cancel(alice, a2["id"]), 200)
        adm = self.admin()

        everything = ids(self.list_all(adm, limit=100))
        for o in (a1, a2, a3, b1):
            self.assertIn(o["id"], everything, "the admin list misses an order")
        self.assertEqual(ids(self.list_all(adm, user_id=alice.id)),
                         [a3["id"], a2["id"], a1["id"]])
        self.assertEqual(ids(self.list_all(adm, user_id=alice.id, limit=2)),
                         [a3["id"], a2["id"], a1["id"]], "admin paging with a filter")
        self.assertEqual(ids(self.list_all(adm, user_id=bob.id)), [b1["id"]])
        self.assertEqual(ids(self.list_all(adm, user_id=alice.id, status="cancelled")),
                         [a2["id"]])
        self.assertEqual(ids(self.list_all(adm, user_id=alice.id, status="pending_payment")),
                         [a3["id"], a1["id"]])
        cancelled = self.list_all(adm, status="cancelled", limit=100)
        self.assertIn(a2["id"], ids(cancelled))
        self.assertEqual({o["status"] for o in cancelled}, {"cancelled"})
        self.assertEqual({o["user_id"] for o in self.list_all(adm, user_id=bob.id)}, {bob.id})

        # from/to bound created_at (bounds a second away from every order: inclusivity aside).
        t1, t3 = parse_time(a1["created_at"]), parse_time(a3["created_at"])
        sec = timedelta(seconds=1)
        mine = lambda **q: ids(self.list_all(adm, user_id=alice.id, **q))  # noqa: E731
        self.assertEqual(mine(**{"from": rfc3339(t1 - sec)}), [a3["id"], a2["id"], a1["id"]])
        self.assertEqual(mine(**{"from": rfc3339(t3 + sec)}), [])
        self.assertEqual(mine(to=rfc3339(t3 + sec)), [a3["id"], a2["id"], a1["id"]])
        self.assertEqual(mine(to=rfc3339(t1 - sec)), [])
        self.assertEqual(mine(**{"from": rfc3339(t1 - sec), "to": rfc3339(t3 + sec)}),
                         [a3["id"], a2["id"], a1["id"]])
        # A bound strictly between two orders splits them (when the clock tells them apart).
        mid = t1 + (t3 - t1) / 2
        mid = mid.replace(microsecond=mid.microsecond // 1000 * 1000)
        if t1 < mid < t3:
            got_from, got_to = mine(**{"from": rfc3339(mid)}), mine(to=rfc3339(mid))
            self.assertIn(a3["id"], got_from)
            self.assertNotIn(a1["id"], got_from)
            self.assertIn(a1["id"], got_to)
            self.assertNotIn(a3["id"], got_to)
            # both bounds are inclusive: an order created at mid itself is in both lists
            self.assertEqual(sorted(set(got_from + got_to)), sorted(ids([a1, a2, a3])))

    def test_customer_cannot_widen_the_list(self):
        alice, bob = self.customer(), self.customer()
        p = self.product(stock=5)
        b1 = self.order(bob, (p["id"], 1))
        r = self.call("GET", ORDERS, auth=alice, params={"user_id": bob.id})
        self.assertIn(r.status_code, (200, 403), r.text[:300])
        if r.status_code == 200:
            self.assertNotIn(b1["id"], ids(r.json()["items"]))


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestStateMachine(ShopCase):
    def pending(self, stock=10, qty=3):
        """A customer, a product and a pending_payment order of qty units of it."""
        who = self.customer()
        p = self.product(stock=stock)
        o = self.order(who, (p["id"], qty))
        self.assertStock(p["id"], stock, qty, "after placing")
        return who, p["id"], o

    def test_pay_ship_deliver_refund(self):
        who, pid, o = self.pending(10, 3)
        last = o
        for status, on_hand, reserved in (("paid", 10, 3), ("shipped", 7, 0),
                                          ("delivered", 7, 0)):
            got = self.move(o["id"], status)
            self.assertEqual(self.fetch(who, o["id"]), got)
            self.assertEqual({k: got[k] for k in ("items", "total_cents", "user_id", "created_at")},
                             {k: o[k] for k in ("items", "total_cents", "user_id", "created_at")})
            self.assertGreaterEqual(parse_time(got["updated_at"]), parse_time(last["updated_at"]))
            self.awaitStock(pid, on_hand, reserved, "after " + status)
            last = got
        self.assertStockBehindBarrier(pid, 7, 0, "delivered sells nothing more")
        self.move(o["id"], "refunded")
        self.assertEqual(self.fetch(who, o["id"])["status"], "refunded")

    def test_shipped_can_be_refunded(self):
        who, pid, o = self.pending(10, 4)
        for s in ("paid", "shipped", "refunded"):
            self.move(o["id"], s)
        self.assertEqual(self.fetch(who, o["id"])["status"], "refunded")
        wait_for(lambda: self.stock(pid)["reserved"] == 0, SETTLE_S,
                 what="the shipped units of %s leave reserved" % pid)

    def test_cancellations_release_stock_once(self):
        # Owner cancels a pending order, while another order holds 2 of the same product.
        who, pid, o = self.pending(10, 3)
        self.order(self.customer(), (pid, 2))
        self.assertStock(pid, 10, 5)
        r = self.cancel(who, o["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "cancelled")
        self.assertEqual(self.fetch(who, o["id"]), r.json())
        self.awaitStock(pid, 10, 2, "after cancelling")
        self.assertIllegal(self.cancel(who, o["id"]), "cancelling twice")
        self.assertIllegal(self.put_status(o["id"], "cancelled"), "cancelling twice by PUT")
        self.assertStockBehindBarrier(pid, 10, 2, "a second cancel released stock again")
        # Owner cancels a paid order.
        who, pid, o = self.pending(10, 2)
        self.move(o["id"], "paid")
        r = self.cancel(who, o["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "cancelled")
        self.awaitStock(pid, 10, 0, "after cancelling a paid order")
        # Admin cancels: by PUT from pending, by PUT from paid, by POST cancel.
        for path in (["cancelled"], ["paid", "cancelled"]):
            who, pid, o = self.pending(10, 5)
            for s in path:
                self.move(o["id"], s)
            self.awaitStock(pid, 10, 0, "after admin %s" % path)
        who, pid, o = self.pending(10, 1)
        r = self.cancel(self.admin(), o["id"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "cancelled")
        self.awaitStock(pid, 10, 0, "after an admin's cancel")

    def test_illegal_transitions_change_nothing(self):
        admin = self.admin()
        for state, path in PATH_TO.items():
            with self.subTest(state=state):
                who, pid, o = self.pending(10, 3)
                for s in path:
                    self.move(o["id"], s)
                    if s == "shipped":
                        self.awaitStock(pid, 7, 0, "after shipping")
                    elif s == "cancelled":
                        self.awaitStock(pid, 10, 0, "after cancelling")
                before, stock = self.fetch(admin, o["id"]), self.stock(pid)
                for target in STATUSES:
                    if target in LEGAL.get(state, ()):
                        continue
                    self.assertIllegal(self.put_status(o["id"], target),
                                       "%s -> %s" % (state, target))
                if state not in ("pending_payment", "paid"):
                    self.assertIllegal(self.cancel(who, o["id"]), "cancel from " + state)
                    self.assertIllegal(self.cancel(admin, o["id"]), "admin cancel from " + state)
                self.assertEqual(self.fetch(admin, o["id"]), before,
                                 "a refused transition changed the order")
                self.assertStockBehindBarrier(pid, stock["on_hand"], stock["reserved"],
                                              "a refused transition moved stock")

    def test_status_change_is_admin_only_and_validated(self):
        who, pid, o = self.pending(10, 2)
        self.assertProblem(self.put_status(o["id"], "paid", auth=who), 403)
        self.assertProblem(self.put_status(o["id"], "cancelled", auth=self.customer()), 403)
        self.assertUnauthorized(self.put_status(o["id"], "paid", auth={}))
        self.assertProblem(self.put_status(UNKNOWN_ID, "paid"), 404)
        self.assertInvalid(self.put_status(o["id"], "bogus"), "status")
        self.assertInvalid(self.call("PUT", ORDERS + "/%s/status" % o["id"], {},
                                     auth=self.admin()), "status")
        self.assertInvalid(self.call("PUT", ORDERS + "/%s/status" % o["id"],
                                     {"status": "paid", "total_cents": 1}, auth=self.admin()),
                           "total_cents")
        self.assertEqual(self.fetch(who, o["id"]), o, "a refused status change changed the order")
        self.assertStock(pid, 10, 2)

    def test_status_change_honours_if_match(self):
        who, pid, o = self.pending(10, 1)
        r = self.call("GET", ORDERS + "/" + o["id"], auth=self.admin())
        etag = r.headers.get("ETag")
        self.assertTrue(etag, "GET without ETag: %s" % dict(r.headers))
        self.assertProblem(self.put_status(o["id"], "paid", headers={"If-Match": '"stale"'}), 412)
        self.assertEqual(self.fetch(who, o["id"])["status"], "pending_payment")
        r = self.put_status(o["id"], "paid", headers={"If-Match": etag})
        self.assertStatus(r, 200)
        self.assertProblem(self.put_status(o["id"], "shipped", headers={"If-Match": etag}), 412)
        self.assertEqual(self.fetch(who, o["id"])["status"], "paid")


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestIdempotency(ShopCase):
    def test_replay_returns_the_same_answer_without_a_second_order(self):
        me = self.customer()
        p = self.product(stock=10)
        key = uuid.uuid4().hex
        first = self.place(me, lines((p["id"], 2)), key=key)
        self.assertStatus(first, 201)
        self.assertNotEqual(first.headers.get(REPLAYED, "").lower(), "true",
                            "the first answer is not a replay")
        again = self.place(me, lines((p["id"], 2)), key=key)
        self.assertStatus(again, 201)
        self.assertEqual(again.headers.get(REPLAYED), "true", dict(again.headers))
        self.assertEqual(again.json(), first.json())
        self.assertStock(p["id"], 10, 2, "a replay reserved again")
        self.assertEqual(ids(self.list_all(me)), [first.json()["id"]])
        # Without a key, the same body is a new order.
        self.assertStatus(self.place(me, lines((p["id"], 2))), 201)
        self.assertStock(p["id"], 10, 4)

    def test_same_key_different_body_is_422(self):
        me = self.customer()
        p = self.product(stock=10)
        key = uuid.uuid4().hex
        first = self.place(me, lines((p["id"], 1)), key=key)
        self.assertStatus(first, 201)
        self.assertProblem(self.place(me, lines((p["id"], 3)), key=key), 422,
                           "idempotency_key_reused")
        self.assertProblem(self.place(me, lines((p["id"], 1)), key=key, notes="changed"), 422,
                           "idempotency_key_reused")
        self.assertStock(p["id"], 10, 1)
        self.assertEqual(ids(self.list_all(me)), [first.json()["id"]])
        # The original is still replayed.
        again = self.place(me, lines((p["id"], 1)), key=key)
        self.assertStatus(again, 201)
        self.assertEqual(again.json(), first.json())

    def test_keys_are_per_user(self):
        alice, bob = self.customer(), self.customer()
        p = self.product(stock=10)
        key = uuid.uuid4().hex
        a = self.place(alice, lines((p["id"], 2)), key=key)
        b = self.place(bob, lines((p["id"], 2)), key=key)
        self.assertStatus(a, 201)
        self.assertStatus(b, 201)
        self.assertNotEqual(b.headers.get(REPLAYED, "").lower(), "true", dict(b.headers))
        self.assertNotEqual(a.json()["id"], b.json()["id"])
        self.assertEqual(b.json()["user_id"], bob.id)
        self.assertStock(p["id"], 10, 4)
        self.assertEqual(ids(self.list_all(bob)), [b.json()["id"]])
        # Bob's different body under the same key is his own first use, not a reuse of Alice's.
        carol = self.customer()
        self.assertStatus(self.place(carol, lines((p["id"], 1)), key=key), 201)

    def test_concurrent_duplicates_create_one_order(self):
        me = self.customer()
        p = self.product(stock=100)
        key = uuid.uuid4().hex
        body = json.dumps(order_body(lines((p["id"], 3))))
        headers = {"Content-Type": "application/json", "Idempotency-Key": key, **me.headers()}
        go = threading.Barrier(10)

        def send(_):
            go.wait()
            return requests.post(self.cluster.api + "/orders", data=body, headers=headers,
                                 timeout=30)

        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(send, range(10)))
        statuses = collections.Counter(r.status_code for r in answers)
        self.assertEqual(statuses, {201: 10}, [r.text[:200] for r in answers])
        self.assertEqual({r.json()["id"] for r in answers}, {answers[0].json()["id"]},
                         "duplicates created different orders")
        self.assertEqual(sum(r.headers.get(REPLAYED) == "true" for r in answers), 9)
        self.assertEqual(len({json.dumps(r.json(), sort_keys=True) for r in answers}), 1)
        self.assertStock(p["id"], 100, 3, "concurrent duplicates reserved more than once")
        self.assertEqual(ids(self.list_all(me)), [answers[0].json()["id"]])


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestConcurrentBuyers(ShopCase):
    BUYERS = 200
    STOCK = 50

    def test_200_buyers_50_units(self):
        buyers = new_customers(self.cluster, self.BUYERS, workers=8)
        self.assertEqual(len({b.id for b in buyers}), self.BUYERS)
        p = self.product(stock=self.STOCK)
        body = json.dumps(order_body(lines((p["id"], 1))))
        go = threading.Event()

        retried = collections.Counter()

        def buy(who):
            # as a careful client does: a 503 or 504 (no outcome known) is asked again with the
            # same Idempotency-Key, which must never buy twice
            key = uuid.uuid4().hex
            go.wait()
            for _ in range(10):
                r = requests.post(self.cluster.api + "/orders", data=body, timeout=60, headers={
                    "Content-Type": "application/json", "Idempotency-Key": key, **who.headers()})
                if r.status_code not in (503, 504):
                    return r
                retried[r.status_code] += 1
            return r

        with ThreadPoolExecutor(64) as pool:
            futures = [pool.submit(buy, b) for b in buyers]
            go.set()
            answers = [f.result() for f in futures]
        statuses = collections.Counter(r.status_code for r in answers)
        print("\n[orders] %d buyers for %d units: %s (asked again after %s)" % (
            self.BUYERS, self.STOCK, dict(sorted(statuses.items())), dict(retried)), file=sys.stderr)
        self.assertEqual(statuses, {201: self.STOCK, 409: self.BUYERS - self.STOCK},
                         [r.text[:200] for r in answers if r.status_code not in (201, 409)][:5])
        codes = collections.Counter(r.json().get("code") for r in answers if r.status_code == 409)
        self.assertEqual(codes, {"out_of_stock": self.BUYERS - self.STOCK})
        won = [(who, r.json()) for who, r in zip(buyers, answers) if r.status_code == 201]
        self.assertEqual(len({o["id"] for _, o in won}), self.STOCK)
        for who, o in won:
            self.assertEqual(o["user_id"], who.id)
            self.assertEqual(o["status"], "pending_payment")
        self.assertStock(p["id"], self.STOCK, self.STOCK, "after the rush")
        placed = self.list_all(self.admin(), status="pending_payment", limit=100)
        self.assertEqual(sorted(o["id"] for o in placed if o["items"][0]["product_id"] == p["id"]),
                         sorted(o["id"] for _, o in won), "stored orders differ from the 201s")


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestExpiry(ShopCase):
    TTL_S = 2
    ENV = {"MERCATO_RESERVATION_TTL_S": str(TTL_S)}

    def test_unpaid_orders_expire_and_release_stock(self):
        me = self.customer()
        paid_p, cancelled_p, unpaid_p = self.products(3, stock=10)
        # Placed first, so their TTLs have passed when the unpaid one's has.
        paid = self.order(me, (paid_p["id"], 2))
        self.move(paid["id"], "paid")
        cancelled = self.order(me, (cancelled_p["id"], 3))
        self.assertStatus(self.cancel(me, cancelled["id"]), 200)
        self.awaitStock(cancelled_p["id"], 10, 0, "after cancelling")
        unpaid = self.order(me, (unpaid_p["id"], 4))
        ttl = (parse_time(unpaid["expires_at"]) - parse_time(unpaid["created_at"])).total_seconds()
        self.assertAlmostEqual(ttl, self.TTL_S, delta=1, msg="expires_at = created_at + TTL")
        self.assertStock(unpaid_p["id"], 10, 4)

        expired = wait_for(lambda: (lambda o: o if o["status"] == "expired" else None)(
            self.fetch(me, unpaid["id"])), self.TTL_S + 15, interval=0.1,
            what="order %s to expire" % unpaid["id"])
        self.assertGreaterEqual(parse_time(expired["updated_at"]),
                                parse_time(unpaid["expires_at"]) - timedelta(seconds=0.1),
                                "expired before expires_at (0.1 s allowed for clock rounding)")
        self.awaitStock(unpaid_p["id"], 10, 0, "expiry released the stock")
        self.assertEqual(self.fetch(me, paid["id"])["status"], "paid", "a paid order expired")
        self.assertStockBehindBarrier(paid_p["id"], 10, 2, "a paid order's stock was released")
        self.assertEqual(self.fetch(me, cancelled["id"])["status"], "cancelled")
        self.assertStockBehindBarrier(cancelled_p["id"], 10, 0, "stock released twice")
        self.assertEqual(ids(self.list_all(self.admin(), user_id=me.id, status="expired")),
                         [unpaid["id"]])
        # expired is final.
        for target in STATUSES:
            self.assertIllegal(self.put_status(unpaid["id"], target), "expired -> " + target)
        self.assertIllegal(self.cancel(me, unpaid["id"]), "cancel an expired order")
        self.assertEqual(self.fetch(me, unpaid["id"]), expired)
        self.assertStockBehindBarrier(unpaid_p["id"], 10, 0, "a refused change of an expired order")



def fnv1a32(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xffffffff
    return h


# ============================================================================================
@unittest.skipUnless(READY, WHY)
class TestShardedInventory(ShopCase):
    """Two inventory shards (MERCATO_SHARDS, the node runs both): an order's lines live in
    different shards, each reserves its own, and one shard's shortage leaves nothing held in
    the other."""
    ENV = {"MERCATO_SHARDS": "inventory=2"}

    def two_shards(self, stock):
        made = {}
        while len(made) < 2:
            p = self.product(stock=stock)
            made.setdefault(fnv1a32(p["id"]) % 2, p)
        return made[0], made[1]

    def test_lines_in_two_shards_reserve_all_or_nothing(self):
        me = self.customer()
        a, b = self.two_shards(stock=5)
        o = self.order(me, (a["id"], 2), (b["id"], 3))
        self.assertStock(a["id"], 5, 2, "shard 0 line")
        self.assertStock(b["id"], 5, 3, "shard 1 line")
        r = self.place(me, lines((a["id"], 1), (b["id"], 3)))
        self.assertProblem(r, 409)
        self.assertEqual(r.json()["code"], "out_of_stock")
        self.assertIn(b["id"], r.json()["detail"])
        self.assertStock(a["id"], 5, 2, "after the refused order (shard 0 released)")
        self.assertStock(b["id"], 5, 3, "after the refused order")
        self.assertStatus(self.cancel(me, o["id"]), 200)
        self.awaitStock(a["id"], 5, 0, "after cancelling")
        self.awaitStock(b["id"], 5, 0, "after cancelling")


if __name__ == "__main__":
    unittest.main()
