/*  mc_gather self-test: merged pages of many shards against the pages of one shard holding
    everything. A model shard answers as the list handlers do (the items after the cursor, at
    most limit, next_cursor the last item's key when more follow); the end-to-end test
    (tests/e2e/test_gather.py) compares real clusters of 1 and 16 shards. */
#include "mc_gather.h"
#include "mc_msgpack.h"

#include "mc_test.h"
#include "mc_util.h"

#define ITEMS_MAX 400

//  A model shard: sorted keys (4 characters each), and for each a count.
typedef struct {
    char keys[ITEMS_MAX][5];
    int counts[ITEMS_MAX];
    bool hidden[ITEMS_MAX];     //  filtered out: never on a page, but looked at
    size_t n;
    size_t budget;      //  0, or how many keys past the cursor it looks at before it stops
} shard_t;

static void
s_pack_b64(msgpack_packer *pk, const char *raw)
{
    char enc[64];
    mc_pack_str(pk, enc, mc_b64url_encode(enc, raw, strlen(raw)));
}

//  True when key a comes after cursor c in the order.
static bool
s_after(mc_gather_t order, const char *a, const char *c)
{
    return !*c || (order == MC_GATHER_DESC ? strcmp(a, c) < 0 : strcmp(a, c) > 0);
}

//  The shard's page after cursor (raw, "" for the first), in order, as a reply body.
static void
s_page(const shard_t *s, mc_gather_t order, const char *cursor, int64_t limit, msgpack_sbuffer *out)
{
    size_t idx[ITEMS_MAX], m = 0, looked = 0;
    char stop[5] = "";
    bool more = false;
    for (size_t j = 0; j < s->n; j++) {
        size_t i = order == MC_GATHER_DESC ? s->n - 1 - j : j;
        if (!s_after(order, s->keys[i], cursor))
            continue;
        if (s->budget && looked == s->budget) {
            more = true;    //  it stopped where it was, maybe past filtered-out keys
            break;
        }
        looked++;
        if (s->hidden[i]) {
            if (s->budget)
                snprintf(stop, sizeof stop, "%s", s->keys[i]);
            continue;
        }
        if ((int64_t) m == limit) {
            more = true;
            break;
        }
        idx[m++] = i;
        snprintf(stop, sizeof stop, "%s", s->keys[i]);
    }
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mc_pack_cstr(&pk, "items");
    msgpack_pack_array(&pk, m);
    for (size_t i = 0; i < m; i++) {
        msgpack_pack_map(&pk, 2);
        mc_pack_kv_str(&pk, "k", s->keys[idx[i]], 4);
        mc_pack_kv_int(&pk, "count", s->counts[idx[i]]);
    }
    mc_pack_cstr(&pk, "keys");
    msgpack_pack_array(&pk, m);
    for (size_t i = 0; i < m; i++)
        s_pack_b64(&pk, s->keys[idx[i]]);
    mc_pack_cstr(&pk, "next_cursor");
    if (more)
        s_pack_b64(&pk, stop);
    else
        msgpack_pack_nil(&pk);
}

//  How many nodes the shards are spread over (0 or 1: one merge of every shard).
static int s_nodes;

//  One merged page of shards after cursor: its items' keys joined ("a,b,"), each with its count
//  when counted, into got; next_cursor (raw) into cursor, "" at the end. 0, or the merge's -1.
static int
s_merged(const shard_t *shards, size_t n, const mc_gather_spec_t *spec, char *cursor, char *got, size_t gotsz)
{
    msgpack_sbuffer bufs[64];
    msgpack_unpacked u[64];
    msgpack_object bodies[64];
    for (size_t i = 0; i < n; i++) {
        msgpack_sbuffer_init(&bufs[i]);
        s_page(&shards[i], spec->order, cursor, spec->limit ? spec->limit : ITEMS_MAX, &bufs[i]);
        msgpack_unpacked_init(&u[i]);
        MC_CHECK(mc_msgpack_unpack(&u[i], bufs[i].data, bufs[i].size) == 0);
        bodies[i] = u[i].data;
    }
    //  nodes > 1: the shards dealt round-robin to that many nodes, each merging its own into a
    //  keyed page (as a node's front does), and those merged again (as the edge does)
    msgpack_sbuffer nodebufs[64];
    msgpack_unpacked nu[64];
    msgpack_object nodebodies[64];
    size_t nn = s_nodes > 1 && (size_t) s_nodes < n ? (size_t) s_nodes : 0;
    for (size_t g = 0; g < nn; g++) {
        msgpack_object mine[64];
        size_t m = 0;
        for (size_t i = g; i < n; i += nn)
            mine[m++] = bodies[i];
        mc_gather_spec_t keyed = *spec;
        keyed.keyed = true;
        keyed.array = false;
        msgpack_sbuffer_init(&nodebufs[g]);
        msgpack_packer npk;
        msgpack_packer_init(&npk, &nodebufs[g], msgpack_sbuffer_write);
        const char *nwhy = NULL;
        MC_CHECK(mc_gather_merge(&keyed, mine, m, &npk, &nwhy, NULL) == 0);
        msgpack_unpacked_init(&nu[g]);
        MC_CHECK(mc_msgpack_unpack(&nu[g], nodebufs[g].data, nodebufs[g].size) == 0);
        nodebodies[g] = nu[g].data;
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    const char *why = NULL;
    int rc = nn ? mc_gather_merge(spec, nodebodies, nn, &pk, &why, NULL) : mc_gather_merge(spec, bodies, n, &pk, &why, NULL);
    for (size_t g = 0; g < nn; g++) {
        msgpack_unpacked_destroy(&nu[g]);
        msgpack_sbuffer_destroy(&nodebufs[g]);
    }
    got[0] = 0;
    cursor[0] = 0;
    if (rc == 0) {
        msgpack_unpacked r;
        msgpack_unpacked_init(&r);
        MC_CHECK(mc_msgpack_unpack(&r, out.data, out.size) == 0);
        const msgpack_object *items = spec->array ? &r.data : mc_map_get(&r.data, "items");
        MC_CHECK(items && items->type == MSGPACK_OBJECT_ARRAY);
        size_t len = 0;
        for (uint32_t i = 0; items && i < items->via.array.size; i++) {
            mc_str_t k = { "", 0 };
            int64_t c = 0;
            mc_map_str(&items->via.array.ptr[i], "k", &k);
            mc_map_int(&items->via.array.ptr[i], "count", &c);
            len += (size_t) snprintf(got + len, gotsz - len, spec->sum ? "%.*s=%d," : "%.*s,", (int) k.len, k.ptr,
                                     (int) c);
        }
        mc_str_t next;
        if (!spec->array && mc_map_str(&r.data, "next_cursor", &next) == 0) {
            long l = mc_b64url_decode(cursor, 16, next.ptr, next.len);
            cursor[l > 0 ? l : 0] = 0;
        }
        msgpack_unpacked_destroy(&r);
    }
    msgpack_sbuffer_destroy(&out);
    for (size_t i = 0; i < n; i++) {
        msgpack_unpacked_destroy(&u[i]);
        msgpack_sbuffer_destroy(&bufs[i]);
    }
    return rc;
}

//  Every page of the list, walking next_cursor: "a,b,|c,d,|" (a page per '|').
static void
s_walk(const shard_t *shards, size_t n, const mc_gather_spec_t *spec, char *out, size_t outsz)
{
    char cursor[16] = "", page[ITEMS_MAX * 8];
    size_t len = 0;
    out[0] = 0;
    for (int pages = 0; pages < ITEMS_MAX + 1; pages++) {
        MC_CHECK(s_merged(shards, n, spec, cursor, page, sizeof page) == 0);
        len += (size_t) snprintf(out + len, outsz - len, "%s|", page);
        if (!*cursor || len >= outsz - 1)
            return;
    }
    MC_CHECK(!"the pages never end");
}

//  Deals keys "k000".. to shards by a fixed pseudo-random sequence, and the same keys to one;
//  every third key is filtered out (hidden, and not in one).
static void
s_deal(shard_t *one, shard_t *many, size_t n, size_t keys, uint32_t seed)
{
    memset(one, 0, sizeof *one);
    memset(many, 0, n * sizeof *many);
    for (size_t i = 0; i < keys; i++) {
        seed = seed * 1103515245u + 12345u;
        shard_t *s = &many[(seed >> 16) % n];
        s->hidden[s->n] = i % 3 == 0;
        snprintf(s->keys[s->n++], 5, "k%03u", (unsigned) (i % 1000));
        if (i % 3)
            snprintf(one->keys[one->n++], 5, "k%03u", (unsigned) (i % 1000));
    }
}

static void
test_pages_match_one_shard(void)
{
    static shard_t one, many[16];
    static char a[ITEMS_MAX * 16], b[ITEMS_MAX * 16];
    const size_t sizes[] = { 0, 1, 5, 37, 200 };
    const int64_t limits[] = { 1, 2, 3, 7, 20, 100 };
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++)
        for (size_t l = 0; l < sizeof limits / sizeof *limits; l++)
            for (int order = MC_GATHER_ASC; order <= MC_GATHER_DESC; order++) {
                s_deal(&one, many, 16, sizes[z], (uint32_t) (z * 31 + l));
                mc_gather_spec_t spec = { .order = (mc_gather_t) order, .limit = limits[l] };
                s_walk(&one, 1, &spec, a, sizeof a);
                s_walk(many, 16, &spec, b, sizeof b);
                ASSERT_STR(b, a);
            }
}

static void
test_nodes_merging_their_shards_match_one_shard(void)
{
    //  a node's keyed merge of its shards answers like one shard: merging those again gives
    //  the pages of one merge of every shard, for any spread of shards over nodes
    static shard_t one, many[16];
    static char a[ITEMS_MAX * 16], b[ITEMS_MAX * 16];
    const size_t sizes[] = { 0, 5, 37, 200 };
    const int64_t limits[] = { 1, 3, 20 };
    const int spreads[] = { 2, 3, 15 };
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++)
        for (size_t l = 0; l < sizeof limits / sizeof *limits; l++)
            for (size_t d = 0; d < sizeof spreads / sizeof *spreads; d++)
                for (int order = MC_GATHER_ASC; order <= MC_GATHER_DESC; order++) {
                    s_deal(&one, many, 16, sizes[z], (uint32_t) (z * 17 + l * 5 + d));
                    mc_gather_spec_t spec = { .order = (mc_gather_t) order, .limit = limits[l] };
                    s_nodes = 0;
                    s_walk(&one, 1, &spec, a, sizeof a);
                    s_nodes = spreads[d];
                    s_walk(many, 16, &spec, b, sizeof b);
                    s_nodes = 0;
                    ASSERT_STR(b, a);
                }
    //  and the counted, unpaged categories: sums add up across nodes as across shards
    static shard_t s[4];
    memset(s, 0, sizeof s);
    const char *keys[] = { "bags", "hats", "mugs" };
    for (size_t i = 0; i < 4; i++)
        for (size_t j = 0; j < 3; j++) {
            snprintf(s[i].keys[s[i].n], 5, "%s", keys[j]);
            s[i].counts[s[i].n++] = (int) (i + 1) * (int) (j + 1);
        }
    mc_gather_spec_t spec = { .order = MC_GATHER_ASC, .sum = "count", .array = true };
    char cursor[16] = "", got[256];
    s_nodes = 2;
    ASSERT_EQ(s_merged(s, 4, &spec, cursor, got, sizeof got), 0);
    s_nodes = 0;
    ASSERT_STR(got, "bags=10,hats=20,mugs=30,");
}

static void
test_names(void)
{
    char name[MC_GATHER_NAME_MAX + 1], service[MC_DIR_SERVICE_MAX + 1], route[MC_DIR_SERVICE_MAX + 1];
    uint64_t mask = 0;
    mc_gather_name(name, "catalog", 0xfff0);
    ASSERT_STR(name, "catalog.*fff0");
    MC_CHECK(mc_gather_parse(name, service, &mask));
    ASSERT_STR(service, "catalog");
    ASSERT_EQ(mask, 0xfff0);
    ASSERT_STR(mc_gather_route(name, route), "catalog.4");
    ASSERT_STR(mc_gather_route("catalog.3", route), "catalog.3");
    const char *bad[] = { "catalog.3", "catalog.*", "catalog.*0", "catalog.*FF", "catalog.*1x", ".*ff",
                          "catalog.*11111111111111111" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        MC_CHECK(!mc_gather_parse(bad[i], service, &mask));
}

static void
test_shard_that_stops_early(void)
{
    //  a shard that looks at only 2 keys a page (a scan budget) still loses nothing: the merge
    //  keeps nothing past where it stopped, and the next page resumes there
    static shard_t one, many[3];
    static char a[4096], b[4096];
    s_deal(&one, many, 3, 30, 7);
    many[1].budget = 2;
    mc_gather_spec_t spec = { .order = MC_GATHER_ASC, .limit = 5 };
    s_walk(&one, 1, &spec, a, sizeof a);
    s_walk(many, 3, &spec, b, sizeof b);
    //  the pages break elsewhere, but the items and their order are the same
    char ja[4096] = "", jb[4096] = "";
    for (size_t i = 0, j = 0; a[i]; i++)
        if (a[i] != '|')
            ja[j++] = a[i];
    for (size_t i = 0, j = 0; b[i]; i++)
        if (b[i] != '|')
            jb[j++] = b[i];
    ASSERT_STR(jb, ja);
}

static void
test_ties_and_sums(void)
{
    //  categories: one key on several shards is one item with the counts added, in key order
    static shard_t s[3];
    memset(s, 0, sizeof s);
    const char *k0[] = { "bags", "hats" }, *k1[] = { "hats", "mugs" }, *k2[] = { "bags", "hats", "zips" };
    const int c0[] = { 1, 2 }, c1[] = { 3, 4 }, c2[] = { 5, 6, 7 };
    for (size_t i = 0; i < 2; i++) {
        snprintf(s[0].keys[s[0].n], 5, "%s", k0[i]);
        s[0].counts[s[0].n++] = c0[i];
        snprintf(s[1].keys[s[1].n], 5, "%s", k1[i]);
        s[1].counts[s[1].n++] = c1[i];
    }
    for (size_t i = 0; i < 3; i++) {
        snprintf(s[2].keys[s[2].n], 5, "%s", k2[i]);
        s[2].counts[s[2].n++] = c2[i];
    }
    mc_gather_spec_t spec = { .order = MC_GATHER_ASC, .sum = "count", .array = true };
    char cursor[16] = "", got[256];
    ASSERT_EQ(s_merged(s, 3, &spec, cursor, got, sizeof got), 0);
    ASSERT_STR(got, "bags=6,hats=11,mugs=4,zips=7,");
    ASSERT_STR(cursor, "");
}

//  The merge's verdict on one hand-made shard body (JSON-like msgpack built by fn).
static int
s_merge_one(void (*fn)(msgpack_packer *), const char **why)
{
    msgpack_sbuffer in, out;
    msgpack_sbuffer_init(&in);
    msgpack_sbuffer_init(&out);
    msgpack_packer pk, opk;
    msgpack_packer_init(&pk, &in, msgpack_sbuffer_write);
    msgpack_packer_init(&opk, &out, msgpack_sbuffer_write);
    fn(&pk);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    MC_CHECK(mc_msgpack_unpack(&u, in.data, in.size) == 0);
    mc_gather_spec_t spec = { .order = MC_GATHER_ASC, .limit = 5 };
    int rc = mc_gather_merge(&spec, &u.data, 1, &opk, why, NULL);
    if (rc)
        ASSERT_EQ(out.size, 0);     //  nothing half-written on failure
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&in);
    msgpack_sbuffer_destroy(&out);
    return rc;
}

static void
s_no_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 0);
    mc_pack_cstr(pk, "next_cursor");
    msgpack_pack_nil(pk);
}

static void
s_short_keys(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 2);
    msgpack_pack_map(pk, 0);
    msgpack_pack_map(pk, 0);
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, 1);
    s_pack_b64(pk, "a");
}

static void
s_bad_key(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 2);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 1);
    msgpack_pack_map(pk, 0);
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, 1);
    mc_pack_cstr(pk, "not base64!");
}

static void
s_bad_cursor(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 3);
    mc_pack_cstr(pk, "items");
    msgpack_pack_array(pk, 0);
    mc_pack_cstr(pk, "keys");
    msgpack_pack_array(pk, 0);
    mc_pack_cstr(pk, "next_cursor");
    msgpack_pack_int(pk, 7);
}

static void
s_not_a_map(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 0);
}

static void
test_malformed_shard_answers(void)
{
    const char *why = NULL;
    ASSERT_EQ(s_merge_one(s_no_keys, &why), -1);
    ASSERT_STR(why, "a shard's answer is not a keyed list");
    ASSERT_EQ(s_merge_one(s_short_keys, &why), -1);
    ASSERT_STR(why, "a shard's list has no key for each item");
    ASSERT_EQ(s_merge_one(s_bad_key, &why), -1);
    ASSERT_STR(why, "a shard's sort key is not a cursor");
    ASSERT_EQ(s_merge_one(s_bad_cursor, &why), -1);
    ASSERT_STR(why, "a shard's next_cursor is not a cursor");
    ASSERT_EQ(s_merge_one(s_not_a_map, &why), -1);
    ASSERT_STR(why, "a shard's answer is not a keyed list");
}

int
main(void)
{
    MC_TEST_RUN(test_pages_match_one_shard);
    MC_TEST_RUN(test_nodes_merging_their_shards_match_one_shard);
    MC_TEST_RUN(test_names);
    MC_TEST_RUN(test_shard_that_stops_early);
    MC_TEST_RUN(test_ties_and_sums);
    MC_TEST_RUN(test_malformed_shard_answers);
    return MC_TEST_DONE();
}
