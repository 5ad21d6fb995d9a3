#include "mc_envelope.h"

#include "mc_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

//  A string of at most max bytes with no NUL in it (a NUL would end the C strings that logs and
//  storage keys build from it, making two different fields look equal).
static bool
s_bounded(mc_str_t s, size_t max)
{
    return s.len <= max && (s.len == 0 || !memchr(s.ptr, 0, s.len));
}

//  A required string field: 0 when present, a string, non-empty and bounded.
static int
s_req_str(const msgpack_object *map, const char *key, size_t max, mc_str_t *out)
{
    if (mc_map_str(map, key, out) || out->len == 0 || !s_bounded(*out, max))
        return -1;
    return 0;
}

//  An optional string field: absent is "", present must be a bounded string.
static int
s_opt_str(const msgpack_object *map, const char *key, size_t max, mc_str_t *out)
{
    const msgpack_object *o = mc_map_get(map, key);
    if (!o) {
        *out = (mc_str_t) { "", 0 };
        return 0;
    }
    if (o->type != MSGPACK_OBJECT_STR)
        return -1;
    *out = mc_obj_str(o);
    return s_bounded(*out, max) ? 0 : -1;
}

int
mc_request_decode(msgpack_unpacked *u, const void *buf, size_t len, mc_request_t *req)
{
    memset(req, 0, sizeof *req);
    int rc = mc_msgpack_unpack(u, buf, len);
    if (rc)
        return rc;
    const msgpack_object *m = &u->data;
    if (m->type != MSGPACK_OBJECT_MAP)
        return MC_ESHAPE;
    if (s_req_str(m, "id", MC_ENV_ID_MAX, &req->id)) {
        req->id = (mc_str_t) { NULL, 0 };
        return MC_ESHAPE;
    }
    uint64_t v;
    if (mc_map_uint(m, "v", &v) || v != 1)
        return MC_ESHAPE;
    if (s_req_str(m, "type", MC_ENV_TYPE_MAX, &req->type)
    ||  s_opt_str(m, "key", MC_ENV_KEY_MAX, &req->key) || s_opt_str(m, "corr", MC_ENV_CORR_MAX, &req->corr)
    ||  s_opt_str(m, "cause", MC_ENV_CAUSE_MAX, &req->cause) || s_opt_str(m, "reply", MC_ENV_REPLY_MAX, &req->reply)
    ||  s_opt_str(m, "user", MC_ENV_USER_MAX, &req->user) || s_opt_str(m, "role", MC_ENV_ROLE_MAX, &req->role)
    ||  s_opt_str(m, "trace", MC_ENV_TRACE_MAX, &req->trace)
    ||  s_opt_str(m, "if_match", MC_ENV_IF_MATCH_MAX, &req->if_match)
    ||  s_opt_str(m, "idem", MC_ENV_IDEM_MAX, &req->idem))
        return MC_ESHAPE;
    if (mc_map_uint(m, "deadline", &req->deadline) || mc_map_uint(m, "time", &req->time))
        return MC_ESHAPE;
    req->body = mc_map_get(m, "body");
    if (!req->body || req->body->type != MSGPACK_OBJECT_MAP)
        return MC_ESHAPE;
    if (req->role.len == 0)
        req->role = MC_STR("anonymous");
    return 0;
}

static void
s_kv(msgpack_packer *pk, const char *key, mc_str_t v)
{
    mc_pack_kv_str(pk, key, v.ptr ? v.ptr : "", v.ptr ? v.len : 0);
}

void
mc_request_encode(msgpack_sbuffer *out, const mc_request_t *req, mc_str_t body_raw)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    bool has_cause = req->cause.len > 0, has_if = req->if_match.len > 0, has_idem = req->idem.len > 0;
    msgpack_pack_map(&pk, 12 + has_cause + has_if + has_idem);
    mc_pack_kv_uint(&pk, "v", 1);
    s_kv(&pk, "id", req->id);
    s_kv(&pk, "type", req->type);
    s_kv(&pk, "key", req->key);
    s_kv(&pk, "corr", req->corr);
    if (has_cause)
        s_kv(&pk, "cause", req->cause);
    s_kv(&pk, "reply", req->reply);
    mc_pack_kv_uint(&pk, "deadline", req->deadline);
    s_kv(&pk, "user", req->user);
    s_kv(&pk, "role", req->role);
    s_kv(&pk, "trace", req->trace);
    mc_pack_kv_uint(&pk, "time", req->time);
    if (has_if)
        s_kv(&pk, "if_match", req->if_match);
    if (has_idem)
        s_kv(&pk, "idem", req->idem);
    mc_pack_cstr(&pk, "body");
    if (body_raw.len)
        msgpack_sbuffer_write(out, body_raw.ptr, body_raw.len);
    else
        msgpack_pack_map(&pk, 0);
}

int
mc_envelope_id(const void *buf, size_t len, mc_str_t *id)
{
    //  fixmap or map16, "v", a positive fixint, "id", then a fixstr or str8
    const unsigned char *p = buf;
    size_t at = (len && (p[0] & 0xf0) == 0x80) ? 1 : (len >= 3 && p[0] == 0xde) ? 3 : 0;
    if (!at || len < at + 7 || memcmp(p + at, "\xa1v", 2) != 0 || p[at + 2] > 0x7f
    ||  memcmp(p + at + 3, "\xa2id", 3) != 0)
        return -1;
    at += 6;
    size_t n, head;
    if ((p[at] & 0xe0) == 0xa0)
        n = p[at] & 0x1f, head = 1;
    else
    if (p[at] == 0xd9 && at + 1 < len)
        n = p[at + 1], head = 2;
    else
        return -1;
    if (n > len - at - head || n > MC_ENV_ID_MAX)
        return -1;
    *id = (mc_str_t) { (const char *) p + at + head, n };
    return 0;
}

int
mc_reply_decode(msgpack_unpacked *u, const void *buf, size_t len, mc_reply_t *rep)
{
    memset(rep, 0, sizeof *rep);
    int rc = mc_msgpack_unpack(u, buf, len);
    if (rc)
        return rc;
    const msgpack_object *m = &u->data;
    uint64_t status;
    if (m->type != MSGPACK_OBJECT_MAP || mc_map_str(m, "id", &rep->id) || !s_bounded(rep->id, MC_ENV_ID_MAX)
    ||  mc_map_uint(m, "status", &status) || status < 100 || status > 599
    ||  s_opt_str(m, "etag", MC_ENV_ETAG_MAX, &rep->etag))
        return MC_ESHAPE;
    rep->status = (int) status;
    mc_map_bool(m, "replayed", &rep->replayed);
    rep->body = mc_map_get(m, "body");
    rep->error = mc_map_get(m, "error");
    if (rep->error && rep->error->type != MSGPACK_OBJECT_MAP)
        return MC_ESHAPE;
    return 0;
}

void
mc_reply_begin(msgpack_packer *pk, mc_str_t id, int status, const char *etag)
{
    msgpack_pack_map(pk, etag ? 5 : 4);
    mc_pack_kv_uint(pk, "v", 1);
    mc_pack_kv_str(pk, "id", id.ptr, id.len);
    mc_pack_kv_uint(pk, "status", (uint64_t) status);
    if (etag)
        mc_pack_kv_cstr(pk, "etag", etag);
    mc_pack_cstr(pk, "body");
}

void
mc_errors_add(mc_errors_t *errs, const char *field, const char *fmt, ...)
{
    if (errs->count < MC_ERRORS_MAX) {
        mc_field_error_t *e = &errs->list[errs->count];
        snprintf(e->field, sizeof e->field, "%s", field);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
    errs->count++;
}

void
mc_pack_error(msgpack_packer *pk, const char *code, const char *detail, const mc_errors_t *errs)
{
    int n = errs ? (errs->count < MC_ERRORS_MAX ? errs->count : MC_ERRORS_MAX) : 0;
    msgpack_pack_map(pk, n ? 3 : 2);
    mc_pack_kv_cstr(pk, "code", code);
    mc_pack_kv_cstr(pk, "detail", detail);
    if (n) {
        mc_pack_cstr(pk, "errors");
        msgpack_pack_array(pk, (size_t) n);
        for (int i = 0; i < n; i++) {
            msgpack_pack_map(pk, 2);
            mc_pack_kv_cstr(pk, "field", errs->list[i].field);
            mc_pack_kv_cstr(pk, "message", errs->list[i].message);
        }
    }
}

void
mc_reply_error(msgpack_packer *pk, mc_str_t id, int status, const char *code,
               const char *detail, const mc_errors_t *errs)
{
    msgpack_pack_map(pk, 4);
    mc_pack_kv_uint(pk, "v", 1);
    mc_pack_kv_str(pk, "id", id.ptr ? id.ptr : "", id.ptr ? id.len : 0);
    mc_pack_kv_uint(pk, "status", (uint64_t) status);
    mc_pack_cstr(pk, "error");
    mc_pack_error(pk, code, detail, errs);
}

void
mc_reply_raw(msgpack_packer *pk, mc_str_t id, int status, bool error, const void *raw, size_t len,
             bool replayed)
{
    msgpack_pack_map(pk, 4 + replayed);
    mc_pack_kv_uint(pk, "v", 1);
    mc_pack_kv_str(pk, "id", id.ptr ? id.ptr : "", id.ptr ? id.len : 0);
    mc_pack_kv_uint(pk, "status", (uint64_t) status);
    if (replayed) {
        mc_pack_cstr(pk, "replayed");
        msgpack_pack_true(pk);
    }
    mc_pack_cstr(pk, error ? "error" : "body");
    if (len)
        msgpack_sbuffer_write(pk->data, raw, len);
    else
        msgpack_pack_nil(pk);
}

void
mc_reply_error_retry(msgpack_packer *pk, mc_str_t id, int status, const char *code, const char *detail,
                     uint64_t retry_after_s)
{
    msgpack_pack_map(pk, 4);
    mc_pack_kv_uint(pk, "v", 1);
    mc_pack_kv_str(pk, "id", id.ptr ? id.ptr : "", id.ptr ? id.len : 0);
    mc_pack_kv_uint(pk, "status", (uint64_t) status);
    mc_pack_cstr(pk, "error");
    msgpack_pack_map(pk, 3);
    mc_pack_kv_cstr(pk, "code", code);
    mc_pack_kv_cstr(pk, "detail", detail);
    mc_pack_kv_uint(pk, "retry_after", retry_after_s);
}

void
mc_reply_page(msgpack_packer *pk, mc_str_t id, const msgpack_sbuffer *items, size_t n, const void *next,
              size_t nextlen)
{
    mc_reply_page_more(pk, id, items, n, next, nextlen, 0);
}

void
mc_reply_page_more(msgpack_packer *pk, mc_str_t id, const msgpack_sbuffer *items, size_t n, const void *next,
                   size_t nextlen, size_t more)
{
    mc_reply_begin(pk, id, 200, NULL);
    msgpack_pack_map(pk, 2 + more);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, n);
    if (items->size)
        msgpack_sbuffer_write(pk->data, items->data, items->size);
    mc_pack_cstr(pk, "next_cursor");
    if (next && nextlen <= MC_CURSOR_MAX) {
        char enc[MC_CURSOR_MAX * 4 / 3 + 4];
        mc_pack_str(pk, enc, mc_b64url_encode(enc, next, nextlen));
    }
    else
        msgpack_pack_nil(pk);
}
