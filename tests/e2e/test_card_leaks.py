"""CONTRACT 7 "only brand and last 4 digits are ever stored" and 8 "events never carry card
numbers", checked from the outside: after payments with distinctive cards (successes, both
declines, a replayed Idempotency-Key, a reused key, a Luhn-invalid and an expired card, a double
payment, another user's order, a cancellation refund and a return refund), every byte the run
left behind is searched for the full card numbers and the CVCs:

  * every file under the cluster's temp dir: the data dir (LMDB environments of every actor,
    keys, kafka.bootstrap) and the process logs (logs/<process>.out|.err), read after the
    processes have stopped, so logs are flushed and freed LMDB pages are searched too;
  * every Kafka record on every topic (key, value and headers);
  * every HTTP response the run received.

A card number is searched as ASCII digits, as its first digits without the last 4 (masked or
truncated forms), and as a 64-bit integer in big- and little-endian byte order (msgpack uint64,
a raw C integer). A CVC (4 digits, random, distinct from every amount, year and last4 of the run)
is searched next to a member name (cvc, cvv, csc, security_code, in any case) as ASCII digits or a
msgpack uint16, so that a 4-digit string elsewhere (a timestamp, an id) is no false alarm; in
Kafka values also as any JSON string or integer equal to it. Positive controls prove the scan
sees what is there: a canary file with a card in every searched encoding is found; the payment
ids, a product's sku and the cards' last4 are found in the LMDB files and Kafka records.

CONTRACT 11 "raw refresh tokens never reach identity", checked the same way
(TestRefreshTokenLeaks): after sign-ins, rotations, a reuse that revokes a family, a sign-out
and a password change, no file the run left (LMDB environments, keys, logs) holds any refresh
token the edge handed out, as its text or as the 32 random bytes it encodes, while every one of
their SHA-256 digests is in identity's LMDB file (the positive control: the scan reads the
records that name the tokens), and a canary file with a token in both forms is found.

And from the other side (TestSecretsRefusedOnThePlane): messages carrying a card number, a CVC
or a raw refresh token, sent with the edge's plane key straight to the node, are refused (422,
"is not a known field") and leave nothing behind.
"""

import base64
import hashlib
import json
import os
import random
import re
import struct
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import API, ClusterTestCase  # noqa: E402
from test_events import READY, WHY  # noqa: E402
from test_payments import (DECLINED, NO_FUNDS, PayEventCase, last_month, luhn_broken,  # noqa: E402
                           luhn_random)

MEMBER_NAMES = rb"(?:cvc|cvv2?|csc|security_code|securitycode)"
BANNED_MEMBERS = {"number", "card_number", "cardnumber", "pan", "cvc", "cvv", "cvv2", "csc",
                  "security_code"}


class Secret:
    """One card (number and CVC) the run sends, and the byte patterns that would betray it."""

    def __init__(self, label, number, cvc):
        self.label, self.number, self.cvc = label, number, cvc
        n = int(number)
        self.patterns = [
            ("%s: full number %s" % (label, number), re.compile(re.escape(number.encode()))),
            ("%s: number without its last 4 (%s)" % (label, number[:-4]),
             re.compile(re.escape(number[:-4].encode()))),
            ("%s: number as big-endian uint64" % label,
             re.compile(re.escape(struct.pack(">Q", n)))),
            ("%s: number as little-endian uint64" % label,
             re.compile(re.escape(struct.pack("<Q", n)))),
            ("%s: cvc %s next to a cvc member" % (label, cvc),
             re.compile(rb"(?is)" + MEMBER_NAMES + rb".{0,16}?(?:" + re.escape(cvc.encode()) +
                        rb"|" + re.escape(b"\xcd" + struct.pack(">H", int(cvc))) + rb")")),
        ]

    def scan(self, blob):
        """Names of the patterns found in blob."""
        return [name for name, rx in self.patterns if rx.search(blob)]


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def files_under(root):
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                yield p


@unittest.skipUnless(READY, WHY)
class TestCardLeaks(PayEventCase):
    def setUp(self):
        super().setUp()
        self.rnd = random.SystemRandom()
        self.responses = []

    def pick_cvcs(self, n, forbidden):
        out = []
        while len(out) < n:
            # above any stock level, quantity, threshold or year the run has
            c = "%04d" % self.rnd.randrange(3000, 10000)
            if c not in forbidden and c not in out:
                out.append(c)
        return out

    def record(self, r):
        self.responses.append(r)
        return r

    def scan_files(self, root, secrets):
        found, scanned = [], []
        for path in files_under(root):
            blob = read(path)
            if blob is None:
                continue
            scanned.append(path)
            for s in secrets:
                for name in s.scan(blob):
                    found.append((os.path.relpath(path, root), name))
        return found, scanned

    def scan_records(self, records, secrets):
        found = []
        cvcs = {s.cvc: s for s in secrets}
        numbers = {s.number: s for s in secrets}
        for r in records:
            where = "%s[%d]@%d key=%s type=%s" % (r.topic, r.partition, r.offset, r.key, r.type)
            blob = r.blob()
            for s in secrets:
                for name in s.scan(blob):
                    found.append((where, name))

            def walk(v, path):
                if isinstance(v, dict):
                    for k, x in v.items():
                        if k.lower() in BANNED_MEMBERS:
                            found.append((where, "card member %s.%s" % (path, k)))
                        walk(x, path + "." + k)
                elif isinstance(v, list):
                    for i, x in enumerate(v):
                        walk(x, "%s[%d]" % (path, i))
                elif isinstance(v, str):
                    if v in cvcs:
                        found.append((where, "%s = %r: the cvc of %s" % (path, v, cvcs[v].label)))
                    for n, s in numbers.items():
                        if n in v:
                            found.append((where, "%s contains the number of %s" % (path, s.label)))
                elif isinstance(v, int) and not isinstance(v, bool):
                    if str(v) in cvcs:
                        found.append((where, "%s = %d: the cvc of %s" % (
                            path, v, cvcs[str(v)].label)))
                    if str(v) in numbers:
                        found.append((where, "%s = %d: the number of %s" % (
                            path, v, numbers[str(v)].label)))
            if isinstance(r.value, dict):
                walk(r.value, "$")
        return found

    def test_no_card_number_or_cvc_is_kept_anywhere(self):
        c = self.cluster
        log = self.log()
        rnd = self.rnd
        me, other = self.customer(), self.customer()
        goods = self.goods()
        # Distinctive cards, random per run.
        visa = luhn_random("4", 16, rnd)
        master = luhn_random("53", 16, rnd)
        amex = luhn_random("37", 15, rnd)
        disc = luhn_random("6011", 16, rnd)
        second = luhn_random("4", 16, rnd)           # tried on a paid order: 409
        stranger = luhn_random("5", 16, rnd)         # tried on another user's order: 404
        invalid = luhn_broken(luhn_random("4", 16, rnd))
        expired = luhn_random("4", 16, rnd)
        reused = luhn_random("4", 16, rnd)           # sent under an already used key: 422
        canary = luhn_random("4", 16, rnd)           # never sent: the positive control
        cards = [("visa", visa), ("mastercard", master), ("amex", amex), ("discover", disc),
                 ("second payment", second), ("another user's order", stranger),
                 ("Luhn-invalid", invalid), ("expired", expired), ("reused key", reused),
                 ("card_declined", DECLINED), ("insufficient_funds", NO_FUNDS),
                 ("canary", canary)]
        amounts = {str(self.PRICE * q) for q in range(1, 9)}
        last4s = {n[-4:] for _, n in cards}
        cvcs = self.pick_cvcs(len(cards), amounts | last4s)
        secrets = {label: Secret(label, n, cvc) for (label, n), cvc in zip(cards, cvcs)}
        sent = [s for label, s in secrets.items() if label != "canary"]

        def pay(who, order, label, key=None, **kw):
            s = secrets[label]
            return self.record(self.pay(who, order["id"], s.number, cvc=s.cvc, key=key, **kw))

        # Successes (with a replayed key), declines then a success, refunds of two kinds.
        _, o1 = self.pending(me, qty=1)
        key1 = uuid.uuid4().hex
        p_visa = self.assertPaid(pay(me, o1, "visa", key=key1), o1, visa, "visa")
        self.assertStatus(pay(me, o1, "visa", key=key1), 201)                       # replay
        self.assertProblem(pay(me, o1, "reused key", key=key1), 422, "idempotency_key_reused")
        self.assertProblem(pay(me, o1, "second payment"), 409, "already_paid")

        _, o2 = self.pending(me, qty=2)
        key2 = uuid.uuid4().hex
        d1 = self.assertDeclined(pay(me, o2, "card_declined", key=key2), "card_declined")
        self.assertStatus(pay(me, o2, "card_declined", key=key2), 402)              # replay
        d2 = self.assertDeclined(pay(me, o2, "insufficient_funds"), "insufficient_funds")
        p_master = self.assertPaid(pay(me, o2, "mastercard"), o2, master, "mastercard")

        _, o3 = self.pending(me, qty=3)
        p_amex = self.assertPaid(pay(me, o3, "amex"), o3, amex, "amex")
        self.assertStatus(self.cancel(me, o3["id"]), 200)

        _, o4 = self.pending(me, qty=4)
        p_disc = self.assertPaid(pay(me, o4, "discover"), o4, disc, "discover")
        self.move(o4["id"], "shipped")
        self.move(o4["id"], "refunded")

        # Refused: Luhn, expiry, another user's order.
        _, o5 = self.pending(me, qty=5)
        self.assertInvalid(pay(me, o5, "Luhn-invalid"), "card.number")
        self.assertInvalid(pay(me, o5, "expired", exp=last_month()), "card.exp")
        self.assertProblem(pay(other, o5, "another user's order"), 404)
        # Reads, to have them in the logs too.
        for pid in (p_visa["id"], d1, d2, p_master["id"], p_amex["id"], p_disc["id"]):
            self.record(self.get_payment(me, pid))
        for o in (o1, o2, o3, o4, o5):
            self.record(self.payments_page(me, o["id"]))

        self.await_payment_status(me, p_amex["id"], "refunded")
        self.await_payment_status(me, p_disc["id"], "refunded")
        all_ids = [p_visa["id"], d1, d2, p_master["id"], p_amex["id"], p_disc["id"]]
        log.wait(lambda s: all(s.by_key("payment.events", i) for i in all_ids)
                 and s.has("payment.events", p_amex["id"], ["payment.refunded"])(s)
                 and s.has("payment.events", p_disc["id"], ["payment.refunded"])(s),
                 timeout=20, what="every payment's events, and both refunds")
        self.drained(("payments", "orders", "inventory", "catalog", "identity", "cart"))
        log.catch_up()

        # --- HTTP responses -----------------------------------------------------------------
        for r in self.responses:
            for s in sent:
                self.assertEqual(s.scan(r.content), [], "%s %s answered %d with card data: %s" % (
                    r.request.method, r.request.url, r.status_code, r.text[:500]))

        # --- Kafka --------------------------------------------------------------------------
        self.assertTrue(log.records, "no Kafka records at all")
        # positive control: the scanner sees what is there
        pay_recs = [r for r in log.records if r.topic == "payment.events"]
        self.assertTrue(any(r.key == p_amex["id"] and amex[-4:].encode() in r.raw_value
                            for r in pay_recs), "the amex last4 is not in its payment events")
        fake = type("FakeRec", (), {})()
        fake.topic, fake.partition, fake.offset, fake.key, fake.type = "x", 0, 0, "k", "t"
        fake.value = {"card": {"number": canary, "cvc": secrets["canary"].cvc}}
        fake.blob = lambda: json.dumps(fake.value).encode()
        hits = self.scan_records([fake], [secrets["canary"]])
        self.assertTrue(any("full number" in h for _, h in hits), hits)
        self.assertTrue(any("next to a cvc member" in h for _, h in hits), hits)
        self.assertTrue(any("card member" in h for _, h in hits), hits)
        leaks = self.scan_records(log.records, sent)
        self.assertEqual(leaks, [], "card data in Kafka records (of %d): %s" % (
            len(log.records), leaks[:20]))

        # --- files: stop everything first (logs flushed, nothing written any more) ----------
        codes = c.stop_all()
        root = c.tmp
        # positive control 1: a canary file with the canary card in every searched encoding
        canary_path = os.path.join(c.data_dir, "canary", "data.bin")
        os.makedirs(os.path.dirname(canary_path))
        s = secrets["canary"]
        with open(canary_path, "wb") as f:
            f.write(b"\x00junk" + canary.encode() + b"\x00" + struct.pack(">Q", int(canary)) +
                    b"\x00" + struct.pack("<Q", int(canary)) +
                    b"\xa3cvc\xcd" + struct.pack(">H", int(s.cvc)) + b"\x00" +
                    json.dumps({"CVC": s.cvc}).encode())
        found, scanned = self.scan_files(root, [s])
        self.assertEqual(sorted({name for _, name in found}),
                         sorted(name for name, _ in s.patterns),
            "the scanner misses encodings in the canary file %s" % canary_path)
        os.unlink(canary_path)
        os.rmdir(os.path.dirname(canary_path))
        # positive control 2: the scan reads the LMDB environments and the logs, and finds
        # what they do hold (ids, a sku, last4s)
        rel = sorted(os.path.relpath(p, root) for p in scanned)
        self.assertTrue(any(re.match(r"data/payments[^/]*/", p) and p.endswith("data.mdb")
                            for p in rel), "no payments LMDB file scanned: %s" % rel)
        self.assertTrue(any(p.startswith("logs/") for p in rel), rel)
        blobs = {p: read(os.path.join(root, p)) or b"" for p in rel}
        data = b"".join(b for p, b in blobs.items() if p.startswith("data/"))
        self.assertIn(goods["sku"].encode(), data, "the product's sku is not in any LMDB file")
        for pid in all_ids:
            self.assertIn(pid.encode(), data, "payment %s is in no file under data/" % pid)
        for n in (visa, master, amex, disc, DECLINED):
            self.assertIn(n[-4:].encode(), data, "last4 %s is in no file under data/" % n[-4:])
        # the real scan
        found, scanned = self.scan_files(root, sent)
        self.assertEqual(found, [], "card data in files (processes exited %s): %s" % (
            codes, found[:20]))
        sys.stderr.write("\n[leaks] scanned %d files (%d bytes) and %d Kafka records for %d "
                         "cards\n" % (len(scanned), sum(len(b) for b in blobs.values()),
                                      len(log.records), len(sent)))


def b64u_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class TestRefreshTokenLeaks(ClusterTestCase):

    def tokens_call(self, path, token):
        return self.call("POST", API + "/auth/" + path, {"refresh_token": token})

    def test_no_raw_refresh_token_is_kept_anywhere(self):
        c = self.cluster
        issued = []                 # every refresh token an answer carried

        def keep(reply):
            t = reply["refresh_token"]
            self.assertRegex(t, r"^[A-Za-z0-9_-]{43}$", "a refresh token is 32 bytes, base64url")
            issued.append(t)
            return t

        ann = c.register_customer()
        bob = c.register_customer()
        t1 = keep(ann.tokens)
        keep(bob.tokens)
        # rotation: each refresh hands out a new token and spends the old one
        r = self.tokens_call("refresh", t1)
        self.assertStatus(r, 200)
        t2 = keep(r.json())
        self.assertNotEqual(t1, t2)
        r = self.tokens_call("refresh", t2)
        self.assertStatus(r, 200)
        t3 = keep(r.json())
        # reuse of a spent token revokes the family, the newest token included
        r = self.tokens_call("refresh", t1)
        self.assertUnauthorized(r)
        self.assertEqual(r.json()["code"], "refresh_token_reused")
        self.assertUnauthorized(self.tokens_call("refresh", t3))
        # a sign-out, then a second session and a password change that ends every session
        s2 = keep(c.login(ann.email, ann.password))
        self.assertStatus(self.tokens_call("logout", s2), 204)
        self.assertUnauthorized(self.tokens_call("refresh", s2))
        s3 = keep(c.login(ann.email, ann.password))
        new_password = ann.password + "-2"
        pair = c.login(ann.email, ann.password)
        keep(pair)
        r = self.call("PUT", API + "/users/me/password",
                      {"current_password": ann.password, "new_password": new_password},
                      auth=pair["access_token"])
        self.assertStatus(r, 204)
        self.assertUnauthorized(self.tokens_call("refresh", s3))
        keep(c.login(ann.email, new_password))
        self.assertEqual(len(set(issued)), len(issued), "a refresh token was handed out twice")

        codes = c.stop_all()
        root = c.tmp
        # positive control 1: a canary file with a token never issued, in both forms, which
        # the scan below must find
        canary = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        canary_path = os.path.join(c.data_dir, "canary.bin")
        with open(canary_path, "wb") as f:
            f.write(b"\x00junk" + canary.encode() + b"\x00" + b64u_decode(canary))
        secrets = [(t, t.encode(), b64u_decode(t)) for t in issued + [canary]]
        # the scan: every file under the run's temp dir, read after the processes stopped
        found, scanned, data = [], [], b""
        for path in files_under(root):
            blob = read(path)
            if blob is None:
                continue
            rel = os.path.relpath(path, root)
            scanned.append(rel)
            if rel.startswith("data/identity"):
                data += blob
            for t, text, raw in secrets:
                if text in blob:
                    found.append((rel, "token %s... as text" % t[:6]))
                if raw in blob:
                    found.append((rel, "token %s... as its random bytes" % t[:6]))
        os.unlink(canary_path)
        rel_canary = os.path.relpath(canary_path, root)
        self.assertEqual(sorted(h for p, h in found if p == rel_canary),
                         ["token %s... as its random bytes" % canary[:6],
                          "token %s... as text" % canary[:6]], "the scan misses the canary")
        found = [(p, h) for p, h in found if p != rel_canary]
        self.assertTrue(any(p.startswith("logs/") for p in scanned), scanned)
        # identity keeps no secret the tokens derive from (when it minted them as HMACs of
        # message ids under keys/refresh.key, that file and the LMDB file gave every token back)
        self.assertEqual([p for p in scanned if os.path.basename(p) == "refresh.key"], [])
        self.assertTrue(any(p.startswith("data/identity") and p.endswith("data.mdb")
                            for p in scanned), "no identity LMDB file scanned: %s" % scanned)
        # positive control 2: every token's digest names its record in identity's LMDB file
        for t in issued:
            digest = hashlib.sha256(t.encode()).digest()
            self.assertIn(digest, data, "the digest of token %s... is in no identity file" % t[:6])
        self.assertEqual(found, [], "raw refresh tokens in files (processes exited %s): %s" % (
            codes, found[:20]))
        sys.stderr.write("\n[leaks] scanned %d files for %d refresh tokens\n" % (
            len(scanned), len(issued)))


class TestSecretsRefusedOnThePlane(ClusterTestCase):
    """What the edge never sends is refused when someone with an edge key sends it: a card
    number or CVC in payment.create, a raw refresh token in session.refresh or session.logout.
    The messages go over the real plane (CURVE, the cluster's edge key) straight to the real
    node's front, as the edge's own requests do (the broker is not on their path); each
    reply is a 422 naming the field, which proves the actor's validation saw the message, and
    afterwards no file of the run holds the values sent."""

    def test_card_and_refresh_token_fields_are_refused(self):
        import msgpack
        import zmq
        from test_frames import Client, envelope, node_front, ulid
        c = self.cluster
        rnd = random.SystemRandom()
        number = luhn_random("4", 16, rnd)
        cvc = "%04d" % rnd.randrange(3000, 10000)
        raw = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest()).rstrip(b"=").decode()
        user, order = ulid(), ulid()
        summary = {"exp_month": 12, "exp_year": 2040, "brand": "visa", "last4": number[-4:],
                   "luhn": True, "cvc_ok": True, "outcome": "approved"}
        cases = [
            ("payments.0", "payment.create", order,
             {"order_id": order, "card": dict(summary, number=number)}, {"card.number"}),
            ("payments.0", "payment.create", order,
             {"order_id": order, "card": dict(summary, cvc=cvc)}, {"card.cvc"}),
            ("payments.0", "payment.create", order,
             {"order_id": order, "card": {"number": number, "exp_month": 12, "exp_year": 2040,
                                          "cvc": cvc}}, {"card.number", "card.cvc"}),
            ("identity.0", "session.refresh", ulid(),
             {"refresh_token": raw, "refresh_digest": digest, "new_refresh_digest": digest},
             {"refresh_token"}),
            ("identity.0", "session.logout", ulid(),
             {"refresh_token": raw, "refresh_digest": digest}, {"refresh_token"}),
        ]
        ctx = zmq.Context()
        endpoint, key = node_front(c)
        client = Client(c, ctx, endpoint, server_key=key)
        try:
            for service, mtype, key, body, fields in cases:
                rep = client.request(service, envelope(mtype, body, key=key, user=user,
                                                       role="customer"))
                self.assertIsNotNone(rep, "%s: no answer" % mtype)
                reply = msgpack.unpackb(rep[4])
                self.assertEqual(reply["status"], 422, "%s %s: %r" % (mtype, sorted(body), reply))
                got = {e["field"]: e["message"] for e in reply["error"]["errors"]}
                for f in fields:
                    self.assertEqual(got.get(f), "is not a known field", "%s: %r" % (mtype, got))
            # the same messages as the edge sends them are served: the refusals were the fields
            rep = client.request("identity.0", envelope("session.logout", {"refresh_digest": digest},
                                                        key=ulid(), user="", role="anonymous"))
            self.assertEqual(msgpack.unpackb(rep[4])["status"], 204)
        finally:
            client.close()
            ctx.destroy(linger=0)
        codes = c.stop_all()
        card = Secret("sent on the plane", number, cvc)
        found = []
        for path in files_under(c.tmp):
            blob = read(path) or b""
            rel = os.path.relpath(path, c.tmp)
            found += [(rel, name) for name in card.scan(blob)]
            for what, value in (("refresh token", raw.encode()), ("token bytes", b64u_decode(raw))):
                if value in blob:
                    found.append((rel, what))
        self.assertEqual(found, [], "refused secrets in files (processes exited %s)" % codes)


if __name__ == "__main__":
    unittest.main()
