/*  edge_pages: what the edge answers itself: /healthz, /readyz, /metrics, the OpenAPI document
    and the /docs page. */
#ifndef EDGE_PAGES_H
#define EDGE_PAGES_H

#include "edge_response.h"

//  Loads the Swagger UI assets from dir (may be NULL: /docs then renders a plain page).
void edge_pages_init(const char *docs_dir);

//  Answers path if it is one of the edge's own pages; false to let routing go on.
bool edge_pages_handle(edge_reply_t *r, const struct mg_request_info *ri, const char *path);

#endif
