"""CONTRACT 9, HTTP additions at the edge: a deadline for a whole request, a cap on connections
per client address, HEAD on every GET, Date, 431/414/400 without Host/501, Cache-Control:
no-store on answers that carry a token. Raw sockets wherever the request must be malformed."""

import email.utils
import json
import os
import re
import selectors
import socket
import sys
import threading
import time
import unittest
import uuid

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, ClusterTestCase, strong_password, unique_email  # noqa: E402

P = "/api/v1/products"
DEADLINE_MS = 2000                  # MERCATO_HTTP_REQUEST_TIMEOUT_MS of the slow-client cluster
THREADS = 256                       # MERCATO_HTTP_THREADS (the default)
PER_CLIENT = THREADS // 2           # MERCATO_HTTP_MAX_CONNECTIONS_PER_CLIENT's default
IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                         r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers, self.body[:300])


class Conn:
    """A bare TCP connection from a chosen loopback address, reading responses one at a time
    (HEAD answers have a Content-Length but no body, which only the caller knows)."""

    def __init__(self, port, source="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0))
        self.buf = b""
        self.closed = False

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def response(self, head=False, timeout=5.0):
        """The next response, or None when none arrives within timeout or the peer closed."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if self.closed or time.monotonic() >= deadline or not self._fill(deadline):
                return None
        top, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = top.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0])
        assert m, "not an HTTP response: %r" % top[:200]
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]]
        n = 0 if head else int(dict((k.lower(), v) for k, v in headers).get("content-length", "0"))
        while len(self.buf) < n:
            if self.closed or time.monotonic() >= deadline or not self._fill(deadline):
                break
        body, self.buf = self.buf[:n], self.buf[n:]
        return Response(int(m.group(1)), headers, body)

    def wait_closed(self, timeout):
        """True when the peer closes within timeout (whatever it sends first is kept in buf)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._fill(deadline)
        return self.closed

    def close(self):
        self.sock.close()


class LimitsCase(ClusterTestCase):
    ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.cluster = Cluster(actors=cls.ACTORS, env=cls.ENV)
        cls.addClassCleanup(cls.cluster.cleanup)
        cls.cluster.start_all()

    def conn(self, source="127.0.0.1", timeout=5.0):
        c = Conn(self.cluster.port, source, timeout)
        self.addCleanup(c.close)
        return c

    def exchange(self, raw, source="127.0.0.1", head=False):
        c = self.conn(source)
        c.send(raw if isinstance(raw, bytes) else raw.encode("latin-1"))
        r = c.response(head=head)
        self.assertIsNotNone(r, "no response to %r" % raw[:200])
        return r

    def assertRawProblem(self, r, status, code=None):
        self.assertEqual(r.status, status, r)
        self.assertTrue((r.header("Content-Type") or "").startswith("application/problem+json"), r)
        p = r.json()
        self.assertEqual(p["status"], status, p)
        for member in ("type", "title", "detail", "code", "instance"):
            self.assertIn(member, p, p)
        if code:
            self.assertEqual(p["code"], code, p)
        self.assertDate(r)

    def assertDate(self, r):
        date = r.header("Date")
        self.assertIsNotNone(date, "no Date header: %r" % r)
        self.assertRegex(date, IMF_FIXDATE)
        skew = abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time())
        self.assertLess(skew, 5, "Date %r is %.0f s off" % (date, skew))

    def rejected(self, kind):
        text = requests.get(self.url("/metrics"), timeout=10).text
        m = re.search(r'^mercato_http_rejected_total\{kind="%s"\} (\d+)$' % kind, text, re.M)
        self.assertTrue(m, "no mercato_http_rejected_total{kind=%r}" % kind)
        return int(m.group(1))


class TestSlowClients(LimitsCase):
    """The deadline (MERCATO_HTTP_REQUEST_TIMEOUT_MS, 2 s here) and the per-address cap."""

    ENV = {"MERCATO_HTTP_REQUEST_TIMEOUT_MS": str(DEADLINE_MS)}

    def trickle(self, c, t0, data, until, every=0.25):
        """Sends data a byte at a time until the peer closes or `until` s after t0; returns
        the time of the close after t0, or None."""
        for i in range(10 ** 6):
            if c.closed or time.monotonic() - t0 > until:
                break
            if not c.send(data[i % len(data):i % len(data) + 1]):
                break
            c.wait_closed(every)
        return time.monotonic() - t0 if c.wait_closed(0.5) else None

    def assertCutAtDeadline(self, closed_at, c, since="the connection opened"):
        d = DEADLINE_MS / 1000
        self.assertIsNotNone(closed_at, "the edge still reads a request trickled for %.0f s" % (3 * d))
        self.assertGreater(closed_at, d - 0.3, "cut before the deadline")
        self.assertLess(closed_at, d + 1.0, "cut %.2f s after %s, deadline %.1f s" % (closed_at, since, d))
        r = c.response(timeout=0.5)
        self.assertIsNotNone(r, "closed without an answer")
        self.assertRawProblem(r, 408, "request_timeout")

    def test_trickled_headers_get_408_at_the_deadline(self):
        before = self.rejected("timeout")
        c = self.conn()
        t0 = time.monotonic()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        self.assertCutAtDeadline(self.trickle(c, t0, b"abcdefgh", 3 * DEADLINE_MS / 1000), c)
        self.assertGreater(self.rejected("timeout"), before)

    def test_trickled_body_gets_408_at_the_deadline(self):
        """civetweb restarts its clock on every read of a body: a byte every 0.25 s would be read
        for as long as the client likes. The deadline covers headers and body together: here
        the headers take half of it and the body the rest."""
        c = self.conn()
        t0 = time.monotonic()
        head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n" % P).encode()
        for i in range(0, len(head), 8):
            c.send(head[i:i + 8])
            time.sleep(DEADLINE_MS / 1000 / 2 / (len(head) / 8))
        self.assertCutAtDeadline(self.trickle(c, t0, b" ", 3 * DEADLINE_MS / 1000), c)

    def test_the_deadline_restarts_after_each_response(self):
        """On a keep-alive connection each request has the whole deadline from the previous
        response, and a request sent in pieces within it is served."""
        c = self.conn()
        d = DEADLINE_MS / 1000
        for i in range(3):
            req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            c.send(req[:10])
            time.sleep(d * 0.3)
            c.send(req[10:])
            r = c.response()
            self.assertIsNotNone(r, "request %d on the connection got no answer" % i)
            self.assertEqual(r.status, 200, r)
            time.sleep(d * 0.4)     # 0.7 of the deadline per request; 2.1 of it in all

    def test_300_slow_clients_do_not_stall_a_normal_client(self):
        """300 connections from 127.0.0.3 trickle header bytes (each reopened when the edge closes
        it) while a normal client asks for products and health from 127.0.0.2, a new connection
        each time. The per-address cap is what protects it: 128 of the 300 hold a worker thread
        until the deadline cuts them, the rest are refused by civetweb's accepting thread, and
        the normal client, from another address, always finds a free worker."""
        refused0, timeouts0 = self.rejected("connections"), self.rejected("timeout")
        stop = threading.Event()
        held = []
        attacker = threading.Thread(target=self._attack, args=(300, "127.0.0.3", stop, held),
                                    daemon=True)
        attacker.start()
        self.addCleanup(attacker.join, 10)
        self.addCleanup(stop.set)
        time.sleep(0.5)             # let the attack take its threads first
        took = []
        t_end = time.monotonic() + 3 * DEADLINE_MS / 1000
        while time.monotonic() < t_end:
            for path in (P + "?limit=5", "/healthz"):
                t = time.monotonic()
                r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path,
                                  source="127.0.0.2")
                took.append(time.monotonic() - t)
                self.assertEqual(r.status, 200, r)
        stop.set()
        attacker.join(10)
        self.assertGreater(len(took), 10)
        self.assertLess(max(took), 1.0, "slowest of %d requests: %.2f s" % (len(took), max(took)))
        self.assertGreaterEqual(max(held), PER_CLIENT - 8,
                                "the attack never held its share of the workers: %s" % held[-5:])
        self.assertGreater(self.rejected("connections"), refused0)
        self.assertGreater(self.rejected("timeout"), timeouts0)

    def _attack(self, n, source, stop, held):
        """n sockets trickling a header, one byte each every 0.2 s; a closed one is reopened.
        Appends to held how many had been open over 0.5 s (so they were not refused) each round."""
        port = self.cluster.port
        sel = selectors.DefaultSelector()
        socks = {}

        def open_one():
            s = socket.socket()
            s.bind((source, 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks[s] = [time.monotonic(), 0]
            sel.register(s, selectors.EVENT_READ)

        try:
            for _ in range(n):
                open_one()
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    s = key.fileobj
                    try:
                        data = s.recv(4096)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if not data:            # refused (429) or cut at the deadline (408)
                        sel.unregister(s)
                        s.close()
                        del socks[s]
                now = time.monotonic()
                for s, st in list(socks.items()):
                    try:
                        s.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "[st[1]:st[1] + 1] if st[1] < 32
                               else b"a")
                        st[1] += 1
                    except (BlockingIOError, OSError):
                        pass
                held.append(sum(1 for st in socks.values() if now - st[0] > 0.5))
                while len(socks) < n and not stop.is_set():
                    open_one()
        finally:
            for s in list(socks):
                sel.unregister(s)
                s.close()
            sel.close()

    def test_connections_over_the_cap_are_refused_without_a_worker(self):
        """Every worker thread is taken by idle connections (128 from each of two addresses);
        one more from either address is still answered 429 at once, by the accepting thread,
        while one from a third address has to wait for a worker."""
        refused0 = self.rejected("connections")
        idle = [self.conn(src) for src in ("127.0.0.4", "127.0.0.5") for _ in range(PER_CLIENT)]
        t = time.monotonic()
        over = self.conn("127.0.0.4")
        r = over.response(timeout=1.0)
        took = time.monotonic() - t
        self.assertIsNotNone(r, "connection %d from one address was not refused" % (PER_CLIENT + 1))
        self.assertRawProblem(r, 429, "too_many_connections")
        self.assertEqual(r.header("Retry-After"), "1", r)
        self.assertLess(took, 0.5, "the refusal took %.2f s: it waited for a worker" % took)
        self.assertTrue(over.wait_closed(1.0), "the refused connection stays open")
        # the premise: no worker was free for the refusal to have come from
        third = self.conn("127.0.0.6")
        third.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(third.response(timeout=0.3), "a worker was free after all")
        # the deadline frees the idle ones, and the queued connection is served
        r = third.response(timeout=DEADLINE_MS / 1000 + 3)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        self.assertGreater(self.rejected("connections"), refused0)
        for c in idle:
            c.close()
        # closed connections no longer count: the address may connect again
        deadline = time.monotonic() + 5
        while True:
            again = self.exchange("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", source="127.0.0.4")
            if again.status == 200 or time.monotonic() > deadline:
                break
        self.assertEqual(again.status, 200, again)


class TestHttpAdditions(LimitsCase):
    def admin_line(self):
        h = self.cluster.admin_headers()
        return "Authorization: %s\r\n" % h["Authorization"] if h else ""

    # --- HEAD -------------------------------------------------------------------------------
    def get_paths(self):
        spec = requests.get(self.url("/api/v1/openapi.json"), timeout=10).json()
        paths = [re.sub(r"\{[^}]+\}", "01ARZ3NDEKTSV4RRFFQ69G5FAV", p)
                 for p, ops in spec["paths"].items() if "get" in ops]
        self.assertGreater(len(paths), 10, "too few GET routes in the OpenAPI document")
        return paths + ["/healthz", "/readyz", "/api/v1/openapi.json", "/docs",
                        "/.well-known/jwks.json", "/nope"]

    def test_head_on_every_get_route(self):
        auth = self.cluster.admin_headers()
        ignore = {"date", "x-request-id"}
        for path in self.get_paths():
            with self.subTest(path=path):
                g = requests.get(self.url(path), headers=auth, timeout=10)
                h = requests.head(self.url(path), headers=auth, timeout=10)
                self.assertEqual(h.status_code, g.status_code, "HEAD %s: %s" % (path, h.text[:300]))
                self.assertEqual(h.content, b"")
                self.assertEqual({k.lower(): v for k, v in h.headers.items() if k.lower() not in ignore},
                                 {k.lower(): v for k, v in g.headers.items() if k.lower() not in ignore})

    def test_keep_alive_goes_on_after_head(self):
        """A HEAD answer (success or problem) has a Content-Length and no body: the next
        response on the connection starts right after its headers."""
        c = self.conn()
        c.send(("HEAD %s HTTP/1.1\r\nHost: x\r\n\r\n"
                "HEAD /api/v1/nope HTTP/1.1\r\nHost: x\r\n\r\n"
                "HEAD /api/v1/auth/login HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" % P).encode())
        for status in (200, 404, 405):
            r = c.response(head=True)
            self.assertIsNotNone(r)
            self.assertEqual(r.status, status, r)
            self.assertGreater(int(r.header("Content-Length")), 0, r)
        r = c.response()
        self.assertIsNotNone(r, "the connection desynced after HEAD")
        self.assertEqual((r.status, r.body), (200, b'{"status":"up"}'), r)

    def test_head_is_in_allow(self):
        r = requests.options(self.url(P), timeout=10)
        allow = {m.strip() for m in r.headers.get("Allow", "").split(",")}
        self.assertLessEqual({"GET", "HEAD", "POST", "OPTIONS"}, allow, r.headers)

    # --- Date -------------------------------------------------------------------------------
    def test_date_on_every_response(self):
        admin = self.admin_line()
        cases = {
            200: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            204: "OPTIONS %s HTTP/1.1\r\nHost: x\r\n\r\n" % P,
            400: "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}" % P,
            401: "GET /api/v1/users/me HTTP/1.1\r\nHost: x\r\n\r\n",
            404: "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
            405: "DELETE %s HTTP/1.1\r\nHost: x\r\n\r\n" % P,
            413: "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
                 "Content-Length: 5000000\r\n\r\n" % (P, admin),
            415: "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n%sContent-Length: 2\r\n\r\n{}"
                 % (P, admin),
            422: "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s"
                 "Content-Length: 2\r\n\r\n{}" % (P, admin),
        }
        for status, raw in cases.items():
            with self.subTest(status=status):
                r = self.exchange(raw)
                self.assertEqual(r.status, status, r)
                self.assertDate(r)
        # civetweb's own refusal (an unparseable request line) goes through the edge too
        r = self.exchange(b"\x01\x02 nonsense\r\n\r\n")
        self.assertRawProblem(r, 400)

    # --- 431 --------------------------------------------------------------------------------
    def headers(self, n):
        return "".join("X-Filler-%02d: %d\r\n" % (i, i) for i in range(n))

    def test_63_headers_are_served_and_64_are_431(self):
        r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (P, self.headers(62)))
        self.assertEqual(r.status, 200, r)
        before = self.rejected("headers")
        r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (P, self.headers(63)))
        self.assertRawProblem(r, 431, "header_fields_too_large")
        self.assertGreater(self.rejected("headers"), before)

    def test_headers_past_64_are_not_silently_dropped(self):
        """civetweb keeps 64 fields; a bad token or a chunked body behind them must not slip by
        (the request would be served anonymously, or its body read as the next request)."""
        hidden = ("Authorization: Bearer not-a-token\r\n",
                  "Transfer-Encoding: chunked\r\n")
        for h in hidden:
            with self.subTest(header=h.split(":")[0]):
                c = self.conn()
                c.send(("GET %s HTTP/1.1\r\nHost: x\r\n%s%s\r\n" % (P, self.headers(70), h)).encode()
                       + b"5\r\nGET /\r\n0\r\n\r\n")
                r = c.response()
                self.assertRawProblem(r, 431)
                self.assertTrue(c.wait_closed(2), "the connection stays open after 431")

    def test_header_over_8_kib_is_431(self):
        r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (P, "b" * 8000))
        self.assertEqual(r.status, 200, r)
        r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (P, "b" * 8200))
        self.assertRawProblem(r, 431, "header_fields_too_large")

    def test_obsolete_line_folding_is_431(self):
        for raw in ("GET %s HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\nAuthorization: Bearer x\r\n\r\n" % P,
                    "GET %s HTTP/1.1\r\n Host: x\r\n\r\n" % P,
                    "GET %s HTTP/1.1\r\nHost: x\r\nX-Last: 1\r\n  folded\r\n\r\n" % P):
            with self.subTest(raw=raw):
                self.assertRawProblem(self.exchange(raw), 431, "header_fields_too_large")

    def test_a_header_line_civetweb_cannot_parse_is_400(self):
        """civetweb stops at a line that does not start like a field name and drops the rest."""
        r = self.exchange(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\xffbad: 1\r\nAuthorization: Bearer x\r\n\r\n")
        self.assertRawProblem(r, 400, "malformed_request")

    # --- 414 --------------------------------------------------------------------------------
    def test_target_over_8_kib_is_414(self):
        base = "/healthz?q="
        ok = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % (base + "a" * (8192 - len(base))))
        self.assertEqual(ok.status, 200, ok)
        before = self.rejected("target")
        for n in (8193, 40000):
            with self.subTest(length=n):
                r = self.exchange("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % (base + "a" * (n - len(base))))
                self.assertRawProblem(r, 414, "uri_too_long")
        r = self.exchange("GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % ("p" * 9000))
        self.assertRawProblem(r, 414, "uri_too_long")
        self.assertGreater(self.rejected("target"), before)

    # --- Host -------------------------------------------------------------------------------
    def test_http11_needs_one_host(self):
        self.assertRawProblem(self.exchange("GET /healthz HTTP/1.1\r\n\r\n"), 400, "malformed_request")
        self.assertRawProblem(self.exchange("GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        r = self.exchange("GET /healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(r.status, 200, r)

    # --- 501 --------------------------------------------------------------------------------
    def test_unknown_method_is_501(self):
        before = self.rejected("method")
        for method in ("FOO", "TRACE", "PROPFIND", "MKCOL", "BREW"):
            with self.subTest(method=method):
                r = self.exchange("%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method, P))
                self.assertRawProblem(r, 501, "not_implemented")
        self.assertGreater(self.rejected("method"), before)
        # a method the edge knows but the path does not allow stays 405
        self.assertRawProblem(self.exchange("DELETE %s HTTP/1.1\r\nHost: x\r\n\r\n" % P), 405)

    # --- Cache-Control ----------------------------------------------------------------------
    def test_token_answers_are_no_store(self):
        who = {"email": unique_email("nostore"), "password": strong_password(), "name": "No Store"}
        r = requests.post(self.url("/api/v1/auth/register"), json=who, timeout=20)
        self.assertEqual(r.status_code, 201, r.text)
        login = requests.post(self.url("/api/v1/auth/login"),
                              json={"email": who["email"], "password": who["password"]}, timeout=20)
        self.assertEqual(login.status_code, 200, login.text)
        self.assertEqual(login.headers.get("Cache-Control"), "no-store", dict(login.headers))
        refresh = requests.post(self.url("/api/v1/auth/refresh"),
                                json={"refresh_token": login.json()["refresh_token"]}, timeout=20)
        self.assertEqual(refresh.status_code, 200, refresh.text)
        self.assertIn("access_token", refresh.json())
        self.assertEqual(refresh.headers.get("Cache-Control"), "no-store", dict(refresh.headers))
        # an answer without a token keeps its ordinary caching
        me = requests.get(self.url("/api/v1/users/me"), timeout=10,
                          headers={"Authorization": "Bearer " + refresh.json()["access_token"]})
        self.assertEqual(me.status_code, 200, me.text)
        self.assertNotIn("no-store", me.headers.get("Cache-Control", ""))


if __name__ == "__main__":
    unittest.main()
