/*  catalog-seed: fills the catalog's shards with N generated products, for benchmarks.

    usage: catalog-seed DATA_DIR N [CATEGORIES [IDS_FILE]]
    Runs the real product.create handler, many products per transaction (a bulk load has no
    client waiting on each write), so the indexes are exactly what the live actor builds.
    Product i: sku "SEED-<i>", category "cat-<i % CATEGORIES>", price 100 + (i * 7919) % 100000.
    Each lands on its SKU's home shard (MERCATO_SHARDS, as the actors read it), with an id drawn
    there as the edge draws it, and leaves its product.created event in that shard's outbox, as
    the actor would. IDS_FILE, when given, receives the id of every product created, one a line.
    The shard counts are recorded in DATA_DIR/shards, as a node's first start records them, so
    the node starts on the seeded directory with the same MERCATO_SHARDS. */
#include "catalog.h"
#include "catalog_sku.h"
#include "mc_config.h"
#include "mc_schema.h"
#include "mc_util.h"

#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>

static const char *s_words[] = { "red", "blue", "green", "cotton", "leather", "classic", "sport",
                                 "shoe", "hat", "shirt", "bag", "watch", "lamp", "chair", "mug" };

//  One shard being filled.
typedef struct {
    mc_store_t *store;          //  its environment
    void *state;                //  the service's handles
    MDB_dbi outbox, outbox_seq; //  where its events go
    MDB_txn *txn;               //  the open bulk transaction, or NULL
    long pending;               //  products in it
} shard_t;

static int
s_open(shard_t *sh, const char *data, unsigned shard)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/catalog/%u", data, shard);
    sh->store = mc_store_new(dir, (size_t) 64 << 30);
    if (!sh->store || catalog_service.open(sh->store, data, &sh->state))
        return -1;
    if (mc_store_dbi(sh->store, "outbox", MDB_CREATE, &sh->outbox)
    ||  mc_store_dbi(sh->store, "outbox_seq", MDB_CREATE, &sh->outbox_seq))
        return -1;
    //  a bulk transaction cannot grow the map half way: make room for it first
    for (int i = 0; i < 5; i++)
        mc_store_grow(sh->store);
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
    char path[4200], counts[1024];
    snprintf(path, sizeof path, "%s/shards", argv[1]);
    mc_schema_shards_text(counts, sizeof counts);
    if (access(path, F_OK) != 0 && (mc_config_mkdirs(argv[1]) || mc_config_write_file(path, counts))) {
        fprintf(stderr, "cannot write %s\n", path);
        return 1;
    }
    unsigned shards = mc_schema_shards("catalog");
    shard_t *sh = calloc(shards, sizeof *sh);
    if (!sh)
        return 1;
    for (unsigned i = 0; i < shards; i++)
        if (s_open(&sh[i], argv[1], i))
            return 1;
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
        char sku[32], name[96], desc[160], cat[32];
        snprintf(sku, sizeof sku, "SEED-%ld", i);
        shard_t *s = &sh[catalog_sku_home((mc_str_t) { sku, strlen(sku) })];
        if (!s->txn && mc_store_begin(s->store, &s->txn))
            return 1;
        msgpack_sbuffer_clear(&body);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
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
        char seed[MC_ULID_LEN + 1], id[MC_ULID_LEN + 1];
        mc_ulid(seed, t0 + (uint64_t) i);
        mc_shard_ulid(id, (mc_str_t) { seed, MC_ULID_LEN }, "catalog", (unsigned) (s - sh));
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
        mc_ctx_t ctx = { .req = &decoded, .txn = s->txn, .state = s->state, .pk = &rp, .outbox = s->outbox,
                         .outbox_seq = s->outbox_seq, .service = "catalog" };
        int status = create->fn(&ctx);
        msgpack_unpacked_destroy(&u);
        if (status != 201 && status != 409) {
            fprintf(stderr, "product %ld: status %d\n", i, status);
            return 1;
        }
        if (ids && status == 201)
            fprintf(ids, "%s\n", id);
        if (++s->pending % 10000 == 0) {
            if (mdb_txn_commit(s->txn))
                return 1;
            s->txn = NULL;
        }
    }
    for (unsigned i = 0; i < shards; i++) {
        if (sh[i].txn && mdb_txn_commit(sh[i].txn))
            return 1;
        free(sh[i].state);
        mc_store_destroy(&sh[i].store);
    }
    free(sh);
    if (ids && fclose(ids)) {
        fprintf(stderr, "cannot write %s\n", argv[4]);
        return 1;
    }
    printf("seeded %ld products on %u shards in %.1f s\n", n, shards, (double) (mc_now_ms() - t0) / 1000.0);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    return 0;
}
