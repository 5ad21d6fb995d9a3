/*  edge_gather: a list with no routing key (products, categories, orders, users, stock,
    notifications), asked of every shard of its service at once and merged into the answer one
    shard holding every item would give.

    Each shard gets the same question (filters, limit, cursor) with mc_gather_field set, and
    answers its page with the sort key of each item ("keys", as cursors: "the items after K"
    means the same on every shard). The merge keeps, in key order, the items up to the earliest
    point some shard has not looked past (the next_cursor of a shard that has more), and at most
    limit of them; next_cursor is then the key of the last item kept, or null when no shard has
    more. A shard's next_cursor is null only when nothing further matches (mc_page.h), so the
    merged one is null exactly when a one-shard service's would be.

    A route gathers when its schema says "gather" and its service has more than one shard; with
    one shard nothing changes (no extra member, no merge). */
#ifndef EDGE_GATHER_H
#define EDGE_GATHER_H

#include "edge_request.h"

//  True when q's route is a gathered list: its schema says so and its service has several shards.
bool edge_gather_wanted(const edge_req_t *q);

//  Sends the route's message with body to every shard at once and answers with the merged list.
//  A shard that does not answer (no live node, or not before the deadline) makes the answer 503
//  with Retry-After: a list missing a shard's items would look complete. A shard's own refusal
//  (an invalid cursor, a bad filter: every shard judges the same) is the answer, the lowest
//  shard's first.
void edge_gather_forward(edge_req_t *q, mc_str_t body);

//  How the shards' lists merge (from the route).
typedef struct {
    mc_gather_t order;      //  ascending or descending keys
    const char *sum;        //  or NULL: items of one key become one, with this integer summed
    bool array;             //  answer the bare array of items rather than a page
    int64_t limit;          //  items per page, 0 for no limit
} edge_gather_spec_t;

//  Merges the shards' reply bodies (n of them, in shard order) into out: a page {items,
//  next_cursor}, or an array when spec->array. Items of equal keys keep shard order. 0, or -1
//  when a body is not a keyed list ({items, keys of as many base64url strings, next_cursor
//  string or null}), with *why saying what was wrong; out is then untouched.
int edge_gather_merge(const edge_gather_spec_t *spec, const msgpack_object *bodies, size_t n, msgpack_packer *out,
                      const char **why);

#endif
