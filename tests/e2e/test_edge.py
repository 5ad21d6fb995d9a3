"""CONTRACT 2 (HTTP conventions) at the edge: problems, limits, framing, ids, ops endpoints."""

import json
import os
import re
import socket
import threading
import time
import sys
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import ClusterTestCase

MIB = 1024 * 1024
P = "/api/v1/products"


def product(**over):
    body = {"sku": "SKU-" + uuid.uuid4().hex[:12], "name": "Edge test", "description": "edge",
            "category": "edge-tests", "price_cents": 100}
    body.update(over)
    return body


class RawResponse:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        return vals[0] if vals else None

    def __repr__(self):
        return "<%d %s %r>" % (self.status, self.headers, self.body[:200])


def parse_responses(data):
    """Split a byte stream into HTTP/1.1 responses (Content-Length or chunked bodies)."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise AssertionError("not an HTTP response: %r" % data[:200])
        headers = [tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:] if ":" in line]
        hd = {k.lower(): v for k, v in headers}
        if "content-length" in hd:
            n = int(hd["content-length"])
            body, data = rest[:n], rest[n:]
        elif hd.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size_line, _, rest = rest.partition(b"\r\n")
                size = int(size_line.split(b";")[0] or b"0", 16)
                if size == 0:
                    _, _, rest = rest.partition(b"\r\n")
                    break
                body, rest = body + rest[:size], rest[size + 2:]
            data = rest
        else:
            body, data = rest, b""
        out.append(RawResponse(int(m.group(1)), headers, body))
    return out


class RawClient:
    """A bare TCP connection, for requests no HTTP library would send."""

    def __init__(self, port, timeout=3.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False     # the server may close early (e.g. after a 413)

    def read(self, idle=1.0, total=5.0, want=None):
        """Read until the peer closes, nothing arrives for `idle` s, or `want` responses parsed."""
        data, deadline = b"", time.monotonic() + total
        self.sock.settimeout(idle)
        closed = False
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
            if want is not None and len(parse_responses(data)) >= want:
                break
        return parse_responses(data), closed

    def close(self):
        self.sock.close()


class EdgeCase(ClusterTestCase):
    def raw(self):
        c = RawClient(self.cluster.port)
        self.addCleanup(c.close)
        return c

    def raw_request(self, head, body=b"", idle=1.0):
        c = self.raw()
        c.send(head.encode("latin-1") + body)
        return c.read(idle=idle)

    def admin(self):
        """CONTRACT 4: catalog writes are admin-only."""
        return self.cluster.admin_headers()

    def admin_line(self):
        """The admin's Authorization as a raw header line (or nothing without a token)."""
        h = self.admin()
        return "Authorization: %s\r\n" % h["Authorization"] if h else ""

    def assertAlive(self):
        r = self.get("/healthz")
        self.assertStatus(r, 200, "edge still serving")


class TestProblems(EdgeCase):
    def test_malformed_json_is_400(self):
        for raw in (b'{"sku": ', b"not json", b'{"a":1}}', b"\xff\xfe{}"):
            with self.subTest(body=raw):
                r = self.http.post(self.url(P), data=raw, timeout=10,
                                   headers={"Content-Type": "application/json", **self.admin()})
                self.assertProblem(r, 400)

    def test_wrong_method_is_405(self):
        for method, path in (("PUT", P), ("DELETE", P), ("POST", P + "/abc"),
                             ("PUT", "/api/v1/categories")):
            with self.subTest(method=method, path=path):
                r = self.http.request(method, self.url(path), data=json.dumps({}), timeout=10,
                                      headers={"Content-Type": "application/json"})
                self.assertProblem(r, 405)

    def test_405_lists_allowed_methods(self):
        r = self.http.put(self.url(P), json={}, timeout=10)
        self.assertProblem(r, 405)
        allow = {m.strip().upper() for m in r.headers.get("Allow", "").split(",")}
        self.assertLessEqual({"GET", "POST"}, allow, "RFC 9110: 405 carries Allow; got %r" %
                             r.headers.get("Allow"))

    def test_unknown_path_is_404(self):
        for path in ("/api/v1/nope", "/api/v2/products", "/nope", "/api/v1/products/a/b"):
            with self.subTest(path=path):
                self.assertProblem(self.get(path), 404)

    def test_non_json_content_type_is_415(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            with self.subTest(content_type=ctype):
                r = self.http.post(self.url(P), data=json.dumps(product()), timeout=10,
                                   headers={"Content-Type": ctype, **self.admin()})
                self.assertProblem(r, 415)

    def test_json_with_charset_is_accepted(self):
        r = self.http.post(self.url(P), data=json.dumps(product()).encode(), timeout=10,
                           headers={"Content-Type": "application/json; charset=utf-8",
                                    **self.admin()})
        self.assertStatus(r, 201)

    def test_deep_nesting_is_rejected_not_500(self):
        for depth, opener, closer in ((100, '{"a":', "}"), (100, "[", "]"),
                                      (400000, "[", "]")):
            with self.subTest(depth=depth, kind=opener):
                nested = opener * depth + "1" + closer * depth
                body = json.dumps(product())[:-1] + ', "description": ' + nested + "}"
                r = self.http.post(self.url(P), data=body, timeout=10,
                                   headers={"Content-Type": "application/json", **self.admin()})
                self.assertIn(r.status_code, (400, 422), r.text[:300])
                self.assertProblem(r, r.status_code)
        self.assertAlive()

    def test_body_not_an_object(self):
        for body in ("[]", "42", '"str"', "null"):
            with self.subTest(body=body):
                r = self.http.post(self.url(P), data=body, timeout=10,
                                   headers={"Content-Type": "application/json", **self.admin()})
                self.assertIn(r.status_code, (400, 422), r.text[:300])
                self.assertProblem(r, r.status_code)


    def test_post_without_length_has_no_body(self):
        """RFC 9112 6.3: no Content-Length and no Transfer-Encoding means no body (curl -X POST):
        the route sees an empty body, not a media-type error, and the connection goes on."""
        c = self.raw()
        c.send(("POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (P, self.admin_line())).encode()
               + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        (first, second), _ = c.read(want=2)
        self.assertEqual(first.status, 422, first)          # the product's fields are missing
        self.assertIn(b"validation_failed", first.body)
        self.assertEqual(second.status, 200, second)

    def test_chunked_body_on_a_bodiless_route_is_refused(self):
        c = self.raw()
        c.send(b"GET /api/v1/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\n{}\r\n0\r\n\r\n")
        responses, _ = c.read(want=1)
        self.assertEqual(responses[0].status, 400, responses)
        self.assertIn(b"unexpected_body", responses[0].body)
        self.assertAlive()

    def test_oversized_query_is_refused_not_truncated(self):
        r = self.get(P + "?q=" + "a" * 5000)
        self.assertProblem(r, 422)
        r = self.get(P + "?" + "&".join("q=%d" % i for i in range(40)))
        self.assertProblem(r, 422)


class TestBodyLimit(EdgeCase):
    def test_body_over_1_mib_is_413(self):
        body = json.dumps(product(description="x" * MIB)).encode()
        self.assertGreater(len(body), MIB)
        c = self.raw()
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "%sContent-Length: %d\r\n\r\n" % (P, self.admin_line(), len(body))).encode()
        sender = threading.Thread(target=c.send, args=(head + body,), daemon=True)
        sender.start()
        resps, _ = c.read(idle=3.0, want=1)
        sender.join(5)
        self.assertTrue(resps, "no response to an oversized body")
        self.assertEqual(resps[0].status, 413, resps[0])
        self.assertTrue((resps[0].header("Content-Type") or "").startswith(
            "application/problem+json"), resps[0])
        self.assertAlive()

    def test_exactly_1_mib_is_accepted(self):
        compact = json.dumps(product())
        body = compact[:-1] + " " * (MIB - len(compact.encode())) + "}"   # whitespace padding
        self.assertEqual(len(body.encode()), MIB)
        r = self.http.post(self.url(P), data=body, timeout=10,
                           headers={"Content-Type": "application/json", **self.admin()})
        self.assertStatus(r, 201, "a body of exactly 1 MiB is within the limit")

    def test_declared_5_mib_is_refused_promptly_without_reading(self):
        c = self.raw()
        t0 = time.monotonic()
        c.send(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                "%sContent-Length: %d\r\n\r\n{\"sku\":" % (P, self.admin_line(), 5 * MIB)).encode())
        resps, _ = c.read(idle=2.0, total=3.0, want=1)
        elapsed = time.monotonic() - t0
        self.assertTrue(resps, "no response within %.1fs: the edge waits for the 5 MiB body"
                        % elapsed)
        self.assertEqual(resps[0].status, 413, resps[0])
        self.assertLess(elapsed, 2.0)
        self.assertAlive()


class TestFraming(EdgeCase):
    """Request smuggling: ambiguous framing is 400 and the connection never desyncs."""

    SMUGGLED = "GET /api/v1/smuggled-%s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

    def assertRejectedWithoutDesync(self, head, body):
        tag = uuid.uuid4().hex[:8]
        resps, _ = self.raw_request(head, (body + self.SMUGGLED % tag).encode(), idle=1.5)
        self.assertTrue(resps, "no response")
        self.assertEqual(resps[0].status, 400, resps)
        # Whatever followed the ambiguous request must not be served as a request of its own.
        self.assertEqual(len(resps), 1, "the connection desynced: %s" % resps)
        self.assertAlive()

    def test_baseline_pipelining_works(self):
        # Proves the raw client sees two responses when two requests are really sent.
        req = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        resps, _ = self.raw_request(req + req)
        self.assertEqual([r.status for r in resps], [200, 200], resps)

    def test_transfer_encoding_with_content_length_is_400(self):
        body = "0\r\n\r\n"
        self.assertRejectedWithoutDesync(
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % (P, len(body)), body)

    def test_two_content_lengths_are_400(self):
        body = "{}"
        self.assertRejectedWithoutDesync(
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 2\r\nContent-Length: 40\r\n\r\n" % P, body)

    def test_non_numeric_content_length_is_400(self):
        for cl in ("abc", "-1", "2x", "0x2"):
            with self.subTest(content_length=cl):
                self.assertRejectedWithoutDesync(
                    "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    "Content-Length: %s\r\n\r\n" % (P, cl), "{}")


class TestRequestIds(EdgeCase):
    def test_every_response_has_a_request_id(self):
        rs = [self.get("/healthz"), self.get(P), self.get("/nope"),
              self.http.put(self.url(P), json={}, timeout=10),
              self.http.post(self.url(P), data="{", timeout=10,
                             headers={"Content-Type": "application/json"})]
        ids = []
        for r in rs:
            with self.subTest(status=r.status_code, url=r.url):
                self.assertTrue(r.headers.get("X-Request-Id"), dict(r.headers))
                ids.append(r.headers.get("X-Request-Id"))
        self.assertEqual(len(set(ids)), len(ids), "request ids repeat: %s" % ids)

    def test_sane_request_id_is_echoed(self):
        rid = "e2e-" + uuid.uuid4().hex
        for r in (self.get(P, headers={"X-Request-Id": rid}),
                  self.get("/nope", headers={"X-Request-Id": rid})):
            self.assertEqual(r.headers.get("X-Request-Id"), rid)

    def test_insane_request_id_is_replaced(self):
        for bad in ("x" * 4096, "a b c", "<script>", "\"quoted\""):
            with self.subTest(bad=bad[:20]):
                r = self.get(P, headers={"X-Request-Id": bad})
                self.assertStatus(r, 200)
                got = r.headers.get("X-Request-Id")
                self.assertTrue(got)
                self.assertNotEqual(got, bad)
                self.assertLessEqual(len(got), 200)

    def test_413_carries_request_id(self):
        resps, _ = self.raw_request(
            "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n{" % (P, 5 * MIB))
        self.assertTrue(resps)
        self.assertTrue(resps[0].header("X-Request-Id"), resps[0])

    def test_traceparent_accepted(self):
        tp = "00-%s-%s-01" % (uuid.uuid4().hex, uuid.uuid4().hex[:16])
        r = self.http.post(self.url(P), data=json.dumps(product()), timeout=10,
                           headers={"Content-Type": "application/json", "traceparent": tp,
                                    **self.admin()})
        self.assertStatus(r, 201)
        self.assertStatus(self.get(P, headers={"traceparent": tp}), 200)
        # A malformed traceparent is ignored, never an error.
        self.assertStatus(self.get(P, headers={"traceparent": "garbage"}), 200)


class TestCors(EdgeCase):
    def test_options_does_not_allow_any_origin(self):
        evil = "https://evil.example"
        r = self.http.options(self.url(P), timeout=10, headers={
            "Origin": evil, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        self.assertLess(r.status_code, 500, r.text[:300])
        self.assertNotIn(r.headers.get("Access-Control-Allow-Origin"), ("*", evil),
                         dict(r.headers))
        g = self.get(P, headers={"Origin": evil})
        self.assertNotIn(g.headers.get("Access-Control-Allow-Origin"), ("*", evil),
                         dict(g.headers))


class TestOps(EdgeCase):
    def test_healthz_and_readyz(self):
        self.assertStatus(self.get("/healthz"), 200)
        self.assertStatus(self.get("/readyz"), 200)

    SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})? '
                        r"(-?[0-9.]+(?:[eE][-+]?[0-9]+)?|[+-]Inf|NaN)( -?[0-9]+)?$")

    def scrape(self):
        r = self.get("/metrics")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/plain"),
                        r.headers.get("Content-Type"))
        counters, samples = set(), []
        for line in r.text.splitlines():
            if not line.strip():
                continue
            if line.startswith("#"):
                m = re.match(r"# TYPE (\S+) counter\s*$", line)
                if m:
                    counters.add(m.group(1))
                continue
            m = self.SAMPLE.match(line)
            self.assertTrue(m, "not Prometheus text format: %r" % line)
            samples.append((m.group(1), float(m.group(3))))
        return counters, samples

    def request_count(self):
        counters, samples = self.scrape()
        names = {c for c in counters if "request" in c}
        self.assertTrue(names, "no request counter among %s" % sorted(counters))
        total = sum(v for n, v in samples if n in names or
                    (n.endswith("_total") and n[:-6] in names))
        return total

    def test_metrics_count_requests(self):
        before = self.request_count()
        for _ in range(5):
            self.get(P)
        self.assertGreaterEqual(self.request_count() - before, 5)

    def test_openapi(self):
        r = self.get("/api/v1/openapi.json")
        self.assertStatus(r, 200)
        self.assertIn("json", r.headers.get("Content-Type", ""))
        doc = r.json()
        self.assertTrue(str(doc.get("openapi", "")).startswith("3.1"), doc.get("openapi"))
        prefix = ""
        servers = doc.get("servers") or []
        if servers and servers[0].get("url", "").rstrip("/").endswith("/api/v1"):
            prefix = "/api/v1"
        paths = {(k if k.startswith("/api/v1") else prefix + k): v
                 for k, v in doc.get("paths", {}).items()}
        self.assertLessEqual({"get", "post"}, set(paths.get("/api/v1/products", {})), paths.keys())
        item = [v for k, v in paths.items() if re.fullmatch(r"/api/v1/products/\{[^}/]+\}", k)]
        self.assertTrue(item, "no /api/v1/products/{id} in %s" % sorted(paths))
        self.assertLessEqual({"get", "patch", "delete"}, set(item[0]))
        self.assertIn("get", paths.get("/api/v1/categories", {}), sorted(paths))

    def test_docs_page_without_cdn(self):
        r = self.get("/docs")
        self.assertStatus(r, 200)
        self.assertTrue(r.headers.get("Content-Type", "").startswith("text/html"),
                        r.headers.get("Content-Type"))
        self.assertIn("<html", r.text.lower())
        external = re.findall(r"""<(?:script|img|link|iframe)\b[^>]*?\b(?:src|href)\s*=\s*["']?"""
                              r"""((?:https?:)?//[^"'\s>]+)""", r.text, re.I)
        external = [u for u in external if "127.0.0.1" not in u and "localhost" not in u]
        self.assertEqual(external, [], "docs load assets from elsewhere (no CDN allowed)")


class TestShutdown(EdgeCase):
    def test_sigterm_while_the_key_refresher_waits_exits_cleanly(self):
        # Without the identity service the edge has no keys and its refresher asks every 200 ms.
        # The edge must end that thread, and close its socket, before the client and ZeroMQ's
        # context go: czmq closed a socket left open from under the thread still using it (an
        # abort in the sanitizer build), and says so on stderr ("dangling ... socket").
        self.cluster.kill("node")
        edge = self.cluster.procs["edge"]
        edge.stop()
        for _ in range(3):
            self.cluster.start("edge")
            time.sleep(0.3)     # a refresh or two: the thread has its socket
            self.assertEqual(edge.stop(), 0, "edge exit code on SIGTERM\n" + edge.tails())
            with open(edge.err_path, errors="replace") as f:
                self.assertNotIn("dangling", f.read(), edge.tails())
        self.cluster.start("node")
        self.cluster.start("edge")
        self.cluster.wait_ready()


if __name__ == "__main__":
    unittest.main()
