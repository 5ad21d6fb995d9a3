/*  catalog-seed: fills the catalog's shards with N generated products, for benchmarks.

    usage: catalog-seed DATA_DIR N [CATEGORIES [IDS_FILE]]
    Runs the real product.create handler, many products per transaction (a bulk load has no
    client waiting on each write), so the indexes are exactly what the live actor builds.
    Each product goes to its id's shard, DATA_DIR/catalog/<mc_shard_of("catalog", id)>, where
    the node's GET looks for it: MERCATO_SHARDS must be what the node will run with (the seed
    records the counts in DATA_DIR/shards, as the node's first start does).
    Product i: sku "SEED-<i>", category "cat-<i % CATEGORIES>", price 100 + (i * 7919) % 100000.
    Each product also leaves its product.created event in its shard's outbox, as the actor would.
    IDS_FILE, when given, receives the id of every product created, one a line.
    Exits 1 with a message on stderr when a store cannot be opened or a write fails. */
#include "catalog.h"
#include "mc_config.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *s_words[] = { "red", "blue", "green", "cotton", "leather", "classic", "sport",
                                 "shoe", "hat", "shirt", "bag", "watch", "lamp", "chair", "mug" };

//  One catalog shard's environment, its handler state and the bulk transaction open on it.
typedef struct {
    mc_store_t *store;
    void *state;
    MDB_dbi outbox, outbox_seq;
    MDB_txn *txn;
} seed_shard_t;

static int
s_shard_open(seed_shard_t *sh, const char *data_dir, unsigned shard)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/catalog/%u", data_dir, shard);
    sh->store = mc_store_new(dir, (size_t) 64 << 30);
    if (!sh->store || catalog_service.open(sh->store, data_dir, &sh->state))
        return -1;
    //  the same outbox the actor writes to: a seeded catalog also leaves its product.created events
    if (mc_store_dbi(sh->store, "outbox", MDB_CREATE, &sh->outbox)
    ||  mc_store_dbi(sh->store, "outbox_seq", MDB_CREATE, &sh->outbox_seq))
        return -1;
    //  a bulk transaction cannot grow the map half way: make room for it first
    for (int i = 0; i < 5; i++)
        mc_store_grow(sh->store);
    return 0;
}

static int
s_commit_all(seed_shard_t *shards, unsigned n)
{
    for (unsigned s = 0; s < n; s++)
        if (shards[s].txn) {
            int rc = mdb_txn_commit(shards[s].txn);
            shards[s].txn = NULL;
            if (rc) {
                fprintf(stderr, "catalog shard %u: commit: %s\n", s, mdb_strerror(rc));
                return -1;
            }
        }
    return 0;
}

//  The node records every service's shard count in DATA/shards at its first start and takes a
//  directory without that record, but with shard 0 of a service, for one made before shards (one
//  of each). A seeded directory has catalog/0: record the counts the seed used, in the node's
//  format (actors/main.c s_shards_text), so the node starts on it with the same MERCATO_SHARDS.
static int
s_record_shards(const char *data_dir)
{
    char path[4200], text[1024];
    snprintf(path, sizeof path, "%s/shards", data_dir);
    if (access(path, F_OK) == 0)
        return 0;               //  the node checks a record that exists against its own counts
    size_t at = 0;
    text[0] = 0;
    for (size_t i = 0; i < mc_services_count && at < sizeof text; i++) {
        int n = snprintf(text + at, sizeof text - at, "%s%s=%u", i ? "," : "", mc_services[i].name,
                         mc_schema_shards(mc_services[i].name));
        at += n > 0 ? (size_t) n : 0;
    }
    if (mc_config_mkdirs(data_dir) || mc_config_write_file(path, text)) {
        fprintf(stderr, "cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: catalog-seed DATA_DIR N [CATEGORIES [IDS_FILE]]\n");
        return 2;
    }
    long n = atol(argv[2]);
    long cats = argc > 3 ? atol(argv[3]) : 50;
    FILE *ids = NULL;
    if (argc > 4 && !(ids = fopen(argv[4], "w"))) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 1;
    }
    if (s_record_shards(argv[1]))
        return 1;
    unsigned nshards = mc_schema_shards("catalog");
    seed_shard_t shards[MC_SHARDS_MAX] = { 0 };
    for (unsigned s = 0; s < nshards; s++)
        if (s_shard_open(&shards[s], argv[1], s)) {
            fprintf(stderr, "cannot open catalog shard %u under %s\n", s, argv[1]);
            return 1;
        }
    const mc_handler_t *create = NULL;
    for (size_t i = 0; i < catalog_service.nhandlers; i++)
        if (streq(catalog_service.handlers[i].type, "product.create"))
            create = &catalog_service.handlers[i];
    msgpack_sbuffer body, env, out;
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&env);
    msgpack_sbuffer_init(&out);
    uint64_t t0 = mc_now_ms();
    for (long i = 0; i < n; i++) {
        msgpack_sbuffer_clear(&body);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
        char sku[32], name[96], desc[160], cat[32];
        snprintf(sku, sizeof sku, "SEED-%ld", i);
        snprintf(name, sizeof name, "%s %s %ld", s_words[i % 15], s_words[(i / 15) % 15], i);
        snprintf(desc, sizeof desc, "A %s %s for every day", s_words[(i / 7) % 15], s_words[(i / 3) % 15]);
        snprintf(cat, sizeof cat, "cat-%ld", i % cats);
        msgpack_pack_map(&pk, 6);
        mc_pack_kv_cstr(&pk, "sku", sku);
        mc_pack_kv_cstr(&pk, "name", name);
        mc_pack_kv_cstr(&pk, "description", desc);
        mc_pack_kv_cstr(&pk, "category", cat);
        mc_pack_kv_int(&pk, "price_cents", 100 + (i * 7919) % 100000);
        mc_pack_kv_bool(&pk, "featured", i % 10 == 0);
        char id[MC_ULID_LEN + 1];
        mc_ulid(id, t0 + (uint64_t) i);
        seed_shard_t *sh = &shards[mc_shard_of("catalog", id, MC_ULID_LEN)];
        if (!sh->txn && mc_store_begin(sh->store, &sh->txn))
            return 1;
        mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = MC_STR("product.create"),
                             .key = { id, MC_ULID_LEN }, .time = t0 + (uint64_t) i };
        msgpack_sbuffer_clear(&env);
        mc_request_encode(&env, &req, (mc_str_t) { body.data, body.size });
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_request_t decoded;
        if (mc_request_decode(&u, env.data, env.size, &decoded))
            return 1;
        msgpack_sbuffer_clear(&out);
        msgpack_packer rp;
        msgpack_packer_init(&rp, &out, msgpack_sbuffer_write);
        mc_ctx_t ctx = { .req = &decoded, .txn = sh->txn, .state = sh->state, .pk = &rp, .outbox = sh->outbox,
                         .outbox_seq = sh->outbox_seq, .service = "catalog" };
        int status = create->fn(&ctx);
        msgpack_unpacked_destroy(&u);
        if (status != 201 && status != 409) {
            fprintf(stderr, "product %ld: status %d\n", i, status);
            return 1;
        }
        if (ids && status == 201)
            fprintf(ids, "%s\n", id);
        if (((i + 1) % 10000 == 0 || i + 1 == n) && s_commit_all(shards, nshards))
            return 1;
    }
    if (ids && fclose(ids)) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 1;
    }
    printf("seeded %ld products into %u catalog shard(s) in %.1f s\n", n, nshards,
           (double) (mc_now_ms() - t0) / 1000.0);
    for (unsigned s = 0; s < nshards; s++) {
        free(shards[s].state);
        mc_store_destroy(&shards[s].store);
    }
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    return 0;
}
