#include "edge_identity.h"

#include "edge_hash.h"
#include "edge_token.h"
#include "mc_password.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern const char *const edge_common_passwords[];
extern const size_t edge_common_passwords_count;

void
edge_identity_init(void)
{
    //  two hashes at a time on two cores, and a short queue: 19 MiB each stays bounded
    edge_hash_init(2, 32);
}

static int
s_cmp(const void *key, const void *item)
{
    return strcmp(key, *(const char *const *) item);
}

const char *
edge_identity_policy(mc_str_t password, mc_str_t email)
{
    long n = mc_utf8_len(password.ptr, password.len);
    if (n < 8)
        return "must have at least 8 characters";
    if (n > 128)
        return "must have at most 128 characters";
    if (email.len && password.len == email.len && strncasecmp(password.ptr, email.ptr, email.len) == 0)
        return "must not be the email";
    char lower[512];
    size_t len = password.len < sizeof lower - 1 ? password.len : sizeof lower - 1;
    for (size_t i = 0; i < len; i++)
        lower[i] = password.ptr[i] >= 'A' && password.ptr[i] <= 'Z' ? (char) (password.ptr[i] + 32) : password.ptr[i];
    lower[len] = 0;
    if (bsearch(lower, edge_common_passwords, edge_common_passwords_count, sizeof *edge_common_passwords, s_cmp))
        return "is too common; choose another";
    return NULL;
}

//  Copies map, leaving out the members named in drop, then adds n_extra more members that the
//  caller packs afterwards. Returns a packer on out.
static void
s_rewrite(const msgpack_object *map, const char *const *drop, size_t ndrop, size_t n_extra, msgpack_sbuffer *out,
          msgpack_packer *pk)
{
    msgpack_packer_init(pk, out, msgpack_sbuffer_write);
    size_t keep = 0;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        bool dropped = false;
        for (size_t d = 0; d < ndrop; d++)
            dropped |= mc_str_eq(mc_obj_str(&map->via.map.ptr[i].key), drop[d]);
        keep += !dropped;
    }
    msgpack_pack_map(pk, keep + n_extra);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        bool dropped = false;
        for (size_t d = 0; d < ndrop; d++)
            dropped |= mc_str_eq(mc_obj_str(&map->via.map.ptr[i].key), drop[d]);
        if (!dropped) {
            mc_pack_obj(pk, &map->via.map.ptr[i].key);
            mc_pack_obj(pk, &map->via.map.ptr[i].val);
        }
    }
}

static void
s_busy(edge_req_t *q)
{
    edge_problem(q->r, 503, "busy", "too many password checks at once; try again shortly", NULL, "Retry-After: 1\r\n");
}

static void
s_policy_problem(edge_req_t *q, const char *field, const char *why)
{
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, field, "%s", why);
    edge_request_invalid(q->r, &errs);
}

static void
s_register(edge_req_t *q, const msgpack_object *body)
{
    mc_str_t password, email = { "", 0 };
    mc_map_str(body, "password", &password);
    mc_map_str(body, "email", &email);
    const char *why = edge_identity_policy(password, email);
    if (why) {
        s_policy_problem(q, "password", why);
        return;
    }
    char hash[MC_PASSWORD_HASH_MAX];
    if (edge_hash_password(password.ptr, password.len, hash)) {
        s_busy(q);
        return;
    }
    static const char *const drop[] = { "password", "password_hash" };
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    s_rewrite(body, drop, 2, 1, &out, &pk);
    mc_pack_kv_cstr(&pk, "password_hash", hash);
    edge_request_forward(q, (mc_str_t) { out.data, out.size });
    msgpack_sbuffer_destroy(&out);
}

static void
s_no_token(edge_req_t *q)
{
    edge_problem(q->r, 503, "token_unavailable", "no refresh token could be made; try again shortly", NULL,
                 "Retry-After: 1\r\n");
}

//  A 200 reply of a session message gets the refresh token the message named by its digest
//  only, after the members the actor sent; any other reply is left as it is.
static void
s_attach_token(zframe_t **reply, const char *token)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    if (mc_reply_decode(&u, zframe_data(*reply), zframe_size(*reply), &rep) == 0 && rep.status == 200 && rep.body
    &&  rep.body->type == MSGPACK_OBJECT_MAP) {
        msgpack_sbuffer body, out;
        msgpack_sbuffer_init(&body);
        msgpack_sbuffer_init(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, rep.body->via.map.size + 1);
        for (uint32_t i = 0; i < rep.body->via.map.size; i++) {
            mc_pack_obj(&pk, &rep.body->via.map.ptr[i].key);
            mc_pack_obj(&pk, &rep.body->via.map.ptr[i].val);
        }
        mc_pack_kv_cstr(&pk, "refresh_token", token);
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        mc_reply_raw(&pk, rep.id, rep.status, false, body.data, body.size, rep.replayed);
        zframe_t *amended = zframe_new(out.data, out.size);
        if (amended) {
            zframe_destroy(reply);
            *reply = amended;
        }
        msgpack_sbuffer_destroy(&out);
        msgpack_sbuffer_destroy(&body);
    }
    msgpack_unpacked_destroy(&u);
}

//  Sends the route's message, which names token by its digest, and answers with the reply,
//  token added when the session was opened or renewed.
static void
s_forward_issuing(edge_req_t *q, mc_str_t body, const char *token)
{
    zframe_t *reply = NULL;
    edge_call_t outcome = edge_request_call(q, q->route->msg->type, body, &reply);
    if (outcome == EDGE_CALL_REPLY)
        s_attach_token(&reply, token);
    edge_request_answer(q, outcome, reply);
    zframe_destroy(&reply);
}

//  Calls type with body; on success leaves the decoded reply in u/rep and returns 0; otherwise
//  answers the client with what happened and returns -1.
static int
s_step(edge_req_t *q, const char *type, mc_str_t body, zframe_t **frame, msgpack_unpacked *u, mc_reply_t *rep,
       int ok_status)
{
    edge_call_t outcome = edge_request_call(q, type, body, frame);
    if (outcome != EDGE_CALL_REPLY || mc_reply_decode(u, zframe_data(*frame), zframe_size(*frame), rep)
    ||  rep->status != ok_status) {
        edge_request_answer(q, outcome, *frame);
        return -1;
    }
    return 0;
}

static void
s_login(edge_req_t *q, const msgpack_object *body)
{
    mc_str_t email, password;
    mc_map_str(body, "email", &email);
    mc_map_str(body, "password", &password);
    //  the user, its sessions and the email's throttle all live on the email's shard (register
    //  drew the user's id to fall there: shard_by)
    q->pinned = true;
    q->shard = mc_shard_of_folded("identity", email.ptr, email.len);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_str(&pk, "email", email.ptr, email.len);
    zframe_t *frame = NULL;
    edge_call_t outcome = edge_request_call(q, "user.credentials", (mc_str_t) { sb.data, sb.size }, &frame);
    msgpack_sbuffer_destroy(&sb);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    char hash[MC_PASSWORD_HASH_MAX] = "";
    bool known = false;
    if (outcome != EDGE_CALL_REPLY || mc_reply_decode(&u, zframe_data(frame), zframe_size(frame), &rep)
    ||  (rep.status != 200 && rep.status != 404)) {
        //  throttled (429), or the service is away
        edge_request_answer(q, outcome, frame);
        goto done;
    }
    mc_str_t stored;
    if (rep.status == 200 && mc_map_str(rep.body, "password_hash", &stored) == 0 && stored.len < sizeof hash) {
        memcpy(hash, stored.ptr, stored.len);
        known = true;
    }
    bool ok = false;
    if (edge_hash_verify(known ? hash : NULL, password.ptr, password.len, &ok)) {
        s_busy(q);
        goto done;
    }
    //  the actor records a failure or opens the session; both answers come from it
    edge_token_text_t token, digest;
    if (edge_token_new(q->shard, token, digest)) {
        s_no_token(q);
        goto done;
    }
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mc_pack_kv_str(&pk, "email", email.ptr, email.len);
    mc_pack_kv_bool(&pk, "ok", ok);
    mc_pack_kv_cstr(&pk, "new_refresh_digest", digest);
    s_forward_issuing(q, (mc_str_t) { sb.data, sb.size }, token);
    msgpack_sbuffer_destroy(&sb);
    OPENSSL_cleanse(token, sizeof token);
done:
    msgpack_unpacked_destroy(&u);
    zframe_destroy(&frame);
}

static void
s_password(edge_req_t *q, const msgpack_object *body)
{
    mc_str_t current, fresh;
    mc_map_str(body, "current_password", &current);
    mc_map_str(body, "new_password", &fresh);
    zframe_t *frame = NULL;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    if (s_step(q, "user.password_hash", (mc_str_t) { "\x80", 1 }, &frame, &u, &rep, 200) == 0) {
        mc_str_t stored = { "", 0 }, email = { "", 0 };
        mc_map_str(rep.body, "password_hash", &stored);
        mc_map_str(rep.body, "email", &email);
        char hash[MC_PASSWORD_HASH_MAX] = "", mail[256] = "";
        snprintf(hash, sizeof hash, "%.*s", (int) stored.len, stored.ptr);
        snprintf(mail, sizeof mail, "%.*s", (int) email.len, email.ptr);
        bool ok = false;
        const char *why = edge_identity_policy(fresh, (mc_str_t) { mail, strlen(mail) });
        char fresh_hash[MC_PASSWORD_HASH_MAX];
        //  the new password's policy first: its answer must not tell whether current_password
        //  was right
        if (why)
            s_policy_problem(q, "new_password", why);
        else
        if (edge_hash_verify(hash, current.ptr, current.len, &ok)
        ||  (ok && edge_hash_password(fresh.ptr, fresh.len, fresh_hash)))
            s_busy(q);
        else {
            //  the actor records a wrong current_password against the sign-in throttle, or
            //  stores the new hash; both answers come from it
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, ok ? 2 : 1);
            mc_pack_kv_bool(&pk, "ok", ok);
            if (ok)
                mc_pack_kv_cstr(&pk, "password_hash", fresh_hash);
            edge_request_forward(q, (mc_str_t) { sb.data, sb.size });
            msgpack_sbuffer_destroy(&sb);
        }
    }
    msgpack_unpacked_destroy(&u);
    zframe_destroy(&frame);
}

//  refresh: the presented token's digest, and the digest of the one that replaces it; sent to
//  the shard the digest names, so a token with no session anywhere is unknown there (401)
static void
s_refresh(edge_req_t *q, const msgpack_object *body)
{
    mc_str_t presented = { "", 0 };
    mc_map_str(body, "refresh_token", &presented);
    edge_token_text_t was, token, digest;
    edge_token_digest(presented.ptr, presented.len, was);
    //  the presented token's digest names its shard; its successor must live there too
    q->pinned = true;
    q->shard = edge_token_shard(was);
    if (edge_token_new(q->shard, token, digest)) {
        s_no_token(q);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "refresh_digest", was);
    mc_pack_kv_cstr(&pk, "new_refresh_digest", digest);
    s_forward_issuing(q, (mc_str_t) { sb.data, sb.size }, token);
    msgpack_sbuffer_destroy(&sb);
    OPENSSL_cleanse(token, sizeof token);
}

//  logout: the presented token's digest
static void
s_logout(edge_req_t *q, const msgpack_object *body)
{
    mc_str_t presented = { "", 0 };
    mc_map_str(body, "refresh_token", &presented);
    edge_token_text_t was;
    edge_token_digest(presented.ptr, presented.len, was);
    q->pinned = true;
    q->shard = edge_token_shard(was);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "refresh_digest", was);
    edge_request_forward(q, (mc_str_t) { sb.data, sb.size });
    msgpack_sbuffer_destroy(&sb);
}

void
edge_identity_flow(edge_req_t *q, mc_str_t body)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (mc_msgpack_unpack(&u, body.ptr, body.len) || u.data.type != MSGPACK_OBJECT_MAP)
        edge_problem(q->r, 400, "malformed_json", "the body must be a JSON object", NULL, NULL);
    else
    if (q->route->flow == MC_FLOW_REGISTER)
        s_register(q, &u.data);
    else
    if (q->route->flow == MC_FLOW_LOGIN)
        s_login(q, &u.data);
    else
    if (q->route->flow == MC_FLOW_PASSWORD)
        s_password(q, &u.data);
    else
    if (q->route->flow == MC_FLOW_REFRESH)
        s_refresh(q, &u.data);
    else
    if (q->route->flow == MC_FLOW_LOGOUT)
        s_logout(q, &u.data);
    msgpack_unpacked_destroy(&u);
}
