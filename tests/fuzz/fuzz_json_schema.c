/*  HTTP bodies at the edge: mc_json_parse, then the validator of the route's message
    (mc_schema_validate_http) and of the actor that receives it (mc_schema_validate). The first
    byte picks the message definition, the rest is the body. Properties: a parsed body is one
    msgpack map that passes the msgpack guard (so no actor refuses what the edge built); a
    validator fails exactly when it recorded complaints; the JSON written back from the map
    parses again into a map of as many members. */
#include "fuzz.h"
#include "mc_json.h"
#include "mc_schema.h"

#include <string.h>

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || mc_msgdefs_count == 0)
        return 0;
    const mc_msgdef_t *def = &mc_msgdefs[data[0] % mc_msgdefs_count];
    const char *json = (const char *) data + 1;
    size_t len = size - 1;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[160];
    int rc = mc_json_parse(json, len, &sb, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == MC_JSON_MALFORMED || rc == MC_JSON_NOT_OBJECT || rc == MC_JSON_LIMIT);
    FUZZ_CHECK(rc == 0 || memchr(err, 0, sizeof err));
    if (rc == 0) {
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        FUZZ_CHECK(mc_msgpack_unpack(&u, sb.data, sb.size) == 0);
        FUZZ_CHECK(u.data.type == MSGPACK_OBJECT_MAP);
        mc_errors_t errs = { 0 };
        int v = mc_schema_validate_http(def, &u.data, &errs);
        FUZZ_CHECK((v == 0) == (errs.count == 0));
        for (int i = 0; i < errs.count && i < MC_ERRORS_MAX; i++)
            FUZZ_CHECK(memchr(errs.list[i].field, 0, sizeof errs.list[i].field)
                       && memchr(errs.list[i].message, 0, sizeof errs.list[i].message));
        mc_errors_t aerrs = { 0 };
        v = mc_schema_validate(def, &u.data, &aerrs);
        FUZZ_CHECK((v == 0) == (aerrs.count == 0));

        //  an actor's reply carrying this map goes back to the client as JSON
        msgpack_sbuffer out, again;
        msgpack_sbuffer_init(&out);
        msgpack_sbuffer_init(&again);
        mc_json_write(&out, &u.data);
        int rc2 = mc_json_parse(out.data, out.size, &again, err, sizeof err);
        if (rc2 != 0)
            fprintf(stderr, "written back: %.*s\nreparse: %s\n", (int) (out.size < 2000 ? out.size : 2000), out.data, err);
        FUZZ_CHECK(rc2 == 0);
        msgpack_unpacked u2;
        msgpack_unpacked_init(&u2);
        FUZZ_CHECK(mc_msgpack_unpack(&u2, again.data, again.size) == 0);
        FUZZ_CHECK(u2.data.via.map.size == u.data.via.map.size);
        msgpack_unpacked_destroy(&u2);
        msgpack_sbuffer_destroy(&again);
        msgpack_sbuffer_destroy(&out);
        msgpack_unpacked_destroy(&u);
    }
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
