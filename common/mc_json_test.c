/*  JSON in and out of msgpack at the edge: limits, types, escaping. */
#include "mc_json.h"
#include "mc_test.h"

static int
s_convert(const char *json, msgpack_sbuffer *out)
{
    char err[256];
    msgpack_sbuffer_clear(out);
    return mc_json_parse(json, strlen(json), out, err, sizeof err);
}

//  JSON -> msgpack -> JSON must give back canonical text.
static void
s_roundtrip(const char *json, const char *expect)
{
    msgpack_sbuffer mp, back;
    msgpack_sbuffer_init(&mp);
    msgpack_sbuffer_init(&back);
    ASSERT_EQ(s_convert(json, &mp), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    ASSERT_EQ(mc_msgpack_unpack(&u, mp.data, mp.size), 0);
    mc_json_write(&back, &u.data);
    msgpack_sbuffer_write(&back, "", 1);
    ASSERT_STR(back.data, expect);
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&mp);
    msgpack_sbuffer_destroy(&back);
}

static void
test_roundtrip(void)
{
    s_roundtrip("{\"a\": 1, \"b\": [true, false, null], \"c\": \"x\"}", "{\"a\":1,\"b\":[true,false,null],\"c\":\"x\"}");
    s_roundtrip("{\"n\": -9223372036854775808}", "{\"n\":-9223372036854775808}");
    s_roundtrip("{\"s\": \"quote\\\" back\\\\ nl\\n ctl\\u0001 \\u00e9\"}",
                "{\"s\":\"quote\\\" back\\\\ nl\\n ctl\\u0001 \xc3\xa9\"}");
    s_roundtrip("{\"f\": 1.5}", "{\"f\":1.5}");
    s_roundtrip("{}", "{}");
}

static void
test_rejections(void)
{
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    ASSERT_EQ(s_convert("{\"a\":", &out), MC_JSON_MALFORMED);
    ASSERT_EQ(s_convert("", &out), MC_JSON_MALFORMED);
    ASSERT_EQ(s_convert("{\"a\":1,\"a\":2}", &out), MC_JSON_MALFORMED);   //  duplicate member
    ASSERT_EQ(s_convert("{\"a\":\"\xff\"}", &out), MC_JSON_MALFORMED);     //  not UTF-8
    ASSERT_EQ(s_convert("[1,2]", &out), MC_JSON_NOT_OBJECT);
    ASSERT_EQ(s_convert("\"str\"", &out), MC_JSON_NOT_OBJECT);
    char deep[200];
    size_t n = 0;
    deep[n++] = '{';
    deep[n++] = '"'; deep[n++] = 'a'; deep[n++] = '"'; deep[n++] = ':';
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    for (int i = 0; i < 40; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = 0;
    ASSERT_EQ(s_convert(deep, &out), MC_JSON_LIMIT);
    //  brackets inside strings do not count as nesting
    ASSERT_EQ(s_convert("{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}", &out), 0);
    msgpack_sbuffer_destroy(&out);
}

int
main(void)
{
    MC_TEST_RUN(test_roundtrip);
    MC_TEST_RUN(test_rejections);
    return MC_TEST_DONE();
}
