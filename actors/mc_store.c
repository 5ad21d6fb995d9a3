#include "mc_store.h"

#include "mc_util.h"

#include "mc_config.h"
#include "mc_log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct _mc_store_t {
    MDB_env *env;           //  the environment
    MDB_txn *reader;        //  a reset read transaction kept for renewal, or NULL
    MDB_txn *shared;        //  the same for pinned readers of other threads (taken by exchange)
    pthread_rwlock_t pins;  //  read-locked by each pin; the owner write-locks it to resize
    size_t map_size;        //  current map size
    size_t map_max;         //  growth stops here
    char *dir;              //  where it lives, for logs
};

mc_store_t *
mc_store_new(const char *dir, size_t map_max)
{
    mc_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dir = strdup(dir);
    pthread_rwlock_init(&self->pins, NULL);
    //  start small and grow by doubling: 64 MiB, or an eighth of a small maximum
    self->map_max = map_max > (1u << 20) ? map_max : (1u << 20);
    self->map_size = self->map_max >= (512u << 20) ? (64u << 20) : (self->map_max / 8) & ~(size_t) 4095;
    int rc = mc_config_mkdirs(dir) ? -1 : 0;
    if (!rc)
        rc = mdb_env_create(&self->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(self->env, 32);
    if (!rc)
        rc = mdb_env_set_maxreaders(self->env, 126);
    if (!rc)
        rc = mdb_env_set_mapsize(self->env, self->map_size);
    if (!rc)
        rc = mdb_env_open(self->env, dir, MDB_NOTLS, 0600);
    if (rc) {
        mc_error("store open failed", "\"dir\":\"%s\",\"error\":\"%s\"", dir,
                 rc == -1 ? "cannot create directory" : mdb_strerror(rc));
        mc_store_destroy(&self);
        return NULL;
    }
    //  an environment that was grown before is larger than our starting size
    MDB_envinfo info;
    mdb_env_info(self->env, &info);
    self->map_size = info.me_mapsize;
    int dead = 0;
    mdb_reader_check(self->env, &dead);
    if (dead)
        mc_warn("cleared stale readers", "\"dir\":\"%s\",\"count\":%d", dir, dead);
    return self;
}

void
mc_store_destroy(mc_store_t **self_p)
{
    mc_store_t *self = *self_p;
    if (!self)
        return;
    if (self->reader)
        mdb_txn_abort(self->reader);
    if (self->shared)
        mdb_txn_abort(self->shared);
    if (self->env)
        mdb_env_close(self->env);
    pthread_rwlock_destroy(&self->pins);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

MDB_env *
mc_store_env(mc_store_t *self)
{
    return self->env;
}

int
mc_store_dbi(mc_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

int
mc_store_dbis(mc_store_t *self, const char *const *names, MDB_dbi *const *dbis, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = mc_store_dbi(self, names[i], 0, dbis[i]);
    return rc;
}

int
mc_store_begin(mc_store_t *self, MDB_txn **txn)
{
    return mdb_txn_begin(self->env, NULL, 0, txn);
}

//  kept renewed, or (none kept, or it cannot be) a new read transaction.
static int
s_renew(mc_store_t *self, MDB_txn *kept, MDB_txn **txn)
{
    if (kept && mdb_txn_renew(kept) == 0) {
        *txn = kept;
        return 0;
    }
    if (kept)
        mdb_txn_abort(kept);
    return mdb_txn_begin(self->env, NULL, MDB_RDONLY, txn);
}

int
mc_store_read(mc_store_t *self, MDB_txn **txn)
{
    MDB_txn *kept = self->reader;
    self->reader = NULL;
    return s_renew(self, kept, txn);
}

void
mc_store_read_end(mc_store_t *self, MDB_txn *txn)
{
    if (self->reader)
        mdb_txn_abort(txn);
    else {
        mdb_txn_reset(txn);
        self->reader = txn;
    }
}

void
mc_store_pin(mc_store_t *self)
{
    pthread_rwlock_rdlock(&self->pins);
}

void
mc_store_unpin(mc_store_t *self)
{
    pthread_rwlock_unlock(&self->pins);
}

int
mc_store_read_shared(mc_store_t *self, MDB_txn **txn)
{
    //  MDB_NOTLS lets a reset transaction be renewed by whichever thread takes it next
    return s_renew(self, __atomic_exchange_n(&self->shared, NULL, __ATOMIC_ACQ_REL), txn);
}

void
mc_store_read_shared_end(mc_store_t *self, MDB_txn *txn)
{
    mdb_txn_reset(txn);
    MDB_txn *none = NULL;
    if (!__atomic_compare_exchange_n(&self->shared, &none, txn, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        mdb_txn_abort(txn);
}

void
mc_store_exclusive(mc_store_t *self)
{
    pthread_rwlock_wrlock(&self->pins);
    pthread_rwlock_unlock(&self->pins);
}

int
mc_store_grow(mc_store_t *self)
{
    if (self->map_size >= self->map_max)
        return MDB_MAP_FULL;
    //  LMDB resizes only with no transaction open in the process: pinned readers finish first
    pthread_rwlock_wrlock(&self->pins);
    //  a reset reader still holds the old mapping; let it go before resizing
    if (self->reader) {
        mdb_txn_abort(self->reader);
        self->reader = NULL;
    }
    if (self->shared) {
        mdb_txn_abort(self->shared);
        self->shared = NULL;
    }
    size_t next = self->map_size * 2 < self->map_max ? self->map_size * 2 : self->map_max;
    int rc = mdb_env_set_mapsize(self->env, next);
    pthread_rwlock_unlock(&self->pins);
    if (rc == 0) {
        mc_info("store grown", "\"dir\":\"%s\",\"map_bytes\":%zu", self->dir, next);
        self->map_size = next;
    }
    return rc;
}

int
mc_store_once(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t len)
{
    //  not shared: on MDB_KEYEXIST LMDB writes the existing value back into it
    MDB_val k = { len, (void *) key }, empty = { 0, "" };
    return mdb_put(txn, dbi, &k, &empty, MDB_NOOVERWRITE);
}

size_t
mc_store_time_key(unsigned char *out, const void *prefix, size_t prefix_len, uint64_t ms, const void *id,
                  size_t id_len)
{
    size_t at = 0;
    if (prefix_len) {
        memcpy(out, prefix, prefix_len);
        out[prefix_len] = 0;
        at = prefix_len + 1;
    }
    mc_be64_put(out + at, ms);
    memcpy(out + at + 8, id, id_len);
    return at + 8 + id_len;
}
