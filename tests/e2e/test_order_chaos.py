"""A crash test in the Jepsen style for orders and inventory (CONTRACT 2, 5, 6).

20 clients place, cancel and let expire orders over 20 low-stock products while a nemesis
SIGKILLs the node, the broker or the edge every couple of seconds and restarts it. Every order
carries a fresh Idempotency-Key; a client retries the same key with the same body through 503s,
504s, timeouts and refused connections until it gets a definite answer (201, or 409
out_of_stock), and retries a cancel until it gets 200 or 409. Nothing gives up.

Afterwards, once the system is ready and every unpaid order has expired (a short
MERCATO_RESERVATION_TTL_S), the history the clients recorded is checked against what the system
says:
  1. every order that got a 201 exists, and both answers for one key name the same order;
  2. the system holds no order that no 201 named (no duplicate for a retried key, no orphan);
  3. no product is oversold: every inventory sample had available >= 0, reserved <= on_hand,
     on_hand == initial_stock, and the orders that were certainly holding stock at one instant
     never needed more than the initial stock;
  4. stock is conserved: on_hand == available + reserved, and at the end reserved is the sum of
     what pending orders hold (nothing: they have all expired or been cancelled);
  5. every order is in a legal state (here: cancelled or expired), consistent with what its
     client saw (a 200 cancel means cancelled; never cancelled means expired).
Besides: a deliberate replay of an answered key gets the same answer with
Idempotent-Replayed: true; a process that dies without being killed is a failure (it is restarted
so the run goes on); a 422 for a retried key, a 500, or any status no correct system gives here is
a failure. The counts are printed.

Environment: MERCATO_CHAOS_SEED (random choices of the clients; the nemesis' timing is not
reproducible anyway), MERCATO_CHAOS_RUN_S (default 25).
"""

import collections
import json
import os
import random
import re
import sys
import threading
import time
import unittest
import uuid
from datetime import datetime

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN_DIR, DEFAULT_ACTORS, Cluster, ClusterTestCase, HarnessError, wait_for  # noqa: E402

API = "/api/v1"
ACTORS = DEFAULT_ACTORS      # /readyz waits for every routed service
TTL_S = 3
N_PRODUCTS = 20
N_CLIENTS = 20
RUN_S = float(os.environ.get("MERCATO_CHAOS_RUN_S", "25"))
SEED = int(os.environ.get("MERCATO_CHAOS_SEED") or random.randrange(1 << 30))
VICTIMS = ("node", "broker", "edge")
NEMESIS_PAUSE_S = (1.5, 2.5)      # between one restart being ready and the next kill
NEMESIS_DOWN_S = (0.0, 0.5)       # how long the victim stays dead
REQ_TIMEOUT_S = 3.0               # client-side: shorter than the edge's 5 s actor deadline
OP_DEADLINE_S = 60.0              # one operation (all retries of one key / cancel) at most
CANCEL_P = 0.5                    # share of created orders the client cancels
REPLAY_P = 0.15                   # share of answered keys the client deliberately replays
SETTLE_S = 60.0                   # after the run: every order expired, nothing reserved
EXPIRY_MARGIN_S = 0.1             # clock rounding allowed around expires_at
LEGAL = {"pending_payment", "paid", "shipped", "delivered", "cancelled", "expired", "refunded"}
RETRYABLE = (500, 502, 503, 504, 429)   # 500 is also recorded as unexpected
UNEXPECTED_TRIES = 10             # retries of a status no correct system answers here
ADDRESS = {"name": "Chaos Tester", "line1": "Teststr. 1", "city": "Berlin",
           "postal_code": "10115", "country": "DE"}
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")


def _have_bins():
    return all(os.access(os.path.join(BIN_DIR, b), os.X_OK)
               for b in ("mercato-broker", "mercato-node", "mercato-edge", "mercato-kafka-dev",
                         "mercato-relay"))


def parse_ts(s):
    """RFC 3339 -> epoch seconds (float), or None."""
    m = RFC3339.match(s or "")
    if not m:
        return None
    frac = (m.group(2) or "0")[:6].ljust(6, "0")
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return datetime.fromisoformat("%s.%s%s" % (m.group(1), frac, tz)).timestamp()


def problem_code(r):
    try:
        return r.json().get("code")
    except ValueError:
        return None


class Attempt:
    __slots__ = ("t_send", "t_recv", "status", "code", "order_id", "replayed", "error")

    def __init__(self, t_send):
        self.t_send, self.t_recv = t_send, None
        self.status = self.code = self.order_id = self.replayed = self.error = None

    def __repr__(self):
        what = self.error or "%s%s%s%s" % (self.status, " " + self.code if self.code else "",
                                           " id=" + self.order_id if self.order_id else "",
                                           " replayed" if self.replayed else "")
        return "<%.3f..%.3f %s>" % (self.t_send, self.t_recv or 0, what)


class KeyRecord:
    """Everything one client saw for one Idempotency-Key."""

    def __init__(self, client, user_id, key, lines):
        self.client, self.user_id, self.key, self.lines = client, user_id, key, lines
        self.body = json.dumps({"items": [{"product_id": p, "quantity": q} for p, q in lines],
                                "shipping_address": ADDRESS})
        self.attempts = []        # every POST /orders with this key, deliberate replays included
        self.outcome = None       # "created" | "out_of_stock" | "gave_up" | "bad:<status>"
        self.order_id = None
        self.order = None         # the first 201 body
        self.t_created = None     # client clock when the first 201 arrived
        self.expires_at = None    # epoch seconds, from the 201 body
        self.cancels = []         # Attempts of POST /orders/{id}/cancel
        self.cancel_result = None  # None (not tried) | "ok" | "conflict" | "gave_up"
        self.replayed_retry = False  # the answer to a retry was a replay of an unseen one

    def __repr__(self):
        return "<key %s client %d user %s lines %s outcome %s order %s attempts %s cancels %s>" % (
            self.key, self.client, self.user_id, self.lines, self.outcome, self.order_id,
            self.attempts, self.cancels)


class TestOrderChaos(ClusterTestCase):
    @classmethod
    def setUpClass(cls):
        if not _have_bins():
            raise unittest.SkipTest("mercato binaries (with kafka-dev and relay) not built in %s"
                                    % BIN_DIR)
        cls.cluster = Cluster(actors=ACTORS, kafka=True,
                              env={"MERCATO_RESERVATION_TTL_S": str(TTL_S)})
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()

    # --- setup --------------------------------------------------------------------------------
    def make_products(self, rnd):
        stock = {}
        for i in range(N_PRODUCTS):
            initial = rnd.randint(5, 10)
            r = self.post_json(API + "/products", {
                "sku": "CHAOS-%02d-%s" % (i, uuid.uuid4().hex[:8]), "name": "Scarce thing %d" % i,
                "description": "low stock under chaos", "category": "chaos",
                "price_cents": 100 + i, "initial_stock": initial})
            self.assertStatus(r, 201)
            stock[r.json()["id"]] = initial
        for pid, initial in stock.items():
            s = wait_for(lambda: (lambda r: r.status_code == 200 and r.json())(
                self.get(API + "/inventory/" + pid, timeout=2)), 30,
                what="the stock record of " + pid)
            self.assertEqual((s["on_hand"], s["reserved"], s["available"]),
                             (initial, 0, initial), s)
        return stock

    def make_customers(self):
        out = []
        for i in range(N_CLIENTS):
            # argon2 runs two at a time behind a short queue: one at a time, through its 503s
            p = wait_for(lambda: self.cluster.register_customer(name="Chaos client %d" % i), 30,
                         interval=0.2, what="customer %d registered" % i)
            out.append(p)
        return out

    # --- the test -----------------------------------------------------------------------------
    def test_orders_survive_crashes(self):
        c = self.cluster
        rnd = random.Random(SEED)
        sys.stdout.write("\n[chaos] seed %d (MERCATO_CHAOS_SEED), run %.0f s, TTL %d s\n"
                         % (SEED, RUN_S, TTL_S))
        self.admin = c.admin_headers()    # cached before the nemesis starts
        self.stock = self.make_products(rnd)
        self.pids = sorted(self.stock)
        self.customers = self.make_customers()

        self.lock = threading.Lock()
        self.stats = collections.Counter()
        self.records = []              # every KeyRecord
        self.unexpected = []           # (what, detail) a client saw that no correct system says
        self.samples_bad = []          # inventory samples breaking an invariant
        self.kills = collections.Counter()
        self.nemesis_errors = []
        self.stop = threading.Event()
        self.sampler_stop = threading.Event()

        clients = [threading.Thread(target=self.client, args=(i, random.Random(SEED * 101 + i)),
                                    name="client-%d" % i, daemon=True) for i in range(N_CLIENTS)]
        sampler = threading.Thread(target=self.sampler, args=(random.Random(SEED * 13),),
                                   name="sampler", daemon=True)
        self.addCleanup(self.sampler_stop.set)
        self.addCleanup(self.stop.set)
        t_start = time.monotonic()
        for t in clients + [sampler]:
            t.start()
        # The nemesis runs on this thread: the harness starts processes under
        # setpriv --pdeathsig, and a parent-death signal fires when the *thread* that forked the
        # child exits, so a process restarted by a short-lived thread would die with it.
        self.nemesis(random.Random(SEED * 7), t_start + RUN_S)
        self.stop.set()

        # Everything up again (a crash or a failed restart may have left something down).
        if not self.revive():
            self.fail("the system did not come back:\n  %s" % "\n  ".join(self.nemesis_errors))
        t_quiet = time.monotonic()
        for t in clients:
            t.join(OP_DEADLINE_S * 2 + 10)
            self.assertFalse(t.is_alive(), "%s stuck" % t.name)
        t_clients_done = time.monotonic()

        # Every unpaid order expires and gives its stock back; sampling goes on meanwhile.
        created = [k for k in self.records if k.outcome == "created"]
        settle_error = self.settle()
        self.sampler_stop.set()
        sampler.join(10)
        t_settled = time.monotonic()

        orders = self.admin_orders()
        inventory = {pid: self.inventory(pid) for pid in self.pids}
        failures = self.check(created, orders, inventory)
        if settle_error:
            failures.insert(0, "%s; pending left: %s; reserved left: %s" % (
                settle_error,
                [(o["id"], o.get("expires_at")) for o in orders.values()
                 if o.get("status") == "pending_payment"][:10],
                {pid: s.get("reserved") for pid, s in inventory.items() if s.get("reserved")}))

        self.report(created, orders, t_quiet - t_start, t_clients_done - t_quiet,
                    t_settled - t_clients_done)
        if failures:
            self.fail("%d violation(s) (seed %d):\n  %s" % (
                len(failures), SEED, "\n  ".join(failures[:40])))

    # --- actors of the run ---------------------------------------------------------------------
    def client(self, i, rnd):
        p = self.customers[i]
        s = requests.Session()
        try:
            while not self.stop.is_set():
                lines = [(pid, rnd.randint(1, 3)) for pid in rnd.sample(self.pids, rnd.randint(1, 3))]
                rec = KeyRecord(i, p.id, str(uuid.uuid4()), lines)
                with self.lock:
                    self.records.append(rec)
                self.place(s, p, rec)
                if rec.outcome in ("created", "out_of_stock") and rnd.random() < REPLAY_P:
                    self.place(s, p, rec, replay=True)
                if rec.outcome == "created" and rnd.random() < CANCEL_P:
                    # mostly well before the deadline; some race the expiry
                    time.sleep(rnd.uniform(0, 1.5) if rnd.random() < 0.8
                               else rnd.uniform(TTL_S - 0.5, TTL_S + 0.5))
                    self.cancel(s, p, rec)
                time.sleep(rnd.uniform(0, 0.2))
        except Exception as e:  # noqa: BLE001 - a crashed client is a test bug: report it
            with self.lock:
                self.unexpected.append(("client %d crashed" % i, repr(e)))
        finally:
            s.close()

    def request(self, s, method, path, principal, data, headers, attempts, final, what):
        """Send until an answer is final (final(response) is true); every try lands in attempts.

        Retried: refused connections, timeouts, 429/502/503/504, 409s with another code than the
        final ones (e.g. the same key still being worked on), 500 (recorded as unexpected) and,
        at most UNEXPECTED_TRIES times, any other status (recorded as unexpected): until then the
        outcome of the key is unknown. Returns the final response, the last unexpected one, or
        None once OP_DEADLINE_S has passed."""
        deadline = time.monotonic() + OP_DEADLINE_S
        backoff, odd = 0.05, 0
        h = dict(principal.headers())
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers)
        while True:
            a = Attempt(time.time())
            attempts.append(a)
            r = None
            try:
                r = s.request(method, self.cluster.api + path, data=data, headers=h,
                              timeout=REQ_TIMEOUT_S)
            except requests.RequestException as e:
                a.error = type(e).__name__
            a.t_recv = time.time()
            if r is None:
                key = "%s %s" % (what, a.error)
            else:
                a.status = r.status_code
                a.replayed = r.headers.get("Idempotent-Replayed")
                if r.status_code >= 400:
                    a.code = problem_code(r)
                key = "%s %d%s" % (what, r.status_code, " " + a.code if a.code else "")
            with self.lock:
                self.stats[key] += 1
            if r is not None:
                if final(r):
                    return r
                if r.status_code == 500 or (r.status_code not in RETRYABLE and
                                            r.status_code != 409):
                    odd += 1
                    with self.lock:
                        self.unexpected.append(("%s %s -> %d" % (method, path, r.status_code),
                                                r.text[:300]))
                    if odd >= UNEXPECTED_TRIES:
                        return r
            with self.lock:
                self.stats["retries"] += 1
            if time.monotonic() >= deadline:
                return None
            wait = backoff * random.uniform(0.5, 1.5)
            if r is not None and r.headers.get("Retry-After", "").isdigit():
                wait = max(wait, min(float(r.headers["Retry-After"]), 1.0))
            time.sleep(wait)
            backoff = min(backoff * 2, 1.0)

    def place(self, s, principal, rec, replay=False):
        first = len(rec.attempts)
        r = self.request(s, "POST", "/orders", principal, rec.body,
                         {"Idempotency-Key": rec.key}, rec.attempts,
                         lambda r: r.status_code in (201, 422) or (
                             r.status_code == 409 and problem_code(r) == "out_of_stock"),
                         "place")
        mine = rec.attempts[first:]
        if r is None:
            if not replay:
                rec.outcome = "gave_up"
            with self.lock:
                self.unexpected.append(("gave up on key %s after %d attempts" % (
                    rec.key, len(mine)), repr(mine[-5:])))
            return
        if not replay and len(mine) > 1 and (mine[-1].replayed or "").lower() == "true":
            rec.replayed_retry = True
        if r.status_code == 201:
            o = r.json()
            mine[-1].order_id = o.get("id")
            self.check_created(rec, o)
            if rec.order_id is None:
                rec.order_id, rec.order, rec.t_created = o.get("id"), o, mine[-1].t_recv
                rec.expires_at = parse_ts(o.get("expires_at"))
                if rec.outcome == "out_of_stock":
                    self.note("key %s answered 409 out_of_stock, then 201 %s" % (
                        rec.key, o.get("id")), rec)
                rec.outcome = "created"
            elif o.get("id") != rec.order_id:
                self.note("key %s: two 201s name different orders %s and %s" % (
                    rec.key, rec.order_id, o.get("id")), rec)
            if replay and (mine[-1].replayed or "").lower() != "true":
                self.note("deliberate replay of key %s: 201 without Idempotent-Replayed: true "
                          "(got %r)" % (rec.key, mine[-1].replayed), rec)
        elif r.status_code == 409:
            if rec.outcome == "created":
                self.note("key %s answered 201 %s, then 409 out_of_stock" % (
                    rec.key, rec.order_id), rec)
            else:
                rec.outcome = "out_of_stock"
        else:
            self.note("key %s: %d %s (same key, same body)" % (rec.key, r.status_code,
                                                               r.text[:200]), rec)
            if not replay:
                rec.outcome = "bad:%d" % r.status_code
        if replay:
            with self.lock:
                self.stats["replays"] += 1

    def check_created(self, rec, o):
        want = sorted(rec.lines)
        got = sorted((it.get("product_id"), it.get("quantity")) for it in o.get("items") or [])
        if got != want or o.get("user_id") != rec.user_id:
            self.note("key %s: 201 order %s does not match the request: items %s user %s" % (
                rec.key, o.get("id"), got, o.get("user_id")), rec)
        if o.get("status") != "pending_payment":
            self.note("key %s: 201 order %s has status %r" % (rec.key, o.get("id"),
                                                             o.get("status")), rec)
        if parse_ts(o.get("expires_at")) is None:
            self.note("key %s: 201 order %s without an RFC 3339 expires_at: %r" % (
                rec.key, o.get("id"), o.get("expires_at")), rec)

    def cancel(self, s, principal, rec):
        r = self.request(s, "POST", "/orders/%s/cancel" % rec.order_id, principal, None, {},
                         rec.cancels, lambda r: r.status_code == 200 or (
                             r.status_code == 409 and problem_code(r) == "illegal_transition"),
                         "cancel")
        if r is None:
            rec.cancel_result = "gave_up"
            with self.lock:
                self.unexpected.append(("gave up cancelling %s" % rec.order_id,
                                        repr(rec.cancels[-5:])))
        elif r.status_code == 200:
            rec.cancel_result = "ok"
            if r.json().get("status") != "cancelled":
                self.note("cancel of %s answered 200 with status %r" % (
                    rec.order_id, r.json().get("status")), rec)
        elif r.status_code == 409:
            rec.cancel_result = "conflict"
        else:
            rec.cancel_result = "bad:%d" % r.status_code   # already recorded as unexpected

    def note(self, what, rec):
        with self.lock:
            self.unexpected.append((what, repr(rec)))

    def nemesis(self, rnd, until):
        """Until the monotonic time until: pause, SIGKILL one of VICTIMS, restart it, wait until
        the system is ready again."""
        c = self.cluster
        bag = []        # each process once per round, in a random order: none is left out
        while True:
            time.sleep(max(0.0, min(rnd.uniform(*NEMESIS_PAUSE_S), until - time.monotonic())))
            if time.monotonic() >= until:
                return
            if not self.revive():
                return
            if not bag:
                bag = rnd.sample(VICTIMS, len(VICTIMS))
            victim = bag.pop()
            try:
                c.kill(victim)
                with self.lock:
                    self.kills[victim] += 1
                time.sleep(rnd.uniform(*NEMESIS_DOWN_S))
                c.start(victim, timeout=20)
                c.wait_ready(timeout=20)
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.nemesis_errors.append("restarting %s: %s" % (victim, e))
                if not self.revive():
                    return

    def revive(self):
        """Restart whatever died without being killed (a crash: recorded as a failure), then wait
        until ready. False if the system cannot be brought back."""
        c = self.cluster
        for attempt in range(3):
            try:
                for name in c.order:
                    p = c.procs[name]
                    if p.popen is not None and not p.alive():
                        if not p.killed:
                            self.nemesis_errors.append("%s died on its own (exit code %s)" % (
                                name, p.popen.returncode))
                        c.start(name, timeout=20)
                c.wait_ready(timeout=20)
                return True
            except Exception as e:  # noqa: BLE001 - reported by the test
                self.nemesis_errors.append("reviving (try %d): %s" % (attempt + 1, e))
        return False

    def sampler(self, rnd):
        s = requests.Session()
        while not self.sampler_stop.wait(0.05):
            pid = rnd.choice(self.pids)
            try:
                r = s.get(self.cluster.api + "/inventory/" + pid, timeout=1)
            except requests.RequestException:
                continue
            if r.status_code != 200:
                continue
            with self.lock:
                self.stats["inventory samples"] += 1
            bad = self.stock_violation(pid, r.json())
            if bad:
                with self.lock:
                    self.samples_bad.append("%.3f %s" % (time.time(), bad))
        s.close()

    def stock_violation(self, pid, st):
        """What is wrong with one stock record, whatever the orders: or None."""
        initial = self.stock[pid]
        on_hand, reserved, available = st.get("on_hand"), st.get("reserved"), st.get("available")
        if not all(isinstance(v, int) for v in (on_hand, reserved, available)):
            return "%s: malformed stock record %s" % (pid, st)
        if on_hand != initial or available < 0 or reserved < 0 or reserved > on_hand or \
                on_hand != available + reserved:
            return "%s (initial %d): on_hand %d reserved %d available %d" % (
                pid, initial, on_hand, reserved, available)
        return None

    # --- the end ------------------------------------------------------------------------------
    def admin_get(self, path, tries=20):
        last = None
        for _ in range(tries):
            try:
                r = self.http.get(self.cluster.api + path, headers=self.admin, timeout=5)
                if r.status_code not in RETRYABLE:
                    return r
                last = r
            except requests.RequestException as e:
                last = e
            time.sleep(0.25)
        raise HarnessError("GET %s kept failing: %r; processes: %s; nemesis: %s" % (
            path, last, {n: p.popen.returncode if p.popen and not p.alive() else "up"
                         for n, p in self.cluster.procs.items()}, self.nemesis_errors))

    def admin_orders(self):
        """Every order in the system, by id (the admin list, every page)."""
        out, cursor, pages = {}, None, 0
        while True:
            r = self.admin_get("/orders?limit=100" + ("&cursor=" + cursor if cursor else ""))
            self.assertStatus(r, 200, "admin order list")
            page = r.json()
            for o in page["items"]:
                self.assertNotIn(o["id"], out, "order %s listed twice" % o["id"])
                out[o["id"]] = o
            cursor = page.get("next_cursor")
            pages += 1
            self.assertLess(pages, 1000, "the order list does not end")
            if not cursor:
                return out

    def inventory(self, pid):
        r = self.admin_get("/inventory/" + pid)
        self.assertStatus(r, 200, "stock of " + pid)
        return r.json()

    def settle(self):
        """Wait until no order is pending and nothing is reserved: None, or what went wrong."""
        deadline = time.monotonic() + SETTLE_S
        last = None
        while time.monotonic() < deadline:
            dead = [n for n, p in self.cluster.procs.items() if p.popen and not p.alive()]
            if dead:
                return "%s died while settling (%s)" % (dead, self.nemesis_errors)
            try:
                orders = self.admin_orders()
                if not any(o.get("status") == "pending_payment" for o in orders.values()) and \
                        all(self.inventory(pid)["reserved"] == 0 for pid in self.pids):
                    return None
            except Exception as e:  # noqa: BLE001 - not yet
                last = e
            time.sleep(0.5)
        return "not settled after %.0f s (last error: %r)" % (SETTLE_S, last)

    def check(self, created, orders, inventory):
        f = ["client saw: %s -- %s" % u for u in self.unexpected[:20]]
        if len(self.unexpected) > 20:
            f.append("... and %d more things clients saw" % (len(self.unexpected) - 20))
        f += ["nemesis: " + e for e in self.nemesis_errors]
        f += ["inventory sample: " + b for b in self.samples_bad[:20]]
        unresolved = [k for k in self.records if k.outcome not in ("created", "out_of_stock")]
        f += ["key never resolved: %r" % k for k in unresolved[:10]]

        # (1) every 201 order exists, as its client left it
        by_id = {}
        for k in created:
            if k.order_id in by_id:
                f.append("keys %s and %s got the same order %s" % (by_id[k.order_id].key, k.key,
                                                                    k.order_id))
            by_id[k.order_id] = k
            r = self.admin_get("/orders/" + k.order_id)
            if r.status_code != 200:
                f.append("order %s (201 for key %s) is gone: GET -> %d %s" % (
                    k.order_id, k.key, r.status_code, r.text[:200]))
                continue
            o = r.json()
            status = o.get("status")
            if o.get("user_id") != k.user_id or sorted(
                    (it.get("product_id"), it.get("quantity")) for it in o.get("items") or []
            ) != sorted(k.lines):
                f.append("order %s changed: %s vs key %r" % (k.order_id, o, k))
            # (5) legal, final, and what the client's own history allows
            if status not in LEGAL:
                f.append("order %s in illegal status %r" % (k.order_id, status))
            elif status not in ("cancelled", "expired"):
                f.append("order %s still %r after settling (expires_at %s)" % (
                    k.order_id, status, o.get("expires_at")))
            elif k.cancel_result == "ok" and status != "cancelled":
                f.append("order %s: cancel answered 200, now %r: %r" % (k.order_id, status, k))
            elif k.cancel_result is None and status != "expired":
                f.append("order %s: never cancelled, now %r: %r" % (k.order_id, status, k))
            elif status == "expired" and k.expires_at is not None:
                early = [a for a in k.cancels if a.status == 409 and
                         a.t_recv < k.expires_at - EXPIRY_MARGIN_S]
                if early:
                    f.append("order %s expired before its expires_at %s: cancel refused at "
                             "%.3f: %r" % (k.order_id, o.get("expires_at"), early[0].t_recv, k))
            if orders.get(k.order_id) is None:
                f.append("order %s (key %s) missing from the admin list" % (k.order_id, k.key))
            elif orders[k.order_id].get("status") != status:
                f.append("order %s: list says %r, GET says %r" % (
                    k.order_id, orders[k.order_id].get("status"), status))

        # (2) nothing else: no second order for a retried key, no order nobody was told of
        for oid, o in orders.items():
            if oid in by_id:
                continue
            twins = [k.key for k in self.records if k.user_id == o.get("user_id") and
                     sorted(k.lines) == sorted((it.get("product_id"), it.get("quantity"))
                                               for it in o.get("items") or [])]
            f.append("order %s (%s, created %s) answered no 201; keys of that user with those "
                     "items: %s" % (oid, o.get("status"), o.get("created_at"), twins[:5]))

        # (3)+(4) stock: untouched on hand, nothing reserved, conserved
        pending = collections.Counter()
        for o in orders.values():
            if o.get("status") == "pending_payment":
                for it in o.get("items") or []:
                    pending[it.get("product_id")] += it.get("quantity") or 0
        for pid, st in inventory.items():
            bad = self.stock_violation(pid, st)
            if bad:
                f.append("final stock: " + bad)
            if st.get("reserved") != pending[pid]:
                f.append("%s: reserved %s but pending orders hold %d" % (
                    pid, st.get("reserved"), pending[pid]))
        f += self.oversold(created)
        return f

    def oversold(self, created):
        """From the history alone: an order certainly held its stock from its first 201 until
        the earlier of its expires_at and its first cancel request. At no instant may the orders
        certainly holding a product need more than its initial stock."""
        events = collections.defaultdict(list)
        for k in created:
            if k.expires_at is None:
                continue
            end = k.expires_at - EXPIRY_MARGIN_S
            if k.cancels:
                end = min(end, k.cancels[0].t_send)
            if end <= k.t_created:
                continue
            for pid, q in k.lines:
                events[pid].append((k.t_created, 1, q, k.order_id))
                events[pid].append((end, 0, -q, k.order_id))     # releases first on a tie
        out = []
        self.sold_out = 0      # products the history shows entirely held at some instant
        for pid, evs in events.items():
            held, holders, peak = 0, set(), 0
            for t, _, dq, oid in sorted(evs):
                held += dq
                peak = max(peak, held)
                (holders.add if dq > 0 else holders.discard)(oid)
                if held > self.stock[pid]:
                    out.append("%s oversold at %.3f: %d held of %d by orders %s" % (
                        pid, t, held, self.stock[pid], sorted(holders)))
                    break
            self.sold_out += peak >= self.stock[pid]
        return out

    def report(self, created, orders, t_run, t_drain, t_settle):
        st, recs = self.stats, self.records
        status = collections.Counter(o.get("status") for o in orders.values())
        first_try = sum(1 for k in recs if k.attempts and k.attempts[0].status is not None and
                        k.outcome in ("created", "out_of_stock") and
                        (k.attempts[0].status == 201 or k.attempts[0].code == "out_of_stock"))
        lines = [
            "[chaos] %.1f s of chaos, clients drained in %.1f s, settled in %.1f s" % (
                t_run, t_drain, t_settle),
            "[chaos] kills: %s" % ", ".join("%s %d" % (n, self.kills[n]) for n in VICTIMS),
            "[chaos] keys %d: orders placed (201) %d, out_of_stock (409) %d, unresolved %d; "
            "answered on the first try %d; first try timed out %d; a retry answered by a replay "
            "%d" % (
                len(recs), len(created), sum(1 for k in recs if k.outcome == "out_of_stock"),
                sum(1 for k in recs if k.outcome not in ("created", "out_of_stock")), first_try,
                sum(1 for k in recs if k.attempts and k.attempts[0].error == "ReadTimeout"),
                sum(1 for k in recs if k.replayed_retry)),
            "[chaos] cancels: tried %d, 200 %d, 409 %d; final: cancelled %d, expired %d, "
            "other %d; orders in the system %d" % (
                sum(1 for k in created if k.cancel_result),
                sum(1 for k in created if k.cancel_result == "ok"),
                sum(1 for k in created if k.cancel_result == "conflict"),
                status["cancelled"], status["expired"],
                sum(v for s, v in status.items() if s not in ("cancelled", "expired")),
                len(orders)),
            "[chaos] requests: %d retries, %d deliberate replays; %s" % (
                st["retries"], st["replays"], ", ".join(
                    "%s %d" % (k, v) for k, v in sorted(st.items())
                    if k not in ("retries", "replays", "inventory samples"))),
            "[chaos] inventory samples %d (%d bad); units in stock %d over %d products, %d of "
            "them certainly all reserved at some instant" % (
                st["inventory samples"], len(self.samples_bad), sum(self.stock.values()),
                len(self.stock), getattr(self, "sold_out", 0)),
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    unittest.main()
