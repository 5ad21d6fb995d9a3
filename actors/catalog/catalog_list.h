/*  catalog_list: product.list, filtered pages over the secondary indexes. */
#ifndef CATALOG_LIST_H
#define CATALOG_LIST_H

#include "mc_actor.h"

int catalog_list(mc_ctx_t *ctx);

#endif
