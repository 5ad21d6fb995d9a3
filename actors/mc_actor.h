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
} mc_ctx_t;

//  Returns the status it replied with, or a negative LMDB error code.
typedef int (mc_handler_fn)(mc_ctx_t *ctx);

typedef struct {
    const char *type;           //  message type, "product.get"
    bool write;                 //  needs a write transaction
    mc_handler_fn *fn;          //  the handler
} mc_handler_t;

typedef struct {
    const char *name;           //  service name, "catalog"
    int (*open)(mc_store_t *store, const char *data_dir, void **state);   //  opens its databases
    void (*close)(void **state);
    const mc_handler_t *handlers;   //  its messages
    size_t nhandlers;           //  entries in handlers
} mc_service_t;

//  The part of an actor that needs no socket: decode, validate, run, commit, encode.
typedef struct _mc_core_t mc_core_t;

//  Opens the service's shard in data_dir/<service>/<shard>/.
mc_core_t *mc_core_new(const mc_service_t *service, const char *data_dir, unsigned shard, size_t map_max);
void mc_core_destroy(mc_core_t **self_p);

//  Handles one request frame and packs the reply into out. Returns 0 when out holds a reply,
//  -1 when the frame gets none (unparseable, or past its deadline at now_ms).
int mc_core_handle(mc_core_t *self, const void *frame, size_t len, uint64_t now_ms,
                   msgpack_sbuffer *out);

//  The environment and its outbox, for the relay's tests and tools.
MDB_env *mc_core_env(mc_core_t *self);
MDB_dbi mc_core_outbox(mc_core_t *self);

//  Counters for metrics and logs.
typedef struct {
    uint64_t handled, failed, malformed, expired;
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
