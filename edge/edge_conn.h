/*  edge_conn: the edge's hold on its TCP connections, beside civetweb.

    Two defences civetweb 1.15 lacks (read from its src/civetweb.c at tag v1.15):
    - A cap on open connections per client address. civetweb's master thread accepts every
      connection and queues it for a worker thread (accept_new_connection, produce_socket); its
      first callback, init_connection, already runs on the worker. So this module defines
      accept() itself: the executable's definition is found before libc's for libcivetweb's
      call. A connection over the cap gets its 429 from the master thread and is closed there:
      it never takes a worker thread or a place in the queue.
    - A deadline for a whole request. civetweb times reads, not requests: read_message checks
      the time from the start of the request only after each poll (so headers may take up to
      twice request_timeout_ms), and every mg_read restarts pull_all's clock, so a body trickled
      a byte every 9 s is read for as long as the client likes. Here a watchdog thread shuts the
      reading side of a connection whose request is not complete by its deadline: civetweb's
      next read sees the end of the stream, the request gets 408 if any of it had arrived, and
      the connection closes.

    The deadline is request_ms after accept for the first request and after each response for
    the next, so an idle keep-alive connection is closed after request_ms too. While the edge
    serves a request (from its handler's start to its response, except while it reads the body)
    the deadline is held.

    Caveats: only connections accepted on the port named by edge_conn_listening are tracked;
    civetweb's access_control_list must stay unset (a connection it refused after accept would
    stay in the table). Every function is safe from any thread. */
#ifndef EDGE_CONN_H
#define EDGE_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <civetweb.h>

typedef struct {
    int max_per_client;     //  open connections allowed per client address; 0: no cap
    int request_ms;         //  a whole request (headers and body) must arrive within this
    size_t capacity;        //  connections tracked at once: civetweb's worker threads plus its queue
} edge_conn_config_t;

//  Allocates the table and starts the watchdog. Returns 0, or -1 when memory or the thread
//  cannot be had (nothing is started then).
int edge_conn_start(const edge_conn_config_t *config);

//  Connections accepted on the listening socket bound to port (the edge's) are tracked from now.
void edge_conn_listening(int port);

//  Stops the watchdog. Call before mg_stop: civetweb closes connections at stop without telling
//  us, and the watchdog must not shut a descriptor that another socket has since been given.
void edge_conn_stop(void);

//  civetweb's connection_close callback (runs before the socket is closed): frees the entry.
//  civetweb calls it for every connection a worker took, requests or not.
void edge_conn_closed(const struct mg_connection *conn);

//  reading true: the request's deadline applies while its body is read; false: it is held while
//  the request is served.
void edge_conn_reading(const struct mg_connection *conn, bool reading);

//  The response has been sent: the next request on this connection must arrive by now + request_ms.
void edge_conn_answered(const struct mg_connection *conn);

//  True when the request's deadline has passed (the watchdog shuts the reading side then).
bool edge_conn_expired(const struct mg_connection *conn);

#endif
