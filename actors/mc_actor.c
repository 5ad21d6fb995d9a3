#include "mc_actor.h"

#include "mc_log.h"
#include "mc_reads.h"
#include "mc_util.h"
#include "mc_wait.h"

#include <string.h>
#include <sys/prctl.h>

//  Messages handled as one group commit at most; a burst beyond it waits for the next group.
//  Bigger groups save little more fsync time, and a group of hundreds of orders under a
//  sanitizer on a loaded machine kept the actor from its heartbeats for over half a second.
#define BATCH_MAX 64
//  Callers waiting for a later message to answer them, at most.
#define WAITERS_MAX 4096

//  A caller whose answer comes from a later message (mc_park).
typedef struct {
    char key[96];               //  what it waits for
    char id[72];                //  its request's message id
    zframe_t *client, *rid;     //  where the answer goes
    uint64_t deadline;          //  unix ms after which it no longer waits
    bool replayed;              //  it gets the answer as a stored one
} waiter_t;

//  One message of the batch being gathered, and where its reply goes.
typedef struct {
    zframe_t *client, *rid;     //  the broker's routing of the caller; NULL for our own messages
    zframe_t *frame;            //  the request
    mc_peer_t peer;             //  who sent it, as the broker saw it; SELF for our own
} pending_t;

typedef struct {
    mc_actor_args_t args;       //  configuration
    char service[160];          //  "<service>.<shard>" as announced
    zsock_t *broker;            //  DEALER to the broker as a worker; replaced on reconnect
    zsock_t *client;            //  DEALER to the broker as a client, for mc_send
    uint64_t tick_at;           //  next tick message, mono ms
    mc_core_t *core;            //  the socket-free part
    pending_t batch[BATCH_MAX]; //  the group being gathered
    size_t nbatch;
    waiter_t *waiters;          //  parked callers
    size_t nwaiters;
    uint64_t malformed;         //  frames that were not the protocol
    zhashx_t *asked;            //  tag of an unanswered mc_send -> origin_t
} actor_t;

//  Where an mc_send came from: its reply's step message carries these on, so the events it
//  causes name the HTTP request that started the chain. Kept in memory: after a restart the
//  resent requests' replies arrive without them.
typedef struct {
    char corr[128], trace[64];
} origin_t;

//  Unanswered requests remembered at most; past it the table starts afresh.
#define ASKED_MAX 16384

static void
s_origin_free(void **item)
{
    free(*item);
    *item = NULL;
}

//  A command without fields (HEARTBEAT, DISCONNECT) to the broker.
static void
s_send(actor_t *self, mc_proto_id_t id)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = id;
    mc_proto_msg_send(&m, self->broker);
}

static void
s_connect(actor_t *self)
{
    zsock_destroy(&self->broker);
    self->broker = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(self->broker);
    //  the node's front, over inproc: no handshake to prove anything (mc_plane.h)
    zsock_connect(self->broker, "%s", self->args.broker);
    mc_proto_msg_t ready;
    mc_proto_msg_init(&ready);
    ready.id = MC_PROTO_WORKER_READY;
    if (mc_proto_msg_set_service(&ready, self->service) || mc_proto_msg_set_node_id(&ready, self->args.node_id))
        mc_error("service or node id too long for the broker protocol", "\"service\":\"%s\"", self->service);
    mc_proto_msg_send(&ready, self->broker);
}

//  Sends len bytes of data as the reply to the caller at client (the broker's routing of it)
//  for request rid.
static void
s_reply(actor_t *self, zframe_t *client, zframe_t *rid, const void *data, size_t len)
{
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    m.id = MC_PROTO_WORKER_REPLY;
    mc_proto_msg_set_client(&m, zframe_data(client), zframe_size(client));
    mc_proto_msg_set_request_id(&m, zframe_data(rid), zframe_size(rid));
    zframe_t *envelope = zframe_new(data, len);
    mc_proto_msg_set_envelope(&m, &envelope);
    mc_proto_msg_send(&m, self->broker);
}

static void
s_waiter_drop(actor_t *self, size_t i)
{
    zframe_destroy(&self->waiters[i].client);
    zframe_destroy(&self->waiters[i].rid);
    self->waiters[i] = self->waiters[--self->nwaiters];
}

static void
s_park(actor_t *self, const mc_fx_t *fx, pending_t *p)
{
    if (!p->client || self->nwaiters == WAITERS_MAX) {
        if (p->client) {
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            mc_reply_error_retry(&pk, (mc_str_t) { fx->id, strlen(fx->id) }, 503, "overloaded",
                                 "too many requests are waiting", 1);
            s_reply(self, p->client, p->rid, sb.data, sb.size);
            msgpack_sbuffer_destroy(&sb);
        }
        return;
    }
    waiter_t *w = &self->waiters[self->nwaiters++];
    memcpy(w->key, fx->key, sizeof w->key);
    memcpy(w->id, fx->id, sizeof w->id);
    w->client = zframe_dup(p->client);
    w->rid = zframe_dup(p->rid);
    w->deadline = fx->deadline;
    w->replayed = fx->replayed;
}

static void
s_answer(actor_t *self, const mc_fx_t *fx)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (size_t i = 0; i < self->nwaiters;) {
        waiter_t *w = &self->waiters[i];
        if (strcmp(w->key, fx->key) != 0) {
            i++;
            continue;
        }
        msgpack_sbuffer_clear(&sb);
        mc_reply_raw(&pk, (mc_str_t) { w->id, strlen(w->id) }, fx->status, fx->error, fx->data.data,
                     fx->data.size, w->replayed);
        s_reply(self, w->client, w->rid, sb.data, sb.size);
        s_waiter_drop(self, i);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void
s_effects(actor_t *self)
{
    size_t n;
    mc_fx_t *const *fx = mc_core_effects(self->core, &n);
    for (size_t i = 0; i < n; i++) {
        const mc_fx_t *e = fx[i];
        pending_t *p = e->kind == MC_FX_REPLY || e->kind == MC_FX_PARK ? &self->batch[e->origin] : NULL;
        if (e->kind == MC_FX_REPLY && p->client)
            s_reply(self, p->client, p->rid, e->data.data, e->data.size);
        else
        if (e->kind == MC_FX_PARK)
            s_park(self, e, p);
        else
        if (e->kind == MC_FX_ANSWER)
            s_answer(self, e);
        else
        if (e->kind == MC_FX_SEND) {
            mc_proto_msg_t m;
            mc_proto_msg_init(&m);
            m.id = MC_PROTO_CLIENT_REQUEST;
            mc_proto_msg_set_service(&m, e->service);
            mc_proto_msg_set_request_id(&m, e->tag, strlen(e->tag));
            zframe_t *envelope = zframe_new(e->data.data, e->data.size);
            mc_proto_msg_set_envelope(&m, &envelope);
            mc_proto_msg_send(&m, self->client);
            //  a resend from a tick knows no origin: the first one's stays
            if (*e->corr || *e->trace || !zhashx_lookup(self->asked, e->tag)) {
                if (zhashx_size(self->asked) >= ASKED_MAX)
                    zhashx_purge(self->asked);
                origin_t *o = malloc(sizeof *o);
                if (o) {
                    memcpy(o->corr, e->corr, sizeof o->corr);
                    memcpy(o->trace, e->trace, sizeof o->trace);
                    zhashx_update(self->asked, e->tag, o);
                }
            }
        }
    }
}

static void
s_flush(actor_t *self)
{
    if (!self->nbatch)
        return;
    mc_in_t in[BATCH_MAX];
    for (size_t i = 0; i < self->nbatch; i++)
        in[i] = (mc_in_t) { zframe_data(self->batch[i].frame), zframe_size(self->batch[i].frame),
                            self->batch[i].peer };
    mc_core_batch(self->core, in, self->nbatch, mc_now_ms());
    s_effects(self);
    for (size_t i = 0; i < self->nbatch; i++) {
        zframe_destroy(&self->batch[i].client);
        zframe_destroy(&self->batch[i].rid);
        zframe_destroy(&self->batch[i].frame);
    }
    self->nbatch = 0;
}

static void
s_add(actor_t *self, zframe_t *client, zframe_t *rid, zframe_t *frame, mc_peer_t peer)
{
    if (self->nbatch == BATCH_MAX)
        s_flush(self);
    self->batch[self->nbatch++] = (pending_t) { client, rid, frame, peer };
}

//  A message of our own (a tick, a reply to mc_send) as an envelope with the time it arrived.
static void
s_add_own(actor_t *self, const char *type, mc_str_t key, const msgpack_sbuffer *body, const origin_t *origin)
{
    char id[MC_ULID_LEN + 1];
    uint64_t now = mc_now_ms();
    mc_ulid(id, now);
    mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = { type, strlen(type) }, .key = key,
                         .corr = MC_STR(""), .reply = MC_STR("self"), .user = MC_STR(""), .role = MC_STR("system"),
                         .trace = MC_STR(""), .time = now };
    if (origin) {
        req.corr = (mc_str_t) { origin->corr, strlen(origin->corr) };
        req.trace = (mc_str_t) { origin->trace, strlen(origin->trace) };
    }
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    mc_request_encode(&env, &req, body ? (mc_str_t) { body->data, body->size } : (mc_str_t) { "", 0 });
    s_add(self, NULL, NULL, zframe_new(env.data, env.size), MC_PEER_SELF);
    msgpack_sbuffer_destroy(&env);
}

//  The broker's answer to mc_send (REPLY or UNAVAILABLE, the tag its request id) becomes a step
//  message.
static void
s_handle_client(actor_t *self, mc_proto_msg_t *m)
{
    const mc_service_t *svc = mc_core_service(self->core);
    if (!svc->step || (m->id != MC_PROTO_CLIENT_REPLY && m->id != MC_PROTO_CLIENT_UNAVAILABLE))
        self->malformed++;
    else {
        msgpack_sbuffer body;
        msgpack_sbuffer_init(&body);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_reply_t rep;
        bool ok = m->id == MC_PROTO_CLIENT_REPLY
                  && mc_reply_decode(&u, zframe_data(m->envelope), zframe_size(m->envelope), &rep) == 0;
        mc_str_t t = { (const char *) m->request_id, m->request_id_size };
        msgpack_pack_map(&pk, ok && (rep.body || rep.error) ? 3 : 2);
        mc_pack_kv_str(&pk, "tag", t.ptr, t.len);
        mc_pack_kv_uint(&pk, "status", ok ? (uint64_t) rep.status : 503);
        if (ok && rep.error) {
            mc_pack_cstr(&pk, "error");
            msgpack_pack_object(&pk, *rep.error);
        }
        else
        if (ok && rep.body) {
            mc_pack_cstr(&pk, "body");
            msgpack_pack_object(&pk, *rep.body);
        }
        char name[MC_PROTO_REQUEST_ID_MAX + 1];
        snprintf(name, sizeof name, "%.*s", (int) t.len, t.ptr);
        origin_t *origin = zhashx_lookup(self->asked, name);
        s_add_own(self, svc->step, t, &body, origin);
        zhashx_delete(self->asked, name);
        msgpack_unpacked_destroy(&u);
        msgpack_sbuffer_destroy(&body);
    }
}

//  Handles what came from the broker on the worker socket (rc: what mc_proto_msg_recv said);
//  returns false when the actor must reconnect.
static bool
s_handle_broker(actor_t *self, mc_proto_msg_t *m, int rc)
{
    if (rc == 0 && m->id == MC_PROTO_WORKER_REQUEST) {
        //  the role is the broker's word, from the key the sender proved; SELF is never on the
        //  wire (the codec takes only a role's name)
        zframe_t *frame = m->envelope;
        m->envelope = NULL;
        s_add(self, zframe_new(m->client, m->client_size), zframe_new(m->request_id, m->request_id_size), frame,
              m->peer_role);
    }
    else
    if (rc == 0 && m->id == MC_PROTO_WORKER_DISCONNECT)
        return false;
    else
    if (rc || m->id != MC_PROTO_WORKER_HEARTBEAT)
        self->malformed++;
    return true;
}

static void
s_tick(actor_t *self, uint64_t now_mono)
{
    const mc_service_t *svc = mc_core_service(self->core);
    if (!svc->tick || now_mono < self->tick_at)
        return;
    self->tick_at = now_mono + MC_TICK_MS;
    uint64_t now = mc_now_ms();
    for (size_t i = 0; i < self->nwaiters;)
        if (self->waiters[i].deadline && self->waiters[i].deadline < now)
            s_waiter_drop(self, i);     //  its caller has given up
        else
            i++;
    s_add_own(self, svc->tick, MC_STR(""), NULL, NULL);
}

//  Serves until the pipe says $TERM; false when the broker went silent or said goodbye.
static bool
s_serve(actor_t *self, zsock_t *pipe, bool *terminated)
{
    enum { PIPE = 1, BROKER = 2, CLIENT = 4 };      //  mc_wait's bits for socks
    zsock_t *socks[] = { pipe, self->broker, self->client };
    bool reconnect = false;
    mc_proto_msg_t m;
    mc_proto_msg_init(&m);
    while (!reconnect && !*terminated) {
        //  the front is a thread of this process, over inproc: no heartbeats either way (a
        //  hundred idle shards heartbeating cost more system calls than the requests did)
        uint64_t now = mc_mono_ms();
        uint64_t next = now + 1000;
        if (mc_core_service(self->core)->tick && self->tick_at < next)
            next = self->tick_at;
        unsigned ready = mc_wait(socks, 3, next > now ? (int) (next - now) : 0);
        if (ready & PIPE) {
            zmsg_t *cmd = mc_recv_nowait(pipe, NULL);
            *terminated = cmd && zframe_streq(zmsg_first(cmd), "$TERM");
            zmsg_destroy(&cmd);
        }
        if (zsys_interrupted)
            *terminated = true;
        //  gather what is waiting into one group, then look at the clock again; a socket left
        //  with input (a full group) is found by the next wait without blocking
        for (int i = 0; i < BATCH_MAX && !reconnect && (ready & (BROKER | CLIENT)); i++) {
            int rc = (ready & BROKER) ? mc_proto_msg_recv(&m, self->broker, NULL, NULL) : MC_PROTO_AGAIN;
            if (rc != MC_PROTO_AGAIN)
                reconnect = !s_handle_broker(self, &m, rc);
            else
                ready &= ~(unsigned) BROKER;
            mc_proto_msg_reset(&m);
            rc = (ready & CLIENT) ? mc_proto_msg_recv(&m, self->client, NULL, NULL) : MC_PROTO_AGAIN;
            if (rc == MC_PROTO_AGAIN)
                ready &= ~(unsigned) CLIENT;
            else
            if (rc == MC_PROTO_MALFORMED)
                self->malformed++;
            else
                s_handle_client(self, &m);
            mc_proto_msg_reset(&m);
        }
        now = mc_mono_ms();
        s_tick(self, now);
        s_flush(self);
    }
    return !reconnect;
}

void
mc_actor(zsock_t *pipe, void *args)
{
    actor_t self = { .args = *(mc_actor_args_t *) args };
    snprintf(self.service, sizeof self.service, "%s.%u", self.args.service->name, self.args.shard);
    //  so top -H and perf name the actor a thread runs
    char thread[16];
    snprintf(thread, sizeof thread, "%.15s", self.service);
    prctl(PR_SET_NAME, thread, 0, 0, 0);
    self.core = mc_core_new(self.args.service, self.args.data_dir, self.args.shard, self.args.map_max);
    self.waiters = calloc(WAITERS_MAX, sizeof *self.waiters);
    self.asked = zhashx_new();
    if (self.asked)
        zhashx_set_destructor(self.asked, s_origin_free);
    zsock_signal(pipe, 0);
    if (!self.core || !self.waiters || !self.asked) {
        zhashx_destroy(&self.asked);
        zstr_send(pipe, "EXIT");
        mc_core_destroy(&self.core);
        free(self.waiters);
        return;
    }
    //  before READY: the front finds the view as soon as it knows the worker
    mc_core_t *view = self.args.service->shared_reads ? mc_core_view_new(self.core) : NULL;
    if (view)
        mc_reads_publish(self.service, view);
    s_connect(&self);
    self.client = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(self.client);
    zsock_connect(self.client, "%s", self.args.broker);
    mc_info("actor started", "\"service\":\"%s\",\"node\":\"%s\"", self.service, self.args.node_id);
    bool terminated = false;
    while (!terminated)
        if (!s_serve(&self, pipe, &terminated) && !terminated)
            s_connect(&self);
    s_send(&self, MC_PROTO_WORKER_DISCONNECT);
    mc_core_stats_t st = mc_core_stats(self.core), front = { 0 };
    if (view) {
        mc_reads_withdraw(self.service, view);
        front = mc_core_stats(view);
        mc_core_destroy(&view);
    }
    mc_info("actor stopped", "\"service\":\"%s\",\"handled\":%" PRIu64 ",\"read_by_front\":%" PRIu64
            ",\"failed\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"expired\":%" PRIu64,
            self.service, st.handled, front.handled, st.failed + front.failed, st.malformed + self.malformed,
            st.expired + front.expired);
    while (self.nwaiters)
        s_waiter_drop(&self, 0);
    free(self.waiters);
    zhashx_destroy(&self.asked);
    zsock_destroy(&self.broker);
    zsock_destroy(&self.client);
    mc_core_destroy(&self.core);
}
