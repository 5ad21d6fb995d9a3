"""CONTRACT 7 (notifications) through HTTP, Kafka and a real SMTP server on loopback.

The cluster runs every actor, mercato-kafka-dev and mercato-relay, with MERCATO_SMTP_URL pointing
at an aiosmtpd sink this test starts on a free port. Registration, an order (placed, cancelled,
paid or declined, shipped) and low stock mail the right people, payments by card brand and last
four digits only; the history is each caller's own (an admin's: everyone's); the admin's test
mail arrives; a redelivered event (the consumer group's offsets reset to the beginning) sends no
second mail; mails wait out an SMTP outage and are sent after it with their attempts recorded;
and with no MERCATO_SMTP_URL a mail is recorded as logged.

Runner: /usr/bin/python3 with Debian's python3-aiosmtpd and python3-confluent-kafka.
"""

import email
import email.policy
import os
import socket
import sys
import threading
import unittest
import uuid
from datetime import datetime, timezone

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN_DIR, Cluster, ClusterTestCase, unique_email, strong_password, wait_for  # noqa: E402

try:
    from aiosmtpd.controller import Controller
except ImportError:          # pragma: no cover - the suite is skipped then
    Controller = None
try:
    from confluent_kafka import Consumer, TopicPartition
except ImportError:          # pragma: no cover
    Consumer = None

API = "/api/v1"
MAIL_TIMEOUT = 20.0
TOPICS = ("user.events", "order.events", "payment.events", "inventory.events", "shipping.events")
GROUP = "mercato-notifications"
SECOND_ADMIN = ("second-admin@mercato.test", "e2e-Second-Admin-9d2b!")
FIELDS = {"id", "user_id", "event_type", "channel", "recipient", "subject", "status", "attempts",
          "created_at"}

READY = Controller is not None and Consumer is not None and all(
    os.access(os.path.join(BIN_DIR, b), os.X_OK) for b in ("mercato-kafka-dev", "mercato-relay"))
WHY = "python3-aiosmtpd / python3-confluent-kafka missing, or kafka-dev / relay not built"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """An SMTP server on 127.0.0.1:port that keeps every mail it is given; stop() and start()
    again on the same port play an outage."""

    def __init__(self, port):
        self.port = port
        self.mails = []           # (envelope recipients, parsed message)
        self.lock = threading.Lock()
        self.controller = None

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.original_content or envelope.content,
                                       policy=email.policy.default)
        with self.lock:
            self.mails.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def start(self):
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller:
            self.controller.stop()
            self.controller = None

    def to(self, address):
        with self.lock:
            return [m for rcpt, m in self.mails if address in rcpt]

    def wait_to(self, address, pred=lambda m: True, what="a mail"):
        return wait_for(lambda: [m for m in self.to(address) if pred(m)], MAIL_TIMEOUT,
                        what="%s to %s" % (what, address))

    def message_ids(self):
        with self.lock:
            return [m["Message-ID"] for _, m in self.mails]


def body_of(msg):
    return msg.get_body(("plain",)).get_content()


@unittest.skipUnless(READY, WHY)
class TestNotifications(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        cls.sink = Sink(free_port())
        cls.sink.start()
        cls.addClassCleanup(cls.sink.stop)
        cls.cluster = Cluster(kafka=True, env={
            "MERCATO_SMTP_URL": "smtp://127.0.0.1:%d" % cls.sink.port,
            "MERCATO_SMTP_RETRY_MS": "200"})
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()
        # A second admin: identity creates MERCATO_ADMIN_EMAIL's user when it opens, so a node
        # restarted with another one adds it, and low stock has two admins to mail.
        c = cls.cluster
        cls.first_admin = c.admin_email
        c.admin_headers()
        c.procs["node"].stop()
        c.env["MERCATO_ADMIN_EMAIL"], c.env["MERCATO_ADMIN_PASSWORD"] = SECOND_ADMIN
        c.start("node")
        c.wait_ready()

    # --- helpers ------------------------------------------------------------------------------
    def customer(self):
        return self.cluster.register_customer(email=unique_email("notify"), password=strong_password())

    def notifications(self, auth, **params):
        r = self.call("GET", API + "/notifications", auth=auth, params=params)
        self.assertStatus(r, 200)
        return r.json()

    def all_notifications(self, auth):
        items, cursor = [], None
        while True:
            page = self.notifications(auth, limit=100, **({"cursor": cursor} if cursor else {}))
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def admin(self):
        return self.cluster.admin_headers()

    def stocked_product(self, stock):
        body = {"sku": "NT-" + uuid.uuid4().hex[:12], "name": "Notified thing", "description": "d",
                "category": "notify", "price_cents": 1234, "initial_stock": stock}
        r = self.call("POST", API + "/products", body, auth=self.admin())
        self.assertStatus(r, 201)
        pid = r.json()["id"]
        wait_for(lambda: self.get(API + "/inventory/" + pid).status_code == 200, 20,
                 what="the stock record of " + pid)
        return pid

    def place_order(self, who, pid, quantity=1):
        r = self.call("POST", API + "/orders", {
            "items": [{"product_id": pid, "quantity": quantity}],
            "shipping_address": {"name": "Ada", "line1": "1 Loop", "city": "Berlin",
                                 "postal_code": "10115", "country": "DE"}}, auth=who)
        self.assertStatus(r, 201)
        return r.json()

    def settled(self, auth, pred=lambda n: True):
        """Every notification the caller sees that pred picks, once none of them is pending."""
        def done():
            items = [n for n in self.all_notifications(auth) if pred(n)]
            return items if items and all(n["status"] != "pending" for n in items) else None
        return wait_for(done, MAIL_TIMEOUT, what="notifications no longer pending")

    # --- tests --------------------------------------------------------------------------------
    def test_registration_mails_the_new_user(self):
        who = self.customer()
        [mail] = self.sink.wait_to(who.email, what="the welcome mail")
        self.assertEqual(mail["Subject"], "Welcome to Mercato")
        self.assertEqual([a.addr_spec for a in mail["To"].addresses], [who.email])
        self.assertRegex(mail["Message-ID"], r"^<[^@<>\s]+@mercato>$")
        self.assertIn("Hello %s," % who.name, body_of(mail))
        [n] = self.settled(who)
        self.assertTrue(FIELDS <= set(n), n)
        self.assertEqual((n["user_id"], n["event_type"], n["channel"], n["recipient"], n["status"],
                          n["attempts"], n["subject"]),
                         (who.id, "user.registered", "email", who.email, "sent", 1, "Welcome to Mercato"))
        self.assertEqual(n["message_id"], mail["Message-ID"])

    def test_order_placed_mails_its_owner(self):
        who = self.customer()
        order = self.place_order(who, self.stocked_product(20), quantity=2)
        subject = "Your Mercato order %s is placed" % order["id"]
        [mail] = self.sink.wait_to(who.email, lambda m: m["Subject"] == subject, what="the order mail")
        text = body_of(mail)
        self.assertIn("2 x Notified thing", text)
        self.assertIn("Total: USD 24.68", text)
        n = self.settled(who, lambda n: n["event_type"] == "order.created")
        self.assertEqual([(x["status"], x["recipient"]) for x in n], [("sent", who.email)])
        self.assertStatus(self.call("POST", API + "/orders/%s/cancel" % order["id"], auth=who), 200)
        subject = "Your Mercato order %s is cancelled" % order["id"]
        self.sink.wait_to(who.email, lambda m: m["Subject"] == subject, what="the cancellation mail")

    def test_low_stock_mails_every_admin(self):
        pid = self.stocked_product(100)                  # threshold 10
        r = self.call("POST", API + "/inventory/%s/adjustments" % pid,
                      {"delta": -91, "reason": "shrinkage"}, auth=self.admin())
        self.assertStatus(r, 200)
        subject = "Low stock: product " + pid
        ids = set()
        for address in (self.first_admin, SECOND_ADMIN[0]):
            [mail] = self.sink.wait_to(address, lambda m: m["Subject"] == subject, what="the alert")
            self.assertIn("9 available to sell", body_of(mail))
            ids.add(mail["Message-ID"])
        self.assertEqual(len(ids), 2, "one Message-ID per admin: %s" % ids)
        alerts = self.settled(self.admin(), lambda n: n["subject"] == subject)
        self.assertEqual(sorted(n["recipient"] for n in alerts), sorted([self.first_admin, SECOND_ADMIN[0]]))

    def test_history_is_the_callers_own(self):
        a, b = self.customer(), self.customer()
        mine = self.settled(a)
        self.assertEqual({n["user_id"] for n in mine}, {a.id})
        theirs = self.settled(b)
        self.assertFalse({n["id"] for n in theirs} & {n["id"] for n in self.all_notifications(a)},
                         "a customer sees another's notifications")
        everyone = {n["id"] for n in self.all_notifications(self.admin())}
        self.assertTrue({n["id"] for n in mine + theirs} <= everyone, "an admin sees everyone's")
        page = self.notifications(self.admin(), limit=1)
        self.assertEqual(len(page["items"]), 1)
        self.assertTrue(page["next_cursor"])
        self.assertUnauthorized(self.call("GET", API + "/notifications"))

    def test_test_mail_is_for_admins(self):
        to = unique_email("test-mail")
        self.assertProblem(self.call("POST", API + "/notifications/test", {"to": to}, auth=self.customer()), 403)
        self.assertProblem(self.call("POST", API + "/notifications/test", {"to": "not an address"},
                                     auth=self.admin()), 422)
        r = self.call("POST", API + "/notifications/test", {"to": to}, auth=self.admin())
        self.assertStatus(r, 202)
        n = r.json()
        self.assertEqual((n["event_type"], n["recipient"], n["status"], n["attempts"]),
                         ("notification.test", to, "pending", 1))
        [mail] = self.sink.wait_to(to, what="the test mail")
        self.assertEqual(mail["Subject"], "Mercato test message")
        self.assertEqual(mail["Message-ID"], n["message_id"])
        [done] = self.settled(self.admin(), lambda x: x["id"] == n["id"])
        self.assertEqual(done["status"], "sent")

    def test_payment_and_shipping_mails(self):
        paths = self.get(API + "/openapi.json").json()["paths"]
        if "post" not in paths.get(API + "/payments", {}):
            self.skipTest("no payments service in this build")
        who = self.customer()
        order = self.place_order(who, self.stocked_product(20))

        def pay(number):
            return self.call("POST", API + "/payments", {"order_id": order["id"], "card": {
                "number": number, "exp_month": 12, "exp_year": datetime.now(timezone.utc).year + 2,
                "cvc": "123"}}, auth=who)
        self.assertStatus(pay("4000000000000002"), 402)
        self.assertStatus(pay("4242424242424242"), 201)
        for subject, card in (("Payment declined for your Mercato order ", "ending in 0002"),
                              ("Payment received for your Mercato order ", "ending in 4242")):
            [mail] = self.sink.wait_to(who.email, lambda m: m["Subject"] == subject + order["id"],
                                       what=subject.lower())
            self.assertIn(card, body_of(mail))
            raw = mail.as_bytes()
            for secret in (b"4000000000000002", b"4242424242424242", b"cvc"):
                self.assertNotIn(secret, raw.lower())
        if "post" not in paths.get(API + "/shipping/{order_id}/events", {}):
            return
        # a paid order gets a shipment; once it moves, the order has shipped
        wait_for(lambda: self.call("GET", API + "/shipping/" + order["id"], auth=who).status_code == 200,
                 MAIL_TIMEOUT, what="the shipment")
        self.assertStatus(self.call("POST", API + "/shipping/%s/events" % order["id"], {"status": "in_transit"},
                                    auth=self.admin()), 200)
        subject = "Your Mercato order %s has shipped" % order["id"]
        self.sink.wait_to(who.email, lambda m: m["Subject"] == subject, what="the shipping mail")

    def test_smtp_outage_is_waited_out(self):
        self.sink.stop()
        try:
            to = unique_email("outage")
            r = self.call("POST", API + "/notifications/test", {"to": to}, auth=self.admin())
            self.assertStatus(r, 202)
            nid = r.json()["id"]

            def failed_twice():
                [n] = [x for x in self.all_notifications(self.admin()) if x["id"] == nid]
                return n if n["attempts"] >= 2 else None
            n = wait_for(failed_twice, MAIL_TIMEOUT, what="two failed attempts")
            self.assertEqual(n["status"], "pending")
            self.assertTrue(n.get("last_error"), n)
            self.assertEqual(self.sink.to(to), [])
        finally:
            self.sink.start()
        self.sink.wait_to(to, what="the mail after the outage")
        [n] = self.settled(self.admin(), lambda x: x["id"] == nid)
        self.assertEqual(n["status"], "sent")
        self.assertGreater(n["attempts"], 1)

    def test_redelivered_events_send_no_second_mail(self):
        who = self.customer()
        self.place_order(who, self.stocked_product(20))
        wait_for(lambda: len(self.settled(who)) == 2, MAIL_TIMEOUT, what="the welcome and the order mail")
        self.settled(self.admin())                  # every mail so far has gone
        before = {n["id"]: n for n in self.all_notifications(self.admin())}
        c = self.cluster
        c.procs["node"].stop()
        conf = {"bootstrap.servers": c.kafka_bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                "session.timeout.ms": 6000, "heartbeat.interval.ms": 500}
        watch = Consumer(conf)
        try:
            md = watch.list_topics(timeout=10)
            parts = [TopicPartition(t, p) for t in TOPICS for p in md.topics[t].partitions]
            ends = {(tp.topic, tp.partition): watch.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
            self.assertGreater(sum(ends.values()), 0)
            # Kafka takes offsets only from a member of the group: join it while the node is
            # away, rewind every partition, and leave
            member = Consumer(conf)
            try:
                member.subscribe(list(TOPICS))
                wait_for(lambda: member.poll(0.2) is None and len(member.assignment()) == len(parts), 30,
                         interval=0, what="every partition assigned to the test's member")
                member.commit(offsets=[TopicPartition(tp.topic, tp.partition, 0) for tp in parts],
                              asynchronous=False)
            finally:
                member.close()
        finally:
            c.start("node")
            c.wait_ready()
        try:
            def caught_up():
                got = watch.committed(parts, timeout=5)
                return all(tp.offset >= ends[(tp.topic, tp.partition)] for tp in got)
            wait_for(caught_up, 60, interval=0.2, what="the consumer group to read every event again")
        finally:
            watch.close()
        after = {n["id"]: n for n in self.all_notifications(self.admin())}
        self.assertEqual(set(after), set(before), "notifications made by the replay: %s" % [
            after[i] for i in set(after) - set(before)])
        ids = self.sink.message_ids()
        self.assertEqual(sorted(ids), sorted(set(ids)), "a Message-ID mailed twice")
        self.assertEqual(len(self.sink.to(who.email)), 2)      # welcome and order placed


class TestWithoutSmtp(ClusterTestCase):
    """No MERCATO_SMTP_URL: mails are recorded as logged, and the node's log names them."""

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster()
        cls.cluster.env.pop("MERCATO_SMTP_URL", None)
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()

    def test_mails_are_logged(self):
        to = unique_email("logged")
        r = self.call("POST", API + "/notifications/test", {"to": to}, auth=self.cluster.admin_headers())
        self.assertStatus(r, 202)
        nid = r.json()["id"]

        def logged():
            r = requests.get(self.cluster.api + "/notifications", headers=self.cluster.admin_headers(), timeout=10)
            return [n for n in r.json()["items"] if n["id"] == nid and n["status"] != "pending"]
        [n] = wait_for(logged, MAIL_TIMEOUT, what="the test mail recorded")
        self.assertEqual((n["status"], n["attempts"]), ("logged", 1))
        with open(self.cluster.procs["node"].out_path) as f:
            lines = [line for line in f if "mail logged" in line and to in line]
        self.assertEqual(len(lines), 1)     # written before the mailer answered
        self.assertIn("Mercato test message", lines[0])


if __name__ == "__main__":
    unittest.main()
