/*  Delivery: who a notification goes to (identity's user.contact and user.admins), its attempts
    (mail.send to the node's mailer) and their retries, all moved on by notification.step (the
    replies) and notification.tick (the clock).

    Requests are tagged "c:<id>" (a user's address), "a:<fan-out id>:<identity shard>" (the
    admins that shard keeps: every shard is asked, and the alert goes out once all have
    answered) and "m:<id>:<attempt>" (a mail). A mailer's "sent" ends a notification whichever attempt it
    answers, even one already counted as failed, since the mail did go; a failure counts only
    for the attempt in flight, so a late answer to an attempt already given up on cannot cost a
    second one. */
#include "notifications_db.h"

#include "mc_log.h"
#include "mc_util.h"

#include <stdio.h>
#include <string.h>

//  Work one tick takes on, at most; the rest waits for the next.
#define TICK_MAX 64

//  A fan-out's value: created and sent ms (8 bytes each), then {event_id, event_type, subject,
//  text, answered, admins}: answered has bit s set once identity shard s has named its admins,
//  admins holds what they named so far, [shard, id, email] each (both absent in fan-outs
//  recorded before identity had shards, which count as unanswered).
#define FANOUT_HEAD 16

//  What a fan-out holds, its strings pointing into a decoded copy.
typedef struct {
    uint64_t created, sent;
    mc_str_t event_id, type, subject, text;
    uint64_t answered;
    const msgpack_object *admins;   //  array, or NULL
} fanout_t;

//  Every identity shard's bit.
static uint64_t
s_all_shards(void)
{
    unsigned shards = mc_schema_shards("identity");
    return shards >= 64 ? UINT64_MAX : (1ull << shards) - 1;
}

//  Writes fan-out fid: f, plus the admins shard named in items (an array, or NULL), who are
//  then counted in answered. 0 or an LMDB error.
static int
s_fanout_put(MDB_txn *txn, const notifications_db_t *db, mc_str_t fid, const fanout_t *f, unsigned shard,
             const msgpack_object *items)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    unsigned char head[FANOUT_HEAD];
    mc_be64_put(head, f->created);
    mc_be64_put(head + 8, f->sent);
    msgpack_sbuffer_write(&sb, (const char *) head, sizeof head);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mc_pack_kv_str(&pk, "event_id", f->event_id.ptr, f->event_id.len);
    mc_pack_kv_str(&pk, "event_type", f->type.ptr, f->type.len);
    mc_pack_kv_str(&pk, "subject", f->subject.ptr, f->subject.len);
    mc_pack_kv_str(&pk, "text", f->text.ptr, f->text.len);
    mc_pack_kv_uint(&pk, "answered", f->answered | (items ? 1ull << shard : 0));
    uint32_t had = f->admins ? f->admins->via.array.size : 0, more = 0;
    for (uint32_t i = 0; items && i < items->via.array.size; i++) {
        mc_str_t admin, email;
        const msgpack_object *it = &items->via.array.ptr[i];
        more += mc_map_str(it, "id", &admin) == 0 && mc_map_str(it, "email", &email) == 0 && admin.len
             && admin.len <= 64 && email.len;
    }
    mc_pack_cstr(&pk, "admins");
    msgpack_pack_array(&pk, had + more);
    for (uint32_t i = 0; i < had; i++)
        mc_pack_obj(&pk, &f->admins->via.array.ptr[i]);
    for (uint32_t i = 0; items && i < items->via.array.size; i++) {
        mc_str_t admin, email;
        const msgpack_object *it = &items->via.array.ptr[i];
        if (mc_map_str(it, "id", &admin) || mc_map_str(it, "email", &email) || !admin.len || admin.len > 64
        ||  !email.len)
            continue;
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint32(&pk, shard);
        mc_pack_str(&pk, admin.ptr, admin.len);
        mc_pack_str(&pk, email.ptr, email.len);
    }
    MDB_val k = { fid.len, (void *) fid.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->fanouts, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static uint64_t
s_backoff(const notifications_db_t *db, int64_t attempts)
{
    uint64_t delay = db->retry_ms;
    for (int64_t i = 1; i < attempts && delay < BACKOFF_MAX_MS; i++)
        delay *= 2;
    return delay < BACKOFF_MAX_MS ? delay : BACKOFF_MAX_MS;
}

void
notifications_attempt(mc_ctx_t *ctx, note_t *n)
{
    n->attempts++;
    n->phase = PHASE_SENDING;
    n->status = MC_STR("pending");
    n->updated_ms = ctx->req->time;
    n->next_ms = ctx->req->time + ATTEMPT_MS;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_str(&pk, "id", n->id.ptr, n->id.len);
    mc_pack_kv_str(&pk, "message_id", n->message_id.ptr, n->message_id.len);
    mc_pack_kv_str(&pk, "to", n->recipient.ptr, n->recipient.len);
    mc_pack_kv_str(&pk, "subject", n->subject.ptr, n->subject.len);
    mc_pack_kv_str(&pk, "text", n->text.ptr, n->text.len);
    char id[MC_REQUEST_ID_MAX + 1], tag[MC_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s-m%" PRId64, (int) n->id.len, n->id.ptr, n->attempts);
    snprintf(tag, sizeof tag, "m:%.*s:%" PRId64, (int) n->id.len, n->id.ptr, n->attempts);
    mc_send_t send = { .service = "mailer", .shard = 0, .type = "mail.send", .id = { id, strlen(id) },
                       .key = n->id, .role = MC_STR("system"), .body = &sb, .tag = tag };
    mc_send(ctx, &send);
    msgpack_sbuffer_destroy(&sb);
}

//  Asks identity for the address of n's user; asked again at next_ms until it answers.
static void
s_lookup(mc_ctx_t *ctx, note_t *n)
{
    char id[MC_REQUEST_ID_MAX + 1], tag[MC_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s-c", (int) n->id.len, n->id.ptr);
    snprintf(tag, sizeof tag, "c:%.*s", (int) n->id.len, n->id.ptr);
    unsigned shard = mc_fnv1a32(n->user_id.ptr, n->user_id.len) % mc_schema_shards("identity");
    mc_send_t send = { .service = "identity", .shard = shard, .type = "user.contact", .id = { id, strlen(id) },
                       .key = n->user_id, .role = MC_STR("system"), .tag = tag };
    mc_send(ctx, &send);
    n->next_ms = ctx->req->time + RESEND_MS;
}

//  An attempt failed (detail says why): the next one after the backoff, or failed for good
//  after the last one, or at once when the mail can never be sent.
static void
s_failed(const mc_ctx_t *ctx, note_t *n, const char *detail, bool permanent)
{
    const notifications_db_t *db = ctx->state;
    n->last_error = (mc_str_t) { detail, strlen(detail) };
    n->updated_ms = ctx->req->time;
    if (permanent || n->attempts >= db->attempts) {
        n->status = MC_STR("failed");
        n->phase = PHASE_FINAL;
    }
    else {
        n->phase = PHASE_WAITING;
        n->next_ms = ctx->req->time + s_backoff(db, n->attempts);
    }
}

int
notifications_fanout(mc_ctx_t *ctx, mc_str_t event_id, mc_str_t type, const char *subject, mc_str_t text)
{
    char fid[MC_ULID_LEN + 1];
    notifications_id(fid, ctx->req->time, event_id, 0);
    fanout_t f = { .created = ctx->req->time, .event_id = event_id, .type = type,
                   .subject = { subject, strlen(subject) }, .text = text };
    return s_fanout_put(ctx->txn, ctx->state, (mc_str_t) { fid, MC_ULID_LEN }, &f, 0, NULL);
}

//  Fan-out fid into f, from a copy (the notifications it makes are written while it is read),
//  which u keeps alive. 0, MDB_NOTFOUND, MDB_CORRUPTED or an LMDB error.
static int
s_fanout_load(MDB_txn *txn, const notifications_db_t *db, mc_str_t fid, msgpack_sbuffer *copy, msgpack_unpacked *u,
              fanout_t *f)
{
    MDB_val k = { fid.len, (void *) fid.ptr }, v;
    int rc = fid.len ? mdb_get(txn, db->fanouts, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    if (v.mv_size <= FANOUT_HEAD)
        return MDB_CORRUPTED;
    msgpack_sbuffer_write(copy, v.mv_data, v.mv_size);
    *f = (fanout_t) { .created = mc_be64_get((const unsigned char *) copy->data),
                      .sent = mc_be64_get((const unsigned char *) copy->data + 8) };
    if (mc_msgpack_unpack(u, copy->data + FANOUT_HEAD, copy->size - FANOUT_HEAD)
    ||  mc_map_str(&u->data, "event_id", &f->event_id) || mc_map_str(&u->data, "event_type", &f->type)
    ||  mc_map_str(&u->data, "subject", &f->subject) || mc_map_str(&u->data, "text", &f->text))
        return MDB_CORRUPTED;
    mc_map_uint(&u->data, "answered", &f->answered);
    f->admins = mc_map_get(&u->data, "admins");
    if (f->admins && f->admins->type != MSGPACK_OBJECT_ARRAY)
        f->admins = NULL;
    return 0;
}

//  Every admin a fan-out collected, shard by shard (so the mails are numbered alike whatever
//  order the shards answered in): one notification each, each attempted at once.
static int
s_fanout_send(mc_ctx_t *ctx, const fanout_t *f)
{
    const notifications_db_t *db = ctx->state;
    unsigned shards = mc_schema_shards("identity"), made = 0;
    int rc = 0;
    for (unsigned shard = 0; shard < shards && !rc; shard++)
        for (uint32_t i = 0; !rc && f->admins && i < f->admins->via.array.size; i++) {
            const msgpack_object *a = &f->admins->via.array.ptr[i];
            if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size != 3
            ||  a->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a->via.array.ptr[0].via.u64 != shard)
                continue;
            mc_str_t admin = mc_obj_str(&a->via.array.ptr[1]), email = mc_obj_str(&a->via.array.ptr[2]);
            if (!admin.len || !email.len)
                continue;
            made++;
            char id[MC_ULID_LEN + 1], message_id[128];
            notifications_id(id, f->created, f->event_id, made);
            snprintf(message_id, sizeof message_id, "<%.*s.%u@mercato>", (int) f->event_id.len, f->event_id.ptr, made);
            note_t n = {
                .id = { id, MC_ULID_LEN }, .user_id = admin, .event_type = f->type, .recipient = email,
                .subject = f->subject, .text = f->text, .status = MC_STR("pending"),
                .message_id = { message_id, strlen(message_id) }, .phase = PHASE_WAITING,
                .created_ms = f->created, .updated_ms = ctx->req->time,
            };
            notifications_attempt(ctx, &n);
            rc = notifications_store(ctx->txn, db, &n, NULL);
        }
    return rc;
}

//  Identity shard `shard`'s admins for fan-out fid: kept until every shard has answered, then
//  the alert goes to all of them. A shard that answers anything but 200, or not at all, is
//  asked again by the tick; an answer repeated changes nothing.
static int
s_admins_reply(mc_ctx_t *ctx, mc_str_t fid, unsigned shard, int status, const msgpack_object *body)
{
    const notifications_db_t *db = ctx->state;
    msgpack_sbuffer copy;
    msgpack_sbuffer_init(&copy);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    fanout_t f;
    int rc = s_fanout_load(ctx->txn, db, fid, &copy, &u, &f);
    const msgpack_object *items = mc_map_get(body, "items");
    uint64_t all = s_all_shards();
    if (!rc && status == 200 && shard < 64 && (all >> shard & 1) && !(f.answered >> shard & 1)) {
        static const msgpack_object none = { .type = MSGPACK_OBJECT_ARRAY };
        rc = s_fanout_put(ctx->txn, db, fid, &f, shard, items && items->type == MSGPACK_OBJECT_ARRAY ? items : &none);
        if (!rc && ((f.answered | 1ull << shard) & all) == all) {
            //  the record just written, with this shard's admins in it
            msgpack_sbuffer_clear(&copy);
            msgpack_unpacked_destroy(&u);
            msgpack_unpacked_init(&u);
            rc = s_fanout_load(ctx->txn, db, fid, &copy, &u, &f);
            if (!rc)
                rc = s_fanout_send(ctx, &f);
            if (!rc) {
                MDB_val k = { fid.len, (void *) fid.ptr };
                rc = mdb_del(ctx->txn, db->fanouts, &k, NULL);
            }
        }
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&copy);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  identity's answer about a user: the address, or that there is no such user.
static int
s_contact_reply(mc_ctx_t *ctx, mc_str_t id, int status, const msgpack_object *body)
{
    const notifications_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    note_t n;
    int rc = notifications_load(ctx->txn, db, id, &u, &n);
    mc_str_t email = { "", 0 };
    if (!rc && n.phase == PHASE_LOOKUP && (status == 200 || status == 404)) {
        note_t before = n;
        if (status == 200 && mc_map_str(body, "email", &email) == 0 && email.len) {
            n.recipient = email;
            notifications_attempt(ctx, &n);
        }
        else {
            n.status = MC_STR("failed");
            n.phase = PHASE_FINAL;
            n.updated_ms = ctx->req->time;
            n.last_error = MC_STR("the user has no address to mail");
        }
        rc = notifications_store(ctx->txn, db, &n, &before);
    }
    msgpack_unpacked_destroy(&u);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  The mailer's answer to attempt of notification id.
static int
s_mail_reply(mc_ctx_t *ctx, mc_str_t id, int64_t attempt, int status, const msgpack_object *body,
             const msgpack_object *error)
{
    const notifications_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    note_t n;
    int rc = notifications_load(ctx->txn, db, id, &u, &n);
    note_t before = n;
    bool changed = false;
    char detail[256];
    if (!rc && (n.phase != PHASE_FINAL || mc_str_eq(n.status, "failed")) && status == 200) {
        mc_str_t outcome = { "", 0 };
        mc_map_str(body, "outcome", &outcome);
        n.status = mc_str_eq(outcome, "logged") ? MC_STR("logged") : MC_STR("sent");
        n.phase = PHASE_FINAL;
        n.last_error = (mc_str_t) { "", 0 };
        n.updated_ms = ctx->req->time;
        changed = true;
    }
    else
    if (!rc && n.phase == PHASE_SENDING && attempt == n.attempts) {
        mc_str_t why = { "", 0 };
        mc_map_str(error, "detail", &why);
        if (why.len)
            snprintf(detail, sizeof detail, "%.*s", (int) why.len, why.ptr);
        else
            snprintf(detail, sizeof detail, status == 503 ? "no mailer is running" : "the mailer answered %d", status);
        //  a mail the mailer refuses (not one it failed to hand over) would be refused again
        s_failed(ctx, &n, detail, status >= 400 && status < 500);
        changed = true;
    }
    if (changed)
        rc = notifications_store(ctx->txn, db, &n, &before);
    msgpack_unpacked_destroy(&u);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
notifications_step(mc_ctx_t *ctx)
{
    mc_str_t tag = { "", 0 };
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    const msgpack_object *body = mc_map_get(ctx->req->body, "body");
    const msgpack_object *error = mc_map_get(ctx->req->body, "error");
    int rc = 0;
    if (tag.len > 2 && tag.ptr[1] == ':') {
        mc_str_t rest = { tag.ptr + 2, tag.len - 2 };
        if (tag.ptr[0] == 'c')
            rc = s_contact_reply(ctx, rest, (int) status, body);
        else
        if (tag.ptr[0] == 'a') {
            //  "<fid>:<shard>"; a bare fid was asked of the only shard there was
            const char *colon = memchr(rest.ptr, ':', rest.len);
            const char *digits = colon ? colon + 1 : rest.ptr + rest.len, *end = rest.ptr + rest.len;
            long shard = colon && digits == end ? -1 : 0;
            for (const char *p = digits; p < end && shard >= 0; p++)
                shard = *p >= '0' && *p <= '9' && shard < 64 ? shard * 10 + (*p - '0') : -1;
            if (shard >= 0 && shard < 64)
                rc = s_admins_reply(ctx, (mc_str_t) { rest.ptr, colon ? (size_t) (colon - rest.ptr) : rest.len },
                                    (unsigned) shard, (int) status, body);
        }
        else
        if (tag.ptr[0] == 'm') {
            const char *colon = memrchr(rest.ptr, ':', rest.len);
            int64_t attempt = 0;
            for (const char *p = colon ? colon + 1 : rest.ptr + rest.len; p < rest.ptr + rest.len; p++)
                attempt = *p >= '0' && *p <= '9' && attempt < 1000000 ? attempt * 10 + (*p - '0') : -1;
            if (colon && attempt > 0)
                rc = s_mail_reply(ctx, (mc_str_t) { rest.ptr, (size_t) (colon - rest.ptr) }, attempt, (int) status,
                                  body, error);
        }
    }
    return rc ? FAIL(rc) : mc_reply_empty(ctx, 200);
}

//  Up to TICK_MAX keys of dbi, copied, so the loop that handles them may write. With due, only
//  those whose time has come.
static size_t
s_keys(MDB_txn *txn, MDB_dbi dbi, bool due, uint64_t now, unsigned char (*keys)[72], size_t *lens)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, dbi, &cur))
        return 0;
    MDB_val k, v;
    size_t n = 0;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < TICK_MAX;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (due && (k.mv_size <= 8 || mc_be64_get(k.mv_data) > now))
            break;
        if (k.mv_size <= sizeof keys[0]) {
            memcpy(keys[n], k.mv_data, k.mv_size);
            lens[n++] = k.mv_size;
        }
    }
    mdb_cursor_close(cur);
    return n;
}

//  Notifications whose time has come: a lookup to resend, an attempt to make, or an attempt
//  the mailer never answered.
static int
s_tick_due(mc_ctx_t *ctx)
{
    const notifications_db_t *db = ctx->state;
    unsigned char keys[TICK_MAX][72];
    size_t lens[TICK_MAX];
    size_t count = s_keys(ctx->txn, db->due, true, ctx->req->time, keys, lens);
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        note_t n;
        rc = notifications_load(ctx->txn, db, (mc_str_t) { (const char *) keys[i] + 8, lens[i] - 8 }, &u, &n);
        if (rc == MDB_CORRUPTED)
            mc_error("unreadable notification left out of delivery", "\"key_bytes\":%zu", lens[i]);
        if (rc == MDB_NOTFOUND || rc == MDB_CORRUPTED
        ||  (!rc && (n.phase == PHASE_FINAL || n.next_ms != mc_be64_get(keys[i])))) {
            //  an entry that outlived its notification's schedule, or one that would stop every tick
            MDB_val k = { lens[i], keys[i] };
            rc = mdb_del(ctx->txn, db->due, &k, NULL);
        }
        else
        if (!rc) {
            note_t before = n;
            if (n.phase == PHASE_LOOKUP)
                s_lookup(ctx, &n);
            else
            if (n.phase == PHASE_WAITING)
                notifications_attempt(ctx, &n);
            else
                s_failed(ctx, &n, "the mailer did not answer", false);
            rc = notifications_store(ctx->txn, db, &n, &before);
        }
        msgpack_unpacked_destroy(&u);
    }
    return rc;
}

//  Alerts still waiting for the lists of admins ask again, each identity shard that has not
//  answered yet.
static int
s_tick_fanouts(mc_ctx_t *ctx)
{
    const notifications_db_t *db = ctx->state;
    unsigned char keys[TICK_MAX][72];
    size_t lens[TICK_MAX];
    size_t count = s_keys(ctx->txn, db->fanouts, false, 0, keys, lens);
    unsigned shards = mc_schema_shards("identity");
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        mc_str_t fid = { (const char *) keys[i], lens[i] };
        msgpack_sbuffer copy;
        msgpack_sbuffer_init(&copy);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        fanout_t f;
        rc = s_fanout_load(ctx->txn, db, fid, &copy, &u, &f);
        if (rc == MDB_CORRUPTED) {
            //  it could never be sent, and it would stop every tick
            mc_error("unreadable low-stock alert dropped", "\"id\":\"%.*s\"", (int) fid.len, fid.ptr);
            MDB_val k = { fid.len, keys[i] };
            rc = mdb_del(ctx->txn, db->fanouts, &k, NULL);
        }
        else
        if (!rc && f.sent + RESEND_MS <= ctx->req->time) {
            for (unsigned shard = 0; shard < shards; shard++) {
                if (f.answered >> shard & 1)
                    continue;
                char id[MC_REQUEST_ID_MAX + 1], tag[MC_REQUEST_ID_MAX + 1];
                snprintf(id, sizeof id, "%.*s-a%u", (int) fid.len, fid.ptr, shard);
                snprintf(tag, sizeof tag, "a:%.*s:%u", (int) fid.len, fid.ptr, shard);
                mc_send_t send = { .service = "identity", .shard = shard, .type = "user.admins",
                                   .id = { id, strlen(id) }, .key = MC_STR("admins"), .role = MC_STR("system"),
                                   .tag = tag };
                mc_send(ctx, &send);
            }
            f.sent = ctx->req->time;
            rc = s_fanout_put(ctx->txn, db, fid, &f, 0, NULL);
        }
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&copy);
    }
    return rc;
}

int
notifications_tick(mc_ctx_t *ctx)
{
    int rc = s_tick_due(ctx);
    if (!rc)
        rc = s_tick_fanouts(ctx);
    return rc ? FAIL(rc) : mc_reply_empty(ctx, 200);
}
