/*  mc_gather: a list with no routing key, asked of many shards and merged into the answer one
    shard holding every item would give (the edge's gathered routes, edge/edge_gather.h).

    Each shard answers a keyed page: its items, the sort key of each ("keys", as cursors: "the
    items after K" means the same on every shard) and next_cursor. The merge keeps, in key
    order, the items up to the earliest point some shard has not looked past (the next_cursor
    of a shard that has more), and at most limit of them; next_cursor is then the key of the
    last item kept, or null when no shard has more. A shard's next_cursor is null only when
    nothing further matches (actors/mc_page.h), so the merged one is null exactly when a
    one-shard service's would be.

    A keyed merge (spec.keyed) is itself a keyed page that answers like one shard holding the
    merged shards' items: a node merges the pages of the shards it holds, and the edge merges
    the nodes' answers, with the same result as one merge of every shard.

    Many shards of a service on one node are asked in one request named "<service>.*<mask>",
    the mask the shards' numbers as bits in hexadecimal ("catalog.*ffff": shards 0 to 15); it
    goes to the owner of the lowest of them (mc_gather_route). */
#ifndef MC_GATHER_H
#define MC_GATHER_H

#include "mc_dir.h"
#include "mc_schema.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

//  How the shards' lists merge (from the route).
typedef struct {
    mc_gather_t order;      //  ascending or descending keys
    const char *sum;        //  or NULL: items of one key become one, with this integer summed
    bool array;             //  answer the bare array of items rather than a page
    bool keyed;             //  answer a keyed page (keys beside the items), to be merged again
    int64_t limit;          //  items per page, 0 for no limit
} mc_gather_spec_t;

//  What a merge kept, and why it stopped.
typedef struct {
    size_t items;           //  items kept
    bool truncated;         //  limit items kept, and more follow
    int bound;              //  not truncated: the body whose next_cursor ended the page (a shard
                            //  with more, which may hold items before those it did not send);
                            //  -1 when every shard sent all it has
} mc_gather_result_t;

//  Merges the shards' reply bodies (n of them, in shard order) into out: a page {items,
//  next_cursor} (with keys when spec->keyed), or an array when spec->array. Items of equal keys
//  keep shard order. 0, or -1 when a body is not a keyed list ({items, keys of as many
//  base64url strings, next_cursor string or null}), with *why saying what was wrong; out is
//  then untouched. result (or NULL) says what was kept.
int mc_gather_merge(const mc_gather_spec_t *spec, const msgpack_object *bodies, size_t n, msgpack_packer *out,
                    const char **why, mc_gather_result_t *result);

//  Items per page a gathered message asks for: body's limit, else the field's default; 0 when
//  the message has no limit (the whole list).
int64_t mc_gather_limit(const mc_msgdef_t *msg, const msgpack_object *body);

//  The spec of the gathered route of message type of service: 0, or -1 when no route gathers it.
//  limit from body (mc_gather_limit); keyed and array as a node's answer needs them: keyed,
//  never a bare array.
int mc_gather_node_spec(const char *service, mc_str_t type, const msgpack_object *body, mc_gather_spec_t *spec);

#define MC_GATHER_NAME_MAX (MC_DIR_SERVICE_MAX + 2 + MC_SHARDS_MAX / 4)

//  Writes "<service>.*<mask>" into out (MC_GATHER_NAME_MAX + 1 bytes).
void mc_gather_name(char *out, const char *service, uint64_t mask);

//  True when name is a gather name, with the service (MC_DIR_SERVICE_MAX + 1 bytes) and the
//  mask of its shards (never 0).
bool mc_gather_parse(const char *name, char *service, uint64_t *mask);

//  The shard a gather name is routed by ("catalog.0" for "catalog.*ffff"); name itself when it
//  is not a gather name. out holds MC_DIR_SERVICE_MAX + 1 bytes.
const char *mc_gather_route(const char *name, char *out);

#endif
