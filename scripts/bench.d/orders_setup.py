#!/usr/bin/env python3
"""Setup for the order-placement benchmark (scripts/bench, part "orders").

usage: orders_setup.py EDGE_URL ADMIN_EMAIL ADMIN_PASSWORD PRODUCTS CUSTOMERS OUT_FILE

As the admin, creates PRODUCTS products with a huge initial_stock; waits until every one of
them has its stock record (made by the inventory actor from the product.created event, so it
goes through the relay and Kafka); registers and logs in CUSTOMERS customers. Writes OUT_FILE
for scripts/bench.d/orders.lua, one item a line:
    P <product id as a JSON string>
    T <access token>
Progress and timings go to stderr; any failure exits non-zero with the reason."""
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

edge, admin_email, admin_password = sys.argv[1:4]
n_products, n_customers = int(sys.argv[4]), int(sys.argv[5])
out_file = sys.argv[6]
api = edge + "/api/v1"
run = uuid.uuid4().hex[:8]
STOCK = 1_000_000_000


def say(msg):
    sys.stderr.write("[orders-setup] %s\n" % msg)
    sys.stderr.flush()


def fail(msg):
    # from any worker thread: stop the whole setup at once, not one thread of it
    say("FAILED: " + msg)
    os._exit(1)


def session():
    s = requests.Session()
    a = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
    s.mount("http://", a)
    return s


def post(s, path, body, headers=None, expect=201, tries=5):
    """POST with a few retries on 503/504 (a node still warming up), never on anything else."""
    for i in range(tries):
        r = s.post(api + path, json=body, headers=headers or {}, timeout=30)
        if r.status_code == expect:
            return r
        if r.status_code in (503, 504) and i + 1 < tries:
            time.sleep(0.2 * (i + 1))
            continue
        fail("POST %s: %d %s" % (path, r.status_code, r.text[:300]))


t0 = time.monotonic()
r = requests.post(api + "/auth/login", json={"email": admin_email, "password": admin_password}, timeout=30)
if r.status_code != 200:
    fail("admin login: %d %s" % (r.status_code, r.text[:300]))
admin = {"Authorization": "Bearer " + r.json()["access_token"]}

# --- products ------------------------------------------------------------------------------
WORKERS = 8


def make_products(w):
    s = session()
    ids = []
    for i in range(w, n_products, WORKERS):
        r = post(s, "/products", {
            "sku": "BENCH-%s-%05d" % (run, i), "name": "Bench product %d" % i,
            "description": "order benchmark", "category": "bench",
            "price_cents": 100 + i % 900, "initial_stock": STOCK}, admin)
        ids.append(r.json()["id"])
    return ids


with ThreadPoolExecutor(WORKERS) as ex:
    products = [p for ids in ex.map(make_products, range(WORKERS)) for p in ids]
t1 = time.monotonic()
say("created %d products in %.1f s" % (len(products), t1 - t0))


# Stock records come from product.created events: outbox -> relay -> Kafka -> inventory.
def wait_stock(w):
    s = session()
    deadline = time.monotonic() + 60
    for pid in products[w::WORKERS]:
        while True:
            r = s.get(api + "/inventory/" + pid, timeout=30)
            if r.status_code == 200:
                rec = r.json()
                if rec.get("on_hand") != STOCK:
                    fail("stock record of %s: %s" % (pid, rec))
                break
            if r.status_code != 404:
                fail("GET /inventory/%s: %d %s" % (pid, r.status_code, r.text[:300]))
            if time.monotonic() > deadline:
                fail("no stock record for %s after 60 s (relay, Kafka or the inventory actor's consumer?)" % pid)
            time.sleep(0.05)


with ThreadPoolExecutor(WORKERS) as ex:
    list(ex.map(wait_stock, range(WORKERS)))
t2 = time.monotonic()
say("all %d stock records present %.1f s later" % (len(products), t2 - t1))


# --- customers: argon2id on register and on login; a few at a time on 2 cores ------------------
def make_customer(i):
    s = session()
    email = "bench-%s-%04d@example.test" % (run, i)
    password = "Bench-pw-%s-%d!" % (run, i)
    post(s, "/auth/register", {"email": email, "password": password, "name": "Bench %d" % i})
    r = post(s, "/auth/login", {"email": email, "password": password}, expect=200)
    return r.json()["access_token"]


with ThreadPoolExecutor(4) as ex:
    tokens = list(ex.map(make_customer, range(n_customers)))
t3 = time.monotonic()
say("registered and logged in %d customers in %.1f s" % (len(tokens), t3 - t2))

# One real order, checked in full, so the benchmark never times a broken endpoint.
body = {"items": [{"product_id": products[0], "quantity": 1}, {"product_id": products[1], "quantity": 1}],
        "shipping_address": {"name": "Bench", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "DE"}}
r = requests.post(api + "/orders", json=body, headers={"Authorization": "Bearer " + tokens[0]}, timeout=30)
if r.status_code != 201:
    fail("probe order: %d %s" % (r.status_code, r.text[:500]))
order = r.json()
if len(order.get("items", [])) != 2 or order.get("status") != "pending_payment":
    fail("probe order looks wrong: %s" % json.dumps(order)[:500])
rec = requests.get(api + "/inventory/" + products[0], timeout=30).json()
if rec.get("reserved") != 1:
    fail("probe order did not reserve stock: %s" % rec)

with open(out_file, "w") as f:
    for p in products:
        f.write("P %s\n" % json.dumps(p))
    for t in tokens:
        f.write("T %s\n" % t)
say("setup done in %.1f s" % (time.monotonic() - t0))
