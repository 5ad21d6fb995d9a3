/*  Reads run by the node's front on a view of an actor's core (mc_reads.h): they see what the
    owner committed, never run a write or the runtime's own messages, and a view is never
    closed or its map resized under a read in flight. Real catalog cores on real LMDB files. */
#include "catalog/catalog.h"
#include "mc_core_test.h"
#include "mc_reads.h"
#include "mc_test.h"
#include "mc_util.h"

#include <pthread.h>

static uint64_t s_clock = 1700000000000ull;

//  The envelope of type, keyed by key, from an admin at the edge.
static void
s_envelope(msgpack_sbuffer *env, const char *type, const char *key, const msgpack_sbuffer *body)
{
    char id[MC_ULID_LEN + 1];
    mc_ulid(id, ++s_clock);
    mc_request_t req = { .id = { id, MC_ULID_LEN }, .type = { type, strlen(type) }, .key = { key, strlen(key) },
                         .user = MC_STR("U1"), .role = MC_STR("admin"), .time = s_clock };
    msgpack_sbuffer_init(env);
    mc_request_encode(env, &req, body ? (mc_str_t) { body->data, body->size } : (mc_str_t) { "", 0 });
}

static msgpack_sbuffer
s_body(const char *name)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    mc_pack_kv_cstr(&pk, "sku", "READS-1");
    mc_pack_kv_cstr(&pk, "description", "");
    mc_pack_kv_cstr(&pk, "name", name);
    mc_pack_kv_cstr(&pk, "category", "tests");
    mc_pack_kv_int(&pk, "price_cents", 100);
    return sb;
}

//  The status of the reply frame in out (-1 when it does not decode) and its body's field into
//  value (when not NULL).
static int
s_reply(const msgpack_sbuffer *out, const char *field, char *value, size_t size)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    mc_reply_t rep;
    int status = mc_reply_decode(&u, out->data, out->size, &rep) ? -1 : rep.status;
    mc_str_t v = { "", 0 };
    if (status >= 0 && rep.body)
        mc_map_str(rep.body, field, &v);
    if (value)
        snprintf(value, size, "%.*s", (int) v.len, v.ptr);
    msgpack_unpacked_destroy(&u);
    return status;
}

//  What a message does on core (the owner): its reply's status, with the new id into id.
static int
s_owner(mc_core_t *core, const char *type, const char *key, const msgpack_sbuffer *body, char *id, size_t idsz)
{
    msgpack_sbuffer env, out;
    s_envelope(&env, type, key, body);
    msgpack_sbuffer_init(&out);
    int status = mc_core_handle(core, MC_PEER_EDGE, env.data, env.size, s_clock, &out) ? -1
               : s_reply(&out, "id", id, idsz);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    return status;
}

//  mc_core_read on view: -1 (not for the view, 1), or the reply's status with its name.
static int
s_view(mc_core_t *view, const char *type, const char *key, const msgpack_sbuffer *body, char *name, size_t namesz)
{
    msgpack_sbuffer env, out;
    s_envelope(&env, type, key, body);
    msgpack_sbuffer_init(&out);
    int status = mc_core_read(view, MC_PEER_EDGE, env.data, env.size, s_clock, &out) ? -1
               : s_reply(&out, "name", name, namesz);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    return status;
}

static void
test_view_reads_what_the_owner_committed(void)
{
    char dir[64], id[64], name[64];
    mc_core_t *core = mc_core_test_open(&catalog_service, dir, 64 << 20);
    MC_CHECK(core != NULL);
    mc_core_t *view = mc_core_view_new(core);
    mc_store_pin(mc_core_store(view));
    msgpack_sbuffer body = s_body("First");
    ASSERT_EQ(s_owner(core, "product.create", "", &body, id, sizeof id), 201);
    ASSERT_EQ(s_view(view, "product.get", id, NULL, name, sizeof name), 200);
    ASSERT_STR(name, "First");
    //  a write through the view is the owner's: it is not run, and nothing changes
    msgpack_sbuffer patch;
    msgpack_sbuffer_init(&patch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &patch, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mc_pack_kv_cstr(&pk, "name", "Second");
    ASSERT_EQ(s_view(view, "product.update", id, &patch, NULL, 0), -1);
    ASSERT_EQ(s_view(view, "product.get", id, NULL, name, sizeof name), 200);
    ASSERT_STR(name, "First");
    //  once the owner has acknowledged the update, the view's next read has it
    ASSERT_EQ(s_owner(core, "product.update", id, &patch, NULL, 0), 200);
    ASSERT_EQ(s_view(view, "product.get", id, NULL, name, sizeof name), 200);
    ASSERT_STR(name, "Second");
    //  a read's refusals are answered as the owner would: a 404 is a reply like any other
    ASSERT_EQ(s_view(view, "product.get", "01NOPE", NULL, NULL, 0), 404);
    //  the runtime's own messages and what does not decode stay with the owner
    ASSERT_EQ(s_view(view, "catalog.tick", "", NULL, NULL, 0), -1);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    ASSERT_EQ(mc_core_read(view, MC_PEER_EDGE, "\x93\x01", 2, s_clock, &out), 1);
    ASSERT_EQ(out.size, 0);
    //  an owner is not a view: it never answers through mc_core_read
    msgpack_sbuffer env;
    s_envelope(&env, "product.get", id, NULL);
    ASSERT_EQ(mc_core_read(core, MC_PEER_EDGE, env.data, env.size, s_clock, &out), 1);
    ASSERT_EQ(mc_core_stats(view).handled, 4);
    msgpack_sbuffer_destroy(&env);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&patch);
    msgpack_sbuffer_destroy(&body);
    mc_store_unpin(mc_core_store(view));
    mc_core_destroy(&view);
    MC_CHECK(mc_core_test_close(&core, dir) == 0);
}

typedef struct {
    mc_core_t *core, *view;
    int done;                   //  set once the call under test returned
    int rc;
} waiter_t;

static void *
s_withdraw(void *arg)
{
    waiter_t *w = arg;
    mc_reads_withdraw("catalog.0", w->view);
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *
s_grow(void *arg)
{
    waiter_t *w = arg;
    w->rc = mc_store_grow(mc_core_store(w->core));
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

//  Runs fn on a thread while this thread holds view acquired: fn must not return until the
//  view is released. (The one wait here is for something that must not happen; 100 ms is long
//  next to a return that takes microseconds.)
static void
s_waits_for_release(waiter_t *w, void *(*fn)(void *))
{
    MC_CHECK(mc_reads_acquire("catalog.0") == w->view);
    w->done = 0;
    pthread_t t;
    pthread_create(&t, NULL, fn, w);
    zclock_sleep(100);
    ASSERT_EQ(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE), 0);
    mc_reads_release(w->view);
    pthread_join(t, NULL);
    ASSERT_EQ(w->done, 1);
}

static void
test_registry_waits_for_reads_in_flight(void)
{
    char dir[64];
    mc_core_t *core = mc_core_test_open(&catalog_service, dir, 256 << 20);
    MC_CHECK(core != NULL);
    waiter_t w = { .core = core, .view = mc_core_view_new(core) };
    MC_CHECK(mc_reads_acquire("catalog.0") == NULL);
    mc_reads_publish("catalog.0", w.view);
    //  LMDB resizes a map only with no transaction open in the process
    s_waits_for_release(&w, s_grow);
    ASSERT_EQ(w.rc, 0);
    char id[64], name[64];
    msgpack_sbuffer body = s_body("After growth");
    ASSERT_EQ(s_owner(core, "product.create", "", &body, id, sizeof id), 201);
    mc_core_t *view = mc_reads_acquire("catalog.0");
    MC_CHECK(view == w.view);
    ASSERT_EQ(s_view(view, "product.get", id, NULL, name, sizeof name), 200);
    ASSERT_STR(name, "After growth");
    mc_reads_release(view);
    //  another actor's view under the name replaces it; withdrawing the old one leaves it be
    mc_core_t *other = mc_core_view_new(core);
    mc_reads_publish("catalog.0", other);
    mc_reads_withdraw("catalog.0", w.view);
    MC_CHECK(mc_reads_acquire("catalog.0") == other);
    mc_reads_release(other);
    mc_reads_publish("catalog.0", w.view);
    mc_core_destroy(&other);
    //  the actor withdraws its view before it closes the store: a read in flight ends first,
    //  and nobody finds the view afterwards
    s_waits_for_release(&w, s_withdraw);
    MC_CHECK(mc_reads_acquire("catalog.0") == NULL);
    msgpack_sbuffer_destroy(&body);
    mc_core_destroy(&w.view);
    MC_CHECK(mc_core_test_close(&core, dir) == 0);
}

int
main(void)
{
    setenv("MERCATO_SHARDS", "1", 1);
    MC_TEST_RUN(test_view_reads_what_the_owner_committed);
    MC_TEST_RUN(test_registry_waits_for_reads_in_flight);
    return MC_TEST_DONE();
}
