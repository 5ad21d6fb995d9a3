#include "mc_gather.h"

#include "mc_dir.h"
#include "mc_msgpack.h"
#include "mc_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A sort key's raw bytes at most (a category's lowercase name of 100 characters fits).
#define KEY_MAX 512

//  One item of a shard's page, with its sort key decoded.
typedef struct {
    const unsigned char *key;
    size_t klen;
    const msgpack_object *item;
    const msgpack_object *cursor;   //  the key as the shard sent it: a cursor for "after this"
} entry_t;

//  One item of the answer: the first entry of its key, and the sum over its key's entries.
typedef struct {
    size_t first;
    int64_t total;
} group_t;

static int
s_cmp(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c ? c : (alen > blen) - (alen < blen);
}

//  a comes before b in the list's order
static bool
s_before(mc_gather_t order, const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    int c = s_cmp(a, alen, b, blen);
    return order == MC_GATHER_DESC ? c > 0 : c < 0;
}

//  Decodes a base64url string object into out (KEY_MAX bytes); its length, or -1.
static long
s_decode(const msgpack_object *o, unsigned char *out)
{
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0)
        return -1;
    long n = mc_b64url_decode(out, KEY_MAX, o->via.str.ptr, o->via.str.size);
    return n > 0 ? n : -1;
}

//  Packs the item of g, its sum member replaced by the group's total.
static void
s_pack_item(msgpack_packer *pk, const mc_gather_spec_t *spec, const entry_t *e, const group_t *g)
{
    const msgpack_object *m = e->item;
    if (!spec->sum || m->type != MSGPACK_OBJECT_MAP) {
        mc_pack_obj(pk, m);
        return;
    }
    msgpack_pack_map(pk, m->via.map.size);
    size_t slen = strlen(spec->sum);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        mc_pack_obj(pk, k);
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == slen && memcmp(k->via.str.ptr, spec->sum, slen) == 0)
            msgpack_pack_int64(pk, g->total);
        else
            mc_pack_obj(pk, &m->via.map.ptr[i].val);
    }
}

//  Checks every body and decodes its keys into entries (one arena for all). 0 or -1 with *why.
static int
s_collect(const mc_gather_spec_t *spec, const msgpack_object *bodies, size_t n, entry_t *entries,
          unsigned char *arena, size_t *start, size_t *count, const char **why)
{
    size_t at = 0, used = 0;
    for (size_t s = 0; s < n; s++) {
        const msgpack_object *items = mc_map_get(&bodies[s], "items"), *keys = mc_map_get(&bodies[s], "keys");
        if (!items || !keys || items->type != MSGPACK_OBJECT_ARRAY || keys->type != MSGPACK_OBJECT_ARRAY
        ||  items->via.array.size != keys->via.array.size) {
            *why = "a shard's list has no key for each item";
            return -1;
        }
        start[s] = at;
        count[s] = items->via.array.size;
        for (uint32_t i = 0; i < items->via.array.size; i++, at++) {
            entry_t *e = &entries[at];
            e->item = &items->via.array.ptr[i];
            e->cursor = &keys->via.array.ptr[i];
            long klen = s_decode(e->cursor, arena + used);
            int64_t v;
            if (klen < 0) {
                *why = "a shard's sort key is not a cursor";
                return -1;
            }
            if (spec->sum && mc_map_int(e->item, spec->sum, &v)) {
                *why = "a shard's item has no count to add up";
                return -1;
            }
            e->key = arena + used;
            e->klen = (size_t) klen;
            used += (size_t) klen;
        }
    }
    return 0;
}

int
mc_gather_merge(const mc_gather_spec_t *spec, const msgpack_object *bodies, size_t n, msgpack_packer *out,
                const char **why, mc_gather_result_t *result)
{
    size_t total = 0, arena_size = 1;
    for (size_t s = 0; s < n; s++) {
        const msgpack_object *keys = mc_map_get(&bodies[s], "keys");
        if (bodies[s].type != MSGPACK_OBJECT_MAP || !keys || keys->type != MSGPACK_OBJECT_ARRAY) {
            *why = "a shard's answer is not a keyed list";
            return -1;
        }
        total += keys->via.array.size;
        for (uint32_t i = 0; i < keys->via.array.size; i++)
            if (keys->via.array.ptr[i].type == MSGPACK_OBJECT_STR)
                arena_size += keys->via.array.ptr[i].via.str.size;
    }
    //  the bound: no item past the earliest point a shard with more pages has looked at can be
    //  kept, since that shard may hold items before it that it did not send
    unsigned char bound[KEY_MAX], next[KEY_MAX];
    long blen = -1;
    const msgpack_object *bound_cursor = NULL;
    int bound_body = -1;
    for (size_t s = 0; s < n; s++) {
        const msgpack_object *nc = mc_map_get(&bodies[s], "next_cursor");
        if (!nc || nc->type == MSGPACK_OBJECT_NIL)
            continue;
        long len = s_decode(nc, next);
        if (len < 0) {
            *why = "a shard's next_cursor is not a cursor";
            return -1;
        }
        if (blen < 0 || s_before(spec->order, next, (size_t) len, bound, (size_t) blen)) {
            memcpy(bound, next, (size_t) len);
            blen = len;
            bound_cursor = nc;
            bound_body = (int) s;
        }
    }
    //  base64url decodes to fewer bytes than it has characters: the arena holds every key
    entry_t *entries = calloc(total ? total : 1, sizeof *entries);
    group_t *groups = calloc(total ? total : 1, sizeof *groups);
    unsigned char *arena = malloc(arena_size + KEY_MAX);
    size_t *start = calloc(n ? n : 1, sizeof *start), *count = calloc(n ? n : 1, sizeof *count);
    size_t *head = calloc(n ? n : 1, sizeof *head);
    int rc = -1;
    if (!entries || !groups || !arena || !start || !count || !head)
        *why = "out of memory";
    else
    if (s_collect(spec, bodies, n, entries, arena, start, count, why) == 0)
        rc = 0;
    //  a k-way merge of pages each already in order; equal keys keep shard order
    size_t ng = 0;
    bool truncated = false;
    while (rc == 0) {
        size_t best = n;
        for (size_t s = 0; s < n; s++) {
            if (head[s] == count[s])
                continue;
            const entry_t *e = &entries[start[s] + head[s]];
            if (blen >= 0 && s_before(spec->order, bound, (size_t) blen, e->key, e->klen))
                continue;
            const entry_t *b = best < n ? &entries[start[best] + head[best]] : NULL;
            if (!b || s_before(spec->order, e->key, e->klen, b->key, b->klen))
                best = s;
        }
        if (best == n)
            break;
        size_t at = start[best] + head[best]++;
        int64_t v = 0;
        if (spec->sum)
            mc_map_int(entries[at].item, spec->sum, &v);
        const entry_t *prev = ng ? &entries[groups[ng - 1].first] : NULL;
        if (spec->sum && prev && s_cmp(prev->key, prev->klen, entries[at].key, entries[at].klen) == 0) {
            groups[ng - 1].total += v;
            continue;
        }
        if (spec->limit > 0 && (int64_t) ng == spec->limit) {
            truncated = true;
            break;
        }
        groups[ng++] = (group_t) { .first = at, .total = v };
    }
    if (rc == 0) {
        bool page = !spec->array || spec->keyed;
        if (page) {
            msgpack_pack_map(out, spec->keyed ? 3 : 2);
            mc_pack_cstr(out, "items");
        }
        msgpack_pack_array(out, ng);
        for (size_t g = 0; g < ng; g++)
            s_pack_item(out, spec, &entries[groups[g].first], &groups[g]);
        if (spec->keyed) {
            mc_pack_cstr(out, "keys");
            msgpack_pack_array(out, ng);
            for (size_t g = 0; g < ng; g++)
                mc_pack_obj(out, entries[groups[g].first].cursor);
        }
        if (page) {
            mc_pack_cstr(out, "next_cursor");
            if (truncated)
                mc_pack_obj(out, entries[groups[ng - 1].first].cursor);
            else
            if (bound_cursor)
                mc_pack_obj(out, bound_cursor);
            else
                msgpack_pack_nil(out);
        }
    }
    if (rc == 0 && result)
        *result = (mc_gather_result_t) { .items = ng, .truncated = truncated, .bound = truncated ? -1 : bound_body };
    free(entries);
    free(groups);
    free(arena);
    free(start);
    free(count);
    free(head);
    return rc;
}

int64_t
mc_gather_limit(const mc_msgdef_t *msg, const msgpack_object *body)
{
    const mc_field_t *f = mc_schema_field(msg, "limit", 5);
    if (!f)
        return 0;
    int64_t limit = f->has_default ? f->defval : 0;
    if (body)
        mc_map_int(body, "limit", &limit);
    return limit;
}

int
mc_gather_node_spec(const char *service, mc_str_t type, const msgpack_object *body, mc_gather_spec_t *spec)
{
    for (size_t i = 0; i < mc_routes_count; i++) {
        const mc_route_t *r = &mc_routes[i];
        if (r->gather == MC_GATHER_NONE || strcmp(r->msg->service, service) != 0 || strlen(r->msg->type) != type.len
        ||  memcmp(r->msg->type, type.ptr, type.len) != 0)
            continue;
        *spec = (mc_gather_spec_t) { .order = r->gather, .sum = r->gather_sum, .keyed = true,
                                     .limit = mc_gather_limit(r->msg, body) };
        return 0;
    }
    return -1;
}

void
mc_gather_name(char *out, const char *service, uint64_t mask)
{
    snprintf(out, MC_GATHER_NAME_MAX + 1, "%.*s.*%" PRIx64, MC_DIR_SERVICE_MAX - 3, service, mask);
}

bool
mc_gather_parse(const char *name, char *service, uint64_t *mask)
{
    const char *star = strstr(name, ".*");
    size_t len = star ? (size_t) (star - name) : 0;
    const char *hex = star ? star + 2 : NULL;
    size_t digits = hex ? strlen(hex) : 0;
    if (!star || len == 0 || len > MC_DIR_SERVICE_MAX - 3 || digits == 0 || digits > MC_SHARDS_MAX / 4
    ||  strspn(hex, "0123456789abcdef") != digits)
        return false;
    *mask = strtoull(hex, NULL, 16);
    memcpy(service, name, len);
    service[len] = 0;
    return *mask != 0;
}

const char *
mc_gather_route(const char *name, char *out)
{
    char service[MC_DIR_SERVICE_MAX + 1];
    uint64_t mask;
    if (!mc_gather_parse(name, service, &mask))
        return name;
    snprintf(out, MC_DIR_SERVICE_MAX + 1, "%.*s.%d", MC_DIR_SERVICE_MAX - 3, service, __builtin_ctzll(mask));
    return out;
}
