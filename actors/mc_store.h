/*  mc_store: one LMDB environment owned by one actor.

    Opened with MDB_NOTLS (read transactions are reused and not tied to threads) and without
    MDB_WRITEMAP or MDB_NOSYNC, so a committed write is on disk before its reply leaves.
    Stale reader slots from crashed processes are cleared at open (mdb_reader_check).
    When a write finds the map full, mc_store_grow doubles it up to the configured maximum.

    Errors: LMDB's own codes (negative), or ENOMEM/ENOENT style errno values from opening. */
#ifndef MC_STORE_H
#define MC_STORE_H

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _mc_store_t mc_store_t;

//  Opens (creating) the environment in dir. map_max bounds growth (bytes). NULL on failure,
//  with the reason logged.
mc_store_t *mc_store_new(const char *dir, size_t map_max);
void mc_store_destroy(mc_store_t **self_p);

MDB_env *mc_store_env(mc_store_t *self);

//  Opens (creating) a named database; flags as mdb_dbi_open (MDB_DUPSORT...). 0 or LMDB error.
int mc_store_dbi(mc_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi);

//  Opens (creating) n named databases: names[i] into *dbis[i]. 0 or the first LMDB error.
int mc_store_dbis(mc_store_t *self, const char *const *names, MDB_dbi *const *dbis, size_t n);

//  Begins a write transaction.
int mc_store_begin(mc_store_t *self, MDB_txn **txn);

//  A read transaction, renewed from the previous one when possible; end with mc_store_read_end.
int mc_store_read(mc_store_t *self, MDB_txn **txn);
void mc_store_read_end(mc_store_t *self, MDB_txn *txn);

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

//  Doubles the map size, up to map_max. 0, or MDB_MAP_FULL when already at the maximum.
//  Only call with no transaction of the owner's open; it waits for pinned readers.
int mc_store_grow(mc_store_t *self);

#endif
