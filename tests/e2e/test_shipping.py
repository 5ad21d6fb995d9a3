"""CONTRACT 7 (shipping) through HTTP and Kafka: a paid order gets a shipment (from order.paid,
consumed from Kafka) that its owner and admins see and nobody else does; an admin moves it
scheduled -> in_transit -> delivered and nothing else, and the order follows (shipped,
delivered) or, when it cannot (cancelled), the move is refused; shipment.scheduled and
shipment.updated reach shipping.events.

Orders are paid the way customers pay them, POST /payments with a test card. Uses
test_orders.ShopCase (every actor, and Kafka) and test_events.EventLog; tests make their own
customers, products and orders, so they may run in any order and alone.
"""

import json
import os
import sys
import unittest
import uuid
from datetime import date

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import wait_for  # noqa: E402
from test_events import READY as EVENTS_READY, SCHEMA_DIR, WHY as EVENTS_WHY, EventLog  # noqa: E402
from test_orders import API, ORDERS, READY, RFC3339_UTC, UNKNOWN_ID, WHY, ShopCase  # noqa: E402

SHIPPING = API + "/shipping"
SHIPMENT_FIELDS = {"order_id", "user_id", "status", "carrier", "tracking_number", "events",
                   "created_at", "updated_at"}
#  order.paid travels outbox -> relay -> Kafka -> the shipping consumer, which may first have to
#  join its group
SCHEDULE_S = 30.0
EVENT_S = 20.0


def rid(tag):
    return "e2e-ship-%s-%s" % (tag, uuid.uuid4().hex[:12])


@unittest.skipUnless(READY, WHY)
class TestShipping(ShopCase):
    # --- helpers -------------------------------------------------------------------------------
    def paid_order(self, who, request_id=None):
        """A fresh 1-line order of who's, paid by who with a card that succeeds."""
        p = self.product(stock=5)
        o = self.order(who, (p["id"], 1))
        h = {"X-Request-Id": request_id} if request_id else None
        r = self.call("POST", API + "/payments", {"order_id": o["id"], "card": {
            "number": "4242424242424242", "exp_month": 12, "exp_year": date.today().year + 2, "cvc": "123"}},
            auth=who, headers=h)
        self.assertStatus(r, 201, "fixture: %s pays order %s" % (who, o["id"]))
        self.assertEqual(self.fetch(who, o["id"])["status"], "paid")
        return o

    def shipment(self, oid, auth):
        return self.call("GET", SHIPPING + "/" + oid, auth=auth)

    def await_shipment(self, oid, who):
        """The order's shipment, once order.paid has reached the shipping actor."""
        r = wait_for(lambda: (lambda r: r if r.status_code == 200 else None)(self.shipment(oid, who)),
                     SCHEDULE_S, what="the shipment of order %s" % oid)
        return r.json()

    def advance(self, oid, status, auth=None, request_id=None):
        h = {"X-Request-Id": request_id} if request_id else None
        return self.call("POST", SHIPPING + "/%s/events" % oid, {"status": status},
                         auth=self.admin() if auth is None else auth, headers=h)

    def moved(self, oid, status, request_id=None):
        """Admin moves the shipment; asserts 200 and returns the shipment."""
        r = self.advance(oid, status, request_id=request_id)
        self.assertStatus(r, 200, "%s -> %s" % (oid, status))
        return r.json()

    def assertShipment(self, s, order, who, history):
        """s is order's shipment, owned by who, whose statuses so far are history."""
        self.assertEqual(set(s) & SHIPMENT_FIELDS, SHIPMENT_FIELDS, "missing fields in %s" % s)
        self.assertEqual(s["order_id"], order["id"], s)
        self.assertEqual(s["user_id"], who.id, s)
        self.assertEqual(s["status"], history[-1], s)
        self.assertIsInstance(s["carrier"], str)
        self.assertTrue(s["carrier"], s)
        self.assertIsInstance(s["tracking_number"], str)
        self.assertTrue(s["tracking_number"], s)
        self.assertEqual([e["status"] for e in s["events"]], history, s)
        for e in s["events"]:
            self.assertEqual(set(e), {"status", "at"}, e)
            self.assertRegex(e["at"], RFC3339_UTC, e)
        ats = [e["at"] for e in s["events"]]
        self.assertEqual(ats, sorted(ats), "history out of order: %s" % s)
        self.assertEqual(s["created_at"], ats[0], s)
        self.assertEqual(s["updated_at"], ats[-1], s)

    def assertIllegalMove(self, r, msg=""):
        self.assertStatus(r, 409, msg)
        return self.assertProblem(r, 409, "illegal_transition")

    def assertEventSchema(self, value, ce_type):
        """The parts of JSON Schema the shipment schemas use (no jsonschema on the runner)."""
        with open(os.path.join(SCHEMA_DIR, ce_type + ".json")) as f:
            schema = json.load(f)
        for k in schema["required"]:
            self.assertIn(k, value, "%s: %r missing in %s" % (ce_type, k, value))
        self.assertEqual(set(value) - set(schema["properties"]), set(),
                         "%s: members outside the schema in %s" % (ce_type, value))
        self.assertIn(value["status"], schema["properties"]["status"]["enum"], ce_type)
        for k in ("created_at", "updated_at"):
            self.assertRegex(value[k], RFC3339_UTC, "%s.%s" % (ce_type, k))

    # --- tests ---------------------------------------------------------------------------------
    def test_a_paid_order_gets_a_shipment_its_owner_and_admins_see(self):
        me, other = self.customer(), self.customer()
        o = self.paid_order(me)
        s = self.await_shipment(o["id"], me)
        self.assertShipment(s, o, me, ["scheduled"])
        r = self.shipment(o["id"], self.admin())
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), s)
        self.assertTrue(r.headers.get("ETag"), "GET without ETag: %s" % dict(r.headers))
        # anyone else's view: as if there were no such shipment
        self.assertProblem(self.shipment(o["id"], other), 404, "shipment_not_found")
        self.assertProblem(self.shipment(UNKNOWN_ID, me), 404)
        self.assertProblem(self.shipment(UNKNOWN_ID, self.admin()), 404)
        self.assertUnauthorized(self.shipment(o["id"], None))
        # the labels belong to the order: reading again changes nothing
        self.assertEqual(self.shipment(o["id"], me).json(), s)

    def test_moves_go_one_way_and_the_order_follows(self):
        me = self.customer()
        o = self.paid_order(me)
        first = self.await_shipment(o["id"], me)
        self.assertProblem(self.advance(o["id"], "in_transit", auth=me), 403)
        self.assertIllegalMove(self.advance(o["id"], "delivered"), "scheduled -> delivered")
        self.assertInvalid(self.advance(o["id"], "lost"), "status")
        self.assertInvalid(self.advance(o["id"], "scheduled"), "status")
        self.assertProblem(self.advance(UNKNOWN_ID, "in_transit"), 404)
        self.assertEqual(self.fetch(me, o["id"])["status"], "paid")
        self.assertEqual(self.shipment(o["id"], me).json(), first, "a refused move changed it")

        s = self.moved(o["id"], "in_transit")
        self.assertShipment(s, o, me, ["scheduled", "in_transit"])
        self.assertEqual((s["carrier"], s["tracking_number"]),
                         (first["carrier"], first["tracking_number"]))
        self.assertEqual(self.fetch(me, o["id"])["status"], "shipped")
        self.assertIllegalMove(self.advance(o["id"], "in_transit"), "in_transit again")

        s = self.moved(o["id"], "delivered")
        self.assertShipment(s, o, me, ["scheduled", "in_transit", "delivered"])
        self.assertEqual(self.fetch(me, o["id"])["status"], "delivered")
        self.assertIllegalMove(self.advance(o["id"], "delivered"), "delivered again")
        self.assertIllegalMove(self.advance(o["id"], "in_transit"), "delivered -> in_transit")
        self.assertEqual(self.shipment(o["id"], me).json(), s)

    def test_a_cancelled_order_refuses_the_move(self):
        me = self.customer()
        o = self.paid_order(me)
        s = self.await_shipment(o["id"], me)
        self.assertStatus(self.cancel(me, o["id"]), 200)
        self.assertIllegalMove(self.advance(o["id"], "in_transit"), "the order was cancelled")
        self.assertEqual(self.shipment(o["id"], me).json(), s)
        self.assertEqual(self.fetch(me, o["id"])["status"], "cancelled")

    @unittest.skipUnless(EVENTS_READY, EVENTS_WHY)
    def test_shipment_events_on_kafka(self):
        log = EventLog(self.cluster.kafka_bootstrap, ("order.events", "shipping.events"))
        self.addCleanup(log.close)
        me = self.customer()
        paid_rid, transit_rid, delivered_rid = rid("paid"), rid("transit"), rid("delivered")
        o = self.paid_order(me, request_id=paid_rid)
        scheduled = self.await_shipment(o["id"], me)
        in_transit = self.moved(o["id"], "in_transit", request_id=transit_rid)
        delivered = self.moved(o["id"], "delivered", request_id=delivered_rid)

        def distinct(recs):
            seen = {}
            for r in recs:
                seen.setdefault(r.ce_id, r)
            return list(seen.values())
        log.wait(lambda s: len(distinct(s.by_key("shipping.events", o["id"]))) >= 3, EVENT_S,
                 what="three shipment events of order %s" % o["id"])
        recs = distinct(log.by_key("shipping.events", o["id"]))
        self.assertEqual([r.type for r in recs],
                         ["shipment.scheduled", "shipment.updated", "shipment.updated"], recs)
        self.assertEqual([r.value for r in recs], [scheduled, in_transit, delivered])
        # the shipment was scheduled by the order.paid event itself, and continues its chain
        paid = [r for r in log.by_key("order.events", o["id"]) if r.type == "order.paid"]
        self.assertTrue(paid, "no order.paid for %s" % o["id"])
        self.assertEqual(recs[0].headers.get("ce_causationid"), paid[0].ce_id, recs[0])
        for r, corr in zip(recs, (paid[0].headers.get("ce_correlationid"), transit_rid, delivered_rid)):
            self.assertEqual(r.headers.get("ce_specversion"), "1.0", r)
            self.assertEqual(r.headers.get("ce_source"), "/mercato/shipping", r)
            self.assertEqual(r.headers.get("content-type"), "application/json", r)
            self.assertRegex(r.headers.get("ce_time", ""), RFC3339_UTC, r)
            # each continues the request that started it: the payment, or the admin's move
            self.assertEqual(r.headers.get("ce_correlationid"), corr, r)
            self.assertEventSchema(r.value, r.type)


if __name__ == "__main__":
    unittest.main()
