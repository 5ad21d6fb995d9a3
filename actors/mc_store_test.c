/*  mc_store: the shards of a service share one environment but no database, and the work their
    threads hand to it runs in groups, one thread at a time, each group in one transaction.
    Real LMDB files in a temporary directory; real threads. */
#include "mc_store.h"
#include "mc_test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#define THREADS 4

static char s_dir[64];

//  The value of key in the shard's database "things", or "" when it has none.
static void
s_get(mc_store_t *store, MDB_dbi dbi, const char *key, char *out, size_t size)
{
    MDB_txn *txn;
    out[0] = 0;
    if (mdb_txn_begin(mc_store_env(store), NULL, MDB_RDONLY, &txn))
        return;
    MDB_val k = { strlen(key), (void *) key }, v;
    if (mdb_get(txn, dbi, &k, &v) == 0)
        snprintf(out, size, "%.*s", (int) v.mv_size, (const char *) v.mv_data);
    mdb_txn_abort(txn);
}

static void
s_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const char *value)
{
    MDB_val k = { strlen(key), (void *) key }, v = { strlen(value), (void *) value };
    ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
}

static void
test_shards_share_the_environment_not_the_databases(void)
{
    mc_store_t *a = mc_store_new(s_dir, 0, 2, 1u << 26), *b = mc_store_new(s_dir, 1, 2, 1u << 26);
    MC_CHECK(a && b);
    if (!a || !b)
        return;
    MC_CHECK(mc_store_env(a) == mc_store_env(b));
    ASSERT_EQ(mc_store_shard(b), 1);
    MDB_dbi da, db;
    ASSERT_EQ(mc_store_dbi(a, "things", 0, &da), 0);
    ASSERT_EQ(mc_store_dbi(b, "things", 0, &db), 0);
    MC_CHECK(da != db);
    MDB_txn *txn;
    ASSERT_EQ(mc_store_begin(a, &txn), 0);
    s_put(txn, da, "k", "of shard 0");
    s_put(txn, db, "k", "of shard 1");
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    char got[32];
    s_get(a, da, "k", got, sizeof got);
    ASSERT_STR(got, "of shard 0");
    s_get(b, db, "k", got, sizeof got);
    ASSERT_STR(got, "of shard 1");
    char name[32];
    mc_store_dbi_name(1, "things", name, sizeof name);
    ASSERT_STR(name, "1/things");
    mc_store_destroy(&a);
    mc_store_destroy(&b);
}

//  One shard's thread: its store, its database, and the work it hands in.
typedef struct {
    mc_store_t *store;
    MDB_dbi dbi;
    char key[8];
    mc_store_work_t work;
} shard_t;

static atomic_int s_running;        //  runs in progress: never more than one
static atomic_int s_overlaps;
static atomic_int s_runs;
static atomic_int s_widest;         //  the most works one run was handed
static atomic_int s_first_started;
static shard_t *s_shards;

static void
s_run(mc_store_work_t **works, size_t n)
{
    if (atomic_fetch_add(&s_running, 1) != 0)
        atomic_fetch_add(&s_overlaps, 1);
    if (atomic_fetch_add(&s_runs, 1) == 0) {
        //  the first run holds the environment until every other thread has queued its work
        atomic_store(&s_first_started, 1);
        while (mc_store_queued(s_shards[0].store) < THREADS - 1)
            sched_yield();
    }
    if ((int) n > atomic_load(&s_widest))
        atomic_store(&s_widest, (int) n);
    //  one transaction for the whole group, begun and committed on this thread
    MDB_txn *txn;
    shard_t *first = works[0]->arg;
    ASSERT_EQ(mc_store_begin(first->store, &txn), 0);
    for (size_t i = 0; i < n; i++) {
        shard_t *sh = works[i]->arg;
        s_put(txn, sh->dbi, sh->key, "done");
    }
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    atomic_fetch_sub(&s_running, 1);
}

static void *
s_thread(void *arg)
{
    shard_t *sh = arg;
    sh->work.arg = sh;
    mc_store_combine(sh->store, &sh->work, s_run);
    MC_CHECK(sh->work.done);
    return NULL;
}

static void
test_work_from_many_shards_runs_as_one_group(void)
{
    shard_t shards[THREADS];
    s_shards = shards;
    for (unsigned i = 0; i < THREADS; i++) {
        shards[i].store = mc_store_new(s_dir, i, THREADS, 1u << 26);
        MC_CHECK(shards[i].store != NULL);
        if (!shards[i].store)
            return;
        ASSERT_EQ(mc_store_dbi(shards[i].store, "group", 0, &shards[i].dbi), 0);
        snprintf(shards[i].key, sizeof shards[i].key, "k%u", i);
    }
    pthread_t t[THREADS];
    pthread_create(&t[0], NULL, s_thread, &shards[0]);
    while (!atomic_load(&s_first_started))
        sched_yield();
    for (unsigned i = 1; i < THREADS; i++)
        pthread_create(&t[i], NULL, s_thread, &shards[i]);
    for (unsigned i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    //  the first thread ran its own; one of the others then ran all three that had queued
    ASSERT_EQ(atomic_load(&s_runs), 2);
    ASSERT_EQ(atomic_load(&s_widest), THREADS - 1);
    ASSERT_EQ(atomic_load(&s_overlaps), 0);
    ASSERT_EQ(mc_store_queued(shards[0].store), 0);
    for (unsigned i = 0; i < THREADS; i++) {
        char got[16];
        s_get(shards[i].store, shards[i].dbi, shards[i].key, got, sizeof got);
        ASSERT_STR(got, "done");
    }
    for (unsigned i = 0; i < THREADS; i++)
        mc_store_destroy(&shards[i].store);
}

int
main(void)
{
    snprintf(s_dir, sizeof s_dir, "/tmp/mc-store-test-XXXXXX");
    if (!mkdtemp(s_dir))
        return 1;
    MC_TEST_RUN(test_shards_share_the_environment_not_the_databases);
    MC_TEST_RUN(test_work_from_many_shards_runs_as_one_group);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", s_dir);
    return MC_TEST_DONE();
}
