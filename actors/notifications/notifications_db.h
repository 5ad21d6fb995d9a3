/*  notifications_db: the notification service's records, shared by its files.

    notifications.c           notification.event, notification.test, the service table
    notifications_record.c    the stored and public notification, its indexes, notification.list
    notifications_delivery.c  lookups and attempts: notification.step and notification.tick
    notifications_render.c    the mails themselves */
#ifndef NOTIFICATIONS_DB_H
#define NOTIFICATIONS_DB_H

#include "notifications.h"
#include "mc_util.h"

typedef struct {
    MDB_dbi notes;      //  notification id -> record (a map, see notifications_record.c)
    MDB_dbi by_time;    //  created ms (8) id -> ""
    MDB_dbi by_user;    //  user id \0 created ms (8) id -> ""
    MDB_dbi due;        //  next ms (8) id -> ""            (notifications not yet final)
    MDB_dbi fanouts;    //  fan-out id -> alert waiting for the list of admins
    MDB_dbi processed;  //  event id -> ""
    uint64_t retry_ms;  //  MERCATO_SMTP_RETRY_MS: the first backoff, doubling per attempt
    int64_t attempts;   //  MERCATO_SMTP_ATTEMPTS: after this many, failed
} notifications_db_t;

#define FAIL(rc) ((rc) > 0 ? -(rc) : (rc))

//  A lookup not answered within this long is sent again.
#define RESEND_MS 1000
//  An attempt the mailer has not answered within this long counts as failed (the mailer gives
//  up on a server after 20 s).
#define ATTEMPT_MS 30000
//  Backoff never grows beyond this.
#define BACKOFF_MAX_MS 300000

//  Where a notification is in its delivery; final ones have status sent, failed or logged.
#define PHASE_LOOKUP 'c'    //  waiting for identity to name its recipient
#define PHASE_WAITING 'w'   //  its next attempt is due at next_ms
#define PHASE_SENDING 's'   //  an attempt is with the mailer, until next_ms
#define PHASE_FINAL 'f'

//  A notification as stored; strings point into the decoded record or the caller's buffers.
typedef struct {
    mc_str_t id, user_id, event_type, recipient, subject, text, status, message_id, last_error;
    char phase;
    int64_t attempts;
    uint64_t created_ms, updated_ms, next_ms;
} note_t;

//  Loads notification id into n (u keeps it alive): 0, MDB_NOTFOUND or an LMDB error.
int notifications_load(MDB_txn *txn, const notifications_db_t *db, mc_str_t id, msgpack_unpacked *u, note_t *n);

//  Stores n and its indexes; before is the record as it was loaded (NULL for a new one), whose
//  due entry gives way to n's. n's strings may point into before's record. 0 or an LMDB error.
int notifications_store(MDB_txn *txn, const notifications_db_t *db, const note_t *n, const note_t *before);

//  Packs the public notification.
void notifications_pack(msgpack_packer *pk, const note_t *n);

//  notification.list
int notifications_list(mc_ctx_t *ctx);

//  A time-ordered id (a ULID) for the n-th notification of an event: the same event always
//  gives the same ids, so handling it again (a replay) makes the same notifications.
void notifications_id(char out[MC_ULID_LEN + 1], uint64_t ms, mc_str_t event_id, unsigned n);

//  Starts the next attempt of n at the message's time: attempts + 1, then mail.send to the
//  mailer once the transaction has committed. The caller stores n.
void notifications_attempt(mc_ctx_t *ctx, note_t *n);

//  Records an alert for every admin: the tick asks identity who they are, and their answer
//  makes one notification each. 0 or an LMDB error.
int notifications_fanout(mc_ctx_t *ctx, mc_str_t event_id, mc_str_t type, const char *subject, mc_str_t text);

//  notification.step, notification.tick
int notifications_step(mc_ctx_t *ctx);
int notifications_tick(mc_ctx_t *ctx);

#endif
