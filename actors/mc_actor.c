#include "mc_actor.h"

#include "mc_log.h"
#include "mc_proto.h"
#include "mc_util.h"

typedef struct {
    mc_actor_args_t args;       //  configuration
    char service[160];          //  "<service>.<shard>" as announced
    zsock_t *broker;            //  DEALER to the broker; replaced on reconnect
    uint64_t broker_expiry;     //  mono ms after which the broker counts as dead
    uint64_t heartbeat_at;      //  next heartbeat to send, mono ms
    mc_core_t *core;            //  the socket-free part
    msgpack_sbuffer out;        //  reply buffer, reused
} actor_t;

static void
s_send(actor_t *self, int cmd, zmsg_t *body)
{
    zmsg_t *msg = body ? body : zmsg_new();
    byte c = (byte) cmd;
    zmsg_pushmem(msg, &c, 1);
    zmsg_pushstr(msg, MC_WORKER);
    zmsg_send(&msg, self->broker);
}

static void
s_connect(actor_t *self)
{
    zsock_destroy(&self->broker);
    self->broker = zsock_new(ZMQ_DEALER);
    mc_proto_socket_setup(self->broker);
    zsock_connect(self->broker, "%s", self->args.broker);
    zmsg_t *ready = zmsg_new();
    zmsg_addstr(ready, self->service);
    zmsg_addstr(ready, self->args.node_id);
    s_send(self, MC_W_READY, ready);
    uint64_t now = mc_mono_ms();
    self->broker_expiry = now + MC_HEARTBEAT_MS * MC_HEARTBEAT_LIVENESS;
    self->heartbeat_at = now + MC_HEARTBEAT_MS;
}

static void
s_handle_request(actor_t *self, zmsg_t *msg)
{
    zframe_t *client = zmsg_pop(msg);
    zframe_t *rid = zmsg_pop(msg);
    zframe_t *frame = zmsg_pop(msg);
    if (client && rid && frame && !zmsg_size(msg)) {
        msgpack_sbuffer_clear(&self->out);
        if (mc_core_handle(self->core, zframe_data(frame), zframe_size(frame), mc_now_ms(), &self->out) == 0) {
            zmsg_t *reply = zmsg_new();
            zmsg_append(reply, &client);
            zmsg_append(reply, &rid);
            zmsg_addmem(reply, self->out.data, self->out.size);
            s_send(self, MC_W_REPLY, reply);
        }
    }
    zframe_destroy(&client);
    zframe_destroy(&rid);
    zframe_destroy(&frame);
}

//  Returns false when the actor must reconnect.
static bool
s_handle_broker(actor_t *self, zmsg_t *msg, uint64_t *malformed)
{
    zframe_t *proto = zmsg_pop(msg);
    zframe_t *cmd = zmsg_pop(msg);
    bool ok = true;
    self->broker_expiry = mc_mono_ms() + MC_HEARTBEAT_MS * MC_HEARTBEAT_LIVENESS;
    if (!proto || !zframe_streq(proto, MC_WORKER))
        (*malformed)++;
    else
    if (mc_proto_is(cmd, MC_W_REQUEST))
        s_handle_request(self, msg);
    else
    if (mc_proto_is(cmd, MC_W_DISCONNECT))
        ok = false;
    else
    if (!mc_proto_is(cmd, MC_W_HEARTBEAT))
        (*malformed)++;
    zframe_destroy(&proto);
    zframe_destroy(&cmd);
    return ok;
}

void
mc_actor(zsock_t *pipe, void *args)
{
    actor_t self = { .args = *(mc_actor_args_t *) args };
    snprintf(self.service, sizeof self.service, "%s.%u", self.args.service->name, self.args.shard);
    self.core = mc_core_new(self.args.service, self.args.data_dir, self.args.shard, self.args.map_max);
    msgpack_sbuffer_init(&self.out);
    zsock_signal(pipe, 0);
    if (!self.core) {
        zstr_send(pipe, "EXIT");
        msgpack_sbuffer_destroy(&self.out);
        return;
    }
    s_connect(&self);
    mc_info("actor started", "\"service\":\"%s\",\"node\":\"%s\"", self.service, self.args.node_id);
    uint64_t malformed = 0;
    bool terminated = false;
    while (!terminated) {
        zpoller_t *poller = zpoller_new(pipe, self.broker, NULL);
        bool reconnect = false;
        while (!reconnect && !terminated) {
            uint64_t now = mc_mono_ms();
            int wait = self.heartbeat_at > now ? (int) (self.heartbeat_at - now) : 0;
            void *which = zpoller_wait(poller, wait);
            if (which == pipe) {
                char *cmd = zstr_recv(pipe);
                terminated = !cmd || streq(cmd, "$TERM");
                free(cmd);
            }
            else
            if (zpoller_terminated(poller))
                terminated = true;
            //  drain the burst that is waiting, then look at the clock again
            for (int i = 0; which == self.broker && i < 1000 && !reconnect
                    && (zsock_events(self.broker) & ZMQ_POLLIN); i++) {
                zmsg_t *msg = zmsg_recv(self.broker);
                if (!msg)
                    break;
                reconnect = !s_handle_broker(&self, msg, &malformed);
                zmsg_destroy(&msg);
            }
            now = mc_mono_ms();
            if (now >= self.heartbeat_at) {
                s_send(&self, MC_W_HEARTBEAT, NULL);
                self.heartbeat_at = now + MC_HEARTBEAT_MS;
            }
            if (now > self.broker_expiry) {
                mc_warn("broker silent, reconnecting", "\"service\":\"%s\"", self.service);
                reconnect = true;
            }
        }
        zpoller_destroy(&poller);
        if (reconnect && !terminated)
            s_connect(&self);
    }
    s_send(&self, MC_W_DISCONNECT, NULL);
    mc_core_stats_t st = mc_core_stats(self.core);
    mc_info("actor stopped", "\"service\":\"%s\",\"handled\":%" PRIu64 ",\"failed\":%" PRIu64
            ",\"malformed\":%" PRIu64 ",\"expired\":%" PRIu64,
            self.service, st.handled, st.failed, st.malformed + malformed, st.expired);
    zsock_destroy(&self.broker);
    mc_core_destroy(&self.core);
    msgpack_sbuffer_destroy(&self.out);
}
