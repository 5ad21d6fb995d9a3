#include "mc_reads.h"

#include <pthread.h>

//  Few entries (a node's shards of services with shared reads), read on every request by one
//  thread and changed only when an actor starts or stops.
static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static zhashx_t *s_views;

void
mc_reads_publish(const char *name, mc_core_t *view)
{
    pthread_mutex_lock(&s_lock);
    if (!s_views)
        s_views = zhashx_new();
    if (s_views)
        zhashx_update(s_views, name, view);
    pthread_mutex_unlock(&s_lock);
}

void
mc_reads_withdraw(const char *name, mc_core_t *view)
{
    pthread_mutex_lock(&s_lock);
    if (s_views && zhashx_lookup(s_views, name) == view)
        zhashx_delete(s_views, name);
    pthread_mutex_unlock(&s_lock);
    //  nobody can acquire it now; whoever did holds a pin until they release it
    mc_store_exclusive(mc_core_store(view));
}

mc_core_t *
mc_reads_acquire(const char *name)
{
    pthread_mutex_lock(&s_lock);
    mc_core_t *view = s_views ? zhashx_lookup(s_views, name) : NULL;
    //  pinned before the lock goes, so a withdraw that follows waits for this read
    if (view)
        mc_store_pin(mc_core_store(view));
    pthread_mutex_unlock(&s_lock);
    return view;
}

void
mc_reads_release(mc_core_t *view)
{
    mc_store_unpin(mc_core_store(view));
}
