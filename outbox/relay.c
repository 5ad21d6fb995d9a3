#include "relay.h"

#include "mc_event_sign.h"
#include "mc_json.h"
#include "mc_kafka.h"
#include "mc_log.h"
#include "mc_msgpack.h"
#include "mc_outbox.h"
#include "mc_util.h"

#include <czmq.h>
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <lmdb.h>

//  every shard of every service a node may run (main.c: 8 services x MC_SHARDS_MAX)
#define SOURCES_MAX 512
#define BATCH_MAX 2000              //  records read per pass over a source
#define INFLIGHT_MAX 50000          //  produced but not yet reported, per source
#define DELIVERED_MAX 65536         //  reports waiting to be turned into deletions

typedef struct {
    char dir[4096 + 600];           //  the environment's directory
    MDB_env *env;                   //  opened alongside the actor (LMDB allows many processes)
    MDB_dbi outbox, dead;           //  pending events, and those given up on
    bool ready;                     //  outbox exists and is open
    uint64_t next_seq;              //  the next sequence to produce (0: from the first record)
    uint64_t inflight;              //  produced, no report yet
    uint64_t delivered[DELIVERED_MAX];  //  reported delivered, not yet deleted
    size_t ndelivered;              //  entries in delivered
    uint64_t failed_seq;            //  lowest failed sequence since the last restart, 0 if none
    uint64_t failed_attempts;       //  attempts so far at failed_seq
    uint64_t retry_at;              //  mono ms before which a failed source waits
    uint64_t backlog, oldest_ms;    //  for the periodic report
} source_t;

typedef struct {
    source_t *source;               //  where it came from
    uint64_t seq;                   //  which record
} pending_t;

struct _relay_t {
    char data_dir[4096];            //  MERCATO_DATA_DIR
    char *brokers;                  //  fixed bootstrap list, or NULL
    char *bootstrap_file;           //  where the bootstrap list is read from otherwise
    char bootstrap[512];            //  the list in use
    rd_kafka_t *rk;                 //  the producer, or NULL while there is no bootstrap
    mc_event_signer_t *signer;      //  signs every record, or NULL: redrive only
    source_t *sources[SOURCES_MAX]; //  one per actor environment, allocated as found (each is
                                    //  half a megabyte: 16 shards of 8 services make 128)
    size_t nsources;
    uint64_t scanned_at, reported_at;   //  mono ms
    uint64_t pruned_at;                 //  mono ms of the last deletion pass
    uint64_t delivered, retried, dead;  //  counters
};

static int
s_txn_begin(MDB_env *env, unsigned flags, MDB_txn **txn)
{
    int rc = mdb_txn_begin(env, NULL, flags, txn);
    if (rc == MDB_MAP_RESIZED) {
        //  the actor grew the map: adopt its size and try again
        mdb_env_set_mapsize(env, 0);
        rc = mdb_txn_begin(env, NULL, flags, txn);
    }
    return rc;
}

static void
s_source_open(source_t *s)
{
    if (!s->env) {
        if (mdb_env_create(&s->env) || mdb_env_set_maxdbs(s->env, 32) || mdb_env_set_maxreaders(s->env, 126)
        ||  mdb_env_open(s->env, s->dir, MDB_NOTLS, 0600)) {
            if (s->env)
                mdb_env_close(s->env);
            s->env = NULL;
            return;
        }
    }
    MDB_txn *txn;
    if (s_txn_begin(s->env, 0, &txn))
        return;
    //  the actor creates the outbox; the dead-letter database is ours
    if (mdb_dbi_open(txn, "outbox", 0, &s->outbox) || mdb_dbi_open(txn, "outbox_dead", MDB_CREATE, &s->dead)) {
        mdb_txn_abort(txn);
        return;
    }
    if (mdb_txn_commit(txn) == 0) {
        s->ready = true;
        mc_info("relaying outbox", "\"dir\":\"%s\"", s->dir);
    }
}

//  Finds <data>/<service>/<shard>/data.mdb environments not seen yet.
static void
s_scan(relay_t *self)
{
    DIR *services = opendir(self->data_dir);
    struct dirent *svc;
    while (services && (svc = readdir(services))) {
        if (svc->d_name[0] == '.' || streq(svc->d_name, "keys") || streq(svc->d_name, "plane"))
            continue;
        char path[4096 + 264];
        snprintf(path, sizeof path, "%s/%s", self->data_dir, svc->d_name);
        DIR *shards = opendir(path);
        struct dirent *sh;
        while (shards && (sh = readdir(shards))) {
            if (sh->d_name[0] == '.')
                continue;
            char dir[sizeof path + 264], mdb[sizeof dir + 16];
            snprintf(dir, sizeof dir, "%s/%s", path, sh->d_name);
            snprintf(mdb, sizeof mdb, "%s/data.mdb", dir);
            if (access(mdb, F_OK))
                continue;
            bool known = false;
            for (size_t i = 0; i < self->nsources && !known; i++)
                known = streq(self->sources[i]->dir, dir);
            source_t *s = !known && self->nsources < SOURCES_MAX ? calloc(1, sizeof *s) : NULL;
            if (s) {
                self->sources[self->nsources++] = s;
                snprintf(s->dir, sizeof s->dir, "%s", dir);
            }
        }
        if (shards)
            closedir(shards);
    }
    if (services)
        closedir(services);
    for (size_t i = 0; i < self->nsources; i++)
        if (!self->sources[i]->ready)
            s_source_open(self->sources[i]);
}

static void
s_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    relay_t *self = opaque;
    pending_t *p = msg->_private;
    if (!p)
        return;
    source_t *s = p->source;
    s->inflight--;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (s->ndelivered < DELIVERED_MAX)
            s->delivered[s->ndelivered++] = p->seq;
        self->delivered++;
    }
    else {
        if (!s->failed_seq || p->seq < s->failed_seq)
            s->failed_seq = p->seq;
        mc_warn("delivery failed", "\"dir\":\"%s\",\"seq\":%" PRIu64 ",\"error\":\"%s\"", s->dir, p->seq,
                rd_kafka_err2str(msg->err));
    }
    free(p);
}

static void
s_producer_start(relay_t *self)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", self->bootstrap, err, sizeof err)
    ||  mc_kafka_conf_security(conf, err, sizeof err)
    ||  rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "linger.ms", "2", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "message.timeout.ms", "15000", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err)) {
        mc_error("kafka configuration refused", "\"error\":\"%s\"", err);
        rd_kafka_conf_destroy(conf);
        return;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, s_on_delivery);
    rd_kafka_conf_set_opaque(conf, self);
    self->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!self->rk)
        mc_error("cannot create the kafka producer", "\"error\":\"%s\"", err);
    else
        mc_info("producing to kafka", "\"bootstrap\":\"%s\"", self->bootstrap);
}

static void
s_producer_stop(relay_t *self)
{
    if (!self->rk)
        return;
    //  what is still in flight will be produced again from the outbox: nothing is lost
    rd_kafka_flush(self->rk, 1000);
    rd_kafka_purge(self->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(self->rk, 0);
    rd_kafka_destroy(self->rk);
    self->rk = NULL;
    for (size_t i = 0; i < self->nsources; i++) {
        self->sources[i]->next_seq = 0;
        self->sources[i]->inflight = 0;
    }
}

//  Picks up a new bootstrap list from the file (the development Kafka moves when it restarts).
static void
s_bootstrap_check(relay_t *self)
{
    char now[512] = "";
    if (self->brokers)
        snprintf(now, sizeof now, "%s", self->brokers);
    else {
        FILE *f = fopen(self->bootstrap_file, "r");
        if (f) {
            if (!fgets(now, sizeof now, f))
                now[0] = 0;
            fclose(f);
        }
        now[strcspn(now, "\r\n")] = 0;
    }
    if (!*now || streq(now, self->bootstrap))
        return;
    s_producer_stop(self);
    snprintf(self->bootstrap, sizeof self->bootstrap, "%s", now);
    s_producer_start(self);
}

//  Adds the header and records it for the signature.
static void
s_header(rd_kafka_headers_t *h, mc_event_record_t *rec, mc_event_header_t which, mc_str_t v)
{
    if (v.len) {
        rd_kafka_header_add(h, mc_event_signed_headers[which], -1, v.ptr, (ssize_t) v.len);
        rec->headers[which] = v;
    }
}

//  Moves one record to the dead-letter database.
static void
s_bury(relay_t *self, source_t *s, uint64_t seq, const char *why)
{
    MDB_txn *txn;
    if (s_txn_begin(s->env, 0, &txn))
        return;
    unsigned char key[8];
    mc_outbox_key(key, seq);
    MDB_val k = { 8, key }, v;
    if (mdb_get(txn, s->outbox, &k, &v) == 0 && mdb_put(txn, s->dead, &k, &v, 0) == 0
    &&  mdb_del(txn, s->outbox, &k, NULL) == 0 && mdb_txn_commit(txn) == 0) {
        self->dead++;
        mc_error("event dead-lettered", "\"dir\":\"%s\",\"seq\":%" PRIu64 ",\"reason\":\"%s\"", s->dir, seq, why);
        return;
    }
    mdb_txn_abort(txn);
}

//  Produces one outbox record. 0, 1 when the producer queue is full, -1 when it cannot be
//  encoded (dead-lettered by the caller).
static int
s_produce(relay_t *self, source_t *s, uint64_t seq, const MDB_val *val)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = -1;
    mc_str_t id, aggregate, agg_id, type, source, corr, cause, trace = { "", 0 };
    uint64_t time_ms = 0;
    const msgpack_object *data;
    if (mc_msgpack_unpack(&u, val->mv_data, val->mv_size) || mc_map_str(&u.data, "id", &id)
    ||  mc_map_str(&u.data, "aggregate", &aggregate) || mc_map_str(&u.data, "aggregate_id", &agg_id)
    ||  mc_map_str(&u.data, "type", &type) || mc_map_str(&u.data, "source", &source)
    ||  mc_map_uint(&u.data, "time", &time_ms) || !(data = mc_map_get(&u.data, "data"))
    ||  data->type != MSGPACK_OBJECT_MAP || aggregate.len > 64) {
        msgpack_unpacked_destroy(&u);
        return -1;
    }
    if (mc_map_str(&u.data, "corr", &corr))
        corr = (mc_str_t) { "", 0 };
    if (mc_map_str(&u.data, "cause", &cause))
        cause = (mc_str_t) { "", 0 };
    mc_map_str(&u.data, "trace", &trace);
    char topic[80], when[32];
    snprintf(topic, sizeof topic, "%.*s.events", (int) aggregate.len, aggregate.ptr);
    mc_rfc3339(when, sizeof when, time_ms);
    msgpack_sbuffer json;
    msgpack_sbuffer_init(&json);
    mc_json_write(&json, data);
    rd_kafka_headers_t *h = rd_kafka_headers_new(MC_EVENT_H_COUNT + 2);
    mc_event_record_t rec = { .topic = { topic, strlen(topic) }, .key = agg_id,
                              .value = { json.data, json.size } };
    s_header(h, &rec, MC_EVENT_H_SPECVERSION, MC_STR("1.0"));
    s_header(h, &rec, MC_EVENT_H_ID, id);
    s_header(h, &rec, MC_EVENT_H_TYPE, type);
    s_header(h, &rec, MC_EVENT_H_SOURCE, source);
    s_header(h, &rec, MC_EVENT_H_TIME, (mc_str_t) { when, strlen(when) });
    s_header(h, &rec, MC_EVENT_H_CONTENT_TYPE, MC_STR("application/json"));
    s_header(h, &rec, MC_EVENT_H_CORRELATION, corr);
    s_header(h, &rec, MC_EVENT_H_CAUSATION, cause);
    s_header(h, &rec, MC_EVENT_H_TRACEPARENT, trace);
    char sig[MC_EVENT_SIG_LEN + 1];
    if (mc_event_signer_sign(self->signer, &rec, sig)) {
        //  out of memory: like a full queue, try again later
        rd_kafka_headers_destroy(h);
        msgpack_sbuffer_destroy(&json);
        msgpack_unpacked_destroy(&u);
        return 1;
    }
    rd_kafka_header_add(h, MC_EVENT_SIG_HEADER, -1, sig, MC_EVENT_SIG_LEN);
    rd_kafka_header_add(h, MC_EVENT_KID_HEADER, -1, mc_event_signer_kid(self->signer), MC_EVENT_KID_LEN);
    pending_t *p = malloc(sizeof *p);
    *p = (pending_t) { s, seq };
    rd_kafka_resp_err_t err = rd_kafka_producev(self->rk, RD_KAFKA_V_TOPIC(topic),
        RD_KAFKA_V_KEY(agg_id.ptr, agg_id.len), RD_KAFKA_V_VALUE(json.data, json.size),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->inflight++;
        rc = 0;
    }
    else {
        rd_kafka_headers_destroy(h);
        free(p);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rc = 1;
        else {
            //  refused outright (too large, bad topic): count it as a failed attempt
            if (!s->failed_seq || seq < s->failed_seq)
                s->failed_seq = seq;
            rc = 1;
        }
    }
    msgpack_sbuffer_destroy(&json);
    msgpack_unpacked_destroy(&u);
    return rc;
}

//  Deletes what Kafka has confirmed.
static void
s_prune(source_t *s)
{
    if (!s->ndelivered)
        return;
    MDB_txn *txn;
    if (s_txn_begin(s->env, 0, &txn))
        return;
    for (size_t i = 0; i < s->ndelivered; i++) {
        unsigned char key[8];
        mc_outbox_key(key, s->delivered[i]);
        MDB_val k = { 8, key };
        int rc = mdb_del(txn, s->outbox, &k, NULL);
        if (rc && rc != MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return;
        }
    }
    if (mdb_txn_commit(txn) == 0)
        s->ndelivered = 0;
}

//  Produces the source's next records. A failure stops it until every report is in; then it
//  starts again from its oldest remaining record, after a backoff.
static void
s_pump(relay_t *self, source_t *s)
{
    uint64_t now = mc_mono_ms();
    if (s->failed_seq) {
        if (s->inflight)
            return;         //  let the other reports arrive first
        if (!s->retry_at) {
            s->failed_attempts++;
            self->retried++;
            if (s->failed_attempts >= RELAY_ATTEMPTS) {
                s_bury(self, s, s->failed_seq, "delivery kept failing");
                s->failed_attempts = 0;
            }
            uint64_t backoff = 100u << (s->failed_attempts < 6 ? s->failed_attempts : 6);
            s->retry_at = now + backoff;
            return;
        }
        if (now < s->retry_at)
            return;
        s->failed_seq = 0;
        s->retry_at = 0;
        s->next_seq = 0;    //  from the oldest record still in the outbox
    }
    if (s->inflight >= INFLIGHT_MAX)
        return;
    MDB_txn *txn;
    if (s_txn_begin(s->env, MDB_RDONLY, &txn))
        return;
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, s->outbox, &cur)) {
        mdb_txn_abort(txn);
        return;
    }
    unsigned char key[8];
    mc_outbox_key(key, s->next_seq ? s->next_seq : 1);
    MDB_val k = { 8, key }, v;
    uint64_t bury = 0;
    int rc;
    size_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && n < BATCH_MAX;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
        uint64_t seq = mc_outbox_seq(&k);
        int prc = s_produce(self, s, seq, &v);
        if (prc < 0) {
            bury = seq;     //  unencodable: it can never be delivered
            break;
        }
        if (prc > 0)
            break;
        s->next_seq = seq + 1;
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (bury) {
        s_bury(self, s, bury, "record cannot be encoded");
        s->next_seq = bury + 1;
    }
}

//  Backlog and the age of the oldest undelivered event, per outbox, for the report.
static void
s_measure(source_t *s)
{
    MDB_txn *txn;
    s->backlog = 0;
    s->oldest_ms = 0;
    if (s_txn_begin(s->env, MDB_RDONLY, &txn))
        return;
    MDB_stat st;
    if (mdb_stat(txn, s->outbox, &st) == 0)
        s->backlog = st.ms_entries;
    MDB_cursor *cur;
    MDB_val k, v;
    if (mdb_cursor_open(txn, s->outbox, &cur) == 0) {
        if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0) {
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            uint64_t t = 0;
            if (mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0 && mc_map_uint(&u.data, "time", &t) == 0)
                s->oldest_ms = mc_now_ms() > t ? mc_now_ms() - t : 0;
            msgpack_unpacked_destroy(&u);
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
}

static void
s_report(relay_t *self)
{
    for (size_t i = 0; i < self->nsources; i++) {
        source_t *s = self->sources[i];
        if (!s->ready)
            continue;
        s_measure(s);
        mc_info("relay outbox", "\"dir\":\"%s\",\"backlog\":%" PRIu64 ",\"oldest_undelivered_ms\":%" PRIu64,
                s->dir, s->backlog, s->oldest_ms);
    }
    mc_info("relay totals", "\"delivered\":%" PRIu64 ",\"retried\":%" PRIu64 ",\"dead_lettered\":%" PRIu64,
            self->delivered, self->retried, self->dead);
}

relay_t *
relay_new(const char *data_dir, const char *brokers, const char *bootstrap_file, mc_event_signer_t **signer_p)
{
    relay_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    if (signer_p) {
        self->signer = *signer_p;
        *signer_p = NULL;
    }
    snprintf(self->data_dir, sizeof self->data_dir, "%s", data_dir);
    self->brokers = brokers ? strdup(brokers) : NULL;
    self->bootstrap_file = bootstrap_file ? strdup(bootstrap_file) : NULL;
    return self;
}

void
relay_destroy(relay_t **self_p)
{
    relay_t *self = *self_p;
    if (!self)
        return;
    if (self->rk) {
        rd_kafka_flush(self->rk, 2000);
        rd_kafka_poll(self->rk, 0);
        for (size_t i = 0; i < self->nsources; i++)
            if (self->sources[i]->ready)
                s_prune(self->sources[i]);
        rd_kafka_purge(self->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(self->rk, 0);
        rd_kafka_destroy(self->rk);
    }
    for (size_t i = 0; i < self->nsources; i++)
        if (self->sources[i]->env)
            mdb_env_close(self->sources[i]->env);
    for (size_t i = 0; i < self->nsources; i++)
        free(self->sources[i]);
    mc_event_signer_destroy(&self->signer);
    free(self->brokers);
    free(self->bootstrap_file);
    free(self);
    *self_p = NULL;
}

void
relay_run(relay_t *self)
{
    if (!self->signer) {
        mc_error("the relay has no signing key: nothing is produced", NULL);
        return;
    }
    while (!zsys_interrupted) {
        uint64_t now = mc_mono_ms();
        if (now - self->scanned_at >= 1000) {
            s_scan(self);
            s_bootstrap_check(self);
            self->scanned_at = now;
        }
        if (self->rk) {
            for (size_t i = 0; i < self->nsources; i++)
                if (self->sources[i]->ready)
                    s_pump(self, self->sources[i]);
            rd_kafka_poll(self->rk, 5);
            //  deletions share the environment's one writer lock with the actor: batch them
            if (now - self->pruned_at >= 100) {
                for (size_t i = 0; i < self->nsources; i++)
                    if (self->sources[i]->ready)
                        s_prune(self->sources[i]);
                self->pruned_at = now;
            }
        }
        else
            zclock_sleep(50);
        if (now - self->reported_at >= 10000) {
            s_report(self);
            self->reported_at = now;
        }
    }
}

long
relay_redrive(const char *data_dir)
{
    relay_t *self = relay_new(data_dir, "unused", NULL, NULL);
    if (!self)
        return -1;
    s_scan(self);
    long moved = 0;
    for (size_t i = 0; i < self->nsources; i++) {
        source_t *s = self->sources[i];
        MDB_txn *txn;
        if (!s->ready || s_txn_begin(s->env, 0, &txn))
            continue;
        MDB_cursor *dead, *out;
        MDB_val k, v, last, sk = { 4, "last" };
        MDB_dbi seqdb;
        mdb_cursor_open(txn, s->dead, &dead);
        mdb_cursor_open(txn, s->outbox, &out);
        //  new numbers past every one ever used, as the actors' own appends do
        uint64_t seq = mdb_cursor_get(out, &last, &v, MDB_LAST) == 0 ? mc_outbox_seq(&last) : 0;
        bool have_seq = mdb_dbi_open(txn, "outbox_seq", MDB_CREATE, &seqdb) == 0;
        if (have_seq && mdb_get(txn, seqdb, &sk, &v) == 0 && v.mv_size == 8 && mc_outbox_seq(&v) > seq)
            seq = mc_outbox_seq(&v);
        int rc;
        //  back at the end of the outbox, with new sequence numbers, in their old order
        while ((rc = mdb_cursor_get(dead, &k, &v, MDB_FIRST)) == 0) {
            unsigned char key[8];
            mc_outbox_key(key, ++seq);
            MDB_val nk = { 8, key };
            if (mdb_cursor_put(out, &nk, &v, MDB_APPEND) || mdb_cursor_del(dead, 0))
                break;
            moved++;
        }
        mdb_cursor_close(dead);
        mdb_cursor_close(out);
        unsigned char lastkey[8];
        mc_outbox_key(lastkey, seq);
        MDB_val lv = { 8, lastkey };
        if ((have_seq && mdb_put(txn, seqdb, &sk, &lv, 0)) || mdb_txn_commit(txn))
            moved = -1;
    }
    relay_destroy(&self);
    return moved;
}
