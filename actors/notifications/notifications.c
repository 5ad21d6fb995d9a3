#include "notifications_db.h"
#include "notifications_render.h"

#include "mc_config.h"
#include "mc_log.h"

#include <stdio.h>
#include <string.h>

static int
s_open(mc_store_t *store, const char *data_dir, void **state)
{
    (void) data_dir;
    notifications_db_t *db = calloc(1, sizeof *db);
    if (!db)
        return -1;
    static const char *const names[] = { "notes", "by_time", "by_user", "due", "fanouts", "processed" };
    MDB_dbi *const dbis[] = { &db->notes, &db->by_time, &db->by_user, &db->due, &db->fanouts, &db->processed };
    int rc = mc_store_dbis(store, names, dbis, 6);
    if (rc) {
        free(db);
        return rc;
    }
    db->retry_ms = (uint64_t) mc_config_env_long("MERCATO_SMTP_RETRY_MS", 1000, 1, BACKOFF_MAX_MS);
    db->attempts = mc_config_env_long("MERCATO_SMTP_ATTEMPTS", 10, 1, 100);
    *state = db;
    return 0;
}

static int
s_handled(mc_ctx_t *ctx, bool duplicate)
{
    mc_reply_begin(ctx->pk, ctx->req->id, 200, NULL);
    msgpack_pack_map(ctx->pk, 1);
    mc_pack_kv_bool(ctx->pk, "duplicate", duplicate);
    return 200;
}

//  notification.event: an event from Kafka becomes the notifications it causes, once.
static int
s_event(mc_ctx_t *ctx)
{
    const notifications_db_t *db = ctx->state;
    const msgpack_object *b = ctx->req->body;
    mc_str_t event_id = { "", 0 }, type = { "", 0 }, user = { "", 0 }, email = { "", 0 };
    mc_map_str(b, "event_id", &event_id);
    mc_map_str(b, "type", &type);
    const msgpack_object *data = mc_map_get(b, "data");
    notify_audience_t who = notifications_audience(type);
    if (who == NOTIFY_NOBODY || !data || data->type != MSGPACK_OBJECT_MAP)
        return s_handled(ctx, false);
    int rc = mc_store_once(ctx->txn, db->processed, event_id.ptr, event_id.len);
    if (rc == MDB_KEYEXIST)
        return s_handled(ctx, true);
    if (rc)
        return FAIL(rc);
    mc_map_str(data, "user_id", &user);
    mc_map_str(data, "email", &email);
    if (who != NOTIFY_ADMINS && (!user.len || user.len > 64 || (who == NOTIFY_REGISTERED && !email.len))) {
        char esc[200];
        mc_warn("event names nobody to notify, skipped", "\"event_id\":\"%s\"",
                mc_log_escape(esc, sizeof esc, event_id.ptr, event_id.len));
        return s_handled(ctx, false);
    }
    char subject[NOTIFY_SUBJECT_MAX];
    msgpack_sbuffer text;
    msgpack_sbuffer_init(&text);
    notifications_render(type, data, subject, &text);
    if (who == NOTIFY_ADMINS)
        rc = notifications_fanout(ctx, event_id, type, subject, (mc_str_t) { text.data, text.size });
    else {
        //  the clock makes the first move (attempt or lookup): an event may be old news by
        //  the time it is consumed, and its time must not start an attempt's timeout
        char id[MC_ULID_LEN + 1], message_id[128];
        notifications_id(id, ctx->req->time, event_id, 0);
        snprintf(message_id, sizeof message_id, "<%.*s@mercato>", (int) event_id.len, event_id.ptr);
        note_t n = {
            .id = { id, MC_ULID_LEN }, .user_id = user, .event_type = type,
            .recipient = who == NOTIFY_REGISTERED ? email : (mc_str_t) { "", 0 },
            .subject = { subject, strlen(subject) }, .text = { text.data, text.size }, .status = MC_STR("pending"),
            .message_id = { message_id, strlen(message_id) },
            .phase = who == NOTIFY_REGISTERED ? PHASE_WAITING : PHASE_LOOKUP,
            .created_ms = ctx->req->time, .updated_ms = ctx->req->time,
        };
        rc = notifications_store(ctx->txn, db, &n, NULL);
    }
    msgpack_sbuffer_destroy(&text);
    return rc ? FAIL(rc) : s_handled(ctx, false);
}

//  notification.test: a test mail to any address, from an admin; delivered like any other.
static int
s_test(mc_ctx_t *ctx)
{
    const notifications_db_t *db = ctx->state;
    const mc_request_t *req = ctx->req;
    if (!mc_str_eq(req->role, "admin")) {
        mc_reply_error(ctx->pk, req->id, 403, "forbidden", "only an admin may send test mails", NULL);
        return 403;
    }
    //  its id is short whatever the message id, since it names the mailer's requests in tags
    char id[MC_ULID_LEN + 1];
    notifications_id(id, req->time, req->id, 0);
    //  the same message again: its notification, as it is now
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    note_t n;
    int rc = notifications_load(ctx->txn, db, (mc_str_t) { id, MC_ULID_LEN }, &u, &n);
    if (rc == 0) {
        mc_reply_begin(ctx->pk, req->id, 202, NULL);
        notifications_pack(ctx->pk, &n);
    }
    msgpack_unpacked_destroy(&u);
    if (rc != MDB_NOTFOUND)
        return rc ? FAIL(rc) : 202;
    mc_str_t to = { "", 0 };
    mc_map_str(req->body, "to", &to);
    char subject[NOTIFY_SUBJECT_MAX], message_id[128];
    msgpack_sbuffer text;
    msgpack_sbuffer_init(&text);
    notifications_render(MC_STR("notification.test"), req->body, subject, &text);
    snprintf(message_id, sizeof message_id, "<%.*s@mercato>", (int) req->id.len, req->id.ptr);
    n = (note_t) {
        .id = { id, MC_ULID_LEN }, .user_id = req->user, .event_type = MC_STR("notification.test"), .recipient = to,
        .subject = { subject, strlen(subject) }, .text = { text.data, text.size }, .status = MC_STR("pending"),
        .message_id = { message_id, strlen(message_id) }, .phase = PHASE_WAITING,
        .created_ms = req->time, .updated_ms = req->time,
    };
    notifications_attempt(ctx, &n);
    rc = notifications_store(ctx->txn, db, &n, NULL);
    if (!rc) {
        mc_reply_begin(ctx->pk, req->id, 202, NULL);
        notifications_pack(ctx->pk, &n);
    }
    msgpack_sbuffer_destroy(&text);
    return rc ? FAIL(rc) : 202;
}

static const mc_handler_t s_handlers[] = {
    { "notification.event", true, s_event },
    { "notification.list", false, notifications_list },
    { "notification.test", true, s_test },
    { "notification.step", true, notifications_step },
    { "notification.tick", true, notifications_tick },
};

//  notification.event acts on the events that mail someone
static bool
s_wants_event(mc_str_t type)
{
    return notifications_audience(type) != NOTIFY_NOBODY;
}

const mc_service_t notifications_service = {
    .name = "notifications",
    .open = s_open,
    .handlers = s_handlers,
    .nhandlers = sizeof s_handlers / sizeof *s_handlers,
    .step = "notification.step",
    .tick = "notification.tick",
    .shared_reads = true,       //  reads use only their transaction and the dbi handles
    .wants_event = s_wants_event,
};
