/*  edge_metrics: request counters and latency histograms, in Prometheus text format. */
#ifndef EDGE_METRICS_H
#define EDGE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

//  Route slots: one per generated route, then the edge's own pages, then "unmatched".
void edge_metrics_init(size_t routes);

//  Records one finished request on route slot r (edge_metrics_slot_* for non-route paths).
void edge_metrics_request(size_t slot, int status, uint64_t micros);
//  Records one broker round trip.
void edge_metrics_broker(uint64_t micros, int outcome);
void edge_metrics_inflight(int delta);
//  Counts a rejected input (kind: "json", "headers", "body_size", "media_type", "frame", "method"
//  (501), "target" (414), "timeout" (408: the request came too slowly), "connections" (refused
//  over the per-client cap)). Safe from any thread.
void edge_metrics_rejected(const char *kind);

size_t edge_metrics_slot_internal(void);
size_t edge_metrics_slot_unmatched(void);

//  Appends the exposition text; label names each route slot.
void edge_metrics_render(msgpack_sbuffer *out, const char *(*label)(size_t slot));

#endif
