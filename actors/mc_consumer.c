#include "mc_consumer.h"

#include "mc_config.h"
#include "mc_envelope.h"
#include "mc_event_sign.h"
#include "mc_kafka.h"
#include "mc_log.h"
#include "mc_plane.h"
#include "mc_proto.h"
#include "mc_util.h"

#include "mc_json.h"
#include <librdkafka/rdkafka.h>

typedef struct {
    mc_consumer_args_t args;    //  configuration
    char bootstrap[512];        //  the list in use
    rd_kafka_t *rk;             //  the consumer, or NULL while there is no bootstrap
    mc_event_verifier_t *verifier;  //  the relay's public keys
    zsock_t *broker;            //  DEALER to the broker, as a client
    uint64_t seq;               //  request ids
    uint64_t consumed, malformed, skipped, rejected;  //  counters
} consumer_t;

static void
s_read_bootstrap(consumer_t *self, char *out, size_t outsz)
{
    const char *env = mc_config_env("MERCATO_KAFKA_BROKERS", NULL);
    out[0] = 0;
    if (env) {
        snprintf(out, outsz, "%s", env);
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/kafka.bootstrap", self->args.data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(out, (int) outsz, f))
            out[0] = 0;
        fclose(f);
    }
    out[strcspn(out, "\r\n")] = 0;
}

static void
s_connect_kafka(consumer_t *self)
{
    char now[512];
    s_read_bootstrap(self, now, sizeof now);
    if (!*now || streq(now, self->bootstrap))
        return;
    if (self->rk) {
        rd_kafka_consumer_close(self->rk);
        rd_kafka_destroy(self->rk);
        self->rk = NULL;
    }
    snprintf(self->bootstrap, sizeof self->bootstrap, "%s", now);
    char err[512], group[128];
    snprintf(group, sizeof group, "mercato-%s", self->args.service);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", now, err, sizeof err)
    ||  mc_kafka_conf_security(conf, err, sizeof err)
    ||  rd_kafka_conf_set(conf, "group.id", group, err, sizeof err)
    //  a handled record's offset is stored, and stored offsets are committed in the background
    //  and on close: a synchronous commit per record cost a round trip to Kafka per event, and
    //  a record redelivered after a crash is found in the service's processed event ids
    ||  rd_kafka_conf_set(conf, "enable.auto.commit", "true", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "auto.commit.interval.ms", "200", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err, sizeof err)
    //  a short session: a group rejoin otherwise waits for the whole timeout
    ||  rd_kafka_conf_set(conf, "session.timeout.ms", "6000", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", err, sizeof err)
    ||  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err)) {
        mc_error("kafka consumer configuration refused", "\"error\":\"%s\"", err);
        rd_kafka_conf_destroy(conf);
        return;
    }
    self->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!self->rk) {
        mc_error("cannot create the kafka consumer", "\"error\":\"%s\"", err);
        return;
    }
    rd_kafka_poll_set_consumer(self->rk);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(4);
    char list[256], *save = NULL;
    snprintf(list, sizeof list, "%s", self->args.topics);
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
        rd_kafka_topic_partition_list_add(topics, t, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(self->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    mc_info("consuming", "\"service\":\"%s\",\"topic\":\"%s\",\"bootstrap\":\"%s\"", self->args.service,
            self->args.topics, now);
}

static bool
s_header(const rd_kafka_message_t *msg, const char *name, char *out, size_t outsz)
{
    rd_kafka_headers_t *h = NULL;
    const void *value;
    size_t size;
    out[0] = 0;
    if (rd_kafka_message_headers(msg, &h) || rd_kafka_header_get_last(h, name, &value, &size) || size >= outsz)
        return false;
    memcpy(out, value, size);
    out[size] = 0;
    return true;
}

//  The value of a header that appears at most once (ptr NULL when absent); -1 when repeated,
//  since a consumer must act on exactly the bytes that were signed.
static int
s_header_once(rd_kafka_headers_t *h, const char *name, mc_str_t *out)
{
    const void *value;
    size_t size;
    *out = (mc_str_t) { NULL, 0 };
    for (size_t i = 0; h && rd_kafka_header_get(h, i, name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++) {
        if (i)
            return -1;
        *out = (mc_str_t) { value ? value : "", value ? size : 0 };
    }
    return 0;
}

//  Whether the record carries our relay's valid signature over everything the consumer reads.
static mc_event_check_t
s_verify(consumer_t *self, const rd_kafka_message_t *msg, mc_str_t *kid)
{
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(msg, &h))
        h = NULL;
    const char *topic = rd_kafka_topic_name(msg->rkt);
    mc_event_record_t rec = { .topic = { topic, strlen(topic) }, .key = { msg->key, msg->key_len },
                              .value = { msg->payload, msg->len } };
    mc_str_t sig;
    int repeated = s_header_once(h, MC_EVENT_SIG_HEADER, &sig) | s_header_once(h, MC_EVENT_KID_HEADER, kid);
    for (int i = 0; i < MC_EVENT_H_COUNT; i++)
        repeated |= s_header_once(h, mc_event_signed_headers[i], &rec.headers[i]);
    mc_event_check_t check = mc_event_verifier_check(self->verifier, &rec, *kid, sig);
    return repeated && check == MC_EVENT_VALID ? MC_EVENT_BAD_SIGNATURE : check;
}

//  Sends the envelope and waits for the actor's status. Returns the status, or 0 on no answer.
static int
s_deliver(consumer_t *self, const char *service, msgpack_sbuffer *env)
{
    char rid[24];
    snprintf(rid, sizeof rid, "%" PRIu64, ++self->seq);
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_CLIENT_REQUEST;
    mc_proto_msg_set_service(&m, service);
    mc_proto_msg_set_request_id(&m, rid, strlen(rid));
    zframe_t *envelope = zframe_new(env->data, env->size);
    mc_proto_msg_set_envelope(&m, &envelope);
    mc_proto_msg_send(&m, self->broker);
    uint64_t deadline = mc_mono_ms() + 5000;
    while (mc_mono_ms() < deadline && !zsys_interrupted) {
        zsock_set_rcvtimeo(self->broker, 200);
        zmsg_t *reply = zmsg_recv(self->broker);
        if (!reply)
            continue;
        //  an answer to an earlier request, one that timed out, is not this one's
        bool mine = mc_proto_msg_decode(&m, &reply, false) == 0
                    && (m.id == MC_PROTO_CLIENT_REPLY || m.id == MC_PROTO_CLIENT_UNAVAILABLE)
                    && m.request_id_size == strlen(rid) && memcmp(m.request_id, rid, m.request_id_size) == 0;
        if (mine) {
            int status = 0;
            msgpack_unpacked u;
            msgpack_unpacked_init(&u);
            mc_reply_t rep;
            if (m.id == MC_PROTO_CLIENT_REPLY
            &&  mc_reply_decode(&u, zframe_data(m.envelope), zframe_size(m.envelope), &rep) == 0)
                status = rep.status;
            msgpack_unpacked_destroy(&u);
            mc_proto_msg_reset(&m);
            return status ? status : -1;
        }
        mc_proto_msg_reset(&m);
    }
    return 0;
}

//  Handles one record; true when its offset may be committed.
static bool
s_handle(consumer_t *self, const rd_kafka_message_t *msg)
{
    char ce_id[100], ce_type[80], corr[80] = "", key[80], why[160] = "no key, ce_id or ce_type";
    msgpack_sbuffer data;
    msgpack_sbuffer_init(&data);
    bool headers = msg->key && msg->key_len < sizeof key && s_header(msg, "ce_id", ce_id, sizeof ce_id)
                && strlen(ce_id) <= 64 && s_header(msg, "ce_type", ce_type, sizeof ce_type);
    if (headers && self->args.wants && !self->args.wants((mc_str_t) { ce_type, strlen(ce_type) })) {
        self->skipped++;
        return true;
    }
    //  before anything of the record is believed or parsed: only our relay's records act
    mc_str_t kid = { NULL, 0 };
    mc_event_check_t check = headers ? s_verify(self, msg, &kid) : MC_EVENT_VALID;
    if (check != MC_EVENT_VALID) {
        self->rejected++;
        char kid_esc[40], id_esc[140], type_esc[120];
        mc_warn("unauthenticated record skipped", "\"service\":\"%s\",\"topic\":\"%s\",\"partition\":%d,\"offset\":%" PRId64
                ",\"reason\":\"%s\",\"kid\":\"%s\",\"ce_id\":\"%s\",\"ce_type\":\"%s\",\"rejected_total\":%" PRIu64,
                self->args.service, rd_kafka_topic_name(msg->rkt), msg->partition, (int64_t) msg->offset, mc_event_check_str(check),
                kid.ptr ? mc_log_escape(kid_esc, sizeof kid_esc, kid.ptr, kid.len) : "",
                mc_log_escape(id_esc, sizeof id_esc, ce_id, strlen(ce_id)),
                mc_log_escape(type_esc, sizeof type_esc, ce_type, strlen(ce_type)), self->rejected);
        return true;
    }
    if (!headers || mc_json_parse(msg->payload, msg->len, &data, why, sizeof why)) {
        self->malformed++;
        for (char *c = why; *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char) *c < 0x20)
                *c = '\'';
        mc_warn("malformed record skipped", "\"topic\":\"%s\",\"partition\":%d,\"offset\":%" PRId64
                ",\"reason\":\"%s\",\"malformed_total\":%" PRIu64, rd_kafka_topic_name(msg->rkt), msg->partition,
                (int64_t) msg->offset, why, self->malformed);
        msgpack_sbuffer_destroy(&data);
        return true;
    }
    s_header(msg, "ce_correlationid", corr, sizeof corr);
    memcpy(key, msg->key, msg->key_len);
    key[msg->key_len] = 0;
    msgpack_sbuffer body, env;
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&env);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mc_pack_kv_cstr(&pk, "event_id", ce_id);
    mc_pack_kv_cstr(&pk, "type", ce_type);
    mc_pack_kv_cstr(&pk, "key", key);
    mc_pack_cstr(&pk, "data");
    msgpack_sbuffer_write(&body, data.data, data.size);
    msgpack_sbuffer_destroy(&data);
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(msg, &tstype);
    uint64_t now = mc_now_ms();
    //  the event's id is the message id: the actor's dedupe key, and the same on every redelivery
    mc_request_t req = { .id = { ce_id, strlen(ce_id) }, .type = { self->args.message_type, strlen(self->args.message_type) },
                         .key = { key, strlen(key) }, .corr = { corr, strlen(corr) },
                         .cause = { ce_id, strlen(ce_id) }, .reply = MC_STR("consumer"), .role = MC_STR("system"),
                         .deadline = now + 5000, .time = ts > 0 ? (uint64_t) ts : now };
    mc_request_encode(&env, &req, (mc_str_t) { body.data, body.size });
    char service[96];
    unsigned shard = self->args.shards > 1 ? mc_fnv1a32(key, strlen(key)) % self->args.shards : 0;
    snprintf(service, sizeof service, "%s.%u", self->args.service, shard);
    int status = s_deliver(self, service, &env);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&env);
    if (status == 200) {
        self->consumed++;
        return true;
    }
    if (status >= 400 && status < 500) {
        //  the actor refuses it for good: retrying would block the partition forever
        self->malformed++;
        mc_warn("record refused by the service, skipped", "\"service\":\"%s\",\"ce_id\":\"%s\",\"status\":%d",
                service, ce_id, status);
        return true;
    }
    return false;
}

//  Marks msg handled: the next commit resumes after it.
static void
s_store_offset(rd_kafka_t *rk, const rd_kafka_message_t *msg)
{
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(at, rd_kafka_topic_name(msg->rkt), msg->partition)->offset = msg->offset + 1;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(rk, at);
    if (err)
        mc_warn("kafka offset not stored", "\"error\":\"%s\"", rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(at);
}

void
mc_consumer(zsock_t *pipe, void *args)
{
    consumer_t self = { .args = *(mc_consumer_args_t *) args };
    char err[512];
    self.verifier = mc_event_verifier_new(self.args.keys_dir, err, sizeof err);
    if (!self.verifier) {
        //  the node checked the keys before starting us: they went away since
        char why[600];
        mc_error("kafka consumer has no event keys, consuming nothing", "\"service\":\"%s\",\"reason\":\"%s\"",
                 self.args.service, mc_log_escape(why, sizeof why, err, strlen(err)));
        zsock_signal(pipe, 0);
        char *cmd;
        while ((cmd = zstr_recv(pipe)) && !streq(cmd, "$TERM"))
            zstr_free(&cmd);
        zstr_free(&cmd);
        return;
    }
    self.broker = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(self.broker);
    mc_plane_client(self.broker);
    //  a connection given up (below) leaves no peer to queue for: a send must not wait for one
    zsock_set_sndtimeo(self.broker, 0);
    //  a failed handshake (a fake broker while ours restarts) would otherwise end the connection
    mc_plane_watch_t *watch = mc_plane_watch_new(self.broker, self.args.broker);
    zsock_connect(self.broker, "%s", self.args.broker);
    zsock_signal(pipe, 0);
    uint64_t checked_at = 0;
    rd_kafka_message_t *pending = NULL;     //  a record not yet handled, kept across retries
    uint64_t retry_at = 0, backoff = 100;
    uint64_t pipe_at = 0;
    while (true) {
        uint64_t now = mc_mono_ms();
        //  asking the pipe costs two system calls: not once per record
        if (now >= pipe_at) {
            pipe_at = now + 50;
            if (zsock_events(pipe) & ZMQ_POLLIN) {
                char *cmd = zstr_recv(pipe);
                bool term = !cmd || streq(cmd, "$TERM");
                free(cmd);
                if (term)
                    break;
            }
        }
        if (now - checked_at >= 1000) {
            mc_plane_watch_check(watch);
            if (!pending)
                s_connect_kafka(&self);
            checked_at = now;
        }
        if (!self.rk) {
            zclock_sleep(100);
            continue;
        }
        if (!pending)
            pending = rd_kafka_consumer_poll(self.rk, 100);
        if (!pending)
            continue;
        if (pending->err) {
            if (pending->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                mc_warn("kafka consumer", "\"error\":\"%s\"", rd_kafka_message_errstr(pending));
            rd_kafka_message_destroy(pending);
            pending = NULL;
            continue;
        }
        if (now < retry_at) {
            zclock_sleep(20);
            continue;
        }
        if (s_handle(&self, pending)) {
            s_store_offset(self.rk, pending);
            rd_kafka_message_destroy(pending);
            pending = NULL;
            backoff = 100;
            retry_at = 0;
        }
        else {
            retry_at = mc_mono_ms() + backoff;
            backoff = backoff < 5000 ? backoff * 2 : 5000;
        }
    }
    if (pending)
        rd_kafka_message_destroy(pending);
    if (self.rk) {
        rd_kafka_consumer_close(self.rk);
        rd_kafka_destroy(self.rk);
    }
    mc_plane_watch_destroy(&watch);
    zsock_destroy(&self.broker);
    mc_event_verifier_destroy(&self.verifier);
}
