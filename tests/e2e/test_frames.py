"""Wire-level robustness: garbage, truncated and bomb frames sent straight to the broker (the
directory: MCD1, and MCC1 for mmi.*) and to a node's front (MCC1 requests, and MCW2 that only
its own actors may send, over inproc). Both must keep serving, answer what can be answered, and
count the rest."""

import random
import time
import unittest
import uuid

import msgpack
import requests
import zmq

from harness import Cluster, HarnessError, log_records, wait_for

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


def node_front(cluster, prefix=None, timeout=20.0):
    """(endpoint, public key) of a live node's front, from the directory (mmi.directory): the
    first node, or the first whose id starts with prefix."""
    def found():
        for n in cluster.directory()["nodes"]:
            if n.get("state") == "up" and n.get("endpoint") and n.get("key") and \
                    (prefix is None or n["id"].startswith(prefix)):
                return n["endpoint"], n["key"].encode()
        return None
    return wait_for(found, timeout, interval=0.1, what="a node's front in the directory")


def plane_socket(cluster, ctx, kind, key, server_key=None):
    """A CURVE client proving the plane key called key, of the broker or (server_key) of the
    node front whose public key that is."""
    sock = cluster.plane_socket(ctx, kind, key)
    if server_key is not None and key is not None:
        sock.curve_serverkey = server_key
    return sock


class Client:
    """An MCC1 client over a DEALER socket: of the broker, or (server_key) of a node's front."""

    def __init__(self, cluster, ctx, endpoint, key="edge", server_key=None):
        self.sock = plane_socket(cluster, ctx, zmq.DEALER, key, server_key)
        self.sock.connect(endpoint)
        self.seq = 0

    def request(self, service, payload, timeout=3.0, rid=None):
        self.seq += 1
        rid = rid or str(self.seq).encode()
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
                       [b"MCW2", b"\x01", b"mmi.fake", b"n"], [b""], [BOMB],
                       # the directory's own protocol: truncated, a bad version, a TABLE sent
                       # the wrong way, an unknown command, an ANNOUNCE with no node id
                       [b"MCD1"], [b"MCD1", b"\x01"], [b"MCD1", b"\x02", b"short"],
                       [b"MCD1", b"\x02", b"\x00" * 8, b"extra"], [b"MCD1", b"\x03", b"\x80"],
                       [b"MCD1", b"\x09"], [b"MCD1", b"\x01", b"", b"tcp://x:1", b"catalog.0"]):
            s.send_multipart(frames)
        s.close()
        self.assertServing()
        client = Client(self.cluster, self.ctx, self.cluster.endpoint)

        def malformed():
            stats = client.request("mmi.stats", b"")
            lines = [l for l in stats[4].decode().splitlines() if l.startswith("mercato_broker_malformed")]
            return int(lines[0].split()[1]) if lines else 0
        try:
            wait_for(lambda: malformed() > 0, 5, what="the broker counting malformed frames")
            # an MCD1 message alone, once the rest is counted, is counted too
            before = malformed()
            s = self.cluster.plane_socket(self.ctx, zmq.DEALER, "edge")
            s.connect(self.cluster.endpoint)
            s.send_multipart([b"MCD1", b"\x02", b"short"])
            wait_for(lambda: malformed() > before, 5, what="a short SUBSCRIBE counted as malformed")
            s.close(0)
            # and the directory still answers, with the table it had
            self.assertTrue(self.cluster.directory()["shards"])
        finally:
            client.close()

    def test_oversized_frame_refused(self):
        s = self.cluster.plane_socket(self.ctx, zmq.DEALER, "edge")
        s.setsockopt(zmq.LINGER, 2000)
        s.connect(self.cluster.endpoint)
        s.send_multipart([b"MCC1", b"\x01", b"catalog.0", b"1", b"\x80" * (3 * 1024 * 1024)])
        s.close()
        self.assertServing()
        # and to a node's front
        endpoint, key = node_front(self.cluster)
        s = plane_socket(self.cluster, self.ctx, zmq.DEALER, "edge", key)
        s.setsockopt(zmq.LINGER, 2000)
        s.connect(endpoint)
        s.send_multipart([b"MCC1", b"\x01", b"catalog.0", b"1", b"\x80" * (3 * 1024 * 1024)])
        s.close()
        self.assertServing()

    def test_bad_envelopes_to_node(self):
        # straight to the node's front, as the edge sends them
        endpoint, key = node_front(self.cluster)
        c = Client(self.cluster, self.ctx, endpoint, server_key=key)
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
            # A service this node does not run: UNAVAILABLE at once.
            t0 = time.monotonic()
            rep = c.request("nosuch.0", envelope("x.y", {}))
            self.assertEqual(rep[1], b"\x03")
            self.assertLess(time.monotonic() - t0, 0.5)
        finally:
            c.close()
        self.assertServing()


class NodeFrames(unittest.TestCase):
    """A real catalog node (and the broker, for its directory) and nothing else: the test is the
    node's client, on its front's endpoint, and sends it whatever it likes."""

    def setUp(self):
        # one catalog shard: catalog.1 is then no shard of this node (nor of anyone)
        self.cluster = Cluster(actors=("catalog",), env={"MERCATO_SHARDS": "1"})
        self.addCleanup(self.cluster.cleanup)
        self.ctx = zmq.Context()
        self.addCleanup(self.ctx.destroy, 0)
        try:
            self.cluster.start("broker")
            self.cluster.start("node")
            self.endpoint, self.key = node_front(self.cluster)
        except HarnessError:
            self.cluster.failed = True
            raise
        self.sock = self.peer("edge")

    def peer(self, key):
        sock = plane_socket(self.cluster, self.ctx, zmq.DEALER, key, self.key)
        sock.connect(self.endpoint)
        self.addCleanup(sock.close, 0)
        return sock

    def _recv(self, sock, timeout):
        if sock.poll(int(timeout * 1000)):
            return sock.recv_multipart()
        return None

    def _request(self, payload, rid=b"1", sock=None, timeout=2.0):
        sock = sock or self.sock
        sock.send_multipart([b"MCC1", b"\x01", b"catalog.0", rid, payload])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self._recv(sock, max(0.001, deadline - time.monotonic()))
            if frames and frames[3:4] == [rid]:
                return frames
        return None

    def front_stopped(self):
        """The counters the front logs when the node stops (nodes have no metrics yet)."""
        self.cluster.procs["node"].stop()
        recs = log_records(self.cluster, "node", "front stopped")
        self.assertEqual(len(recs), 1, recs)
        return recs[0]

    def test_node_survives_garbage(self):
        rng = random.Random(2)
        for _ in range(300):
            self.sock.send_multipart([bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 30)))
                                      for _ in range(rng.randint(1, 5))])
        for payload in (BOMB, b"\xdb\xff\xff\xff\xffab", b"\x92\x01", b"\x01\x02"):
            self.sock.send_multipart([b"MCC1", b"\x01", b"catalog.0", b"9", payload])
        bad = ([b"MCC1", b"\x01", b"catalog.0"],                          # missing frames
               [b"MCC1", b"\x01", b"catalog.0", b"9", b"x", b"extra"],    # one too many
               [b"MCC1", b"\x01", b"catalog.0", b"", b"x"],               # empty request id
               [b"MCC1", b"\x01", b"catalog\x000", b"9", b"x"],           # a NUL in the name
               [b"MCC1", b"\x02", b"catalog.0", b"9", b"x"],              # a REPLY to the node
               [b"MCC1", b"\x04", b"catalog.0", b"9", b"n1 1"],           # a MOVED to the node
               [b"MCD1", b"\x02", b"\x00" * 8],                           # the directory's
               # what only the node's own actors send, over inproc
               [b"MCW2", b"\x03", b"Lclient", b"9", b"x"], [b"MCW2", b"\x04"], [b"MCW2", b"\x05"])
        for frames in bad:
            self.sock.send_multipart(frames)
        # deep nesting is refused before unpacking
        self.sock.send_multipart([b"MCC1", b"\x01", b"catalog.0", b"9", b"\x91" * 100000 + b"\x01"])
        rep = self._request(envelope("product.list", {"limit": 1}), rid=b"42")
        self.assertIsNotNone(rep, "node stopped answering")
        self.assertEqual(rep[:4], [b"MCC1", b"\x02", b"catalog.0", b"42"])
        self.assertEqual(msgpack.unpackb(rep[4])["status"], 200)
        self.assertTrue(self.cluster.procs["node"].alive())
        # the frames that follow no grammar were counted: 300 random ones (some of which may
        # parse), and the ten above
        self.assertGreaterEqual(self.front_stopped()["malformed"], len(bad))

    def test_worker_frames_on_the_front_are_dropped(self):
        # MCW2 on the node's endpoint, even from a node key: no READY registers there, no
        # DISCONNECT unregisters the real worker, and the impostor is handed nothing
        impostor = self.peer("node")
        impostor.send_multipart([b"MCW2", b"\x05"])
        impostor.send_multipart([b"MCW2", b"\x01", b"catalog.0", b"impostor"])
        impostor.send_multipart([b"MCW2", b"\x01", b"catalog.1", b"impostor"])
        for i in range(5):
            rep = self._request(envelope("product.list", {"limit": 1}), rid=b"r%d" % i)
            self.assertIsNotNone(rep, "request %d unanswered" % i)
            self.assertEqual(msgpack.unpackb(rep[4])["status"], 200)
        # catalog.1 is no shard at all here: a READY did not make it this node's
        self.sock.send_multipart([b"MCC1", b"\x01", b"catalog.1", b"c1",
                                  envelope("product.list", {"limit": 1})])
        rep = self._recv(self.sock, 2.0)
        self.assertEqual(rep[:2], [b"MCC1", b"\x03"], rep)
        self.assertIsNone(self._recv(impostor, 0), "the impostor was handed something")
        self.assertGreaterEqual(self.front_stopped()["malformed"], 3)

    def test_node_drops_requests_past_their_deadline(self):
        stale = envelope("product.list", {"limit": 1}, deadline=int(time.time() * 1000) - 1)
        self.assertIsNone(self._request(stale))
        self.assertIsNotNone(self._request(envelope("product.list", {"limit": 1})))


if __name__ == "__main__":
    unittest.main()
