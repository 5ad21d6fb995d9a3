/*  The sign-in throttle (CONTRACT §3 and §9): IDENTITY_FAILURES_MAX failures for an email within
    IDENTITY_FAILURE_WINDOW_MS answer 429 until the oldest of them leaves the window. A wrong
    password at sign-in and a wrong current_password on a password change are the same failure:
    either would otherwise let a caller try passwords without limit.

      failures   lower(email) -> failure times, 8-byte big-endian unix ms each, oldest first,
                 at most IDENTITY_FAILURES_MAX of them

    Every recorded failure also goes into the expiry index (identity_prune.c), which removes the
    record once its newest failure has left the window. */
#include "identity_db.h"
#include "mc_util.h"

//  Failures for an email inside the window at now: how many, and when each was.
static int
s_failures(MDB_txn *txn, const identity_db_t *db, MDB_val *key, uint64_t now, uint64_t *times, size_t *count)
{
    MDB_val v;
    *count = 0;
    int rc = mdb_get(txn, db->failures, key, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    for (size_t i = 0; i + 8 <= v.mv_size && *count < IDENTITY_FAILURES_MAX; i += 8) {
        uint64_t t = mc_be64_get((unsigned char *) v.mv_data + i);
        if (t + IDENTITY_FAILURE_WINDOW_MS > now)
            times[(*count)++] = t;
    }
    return 0;
}

int
identity_throttled(mc_ctx_t *ctx, MDB_val *key)
{
    uint64_t times[IDENTITY_FAILURES_MAX];
    size_t count;
    int rc = s_failures(ctx->txn, ctx->state, key, ctx->req->time, times, &count);
    if (rc)
        return IDENTITY_FAIL(rc);
    if (count < IDENTITY_FAILURES_MAX)
        return 0;
    uint64_t until = times[0] + IDENTITY_FAILURE_WINDOW_MS;
    mc_reply_error_retry(ctx->pk, ctx->req->id, 429, "too_many_attempts",
                         "too many failed sign-ins for this email; try again later",
                         (until - ctx->req->time + 999) / 1000);
    return 429;
}

int
identity_failure_record(mc_ctx_t *ctx, MDB_val *key)
{
    uint64_t times[IDENTITY_FAILURES_MAX + 1];
    size_t count;
    int rc = s_failures(ctx->txn, ctx->state, key, ctx->req->time, times, &count);
    if (rc)
        return rc;
    times[count++] = ctx->req->time;
    size_t first = count > IDENTITY_FAILURES_MAX ? count - IDENTITY_FAILURES_MAX : 0;
    unsigned char buf[8 * IDENTITY_FAILURES_MAX];
    size_t n = 0;
    for (size_t i = first; i < count; i++, n += 8)
        mc_be64_put(buf + n, times[i]);
    MDB_val v = { n, buf };
    const identity_db_t *db = ctx->state;
    rc = mdb_put(ctx->txn, db->failures, key, &v, 0);
    return rc ? rc : identity_prune_failure(ctx->txn, db, key, ctx->req->time + IDENTITY_FAILURE_WINDOW_MS);
}

int
identity_failures_clear(MDB_txn *txn, const identity_db_t *db, MDB_val *key)
{
    int rc = mdb_del(txn, db->failures, key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
