# scripts/bench.d/perf.sh — sourced by scripts/bench: system calls, context switches and CPU
# migrations per request of Mercato's own processes, from `perf stat -p` over a wrk pass.
#
# The counts come from a pass of their own, right after the measured run of the same target:
# counting raw_syscalls:sys_enter puts every system call on the kernel's slower traced path, so a
# measured run under perf would understate req/s and overstate latency. Per process (-p with
# every Mercato pid, --per-thread folded back into processes), not -a: the machine is shared and
# -a would count the other sessions' work too.

PERF_EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations

# perf_check: sets PERF_OK=1 when perf can count PERF_EVENTS for our own processes here, else
# PERF_OK=0 and PERF_WHY to the reason (printed in the report in place of the figures).
perf_check() {
    PERF_OK=0 PERF_WHY=""
    if [[ "${BENCH_PERF:-1}" == 0 ]]; then
        PERF_WHY="BENCH_PERF=0"
    elif ! command -v perf >/dev/null; then
        PERF_WHY="perf is not installed (Debian package linux-perf)"
    else
        sleep 5 &
        local probe=$!
        if ! perf stat -x, -e "$PERF_EVENTS" -p "$probe" -o "$TMP/perf-check.txt" -- true 2>"$TMP/perf-check.err"; then
            PERF_WHY="perf stat failed: $(grep -v '^ *$' "$TMP/perf-check.err" | head -n1)"
            PERF_WHY+=" (kernel.perf_event_paranoid=$(cat /proc/sys/kernel/perf_event_paranoid 2>/dev/null || echo ?), uid $(id -u))"
        elif grep -q 'not supported' "$TMP/perf-check.txt"; then
            PERF_WHY="perf cannot count $(awk -F, '/not supported/ {print $3}' "$TMP/perf-check.txt" | paste -sd, -) here"
        else
            PERF_OK=1
        fi
        kill "$probe" 2>/dev/null || true
        wait "$probe" 2>/dev/null || true
    fi
    ((PERF_OK)) || log "per-request system calls and context switches: not measured: $PERF_WHY"
}

# perf_pass NAME LABEL URL [CONNECTIONS [LUA_SCRIPT [SCRIPT_ARG]]]: one more wrk pass of the target
# (BENCH_PERF_DURATION, default BENCH_DURATION) under perf stat -p <every process in MC_PROCS,
# "name=pid">; appends LABEL's rows to $TMP/perf.rows and leaves wrk's figures in RES_perf_NAME.
perf_pass() {
    local name="$1" label="$2"; shift 2
    ((PERF_OK)) || return 0
    local entry pids="" t
    : >"$TMP/perf-$name.map"
    for entry in "${MC_PROCS[@]}"; do
        pids+="${pids:+,}${entry#*=}"
        # tid -> process: --per-thread reports threads; threads started later count in their parent's
        for t in /proc/"${entry#*=}"/task/*; do
            printf '%s %s\n' "${t##*/}" "${entry%%=*}" >>"$TMP/perf-$name.map"
        done
    done
    WRK_WRAP=(perf stat -x, --per-thread -e "$PERF_EVENTS" -p "$pids" -o "$TMP/perf-$name.txt" --)
    WRK_DURATION="${PERF_DURATION}" run_wrk "perf_$name" "$@"
    WRK_WRAP=()
    local res_var="RES_perf_$name" rps requests
    read -r rps _ _ requests _ <<<"${!res_var}"
    "$PY" "$HERE/perf_per_req.py" "$label" "$TMP/perf-$name.txt" "$TMP/perf-$name.map" "$requests" "$rps" \
        >>"$TMP/perf.rows" 2>"$TMP/perf-$name.err" \
        || printf '%-22s could not read perf output: %s\n' "$label" "$(tail -n1 "$TMP/perf-$name.err")" >>"$TMP/perf.rows"
}

# perf_report: the table of every perf_pass so far, or why there is none.
perf_report() {
    echo
    if ((!PERF_OK)); then
        echo "syscalls/req, ctx-switches/req: not measured ($PERF_WHY)"
        return 0
    fi
    echo "per request, the server's own processes only (perf stat -p, $PERF_EVENTS, --per-thread; a pass of its own of $PERF_DURATION per target):"
    printf '%-22s %-10s %13s %17s %15s %12s\n' "target" "process" "syscalls/req" "ctx-switches/req" "migrations/req" "pass req/s"
    printf '%-22s %-10s %13s %17s %15s %12s\n' "----------------------" "----------" "-------------" "-----------------" "---------------" "------------"
    cat "$TMP/perf.rows" 2>/dev/null || true
}
