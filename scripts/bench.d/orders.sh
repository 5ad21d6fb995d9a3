# scripts/bench.d/orders.sh — sourced by scripts/bench: part "orders", durable order placement,
# Mercato against PostgreSQL doing the same work, with the CPU each process spent on it.

declare -A O_RPS O_P50 O_P99 O_CREATED O_OTHER O_STATUSES O_SOCK O_CPU O_PLANE O_MACHINE O_CHECK O_PROBLEMS O_BUSY O_SETUP

# orders_field LINE KEY: the value of KEY=... in an "ORDERS ..." line of orders.lua.
orders_field() { sed -n "s/.* $2=\\([^ ]*\\).*/\\1/p" <<<"$1"; }

# orders_mercato LABEL BIN: the whole system from BIN, its products and customers, the measured
# run with every process's CPU, a perf pass, the stock check; then stops it. Fills the O_* arrays
# for LABEL.
orders_mercato() {
    local label="$1" bin="$2"
    local dir="$TMP/orders-$label"
    # Reservations must not expire during the run (an expiry would release stock and write in the
    # middle of it); 64 customers place thousands of orders each and never pay: lift the
    # unpaid-order cap (CONTRACT 9).
    shards_for "$label"
    mercato_start "$bin" "$dir" kafka MERCATO_RESERVATION_TTL_S=86400 MERCATO_MAX_PENDING_ORDERS=100000
    shards_restore

    # Products (stock records arrive through outbox -> relay -> Kafka -> inventory) and customers.
    log "orders ($label build): creating $ORDER_PRODUCTS products and $CUSTOMERS customers"
    local t0=$SECONDS
    "$PY" "$HERE/orders_setup.py" "$EDGE" "$MERCATO_ADMIN_EMAIL" "$MERCATO_ADMIN_PASSWORD" \
        "$ORDER_PRODUCTS" "$CUSTOMERS" "$dir/wrk.data" 2> >(tee "$TMP/setup-$label.log" >&2) \
        || { dump_logs; die "order benchmark setup ($label build)"; }
    O_SETUP[$label]=$((SECONDS - t0))
    all_alive || { dump_logs; die "a process died during the order setup"; }

    O_BUSY[$label]="$(cpu_busy_pct)"
    "$PY" "$HERE/cpu.py" snap "$TMP/cpu-$label-0.json" "${MC_PROCS[@]}" "load=$$" || die "CPU snapshot"
    run_wrk "orders_$label" "$EDGE/api/v1/orders" "$CONNS" "$HERE/orders.lua" "$dir/wrk.data"
    "$PY" "$HERE/cpu.py" snap "$TMP/cpu-$label-1.json" "${MC_PROCS[@]}" "load=$$" || die "CPU snapshot"
    local line
    line="$(grep -m1 '^ORDERS ' "$TMP/wrk-orders_$label.txt" || true)"
    [[ -n "$line" ]] || { cat "$TMP/wrk-orders_$label.txt" >&2; die "orders.lua printed no ORDERS line"; }
    # the first non-201 bodies orders.lua printed, to say why
    O_PROBLEMS[$label]="$(grep -m3 '^orders.lua: HTTP' "$TMP/wrk-orders_$label.txt" || true)"
    local p50 p99 ce re we te res_var="RES_orders_$label"
    read -r _ p50 p99 _ _ ce re we te <<<"${!res_var}"
    local created other dur_us
    created="$(orders_field "$line" created)"
    other="$(orders_field "$line" other)"
    dur_us="$(orders_field "$line" duration_us)"
    O_STATUSES[$label]="$(orders_field "$line" statuses)"
    O_P50[$label]="$p50" O_P99[$label]="$p99" O_SOCK[$label]=$((ce + re + we + te))
    O_CREATED[$label]="${created:-0}" O_OTHER[$label]="${other:-0}" O_RPS[$label]=NA
    if [[ -n "$created" && "${dur_us:-0}" -gt 0 && "$p99" != NA ]]; then
        O_RPS[$label]="$(awk -v c="$created" -v d="$dur_us" 'BEGIN { printf "%.0f", c / (d / 1e6) }')"
    fi
    "$PY" "$HERE/cpu.py" table "$TMP/cpu-$label-0.json" "$TMP/cpu-$label-1.json" "${created:-0}" order \
        kafka-dev,relay "$TMP/cpu-$label.vars" >"$TMP/cpu-$label.txt" 2>&1 || true
    read -r "O_CPU[$label]" "O_PLANE[$label]" "O_MACHINE[$label]" <"$TMP/cpu-$label.vars" 2>/dev/null \
        || { O_CPU[$label]=0 O_PLANE[$label]=0 O_MACHINE[$label]=0; }

    perf_pass "orders_$label" "orders ($label)" "$EDGE/api/v1/orders" "$CONNS" "$HERE/orders.lua" "$dir/wrk.data"
    local perf_line perf_created=0 perf_other=0
    perf_line="$(grep -m1 '^ORDERS ' "$TMP/wrk-perf_orders_$label.txt" 2>/dev/null || true)"
    if [[ -n "$perf_line" ]]; then
        perf_created="$(orders_field "$perf_line" created)"
        perf_other="$(orders_field "$perf_line" other)"
    fi

    # Did every 201 reserve its stock? Each order reserves 2 units; the setup's probe order is 1;
    # orders still in flight when wrk stopped (at most CONNS a pass) may also have completed.
    log "orders ($label build): summing reserved stock"
    local reserved all=$((${O_CREATED[$label]} + perf_created)) bad=$((${O_OTHER[$label]} + perf_other))
    reserved="$("$PY" "$HERE/orders_check.py" "$EDGE" "$dir/wrk.data" 2>"$TMP/check-$label.err")" || reserved="?"
    if [[ "$reserved" =~ ^[0-9]+$ ]]; then
        local lo=$((2 * (all + 1))) hi=$((2 * (all + 1 + 2 * CONNS + bad)))
        if ((reserved >= lo && reserved <= hi)); then
            O_CHECK[$label]="Mercato ($label) reserved $reserved units = 2 x $((reserved / 2)) orders for $all 201s (both passes, +1 probe, +$((reserved / 2 - all - 1)) in flight at the stops): consistent"
        else
            O_CHECK[$label]="WARNING: Mercato ($label) reserved $reserved units; $all 201s (+1 probe) need $lo..$hi: INCONSISTENT"
        fi
    else
        O_CHECK[$label]="could not sum Mercato's ($label) reserved stock ($(tail -n1 "$TMP/check-$label.err" 2>/dev/null))"
    fi
    stop_procs
}

# orders_postgres: a cluster of its own in the temp dir on 127.0.0.1, durability settings at their
# defaults (fsync, synchronous_commit, full_page_writes all on), stated explicitly, under pgbench
# running the same work as one Mercato order. The postmaster runs as our child (in the foreground,
# not through pg_ctl's daemon) so the trap stops it like every other process. It refuses to run as
# root: as root, initdb and postgres run as the "postgres" system user. Sets PG_*.
orders_postgres() {
    local pgbin; pgbin="$(pg_bin)"
    local P="$TMP/pg" as=()
    PG_VERSION="$("$pgbin/postgres" --version | awk '{print $3}')"
    mkdir -p "$P" "$TMP/pgbench"
    if [[ "$(id -u)" -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 || die "running as root, and there is no postgres user to run PostgreSQL as"
        chmod 0711 "$TMP"            # mktemp -d is 0700: let the postgres user reach its directory
        chown postgres:postgres "$P"
        as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    log "postgres: initdb ($pgbin)"
    (cd "$P" && "${as[@]}" "$pgbin/initdb" -D "$P/data" -U postgres --auth=trust -E UTF8 --locale=C) \
        >"$TMP/pg-initdb.log" 2>&1 || { cat "$TMP/pg-initdb.log" >&2; die "initdb"; }
    PG_PORT="$(free_port)"
    cat >>"$P/data/postgresql.conf" <<CONF
# scripts/bench
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$P'
max_connections = 100
shared_buffers = 256MB
fsync = on
synchronous_commit = on
full_page_writes = on
CONF
    (cd "$P" && exec "${as[@]}" "$pgbin/postgres" -D "$P/data") >"$TMP/postgres.log" 2>&1 &
    PIDS+=("postgres:$!")
    local postmaster=$!
    pg_ready() { "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres; }
    wait_for "postgres on 127.0.0.1:$PG_PORT" 60 pg_ready
    local psql=("$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres)
    "${psql[@]}" >"$TMP/pg-schema.log" 2>&1 <<SQL || { cat "$TMP/pg-schema.log" >&2; die "PostgreSQL schema"; }
CREATE TABLE stock (
    product_id int PRIMARY KEY,
    on_hand    bigint NOT NULL,
    reserved   bigint NOT NULL DEFAULT 0
);
INSERT INTO stock SELECT g, 1000000000, 0 FROM generate_series(1, $ORDER_PRODUCTS) g;
CREATE TABLE orders (
    id               bigserial PRIMARY KEY,
    user_id          int NOT NULL,
    status           text NOT NULL DEFAULT 'pending_payment',
    total_cents      bigint NOT NULL,
    items            jsonb NOT NULL,
    shipping_address jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
VACUUM ANALYZE stock;
CHECKPOINT;
SQL
    # The same work as one Mercato order: two distinct random products, locked in product_id
    # order (no deadlocks), each reserved only if available, and the order row with both lines;
    # durable at COMMIT.
    cat >"$TMP/pgbench-order.sql" <<SQL
\set a random(1, $ORDER_PRODUCTS)
\set d random(1, $((ORDER_PRODUCTS - 1)))
\set b 1 + (:a - 1 + :d) % $ORDER_PRODUCTS
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set u random(1, $CUSTOMERS)
\set plo 100 + :lo % 900
\set phi 100 + :hi % 900
BEGIN;
UPDATE stock SET reserved = reserved + 1 WHERE product_id = :lo AND on_hand - reserved >= 1;
UPDATE stock SET reserved = reserved + 1 WHERE product_id = :hi AND on_hand - reserved >= 1;
INSERT INTO orders (user_id, total_cents, items, shipping_address) VALUES (:u, :plo::int + :phi::int,
    jsonb_build_array(jsonb_build_object('product_id', :lo::int, 'quantity', 1, 'unit_price_cents', :plo::int),
                      jsonb_build_object('product_id', :hi::int, 'quantity', 1, 'unit_price_cents', :phi::int)),
    '{"name":"Bench","line1":"1 Main St","city":"Berlin","postal_code":"10115","country":"DE"}');
COMMIT;
SQL
    BUSY_PG="$(cpu_busy_pct)"
    local idle_children; idle_children="$(children_of "$postmaster" | wc -l)"
    local pgbench=("$pgbin/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared
        -c "$CONNS" -j "$THREADS" -T "$DURATION_S" -f "$TMP/pgbench-order.sql"
        -l --log-prefix="$TMP/pgbench/tx" postgres)
    "$PY" "$HERE/cpu.py" snap "$TMP/cpu-pg-0.json" "postgres=$postmaster" "load=$$" || die "CPU snapshot"
    log "${pgbench[*]}"
    "${pgbench[@]}" >"$TMP/pgbench.txt" 2>&1 &
    PIDS+=("pgbench:$!")
    wait "$!" || { cat "$TMP/pgbench.txt" >&2; dump_logs; die "pgbench"; }
    unset 'PIDS[${#PIDS[@]}-1]'
    # the backends' CPU reaches the postmaster's cutime when they have exited and been reaped
    backends_gone() { (($(children_of "$postmaster" | wc -l) <= idle_children)); }
    wait_for "PostgreSQL's backends to exit" 10 backends_gone
    "$PY" "$HERE/cpu.py" snap "$TMP/cpu-pg-1.json" "postgres=$postmaster" "load=$$" || die "CPU snapshot"
    all_alive || { dump_logs; die "postgres died during pgbench"; }
    PG_TPS="$(awk '/^tps = / {print $3; exit}' "$TMP/pgbench.txt")"
    PG_FAILED="$(awk -F'[:(]' '/^number of failed transactions/ {gsub(/ /, "", $2); print $2; exit}' "$TMP/pgbench.txt")"
    PG_FAILED="${PG_FAILED:-0}"
    # Per-transaction log: "client tx_no latency_us script_no epoch epoch_us"; a failed
    # transaction has "failed" instead of a latency.
    read -r PG_N PG_P50 PG_P99 < <(cat "$TMP"/pgbench/tx.* | awk '$3 ~ /^[0-9]+$/ {print $3}' | sort -n \
        | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print 0, "NA", "NA"; exit }
            i50 = int(0.50 * NR); if (i50 < 0.50 * NR) i50++
            i99 = int(0.99 * NR); if (i99 < 0.99 * NR) i99++
            printf "%d %.3f %.3f\n", NR, v[i50] / 1000, v[i99] / 1000 }')
    "$PY" "$HERE/cpu.py" table "$TMP/cpu-pg-0.json" "$TMP/cpu-pg-1.json" "$PG_N" transaction - \
        "$TMP/cpu-pg.vars" >"$TMP/cpu-pg.txt" 2>&1 || true
    read -r PG_CPU _ _ <"$TMP/cpu-pg.vars" 2>/dev/null || PG_CPU=0
    PG_CHECK="$("${psql[@]}" -At -c 'SELECT (SELECT count(*) FROM orders), (SELECT sum(reserved) FROM stock)')" \
        || PG_CHECK="?|?"
    stop_procs
}

# orders_row LABEL TITLE: the table line of a Mercato run.
orders_row() {
    local label="$1" err="0 errors"
    if ((${O_OTHER[$label]} + ${O_SOCK[$label]} > 0)); then
        err="non-201 ${O_OTHER[$label]} (status:count ${O_STATUSES[$label]}), socket errors ${O_SOCK[$label]}"
    fi
    printf "%-22s %10s %9s %9s %10s  %s\n" "$2" "${O_RPS[$label]}" "$(ms "${O_P50[$label]}")" \
        "$(ms "${O_P99[$label]}")" "${O_CREATED[$label]}" "$err"
}

# orders_verdict LABEL: the goal, on throughput (the whole machine each), then per CPU-second.
orders_verdict() {
    local label="$1"
    awk -v m="${O_RPS[$label]}" -v pg="${PG_TPS:-0}" -v p99="${O_P99[$label]}" \
        -v errs="$((${O_OTHER[$label]} + ${O_SOCK[$label]}))" -v pgf="$PG_FAILED" -v label="$label" \
        -v created="${O_CREATED[$label]}" -v cpu="${O_CPU[$label]}" -v plane="${O_PLANE[$label]}" \
        -v pgn="$PG_N" -v pgcpu="${PG_CPU:-0}" 'BEGIN {
        if (m == "NA" || pg + 0 <= 0) { printf "ratio Mercato (%s)/PostgreSQL: ?  -> NO DATA\n", label; exit }
        r = m / pg
        why = ""
        if (r < 2) why = why sprintf(", ratio %.2f < 2", r)
        if (p99 + 0 >= 20) why = why sprintf(", p99 %.1f ms >= 20", p99)
        if (errs > 0) why = why sprintf(", %d failed orders", errs)
        if (pgf > 0) why = why sprintf(", %d failed PostgreSQL transactions (baseline suspect)", pgf)
        printf "ratio Mercato (%s)/PostgreSQL: %.2fx orders/s, the whole machine each  -> %s\n", label, r,
            (why == "" ? "PASS" : "MISS (" substr(why, 3) ")")
        if (created > 0 && cpu > 0 && pgn > 0 && pgcpu > 0) {
            mo = created / cpu; mx = (cpu > plane) ? created / (cpu - plane) : 0; po = pgn / pgcpu
            printf "  per CPU-second (informational): Mercato %.0f orders, %.0f without the Kafka plane; PostgreSQL %.0f: %.2fx, %.2fx\n",
                mo, mx, po, mo / po, mx / po
        }
    }'
}

# orders_cpu LABEL: the CPU table of a Mercato run and its summary with the Kafka plane apart.
orders_cpu() {
    local label="$1"
    echo
    echo "CPU during the Mercato ($label) order run ($DURATION on $(nproc) cores = ${O_MACHINE[$label]} CPU-s; /proc/<pid>/stat utime+stime, /proc/stat):"
    cat "$TMP/cpu-$label.txt"
    awk -v m="${O_RPS[$label]}" -v c="${O_CREATED[$label]}" -v cpu="${O_CPU[$label]}" -v plane="${O_PLANE[$label]}" 'BEGIN {
        if (c <= 0 || cpu <= 0) { print "  (no CPU figures)"; exit }
        printf "  %s orders/s with the whole system on this machine; %.2f CPU-s per 1000 orders, of which the Kafka plane\n", m, 1000 * cpu / c
        printf "  (kafka-dev + relay) %.2f CPU-s = %.0f%%; without it %.2f CPU-s per 1000 orders\n",
            1000 * plane / c, 100 * plane / cpu, 1000 * (cpu - plane) / c
    }'
}

part_orders() {
    : >"$TMP/perf.rows"
    local labels=(new)
    [[ -n "$BASELINE_BIN" ]] && labels=(new base)
    orders_mercato new "$BIN"
    [[ -n "$BASELINE_BIN" ]] && orders_mercato base "$BASELINE_BIN"
    orders_postgres

    local fs; fs="$(df -PT "$TMP" | awk 'NR == 2 {print $2 " on " $1}')"
    echo
    echo "Mercato order benchmark: durable order placement, $CONNS connections, $DURATION each, $(nproc) cores, MERCATO_SHARDS=${MERCATO_SHARDS:-(build default)}"
    echo "Mercato:    wrk -t$THREADS -c$CONNS --latency POST /api/v1/orders, 2 lines (2 distinct of $ORDER_PRODUCTS products, qty 1),"
    echo "            tokens of $CUSTOMERS customers; 201 only after the order's commits; only 201s count"
    echo "            (as scripts/up runs it: kafka-dev, broker, node with every actor, edge, relay; Release; $BIN)"
    [[ -n "$BASELINE_BIN" ]] && echo "baseline:   the same from $BASELINE_BIN"
    echo "PostgreSQL: $PG_VERSION; pgbench -M prepared -c $CONNS -j $THREADS -T $DURATION_S: BEGIN; reserve 2 stock rows (UPDATE ... WHERE"
    echo "            on_hand - reserved >= 1, in product_id order); INSERT order row (2 lines as jsonb); COMMIT"
    echo "            fsync=on synchronous_commit=on full_page_writes=on shared_buffers=256MB, 127.0.0.1 TCP"
    echo "both write to: $fs; one after the other, the other one stopped"
    local l busy="" setup=""
    for l in "${labels[@]}"; do busy+="Mercato ($l) ${O_BUSY[$l]}%, "; setup+="$l ${O_SETUP[$l]}s, "; done
    echo "CPU busy with other work just before: ${busy}PostgreSQL ${BUSY_PG}% (well above 0 means contended figures)"
    echo "setup (products, stock records via Kafka, customers): ${setup%, }"
    echo "goal: Mercato >= 2x PostgreSQL's orders/s, with p99 < 20 ms"
    echo
    printf "%-22s %10s %9s %9s %10s  %s\n" "system" "orders/s" "p50 ms" "p99 ms" "orders" "errors"
    printf "%-22s %10s %9s %9s %10s  %s\n" "----------------------" "----------" "---------" "---------" "----------" "------"
    orders_row new "Mercato"
    [[ -n "$BASELINE_BIN" ]] && orders_row base "Mercato (baseline)"
    local pg_err="0 failed" pg_ops="?"
    ((PG_FAILED == 0)) || pg_err="$PG_FAILED failed transactions"
    [[ "${PG_TPS:-}" =~ ^[0-9.]+$ ]] && pg_ops="$(printf '%.0f' "$PG_TPS")"
    printf "%-22s %10s %9s %9s %10s  %s\n" "PostgreSQL" "$pg_ops" "$(ms "$PG_P50")" "$(ms "$PG_P99")" "$PG_N" "$pg_err"
    echo
    for l in "${labels[@]}"; do orders_verdict "$l"; done
    if [[ -n "$BASELINE_BIN" ]]; then
        awk -v r1="${O_RPS[new]}" -v r0="${O_RPS[base]}" -v p1="${O_P99[new]}" -v p0="${O_P99[base]}" \
            -v c1="${O_CPU[new]}" -v n1="${O_CREATED[new]}" -v c0="${O_CPU[base]}" -v n0="${O_CREATED[base]}" 'BEGIN {
            if (r0 + 0 <= 0 || p0 + 0 <= 0 || n0 <= 0 || c0 <= 0 || n1 <= 0 || r1 == "NA") { print "orders, this build vs baseline: ?"; exit }
            printf "orders, this build vs baseline: orders/s x%.2f, p99 x%.2f, CPU-s per order x%.2f\n", r1 / r0, p1 / p0, (c1 / n1) / (c0 / n0)
        }'
    fi
    for l in "${labels[@]}"; do orders_cpu "$l"; done
    echo
    echo "CPU during the PostgreSQL run (the postmaster and every backend; pgbench is the load generator):"
    cat "$TMP/cpu-pg.txt"
    echo
    for l in "${labels[@]}"; do echo "check: ${O_CHECK[$l]}"; done
    local pg_orders="${PG_CHECK%%|*}" pg_reserved="${PG_CHECK#*|}"
    if [[ "$pg_orders" =~ ^[0-9]+$ && "$pg_reserved" =~ ^[0-9]+$ ]] && ((pg_reserved == 2 * pg_orders)); then
        echo "check: PostgreSQL has $pg_orders orders and $pg_reserved reserved units: consistent"
    else
        echo "check: WARNING: PostgreSQL has ${pg_orders:-?} orders and ${pg_reserved:-?} reserved units"
    fi
    for l in "${labels[@]}"; do
        [[ -n "${O_PROBLEMS[$l]}" ]] || continue
        echo "first non-201 answers ($l):"
        sed 's/^/  /' <<<"${O_PROBLEMS[$l]}"
    done
    perf_report
    for l in "${labels[@]}"; do
        if ((${O_OTHER[$l]} + ${O_SOCK[$l]} > 0)); then
            echo
            echo "WARNING: the Mercato ($l) order run had non-201 responses or socket errors: it failed, whatever its figures."
        fi
    done
    : >"$TMP/perf.rows"
}
