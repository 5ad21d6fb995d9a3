# scripts/bench.d/system.sh — sourced by scripts/bench: starts Mercato's processes the way
# scripts/up does (same binaries, flags and environment; keep the two in step when the process
# layout changes), but unsupervised (a process that dies fails the run instead of being
# restarted), on a free HTTP port, from a given build.
#
# MERCATO_SHARDS and every other MERCATO_* setting pass through from the caller's environment.
# The bench depends on no process's internals: it waits for files the processes write
# (--port-file, --bootstrap-file) and for the edge's /readyz.

MC_ACTORS=catalog,identity,inventory,orders,cart,payments,shipping,notifications

# shards_for LABEL / shards_restore: the baseline build runs with BENCH_BASELINE_SHARDS when set
# (a build from before sharded data directories runs one shard of each service: "1"); every
# other run with the caller's MERCATO_SHARDS.
shards_for() {
    SAVED_SHARDS="${MERCATO_SHARDS-__unset__}"
    if [[ "$1" == base && -n "${BENCH_BASELINE_SHARDS:-}" ]]; then export MERCATO_SHARDS="$BENCH_BASELINE_SHARDS"; fi
}
shards_restore() {
    if [[ "$SAVED_SHARDS" == __unset__ ]]; then unset MERCATO_SHARDS; else export MERCATO_SHARDS="$SAVED_SHARDS"; fi
}

# mercato_start BIN DIR KAFKA [NODE_ENV...]: starts the system from BIN with its state in DIR:
#   kafka-dev (KAFKA=kafka), broker, node with every actor, edge; then, after readiness, the relay
#   (KAFKA=kafka only: without a Kafka it has nowhere to publish). NODE_ENV are NAME=VALUE
#   settings for the node alone. Sets EDGE (the base URL) and MC_PROCS ("name=pid", one per
#   process, for the CPU and perf figures).
mercato_start() {
    local bin="$1" dir="$2" kafka="$3"; shift 3
    local node_env=("$@") first=${#PIDS[@]}
    mkdir -p "$dir"
    export MERCATO_DATA_DIR="$dir" MERCATO_KEYS_DIR="$dir/plane"
    "$bin/mercato-keys" "$MERCATO_KEYS_DIR" >"$TMP/keys.log" 2>&1 || { cat "$TMP/keys.log" >&2; die "mercato-keys"; }
    local broker="ipc://$dir/broker.sock"
    if [[ "$kafka" == kafka ]]; then
        rm -f "$dir/kafka.bootstrap"
        start kafka-dev "$bin/mercato-kafka-dev" --bootstrap-file "$dir/kafka.bootstrap"
        wait_for "kafka bootstrap file" 20 nonempty "$dir/kafka.bootstrap"
    fi
    start broker "$bin/mercato-broker" --bind "$broker"
    # as scripts/up: the node takes requests on a unix socket (an older build ignores the variable)
    start node env MERCATO_NODE_BIND="ipc://$dir/node.sock" "${node_env[@]+"${node_env[@]}"}" "$bin/mercato-node" --broker "$broker" --data "$dir" \
        --actors "$MC_ACTORS" --node-id node-1
    rm -f "$dir/edge.port"
    start edge "$bin/mercato-edge" --port 0 --port-file "$dir/edge.port" --broker "$broker"
    wait_for "edge port file" 20 nonempty "$dir/edge.port"
    EDGE="http://127.0.0.1:$(tr -d '[:space:]' <"$dir/edge.port")"
    # /readyz is 200 only when every routed service has a node
    wait_for "$EDGE/readyz == 200" 60 is_200 "$EDGE/readyz"
    # after readiness, as the e2e harness does: the node has created the environments it reads
    [[ "$kafka" == kafka ]] && start relay "$bin/mercato-relay" --data "$dir" --bootstrap-file "$dir/kafka.bootstrap"
    # every process started above, whatever the layout (`env VAR=... prog` execs prog: the pid
    # is the program's own)
    MC_PROCS=()
    local i
    for ((i = first; i < ${#PIDS[@]}; i++)); do MC_PROCS+=("${PIDS[i]%%:*}=${PIDS[i]#*:}"); done
    log "Mercato ($bin) ready at $EDGE; MERCATO_SHARDS=${MERCATO_SHARDS:-(build default)}"
}
