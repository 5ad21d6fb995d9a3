/*  mc_page: newest-first pages over a time index, for list handlers.

    A time index holds keys  prefix | created ms (8 bytes, big-endian) | id  (mc_store_time_key),
    with an empty prefix for an index of everything, or "user id \0" for one user's entries.
    A page walks it from the newest entry below its bound down to `from`, and its cursor is the
    key (after the prefix) of the last item it holds, so the next page starts right below it.
    That key is the item's sort key, the same on every shard: a page of the items after it is
    the same question on each shard of a service, and the edge can merge their answers. */
#ifndef MC_PAGE_H
#define MC_PAGE_H

#include "mc_actor.h"

#include <lmdb.h>

typedef struct {
    MDB_dbi dbi;                //  the time index
    mc_str_t prefix;            //  the entries' common prefix, or empty
    mc_str_t cursor;            //  from an earlier page, or empty: start at `to`
    uint64_t from, to;          //  created ms, both inclusive
    int64_t limit;              //  entries per page
} mc_page_t;

//  The sort key of each item of a page, which the edge needs to merge the pages of every shard
//  (it asks with the body member mc_gather_field): each key is what the cursor of a page ending
//  at that item would be.
typedef struct {
    bool on;                    //  the request asked for keys
    size_t n;                   //  keys added
    msgpack_sbuffer buf;        //  packed base64url strings
} mc_page_keys_t;

//  Starts the keys of a page for the request body; when it did not ask, mc_page_keys_add does
//  nothing and the reply is the plain page.
void mc_page_keys_init(mc_page_keys_t *keys, const msgpack_object *body);

//  Adds the raw sort key (at most MC_PAGE_KEY_MAX bytes) of the item just packed.
void mc_page_keys_add(mc_page_keys_t *keys, const void *raw, size_t len);

void mc_page_keys_destroy(mc_page_keys_t *keys);

#define MC_PAGE_KEY_MAX 512

//  mc_reply_page (items holds n packed objects; next is the raw cursor or NULL on the last
//  page), with "keys" beside them when keys is on. keys may be NULL.
void mc_page_reply_keyed(mc_ctx_t *ctx, const msgpack_sbuffer *items, size_t n, const void *next, size_t nextlen,
                         const mc_page_keys_t *keys);

//  Packs the entry with this id onto pk when it belongs on the page; true when it did.
typedef bool (mc_page_visit_fn)(mc_ctx_t *ctx, mc_str_t id, msgpack_packer *pk, void *arg);

//  Replies with the page {items, next_cursor} (and keys, when asked): 200, 400 for a cursor this
//  API did not issue, or the negative LMDB error. next_cursor is null when no further entry
//  belongs on a page (visit is asked about entries past a full page until one does), so that
//  a merge of every shard's pages can tell whether anything follows.
int mc_page_reply(mc_ctx_t *ctx, const mc_page_t *page, mc_page_visit_fn *visit, void *arg);

#endif
