/*  Catalog handlers against a real LMDB environment, through the actor core (decode, validate,
    transaction, reply), without sockets. */
#include "catalog.h"
#include "catalog_list.h"
#include "catalog_sku.h"
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

/*  Several catalog shards, each its own core, with the runtime's part played by hand: a
    shard's sends are delivered when the test says so, and their replies come back as
    catalog.step, so that the test decides the order of everything. */
#define SHARDS 4

static mc_core_t *s_shards[SHARDS];

//  A request (sku.claim or sku.release) a shard sent, kept to deliver later.
typedef struct {
    unsigned from, to;
    char tag[MC_REQUEST_ID_MAX + 1];
    msgpack_sbuffer frame;
} sent_t;

//  The one request the last message of shard `from` sent, copied (a test failure when not one).
static sent_t
s_sent(unsigned from)
{
    sent_t out = { .from = from };
    msgpack_sbuffer_init(&out.frame);
    const mc_fx_t *send = NULL;
    ASSERT_EQ(mc_core_test_effects(s_shards[from], MC_FX_SEND, NULL, &send), 1);
    if (send) {
        snprintf(out.tag, sizeof out.tag, "%s", send->tag);
        const char *dot = strrchr(send->service, '.');
        out.to = dot ? (unsigned) atoi(dot + 1) : 0;
        msgpack_sbuffer_write(&out.frame, send->data.data, send->data.size);
    }
    return out;
}

//  Delivers it to its shard and its reply to the sender as a step; returns the reply's status.
static int
s_deliver(sent_t *sent)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    s_clock++;
    int status = -1;
    if (sent->to < SHARDS
    &&  mc_core_handle(s_shards[sent->to], MC_PEER_NODE, sent->frame.data, sent->frame.size, s_clock, &out) == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_reply_t rep;
        if (mc_reply_decode(&u, out.data, out.size, &rep) == 0) {
            status = rep.status;
            msgpack_sbuffer body;
            msgpack_sbuffer_init(&body);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 3);
            mc_pack_kv_cstr(&pk, "tag", sent->tag);
            mc_pack_kv_int(&pk, "status", rep.status);
            mc_pack_cstr(&pk, rep.error ? "error" : "body");
            mc_pack_obj(&pk, rep.error ? rep.error : rep.body ? rep.body : &(msgpack_object) { .type = MSGPACK_OBJECT_NIL });
            char id[MC_ULID_LEN + 1];
            mc_ulid(id, ++s_clock);
            mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = MC_STR("catalog.step"), .key = MC_STR("step"),
                                 .role = MC_STR("system"), .time = s_clock };
            result_t r;
            ASSERT_EQ(mc_core_test_call(s_shards[sent->from], &r, &req, &body, s_clock), 200);
            s_free(&r);
            msgpack_sbuffer_destroy(&body);
        }
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&out);
    return status;
}

//  Delivers it again as it was first sent, reply dropped (a resend arriving late); its status.
static int
s_deliver_again(const sent_t *sent)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    int status = -1;
    if (mc_core_handle(s_shards[sent->to], MC_PEER_NODE, sent->frame.data, sent->frame.size, s_clock, &out) == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        mc_reply_t rep;
        if (mc_reply_decode(&u, out.data, out.size, &rep) == 0)
            status = rep.status;
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&out);
    return status;
}

//  The status the caller parked on product's change has been answered with, on shard; -1 when none.
static int
s_answered(unsigned shard, const char *product)
{
    char key[96];
    snprintf(key, sizeof key, "sku:%s", product);
    const mc_fx_t *answer = NULL;
    return mc_core_test_effects(s_shards[shard], MC_FX_ANSWER, key, &answer) == 1 ? answer->status : -1;
}

//  Sends type to shard with key, id (NULL: a new one) and body; the reply in r.
static int
s_call_on(unsigned shard, result_t *r, const char *type, const char *key, const char *id, const msgpack_sbuffer *body)
{
    char fresh[MC_ULID_LEN + 1];
    mc_ulid(fresh, ++s_clock);
    mc_request_t req = { .id = id ? (mc_str_t) { id, strlen(id) } : (mc_str_t) { fresh, MC_ULID_LEN },
                         .type = { type, strlen(type) }, .key = { key, strlen(key) }, .time = s_clock,
                         .role = MC_STR("admin") };
    return mc_core_test_call_from(s_shards[shard], MC_PEER_EDGE, r, &req, body, s_clock);
}

//  A product with sku on its home, as the edge's shard_by places it; its id into id.
static int
s_create_on_home(char id[MC_ULID_LEN + 1], const char *sku)
{
    unsigned home = catalog_sku_home((mc_str_t) { sku, strlen(sku) });
    char seed[MC_ULID_LEN + 1];
    mc_ulid(seed, ++s_clock);
    mc_shard_ulid(id, (mc_str_t) { seed, MC_ULID_LEN }, "catalog", home);
    msgpack_sbuffer body = s_product(sku, "Thing", "", "Things", 100, false);
    result_t r;
    int status = s_call_on(home, &r, "product.create", id, id, &body);
    s_free(&r);
    msgpack_sbuffer_destroy(&body);
    return status;
}

//  A SKU, "<prefix>-<n>", whose home is want.
static void
s_sku_on(char out[32], const char *prefix, unsigned want)
{
    for (unsigned n = 0;; n++) {
        snprintf(out, 32, "%s-%u", prefix, n);
        if (catalog_sku_home((mc_str_t) { out, strlen(out) }) == want)
            return;
    }
}

static msgpack_sbuffer
s_sku_patch(const char *sku)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "sku", sku);
    return sb;
}

static void
s_expect_sku(unsigned shard, const char *id, const char *sku)
{
    result_t r;
    ASSERT_EQ(s_call_on(shard, &r, "product.get", id, NULL, NULL), 200);
    mc_str_t got = { "", 0 };
    mc_map_str(r.rep.body, "sku", &got);
    char buf[64];
    snprintf(buf, sizeof buf, "%.*s", (int) got.len, got.ptr);
    ASSERT_STR(buf, sku);
    s_free(&r);
}

static void
test_sku_across_shards(void)
{
    //  A on shard 0 and B on shard 1 race for N, whose home is 2: the home grants one claim
    //  and refuses the other, whichever arrives first
    char a_sku[32], b_sku[32], n_sku[32], m_sku[32], a[MC_ULID_LEN + 1], b[MC_ULID_LEN + 1], c[MC_ULID_LEN + 1];
    s_sku_on(a_sku, "A", 0);
    s_sku_on(b_sku, "B", 1);
    s_sku_on(n_sku, "N", 2);
    s_sku_on(m_sku, "M", 3);
    ASSERT_EQ(s_create_on_home(a, a_sku), 201);
    ASSERT_EQ(s_create_on_home(b, b_sku), 201);
    msgpack_sbuffer to_n = s_sku_patch(n_sku), to_m = s_sku_patch(m_sku);
    result_t r;
    ASSERT_EQ(s_call_on(0, &r, "product.update", a, NULL, &to_n), -1);     //  parked
    s_free(&r);
    sent_t claim_a = s_sent(0);
    ASSERT_EQ(claim_a.to, 2);
    ASSERT_EQ(s_call_on(1, &r, "product.update", b, NULL, &to_n), -1);
    s_free(&r);
    sent_t claim_b = s_sent(1);
    ASSERT_EQ(s_deliver(&claim_b), 200);
    ASSERT_EQ(s_answered(1, b), 200);           //  B's old SKU is on B's own shard: freed at once
    ASSERT_EQ(s_deliver(&claim_a), 409);
    ASSERT_EQ(s_answered(0, a), 409);
    s_expect_sku(0, a, a_sku);
    s_expect_sku(1, b, n_sku);
    //  N is taken for a creation on its home too; B's old SKU is free
    ASSERT_EQ(s_create_on_home(c, n_sku), 409);
    ASSERT_EQ(s_create_on_home(c, b_sku), 201);
    //  B moves on to M (home 3): the release of N (home 2) is part of the change, and B's
    //  caller hears once N is free
    ASSERT_EQ(s_call_on(1, &r, "product.update", b, NULL, &to_m), -1);
    s_free(&r);
    sent_t claim_m = s_sent(1);
    ASSERT_EQ(claim_m.to, 3);
    //  meanwhile a second change of B's SKU, or its deletion, must wait its turn
    msgpack_sbuffer to_x = s_sku_patch("X-elsewhere");
    ASSERT_EQ(s_call_on(1, &r, "product.update", b, NULL, &to_x), 409);
    mc_str_t code = { "", 0 };
    mc_map_str(r.rep.error, "code", &code);
    MC_CHECK(mc_str_eq(code, "sku_change_in_progress"));
    s_free(&r);
    msgpack_sbuffer_destroy(&to_x);
    ASSERT_EQ(s_call_on(1, &r, "product.delete", b, NULL, NULL), 409);
    s_free(&r);
    ASSERT_EQ(s_deliver(&claim_m), 200);
    ASSERT_EQ(s_answered(1, b), -1);            //  committed, N not yet released
    sent_t release_n = s_sent(1);
    ASSERT_EQ(release_n.to, 2);
    s_expect_sku(1, b, m_sku);
    ASSERT_EQ(s_deliver(&release_n), 200);
    ASSERT_EQ(s_answered(1, b), 200);
    //  the first claim of N, resent and arriving only now, cannot take N back for B
    ASSERT_EQ(s_deliver_again(&claim_b), 410);
    ASSERT_EQ(s_create_on_home(c, n_sku), 201);
    //  nor can the release, resent late, free N from its new holder
    ASSERT_EQ(s_deliver_again(&release_n), 200);
    ASSERT_EQ(s_create_on_home(c, n_sku), 409);
    //  deleting B frees M on its home before the DELETE answers
    ASSERT_EQ(s_call_on(1, &r, "product.delete", b, NULL, NULL), -1);
    s_free(&r);
    sent_t release_m = s_sent(1);
    ASSERT_EQ(s_deliver(&release_m), 200);
    ASSERT_EQ(s_answered(1, b), 204);
    ASSERT_EQ(s_create_on_home(c, m_sku), 201);
    sent_t *all[] = { &claim_a, &claim_b, &claim_m, &release_n, &release_m };
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        msgpack_sbuffer_destroy(&all[i]->frame);
    msgpack_sbuffer_destroy(&to_n);
    msgpack_sbuffer_destroy(&to_m);
}

static void
test_sku_claim_times_out(void)
{
    //  a home that never answers: the caller gets 503 after CATALOG_SKU_CLAIM_MS and nothing
    //  changes; the claim, which may have been granted, is released
    char a_sku[32], n_sku[32], a[MC_ULID_LEN + 1], c[MC_ULID_LEN + 1];
    s_sku_on(a_sku, "TA", 0);
    s_sku_on(n_sku, "TN", 2);
    ASSERT_EQ(s_create_on_home(a, a_sku), 201);
    msgpack_sbuffer to_n = s_sku_patch(n_sku);
    result_t r;
    ASSERT_EQ(s_call_on(0, &r, "product.update", a, NULL, &to_n), -1);
    s_free(&r);
    sent_t claim = s_sent(0);
    //  granted, but its answer is lost
    ASSERT_EQ(s_deliver_again(&claim), 200);
    s_clock += CATALOG_SKU_CLAIM_MS;
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, s_clock);
    mc_request_t tick = { .id = { id, MC_ULID_LEN }, .type = MC_STR("catalog.tick"), .key = MC_STR("tick"),
                          .role = MC_STR("system"), .time = s_clock };
    ASSERT_EQ(mc_core_test_call(s_shards[0], &r, &tick, NULL, s_clock), 200);
    s_free(&r);
    ASSERT_EQ(s_answered(0, a), 503);
    sent_t release = s_sent(0);
    ASSERT_EQ(s_deliver(&release), 200);
    s_expect_sku(0, a, a_sku);
    ASSERT_EQ(s_create_on_home(c, n_sku), 201);
    msgpack_sbuffer_destroy(&claim.frame);
    msgpack_sbuffer_destroy(&release.frame);
    msgpack_sbuffer_destroy(&to_n);
}

//  Runs the tests of several shards, in a directory of their own, with MERCATO_SHARDS set for
//  them (the rest of this file runs one shard, whatever the environment says).
static void
s_run_sharded(void)
{
    setenv("MERCATO_SHARDS", "1,catalog=4", 1);
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/mc-catalog-shards-XXXXXX");
    if (!mkdtemp(dir)) {
        MC_CHECK(false);
        return;
    }
    for (unsigned i = 0; i < SHARDS; i++)
        s_shards[i] = mc_core_new(&catalog_service, dir, i, 1u << 30);
    MC_TEST_RUN(test_sku_across_shards);
    MC_TEST_RUN(test_sku_claim_times_out);
    for (unsigned i = 0; i < SHARDS; i++)
        mc_core_destroy(&s_shards[i]);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    MC_CHECK(system(cmd) == 0);
    setenv("MERCATO_SHARDS", "1", 1);
}

int
main(void)
{
    setenv("MERCATO_SHARDS", "1", 1);
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
    s_run_sharded();
    if (mc_core_test_close(&s_core, dir))
        return 1;
    return MC_TEST_DONE();
}
