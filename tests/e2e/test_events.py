"""CONTRACT 8 (events on Kafka), part 1: product.* and user.registered from the transactional
outbox through mercato-relay to mercato-kafka-dev (librdkafka's in-memory mock cluster).

Records are read without a consumer group: every test assigns all partitions of the topics it
reads from OFFSET_BEGINNING and filters by its own keys / request ids, so tests may run in any
order and alone. Waiting is always polling with a deadline.

Runner: /usr/bin/python3 with Debian's python3-confluent-kafka. The drain checks use mdb_stat
(lmdb-utils) and are skipped without it.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
import unittest
import uuid
from datetime import datetime, timezone

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN_DIR, ClusterTestCase, unique_email, strong_password, wait_for  # noqa: E402

try:
    from confluent_kafka import Consumer, KafkaError, TopicPartition, OFFSET_BEGINNING
except ImportError:          # pragma: no cover - the suite is skipped then
    Consumer = None

P = "/api/v1/products"
TOPICS = ("product.events", "inventory.events", "order.events", "payment.events",
          "user.events", "shipping.events")
PARTITIONS = 4
ULID = r"[0-9A-HJKMNP-TV-Z]{26}"
RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
CE_HEADERS = ("ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time", "content-type",
              "ce_correlationid", "ce_causationid")
SECRET_WORDS = (b"password", b"argon2", b"hash")    # lower case: ULIDs are upper case
MDB_STAT = shutil.which("mdb_stat")
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas",
                          "events")
EVENT_TIMEOUT = float(os.environ.get("MERCATO_E2E_EVENT_TIMEOUT", "10"))


def _have_bins():
    return all(os.access(os.path.join(BIN_DIR, b), os.X_OK)
               for b in ("mercato-kafka-dev", "mercato-relay"))


READY = Consumer is not None and _have_bins()
WHY = ("python3-confluent-kafka missing" if Consumer is None
       else "mercato-kafka-dev / mercato-relay not built in %s" % BIN_DIR)


def rid(tag):
    """An X-Request-Id the edge keeps (short, plain)."""
    return "e2e-%s-%s" % (tag, uuid.uuid4().hex[:16])


def traceparent():
    return "00-%s-%s-01" % (uuid.uuid4().hex, uuid.uuid4().hex[:16])


def product(tag="ev", **over):
    body = {"sku": "%s-%s" % (tag, uuid.uuid4().hex[:16]), "name": "Event product",
            "description": "A product for event tests", "category": "events-" + tag,
            "price_cents": 1999}
    body.update(over)
    return body


class Rec:
    """One consumed Kafka record."""

    def __init__(self, m):
        self.topic, self.partition, self.offset = m.topic(), m.partition(), m.offset()
        self.raw_key = m.key() or b""
        self.raw_value = m.value() or b""
        self.raw_headers = list(m.headers() or [])
        self.key = self.raw_key.decode("utf-8", "replace")
        self.headers = {}
        self.header_counts = {}
        for k, v in self.raw_headers:
            self.headers[k] = (v or b"").decode("utf-8", "replace")
            self.header_counts[k] = self.header_counts.get(k, 0) + 1
        try:
            self.value = json.loads(self.raw_value)
        except ValueError:
            self.value = None

    @property
    def type(self):
        return self.headers.get("ce_type")

    @property
    def ce_id(self):
        return self.headers.get("ce_id")

    def blob(self):
        """Everything the record carries, as bytes (for secret scans)."""
        return b"\0".join([self.raw_key, self.raw_value] + [
            k.encode() + b"=" + (v or b"") for k, v in self.raw_headers])

    def __repr__(self):
        return "<%s[%d]@%d key=%s %s %s value=%s>" % (
            self.topic, self.partition, self.offset, self.key, self.headers,
            "", self.raw_value[:300].decode("utf-8", "replace"))


class EventLog:
    """Reads whole topics from the beginning, without group coordination."""

    def __init__(self, bootstrap, topics=TOPICS, timeout=EVENT_TIMEOUT):
        self.bootstrap = bootstrap
        self.topics = tuple(topics)
        self.records = []
        self.errors = []
        self.seen = {}            # (topic, partition) -> next offset consumed
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "t-" + uuid.uuid4().hex[:8],
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "topic.metadata.refresh.interval.ms": 1000,
            "socket.connection.setup.timeout.ms": 3000,
            "reconnect.backoff.max.ms": 500,
            "fetch.wait.max.ms": 20,     # watermark queries queue behind a long-poll fetch
        })
        try:
            wait_for(self._topics_exist, timeout, interval=0.1,
                     what="topics %s with %d partitions on %s" % (
                         ", ".join(self.topics), PARTITIONS, bootstrap))
            self.c.assign([TopicPartition(t, p, OFFSET_BEGINNING)
                           for t in self.topics for p in range(PARTITIONS)])
        except Exception:
            self.c.close()
            raise

    def _topics_exist(self):
        md = self.c.list_topics(timeout=1.0)
        for t in self.topics:
            tm = md.topics.get(t)
            if tm is None or tm.error is not None or len(tm.partitions) != PARTITIONS:
                return False
        return True

    def close(self):
        try:
            self.c.close()
        except Exception:  # noqa: BLE001
            pass

    def pump(self, timeout=0.1):
        for m in self.c.consume(num_messages=1000, timeout=timeout):
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.errors.append(str(err))
                continue
            r = Rec(m)
            self.records.append(r)
            self.seen[(r.topic, r.partition)] = r.offset + 1

    def wait(self, pred, timeout=EVENT_TIMEOUT, what="events"):
        """Consume until pred(self) is truthy; returns its value, or fails with what was seen."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            v = pred(self)
            if v:
                return v
            if time.monotonic() >= deadline:
                raise AssertionError(
                    "timed out after %.0fs waiting for %s; consumed %d records (last: %s); "
                    "consumer errors: %s" % (timeout, what, len(self.records),
                                             self.records[-3:], self.errors[-5:]))

    def catch_up(self, timeout=EVENT_TIMEOUT):
        """Consume up to the high watermark of every partition as it is now."""
        highs = {}
        for t in self.topics:
            for p in range(PARTITIONS):
                _, high = self.c.get_watermark_offsets(TopicPartition(t, p), timeout=5.0)
                highs[(t, p)] = high
        self.wait(lambda s: all(s.seen.get(tp, 0) >= h for tp, h in highs.items()), timeout,
                  what="every partition read up to its high watermark %s" % highs)

    # --- selections ---------------------------------------------------------------------------
    def by_key(self, topic, key):
        rs = [r for r in self.records if r.topic == topic and r.key == key]
        return sorted(rs, key=lambda r: (r.partition, r.offset))

    def by_corr(self, corr):
        return [r for r in self.records if r.headers.get("ce_correlationid") == corr]

    def has(self, topic, key, types):
        """Predicate factory: the key's distinct events (by ce_id) include all types."""
        def pred(s):
            got = {r.type for r in s.by_key(topic, key)}
            return set(types) <= got
        return pred


def outbox_entries(data_dir, env):
    """Entries in the "outbox" databases of a service's environments, every shard's (mdb_stat)."""
    root = os.path.join(data_dir, env)
    shards = sorted(d for d in os.listdir(root) if d.isdigit()) if os.path.isdir(root) else ["0"]
    total = 0
    for shard in shards:
        path = os.path.join(root, shard)
        out = subprocess.run([MDB_STAT, "-s", "outbox", path], capture_output=True, text=True,
                             timeout=10)
        if out.returncode != 0:
            raise AssertionError("mdb_stat -s outbox %s failed (%d): %s %s" % (
                path, out.returncode, out.stdout, out.stderr))
        m = re.search(r"Entries:\s*(\d+)", out.stdout)
        if not m:
            raise AssertionError("no Entries in mdb_stat output: %s" % out.stdout)
        total += int(m.group(1))
    return total


def parse_time(s):
    return datetime.strptime(re.sub(r"\.\d+Z$", "Z", s), "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=timezone.utc)


class EventCase(ClusterTestCase):
    KAFKA = True

    def setUp(self):
        super().setUp()
        self.t0 = datetime.now(timezone.utc)

    def log(self, topics=TOPICS):
        lg = EventLog(self.cluster.kafka_bootstrap, topics)
        self.addCleanup(lg.close)
        return lg

    def req(self, method, path, body=None, request_id=None, tp=None, auth=True, headers=None,
            session=None):
        h = {}
        if auth:
            h.update(self.cluster.admin_headers())
        if request_id:
            h["X-Request-Id"] = request_id
        if tp:
            h["traceparent"] = tp
        if body is not None:
            h["Content-Type"] = ("application/merge-patch+json" if method == "PATCH"
                                 else "application/json")
        h.update(headers or {})
        s = session or self.http
        r = s.request(method, self.url(path), data=None if body is None else json.dumps(body),
                      headers=h, timeout=10)
        if request_id:
            self.assertEqual(r.headers.get("X-Request-Id"), request_id,
                             "%s %s: the edge did not keep X-Request-Id" % (method, path))
        return r

    def create(self, request_id=None, tp=None, session=None, **over):
        body = product(**over)
        r = self.req("POST", P, body, request_id, tp, session=session)
        self.assertStatus(r, 201)
        return r.json()

    def assertEnvelope(self, rec, ce_type, source, corr, tp=None, what=""):
        """CloudEvents 1.0 Kafka binary binding headers (CONTRACT 8)."""
        ctx = "%s: %s record %r" % (what, ce_type, rec)
        for h in CE_HEADERS:
            self.assertIn(h, rec.headers, "missing header %s; %s" % (h, ctx))
        dup = {k: n for k, n in rec.header_counts.items() if n > 1}
        self.assertFalse(dup, "repeated headers %s; %s" % (dup, ctx))
        hs = rec.headers
        self.assertEqual(hs["ce_specversion"], "1.0", ctx)
        self.assertEqual(hs["ce_type"], ce_type, ctx)
        self.assertEqual(hs["ce_source"], source, ctx)
        self.assertEqual(hs["content-type"], "application/json", ctx)
        self.assertEqual(hs["ce_correlationid"], corr, "ce_correlationid is not the X-Request-Id "
                         "sent; %s" % ctx)
        self.assertRegex(hs["ce_causationid"], "^" + ULID + "$", ctx)
        self.assertRegex(hs["ce_id"], "^" + re.escape(hs["ce_causationid"]) + r"-\d+$",
                         "ce_id is not <causing message id>-<n>; " + ctx)
        self.assertRegex(hs["ce_time"], RFC3339_UTC, ctx)
        t = parse_time(hs["ce_time"])
        now = datetime.now(timezone.utc)
        self.assertTrue(self.t0.timestamp() - 5 <= t.timestamp() <= now.timestamp() + 5,
                        "ce_time %s outside the test's run [%s, %s]; %s" % (
                            hs["ce_time"], self.t0.isoformat(), now.isoformat(), ctx))
        if tp is None:
            self.assertNotIn("traceparent", hs, "traceparent on an event whose request carried "
                             "none (or an invalid one); " + ctx)
        else:
            self.assertEqual(hs.get("traceparent"), tp, "traceparent not propagated; " + ctx)
        self.assertIsInstance(rec.value, dict, "value is not a JSON object; " + ctx)

    def assertNoSecrets(self, records, extra=()):
        for r in records:
            blob = r.blob()
            for w in SECRET_WORDS + tuple(x.encode() for x in extra):
                self.assertNotIn(w, blob, "record carries %r: %r" % (w, r))
            if isinstance(r.value, dict):
                for k in r.value:
                    self.assertFalse(any(w.decode() in k.lower() for w in SECRET_WORDS),
                                     "secret-looking member %r in %r" % (k, r))

    def wait_drained(self, envs=("catalog", "identity"), timeout=EVENT_TIMEOUT):
        if MDB_STAT is None:
            return False
        got = {}

        def empty():
            for e in envs:
                got[e] = outbox_entries(self.cluster.data_dir, e)
            return all(n == 0 for n in got.values())
        try:
            wait_for(empty, timeout, interval=0.1, what="empty outboxes")
        except Exception as e:  # noqa: BLE001
            self.fail("outbox not drained after delivery: entries %s (%s)" % (got, e))
        return True


@unittest.skipUnless(READY, WHY)
class TestEventContent(EventCase):
    """Shared cluster: what each write puts on Kafka, and nothing else."""

    def test_product_lifecycle_events_in_order_with_headers_and_values(self):
        log = self.log()
        r_create, r_bad, r_update, r_delete = rid("c"), rid("bad"), rid("u"), rid("d")
        tp_update = traceparent()
        body = product("life", initial_stock=7)
        r = self.req("POST", P, body, r_create)
        self.assertStatus(r, 201)
        created = r.json()
        pid = created["id"]
        g = self.req("GET", P + "/" + pid, auth=False)
        self.assertStatus(g, 200)
        self.assertEqual(g.json(), created)
        # A refused write changes nothing and says nothing.
        self.assertStatus(self.req("PATCH", P + "/" + pid, {"price_cents": -5}, r_bad), 422)
        r = self.req("PATCH", P + "/" + pid, {"name": "Renamed event product",
                                             "price_cents": 2500}, r_update, tp_update)
        self.assertStatus(r, 200)
        g = self.req("GET", P + "/" + pid, auth=False)
        self.assertStatus(g, 200)
        updated = g.json()
        self.assertEqual(updated["name"], "Renamed event product")
        self.assertStatus(self.req("DELETE", P + "/" + pid, None, r_delete), 204)

        log.wait(log.has("product.events", pid, ["product.deleted"]),
                 what="product.deleted for %s" % pid)
        self.wait_drained(("catalog",))
        log.catch_up()
        rs = log.by_key("product.events", pid)
        self.assertEqual([x.type for x in rs],
                         ["product.created", "product.updated", "product.deleted"],
                         "sent POST, PATCH (422), PATCH, DELETE for %s; records %s" % (pid, rs))
        self.assertEqual(len({x.partition for x in rs}), 1, "one key, several partitions: %s" % rs)
        self.assertEqual(len({x.ce_id for x in rs}), 3, "ce_id reused: %s" % rs)
        c, u, d = rs
        self.assertEnvelope(c, "product.created", "/mercato/catalog", r_create, None, "POST")
        self.assertEnvelope(u, "product.updated", "/mercato/catalog", r_update, tp_update, "PATCH")
        self.assertEnvelope(d, "product.deleted", "/mercato/catalog", r_delete, None, "DELETE")
        # product.created: the product as GET returns it, plus initial_stock
        cv = dict(c.value)
        self.assertIn("initial_stock", cv, "product.created without initial_stock: %r" % c)
        stock = cv.pop("initial_stock")
        self.assertTrue(type(stock) is int and stock == 7,
                        "sent initial_stock 7, event has %r" % (stock,))
        self.assertEqual(cv, created, "product.created value vs GET")
        self.assertEqual(u.value, updated, "product.updated value vs GET after the PATCH")
        self.assertEqual(d.value, {"id": pid, "sku": body["sku"]}, "product.deleted value")
        self.assertEqual(log.by_corr(r_bad), [], "a 422 PATCH produced events")
        self.assertNoSecrets(rs)

    def test_initial_stock_defaults_to_zero(self):
        log = self.log(("product.events",))
        p = self.create(request_id=rid("c0"))
        [rec] = log.wait(lambda s: s.by_key("product.events", p["id"]),
                         what="product.created for %s" % p["id"])
        self.assertEqual(rec.type, "product.created")
        v = dict(rec.value)
        stock = v.pop("initial_stock", None)
        self.assertTrue(type(stock) is int and stock == 0,
                        "no initial_stock sent: event should carry 0, has %r" % (stock,))
        self.assertEqual(v, p)

    def test_invalid_traceparent_is_not_propagated(self):
        log = self.log(("product.events",))
        bad = "00-%s-%s-01" % ("0" * 32, uuid.uuid4().hex[:16])    # all-zero trace id
        corr = rid("tpbad")
        p = self.create(request_id=corr, tp=bad)
        [rec] = log.wait(lambda s: s.by_key("product.events", p["id"]),
                         what="product.created for %s" % p["id"])
        self.assertEnvelope(rec, "product.created", "/mercato/catalog", corr, None,
                            "POST with invalid traceparent %s" % bad)

    def test_every_product_event_carries_the_traceparent_sent(self):
        log = self.log(("product.events",))
        tps = [traceparent() for _ in range(3)]
        corrs = [rid("tp") for _ in range(3)]
        p = self.create(request_id=corrs[0], tp=tps[0])
        self.assertStatus(self.req("PATCH", P + "/" + p["id"], {"featured": True}, corrs[1],
                                   tps[1]), 200)
        self.assertStatus(self.req("DELETE", P + "/" + p["id"], None, corrs[2], tps[2]), 204)
        log.wait(log.has("product.events", p["id"], ["product.deleted"]),
                 what="product.deleted for %s" % p["id"])
        rs = log.by_key("product.events", p["id"])
        self.assertEqual([x.type for x in rs],
                         ["product.created", "product.updated", "product.deleted"], rs)
        for x, t, corr in zip(rs, tps, corrs):
            self.assertEnvelope(x, x.type, "/mercato/catalog", corr, t, "traced request")

    def test_user_registered(self):
        log = self.log()
        corr, tp = rid("reg"), traceparent()
        email, password = unique_email("ev"), strong_password()
        name = "Event Customer"
        r = self.req("POST", "/api/v1/auth/register",
                     {"email": email, "password": password, "name": name}, corr, tp, auth=False)
        self.assertStatus(r, 201)
        user = r.json()
        # A refused registration (same email again) says nothing.
        corr_dup = rid("regdup")
        r = self.req("POST", "/api/v1/auth/register",
                     {"email": email, "password": strong_password(), "name": name}, corr_dup,
                     auth=False)
        self.assertStatus(r, 409)

        log.wait(lambda s: s.by_key("user.events", user["id"]),
                 what="user.registered for %s" % user["id"])
        self.wait_drained(("identity",))
        log.catch_up()
        rs = log.by_key("user.events", user["id"])
        self.assertEqual([x.type for x in rs], ["user.registered"], rs)
        rec = rs[0]
        self.assertEnvelope(rec, "user.registered", "/mercato/identity", corr, tp, "register")
        self.assertEqual(rec.value, {"user_id": user["id"], "email": email, "name": name,
                                     "role": "customer", "created_at": user["created_at"]},
                         "user.registered value; register replied %s" % user)
        self.assertSchema(rec.value, "user.registered")
        self.assertEqual(log.by_corr(corr_dup), [], "a 409 registration produced events")
        self.assertNoSecrets(rs, extra=(password,))

    def assertSchema(self, value, ce_type):
        """The subset of JSON Schema the event schemas use (no jsonschema on the runner)."""
        path = os.path.join(SCHEMA_DIR, ce_type + ".json")
        with open(path) as f:
            schema = json.load(f)
        for k in schema.get("required", []):
            self.assertIn(k, value, "%s: required %r missing in %s" % (ce_type, k, value))
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            self.assertEqual(set(value) - set(props), set(),
                             "%s: members outside the schema in %s" % (ce_type, value))
        for k, sub in props.items():
            if k not in value:
                continue
            v = value[k]
            if sub.get("type") == "string":
                self.assertIsInstance(v, str, "%s.%s" % (ce_type, k))
                if "maxLength" in sub:
                    self.assertLessEqual(len(v), sub["maxLength"], "%s.%s" % (ce_type, k))
                if "minLength" in sub:
                    self.assertGreaterEqual(len(v), sub["minLength"], "%s.%s" % (ce_type, k))
                if sub.get("format") == "date-time":
                    self.assertRegex(v, RFC3339_UTC, "%s.%s" % (ce_type, k))
            if "enum" in sub:
                self.assertIn(v, sub["enum"], "%s.%s" % (ce_type, k))

    def test_no_record_anywhere_carries_secrets(self):
        log = self.log()
        password = strong_password()
        u = self.cluster.register(password=password)
        p = self.create(request_id=rid("sec"))
        log.wait(lambda s: s.by_key("user.events", u.id) and s.by_key("product.events", p["id"]),
                 what="user.registered %s and product.created %s" % (u.id, p["id"]))
        self.wait_drained()
        log.catch_up()
        self.assertTrue(log.records)
        self.assertNoSecrets(log.records, extra=(password, self.cluster.admin_password))
        # Every record on every topic is a well-formed CloudEvent with a JSON object value.
        for r in log.records:
            self.assertEqual(r.headers.get("ce_specversion"), "1.0", r)
            self.assertEqual(r.headers.get("content-type"), "application/json", r)
            self.assertIsInstance(r.value, dict, r)
            self.assertTrue(r.key, "record without a key: %r" % r)
            self.assertEqual(r.topic.split(".")[0], (r.type or "?").split(".")[0].replace(
                "shipment", "shipping"), "type %s on topic %s" % (r.type, r.topic))

    def test_events_after_the_outbox_emptied_are_delivered(self):
        # Write, let the relay deliver everything (outbox empty), write again: the second
        # write's events arrive too, promptly and in order.
        log = self.log(("product.events",))
        for round_ in range(3):
            self.wait_drained(("catalog",))
            corr = rid("after%d" % round_)
            p = self.create(request_id=corr)
            self.assertStatus(self.req("PATCH", P + "/" + p["id"], {"featured": True}), 200)
            try:
                log.wait(log.has("product.events", p["id"], ["product.updated"]), timeout=10,
                         what="product.created+updated of write round %d (%s, X-Request-Id %s)"
                         % (round_, p["id"], corr))
            except AssertionError as e:
                got = (outbox_entries(self.cluster.data_dir, "catalog") if MDB_STAT else "?")
                self.fail("%s\ncatalog outbox entries now: %s" % (e, got))
            self.assertEqual([r.type for r in log.by_key("product.events", p["id"])],
                             ["product.created", "product.updated"])

    @unittest.skipUnless(MDB_STAT, "mdb_stat (lmdb-utils) not installed")
    def test_outbox_drains_after_delivery(self):
        log = self.log()
        ps = [self.create(request_id=rid("drain")) for _ in range(5)]
        u = self.cluster.register()
        log.wait(lambda s: all(s.by_key("product.events", p["id"]) for p in ps)
                 and s.by_key("user.events", u.id),
                 what="events of 5 creates and a registration")
        self.wait_drained()


@unittest.skipUnless(READY, WHY)
class TestRelayCrash(EventCase):
    N = 1000     # the burst
    THREADS = 4
    KILLS = 3

    def test_relay_sigkilled_during_a_burst_loses_nothing(self):
        log = self.log(("product.events",))
        c = self.cluster
        made, updated, errors = [], {}, []
        lock = threading.Lock()
        rnd = random.Random()
        # one kill at a random point in each part of the burst
        part = (self.N - 40) // self.KILLS
        thresholds = [20 + k * part + rnd.randrange(part) for k in range(self.KILLS)]
        kills = []

        def writer(k):
            s = requests.Session()
            try:
                for i in range(k, self.N, self.THREADS):
                    corr = rid("burst%d" % i)
                    r = self.req("POST", P, product("burst"), corr, session=s)
                    if r.status_code != 201:
                        errors.append("POST #%d: %d %s" % (i, r.status_code, r.text[:200]))
                        continue
                    p = r.json()
                    with lock:
                        made.append((p, corr))
                        n = len(made)
                    if i % 10 == 0:        # some keys get a second event: order per key
                        r = self.req("PATCH", P + "/" + p["id"], {"name": "Burst %d" % i},
                                     session=s)
                        if r.status_code != 200:
                            errors.append("PATCH #%d: %d %s" % (i, r.status_code, r.text[:200]))
                        else:
                            with lock:
                                updated[p["id"]] = r.json()
                    while thresholds and n >= thresholds[0]:
                        with lock:
                            if not thresholds or n < thresholds[0]:
                                break
                            thresholds.pop(0)
                            c.kill("relay")
                            kills.append(n)
                            c.start("relay")
            except Exception as e:  # noqa: BLE001
                errors.append("writer %d: %r" % (k, e))
            finally:
                s.close()

        ts = [threading.Thread(target=writer, args=(k,)) for k in range(self.THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        self.assertEqual(errors, [], "writes failed during the burst")
        self.assertEqual(len(made), self.N)
        ids = {p["id"] for p, _ in made}

        def arrived(s):
            got = {r.key for r in s.records if r.type == "product.created"}
            return len(ids & got)
        # One more crash while the relay is catching up, if it still is.
        log.wait(lambda s: arrived(s) >= self.N // 2, what="half of the product.created")
        n = arrived(log)
        if n < self.N:
            c.kill("relay")
            kills.append("catch-up at %d/%d delivered" % (n, self.N))
            c.start("relay")
        try:
            log.wait(lambda s: arrived(s) == self.N and
                     all(s.has("product.events", pid, ["product.updated"])(s) for pid in updated),
                     timeout=30, what="every product.created / product.updated of the burst")
        except AssertionError as e:
            got = {r.key for r in log.records if r.type == "product.created"}
            missing = sorted(ids - got)
            self.fail("%s\nrelay SIGKILLed at %s; %d of %d product.created missing, e.g. %s" % (
                e, kills, len(missing), self.N, missing[:5]))
        self.assertTrue(c.procs["relay"].alive(), "relay died on its own")
        dups = 0
        for p, corr in made:
            rs = log.by_key("product.events", p["id"])
            what = "product %s (relay killed at %s)" % (p["id"], kills)
            first = {}
            for r in rs:
                if r.ce_id in first:
                    dups += 1
                    f = first[r.ce_id]
                    self.assertEqual((r.type, r.raw_value), (f.type, f.raw_value),
                                     "duplicate ce_id %s with different content; %s" % (
                                         r.ce_id, what))
                else:
                    first[r.ce_id] = r
            types = [r.type for r in first.values()]
            want = ["product.created"] + (["product.updated"] if p["id"] in updated else [])
            self.assertEqual(types, want, "distinct events in partition order; %s: %s" % (
                what, rs))
            cr = first[next(iter(first))]
            self.assertEnvelope(cr, "product.created", "/mercato/catalog", corr, None, what)
            v = dict(cr.value)
            self.assertEqual(v.pop("initial_stock", None), 0, what)
            self.assertEqual(v, p, what)
            if p["id"] in updated:
                self.assertEqual(list(first.values())[1].value, updated[p["id"]], what)
        sys.stderr.write("\n[events] relay SIGKILLed at %s; %d duplicate records\n" % (
            kills, dups))
        self.wait_drained(("catalog",))


@unittest.skipUnless(READY, WHY)
class TestKafkaAway(EventCase):
    N = 100

    def test_writes_succeed_while_kafka_is_down_and_all_arrive_later(self):
        c = self.cluster
        # The pipeline works first...
        log = EventLog(c.kafka_bootstrap, ("product.events",))
        try:
            p0 = self.create(request_id=rid("pre"))
            log.wait(lambda s: s.by_key("product.events", p0["id"]),
                     what="product.created before Kafka went away")
        finally:
            log.close()
        old = c.kafka_bootstrap
        c.kill("kafka")
        made = []
        t_burst = time.monotonic()
        for i in range(self.N):
            corr = rid("away%d" % i)
            r = self.req("POST", P, product("away"), corr)
            self.assertStatus(r, 201, "write #%d while Kafka is down" % i)
            made.append((r.json(), corr))
        t_burst = time.monotonic() - t_burst
        self.assertTrue(c.procs["relay"].alive(), "relay died while Kafka was down")
        if MDB_STAT:
            self.assertGreaterEqual(outbox_entries(c.data_dir, "catalog"), self.N,
                                    "the outbox does not hold the undelivered events")
        c.start("kafka")
        self.assertNotEqual(c.kafka_bootstrap, old)
        log = self.log(("product.events",))
        ids = {p["id"] for p, _ in made}
        try:
            log.wait(lambda s: ids <= {r.key for r in s.records if r.type == "product.created"},
                     timeout=30, what="all %d product.created after Kafka came back at %s" % (
                         self.N, c.kafka_bootstrap))
        except AssertionError as e:
            got = {r.key for r in log.records}
            self.fail("%s\nmissing %d of %d (burst took %.1fs)" % (
                e, len(ids - got), self.N, t_burst))
        for p, corr in made:
            rs = log.by_key("product.events", p["id"])
            distinct = {r.ce_id: r for r in rs}
            self.assertEqual([r.type for r in distinct.values()], ["product.created"], rs)
            self.assertEqual(len({(r.ce_id, r.raw_value) for r in rs}), 1,
                             "duplicates differ: %s" % rs)
            r = rs[0]
            self.assertEnvelope(r, "product.created", "/mercato/catalog", corr, None,
                                "POST while Kafka was down")
            v = dict(r.value)
            self.assertEqual(v.pop("initial_stock", None), 0)
            self.assertEqual(v, p)
        self.assertTrue(c.procs["relay"].alive(), "relay died")
        self.wait_drained(("catalog",))


if __name__ == "__main__":
    unittest.main()
