"""The internal plane attacked as a local user would (CONTRACT 9 and 10, issues 11 and 12), with
pyzmq.

Requests go straight to the node that owns their shard (its front, a CURVE server over the same
allow-list); the broker is the directory (MCD1) and answers mmi.*. Every attack is tried where it
applies, with no CURVE at all, with a CURVE key on no allow-list, with a stolen relay key and a
stolen ops key (keys that may ask only mmi.*) and, where it means something, with a stolen node
key (for what only the edge may send, or only an actor's own runtime) and a stolen edge key (for
what only a node may do: serve, announce shards, capture a payment, assert the role "system"):
- a forged session.login with ok: true (an admin token without the password);
- user.credentials (the argon2 hashes); user.list asserting a customer, or (a node key) an admin;
- order.pay asserting the owner, on a real pending order (it stays pending_payment);
- READY payments.0 (on the broker, and on the node's front) and an ANNOUNCE of payments.0 while a
  real payment is made (the impostor gets no payment.create);
- READY identity.0 and an ANNOUNCE of it, to answer keys.list (the JWKS stays as it was, a token
  signed by the attacker's own RSA key is 401);
- an ANNOUNCE of a live node's shards under another node id (refused by the directory: "shard
  claimed by a second node, refused"), or under the live node's own id with another key
  (refused: the node keeps its endpoint and key);
- a reply from a node the request did not go to, and a reply whose envelope id is not the
  request's from the node it went to (TestWrongReplyId: the edge refuses both).
Each is refused with no effect (checked over HTTP), logged (broker and front "peer refused", node
"message refused", directory "shard claimed by a second node, refused", edge "reply refused"; a
failed handshake at the broker "connection refused") and, at the broker, counted
(mercato_broker_refused_total, or mercato_broker_handshakes_refused_total, asked with an ops
key). A front counts what it refuses and drops in its "front stopped" line only (nodes have no
metrics yet, issue 15). A refusal reaches no actor: the same message then sent with a node key is
the only one the actor logs.

Over every listener: the listening TCP ports and unix sockets of the cluster's processes (from
/proc, by socket inode) are found; each ZeroMQ one (the broker's unix socket, the TCP endpoint the
cluster adds with broker_bind_extra, and the node's front) gets every attack without CURVE and
with a stranger's key; the others (HTTP edge, dev Kafka) are shown not to speak ZMTP at all. And
the other way round: a fake broker on the broker's address while it restarts hears nothing, and
every process is back on the plane once the real one returns.

Not tried, since the design allows it: what the key of the role that may do it does (an edge
key asserts any end user, so a session.login with ok: true from it is believed; a node key
serves and asks on anyone's behalf, order.pay included). Records forged on Kafka are the Kafka
consumers' own tests.
"""

import glob
import json
import os
import socket
import subprocess
import sys
import time
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import msgpack
import requests
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import DEFAULT_ACTORS, Cluster, HarnessError, log_records, wait_for  # noqa: E402
from identity_support import (claims_for, fetch_jwks, make_rs256, new_rsa_key,  # noqa: E402
                              public_jwk)
from test_frames import node_front  # noqa: E402
from test_orders import API, ShopCase  # noqa: E402

STRANGER = "stranger"           # a CURVE key of our own making, on no allow-list
OUTSIDERS = (None, STRANGER)    # (a) no CURVE, (b) an unknown key
LOOKERS = ("relay", "ops")      # (c) stolen keys that may ask only mmi.*
HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
ZMTP_SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"
WAIT_S = 10.0                   # how long a refusal may take to be counted or logged
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": datetime.now().year + 3,
        "cvc": "123"}
ALLOWED_NOT_ZMTP = ("edge", "kafka")    # listeners that must not speak ZeroMQ at all


def ulid():
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    t = int(time.time() * 1000)
    return "".join(alphabet[(t >> (5 * (9 - i))) & 31] for i in range(10)) + \
        "".join(alphabet[b % 32] for b in os.urandom(16))


def envelope(mtype, body, key="", user="", role="anonymous", mid=None):
    now = int(time.time() * 1000)
    return msgpack.packb({"v": 1, "id": mid or ulid(), "type": mtype, "key": key, "corr": "attack",
                          "reply": "attacker", "deadline": now + 10000, "user": user,
                          "role": role, "trace": "", "time": now, "body": body})


def reply_envelope(mid, status=200, body=None):
    return msgpack.packb({"v": 1, "id": mid, "status": status, "body": body if body is not None else {}})


class Peer:
    """An attacker's DEALER on one endpoint: the broker's, or (server_key, the node's public key)
    a node's front. key: None (no CURVE), STRANGER (a CURVE key on no allow-list) or the name of
    one of the cluster's plane keys (a stolen one). A monitor tells whether the CURVE handshake
    succeeded."""

    def __init__(self, cluster, ctx, endpoint, key, routing_id=None, server_key=None):
        self.key = key
        if server_key is None:
            server_key, _ = zmq.auth.load_certificate(os.path.join(cluster.keys_dir, "broker.cert"))
        if key == STRANGER:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            pub, sec = zmq.curve_keypair()
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = pub, sec, server_key
        else:
            sock = cluster.plane_socket(ctx, zmq.DEALER, key)
            if key is not None:
                sock.curve_serverkey = server_key
        if routing_id is not None:
            sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock = sock
        self.monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
        self.sock.connect(endpoint)
        self.seq = 0
        self.outcome = None

    def handshake(self, timeout=WAIT_S):
        """"ok" or "failed": how the first CURVE handshake ended."""
        deadline = time.monotonic() + timeout
        while self.outcome is None and time.monotonic() < deadline:
            self._outcome_within(max(1, (deadline - time.monotonic()) * 1000))
        if self.outcome is None:
            raise HarnessError("no handshake outcome for key %r" % (self.key,))
        return self.outcome

    def _outcome_within(self, ms):
        if self.outcome is None and self.monitor.poll(int(ms)):
            ev = recv_monitor_message(self.monitor)["event"]
            self.outcome = "ok" if ev == zmq.EVENT_HANDSHAKE_SUCCEEDED else "failed"

    def send(self, *frames):
        """True once queued; False when the handshake was refused first: libzmq then drops the
        DEALER's only pipe, and a blocking send would wait forever (an outsider's frames that
        cannot leave are frames the plane never hears, which is what the tests want)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                self.sock.send_multipart(list(frames), zmq.NOBLOCK)
                return True
            except zmq.Again:
                self._outcome_within(10)
                if self.outcome == "failed":
                    return False
                if time.monotonic() >= deadline:
                    raise HarnessError("cannot send as key %r: no connection" % (self.key,))

    def request(self, service, payload):
        self.seq += 1
        rid = b"atk-%d" % self.seq
        self.send(b"MCC1", b"\x01", service.encode(), rid, payload)
        return rid

    def ready(self, service, node_id):
        self.send(b"MCW2", b"\x01", service.encode(), node_id.encode())

    def announce(self, node_id, endpoint, services):
        self.send(b"MCD1", b"\x01", node_id.encode(), endpoint.encode(), services.encode())

    def recv(self, timeout):
        if self.sock.poll(int(max(0, timeout) * 1000)):
            return self.sock.recv_multipart()
        return None

    def call(self, service, payload, timeout=WAIT_S):
        """A request and its answer [MCC1, kind, service, rid, envelope]; what arrives before it
        is kept in self.before (a test asserts on it)."""
        rid = self.request(service, payload)
        self.before = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = self.recv(deadline - time.monotonic())
            if frames and frames[:2] == [b"MCC1", b"\x02"] and frames[3] == rid:
                return frames
            if frames and frames[:2] == [b"MCC1", b"\x03"] and frames[3] == rid:
                return frames
            if frames:
                self.before.append(frames)
        raise HarnessError("no answer to %s (key %r)" % (service, self.key))

    def fence(self):
        """Everything the broker or front sent this peer so far: one more request (mmi.service,
        which a front answers UNAVAILABLE) is answered after it, on the same connection (sends
        to one peer keep their order)."""
        self.call("mmi.service", b"catalog.0")
        return self.before

    def close(self):
        if self.sock.closed:
            return
        self.sock.disable_monitor()
        self.monitor.close(0)
        self.sock.close(0)


def worker_requests(frames_list):
    """REQUESTs handed to a worker (MCW2 0x02) or sent to a node (MCC1 0x01) among what a peer
    received."""
    return [f for f in frames_list if f[:2] in ([b"MCW2", b"\x02"], [b"MCC1", b"\x01"])]


# --- the listening sockets of processes, from /proc -------------------------------------------
def socket_inodes(pid):
    inodes = set()
    for fd in glob.glob("/proc/%d/fd/*" % pid):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listeners(pid):
    """[("tcp", host, port) | ("unix", path)] that process pid listens on."""
    mine = socket_inodes(pid)
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            with open("/proc/%d/net/%s" % (pid, table)) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] != "0A" or cols[9] not in mine:      # 0A: LISTEN
                continue
            hexip, hexport = cols[1].split(":")
            raw = bytes.fromhex(hexip)
            if family == socket.AF_INET:
                host = socket.inet_ntop(family, raw[::-1])
            else:
                host = socket.inet_ntop(family, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
            found.append(("tcp", host, int(hexport, 16)))
    with open("/proc/%d/net/unix" % pid) as f:
        for row in f.read().splitlines()[1:]:
            cols = row.split()
            if int(cols[3], 16) & 0x10000 and cols[6] in mine:     # __SO_ACCEPTCON
                found.append(("unix", cols[7] if len(cols) > 7 else ""))
    return found


def speaks_zmtp(listener):
    """Whether what listens there answers a ZMTP greeting with one (a ZeroMQ socket sends its
    signature at once); anything else stays silent, closes or answers otherwise."""
    if listener[0] == "tcp":
        s = socket.socket(socket.AF_INET6 if ":" in listener[1] else socket.AF_INET)
        address = (listener[1] if listener[1] not in ("0.0.0.0", "::") else "127.0.0.1", listener[2])
    else:
        s = socket.socket(socket.AF_UNIX)
        address = listener[1] if not listener[1].startswith("@") else "\0" + listener[1][1:]
    s.settimeout(1.0)
    try:
        s.connect(address)
        s.sendall(ZMTP_SIGNATURE)
        got = b""
        while len(got) < 10:
            chunk = s.recv(10 - len(got))
            if not chunk:
                break
            got += chunk
    except (socket.timeout, OSError):
        got = b""
    finally:
        s.close()
    return len(got) == 10 and got[0] == 0xFF and got[9] == 0x7F


def endpoint_of(listener):
    if listener[0] == "tcp":
        host = listener[1] if listener[1] not in ("0.0.0.0", "::") else "127.0.0.1"
        return "tcp://%s:%d" % (host, listener[2])
    return "ipc://" + listener[1]


class PlaneCase(ShopCase):
    """Refusals as the attacker and the operator see them: counters, logs, what arrives."""

    ACTORS = DEFAULT_ACTORS

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(actors=cls.ACTORS, kafka=True, broker_bind_extra="tcp://127.0.0.1:0")
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()
        cls.ctx = zmq.Context()
        cls.addClassCleanup(cls.ctx.destroy, 0)
        cls.ops = Peer(cls.cluster, cls.ctx, cls.cluster.endpoint, "ops")
        cls.addClassCleanup(cls.ops.close)
        cls.front_endpoint, cls.front_key = node_front(cls.cluster)

    def peer(self, key, endpoint=None, **kw):
        """An attacker at the broker (or endpoint)."""
        p = Peer(self.cluster, self.ctx, endpoint or self.cluster.endpoint, key, **kw)
        self.addCleanup(p.close)
        return p

    def front_peer(self, key, **kw):
        """An attacker at the node's front, where requests go."""
        return self.peer(key, self.front_endpoint, server_key=self.front_key, **kw)

    # --- what the operator sees ------------------------------------------------------------------
    def refused_total(self, name="mercato_broker_refused_total"):
        frames = self.ops.call("mmi.stats", b"")
        for line in frames[4].decode().splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
        self.fail("mmi.stats has no %s: %r" % (name, frames[4]))

    def handshakes_refused(self):
        return self.refused_total("mercato_broker_handshakes_refused_total")

    def handshake_refusals(self, endpoint, whys):
        return [r for r in log_records(self.cluster, "broker", "connection refused")
                if r.get("endpoint") == endpoint and r.get("why") in whys]

    def broker_refusals(self, what, key=None, service=None):
        return [r for r in log_records(self.cluster, "broker", "peer refused")
                if r.get("what") == what and (key is None or r.get("key") == key)
                and (service is None or r.get("service") == service)]

    def front_refusals(self, key):
        return [r for r in log_records(self.cluster, "node", "peer refused")
                if r.get("what") == "request" and r.get("key") == key]

    def assertFrontRefuses(self, key, act):
        """act() is refused by the node's front: logged with the key, and nothing answered."""
        lines = len(self.front_refusals(key))
        result = act()
        wait_for(lambda: len(self.front_refusals(key)) > lines, WAIT_S,
                 what="front log 'peer refused' key=%s" % key)
        return result

    def node_refusals(self, mtype, peer=None):
        return [r for r in log_records(self.cluster, "node", "message refused")
                if r.get("type") == mtype and (peer is None or r.get("peer") == peer)]

    def await_log_budget(self, handshakes=False):
        """The broker logs at most 10 refusals a second of keyed peers, and 10 of handshakes:
        wait until this second has room, so the line this test looks for is not one left out."""
        def room():
            now = datetime.now(timezone.utc)
            msg = "connection refused" if handshakes else "peer refused"
            recent = [r for r in log_records(self.cluster, "broker", msg)
                      if (now - datetime.fromisoformat(r["ts"].replace("Z", "+00:00"))).total_seconds() < 1.1]
            return len(recent) < 9
        wait_for(room, 5, what="room in the broker's log budget")

    def assertBrokerRefuses(self, what, key, service, act):
        """act() is refused by the broker: counted, and logged with the key and the service."""
        self.await_log_budget()
        before, lines = self.refused_total(), len(self.broker_refusals(what, key, service))
        result = act()
        wait_for(lambda: self.refused_total() > before, WAIT_S,
                 what="mercato_broker_refused_total to rise (%s by %s on %s)" % (what, key, service))
        wait_for(lambda: len(self.broker_refusals(what, key, service)) > lines, WAIT_S,
                 what="broker log 'peer refused' %s key=%s service=%s" % (what, key, service))
        return result

    def assertHandshakeRefused(self, key, endpoint, act):
        """A peer without an allowed key: its handshake fails, which the broker counts and logs;
        act(peer) sends what it would, and none of it ever leaves the attacker's socket. At the
        node's front the handshake fails the same way (the front logs no failed handshake)."""
        if endpoint == self.front_endpoint:
            p = self.front_peer(key)
            act(p)
            self.assertEqual(p.handshake(), "failed", "key %r on %s" % (key, endpoint))
            self.assertIsNone(p.recv(0), "a peer with key %r received something" % (key,))
            p.close()
            return
        whys = ("not a CURVE handshake",) if key is None else ("no allowed key",)
        self.await_log_budget(handshakes=True)
        before = self.handshakes_refused()
        lines = len(self.handshake_refusals(endpoint, whys))
        p = self.peer(key, endpoint)
        act(p)
        self.assertEqual(p.handshake(), "failed", "key %r on %s" % (key, endpoint))
        wait_for(lambda: self.handshakes_refused() > before, WAIT_S,
                 what="handshakes_refused_total to rise for key %r on %s" % (key, endpoint))
        wait_for(lambda: len(self.handshake_refusals(endpoint, whys)) > lines, WAIT_S,
                 what="broker log 'connection refused' %s on %s" % (whys, endpoint))
        self.assertIsNone(p.recv(0), "a peer with key %r received something" % (key,))
        p.close()

    def assertActorRefuses(self, key, service, mtype, payload, peer_role, status=403,
                           code="forbidden_peer"):
        """The front hands the request over (the key may ask actors) stamped with the key's role,
        the actor refuses: 403 forbidden_peer, logged with the peer's role; returns the reply."""
        lines = len(self.node_refusals(mtype, peer_role))
        p = self.front_peer(key)
        frames = p.call(service, payload)
        self.assertEqual(frames[1], b"\x02", "%s by %s: %r" % (mtype, key, frames))
        rep = msgpack.unpackb(frames[4])
        self.assertEqual(rep.get("status"), status, "%s by %s: %r" % (mtype, key, rep))
        self.assertEqual(rep.get("error", {}).get("code"), code, rep)
        self.assertIsNone(rep.get("body"), rep)
        wait_for(lambda: len(self.node_refusals(mtype, peer_role)) > lines, WAIT_S,
                 what="node log 'message refused' %s from %s" % (mtype, peer_role))
        return rep

    def assertLookersRefused(self, service, payload, mtype):
        """relay and ops keys may not ask actors: the node's front drops the request (no answer,
        logged), and so does the broker (counted, logged), which is asked only mmi.*."""
        for key in LOOKERS:
            p = self.front_peer(key)
            self.assertFrontRefuses(key, lambda: p.request(service, payload))
            self.assertIsNone(p.recv(0.3), "%s by %s got an answer from the front" % (mtype, key))
            p = self.peer(key)
            self.assertBrokerRefuses("request", key, service, lambda: p.request(service, payload))
            self.assertEqual(p.fence(), [], "%s by %s got an answer" % (mtype, key))

    def assertReachedNoActor(self, mtype):
        """Nothing the front or broker refused reached the actor: the actor would have refused and logged
        it with its sender's role, and a node key's attempt was logged after it."""
        seen = {r.get("peer") for r in self.node_refusals(mtype)}
        self.assertFalse(seen & {"relay", "ops", ""}, "%s reached an actor from %s" % (mtype, seen))

    # --- fixtures -------------------------------------------------------------------------------
    def goods(self):
        if "_goods" not in type(self).__dict__:
            type(self)._goods = self.product(stock=1000, price_cents=999)
        return type(self)._goods

    def pending_order(self):
        who = self.customer()
        return who, self.order(who, (self.goods()["id"], 1))

    def real_node_id(self):
        text = self.ops.call("mmi.nodes", b"")[4].decode()
        ids = {line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("catalog.0 ")}
        self.assertEqual(len(ids), 1, text)
        return ids.pop()

    def node_entry(self, node_id):
        return next(n for n in self.cluster.directory()["nodes"] if n["id"] == node_id)

    def stat(self, name):
        return self.refused_total(name)

    def impostors_at_both(self, service):
        """READY service from every key that may not serve at the broker (refused: counted,
        logged) and from every key at the node's front (workers register over inproc only: dropped),
        an ANNOUNCE of it from every key that is not a node's (refused, logged), and from outsiders
        (no handshake). Returns (peers with a handshake, outsiders)."""
        peers = []
        for key in LOOKERS + ("edge", "node"):
            p = self.peer(key)
            self.assertBrokerRefuses("worker", key, service, lambda: p.ready(service, "impostor"))
            peers.append(p)
            f = self.front_peer(key)
            f.ready(service, "impostor")
            peers.append(f)
        for key in LOOKERS + ("edge",):
            p = self.peer(key)
            self.assertBrokerRefuses("announce", key, "impostor",
                                     lambda: p.announce("impostor", "tcp://127.0.0.1:1", service))
            peers.append(p)
        outsiders = [self.peer(key) for key in OUTSIDERS] + [self.front_peer(key) for key in OUTSIDERS]
        for p in outsiders:
            p.ready(service, "impostor")
        return peers, outsiders

    def assertImpostorsGotNothing(self, peers, outsiders, service, real):
        for p in peers:
            got = p.fence() if p.key in ("edge", "node") else [p.recv(0.1)]
            self.assertEqual(worker_requests([g for g in got if g]), [], "impostor %s was asked" % p.key)
        for p in outsiders:
            self.assertEqual(p.handshake(), "failed")
            self.assertIsNone(p.recv(0))
        self.assertEqual(self.nodes_of(service), [real])

    def nodes_of(self, service):
        text = self.ops.call("mmi.nodes", b"")[4].decode()
        return [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith(service + " ")]


class TestPlaneAttacks(PlaneCase):
    def test_forged_login_gets_no_token(self):
        admin = self.cluster.admin_email
        # what the edge sends once it has verified a password (which never crosses the plane):
        # from an edge key this is an admin's token pair
        login = lambda: envelope("session.login", {"email": admin, "ok": True})
        self.assertLookersRefused("identity.0", login(), "session.login")
        # a node's key asks actors, but only the edge may log anyone in
        rep = self.assertActorRefuses("node", "identity.0", "session.login", login(), "node")
        self.assertNotIn("access_token", json.dumps(rep.get("error")))
        self.assertReachedNoActor("session.login")

    def test_credentials_are_not_read(self):
        creds = lambda: envelope("user.credentials", {"email": self.cluster.admin_email})
        self.assertLookersRefused("identity.0", creds(), "user.credentials")
        rep = self.assertActorRefuses("node", "identity.0", "user.credentials", creds(), "node")
        self.assertNotIn("argon2", json.dumps(rep))
        # keys.list is the edge's too
        self.assertActorRefuses("node", "identity.0", "keys.list", envelope("keys.list", {}), "node")
        self.assertReachedNoActor("user.credentials")

    def test_user_list_as_a_customer(self):
        who = self.customer()
        as_customer = lambda: envelope("user.list", {}, user=who.id, role="customer")
        self.assertLookersRefused("identity.0", as_customer(), "user.list")
        self.assertActorRefuses("node", "identity.0", "user.list", as_customer(), "node")
        # a node key asserting an admin: the actor believes user and role only from the edge
        self.assertActorRefuses("node", "identity.0", "user.list",
                                envelope("user.list", {}, user=who.id, role="admin"), "node")
        # an edge key asserting a customer: the actor applies the route's access rule again
        self.assertActorRefuses("edge", "identity.0", "user.list", as_customer(), "edge")
        # nor may the edge assert the runtime
        self.assertActorRefuses("edge", "identity.0", "user.list",
                                envelope("user.list", {}, user=who.id, role="system"), "edge")
        self.assertReachedNoActor("user.list")
        self.assertStatus(self.call("GET", API + "/admin/users", auth=who), 403)

    def test_order_pay_without_a_payment(self):
        who, order = self.pending_order()
        oid = order["id"]
        pay = lambda role: envelope("order.pay", {"payment_id": ulid(), "amount_cents": order["total_cents"]},
                                    key=oid, user=who.id, role=role)
        self.assertLookersRefused("orders.0", pay("customer"), "order.pay")
        # only the payments actor (a node) captures: not the edge, whatever role it asserts
        for role in ("customer", "admin", "system"):
            self.assertActorRefuses("edge", "orders.0", "order.pay", pay(role), "edge")
        self.assertReachedNoActor("order.pay")
        self.assertEqual(self.fetch(who, oid)["status"], "pending_payment")

    def test_runtime_messages_from_a_node(self):
        # steps and ticks are an actor's own: even a node key cannot send them
        self.assertActorRefuses("node", "orders.0", "order.tick",
                                envelope("order.tick", {}, role="system"), "node")
        self.assertActorRefuses("node", "orders.0", "order.step",
                                envelope("order.step", {"tag": "x", "status": 200}, role="system"), "node")
        self.assertActorRefuses("node", "cart.0", "cart.tick", envelope("cart.tick", {}, role="system"), "node")

    def test_impostor_payments_worker_gets_no_payment(self):
        real = self.real_node_id()
        peers, outsiders = self.impostors_at_both("payments.0")
        who, order = self.pending_order()
        r = self.call("POST", API + "/payments", {"order_id": order["id"], "card": CARD}, auth=who)
        self.assertStatus(r, 201)
        self.assertEqual(self.fetch(who, order["id"])["status"], "paid")
        self.assertImpostorsGotNothing(peers, outsiders, "payments.0", real)

    def test_stolen_node_key_cannot_take_shards(self):
        real = self.real_node_id()
        entry = self.node_entry(real)
        # keys that are not a node's may not announce at all, not even under the real id
        for key in LOOKERS + ("edge",):
            p = self.peer(key)
            self.assertBrokerRefuses("announce", key, real,
                                     lambda: p.announce(real, "tcp://127.0.0.1:1", "catalog.0"))
        # a stolen node key, as a node of its own that listens: the edge connects to it (it is in
        # the table), but the live owner keeps its shards, so their requests never come to it
        fake = self.ctx.socket(zmq.ROUTER)
        fake.setsockopt(zmq.LINGER, 0)
        self.addCleanup(fake.close, 0)
        pub, sec = zmq.auth.load_certificate(os.path.join(self.cluster.keys_dir, "node.cert_secret"))
        fake.curve_publickey, fake.curve_secretkey, fake.curve_server = pub, sec, True
        fake_ep = "tcp://127.0.0.1:%d" % fake.bind_to_random_port("tcp://127.0.0.1")
        evil = self.peer("node")
        evil_id = "impostor-" + uuid.uuid4().hex[:8]

        def claimed():
            evil.announce(evil_id, fake_ep, "catalog.0 payments.0 identity.0")
            return [r for r in log_records(self.cluster, "broker", "shard claimed by a second node, refused")
                    if r.get("claimant") == evil_id and r.get("owner") == real]
        conflicts = self.stat("mercato_directory_conflicts_total")
        wait_for(claimed, WAIT_S, interval=0.3, what="the directory refusing the second claimant")
        self.assertGreater(self.stat("mercato_directory_conflicts_total"), conflicts)
        owners = {s["service"] + "." + str(s["shard"]): s["node"] for s in self.cluster.directory()["shards"]}
        for shard in ("catalog.0", "payments.0", "identity.0"):
            self.assertEqual(owners[shard], real, shard)
        pid = self.goods()["id"]
        for _ in range(3):
            self.assertStatus(self.get(API + "/products/" + pid), 200)
        got = []
        while fake.poll(0):
            got.append(fake.recv_multipart()[1:])
        self.assertEqual(worker_requests(got), [], "the second claimant was sent requests")
        # another node's key (a second host's, stolen) announcing under the live node's own id:
        # refused, the node keeps its endpoint and key (added while the broker runs: it re-reads
        # its allow-list)
        name = "node-" + uuid.uuid4().hex[:8]
        r = subprocess.run([self.cluster._bin("mercato-keys"), self.cluster.keys_dir, "add", "node", name],
                           capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)

        def accepted():
            p = Peer(self.cluster, self.ctx, self.cluster.endpoint, name)
            ok = p.handshake() == "ok"
            if ok:
                self.addCleanup(p.close)
                return p
            p.close()
            return None
        other = wait_for(accepted, WAIT_S, interval=0.1, what="the broker to accept the new node key")
        self.assertBrokerRefuses("announce", name, real,
                                 lambda: other.announce(real, fake_ep, "catalog.0 payments.0 identity.0"))
        now = self.node_entry(real)
        self.assertEqual((now["endpoint"], now["key"]), (entry["endpoint"], entry["key"]))
        self.assertEqual(self.nodes_of("catalog.0"), [real])
        for _ in range(3):
            self.assertStatus(self.get(API + "/products/" + pid), 200)
        self.assertStatus(self.get("/readyz"), 200)

    def test_fake_identity_cannot_replace_signing_keys(self):
        before = fetch_jwks(self.cluster.base_url)
        real = self.real_node_id()
        peers, outsiders = self.impostors_at_both("identity.0")
        # a token of the attacker's own key: an unknown kid makes the edge ask identity for keys
        who = self.customer()
        mine = new_rsa_key()
        jwk = public_jwk(mine.public_key())
        real_kid = before["keys"][0]["kid"]
        for kid in (jwk["kid"], real_kid):
            token = make_rs256(mine, {"alg": "RS256", "typ": "JWT", "kid": kid},
                               claims_for(who.id, role="admin"))
            self.assertUnauthorized(self.call("GET", API + "/admin/users", auth=token), "kid " + kid)
        self.assertEqual(fetch_jwks(self.cluster.base_url), before)
        self.assertImpostorsGotNothing(peers, outsiders, "identity.0", real)

    def test_replies_are_not_taken_from_clients(self):
        # a reply sent to a front or the broker, in either protocol, answers nobody: a front
        # drops it (workers are inproc only), the broker refuses a worker's and drops a client's
        victim = self.front_peer("edge", routing_id=b"victim")
        victim.fence()      # connected, known to the front by its routing id
        forged = reply_envelope(ulid(), 200, {"access_token": "forged"})
        for key in LOOKERS + ("edge", "node"):
            p = self.peer(key)
            self.assertBrokerRefuses("worker", key, "",
                                     lambda: p.send(b"MCW2", b"\x03", b"Evictim", b"atk-1", forged))
            f = self.front_peer(key)
            f.send(b"MCW2", b"\x03", b"Evictim", b"atk-1", forged)
            f.send(b"MCC1", b"\x02", b"identity.0", b"atk-1", forged)
        self.assertEqual(victim.fence(), [], "the victim received a reply it never asked for")
        rep = self.assertActorRefuses("node", "identity.0", "keys.list", envelope("keys.list", {}), "node")
        self.assertNotIn("forged", json.dumps(rep))

    def test_fake_broker_hears_nothing(self):
        # a local user who binds the broker's endpoint while it is down (a crash, a restart),
        # without CURVE or with a key of their own, gets no READY and cannot feed the edge keys:
        # every plane client proves the broker's public key
        c = self.cluster
        c.kill("broker")
        try:
            for key in OUTSIDERS:
                fake = self.ctx.socket(zmq.ROUTER)
                fake.setsockopt(zmq.LINGER, 0)
                if key == STRANGER:
                    fake.curve_publickey, fake.curve_secretkey = zmq.curve_keypair()
                    fake.curve_server = True
                mon = fake.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED)
                fake.bind(c.endpoint)
                events = []

                def failures():
                    while mon.poll(0):
                        events.append(recv_monitor_message(mon)["event"])
                    # several attempts of each client: one of them may meet what libzmq never
                    # retries (a protocol error), which the processes must notice themselves
                    return sum(1 for e in events if e & HANDSHAKE_FAILED) >= 60
                try:
                    wait_for(failures, WAIT_S, what="the plane's clients to try the fake broker")
                    self.assertNotIn(zmq.EVENT_HANDSHAKE_SUCCEEDED, events, "key %r" % (key,))
                    self.assertEqual(fake.poll(0), 0, "the fake broker (key %r) heard a message" % (key,))
                finally:
                    fake.disable_monitor()
                    mon.close(0)
                    fake.close(0)
        finally:
            c.start("broker")
            c.wait_ready()
            # our own ops peer met the fake too, and libzmq may have given its connection up
            cls = type(self)
            cls.ops.close()
            cls.ops = Peer(c, self.ctx, c.endpoint, "ops")
            cls.addClassCleanup(cls.ops.close)
        # and every connection that met the fake came back (libzmq alone never retries one that
        # failed on a protocol error): the edge's, a consumer's (a new product's stock record
        # comes from product.created) and an actor's own requests (an order's saga)
        who = self.customer()
        self.order(who, (self.product(stock=5)["id"], 1))

    def test_every_listener(self):
        pids = {n: p.popen.pid for n, p in self.cluster.procs.items() if p.alive()}
        found = {n: listeners(pid) for n, pid in pids.items()}
        zmtp = [(n, l) for n, ls in found.items() for l in ls if speaks_zmtp(l)]
        others = [(n, l) for n, ls in found.items() for l in ls if (n, l) not in zmtp]
        eps = sorted(endpoint_of(l) for _, l in zmtp)
        # the broker's unix socket and the TCP endpoint this cluster added, and the node's
        # front; nobody else's
        self.assertEqual({n for n, _ in zmtp}, {"broker", "node"}, found)
        self.assertIn(self.cluster.endpoint, eps, found)
        self.assertIn(self.front_endpoint, eps, found)
        self.assertTrue(any(e.startswith("tcp://127.0.0.1:") and e != self.front_endpoint
                            for e in eps), found)
        self.assertTrue({n for n, _ in others} <= set(ALLOWED_NOT_ZMTP), found)
        self.assertIn(("edge", ("tcp", "127.0.0.1", self.cluster.port)), others, found)
        self.assertTrue(any(n == "kafka" for n, _ in others), found)
        who, order = self.pending_order()
        real = self.real_node_id()
        victim = b"victim-" + uuid.uuid4().hex[:8].encode()
        attacks = {
            "login": lambda p: p.request("identity.0", envelope(
                "session.login", {"email": self.cluster.admin_email, "ok": True})),
            "credentials": lambda p: p.request("identity.0", envelope(
                "user.credentials", {"email": self.cluster.admin_email})),
            "user.list": lambda p: p.request("identity.0", envelope(
                "user.list", {}, user=who.id, role="customer")),
            "order.pay": lambda p: p.request("orders.0", envelope(
                "order.pay", {"payment_id": ulid(), "amount_cents": order["total_cents"]},
                key=order["id"], user=who.id, role="customer")),
            "ready payments": lambda p: p.ready("payments.0", "impostor"),
            "ready node id": lambda p: p.ready("catalog.0", real),
            "ready identity": lambda p: p.ready("identity.0", "impostor"),
            "reply": lambda p: p.send(b"MCW2", b"\x03", victim, b"1", reply_envelope(ulid())),
            "announce": lambda p: p.announce("impostor", "tcp://127.0.0.1:1", "payments.0"),
            "stats": lambda p: p.request("mmi.stats", b""),
        }
        for ep in eps:
            for key in OUTSIDERS:
                for name, act in attacks.items():
                    with self.subTest(endpoint=ep, key=key, attack=name):
                        self.assertHandshakeRefused(key, ep, act)
        for n, l in others:
            self.assertFalse(speaks_zmtp(l), (n, l))
        self.assertEqual(self.fetch(who, order["id"])["status"], "pending_payment")
        self.assertEqual(self.nodes_of("catalog.0"), [real])
        self.assertEqual(self.nodes_of("payments.0"), [real])
        self.assertEqual(self.nodes_of("identity.0"), [real])
        for mtype in ("session.login", "user.credentials", "user.list", "order.pay"):
            self.assertReachedNoActor(mtype)


class FakeNode:
    """An impostor node with a stolen node key: it listens as a node's front does (a CURVE server
    with the node key), announces shards nobody else serves, and collects the requests the edge
    sends it (in self.pending: [edge routing id, MCC1, 0x01, service, request id, envelope])."""

    def __init__(self, cluster, ctx, shards):
        self.shards = shards
        self.id = "impostor-%s-%s" % (shards.replace(" ", "-"), uuid.uuid4().hex[:6])
        self.front = ctx.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        pub, sec = zmq.auth.load_certificate(os.path.join(cluster.keys_dir, "node.cert_secret"))
        self.front.curve_publickey, self.front.curve_secretkey, self.front.curve_server = pub, sec, True
        self.endpoint = "tcp://127.0.0.1:%d" % self.front.bind_to_random_port("tcp://127.0.0.1")
        self.directory = cluster.plane_socket(ctx, zmq.DEALER, "node")
        self.directory.connect(cluster.endpoint)
        self.pending = []
        self.edge = None            # the edge's routing id here, once it sent something
        self.announced = 0.0

    def pump(self, timeout=0.0):
        """Announces (the directory's heartbeat) and collects what arrived."""
        if time.monotonic() - self.announced > 0.3:
            self.directory.send_multipart([b"MCD1", b"\x01", self.id.encode(), self.endpoint.encode(),
                                           self.shards.encode()])
            self.announced = time.monotonic()
        while self.front.poll(int(timeout * 1000)):
            frames = self.front.recv_multipart()
            if frames[1:3] == [b"MCC1", b"\x01"]:
                self.edge = frames[0]
                self.pending.append(frames)
            timeout = 0

    def reply(self, to, service, rid, env):
        self.front.send_multipart([to, b"MCC1", b"\x02", service, rid, env])

    def close(self):
        self.front.close(0)
        self.directory.close(0)


class TestWrongReplyId(unittest.TestCase):
    """cart.0 and cart.1 are served by two impostors with a stolen node key (the cluster runs no
    cart actor): the edge sends each its requests. A reply from the node a request did not go
    to, even with the right request id and envelope id, is refused; so is one from the node it
    went to whose envelope id is not the request's."""

    @classmethod
    def setUpClass(cls):
        actors = [a for a in DEFAULT_ACTORS if a != "cart"]
        cls.cluster = Cluster(actors=actors, env={"MERCATO_REQUEST_TIMEOUT_MS": "1500",
                                                  "MERCATO_SHARDS": "1,cart=2"})
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.ctx = zmq.Context()
        cls.addClassCleanup(cls.ctx.destroy, 0)
        c = cls.cluster
        try:
            for name in c.order:
                if name == "edge":
                    cls.fakes = [FakeNode(c, cls.ctx, "cart.0"), FakeNode(c, cls.ctx, "cart.1")]
                    for f in cls.fakes:
                        cls.addClassCleanup(f.close)
                c.start(name)
            wait_for(lambda: cls.pump() or requests.get(c.base_url + "/readyz", timeout=1).status_code == 200,
                     20, what="/readyz with the impostors as cart.0 and cart.1")
        except Exception:
            c.failed = True
            sys.stderr.write(c.tails())
            raise
        cls.customers = {}      # fake index -> a customer whose cart it serves

    @classmethod
    def pump(cls, timeout=0.02):
        for f in cls.fakes:
            f.pump(timeout / len(cls.fakes))
        return False

    def get_cart(self, who, answer):
        """GET /cart while the impostors are asked: answer(fake, request, request envelope)
        answers it (or not). Returns (response, index of the fake that was asked)."""
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(requests.get, self.cluster.api + "/cart", headers=who.headers(), timeout=10)
            deadline = time.monotonic() + WAIT_S
            asked = None
            while asked is None and time.monotonic() < deadline:
                self.pump()
                asked = next((i for i, f in enumerate(self.fakes) if f.pending), None)
            self.assertIsNotNone(asked, "no impostor was asked for the cart")
            req = self.fakes[asked].pending.pop(0)
            env = msgpack.unpackb(req[5])
            self.assertEqual(env["type"], "cart.get")
            answer(self.fakes[asked], req, env)
            while not fut.done():
                self.pump()
            return fut.result(), asked

    BODY = {"items": [], "total_cents": 0, "currency": "USD"}

    def honest(self, fake, req, env):
        fake.reply(req[0], req[3], req[4], reply_envelope(env["id"], 200, self.BODY))

    def customer_of(self, index):
        """A customer whose cart the impostor index serves; by the way, each impostor that is
        asked has been sent a request (so it can address the edge) and answered it."""
        for _ in range(40):
            if index in self.customers:
                return self.customers[index]
            who = self.cluster.register_customer()
            r, asked = self.get_cart(who, self.honest)
            self.assertEqual(r.status_code, 200, r.text)
            self.customers.setdefault(asked, who)
        self.fail("no customer's cart is on impostor %d" % index)

    def test_reply_from_another_node_is_refused(self):
        who = self.customer_of(0)
        self.customer_of(1)
        other = self.fakes[1]
        self.assertIsNotNone(other.edge)

        def forged(fake, req, env):
            # the other node knows the request's id and envelope id, and answers in its place
            self.assertIs(fake, self.fakes[0])
            other.reply(other.edge, req[3], req[4], reply_envelope(env["id"], 200,
                                                                    dict(self.BODY, total_cents=666)))
        r, asked = self.get_cart(who, forged)
        self.assertEqual(asked, 0)
        self.assertEqual(r.status_code, 504, r.text)
        # the node it went to is believed
        r, _ = self.get_cart(who, self.honest)
        self.assertEqual(r.status_code, 200, r.text)
        self.assertEqual(r.json()["total_cents"], 0)

    def test_reply_with_another_id_is_refused(self):
        who = self.customer_of(0)
        refused = len(log_records(self.cluster, "edge", "reply refused"))
        r, _ = self.get_cart(who, lambda fake, req, env: fake.reply(
            req[0], req[3], req[4], reply_envelope(ulid(), 200, self.BODY)))
        self.assertEqual(r.status_code, 504, r.text)
        wait_for(lambda: len(log_records(self.cluster, "edge", "reply refused")) > refused, WAIT_S,
                 what="edge log 'reply refused'")
        self.assertEqual(log_records(self.cluster, "edge", "reply refused")[-1].get("service"), "cart.0")
        # the same impostor answering with the request's id is believed: it was the id, not the path
        r, _ = self.get_cart(who, self.honest)
        self.assertEqual(r.status_code, 200, r.text)


if __name__ == "__main__":
    unittest.main()
