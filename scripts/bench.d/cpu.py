#!/usr/bin/env python3
"""CPU time of each process of a benchmarked system over a run, from /proc.

usage: cpu.py snap OUT NAME=PID [NAME=PID ...]
       cpu.py table BEFORE AFTER COUNT UNIT PLANE VARS_OUT

snap writes a JSON snapshot to OUT: the machine's /proc/stat "cpu" line and, per NAME, the
process's utime+stime+cutime+cstime plus those of its live descendants (so a PostgreSQL
postmaster counts its backends, the ones still running and, through cutime, the ones that
exited). NAME "load" is taken alone, without its descendants: it is the bench's shell, whose
cutime holds the wrk or pgbench it ran and reaped, while its live children are the system.

table prints, from two snapshots, each process's CPU-seconds, its share of the machine and its
CPU-milliseconds per UNIT (COUNT of them were done), the system's total (every NAME but "load"),
the part of it spent in PLANE (comma-separated NAMEs, shown separately; "-" for none), the load
generator, the other work on the machine and idle. It writes "system_cpu_s plane_cpu_s
machine_cpu_s" to VARS_OUT. Exits 1 with the reason when a snapshot cannot be read."""
import json
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    # the command name may hold spaces and parentheses: the fields start after the last ')'
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()


def own_ticks(fields):
    return sum(int(x) for x in fields[11:15])       # utime stime cutime cstime


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(stat_fields(int(entry))[1])
            except (OSError, IndexError, ValueError):
                continue                            # exited while we looked
            kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_ticks(pid, kids):
    try:
        total = own_ticks(stat_fields(pid))
    except OSError:
        return 0
    for child in kids.get(pid, []):
        total += tree_ticks(child, kids)
    return total


def snap(out, pairs):
    kids = children_map()
    procs = {}
    for pair in pairs:
        name, pid = pair.split("=", 1)
        pid = int(pid)
        procs[name] = own_ticks(stat_fields(pid)) if name == "load" else tree_ticks(pid, kids)
    with open("/proc/stat") as f:
        machine = [int(x) for x in f.readline().split()[1:9]]   # user .. steal
    with open(out, "w") as f:
        json.dump({"machine": machine, "procs": procs}, f)


def table(before, after, count, unit, plane, vars_out):
    with open(before) as f:
        a = json.load(f)
    with open(after) as f:
        b = json.load(f)
    d = [y - x for x, y in zip(a["machine"], b["machine"])]
    machine = sum(d) / TICK                          # cores x seconds
    busy = (sum(d) - d[3] - d[4]) / TICK             # less idle and iowait
    procs = {n: (b["procs"][n] - a["procs"].get(n, 0)) / TICK for n in b["procs"]}
    plane = [] if plane == "-" else plane.split(",")
    system = {n: v for n, v in procs.items() if n != "load"}
    total = sum(system.values())
    plane_s = sum(v for n, v in system.items() if n in plane)
    load = procs.get("load", 0.0)
    other = max(0.0, busy - total - load)
    idle = max(0.0, machine - busy)

    def pct(v):
        return "%.1f%%" % (100 * v / machine) if machine > 0 else "?"

    def per(v):
        return "%.3f" % (1000 * v / count) if count > 0 else "?"

    fmt = "  %-34s %8s %12s %20s"
    print(fmt % ("process", "CPU-s", "% of machine", "CPU-ms per " + unit))
    print(fmt % ("-" * 34, "-" * 8, "-" * 12, "-" * 20))
    for n, v in system.items():
        print(fmt % (n, "%.2f" % v, pct(v), per(v)))
    print(fmt % ("all of them", "%.2f" % total, pct(total), per(total)))
    if plane:
        print(fmt % ("  of which " + " + ".join(plane), "%.2f" % plane_s, pct(plane_s), per(plane_s)))
        print(fmt % ("  without " + " + ".join(plane), "%.2f" % (total - plane_s), pct(total - plane_s),
                     per(total - plane_s)))
    print(fmt % ("load generator (+ bench shell)", "%.2f" % load, pct(load), per(load)))
    print(fmt % ("other work on this machine", "%.2f" % other, pct(other), ""))
    print(fmt % ("idle", "%.2f" % idle, pct(idle), ""))
    with open(vars_out, "w") as f:
        f.write("%.4f %.4f %.2f\n" % (total, plane_s, machine))


if __name__ == "__main__":
    try:
        if len(sys.argv) >= 3 and sys.argv[1] == "snap":
            snap(sys.argv[2], sys.argv[3:])
        elif len(sys.argv) == 8 and sys.argv[1] == "table":
            table(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6], sys.argv[7])
        else:
            sys.exit(__doc__)
    except (OSError, ValueError, KeyError) as e:
        sys.exit("cpu.py: %s" % e)
