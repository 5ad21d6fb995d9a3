/*  The merge of a gathered list (common/mc_gather.c) as the edge and a node run it on pages other
    processes sent: the first byte chooses the spec (order, limit, a summed count, keyed), the
    rest is read as msgpack bodies one after another (each behind its length), one per shard. Any bytes are refused or
    merged, never crash; a merge that works packs valid msgpack of at most limit items, and a
    keyed merge of pages in order is itself a page that merges again to the same items (what the edge does with a
    node's answer). */
#include "fuzz.h"
#include "mc_gather.h"
#include "mc_msgpack.h"
#include "mc_util.h"

#include <string.h>

#define SHARDS 8

static const msgpack_object *
s_items(const msgpack_object *page, bool array)
{
    return array ? page : mc_map_get(page, "items");
}

//  True when page's keys are sorted in order (what every shard sends): only then is the merge
//  in order, and merging it again the same.
static bool
s_sorted(const msgpack_object *page, mc_gather_t order)
{
    const msgpack_object *keys = page->type == MSGPACK_OBJECT_MAP ? mc_map_get(page, "keys") : NULL;
    if (!keys || keys->type != MSGPACK_OBJECT_ARRAY)
        return false;
    unsigned char prev[512], cur[512];
    long plen = -1;
    for (uint32_t i = 0; i < keys->via.array.size; i++) {
        const msgpack_object *k = &keys->via.array.ptr[i];
        long len = k->type == MSGPACK_OBJECT_STR
                 ? mc_b64url_decode(cur, sizeof cur, k->via.str.ptr, k->via.str.size) : -1;
        if (len < 0)
            return false;
        if (plen >= 0) {
            int c = memcmp(prev, cur, (size_t) (plen < len ? plen : len));
            c = c ? c : (plen > len) - (plen < len);
            if (order == MC_GATHER_DESC ? c < 0 : c > 0)
                return false;
        }
        memcpy(prev, cur, (size_t) len);
        plen = len;
    }
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t how = data[0];
    mc_gather_spec_t spec = { .order = how & 1 ? MC_GATHER_DESC : MC_GATHER_ASC, .sum = how & 2 ? "count" : NULL,
                              .array = how & 4, .keyed = how & 8, .limit = how >> 4 };
    msgpack_unpacked u[SHARDS];
    msgpack_object bodies[SHARDS];
    size_t n = 0, off = 1;
    //  each body: a 2-byte big-endian length, then that much msgpack (checked before unpacking,
    //  as every receiver does)
    while (n < SHARDS && off + 2 <= size) {
        size_t len = (size_t) data[off] << 8 | data[off + 1];
        off += 2;
        if (len > size - off)
            break;
        msgpack_unpacked_init(&u[n]);
        if (mc_msgpack_unpack(&u[n], (const char *) data + off, len)) {
            msgpack_unpacked_destroy(&u[n]);
            break;
        }
        off += len;
        bodies[n] = u[n].data;
        n++;
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    const char *why = NULL;
    mc_gather_result_t result;
    if (mc_gather_merge(&spec, bodies, n, &pk, &why, &result) == 0) {
        msgpack_unpacked m;
        msgpack_unpacked_init(&m);
        FUZZ_CHECK(mc_msgpack_unpack(&m, out.data, out.size) == 0);
        bool array = spec.array && !spec.keyed;
        const msgpack_object *items = s_items(&m.data, array);
        FUZZ_CHECK(items && items->type == MSGPACK_OBJECT_ARRAY && items->via.array.size == result.items);
        FUZZ_CHECK(spec.limit == 0 || (int64_t) result.items <= spec.limit);
        FUZZ_CHECK(result.bound >= -1 && result.bound < (int) n && !(result.truncated && result.bound >= 0));
        bool sorted = true;
        for (size_t i = 0; i < n; i++)
            sorted = sorted && s_sorted(&bodies[i], spec.order);
        if (spec.keyed && sorted) {
            //  merged again, alone, with the same spec: the same items
            msgpack_sbuffer again;
            msgpack_sbuffer_init(&again);
            msgpack_packer apk;
            msgpack_packer_init(&apk, &again, msgpack_sbuffer_write);
            mc_gather_result_t r2;
            FUZZ_CHECK(mc_gather_merge(&spec, &m.data, 1, &apk, &why, &r2) == 0);
            FUZZ_CHECK(r2.items == result.items);
            msgpack_unpacked a;
            msgpack_unpacked_init(&a);
            FUZZ_CHECK(mc_msgpack_unpack(&a, again.data, again.size) == 0);
            const msgpack_object *i1 = s_items(&m.data, false), *i2 = s_items(&a.data, false);
            FUZZ_CHECK(i2 && i2->via.array.size == i1->via.array.size);
            msgpack_unpacked_destroy(&a);
            msgpack_sbuffer_destroy(&again);
        }
        msgpack_unpacked_destroy(&m);
    }
    else
        FUZZ_CHECK(why != NULL && out.size == 0);
    msgpack_sbuffer_destroy(&out);
    for (size_t i = 0; i < n; i++)
        msgpack_unpacked_destroy(&u[i]);
    return 0;
}
