/*  Pruning: what identity keeps only for a while goes once its time is up, so that the
    environment does not grow with every failed sign-in (for any email, existing or not) and
    every session ever started.

      expiry       due ms (8) kind (1) id -> value, one entry per thing that will be due:
                   'l' lower(email) -> ""      its failures have all left the throttle's window
                   'r' sha256(token) -> ""     a refresh token has expired
                   'f' family id -> user id    a family's newest refresh token has expired
      family_exp   family id -> expiry of its newest refresh token, 8 bytes big-endian ms

    identity.tick, the runtime's clock, removes what is due at the message's time, oldest first
    and at most IDENTITY_PRUNE_MAX index entries a tick. An index entry is only a hint: what it
    names is removed only when it really is due at that time (a later failure, or a newer token
    of the family, has moved it on and put its own entry), so an entry need not be found and
    moved when its record changes.

    A used (rotated) refresh token goes with its expiry: presented after that, it is refused as
    unknown and no longer revokes its family, which it could only have done for a thief holding a
    token dead for 30 days. */
#include "identity_db.h"
#include "mc_util.h"

#include <string.h>

#define KEY_ID_MAX 256

static size_t
s_key(unsigned char *out, uint64_t due, char kind, const void *id, size_t len)
{
    mc_be64_put(out, due);
    out[8] = (unsigned char) kind;
    memcpy(out + 9, id, len);
    return 9 + len;
}

static int
s_put(MDB_txn *txn, const identity_db_t *db, uint64_t due, char kind, const void *id, size_t len, mc_str_t value)
{
    if (len > KEY_ID_MAX)
        return 0;       //  longer than any id or email the envelope lets through
    unsigned char key[9 + KEY_ID_MAX];
    MDB_val k = { s_key(key, due, kind, id, len), key }, v = { value.len, (void *) value.ptr };
    return mdb_put(txn, db->expiry, &k, &v, 0);
}

int
identity_prune_failure(MDB_txn *txn, const identity_db_t *db, const MDB_val *email, uint64_t due)
{
    return s_put(txn, db, due, 'l', email->mv_data, email->mv_size, (mc_str_t) { "", 0 });
}

int
identity_prune_token(MDB_txn *txn, const identity_db_t *db, const unsigned char digest[32], mc_str_t family,
                     mc_str_t user, uint64_t exp)
{
    int rc = s_put(txn, db, exp, 'r', digest, 32, (mc_str_t) { "", 0 });
    if (rc || family.len > KEY_ID_MAX)
        return rc;
    MDB_val fk = { family.len, (void *) family.ptr }, fv;
    rc = mdb_get(txn, db->family_exp, &fk, &fv);
    if (rc == 0 && fv.mv_size == 8 && mc_be64_get(fv.mv_data) >= exp)
        return 0;       //  a token of the family already lives longer
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    unsigned char when[8];
    mc_be64_put(when, exp);
    fv = (MDB_val) { 8, when };
    if ((rc = mdb_put(txn, db->family_exp, &fk, &fv, 0)))
        return rc;
    return s_put(txn, db, exp, 'f', family.ptr, family.len, user);
}

//  The newest failure time in a failures record.
static uint64_t
s_newest(const MDB_val *v)
{
    uint64_t newest = 0;
    for (size_t i = 0; i + 8 <= v->mv_size; i += 8) {
        uint64_t t = mc_be64_get((const unsigned char *) v->mv_data + i);
        newest = t > newest ? t : newest;
    }
    return newest;
}

static int
s_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t len)
{
    MDB_val k = { len, (void *) key };
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Removes what one due index entry names, if it is due at now.
static int
s_prune_one(MDB_txn *txn, const identity_db_t *db, char kind, const unsigned char *id, size_t len, mc_str_t value,
            uint64_t now)
{
    MDB_val k = { len, (void *) id }, v;
    int rc;
    if (kind == 'l') {
        rc = mdb_get(txn, db->failures, &k, &v);
        if (rc == 0 && s_newest(&v) + IDENTITY_FAILURE_WINDOW_MS <= now)
            return s_del(txn, db->failures, id, len);
    }
    else
    if (kind == 'r') {
        rc = mdb_get(txn, db->refresh, &k, &v);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        uint64_t exp = 0;
        if (rc == 0 && mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0)
            mc_map_uint(&u.data, "exp", &exp);
        msgpack_unpacked_destroy(&u);
        if (rc == 0 && exp <= now)
            return s_del(txn, db->refresh, id, len);
    }
    else
    if (kind == 'f') {
        rc = mdb_get(txn, db->family_exp, &k, &v);
        if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size == 8 && mc_be64_get(v.mv_data) <= now)) {
            //  the family's every token has expired: nothing can name it any more
            unsigned char uf[2 * KEY_ID_MAX + 1];
            if (value.len > KEY_ID_MAX)
                value.len = 0;
            memcpy(uf, value.ptr, value.len);
            uf[value.len] = 0;
            memcpy(uf + value.len + 1, id, len);
            if ((rc = s_del(txn, db->families, id, len)) || (rc = s_del(txn, db->family_exp, id, len)))
                return rc;
            return value.len ? s_del(txn, db->user_families, uf, value.len + 1 + len) : 0;
        }
    }
    else
        return 0;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int
identity_prune(MDB_txn *txn, const identity_db_t *db, uint64_t now, size_t max)
{
    //  copied out first: the removals below write to the index the cursor walks
    enum { BATCH = 64 };
    unsigned char keys[BATCH][9 + KEY_ID_MAX], values[BATCH][KEY_ID_MAX];
    size_t klen[BATCH], vlen[BATCH];
    size_t done = 0;
    while (done < max) {
        MDB_cursor *cur;
        int rc = mdb_cursor_open(txn, db->expiry, &cur);
        if (rc)
            return rc;
        size_t n = 0;
        MDB_val k, v;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < BATCH && done + n < max;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size < 9 || mc_be64_get(k.mv_data) > now)
                break;
            if (k.mv_size > sizeof keys[0] || v.mv_size > sizeof values[0])
                continue;       //  not one of ours; never written by s_put
            memcpy(keys[n], k.mv_data, k.mv_size);
            memcpy(values[n], v.mv_data, v.mv_size);
            klen[n] = k.mv_size;
            vlen[n++] = v.mv_size;
        }
        mdb_cursor_close(cur);
        if (rc && rc != MDB_NOTFOUND)
            return rc;
        for (size_t i = 0; i < n; i++) {
            if ((rc = s_prune_one(txn, db, (char) keys[i][8], keys[i] + 9, klen[i] - 9,
                                  (mc_str_t) { (const char *) values[i], vlen[i] }, now))
            ||  (rc = s_del(txn, db->expiry, keys[i], klen[i])))
                return rc;
        }
        done += n;
        if (n < BATCH)
            return 0;
    }
    return 0;
}

int
identity_prune_build(MDB_txn *txn, const identity_db_t *db)
{
    MDB_stat st;
    int rc = mdb_stat(txn, db->expiry, &st);
    if (rc || st.ms_entries)
        return rc;
    //  an environment from before pruning (or one with nothing to prune, where this is quick):
    //  index every failure record and refresh token it holds
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, db->failures, &cur)))
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if ((rc = identity_prune_failure(txn, db, &k, s_newest(&v) + IDENTITY_FAILURE_WINDOW_MS)))
            break;
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = mdb_cursor_open(txn, db->refresh, &cur)))
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_str_t family = { "", 0 }, user = { "", 0 };
        uint64_t exp = 0;
        if (k.mv_size == 32 && mc_msgpack_unpack(&u, v.mv_data, v.mv_size) == 0) {
            mc_map_str(&u.data, "family", &family);
            mc_map_str(&u.data, "user", &user);
            mc_map_uint(&u.data, "exp", &exp);
            //  LMDB's values live until the next write: the writes below get copies
            unsigned char digest[32];
            char fbuf[KEY_ID_MAX], ubuf[KEY_ID_MAX];
            memcpy(digest, k.mv_data, 32);
            if (family.len <= sizeof fbuf && user.len <= sizeof ubuf) {
                memcpy(fbuf, family.ptr, family.len);
                memcpy(ubuf, user.ptr, user.len);
                rc = identity_prune_token(txn, db, digest, (mc_str_t) { fbuf, family.len },
                                          (mc_str_t) { ubuf, user.len }, exp);
            }
        }
        msgpack_unpacked_destroy(&u);
        if (rc)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
