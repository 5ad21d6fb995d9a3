"""Authorization matrix (issue 3): anonymous, customer A, customer B and the admin against every
route that exists, each expecting the status CONTRACT 2-4 names.

One table (MATRIX) of expected statuses; one subTest per cell. Every cell prepares its own
fresh target (a product, an address, a refresh token) so the cells do not depend on each other,
and refused writes are checked to have changed nothing.
"""

import os
import re
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import strong_password, unique_email, wait_for  # noqa: E402
from identity_support import API, IdentityCase, jwks_by_kid  # noqa: E402

WHO = ("anonymous", "customer_a", "customer_b", "admin")


def row(anonymous, customer_a, customer_b, admin):
    return dict(zip(WHO, (anonymous, customer_a, customer_b, admin)))


PUBLIC_200 = row(200, 200, 200, 200)
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2035, "cvc": "123"}

# (method, path template, expected status per caller). {product} is a product, {address} an
# address of customer A. The path templates are also matched against the OpenAPI document.
MATRIX = [
    # CONTRACT 3, public auth routes: a caller's token changes nothing.
    ("POST", "/api/v1/auth/register", row(201, 201, 201, 201)),
    ("POST", "/api/v1/auth/login", row(200, 200, 200, 200)),
    ("POST", "/api/v1/auth/refresh", row(200, 200, 200, 200)),
    ("POST", "/api/v1/auth/logout", row(204, 204, 204, 204)),
    # CONTRACT 3, the caller's own account.
    ("GET", "/api/v1/users/me", row(401, 200, 200, 200)),
    ("PATCH", "/api/v1/users/me", row(401, 200, 200, 200)),
    ("PUT", "/api/v1/users/me/password", row(401, 204, 204, 204)),
    ("GET", "/api/v1/users/me/addresses", row(401, 200, 200, 200)),
    ("POST", "/api/v1/users/me/addresses", row(401, 201, 201, 201)),
    # A's address: another user's resource is 404, not 403 (the admin's "me" is not A either).
    ("DELETE", "/api/v1/users/me/addresses/{address}", row(401, 204, 404, 404)),
    # Admin only.
    ("GET", "/api/v1/admin/users", row(401, 403, 403, 200)),
    ("POST", "/api/v1/admin/keys/rotate", row(401, 403, 403, 200)),
    # CONTRACT 4: reads public, writes admin.
    ("GET", "/api/v1/products", PUBLIC_200),
    ("GET", "/api/v1/products/{product}", PUBLIC_200),
    ("POST", "/api/v1/products", row(401, 403, 403, 201)),
    ("PATCH", "/api/v1/products/{product}", row(401, 403, 403, 200)),
    ("DELETE", "/api/v1/products/{product}", row(401, 403, 403, 204)),
    ("GET", "/api/v1/categories", PUBLIC_200),
    # CONTRACT 5: stock reads are public, changes and lists are for admins. {stock} is a product
    # whose stock record inventory made from its product.created event.
    ("GET", "/api/v1/inventory/check", PUBLIC_200),
    ("GET", "/api/v1/inventory", row(401, 403, 403, 200)),
    ("GET", "/api/v1/inventory/{stock}", PUBLIC_200),
    ("PUT", "/api/v1/inventory/{stock}", row(401, 403, 403, 200)),
    ("POST", "/api/v1/inventory/{stock}/adjustments", row(401, 403, 403, 200)),
    ("GET", "/api/v1/inventory/{stock}/history", row(401, 403, 403, 200)),
    # CONTRACT 6: orders are the caller's own ({order} belongs to customer A); status is admin's.
    ("POST", "/api/v1/orders", row(401, 201, 201, 201)),
    ("GET", "/api/v1/orders", row(401, 200, 200, 200)),
    ("GET", "/api/v1/orders/{order}", row(401, 200, 404, 200)),
    ("POST", "/api/v1/orders/{order}/cancel", row(401, 200, 404, 200)),
    ("PUT", "/api/v1/orders/{order}/status", row(401, 403, 403, 200)),
    # CONTRACT 7: A pays for A's order ({order} on the payments route); nobody else may, the
    # admin included. {payment} is a payment of A's; an order's payments are its owner's.
    ("POST", "/api/v1/payments", row(401, 201, 404, 404)),
    ("GET", "/api/v1/payments/{payment}", row(401, 200, 404, 200)),
    ("GET", "/api/v1/orders/{order}/payments", row(401, 200, 404, 200)),
    # CONTRACT 7: {shipment} is the shipment of a paid order of customer A; moving it is admin's.
    ("GET", "/api/v1/shipping/{shipment}", row(401, 200, 404, 200)),
    ("POST", "/api/v1/shipping/{shipment}/events", row(401, 403, 403, 200)),
    # CONTRACT 6: every signed-in caller has a cart of their own.
    ("GET", "/api/v1/cart", row(401, 200, 200, 200)),
    ("PUT", "/api/v1/cart/items/{item}", row(401, 200, 200, 200)),
    ("DELETE", "/api/v1/cart/items/{item}", row(401, 204, 204, 204)),
    ("POST", "/api/v1/cart/checkout", row(401, 201, 201, 201)),
    # CONTRACT 7: notifications are the caller's own (an admin's: everyone's); test mails are admin's.
    ("GET", "/api/v1/notifications", row(401, 200, 200, 200)),
    ("POST", "/api/v1/notifications/test", row(401, 403, 403, 202)),
    # CONTRACT 2 and 3: operational and discovery endpoints are public.
    ("GET", "/.well-known/jwks.json", PUBLIC_200),
    ("GET", "/healthz", PUBLIC_200),
    ("GET", "/readyz", PUBLIC_200),
    ("GET", "/metrics", PUBLIC_200),
    ("GET", "/api/v1/openapi.json", PUBLIC_200),
    ("GET", "/docs", PUBLIC_200),
]


def address(**over):
    body = {"name": "Matrix", "line1": "2 Grid Street", "city": "Vienna", "postal_code": "1010",
            "country": "AT"}
    body.update(over)
    return body


class TestAuthorizationMatrix(IdentityCase):
    KAFKA = True        # stock records come from product.created, through Kafka
    # Customer A owns the order of every order cell and leaves most of them unpaid; the cap on
    # unpaid orders has its own test (test_abuse.py).
    ENV = {"MERCATO_MAX_PENDING_ORDERS": "1000"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        c = cls.cluster
        cls.who = {"anonymous": None, "customer_a": c.register_customer(),
                   "customer_b": c.register_customer(), "admin": c.admin_principal()}
        # The account whose credentials the public auth routes are exercised with.
        cls.subject = c.register(email=unique_email("subject"))

    # --- fixtures --------------------------------------------------------------------------
    def admin(self):
        return self.cluster.admin_headers()

    def new_product(self):
        body = {"sku": "AZ-" + uuid.uuid4().hex[:12], "name": "Matrix product",
                "description": "authz", "category": "authz-" + uuid.uuid4().hex[:8],
                "price_cents": 500}
        r = self.call("POST", API + "/products", body, auth=self.admin())
        self.assertStatus(r, 201, "fixture: admin creates a product")
        return r.json()

    def new_stocked_product(self):
        body = {"sku": "AZS-" + uuid.uuid4().hex[:12], "name": "Matrix stock", "description": "authz",
                "category": "authz-stock", "price_cents": 500, "initial_stock": 10}
        r = self.call("POST", API + "/products", body, auth=self.admin())
        self.assertStatus(r, 201, "fixture: admin creates a stocked product")
        pid = r.json()["id"]
        wait_for(lambda: self.get(API + "/inventory/" + pid).status_code == 200, 20,
                 what="the stock record of %s" % pid)
        return pid

    def stock_state(self, pid):
        return self.get(API + "/inventory/" + pid).json()

    def product_state(self, pid):
        r = self.get(API + "/products/" + pid)
        return r.status_code, (r.json() if r.status_code == 200 else None)

    def new_address_of_a(self):
        r = self.call("POST", API + "/users/me/addresses", address(),
                      auth=self.who["customer_a"])
        self.assertStatus(r, 201, "fixture: A creates an address")
        return r.json()

    def a_address_ids(self):
        r = self.call("GET", API + "/users/me/addresses", auth=self.who["customer_a"],
                      params={"limit": 100})
        self.assertStatus(r, 200)
        return {a["id"] for a in r.json()["items"]}

    def new_shipment_of_a(self):
        """The id of a paid order of A's, once its shipment exists."""
        r = self.call("POST", API + "/orders", {"items": [{"product_id": self.new_stocked_product(), "quantity": 1}],
                                                 "shipping_address": address()}, auth=self.who["customer_a"])
        self.assertStatus(r, 201, "fixture: A places an order")
        oid = r.json()["id"]
        self.assertStatus(self.call("PUT", API + "/orders/%s/status" % oid, {"status": "paid"}, auth=self.admin()),
                          200, "fixture: the admin marks it paid")
        wait_for(lambda: self.call("GET", API + "/shipping/" + oid, auth=self.admin()).status_code == 200, 30,
                 what="the shipment of order %s" % oid)
        return oid

    def new_order_of_a(self):
        r = self.call("POST", API + "/orders", {"items": [{"product_id": self.new_stocked_product(), "quantity": 1}],
                                                 "shipping_address": address()}, auth=self.who["customer_a"])
        self.assertStatus(r, 201, "fixture: A places an order")
        return r.json()["id"]

    def new_payment_of_a(self):
        oid = self.new_order_of_a()
        r = self.call("POST", API + "/payments", {"order_id": oid, "card": CARD}, auth=self.who["customer_a"])
        self.assertStatus(r, 201, "fixture: A pays for the order")
        return r.json()["id"]

    def fresh_refresh_token(self):
        return self.cluster.login(self.subject.email, self.subject.password)["refresh_token"]

    # --- one cell ----------------------------------------------------------------------------
    def run_cell(self, method, template, who, expected):
        """Prepare, send, and return (response, check-after callable or None)."""
        p = self.who[who]
        auth = p.headers() if p is not None else None
        body, path, after = None, template, None

        if template == "/api/v1/auth/register":
            body = {"email": unique_email("mx"), "password": strong_password(), "name": "Mx"}
        elif template == "/api/v1/auth/login":
            body = {"email": self.subject.email, "password": self.subject.password}
        elif template in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
            body = {"refresh_token": self.fresh_refresh_token()}
        elif template == "/api/v1/users/me" and method == "PATCH":
            body = {"name": "Matrix " + who}
        elif template == "/api/v1/users/me/password":
            new = strong_password()
            body = {"current_password": p.password if p else "irrelevant-" + new,
                    "new_password": new}

            def after(r, p=p, new=new):
                if p is not None and r.status_code == 204:
                    p.password = new
                    if who == "admin":
                        self.cluster.admin_password = new
        elif template == "/api/v1/users/me/addresses" and method == "POST":
            body = address(city="City of " + who)
        elif template == "/api/v1/users/me/addresses/{address}":
            a = self.new_address_of_a()
            path = template.replace("{address}", a["id"])
            if expected != 204:
                def after(r, a=a):
                    self.assertIn(a["id"], self.a_address_ids(),
                                  "a refused DELETE removed A's address")
        elif template == "/api/v1/admin/keys/rotate":
            before = set(jwks_by_kid(self.jwks()))
            if expected != 200:
                def after(r, before=before):
                    self.assertEqual(set(jwks_by_kid(self.jwks())), before,
                                     "a refused rotation changed the JWKS")
        elif template == "/api/v1/products" and method == "POST":
            body = {"sku": "AZ-" + uuid.uuid4().hex[:12], "name": "Matrix post",
                    "description": "authz", "category": "authz-" + uuid.uuid4().hex[:8],
                    "price_cents": 700}
            if expected != 201:
                def after(r, body=body):
                    g = self.get(API + "/products", params={"category": body["category"]})
                    self.assertEqual(g.json()["items"], [], "a refused POST created a product")
        elif "{product}" in template:
            prod = self.new_product()
            path = template.replace("{product}", prod["id"])
            if method == "PATCH":
                body = {"name": "Matrix patched by " + who}
            if method in ("PATCH", "DELETE") and expected >= 400:
                def after(r, prod=prod):
                    self.assertEqual(self.product_state(prod["id"]), (200, prod),
                                     "a refused %s changed the product" % method)

        elif "{stock}" in template:
            pid = self.new_stocked_product()
            path = template.replace("{stock}", pid)
            if method == "PUT":
                body = {"on_hand": 50}
            elif method == "POST":
                body = {"delta": 1, "reason": "matrix"}
            if method in ("PUT", "POST") and expected >= 400:
                before = self.stock_state(pid)

                def after(r, pid=pid, before=before):
                    self.assertEqual(self.stock_state(pid), before, "a refused %s changed the stock" % method)
        elif template == "/api/v1/orders" and method == "POST":
            pid = self.new_stocked_product()
            body = {"items": [{"product_id": pid, "quantity": 1}], "shipping_address": address()}
            if expected != 201:
                def after(r, pid=pid):
                    self.assertEqual(self.stock_state(pid)["reserved"], 0, "a refused order reserved stock")
        elif template == "/api/v1/payments":
            oid = self.new_order_of_a()
            body = {"order_id": oid, "card": CARD}
            if expected >= 400:
                def after(r, oid=oid):
                    g = self.call("GET", API + "/orders/" + oid, auth=self.who["customer_a"])
                    self.assertEqual(g.json()["status"], "pending_payment", "a refused payment paid the order")
        elif "{payment}" in template:
            path = template.replace("{payment}", self.new_payment_of_a())
        elif "{order}" in template:
            pid = self.new_stocked_product()
            r = self.call("POST", API + "/orders", {"items": [{"product_id": pid, "quantity": 1}],
                                                     "shipping_address": address()},
                          auth=self.who["customer_a"])
            self.assertStatus(r, 201, "fixture: A places an order")
            order = r.json()
            path = template.replace("{order}", order["id"])
            if method == "PUT":
                body = {"status": "paid"}
            if method in ("PUT", "POST") and expected >= 400:
                def after(r, order=order):
                    g = self.call("GET", API + "/orders/" + order["id"], auth=self.who["customer_a"])
                    self.assertEqual(g.json()["status"], "pending_payment", "a refused %s changed the order" % method)
        elif "{shipment}" in template:
            oid = self.new_shipment_of_a()
            path = template.replace("{shipment}", oid)
            if method == "POST":
                body = {"status": "in_transit"}
                if expected >= 400:
                    def after(r, oid=oid):
                        g = self.call("GET", API + "/shipping/" + oid, auth=self.admin())
                        self.assertEqual(g.json()["status"], "scheduled", "a refused POST moved the shipment")
        elif "{item}" in template:
            pid = self.new_product()["id"]
            path = template.replace("{item}", pid)
            if method == "PUT":
                body = {"quantity": 2}
        elif template == "/api/v1/cart/checkout":
            if p is not None:
                # the cart cells before may have left unstocked products in it
                for item in self.call("GET", API + "/cart", auth=p).json()["items"]:
                    self.call("DELETE", API + "/cart/items/" + item["product_id"], auth=p)
                a = self.call("POST", API + "/users/me/addresses", address(), auth=p)
                self.assertStatus(a, 201, "fixture: an address to ship to")
                put = self.call("PUT", API + "/cart/items/" + self.new_stocked_product(), {"quantity": 1}, auth=p)
                self.assertStatus(put, 200, "fixture: an item in the cart")
                body = {"shipping_address_id": a.json()["id"]}
            else:
                body = {"shipping_address_id": "none"}
        elif template == "/api/v1/inventory/check":
            path = template + "?product_id=%s&quantity=1" % self.new_stocked_product()
        elif template == "/api/v1/inventory":
            path = template + "?low_stock=true"
        elif template == "/api/v1/notifications/test":
            body = {"to": unique_email("mx")}

        ctype = "application/merge-patch+json" if "{product}" in template and \
            method == "PATCH" else "application/json"
        r = self.call(method, path, body, auth=auth, content_type=ctype)
        return r, after

    def test_matrix(self):
        for method, template, expected_by_who in MATRIX:
            for who in WHO:
                expected = expected_by_who[who]
                with self.subTest(route="%s %s" % (method, template), who=who,
                                  expected=expected):
                    r, after = self.run_cell(method, template, who, expected)
                    if expected == 401:
                        self.assertUnauthorized(r, "%s %s as %s" % (method, template, who))
                    elif expected >= 400:
                        self.assertProblem(r, expected)
                    else:
                        self.assertStatus(r, expected, "%s %s as %s" % (method, template, who))
                    if after is not None:
                        after(r)

    def test_matrix_covers_every_documented_route(self):
        """Every operation the OpenAPI document lists has a row in MATRIX."""
        r = self.get("/api/v1/openapi.json")
        self.assertStatus(r, 200)
        doc = r.json()
        prefix = ""
        servers = doc.get("servers") or []
        if servers and servers[0].get("url", "").rstrip("/").endswith("/api/v1"):
            prefix = "/api/v1"

        def norm(path):
            return re.sub(r"\{[^}/]+\}", "{}", path)

        known = {(m, norm(t)) for m, t, _ in MATRIX}
        missing = []
        for path, item in doc.get("paths", {}).items():
            full = path if path.startswith("/api/v1") or path.startswith("/.well-known") or \
                path in ("/healthz", "/readyz", "/metrics", "/docs") else prefix + path
            for m in item:
                if m.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE") and \
                        (m.upper(), norm(full)) not in known:
                    missing.append("%s %s" % (m.upper(), full))
        self.assertEqual(missing, [], "documented routes without a row in the authorization "
                                      "matrix")


if __name__ == "__main__":
    unittest.main()
