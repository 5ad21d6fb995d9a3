# scripts/bench.d/lib.sh — sourced by scripts/bench: logging, the processes the bench starts and
# stops, bounded waits, and wrk runs. Expects TMP, HERE, PY, THREADS, CONNS and DURATION set.

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FAILED: %s\n' "$*" >&2; exit 1; }

# Every process we start is recorded in PIDS (name:pid) and stopped at the end of its part and on
# any exit, including Ctrl-C. Background jobs of a non-interactive shell ignore SIGINT, so they
# must be stopped explicitly.
PIDS=()

# stop_procs: stops every process in PIDS, newest first, and empties PIDS. SIGTERM (a clean
# shutdown; nginx's master stops its workers), except: PostgreSQL's postmaster gets SIGINT (its
# "fast" shutdown; SIGTERM would wait for clients to leave) and perf SIGINT (it then stops the
# wrk it runs and prints its counts). SIGKILL for anything still alive after 5 s.
stop_procs() {
    local entry pid i sig
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid="${PIDS[i]#*:}"
        case "${PIDS[i]%%:*}" in postgres | perf) sig=INT ;; *) sig=TERM ;; esac
        kill -"$sig" "$pid" 2>/dev/null || true
    done
    for entry in "${PIDS[@]}"; do
        pid="${entry#*:}"
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "${entry%%:*} (pid $pid) did not stop within 5 s; killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# pid_of NAME: the pid of the running process started as NAME; fails when there is none.
pid_of() {
    local entry
    for entry in "${PIDS[@]}"; do
        [[ "${entry%%:*}" == "$1" ]] && { printf '%s' "${entry#*:}"; return 0; }
    done
    return 1
}

# children_of PID: the pids of PID's children now, one a line.
children_of() {
    awk -v p="$1" '{ pid = $1; sub(/.*\) /, ""); if ($2 == p) print pid }' /proc/[0-9]*/stat 2>/dev/null || true
}

# start NAME CMD...: runs CMD in the background with output in $TMP/NAME.log.
start() {
    local name="$1"; shift
    "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=("$name:$!")
}

# Prints the last lines of every log: what the lead needs when something did not start.
dump_logs() {
    local f
    for f in "$TMP"/*.log "$TMP"/nginx/error.log; do
        [[ -s "$f" ]] || continue
        printf '%s\n' "----- ${f#"$TMP"/} (last 20 lines)" >&2
        tail -n 20 "$f" >&2
    done
}

# all_alive: fails if any started process has exited (so waits fail fast, not at timeout).
all_alive() {
    local entry
    for entry in "${PIDS[@]}"; do
        if ! kill -0 "${entry#*:}" 2>/dev/null; then
            log "${entry%%:*} exited unexpectedly"
            return 1
        fi
    done
}

# wait_for DESC TIMEOUT_S CMD...: polls CMD every 50 ms until it succeeds; bounded, and aborts as
# soon as one of our processes dies.
wait_for() {
    local desc="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        all_alive || { dump_logs; die "$desc: a process died"; }
        ((SECONDS < deadline)) || { dump_logs; die "timed out after ${timeout}s waiting for $desc"; }
        sleep 0.05
    done
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1"; }
is_200() { [[ "$(http_status "$1")" == 200 ]]; }
nonempty() { [[ -s "$1" ]]; }
free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run_wrk NAME URL [CONNECTIONS [LUA_SCRIPT [SCRIPT_ARG]]]: stores the parsed figures in RES_<NAME>
# ("req_per_s p50_ms p99_ms requests non2xx connect read write timeout", see wrk_parse.awk) and
# keeps the raw output in $TMP/wrk-NAME.txt. Runs for WRK_DURATION (default DURATION), under the
# command prefix in the array WRK_WRAP when it is set (perf_pass uses it).
run_wrk() {
    local name="$1" url="$2" conns="${3:-$CONNS}" script=() args=() dur="${WRK_DURATION:-$DURATION}"
    local wrap=("${WRK_WRAP[@]+"${WRK_WRAP[@]}"}") as=wrk
    [[ -n "${4:-}" ]] && script=(-s "$4")
    [[ -n "${5:-}" ]] && args=(-- "$5")
    ((${#wrap[@]})) && as=perf
    log "${wrap[*]:+${wrap[*]} }wrk -t$THREADS -c$conns -d$dur --latency ${script[*]} $url ${args[*]}"
    # In the background + wait, so Ctrl-C/SIGTERM reach our trap at once instead of after wrk's
    # full duration; cleanup stops wrk (or the perf running it) like every other process.
    "${wrap[@]}" wrk -t"$THREADS" -c"$conns" -d"$dur" --latency "${script[@]}" "$url" "${args[@]}" \
        >"$TMP/wrk-$name.txt" 2>&1 &
    PIDS+=("$as:$!")
    wait "$!" || { cat "$TMP/wrk-$name.txt" >&2; die "wrk against $url"; }
    unset 'PIDS[${#PIDS[@]}-1]'
    printf -v "RES_$name" '%s' "$(awk -f "$HERE/wrk_parse.awk" "$TMP/wrk-$name.txt")"
    all_alive || { dump_logs; die "a process died during the $name run"; }
}

# Other work on this machine skews every figure; record how busy the CPUs were just before (our
# own processes are idle then). A 1 s sample of /proc/stat, because the load average lags by
# minutes and would still count our own seeding and build.
cpu_busy_pct() {
    local a b
    a="$(head -n1 /proc/stat)"; sleep 1; b="$(head -n1 /proc/stat)"
    awk -v a="$a" -v b="$b" 'BEGIN {
        split(a, x); split(b, y); total = 0
        for (i = 2; i <= 9; i++) total += y[i] - x[i]          # user..steal
        idle = (y[5] - x[5]) + (y[6] - x[6])                    # idle + iowait
        printf "%.0f", (total > 0 ? 100 * (total - idle) / total : 0)
    }'
}

# ms N: a latency to 3 decimals, or "?" when there is none.
ms() { if [[ "$1" =~ ^[0-9.]+$ ]]; then printf '%.3f' "$1"; else printf '?'; fi; }

# compare TARGET NEW BASE: this build against the baseline, from two wrk results (run_wrk's RES_*).
compare() {
    local a b
    read -r -a a <<<"$2"
    read -r -a b <<<"$3"
    awk -v t="$1" -v r1="${a[0]}" -v r0="${b[0]}" -v p1="${a[2]}" -v p0="${b[2]}" 'BEGIN {
        if (r0 + 0 <= 0 || p0 + 0 <= 0 || r1 == "NA" || p1 == "NA") { printf "%s, this build vs baseline: ?\n", t; exit }
        printf "%s, this build vs baseline: req/s x%.2f, p99 x%.2f\n", t, r1 / r0, p1 / p0
    }'
}
