#include "mc_actor.h"

#include "mc_log.h"

#include <string.h>
#include <stdio.h>

struct _mc_core_t {
    const mc_service_t *service;    //  handlers
    mc_store_t *store;              //  the LMDB environment
    void *state;                    //  the service's database handles
    MDB_dbi outbox;                 //  domain events waiting for the relay
    MDB_dbi outbox_seq;             //  the outbox's last sequence
    mc_core_stats_t stats;          //  counters
    mc_fx_t **fx;                   //  the current batch's effects
    size_t nfx, capfx;
    mc_core_t *owner;               //  a view (mc_core_view_new): the core whose store it reads
    bool declined;                  //  a view's last message is the owner's to handle
};

mc_core_t *
mc_core_new(const mc_service_t *service, const char *data_dir, unsigned shard, size_t map_max)
{
    mc_core_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->service = service;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/%s/%u", data_dir, service->name, shard);
    self->store = mc_store_new(dir, map_max);
    if (!self->store || mc_store_dbi(self->store, "outbox", MDB_CREATE, &self->outbox)
    ||  mc_store_dbi(self->store, "outbox_seq", MDB_CREATE, &self->outbox_seq)
    ||  service->open(self->store, data_dir, &self->state)) {
        mc_error("service open failed", "\"service\":\"%s\",\"dir\":\"%s\"", service->name, dir);
        mc_core_destroy(&self);
    }
    return self;
}

mc_core_t *
mc_core_view_new(mc_core_t *owner)
{
    mc_core_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->service = owner->service;
    self->store = owner->store;
    self->state = owner->state;
    self->outbox = owner->outbox;
    self->outbox_seq = owner->outbox_seq;
    self->owner = owner;
    return self;
}

mc_store_t *
mc_core_store(mc_core_t *self)
{
    return self->store;
}

void
mc_core_destroy(mc_core_t **self_p)
{
    mc_core_t *self = *self_p;
    if (!self)
        return;
    if (self->owner)
        self->state = NULL, self->store = NULL;     //  the owner's, which it closes itself
    else
    if (self->state && self->service->close)
        self->service->close(&self->state);
    else
        free(self->state);
    for (size_t i = 0; i < self->capfx; i++)
        if (self->fx[i]) {
            msgpack_sbuffer_destroy(&self->fx[i]->data);
            free(self->fx[i]);
        }
    free(self->fx);
    mc_store_destroy(&self->store);
    free(self);
    *self_p = NULL;
}

MDB_env *
mc_core_env(mc_core_t *self)
{
    return mc_store_env(self->store);
}

MDB_dbi
mc_core_outbox(mc_core_t *self)
{
    return self->outbox;
}

mc_core_stats_t
mc_core_stats(mc_core_t *self)
{
    return self->stats;
}

const mc_service_t *
mc_core_service(mc_core_t *self)
{
    return self->service;
}

mc_fx_t *const *
mc_core_effects(mc_core_t *self, size_t *count)
{
    *count = self->nfx;
    return self->fx;
}

//  A fresh effect at the end of the list; entries are kept and reused across batches.
static mc_fx_t *
s_fx_push(mc_core_t *self, mc_fx_kind_t kind)
{
    if (self->nfx == self->capfx) {
        size_t cap = self->capfx ? self->capfx * 2 : 64;
        mc_fx_t **fx = realloc(self->fx, cap * sizeof *fx);
        if (!fx)
            abort();
        memset(fx + self->capfx, 0, (cap - self->capfx) * sizeof *fx);
        self->fx = fx;
        self->capfx = cap;
    }
    mc_fx_t *fx = self->fx[self->nfx];
    if (!fx) {
        fx = self->fx[self->nfx] = calloc(1, sizeof *fx);
        if (!fx)
            abort();
        msgpack_sbuffer_init(&fx->data);
    }
    msgpack_sbuffer_clear(&fx->data);
    msgpack_sbuffer data = fx->data;
    memset(fx, 0, sizeof *fx);
    fx->data = data;
    fx->kind = kind;
    msgpack_packer_init(&fx->pk, &fx->data, msgpack_sbuffer_write);
    self->nfx++;
    return fx;
}

static void
s_copy(char *dst, size_t size, mc_str_t s)
{
    size_t n = s.len < size - 1 ? s.len : size - 1;
    memcpy(dst, s.ptr ? s.ptr : "", n);
    dst[n] = 0;
}

int
mc_reply_empty(mc_ctx_t *ctx, int status)
{
    mc_reply_begin(ctx->pk, ctx->req->id, status, NULL);
    msgpack_pack_nil(ctx->pk);
    return status;
}

void
mc_park(mc_ctx_t *ctx, const char *key, bool replayed)
{
    mc_fx_t *fx = s_fx_push(ctx->core, MC_FX_PARK);
    fx->origin = ctx->index;
    fx->replayed = replayed;
    fx->deadline = ctx->req->deadline;
    snprintf(fx->key, sizeof fx->key, "%s", key);
    s_copy(fx->id, sizeof fx->id, ctx->req->id);
}

msgpack_packer *
mc_answer(mc_ctx_t *ctx, const char *key, int status)
{
    mc_fx_t *fx = s_fx_push(ctx->core, MC_FX_ANSWER);
    fx->status = status;
    snprintf(fx->key, sizeof fx->key, "%s", key);
    return &fx->pk;
}

void
mc_answer_error(mc_ctx_t *ctx, const char *key, int status, const char *code, const char *detail,
                const mc_errors_t *errs)
{
    mc_fx_t *fx = s_fx_push(ctx->core, MC_FX_ANSWER);
    fx->status = status;
    fx->error = true;
    snprintf(fx->key, sizeof fx->key, "%s", key);
    mc_pack_error(&fx->pk, code, detail, errs);
}

void
mc_answer_raw(mc_ctx_t *ctx, const char *key, int status, bool error, const void *raw, size_t len)
{
    mc_fx_t *fx = s_fx_push(ctx->core, MC_FX_ANSWER);
    fx->status = status;
    fx->error = error;
    snprintf(fx->key, sizeof fx->key, "%s", key);
    if (len)
        msgpack_sbuffer_write(&fx->data, raw, len);
}

void
mc_send(mc_ctx_t *ctx, const mc_send_t *send)
{
    mc_fx_t *fx = s_fx_push(ctx->core, MC_FX_SEND);
    snprintf(fx->service, sizeof fx->service, "%s.%u", send->service, send->shard);
    snprintf(fx->tag, sizeof fx->tag, "%s", send->tag);
    const mc_request_t *req = ctx->req;
    snprintf(fx->corr, sizeof fx->corr, "%.*s", (int) req->corr.len, req->corr.ptr);
    snprintf(fx->trace, sizeof fx->trace, "%.*s", (int) req->trace.len, req->trace.ptr);
    mc_request_t out = {
        .id = send->id, .type = { send->type, strlen(send->type) }, .key = send->key,
        .corr = req->corr, .cause = req->id, .reply = MC_STR(""), .user = send->user, .role = send->role,
        .trace = req->trace, .idem = send->idem, .time = req->time, .deadline = req->time + 10000,
    };
    mc_request_encode(&fx->data, &out, send->body ? (mc_str_t) { send->body->data, send->body->size }
                                                  : (mc_str_t) { "", 0 });
}

static const mc_handler_t *
s_find(const mc_service_t *service, mc_str_t type)
{
    for (size_t i = 0; i < service->nhandlers; i++)
        if (mc_str_eq(type, service->handlers[i].type))
            return &service->handlers[i];
    return NULL;
}

//  The batch's open write transaction, and where its effects start.
typedef struct {
    MDB_txn *txn;               //  parent of every message's nested transaction, or NULL
    size_t first;               //  effects from here on depend on it committing
} group_t;

//  Commits the group; 0 or the LMDB error, with the group's effects left as they are.
static int
s_group_commit(group_t *g)
{
    if (!g->txn)
        return 0;
    int rc = mdb_txn_commit(g->txn);
    g->txn = NULL;
    return rc;
}

//  The group failed to commit: every caller in it gets a 500 and nothing else it asked for
//  happens.
static void
s_group_failed(mc_core_t *self, const group_t *g, int rc)
{
    mc_error("group commit failed", "\"service\":\"%s\",\"error\":\"%s\"", self->service->name,
             mdb_strerror(rc));
    for (size_t i = g->first; i < self->nfx; i++) {
        mc_fx_t *fx = self->fx[i];
        if (fx->kind == MC_FX_REPLY || fx->kind == MC_FX_PARK) {
            fx->kind = MC_FX_REPLY;
            msgpack_sbuffer_clear(&fx->data);
            mc_reply_error(&fx->pk, (mc_str_t) { fx->id, strlen(fx->id) }, 500, "internal",
                           "the service failed to store the change", NULL);
        }
        else
            fx->kind = MC_FX_NONE;
    }
}

//  Runs one validated message; returns its status or an LMDB error. Its effects follow the
//  reply entry at index at; a failure removes them.
static int
s_run(mc_core_t *self, group_t *g, const mc_handler_t *h, const mc_request_t *req, size_t index, size_t at)
{
    mc_fx_t *reply = self->fx[at];
    MDB_txn *txn = NULL;
    bool reading = false;
    int rc = 0;
    if (h->write) {
        if (!g->txn)
            rc = mc_store_begin(self->store, &g->txn);
        if (!rc)
            rc = mdb_txn_begin(mc_store_env(self->store), g->txn, 0, &txn);
    }
    else
    if (g->txn)
        txn = g->txn;
    else {
        rc = self->owner ? mc_store_read_shared(self->store, &txn) : mc_store_read(self->store, &txn);
        reading = true;
    }
    if (rc)
        return rc;
    mc_ctx_t ctx = { .req = req, .txn = txn, .state = self->state, .pk = &reply->pk, .outbox = self->outbox,
                     .outbox_seq = self->outbox_seq, .service = self->service->name, .core = self,
                     .index = index };
    int status = h->fn(&ctx);
    if (reading) {
        if (self->owner)
            mc_store_read_shared_end(self->store, txn);
        else
            mc_store_read_end(self->store, txn);
        return status;
    }
    if (!h->write)
        return status;
    if (status < 0 || (status >= 400 && !ctx.commit)) {
        mdb_txn_abort(txn);
        self->nfx = at + 1;
        return status;
    }
    rc = mdb_txn_commit(txn);
    if (rc)
        self->nfx = at + 1;
    return rc ? rc : status;
}

//  Whether a message from peer may be believed (CONTRACT §9): 0, or the status to refuse it with
//  and *why. The edge asserts end users (it verified their tokens) but never the runtime; a
//  node may ask on anyone's behalf, as the payments actor reads an order for its payer; nobody
//  else asks anything.
static int
s_refusal(const mc_msgdef_t *def, mc_peer_t peer, const mc_request_t *req, const char **why)
{
    *why = NULL;
    if (peer == MC_PEER_SELF)
        return 0;
    if (peer == MC_PEER_NONE || !(def->senders & (1u << peer)))
        *why = "this kind of peer may not send this message";
    else
    if (peer != MC_PEER_EDGE)
        return 0;
    else {
        bool admin = mc_str_eq(req->role, "admin"), customer = mc_str_eq(req->role, "customer");
        bool anonymous = mc_str_eq(req->role, "anonymous");
        if (!admin && !customer && !anonymous)
            *why = "the edge asserts only anonymous, customer or admin callers";
        else
        if (anonymous && def->access != MC_ACCESS_PUBLIC) {
            *why = "this message needs a signed-in caller";
            return 401;
        }
        else
        if (def->access == MC_ACCESS_ADMIN && !admin)
            *why = "the caller's role may not send this message";
    }
    return *why ? 403 : 0;
}

//  Handles one message in the group. Returns MDB_MAP_FULL, with its effects removed, when the
//  group must commit and the map grow before it can run; 0 otherwise.
static int
s_handle(mc_core_t *self, group_t *g, const mc_in_t *in, size_t index, uint64_t now_ms, bool last_try)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    size_t at = self->nfx;
    mc_fx_t *reply = s_fx_push(self, MC_FX_REPLY);
    reply->origin = index;
    int rc = mc_request_decode(&u, in->frame, in->len, &req);
    if (req.id.ptr)
        s_copy(reply->id, sizeof reply->id, req.id);
    const mc_handler_t *h = rc ? NULL : s_find(self->service, req.type);
    bool own = !rc && ((self->service->step && mc_str_eq(req.type, self->service->step))
                       || (self->service->tick && mc_str_eq(req.type, self->service->tick)));
    if (self->owner && (!h || h->write || own)) {
        //  a view runs reads only; the rest, what does not decode included, the owner counts
        //  and answers
        self->declined = true;
        reply->kind = MC_FX_NONE;
        msgpack_unpacked_destroy(&u);
        return 0;
    }
    if (rc) {
        self->stats.malformed++;
        if (rc == MC_ESHAPE && req.id.len)
            mc_reply_error(&reply->pk, req.id, 400, "bad_envelope", "the message envelope is malformed", NULL);
        else
            reply->kind = MC_FX_NONE;
        msgpack_unpacked_destroy(&u);
        return 0;
    }
    if (req.deadline && now_ms > req.deadline) {
        //  its caller has already been told it timed out; doing it now would surprise them
        self->stats.expired++;
        reply->kind = MC_FX_NONE;
        msgpack_unpacked_destroy(&u);
        return 0;
    }
    const mc_msgdef_t *def = h ? mc_schema_find(self->service->name, req.type) : NULL;
    mc_errors_t errs = { 0 };
    int status = 0;
    const char *why = NULL;
    int refused = 0;
    if (!h || !def) {
        mc_reply_error(&reply->pk, req.id, 400, "unknown_message", "this service has no such message", NULL);
        self->stats.failed++;
    }
    else
    if ((own && in->peer != MC_PEER_SELF) || (refused = s_refusal(def, in->peer, &req, &why))) {
        //  replies and ticks come from the actor's own runtime, never from outside; the rest
        //  only from the kinds of peer allowed to assert what the envelope says
        char type[64];
        why = why ? why : "this message is the runtime's own";
        mc_warn("message refused", "\"service\":\"%s\",\"type\":\"%s\",\"peer\":\"%s\",\"why\":\"%s\"",
                self->service->name, mc_log_escape(type, sizeof type, req.type.ptr, req.type.len),
                mc_peer_name(in->peer), why);
        mc_reply_error(&reply->pk, req.id, refused == 401 ? 401 : 403,
                       refused == 401 ? "unauthorized" : "forbidden_peer", why, NULL);
        self->stats.refused++;
    }
    else
    if (mc_schema_validate(def, req.body, &errs)) {
        mc_reply_error(&reply->pk, req.id, 422, "validation_failed", "the request has invalid fields", &errs);
        self->stats.failed++;
    }
    else {
        status = s_run(self, g, h, &req, index, at);
        reply = self->fx[at];
        if (status == MDB_MAP_FULL && !last_try) {
            self->nfx = at;
            msgpack_unpacked_destroy(&u);
            return MDB_MAP_FULL;
        }
        if (status < 0) {
            msgpack_sbuffer_clear(&reply->data);
            char type[64], corr[80];
            mc_error("handler failed", "\"type\":\"%s\",\"request_id\":\"%s\",\"error\":\"%s\"",
                     mc_log_escape(type, sizeof type, req.type.ptr, req.type.len),
                     mc_log_escape(corr, sizeof corr, req.corr.ptr, req.corr.len),
                     status > -30800 && status < -30700 ? mdb_strerror(status) : strerror(-status));
            if (status == MDB_MAP_FULL)
                mc_reply_error(&reply->pk, req.id, 507, "storage_full", "the service has run out of storage", NULL);
            else
                mc_reply_error(&reply->pk, req.id, 500, "internal", "the service failed to handle the request", NULL);
            self->stats.failed++;
        }
        else {
            if (status == MC_PARKED)
                reply->kind = MC_FX_NONE;
            self->stats.handled++;
        }
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}

void
mc_core_batch(mc_core_t *self, const mc_in_t *in, size_t n, uint64_t now_ms)
{
    self->nfx = 0;
    size_t i = 0;
    //  a view never grows the map: it reads under a pin, and growth waits for every pin
    int grown = self->owner ? 8 : 0;
    while (i < n) {
        //  a group runs until it ends or a message finds the map full; a full map grows and the
        //  messages whose writes did not commit run again
        group_t g = { NULL, self->nfx };
        size_t from = i;
        bool full = false;
        mc_core_stats_t before = self->stats;
        for (; i < n && !full; i++)
            if (s_handle(self, &g, &in[i], i, now_ms, grown == 8) == MDB_MAP_FULL) {
                full = true;
                i--;
            }
        int rc = s_group_commit(&g);
        if (rc == MDB_MAP_FULL && grown < 8) {
            self->nfx = g.first;
            self->stats = before;
            i = from;
        }
        else
        if (rc)
            s_group_failed(self, &g, rc);
        if ((rc == MDB_MAP_FULL || full) && grown < 8) {
            grown++;
            if (mc_store_grow(self->store))
                grown = 8;      //  at the ceiling: what still does not fit gets its 507
        }
    }
}

int
mc_core_handle(mc_core_t *self, mc_peer_t peer, const void *frame, size_t len, uint64_t now_ms,
               msgpack_sbuffer *out)
{
    mc_in_t in = { frame, len, peer };
    mc_core_batch(self, &in, 1, now_ms);
    for (size_t i = 0; i < self->nfx; i++)
        if (self->fx[i]->kind == MC_FX_REPLY) {
            msgpack_sbuffer_write(out, self->fx[i]->data.data, self->fx[i]->data.size);
            return 0;
        }
    return -1;
}

int
mc_core_read(mc_core_t *self, mc_peer_t peer, const void *frame, size_t len, uint64_t now_ms, msgpack_sbuffer *out)
{
    if (!self->owner)
        return 1;
    self->declined = false;
    mc_in_t in = { frame, len, peer };
    mc_core_batch(self, &in, 1, now_ms);
    //  a read that parks or asks another service needs the owner's runtime: it runs again
    //  there, which a read may (it changed nothing)
    if (self->declined || self->nfx != 1 || self->fx[0]->kind != MC_FX_REPLY)
        return 1;
    msgpack_sbuffer_write(out, self->fx[0]->data.data, self->fx[0]->data.size);
    return 0;
}
