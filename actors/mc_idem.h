/*  mc_idem: Idempotency-Key records (CONTRACT §2), kept in the environment of the service that
    owns the effect and written in the same transaction as it.

    A record is keyed by (user, key) and holds a SHA-256 of the request body, the entity the
    first request created (ref), and, once the outcome is known, its status and body or error.
    Records live 24 h from the first request; mc_idem_prune removes expired ones a few at a
    time, oldest first. */
#ifndef MC_IDEM_H
#define MC_IDEM_H

#include "mc_actor.h"

#define MC_IDEM_TTL_MS (24ull * 3600 * 1000)

typedef struct {
    MDB_dbi keys;       //  user \0 key -> record
    MDB_dbi by_time;    //  first-seen ms (8 bytes big-endian) user \0 key -> ""
} mc_idem_db_t;

typedef enum {
    MC_IDEM_NEW,        //  no live record: go ahead (and call mc_idem_begin)
    MC_IDEM_PENDING,    //  the first request is still in progress: wait on ref
    MC_IDEM_DONE,       //  replay status and raw
    MC_IDEM_MISMATCH    //  same key, different body: 422
} mc_idem_state_t;

typedef struct {
    mc_idem_state_t state;
    char ref[72];           //  the entity the first request made (PENDING, DONE)
    int status;             //  DONE: the stored status
    bool error;             //  DONE: raw is an error map
    msgpack_sbuffer raw;    //  DONE: the stored body or error (the caller destroys it)
} mc_idem_t;

int mc_idem_open(mc_store_t *store, mc_idem_db_t *db);

//  Looks up the caller's key. 0 or an LMDB error; out->raw is always initialised.
int mc_idem_check(MDB_txn *txn, const mc_idem_db_t *db, const mc_request_t *req, mc_idem_t *out);

//  Records that req's key is now in progress for ref.
int mc_idem_begin(MDB_txn *txn, const mc_idem_db_t *db, const mc_request_t *req, const char *ref);

//  Stores the outcome for (user, key); a status of 500 or more, or 429 (a limit that says come
//  back later), forgets the key instead, so a retry starts afresh.
int mc_idem_finish(MDB_txn *txn, const mc_idem_db_t *db, mc_str_t user, mc_str_t key, int status, bool error,
                   const void *raw, size_t len);

//  Removes up to max records older than 24 h at now_ms.
int mc_idem_prune(MDB_txn *txn, const mc_idem_db_t *db, uint64_t now_ms, int max);

//  Answers ctx's caller from a DONE record, marked as replayed.
int mc_idem_replay(mc_ctx_t *ctx, const mc_idem_t *rec);

//  The 422 for a key reused with a different body.
int mc_idem_mismatch(mc_ctx_t *ctx);

#endif
