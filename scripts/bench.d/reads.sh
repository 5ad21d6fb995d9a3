# scripts/bench.d/reads.sh — sourced by scripts/bench: part "reads", HTTP reads of Mercato
# against a static-file nginx baseline, plus login, JWT verification, relay throughput and
# write-to-Kafka latency.

# reads_start LABEL BIN: seeds PRODUCTS products into a data directory of LABEL's own (into the
# shards MERCATO_SHARDS gives the catalog) and starts the system from BIN without Kafka or relay
# (they would drain the seeded outbox during the measurement). Sets EDGE, IDS (the seeded ids),
# MC_PROCS and DATA.
reads_start() {
    local label="$1" bin="$2"
    DATA="$TMP/reads-$label"
    IDS="$TMP/ids-$label.txt"
    mkdir -p "$DATA"
    shards_for "$label"
    log "seeding $PRODUCTS products into $DATA ($label build, MERCATO_SHARDS=${MERCATO_SHARDS:-default})"
    "$bin/catalog-seed" "$DATA" "$PRODUCTS" 50 "$IDS" >"$TMP/seed-$label.log" 2>&1 \
        || { tail -n 5 "$TMP/seed-$label.log" >&2; die "catalog-seed ($label build)"; }
    if [[ ! -s "$IDS" ]]; then
        # an older catalog-seed: no id list, and every product in shard 0 whatever MERCATO_SHARDS
        log "the $label build's catalog-seed writes no id list (it predates sharded seeding); seeding with this build's"
        rm -rf "$DATA"
        mkdir -p "$DATA"
        "$BIN/catalog-seed" "$DATA" "$PRODUCTS" 50 "$IDS" >"$TMP/seed-$label.log" 2>&1 \
            || { tail -n 5 "$TMP/seed-$label.log" >&2; die "catalog-seed (this build's, for the $label build)"; }
    fi
    [[ "$(wc -l <"$IDS")" -eq "$PRODUCTS" ]] || die "$(wc -l <"$IDS") product ids in $IDS, expected $PRODUCTS ($label build)"
    mercato_start "$bin" "$DATA" nokafka
    shards_restore
    # A few random seeded ids must be found where the GET looks: a seed into the wrong shards
    # would otherwise be timed as fast 404s.
    local id
    for id in $(shuf -n 20 "$IDS"); do
        [[ "$(http_status "$EDGE/api/v1/products/$id")" == 200 ]] \
            || { dump_logs; die "GET /api/v1/products/$id of a seeded product is not 200 ($label build; MERCATO_SHARDS the same for catalog-seed and node?)"; }
    done
}

# reads_measure LABEL: product GET (random seeded ids) and the filtered list, each measured, then
# each once more under perf. Sets RES_get_LABEL, RES_list_LABEL, LIST_ITEMS[LABEL].
declare -A LIST_ITEMS
reads_measure() {
    local label="$1" list_url="$EDGE/api/v1/products?category=$CATEGORY&limit=20"
    # The list target must really be a full page, or we would be timing a short answer.
    LIST_ITEMS[$label]="$(curl -sf --max-time 5 "$list_url" \
        | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)["items"]))')" \
        || { dump_logs; die "GET $list_url failed"; }
    [[ "${LIST_ITEMS[$label]}" == 20 ]] || log "WARNING: filtered list returned ${LIST_ITEMS[$label]} items ($label build), expected 20"
    run_wrk "get_$label" "$EDGE" "$CONNS" "$HERE/product_get.lua" "$IDS"
    run_wrk "list_$label" "$list_url"
    perf_pass "get_$label" "product GET ($label)" "$EDGE" "$CONNS" "$HERE/product_get.lua" "$IDS"
    perf_pass "list_$label" "filtered list ($label)" "$list_url"
}

# nginx_start: serves one seeded product's body (as the edge returns it) at /product.json and at
# every /api/v1/products/{id}. Sets NGINX_URL (the one URL) and NGINX_BASE.
nginx_start() {
    mkdir -p "$TMP/www" "$TMP/nginx"
    curl -sf --max-time 5 -o "$TMP/www/product.json" "$EDGE/api/v1/products/$(head -n1 "$IDS")" \
        || { dump_logs; die "GET of a seeded product did not return 2xx"; }
    # mktemp -d is 0700; when run as root nginx's workers run as "nobody" and must be able to
    # traverse to the file.
    chmod 0755 "$TMP" "$TMP/www"
    chmod 0644 "$TMP/www/product.json"
    local port; port="$(free_port)"
    sed -e "s|@TMP@|$TMP|g" -e "s|@PORT@|$port|g" -e "s|@WORKERS@|$NGINX_WORKERS|g" \
        "$HERE/nginx.conf.in" >"$TMP/nginx/nginx.conf"
    # -e: the startup error log, before the config's error_log applies (default /var/log/nginx).
    start nginx "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
    NGINX_BASE="http://127.0.0.1:$port"
    NGINX_URL="$NGINX_BASE/product.json"
    wait_for "$NGINX_URL == 200" 20 is_200 "$NGINX_URL"
    cmp -s "$TMP/www/product.json" <(curl -sf "$NGINX_URL") || die "nginx serves a different body"
    cmp -s "$TMP/www/product.json" <(curl -sf "$NGINX_BASE/api/v1/products/$(tail -n1 "$IDS")") \
        || die "nginx serves a different body at /api/v1/products/{id}"
}

# reads_extras: login under load, JWT verification, relay throughput, write-to-Kafka latency, on
# the running system. Sets RES_login, JWT_LINE, RELAY_LINE, LATENCY_LINE.
reads_extras() {
    # Sign-in under 20 concurrent clients: argon2id (~25 ms of CPU each, two at a time) dominates.
    curl -sf --max-time 10 -o /dev/null -H 'Content-Type: application/json' \
        -d '{"email":"bench@mercato.test","password":"bench password 42","name":"Bench"}' \
        "$EDGE/api/v1/auth/register" || { dump_logs; die "could not register the bench user"; }
    cat >"$TMP/login.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"bench@mercato.test","password":"bench password 42"}'
LUA
    run_wrk login "$EDGE/api/v1/auth/login" 20 "$TMP/login.lua"
    JWT_LINE="$("$BIN/edge_auth_bench" 20000 2>/dev/null | tail -n1)" || JWT_LINE="jwt verify: bench failed"

    # Relay throughput from a backlog: seeding left one product.created per product in the
    # catalog shards' outboxes; time the relay emptying them into the development Kafka.
    outbox_entries() {
        local d n=0 e
        for d in "$DATA"/catalog/*/; do
            e="$(mdb_stat -s outbox "$d" | awk '/Entries/ {print $2}')"
            n=$((n + ${e:-0}))
        done
        printf '%d' "$n"
    }
    # outside the data dir: the node's consumers must not connect during the read runs
    start kafka-dev "$BIN/mercato-kafka-dev" --bootstrap-file "$TMP/kafka.bootstrap"
    wait_for "kafka bootstrap file" 20 nonempty "$TMP/kafka.bootstrap"
    local backlog t0 t1
    backlog="$(outbox_entries)"
    t0="$(date +%s.%N)"
    start relay "$BIN/mercato-relay" --data "$DATA" --bootstrap-file "$TMP/kafka.bootstrap"
    drained() { [[ "$(outbox_entries)" == 0 ]]; }
    wait_for "the outbox to drain" 300 drained
    t1="$(date +%s.%N)"
    RELAY_LINE="$(awk -v n="$backlog" -v a="$t0" -v b="$t1" \
        'BEGIN { printf "relay: %d events from a backlog in %.2f s = %.0f events/s (goal: at least 50,000/s)", n, b - a, n / (b - a) }')"

    # Write-to-Kafka latency: product writes at 500/s, each timed from its 201 to a consumer
    # seeing its product.created.
    log "write-to-kafka latency at 500 writes/s"
    LATENCY_LINE="$("$PY" "$HERE/kafka_latency.py" "$EDGE" "$(<"$TMP/kafka.bootstrap")" "$MERCATO_ADMIN_EMAIL" \
        "$MERCATO_ADMIN_PASSWORD" 500 "$DURATION_S" 2>"$TMP/latency.err")" \
        || LATENCY_LINE="write-to-kafka: failed ($(tail -n1 "$TMP/latency.err"))"
}

# reads_row LABEL RESULT GOAL_KIND: one line of the table; GOAL_KIND is none | get | list. Ratios
# are to NGINX_RPS. Sets ERRORS=1 when the run had errors or no figures.
reads_row() {
    local label="$1" kind="$3"
    local rps p50 p99 reqs non2xx ce re we te
    read -r rps p50 p99 reqs non2xx ce re we te <<<"$2"
    awk -v label="$label" -v kind="$kind" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
        -v nrps="$NGINX_RPS" -v non2xx="$non2xx" -v ce="$ce" -v re="$re" -v we="$we" -v te="$te" '
    BEGIN {
        ratio = (nrps + 0 > 0 && rps != "NA") ? sprintf("%.1f%%", 100 * rps / nrps) : "-"
        if (kind == "get")
            goal = (nrps + 0 > 0 && rps >= 0.40 * nrps && p99 < 5) ? "PASS" : "MISS"
        else if (kind == "list")
            goal = (p99 < 10) ? "PASS" : "MISS"
        else
            goal = "-"
        errs = non2xx + ce + re + we + te
        if (rps == "NA" || p50 == "NA" || p99 == "NA") {
            # wrk printed nothing we could parse: say so instead of printing zeros
            printf "%-26s %12s %9s %9s %8s  %-13s %s\n", label, "?", "?", "?", "-", "NO DATA", "unparsable wrk output"
            exit 1
        }
        if (errs > 0) {
            goal = goal " (ERRORS)"
            note = sprintf("non-2xx %d, socket connect %d read %d write %d timeout %d", non2xx, ce, re, we, te)
        } else note = "0 errors"
        printf "%-26s %12.0f %9.3f %9.3f %8s  %-13s %s\n", label, rps, p50, p99, ratio, goal, note
    }' || ERRORS=1
    # Any error makes the figures suspect (e.g. fast 5xx answers); mark the run.
    (( non2xx + ce + re + we + te == 0 )) || ERRORS=1
}

part_reads() {
    : >"$TMP/perf.rows"
    reads_start new "$BIN"
    nginx_start
    # Measurements one after another, so they never compete for the cores.
    BUSY_BEFORE="$(cpu_busy_pct)"
    run_wrk nginx "$NGINX_URL"
    run_wrk nginx_ids "$NGINX_BASE" "$CONNS" "$HERE/product_get.lua" "$IDS"
    reads_measure new
    # nginx's own counts, for reference: its master and the workers it has forked
    local mercato=("${MC_PROCS[@]}") worker
    MC_PROCS=("nginx=$(pid_of nginx)")
    for worker in $(children_of "$(pid_of nginx)"); do MC_PROCS+=("nginx=$worker"); done
    perf_pass nginx_ids "nginx, random ids" "$NGINX_BASE" "$CONNS" "$HERE/product_get.lua" "$IDS"
    MC_PROCS=("${mercato[@]}")
    reads_extras
    stop_procs
    if [[ -n "$BASELINE_BIN" ]]; then
        reads_start base "$BASELINE_BIN"
        BUSY_BASE="$(cpu_busy_pct)"
        reads_measure base
        stop_procs
    fi

    ERRORS=0
    NGINX_RPS="${RES_nginx_ids%% *}"
    echo
    echo "Mercato read benchmark: wrk -t$THREADS -c$CONNS -d$DURATION --latency, $PRODUCTS products, $(nproc) cores, MERCATO_SHARDS=${MERCATO_SHARDS:-(build default)}"
    echo "Mercato (Release) as scripts/up runs it: broker, one node with every actor, edge; $BIN"
    [[ -n "$BASELINE_BIN" ]] && echo "baseline: the same from $BASELINE_BIN (CPU busy with other work just before: ${BUSY_BASE}%)"
    echo "nginx $("$NGINX" -v 2>&1 | sed 's|.*/||'), worker_processes $NGINX_WORKERS$([[ $NGINX_WORKERS == auto ]] && echo " ($(nproc))"), one static file (sendfile off + open_file_cache, its fastest setup for a small body here)"
    echo "CPU busy with other work just before the runs: ${BUSY_BEFORE}% (well above 0 means contended figures)"
    echo "goals: product GET >= 40% of nginx req/s (same wrk script: random ids) and p99 < 5 ms; filtered list p99 < 10 ms"
    echo
    printf "%-26s %12s %9s %9s %8s  %-13s %s\n" "target" "req/s" "p50 ms" "p99 ms" "vs nginx" "goal" "errors"
    printf "%-26s %12s %9s %9s %8s  %-13s %s\n" "--------------------------" "------------" "---------" "---------" "--------" "-------------" "------"
    reads_row "nginx, one URL" "$RES_nginx" none
    reads_row "nginx, random ids" "$RES_nginx_ids" none
    local errors_nginx=$ERRORS
    reads_row "product GET" "$RES_get_new" get
    reads_row "filtered list" "$RES_list_new" list
    if [[ -n "$BASELINE_BIN" ]]; then
        reads_row "product GET (baseline)" "$RES_get_base" get
        reads_row "filtered list (baseline)" "$RES_list_base" list
    fi
    reads_row "login (20 conc)" "$RES_login" none
    if [[ -n "$BASELINE_BIN" ]]; then
        echo
        compare "product GET" "$RES_get_new" "$RES_get_base"
        compare "filtered list" "$RES_list_new" "$RES_list_base"
    fi
    echo
    echo "$JWT_LINE (goal: under 50 us)"
    echo "$RELAY_LINE"
    echo "$LATENCY_LINE"
    echo
    echo "product GET:   GET /api/v1/products/{id}, a random one of the $PRODUCTS seeded ids per request (~$(wc -c <"$TMP/www/product.json") bytes; nginx: one of them for every id)"
    local l
    for l in "${!LIST_ITEMS[@]}"; do
        [[ "$l" == new ]] && echo "filtered list: GET /api/v1/products?category=$CATEGORY&limit=20 (${LIST_ITEMS[$l]} items)"
        [[ "${LIST_ITEMS[$l]}" == 20 ]] || echo "WARNING: the filtered list of the $l build returned ${LIST_ITEMS[$l]} items, not a full page of 20: its figures time a short answer"
    done
    perf_report
    if ((ERRORS)); then
        echo
        echo "WARNING: at least one run had non-2xx responses, socket errors or no figures; it is suspect."
        if ((errors_nginx)); then echo "         (nginx baseline included: the ratios are unreliable)"; fi
    fi
    : >"$TMP/perf.rows"
}
