/*  Catalog handlers against a real LMDB environment, through the actor core (decode, validate,
    transaction, reply), without sockets. */
#include "catalog.h"
#include "catalog_list.h"
#include "mc_outbox.h"
#include "mc_core_test.h"
#include "mc_test.h"
#include "mc_util.h"

#include <unistd.h>

static mc_core_t *s_core;
static uint64_t s_clock = 1700000000000ull;

//  Sends type with key and a body packed by the caller (raw msgpack map, or NULL for {}).
static int
s_call(result_t *r, const char *type, const char *key, const msgpack_sbuffer *body, const char *if_match)
{
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, ++s_clock);
    mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = { type, strlen(type) },
                         .key = key ? (mc_str_t) { key, strlen(key) } : (mc_str_t) { id, MC_ULID_LEN },
                         .time = s_clock, .if_match = if_match ? (mc_str_t) { if_match, strlen(if_match) }
                                                               : (mc_str_t) { "", 0 } };
    return mc_core_test_call(s_core, r, &req, body, s_clock);
}

static msgpack_sbuffer
s_product(const char *sku, const char *name, const char *desc, const char *cat, int64_t price, bool featured)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mc_pack_kv_cstr(&pk, "sku", sku);
    mc_pack_kv_cstr(&pk, "name", name);
    mc_pack_kv_cstr(&pk, "description", desc);
    mc_pack_kv_cstr(&pk, "category", cat);
    mc_pack_kv_int(&pk, "price_cents", price);
    mc_pack_kv_bool(&pk, "featured", featured);
    return sb;
}

//  Creates a product and copies its id out.
static int
s_create(char *id_out, const char *sku, const char *name, const char *desc, const char *cat, int64_t price,
         bool featured)
{
    msgpack_sbuffer body = s_product(sku, name, desc, cat, price, featured);
    result_t r;
    int status = s_call(&r, "product.create", NULL, &body, NULL);
    mc_str_t id = { "", 0 };
    mc_map_str(r.rep.body, "id", &id);
    if (id_out)
        snprintf(id_out, MC_ULID_LEN + 1, "%.*s", (int) id.len, id.ptr);
    s_free(&r);
    msgpack_sbuffer_destroy(&body);
    return status;
}

static msgpack_sbuffer
s_query(const char *q, const char *category, int64_t min_price, int64_t max_price, int featured, int64_t limit,
        const char *cursor)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int n = !!q + !!category + (min_price >= 0) + (max_price >= 0) + (featured >= 0) + 1 + !!cursor;
    msgpack_pack_map(&pk, (size_t) n);
    if (q) mc_pack_kv_cstr(&pk, "q", q);
    if (category) mc_pack_kv_cstr(&pk, "category", category);
    if (min_price >= 0) mc_pack_kv_int(&pk, "min_price", min_price);
    if (max_price >= 0) mc_pack_kv_int(&pk, "max_price", max_price);
    if (featured >= 0) mc_pack_kv_bool(&pk, "featured", featured);
    mc_pack_kv_int(&pk, "limit", limit);
    if (cursor) mc_pack_kv_cstr(&pk, "cursor", cursor);
    return sb;
}

//  Walks every page of a query; returns the number of items, checks ids strictly increase
//  (or prices never decrease when by_price).
static int
s_walk(const char *q, const char *category, int64_t min_price, int64_t max_price, int featured, int64_t limit,
       bool by_price)
{
    char cursor[128] = "";
    int total = 0, pages = 0;
    char last_id[MC_ULID_LEN + 1] = "";
    int64_t last_price = -1;
    while (pages++ < 10000) {
        msgpack_sbuffer body = s_query(q, category, min_price, max_price, featured, limit, *cursor ? cursor : NULL);
        result_t r;
        int status = s_call(&r, "product.list", "", &body, NULL);
        msgpack_sbuffer_destroy(&body);
        ASSERT_EQ(status, 200);
        const msgpack_object *items = mc_map_get(r.rep.body, "items");
        if (status != 200 || !items) {
            s_free(&r);
            return -1;
        }
        MC_CHECK(items->via.array.size <= (uint32_t) limit);
        for (uint32_t i = 0; i < items->via.array.size; i++) {
            mc_str_t id;
            int64_t price;
            mc_map_str(&items->via.array.ptr[i], "id", &id);
            mc_map_int(&items->via.array.ptr[i], "price_cents", &price);
            if (by_price)
                MC_CHECK(price >= last_price);
            else
                MC_CHECK(memcmp(id.ptr, last_id, MC_ULID_LEN) > 0);
            memcpy(last_id, id.ptr, MC_ULID_LEN);
            last_price = price;
            MC_CHECK(min_price < 0 || price >= min_price);
            MC_CHECK(max_price < 0 || price <= max_price);
            total++;
        }
        mc_str_t next;
        bool more = mc_map_str(r.rep.body, "next_cursor", &next) == 0;
        if (more)
            snprintf(cursor, sizeof cursor, "%.*s", (int) next.len, next.ptr);
        s_free(&r);
        if (!more)
            break;
    }
    return total;
}

static void
test_crud(void)
{
    char id[MC_ULID_LEN + 1];
    ASSERT_EQ(s_create(id, "SKU-1", "Red Shoe", "running shoe", "Shoes", 4999, true), 201);
    ASSERT_EQ(s_create(NULL, "sku-1", "Other", "", "Shoes", 1, false), 409);     //  sku unique in any case
    result_t r;
    ASSERT_EQ(s_call(&r, "product.get", id, NULL, NULL), 200);
    MC_CHECK(mc_str_eq(r.rep.etag, "\"1\""));
    mc_str_t currency;
    ASSERT_EQ(mc_map_str(r.rep.body, "currency", &currency), 0);
    MC_CHECK(mc_str_eq(currency, "USD"));
    s_free(&r);
    ASSERT_EQ(s_call(&r, "product.get", "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL, NULL), 404);
    s_free(&r);

    //  merge patch: present replaces, null resets, stale If-Match refused
    msgpack_sbuffer patch;
    msgpack_sbuffer_init(&patch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &patch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mc_pack_kv_cstr(&pk, "category", "Boots");
    mc_pack_cstr(&pk, "description");
    msgpack_pack_nil(&pk);
    mc_pack_kv_int(&pk, "price_cents", 5999);
    ASSERT_EQ(s_call(&r, "product.update", id, &patch, "\"7\""), 412);
    s_free(&r);
    ASSERT_EQ(s_call(&r, "product.update", id, &patch, "\"1\""), 200);
    MC_CHECK(mc_str_eq(r.rep.etag, "\"2\""));
    mc_str_t desc, cat;
    mc_map_str(r.rep.body, "description", &desc);
    mc_map_str(r.rep.body, "category", &cat);
    ASSERT_EQ(desc.len, 0);
    MC_CHECK(mc_str_eq(cat, "Boots"));
    s_free(&r);
    msgpack_sbuffer_destroy(&patch);

    //  the old category and words are gone from the indexes, the new ones are there
    ASSERT_EQ(s_walk(NULL, "shoes", -1, -1, -1, 10, false), 0);
    ASSERT_EQ(s_walk(NULL, "BOOTS", -1, -1, -1, 10, false), 1);
    ASSERT_EQ(s_walk("running", NULL, -1, -1, -1, 10, false), 0);
    ASSERT_EQ(s_walk("red SHOE", NULL, -1, -1, -1, 10, false), 1);

    ASSERT_EQ(s_call(&r, "product.delete", id, NULL, NULL), 204);
    s_free(&r);
    ASSERT_EQ(s_call(&r, "product.get", id, NULL, NULL), 404);
    s_free(&r);
    ASSERT_EQ(s_walk("red", NULL, -1, -1, -1, 10, false), 0);
    ASSERT_EQ(s_create(NULL, "SKU-1", "Reused", "", "Shoes", 1, false), 201);  //  the sku is free again
}

static void
test_lists(void)
{
    //  300 products over 3 categories; every 4th featured; words by residue
    for (int i = 0; i < 300; i++) {
        char sku[32], name[64], cat[32];
        snprintf(sku, sizeof sku, "L-%d", i);
        snprintf(name, sizeof name, "%s item %d", i % 2 ? "odd" : "even", i);
        snprintf(cat, sizeof cat, "list-%d", i % 3);
        ASSERT_EQ(s_create(NULL, sku, name, i % 5 == 0 ? "five" : "", cat, 1000 + i, i % 4 == 0), 201);
    }
    ASSERT_EQ(s_walk(NULL, "list-1", -1, -1, -1, 7, false), 100);
    ASSERT_EQ(s_walk("odd", "list-1", -1, -1, -1, 7, false), 50);
    ASSERT_EQ(s_walk("odd five", NULL, -1, -1, -1, 7, false), 30);
    ASSERT_EQ(s_walk(NULL, NULL, -1, -1, 1, 9, false), 75 + 0);
    ASSERT_EQ(s_walk("even", NULL, -1, -1, 1, 9, false), 75);
    ASSERT_EQ(s_walk(NULL, "list-0", 1100, 1199, -1, 8, false), 33);    //  category + price predicate
    ASSERT_EQ(s_walk(NULL, NULL, 1100, 1199, -1, 8, true), 100);        //  price only: price order
    ASSERT_EQ(s_walk(NULL, NULL, -1, -1, 0, 13, false), 225 + 1);       //  not featured, plus test_crud's "Reused"
    ASSERT_EQ(s_walk("nothing-matches", NULL, -1, -1, -1, 5, false), 0);

    msgpack_sbuffer body = s_query(NULL, NULL, -1, -1, -1, 5, "not-a-cursor!");
    result_t r;
    ASSERT_EQ(s_call(&r, "product.list", "", &body, NULL), 400);
    s_free(&r);
    msgpack_sbuffer_destroy(&body);
    body = s_query(NULL, NULL, -1, -1, -1, 101, NULL);
    ASSERT_EQ(s_call(&r, "product.list", "", &body, NULL), 422);
    s_free(&r);
    msgpack_sbuffer_destroy(&body);

    ASSERT_EQ(s_call(&r, "category.list", "", NULL, NULL), 200);
    ASSERT_EQ(r.rep.body->via.array.size, 4);   //  list-0..2 and Shoes
    int64_t count = 0;
    mc_map_int(&r.rep.body->via.array.ptr[0], "product_count", &count);
    ASSERT_EQ(count, 100);
    s_free(&r);
}

//  Reads for one page of the query.
static uint64_t
s_page_reads(const char *q, const char *category, int64_t min_price, int64_t max_price, int featured)
{
    msgpack_sbuffer body = s_query(q, category, min_price, max_price, featured, 10, NULL);
    result_t r;
    uint64_t before = catalog_list_reads();
    ASSERT_EQ(s_call(&r, "product.list", "", &body, NULL), 200);
    uint64_t reads = catalog_list_reads() - before;
    s_free(&r);
    msgpack_sbuffer_destroy(&body);
    return reads;
}

static void
test_list_cost_is_independent_of_catalog_size(void)
{
    //  a page of 10 over a few dozen matches, then 3,000 other products added: same cost
    for (int i = 0; i < 30; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "RARE-%d", i);
        ASSERT_EQ(s_create(NULL, sku, "zebra lamp", "", "rare", 500000 + i, i % 2 == 0), 201);
    }
    uint64_t cat = s_page_reads(NULL, "rare", -1, -1, -1);
    uint64_t word = s_page_reads("zebra", NULL, -1, -1, -1);
    uint64_t both = s_page_reads("lamp", "rare", -1, -1, 1);
    uint64_t price = s_page_reads(NULL, NULL, 500000, 500100, -1);
    for (int i = 0; i < 3000; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "BULK-%d", i);
        s_create(NULL, sku, "plain lamp", "", "bulk", 100 + i, i % 2 == 0);
    }
    ASSERT_EQ(s_page_reads(NULL, "rare", -1, -1, -1), cat);
    ASSERT_EQ(s_page_reads("zebra", NULL, -1, -1, -1), word);
    ASSERT_EQ(s_page_reads(NULL, NULL, 500000, 500100, -1), price);
    MC_CHECK(s_page_reads("lamp", "rare", -1, -1, 1) <= both + 4);
    MC_CHECK(cat <= 25 && word <= 25 && price <= 25);

    //  more rare ones after the bulk: walking every page of "rare lamps" must leapfrog over the
    //  3,000 bulk lamps between them, not step through them
    for (int i = 30; i < 60; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "RARE-%d", i);
        ASSERT_EQ(s_create(NULL, sku, "zebra lamp", "", "rare", 500000 + i, i % 2 == 0), 201);
    }
    uint64_t before = catalog_list_reads();
    ASSERT_EQ(s_walk("lamp", "rare", -1, -1, -1, 10, false), 60);
    uint64_t walk = catalog_list_reads() - before;
    MC_CHECK(walk < 400);
    if (walk >= 400)
        fprintf(stderr, "walking 60 rare lamps took %" PRIu64 " reads\n", walk);
}

//  Every event in the outbox after sequence `after`, decoded into u (an array).
static const msgpack_object *
s_events(uint64_t after, msgpack_sbuffer *sb, msgpack_unpacked *u)
{
    msgpack_sbuffer_init(sb);
    msgpack_unpacked_init(u);
    mc_outbox_read(mc_core_env(s_core), mc_core_outbox(s_core), after, 100000, sb);
    return mc_msgpack_unpack(u, sb->data, sb->size) == 0 ? &u->data : NULL;
}

static uint64_t
s_last_seq(void)
{
    msgpack_sbuffer sb;
    msgpack_unpacked u;
    const msgpack_object *all = s_events(0, &sb, &u);
    uint64_t seq = 0;
    if (all && all->via.array.size)
        mc_map_uint(&all->via.array.ptr[all->via.array.size - 1], "seq", &seq);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
    return seq;
}

static void
test_events(void)
{
    uint64_t start = s_last_seq();
    char id[MC_ULID_LEN + 1];
    msgpack_sbuffer body = s_product("EV-1", "Event Lamp", "bright", "events", 1234, false);
    //  initial_stock travels in the event, not in the product
    msgpack_sbuffer_clear(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    mc_pack_kv_cstr(&pk, "sku", "EV-1");
    mc_pack_kv_cstr(&pk, "name", "Event Lamp");
    mc_pack_kv_cstr(&pk, "description", "bright");
    mc_pack_kv_cstr(&pk, "category", "events");
    mc_pack_kv_int(&pk, "price_cents", 1234);
    mc_pack_kv_int(&pk, "initial_stock", 40);
    result_t r;
    ASSERT_EQ(s_call(&r, "product.create", NULL, &body, NULL), 201);
    mc_str_t sid;
    mc_map_str(r.rep.body, "id", &sid);
    snprintf(id, sizeof id, "%.*s", (int) sid.len, sid.ptr);
    s_free(&r);
    ASSERT_EQ(s_call(&r, "product.create", NULL, &body, NULL), 409);     //  refused: no event
    s_free(&r);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer patch;
    msgpack_sbuffer_init(&patch);
    msgpack_packer_init(&pk, &patch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_int(&pk, "price_cents", 999);
    ASSERT_EQ(s_call(&r, "product.update", id, &patch, NULL), 200);
    s_free(&r);
    msgpack_sbuffer_destroy(&patch);
    ASSERT_EQ(s_call(&r, "product.delete", id, NULL, NULL), 204);
    s_free(&r);

    msgpack_sbuffer sb;
    msgpack_unpacked u;
    const msgpack_object *ev = s_events(start, &sb, &u);
    ASSERT_EQ(ev ? ev->via.array.size : 0, 3);
    static const char *types[] = { "product.created", "product.updated", "product.deleted" };
    uint64_t last = start;
    for (uint32_t i = 0; ev && i < ev->via.array.size && i < 3; i++) {
        const msgpack_object *e = &ev->via.array.ptr[i];
        mc_str_t type, agg, agg_id, eid, source;
        uint64_t seq = 0;
        mc_map_str(e, "type", &type);
        mc_map_str(e, "aggregate", &agg);
        mc_map_str(e, "aggregate_id", &agg_id);
        mc_map_str(e, "id", &eid);
        mc_map_str(e, "source", &source);
        mc_map_uint(e, "seq", &seq);
        MC_CHECK(mc_str_eq(type, types[i]));
        MC_CHECK(mc_str_eq(agg, "product"));
        MC_CHECK(mc_str_eq(agg_id, id));
        MC_CHECK(mc_str_eq(source, "/mercato/catalog"));
        MC_CHECK(eid.len == MC_ULID_LEN + 2 && eid.ptr[MC_ULID_LEN] == '-');
        MC_CHECK(seq > last);
        last = seq;
    }
    if (ev && ev->via.array.size == 3) {
        const msgpack_object *created = mc_map_get(&ev->via.array.ptr[0], "data");
        int64_t stock = 0, price = 0;
        ASSERT_EQ(mc_map_int(created, "initial_stock", &stock), 0);
        ASSERT_EQ(stock, 40);
        mc_map_int(mc_map_get(&ev->via.array.ptr[1], "data"), "price_cents", &price);
        ASSERT_EQ(price, 999);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_sequence_rises_after_the_relay_empties_the_outbox(void)
{
    uint64_t last = s_last_seq();
    MC_CHECK(last > 0);
    //  what the relay does once Kafka has everything
    MDB_txn *txn;
    ASSERT_EQ(mdb_txn_begin(mc_core_env(s_core), NULL, 0, &txn), 0);
    ASSERT_EQ(mdb_drop(txn, mc_core_outbox(s_core), 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    ASSERT_EQ(s_last_seq(), 0);
    ASSERT_EQ(s_create(NULL, "SEQ-1", "Sequence", "", "seq", 1, false), 201);
    //  a reader positioned after `last` must see it
    ASSERT_EQ(s_last_seq(), last + 1);
}

static void
test_storage_full(void)
{
    //  a 1 MiB ceiling: the map grows from 128 KiB until it cannot, then writes are refused with
    //  507 and everything acknowledged before is still readable
    char dir[] = "/tmp/mc-catalog-full-XXXXXX";
    MC_CHECK(mkdtemp(dir) != NULL);
    mc_core_t *saved = s_core;
    s_core = mc_core_new(&catalog_service, dir, 0, 1u << 20);
    MC_CHECK(s_core != NULL);
    char desc[4001];
    memset(desc, 'x', 4000);
    desc[4000] = 0;
    char first[MC_ULID_LEN + 1] = "";
    int created = 0, status = 201;
    for (int i = 0; i < 1000 && status == 201; i++) {
        char sku[32];
        snprintf(sku, sizeof sku, "F-%d", i);
        desc[i % 4000] = 'y';
        status = s_create(created ? NULL : first, sku, "filler", desc, "fill", 1, false);
        created += status == 201;
    }
    ASSERT_EQ(status, 507);
    MC_CHECK(created > 40);     //  more than fits in the first 128 KiB
    result_t r;
    ASSERT_EQ(s_call(&r, "product.get", first, NULL, NULL), 200);
    s_free(&r);
    mc_core_destroy(&s_core);
    s_core = saved;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    MC_CHECK(system(cmd) == 0);
}

int
main(void)
{
    char dir[64];
    s_core = mc_core_test_open(&catalog_service, dir, 1u << 30);
    if (!s_core)
        return 1;
    MC_TEST_RUN(test_crud);
    MC_TEST_RUN(test_lists);
    MC_TEST_RUN(test_list_cost_is_independent_of_catalog_size);
    MC_TEST_RUN(test_events);
    MC_TEST_RUN(test_sequence_rises_after_the_relay_empties_the_outbox);
    MC_TEST_RUN(test_storage_full);
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
