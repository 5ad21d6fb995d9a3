/*  mc_msgpack: safe decoding of untrusted msgpack frames, and small helpers over msgpack-c.

    msgpack-c allocates from declared lengths before it checks that the bytes exist (the 5-byte
    frame dd 0f ff ff ff asks for ~8.6 GB), so every frame from a socket goes through
    mc_msgpack_check before msgpack_unpack_next ever sees it.

    Error codes: MC_EPARSE (not one well-formed object), MC_ETOODEEP (nesting), MC_ETOOBIG. */
#ifndef MC_MSGPACK_H
#define MC_MSGPACK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MC_EPARSE   -1
#define MC_ETOODEEP -2
#define MC_ETOOBIG  -3

#define MC_MSGPACK_MAX_DEPTH 32

//  A byte string that is not NUL-terminated.
typedef struct {
    const char *ptr;
    size_t len;
} mc_str_t;

#define MC_STR(lit) ((mc_str_t) { (lit), sizeof(lit) - 1 })

//  Walks len bytes and returns 0 only if they hold exactly one msgpack object whose every
//  declared count and length fits in the bytes that remain, nested at most max_depth deep,
//  with no ext types and no reserved byte 0xc1.
int mc_msgpack_check(const void *buf, size_t len, int max_depth);

//  mc_msgpack_check, then msgpack_unpack_next; 0 only when it succeeded and consumed exactly
//  the frame. Objects point into buf, so buf must outlive them. Call msgpack_unpacked_destroy.
int mc_msgpack_unpack(msgpack_unpacked *result, const void *buf, size_t len);

//  Looks up a string key in a map object; NULL when absent or when map is not a map.
const msgpack_object *mc_map_get(const msgpack_object *map, const char *key);

//  Typed lookups: 0 when present with the right type, -1 otherwise (out left untouched).
int mc_map_str(const msgpack_object *map, const char *key, mc_str_t *out);
int mc_map_int(const msgpack_object *map, const char *key, int64_t *out);
int mc_map_uint(const msgpack_object *map, const char *key, uint64_t *out);
int mc_map_bool(const msgpack_object *map, const char *key, bool *out);

bool mc_str_eq(mc_str_t a, const char *b);
mc_str_t mc_obj_str(const msgpack_object *o);  // {NULL,0} unless o is a str

//  Packing shorthands.
void mc_pack_str(msgpack_packer *pk, const char *s, size_t len);
void mc_pack_cstr(msgpack_packer *pk, const char *s);
void mc_pack_kv_str(msgpack_packer *pk, const char *key, const char *s, size_t len);
void mc_pack_kv_cstr(msgpack_packer *pk, const char *key, const char *s);
void mc_pack_kv_int(msgpack_packer *pk, const char *key, int64_t v);
void mc_pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v);
void mc_pack_kv_bool(msgpack_packer *pk, const char *key, bool v);
//  Packs a decoded object back (deep copy into the packer's buffer).
void mc_pack_obj(msgpack_packer *pk, const msgpack_object *o);

#endif
