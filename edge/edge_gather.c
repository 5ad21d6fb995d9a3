#include "edge_gather.h"

#include "edge_metrics.h"
#include "mc_util.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

//  A sort key's raw bytes at most (a category's lowercase name of 100 characters fits).
#define KEY_MAX 512

bool
edge_gather_wanted(const edge_req_t *q)
{
    return q->route->gather != MC_GATHER_NONE && mc_schema_shards(q->route->msg->service) > 1;
}

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
s_pack_item(msgpack_packer *pk, const edge_gather_spec_t *spec, const entry_t *e, const group_t *g)
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
s_collect(const edge_gather_spec_t *spec, const msgpack_object *bodies, size_t n, entry_t *entries,
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
edge_gather_merge(const edge_gather_spec_t *spec, const msgpack_object *bodies, size_t n, msgpack_packer *out,
                  const char **why)
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
        if (!spec->array) {
            msgpack_pack_map(out, 2);
            mc_pack_cstr(out, "items");
        }
        msgpack_pack_array(out, ng);
        for (size_t g = 0; g < ng; g++)
            s_pack_item(out, spec, &entries[groups[g].first], &groups[g]);
        if (!spec->array) {
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
    free(entries);
    free(groups);
    free(arena);
    free(start);
    free(count);
    free(head);
    return rc;
}

//  body (a packed map) with mc_gather_field true added: each shard then sends its items' keys.
static void
s_ask_keys(mc_str_t body, msgpack_sbuffer *out)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    bool ok = mc_msgpack_unpack(&u, body.ptr, body.len) == 0 && u.data.type == MSGPACK_OBJECT_MAP;
    msgpack_pack_map(&pk, (ok ? u.data.via.map.size : 0) + 1);
    for (uint32_t i = 0; ok && i < u.data.via.map.size; i++) {
        mc_pack_obj(&pk, &u.data.via.map.ptr[i].key);
        mc_pack_obj(&pk, &u.data.via.map.ptr[i].val);
    }
    mc_pack_kv_bool(&pk, mc_gather_field, true);
    msgpack_unpacked_destroy(&u);
}

//  Items per page the shards were asked for: the query's limit, else its default; 0 when the
//  message has none (the whole list).
static int64_t
s_limit(const mc_route_t *route, mc_str_t body)
{
    const mc_field_t *f = mc_schema_field(route->msg, "limit", 5);
    if (!f)
        return 0;
    int64_t limit = f->has_default ? f->defval : 0;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if (mc_msgpack_unpack(&u, body.ptr, body.len) == 0)
        mc_map_int(&u.data, "limit", &limit);
    msgpack_unpacked_destroy(&u);
    return limit;
}

//  Merges the 200 answers of every shard and answers with the result.
static void
s_answer_merged(edge_req_t *q, const mc_reply_t *reps, unsigned n, mc_str_t body)
{
    msgpack_object *bodies = calloc(n, sizeof *bodies);
    for (unsigned i = 0; bodies && i < n; i++)
        bodies[i] = *reps[i].body;
    edge_gather_spec_t spec = { .order = q->route->gather, .sum = q->route->gather_sum,
                                .array = q->route->gather_array, .limit = s_limit(q->route, body) };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_reply_begin(&pk, reps[0].id, 200, NULL);
    const char *why = "out of memory";
    if (bodies && edge_gather_merge(&spec, bodies, n, &pk, &why) == 0) {
        zframe_t *frame = zframe_new(sb.data, sb.size);
        edge_request_answer(q, EDGE_CALL_REPLY, frame);
        zframe_destroy(&frame);
    }
    else {
        edge_metrics_rejected("frame");
        char detail[160];
        snprintf(detail, sizeof detail, "the %s service's shards could not be merged: %s", q->route->msg->service,
                 why);
        edge_problem(q->r, 500, "bad_reply", detail, NULL, NULL);
    }
    msgpack_sbuffer_destroy(&sb);
    free(bodies);
}

void
edge_gather_forward(edge_req_t *q, mc_str_t body)
{
    const char *service = q->route->msg->service;
    unsigned n = mc_schema_shards(service);
    edge_call_many_t calls[MC_SHARDS_MAX];
    msgpack_sbuffer envs[MC_SHARDS_MAX];
    char names[MC_SHARDS_MAX][96], ids[MC_SHARDS_MAX][MC_ULID_LEN + 1];
    msgpack_sbuffer asked;
    msgpack_sbuffer_init(&asked);
    s_ask_keys(body, &asked);
    for (unsigned i = 0; i < n; i++) {
        //  each call has its own message id: an actor answers, and dedups, by id
        mc_ulid(ids[i], q->received_ms);
        snprintf(names[i], sizeof names[i], "%s.%u", service, i);
        msgpack_sbuffer_init(&envs[i]);
        edge_request_encode(q, q->route->msg->type, (mc_str_t) { asked.data, asked.size },
                            (mc_str_t) { ids[i], MC_ULID_LEN }, (mc_str_t) { "", 0 }, &envs[i]);
        calls[i] = (edge_call_many_t) { .service = names[i], .envelope = envs[i].data, .len = envs[i].size };
    }
    struct timespec ts0, ts1;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    edge_client_call_many(calls, n, q->timeout_ms);
    clock_gettime(CLOCK_MONOTONIC, &ts1);
    unsigned missing = n;
    for (unsigned i = 0; i < n && missing == n; i++)
        if (calls[i].outcome != EDGE_CALL_REPLY)
            missing = i;
    edge_metrics_broker((uint64_t) ((ts1.tv_sec - ts0.tv_sec) * 1000000 + (ts1.tv_nsec - ts0.tv_nsec) / 1000),
                        (int) (missing < n ? calls[missing].outcome : EDGE_CALL_REPLY));
    msgpack_unpacked u[MC_SHARDS_MAX];
    mc_reply_t reps[MC_SHARDS_MAX];
    unsigned decoded = 0, refused = n;
    for (; missing == n && decoded < n; decoded++) {
        msgpack_unpacked_init(&u[decoded]);
        zframe_t *f = calls[decoded].reply;
        if (mc_reply_decode(&u[decoded], zframe_data(f), zframe_size(f), &reps[decoded]) || reps[decoded].status != 200
        ||  !reps[decoded].body) {
            refused = decoded++;
            break;
        }
    }
    if (missing < n) {
        char detail[256];
        snprintf(detail, sizeof detail, "shard %u of the %s service did not answer %s; the list would be incomplete",
                 missing, service, calls[missing].outcome == EDGE_CALL_TIMEOUT ? "in time" : "(no live node)");
        edge_problem(q->r, 503, "service_unavailable", detail, NULL, "Retry-After: 1\r\n");
    }
    else
    if (refused < n)
        //  the shard's own answer: a refusal, or a malformed reply the usual path reports
        edge_request_answer(q, EDGE_CALL_REPLY, calls[refused].reply);
    else
        s_answer_merged(q, reps, n, body);
    for (unsigned i = 0; i < decoded; i++)
        msgpack_unpacked_destroy(&u[i]);
    for (unsigned i = 0; i < n; i++) {
        zframe_destroy(&calls[i].reply);
        msgpack_sbuffer_destroy(&envs[i]);
    }
    msgpack_sbuffer_destroy(&asked);
}
