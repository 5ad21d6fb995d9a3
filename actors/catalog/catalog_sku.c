#include "catalog_sku.h"

#include "mc_util.h"

#include <stdio.h>
#include <string.h>

#define LMDB_FAIL(rc) ((rc) > 0 ? -(rc) : (rc))
//  A claim or release not answered within this long is sent again.
#define RESEND_MS 1000
//  Changes one tick looks at, at most; the rest wait for the next.
#define TICK_MAX 64
//  The longest product id or token a claim keeps.
#define ID_MAX 72

unsigned
catalog_sku_home(mc_str_t sku)
{
    return mc_shard_of_folded("catalog", sku.ptr, sku.len);
}

bool
catalog_sku_same(mc_str_t a, mc_str_t b)
{
    char la[CATALOG_KEY_MAX], lb[CATALOG_KEY_MAX];
    size_t na = catalog_lower(la, sizeof la, a), nb = catalog_lower(lb, sizeof lb, b);
    return na == nb && memcmp(la, lb, na) == 0;
}

static bool
s_eq(mc_str_t a, mc_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void
s_copy(char *out, size_t size, mc_str_t s)
{
    snprintf(out, size, "%.*s", (int) s.len, s.ptr ? s.ptr : "");
}

#define CONFLICT_CODE "duplicate_sku"
#define CONFLICT_DETAIL "a product with this sku already exists"

int
catalog_conflict_sku(mc_ctx_t *ctx)
{
    mc_errors_t errs = { 0 };
    mc_errors_add(&errs, "sku", "is already used by another product");
    mc_reply_error(ctx->pk, ctx->req->id, 409, CONFLICT_CODE, CONFLICT_DETAIL, &errs);
    return 409;
}

//  The claims on this shard, the SKUs' home.

//  A claim's value is "<product id>" or "<product id>\0<token>".
static void
s_holder(const MDB_val *v, mc_str_t *product, mc_str_t *token)
{
    const char *p = v->mv_data;
    const char *nul = memchr(p, 0, v->mv_size);
    *product = (mc_str_t) { p, nul ? (size_t) (nul - p) : v->mv_size };
    *token = nul ? (mc_str_t) { nul + 1, v->mv_size - (size_t) (nul + 1 - p) } : *product;
}

int
catalog_sku_claim(MDB_txn *txn, const catalog_db_t *db, mc_str_t sku, mc_str_t product, mc_str_t token,
                  bool *taken)
{
    *taken = false;
    if (product.len > ID_MAX || token.len > ID_MAX)
        return MDB_BAD_VALSIZE;
    char lower[CATALOG_KEY_MAX];
    MDB_val k = { catalog_lower(lower, sizeof lower, sku), lower }, v;
    int rc = mdb_get(txn, db->sku, &k, &v);
    if (rc == 0) {
        mc_str_t holder, held;
        s_holder(&v, &holder, &held);
        //  the product's own claim is this one again, or one it made before and has given up
        //  (a product claims only what it does not have)
        if (!s_eq(holder, product)) {
            *taken = true;
            return 0;
        }
        if (s_eq(held, token))
            return 0;
    }
    else
    if (rc != MDB_NOTFOUND)
        return rc;
    char value[2 * ID_MAX + 1];
    size_t n = product.len;
    memcpy(value, product.ptr, n);
    if (!s_eq(token, product)) {
        value[n++] = 0;
        memcpy(value + n, token.ptr, token.len);
        n += token.len;
    }
    MDB_val nv = { n, value };
    return mdb_put(txn, db->sku, &k, &nv, 0);
}

//  sku_gone: "k" token -> ms, and "t" ms token -> "" to prune them in time order.
static size_t
s_gone_key(unsigned char *out, char kind, mc_str_t token, uint64_t ms)
{
    out[0] = (unsigned char) kind;
    size_t at = 1;
    if (kind == 't') {
        mc_be64_put(out + 1, ms);
        at += 8;
    }
    memcpy(out + at, token.ptr, token.len);
    return at + token.len;
}

static int
s_gone_put(MDB_txn *txn, const catalog_db_t *db, mc_str_t token, uint64_t now)
{
    unsigned char key[9 + ID_MAX], value[8];
    if (token.len > ID_MAX)
        return 0;
    mc_be64_put(value, now);
    MDB_val k = { s_gone_key(key, 'k', token, 0), key }, v = { 8, value };
    int rc = mdb_put(txn, db->sku_gone, &k, &v, MDB_NOOVERWRITE);
    if (rc)
        return rc == MDB_KEYEXIST ? 0 : rc;
    static const MDB_val empty = { 0, "" };
    MDB_val t = { s_gone_key(key, 't', token, now), key };
    return mdb_put(txn, db->sku_gone, &t, (MDB_val *) &empty, 0);
}

static int
s_gone(MDB_txn *txn, const catalog_db_t *db, mc_str_t token, bool *gone)
{
    unsigned char key[9 + ID_MAX];
    *gone = false;
    if (token.len > ID_MAX)
        return 0;
    MDB_val k = { s_gone_key(key, 'k', token, 0), key }, v;
    int rc = mdb_get(txn, db->sku_gone, &k, &v);
    *gone = rc == 0;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Forgets tokens released more than CATALOG_SKU_GONE_MS ago: a request is dropped once past
//  its deadline (10 s after it was sent), so none can still bring them.
static int
s_gone_prune(MDB_txn *txn, const catalog_db_t *db, uint64_t now)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->sku_gone, &cur);
    if (rc)
        return rc;
    MDB_val k = { 1, "t" }, v;
    for (int n = 0; n < 100 && (rc = mdb_cursor_get(cur, &k, &v, n ? MDB_GET_CURRENT : MDB_SET_RANGE)) == 0; n++) {
        const unsigned char *key = k.mv_data;
        if (k.mv_size < 9 || key[0] != 't' || mc_be64_get(key + 1) + CATALOG_SKU_GONE_MS > now)
            break;
        unsigned char kk[9 + ID_MAX];
        mc_str_t token = { (const char *) key + 9, k.mv_size - 9 };
        MDB_val byk = { token.len <= ID_MAX ? s_gone_key(kk, 'k', token, 0) : 0, kk };
        if ((rc = mdb_cursor_del(cur, 0)))
            break;
        if (byk.mv_size && (rc = mdb_del(txn, db->sku_gone, &byk, NULL)) && rc != MDB_NOTFOUND)
            break;
        rc = 0;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Frees sku when its claim has token; gone leaves the token's mark.
static int
s_release(MDB_txn *txn, const catalog_db_t *db, mc_str_t sku, mc_str_t token, bool gone, uint64_t now)
{
    char lower[CATALOG_KEY_MAX];
    MDB_val k = { catalog_lower(lower, sizeof lower, sku), lower }, v;
    int rc = mdb_get(txn, db->sku, &k, &v);
    if (rc == 0) {
        mc_str_t holder, held;
        s_holder(&v, &holder, &held);
        if (s_eq(held, token))
            rc = mdb_del(txn, db->sku, &k, NULL);
    }
    if (rc && rc != MDB_NOTFOUND)
        return rc;
    return gone ? s_gone_put(txn, db, token, now) : 0;
}

int
catalog_sku_claim_msg(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    mc_str_t sku = { "", 0 }, product = { "", 0 }, token = { "", 0 };
    mc_map_str(ctx->req->body, "sku", &sku);
    mc_map_str(ctx->req->body, "product_id", &product);
    mc_map_str(ctx->req->body, "token", &token);
    bool gone = false, taken = false;
    int rc = s_gone(ctx->txn, db, token, &gone);
    if (!rc && gone) {
        mc_reply_error(ctx->pk, ctx->req->id, 410, "claim_released", "this claim has been released", NULL);
        return 410;
    }
    if (!rc)
        rc = catalog_sku_claim(ctx->txn, db, sku, product, token, &taken);
    if (rc)
        return LMDB_FAIL(rc);
    return taken ? catalog_conflict_sku(ctx) : mc_reply_empty(ctx, 200);
}

int
catalog_sku_release_msg(mc_ctx_t *ctx)
{
    mc_str_t sku = { "", 0 }, token = { "", 0 };
    mc_map_str(ctx->req->body, "sku", &sku);
    mc_map_str(ctx->req->body, "token", &token);
    int rc = s_release(ctx->txn, ctx->state, sku, token, true, ctx->req->time);
    return rc ? LMDB_FAIL(rc) : mc_reply_empty(ctx, 200);
}

//  A product's side: the token of its claim (sku_token), and its change under way (sku_ops).

//  Copies the token of product's claim into out (ID_MAX + 1 bytes).
static int
s_token_get(MDB_txn *txn, const catalog_db_t *db, mc_str_t product, char *out)
{
    MDB_val k = { product.len, (void *) product.ptr }, v;
    int rc = product.len ? mdb_get(txn, db->sku_token, &k, &v) : MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND) {
        s_copy(out, ID_MAX + 1, product);
        return 0;
    }
    if (!rc)
        s_copy(out, ID_MAX + 1, (mc_str_t) { v.mv_data, v.mv_size });
    return rc;
}

static int
s_token_set(MDB_txn *txn, const catalog_db_t *db, mc_str_t product, mc_str_t token)
{
    MDB_val k = { product.len, (void *) product.ptr }, v = { token.len, (void *) token.ptr };
    int rc = s_eq(token, product) ? mdb_del(txn, db->sku_token, &k, NULL) : mdb_put(txn, db->sku_token, &k, &v, 0);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

typedef struct {
    char phase;                 //  'c' claiming the new SKU, 'r' releasing one
    mc_str_t token;             //  the message id of the change: its requests' ids and tags
    mc_str_t sku;               //  'c': the SKU claimed
    mc_str_t if_match;          //  'c': the PATCH's If-Match, checked again once it is granted
    const msgpack_object *patch;    //  'c': the merge patch
    mc_str_t release_sku, release_token;    //  'r': the claim given up
    int64_t status;             //  'r': the caller's answer
    const msgpack_object *answer;   //  'r': its body, or its error map when error
    bool error;
    bool answered;              //  'r': the caller has had it
    uint64_t created, sent;     //  when the phase began; when its request last left
} sku_op_t;

static const msgpack_object s_nil = { .type = MSGPACK_OBJECT_NIL };

//  Loads product's change into op, whose strings point into raw (a copy of the record, so that
//  writes to sku_ops leave them be) through u.
static int
s_op_load(MDB_txn *txn, const catalog_db_t *db, mc_str_t product, msgpack_sbuffer *raw, msgpack_unpacked *u,
          sku_op_t *op)
{
    memset(op, 0, sizeof *op);
    MDB_val k = { product.len, (void *) product.ptr }, v;
    int rc = product.len ? mdb_get(txn, db->sku_ops, &k, &v) : MDB_NOTFOUND;
    if (rc)
        return rc;
    msgpack_sbuffer_write(raw, v.mv_data, v.mv_size);
    if (mc_msgpack_unpack(u, raw->data, raw->size))
        return MDB_CORRUPTED;
    const msgpack_object *m = &u->data;
    mc_str_t phase = { "", 0 };
    mc_map_str(m, "phase", &phase);
    op->phase = phase.len ? phase.ptr[0] : 0;
    mc_map_str(m, "token", &op->token);
    mc_map_str(m, "sku", &op->sku);
    mc_map_str(m, "if_match", &op->if_match);
    op->patch = mc_map_get(m, "patch");
    mc_map_str(m, "release_sku", &op->release_sku);
    mc_map_str(m, "release_token", &op->release_token);
    mc_map_int(m, "status", &op->status);
    op->answer = mc_map_get(m, "answer");
    mc_map_bool(m, "error", &op->error);
    mc_map_bool(m, "answered", &op->answered);
    mc_map_uint(m, "created", &op->created);
    mc_map_uint(m, "sent", &op->sent);
    return op->phase == 'c' || op->phase == 'r' ? 0 : MDB_CORRUPTED;
}

static int
s_op_save(MDB_txn *txn, const catalog_db_t *db, mc_str_t product, const sku_op_t *op)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 13);
    mc_pack_kv_str(&pk, "phase", &op->phase, 1);
    mc_pack_kv_str(&pk, "token", op->token.ptr, op->token.len);
    mc_pack_kv_str(&pk, "sku", op->sku.ptr, op->sku.len);
    mc_pack_kv_str(&pk, "if_match", op->if_match.ptr, op->if_match.len);
    mc_pack_cstr(&pk, "patch");
    mc_pack_obj(&pk, op->patch ? op->patch : &s_nil);
    mc_pack_kv_str(&pk, "release_sku", op->release_sku.ptr, op->release_sku.len);
    mc_pack_kv_str(&pk, "release_token", op->release_token.ptr, op->release_token.len);
    mc_pack_kv_int(&pk, "status", op->status);
    mc_pack_cstr(&pk, "answer");
    mc_pack_obj(&pk, op->answer ? op->answer : &s_nil);
    mc_pack_kv_bool(&pk, "error", op->error);
    mc_pack_kv_bool(&pk, "answered", op->answered);
    mc_pack_kv_uint(&pk, "created", op->created);
    mc_pack_kv_uint(&pk, "sent", op->sent);
    //  packed first: the op's strings may point into the value this put replaces
    MDB_val k = { product.len, (void *) product.ptr }, v = { sb.size, sb.data };
    int rc = mdb_put(txn, db->sku_ops, &k, &v, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int
s_op_delete(MDB_txn *txn, const catalog_db_t *db, mc_str_t product)
{
    MDB_val k = { product.len, (void *) product.ptr };
    int rc = mdb_del(txn, db->sku_ops, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

//  Sends the op's request: sku.claim or sku.release, to the SKU's home.
static void
s_op_send(mc_ctx_t *ctx, mc_str_t product, const sku_op_t *op)
{
    bool claim = op->phase == 'c';
    mc_str_t sku = claim ? op->sku : op->release_sku;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, claim ? 3 : 2);
    mc_pack_kv_str(&pk, "sku", sku.ptr, sku.len);
    if (claim) {
        mc_pack_kv_str(&pk, "product_id", product.ptr, product.len);
        mc_pack_kv_str(&pk, "token", op->token.ptr, op->token.len);
    }
    else
        mc_pack_kv_str(&pk, "token", op->release_token.ptr, op->release_token.len);
    char id[MC_REQUEST_ID_MAX + 1], tag[MC_REQUEST_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s-%c", (int) op->token.len, op->token.ptr, op->phase);
    snprintf(tag, sizeof tag, "%.*s:%c%.*s", (int) product.len, product.ptr, op->phase, (int) op->token.len,
             op->token.ptr);
    mc_send_t send = { .service = "catalog", .shard = catalog_sku_home(sku), .type = claim ? "sku.claim" : "sku.release",
                       .id = { id, strlen(id) }, .key = sku, .user = MC_STR(""), .role = MC_STR("system"),
                       .body = &sb, .tag = tag };
    mc_send(ctx, &send);
    msgpack_sbuffer_destroy(&sb);
}

static void
s_wait_key(char out[96], mc_str_t product)
{
    snprintf(out, 96, "sku:%.*s", (int) product.len, product.ptr);
}

//  Answers product's waiting caller with status and answer (a body, or an error map).
static void
s_answer(mc_ctx_t *ctx, mc_str_t product, int status, bool error, const msgpack_object *answer)
{
    char key[96];
    s_wait_key(key, product);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (answer && answer->type != MSGPACK_OBJECT_NIL)
        mc_pack_obj(&pk, answer);
    mc_answer_raw(ctx, key, status, error, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/*  Releases sku, claimed with token, for product, whose caller then gets status with answer (a
    packed body, or error map when error; NULL for none): at once when the SKU's home is this
    shard, else once the home has it (an op named by op_token). With reply the caller is this
    message's (replied, or parked; version gives a 200 its ETag), else one already parked (answered). */
static int
s_release_then_answer(mc_ctx_t *ctx, mc_str_t product, mc_str_t sku, mc_str_t token, mc_str_t op_token, int status,
                      bool error, const msgpack_sbuffer *answer, uint64_t version, bool reply)
{
    const catalog_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    const msgpack_object *body = NULL;
    if (answer && answer->size && mc_msgpack_unpack(&u, answer->data, answer->size) == 0)
        body = &u.data;
    int rc;
    if (catalog_sku_home(sku) == mc_shard_of("catalog", product.ptr, product.len)) {
        rc = s_release(ctx->txn, db, sku, token, false, ctx->req->time);
        if (!rc && !reply)
            s_answer(ctx, product, status, error, body);
        if (!rc)
            rc = s_op_delete(ctx->txn, db, product);
        if (!rc && reply) {
            char etag[32];
            catalog_etag(etag, version);
            mc_reply_begin(ctx->pk, ctx->req->id, status, status == 200 ? etag : NULL);
            if (body)
                msgpack_sbuffer_write(ctx->pk->data, answer->data, answer->size);
            else
                msgpack_pack_nil(ctx->pk);
        }
        msgpack_unpacked_destroy(&u);
        return rc ? LMDB_FAIL(rc) : status;
    }
    sku_op_t op = { .phase = 'r', .token = op_token, .release_sku = sku, .release_token = token, .status = status,
                    .answer = body, .error = error, .created = ctx->req->time, .sent = ctx->req->time };
    rc = s_op_save(ctx->txn, db, product, &op);
    if (!rc)
        s_op_send(ctx, product, &op);
    msgpack_unpacked_destroy(&u);
    if (rc)
        return LMDB_FAIL(rc);
    if (!reply)
        return 0;
    char key[96];
    s_wait_key(key, product);
    mc_park(ctx, key, false);
    return MC_PARKED;
}

//  p, old with the SKU changed, commits under token (the SKU's claim is held); the old SKU is
//  then released.
static int
s_commit(mc_ctx_t *ctx, const catalog_product_t *old, const catalog_product_t *p, uint64_t version, mc_str_t token,
         bool reply)
{
    const catalog_db_t *db = ctx->state;
    //  copied before any write: old points into a value that writes may move
    char id[ID_MAX + 1], old_sku[CATALOG_KEY_MAX], old_token[ID_MAX + 1], tok[ID_MAX + 1];
    s_copy(id, sizeof id, old->id);
    s_copy(old_sku, sizeof old_sku, old->sku);
    s_copy(tok, sizeof tok, token);
    mc_str_t pid = { id, strlen(id) };
    int rc = s_token_get(ctx->txn, db, pid, old_token);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    if (!rc)
        rc = catalog_update_store(ctx, old, p, version, &out);
    if (!rc)
        rc = s_token_set(ctx->txn, db, pid, (mc_str_t) { tok, strlen(tok) });
    int status = rc ? LMDB_FAIL(rc)
                    : s_release_then_answer(ctx, pid, (mc_str_t) { old_sku, strlen(old_sku) },
                                            (mc_str_t) { old_token, strlen(old_token) }, (mc_str_t) { tok, strlen(tok) },
                                            200, false, &out, version + 1, reply);
    msgpack_sbuffer_destroy(&out);
    return status;
}

//  Whether a change of product's SKU is under way.
static int
s_busy(mc_ctx_t *ctx, mc_str_t product, bool *busy)
{
    const catalog_db_t *db = ctx->state;
    MDB_val k = { product.len, (void *) product.ptr }, v;
    int rc = product.len ? mdb_get(ctx->txn, db->sku_ops, &k, &v) : MDB_NOTFOUND;
    *busy = rc == 0;
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int
s_in_progress(mc_ctx_t *ctx)
{
    mc_reply_error_retry(ctx->pk, ctx->req->id, 409, "sku_change_in_progress",
                         "a change of this product's sku is under way; try again", 1);
    return 409;
}

static int
s_long_token(mc_ctx_t *ctx)
{
    mc_reply_error(ctx->pk, ctx->req->id, 400, "bad_envelope", "a message id that changes a sku has at most 36 characters",
                   NULL);
    return 400;
}

int
catalog_sku_check_idle(mc_ctx_t *ctx, mc_str_t product)
{
    bool busy;
    int rc = s_busy(ctx, product, &busy);
    if (rc)
        return LMDB_FAIL(rc);
    if (busy)
        return s_in_progress(ctx);
    return ctx->req->id.len > CATALOG_TOKEN_MAX ? s_long_token(ctx) : 0;
}

int
catalog_sku_deleted(mc_ctx_t *ctx, mc_str_t product, mc_str_t sku)
{
    const catalog_db_t *db = ctx->state;
    char token[ID_MAX + 1];
    int rc = s_token_get(ctx->txn, db, product, token);
    if (!rc)
        rc = s_token_set(ctx->txn, db, product, product);
    if (rc)
        return LMDB_FAIL(rc);
    return s_release_then_answer(ctx, product, sku, (mc_str_t) { token, strlen(token) }, ctx->req->id, 204, false,
                                 NULL, 0, true);
}

int
catalog_sku_change(mc_ctx_t *ctx, const catalog_product_t *old, const catalog_product_t *p, uint64_t version)
{
    const catalog_db_t *db = ctx->state;
    mc_str_t token = ctx->req->id;
    int status = catalog_sku_check_idle(ctx, old->id);
    if (status)
        return status;
    if (catalog_sku_home(p->sku) == mc_shard_of("catalog", old->id.ptr, old->id.len)) {
        bool taken;
        int rc = catalog_sku_claim(ctx->txn, db, p->sku, old->id, token, &taken);
        if (rc)
            return LMDB_FAIL(rc);
        if (taken)
            return catalog_conflict_sku(ctx);
        return s_commit(ctx, old, p, version, token, true);
    }
    //  the claim is the home's to grant: the change waits for it, as does the caller
    sku_op_t op = { .phase = 'c', .token = token, .sku = p->sku, .if_match = ctx->req->if_match,
                    .patch = ctx->req->body, .created = ctx->req->time, .sent = ctx->req->time };
    int rc = s_op_save(ctx->txn, db, old->id, &op);
    if (rc)
        return LMDB_FAIL(rc);
    s_op_send(ctx, old->id, &op);
    char key[96];
    s_wait_key(key, old->id);
    mc_park(ctx, key, false);
    return MC_PARKED;
}

//  The caller's change fails with status (nothing of it committed), once the claim it may have
//  been granted is released.
static int
s_fail(mc_ctx_t *ctx, mc_str_t product, const sku_op_t *op, int status, const char *code, const char *detail)
{
    msgpack_sbuffer err;
    msgpack_sbuffer_init(&err);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &err, msgpack_sbuffer_write);
    mc_pack_error(&pk, code, detail, NULL);
    int rc = s_release_then_answer(ctx, product, op->sku, op->token, op->token, status, true, &err, 0, false);
    msgpack_sbuffer_destroy(&err);
    return rc < 0 ? rc : 0;
}

//  The claim is granted: the change commits on the product as it is now.
static int
s_granted(mc_ctx_t *ctx, mc_str_t product, const sku_op_t *op)
{
    const catalog_db_t *db = ctx->state;
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    catalog_product_t cur, p;
    uint64_t version = 0;
    int rc = catalog_product_load(ctx->txn, db, product, &u, &cur, &version);
    char etag[32];
    catalog_etag(etag, version);
    if (rc == MDB_NOTFOUND)
        rc = s_fail(ctx, product, op, 404, "product_not_found", "no product has this id");
    else
    if (rc)
        rc = LMDB_FAIL(rc);
    else
    if (op->if_match.len && !mc_str_eq(op->if_match, "*") && !mc_str_eq(op->if_match, etag))
        rc = s_fail(ctx, product, op, 412, "precondition_failed", "the product has changed since the ETag in If-Match");
    else {
        char now[32];
        mc_rfc3339(now, sizeof now, ctx->req->time);
        catalog_product_merge(&cur, op->patch, (mc_str_t) { now, strlen(now) }, &p);
        rc = s_commit(ctx, &cur, &p, version, op->token, false);
        rc = rc < 0 ? rc : 0;
    }
    msgpack_unpacked_destroy(&u);
    return rc;
}

int
catalog_sku_step(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    mc_str_t tag = { "", 0 };
    int64_t status = 0;
    mc_map_str(ctx->req->body, "tag", &tag);
    mc_map_int(ctx->req->body, "status", &status);
    const char *colon = tag.len ? memchr(tag.ptr, ':', tag.len) : NULL;
    if (!colon || (size_t) (colon - tag.ptr) + 2 > tag.len)
        return mc_reply_empty(ctx, 200);
    mc_str_t product = { tag.ptr, (size_t) (colon - tag.ptr) };
    char kind = colon[1];
    mc_str_t token = { colon + 2, tag.len - (size_t) (colon + 2 - tag.ptr) };
    msgpack_sbuffer raw;
    msgpack_sbuffer_init(&raw);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    sku_op_t op;
    int rc = s_op_load(ctx->txn, db, product, &raw, &u, &op);
    //  a late reply, to a change that has ended or moved on
    if (rc == MDB_NOTFOUND || (!rc && (!s_eq(op.token, token) || op.phase != kind)))
        rc = 0;
    else
    if (!rc && kind == 'c' && status == 200)
        rc = s_granted(ctx, product, &op);
    else
    if (!rc && kind == 'c' && status == 409) {
        mc_errors_t errs = { 0 };
        mc_errors_add(&errs, "sku", "is already used by another product");
        char key[96];
        s_wait_key(key, product);
        mc_answer_error(ctx, key, 409, CONFLICT_CODE, CONFLICT_DETAIL, &errs);
        rc = s_op_delete(ctx->txn, db, product);
    }
    else
    if (!rc && kind == 'r' && status == 200) {
        if (!op.answered)
            s_answer(ctx, product, (int) op.status, op.error, op.answer);
        rc = s_op_delete(ctx->txn, db, product);
    }
    //  anything else (no answer, 5xx): the tick sends it again
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&raw);
    return rc ? LMDB_FAIL(rc) : mc_reply_empty(ctx, 200);
}

//  Moves one change on by the clock.
static int
s_tick_op(mc_ctx_t *ctx, mc_str_t product, uint64_t now)
{
    const catalog_db_t *db = ctx->state;
    msgpack_sbuffer raw;
    msgpack_sbuffer_init(&raw);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    sku_op_t op;
    int rc = s_op_load(ctx->txn, db, product, &raw, &u, &op);
    if (rc == MDB_CORRUPTED) {
        //  it could never move on, and it would block the product's next change for good
        rc = s_op_delete(ctx->txn, db, product);
    }
    else
    if (!rc && op.phase == 'c' && op.created + CATALOG_SKU_CLAIM_MS <= now) {
        //  the home is not answering: the caller hears now, and the claim, should it have been
        //  granted after all, is released
        char key[96];
        s_wait_key(key, product);
        mc_answer_error(ctx, key, 503, "sku_claim_timeout", "the sku could not be claimed in time; try again", NULL);
        sku_op_t release = { .phase = 'r', .token = op.token, .release_sku = op.sku, .release_token = op.token,
                             .status = 503, .error = true, .answered = true, .created = now, .sent = now };
        if (!(rc = s_op_save(ctx->txn, db, product, &release)))
            s_op_send(ctx, product, &release);
    }
    else
    if (!rc) {
        bool changed = false;
        if (op.phase == 'r' && !op.answered && op.created + CATALOG_SKU_ANSWER_MS <= now) {
            //  the change is committed; the old SKU frees when its home answers
            s_answer(ctx, product, (int) op.status, op.error, op.answer);
            op.answered = changed = true;
        }
        if (op.sent + RESEND_MS <= now) {
            s_op_send(ctx, product, &op);
            op.sent = now;
            changed = true;
        }
        if (changed)
            rc = s_op_save(ctx->txn, db, product, &op);
    }
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&raw);
    return rc;
}

int
catalog_sku_tick(mc_ctx_t *ctx)
{
    const catalog_db_t *db = ctx->state;
    uint64_t now = ctx->req->time;
    char keys[TICK_MAX][ID_MAX + 1];
    size_t n = 0;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(ctx->txn, db->sku_ops, &cur);
    if (rc)
        return LMDB_FAIL(rc);
    MDB_val k, v;
    for (int r = mdb_cursor_get(cur, &k, &v, MDB_FIRST); r == 0 && n < TICK_MAX; r = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        if (k.mv_size <= ID_MAX)
            s_copy(keys[n++], sizeof keys[0], (mc_str_t) { k.mv_data, k.mv_size });
    mdb_cursor_close(cur);
    for (size_t i = 0; i < n && !rc; i++)
        rc = s_tick_op(ctx, (mc_str_t) { keys[i], strlen(keys[i]) }, now);
    if (!rc)
        rc = s_gone_prune(ctx->txn, db, now);
    return rc ? LMDB_FAIL(rc) : mc_reply_empty(ctx, 200);
}
