/*  catalog_list: product.list, filtered pages over the secondary indexes. */
#ifndef CATALOG_LIST_H
#define CATALOG_LIST_H

#include "mc_actor.h"

int catalog_list(mc_ctx_t *ctx);

//  Index positions and records this thread has read for lists so far: what a page costs, which
//  must depend on the page and its filters, never on the size of the catalog.
uint64_t catalog_list_reads(void);

#endif
