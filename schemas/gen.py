#!/usr/bin/env python3
"""Generates the message tables, the HTTP route table and the OpenAPI document from
schemas/<service>.json, so that each message is defined once (see schemas/README.md).

usage: gen.py OUT_C OUT_OPENAPI SCHEMA.json...
"""
import json
import sys

FTYPES = {"string": "MC_FT_STRING", "integer": "MC_FT_INTEGER", "boolean": "MC_FT_BOOLEAN",
          "strings": "MC_FT_STRINGS"}
FORMATS = {None: "MC_FMT_NONE", "sku": "MC_FMT_SKU", "currency": "MC_FMT_CURRENCY", "url": "MC_FMT_URL",
           "email": "MC_FMT_EMAIL", "country": "MC_FMT_COUNTRY"}
FLOWS = {None: "MC_FLOW_NONE", "register": "MC_FLOW_REGISTER", "login": "MC_FLOW_LOGIN",
         "password": "MC_FLOW_PASSWORD", "refresh": "MC_FLOW_REFRESH", "logout": "MC_FLOW_LOGOUT",
         "card": "MC_FLOW_CARD"}
ACCESS = {"public": "MC_ACCESS_PUBLIC", "customer": "MC_ACCESS_CUSTOMER", "owner": "MC_ACCESS_OWNER",
          "admin": "MC_ACCESS_ADMIN"}
#  How a list route's pages from every shard merge into one (see edge/edge_gather.h)
GATHER = {None: "MC_GATHER_NONE", "asc": "MC_GATHER_ASC", "desc": "MC_GATHER_DESC"}
#  The internal body member by which the edge asks a shard for each item's sort key
GATHER_FIELD = "gather"
GATHER_DOC = {
    False: "Complete whatever the number of shards: the edge asks every shard of the service at once and "
           "merges their pages. next_cursor is null on the last page, else the sort key of the page's "
           "last item (pass it as cursor for the items after it), so a cursor means the same on every "
           "shard and node. A shard that does not answer makes the answer 503 with Retry-After, never a "
           "shorter list.",
    True: "Complete whatever the number of shards: the edge asks every shard of the service at once and "
          "adds up what they hold. A shard that does not answer makes the answer 503 with Retry-After, "
          "never a shorter list."}
KEYS = {None: "MC_KEY_NONE", "path": "MC_KEY_PATH", "new": "MC_KEY_NEW", "user": "MC_KEY_USER", "field": "MC_KEY_FIELD"}
INT64_MAX = 2**63 - 1

ERRORS = {400: "malformed request", 401: "missing, invalid or expired token", 403: "role not allowed",
          402: "payment declined (code card_declined or insufficient_funds, with payment_id)",
          404: "not found", 405: "method not allowed", 409: "conflict",
          412: "precondition failed", 413: "body too large", 415: "unsupported media type",
          422: "validation failed", 429: "rate limited", 503: "service unavailable",
          504: "actor did not answer in time"}


def c_str(s):
    return "NULL" if s is None else json.dumps(s)


def ident(*parts):
    return "_".join(p.replace(".", "_").replace("-", "_") for p in parts)


FTYPES.update({"object": "MC_FT_OBJECT", "objects": "MC_FT_OBJECTS", "any": "MC_FT_ANY"})


def field_tables(prefix, fields, lines):
    """Emits the field table for fields (nested tables first) and returns its name."""
    subs = {}
    for n, f in fields.items():
        if f["type"] in ("object", "objects"):
            subs[n] = field_tables(f"{prefix}_{ident(n)}", f["fields"], lines)
    lines.append(f"static const mc_field_t {prefix}[] = {{")
    lines += [field_c(n, f, subs.get(n)) for n, f in fields.items()] or ["    { 0 }"]
    lines.append("};")
    return prefix


def field_c(name, f, sub):
    lo = f.get("min", 0 if f["type"] != "integer" else -INT64_MAX - 1)
    hi = f.get("max", 0 if f["type"] != "integer" else INT64_MAX)
    lo_c = "INT64_MIN" if lo == -INT64_MAX - 1 else f"{lo}LL"
    parts = [f".name = {c_str(name)}", f".type = {FTYPES[f['type']]}", f".required = {c_bool(f.get('required'))}",
             f".readonly = {c_bool(f.get('readonly'))}", f".nullable = {c_bool(f.get('nullable'))}",
             f".min = {lo_c}", f".max = {hi}LL", f".min_items = {f.get('min_items', 0)}LL",
             f".max_items = {f.get('max_items', 0)}LL", f".defval = {f.get('default', 0)}LL",
             f".has_default = {c_bool('default' in f)}", f".format = {FORMATS[f.get('format')]}",
             f".internal = {c_bool(f.get('internal'))}", f".http_only = {c_bool(f.get('http_only'))}"]
    if sub:
        parts += [f".sub = {sub}", f".nsub = {len(f['fields'])}"]
    return "    { " + ", ".join(parts) + " },"


def c_bool(v):
    return "true" if v else "false"


def json_schema(f, types):
    t = f["type"]
    if t == "strings":
        s = {"type": "array", "items": {"type": "string"}}
        if "max_items" in f:
            s["maxItems"] = f["max_items"]
    elif t == "array":
        s = {"type": "array", "items": {"$ref": f"#/components/schemas/{f['of']}"}}
    elif t == "object":
        s = object_schema(f["fields"], types)
    elif t == "objects":
        s = {"type": "array", "items": object_schema(f["fields"], types)}
        if "min_items" in f:
            s["minItems"] = f["min_items"]
        if "max_items" in f:
            s["maxItems"] = f["max_items"]
    elif t == "any":
        s = {}
    else:
        s = {"type": t}
    if t == "string":
        if "min" in f:
            s["minLength"] = f["min"]
        if f.get("max"):
            s["maxLength"] = f["max"]
        if f.get("format") == "currency":
            s["pattern"] = "^[A-Z]{3}$"
        elif f.get("format") == "sku":
            s["pattern"] = "^[A-Za-z0-9._-]+$"
        elif f.get("format") == "country":
            s["pattern"] = "^[A-Z]{2}$"
        elif f.get("format"):
            s["format"] = f["format"]
    if t == "integer":
        if "min" in f:
            s["minimum"] = f["min"]
        if "max" in f:
            s["maximum"] = f["max"]
        if "default" in f:
            s["default"] = f["default"]
    if f.get("readonly"):
        s["readOnly"] = True
    if f.get("nullable"):
        s = {"oneOf": [s, {"type": "null"}]}
    if f.get("description"):
        s["description"] = f["description"]
    return s


def object_schema(fields, types, required_ok=True):
    fields = {n: f for n, f in fields.items() if not f.get("internal")}
    props = {n: json_schema(f, types) for n, f in fields.items()}
    req = [n for n, f in fields.items() if f.get("required")] if required_ok else []
    s = {"type": "object", "properties": props, "additionalProperties": False}
    if req:
        s["required"] = req
    return s


def problem_ref(status):
    return {"description": ERRORS[status],
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def openapi(services):
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "Mercato", "version": "1.0.0",
                 "description": "Mercato e-commerce backend. Errors are RFC 9457 problem documents. "
                                "Every GET operation also answers HEAD (RFC 9110 9.3.2): the same "
                                "status and headers, no body."},
        "servers": [{"url": "/"}],
        "paths": {},
        "components": {"schemas": {
            "Problem": {"type": "object", "required": ["type", "title", "status", "code"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}, "instance": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object", "properties": {
                    "field": {"type": "string"}, "message": {"type": "string"}}}},
                "payment_id": {"type": "string", "description": "402 declines: the declined payment, listed with "
                                                                "the order's payments (also given as id)"}}},
        }},
    }
    schemas = doc["components"]["schemas"]
    for svc in services:
        for tname, fields in svc.get("types", {}).items():
            schemas[tname] = object_schema(fields, svc["types"], required_ok=False)
            schemas[tname]["required"] = [n for n, f in fields.items() if not f.get("nullable")]
        for route in svc["routes"]:
            msg = svc["messages"][route["message"]]
            op = {"operationId": ident(svc["service"], route["message"]),
                  "summary": msg.get("summary", route["message"]),
                  "tags": [svc["service"]], "parameters": [], "responses": {}}
            for part in route["path"].split("/"):
                if part.startswith("{"):
                    op["parameters"].append({"name": part[1:-1], "in": "path", "required": True,
                                             "schema": {"type": "string"}})
            if route.get("gather"):
                op["description"] = GATHER_DOC[bool(route.get("response", "").endswith("[]"))]
            if route["access"] != "public":
                op["security"] = [{"bearerAuth": []}]
            if route.get("query"):
                for n, f in msg["fields"].items():
                    if f.get("internal"):
                        continue
                    op["parameters"].append({"name": n, "in": "query", "required": False,
                                             "schema": json_schema(f, svc["types"])})
            if route.get("idempotent"):
                op["parameters"].append({"name": "Idempotency-Key", "in": "header", "required": False,
                                         "description": "1 to 255 printable ASCII characters; the same key with the same body "
                                                        "within 24 h replays the first answer (Idempotent-Replayed: true)",
                                         "schema": {"type": "string", "maxLength": 255}})
            if route.get("etag") and route["method"] in ("PATCH", "PUT"):
                op["parameters"].append({"name": "If-Match", "in": "header", "required": False,
                                         "schema": {"type": "string"}})
            if route["method"] in ("POST", "PUT", "PATCH") and any(
                    not f.get("internal") for f in msg["fields"].values()):
                media = ["application/json"] + (["application/merge-patch+json"] if route.get("merge_patch") else [])
                schema = object_schema(msg["fields"], svc["types"], required_ok=not msg.get("patch"))
                op["requestBody"] = {"required": True, "content": {m: {"schema": schema} for m in media}}
            ok = {"description": "success"}
            resp = route.get("response")
            if resp:
                ref = {"$ref": f"#/components/schemas/{resp.rstrip('[]')}"}
                ok["content"] = {"application/json": {"schema": {"type": "array", "items": ref} if resp.endswith("[]") else ref}}
            if route.get("etag"):
                ok["headers"] = {"ETag": {"schema": {"type": "string"}}}
            if route.get("location"):
                ok["headers"] = {"Location": {"schema": {"type": "string"}}}
            op["responses"][str(route["status"])] = ok
            errs = [503, 504]
            if route["access"] != "public":
                errs.append(401)
            if route["access"] == "admin":
                errs.append(403)
            if route["method"] in ("POST", "PUT", "PATCH"):
                errs += [400, 413, 415, 422]
            if route.get("key") == "path":
                errs.append(404)
            if route["method"] in ("POST", "PATCH", "PUT"):
                errs.append(409)
            if route.get("etag") and route["method"] != "GET":
                errs.append(412)
            if route.get("query"):
                errs += [400, 422]
            errs += route.get("errors", [])
            for st in sorted(set(errs)):
                op["responses"][str(st)] = problem_ref(st)
            doc["paths"].setdefault(route["path"], {})[route["method"].lower()] = op
    doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    doc["paths"]["/.well-known/jwks.json"] = {"get": {"summary": "Public keys that verify access tokens",
                                                      "responses": {"200": {"description": "a JWK Set"}}}}
    ops = {"get": {"summary": "Process is up", "responses": {"200": {"description": "up"}}}}
    doc["paths"]["/healthz"] = ops
    doc["paths"]["/readyz"] = {"get": {"summary": "Every service has a live node",
                                       "responses": {"200": {"description": "ready"}, "503": problem_ref(503)}}}
    doc["paths"]["/metrics"] = {"get": {"summary": "Prometheus metrics",
                                        "responses": {"200": {"description": "text exposition format"}}}}
    return doc


PEERS = {"self": "MC_PEER_SELF", "edge": "MC_PEER_EDGE", "node": "MC_PEER_NODE"}
ACCESS_ORDER = ["public", "customer", "owner", "admin"]


def message_senders(svc, mname, msg):
    """Which kinds of peer may send a message (CONTRACT 9), as a C bit mask, and the least strict
    access of its routes. A message with a route may come from the edge; "from" names who else
    (or, for a message without a route, who at all). Every message must say: one with neither a
    route nor "from" is an error, so nobody forgets to decide."""
    routes = [r for r in svc["routes"] if r["message"] == mname]
    senders = set(msg.get("from", []))
    if routes:
        senders.add("edge")
    if not senders:
        sys.exit("schemas: %s %s has no route and no \"from\": say which peers may send it" % (svc["service"], mname))
    unknown = senders - set(PEERS)
    if unknown:
        sys.exit("schemas: %s %s: unknown sender %s" % (svc["service"], mname, sorted(unknown)))
    mask = " | ".join("(1u << %s)" % PEERS[p] for p in sorted(senders))
    access = min((r["access"] for r in routes), key=ACCESS_ORDER.index) if routes else "public"
    return mask, ACCESS[access]


def gather_c(svc, r):
    """The route's gather attribute as C initializers: how the edge merges a list it asks every
    shard for (order of the items' sort keys, a field summed over items sharing a key, whether
    the answer is a bare array rather than a page)."""
    g = r.get("gather")
    if g is None:
        return "MC_GATHER_NONE, NULL, false"
    where = "schemas: %s %s %s: gather" % (svc["service"], r["method"], r["path"])
    if r.get("key"):
        sys.exit(where + " is for routes without a routing key (one with a key asks one shard)")
    if g.get("order") not in ("asc", "desc") or set(g) - {"order", "sum"}:
        sys.exit(where + ' must be {"order": "asc"|"desc"} with an optional "sum"')
    return "%s, %s, %s" % (GATHER[g["order"]], c_str(g.get("sum")), c_bool(r.get("response", "").endswith("[]")))


def add_gather_fields(svc):
    """A gathered message accepts the internal member by which the edge asks for sort keys."""
    for r in svc["routes"]:
        if r.get("gather"):
            fields = svc["messages"][r["message"]]["fields"]
            fields[GATHER_FIELD] = {"type": "boolean", "internal": True}


def main():
    out_c, out_api, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    services = [json.load(open(p)) for p in paths]
    for svc in services:
        add_gather_fields(svc)
    lines = ["/* Generated by schemas/gen.py from " + ", ".join(p.split("/")[-1] for p in paths) +
             ". Do not edit. */", '#include "mc_schema.h"', ""]
    defs = []
    for svc in services:
        for mname, msg in svc["messages"].items():
            fid = field_tables(ident("s_fields", svc["service"], mname), msg["fields"], lines)
            senders, access = message_senders(svc, mname, msg)
            defs.append((svc["service"], mname, fid, len(msg["fields"]), msg.get("patch", False),
                         senders, access))
    lines.append("const mc_msgdef_t mc_msgdefs[] = {")
    index = {}
    for i, (s, m, fid, n, patch, senders, access) in enumerate(defs):
        lines.append(f"    {{ {c_str(s)}, {c_str(m)}, {fid}, {n}, {c_bool(patch)}, {senders}, {access} }},")
        index[(s, m)] = i
    lines.append("};")
    lines.append(f"const size_t mc_msgdefs_count = {len(defs)};")
    lines.append("const mc_route_t mc_routes[] = {")
    nroutes = 0
    for svc in services:
        for r in svc["routes"]:
            nroutes += 1
            key, _, key_field = (r.get("key") or "").partition(":")
            shard_by, _, shard_by_field = (r.get("shard_by") or "").partition(":")
            if shard_by and key != "new":
                raise SystemExit("%s %s: shard_by needs \"key\": \"new\"" % (r["method"], r["path"]))
            lines.append("    { %s, %s, &mc_msgdefs[%d], %d, %s, %s, %d, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s }," % (
                c_str(r["method"]), c_str(r["path"]), index[(svc["service"], r["message"])],
                svc.get("shards", 1), ACCESS[r["access"]], KEYS[key or None], r["status"],
                c_bool(r.get("query")), c_bool(r["method"] in ("POST", "PUT", "PATCH")),
                c_bool(r.get("merge_patch")), c_bool(r.get("etag")), c_str(r.get("location")),
                FLOWS[r.get("flow")], c_str(key_field or None), c_bool(r.get("idempotent")),
                KEYS[shard_by or None], c_str(shard_by_field or None), gather_c(svc, r)))
    lines.append("};")
    lines.append(f"const size_t mc_routes_count = {nroutes};")
    lines.append(f"const char mc_gather_field[] = {c_str(GATHER_FIELD)};")
    lines.append("const mc_service_def_t mc_services[] = {")
    lines += ["    { %s, %d }," % (c_str(svc["service"]), svc.get("shards", 1)) for svc in services]
    lines.append("};")
    lines.append(f"const size_t mc_services_count = {len(services)};")
    api = json.dumps(openapi(services), indent=1)
    lines.append("const char mc_openapi_json[] =")
    for i in range(0, len(api), 100):
        lines.append("    " + json.dumps(api[i:i + 100]))
    lines.append(";")
    open(out_c, "w").write("\n".join(lines) + "\n")
    open(out_api, "w").write(api + "\n")


if __name__ == "__main__":
    main()
