/*  Unit tests for the wire format: the msgpack guard, envelopes, ids, validation. */
#include "mc_dir.h"
#include "mc_envelope.h"
#include "mc_schema.h"
#include "mc_test.h"
#include "mc_util.h"

static int
s_check(const char *bytes, size_t len)
{
    return mc_msgpack_check(bytes, len, MC_MSGPACK_MAX_DEPTH);
}

static void
test_msgpack_guard(void)
{
    //  the 5-byte frame that makes msgpack-c 4.0 ask for ~8.6 GB
    ASSERT_EQ(s_check("\xdd\x0f\xff\xff\xff", 5), MC_EPARSE);
    ASSERT_EQ(s_check("\xdf\x0f\xff\xff\xff", 5), MC_EPARSE);       //  map32 bomb
    ASSERT_EQ(s_check("\xdb\xff\xff\xff\xff" "ab", 7), MC_EPARSE);  //  str32 longer than the frame
    ASSERT_EQ(s_check("\xc6\x00\x00\x00\x03" "ab", 7), MC_EPARSE);  //  bin32 short by one
    ASSERT_EQ(s_check("\x92\x01", 2), MC_EPARSE);                   //  truncated array
    ASSERT_EQ(s_check("\x01\x02", 2), MC_EPARSE);                   //  trailing bytes
    ASSERT_EQ(s_check("", 0), MC_EPARSE);
    ASSERT_EQ(s_check("\xc1", 1), MC_EPARSE);                       //  reserved byte
    ASSERT_EQ(s_check("\xd4\x01\x02", 3), MC_EPARSE);               //  ext types are refused
    ASSERT_EQ(s_check("\x82\xa1" "a\x01\xa1" "b\x92\xc0\xc3", 9), 0);
    char deep[40];
    memset(deep, 0x91, 33);
    deep[33] = 0x01;
    ASSERT_EQ(s_check(deep, 34), MC_ETOODEEP);
    ASSERT_EQ(s_check(deep + 1, 33), 0);                            //  32 levels are fine
    //  an empty container counts as a level, as it does for msgpack-c
    memset(deep, 0x91, 32);
    deep[32] = (char) 0x90;
    ASSERT_EQ(s_check(deep, 33), MC_ETOODEEP);
    deep[32] = (char) 0x80;
    ASSERT_EQ(s_check(deep, 33), MC_ETOODEEP);
    ASSERT_EQ(s_check(deep + 1, 32), 0);
    msgpack_unpacked e;
    msgpack_unpacked_init(&e);
    ASSERT_EQ(mc_msgpack_unpack(&e, deep + 1, 32), 0);
    msgpack_unpacked_destroy(&e);

    //  every truncation of a valid frame is refused, and unpack agrees with the check
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "name", "a fairly long string value to cut through");
    mc_pack_kv_int(&pk, "n", -123456789);
    for (size_t cut = 0; cut < sb.size; cut++) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        MC_CHECK(mc_msgpack_unpack(&u, sb.data, cut) != 0);
        msgpack_unpacked_destroy(&u);
    }
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, sb.data, sb.size), 0);
    int64_t n = 0;
    ASSERT_EQ(mc_map_int(&u.data, "n", &n), 0);
    ASSERT_EQ(n, -123456789);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);

    //  random garbage never crashes and never passes as more than the bytes it has
    srand(7);
    char junk[64];
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t) (rand() % 64);
        for (size_t i = 0; i < len; i++)
            junk[i] = (char) rand();
        msgpack_unpacked g;
        msgpack_unpacked_init(&g);
        mc_msgpack_unpack(&g, junk, len);
        msgpack_unpacked_destroy(&g);
    }
}

static void
test_envelope_roundtrip(void)
{
    msgpack_sbuffer body, env;
    msgpack_sbuffer_init(&body);
    msgpack_sbuffer_init(&env);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "sku", "A-1");
    mc_request_t req = { .id = MC_STR("01ARZ3NDEKTSV4RRFFQ69G5FAV"), .type = MC_STR("product.create"),
                         .key = MC_STR("k1"), .corr = MC_STR("req-1"), .role = MC_STR("admin"),
                         .user = MC_STR("u1"), .trace = MC_STR(""), .if_match = MC_STR("\"3\""),
                         .deadline = 99, .time = 42 };
    mc_request_encode(&env, &req, (mc_str_t) { body.data, body.size });
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_request_t got;
    ASSERT_EQ(mc_request_decode(&u, env.data, env.size, &got), 0);
    MC_CHECK(mc_str_eq(got.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    MC_CHECK(mc_str_eq(got.type, "product.create"));
    MC_CHECK(mc_str_eq(got.key, "k1"));
    MC_CHECK(mc_str_eq(got.role, "admin"));
    MC_CHECK(mc_str_eq(got.if_match, "\"3\""));
    ASSERT_EQ(got.deadline, 99);
    ASSERT_EQ(got.time, 42);
    mc_str_t sku;
    ASSERT_EQ(mc_map_str(got.body, "sku", &sku), 0);
    MC_CHECK(mc_str_eq(sku, "A-1"));
    msgpack_unpacked_destroy(&u);

    //  a map without the envelope's fields is a shape error, and its id is kept to answer
    msgpack_sbuffer_clear(&env);
    msgpack_packer_init(&pk, &env, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "id", "X1");
    mc_pack_kv_int(&pk, "type", 5);
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_request_decode(&u, env.data, env.size, &got), MC_ESHAPE);
    MC_CHECK(mc_str_eq(got.id, "X1"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&body);
    msgpack_sbuffer_destroy(&env);
}

//  Encodes a request whose field named field holds len bytes of fill, and decodes it.
static int
s_decode_with(const char *field, size_t len, char fill, mc_request_t *got, msgpack_unpacked *u)
{
    static char value[512];
    memset(value, fill, len);
    mc_str_t v = { value, len };
    mc_request_t req = { .id = MC_STR("01ARZ3NDEKTSV4RRFFQ69G5FAV"), .type = MC_STR("address.create"),
                         .role = MC_STR("customer"), .user = MC_STR("u1"), .deadline = 9, .time = 1 };
    struct { const char *name; mc_str_t *slot; } fields[] = {
        { "id", &req.id }, { "type", &req.type }, { "key", &req.key }, { "corr", &req.corr },
        { "cause", &req.cause }, { "reply", &req.reply }, { "user", &req.user }, { "role", &req.role },
        { "trace", &req.trace }, { "if_match", &req.if_match }, { "idem", &req.idem } };
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
        if (strcmp(fields[i].name, field) == 0)
            *fields[i].slot = v;
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    mc_request_encode(&env, &req, (mc_str_t) { "", 0 });
    msgpack_unpacked_init(u);
    int rc = mc_request_decode(u, env.data, env.size, got);
    //  the decoded strings point into the frame: keep only what the caller checks
    bool has_id = got->id.len > 0;
    msgpack_unpacked_destroy(u);
    msgpack_sbuffer_destroy(&env);
    got->id = has_id ? MC_STR("kept") : (mc_str_t) { NULL, 0 };
    return rc;
}

static void
test_envelope_bounds(void)
{
    struct { const char *field; size_t max; } limits[] = {
        { "id", MC_ENV_ID_MAX }, { "type", MC_ENV_TYPE_MAX }, { "key", MC_ENV_KEY_MAX },
        { "corr", MC_ENV_CORR_MAX }, { "cause", MC_ENV_CAUSE_MAX }, { "reply", MC_ENV_REPLY_MAX },
        { "user", MC_ENV_USER_MAX }, { "role", MC_ENV_ROLE_MAX }, { "trace", MC_ENV_TRACE_MAX },
        { "if_match", MC_ENV_IF_MATCH_MAX }, { "idem", MC_ENV_IDEM_MAX } };
    for (size_t i = 0; i < sizeof limits / sizeof *limits; i++) {
        const char *f = limits[i].field;
        bool is_id = strcmp(f, "id") == 0;
        mc_request_t got;
        msgpack_unpacked u;
        int rc = s_decode_with(f, limits[i].max, 'a', &got, &u);
        if (rc)
            fprintf(stderr, "field %s at its limit\n", f);
        ASSERT_EQ(rc, 0);
        rc = s_decode_with(f, limits[i].max + 1, 'a', &got, &u);
        if (rc != MC_ESHAPE)
            fprintf(stderr, "field %s one byte over its limit\n", f);
        ASSERT_EQ(rc, MC_ESHAPE);
        //  answerable with 400 bad_envelope unless the id itself is what is wrong
        ASSERT_EQ(got.id.len > 0, !is_id);
        //  a NUL byte would let "u1\0x" stand for "u1" in a storage key
        ASSERT_EQ(s_decode_with(f, 3, '\0', &got, &u), MC_ESHAPE);
    }
    //  the overflow of issue 11: a user of 160 to 510 bytes
    mc_request_t got;
    msgpack_unpacked u;
    ASSERT_EQ(s_decode_with("user", 300, 'u', &got, &u), MC_ESHAPE);

    //  replies: an over-long id or etag is a malformed reply
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    char etag[MC_ENV_ETAG_MAX + 2];
    memset(etag, 'e', sizeof etag - 1);
    etag[sizeof etag - 1] = 0;
    mc_reply_begin(&pk, MC_STR("01ARZ3NDEKTSV4RRFFQ69G5FAV"), 200, etag);
    msgpack_pack_nil(&pk);
    mc_reply_t rep;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_reply_decode(&u, sb.data, sb.size, &rep), MC_ESHAPE);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_clear(&sb);
    etag[MC_ENV_ETAG_MAX] = 0;
    mc_reply_begin(&pk, MC_STR("01ARZ3NDEKTSV4RRFFQ69G5FAV"), 200, etag);
    msgpack_pack_nil(&pk);
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_reply_decode(&u, sb.data, sb.size, &rep), 0);
    ASSERT_EQ(rep.etag.len, MC_ENV_ETAG_MAX);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

//  The id is read in place from what the encoders make, and nothing else passes for one.
static void
test_envelope_id(void)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    mc_request_t req = { .id = MC_STR("01ARZ3NDEKTSV4RRFFQ69G5FAV"), .type = MC_STR("product.get"),
                         .key = MC_STR("k1"), .corr = MC_STR(""), .role = MC_STR("anonymous"),
                         .user = MC_STR(""), .trace = MC_STR(""), .time = 42 };
    mc_request_encode(&sb, &req, (mc_str_t) { "", 0 });
    mc_str_t id = { 0 };
    ASSERT_EQ(mc_envelope_id(sb.data, sb.size, &id), 0);
    MC_CHECK(mc_str_eq(id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_reply_begin(&pk, MC_STR("01BX5ZZKBKACTAV9WEVGEMMVRZ"), 200, NULL);
    msgpack_pack_nil(&pk);
    ASSERT_EQ(mc_envelope_id(sb.data, sb.size, &id), 0);
    MC_CHECK(mc_str_eq(id, "01BX5ZZKBKACTAV9WEVGEMMVRZ"));
    //  cut anywhere inside the id, or before it: not an id
    for (size_t n = 0; n < 8 + 26; n++)
        ASSERT_EQ(mc_envelope_id(sb.data, n, &id), -1);
    //  the id first, or "v" not a small integer: decode it instead
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "id", "X");
    mc_pack_kv_uint(&pk, "v", 1);
    ASSERT_EQ(mc_envelope_id(sb.data, sb.size, &id), -1);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_cstr(&pk, "v", "1");
    mc_pack_kv_cstr(&pk, "id", "X");
    ASSERT_EQ(mc_envelope_id(sb.data, sb.size, &id), -1);
    //  an id longer than any the envelope allows
    char longid[MC_ENV_ID_MAX + 2];
    memset(longid, 'i', sizeof longid - 1);
    longid[sizeof longid - 1] = 0;
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mc_pack_kv_uint(&pk, "v", 1);
    mc_pack_kv_cstr(&pk, "id", longid);
    ASSERT_EQ(mc_envelope_id(sb.data, sb.size, &id), -1);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_ids_and_codecs(void)
{
    char a[MC_ULID_LEN + 1], b[MC_ULID_LEN + 1];
    mc_ulid(a, 1000);
    mc_ulid(b, 2000);
    MC_CHECK(mc_ulid_valid(a, strlen(a)));
    MC_CHECK(strcmp(a, b) < 0);     //  time-ordered
    MC_CHECK(!mc_ulid_valid("not-a-ulid", 10));
    char enc[64];
    unsigned char dec[64];
    for (size_t len = 0; len < 20; len++) {
        unsigned char in[20];
        for (size_t i = 0; i < len; i++)
            in[i] = (unsigned char) (i * 37 + len);
        size_t n = mc_b64url_encode(enc, in, len);
        ASSERT_EQ(mc_b64url_decode(dec, sizeof dec, enc, n), (long) len);
        MC_CHECK(memcmp(in, dec, len) == 0);
    }
    ASSERT_EQ(mc_b64url_decode(dec, sizeof dec, "a$", 2), -1);
    //  every byte value: exactly the 64 of the alphabet decode, each to its place in it
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for (int c = 0; c < 256; c++) {
        char two[2] = { (char) c, 'A' };
        const char *at = c ? strchr(alphabet, c) : NULL;
        long got = mc_b64url_decode(dec, sizeof dec, two, 2);
        ASSERT_EQ(got, at ? 1 : -1);
        if (at)
            ASSERT_EQ(dec[0], (unsigned char) ((at - alphabet) << 2));
    }
    ASSERT_EQ(mc_utf8_len("h\xc3\xa9llo", 6), 5);
    ASSERT_EQ(mc_utf8_len("\xc3", 1), -1);          //  truncated sequence
    ASSERT_EQ(mc_utf8_len("\xc0\xaf", 2), -1);      //  overlong
    ASSERT_EQ(mc_utf8_len("\xed\xa0\x80", 3), -1);  //  surrogate
    char date[32];
    mc_rfc3339(date, sizeof date, 0);
    ASSERT_STR(date, "1970-01-01T00:00:00.000Z");
}

static void
test_shard_ulid(void)
{
    //  a handler's new id lands on the shard asked for, the same one every time, with the seed's
    //  time part; a seed already there is kept
    const char *env = getenv("MERCATO_SHARDS");
    char saved[64];
    snprintf(saved, sizeof saved, "%s", env ? env : "");
    setenv("MERCATO_SHARDS", "16", 1);
    char seed[MC_ULID_LEN + 1], a[MC_ULID_LEN + 1], b[MC_ULID_LEN + 1];
    for (unsigned want = 0; want < 16; want++) {
        mc_ulid(seed, 1700000000000ull + want);
        ASSERT_EQ(mc_shard_ulid(a, (mc_str_t) { seed, MC_ULID_LEN }, "orders", want), 0);
        ASSERT_EQ(mc_shard_ulid(b, (mc_str_t) { seed, MC_ULID_LEN }, "orders", want), 0);
        ASSERT_EQ(mc_shard_of("orders", a, MC_ULID_LEN), want);
        ASSERT_STR(a, b);
        MC_CHECK(mc_ulid_valid(a, MC_ULID_LEN));
        MC_CHECK(memcmp(a, seed, 10) == 0);
        if (mc_shard_of("orders", seed, MC_ULID_LEN) == want)
            ASSERT_STR(a, seed);
    }
    ASSERT_EQ(mc_shard_ulid(a, MC_STR("not-a-ulid"), "orders", 3), -1);
    ASSERT_STR(a, "not-a-ulid");
    setenv("MERCATO_SHARDS", "1", 1);
    mc_ulid(seed, 1700000000000ull);
    ASSERT_EQ(mc_shard_ulid(a, (mc_str_t) { seed, MC_ULID_LEN }, "orders", 0), 0);
    ASSERT_STR(a, seed);
    if (env)
        setenv("MERCATO_SHARDS", saved, 1);
}

static void
test_schema_validation(void)
{
    const mc_msgdef_t *def = mc_schema_find("catalog", MC_STR("product.create"));
    MC_CHECK(def != NULL);
    if (!def)
        return;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "sku", "bad sku");     //  space not allowed
    mc_pack_kv_cstr(&pk, "name", "");           //  too short
    mc_pack_kv_int(&pk, "price_cents", -1);     //  negative
    mc_pack_kv_cstr(&pk, "id", "x");            //  read-only
    mc_pack_kv_cstr(&pk, "colour", "red");      //  unknown
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, sb.data, sb.size), 0);
    mc_errors_t errs = { 0 };
    ASSERT_EQ(mc_schema_validate(def, &u.data, &errs), -1);
    ASSERT_EQ(errs.count, 7);   //  the five above, and description and category missing
    ASSERT_STR(errs.list[0].field, "sku");
    ASSERT_STR(errs.list[3].message, "is read-only");
    ASSERT_STR(errs.list[4].message, "is not a known field");
    ASSERT_STR(errs.list[5].field, "description");
    ASSERT_STR(errs.list[6].field, "category");
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_dir_copy(void)
{
    mc_dir_t *dir = mc_dir_new();
    mc_dir_set_version(dir, 7);
    mc_dir_node_t *n = mc_dir_node(dir, "n1", true);
    snprintf(n->endpoint, sizeof n->endpoint, "tcp://127.0.0.1:5571");
    n->up = true;
    mc_dir_shard_t *s = mc_dir_shard(dir, "catalog.3", true);
    s->node = mc_dir_node_index(dir, n);
    s->epoch = 4;
    s->up = true;
    mc_dir_t *copy = mc_dir_copy(dir);
    MC_CHECK(copy != NULL);
    ASSERT_EQ(mc_dir_version(copy), 7);
    uint64_t epoch = 0;
    const mc_dir_node_t *owner = mc_dir_owner(copy, "catalog.3", &epoch);
    MC_CHECK(owner && owner != n && strcmp(owner->id, "n1") == 0 && owner->up);
    ASSERT_STR(owner->endpoint, "tcp://127.0.0.1:5571");
    ASSERT_EQ(epoch, 4);
    mc_dir_destroy(&dir);
    MC_CHECK(mc_dir_owner(copy, "catalog.3", NULL) != NULL);     //  its own, not the original's
    mc_dir_destroy(&copy);
}

int
main(void)
{
    MC_TEST_RUN(test_msgpack_guard);
    MC_TEST_RUN(test_envelope_roundtrip);
    MC_TEST_RUN(test_envelope_bounds);
    MC_TEST_RUN(test_envelope_id);
    MC_TEST_RUN(test_ids_and_codecs);
    MC_TEST_RUN(test_schema_validation);
    MC_TEST_RUN(test_shard_ulid);
    MC_TEST_RUN(test_dir_copy);
    return MC_TEST_DONE();
}
