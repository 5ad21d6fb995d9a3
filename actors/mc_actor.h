/*  mc_actor: the runtime every service runs in.

    A service is a table of handlers, each a deterministic function of (state in LMDB, message):
    the time, new ids and the caller arrive in the envelope. The runtime decodes and validates
    the message against schemas/, opens the transaction, calls the handler, commits, and only
    then lets the reply leave. A handler reports failure by replying with a status >= 400 (its
    transaction is then aborted, unless it set ctx->commit to keep what it recorded about the
    failure) or by returning an LMDB error (the caller gets 500, or the map
    grows and the handler runs again when the error was MDB_MAP_FULL). */
#ifndef MC_ACTOR_H
#define MC_ACTOR_H

#include "mc_envelope.h"
#include "mc_proto.h"
#include "mc_schema.h"
#include "mc_store.h"

#include <czmq.h>

typedef struct {
    const mc_request_t *req;    //  the message being handled
    MDB_txn *txn;               //  read or write transaction, per the handler's table entry
    void *state;                //  the service's own state (database handles)
    msgpack_packer *pk;         //  the reply is packed here (mc_reply_begin / mc_reply_error)
    bool commit;                //  commit even though the reply is an error (a recorded failure)
    MDB_dbi outbox;             //  where events go (mc_outbox_append), in the same transaction
    MDB_dbi outbox_seq;         //  the last sequence used, which must keep rising once the relay
                                //  has emptied the outbox
    unsigned events;            //  events this message has caused so far
    const char *service;        //  the service's name, for event sources
    struct _mc_core_t *core;    //  where effects go (mc_park, mc_answer, mc_send)
    size_t index;               //  the message's place in its batch
} mc_ctx_t;

//  Returns the status it replied with, MC_PARKED, or a negative LMDB error code.
typedef int (mc_handler_fn)(mc_ctx_t *ctx);

//  Replies status with no body; returns status.
int mc_reply_empty(mc_ctx_t *ctx, int status);

//  A handler's return when its caller must wait: it called mc_park, and a later message answers.
#define MC_PARKED 1

/*  Effects: what a batch of messages asks the runtime to do once its transaction has committed,
    in the order the handlers asked for them. Nothing leaves before the commit, and nothing
    leaves if it fails. */
typedef enum { MC_FX_NONE, MC_FX_REPLY, MC_FX_PARK, MC_FX_ANSWER, MC_FX_SEND } mc_fx_kind_t;

typedef struct {
    mc_fx_kind_t kind;
    size_t origin;              //  REPLY, PARK: the message's index in the batch
    int status;                 //  ANSWER: the status every waiter gets
    bool error;                 //  ANSWER: data is an error map rather than a body
    bool replayed;              //  PARK: the answer is a stored one (Idempotent-Replayed)
    uint64_t deadline;          //  PARK: unix ms after which the caller no longer waits
    char key[96];               //  PARK, ANSWER: what the caller waits for
    char id[72];                //  REPLY, PARK: the request's message id
    char service[80];           //  SEND: "<service>.<shard>"
    char tag[MC_REQUEST_ID_MAX + 1];    //  SEND: names the request in its reply
    char corr[128], trace[64];  //  SEND: the asking message's correlation id and traceparent, which
                                //  the reply's step message carries on (empty when unknown)
    msgpack_sbuffer data;       //  REPLY: reply frame; ANSWER: body or error; SEND: request frame
    msgpack_packer pk;          //  packs into data
} mc_fx_t;

//  The caller of ctx's message waits until a later message answers key. replayed marks a
//  caller that repeats an earlier request and gets its stored answer.
void mc_park(mc_ctx_t *ctx, const char *key, bool replayed);

//  Answers everyone waiting on key with status; pack exactly one object (the body) into the
//  returned packer.
msgpack_packer *mc_answer(mc_ctx_t *ctx, const char *key, int status);

//  Answers everyone waiting on key with an error.
void mc_answer_error(mc_ctx_t *ctx, const char *key, int status, const char *code, const char *detail,
                     const mc_errors_t *errs);

//  Answers everyone waiting on key with an already packed body (or error map, when error).
void mc_answer_raw(mc_ctx_t *ctx, const char *key, int status, bool error, const void *raw, size_t len);

//  A request to another service. Its reply (or 503 when none came) returns to this service as
//  a message of the service's step type, body {tag, status, body | error}. The envelope carries
//  ctx's correlation, trace and time, with ctx's message as its cause.
typedef struct {
    const char *service;        //  "inventory"
    unsigned shard;             //  which of its shards
    const char *type;           //  "stock.reserve"
    mc_str_t id;                //  message id; the same on every resend
    mc_str_t key;               //  routing key
    mc_str_t user, role;        //  on whose behalf
    mc_str_t idem;              //  Idempotency-Key, may be empty
    const msgpack_sbuffer *body;    //  a packed map
    const char *tag;            //  at most MC_REQUEST_ID_MAX bytes
} mc_send_t;

void mc_send(mc_ctx_t *ctx, const mc_send_t *send);

typedef struct {
    const char *type;           //  message type, "product.get"
    bool write;                 //  needs a write transaction
    mc_handler_fn *fn;          //  the handler
} mc_handler_t;

typedef struct {
    const char *name;           //  service name, "catalog"
    int (*open)(mc_store_t *store, const char *data_dir, void **state);   //  opens its databases
    void (*close)(void **state);    //  frees the state; NULL when free() does
    const mc_handler_t *handlers;   //  its messages
    size_t nhandlers;           //  entries in handlers
    const char *step;           //  message type that brings replies to mc_send, or NULL
    const char *tick;           //  message type the runtime sends every MC_TICK_MS, or NULL
                                //  (both accepted only from the runtime: role "system")
    bool (*wants_event)(mc_str_t type);     //  the Kafka event types its consumer delivers (the
                                //  others are skipped before they cost a message), or NULL: all
    bool shared_reads;          //  its read handlers touch only their transaction and the
                                //  state's database handles: the node's front may run them
                                //  (mc_reads.h), sparing the actor's thread two hand-offs
} mc_service_t;

#define MC_TICK_MS 200

//  The part of an actor that needs no socket: decode, validate, run, commit, encode.
typedef struct _mc_core_t mc_core_t;

//  Opens the service's shard in data_dir/<service>/<shard>/.
mc_core_t *mc_core_new(const mc_service_t *service, const char *data_dir, unsigned shard, size_t map_max);
void mc_core_destroy(mc_core_t **self_p);

//  One message of a batch.
typedef struct {
    const void *frame;
    size_t len;
    mc_peer_t peer;             //  who sent it: SELF for the runtime's own (ticks, steps), else the
                                //  role of the plane key the broker saw (mc_plane.h)
} mc_in_t;

//  Handles n request frames as one group commit: each runs in its own nested transaction (a
//  failure undoes only its own writes) and all commit together, with one fsync. The effects,
//  replies included, are then read with mc_core_effects; the next batch clears them.
void mc_core_batch(mc_core_t *self, const mc_in_t *in, size_t n, uint64_t now_ms);
mc_fx_t *const *mc_core_effects(mc_core_t *self, size_t *count);

//  Handles one request frame from peer and packs the reply into out. Returns 0 when out holds a
//  reply, -1 when the frame gets none (unparseable, past its deadline at now_ms, or parked). Its
//  other effects stay readable with mc_core_effects.
int mc_core_handle(mc_core_t *self, mc_peer_t peer, const void *frame, size_t len, uint64_t now_ms,
                   msgpack_sbuffer *out);

const mc_service_t *mc_core_service(mc_core_t *self);

//  A view of owner for another thread: it runs the service's read handlers (write = false) on
//  the owner's store and state, with its own effects and counters. The service must keep
//  nothing in its state that a read changes (mc_service_t.shared_reads). Destroy it before
//  its owner, and read only while the owner's store is pinned (mc_store_pin).
mc_core_t *mc_core_view_new(mc_core_t *owner);
mc_store_t *mc_core_store(mc_core_t *self);

//  On a view: handles frame when it is a read that needs nothing but the store (no park, no
//  request to another service) and packs its reply into out: 0. 1 when the owner must handle
//  it instead (a write, the runtime's own message, something that does not decode, a read that
//  parks or asks elsewhere); nothing it did then matters, as a read changes nothing.
int mc_core_read(mc_core_t *self, mc_peer_t peer, const void *frame, size_t len, uint64_t now_ms,
                 msgpack_sbuffer *out);

//  The environment and its outbox, for the relay's tests and tools.
MDB_env *mc_core_env(mc_core_t *self);
MDB_dbi mc_core_outbox(mc_core_t *self);

//  Counters for metrics and logs.
typedef struct {
    uint64_t handled, failed, malformed, expired;
    uint64_t refused;           //  sent by a kind of peer that may not send them (403)
} mc_core_stats_t;
mc_core_stats_t mc_core_stats(mc_core_t *self);

typedef struct {
    const mc_service_t *service;    //  what to run
    unsigned shard;             //  which shard of it
    const char *data_dir;       //  MERCATO_DATA_DIR
    const char *broker;         //  broker endpoint
    const char *node_id;        //  this node's name, announced to the broker
    size_t map_max;             //  LMDB map growth limit
} mc_actor_args_t;

//  zactor body: opens the store, registers with the broker as "<service>.<shard>", serves until
//  $TERM. Sends "EXIT" on the pipe if it stops on its own (the node then restarts it).
void mc_actor(zsock_t *pipe, void *args);

#endif
