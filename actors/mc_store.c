#include "mc_store.h"

#include "mc_util.h"

#include "mc_config.h"
#include "mc_log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One service's environment in this process, shared by the stores of its shards. LMDB forbids
//  opening an environment twice in one process, so stores find it here by directory.
typedef struct _env_t {
    struct _env_t *next;        //  in s_envs
    char *dir;                  //  where it lives
    MDB_env *env;
    int refs;                   //  stores open on it
    mc_store_t *stores;         //  those stores, for mc_store_grow
    pthread_rwlock_t pins;      //  read-locked by each pin; the runner write-locks it to resize
    size_t map_size, map_max;   //  current map size; growth stops at map_max
    pthread_mutex_t lock;       //  guards queue and running
    pthread_cond_t finished;    //  a run ended: works may be done, or the runner's place free
    mc_store_work_t *queue, **tail; //  work waiting for a runner
    bool running;               //  a thread runs work, or holds mc_store_lock
} env_t;

struct _mc_store_t {
    env_t *env;                 //  the service's environment
    mc_store_t *next;           //  the environment's other stores
    unsigned shard;             //  which shard this is
    MDB_txn *reader;            //  a reset read transaction kept for renewal, or NULL
    MDB_txn *shared;            //  the same for pinned readers of other threads (taken by exchange)
};

static pthread_mutex_t s_envs_lock = PTHREAD_MUTEX_INITIALIZER;
static env_t *s_envs;

static void
s_env_close(env_t *e)
{
    if (e->env)
        mdb_env_close(e->env);
    pthread_rwlock_destroy(&e->pins);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->finished);
    free(e->dir);
    free(e);
}

static env_t *
s_env_open(const char *dir, unsigned shards, size_t map_max)
{
    env_t *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->dir = strdup(dir);
    pthread_rwlock_init(&e->pins, NULL);
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->finished, NULL);
    e->tail = &e->queue;
    //  start small and grow by doubling: 64 MiB, or an eighth of a small maximum
    e->map_max = map_max > (1u << 20) ? map_max : (1u << 20);
    e->map_size = e->map_max >= (512u << 20) ? (64u << 20) : (e->map_max / 8) & ~(size_t) 4095;
    //  a shard has at most 24 databases (the service's, idempotency, outbox and the relay's);
    //  each shard keeps two reset readers, and the front and the relay read beside them
    int rc = mc_config_mkdirs(dir) ? -1 : 0;
    if (!rc)
        rc = mdb_env_create(&e->env);
    if (!rc)
        rc = mdb_env_set_maxdbs(e->env, 24 * (shards ? shards : 1) + 8);
    if (!rc)
        rc = mdb_env_set_maxreaders(e->env, 126 + 4 * (int) shards);
    if (!rc)
        rc = mdb_env_set_mapsize(e->env, e->map_size);
    if (!rc)
        rc = mdb_env_open(e->env, dir, MDB_NOTLS, 0600);
    if (rc) {
        mc_error("store open failed", "\"dir\":\"%s\",\"error\":\"%s\"", dir,
                 rc == -1 ? "cannot create directory" : mdb_strerror(rc));
        s_env_close(e);
        return NULL;
    }
    //  an environment that was grown before is larger than our starting size
    MDB_envinfo info;
    mdb_env_info(e->env, &info);
    e->map_size = info.me_mapsize;
    int dead = 0;
    mdb_reader_check(e->env, &dead);
    if (dead)
        mc_warn("cleared stale readers", "\"dir\":\"%s\",\"count\":%d", dir, dead);
    return e;
}

mc_store_t *
mc_store_new(const char *dir, unsigned shard, unsigned shards, size_t map_max)
{
    mc_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shard = shard;
    pthread_mutex_lock(&s_envs_lock);
    env_t *e = s_envs;
    while (e && strcmp(e->dir, dir) != 0)
        e = e->next;
    if (!e && (e = s_env_open(dir, shards, map_max)) != NULL) {
        e->next = s_envs;
        s_envs = e;
    }
    if (e) {
        e->refs++;
        self->next = e->stores;
        e->stores = self;
        self->env = e;
    }
    pthread_mutex_unlock(&s_envs_lock);
    if (!e) {
        free(self);
        return NULL;
    }
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
    env_t *e = self->env;
    pthread_mutex_lock(&s_envs_lock);
    for (mc_store_t **at = &e->stores; *at; at = &(*at)->next)
        if (*at == self) {
            *at = self->next;
            break;
        }
    if (--e->refs == 0) {
        for (env_t **at = &s_envs; *at; at = &(*at)->next)
            if (*at == e) {
                *at = e->next;
                break;
            }
        s_env_close(e);
    }
    pthread_mutex_unlock(&s_envs_lock);
    free(self);
    *self_p = NULL;
}

MDB_env *
mc_store_env(mc_store_t *self)
{
    return self->env->env;
}

unsigned
mc_store_shard(mc_store_t *self)
{
    return self->shard;
}

void
mc_store_dbi_name(unsigned shard, const char *name, char *out, size_t size)
{
    snprintf(out, size, "%u/%s", shard, name);
}

int
mc_store_dbi(mc_store_t *self, const char *name, unsigned flags, MDB_dbi *dbi)
{
    char full[256];
    mc_store_dbi_name(self->shard, name, full, sizeof full);
    MDB_txn *txn;
    int rc = mdb_txn_begin(self->env->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = mdb_dbi_open(txn, full, flags | MDB_CREATE, dbi);
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
    return mdb_txn_begin(self->env->env, NULL, 0, txn);
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
    return mdb_txn_begin(self->env->env, NULL, MDB_RDONLY, txn);
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
mc_store_combine(mc_store_t *self, mc_store_work_t *work, mc_store_run_fn *run)
{
    env_t *e = self->env;
    work->next = NULL;
    work->done = false;
    pthread_mutex_lock(&e->lock);
    *e->tail = work;
    e->tail = &work->next;
    while (!work->done && e->running)
        pthread_cond_wait(&e->finished, &e->lock);
    if (!work->done) {
        //  ours is queued and nobody runs: run all that is queued, in one round; what comes
        //  meanwhile is the next runner's, one of the threads it belongs to
        e->running = true;
        mc_store_work_t *works[256];
        size_t n = 0;
        while (e->queue && n < 256) {
            works[n++] = e->queue;
            e->queue = e->queue->next;
        }
        if (!e->queue)
            e->tail = &e->queue;
        pthread_mutex_unlock(&e->lock);
        run(works, n);
        pthread_mutex_lock(&e->lock);
        for (size_t i = 0; i < n; i++)
            works[i]->done = true;
        e->running = false;
        pthread_cond_broadcast(&e->finished);
    }
    pthread_mutex_unlock(&e->lock);
}

size_t
mc_store_queued(mc_store_t *self)
{
    env_t *e = self->env;
    pthread_mutex_lock(&e->lock);
    size_t n = 0;
    for (mc_store_work_t *w = e->queue; w; w = w->next)
        n++;
    pthread_mutex_unlock(&e->lock);
    return n;
}

void
mc_store_lock(mc_store_t *self)
{
    env_t *e = self->env;
    pthread_mutex_lock(&e->lock);
    while (e->running)
        pthread_cond_wait(&e->finished, &e->lock);
    e->running = true;
    pthread_mutex_unlock(&e->lock);
}

void
mc_store_unlock(mc_store_t *self)
{
    env_t *e = self->env;
    pthread_mutex_lock(&e->lock);
    e->running = false;
    pthread_cond_broadcast(&e->finished);
    pthread_mutex_unlock(&e->lock);
}

void
mc_store_pin(mc_store_t *self)
{
    pthread_rwlock_rdlock(&self->env->pins);
}

void
mc_store_unpin(mc_store_t *self)
{
    pthread_rwlock_unlock(&self->env->pins);
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
    pthread_rwlock_wrlock(&self->env->pins);
    pthread_rwlock_unlock(&self->env->pins);
}

int
mc_store_grow(mc_store_t *self)
{
    env_t *e = self->env;
    if (e->map_size >= e->map_max)
        return MDB_MAP_FULL;
    //  LMDB resizes only with no transaction open in the process: pinned readers finish first,
    //  and the reset readers every shard keeps (they hold the old mapping) go
    pthread_rwlock_wrlock(&e->pins);
    pthread_mutex_lock(&s_envs_lock);
    for (mc_store_t *s = e->stores; s; s = s->next) {
        if (s->reader) {
            mdb_txn_abort(s->reader);
            s->reader = NULL;
        }
        if (s->shared) {
            mdb_txn_abort(s->shared);
            s->shared = NULL;
        }
    }
    pthread_mutex_unlock(&s_envs_lock);
    size_t next = e->map_size * 2 < e->map_max ? e->map_size * 2 : e->map_max;
    int rc = mdb_env_set_mapsize(e->env, next);
    pthread_rwlock_unlock(&e->pins);
    if (rc == 0) {
        mc_info("store grown", "\"dir\":\"%s\",\"map_bytes\":%zu", e->dir, next);
        e->map_size = next;
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
