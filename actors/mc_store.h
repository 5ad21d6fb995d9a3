/*  mc_store: one shard's databases, inside the environment its service has on this node.

    Every shard of a service that a node holds lives in one LMDB environment,
    data_dir/<service>/, its databases named "<shard>/<name>". One environment means one commit,
    and so one pair of syncs, for a group of messages to many shards: with an environment per
    shard, 16 shards on a node each synced their own small groups, and an order cost 2.3 times
    the node CPU it costs with one (scripts/bench, issue 12's note). The shards still stand
    apart: no database is shared, so a shard moves by copying its databases.

    Opened with MDB_NOTLS (read transactions are reused and not tied to threads) and without
    MDB_WRITEMAP or MDB_NOSYNC, so a committed write is on disk before its reply leaves.
    Stale reader slots from crashed processes are cleared at open (mdb_reader_check).
    When a write finds the map full, mc_store_grow doubles it up to the configured maximum.

    Writes to the environment go through mc_store_combine: the actor threads of its shards hand
    it their work, and one of them runs everything handed in so far in one transaction.

    Errors: LMDB's own codes (negative), or ENOMEM/ENOENT style errno values from opening. */
#ifndef MC_STORE_H
#define MC_STORE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _mc_store_t mc_store_t;

//  Opens shard of the service environment in dir (creating it), shared with every other store of
//  that dir in this process. shards: how many the service has (it sizes the environment's
//  tables). map_max bounds growth (bytes). NULL on failure, with the reason logged.
mc_store_t *mc_store_new(const char *dir, unsigned shard, unsigned shards, size_t map_max);
void mc_store_destroy(mc_store_t **self_p);

MDB_env *mc_store_env(mc_store_t *self);
unsigned mc_store_shard(mc_store_t *self);

//  Opens (creating) the shard's database name; flags as mdb_dbi_open (MDB_DUPSORT...). 0 or an
//  LMDB error.
int mc_store_dbi(mc_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi);

//  Opens (creating) n named databases: names[i] into *dbis[i]. 0 or the first LMDB error.
int mc_store_dbis(mc_store_t *self, const char *const *names, MDB_dbi *const *dbis, size_t n);

//  The database name of the shard's name: "<shard>/<name>". out needs 16 bytes more than name.
void mc_store_dbi_name(unsigned shard, const char *name, char *out, size_t size);

//  Begins a write transaction (one at a time per environment: inside mc_store_combine's run,
//  or mc_store_lock, when other threads share the environment).
int mc_store_begin(mc_store_t *self, MDB_txn **txn);

//  A read transaction, renewed from the previous one when possible; end with mc_store_read_end.
//  The shard's owner only, inside mc_store_combine's run or mc_store_lock.
int mc_store_read(mc_store_t *self, MDB_txn **txn);
void mc_store_read_end(mc_store_t *self, MDB_txn *txn);

/*  Group commit. A thread with work for the environment queues it and waits; the first to find
    no thread running becomes the runner: run(works, n) is called with everything queued (its
    own included) and must finish each, then the runner looks again, until the queue is empty.
    So one transaction can hold the messages of every shard that had some, and it is begun and
    committed by one thread, as LMDB requires. */
typedef struct _mc_store_work_t {
    struct _mc_store_work_t *next;
    void *arg;                  //  the caller's
    bool done;                  //  set by mc_store_combine
} mc_store_work_t;
typedef void (mc_store_run_fn)(mc_store_work_t **works, size_t n);
void mc_store_combine(mc_store_t *self, mc_store_work_t *work, mc_store_run_fn *run);

//  Works queued on the environment and not yet taken by a runner.
size_t mc_store_queued(mc_store_t *self);

//  Holds the environment as a runner does (no group runs meanwhile): for opening a shard's
//  databases and the service's own start-up writes.
void mc_store_lock(mc_store_t *self);
void mc_store_unlock(mc_store_t *self);

/*  Reads from a thread other than the owner's (the node's front serving a shared read,
    mc_reads.h). A pin keeps the environment open and its map where it is: mc_store_grow and
    mc_store_exclusive wait for every pin to go. Inside a pin, mc_store_read_shared gives a read
    transaction from a slot of its own (the owner's reset reader is the owner's alone). */
void mc_store_pin(mc_store_t *self);
void mc_store_unpin(mc_store_t *self);
int mc_store_read_shared(mc_store_t *self, MDB_txn **txn);
void mc_store_read_shared_end(mc_store_t *self, MDB_txn *txn);

//  Waits until no other thread holds a pin (the owner calls it before it closes the store).
void mc_store_exclusive(mc_store_t *self);

//  Records key in dbi, once: 0 the first time, MDB_KEYEXIST when it was there already (a Kafka
//  event redelivered), or another LMDB error.
int mc_store_once(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t len);

//  A time index key: prefix \0 (when prefix_len is not 0), ms as 8 big-endian bytes, then id.
//  out needs prefix_len + 9 + id_len bytes. Returns its length.
size_t mc_store_time_key(unsigned char *out, const void *prefix, size_t prefix_len, uint64_t ms,
                         const void *id, size_t id_len);

//  Doubles the environment's map size, up to map_max. 0, or MDB_MAP_FULL when already at the
//  maximum. Only call as the runner (or under mc_store_lock) with no transaction open; it
//  waits for pinned readers.
int mc_store_grow(mc_store_t *self);

#endif
