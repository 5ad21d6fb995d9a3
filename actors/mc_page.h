/*  mc_page: newest-first pages over a time index, for list handlers.

    A time index holds keys  prefix | created ms (8 bytes, big-endian) | id  (mc_store_time_key),
    with an empty prefix for an index of everything, or "user id \0" for one user's entries.
    A page walks it from the newest entry below its bound down to `from`, and its cursor is the
    key (after the prefix) of the last entry looked at, so the next page starts right below it. */
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

//  Packs the entry with this id onto pk when it belongs on the page; true when it did.
typedef bool (mc_page_visit_fn)(mc_ctx_t *ctx, mc_str_t id, msgpack_packer *pk, void *arg);

//  Replies with the page {items, next_cursor}: 200, 400 for a cursor this API did not issue,
//  or the negative LMDB error.
int mc_page_reply(mc_ctx_t *ctx, const mc_page_t *page, mc_page_visit_fn *visit, void *arg);

#endif
