# Parses the output of `wrk --latency` into one line:
#   req_per_s p50_ms p99_ms requests non2xx connect_err read_err write_err timeout_err
# wrk prints latencies with a unit suffix (us, ms, s, m, h), normalised here to ms.
# The "Socket errors" and "Non-2xx or 3xx responses" lines only appear when non-zero.
function to_ms(v,    n, u) {
    n = v; sub(/[a-z]+$/, "", n)
    u = v; sub(/^[0-9.]+/, "", u)
    if (u == "us") return n / 1000
    if (u == "ms") return n + 0
    if (u == "s")  return n * 1000
    if (u == "m")  return n * 60000
    if (u == "h")  return n * 3600000
    return -1                     # unknown unit: make it obvious rather than guess
}
BEGIN { rps = "NA"; p50 = "NA"; p99 = "NA"; reqs = 0; non2xx = 0; ce = re = we = te = 0 }
$1 == "50%"          { p50 = to_ms($2) }
$1 == "99%"          { p99 = to_ms($2) }
/^Requests\/sec:/    { rps = $2 }
/requests in/        { reqs = $1 }
/^ *Non-2xx or 3xx responses:/ { non2xx = $NF }
/^ *Socket errors:/  {
    # Socket errors: connect 0, read 0, write 0, timeout 0
    line = $0; gsub(/,/, "", line); split(line, f, " ")
    for (i = 1; i <= length(f); i++) {
        if (f[i] == "connect") ce = f[i+1]
        if (f[i] == "read")    re = f[i+1]
        if (f[i] == "write")   we = f[i+1]
        if (f[i] == "timeout") te = f[i+1]
    }
}
END { printf "%s %s %s %s %s %s %s %s %s\n", rps, p50, p99, reqs, non2xx, ce, re, we, te }
