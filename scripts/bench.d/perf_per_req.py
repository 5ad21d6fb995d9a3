#!/usr/bin/env python3
"""Per-request counts from `perf stat -x, --per-thread` output, folded into processes.

usage: perf_per_req.py LABEL PERF_OUT TID_MAP REQUESTS REQ_PER_S
PERF_OUT lines are "comm-tid,count,unit,event,..."; TID_MAP lines "tid process". Prints one row
for all the processes together, then one per process, in the columns scripts/bench.d/perf.sh
heads: LABEL (first row only), process, syscalls/req, ctx-switches/req, migrations/req, req/s of the pass (first row only).
A count perf could not take ("<not counted>": the thread never ran) is 0; an event perf does not
support here is "?". Exits 1 with the reason when the output has no counts or REQUESTS is 0."""
import sys
from collections import defaultdict

EVENTS = ("raw_syscalls:sys_enter", "context-switches", "cpu-migrations")

label, perf_out, tid_map, requests, rps = sys.argv[1:6]
requests = int(requests)
if requests <= 0:
    sys.exit("the pass made no requests")
names = {}
with open(tid_map) as f:
    for line in f:
        tid, name = line.split()
        names[tid] = name

counts = defaultdict(lambda: defaultdict(int))   # process -> event -> count
unsupported = set()
seen = False
with open(perf_out) as f:
    for line in f:
        if line.startswith("#") or not line.strip():
            continue
        fields = line.rstrip("\n").split(",")
        if len(fields) < 4 or fields[3] not in EVENTS:
            continue
        seen = True
        thread, value, event = fields[0], fields[1], fields[3]
        process = names.get(thread.rsplit("-", 1)[-1], "other")
        if value.isdigit():
            counts[process][event] += int(value)
        elif "not supported" in value:
            unsupported.add(event)
if not seen:
    sys.exit("no counts in %s" % perf_out)


def row(first, process, c):
    cells = ["?" if e in unsupported else "%.2f" % (c[e] / requests) for e in EVENTS]
    print("%-22s %-10s %13s %17s %15s %12s" % (label if first else "", process, cells[0], cells[1], cells[2],
                                               "%.0f" % float(rps) if first else ""))


total = defaultdict(int)
for c in counts.values():
    for e, v in c.items():
        total[e] += v
row(True, "all", total)
# in the order the processes were started (the map lists them so), then any other
order = list(dict.fromkeys(names.values())) + ["other"]
for process in (n for n in order if n in counts):
    row(False, process, counts[process])
