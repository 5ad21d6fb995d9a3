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

void
mc_core_destroy(mc_core_t **self_p)
{
    mc_core_t *self = *self_p;
    if (!self)
        return;
    if (self->state)
        self->service->close(&self->state);
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

static const mc_handler_t *
s_find(const mc_service_t *service, mc_str_t type)
{
    for (size_t i = 0; i < service->nhandlers; i++)
        if (mc_str_eq(type, service->handlers[i].type))
            return &service->handlers[i];
    return NULL;
}

//  Runs the handler in its transaction; returns its status or an LMDB error.
static int
s_run(mc_core_t *self, const mc_handler_t *h, const mc_request_t *req, msgpack_packer *pk)
{
    MDB_txn *txn;
    int rc = h->write ? mc_store_begin(self->store, &txn) : mc_store_read(self->store, &txn);
    if (rc)
        return rc;
    mc_ctx_t ctx = { .req = req, .txn = txn, .state = self->state, .pk = pk, .outbox = self->outbox,
                     .outbox_seq = self->outbox_seq, .service = self->service->name };
    int status = h->fn(&ctx);
    if (!h->write) {
        mc_store_read_end(self->store, txn);
        return status;
    }
    if (status < 0 || (status >= 400 && !ctx.commit)) {
        mdb_txn_abort(txn);
        return status;
    }
    rc = mdb_txn_commit(txn);
    return rc ? rc : status;
}

int
mc_core_handle(mc_core_t *self, const void *frame, size_t len, uint64_t now_ms, msgpack_sbuffer *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t req;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    int rc = mc_request_decode(&u, frame, len, &req);
    if (rc) {
        self->stats.malformed++;
        if (rc == MC_ESHAPE && req.id.len)
            mc_reply_error(&pk, req.id, 400, "bad_envelope", "the message envelope is malformed", NULL);
        msgpack_unpacked_destroy(&u);
        return rc == MC_ESHAPE && req.id.len ? 0 : -1;
    }
    if (req.deadline && now_ms > req.deadline) {
        //  its caller has already been told it timed out; doing it now would surprise them
        self->stats.expired++;
        msgpack_unpacked_destroy(&u);
        return -1;
    }
    const mc_handler_t *h = s_find(self->service, req.type);
    const mc_msgdef_t *def = h ? mc_schema_find(self->service->name, req.type) : NULL;
    mc_errors_t errs = { 0 };
    if (!h || !def) {
        mc_reply_error(&pk, req.id, 400, "unknown_message", "this service has no such message", NULL);
        self->stats.failed++;
    }
    else
    if (mc_schema_validate(def, req.body, &errs)) {
        mc_reply_error(&pk, req.id, 422, "validation_failed", "the request has invalid fields", &errs);
        self->stats.failed++;
    }
    else {
        int status;
        for (int attempt = 0;; attempt++) {
            status = s_run(self, h, &req, &pk);
            if (status != MDB_MAP_FULL || attempt == 8)
                break;
            msgpack_sbuffer_clear(out);
            if (mc_store_grow(self->store))
                break;
        }
        if (status < 0) {
            msgpack_sbuffer_clear(out);
            char type[64], corr[80];
            mc_error("handler failed", "\"type\":\"%s\",\"request_id\":\"%s\",\"error\":\"%s\"",
                     mc_log_escape(type, sizeof type, req.type.ptr, req.type.len),
                     mc_log_escape(corr, sizeof corr, req.corr.ptr, req.corr.len),
                     status > -30800 && status < -30700 ? mdb_strerror(status) : strerror(-status));
            if (status == MDB_MAP_FULL)
                mc_reply_error(&pk, req.id, 507, "storage_full", "the service has run out of storage", NULL);
            else
                mc_reply_error(&pk, req.id, 500, "internal", "the service failed to handle the request", NULL);
            self->stats.failed++;
        }
        else
            self->stats.handled++;
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
