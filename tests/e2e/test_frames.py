"""Wire-level robustness: garbage, truncated and bomb frames sent straight to the broker and to a
node. Both must keep serving, answer what can be answered, and count the rest."""

import os
import random
import subprocess
import time
import unittest
import uuid

import msgpack
import requests
import zmq

from harness import Cluster, wait_for

BOMB = b"\xdd\x0f\xff\xff\xff"      # array32 claiming 268M elements: msgpack-c would allocate ~8.6 GB


def ulid():
    # Good enough for tests: 26 Crockford characters, time-ordered prefix.
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    t = int(time.time() * 1000)
    head = "".join(alphabet[(t >> (5 * (9 - i))) & 31] for i in range(10))
    return head + "".join(random.choice(alphabet) for _ in range(16))


def envelope(mtype, body, key="", **extra):
    now = int(time.time() * 1000)
    env = {"v": 1, "id": ulid(), "type": mtype, "key": key, "corr": "t", "reply": "test",
           "deadline": now + 5000, "user": "", "role": "anonymous", "trace": "", "time": now,
           "body": body}
    env.update(extra)
    return msgpack.packb(env)


class Client:
    """A broker client speaking MCC1 over a DEALER socket."""

    def __init__(self, cluster, ctx, endpoint, key="edge"):
        self.sock = cluster.plane_socket(ctx, zmq.DEALER, key)
        self.sock.connect(endpoint)
        self.seq = 0

    def request(self, service, payload, timeout=3.0):
        self.seq += 1
        rid = str(self.seq).encode()
        self.sock.send_multipart([b"MCC1", b"\x01", service.encode(), rid, payload])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(int(max(1, (deadline - time.monotonic()) * 1000))):
                frames = self.sock.recv_multipart()
                if len(frames) == 5 and frames[3] == rid:
                    return frames
        return None

    def close(self):
        self.sock.close()


class BrokerFrames(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster().start_all()
        cls.ctx = zmq.Context()

    @classmethod
    def tearDownClass(cls):
        cls.ctx.destroy(linger=0)
        cls.cluster.cleanup()

    def assertServing(self):
        """The whole path still works: a product written over HTTP reads back."""
        sku = "F-" + uuid.uuid4().hex[:12]
        r = requests.post(self.cluster.api + "/products", json={
            "sku": sku, "name": "frame test", "description": "", "category": "frames", "price_cents": 1},
            headers=self.cluster.admin_headers(), timeout=5)
        self.assertEqual(r.status_code, 201, r.text)
        g = requests.get(self.cluster.api + "/products/" + r.json()["id"], timeout=5)
        self.assertEqual(g.status_code, 200)
        self.assertEqual(g.json()["sku"], sku)
        for name, p in self.cluster.procs.items():
            self.assertTrue(p.alive(), name + " died")

    def test_garbage_to_broker(self):
        # from a peer with an allowed key: without one, nothing would even reach the broker
        s = self.cluster.plane_socket(self.ctx, zmq.DEALER, "edge")
        s.setsockopt(zmq.LINGER, 2000)     # closing must not discard what is still queued
        s.connect(self.cluster.endpoint)
        rng = random.Random(1)
        for _ in range(500):
            frames = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
                      for _ in range(rng.randint(1, 6))]
            s.send_multipart(frames)
        for frames in ([b"MCC1"], [b"MCC1", b"\x09"], [b"MCC1", b"\x01", b"catalog.0"],
                       [b"MCC1", b"\x01", b"catalog.0", b"", b"x"],            # empty request id
                       [b"MCC1", b"\x01", b"catalog.0", b"r" * 100, b"x"],     # request id too long
                       [b"MCW2"], [b"MCW2", b"\x01"], [b"MCW2", b"\x03", b"nobody", b"1", b"x"],
                       [b"MCW2", b"\x01", b"mmi.fake", b"n"], [b""], [BOMB]):
            s.send_multipart(frames)
        s.close()
        self.assertServing()
        client = Client(self.cluster, self.ctx, self.cluster.endpoint)

        def malformed_counted():
            stats = client.request("mmi.stats", b"")
            lines = [l for l in stats[4].decode().splitlines() if l.startswith("mercato_broker_malformed")]
            return lines and int(lines[0].split()[1]) > 0
        try:
            wait_for(malformed_counted, 5, what="the broker counting malformed frames")
        finally:
            client.close()

    def test_oversized_frame_refused(self):
        s = self.cluster.plane_socket(self.ctx, zmq.DEALER, "edge")
        s.setsockopt(zmq.LINGER, 2000)
        s.connect(self.cluster.endpoint)
        s.send_multipart([b"MCC1", b"\x01", b"catalog.0", b"1", b"\x80" * (3 * 1024 * 1024)])
        s.close()
        self.assertServing()

    def test_bad_envelopes_through_broker_to_node(self):
        c = Client(self.cluster, self.ctx, self.cluster.endpoint)
        try:
            # Unparseable envelopes have no id to answer: the node drops and counts them.
            for payload in (BOMB, b"\xdf\x0f\xff\xff\xff", b"\x82\xa1a", b"", b"\xc1",
                            bytes(range(256))):
                self.assertIsNone(c.request("catalog.0", payload, timeout=0.3))
            # A well-formed map of the wrong shape, with an id, is answered 400.
            rep = c.request("catalog.0", msgpack.packb({"v": 1, "id": "X", "type": 7}))
            self.assertIsNotNone(rep)
            self.assertEqual(rep[1], b"\x02")
            self.assertEqual(msgpack.unpackb(rep[4])["status"], 400)
            # Wrongly typed body fields are a validation error, not a crash.
            rep = c.request("catalog.0", envelope("product.create", {"sku": ["x"], "name": {"a": 1},
                                                                     "category": None, "price_cents": "9"},
                                                  key=ulid(), user=ulid(), role="admin"))
            reply = msgpack.unpackb(rep[4])
            self.assertEqual(reply["status"], 422)
            fields = {e["field"] for e in reply["error"]["errors"]}
            self.assertTrue({"sku", "name", "category", "price_cents"} <= fields, fields)
            # Unknown message types get 400 unknown_message.
            rep = c.request("catalog.0", envelope("product.explode", {}))
            self.assertEqual(msgpack.unpackb(rep[4])["error"]["code"], "unknown_message")
            # A valid request on the same socket still works.
            rep = c.request("catalog.0", envelope("product.list", {"limit": 1}))
            self.assertEqual(msgpack.unpackb(rep[4])["status"], 200)
            # No node for a service: UNAVAILABLE at once.
            t0 = time.monotonic()
            rep = c.request("nosuch.0", envelope("x.y", {}))
            self.assertEqual(rep[1], b"\x03")
            self.assertLess(time.monotonic() - t0, 0.5)
        finally:
            c.close()
        self.assertServing()


class NodeFrames(unittest.TestCase):
    """The test plays the broker: it binds a ROUTER, a real node connects to it, and the test
    sends it whatever it likes."""

    def setUp(self):
        # Only for its temp dir, binaries and log capture; a catalog-only node, so that its one
        # READY names catalog.0.
        self.cluster = Cluster(actors=("catalog",))
        self.addCleanup(self.cluster.cleanup)
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.destroy, 0)
        self.router = self.cluster.plane_socket(self.ctx, zmq.ROUTER, server=True)
        port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.cluster.endpoint = "tcp://127.0.0.1:%d" % port
        self.cluster.start("node")
        frames = self._recv(5.0)
        self.assertIsNotNone(frames, "node sent no READY")
        self.node_addr = frames[0]
        self.assertEqual(frames[1:4], [b"MCW2", b"\x01", b"catalog.0"])

    def _recv(self, timeout, skip_ready=False):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if hasattr(self, "node_addr"):
                self._send(b"MCW2", b"\x04")       # a live broker heartbeats
            if self.router.poll(int(min(100, max(1, (deadline - time.monotonic()) * 1000)))):
                frames = self.router.recv_multipart()
                if frames[1:3] == [b"MCW2", b"\x04"]:
                    continue
                if skip_ready and frames[1:3] == [b"MCW2", b"\x01"]:
                    self.node_addr = frames[0]
                    continue
                return frames
        return None

    def _send(self, *frames):
        self.router.send_multipart([self.node_addr] + list(frames))

    def _request(self, payload, rid=b"1"):
        self._send(b"MCW2", b"\x02", b"client", rid, b"edge", b"edge", payload)
        return self._recv(2.0, skip_ready=True)

    def test_node_survives_garbage(self):
        rng = random.Random(2)
        for _ in range(300):
            self._send(*[bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30)))
                         for _ in range(rng.randint(0, 5))])
        for payload in (BOMB, b"\xdb\xff\xff\xff\xffab", b"\x92\x01", b"\x01\x02"):
            self._send(b"MCW2", b"\x02", b"client", b"9", b"edge", b"edge", payload)
        self._send(b"MCW2", b"\x02", b"client")                 # missing frames
        self._send(b"MCW2", b"\x02", b"client", b"9", b"edge", b"edge", b"x", b"extra")
        self._send(b"MCW2", b"\x02", b"client", b"9", b"edge", b"root", b"x")   # no such role
        self._send(b"MCW2", b"\x04")                            # heartbeat is fine
        # Deep nesting is refused before unpacking.
        self._send(b"MCW2", b"\x02", b"client", b"9", b"edge", b"edge", b"\x91" * 100000 + b"\x01")
        rep = self._request(envelope("product.list", {"limit": 1}), rid=b"42")
        self.assertIsNotNone(rep, "node stopped answering")
        self.assertEqual(rep[1:5], [b"MCW2", b"\x03", b"client", b"42"])
        self.assertEqual(msgpack.unpackb(rep[5])["status"], 200)
        self.assertTrue(self.cluster.procs["node"].alive())

    def test_node_reconnects_when_told_to_disconnect(self):
        self._send(b"MCW2", b"\x05")
        frames = self._recv(3.0)
        self.assertIsNotNone(frames)
        self.assertEqual(frames[1:4], [b"MCW2", b"\x01", b"catalog.0"])
        self.assertNotEqual(frames[0], self.node_addr, "READY must come on a new socket")

    def test_node_drops_requests_past_their_deadline(self):
        stale = envelope("product.list", {"limit": 1}, deadline=int(time.time() * 1000) - 1)
        self.assertIsNone(self._request(stale))
        self.assertIsNotNone(self._request(envelope("product.list", {"limit": 1})))


if __name__ == "__main__":
    unittest.main()
