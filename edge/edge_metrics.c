#include "edge_metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double s_bounds_ms[] = { 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 };
#define BUCKETS (sizeof s_bounds_ms / sizeof *s_bounds_ms)

typedef struct {
    atomic_ullong buckets[BUCKETS + 1];     //  last one is +Inf
    atomic_ullong sum_us;                   //  total latency
    atomic_ullong count;                    //  observations
} histogram_t;

typedef struct {
    atomic_ullong by_class[6];              //  1xx..5xx, by status / 100
    histogram_t latency;                    //  request latency
} route_t;

static route_t *s_routes;
static size_t s_nroutes;
static histogram_t s_broker;
static atomic_ullong s_broker_outcomes[3];
static atomic_llong s_inflight;

static const char *s_reject_kinds[] = { "json", "headers", "body_size", "media_type", "frame", "method", "target",
                                        "timeout", "connections" };
#define REJECT_KINDS (sizeof s_reject_kinds / sizeof *s_reject_kinds)
static atomic_ullong s_rejected[REJECT_KINDS];

void
edge_metrics_init(size_t routes)
{
    s_nroutes = routes + 2;
    s_routes = calloc(s_nroutes, sizeof *s_routes);
}

size_t
edge_metrics_slot_internal(void)
{
    return s_nroutes - 2;
}

size_t
edge_metrics_slot_unmatched(void)
{
    return s_nroutes - 1;
}

static void
s_observe(histogram_t *h, uint64_t micros)
{
    double ms = (double) micros / 1000.0;
    size_t b = 0;
    while (b < BUCKETS && ms > s_bounds_ms[b])
        b++;
    atomic_fetch_add_explicit(&h->buckets[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, micros, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
}

void
edge_metrics_request(size_t slot, int status, uint64_t micros)
{
    if (slot >= s_nroutes)
        slot = s_nroutes - 1;
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    atomic_fetch_add_explicit(&s_routes[slot].by_class[cls], 1, memory_order_relaxed);
    s_observe(&s_routes[slot].latency, micros);
}

void
edge_metrics_broker(uint64_t micros, int outcome)
{
    s_observe(&s_broker, micros);
    if (outcome >= 0 && outcome < 3)
        atomic_fetch_add_explicit(&s_broker_outcomes[outcome], 1, memory_order_relaxed);
}

void
edge_metrics_inflight(int delta)
{
    atomic_fetch_add_explicit(&s_inflight, delta, memory_order_relaxed);
}

void
edge_metrics_rejected(const char *kind)
{
    for (size_t i = 0; i < REJECT_KINDS; i++)
        if (strcmp(kind, s_reject_kinds[i]) == 0)
            atomic_fetch_add_explicit(&s_rejected[i], 1, memory_order_relaxed);
}

static void
s_printf(msgpack_sbuffer *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
s_printf(msgpack_sbuffer *out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > 0)
        msgpack_sbuffer_write(out, line, (size_t) n < sizeof line ? (size_t) n : sizeof line - 1);
}

static void
s_histogram(msgpack_sbuffer *out, const char *name, const char *labels, histogram_t *h)
{
    unsigned long long cum = 0;
    const char *sep = *labels ? "," : "";
    for (size_t b = 0; b <= BUCKETS; b++) {
        cum += atomic_load(&h->buckets[b]);
        if (b < BUCKETS)
            s_printf(out, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, s_bounds_ms[b] / 1000.0, cum);
        else
            s_printf(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, cum);
    }
    s_printf(out, "%s_sum{%s} %.6f\n", name, labels, (double) atomic_load(&h->sum_us) / 1e6);
    s_printf(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long) atomic_load(&h->count));
}

void
edge_metrics_render(msgpack_sbuffer *out, const char *(*label)(size_t slot))
{
    s_printf(out, "# HELP mercato_http_requests_total HTTP requests by route and status class.\n"
                  "# TYPE mercato_http_requests_total counter\n");
    for (size_t r = 0; r < s_nroutes; r++)
        for (int c = 1; c <= 5; c++)
            s_printf(out, "mercato_http_requests_total{route=\"%s\",code=\"%dxx\"} %llu\n", label(r), c,
                     (unsigned long long) atomic_load(&s_routes[r].by_class[c]));
    s_printf(out, "# HELP mercato_http_request_duration_seconds HTTP request latency by route.\n"
                  "# TYPE mercato_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < s_nroutes; r++) {
        char labels[300];
        snprintf(labels, sizeof labels, "route=\"%s\"", label(r));
        s_histogram(out, "mercato_http_request_duration_seconds", labels, &s_routes[r].latency);
    }
    s_printf(out, "# HELP mercato_broker_roundtrip_seconds Edge to actor and back, through the broker.\n"
                  "# TYPE mercato_broker_roundtrip_seconds histogram\n");
    s_histogram(out, "mercato_broker_roundtrip_seconds", "", &s_broker);
    static const char *outcomes[] = { "reply", "unavailable", "timeout" };
    s_printf(out, "# TYPE mercato_broker_calls_total counter\n");
    for (int i = 0; i < 3; i++)
        s_printf(out, "mercato_broker_calls_total{outcome=\"%s\"} %llu\n", outcomes[i],
                 (unsigned long long) atomic_load(&s_broker_outcomes[i]));
    s_printf(out, "# HELP mercato_http_inflight_requests Requests being served now.\n"
                  "# TYPE mercato_http_inflight_requests gauge\nmercato_http_inflight_requests %lld\n",
             (long long) atomic_load(&s_inflight));
    s_printf(out, "# HELP mercato_http_rejected_total Malformed or oversized input refused at the edge.\n"
                  "# TYPE mercato_http_rejected_total counter\n");
    for (size_t i = 0; i < REJECT_KINDS; i++)
        s_printf(out, "mercato_http_rejected_total{kind=\"%s\"} %llu\n", s_reject_kinds[i],
                 (unsigned long long) atomic_load(&s_rejected[i]));
}
