/*  The envelope decoders (mc_request_decode, mc_reply_decode) on frames as a peer of the
    broker could send them, and the body validation an actor runs next. Properties: every
    field of a decoded envelope is within its MC_ENV_*_MAX and holds no NUL; a request that
    decodes encodes back to one that decodes to the same fields; a refused one keeps an id
    only when that id is usable; error and reply encoders answer any decoded id. */
#include "fuzz.h"
#include "mc_envelope.h"
#include "mc_log.h"
#include "mc_schema.h"

#include <string.h>

static void
s_check_str(mc_str_t s, size_t max)
{
    FUZZ_CHECK(s.len <= max);
    FUZZ_CHECK(s.len == 0 || (s.ptr && !memchr(s.ptr, 0, s.len)));
}

//  Fields go into JSON log lines through mc_log_escape: the result must stay one JSON string.
static void
s_check_log(mc_str_t s)
{
    char out[96];
    mc_log_escape(out, sizeof out, s.ptr ? s.ptr : "", s.len);
    size_t n = strnlen(out, sizeof out);
    FUZZ_CHECK(n < sizeof out);
    for (size_t i = 0; i < n; i++) {
        FUZZ_CHECK((unsigned char) out[i] >= 0x20 && out[i] != 0x7f);
        if (out[i] == '\\')
            FUZZ_CHECK(++i < n);     //  an escape never ends the string
        else
            FUZZ_CHECK(out[i] != '"');
    }
}

static bool
s_same(mc_str_t a, mc_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
s_request(const uint8_t *data, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    int rc = mc_request_decode(&u, data, size, &req);
    FUZZ_CHECK(rc == 0 || rc == MC_EPARSE || rc == MC_ETOODEEP || rc == MC_ESHAPE);
    if (rc == MC_ESHAPE && req.id.len)
        s_check_str(req.id, MC_ENV_ID_MAX);
    if (rc) {
        FUZZ_CHECK(rc == MC_ESHAPE || req.id.len == 0);
        msgpack_unpacked_destroy(&u);
        return;
    }
    const struct { mc_str_t s; size_t max; } fields[] = {
        { req.id, MC_ENV_ID_MAX }, { req.type, MC_ENV_TYPE_MAX }, { req.key, MC_ENV_KEY_MAX },
        { req.corr, MC_ENV_CORR_MAX }, { req.cause, MC_ENV_CAUSE_MAX }, { req.reply, MC_ENV_REPLY_MAX },
        { req.user, MC_ENV_USER_MAX }, { req.role, MC_ENV_ROLE_MAX }, { req.trace, MC_ENV_TRACE_MAX },
        { req.if_match, MC_ENV_IF_MATCH_MAX }, { req.idem, MC_ENV_IDEM_MAX } };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        s_check_str(fields[i].s, fields[i].max);
        s_check_log(fields[i].s);
    }
    FUZZ_CHECK(req.id.len > 0 && req.type.len > 0 && req.role.len > 0);
    FUZZ_CHECK(req.body && req.body->type == MSGPACK_OBJECT_MAP);

    //  the body as the actor that owns the type would validate it
    for (size_t i = 0; i < mc_msgdefs_count; i++)
        if (mc_str_eq(req.type, mc_msgdefs[i].type)) {
            mc_errors_t errs = { 0 };
            int v = mc_schema_validate(&mc_msgdefs[i], req.body, &errs);
            FUZZ_CHECK((v == 0) == (errs.count == 0));
            break;
        }

    //  encode and decode again
    msgpack_sbuffer body, env;
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&env);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    mc_pack_obj(&pk, req.body);
    mc_request_encode(&env, &req, (mc_str_t) { body.data, body.size });
    msgpack_unpacked u2;
    msgpack_unpacked_init(&u2);
    mc_request_t again;
    FUZZ_CHECK(mc_request_decode(&u2, env.data, env.size, &again) == 0);
    FUZZ_CHECK(s_same(req.id, again.id) && s_same(req.type, again.type) && s_same(req.key, again.key)
               && s_same(req.corr, again.corr) && s_same(req.cause, again.cause) && s_same(req.reply, again.reply)
               && s_same(req.user, again.user) && s_same(req.role, again.role) && s_same(req.trace, again.trace)
               && s_same(req.if_match, again.if_match) && s_same(req.idem, again.idem)
               && req.deadline == again.deadline && req.time == again.time);
    FUZZ_CHECK(again.body->via.map.size == req.body->via.map.size);

    //  any decoded id can be answered, and the answer is a reply
    msgpack_sbuffer_clear(&env);
    msgpack_packer_init(&pk, &env, msgpack_sbuffer_write);
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, "field", "message about %.*s", (int) req.type.len, req.type.ptr);
    mc_reply_error(&pk, req.id, 400, "bad_envelope", "the message envelope is malformed", &errs);
    msgpack_unpacked u3;
    msgpack_unpacked_init(&u3);
    mc_reply_t rep;
    FUZZ_CHECK(mc_reply_decode(&u3, env.data, env.size, &rep) == 0 && rep.status == 400 && s_same(rep.id, req.id));
    msgpack_unpacked_destroy(&u3);
    msgpack_unpacked_destroy(&u2);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&body);
    msgpack_unpacked_destroy(&u);
}

static void
s_reply(const uint8_t *data, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    int rc = mc_reply_decode(&u, data, size, &rep);
    FUZZ_CHECK(rc == 0 || rc == MC_EPARSE || rc == MC_ETOODEEP || rc == MC_ESHAPE);
    if (rc == 0) {
        s_check_str(rep.id, MC_ENV_ID_MAX);
        s_check_str(rep.etag, MC_ENV_ETAG_MAX);
        FUZZ_CHECK(rep.status >= 100 && rep.status <= 599);
        FUZZ_CHECK(!rep.error || rep.error->type == MSGPACK_OBJECT_MAP);
        //  a stored reply is replayed through mc_reply_raw: it must stay a reply
        msgpack_sbuffer raw, out;
        msgpack_sbuffer_init(&raw);
        msgpack_sbuffer_init(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &raw, msgpack_sbuffer_write);
        if (rep.error)
            mc_pack_obj(&pk, rep.error);
        else
        if (rep.body)
            mc_pack_obj(&pk, rep.body);
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        mc_reply_raw(&pk, rep.id, rep.status, rep.error != NULL, raw.data, raw.size, true);
        msgpack_unpacked u2;
        msgpack_unpacked_init(&u2);
        mc_reply_t again;
        FUZZ_CHECK(mc_reply_decode(&u2, out.data, out.size, &again) == 0);
        FUZZ_CHECK(again.status == rep.status && again.replayed && s_same(again.id, rep.id));
        msgpack_unpacked_destroy(&u2);
        msgpack_sbuffer_destroy(&out);
        msgpack_sbuffer_destroy(&raw);
    }
    msgpack_unpacked_destroy(&u);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_request(data, size);
    s_reply(data, size);
    return 0;
}
