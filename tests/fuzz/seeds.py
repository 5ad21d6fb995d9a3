#!/usr/bin/python3
"""Writes the generated seed inputs of tests/fuzz/corpus/<target>/ (named seed-*): plausible
envelopes, replies, bodies for every message of schemas/*.json, tokens and header sets. Run it
again after a schema changes; inputs named otherwise (crash-*, regression inputs) are kept.
    /usr/bin/python3 tests/fuzz/seeds.py"""
import base64
import glob
import hashlib
import json
import os

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    digest = hashlib.sha1(data).hexdigest()[:10]
    with open(os.path.join(d, "seed-%s-%s" % (name, digest)), "wb") as f:
        f.write(data)


def clear(target):
    d = os.path.join(HERE, "corpus", target)
    for p in glob.glob(os.path.join(d, "seed-*")):
        os.remove(p)


def messages():
    """(index in mc_msgdefs, type, fields) in gen.py's order: files sorted, messages in order."""
    i = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "schemas", "*.json"))):
        if path.endswith("broker-protocol.json"):     # the protocol's model, not a service
            continue
        svc = json.load(open(path))
        for mname, msg in svc["messages"].items():
            yield i, mname, msg.get("fields", {})
            i += 1


def sample(f):
    t = f.get("type")
    fmt = f.get("format")
    if t == "integer":
        return max(f.get("min", 1), min(f.get("max", 5), 5))
    if t == "boolean":
        return True
    if t == "strings":
        return ["a1", "b2"]
    if t == "object":
        return {n: sample(s) for n, s in f.get("fields", {}).items()}
    if t == "objects":
        return [{n: sample(s) for n, s in f.get("fields", {}).items()}]
    if t == "any":
        return {"id": ULID, "n": 1, "ok": True, "list": [1, "x", None]}
    s = {"sku": "SKU-1", "currency": "EUR", "url": "https://example.com/a.png",
         "email": "ann@example.com", "country": "DE"}.get(fmt, "value")
    lo = f.get("min", 0)
    return s if len(s) >= lo else s + "x" * (lo - len(s))


def envelope(mtype, body, **extra):
    env = {"v": 1, "id": ULID, "type": mtype, "key": "k1", "corr": "req-1", "reply": "edge/1",
           "deadline": 1800000002000, "user": "01ARZ3NDEKTSV4RRFFQ69G5FAW", "role": "customer",
           "trace": "", "time": 1800000000000, "body": body}
    env.update(extra)
    return msgpack.packb(env, use_bin_type=True)


def main():
    for t in ("fuzz_msgpack", "fuzz_envelope", "fuzz_json_schema", "fuzz_token", "fuzz_framing", "fuzz_broker",
              "fuzz_gather"):
        clear(t)

    # gathered pages: keyed pages of a few shards, each spec (first byte)
    def b64(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def page(keys, more):
        return msgpack.packb({"items": [{"k": k, "count": i + 1} for i, k in enumerate(keys)],
                              "keys": [b64(k.encode()) for k in keys],
                              "next_cursor": b64(keys[-1].encode()) if more and keys else None})
    shards = [page(["a1", "c3", "e5"], True), page(["b2", "d4"], False), page(["a1", "f6"], True), page([], False)]
    for how in (0x00, 0x01, 0x06, 0x28, 0x59, 0x38, 0x2a):
        write("fuzz_gather", "pages-%02x" % how, bytes([how]) + b"".join(len(p).to_bytes(2, "big") + p for p in shards))
    bad = msgpack.packb({"items": [{}], "next_cursor": None})
    write("fuzz_gather", "not-keyed", b"\x20" + len(bad).to_bytes(2, "big") + bad)

    # msgpack: every wire type once, and nesting
    objs = [None, True, False, 0, 127, 128, 65535, 2**32, 2**63, -1, -33, -2**31, -2**63, 1.5,
            "", "a" * 31, "b" * 200, "c" * 5000, b"\x00\x01", [1, [2, [3, []]]], {"a": {"b": {}}},
            {1: "int key", "s": [None] * 20}]
    for n, o in enumerate(objs):
        write("fuzz_msgpack", "type%d" % n, msgpack.packb(o, use_bin_type=True))
    write("fuzz_msgpack", "float32", b"\xca\x3f\xc0\x00\x00")
    write("fuzz_msgpack", "deep", b"\x91" * 32 + b"\x01")

    # envelopes: a request for every message, replies of each kind, fields at their limits
    for i, mtype, fields in messages():
        body = {n: sample(f) for n, f in fields.items()}
        env = envelope(mtype, body)
        write("fuzz_envelope", mtype, env)
        write("fuzz_msgpack", mtype, env)
        write("fuzz_json_schema", mtype, bytes([i]) + json.dumps(body).encode())
    limits = {"id": 64, "type": 64, "key": 128, "corr": 128, "cause": 64, "reply": 64, "user": 64,
              "role": 16, "trace": 55, "if_match": 128, "idem": 255}
    for field, n in limits.items():
        write("fuzz_envelope", "max-" + field, envelope("address.create", {}, **{field: "x" * n}))
        write("fuzz_envelope", "over-" + field, envelope("address.create", {}, **{field: "x" * (n + 1)}))
    write("fuzz_envelope", "nul-user", envelope("address.list", {}, user="u1\x00u2"))
    write("fuzz_envelope", "user-300", envelope("address.list", {}, user="u" * 300))
    write("fuzz_envelope", "reply-ok", msgpack.packb(
        {"v": 1, "id": ULID, "status": 200, "etag": '"3"', "body": {"id": ULID, "name": "x"}}))
    write("fuzz_envelope", "reply-err", msgpack.packb(
        {"v": 1, "id": ULID, "status": 422, "error": {"code": "invalid", "detail": "d",
         "errors": [{"field": "a", "message": "b"}], "retry_after": 3, "members": {"payment_id": ULID}}}))
    write("fuzz_envelope", "reply-replayed", msgpack.packb(
        {"v": 1, "id": ULID, "status": 201, "replayed": True, "body": None}))

    # JSON bodies: odd but valid shapes
    for n, text in enumerate(['{}', '{"a":[1,2.5e3,-0.0,true,false,null,"\\u0000\\ud83d\\ude00"]}',
                              '{"items":[{"product_id":"p","quantity":1e400}]}', '[1]', '"s"',
                              '{"a":' * 33 + '1' + '}' * 33, '{"a":1,"a":2}', '{"n":9223372036854775808}']):
        write("fuzz_json_schema", "shape%d" % n, bytes([n]) + text.encode())

    # tokens: 0 raw header, 1 header and claims signed by the target, 2 a key table
    good_head = '{"alg":"RS256","typ":"JWT","kid":"fuzz"}'
    claims = {"iss": "mercato", "sub": ULID, "role": "customer", "iat": 1700000000, "exp": 4102444800,
              "jti": ULID}
    write("fuzz_token", "signed-good", b"\x01" + (good_head + "\n" + json.dumps(claims)).encode())
    for name, change in (("admin", {"role": "admin"}), ("expired", {"exp": 1700000100}),
                         ("future", {"iat": 4102444000}), ("nbf", {"nbf": 4102444000}),
                         ("issuer", {"iss": "other"}), ("role", {"role": "root"}), ("sub", {"sub": ""}),
                         ("longsub", {"sub": "s" * 64})):
        c = dict(claims, **change)
        write("fuzz_token", "signed-" + name, b"\x01" + (good_head + "\n" + json.dumps(c)).encode())
    for name, head in (("none", '{"alg":"none","kid":"fuzz"}'), ("hs256", '{"alg":"HS256","kid":"fuzz"}'),
                       ("crit", '{"alg":"RS256","kid":"fuzz","crit":["x"]}'),
                       ("unknown-kid", '{"alg":"RS256","kid":"other"}')):
        write("fuzz_token", "signed-" + name, b"\x01" + (head + "\n" + json.dumps(claims)).encode())
    write("fuzz_token", "raw-bearer", b"\x00Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImZ1enoifQ.eyJzdWIiOiJ4In0.c2ln")
    write("fuzz_token", "raw-basic", b"\x00Basic dXNlcjpwYXNz")
    write("fuzz_token", "raw-dots", b"\x00Bearer a.b.c.d")
    write("fuzz_token", "table", b"\x02" + msgpack.packb(
        {"keys": [{"kid": "k1", "kty": "RSA", "n": "A" * 342, "e": "AQAB"}, {"kid": "k2", "n": 5}]}))

    # header sets as civetweb hands them over
    for n, text in enumerate([
            "Host: a\nContent-Length: 10\nContent-Type: application/json",
            "Host: a\nTransfer-Encoding: chunked\nContent-Type: application/merge-patch+json; charset=utf-8",
            "Content-Length: 5\nContent-Length: 5", "Content-Length: 5\nTransfer-Encoding: chunked",
            "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: chunked\ntransfer-encoding: chunked",
            "Content-Length: +5", "Content-Length: 0", "Content-Length: 1234567890123456789",
            "Content-Length:", "content-length: 007\nContent-Type: Application/JSON;x=y", "Host: a"]):
        write("fuzz_framing", "headers%d" % n, text)
    for n, text in enumerate([
            "GET /api/v1/products?limit=5 HTTP/1.1\nHost: a", "HEAD / HTTP/1.1\nHost: a\nHost: b",
            "BREW /pot HTTP/1.1\nHost: a", "GET / HTTP/1.0", "GET / HTTP/1.1",
            "GET /" + "a" * 8200 + " HTTP/1.1\nHost: a", "POST /x HTTP/1.1\nHost: a\nX: " + "v" * 8200,
            "GET / HTTP/1.1\n" + "".join("H%d: v\n" % i for i in range(64))]):
        write("fuzz_framing", "request%d" % n, text)

    # broker protocol messages: a routed flag, then frames (length, bytes)
    env = envelope("product.get", {})
    rid = b"\x00\x01rid-1"
    msgs = {
        "client-request": [b"MCC1", b"\x01", b"catalog.0", rid, env],
        "client-reply": [b"MCC1", b"\x02", b"catalog.0", rid, env],
        "client-unavailable": [b"MCC1", b"\x03", b"catalog.0", rid, b"no live worker"],
        "mmi": [b"MCC1", b"\x01", b"mmi.service", rid, b"catalog.0"],
        "worker-ready": [b"MCW2", b"\x01", b"catalog.0", b"n1-node"],
        "worker-request": [b"MCW2", b"\x02", b"\x00\x6b\x8b\x45\x67", rid, b"edge-1", b"edge", env],
        "worker-request-node": [b"MCW2", b"\x02", b"\x00\x6b\x8b\x45\x67", rid, b"", b"node", b""],
        "worker-reply": [b"MCW2", b"\x03", b"\x00\x6b\x8b\x45\x67", rid, env],
        "heartbeat": [b"MCW2", b"\x04"], "disconnect": [b"MCW2", b"\x05"],
        "old-worker": [b"MCW1", b"\x01", b"catalog.0", b"n1"], "ready-nul": [b"MCW2", b"\x01", b"cat\x00alog", b"n1"]}
    for name, frames in msgs.items():
        for routed in (0, 1):
            fs = ([b"\x00\x6b\x8b\x45\x68"] if routed else []) + frames
            out = bytes([routed])
            for f in fs:
                out += bytes([len(f)]) + f if len(f) < 255 else b"\xff" + len(f).to_bytes(2, "big") + f
            write("fuzz_broker", "%s-%s" % (name, "routed" if routed else "dealer"), out)


if __name__ == "__main__":
    main()
