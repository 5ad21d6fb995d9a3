/*  edge_http: maps HTTP requests to actor messages through the generated route table, and
    actor replies back to HTTP. Hardening lives here: header sanity, body limits, JSON limits. */
#ifndef EDGE_HTTP_H
#define EDGE_HTTP_H

#include <civetweb.h>

#define EDGE_BODY_MAX (1024 * 1024)
//  civetweb's request buffer (max_request_size): the request line and headers must fit in it.
#define EDGE_HTTP_HEAD_MAX 65536
#define EDGE_HTTP_HEAD_MAX_TEXT "64 KiB"

typedef enum { EDGE_LOG_OFF, EDGE_LOG_ERRORS, EDGE_LOG_ALL } edge_log_t;

typedef struct {
    edge_log_t access_log;      //  which requests get a log line (5xx always do)
    int timeout_ms;             //  how long to wait for an actor
    const char *cors_origin;    //  allowed origins, comma-separated ("*" for any), or NULL: no CORS
    const char *docs_dir;       //  Swagger UI assets, or NULL
} edge_config_t;

void edge_http_init(const edge_config_t *config);

//  civetweb request handler for every path.
int edge_http_handle(struct mg_connection *conn, void *cbdata);

//  civetweb's http_error callback: its own refusals (an unparseable request or one over
//  EDGE_HTTP_HEAD_MAX, a method it does not know, a request the deadline cut short) as RFC 9457
//  problems.
int edge_http_error(struct mg_connection *conn, int status, const char *errmsg);

#endif
