"""The broker is the directory, not the road (CONTRACT 10, issue 12).

- The shard table survives a broker restart: the same owners under the same epochs, published
  from disk even while the owner is down, and requests keep being served while the broker is
  gone (it is not on their path).
- A request sent to a node that does not own its shard (a second node, or the former owner after
  a takeover) is answered MOVED naming the owner and epoch, and served when sent there; the edge
  follows the same table.
"""
import os
import time
import unittest
import uuid

import msgpack
import zmq
import zmq.auth

from harness import DEFAULT_ACTORS, ClusterTestCase, HarnessError, wait_for

WAIT_S = 20.0


def envelope(mtype, body, key=""):
    now = int(time.time() * 1000)
    mid = uuid.uuid4().hex.upper()[:26]
    return msgpack.packb({"v": 1, "id": mid, "type": mtype, "key": key, "corr": "directory-test",
                          "reply": "test", "deadline": now + 10000, "user": "", "role": "anonymous",
                          "trace": "", "time": now, "body": body})


class DirectoryCase(ClusterTestCase):
    PER_TEST = True
    ACTORS = DEFAULT_ACTORS
    ENV = {"MERCATO_SHARDS": "4"}

    def node_socket(self, node):
        """A CURVE client of node's front (found in the directory) that proves the edge key."""
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        pub, sec = zmq.auth.load_certificate(os.path.join(self.cluster.keys_dir, "edge.cert_secret"))
        sock.curve_publickey, sock.curve_secretkey = pub, sec
        sock.curve_serverkey = node["key"].encode()
        sock.connect(node["endpoint"])
        self.addCleanup(sock.close, 0)
        return sock

    def ask(self, sock, service, payload):
        """[kind, service, owner-or-envelope] of the answer to one request."""
        rid = os.urandom(8)
        sock.send_multipart([b"MCC1", b"\x01", service.encode(), rid, payload])
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            if sock.poll(int(max(1, (deadline - time.monotonic()) * 1000))):
                f = sock.recv_multipart()
                if len(f) == 5 and f[3] == rid:
                    return f[1], f[2].decode(), f[4]
        raise HarnessError("no answer from the node for %s" % service)

    def node_named(self, table, prefix):
        return next(n for n in table["nodes"] if n["id"].startswith(prefix))

    def owners(self, table):
        return {(s["service"], s["shard"]): (s["node"], s["epoch"]) for s in table["shards"]}

    def create_product(self, sku):
        r = self.post_json("/api/v1/products", {"sku": sku, "name": "Directory " + sku,
                                                    "description": "A product of the directory test", "price_cents": 500, "currency": "USD", "category": "dir"})
        self.assertStatus(r, 201)
        return r.json()


class TestTable(DirectoryCase):
    def test_table_survives_a_broker_restart(self):
        c = self.cluster
        before = c.directory()
        owners = self.owners(before)
        self.assertEqual(len([k for k in owners if k[0] == "catalog"]), 4, before)
        self.assertTrue(all(s["state"] == "up" for s in before["shards"]), before)
        p = self.create_product("DIR-RESTART-1")

        # the broker is off the request path: with it dead, requests are still served
        c.kill("broker")
        for _ in range(20):
            self.assertStatus(self.get("/api/v1/products/" + p["id"]), 200)

        # with the node gone too, a restarted broker can only know the table from its disk
        c.kill("node")
        c.start("broker")
        after = c.directory()
        self.assertEqual(self.owners(after), owners, "owners and epochs after the restart")
        self.assertGreater(after["version"], before["version"])

        # its node comes back and gets its own shards again, under the same epochs
        c.start("node")
        c.wait_ready()
        wait_for(lambda: all(s["state"] == "up" for s in c.directory()["shards"]), WAIT_S,
                 what="every shard up again")
        self.assertEqual(self.owners(c.directory()), owners)
        self.assertStatus(self.get("/api/v1/products/" + p["id"]), 200)


class TestMoved(DirectoryCase):
    def test_request_to_a_non_owner_is_moved_then_served(self):
        c = self.cluster
        p = self.create_product("DIR-MOVED-1")
        shard = "catalog.%d" % self.shard_of(p["id"])
        get = envelope("product.get", {}, key=p["id"])

        # a second node runs catalog too, but every shard already has a live owner: it is refused
        # the shards, and answers MOVED naming the owner
        c.add_node("n2", ["catalog"])
        wait_for(lambda: any(n["id"].startswith("n2-") and n["state"] == "up"
                             for n in c.directory()["nodes"]), WAIT_S, what="n2 announced")
        table = c.directory()
        n1, n2 = self.node_named(table, "n1-"), self.node_named(table, "n2-")
        owner, epoch = self.owners(table)[("catalog", self.shard_of(p["id"]))]
        self.assertEqual(owner, n1["id"])
        kind, _, owner_text = self.ask(self.node_socket(n2), shard, get)
        self.assertEqual(kind, b"\x04", "MOVED")
        self.assertEqual(owner_text.decode(), "%s %d" % (n1["id"], epoch))
        kind, _, body = self.ask(self.node_socket(n1), shard, get)
        self.assertEqual(kind, b"\x02", "REPLY from the owner")
        self.assertEqual(msgpack.unpackb(body)["status"], 200)
        # a list asked of every shard at once (common/mc_gather.h) is MOVED too by a node that
        # does not own them all, and answered by the owner with one merged page
        every = "catalog.*f"
        listing = envelope("product.list", {"gather": True, "limit": 50})
        kind, _, owner_text = self.ask(self.node_socket(n2), every, listing)
        self.assertEqual(kind, b"\x04", "MOVED for a gathered list")
        self.assertEqual(owner_text.decode().split()[0], n1["id"])
        kind, _, body = self.ask(self.node_socket(n1), every, listing)
        self.assertEqual(kind, b"\x02", "the owner gathers")
        page = msgpack.unpackb(body)
        self.assertEqual(page["status"], 200, page)
        self.assertIn(p["id"], [i["id"] for i in page["body"]["items"]])
        self.assertEqual(len(page["body"]["keys"]), len(page["body"]["items"]), "a keyed page")

        # the owner dies: n2 takes its shards over under epoch + 1
        c.kill("node")
        wait_for(lambda: self.owners(c.directory())[("catalog", self.shard_of(p["id"]))][0] == n2["id"],
                 WAIT_S, what="n2 owns the shard")
        new_owner, new_epoch = self.owners(c.directory())[("catalog", self.shard_of(p["id"]))]
        self.assertEqual(new_epoch, epoch + 1)

        # the former owner comes back: it is refused its old shards and sends callers on
        c.start("node")
        wait_for(lambda: self.node_named(c.directory(), "n1-")["state"] == "up", WAIT_S, what="n1 back")
        n1 = self.node_named(c.directory(), "n1-")
        kind, _, owner_text = self.ask(self.node_socket(n1), shard, get)
        self.assertEqual(kind, b"\x04", "MOVED from the former owner")
        self.assertEqual(owner_text.decode(), "%s %d" % (n2["id"], new_epoch))
        kind, _, body = self.ask(self.node_socket(n2), shard, get)
        self.assertEqual(kind, b"\x02")
        # n2's copy of the shard is its own (empty) one: what matters is who answers
        self.assertIn(msgpack.unpackb(body)["status"], (200, 404))

        kind, _, owner_text = self.ask(self.node_socket(n1), every, listing)
        self.assertEqual(kind, b"\x04", "MOVED for a gathered list from the former owner")
        self.assertEqual(owner_text.decode().split()[0], n2["id"])

        # the edge follows the table: it asks n2 now, the lists too
        wait_for(lambda: self.get("/api/v1/products/" + p["id"]).status_code in (200, 404), WAIT_S,
                 what="the edge served by the new owner")
        self.assertStatus(self.get("/api/v1/products"), 200)

    def shard_of(self, key):
        h = 2166136261
        for b in key.encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return h % 4


if __name__ == "__main__":
    unittest.main()
