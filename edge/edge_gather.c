#include "edge_gather.h"

#include "edge_client.h"
#include "edge_metrics.h"
#include "mc_gather.h"
#include "mc_util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  After a node would not gather a service's shards, the edge asks them one by one this long.
#define DECLINED_MS 10000
#define SERVICES_MAX 32

//  per service (its place in mc_services): mono ms until which it is asked shard by shard
static _Atomic uint64_t s_declined_until[SERVICES_MAX];

bool
edge_gather_wanted(const edge_req_t *q)
{
    return q->route->gather != MC_GATHER_NONE && mc_schema_shards(q->route->msg->service) > 1;
}

static uint64_t
s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}

static int
s_service_index(const char *service)
{
    for (size_t i = 0; i < mc_services_count && i < SERVICES_MAX; i++)
        if (strcmp(mc_services[i].name, service) == 0)
            return (int) i;
    return -1;
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

//  One request of a gathered list: one shard, or the shards of one node (mask).
typedef struct {
    uint64_t mask;
    unsigned first;                         //  its lowest shard
    char name[MC_GATHER_NAME_MAX + 1];      //  "catalog.3" or "catalog.*ffff"
    char id[MC_ULID_LEN + 1];               //  each its own message id: an actor answers, and
                                            //  dedups, by id
    msgpack_sbuffer env;
    bool replaced;                          //  refused by its node: asked again shard by shard
} part_t;

static void
s_part_init(part_t *p, edge_req_t *q, mc_str_t asked, uint64_t mask)
{
    const char *service = q->route->msg->service;
    *p = (part_t) { .mask = mask, .first = (unsigned) __builtin_ctzll(mask) };
    if (__builtin_popcountll(mask) == 1)
        snprintf(p->name, sizeof p->name, "%s.%u", service, p->first);
    else
        mc_gather_name(p->name, service, mask);
    mc_ulid(p->id, q->received_ms);
    msgpack_sbuffer_init(&p->env);
    edge_request_encode(q, q->route->msg->type, asked, (mc_str_t) { p->id, MC_ULID_LEN }, (mc_str_t) { "", 0 },
                        &p->env);
}

//  The masks of the requests that cover shards 0..n-1, in the order of their lowest shard: one
//  per node owning several of them when by_node, else (and for the rest) one per shard.
static unsigned
s_plan(const char *service, unsigned n, bool by_node, uint64_t *masks)
{
    int owner[MC_SHARDS_MAX];
    uint64_t left = n >= 64 ? ~(uint64_t) 0 : ((uint64_t) 1 << n) - 1;
    unsigned parts = 0;
    bool known = by_node && edge_client_owners(service, n, owner) == 0;
    for (unsigned i = 0; i < n; i++) {
        if (!(left >> i & 1))
            continue;
        uint64_t m = (uint64_t) 1 << i;
        for (unsigned j = i + 1; known && owner[i] >= 0 && j < n; j++)
            if (owner[j] == owner[i])
                m |= (uint64_t) 1 << j;
        masks[parts++] = m;
        left &= ~m;
    }
    return parts;
}

//  Merges the 200 answers of the parts (in shard order) and answers with the result.
static void
s_answer_merged(edge_req_t *q, const mc_reply_t *reps, unsigned n, mc_str_t body)
{
    msgpack_object *bodies = calloc(n, sizeof *bodies);
    for (unsigned i = 0; bodies && i < n; i++)
        bodies[i] = *reps[i].body;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    bool unpacked = mc_msgpack_unpack(&u, body.ptr, body.len) == 0;
    mc_gather_spec_t spec = { .order = q->route->gather, .sum = q->route->gather_sum, .array = q->route->gather_array,
                              .limit = mc_gather_limit(q->route->msg, unpacked ? &u.data : NULL) };
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mc_reply_begin(&pk, reps[0].id, 200, NULL);
    const char *why = "out of memory";
    if (bodies && mc_gather_merge(&spec, bodies, n, &pk, &why, NULL) == 0) {
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

static void
s_call(part_t *parts, edge_call_many_t *calls, unsigned from, unsigned to, int timeout_ms)
{
    for (unsigned i = from; i < to; i++)
        calls[i] = (edge_call_many_t) { .service = parts[i].name, .envelope = parts[i].env.data,
                                        .len = parts[i].env.size };
    edge_client_call_many(calls + from, to - from, timeout_ms);
}

void
edge_gather_forward(edge_req_t *q, mc_str_t body)
{
    const char *service = q->route->msg->service;
    unsigned n = mc_schema_shards(service);
    //  at most one part per shard, and as many again for the shards of refused parts
    part_t parts[2 * MC_SHARDS_MAX];
    edge_call_many_t calls[2 * MC_SHARDS_MAX];
    uint64_t masks[MC_SHARDS_MAX];
    msgpack_sbuffer asked;
    msgpack_sbuffer_init(&asked);
    s_ask_keys(body, &asked);
    mc_str_t ask = { asked.data, asked.size };
    int svc = s_service_index(service);
    bool by_node = svc >= 0 && atomic_load(&s_declined_until[svc]) <= mc_mono_ms();
    unsigned np = s_plan(service, n, by_node, masks);
    for (unsigned i = 0; i < np; i++)
        s_part_init(&parts[i], q, ask, masks[i]);
    uint64_t t0 = s_now_us();
    s_call(parts, calls, 0, np, q->timeout_ms);
    //  a node that would not gather (a shard moved, or not read in place there): its shards
    //  one by one, in the time left
    unsigned all = np;
    for (unsigned i = 0; i < np; i++) {
        if (__builtin_popcountll(parts[i].mask) == 1 || calls[i].outcome != EDGE_CALL_UNAVAILABLE)
            continue;
        parts[i].replaced = true;
        if (svc >= 0)
            atomic_store(&s_declined_until[svc], mc_mono_ms() + DECLINED_MS);
        for (unsigned b = 0; b < MC_SHARDS_MAX; b++)
            if (parts[i].mask >> b & 1)
                s_part_init(&parts[all++], q, ask, (uint64_t) 1 << b);
    }
    if (all > np) {
        int spent = (int) ((s_now_us() - t0) / 1000);
        s_call(parts, calls, np, all, q->timeout_ms > spent ? q->timeout_ms - spent : 1);
    }
    //  the answering parts in shard order
    unsigned order[2 * MC_SHARDS_MAX], k = 0;
    for (unsigned i = 0; i < all; i++)
        if (!parts[i].replaced) {
            unsigned j = k++;
            for (; j > 0 && parts[order[j - 1]].first > parts[i].first; j--)
                order[j] = order[j - 1];
            order[j] = i;
        }
    unsigned missing = k;
    for (unsigned i = 0; i < k && missing == k; i++)
        if (calls[order[i]].outcome != EDGE_CALL_REPLY)
            missing = i;
    edge_metrics_broker(s_now_us() - t0, (int) (missing < k ? calls[order[missing]].outcome : EDGE_CALL_REPLY));
    msgpack_unpacked u[2 * MC_SHARDS_MAX];
    mc_reply_t reps[2 * MC_SHARDS_MAX];
    unsigned decoded = 0, refused = k;
    for (; missing == k && decoded < k; decoded++) {
        msgpack_unpacked_init(&u[decoded]);
        zframe_t *f = calls[order[decoded]].reply;
        if (mc_reply_decode(&u[decoded], zframe_data(f), zframe_size(f), &reps[decoded]) || reps[decoded].status != 200
        ||  !reps[decoded].body) {
            refused = decoded++;
            break;
        }
    }
    if (missing < k) {
        const edge_call_many_t *c = &calls[order[missing]];
        char detail[256];
        snprintf(detail, sizeof detail, "shard %u of the %s service did not answer %s; the list would be incomplete",
                 parts[order[missing]].first, service, c->outcome == EDGE_CALL_TIMEOUT ? "in time" : "(no live node)");
        edge_problem(q->r, 503, "service_unavailable", detail, NULL, "Retry-After: 1\r\n");
    }
    else
    if (refused < k)
        //  the shard's own answer: a refusal, or a malformed reply the usual path reports
        edge_request_answer(q, EDGE_CALL_REPLY, calls[order[refused]].reply);
    else
        s_answer_merged(q, reps, k, body);
    for (unsigned i = 0; i < decoded; i++)
        msgpack_unpacked_destroy(&u[i]);
    for (unsigned i = 0; i < all; i++) {
        zframe_destroy(&calls[i].reply);
        msgpack_sbuffer_destroy(&parts[i].env);
    }
    msgpack_sbuffer_destroy(&asked);
}
