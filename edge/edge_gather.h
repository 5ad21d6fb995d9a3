/*  edge_gather: a list with no routing key (products, categories, orders, users, stock,
    notifications), asked of every shard of its service at once and merged into the answer one
    shard holding every item would give (mc_gather.h: each shard sends its items' sort keys,
    mc_gather_field, and the pages merge by them).

    The shards one node owns are asked in one request ("catalog.*ffff"): the node reads each
    shard's page in place and answers their merge, one message each way instead of one per
    shard. A node that cannot (a shard moved, or one its front does not read in place) says so
    and the edge asks those shards one by one; after such a refusal it asks that service shard
    by shard for a while.

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

#endif
