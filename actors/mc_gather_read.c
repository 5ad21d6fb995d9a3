#include "mc_gather_read.h"

#include "mc_envelope.h"
#include "mc_gather.h"
#include "mc_msgpack.h"
#include "mc_schema.h"

#include <stdlib.h>
#include <string.h>

//  Refills after the first pages, at most (each asks one shard for a whole page): past this the
//  answer is the merge as it stands, which is still correct, only shorter.
#define REFILLS_MAX (2 * MC_SHARDS_MAX)

//  One page a shard answered, kept decoded: the merge points into it.
typedef struct page {
    msgpack_sbuffer raw;
    msgpack_unpacked u;
    struct page *next;
} page_t;

//  A shard's pages so far, as the one page they make together.
typedef struct {
    page_t *pages, *last;
    msgpack_object *items, *keys;
    size_t n, cap;
    msgpack_object next_cursor;
    msgpack_object_kv kv[3];
    msgpack_object body;        //  {items, keys, next_cursor}
} shard_t;

static msgpack_object
s_str(const char *s)
{
    msgpack_object o = { .type = MSGPACK_OBJECT_STR };
    o.via.str.ptr = s;
    o.via.str.size = (uint32_t) strlen(s);
    return o;
}

static msgpack_object
s_array(msgpack_object *ptr, size_t n)
{
    msgpack_object o = { .type = MSGPACK_OBJECT_ARRAY };
    o.via.array.ptr = ptr;
    o.via.array.size = (uint32_t) n;
    return o;
}

//  Appends a 200 page body to the shard's; -1 when it is not a keyed page (out of memory too).
static int
s_append(shard_t *s, const msgpack_object *body)
{
    const msgpack_object *items = mc_map_get(body, "items"), *keys = mc_map_get(body, "keys");
    const msgpack_object *next = mc_map_get(body, "next_cursor");
    if (!items || !keys || !next || items->type != MSGPACK_OBJECT_ARRAY || keys->type != MSGPACK_OBJECT_ARRAY
    ||  items->via.array.size != keys->via.array.size)
        return -1;
    size_t add = items->via.array.size;
    if (s->n + add > s->cap) {
        size_t cap = (s->n + add) * 2;
        msgpack_object *i = realloc(s->items, cap * sizeof *i), *k = i ? realloc(s->keys, cap * sizeof *k) : NULL;
        if (i)
            s->items = i;
        if (!i || !k)
            return -1;
        s->keys = k;
        s->cap = cap;
    }
    if (add) {
        memcpy(s->items + s->n, items->via.array.ptr, add * sizeof *s->items);
        memcpy(s->keys + s->n, keys->via.array.ptr, add * sizeof *s->keys);
    }
    s->n += add;
    s->next_cursor = *next;
    s->kv[0] = (msgpack_object_kv) { s_str("items"), s_array(s->items, s->n) };
    s->kv[1] = (msgpack_object_kv) { s_str("keys"), s_array(s->keys, s->n) };
    s->kv[2] = (msgpack_object_kv) { s_str("next_cursor"), s->next_cursor };
    s->body = (msgpack_object) { .type = MSGPACK_OBJECT_MAP };
    s->body.via.map.ptr = s->kv;
    s->body.via.map.size = 3;
    return 0;
}

static void
s_shard_free(shard_t *s)
{
    for (page_t *p = s->pages, *next; p; p = next) {
        next = p->next;
        msgpack_unpacked_destroy(&p->u);
        msgpack_sbuffer_destroy(&p->raw);
        free(p);
    }
    free(s->items);
    free(s->keys);
}

static bool
s_is(const msgpack_object *key, const char *name)
{
    size_t len = strlen(name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len && memcmp(key->via.str.ptr, name, len) == 0;
}

//  The request with its body's limit set to limit and, when cursor is not NULL, its cursor.
static void
s_ask(const mc_request_t *req, int64_t limit, const msgpack_object *cursor, msgpack_sbuffer *out)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    const msgpack_object_map *m = &req->body->via.map;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < m->size; i++)
        kept += !(s_is(&m->ptr[i].key, "limit") || (cursor && s_is(&m->ptr[i].key, "cursor")));
    msgpack_pack_map(&pk, kept + 1 + (cursor != NULL));
    for (uint32_t i = 0; i < m->size; i++)
        if (!(s_is(&m->ptr[i].key, "limit") || (cursor && s_is(&m->ptr[i].key, "cursor")))) {
            mc_pack_obj(&pk, &m->ptr[i].key);
            mc_pack_obj(&pk, &m->ptr[i].val);
        }
    mc_pack_kv_int(&pk, "limit", limit);
    if (cursor) {
        mc_pack_cstr(&pk, "cursor");
        mc_pack_obj(&pk, cursor);
    }
    mc_request_encode(out, req, (mc_str_t) { body.data, body.size });
    msgpack_sbuffer_destroy(&body);
}

//  Reads frame on view and keeps the page: 0 with *status its reply's, 1 when the actor must read
//  it, -1 when its reply does not decode.
static int
s_read(mc_core_t *view, mc_peer_t role, const void *frame, size_t len, uint64_t now_ms, shard_t *s, int *status)
{
    page_t *p = calloc(1, sizeof *p);
    if (!p)
        return -1;
    msgpack_sbuffer_init(&p->raw);
    msgpack_unpacked_init(&p->u);
    if (s->last)
        s->last->next = p;
    else
        s->pages = p;
    s->last = p;
    if (mc_core_read(view, role, frame, len, now_ms, &p->raw))
        return 1;
    mc_reply_t rep;
    if (mc_reply_decode(&p->u, p->raw.data, p->raw.size, &rep))
        return -1;
    *status = rep.status;
    return rep.status == 200 && (!rep.body || s_append(s, rep.body)) ? -1 : 0;
}

int
mc_gather_read(mc_core_t *const *views, unsigned n, const char *service, mc_peer_t role, const void *frame,
               size_t len, uint64_t now_ms, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_unpacked ur;
    msgpack_unpacked_init(&ur);
    mc_request_t req;
    mc_gather_spec_t spec;
    if (n == 0 || n > MC_SHARDS_MAX || mc_request_decode(&ur, frame, len, &req) || !req.body
    ||  req.body->type != MSGPACK_OBJECT_MAP || mc_gather_node_spec(service, req.type, req.body, &spec)) {
        msgpack_unpacked_destroy(&ur);
        return 1;       //  the actor judges (and refuses) what this cannot read
    }
    shard_t shards[MC_SHARDS_MAX];
    memset(shards, 0, n * sizeof *shards);
    //  the first pages: small ones when that reads fewer items
    int64_t first = spec.limit > 0 ? (2 * spec.limit + n - 1) / n : 0;
    first = first < 2 ? 2 : first;
    msgpack_sbuffer small;
    msgpack_sbuffer_init(&small);
    //  a body the schema refuses goes to the shards as it is, so that they refuse it
    mc_errors_t errs = { 0 };
    const mc_msgdef_t *def = mc_schema_find(service, req.type);
    bool smaller = spec.limit > 0 && first < spec.limit && def && mc_schema_validate(def, req.body, &errs) == 0;
    if (smaller)
        s_ask(&req, first, NULL, &small);
    int rc = 0, status = 200, refused = -1;
    for (unsigned i = 0; i < n && rc == 0 && refused < 0; i++) {
        rc = smaller ? s_read(views[i], role, small.data, small.size, now_ms, &shards[i], &status)
                     : s_read(views[i], role, frame, len, now_ms, &shards[i], &status);
        if (rc == 0 && status != 200)
            refused = (int) i;
    }
    msgpack_sbuffer_destroy(&small);
    msgpack_object bodies[MC_SHARDS_MAX];
    for (unsigned i = 0; i < n; i++)
        bodies[i] = shards[i].body;
    const char *why = "a shard's answer is not a keyed list";
    msgpack_sbuffer merged;
    msgpack_sbuffer_init(&merged);
    for (int refills = 0; rc == 0 && refused < 0; refills++) {
        msgpack_sbuffer_clear(&merged);
        msgpack_packer mpk;
        msgpack_packer_init(&mpk, &merged, msgpack_sbuffer_write);
        mc_gather_result_t result;
        mc_reply_begin(&mpk, req.id, 200, NULL);
        if (mc_gather_merge(&spec, bodies, n, &mpk, &why, &result)) {
            rc = -1;
            break;
        }
        //  short because one shard's small page ended before the others': that shard, a whole
        //  page more
        if (!smaller || result.truncated || result.bound < 0 || (int64_t) result.items >= spec.limit
        ||  refills == REFILLS_MAX)
            break;
        shard_t *s = &shards[result.bound];
        msgpack_sbuffer more;
        msgpack_sbuffer_init(&more);
        s_ask(&req, spec.limit, &s->next_cursor, &more);
        rc = s_read(views[result.bound], role, more.data, more.size, now_ms, s, &status);
        msgpack_sbuffer_destroy(&more);
        if (rc == 0 && status != 200)
            refused = result.bound;
        bodies[result.bound] = s->body;
    }
    if (rc == 0 && refused >= 0)
        msgpack_sbuffer_write(out, shards[refused].last->raw.data, shards[refused].last->raw.size);
    else
    if (rc == 0)
        msgpack_sbuffer_write(out, merged.data, merged.size);
    else
    if (rc < 0) {
        mc_reply_error(&pk, req.id, 500, "internal", why, NULL);
        rc = 0;
    }
    msgpack_sbuffer_destroy(&merged);
    for (unsigned i = 0; i < n; i++)
        s_shard_free(&shards[i]);
    msgpack_unpacked_destroy(&ur);
    return rc;
}
