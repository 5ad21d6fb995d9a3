/*  mc_reads: the shards of this node whose reads its front may run itself.

    A product GET used to cross two more threads inside the node: the front handed it to the
    shard's actor and took the reply back. LMDB lets any thread read a committed state, and a
    read changes nothing, so for a service whose reads are pure (mc_service_t.shared_reads) the
    actor publishes a view of its core here and the front runs the read in place. A read after
    an acknowledged write still sees it: the write's reply left only after its commit.

    The actor publishes after it opens its store and withdraws before it closes it; withdrawing
    waits for a read in flight. The front acquires a view per read: the store stays pinned
    (mc_store_pin) until it releases it. */
#ifndef MC_READS_H
#define MC_READS_H

#include "mc_actor.h"

//  name: "<service>.<shard>". Replaces what was published under name before.
void mc_reads_publish(const char *name, mc_core_t *view);

//  Removes view (when it is still the one published under name) and waits until no read of it
//  is in flight.
void mc_reads_withdraw(const char *name, mc_core_t *view);

//  The view published under name with its store pinned, or NULL.
mc_core_t *mc_reads_acquire(const char *name);
void mc_reads_release(mc_core_t *view);

#endif
