#include "mc_msgpack.h"

#include <string.h>

static uint32_t
s_be16(const uint8_t *p)
{
    return (uint32_t) p[0] << 8 | p[1];
}

static uint32_t
s_be32(const uint8_t *p)
{
    return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

int
mc_msgpack_check(const void *buf, size_t len, int max_depth)
{
    const uint8_t *p = buf;
    size_t off = 0;
    //  pending[d] = objects still to read at depth d; depth 0 is the single top-level object
    uint64_t pending[MC_MSGPACK_MAX_DEPTH + 2];
    int depth = 0;
    if (max_depth > MC_MSGPACK_MAX_DEPTH)
        max_depth = MC_MSGPACK_MAX_DEPTH;
    pending[0] = 1;
    while (depth >= 0) {
        if (pending[depth] == 0) {
            depth--;
            continue;
        }
        pending[depth]--;
        if (off >= len)
            return MC_EPARSE;
        uint8_t b = p[off++];
        size_t rest = len - off;
        uint64_t skip = 0;      //  payload bytes after the header
        uint64_t children = 0;  //  nested objects after the header
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            ;
        else
        if ((b & 0xf0) == 0x80)
            children = 2u * (b & 0x0f);
        else
        if ((b & 0xf0) == 0x90)
            children = b & 0x0f;
        else
        if ((b & 0xe0) == 0xa0)
            skip = b & 0x1f;
        else {
            switch (b) {
                case 0xcc: case 0xd0: skip = 1; break;
                case 0xcd: case 0xd1: skip = 2; break;
                case 0xca: case 0xce: case 0xd2: skip = 4; break;
                case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
                case 0xc4: case 0xd9:
                    if (rest < 1) return MC_EPARSE;
                    skip = 1 + (uint64_t) p[off];
                    break;
                case 0xc5: case 0xda:
                    if (rest < 2) return MC_EPARSE;
                    skip = 2 + (uint64_t) s_be16(p + off);
                    break;
                case 0xc6: case 0xdb:
                    if (rest < 4) return MC_EPARSE;
                    skip = 4 + (uint64_t) s_be32(p + off);
                    break;
                case 0xdc:
                    if (rest < 2) return MC_EPARSE;
                    children = s_be16(p + off);
                    skip = 2;
                    break;
                case 0xdd:
                    if (rest < 4) return MC_EPARSE;
                    children = s_be32(p + off);
                    skip = 4;
                    break;
                case 0xde:
                    if (rest < 2) return MC_EPARSE;
                    children = 2ull * s_be16(p + off);
                    skip = 2;
                    break;
                case 0xdf:
                    if (rest < 4) return MC_EPARSE;
                    children = 2ull * s_be32(p + off);
                    skip = 4;
                    break;
                default:
                    return MC_EPARSE;   //  0xc1 and every ext type
            }
        }
        if (skip > rest)
            return MC_EPARSE;
        off += skip;
        //  every child takes at least one byte, so a count beyond what remains is a lie
        if (children > len - off)
            return MC_EPARSE;
        //  an empty container is a level too: msgpack-c refuses 32 arrays around an empty one
        //  (found by tests/fuzz/fuzz_msgpack), so the guard must not pass it
        bool container = (b & 0xe0) == 0x80 || (b >= 0xdc && b <= 0xdf);
        if (container && depth + 1 > max_depth)
            return MC_ETOODEEP;
        if (children)
            pending[++depth] = children;
    }
    return off == len ? 0 : MC_EPARSE;
}

int
mc_msgpack_unpack(msgpack_unpacked *result, const void *buf, size_t len)
{
    int rc = mc_msgpack_check(buf, len, MC_MSGPACK_MAX_DEPTH);
    if (rc)
        return rc;
    size_t off = 0;
    if (msgpack_unpack_next(result, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len)
        return MC_EPARSE;
    return 0;
}

bool
mc_str_eq(mc_str_t a, const char *b)
{
    size_t n = strlen(b);
    return a.len == n && (n == 0 || memcmp(a.ptr, b, n) == 0);
}

mc_str_t
mc_obj_str(const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return (mc_str_t) { NULL, 0 };
    return (mc_str_t) { o->via.str.ptr, o->via.str.size };
}

const msgpack_object *
mc_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n
        &&  memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

int
mc_map_str(const msgpack_object *map, const char *key, mc_str_t *out)
{
    const msgpack_object *o = mc_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return -1;
    *out = mc_obj_str(o);
    return 0;
}

int
mc_map_int(const msgpack_object *map, const char *key, int64_t *out)
{
    const msgpack_object *o = mc_map_get(map, key);
    if (!o)
        return -1;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = o->via.i64;
    else
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *out = (int64_t) o->via.u64;
    else
        return -1;
    return 0;
}

int
mc_map_uint(const msgpack_object *map, const char *key, uint64_t *out)
{
    const msgpack_object *o = mc_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    *out = o->via.u64;
    return 0;
}

int
mc_map_bool(const msgpack_object *map, const char *key, bool *out)
{
    const msgpack_object *o = mc_map_get(map, key);
    if (!o || o->type != MSGPACK_OBJECT_BOOLEAN)
        return -1;
    *out = o->via.boolean;
    return 0;
}

void
mc_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

void
mc_pack_cstr(msgpack_packer *pk, const char *s)
{
    mc_pack_str(pk, s, strlen(s));
}

void
mc_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len)
{
    mc_pack_cstr(pk, key);
    mc_pack_str(pk, s, len);
}

void
mc_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *s)
{
    mc_pack_kv_str(pk, key, s, strlen(s));
}

void
mc_pack_kv_int(msgpack_packer *pk, const char *key, int64_t v)
{
    mc_pack_cstr(pk, key);
    msgpack_pack_int64(pk, v);
}

void
mc_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
    mc_pack_cstr(pk, key);
    msgpack_pack_uint64(pk, v);
}

void
mc_pack_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
    mc_pack_cstr(pk, key);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

void
mc_pack_obj(msgpack_packer *pk, const msgpack_object *o)
{
    msgpack_pack_object(pk, *o);
}
