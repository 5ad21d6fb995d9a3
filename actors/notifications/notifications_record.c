/*  The stored and public notification, its indexes, and notification.list (newest first).

    Stored value: a map of id, user_id, event_type, recipient (nil until known), subject, text,
    status, message_id, last_error (nil), phase, attempts, created_ms, updated_ms, next_ms. */
#include "notifications_db.h"
#include "mc_page.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  Longest id and user id the indexes take; events with longer ones are not ours to mail.
#define ID_MAX 64
#define USER_MAX 100

static uint64_t
s_fnv64(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

void
notifications_id(char out[MC_ULID_LEN + 1], uint64_t ms, mc_str_t event_id, unsigned n)
{
    static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    //  the ULID's 48 bits of time, then 80 bits of two differently seeded hashes of (event id, n)
    for (int i = 9; i >= 0; i--, ms >>= 5)
        out[i] = crockford[ms & 31];
    unsigned char nb[4] = { (unsigned char) (n >> 24), (unsigned char) (n >> 16), (unsigned char) (n >> 8),
                            (unsigned char) n };
    uint64_t h[2] = { 0xcbf29ce484222325ull, 0x84222325cbf29ce4ull };
    for (int k = 0; k < 2; k++)
        h[k] = s_fnv64(s_fnv64(h[k], event_id.ptr, event_id.len), nb, sizeof nb);
    for (int i = 10; i < 26; i++) {
        uint64_t *r = &h[i < 18 ? 0 : 1];
        out[i] = crockford[*r & 31];
        *r >>= 5;
    }
    out[26] = 0;
}

int
notifications_load(MDB_txn *txn, const notifications_db_t *db, mc_str_t id, msgpack_unpacked *u, note_t *n)
{
    memset(n, 0, sizeof *n);
    MDB_val k = { id.len, (void *) id.ptr }, v;
    int rc = id.len ? mdb_get(txn, db->notes, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    if (mc_msgpack_unpack(u, v.mv_data, v.mv_size))
        return MDB_CORRUPTED;
    const msgpack_object *m = &u->data;
    mc_str_t phase = { "", 0 };
    if (mc_map_str(m, "id", &n->id) || mc_map_str(m, "user_id", &n->user_id)
    ||  mc_map_str(m, "event_type", &n->event_type) || mc_map_str(m, "subject", &n->subject)
    ||  mc_map_str(m, "text", &n->text) || mc_map_str(m, "status", &n->status)
    ||  mc_map_str(m, "message_id", &n->message_id) || mc_map_str(m, "phase", &phase) || phase.len != 1
    ||  mc_map_int(m, "attempts", &n->attempts) || mc_map_uint(m, "created_ms", &n->created_ms)
    ||  mc_map_uint(m, "updated_ms", &n->updated_ms) || mc_map_uint(m, "next_ms", &n->next_ms))
        return MDB_CORRUPTED;
    mc_map_str(m, "recipient", &n->recipient);
    mc_map_str(m, "last_error", &n->last_error);
    n->phase = phase.ptr[0];
    return 0;
}

static void
s_kv_nullable(msgpack_packer *pk, const char *key, mc_str_t s)
{
    mc_pack_cstr(pk, key);
    if (s.len)
        mc_pack_str(pk, s.ptr, s.len);
    else
        msgpack_pack_nil(pk);
}

int
notifications_store(MDB_txn *txn, const notifications_db_t *db, const note_t *n, const note_t *before)
{
    if (!n->id.len || n->id.len > ID_MAX || n->user_id.len > USER_MAX)
        return EINVAL;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 14);
    mc_pack_kv_str(&pk, "id", n->id.ptr, n->id.len);
    mc_pack_kv_str(&pk, "user_id", n->user_id.ptr, n->user_id.len);
    mc_pack_kv_str(&pk, "event_type", n->event_type.ptr, n->event_type.len);
    s_kv_nullable(&pk, "recipient", n->recipient);
    mc_pack_kv_str(&pk, "subject", n->subject.ptr, n->subject.len);
    mc_pack_kv_str(&pk, "text", n->text.ptr, n->text.len);
    mc_pack_kv_str(&pk, "status", n->status.ptr, n->status.len);
    mc_pack_kv_str(&pk, "message_id", n->message_id.ptr, n->message_id.len);
    s_kv_nullable(&pk, "last_error", n->last_error);
    mc_pack_kv_str(&pk, "phase", &n->phase, 1);
    mc_pack_kv_int(&pk, "attempts", n->attempts);
    mc_pack_kv_uint(&pk, "created_ms", n->created_ms);
    mc_pack_kv_uint(&pk, "updated_ms", n->updated_ms);
    mc_pack_kv_uint(&pk, "next_ms", n->next_ms);
    //  n may point into the stored record, which the writes below may move: every key first
    unsigned char id[ID_MAX], tkey[8 + ID_MAX], ukey[USER_MAX + 9 + ID_MAX], old[8 + ID_MAX], due[8 + ID_MAX];
    memcpy(id, n->id.ptr, n->id.len);
    mc_str_t idc = { (const char *) id, n->id.len };
    MDB_val k = { idc.len, id }, v = { sb.size, sb.data }, empty = { 0, "" };
    MDB_val tk = { mc_store_time_key(tkey, NULL, 0, n->created_ms, idc.ptr, idc.len), tkey };
    MDB_val uk = { mc_store_time_key(ukey, n->user_id.ptr, n->user_id.len, n->created_ms, idc.ptr, idc.len), ukey };
    MDB_val ok = { mc_store_time_key(old, NULL, 0, before ? before->next_ms : 0, idc.ptr, idc.len), old };
    MDB_val dk = { mc_store_time_key(due, NULL, 0, n->next_ms, idc.ptr, idc.len), due };
    bool was_due = before && before->phase != PHASE_FINAL, is_due = n->phase != PHASE_FINAL;
    int rc = mdb_put(txn, db->notes, &k, &v, 0);
    if (!rc && !before)
        rc = mdb_put(txn, db->by_time, &tk, &empty, 0);
    if (!rc && !before)
        rc = mdb_put(txn, db->by_user, &uk, &empty, 0);
    if (!rc && was_due) {
        rc = mdb_del(txn, db->due, &ok, NULL);
        rc = rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (!rc && is_due)
        rc = mdb_put(txn, db->due, &dk, &empty, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

void
notifications_pack(msgpack_packer *pk, const note_t *n)
{
    char created[32], updated[32];
    mc_rfc3339(created, sizeof created, n->created_ms);
    mc_rfc3339(updated, sizeof updated, n->updated_ms);
    msgpack_pack_map(pk, 12);
    mc_pack_kv_str(pk, "id", n->id.ptr, n->id.len);
    mc_pack_kv_str(pk, "user_id", n->user_id.ptr, n->user_id.len);
    mc_pack_kv_str(pk, "event_type", n->event_type.ptr, n->event_type.len);
    mc_pack_kv_cstr(pk, "channel", "email");
    s_kv_nullable(pk, "recipient", n->recipient);
    mc_pack_kv_str(pk, "subject", n->subject.ptr, n->subject.len);
    mc_pack_kv_str(pk, "status", n->status.ptr, n->status.len);
    mc_pack_kv_int(pk, "attempts", n->attempts);
    mc_pack_kv_str(pk, "message_id", n->message_id.ptr, n->message_id.len);
    s_kv_nullable(pk, "last_error", n->last_error);
    mc_pack_kv_cstr(pk, "created_at", created);
    mc_pack_kv_cstr(pk, "updated_at", updated);
}

//  A notification on its page.
static bool
s_visit(mc_ctx_t *ctx, mc_str_t id, msgpack_packer *pk, void *arg)
{
    (void) arg;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    note_t n;
    bool found = notifications_load(ctx->txn, ctx->state, id, &u, &n) == 0;
    if (found)
        notifications_pack(pk, &n);
    msgpack_unpacked_destroy(&u);
    return found;
}

int
notifications_list(mc_ctx_t *ctx)
{
    const notifications_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t user = mc_str_eq(ctx->req->role, "admin") ? (mc_str_t) { "", 0 } : ctx->req->user;
    if (!user.len && !mc_str_eq(ctx->req->role, "admin")) {
        mc_reply_error(ctx->pk, ctx->req->id, 401, "authentication_required", "sign in to see your notifications",
                       NULL);
        return 401;
    }
    if (user.len > USER_MAX) {
        mc_reply_error(ctx->pk, ctx->req->id, 400, "bad_envelope", "the user id is too long", NULL);
        return 400;
    }
    mc_page_t page = { .dbi = user.len ? db->by_user : db->by_time, .cursor = { "", 0 }, .to = UINT64_MAX,
                       .limit = 20 };
    mc_map_int(b, "limit", &page.limit);
    mc_map_str(b, "cursor", &page.cursor);
    //  the index by user for a customer, by time for an admin; both end in created ms + id
    char prefix[USER_MAX + 1];
    memcpy(prefix, user.ptr, user.len);
    prefix[user.len] = 0;
    page.prefix = (mc_str_t) { prefix, user.len ? user.len + 1 : 0 };
    return mc_page_reply(ctx, &page, s_visit, NULL);
}
