#include "edge_http.h"

#include "edge_card.h"
#include "edge_client.h"
#include "edge_conn.h"
#include "edge_framing.h"
#include "edge_gather.h"
#include "edge_headers.h"
#include "mc_json.h"
#include "edge_metrics.h"
#include "edge_pages.h"
#include "edge_query.h"
#include "edge_identity.h"
#include "edge_request.h"
#include "edge_response.h"
#include "mc_envelope.h"
#include "mc_log.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

static edge_config_t s_config;
static char s_reply_route[64];

void
edge_http_init(const edge_config_t *config)
{
    s_config = *config;
    snprintf(s_reply_route, sizeof s_reply_route, "edge/%d", (int) getpid());
    edge_metrics_init(mc_routes_count);
}

//  Matches path against a route pattern; a {param} takes one non-empty segment.
static bool
s_path_match(const char *pattern, const char *path, mc_str_t *param)
{
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (*p == '{') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t) (end - s) : strlen(s);
            if (len == 0)
                return false;
            *param = (mc_str_t) { s, len };
            s += len;
            p = strchr(p, '}');
            if (!p)
                return false;
            p++;
        }
        else
        if (*p++ != *s++)
            return false;
    }
    return *p == 0 && *s == 0;
}

//  The route for method and path; HEAD takes the GET route (RFC 9110 9.3.2). Without one, allow
//  lists the methods the path has.
static const mc_route_t *
s_route(const char *method, const char *path, mc_str_t *param, char *allow, size_t allowsz)
{
    allow[0] = 0;
    const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
    for (size_t i = 0; i < mc_routes_count; i++) {
        mc_str_t got = { NULL, 0 };
        if (!s_path_match(mc_routes[i].path, path, &got))
            continue;
        if (strcmp(mc_routes[i].method, want) == 0) {
            *param = got;
            return &mc_routes[i];
        }
        size_t used = strlen(allow);
        bool get = strcmp(mc_routes[i].method, "GET") == 0;
        snprintf(allow + used, allowsz - used, "%s%s%s", used ? ", " : "", mc_routes[i].method, get ? ", HEAD" : "");
    }
    return NULL;
}

static const char *
s_header1(const struct mg_request_info *ri, const char *name)
{
    int count;
    return edge_framing_header(ri->http_headers, ri->num_headers, name, &count);
}

//  A client's X-Request-Id is kept when it is short and plain; otherwise we mint one.
static void
s_request_id(const struct mg_request_info *ri, char *out, size_t outsz)
{
    const char *given = s_header1(ri, "X-Request-Id");
    if (given) {
        size_t n = strlen(given);
        bool ok = n > 0 && n < 65;
        for (size_t i = 0; ok && i < n; i++)
            ok = isalnum((unsigned char) given[i]) || strchr("-_.:", given[i]);
        if (ok) {
            snprintf(out, outsz, "%s", given);
            return;
        }
    }
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, mc_now_ms());
    snprintf(out, outsz, "%s", id);
}

//  W3C traceparent: 00-<32 hex>-<16 hex>-<2 hex>, not all-zero ids.
static bool
s_traceparent_ok(const char *tp)
{
    if (!tp || strlen(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-')
        return false;
    for (int i = 0; i < 55; i++)
        if (i != 2 && i != 35 && i != 52 && !isxdigit((unsigned char) tp[i]))
            return false;
    return strncmp(tp + 3, "00000000000000000000000000000000", 32) != 0
        && strncmp(tp + 36, "0000000000000000", 16) != 0 && strncmp(tp, "ff", 2) != 0;
}

//  Reads at most cap bytes of body into buf. Returns its length, -1 when larger than
//  EDGE_BODY_MAX, -2 on a read error.
static long
s_read_body(struct mg_connection *conn, char *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        int n = mg_read(conn, buf + got, cap - got);
        if (n < 0)
            return -2;
        if (n == 0)
            break;
        got += (size_t) n;
    }
    return got > EDGE_BODY_MAX ? -1 : (long) got;
}

void
edge_request_invalid(edge_reply_t *r, const mc_errors_t *errs)
{
    edge_request_refuse(r, "the request has invalid fields", errs);
}

void
edge_request_refuse(edge_reply_t *r, const char *detail, const mc_errors_t *errs)
{
    //  pack the complaints so the one problem writer renders them
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int n = errs->count < MC_ERRORS_MAX ? errs->count : MC_ERRORS_MAX;
    msgpack_pack_array(&pk, (size_t) n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_cstr(&pk, "field", errs->list[i].field);
        mc_pack_kv_cstr(&pk, "message", errs->list[i].message);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    msgpack_unpack_next(&u, sb.data, sb.size, &off);
    edge_problem(r, 422, "validation_failed", detail, &u.data, NULL);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

//  True when body carries a credential (identity's "tokens" answer): no cache may keep it.
static bool
s_carries_token(const msgpack_object *body)
{
    return mc_map_get(body, "access_token") || mc_map_get(body, "refresh_token");
}

//  Renders the actor's reply as the HTTP answer.
static void
s_answer(edge_req_t *q, zframe_t *frame)
{
    edge_reply_t *r = q->r;
    const mc_route_t *route = q->route;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    if (mc_reply_decode(&u, zframe_data(frame), zframe_size(frame), &rep)) {
        edge_metrics_rejected("frame");
        edge_problem(r, 500, "bad_reply", "the service answered with a malformed message", NULL, NULL);
        msgpack_unpacked_destroy(&u);
        return;
    }
    char headers[1024] = "";
    size_t hl = 0;
    if (rep.etag.len && rep.etag.len < 64)
        hl += (size_t) snprintf(headers + hl, sizeof headers - hl, "ETag: %.*s\r\n", (int) rep.etag.len, rep.etag.ptr);
    if (rep.replayed)
        hl += (size_t) snprintf(headers + hl, sizeof headers - hl, "Idempotent-Replayed: true\r\n");
    if (rep.status >= 400) {
        mc_str_t code = { "error", 5 }, detail = { "", 0 };
        mc_map_str(rep.error, "code", &code);
        mc_map_str(rep.error, "detail", &detail);
        char c[64], d[512];
        snprintf(c, sizeof c, "%.*s", (int) code.len, code.ptr);
        snprintf(d, sizeof d, "%.*s", (int) detail.len, detail.ptr);
        uint64_t retry = rep.status == 503 ? 1 : 0;
        mc_map_uint(rep.error, "retry_after", &retry);
        if (retry)
            hl += (size_t) snprintf(headers + hl, sizeof headers - hl, "Retry-After: %" PRIu64 "\r\n", retry);
        if (rep.status == 401)
            snprintf(headers + hl, sizeof headers - hl, "WWW-Authenticate: Bearer realm=\"mercato\"\r\n");
        edge_problem_ext(r, rep.status, c, d, mc_map_get(rep.error, "errors"), mc_map_get(rep.error, "members"),
                         headers);
    }
    else {
        const char *inm = route->etag ? s_header1(q->ri, "If-None-Match") : NULL;
        if (inm && rep.etag.len && mc_str_eq(rep.etag, inm) && strcmp(route->method, "GET") == 0) {
            edge_respond(r, 304, NULL, headers, NULL, 0);
            msgpack_unpacked_destroy(&u);
            return;
        }
        mc_str_t id;
        if (route->location && rep.status == 201 && mc_map_str(rep.body, "id", &id) == 0 && id.len < 128)
            hl += (size_t) snprintf(headers + hl, sizeof headers - hl, "Location: %s%.*s\r\n", route->location,
                                    (int) id.len, id.ptr);
        if (s_carries_token(rep.body))
            snprintf(headers + hl, sizeof headers - hl, "Cache-Control: no-store\r\n");
        if (rep.status == 204 || !rep.body)
            edge_respond(r, rep.status, NULL, headers, NULL, 0);
        else {
            msgpack_sbuffer json;
            msgpack_sbuffer_init(&json);
            mc_json_write(&json, rep.body);
            edge_respond(r, rep.status, "application/json", headers, json.data, json.size);
            msgpack_sbuffer_destroy(&json);
        }
    }
    msgpack_unpacked_destroy(&u);
}

void
edge_request_encode(edge_req_t *q, const char *type, mc_str_t body, mc_str_t id, mc_str_t key, msgpack_sbuffer *env)
{
    const mc_route_t *route = q->route;
    const struct mg_request_info *ri = q->ri;
    const char *tp = s_header1(ri, "traceparent");
    const char *if_match = route->etag ? s_header1(ri, "If-Match") : NULL;
    const char *idem = route->idempotent ? s_header1(ri, "Idempotency-Key") : NULL;
    mc_request_t req = {
        .id = id,
        .type = { type, strlen(type) },
        .key = key,
        .corr = { q->r->request_id, strlen(q->r->request_id) },
        .reply = { s_reply_route, strlen(s_reply_route) },
        .user = { q->who.sub, strlen(q->who.sub) },
        .role = *q->who.role ? (mc_str_t) { q->who.role, strlen(q->who.role) } : MC_STR("anonymous"),
        .trace = s_traceparent_ok(tp) ? (mc_str_t) { tp, 55 } : (mc_str_t) { "", 0 },
        .if_match = if_match ? (mc_str_t) { if_match, strlen(if_match) } : (mc_str_t) { "", 0 },
        .idem = idem ? (mc_str_t) { idem, strlen(idem) } : (mc_str_t) { "", 0 },
        .deadline = q->received_ms + (uint64_t) q->timeout_ms,
        .time = q->received_ms,
    };
    mc_request_encode(env, &req, body);
}

//  The request's message id, which a route with "key": "new" makes the new entity's id. With
//  shard_by, it is drawn again until it falls on the shard of that other key: 1 in N draws does.
static void
s_new_id(const edge_req_t *q, mc_str_t body, char id[MC_ULID_LEN + 1])
{
    const mc_route_t *route = q->route;
    mc_ulid(id, q->received_ms);
    if (route->key != MC_KEY_NEW || route->shard_by == MC_KEY_NONE)
        return;
    const char *service = route->msg->service;
    unsigned shards = mc_schema_shards(service);
    if (shards < 2)
        return;
    mc_str_t by = { q->who.sub, strlen(q->who.sub) };
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (route->shard_by == MC_KEY_FIELD
    &&  (mc_msgpack_unpack(&u, body.ptr, body.len) != 0 || mc_map_str(&u.data, route->shard_by_field, &by) != 0))
        by = (mc_str_t) { "", 0 };
    unsigned want = mc_shard_of_folded(service, by.ptr, by.len);
    //  each draw is a fresh 80 random bits: past 64 * N draws something is wrong with the
    //  generator, and a new id anywhere is still an id
    for (unsigned i = 0; i < 64 * shards && mc_shard_of(service, id, MC_ULID_LEN) != want; i++)
        mc_ulid(id, q->received_ms);
    msgpack_unpacked_destroy(&u);
}

edge_call_t
edge_request_call(edge_req_t *q, const char *type, mc_str_t body, zframe_t **reply)
{
    const mc_route_t *route = q->route;
    char id[MC_ULID_LEN + 1];
    s_new_id(q, body, id);
    mc_str_t key = { "", 0 };
    if (route->key == MC_KEY_PATH)
        key = q->param;
    else
    if (route->key == MC_KEY_NEW)
        key = (mc_str_t) { id, MC_ULID_LEN };
    else
    if (route->key == MC_KEY_USER)
        key = (mc_str_t) { q->who.sub, strlen(q->who.sub) };
    char field[96] = "";
    if (route->key == MC_KEY_FIELD && route->key_field) {
        //  the entity is named in the body (a query parameter): it decides the shard
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_str_t v;
        if (mc_msgpack_unpack(&u, body.ptr, body.len) == 0 && mc_map_str(&u.data, route->key_field, &v) == 0
        &&  v.len < sizeof field)
            snprintf(field, sizeof field, "%.*s", (int) v.len, v.ptr);
        msgpack_unpacked_destroy(&u);
        key = (mc_str_t) { field, strlen(field) };
    }
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    edge_request_encode(q, type, body, (mc_str_t) { id, MC_ULID_LEN }, key, &env);
    char service[96];
    snprintf(service, sizeof service, "%s.%u", route->msg->service,
             mc_shard_of(route->msg->service, key.ptr, key.len));
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    edge_call_t outcome = edge_client_call(service, env.data, env.size, q->timeout_ms, reply);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    edge_metrics_broker((uint64_t) ((ts1.tv_sec - ts0.tv_sec) * 1000000 + (ts1.tv_nsec - ts0.tv_nsec) / 1000),
                        (int) outcome);
    msgpack_sbuffer_destroy(&env);
    return outcome;
}

void
edge_request_answer(edge_req_t *q, edge_call_t outcome, zframe_t *reply)
{
    char detail[256];
    if (outcome == EDGE_CALL_REPLY)
        s_answer(q, reply);
    else
    if (outcome == EDGE_CALL_UNAVAILABLE) {
        snprintf(detail, sizeof detail, "the %s service has no live node", q->route->msg->service);
        edge_problem(q->r, 503, "service_unavailable", detail, NULL, "Retry-After: 1\r\n");
    }
    else {
        snprintf(detail, sizeof detail, "the %s service did not answer within %d ms", q->route->msg->service,
                 q->timeout_ms);
        edge_problem(q->r, 504, "timeout", detail, NULL, NULL);
    }
}

void
edge_request_forward(edge_req_t *q, mc_str_t body)
{
    if (edge_gather_wanted(q)) {
        edge_gather_forward(q, body);
        return;
    }
    zframe_t *reply = NULL;
    edge_call_t outcome = edge_request_call(q, q->route->msg->type, body, &reply);
    edge_request_answer(q, outcome, reply);
    zframe_destroy(&reply);
}

//  Adds the path's {param} to a packed body map as "id".
static void
s_add_param(const edge_req_t *q, msgpack_sbuffer *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (mc_msgpack_unpack(&u, out->data, out->size) == 0 && u.data.type == MSGPACK_OBJECT_MAP) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, u.data.via.map.size + 1);
        for (uint32_t i = 0; i < u.data.via.map.size; i++) {
            msgpack_pack_object(&pk, u.data.via.map.ptr[i].key);
            msgpack_pack_object(&pk, u.data.via.map.ptr[i].val);
        }
        mc_pack_kv_str(&pk, "id", q->param.ptr, q->param.len);
        msgpack_sbuffer_clear(out);
        msgpack_sbuffer_write(out, sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    msgpack_unpacked_destroy(&u);
}

//  The body a route's message carries: the JSON body, or the typed query, plus the path's
//  {param} as "id" when the routing key is the caller. 0, or -1 with the problem answered.
static int
s_body(edge_req_t *q, const char *json, size_t jlen, msgpack_sbuffer *out)
{
    const mc_route_t *route = q->route;
    mc_errors_t errs = { 0 };
    char detail[256];
    if (route->body) {
        int rc = jlen == 0 ? 0 : mc_json_parse(json, jlen, out, detail, sizeof detail);
        if (jlen == 0)
            msgpack_sbuffer_write(out, "\x80", 1);     //  no body at all reads as {}
        if (rc) {
            edge_metrics_rejected("json");
            edge_problem(q->r, rc == MC_JSON_NOT_OBJECT ? 422 : 400,
                         rc == MC_JSON_NOT_OBJECT ? "validation_failed"
                         : rc == MC_JSON_LIMIT ? "json_limit_exceeded" : "malformed_json", detail, NULL, NULL);
            return -1;
        }
        //  a client may not set fields the edge fills in, and must send those it reads itself
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (mc_msgpack_unpack(&u, out->data, out->size) == 0)
            mc_schema_validate_http(route->msg, &u.data, &errs);
        msgpack_unpacked_destroy(&u);
    }
    else
    if (route->query)
        edge_query_to_body(q->ri->query_string, route->msg, out, &errs);
    else
    if (route->key == MC_KEY_USER && q->param.len) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        mc_pack_kv_str(&pk, "id", q->param.ptr, q->param.len);
    }
    if (errs.count) {
        edge_request_invalid(q->r, &errs);
        return -1;
    }
    if (route->body && route->key == MC_KEY_USER && q->param.len)
        s_add_param(q, out);
    return 0;
}

//  An Idempotency-Key, when the route takes one, is 1 to 255 printable ASCII characters.
//  0, or -1 with the problem answered.
static int
s_idempotency_key(edge_req_t *q)
{
    const char *key = q->route->idempotent ? s_header1(q->ri, "Idempotency-Key") : NULL;
    if (!key)
        return 0;
    size_t n = strlen(key);
    bool ok = n >= 1 && n <= 255;
    for (size_t i = 0; ok && i < n; i++)
        ok = key[i] >= 0x20 && key[i] < 0x7f;
    if (!ok) {
        edge_problem(q->r, 400, "invalid_idempotency_key",
                     "the Idempotency-Key header must be 1 to 255 printable ASCII characters", NULL, NULL);
        return -1;
    }
    return 0;
}

//  If-Match is compared whole with the one ETag an entity has, and none of ours is as long as
//  MC_ENV_IF_MATCH_MAX: a longer one cannot match (412), and would not fit the envelope.
//  0, or -1 with the problem answered.
static int
s_if_match(edge_req_t *q)
{
    const char *if_match = q->route->etag ? s_header1(q->ri, "If-Match") : NULL;
    if (!if_match || strlen(if_match) <= MC_ENV_IF_MATCH_MAX)
        return 0;
    edge_problem(q->r, 412, "precondition_failed", "If-Match names no current ETag of this resource", NULL, NULL);
    return -1;
}

//  Authentication and the route's access rule. 0 to go on, or -1 with the problem answered.
static int
s_authorize(edge_req_t *q)
{
    const char *authz = s_header1(q->ri, "Authorization");
    if (authz) {
        const char *why;
        int rc = edge_auth_verify(authz, &q->who, &why);
        if (rc == -2) {
            edge_problem(q->r, 503, "keys_unavailable", "tokens cannot be checked until the identity service answers",
                         NULL, "Retry-After: 1\r\n");
            return -1;
        }
        if (rc) {
            char hdr[160];
            snprintf(hdr, sizeof hdr, "WWW-Authenticate: Bearer realm=\"mercato\", error=\"invalid_token\"\r\n");
            edge_problem(q->r, 401, "invalid_token", why, NULL, hdr);
            return -1;
        }
    }
    if (q->route->access != MC_ACCESS_PUBLIC && !*q->who.sub) {
        edge_problem(q->r, 401, "authentication_required", "sign in and send the access token as a Bearer token",
                     NULL, "WWW-Authenticate: Bearer realm=\"mercato\"\r\n");
        return -1;
    }
    if (q->route->access == MC_ACCESS_ADMIN && strcmp(q->who.role, "admin") != 0) {
        edge_problem(q->r, 403, "forbidden", "this needs the admin role", NULL, NULL);
        return -1;
    }
    return 0;
}

static void
s_serve(edge_req_t *q, const char *json, size_t jlen)
{
    if (s_authorize(q) || s_idempotency_key(q) || s_if_match(q))
        return;
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    if (s_body(q, json, jlen, &body) == 0) {
        if (q->route->flow == MC_FLOW_CARD)
            edge_card_flow(q, (mc_str_t) { body.data, body.size });
        else
        if (q->route->flow != MC_FLOW_NONE)
            edge_identity_flow(q, (mc_str_t) { body.data, body.size });
        else
            edge_request_forward(q, (mc_str_t) { body.data, body.size });
        //  publish a new signing key at once rather than at the next periodic refresh
        if (q->r->status == 200 && strcmp(q->route->msg->type, "keys.rotate") == 0)
            edge_auth_refresh();
    }
    msgpack_sbuffer_destroy(&body);
}

//  The request's Origin when CORS is configured and lists it (exactly), else NULL.
static const char *
s_cors_origin(const struct mg_request_info *ri)
{
    const char *origin = s_header1(ri, "Origin");
    if (!s_config.cors_origin || !origin || !*origin)
        return NULL;
    size_t n = strlen(origin);
    for (const char *p = s_config.cors_origin; *p;) {
        size_t len = strcspn(p, ", ");
        if ((len == 1 && *p == '*') || (len == n && strncmp(p, origin, n) == 0))
            return len == 1 && *p == '*' ? "*" : origin;
        p += len;
        p += strspn(p, ", ");
    }
    return NULL;
}

//  OPTIONS: the methods a path allows, and a CORS preflight answer when CORS allows the origin.
static void
s_options(edge_reply_t *r, const struct mg_request_info *ri, const char *allow)
{
    char headers[768];
    int n = snprintf(headers, sizeof headers, "Allow: %s, OPTIONS\r\n", allow);
    if (r->origin && s_header1(ri, "Access-Control-Request-Method"))
        snprintf(headers + n, sizeof headers - (size_t) n,
                 "Access-Control-Allow-Methods: %s\r\n"
                 "Access-Control-Allow-Headers: Content-Type, Authorization, If-Match, If-None-Match, "
                 "Idempotency-Key, X-Request-Id, traceparent\r\n"
                 "Access-Control-Max-Age: 600\r\n", allow);
    edge_respond(r, 204, NULL, headers, NULL, 0);
}

static size_t
s_route_slot(const mc_route_t *route)
{
    return route ? (size_t) (route - mc_routes) : edge_metrics_slot_unmatched();
}

static void
s_too_slow(edge_reply_t *r)
{
    edge_metrics_rejected("timeout");
    r->close = true;
    edge_problem(r, 408, "request_timeout", "the request (headers and body) did not arrive in time", NULL, NULL);
}

int
edge_http_error(struct mg_connection *conn, int status, const char *errmsg)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    edge_reply_t r = { .conn = conn, .close = true, .head = ri && ri->request_method
                                                            && strcmp(ri->request_method, "HEAD") == 0 };
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, mc_now_ms());
    snprintf(r.request_id, sizeof r.request_id, "%s", id);
    //  the watchdog ended the read: whatever civetweb makes of the rest, the client was too slow
    if (edge_conn_expired(conn)) {
        s_too_slow(&r);
        return 0;
    }
    //  civetweb 1.15 says "Malformed message" both for bytes it cannot parse and for a request
    //  line and headers that overflow its buffer (read_message's -2 never becomes its 413)
    const char *code = "malformed_request", *kind = "headers",
               *detail = "the request could not be parsed, or its request line and headers are larger than "
                         EDGE_HTTP_HEAD_MAX_TEXT;
    if (status == 411) {
        //  a Content-Length that is present but not a number is malformed, not missing
        if (ri && mg_get_header(conn, "Content-Length"))
            status = 400;
        else {
            code = "length_required";
            detail = "send Content-Length or chunked Transfer-Encoding";
        }
    }
    else
    if (ri && edge_headers_token(ri->request_method) && !edge_headers_method_implemented(ri->request_method)) {
        //  civetweb refuses a method it does not know as a malformed request
        status = 501;
        code = "not_implemented";
        detail = "the edge implements GET, HEAD, POST, PUT, PATCH, DELETE and OPTIONS";
        kind = "method";
    }
    else
    if (status == 505) {
        code = "http_version_not_supported";
        detail = "the edge speaks HTTP/1.0 and HTTP/1.1";
    }
    edge_metrics_rejected(kind);
    edge_problem(&r, status, code, detail, NULL, NULL);
    return 0;
}

int
edge_http_handle(struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    //  the headers are in; the deadline waits while the request is served (s_read_body resumes it)
    edge_conn_reading(conn, false);
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    uint64_t received_ms = mc_now_ms();
    edge_metrics_inflight(1);
    edge_reply_t r = { .conn = conn, .origin = s_cors_origin(ri), .head = strcmp(ri->request_method, "HEAD") == 0 };
    s_request_id(ri, r.request_id, sizeof r.request_id);
    const char *path = ri->local_uri ? ri->local_uri : "/";
    const mc_route_t *route = NULL;
    size_t slot = edge_metrics_slot_internal();
    char allow[128];
    mc_str_t param = { NULL, 0 };

    edge_headers_problem_t refused;
    if (edge_headers_check(ri, &refused)) {
        edge_metrics_rejected(refused.kind);
        r.close = true;
        edge_problem(&r, refused.status, refused.code, refused.detail, NULL, NULL);
        goto done;
    }
    const char *framing = edge_framing_error(ri->http_headers, ri->num_headers);
    if (framing) {
        edge_metrics_rejected("headers");
        r.close = true;
        edge_problem(&r, 400, "malformed_request", framing, NULL, NULL);
        goto done;
    }
    if (edge_pages_handle(&r, ri, path))
        goto done;
    route = s_route(ri->request_method, path, &param, allow, sizeof allow);
    slot = s_route_slot(route);
    if (!route && *allow && strcmp(ri->request_method, "OPTIONS") == 0) {
        s_options(&r, ri, allow);
        goto done;
    }
    if (!route) {
        if (*allow) {
            char hdr[160];
            snprintf(hdr, sizeof hdr, "Allow: %s\r\n", allow);
            edge_problem(&r, 405, "method_not_allowed", "this resource does not support this method", NULL, hdr);
        }
        else
            edge_problem(&r, 404, "not_found", "no resource at this path", NULL, NULL);
        goto done;
    }
    if (param.len > 64) {
        edge_problem(&r, 404, "not_found", "no resource at this path", NULL, NULL);
        goto done;
    }
    edge_req_t q = { .r = &r, .ri = ri, .route = route, .param = param, .received_ms = received_ms,
                     .timeout_ms = s_config.timeout_ms };
    //  neither Content-Length nor Transfer-Encoding: the request has no body (RFC 9112 §6.3), as
    //  curl -X POST sends a command such as a cancel
    const char *te = s_header1(ri, "Transfer-Encoding");
    bool bodiless = edge_framing_bodiless(ri->content_length, te);
    if (!route->body) {
        if (!bodiless) {
            edge_metrics_rejected("body_size");
            r.close = true;
            edge_problem(&r, 400, "unexpected_body", "this method takes no request body", NULL, NULL);
            goto done;
        }
        s_serve(&q, NULL, 0);
        goto done;
    }
    if (ri->content_length > EDGE_BODY_MAX) {
        //  refuse before reading a byte of it, and close: the rest of it is not ours to parse
        edge_metrics_rejected("body_size");
        r.close = true;
        edge_problem(&r, 413, "body_too_large", "the request body is larger than 1 MiB", NULL, NULL);
        goto done;
    }
    //  a POST with no body at all (a command such as a key rotation) needs no media type
    if (bodiless) {
        s_serve(&q, "", 0);
        goto done;
    }
    if (!edge_framing_json_media(s_header1(ri, "Content-Type"), route->merge_patch)) {
        edge_metrics_rejected("media_type");
        edge_problem(&r, 415, "unsupported_media_type",
                     route->merge_patch ? "send application/json or application/merge-patch+json"
                                        : "send application/json", NULL, NULL);
        goto done;
    }
    //  a declared length sizes the buffer; chunked bodies get the cap plus one byte to detect excess
    size_t cap = ri->content_length >= 0 ? (size_t) ri->content_length : EDGE_BODY_MAX + 1;
    char *buf = malloc(cap + 1);
    edge_conn_reading(conn, true);
    long blen = buf ? s_read_body(conn, buf, cap) : -2;
    edge_conn_reading(conn, false);
    if (blen == -2 && edge_conn_expired(conn))
        s_too_slow(&r);
    else
    if (blen == -1) {
        edge_metrics_rejected("body_size");
        r.close = true;
        edge_problem(&r, 413, "body_too_large", "the request body is larger than 1 MiB", NULL, NULL);
    }
    else
    if (blen < 0) {
        r.close = true;
        edge_problem(&r, 400, "malformed_request", "the request body could not be read", NULL, NULL);
    }
    else
        s_serve(&q, buf, (size_t) blen);
    free(buf);
done:;
    struct timespec ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    uint64_t us = (uint64_t) ((ts1.tv_sec - ts0.tv_sec) * 1000000 + (ts1.tv_nsec - ts0.tv_nsec) / 1000);
    edge_metrics_request(slot, r.status, us);
    edge_metrics_inflight(-1);
    edge_conn_answered(conn);
    if (s_config.access_log == EDGE_LOG_ALL || (s_config.access_log == EDGE_LOG_ERRORS && r.status >= 400)
    ||  r.status >= 500 || r.status == 0) {
        char p[256];
        mc_log(r.status >= 500 || r.status == 0 ? MC_LOG_WARN : MC_LOG_INFO, "request",
               "\"request_id\":\"%s\",\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"us\":%" PRIu64,
               r.request_id, ri->request_method, mc_log_escape(p, sizeof p, path, strlen(path)), r.status, us);
    }
    return r.status ? r.status : 500;
}
