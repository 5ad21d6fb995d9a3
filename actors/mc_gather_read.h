/*  mc_gather_read: the node's side of a gathered list (common/mc_gather.h). Its front holds a
    view of each shard asked (mc_reads.h) and answers one keyed page, the merge of theirs.

    Asking each of n shards for the whole limit reads n times the items the answer keeps (16
    pages of 20 for 20). So each shard is asked first for a small page, about twice its share
    (2 x limit / n, at least 2), and the merge tells whether that was enough: when it keeps
    fewer than limit items because one shard's page ended too soon (its next_cursor bounds the
    merge), that shard alone is asked for a whole page more, after its cursor, and the merge
    runs again. A shard's pages one after another are one longer page of the same shard, so the
    answer is the one the whole pages would give. */
#ifndef MC_GATHER_READ_H
#define MC_GATHER_READ_H

#include "mc_actor.h"

#include <msgpack.h>

//  Reads the request in frame of each of the n views (the shards of service that one request
//  named, in shard order) and packs the reply envelope into out: the merged keyed page, the
//  first refusal in shard order (every shard judges a bad cursor or filter alike), or a 500
//  when the pages do not merge. 0, or 1 when a read must run in its actor instead (out is then
//  meaningless, and the asker asks shard by shard).
int mc_gather_read(mc_core_t *const *views, unsigned n, const char *service, mc_peer_t role, const void *frame,
                   size_t len, uint64_t now_ms, msgpack_sbuffer *out);

#endif
