#!/usr/bin/env bash
# Gateway throughput of two `vigil` builds, alternated, as the README's
# figures were measured: each run starts the build on a fresh data dir
# (ARES_SHARED_SECRET=bench, rate limit lifted), drives it with
# examples/load_gateway for --seconds, stops it, and prints the client's
# summary line with the server's CPU time per accepted event; at the end,
# the mean rates and B/A (and B/seed), and the mean CPU per event. The
# machine is shared and noisy, so only builds measured in the same rounds
# are compared.
#
# usage: scripts/gateway-ab.sh ROUNDS BIN_A BIN_B [load_gateway args...]
#   e.g. cp target/release/vigil /tmp/vigil-before   (on the old commit)
#        cargo build --release --bins --examples     (on the new one;
#                                                     --examples alone leaves
#                                                     the old vigil binary)
#        scripts/gateway-ab.sh 3 /tmp/vigil-before target/release/vigil \
#            --batch 1000 --concurrency 8 --seconds 10 --fail-every 0
# Set SEED_CMD to a shell command that serves the MiniSIEM seed
# (hojune02/secure-event-correlator) on 127.0.0.1:8000 from fresh state, its
# server last and exec'd, to interleave it as a third line per round. As
# the seed's README runs it:
#   SEED_CMD='cd ~/seed && rm -rf engine/out gateway/audit &&
#             exec uvicorn gateway.app.main:app --reload --port 8000'
# or tuned (one process, no access log):
#   SEED_CMD='cd ~/seed && rm -rf engine/out gateway/audit &&
#             exec uvicorn gateway.app.main:app --port 8000 --log-level warning'
# (the seed slows as its idempotency table grows, so fresh state matters).
# With --reload, uvicorn hands the server a socket it bound itself, and
# connections accepted on it get no TCP_NODELAY (Kludex/uvicorn#3149): each
# keep-alive answer after the first waits for the client's delayed ACK
# (~40 ms), so that form is bound by latency, not CPU.
# The seed is not kept in this repository (another licence): take
# hojune02/secure-event-correlator at its final version (SQLite idempotency
# and host state, alerts.jsonl; `SEC_USE_SQLITE` on by default) and install
# fastapi, uvicorn and pydantic from PyPI into a virtualenv; if its
# engine/models.py is the older trading-era one, it needs EventRecord,
# CorrelationDecision and PolicyDecision with the fields its gateway uses.
# Set FILL_SECONDS=N to drive A and B with the same load for N seconds
# before the measured run, unmeasured: with N=8 a batch load passes the
# store's default bound (2 000 000 events), so the run measures a full
# store, where every event stored is one deleted.
# Set FLOOR=1 to interleave examples/http_floor too (an HTTP server on the
# same stack that answers 200 and does nothing else): B/floor is the share
# of what this machine and client allow any server, in the same rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:?rounds}
if [[ -n ${FILL_SECONDS:-} && ! $FILL_SECONDS =~ ^[0-9]+$ ]]; then
    echo "FILL_SECONDS must be whole seconds, not '$FILL_SECONDS'" >&2
    exit 2
fi
a=${2:?first vigil binary}
b=${3:?second vigil binary}
shift 3
load=target/release/examples/load_gateway
[[ -x $load ]] || { echo "build the client first: cargo build --release --bins --examples" >&2; exit 2; }
port=8000

wait_up() {
    for _ in $(seq 100); do
        curl -s "127.0.0.1:$port/health" >/dev/null && return 0
        sleep 0.1
    done
    echo "server did not come up" >&2
    return 1
}

run_one() {
    local label=$1; shift
    local dir pid
    if curl -s "127.0.0.1:$port/health" >/dev/null; then
        echo "something already answers on port $port: stop it first" >&2
        exit 2
    fi
    dir=$(mktemp -d)
    "$@" "$dir" &
    pid=$!
    wait_up
    if [[ -n ${FILL_SECONDS:-} && ( $label == A || $label == B ) ]]; then
        $load --addr "127.0.0.1:$port" --secret bench "${client_args[@]}" --seconds "$FILL_SECONDS" >/dev/null ||
            echo "(the fill run failed; this run may not measure a full store)" >&2
    fi
    printf '%-8s ' "$label"
    local line cpu0 cpu1
    cpu0=$(cpu_ticks "$pid")
    line=$($load --addr "127.0.0.1:$port" --secret bench "${client_args[@]}" | tail -1 || true)
    cpu1=$(cpu_ticks "$pid")
    # "...: 123456 events/s, ..." -> the rate, for the summary; "= N events
    # accepted" -> the server's CPU per accepted event over the run (user +
    # system, from /proc): steadier than the rate on a shared machine,
    # though the machine's mood moves it too.
    local rate accepted us=""
    rate=$(sed -nE 's/.*: ([0-9]+) events\/s.*/\1/p' <<<"$line")
    accepted=$(sed -nE 's/.*= ([0-9]+) events accepted.*/\1/p' <<<"$line")
    if [[ -n $accepted && $accepted -gt 0 && -n $cpu0 && -n $cpu1 ]]; then
        us=$(awk -v t=$((cpu1 - cpu0)) -v hz="$hz" -v n="$accepted" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    fi
    echo "$line${us:+; server CPU $us µs/event}"
    [[ -n $rate ]] && echo "$label $rate ${us:-0}" >>"$rates"
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
}

# The server's user + system clock ticks so far (fields 14 and 15 of
# /proc/PID/stat, counted after the command name, which may hold spaces),
# with its running descendants': the seed under `uvicorn --reload` serves
# from a child process, and its parent only watches files.
cpu_ticks() {
    local total=0 p stat
    for p in $(tree_pids "$1"); do
        stat=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$stat")))
    done
    echo "$total"
}

# PID and every process below it.
tree_pids() {
    local p
    echo "$1"
    for p in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        tree_pids "$p"
    done
}
hz=$(getconf CLK_TCK)

# Both replace their shell (exec), so the PID run_one stops is the server's.
serve() {
    local bin=$1 dir=$2
    ARES_SHARED_SECRET=bench SEC_RATE_LIMIT_PER_MIN=100000000 \
        exec "$bin" serve --listen "127.0.0.1:$port" --data-dir "$dir" 2>"$dir/serve.log"
}

floor() {
    exec target/release/examples/http_floor --listen "127.0.0.1:$port"
}

# Its output (uvicorn's access log, one line a request, when it is on) goes
# to the run's directory, not into this script's.
seed() {
    local dir=$1
    ARES_SHARED_SECRET=bench SEC_RATE_LIMIT_PER_MIN=100000000 exec bash -c "$SEED_CMD" >"$dir/seed.log" 2>&1
}

client_args=("$@")
rates=$(mktemp)
trap 'rm -f "$rates"' EXIT
for r in $(seq 1 "$rounds"); do
    echo "round $r"
    run_one A serve "$a"
    run_one B serve "$b"
    if [[ -n ${SEED_CMD:-} ]]; then
        run_one seed seed
    fi
    if [[ -n ${FLOOR:-} ]]; then
        run_one floor floor
    fi
done

# Means over the rounds, and B and the seed as ratios (B/A is the change;
# B/seed the multiple of the seed measured in the same rounds).
awk '{ n[$1]++; sum[$1] += $2; if ($3 > 0) { cn[$1]++; cpu[$1] += $3 } }
     END {
       for (l in n) mean[l] = sum[l] / n[l]
       printf "mean     A %.0f  B %.0f events/s  B/A %.3f", mean["A"], mean["B"], mean["B"] / mean["A"]
       if ("seed" in mean) printf "  seed %.0f  B/seed %.1f", mean["seed"], mean["B"] / mean["seed"]
       if ("floor" in mean) printf "  floor %.0f  B/floor %.3f", mean["floor"], mean["B"] / mean["floor"]
       printf "\n"
       if (cn["A"] > 0 && cn["B"] > 0)
         printf "cpu      A %.2f  B %.2f µs/event  B/A %.3f\n", cpu["A"] / cn["A"], cpu["B"] / cn["B"], (cpu["B"] / cn["B"]) / (cpu["A"] / cn["A"])
     }' "$rates"
