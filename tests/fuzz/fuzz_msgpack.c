/*  The msgpack guard (mc_msgpack_check) in front of msgpack-c: every frame from a socket goes
    through it. Properties: the guard passes only what msgpack-c decodes whole; what passes
    packs back into bytes that pass again and decode to the same object; writing it as JSON
    never fails. Allocation bombs show up as libFuzzer's malloc/RSS limit. */
#include "fuzz.h"
#include "mc_json.h"
#include "mc_msgpack.h"

#include <string.h>

//  Packs o and returns the bytes (caller destroys).
static void
s_pack(msgpack_sbuffer *sb, const msgpack_object *o)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    mc_pack_obj(&pk, o);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int checked = mc_msgpack_check(data, size, MC_MSGPACK_MAX_DEPTH);
    FUZZ_CHECK(checked == 0 || checked == MC_EPARSE || checked == MC_ETOODEEP);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    int rc = mc_msgpack_unpack(&u, data, size);
    FUZZ_CHECK(rc == checked);
    if (rc == 0) {
        //  canonical form: packing what was decoded is a fixed point after one round
        msgpack_sbuffer once, twice;
        s_pack(&once, &u.data);
        FUZZ_CHECK(once.size <= size * 9 + 16);    //  no object grows much when packed back
        msgpack_unpacked again;
        msgpack_unpacked_init(&again);
        FUZZ_CHECK(mc_msgpack_unpack(&again, once.data, once.size) == 0);
        s_pack(&twice, &again.data);
        FUZZ_CHECK(once.size == twice.size && memcmp(once.data, twice.data, once.size) == 0);
        msgpack_unpacked_destroy(&again);
        msgpack_sbuffer_destroy(&twice);
        msgpack_sbuffer_destroy(&once);

        msgpack_sbuffer json;
        msgpack_sbuffer_init(&json);
        mc_json_write(&json, &u.data);
        FUZZ_CHECK(json.size > 0);
        msgpack_sbuffer_destroy(&json);

        //  the typed lookups on whatever came
        const msgpack_object *m = &u.data;
        mc_str_t s;
        int64_t i;
        uint64_t n;
        bool b;
        mc_map_str(m, "id", &s);
        mc_map_int(m, "n", &i);
        mc_map_uint(m, "v", &n);
        mc_map_bool(m, "replayed", &b);
    }
    msgpack_unpacked_destroy(&u);
    return 0;
}
