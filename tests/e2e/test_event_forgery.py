"""CONTRACT 9: a Kafka record that did not come from Mercato's relay has no effect.

Whoever can produce to the topics writes records here with a real Kafka client
(python3-confluent-kafka) into the cluster's Kafka, looking exactly like the relay's: a forged
order.cancelled for a paid order (no refund), a forged order.paid (no shipment), a forged
user.registered (no mail), a forged product.created (no stock record), records signed with
another key (under its own key id, and under ours), and genuine records replayed with another
value. Each is skipped by every consumer that would act on it, logged ("unauthenticated record
skipped", with the reason) and counted, and a genuine event behind it, in the same partition,
still acts: the consumer stored the forged record's offset and went on.

The relay's signatures are checked here too, by tests/e2e/event_sign.py: an independent
implementation of the documented signing input (schemas/events/README.md).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import uuid
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN_DIR, DEFAULT_ACTORS, wait_for  # noqa: E402
from event_sign import KID_HEADER, SIG_HEADER, Signer, verify  # noqa: E402
from test_events import READY, WHY, EventLog  # noqa: E402
from test_payments import PayCase  # noqa: E402
from test_orders import API  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402

SKIPPED = "unauthenticated record skipped"
SETTLE_S = 20.0


def ulid_like():
    return "01" + uuid.uuid4().hex.upper()[:24].translate(str.maketrans("ILOU", "JKMN"))


def now_rfc3339():
    t = datetime.now(timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (t.microsecond // 1000)


def ce_headers(ce_type, source, ce_id=None):
    """The CloudEvents headers the relay writes (CONTRACT 8), for a record of ours."""
    return {"ce_specversion": "1.0", "ce_id": ce_id or ulid_like() + "-0", "ce_type": ce_type,
            "ce_source": source, "ce_time": now_rfc3339(), "content-type": "application/json",
            "ce_correlationid": "forged-" + uuid.uuid4().hex[:8], "ce_causationid": ulid_like()}


@unittest.skipUnless(READY, WHY)
class TestEventForgery(PayCase):
    ACTORS = DEFAULT_ACTORS

    def setUp(self):
        super().setUp()
        from confluent_kafka import Producer
        self.producer = Producer({"bootstrap.servers": self.cluster.kafka_bootstrap})
        self.ours = Signer.load(self.cluster.keys_dir)
        with open(os.path.join(self.cluster.keys_dir, "events.pub"), "rb") as f:
            self.public = serialization.load_pem_public_key(f.read())

    # --- producing as an outsider ----------------------------------------------------------
    def produce(self, topic, key, value, headers):
        """headers: a list of (name, bytes), or a dict (written unsigned)."""
        if isinstance(headers, dict):
            headers = [(k, v.encode()) for k, v in headers.items()]
        self.producer.produce(topic, key=key, value=value, headers=headers)
        self.assertEqual(self.producer.flush(10), 0, "the test's records reached Kafka")

    def forge(self, topic, key, data, ce_type, source, signer=None, kid=None):
        """A record that looks like the relay's: unsigned, or signed by signer (under kid).
        Returns its ce_id."""
        value = json.dumps(data, separators=(",", ":")).encode()
        h = ce_headers(ce_type, source)
        self.produce(topic, key, value, signer.headers(topic, key, value, h, kid=kid) if signer else h)
        return h["ce_id"]

    # --- what the node did with it ---------------------------------------------------------
    def skipped_lines(self):
        with open(self.cluster.procs["node"].out_path, encoding="utf-8", errors="replace") as f:
            return [json.loads(x) for x in f if SKIPPED in x]

    def await_skipped(self, ce_id, service, reason):
        """The node's log line for the record, from the consumer of service; asserts the reason."""
        line = wait_for(lambda: next((x for x in self.skipped_lines()
                                      if x.get("ce_id") == ce_id and x.get("service") == service), None),
                        SETTLE_S, what="%s to skip record %s" % (service, ce_id))
        self.assertEqual(line["reason"], reason, line)
        self.assertEqual(line["level"], "warn", line)
        before = [x["rejected_total"] for x in self.skipped_lines()
                  if x.get("service") == service and x["rejected_total"] < line["rejected_total"]]
        self.assertEqual(len(before), line["rejected_total"] - 1, "counted one by one: %s" % line)
        return line

    def shipment_status(self, oid, who):
        return self.call("GET", API + "/shipping/" + oid, auth=who).status_code

    def paid(self):
        """(customer, order as now, succeeded payment) of a freshly paid order."""
        me, o = self.pending(qty=1)
        pay = self.pay_ok(me, o)
        return me, self.fetch(me, o["id"]), pay

    def genuine(self, topic, key, ce_type):
        """The relay's own record of that type for key, read back from Kafka."""
        log = EventLog(self.cluster.kafka_bootstrap, [topic])
        self.addCleanup(log.close)
        log.wait(lambda s: [r for r in s.by_key(topic, key) if r.type == ce_type], SETTLE_S,
                 what="the relay's %s of %s" % (ce_type, key))
        return [r for r in log.by_key(topic, key) if r.type == ce_type][0]

    # --- tests ------------------------------------------------------------------------------
    def test_the_relay_signs_every_record(self):
        me, o, _ = self.paid()
        rec = self.genuine("order.events", o["id"], "order.paid")
        self.assertEqual(rec.header_counts.get(SIG_HEADER), 1, rec)
        self.assertEqual(rec.headers[KID_HEADER], self.ours.kid, rec)
        raw = dict(rec.raw_headers)
        self.assertTrue(verify(self.public, rec.topic, rec.raw_key, rec.raw_value, raw),
                        "the relay's signature does not verify independently: %r" % rec)
        self.assertFalse(verify(self.public, rec.topic, rec.raw_key, rec.raw_value + b" ", raw))

    def test_forged_cancellation_refunds_nothing(self):
        me, o, pay = self.paid()
        data = dict(o, status="cancelled")
        ce_id = self.forge("order.events", o["id"], data, "order.cancelled", "/mercato/orders")
        self.await_skipped(ce_id, "payments", "unsigned")
        self.await_skipped(ce_id, "notifications", "unsigned")     # no cancellation mail either
        self.assertEqual(self.payment(me, pay["id"])["status"], "succeeded", "a forged record refunded")
        self.assertEqual(self.status_of(me, o["id"]), "paid")
        # the genuine cancellation, behind it in the same partition, refunds
        self.assertStatus(self.cancel(me, o["id"]), 200)
        self.await_payment_status(me, pay["id"], "refunded")

    def test_forged_payment_ships_nothing(self):
        me, o = self.pending(qty=1)
        data = dict(o, status="paid")
        ce_id = self.forge("order.events", o["id"], data, "order.paid", "/mercato/orders")
        self.await_skipped(ce_id, "shipping", "unsigned")
        self.assertEqual(self.shipment_status(o["id"], me), 404, "a forged order.paid made a shipment")
        self.pay_ok(me, o)
        wait_for(lambda: self.shipment_status(o["id"], me) == 200, SETTLE_S,
                 what="the shipment of the genuinely paid order %s" % o["id"])

    def test_forged_registration_mails_nobody(self):
        uid, email = ulid_like(), "forged-%s@example.test" % uuid.uuid4().hex[:10]
        ce_id = self.forge("user.events", uid, {"user_id": uid, "email": email, "name": "Mallory",
                                                "role": "customer", "created_at": now_rfc3339()},
                           "user.registered", "/mercato/identity")
        self.await_skipped(ce_id, "notifications", "unsigned")
        # a genuine registration after it is mailed, so the forged one had its turn
        real = self.customer()

        def recipients():
            r = self.call("GET", API + "/notifications", auth=self.admin(), params={"limit": 100})
            self.assertStatus(r, 200)
            return {n["recipient"] for n in r.json()["items"]}
        wait_for(lambda: real.email in recipients(), SETTLE_S, what="the welcome notification of " + real.email)
        self.assertNotIn(email, recipients(), "a forged user.registered made a notification")

    def test_forged_product_makes_no_stock_record(self):
        pid = ulid_like()
        ce_id = self.forge("product.events", pid, {"id": pid, "sku": "FORGED-" + pid[-6:], "name": "x",
                                                   "description": "", "category": "x", "price_cents": 1,
                                                   "initial_stock": 1000},
                           "product.created", "/mercato/catalog")
        self.await_skipped(ce_id, "inventory", "unsigned")
        self.assertProblem(self.get(API + "/inventory/" + pid), 404)
        self.product(stock=3)          # a genuine product.created still makes its record

    def test_records_signed_with_another_key(self):
        mallory = Signer.generate()
        me, o, pay = self.paid()
        data = dict(o, status="cancelled")
        own_kid = self.forge("order.events", o["id"], data, "order.cancelled", "/mercato/orders",
                             signer=mallory)
        self.await_skipped(own_kid, "payments", "unknown_key")
        our_kid = self.forge("order.events", o["id"], data, "order.cancelled", "/mercato/orders",
                             signer=mallory, kid=self.ours.kid)
        line = self.await_skipped(our_kid, "payments", "bad_signature")
        self.assertEqual(line["kid"], self.ours.kid)
        self.assertEqual(self.payment(me, pay["id"])["status"], "succeeded")
        self.assertStatus(self.cancel(me, o["id"]), 200)
        self.await_payment_status(me, pay["id"], "refunded")

    def test_genuine_records_replayed_with_another_value(self):
        _, a, _ = self.paid()
        rec = self.genuine("order.events", a["id"], "order.paid")
        me, b = self.pending(qty=1)
        # A's signed order.paid, made into B's: its value, its key and a new ce_id (an old one
        # would be dropped as a redelivery), the signature kept
        value = json.dumps(dict(b, status="paid")).encode()
        fresh = ulid_like() + "-0"
        headers = [(k, fresh.encode() if k == "ce_id" else v) for k, v in rec.raw_headers]
        self.produce("order.events", b["id"], value, headers)
        self.await_skipped(fresh, "shipping", "bad_signature")
        # the same record with only its value changed, and with a second ce_id header added
        self.produce("order.events", rec.raw_key, rec.raw_value.replace(b'"paid"', b'"PAID"'),
                     rec.raw_headers)
        doubled = ulid_like() + "-0"
        self.produce("order.events", rec.raw_key, rec.raw_value, rec.raw_headers + [("ce_id", doubled.encode())])
        self.await_skipped(doubled, "shipping", "bad_signature")
        lines = [x for x in self.skipped_lines() if x.get("ce_id") == rec.ce_id and x.get("service") == "shipping"]
        self.assertEqual([x["reason"] for x in lines], ["bad_signature"], lines)
        self.assertEqual(self.shipment_status(b["id"], me), 404, "a replayed order.paid shipped B")
        self.pay_ok(me, b)
        wait_for(lambda: self.shipment_status(b["id"], me) == 200, SETTLE_S,
                 what="the shipment of the genuinely paid order %s" % b["id"])
        self.assertTrue(self.cluster.procs["node"].alive())


class TestNoKeyNoStart(unittest.TestCase):
    """Neither the relay nor a node with a consumer runs unauthenticated: each has its plane
    key, and one lacks the event key it needs."""

    def keys(self, drop):
        tmp = tempfile.mkdtemp(prefix="mercato-nokey-")
        self.addCleanup(shutil.rmtree, tmp, True)
        keys = os.path.join(tmp, "plane")
        gen = subprocess.run([os.path.join(BIN_DIR, "mercato-keys"), keys], capture_output=True, timeout=30)
        self.assertEqual(gen.returncode, 0, gen)
        self.assertEqual(os.stat(os.path.join(keys, "events.key")).st_mode & 0o777, 0o600)
        self.assertTrue(os.path.exists(os.path.join(keys, "events.pub")))
        if drop:
            os.unlink(os.path.join(keys, drop))
        return tmp, keys

    def run_bin(self, name, keys, *args):
        tmp, keys = keys
        return subprocess.run([os.path.join(BIN_DIR, name), "--data", os.path.join(tmp, "data")] + list(args),
                              env=dict(os.environ, MERCATO_KEYS_DIR=keys), capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)

    def test_relay_without_events_key(self):
        r = self.run_bin("mercato-relay", self.keys("events.key"), "--brokers", "127.0.0.1:9")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("events.key", r.stderr)
        self.assertIn("no event signing key, not starting", r.stdout)

    def test_node_without_events_pub(self):
        r = self.run_bin("mercato-node", self.keys("events.pub"), "--broker",
                         "ipc:///nonexistent/broker.sock", "--actors", "payments")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("no events.pub", r.stderr)
        self.assertIn("no event public key, not starting", r.stdout)

    def test_events_key_others_can_read(self):
        keys = self.keys(None)
        os.chmod(os.path.join(keys[1], "events.key"), 0o644)
        r = self.run_bin("mercato-relay", keys, "--brokers", "127.0.0.1:9")
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("chmod 600", r.stderr)


if __name__ == "__main__":
    unittest.main()
