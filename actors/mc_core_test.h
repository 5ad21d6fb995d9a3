/*  mc_core_test: sending one message through an actor core and reading its reply, for the
    services' unit tests. For test files only. */
#ifndef MC_CORE_TEST_H
#define MC_CORE_TEST_H

#include "mc_actor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    msgpack_sbuffer frame;      //  the reply frame
    msgpack_unpacked u;         //  its decoded form
    mc_reply_t rep;             //  the reply
} result_t;

static inline void
s_free(result_t *r)
{
    msgpack_unpacked_destroy(&r->u);
    msgpack_sbuffer_destroy(&r->frame);
}

//  As mc_core_test_call, from a given kind of peer.
static inline int
mc_core_test_call_from(mc_core_t *core, mc_peer_t peer, result_t *r, const mc_request_t *req,
                       const msgpack_sbuffer *body, uint64_t now_ms)
{
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    mc_request_encode(&env, req, body ? (mc_str_t) { body->data, body->size } : (mc_str_t) { "", 0 });
    msgpack_sbuffer_init(&r->frame);
    msgpack_unpacked_init(&r->u);
    int rc = mc_core_handle(core, peer, env.data, env.size, now_ms, &r->frame);
    msgpack_sbuffer_destroy(&env);
    if (rc || mc_reply_decode(&r->u, r->frame.data, r->frame.size, &r->rep))
        return -1;
    return r->rep.status;
}

//  Handles req with body (a packed map, or NULL for {}) at now_ms; the reply lands in r (free it
//  with s_free). Returns the reply's status, or -1 when there was none. The message comes from
//  the runtime itself, so only the service's own checks apply, except that a step or tick with
//  a role other than "system" comes from a node (and is refused, as from outside). The plane's
//  rules have tests of their own, with mc_core_test_call_from.
static inline int
mc_core_test_call(mc_core_t *core, result_t *r, const mc_request_t *req, const msgpack_sbuffer *body, uint64_t now_ms)
{
    const mc_service_t *svc = mc_core_service(core);
    bool own = (svc->step && mc_str_eq(req->type, svc->step)) || (svc->tick && mc_str_eq(req->type, svc->tick));
    bool system = req->role.len == 6 && memcmp(req->role.ptr, "system", 6) == 0;
    return mc_core_test_call_from(core, own && !system ? MC_PEER_NODE : MC_PEER_SELF, r, req, body, now_ms);
}

//  How many effects of kind the core's last message caused for tag (SEND) or key (PARK, ANSWER),
//  any when tag_or_key is NULL; *last (may be NULL) receives the last of them.
static inline size_t
mc_core_test_effects(mc_core_t *core, mc_fx_kind_t kind, const char *tag_or_key, const mc_fx_t **last)
{
    size_t n, count = 0;
    mc_fx_t *const *fx = mc_core_effects(core, &n);
    for (size_t i = 0; i < n; i++)
        if (fx[i]->kind == kind
        &&  (!tag_or_key || strcmp(kind == MC_FX_SEND ? fx[i]->tag : fx[i]->key, tag_or_key) == 0)) {
            count++;
            if (last)
                *last = fx[i];
        }
    return count;
}

//  Opens service's shard 0 in a fresh temporary data directory (dir receives its path).
static inline mc_core_t *
mc_core_test_open(const mc_service_t *service, char dir[64], size_t map_max)
{
    snprintf(dir, 64, "/tmp/mc-%s-test-XXXXXX", service->name);
    return mkdtemp(dir) ? mc_core_new(service, dir, 0, map_max) : NULL;
}

//  Closes the core and removes its directory. 0 on success.
static inline int
mc_core_test_close(mc_core_t **core, const char *dir)
{
    mc_core_destroy(core);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#endif
