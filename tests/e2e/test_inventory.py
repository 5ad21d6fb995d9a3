"""CONTRACT §5 through HTTP: stock records born from product.created (consumed from Kafka),
availability checks, admin changes with reasons and history, low stock, inventory.* events."""

import json
import os
import random
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import wait_for  # noqa: E402
from event_sign import Signer  # noqa: E402
from test_events import READY, WHY, EventCase  # noqa: E402

API = "/api/v1"


@unittest.skipUnless(READY, WHY)
class TestInventory(EventCase):
    def product(self, initial_stock=None):
        body = {"sku": "INV-" + uuid.uuid4().hex[:10], "name": "Stocked thing", "description": "d",
                "category": "inventory", "price_cents": 250}
        if initial_stock is not None:
            body["initial_stock"] = initial_stock
        r = self.post_json(API + "/products", body, headers=self.cluster.admin_headers())
        self.assertStatus(r, 201)
        pid = r.json()["id"]
        wait_for(lambda: self.get(API + "/inventory/" + pid).status_code == 200, 20,
                 what="the stock record of " + pid)
        return pid

    def admin(self, method, path, body=None):
        return self.cluster_call(method, path, body)

    def cluster_call(self, method, path, body):
        return self.call(method, API + path, body, auth=self.cluster.admin_headers())

    def test_stock_is_born_from_product_created(self):
        pid = self.product(initial_stock=40)
        s = self.get(API + "/inventory/" + pid).json()
        self.assertEqual(s, {"product_id": pid, "on_hand": 40, "reserved": 0, "available": 40, "sold": 0,
                             "low_stock_threshold": 5, "updated_at": s["updated_at"]})
        big = self.get(API + "/inventory/" + self.product(initial_stock=300)).json()
        self.assertEqual(big["low_stock_threshold"], 30)        # 10% of initial stock
        self.assertEqual(self.get(API + "/inventory/" + self.product()).json()["on_hand"], 0)
        self.assertProblem(self.get(API + "/inventory/01ARZ3NDEKTSV4RRFFQ69G5FAV"), 404)

    def test_check_is_not_a_product_id(self):
        pid = self.product(initial_stock=3)
        r = self.get(API + "/inventory/check", params={"product_id": pid, "quantity": 3})
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), {"product_id": pid, "quantity": 3, "available": True})
        r = self.get(API + "/inventory/check", params={"product_id": pid, "quantity": 4})
        self.assertEqual(r.json()["available"], False)
        self.assertProblem(self.get(API + "/inventory/check", params={"product_id": pid}), 422)
        self.assertProblem(self.get(API + "/inventory/check",
                                    params={"product_id": pid, "quantity": 0}), 422)

    def test_admin_changes_history_and_low_stock_events(self):
        pid = self.product(initial_stock=100)
        r = self.admin("POST", "/inventory/%s/adjustments" % pid, {"delta": -85, "reason": "damaged in transit"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["on_hand"], 15)
        r = self.admin("POST", "/inventory/%s/adjustments" % pid, {"delta": -6, "reason": "shrinkage"})
        self.assertEqual(r.json()["available"], 9)              # crosses its threshold of 10
        r = self.admin("POST", "/inventory/%s/adjustments" % pid, {"delta": -1, "reason": "more shrinkage"})
        self.assertStatus(r, 200)                                # still low: no second alert
        self.assertProblem(self.admin("POST", "/inventory/%s/adjustments" % pid,
                                      {"delta": -9, "reason": "too many"}), 409)
        self.assertProblem(self.admin("POST", "/inventory/%s/adjustments" % pid, {"delta": 1}), 422)
        r = self.admin("PUT", "/inventory/" + pid, {"on_hand": 50, "low_stock_threshold": 20})
        self.assertStatus(r, 200)
        self.assertEqual((r.json()["on_hand"], r.json()["low_stock_threshold"]), (50, 20))
        self.assertProblem(self.admin("PUT", "/inventory/" + pid, {"on_hand": -1}), 422)
        self.assertProblem(self.admin("PUT", "/inventory/" + pid, {"on_hand": 5, "role": "x"}), 422)

        h = self.admin("GET", "/inventory/%s/history" % pid)
        self.assertStatus(h, 200)
        reasons = [c["reason"] for c in h.json()["items"]]
        self.assertEqual(reasons, ["product created", "damaged in transit", "shrinkage",
                                   "more shrinkage", "set by admin"])
        low = self.admin("GET", "/inventory?low_stock=true&limit=100")
        self.assertNotIn(pid, [s["product_id"] for s in low.json()["items"]])   # 50 > 20 again

        log = self.log(["inventory.events"])
        log.wait(lambda s: len([r for r in s.by_key("inventory.events", pid)
                                if r.type == "inventory.adjusted"]) >= 5, what="5 adjustments of " + pid)
        lows = [r for r in log.by_key("inventory.events", pid) if r.type == "inventory.low_stock"]
        self.assertEqual(len({r.ce_id for r in lows}), 1, "one alert for one crossing: %s" % lows)
        self.assertEqual(lows[0].value["available"], 9)
        self.assertEqual(lows[0].headers.get("ce_source"), "/mercato/inventory")

    def test_low_stock_list(self):
        pid = self.product(initial_stock=2)                     # born at or below 5
        low = self.admin("GET", "/inventory?low_stock=true&limit=100")
        self.assertStatus(low, 200)
        self.assertIn(pid, [s["product_id"] for s in low.json()["items"]])

    def test_malformed_records_are_counted_and_skipped(self):
        """Records the consumer cannot understand are logged, counted and passed over; records
        of a type inventory does not act on are skipped unread. The good record after them, in
        the same partition (same key), still makes its stock record. Each is signed with the
        relay's key, so that what is tested is the handling of a record (test_event_forgery.py
        has the records that are not ours)."""
        from confluent_kafka import Producer
        key = "01" + "".join(random.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(24))
        producer = Producer({"bootstrap.servers": self.cluster.kafka_bootstrap})
        signer = Signer.load(self.cluster.keys_dir)

        def send(value, **headers):
            producer.produce("product.events", key=key, value=value,
                             headers=signer.headers("product.events", key, value, headers))

        send(b"{not json", ce_id="poison-" + uuid.uuid4().hex, ce_type="product.created")
        send(json.dumps({"id": key}).encode())                          # no CloudEvent headers
        send(b"\xff\xfe not json either", ce_id="other-" + uuid.uuid4().hex, ce_type="product.updated")
        send(json.dumps({"id": key, "initial_stock": 9}).encode(), ce_id="good-" + uuid.uuid4().hex,
             ce_type="product.created")
        self.assertEqual(producer.flush(10), 0)
        wait_for(lambda: self.get(API + "/inventory/" + key).status_code == 200, 30,
                 what="the stock record made by the good record after the bad ones")
        self.assertEqual(self.get(API + "/inventory/" + key).json()["on_hand"], 9)
        with open(self.cluster.procs["node"].out_path, encoding="utf-8", errors="replace") as f:
            lines = [json.loads(line) for line in f if "malformed record skipped" in line]
        mine = [x for x in lines if x.get("topic") == "product.events"]
        self.assertEqual(len(mine), 2, lines)                           # not the product.updated one
        counts = sorted(x["malformed_total"] for x in mine)
        self.assertEqual(counts[1] - counts[0], 1)                      # counted, one each
        self.assertTrue(self.cluster.procs["node"].alive())


if __name__ == "__main__":
    unittest.main()
